// A function's invocation count, kept where spored's crash cannot take it: a small file of the
// function's own (<state-dir>/functions/<name>.count) mapped shared into spored. Counting a
// call is a store into that mapping, no syscall; the page belongs to the file (page cache), so
// what was counted up to the instant spored is killed (kill -9, a crash, an upgrade) is there
// for the next spored. (Written back to disk like any file page: a crash of the host itself
// can lose the last few seconds of counts.)
import { readFileSync } from 'node:fs';
import * as sys from '../sys/libc.js';
import { MAP, O, PROT } from '../sys/constants.js';

/** The file's size: one page; the count is the float64 (host byte order) at offset 0. */
const FILE_BYTES = 4096;

export class InvocationCount {
  private closed = false;
  private last = 0;

  private constructor(private readonly cell: Float64Array, private readonly mapping: sys.Mapping | null) {}

  /**
   * Open (or create, mode 0600) the count file at `path` and map it; `reset` starts it at 0
   * (a function deployed afresh). A file shorter than a page is extended with zeros; a count
   * that is not a non-negative whole number reads as 0. Throws SyscallError (open: ELOOP for a
   * symlink, ftruncate, mmap).
   */
  static open(path: string, reset = false): InvocationCount {
    const fd = sys.open(path, O.RDWR | O.CREAT | O.CLOEXEC | O.NOFOLLOW, 0o600);
    let mapping: sys.Mapping;
    try {
      sys.ftruncate(fd, FILE_BYTES);
      mapping = sys.mmap(FILE_BYTES, PROT.READ | PROT.WRITE, MAP.SHARED, fd);
    } finally {
      sys.close(fd); // the mapping keeps the file
    }
    const bytes = sys.mappingBytes(mapping);
    const cell = new Float64Array(bytes.buffer, bytes.byteOffset, 1);
    const v = cell[0] as number;
    if (reset || !Number.isSafeInteger(v) || v < 0) cell[0] = 0;
    return new InvocationCount(cell, mapping);
  }

  /** The count in the file at `path` without opening it for counting (0 when there is none or it is not a count). */
  static peek(path: string): number {
    let v = 0;
    try {
      const b = readFileSync(path);
      if (b.length >= 8) v = b.readDoubleLE(0);
    } catch { /* no file yet */ }
    return Number.isSafeInteger(v) && v >= 0 ? v : 0;
  }

  /** A count in spored's memory only (when the file cannot be made): lost with spored. */
  static inMemory(): InvocationCount {
    return new InvocationCount(new Float64Array(1), null);
  }

  get persistent(): boolean { return this.mapping !== null; }

  /** The count; after close, the last one seen. */
  get value(): number { return this.closed ? this.last : this.cell[0] as number; }

  /** One more call. A no-op once closed (the mapping is gone: touching it would crash spored). */
  increment(): void {
    if (!this.closed) this.cell[0] = (this.cell[0] as number) + 1;
  }

  /** Unmap; the file stays (it goes with the function's record). Idempotent. */
  close(): void {
    if (this.closed) return;
    this.last = this.cell[0] as number;
    this.closed = true;
    if (this.mapping) sys.munmap(this.mapping.addr, this.mapping.len);
  }
}
