// Wire protocol between spored and language seeds (Node and Python), identical for both.
//
// Transport: a unix stream socket per seed. L1 (language) seeds connect to spored's
// seeds.sock and say `hello`; spored checks the peer with SO_PEERCRED. Every other seed
// (an L2 function seed, or a replica of one) is handed its connection: spored makes a
// socketpair and passes one end, as SCM_RIGHTS, with the `seed` message to the parent
// seed, so no path inside a sandbox leads back to spored. Frames are one JSON object per
// line ('\n'-terminated, UTF-8). A message that carries fds says how many (`nfds`); the
// receiver takes that many from the fds received so far, in arrival order (unix(7)
// delivers them with the first byte of the message they were sent with).
//
// A seed is single-threaded and serves one message at a time; forks are its only heavy
// work. It is the parent of its instances and child seeds: it reaps them (pidfds), reports
// their exits and enforces instance timeouts. Pids a seed reports are in its own pid
// namespace; spored never trusts them for anything but matching: it resolves host pids
// itself (/proc/<seed>/task/*/children + NSpid) before acting on a process.
//
// Function lineage (issue 9): an L1 seed builds the lineage's sandbox in a fork of itself
// (`seed` with `sandbox`: a SandboxPlan, applied by the seed language's executor) before
// any function code runs; the new L2 seed is pid 1 of the lineage's pid namespace and
// runs the function's init code with no capability. Replicas are forks of it.
//
// Instance life: `fork` (+1 fd: the instance's channel, one end of a socketpair spored
// made) -> the seed forks -> `forked` -> the child reads its first line from the channel
// (SlotLine: which /tmp is its own) and binds its per-instance parts (that /tmp, a Landlock
// layer of its own) needing no privilege, then reads its request (InvokeRequest, the second
// line); spored sends it only after moving the instance into its cgroup -> the handler runs
// -> the child writes one result line to the channel and _exits -> the seed reports `exit`.
// Requests, results and slot names never pass through the seed.
//
// /tmp slots: tmpfs mounts under the plan's slotDir (a directory function code may search
// but not list), named by spored with unguessable names. The L1 parent mounts them in the
// lineage's mount namespace (`slots`) after the lineage's init code ran, so a name is only
// ever known to spored and to the one instance that owns the slot at a time.

/** Where a sandbox mount step comes from and goes (paths inside the sandbox start with '/'). */
export type SandboxStep =
  /** mkdir -p inside the new root */
  | { op: 'dir'; path: string; mode: number }
  /** a regular file with fixed content (e.g. /etc/passwd) */
  | { op: 'file'; path: string; mode: number; content: string }
  | { op: 'symlink'; path: string; target: string }
  /** bind mount a host path (file or dir) and remount it with `flags` (MS_RDONLY|MS_NOSUID|...) */
  | { op: 'bind'; source: string; path: string; flags: number; recursive: boolean }
  /** a fresh tmpfs; `data` is its mount options (size=,mode=) */
  | { op: 'tmpfs'; path: string; flags: number; data: string }
  /** procfs of the sandbox's own pid namespace */
  /** data: mount options (hidepid=2: processes a caller may not ptrace are not listed) */
  | { op: 'proc'; path: string; flags: number; data?: string }
  /** hide a path: /dev/null over a file, an empty read-only tmpfs over a directory */
  | { op: 'mask'; path: string }
  /** bind a path onto itself read-only */
  | { op: 'readonly'; path: string }
  /** remount (MS_REMOUNT|MS_BIND|flags) a mount made earlier, e.g. /dev read-only */
  | { op: 'remount'; path: string; flags: number };

/**
 * One function lineage's sandbox, computed by spored (functions/sandbox.ts) and applied
 * once, in order, by the seed language's executor (seeds/node/sandbox.ts, the zygote's
 * apply_sandbox): join the lineage cgroup; unshare mount, IPC, UTS and network
 * namespaces (the L1 parent already put the child in a new pid namespace); mount a tmpfs
 * on `staging` and apply `steps` beneath it; pivot_root into it; remount / with
 * `rootFlags`; hostname; loopback up; unshare the cgroup namespace; rlimits; the fd
 * allowlist (stdin /dev/null, stdout and stderr the function's log pipe, the seed link,
 * /tmp's slot at `tmpFd`); a user namespace whose maps the L1 parent writes (inside 0..
 * size-1 -> host `idmap.hostId`..); uid/gid inside, no capability in any set, not
 * dumpable, no_new_privs; the lineage Landlock layer; the seccomp filter; cwd and env.
 */
