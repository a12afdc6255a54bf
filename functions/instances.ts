// Function instances, from admission to release: a /tmp slot (waiting, bounded, when the
// function is at its concurrency), a pooled cgroup and a fresh channel; the fork request to
// a seed; on the seed's `forked`, the host process found by the kernel, held by pidfd and
// moved into its cgroup from here; the request on the channel; the result (or the death);
// early destroy. Nothing privileged happens inside the sandbox, and nothing an instance or
// its seed says is believed beyond its own invocation.
import { constants as osConstants } from 'node:os';
import { randomUUID } from 'node:crypto';
import net from 'node:net';
import type { Logger } from 'pino';
import { FailedPrecondition, Overloaded, Unavailable } from '../sys/errors.js';
import type { InstanceInfo, InvokeError, InvokeResult, PhaseTimings } from '../protocols/fri/types.js';
import { addProcessAsync, addProcessSync, oomKillCount, procsFiles, procsWritesWarm, type CgroupLayout, type CgroupPool, type PooledCgroup } from '../pools/cgroups.js';
import * as sys from '../sys/libc.js';
import { MAX_RESULT_LINE, type FromSeed, type InstanceResult, type InvokeRequest } from '../seeds/protocol.js';
import { nsPids, openChildOf } from './host-pids.js';
import { functionStack, scrubText } from './stack.js';
import { deferred, type InstanceEvents } from './seed-tree.js';
import type { InstRec, SeedRec, VersionRec } from './records.js';

export type { InstRec };
import { INSTANCE_MOVES, move } from './states.js';

type Exit = Extract<FromSeed, { t: 'exit' }>;


type W<T> = ReturnType<typeof deferred<T>>;
/** What callers wait for about one instance; not part of its record. */
interface InstWaits {
  forked: W<{ forkUs: number }>;
  /** in its cgroup: it may take its request */
  bound: W<void>;
  result: W<InstanceResult | null>;
  exited: W<Exit>;
}

export interface InstancesOptions {
  layout: CgroupLayout;
  log: Logger;
  /**
   * v1 controllers an instance's own pooled cgroup is used for (each move is a write on the
   * hot path); default memory and pids (INSTANCE_CONTROLLERS). Its cpu cgroup is its version's.
   */
  instanceControllers?: string[];
  /** calls that may wait for a busy function (default: its concurrency) */
  queuePerFunction?: number;
  /** instances on the node at once (default 256) */
  maxInstances?: number;
  /** an instance's pids limit (default 256) */
  pidsLimit?: number;
}

const EXIT_GRACE_MS = 10_000;
/**
 * What an instance's own (pooled) cgroup holds on a v1 or hybrid host: its memory limit and
 * its pids limit. Its CPU is its version's one instances group (VersionRec.instancesCpuProcs,
 * registry.ts): a group per instance made two dozen group entities per CPU at 24 calls in
 * flight and a p99 of 4.7 × p50 (docs/speed-2026-12-01.md).
 */
export const INSTANCE_CONTROLLERS = ['memory', 'pids'];

const finiteUs = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) && v >= 0 && v < 1e12 ? Math.round(v) : 0);
const optStr = (v: unknown): string | null => (typeof v === 'string' ? v : null);

/**
 * A result line as spored believes it: only a well-formed InstanceResult, its fields checked
 * (handler code can write to its channel); anything else is not a result.
 */
