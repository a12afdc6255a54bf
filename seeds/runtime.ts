// The process engine's function runtime: the seed tree (L0 root -> L1 language -> L2
// function), instances forked from the nearest seed, pooled resources bound at fork,
// early destroy. Implements runtime/fri/types.ts FunctionRuntime; transports (gRPC,
// gateway, CLI) sit on top. State is plain data: SeedInfo/InstanceInfo records.
import net from 'node:net';
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync, existsSync, unlinkSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import { AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, Unavailable, Unimplemented } from '../runtime/errors.js';
import type { Engine, ForkTarget, FunctionInfo, FunctionRuntime, FunctionSpec, InstanceInfo, InvokeError, InvokeOptions, InvokeResult, Language, MemoryInfo, PhaseTimings, SeedInfo } from '../runtime/fri/types.js';
import type { SeedClient } from '../runtime/engines/process/seed-client.js';
import { CgroupPool, procsFiles, oomKillCount, cgroupHandle, killAll, destroyCgroup, type CgroupLayout, type PooledCgroup } from '../pools/cgroups.js';
import { compileSeccomp, defaultProfile, instanceTailProfile, lineageProfile } from '../pools/seccomp.js';
import { NetnsPool, reapStaleNetns, type NetnsSlot } from '../pools/netns.js';
import { ResultFifoPool } from '../pools/result-fifos.js';
import type { Bind, FromSeed, InvokeRequest, ToSeed } from './protocol.js';
import { onJsonLines } from '../runtime/lines.js';
import type { PrefillMode } from './prefill.js';

const ZYGOTE = fileURLToPath(new URL('../../seeds/python/zygote.py', import.meta.url));

export interface ProcessRuntimeOptions {
  runDir: string;
  layout: CgroupLayout;
  l0: SeedClient;
  log: Logger;
  pythonBin?: string;
  cgroupPoolSize?: number;
  netnsPoolSize?: number; // 0 disables per-instance network namespaces
  l2Replicas?: number;
  /** a serving L2 replica past this much private memory is replaced (default 4096 KiB) */
  replicaPrivateLimitKiB?: number;
  /** controllers an instance joins (each join is a cgroup migration on the hot path) */
  instanceControllers?: string[];
  /** page-table prefill in Node function seeds (seeds/prefill.ts); default 'off'; a function of the name for A/B benches */
  prefill?: PrefillMode | ((fn: string) => PrefillMode);
}

interface Waiter<T> { resolve: (v: T) => void; reject: (e: Error) => void }

interface SeedRec {
  info: SeedInfo;
  conn: net.Socket | null;
  ready: Promise<void>;
  readyWaiter: Waiter<void>;
  inflight: number;
  /** a connection was bound once; a seed is never claimed again after that */
  connected: boolean;
}

interface InstRec {
  info: InstanceInfo;
  seed: SeedRec;
  fn: FunctionRec | null;
  cgroup: PooledCgroup | null;
  netns: NetnsSlot | null;
  forked: Promise<{ pid: number; forkUs: number }>;
  forkedW: Waiter<{ pid: number; forkUs: number }>;
  result: Extract<FromSeed, { t: 'result' }> | null;
  resultAt: number;
  sentAt: number;
  resultP: Promise<Extract<FromSeed, { t: 'result' }>>;
  resultW: Waiter<Extract<FromSeed, { t: 'result' }>>;
  exited: Promise<Extract<FromSeed, { t: 'exit' }>>;
  exitedW: Waiter<Extract<FromSeed, { t: 'exit' }>>;
  released: boolean;
  /** result FIFO slot (Node instances) and the token its line must carry */
  slot: number | null;
  token: string;
}

interface FunctionRec {
  spec: FunctionSpec;
  info: FunctionInfo;
  module: string;
  seeds: SeedRec[]; // L2 replicas
  nextReplica: number;
}

function deferred<T>(): [Promise<T>, Waiter<T>] {
  let w!: Waiter<T>;
  const p = new Promise<T>((resolve, reject) => { w = { resolve, reject }; });
  p.catch(() => undefined);
  return [p, w];
}

const NAME_RE = /^[a-z0-9][a-z0-9-]{0,62}$/;
const REPLICA_CHECK_EVERY = 100;
const EXIT_GRACE_MS = 10_000;
const us = (ms: number): number => Math.max(0, Math.round(ms * 1000));
/** how long an instance that exited 0 may take to have its FIFO result line read */
const FIFO_RESULT_GRACE_MS = 1000;

function tokenMatches(expected: string, got: string): boolean {
  const a = Buffer.from(expected);
  const b = Buffer.from(got);
  return a.length > 0 && a.length === b.length && timingSafeEqual(a, b);
}

