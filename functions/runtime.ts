// The process engine's function runtime: the FRI FunctionRuntime over the seed tree (L0 root
// -> L1 language -> L2 function lineage), instances forked from their function's L2 seed,
// pooled resources bound from outside the sandbox, early destroy. Transports (gRPC,
// gateway, CLI) sit on top. The work is split by responsibility:
//   seed-tree.ts  seeds and spored's links to them (who is believed about what)
//   registry.ts   functions and versions: deploy, redeploy, remove, replicas
//   instances.ts  one call: admission, fork, bind (cgroup from outside), request, result, release
//   states.ts     the allowed state moves of every record
// Trust: spored trusts the root seed and the L1 language seeds (spore's own code, no
// function code ever runs in them). An L2 seed runs the function's init code, and its
// instances run handler code: nothing they say is believed beyond their own function.
import { existsSync, mkdirSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { FailedPrecondition, InvalidArgument, NotFound, Unavailable, Unimplemented } from '../sys/errors.js';
import type {
  Engine, ForkTarget, FunctionInfo, FunctionRuntime, FunctionSpec, InstanceInfo, InvokeOptions, InvokeResult, SeedInfo,
} from '../protocols/fri/types.js';
import type { SeedClient } from '../engines/process/seed-client.js';
import { CgroupPool, cgroupHandle, createCgroup, killAll, destroyCgroup, type CgroupLayout } from '../pools/cgroups.js';
import { compileSeccomp, functionProfile } from '../pools/seccomp.js';
import { IdRanges } from './id-ranges.js';
import { FunctionLogs } from './logs.js';
import { PackageStore } from './packages.js';
import { SeedTree } from './seed-tree.js';
import { Instances } from './instances.js';
import { Registry, memoryOf } from './registry.js';
import { FunctionStore } from './store.js';
import { Parking, type ParkingMode } from './parking.js';
import type { InstRec } from './records.js';

export { splitHandler, memoryOf } from './registry.js';

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
  /** an idle version's replicas whose instances served idleRefreshCalls calls are replaced after this long without a call (default 1000 ms, 4 calls; 0 ms: never) */
  idleRefreshMs?: number;
  idleRefreshCalls?: number;
  /** v1 controllers an instance is moved into (default memory and pids: instances.ts INSTANCE_CONTROLLERS) */
  instanceControllers?: string[];
  /** per-instance /tmp slots per function lineage = its concurrency (default 32) */
  slotsPerFunction?: number;
  /** calls that may wait for a busy function; past it they get Overloaded at once (default = its concurrency) */
  queuePerFunction?: number;
  /** instances on the node at once, all functions together (default 256); past it calls get Overloaded */
  maxInstances?: number;
  /** size of each instance's /tmp (default 64 MiB) */
  tmpMiB?: number;
  /** cgroup (under every hierarchy) holding the instance pool and the lineages' cgroups; default /spore/fri-<pid> */
  cgroupParent?: string;
  /** a function's init code must be done in this long at deploy (default 10 s) */
  initTimeoutMs?: number;
  /** parked instances per active version: 'auto' (from recent traffic, the default), a number, or 0 (off) */
  parked?: ParkingMode;
  /** most parked instances per version in auto mode (default 4) */
  parkedMax?: number;
  /** auto mode: a function idle this long keeps none parked (ms, default 60 s) */
  parkedIdleMs?: number;
}

const pidAlive = (pid: number): boolean => existsSync(`/proc/${pid}`);

/**
 * What all functions of the node may hold at once (the functions' cgroup, pids.max): half of
 * the kernel's pid_max (the host keeps the other half), at least 1,024.
 */
export function functionsCaps(pidMaxFile = '/proc/sys/kernel/pid_max'): { pids: number } {
  let pidMax = 32_768;
  try { pidMax = Number(readFileSync(pidMaxFile, 'utf8').trim()) || pidMax; } catch { /* the kernel's default */ }
  return { pids: Math.max(1024, Math.floor(pidMax / 2)) };
}

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

export class ProcessFunctionRuntime implements FunctionRuntime {
  private readonly o: ProcessRuntimeOptions;
  private readonly stateDir: string;
  private cgroups: CgroupPool | null = null;
  private lineageSeccomp = { filter: '', flags: 0 };
  private readonly tree: SeedTree;
  private readonly inst: Instances;
  private registry!: Registry;
  private output!: FunctionLogs;
  private readonly parking: Parking;

  private readonly cgroupParent: string;

  constructor(o: ProcessRuntimeOptions) {
    this.o = o;
    this.cgroupParent = o.cgroupParent ?? `/spore/fri-${process.pid}`;
    this.stateDir = o.stateDir ?? '/var/lib/spore';
    this.inst = new Instances(
      { layout: o.layout, log: o.log, instanceControllers: o.instanceControllers, queuePerFunction: o.queuePerFunction, maxInstances: o.maxInstances },
      () => this.cgroups,
      (v) => this.registry.pick(v),
      (seed) => this.registry.instanceExited(seed),
    );
    this.tree = new SeedTree({ runDir: o.runDir, l0: o.l0, log: o.log, pythonBin: o.pythonBin, onLost: (seed) => this.registry?.seedLost(seed) }, this.inst);
    this.parking = new Parking({ mode: o.parked ?? 'auto', max: o.parkedMax ?? 4, idleMs: o.parkedIdleMs, log: o.log }, this.inst);
  }

