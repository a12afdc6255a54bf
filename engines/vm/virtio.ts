// virtio-mmio (version 2) transport with one console-type device (device id 3) and two split
// virtqueues: rx (queue 0, host -> guest) and tx (queue 1, guest -> host). Device state is
// plain data (VirtioState), cloned into every fork.
//
// Notifications: guest -> host is the QueueNotify register (an MMIO write exit). Host -> guest
// does NOT use interrupts: the monitor only touches the rings while the vCPU is stopped at a
// QueueNotify exit, fills the rx used ring, and resumes the vCPU; the guest checks its rx used
// ring after every QueueNotify. (Interrupt delivery would need CPL0 handlers, which PVM
// emulates instruction by instruction.) InterruptStatus therefore always reads 0.
import { VQ_SIZE_MAX } from './abi.js';

export interface QueueState {
  num: number; ready: boolean; desc: bigint; driver: bigint; device: bigint;
  lastAvail: number; usedIdx: number;
}
export interface VirtioState {
  status: number; deviceFeaturesSel: number; driverFeaturesSel: number; driverFeatures: [number, number];
  queueSel: number; queues: QueueState[]; configGeneration: number;
}

export function newVirtioState(): VirtioState {
  const q = (): QueueState => ({ num: 0, ready: false, desc: 0n, driver: 0n, device: 0n, lastAvail: 0, usedIdx: 0 });
  return { status: 0, deviceFeaturesSel: 0, driverFeaturesSel: 0, driverFeatures: [0, 0], queueSel: 0, queues: [q(), q()], configGeneration: 0 };
}
export function cloneVirtioState(s: VirtioState): VirtioState {
  return { ...s, driverFeatures: [s.driverFeatures[0], s.driverFeatures[1]], queues: s.queues.map((q) => ({ ...q })) };
}

const DEVICE_FEATURES: [number, number] = [0, 1]; // VIRTIO_F_VERSION_1 (bit 32)

export class VirtioConsole {
  constructor(public state: VirtioState, private mem: Buffer) {}
  setMemory(mem: Buffer): void { this.mem = mem; }

  /** A 32-bit register read at offset; returns the value. */
  read(off: number): number {
    const s = this.state;
    const q = s.queues[s.queueSel];
    switch (off) {
      case 0x000: return 0x74726976;
      case 0x004: return 2;
      case 0x008: return 3;
      case 0x00c: return 0x53504f52; // "SPOR"
      case 0x010: return DEVICE_FEATURES[s.deviceFeaturesSel] ?? 0;
      case 0x034: return q ? VQ_SIZE_MAX : 0;
      case 0x044: return q?.ready ? 1 : 0;
      case 0x060: return 0;
      case 0x070: return s.status;
      case 0x0fc: return s.configGeneration;
      default: return 0;
    }
  }

  /** A 32-bit register write; returns the queue index for QueueNotify, else -1. */
  write(off: number, v: number): number {
    const s = this.state;
    const q = s.queues[s.queueSel];
    const lo = (x: bigint): bigint => (x & 0xffffffff00000000n) | BigInt(v >>> 0);
    const hi = (x: bigint): bigint => (x & 0xffffffffn) | (BigInt(v >>> 0) << 32n);
    switch (off) {
      case 0x014: s.deviceFeaturesSel = v; break;
      case 0x020: if (s.driverFeaturesSel < 2) s.driverFeatures[s.driverFeaturesSel] = v >>> 0; break;
      case 0x024: s.driverFeaturesSel = v; break;
      case 0x030: s.queueSel = v; break;
      case 0x038: if (q) q.num = Math.min(v, VQ_SIZE_MAX); break;
      case 0x044: if (q) q.ready = v === 1; break;
      case 0x050: return v;
      case 0x064: break;
      case 0x070:
        if (v === 0) this.reset();
        else {
          // FEATURES_OK only if the driver accepted VERSION_1 and nothing we do not offer
          const [f0, f1] = s.driverFeatures;
          if ((v & 8) && !(f0 === 0 && f1 === 1)) v &= ~8;
          s.status = v;
        }
        break;
      case 0x080: if (q) q.desc = lo(q.desc); break;
      case 0x084: if (q) q.desc = hi(q.desc); break;
      case 0x090: if (q) q.driver = lo(q.driver); break;
      case 0x094: if (q) q.driver = hi(q.driver); break;
      case 0x0a0: if (q) q.device = lo(q.device); break;
      case 0x0a4: if (q) q.device = hi(q.device); break;
      default: break;
    }
    return -1;
  }

  private reset(): void {
    const fresh = newVirtioState();
    Object.assign(this.state, fresh);
  }

  get driverOk(): boolean { return (this.state.status & 4) !== 0; }

  private gpa(a: bigint, len: number): number {
    const n = Number(a);
    if (n < 0 || n + len > this.mem.length) throw new RangeError(`virtqueue address 0x${a.toString(16)} outside guest memory`);
    return n;
  }

  /** Put one message into the next rx buffer; false if the guest posted none. */
  pushRx(msg: Buffer): boolean {
    const q = this.state.queues[0]!;
    if (!q.ready || !q.num) return false;
    const m = this.mem;
    const availIdx = m.readUInt16LE(this.gpa(q.driver + 2n, 2));
    if (availIdx === q.lastAvail) return false;
    const id = m.readUInt16LE(this.gpa(q.driver + 4n + BigInt(2 * (q.lastAvail % q.num)), 2));
    q.lastAvail = (q.lastAvail + 1) & 0xffff;
    const d = this.gpa(q.desc + BigInt(16 * (id % q.num)), 16);
    const addr = m.readBigUInt64LE(d), cap = m.readUInt32LE(d + 8);
    const len = Math.min(cap, msg.length);
    msg.copy(m, this.gpa(addr, len), 0, len);
    this.pushUsed(q, id, len);
    return true;
  }

  /** All messages the guest queued on tx since the last call (buffers returned to it). */
  drainTx(): Buffer[] {
    const q = this.state.queues[1]!;
    const out: Buffer[] = [];
    if (!q.ready || !q.num) return out;
    const m = this.mem;
    const availIdx = m.readUInt16LE(this.gpa(q.driver + 2n, 2));
    while (q.lastAvail !== availIdx) {
      const id = m.readUInt16LE(this.gpa(q.driver + 4n + BigInt(2 * (q.lastAvail % q.num)), 2));
      q.lastAvail = (q.lastAvail + 1) & 0xffff;
      const d = this.gpa(q.desc + BigInt(16 * (id % q.num)), 16);
      const addr = m.readBigUInt64LE(d), len = Math.min(m.readUInt32LE(d + 8), 65536);
      const at = this.gpa(addr, len);
      out.push(Buffer.from(m.subarray(at, at + len)));
      this.pushUsed(q, id, 0);
    }
    return out;
  }

  private pushUsed(q: QueueState, id: number, len: number): void {
    const m = this.mem;
    const e = this.gpa(q.device + 4n + BigInt(8 * (q.usedIdx % q.num)), 8);
    m.writeUInt32LE(id, e); m.writeUInt32LE(len, e + 4);
    q.usedIdx = (q.usedIdx + 1) & 0xffff;
    m.writeUInt16LE(q.usedIdx, this.gpa(q.device + 2n, 2));
  }
}
