// A Create cut short: spored died (or spored and its keeper) after the Create wrote its
// .creating record and before it wrote the task record. Nothing answered it, so nothing
// will Delete it: what it made is removed here, as runc destroys a container whose create
// failed. Run by the next spored (TaskManager.restore) or, when no keeper is left to start
// one, by the shim binary's delete (shim/delete.ts); the record is taken by one of them
// (record.ts takeCreating). A replayed Create of the same id waits for this first, so that
// it makes (and, at its Delete, removes) the same cgroup parents again.
import { setTimeout as delay } from 'node:timers/promises';
import { destroyCgroup, killAll, pids, removeEmptyParents } from '../pools/cgroups.js';
import { runHooksAll, type HookObserver } from './hooks.js';
import type { CreatingRecord } from './record.js';

/** How long the cut-short set-up's processes get to die after SIGKILL before the cgroup is given up on. */
export const CUT_SHORT_DRAIN_MS = 3000;

export interface CutShortOptions {
  /** whether a live container (a restored one, another task record) has the cgroup at `path` */
  inUse: (path: string) => boolean;
  onHook?: HookObserver;
  drainMs?: number;
}

/**
 * Remove what the cut-short Create `r` made, then run its poststop hooks. Its cgroup goes
 * only when this Create made the leaf and no live container shares it: whatever is in it
 * (the set-up the root seed forked or a shell became, which the seed aborts too) is killed
 * first. The parents it made go when empty (another container's below one keeps it).
 * Resolves with warnings (a cgroup that would not go, a failed hook); never rejects.
 */
export async function cleanUpCutShort(r: CreatingRecord, o: CutShortOptions): Promise<string[]> {
  const warnings: string[] = [];
  const g = r.cgroup;
  let cgroupGone = true;
  if (g && g.made && !o.inUse(g.handle.path)) {
    const h = g.handle;
    const deadline = Date.now() + (o.drainMs ?? CUT_SHORT_DRAIN_MS);
    try {
      for (;;) {
        let left: number[];
        try { left = pids(h); } catch (e) {
          if ((e as NodeJS.ErrnoException).code === 'ENOENT') break; // never made, or gone
          throw e;
        }
        if (left.length === 0) break;
        if (Date.now() > deadline) throw new Error(`processes survived SIGKILL: ${left.join(' ')}`);
        // (again each round: one may have forked between the read and the kill)
        killAll(h, 'SIGKILL');
        await delay(10);
      }
      destroyCgroup(h);
    } catch (e) {
      cgroupGone = false;
      warnings.push(`the cgroup ${h.path} of a Create cut short stays: ${(e as Error).message}`);
    }
  }
  if (g && cgroupGone) {
    removeEmptyParents(g.madeParents);
  }
  if (r.hooks.poststop.length > 0) {
    warnings.push(...await runHooksAll('poststop', r.hooks.poststop, { ...r.hooks.state, status: 'stopped' }, r.bundle, o.onHook));
  }
  return warnings;
}
