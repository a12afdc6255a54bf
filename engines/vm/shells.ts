// VM shell pool: KVM VM + in-kernel irqchip + PIT + one vCPU (CPUID set, kvm_run mapped, kick
// signal mask set) + a reserved guest address range already registered as memslot 0, created
// ahead of time. A fork maps the seed over the range (MAP_FIXED, copy-on-write) and restores
// state; no ioctl on the VM's memory layout is needed.
//
// Recycling: a destroyed instance's shell comes back here (range reset to PROT_NONE, which
// drops its pages and, via KVM's MMU notifier, its guest mappings). Every guest-visible state
// (memory, vCPU registers/MSRs/FPU/LAPIC/events, irqchip, PIT, clock, device) is replaced by
// the next fork's full restore, so nothing of the previous tenant is visible. Shells whose
// guest failed are not recycled. Why recycle: the last close of a VM fd destroys the VM
// synchronously, 15-25 ms here, and creating a VM while others are torn down is slow too.
import {
  createIrqchip, createPit2, createVcpu, KvmSystem, mapRun, setCpuid, setSignalMask, setTssAddr,
  setUserMemoryRegion, unmapRun, type RunView,
} from '../../sys/kvm.js';
import { close, closeAsync, munmap, type Mapping } from '../../sys/libc.js';
import koffi from 'koffi';
import { TSS_ADDR } from './abi.js';
import { reserveGuestRange } from './memory.js';

export interface Shell {
  vmFd: number; vcpuFd: number; run: RunView;
  /** Reserved range registered as memslot 0 (guest-physical 0). */
  mem: Mapping; memBuf: Buffer;
  createdUs: number; uses: number;
}

export function createShell(runMask: Buffer, memSize: number): Shell {
  const t0 = performance.now();
  const sys = KvmSystem.get();
  const vmFd = sys.createVm();
  let vcpuFd = -1;
  let run: RunView | null = null;
  let mem: Mapping | null = null;
  try {
    setTssAddr(vmFd, TSS_ADDR);
    createIrqchip(vmFd);
    createPit2(vmFd);
    vcpuFd = createVcpu(vmFd, 0);
    run = mapRun(vcpuFd, sys.runSize);
    setCpuid(vcpuFd, sys.cpuid);
    setSignalMask(vcpuFd, runMask);
    mem = reserveGuestRange(memSize);
    setUserMemoryRegion(vmFd, 0, 0n, memSize, mem.addr);
  } catch (e) {
    if (mem) munmap(mem.addr, mem.len);
    if (run) unmapRun(run);
    if (vcpuFd >= 0) close(vcpuFd);
    close(vmFd);
    throw e;
  }
  return { vmFd, vcpuFd, run, mem, memBuf: Buffer.from(koffi.view(mem.ptr, mem.len)), createdUs: (performance.now() - t0) * 1000, uses: 0 };
}

const pendingCloses = new Set<Promise<void>>();
/**
 * Tear a shell down. Mappings go at once; the fds are closed on a libuv pool thread because
 * the last close of a VM fd destroys the VM synchronously (15-25 ms measured on this host),
 * which would stall every other VM's exits on the event loop.
 */
export function destroyShell(s: Shell): void {
  unmapRun(s.run);
  munmap(s.mem.addr, s.mem.len);
  const p = closeAsync(s.vcpuFd).then(() => closeAsync(s.vmFd)).catch(() => undefined);
  pendingCloses.add(p);
  void p.finally(() => pendingCloses.delete(p));
}
/** Wait until every VM handed to destroyShell is closed (tests, shutdown). */
export async function shellsClosed(): Promise<void> {
  while (pendingCloses.size) await Promise.all([...pendingCloses]);
}

export class ShellPool {
  private readonly shells: Shell[] = [];
  private refilling = false;
  private stopped = false;
  hits = 0;
  misses = 0;
  recycled = 0;
  /**
   * `idle()` tells whether the engine is idle (no vCPU running): shell creation (~0.5-1 ms of
   * ioctls on the event loop here) is deferred to idle moments so it does not delay exits.
   */
  constructor(readonly target: number, private readonly runMask: Buffer, readonly memSize: number,
    private readonly idle: () => boolean = () => true, public autoRefill = true) {}
  /** Fill synchronously (start-up, or a caller that knows it is idle). */
  fill(n = this.target): void { while (this.shells.length < n) this.shells.push(createShell(this.runMask, this.memSize)); }
  get size(): number { return this.shells.length; }
  /** A ready shell, or a freshly created one when the pool is empty (counted as a miss). */
  take(): Shell {
    const s = this.shells.pop();
    this.scheduleRefill();
    if (s) { this.hits++; s.uses++; return s; }
    this.misses++;
    const n = createShell(this.runMask, this.memSize);
    n.uses++;
    return n;
  }
  /** Return a shell whose range was already released; kept up to 2x target, else destroyed. */
  put(s: Shell): void {
    if (this.stopped || this.shells.length >= Math.max(2 * this.target, 4)) { destroyShell(s); return; }
    this.recycled++;
    this.shells.push(s);
  }
  private scheduleRefill(): void {
    if (this.refilling || this.stopped || this.target === 0 || !this.autoRefill) return;
    this.refilling = true;
    const step = (): void => {
      if (this.stopped || this.shells.length >= this.target) { this.refilling = false; return; }
      if (this.idle()) this.shells.push(createShell(this.runMask, this.memSize));
      setTimeout(step, 1).unref();
    };
    setTimeout(step, 1).unref();
  }
  drain(): void {
    this.stopped = true;
    for (const s of this.shells.splice(0)) destroyShell(s);
  }
}
