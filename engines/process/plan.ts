// Pure translation of an OCI config.json into the plan a forked child executes. All
// validation of user input happens here, in spored, so a bad config.json is answered
// with InvalidArgument naming the field before anything is forked or mounted.
//
// config.json is untrusted JSON: every field read is checked for its type before use (a
// string where an array belongs must not throw a TypeError, nor reach the child), and the
// name tables are looked up by own keys only ("toString" is no capability). Fuzzing
// findings, fuzz/corpus/oci/regress-*.
import { FailedPrecondition, InvalidArgument } from '../../sys/errors.js';
import { MOUNT_ATTR, MS } from '../../sys/constants.js';
import type { Capabilities, Mount, Process, Spec } from '../../protocols/oci/spec.js';
import { hasHooks, ociStateBase, parseHooks, type Hooks } from '../../protocols/oci/hooks.js';
import { entersPidNsLast, idMapText, inUserNs, type ChildHooks, type DeviceNode, type ExecPlan, type IdMapping, type IdMaps, type InitPlan, type MountStep, type NamespaceStep, type ProcessPlan, type Stdio } from './protocol.js';

export const CAPS: Record<string, number> = {
  CAP_CHOWN: 0, CAP_DAC_OVERRIDE: 1, CAP_DAC_READ_SEARCH: 2, CAP_FOWNER: 3, CAP_FSETID: 4,
  CAP_KILL: 5, CAP_SETGID: 6, CAP_SETUID: 7, CAP_SETPCAP: 8, CAP_LINUX_IMMUTABLE: 9,
  CAP_NET_BIND_SERVICE: 10, CAP_NET_BROADCAST: 11, CAP_NET_ADMIN: 12, CAP_NET_RAW: 13,
  CAP_IPC_LOCK: 14, CAP_IPC_OWNER: 15, CAP_SYS_MODULE: 16, CAP_SYS_RAWIO: 17, CAP_SYS_CHROOT: 18,
  CAP_SYS_PTRACE: 19, CAP_SYS_PACCT: 20, CAP_SYS_ADMIN: 21, CAP_SYS_BOOT: 22, CAP_SYS_NICE: 23,
  CAP_SYS_RESOURCE: 24, CAP_SYS_TIME: 25, CAP_SYS_TTY_CONFIG: 26, CAP_MKNOD: 27, CAP_LEASE: 28,
  CAP_AUDIT_WRITE: 29, CAP_AUDIT_CONTROL: 30, CAP_SETFCAP: 31, CAP_MAC_OVERRIDE: 32,
  CAP_MAC_ADMIN: 33, CAP_SYSLOG: 34, CAP_WAKE_ALARM: 35, CAP_BLOCK_SUSPEND: 36, CAP_AUDIT_READ: 37,
  CAP_PERFMON: 38, CAP_BPF: 39, CAP_CHECKPOINT_RESTORE: 40,
};

export const RLIMITS: Record<string, number> = {
  RLIMIT_CPU: 0, RLIMIT_FSIZE: 1, RLIMIT_DATA: 2, RLIMIT_STACK: 3, RLIMIT_CORE: 4, RLIMIT_RSS: 5,
  RLIMIT_NPROC: 6, RLIMIT_NOFILE: 7, RLIMIT_MEMLOCK: 8, RLIMIT_AS: 9, RLIMIT_LOCKS: 10,
  RLIMIT_SIGPENDING: 11, RLIMIT_MSGQUEUE: 12, RLIMIT_NICE: 13, RLIMIT_RTPRIO: 14, RLIMIT_RTTIME: 15,
};

// option -> [flags to set, clear?]
const MOUNT_FLAGS: Record<string, [number, boolean]> = {
  ro: [MS.RDONLY, false], rw: [MS.RDONLY, true],
  nosuid: [MS.NOSUID, false], suid: [MS.NOSUID, true],
  nodev: [MS.NODEV, false], dev: [MS.NODEV, true],
  noexec: [MS.NOEXEC, false], exec: [MS.NOEXEC, true],
  sync: [MS.SYNCHRONOUS, false], async: [MS.SYNCHRONOUS, true],
  dirsync: [MS.DIRSYNC, false], remount: [MS.REMOUNT, false], mand: [MS.MANDLOCK, false], nomand: [MS.MANDLOCK, true],
  atime: [MS.NOATIME, true], noatime: [MS.NOATIME, false], diratime: [MS.NODIRATIME, true], nodiratime: [MS.NODIRATIME, false],
  relatime: [MS.RELATIME, false], norelatime: [MS.RELATIME, true], strictatime: [MS.STRICTATIME, false],
  nostrictatime: [MS.STRICTATIME, true], lazytime: [MS.LAZYTIME, false], nolazytime: [MS.LAZYTIME, true],
  bind: [MS.BIND, false], rbind: [MS.BIND | MS.REC, false], nosymfollow: [MS.NOSYMFOLLOW, false],
};

