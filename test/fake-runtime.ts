// An in-memory FunctionRuntime for transport tests (FRI server, gateway, CLI). It does not fork
// anything: a function's `code` picks its behaviour —
//   "echo"      ok, result = the event
//   "throw"     ok=false, kind handler (message "boom", with a stack)
//   "timeout"   ok=false, kind timeout
//   "oom"       ok=false, kind oom
//   "explode"   the runtime itself throws a plain Error (an internal failure, not a typed one)
//   "busy"      the runtime refuses at once: Overloaded (RESOURCE_EXHAUSTED), retry after 2500 ms
//   "leaky"     ok=false, kind handler, a stack with spore's own frames and install path below
//               the function's (what the gateway must not show)
// Everything else behaves like "echo" (a package deploy too).
// Redeploying adds a version; with `retiringInflight` > 0 the replaced version stays listed as
// retiring with that many invocations in flight. `logText` holds each function's logs.
import { createHash } from 'node:crypto';
import { NotFound, Overloaded } from '../sys/errors.js';
import { installRoot } from '../functions/stack.js';
import type {
  Engine, ForkTarget, FunctionInfo, FunctionRuntime, FunctionSpec, FunctionVersionInfo, InstanceInfo, InvokeOptions,
  InvokeResult, PhaseTimings, SeedInfo, SeedLevel,
} from '../protocols/fri/types.js';

export const FAKE_TIMINGS: PhaseTimings = {
  control: 45, fork: 1200, bind: 300, seccomp: 20, init: 150, execute: 800, respond: 60, destroy: 310, total: 2575,
};

const NOW = '2026-01-01T00:00:00.000Z';

export type FakeFunction = FunctionSpec & { invocations: number; version: number; retiring: FunctionVersionInfo[] };

/** The fake's "package digest": sha256 of the archive bytes or the source (not a manifest). */
export function fakeDigest(spec: FunctionSpec): string {
  return createHash('sha256').update(spec.package ? spec.package.data : Buffer.from(spec.code)).digest('hex');
}

export class FakeRuntime implements FunctionRuntime {
  seeds = new Map<string, SeedInfo>();
  instances = new Map<string, InstanceInfo>();
  functions = new Map<string, FakeFunction>();
  logText = new Map<string, string>();
  retiringInflight = 0;
  calls: { method: string; args: unknown[] }[] = [];
  private n = 0;

  private record(method: string, ...args: unknown[]): void {
    this.calls.push({ method, args });
  }

  private seed(level: SeedLevel, fields: Partial<SeedInfo>): SeedInfo {
    const s: SeedInfo = {
      id: `seed-${++this.n}`, level, engine: 'process', language: null, function: null, parent: null, pid: 1000 + this.n,
      state: 'ready', replicaOf: null, forks: 0, createdAt: NOW, initMs: 12.5,
      memory: { rssKiB: 90000, pssKiB: 40000, privateKiB: 2048, sharedKiB: 88000 }, error: null, ...fields,
    };
    this.seeds.set(s.id, s);
    return s;
  }

  async create(engine: Engine): Promise<SeedInfo> {
    this.record('create', engine);
    return [...this.seeds.values()].find((s) => s.level === 0 && s.engine === engine) ?? this.seed(0, { engine });
  }

  async fork(seedId: string, target: ForkTarget): Promise<InstanceInfo | SeedInfo> {
    this.record('fork', seedId, target);
    const parent = this.seeds.get(seedId);
    if (!parent) throw new NotFound(`seed ${seedId} not found`);
    parent.forks++;
    if (target.kind === 'seed') {
      const level = Math.min(parent.level + 1, 2) as SeedLevel;
      return this.seed(level, { parent: seedId, language: target.language ?? parent.language, function: target.function ?? null });
    }
    const i: InstanceInfo = { id: `inst-${++this.n}`, seedId, function: parent.function, pid: 2000 + this.n, state: 'paused', createdAt: NOW };
    this.instances.set(i.id, i);
    return i;
  }

