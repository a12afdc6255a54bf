// VM shell pool: KVM VM + in-kernel irqchip + PIT + one vCPU (CPUID set, kvm_run mapped, kick
// signal mask set) created ahead of time, so a fork only adds a memslot and restores state.
// Shells are single-use (a destroyed VM's fds are closed, never recycled: no state can leak
// between tenants through a reused VM). Refill runs off the request path (setImmediate).
import {
  createIrqchip, createPit2, createVcpu, KvmSystem, mapRun, setCpuid, setSignalMask, setTssAddr, unmapRun, type RunView,
} from '../runtime/sys/kvm.js';
import { close } from '../runtime/sys/libc.js';
import { TSS_ADDR } from '../runtime/engines/vm/abi.js';

export interface Shell { vmFd: number; vcpuFd: number; run: RunView; createdUs: number }

export function createShell(runMask: Buffer): Shell {
  const t0 = performance.now();
  const sys = KvmSystem.get();
  const vmFd = sys.createVm();
  let vcpuFd = -1;
  let run: RunView | null = null;
  try {
    setTssAddr(vmFd, TSS_ADDR);
    createIrqchip(vmFd);
    createPit2(vmFd);
    vcpuFd = createVcpu(vmFd, 0);
    run = mapRun(vcpuFd, sys.runSize);
    setCpuid(vcpuFd, sys.cpuid);
    setSignalMask(vcpuFd, runMask);
  } catch (e) {
    if (run) unmapRun(run);
    if (vcpuFd >= 0) close(vcpuFd);
    close(vmFd);
    throw e;
  }
  return { vmFd, vcpuFd, run, createdUs: (performance.now() - t0) * 1000 };
}

export function destroyShell(s: Shell): void {
  unmapRun(s.run);
  close(s.vcpuFd);
  close(s.vmFd);
}

export class ShellPool {
  private readonly shells: Shell[] = [];
  private refilling = false;
  private stopped = false;
  hits = 0;
  misses = 0;
  constructor(readonly target: number, private readonly runMask: Buffer) {}
  /** Fill synchronously (start-up). */
  fill(): void { while (this.shells.length < this.target) this.shells.push(createShell(this.runMask)); }
  get size(): number { return this.shells.length; }
  /** A ready shell, or a freshly created one when the pool is empty (counted as a miss). */
  take(): Shell {
    const s = this.shells.pop();
    this.scheduleRefill();
    if (s) { this.hits++; return s; }
    this.misses++;
    return createShell(this.runMask);
  }
  private scheduleRefill(): void {
    if (this.refilling || this.stopped || this.target === 0) return;
    this.refilling = true;
    const step = (): void => {
      if (this.stopped || this.shells.length >= this.target) { this.refilling = false; return; }
      this.shells.push(createShell(this.runMask));
      setImmediate(step);
    };
    setImmediate(step);
  }
  drain(): void {
    this.stopped = true;
    for (const s of this.shells.splice(0)) destroyShell(s);
  }
}
