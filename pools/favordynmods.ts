// cgroup "favordynmods": a node setting that takes the RCU grace period out of every cgroup move.
//
// Writing a pid into any cgroup.procs takes cgroup_threadgroup_rwsem for writing. The first
// writer after a quiet spell waits for an RCU grace period (rcu_sync_enter) while holding
// cgroup_mutex: 5-17 ms on 2-CPU PVM guests, paid by every container start (runc's too) and by
// every function instance moved after an idle moment. The cgroup2 mount option `favordynmods`
// (Linux >= 6.0; Documentation/admin-guide/cgroup-v2.rst, "favordynmods: Reduce the latencies
// of dynamic cgroup modifications such as task migrations ... at the cost of making hot path
// operations such as forks and exits more expensive") keeps the semaphore's readers on their
// slow path for good, so a move is a plain syscall (0.3 ms instead of 5.8 ms p50 here, one pid
// 50 ms apart); fork, exit and exec pay the readers' slow path (see below). The kernel's
// own switch for the same is the `cgroup_favordynmods=true` boot parameter.
//
// The flag lives on the cgroup root, but its effect is global (one semaphore for all
// hierarchies), so on a hybrid host the cgroup2 mount carries it for the v1 hierarchies too.
// A v1 hierarchy cannot take it at remount (cgroup1_reconfigure refuses changed flags): a pure
// v1 host without a cgroup2 mount is left as it is.
//
// favorDynmodsPlan decides from mountinfo (pure, tested on made-up tables); enableFavorDynmods
// is its one side effect: the cgroup2 superblock reconfigured through fspick(2) + fsconfig(2)
// with every option it has plus `favordynmods` (a cgroup2 reconfigure sets each root flag from
// the options given, so an omitted nsdelegate or memory_recursiveprot would be cleared). The
// mounts' own flags (ro, nosuid, nodev, noexec, nosymfollow, atime) are not touched: a legacy
// MS_REMOUNT would reset those it is not given, on whichever mount is on top of the path.
//
// Any later cgroup2 mount made from the host's cgroup namespace without the option (a
// container runtime, an administrator) turns it off node-wide again, so spored checks again
// every few seconds (watchFavorDynmods). On recent kernels (6.17 and later, from the kernel's own
// notes) turning it on also switches fork, exit and exec to a per-threadgroup lock that stays
// until reboot; a move then stays cheap even after the flag is cleared.
import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import * as sys from '../sys/libc.js';
import { setProcsWritesFast } from './cgroups.js';
import { SyscallError } from '../sys/errors.js';
import { type MountinfoEntry, parseMountinfo } from './cgroup-layout.js';

export const FAVORDYNMODS = 'favordynmods';

/** What spored does about favordynmods: `on` turns it on when the host has not (at start and again when found off); `keep` leaves the host as it is. */
export type FavorDynmodsMode = 'on' | 'keep';

export type FavorDynmodsPlan =
  /** a cgroup hierarchy already has it (set by the operator, the boot parameter, an earlier spored) */
  | { action: 'none'; on: true; mountpoint: string }
  /** reconfigure the cgroup2 superblock mounted at `mountpoint` with `options` */
  | { action: 'reconfigure'; on: false; mountpoint: string; options: string[] }
  /** it cannot be turned on here; `reason` says why */
  | { action: 'none'; on: false; reason: string };

/** How to turn it on by hand, for messages. */
const BY_HAND = 'the host can set it with `mount -o remount,favordynmods <cgroup2 mountpoint>` or boot with cgroup_favordynmods=true';

/** The cgroup mounts at or below `root` that nothing covers (a later entry at a mountpoint is mounted over an earlier one). */
function visibleCgroupMounts(entries: readonly MountinfoEntry[], root: string): MountinfoEntry[] {
  const r = root.endsWith('/') ? root.slice(0, -1) : root;
  const top = new Map<string, MountinfoEntry>();
  for (const e of entries) top.set(e.mountpoint, e);
  return [...top.values()].filter((e) => (e.fstype === 'cgroup' || e.fstype === 'cgroup2') && (e.mountpoint === r || e.mountpoint.startsWith(`${r}/`)));
}

