// The process engine's function runtime: the seed tree (L0 root -> L1 language -> L2
// function lineage), instances forked from their function's L2 seed, pooled resources bound
// from outside the sandbox, early destroy. Implements runtime/fri/types.ts FunctionRuntime;
// transports (gRPC, gateway, CLI) sit on top. State is plain data: SeedInfo/InstanceInfo/
// FunctionInfo records.
//
// Trust: spored trusts the root seed and the L1 language seeds (spore's own code, no
// function code ever runs in them). An L2 seed runs the function's init code, and its
// instances run handler code: nothing they say is believed beyond their own function. Their
// pids are resolved to host processes by the kernel (functions/host-pids.ts), requests and
// results travel on per-instance channels that never pass through the seed, and every
// privileged step (cgroup moves, kills on timeout, /tmp scrubbing) is done here.
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, readdirSync, readlinkSync, unlinkSync, chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import { AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, Unavailable, Unimplemented } from '../runtime/errors.js';
import type {
  Engine, ForkTarget, FunctionInfo, FunctionRuntime, FunctionSpec, FunctionVersionInfo, InstanceInfo, InvokeError, InvokeOptions,
  InvokeResult, Language, MemoryInfo, PhaseTimings, SeedInfo,
} from '../runtime/fri/types.js';
import type { SeedClient } from '../runtime/engines/process/seed-client.js';
import { CgroupPool, oomKillCount, cgroupHandle, killAll, destroyCgroup, createCgroup, procsFiles, type CgroupHandle, type CgroupLayout, type PooledCgroup } from '../pools/cgroups.js';
import { compileSeccomp, defaultProfile } from '../pools/seccomp.js';
import * as sys from '../runtime/sys/libc.js';
import { MAX_RESULT_LINE, type FromSeed, type InstanceResult, type InvokeRequest, type LoadSpec, type SandboxPlan } from '../seeds/protocol.js';
import { SeedLink } from './seed-link.js';
import { childHostPid, nsPids, openChildPidfd } from './host-pids.js';
import { functionSandbox, slotName, type RuntimeEntry } from './sandbox.js';
import { IdRanges } from './id-ranges.js';
import { FunctionLogs } from './logs.js';
import { SlotPool } from './slots.js';
import { PackageStore, type StoredPackage } from './packages.js';
import { validateFunctionName } from '../runtime/fri/validate.js';

const ZYGOTE = fileURLToPath(new URL('../../seeds/python/zygote.py', import.meta.url));

export interface ProcessRuntimeOptions {
  runDir: string;
  /** packages/ (content-addressed function packages); default /var/lib/spore */
  stateDir?: string;
  /** node-wide registry of function id ranges; default /var/lib/spore/idmaps */
  idRangesDir?: string;
  /** language runtime roots (scripts/build-rootfs.sh); default /var/lib/spore/rootfs */
  rootfsDir?: string;
  layout: CgroupLayout;
  l0: SeedClient;
  log: Logger;
  pythonBin?: string;
  cgroupPoolSize?: number;
  l2Replicas?: number;
  /** a serving L2 replica past this much private memory is replaced (default 4096 KiB) */
  replicaPrivateLimitKiB?: number;
  /** controllers an instance is moved into (each move is a write on the hot path) */
  instanceControllers?: string[];
  /** per-instance /tmp slots per function lineage = its concurrency (default 32) */
  slotsPerFunction?: number;
  /** size of each instance's /tmp (default 64 MiB) */
  tmpMiB?: number;
  /** a function's init code must be done in this long at deploy (default 10 s) */
  initTimeoutMs?: number;
}

interface Waiter<T> { resolve: (v: T) => void; reject: (e: Error) => void }

function deferred<T>(): [Promise<T>, Waiter<T>] {
  let w!: Waiter<T>;
  const p = new Promise<T>((resolve, reject) => { w = { resolve, reject }; });
  p.catch(() => undefined);
  return [p, w];
}

interface SeedRec {
  info: SeedInfo;
  link: SeedLink | null;
  /** the seed's host pid, resolved by the kernel (0 until known) */
  hostPid: number;
  ready: Promise<void>;
  readyW: Waiter<void>;
  forked: Promise<number>;
  forkedW: Waiter<number>;
  inflight: number;
  version: VersionRec | null;
  /** a lineage's first seed: its L1 parent mounted the instances' /tmp slots */
  slotsMounted: Promise<number>;
  slotsMountedW: Waiter<number>;
}

type VersionState = 'starting' | 'active' | 'retiring' | 'gone';

interface VersionRec {
  fn: FunctionRec;
  version: number;
  pkg: StoredPackage;
  load: LoadSpec;
  codeBytes: number;
  cgroup: CgroupHandle;
  plan: SandboxPlan;
  seeds: SeedRec[]; // [0] the lineage's first seed (pid 1 of its pid namespace), then replicas
  nextReplica: number;
  slots: SlotPool;
  tmpBytes: number;
  state: VersionState;
  inflight: number;
  deployedAt: string;
}

interface FunctionRec {
  spec: FunctionSpec;
  hostId: number;
  versions: VersionRec[]; // the active one last
  invocations: number;
  lastVersion: number;
}

interface InstRec {
  info: InstanceInfo;
  seed: SeedRec;
  version: VersionRec;
  cgroup: PooledCgroup | null;
  slot: string;
  channel: net.Socket;
  hostPid: number;
  pidfd: number;
  forked: Promise<{ forkUs: number }>;
  forkedW: Waiter<{ forkUs: number }>;
  /** resolves once the instance is in its cgroup and may take its request */
  bound: Promise<void>;
  boundW: Waiter<void>;
  result: InstanceResult | null;
  resultP: Promise<InstanceResult | null>;
  resultW: Waiter<InstanceResult | null>;
  exited: Promise<Extract<FromSeed, { t: 'exit' }>>;
  exitedW: Waiter<Extract<FromSeed, { t: 'exit' }>>;
  timer: NodeJS.Timeout | null;
  timedOut: boolean;
  released: boolean;
}

