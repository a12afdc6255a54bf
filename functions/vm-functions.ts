// The vm engine's side of the FRI: a VmEngine (engines/vm/engine.ts) and its root seed,
// created lazily on create('vm') or the first vm deploy, with instances and functions on top.
//
//   seeds      one root seed per spored, id "l0-vm", level 0: spore's own seed guest (guest/seed.c,
//              a CPL3 guest, not user code) cold-booted once and sealed. The vm engine has no
//              child seeds: VmEngine only snapshots cold-booted guests, so Fork(kind SEED) is
//              UNIMPLEMENTED and instances fork straight from level 0.
//   instances  Fork(l0-vm, INSTANCE) = a CoW microVM fork, parked before its first request
//              ("paused"); Activate sends one request and destroys it after the response.
//   functions  language "vm", no code, no env: the function IS the seed guest. Invoke encodes
//              the event's JSON text as the payload of an OP_COMPUTE request (guest/abi.h) and
//              decodes the guest's 32-byte response into the JSON result
//                { "checksum": "0x…",  FNV-style hash of the event bytes walked through the
//                                      guest's 4 MiB table (same event -> same checksum)
//                  "random":   "0x…",  from the guest's RNG, reseeded with fresh entropy at fork
//                  "instance": "0x…",  the identity injected at fork (differs per instance)
//                  "served":   1,      requests this VM has served
//                  "bytes":    N }     event bytes sent
//              (u64s as hex strings: JSON numbers cannot hold them exactly).
// Timings: control = lookup + encode, fork = VmEngine.fork (shell, CoW map, state restore,
// prefill, entropy), execute = the guest request round trip (vCPU run to response), respond =
// decode, destroy = 0 (the VM is torn down after the response, off its path; logged at debug,
// ~150 µs here); bind/seccomp/init are 0 (a
// fork has no cgroup/netns/seccomp binding and no re-init beyond the entropy message).
import type { Logger } from 'pino';
import { AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted, Unavailable, Unimplemented } from '../sys/errors.js';
import type {
  Engine, ForkTarget, FunctionInfo, FunctionRuntime, FunctionSpec, InstanceInfo, InvokeError, InvokeOptions, InvokeResult, PhaseTimings, SeedInfo,
} from '../protocols/fri/types.js';
import type { VmEngine, VmEngineOptions, VmInstance } from '../engines/vm/engine.js';

/** guest/abi.h BUF_SIZE: one virtio buffer; a request is an 8-byte header + op byte + payload. */
const GUEST_BUF_SIZE = 4096;
/** Largest event (bytes of JSON text) a vm function accepts in one request. */
export const VM_MAX_EVENT_BYTES = GUEST_BUF_SIZE - 8 - 1;
/** guest/abi.h OP_COMPUTE */
const OP_COMPUTE = 0;
const ROOT_ID = 'l0-vm';
const GUEST_MEM_MIB = 16;

const TIMED_OUT = new Error('timed out');
const us = (ms: number): number => Math.max(0, Math.round(ms * 1000));
const hex = (b: Buffer, off: number): string => `0x${b.readBigUInt64LE(off).toString(16).padStart(16, '0')}`;

export interface VmFunctionsOptions {
  log?: Logger;
  engine?: VmEngineOptions;
}

interface InstRec {
  info: InstanceInfo;
  vm: VmInstance;
  fn: FnRec | null;
}

interface FnRec { spec: FunctionSpec; info: FunctionInfo }

/** Encode an event (JSON text) as the guest's compute request. */
export function vmRequest(event: string): Buffer {
  const body = Buffer.from(event, 'utf8');
  if (body.length > VM_MAX_EVENT_BYTES) {
    throw new ResourceExhausted(`event is ${body.length} bytes; a vm function takes at most ${VM_MAX_EVENT_BYTES} bytes (one ${GUEST_BUF_SIZE}-byte virtio buffer of the seed guest)`);
  }
  const b = Buffer.allocUnsafe(1 + body.length);
  b[0] = OP_COMPUTE;
  body.copy(b, 1);
  return b;
}

