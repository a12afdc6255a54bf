// cgroup layout detection and path resolution: pure functions over mountinfo text and
// OCI cgroupsPath strings, plus one thin fs wrapper (detectCgroupLayout). Everything here
// returns plain data so the daemon can log it and forked children can use it before exec.

import { readFileSync } from 'node:fs';
import { InvalidArgument } from '../sys/errors.js';

export type CgroupMode = 'v1' | 'hybrid' | 'v2';

export interface CgroupLayout {
  mode: CgroupMode;
  /** Where cgroup filesystems are expected (only mounts at or below it are considered). */
  root: string;
  /** v1 controller → mountpoint. Co-mounted controllers (cpu,cpuacct) map to the same mountpoint. */
  v1: Record<string, string>;
  /** cgroup2 mountpoint: the whole hierarchy in v2 mode, `<root>/unified` in hybrid mode. */
  unified?: string;
  /** Controllers listed in the unified root's cgroup.controllers (informational in hybrid mode). */
  unifiedControllers: string[];
  /** Named v1 hierarchies without controllers (`name=systemd`) → mountpoint. */
  named?: Record<string, string>;
}

/** Key of a hierarchy a cgroup lives in: a v1 controller name or 'unified' for cgroup2. */
export type HierarchyKey = string;

export interface CgroupHandle {
  /** Normalized absolute cgroup path inside every hierarchy, e.g. `/spore/ctr1`. */
  path: string;
  mode: CgroupMode;
  /** hierarchy key → absolute directory of this cgroup. */
  dirs: Record<HierarchyKey, string>;
  /** hierarchy key → mountpoint of that hierarchy (the boundary nothing may be created or removed above). */
  mounts: Record<HierarchyKey, string>;
}

/** v1 controllers spore knows how to drive or account. Named hierarchies (name=systemd) are kept apart (CgroupLayout.named). */
export const V1_CONTROLLERS = [
  'cpu', 'cpuacct', 'cpuset', 'memory', 'devices', 'freezer', 'blkio', 'pids', 'hugetlb',
  'net_cls', 'net_prio', 'perf_event', 'rdma', 'misc',
] as const;
const V1_SET: ReadonlySet<string> = new Set(V1_CONTROLLERS);

export interface MountinfoEntry {
  root: string;
  mountpoint: string;
  fstype: string;
  /** the mount's own options (field 6: rw, nosuid, nodev, noexec, relatime, ...) */
  mountOptions: string[];
  /** the filesystem's options (the last field: rw and, for cgroups, controllers, nsdelegate, favordynmods, ...) */
  superOptions: string[];
}

