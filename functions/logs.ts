// Function output: what a function's seeds and instances write to stdout and stderr goes
// through a pipe per lineage into a file per function, bounded and rotated, and never into
// spored's own log. `spore logs NAME` reads its tail.
import net from 'node:net';
import { appendFileSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, openSync, readSync, closeSync, fstatSync } from 'node:fs';
import { join } from 'node:path';
import * as sys from '../runtime/sys/libc.js';

/** Longest line kept; longer ones are cut with a marker. */
export const MAX_LOG_LINE = 16 * 1024;

export class FunctionLogs {
  private readonly readers = new Map<string, Set<net.Socket>>();

  /** `dir` holds <name>.log and <name>.log.1; a file is rotated past `maxBytes`. */
  constructor(readonly dir: string, private readonly maxBytes = 8 * 1024 * 1024) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  }

  file(name: string): string {
    return join(this.dir, `${name}.log`);
  }

  /**
   * A new pipe for one of `name`'s lineages: returns the write end (the caller hands it to
   * the seed, which makes it fds 1 and 2); spored reads the other end until every holder
   * is gone.
   */
  open(name: string, tag: string): number {
    const [r, w] = sys.pipe(sys.O.CLOEXEC);
    const s = new net.Socket({ fd: r, readable: true, writable: false });
    let set = this.readers.get(name);
    if (!set) this.readers.set(name, (set = new Set()));
    set.add(s);
    let partial = '';
    s.setEncoding('utf8');
    s.on('data', (chunk: string) => {
      const lines = (partial + chunk).split('\n');
      partial = lines.pop() ?? '';
      if (partial.length > MAX_LOG_LINE) { lines.push(partial); partial = ''; }
      if (lines.length) this.append(name, tag, lines);
    });
    s.on('error', () => undefined);
    s.on('close', () => {
      if (partial) this.append(name, tag, [partial]);
      set?.delete(s);
    });
    return w;
  }

  private append(name: string, tag: string, lines: string[]): void {
    const at = new Date().toISOString();
    const text = lines.map((l) => `${at} ${tag} ${l.length > MAX_LOG_LINE ? `${l.slice(0, MAX_LOG_LINE)}…[cut ${l.length - MAX_LOG_LINE} bytes]` : l}\n`).join('');
    const f = this.file(name);
    try {
      if (existsSync(f) && statSync(f).size + text.length > this.maxBytes) renameSync(f, `${f}.1`);
      appendFileSync(f, text, { mode: 0o600 });
    } catch { /* a full disk must not take spored down; the output is lost */ }
  }

  /** The last `bytes` of the function's output (starting at a line), '' when there is none. */
  tail(name: string, bytes = 64 * 1024): string {
    const f = this.file(name);
    let text = '';
    try {
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
    } catch { return ''; }
    if (text.length < bytes && existsSync(`${f}.1`)) {
      const older = readFileSync(`${f}.1`, 'utf8');
      const room = bytes - text.length;
      let part = older.slice(Math.max(0, older.length - room));
      if (part.length < older.length) { const nl = part.indexOf('\n'); part = nl >= 0 ? part.slice(nl + 1) : ''; }
      text = part + text;
    }
    return text;
  }

  /** Forget a removed function's output. */
  remove(name: string): void {
    for (const s of this.readers.get(name) ?? []) s.destroy();
    this.readers.delete(name);
    rmSync(this.file(name), { force: true });
    rmSync(`${this.file(name)}.1`, { force: true });
  }

  close(): void {
    for (const set of this.readers.values()) for (const s of set) s.destroy();
    this.readers.clear();
  }
}
