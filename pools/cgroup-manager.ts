// One interface for driving a cgroup, whatever the host's cgroup version (the shape of crun's
// libcrun_cgroup_manager: one table of operations, one implementation per hierarchy kind):
//
//   CgroupV1Manager (cgroup-v1.ts)  v1 and hybrid hosts: limits in the v1 controllers; on a hybrid
//                                   host the cgroup also lives in the unified hierarchy.
//   CgroupV2Manager (cgroup-v2.ts)  pure v2 hosts: everything in the one unified hierarchy.
//
// Managers hold no per-cgroup state: every operation takes a CgroupHandle (plain data, built by
// cgroupHandle() from a layout whose root may be any directory, e.g. a fake cgroupfs in a test).
// What is the same for both versions (directories, cgroup.procs, the order resources are applied
// in, signalling, removal) lives here in CgroupManagerBase; each subclass supplies only what differs.

import * as fs from 'node:fs';
import { constants as osConstants } from 'node:os';
import { FailedPrecondition, Internal, InvalidArgument } from '../sys/errors.js';
import type { LinuxResources, LinuxMemory, LinuxCPU, LinuxBlockIO, LinuxDeviceCgroup } from '../protocols/oci/spec.js';
import { type BlkioEntry, type CgroupHandle, type CgroupMode, deviceRuleLine, parseKeyValues, uniqueDirs } from './cgroup-layout.js';
import { DEFAULT_HUGEPAGES_DIR, errCode, exists, readText, rmdirRetry, subtreeDirs, writeValue } from './cgroup-fs.js';

// ---- stats (plain serializable data, what containerd's cgroups Metrics carry) ---------------

export interface CgroupCpuStats {
  /** Nanoseconds. */
  usage: { total: number; user: number; kernel: number; perCpu: number[] };
  throttling: { periods: number; throttledPeriods: number; throttledTimeNs: number };
}

export interface CgroupMemoryEntry { usage: number; limit: number; maxUsage: number; failcnt: number }

export interface CgroupMemoryStats {
  /** Bytes; limits use UNLIMITED (-1) for "no limit"; maxUsage/failcnt are 0 where the kernel lacks them (v2). */
  usage: CgroupMemoryEntry;
  /** v1: memsw (memory+swap, as containerd reports it); v2: memory.swap.* (swap only). */
  swap?: CgroupMemoryEntry;
  kernel?: CgroupMemoryEntry;
  kernelTCP?: CgroupMemoryEntry;
  /** memory.stat as numbers. */
  stat: Record<string, number>;
  /** v2 memory.events (low, high, max, oom, oom_kill, ...); v1: oom_kill / under_oom from memory.oom_control. */
  events: Record<string, number>;
}

export interface CgroupHugetlbStats { pageSize: string; usage: number; max: number; failcnt: number }

export interface CgroupStats {
  mode: CgroupMode;
  cpu?: CgroupCpuStats;
  memory?: CgroupMemoryStats;
  pids?: { current: number; limit: number };
  /** v1 blkio *_recursive files keyed by their short name; v2: { io_stat: [...] }. */
  blkio?: Record<string, BlkioEntry[]>;
  hugetlb?: CgroupHugetlbStats[];
}

// ---- the interface ------------------------------------------------------------------------

export interface CgroupManager {
  /** 'v1' drives v1 and hybrid handles; 'v2' drives pure-v2 handles. */
  readonly kind: 'v1' | 'v2';
  /** mkdir -p the cgroup in every hierarchy, prepare controllers, then apply resources. */
  create(h: CgroupHandle, resources?: LinuxResources): { warnings: string[] };
  /** Apply OCI resources. Returns warnings for requests that cannot be honoured on this host. */
  applyResources(h: CgroupHandle, resources: LinuxResources): { warnings: string[] };
  /** cgroup.procs files to write a pid (or "0" for the writer itself) into, one per hierarchy. */
  procsFiles(h: CgroupHandle): string[];
  addProcess(h: CgroupHandle, pid: number): void;
  /** Pids in the cgroup and its descendants, across all hierarchies (deduplicated, sorted). */
  pids(h: CgroupHandle): number[];
  /**
   * One-file answer to "is anything in the subtree?" (v2: cgroup.events `populated`; v1: the
   * pids hierarchy's hierarchical pids.current, which also counts unreaped zombies). null when
   * this cgroup cannot tell that cheaply (v1 without the pids controller): use pids(). On v1
   * it only sees processes placed in the pids hierarchy, as every spore cgroup's are.
   */
  populated(h: CgroupHandle): boolean | null;
  freeze(h: CgroupHandle): void;
  thaw(h: CgroupHandle): void;
  /**
   * Stop every fork in the cgroup until the returned function is called (pids.max 0; the
   * previous limit is put back then): what cannot fork cannot outrun killing pid by pid.
   * A no-op where the cgroup has no pids controller.
   */
  fenceForks(h: CgroupHandle): () => void;
  /** Signal every process in the subtree; returns how many were signalled. `fenced`: forks are stopped (fenceForks), no freeze needed. */
  killAll(h: CgroupHandle, signal?: NodeJS.Signals | number, fenced?: boolean): number;
  stats(h: CgroupHandle): CgroupStats;
  /** Number of OOM kills in this cgroup (cumulative for the cgroup's lifetime). */
  oomKillCount(h: CgroupHandle): number;
  /** Reset to "no limits" (sub-cgroups removed, limits lifted, resettable counters reset). */
  scrub(h: CgroupHandle): void;
  /** Remove the cgroup and its sub-cgroups in every hierarchy, deepest first. Idempotent. */
  destroy(h: CgroupHandle): void;
}