export function resultOf(line: string): InstanceResult | null {
  let m: unknown;
  try { m = JSON.parse(line); } catch { return null; }
  if (typeof m !== 'object' || m === null) return null;
  const o = m as Record<string, unknown>;
  if (o.t !== 'result' || typeof o.ok !== 'boolean') return null;
  const value = optStr(o.value);
  if (o.ok && value === null) return null;
  let error: InstanceResult['error'] = null;
  if (!o.ok) {
    const e = (typeof o.error === 'object' && o.error !== null ? o.error : {}) as Record<string, unknown>;
    const kind = e.kind === 'handler' || e.kind === 'load' || e.kind === 'internal' ? e.kind : 'handler';
    error = { kind, message: optStr(e.message) ?? 'the handler failed', stack: optStr(e.stack) };
  }
  const t = (typeof o.timings === 'object' && o.timings !== null ? o.timings : {}) as Record<string, unknown>;
  return {
    t: 'result', ok: o.ok, value: o.ok ? value : null, error,
    timings: {
      bind: finiteUs(t.bind), seccomp: finiteUs(t.seccomp), init: finiteUs(t.init), execute: finiteUs(t.execute),
      // debug stamps only (never used for anything but the debug log): a number or absent
      ...(typeof t.startAt === 'number' && Number.isFinite(t.startAt) ? { startAt: t.startAt } : {}),
      ...(typeof t.doneAt === 'number' && Number.isFinite(t.doneAt) ? { doneAt: t.doneAt } : {}),
      ...(typeof t.minflt === 'number' && Number.isFinite(t.minflt) ? { minflt: t.minflt } : {}),
      ...(typeof t.requestAt === 'number' && Number.isFinite(t.requestAt) ? { requestAt: t.requestAt } : {}),
    },
  };
}
const us = (ms: number): number => Math.max(0, Math.round(ms * 1000));

export class Instances implements Omit<InstanceEvents, never> {
  private readonly recs = new Map<string, InstRec>();
  private readonly waits = new Map<string, InstWaits>();
  /** each pooled cgroup's cgroup.procs files an instance is written into (by cgroup path; pool cgroups are reused) */
  private readonly procsTargets = new Map<string, string[]>();
  private counter = 0;
  /** calls admitted but still waiting for a /tmp slot (counted against maxInstances) */
  private admitting = 0;

  /**
   * `pick` chooses the seed to fork from (a version's least busy replica); `onExit` runs
   * after an instance's exit (replica rotation).
   */
  constructor(
    private readonly o: InstancesOptions,
    private readonly cgroups: () => CgroupPool | null,
    private readonly pick: (v: VersionRec) => SeedRec | null,
    private readonly onExited: (seed: SeedRec) => void,
  ) {}

  get(id: string): InstRec | undefined {
    return this.recs.get(id);
  }

  list(): InstanceInfo[] {
    return [...this.recs.values()].map((i) => ({ ...i.info }));
  }

  get size(): number {
    return this.recs.size;
  }

  /**
   * Admit, take the resources and ask the seed to fork. Overloaded at once when the node is
   * at its instances or the function at its concurrency and queue.
   */
  async start(v: VersionRec, seedWanted: SeedRec | null, paused = false): Promise<InstRec> {
    const max = this.o.maxInstances ?? 256;
    if (this.admitting + this.recs.size >= max) throw new Overloaded(`${max} instances are running on this node (spored --max-instances); retry later`);
    v.inflight++;
    this.admitting++;
    let slot: string;
    try { slot = await v.slots.acquire(this.o.queuePerFunction ?? v.slots.concurrency); } catch (e) { v.inflight--; throw e; } finally { this.admitting--; }
    const seed = seedWanted ?? this.pick(v);
    if (!seed?.link || v.state === 'gone') {
      v.inflight--;
      v.slots.release(slot);
      throw new Unavailable(`function ${v.fn.spec.name} has no ready seed`);
    }
    const id = `i-${(++this.counter).toString(36)}`;
    const memoryMiB = v.fn.spec.memoryMiB;
    let cg: PooledCgroup | null = null;
    try {
      cg = this.cgroups()?.acquire({ memory: { limit: memoryMiB * 1024 * 1024 }, pids: { limit: this.o.pidsLimit ?? 256 } }, `m${memoryMiB}`).handle ?? null;
    } catch (e) {
      v.inflight--;
      v.slots.release(slot);
      throw e;
    }
    const [mine, theirs] = sys.socketpair();
    // first line: which /tmp is the instance's own (it never passes through the seed), with a
    // fresh open file description of the log pipe for its stdout and stderr: the seed's is
    // shared by every instance, so a handler's O_NONBLOCK on it broke later calls' writes.
    // Written before the socket is Node's, so nothing is queued ahead of it.
    const log = v.logFd >= 0 ? sys.open(`/proc/self/fd/${v.logFd}`, sys.O.WRONLY | sys.O.CLOEXEC) : -1;
    try {
      sys.sendWithFds(mine, Buffer.from(`${JSON.stringify({ slot })}\n`), log >= 0 ? [log] : []);
    } finally {
      if (log >= 0) sys.close(log);
    }
    const channel = new net.Socket({ fd: mine, readable: true, writable: true });
    const w: InstWaits = { forked: deferred(), bound: deferred(), result: deferred(), exited: deferred() };
    const inst: InstRec = {
      info: { id, seedId: seed.info.id, function: v.fn.spec.name, pid: 0, state: paused ? 'paused' : 'running', createdAt: new Date().toISOString() },
      seed, version: v, cgroup: cg, slot, channel, hostPid: 0, pidfd: -1, result: null, timer: null, timedOut: false, released: false,
      at: { forkSent: 0, forked: 0, bound: 0, requestSent: 0 },
    };
    this.recs.set(id, inst);
    this.waits.set(id, w);
    this.readResult(inst, w);
    seed.inflight++;
    seed.info.forks++;
    void w.exited[0].then(() => { seed.inflight--; this.onExited(seed); });
    void w.forked[0].catch((e: Error) => { w.bound[1].reject(e); w.result[1].resolve(null); });
    seed.link.send({ t: 'fork', id, nfds: 1, timeoutMs: v.fn.spec.timeoutMs }, [theirs]);
    inst.at.forkSent = performance.now();
    return inst;
  }