export function memoryOf(pid: number): MemoryInfo | null {
  try {
    const txt = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
    const kb = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(txt)?.[1] ?? 0);
    return {
      rssKiB: kb('Rss'), pssKiB: kb('Pss'),
      privateKiB: kb('Private_Clean') + kb('Private_Dirty'),
      sharedKiB: kb('Shared_Clean') + kb('Shared_Dirty'),
    };
  } catch {
    return null;
  }
}

const pidAlive = (pid: number): boolean => existsSync(`/proc/${pid}`);

/** Pool cgroups (/spore/fri-<pid>/<n>) whose spored is gone: kill what is left, remove them. */
export function reapStaleCgroupPools(layout: CgroupLayout, isAlive: (pid: number) => boolean): string[] {
  const reaped: string[] = [];
  let base: ReturnType<typeof cgroupHandle>;
  try { base = cgroupHandle(layout, '/spore'); } catch { return reaped; }
  const owners = new Set<number>();
  for (const dir of Object.values(base.dirs)) {
    try {
      for (const e of readdirSync(dir)) {
        const m = /^fri-(\d+)$/.exec(e);
        if (m && !isAlive(Number(m[1]))) owners.add(Number(m[1]));
      }
    } catch { /* hierarchy without /spore */ }
  }
  for (const pid of owners) {
    const parent = `/spore/fri-${pid}`;
    const indices = new Set<string>();
    for (const dir of Object.values(cgroupHandle(layout, parent).dirs)) {
      try { for (const e of readdirSync(dir)) if (/^\d+$/.test(e)) indices.add(e); } catch { /* gone */ }
    }
    try {
      for (const i of indices) {
        const h = cgroupHandle(layout, `${parent}/${i}`);
        killAll(h, 'SIGKILL');
        destroyCgroup(h);
      }
      destroyCgroup(cgroupHandle(layout, parent));
      reaped.push(parent);
    } catch { /* processes still dying; the next start tries again */ }
  }
  return reaped;
}

export class ProcessFunctionRuntime implements FunctionRuntime {
  private readonly seeds = new Map<string, SeedRec>();
  private readonly instances = new Map<string, InstRec>();
  private readonly functions = new Map<string, FunctionRec>();
  private readonly languageSeeds = new Map<Language, SeedRec>();
  private server: net.Server | null = null;
  private readonly socketPath: string;
  private cgroups: CgroupPool | null = null;
  private netns: NetnsPool | null = null;
  private fifos: ResultFifoPool | null = null;
  private readonly slotOwner: (InstRec | null)[] = [];
  private seccompB64 = '';
  private seccompFlags = 0;
  private lineage = { filter: '', flags: 0 };
  private tailB64 = '';
  private counter = 0;
  private readonly o: ProcessRuntimeOptions;
  private root: SeedRec | null = null;
  /** instances admitted but not yet exited; past the netns pool size callers queue */
  private running = 0;
  private readonly admission: (() => void)[] = [];

  constructor(o: ProcessRuntimeOptions) {
    this.o = o;
    this.socketPath = join(o.runDir, 'seeds.sock');
  }

  /** Listen for seeds, fill pools, create the root record and both language seeds. */
  async start(): Promise<void> {
    const f = compileSeccomp(defaultProfile());
    this.seccompB64 = f.bpf.toString('base64');
    this.seccompFlags = f.flags;
    const lin = compileSeccomp(lineageProfile());
    this.lineage = { filter: lin.bpf.toString('base64'), flags: lin.flags };
    this.tailB64 = compileSeccomp(instanceTailProfile()).bpf.toString('base64');
    if (existsSync(this.socketPath)) unlinkSync(this.socketPath);
    this.server = net.createServer((c) => this.onConnection(c));
    await new Promise<void>((resolve, reject) => { this.server?.once('error', reject); this.server?.listen(this.socketPath, resolve); });
    chmodSync(this.socketPath, 0o600);
    const reaped = reapStaleCgroupPools(this.o.layout, pidAlive);
    if (reaped.length) this.o.log.warn({ pools: reaped }, 'removed cgroup pools of a dead spored');
    this.cgroups = new CgroupPool(this.o.layout, { size: this.o.cgroupPoolSize ?? 32, parent: `/spore/fri-${process.pid}` });
    this.cgroups.fill();
    const nsSize = this.o.netnsPoolSize ?? 32;
    if (nsSize > 0) {
      // Slots are named after this spored's pid, so a later spored can tell a dead owner's.
      const stale = reapStaleNetns(pidAlive);
      if (stale.length) this.o.log.warn({ count: stale.length }, 'removed network namespaces of a dead spored');
      this.netns = new NetnsPool(`sp${process.pid.toString(16)}-`, process.pid);
      this.netns.fill(nsSize);
    }
    this.fifos = new ResultFifoPool(join(this.o.runDir, 'results'), (slot, line) => this.onFifoLine(slot, line));
    this.fifos.fill(nsSize > 0 ? nsSize : this.o.cgroupPoolSize ?? 32);
    await this.create('process');
    const langs = await Promise.allSettled((['node', 'python'] as Language[]).map((l) => this.languageSeed(l)));
    for (const r of langs) if (r.status === 'rejected') this.o.log.error({ err: (r.reason as Error).message }, 'language seed failed to start');
  }

