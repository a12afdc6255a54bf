// `containerd-shim-spore-v2 ... delete`: containerd runs this when it lost the shim (spored died,
// or containerd restarted and found a bundle whose task never got its Delete RPC). It must clean
// up whatever is left of the container — processes, the rootfs mount, the cgroup, the task
// record — and print a serialized DeleteResponse on stdout (runc/gVisor report exit 137).
// stderr is logged by containerd as warnings; a non-zero exit means cleanup really failed.
import { create, toBinary } from '@bufbuild/protobuf';
import { timestampNow } from '@bufbuild/protobuf/wkt';
import { readFileSync, readlinkSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { DeleteResponseSchema } from '../fri-proto/gen/containerd/task/v2/shim_pb.js';
import { destroyCgroup, killAll, parseMountinfo, pids, removeEmptyParents, type CgroupHandle } from '../pools/cgroups.js';
import { SyscallError } from '../sys/errors.js';
import { identityAlive, processRunning } from '../sys/proc.js';
import { readAllRecords, readRecord, removeRecord, takeCreating, takenByLive, type TaskRecord } from '../task/record.js';
import { cleanUpCutShort } from '../task/cut-short.js';
import { isTaskName } from '../protocols/task-files.js';
import { runHooksAll } from '../task/hooks.js';

export const DEFAULT_RUN_DIR = '/run/spore';
/** 128 + SIGKILL, what runc's and gVisor's shims report for a container reaped by `delete`. */
export const DELETE_EXIT_STATUS = 137;
const DRAIN_MS = 3000;
const MAX_UNMOUNTS = 16;
const EINVAL = 22;
const ENOENT = 2;

// ---- flags ------------------------------------------------------------------------------

export interface ShimFlags {
  namespace: string;
  address: string;
  publishBinary: string;
  id: string;
  bundle: string;
  debug: boolean;
  /** Positional arguments after the flags: the action ("delete"). */
  args: string[];
  /** Flags this launcher does not know (kept so they can be reported, never fatal). */
  unknown: string[];
}

const STRING_FLAGS: Record<string, 'namespace' | 'address' | 'publishBinary' | 'id' | 'bundle'> = {
  namespace: 'namespace',
  address: 'address',
  'publish-binary': 'publishBinary',
  id: 'id',
  bundle: 'bundle',
};
const BOOL_FLAGS = new Set(['debug']);
/** Other string flags containerd versions pass to shims; their value must not become the action. */
const IGNORED_STRING_FLAGS = new Set(['socket', 'ttrpc-address', 'shim-address', 'log-level']);

export class FlagError extends Error {}

/**
 * Parse shim flags the way Go's `flag` package does: `-name value`, `--name value`, `-name=value`,
 * `--name=value`; booleans as `-debug` or `-debug=true|false`; parsing stops at the first
 * non-flag argument or at `--`.
 */
export function parseShimFlags(argv: string[]): ShimFlags {
  const out: ShimFlags = { namespace: '', address: '', publishBinary: '', id: '', bundle: '', debug: false, args: [], unknown: [] };
  let i = 0;
  for (; i < argv.length; i++) {
    const a = argv[i] ?? '';
    if (a === '--') { i++; break; }
    if (!a.startsWith('-') || a === '-') break;
    const body = a.replace(/^--?/, '');
    const eq = body.indexOf('=');
    const name = eq >= 0 ? body.slice(0, eq) : body;
    const inline = eq >= 0 ? body.slice(eq + 1) : undefined;
    if (BOOL_FLAGS.has(name)) {
      if (inline === undefined) out.debug = true;
      else if (/^(1|t|true)$/i.test(inline)) out.debug = true;
      else if (/^(0|f|false)$/i.test(inline)) out.debug = false;
      else throw new FlagError(`invalid boolean value "${inline}" for -${name}`);
      continue;
    }
    const key = STRING_FLAGS[name];
    if (key || IGNORED_STRING_FLAGS.has(name)) {
      let value = inline;
      if (value === undefined) {
        if (i + 1 >= argv.length) throw new FlagError(`flag needs an argument: -${name}`);
        value = argv[++i] ?? '';
      }
      if (key) out[key] = value;
      else out.unknown.push(`-${name}=${value}`);
      continue;
    }
    out.unknown.push(a);
  }
  out.args = argv.slice(i);
  return out;
}

// ---- host helpers -----------------------------------------------------------------------

function errno(e: unknown): number | undefined {
  return e instanceof SyscallError ? e.errno : undefined;
}

function errMsg(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Mountpoints of this mount namespace, unescaped. */
function mountpoints(): string[] {
  return parseMountinfo(readFileSync('/proc/self/mountinfo', 'utf8')).map((m) => m.mountpoint);
}

function canonical(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path;
  }
}

export function isMountpoint(path: string): boolean {
  const p = canonical(path);
  return mountpoints().includes(p);
}

/**
 * Detach every mount stacked on `path` (like containerd's mount.UnmountAll). Returns how many
 * mounts were removed; throws only on a real failure (not "not mounted" / "no such path").
 */
export async function unmountAll(path: string): Promise<number> {
  const target = canonical(path);
  // libc (koffi) is only loaded when there is something to unmount.
  let n = 0;
  while (n < MAX_UNMOUNTS && mountpoints().includes(target)) {
    const { umount2, MNT_DETACH } = await import('../sys/libc.js');
    try {
      umount2(target, MNT_DETACH);
      n++;
    } catch (e) {
      const code = errno(e);
      if (code === EINVAL || code === ENOENT) break;
      throw e;
    }
  }
  if (mountpoints().includes(target)) throw new Error(`${target} is still a mount point after ${n} unmounts`);
  return n;
}

/** Field 22 of /proc/<pid>/stat (start time in clock ticks since boot), or undefined if gone. */
export function procStartTime(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // comm (field 2) may contain spaces and parentheses: fields resume after the last ')'.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const v = Number(rest[19]); // rest[0] is field 3 (state)
    return Number.isFinite(v) ? v : undefined;
  } catch {
    return undefined;
  }
}

