// The single KVM surface of spore: /dev/kvm ioctls, the kvm_run area and the vCPU/VM state
// structures as typed views over Buffers (x86_64 layouts from linux/kvm.h, checked against
// the Debian 6.1 headers with a C probe). Everything else in the vm engine goes through here.
//
// Host facts measured on this project's machines (PVM "native" mode, kernel 6.18):
//  - guest CPL3 code runs natively, CPL0 code is instruction-emulated (~0.6 µs/instruction);
//  - KVM_CAP_PRE_FAULT_MEMORY is absent; IRQCHIP, PIT2, XSAVE, XCRS, IOEVENTFD, IRQFD,
//    IMMEDIATE_EXIT, USER_MEMORY2 are present;
//  - port I/O from CPL3 exits as KVM_EXIT_IO when RFLAGS.IOPL=3; a CPL3 access to an unbacked
//    GPA inside a 2 MiB guest mapping exits as KVM_EXIT_MMIO; 1 GiB guest pages triple-fault.
import koffi from 'koffi';
import { close, ioctl, mmap, munmap, open, O, PROT, MAP, pointerFromAddress, type Mapping } from './libc.js';
import { SyscallError } from './errors.js';

export const KVM = {
  GET_API_VERSION: 0xae00,
  CREATE_VM: 0xae01,
  GET_MSR_INDEX_LIST: 0xc004ae02,
  CHECK_EXTENSION: 0xae03,
  GET_VCPU_MMAP_SIZE: 0xae04,
  GET_SUPPORTED_CPUID: 0xc008ae05,
  CREATE_VCPU: 0xae41,
  SET_USER_MEMORY_REGION: 0x4020ae46,
  SET_TSS_ADDR: 0xae47,
  SET_IDENTITY_MAP_ADDR: 0x4008ae48,
  CREATE_IRQCHIP: 0xae60,
  GET_IRQCHIP: 0xc208ae62,
  SET_IRQCHIP: 0x8208ae63,
  CREATE_PIT2: 0x4040ae77,
  GET_PIT2: 0x8070ae9f,
  SET_PIT2: 0x4070aea0,
  GET_CLOCK: 0x8030ae7c,
  SET_CLOCK: 0x4030ae7b,
  RUN: 0xae80,
  GET_REGS: 0x8090ae81,
  SET_REGS: 0x4090ae82,
  GET_SREGS: 0x8138ae83,
  SET_SREGS: 0x4138ae84,
  GET_MSRS: 0xc008ae88,
  SET_MSRS: 0x4008ae89,
  SET_SIGNAL_MASK: 0x4004ae8b,
  GET_FPU: 0x81a0ae8c,
  SET_FPU: 0x41a0ae8d,
  GET_LAPIC: 0x8400ae8e,
  SET_LAPIC: 0x4400ae8f,
  SET_CPUID2: 0x4008ae90,
  GET_MP_STATE: 0x8004ae98,
  SET_MP_STATE: 0x4004ae99,
  GET_VCPU_EVENTS: 0x8040ae9f,
  SET_VCPU_EVENTS: 0x4040aea0,
  GET_XSAVE: 0x9000aea4,
  SET_XSAVE: 0x5000aea5,
  GET_XSAVE2: 0x9000aecf,
  GET_XCRS: 0x8188aea6,
  SET_XCRS: 0x4188aea7,
  PRE_FAULT_MEMORY: 0xc040aed5,
} as const;

export const CAP = {
  IRQCHIP: 0, HLT: 1, USER_MEMORY: 3, SET_TSS_ADDR: 4, EXT_CPUID: 7, NR_VCPUS: 9, NR_MEMSLOTS: 10,
  PIT2: 33, IOEVENTFD: 36, VCPU_EVENTS: 41, XSAVE: 55, XCRS: 56, IRQFD: 32, IMMEDIATE_EXIT: 136,
  XSAVE2: 208, USER_MEMORY2: 231, PRE_FAULT_MEMORY: 236,
} as const;