  /**
   * `v`'s instances spored holds (host pids; their move into their cgroup may still be under
   * way), and the seeds with a fork whose report has not been resolved yet (escapees.ts).
   */
  forksOf(v: VersionRec): { held: Set<number>; unresolvedFrom: Set<SeedRec> } {
    const held = new Set<number>();
    const unresolvedFrom = new Set<SeedRec>();
    for (const inst of this.recs.values()) {
      if (inst.version !== v || inst.released) continue;
      if (inst.hostPid > 0) held.add(inst.hostPid);
      else unresolvedFrom.add(inst.seed);
    }
    return { held, unresolvedFrom };
  }

  /** Resolves once the instance is forked and in its cgroup (FRI Fork); rejects if it never got there. */
  async ready(inst: InstRec): Promise<void> {
    const w = this.waits.get(inst.info.id);
    if (!w) throw new Unavailable(`instance ${inst.info.id} is gone`);
    await w.forked[0];
    await w.bound[0];
  }

  // --- seed events (InstanceEvents) -------------------------------------------------------

  /** The seed reported the fork: find the process, hold it by pidfd, put it in its cgroup. */
  onForked(seed: SeedRec, id: string, reportedPid: number, forkUs: number): boolean {
    const inst = this.recs.get(id);
    if (!inst) return false;
    const w = this.waits.get(id);
    if (inst.seed !== seed || !w) return true;
    inst.at.forked = performance.now();
    // A parked one waits for the loop's check phase: the answers of calls in flight, read in
    // the same turn, go out first (this is a dozen syscalls, the cgroup move among them).
    if (inst.info.state === 'paused') {
      setImmediate(() => {
        if (this.recs.get(id) === inst && !inst.released && seed.link && !seed.link.closed) this.bindForked(inst, w, seed, reportedPid, forkUs);
        else w.forked[1].reject(new Unavailable(`instance ${id} went away before it was bound`));
      });
    }
    else this.bindForked(inst, w, seed, reportedPid, forkUs);
    return true;
  }

