// The Node.js language seed (L1) and function seeds (L2). Speaks seeds/protocol.ts to
// spored over a unix socket it reads with recvmsg (messages carry fds).
//
// A seed's serving loop is synchronous (epoll over its link and its children's pidfds,
// through koffi): once a seed is ready its JS event loop never runs again, so function
// init code left running (timers, sockets, native immediates) cannot spin or write pages
// in the seed. The loop returns only in a freshly forked child, which then becomes what
// it was forked for: an instance (runs one request and _exits), a new function lineage
// (an L1's child: builds the sandbox, loads the function, serves as its L2 seed) or a
// replica of an L2 seed.
import { existsSync, readFileSync, writeFileSync, writeSync } from 'node:fs';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import * as sys from '../../sys/libc.js';
import { MAX_RESULT_BYTES, slotData, type FromSeed, type InstanceResult, type InvokeRequest, type LoadSpec, type SandboxPlan, type SlotLine, type ToSeed } from '../protocol.js';
import { forkNode, forkedAt, installForkAware } from './fork.js';
import { applySandbox, bindInstance, mountSlots, prepareInstanceLayer, prepareSpares, referenceFds, renewSpares, type FdReferences, type InstanceLayer } from './sandbox.js';

type Handler = (event: unknown, context: unknown, callback?: (err: unknown, value?: unknown) => void) => unknown;

interface Child {
  id: string;
  pid: number;
  pidfd: number;
  kind: 'instance' | 'seed';
}

/** The function an L2 seed serves. */
interface Loaded {
  handler: Handler;
  layer: InstanceLayer;
}

type ForkMsg = Extract<ToSeed, { t: 'fork' }>;
type SeedMsg = Extract<ToSeed, { t: 'seed' }>;

/** What a forked child becomes once it leaves its parent's loop. */
type Next =
  | { kind: 'instance'; msg: ForkMsg; channel: number; fn: Loaded }
  | { kind: 'lineage'; msg: SeedMsg & { load: LoadSpec; sandbox: SandboxPlan }; link: number; log: number; toParent: number; fromParent: number; refs: FdReferences }
  | { kind: 'replica'; id: string; link: number; fn: Loaded };

interface SeedRole {
  id: string;
  level: 1 | 2;
  link: number;
  fn: Loaded | null;
}

const us = (from: number): number => Math.round((performance.now() - from) * 1000);

/** fd of this process's own pid namespace (L1: to come back after forking into a new one). */
let ownPidNs = -1;

function send(link: number, m: FromSeed): void {
  try { sys.write(link, Buffer.from(JSON.stringify(m) + '\n')); } catch { /* spored is gone: the loop sees EOF */ }
}

/**
 * Serve as a seed until a fork makes this process something else; returns only in the
 * child. Exits the process when spored closes the link or says `exit`.
 */