export const EXIT = {
  UNKNOWN: 0, EXCEPTION: 1, IO: 2, HYPERCALL: 3, DEBUG: 4, HLT: 5, MMIO: 6, IRQ_WINDOW_OPEN: 7,
  SHUTDOWN: 8, FAIL_ENTRY: 9, INTR: 10, INTERNAL_ERROR: 17, SYSTEM_EVENT: 24,
} as const;
export const EXIT_NAMES: Record<number, string> = Object.fromEntries(Object.entries(EXIT).map(([k, v]) => [v, k]));

export const SIZES = {
  regs: 144, sregs: 312, fpu: 416, lapic: 1024, irqchip: 520, pit2: 112, clock: 48, events: 64,
  xsave: 4096, xcrs: 392, run: 2352, cpuidEntry: 40, msrEntry: 16,
} as const;

/** Errors from KVM ioctls carry the ioctl name. */
function kio(fd: number, name: string, req: number, arg: Buffer | number): number {
  try {
    return ioctl(fd, req, arg);
  } catch (e) {
    if (e instanceof SyscallError) throw new SyscallError(`ioctl(${name})`, e.errno);
    throw e;
  }
}

// --- typed views -----------------------------------------------------------------------
export const REG_NAMES = ['rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rsp', 'rbp', 'r8', 'r9', 'r10', 'r11',
  'r12', 'r13', 'r14', 'r15', 'rip', 'rflags'] as const;
export type RegName = (typeof REG_NAMES)[number];
export type Regs = Record<RegName, bigint>;

export function decodeRegs(b: Buffer): Regs {
  const r = {} as Regs;
  REG_NAMES.forEach((n, i) => { r[n] = b.readBigUInt64LE(i * 8); });
  return r;
}
export function encodeRegs(r: Partial<Regs>, b: Buffer = Buffer.alloc(SIZES.regs)): Buffer {
  REG_NAMES.forEach((n, i) => { const v = r[n]; if (v !== undefined) b.writeBigUInt64LE(BigInt.asUintN(64, v), i * 8); });
  return b;
}

export interface Segment {
  base: bigint; limit: number; selector: number; type: number; present: number; dpl: number;
  db: number; s: number; l: number; g: number; avl: number; unusable: number;
}
const SEG_OFF = { cs: 0, ds: 24, es: 48, fs: 72, gs: 96, ss: 120, tr: 144, ldt: 168 } as const;
export type SegName = keyof typeof SEG_OFF;
export function readSegment(b: Buffer, off: number): Segment {
  return {
    base: b.readBigUInt64LE(off), limit: b.readUInt32LE(off + 8), selector: b.readUInt16LE(off + 12),
    type: b[off + 14]!, present: b[off + 15]!, dpl: b[off + 16]!, db: b[off + 17]!, s: b[off + 18]!,
    l: b[off + 19]!, g: b[off + 20]!, avl: b[off + 21]!, unusable: b[off + 22]!,
  };
}
export function writeSegment(b: Buffer, off: number, s: Segment): void {
  b.writeBigUInt64LE(s.base, off); b.writeUInt32LE(s.limit >>> 0, off + 8); b.writeUInt16LE(s.selector, off + 12);
  b[off + 14] = s.type; b[off + 15] = s.present; b[off + 16] = s.dpl; b[off + 17] = s.db; b[off + 18] = s.s;
  b[off + 19] = s.l; b[off + 20] = s.g; b[off + 21] = s.avl; b[off + 22] = s.unusable; b[off + 23] = 0;
}

