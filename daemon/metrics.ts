// Prometheus metrics for spored (prom-client), served by the gateway at GET /metrics.
// One Metrics object per daemon; the others call it:
//   - the FunctionRuntime the FRI and the gateway see is wrapped by instrument() (invocations
//     by function and outcome, per-phase latency),
//   - the ttrpc Task service (daemon.ts timed()) and the FRI server (its call hook) report RPCs,
//   - the gateway reports its requests,
//   - gauges read their sources (function runtime pools and seeds, containers, health) when
//     scraped, so nothing is sampled between scrapes.
//
// Families (all spore_*; plus prom-client's default process_* and nodejs_* collectors):
//   spore_invocations_total{function,outcome}       counter; outcome ok|handler|load|timeout|oom|
//                                                    crash|internal|rejected (rejected: refused
//                                                    at once, overloaded)
//   spore_phase_seconds{phase}                      histogram of PhaseTimings fields (seconds);
//                                                    a phase an engine does not have (0) is not observed
//   spore_rpc_seconds{service,method,code}          histogram; service ttrpc (containerd's Task API)
//                                                    or fri (gRPC)
//   spore_gateway_requests_total{route,status}      counter; route invoke|metrics|healthz|other
//   spore_cgroup_pool_cgroups{state}                gauge; free|in_use
//   spore_function_slots{function,version,state}    gauge; /tmp slots in_use|free (of its concurrency) per function version
//   spore_function_callers_waiting{function,version} gauge; calls waiting for a slot
//   spore_instances{state}                          gauge
//   spore_seeds{engine,level,state}                 gauge
//   spore_seed_memory_bytes{level,kind}             gauge; sum over seeds, kind private|shared|pss
//   spore_containers{state}                         gauge; created|running|stopped|paused
//   spore_oci_hook_seconds{kind,outcome}            histogram; the OCI hooks spored runs (prestart,
//                                                    createRuntime, poststart, poststop), outcome ok|failed|timeout
//   spore_component_up{component}                   gauge; 1 up, 0 down (what /healthz reports)
//   spore_cgroup_favordynmods                        gauge; 1 when the node's cgroup favordynmods is on (pools/favordynmods.ts)
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { Code, Overloaded, codeName, statusOf } from '../sys/errors.js';
import { procsWritesAreFast } from '../pools/cgroups.js';
import type { FunctionRuntime, InstanceInfo, InvokeResult, PhaseTimings, SeedInfo } from '../protocols/fri/types.js';

export const OUTCOMES = ['ok', 'handler', 'load', 'timeout', 'oom', 'crash', 'internal', 'rejected'] as const;
export type Outcome = (typeof OUTCOMES)[number];

export const PHASES: readonly (keyof PhaseTimings)[] = ['control', 'fork', 'bind', 'seccomp', 'init', 'execute', 'respond', 'destroy', 'total'];

/** 25 µs .. 60 s: forks are sub-millisecond, handlers may run for their whole timeout. */
export const LATENCY_BUCKETS = [
  0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
];

/** What the function runtime exposes for the gauges (ProcessFunctionRuntime's public methods). */
export interface FunctionSources {
  /** ProcessFunctionRuntime.pools(): { cgroups: {free, inUse, ...} | null, functions: {"name@version": {concurrency (or slots), inUse, waiting}} } */
  pools(): { cgroups: unknown; functions: unknown };
  listSeeds(): SeedInfo[];
  listInstances(): InstanceInfo[];
}

/** A container as the Task service keeps it (task/tasks.ts ContainerState, the part read here). */
export interface ContainerLike {
  init: { status: string };
}

/** Component name -> up, e.g. what /healthz reports. */
export type ComponentStates = Record<string, boolean>;

export interface MetricsOptions {
  /** prom-client's process_* and nodejs_* collectors (default true) */
  defaultMetrics?: boolean;
}

const num = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) ? v : 0);
const rec = (v: unknown): Record<string, unknown> => (v !== null && typeof v === 'object' ? (v as Record<string, unknown>) : {});