function serve(role: SeedRole): Next {
  const ep = sys.epollCreate();
  sys.epollAdd(ep, role.link);
  const children = new Map<string, Child>();
  const byPid = new Map<number, Child>();
  const byPidfd = new Map<number, Child>();
  let buf = '';
  let queued: number[] = [];

  const take = (n: number): number[] | null => {
    if (queued.length < n) return null;
    const got = queued.slice(0, n);
    queued = queued.slice(n);
    return got;
  };
  const track = (c: Child): void => {
    children.set(c.id, c);
    byPid.set(c.pid, c);
    byPidfd.set(c.pidfd, c);
    sys.epollAdd(ep, c.pidfd);
  };
  /** In a fresh child: nothing of the seed's role may remain reachable. */
  const leave = (keep: number[]): void => {
    sys.close(ep);
    sys.close(role.link);
    for (const c of children.values()) sys.close(c.pidfd);
    for (const fd of queued) if (!keep.includes(fd)) sys.close(fd);
  };
  const shutdown = (): never => {
    for (const c of children.values()) { try { sys.kill(c.pid, 9); } catch { /* gone */ } }
    return sys.exit(0);
  };
  const reap = (): void => {
    for (;;) {
      const r = sys.reapOne();
      if (!r) return;
      const c = byPid.get(r.pid);
      if (!c) continue; // an orphan reparented to us (we are pid 1 of the lineage)
      byPid.delete(c.pid);
      byPidfd.delete(c.pidfd);
      children.delete(c.id);
      sys.epollDel(ep, c.pidfd);
      sys.close(c.pidfd);
      const signaled = (r.status & 0x7f) !== 0;
      send(role.link, { t: 'exit', id: c.id, pid: c.pid, code: signaled ? null : (r.status >> 8) & 0xff, signal: signaled ? r.status & 0x7f : null, timedOut: false });
    }
  };

  const forkInstance = (msg: ForkMsg, t0: number): Next | null => {
    const fds = take(1);
    if (!fds) { send(role.link, { t: 'forkFailed', id: msg.id, message: 'fork came without its channel fd' }); return null; }
    const [channel] = fds as [number];
    if (!role.fn || children.has(msg.id)) {
      sys.close(channel);
      send(role.link, { t: 'forkFailed', id: msg.id, message: role.fn ? 'duplicate id' : 'this seed has no function loaded; instances fork from a function (L2) seed' });
      return null;
    }
    let pid: number;
    try { pid = forkNode(); } catch (e) {
      sys.close(channel);
      send(role.link, { t: 'forkFailed', id: msg.id, message: (e as Error).message });
      return null;
    }
    if (pid === 0) {
      leave([channel]);
      return { kind: 'instance', msg, channel, fn: role.fn };
    }
    // the child holds this fork's stand-ins: whatever happens next here, the next fork gets new ones
    try {
      sys.close(channel);
      track({ id: msg.id, pid, pidfd: sys.pidfdOpen(pid), kind: 'instance' });
      send(role.link, { t: 'forked', id: msg.id, pid, forkUs: us(t0) });
    } finally {
      renewSpares();
    }
    return null;
  };

  const forkSeed = (msg: SeedMsg, t0: number): Next | null => {
    const fds = take(msg.nfds);
    if (!fds) { send(role.link, { t: 'forkFailed', id: msg.id, message: 'seed came without its fds' }); return null; }
    const fail = (why: string): null => { for (const fd of fds) sys.close(fd); send(role.link, { t: 'forkFailed', id: msg.id, message: why }); return null; };
    if (children.has(msg.id)) return fail('duplicate id');
    if (role.level === 1) {
      if (!msg.sandbox || !msg.load || fds.length !== 2) return fail('a function seed needs a sandbox plan, a module and two fds');
      return forkLineage({ ...msg, load: msg.load, sandbox: msg.sandbox }, fds[0] as number, fds[1] as number, t0, fail);
    }
    if (!role.fn) return fail('no function loaded');
    let pid: number;
    try { pid = forkNode(); } catch (e) { return fail((e as Error).message); }
    if (pid === 0) {
      leave(fds);
      return { kind: 'replica', id: msg.id, link: fds[0] as number, fn: role.fn };
    }
    try {
      sys.close(fds[0] as number);
      track({ id: msg.id, pid, pidfd: sys.pidfdOpen(pid), kind: 'seed' });
      send(role.link, { t: 'forked', id: msg.id, pid, forkUs: us(t0) });
    } finally {
      renewSpares();
    }
    return null;
  };

  /**
   * L1 -> a new function lineage: the child is pid 1 of a new pid namespace and builds the
   * sandbox itself; this (host) side writes its user namespace's id maps when asked, which
   * nothing inside could do.
   */
  const forkLineage = (msg: SeedMsg & { load: LoadSpec; sandbox: SandboxPlan }, link: number, log: number, t0: number, fail: (why: string) => null): Next | null => {
    const [upR, upW] = sys.pipe();
    const [downR, downW] = sys.pipe();
    let refs: FdReferences = new Map();
    let pid: number;
    try {
      sys.unshare(sys.CLONE.NEWPID);
      try {
        pid = forkNode(() => { refs = referenceFds(); });
      } finally {
        if (sys.getpid() !== 1) sys.setns(ownPidNs, sys.CLONE.NEWPID);
      }
    } catch (e) {
      for (const fd of [upR, upW, downR, downW]) sys.close(fd);
      return fail((e as Error).message);
    }
    if (pid === 0) {
      sys.close(upR);
      sys.close(downW);
      leave([link, log]);
      return { kind: 'lineage', msg, link, log, toParent: upW, fromParent: downR, refs };
    }
    for (const fd of [link, log, upW, downR]) sys.close(fd);
    track({ id: msg.id, pid, pidfd: sys.pidfdOpen(pid), kind: 'seed' });
    // The child asks once its user namespace exists; it may fail earlier (it reports that
    // itself), so a closed pipe or a timeout just ends the wait.
    try {
      if (sys.pollIn(upR, 10_000) && sys.read(upR, 1).length === 1) {
        const { hostId, size } = msg.sandbox.idmap;
        writeFileSync(`/proc/${pid}/uid_map`, `0 ${hostId} ${size}\n`);
        writeFileSync(`/proc/${pid}/gid_map`, `0 ${hostId} ${size}\n`);
        sys.write(downW, Buffer.from('k'));
      }
    } catch (e) {
      try { sys.kill(pid, 9); } catch { /* gone */ }
      send(role.link, { t: 'failed', id: msg.id, message: `writing the id maps failed: ${(e as Error).message}`, stack: null, phase: 'user namespace' });
    } finally {
      sys.close(upR);
      sys.close(downW);
    }
    send(role.link, { t: 'forked', id: msg.id, pid, forkUs: us(t0) });
    return null;
  };

  const handle = (msg: ToSeed, t0: number): Next | null => {
    switch (msg.t) {
      case 'fork': return forkInstance(msg, t0);
      case 'seed': return forkSeed(msg, t0);
      case 'kill': {
        const c = children.get(msg.id);
        if (c) { try { sys.kill(c.pid, 9); } catch { /* reaped next */ } }
        return null;
      }
      case 'stats': send(role.link, { t: 'stats', id: role.id, pid: process.pid, children: children.size }); return null;
      case 'slots': {
        const c = children.get(msg.id);
        try {
          if (role.level !== 1 || !c || c.kind !== 'seed') throw new Error(`no child lineage ${msg.id} here`);
          mountSlots(c.pid, msg.slotDir, msg.names, slotData(Math.floor(msg.bytes)), msg.renew === true);
          send(role.link, { t: 'slots', id: msg.id, count: msg.names.length });
        } catch (e) {
          send(role.link, { t: 'slots', id: msg.id, count: 0, error: `mounting /tmp slots failed: ${(e as Error).message}` });
        }
        return null;
      }
      case 'exit': return shutdown();
      default: return null;
    }
  };

  // pid 1 of a lineage also reaps orphans: it looks every second even without an event.
  // Any other seed sleeps until an event (its children's exits come as pidfd events): an
  // idle node's seeds wake nobody.
  const reapEveryMs = sys.getpid() === 1 ? 1000 : -1;
  for (;;) {
    const ready = sys.epollWait(ep, 64, reapEveryMs);
    let sawChild = ready.length === 0;
    for (const ev of ready) {
      if (ev.fd !== role.link) { sawChild = true; continue; }
      const t0 = performance.now();
      const r = sys.recvWithFds(role.link, 262144);
      queued.push(...r.fds);
      if (r.data.length === 0 && !r.wouldBlock) shutdown();
      buf += r.data.toString('utf8');
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        let msg: ToSeed;
        try { msg = JSON.parse(line) as ToSeed; } catch { continue; }
        const next = handle(msg, t0);
        if (next) return next;
      }
      if (buf.length > 1 << 20) shutdown(); // no message is that long: spored is not speaking the protocol
    }
    if (sawChild) reap();
  }
}

