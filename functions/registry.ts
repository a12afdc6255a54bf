// Deployed functions and their versions: deploy (package stored, id range, lineage cgroup,
// sandbox plan, the lineage's first seed built by its L1 seed, /tmp slots mounted, replicas),
// redeploy (a new version serves at once; the old one finishes its in-flight work and is
// retired), remove, listing, output. Which replica serves a call, and replica rotation.
import { randomBytes } from 'node:crypto';
import { existsSync, lstatSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted } from '../sys/errors.js';
import * as sys from '../sys/libc.js';
import type { FunctionInfo, FunctionSpec, FunctionState, FunctionVersionInfo, MemoryInfo } from '../protocols/fri/types.js';
import { validateFunctionName } from '../protocols/fri/validate.js';
import { cgroupHandle, createCgroup, destroyCgroup, killAll, procsFiles, type CgroupHandle, type CgroupLayout } from '../pools/cgroups.js';
import type { LoadSpec, SandboxPlan } from '../seeds/protocol.js';
import { functionSandbox, slotName, type RuntimeEntry } from './sandbox.js';
import { InvocationCount } from './invocation-count.js';
import type { IdRanges } from './id-ranges.js';
import type { FunctionLogs } from './logs.js';
import type { PackageStore, StoredPackage } from './packages.js';
import { FUNCTION_RECORD_FORMAT, type FunctionRecord, type FunctionStore } from './store.js';
import { SlotPool } from './slots.js';
import { sweepVerdict, type Member } from './escapees.js';
import { bootTicksNow, parentAndStart } from '../sys/proc.js';
import type { SeedTree } from './seed-tree.js';
import type { FunctionRec, SeedRec, VersionRec } from './records.js';

export type { FunctionRec, VersionRec };
import { VERSION_MOVES, move, type VersionState } from './states.js';

/** A process's parent and start (escapees.ts), or null when it is gone. */
function memberOf(pid: number): Member | null {
  const m = parentAndStart(pid);
  return m ? { pid, ...m } : null;
}

/** The escapee sweep (escapees.ts) runs this long after an instance exit (ms), at most once per version at a time. */
const SWEEP_AFTER_EXIT_MS = 200;
/** ...and again this long after a sweep that found anything (ms). */
const SWEEP_AGAIN_MS = 1000;
/** How long a seed's unknown child is spared while the seed has a fork not yet resolved (clock ticks, 1/100 s). */
const SWEEP_GRACE_TICKS = 1000;
/** Members judged per turn of the loop; more are left to the next turn (a fork bomb's thousands held the loop for seconds). */
const SWEEP_BATCH = 128;
/** A dropped seed's pid is taken for a seed this long (ms): it exits once told, not at once. */
const DROPPED_SEED_MS = 10_000;



export interface RegistryOptions {
  layout: CgroupLayout;
  log: Logger;
  stateDir: string;
  /** language runtime roots (scripts/build-rootfs.sh) */
  rootfsDir: string;
  /** host dir the sandboxes' root tmpfs is mounted on (in their own mount namespaces) */
  staging: string;
  l2Replicas: number;
  replicaPrivateLimitKiB: number;
  /**
   * A version with no call in flight for this long has its replicas whose instances served
   * at least idleRefreshCalls calls replaced by fresh forks (ms; 0: never).
   */
  idleRefreshMs: number;
  idleRefreshCalls: number;
  /** calls of `v` in flight: not parked instances waiting for one, nor answered ones being recycled (default: v.inflight) */
  activeCalls?: (v: VersionRec) => number;
  /** a replica is being replaced while its version is idle: its parked instances go */
  releaseParked?: (seed: SeedRec) => void;
  /** `v`'s instances spored holds, and the seeds with a fork not yet resolved (Instances.forksOf; the escapee sweep) */
  forksOf?: (v: VersionRec) => { held: Set<number>; unresolvedFrom: Set<SeedRec> };
  slotsPerFunction: number;
  tmpMiB: number;
  initTimeoutMs: number;
  lineageSeccomp: () => { filter: string; flags: number };
  /** the lineages' cgroups live under it */
  cgroupParent: string;
  /** a version stops taking calls (retired or removed): what is held for it goes */
  onVersionEnd?: (v: VersionRec) => void;
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

const REPLICA_CHECK_EVERY = 100;
/** rebuilds of a function whose first seed went away, at most, per minute */
const REBUILDS_PER_MINUTE = 3;
/** /tmp slots per unit of a function's concurrency (see SlotPool: the extra ones let used slots wait for a batch) */
const SLOTS_PER_CONCURRENCY = 3;
/** cpu.shares of a version's instances group against each of its seeds (1024) */
const INSTANCES_CPU_SHARES = 8192;

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

export class Registry {
  private readonly functions = new Map<string, FunctionRec>();
  /** functions being rebuilt from their records at start-up: calls to them wait */
  private readonly restoring = new Map<string, Promise<void>>();
  /** the records of those, for listing them before their turn comes */
  private readonly queued = new Map<string, FunctionRecord>();
  /** builds in progress (deploy, restore, rebuild), by function name; settle, never reject */
  private readonly building = new Map<string, Promise<void>>();
  /** functions that cannot serve until redeployed, and why (a rebuild refused or failed) */
  private readonly down = new Map<string, string>();
  /** when each function was last rebuilt after losing its first seed (ms; rebuild) */
  private readonly rebuilds = new Map<string, number[]>();
  /** versions whose idle check is armed (instanceExited) */
  private readonly idleChecks = new Map<VersionRec, NodeJS.Timeout>();
  /** escapee sweeps scheduled, by version (sweepLineage) */
  private readonly sweeps = new Map<VersionRec, NodeJS.Timeout>();
  /** host pids of seeds dropped a moment ago, with when (performance.now()): still seeds to the sweep */
  private readonly droppedSeeds = new Map<number, number>();

