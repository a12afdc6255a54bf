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
// 50 ms apart); the fork/exit cost is one full memory barrier on the reader side. The kernel's
// own switch for the same is the `cgroup_favordynmods=true` boot parameter.
//
// The flag lives on the cgroup root, but its effect is global (one semaphore for all
// hierarchies), so on a hybrid host the cgroup2 mount carries it for the v1 hierarchies too.
// A v1 hierarchy cannot take it at remount (cgroup1_reconfigure refuses changed flags): a pure
// v1 host without a cgroup2 mount is left as it is.
//
// favorDynmodsPlan decides from mountinfo (pure, tested on made-up tables); enableFavorDynmods
// is its one side effect: a remount of the cgroup2 superblock that keeps every option the
// mount has (a cgroup2 reconfigure sets each root flag from the new options, so an omitted
// nsdelegate or memory_recursiveprot would be cleared) and the mount's own nosuid/nodev/noexec
// (a legacy remount sets the mount's flags from the call's).
import { readFileSync } from 'node:fs';
import { MS } from '../sys/constants.js';
import * as sys from '../sys/libc.js';
import { type MountinfoEntry, parseMountinfo } from './cgroup-layout.js';

export const FAVORDYNMODS = 'favordynmods';

/** What spored does about favordynmods at start: `on` turns it on when the host has not; `keep` leaves the host as it is. */
export type FavorDynmodsMode = 'on' | 'keep';

export type FavorDynmodsPlan =
  /** a cgroup hierarchy already has it (set by the operator, the boot parameter, an earlier spored) */
  | { action: 'none'; on: true; mountpoint: string }
  /** remount `mountpoint` (cgroup2) with `data` and `flags` (MS_REMOUNT | the mount's own flags) */
  | { action: 'remount'; on: false; mountpoint: string; data: string; flags: number }
  /** it cannot be turned on here; `reason` says why */
  | { action: 'none'; on: false; reason: string };

/** Per-mount flags a legacy remount resets unless given again (mountinfo field 6 -> MS_*). */
const MOUNT_FLAGS: Readonly<Record<string, number>> = { ro: MS.RDONLY, nosuid: MS.NOSUID, nodev: MS.NODEV, noexec: MS.NOEXEC };

function isCgroupFs(e: MountinfoEntry): boolean {
  return e.fstype === 'cgroup' || e.fstype === 'cgroup2';
}

/**
 * Decide from mountinfo entries (parseMountinfo) whether favordynmods is on, and how to turn it
 * on: a remount of the cgroup2 mount at or below `root` (the whole hierarchy on pure v2, the
 * unified one on hybrid hosts). Pure. A read-only cgroup2 mount (a container's view) is left alone.
 */
export function favorDynmodsPlan(entries: readonly MountinfoEntry[], root = '/sys/fs/cgroup'): FavorDynmodsPlan {
  const r = root.endsWith('/') ? root.slice(0, -1) : root;
  const under = entries.filter((e) => isCgroupFs(e) && (e.mountpoint === r || e.mountpoint.startsWith(`${r}/`)));
  const already = under.find((e) => e.superOptions.includes(FAVORDYNMODS));
  if (already) return { action: 'none', on: true, mountpoint: already.mountpoint };
  const v2 = under.find((e) => e.fstype === 'cgroup2');
  if (!v2) return { action: 'none', on: false, reason: `no cgroup2 mount under ${r} (a v1 hierarchy cannot take it at remount; boot with cgroup_favordynmods=true)` };
  if (v2.mountOptions.includes('ro') || v2.superOptions.includes('ro')) return { action: 'none', on: false, reason: `${v2.mountpoint} is mounted read-only` };
  let flags = MS.REMOUNT;
  for (const o of v2.mountOptions) flags |= MOUNT_FLAGS[o] ?? 0;
  const keep = v2.superOptions.filter((o) => o !== '' && o !== 'rw' && o !== 'ro');
  return { action: 'remount', on: false, mountpoint: v2.mountpoint, data: [...keep, FAVORDYNMODS].join(','), flags };
}

export interface FavorDynmodsOutcome {
  /** whether cgroup moves on this host skip the grace period now */
  on: boolean;
  /** 'already' (the host had it), 'enabled' (this call remounted), 'kept' (mode keep, host without it), 'unavailable' */
  state: 'already' | 'enabled' | 'kept' | 'unavailable';
  /** the cgroup mount that carries it, when on */
  mountpoint?: string;
  /** why it is off, when it is */
  reason?: string;
}

/**
 * Apply `mode` to this host (root only; needs CAP_SYS_ADMIN in the initial user and cgroup
 * namespaces). Never throws: a refusal (EPERM, EINVAL on kernels before 6.0, a cgroup
 * namespace where the kernel ignores root flags) comes back as `unavailable` with the reason.
 * The setting outlives spored; it is not undone at exit (a restarting spored would flip it
 * back and forth under running containers).
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
    sys.mount(null, plan.mountpoint, null, plan.flags, plan.data);
  } catch (e) {
    return { on: false, state: 'unavailable', reason: `remount of ${plan.mountpoint} with ${FAVORDYNMODS} refused: ${(e as Error).message} (Linux >= 6.0 and root in the host's namespaces needed)` };
  }
  // the kernel applies root flags only from the initial cgroup namespace, silently elsewhere
  const after = favorDynmodsPlan(read(), root);
  if (!after.on) return { on: false, state: 'unavailable', reason: `the kernel did not apply ${FAVORDYNMODS} to ${plan.mountpoint} (spored in a cgroup namespace?)` };
  return { on: true, state: 'enabled', mountpoint: plan.mountpoint };
}