/** Undo the octal escapes (\040 for space, ...) the kernel uses in mountinfo paths. */
export function unescapeMountPath(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_m, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/** Parse /proc/<pid>/mountinfo lines (see proc(5)): fields before " - " then fstype, source, super options. */
export function parseMountinfo(text: string): MountinfoEntry[] {
  const out: MountinfoEntry[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const pre = line.slice(0, sep).split(' ');
    const post = line.slice(sep + 3).split(' ');
    if (pre.length < 5 || post.length < 3) continue;
    out.push({
      root: unescapeMountPath(pre[3] ?? '/'),
      mountpoint: unescapeMountPath(pre[4] ?? ''),
      fstype: post[0] ?? '',
      mountOptions: (pre[5] ?? '').split(','),
      superOptions: (post[2] ?? '').split(','),
    });
  }
  return out;
}

function isAtOrBelow(path: string, root: string): boolean {
  const r = root.endsWith('/') ? root.slice(0, -1) : root;
  return path === r || path.startsWith(r + '/');
}

/**
 * Build the layout from parsed mountinfo. The first mount of a controller wins (later duplicate
 * bind mounts are ignored). A cgroup2 mount at `root` itself means pure v2.
 */
export function layoutFromMounts(entries: MountinfoEntry[], root = '/sys/fs/cgroup', unifiedControllers: string[] = []): CgroupLayout {
  const v1: Record<string, string> = {};
  const named: Record<string, string> = {};
  let unified: string | undefined;
  for (const e of entries) {
    if (!isAtOrBelow(e.mountpoint, root)) continue;
    if (e.fstype === 'cgroup2') {
      unified ??= e.mountpoint;
    } else if (e.fstype === 'cgroup') {
      for (const opt of e.superOptions) {
        if (V1_SET.has(opt) && v1[opt] === undefined) v1[opt] = e.mountpoint;
        else if (/^name=[^/]+$/.test(opt) && named[opt] === undefined && !e.superOptions.some((o) => V1_SET.has(o))) named[opt] = e.mountpoint;
      }
    }
  }
  const hasV1 = Object.keys(v1).length > 0;
  const mode: CgroupMode = hasV1 ? (unified ? 'hybrid' : 'v1') : 'v2';
  if (!hasV1 && !unified) {
    throw new InvalidArgument(`no cgroup filesystem mounted under ${root}`);
  }
  const layout: CgroupLayout = { mode, root, v1, unifiedControllers };
  if (unified) layout.unified = unified;
  if (hasV1 && Object.keys(named).length > 0) layout.named = named;
  return layout;
}

/** Detect the cgroup layout of this process's mount namespace. */
export function detectCgroupLayout(root = '/sys/fs/cgroup', mountinfoPath = '/proc/self/mountinfo'): CgroupLayout {
  const entries = parseMountinfo(readFileSync(mountinfoPath, 'utf8'));
  const layout = layoutFromMounts(entries, root);
  if (layout.unified) {
    try {
      layout.unifiedControllers = readFileSync(`${layout.unified}/cgroup.controllers`, 'utf8').trim().split(/\s+/).filter(Boolean);
    } catch {
      layout.unifiedControllers = [];
    }
  }
  return layout;
}

export const DEFAULT_CGROUP_PARENT = '/spore';

const NAME_MAX = 255;

/**
 * The cgroup a systemd slice stands for: systemd nests a slice under the slices its name's
 * dash-separated prefixes name (`kubepods-besteffort-pod1.slice` is
 * `/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice`; `-.slice` is
 * the root), as runc's systemd driver expands it (ExpandSlice). InvalidArgument for a name
 * that is not a slice, holds a `/`, or has an empty component (`a--b.slice`, `-a.slice`).
 */
export function expandSlice(slice: string): string {
  const suffix = '.slice';
  if (slice.length <= suffix.length || !slice.endsWith(suffix) || slice.includes('/')) {
    throw new InvalidArgument(`cgroupsPath: ${JSON.stringify(slice)} is not a systemd slice name (like kubepods-burstable.slice)`);
  }
  const name = slice.slice(0, -suffix.length);
  if (name === '-') return '/';
  let path = '';
  let prefix = '';
  for (const component of name.split('-')) {
    if (component === '') throw new InvalidArgument(`cgroupsPath: ${JSON.stringify(slice)} is not a systemd slice name (an empty part between dashes)`);
    path += `/${prefix}${component}${suffix}`;
    prefix += `${component}-`;
  }
  return path;
}

/**
 * The cgroup path a systemd-style `cgroupsPath` names: "slice:prefix:name" (runtime-spec
 * config-linux.md; containerd's CRI writes "<pod slice>:cri-containerd:<id>" when the
 * kubelet's cgroup parent is a `.slice`, i.e. the kubelet runs the systemd cgroup driver) is
 * the unit `prefix-name.scope` (or `name` itself when it is a slice) inside the expanded
 * slice (`system.slice` when empty), where runc's systemd driver has systemd put it.
 * Null when `cgroupsPath` is not of that form.
 */
export function systemdCgroupPath(cgroupsPath: string): string | null {
  const parts = cgroupsPath.split(':');
  if (parts.length !== 3 || cgroupsPath.includes('/')) return null;
  const [slice, prefix, name] = parts as [string, string, string];
  // (a slice name is the last part of its own path: past NAME_MAX it never fits, and its
  // expansion grows with the square of its length)
  if (slice.length > NAME_MAX) throw new InvalidArgument(`cgroupsPath: the slice name is ${slice.length} characters long; at most ${NAME_MAX}`);
  if (name === '') throw new InvalidArgument(`cgroupsPath "${cgroupsPath}": the systemd form "slice:prefix:name" needs a name`);
  const unit = name.endsWith('.slice') ? name : `${prefix}-${name}.scope`;
  const parent = expandSlice(slice === '' ? 'system.slice' : slice);
  return `${parent === '/' ? '' : parent}/${unit}`;
}

/**
 * Normalize an OCI `linux.cgroupsPath` into an absolute cgroup path. Relative paths go under
 * `parent`; the systemd `slice:prefix:name` form is where systemd would put it
 * (systemdCgroupPath; spore makes and manages that cgroup itself: no transient unit). Rejects
 * `..` (no escaping the hierarchy) and things that look like filesystem paths into cgroupfs
 * rather than cgroup paths.
 */
export function normalizeCgroupPath(cgroupsPath: string, parent = DEFAULT_CGROUP_PARENT, fsRoot = '/sys/fs/cgroup'): string {
  if (typeof cgroupsPath !== 'string' || cgroupsPath.trim() === '') {
    throw new InvalidArgument('cgroupsPath is empty');
  }
  const systemd = systemdCgroupPath(cgroupsPath);
  if (systemd !== null) cgroupsPath = systemd;
  if (/[\0\n]/.test(cgroupsPath)) {
    throw new InvalidArgument('cgroupsPath contains NUL or newline');
  }
  if (isAtOrBelow(cgroupsPath, fsRoot)) {
    throw new InvalidArgument(`cgroupsPath "${cgroupsPath}" is a filesystem path; give the path inside the cgroup hierarchy (e.g. /default/ctr1)`);
  }
  const base = cgroupsPath.startsWith('/') ? cgroupsPath : `${parent.startsWith('/') ? parent : `/${parent}`}/${cgroupsPath}`;
  const parts: string[] = [];
  for (const c of base.split('/')) {
    if (c === '' || c === '.') continue;
    if (c === '..') throw new InvalidArgument(`cgroupsPath "${cgroupsPath}" contains ".." (escaping the cgroup hierarchy is not allowed)`);
    if (c.length > NAME_MAX) throw new InvalidArgument(`cgroupsPath component "${c.slice(0, 32)}…" is longer than ${NAME_MAX}`);
    parts.push(c);
  }
  if (parts.length === 0) throw new InvalidArgument(`cgroupsPath "${cgroupsPath}" names the root cgroup`);
  return '/' + parts.join('/');
}

export interface HandleOptions {
  /** Parent for relative cgroupsPath values. */
  parent?: string;
  /**
   * Also a directory in every named v1 hierarchy (`name=systemd`): runc's cgroupfs driver
   * joins every hierarchy the host mounts, and a container sees them in /proc/self/cgroup
   * and under /sys/fs/cgroup. Containers only: function instances need none (one write less).
   */
  named?: boolean;
}

/**
 * Resolve a cgroupsPath into directories in every hierarchy the layout has. In hybrid mode the
 * cgroup also gets a directory in the unified hierarchy (processes join it, as with runc) but
 * limits come from the v1 controllers.
 */
export function cgroupHandle(layout: CgroupLayout, cgroupsPath: string, opts: HandleOptions = {}): CgroupHandle {
  const path = normalizeCgroupPath(cgroupsPath, opts.parent ?? DEFAULT_CGROUP_PARENT, layout.root);
  const dirs: Record<string, string> = {};
  const mounts: Record<string, string> = {};
  if (layout.mode !== 'v2') {
    for (const [ctrl, mnt] of Object.entries(layout.v1)) {
      dirs[ctrl] = mnt + path;
      mounts[ctrl] = mnt;
    }
  }
  if (layout.unified) {
    dirs['unified'] = layout.unified + path;
    mounts['unified'] = layout.unified;
  }
  if (opts.named && layout.mode !== 'v2') {
    for (const [name, mnt] of Object.entries(layout.named ?? {})) {
      dirs[name] = mnt + path;
      mounts[name] = mnt;
    }
  }
  return { path, mode: layout.mode, dirs, mounts };
}

/**
 * Whether a process whose /proc/<pid>/cgroup reads `procCgroup` (cgroups(7): `id:controllers:path`
 * lines; "" controllers for cgroup2, `name=systemd` for a named one) is in `handle`'s cgroup
 * or below it, in any hierarchy the handle has. A container's kill (kill --all, the init's
 * exit without a pid namespace of its own) takes every process there.
 */
export function cgroupHolds(handle: CgroupHandle, procCgroup: string): boolean {
  for (const line of procCgroup.split('\n')) {
    const m = /^\d+:([^:]*):(.*)$/.exec(line);
    if (!m) continue;
    const keys = m[1] === '' ? ['unified'] : (m[1] as string).split(',');
    for (const k of keys) {
      const dir = handle.dirs[k];
      const mnt = handle.mounts[k];
      if (dir === undefined || mnt === undefined) continue;
      const own = mnt + (m[2] === '/' ? '' : m[2]);
      if (own === dir || own.startsWith(`${dir}/`)) return true;
    }
  }
  return false;
}

/** Unique directories of a handle (co-mounted controllers share one). */
export function uniqueDirs(handle: CgroupHandle): string[] {
  return [...new Set(Object.values(handle.dirs))];
}

// ---- pure value conversions -------------------------------------------------------------

/** cgroup v1 cpu.shares [2, 262144] → v2 cpu.weight [1, 10000] (the runc/crun formula). */
export function sharesToWeight(shares: number): number {
  if (shares === 0) return 0;
  const s = Math.min(Math.max(shares, 2), 262144);
  return Math.floor(1 + ((s - 2) * 9999) / 262142);
}

/** v1 blkio.weight [10, 1000] → v2 io.weight [1, 10000]. */
export function blkioWeightToIoWeight(weight: number): number {
  if (weight === 0) return 0;
  return Math.floor(1 + ((weight - 10) * 9999) / 990);
}

/**
 * OCI memory.swap is memory+swap (v1 semantics); v2's memory.swap.max is swap alone.
 * Returns the memory.swap.max value, or undefined when nothing should be written.
 */
export function memorySwapV2(swap: number | undefined, limit: number | undefined): number | 'max' | undefined {
  const mem = limit ?? 0;
  const sw = swap ?? 0;
  // Unlimited memory without an explicit swap: unlimited swap too (v1 compatibility).
  if (mem === -1 && sw === 0) return 'max';
  if (sw === -1) return 'max';
  if (sw === 0) return undefined;
  if (mem === 0 || mem === -1) throw new InvalidArgument('memory.swap set without a memory limit');
  if (mem < 0) throw new InvalidArgument(`invalid memory limit ${mem}`);
  if (sw < mem) throw new InvalidArgument(`memory.swap (${sw}) must be >= memory.limit (${mem})`);
  return sw - mem;
}

/** v2 cpu.max content for quota/period (quota <= 0 or unset → "max"). */
export function cpuMaxValue(quota: number | undefined, period: number | undefined, currentPeriod = 100000): string {
  const q = quota === undefined || quota <= 0 ? 'max' : String(quota);
  const p = period && period > 0 ? period : currentPeriod;
  return `${q} ${p}`;
}

/** A v1 device cgroup rule line: "c 1:3 rwm", with '*' for wildcards. */
export function deviceRuleLine(rule: { type?: string; major?: number | null; minor?: number | null; access?: string }): string {
  const type = rule.type ?? 'a';
  if (!['a', 'b', 'c'].includes(type)) throw new InvalidArgument(`device rule type "${type}" (want a, b or c)`);
  const access = rule.access ?? 'rwm';
  if (!/^[rwm]{1,3}$/.test(access)) throw new InvalidArgument(`device rule access "${access}" (want a subset of rwm)`);
  const num = (n: number | null | undefined): string => (n === undefined || n === null || n < 0 ? '*' : String(n));
  return `${type} ${num(rule.major)}:${num(rule.minor)} ${access}`;
}

/**
 * Whether a rule list amounts to "allow every device" (nothing for a v2 eBPF program to do).
 * An empty list requests nothing; otherwise the last wildcard rule must allow rwm with no deny after it.
 */
export function devicesAllowAll(rules: ReadonlyArray<{ allow: boolean; type?: string; major?: number | null; minor?: number | null; access?: string }>): boolean {
  if (rules.length === 0) return true;
  const isWild = (r: { type?: string; major?: number | null; minor?: number | null; access?: string }): boolean =>
    (r.type ?? 'a') === 'a' && (r.major ?? -1) < 0 && (r.minor ?? -1) < 0 && [...'rwm'].every((c) => (r.access ?? 'rwm').includes(c));
  let lastWild = -1;
  rules.forEach((r, i) => { if (isWild(r)) lastWild = i; });
  if (lastWild < 0 || !rules[lastWild]?.allow) return false;
  return rules.slice(lastWild + 1).every((r) => r.allow);
}

/** "hugepages-2048kB" (sysfs) → "2MB" (cgroup file naming, as in OCI pageSize). */
export function hugePageSizeName(sysfsName: string): string | undefined {
  const m = /^hugepages-(\d+)kB$/.exec(sysfsName);
  if (!m) return undefined;
  let kb = Number(m[1]);
  const units = ['KB', 'MB', 'GB', 'TB'];
  let u = 0;
  while (kb >= 1024 && kb % 1024 === 0 && u < units.length - 1) { kb /= 1024; u++; }
  return `${kb}${units[u]}`;
}

/** Parse "key value" lines (memory.stat, cpu.stat, memory.events, ...) into numbers. */
export function parseKeyValues(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of text.split('\n')) {
    const [k, v] = line.trim().split(/\s+/);
    if (!k || v === undefined) continue;
    out[k] = parseCgroupNumber(v);
  }
  return out;
}