export class Metrics {
  readonly registry = new Registry();
  readonly invocations: Counter<'function' | 'outcome'>;
  readonly phaseSeconds: Histogram<'phase'>;
  readonly rpcSeconds: Histogram<'service' | 'method' | 'code'>;
  readonly gatewayRequests: Counter<'route' | 'status'>;
  readonly hookSeconds: Histogram<'kind' | 'outcome'>;
  private functions: FunctionSources | null = null;
  private containers: (() => Iterable<ContainerLike>) | null = null;
  private components: (() => ComponentStates | Promise<ComponentStates>) | null = null;

  constructor(opts: MetricsOptions = {}) {
    const registers = [this.registry];
    // The event-loop lag histogram samples on a libuv timer at this precision (prom-client's
    // default, 10 ms, woke an idle spored ~100 times a second: 4 % of a CPU on a PVM guest);
    // once a second still shows a stalled loop.
    if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: 1000 });
    this.invocations = new Counter({
      name: 'spore_invocations_total',
      help: 'Function invocations by function and outcome (ok, handler, load, timeout, oom, crash, internal, rejected).',
      labelNames: ['function', 'outcome'],
      registers,
    });
    this.phaseSeconds = new Histogram({
      name: 'spore_phase_seconds',
      help: 'Per-phase latency of invocations that reached an instance (PhaseTimings; destroy runs after the response).',
      labelNames: ['phase'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.rpcSeconds = new Histogram({
      name: 'spore_rpc_seconds',
      help: 'RPC latency: containerd Task API over ttrpc (service="ttrpc") and FRI over gRPC (service="fri"), by method and status code.',
      labelNames: ['service', 'method', 'code'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.gatewayRequests = new Counter({
      name: 'spore_gateway_requests_total',
      help: 'HTTP gateway requests by route (invoke, metrics, healthz, other) and status.',
      labelNames: ['route', 'status'],
      registers,
    });
    this.hookSeconds = new Histogram({
      name: 'spore_oci_hook_seconds',
      help: 'OCI hooks spored runs (prestart, createRuntime, poststart, poststop) by kind and outcome (ok, failed, timeout); a Create waits for its prestart and createRuntime hooks.',
      labelNames: ['kind', 'outcome'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    // Gauges read their sources at scrape time; reset first so gone series disappear.
    const self = this;
    new Gauge({
      name: 'spore_cgroup_pool_cgroups',
      help: 'Pooled cgroups for function instances, free or in use.',
      labelNames: ['state'],
      registers,
      collect() {
        this.reset();
        const c = self.functions ? rec(self.functions.pools().cgroups) : null;
        if (!c) return;
        this.set({ state: 'free' }, num(c.free));
        this.set({ state: 'in_use' }, num(c.inUse));
      },
    });
    new Gauge({
      name: 'spore_function_slots',
      help: "Per-function /tmp slots (its concurrency), in use or free, by function version.",
      labelNames: ['function', 'version', 'state'],
      registers,
      collect() {
        this.reset();
        for (const [fn, version, s] of self.slotEntries()) {
          const inUse = num(s.inUse);
          // the function's concurrency (pools() has said `slots` and `concurrency` for it)
          const capacity = num(s.concurrency ?? s.slots);
          this.set({ function: fn, version, state: 'in_use' }, inUse);
          this.set({ function: fn, version, state: 'free' }, Math.max(0, capacity - inUse));
        }
      },
    });
    new Gauge({
      name: 'spore_function_callers_waiting',
      help: 'Calls waiting for a /tmp slot of a busy function, by function version.',
      labelNames: ['function', 'version'],
      registers,
      collect() {
        this.reset();
        for (const [fn, version, s] of self.slotEntries()) this.set({ function: fn, version }, num(s.waiting));
      },
    });
    new Gauge({
      name: 'spore_instances',
      help: 'Live function instances by state.',
      labelNames: ['state'],
      registers,
      collect() {
        this.reset();
        if (!self.functions) return;
        const counts = new Map<string, number>(['paused', 'running'].map((k) => [k, 0]));
        for (const i of self.functions.listInstances()) counts.set(i.state, (counts.get(i.state) ?? 0) + 1);
        for (const [state, n] of counts) this.set({ state }, n);
      },
    });
    new Gauge({
      name: 'spore_seeds',
      help: 'Seeds by engine, level (0 root, 1 language, 2 function) and state.',
      labelNames: ['engine', 'level', 'state'],
      registers,
      collect() {
        this.reset();
        if (!self.functions) return;
        const counts = new Map<string, { engine: string; level: string; state: string; n: number }>();
        for (const s of self.functions.listSeeds()) {
          const k = `${s.engine}/${s.level}/${s.state}`;
          const c = counts.get(k) ?? { engine: s.engine, level: String(s.level), state: s.state, n: 0 };
          c.n++;
          counts.set(k, c);
        }
        for (const c of counts.values()) this.set({ engine: c.engine, level: c.level, state: c.state }, c.n);
      },
    });
    new Gauge({
      name: 'spore_seed_memory_bytes',
      help: 'Memory of the seeds of a level (smaps_rollup), summed: private, shared and pss bytes.',
      labelNames: ['level', 'kind'],
      registers,
      collect() {
        this.reset();
        if (!self.functions) return;
        const sums = new Map<string, { private: number; shared: number; pss: number }>();
        for (const s of self.functions.listSeeds()) {
          if (!s.memory) continue;
          const l = String(s.level);
          const m = sums.get(l) ?? { private: 0, shared: 0, pss: 0 };
          m.private += s.memory.privateKiB * 1024;
          m.shared += s.memory.sharedKiB * 1024;
          m.pss += s.memory.pssKiB * 1024;
          sums.set(l, m);
        }
        for (const [level, m] of sums) {
          this.set({ level, kind: 'private' }, m.private);
          this.set({ level, kind: 'shared' }, m.shared);
          this.set({ level, kind: 'pss' }, m.pss);
        }
      },
    });
    new Gauge({
      name: 'spore_containers',
      help: 'OCI containers (Task API) by state of their init process: created, running, stopped, or paused.',
      labelNames: ['state'],
      registers,
      collect() {
        this.reset();
        if (!self.containers) return;
        const counts: Record<string, number> = { created: 0, running: 0, stopped: 0, paused: 0 };
        for (const c of self.containers()) {
          const state = c.init.status;
          counts[state] = (counts[state] ?? 0) + 1;
        }
        for (const [state, n] of Object.entries(counts)) this.set({ state }, n);
      },
    });
    new Gauge({
      name: 'spore_cgroup_favordynmods',
      help: "1 when the node's cgroup favordynmods is on (cgroup moves skip an RCU grace period), 0 when off; checked every 10 s.",
      registers,
      collect() {
        this.set(procsWritesAreFast() ? 1 : 0);
      },
    });
    new Gauge({
      name: 'spore_component_up',
      help: 'Whether a component is up (1) or down (0): what GET /healthz reports.',
      labelNames: ['component'],
      registers,
      async collect() {
        this.reset();
        if (!self.components) return;
        for (const [component, up] of Object.entries(await self.components())) this.set({ component }, up ? 1 : 0);
      },
    });
  }

  /** The function runtime whose pools, seeds and instances the gauges report. */
  setFunctionSources(src: FunctionSources | null): void {
    this.functions = src;
  }

  /** The Task service's containers (TaskManager.containers.values()). */
  setContainerSource(src: (() => Iterable<ContainerLike>) | null): void {
    this.containers = src;
  }

  setComponentSource(src: (() => ComponentStates | Promise<ComponentStates>) | null): void {
    this.components = src;
  }

  private slotEntries(): [string, string, Record<string, unknown>][] {
    if (!this.functions) return [];
    const out: [string, string, Record<string, unknown>][] = [];
    for (const [key, v] of Object.entries(rec(this.functions.pools().functions))) {
      const at = key.lastIndexOf('@');
      out.push(at > 0 ? [key.slice(0, at), key.slice(at + 1), rec(v)] : [key, '', rec(v)]);
    }
    return out;
  }

  /** One invocation that produced a result (ok or a failed handler/instance). */
  observeResult(fn: string, r: InvokeResult): void {
    const outcome: Outcome = r.ok ? 'ok' : (r.error?.kind ?? 'internal');
    this.invocations.inc({ function: fn, outcome });
    for (const p of PHASES) {
      const us = r.timings[p];
      if (us > 0) this.phaseSeconds.observe({ phase: p }, us / 1e6);
    }
  }

  /** One invocation refused or failed before a result: rejected (overloaded) or internal. */
  observeThrown(fn: string, outcome: 'rejected' | 'internal'): void {
    this.invocations.inc({ function: fn, outcome });
  }

  /** One OCI hook spored ran (task/hooks.ts HookObserver). */
  observeHook(kind: string, outcome: 'ok' | 'failed' | 'timeout', seconds: number): void {
    this.hookSeconds.observe({ kind, outcome }, seconds);
  }

  observeRpc(service: 'ttrpc' | 'fri', method: string, seconds: number, code: number): void {
    this.rpcSeconds.observe({ service, method, code: codeName(code) }, seconds);
  }

  observeGateway(route: string, status: number): void {
    this.gatewayRequests.inc({ route, status: String(status) });
  }

  /** A removed function's invocation series end with it (names must not pile up). */
  forgetFunction(fn: string): void {
    for (const outcome of OUTCOMES) this.invocations.remove({ function: fn, outcome });
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }
}

/**
 * How a thrown invocation error counts: RESOURCE_EXHAUSTED is `rejected` (answered at once,
 * 429), spore's own failures are `internal`; a caller's mistake (unknown function, bad event)
 * is not an invocation and is not counted (names in it are arbitrary).
 */
export function outcomeOfThrown(err: unknown): 'rejected' | 'internal' | null {
  const { code } = statusOf(err);
  if (code === Code.RESOURCE_EXHAUSTED) return 'rejected';
  if (code === Code.INTERNAL || code === Code.UNKNOWN || code === Code.UNAVAILABLE || code === Code.DATA_LOSS) return 'internal';
  return null;
}

/**
 * The runtime as the FRI server and the gateway see it: every invoke / activate is counted and
 * its phases observed, once, whichever front door it came through.
 */
export function instrument<R extends FunctionRuntime>(rt: R, m: Metrics): FunctionRuntime {
  const known = (fn: string): boolean => rt.listFunctions().some((f) => f.name === fn);
  const thrown = (fn: string | null, e: unknown): never => {
    const outcome = outcomeOfThrown(e);
    // Overloaded is only ever thrown for a deployed function; anything else is checked, so that
    // a name nobody deployed never becomes a series
    if (outcome !== null && fn !== null && (e instanceof Overloaded || known(fn))) m.observeThrown(fn, outcome);
    throw e;
  };
  return {
    create: (engine) => rt.create(engine),
    fork: (seedId, target) => rt.fork(seedId, target),
    async activate(instanceId, event) {
      const fn = rt.listInstances().find((i) => i.id === instanceId)?.function ?? null;
      let r: InvokeResult;
      try {
        r = await rt.activate(instanceId, event);
      } catch (e) {
        return thrown(fn, e);
      }
      m.observeResult(r.function ?? fn ?? '', r);
      return r;
    },
    async invoke(fn, event, opts) {
      let r: InvokeResult;
      try {
        r = await rt.invoke(fn, event, opts);
      } catch (e) {
        return thrown(fn, e);
      }
      m.observeResult(fn, r);
      return r;
    },
    destroy: (id) => rt.destroy(id),
    listSeeds: () => rt.listSeeds(),
    deleteSeed: (id) => rt.deleteSeed(id),
    listInstances: () => rt.listInstances(),
    deploy: (spec) => rt.deploy(spec),
    async remove(name) {
      await rt.remove(name);
      m.forgetFunction(name);
    },
    listFunctions: () => rt.listFunctions(),
    logs: (name, tail) => rt.logs(name, tail),
  };
}
