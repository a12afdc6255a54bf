// Containers and their processes as plain data, and the operations containerd's Task API
// performs on them. Transport-free: the ttrpc service (service.ts) only decodes requests,
// calls these methods and encodes results; errors are typed and mapped once, there.
import { existsSync, fstatSync, readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { dirname, isAbsolute, join } from 'node:path';
import type { Logger } from 'pino';
import { AlreadyExists, Cancelled, Code, FailedPrecondition, Internal, InvalidArgument, NotFound, ResourceExhausted, SporeError, Unavailable } from '../sys/errors.js';
import * as sys from '../sys/libc.js';
import type { LinuxResources, Process, Spec } from '../protocols/oci/spec.js';
import { addProcessAsync, cgroupHandle, cgroupHolds, createCgroup, normalizeCgroupPath, applyResources, destroyCgroup, removeEmptyParents, freeze, thaw, killAll, pids as cgroupPids, procsFiles, stats as cgroupStats, oomKillCount, type CgroupHandle, type CgroupLayout, type CgroupStats } from '../pools/cgroups.js';
import { cgroup2RootOptions } from '../pools/favordynmods.js';
import { compileSeccomp, seccompInSpec } from '../pools/seccomp.js';
import { checkLsm, initPlan, execPlan, lateCgroupFits, parseMountOptions, type HostLsm } from '../engines/process/plan.js';
import { CONSOLE_INSIDE, type NamespaceStep, type Stdio } from '../engines/process/protocol.js';
import { SeedError, type SeedClient, type SpawnResult } from '../engines/process/seed-client.js';
import { hasHooks, ociStateBase, parseHooks, type Hook, type Hooks, type OciState } from '../protocols/oci/hooks.js';
import { HookFailed, runHooks, runHooksAll, type HookObserver } from './hooks.js';
import type { LaterHooks } from './record.js';
import { Console } from './console.js';
import { ProcessIO, type StdioRequest } from './stdio.js';
import { cleanUpCutShort } from './cut-short.js';
import { claimCreating, findTombstones, pruneTombstones, readAllRecords, removeCreating, removeRecord, removeTombstone, takeAllCreating, writeCreating, writeRecord, writeTombstone, TASK_RECORD_VERSION, type ProcRecord, type TaskRecord, type Tombstone } from './record.js';
import { NO_CUSTODY, ProcessCustody, parseCustodyKey, type FdCustody } from './custody.js';
import { HeldStart, releaseSetupPipes } from './held-start.js';
import { processRunning, processStartTime } from '../sys/proc.js';
import { PodRegistry } from './pods.js';
import { EXEC_MOVES, EXEC_OPS, INIT_MOVES, INIT_OPS, move, refusal, type ExecStatus, type ProcStatus } from './states.js';

export type { ProcStatus } from './states.js';

export interface ProcState {
  execId: string; // '' for the init process
  pid: number;
  status: ProcStatus;
  exitStatus: number;
  exitedAt: Date | null;
  /** stdin/stdout/stderr as containerd gave them (FIFO paths or log URIs) */
  stdio: Stdio;
  terminal: boolean;
  spec: Process | null; // exec processes only
  /** an exec whose Start failed before it had a process: Wait answers at once, as with runc */
  startFailed?: boolean;
  /** /proc starttime of pid, taken at spawn: a restarted spored trusts the pid only while it matches */
  pidStartTime?: number | null;
  /**
   * stopped, but its exit event is not published yet: its terminal's last output is still
   * being flushed (Wait waits for that too), or the event waits for Start's (starting). A
   * spored that restores the record publishes it.
   */
  exitUnreported?: boolean;
}

export interface ContainerState {
  id: string;
  namespace: string;
  bundle: string;
  rootfs: string;
  rootfsMounted: boolean;
  cgroup: CgroupHandle;
  /** ancestor cgroup dirs Create had to make (e.g. /<namespace>), removed when empty */
  madeParents: string[];
  /** CRI sandbox id of the pod this container belongs to (pods.ts), or null */
  pod: string | null;
  namespaces: NamespaceStep[];
  /** its status is the container's: created, running, paused or stopped */
  init: ProcState;
  execs: Map<string, ProcState>;
  createdAt: Date;
  /** fork/setup timings from the seed, for logs and benchmarks */
  timings: Record<string, unknown>;
  /** the OCI hooks spored runs after Create (poststart, poststop) and the state they read; null: none */
  hooks: LaterHooks | null;
  /** its init's pid namespace (readlink of /proc/<pid>/ns/pid) when it has one of its own: what Delete waits to see gone from its cgroup */
  pidNs?: string;
}

export type { StdioRequest } from './stdio.js';
/** from CreateTaskRequest.options (runtimeoptions.v1.Options) */
export interface CreateOptions { configPath?: string }
export interface RootfsMount { type: string; source: string; target: string; options: string[] }

export interface TaskEvents {
  created(c: ContainerState): void;
  started(c: ContainerState, p: ProcState): void;
  exited(c: ContainerState, p: ProcState): void;
  deleted(c: ContainerState, p: ProcState): void;
  execAdded(c: ContainerState, execId: string): void;
  paused(c: ContainerState, paused: boolean): void;
  oom(c: ContainerState): void;
}

export interface TaskManagerOptions {
  runDir: string;
  layout: CgroupLayout;
  seed: SeedClient;
  events: TaskEvents;
  log: Logger;
  cgroupParent?: string;
  /** the function runtime's cgroup parent (its seeds and instances), which no container's cgroup may hold; default /spore/fri-<spored pid> */
  functionCgroupParent?: string;
  /** where stdio fds are parked so they survive a spored restart (a keeper), else none */
  custody?: FdCustody;
  /** told of every OCI hook spored runs (metrics) */
  onHook?: HookObserver;
}

/** how long a Delete's answer is kept for a replay of it (task/record.ts Tombstone) */
const TOMBSTONE_MS = 10 * 60_000;
/** how long the FIFO ends of a cut-short Create are held for its replay */
const HELD_STDIO_MS = 30_000;
const ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

/** Whether `fd` (ours) is a named FIFO (a client's stream), not an anonymous pipe. */
function isNamedFifo(fd: number): boolean {
  try {
    return readlinkSync(`/proc/self/fd/${fd}`).startsWith('/') && fstatSync(fd).isFIFO();
  } catch {
    return false;
  }
}

function key(ns: string, id: string, execId = ''): string {
  return execId ? `${ns}/${id}/${execId}` : `${ns}/${id}`;
}

/**
 * An error as runc's shim reports it: containerd's clients see UNKNOWN (errdefs.ToGRPC of a
 * plain error), e.g. `ctr: cannot exec in a paused state: unknown`.
 */
export function runcError(message: string): SporeError {
  return new SporeError(Code.UNKNOWN, message);
}

/** Whether a container with `namespaces` has a pid namespace of its own (not the host's, not joined). */
function ownsPidNs(namespaces: readonly NamespaceStep[]): boolean {
  return namespaces.some((n) => n.type === 'pid' && n.path === null);
}

/** The pid namespace of `pid` as /proc names it ("pid:[4026532...]"), null when it is gone. */
function pidNsOf(pid: number): string | null {
  try { return readlinkSync(`/proc/${pid}/ns/pid`); } catch { return null; }
}

/** The poststop hooks to run after a failed Create: none when config.json's hooks are not valid. */
function failedCreateHooks(spec: Spec): Hook[] {
  try { return parseHooks(spec.hooks).poststop ?? []; } catch { return []; }
}

/** A sandbox that could not be set up or started: an OCI runtime failure (UNKNOWN, as with runc). */
function runtimeFailure(e: unknown): unknown {
  return e instanceof SeedError ? new SporeError(Code.UNKNOWN, e.message, { cause: e }) : e;
}

/** Test-only fault injection (SPORE_TEST_MUTATION, read by integration/conformance/mutation.test.ts). */
const TEST_MUTATION = process.env.SPORE_TEST_MUTATION ?? '';
/**
 * Test-only: hold a sandbox set up but not yet recorded (Create) or started (exec Start) this
 * long, so that integration/crash-window.test.ts can kill spored inside that window.
 */
const TEST_HOLD_SPAWNED_MS = Number(process.env.SPORE_TEST_HOLD_SPAWNED_MS ?? 0) || 0;
/** Test-only, the same for an exec the seed has started whose Start is not yet answered (SPORE_TEST_HOLD_START_MS, below, holds an init's or exec's Start before it is carried out). */
const TEST_HOLD_STARTED_MS = Number(process.env.SPORE_TEST_HOLD_STARTED_MS ?? 0) || 0;
/** Test-only: hold an init's Start this long before it goes to the seed (integration/seed-death.test.ts kills the seed meanwhile). */
const TEST_HOLD_START_MS = Number(process.env.SPORE_TEST_HOLD_START_MS ?? 0) || 0;

/**
 * A call the root seed's death cut short, which the next spored carries out: an init's Start
 * while its set-up process waits on the pipes the keeper holds (held-start.ts), a Create
 * whose pipes the dead seed could no longer give. The daemon leaves it unanswered (the
 * keeper sends it again to the next spored).
 */
export class LeftForNext extends Unavailable {}
function holdForTest(log: Logger, k: string, when: 'spawned' | 'started' = 'spawned'): Promise<void> | undefined {
  const ms = when === 'spawned' ? TEST_HOLD_SPAWNED_MS : TEST_HOLD_STARTED_MS;
  if (ms <= 0) return undefined;
  log.warn({ key: k, ms, when }, when === 'spawned' ? 'test hold: sandbox set up, held before it is recorded or started' : 'test hold: started, its Start not yet answered');
  return new Promise((r) => setTimeout(r, ms));
}

export class TaskManager {
  readonly containers = new Map<string, ContainerState>();
  private readonly creating = new Set<string>();
  /**
   * The root seed is gone and this spored is restarting under its keeper: a Create that fails
   * now is left unanswered for the next spored (daemon.ts), so its undo leaves the client's
   * FIFOs with the keeper for the replay (ProcessIO.abandon).
   */
  private leavingForNext = false;

  /** The root seed went away under a keeper: see leavingForNext. */
  seedLostUnderKeeper(): void {
    this.leavingForNext = true;
  }
  /** Creates and init Starts in flight, settled (either way) when they end: what a Delete of the same id waits for */
  private readonly settling = new Map<string, Promise<void>>();
  /** Creates past their cgroup checks and not ended: cgroup path and the ancestors they make (refuseNestedCgroup, sharedMadeParents) */
  private readonly cgroupsInCreate = new Map<string, { id: string; path: string; madeParents: string[] }>();
  /** Creates cut short by a crash whose poststop hooks are running (restore) */
  private readonly cutShort = new Map<string, Promise<void>>();
  /** Deletes of a container's init in flight, in turn: the next waits for this one */
  private readonly deleting = new Map<string, Promise<void>>();
  /** Creates a Delete arrived for: they end Cancelled, making nothing containerd would not know of */
  private readonly deletedDuringCreate = new Set<string>();
  private readonly byPid = new Map<number, { c: ContainerState; p: ProcState }>();
  /**
   * Exits of pids not (yet) tracked, with the seed's exitSeq: the exit of a sandbox that died
   * right after it reported ready can be read in the same chunk as its spawn reply, before
   * its pid is recorded (claimExit). Bounded; the oldest go first.
   */
  private readonly unclaimed = new Map<number, { status: number; exitSeq: number; at: number | undefined }>();
  private readonly waiters = new Map<ProcState, (() => void)[]>();
  /** created inits whose start and status pipes spored holds (held-start.ts: taken from the seed at Create, or back from the keeper) */
  private readonly heldStarts = new Map<ProcState, HeldStart>();
  /** created inits whose pipes only the keeper holds (a seed without 'started-by-spored' starts them) */
  private readonly parkedStarts = new Set<ProcState>();
  private readonly consoles = new Map<ProcState, Console>();
  private readonly ios = new Map<ProcState, ProcessIO>();
  /** processes whose CloseIO came before their stdio was open (an exec's Start in progress) */
  private readonly stdinClosedEarly = new WeakSet<ProcState>();
  /** processes whose Start is in flight; their exit is published after their start event */
  private readonly starting = new Map<ProcState, (() => void) | null>();
  /** execs whose Start is in flight, settled when it ends: what another Start or a Delete of the exec waits for */
  private readonly execStarts = new Map<ProcState, Promise<void>>();
  /** stopped processes whose terminal is being flushed: Wait answers after it (reportExit) */
  private readonly flushing = new Set<ProcState>();
  /**
   * Client FIFO ends taken from sandboxes of Creates an earlier spored did not finish (held
   * until the replayed Create's process has its stdio, or HELD_STDIO_MS): the sandbox is
   * aborted, and without these the client's reader would see EOF and go, and the new
   * process's open of the FIFO would wait for a reader forever.
   */
  private readonly heldStdio = new Map<string, { fds: number[]; timer: NodeJS.Timeout }>();
  private readonly o: TaskManagerOptions;
  readonly pods: PodRegistry;

  constructor(o: TaskManagerOptions) {
    this.o = o;
    this.pods = new PodRegistry(o.runDir);
    o.seed.on('exit', (pid, status, exitSeq, at) => this.onExit(pid, status, exitSeq, at));
  }

  get(ns: string, id: string): ContainerState {
    const c = this.containers.get(key(ns, id));
    if (!c) throw new NotFound(`container ${id} not found in namespace ${ns}`);
    return c;
  }

  namespacesOf(id: string): string[] {
    const out: string[] = [];
    for (const c of this.containers.values()) if (c.id === id && c.namespace) out.push(c.namespace);
    return out;
  }

  proc(ns: string, id: string, execId: string): { c: ContainerState; p: ProcState } {
    const c = this.get(ns, id);
    if (!execId) return { c, p: c.init };
    const p = c.execs.get(execId);
    if (!p) throw new NotFound(`exec ${execId} not found in container ${id}`);
    return { c, p };
  }

  /**
   * A container's cgroup must not hold spore's own processes: its kill (kill --all, or its
   * init's exit without a pid namespace of its own) takes everything in it, and a freeze
   * freezes it. A cgroupsPath naming spored's, the keeper's or the root seed's cgroup (or an
   * ancestor) killed the keeper and every seed (red team, 2026-12-01); function seeds and
   * instances live under the functions' cgroup parent. runc has no such daemon to protect.
   */
  /**
   * A container's cgroup must not lie above or below another container's: a failed Create
   * or a Delete removes the cgroup with every cgroup below it (sub-cgroups the container made
   * itself), which would take the other's; and on v1 a parent's device rules and limits
   * bind its children (`ctr oci spec`'s "/default" beside a running `ctr run` container's
   * "/default/<id>" failed with the kernel's EINVAL on devices.deny). The same path is
   * allowed: containers may share a cgroup (Delete leaves it to the last).
   */
  private refuseNestedCgroup(cgroup: CgroupHandle, asked: string, ns: string, id: string): void {
    const below = (p: string, top: string): boolean => p.startsWith(`${top}/`);
    const others: [string, { id: string; path: string }][] = [
      ...[...this.containers].map(([k, c]): [string, { id: string; path: string }] => [k, { id: c.id, path: c.cgroup.path }]),
      ...this.cgroupsInCreate,
    ];
    for (const [k, other] of others) {
      if (k === key(ns, id)) continue;
      const theirs = other.path;
      const where = below(theirs, cgroup.path) ? 'above' : below(cgroup.path, theirs) ? 'inside' : null;
      if (where) {
        throw new InvalidArgument(`cgroupsPath ${JSON.stringify(asked || cgroup.path)} is ${where} container ${other.id}'s cgroup (${theirs}); give the container a cgroup of its own beside it (e.g. ${theirs.slice(0, theirs.lastIndexOf('/')) || ''}/${id})`);
      }
    }
  }

  /**
   * Ancestor dirs of `h` that another container (live, or being created) made and still
   * counts on: shared with this one, so that whichever goes last removes them (only empty
   * ones go: removeEmptyParents). Before, only the container that happened to make them held
   * them, and if it went first they stayed for good (red team: two containers in one systemd
   * slice).
   */
  private sharedMadeParents(h: CgroupHandle, k: string): string[] {
    const dirs = Object.values(h.dirs);
    const out = new Set<string>();
    const consider = (made: readonly string[]): void => { for (const d of made) if (dirs.some((x) => x.startsWith(`${d}/`))) out.add(d); };
    for (const [other, c] of this.containers) if (other !== k) consider(c.madeParents);
    for (const [other, c] of this.cgroupsInCreate) if (other !== k) consider(c.madeParents);
    return [...out];
  }

  private refuseSporesCgroup(cgroup: CgroupHandle, asked: string): void {
    const own: [string, number][] = [['spored', process.pid], ['the keeper or whatever started spored', process.ppid], ['the root seed', this.o.seed.pid]];
    for (const [who, pid] of own) {
      if (pid <= 1) continue;
      let text = '';
      try { text = readFileSync(`/proc/${pid}/cgroup`, 'utf8'); } catch { continue; }
      if (cgroupHolds(cgroup, text)) {
        throw new InvalidArgument(`cgroupsPath ${JSON.stringify(asked || cgroup.path)} holds ${who} (pid ${pid}): a container's cgroup must not hold spore's own processes (its kill would take them); give the container a cgroup of its own`);
      }
    }
    // The function runtime's cgroups: this spored's parent and every other `fri-<pid>` beside
    // it (a restarted spored removes a dead one's, killing whatever is inside), neither at,
    // above nor below them
    const fnPath = normalizeCgroupPath(this.o.functionCgroupParent ?? `/spore/fri-${process.pid}`);
    const fnSiblings = `${fnPath.slice(0, fnPath.lastIndexOf('/'))}/fri-`;
    const below = (p: string, top: string): boolean => p === top || p.startsWith(`${top}/`);
    const inFri = cgroup.path.startsWith(fnSiblings) && !cgroup.path.slice(fnSiblings.length).startsWith('/');
    if (below(fnPath, cgroup.path) || below(cgroup.path, fnPath) || inFri) {
      throw new InvalidArgument(`cgroupsPath ${JSON.stringify(asked || cgroup.path)} is ${below(fnPath, cgroup.path) ? 'above or at' : 'inside'} spore's function cgroups (${fnPath}, ${fnSiblings}*); give the container a cgroup of its own`);
    }
  }

  // --- Create -----------------------------------------------------------------------
  /**
   * Create a container (Task Create). A Delete of the same id that arrives meanwhile waits
   * for it to settle, then deletes what it made: runc's shim holds one lock across both, and
   * containerd sends that Delete when a Create outlives its caller (a slow hook, a cancelled
   * `ctr run`); answered NotFound at once, it left the container behind, unknown to containerd.
   */
  async create(ns: string, id: string, bundle: string, rootfs: RootfsMount[], io: StdioRequest, opts: CreateOptions = {}): Promise<ContainerState> {
    const k = key(ns, id);
    return this.settleFirst(k, this.createOne(ns, id, bundle, rootfs, io, opts)).finally(() => { if (!this.creating.has(k)) this.deletedDuringCreate.delete(k); });
  }

  /**
   * Resolves once no Create of container `id` is in flight (at once when none is): a State
   * waits for it, as runc's shim answers State only after its Create (one lock). Answered
   * NotFound meanwhile, containerd took the task for absent: `ctr c rm` during a slow Create
   * removed the container and left its task behind, unknown to containerd (red team).
   */
  async createSettled(ns: string, id: string): Promise<void> {
    // (while it is `creating`, what `settling` holds is that Create: settleFirst)
    if (this.creating.has(key(ns, id))) await this.settling.get(key(ns, id));
  }

  /** A Delete came for `k` while it was being created: the Create stops at its next step (Cancelled). */
  private checkNotDeleted(k: string): void {
    if (this.deletedDuringCreate.has(k)) throw new Cancelled(`container ${k.split('/').slice(1).join('/')} was deleted while it was being created`);
  }

  /** `run`, which a Delete of container `k` waits for (this.settling) unless another is already waited for. */
  private settleFirst<T>(k: string, run: Promise<T>): Promise<T> {
    if (!this.settling.has(k)) {
      const settled: Promise<void> = run.then(() => undefined, () => undefined).finally(() => { if (this.settling.get(k) === settled) this.settling.delete(k); });
      this.settling.set(k, settled);
    }
    return run;
  }

  private async createOne(ns: string, id: string, bundle: string, rootfs: RootfsMount[], io: StdioRequest, opts: CreateOptions): Promise<ContainerState> {
    const t0 = performance.now();
    if (!ID_RE.test(id)) throw new InvalidArgument(`invalid container id ${JSON.stringify(id)}: use letters, digits, '_', '.', '-' (max 128)`);
    if (this.containers.has(key(ns, id)) || this.creating.has(key(ns, id))) throw new AlreadyExists(`container ${id} already exists in namespace ${ns}`);
    if (!isAbsolute(bundle)) throw new InvalidArgument(`bundle must be an absolute path, got ${JSON.stringify(bundle)}`);
    const spec = readSpec(bundle);
    const stdio: Stdio = { stdin: io.stdin, stdout: io.stdout, stderr: io.stderr, terminal: '' };
    const wantsTerminal = io.terminal || spec.process?.terminal === true;
    if (io.terminal !== (spec.process?.terminal === true)) {
      throw new InvalidArgument(`terminal=${io.terminal} in the request but process.terminal=${spec.process?.terminal === true} in config.json`);
    }
    // Reserve the id before the first await so a concurrent Create of the same id fails.
    this.creating.add(key(ns, id));
    removeTombstone(this.o.runDir, ns, id); // a new container of this id: an old Delete's answer is void
    const undo: (() => void)[] = [];
    const ph: Record<string, number> = {};
    const lap = (name: string): void => { ph[name] = Math.round((performance.now() - t0) * 100) / 100; };
    try {
      // a crashed Create of this id cleaned up first: its cgroup parents are gone before
      // missingAncestors() looks (else this one would not know it made them, and leave them)
      const cutShort = this.cutShort.get(key(ns, id));
      if (cutShort) await cutShort;
      const rootPath = this.prepareRootfs(bundle, spec, rootfs, undo);
      lap('rootfs');
      const cgroup = cgroupHandle(this.o.layout, spec.linux?.cgroupsPath || `/${ns}/${id}`, { parent: this.o.cgroupParent ?? '/spore', named: true });
      this.refuseSporesCgroup(cgroup, spec.linux?.cgroupsPath ?? '');
      this.refuseNestedCgroup(cgroup, spec.linux?.cgroupsPath ?? '', ns, id);
      // the ancestors it makes, and those another container made and shares with it: the
      // last of them to go removes them (runc leaves them; a kubelet's slices are its own)
      const madeParents = [...new Set([...missingAncestors(cgroup), ...this.sharedMadeParents(cgroup, key(ns, id))])].sort((a, b) => b.length - a.length);
      // seen by a Create that starts meanwhile (refuseNestedCgroup, sharedMadeParents): a
      // container is in this.containers only once its Create ends
      this.cgroupsInCreate.set(key(ns, id), { path: cgroup.path, id, madeParents });
      const seccomp = seccompInSpec(spec.linux?.seccomp) ? compileSeccomp(spec.linux.seccomp) : null;
      lap('seccomp');
      // FIFO stdout/stderr through pipes spored copies from, as the runc shim's (createIO: the
      // process never holds the client's FIFO, a host file it could chmod or read back)
      const pio = await ProcessIO.open(io, { id, namespace: ns, cwd: bundle, relay: true, custody: this.custodyOf(ns, id, '') });
      undo.push(() => { if (this.leavingForNext) pio.abandon(); else void pio.close(0); });
      lap('io');
      const childStdio: Stdio = { ...pio.stdio };
      let console: Console | null = null;
      const ptyInside = wantsTerminal && ownsDevpts(spec);
      if (ptyInside) {
        childStdio.terminal = CONSOLE_INSIDE;
        const size = spec.process?.consoleSize;
        if (size) childStdio.consoleSize = { rows: size.height, cols: size.width };
      } else if (wantsTerminal) {
        console = await Console.open(childStdio.stdin, childStdio.stdout, spec.process?.consoleSize, this.custodyOf(ns, id, ''));
        undo.push(() => console?.close());
        childStdio.terminal = console.slave;
      }
      const plan = initPlan({
        id, bundle, spec, rootfs: rootPath, stdio: childStdio,
        cgroupProcs: procsFiles(cgroup),
        cgroupV1Dirs: this.o.layout.mode === 'v2' ? null : v1Dirs(cgroup),
        // (read only when a container mounts cgroup2 itself: pure v2, a cgroup mount in the spec)
        cgroup2Root: this.o.layout.mode === 'v2' && spec.mounts?.some((m) => m.type === 'cgroup') ? cgroup2RootOptions() : [],
        seccomp: seccomp ? { bpf: seccomp.bpf, flags: seccomp.flags } : null,
        isHostNetns,
      });
      plan.process.oomScoreAdj ??= defaultOomScoreAdj(this.o.runDir);
      checkLsm(plan.process, hostLsm());
      if (plan.process.caps.unknown) this.o.log.warn({ id, ns, capabilities: plan.process.caps.unknown }, 'ignoring unknown or unavailable capabilities (as runc does)');
      const hooks = parseHooks(spec.hooks);
      const runtimeHooks = hasHooks(hooks, 'prestart', 'createRuntime');
      // pipelined: the child sets up while we create its cgroup (plan.ts lateCgroupFits)...
      plan.lateCgroup = lateCgroupFits(plan, runtimeHooks, this.o.seed.has('late-cgroup-mount'));
      // ...and we join it ourselves, from the pid the seed reports at once, as soon as the
      // cgroup exists: the join (0.5-4 ms of writes; without favordynmods also a wait for an
      // RCU grace period, pools/cgroups.ts addProcessAsync) overlaps the child's mounts
      // instead of following them
      plan.joinedBySpored = plan.lateCgroup;
      lap('plan');
      let earlyPid = 0;
      let joinedPid = 0;
      let cgroupMade = false;
      let joining: Promise<void> | null = null;
      // (a second pid: the container shell it went to was not its own after all, and the seed
      // forked it; that child is joined too, or it would wait for the join a second before
      // making it itself)
      const joinEarly = (): void => {
        if (earlyPid <= 0 || earlyPid === joinedPid || !cgroupMade) return;
        const pid = earlyPid;
        joinedPid = pid;
        joining = (joining ?? Promise.resolve()).then(() => addProcessAsync(plan.cgroupProcs, pid)).then(() => lap('joined'), (e: unknown) => {
          // the child joins itself after waiting (container-init.ts, awaitJoin) and meets the error there
          this.o.log.debug({ id, ns, hostPid: pid, err: (e as Error).message }, 'early cgroup join failed');
        });
      };
      // prestart and createRuntime, while the child waits before pivot_root; a failure aborts
      // it and is what Create answers
      let hookError: unknown = null;
      let hooksRun: Promise<void> | null = null;
      const state = ociStateBase(id, bundle, spec.annotations);
      // what a crash before this Create ends leaves for the next spored (or the shim's delete,
      // cut-short.ts): the cgroup it is about to make, the parents, its poststop hooks
      writeCreating(this.o.runDir, {
        namespace: ns, id, bundle, hooks: { poststart: [], poststop: hooks.poststop ?? [], state },
        cgroup: { handle: cgroup, made: !existsSync(Object.values(cgroup.dirs)[0] ?? '/'), madeParents },
      });
      undo.push(() => removeCreating(this.o.runDir, ns, id));
      const onHooks = (pid: number): void => {
        const t = performance.now();
        hooksRun = this.runtimeHooks(key(ns, id), hooks, { ...state, status: 'creating', pid }, bundle).then((e) => {
          hookError = e;
          ph.hooksMs = Math.round((performance.now() - t) * 100) / 100;
        });
      };
      const events = { ...(plan.lateCgroup ? { pid: (pid: number) => { earlyPid = pid; joinEarly(); } } : {}), ...(runtimeHooks ? { hooks: onHooks } : {}) };
      const spawning = plan.lateCgroup ? this.o.seed.spawn(key(ns, id), plan, events) : null;
      spawning?.catch(() => undefined);
      let cg: { warnings: string[] };
      try {
        cg = createCgroup(cgroup, withDefaultDeviceRules(spec));
      } catch (e) {
        // the child, set up meanwhile, waits for a join that will not come: abort it now
        // rather than after its set-up (it would wait out awaitJoin's second first)
        if (spawning) await Promise.all([this.o.seed.abort(key(ns, id)).catch(() => undefined), spawning.catch(() => undefined)]);
        // what it made before the refused value (a kernel that says EINVAL to a cpu period) goes too
        try { destroyCgroup(cgroup); } catch (err) { this.o.log.warn({ id, ns, err: (err as Error).message }, 'cleanup of a cgroup whose creation failed'); }
        removeEmptyParents(madeParents);
        throw e;
      }
      undo.push(() => { destroyCgroup(cgroup); removeEmptyParents(madeParents); });
      for (const w of cg.warnings) this.o.log.warn({ id, ns }, w);
      cgroupMade = true;
      joinEarly();
      lap('cgroup');
      // (a join still in flight settles before anything removes the cgroup)
      const spawned = await (spawning ?? this.o.seed.spawn(key(ns, id), plan, events)).catch(async (e: unknown) => {
        await joining;
        await hooksRun;
        throw hookError ?? runtimeFailure(e);
      });
      await joining;
      lap('spawn');
      // a direct spawn's start and status pipes are this process's own (seed-client.ts): held
      // below, closed if this Create fails first
      let ownPipes = spawned.own;
      undo.push(() => { if (ownPipes) { sys.close(ownPipes.start); sys.close(ownPipes.status); ownPipes = undefined; } });
      if (this.deletedDuringCreate.has(key(ns, id))) {
        await this.o.seed.abort(key(ns, id)).catch(() => undefined);
        this.checkNotDeleted(key(ns, id));
      }
      // set up and waiting for Start: a failure from here on aborts it
      undo.push(() => void this.o.seed.abort(key(ns, id)).catch(() => undefined));
      await holdForTest(this.o.log, key(ns, id));
      if (ptyInside) {
        console = await Console.ofMaster(takeConsole(spawned), childStdio.stdin, childStdio.stdout, this.custodyOf(ns, id, ''));
        undo.push(() => console?.close());
      }
      for (const w of spawned.warnings) this.o.log.warn({ id, ns }, w);
      // the client's FIFOs, opened while it set up (ProcessIO.open)
      await pio.ready();
      pio.childHasStdio();
      this.releaseHeldStdio(key(ns, id));
      // the keeper has what carries its stdio before Create is answered (a kill -9 right
      // after an answered Create lost a file:// log's output: its relay was never parked)
      // and what lets it outlive the root seed until Start (held-start.ts). spored keeps its
      // own copies too and starts it itself, when the seed lets it ('started-by-spored');
      // without them (an older seed, the seed gone meanwhile) it waits on the seed alone
      const initCustody = this.custodyOf(ns, id, '');
      const startOwn = this.o.seed.has('started-by-spored');
      let startParked = false;
      let ownStart: HeldStart | null = null;
      const own = ownPipes;
      ownPipes = undefined;
      const holding = own && (initCustody || startOwn) ? HeldStart.own(own, initCustody)
        : spawned.pipes && (initCustody || startOwn) ? HeldStart.take(this.o.seed.pid, spawned.pipes, initCustody) : undefined;
      if (own && !holding) { sys.close(own.start); sys.close(own.status); }
      const pipesParked = holding
        ? holding.then((h) => {
          // (spored's own copies, or, for a seed that starts it itself, the keeper's alone)
          if (startOwn) ownStart = h;
          else { h.dropOwn(); startParked = initCustody !== null; }
        }, (e: unknown) => {
          // the seed died since it answered (its child ended with it, as an abort): the next
          // spored makes this container, as any Create the seed's death cuts short
          if (initCustody && !processRunning(this.o.seed.pid)) {
            this.seedLostUnderKeeper();
            throw new LeftForNext(`the root seed died during this Create; the next spored creates the container (${(e as Error).message})`);
          }
          this.o.log.warn({ id, ns, err: (e as Error).message }, 'the start pipe could not be taken from the root seed; the container waits on the seed alone until Start');
        })
        : undefined;
      undo.push(() => {
        const h = ownStart as HeldStart | null;
        if (this.leavingForNext) h?.dropOwn();
        else if (h) h.release();
        else if (initCustody && startParked) releaseSetupPipes(initCustody);
      });
      await Promise.all([pio.parked(), console?.parked, pipesParked]);
      const c: ContainerState = {
        id, namespace: ns, bundle, rootfs: rootPath, rootfsMounted: rootfs.length > 0, cgroup, madeParents, pod: null,
        namespaces: plan.namespaces,
        init: { execId: '', pid: spawned.pid, pidStartTime: processStartTime(spawned.pid), status: 'created', exitStatus: 0, exitedAt: null, stdio, terminal: wantsTerminal, spec: null },
        execs: new Map(), createdAt: new Date(), timings: { ...ph, seed: spawned.timings, createMs: performance.now() - t0 },
        hooks: hasHooks(hooks, 'poststart', 'poststop') ? { poststart: hooks.poststart ?? [], poststop: hooks.poststop ?? [], state } : null,
        ...(ownsPidNs(plan.namespaces) ? { pidNs: pidNsOf(spawned.pid) ?? undefined } : {}),
      };
      // its .creating file is this Create's to remove: a shim's delete that found no keeper
      // (it died, this spored is on its way out) took it first and is undoing it
      const claimed = claimCreating(this.o.runDir, ns, id);
      if (!claimed) throw new Unavailable('the keeper is gone and the shim\'s delete undid this Create');
      // (the taken file goes when this Create fails from here on, last, once what it names is
      // undone: helper-70)
      undo.unshift(claimed);
      if (console) this.consoles.set(c.init, console);
      if (startParked) this.parkedStarts.add(c.init);
      if (ownStart) this.heldStarts.set(c.init, ownStart);
      this.ios.set(c.init, pio);
      this.containers.set(key(ns, id), c);
      this.byPid.set(spawned.pid, { c, p: c.init });
      try {
        // A pod member hands the cgroup dirs it made (the pod's cgroup parent) to its pod.
        c.pod = this.pods.join(ns, id, spec, madeParents, opts.configPath ?? null);
        if (c.pod) c.madeParents = [];
        writeRecord(this.o.runDir, this.recordOf(c));
      } catch (e) {
        // not recorded (a full run dir): nothing of it stays known, and the undo below removes the rest
        this.containers.delete(key(ns, id));
        this.byPid.delete(spawned.pid);
        this.consoles.delete(c.init);
        this.ios.delete(c.init);
        this.heldStarts.delete(c.init);
        this.parkedStarts.delete(c.init);
        if (c.pod) removeEmptyParents(this.pods.leave(ns, id, c.pod));
        throw e;
      }
      this.creating.delete(key(ns, id));
      this.cgroupsInCreate.delete(key(ns, id));
      claimed(); // (the record has its hooks now)
      // recorded (a restart adopts its relays): the client's stdin may flow now
      pio.begin();
      this.o.events.created(c);
      this.claimExit(spawned.pid, spawned.exitsBefore); // after TaskCreate, as its exit must be
      return c;
    } catch (e) {
      this.creating.delete(key(ns, id));
      this.cgroupsInCreate.delete(key(ns, id));
      for (const u of undo.reverse()) {
        try { u(); } catch (err) { this.o.log.warn({ id, ns, err: (err as Error).message }, 'cleanup after failed create'); }
      }
      // runc destroys a container whose create failed, poststop hooks included
      const poststop = failedCreateHooks(spec);
      if (poststop.length > 0) for (const w of await runHooksAll('poststop', poststop, { ...ociStateBase(id, bundle, spec.annotations), status: 'stopped' }, bundle, this.o.onHook)) this.o.log.warn({ id, ns }, w);
      throw e;
    }
  }

  private prepareRootfs(bundle: string, spec: Spec, mounts: RootfsMount[], undo: (() => void)[]): string {
    if (mounts.length > 0) {
      const target = join(bundle, 'rootfs');
      for (const [i, m] of mounts.entries()) {
        const o = parseMountOptions(m.options);
        const bind = m.type === 'bind' || (o.flags & sys.MS.BIND) !== 0;
        try {
          sys.mount(m.source, target, bind ? null : m.type, o.flags | (bind ? sys.MS.BIND : 0), o.data.join(',') || null);
        } catch (e) {
          throw new InvalidArgument(`rootfs[${i}] (${m.type} ${m.source}): mount failed: ${(e as Error).message}`);
        }
        undo.push(() => sys.umount2(target, sys.MNT_DETACH));
      }
      return target;
    }
    const root = spec.root?.path;
    if (!root) throw new InvalidArgument('config.json has no root.path and the request carries no rootfs mounts');
    const path = isAbsolute(root) ? root : join(bundle, root);
    let ok = false;
    try { ok = statSync(path).isDirectory(); } catch { ok = false; }
    if (!ok) throw new NotFound(`rootfs ${path} does not exist or is not a directory`);
    return path;
  }

  private recordOf(c: ContainerState): TaskRecord {
    return {
      v: TASK_RECORD_VERSION, id: c.id, namespace: c.namespace, bundle: c.bundle, pid: c.init.pid, pidStartTime: c.init.pidStartTime ?? null,
      rootfs: c.rootfs, rootfsMounted: c.rootfsMounted, cgroup: c.cgroup, createdAt: c.createdAt.toISOString(),
      madeParents: c.madeParents, pod: c.pod, namespaces: c.namespaces, ...(c.hooks ? { hooks: c.hooks } : {}), ...(c.pidNs ? { pidNs: c.pidNs } : {}),
      init: this.procRecordOf(c.init), execs: [...c.execs.values()].map((e) => this.procRecordOf(e)),
    };
  }

  private procRecordOf(p: ProcState): ProcRecord {
    return {
      execId: p.execId, pid: p.pid, pidStartTime: p.pidStartTime ?? null, status: p.status, exitStatus: p.exitStatus,
      exitedAt: p.exitedAt ? p.exitedAt.toISOString() : null, stdio: p.stdio, terminal: p.terminal, spec: p.spec,
      ...(p.startFailed ? { startFailed: true } : {}),
      ...(p.exitUnreported ? { exitUnreported: true } : {}),
      io: { console: this.consoles.has(p), relays: this.ios.get(p)?.relayed ?? [] },
    };
  }

  /**
   * Write the container's record again (after any change a restarted spored must know). `strict`: the RPC that made the change fails when the record
   * cannot be written (a full run dir), and the caller undoes the change: answered OK, an exec
   * or a pause was lost at the next crash (the exec's processes orphaned, a frozen container
   * restored as running: helper-56). Otherwise a failure is logged.
   */
  private persist(c: ContainerState, strict = false): void {
    if (!this.containers.has(key(c.namespace, c.id))) return; // deleted meanwhile
    try {
      writeRecord(this.o.runDir, this.recordOf(c));
    } catch (e) {
      this.o.log.error({ id: c.id, ns: c.namespace, err: (e as Error).message }, 'cannot write the task record; a restart would not know this change');
      if (strict) throw new ResourceExhausted(`cannot write the task record in the run dir (${(e as Error).message}); the change was undone: free space there and try again`);
    }
  }

  private custodyOf(ns: string, id: string, execId: string): ProcessCustody | null {
    return this.o.custody && this.o.custody !== NO_CUSTODY ? new ProcessCustody(this.o.custody, ns, id, execId) : null;
  }

  // --- Start ------------------------------------------------------------------------
  /**
   * Start a container's init or an exec (Task Start). A Delete of the container waits for an
   * init's Start in flight (its poststart hooks), as runc's shim's lock makes it.
   */
  async start(ns: string, id: string, execId: string): Promise<ProcState> {
    const run = this.startOne(ns, id, execId);
    return execId ? run : this.settleFirst(key(ns, id), run);
  }

  private async startOne(ns: string, id: string, execId: string): Promise<ProcState> {
    const { p } = this.proc(ns, id, execId);
    // One call at a time on an exec, as the runc shim's process lock makes it: a second Start
    // or a Delete waits for a Start in flight, then finds the exec running (refused) or not.
    // (A Delete let through ran while the Start spawned it: the exec then ran on untracked,
    // its exit never reported; red team, helper-70.) An init's calls settle in turn already.
    const prior = execId ? this.execStarts.get(p) : undefined;
    if (prior) { await prior; return this.startOne(ns, id, execId); }
    if (!execId) return this.startLocked(ns, id, execId);
    let settle = (): void => undefined;
    this.execStarts.set(p, new Promise<void>((r) => { settle = r; }));
    try {
      return await this.startLocked(ns, id, execId);
    } finally {
      this.execStarts.delete(p);
      settle();
    }
  }

  private async startLocked(ns: string, id: string, execId: string): Promise<ProcState> {
    const { c, p } = this.proc(ns, id, execId);
    const why = execId ? refusal(EXEC_OPS, p.status as ExecStatus, 'start') : refusal(INIT_OPS, p.status, 'start');
    if (why) throw runcError(why);
    // As runc's shim: the start event goes out before the process's exit event.
    this.starting.set(p, null);
    try {
      if (!execId) {
        await this.settleOnFailure(p, this.startInit(c, p));
        this.consoles.get(p)?.attached();
        if (c.hooks && c.hooks.poststart.length > 0) await this.poststart(c, p);
      } else {
        await this.startExec(c, p, ns, id, execId);
      }
    } catch (e) {
      this.afterStart(p);
      if (execId && p.status === 'created' && !(e instanceof LeftForNext)) {
        p.startFailed = true;
        this.releaseWaiters(p);
      }
      throw runtimeFailure(e);
    }
    if (!p.exitedAt) this.moveTo(p, 'running');
    // recorded right after the answer (a file's creation in the run dir's journal is 0.5 ms
    // of Start on ext4): a crash in between leaves it recorded created, which a restore reads
    // as running (procFromRecord: its seed no longer holds it, its start pipe has no reader)
    setImmediate(() => { if (this.containers.get(key(ns, id)) === c) this.persist(c); });
    this.o.events.started(c, p);
    this.afterStart(p);
    return p;
  }

  /**
   * An init's Start: through its pipes, which spored holds (held-start.ts: taken from the
   * seed at Create, or back from the keeper after the seed died), the seed told first; else
   * through the root seed that set it up. The keeper lets go of them after.
   */
  private async startInit(c: ContainerState, p: ProcState): Promise<number> {
    const held = this.heldStarts.get(p);
    if (TEST_HOLD_START_MS > 0) {
      this.o.log.warn({ id: c.id, ns: c.namespace, ms: TEST_HOLD_START_MS }, 'test hold: an init\'s Start, before it is carried out');
      await new Promise((r) => setTimeout(r, TEST_HOLD_START_MS));
    }
    let leftForNext = false;
    try {
      if (!held) {
        try {
          return await this.o.seed.startProcess(key(c.namespace, c.id), { atExec: !(c.hooks && c.hooks.poststart.length > 0) });
        } catch (e) {
          // the seed died: one whose pipes the keeper holds still waits for the next spored
          if (this.leavingForNext && this.parkedStarts.has(p)) {
            leftForNext = true;
            throw new LeftForNext(`the root seed died during this Start; the next spored starts the container (${(e as Error).message})`);
          }
          throw e;
        }
      }
      // answered at the execve's start when no poststart hook waits for the program
      return await this.beginHeld(c, p, held, !(c.hooks && c.hooks.poststart.length > 0));
    } finally {
      if (!leftForNext) this.releaseStart(c, p);
    }
  }

  /**
   * Start `p` (an init or an exec) through the pipes spored holds (held-start.ts), the seed
   * told first; resolves with its pid. `atExec`: at its exec line (see HeldStart.begin).
   */
  private async beginHeld(c: ContainerState, p: ProcState, held: HeldStart, atExec: boolean): Promise<number> {
    const what = p.execId ? `exec ${p.execId}'s` : 'container\'s';
    const where = { id: c.id, ns: c.namespace, ...(p.execId ? { execId: p.execId } : {}), hostPid: p.pid };
    // the seed lets go of it first (a new seed never knew it): were spored to die between
    // the byte and this, the seed would list it as waiting for a Start that happened
    this.o.seed.started(key(c.namespace, c.id, p.execId));
    let failure: string | null;
    try {
      failure = await held.begin({ atExec, late: (f) => this.o.log.warn(where, `the ${what} program did not start: ${f}`) });
    } catch (e) {
      // nobody reads the start pipe: an earlier spored started it (and died before it
      // recorded so), or it is gone
      if (this.alive(p)) return p.pid;
      throw new SporeError(Code.UNKNOWN, `the ${what} process (pid ${p.pid}) is gone; it cannot start (${(e as Error).message})`, { cause: e });
    }
    if (failure) this.o.log.warn(where, `the ${what} program did not start: ${failure}`);
    return p.pid;
  }

  /** The keeper lets go of a created init's or exec's pipes (it started, or is being deleted). */
  private releaseStart(c: ContainerState, p: ProcState): void {
    const held = this.heldStarts.get(p);
    this.heldStarts.delete(p);
    this.parkedStarts.delete(p);
    if (held) held.release();
    else {
      const custody = this.custodyOf(c.namespace, c.id, p.execId);
      if (custody) releaseSetupPipes(custody);
    }
  }

  /**
   * prestart then createRuntime for sandbox `k`, paused for them (the seed's `hooks` event),
   * then resume it; on a failure abort it instead. Resolves with the failure (null: none), which
   * is what Create answers.
   */
  private async runtimeHooks(k: string, hooks: Hooks, state: OciState, bundle: string): Promise<unknown> {
    let failure: unknown = null;
    try {
      for (const kind of ['prestart', 'createRuntime'] as const) await runHooks(kind, hooks[kind] ?? [], state, bundle, this.o.onHook);
      this.checkNotDeleted(k);
      try {
        await this.o.seed.resume(k);
        return null;
      } catch (e) {
        // (the seed no longer has it paused: it died meanwhile, killed by a hook or otherwise)
        failure = new HookFailed(`the container's init (pid ${state.pid ?? '?'}) ended while its prestart and createRuntime hooks ran: ${(e as Error).message}`);
      }
    } catch (e) {
      failure = e;
    }
    await this.o.seed.abort(k).catch(() => undefined);
    return failure;
  }

  /**
   * The poststart hooks, once the program runs (runc 1.2 and the runtime spec; runc 1.1 ran
   * them during Create). A failure kills the container and fails Start, as runc's.
   */
  private async poststart(c: ContainerState, p: ProcState): Promise<void> {
    const hooks = c.hooks;
    if (!hooks) return;
    // an init that already ended (a short program) is reported stopped, without its pid, as
    // runc's state would: that pid is reaped and may be another process's by now
    const state: OciState = p.exitedAt ? { ...hooks.state, status: 'stopped' } : { ...hooks.state, status: 'running', pid: p.pid };
    try {
      await runHooks('poststart', hooks.poststart, state, c.bundle, this.o.onHook);
    } catch (e) {
      // only if it is still this container: a Delete may have run meanwhile, and a new
      // container of the same id (or cgroupsPath) must not be killed for this one's hook
      if (this.containers.get(key(c.namespace, c.id)) === c && c.init.status !== 'stopped') {
        this.o.log.warn({ id: c.id, ns: c.namespace, err: (e as Error).message }, 'poststart hook failed; killing the container');
        // its init (its pid namespace goes with it), or, without one of its own, its cgroup (runc's signal)
        if (ownsPidNs(c.namespaces)) { try { sys.kill(c.init.pid, 9); } catch { /* gone */ } } else killAll(c.cgroup, 9);
      }
      throw e;
    }
  }

  private afterStart(p: ProcState): void {
    const exited = this.starting.get(p);
    this.starting.delete(p);
    exited?.();
  }

  private async startExec(c: ContainerState, p: ProcState, ns: string, id: string, execId: string): Promise<void> {
    const why = refusal(INIT_OPS, c.init.status, 'execStart');
    if (why) throw c.init.status === 'paused' ? runcError(why) : new FailedPrecondition(`container ${id} is ${c.init.status}; exec needs a running container`);
    if (p.pid > 0) {
      // Set up by an earlier spored that died before its Start went through (this is the
      // replayed Start): the seed still holds it, ready; its relays and terminal are in
      // custody. Start it, rather than set up a second one.
      const custody = this.custodyOf(ns, id, execId);
      if (custody) {
        this.ios.set(p, ProcessIO.adopt(['stdin', 'stdout', 'stderr'], custody));
        // its terminal: from custody, or (the earlier spored died before it took it) from the sandbox itself
        const con = p.terminal ? Console.adopt(custody) ?? await Console.takeFromProcess(p.pid, p.stdio.stdin, p.stdio.stdout, custody) : null;
        if (con) { this.consoles.set(p, con); await con.parked; }
      }
      this.byPid.set(p.pid, { c, p });
      // through its pipes, back from the keeper (restore: its seed may be a new one that never knew it)
      const held = this.heldStarts.get(p);
      try {
        await this.settleOnFailure(p, held ? this.beginHeld(c, p, held, true) : this.o.seed.startProcess(key(ns, id, execId), { atExec: true }));
      } finally {
        if (held || this.parkedStarts.has(p)) this.releaseStart(c, p);
      }
      this.consoles.get(p)?.attached();
      return;
    }
    const spec = p.spec;
    let startSent = false;
    const t0 = performance.now();
    const ph: Record<string, number> = {};
    const lap = (name: string): void => { ph[name] = Math.round((performance.now() - t0) * 100) / 100; };
    const pio = await ProcessIO.open({ ...p.stdio, terminal: p.terminal }, { id: execId, namespace: ns, cwd: c.bundle, relay: true, custody: this.custodyOf(ns, id, execId) });
    await pio.ready();
    lap('io');
    this.ios.set(p, pio);
    // CloseIO came while the stdio was being opened (ctr sends it as soon as its input ends)
    if (this.stdinClosedEarly.delete(p)) pio.closeStdin();
    const childStdio: Stdio = { ...pio.stdio };
    let console: Console | null = null;
    let containerSpec: Spec;
    try { containerSpec = readSpec(c.bundle); } catch (e) { this.ios.delete(p); void pio.close(0); throw e; }
    const ptyInside = p.terminal && ownsDevpts(containerSpec);
    if (ptyInside) {
      childStdio.terminal = CONSOLE_INSIDE;
      if (spec?.consoleSize) childStdio.consoleSize = { rows: spec.consoleSize.height, cols: spec.consoleSize.width };
    } else if (p.terminal) {
      console = await Console.open(childStdio.stdin, childStdio.stdout, spec?.consoleSize, this.custodyOf(ns, id, execId));
      childStdio.terminal = console.slave;
    }
    try {
      const seccompProfile = containerSpec.linux?.seccomp;
      const seccomp = seccompInSpec(seccompProfile) ? compileSeccomp(seccompProfile) : null;
      const plan = execPlan({
        id, execId, targetPid: c.init.pid, initNamespaces: c.namespaces, process: spec ?? undefined, stdio: childStdio,
        cgroupProcs: procsFiles(c.cgroup), seccomp: seccomp ? { bpf: seccomp.bpf, flags: seccomp.flags } : null,
      });
      plan.process.oomScoreAdj ??= defaultOomScoreAdj(this.o.runDir);
      checkLsm(plan.process, hostLsm(), 'exec process');
      if (plan.process.caps.unknown) this.o.log.warn({ id, ns, execId, capabilities: plan.process.caps.unknown }, 'ignoring unknown or unavailable capabilities (as runc does)');
      const k = key(ns, id, execId);
      lap('plan');
      const spawned = await this.o.seed.spawn(k, plan);
      lap('spawn');
      await holdForTest(this.o.log, k);
      if (ptyInside) {
        try {
          console = await Console.ofMaster(takeConsole(spawned), childStdio.stdin, childStdio.stdout, this.custodyOf(ns, id, execId));
        } catch (e) {
          await this.o.seed.abort(k).catch(() => undefined);
          throw e;
        }
      }
      pio.childHasStdio();
      this.releaseHeldStdio(k);
      p.pid = spawned.pid;
      p.pidStartTime = processStartTime(spawned.pid);
      this.byPid.set(p.pid, { c, p });
      this.claimExit(p.pid, spawned.exitsBefore); // its exit event waits for the start event (starting)
      if (console) this.consoles.set(p, console);
      // its start and status pipes, taken from the seed and parked with the keeper as an
      // init's are (held-start.ts): spored starts it itself, and a Start the root seed's
      // death cuts short is carried out by the next spored (without them: through the seed)
      const holding = spawned.pipes && this.o.seed.has('started-by-spored')
        ? HeldStart.take(this.o.seed.pid, spawned.pipes, this.custodyOf(ns, id, execId)).catch((e: unknown) => {
          this.o.log.warn({ id, ns, execId, err: (e as Error).message }, 'the exec\'s start pipe could not be taken from the root seed; it starts through the seed');
          return null;
        })
        : null;
      const [held] = await Promise.all([holding, pio.parked(), console?.parked]);
      if (held) this.heldStarts.set(p, held);
      // (its set-up ended with the seed: the next spored sets it up again, below)
      else if (holding && !processRunning(this.o.seed.pid)) throw new Error('the root seed died before its pipes were taken');
      lap('parked');
      // Recorded with its pid and relays before it starts: a spored killed once the seed had
      // started it left a record without the pid, and the replayed Start set up and ran the
      // exec a second time (the first copy took the first stdin lines with it). Now the
      // next spored knows it: running (a replayed Start is answered), or still held by the
      // seed (started then), its relays adopted either way. Not recorded: not started.
      try {
        this.persist(c, true);
      } catch (e) {
        await this.o.seed.abort(k).catch(() => undefined);
        throw e;
      }
      lap('recorded');
      // the keeper holds its relays, a replayed Start adopts them: the client's stdin may flow now
      pio.begin();
      if (TEST_HOLD_START_MS > 0) {
        this.o.log.warn({ id, ns, execId, ms: TEST_HOLD_START_MS }, 'test hold: an exec\'s Start, before it is carried out');
        await new Promise((r) => setTimeout(r, TEST_HOLD_START_MS));
      }
      // (answered at its exec line, once it has its start byte, as an init's: an exec has no poststart hooks)
      startSent = true;
      try {
        await this.settleOnFailure(p, held ? this.beginHeld(c, p, held, true) : this.o.seed.startProcess(k, { atExec: true }));
      } finally {
        if (held) this.releaseStart(c, p);
      }
      lap('started');
      this.o.log.info({ id, ns, execId, hostPid: p.pid, phases: { ...ph, seed: spawned.timings } }, 'exec started');
      await holdForTest(this.o.log, k, 'started');
    } catch (e) {
      // (a set-up whose pipes spored took: the keeper lets go too, it sees EOF and ends)
      if (this.heldStarts.has(p)) this.releaseStart(c, p);
      this.consoles.delete(p);
      console?.close();
      this.ios.delete(p);
      // The root seed died before this exec was started (its set-up ended with it, or its
      // pipes could not be taken): under a keeper the Start is left for the next spored,
      // which sets the exec up again (the replayed Start), as a Create cut short by the
      // seed's death; its stdio stays with the keeper for that replay.
      if (!startSent && this.custodyOf(ns, id, execId) && !processRunning(this.o.seed.pid)) {
        this.seedLostUnderKeeper();
        if (p.pid) {
          this.byPid.delete(p.pid);
          p.pid = 0;
          p.pidStartTime = null;
          try { this.persist(c, true); } catch { /* the next spored finds it recorded with its old pid, gone: a failed Start */ }
        }
        pio.abandon();
        throw new LeftForNext(`the root seed died before this exec started; the next spored carries it out (${(e as Error).message})`);
      }
      // a process that failed to exec says why on its stderr; the relays end (and the keeper
      // lets go of the client's FIFOs) before the answer: a spored stopping right after (its
      // root seed died meanwhile) left them held, and ctr waited for their EOF for ever (helper-56)
      await pio.close(2000);
      throw e;
    }
    console?.attached();
  }

  /**
   * A failed start means the sandbox process is exiting. Reply only once its exit is
   * recorded, so the client's next State already says STOPPED (containerd refuses to
   * delete a task it still sees as CREATED).
   */
  private async settleOnFailure(p: ProcState, op: Promise<unknown>): Promise<void> {
    try {
      await op;
    } catch (e) {
      // (left for the next spored: the process waits on, it does not end)
      if (p.status !== 'stopped' && p.pid && !(e instanceof LeftForNext)) {
        const done = new Promise<void>((resolve) => {
          const list = this.waiters.get(p) ?? [];
          list.push(resolve);
          this.waiters.set(p, list);
        });
        await Promise.race([done, new Promise((r) => setTimeout(r, 2000))]);
      }
      throw e;
    }
  }

  // --- Exec (register only; the process is created at Start) ------------------------
  exec(ns: string, id: string, execId: string, processJson: Uint8Array, io: StdioRequest): void {
    const c = this.get(ns, id);
    if (!execId || !ID_RE.test(execId)) throw new InvalidArgument(`invalid exec id ${JSON.stringify(execId)}`);
    if (c.execs.has(execId)) throw new AlreadyExists(`exec ${execId} already exists in container ${id}`);
    // runc's shim refuses at once, by the init's state (pkg/process/init_state.go)
    const why = refusal(INIT_OPS, c.init.status, 'exec');
    if (why) throw runcError(why);
    let spec: Process;
    try {
      spec = JSON.parse(Buffer.from(processJson).toString('utf8')) as Process;
    } catch (e) {
      throw new InvalidArgument(`exec spec is not valid JSON (OCI Process expected): ${(e as Error).message}`);
    }
    if (!spec || !Array.isArray(spec.args) || spec.args.length === 0) throw new InvalidArgument('exec spec: args must be a non-empty array');
    if (io.terminal !== (spec.terminal === true)) throw new InvalidArgument(`exec terminal=${io.terminal} but process.terminal=${spec.terminal === true}`);
    const stdio: Stdio = { stdin: io.stdin, stdout: io.stdout, stderr: io.stderr, terminal: '' };
    c.execs.set(execId, { execId, pid: 0, status: 'created', exitStatus: 0, exitedAt: null, stdio, terminal: io.terminal, spec });
    try {
      this.persist(c, true);
    } catch (e) {
      c.execs.delete(execId);
      throw e;
    }
    this.o.events.execAdded(c, execId);
  }

  // --- Kill / Wait / Delete ---------------------------------------------------------
  kill(ns: string, id: string, execId: string, signal: number, all: boolean): void {
    const { c, p } = this.proc(ns, id, execId);
    if (signal < 0 || signal > 64) throw new InvalidArgument(`invalid signal ${signal}`);
    if (all && !execId) {
      // runc's Signal(all): nothing to do for a stopped container whose cgroup is empty (not
      // an error); otherwise every process in the cgroup, and a paused task is thawed for
      // SIGKILL, as for one process (runc 1.1.5 through containerd: SIGTERM leaves it paused,
      // SIGKILL ends it): `ctr task rm -f` of a paused task waited for ever
      if (p.status === 'stopped' && cgroupPids(c.cgroup).length === 0) return;
      killAll(c.cgroup, signal);
      if (p.status === 'created' && p.pid) this.signal(p.pid, signal);
      if (c.init.status === 'paused' && signal === 9) {
        thaw(c.cgroup);
        this.moveTo(c.init, 'running');
        this.persist(c);
      }
      return;
    }
    if (p.status === 'created' && p.pid === 0) throw new FailedPrecondition('process not created');
    if (p.status === 'stopped' || p.pid === 0) throw new NotFound('process already finished');
    if (c.init.status === 'paused' && signal === 9) {
      // A frozen process cannot act on the signal; the kernel delivers SIGKILL only after
      // thaw. Only for SIGKILL, as runc: any other signal waits, and the task stays paused.
      this.signal(p.pid, signal);
      thaw(c.cgroup);
      this.moveTo(c.init, 'running');
      this.persist(c);
      return;
    }
    this.signal(p.pid, signal);
  }

  private signal(pid: number, sig: number): void {
    try {
      sys.kill(pid, sig);
    } catch (e) {
      throw new NotFound(`process already finished (${(e as Error).message})`);
    }
  }

  async wait(ns: string, id: string, execId: string, signal?: AbortSignal): Promise<ProcState> {
    const { p } = this.proc(ns, id, execId);
    if ((p.status === 'stopped' && !this.flushing.has(p)) || p.startFailed) return p;
    await new Promise<void>((resolve, reject) => {
      const list = this.waiters.get(p) ?? [];
      list.push(resolve);
      this.waiters.set(p, list);
      signal?.addEventListener('abort', () => reject(signal.reason as Error), { once: true });
    });
    return p;
  }

  /**
   * Delete a process (Task Delete). Deletes of one container's init run one at a time, as
   * runc's shim's lock makes them: a second one, sent while the first runs (two `ctr task rm`,
   * a client's retry), ran poststop hooks, TaskDelete events and the pod's leave again.
   */
  async delete(ns: string, id: string, execId: string): Promise<ProcState> {
    if (execId) return this.deleteOne(ns, id, execId);
    const k = key(ns, id);
    const prev = this.deleting.get(k);
    const run = prev ? prev.then(() => this.deleteOne(ns, id, execId)) : this.deleteOne(ns, id, execId);
    const settled: Promise<void> = run.then(() => undefined, () => undefined);
    this.deleting.set(k, settled);
    void settled.finally(() => { if (this.deleting.get(k) === settled) this.deleting.delete(k); });
    return run;
  }

  private async deleteOne(ns: string, id: string, execId: string): Promise<ProcState> {
    if (!execId) {
      // a Create in flight ends Cancelled (runc's shim fails it too: no TaskCreate, nothing
      // left); a Start in flight (its poststart hooks) ends first
      if (this.creating.has(key(ns, id))) this.deletedDuringCreate.add(key(ns, id));
      await this.settling.get(key(ns, id));
    }
    const { c, p } = this.proc(ns, id, execId);
    if (execId) {
      const starting = this.execStarts.get(p);
      if (starting) { await starting; return this.deleteOne(ns, id, execId); }
      const why = refusal(EXEC_OPS, p.status as ExecStatus, 'delete');
      if (why) throw runcError(why);
      // set up and never started (its Start was cut short by a crash, and nobody replayed
      // it): its set-up process ends (it waits on the seed, or on pipes spored took)
      if (p.status === 'created' && p.pid > 0) {
        if (this.heldStarts.has(p) || this.parkedStarts.has(p)) {
          if (this.alive(p)) { try { sys.kill(p.pid, 9); } catch { /* gone */ } }
          this.releaseStart(c, p);
        } else await this.o.seed.abort(key(ns, id, execId)).catch(() => undefined);
      }
      c.execs.delete(execId);
      this.consoles.get(p)?.close();
      this.consoles.delete(p);
      if (p.pid) this.byPid.delete(p.pid);
      const pio = this.ios.get(p);
      this.ios.delete(p);
      this.persist(c);
      await pio?.close(2000);
      return p;
    }
    const why = refusal(INIT_OPS, p.status, 'delete');
    if (why) throw runcError(why);
    if (p.status === 'created') {
      // Never started: the child is parked waiting for Start. Kill it and collect it (one
      // whose pipes spored holds directly: its seed may be a new one that never knew it).
      if (this.heldStarts.has(p)) { if (this.alive(p)) { try { sys.kill(p.pid, 9); } catch { /* gone */ } } } else await this.o.seed.abort(key(ns, id));
    }
    // the pipes of an init that never started (also one killed before Start), and of execs so
    for (const q of [p, ...c.execs.values()]) if (this.parkedStarts.has(q) || this.heldStarts.has(q)) this.releaseStart(c, q);
    if (p.status === 'created') await this.wait(ns, id, '');
    for (const e of c.execs.values()) if (e.status !== 'stopped' && e.pid && this.alive(e)) { try { sys.kill(e.pid, 9); } catch { /* gone */ } }
    if (!ownsPidNs(c.namespaces)) killAll(c.cgroup, 9);
    this.consoles.get(p)?.close();
    this.consoles.delete(p);
    for (const e of c.execs.values()) { this.consoles.get(e)?.close(); this.consoles.delete(e); void this.ios.get(e)?.close(0); this.ios.delete(e); }
    const pio = this.ios.get(p);
    this.ios.delete(p);
    // The relays drain to EOF (event-loop turns) while the cgroup goes (plain syscalls); the
    // answer still waits for the last output, as the runc shim's Delete waits for its copies.
    const drained = pio?.close(2000);
    if (p.status === 'paused') { try { thaw(c.cgroup); } catch { /* being removed */ } }
    await this.removeCgroup(c);
    removeEmptyParents(c.madeParents);
    await drained;
    if (c.pod) removeEmptyParents(this.pods.leave(ns, id, c.pod));
    if (c.rootfsMounted) {
      try { sys.umount2(c.rootfs, sys.MNT_DETACH); } catch (e) { this.o.log.warn({ id, ns, err: (e as Error).message }, 'rootfs unmount'); }
    }
    if (c.hooks && c.hooks.poststop.length > 0) {
      // runc's destroy: after the processes, cgroup and mounts are gone; a failure is a warning
      for (const w of await runHooksAll('poststop', c.hooks.poststop, { ...c.hooks.state, status: 'stopped' }, c.bundle, this.o.onHook)) this.o.log.warn({ id, ns }, w);
    }
    try {
      writeTombstone(this.o.runDir, ns, id, { pid: p.pid, exitStatus: p.exitStatus, exitedAt: p.exitedAt ? p.exitedAt.toISOString() : null, deletedAt: new Date().toISOString() });
    } catch (e) { this.o.log.warn({ id, ns, err: (e as Error).message }, 'cannot keep the Delete\'s answer for a replay'); }
    removeRecord(this.o.runDir, ns, id);
    this.containers.delete(key(ns, id));
    this.byPid.delete(p.pid);
    for (const e of c.execs.values()) this.byPid.delete(e.pid);
    this.o.events.deleted(c, p);
    return p;
  }

  /**
   * Delete's end of the container's cgroup. Without a pid namespace of its own everything in
   * it was killed (runc: signalAllProcesses); with one, its processes died with its init and
   * may still be exiting: they are waited for (up to 2 s). Processes of another pid namespace
   * that remain belong to another container sharing the cgroupsPath (`ctr oci spec` gives
   * every container `/default`): the cgroup is left to them, as runc's failed rmdir leaves it.
   * Killing the whole cgroup, as Delete did, killed those containers too.
   */
  private async removeCgroup(c: ContainerState): Promise<void> {
    const own = ownsPidNs(c.namespaces);
    const until = Date.now() + 2000;
    for (;;) {
      let left: number[] = [];
      try { left = cgroupPids(c.cgroup).filter((pid) => pid !== process.pid); } catch { /* gone */ }
      // (an older record has no pidNs: everything left counts as the container's)
      const mine = own && c.pidNs ? left.filter((pid) => pidNsOf(pid) === c.pidNs) : left;
      if (left.length > 0 && mine.length === 0) {
        this.o.log.info({ id: c.id, ns: c.namespace, cgroup: c.cgroup.path, others: left.length }, 'cgroup shared with processes of another pid namespace: left to them');
        return;
      }
      if (left.length === 0 || Date.now() > until) break;
      if (!own) { try { killAll(c.cgroup, 9); } catch { /* gone */ } }
      await new Promise((r) => setTimeout(r, 10));
    }
    destroyCgroup(c.cgroup);
  }

  // --- Pause / Resume / Stats / Update / Pids ---------------------------------------
  pause(ns: string, id: string): void {
    this.setFrozen(ns, id, true);
  }

  resume(ns: string, id: string): void {
    this.setFrozen(ns, id, false);
  }

  /**
   * Pause (freeze) or resume (thaw) a container's cgroup, as runc's shim allows it by the
   * init's state. The new state is recorded before it is answered; a record that cannot be
   * written undoes the change and fails the call (persist, strict).
   */
  private setFrozen(ns: string, id: string, frozen: boolean): void {
    const c = this.get(ns, id);
    const why = refusal(INIT_OPS, c.init.status, frozen ? 'pause' : 'resume');
    if (why) throw runcError(why);
    const apply = (on: boolean): void => {
      if (on) freeze(c.cgroup); else thaw(c.cgroup);
      this.moveTo(c.init, on ? 'paused' : 'running');
    };
    apply(frozen);
    try {
      this.persist(c, true);
    } catch (e) {
      apply(!frozen);
      throw e;
    }
    this.o.events.paused(c, frozen);
  }

  stats(ns: string, id: string): CgroupStats {
    return cgroupStats(this.get(ns, id).cgroup);
  }

  update(ns: string, id: string, resources: LinuxResources): string[] {
    const c = this.get(ns, id);
    const why = refusal(INIT_OPS, c.init.status, 'update');
    if (why) throw runcError(why);
    return applyResources(c.cgroup, resources).warnings;
  }

  /** The container's processes (host pids, from its cgroup), each exec's with its exec id (Task Pids). */
  pids(ns: string, id: string): { pid: number; execId?: string }[] {
    const c = this.get(ns, id);
    const execOf = new Map<number, string>();
    for (const [execId, p] of c.execs) if (p.pid > 0) execOf.set(p.pid, execId);
    return cgroupPids(c.cgroup).map((pid) => {
      const execId = execOf.get(pid);
      return execId === undefined ? { pid } : { pid, execId };
    });
  }

  resizePty(ns: string, id: string, execId: string, width: number, height: number): void {
    const { p } = this.proc(ns, id, execId);
    const why = execId ? refusal(EXEC_OPS, p.status as ExecStatus, 'resize') : null;
    if (why) throw runcError(why);
    // as the shim: a process without a terminal, or whose terminal is gone, ignores it
    this.consoles.get(p)?.resize(width, height);
  }

  closeIO(ns: string, id: string, execId: string): void {
    const { p } = this.proc(ns, id, execId);
    // Without a terminal spored's own writer of the stdin FIFO goes (the process sees EOF
    // once the client's is gone too, as the shim's); with one, stop forwarding stdin into the pty.
    const io = this.ios.get(p);
    if (io) io.closeStdin();
    // an exec whose Start is still opening its stdio: its stdin is closed once it is there
    else if (!this.consoles.has(p)) this.stdinClosedEarly.add(p);
    this.consoles.get(p)?.closeStdin();
  }

  /** The answer of a Delete of `id` an earlier spored carried out (for a replayed Delete), if recent. */
  deletedRecently(id: string, ns?: string): Tombstone | null {
    const found = findTombstones(this.o.runDir, id, ns);
    return found.length === 1 ? (found[0] as { t: Tombstone }).t : null;
  }

  // --- restart ------------------------------------------------------------------------
  /**
   * Before a sandbox of a cut-short Create is aborted: hold duplicates of its FIFO ends (its
   * client's stdout, stderr, stdin), so that the client keeps its streams for the replayed
   * Create (containerd sends it again through the keeper). Returns how many were taken.
   */
  holdStdioOf(k: string, pid: number): number {
    const fds: number[] = [];
    let pidfd = -1;
    try {
      pidfd = sys.pidfdOpen(pid);
      for (const name of readdirSync(`/proc/${pid}/fd`)) {
        const fd = Number(name);
        try {
          // the client's FIFOs (named, so their link is a path), not the seed's pipes to it
          if (fd < 3 || !readlinkSync(`/proc/${pid}/fd/${fd}`).startsWith('/') || !statSync(`/proc/${pid}/fd/${fd}`).isFIFO()) continue;
          fds.push(sys.pidfdGetfd(pidfd, fd));
        } catch { /* closed meanwhile */ }
      }
    } catch { /* the sandbox is gone */ } finally {
      if (pidfd >= 0) sys.close(pidfd);
    }
    this.holdFor(k, fds);
    return fds.length;
  }

  /** Hold `fds` (client stream ends) under `k` until released or HELD_STDIO_MS, beside any held already. */
  private holdFor(k: string, fds: number[]): void {
    if (fds.length === 0) return;
    const h = this.heldStdio.get(k);
    if (h) { h.fds.push(...fds); return; }
    const timer = setTimeout(() => this.releaseHeldStdio(k), HELD_STDIO_MS);
    timer.unref();
    this.heldStdio.set(k, { fds, timer });
  }

  /**
   * Custody an earlier spored left for processes no record knows (a Create or an exec cut
   * short: the replay parks its own): the keeper lets go of those fds, so that no client
   * stream is held open forever.
   */
  private releaseStrayCustody(): void {
    const custody = this.o.custody;
    if (!custody || custody === NO_CUSTODY) return;
    for (const k of custody.keys()) {
      const parts = parseCustodyKey(k);
      if (!parts) continue; // not a process's stdio (the listening sockets the daemon holds)
      const c = this.containers.get(key(parts.ns, parts.id));
      const known = c !== undefined && (parts.proc === 'init' || c.execs.has(parts.proc));
      if (known) continue;
      // A client's FIFO end (a relay's destination, say) stays with the keeper a while: were
      // it its last writer, the client would see EOF and leave before the replayed RPC opens
      // it again (which replaces it under the same key, never leaving a gap). Held here, in
      // this spored's memory, a kill of this spored too before the replay got that far closed
      // it: ctr saw EOF, printed nothing and waited for its exit (a kill storm, 2026-12-01).
      const fd = custody.reclaim(k);
      const fifo = fd !== null && isNamedFifo(fd);
      if (fd !== null) sys.close(fd);
      if (!fifo) { custody.release(k); continue; }
      const stray = custody.heldAs(k);
      const later = setTimeout(() => {
        // unless the replayed RPC has held its own under the key since
        if (stray !== undefined && custody.heldAs(k) === stray) custody.release(k);
      }, HELD_STDIO_MS);
      later.unref();
    }
  }

  private releaseHeldStdio(k: string): void {
    const h = this.heldStdio.get(k);
    if (!h) return;
    this.heldStdio.delete(k);
    clearTimeout(h.timer);
    for (const fd of h.fds) sys.close(fd);
  }

  /**
   * Rebuild the containers an earlier spored left (their records under the run dir), before
   * this one answers containerd. `pending`: sandboxes the root seed holds waiting for Start
   * (from its hello). A process is believed alive only while its pid still has the recorded
   * start time; a process that ended while no spored listened gets its exit from the seed's
   * backlog (delivered after this, by the daemon) or, failing that, from sweepLost().
   * Stdio in custody (a keeper) is taken back: consoles and exec relays copy on. Sandboxes
   * the seed holds that no record knows (a Create cut short) are returned to be aborted.
   */
  restore(pending: { key: string; pid: number }[]): { restored: number; abort: string[]; bad: string[] } {
    const { records, bad } = readAllRecords(this.o.runDir);
    const waiting = new Map(pending.map((p) => [p.key, p.pid]));
    const known = new Set<string>();
    let restored = 0;
    for (const rec of records) {
      if (rec.v !== TASK_RECORD_VERSION || !rec.init || !rec.cgroup) {
        bad.push({ path: `${rec.namespace}/${rec.id}`, error: `record version ${rec.v ?? 1} cannot be restored` });
        continue;
      }
      const ns = rec.namespace;
      const c: ContainerState = {
        id: rec.id, namespace: ns, bundle: rec.bundle, rootfs: rec.rootfs, rootfsMounted: rec.rootfsMounted, cgroup: rec.cgroup,
        madeParents: rec.madeParents ?? [], pod: rec.pod ?? null, namespaces: rec.namespaces ?? [],
        init: this.procFromRecord(rec.init, waiting, key(ns, rec.id), this.heldStartOf(rec.init, ns, rec.id, waiting)),
        execs: new Map(), createdAt: new Date(rec.createdAt), timings: { restored: true }, hooks: rec.hooks ?? null,
        ...(rec.pidNs ? { pidNs: rec.pidNs } : {}),
      };
      for (const e of rec.execs ?? []) c.execs.set(e.execId, this.procFromRecord(e, waiting, key(ns, rec.id, e.execId), e.pid > 0 ? this.heldStartOf(e, ns, rec.id, waiting, e.execId) : null));
      known.add(key(ns, rec.id));
      for (const e of c.execs.keys()) known.add(key(ns, rec.id, e));
      this.containers.set(key(ns, rec.id), c);
      for (const [execId, p] of [['', c.init] as const, ...[...c.execs].map(([k, v]) => [k, v] as const)]) {
        const r = execId === '' ? rec.init : (rec.execs ?? []).find((x) => x.execId === execId);
        if (p.pid > 0) this.byPid.set(p.pid, { c, p });
        // a stopped process's relays too: what it wrote before it ended is still in the pipe
        // (they end at its EOF and let go of their custody); its terminal closes at Delete
        if (!r) continue;
        const custody = this.custodyOf(ns, rec.id, execId);
        if (!custody) continue;
        if (r.io.console) {
          const con = Console.adopt(custody);
          if (con) this.consoles.set(p, con);
        }
        if (r.io.relays.length) this.ios.set(p, ProcessIO.adopt(r.io.relays, custody));
      }
      // exits whose terminal flush the earlier spored did not finish: flushed again (the
      // client may still be reading), then reported, before any Wait is answered
      for (const p of [c.init, ...c.execs.values()]) if (p.exitUnreported) this.reportExit(c, p, this.consoles.get(p));
      if (c.pod) this.pods.rejoin(ns, c.id, c.pod);
      restored++;
    }
    const abort = [...waiting.keys()].filter((k) => !known.has(k));
    // Creates cut short by the crash: never answered, their sandboxes aborted (above); their
    // cgroups go and their poststop hooks run now, as runc's for a create that failed (a
    // replayed Create of the same id waits for them: cut-short.ts)
    for (const { record: r, done: taken } of takeAllCreating(this.o.runDir)) {
      const k = key(r.namespace, r.id);
      if (this.containers.has(k)) { taken(); continue; } // recorded after all: its Delete cleans up
      const inUse = (path: string): boolean => [...this.containers.values()].some((c) => c.cgroup.path === path) || [...this.cgroupsInCreate.values()].some((c) => c.path === path);
      const done = cleanUpCutShort(r, { inUse, ...(this.o.onHook ? { onHook: this.o.onHook } : {}) })
        .then((ws) => {
          for (const w of ws) this.o.log.warn({ id: r.id, ns: r.namespace }, w);
          this.o.log.info({ id: r.id, ns: r.namespace, cgroup: r.cgroup?.handle.path }, 'cleaned up after a Create cut short');
        })
        .finally(() => { taken(); if (this.cutShort.get(k) === done) this.cutShort.delete(k); });
      this.cutShort.set(k, done);
    }
    this.releaseStrayCustody();
    pruneTombstones(this.o.runDir, TOMBSTONE_MS);
    return { restored, abort, bad: bad.map((b) => `${b.path}: ${b.error}`) };
  }

  /**
   * A created init (or exec: `execId`) the root seed no longer holds (it died) but whose pipes
   * the keeper does, still waiting on them: its start is taken back (held-start.ts). Pipes
   * left for any other (it started, or ended) are let go of.
   */
  private heldStartOf(r: ProcRecord, ns: string, id: string, waiting: Map<string, number>, execId = ''): HeldStart | 'parked' | 'started' | null {
    const custody = this.custodyOf(ns, id, execId);
    if (!custody) return null;
    // the seed still holds it: spored starts it through the pipes the keeper holds when the
    // seed lets it, else through the seed, and should the seed die during that, the next
    // spored does (startInit)
    if (waiting.has(key(ns, id, execId))) {
      if (!custody.holds('start')) return null;
      if (!this.o.seed.has('started-by-spored')) return 'parked';
      const held = HeldStart.reclaim(custody);
      if (!held) return 'parked';
      if (held.waiting()) return held;
      // started by an earlier spored that died before the seed heard of it: the seed lets go
      held.release();
      this.o.seed.started(key(ns, id, execId));
      return 'started';
    }
    const held = HeldStart.reclaim(custody);
    if (!held) return null;
    if (r.status === 'created' && held.waiting()) return held;
    held.release();
    return null;
  }

  private procFromRecord(r: ProcRecord, waiting: Map<string, number>, k: string, heldStart: HeldStart | 'parked' | 'started' | null = null): ProcState {
    const p: ProcState = {
      execId: r.execId, pid: r.pid, pidStartTime: r.pidStartTime, status: r.status, exitStatus: r.exitStatus,
      exitedAt: r.exitedAt ? new Date(r.exitedAt) : null, stdio: r.stdio, terminal: r.terminal, spec: r.spec,
      ...(r.startFailed ? { startFailed: true } : {}),
      ...(r.exitUnreported && r.status === 'stopped' ? { exitUnreported: true } : {}),
    };
    // an exec registered but not spawned when spored died, now held by the seed: adopt its pid
    const held = waiting.get(k);
    if (held !== undefined && p.pid === 0) { p.pid = held; p.pidStartTime = processStartTime(held); }
    // waiting for Start on the pipes the keeper holds (its root seed died)
    if (heldStart === 'parked') this.parkedStarts.add(p);
    else if (heldStart === 'started') {
      if (p.status === 'created' && this.alive(p)) p.status = 'running';
    } else if (heldStart) {
      if (this.alive(p)) this.heldStarts.set(p, heldStart);
      else heldStart.release();
    // spawned and started, but spored died before it recorded the start
    } else if (p.status === 'created' && held === undefined && p.pid > 0 && this.alive(p)) p.status = 'running';
    return p;
  }

  private alive(p: ProcState): boolean {
    if (p.pid <= 0) return false;
    const now = processStartTime(p.pid);
    return now !== null && (p.pidStartTime === null || p.pidStartTime === undefined || now === p.pidStartTime);
  }

  /**
   * After restore() and the seed's backlog: a process still recorded as alive whose pid is
   * gone (or now belongs to another process) ended unseen, e.g. while the seed itself was
   * down. It is reported stopped with status 255, as containerd reports a lost process.
   */
  sweepLost(suspects: ReadonlySet<ProcState> = new Set(this.lostSuspects())): number {
    let n = 0;
    for (const c of this.containers.values()) {
      for (const p of [c.init, ...c.execs.values()]) {
        if (!suspects.has(p) || !this.seemsLost(p)) continue;
        this.o.log.warn({ id: c.id, ns: c.namespace, execId: p.execId || undefined, hostPid: p.pid }, 'process ended while spored was away and its status is lost; reporting 255');
        this.applyExit(c, p, 255 << 8);
        n++;
      }
    }
    return n;
  }

  /**
   * Processes sweepLost() would report now: recorded alive, their pid gone. Their exit may
   * still be on its way (the seed reaped it a moment ago): the daemon makes a round trip to
   * the seed first (it sends each exit as it reaps, before the reply to anything asked
   * later), then sweeps only these. A process that ends after this is reported as usual.
   */
  lostSuspects(): ProcState[] {
    const out: ProcState[] = [];
    for (const c of this.containers.values()) for (const p of [c.init, ...c.execs.values()]) if (this.seemsLost(p)) out.push(p);
    return out;
  }

  private seemsLost(p: ProcState): boolean {
    if (p.status === 'stopped' || p.pid <= 0 || this.alive(p)) return false;
    return !(p.status === 'created' && this.byPid.get(p.pid)?.p !== p);
  }

  /** An exit the keeper reaped (the process had lost its seed parent); `at`: when (ISO 8601). */
  exitReaped(pid: number, status: number, at?: string): void {
    const t = at === undefined ? NaN : Date.parse(at);
    this.onExit(pid, status, undefined, Number.isNaN(t) ? undefined : t);
  }

  // --- exits --------------------------------------------------------------------------
  /** `at`: when the process was reaped (ms since the epoch; an exit reported after a restart happened earlier) */
  private onExit(pid: number, status: number, exitSeq?: number, at?: number): void {
    const hit = this.byPid.get(pid);
    if (!hit) {
      this.o.log.debug({ hostPid: pid, status, signal: status & 0x7f }, 'exit of a process spored does not track');
      if (exitSeq !== undefined) {
        this.unclaimed.set(pid, { status, exitSeq, at });
        if (this.unclaimed.size > 256) this.unclaimed.delete(this.unclaimed.keys().next().value as number);
      }
      return;
    }
    const { c, p } = hit;
    if (p.status === 'stopped') return; // reported twice (a restart replays the seed's backlog)
    this.applyExit(c, p, status, at);
  }

  private applyExit(c: ContainerState, p: ProcState, status: number, at?: number): void {
    this.moveTo(p, 'stopped');
    p.exitStatus = sys.exitCodeOf(status) + (TEST_MUTATION === 'exit-code' ? 1 : 0);
    p.exitedAt = at === undefined ? new Date() : new Date(at);
    if (p === c.init) {
      // Everything else dies with the init's pid namespace. A container without one of its
      // own (the host's, or another container's) has the rest of its cgroup killed, as
      // containerd's runc shim does (ShouldKillAllOnExit, then `runc kill --all`).
      if (!ownsPidNs(c.namespaces)) {
        for (const e of c.execs.values()) if (e.status === 'running' && e.pid) { try { sys.kill(e.pid, 9); } catch { /* gone */ } }
        try { killAll(c.cgroup, 9); } catch (e) { this.o.log.warn({ id: c.id, err: (e as Error).message }, 'cgroup kill after the init exited'); }
      }
      if (p.exitStatus === 137) {
        try { if (oomKillCount(c.cgroup) > 0) this.o.events.oom(c); } catch { /* cgroup gone */ }
      }
    }
    // The client drops its end of the output stream when it learns of the exit: a terminal's
    // last output must be in the FIFO before the exit event and Wait's answer go out. That
    // flush takes up to a second; the record says it is not done, so a spored that takes
    // over meanwhile does it again rather than answer Wait at once (a kill -9 inside it lost
    // the output's last 12-40 KB to the Delete that followed).
    // An exit during Start waits for the start event (starting): recorded as unreported too,
    // or a kill in that wait left it published by no spored (containerd never heard of it).
    const console = this.consoles.get(p);
    if (console || this.starting.has(p)) p.exitUnreported = true;
    this.persist(c);
    this.reportExit(c, p, console);
  }

  /** The exit event and Wait's answer, once a terminal's last output is in its FIFO. */
  private reportExit(c: ContainerState, p: ProcState, console: Console | undefined): void {
    const finish = (): void => {
      this.flushing.delete(p);
      const published = (): void => {
        if (!p.exitUnreported) return;
        delete p.exitUnreported;
        this.persist(c);
      };
      const publish = (): void => { this.o.events.exited(c, p); published(); };
      if (this.starting.has(p)) this.starting.set(p, publish);
      else publish();
      this.releaseWaiters(p);
    };
    if (console) {
      this.flushing.add(p);
      void console.drainForExit().then(finish, finish);
    } else finish();
  }

  /** Apply an exit of `pid` read before its pid was tracked, if it came after its spawn reply. */
  private claimExit(pid: number, exitsBefore: number): void {
    const e = this.unclaimed.get(pid);
    if (!e) return;
    this.unclaimed.delete(pid);
    if (e.exitSeq > exitsBefore) this.onExit(pid, e.status, undefined, e.at);
  }

  /** A status change through the process kind's table; a move the table forbids is a bug, logged. */
  private moveTo(p: ProcState, to: ProcStatus): void {
    const ok = p.execId === ''
      ? move(INIT_MOVES, p, to)
      : to !== 'paused' && move(EXEC_MOVES, p as { status: ExecStatus }, to);
    if (!ok && p.status !== to) this.o.log.warn({ execId: p.execId, hostPid: p.pid, from: p.status, to }, 'status move not allowed; ignored');
  }

  private releaseWaiters(p: ProcState): void {
    const ws = this.waiters.get(p) ?? [];
    this.waiters.delete(p);
    for (const w of ws) w();
  }

  /** Processes still alive (Shutdown refuses to exit while any remain). */
  get size(): number {
    return this.containers.size;
  }
}

/**
 * Device cgroup rules as runc applies them: the spec's rules, then the devices every container
 * may use (the default nodes, ptys, and mknod of anything) and the spec's own device nodes.
 * CRI specs start with a deny-all rule and rely on this; without it, creating /dev/null fails.
 */
let lsm: HostLsm | null = null;
/** AppArmor and SELinux on this host (read once: a module is not loaded while spored runs). */
function hostLsm(): HostLsm {
  if (lsm) return lsm;
  let apparmor = false;
  try { apparmor = readFileSync('/sys/module/apparmor/parameters/enabled', 'utf8').trim() === 'Y'; } catch { /* not built in */ }
  lsm = { apparmor, selinux: existsSync('/sys/fs/selinux/enforce') };
  return lsm;
}

/** Whether the network namespace at `path` is spored's own (the host's). False when it cannot be read. */
function isHostNetns(path: string): boolean {
  try {
    const a = statSync(path);
    const b = statSync('/proc/self/ns/net');
    return a.dev === b.dev && a.ino === b.ino;
  } catch {
    return false;
  }
}

export function withDefaultDeviceRules(spec: Spec): LinuxResources | undefined {
  const r = spec.linux?.resources;
  if (!r?.devices || r.devices.length === 0) return r;
  const allow = (type: string, major: number | undefined, minor: number | undefined, access: string) => ({ allow: true, type, ...(major !== undefined ? { major } : {}), ...(minor !== undefined ? { minor } : {}), access });
  const defaults = [
    allow('c', undefined, undefined, 'm'), allow('b', undefined, undefined, 'm'),
    allow('c', 1, 3, 'rwm'), allow('c', 1, 5, 'rwm'), allow('c', 1, 7, 'rwm'), allow('c', 1, 8, 'rwm'), allow('c', 1, 9, 'rwm'),
    allow('c', 5, 0, 'rwm'), allow('c', 5, 2, 'rwm'), allow('c', 136, undefined, 'rwm'), allow('c', 10, 200, 'rwm'),
    ...(spec.linux?.devices ?? []).filter((d) => d.type === 'c' || d.type === 'b').map((d) => allow(d.type, d.major, d.minor, 'rwm')),
  ];
  return { ...r, devices: [...r.devices, ...defaults] };
}

function readSpec(bundle: string): Spec {
  const path = join(bundle, 'config.json');
  if (!existsSync(path)) throw new NotFound(`bundle ${bundle} has no config.json`);
  let spec: unknown;
  try {
    spec = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new InvalidArgument(`${path} is not valid JSON: ${(e as Error).message}`);
  }
  if (!spec || typeof spec !== 'object' || Array.isArray(spec)) throw new InvalidArgument(`${path} must hold a JSON object`);
  return spec as Spec;
}

/** Ancestors of the handle's dirs that do not exist yet, deepest first. */
function missingAncestors(h: CgroupHandle): string[] {
  const out: string[] = [];
  for (const [ctrl, dir] of Object.entries(h.dirs)) {
    const mount = h.mounts[ctrl] ?? '';
    for (let d = dirname(dir); d.length > mount.length && d.startsWith(mount + '/'); d = dirname(d)) {
      if (existsSync(d)) break;
      if (!out.includes(d)) out.push(d);
    }
  }
  return out.sort((a, b) => b.length - a.length);
}

function v1Dirs(h: CgroupHandle): { name: string; hostDir: string }[] {
  const seen = new Map<string, string>();
  for (const [ctrl, dir] of Object.entries(h.dirs)) {
    if (ctrl === 'unified') continue;
    const mount = h.mounts[ctrl] ?? '';
    const name = mount.slice(mount.lastIndexOf('/') + 1) || ctrl;
    if (!seen.has(name)) seen.set(name, dir);
  }
  return [...seen].map(([name, hostDir]) => ({ name, hostDir }));
}

/** The spec mounts a devpts at /dev/pts: its processes open their terminal there, as with runc. */
function ownsDevpts(spec: Spec): boolean {
  return (spec.mounts ?? []).some((m) => m.destination === '/dev/pts' && m.type === 'devpts');
}

/**
 * The pty master a process opened on its own devpts (CONSOLE_INSIDE), duplicated into spored
 * with pidfd_getfd(2) while the process waits for Start (it is close-on-exec there).
 */
function takeConsole(spawned: SpawnResult): number {
  if (spawned.console === undefined) throw new Internal('the process opened no terminal (the seed reported no pty master)');
  const pidfd = sys.pidfdOpen(spawned.pid);
  try {
    return sys.pidfdGetfd(pidfd, spawned.console);
  } catch (e) {
    throw new Internal(`taking the terminal of process ${spawned.pid}: ${(e as Error).message}`);
  } finally {
    sys.close(pidfd);
  }
}

/**
 * The oom_score_adj of a container process whose spec sets none: containerd's + 1 (at most
 * 1000), as a runc container's (containerd 1.6 runtime/v2/shim AdjustOOMScore gives the runc
 * shim its parent's score + 1, and runc's init and execs inherit the shim's). The shim's
 * `start` (bin/containerd-shim-spore-v2, containerd's child) writes containerd's score to
 * `<runDir>/containerd-oom-score-adj`. null when no containerd started spore (the process
 * then inherits the root seed's, which the keeper raised).
 */
export function defaultOomScoreAdj(runDir: string): number | null {
  let text: string;
  try { text = readFileSync(join(runDir, 'containerd-oom-score-adj'), 'utf8'); } catch { return null; }
  const score = Number(text.trim());
  if (text.trim() === '' || !Number.isInteger(score) || score < -1000 || score > 1000) return null;
  return Math.min(1000, score + 1);
}
