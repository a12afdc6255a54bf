// One microVM: a shell (VM + irqchip + vCPU), a guest memory mapping, the virtio console and
// the serial console. Runs on a lent vCPU thread until the guest parks at a QueueNotify exit.
import { randomBytes } from 'node:crypto';
import {
  decodeRegs, EXIT, EXIT_NAMES, getRegs, getSregs, kvmRun, restoreVcpu, restoreVm, saveVcpu, saveVm,
  setRegs, setSregs, KvmSystem, getMsrs, setMsrs, msrBuffer,
  type Regs, type RunView, type VcpuState, type VmState,
} from '../../sys/kvm.js';
import { SyscallError, Cancelled, FailedPrecondition, Internal } from '../../sys/errors.js';
import type { Shell } from './shells.js';
import type { VcpuThread, VcpuThreadPool } from './vcpu-threads.js';
import {
  MSG, PORT_EXCEPTION, PORT_PROBE, PORT_SERIAL, VIRTIO_MMIO_BASE, VIRTIO_MMIO_SIZE, BOOT_STACK_GPA, SERIAL_MMIO,
} from './abi.js';
import { GuestMapping, writeBootPageTables } from './memory.js';
import { cloneVirtioState, newVirtioState, VirtioConsole, type VirtioState } from './virtio.js';

/** A guest did something the monitor cannot continue from; carries the guest state. */
export class GuestError extends Internal {
  constructor(message: string, readonly exit: string, readonly regs: Partial<Regs> | null) {
    super(regs?.rip !== undefined ? `${message} (rip=0x${regs.rip.toString(16)})` : message);
  }
}

export type VmStatus = 'created' | 'parked' | 'running' | 'paused' | 'dead';

export function encodeMsg(type: number, payload: Buffer): Buffer {
  const b = Buffer.alloc(8 + payload.length);
  b.writeUInt32LE(type, 0); b.writeUInt32LE(payload.length, 4);
  payload.copy(b, 8);
  return b;
}

/** Vector names for exception reports from the guest's CPL0 stubs. */
const VECTORS = ['#DE', '#DB', 'NMI', '#BP', '#OF', '#BR', '#UD', '#NM', '#DF', 'CSO', '#TS', '#NP', '#SS', '#GP', '#PF', '15', '#MF', '#AC', '#MC', '#XM', '#VE', '#CP'];

/** KVM completes a PIO/MMIO exit only on the next KVM_RUN: do that without running the guest. */
function completePendingExit(vcpuFd: number, run: RunView): void {
  run.immediateExit = true;
  try { kvmRun(vcpuFd); } catch (e) {
    if (!(e instanceof SyscallError && e.errno === 4)) throw e;
  } finally { run.immediateExit = false; }
}

let msrCache: number[] | null = null;
/** MSRs from KVM_GET_MSR_INDEX_LIST that this host can both read and write back. */
export function usableMsrs(vcpuFd: number): number[] {
  if (msrCache) return msrCache;
  const ok: number[] = [];
  for (const idx of KvmSystem.get().msrIndices) {
    try {
      const { got, buf } = getMsrs(vcpuFd, [idx]);
      if (got !== 1) continue;
      if (setMsrs(vcpuFd, buf) === 1) ok.push(idx);
    } catch { /* not save/restorable here */ }
  }
  msrCache = ok;
  return ok;
}

export interface VmSnapshot { vcpu: VcpuState; vm: VmState; device: VirtioState }

export class Vm {
  status: VmStatus = 'created';
  readonly device: VirtioConsole;
  serialLog = '';
  readonly probes: number[] = [];
  error: Error | null = null;
  /** Messages waiting for a free rx buffer / a parked vCPU. */
  private readonly pendingRx: Buffer[] = [];
  private readonly waiters: { resolve: (b: Buffer) => void; reject: (e: Error) => void }[] = [];
  private readyWaiters: { resolve: () => void; reject: (e: Error) => void }[] = [];
  private pauseWaiters: (() => void)[] = [];
  private pauseRequested = false;
  private thread: VcpuThread | null = null;
  private session: Promise<void> | null = null;
  readyMessages = 0;
  exits = 0;