  private result(fn: string | null, code: string, event: string, seedId: string, instanceId: string): InvokeResult {
    const base = { function: fn, seedId, seedLevel: 2 as SeedLevel, instanceId, timings: { ...FAKE_TIMINGS } };
    switch (code) {
      case 'throw':
        return { ...base, ok: false, result: null, error: { kind: 'handler', message: 'boom', stack: 'Error: boom\n    at handler (index.js:1:1)' } };
      case 'timeout':
        return { ...base, ok: false, result: null, error: { kind: 'timeout', message: 'timed out after 3000 ms', stack: null } };
      case 'oom':
        return { ...base, ok: false, result: null, error: { kind: 'oom', message: 'exceeded 128 MiB', stack: null } };
      case 'explode':
        throw new Error('kaboom');
      case 'busy':
        throw new Overloaded(`all 8 instances of ${fn ?? '?'} are busy and 8 calls are waiting; retry later`, 2500);
      case 'leaky':
        return {
          ...base, ok: false, result: null,
          error: {
            kind: 'handler', message: `bad input (loaded by ${installRoot()}dist/seeds/node/seed.js)`,
            stack: `Error: bad input\n    at inner (/var/task/index.js:1:27)\n    at /var/task/index.js:2:43\n    at call (file://${installRoot()}dist/seeds/node/seed.js:421:28)\n    at runInstance (${installRoot()}dist/seeds/node/seed.js:456:29)\n    at process.processTicksAndRejections (node:internal/process/task_queues:95:5)`,
          },
        };
      default:
        return { ...base, ok: true, result: event, error: null };
    }
  }

  async activate(instanceId: string, event: string): Promise<InvokeResult> {
    this.record('activate', instanceId, event);
    const i = this.instances.get(instanceId);
    if (!i) throw new NotFound(`instance ${instanceId} not found`);
    i.state = 'done';
    return this.result(i.function, 'echo', event, i.seedId, i.id);
  }

  async invoke(fn: string, event: string, opts?: InvokeOptions): Promise<InvokeResult> {
    this.record('invoke', fn, event, opts);
    const f = this.functions.get(fn);
    if (!f) throw new NotFound(`function ${fn} is not deployed`);
    f.invocations++;
    return this.result(fn, f.code.trim(), event, `seed-fn-${fn}`, `inst-${++this.n}`);
  }

  async destroy(instanceId: string): Promise<void> {
    this.record('destroy', instanceId);
    if (!this.instances.delete(instanceId)) throw new NotFound(`instance ${instanceId} not found`);
  }

  listSeeds(): SeedInfo[] {
    return [...this.seeds.values()];
  }

  async deleteSeed(seedId: string): Promise<void> {
    this.record('deleteSeed', seedId);
    if (!this.seeds.delete(seedId)) throw new NotFound(`seed ${seedId} not found`);
  }

  listInstances(): InstanceInfo[] {
    return [...this.instances.values()];
  }

  private info(f: FakeFunction): FunctionInfo {
    const { code, package: pkg, retiring, ...rest } = f;
    const packageDigest = fakeDigest(f);
    const seedId = `seed-fn-${f.name}`;
    return {
      ...rest, env: { ...f.env }, codeBytes: pkg ? pkg.data.byteLength : Buffer.byteLength(code), packageDigest, seedId, deployedAt: NOW,
      versions: [{ version: f.version, packageDigest, state: 'active', inflight: 0, seedIds: [seedId], deployedAt: NOW }, ...retiring],
      state: 'ready', stateMessage: '',
    };
  }

  async deploy(spec: FunctionSpec): Promise<FunctionInfo> {
    this.record('deploy', spec);
    const old = this.functions.get(spec.name);
    const retiring = old && this.retiringInflight > 0
      ? [{ ...(this.info(old).versions[0] as FunctionVersionInfo), state: 'retiring' as const, inflight: this.retiringInflight, seedIds: [`seed-fn-${spec.name}-v${old.version}`] }, ...old.retiring]
      : [];
    const f: FakeFunction = { ...spec, invocations: 0, version: (old?.version ?? 0) + 1, retiring };
    this.functions.set(spec.name, f);
    return this.info(f);
  }

  async remove(name: string): Promise<void> {
    this.record('remove', name);
    if (!this.functions.delete(name)) throw new NotFound(`function ${name} is not deployed`);
  }

  listFunctions(): FunctionInfo[] {
    return [...this.functions.values()].map((f) => this.info(f));
  }

  async logs(name: string, tailBytes = 64 * 1024): Promise<string> {
    this.record('logs', name, tailBytes);
    if (!this.functions.has(name)) throw new NotFound(`function ${name} is not deployed`);
    const text = Buffer.from(this.logText.get(name) ?? '');
    if (text.length <= tailBytes) return text.toString();
    // the last tailBytes bytes, from the first line start within them
    const tail = text.subarray(text.length - tailBytes);
    const nl = tail.indexOf(10);
    return (nl >= 0 ? tail.subarray(nl + 1) : tail).toString();
  }
}