  async stop(): Promise<void> {
    // every connection, also of seeds already forgotten (deleted, retired): a seed that
    // hangs must not keep spored from stopping
    for (const c of this.connections) c.destroy();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
    this.netns?.close();
    this.cgroups?.close();
    this.fifos?.close();
  }

  // --- seed connections ---------------------------------------------------------------
  private readonly connections = new Set<net.Socket>();

  private onConnection(c: net.Socket): void {
    this.connections.add(c);
    c.once('close', () => this.connections.delete(c));
    let rec: SeedRec | null = null;
    onJsonLines<FromSeed>(c, (m) => {
      if (m.t === 'hello') {
        // Function init code runs inside L2 seeds and can open connections of its own:
        // a hello binds only a seed that is still starting and has no connection, once.
        const claimed = rec === null ? this.seeds.get(m.id) ?? null : null;
        // (its parent's exit report can come first: a seed whose init code failed exits
        // right after saying why, so 'failed' without a connection still takes one)
        if (!claimed || claimed.connected || claimed.info.level === 0 || (claimed.info.state !== 'starting' && claimed.info.state !== 'failed')) {
          if (claimed) this.o.log.warn({ seed: m.id, state: claimed.info.state }, 'refused a second hello for a seed');
          c.destroy();
          return;
        }
        rec = claimed;
        rec.connected = true;
        rec.conn = c;
        rec.info.pid = m.pid;
        return;
      }
      if (rec) this.onSeedMessage(rec, m);
    });
    c.on('close', () => {
      if (rec && rec.conn === c) {
        rec.conn = null;
        if (rec.info.state !== 'deleting') {
          rec.info.state = 'failed';
          rec.info.error ??= 'seed connection closed';
        }
        rec.readyWaiter.reject(new Unavailable(`seed ${rec.info.id} went away`));
        // Its instances died with it (seeds kill their children when spored's connection
        // goes): end them here, or their resources would never return to the pools.
        let orphans = 0;
        for (const inst of this.instances.values()) {
          if (inst.seed !== rec || inst.released) continue;
          orphans++;
          inst.forkedW.reject(new Unavailable(`seed ${rec.info.id} went away`));
          inst.exitedW.resolve({ t: 'exit', id: inst.info.id, pid: inst.info.pid, code: null, signal: 9, timedOut: false });
        }
        this.o.log.warn({ seed: rec.info.id, state: rec.info.state, orphans }, 'seed disconnected');
      }
    });
    c.on('error', () => undefined);
  }

  private onSeedMessage(rec: SeedRec, m: FromSeed): void {
    switch (m.t) {
      case 'ready':
        if (rec.info.state !== 'starting') return;
        rec.info.state = 'ready';
        rec.info.initMs = m.initMs;
        rec.readyWaiter.resolve();
        return;
      case 'failed':
        rec.info.state = 'failed';
        rec.info.error = m.stack ?? m.message;
        rec.readyWaiter.reject(new InvalidArgument(`function code failed to load: ${m.message}`));
        return;
      case 'forked': {
        const inst = this.instances.get(m.id);
        if (inst) { if (inst.seed === rec) { inst.info.pid = m.pid; inst.forkedW.resolve({ pid: m.pid, forkUs: m.forkUs }); } return; }
        const child = this.seeds.get(m.id);
        if (child && child.info.parent === rec.info.id) child.info.pid = m.pid;
        return;
      }
      case 'forkFailed': {
        const inst = this.instances.get(m.id);
        if (inst?.seed === rec) inst.forkedW.reject(new FailedPrecondition(`fork failed: ${m.message}`));
        const child = this.seeds.get(m.id);
        if (child && child.info.parent === rec.info.id) child.readyWaiter.reject(new FailedPrecondition(`fork failed: ${m.message}`));
        return;
      }
      case 'result': {
        const inst = this.instances.get(m.id);
        // a seed speaks only for its own instances
        if (inst && inst.seed === rec) this.onResult(inst, m, 'seed');
        return;
      }
      case 'exit': {
        const inst = this.instances.get(m.id);
        if (inst) { if (inst.seed === rec) this.onExit(inst, m); return; }
        const child = this.seeds.get(m.id);
        if (child && child.info.parent === rec.info.id && child.info.state !== 'deleting') {
          const starting = child.info.state === 'starting';
          child.info.state = 'failed';
          child.info.error ??= `seed exited (code ${m.code}, signal ${m.signal})`;
          // Its own 'failed' (with the reason) normally follows on its connection; if none
          // comes, the deploy fails with the exit instead of waiting out the ready timeout.
          if (starting) setTimeout(() => child.readyWaiter.reject(new FailedPrecondition(`seed ${child.info.id} exited before it was ready (code ${m.code}, signal ${m.signal})`)), 1000).unref();
        }
        return;
      }
      default:
        return;
    }
  }