  private bindForked(inst: InstRec, w: InstWaits, seed: SeedRec, reportedPid: number, forkUs: number): void {
    const id = inst.info.id;
    seed.nsPids ??= nsPids(seed.hostPid) ?? undefined;
    const child = seed.nsPids ? openChildOf(seed.hostPid, reportedPid, seed.nsPids) : null;
    if (child === null) {
      // the seed has this child (it reported it) but spored cannot hold it: have the seed kill
      // it, so its exit still comes and its resources go back (mostly it is gone already:
      // function code run at the fork, an at-fork hook, ended it)
      this.kill(inst);
      w.forked[1].reject(new ExitedBeforeBind(`instance ${id}: no child ${reportedPid} of seed ${seed.info.id}`));
      return;
    }
    const host = child.host;
    inst.hostPid = host;
    inst.pidfd = child.pidfd;
    const bound = (): void => {
      // listed with its pid once it is in its cgroup (the move may go through the threadpool)
      inst.info.pid = host;
      inst.at.bound = performance.now();
      w.forked[1].resolve({ forkUs });
      w.bound[1].resolve();
    };
    const failed = (e: unknown): void => {
      this.kill(inst);
      // ESRCH: the process is gone (function code run at the fork ended it), not spore's failure
      const gone = (e as { code?: unknown }).code === 'ESRCH' || (e as { errno?: unknown }).errno === 3;
      w.forked[1].reject(new (gone ? ExitedBeforeBind : FailedPrecondition)(`instance ${id}: cgroup: ${(e as Error).message}`));
    };
    if (!inst.cgroup) { bound(); return; }
    const files = this.procsTargetsOf(inst.cgroup, inst.version.instancesCpuProcs);
    // Under traffic, or with the node's favordynmods on (pools/favordynmods.ts), the moves are
    // plain syscalls. Otherwise the first after a quiet spell waits out an RCU grace period
    // (pools/cgroups.ts, addProcessAsync: 5-17 ms on 2-CPU PVM guests), which held this loop,
    // containerd's calls and every other invocation with it (a parked lot's refill after each
    // sparse call; a fork on request with parking off): that one goes through the threadpool.
    if (procsWritesWarm()) {
      try { addProcessSync(files, host); } catch (e) { failed(e); return; }
      bound();
      return;
    }
    addProcessAsync(files, host).then(bound, failed);
  }

  onForkFailed(seed: SeedRec, id: string, message: string): boolean {
    const inst = this.recs.get(id);
    if (!inst) return false;
    if (inst.seed !== seed) return true;
    const w = this.waits.get(id);
    w?.forked[1].reject(new FailedPrecondition(`fork failed: ${message}`));
    // no process exists, so no exit will come: its resources go back now
    w?.exited[1].resolve({ t: 'exit', id, pid: 0, code: null, signal: null, timedOut: false });
    return true;
  }

  onExit(seed: SeedRec, m: Exit): boolean {
    const inst = this.recs.get(m.id);
    if (!inst) return false;
    if (inst.seed === seed) this.waits.get(m.id)?.exited[1].resolve(m);
    return true;
  }

  /** A seed is gone: its instances died with it (a seed kills its children when its link closes). */
  onSeedGone(seed: SeedRec): number {
    let n = 0;
    for (const inst of this.recs.values()) {
      if (inst.seed !== seed || inst.released) continue;
      n++;
      const w = this.waits.get(inst.info.id);
      w?.forked[1].reject(new Unavailable(`seed ${seed.info.id} went away`));
      w?.exited[1].resolve({ t: 'exit', id: inst.info.id, pid: inst.info.pid, code: null, signal: 9, timedOut: false });
    }
    return n;
  }

  // --- the invocation -----------------------------------------------------------------------

  /** The cgroup.procs files an instance in `cg` is written into, in order (`cpuProcs` last). */
  private procsTargetsOf(cg: PooledCgroup, cpuProcs: string | null): string[] {
    let files = this.procsTargets.get(cg.path);
    if (!files) {
      const controllers = this.o.instanceControllers ?? INSTANCE_CONTROLLERS;
      const v2 = this.o.layout.mode === 'v2';
      // hybrid's controller-less unified hierarchy is left out: nothing there limits an instance,
      // and an empty cgroup is told by pids.current (CgroupManager.populated)
      files = procsFiles(cg).filter((f) => v2 || controllers.some((c) => f.includes(`/${c}/`)));
      this.procsTargets.set(cg.path, files);
    }
    return cpuProcs ? [...files, cpuProcs] : files;
  }