const REPLICA_CHECK_EVERY = 100;
const EXIT_GRACE_MS = 10_000;
const us = (ms: number): number => Math.max(0, Math.round(ms * 1000));

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

/** Function cgroups (/spore/fri-<pid>/...) whose spored is gone: kill what is left, remove them. */
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
    const children = new Set<string>();
    for (const dir of Object.values(cgroupHandle(layout, parent).dirs)) {
      try { for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) children.add(e.name); } catch { /* gone */ }
    }
    try {
      for (const c of children) {
        const h = cgroupHandle(layout, `${parent}/${c}`);
        killAll(h, 'SIGKILL');
        destroyCgroup(h);
      }
      destroyCgroup(cgroupHandle(layout, parent));
      reaped.push(parent);
    } catch { /* processes still dying; the next start tries again */ }
  }
  return reaped;
}

/** Lambda's MODULE.FUNCTION -> the module inside /var/task and the export. */
export function splitHandler(handler: string): LoadSpec {
  const dot = handler.lastIndexOf('.');
  if (dot <= 0 || dot === handler.length - 1) throw new InvalidArgument(`handler ${JSON.stringify(handler)} is not MODULE.FUNCTION (e.g. "index.handler")`);
  const mod = handler.slice(0, dot);
  if (mod.startsWith('/') || mod.split('/').some((p) => p === '..' || p === '')) throw new InvalidArgument(`handler module ${JSON.stringify(mod)} must be a relative path inside the package`);
  return { module: `/var/task/${mod}`, handler: handler.slice(dot + 1) };
}

/** The module file a single-file deploy is stored as, per language. */
const SINGLE_FILE: Record<'node' | 'python', { file: string; module: string }> = {
  node: { file: 'index.js', module: 'index' },
  python: { file: 'handler.py', module: 'handler' },
};

export class ProcessFunctionRuntime implements FunctionRuntime {
  private readonly seeds = new Map<string, SeedRec>();
  private readonly instances = new Map<string, InstRec>();
  private readonly functions = new Map<string, FunctionRec>();
  private readonly languageSeeds = new Map<Language, SeedRec>();
  private server: net.Server | null = null;
  private readonly socketPath: string;
  private readonly stateDir: string;
  private cgroups: CgroupPool | null = null;
  private lineageSeccomp = { filter: '', flags: 0 };
  private counter = 0;
  private readonly o: ProcessRuntimeOptions;
  private root: SeedRec | null = null;
  private packages!: PackageStore;
  private ids!: IdRanges;
  private output!: FunctionLogs;
  private staging = '';
  private readonly links = new Set<SeedLink>();

  constructor(o: ProcessRuntimeOptions) {
    this.o = o;
    this.socketPath = join(o.runDir, 'seeds.sock');
    this.stateDir = o.stateDir ?? '/var/lib/spore';
  }

  /** Listen for language seeds, fill the cgroup pool, create the root record and both language seeds. */
  async start(): Promise<void> {
    const f = compileSeccomp(defaultProfile());
    this.lineageSeccomp = { filter: f.bpf.toString('base64'), flags: f.flags };
    this.packages = new PackageStore(join(this.stateDir, 'packages'));
    this.ids = new IdRanges(this.o.idRangesDir ?? '/var/lib/spore/idmaps', pidAlive);
    this.output = new FunctionLogs(join(this.o.runDir, 'logs'));
    this.staging = join(this.o.runDir, 'sandbox-root');
    mkdirSync(this.staging, { recursive: true, mode: 0o700 });
    if (existsSync(this.socketPath)) unlinkSync(this.socketPath);
    this.server = net.createServer((c) => this.onLanguageSeed(c));
    await new Promise<void>((resolve, reject) => { this.server?.once('error', reject); this.server?.listen(this.socketPath, resolve); });
    chmodSync(this.socketPath, 0o600);
    const reaped = reapStaleCgroupPools(this.o.layout, pidAlive);
    if (reaped.length) this.o.log.warn({ pools: reaped }, 'removed function cgroups of a dead spored');
    this.cgroups = new CgroupPool(this.o.layout, { size: this.o.cgroupPoolSize ?? 32, parent: `/spore/fri-${process.pid}` });
    this.cgroups.fill();
    await this.create('process');
    const langs = await Promise.allSettled((['node', 'python'] as Language[]).map((l) => this.languageSeed(l)));
    for (const r of langs) if (r.status === 'rejected') this.o.log.error({ err: (r.reason as Error).message }, 'language seed failed to start');
  }

  async stop(): Promise<void> {
    // every link, also of seeds already forgotten: a seed that hangs must not keep spored
    // from stopping; seeds kill their instances when their link closes
    for (const l of this.links) l.close('spored stopping');
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
    for (const fn of this.functions.values()) for (const v of fn.versions) this.destroyLineageCgroup(v);
    this.cgroups?.close();
    this.output?.close();
  }

  // --- seed links -----------------------------------------------------------------------

  /** A language seed connected to seeds.sock: believed only if the kernel says it is the process the root seed forked. */
  private onLanguageSeed(c: net.Socket): void {
    let rec: SeedRec | null = null;
    let link: SeedLink;
    try {
      link = new SeedLink(c, (m) => {
        if (rec) { this.onSeedMessage(rec, m); return; }
        const claimed = m.t === 'hello' ? this.seeds.get(m.id) ?? null : null;
        let peer = -1;
        try { peer = sys.peerCred(link.fd).pid; } catch { /* gone */ }
        if (!claimed || claimed.info.level !== 1 || claimed.link || claimed.info.state !== 'starting' || peer !== claimed.hostPid) {
          this.o.log.warn({ seed: m.t === 'hello' ? m.id : null, peer }, 'refused a seed connection');
          link.close('refused');
          return;
        }
        rec = claimed;
        rec.link = link;
      }, (why) => { this.links.delete(link); if (rec) this.onSeedGone(rec, why); });
    } catch {
      c.destroy();
      return;
    }
    this.links.add(link);
  }

