// The on-disk record of a task, written at Create, rewritten at every change of its state
// (start, exec, exit, pause, resume) and removed at Delete. It is what a restarted spored
// rebuilds its containers from (TaskManager.restore), what `containerd-shim-spore-v2
// delete` needs to clean up after a dead spored, and what the launcher checks (by
// existence alone, from sh) to skip Node on the common path. Writes are atomic (a temp
// file renamed over the record), so a crash leaves the old record or the new one.
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { CgroupHandle } from '../pools/cgroups.js';
import type { NamespaceStep, Stdio } from '../engines/process/protocol.js';
import type { Process } from '../protocols/oci/spec.js';
import type { Hook, OciState } from '../protocols/oci/hooks.js';
import type { ProcStatus } from './states.js';
import { writeFileAtomic } from '../sys/atomic-file.js';
import { identityAlive, processIdentity, processRunning } from '../sys/proc.js';
import { recordPath } from '../protocols/task-files.js';

/** The record format; a record of another version is read as far as the shared fields go. */
export const TASK_RECORD_VERSION = 2;

/** How a process's stdio is wired, so a restarted spored can take it over. */
export interface IoRecord {
  /** a pty: its master, the stdin and stdout FIFO ends are in custody (task/custody.ts) */
  console: boolean;
  /** exec output copied through pipes: one relay per stream, its pipe and FIFO in custody */
  relays: ('stdin' | 'stdout' | 'stderr')[];
}

export interface ProcRecord {
  execId: string;
  pid: number;
  /** /proc/<pid>/stat starttime at spawn: the pid is this process only while it matches */
  pidStartTime: number | null;
  status: ProcStatus;
  exitStatus: number;
  exitedAt: string | null;
  stdio: Stdio;
  terminal: boolean;
  spec: Process | null;
  startFailed?: boolean;
  /** stopped, its exit not yet published: its terminal's last output not yet flushed, or waiting for Start's answer (tasks.ts reportExit) */
  exitUnreported?: boolean;
  io: IoRecord;
}

export interface TaskRecord {
  v?: number;
  id: string;
  namespace: string;
  bundle: string;
  /** host pid of the container init (0 before it exists) */
  pid: number;
  /** the init's /proc starttime (see ProcRecord.pidStartTime) */
  pidStartTime?: number | null;
  /** absolute rootfs path the container uses */
  rootfs: string;
  /** true when spored mounted CreateTaskRequest.rootfs at rootfs and must unmount it */
  rootfsMounted: boolean;
  cgroup: CgroupHandle | null;
  createdAt: string;
  // --- version 2: enough to rebuild the container after a restart ---
  madeParents?: string[];
  pod?: string | null;
  namespaces?: NamespaceStep[];
  init?: ProcRecord;
  execs?: ProcRecord[];
  /** the OCI hooks that run after Create (absent: none) */
  hooks?: LaterHooks;
  /** its init's own pid namespace, as /proc names it (absent: none of its own, or an older record) */
  pidNs?: string;
}

/**
 * A container's poststart and poststop hooks, kept from its config.json (containerd removes
 * the bundle after Delete; a restarted spored has only the record), with the state they
 * read but for status and pid.
 */
export interface LaterHooks {
  poststart: Hook[];
  poststop: Hook[];
  state: Omit<OciState, 'status' | 'pid'>;
}

export { recordPath };

/** `text` at `path`, atomically (a temp file renamed over it), its directory made (0700) when missing. */
function writeAtomic(path: string, text: string): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  writeFileAtomic(path, text);
}

export function writeRecord(runDir: string, rec: TaskRecord): void {
  writeAtomic(recordPath(runDir, rec.namespace, rec.id), JSON.stringify(rec, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v)));
}

export function readRecord(runDir: string, namespace: string, id: string): TaskRecord | null {
  try {
    return JSON.parse(readFileSync(recordPath(runDir, namespace, id), 'utf8')) as TaskRecord;
  } catch {
    return null;
  }
}

/** Paths of the files under <runDir>/tasks/<namespace>/ whose names end in `suffix`. */
function taskFiles(runDir: string, suffix: string): string[] {
  const root = join(runDir, 'tasks');
  let namespaces: string[] = [];
  try { namespaces = readdirSync(root); } catch { return []; }
  const out: string[] = [];
  for (const ns of namespaces) {
    let files: string[] = [];
    try { files = readdirSync(join(root, ns)); } catch { continue; }
    for (const f of files) if (f.endsWith(suffix)) out.push(join(root, ns, f));
  }
  return out;
}

