// Function output: what a function's seeds and instances write to stdout and stderr goes
// through a pipe per lineage into a file per function, bounded, rotated and rate-limited,
// and never into spored's own log. `spore logs NAME` reads its tail.
//
// A function that prints as fast as it can must not slow spored for anyone else: each
// function has a byte budget per second; past it spored stops reading its pipes for a
// while, so the function's own writes block (and only the function slows down). Writes to
// the file are asynchronous, one per chunk.
import net from 'node:net';
import { createWriteStream, existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, openSync, readSync, closeSync, fstatSync, type WriteStream } from 'node:fs';
import { join } from 'node:path';
import * as sys from '../sys/libc.js';

/** Longest line kept; longer ones are cut with a marker. */
export const MAX_LOG_LINE = 16 * 1024;
/** What a line costs against the budget, in bytes, besides its own. */
const LINE_COST = 64;

interface FunctionOutput {
  readers: Set<net.Socket>;
  out: WriteStream | null;
  bytes: number;
  /** token bucket: bytes this function may still write before spored pauses its pipes */
  budget: number;
  refilledAt: number;
  paused: boolean;
  /** bytes dropped because a line was too long (counted, not kept) */
  cut: number;
}

export class FunctionLogs {
  private readonly fns = new Map<string, FunctionOutput>();

