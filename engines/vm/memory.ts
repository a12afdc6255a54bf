// Guest memory: one memfd per root seed, mapped MAP_SHARED while the seed boots, then sealed
// (immutable) and mapped MAP_PRIVATE by every fork (copy-on-write in the host page tables).
import { readFileSync } from 'node:fs';
import koffi from 'koffi';
import {
  addSeals, close, F_SEAL, ftruncate, MAP, memfdCreate, MFD, mmap, mmapFixed, munmap, PROT, madviseRange, MADV, type Mapping,
} from '../../sys/libc.js';
import { InvalidArgument } from '../../sys/errors.js';
import { PD_GPA, PDPT_GPA, PML4_GPA } from './abi.js';

export class GuestMapping {
  readonly buf: Buffer;
  private closed = false;
  constructor(readonly m: Mapping, buf?: Buffer) {
    this.buf = buf ?? Buffer.from(koffi.view(m.ptr, m.len));
  }
  get addr(): bigint { return this.m.addr; }
  get size(): number { return this.m.len; }
  unmap(): void {
    if (this.closed) return;
    this.closed = true;
    munmap(this.m.addr, this.m.len);
  }
  /**
   * Drop the contents but keep the address range reserved (PROT_NONE, no memory), so the
   * VM shell's memslot can take the next fork's mapping at the same address.
   */
  release(): void {
    if (this.closed) return;
    this.closed = true;
    mmapFixed(this.m.addr, this.m.len, PROT.NONE, MAP.PRIVATE | MAP.ANONYMOUS | MAP.NORESERVE, -1, 0);
  }
}

/** Reserve an address range for a shell's memslot (no memory behind it yet). */
export function reserveGuestRange(size: number): Mapping {
  return mmap(size, PROT.NONE, MAP.PRIVATE | MAP.ANONYMOUS | MAP.NORESERVE, -1, 0);
}

export class GuestMemoryFile {
  sealed = false;
  constructor(readonly fd: number, readonly size: number) {}
  static create(name: string, size: number): GuestMemoryFile {
    const fd = memfdCreate(`spore-vm-${name}`, MFD.CLOEXEC | MFD.ALLOW_SEALING);
    try { ftruncate(fd, size); } catch (e) { close(fd); throw e; }
    return new GuestMemoryFile(fd, size);
  }
  /** Writable shared mapping at `at` (a shell's reserved range) for booting the seed. */
  mapSharedAt(at: bigint, buf?: Buffer): GuestMapping {
    return new GuestMapping(mmapFixed(at, this.size, PROT.READ | PROT.WRITE, MAP.SHARED, this.fd, 0), buf);
  }
  /**
   * Copy-on-write view for a fork, placed over the shell's reserved range (MAP_FIXED): the
   * memslot stays as it is and KVM's MMU notifier drops the previous tenant's mappings.
   */
  mapPrivateAt(at: bigint, buf?: Buffer): GuestMapping {
    return new GuestMapping(mmapFixed(at, this.size, PROT.READ | PROT.WRITE, MAP.PRIVATE | MAP.NORESERVE, this.fd, 0), buf);
  }
  mapPrivate(): GuestMapping {
    return new GuestMapping(mmap(this.size, PROT.READ | PROT.WRITE, MAP.PRIVATE | MAP.NORESERVE, this.fd, 0));
  }
  /** Make the seed immutable: no writes (no shared writable mapping may exist), no resize. */
  seal(): void {
    addSeals(this.fd, F_SEAL.WRITE | F_SEAL.SHRINK | F_SEAL.GROW | F_SEAL.SEAL);
    this.sealed = true;
  }
  close(): void { close(this.fd); }
}

/** Page runs, in 4 KiB pages, that a fork populates before it runs (host-side prefill). */
export interface WorkingSet { read: [number, number][]; write: [number, number][] }

