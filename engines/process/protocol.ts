// Messages between spored and a process-engine seed, over the seed's unix socket
// (seed-channel.ts: V8 serialization, so Buffers and bigints pass as they are).
// Everything is plain data: a plan can be logged, diffed and replayed in a test.
import v8 from 'node:v8';
import { hookTimeoutMs, type Hook, type OciState } from '../../protocols/oci/hooks.js';

/** A mount the child performs, with options already parsed into flags/data. */
export interface MountStep {
  destination: string; // absolute path inside the container
  source: string;
  type: string; // '' for bind
  flags: number; // MS_* for the first mount call
  propagation: number; // MS_{PRIVATE,SLAVE,SHARED,UNBINDABLE}|MS_REC, applied after
  data: string;
  bind: boolean;
  remountFlags: number; // flags for the MS_REMOUNT|MS_BIND pass of a bind mount (0 = none)
  /** MOUNT_ATTR_* to set and clear on the mount and every mount below it (mount_setattr, AT_RECURSIVE): the spec's rro, rnoexec, ... */
  recursive?: { set: number; clr: number };
  /** for type 'cgroup' on v1/hybrid hosts: the container's dir per controller mount */
  cgroupV1?: { name: string; hostDir: string }[];
}

export interface DeviceNode {
  path: string;
  type: 'c' | 'b' | 'p' | 'u';
  major: number;
  minor: number;
  mode: number;
  uid: number;
  gid: number;
}

export interface Stdio {
  stdin: string; // host path of a FIFO or file, '' = /dev/null
  stdout: string;
  stderr: string;
  /**
   * When set, a terminal replaces stdin/stdout/stderr: a host path of a pty slave, or
   * CONSOLE_INSIDE: the process opens a pty on its own /dev/ptmx once it is in the
   * container's mount namespace (the container's devpts, as runc does), and reports the
   * master's fd number (ChildStatus `console`) for spored to take with pidfd_getfd.
   */
  terminal: string;
  /** the terminal's initial size, for CONSOLE_INSIDE */
  consoleSize?: { rows: number; cols: number };
}

/** Stdio.terminal: open the pty inside the container (its /dev/ptmx) */
export const CONSOLE_INSIDE = 'inside:/dev/ptmx';

export interface ProcessPlan {
  /** AppArmor profile applied at execve (null: none) */
  apparmorProfile: string | null;
  /** SELinux label applied at execve (null: none) */
  selinuxLabel: string | null;
  args: string[];
  env: string[];
  cwd: string;
  uid: number;
  gid: number;
  additionalGids: number[];
  umask: number;
  /** `unknown`: names in the spec this code does not know, left out (runc ignores them too) */
  caps: { bounding: bigint; effective: bigint; permitted: bigint; inheritable: bigint; ambient: number[]; unknown?: string[] };
  rlimits: { resource: number; soft: bigint; hard: bigint }[];
  noNewPrivileges: boolean;
  oomScoreAdj: number | null;
  seccomp: { bpf: Buffer; flags: number } | null;
  stdio: Stdio;
  /**
   * Where the forked child reads `args`, `env` and its hooks' secrets (sealedBody):
   * `/proc/<spored's pid>/fd/<n>`, a memfd spored holds until the seed answers. With it, `args`
   * and `env` here are empty.
   */
  sealedPath?: string;
}

export interface NamespaceStep {
  type: 'mount' | 'network' | 'ipc' | 'uts' | 'cgroup' | 'pid' | 'user' | 'time';
  /** path to join; null = create a new one */
  path: string | null;
}