  constructor(readonly id: string, readonly shell: Shell, readonly mem: GuestMapping, device: VirtioState,
    private readonly threads: VcpuThreadPool) {
    this.device = new VirtioConsole(device, mem.buf);
  }

  /** Cold boot: long mode with the monitor's identity map, entering the ELF entry at CPL0. */
  static boot(id: string, shell: Shell, mem: GuestMapping, entry: bigint, threads: VcpuThreadPool): Vm {
    const vm = new Vm(id, shell, mem, newVirtioState(), threads);
    const cr3 = writeBootPageTables(mem.buf);
    const s = getSregs(shell.vcpuFd);
    const code = { base: 0n, limit: 0xffffffff, selector: 0x08, type: 11, present: 1, dpl: 0, db: 0, s: 1, l: 1, g: 1, avl: 0, unusable: 0 };
    const data = { ...code, selector: 0x10, type: 3, db: 1, l: 0 };
    s.setSeg('cs', code);
    for (const n of ['ds', 'es', 'fs', 'gs', 'ss'] as const) s.setSeg(n, data);
    s.setSeg('tr', { base: 0n, limit: 0x67, selector: 0x28, type: 11, present: 1, dpl: 0, db: 0, s: 0, l: 0, g: 0, avl: 0, unusable: 0 });
    s.cr3 = cr3;
    s.cr4 = 0x20n | 0x200n | 0x400n;            // PAE | OSFXSR | OSXMMEXCPT
    s.cr0 = 0x80050033n;                         // PG | AM | WP | NE | ET | MP | PE
    s.efer = 0x500n;                             // LME | LMA
    setSregs(shell.vcpuFd, s);
    const r = getRegs(shell.vcpuFd);
    r.fill(0);
    r.writeBigUInt64LE(entry, 16 * 8);           // rip
    r.writeBigUInt64LE(2n, 17 * 8);              // rflags
    r.writeBigUInt64LE(BigInt(BOOT_STACK_GPA), 6 * 8); // rsp
    setRegs(shell.vcpuFd, r);
    return vm;
  }

  /** A fork: the shell gets the (CoW) memory, then the seed's VM, vCPU and device state. */
  static fork(id: string, shell: Shell, mem: GuestMapping, snap: VmSnapshot, threads: VcpuThreadPool, fullRestore = true): Vm {
    const vm = new Vm(id, shell, mem, cloneVirtioState(snap.device), threads);
    if (fullRestore) restoreVm(shell.vmFd, snap.vm);
    restoreVcpu(shell.vcpuFd, snap.vcpu, fullRestore);
    vm.status = 'parked';
    // uniqueness first: the guest consumes this before any request
    const ent = Buffer.alloc(40);
    randomBytes(32).copy(ent, 0);
    ent.writeBigUInt64LE(BigInt.asUintN(64, BigInt('0x' + randomBytes(8).toString('hex'))), 32);
    vm.instanceId = ent.readBigUInt64LE(32);
    vm.send(MSG.ENTROPY, ent, false);
    return vm;
  }
  instanceId = 0n;

  /** Boot until the guest reports ready (parked after MSG_READY). */
  waitReady(): Promise<void> {
    if (this.readyMessages > 0) return Promise.resolve();
    if (this.error) return Promise.reject(this.error);
    return new Promise((resolve, reject) => {
      this.readyWaiters.push({ resolve, reject });
      if (this.status === 'created') { this.status = 'running'; this.startSession(); }
    });
  }

  /** Queue a message for the guest; `kick` resumes a parked vCPU to process it. */
  send(type: number, payload: Buffer, kick = true): void {
    this.pendingRx.push(encodeMsg(type, payload));
    if (this.status === 'parked') {
      this.deliverPending();
      if (kick) { this.status = 'running'; this.startSession(); }
    }
  }

  /** One request → the next response message from the guest. */
  request(payload: Buffer): Promise<Buffer> {
    if (this.status === 'dead') return Promise.reject(this.error ?? new FailedPrecondition(`vm ${this.id} is dead`));
    const p = new Promise<Buffer>((resolve, reject) => this.waiters.push({ resolve, reject }));
    this.send(MSG.REQUEST, payload, true);
    return p;
  }