  constructor(
    private readonly o: RegistryOptions,
    private readonly tree: SeedTree,
    private readonly packages: PackageStore,
    private readonly ids: IdRanges,
    private readonly output: FunctionLogs,
    private readonly store: FunctionStore,
  ) {}

  get(name: string): FunctionRec | undefined {
    return this.functions.get(name);
  }

  /** The function, waiting for it while it is being restored; undefined when there is none. */
  async lookup(name: string): Promise<FunctionRec | undefined> {
    const r = this.restoring.get(name);
    if (r) await r;
    return this.functions.get(name);
  }

  /**
   * Rebuild every recorded function (functions/store.ts) in the background, one at a time
   * so start-up does not starve the node; calls to a function wait for its turn (lookup).
   * Returns the names being restored and the records that could not be read.
   */
  restoreAll(): { names: string[]; bad: string[] } {
    const { records, bad } = this.store.loadAll();
    let chain = Promise.resolve();
    for (const rec of records) {
      const done = chain.then(() => this.restore(rec)).catch((e: Error) => {
        this.o.log.error({ fn: rec.name, err: e.message }, 'function not restored; its record stays for the next start (redeploy to replace it)');
      }).finally(() => { this.restoring.delete(rec.name); this.queued.delete(rec.name); });
      this.restoring.set(rec.name, done);
      this.queued.set(rec.name, rec);
      chain = done;
    }
    for (const b of bad) this.o.log.error({ record: b }, 'unreadable function record left alone');
    return { names: records.map((r) => r.name), bad };
  }

  private async restore(rec: FunctionRecord): Promise<void> {
    if (this.functions.has(rec.name)) return; // deployed again meanwhile
    if (!this.packages.has(rec.packageDigest)) throw new FailedPrecondition(`its package ${rec.packageDigest.slice(0, 12)} is not in ${this.packages.root}`);
    const t0 = performance.now();
    const pkg: StoredPackage = { digest: rec.packageDigest, dir: this.packages.dir(rec.packageDigest), files: 0, bytes: 0 };
    const spec: FunctionSpec = { name: rec.name, language: rec.language, code: '', handler: rec.handler, memoryMiB: rec.memoryMiB, timeoutMs: rec.timeoutMs, env: rec.env };
    await this.build(spec, pkg, rec.load, rec.codeBytes, rec.version, rec.deployedAt);
    this.o.log.info({ fn: rec.name, version: rec.version, ms: Math.round(performance.now() - t0) }, 'function restored from its record');
  }

  all(): FunctionRec[] {
    return [...this.functions.values()];
  }

  /** The version new calls go to. */
  active(fn: FunctionRec): VersionRec | undefined {
    return [...fn.versions].reverse().find((x) => x.state === 'active');
  }

  private runtimeRoot(language: 'node' | 'python'): { dir: string; entries: RuntimeEntry[]; ssl: boolean } {
    const dir = join(this.o.rootfsDir, language);
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
    return this.build(spec, pkg, load, codeBytes);
  }