/** Every record under the run dir (unreadable ones are reported, not thrown). */
export function readAllRecords(runDir: string): { records: TaskRecord[]; bad: { path: string; error: string }[] } {
  const records: TaskRecord[] = [];
  const bad: { path: string; error: string }[] = [];
  for (const path of taskFiles(runDir, '.json')) {
    try {
      const rec = JSON.parse(readFileSync(path, 'utf8')) as TaskRecord;
      if (typeof rec.id !== 'string' || typeof rec.namespace !== 'string' || typeof rec.bundle !== 'string') throw new Error('not a task record');
      records.push(rec);
    } catch (e) {
      bad.push({ path, error: (e as Error).message });
    }
  }
  return { records, bad };
}

export function removeRecord(runDir: string, namespace: string, id: string): void {
  rmSync(recordPath(runDir, namespace, id), { force: true });
}

/**
 * What a Delete answered, kept a while after the record goes: containerd sends a Delete
 * again (a replay through the keeper) when the spored that carried it out died before it
 * answered, and the next spored must give the same answer, not NotFound.
 */
export interface Tombstone { pid: number; exitStatus: number; exitedAt: string | null; deletedAt: string }

const tombstonePath = (runDir: string, namespace: string, id: string): string => join(runDir, 'tasks', namespace, `${id}.deleted`);

export function writeTombstone(runDir: string, namespace: string, id: string, t: Tombstone): void {
  writeAtomic(tombstonePath(runDir, namespace, id), JSON.stringify(t));
}

export function removeTombstone(runDir: string, namespace: string, id: string): void {
  rmSync(tombstonePath(runDir, namespace, id), { force: true });
}

/** The tombstones of `id`, in any namespace (`namespace` given: only there). */
export function findTombstones(runDir: string, id: string, namespace?: string): { namespace: string; t: Tombstone }[] {
  const out: { namespace: string; t: Tombstone }[] = [];
  let namespaces: string[] = [];
  try { namespaces = namespace ? [namespace] : readdirSync(join(runDir, 'tasks')); } catch { return out; }
  for (const ns of namespaces) {
    try { out.push({ namespace: ns, t: JSON.parse(readFileSync(tombstonePath(runDir, ns, id), 'utf8')) as Tombstone }); } catch { /* none */ }
  }
  return out;
}

/** Remove tombstones older than `maxAgeMs` (or unreadable). */
export function pruneTombstones(runDir: string, maxAgeMs: number, now = Date.now()): void {
  for (const path of taskFiles(runDir, '.deleted')) {
    let keep = false;
    try { keep = now - Date.parse((JSON.parse(readFileSync(path, 'utf8')) as Tombstone).deletedAt) < maxAgeMs; } catch { /* unreadable */ }
    if (!keep) rmSync(path, { force: true });
  }
}

/**
 * A Create in flight: what it is about to make, for whoever cleans up if spored dies before
 * the Create ends (written before its cgroup is made, removed once the task record is
 * written). runc destroys a container whose create failed, poststop hooks included; a
 * Create cut short by a crash is never answered (containerd's replay makes a new one), so
 * the next spored (TaskManager.restore) or, with no keeper left, the shim binary's delete
 * (shim/delete.ts) removes its cgroup and the parents it made and runs its poststop hooks
 * (task/cut-short.ts), before the replay's own Create.
 */
export interface CreatingRecord {
  namespace: string; id: string; bundle: string; hooks: LaterHooks;
  /**
   * Its cgroup (absent in a record of an older spored): `made` when its leaf did not exist
   * before this Create (a shared cgroupsPath's belongs to the container that made it), and
   * the ancestors it made, deepest first.
   */
  cgroup?: { handle: CgroupHandle; made: boolean; madeParents: string[] };
}

const creatingPath = (runDir: string, namespace: string, id: string): string => join(runDir, 'tasks', namespace, `${id}.creating`);
/**
 * A .creating file renamed by the process that took it: `.creating.taken-<pid>-<starttime>`
 * (its identity, sys/proc.ts: a pid alone may be another process's by the time it is read).
 */
const TAKEN_RE = /\.creating\.taken-(\d+)-(\d+)$/;
let self: string | undefined; // (this process's identity, read once: a Create claims under it)
/** The name this process takes the .creating file at `path` (itself, or one another process took) under. */
const takenName = (path: string): string => {
  self ??= (processIdentity(process.pid) ?? String(process.pid)).replace(' ', '-');
  return `${path.replace(TAKEN_RE, '.creating')}.taken-${self}`;
};
/** Whether the taker a TAKEN_RE match names is a live process (this one included). */
const takerAlive = (m: RegExpExecArray): boolean => identityAlive(`${m[1]} ${m[2]}`) && processRunning(Number(m[1]));

/**
 * Written in place, one write(2) of a small file (no temp file and rename, which cost a
 * Create ~0.3 ms more under load): a crash mid-write leaves a torn file, which a reader drops
 * as unreadable (takeFile), as it would a missing one.
 */