  private deliverPending(): void {
    while (this.pendingRx.length && this.device.pushRx(this.pendingRx[0]!)) this.pendingRx.shift();
  }

  private startSession(): void {
    this.session = this.runSession().catch((e) => this.fail(e as Error));
  }

  private async runSession(): Promise<void> {
    const acq = this.threads.acquire();
    const t = acq instanceof Promise ? await acq : acq;
    this.thread = t;
    const { vcpuFd, run } = this.shell;
    const runAddr = run.mapping.addr;
    try {
      for (;;) {
        if (this.pauseRequested) { this.enterPaused(); return; }
        const r = await t.run(vcpuFd, runAddr);
        this.exits++;
        if (r.serial.length) this.serialLog += r.serial.toString('latin1');
        if (r.rc < 0) {
          if (r.errno === 4) continue; // EINTR: a kick; the loop top decides
          throw new SyscallError('ioctl(KVM_RUN)', r.errno);
        }
        if (this.handleExit() === 'park') { this.status = 'parked'; return; }
      }
    } finally {
      this.thread = null;
      this.threads.release(t);
    }
  }

  private enterPaused(): void {
    this.shell.run.immediateExit = false;
    this.status = 'paused';
    const w = this.pauseWaiters; this.pauseWaiters = [];
    for (const f of w) f();
  }

  private guestRegs(): Regs | null {
    try { return decodeRegs(getRegs(this.shell.vcpuFd)); } catch { return null; }
  }

  /** Handle one exit on the event loop; 'run' resumes the vCPU, 'park' stops the session. */
  private handleExit(): 'run' | 'park' {
    const run = this.shell.run;
    const reason = run.exitReason;
    switch (reason) {
      case EXIT.IO: {
        const io = run.io;
        if (io.out && io.port === PORT_SERIAL) {
          for (let i = 0; i < io.count; i++) this.serialLog += String.fromCharCode(run.buf[io.dataOffset + i * io.size]!);
          return 'run';
        }
        if (io.out && io.port === PORT_EXCEPTION) {
          const r = this.guestRegs();
          const vec = Number(r?.rax ?? -1n);
          throw new GuestError(`guest exception ${VECTORS[vec] ?? vec} error=0x${(r?.rbx ?? 0n).toString(16)} cs=0x${(r?.rsi ?? 0n).toString(16)} cr2=0x${(r?.rdi ?? 0n).toString(16)} at guest rip 0x${(r?.rcx ?? 0n).toString(16)}`, 'IO', r);
        }
        if (io.out && io.port === PORT_PROBE) {
          this.probes.push(run.buf.readUInt32LE(io.dataOffset));
          return 'run';
        }
        if (!io.out) run.buf.fill(0xff, io.dataOffset, io.dataOffset + io.size * io.count);
        return 'run';
      }
      case EXIT.MMIO: {
        const m = run.mmio;
        if (m.addr === SERIAL_MMIO && m.isWrite) { this.serialLog += String.fromCharCode(m.data[0]!); return 'run'; }
        if (m.addr === VIRTIO_MMIO_BASE + 0x1f0n && m.isWrite) {
          throw new GuestError(`guest gave up: ${this.serialLog.trim().split('\n').pop() ?? ''}`, 'MMIO', this.guestRegs());
        }
        if (m.addr >= VIRTIO_MMIO_BASE && m.addr < VIRTIO_MMIO_BASE + VIRTIO_MMIO_SIZE && m.len === 4) {
          const off = Number(m.addr - VIRTIO_MMIO_BASE);
          if (!m.isWrite) { m.data.writeUInt32LE(this.device.read(off) >>> 0, 0); return 'run'; }
          const q = this.device.write(off, m.data.readUInt32LE(0));
          if (q >= 0) return this.onNotify();
          return 'run';
        }
        throw new GuestError(`guest ${m.isWrite ? 'wrote' : 'read'} ${m.len} bytes at unbacked guest-physical 0x${m.addr.toString(16)} (no device there)`, 'MMIO', this.guestRegs());
      }
      case EXIT.HLT:
        throw new GuestError('guest halted', 'HLT', this.guestRegs());
      case EXIT.SHUTDOWN:
        throw new GuestError('guest shut down (triple fault)', 'SHUTDOWN', this.guestRegs());
      case EXIT.FAIL_ENTRY:
        throw new GuestError(`VM entry failed (reason 0x${run.failEntry.reason.toString(16)})`, 'FAIL_ENTRY', this.guestRegs());
      case EXIT.INTERNAL_ERROR: {
        const ie = run.internal;
        throw new GuestError(`KVM internal error suberror=${ie.suberror} data=[${ie.data.map((d) => '0x' + d.toString(16)).join(',')}]`, 'INTERNAL_ERROR', this.guestRegs());
      }
      case EXIT.SYSTEM_EVENT:
        throw new GuestError(`guest system event type ${run.systemEvent.type}`, 'SYSTEM_EVENT', this.guestRegs());
      default:
        throw new GuestError(`unhandled exit ${EXIT_NAMES[reason] ?? reason}`, EXIT_NAMES[reason] ?? String(reason), this.guestRegs());
    }
  }