// --- becoming what a fork was for -----------------------------------------------------

/** Entry of a language seed (L1) forked from the root seed: connect, hello, serve. */
export async function runLanguageSeed(socket: string, id: string): Promise<void> {
  installForkAware();
  ownPidNs = sys.open('/proc/self/ns/pid', sys.O.RDONLY | sys.O.CLOEXEC);
  const link = sys.connectUnix(socket);
  send(link, { t: 'hello', id, pid: process.pid, language: 'node', level: 1 });
  send(link, { t: 'ready', id, initMs: 0 });
  await become(serve({ id, level: 1, link, fn: null }));
}

async function become(first: Next): Promise<void> {
  let next: Next = first;
  for (;;) {
    switch (next.kind) {
      case 'instance':
        return runInstance(next.msg, next.channel, next.fn);
      case 'replica':
        send(next.link, { t: 'ready', id: next.id, initMs: 0 });
        next = serve({ id: next.id, level: 2, link: next.link, fn: next.fn });
        continue;
      case 'lineage':
        next = serve(await startLineage(next));
        continue;
    }
  }
}

/**
 * In an L1's fresh child: build the sandbox, then (now unprivileged, filtered, pid 1 of
 * the lineage) run the function's init code once, and serve as its L2 seed.
 */
async function startLineage(n: Extract<Next, { kind: 'lineage' }>): Promise<SeedRole> {
  const t0 = performance.now();
  const id = n.msg.id;
  const fail = (message: string, stack: string | null, phase: string): never => {
    send(n.link, { t: 'failed', id, message, stack, phase });
    return sys.exit(1);
  };
  let layer: InstanceLayer;
  try {
    applySandbox(n.msg.sandbox, { link: n.link, log: n.log, toParent: n.toParent, fromParent: n.fromParent }, n.refs);
    layer = prepareInstanceLayer(n.msg.sandbox);
    Object.assign(process.env, readEnv(n.link));
    // nothing in the sandbox names where spore is installed on the host (the seed's script)
    process.argv.splice(1);
  } catch (e) {
    return fail(`sandbox: ${(e as Error).message}`, null, 'sandbox');
  }
  let handler: Handler;
  try {
    handler = await loadHandler(n.msg.load);
  } catch (e) {
    const err = errorOf(e);
    return fail(err.message, err.stack, 'load');
  }
  // an optimization only: init code that broke a global it uses shows up in the instances
  await warmInstancePath().catch(() => undefined);
  // No more Sparkplug (baseline) compiles from here on, in this seed, its replicas and its
  // instances (TurboFan stays on for hot handler code). V8 batches baseline compiles; the
  // batch the warm-up left queued, under its size threshold, was inherited by every instance,
  // which crossed the threshold and compiled the same batch again: 6 % of an instance's CPU
  // (perf, Node hello). A/B interleaved on a 2-CPU PVM guest: CPU per call -2 to -6 % (5 of
  // 5 rounds), c=24 +1 to +4 % (3 of 4), latency unchanged; a handler looping 3,000 times
  // took 0.4 ms (7 %) longer, one looping 30,000 times 5-10 % less.
  setFlagsFromString('--no-sparkplug');
  // Free malloc pages left over from init (compile zones): fewer entries for every fork.
  sys.mallocTrim();
  try { prepareSpares(); } catch (e) { return fail(`sandbox: ${(e as Error).message}`, null, 'sandbox'); }
  send(n.link, { t: 'ready', id, initMs: Math.round((performance.now() - t0) * 1000) / 1000 });
  return { id, level: 2, link: n.link, fn: { handler, layer } };
}