  /**
   * Build a new version of `spec` from a stored package and make it the active one. `version`
   * and `deployedAt` are given when restoring a recorded function.
   */
  private build(spec: FunctionSpec, pkg: StoredPackage, load: LoadSpec, codeBytes: number, restoreVersion?: number, deployedAt?: string): Promise<FunctionInfo> {
    const p = this.buildNow(spec, pkg, load, codeBytes, restoreVersion, deployedAt);
    if (!this.building.has(spec.name)) {
      const settled = p.then(() => undefined, () => undefined);
      this.building.set(spec.name, settled);
      void settled.then(() => { if (this.building.get(spec.name) === settled) this.building.delete(spec.name); });
    }
    return p;
  }

  /**
   * The version calls to `fn` should go to, waiting for a build in progress (a deploy, the
   * restore after a spored restart, the rebuild after its first seed died) when `fn` has no
   * active version or `after` (a version found unable to serve) is still the active one.
   * Undefined when nothing is being built and there is no other active version.
   */
  async whenBuilt(fn: FunctionRec, after?: VersionRec): Promise<VersionRec | undefined> {
    const now = this.active(fn);
    if (now && now !== after) return now;
    await this.restoring.get(fn.spec.name);
    await this.building.get(fn.spec.name);
    const v = this.active(fn);
    return v === after ? undefined : v;
  }

  private async buildNow(spec: FunctionSpec, pkg: StoredPackage, load: LoadSpec, codeBytes: number, restoreVersion?: number, deployedAt?: string): Promise<FunctionInfo> {
    const language = spec.language;
    if (language !== 'node' && language !== 'python') throw new InvalidArgument(`unknown runtime ${JSON.stringify(language)}; use node or python`);
    const runtime = this.runtimeRoot(language);
    let fn = this.functions.get(spec.name);
    const fresh = !fn;
    if (fn && fn.spec.language !== language) throw new FailedPrecondition(`function ${spec.name} is a ${fn.spec.language} function; remove it before deploying it as ${language}`);
    if (fn?.versions.some((v) => v.state === 'starting')) throw new AlreadyExists(`function ${spec.name} is being deployed right now; try again when that finishes`);
    if (!fn) {
      fn = { spec, hostId: this.ids.acquire(this.o.stateDir, spec.name), versions: [], invocations: this.openCount(spec.name, restoreVersion === undefined), lastVersion: restoreVersion !== undefined ? restoreVersion - 1 : 0 };
      this.functions.set(spec.name, fn);
    }
    const version = fn.lastVersion + 1;
    const replicas = this.o.l2Replicas;
    const cgroup = cgroupHandle(this.o.layout, `${this.o.cgroupParent}/fn-${spec.name}-v${version}`);
    createCgroup(cgroup, { memory: { limit: spec.memoryMiB * (1 + replicas) * 1024 * 1024 }, pids: { limit: 4096 } });
    let instancesCpuProcs: string | null;
    try { instancesCpuProcs = this.instancesCpuGroup(cgroup); } catch (e) { destroyCgroup(cgroup); throw e; }
    const tmpBytes = this.o.tmpMiB * 1024 * 1024;
    const plan = functionSandbox({
      name: spec.name, version, runtimeRoot: runtime.dir, runtimeEntries: runtime.entries, runtimeHasSsl: runtime.ssl,
      packageDir: pkg.dir, staging: this.o.staging, hostId: fn.hostId, cgroupProcs: procsFiles(cgroup), memoryMiB: spec.memoryMiB,
      tmpBytes, seccomp: this.o.lineageSeccomp(),
    });
    // three times the concurrency: a full burst always finds fresh slots while used ones wait
    // to be renewed in batches, and under steady load a batch holds about `concurrency` of them
    // (at twice, 24 calls at a time renewed about 8 per batch: a fork of the L1 seed per 8 calls)
    const names = Array.from({ length: this.o.slotsPerFunction * SLOTS_PER_CONCURRENCY }, () => slotName(randomBytes(16)));
    const v: VersionRec = {
      fn, version, pkg, load, codeBytes, cgroup, instancesCpuProcs, plan, seeds: [], nextReplica: 0, state: 'starting', inflight: 0, recycling: 0, lastExitAt: 0, readyTicks: Infinity, logFd: -1,
      deployedAt: deployedAt ?? new Date().toISOString(), tmpBytes,
      slots: new SlotPool(names, this.o.slotsPerFunction, async (batch) => {
        const first = v.seeds[0];
        if (!first || v.state === 'gone') throw new Error('the lineage is gone');
        await this.tree.mountSlots(first, v.plan.slotDir, batch, tmpBytes, true);
      }),
    };
    fn.versions.push(v);
    fn.lastVersion = version;
    try {
      const l1 = await this.tree.languageSeed(language);
      const log = this.output.open(spec.name, `v${version}`);
      v.logFd = sys.dupFd(log);
      const first = await this.tree.lineage(l1, v, load, plan, spec.env, log, this.o.initTimeoutMs);
      v.seeds.push(first);
      // the instances' /tmp slots, named only now: init code never held their names
      await this.tree.mountSlots(first, plan.slotDir, v.slots.names(), tmpBytes);
      this.record(spec, fn.hostId, v, restoreVersion === undefined);
    } catch (e) {
      move(VERSION_MOVES, v, 'gone');
      fn.versions = fn.versions.filter((x) => x !== v);
      fn.lastVersion = version - 1;
      for (const s of v.seeds) this.dropSeed(s);
      this.destroyLineageCgroup(v);
      if (fresh) {
        this.functions.delete(spec.name);
        fn.invocations.close();
        // a function that failed to restore keeps its range (and count) with its record, for the next start
        if (restoreVersion === undefined) {
          this.ids.release(fn.hostId);
          this.store.removeCount(spec.name);
        }
      }
      this.gcPackages();
      throw e;
    }
    // The new version serves from now on; the one before finishes what it has, then goes.
    for (const old of fn.versions) if (old !== v && old.state === 'active') this.retire(old);
    move(VERSION_MOVES, v, 'active');
    v.readyTicks = bootTicksNow();
    v.readyMembers = this.lineageMembers(v);
    this.down.delete(spec.name);
    fn.spec = spec;
    for (let i = 0; i < replicas; i++) this.addReplica(v);
    this.o.log.info({ fn: spec.name, version, seed: v.seeds[0]?.info.id, digest: pkg.digest.slice(0, 12) }, 'function deployed');
    return this.info(fn);
  }

