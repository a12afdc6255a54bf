// Runs in the child right after the seed forks, and never returns: the child either
// execve()s the container process or _exit()s. Setup is one linear sequence (like crun):
// fds, session -> stdio -> cgroup -> namespaces -> mounts -> devices -> pivot_root -> masks
// -> identity -> wait for Start -> credentials, capabilities, seccomp -> exec.
// A container shell (runShell) is the same child forked by the seed before any Create: it
// makes the first steps of that sequence (EARLY_STEPS, which need no plan) ahead, waits for
// exactly one plan, and runChild() continues from the step after them.
// Only synchronous calls are allowed here: the child must never return to the event loop
// it inherited from the seed.
// Every call that touches the system goes through a ContainerSys (container-sys.ts), so the
// sequence a plan turns into can be recorded and checked without root; nothing here imports
// libc or node:fs.
import { CLONE, MNT_DETACH, MS, O, PR, PR_CAP_AMBIENT_CLEAR_ALL, PR_CAP_AMBIENT_RAISE, TIOCSCTTY } from '../../sys/constants.js';
import { RecordedExec, RecordedExit, RecordingContainerSys, X_OK, realContainerSys, type ContainerSys, type FakeEntry } from './container-sys.js';
import { MAX_SHELL_FRAME, shellPlanOf, unsealPlan, entersPidNsLast, inUserNs, type ChildHooks, type ChildStatus, type DeviceNode, type ExecPlan, type InitPlan, type MountStep, type NamespaceStep, type ProcessPlan, type SpawnPlan, CONSOLE_INSIDE } from './protocol.js';
import { SyscallError } from '../../sys/errors.js';
import { describeWaitStatus, hookFailure, hookTimeoutMs, stateBytes, type Hook, type HookKind, type OciState } from '../../protocols/oci/hooks.js';

const NS_FLAG: Record<NamespaceStep['type'], number> = {
  mount: CLONE.NEWNS,
  network: CLONE.NEWNET,
  ipc: CLONE.NEWIPC,
  uts: CLONE.NEWUTS,
  cgroup: CLONE.NEWCGROUP,
  pid: CLONE.NEWPID,
  user: CLONE.NEWUSER,
  time: CLONE.NEWTIME,
};

class PhaseError extends Error {
  constructor(readonly phase: string, readonly inner: unknown) {
    super(inner instanceof Error ? inner.message : String(inner));
  }
}

function phase<T>(name: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof PhaseError) throw e;
    throw new PhaseError(name, e);
  }
}

/** One status line; false when it could not be written (the error is not thrown: see the callers). */
function report(s: ContainerSys, fd: number, msg: ChildStatus): boolean {
  try {
    s.write(fd, Buffer.from(JSON.stringify(msg) + '\n'));
    return true;
  } catch (e) {
    // the seed went away (EPIPE): nothing useful left to do but carry on / exit
    return e instanceof SyscallError && e.errno === EPIPE;
  }
}

const EPIPE = 32;
/**
 * The exit status of a set-up whose ready report could not be written for another reason than
 * a reader gone: an early seccomp filter (a spec without no_new_privs is filtered before the
 * report) that denies write(2). Create fails at once on it (the seed names it), where it
 * used to wait out the set-up deadline (red team, helper-67).
 */
export const READY_UNWRITABLE = 125;

// --- the first steps: no plan needed ---------------------------------------------------

/**
 * The first steps of every container's set-up, in sequence order: they need no plan, so a
 * container shell makes them before any plan exists. The pid namespace is the seed's
 * business (it forks the child into a new one), so a shell is pid 1 of its own already.
 * 'net' and 'ipc' are a new network namespace (its loopback up) and, with it, a new IPC
 * namespace, for a plan that makes them, with a late cgroup and no user namespace (which must
 * own them, so they come after it):
 * nothing in them depends on the spec, and a network namespace is the dearest to make (0.8 ms
 * here, against 0.1-0.2 for the others), so a shell of that shape makes them ahead
 * (shells.ts). The other namespaces stay where they are, after the plan: the mount namespace
 * because the stdio fds are opened before it, on the host's mounts (a pty slave opened
 * through a copy of /dev/pts that pivot_root then detaches no longer reads as /dev/pts/N in
 * /proc/self/fd), and because a copy made before the Create would miss the mounts made since
 * (the container's rootfs) wherever the host's mounts do not propagate; uts because a pod's
 * containers join their sandbox's. Neither costs more than microseconds at Create (unshare:
 * mount 26 µs, uts 4 µs on this machine kind).
 */
export type EarlyStep = 'fds' | 'setsid' | 'net' | 'ipc';
/** the steps every sequence starts with (a shell of this shape fits every plan a shell can take) */
export const EARLY_STEPS: readonly EarlyStep[] = ['fds', 'setsid'];

const newNamespace = (plan: SpawnPlan, type: NamespaceStep['type']): boolean =>
  plan.kind === 'init' && plan.namespaces.some((n) => n.type === type && n.path === null);

/** The early steps `plan`'s sequence has, in order. */
export function earlyStepsOf(plan: SpawnPlan): EarlyStep[] {
  // (without a late cgroup the child joins its cgroup before it makes namespaces, as runc's
  // does, so the kernel charges them to the container; a late one is joined after them anyway)
  // (the IPC namespace only with a network namespace: a Kubernetes pod's sandbox makes its IPC
  // namespace but joins the network namespace CNI made, and its containers join both; shells
  // of one shape serve them all, where a shape per kind would make the pool discard and fork
  // shells at every pod)
  if (plan.kind !== 'init' || inUserNs(plan) || plan.lateCgroup !== true || !newNamespace(plan, 'network')) return [...EARLY_STEPS];
  return [...EARLY_STEPS, 'net', ...(newNamespace(plan, 'ipc') ? ['ipc' as const] : [])];
}

/** Whether `steps` is a shape earlyStepsOf() gives (a seed checks what a claim asks it to make ahead). */
export function isEarlyShape(steps: readonly string[]): steps is readonly EarlyStep[] {
  const shapes = [EARLY_STEPS, [...EARLY_STEPS, 'net'], [...EARLY_STEPS, 'net', 'ipc']];
  return shapes.some((shape) => shape.length === steps.length && shape.every((step, i) => steps[i] === step));
}

/** `keep`: the fds of this child's own (its start, status and plan pipes), kept through 'fds'. */
function earlyStep(s: ContainerSys, step: EarlyStep, keep: readonly number[]): void {
  switch (step) {
    case 'fds': closeInheritedFds(s, keep); break;
    case 'setsid': phase('setsid', () => s.setsid()); break;
    // (as enterNamespaces would: a new network namespace comes with its loopback up)
    case 'net': phase('namespaces', () => { s.unshare(CLONE.NEWNET); s.loopbackUp(); }); break;
    case 'ipc': phase('namespaces', () => s.unshare(CLONE.NEWIPC)); break;
  }
}

/**
 * Whether a shell that made `ahead` can become `plan`'s init: a container (not an exec) in a
 * new pid namespace (the shell is already pid 1 of one), whose sequence starts with exactly
 * the steps the shell made. A pid namespace joined by path (a pod that shares one) or the
 * host's does not fit, nor does a plan with a user namespace of its own; such a plan is
 * forked as before.
 */
export function shellFits(plan: SpawnPlan, ahead: readonly EarlyStep[]): boolean {
  // (a user namespace of its own must own the pid namespace: the shell's belongs to the host's)
  if (plan.kind !== 'init' || !newNamespace(plan, 'pid') || inUserNs(plan)) return false;
  const steps = earlyStepsOf(plan);
  return ahead.length <= steps.length && ahead.every((step, i) => steps[i] === step);
}

/**
 * Entry point in the forked child. `startFd` blocks until Start; `statusFd` is CLOEXEC.
 * `done`: the early steps a container shell already made (a prefix of earlyStepsOf(plan));
 * the sequence continues after them. `planAt`: when a shell had its plan read (the seed's
 * clock: a fork shares its time origin), reported as the `planAt` timing. Tests pass a
 * RecordingContainerSys as `s` to get the sequence without making it.
 */