/** Of cgroup2 mounts, the hierarchy's own root rather than a bind of a subtree, when both are there. */
const wholeHierarchy = (v2: readonly MountinfoEntry[]): MountinfoEntry | undefined => v2.find((e) => e.root === '/') ?? v2[0];

/** A cgroup2 root's options as given back to the kernel (without rw/ro, which are not root flags). */
const rootOptions = (e: MountinfoEntry): string[] => e.superOptions.filter((o) => o !== '' && o !== 'rw' && o !== 'ro');

/**
 * Decide from mountinfo entries (parseMountinfo, in the kernel's order: a later entry at the
 * same mountpoint is mounted over an earlier one) whether favordynmods is on, and how to turn
 * it on: reconfigure the cgroup2 superblock through a writable cgroup2 mount at or below
 * `root` that nothing covers (the whole hierarchy on pure v2, the unified one on hybrid
 * hosts; the flag covers the v1 hierarchies too). Pure. Only read-only cgroup2 mounts (a
 * container's view): left alone.
 */
export function favorDynmodsPlan(entries: readonly MountinfoEntry[], root = '/sys/fs/cgroup'): FavorDynmodsPlan {
  const under = visibleCgroupMounts(entries, root);
  const already = under.find((e) => e.superOptions.includes(FAVORDYNMODS));
  if (already) return { action: 'none', on: true, mountpoint: already.mountpoint };
  const v2 = under.filter((e) => e.fstype === 'cgroup2');
  if (v2.length === 0) return { action: 'none', on: false, reason: `no cgroup2 mount under ${root} (a v1 hierarchy cannot take it at remount); boot with cgroup_favordynmods=true` };
  const pick = wholeHierarchy(v2.filter((e) => !e.mountOptions.includes('ro') && !e.superOptions.includes('ro')));
  if (!pick) return { action: 'none', on: false, reason: `${v2.map((e) => e.mountpoint).join(', ')} ${v2.length > 1 ? 'are' : 'is'} mounted read-only here (a container's view?); ${BY_HAND}` };
  return { action: 'reconfigure', on: false, mountpoint: pick.mountpoint, options: [...rootOptions(pick), FAVORDYNMODS] };
}

export interface FavorDynmodsOutcome {
  /** whether cgroup moves on this host skip the grace period now */
  on: boolean;
  /** 'already' (the host had it), 'enabled' (this call turned it on), 'kept' (mode keep, host without it), 'unavailable' */
  state: 'already' | 'enabled' | 'kept' | 'unavailable';
  /** the cgroup mount that carries it, when on */
  mountpoint?: string;
  /** why it is off, when it is */
  reason?: string;
}

/** The reason a refused reconfigure gives, with what to do about it. */
function refusal(mountpoint: string, e: unknown): string {
  const errno = e instanceof SyscallError ? e.errno : undefined;
  const why = errno === 1 ? 'spored lacks CAP_SYS_ADMIN in the host\'s user namespace (run it as root, outside a user namespace)'
    : errno === 22 ? 'the kernel does not know the option (favordynmods needs Linux 6.0 or later)'
    : errno === 38 ? 'the kernel has no fspick/fsconfig (Linux 5.2 or later)'
    : (e as Error).message;
  return `turning on ${FAVORDYNMODS} on ${mountpoint} was refused: ${why}; ${BY_HAND}`;
}

/**
 * Apply `mode` to this host (root only; needs CAP_SYS_ADMIN in the initial user and cgroup
 * namespaces). Never throws: a refusal (EPERM, EINVAL on kernels before 6.0, a cgroup
 * namespace where the kernel ignores root flags) comes back as `unavailable` with the reason
 * and what to do. The setting outlives spored; it is not undone at exit (a restarting spored
 * would flip it back and forth under running containers).
 */