  /** Listen for language seeds, fill the cgroup pool, create the root record and both language seeds. */
  async start(): Promise<void> {
    const f = compileSeccomp(functionProfile());
    this.lineageSeccomp = { filter: f.bpf.toString('base64'), flags: f.flags };
    const staging = join(this.o.runDir, 'sandbox-root');
    mkdirSync(staging, { recursive: true, mode: 0o700 });
    this.output = new FunctionLogs(join(this.o.runDir, 'logs'));
    this.registry = new Registry(
      {
        layout: this.o.layout, log: this.o.log, stateDir: this.stateDir, rootfsDir: this.o.rootfsDir ?? '/var/lib/spore/rootfs', staging,
        l2Replicas: this.o.l2Replicas ?? 2, replicaPrivateLimitKiB: this.o.replicaPrivateLimitKiB ?? 4096,
        idleRefreshMs: this.o.idleRefreshMs ?? 1000, idleRefreshCalls: this.o.idleRefreshCalls ?? 4,
        slotsPerFunction: this.o.slotsPerFunction ?? 32, tmpMiB: this.o.tmpMiB ?? 64, initTimeoutMs: this.o.initTimeoutMs ?? 10_000,
        lineageSeccomp: () => this.lineageSeccomp, cgroupParent: this.cgroupParent,
        onVersionEnd: (v) => this.parking.drain(v),
        activeCalls: (v) => v.inflight - this.parking.held(v) - v.recycling,
        releaseParked: (seed) => this.parking.dropFrom(seed),
        forksOf: (v) => this.inst.forksOf(v),
      },
      this.tree,
      new PackageStore(join(this.stateDir, 'packages')),
      new IdRanges(this.o.idRangesDir ?? '/var/lib/spore/idmaps', pidAlive),
      this.output,
      new FunctionStore(this.stateDir),
    );
    await this.tree.listen();
    const reaped = reapStaleCgroupPools(this.o.layout, pidAlive);
    if (reaped.length) this.o.log.warn({ pools: reaped }, 'removed function cgroups of a dead spored');
    // every function's lineages and instances are below this cgroup: what they hold together
    // is capped there, so functions cannot take the node's pids (red team, helper-55: one
    // function's init code held 4,000 tasks for good; eight would end the host's)
    const caps = functionsCaps();
    const parent = cgroupHandle(this.o.layout, this.cgroupParent);
    const made = createCgroup(parent, { pids: { limit: caps.pids } });
    for (const w of made.warnings) this.o.log.warn({ cgroup: this.cgroupParent }, w);
    this.o.log.info({ cgroup: this.cgroupParent, pidsMax: caps.pids }, 'functions\' cgroup');
    this.cgroups = new CgroupPool(this.o.layout, {
      size: this.o.cgroupPoolSize ?? 32, parent: this.cgroupParent,
      onQuarantine: (message) => this.o.log.warn(message),
    });
    this.cgroups.fill();
    this.tree.root();
    const langs = await Promise.allSettled((['node', 'python'] as const).map((l) => this.tree.languageSeed(l)));
    for (const r of langs) if (r.status === 'rejected') this.o.log.error({ err: (r.reason as Error).message }, 'language seed failed to start');
    // functions deployed before this spored started come back on their own; calls wait for them
    const restoring = this.registry.restoreAll();
    if (restoring.names.length) this.o.log.info({ functions: restoring.names }, 'restoring deployed functions');
  }

  async stop(): Promise<void> {
    this.parking.close();
    await this.tree.close();
    for (const fn of this.registry?.all() ?? []) for (const v of fn.versions) this.registry.destroyLineageCgroup(v);
    this.cgroups?.close();
    this.cgroups = null;
    this.output?.close();
  }

  // --- FRI: seeds -----------------------------------------------------------------------
  async create(engine: Engine): Promise<SeedInfo> {
    if (engine === 'vm') throw new Unimplemented('the vm engine is not wired into FRI on this build; use engine "process"');
    if (engine !== 'process') throw new InvalidArgument(`unknown engine ${JSON.stringify(engine)}; use "process" or "vm"`);
    return { ...this.tree.root().info };
  }

  async fork(seedId: string, target: ForkTarget): Promise<InstanceInfo | SeedInfo> {
    const seed = this.tree.get(seedId);
    if (!seed) throw new NotFound(`seed ${seedId} not found`);
    if (seed.info.state !== 'ready') throw new FailedPrecondition(`seed ${seedId} is ${seed.info.state}`);
    if (target.kind === 'seed') {
      if (seed.info.level === 0) {
        const lang = target.language;
        if (lang !== 'node' && lang !== 'python') throw new InvalidArgument('forking a language seed from L0 needs language "node" or "python"');
        return { ...(await this.tree.languageSeed(lang)).info };
      }
      if (seed.info.level === 1) {
        throw new FailedPrecondition('a function seed (L2) is built by deploying the function (`spore deploy`); its sandbox comes from the deploy');
      }
      const v = seed.version;
      const first = v?.seeds[0];
      if (!v || !first || v.state === 'gone') throw new FailedPrecondition(`seed ${seedId} belongs to no live function version`);
      const r = await this.tree.replica(first, v);
      v.seeds.push(r);
      return { ...r.info };
    }
    if (seed.info.level !== 2 || !seed.version) throw new FailedPrecondition('instances fork from a function seed (L2); deploy the function and fork from its seed');
    const inst = await this.inst.start(seed.version, seed, true);
    await this.inst.ready(inst);
    return { ...inst.info };
  }