export function runChild(plan: SpawnPlan, startFd: number, statusFd: number, s: ContainerSys = realContainerSys, done: readonly EarlyStep[] = [], planAt?: number): never {
  const t0 = planAt ?? performance.now();
  const t: Record<string, number> = planAt === undefined ? {} : { planAt };
  const mark = (name: string): void => { t[name] = Math.round((performance.now() - t0) * 1000) / 1000; };
  const warnings: string[] = [];
  let started = false;
  // the plan's sealed memfd, kept open: a failure's text goes there, past the seed, because
  // it can hold the container's data (a missing program's name, a failing hook's output)
  let sealedFd = -1;
  try {
    // first, while this is still the host's /proc and root with every capability: the args,
    // env and hooks' secrets spored kept out of the seed (protocol.ts, sealedBody)
    phase('process', () => unsealPlan(plan, (p) => {
      sealedFd = s.open(p, O.RDWR | O.CLOEXEC);
      return readAll(s, sealedFd); // (and the file offset is at the body's end)
    }));
    for (const step of earlyStepsOf(plan)) if (!done.includes(step)) earlyStep(s, step, sealedFd >= 0 ? [startFd, statusFd, sealedFd] : [startFd, statusFd]);
    const stdio = phase('stdio', () => openStdio(s, plan.process));
    mark('stdio');
    // (not for a process that enters its pid namespace last: it is in its cgroup before it is seen there)
    const late = plan.kind === 'init' && plan.lateCgroup === true && !entersPidNsLast(plan) && !inUserNs(plan);
    // The host's cgroupfs is out of sight after pivot_root: keep handles on it.
    const lateProcs = late ? phase('cgroup', () => cgroupPathsViaFds(s, plan.cgroupProcs)) : [];
    if (!late) phase('cgroup', () => joinCgroup(s, plan.cgroupProcs));
    mark('cgroup');
    // In a user namespace these can no longer be raised or lowered past the host's limits
    // (CAP_SYS_RESOURCE counts only in the host's): set now, as runc sets them from outside.
    const limitsFirst = inUserNs(plan);
    if (limitsFirst) {
      phase('oom_score_adj', () => applyOomScore(s, plan.process, warnings));
      phase('rlimits', () => applyRlimits(s, plan.process));
    }
    let consoleFd: number | undefined;
    if (plan.kind === 'init') {
      const hooks = plan.hooks;
      // runc's place for them: mounts and devices made, the host's paths still in sight
      const beforePivot = (): void => {
        if (!hooks) return;
        if (hooks.pause) {
          // spored runs prestart and createRuntime now; one byte: go on, EOF: aborted
          report(s, statusFd, { s: 'hooks', ...(plan.nonce !== undefined ? { n: plan.nonce } : {}) });
          if (s.read(startFd, 1).length === 0) s.exit(0);
          mark('runtime-hooks');
        }
        if (hooks.createContainer.length > 0) {
          phase('createContainer hook', () => {
            s.chdir(plan.rootfs);
            runHooks(s, 'createContainer', hooks.createContainer, { ...hooks.state, status: 'creating', pid: s.getpid() }, plan.process.env);
          });
          mark('createContainer');
        }
      };
      const userNs = plan.userNs ? (): void => becomeUserNsRoot(s, statusFd, startFd) : null;
      let joined = false;
      const lateJoin = (): void => {
        if (!late || joined) return;
        joined = true;
        // (`joinedSelf`: spored's join did not come within AWAIT_JOIN_MS, a second of Create)
        if (phase('cgroup', () => (plan.joinedBySpored ? awaitJoin(s, lateProcs) : (joinCgroupWhenReady(s, lateProcs), false)))) t.joinedSelf = 1;
        // the cgroup namespace's root is the cgroup we are in when it is created
        if (plan.namespaces.some((n) => n.type === 'cgroup' && n.path === null)) phase('namespaces', () => s.unshare(CLONE.NEWCGROUP));
        mark('cgroup-late');
      };
      setupContainer(s, plan, late, warnings, mark, (pidNs) => forkIntoPidNs(s, pidNs, statusFd), beforePivot, userNs, lateJoin);
      // The terminal before the late join: the child may join while spored is still writing
      // the cgroup's device rules ('deny a' comes first), and those rules always end by
      // allowing /dev/ptmx and /dev/pts/* (withDefaultDeviceRules, like runc's AllowedDevices).
      // (A plan that mounts the cgroup hierarchy joined before that mount: spored's join,
      // which follows the rules' writes.)
      if (stdio.inside) consoleFd = openConsole(s, plan, stdio, mark);
      lateJoin();
    } else {
      // Every namespace but pid first, then the pid namespace for a child of this process:
      // only that child is ever seen in the container, and only once it is in the
      // container's mounts, network and cgroup (runc's order). Before, the exec sat in the
      // container's pid namespace while still in the host's mounts: a container could stop
      // it there and read the host's mount table and sockets through /proc/<pid>, or, with
      // CAP_SYS_PTRACE, the host's files and this seed's fds.
      const pidNs = phase('namespaces', () => s.open(`/proc/${plan.targetPid}/ns/pid`, O.RDONLY | O.CLOEXEC));
      if (inUserNs(plan)) phase('user', () => checkMapped(s, plan.targetPid, plan.process));
      joinContainer(s, plan);
      // root inside the container's user namespace, as runc's exec is before its own user:
      // until now this is the host's root, unmapped in there (a terminal it opens would be nobody's)
      if (inUserNs(plan)) phase('user', () => { s.setgroups([]); s.setresgid(0); s.setresuid(0); });
      forkIntoPidNs(s, pidNs, statusFd);
    }
    mark('setup');
    if (stdio.inside && consoleFd === undefined) consoleFd = openConsole(s, plan, stdio, mark);
    // The environment as runc builds it (later duplicates win; HOME from the container's
    // /etc/passwd when unset), then the executable resolved now, in the container's root,
    // so a missing binary fails Create (as with runc) and Start need not wait for execve.
    plan.process.env = phase('env', () => execEnv(plan.process.env, plan.process.uid, s));
    mark('env');
    const path = phase('lookup', () => lookPath(plan.process.args[0] ?? '', plan.process.env, s, plan.process.cwd));
    // a working directory that is not there fails Create (or the exec), as runc's does,
    // rather than the process after Start (the chdir itself waits for the user's identity)
    phase('cwd', () => checkCwd(s, plan.process.cwd));
    mark('lookup');
    if (!limitsFirst) {
      phase('oom_score_adj', () => applyOomScore(s, plan.process, warnings));
      mark('oom');
      phase('rlimits', () => applyRlimits(s, plan.process));
      mark('rlimits');
    }
    // What runc's init does before its parent's create returns (finalizeNamespace: the
    // process's keyring, cwd, capabilities, user; a seccomp filter without no_new_privs), so
    // that a failure there fails Create, as runc's, and a created process has its own
    // credentials (as `ps` shows runc's) and signal dispositions (SIGTERM ends it).
    finalize(s, plan.process, plan.id, plan.kind === 'init');
    // what fails from here on (at Start) goes to the process's own stderr as well
    if (sealedFd >= 0) { s.close(sealedFd); sealedFd = -1; }
    if (!report(s, statusFd, { s: 'ready', warnings, t, ...(consoleFd !== undefined ? { console: consoleFd } : {}), ...(plan.kind === 'init' && plan.nonce !== undefined ? { n: plan.nonce } : {}) })) s.exit(READY_UNWRITABLE);
    // Block until Start (one byte on the start pipe) or an abort (EOF).
    const go = s.read(startFd, 1);
    if (go.length === 0) s.exit(0);
    started = true;
    s.close(startFd);
    execAfterStart(s, plan.process, stdio, path, plan.kind === 'init' ? plan.hooks : undefined, () => report(s, statusFd, { s: 'exec' }));
  } catch (e) {
    const pe = e instanceof PhaseError ? e : new PhaseError('init', e);
    const errno = pe.inner instanceof SyscallError ? pe.inner.errno : undefined;
    // before Start the seed relays the report to spored, who still holds the memfd
    let message = pe.message;
    if (sealedFd >= 0 && !started) { try { s.write(sealedFd, Buffer.from(message)); message = ''; } catch { /* the seed carries it */ } }
    report(s, statusFd, { s: 'error', phase: pe.phase, message, ...(errno !== undefined ? { errno } : {}), ...(plan.kind === 'init' && plan.nonce !== undefined ? { n: plan.nonce } : {}) });
    // After Start nobody waits on the status pipe: tell the container's own stderr.
    if (pe.phase === 'exec') { try { s.write(2, Buffer.from(`spore: ${pe.message}\n`)); } catch { /* no stderr */ } }
    // After Start the process's exit status is what containerd reports: 1, as runc's init
    // exits on any error (a failed startContainer hook, an execve of a script without a
    // shebang). Before it, Create fails and the status is nobody's.
    s.exit(started ? 1 : 127);
  }
}

