// Host uid/gid ranges for function user namespaces: one ID_RANGE-sized range per function,
// distinct per function and unique on the node, across every spored on it. A range is a
// file named by its index under a node-wide directory, created with O_EXCL (the kernel
// arbitrates concurrent spored instances); it names its owner (state dir, function, pid).
// A range whose owner process is gone is free again: nothing a function leaves owned by
// its ids outlives it (its /tmp is tmpfs, its package is root's).
import { mkdirSync, openSync, readdirSync, readFileSync, rmSync, writeSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { ResourceExhausted } from '../sys/errors.js';
import { ID_RANGE } from './sandbox.js';
import { writeFileAtomic } from '../sys/atomic-file.js';

/** First host id of range 0: above any host account and the usual subuid ranges (100000+). */
export const ID_BASE = 1 << 30;
export const ID_RANGES = 16384;

export interface RangeOwner { stateDir: string; name: string; pid: number }

export class IdRanges {
  constructor(readonly dir = '/var/lib/spore/idmaps', private readonly isAlive: (pid: number) => boolean = () => true) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  }

  private read(k: number): RangeOwner | null {
    try { return JSON.parse(readFileSync(join(this.dir, String(k)), 'utf8')) as RangeOwner; } catch { return null; }
  }

  /**
   * The function's range (its first host id): the one it already holds in this state dir,
   * else the lowest free one. ResourceExhausted when all ID_RANGES are taken.
   */
  acquire(stateDir: string, name: string): number {
    const me: RangeOwner = { stateDir, name, pid: process.pid };
    const used = new Set<number>();
    for (const e of readdirSync(this.dir)) {
      if (!/^\d+$/.test(e)) continue;
      const k = Number(e);
      const o = this.read(k);
      if (o && o.stateDir === stateDir && o.name === name) {
        this.write(k, me);
        return ID_BASE + k * ID_RANGE;
      }
      if (o && !this.isAlive(o.pid)) { rmSync(join(this.dir, e), { force: true }); continue; }
      used.add(k);
    }
    for (let k = 0; k < ID_RANGES; k++) {
      if (used.has(k)) continue;
      let fd: number;
      try { fd = openSync(join(this.dir, String(k)), 'wx', 0o600); } catch { continue; /* taken meanwhile */ }
      writeSync(fd, JSON.stringify(me));
      closeSync(fd);
      return ID_BASE + k * ID_RANGE;
    }
    throw new ResourceExhausted(`all ${ID_RANGES} function id ranges on this node are taken; remove functions`);
  }

  private write(k: number, o: RangeOwner): void {
    writeFileAtomic(join(this.dir, String(k)), JSON.stringify(o), { tmp: join(this.dir, `.${k}.${process.pid}`) });
  }

  /** Give a function's range back (when the function is removed). */
  release(hostId: number): void {
    const k = (hostId - ID_BASE) / ID_RANGE;
    if (Number.isInteger(k) && k >= 0) rmSync(join(this.dir, String(k)), { force: true });
  }
}
