// The process engine's root seed: a resident, single-threaded Node process (started by
// spored with --single-threaded) that forks sandboxes. It holds what every fork needs
// prepared once (libc bindings, the child code already loaded, its own pid-namespace fd)
// and is the parent — and so the reaper — of every container init and exec process.
// Run only via SeedClient; it talks to spored over the IPC channel.
import net from 'node:net';
import * as sys from '../../sys/libc.js';
import { runChild } from './container-init.js';
import { onJsonLines } from './lines.js';
import type { ChildStatus, SeedReply, SeedRequest, SpawnPlan } from './protocol.js';

interface Pending {
  pid: number;
  startW: number;
  status: net.Socket;
  lines: ChildStatus[];
  waiter: ((s: ChildStatus | null) => void) | null;
  ended: boolean;
}

const pending = new Map<string, Pending>();
let ownPidNs = -1;
let lastForkTimings: Record<string, number> = {};

function send(msg: SeedReply): void {
  if (process.send && process.connected) process.send(msg);
}

function nextStatus(p: Pending): Promise<ChildStatus | null> {
  const first = p.lines.shift();
  if (first) return Promise.resolve(first);
  if (p.ended) return Promise.resolve(null);
  return new Promise((resolve) => { p.waiter = resolve; });
}

function watchStatus(p: Pending): void {
  const deliver = (msg: ChildStatus): void => {
    if (p.waiter) { const w = p.waiter; p.waiter = null; w(msg); } else p.lines.push(msg);
  };
  onJsonLines<ChildStatus>(p.status, deliver, (line) => deliver({ s: 'error', phase: 'protocol', message: `bad status line: ${line.slice(0, 200)}` }));
  const end = (): void => {
    p.ended = true;
    if (p.waiter) { const w = p.waiter; p.waiter = null; w(null); }
  };
  p.status.on('end', end);
  p.status.on('error', end);
  p.status.on('close', end);
}

/** Fork with pid_ns_for_children pointed at the plan's pid namespace, then reset it. */
function forkInto(plan: SpawnPlan, startR: number, statusW: number): number {
  let pidNsPath: string | null | undefined;
  if (plan.kind === 'exec') pidNsPath = `/proc/${plan.targetPid}/ns/pid`;
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
    sys.prepareFork();
    const t1 = performance.now();
    const pid = sys.fork();
    if (pid === 0) runChild(plan, startR, statusW);
    lastForkTimings = { prepareMs: t1 - t0, forkMs: performance.now() - t1 };
    return pid;
  } finally {
    if (pidNsPath !== undefined) sys.setns(ownPidNs, sys.CLONE.NEWPID);
  }
}

async function spawn(seq: number, key: string, plan: SpawnPlan): Promise<void> {
  const t0 = performance.now();
  if (pending.has(key)) {
    send({ type: 'reply', seq, ok: false, error: `${key} is already being created`, phase: 'seed' });
    return;
  }
  const [startR, startW] = sys.pipe();
  const [statusR, statusW] = sys.pipe();
  let pid: number;
  try {
    pid = forkInto(plan, startR, statusW);
  } catch (e) {
    for (const fd of [startR, startW, statusR, statusW]) sys.close(fd);
    send({ type: 'reply', seq, ok: false, error: (e as Error).message, phase: 'fork' });
    return;
  }
  sys.close(startR);
  sys.close(statusW);
  const p: Pending = { pid, startW, status: new net.Socket({ fd: statusR, readable: true, writable: false }), lines: [], waiter: null, ended: false };
  watchStatus(p);
  pending.set(key, p);
  const forkT = lastForkTimings;
  const st = await nextStatus(p);
  if (st && st.s === 'ready') {
    send({ type: 'reply', seq, ok: true, pid, warnings: st.warnings, timings: { ...forkT, ...st.t, readyMs: performance.now() - t0 } });
    return;
  }
  drop(key, p);
  if (st && st.s === 'error') send({ type: 'reply', seq, ok: false, error: st.message, phase: st.phase, ...(st.errno !== undefined ? { errno: st.errno } : {}) });
  else {
    const why = await exitOf(pid);
    send({ type: 'reply', seq, ok: false, error: `sandbox process exited during setup (${why})`, phase: 'setup' });
  }
}