/** kvm_sregs as a view: segments, descriptor tables and control registers in place. */
export class SregsView {
  constructor(readonly buf: Buffer = Buffer.alloc(SIZES.sregs)) {}
  seg(n: SegName): Segment { return readSegment(this.buf, SEG_OFF[n]); }
  setSeg(n: SegName, s: Segment): void { writeSegment(this.buf, SEG_OFF[n], s); }
  get gdt(): { base: bigint; limit: number } { return { base: this.buf.readBigUInt64LE(192), limit: this.buf.readUInt16LE(200) }; }
  set gdt(d: { base: bigint; limit: number }) { this.buf.writeBigUInt64LE(d.base, 192); this.buf.writeUInt16LE(d.limit, 200); }
  get idt(): { base: bigint; limit: number } { return { base: this.buf.readBigUInt64LE(208), limit: this.buf.readUInt16LE(216) }; }
  set idt(d: { base: bigint; limit: number }) { this.buf.writeBigUInt64LE(d.base, 208); this.buf.writeUInt16LE(d.limit, 216); }
  private u64(off: number): bigint { return this.buf.readBigUInt64LE(off); }
  private set64(off: number, v: bigint): void { this.buf.writeBigUInt64LE(v, off); }
  get cr0(): bigint { return this.u64(224); } set cr0(v: bigint) { this.set64(224, v); }
  get cr2(): bigint { return this.u64(232); } set cr2(v: bigint) { this.set64(232, v); }
  get cr3(): bigint { return this.u64(240); } set cr3(v: bigint) { this.set64(240, v); }
  get cr4(): bigint { return this.u64(248); } set cr4(v: bigint) { this.set64(248, v); }
  get cr8(): bigint { return this.u64(256); } set cr8(v: bigint) { this.set64(256, v); }
  get efer(): bigint { return this.u64(264); } set efer(v: bigint) { this.set64(264, v); }
  get apicBase(): bigint { return this.u64(272); } set apicBase(v: bigint) { this.set64(272, v); }
}

/**
 * kvm_run (mmap'ed per vCPU). Offsets: immediate_exit @1, exit_reason @8, the exit union @32.
 * io: direction u8 @32, size u8 @33, port u16 @34, count u32 @36, data_offset u64 @40.
 * mmio: phys_addr u64 @32, data[8] @40, len u32 @48, is_write u8 @52.
 */
export class RunView {
  readonly buf: Buffer;
  constructor(readonly mapping: Mapping) {
    this.buf = Buffer.from(koffi.view(mapping.ptr, mapping.len));
  }
  get exitReason(): number { return this.buf.readUInt32LE(8); }
  set immediateExit(v: boolean) { this.buf[1] = v ? 1 : 0; }
  get immediateExit(): boolean { return this.buf[1] === 1; }
  get io(): { out: boolean; size: number; port: number; count: number; dataOffset: number } {
    const b = this.buf;
    return { out: b[32] === 1, size: b[33]!, port: b.readUInt16LE(34), count: b.readUInt32LE(36), dataOffset: Number(b.readBigUInt64LE(40)) };
  }
  get mmio(): { addr: bigint; data: Buffer; len: number; isWrite: boolean } {
    const b = this.buf;
    return { addr: b.readBigUInt64LE(32), data: b.subarray(40, 48), len: b.readUInt32LE(48), isWrite: b[52] === 1 };
  }
  get internal(): { suberror: number; data: bigint[] } {
    const n = Math.min(this.buf.readUInt32LE(36), 16);
    const data: bigint[] = [];
    for (let i = 0; i < n; i++) data.push(this.buf.readBigUInt64LE(40 + i * 8));
    return { suberror: this.buf.readUInt32LE(32), data };
  }
  get failEntry(): { reason: bigint; cpu: number } {
    return { reason: this.buf.readBigUInt64LE(32), cpu: this.buf.readUInt32LE(40) };
  }
  get systemEvent(): { type: number } { return { type: this.buf.readUInt32LE(32) }; }
}

// --- system fd ------------------------------------------------------------------------
export class KvmSystem {
  readonly fd: number;
  readonly runSize: number;
  readonly cpuid: Buffer;
  readonly msrIndices: number[];
  readonly xsaveSize: number;
  private constructor() {
    this.fd = open('/dev/kvm', O.RDWR | O.CLOEXEC);
    const api = kio(this.fd, 'GET_API_VERSION', KVM.GET_API_VERSION, 0);
    if (api !== 12) throw new Error(`KVM API version ${api}, expected 12`);
    this.runSize = kio(this.fd, 'GET_VCPU_MMAP_SIZE', KVM.GET_VCPU_MMAP_SIZE, 0);
    this.cpuid = this.supportedCpuid();
    this.msrIndices = this.msrIndexList();
    const xs2 = this.check(CAP.XSAVE2);
    this.xsaveSize = xs2 > SIZES.xsave ? xs2 : SIZES.xsave;
  }
  private static inst: KvmSystem | null = null;
  static get(): KvmSystem { return (KvmSystem.inst ??= new KvmSystem()); }
  check(cap: number): number { return kio(this.fd, 'CHECK_EXTENSION', KVM.CHECK_EXTENSION, cap); }
  private supportedCpuid(): Buffer {
    const n = 256;
    const b = Buffer.alloc(8 + n * SIZES.cpuidEntry);
    b.writeUInt32LE(n, 0);
    kio(this.fd, 'GET_SUPPORTED_CPUID', KVM.GET_SUPPORTED_CPUID, b);
    const got = b.readUInt32LE(0);
    return b.subarray(0, 8 + got * SIZES.cpuidEntry);
  }
  private msrIndexList(): number[] {
    const b = Buffer.alloc(4 + 1024 * 4);
    b.writeUInt32LE(1024, 0);
    kio(this.fd, 'GET_MSR_INDEX_LIST', KVM.GET_MSR_INDEX_LIST, b);
    const n = b.readUInt32LE(0);
    const out: number[] = [];
    for (let i = 0; i < n; i++) out.push(b.readUInt32LE(4 + i * 4));
    return out;
  }
  createVm(): number { return kio(this.fd, 'CREATE_VM', KVM.CREATE_VM, 0); }
}