export interface CgroupManagerOptions {
  /** sysfs directory listing the kernel's huge page sizes (default /sys/kernel/mm/hugepages). */
  hugepagesDir?: string;
  /** How long freeze/thaw wait for the kernel to report the new state (default 2000 ms). */
  freezeTimeoutMs?: number;
}

// ---- what both versions share --------------------------------------------------------------

const SIGNALS: Record<string, number> = osConstants.signals as unknown as Record<string, number>;
export const SIGKILL = SIGNALS['SIGKILL'] ?? 9;

export abstract class CgroupManagerBase implements CgroupManager {
  abstract readonly kind: 'v1' | 'v2';
  protected readonly hugepagesDir: string;
  protected readonly freezeTimeoutMs: number;

  constructor(opts: CgroupManagerOptions = {}) {
    this.hugepagesDir = opts.hugepagesDir ?? DEFAULT_HUGEPAGES_DIR;
    this.freezeTimeoutMs = opts.freezeTimeoutMs ?? 2000;
  }

  // -- what each version supplies --

  /** Whether this manager drives handles of that mode. */
  protected abstract drives(mode: CgroupMode): boolean;
  /** Make the directories (and whatever a fresh cgroup needs before limits can be written). */
  protected abstract makeDirs(h: CgroupHandle): void;
  /** Directory where limits for controller `ctrl` are written, if that controller is there. */
  protected abstract limitDir(h: CgroupHandle, ctrl: string): string | undefined;
  protected abstract applyMemory(dir: string, m: LinuxMemory, warnings: string[]): void;
  /** cpu.* knobs (shares/weight, quota, period, idle, realtime); cpuset is shared. */
  protected abstract applyCpu(dir: string, c: LinuxCPU, warnings: string[]): void;
  protected abstract applyBlockIO(h: CgroupHandle, b: LinuxBlockIO, warnings: string[]): void;
  /** `lines` are the rules already validated and rendered ("c 1:3 rwm"). */
  protected abstract applyDevices(h: CgroupHandle, rules: LinuxDeviceCgroup[], lines: { allow: boolean; line: string }[], warnings: string[]): void;
  /** File (in limitDir(h, 'hugetlb')) holding the limit for one page size. */
  protected abstract hugetlbLimitFile(pageSize: string): string;
  protected abstract applyNetwork(h: CgroupHandle, n: NonNullable<LinuxResources['network']>, warnings: string[]): void;
  protected abstract applyUnified(h: CgroupHandle, entries: [string, string][]): void;
  protected abstract setFrozen(h: CgroupHandle, frozen: boolean): void;
  /** Kill the whole subtree in one kernel operation if this version can; undefined when it cannot. */
  protected abstract killAtomically(h: CgroupHandle, signo: number): number | undefined;
  protected abstract readStats(h: CgroupHandle, out: CgroupStats): void;
  protected abstract readOomKills(h: CgroupHandle): number;
  protected abstract readPopulated(h: CgroupHandle): boolean | null;
  protected abstract resetLimits(h: CgroupHandle): void;

  // -- the interface --

  protected check(h: CgroupHandle): void {
    if (!this.drives(h.mode)) throw new InvalidArgument(`cgroup ${h.path} is a ${h.mode} handle; the cgroup ${this.kind} manager cannot drive it`);
  }

  create(h: CgroupHandle, resources?: LinuxResources): { warnings: string[] } {
    this.check(h);
    this.makeDirs(h);
    return resources ? this.applyResources(h, resources) : { warnings: [] };
  }

  protected requireDir(h: CgroupHandle, ctrl: string, what: string): string {
    const d = this.limitDir(h, ctrl);
    if (!d) throw new FailedPrecondition(`${what} requested but the ${ctrl} cgroup controller is not available`);
    return d;
  }