  /** The function's invocation count; `fresh`: a first deploy, which starts it at 0. */
  private openCount(name: string, fresh: boolean): InvocationCount {
    try {
      return InvocationCount.open(this.store.countPath(name), fresh);
    } catch (e) {
      this.o.log.warn({ fn: name, err: (e as Error).message }, 'invocation count kept in memory only: a restart starts it at 0');
      return InvocationCount.inMemory();
    }
  }

  /** Write the function's record (the active version): what a restarted spored rebuilds. */
  /**
   * The function's record on disk (what a restarted spored restores). `strict`: a deploy, which
   * fails when the record cannot be written (a full disk), before it serves: answered OK it was
   * gone after the next crash (helper-56). A restore (the record is there already) only logs.
   */
  private record(s: FunctionSpec, hostId: number, v: VersionRec, strict: boolean): void {
    try {
      this.store.save({
        format: FUNCTION_RECORD_FORMAT, name: s.name, language: s.language, handler: s.handler, memoryMiB: s.memoryMiB, timeoutMs: s.timeoutMs,
        env: s.env, packageDigest: v.pkg.digest, load: v.load, codeBytes: v.codeBytes, version: v.version, hostId, deployedAt: v.deployedAt,
      });
    } catch (e) {
      if (strict) throw new ResourceExhausted(`cannot record the function in the state dir (${(e as Error).message}); it is not deployed: free space there and deploy again`);
      this.o.log.error({ fn: s.name, err: (e as Error).message }, 'cannot record the function; a restarted spored would not restore it');
    }
  }

  private addReplica(v: VersionRec): void {
    const first = v.seeds[0];
    if (!first) return;
    // a replica's fork runs the same at-fork code an instance's does: swept after it too
    void this.tree.replica(first, v).then((r) => { if (v.state === 'active') { v.seeds.push(r); this.scheduleSweep(v, SWEEP_AFTER_EXIT_MS); } else this.dropSeed(r); })
      .catch((e: Error) => this.o.log.warn({ fn: v.fn.spec.name, err: e.message }, 'replica seed failed'));
  }

  /** The seed a call forks from: the least busy ready replica (the first seed only while none is ready). */
  pick(v: VersionRec): SeedRec | null {
    let ready = v.seeds.filter((s) => s.info.state === 'ready' && s.link && !s.link.closed);
    if (ready.length > 1) ready = ready.filter((s) => s !== v.seeds[0]);
    if (ready.length === 0) return null;
    v.nextReplica = (v.nextReplica + 1) % ready.length;
    let best = ready[v.nextReplica] as SeedRec;
    for (const s of ready) if (s.inflight < best.inflight) best = s;
    return best;
  }