  async activate(instanceId: string, event: string): Promise<InvokeResult> {
    const inst = this.inst.get(instanceId);
    if (!inst) throw new NotFound(`instance ${instanceId} not found`);
    if (inst.info.state !== 'paused') throw new FailedPrecondition(`instance ${instanceId} is ${inst.info.state}, not paused`);
    const t0 = performance.now();
    this.inst.sendRequest(inst, event);
    return this.inst.finish(inst, t0, 0, true); // forked and bound before this call
  }

  async destroy(instanceId: string): Promise<void> {
    const inst = this.inst.get(instanceId);
    if (!inst) throw new NotFound(`instance ${instanceId} not found`);
    await this.inst.destroy(inst);
  }

  listSeeds(): SeedInfo[] {
    return this.tree.list().map((s) => ({ ...s.info, memory: s.hostPid ? memoryOf(s.hostPid) : null }));
  }

  async deleteSeed(seedId: string): Promise<void> {
    const seed = this.tree.get(seedId);
    if (!seed) throw new NotFound(`seed ${seedId} not found`);
    if (seed.info.level === 0) throw new FailedPrecondition('the root seed cannot be deleted while spored runs');
    const v = seed.version;
    if (v && v.seeds[0] === seed && v.state !== 'gone') {
      throw new FailedPrecondition(`seed ${seedId} is pid 1 of function ${v.fn.spec.name}'s sandbox; remove or redeploy the function instead`);
    }
    if (v) v.seeds = v.seeds.filter((s) => s !== seed);
    this.tree.drop(seed);
  }

  listInstances(): InstanceInfo[] {
    return this.inst.list();
  }

  // --- functions ------------------------------------------------------------------------
  deploy(spec: FunctionSpec): Promise<FunctionInfo> {
    return this.registry.deploy(spec);
  }

  remove(name: string): Promise<void> {
    return this.registry.remove(name);
  }

  listFunctions(): FunctionInfo[] {
    return [...this.registry.all().map((f) => this.registry.info(f)), ...this.registry.queuedInfos()];
  }

  logs(name: string, tailBytes?: number): Promise<string> {
    return this.registry.logs(name, tailBytes);
  }

  async invoke(name: string, event: string, opts: InvokeOptions = {}): Promise<InvokeResult> {
    const t0 = performance.now();
    const fn = this.registry.get(name) ?? await this.registry.lookup(name);
    if (!fn) throw new NotFound(`function ${name} is not deployed`);
    if (opts.level !== undefined && opts.level !== 2) throw new InvalidArgument('functions run in their own sandbox, forked from their L2 seed; level must be 2');
    // a call that arrives while the function is being restored or rebuilt waits for it
    const down = this.registry.downReason(fn);
    if (down !== null) throw new Unavailable(`function ${name} is down: ${down}`);
    const found = this.registry.active(fn) ?? await this.registry.whenBuilt(fn);
    if (!found) throw new Unavailable(`function ${name} has no active version`);
    let v = found;
    fn.invocations.increment();
    // a parked instance when one is ready (the fork already happened), else fork on request
    const parked = this.parking.take(v);
    if (parked) {
      this.inst.sendRequest(parked, event);
      const r = await this.inst.finish(parked, t0, performance.now() - t0, true);
      setImmediate(() => this.parking.refill(found)); // after the answer went out
      return { ...r, parked: true };
    }
    let inst: InstRec;
    try {
      inst = await this.inst.start(v, null);
    } catch (e) {
      // its first seed died and the function is being rebuilt: the call goes to the new version
      const next = e instanceof Unavailable ? await this.registry.whenBuilt(fn, v) : undefined;
      if (!next) throw e;
      v = next;
      inst = await this.inst.start(v, null);
    }
    this.inst.sendRequest(inst, event);
    const r = await this.inst.finish(inst, t0, performance.now() - t0);
    setImmediate(() => this.parking.refill(v));
    return r;
  }

  pools(): { cgroups: unknown; functions: unknown; parked: unknown } {
    const fns: Record<string, unknown> = {};
    for (const f of this.registry?.all() ?? []) {
      for (const v of f.versions) fns[`${f.spec.name}@${v.version}`] = { concurrency: v.slots.concurrency, inUse: v.slots.inUse, waiting: v.slots.waiting, ...v.slots.pending };
    }
    return { cgroups: this.cgroups?.snapshot() ?? null, functions: fns, parked: this.parking.snapshot() };
  }
}
