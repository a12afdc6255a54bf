// spored: one long-lived daemon per node. Wires the process engine's root seed, the task
// manager, the ttrpc Task service for containerd and the event forwarder.
import { closeSync, mkdirSync, openSync, readFileSync, readlinkSync, writeFileSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { gatewayCustodyKey } from './gateway.js';
import { friCustodyKey } from '../protocols/fri/server.js';
import type { Logger } from 'pino';
import { Task } from '../fri-proto/gen/containerd/task/v2/shim_pb.js';
import { TaskCreateSchema, TaskDeleteSchema, TaskExecAddedSchema, TaskExecStartedSchema, TaskExitSchema, TaskOOMSchema, TaskPausedSchema, TaskResumedSchema, TaskStartSchema } from '../fri-proto/gen/containerd/events/task_pb.js';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { detectCgroupLayout, type CgroupLayout } from '../pools/cgroups.js';
import { watchFavorDynmods } from '../pools/favordynmods.js';
import type { DaemonConfig } from './config.js';
import { EventForwarder, TOPIC } from './events.js';
import { SeedClient } from '../engines/process/seed-client.js';
import { LeftForNext, TaskManager, type TaskEvents } from '../task/tasks.js';
import { taskService } from '../task/service.js';
import { TtrpcServer } from '../protocols/ttrpc/server.js';
import type { ServiceImplementationFor } from '../protocols/ttrpc/server.js';
import type { SeedInfo } from '../protocols/fri/types.js';
import { ProcessFunctionRuntime } from '../functions/runtime.js';
import { VmFunctions } from '../functions/vm-functions.js';
import { CompositeFunctionRuntime } from '../functions/composite.js';
import { startFri, startGatewayOnly, type FriHandle } from './fri.js';
import { Metrics, instrument } from './metrics.js';
import { componentStates, healthReport, pidAlive, socketPresent, type HealthReport } from './health.js';
import { Code, FailedPrecondition, statusOf } from '../sys/errors.js';
import * as sys from '../sys/libc.js';
import { processIdentity } from '../sys/proc.js';
import { NO_CUSTODY, type FdCustody } from '../task/custody.js';
import { KeeperLink } from './keeper-link.js';
import { writeFileAtomic } from '../sys/atomic-file.js';

export interface Daemon {
  config: DaemonConfig;
  layout: CgroupLayout;
  seed: SeedClient;
  tasks: TaskManager;
  events: EventForwarder;
  ttrpc: TtrpcServer;
  /** Prometheus metrics (served by the gateway at /metrics) */
  metrics: Metrics;
  /** what /healthz reports */
  health(): HealthReport;
  /** resolves when the function runtime and FRI are up (or failed, logged) */
  functions: Promise<{ rt: ProcessFunctionRuntime; vm: VmFunctions; fri: FriHandle } | null>;
  /** the keeper spored runs under, or null */
  keeper: KeeperLink | null;
  /**
   * Stop. Under a keeper, unless it asked for a full stop (`full`), this is a restart: the
   * root seed and every container keep running for the next spored; function seeds end.
   */
  stop(full?: boolean): Promise<void>;
}

function taskEvents(fwd: EventForwarder): TaskEvents {
  return {
    created(c) {
      fwd.publish(c.namespace, TOPIC.create, TaskCreateSchema, {
        containerId: c.id, bundle: c.bundle, pid: c.init.pid,
        io: { stdin: c.init.stdio.stdin, stdout: c.init.stdio.stdout, stderr: c.init.stdio.stderr, terminal: c.init.terminal },
      });
    },
    started(c, p) {
      if (p.execId) fwd.publish(c.namespace, TOPIC.execStarted, TaskExecStartedSchema, { containerId: c.id, execId: p.execId, pid: p.pid });
      else fwd.publish(c.namespace, TOPIC.start, TaskStartSchema, { containerId: c.id, pid: p.pid });
    },
    exited(c, p) {
      fwd.publish(c.namespace, TOPIC.exit, TaskExitSchema, {
        containerId: c.id, id: p.execId || c.id, pid: p.pid, exitStatus: p.exitStatus, exitedAt: timestampFromDate(p.exitedAt ?? new Date()),
      });
    },
    deleted(c, p) {
      // no `id`: runc's shim leaves it empty in TaskDelete
      fwd.publish(c.namespace, TOPIC.delete, TaskDeleteSchema, {
        containerId: c.id, pid: p.pid, exitStatus: p.exitStatus, exitedAt: timestampFromDate(p.exitedAt ?? new Date()),
      });
    },
    execAdded(c, execId) {
      fwd.publish(c.namespace, TOPIC.execAdded, TaskExecAddedSchema, { containerId: c.id, execId });
    },
    paused(c, paused) {
      if (paused) fwd.publish(c.namespace, TOPIC.paused, TaskPausedSchema, { containerId: c.id });
      else fwd.publish(c.namespace, TOPIC.resumed, TaskResumedSchema, { containerId: c.id });
    },
    oom(c) {
      fwd.publish(c.namespace, TOPIC.oom, TaskOOMSchema, { containerId: c.id });
    },
  };
}

/**
 * Log every Task RPC with its container id and duration (the bench reads these lines) and
 * observe it in spore_rpc_seconds{service="ttrpc"}.
 */
function timed<S extends object>(impl: S, log: Logger, metrics: Metrics): S {
  const out: Record<string, unknown> = {};
  for (const [name, fn] of Object.entries(impl) as [string, (req: { id?: string; execId?: string }, ctx: unknown) => Promise<unknown>][]) {
    const method = name.charAt(0).toUpperCase() + name.slice(1);
    out[name] = async (req: { id?: string; execId?: string }, ctx: unknown) => {
      const t0 = performance.now();
      let code: number = Code.OK;
      try {
        return await fn(req, ctx);
      } catch (e) {
        code = statusOf(e).code;
        log.info({ method, id: req.id, execId: req.execId || undefined, err: (e as Error).message, code: (e as { code?: number }).code }, 'rpc failed');
        throw e;
      } finally {
        const ms = performance.now() - t0;
        metrics.observeRpc('ttrpc', method, ms / 1000, code);
        log.info({ method, id: req.id, execId: req.execId || undefined, ms: Math.round(ms * 1000) / 1000 }, 'rpc');
      }
    };
  }
  return out as S;
}

/** f's value, computed at most once per `ms`. */
function memo<T>(f: () => T, ms: number): () => T {
  let at = -Infinity;
  let v: T;
  return () => {
    const now = performance.now();
    if (now - at >= ms) { v = f(); at = now; }
    return v;
  };
}

/** The config as logged: the gateway token is never written to a log. */
export function loggableConfig(config: DaemonConfig): Record<string, unknown> {
  // (no --log: stderr, which the launcher points at <run-dir>/spored.log; named, as a user
  // reading `"logFile": null` in this very file asked where the log was, helper-69)
  let logTo: string = config.logFile ?? 'stderr';
  if (config.logFile === null) { try { logTo = `stderr (${readlinkSync('/proc/self/fd/2')})`; } catch { /* closed */ } }
  return { ...config, gatewayToken: config.gatewayToken === null ? null : '<set>', logTo };
}

/**
 * One spored per run dir: its lock is held for the daemon's life (released by the kernel at
 * exit, however it ends). A second one refuses to start and names the holder.
 */
function lockRunDir(runDir: string): number {
  const fd = openSync(join(runDir, 'spored.lock'), 'a', 0o600);
  if (sys.tryLockExclusive(fd)) { sys.setCloexec(fd, true); return fd; }
  closeSync(fd);
  let holder = '';
  try { holder = readFileSync(join(runDir, 'spored.pid'), 'utf8').trim().split(/\s+/)[0] ?? ''; } catch { /* none */ }
  throw new FailedPrecondition(`another spored serves ${runDir}${holder ? ` (pid ${holder})` : ''}; stop it first or give this one its own --run-dir`);
}

export async function startDaemon(config: DaemonConfig, log: Logger): Promise<Daemon> {
  const t0 = performance.now();
  mkdirSync(config.runDir, { recursive: true, mode: 0o700 });
  const lockFd = lockRunDir(config.runDir);
  const pidFile = `${config.runDir}/spored.pid`;
  writeFileAtomic(pidFile, `${processIdentity(process.pid) ?? process.pid}\n`, { mode: 0o644 });
  writeFileSync(`${config.runDir}/containerd-address`, `${config.containerdTtrpc}\n`);
  const layout = detectCgroupLayout();
  const favor = watchFavorDynmods(config.cgroupFavorDynmods, log.child({ c: 'cgroups' }));
  // Under a keeper, containers outlive this spored: the root seed survives it and the
  // keeper holds containerd's connections and the stdio fds; the next spored re-attaches.
  const keeper = config.keeperSocket ? await KeeperLink.connect(config.keeperSocket) : null;
  const seed = new SeedClient();
  const attach = await seed.start({
    socket: keeper ? join(config.runDir, 'process-seed.sock') : undefined,
    survive: keeper !== null, holdExits: true, shells: config.containerShells, directShells: config.directShells,
  });
  if (!seed.has('sealed-process')) {
    // a root seed that outlived a spored upgrade (it is every container's parent)
    log.warn({ seedPid: seed.pid }, 'the root seed predates sealed args and env: containers\' args, env and hooks pass through its memory, which a container granted CAP_SYS_PTRACE can read through a process spore forks into it; restart spore with no containers running to replace the seed');
  }
  const events = new EventForwarder(config.containerdTtrpc, log.child({ c: 'events' }));
  const metrics = new Metrics();
  const tasks = new TaskManager({
    runDir: config.runDir, layout, seed, events: taskEvents(events), log: log.child({ c: 'tasks' }), cgroupParent: config.cgroupParent,
    custody: keeper ?? NO_CUSTODY, onHook: (kind, outcome, seconds) => metrics.observeHook(kind, outcome, seconds),
  });
  // Re-adopt what an earlier spored left: records, then the exits that happened meanwhile
  // (the seed's backlog, then the keeper's reaps), then what ended unseen.
  const tRestore = performance.now();
  const restored = tasks.restore(attach.pending);
  // a Create cut short: its sandbox goes, but its client's FIFOs are held for the replayed Create
  const heldFor = new Map(attach.pending.map((p) => [p.key, p.pid]));
  for (const k of restored.abort) {
    const pid = heldFor.get(k);
    if (pid) tasks.holdStdioOf(k, pid);
    await seed.abort(k).catch(() => undefined);
  }
  seed.releaseExits();
  for (const e of keeper?.reapedBefore ?? []) tasks.exitReaped(e.pid, e.status, e.at);
  keeper?.on('reaped', (e) => tasks.exitReaped(e.pid, e.status, e.at));
  // tests: a restore that takes long (exits of containers meanwhile wait unread in the link)
  const stall = Number(process.env['SPORE_TEST_STALL_RESTORE_MS'] ?? 0) || 0;
  if (stall > 0) {
    log.warn({ ms: stall }, 'test stall: restore');
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, stall);
  }
  // what looks ended unseen may have its exit on the way (reaped a moment ago): one round
  // trip to the seed and one to the keeper (the parent of processes whose seed died) deliver
  // every exit they reaped before (a SIGTERM handover reported a container that exited
  // meanwhile with 255 instead of its code)
  const suspects = new Set(tasks.lostSuspects());
  if (suspects.size) {
    await Promise.all([
      seed.sync().catch((e: unknown) => log.warn({ err: (e as Error).message }, 'seed sync before the lost-process sweep')),
      keeper?.sync(),
    ]);
  }
  const lost = tasks.sweepLost(suspects);
  if (restored.restored || restored.abort.length || restored.bad.length || !attach.started) {
    log.info({
      containers: restored.restored, seedAttached: !attach.started, abortedCreates: restored.abort, unreadable: restored.bad,
      lost, keeperGeneration: keeper?.generation, ms: Math.round((performance.now() - tRestore) * 100) / 100,
    }, 'restored containers from an earlier spored');
  }
  // a record that cannot be read is a container spored no longer knows: its processes run on
  // and containerd cannot stop them through spore (helper-56); say so where an operator looks
  if (restored.bad.length) {
    log.error({ records: restored.bad }, 'task records could not be read: those containers run on unknown to spored (containerd answers NotFound for them); stop their processes and remove their cgroups by hand, then the records');
  }
  let stopping = false;
  let seedUp = true;
  seed.on('down', (reason) => {
    seedUp = false;
    if (stopping) return;
    if (keeper) {
      // Under a keeper a restart costs nothing (containers stay, their exits reach the keeper,
      // their parent's subreaper) and brings a new root seed: restart rather than serve on
      // without one.
      log.error({ reason }, 'process seed is gone; restarting spored to start a new one');
      tasks.seedLostUnderKeeper();
      process.kill(process.pid, 'SIGTERM');
    } else log.fatal({ reason }, 'process seed is gone; containers and functions cannot be created until spored restarts');
  });
  metrics.setContainerSource(() => tasks.containers.values());
  const ttrpc = new TtrpcServer({
    onConnectionError: (err, connectionId) => log.warn({ connectionId, err: err.message }, 'ttrpc connection error'),
    // the root seed is gone and this spored is restarting itself for a new one: a Create or
    // an Exec (which only registers) that failed meanwhile goes to the next spored (the keeper
    // sends it again), as after a crash; it was undone, so it runs there from the start. A
    // Start only when its set-up process waits on pipes the keeper holds (LeftForNext):
    // otherwise it ended with the seed (as an abort, status 0), and the next spored would
    // report that as the program's exit
    leaveUnanswered: (err, call) => {
      if (!keeper) return false;
      // (known to the call before the seed's link has said so)
      if (!(err instanceof LeftForNext) && (seedUp || (call.method !== 'Create' && call.method !== 'Exec'))) return false;
      log.warn({ method: call.method, err: (err as Error).message }, 'a call failed while the process seed is gone; left for the next spored');
      return true;
    },
  });
  ttrpc.register(Task, timed(taskService(tasks, layout, log.child({ c: 'task' }), undefined, keeper?.keeperPid ?? null), log.child({ c: 'rpc' }), metrics) as ServiceImplementationFor<typeof Task>);
  const ttrpcListener = await ttrpc.listen(config.ttrpcSocket);
  keeper?.ready();
  log.info({ config: loggableConfig(config), cgroups: layout.mode, favordynmods: favor.first.on, seedPid: seed.pid, startMs: Math.round(performance.now() - t0) }, 'spored ready');
  // Filled in once the function runtime is up (health reads it synchronously).
  let fns: { rt: ProcessFunctionRuntime; seeds: () => SeedInfo[]; fri: FriHandle } | null = null;
  const health = (): HealthReport => healthReport({
    processSeed: () => seedUp && pidAlive(seed.pid),
    ttrpc: () => ttrpcListener.listening && socketPresent(config.ttrpcSocket),
    fri: () => fns?.fri.listening() ?? false,
    seeds: () => fns?.seeds() ?? [],
    functionsOff: !config.fri,
  });
  metrics.setComponentSource(() => componentStates(health()));
  // a containers-only node (--fri off) keeps its gateway for /metrics and /healthz
  const gatewayOnly = config.fri ? null : await startGatewayOnly(config, log, { metrics, health, ...(keeper ? { custody: keeper } : {}) }).catch((e: unknown) => {
    log.error({ err: (e as Error).stack ?? String(e) }, 'gateway failed to start; containers are served without /metrics and /healthz');
    return null;
  });
  if (!config.fri) log.info({ gateway: gatewayOnly?.gateway ? config.gatewayAddress : 'off' }, 'function runtime off (--fri off): no FRI socket and no seed tree; the gateway serves /metrics and /healthz, invocations get 503');
  // The function runtime comes up after containerd's socket, so it never delays a shim
  // start; a failure there leaves the OCI path serving.
  const functions = config.fri
    ? startFunctions(config, layout, seed, log, metrics, health, keeper ?? undefined).then((f) => {
      if (f) fns = { rt: f.rt, seeds: f.seeds, fri: f.fri };
      return f && { rt: f.rt, vm: f.vm, fri: f.fri };
    })
    : Promise.resolve(null);
  return {
    config, layout, seed, tasks, events, ttrpc, functions, metrics, health, keeper,
    async stop(full = false) {
      stopping = true;
      clearInterval(favor.timer);
      const handover = keeper !== null && !full;
      const f = await functions;
      // Handing over: containerd's calls in flight finish here (its Waits are replayed by
      // the keeper to the next spored), calls that arrive meanwhile wait in the keeper;
      // invocations in flight finish (FRI's graceful close) before function seeds go.
      await Promise.all([
        handover ? ttrpc.close(2000, { handover: true, longPoll: (_s, m) => m === 'Wait' }) : Promise.resolve(),
        f?.fri.close(handover),
        gatewayOnly?.close(handover),
      ]);
      await f?.rt.stop();
      await f?.vm.close();
      if (!handover) await ttrpc.close(2000);
      await events.flush(1000);
      events.close();
      if (keeper && !full) seed.detach();
      else await seed.stop();
      keeper?.close();
      rmSync(pidFile, { force: true });
      closeSync(lockFd);
    },
  };
}