  /** Called at every instance exit: rotation under load, the idle refresh's clock, the escapee sweep. */
  instanceExited(seed: SeedRec): void {
    this.maybeRotate(seed);
    const v = seed.version;
    if (v) this.scheduleSweep(v, SWEEP_AFTER_EXIT_MS);
    if (!v || this.o.idleRefreshMs <= 0) return;
    v.lastExitAt = performance.now();
    if (!this.idleChecks.has(v)) this.armIdleCheck(v, this.o.idleRefreshMs);
  }

  /**
   * A serving replica whose private memory grew past the limit is replaced by a fresh fork
   * of the lineage's first seed (checked every REPLICA_CHECK_EVERY forks, off the response path).
   */
  private maybeRotate(seed: SeedRec): void {
    const v = seed.version;
    // called at every instance exit: a replica already being replaced (no longer in v.seeds)
    // keeps its fork count while its last instances exit, and must not be replaced again
    if (!v || seed === v.seeds[0] || !v.seeds.includes(seed) || seed.info.forks < seed.memoryCheckAt || seed.info.state !== 'ready' || v.state !== 'active') return;
    // by count, not `forks % N === 0` at an exit: under concurrency the count rarely sits on a
    // multiple when an instance exits
    seed.memoryCheckAt = seed.info.forks + REPLICA_CHECK_EVERY;
    const mem = memoryOf(seed.hostPid);
    if (!mem || mem.privateKiB <= this.o.replicaPrivateLimitKiB) return;
    this.replaceReplica(v, seed, mem.privateKiB, 'over the limit under load');
  }

  private armIdleCheck(v: VersionRec, ms: number): void {
    this.idleChecks.set(v, setTimeout(() => this.idleCheck(v), Math.max(1, ms)).unref());
  }

  /**
   * Once a version has been idle for idleRefreshMs, its replicas that served (their
   * instances got idleRefreshCalls calls or more; parked instances forked and dropped unused
   * do not count, they write nothing) are replaced by fresh forks of the first seed. What
   * a replica wrote while serving is its own copy, and the first seed's original of each
   * such page is then mapped by the first seed alone: busy replicas make the first seed's
   * memory private as well as their own. A fresh fork shares the first seed's pages again,
   * so an idle function holds about what it held before its first call. (By calls, not by
   * private memory: a replica's pages shared with its parked instances do not count as
   * private, so its private memory understates what it wrote.) Parked instances do not make
   * a version busy; a replaced replica's parked instances are destroyed (the lot refills
   * from the fresh replicas), so it ends at once.
   */
  private idleCheck(v: VersionRec): void {
    this.idleChecks.delete(v);
    if (v.state !== 'active' || (this.o.activeCalls?.(v) ?? v.inflight) > 0) return; // the next exit arms it again
    const left = v.lastExitAt + this.o.idleRefreshMs - performance.now();
    if (left > 0) { this.armIdleCheck(v, left); return; }
    for (const s of v.seeds.slice(1)) {
      if (s.info.state !== 'ready' || (s.served ?? 0) < this.o.idleRefreshCalls) continue;
      this.replaceReplica(v, s, memoryOf(s.hostPid)?.privateKiB ?? null, `its function went idle after ${s.served ?? 0} calls`);
      this.o.releaseParked?.(s);
    }
  }

  /**
   * A seed went away unasked (killed, crashed). A replica of an active version is replaced,
   * so the version does not serve on fewer replicas from then on; its parked instances (they
   * may live on, reparented) are destroyed by the parking sweep. The first seed is the
   * lineage's pid 1: its replicas and instances die with it, and the function is rebuilt.
   */
  seedLost(seed: SeedRec): void {
    const v = seed.version;
    if (!v || v.state !== 'active' || !v.seeds.includes(seed)) return;
    if (seed === v.seeds[0]) { this.rebuild(v); return; }
    v.seeds = v.seeds.filter((s) => s !== seed);
    this.dropSeed(seed);
    // replicas die with their lineage's pid 1: nothing to fork them from then
    if (v.seeds[0]?.info.state !== 'ready') return;
    this.o.log.warn({ seed: seed.info.id, fn: v.fn.spec.name }, 'replacing a replica seed that went away');
    this.addReplica(v);
  }