/** Everything the forked child needs to become a container's init. */
export interface InitPlan {
  kind: 'init';
  id: string;
  rootfs: string; // absolute host path
  readonlyRoot: boolean;
  rootPropagation: number;
  namespaces: NamespaceStep[];
  hostname: string | null;
  domainname: string | null;
  mounts: MountStep[];
  devices: DeviceNode[];
  maskedPaths: string[];
  readonlyPaths: string[];
  sysctl: Record<string, string>;
  cgroupProcs: string[]; // host cgroup.procs files to write "0" into
  /** join the cgroup at the end of setup (spored creates it meanwhile), then unshare cgroupns */
  lateCgroup?: boolean;
  /**
   * With lateCgroup: spored joins the child itself (from the pid the seed reports early, a
   * `pid` event), overlapping the child's set-up; the child only waits for it
   * (container-init.ts, awaitJoin). A seed older than this ignores the field and the child
   * joins itself, as before (the second write is a no-op move).
   */
  joinedBySpored?: boolean;
  process: ProcessPlan;
  /** OCI hooks the child has a part in (absent: none); see ChildHooks */
  hooks?: ChildHooks;
  /**
   * A new user namespace (linux.namespaces has `user` without a path): its id maps, written
   * by the root seed (root on the host) once the child has unshared it and reported
   * `userns`. Absent: no user namespace of its own (none, or one joined by path).
   */
  userNs?: IdMaps;
  /**
   * A direct spawn's token (spored wrote the plan to a container shell itself: seed-client.ts,
   * 'shell-claims'): the child names it in its `hooks` and `ready` status lines (`n`), so
   * that spored never takes another plan's report for its own (a shell an earlier spored had
   * claimed, and wrote to, before it died).
   */
  nonce?: string;
}

/** One line of /proc/<pid>/uid_map or gid_map (runtime-spec LinuxIDMapping). */
export interface IdMapping { containerID: number; hostID: number; size: number }

/** A user namespace's uid and gid maps (runtime-spec linux.uidMappings / gidMappings). */
export interface IdMaps { uidMappings: IdMapping[]; gidMappings: IdMapping[] }

/** The text of a uid_map or gid_map write: one "inside outside count" line per mapping (user_namespaces(7)). */
export function idMapText(maps: readonly IdMapping[]): string {
  return maps.map((m) => `${m.containerID} ${m.hostID} ${m.size}\n`).join('');
}

/**
 * Whether `plan`'s process comes to its pid namespace through a child of its own (the seed
 * does not fork it there): when it enters the namespace last (entersPidNsLast), and when it
 * is in a user namespace of the container's (made or joined), which must own the new pid
 * namespace (proc is mounted in there) and so comes first (runc's nsexec order: user, then
 * the rest, then the fork into the pid namespace).
 */
export function forksIntoPidNs(plan: SpawnPlan): boolean {
  return entersPidNsLast(plan) || (plan.kind === 'init' && inUserNs(plan) && plan.namespaces.some((n) => n.type === 'pid' && n.path === null));
}

/** Whether `plan`'s process lives in a user namespace other than the host's (one it makes, or joins by path). */
export function inUserNs(plan: { namespaces: readonly NamespaceStep[] }): boolean {
  return plan.namespaces.some((n) => n.type === 'user');
}

/**
 * The child's part in a container's OCI hooks (protocols/oci/hooks.ts says where each kind
 * runs). `pause`: after its mounts and devices, before pivot_root, the child reports
 * `hooks` and waits for one byte on its start pipe while spored runs prestart and
 * createRuntime (the seed relays it as a `hooks` event; spored answers with `resume`). Then
 * it runs `createContainer` itself (cwd the rootfs), and after Start, once it holds the
 * process's identity, `startContainer`. `state`: the OCI state without status and pid,
 * which the child fills in (its own pid, as the container sees it).
 */
export interface ChildHooks {
  pause: boolean;
  createContainer: Hook[];
  startContainer: Hook[];
  state: Omit<OciState, 'status' | 'pid'>;
}