/** Alive and not a zombie (a zombie is dead, only waiting for its parent to reap it). */
export function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/** Optional fields newer records may carry; read defensively. */
type RecordExtras = { pidStartTime?: unknown };

/**
 * Decide whether the recorded pid is still the container's init (pids get reused):
 * the recorded start time when the record has one, else membership in the container's cgroup,
 * else its root directory being the container's rootfs.
 */
function samePid(rec: TaskRecord, cgroupPids: number[]): { same: boolean; why: string } {
  const pid = rec.pid;
  const recorded = (rec as TaskRecord & RecordExtras).pidStartTime;
  if (typeof recorded === 'number') {
    const now = procStartTime(pid);
    return { same: now === recorded, why: `start time ${String(now)} vs recorded ${recorded}` };
  }
  if (cgroupPids.includes(pid)) return { same: true, why: 'in the container cgroup' };
  try {
    const root = readlinkSync(`/proc/${pid}/root`);
    if (rec.rootfs && root === canonical(rec.rootfs)) return { same: true, why: 'root is the container rootfs' };
  } catch {
    // cannot tell: treat as a different process
  }
  return { same: false, why: 'not in the container cgroup and root is not its rootfs' };
}

function cgroupPidsSafe(h: CgroupHandle | null, warn: (m: string) => void): number[] {
  if (!h) return [];
  try {
    return pids(h);
  } catch (e) {
    warn(`list cgroup ${h.path}: ${errMsg(e)}`);
    return [];
  }
}

// ---- delete -----------------------------------------------------------------------------

export interface DeleteResult {
  stdout: Buffer;
  code: number;
}


function deleteResponse(pid: number): Buffer {
  const msg = create(DeleteResponseSchema, { pid: pid > 0 ? pid : 0, exitStatus: DELETE_EXIT_STATUS, exitedAt: timestampNow() });
  return Buffer.from(toBinary(DeleteResponseSchema, msg));
}

/**
 * Run the delete subcommand. Never throws: errors go to stderr (`log`), the exit code says
 * whether cleanup failed, and stdout carries only the serialized DeleteResponse.
 */