export interface SandboxPlan {
  /** cgroup.procs files of the lineage cgroup (host paths), joined first */
  cgroupProcs: string[];
  /** host directory the new root's tmpfs is mounted on, in the sandbox's mount namespace */
  staging: string;
  /** mount options of the root tmpfs */
  rootData: string;
  steps: SandboxStep[];
  /** MS_* flags for the final read-only remount of / */
  rootFlags: number;
  hostname: string;
  idmap: { hostId: number; size: number };
  uid: number;
  gid: number;
  /** resource numbers (RLIMIT_*) with soft/hard values; -1 = unlimited */
  rlimits: { resource: number; soft: number; hard: number }[];
  /** /tmp is a symlink to /proc/self/fd/<tmpFd>; each instance puts its own slot there */
  tmpFd: number;
  /** directory (searchable, not listable) holding the /tmp slots: `init` (the seed's own) and the instances' */
  slotDir: string;
  landlock: {
    /** lineage layer: read (and execute) beneath these */
    readOnly: string[];
    /** both layers: read, list, and read and write the character devices beneath these */
    devices: string[];
    /** lineage layer: everything beneath these (the /tmp slots) */
    readWrite: string[];
    /** per-instance layer: read beneath these (not `/`: the other slots stay unreadable) */
    instanceReadOnly: string[];
  };
  /** base64 struct sock_filter[] installed with no_new_privs before any function code */
  seccomp: { filter: string; flags: number };
  cwd: string;
  /** spore's part of the environment (no user env: that comes on the lineage's own link) */
  env: Record<string, string>;
}

/** First line on an instance's channel: the /tmp slot it owns (a name under slotDir). */
export interface SlotLine {
  slot: string;
}

export interface InvokeRequest {
  event: string; // JSON text handed to the handler (parsed)
  context: { functionName: string; functionVersion: string; requestId: string; deadlineMs: number; memoryLimitMiB: number };
}

/** The function a seed loads: a module inside /var/task and its exported function. */
export interface LoadSpec {
  /** module path inside the sandbox, without extension resolution done (e.g. /var/task/index) */
  module: string;
  /** exported function name */
  handler: string;
}

/** spored -> seed */
export type ToSeed =
  | {
      t: 'fork';
      id: string; // instance id
      nfds: 1; // the instance's channel
      timeoutMs: number;
    }
  /**
   * To an L1 seed: mount these /tmp slots (tmpfs, `bytes` each) under slotDir in the mount
   * namespace of its child lineage `id`; with `renew`, first unmount the used ones there
   * (a fresh, empty tmpfs each). Answered with `slots`, in order (or `failed` at deploy).
   */
  | { t: 'slots'; id: string; slotDir: string; names: string[]; bytes: number; renew?: boolean }
  | { t: 'kill'; id: string }
  | {
      t: 'seed';
      id: string; // new seed id
      /**
       * From an L1 seed: a new function lineage (fds: its link, its log pipe's write end),
       * built with `sandbox` before `load` runs. From an L2 seed: a replica (fds: its link).
       */
      nfds: 1 | 2;
      load?: LoadSpec;
      sandbox?: SandboxPlan;
    }
  /**
   * The first message on a new lineage's own link (never sent through the L1 seed): the
   * function's own environment, laid over the plan's before init code runs.
   */
  | { t: 'env'; env: Record<string, string> }
  | { t: 'stats' }
  | { t: 'exit' }; // the seed itself should exit (DeleteSeed)

export interface ChildTimings {
  bind: number;
  seccomp: number;
  init: number;
  execute: number;
  /** optional wall-clock stamps (epoch ms, fractional) for cross-process latency */
  startAt?: number; // the child's first instruction after fork
  doneAt?: number; // the result written
  minflt?: number; // minor page faults the instance took
  requestAt?: number; // its request read
}

/** What an instance writes on its channel: one line, then it exits. */
export interface InstanceResult {
  t: 'result';
  ok: boolean;
  value: string | null; // JSON text of the handler's return value
  error: { kind: 'handler' | 'load' | 'internal'; message: string; stack: string | null } | null;
  timings: ChildTimings;
}

/** seed -> spored */
export type FromSeed =
  | { t: 'hello'; id: string; pid: number; language: 'node' | 'python'; level: 1 | 2 }
  | { t: 'ready'; id: string; initMs: number }
  | { t: 'failed'; id: string; message: string; stack: string | null; phase?: string }
  | { t: 'forked'; id: string; pid: number; forkUs: number } // instance or child seed
  | { t: 'forkFailed'; id: string; message: string }
  | { t: 'exit'; id: string; pid: number; code: number | null; signal: number | null; timedOut: boolean }
  | { t: 'stats'; id: string; pid: number; children: number }
  | { t: 'slots'; id: string; count: number; error?: string };

/** Longest line spored reads from a seed link (a `failed` stack is the biggest). */
export const MAX_SEED_LINE = 1024 * 1024;

/**
 * Most messages spored takes from one seed link in a second. A function seed runs the
 * function's init code, which can write on the link: a flood of them kept spored's event loop
 * busy (red team, helper-55). A seed's own traffic is two messages per instance it forks.
 */
export const MAX_SEED_MESSAGES_PER_SECOND = 20_000;
/**
 * ...and most bytes in a second: 300 lines of 1 MiB a second were under the message count
 * and kept spored busy copying them (red team, helper-58). A `failed` stack (at most
 * MAX_SEED_LINE) is the only large message a seed sends, once.
 */