async function startFunctions(
  config: DaemonConfig, layout: CgroupLayout, seed: SeedClient, log: Logger, metrics: Metrics, health: () => HealthReport, custody?: FdCustody,
): Promise<{ rt: ProcessFunctionRuntime; vm: VmFunctions; seeds: () => SeedInfo[]; fri: FriHandle } | null> {
  const t0 = performance.now();
  const rt = new ProcessFunctionRuntime({
    runDir: config.runDir, stateDir: config.stateDir, layout, l0: seed, log: log.child({ c: 'seeds' }),
    cgroupPoolSize: config.cgroupPool, l2Replicas: config.l2Replicas, slotsPerFunction: config.functionConcurrency,
    queuePerFunction: config.functionQueue, maxInstances: config.maxInstances, initTimeoutMs: config.initTimeoutMs,
    parked: config.parked,
  });
  try {
    await rt.start();
    // the vm engine (KVM) boots on the first create("vm") / vm deploy, not here
    const vm = new VmFunctions({ log: log.child({ c: 'vm' }) });
    const composite = new CompositeFunctionRuntime(rt, vm);
    // listSeeds reads every seed's smaps_rollup: one read serves a scrape's gauges and /healthz
    const seeds = memo(() => composite.listSeeds(), 1000);
    metrics.setFunctionSources({ pools: () => rt.pools(), listSeeds: seeds, listInstances: () => composite.listInstances() });
    // FRI and the gateway see the instrumented runtime: each invocation is counted once
    const fri = await startFri(instrument(composite, metrics), config, log, { metrics, health, ...(custody ? { custody } : {}) });
    log.info({ ms: Math.round(performance.now() - t0), seeds: rt.listSeeds().map((s) => `${s.id}:${s.state}`), pools: rt.pools() }, 'function runtime ready');
    return { rt, vm, seeds, fri };
  } catch (e) {
    log.error({ err: (e as Error).stack ?? String(e) }, 'function runtime failed to start; the OCI path keeps serving');
    // nothing will serve the gateway or FRI: the keeper must not hold their sockets (callers
    // would wait for ever instead of being refused)
    if (config.gatewayAddress !== 'off') custody?.release(gatewayCustodyKey(config.gatewayAddress));
    custody?.release(friCustodyKey(resolve(config.friSocket)));
    await rt.stop().catch(() => undefined);
    return null;
  }
}
