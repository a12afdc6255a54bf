// The process engine's root seed: a resident, single-threaded Node process (started by
// spored with --single-threaded) that forks sandboxes. It holds what every fork needs
// prepared once (libc bindings, the child code already loaded, its own pid-namespace fd)
// and is the parent — and so the reaper — of every container init and exec process.
// Run only via SeedClient: `seed-main.js --socket PATH [--survive]`. It listens on PATH
// (0600) and serves one spored at a time over it (seed-channel.ts). With --survive (spored
// runs under a keeper) it outlives its spored: containers keep their parent and reaper, and
// exits that happen meanwhile are kept until the next spored acknowledges them. Without it,
// losing its spored ends it, as before. It keeps the container shells spored asks for
// (shells.ts): children forked ahead that a fitting Create is handed to instead of a fork.
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import { chmodSync, fstatSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import * as sys from '../../sys/libc.js';
import { childPids, parentPid } from '../../sys/proc.js';
import { READY_UNWRITABLE, isEarlyShape, runChild } from './container-init.js';
import { warmContainerSys } from './container-sys.js';
import { onJsonLines } from './lines.js';
import { SeedChannel } from './seed-channel.js';
import { ShellPool } from './shells.js';
import { SEED_FEATURES, SEED_PROTOCOL, forksIntoPidNs, idMapText, setupAllowanceMs, type ChildStatus, type ExitReport, type SeedReply, type SeedRequest, type SpawnPlan, type InitPlan } from './protocol.js';

interface Pending {
  pid: number;
  /** `pid` is the first child of a process that enters its pid namespace last (forksIntoPidNs), which exits once it reported the process's own pid */
  intermediate?: boolean;
  startW: number;
  /** the status pipe, read here; null while not read here (statusFd) */
  status: net.Socket | null;
  /**
   * Once the process is ready: the status pipe as a plain fd, not read here (detachStatus),
   * so that what the process reports at Start goes to whoever starts it; -1 while `status`
   * reads it.
   */
  statusFd: number;
  lines: ChildStatus[];
  waiter: ((s: ChildStatus | null) => void) | null;
  ended: boolean;
  /** paused for its runtime hooks (a `hooks` event sent): `resume` may write its byte */
  paused?: boolean;
  /**
   * a shell spored claimed ('shell-claims'): the seed counts as busy until it is started,
   * aborted or gone (drop), so the pool's refill (a fork, and the new shell's rehearsal) does
   * not take a CPU from the Create and Start it cannot see
   */
  claimed?: boolean;
  /** the set-up deadline (re-armed at resume) */
  deadline?: NodeJS.Timeout;
  rearm?: () => void;
}

const pending = new Map<string, Pending>();
let ownPidNs = -1;
let lastForkTimings: Record<string, number> = {};

let link: SeedChannel<SeedRequest, SeedReply> | null = null;
let linkSocket: net.Socket | null = null;
let server: net.Server | null = null;
let shells: ShellPool | null = null;

/** The fd under a net.Socket or net.Server (libuv's pipe handle), when there is one. */
function fdOf(h: net.Socket | net.Server | null): number[] {
  const fd = (h as unknown as { _handle?: { fd?: unknown } } | null)?._handle?.fd;
  return typeof fd === 'number' && fd > 2 ? [fd] : [];
}

/**
 * What the seed holds that a container shell must not keep: its links, other children's
 * pipes. The fds under sockets are read from their live handles, never remembered: libuv
 * closes a socket's fd on its own (a child's status pipe at EOF), and a remembered number
 * may by then belong to something else, such as the new shell's own pipes.
 */
function seedFds(): number[] {
  return [...fdOf(server), ...fdOf(linkSocket), ...[...pending.values()].flatMap((p) => [...(p.startW >= 0 ? [p.startW] : []), ...(p.statusFd >= 0 ? [p.statusFd] : []), ...fdOf(p.status)])];
}
/** exits not yet acknowledged by a spored, oldest first */
const unacked: ExitReport[] = [];
let exitSeq = 0;

function send(msg: SeedReply): void {
  link?.send(msg);
}

/** Answers go back on the link the request came on: a newer spored never gets an older one's replies. */
type Reply = (msg: SeedReply) => void;

function nextStatus(p: Pending): Promise<ChildStatus | null> {
  const first = p.lines.shift();
  if (first) return Promise.resolve(first);
  if (p.ended) return Promise.resolve(null);
  return new Promise((resolve) => { p.waiter = resolve; });
}

function watchStatus(p: Pending): void {
  const status = p.status;
  if (!status) return;
  const deliver = (msg: ChildStatus): void => {
    if (p.waiter) { const w = p.waiter; p.waiter = null; w(msg); } else p.lines.push(msg);
  };
  onJsonLines<ChildStatus>(status, deliver, (line) => deliver({ s: 'error', phase: 'protocol', message: `bad status line: ${line.slice(0, 200)}` }));
  const end = (): void => {
    p.ended = true;
    if (p.waiter) { const w = p.waiter; p.waiter = null; w(null); }
  };
  status.on('end', end);
  status.on('error', end);
  status.on('close', end);
}

/** Fork with pid_ns_for_children pointed at the plan's pid namespace, then reset it. */
function forkInto(plan: SpawnPlan, startR: number, statusW: number): number {
  let pidNsPath: string | null | undefined;
  // an exec, or an init joining a pod's pid namespace, enters it last, through a child of
  // its own (container-init.ts); so does one that makes its own user namespace, which must
  // own its new pid namespace
  if (forksIntoPidNs(plan)) pidNsPath = undefined;
  else {
    const step = plan.namespaces.find((n) => n.type === 'pid');
    pidNsPath = step ? step.path : undefined; // undefined: stay in the seed's pid ns
  }
  if (pidNsPath === null) sys.unshare(sys.CLONE.NEWPID);
  else if (pidNsPath !== undefined) {
    const fd = sys.open(pidNsPath, sys.O.RDONLY | sys.O.CLOEXEC);
    try { sys.setns(fd, sys.CLONE.NEWPID); } finally { sys.close(fd); }
  }
  try {
    const t0 = performance.now();
    // nothing between these two may allocate: a GC there can map a new MADV_DONTFORK heap
    // page after prepareFork's madvise, and the child faults on it (sys/libc.ts, prepareFork);
    // a performance.now() stamp sat here (its double is a heap allocation)
    sys.prepareFork();
    const pid = sys.fork();
    if (pid === 0) {
      // what a container sees in /proc/<pid>/cmdline until the execve: not the host's node
      // flags, install path and sockets
      process.title = 'spore-init';
      runChild(plan, startR, statusW);
    }
    lastForkTimings = { forkMs: performance.now() - t0 };
    return pid;
  } finally {
    if (pidNsPath !== undefined) sys.setns(ownPidNs, sys.CLONE.NEWPID);
  }
}

async function spawn(reply: Reply, seq: number, key: string, plan: SpawnPlan, noShell = false): Promise<void> {
  const t0 = performance.now();
  if (pending.has(key)) {
    reply({ type: 'reply', seq, ok: false, error: `${key} is already being created`, phase: 'seed' });
    return;
  }
  // a nonce the child names in its reports: a shell that already took another plan (a spored
  // that died after it wrote one, its claim read late) is told from this plan's
  if (plan.kind === 'init' && !noShell) plan = { ...plan, nonce: randomBytes(12).toString('base64url') };
  let pid: number;
  let startW: number;
  let statusR: number;
  let forkT: Record<string, number>;
  let handoffAt = 0;
  // a waiting container shell when one fits: the plan is on its pipe, no fork on this path
  const shell = plan.kind === 'init' && !noShell ? shells?.take(plan) ?? null : null;
  if (shell) {
    ({ pid, startW, statusR } = shell);
    handoffAt = performance.now();
    forkT = { shell: 1, handoffMs: handoffAt - t0 };
  } else {
    const [startR, sW] = sys.pipe();
    const [sR, statusW] = sys.pipe();
    try {
      pid = forkInto(plan, startR, statusW);
    } catch (e) {
      for (const fd of [startR, sW, sR, statusW]) sys.close(fd);
      reply({ type: 'reply', seq, ok: false, error: (e as Error).message, phase: 'fork' });
      return;
    }
    sys.close(startR);
    sys.close(statusW);
    startW = sW;
    statusR = sR;
    forkT = lastForkTimings;
  }
  // spored joins it to its cgroup while it sets up (protocol.ts, joinedBySpored)
  if (plan.kind === 'init' && plan.joinedBySpored === true && plan.lateCgroup === true && !forksIntoPidNs(plan)) reply({ type: 'pid', seq, pid });
  const p: Pending = { pid, startW, status: new net.Socket({ fd: statusR, readable: true, writable: false }), statusFd: -1, lines: [], waiter: null, ended: false, ...(forksIntoPidNs(plan) && !shell ? { intermediate: true } : {}) };
  watchStatus(p);
  pending.set(key, p);
  // a setup that never ends (a FIFO nobody opens, a hang in the kernel) is killed, not left
  // waiting with every capability: its Create fails. Hooks the child runs have time of their
  // own on top (none without a limit: runc waits for such a hook as long as it takes).
  const allowance = setupAllowanceMs(plan);
  const arm = (): void => {
    if (allowance === Infinity) return;
    p.deadline = setTimeout(() => {
      if (pending.get(key) !== p || p.lines.length > 0 || p.paused) return;
      process.stderr.write(`spore seed: ${key}: setup did not finish in ${allowance} ms; killed\n`);
      try { sys.kill(p.pid, 9); } catch { /* gone */ }
    }, allowance);
  };
  arm();
  let st = await nextStatus(p);
  if (shell && st && (st.s === 'ready' || st.s === 'hooks' || st.s === 'error') && st.n !== (plan as InitPlan).nonce) {
    // another plan's report: that shell is killed, this plan forked
    clearTimeout(p.deadline);
    try { sys.kill(p.pid, 9); } catch { /* gone */ }
    drop(key, p);
    process.stderr.write(`spore seed: ${key}: container shell ${p.pid} reported another plan's status; killed, forking instead\n`);
    await spawn(reply, seq, key, plan, true);
    return;
  }
  if (st && st.s === 'userns') {
    // the child unshared its user namespace; its maps need root on the host (user_namespaces(7):
    // CAP_SETUID/CAP_SETGID in the parent namespace), which is us, as runc's parent writes them
    const maps = plan.kind === 'init' ? plan.userNs : undefined;
    try {
      if (!maps) throw new Error('the child asked for id maps its plan does not have');
      writeFileSync(`/proc/${p.pid}/uid_map`, idMapText(maps.uidMappings));
      writeFileSync(`/proc/${p.pid}/gid_map`, idMapText(maps.gidMappings));
      sys.write(p.startW, Buffer.from([1]));
      st = await nextStatus(p);
    } catch (e) {
      try { sys.kill(p.pid, 9); } catch { /* gone */ }
      st = { s: 'error', phase: 'user namespace', message: `writing the id maps failed: ${(e as Error).message}` };
    }
  }
  if (p.intermediate) {
    // The process and its first child write on one pipe: its 'ready' can come before the
    // first child's 'pid' (under load an exec's did, and the exec was then tracked by the
    // first child's pid: its exit ended the exec). Hold a 'ready' until the 'pid'.
    let early: ChildStatus | null = null;
    while (st && (st.s === 'ready' || st.s === 'hooks')) { early = st; st = await nextStatus(p); }
    if (st && st.s === 'pid') {
      // The pid it reports is tracked, signalled and reaped as the process's from now on: it
      // must be that child's (or, the first child gone, ours as the subreaper). A process in
      // the container that took the first child over (CAP_SYS_PTRACE) could otherwise point
      // spored at any host process.
      const ppid = parentPid(st.pid);
      // (gone already: reaped here, so it was ours; its error is next on the pipe)
      const ours = ppid === p.pid || ppid === process.pid || (ppid === null && recentExits.has(st.pid));
      if (!ours) {
        st = { s: 'error', phase: 'fork', message: `the reported pid ${st.pid} is not the set-up's child (its parent is ${ppid ?? 'gone'})` };
      } else {
        pid = p.pid = st.pid;
        p.intermediate = false;
        st = early ?? await nextStatus(p);
      }
    }
  }
  if (st && st.s === 'hooks') {
    // spored runs prestart and createRuntime now, for as long as they take (their own
    // timeouts), then resumes the child (or aborts it); the set-up deadline starts again then
    clearTimeout(p.deadline);
    p.paused = true;
    reply({ type: 'hooks', seq, pid });
    p.rearm = arm;
    st = await nextStatus(p);
  }
  clearTimeout(p.deadline);
  if (st && st.s === 'ready') {
    // what the process reports from now on (at Start) is for whoever starts it: spored may,
    // through its own copy of the pipes (`started`), and a pipe's data goes to one reader
    detachStatus(p);
    const { planAt, ...marks } = st.t;
    // a shell's wake-up: from the plan's write to its read (one clock: the shell is a fork of this process)
    if (shell && planAt !== undefined) marks.wakeMs = planAt - handoffAt;
    reply({
      type: 'reply', seq, ok: true, pid, warnings: st.warnings, timings: { ...forkT, ...marks, readyMs: performance.now() - t0 },
      ...(typeof st.console === 'number' ? { console: st.console } : {}),
      ...(p.startW >= 0 && p.statusFd >= 0 ? { pipes: { start: p.startW, status: p.statusFd, ino: { start: fstatSync(p.startW).ino, status: fstatSync(p.statusFd).ino } } } : {}),
    });
    return;
  }
  drop(key, p);
  if (st && st.s === 'error') reply({ type: 'reply', seq, ok: false, error: st.message, phase: st.phase, ...(st.errno !== undefined ? { errno: st.errno } : {}) });
  else {
    const why = await exitOf(pid);
    reply({ type: 'reply', seq, ok: false, error: `sandbox process exited during setup (${why})`, phase: 'setup' });
  }
}

async function start(reply: Reply, seq: number, key: string, atExec = false): Promise<void> {
  const p = pending.get(key);
  if (!p) {
    reply({ type: 'reply', seq, ok: false, error: `${key} is not waiting to start`, phase: 'seed' });
    return;
  }
  try {
    sys.write(p.startW, Buffer.from([1]));
    // started: the pipe has done its work (and a started sandbox's exit no longer drops its entry)
    sys.close(p.startW);
    p.startW = -1;
  } catch (e) {
    drop(key, p);
    reply({ type: 'reply', seq, ok: false, error: `sandbox is gone: ${(e as Error).message}`, phase: 'start' });
    return;
  }
  attachStatus(p);
  // (a claimed shell's ready line is spored's to read; one left unread by a spored that died
  // is not the end of the execve)
  // Without atExec, Start answers once the process is the container's own program: the status
  // pipe is close-on-exec, so its EOF means execve happened (an init with poststart hooks).
  // What can still fail here (permissions, a seccomp profile denying execve) shows up as exit
  // status 127 with the reason on the container's stderr either way.
  // With atExec the answer goes at the process's `exec` line, on its way to its execve (as
  // `runc start` returns once its init has read the exec fifo): the teardown of its copy of
  // this seed (2-2.6 ms here) is not waited for; the pipe is read to its end all the same.
  let st = await nextStatus(p);
  let answered = false;
  while (st && (st.s === 'ready' || st.s === 'exec')) {
    if (st.s === 'exec' && atExec && !answered) { answered = true; reply({ type: 'reply', seq, ok: true, pid: p.pid }); }
    st = await nextStatus(p);
  }
  drop(key, p);
  if (st && st.s === 'error') process.stderr.write(`spore seed: ${key}: ${st.message.startsWith(st.phase) ? st.message : `${st.phase}: ${st.message}`}\n`);
  if (!answered) reply({ type: 'reply', seq, ok: true, pid: p.pid });
}

/**
 * spored claims an idle container shell for `key` and writes its plan itself ('shell-claims'):
 * accepted, from here on it is a sandbox of `key` waiting for Start, as after a spawn's ready
 * reply (start, started, abort, its exit). Its status pipe is not read here: spored reads it
 * until ready, and after that whoever starts it. Not idle here (killed, died, claimed by an
 * earlier spored): refused; spored kills it and forks the plan instead.
 */
function claim(reply: Reply, seq: number, key: string, pid: number, shape: readonly string[] | undefined): void {
  if (pending.has(key)) { reply({ type: 'reply', seq, ok: false, error: `${key} is already being created`, phase: 'claim' }); return; }
  const sh = shells?.claim(pid, shape && isEarlyShape(shape) ? shape : undefined);
  if (!sh) { reply({ type: 'reply', seq, ok: false, error: `container shell ${pid} is not idle`, phase: 'claim' }); return; }
  // (the set-up deadline is spored's, which reads the status; a claim a spored that died left
  // is aborted by the next one, which finds it in the hello's pending list and in no record)
  pending.set(key, { pid, startW: sh.startW, status: null, statusFd: sh.statusR, lines: [], waiter: null, ended: false, claimed: true });
  shells?.begin();
  reply({ type: 'reply', seq, ok: true, pid });
}

/** A sandbox paused for its runtime hooks goes on (protocol.ts ChildHooks.pause). */
function resume(reply: Reply, seq: number, key: string): void {
  const p = pending.get(key);
  if (!p || !p.paused || p.startW < 0) {
    reply({ type: 'reply', seq, ok: false, error: `${key} is not paused for hooks`, phase: 'seed' });
    return;
  }
  try {
    // the start pipe carries this byte and later Start's: the child reads one at each
    sys.write(p.startW, Buffer.from([1]));
  } catch (e) {
    reply({ type: 'reply', seq, ok: false, error: `sandbox is gone: ${(e as Error).message}`, phase: 'resume' });
    return;
  }
  p.paused = false;
  p.rearm?.();
  reply({ type: 'reply', seq, ok: true });
}

/**
 * Stop reading a ready process's status pipe: keep it as a plain fd (a duplicate; the
 * socket, which libuv reads ahead into its buffer whether paused or not, goes). Its number
 * stays valid until drop(), for spored to take a copy (the spawn reply's `pipes`).
 */
function detachStatus(p: Pending): void {
  const status = p.status;
  const fd = fdOf(status)[0];
  if (!status || fd === undefined || p.statusFd >= 0) return;
  p.statusFd = sys.dupFd(fd);
  status.removeAllListeners();
  status.on('error', () => undefined);
  status.destroy();
  p.status = null;
}

/** Read the status pipe again (the seed's own start). */
function attachStatus(p: Pending): void {
  if (p.statusFd < 0) return;
  p.status = new net.Socket({ fd: p.statusFd, readable: true, writable: false });
  p.statusFd = -1;
  p.lines = [];
  p.ended = false;
  watchStatus(p);
}

function drop(key: string, p: Pending): void {
  pending.delete(key);
  if (p.claimed) { p.claimed = false; shells?.end(); }
  if (p.startW >= 0) { sys.close(p.startW); p.startW = -1; }
  if (p.statusFd >= 0) { sys.close(p.statusFd); p.statusFd = -1; }
  p.status?.destroy();
}

function abort(reply: Reply, seq: number, key: string): void {
  const p = pending.get(key);
  if (p) {
    try { sys.kill(p.pid, 9); } catch { /* already gone */ }
    drop(key, p);
  }
  reply({ type: 'reply', seq, ok: true });
}

const exitWaiters = new Map<number, (status: number) => void>();
const recentExits = new Map<number, number>();

/** How a child that vanished during setup ended, for the error message. */
function exitOf(pid: number): Promise<string> {
  const describe = (st: number): string => ((st & 0x7f) ? `killed by signal ${st & 0x7f}`
    : ((st >> 8) & 0xff) === READY_UNWRITABLE ? `exit code ${READY_UNWRITABLE}: it could not write its ready report; does the spec's seccomp profile deny write(2) without noNewPrivileges?`
      : `exit code ${(st >> 8) & 0xff}`);
  const known = recentExits.get(pid);
  if (known !== undefined) return Promise.resolve(describe(known));
  return new Promise((resolve) => {
    const t = setTimeout(() => { exitWaiters.delete(pid); resolve('status unknown'); }, 1000);
    exitWaiters.set(pid, (st) => { clearTimeout(t); resolve(describe(st)); });
  });
}

/**
 * L0 -> L1: a language seed is a fork of this root seed that execs the language's seed
 * program (Node: seeds/node/language-seed.js with this process's V8 flags; Python: the
 * zygote). Exec, not a bare fork: function lineages are forked from L1 seeds, and nothing of
 * this process's memory (container specs, their environments) may reach function code.
 * Either connects to spored on its own; its exit reaches spored like any other child's.
 */
const NODE_SEED = new URL('../../seeds/node/language-seed.js', import.meta.url).pathname;

async function spawnSeed(reply: Reply, req: Extract<SeedRequest, { op: 'spawnSeed' }>): Promise<void> {
  const argv = req.language === 'node'
    ? [process.execPath, ...process.execArgv, NODE_SEED, req.socket, req.id]
    : [req.pythonBin, '-S', '-E', req.zygote, req.socket, req.id];
  let pid: number;
  try {
    sys.prepareFork();
    pid = sys.fork();
    if (pid === 0) {
      try {
        sys.closeFrom(3, true);
        // Node keeps its own stdio close-on-exec; the seed needs them (and logs there).
        for (const fd of [0, 1, 2]) sys.setCloexec(fd, false);
        sys.execve(argv[0] as string, argv, ['PATH=/usr/bin:/bin', 'LANG=C.UTF-8']);
      } catch {
        sys.exit(127);
      }
    }
  } catch (e) {
    reply({ type: 'reply', seq: req.seq, ok: false, error: (e as Error).message, phase: 'spawnSeed' });
    return;
  }
  reply({ type: 'reply', seq: req.seq, ok: true, pid });
}

function reapAll(): void {
  for (;;) {
    const r = sys.reapOne();
    if (!r) return;
    if (shells?.reaped(r.pid, r.status)) continue; // an idle container shell: the pool's business
    // a sandbox that died before its Start (killed, or failed): it can never start, so its
    // entry and start pipe go now (the id may be created again, as with runc)
    for (const [key, p] of pending) if (p.pid === r.pid && p.startW >= 0 && !p.intermediate) drop(key, p);
    shells?.activity();
    recentExits.set(r.pid, r.status);
    if (recentExits.size > 256) recentExits.delete(recentExits.keys().next().value as number);
    exitWaiters.get(r.pid)?.(r.status);
    exitWaiters.delete(r.pid);
    const report: ExitReport = { pid: r.pid, status: r.status, exitSeq: ++exitSeq, at: Date.now() };
    unacked.push(report);
    // a seed left alone for long keeps the newest exits (a pid's status is what matters)
    if (unacked.length > 65536) unacked.shift();
    send({ type: 'exit', ...report });
  }
}

function onRequest(ch: SeedChannel<SeedRequest, SeedReply>, req: SeedRequest): void {
  const reply: Reply = (m) => { ch.send(m); };
  // the shell pool refills only while the seed is quiet: a request in flight is not
  const busy = <T>(work: Promise<T> | T, plan = false): void => {
    shells?.begin(plan);
    void Promise.resolve(work).finally(() => shells?.end(plan));
  };
  switch (req.op) {
    case 'spawn': busy(spawn(reply, req.seq, req.key, req.plan), true); break;
    case 'start': busy(start(reply, req.seq, req.key, req.atExec === true)); break;
    case 'abort': busy(abort(reply, req.seq, req.key)); break;
    case 'resume': resume(reply, req.seq, req.key); break;
    case 'started': { const p = pending.get(req.key); if (p) drop(req.key, p); break; }
    case 'spawnSeed': busy(spawnSeed(reply, req)); break;
    case 'ping': reply({ type: 'reply', seq: req.seq, ok: true, pid: process.pid }); break;
    case 'ack': while (unacked.length && (unacked[0] as ExitReport).exitSeq <= req.exitSeq) unacked.shift(); break;
    case 'shells': shells?.setTarget(req.count); shells?.setDirect(req.direct === true); break;
    case 'claim': if (ch === link) claim(reply, req.seq, req.key, req.pid, req.shape); else shells?.killClaimed(req.pid); break;
    default: break;
  }
}

/** A spored connected: it replaces the previous one (a restarted spored), and hears what it missed. */
function onConnection(sock: net.Socket, survive: boolean): void {
  link?.close('replaced by a newer spored');
  const ch: SeedChannel<SeedRequest, SeedReply> = new SeedChannel<SeedRequest, SeedReply>(sock, (req) => onRequest(ch, req), () => {
    if (link !== ch) return;
    link = null;
    // spored gone: without a keeper nobody will come back for the containers; they keep
    // running (reparented) and `containerd-shim-spore-v2 delete` cleans up after them.
    if (!survive) process.exit(0);
    watchOrphaned();
  });
  link = ch;
  linkSocket = sock;
  // direct hand-offs are per spored: this one asks for them (a `shells` request) if it can
  shells?.setDirect(false);
  ch.send({ type: 'hello', protocol: SEED_PROTOCOL, pid: process.pid, survive, pending: [...pending].map(([key, p]) => ({ key, pid: p.pid })), exits: [...unacked], features: [...SEED_FEATURES] });
}

/**
 * A surviving seed whose spored does not come back (its keeper was stopped too, or the run
 * dir is gone) would otherwise wait forever with its idle shells. Once no spored has been
 * connected for ORPHAN_GRACE_MS and no container or exec is left (every child is a shell of
 * the pool), it exits. Containers are never given up: the check repeats until they are gone.
 */
const ORPHAN_GRACE_MS = (() => {
  // SPORE_SEED_ORPHAN_GRACE_MS: for tests (and operators who want a different wait), 1 s to 1 h
  const v = Number(process.env.SPORE_SEED_ORPHAN_GRACE_MS);
  return Number.isInteger(v) && v >= 1000 && v <= 3_600_000 ? v : 60_000;
})();
let orphanTimer: NodeJS.Timeout | null = null;
/** since when no spored has been connected (start-up counts: a spored may die before it connects) */
let alone = Date.now();
function watchOrphaned(): void {
  alone = Date.now();
  if (orphanTimer) return;
  orphanTimer = setInterval(() => {
    if (link) { clearInterval(orphanTimer as NodeJS.Timeout); orphanTimer = null; return; }
    if (Date.now() - alone < ORPHAN_GRACE_MS) return;
    const ours = new Set(shells?.pids() ?? []);
    const workloads = childPids(process.pid).filter((p) => !ours.has(p));
    if (workloads.length > 0 || pending.size > 0) return;
    process.stderr.write(`spore seed: no spored for ${ORPHAN_GRACE_MS / 1000} s and no container left; exiting\n`);
    process.exit(0);
  }, ORPHAN_GRACE_MS / 4);
}

function listen(path: string, survive: boolean): void {
  const tmp = `${path}.${process.pid}.tmp`;
  rmSync(tmp, { force: true });
  server = net.createServer((sock) => onConnection(sock, survive));
  server.listen(tmp, () => {
    chmodSync(tmp, 0o600);
    renameSync(tmp, path); // whoever connects finds a listening socket, never a half-made one
  });
  server.on('error', (e) => { process.stderr.write(`spore seed: ${path}: ${e.message}\n`); process.exit(1); });
}

function main(): void {
  const argv = process.argv.slice(2);
  const at = argv.indexOf('--socket');
  const socket = at >= 0 ? argv[at + 1] : undefined;
  if (!socket) { process.stderr.write('spore seed: --socket PATH is required\n'); process.exit(2); }
  const survive = argv.includes('--survive');
  process.on('exit', () => {
    shells?.killAll();
    // sandboxes never started are not containers yet: none outlives the seed (each holds
    // every capability until its Start)
    for (const p of pending.values()) if (p.startW >= 0) { try { sys.kill(p.pid, 9); } catch { /* gone */ } }
    try { rmSync(socket, { force: true }); } catch { /* best effort */ }
  });
  sys.prctl(sys.PR.SET_CHILD_SUBREAPER, 1);
  // Not dumpable, and so neither is any fork of it until its execve (the flag lives in the
  // mm and is copied at fork; execve resets it): a container init, an exec child or an idle
  // shell, forked into a container's pid namespace, holds this seed's memory and fds until
  // it execs, and must not be ptrace-attached, read through /proc/<pid>/mem or robbed with
  // pidfd_getfd by the container's root meanwhile (runc's init makes itself non-dumpable for
  // the same reason). spored and the keeper keep their access: CAP_SYS_PTRACE.
  sys.prctl(sys.PR.SET_DUMPABLE, 0);
  ownPidNs = sys.open('/proc/self/ns/pid', sys.O.RDONLY | sys.O.CLOEXEC);
  // before the first fork: every child and shell inherits the set-up's calls warm
  warmContainerSys();
  shells = new ShellPool({
    ownPidNs, seedFds, warn: (m) => process.stderr.write(`spore seed: ${m}\n`),
    offer: (sh) => send({
      type: 'shell', pid: sh.pid, fds: { plan: sh.planW, start: sh.startW, status: sh.statusR }, ahead: [...sh.ahead],
      ino: { plan: fstatSync(sh.planW).ino, start: fstatSync(sh.startW).ino, status: fstatSync(sh.statusR).ino },
    }),
    gone: (pid) => send({ type: 'shellGone', pid }),
  });
  process.on('SIGCHLD', reapAll);
  // its spored's terminal or log may go away with it; a write there must not kill the seed
  process.on('SIGPIPE', () => undefined);
  reapAll();
  listen(socket, survive);
  if (survive) watchOrphaned();
}

main();
