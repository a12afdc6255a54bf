// Pre-started vCPU threads for the vm engine (see sys/kvm.ts for the protocol).
// A thread is lent to one VM for one run session (until the VM parks, faults or pauses);
// idle parked VMs hold no thread.
import { Worker } from 'node:worker_threads';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CTL, CTL_OP, SERIAL_CAP, SIG_KICK } from '../../sys/kvm.js';
import type { VcpuThreadData } from './vcpu-thread.js';
import { getpid, tgkill } from '../../sys/libc.js';

/**
 * The compiled worker (vcpu-thread.ts). Worker threads load JavaScript, so code run from the
 * TypeScript sources (vitest) uses the build in dist/ beside them; `npm ci` builds it.
 */
function workerFile(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const sibling = join(here, 'vcpu-thread.js');
  if (existsSync(sibling)) return sibling;
  const built = resolve(here, '..', '..', 'dist', 'engines', 'vm', 'vcpu-thread.js');
  if (existsSync(built)) return built;
  throw new Error(`vCPU thread not built: neither ${sibling} nor ${built} exists (run npm run build)`);
}
// Atomics.waitAsync exists in Node 20 (V8) but not in the ES2022 lib typings.
type WaitAsync = (a: Int32Array, i: number, v: number) => { async: boolean; value: Promise<string> | string };
const waitAsync = (Atomics as unknown as { waitAsync: WaitAsync }).waitAsync;

export interface RunResult { rc: number; errno: number; serial: Buffer }

export class VcpuThread {
  readonly ctl: Int32Array;
  readonly serial: Uint8Array;
  private readonly worker: Worker;
  private seq = 0;
  private _busy = false;
  /** A lent thread keeps the process alive (Atomics.waitAsync alone holds no loop ref). */
  get busy(): boolean { return this._busy; }
  set busy(v: boolean) {
    this._busy = v;
    if (v) this.worker.ref(); else this.worker.unref();
  }
  constructor() {
    const ctlSab = new SharedArrayBuffer(CTL.WORDS * 4);
    const serialSab = new SharedArrayBuffer(SERIAL_CAP);
    this.ctl = new Int32Array(ctlSab);
    this.serial = new Uint8Array(serialSab);
    const workerData: VcpuThreadData = { ctl: ctlSab, serial: serialSab };
    this.worker = new Worker(workerFile(), {
      workerData,
      // the worker only calls ioctl; keep its heap small
      resourceLimits: { maxOldGenerationSizeMb: 16, maxYoungGenerationSizeMb: 4 },
    });
  }
  async ready(): Promise<void> {
    if (Atomics.load(this.ctl, CTL.READY) !== 1) {
      const w = waitAsync(this.ctl, CTL.READY, 0);
      if (w.async) await (w.value as Promise<string>);
    }
    if (!this._busy) this.worker.unref();
  }
  get tid(): number { return this.ctl[CTL.TID]!; }
  /** The thread's normal signal mask: what KVM_SET_SIGNAL_MASK applies inside KVM_RUN. */
  runMask(): Buffer {
    const b = Buffer.alloc(8);
    b.writeInt32LE(this.ctl[CTL.MASK_LO]!, 0);
    b.writeInt32LE(this.ctl[CTL.MASK_HI]!, 4);
    return b;
  }
  /** KVM_RUN on this thread until an exit the monitor must handle. */
  run(vcpuFd: number, runAddr: bigint): Promise<RunResult> {
    const ctl = this.ctl;
    ctl[CTL.FD] = vcpuFd;
    ctl[CTL.RUN_LO] = Number(runAddr & 0xffffffffn) | 0;
    ctl[CTL.RUN_HI] = Number(runAddr >> 32n) | 0;
    ctl[CTL.OP] = CTL_OP.RUN;
    const prev = Atomics.load(ctl, CTL.DONE_SEQ);
    this.seq++;
    Atomics.store(ctl, CTL.CMD_SEQ, this.seq);
    Atomics.notify(ctl, CTL.CMD_SEQ);
    const w = waitAsync(ctl, CTL.DONE_SEQ, prev);
    const done = (): RunResult => {
      const n = ctl[CTL.SERIAL_LEN]!;
      return { rc: ctl[CTL.RC]!, errno: ctl[CTL.ERRNO]!, serial: n ? Buffer.from(this.serial.subarray(0, n)) : EMPTY };
    };
    if (!w.async) return Promise.resolve(done());
    return (w.value as Promise<string>).then(done);
  }
  /** Make a KVM_RUN in progress on this thread return EINTR (see kvm.ts). */
  kick(): void { tgkill(getpid(), this.tid, SIG_KICK); }
  async quit(): Promise<void> {
    this.ctl[CTL.OP] = CTL_OP.QUIT;
    this.seq++;
    Atomics.store(this.ctl, CTL.CMD_SEQ, this.seq);
    Atomics.notify(this.ctl, CTL.CMD_SEQ);
    await this.worker.terminate();
  }
}
const EMPTY = Buffer.alloc(0);

/** A fixed set of vCPU threads; acquire() waits when all are lent out. */
export class VcpuThreadPool {
  private readonly threads: VcpuThread[] = [];
  private readonly waiters: ((t: VcpuThread) => void)[] = [];
  constructor(readonly size: number) {}
  async start(): Promise<void> {
    while (this.threads.length < this.size) this.threads.push(new VcpuThread());
    await Promise.all(this.threads.map((t) => t.ready()));
  }
  runMask(): Buffer { return this.threads[0]!.runMask(); }
  get idle(): boolean { return this.threads.every((t) => !t.busy); }
  acquire(): VcpuThread | Promise<VcpuThread> {
    const t = this.threads.find((x) => !x.busy);
    if (t) { t.busy = true; return t; }
    return new Promise((resolve) => this.waiters.push(resolve));
  }
  release(t: VcpuThread): void {
    const w = this.waiters.shift();
    if (w) { w(t); return; } // stays busy (and ref'ed) for the next VM
    t.busy = false;
  }
  async stop(): Promise<void> {
    await Promise.all(this.threads.map((t) => t.quit()));
    this.threads.length = 0;
  }
}