/**
 * Recursive mount attributes (runc's table: option -> [MOUNT_ATTR_* bit, clear?]), applied
 * with mount_setattr(AT_RECURSIVE) to the mount and everything below it: `rro` is how
 * Kubernetes' recursive read-only mounts and Docker's bind-recursive=readonly reach the runtime.
 */
const RECURSIVE_ATTRS: Record<string, [number, boolean]> = {
  rro: [MOUNT_ATTR.RDONLY, false], rrw: [MOUNT_ATTR.RDONLY, true],
  rnosuid: [MOUNT_ATTR.NOSUID, false], rsuid: [MOUNT_ATTR.NOSUID, true],
  rnodev: [MOUNT_ATTR.NODEV, false], rdev: [MOUNT_ATTR.NODEV, true],
  rnoexec: [MOUNT_ATTR.NOEXEC, false], rexec: [MOUNT_ATTR.NOEXEC, true],
  rnodiratime: [MOUNT_ATTR.NODIRATIME, false], rdiratime: [MOUNT_ATTR.NODIRATIME, true],
  rrelatime: [MOUNT_ATTR.RELATIME, false], rnorelatime: [MOUNT_ATTR.RELATIME, true],
  rnoatime: [MOUNT_ATTR.NOATIME, false], ratime: [MOUNT_ATTR.NOATIME, true],
  rstrictatime: [MOUNT_ATTR.STRICTATIME, false], rnostrictatime: [MOUNT_ATTR.STRICTATIME, true],
  rnosymfollow: [MOUNT_ATTR.NOSYMFOLLOW, false], rsymfollow: [MOUNT_ATTR.NOSYMFOLLOW, true],
};

const PROPAGATION: Record<string, number> = {
  private: MS.PRIVATE, rprivate: MS.PRIVATE | MS.REC, shared: MS.SHARED, rshared: MS.SHARED | MS.REC,
  slave: MS.SLAVE, rslave: MS.SLAVE | MS.REC, unbindable: MS.UNBINDABLE, runbindable: MS.UNBINDABLE | MS.REC,
};

// ---- type guards for JSON input: each returns the value or throws InvalidArgument naming the field ----

/** table[key] only for the table's own keys (JSON can name "__proto__", "constructor", "toString"). */
function lookup<T>(table: Record<string, T>, key: unknown): T | undefined {
  return typeof key === 'string' && Object.hasOwn(table, key) ? table[key] : undefined;
}

function show(v: unknown): string {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 80 ? `${s.slice(0, 80)}...` : s;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** An optional JSON object (absent: undefined). */
function objectOf(v: unknown, field: string): Record<string, unknown> | undefined {
  if (v === undefined || v === null) return undefined;
  if (!isObject(v)) throw new InvalidArgument(`${field} must be an object, got ${show(v)}`);
  return v;
}

/** An optional JSON array (absent: []). */
function arrayOf(v: unknown, field: string): unknown[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw new InvalidArgument(`${field} must be an array, got ${show(v)}`);
  return v;
}

function stringsOf(v: unknown, field: string): string[] {
  const a = arrayOf(v, field);
  const i = a.findIndex((x) => typeof x !== 'string');
  if (i >= 0) throw new InvalidArgument(`${field}[${i}] must be a string, got ${show(a[i])}`);
  return a as string[];
}

function optionalString(v: unknown, field: string): string | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw new InvalidArgument(`${field} must be a string, got ${show(v)}`);
  return v;
}

function optionalUint(v: unknown, field: string, max = 0xffffffff): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max) throw new InvalidArgument(`${field} must be an integer 0..${max}, got ${show(v)}`);
  return v;
}

// Options that take effect only on the remount pass of a bind mount.
const BIND_REMOUNT_MASK = MS.RDONLY | MS.NOSUID | MS.NODEV | MS.NOEXEC | MS.NOATIME | MS.NODIRATIME | MS.RELATIME | MS.STRICTATIME | MS.NOSYMFOLLOW;

export interface ParsedMountOptions { flags: number; propagation: number; data: string[]; recursive?: { set: number; clr: number } }

