// Result channels: a pool of named FIFOs in <runDir>/results/, one per instance at a time,
// through which an instance hands its result straight to spored. Before this, results went
// child -> pipe -> seed -> socket -> spored; the seed's part (a stream per instance, a relay,
// all under copy-on-write right after each fork) cost it CPU and the response a hop.
//
// spored holds each FIFO open read-write, so it never sees EOF and a writer never blocks
// on open. A slot belongs to one instance from acquire to release, and release comes after
// the instance's cgroup is empty, so nothing from an earlier owner can still write into it;
// acquire drains what might be left anyway. Files are root-only (0600): instances open
// theirs while still root, before dropping privileges. Lines carry the instance's token.
import net from 'node:net';
import { mkdirSync, rmSync, readdirSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import * as sys from '../runtime/sys/libc.js';
import { FailedPrecondition } from '../runtime/errors.js';

const S_IFIFO = 0o010000;
/** a result larger than this is dropped (the instance is reported as failed) */
export const MAX_RESULT_LINE = 64 * 1024 * 1024;

export interface ResultFifoSnapshot { size: number; free: number; inUse: number; dropped: number }

interface Slot { index: number; path: string; fd: number; stream: net.Socket; buf: string; overflow: boolean }

export class ResultFifoPool {
  private readonly slots: Slot[] = [];
  private readonly free: number[] = [];
  private dropped = 0;

  /** `onLine(slot, line)` for every complete line read from a slot (without the newline). */
  constructor(private readonly dir: string, private readonly onLine: (slot: number, line: string) => void) {}

  fill(size: number): void {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    for (const e of readdirSync(this.dir)) rmSync(join(this.dir, e), { force: true });
    for (let i = 0; i < size; i++) {
      const path = join(this.dir, String(i));
      sys.mknod(path, S_IFIFO | 0o600, 0, 0);
      const fd = sys.open(path, sys.O.RDWR | sys.O.NONBLOCK | sys.O.CLOEXEC);
      const slot: Slot = { index: i, path, fd, stream: new net.Socket({ fd, readable: true, writable: false }), buf: '', overflow: false };
      slot.stream.setEncoding('utf8');
      slot.stream.on('data', (d: string) => this.onData(slot, d));
      slot.stream.on('error', () => undefined);
      this.slots.push(slot);
      this.free.push(i);
    }
  }

  private onData(slot: Slot, d: string): void {
    if (slot.overflow) return;
    slot.buf += d;
    for (let nl = slot.buf.indexOf('\n'); nl >= 0; nl = slot.buf.indexOf('\n')) {
      const line = slot.buf.slice(0, nl);
      slot.buf = slot.buf.slice(nl + 1);
      this.onLine(slot.index, line);
    }
    if (slot.buf.length > MAX_RESULT_LINE) { slot.buf = ''; slot.overflow = true; this.dropped++; }
  }

  /** A free slot, drained; null when all are in use (the caller falls back to its seed). */
  acquire(): number | null {
    const i = this.free.shift();
    if (i === undefined) return null;
    const slot = this.slots[i] as Slot;
    slot.buf = '';
    slot.overflow = false;
    return i;
  }

  /** Bytes of an unfinished line in the slot: a result still arriving. */
  pending(i: number): number {
    return this.slots[i]?.buf.length ?? 0;
  }

  release(i: number): void {
    const slot = this.slots[i];
    if (!slot) throw new FailedPrecondition(`result slot ${i} does not exist`);
    if (this.free.includes(i)) throw new FailedPrecondition(`result slot ${i} is not in use`);
    slot.buf = '';
    slot.overflow = false;
    this.free.push(i);
  }

  snapshot(): ResultFifoSnapshot {
    return { size: this.slots.length, free: this.free.length, inUse: this.slots.length - this.free.length, dropped: this.dropped };
  }

  close(): void {
    for (const s of this.slots) s.stream.destroy();
    this.slots.length = 0;
    this.free.length = 0;
    if (existsSync(this.dir)) rmSync(this.dir, { recursive: true, force: true });
  }
}