/** Whether this host can run the vm engine at all (tests skip with this reason). */
export function kvmUnavailableReason(): string | null {
  try {
    const fd = open('/dev/kvm', O.RDWR | O.CLOEXEC);
    close(fd);
    return null;
  } catch (e) {
    return `/dev/kvm not usable: ${(e as Error).message}`;
  }
}

// --- VM and vCPU ----------------------------------------------------------------------
export function setUserMemoryRegion(vmFd: number, slot: number, gpa: bigint, size: number, hva: bigint, flags = 0): void {
  const b = Buffer.alloc(32);
  b.writeUInt32LE(slot, 0); b.writeUInt32LE(flags, 4); b.writeBigUInt64LE(gpa, 8);
  b.writeBigUInt64LE(BigInt(size), 16); b.writeBigUInt64LE(hva, 24);
  kio(vmFd, 'SET_USER_MEMORY_REGION', KVM.SET_USER_MEMORY_REGION, b);
}
export function createIrqchip(vmFd: number): void { kio(vmFd, 'CREATE_IRQCHIP', KVM.CREATE_IRQCHIP, 0); }
export function createPit2(vmFd: number): void { kio(vmFd, 'CREATE_PIT2', KVM.CREATE_PIT2, Buffer.alloc(64)); }
export function setTssAddr(vmFd: number, addr: number): void { kio(vmFd, 'SET_TSS_ADDR', KVM.SET_TSS_ADDR, addr); }
export function createVcpu(vmFd: number, id: number): number { return kio(vmFd, 'CREATE_VCPU', KVM.CREATE_VCPU, id); }
export function mapRun(vcpuFd: number, size: number): RunView {
  return new RunView(mmap(size, PROT.READ | PROT.WRITE, MAP.SHARED, vcpuFd, 0));
}
export function unmapRun(run: RunView): void { munmap(run.mapping.addr, run.mapping.len); }
export function setCpuid(vcpuFd: number, cpuid: Buffer): void { kio(vcpuFd, 'SET_CPUID2', KVM.SET_CPUID2, Buffer.from(cpuid)); }
/** The mask applied to the thread while it is inside KVM_RUN (8-byte kernel sigset). */
export function setSignalMask(vcpuFd: number, mask8: Buffer): void {
  const b = Buffer.alloc(12);
  b.writeUInt32LE(8, 0);
  mask8.copy(b, 4, 0, 8);
  kio(vcpuFd, 'SET_SIGNAL_MASK', KVM.SET_SIGNAL_MASK, b);
}
export function kvmRun(vcpuFd: number): number { return ioctl(vcpuFd, KVM.RUN, 0); }

export function getRegs(fd: number): Buffer { const b = Buffer.alloc(SIZES.regs); kio(fd, 'GET_REGS', KVM.GET_REGS, b); return b; }
export function setRegs(fd: number, b: Buffer): void { kio(fd, 'SET_REGS', KVM.SET_REGS, b); }
export function getSregs(fd: number): SregsView { const v = new SregsView(); kio(fd, 'GET_SREGS', KVM.GET_SREGS, v.buf); return v; }
export function setSregs(fd: number, v: SregsView | Buffer): void { kio(fd, 'SET_SREGS', KVM.SET_SREGS, v instanceof SregsView ? v.buf : v); }