  /** Send the request once the instance is bound; its timeout starts now (also for a parked one). */
  sendRequest(inst: InstRec, event: string): void {
    const v = inst.version;
    const req: InvokeRequest = {
      event,
      context: { functionName: v.fn.spec.name, functionVersion: String(v.version), requestId: randomUUID(), deadlineMs: Date.now() + v.fn.spec.timeoutMs, memoryLimitMiB: v.fn.spec.memoryMiB },
    };
    move(INSTANCE_MOVES, inst.info, 'running');
    inst.seed.served = (inst.seed.served ?? 0) + 1;
    void this.waits.get(inst.info.id)?.bound[0].then(() => {
      inst.channel.write(JSON.stringify(req) + '\n');
      inst.at.requestSent = performance.now();
      inst.timer = setTimeout(() => { inst.timedOut = true; this.kill(inst); }, v.fn.spec.timeoutMs);
    }, () => undefined);
  }

  /**
   * The instance's answer: the first well-formed result line on its channel (handler code
   * can write to its own channel too, but only its own invocation suffers). Linear in what
   * arrives, and at most MAX_RESULT_LINE of it: past that the instance is killed.
   */
  private readResult(inst: InstRec, w: InstWaits): void {
    const chunks: Buffer[] = [];
    let pending = 0;
    let seen = 0;
    const ch = inst.channel;
    ch.on('data', (d: Buffer) => {
      if (inst.result) return;
      seen += d.length;
      let from = 0;
      for (let nl = d.indexOf(10); nl >= 0 && !inst.result; nl = d.indexOf(10, from)) {
        chunks.push(d.subarray(from, nl));
        const line = Buffer.concat(chunks, pending + nl - from).toString('utf8');
        chunks.length = 0;
        pending = 0;
        from = nl + 1;
        const r = resultOf(line);
        if (r) { inst.result = r; w.result[1].resolve(r); ch.destroy(); return; }
      }
      if (from < d.length) { chunks.push(d.subarray(from)); pending += d.length - from; }
      if (seen > MAX_RESULT_LINE) {
        this.o.log.warn({ inst: inst.info.id }, `instance wrote over ${MAX_RESULT_LINE} bytes without a result; killing it`);
        chunks.length = 0;
        this.kill(inst);
        ch.destroy();
      }
    });
    ch.on('error', () => undefined);
    ch.on('close', () => w.result[1].resolve(inst.result));
  }

  /** SIGKILL through the pidfd (never a reused pid); before the fork is known, through the seed. */
  kill(inst: InstRec): void {
    if (inst.pidfd >= 0) { try { sys.pidfdSignal(inst.pidfd, 9); } catch { /* exited */ } }
    else inst.seed.link?.send({ t: 'kill', id: inst.info.id });
  }

  /** Kill an instance and wait (bounded) for its exit; its resources go back. */
  async destroy(inst: InstRec): Promise<void> {
    this.kill(inst);
    const w = this.waits.get(inst.info.id);
    await Promise.race([w?.exited[0], new Promise((r) => setTimeout(r, 2000))]);
    this.release(inst);
  }

