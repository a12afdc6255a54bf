// A lineage's per-instance /tmp slots (tmpfs mounts under SLOT_DIR in the lineage's mount
// namespace, named unguessably; seeds/protocol.ts). An instance owns one from fork to exit;
// callers beyond the lineage's slots wait in order. A released slot is emptied before it
// is handed out again: the next instance must find nothing of the previous one.
import { readdirSync, rmSync } from 'node:fs';
import { Overloaded } from '../runtime/errors.js';

export class SlotPool {
  private readonly free: string[];
  private readonly waiters: ((slot: string) => void)[] = [];
  readonly size: number;

  /**
   * `names` are the slots' names under the slot directory; `root()` is that directory's host
   * path (through a live process of the lineage), or null once the lineage is gone.
   */
  constructor(names: string[], private readonly root: () => string | null) {
    this.free = [...names];
    this.size = names.length;
  }

  /**
   * A free slot, waiting for one when all are taken; `maxWaiting` callers may wait, the next
   * one gets Overloaded at once (answered, not timed out).
   */
  acquire(maxWaiting = Number.POSITIVE_INFINITY): Promise<string> {
    const s = this.free.shift();
    if (s !== undefined) return Promise.resolve(s);
    if (this.waiters.length >= maxWaiting) {
      return Promise.reject(new Overloaded(`all ${this.size} instances of this function are busy and ${this.waiters.length} calls are waiting; retry later`));
    }
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Every slot's name (to mount them). */
  names(): string[] {
    return [...this.free];
  }

  /** Callers waiting for a slot. */
  get waiting(): number {
    return this.waiters.length;
  }

  get inUse(): number {
    return this.size - this.free.length;
  }

  /** Empty the slot (its owner is dead by now) and hand it to the next waiter. */
  release(slot: string): void {
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