  /** The first result of an instance counts (its FIFO, or relayed by its seed). */
  private onResult(inst: InstRec, m: Extract<FromSeed, { t: 'result' }>, via: 'seed' | 'fifo'): void {
    if (inst.result) return;
    inst.result = m;
    inst.resultAt = performance.now();
    if (m.timings.doneAt) this.o.log.debug({ inst: m.id, via, relayUs: us(performance.timeOrigin + inst.resultAt - m.timings.doneAt), minflt: m.timings.minflt, dispatchUs: m.timings.startAt ? us(m.timings.startAt - (performance.timeOrigin + inst.sentAt)) : null }, 'hops');
    inst.resultW.resolve(m);
  }

  /** A line from a result FIFO: taken only from the slot's owner, with its token. */
  private onFifoLine(slot: number, line: string): void {
    const inst = this.slotOwner[slot];
    if (!inst) return;
    let m: unknown;
    try { m = JSON.parse(line); } catch { return; }
    const r = m as Extract<FromSeed, { t: 'result' }> & { token?: unknown };
    if (typeof r !== 'object' || r === null || r.t !== 'result' || r.id !== inst.info.id || typeof r.token !== 'string' || !tokenMatches(inst.token, r.token)) return;
    delete r.token;
    this.onResult(inst, r, 'fifo');
  }

  /**
   * The seed reaped the instance. An instance exits 0 only after writing its result, but
   * the FIFO line can reach this loop after the seed's exit report: wait for it (bounded)
   * rather than report a crash. Other exits carry no result and are final at once.
   */
  private onExit(inst: InstRec, m: Extract<FromSeed, { t: 'exit' }>): void {
    if (inst.result || inst.slot === null || m.code !== 0 || m.signal !== null) { inst.exitedW.resolve(m); return; }
    const late = setTimeout(() => inst.exitedW.resolve(m), FIFO_RESULT_GRACE_MS);
    void inst.resultP.then(() => { clearTimeout(late); inst.exitedW.resolve(m); });
  }

  private send(rec: SeedRec, m: ToSeed): void {
    if (!rec.conn) throw new Unavailable(`seed ${rec.info.id} is not connected (${rec.info.state})`);
    rec.conn.write(JSON.stringify(m) + '\n');
  }

  private newSeed(partial: Pick<SeedInfo, 'id' | 'level' | 'engine' | 'language' | 'function' | 'parent' | 'replicaOf'>): SeedRec {
    const [ready, readyWaiter] = deferred<void>();
    const rec: SeedRec = {
      info: { ...partial, pid: 0, state: 'starting', forks: 0, createdAt: new Date().toISOString(), initMs: 0, memory: null, error: null },
      conn: null, ready, readyWaiter, inflight: 0, connected: false,
    };
    this.seeds.set(rec.info.id, rec);
    return rec;
  }