export function parseMountOptions(options: unknown = [], field = 'options'): ParsedMountOptions {
  let flags = 0;
  let propagation = 0;
  const data: string[] = [];
  let recursive: { set: number; clr: number } | undefined;
  for (const opt of stringsOf(options, field)) {
    const f = lookup(MOUNT_FLAGS, opt);
    if (f) {
      flags = f[1] ? flags & ~f[0] : flags | f[0];
      continue;
    }
    const r = lookup(RECURSIVE_ATTRS, opt);
    if (r) {
      recursive ??= { set: 0, clr: 0 };
      if (r[1]) recursive.clr |= r[0];
      else {
        recursive.set |= r[0];
        // an access-time mode in attr_set needs the whole atime field in attr_clr (mount_setattr(2))
        if ((r[0] & MOUNT_ATTR._ATIME) === r[0]) recursive.clr |= MOUNT_ATTR._ATIME;
      }
      continue;
    }
    if (opt === 'tmpcopyup') throw new InvalidArgument(`${field}: tmpcopyup (copying the directory's contents into a new tmpfs) is not supported by spore`);
    const p = lookup(PROPAGATION, opt);
    if (p !== undefined) { propagation |= p; continue; }
    if (opt.startsWith('x-') || opt === 'defaults') continue;
    data.push(opt);
  }
  return { flags, propagation, data, ...(recursive ? { recursive } : {}) };
}

/**
 * One spec mount as a step. `cgroup2Root`: on a pure v2 host, the options the host's cgroup2
 * root has (nsdelegate, favordynmods, memory_recursiveprot, ...), given to a container's
 * cgroup2 mount: a cgroup2 mount made from the host's cgroup namespace sets every root flag
 * from its own options, node-wide, so one without them would clear the host's.
 */
export function mountStep(m: Mount, index: number, cgroupV1: { name: string; hostDir: string }[] | null, cgroup2Root: readonly string[] = []): MountStep {
  if (!isObject(m)) throw new InvalidArgument(`mounts[${index}] must be an object, got ${show(m)}`);
  if (typeof m.destination !== 'string' || m.destination === '') {
    throw new InvalidArgument(`mounts[${index}].destination must be a path, got ${JSON.stringify(m.destination)}`);
  }
  // runc takes a relative destination as relative to the container's root (deprecated there)
  if (!m.destination.startsWith('/')) m = { ...m, destination: `/${m.destination}` };
  const o = parseMountOptions(m.options, `mounts[${index}].options`);
  const type = optionalString(m.type, `mounts[${index}].type`) ?? '';
  const bind = type === 'bind' || (o.flags & MS.BIND) !== 0;
  const source = optionalString(m.source, `mounts[${index}].source`) ?? (bind ? '' : type);
  if (bind && type === 'cgroup') throw new InvalidArgument(`mounts[${index}] (${m.destination}): a cgroup mount cannot be a bind mount; drop bind/rbind`);
  if (bind && !source.startsWith('/')) {
    throw new InvalidArgument(`mounts[${index}] (${m.destination}): bind source must be an absolute host path, got ${JSON.stringify(m.source)}`);
  }
  const step: MountStep = {
    destination: m.destination,
    source,
    type: bind ? '' : type,
    flags: bind ? (o.flags & (MS.BIND | MS.REC)) | MS.BIND : o.flags,
    propagation: o.propagation,
    data: o.data.join(','),
    bind,
    remountFlags: bind ? o.flags & BIND_REMOUNT_MASK : 0,
    ...(o.recursive ? { recursive: o.recursive } : {}),
  };
  if (type === 'cgroup') {
    step.remountFlags = o.flags & MS.RDONLY;
    if (cgroupV1) step.cgroupV1 = cgroupV1;
    else {
      step.type = 'cgroup2';
      step.source = 'cgroup2';
      const own = o.data;
      const names = new Set(own.map((d) => d.split('=')[0]));
      step.data = [...own, ...cgroup2Root.filter((d) => !names.has(d.split('=')[0]))].join(',');
    }
  }
  if (!bind && !type) throw new InvalidArgument(`mounts[${index}] (${m.destination}): type is required for non-bind mounts`);
  return step;
}

/**
 * The capability mask of `names` (CAP_* as the runtime spec spells them). A name this table
 * does not know (a typo, `cap_sys_admin`, one newer than this code) is left out and added to
 * `unknown`, as runc ignores it ("ignoring unknown or unavailable capabilities"): a spec
 * Kubernetes or ctr sends with such a name runs with the rest.
 */
export function capMask(names: unknown, field: string, unknown: Set<string> = new Set()): bigint {
  let mask = 0n;
  for (const n of stringsOf(names, `process.capabilities.${field}`)) {
    const bit = lookup(CAPS, n);
    if (bit === undefined) { unknown.add(n); continue; }
    mask |= 1n << BigInt(bit);
  }
  return mask;
}

