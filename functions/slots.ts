// A lineage's per-instance /tmp slots (functions/sandbox.ts: tmpfs mounts 0..n-1 under
// SLOT_DIR in the lineage's mount namespace). An instance owns one from fork to exit;
// callers beyond the lineage's slots wait in order. A released slot is emptied before it
// is handed out again: the next instance must find nothing of the previous one.
import { readdirSync, rmSync } from 'node:fs';

export class SlotPool {
  private readonly free: number[];
  private readonly waiters: ((slot: number) => void)[] = [];

  /** `root()` is the host path of the slot directory (through a live process of the lineage), or null. */
  constructor(readonly size: number, private readonly root: () => string | null) {
    this.free = Array.from({ length: size }, (_, i) => i);
  }

  /** A free slot, waiting for one when all are taken. */
  acquire(): Promise<number> {
    const s = this.free.shift();
    if (s !== undefined) return Promise.resolve(s);
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Callers waiting for a slot. */
  get waiting(): number {
    return this.waiters.length;
  }

  get inUse(): number {
    return this.size - this.free.length;
  }

  /** Empty the slot (its owner is dead by now) and hand it to the next waiter. */
  release(slot: number): void {
    const dir = this.root();
    if (dir) {
      try {
        for (const e of readdirSync(`${dir}/${slot}`)) rmSync(`${dir}/${slot}/${e}`, { recursive: true, force: true });
      } catch { /* the lineage is gone, and its mounts with it */ }
    }
    const next = this.waiters.shift();
    if (next) next(slot);
    else this.free.push(slot);
  }
}
