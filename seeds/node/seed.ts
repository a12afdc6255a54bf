// The Node.js language seed (L1) and function seeds (L2). Speaks seeds/protocol.ts to
// spored. Forks instances (and child seeds) from itself; each instance binds its pooled
// resources, re-initializes uniqueness state, runs one request and _exits.
import net from 'node:net';
import { openSync, writeSync } from 'node:fs';
import Module, { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import * as sys from '../../runtime/sys/libc.js';
import type { Bind, FromSeed, InvokeRequest, ToSeed } from '../protocol.js';
import { forkNode, forkedAt } from './fork.js';
import { onJsonLines } from '../../runtime/lines.js';
import { MAX_RESULT_LINE } from '../../pools/result-fifos.js';
import { clipRuns, decodeRuns, encodeRuns, inheritFilePageTables, mergeRuns, ownFileRanges, populate, presentRuns, type FileRange, type PageRun, type PrefillMode } from '../prefill.js';

type Handler = (event: unknown, context: unknown) => unknown;

interface Instance {
  id: string;
  pid: number;
  /** the result pipe, when the result comes through the seed (else: spored's FIFO) */
  result: net.Socket | null;
  activateFd: number; // write end of the activation pipe, -1 when the request was attached
  timer: NodeJS.Timeout;
  timedOut: boolean;
}

export interface SeedOptions {
  socket: string;
  id: string;
  level: 1 | 2;
  load?: { module: string; handler: string } | undefined;
  /** L2: IPC + mount namespace shared by this function's lineage */
  lineageNamespaces?: boolean;
  /** a replica: the parent's loaded handler (nothing is loaded again) */
  preloaded?: Handler;
  /** L2: filter installed (with no_new_privs) before the function's init code runs */
  seccomp?: { filter: string; flags: number } | undefined;
  /** page-table prefill (seeds/prefill.ts); replicas keep their template's */
  prefill?: PrefillMode | undefined;
}

const requireFrom = createRequire(import.meta.url);
/** instances per seed whose touched file pages are recorded (prefill 'record') */
const RECORD_INSTANCES = 3;
/** Prefill state of this seed; children (replicas) inherit it with the address space. */
const prefill: { mode: PrefillMode; ranges: FileRange[] | null; toRecord: number; recorded: PageRun[]; records: number } = { mode: 'off', ranges: null, toRecord: 0, recorded: [], records: 0 };

/**
 * A child's record of the file pages it had mapped. Once all are in, the seed keeps
 * exactly their union mapped: what its children need and no more for fork to copy.
 */
function onTouched(runs: PageRun[]): void {
  const ranges = prefill.ranges;
  if (!ranges) return;
  prefill.recorded = mergeRuns([...prefill.recorded, ...clipRuns(runs, ranges)]);
  if (++prefill.records < RECORD_INSTANCES) return;
  for (const r of ranges) { try { sys.madviseRange(r.start, Number(r.end - r.start), sys.MADV.DONTNEED); } catch { /* unmapped */ } }
  populate(prefill.recorded);
}
/** intervals of this process's seed role, cleared when a fork leaves the role */
const activeIntervals = new Set<NodeJS.Timeout>();

interface CompilableModule { filename: string; paths: string[]; exports: unknown; loaded: boolean; _compile(code: string, filename: string): void }
type ModuleCtor = (new (id: string, parent: null) => CompilableModule) & { _nodeModulePaths(dir: string): string[] };

/** Compile a CommonJS module from source already read: its file may be hidden by now. */
function compileModule(filename: string, source: string): Record<string, unknown> {
  const M = Module as unknown as ModuleCtor;
  const m = new M(filename, null);
  m.filename = filename;
  m.paths = M._nodeModulePaths(dirname(filename));
  m._compile(source, filename);
  m.loaded = true;
  return m.exports as Record<string, unknown>;
}

function loadHandler(module: string, name: string, source?: string): Handler {
  const mod = (source !== undefined ? compileModule(module, source) : requireFrom(module)) as Record<string, unknown>;
  const h = mod[name] ?? (mod.default as Record<string, unknown> | undefined)?.[name];
  if (typeof h !== 'function') throw new Error(`${module} does not export a function named ${JSON.stringify(name)}`);
  return h as Handler;
}

function errorOf(e: unknown): { message: string; stack: string | null } {
  if (e instanceof Error) return { message: e.message, stack: e.stack ?? null };
  return { message: String(e), stack: null };
}

const us = (from: number): number => Math.round((performance.now() - from) * 1000);

export async function runSeed(opts: SeedOptions): Promise<void> {
  const t0 = performance.now();
  const instances = new Map<string, Instance>();
  const byPid = new Map<number, { kind: 'instance'; inst: Instance } | { kind: 'seed'; id: string }>();
  let handler: Handler | null = opts.preloaded ?? null;

  if (opts.prefill) prefill.mode = opts.prefill;
  const conn = net.connect(opts.socket);
  const send = (m: FromSeed): void => { conn.write(JSON.stringify(m) + '\n'); };
  await new Promise<void>((resolve, reject) => { conn.once('connect', resolve); conn.once('error', reject); });
  send({ t: 'hello', id: opts.id, pid: process.pid, language: 'node', level: opts.level });

  if (opts.load && !handler) {
    try {
      // Order matters: read the code, set up the lineage's mounts (the filter forbids
      // mount), filter ourselves, and only then run the function's init code.
      const source = readFileSync(opts.load.module, 'utf8');
      if (opts.lineageNamespaces && !opts.socket.startsWith('/proc/self/fd/')) {
        // Replicas forked from this seed must still reach spored after /tmp is replaced.
        opts.socket = socketViaDirFd(opts.socket);
        privateTmp();
      }
      if (opts.seccomp) {
        sys.prctl(sys.PR.SET_NO_NEW_PRIVS, 1);
        sys.seccompInstall(Buffer.from(opts.seccomp.filter, 'base64'), opts.seccomp.flags);
      }
      handler = loadHandler(opts.load.module, opts.load.handler, source);
    } catch (e) {
      const err = errorOf(e);
      send({ t: 'failed', id: opts.id, message: err.message, stack: err.stack });
      conn.end(() => sys.exit(1));
      return;
    }
  }

  // Exits of instances and child seeds; the handler is replaced in children.
  const onChild = (): void => {
    for (;;) {
      const r = sys.reapOne();
      if (!r) return;
      const who = byPid.get(r.pid);
      if (!who) continue;
      byPid.delete(r.pid);
      const code = (r.status & 0x7f) === 0 ? (r.status >> 8) & 0xff : null;
      const signal = (r.status & 0x7f) !== 0 ? r.status & 0x7f : null;
      if (who.kind === 'seed') {
        send({ t: 'exit', id: who.id, pid: r.pid, code, signal, timedOut: false });
        continue;
      }
      const inst = who.inst;
      clearTimeout(inst.timer);
      if (inst.activateFd >= 0) { sys.close(inst.activateFd); inst.activateFd = -1; }
      // Let the result pipe drain before reporting the exit, so result precedes exit.
      const report = (): void => {
        instances.delete(inst.id);
        send({ t: 'exit', id: inst.id, pid: r.pid, code, signal, timedOut: inst.timedOut });
      };
      const pipe = inst.result;
      if (!pipe || pipe.readableEnded || pipe.destroyed) report();
      else { pipe.once('close', report); setTimeout(() => pipe.destroy(), 1000).unref(); }
    }
  };
  process.on('SIGCHLD', onChild);
  // Belt and braces: under load a SIGCHLD wake-up can be lost in a forked loop, and an
  // unreported exit would hold its pooled resources for good.
  const poll = setInterval(onChild, 500);
  poll.unref();
  activeIntervals.add(poll);

  onJsonLines<ToSeed>(conn, (msg) => handle(msg));
  // spored is gone: nothing may outlive it.
  conn.on('close', () => {
    for (const pid of byPid.keys()) { try { sys.kill(pid, 9); } catch { /* gone */ } }
    sys.exit(0);
  });

  const handle = (msg: ToSeed): void => {
    switch (msg.t) {
      case 'fork': return forkInstance(msg);
      case 'activate': {
        const inst = instances.get(msg.id);
        if (inst && inst.activateFd >= 0) {
          try { sys.write(inst.activateFd, Buffer.from(JSON.stringify(msg.request) + '\n')); } catch { /* it died */ }
          sys.close(inst.activateFd);
          inst.activateFd = -1;
        }
        return;
      }
      case 'kill': {
        const inst = instances.get(msg.id);
        if (inst) { try { sys.kill(inst.pid, 9); } catch { /* gone */ } }
        return;
      }
      case 'seed': return forkSeed(msg);
      case 'stats': send({ t: 'stats', id: opts.id, pid: process.pid, children: byPid.size }); return;
      case 'exit': conn.destroy(); return;
      default: return;
    }
  };

  const forkInstance = (msg: Extract<ToSeed, { t: 'fork' }>): void => {
    const tf = performance.now();
    const record = prefill.toRecord > 0 && prefill.ranges !== null;
    // The result goes straight to spored's FIFO; a pipe through this seed only when there
    // is no slot, or to carry a prefill record.
    const fifo = msg.bind.resultSlot !== undefined && !record ? `${resultsDirOf(opts.socket)}${msg.bind.resultSlot}` : null;
    const [resR, resW] = fifo ? [-1, -1] : sys.pipe();
    const [actR, actW] = msg.request ? [-1, -1] : sys.pipe();
    let pid: number;
    try {
      pid = forkNode();
    } catch (e) {
      for (const fd of [resR, resW, actR, actW]) if (fd >= 0) sys.close(fd);
      send({ t: 'forkFailed', id: msg.id, message: errorOf(e).message });
      return;
    }
    if (pid === 0) {
      leaveSeed(conn, onChild);
      dropInherited(instances);
      if (resR >= 0) sys.close(resR);
      if (actW >= 0) sys.close(actW);
      void runInstance(msg, handler, { pipe: resW, fifo }, actR, record ? prefill.ranges : null);
      return;
    }
    if (record) prefill.toRecord--;
    const forkUs = us(tf);
    if (resW >= 0) sys.close(resW);
    if (actR >= 0) sys.close(actR);
    const inst: Instance = {
      id: msg.id, pid, activateFd: actW, timedOut: false,
      result: resR >= 0 ? new net.Socket({ fd: resR, readable: true, writable: false }) : null,
      timer: setTimeout(() => {
        inst.timedOut = true;
        try { sys.kill(pid, 9); } catch { /* gone */ }
      }, msg.timeoutMs),
    };
    instances.set(msg.id, inst);
    byPid.set(pid, { kind: 'instance', inst });
    if (inst.result) relayResult(inst.result, msg.id, pid, record);
    send({ t: 'forked', id: msg.id, pid, forkUs });
  };

  /**
   * Relay the result line as soon as it is complete: waiting for EOF would put the
   * child's exit (tearing down a forked Node) on the response path.
   */
  const relayResult = (pipe: net.Socket, id: string, pid: number, record: boolean): void => {
    let out = '';
    let answered = false;
    pipe.setEncoding('utf8');
    pipe.on('data', (d: string) => {
      out += d;
      for (let nl = out.indexOf('\n'); nl >= 0; nl = out.indexOf('\n')) {
        const line = out.slice(0, nl + 1);
        out = out.slice(nl + 1);
        const m = childLine(line, id);
        if (m?.t === 'result' && !answered) { answered = true; conn.write(line); }
        else if (m?.t === 'touched' && record) onTouched(decodeRuns(m.runs));
      }
      if (out.length > MAX_RESULT_LINE) { out = ''; try { sys.kill(pid, 9); } catch { /* gone */ } }
    });
    pipe.on('error', () => undefined);
  };

  const forkSeed = (msg: Extract<ToSeed, { t: 'seed' }>): void => {
    const tf = performance.now();
    let pid: number;
    try {
      pid = forkNode();
    } catch (e) {
      send({ t: 'forkFailed', id: msg.id, message: errorOf(e).message });
      return;
    }
    if (pid === 0) {
      leaveSeed(conn, onChild);
      dropInherited(instances);
      if (msg.env) Object.assign(process.env, msg.env);
      if (handler) {
        // A replica of a function seed: the function is loaded (and filtered) already;
        // it shares that state instead of running the init code again.
        void runSeed({ socket: opts.socket, id: msg.id, level: 2, preloaded: handler, prefill: msg.prefill });
        return;
      }
      const lineage = msg.load !== undefined;
      if (lineage) sys.unshare(sys.CLONE.NEWIPC | sys.CLONE.NEWNS);
      void runSeed({ socket: opts.socket, id: msg.id, level: msg.load ? 2 : opts.level, load: msg.load, lineageNamespaces: lineage, seccomp: msg.seccomp, prefill: msg.prefill });
      return;
    }
    byPid.set(pid, { kind: 'seed', id: msg.id });
    send({ t: 'forked', id: msg.id, pid, forkUs: us(tf) });
  };

  // Free malloc pages left over from init (compile zones): fewer entries for every fork.
  sys.mallocTrim();
  // Prefill once the seed's own initialization is done: its mappings are final by now.
  if (prefill.mode !== 'off' && !prefill.ranges) {
    prefill.ranges = ownFileRanges();
    inheritFilePageTables(prefill.ranges);
  }
  prefill.toRecord = prefill.mode === 'record' ? RECORD_INSTANCES : 0;
  prefill.records = 0;
  prefill.recorded = [];
  send({ t: 'ready', id: opts.id, initMs: Math.round((performance.now() - t0) * 1000) / 1000 });
}

/**
 * In a fresh child: the seed's other instances are not ours. Their pipes must not reach
 * handler code (it could read their results or write requests into parked ones).
 */
function dropInherited(instances: Map<string, Instance>): void {
  for (const other of instances.values()) {
    clearTimeout(other.timer);
    other.result?.destroy();
    if (other.activateFd >= 0) sys.close(other.activateFd);
  }
  instances.clear();
}

/**
 * A line from an instance's pipe. Handler code can write to that pipe too, so only a
 * result for this very instance (or its prefill record) is taken; anything else, e.g. a
 * line speaking for another instance or as the seed, is dropped.
 */
function childLine(line: string, id: string): { t: 'result' } | { t: 'touched'; runs: string } | null {
  let m: unknown;
  try { m = JSON.parse(line); } catch { return null; }
  if (typeof m !== 'object' || m === null) return null;
  const o = m as { t?: unknown; id?: unknown; runs?: unknown };
  if (o.id !== id) return null;
  if (o.t === 'result') return { t: 'result' };
  if (o.t === 'touched' && typeof o.runs === 'string') return { t: 'touched', runs: o.runs };
  return null;
}

/** In a freshly forked child: drop everything that belongs to the seed's role. */
function leaveSeed(conn: net.Socket, onChild: () => void): void {
  process.removeListener('SIGCHLD', onChild);
  for (const t of activeIntervals) clearInterval(t);
  conn.removeAllListeners();
  conn.destroy();
}

/** spored's result FIFOs sit in results/ next to seeds.sock (also when reached through a dir fd). */
function resultsDirOf(seedSocket: string): string {
  return `${seedSocket.slice(0, seedSocket.lastIndexOf('/') + 1)}results/`;
}

/** A path to the same socket that survives mounts over its directory: /proc/self/fd/<dir>/<name>. */
function socketViaDirFd(path: string): string {
  const slash = path.lastIndexOf('/');
  const fd = sys.open(path.slice(0, slash) || '/', sys.O.PATH | sys.O.DIRECTORY);
  return `/proc/self/fd/${fd}${path.slice(slash)}`;
}

/** The lineage's /tmp: private to this function's seed and its instances. */
function privateTmp(): void {
  sys.mount(null, '/', null, sys.MS.REC | sys.MS.SLAVE, null);
  sys.mount('tmpfs', '/tmp', 'tmpfs', sys.MS.NOSUID | sys.MS.NODEV, 'mode=1777,size=64m');
}

function applyBind(b: Bind, fresh: boolean): void {
  for (const f of b.cgroupProcs) sys.write(sys.open(f, sys.O.WRONLY | sys.O.CLOEXEC), Buffer.from('0'));
  if (b.netns) {
    const fd = sys.open(b.netns, sys.O.RDONLY | sys.O.CLOEXEC);
    sys.setns(fd, sys.CLONE.NEWNET);
    sys.close(fd);
  }
  if (fresh) sys.unshare(sys.CLONE.NEWIPC | sys.CLONE.NEWNS);
}

/** Handler code runs as nobody with no capabilities; only binding needed root. */
function dropPrivileges(): void {
  sys.setgroups([]);
  sys.setresgid(65534);
  sys.setresuid(65534);
  sys.capset(0n, 0n, 0n);
}

function readRequest(fd: number): InvokeRequest {
  let text = '';
  for (;;) {
    const chunk = sys.read(fd, 65536);
    if (chunk.length === 0) break;
    text += chunk.toString('utf8');
    if (text.endsWith('\n')) break;
  }
  if (!text.trim()) sys.exit(0); // destroyed before activation
  return JSON.parse(text) as InvokeRequest;
}

async function runInstance(msg: Extract<ToSeed, { t: 'fork' }>, seedHandler: Handler | null, out: { pipe: number; fifo: string | null }, actR: number, record: FileRange[] | null): Promise<void> {
  const resW = out.pipe;
  let fifo = -1;
  const t0 = performance.now();
  // opened while still root: /proc/self turns root-owned once the ids drop
  let pagemap = -1;
  if (record) { try { pagemap = openSync('/proc/self/pagemap', 'r'); } catch { /* no record then */ } }
  const timings: { bind: number; seccomp: number; init: number; execute: number; startAt?: number; doneAt?: number; minflt?: number } = { bind: 0, seccomp: 0, init: 0, execute: 0 };
  timings.startAt = performance.timeOrigin + forkedAt();
  const finish = (m: FromSeed): never => {
    timings.doneAt = performance.timeOrigin + performance.now();
    timings.minflt = process.resourceUsage().minorPageFault;
    const line = JSON.stringify(m);
    if (fifo >= 0 && m.t === 'result') {
      // the token proves to spored that this line is ours
      try { writeSync(fifo, `${line.slice(0, -1)},"token":${JSON.stringify(msg.bind.resultToken ?? '')}}\n`); } catch { /* reported as a crash */ }
    } else if (resW >= 0) {
      try { writeSync(resW, line + '\n'); } catch { /* the seed is gone */ }
    }
    if (record && pagemap >= 0) {
      // after the answer, so recording is off the response path
      try { writeSync(resW, JSON.stringify({ t: 'touched', id: msg.id, runs: encodeRuns(presentRuns(record, pagemap)) }) + '\n'); } catch { /* best effort */ }
    }
    return sys.exit(0);
  };
  let phase: 'internal' | 'load' | 'handler' = 'internal';
  // First, while still root (spored's FIFOs are root-only), so that even a failure to bind
  // is reported through it.
  if (out.fifo) { try { fifo = sys.open(out.fifo, sys.O.WRONLY | sys.O.CLOEXEC); } catch { /* reported as a crash */ } }
  // A handler whose promise never settles must run into its timeout, not let the loop
  // drain and exit quietly.
  setInterval(() => undefined, 1 << 30);
  try {
    // A parked instance takes its request (and so its resources) only at activation.
    const request = msg.request ?? readRequest(actR);
    let t = performance.now();
    applyBind(msg.bind, msg.fresh === true);
    timings.bind = us(t);
    if (msg.env) Object.assign(process.env, msg.env);
    t = performance.now();
    let handler = seedHandler;
    if (msg.load) {
      phase = 'load';
      handler = loadHandler(msg.load.module, msg.load.handler);
    }
    if (!handler) throw new Error('this seed has no function loaded and the request carries no code to load');
    // init also covers the child's own start: libuv loop fork and uniqueness re-init
    timings.init = us(t) + Math.round((t0 - forkedAt()) * 1000);
    phase = 'internal';
    t = performance.now();
    dropPrivileges();
    if (msg.bind.seccomp) {
      if (msg.bind.noNewPrivs) sys.prctl(sys.PR.SET_NO_NEW_PRIVS, 1);
      sys.seccompInstall(Buffer.from(msg.bind.seccomp, 'base64'), msg.bind.seccompFlags);
    }
    timings.seccomp = us(t);
    t = performance.now();
    phase = 'handler';
    const ctx = {
      functionName: request.context.functionName,
      requestId: request.context.requestId,
      deadlineMs: request.context.deadlineMs,
      memoryLimitMiB: request.context.memoryLimitMiB,
      remainingTimeMs: (): number => Math.max(0, request.context.deadlineMs - Date.now()),
    };
    const value = await handler(JSON.parse(request.event) as unknown, ctx);
    timings.execute = us(t);
    const json = JSON.stringify(value === undefined ? null : value);
    finish({ t: 'result', id: msg.id, ok: true, value: json, error: null, timings });
  } catch (e) {
    const err = errorOf(e);
    finish({ t: 'result', id: msg.id, ok: false, value: null, error: { kind: phase, ...err }, timings });
  }
}

/** Entry when a seed is started as its own process (tests, or a spawned L1). */
export async function main(argv: string[]): Promise<void> {
  const [socket, id, level] = argv;
  if (!socket || !id) {
    process.stderr.write('usage: seed <seeds.sock> <seed id> [level]\n');
    process.exit(2);
  }
  await runSeed({ socket, id, level: level === '2' ? 2 : 1 });
}