export function enableFavorDynmods(mode: FavorDynmodsMode, mountinfoPath = '/proc/self/mountinfo', root = '/sys/fs/cgroup'): FavorDynmodsOutcome {
  const read = (): MountinfoEntry[] => parseMountinfo(readFileSync(mountinfoPath, 'utf8'));
  let plan: FavorDynmodsPlan;
  try {
    plan = favorDynmodsPlan(read(), root);
  } catch (e) {
    return { on: false, state: 'unavailable', reason: `cannot read ${mountinfoPath}: ${(e as Error).message}` };
  }
  if (plan.on) return { on: true, state: 'already', mountpoint: plan.mountpoint };
  if (plan.action === 'none') return { on: false, state: 'unavailable', reason: plan.reason };
  if (mode === 'keep') return { on: false, state: 'kept', reason: '--cgroup-favordynmods keep' };
  try {
    sys.reconfigureSuperblock(plan.mountpoint, plan.options);
  } catch (e) {
    return { on: false, state: 'unavailable', reason: refusal(plan.mountpoint, e) };
  }
  // the kernel applies root flags only from the initial cgroup namespace, silently elsewhere
  const after = favorDynmodsPlan(read(), root);
  if (!after.on) return { on: false, state: 'unavailable', reason: `the kernel did not apply ${FAVORDYNMODS} to ${plan.mountpoint}: it takes cgroup root flags only from the host's cgroup namespace (spored runs in another?); ${BY_HAND}` };
  return { on: true, state: 'enabled', mountpoint: plan.mountpoint };
}

/** How often spored looks again whether the node's favordynmods is still on (ms). */
export const FAVORDYNMODS_CHECK_MS = 10_000;

/**
 * Apply `mode` now and again every `everyMs`: a cgroup2 mount made later from the host's
 * cgroup namespace without the option (another runtime's container, an administrator) turns
 * it off node-wide, and cgroup.procs writes must then leave the loop again
 * (setProcsWritesFast follows every check). Logs each change once: turned on (info), found off
 * after having been on (warn, and turned on again with mode `on`), off and left so (info for
 * `keep`, warn when it cannot be turned on). `apply` is enableFavorDynmods but for tests.
 * Returns the first outcome and the timer (the caller clears it at stop).
 */
export function watchFavorDynmods(mode: FavorDynmodsMode, log: Logger, everyMs = FAVORDYNMODS_CHECK_MS, apply: (m: FavorDynmodsMode) => FavorDynmodsOutcome = enableFavorDynmods): { first: FavorDynmodsOutcome; timer: NodeJS.Timeout } {
  let last: FavorDynmodsOutcome | null = null;
  const check = (): FavorDynmodsOutcome => {
    const o = apply(mode);
    setProcsWritesFast(o.on);
    const was = last;
    last = o;
    if (o.state === 'enabled') {
      if (was?.on) log.warn({ mountpoint: o.mountpoint }, 'cgroup favordynmods had been turned off on this node (a cgroup2 mount without it?); turned on again');
      else log.info({ mountpoint: o.mountpoint }, 'cgroup favordynmods turned on: cgroup moves no longer wait for an RCU grace period (node-wide; --cgroup-favordynmods keep leaves the host as it is)');
    } else if (!o.on && (was === null || was.on || was.state !== o.state)) {
      if (o.state === 'kept') log.info('cgroup favordynmods is off and left so (--cgroup-favordynmods keep): the first cgroup move after a quiet spell waits for an RCU grace period');
      else log.warn({ reason: o.reason }, 'cgroup favordynmods is off: the first cgroup move after a quiet spell waits for an RCU grace period');
    }
    return o;
  };
  const first = check();
  const timer = setInterval(check, everyMs);
  timer.unref();
  return { first, timer };
}

/**
 * The options of the host's cgroup2 root (the cgroup2 mount at or below `root` nothing
 * covers), without rw/ro: what a container's own cgroup2 mount must carry so as not to reset
 * them node-wide (engines/process/plan.ts, mountStep). [] when there is none or it cannot be read.
 */
export function cgroup2RootOptions(mountinfoPath = '/proc/self/mountinfo', root = '/sys/fs/cgroup'): string[] {
  let entries: MountinfoEntry[];
  try { entries = parseMountinfo(readFileSync(mountinfoPath, 'utf8')); } catch { return []; }
  const pick = wholeHierarchy(visibleCgroupMounts(entries, root).filter((e) => e.fstype === 'cgroup2'));
  return pick ? rootOptions(pick) : [];
}