function capsOf(caps: Capabilities | undefined, where: string): ProcessPlan['caps'] {
  const c = objectOf(caps, `${where}.capabilities`) as Capabilities | undefined;
  const unknown = new Set<string>();
  const ambient: number[] = [];
  for (const n of stringsOf(c?.ambient, `${where}.capabilities.ambient`)) {
    const bit = lookup(CAPS, n);
    if (bit === undefined) unknown.add(n); else ambient.push(bit);
  }
  return {
    bounding: capMask(c?.bounding, 'bounding', unknown),
    effective: capMask(c?.effective, 'effective', unknown),
    permitted: capMask(c?.permitted, 'permitted', unknown),
    inheritable: capMask(c?.inheritable, 'inheritable', unknown),
    ambient,
    ...(unknown.size > 0 ? { unknown: [...unknown].sort() } : {}),
  };
}

function isUint(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 0xffffffff;
}

/**
 * A process's uid or gid: 0 to 2^31-1, as runc takes them ("uids and gids must be in range
 * 0-2147483647"). 2^32-1 is -1 to setresuid, "leave unchanged": the process stayed root.
 */
const MAX_ID = 0x7fffffff;
function isId(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= MAX_ID;
}

/** An rlimit value: a non-negative integer (uint64 in the spec; above 2^53 is "unlimited" anyway). */
function isCount(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0;
}

export function processPlan(p: Process | undefined, stdio: Stdio, seccomp: ProcessPlan['seccomp'], where = 'process'): ProcessPlan {
  if (!isObject(p)) throw new InvalidArgument(`${where} is required (an object)`);
  if (!Array.isArray(p.args) || p.args.length === 0 || !p.args.every((a) => typeof a === 'string')) {
    throw new InvalidArgument(`${where}.args must be a non-empty array of strings`);
  }
  if (typeof p.cwd !== 'string' || !p.cwd.startsWith('/')) throw new InvalidArgument(`${where}.cwd must be an absolute path`);
  const user = objectOf(p.user, `${where}.user`) ?? { uid: 0, gid: 0 };
  if (!isId(user.uid) || !isId(user.gid)) throw new InvalidArgument(`${where}.user.uid/gid must be integers from 0 to ${MAX_ID}, got ${show(user.uid)}/${show(user.gid)}`);
  const gids = arrayOf(user.additionalGids, `${where}.user.additionalGids`);
  if (!gids.every(isId)) throw new InvalidArgument(`${where}.user.additionalGids must be integers from 0 to ${MAX_ID}`);
  const umask = optionalUint(user.umask, `${where}.user.umask`, 0o777);
  const env = stringsOf(p.env, `${where}.env`);
  // as runc's init checks them (Create fails there): NAME=value, a name, no NUL anywhere
  for (const [i, e] of env.entries()) {
    const eq = e.indexOf('=');
    if (eq < 0) throw new InvalidArgument(`${where}.env[${i}] ${show(e.slice(0, 64))}: invalid environment variable: missing '='`);
    if (eq === 0) throw new InvalidArgument(`${where}.env[${i}] ${show(e.slice(0, 64))}: invalid environment variable: name cannot be empty`);
    if (e.includes('\0')) throw new InvalidArgument(`${where}.env[${i}]: invalid environment variable: contains a NUL byte`);
  }
  const rlimits = arrayOf(p.rlimits, `${where}.rlimits`).map((r, i) => {
    if (!isObject(r)) throw new InvalidArgument(`${where}.rlimits[${i}] must be an object, got ${show(r)}`);
    const resource = lookup(RLIMITS, r.type);
    if (resource === undefined) throw new InvalidArgument(`${where}.rlimits[${i}]: unknown type ${show(r.type)}`);
    if (!isCount(r.soft) || !isCount(r.hard)) throw new InvalidArgument(`${where}.rlimits[${i}] (${r.type}): soft and hard must be unsigned integers`);
    if (r.soft > r.hard) {
      throw new InvalidArgument(`${where}.rlimits[${i}] (${r.type}): soft must be <= hard`);
    }
    return { resource, soft: BigInt(Math.min(r.soft, Number.MAX_SAFE_INTEGER)), hard: BigInt(Math.min(r.hard, Number.MAX_SAFE_INTEGER)) };
  });
  if (p.terminal && !stdio.terminal) throw new InvalidArgument(`${where}.terminal is true but no console was allocated`);
  const oom = p.oomScoreAdj;
  if (oom !== undefined && oom !== null && (typeof oom !== 'number' || !Number.isInteger(oom) || oom < -1000 || oom > 1000)) {
    throw new InvalidArgument(`${where}.oomScoreAdj must be an integer -1000..1000, got ${show(oom)}`);
  }
  const apparmorProfile = optionalString(p.apparmorProfile, `${where}.apparmorProfile`) || null;
  const selinuxLabel = optionalString(p.selinuxLabel, `${where}.selinuxLabel`) || null;
  return {
    apparmorProfile,
    selinuxLabel,
    args: p.args,
    env,
    cwd: p.cwd,
    uid: user.uid,
    gid: user.gid,
    additionalGids: gids as number[],
    umask: umask ?? 0o022,
    caps: capsOf(p.capabilities, where),
    rlimits,
    noNewPrivileges: p.noNewPrivileges === true,
    oomScoreAdj: typeof p.oomScoreAdj === 'number' ? p.oomScoreAdj : null,
    seccomp,
    stdio,
  };
}