/**
 * Whether `plan`'s process enters its pid namespace last, through a child of its own, rather
 * than being forked into it by the seed: an exec (the container's), and an init that joins
 * another's pid namespace (a pod's shared one). Forked into it, such a process would be seen,
 * stopped and read through /proc by the processes already there while it is still in the
 * host's network, cgroup and mount namespaces (runc's nsexec enters a joined pid namespace
 * last too). A new pid namespace has nobody in it to see the child: the seed forks into it.
 */
export function entersPidNsLast(plan: { kind: 'init' | 'exec'; namespaces?: readonly NamespaceStep[] }): boolean {
  return plan.kind === 'exec' || (plan.namespaces ?? []).some((n) => n.type === 'pid' && n.path !== null);
}

/** A process joining a running container (Task Exec). */
export interface ExecPlan {
  kind: 'exec';
  id: string;
  execId: string;
  targetPid: number; // host pid of the container's init
  namespaces: NamespaceStep[]; // paths under /proc/<targetPid>/ns
  cgroupProcs: string[];
  process: ProcessPlan;
}

export type SpawnPlan = InitPlan | ExecPlan;

/** A sandbox's set-up (fork, or a shell's plan, to ready) longer than this is killed, ms. */
export const SETUP_DEADLINE_MS = 60_000;

/**
 * How long `plan`'s set-up may take, ms: SETUP_DEADLINE_MS plus the time its createContainer
 * hooks may take (their own timeouts); Infinity when one has no timeout (runc waits for such
 * a hook as long as it takes) or the sum is past what a timer can wait.
 */
export function setupAllowanceMs(plan: SpawnPlan): number {
  const hooks = plan.kind === 'init' ? plan.hooks?.createContainer ?? [] : [];
  const ms = SETUP_DEADLINE_MS + hooks.reduce((sum, h) => sum + (hookTimeoutMs(h) ?? Infinity), 0);
  return ms > 2 ** 31 - 1 ? Infinity : ms;
}

/**
 * Version of this protocol. A root seed outlives spored upgrades (it is the parent of every
 * container); a spored attaches only to a seed of its own version, and a change here is
 * either compatible or needs the node's containers restarted.
 */
export const SEED_PROTOCOL = 1;

// --- requests (spored -> seed) ------------------------------------------------------
export type SeedRequest =
  | { op: 'spawn'; seq: number; key: string; plan: SpawnPlan }
  /**
   * `atExec` ('start-at-exec'): answer at the process's `exec` status line, on its way to its
   * execve (no poststart hook waits for the program), not at the status pipe's end after it
   */
  | { op: 'start'; seq: number; key: string; atExec?: boolean }
  | { op: 'abort'; seq: number; key: string }
  /**
   * spored started the sandbox itself, through its own duplicate of the start pipe (its
   * `pipes`): the seed lets go of it (closes its ends, no byte written). No reply. Needs the
   * seed's 'started-by-spored' feature.
   */
  | { op: 'started'; key: string }
  /** a sandbox paused for its runtime hooks (a `hooks` event) goes on with its set-up; needs the seed's 'hooks' feature */
  | { op: 'resume'; seq: number; key: string }
  /** fork an L1 language seed from this root seed; it connects to `socket` as `id` */
  | { op: 'spawnSeed'; seq: number; language: 'node' | 'python'; id: string; socket: string; pythonBin: string; zygote: string }
  | { op: 'ping'; seq: number }
  /**
   * Keep `count` container shells ready (0: none). No reply: a seed that predates shells
   * ignores it, so this needs no new protocol version.
   */
  | {
    op: 'shells'; seq: number; count: number;
    /**
     * 'shell-claims': spored hands plans to the shells itself. The seed offers each idle shell
     * (a `shell` event, and again at every such request), says when one it offered is gone
     * (`shellGone`), and no longer hands shells to `spawn` plans itself. Absent or false: as before.
     */
    direct?: boolean;
  }
  /**
   * 'shell-claims': spored takes the idle shell `pid` for the Create `key` and writes its plan
   * to it itself (right after sending this, not waiting). Accepted (reply ok): the seed keeps
   * the shell's start and status pipes as a sandbox of `key` waiting for Start (abort, start,
   * started and its exit as for a spawn). Refused (not ok): the shell is no longer idle here
   * (killed, died, or claimed before); spored kills it if it still runs and forks the plan.
   * spored answers Create only once the claim is accepted: a shell the seed discarded while
   * the claim waited in the link would otherwise run as a container whose exit nobody reports.
   */
  | {
    op: 'claim'; seq: number; key: string; pid: number;
    /** the plan's early steps (container-init.ts earlyStepsOf): what the next shells make ahead */
    shape?: string[];
  }
  /** spored recorded every exit up to `exitSeq`: the seed may forget them */
  | { op: 'ack'; seq: number; exitSeq: number };