/**
 * The last namespace, for a child: setns(pid) (`pidNs`; null: unshare(CLONE_NEWPID) set it
 * already) only changes where this process's children
 * go, so it forks, reports the child's pid (the seed's view; the seed, a subreaper, reaps
 * that child from now on) and exits; the child goes on with the sequence. Used by a process
 * that enters its pid namespace last (protocol.ts entersPidNsLast): it is seen in there only
 * once it is in every other namespace and its cgroup.
 */
function forkIntoPidNs(s: ContainerSys, pidNs: number | null, statusFd: number): void {
  if (pidNs !== null) phase('namespaces', () => { s.setns(pidNs, CLONE.NEWPID); s.close(pidNs); });
  const child = phase('fork', () => s.fork());
  if (child > 0) {
    report(s, statusFd, { s: 'pid', pid: child });
    s.exit(0);
  }
  // a session of its own again (a terminal becomes the controlling one of a session leader)
  phase('setsid', () => s.setsid());
}

/**
 * A terminal from the container's own devpts, once its /dev is in place (runc's init does
 * the same): the slave becomes stdio at exec, the master (returned, fd >= 100) is reported
 * for spored to take (pidfd_getfd) before Start; it is close-on-exec, so the program never
 * has it.
 */
function openConsole(s: ContainerSys, plan: SpawnPlan, stdio: OpenStdio, mark: (name: string) => void): number {
  const pty = phase('console', () => s.openPtyPair('/dev/ptmx', plan.process.stdio.consoleSize));
  // the terminal belongs to the process's user, as runc's fixStdioPermissions makes it
  // (uid only: the devpts mount's gid, tty, stays)
  if (plan.process.uid !== 0) s.fchown(pty.slave, plan.process.uid, -1);
  const slave = s.dupAt(pty.slave, 100);
  s.close(pty.slave);
  const consoleFd = s.dupAt(pty.master, 100);
  s.close(pty.master);
  stdio.fds = [slave, slave, slave];
  // an init's terminal is also its /dev/console, as runc binds it (its mount point was made
  // before the root went read-only: setupContainer)
  if (plan.kind === 'init') phase('console', () => s.mount(`/proc/self/fd/${slave}`, '/dev/console', null, MS.BIND, null));
  mark('console');
  return consoleFd;
}

/** What a container shell is given at its fork. */
export interface ShellIo {
  /** read end of its plan pipe: one frame (protocol.ts shellFrame), or EOF: not needed */
  planFd: number;
  /** as for runChild */
  startFd: number;
  statusFd: number;
  /** fds it inherited that belong to the seed (its link to spored, other children's pipes) */
  closeFds: number[];
  /** a plan made of no container's data to rehearse the set-up with before waiting (rehearse) */
  rehearsal?: Rehearsal;
}

/** A plan made of no container's data, and the files its rehearsal sees (shells.ts makes it). */
export interface Rehearsal { plan: InitPlan; files: Record<string, FakeEntry> }

const SIGKILL = 9;

/**
 * A container shell: forked by the root seed into a new pid namespace before any Create, so
 * before any plan exists. It makes `ahead` (a prefix of EARLY_STEPS), blocks on its plan
 * pipe, and becomes the init of the one plan it reads there: runChild() from the step after
 * `ahead`. Until then it dies with the seed (PR_SET_PDEATHSIG; cleared at the handoff, since
 * it would survive execve and a container must not die with the seed) and exits 0 at EOF of
 * its plan pipe; before its plan it reports nothing on the status pipe (no Create waits).
 */
export function runShell(io: ShellIo, ahead: readonly EarlyStep[], s: ContainerSys = realContainerSys): never {
  let plan: InitPlan | null = null;
  let planAt = 0;
  try {
    for (const fd of io.closeFds) s.close(fd);
    // from here on it dies with the seed; had the seed died before, the plan pipe is at EOF
    // (the seed held the only other write end: it forked nothing after this shell)
    s.prctl(PR.SET_PDEATHSIG, SIGKILL);
    for (const step of ahead) earlyStep(s, step, [io.planFd, io.startFd, io.statusFd]);
    if (io.rehearsal) rehearse(io.rehearsal, ahead);
    // nothing changes this shell's signal dispositions before its exec: read them while idle
    s.cacheIgnoredSignals();
    plan = receivePlan(s, io.planFd);
    if (plan === null) s.exit(0); // the seed let it go
    planAt = performance.now();
    // the handoff: the plan is in; from here on this is that container's init
    s.close(io.planFd);
    s.prctl(PR.SET_PDEATHSIG, 0);
  } catch {
    s.exit(127);
  }
  if (!shellFits(plan, ahead)) {
    report(s, io.statusFd, { s: 'error', phase: 'shell', message: 'the plan does not fit this container shell' });
    s.exit(127);
  }
  return runChild(plan, io.startFd, io.statusFd, s, ahead, planAt);
}

/**
 * A shell's rehearsal, before its plan exists: the whole set-up (this same runChild, from the
 * same step) for a plan made of no container's data, against a RecordingContainerSys of its
 * own, so it cannot touch the system. What the real set-up then runs has warm inline caches,
 * and most pages it writes are already this process's own: a fork's first writes are
 * copy-on-write faults, and a Create no longer waits on most of them.
 */
function rehearse(r: Rehearsal, ahead: readonly EarlyStep[]): void {
  const rec = new RecordingContainerSys({ files: r.files, fds: [0, 1, 2, 3, 4] });
  try {
    runChild(structuredClone(r.plan), 3, 4, rec, ahead);
  } catch (e) {
    if (!(e instanceof RecordedExec) && !(e instanceof RecordedExit)) throw e;
  }
}

/** Everything from `fd`'s offset to its end (a memfd through /proc: no size to stat first). */
function readAll(s: ContainerSys, fd: number): Buffer {
  const parts: Buffer[] = [];
  for (;;) {
    const b = s.read(fd, 65536);
    if (b.length === 0) return Buffer.concat(parts);
    parts.push(b);
  }
}

/** The one plan on a shell's pipe; null at EOF. Blocking reads: the shell has nothing else to do. */
function receivePlan(s: ContainerSys, fd: number): InitPlan | null {
  const exactly = (n: number): Buffer | null => {
    const parts: Buffer[] = [];
    let got = 0;
    while (got < n) {
      const b = s.read(fd, n - got);
      if (b.length === 0) return null;
      parts.push(b);
      got += b.length;
    }
    return Buffer.concat(parts);
  };
  const head = exactly(4);
  if (head === null) return null;
  const n = head.readUInt32BE(0);
  if (n + 4 > MAX_SHELL_FRAME) throw new Error(`shell frame of ${n} bytes`);
  const body = exactly(n);
  return body === null ? null : shellPlanOf(body);
}

/**
 * Nothing the seed holds may reach the container. Every fd is close-on-exec, and, before
 * that, every fd but this child's own pipes is replaced by /dev/null (sealInheritedFds): a
 * process in the container with CAP_SYS_PTRACE can seize this child before its execve
 * (non-dumpable stops only tracers without it) and take its fds with pidfd_getfd; it found
 * the seed's sockets, spored's log and idle container shells' plan pipes there, and ran a
 * plan of its own as host root. The fds cannot simply be closed: the JS running here still
 * needs libuv's internals (a young-generation GC posts a task through the loop's eventfd,
 * and libuv aborts if that write fails); on /dev/null the write succeeds. The IPC channel
 * to spored goes with the rest, so spored sees the seed's EOF even while sandboxes are
 * parked waiting for Start.
 */
function closeInheritedFds(s: ContainerSys, keep: readonly number[]): void {
  s.closeFrom(3, true);
  s.sealInheritedFds(keep);
}

interface OpenStdio { fds: [number, number, number]; terminal: boolean; /** pty to open inside, later */ inside?: boolean }