export const MAX_SEED_BYTES_PER_SECOND = 4 * MAX_SEED_LINE;

const SEED_ID_MAX = 256;
const SEED_TEXT_MAX = 64 * 1024;

/** The fields each message type has; any other field makes it not the protocol. */
const SEED_FIELDS: Record<FromSeed['t'], readonly string[]> = {
  hello: ['t', 'id', 'pid', 'language', 'level'],
  ready: ['t', 'id', 'initMs'],
  failed: ['t', 'id', 'message', 'stack', 'phase'],
  forked: ['t', 'id', 'pid', 'forkUs'],
  forkFailed: ['t', 'id', 'message'],
  exit: ['t', 'id', 'pid', 'code', 'signal', 'timedOut'],
  stats: ['t', 'id', 'pid', 'children'],
  slots: ['t', 'id', 'count', 'error'],
};

/**
 * A message read off a seed link as its type says it is, or the reason it is not. What a
 * seed sends is checked field by field: a function seed runs untrusted init code in its
 * process, which can write anything on the link (a forged `exit` with a megabyte in `code`
 * went into spored's log 43,000 times in 10 s).
 */
export function checkFromSeed(x: unknown): { ok: true; m: FromSeed } | { ok: false; why: string } {
  if (typeof x !== 'object' || x === null || Array.isArray(x)) return { ok: false, why: 'not an object' };
  const m = x as Record<string, unknown>;
  const bad = (field: string): { ok: false; why: string } => ({ ok: false, why: `${String(m.t).slice(0, 20)}: bad ${field}` });
  const str = (v: unknown, max: number): boolean => typeof v === 'string' && v.length <= max;
  const int = (v: unknown): boolean => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
  const num = (v: unknown): boolean => typeof v === 'number' && Number.isFinite(v) && v >= 0;
  const intOrNull = (v: unknown): boolean => v === null || int(v);
  if (!str(m.id, SEED_ID_MAX)) return bad('id');
  switch (m.t) {
    case 'hello':
      if (!int(m.pid)) return bad('pid');
      if (m.language !== 'node' && m.language !== 'python') return bad('language');
      if (m.level !== 1 && m.level !== 2) return bad('level');
      break;
    case 'ready':
      if (!num(m.initMs)) return bad('initMs');
      break;
    case 'failed':
      if (!str(m.message, SEED_TEXT_MAX)) return bad('message');
      if (m.stack !== null && m.stack !== undefined && !str(m.stack, MAX_SEED_LINE)) return bad('stack');
      if (m.phase !== null && m.phase !== undefined && !str(m.phase, SEED_ID_MAX)) return bad('phase');
      break;
    case 'forked':
      if (!int(m.pid)) return bad('pid');
      if (!num(m.forkUs)) return bad('forkUs');
      break;
    case 'forkFailed':
      if (!str(m.message, SEED_TEXT_MAX)) return bad('message');
      break;
    case 'exit':
      if (!int(m.pid)) return bad('pid');
      if (!intOrNull(m.code) || (typeof m.code === 'number' && m.code > 255)) return bad('code');
      if (!intOrNull(m.signal) || (typeof m.signal === 'number' && m.signal > 64)) return bad('signal');
      if (typeof m.timedOut !== 'boolean') return bad('timedOut');
      break;
    case 'stats':
      if (!int(m.pid) || !int(m.children)) return bad('pid or children');
      break;
    case 'slots':
      if (!int(m.count)) return bad('count');
      if (m.error !== undefined && !str(m.error, SEED_TEXT_MAX)) return bad('error');
      break;
    default:
      return { ok: false, why: `unknown message type ${JSON.stringify(m.t)?.slice(0, 40)}` };
  }
  const known = SEED_FIELDS[m.t as FromSeed['t']];
  for (const k of Object.keys(m)) if (!known.includes(k)) return { ok: false, why: `${String(m.t)}: unknown field ${JSON.stringify(k.slice(0, 40))}` };
  return { ok: true, m: m as unknown as FromSeed };
}
/**
 * Largest result value (JSON text) an invocation may return: Lambda's synchronous response
 * limit. A larger one is reported as a handler error by the instance itself.
 */
export const MAX_RESULT_BYTES = 6 * 1024 * 1024;
/** Most spored reads from an instance's channel: the result line with its error and timings. */
export const MAX_RESULT_LINE = MAX_RESULT_BYTES + 1024 * 1024;

/** Files and directories one /tmp slot may hold (tmpfs nr_inodes). */
export const SLOT_INODES = 16384;

/**
 * Mount options of one /tmp slot (the seed's and the instances'): the plan (functions/sandbox.ts)
 * and the L1 seed that renews slots (seeds/node/seed.ts) must agree, so both read it here.
 */
export function slotData(bytes: number): string {
  return `mode=1777,size=${bytes},nr_inodes=${SLOT_INODES}`;
}