/** Sentinel used in stats for "no limit" (v2 "max", v1 page-counter max). */
export const UNLIMITED = -1;

/** A single cgroup number; "max" and v1's page-counter maximum (≥ 2^62) become UNLIMITED. */
export function parseCgroupNumber(s: string): number {
  const t = s.trim();
  if (t === 'max' || t === '-1') return UNLIMITED;
  const n = Number(t);
  if (!Number.isFinite(n)) return 0;
  return n >= 2 ** 62 ? UNLIMITED : n;
}

export interface BlkioEntry { major: number; minor: number; op: string; value: number }

/** v1 blkio "8:0 Read 123" lines (the "Total" line is dropped). */
export function parseBlkioV1(text: string): BlkioEntry[] {
  const out: BlkioEntry[] = [];
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    const m = /^(\d+):(\d+)$/.exec(f[0] ?? '');
    if (!m) continue;
    if (f.length === 3) out.push({ major: Number(m[1]), minor: Number(m[2]), op: f[1] ?? '', value: Number(f[2]) });
    else if (f.length === 2) out.push({ major: Number(m[1]), minor: Number(m[2]), op: '', value: Number(f[1]) });
  }
  return out;
}

/** v2 io.stat "8:0 rbytes=1 wbytes=2 ..." → one entry per key. */
export function parseIoStatV2(text: string): BlkioEntry[] {
  const out: BlkioEntry[] = [];
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    const m = /^(\d+):(\d+)$/.exec(f[0] ?? '');
    if (!m) continue;
    for (const kv of f.slice(1)) {
      const [k, v] = kv.split('=');
      if (k && v !== undefined) out.push({ major: Number(m[1]), minor: Number(m[2]), op: k, value: Number(v) });
    }
  }
  return out;
}