/**
 * The function's own env: the first line spored wrote on this lineage's own link (before
 * the seed message reached the L1 parent, so it is there already). Only strings pass.
 */
function readEnv(link: number): Record<string, string> {
  let text = '';
  for (;;) {
    const r = sys.recvWithFds(link, 65536);
    for (const fd of r.fds) sys.close(fd);
    if (r.data.length === 0) throw new Error('the link closed before the function env arrived');
    text += r.data.toString('utf8');
    const nl = text.indexOf('\n');
    if (nl < 0) { if (text.length > 1 << 20) throw new Error('the env message is too long'); continue; }
    if (nl !== text.length - 1) throw new Error('unexpected data after the env message');
    const m = JSON.parse(text.slice(0, nl)) as { t?: unknown; env?: unknown };
    if (m.t !== 'env' || typeof m.env !== 'object' || m.env === null) throw new Error('expected the env message first');
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(m.env as Record<string, unknown>)) if (typeof v === 'string') env[k] = v;
    return env;
  }
}

/**
 * The handler named by `load` (Lambda's MODULE.FUNCTION, already split): MODULE.js or
 * MODULE.cjs through require, MODULE.mjs (or a .js that is ESM) through import().
 */
async function loadHandler(load: LoadSpec): Promise<Handler> {
  const dir = load.module.slice(0, load.module.lastIndexOf('/') + 1);
  const req = createRequire(dir);
  let mod: Record<string, unknown> | undefined;
  const tried: string[] = [];
  for (const ext of ['.js', '.mjs', '.cjs']) {
    const file = load.module + ext;
    tried.push(file);
    if (!existsSync(file)) continue;
    try {
      mod = await loadModule(req, file, ext);
    } catch (e) {
      if (e instanceof Error) e.message = loadErrorMessage(e, file, dir);
      throw e;
    }
    break;
  }
  if (!mod) throw new Error(`cannot find the handler module: none of ${tried.join(', ')} exists in the package`);
  const h = mod[load.handler] ?? (mod.default as Record<string, unknown> | undefined)?.[load.handler];
  if (typeof h !== 'function') {
    // the module's path is the sandbox's (/var/task/...), not the user's file: say what it does export
    const exported = Object.keys(mod).filter((k) => typeof mod?.[k] === 'function');
    throw new Error(`${load.module} does not export a function named ${JSON.stringify(load.handler)} (${exported.length ? `it exports ${exported.map((k) => JSON.stringify(k)).join(', ')}` : 'it exports no function'}; set --handler to one of them)`);
  }
  return h as Handler;
}