  /**
   * `dir` holds <name>.log and <name>.log.1; a file is rotated past `maxBytes`; a function may
   * write `bytesPerSecond` on average (bursts up to `burstBytes`).
   */
  constructor(readonly dir: string, private readonly maxBytes = 8 * 1024 * 1024, private readonly bytesPerSecond = 1024 * 1024, private readonly burstBytes = 1024 * 1024) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  }

  file(name: string): string {
    return join(this.dir, `${name}.log`);
  }

  private state(name: string): FunctionOutput {
    let f = this.fns.get(name);
    if (!f) {
      let bytes = 0;
      try { bytes = statSync(this.file(name)).size; } catch { /* new */ }
      f = { readers: new Set(), out: null, bytes, budget: this.burstBytes, refilledAt: performance.now(), paused: false, cut: 0 };
      this.fns.set(name, f);
    }
    return f;
  }

  /**
   * A new pipe for one of `name`'s lineages: returns the write end (the caller hands it to
   * the seed, which makes it fds 1 and 2); spored reads the other end until every holder
   * is gone.
   */
  open(name: string, tag: string): number {
    const [r, w] = sys.pipe(sys.O.CLOEXEC);
    const s = new net.Socket({ fd: r, readable: true, writable: false });
    const f = this.state(name);
    f.readers.add(s);
    let partial = '';
    s.setEncoding('utf8');
    s.on('data', (chunk: string) => {
      const lines = (partial + chunk).split('\n');
      partial = lines.pop() ?? '';
      if (partial.length > MAX_LOG_LINE) { lines.push(partial); partial = ''; }
      if (lines.length) this.append(name, f, tag, lines);
      // a line costs spored more than its bytes: newline floods pay for it
      this.charge(f, chunk.length + lines.length * LINE_COST);
    });
    s.on('error', () => undefined);
    s.on('close', () => {
      if (partial) this.append(name, f, tag, [partial]);
      f.readers.delete(s);
    });
    return w;
  }

  /** Spend from the function's budget; past it, stop reading its pipes until it refills. */
  private charge(f: FunctionOutput, n: number): void {
    const now = performance.now();
    f.budget = Math.min(this.burstBytes, f.budget + ((now - f.refilledAt) / 1000) * this.bytesPerSecond);
    f.refilledAt = now;
    f.budget -= n;
    if (f.budget >= 0 || f.paused) return;
    f.paused = true;
    for (const r of f.readers) r.pause();
    const waitMs = Math.min(5000, Math.ceil((-f.budget / this.bytesPerSecond) * 1000));
    setTimeout(() => {
      f.paused = false;
      for (const r of f.readers) r.resume();
    }, waitMs).unref();
  }

  private append(name: string, f: FunctionOutput, tag: string, lines: string[]): void {
    const at = new Date().toISOString();
    let text = '';
    let blank = 0;
    const flushBlank = (): void => {
      if (blank > 1) text += `${at} ${tag} …[${blank} empty lines]\n`;
      else if (blank === 1) text += `${at} ${tag} \n`;
      blank = 0;
    };
    for (const l of lines) {
      if (l === '' || l === '\r') { blank++; continue; }
      flushBlank();
      if (l.length > MAX_LOG_LINE) { f.cut += l.length - MAX_LOG_LINE; text += `${at} ${tag} ${l.slice(0, MAX_LOG_LINE)}…[cut ${l.length - MAX_LOG_LINE} bytes]\n`; }
      else text += `${at} ${tag} ${l}\n`;
    }
    flushBlank();
    if (f.bytes + text.length > this.maxBytes && f.bytes > 0) {
      // rotate: rename first; the old stream's fd still points at the renamed file, so what
      // it holds lands in .1, and the next stream starts a fresh file
      try { renameSync(this.file(name), `${this.file(name)}.1`); } catch { /* removed meanwhile */ }
      f.out?.end();
      f.out = null;
      f.bytes = 0;
    }
    if (!f.out) {
      // opened now (not when the stream gets to it): a rotation right after must find the file
      f.out = createWriteStream(this.file(name), { fd: openSync(this.file(name), 'a', 0o600) });
      // a full disk must not take spored down; the output is lost
      f.out.on('error', () => undefined);
    }
    f.out.write(text);
    f.bytes += text.length;
  }

  /** The last `bytes` of the function's output (starting at a line), '' when there is none. */
  tail(name: string, bytes = 64 * 1024): string {
    const f = this.file(name);
    let text = '';
    if (existsSync(f)) try {
      const fd = openSync(f, 'r');
      try {
        const size = fstatSync(fd).size;
        const want = Math.min(size, bytes);
        const buf = Buffer.alloc(want);
        readSync(fd, buf, 0, want, size - want);
        text = buf.toString('utf8');
        if (want < size) {
          const nl = text.indexOf('\n');
          text = nl >= 0 ? text.slice(nl + 1) : '';
        }
      } finally {
        closeSync(fd);
      }
    } catch { /* rotated or removed meanwhile */ }
    if (text.length < bytes && existsSync(`${f}.1`)) {
      const older = readFileSync(`${f}.1`, 'utf8');
      const room = bytes - text.length;
      let part = older.slice(Math.max(0, older.length - room));
      if (part.length < older.length) { const nl = part.indexOf('\n'); part = nl >= 0 ? part.slice(nl + 1) : ''; }
      text = part + text;
    }
    return text;
  }

  /** Wait until what was written so far is in the file (tests, `spore logs` right after an invoke). */
  async flush(name: string): Promise<void> {
    // polled, not 'drain': a stream emits that only after a write went past its high-water
    // mark, so a short backlog never got one and `spore logs` waited for ever. At most 2 s.
    const until = performance.now() + 2000;
    for (let out = this.fns.get(name)?.out; out && out.writableLength > 0 && performance.now() < until; out = this.fns.get(name)?.out) {
      await new Promise((r) => setTimeout(r, 2));
    }
  }

  /** Forget a removed function's output. */
  remove(name: string): void {
    const f = this.fns.get(name);
    for (const s of f?.readers ?? []) s.destroy();
    f?.out?.destroy();
    this.fns.delete(name);
    rmSync(this.file(name), { force: true });
    rmSync(`${this.file(name)}.1`, { force: true });
  }

  close(): void {
    for (const f of this.fns.values()) {
      for (const s of f.readers) s.destroy();
      f.out?.end();
    }
    this.fns.clear();
  }
}