export async function runDelete(
  args: string[],
  env: NodeJS.ProcessEnv,
  log: (line: string) => void = (l) => process.stderr.write(`${l}\n`),
): Promise<DeleteResult> {
  const empty = Buffer.alloc(0);
  let flags: ShimFlags;
  try {
    flags = parseShimFlags(args);
  } catch (e) {
    log(`spore shim: ${errMsg(e)}`);
    return { stdout: empty, code: 2 };
  }
  const action = flags.args[0] ?? 'delete';
  if (action !== 'delete') {
    log(`spore shim delete: unexpected action "${action}"`);
    return { stdout: empty, code: 2 };
  }
  const debug = (m: string): void => { if (flags.debug) log(`spore shim delete: ${m}`); };
  if (flags.unknown.length) debug(`ignoring flags ${flags.unknown.join(' ')}`);
  const ns = flags.namespace || env['NAMESPACE'] || '';
  const id = flags.id;
  if (!isTaskName(id) || !isTaskName(ns)) {
    log(`spore shim delete: invalid namespace "${ns}" or id "${id}"`);
    return { stdout: empty, code: 2 };
  }
  const runDir = env['SPORE_RUN_DIR'] || DEFAULT_RUN_DIR;
  const bundle = flags.bundle || process.cwd();
  const bundleRootfs = join(bundle, 'rootfs');
  const failures: string[] = [];
  const warn = (m: string): void => log(`spore shim delete ${ns}/${id}: ${m}`);
  const fail = (m: string): void => { failures.push(m); warn(m); };

  let rec = readRecord(runDir, ns, id);
  // A Create that spored and its keeper died in (or a spored on its way out after its
  // keeper died: it fails the Create once it finds its .creating taken): its cgroup and the
  // parents it made go, its poststop hooks run (cut-short.ts). With a keeper up, the spored
  // it runs does that (TaskManager.restore), or the Create is still going on.
  if (!rec && !keeperAlive(runDir)) {
    const cut = takeCreating(runDir, ns, id);
    if (cut) {
      const live = readAllRecords(runDir).records;
      for (const w of await cleanUpCutShort(cut.record, { inUse: (path) => live.some((r) => r.cgroup?.path === path) })) warn(w);
      cut.done();
      debug(`cleaned up after a Create cut short (cgroup ${cut.record.cgroup?.handle.path ?? 'none'})`);
    } else {
      // its Create claimed it first and is writing its record (claimCreating): that record
      // is what there is to clean up
      const until = Date.now() + DRAIN_MS;
      while (takenByLive(runDir, ns, id) && Date.now() < until) await delay(10);
      rec = readRecord(runDir, ns, id);
    }
  }
  if (!rec) {
    debug(`no task record under ${runDir}`);
    try {
      const n = await unmountAll(bundleRootfs);
      if (n) debug(`unmounted ${bundleRootfs} (${n})`);
    } catch (e) {
      fail(`unmount ${bundleRootfs}: ${errMsg(e)}`);
    }
    return { stdout: deleteResponse(0), code: failures.length ? 1 : 0 };
  }

  // 1. processes: everything in the cgroup, and the init pid if it is provably still ours.
  const h = rec.cgroup;
  const before = cgroupPidsSafe(h, warn);
  let killPid = false;
  if (rec.pid > 0 && isAlive(rec.pid)) {
    const { same, why } = samePid(rec, before);
    if (same) killPid = true;
    else warn(`not killing pid ${rec.pid}: ${why}`);
  }
  // A container with a pid namespace of its own (rec.pidNs) is killed through its init (its
  // namespace goes with it) and only what is in that namespace is waited for: the rest of a
  // shared cgroupsPath belongs to other containers (as spored's Delete, and runc's destroy).
  const ownNs = rec.pidNs && (rec.namespaces ?? []).some((n) => n.type === 'pid' && n.path === null) ? rec.pidNs : null;
  const pidNsOf = (pid: number): string | null => { try { return readlinkSync(`/proc/${pid}/ns/pid`); } catch { return null; } };
  const ours = (list: number[]): number[] => (ownNs ? list.filter((p) => pidNsOf(p) === ownNs) : list);
  if (h && !ownNs) {
    try {
      killAll(h, 'SIGKILL');
    } catch (e) {
      warn(`kill cgroup ${h.path}: ${errMsg(e)}`);
    }
  } else if (ownNs) {
    for (const p of ours(before)) { try { process.kill(p, 'SIGKILL'); } catch { /* gone */ } }
  }
  if (killPid) {
    try {
      process.kill(rec.pid, 'SIGKILL');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ESRCH') warn(`kill ${rec.pid}: ${errMsg(e)}`);
    }
  }
  const deadline = Date.now() + DRAIN_MS;
  for (;;) {
    const left = ours(cgroupPidsSafe(h, warn).filter(isAlive));
    const pidLeft = killPid && isAlive(rec.pid);
    if (left.length === 0 && !pidLeft) break;
    if (Date.now() > deadline) {
      fail(`processes survived SIGKILL: ${[...left, ...(pidLeft ? [rec.pid] : [])].join(' ')}`);
      break;
    }
    // Re-signal: a process may have forked between the cgroup read and the kill.
    if (h && left.length && !ownNs) { try { killAll(h, 'SIGKILL'); } catch { /* reported above if it persists */ } }
    else for (const p of left) { try { process.kill(p, 'SIGKILL'); } catch { /* gone */ } }
    await delay(10);
  }

  // 2. rootfs: the mount spored made, and whatever is still stacked on <bundle>/rootfs.
  const targets = new Set<string>();
  if (rec.rootfsMounted && rec.rootfs) targets.add(canonical(rec.rootfs));
  targets.add(canonical(bundleRootfs));
  for (const t of targets) {
    try {
      const n = await unmountAll(t);
      if (n) debug(`unmounted ${t} (${n})`);
    } catch (e) {
      fail(`unmount ${t}: ${errMsg(e)}`);
    }
  }

  // 3. cgroup
  const othersLeft = h && ownNs ? cgroupPidsSafe(h, warn).filter(isAlive).length > 0 : false;
  if (othersLeft) debug(`cgroup ${h?.path} shared with processes of another pid namespace: left to them`);
  if (h && !othersLeft) {
    try {
      destroyCgroup(h);
      // and the parents it made, once empty (another container's below one keeps it), as
      // spored's Delete removes them (runc leaves them)
      removeEmptyParents(rec.madeParents ?? []);
    } catch (e) {
      fail(`destroy cgroup ${h.path}: ${errMsg(e)}`);
    }
  }

  // 4. poststop hooks, as `runc delete` runs them after the rest is gone; a failure is a
  // warning (containerd logs this command's stderr), never a failed Delete. Only once the
  // cleanup went through: a cleanup that failed is retried, and runs them then.
  if (failures.length === 0 && rec.hooks && rec.hooks.poststop.length > 0) {
    for (const w of await runHooksAll('poststop', rec.hooks.poststop, { ...rec.hooks.state, status: 'stopped' }, rec.bundle)) warn(w);
  }

  // 5. record: only once everything it describes is gone, so a retry can still find it
  // (and the .creating file a crash between the Create's record and its claim left beside it:
  // what it names is gone too, and the next spored must not run its poststop hooks again).
  if (failures.length === 0) {
    try {
      takeCreating(runDir, ns, id)?.done();
      removeRecord(runDir, ns, id);
    } catch (e) {
      fail(`remove task record: ${errMsg(e)}`);
    }
  }
  return { stdout: deleteResponse(rec.pid), code: failures.length ? 1 : 0 };
}

/**
 * Whether a keeper serves `runDir`: keeper.pid ("pid starttime", keeper/main.ts) names a live
 * process, not a zombie, with that start time, as the launcher checks it
 * (bin/containerd-shim-spore-v2 `alive`). Read only: a probe of the keeper's lock would,
 * for its instant, make a keeper starting then refuse to run (red team, helper-68).
 */
export function keeperAlive(runDir: string): boolean {
  let identity: string;
  try { identity = readFileSync(join(runDir, 'keeper.pid'), 'utf8'); } catch { return false; }
  return identityAlive(identity) && processRunning(Number(identity.trim().split(/\s+/)[0]));
}

/** Entry used by the launcher: run, write stdout, exit with the code. */
export async function main(argv: string[] = process.argv.slice(2), env: NodeJS.ProcessEnv = process.env): Promise<never> {
  let result: DeleteResult;
  try {
    result = await runDelete(argv, env);
  } catch (e) {
    process.stderr.write(`spore shim delete: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
    process.exit(1);
  }
  const { stdout, code } = result;
  await new Promise<void>((resolve) => {
    if (stdout.length === 0) { resolve(); return; }
    process.stdout.write(stdout, () => resolve());
  });
  process.exit(code);
}