// Host paths are opened before any namespace or root change, then parked at 100 or above
// (the lowest free numbers there: F_DUPFD, never dup3 onto a fixed number, which would
// replace an fd the child inherited there, such as its start or status pipe when the seed
// holds many fds) so the container's own setup cannot clobber them; they become 0/1/2
// right before exec.
function openStdio(s: ContainerSys, p: ProcessPlan): OpenStdio {
  const park = (fd: number): number => { const to = s.dupAt(fd, 100); s.close(fd); return to; };
  if (p.stdio.terminal === CONSOLE_INSIDE) return { fds: [-1, -1, -1], terminal: true, inside: true };
  if (p.stdio.terminal) {
    const fd = park(s.open(p.stdio.terminal, O.RDWR | O.NOCTTY));
    return { fds: [fd, fd, fd], terminal: true };
  }
  const openOne = (path: string, flags: number): number =>
    park(path ? s.open(path, flags) : s.open('/dev/null', O.RDWR));
  // The client already holds the read side of stdout/stderr, so these opens return at once.
  // O_APPEND: a file:// log is appended to, as containerd's shims do.
  const out = openOne(p.stdio.stdout, O.WRONLY | O.APPEND);
  const err = p.stdio.stderr && p.stdio.stderr === p.stdio.stdout ? out : openOne(p.stdio.stderr, O.WRONLY | O.APPEND);
  // Non-blocking open: a client whose own stdin is already at EOF never opens its writer
  // (containerd's fifo package cancels the pending open), so a blocking open would hang.
  // Until a writer connects, reads see EOF — which is then exactly what the client meant.
  const inn = openOne(p.stdio.stdin, O.RDONLY | O.NONBLOCK);
  if (p.stdio.stdin) s.setNonblock(inn, false);
  return { fds: [inn, out, err], terminal: false };
}

function joinCgroup(s: ContainerSys, procs: string[]): void {
  for (const f of procs) s.writeFile(f, '0');
}

/**
 * /proc/self/fd/<dir>/<rest> paths for files that may not exist yet, anchored at their
 * nearest existing ancestor directory (opened now, while the host's cgroupfs is visible).
 */
function cgroupPathsViaFds(s: ContainerSys, files: string[]): string[] {
  const anchors = new Map<string, number>();
  return files.map((f) => {
    let dir = f.slice(0, f.lastIndexOf('/'));
    while (dir.length > 1 && !s.exists(dir)) dir = dir.slice(0, dir.lastIndexOf('/'));
    let fd = anchors.get(dir);
    if (fd === undefined) {
      fd = s.open(dir, O.PATH | O.DIRECTORY | O.CLOEXEC);
      anchors.set(dir, fd);
    }
    return `/proc/self/fd/${fd}${f.slice(dir.length)}`;
  });
}

/** How long a child waits for spored's join before it joins itself (plan.joinedBySpored). */
export const AWAIT_JOIN_MS = 1000;

/**
 * The join spored makes for us (plan.joinedBySpored): it writes our pid into each hierarchy's
 * cgroup.procs, in order, the first from a thread of its own, as soon as the cgroup exists,
 * while we set up; the first write of a quiet moment waits out an RCU grace period
 * (cgroup_threadgroup_rwsem goes into writer mode), 0.4-17 ms on 2-CPU PVM guests, and now that
 * wait overlaps our mounts instead of following them. Done when the last file lists us
 * (cgroup.procs shows pids in the reader's pid namespace, as getpid gives ours). A
 * write of our own after that would wait for a grace period again, so none is made; only if
 * spored's join has not come after AWAIT_JOIN_MS (a spored that died meanwhile, a write that
 * failed) do we join ourselves, and so meet any error of it here, as before. True when we did.
 */
function awaitJoin(s: ContainerSys, procs: string[]): boolean {
  const last = procs[procs.length - 1];
  if (last === undefined) return false;
  // getpid, not /proc/self: a spec may mount the host's /proc over the container's
  const self = String(s.getpid());
  const until = Date.now() + AWAIT_JOIN_MS;
  const nap = new Int32Array(new SharedArrayBuffer(4));
  while (Date.now() < until) {
    let listed = '';
    try { listed = s.readFile(last); } catch { /* not made yet */ }
    if (listed.split('\n').includes(self)) return false;
    Atomics.wait(nap, 0, 0, 0.1);
  }
  joinCgroupWhenReady(s, procs);
  return true;
}

/**
 * spored creates the cgroup while we set up; it is there long before we get here, mostly.
 * ENOENT: not made yet; ENOSPC: a v1 cpuset made but its cpus/mems not copied in yet.
 */
function joinCgroupWhenReady(s: ContainerSys, procs: string[]): void {
  const until = Date.now() + 2000;
  for (const f of procs) {
    for (;;) {
      try { s.writeFile(f, '0'); break; } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if ((code !== 'ENOENT' && code !== 'ENOSPC') || Date.now() > until) throw e;
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1);
      }
    }
  }
}

// --- init: new container ------------------------------------------------------------

/**
 * `enterPidNs`: called with an fd of the pid namespace to join, once every other namespace
 * is entered (the mount namespace a copy of the host's, still), when the plan joins one by
 * path; it forks, and only its child returns (forkIntoPidNs). The mounts come after it:
 * proc shows the pid namespace of the process that mounts it.
 */
function setupContainer(s: ContainerSys, plan: InitPlan, late: boolean, warnings: string[], mark: (name: string) => void, enterPidNs: (fd: number | null) => void, beforePivot: () => void = () => undefined, userNs: (() => void) | null = null, lateJoin: () => void = () => undefined): void {
  // (the network and IPC namespaces the early steps made are not made again)
  const early = earlyStepsOf(plan);
  const madeEarly = (n: NamespaceStep): boolean => n.path === null && ((n.type === 'network' && early.includes('net')) || (n.type === 'ipc' && early.includes('ipc')));
  const pidNs = phase('namespaces', () => enterNamespaces(s, plan.namespaces.filter((n) => !madeEarly(n) && !(late && n.type === 'cgroup' && n.path === null)), userNs));
  if (pidNs !== null) enterPidNs(pidNs === 'unshared' ? null : pidNs);
  mark('namespaces');
  const ownMountNs = plan.namespaces.some((n) => n.type === 'mount');
  if (!ownMountNs) throw new PhaseError('namespaces', new Error('a mount namespace is required'));
  const sharedRoot = (plan.rootPropagation & MS.SHARED) !== 0;
  phase('rootfs', () => {
    s.mount(null, '/', null, plan.rootPropagation | MS.REC, null);
    // pivot_root refuses a new root whose parent mount is shared (EINVAL), and a bind made
    // under a shared parent would show on the host: with a shared root propagation the
    // rootfs's parent mount is made private first (runc: rootfsParentMountPrivate)
    if (sharedRoot) s.mount(null, parentMountOf(s, plan.rootfs), null, MS.PRIVATE, null);
    try {
      s.mount(plan.rootfs, plan.rootfs, null, MS.BIND | MS.REC, null);
    } catch (e) {
      // as root of a user namespace this process is the mapped host uid, which must be able
      // to search every directory down to the rootfs (runc's init fails the same way)
      if (!(e instanceof SyscallError && e.errno === 13 && inUserNs(plan))) throw e;
      const host = plan.userNs?.uidMappings.find((m) => m.containerID === 0)?.hostID;
      throw new Error(`${e.message}: the user namespace's root (${host === undefined ? 'its host uid' : `host uid ${host}`}) cannot reach ${plan.rootfs}; every directory above it must be searchable by that uid (containerd makes its state directory 0711)`);
    }
  });
  for (const m of plan.mounts) {
    // the cgroup hierarchy shows the container's own cgroup (v1: its dirs are bound; v2: the
    // cgroup namespace's root): with a late cgroup, spored has made it and joined us only
    // then, so the join comes here instead of at the end of set-up
    if (m.type === 'cgroup' || m.type === 'cgroup2') lateJoin();
    phase(`mount ${m.destination}`, () => doMount(s, plan.rootfs, m, warnings, inUserNs(plan)));
  }
  mark('mounts');
  phase('devices', () => createDevices(s, plan.rootfs, plan.devices, plan.mounts, inUserNs(plan)));
  mark('devices');
  beforePivot();
  phase('pivot_root', () => {
    s.chdir(plan.rootfs);
    s.pivotRoot('.', '.');
    // the old root (now on top of "."), rslave before it is detached, so that its unmount
    // cannot reach the host through a shared propagation (runc does the same)
    if (sharedRoot) s.mount(null, '.', null, MS.SLAVE | MS.REC, null);
    s.umount2('.', MNT_DETACH);
    s.chdir('/');
    // the propagation asked for, on the new root itself (its bind was made private)
    if (sharedRoot) s.mount(null, '/', null, plan.rootPropagation | MS.REC, null);
  });
  mark('pivot');
  // runc creates a missing working directory (before the root goes read-only)
  phase('cwd', () => s.mkdirInRoot(plan.process.cwd, 0o755));
  if (plan.hostname !== null) phase('hostname', () => s.sethostname(plan.hostname ?? ''));
  if (plan.domainname !== null) phase('domainname', () => s.setdomainname(plan.domainname ?? ''));
  // runc's order: sysctls while /proc/sys is still writable, then read-only paths, then
  // masked ones (the mount table shows the order)
  for (const [k, v] of Object.entries(plan.sysctl)) phase(`sysctl ${k}`, () => s.writeFile('/proc/sys/' + k.replace(/\./g, '/'), v));
  for (const p of plan.readonlyPaths) phase(`readonly ${p}`, () => readonlyPath(s, p));
  for (const p of plan.maskedPaths) phase(`mask ${p}`, () => maskPath(s, p));
  // the mount point of the terminal's /dev/console (openConsole binds it once the pty exists),
  // made while the root may still be written, as runc's init makes it (0666, no umask)
  if (plan.process.stdio.terminal === CONSOLE_INSIDE) {
    phase('console', () => {
      const umask = s.umask(0);
      try { s.touch('/dev/console'); } finally { s.umask(umask); }
    });
  }
  if (plan.readonlyRoot) phase('readonly root', () => remountReadonly(s, '/'));
}

