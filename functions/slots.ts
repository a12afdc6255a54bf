// A lineage's per-instance /tmp slots (tmpfs mounts under SLOT_DIR in the lineage's mount
// namespace, named unguessably; seeds/protocol.ts). An instance owns one from fork to exit;
// at most `concurrency` are owned at once and callers beyond that wait in order (a bounded
// number of them). A released slot is never walked by path (function code controls what is
// in it: a symlink swapped in mid-walk would point spored, as root, at the host); it is
// replaced instead: `renew` has the lineage's L1 parent unmount it and mount a fresh tmpfs,
// in batches, off the response path. There are more slots than `concurrency`, so renewal
// rarely makes anyone wait. A slot its instance left as it found it (nothing allocated, the
// root directory untouched) is not replaced: that is most calls, and replacing one costs the
// L1 seed a fork and a umount/mount.
import { statfsSync, statSync } from 'node:fs';
import { Overloaded } from '../sys/errors.js';
import { listxattrBytes } from '../sys/libc.js';

/** What a fresh slot's root looks like (from the first slot, right after mounting). */
export interface SlotRootLook {
  mode: number;
  uid: number;
  gid: number;
  xattrBytes: number;
}

/** The look of a slot's root directory, `root` being its path from spored (through /proc/<seed>/root). */
export function slotRootLook(root: string): SlotRootLook {
  const st = statSync(root);
  return { mode: st.mode, uid: st.uid, gid: st.gid, xattrBytes: listxattrBytes(root) };
}

/**
 * Whether the tmpfs at `root` is as fresh as a new one: one inode (its root), no block used,
 * the root's mode, owner and extended attributes as `fresh`. Reads metadata of the mount's
 * root only, never a name inside it (function code controls those). Any error: not fresh.
 */
export function slotIsFresh(root: string, fresh: SlotRootLook): boolean {
  try {
    const fs = statfsSync(root);
    if (fs.type !== TMPFS_MAGIC || fs.files - fs.ffree !== 1 || fs.bfree !== fs.blocks) return false;
    const look = slotRootLook(root);
    return look.mode === fresh.mode && look.uid === fresh.uid && look.gid === fresh.gid && look.xattrBytes === fresh.xattrBytes;
  } catch {
    return false;
  }
}

/** statfs(2) f_type of tmpfs (linux/magic.h) */
const TMPFS_MAGIC = 0x01021994;

export class SlotPool {
  private readonly free: string[];
  private readonly dirty: string[] = [];
  private readonly waiters: ((slot: string) => void)[] = [];
  private owned = 0;
  private renewing = false;
  private broken = 0;
  /** released slots found fresh and reused without renewal */
  reused = 0;
  readonly size: number;

  /**
   * `names`: every slot (more than `concurrency`); `renew(names)` replaces those slots with
   * fresh, empty ones (rejects when it could not: those slots are then out of service).
   */
  constructor(
    names: string[],
    readonly concurrency: number,
    private readonly renew: (names: string[]) => Promise<void>,
    /** whether a released slot is still fresh (then it is reused as it is); absent: never */
    private readonly fresh: (slot: string) => boolean = () => false,
  ) {
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
  get pending(): { dirty: number; broken: number } {
    return { dirty: this.dirty.length, broken: this.broken };
  }

  /** Its owner is dead (its cgroup emptied): the slot is renewed before anyone gets it again. */
  release(slot: string): void {
    this.owned--;
    if (this.fresh(slot)) {
      this.reused++;
      this.free.push(slot);
      this.hand();
      return;
    }
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
    this.renewing = true;
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