/** Decode the guest's compute response (4 x u64: hash, random, instance id, served). */
export function vmResult(resp: Buffer, eventBytes: number): string {
  if (resp.length < 32) throw new Error(`guest response is ${resp.length} bytes, expected 32`);
  return JSON.stringify({ checksum: hex(resp, 0), random: hex(resp, 8), instance: hex(resp, 16), served: Number(resp.readBigUInt64LE(24)), bytes: eventBytes });
}

export class VmFunctions implements FunctionRuntime {
  private starting: Promise<VmEngine> | null = null;
  private engine: VmEngine | null = null;
  private root: SeedInfo | null = null;
  private readonly instances = new Map<string, InstRec>();
  private readonly functions = new Map<string, FnRec>();
  private readonly destroying = new Set<Promise<void>>();
  private counter = 0;
  private closed = false;

  constructor(private readonly o: VmFunctionsOptions = {}) {}

  hasSeed(id: string): boolean { return this.root?.id === id || id === ROOT_ID; }
  hasInstance(id: string): boolean { return this.instances.has(id); }
  hasFunction(name: string): boolean { return this.functions.has(name); }

  // --- seeds --------------------------------------------------------------------------------
  /** The vm root seed; boots the engine on first use. FAILED_PRECONDITION without a usable /dev/kvm. */
  async create(engine: Engine = 'vm'): Promise<SeedInfo> {
    if (engine !== 'vm') throw new InvalidArgument(`this runtime serves engine "vm", not ${JSON.stringify(engine)}`);
    await this.ready();
    return this.seedInfo();
  }

  private async ready(): Promise<VmEngine> {
    if (this.engine) return this.engine;
    if (this.closed) throw new Unavailable('the vm engine is shut down');
    this.starting ??= this.boot().catch((e: unknown) => { this.starting = null; throw e; });
    return this.starting;
  }

  private async boot(): Promise<VmEngine> {
    // loaded on first use: spored pays nothing for KVM unless a vm seed is asked for
    const { kvmUnavailableReason } = await import('../sys/kvm.js');
    const why = kvmUnavailableReason();
    if (why) throw new FailedPrecondition(`the vm engine needs a usable /dev/kvm on this host (${why}); use engine "process"`);
    const { VmEngine } = await import('../engines/vm/engine.js');
    const t0 = performance.now();
    const eng = await VmEngine.create(this.o.engine);
    try {
      const s = await eng.createRootSeed({ id: ROOT_ID });
      this.root = {
        id: s.id, level: 0, engine: 'vm', language: null, function: null, parent: null, pid: 0, state: 'ready', replicaOf: null,
        forks: 0, createdAt: s.createdAt, initMs: (s.bootUs + s.snapshotUs) / 1000, memory: null, error: null,
      };
      this.o.log?.info({ seed: s.id, bootUs: s.bootUs, snapshotUs: s.snapshotUs, workingSet: s.workingSet, ms: Math.round(performance.now() - t0) }, 'vm root seed ready');
    } catch (e) {
      await eng.close().catch(() => undefined);
      throw new Unavailable(`the vm root seed failed to boot: ${(e as Error).message}`, { cause: e });
    }
    if (this.closed) { await eng.close(); throw new Unavailable('the vm engine is shut down'); }
    this.engine = eng;
    return eng;
  }

  private seedInfo(): SeedInfo {
    if (!this.root) throw new NotFound(`seed ${ROOT_ID} not found (create engine "vm" first)`);
    const forks = this.engine?.listSeeds().find((s) => s.id === ROOT_ID)?.forks ?? 0;
    return { ...this.root, forks };
  }

  private rootOrThrow(seedId: string): SeedInfo {
    if (!this.root || seedId !== this.root.id) throw new NotFound(`seed ${seedId} not found`);
    return this.root;
  }