/**
 * What the deployer sees of an error in the function's top level (`file`, in the package
 * `dir`): where in the package it happened, the first frame under `dir` (a syntax error says
 * where only in its stack's first line, "/var/task/index.js:3", and as ES module not at all:
 * then the file); without the stand-in module createRequire(dir) names the loader after
 * (`<dir>noop.js` in a missing module's require stack); and for a file that does not parse
 * and reads as Python, that it went to the wrong runtime.
 */
function loadErrorMessage(e: Error, file: string, dir: string): string {
  let message = e.message.split('\n').filter((l) => l !== `- ${dir}noop.js`).join('\n');
  const stack = e.stack ?? '';
  if (e instanceof SyntaxError) {
    message = `${message} (${/^(\/[^\n]*:\d+)\n/.exec(stack)?.[1] ?? file})`;
    let text = '';
    try { text = readFileSync(file, 'utf8').slice(0, 1 << 16); } catch { /* gone */ }
    if (/^\s*(def \w+\s*\(|import \w+\s*$|from [\w.]+ import )/m.test(text)) message += ' (this looks like Python: deploy it as a .py file or with --runtime python)';
    return message;
  }
  for (const line of stack.split('\n').slice(1)) {
    const at = line.indexOf(dir);
    if (at < 0) continue;
    const where = /^([^\s)]*?:\d+):\d+/.exec(line.slice(at))?.[1];
    if (!where) continue;
    // on the first line: a missing module's message goes on with its require stack
    const nl = message.indexOf('\n');
    return nl < 0 ? `${message} (${where})` : `${message.slice(0, nl)} (${where})${message.slice(nl)}`;
  }
  return message;
}

/** MODULE.mjs through import(), the rest through require (import() for a .js that is ESM). */
async function loadModule(req: NodeRequire, file: string, ext: string): Promise<Record<string, unknown>> {
  if (ext === '.mjs') return (await import(pathToFileURL(file).href)) as Record<string, unknown>;
  try {
    return req(file) as Record<string, unknown>;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ERR_REQUIRE_ESM') throw e;
    return (await import(pathToFileURL(file).href)) as Record<string, unknown>;
  }
}

function errorOf(e: unknown): { message: string; stack: string | null } {
  if (e instanceof Error) return { message: e.message, stack: e.stack ?? null };
  return { message: String(e), stack: null };
}

/**
 * Lines from the instance's channel (blocking reads): its /tmp slot, then its request; `fds`
 * collects the fds that came with them (the log pipe's, with the first line). EOF before a
 * line means spored destroyed the instance unused: exit quietly.
 */
function channelReader(fd: number): { line: () => string; fds: number[] } {
  let buf = '';
  const fds: number[] = [];
  const line = (): string => {
    for (;;) {
      const nl = buf.indexOf('\n');
      if (nl >= 0) {
        const l = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        return l;
      }
      const chunk = sys.recvWithFds(fd, 65536);
      for (const f of chunk.fds) fds.push(f);
      if (chunk.data.length === 0) return sys.exit(0);
      buf += chunk.data.toString('utf8');
    }
  };
  return { line, fds };
}