const NS_TYPES: ReadonlySet<string> = new Set(['pid', 'network', 'mount', 'ipc', 'uts', 'user', 'cgroup', 'time']);

export function namespaceSteps(spec: Spec): NamespaceStep[] {
  const seen = new Set<string>();
  return arrayOf(objectOf(spec.linux, 'linux')?.namespaces, 'linux.namespaces').map((v, i) => {
    if (!isObject(v)) throw new InvalidArgument(`linux.namespaces[${i}] must be an object, got ${show(v)}`);
    const n = v as unknown as { type: string; path?: unknown };
    if (!NS_TYPES.has(n.type)) throw new InvalidArgument(`linux.namespaces[${i}]: unknown type ${show(n.type)}`);
    if (seen.has(n.type)) throw new InvalidArgument(`linux.namespaces: ${n.type} listed twice`);
    seen.add(n.type);
    if (n.type === 'time') throw new InvalidArgument('linux.namespaces: time namespaces are not supported');
    if (n.path !== undefined && (typeof n.path !== 'string' || !n.path.startsWith('/'))) {
      throw new InvalidArgument(`linux.namespaces[${i}] (${n.type}): path must be absolute`);
    }
    return { type: n.type, path: n.path ?? null } as NamespaceStep;
  });
}

// runc's order (specconv.AllowedDevices): in a user namespace each is a bind mount, and the
// container's mount table shows the order
const DEFAULT_DEVICES: DeviceNode[] = [
  { path: '/dev/null', type: 'c', major: 1, minor: 3, mode: 0o666, uid: 0, gid: 0 },
  { path: '/dev/random', type: 'c', major: 1, minor: 8, mode: 0o666, uid: 0, gid: 0 },
  { path: '/dev/full', type: 'c', major: 1, minor: 7, mode: 0o666, uid: 0, gid: 0 },
  { path: '/dev/tty', type: 'c', major: 5, minor: 0, mode: 0o666, uid: 0, gid: 0 },
  { path: '/dev/zero', type: 'c', major: 1, minor: 5, mode: 0o666, uid: 0, gid: 0 },
  { path: '/dev/urandom', type: 'c', major: 1, minor: 9, mode: 0o666, uid: 0, gid: 0 },
];

export interface InitPlanInput {
  id: string;
  /** the bundle's absolute path (the OCI state's `bundle`, for hooks) */
  bundle?: string;
  spec: Spec;
  rootfs: string;
  stdio: Stdio;
  cgroupProcs: string[];
  /** v1/hybrid hosts: container cgroup dir per controller mount (for a 'cgroup' mount) */
  cgroupV1Dirs: { name: string; hostDir: string }[] | null;
  /** pure v2 hosts: the host's cgroup2 root options, kept by a container's cgroup2 mount (mountStep) */
  cgroup2Root?: readonly string[];
  seccomp: ProcessPlan['seccomp'];
  /** whether a network namespace path is the host's own (a sysctl must not land there) */
  isHostNetns?: (path: string) => boolean;
}

/** Sysctls of the ipc namespace (besides fs.mqueue.*), as runc's validator lists them. */
const IPC_SYSCTLS: ReadonlySet<string> = new Set(['kernel.msgmax', 'kernel.msgmnb', 'kernel.msgmni', 'kernel.sem', 'kernel.shmall', 'kernel.shmmax', 'kernel.shmmni', 'kernel.shm_rmid_forced']);

/**
 * A container sets only sysctls of a namespace of its own; any other would change the host.
 * The rule is runc's (libcontainer/configs/validate, sysctl): ipc ones (and fs.mqueue.*)
 * need an ipc namespace, net.* a network namespace that is not the host's, kernel.domainname
 * a uts namespace (kernel.hostname conflicts with the hostname field); every other name is
 * refused. Throws InvalidArgument naming the sysctl and what it needs.
 */