  /**
   * The first seed of an active version went away (its replicas and instances with it): the
   * function is built again from its stored package, as a redeploy would (a new version; its
   * init code runs again), so it serves again without anyone redeploying it. At most
   * REBUILDS_PER_MINUTE times a minute per function: init code that kills its own seed must
   * not keep the node busy.
   */
  private rebuild(v: VersionRec): void {
    const name = v.fn.spec.name;
    const now = Date.now();
    const recent = (this.rebuilds.get(name) ?? []).filter((t) => now - t < 60_000);
    if (recent.length >= REBUILDS_PER_MINUTE) {
      const why = `its first seed went away ${recent.length + 1} times within a minute (is its init code killing it?); redeploy it`;
      this.down.set(name, why);
      this.o.log.error({ fn: name, version: v.version }, `function not rebuilt: ${why}`);
      return;
    }
    this.rebuilds.set(name, [...recent, now]);
    this.o.log.warn({ fn: name, version: v.version }, 'rebuilding a function whose first seed went away');
    void this.build(v.fn.spec, v.pkg, v.load, v.codeBytes)
      .then((info) => this.o.log.info({ fn: name, version: info.version }, 'function rebuilt'))
      .catch((e: Error) => {
        if (this.functions.get(name) === v.fn && !this.active(v.fn)?.seeds[0]?.link) this.down.set(name, `its rebuild failed (${e.message}); redeploy it`);
        this.o.log.error({ fn: name, err: e.message }, 'function not rebuilt; redeploy it');
      });
  }

  /** A fresh fork of the first seed takes the replica's place; the replica ends once its instances have. */
  private replaceReplica(v: VersionRec, seed: SeedRec, privateKiB: number | null, why: string): void {
    this.o.log.info({ seed: seed.info.id, privateKiB, why }, 'replacing a replica seed whose memory went private');
    v.seeds = v.seeds.filter((s) => s !== seed);
    this.addReplica(v);
    const retire = (): void => { if (seed.inflight > 0) { setTimeout(retire, 50).unref(); return; } this.dropSeed(seed); };
    retire();
  }

  /** A version that no longer takes new work: its seeds go once its in-flight work is done. */
  private retire(v: VersionRec): void {
    if (!move(VERSION_MOVES, v, 'retiring')) return;
    this.o.onVersionEnd?.(v);
    const done = (): void => {
      if (v.inflight > 0) { setTimeout(done, 50).unref(); return; }
      move(VERSION_MOVES, v, 'gone');
      for (const s of [...v.seeds].reverse()) this.dropSeed(s);
      v.fn.versions = v.fn.versions.filter((x) => x !== v);
      setTimeout(() => { this.destroyLineageCgroup(v); this.gcPackages(); }, 200).unref();
      this.o.log.info({ fn: v.fn.spec.name, version: v.version }, 'retired a function version');
    };
    done();
  }

  /**
   * v1/hybrid: `<lineage>/instances` in the cpu hierarchy, the one CPU group of a version's
   * instances (their memory and pids cgroups are their own, pooled). Inside the lineage's cpu
   * cgroup it weighs INSTANCES_CPU_SHARES against each seed's 1024: a call in flight goes before
   * a refill's fork or a new child's start, and a version's instances are plain tasks of one
   * group, not a group each (see docs/speed-2026-12-01.md). Null on v2 or without a cpu controller.
   */
  private instancesCpuGroup(lineage: CgroupHandle): string | null {
    if (this.o.layout.mode === 'v2' || !lineage.dirs['cpu']) return null;
    const h = cgroupHandle(this.o.layout, `${lineage.path}/instances`);
    createCgroup(h, { cpu: { shares: INSTANCES_CPU_SHARES } });
    return `${h.dirs['cpu']}/cgroup.procs`;
  }

  /** Forget a seed (SeedTree.drop); its pid stays known to the escapee sweep until it has had time to exit. */
  private dropSeed(seed: SeedRec): void {
    if (seed.hostPid > 0) this.droppedSeeds.set(seed.hostPid, performance.now());
    this.tree.drop(seed);
  }

  private scheduleSweep(v: VersionRec, ms: number): void {
    if (this.sweeps.has(v)) return;
    const t = setTimeout(() => { this.sweeps.delete(v); this.sweepLineage(v); }, ms);
    t.unref();
    this.sweeps.set(v, t);
  }

  /** The lineage cgroup's processes now, as "pid:startTicks" (escapees.ts SweepInput.readyMembers). */
  private lineageMembers(v: VersionRec): Set<string> {
    const files = procsFiles(v.cgroup);
    const file = files.find((f) => f.includes('/pids/')) ?? files[0];
    const out = new Set<string>();
    if (!file) return out;
    try {
      for (const l of readFileSync(file, 'latin1').split('\n')) {
        if (l === '') continue;
        const m = memberOf(Number(l));
        if (m) out.add(`${m.pid}:${m.startTicks}`);
      }
    } catch { /* gone */ }
    return out;
  }