/**
 * The mount point of the mount `path` lies on (the longest mount point that is `path` or
 * one of its parents), from /proc/self/mountinfo; "/" when none is longer.
 */
function parentMountOf(s: ContainerSys, path: string): string {
  let best = '/';
  for (const line of s.readFile('/proc/self/mountinfo').split('\n')) {
    const mp = unescapeMountinfo(line.split(' ')[4] ?? '');
    if (mp.length > best.length && (path === mp || path.startsWith(`${mp}/`))) best = mp;
  }
  return best;
}

/** mountinfo's octal escapes (\040 for a space, ...) undone. */
function unescapeMountinfo(field: string): string {
  return field.replace(/\\(\d{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/**
 * Joins first (by fd, opened before anything changes; a user namespace before the rest, which
 * it may own), then one unshare for the rest. A new pid namespace is the seed's business (it
 * forks the child into it); a joined one is only opened here: its fd is returned for the
 * caller to enter last. With `userNs` (the plan makes a user namespace: becomeUserNsRoot), the
 * user namespace comes after the joins and before the unshare, so the new namespaces belong to
 * it; a joined pid namespace is entered before it, while this process is still root on the
 * host. In a user namespace, made or joined, the new pid namespace is made here too, owned by
 * it ('unshared': the caller forks into it), and this process becomes root inside after the
 * unshare (runc's init: setuid(0), setgid(0), setgroups(0) in its last stage). Null: no pid
 * namespace to enter.
 */
function enterNamespaces(s: ContainerSys, steps: NamespaceStep[], userNs: (() => void) | null = null): number | 'unshared' | null {
  const pidStep = steps.find((n) => n.type === 'pid' && n.path !== null);
  let pidNs: number | 'unshared' | null = pidStep ? s.open(pidStep.path ?? '', O.RDONLY | O.CLOEXEC) : null;
  const joins = steps.filter((n) => n.path !== null && n.type !== 'pid').sort((a, b) => Number(b.type === 'user') - Number(a.type === 'user'));
  const fds = joins.map((n) => ({ n, fd: s.open(n.path ?? '', O.RDONLY | O.CLOEXEC) }));
  for (const { n, fd } of fds) {
    s.setns(fd, NS_FLAG[n.type]);
    s.close(fd);
  }
  let flags = 0;
  for (const n of steps) if (n.path === null && n.type !== 'pid' && n.type !== 'user') flags |= NS_FLAG[n.type];
  const joinedUserNs = steps.some((n) => n.type === 'user' && n.path !== null);
  if (userNs) {
    if (typeof pidNs === 'number') { s.setns(pidNs, CLONE.NEWPID); s.close(pidNs); pidNs = 'unshared'; }
    userNs();
  }
  if ((userNs || joinedUserNs) && steps.some((n) => n.type === 'pid' && n.path === null)) { flags |= CLONE.NEWPID; pidNs = 'unshared'; }
  if (flags) s.unshare(flags);
  // root's group inside only now, as runc's init takes it after its unshare: the ipc
  // namespace's mqueue root is owned by the group of the process that made it (a joined
  // namespace's root uid too: until now this process was the host's root, unmapped in there)
  if (userNs || joinedUserNs) {
    s.setgroups([]);
    s.setresgid(0);
    if (joinedUserNs) s.setresuid(0);
  }
  // a new network namespace comes with its loopback up, as runc's does (its "loopback"
  // network for a namespace it creates)
  if (flags & CLONE.NEWNET) s.loopbackUp();
  return pidNs;
}

/**
 * A user namespace of the container's own, and this process root in it (runc's nsexec:
 * unshare, the parent writes the maps, setresuid(0)): it unshares the namespace, reports
 * `userns` and waits for the seed to write the id maps (one byte on the start pipe; EOF: the
 * Create was aborted), then takes uid 0 inside (gid 0 follows the other namespaces'
 * unshare: enterNamespaces). From here its capabilities are the new namespace's only, and
 * files it makes are owned by the mapped root.
 */
function becomeUserNsRoot(s: ContainerSys, statusFd: number, startFd: number): void {
  s.unshare(CLONE.NEWUSER);
  report(s, statusFd, { s: 'userns' });
  if (s.read(startFd, 1).length === 0) s.exit(0);
  s.setresuid(0);
}

/**
 * Resolve `dest` inside `root` the way the kernel would after pivot_root: symlinks in
 * the (untrusted) rootfs are followed but clamped to the root, so a link like
 * /etc -> /../../host cannot make a mount land outside the container.
 */
export function secureJoin(root: string, dest: string, s: ContainerSys = realContainerSys, maxLinks = 40): string {
  const parts = dest.split('/').filter((p) => p && p !== '.');
  const resolved: string[] = [];
  let links = 0;
  while (parts.length) {
    const part = parts.shift() as string;
    if (part === '..') { resolved.pop(); continue; }
    const candidate = root + '/' + [...resolved, part].join('/');
    let st;
    try { st = s.lstat(candidate); } catch { resolved.push(part); continue; }
    if (st.isSymbolicLink()) {
      if (++links > maxLinks) throw new SyscallError('secure_join', 40, dest);
      const target = s.readlink(candidate);
      if (target.startsWith('/')) resolved.length = 0;
      parts.unshift(...target.split('/').filter((p) => p && p !== '.'));
      continue;
    }
    resolved.push(part);
  }
  return root + (resolved.length ? '/' + resolved.join('/') : '');
}

function ensureTarget(s: ContainerSys, target: string, asFile: boolean): void {
  if (s.exists(target)) return;
  if (asFile) {
    s.mkdir(target.slice(0, target.lastIndexOf('/')) || '/');
    s.touch(target);
  } else {
    s.mkdir(target);
  }
}

/** "/a//b/./c/" -> "/a/b/c" (no symlinks followed; ".." taken lexically) */
function normalizePath(p: string): string {
  const out: string[] = [];
  for (const part of p.split('/')) {
    if (!part || part === '.') continue;
    if (part === '..') out.pop(); else out.push(part);
  }
  return out.length ? `/${out.join('/')}` : '';
}

/** keyrings(7): the key's user may search it */
const KEY_USR_SEARCH = 0x00080000;

/** What may be bind-mounted inside /proc (runc's list: files lxcfs emulates). */
const VALID_PROC_MOUNTS = ['/proc/cpuinfo', '/proc/diskstats', '/proc/meminfo', '/proc/stat', '/proc/swaps', '/proc/uptime', '/proc/loadavg', '/proc/slabinfo', '/proc/sys/kernel/ns_last_pid', '/proc/sys/crypto/fips_enabled'];

/**
 * runc's rule (checkProcMount), on the resolved target (an image's symlinks can aim a mount
 * there): on /proc itself only a proc mount; inside it, only the lxcfs files.
 */
function checkProcMount(root: string, target: string, m: MountStep): void {
  const proc = `${root}/proc`;
  if (target !== proc && !target.startsWith(`${proc}/`)) return;
  if (target === proc) {
    if (m.type === 'proc' || (m.bind && m.source === '/proc')) return;
    throw new Error(`${JSON.stringify(m.destination)} cannot be mounted because it is not of type proc`);
  }
  if (VALID_PROC_MOUNTS.includes(target.slice(root.length))) return;
  throw new Error(`${JSON.stringify(m.destination)} cannot be mounted because it is inside /proc`);
}

function doMount(s: ContainerSys, root: string, m: MountStep, warnings: string[], inUserNs = false): void {
  const target = secureJoin(root, m.destination, s);
  // proc and sysfs only where the spec says, never where an image's symlink points (a proc
  // moved elsewhere would let a later bind land on its files: runc's CVE-2019-16884 rule)
  if ((m.type === 'proc' || m.type === 'sysfs') && target !== root + normalizePath(m.destination)) {
    throw new Error(`filesystem ${JSON.stringify(m.type)} must be mounted on ordinary directory (${m.destination} is a symlink in the image)`);
  }
  checkProcMount(root, target, m);
  if (m.type === 'cgroup' && m.cgroupV1) return mountCgroupV1(s, root, target, m);
  // every mount onto a path in the container's root is resolved again as it is made (mountInRoot)
  const mountAt = (source: string | null, fstype: string | null, flags: number, data: string | null): void => s.mountInRoot(root, source, target, fstype, flags, data);
  if (m.bind) {
    const srcIsFile = s.exists(m.source) && !s.stat(m.source).isDirectory();
    ensureTarget(s, target, srcIsFile);
    mountAt(m.source, null, m.flags, null);
    if (m.remountFlags) remountBind((f) => mountAt(null, null, f, null), m.remountFlags);
  } else {
    // a tmpfs over a directory of the image gets that directory's permissions, as runc gives
    // it (it chmods the new mount to the old mode, whatever the options said): a 0700
    // directory must not become a world-writable 1777 tmpfs
    let data = m.data || null;
    if (m.type === 'tmpfs' && s.exists(target)) {
      const st = s.stat(target);
      if (st.isDirectory()) data = withMountMode(data, st.mode & 0o7777);
    }
    ensureTarget(s, target, false);
    try {
      mountAt(m.source, m.type, m.flags, data);
    } catch (e) {
      // sysfs/mqueue refuse to mount when the namespace they belong to is the host's;
      // fall back to a read-only bind of the host's view, as runc does. Not in a user
      // namespace, where runc fails too: there the bind would show the host's whole /sys,
      // its cgroup trees among the submounts.
      if (e instanceof SyscallError && e.errno === 1 && (m.type === 'sysfs' || m.type === 'mqueue') && !inUserNs) {
        const hostPath = m.type === 'sysfs' ? '/sys' : '/dev/mqueue';
        mountAt(hostPath, null, MS.BIND | MS.REC, null);
        remountBind((f) => mountAt(null, null, f, null), MS.RDONLY | MS.NOSUID | MS.NODEV | MS.NOEXEC);
        warnings.push(`${m.destination}: ${m.type} bound from host (namespace not private)`);
      } else {
        throw e;
      }
    }
  }
  if (m.propagation) mountAt(null, null, m.propagation, null);
  // rro and the rest: on a bind mount and every mount below it (runc: mount_setattr,
  // AT_RECURSIVE; runc 1.1 applies them to bind mounts only, a tmpfs with rro stays writable)
  if (m.recursive && m.bind) s.mountSetattrInRoot(root, target, m.recursive.set, m.recursive.clr);
}

/** tmpfs mount data with its `mode=` set to `mode` (octal): in place of one given, else last. */
export function withMountMode(data: string | null, mode: number): string {
  const opts = (data ?? '').split(',').filter((o) => o !== '');
  const set = `mode=${mode.toString(8)}`;
  const i = opts.findIndex((o) => o.startsWith('mode='));
  if (i >= 0) opts[i] = set; else opts.push(set);
  return opts.join(',');
}

/** A bind remount with `flags` through `remount(flags)` (which adds MS_BIND | MS_REMOUNT's target). */
function remountBind(remount: (flags: number) => void, flags: number): void {
  // A remount must keep flags the kernel locked on the source mount; retry with the
  // usual locked ones added if the plain request is refused.
  const base = MS.BIND | MS.REMOUNT;
  const attempts = [flags, flags | MS.NOSUID | MS.NODEV | MS.NOEXEC, flags | MS.NOSUID | MS.NODEV];
  let last: unknown;
  for (const f of attempts) {
    try { remount(base | f); return; } catch (e) { last = e; }
  }
  throw last;
}

function mountCgroupV1(s: ContainerSys, root: string, target: string, m: MountStep): void {
  ensureTarget(s, target, false);
  s.mountInRoot(root, 'tmpfs', target, 'tmpfs', MS.NOSUID | MS.NODEV | MS.NOEXEC, 'mode=755');
  for (const c of m.cgroupV1 ?? []) {
    const dir = `${target}/${c.name}`;
    s.mkdir(dir);
    s.mountInRoot(root, c.hostDir, dir, null, MS.BIND, null);
    remountBind((f) => s.mountInRoot(root, null, dir, null, f, null), (m.remountFlags & MS.RDONLY) | MS.NOSUID | MS.NODEV | MS.NOEXEC);
    if (c.name.includes(',')) {
      for (const alias of c.name.split(',')) {
        if (!s.exists(`${target}/${alias}`)) s.symlink(c.name, `${target}/${alias}`);
      }
    }
  }
  // the tmpfs itself stays writable, the hierarchies read-only when asked (as runc mounts them)
}

const DEFAULT_LINKS: [string, string][] = [
  ['/proc/self/fd', '/dev/fd'],
  ['/proc/self/fd/0', '/dev/stdin'],
  ['/proc/self/fd/1', '/dev/stdout'],
  ['/proc/self/fd/2', '/dev/stderr'],
];

/**
 * The spec's device nodes in the container's /dev, and its default links. In a user namespace
 * mknod is refused: each node is then the host's node at the same path, bound onto an empty
 * file (runc: bindMountDeviceNode), keeping the host's owner and mode.
 */
function createDevices(s: ContainerSys, root: string, devices: DeviceNode[], mounts: MountStep[], inUserNs: boolean): void {
  // A /dev we just mounted as tmpfs holds nothing the image controls, so direct children
  // of it need no symlink-safe resolution.
  const freshDev = mounts.some((m) => m.destination === '/dev' && m.type === 'tmpfs');
  const join = (p: string): string => (freshDev && p.lastIndexOf('/') === 4 && p.startsWith('/dev/') ? root + p : secureJoin(root, p, s));
  // the modes exactly as asked (0666 for /dev/null and the rest): mknod applies the umask,
  // so it is 0 meanwhile, as in runc's createDevices
  const umask = s.umask(0);
  try {
    for (const d of devices) {
      const target = join(d.path);
      s.mkdir(target.slice(0, target.lastIndexOf('/')), 0o755);
      if (s.exists(target)) continue;
      if (inUserNs) {
        s.touch(target);
        s.mountInRoot(root, d.path, target, null, MS.BIND, null);
        continue;
      }
      const typeBits = d.type === 'b' ? 0o060000 : d.type === 'p' ? 0o010000 : 0o020000;
      s.mknod(target, typeBits | (d.mode & 0o7777), d.major, d.minor);
      s.chown(target, d.uid, d.gid);
    }
  } finally {
    s.umask(umask);
  }
  for (const [from, to] of DEFAULT_LINKS) {
    const target = join(to);
    try { s.symlink(from, target); } catch { /* exists in the image already */ }
  }
  if (mounts.some((m) => m.destination === '/dev/pts')) {
    const ptmx = join('/dev/ptmx');
    try {
      if (s.exists(ptmx) && !s.lstat(ptmx).isSymbolicLink()) {
        s.writeFile(ptmx, '', 'r+');
      }
    } catch { /* a device node we cannot touch; leave it */ }
    if (!s.exists(ptmx)) s.symlink('pts/ptmx', ptmx);
  }
}

function maskPath(s: ContainerSys, path: string): void {
  let st;
  try { st = s.stat(path); } catch { return; }
  if (st.isDirectory()) s.mount('tmpfs', path, 'tmpfs', MS.RDONLY, null);
  else s.mount('/dev/null', path, null, MS.BIND, null);
}

function readonlyPath(s: ContainerSys, path: string): void {
  if (!s.exists(path)) return;
  s.mount(path, path, null, MS.BIND | MS.REC, null);
  // keep nosuid/nodev/noexec of the mount it came from, as runc does (statfs flags)
  remountBind((f) => s.mount(null, path, null, f, null), MS.RDONLY | MS.REC | lockedFlagsOf(s, path));
}

/** MS_NOSUID|MS_NODEV|MS_NOEXEC of the mount at `path` (the topmost one), from mountinfo. */
function lockedFlagsOf(s: ContainerSys, path: string): number {
  let flags = 0;
  try {
    for (const line of s.readFile('/proc/self/mountinfo').split('\n')) {
      const f = line.split(' ');
      const mp = unescapeMountinfo(f[4] ?? '');
      if (mp !== path) continue;
      flags = 0;
      for (const o of (f[5] ?? '').split(',')) {
        if (o === 'nosuid') flags |= MS.NOSUID;
        else if (o === 'nodev') flags |= MS.NODEV;
        else if (o === 'noexec') flags |= MS.NOEXEC;
      }
    }
  } catch {
    /* no /proc: plain read-only */
  }
  return flags;
}

function remountReadonly(s: ContainerSys, path: string): void {
  remountBind((f) => s.mount(null, path, null, f, null), MS.RDONLY);
}

// --- exec: join a running container -------------------------------------------------

function joinContainer(s: ContainerSys, plan: ExecPlan): void {
  phase('namespaces', () => {
    // All fds first: once the mount namespace changes, /proc/<pid> on the host is gone.
    const order: NamespaceStep['type'][] = ['user', 'cgroup', 'ipc', 'uts', 'network', 'time', 'mount'];
    const steps = order
      .map((type) => plan.namespaces.find((n) => n.type === type))
      .filter((n): n is NamespaceStep => n !== undefined && n.path !== null);
    const fds = steps.map((n) => ({ n, fd: s.open(n.path ?? '', O.RDONLY | O.CLOEXEC) }));
    for (const { n, fd } of fds) {
      s.setns(fd, NS_FLAG[n.type]);
      s.close(fd);
    }
  });
}

// --- common tail --------------------------------------------------------------------

/**
 * An exec's user and groups must be mapped in the container's user namespace (the kernel
 * refuses setresuid to an unmapped id with EINVAL, after Start); checked against the
 * init's maps (/proc/<init>/uid_map, gid_map: "inside outside count" lines) so that the
 * exec fails before Start, as runc's does.
 */
function checkMapped(s: ContainerSys, initPid: number, p: ProcessPlan): void {
  const ranges = (file: string): [number, number][] => s.readFile(`/proc/${initPid}/${file}`).split('\n')
    .map((l) => l.trim().split(/\s+/).map(Number)).filter((f) => f.length === 3 && f.every(Number.isInteger))
    .map((f) => [f[0] as number, f[2] as number]);
  const mapped = (list: [number, number][], id: number): boolean => list.some(([inside, count]) => id >= inside && id < inside + count);
  const uids = ranges('uid_map');
  if (!mapped(uids, p.uid)) throw new Error(`uid ${p.uid} is not mapped in the container's user namespace`);
  const gids = ranges('gid_map');
  for (const gid of [p.gid, ...p.additionalGids]) {
    if (!mapped(gids, gid)) throw new Error(`gid ${gid} is not mapped in the container's user namespace`);
  }
}

function applyOomScore(s: ContainerSys, p: ProcessPlan, warnings: string[]): void {
  if (p.oomScoreAdj === null) return;
  try {
    s.writeFile('/proc/self/oom_score_adj', String(p.oomScoreAdj));
  } catch (e) {
    // Lowering the score needs CAP_SYS_RESOURCE, which root lacks on some hosts: run
    // with the inherited score rather than refuse the container.
    warnings.push(`oom_score_adj ${p.oomScoreAdj} not applied: ${(e as Error).message}`);
  }
}

function checkCwd(s: ContainerSys, cwd: string): void {
  let dir: boolean;
  try { dir = s.stat(cwd).isDirectory(); } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EACCES') return; // the user's own chdir decides
    throw new Error(`chdir to cwd (${JSON.stringify(cwd)}) set in config.json failed: ${code === 'ENOENT' ? 'no such file or directory' : (e as Error).message}`);
  }
  if (!dir) throw new Error(`chdir to cwd (${JSON.stringify(cwd)}) set in config.json failed: not a directory`);
}

function applyRlimits(s: ContainerSys, p: ProcessPlan): void {
  for (const r of p.rlimits) s.setrlimit(r.resource, r.soft, r.hard);
}


/**
 * The process's own credentials and context, up to what must wait for Start: signal
 * dispositions, session keyring, LSM labels for execve, cwd, the capability bounding set,
 * user and groups, capabilities, umask, no_new_privs, and a seccomp filter that must go in
 * while CAP_SYS_ADMIN is held. Throws PhaseError.
 */
function finalize(s: ContainerSys, p: ProcessPlan, containerId: string, init: boolean): void {
  // Node ignores SIGPIPE and SIGXFSZ; execve would pass that on (before seccomp: it may deny rt_sigaction)
  phase('signals', () => s.resetSignalsForExec());
  // the container's own session keyring, as runc's (_ses.<id>), not the seed's, which every
  // container would otherwise share. The init makes it searchable by its user, so that an
  // exec's join finds it rather than making another (runc: ModKeyringPerm, KEY_USR_SEARCH).
  // A kernel without keyrings (ENOSYS) goes without, as with runc.
  phase('keyring', () => {
    try {
      const ring = s.joinSessionKeyring(`_ses.${containerId}`);
      if (init) s.addKeyPermission(ring, KEY_USR_SEARCH);
    } catch (e) {
      if (!(e instanceof SyscallError && e.errno === 38)) throw e;
    }
  });
  // labels take effect at execve (runc: apparmor.ApplyProfile, selinux.SetExecLabel); spored
  // refused the spec already if the host has no such module (plan.ts checkLsm)
  if (p.apparmorProfile) {
    const v = `exec ${p.apparmorProfile}`;
    phase('apparmor', () => { try { s.writeFile('/proc/self/attr/apparmor/exec', v); } catch { s.writeFile('/proc/self/attr/exec', v); } });
  }
  if (p.selinuxLabel) { const v = p.selinuxLabel; phase('selinux', () => s.writeFile('/proc/self/attr/exec', v)); }
  let cwdDone = false;
  phase('cwd', () => {
    // no magic link on the way (a container's root can point the cwd at a stopped process's
    // /proc/<pid>/root, still the host's; this chdir runs with every capability)
    try { s.chdirInRoot(p.cwd); cwdDone = true; } catch (e) {
      if (!(e instanceof SyscallError && e.errno === 13)) throw e;
    }
  });
  // Without no_new_privileges a filter can only be installed while CAP_SYS_ADMIN is held,
  // so it goes in before the capability drop; with it, as late as possible.
  const earlySeccomp = p.seccomp !== null && !p.noNewPrivileges;
  if (earlySeccomp && p.seccomp) {
    const f = p.seccomp;
    phase('seccomp', () => s.seccomp(f.bpf, f.flags));
  }
  phase('capabilities', () => {
    for (let cap = 0; cap <= 63; cap++) {
      if ((p.caps.bounding >> BigInt(cap)) & 1n) continue;
      try { s.prctl(PR.CAPBSET_DROP, cap); } catch (e) {
        if (e instanceof SyscallError && e.errno === 22) break; // past the last cap
        throw e;
      }
    }
  });
  phase('user', () => {
    s.prctl(PR.SET_KEEPCAPS, 1);
    s.setgroups([...new Set(p.additionalGids)]);
    s.setresgid(p.gid);
    s.setresuid(p.uid);
    s.prctl(PR.SET_KEEPCAPS, 0);
  });
  if (!cwdDone) phase('cwd', () => s.chdirInRoot(p.cwd));
  phase('capabilities', () => {
    s.capset(p.caps.effective, p.caps.permitted, p.caps.inheritable);
    s.prctl(PR.CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL);
    for (const cap of p.caps.ambient) {
      try { s.prctl(PR.CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap); } catch { /* not in inheritable+permitted */ }
    }
  });
  s.umask(p.umask);
  if (p.noNewPrivileges) phase('no_new_privs', () => s.prctl(PR.SET_NO_NEW_PRIVS, 1));
}

/**
 * After Start (finalize made): `atExec` (the `exec` status line), the seccomp filter of a
 * no_new_privs process (as late as possible: what runs before it is ours), the startContainer
 * hooks, stdio, execve. Throws PhaseError; returns never.
 */
function execAfterStart(s: ContainerSys, p: ProcessPlan, stdio: OpenStdio, path: string, hooks: ChildHooks | undefined, atExec: () => void): never {
  // Whoever starts it may answer Start now, as `runc start` returns once its init has read the
  // exec fifo, before its startContainer hooks and its execve: the status pipe's EOF
  // (close-on-exec) comes only after the kernel has torn down this process's copy of the
  // seed's address space (2-2.6 ms here). Before the filter: one that kills on write(2) would
  // kill the process here (red team, helper-67).
  atExec();
  const earlySeccomp = p.seccomp !== null && !p.noNewPrivileges;
  if (p.seccomp && !earlySeccomp) {
    const f = p.seccomp;
    phase('seccomp', () => s.seccomp(f.bpf, f.flags));
  }
  // runc's place: after Start, as the process's user with its capabilities and filter, just
  // before execve. Start has answered by now: a failure ends the container, told on its stderr.
  const startHooks = hooks?.startContainer ?? [];
  if (hooks && startHooks.length > 0) {
    phase('startContainer hook', () => {
      try {
        runHooks(s, 'startContainer', startHooks, { ...hooks.state, status: 'created', pid: s.getpid() }, p.env);
      } catch (e) {
        try { s.write(stdio.fds[2], Buffer.from(`spore: ${(e as Error).message}\n`)); } catch { /* no stderr */ }
        throw e;
      }
    });
  }
  phase('stdio', () => {
    s.dup2(stdio.fds[0], 0);
    s.dup2(stdio.fds[1], 1);
    s.dup2(stdio.fds[2], 2);
    if (stdio.terminal) s.ioctl(0, TIOCSCTTY, 0);
  });
  return phase('exec', () => s.execve(path, p.args, p.env));
}

/**
 * process.env as runc's init hands it to execve: entries set one by one (a later duplicate
 * replaces the earlier one in place), then HOME, when unset or empty, from the user's
 * /etc/passwd entry in the container ("/" without one).
 */
export function execEnv(env: string[], uid: number, s: ContainerSys = realContainerSys): string[] {
  const out: string[] = [];
  const at = new Map<string, number>();
  for (const kv of env) {
    const eq = kv.indexOf('=');
    const k = eq < 0 ? kv : kv.slice(0, eq);
    const i = at.get(k);
    if (i !== undefined) out[i] = kv;
    else { at.set(k, out.length); out.push(kv); }
  }
  const h = at.get('HOME');
  if (h === undefined || out[h] === 'HOME=') {
    const kv = `HOME=${homeOf(s, uid)}`;
    if (h === undefined) out.push(kv);
    else out[h] = kv;
  }
  return out;
}

/**
 * The container's /etc/passwd is the container's to make: read as root, it is only read if
 * it is a regular file in the container's root and at most this long (a link to /dev/zero
 * grew the process without bound; a FIFO hung it). Otherwise HOME is "/", as without one.
 */
const MAX_PASSWD_BYTES = 16 << 20;

function homeOf(s: ContainerSys, uid: number): string {
  let text: string;
  try { text = s.readFileInRoot('/etc/passwd', MAX_PASSWD_BYTES); } catch { return '/'; }
  for (const line of text.split('\n')) {
    const f = line.trim().split(':');
    if (f.length >= 6 && f[2] !== '' && Number(f[2]) === uid) return f[5] ?? '/';
  }
  return '/';
}

/**
 * PATH lookup with the container's PATH (not the seed's), relative to the new root. Like
 * runc (Go's exec.LookPath): without a PATH, a name without a slash is not found, and one a
 * relative PATH entry finds is refused (ErrDot). A path with a slash (`./server`) is
 * relative to the process's working directory
 * `cwd`, as runc's init looks it up after its chdir (WORKDIR /app with CMD ["./server"]); the
 * path is returned as given, for an execve made in that directory.
 */
export function lookPath(file: string, env: string[], s: ContainerSys = realContainerSys, cwd = '/'): string {
  if (!file) throw new ExecLookupError(2, 'exec: no command: process.args is empty');
  const at = (p: string): string => (p.startsWith('/') ? p : `${cwd.endsWith('/') ? cwd : `${cwd}/`}${p}`);
  if (file.includes('/')) {
    let st;
    try { st = s.stat(at(file)); } catch { throw new ExecLookupError(2, `exec: ${JSON.stringify(file)}: stat ${file}: no such file or directory`); }
    if (!st.isFile()) throw new ExecLookupError(13, `exec: ${JSON.stringify(file)}: not a regular file`);
    try { s.access(at(file), X_OK); } catch { throw new ExecLookupError(13, `exec: ${JSON.stringify(file)}: permission denied`); }
    return file;
  }
  const pathVar = env.find((e) => e.startsWith('PATH='))?.slice(5) ?? '';
  for (const dir of pathVar ? pathVar.split(':') : []) {
    const candidate = `${dir || '.'}/${file}`;
    let found = false;
    try {
      s.access(at(candidate), X_OK);
      found = s.stat(at(candidate)).isFile();
    } catch { /* next */ }
    if (!found) continue;
    // Go's LookPath (runc is built with Go >= 1.19) refuses what a relative PATH entry finds
    // (ErrDot): the image's working directory would choose the program (helper-58)
    if (!dir.startsWith('/')) throw new ExecLookupError(2, `exec: ${JSON.stringify(file)}: cannot run executable found relative to current directory`);
    return candidate;
  }
  throw new ExecLookupError(2, `exec: ${JSON.stringify(file)}: executable file not found in $PATH`);
}

/**
 * The program of process.args[0] cannot be run: its errno (for the status report) with a
 * message worded as runc's ("exec: "x": executable file not found in $PATH"), not as a
 * syscall's.
 */
class ExecLookupError extends SyscallError {
  constructor(errno: number, message: string) {
    super('exec', errno);
    this.message = message;
  }
}

/**
 * Runs `hooks` of `kind` in order, each with `state` on its stdin; the first that fails
 * (exit status not 0, killed, past its timeout, not startable) throws, and the rest do not
 * run (runc's RunHooks). `env`: a hook's environment when it names none (runc's init passes
 * its own, the container process's).
 */
function runHooks(s: ContainerSys, kind: HookKind, hooks: readonly Hook[], state: OciState, env: string[]): void {
  const input = stateBytes(state);
  for (const [i, h] of hooks.entries()) {
    let r: { status: number | null; output: string };
    try {
      r = s.runProgram(h.path, h.args.length > 0 ? h.args : [h.path], h.env ?? env, input, hookTimeoutMs(h));
    } catch (e) {
      const where = kind === 'startContainer' ? ' (a startContainer hook runs in the container: its path is looked up in the container\'s root)' : '';
      throw new Error(hookFailure(kind, i, h, `cannot be started: ${(e as Error).message}${where}`, ''));
    }
    if (r.status === null) throw new Error(hookFailure(kind, i, h, `ran past its timeout of ${h.timeout ?? 0} s and was killed`, r.output));
    if (r.status !== 0) throw new Error(hookFailure(kind, i, h, describeWaitStatus(r.status), r.output));
  }
}