export function prefill(m: GuestMapping, ws: WorkingSet): void {
  for (const [first, n] of ws.read) madviseRange(m.addr + BigInt(first * 4096), n * 4096, MADV.POPULATE_READ);
  for (const [first, n] of ws.write) madviseRange(m.addr + BigInt(first * 4096), n * 4096, MADV.POPULATE_WRITE);
}

/**
 * Record which pages of a (forked, MAP_PRIVATE) mapping are resident, split into pages still
 * shared with the seed file (read working set) and pages copied on write (write working set),
 * from /proc/self/pagemap (bit 63 present, bit 61 file-backed/shared).
 */
export function recordWorkingSet(m: GuestMapping, pagemapFd: number, readAt: (fd: number, buf: Buffer, off: bigint) => number): WorkingSet {
  const pages = m.size / 4096;
  const buf = Buffer.alloc(pages * 8);
  const got = readAt(pagemapFd, buf, (m.addr / 4096n) * 8n);
  const read: number[] = [], write: number[] = [];
  for (let i = 0; i < got / 8; i++) {
    const e = buf.readBigUInt64LE(i * 8);
    if (!(e >> 63n)) continue;
    if ((e >> 61n) & 1n) read.push(i); else write.push(i);
  }
  return { read: runs(read), write: runs(write) };
}
function runs(pages: number[]): [number, number][] {
  const out: [number, number][] = [];
  for (const p of pages) {
    const last = out[out.length - 1];
    if (last && last[0] + last[1] === p) last[1]++; else out.push([p, 1]);
  }
  return out;
}

// --- ELF64 loader ----------------------------------------------------------------------
export interface LoadedElf { entry: bigint; end: number }
export function loadElf(path: string, mem: Buffer): LoadedElf {
  const f = readFileSync(path);
  if (f.readUInt32BE(0) !== 0x7f454c46 || f[4] !== 2 || f[5] !== 1) throw new InvalidArgument(`${path}: not an ELF64 LE file`);
  if (f.readUInt16LE(18) !== 62) throw new InvalidArgument(`${path}: not x86_64`);
  const entry = f.readBigUInt64LE(24);
  const phoff = Number(f.readBigUInt64LE(32));
  const phentsize = f.readUInt16LE(54), phnum = f.readUInt16LE(56);
  let end = 0;
  for (let i = 0; i < phnum; i++) {
    const o = phoff + i * phentsize;
    if (f.readUInt32LE(o) !== 1) continue; // PT_LOAD
    const off = Number(f.readBigUInt64LE(o + 8));
    const paddr = Number(f.readBigUInt64LE(o + 24));
    const filesz = Number(f.readBigUInt64LE(o + 32));
    const memsz = Number(f.readBigUInt64LE(o + 40));
    if (paddr + memsz > mem.length) throw new InvalidArgument(`${path}: segment ${i} beyond guest memory`);
    f.copy(mem, paddr, off, off + filesz);
    mem.fill(0, paddr + filesz, paddr + memsz);
    end = Math.max(end, paddr + memsz);
  }
  return { entry, end };
}

/**
 * Identity map of the first 1 GiB with 2 MiB pages (1 GiB pages triple-fault on this host),
 * user-accessible, with Accessed/Dirty preset so the CPU never writes to these pages (a
 * write would copy the page in every fork).
 */
export function writeBootPageTables(mem: Buffer): bigint {
  const P = 1n, RW = 2n, US = 4n, A = 0x20n, D = 0x40n, PS = 0x80n;
  mem.fill(0, PML4_GPA, PD_GPA + 4096);
  mem.writeBigUInt64LE(BigInt(PDPT_GPA) | P | RW | US | A, PML4_GPA);
  mem.writeBigUInt64LE(BigInt(PD_GPA) | P | RW | US | A, PDPT_GPA);
  for (let i = 0; i < 512; i++) mem.writeBigUInt64LE((BigInt(i) << 21n) | P | RW | US | A | D | PS, PD_GPA + i * 8);
  return BigInt(PML4_GPA);
}