  /**
   * Kill what function code started in the lineage's cgroup outside any instance (escapees.ts
   * says how they are told apart); looks again while any is left or too young to tell.
   */
  private sweepLineage(v: VersionRec): void {
    if (v.state === 'gone' || v.state === 'starting') return;
    const files = procsFiles(v.cgroup);
    const file = files.find((f) => f.includes('/pids/')) ?? files[0];
    if (!file) return;
    let pids: number[];
    try { pids = readFileSync(file, 'latin1').split('\n').filter((l) => l !== '').map(Number); } catch { return; }
    // every seed of the version the tree knows (starting and retiring replicas too), and seeds
    // dropped a moment ago that may not have exited yet
    const now = performance.now();
    for (const [pid, at] of this.droppedSeeds) if (now - at > DROPPED_SEED_MS) this.droppedSeeds.delete(pid);
    const mine = this.tree.list().filter((s) => s.version === v);
    const seeds = new Set([...mine.map((s) => s.hostPid).filter((p) => p > 0), ...this.droppedSeeds.keys()]);
    const forks = this.o.forksOf?.(v) ?? { held: new Set<number>(), unresolvedFrom: new Set<SeedRec>() };
    const unknown = pids.filter((p) => !seeds.has(p) && !forks.held.has(p));
    if (unknown.length === 0) return;
    // A bounded batch per turn of the loop, /proc read once per pid: thousands of processes
    // (a fork bomb started at an instance's fork) held spored's loop for seconds (a red team).
    const cache = new Map<number, Member | null>();
    const lookup = (pid: number): Member | null => {
      if (!cache.has(pid)) cache.set(pid, memberOf(pid));
      return cache.get(pid) ?? null;
    };
    const members = unknown.slice(0, SWEEP_BATCH).map(lookup).filter((m): m is Member => m !== null);
    // a replica being forked (the first seed's child) is known by pid only once its fork is reported
    const replicaStarting = mine.some((s) => s.hostPid === 0);
    const firstPid = v.seeds[0]?.hostPid ?? 0;
    const unresolved = new Set([...forks.unresolvedFrom].map((s) => s.hostPid));
    const verdict = sweepVerdict({
      members, seeds, instances: forks.held, lookup, readyTicks: v.readyTicks, ...(v.readyMembers ? { readyMembers: v.readyMembers } : {}), nowTicks: bootTicksNow(), graceTicks: SWEEP_GRACE_TICKS,
      mayBeFresh: (seedPid) => unresolved.has(seedPid) || (replicaStarting && seedPid === firstPid),
    });
    let killed = 0;
    for (const pid of verdict.kill) {
      // through a pidfd taken before the start time is checked again: never a pid reused since the read
      let fd = -1;
      try { fd = sys.pidfdOpen(pid); } catch { continue; }
      try {
        if (memberOf(pid)?.startTicks === cache.get(pid)?.startTicks) { sys.pidfdSignal(fd, 9); killed++; }
      } catch { /* gone already */ } finally { sys.close(fd); }
    }
    if (killed) {
      this.o.log.warn({ fn: v.fn.spec.name, version: v.version, killed, pids: verdict.kill.slice(0, 8) }, 'killed processes in the function\'s cgroup that are neither its seeds, its instances nor started by its init before it was ready (code run at an instance\'s or replica\'s fork, or a helper started later)');
    }
    if (unknown.length > SWEEP_BATCH) this.scheduleSweep(v, 0);
    else if (killed || verdict.deferred.length) this.scheduleSweep(v, SWEEP_AGAIN_MS);
  }



  destroyLineageCgroup(v: VersionRec): void {
    const t = this.sweeps.get(v);
    if (t) { clearTimeout(t); this.sweeps.delete(v); }
    if (v.logFd >= 0) { try { sys.close(v.logFd); } catch { /* closed */ } v.logFd = -1; }
    try {
      killAll(v.cgroup, 'SIGKILL');
      destroyCgroup(v.cgroup);
    } catch (e) {
      this.o.log.warn({ fn: v.fn.spec.name, version: v.version, err: (e as Error).message }, 'lineage cgroup not removed yet');
    }
  }