  async fork(seedId: string, target: ForkTarget): Promise<InstanceInfo | SeedInfo> {
    this.rootOrThrow(seedId);
    if (target.kind === 'seed') {
      throw new Unimplemented('the vm engine has no child seeds: it snapshots only its cold-booted root seed guest; fork instances (target INSTANCE) from l0-vm');
    }
    const rec = this.startInstance(await this.ready(), null, 'paused');
    return { ...rec.info };
  }

  private startInstance(eng: VmEngine, fn: FnRec | null, state: 'paused' | 'running'): InstRec {
    const vm = eng.fork(ROOT_ID);
    const rec: InstRec = {
      info: { id: `vm-i-${(++this.counter).toString(36)}`, seedId: ROOT_ID, function: fn?.spec.name ?? null, pid: 0, state, createdAt: new Date().toISOString() },
      vm, fn,
    };
    this.instances.set(rec.info.id, rec);
    return rec;
  }

  async activate(instanceId: string, event: string): Promise<InvokeResult> {
    const rec = this.instances.get(instanceId);
    if (!rec) throw new NotFound(`instance ${instanceId} not found`);
    if (rec.info.state !== 'paused') throw new FailedPrecondition(`instance ${instanceId} is ${rec.info.state}, not paused`);
    const t0 = performance.now();
    const req = vmRequest(event);
    rec.info.state = 'running';
    const tExec = performance.now();
    return this.run(await this.ready(), rec, req, t0, tExec, tExec);
  }

  async destroy(instanceId: string): Promise<void> {
    const rec = this.instances.get(instanceId);
    if (!rec) throw new NotFound(`instance ${instanceId} not found`);
    this.instances.delete(instanceId);
    await this.engine?.destroy(rec.vm);
  }

  listSeeds(): SeedInfo[] {
    return this.root ? [this.seedInfo()] : [];
  }

  async deleteSeed(seedId: string): Promise<void> {
    this.rootOrThrow(seedId);
    throw new FailedPrecondition('the vm root seed cannot be deleted while spored runs');
  }

  listInstances(): InstanceInfo[] {
    return [...this.instances.values()].map((i) => ({ ...i.info }));
  }

  // --- functions ----------------------------------------------------------------------------
  async deploy(spec: FunctionSpec): Promise<FunctionInfo> {
    if (spec.language !== 'vm') throw new InvalidArgument(`the vm engine runs functions with runtime "vm", not ${JSON.stringify(spec.language)}`);
    if (spec.code.trim() !== '') throw new InvalidArgument(`function ${spec.name}: a vm function takes no code (it runs spore's built-in seed guest)`);
    if (this.functions.has(spec.name)) throw new AlreadyExists(`function ${spec.name} already exists; remove it first`);
    await this.ready();
    const info: FunctionInfo = {
      name: spec.name, language: 'vm', handler: spec.handler, memoryMiB: GUEST_MEM_MIB, timeoutMs: spec.timeoutMs, env: {},
      codeBytes: 0, seedId: ROOT_ID, deployedAt: new Date().toISOString(), invocations: 0, state: 'ready', stateMessage: '',
      version: 1, packageDigest: '', versions: [],
    };
    if (this.functions.has(spec.name)) throw new AlreadyExists(`function ${spec.name} already exists; remove it first`);
    this.functions.set(spec.name, { spec: { ...spec, memoryMiB: GUEST_MEM_MIB, env: {} }, info });
    return { ...info };
  }

  async remove(name: string): Promise<void> {
    if (!this.functions.delete(name)) throw new NotFound(`function ${name} not found`);
  }

  /** vm functions run spore's own seed guest, which writes no output. */
  async logs(name: string): Promise<string> {
    if (!this.functions.has(name)) throw new NotFound(`function ${name} not found`);
    return '';
  }