/** A child of the seed that exited. `exitSeq` counts up from 1 over the seed's life. */
export interface ExitReport { pid: number; status: number; exitSeq: number; at: number }

// --- replies and events (seed -> spored) --------------------------------------------
export type SeedReply =
  | {
    type: 'reply'; seq: number; ok: true; pid?: number; warnings?: string[]; timings?: Record<string, number>;
    /** spawn: the pty master's fd in the child (CONSOLE_INSIDE) */
    console?: number;
    /**
     * spawn ('held-start'): the seed's own fd numbers of the sandbox's start pipe (write end)
     * and status pipe (read end), for spored to take duplicates of (pidfd_getfd) and give the
     * keeper, so that a sandbox waiting for Start outlives this seed (task/held-start.ts);
     * `ino`: their inode numbers, for spored to check its duplicates against (a sandbox that
     * died before spored took them has its fds closed here, and the numbers may be reused)
     */
    pipes?: { start: number; status: number; ino?: { start: number; status: number } };
  }
  | { type: 'reply'; seq: number; ok: false; error: string; phase: string; errno?: number }
  | ({ type: 'exit' } & ExitReport)
  /**
   * spawn of a plan with joinedBySpored: the sandbox's pid (the seed's pid namespace, the
   * host's) as soon as it is forked or handed to a shell, before the reply, so spored can
   * join it to its cgroup while it sets up. A spored older than this ignores it.
   */
  | { type: 'pid'; seq: number; pid: number }
  /**
   * spawn of a plan with hooks.pause: the sandbox (host pid `pid`) has its namespaces,
   * mounts and devices, and waits for a `resume` request (or an abort) while spored runs the
   * prestart and createRuntime hooks. The spawn's reply comes after.
   */
  | { type: 'hooks'; seq: number; pid: number }
  /**
   * 'shell-claims': an idle container shell spored may claim: its pid and the seed's own fd
   * numbers of its plan pipe (write end), start pipe (write end) and status pipe (read end),
   * for spored to take duplicates of (pidfd_getfd); `ahead`: the early steps it made.
   */
  | {
    type: 'shell'; pid: number; fds: { plan: number; start: number; status: number }; ahead: string[];
    /**
     * the three pipes' inode numbers (fstat): spored checks its copies against them, since an
     * fd number the seed closed meanwhile (the shell died) may name another of its files by then
     */
    ino: { plan: number; start: number; status: number };
  }
  /** 'shell-claims': an offered shell was killed or died while idle: spored drops its copies */
  | { type: 'shellGone'; pid: number }
  /**
   * First message on every connection. `pending`: sandboxes set up and waiting for Start (a
   * spored that restarted adopts them or aborts them); `exits`: exits no spored acknowledged
   * yet, oldest first (a restarted spored applies them; one it already saw is ignored).
   */
  | { type: 'hello'; protocol: number; pid: number; survive: boolean; pending: { key: string; pid: number }[]; exits: ExitReport[]; /** what this seed can do beyond its protocol version (absent: nothing); SEED_FEATURES */ features?: string[] };