  private gcPackages(): void {
    // recorded functions keep their packages, restored yet or not
    const keep = this.store.digests();
    for (const f of this.functions.values()) for (const v of f.versions) keep.add(v.pkg.digest);
    try { this.packages.gc(keep); } catch (e) { this.o.log.warn({ err: (e as Error).message }, 'package gc'); }
  }

  async remove(name: string): Promise<void> {
    await this.restoring.get(name);
    const fn = this.functions.get(name);
    if (!fn) throw new NotFound(`function ${name} not found`);
    this.functions.delete(name);
    fn.invocations.close();
    this.store.remove(name);
    for (const v of fn.versions) {
      move(VERSION_MOVES, v, 'gone');
      this.o.onVersionEnd?.(v);
      for (const s of [...v.seeds].reverse()) this.dropSeed(s);
    }
    await new Promise((r) => setTimeout(r, 100));
    for (const v of fn.versions) this.destroyLineageCgroup(v);
    this.ids.release(fn.hostId);
    this.output.remove(name);
    this.gcPackages();
  }

  info(fn: FunctionRec): FunctionInfo {
    const active = this.active(fn) ?? fn.versions.at(-1);
    const versions: FunctionVersionInfo[] = [...fn.versions].reverse().filter((v) => v.state === 'active' || v.state === 'retiring').map((v) => ({
      version: v.version, packageDigest: v.pkg.digest, state: v.state === 'active' ? 'active' : 'retiring',
      // calls, not the parked instances waiting for one (a redeploy said "2 in flight" for one call)
      inflight: Math.max(0, this.o.activeCalls?.(v) ?? v.inflight),
      seedIds: v.seeds.map((s) => s.info.id), deployedAt: v.deployedAt,
    }));
    const s = fn.spec;
    return {
      name: s.name, language: s.language, handler: s.handler, memoryMiB: s.memoryMiB, timeoutMs: s.timeoutMs, env: { ...s.env },
      codeBytes: active?.codeBytes ?? 0, version: active?.version ?? 0, packageDigest: active?.pkg.digest ?? '',
      seedId: active?.seeds[0]?.info.id ?? null, deployedAt: active?.deployedAt ?? '', invocations: fn.invocations.value, versions,
      ...this.stateOf(fn),
    };
  }

  /**
   * Functions still waiting for their turn to be restored after a spored restart, listed from
   * their records: without them a listing right after a restart showed only the function
   * being built, and the others looked lost.
   */
  queuedInfos(): FunctionInfo[] {
    const out: FunctionInfo[] = [];
    for (const rec of this.queued.values()) {
      if (this.functions.has(rec.name)) continue; // being built now: listed with its own state
      out.push({
        name: rec.name, language: rec.language, handler: rec.handler, memoryMiB: rec.memoryMiB, timeoutMs: rec.timeoutMs, env: { ...rec.env },
        codeBytes: rec.codeBytes, version: rec.version, packageDigest: rec.packageDigest, seedId: null, deployedAt: rec.deployedAt,
        invocations: InvocationCount.peek(this.store.countPath(rec.name)),
        versions: [{ version: rec.version, packageDigest: rec.packageDigest, state: 'active', inflight: 0, seedIds: [], deployedAt: rec.deployedAt }],
        state: 'rebuilding', stateMessage: 'waiting to be restored from its record after a spored restart; calls to it wait',
      });
    }
    return out;
  }

  /** Why calls to `fn` cannot be served until it is redeployed; null when they can (or will). */
  downReason(fn: FunctionRec): string | null {
    return this.down.get(fn.spec.name) ?? null;
  }

  private stateOf(fn: FunctionRec): { state: FunctionState; stateMessage: string } {
    const name = fn.spec.name;
    const down = this.down.get(name);
    if (down !== undefined) return { state: 'down', stateMessage: down };
    if (this.restoring.has(name)) return { state: 'rebuilding', stateMessage: 'being restored from its record after a spored restart; calls to it wait' };
    if (this.building.has(name)) {
      const first = this.active(fn)?.seeds[0];
      const lost = first !== undefined && first.info.state !== 'ready';
      return lost ? { state: 'rebuilding', stateMessage: 'its first seed went away; it is being built again from its stored package' } : { state: 'deploying', stateMessage: 'a version is being built' };
    }
    return { state: 'ready', stateMessage: '' };
  }

  async logs(name: string, tailBytes = 64 * 1024): Promise<string> {
    if (!(await this.lookup(name))) throw new NotFound(`function ${name} not found`);
    await this.output.flush(name);
    return this.output.tail(name, Math.max(0, Math.min(tailBytes, 16 * 1024 * 1024)));
  }
}