  listFunctions(): FunctionInfo[] {
    return [...this.functions.values()].map((f) => ({ ...f.info }));
  }

  /** Root seed -> fork -> one request -> early destroy. */
  async invoke(name: string, event: string, opts: InvokeOptions = {}): Promise<InvokeResult> {
    const t0 = performance.now();
    const fn = this.functions.get(name);
    if (!fn) throw new NotFound(`function ${name} not found`);
    if (opts.level !== undefined && opts.level !== 0) throw new FailedPrecondition(`vm functions fork the vm root seed (level 0); there is no level ${opts.level} seed on the vm engine`);
    const req = vmRequest(event);
    const eng = await this.ready();
    fn.info.invocations++;
    const tFork = performance.now();
    const rec = this.startInstance(eng, fn, 'running');
    return this.run(eng, rec, req, t0, tFork, performance.now());
  }

  /**
   * One request on a forked VM, then early destroy. control = t0..tFork; for activate the fork
   * happened at Fork time: it is reported, and tFork = tExec keeps it out of total.
   */
  private async run(eng: VmEngine, rec: InstRec, req: Buffer, t0: number, tFork: number, tExec: number): Promise<InvokeResult> {
    const forkUs = us(rec.vm.forkUs / 1000);
    const timeoutMs = rec.fn?.spec.timeoutMs ?? 30_000;
    let resp: Buffer | null = null;
    let error: InvokeError | null = null;
    let timer: NodeJS.Timeout | undefined;
    try {
      resp = await Promise.race([
        eng.invoke(rec.vm, req),
        new Promise<never>((_, reject) => { timer = setTimeout(() => reject(TIMED_OUT), timeoutMs); }),
      ]);
    } catch (e) {
      error = e === TIMED_OUT
        ? { kind: 'timeout', message: `the guest did not answer within the timeout of ${timeoutMs} ms and was killed`, stack: null }
        : { kind: 'crash', message: `guest failed: ${(e as Error).message}`, stack: null };
    } finally {
      clearTimeout(timer);
    }
    const tResp = performance.now();
    let result: string | null = null;
    if (resp) {
      try { result = vmResult(resp, req.length - 1); } catch (e) { error = { kind: 'internal', message: (e as Error).message, stack: null }; }
    }
    const tDone = performance.now();
    rec.info.state = error ? 'failed' : 'done';
    // early destroy, off the response path (as the process engine): the VM is torn down right
    // after this result is handed back; its time is logged, not known yet here (reported as 0)
    this.instances.delete(rec.info.id);
    this.destroyLater(eng, rec);
    if (error) this.o.log?.warn({ inst: rec.info.id, err: error.message }, 'vm invocation failed');
    const timings: PhaseTimings = {
      control: us(tFork - t0), fork: forkUs, bind: 0, seccomp: 0, init: 0, execute: us(tResp - tExec), respond: us(tDone - tResp),
      destroy: 0, total: us(tDone - t0),
    };
    return {
      ok: error === null, result: error ? null : result, error, function: rec.fn?.spec.name ?? null,
      seedId: ROOT_ID, seedLevel: 0, instanceId: rec.info.id, timings,
    };
  }

  private destroyLater(eng: VmEngine, rec: InstRec): void {
    const p = new Promise<void>((resolve) => setImmediate(() => {
      const t = performance.now();
      eng.destroy(rec.vm)
        .then(() => this.o.log?.debug({ inst: rec.info.id, destroyUs: us(performance.now() - t) }, 'destroyed'))
        .catch((e: Error) => this.o.log?.warn({ inst: rec.info.id, err: e.message }, 'vm destroy failed'))
        .finally(resolve);
    }));
    this.destroying.add(p);
    void p.then(() => this.destroying.delete(p));
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.destroying]);
    const eng = this.engine ?? (this.starting ? await this.starting.catch(() => null) : null);
    this.engine = null;
    this.starting = null;
    this.instances.clear();
    await eng?.close();
  }
}