/**
 * Features a seed of this code has, named in its hello. 'hooks': a child runs its part of
 * a plan's OCI hooks, and the seed relays `hooks` and takes `resume`. 'userns': a child makes
 * a plan's user namespace and the seed writes its id maps. 'late-cgroup-mount': a child with
 * a late cgroup (plan.lateCgroup) takes the join before it mounts the cgroup hierarchy (an
 * older one would bind cgroup dirs that may not exist yet). 'held-start': a spawn's reply
 * names its start and status pipes' fds (`pipes`). 'started-by-spored': it takes `started`,
 * and stops reading a sandbox's status pipe once it is ready (what the process reports at
 * Start goes to whoever starts it). 'sealed-process': its children read a plan's args, env
 * and hooks' secrets from spored's memfd (sealedPath). 'shell-claims': it offers its idle
 * container shells to spored, which claims one (answered) and writes the plan to it itself.
 * 'start-at-exec': its children report `exec` right before their execve, and its `start`
 * takes `atExec`.
 * A root seed outlives spored upgrades; one that predates a feature runs old child code,
 * which would ignore the plan's field: spored refuses what needs a feature the seed lacks.
 */
export const SEED_FEATURES = ['hooks', 'userns', 'late-cgroup-mount', 'held-start', 'started-by-spored', 'sealed-process', 'shell-claims', 'start-at-exec'] as const;

/** What the child writes on its status pipe, one JSON object per line. */
export type ChildStatus =
  /** `n`: the plan's nonce, when it has one */
  | { s: 'ready'; warnings: string[]; t: Record<string, number>; console?: number; n?: string }
  /** an exec's first child, having joined every namespace but pid: the pid (seed's view) of the child it forked into the pid namespace, which is the exec from now on */
  | { s: 'pid'; pid: number }
  /** paused for the runtime hooks (ChildHooks.pause): waiting for one byte on the start pipe */
  | { s: 'hooks'; n?: string }
  /** unshared its user namespace (InitPlan.userNs): waiting for one byte on the start pipe once its id maps are written */
  | { s: 'userns' }
  /**
   * after Start, once it read the start byte and before the rest of its way to execve (a
   * no_new_privs seccomp filter, startContainer hooks, stdio), as runc's init writes its exec
   * fifo: Start may be answered (HeldStart.begin, without poststart hooks); what fails after
   * this is the process's exit status
   */
  | { s: 'exec' }
  /** message '': it is in the plan's sealed memfd, after the body (container-init.ts; spored reads it there) */
  | { s: 'error'; phase: string; message: string; errno?: number; n?: string };

// --- seed -> container shell -------------------------------------------------------
// A container shell (container-init.ts, runShell) is a child the root seed forked before any
// Create; it receives exactly one message, on a pipe of its own: the plan it becomes, framed
// as on the seed link (4-byte big-endian length, V8 serialization).

/** Largest shell frame. The pipe holds 64 KiB, so the seed's write never blocks; a larger plan is forked as before. */
export const MAX_SHELL_FRAME = 60 * 1024;

/** The frame a shell reads, or null when the plan is too large for one. */
export function shellFrame(plan: InitPlan): Buffer | null {
  const body = v8.serialize(plan);
  if (body.length + 4 > MAX_SHELL_FRAME) return null;
  const head = Buffer.alloc(4);
  head.writeUInt32BE(body.length, 0);
  return Buffer.concat([head, body]);
}

/** The plan in a shell frame's body (after its length). */
export function shellPlanOf(body: Buffer): InitPlan {
  const plan = v8.deserialize(body) as InitPlan | null;
  if (plan === null || typeof plan !== 'object' || plan.kind !== 'init') throw new Error('a container shell got something that is not an init plan');
  return plan;
}

