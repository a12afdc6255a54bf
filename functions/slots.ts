// A lineage's per-instance /tmp slots (tmpfs mounts under SLOT_DIR in the lineage's mount
// namespace, named unguessably; seeds/protocol.ts). An instance owns one from fork to exit;
// at most `concurrency` are owned at once and callers beyond that wait in order (a bounded
// number of them). A released slot is never walked by path (function code controls what is
// in it: a symlink swapped in mid-walk would point spored, as root, at the host); it is
// replaced instead: `renew` has the lineage's L1 parent unmount it and mount a fresh tmpfs,
// in batches, off the response path. There are more slots than `concurrency`, so renewal
// rarely makes anyone wait.
//
// A batch costs the L1 seed a fork whatever its size, so used slots wait until fewer than
// `concurrency` fresh ones are left (a full burst still finds fresh slots), someone waits, or
// the pool has been quiet for IDLE_RENEW_MS: at one call at a time that is one fork per
// `concurrency` calls instead of one per call. A used slot is never handed out before its
// renewal: reusing one that looked untouched was tried and dropped, because a tmpfs keeps
// its inode counter and its root's times, which an instance can set for a later one to read.
import { Overloaded } from '../sys/errors.js';

/** Quiet this long after a release, the used slots are renewed even below the batch size. */
export const IDLE_RENEW_MS = 200;

export class SlotPool {
  private readonly free: string[];
  private readonly dirty: string[] = [];
  private readonly waiters: ((slot: string) => void)[] = [];
  private owned = 0;
  private renewing = false;
  private broken = 0;
  private idleTimer: NodeJS.Timeout | null = null;
  /** renewals started (each one a fork of the L1 seed, whatever its size) */
  batches = 0;
  readonly size: number;

  /**
   * `names`: every slot (more than `concurrency`); `renew(names)` replaces those slots with
   * fresh, empty ones (rejects when it could not: those slots are then out of service).
   */
  constructor(names: string[], readonly concurrency: number, private readonly renew: (names: string[]) => Promise<void>) {
    this.free = [...names];
    this.size = names.length;
  }

  /**
   * A fresh slot, waiting for one when `concurrency` are owned (or none is fresh yet);
   * `maxWaiting` callers may wait, the next one gets Overloaded at once (answered, not
   * timed out).
   */
  acquire(maxWaiting = Number.POSITIVE_INFINITY): Promise<string> {
    if (this.owned < this.concurrency && this.waiters.length === 0) {
      const s = this.free.shift();
      if (s !== undefined) { this.owned++; return Promise.resolve(s); }
    }
    if (this.waiters.length >= maxWaiting) {
      return Promise.reject(new Overloaded(`all ${this.concurrency} instances of this function are busy and ${this.waiters.length} calls are waiting; retry later`));
    }
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Every slot's name (to mount them, before any is used). */
  names(): string[] {
    return [...this.free];
  }

  /** Callers waiting for a slot. */
  get waiting(): number {
    return this.waiters.length;
  }

  /** Slots owned by instances now. */
  get inUse(): number {
    return this.owned;
  }

  /** Used slots waiting to be renewed, and slots lost to failed renewals. */
  get pending(): { dirty: number; broken: number; batches: number } {
    return { dirty: this.dirty.length, broken: this.broken, batches: this.batches };
  }

  /** Its owner is dead (its cgroup emptied): the slot is renewed before anyone gets it again. */
  release(slot: string): void {
    this.owned--;
    this.dirty.push(slot);
    this.hand();
    this.renewSoon();
  }

  private hand(): void {
    while (this.waiters.length && this.owned < this.concurrency && this.free.length) {
      const next = this.waiters.shift() as (slot: string) => void;
      this.owned++;
      next(this.free.shift() as string);
    }
  }

  private renewSoon(): void {
    if (this.renewing || this.dirty.length === 0) return;
    if (this.free.length >= this.concurrency && this.waiters.length === 0) {
      // enough fresh slots for a full burst: wait for a bigger batch, or for a quiet moment
      this.idleTimer ??= setTimeout(() => { this.idleTimer = null; this.renewNow(); }, IDLE_RENEW_MS);
      this.idleTimer.unref();
      return;
    }
    this.renewNow();
  }

  private renewNow(): void {
    if (this.renewing || this.dirty.length === 0) return;
    if (this.idleTimer) { clearTimeout(this.idleTimer); this.idleTimer = null; }
    this.renewing = true;
    this.batches++;
    const batch = this.dirty.splice(0);
    void this.renew(batch).then(
      () => { this.free.push(...batch); },
      () => { this.broken += batch.length; },
    ).finally(() => {
      this.renewing = false;
      this.hand();
      this.renewSoon();
    });
  }
}