async function start(seq: number, key: string): Promise<void> {
  const p = pending.get(key);
  if (!p) {
    send({ type: 'reply', seq, ok: false, error: `${key} is not waiting to start`, phase: 'seed' });
    return;
  }
  try {
    sys.write(p.startW, Buffer.from([1]));
  } catch (e) {
    drop(key, p);
    send({ type: 'reply', seq, ok: false, error: `sandbox is gone: ${(e as Error).message}`, phase: 'start' });
    return;
  }
  // Start answers once the process is the container's own program: the status pipe is
  // close-on-exec, so its EOF means execve happened. Answering earlier let an exec right
  // after Start see the seed's code as pid 1. What can still fail here (permissions, a
  // seccomp profile denying execve) shows up as exit status 127 with the reason on the
  // container's stderr, as before.
  const st = await nextStatus(p);
  drop(key, p);
  if (st && st.s === 'error') process.stderr.write(`spore seed: ${key}: ${st.phase}: ${st.message}\n`);
  send({ type: 'reply', seq, ok: true, pid: p.pid });
}

function drop(key: string, p: Pending): void {
  pending.delete(key);
  if (p.startW >= 0) { sys.close(p.startW); p.startW = -1; }
  p.status.destroy();
}

function abort(seq: number, key: string): void {
  const p = pending.get(key);
  if (p) {
    try { sys.kill(p.pid, 9); } catch { /* already gone */ }
    drop(key, p);
  }
  send({ type: 'reply', seq, ok: true });
}

const exitWaiters = new Map<number, (status: number) => void>();
const recentExits = new Map<number, number>();

/** How a child that vanished during setup ended, for the error message. */
function exitOf(pid: number): Promise<string> {
  const describe = (st: number): string => ((st & 0x7f) ? `killed by signal ${st & 0x7f}` : `exit code ${(st >> 8) & 0xff}`);
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

async function spawnSeed(req: Extract<SeedRequest, { op: 'spawnSeed' }>): Promise<void> {
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
    send({ type: 'reply', seq: req.seq, ok: false, error: (e as Error).message, phase: 'spawnSeed' });
    return;
  }
  send({ type: 'reply', seq: req.seq, ok: true, pid });
}

function reapAll(): void {
  for (;;) {
    const r = sys.reapOne();
    if (!r) return;
    recentExits.set(r.pid, r.status);
    if (recentExits.size > 256) recentExits.delete(recentExits.keys().next().value as number);
    exitWaiters.get(r.pid)?.(r.status);
    exitWaiters.delete(r.pid);
    send({ type: 'exit', pid: r.pid, status: r.status });
  }
}

function main(): void {
  sys.prctl(sys.PR.SET_CHILD_SUBREAPER, 1);
  ownPidNs = sys.open('/proc/self/ns/pid', sys.O.RDONLY | sys.O.CLOEXEC);
  process.on('SIGCHLD', reapAll);
  process.on('message', (raw: unknown) => {
    const req = raw as SeedRequest;
    switch (req.op) {
      case 'spawn': void spawn(req.seq, req.key, req.plan); break;
      case 'start': void start(req.seq, req.key); break;
      case 'abort': abort(req.seq, req.key); break;
      case 'spawnSeed': void spawnSeed(req); break;
      case 'ping': send({ type: 'reply', seq: req.seq, ok: true, pid: process.pid }); break;
      default: break;
    }
  });
  // spored gone: the seed has nobody to report to. Containers keep running (they are
  // reparented); `containerd-shim-spore-v2 delete` cleans up after a dead daemon.
  process.on('disconnect', () => process.exit(0));
  reapAll();
  send({ type: 'ready', pid: process.pid });
}

main();