/**
 * A container's credentials kept out of the root seed's memory. Every fork of the seed (a
 * container shell, an exec child, an init before its execve) holds a copy of that memory, and
 * a container's root with CAP_SYS_PTRACE can seize such a fork before its execve and read it:
 * it found other containers' env there (their credentials), kept by the seed since their
 * Creates. So the process's args and env, and the child's hooks' args, env and OCI state
 * (annotations) never pass through the seed: spored writes them to a memfd of its own (this
 * body), sends the plan with them empty (hooks keep their path and timeout, which the seed
 * reads) and `process.sealedPath` naming the memfd, and the forked child opens that path
 * first thing (still the host's /proc, root with every capability) and puts them back
 * (unsealPlan). The seed sees a path. Seed feature `sealed-process`.
 */
export function sealedBody(plan: SpawnPlan): Buffer {
  const hooks = plan.kind === 'init' && plan.hooks
    ? { createContainer: plan.hooks.createContainer.map(hookSecrets), startContainer: plan.hooks.startContainer.map(hookSecrets), annotations: plan.hooks.state.annotations ?? null }
    : null;
  return v8.serialize({ args: plan.process.args, env: plan.process.env, hooks });
}
const hookSecrets = (h: Hook): { args: string[]; env: string[] | null } => ({ args: h.args, env: h.env });

/** `plan` with what sealedBody holds taken out and `sealedPath` in its place. */
export function sealPlan<P extends SpawnPlan>(plan: P, sealedPath: string): P {
  const out: P = { ...plan, process: { ...plan.process, args: [], env: [], sealedPath } };
  if (out.kind === 'init' && out.hooks) {
    const bare = (h: Hook): Hook => ({ path: h.path, args: [], env: null, timeout: h.timeout });
    const { annotations: _a, ...state } = out.hooks.state;
    out.hooks = { ...out.hooks, createContainer: out.hooks.createContainer.map(bare), startContainer: out.hooks.startContainer.map(bare), state };
  }
  return out;
}

/**
 * Put a sealed plan's args, env and hook secrets back in place (in `plan`), read from
 * `read(process.sealedPath)`; nothing happens when nothing is sealed. Throws when what was
 * read is not a sealed body for this plan.
 */
export function unsealPlan(plan: SpawnPlan, read: (path: string) => Buffer): void {
  const p = plan.process;
  const at = p.sealedPath;
  if (at === undefined) return;
  const o = v8.deserialize(read(at)) as { args?: unknown; env?: unknown; hooks?: unknown } | null;
  const strings = (x: unknown): x is string[] => Array.isArray(x) && x.every((v) => typeof v === 'string');
  const bad = (): Error => new Error(`${at} does not hold this process's args, env and hooks`);
  if (o === null || typeof o !== 'object' || !strings(o.args) || !strings(o.env)) throw bad();
  if (plan.kind === 'init' && plan.hooks) {
    const h = o.hooks as { createContainer?: unknown; startContainer?: unknown; annotations?: unknown } | null | undefined;
    const secrets = (x: unknown, n: number): Array<{ args: string[]; env: string[] | null }> => {
      if (!Array.isArray(x) || x.length !== n || !x.every((e: { args?: unknown; env?: unknown }) => strings(e?.args) && (e.env === null || strings(e.env)))) throw bad();
      return x as Array<{ args: string[]; env: string[] | null }>;
    };
    if (!h || typeof h !== 'object') throw bad();
    const cc = secrets(h.createContainer, plan.hooks.createContainer.length);
    const sc = secrets(h.startContainer, plan.hooks.startContainer.length);
    plan.hooks.createContainer.forEach((k, i) => Object.assign(k, cc[i]));
    plan.hooks.startContainer.forEach((k, i) => Object.assign(k, sc[i]));
    if (h.annotations !== null && h.annotations !== undefined) {
      if (typeof h.annotations !== 'object') throw bad();
      plan.hooks.state.annotations = h.annotations as Record<string, string>;
    }
  }
  p.args = o.args;
  p.env = o.env;
  delete p.sealedPath;
}
