// cgroup management for spore: create / limit / freeze / account / destroy cgroups on v1,
// hybrid and pure-v2 hosts, and a pool of pre-created cgroups for the function runtime.
// All state is plain data (CgroupHandle, CgroupStats, pool snapshots); side effects go only
// through synchronous fs calls so the same code runs in the daemon and in forked children
// before exec (no event loop needed there); addProcessAsync alone is the daemon's.
//
// The work is done by a CgroupManager (cgroup-manager.ts): CgroupV1Manager (v1 and hybrid
// hosts, cgroup-v1.ts) or CgroupV2Manager (pure v2, cgroup-v2.ts). The functions below keep
// the handle-based API callers use; each picks the manager from the handle's mode, which
// cgroupHandle() copied from the detected layout. That choice is made in managerFor() only.

import { rmdirSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import type { LinuxResources } from '../protocols/oci/spec.js';
import { FailedPrecondition, Internal, InvalidArgument } from '../sys/errors.js';
import * as sys from '../sys/libc.js';
import { readNumber, readText } from './cgroup-fs.js';
import { type CgroupHandle, type CgroupLayout, type CgroupMode, cgroupHandle } from './cgroup-layout.js';
import type { CgroupManager, CgroupManagerOptions, CgroupStats } from './cgroup-manager.js';
import { CgroupV1Manager } from './cgroup-v1.js';
import { CgroupV2Manager } from './cgroup-v2.js';

export * from './cgroup-layout.js';
export type {
  CgroupCpuStats, CgroupHugetlbStats, CgroupManager, CgroupManagerOptions, CgroupMemoryEntry, CgroupMemoryStats, CgroupStats,
} from './cgroup-manager.js';
export { CgroupV1Manager } from './cgroup-v1.js';
export { CgroupV2Manager } from './cgroup-v2.js';

// ---- choosing the manager ------------------------------------------------------------------

const DEFAULT_MANAGERS = { v1: new CgroupV1Manager(), v2: new CgroupV2Manager() };

/**
 * The manager for a layout (or mode): v2 for pure cgroup2 hosts, v1 for v1 and hybrid hosts.
 * Without options the shared default instance is returned.
 */
export function cgroupManager(of: CgroupLayout | CgroupMode, opts?: CgroupManagerOptions): CgroupManager {
  const mode = typeof of === 'string' ? of : of.mode;
  if (mode !== 'v1' && mode !== 'hybrid' && mode !== 'v2') throw new InvalidArgument(`cgroup mode "${String(mode)}" (want v1, hybrid or v2)`);
  if (opts) return mode === 'v2' ? new CgroupV2Manager(opts) : new CgroupV1Manager(opts);
  return mode === 'v2' ? DEFAULT_MANAGERS.v2 : DEFAULT_MANAGERS.v1;
}

/** The one place the handle API chooses between versions (anything not v2 is v1-style, as before). */
function managerFor(handle: CgroupHandle): CgroupManager {
  return handle.mode === 'v2' ? DEFAULT_MANAGERS.v2 : DEFAULT_MANAGERS.v1;
}

// ---- the handle-based API (unchanged for callers) -----------------------------------------

/** mkdir -p the cgroup in every hierarchy, prepare controllers, then apply resources. */
export function createCgroup(handle: CgroupHandle, resources?: LinuxResources): { warnings: string[] } {
  return managerFor(handle).create(handle, resources);
}

/** Apply OCI resources. Returns warnings for requests that cannot be honoured on this host. */
export function applyResources(handle: CgroupHandle, resources: LinuxResources): { warnings: string[] } {
  return managerFor(handle).applyResources(handle, resources);
}

/** cgroup.procs files to write a pid (or "0" for the writer itself) into, one per hierarchy. */
export function procsFiles(handle: CgroupHandle): string[] {
  return managerFor(handle).procsFiles(handle);
}

export function addProcess(handle: CgroupHandle, pid: number): void {
  managerFor(handle).addProcess(handle, pid);
}

/**
 * Write `pid` into each of `procs` (cgroup.procs files, e.g. procsFiles()), in order. The
 * first cgroup.procs write after a quiet moment waits for an RCU grace period
 * (cgroup_threadgroup_rwsem switching to writer mode; kernel/rcu/sync.c), 0.4-17 ms on 2-CPU
 * PVM guests, which must hold neither the daemon's loop nor the process that is moved: that
 * one goes through libuv's threadpool. The semaphore stays in writer mode for a grace period
 * after it, so the rest are synchronous (30-50 µs each; through the threadpool each cost
 * 0.1-0.5 ms in hops). Rejects with the first failing write's error; later files are not
 * written.
 */
export async function addProcessAsync(procs: readonly string[], pid: number): Promise<void> {
  const [first, ...rest] = procs;
  if (first === undefined) return;
  if (procsWritesFast) return addProcessSync(procs, pid);
  await writeFile(first, String(pid));
  for (const f of rest) sys.writeSmallFile(f, String(pid));
  lastProcsWriteAt = performance.now();
}

/** When this process last wrote a pid into a cgroup.procs file (performance.now(), ms). */
let lastProcsWriteAt = -Infinity;
/**
 * The semaphore leaves writer mode one grace period after the last writer. Writes closer than
 * this take the synchronous path: under traffic they mostly find it in writer mode, and one
 * that does not waits for a grace period of the length that made it miss (on a host with long
 * grace periods, they are long enough to keep it warm across the gap). A 2-CPU PVM guest, one
 * pid moved between two cgroups: 0.5 ms apart 0.05 ms p50, 5 ms apart 0.24 ms, 50 ms apart
 * 5.8 ms (p90 14 ms). At c=24 a 5 ms bound sent half the instance binds through the threadpool
 * (binds come in bursts), and throughput fell about 8 %.
 */
const WRITER_MODE_MS = 20;

/**
 * Whether a cgroup.procs write now would find the semaphore still in writer mode (see
 * addProcessAsync): this process wrote one less than WRITER_MODE_MS ago; then
 * addProcessSync is a plain syscall per file.
 */
export function procsWritesWarm(now = performance.now()): boolean {
  return procsWritesFast || now - lastProcsWriteAt < WRITER_MODE_MS;
}

/** The host has favordynmods (pools/favordynmods.ts): no write waits for a grace period. */
let procsWritesFast = false;

/**
 * Tell this process whether cgroup.procs writes skip the grace period on this host (spored
 * sets it at start from enableFavorDynmods): then addProcessAsync writes synchronously and
 * procsWritesWarm() is always true, the threadpool's hops saved.
 */
export function setProcsWritesFast(fast: boolean): void {
  procsWritesFast = fast;
}

/** Whether this process was last told the node has favordynmods (setProcsWritesFast). */
export function procsWritesAreFast(): boolean {
  return procsWritesFast;
}

/** addProcessAsync's writes, all on the caller's thread (when procsWritesWarm()); throws the first failing write's error. */
export function addProcessSync(procs: readonly string[], pid: number): void {
  for (const f of procs) sys.writeSmallFile(f, String(pid));
  lastProcsWriteAt = performance.now();
}

/** Pids in the cgroup and its descendants, across all hierarchies (deduplicated, sorted). */
export function pids(handle: CgroupHandle): number[] {
  return managerFor(handle).pids(handle);
}

export function freeze(handle: CgroupHandle): void { managerFor(handle).freeze(handle); }
export function thaw(handle: CgroupHandle): void { managerFor(handle).thaw(handle); }

/**
 * Signal every process in the cgroup subtree. SIGKILL on v2 uses cgroup.kill (atomic, no
 * races with forks); otherwise freeze → signal each pid → thaw, so nothing forks in between.
 * Returns how many processes were signalled.
 */
export function killAll(handle: CgroupHandle, signal: NodeJS.Signals | number = 'SIGKILL'): number {
  return managerFor(handle).killAll(handle, signal);
}

/** Collect the metrics containerd's cgroups Metrics carry, as a plain serializable object. */
export function stats(handle: CgroupHandle): CgroupStats {
  return managerFor(handle).stats(handle);
}

/** Number of OOM kills in this cgroup (cumulative for the cgroup's lifetime). */
export function oomKillCount(handle: CgroupHandle): number {
  return managerFor(handle).oomKillCount(handle);
}

/**
 * Remove the cgroup (and any sub-cgroups created inside it) in every hierarchy, deepest first.
 * Idempotent; never touches the handle's ancestors (e.g. /spore stays for other containers).
 */
/**
 * rmdir each of `dirs` (cgroup ancestors a container made, deepest first): one another
 * container's cgroup is below, or that is busy or gone, stays. Never throws.
 */
export function removeEmptyParents(dirs: readonly string[]): void {
  for (const d of dirs) {
    try { rmdirSync(d); } catch { /* not empty, busy, or gone */ }
  }
}

export function destroyCgroup(handle: CgroupHandle): void {
  managerFor(handle).destroy(handle);
}

/**
 * Reset a cgroup to "no limits" so the next tenant sees nothing of the previous one:
 * remove sub-cgroups, lift limits, reset the v1 counters that can be reset.
 */
export function scrub(handle: CgroupHandle): void {
  managerFor(handle).scrub(handle);
}

// ---- pool ----------------------------------------------------------------------------------

export interface PooledCgroup extends CgroupHandle {
  poolIndex: number;
  /** oomKillCount at acquire: kernel counters are cumulative, so callers subtract this. */
  oomKillsAtAcquire: number;
}

export interface CgroupPoolSnapshot {
  parent: string;
  target: number;
  free: number;
  inUse: number;
  created: number;
  acquires: number;
  releases: number;
  /** acquire() found the pool empty and created a cgroup on the spot. */
  misses: number;
  /** release() could not scrub in place and recreated the cgroup. */
  recreated: number;
  /** release() could not empty the cgroup in RELEASE_DRAIN_MS; it was taken out of the pool (cumulative). */
  quarantined: number;
  /** quarantined now: still SIGKILLed every QUARANTINE_POLL_MS, back in the pool once empty */
  inQuarantine: number;
  /** released with processes left: killed, and back in the pool once the kernel has them gone */
  draining: number;
}

export interface CgroupPoolOptions {
  size: number;
  /** Parent cgroup path of the pool, default /spore/pool. */
  parent?: string;
  /** Manager to drive the pool's cgroups with; default cgroupManager(layout). */
  manager?: CgroupManager;
  /** Told when a released cgroup could not be emptied and was taken out of the pool. */
  onQuarantine?: (message: string) => void;
}

const RELEASE_DRAIN_MS = 2000;
/** How often a draining cgroup is looked at again (ms). */
const DRAIN_POLL_MS = 5;
/** How many leftover processes are SIGKILLed in one turn of the event loop. */
const KILL_BATCH = 32;
/** How often a quarantined cgroup is emptied again (ms). */
const QUARANTINE_POLL_MS = 1000;

/**
 * Pre-created cgroups for the function runtime. Creating cgroups on the start path contends on
 * the kernel's cgroup mutex under concurrency; the pool moves that off the path. Limits are applied
 * at acquire (cheap file writes) and reset at release.
 */
export class CgroupPool {
  readonly parent: string;
  readonly target: number;
  private readonly layout: CgroupLayout;
  private readonly mgr: CgroupManager;
  private readonly free: number[] = [];
  private readonly inUse = new Set<number>();
  /** the resource key each free cgroup's limits were last set for (see acquire) */
  private readonly configured = new Map<number, string>();
  /**
   * Each free cgroup's OOM kill count, read when it went back to the pool (nothing runs in a
   * free cgroup, so the count cannot move until it is handed out): acquire reads no file for it.
   */
  private readonly oomBase = new Map<number, number>();
  private nextIndex = 0;
  private counters = { created: 0, acquires: 0, releases: 0, misses: 0, recreated: 0, quarantined: 0 };
  /** cgroups being emptied after a release: their fence to lift and their next look */
  private readonly draining = new Map<number, { unfence: () => void; timer: NodeJS.Timeout | null }>();
  private drainWaiters: (() => void)[] = [];
  /**
   * cgroups that were not empty at the end of their drain: fenced still, and SIGKILLed again
   * every QUARANTINE_POLL_MS until empty (then back in the pool), killed and removed at close.
   */
  private readonly quarantine = new Map<number, { unfence: () => void; timer: NodeJS.Timeout | null }>();
  private closed = false;
  private readonly onQuarantine: (message: string) => void;

  constructor(layout: CgroupLayout, opts: CgroupPoolOptions) {
    if (!Number.isInteger(opts.size) || opts.size < 0) throw new InvalidArgument(`pool size ${opts.size}`);
    this.layout = layout;
    this.mgr = opts.manager ?? cgroupManager(layout);
    this.onQuarantine = opts.onQuarantine ?? (() => undefined);
    this.target = opts.size;
    this.parent = opts.parent ?? '/spore/pool';
    cgroupHandle(layout, this.parent); // validate early
  }

  /** Handles by pool index: plain data that never changes for an index (acquire and release run per call). */
  private readonly handles = new Map<number, CgroupHandle>();

  private handleFor(index: number): CgroupHandle {
    let h = this.handles.get(index);
    if (!h) { h = cgroupHandle(this.layout, `${this.parent}/${index}`); this.handles.set(index, h); }
    return h;
  }

  private createOne(): number {
    const i = this.nextIndex++;
    const h = this.handleFor(i);
    // A leftover from a previous daemon run would carry stale limits and maybe processes.
    this.mgr.killAll(h, 'SIGKILL');
    this.mgr.destroy(h);
    this.mgr.create(h);
    this.counters.created++;
    this.oomBase.set(i, this.mgr.oomKillCount(h));
    return i;
  }

  /** Pre-create the pool's cgroups. */
  fill(): void {
    while (this.free.length < this.target) this.free.push(this.createOne());
  }

  /**
   * `key` names the limits (e.g. one per function): a free cgroup last configured with the
   * same key is handed out as-is, so the hot path writes no limit files at all.
   */
  acquire(resources?: LinuxResources, key?: string): { handle: PooledCgroup; warnings: string[] } {
    let index: number | undefined;
    if (key !== undefined) {
      const at = this.free.findIndex((i) => this.configured.get(i) === key);
      if (at >= 0) index = this.free.splice(at, 1)[0];
    }
    const reuse = index !== undefined;
    index ??= this.free.shift();
    if (index === undefined) {
      this.counters.misses++;
      index = this.createOne();
    }
    const h = this.handleFor(index);
    let warnings: string[] = [];
    try {
      if (resources && !reuse) warnings = this.mgr.applyResources(h, resources).warnings;
      if (key !== undefined) this.configured.set(index, key); else this.configured.delete(index);
    } catch (e) {
      // Limits partially applied: scrub before it goes back.
      this.recycle(index);
      throw e;
    }
    this.inUse.add(index);
    this.counters.acquires++;
    const oomKillsAtAcquire = this.oomBase.get(index) ?? this.mgr.oomKillCount(h);
    this.oomBase.delete(index);
    return { handle: { ...h, poolIndex: index, oomKillsAtAcquire }, warnings };
  }

  /**
   * Kill leftovers, reset limits and return the cgroup to the pool. With keepLimits the
   * limits stay (for the next acquire with the same key); leftovers are killed either way.
   */
  release(handle: PooledCgroup, opts: { keepLimits?: boolean } = {}): void {
    if (!this.inUse.has(handle.poolIndex)) throw new FailedPrecondition(`pool cgroup ${handle.poolIndex} is not in use`);
    this.inUse.delete(handle.poolIndex);
    this.counters.releases++;
    if (!opts.keepLimits) this.configured.delete(handle.poolIndex);
    this.recycle(handle.poolIndex, opts.keepLimits === true);
  }

  /**
   * Whether the in-use cgroup `handle` holds a process other than `pid` (and spored): what an
   * instance that answered left behind. Asked at every answer, so one hierarchy is read, the
   * one every process of the cgroup is in (v1: the pids controller's, else memory's; v2: the
   * unified one): its pids.current of 1 says so alone (13 µs here), else its cgroup.procs
   * (threads count in pids.current). Listing every hierarchy cost 240 µs on a v1 host (a red
   * team, helper-50). False when it cannot tell; nothing in the sandbox makes sub-cgroups.
   */
  holdsOthers(handle: PooledCgroup, pid: number): boolean {
    const h = this.handleFor(handle.poolIndex);
    const dir = h.mode === 'v2' ? h.dirs['unified'] : h.dirs['pids'] ?? h.dirs['memory'];
    if (!dir) return false;
    try {
      const tasks = readNumber(`${dir}/pids.current`);
      if (tasks !== undefined && tasks <= 1) return false;
      const procs = readText(`${dir}/cgroup.procs`) ?? '';
      return procs.split('\n').some((l) => l !== '' && Number(l) !== pid && Number(l) !== process.pid);
    } catch {
      return false;
    }
  }

  private recycle(index: number, keepLimits = false): void {
    const h = this.handleFor(index);
    // The usual case (the instance was reaped and left nothing) is one file read; a populated
    // or undecidable cgroup is fenced at once and looked into later (cgroup.procs of every
    // hierarchy, off the caller: a bomb's busy processes starve it of CPU meanwhile).
    const populated = this.mgr.populated(h);
    if (populated === false || (populated === null && this.mgr.pids(h).length === 0)) {
      this.reuse(index, keepLimits);
      return;
    }
    // Leftovers, maybe a fork bomb. No fork from now on (an instance is in its pool cgroup's
    // memory and pids hierarchies only, functions/instances.ts, so neither a freeze nor
    // cgroup.kill reaches it there, and killing pid by pid lost to the forks), every one
    // SIGKILLed, and the cgroup back in the pool once empty. All of it runs off the caller,
    // in turns of the event loop: the kernel takes a few hundred ms to tear a bomb's 200
    // processes down, and waiting in place held spored, every other call and containerd's
    // with it, for up to the whole drain (2 s) per bomb.
    const d = { unfence: this.mgr.fenceForks(h), timer: null as NodeJS.Timeout | null };
    this.draining.set(index, d);
    const deadline = Date.now() + RELEASE_DRAIN_MS;
    // SIGKILL a few at a time, a turn of the loop between (200 kills took 20 ms here, and
    // 190 ms under load); nothing can fork meanwhile. On pure v2 cgroup.kill does it at once.
    const killFrom = (list: number[], from: number): void => {
      d.timer = null;
      if (this.closed) return;
      const to = Math.min(list.length, from + KILL_BATCH);
      for (let i = from; i < to; i++) { try { process.kill(list[i] as number, 'SIGKILL'); } catch { /* gone */ } }
      d.timer = to < list.length ? setTimeout(() => killFrom(list, to), 0) : setTimeout(look, DRAIN_POLL_MS);
    };
    const look = (): void => {
      d.timer = null;
      if (this.closed) return;
      let left = true;
      let failure: string | null = null;
      try {
        const procs = this.mgr.populated(h) !== false ? this.mgr.pids(h).filter((p) => p !== process.pid) : [];
        left = procs.length > 0;
        if (left && Date.now() <= deadline) {
          if (h.mode === 'v2') { this.mgr.killAll(h, 'SIGKILL', true); d.timer = setTimeout(look, DRAIN_POLL_MS); } else killFrom(procs, 0);
          return;
        }
      } catch (e) {
        failure = (e as Error).message;
      }
      // a quarantined cgroup keeps its fence: whatever survived SIGKILL must not fork again
      this.endDrain(index, left || failure !== null);
      if (left || failure !== null) {
        this.counters.quarantined++;
        this.onQuarantine(`pool cgroup ${h.path}: ${failure ?? `processes left after ${RELEASE_DRAIN_MS} ms of SIGKILL`}; quarantined`);
        // Past the deadline nothing listed may go unsignalled (a loop held for the whole
        // drain found the bomb for the first time here): kill now, and again until empty.
        this.quarantineOne(index, d.unfence, keepLimits);
        return;
      }
      try {
        this.reuse(index, keepLimits);
      } catch (e) {
        this.counters.quarantined++;
        this.onQuarantine(`pool cgroup ${h.path}: ${(e as Error).message}; quarantined`);
      }
    };
    d.timer = setTimeout(look, 0);
  }

  /** Keep SIGKILLing what is left in a quarantined cgroup (fenced) until it is empty, then reuse it. */
  private quarantineOne(index: number, unfence: () => void, keepLimits: boolean): void {
    const h = this.handleFor(index);
    const q = { unfence, timer: null as NodeJS.Timeout | null };
    this.quarantine.set(index, q);
    const again = (): void => {
      q.timer = null;
      if (this.closed || this.quarantine.get(index) !== q) return;
      let procs: number[] | null = null;
      try { procs = this.mgr.populated(h) !== false ? this.mgr.pids(h).filter((p) => p !== process.pid) : []; } catch { /* look again */ }
      if (procs && procs.length === 0) {
        this.quarantine.delete(index);
        q.unfence();
        try {
          this.reuse(index, keepLimits);
        } catch (e) {
          this.onQuarantine(`pool cgroup ${h.path}: empty again but not reusable: ${(e as Error).message}`);
          try { this.mgr.destroy(h); } catch { /* the parent's removal at close tries again */ }
        }
        return;
      }
      if (procs) {
        try {
          if (h.mode === 'v2') this.mgr.killAll(h, 'SIGKILL', true);
          else for (const p of procs) { try { process.kill(p, 'SIGKILL'); } catch { /* gone */ } }
        } catch { /* look again */ }
      }
      q.timer = setTimeout(again, QUARANTINE_POLL_MS);
      q.timer.unref();
    };
    again();
  }

  private endDrain(index: number, keepFence = false): void {
    const d = this.draining.get(index);
    if (!d) return;
    if (d.timer) clearTimeout(d.timer);
    if (!keepFence) d.unfence();
    this.draining.delete(index);
    if (this.draining.size === 0) for (const w of this.drainWaiters.splice(0)) w();
  }

  /** An empty cgroup back in the pool: its limits reset (unless kept for its key). */
  private reuse(index: number, keepLimits: boolean): void {
    const h = this.handleFor(index);
    if (!keepLimits) {
      try {
        this.mgr.scrub(h);
      } catch {
        this.mgr.destroy(h);
        this.mgr.create(h);
        this.counters.recreated++;
      }
    }
    this.oomBase.set(index, this.mgr.oomKillCount(h));
    this.free.push(index);
  }

  /** Resolves once no released cgroup is still being emptied. */
  drained(): Promise<void> {
    if (this.draining.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  snapshot(): CgroupPoolSnapshot {
    return { parent: this.parent, target: this.target, free: this.free.length, inUse: this.inUse.size, draining: this.draining.size, inQuarantine: this.quarantine.size, ...this.counters };
  }

  /** Destroy every pool cgroup (in-use ones too) and the pool parent. */
  close(): void {
    this.closed = true;
    const draining = [...this.draining.keys()];
    for (const i of draining) this.endDrain(i);
    const quarantined = [...this.quarantine.keys()];
    for (const q of this.quarantine.values()) if (q.timer) clearTimeout(q.timer); // fenced still while killed below
    this.quarantine.clear();
    for (const i of [...this.free, ...this.inUse, ...draining, ...quarantined]) {
      const h = this.handleFor(i);
      this.mgr.killAll(h, 'SIGKILL');
      this.mgr.destroy(h);
    }
    this.free.length = 0;
    this.inUse.clear();
    this.mgr.destroy(cgroupHandle(this.layout, this.parent));
  }
}