  /** A link spored made for a seed it asked another seed to fork (a socketpair end). */
  private linkFor(rec: SeedRec, fd: number): SeedLink {
    const link = new SeedLink(fd, (m) => this.onSeedMessage(rec, m), (why) => { this.links.delete(link); this.onSeedGone(rec, why); });
    this.links.add(link);
    rec.link = link;
    return link;
  }

  private onSeedGone(rec: SeedRec, why: string): void {
    if (rec.info.state !== 'deleting') {
      rec.info.state = 'failed';
      rec.info.error ??= why;
    }
    rec.readyW.reject(new Unavailable(`seed ${rec.info.id} went away (${why})`));
    rec.forkedW.reject(new Unavailable(`seed ${rec.info.id} went away`));
    // Its instances died with it (a seed kills its children when its link closes; a lineage's
    // pid 1 takes the whole namespace down): end them here, or their resources never return.
    let orphans = 0;
    for (const inst of this.instances.values()) {
      if (inst.seed !== rec || inst.released) continue;
      orphans++;
      inst.forkedW.reject(new Unavailable(`seed ${rec.info.id} went away`));
      inst.exitedW.resolve({ t: 'exit', id: inst.info.id, pid: inst.info.pid, code: null, signal: 9, timedOut: false });
    }
    if (rec.info.state !== 'deleting') this.o.log.warn({ seed: rec.info.id, why, orphans }, 'seed disconnected');
  }

  private onSeedMessage(rec: SeedRec, m: FromSeed): void {
    switch (m.t) {
      case 'ready':
        if (rec.info.state !== 'starting') return;
        rec.info.state = 'ready';
        rec.info.initMs = m.initMs;
        rec.readyW.resolve();
        return;
      case 'failed': {
        // an L1 reports a child lineage it could not finish; a seed reports itself
        const target = m.id === rec.info.id ? rec : this.seeds.get(m.id);
        if (!target || (target !== rec && target.info.parent !== rec.info.id)) return;
        target.info.state = 'failed';
        target.info.error = m.stack ?? m.message;
        target.slotsMountedW.reject(new FailedPrecondition(m.message));
        target.readyW.reject(m.phase === 'load'
          ? new InvalidArgument(`function code failed to load: ${m.message}`)
          : new FailedPrecondition(`function sandbox could not be built (${m.phase ?? 'setup'}): ${m.message}`));
        return;
      }
      case 'forked': {
        const inst = this.instances.get(m.id);
        if (inst) { if (inst.seed === rec) this.onInstanceForked(inst, m.pid, m.forkUs); return; }
        const child = this.seeds.get(m.id);
        if (child && child.info.parent === rec.info.id) {
          const host = rec.hostPid ? childHostPid(rec.hostPid, m.pid) : null;
          if (host === null) { child.forkedW.reject(new FailedPrecondition(`seed ${child.info.id}: its process could not be found`)); return; }
          child.hostPid = host;
          child.info.pid = host;
          child.forkedW.resolve(host);
        }
        return;
      }
      case 'slots': {
        const child = this.seeds.get(m.id);
        if (child && child.info.parent === rec.info.id) child.slotsMountedW.resolve(m.count);
        return;
      }
      case 'forkFailed': {
        const inst = this.instances.get(m.id);
        if (inst?.seed === rec) inst.forkedW.reject(new FailedPrecondition(`fork failed: ${m.message}`));
        const child = this.seeds.get(m.id);
        if (child && child.info.parent === rec.info.id) {
          child.forkedW.reject(new FailedPrecondition(`fork failed: ${m.message}`));
          child.readyW.reject(new FailedPrecondition(`fork failed: ${m.message}`));
        }
        return;
      }
      case 'exit': {
        const inst = this.instances.get(m.id);
        if (inst) { if (inst.seed === rec) inst.exitedW.resolve(m); return; }
        const child = this.seeds.get(m.id);
        if (child && child.info.parent === rec.info.id && child.info.state !== 'deleting') {
          const starting = child.info.state === 'starting';
          child.info.state = 'failed';
          child.info.error ??= `seed exited (code ${m.code}, signal ${m.signal})`;
          // its own 'failed' (with the reason) normally comes first or right after
          if (starting) setTimeout(() => child.readyW.reject(new FailedPrecondition(`seed ${child.info.id} exited before it was ready (code ${m.code}, signal ${m.signal})`)), 1000).unref();
        }
        return;
      }
      default:
        return;
    }
  }

  private newSeed(partial: Pick<SeedInfo, 'id' | 'level' | 'engine' | 'language' | 'function' | 'parent' | 'replicaOf'>, version: VersionRec | null): SeedRec {
    const [ready, readyW] = deferred<void>();
    const [forked, forkedW] = deferred<number>();
    const [slotsMounted, slotsMountedW] = deferred<number>();
    const rec: SeedRec = {
      info: { ...partial, pid: 0, state: 'starting', forks: 0, createdAt: new Date().toISOString(), initMs: 0, memory: null, error: null },
      link: null, hostPid: 0, ready, readyW, forked, forkedW, inflight: 0, version, slotsMounted, slotsMountedW,
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
      this.root = this.newSeed({ id: 'l0-process', level: 0, engine: 'process', language: null, function: null, parent: null, replicaOf: null }, null);
      this.root.info.pid = this.o.l0.pid;
      this.root.hostPid = this.o.l0.pid;
      this.root.info.state = 'ready';
      this.root.readyW.resolve();
    }
    return this.root.info;
  }