  /**
   * Resolves at the instance's result (or its death). Early destroy: the child _exits right
   * after answering; its resources are recycled when its exit arrives, off the response path.
   */
  async finish(inst: InstRec, t0: number, controlMs: number, parked = false): Promise<InvokeResult> {
    const w = this.waits.get(inst.info.id) as InstWaits;
    let forkUs = 0;
    let notStarted: Error | null = null;
    try { forkUs = (await w.forked[0]).forkUs; } catch (e) { notStarted = e as Error; }
    // The channel closes when the instance is gone, after its last bytes: its result can
    // arrive after the seed's exit report. A child the handler forked may keep the channel
    // open; then the exit (plus a grace) decides.
    const r = await Promise.race([
      w.result[0],
      w.exited[0].then(() => Promise.race([w.result[0], new Promise<null>((res) => setTimeout(() => res(null), 1000).unref())])),
    ]) ?? inst.result;
    const tResult = performance.now();
    if (inst.timer) { clearTimeout(inst.timer); inst.timer = null; }
    // It answered, and left processes behind (a fork bomb, a daemon): its cgroup is emptied
    // now, the instance with them, not once its exit comes. A bomb of a few hundred busy
    // processes held that exit back by seconds under load, and ran all along.
    if (r && inst.cgroup && this.cgroups()?.holdsOthers(inst.cgroup, inst.hostPid)) {
      this.o.log.info({ inst: inst.info.id, fn: inst.version.fn.spec.name }, 'the instance answered and left processes behind; they are killed now');
      this.releaseCgroup(inst);
    }
    // An instance that answered must exit at once; one that does not is killed, and if even
    // that is never confirmed its resources are reclaimed anyway.
    const guard = setTimeout(() => {
      this.o.log.warn({ inst: inst.info.id, seed: inst.seed.info.id, hostPid: inst.hostPid }, 'instance did not exit; killing it');
      this.kill(inst);
      setTimeout(() => w.exited[1].resolve({ t: 'exit', id: inst.info.id, pid: inst.info.pid, code: null, signal: 9, timedOut: false }), 2000).unref();
    }, r ? EXIT_GRACE_MS : 2000);
    guard.unref();
    void w.exited[0].then(() => clearTimeout(guard));
    // Recycling (cgroup emptied and reset, /tmp slot scrubbed) waits for the next turn of the
    // event loop: the exit often arrives with the result, and the caller's answer goes first.
    const destroyed = w.exited[0]
      .then(() => new Promise<void>((res) => setImmediate(res)))
      .then(() => { this.release(inst); return performance.now(); });
    let tDone = -1;
    void destroyed.then((t) => { tDone = t; });
    const exit = r ? null : await w.exited[0];
    if (!r) tDone = await destroyed;
    const oom = !r && inst.cgroup ? oomKillCount(inst.cgroup) - inst.cgroup.oomKillsAtAcquire > 0 : false;
    move(INSTANCE_MOVES, inst.info, r?.ok ? 'done' : 'failed');
    const child = r?.timings ?? { bind: 0, seccomp: 0, init: 0, execute: 0 };
    const totalUs = us(tResult - t0);
    // A parked instance was forked, bound and started before this call (`t0`): those phases
    // are not part of it, and the phases must add up to the total.
    const timings: PhaseTimings = {
      control: us(controlMs), fork: parked ? 0 : forkUs, bind: parked ? 0 : child.bind, seccomp: parked ? 0 : child.seccomp, init: parked ? 0 : child.init,
      execute: child.execute, respond: 0, destroy: tDone > 0 ? us(tDone - tResult) : 0, total: totalUs,
    };
    // Phases measured in different processes can overlap: the child starts (init) inside the
    // seed's fork, before the seed has reported it. What overlaps is taken off init, then fork,
    // so the phases still add up to the total.
    let excess = timings.control + timings.fork + timings.bind + timings.seccomp + timings.init + timings.execute - totalUs;
    for (const k of ['init', 'fork', 'control'] as const) {
      if (excess <= 0) break;
      const cut = Math.min(excess, timings[k]);
      timings[k] -= cut;
      excess -= cut;
    }
    const rest = Math.max(0, totalUs - timings.control - timings.fork - timings.bind - timings.seccomp - timings.init - timings.execute);
    // an instance that got its call and ended without an answer (killed at its timeout or its
    // memory limit, or crashed) spent that time in the handler, not in answering
    if (!r && (inst.timedOut || (notStarted === null && inst.at.requestSent > 0))) timings.execute += rest;
    else timings.respond = rest;
    if (this.o.log.isLevelEnabled('debug')) this.o.log.debug({ inst: inst.info.id, fn: inst.version.fn.spec.name, parked, hops: hops(t0, tResult, inst.at, r?.timings), minflt: r?.timings.minflt }, 'invocation hops (ms from the call)');
    let error: InvokeError | null = null;
    const spec = inst.version.fn.spec;
    if (!r || !r.ok) {
      if (inst.timedOut) error = { kind: 'timeout', message: `handler exceeded its timeout of ${spec.timeoutMs} ms and was killed`, stack: null };
      else if (oom) error = { kind: 'oom', message: `handler exceeded its memory limit of ${spec.memoryMiB} MiB and was killed`, stack: null };
      // the caller sees the function's own frames, never spore's (every interface: FRI, CLI, gateway)
      else if (r?.error) error = { kind: r.error.kind, message: scrubText(r.error.message), stack: functionStack(r.error.stack) };
      else if (notStarted && !(notStarted instanceof ExitedBeforeBind)) {
        // spore's failure, not the handler's: it never ran
        error = { kind: 'internal', message: `the instance could not be started: ${notStarted.message}`, stack: null };
        this.o.log.warn({ inst: inst.info.id, fn: spec.name, seed: inst.seed.info.id, err: notStarted.message }, 'instance could not be started');
      } else {
        error = { kind: 'crash', message: `instance exited ${notStarted ? 'before its call reached it' : 'without a result'} (code ${exit?.code ?? null}, signal ${signalName(exit?.signal ?? null)})`, stack: null };
        // the handler's own errors are the caller's business; a process that died without a
        // word (a signal from outside, a crash of the runtime) is the operator's
        this.o.log.warn({ inst: inst.info.id, fn: spec.name, seed: inst.seed.info.id, hostPid: inst.hostPid, code: exit?.code ?? null, signal: exit?.signal ?? null }, 'instance exited without a result');
      }
    }
    // answered: from here on it is recycling, not a call in flight (a redeploy said "1 in
    // flight" of a call answered a moment before)
    if (!inst.released) { inst.answered = true; inst.version.recycling++; }
    return {
      ok: error === null, result: error === null ? r?.value ?? 'null' : null, error,
      function: spec.name, seedId: inst.seed.info.id, seedLevel: inst.seed.info.level,
      instanceId: inst.info.id, timings,
    };
  }