  private async waitReady(rec: SeedRec, timeoutMs = 30_000): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Unavailable(`seed ${rec.info.id} did not become ready in ${timeoutMs} ms`)), timeoutMs); });
    try { await Promise.race([rec.ready, timeout]); } finally { clearTimeout(timer); }
  }

  // --- FRI: seeds -----------------------------------------------------------------------
  async create(engine: Engine): Promise<SeedInfo> {
    if (engine === 'vm') throw new Unimplemented('the vm engine is not wired into FRI on this build; use engine "process"');
    if (engine !== 'process') throw new InvalidArgument(`unknown engine ${JSON.stringify(engine)}; use "process" or "vm"`);
    if (!this.root) {
      this.root = this.newSeed({ id: 'l0-process', level: 0, engine: 'process', language: null, function: null, parent: null, replicaOf: null });
      this.root.info.pid = this.o.l0.pid;
      this.root.info.state = 'ready';
      this.root.readyWaiter.resolve();
    }
    return this.root.info;
  }

  private async languageSeed(language: Language): Promise<SeedRec> {
    if (language === 'vm') throw new InvalidArgument('"vm" functions run on the vm engine (seeds/vm-functions.ts), not the process engine');
    const existing = this.languageSeeds.get(language);
    if (existing && existing.info.state !== 'failed') { await this.waitReady(existing); return existing; }
    const root = this.root ?? this.seeds.get((await this.create('process')).id);
    if (!root) throw new Unavailable('no root seed');
    const rec = this.newSeed({ id: `l1-${language}-${++this.counter}`, level: 1, engine: 'process', language, function: null, parent: root.info.id, replicaOf: null });
    this.languageSeeds.set(language, rec);
    rec.info.pid = await this.o.l0.spawnSeed(language, rec.info.id, this.socketPath, this.o.pythonBin ?? '/usr/bin/python3', ZYGOTE);
    root.info.forks++;
    await this.waitReady(rec);
    this.o.log.info({ seed: rec.info.id, pid: rec.info.pid, initMs: rec.info.initMs }, 'language seed ready');
    return rec;
  }

  private async childSeed(parent: SeedRec, fn: FunctionRec | null, replicaOf: string | null): Promise<SeedRec> {
    const rec = this.newSeed({
      id: `${fn ? `l2-${fn.spec.name}` : `l1-${parent.info.language}`}-${++this.counter}`,
      level: fn ? 2 : parent.info.level, engine: 'process', language: parent.info.language,
      function: fn?.spec.name ?? null, parent: parent.info.id, replicaOf,
    });
    // A function seed filters itself before its init code runs; replicas inherit that.
    const seccomp = fn && parent.info.level === 1 ? { seccomp: this.lineage } : {};
    const mode = typeof this.o.prefill === 'function' && fn ? this.o.prefill(fn.spec.name) : this.o.prefill;
    const prefill = fn && parent.info.language === 'node' ? { prefill: typeof mode === 'string' ? mode : 'off' } : {};
    this.send(parent, { t: 'seed', id: rec.info.id, ...(fn ? { load: { module: fn.module, handler: fn.spec.handler }, env: fn.spec.env } : {}), ...seccomp, ...prefill });
    parent.info.forks++;
    try {
      await this.waitReady(rec);
    } catch (e) {
      this.seeds.delete(rec.info.id);
      throw e;
    }
    return rec;
  }

  async fork(seedId: string, target: ForkTarget): Promise<InstanceInfo | SeedInfo> {
    const seed = this.seeds.get(seedId);
    if (!seed) throw new NotFound(`seed ${seedId} not found`);
    if (seed.info.state !== 'ready') throw new FailedPrecondition(`seed ${seedId} is ${seed.info.state}`);
    if (target.kind === 'seed') {
      if (seed.info.level === 0) {
        const lang = target.language;
        if (lang !== 'node' && lang !== 'python') throw new InvalidArgument('forking a language seed from L0 needs language "node" or "python"');
        return (await this.languageSeed(lang)).info;
      }
      const fn = target.function ? this.functions.get(target.function) : null;
      if (target.function && !fn) throw new NotFound(`function ${target.function} not found`);
      return (await this.childSeed(seed, fn ?? null, fn ? null : seed.info.id)).info;
    }
    if (seed.info.level === 0) throw new FailedPrecondition('instances fork from a language or function seed (L1/L2), not from L0');
    const fn = seed.info.function ? this.functions.get(seed.info.function) ?? null : null;
    await this.admit();
    const inst = this.startInstance(seed, fn, null, null);
    await inst.forked;
    inst.info.state = 'paused';
    return inst.info;
  }

  async activate(instanceId: string, event: string): Promise<InvokeResult> {
    const inst = this.instances.get(instanceId);
    if (!inst) throw new NotFound(`instance ${instanceId} not found`);
    if (inst.info.state !== 'paused') throw new FailedPrecondition(`instance ${instanceId} is ${inst.info.state}, not paused`);
    if (!inst.fn) throw new FailedPrecondition(`instance ${instanceId} was forked from a seed without a function; fork from an L2 seed`);
    const t0 = performance.now();
    inst.info.state = 'running';
    this.send(inst.seed, { t: 'activate', id: instanceId, request: this.request(inst.fn, event, inst.info.id) });
    return this.finish(inst, t0, t0, 0);
  }

  async destroy(instanceId: string): Promise<void> {
    const inst = this.instances.get(instanceId);
    if (!inst) throw new NotFound(`instance ${instanceId} not found`);
    try { this.send(inst.seed, { t: 'kill', id: instanceId }); } catch { /* seed gone: the instance died with it */ }
    await Promise.race([inst.exited, new Promise((r) => setTimeout(r, 2000))]);
    this.release(inst);
    this.instances.delete(instanceId);
  }

  listSeeds(): SeedInfo[] {
    return [...this.seeds.values()].map((s) => ({ ...s.info, memory: s.info.pid ? memoryOf(s.info.pid) : null }));
  }

  async deleteSeed(seedId: string): Promise<void> {
    const seed = this.seeds.get(seedId);
    if (!seed) throw new NotFound(`seed ${seedId} not found`);
    if (seed.info.level === 0) throw new FailedPrecondition('the root seed cannot be deleted while spored runs');
    seed.info.state = 'deleting';
    for (const f of this.functions.values()) f.seeds = f.seeds.filter((s) => s !== seed);
    for (const [l, s] of this.languageSeeds) if (s === seed) this.languageSeeds.delete(l);
    try { this.send(seed, { t: 'exit' }); } catch { /* already gone */ }
    seed.conn?.end();
    this.seeds.delete(seedId);
  }

  listInstances(): InstanceInfo[] {
    return [...this.instances.values()].map((i) => ({ ...i.info }));
  }

  // --- functions ------------------------------------------------------------------------
  async deploy(spec: FunctionSpec): Promise<FunctionInfo> {
    if (!NAME_RE.test(spec.name)) throw new InvalidArgument(`invalid function name ${JSON.stringify(spec.name)}: lowercase letters, digits and '-', max 63`);
    if (spec.language !== 'node' && spec.language !== 'python') throw new InvalidArgument(`unknown runtime ${JSON.stringify(spec.language)}; use node or python`);
    if (this.functions.has(spec.name)) throw new AlreadyExists(`function ${spec.name} already exists; remove it first`);
    if (!spec.code) throw new InvalidArgument('function code is empty');
    if (!/^[A-Za-z_$][\w$]*$/.test(spec.handler)) throw new InvalidArgument(`invalid handler name ${JSON.stringify(spec.handler)}`);
    if (!(spec.memoryMiB >= 16 && spec.memoryMiB <= 16384)) throw new InvalidArgument('memory must be between 16 and 16384 MiB');
    if (!(spec.timeoutMs >= 1 && spec.timeoutMs <= 900_000)) throw new InvalidArgument('timeout must be between 1 ms and 15 min');
    const dir = join(this.o.runDir, 'functions', spec.name);
    mkdirSync(dir, { recursive: true, mode: 0o755 });
    const module = join(dir, spec.language === 'node' ? 'index.cjs' : 'handler.py');
    writeFileSync(module, spec.code);
    const fn: FunctionRec = {
      spec, module, seeds: [], nextReplica: 0,
      info: { name: spec.name, language: spec.language, handler: spec.handler, memoryMiB: spec.memoryMiB, timeoutMs: spec.timeoutMs, env: spec.env, codeBytes: Buffer.byteLength(spec.code), seedId: null, deployedAt: new Date().toISOString(), invocations: 0 },
    };
    this.functions.set(spec.name, fn);
    // The L2 seed is built at deploy: its top-level code runs once, here, so load errors
    // surface to the deployer instead of the first caller.
    try {
      const l1 = await this.languageSeed(spec.language);
      const l2 = await this.childSeed(l1, fn, null);
      fn.seeds.push(l2);
      fn.info.seedId = l2.info.id;
    } catch (e) {
      this.functions.delete(spec.name);
      rmSync(dir, { recursive: true, force: true });
      throw e;
    }
    // The first L2 seed stays a pristine template once replicas serve: a seed that forks
    // keeps running its own event loop and GC, which turns copy-on-write pages private.
    for (let i = 0; i < (this.o.l2Replicas ?? 2); i++) this.addReplica(fn);
    return { ...fn.info };
  }

  private addReplica(fn: FunctionRec): void {
    const template = fn.seeds[0];
    if (!template) return;
    void this.childSeed(template, fn, template.info.id)
      .then((r) => { if (this.functions.get(fn.spec.name) === fn) fn.seeds.push(r); else void this.deleteSeed(r.info.id); })
      .catch((e: Error) => this.o.log.warn({ fn: fn.spec.name, err: e.message }, 'replica seed failed'));
  }

  /**
   * A replica whose private memory has grown past the limit is retired (it finishes what
   * it has in flight) and replaced by a fresh fork of the template. Checked every
   * REPLICA_CHECK_EVERY forks, off the response path.
   */
  private maybeRotate(fn: FunctionRec, seed: SeedRec): void {
    if (seed === fn.seeds[0] || seed.info.forks % REPLICA_CHECK_EVERY !== 0 || seed.info.state !== 'ready') return;
    const mem = memoryOf(seed.info.pid);
    if (!mem || mem.privateKiB <= (this.o.replicaPrivateLimitKiB ?? 4096)) return;
    this.o.log.info({ seed: seed.info.id, privateKiB: mem.privateKiB }, 'retiring a replica seed whose memory went private');
    seed.info.state = 'deleting';
    fn.seeds = fn.seeds.filter((s) => s !== seed);
    this.addReplica(fn);
    const retire = (): void => { if (seed.inflight > 0) { setTimeout(retire, 50); return; } void this.deleteSeed(seed.info.id).catch(() => undefined); };
    retire();
  }

  async remove(name: string): Promise<void> {
    const fn = this.functions.get(name);
    if (!fn) throw new NotFound(`function ${name} not found`);
    this.functions.delete(name);
    for (const s of fn.seeds) await this.deleteSeed(s.info.id).catch(() => undefined);
    rmSync(join(this.o.runDir, 'functions', name), { recursive: true, force: true });
  }

  listFunctions(): FunctionInfo[] {
    return [...this.functions.values()].map((f) => ({ ...f.info }));
  }

  // --- invoke ---------------------------------------------------------------------------
  async invoke(name: string, event: string, opts: InvokeOptions = {}): Promise<InvokeResult> {
    const t0 = performance.now();
    const fn = this.functions.get(name);
    if (!fn) throw new NotFound(`function ${name} not found`);
    fn.info.invocations++;
    await this.admit();
    const seed = opts.level === 1 ? null : this.pickReplica(fn);
    let inst: InstRec;
    if (seed) {
      inst = this.startInstance(seed, fn, event, null, opts.freshNamespaces === true);
    } else {
      // L2 -> L1 fallback: the instance loads the code itself.
      const l1 = await this.languageSeed(fn.spec.language);
      inst = this.startInstance(l1, fn, event, { module: fn.module, handler: fn.spec.handler }, opts.freshNamespaces === true);
    }
    const tSent = performance.now();
    return this.finish(inst, t0, tSent, tSent - t0);
  }

  private pickReplica(fn: FunctionRec): SeedRec | null {
    let ready = fn.seeds.filter((s) => s.info.state === 'ready' && s.conn);
    // the template serves only until a replica is ready
    if (ready.length > 1) ready = ready.filter((s) => s !== fn.seeds[0]);
    if (ready.length === 0) return null;
    // least in-flight forks first; ties rotate so replicas share the load
    fn.nextReplica = (fn.nextReplica + 1) % ready.length;
    let best = ready[fn.nextReplica] as SeedRec;
    for (const s of ready) if (s.inflight < best.inflight) best = s;
    return best;
  }

  private request(fn: FunctionRec, event: string, requestId: string): InvokeRequest {
    return { event, context: { functionName: fn.spec.name, requestId, deadlineMs: Date.now() + fn.spec.timeoutMs, memoryLimitMiB: fn.spec.memoryMiB } };
  }

  private startInstance(seed: SeedRec, fn: FunctionRec | null, event: string | null, load: { module: string; handler: string } | null, fresh = false): InstRec {
    const id = `i-${(++this.counter).toString(36)}`;
    const memoryMiB = fn?.spec.memoryMiB ?? 128;
    const cg = this.cgroups?.acquire({ memory: { limit: memoryMiB * 1024 * 1024 }, pids: { limit: 256 } }, `m${memoryMiB}`).handle ?? null;
    let ns: NetnsSlot | null = null;
    try { ns = this.netns?.acquire() ?? null; } catch (e) { if (cg) this.cgroups?.release(cg); throw e; }
    const controllers = this.o.instanceControllers ?? ['memory', 'pids', 'cpu'];
    const bind: Bind = {
      cgroupProcs: cg ? procsFiles(cg).filter((f) => controllers.some((c) => f.includes(`/${c}/`) || (this.o.layout.mode === 'v2' && f.includes('/unified/')) || this.o.layout.mode === 'v2')) : [],
      netns: ns?.path ?? null,
      // L2 seeds already run under the lineage filter: stack only the small tail on it.
      seccomp: (seed.info.level === 2 ? this.tailB64 : this.seccompB64) || null,
      seccompFlags: seed.info.level === 2 ? 0 : this.seccompFlags,
      noNewPrivs: true,
    };
    // instances hand their result straight to spored; without a slot their seed relays it
    const slot = this.fifos?.acquire() ?? null;
    const token = slot !== null ? randomBytes(16).toString('hex') : '';
    if (slot !== null) { bind.resultSlot = slot; bind.resultToken = token; }
    const [forked, forkedW] = deferred<{ pid: number; forkUs: number }>();
    const [exited, exitedW] = deferred<Extract<FromSeed, { t: 'exit' }>>();
    const [resultP, resultW] = deferred<Extract<FromSeed, { t: 'result' }>>();
    const inst: InstRec = {
      info: { id, seedId: seed.info.id, function: fn?.spec.name ?? null, pid: 0, state: event === null ? 'paused' : 'running', createdAt: new Date().toISOString() },
      seed, fn, cgroup: cg, netns: ns, forked, forkedW, result: null, resultAt: 0, sentAt: 0, resultP, resultW, exited, exitedW, released: false,
      slot, token,
    };
    if (slot !== null) this.slotOwner[slot] = inst;
    this.instances.set(id, inst);
    seed.inflight++;
    seed.info.forks++;
    const msg: ToSeed = {
      t: 'fork', id, bind, timeoutMs: fn?.spec.timeoutMs ?? 30_000,
      ...(event !== null && fn ? { request: this.request(fn, event, id) } : {}),
      ...(load ? { load } : {}),
      ...(fn && Object.keys(fn.spec.env).length ? { env: fn.spec.env } : {}),
      ...(fresh ? { fresh: true } : {}),
    };
    try {
      inst.sentAt = performance.now();
      this.send(seed, msg);
    } catch (e) {
      seed.inflight--;
      this.release(inst);
      throw e;
    }
    void exited.then(() => {
      seed.inflight--;
      if (fn && seed.info.level === 2) this.maybeRotate(fn, seed);
    });
    return inst;
  }

  /** Wait for a free slot: a full pool queues callers instead of failing them. */
  private async admit(): Promise<void> {
    const limit = this.netns ? this.netns.snapshot().size : Number.POSITIVE_INFINITY;
    if (this.running < limit && this.admission.length === 0) { this.running++; return; }
    // leave() hands its slot straight to us: `running` stays counted for the hand-over
    await new Promise<void>((resolve) => this.admission.push(resolve));
  }

  private leave(): void {
    const next = this.admission.shift();
    if (next) next();
    else this.running--;
  }

  /**
   * Resolves at the instance's result (or its death). Early destroy: the child _exits right
   * after answering; its resources are recycled when the exit arrives, off the response
   * path, and `destroy` is the time from result to recycled, as far as it is known by then.
   */
  private async finish(inst: InstRec, t0: number, tSent: number, controlMs: number): Promise<InvokeResult> {
    void tSent;
    const { forkUs } = await inst.forked;
    const resultOrExit = await Promise.race([inst.resultP, inst.exited.then(() => null)]);
    const tResult = performance.now();
    const r = resultOrExit ?? inst.result;
    const exit = r ? null : await inst.exited;
    const oom = !r && inst.cgroup ? oomKillCount(inst.cgroup) - inst.cgroup.oomKillsAtAcquire > 0 : false;
    // An instance that answered must exit at once; one that does not is killed, and if
    // even that is never confirmed its resources are reclaimed anyway.
    const guard = setTimeout(() => {
      this.o.log.warn({ inst: inst.info.id, seed: inst.seed.info.id, pid: inst.info.pid }, 'instance answered but did not exit; killing it');
      try { this.send(inst.seed, { t: 'kill', id: inst.info.id }); } catch { /* seed gone */ }
      setTimeout(() => inst.exitedW.resolve({ t: 'exit', id: inst.info.id, pid: inst.info.pid, code: null, signal: 9, timedOut: false }), 2000).unref();
    }, EXIT_GRACE_MS);
    guard.unref();
    void inst.exited.then(() => clearTimeout(guard));
    const destroyed = inst.exited.then(() => {
      this.release(inst);
      this.instances.delete(inst.info.id);
      return performance.now();
    });
    // Early destroy runs after the response; its time is reported when already known
    // (always for failures, which wait for the exit above) and logged otherwise.
    let tDone = -1;
    void destroyed.then((t) => { tDone = t; this.o.log.debug({ inst: inst.info.id, destroyUs: us(t - tResult) }, 'destroyed'); });
    if (!r) tDone = await destroyed;
    inst.info.state = r?.ok ? 'done' : 'failed';
    const child = r?.timings ?? { bind: 0, seccomp: 0, init: 0, execute: 0 };
    const totalUs = us(tResult - t0);
    const timings: PhaseTimings = {
      control: us(controlMs), fork: forkUs, bind: child.bind, seccomp: child.seccomp, init: child.init, execute: child.execute,
      respond: 0, destroy: tDone > 0 ? us(tDone - tResult) : 0, total: totalUs,
    };
    timings.respond = Math.max(0, totalUs - timings.control - timings.fork - child.bind - child.seccomp - child.init - child.execute);
    let error: InvokeError | null = null;
    if (!r || !r.ok) {
      if (exit?.timedOut) error = { kind: 'timeout', message: `handler exceeded its timeout of ${inst.fn?.spec.timeoutMs ?? 0} ms and was killed`, stack: null };
      else if (oom) error = { kind: 'oom', message: `handler exceeded its memory limit of ${inst.fn?.spec.memoryMiB ?? 0} MiB and was killed`, stack: null };
      else if (r?.error) error = { kind: r.error.kind, message: r.error.message, stack: r.error.stack };
      else error = { kind: 'crash', message: `instance exited without a result (code ${exit?.code ?? null}, signal ${exit?.signal ?? null})`, stack: null };
    }
    return {
      ok: error === null, result: error === null ? r?.value ?? 'null' : null, error,
      function: inst.fn?.spec.name ?? null, seedId: inst.seed.info.id, seedLevel: inst.seed.info.level,
      instanceId: inst.info.id, timings,
    };
  }

  private release(inst: InstRec): void {
    if (inst.released) return;
    inst.released = true;
    this.leave();
    if (inst.cgroup) {
      try { this.cgroups?.release(inst.cgroup, { keepLimits: true }); } catch (e) { this.o.log.warn({ inst: inst.info.id, err: (e as Error).message }, 'cgroup release'); }
    }
    if (inst.netns) this.netns?.release(inst.netns);
    // after the cgroup: no process of this instance is left to write into the slot
    if (inst.slot !== null) {
      this.slotOwner[inst.slot] = null;
      try { this.fifos?.release(inst.slot); } catch (e) { this.o.log.warn({ inst: inst.info.id, err: (e as Error).message }, 'result slot release'); }
    }
  }

  pools(): { cgroups: unknown; netns: unknown; results: unknown } {
    return { cgroups: this.cgroups?.snapshot() ?? null, netns: this.netns?.snapshot() ?? null, results: this.fifos?.snapshot() ?? null };
  }
}