export function checkSysctls(names: string[], namespaces: NamespaceStep[], isHostNetns: (path: string) => boolean): void {
  const ns = (t: NamespaceStep['type']): NamespaceStep | undefined => namespaces.find((n) => n.type === t);
  for (const k of names) {
    // written as a path under /proc/sys: no way out of it
    if (k.split(/[./]/).some((c) => c === '' || c === '..')) throw new InvalidArgument(`linux.sysctl: ${JSON.stringify(k)} is not a sysctl name`);
    if (IPC_SYSCTLS.has(k) || k.startsWith('fs.mqueue.')) {
      if (ns('ipc')) continue;
      throw new InvalidArgument(`linux.sysctl ${k}: not allowed in the host's ipc namespace (add an ipc namespace)`);
    }
    if (k.startsWith('net.')) {
      const net = ns('network');
      if (net && (net.path === null || !isHostNetns(net.path))) continue;
      throw new InvalidArgument(`linux.sysctl ${k}: not allowed in the host's network namespace`);
    }
    if (ns('uts')) {
      if (k === 'kernel.domainname') continue;
      if (k === 'kernel.hostname') throw new InvalidArgument('linux.sysctl kernel.hostname: conflicts with the "hostname" field; set that instead');
    }
    throw new InvalidArgument(`linux.sysctl ${k}: not in a separate kernel namespace (it would change the host)`);
  }
}

/** The Linux security modules this host can label a process with. */
export interface HostLsm { apparmor: boolean; selinux: boolean }

/**
 * Whether `plan`'s child may join its cgroup late (plan.lateCgroup): it forks and sets up
 * namespaces and mounts while spored creates the cgroup, and joins it at the end of its
 * set-up, or before it mounts the cgroup hierarchy (CRI's specs do: those binds need the
 * dirs); `seedMountsLate`: the root seed has 'late-cgroup-mount' (protocol.ts SEED_FEATURES;
 * an older one would bind dirs that may not exist yet). Not when the spec has no /proc (the
 * child reaches the cgroup through /proc/self/fd), nor when it joins a pod's pid namespace
 * (it enters that last, once in its cgroup: entersPidNsLast), nor with prestart or
 * createRuntime hooks (`runtimeHooks`: runc runs them with the init in its cgroup, limits
 * set; a hook may change the cgroup's settings), nor with a user namespace of its own (the
 * child joins before it loses root on the host: container-init.ts).
 */
export function lateCgroupFits(plan: InitPlan, runtimeHooks: boolean, seedMountsLate: boolean): boolean {
  return (seedMountsLate || !plan.mounts.some((m) => m.type === 'cgroup' || m.type === 'cgroup2'))
    && plan.mounts.some((m) => m.destination === '/proc' && m.type === 'proc')
    && !entersPidNsLast(plan)
    && !runtimeHooks
    && !inUserNs(plan);
}

/**
 * A profile or label the host cannot apply is refused, as runc refuses it: never a process
 * that runs unconfined when its spec asked for confinement. Throws FailedPrecondition.
 */
export function checkLsm(p: ProcessPlan, host: HostLsm, where = 'process'): void {
  if (p.apparmorProfile && !host.apparmor) throw new FailedPrecondition(`${where}.apparmorProfile ${JSON.stringify(p.apparmorProfile)}: AppArmor is not enabled on this host; remove the profile or run on a host with AppArmor`);
  if (p.selinuxLabel && !host.selinux) throw new FailedPrecondition(`${where}.selinuxLabel is set, but SELinux is not enabled on this host; remove the label or run on a host with SELinux`);
}