  private async languageSeed(language: Language): Promise<SeedRec> {
    if (language === 'vm') throw new InvalidArgument('"vm" functions run on the vm engine (seeds/vm-functions.ts), not the process engine');
    const existing = this.languageSeeds.get(language);
    if (existing && existing.info.state !== 'failed') { await this.waitReady(existing); return existing; }
    const root = this.root ?? this.seeds.get((await this.create('process')).id);
    if (!root) throw new Unavailable('no root seed');
    const rec = this.newSeed({ id: `l1-${language}-${++this.counter}`, level: 1, engine: 'process', language, function: null, parent: root.info.id, replicaOf: null }, null);
    this.languageSeeds.set(language, rec);
    rec.hostPid = await this.o.l0.spawnSeed(language, rec.info.id, this.socketPath, this.o.pythonBin ?? '/usr/bin/python3', ZYGOTE);
    rec.info.pid = rec.hostPid;
    root.info.forks++;
    await this.waitReady(rec);
    this.o.log.info({ seed: rec.info.id, pid: rec.info.pid }, 'language seed ready');
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
      if (seed.info.level === 1) {
        throw new FailedPrecondition('a function seed (L2) is built by deploying the function (`spore deploy`); its sandbox comes from the deploy');
      }
      const v = seed.version;
      if (!v || v.state === 'gone') throw new FailedPrecondition(`seed ${seedId} belongs to no live function version`);
      const r = await this.replica(v);
      v.seeds.push(r);
      return r.info;
    }
    if (seed.info.level !== 2 || !seed.version) throw new FailedPrecondition('instances fork from a function seed (L2); deploy the function and fork from its seed');
    const inst = await this.startInstance(seed.version, seed);
    await inst.forked;
    await inst.bound;
    inst.info.state = 'paused';
    return { ...inst.info };
  }

  async activate(instanceId: string, event: string): Promise<InvokeResult> {
    const inst = this.instances.get(instanceId);
    if (!inst) throw new NotFound(`instance ${instanceId} not found`);
    if (inst.info.state !== 'paused') throw new FailedPrecondition(`instance ${instanceId} is ${inst.info.state}, not paused`);
    const t0 = performance.now();
    inst.info.state = 'running';
    this.sendRequest(inst, event);
    return this.finish(inst, t0, 0);
  }

  async destroy(instanceId: string): Promise<void> {
    const inst = this.instances.get(instanceId);
    if (!inst) throw new NotFound(`instance ${instanceId} not found`);
    this.kill(inst);
    await Promise.race([inst.exited, new Promise((r) => setTimeout(r, 2000))]);
    this.release(inst);
  }

  listSeeds(): SeedInfo[] {
    return [...this.seeds.values()].map((s) => ({ ...s.info, memory: s.hostPid ? memoryOf(s.hostPid) : null }));
  }

  async deleteSeed(seedId: string): Promise<void> {
    const seed = this.seeds.get(seedId);
    if (!seed) throw new NotFound(`seed ${seedId} not found`);
    if (seed.info.level === 0) throw new FailedPrecondition('the root seed cannot be deleted while spored runs');
    if (seed.version && seed.version.seeds[0] === seed && seed.version.state !== 'gone') {
      throw new FailedPrecondition(`seed ${seedId} is pid 1 of function ${seed.version.fn.spec.name}'s sandbox; remove or redeploy the function instead`);
    }
    this.dropSeed(seed);
  }

  private dropSeed(seed: SeedRec): void {
    seed.info.state = 'deleting';
    if (seed.version) seed.version.seeds = seed.version.seeds.filter((s) => s !== seed);
    for (const [l, s] of this.languageSeeds) if (s === seed) this.languageSeeds.delete(l);
    seed.link?.send({ t: 'exit' });
    seed.link?.close('deleted');
    this.seeds.delete(seed.info.id);
  }

  listInstances(): InstanceInfo[] {
    return [...this.instances.values()].map((i) => ({ ...i.info }));
  }

  // --- functions ------------------------------------------------------------------------

  private runtimeRoot(language: 'node' | 'python'): { dir: string; entries: RuntimeEntry[]; ssl: boolean } {
    const dir = join(this.o.rootfsDir ?? '/var/lib/spore/rootfs', language);
    let names: string[];
    try { names = readdirSync(dir); } catch {
      throw new FailedPrecondition(`the ${language} runtime root ${dir} is missing; build it with scripts/build-rootfs.sh`);
    }
    const entries: RuntimeEntry[] = names.map((name) => {
      const st = lstatSync(join(dir, name));
      if (st.isSymbolicLink()) return { name, kind: 'symlink', target: readlinkSync(join(dir, name)) };
      return { name, kind: st.isDirectory() ? 'dir' : 'file' };
    });
    return { dir, entries, ssl: existsSync(join(dir, 'etc/ssl')) };
  }

  async deploy(spec: FunctionSpec): Promise<FunctionInfo> {
    validateFunctionName(spec.name);
    if (spec.language !== 'node' && spec.language !== 'python') throw new InvalidArgument(`unknown runtime ${JSON.stringify(spec.language)}; use node or python`);
    if (!(spec.memoryMiB >= 16 && spec.memoryMiB <= 16384)) throw new InvalidArgument('memory must be between 16 and 16384 MiB');
    if (!(spec.timeoutMs >= 1 && spec.timeoutMs <= 900_000)) throw new InvalidArgument('timeout must be between 1 ms and 15 min');
    const language = spec.language;
    let pkg: StoredPackage;
    let load: LoadSpec;
    let codeBytes: number;
    if (spec.package) {
      load = splitHandler(spec.handler);
      pkg = await this.packages.put(spec.package.format, spec.package.data);
      codeBytes = spec.package.data.byteLength;
    } else {
      if (!spec.code) throw new InvalidArgument('function code is empty');
      if (!/^[A-Za-z_$][\w$]*$/.test(spec.handler)) throw new InvalidArgument(`invalid handler name ${JSON.stringify(spec.handler)}`);
      const single = SINGLE_FILE[language];
      pkg = await this.packages.putFile(single.file, spec.code);
      load = { module: `/var/task/${single.module}`, handler: spec.handler };
      codeBytes = Buffer.byteLength(spec.code);
    }
    const runtime = this.runtimeRoot(language);
    let fn = this.functions.get(spec.name);
    const fresh = !fn;
    if (fn && fn.spec.language !== language) throw new FailedPrecondition(`function ${spec.name} is a ${fn.spec.language} function; remove it before deploying it as ${language}`);
    if (fn?.versions.some((v) => v.state === 'starting')) throw new AlreadyExists(`function ${spec.name} is being deployed right now; try again when that finishes`);
    if (!fn) {
      fn = { spec, hostId: this.ids.acquire(this.stateDir, spec.name), versions: [], invocations: 0, lastVersion: 0 };
      this.functions.set(spec.name, fn);
    }
    const version = fn.lastVersion + 1;
    const replicas = this.o.l2Replicas ?? 2;
    const cgroup = cgroupHandle(this.o.layout, `/spore/fri-${process.pid}/fn-${spec.name}-v${version}`);
    createCgroup(cgroup, { memory: { limit: spec.memoryMiB * (1 + replicas) * 1024 * 1024 }, pids: { limit: 4096 } });
    const slots = Array.from({ length: this.o.slotsPerFunction ?? 32 }, () => slotName(randomBytes(16)));
    const tmpBytes = (this.o.tmpMiB ?? 64) * 1024 * 1024;
    const plan = functionSandbox({
      name: spec.name, version, runtimeRoot: runtime.dir, runtimeEntries: runtime.entries, runtimeHasSsl: runtime.ssl,
      packageDir: pkg.dir, staging: this.staging, hostId: fn.hostId, cgroupProcs: procsFiles(cgroup), memoryMiB: spec.memoryMiB,
      tmpBytes, seccomp: this.lineageSeccomp, env: spec.env,
    });
    const v: VersionRec = {
      fn, version, pkg, load, codeBytes, cgroup, plan, seeds: [], nextReplica: 0, state: 'starting', inflight: 0,
      deployedAt: new Date().toISOString(),
      tmpBytes,
      slots: new SlotPool(slots, () => {
        const first = v.seeds[0];
        return first?.hostPid ? `/proc/${first.hostPid}/root${v.plan.slotDir}` : null;
      }),
    };
    fn.versions.push(v);
    fn.lastVersion = version;
    try {
      const l1 = await this.languageSeed(language);
      v.seeds.push(await this.lineageSeed(l1, v));
    } catch (e) {
      v.state = 'gone';
      fn.versions = fn.versions.filter((x) => x !== v);
      fn.lastVersion = version - 1;
      for (const s of v.seeds) this.dropSeed(s);
      this.destroyLineageCgroup(v);
      if (fresh) {
        this.functions.delete(spec.name);
        this.ids.release(fn.hostId);
      }
      this.gcPackages();
      throw e;
    }
    // The new version serves from now on; the one before finishes what it has, then goes.
    for (const old of fn.versions) if (old !== v && old.state === 'active') this.retire(old);
    v.state = 'active';
    fn.spec = spec;
    for (let i = 0; i < replicas; i++) {
      void this.replica(v).then((r) => { if (v.state === 'active') v.seeds.push(r); else this.dropSeed(r); })
        .catch((e: Error) => this.o.log.warn({ fn: spec.name, err: e.message }, 'replica seed failed'));
    }
    this.o.log.info({ fn: spec.name, version, seed: v.seeds[0]?.info.id, digest: pkg.digest.slice(0, 12) }, 'function deployed');
    return this.functionInfo(fn);
  }

  /** The lineage's first seed: an L1 builds its sandbox in a fork of itself. */
  private async lineageSeed(l1: SeedRec, v: VersionRec): Promise<SeedRec> {
    const name = v.fn.spec.name;
    const rec = this.newSeed({ id: `l2-${name}-${++this.counter}`, level: 2, engine: 'process', language: l1.info.language, function: name, parent: l1.info.id, replicaOf: null }, v);
    const [mine, theirs] = sys.socketpair();
    this.linkFor(rec, mine);
    const log = this.output.open(name, `v${v.version}`);
    if (!l1.link) { sys.close(theirs); sys.close(log); throw new Unavailable(`language seed ${l1.info.id} is not connected`); }
    l1.link.send({ t: 'seed', id: rec.info.id, nfds: 2, load: v.load, sandbox: v.plan }, [theirs, log]);
    l1.info.forks++;
    try {
      await Promise.race([rec.forked, rec.ready]);
      await this.waitReady(rec, this.o.initTimeoutMs ?? 10_000);
      // the instances' /tmp slots, named only now: init code never held their names
      l1.link.send({ t: 'slots', id: rec.info.id, slotDir: v.plan.slotDir, names: v.slots.names(), bytes: v.tmpBytes });
      await Promise.race([rec.slotsMounted, new Promise((_, reject) => setTimeout(() => reject(new Unavailable(`${l1.info.id} did not mount the /tmp slots`)), 10_000).unref())]);
    } catch (e) {
      if (rec.hostPid) { try { process.kill(rec.hostPid, 'SIGKILL'); } catch { /* gone */ } }
      this.dropSeed(rec);
      throw e instanceof Unavailable && /did not become ready/.test(e.message)
        ? new FailedPrecondition(`function ${name}: init code did not finish within ${this.o.initTimeoutMs ?? 10_000} ms`)
        : e;
    }
    return rec;
  }

  /** A replica of a lineage's seed: a fork of its first seed (same sandbox, function already loaded). */
  private async replica(v: VersionRec): Promise<SeedRec> {
    const first = v.seeds[0];
    if (!first?.link) throw new Unavailable(`function ${v.fn.spec.name} has no running seed`);
    const rec = this.newSeed({ id: `l2-${v.fn.spec.name}-${++this.counter}`, level: 2, engine: 'process', language: first.info.language, function: v.fn.spec.name, parent: first.info.id, replicaOf: first.info.id }, v);
    const [mine, theirs] = sys.socketpair();
    this.linkFor(rec, mine);
    first.link.send({ t: 'seed', id: rec.info.id, nfds: 1 }, [theirs]);
    first.info.forks++;
    try {
      await rec.forked;
      await this.waitReady(rec);
    } catch (e) {
      this.dropSeed(rec);
      throw e;
    }
    return rec;
  }

  /** A version that no longer takes new work: its seeds go once its in-flight work is done. */
  private retire(v: VersionRec): void {
    if (v.state === 'retiring' || v.state === 'gone') return;
    v.state = 'retiring';
    const done = (): void => {
      if (v.inflight > 0) { setTimeout(done, 50).unref(); return; }
      v.state = 'gone';
      for (const s of [...v.seeds].reverse()) this.dropSeed(s);
      v.fn.versions = v.fn.versions.filter((x) => x !== v);
      setTimeout(() => { this.destroyLineageCgroup(v); this.gcPackages(); }, 200).unref();
      this.o.log.info({ fn: v.fn.spec.name, version: v.version }, 'retired a function version');
    };
    done();
  }

  private destroyLineageCgroup(v: VersionRec): void {
    try {
      killAll(v.cgroup, 'SIGKILL');
      destroyCgroup(v.cgroup);
    } catch (e) {
      this.o.log.warn({ fn: v.fn.spec.name, version: v.version, err: (e as Error).message }, 'lineage cgroup not removed yet');
    }
  }

  private gcPackages(): void {
    const keep = new Set<string>();
    for (const f of this.functions.values()) for (const v of f.versions) keep.add(v.pkg.digest);
    try { this.packages.gc(keep); } catch (e) { this.o.log.warn({ err: (e as Error).message }, 'package gc'); }
  }

  async remove(name: string): Promise<void> {
    const fn = this.functions.get(name);
    if (!fn) throw new NotFound(`function ${name} not found`);
    this.functions.delete(name);
    for (const v of fn.versions) {
      v.state = 'gone';
      for (const s of [...v.seeds].reverse()) this.dropSeed(s);
    }
    await new Promise((r) => setTimeout(r, 100));
    for (const v of fn.versions) this.destroyLineageCgroup(v);
    this.ids.release(fn.hostId);
    this.output.remove(name);
    this.gcPackages();
  }

  private functionInfo(fn: FunctionRec): FunctionInfo {
    const active = [...fn.versions].reverse().find((v) => v.state === 'active') ?? fn.versions.at(-1);
    const versions: FunctionVersionInfo[] = [...fn.versions].reverse().filter((v) => v.state !== 'gone' && v.state !== 'starting').map((v) => ({
      version: v.version, packageDigest: v.pkg.digest, state: v.state === 'active' ? 'active' : 'retiring', inflight: v.inflight,
      seedIds: v.seeds.map((s) => s.info.id), deployedAt: v.deployedAt,
    }));
    const s = fn.spec;
    return {
      name: s.name, language: s.language, handler: s.handler, memoryMiB: s.memoryMiB, timeoutMs: s.timeoutMs, env: { ...s.env },
      codeBytes: active?.codeBytes ?? 0, version: active?.version ?? 0, packageDigest: active?.pkg.digest ?? '',
      seedId: active?.seeds[0]?.info.id ?? null, deployedAt: active?.deployedAt ?? '', invocations: fn.invocations, versions,
    };
  }

  listFunctions(): FunctionInfo[] {
    return [...this.functions.values()].map((f) => this.functionInfo(f));
  }

  async logs(name: string, tailBytes = 64 * 1024): Promise<string> {
    if (!this.functions.has(name)) throw new NotFound(`function ${name} not found`);
    return this.output.tail(name, Math.max(0, Math.min(tailBytes, 16 * 1024 * 1024)));
  }

  // --- invoke ---------------------------------------------------------------------------
  async invoke(name: string, event: string, opts: InvokeOptions = {}): Promise<InvokeResult> {
    const t0 = performance.now();
    const fn = this.functions.get(name);
    if (!fn) throw new NotFound(`function ${name} not found`);
    if (opts.level !== undefined && opts.level !== 2) throw new InvalidArgument('functions run in their own sandbox, forked from their L2 seed; level must be 2');
    const v = [...fn.versions].reverse().find((x) => x.state === 'active');
    if (!v) throw new Unavailable(`function ${name} has no active version`);
    fn.invocations++;
    const inst = await this.startInstance(v, null);
    this.sendRequest(inst, event);
    return this.finish(inst, t0, performance.now() - t0);
  }

  private pickReplica(v: VersionRec): SeedRec | null {
    let ready = v.seeds.filter((s) => s.info.state === 'ready' && s.link && !s.link.closed);
    // the lineage's first seed serves only until a replica is ready
    if (ready.length > 1) ready = ready.filter((s) => s !== v.seeds[0]);
    if (ready.length === 0) return null;
    v.nextReplica = (v.nextReplica + 1) % ready.length;
    let best = ready[v.nextReplica] as SeedRec;
    for (const s of ready) if (s.inflight < best.inflight) best = s;
    return best;
  }

  /**
   * Take a /tmp slot (waiting when the lineage is at its concurrency), a pooled cgroup and
   * a fresh channel; ask the seed to fork. The instance is moved into its cgroup (from
   * here, by host pid) as soon as its fork is reported; only then may it take a request.
   */
  private async startInstance(v: VersionRec, seedWanted: SeedRec | null): Promise<InstRec> {
    v.inflight++;
    let slot: string;
    try { slot = await v.slots.acquire(); } catch (e) { v.inflight--; throw e; }
    const seed = seedWanted ?? this.pickReplica(v);
    if (!seed?.link || v.state === 'gone') {
      v.inflight--;
      v.slots.release(slot);
      throw new Unavailable(`function ${v.fn.spec.name} has no ready seed`);
    }
    const id = `i-${(++this.counter).toString(36)}`;
    const memoryMiB = v.fn.spec.memoryMiB;
    let cg: PooledCgroup | null = null;
    try {
      cg = this.cgroups?.acquire({ memory: { limit: memoryMiB * 1024 * 1024 }, pids: { limit: 256 } }, `m${memoryMiB}`).handle ?? null;
    } catch (e) {
      v.inflight--;
      v.slots.release(slot);
      throw e;
    }
    const [mine, theirs] = sys.socketpair();
    const channel = new net.Socket({ fd: mine, readable: true, writable: true });
    // first line: which /tmp is the instance's own (it never passes through the seed)
    channel.write(`${JSON.stringify({ slot })}\n`);
    const [forked, forkedW] = deferred<{ forkUs: number }>();
    const [bound, boundW] = deferred<void>();
    const [exited, exitedW] = deferred<Extract<FromSeed, { t: 'exit' }>>();
    const [resultP, resultW] = deferred<InstanceResult | null>();
    const inst: InstRec = {
      info: { id, seedId: seed.info.id, function: v.fn.spec.name, pid: 0, state: 'running', createdAt: new Date().toISOString() },
      seed, version: v, cgroup: cg, slot, channel, hostPid: 0, pidfd: -1, forked, forkedW, bound, boundW,
      result: null, resultP, resultW, exited, exitedW, timer: null, timedOut: false, released: false,
    };
    this.instances.set(id, inst);
    this.readResult(inst);
    seed.inflight++;
    seed.info.forks++;
    void exited.then(() => {
      seed.inflight--;
      if (seed.version) this.maybeRotate(seed.version, seed);
    });
    void forked.catch((e: Error) => { boundW.reject(e); resultW.resolve(null); });
    seed.link.send({ t: 'fork', id, nfds: 1, timeoutMs: v.fn.spec.timeoutMs }, [theirs]);
    return inst;
  }

  /** The seed reported the fork: find the process, hold it by pidfd, put it in its cgroup. */
  private onInstanceForked(inst: InstRec, reportedPid: number, forkUs: number): void {
    const host = childHostPid(inst.seed.hostPid, reportedPid);
    const pidfd = host === null ? null : openChildPidfd(inst.seed.hostPid, host, nsPids(host));
    if (host === null || pidfd === null) {
      inst.forkedW.reject(new FailedPrecondition(`instance ${inst.info.id}: no child ${reportedPid} of seed ${inst.seed.info.id}`));
      return;
    }
    inst.hostPid = host;
    inst.pidfd = pidfd;
    inst.info.pid = host;
    try {
      if (inst.cgroup) this.moveIntoCgroup(inst.cgroup, host);
    } catch (e) {
      this.kill(inst);
      inst.forkedW.reject(new FailedPrecondition(`instance ${inst.info.id}: cgroup: ${(e as Error).message}`));
      return;
    }
    inst.forkedW.resolve({ forkUs });
    inst.boundW.resolve();
  }

  private moveIntoCgroup(cg: PooledCgroup, pid: number): void {
    const controllers = this.o.instanceControllers ?? ['memory', 'pids', 'cpu'];
    const v2 = this.o.layout.mode === 'v2';
    for (const f of procsFiles(cg)) {
      if (v2 || f.includes('/unified/') || controllers.some((c) => f.includes(`/${c}/`))) writeFileSync(f, String(pid));
    }
  }

  /** Send the request once the instance is bound; its timeout starts now. */
  private sendRequest(inst: InstRec, event: string): void {
    const v = inst.version;
    const req: InvokeRequest = {
      event,
      context: { functionName: v.fn.spec.name, functionVersion: String(v.version), requestId: inst.info.id, deadlineMs: Date.now() + v.fn.spec.timeoutMs, memoryLimitMiB: v.fn.spec.memoryMiB },
    };
    void inst.bound.then(() => {
      inst.channel.write(JSON.stringify(req) + '\n');
      inst.timer = setTimeout(() => { inst.timedOut = true; this.kill(inst); }, v.fn.spec.timeoutMs);
    }, () => undefined);
  }

  /**
   * The instance's answer: the first result line on its channel (handler code can write to
   * its own channel too, but only its own invocation suffers), bounded by MAX_RESULT_LINE.
   */
  private readResult(inst: InstRec): void {
    let buf = '';
    let seen = 0;
    const ch = inst.channel;
    ch.setEncoding('utf8');
    ch.on('data', (d: string) => {
      if (inst.result) return;
      buf += d;
      seen += d.length;
      for (let nl = buf.indexOf('\n'); nl >= 0 && !inst.result; nl = buf.indexOf('\n')) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        try {
          const r = JSON.parse(line) as InstanceResult;
          if (r && typeof r === 'object' && r.t === 'result' && typeof r.ok === 'boolean') { inst.result = r; inst.resultW.resolve(r); ch.destroy(); }
        } catch { /* not a result line */ }
      }
      if (!inst.result && seen > MAX_RESULT_LINE) {
        this.o.log.warn({ inst: inst.info.id }, `instance wrote over ${MAX_RESULT_LINE} bytes without a result; killing it`);
        buf = '';
        this.kill(inst);
        ch.destroy();
      }
    });
    ch.on('error', () => undefined);
    ch.on('close', () => inst.resultW.resolve(inst.result));
  }

  private kill(inst: InstRec): void {
    if (inst.pidfd >= 0) { try { sys.pidfdSignal(inst.pidfd, 9); } catch { /* exited */ } }
    else inst.seed.link?.send({ t: 'kill', id: inst.info.id });
  }

  /** A replica whose private memory has grown past the limit is replaced (off the response path). */
  private maybeRotate(v: VersionRec, seed: SeedRec): void {
    if (seed === v.seeds[0] || seed.info.forks % REPLICA_CHECK_EVERY !== 0 || seed.info.state !== 'ready' || v.state !== 'active') return;
    const mem = memoryOf(seed.hostPid);
    if (!mem || mem.privateKiB <= (this.o.replicaPrivateLimitKiB ?? 4096)) return;
    this.o.log.info({ seed: seed.info.id, privateKiB: mem.privateKiB }, 'retiring a replica seed whose memory went private');
    seed.info.state = 'deleting';
    v.seeds = v.seeds.filter((s) => s !== seed);
    void this.replica(v).then((r) => { if (v.state === 'active') v.seeds.push(r); else this.dropSeed(r); }).catch(() => undefined);
    const retire = (): void => { if (seed.inflight > 0) { setTimeout(retire, 50).unref(); return; } this.dropSeed(seed); };
    retire();
  }

  /**
   * Resolves at the instance's result (or its death). Early destroy: the child _exits right
   * after answering; its resources are recycled when its exit arrives, off the response path.
   */
  private async finish(inst: InstRec, t0: number, controlMs: number): Promise<InvokeResult> {
    let forkUs = 0;
    try { forkUs = (await inst.forked).forkUs; } catch { /* reported below as a crash */ }
    // The channel closes when the instance is gone, after its last bytes: its result can
    // arrive after the seed's exit report. A child the handler forked may keep the channel
    // open; then the exit (plus a grace) decides.
    const r = await Promise.race([
      inst.resultP,
      inst.exited.then(() => Promise.race([inst.resultP, new Promise<null>((res) => setTimeout(() => res(null), 1000).unref())])),
    ]) ?? inst.result;
    const tResult = performance.now();
    if (inst.timer) { clearTimeout(inst.timer); inst.timer = null; }
    // An instance that answered must exit at once; one that does not is killed, and if even
    // that is never confirmed its resources are reclaimed anyway.
    const guard = setTimeout(() => {
      this.o.log.warn({ inst: inst.info.id, seed: inst.seed.info.id, pid: inst.hostPid }, 'instance did not exit; killing it');
      this.kill(inst);
      setTimeout(() => inst.exitedW.resolve({ t: 'exit', id: inst.info.id, pid: inst.info.pid, code: null, signal: 9, timedOut: false }), 2000).unref();
    }, r ? EXIT_GRACE_MS : 2000);
    guard.unref();
    void inst.exited.then(() => clearTimeout(guard));
    const destroyed = inst.exited.then(() => { this.release(inst); return performance.now(); });
    let tDone = -1;
    void destroyed.then((t) => { tDone = t; });
    const exit = r ? null : await inst.exited;
    if (!r) tDone = await destroyed;
    const oom = !r && inst.cgroup ? oomKillCount(inst.cgroup) - inst.cgroup.oomKillsAtAcquire > 0 : false;
    inst.info.state = r?.ok ? 'done' : 'failed';
    const child = r?.timings ?? { bind: 0, seccomp: 0, init: 0, execute: 0 };
    const totalUs = us(tResult - t0);
    const timings: PhaseTimings = {
      control: us(controlMs), fork: forkUs, bind: child.bind, seccomp: child.seccomp, init: child.init, execute: child.execute,
      respond: 0, destroy: tDone > 0 ? us(tDone - tResult) : 0, total: totalUs,
    };
    timings.respond = Math.max(0, totalUs - timings.control - timings.fork - child.bind - child.seccomp - child.init - child.execute);
    let error: InvokeError | null = null;
    const spec = inst.version.fn.spec;
    if (!r || !r.ok) {
      if (inst.timedOut) error = { kind: 'timeout', message: `handler exceeded its timeout of ${spec.timeoutMs} ms and was killed`, stack: null };
      else if (oom) error = { kind: 'oom', message: `handler exceeded its memory limit of ${spec.memoryMiB} MiB and was killed`, stack: null };
      else if (r?.error) error = { kind: r.error.kind, message: r.error.message, stack: r.error.stack };
      else error = { kind: 'crash', message: `instance exited without a result (code ${exit?.code ?? null}, signal ${exit?.signal ?? null})`, stack: null };
    }
    return {
      ok: error === null, result: error === null ? r?.value ?? 'null' : null, error,
      function: spec.name, seedId: inst.seed.info.id, seedLevel: inst.seed.info.level,
      instanceId: inst.info.id, timings,
    };
  }

  private release(inst: InstRec): void {
    if (inst.released) return;
    inst.released = true;
    this.instances.delete(inst.info.id);
    if (inst.timer) clearTimeout(inst.timer);
    inst.channel.destroy();
    if (inst.cgroup) {
      try { this.cgroups?.release(inst.cgroup, { keepLimits: true }); } catch (e) { this.o.log.warn({ inst: inst.info.id, err: (e as Error).message }, 'cgroup release'); }
    }
    if (inst.pidfd >= 0) { sys.close(inst.pidfd); inst.pidfd = -1; }
    // after the cgroup is empty: nothing of this instance is left to write into its /tmp
    inst.version.slots.release(inst.slot);
    inst.version.inflight--;
  }

  pools(): { cgroups: unknown; functions: unknown } {
    const fns: Record<string, unknown> = {};
    for (const f of this.functions.values()) {
      for (const v of f.versions) fns[`${f.spec.name}@${v.version}`] = { slots: v.slots.size, inUse: v.slots.inUse, waiting: v.slots.waiting };
    }
    return { cgroups: this.cgroups?.snapshot() ?? null, functions: fns };
  }
}