  /** Its pool cgroup back to the pool (leftovers killed, the cgroup reused once empty); once. */
  private releaseCgroup(inst: InstRec): void {
    if (!inst.cgroup || inst.cgroupReleased) return;
    inst.cgroupReleased = true;
    try { this.cgroups()?.release(inst.cgroup, { keepLimits: true }); } catch (e) { this.o.log.warn({ inst: inst.info.id, err: (e as Error).message }, 'cgroup release'); }
  }

  /** Give the instance's resources back, once: its cgroup (emptied), pidfd, /tmp slot (scrubbed). */
  release(inst: InstRec): void {
    if (inst.released) return;
    inst.released = true;
    if (inst.answered) inst.version.recycling--;
    this.recs.delete(inst.info.id);
    this.waits.delete(inst.info.id);
    if (inst.timer) clearTimeout(inst.timer);
    inst.channel.destroy();
    this.releaseCgroup(inst);
    if (inst.pidfd >= 0) { sys.close(inst.pidfd); inst.pidfd = -1; }
    // after the cgroup is empty: nothing of this instance is left to write into its /tmp
    inst.version.slots.release(inst.slot);
    inst.version.inflight--;
  }
}

/**
 * Where a call's time went between processes, in ms from the call's start (`t0`): the fork
 * request sent, the seed's report of it, the instance bound (pidfd, cgroup), the request
 * written, the child's first instruction and its result written (the child's clock:
 * performance.timeOrigin-based, good to a fraction of a ms), the result read. Negative:
 * before the call (a parked instance).
 */
function hops(t0: number, tResult: number, at: InstRec['at'], child: { startAt?: number; doneAt?: number; requestAt?: number } | undefined): Record<string, number> {
  const rel = (t: number): number => Math.round((t - t0) * 1000) / 1000;
  const abs = (epochMs: number | undefined): number => (epochMs === undefined ? NaN : rel(epochMs - performance.timeOrigin));
  return {
    forkSent: rel(at.forkSent), forked: rel(at.forked), bound: rel(at.bound), requestSent: rel(at.requestSent),
    childStart: abs(child?.startAt), childRequest: abs(child?.requestAt), childDone: abs(child?.doneAt), resultRead: rel(tResult),
  };
}

/** The instance's process ended between its fork and its bind: the function's doing (code run at the fork), reported as a crash. */
class ExitedBeforeBind extends FailedPrecondition {}

/** 31 -> "31 (SIGSYS)": a signal number with its name, so a seccomp kill reads as one. */
function signalName(signal: number | null): string {
  if (signal === null) return 'null';
  const name = Object.entries(osConstants.signals).find(([, n]) => n === signal)?.[0];
  return name === undefined ? String(signal) : `${signal} (${name})`;
}