export function initPlan(input: InitPlanInput): InitPlan {
  const { spec } = input;
  if (!isObject(spec)) throw new InvalidArgument('config.json must be a JSON object');
  const hooks = parseHooks(spec.hooks);
  const linux = objectOf(spec.linux, 'linux');
  const root = objectOf(spec.root, 'root');
  const hostname = optionalString(spec.hostname, 'hostname');
  const domainname = optionalString(spec.domainname, 'domainname');
  const namespaces = namespaceSteps(spec);
  if (!namespaces.some((n) => n.type === 'mount')) {
    throw new InvalidArgument('linux.namespaces must include a mount namespace (spore never mounts in the host namespace)');
  }
  const utsNew = namespaces.some((n) => n.type === 'uts' && n.path === null);
  if (hostname && !utsNew) throw new InvalidArgument('hostname is set but there is no new uts namespace');
  const devices: DeviceNode[] = [...DEFAULT_DEVICES];
  for (const [i, d] of arrayOf(linux?.devices, 'linux.devices').entries()) {
    if (!isObject(d)) throw new InvalidArgument(`linux.devices[${i}] must be an object, got ${show(d)}`);
    // anywhere in the container's root, as runc makes them (a relative path is from its top;
    // it is resolved in the root as every path there is: secureJoin)
    if (typeof d.path !== 'string' || d.path.replace(/\/+/g, '/').replace(/\/$/, '') === '') throw new InvalidArgument(`linux.devices[${i}].path must be a file path in the container, got ${show(d.path)}`);
    const path = d.path.startsWith('/') ? d.path : `/${d.path}`;
    if (typeof d.type !== 'string' || !['c', 'b', 'u', 'p'].includes(d.type)) throw new InvalidArgument(`linux.devices[${i}].type must be c, b, u or p`);
    const at = `linux.devices[${i}]`;
    const node: DeviceNode = {
      path, type: (d.type === 'u' ? 'c' : d.type) as DeviceNode['type'],
      major: optionalUint(d.major, `${at}.major`) ?? 0, minor: optionalUint(d.minor, `${at}.minor`) ?? 0,
      mode: optionalUint(d.fileMode, `${at}.fileMode`, 0o7777) ?? 0o666, uid: optionalUint(d.uid, `${at}.uid`) ?? 0, gid: optionalUint(d.gid, `${at}.gid`) ?? 0,
    };
    const same = devices.findIndex((x) => x.path === path);
    if (same >= 0) devices[same] = node; else devices.push(node);
  }
  const propagation = linux?.rootfsPropagation;
  const rootPropagation = propagation ? lookup(PROPAGATION, propagation) : MS.SLAVE;
  if (rootPropagation === undefined) throw new InvalidArgument(`linux.rootfsPropagation: unknown value ${show(propagation)}`);
  const sysctl = objectOf(linux?.sysctl, 'linux.sysctl') ?? {};
  for (const [k, v] of Object.entries(sysctl)) {
    if (typeof v !== 'string') throw new InvalidArgument(`linux.sysctl[${JSON.stringify(k)}] must be a string, got ${show(v)}`);
  }
  checkSysctls(Object.keys(sysctl), namespaces, input.isHostNetns ?? (() => false));
  const process = processPlan(spec.process, input.stdio, input.seccomp);
  const userNs = idMapsOf(linux, namespaces, process);
  return {
    kind: 'init',
    id: input.id,
    rootfs: input.rootfs,
    readonlyRoot: root?.readonly === true,
    rootPropagation: rootPropagation & ~MS.REC,
    namespaces,
    hostname: utsNew ? (hostname ?? null) : null,
    domainname: utsNew ? (domainname ?? null) : null,
    mounts: arrayOf(spec.mounts, 'mounts').map((m, i) => mountStep(m as Mount, i, input.cgroupV1Dirs, input.cgroup2Root)),
    devices,
    maskedPaths: stringsOf(linux?.maskedPaths, 'linux.maskedPaths'),
    readonlyPaths: stringsOf(linux?.readonlyPaths, 'linux.readonlyPaths'),
    sysctl: sysctl as Record<string, string>,
    cgroupProcs: input.cgroupProcs,
    process,
    ...(hasHooks(hooks, 'prestart', 'createRuntime', 'createContainer', 'startContainer') ? { hooks: childHooks(hooks, input, spec) } : {}),
    ...(userNs ? { userNs } : {}),
  };
}

/** The kernel's limits on one uid_map or gid_map write (user_namespaces(7); Linux >= 4.15). */
const MAX_ID_MAP_LINES = 340;
const MAX_ID_MAP_BYTES = 4095; // one write, less than a page
const ID_LIMIT = 2 ** 32;

/**
 * linux.uidMappings and gidMappings for a new user namespace (runtime-spec config-linux.md
 * "User namespace mappings"), checked as the kernel will (ranges inside 32 bits, no overlap
 * inside or outside, at most 340 lines in one write under a page) and so that the process's
 * user and groups are mapped. Null without a new user namespace; InvalidArgument for
 * mappings without one. A namespace joined by path has maps of its own: mappings given with
 * it (runc asks for them) are not written.
 */
function idMapsOf(linux: Record<string, unknown> | undefined, namespaces: NamespaceStep[], process: ProcessPlan): IdMaps | null {
  const user = namespaces.find((n) => n.type === 'user');
  const uids = arrayOf(linux?.uidMappings, 'linux.uidMappings');
  const gids = arrayOf(linux?.gidMappings, 'linux.gidMappings');
  if (!user) {
    if (uids.length > 0 || gids.length > 0) throw new InvalidArgument('linux.uidMappings/gidMappings are set but linux.namespaces has no user namespace; add {"type": "user"} or remove the mappings');
    return null;
  }
  if (user.path !== null) return null;
  const maps = { uidMappings: idMappings(uids, 'linux.uidMappings'), gidMappings: idMappings(gids, 'linux.gidMappings') };
  const mapped = (list: IdMapping[], id: number): boolean => list.some((m) => id >= m.containerID && id < m.containerID + m.size);
  // the set-up runs as root inside (as runc's nsexec, which becomes uid 0 there first)
  for (const [field, list] of [['uidMappings', maps.uidMappings], ['gidMappings', maps.gidMappings]] as const) {
    if (!mapped(list, 0)) throw new InvalidArgument(`linux.${field} must map container id 0: the container is set up as root inside its user namespace`);
  }
  if (!mapped(maps.uidMappings, process.uid)) throw new InvalidArgument(`process.user.uid ${process.uid} is not mapped by linux.uidMappings`);
  for (const gid of [process.gid, ...process.additionalGids]) {
    if (!mapped(maps.gidMappings, gid)) throw new InvalidArgument(`gid ${gid} of process.user is not mapped by linux.gidMappings`);
  }
  return maps;
}