  /** The guest yielded: collect what it sent, hand it what is pending, park when idle. */
  private onNotify(): 'run' | 'park' {
    for (const msg of this.device.drainTx()) {
      const type = msg.readUInt32LE(0), len = msg.readUInt32LE(4);
      const body = msg.subarray(8, 8 + len);
      if (type === MSG.READY) {
        this.readyMessages++;
        const w = this.readyWaiters; this.readyWaiters = [];
        for (const x of w) x.resolve();
      } else if (type === MSG.RESPONSE) {
        this.waiters.shift()?.resolve(body);
      }
    }
    const before = this.pendingRx.length;
    this.deliverPending();
    return this.pendingRx.length < before ? 'run' : 'park';
  }

  private fail(e: Error): void {
    this.status = 'dead';
    this.error = e;
    for (const w of this.waiters.splice(0)) w.reject(e);
    for (const w of this.readyWaiters.splice(0)) w.reject(e);
    const p = this.pauseWaiters; this.pauseWaiters = [];
    for (const f of p) f();
  }

  /** Stop a running vCPU (immediate_exit + kick). Resolves once it is off its thread. */
  async pause(): Promise<void> {
    if (this.status === 'parked' || this.status === 'created') { this.status = this.status === 'parked' ? 'paused' : this.status; return; }
    if (this.status !== 'running') return;
    this.pauseRequested = true;
    const done = new Promise<void>((resolve) => this.pauseWaiters.push(resolve));
    this.shell.run.immediateExit = true;
    this.thread?.kick();
    await done;
  }

  resume(): void {
    if (this.status !== 'paused') return;
    this.pauseRequested = false;
    this.status = 'running';
    this.deliverPending();
    this.startSession();
  }

  /**
   * Capture a parked VM. The vCPU is stopped at the QueueNotify MMIO exit, which KVM completes
   * only on the next KVM_RUN: run once with immediate_exit so state is consistent (returns
   * EINTR at once, never blocks the event loop).
   */
  snapshot(): VmSnapshot {
    if (this.status !== 'parked') throw new FailedPrecondition(`vm ${this.id} is ${this.status}, not parked`);
    completePendingExit(this.shell.vcpuFd, this.shell.run);
    const sys = KvmSystem.get();
    return {
      vcpu: saveVcpu(this.shell.vcpuFd, usableMsrs(this.shell.vcpuFd), sys.xsaveSize),
      vm: saveVm(this.shell.vmFd),
      device: cloneVirtioState(this.device.state),
    };
  }

  /** Kill: stop the vCPU if it runs, fail pending requests. Resources are freed by the caller. */
  async kill(): Promise<void> {
    if (this.status === 'running') await this.pause();
    if (this.session) await this.session;
    if (this.status !== 'dead') this.fail(new Cancelled(`vm ${this.id} destroyed`));
  }
}

export { msrBuffer };