/** Complete vCPU state as raw buffers (plain data: cloneable, comparable, serializable). */
export interface VcpuState {
  regs: Buffer; sregs: Buffer; xsave: Buffer; xcrs: Buffer; lapic: Buffer; events: Buffer;
  mpState: number; msrs: Buffer;
}
export interface VmState { clock: Buffer; irqchips: Buffer[]; pit: Buffer }

/** kvm_msrs buffer for the given indices (values zero until GET_MSRS fills them). */
export function msrBuffer(indices: number[]): Buffer {
  const b = Buffer.alloc(8 + indices.length * SIZES.msrEntry);
  b.writeUInt32LE(indices.length, 0);
  indices.forEach((idx, i) => b.writeUInt32LE(idx, 8 + i * SIZES.msrEntry));
  return b;
}
export function getMsrs(fd: number, indices: number[]): { got: number; buf: Buffer } {
  const b = msrBuffer(indices);
  const got = kio(fd, 'GET_MSRS', KVM.GET_MSRS, b);
  return { got, buf: b };
}
export function setMsrs(fd: number, buf: Buffer): number { return kio(fd, 'SET_MSRS', KVM.SET_MSRS, buf); }

export function saveVcpu(fd: number, msrIndices: number[], xsaveSize: number): VcpuState {
  const regs = getRegs(fd);
  const sregs = getSregs(fd).buf;
  const xsave = Buffer.alloc(xsaveSize);
  kio(fd, 'GET_XSAVE2', xsaveSize > SIZES.xsave ? KVM.GET_XSAVE2 : KVM.GET_XSAVE, xsave);
  const xcrs = Buffer.alloc(SIZES.xcrs); kio(fd, 'GET_XCRS', KVM.GET_XCRS, xcrs);
  const lapic = Buffer.alloc(SIZES.lapic); kio(fd, 'GET_LAPIC', KVM.GET_LAPIC, lapic);
  const events = Buffer.alloc(SIZES.events); kio(fd, 'GET_VCPU_EVENTS', KVM.GET_VCPU_EVENTS, events);
  const mp = Buffer.alloc(4); kio(fd, 'GET_MP_STATE', KVM.GET_MP_STATE, mp);
  const { got, buf } = getMsrs(fd, msrIndices);
  buf.writeUInt32LE(got, 0);
  return { regs, sregs, xsave, xcrs, lapic, events, mpState: mp.readUInt32LE(0), msrs: buf.subarray(0, 8 + got * SIZES.msrEntry) };
}

/**
 * Restore order matters: sregs (CR/EFER) before MSRs, XCRS before XSAVE, LAPIC before events.
 * `full=false` restores only regs/sregs/xsave (enough for a CPL3 guest parked at a port/MMIO
 * exit with interrupts off); the default is the full set.
 */
export function restoreVcpu(fd: number, s: VcpuState, full = true): void {
  setSregs(fd, s.sregs);
  if (full) {
    const n = setMsrs(fd, s.msrs);
    const want = s.msrs.readUInt32LE(0);
    if (n !== want) throw new Error(`KVM_SET_MSRS set ${n} of ${want} (index ${s.msrs.readUInt32LE(8 + n * 16).toString(16)})`);
    kio(fd, 'SET_XCRS', KVM.SET_XCRS, s.xcrs);
  }
  kio(fd, 'SET_XSAVE', KVM.SET_XSAVE, s.xsave);
  setRegs(fd, s.regs);
  if (full) {
    kio(fd, 'SET_LAPIC', KVM.SET_LAPIC, s.lapic);
    const mp = Buffer.alloc(4); mp.writeUInt32LE(s.mpState, 0);
    kio(fd, 'SET_MP_STATE', KVM.SET_MP_STATE, mp);
    kio(fd, 'SET_VCPU_EVENTS', KVM.SET_VCPU_EVENTS, s.events);
  }
}