function idMappings(list: unknown[], field: string): IdMapping[] {
  if (list.length === 0) throw new InvalidArgument(`${field} is empty: a new user namespace needs at least one mapping (e.g. {"containerID": 0, "hostID": 100000, "size": 65536})`);
  if (list.length > MAX_ID_MAP_LINES) throw new InvalidArgument(`${field} has ${list.length} entries; the kernel takes at most ${MAX_ID_MAP_LINES}`);
  const out = list.map((v, i): IdMapping => {
    const at = `${field}[${i}]`;
    if (!isObject(v)) throw new InvalidArgument(`${at} must be an object, got ${show(v)}`);
    const m = { containerID: optionalUint(v.containerID, `${at}.containerID`), hostID: optionalUint(v.hostID, `${at}.hostID`), size: optionalUint(v.size, `${at}.size`) };
    if (m.containerID === undefined || m.hostID === undefined || m.size === undefined) throw new InvalidArgument(`${at} needs containerID, hostID and size`);
    if (m.size === 0) throw new InvalidArgument(`${at}.size must be at least 1`);
    // (uid_map ranges end below 2^32-1, which is no id: (uid_t)-1 means "unchanged")
    if (m.containerID + m.size > ID_LIMIT - 1 || m.hostID + m.size > ID_LIMIT - 1) throw new InvalidArgument(`${at}: the range reaches 2^32-1, which is not an id`);
    return m as IdMapping;
  });
  for (const side of ['containerID', 'hostID'] as const) {
    const sorted = [...out].sort((a, b) => a[side] - b[side]);
    for (let i = 1; i < sorted.length; i++) {
      const prev = sorted[i - 1] as IdMapping;
      const cur = sorted[i] as IdMapping;
      if (prev[side] + prev.size > cur[side]) throw new InvalidArgument(`${field}: the ${side} ranges at ${prev[side]} (size ${prev.size}) and ${cur[side]} overlap`);
    }
  }
  if (idMapText(out).length > MAX_ID_MAP_BYTES) throw new InvalidArgument(`${field} is ${idMapText(out).length} bytes as a map; the kernel takes one write under ${MAX_ID_MAP_BYTES + 1} bytes`);
  return out;
}

/** The child's part of `hooks` (protocol.ts ChildHooks); the runtime kinds only pause it. */
function childHooks(hooks: Hooks, input: InitPlanInput, spec: Spec): ChildHooks {
  return {
    pause: hasHooks(hooks, 'prestart', 'createRuntime'),
    createContainer: hooks.createContainer ?? [],
    startContainer: hooks.startContainer ?? [],
    state: ociStateBase(input.id, input.bundle ?? '', spec.annotations),
  };
}

export interface ExecPlanInput {
  id: string;
  execId: string;
  targetPid: number;
  initNamespaces: NamespaceStep[];
  process: Process | undefined;
  stdio: Stdio;
  cgroupProcs: string[];
  seccomp: ProcessPlan['seccomp'];
}

export function execPlan(input: ExecPlanInput): ExecPlan {
  // Join every namespace the init has, whether it created it or joined it by path.
  const namespaces: NamespaceStep[] = input.initNamespaces
    .filter((n) => n.type !== 'pid')
    .map((n) => ({ type: n.type, path: `/proc/${input.targetPid}/ns/${nsFile(n.type)}` }));
  return {
    kind: 'exec',
    id: input.id,
    execId: input.execId,
    targetPid: input.targetPid,
    namespaces,
    cgroupProcs: input.cgroupProcs,
    // 0022 whatever the spec says: runc's exec (its setns init) sets no umask and runs with
    // its own, 0022 (the oracle shows it for a container made with 0027, whose spec ctr copies)
    process: { ...processPlan(input.process, input.stdio, input.seccomp, 'exec process'), umask: 0o022 },
  };
}

export function nsFile(type: NamespaceStep['type']): string {
  switch (type) {
    case 'mount': return 'mnt';
    case 'network': return 'net';
    default: return type;
  }
}