  applyResources(h: CgroupHandle, r: LinuxResources): { warnings: string[] } {
    this.check(h);
    checkResourceRanges(r);
    const warnings: string[] = [];
    if (r.memory) {
      this.applyMemory(this.requireDir(h, 'memory', 'memory limit'), r.memory, warnings);
      if ((r.memory.kernel ?? 0) !== 0 || (r.memory.kernelTCP ?? 0) !== 0) warnings.push('memory.kernel / kernelTCP limits are deprecated by the kernel; ignored');
    }
    if (r.cpu) {
      const c = r.cpu;
      if (c.shares !== undefined || c.quota !== undefined || c.period !== undefined || c.idle !== undefined || c.realtimeRuntime !== undefined || c.realtimePeriod !== undefined) {
        this.applyCpu(this.requireDir(h, 'cpu', 'cpu limit'), c, warnings);
      }
      if (c.cpus || c.mems) {
        const dir = this.requireDir(h, 'cpuset', 'cpuset');
        if (c.cpus) writeValue(`${dir}/cpuset.cpus`, c.cpus);
        if (c.mems) writeValue(`${dir}/cpuset.mems`, c.mems);
      }
    }
    // OCI/runc: a pids limit of 0 means "not set".
    if (r.pids && r.pids.limit !== 0) writeValue(`${this.requireDir(h, 'pids', 'pids limit')}/pids.max`, r.pids.limit < 0 ? 'max' : r.pids.limit);
    if (r.blockIO) this.applyBlockIO(h, r.blockIO, warnings);
    if (r.devices) this.applyDevices(h, r.devices, r.devices.map((d) => ({ allow: d.allow, line: deviceRuleLine(d) })), warnings);
    if (r.hugepageLimits?.length) {
      const dir = this.limitDir(h, 'hugetlb');
      for (const hp of r.hugepageLimits) {
        if (!/^\d+[KMGT]B$/.test(hp.pageSize)) throw new InvalidArgument(`hugepage pageSize "${hp.pageSize}" (want e.g. 2MB)`);
        const file = this.hugetlbLimitFile(hp.pageSize);
        if (!dir || !exists(`${dir}/${file}`)) {
          warnings.push(`hugetlb limit for ${hp.pageSize} not available (controller or page size missing); ignored`);
          continue;
        }
        writeValue(`${dir}/${file}`, hp.limit);
      }
    }
    if (r.network) this.applyNetwork(h, r.network, warnings);
    if (r.rdma && Object.keys(r.rdma).length) warnings.push('rdma limits are not supported; ignored');
    if (r.unified) {
      const entries = Object.entries(r.unified);
      if (entries.length) this.applyUnified(h, entries);
    }
    return { warnings };
  }

  procsFiles(h: CgroupHandle): string[] {
    return uniqueDirs(h).map((d) => `${d}/cgroup.procs`);
  }

  addProcess(h: CgroupHandle, pid: number): void {
    if (!Number.isInteger(pid) || pid < 0) throw new InvalidArgument(`pid ${pid}`);
    for (const f of this.procsFiles(h)) {
      try {
        fs.writeFileSync(f, String(pid));
      } catch (e) {
        if (errCode(e) === 'ESRCH') throw new InvalidArgument(`process ${pid} does not exist`, { cause: e });
        if (errCode(e) === 'ENOENT') throw new FailedPrecondition(`${f}: cgroup does not exist (createCgroup first)`, { cause: e });
        throw new Internal(`add ${pid} to ${f}: ${(e as Error).message}`, { cause: e });
      }
    }
  }

  pids(h: CgroupHandle): number[] {
    const set = new Set<number>();
    for (const dir of uniqueDirs(h)) {
      for (const d of subtreeDirs(dir)) {
        for (const l of (readText(`${d}/cgroup.procs`) ?? '').split('\n')) {
          const n = Number(l);
          if (l.trim() !== '' && Number.isInteger(n) && n > 0) set.add(n);
        }
      }
    }
    return [...set].sort((a, b) => a - b);
  }

  fenceForks(h: CgroupHandle): () => void {
    this.check(h);
    const dir = h.dirs['pids'] ?? h.dirs['unified'];
    const file = dir ? `${dir}/pids.max` : '';
    const was = file ? readText(file)?.trim() : undefined;
    if (!file || !was) return () => undefined;
    writeValue(file, 0);
    return () => { try { writeValue(file, was); } catch { /* the cgroup is gone */ } };
  }

  freeze(h: CgroupHandle): void { this.check(h); this.setFrozen(h, true); }
  thaw(h: CgroupHandle): void { this.check(h); this.setFrozen(h, false); }