/**
 * stdout and stderr on the log pipe description spored sent for this instance alone (the
 * seed's is shared with every sibling: file status flags one handler set on it, such as
 * O_NONBLOCK, reached every later call).
 */
function ownLog(fds: number[]): void {
  const log = fds.shift();
  if (log === undefined) return;
  sys.dup2(log, 1);
  sys.dup2(log, 2);
  sys.close(log);
}

/** Lambda's context object for Node handlers. */
function contextOf(r: InvokeRequest): Record<string, unknown> {
  const c = r.context;
  return {
    functionName: c.functionName,
    functionVersion: c.functionVersion,
    awsRequestId: c.requestId,
    requestId: c.requestId,
    memoryLimitInMB: String(c.memoryLimitMiB),
    memoryLimitMiB: c.memoryLimitMiB,
    deadlineMs: c.deadlineMs,
    invokedFunctionArn: `arn:spore:function:${c.functionName}:${c.functionVersion}`,
    callbackWaitsForEmptyEventLoop: false,
    getRemainingTimeInMillis: (): number => Math.max(0, c.deadlineMs - Date.now()),
    remainingTimeMs: (): number => Math.max(0, c.deadlineMs - Date.now()),
  };
}

/** Run a handler that may be async or take Lambda's (event, context, callback). */
function call(h: Handler, event: unknown, ctx: Record<string, unknown>): Promise<unknown> {
  if (h.length >= 3) {
    return new Promise((resolve, reject) => {
      const r = h(event, ctx, (err, value) => (err ? reject(err instanceof Error ? err : new Error(String(err))) : resolve(value)));
      if (r && typeof (r as Promise<unknown>).then === 'function') (r as Promise<unknown>).then(resolve, reject);
    });
  }
  return Promise.resolve(h(event, ctx));
}

async function runInstance(msg: ForkMsg, channel: number, fn: Loaded): Promise<void> {
  const t0 = performance.now();
  const timings: InstanceResult['timings'] = { bind: 0, seccomp: 0, init: 0, execute: 0, startAt: performance.timeOrigin + forkedAt() };
  const finish = (r: Omit<InstanceResult, 'timings' | 't'>): never => {
    timings.doneAt = performance.timeOrigin + performance.now();
    timings.minflt = process.resourceUsage().minorPageFault;
    let line: string;
    try {
      line = JSON.stringify({ t: 'result', ...r, timings } satisfies InstanceResult);
    } catch (e) {
      line = JSON.stringify({ t: 'result', ok: false, value: null, error: { kind: 'internal', message: (e as Error).message, stack: null }, timings });
    }
    try { writeSync(channel, line + '\n'); } catch { /* spored gave up on us */ }
    return sys.exit(0);
  };
  // A handler whose promise never settles must run into its timeout, not let the loop
  // drain and exit quietly.
  setInterval(() => undefined, 1 << 30);
  // Node's own ways out (process.exit, an uncaught exception or rejection) would run its
  // shutdown in this forked process, which can crash (SIGSEGV) before anything is reported.
  // They end the call with the handler's error instead, as Lambda reports them.
  const handlerError = (message: string, e?: unknown): never => {
    timings.execute = tHandler > 0 ? us(tHandler) : 0;
    return finish({ ok: false, value: null, error: { kind: 'handler', ...(e === undefined ? { message, stack: null } : errorOf(e)), ...(e === undefined ? {} : { message: `${message}: ${errorOf(e).message}` }) } });
  };
  process.exit = ((code?: number | string | null) => handlerError(`the handler called process.exit(${code ?? ''}) (exit status ${Number(code ?? process.exitCode ?? 0)})`)) as typeof process.exit;
  process.on('uncaughtException', (e) => handlerError('uncaught exception', e));
  process.on('unhandledRejection', (e) => handlerError('unhandled promise rejection', e));
  let phase: 'internal' | 'handler' = 'internal';
  let tHandler = 0;
  try {
    const { line, fds } = channelReader(channel);
    let t = performance.now();
    const slot = (JSON.parse(line()) as SlotLine).slot;
    ownLog(fds);
    bindInstance(fn.layer, slot);
    timings.bind = us(t);
    // init: the child's own start (libuv loop fork, uniqueness re-init) until now
    timings.init = Math.round((t0 - forkedAt()) * 1000);
    const request = JSON.parse(line()) as InvokeRequest;
    t = performance.now();
    timings.requestAt = performance.timeOrigin + t;
    tHandler = t;
    phase = 'handler';
    const value = await call(fn.handler, JSON.parse(request.event) as unknown, contextOf(request));
    timings.execute = us(t);
    let json: string | undefined;
    try {
      json = JSON.stringify(value === undefined ? null : value);
    } catch (e) {
      return finish({ ok: false, value: null, error: { kind: 'handler', message: `the handler's result is not JSON-serializable: ${(e as Error).message}`, stack: null } });
    }
    const bytes = Buffer.byteLength(json ?? 'null');
    if (bytes > MAX_RESULT_BYTES) return finish({ ok: false, value: null, error: { kind: 'handler', message: `the handler's result is ${bytes} bytes; the limit is ${MAX_RESULT_BYTES} bytes (6 MiB)`, stack: null } });
    finish({ ok: true, value: json ?? 'null', error: null });
  } catch (e) {
    // the handler's own time only (from t0 it would hold bind and, parked, the wait for the call)
    timings.execute = timings.execute || (tHandler > 0 ? us(tHandler) : 0);
    finish({ ok: false, value: null, error: { kind: phase, ...errorOf(e) } });
  }
}