export function saveVm(vmFd: number): VmState {
  const clock = Buffer.alloc(SIZES.clock); kio(vmFd, 'GET_CLOCK', KVM.GET_CLOCK, clock);
  const irqchips: Buffer[] = [];
  for (let id = 0; id < 3; id++) {
    const b = Buffer.alloc(SIZES.irqchip); b.writeUInt32LE(id, 0);
    kio(vmFd, 'GET_IRQCHIP', KVM.GET_IRQCHIP, b);
    irqchips.push(b);
  }
  const pit = Buffer.alloc(SIZES.pit2); kio(vmFd, 'GET_PIT2', KVM.GET_PIT2, pit);
  return { clock, irqchips, pit };
}
export function restoreVm(vmFd: number, s: VmState): void {
  // kvm_clock_data: only the clock value and flags=0 may be passed back (other flags EINVAL).
  const clock = Buffer.alloc(SIZES.clock); s.clock.copy(clock, 0, 0, 8);
  kio(vmFd, 'SET_CLOCK', KVM.SET_CLOCK, clock);
  for (const b of s.irqchips) kio(vmFd, 'SET_IRQCHIP', KVM.SET_IRQCHIP, b);
  kio(vmFd, 'SET_PIT2', KVM.SET_PIT2, s.pit);
}

/** KVM_PRE_FAULT_MEMORY over [gpa, gpa+size): returns false when the host lacks it. */
export function preFaultMemory(vcpuFd: number, gpa: bigint, size: bigint): boolean {
  const b = Buffer.alloc(64);
  b.writeBigUInt64LE(gpa, 0); b.writeBigUInt64LE(size, 8);
  while (b.readBigUInt64LE(8) > 0n) {
    try { ioctl(vcpuFd, KVM.PRE_FAULT_MEMORY, b); } catch (e) {
      if (e instanceof SyscallError && (e.errno === 25 || e.errno === 22 || e.errno === 95)) return false;
      if (e instanceof SyscallError && e.errno === 4) continue;
      throw e;
    }
  }
  return true;
}

export { pointerFromAddress };

// --- vCPU threads -----------------------------------------------------------------------
// KVM_RUN blocks for as long as the guest runs, so it never runs on the daemon's event loop.
// Each pre-started worker_thread executes KVM_RUN for whichever vCPU it is handed (KVM allows
// any thread to run a vCPU; the fd is process-wide). Control is a SharedArrayBuffer:
// main -> worker with Atomics.notify, worker -> main with Atomics.notify + Atomics.waitAsync
// on the main side (no postMessage, no structured clone on the hot path). Serial-port output
// and MMIO-console output (one exit per byte) are handled inside the worker and handed over with the next result.
// Why not koffi's async calls: they run on libuv's shared thread pool (shared with fs/dns),
// and a pause needs the tid of the thread inside KVM_RUN to signal it, which a pooled
// thread cannot report. The worker reports its tid once at start-up.
//
// Pausing: the worker blocks SIGUSR2; every vCPU gets KVM_SET_SIGNAL_MASK = the worker's
// normal mask (SIGUSR2 unblocked) so a tgkill(SIGUSR2) makes a running KVM_RUN return EINTR
// without ever delivering the signal (it stays pending and the worker consumes it with
// sigtimedwait). immediate_exit=1 covers the window where KVM_RUN was not yet entered.
export const CTL = {
  CMD_SEQ: 0, DONE_SEQ: 1, OP: 2, FD: 3, RUN_LO: 4, RUN_HI: 5, RC: 6, ERRNO: 7, TID: 8,
  MASK_LO: 9, MASK_HI: 10, SERIAL_LEN: 11, READY: 12, RUNS: 13, WORDS: 16,
} as const;
export const CTL_OP = { RUN: 1, QUIT: 2 } as const;
export const SERIAL_CAP = 65536;
export const SERIAL_PORT = 0x3f8;
/** One-register MMIO console (guest/abi.h SERIAL_MMIO): also handled inside the worker. */
export const SERIAL_MMIO_ADDR = 0x10001000;

export const SIG_KICK = 12; // SIGUSR2
/** struct kvm_run offsets the vCPU thread reads (linux/kvm.h, x86_64). */
export const RUN_OFF = { EXIT_REASON: 8, IO_DIRECTION: 32, IO_SIZE: 33, IO_PORT: 34, IO_COUNT: 36, IO_DATA_OFFSET: 40, MMIO_ADDR: 32, MMIO_DATA: 40, MMIO_IS_WRITE: 52 } as const;