export function writeCreating(runDir: string, r: CreatingRecord): void {
  const path = creatingPath(runDir, r.namespace, r.id);
  const text = JSON.stringify(r);
  try {
    writeFileSync(path, text, { mode: 0o600 });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    writeFileSync(path, text, { mode: 0o600 });
  }
}

export function removeCreating(runDir: string, namespace: string, id: string): void {
  rmSync(creatingPath(runDir, namespace, id), { force: true });
}

/** A taken .creating record: `done()` removes its file once what it describes is cleaned up (a taker that dies first leaves it to be taken again). */
export interface TakenCreating { record: CreatingRecord; done: () => void }

/**
 * Every Create cut short (its .creating file). Each is taken by renaming it first, so that of
 * a restarting spored, a shim's delete and the Create itself (claimCreating) only one acts on
 * it; a file another process took and did not finish with (it died: no process of that
 * identity) is taken again. Unreadable ones are dropped, and so are the temp files of atomic writes a crash cut
 * short (`*.tmp`: only a restarting spored calls this, with no writer left).
 */
export function takeAllCreating(runDir: string): TakenCreating[] {
  const out: TakenCreating[] = [];
  const root = join(runDir, 'tasks');
  let namespaces: string[] = [];
  try { namespaces = readdirSync(root); } catch { return out; }
  for (const ns of namespaces) {
    let files: string[] = [];
    try { files = readdirSync(join(root, ns)); } catch { continue; }
    for (const f of files) {
      if (f.endsWith('.tmp')) { rmSync(join(root, ns, f), { force: true }); continue; }
      const taken = TAKEN_RE.exec(f);
      if (!f.endsWith('.creating') && !(taken && !takerAlive(taken))) continue;
      const t = takeFile(join(root, ns, f));
      if (t) out.push(t);
    }
  }
  return out;
}

/** The .creating file of one Create, taken as takeAllCreating takes each; null if there is none (or another took it). */
export function takeCreating(runDir: string, namespace: string, id: string): TakenCreating | null {
  return takeFile(creatingPath(runDir, namespace, id));
}

/**
 * The Create's own claim, right before it records the task: its .creating file is taken (as
 * takeCreating would) and the returned function removes it once the task record is written.
 * Null when another process took it first (a shim's delete that found no keeper: it is
 * undoing this Create, which must fail rather than record what was undone). A shim's delete
 * that finds the file taken by a live Create waits for that Create's record (takenByLive).
 */
export function claimCreating(runDir: string, namespace: string, id: string): (() => void) | null {
  const mine = takenName(creatingPath(runDir, namespace, id));
  try { renameSync(creatingPath(runDir, namespace, id), mine); } catch { return null; }
  return () => rmSync(mine, { force: true });
}

/** Whether a live process (another than this one) holds the .creating file of this Create taken. */
export function takenByLive(runDir: string, namespace: string, id: string): boolean {
  let files: string[] = [];
  try { files = readdirSync(join(runDir, 'tasks', namespace)); } catch { return false; }
  return files.some((f) => {
    const m = f.startsWith(`${id}.creating.taken-`) ? TAKEN_RE.exec(f) : null;
    return m !== null && Number(m[1]) !== process.pid && takerAlive(m);
  });
}

function takeFile(path: string): TakenCreating | null {
  const mine = takenName(path);
  try { renameSync(path, mine); } catch { return null; } // gone, or another took it
  const done = (): void => rmSync(mine, { force: true });
  try {
    const r = JSON.parse(readFileSync(mine, 'utf8')) as unknown;
    if (isCreatingRecord(r)) return { record: r, done };
  } catch { /* unreadable: nothing to clean up */ }
  done();
  return null;
}

/** The shape writeCreating writes; a cgroup handle only with its dirs under their mounts (cgroups.ts destroy checks them again). */
function isCreatingRecord(r: unknown): r is CreatingRecord {
  if (typeof r !== 'object' || r === null) return false;
  const c = r as Partial<CreatingRecord>;
  if (typeof c.id !== 'string' || typeof c.namespace !== 'string' || typeof c.bundle !== 'string' || !Array.isArray(c.hooks?.poststop)) return false;
  if (c.cgroup === undefined) return true;
  const g = c.cgroup;
  const h = g?.handle;
  return typeof g === 'object' && g !== null && typeof g.made === 'boolean' && Array.isArray(g.madeParents) && g.madeParents.every((d) => typeof d === 'string')
    && typeof h === 'object' && h !== null && typeof h.path === 'string' && typeof h.dirs === 'object' && h.dirs !== null && typeof h.mounts === 'object' && h.mounts !== null
    && Object.values(h.dirs).every((d) => typeof d === 'string');
}