/** Entry when a language seed is started as its own process (tests): `seed <seeds.sock> <id>`. */
export async function main(argv: string[]): Promise<void> {
  const [socket, id] = argv;
  if (!socket || !id) {
    process.stderr.write('usage: seed <seeds.sock> <seed id>\n');
    process.exit(2);
  }
  await runLanguageSeed(socket, id);
}

/**
 * spore's own part of an instance's way (not the handler), run once in the function seed:
 * the lazy compiles, feedback vectors and hidden classes it makes are then made here, once,
 * instead of in every instance, where each is a copy-on-write page fault. Nothing leaves
 * this process: a pipe of its own, a stand-in handler.
 */
async function warmInstancePath(): Promise<void> {
  const [r, w] = sys.socketpair();
  // Node's own internals (timers, process events) come lazily compiled from its snapshot;
  // an instance uses these, so they are compiled here (and undone at once).
  const keepAlive = setInterval(() => undefined, 1 << 30);
  clearInterval(keepAlive);
  const onError = (): void => undefined;
  for (const ev of ['uncaughtException', 'unhandledRejection'] as const) process.on(ev, onError).off(ev, onError);
  try {
    const req: InvokeRequest = { event: '{"warm":1}', context: { functionName: 'warm', functionVersion: '0', requestId: '00000000-0000-4000-8000-000000000000', deadlineMs: Date.now() + 1000, memoryLimitMiB: 128 } };
    sys.sendWithFds(w, Buffer.from(`${JSON.stringify({ slot: '0'.repeat(32) })}\n${JSON.stringify(req)}\n`), [w]);
    const { line, fds } = channelReader(r);
    (JSON.parse(line()) as SlotLine).slot.length;
    for (const fd of fds.splice(0)) sys.close(fd);
    const request = JSON.parse(line()) as InvokeRequest;
    const ctx = contextOf(request);
    (ctx.getRemainingTimeInMillis as () => number)();
    const value = await call(async (e: unknown) => e, JSON.parse(request.event) as unknown, ctx);
    const json = JSON.stringify(value === undefined ? null : value);
    Buffer.byteLength(json ?? 'null');
    const timings: InstanceResult['timings'] = { bind: 1, seccomp: 0, init: 1, execute: 1, startAt: performance.timeOrigin + performance.now() };
    timings.doneAt = performance.timeOrigin + performance.now();
    timings.minflt = process.resourceUsage().minorPageFault;
    writeSync(w, JSON.stringify({ t: 'result', ok: true, value: json, error: null, timings } satisfies InstanceResult) + '\n');
    line();
  } finally {
    sys.close(r);
    sys.close(w);
  }
}