  /**
   * Signal every process in the cgroup subtree: atomically where the version can (v2 cgroup.kill
   * for SIGKILL), otherwise freeze → signal each pid → thaw, so nothing forks in between.
   * `fenced`: the caller stopped forks already (fenceForks), so each pid is signalled
   * without the freeze (a thaw alone took 66 ms here).
   */
  killAll(h: CgroupHandle, signal: NodeJS.Signals | number = 'SIGKILL', fenced = false): number {
    const signo = typeof signal === 'number' ? signal : SIGNALS[signal];
    if (signo === undefined) throw new InvalidArgument(`unknown signal ${String(signal)}`);
    this.check(h);
    const atomic = this.killAtomically(h, signo);
    if (atomic !== undefined) return atomic;
    const list = this.pids(h).filter((p) => p !== process.pid);
    if (list.length === 0) return 0;
    let frozen = false;
    if (!fenced) try {
      this.freeze(h);
      frozen = true;
    } catch {
      // No freezer or it timed out: still deliver the signal, just without fork protection.
    }
    let n = 0;
    try {
      for (const p of frozen ? this.pids(h).filter((q) => q !== process.pid) : list) {
        try {
          process.kill(p, signo);
          n++;
        } catch (e) {
          if (errCode(e) !== 'ESRCH') throw e;
        }
      }
    } finally {
      if (frozen) this.thaw(h);
    }
    return n;
  }

  stats(h: CgroupHandle): CgroupStats {
    this.check(h);
    const out: CgroupStats = { mode: h.mode };
    this.readStats(h, out);
    return out;
  }

  oomKillCount(h: CgroupHandle): number {
    this.check(h);
    return this.readOomKills(h);
  }

  populated(h: CgroupHandle): boolean | null {
    this.check(h);
    return this.readPopulated(h);
  }

  /**
   * Whether the calling process (spored) sits in the cgroup2 subtree `dir` of the hierarchy
   * mounted at `mount`: cgroup.kill there would kill it too (a spec's cgroupsPath can name
   * any cgroup). Read from /proc/self/cgroup's "0::" line (cgroups(7)).
   */
  protected holdsSelf(dir: string, mount: string): boolean {
    const own = /^0::(.*)$/m.exec(readText('/proc/self/cgroup') ?? '')?.[1];
    if (own === undefined) return true; // cannot tell: take the path that spares spored
    const mine = mount + (own === '/' ? '' : own);
    return mine === dir || mine.startsWith(`${dir}/`);
  }

  /** `populated` of a cgroup2 directory's cgroup.events (v2, and hybrid's controller-less unified), or null. */
  protected eventsPopulated(dir: string | undefined): boolean | null {
    const ev = dir ? readText(`${dir}/cgroup.events`) : undefined;
    const populated = ev ? parseKeyValues(ev)['populated'] : undefined;
    return populated === undefined ? null : populated > 0;
  }

  scrub(h: CgroupHandle): void {
    this.check(h);
    for (const dir of uniqueDirs(h)) {
      for (const d of subtreeDirs(dir)) if (d !== dir) rmdirRetry(d);
    }
    this.resetLimits(h);
  }

  /** Never touches the handle's ancestors (e.g. /spore stays for other containers). */
  destroy(h: CgroupHandle): void {
    for (const [key, dir] of Object.entries(h.dirs)) {
      const mount = h.mounts[key];
      // Defensive: only ever remove strictly below the hierarchy's mountpoint and at the handle's path.
      if (!mount || dir !== mount + h.path || h.path === '/' || h.path.includes('..')) {
        throw new InvalidArgument(`refusing to remove ${dir}: not the handle's cgroup`);
      }
    }
    for (const dir of uniqueDirs(h)) {
      for (const d of subtreeDirs(dir)) rmdirRetry(d);
    }
  }
}

/** cpu.shares the kernel takes (v1; v2's weight is converted from this range, as runc does) */
export const CPU_SHARES_MIN = 2;
export const CPU_SHARES_MAX = 262_144;

/**
 * Values runc refuses before any is written: memory limits below -1 (-1 is "unlimited"; the
 * kernel says EINVAL to the rest, and an unlimited container would be the quiet result), and
 * cpu.shares outside 2..262144 ("the minimum/maximum allowed cpu-shares is ..."). 0 is unset.
 * Throws InvalidArgument naming the field.
 */
export function checkResourceRanges(r: LinuxResources): void {
  for (const k of ['limit', 'reservation', 'swap'] as const) {
    const v = r.memory?.[k];
    if (typeof v === 'number' && v < -1) throw new InvalidArgument(`linux.resources.memory.${k} ${v}: a limit is bytes, or -1 for none`);
  }
  const shares = r.cpu?.shares;
  if (typeof shares === 'number' && shares !== 0 && (shares < CPU_SHARES_MIN || shares > CPU_SHARES_MAX)) {
    throw new InvalidArgument(`linux.resources.cpu.shares ${shares} is outside ${CPU_SHARES_MIN}..${CPU_SHARES_MAX} (the kernel's range)`);
  }
}
