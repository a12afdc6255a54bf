// The seed tree and spored's links to it: L0 (the root seed, trusted), L1 language seeds
// (spore's own code, trusted; they connect to seeds.sock and are checked with SO_PEERCRED),
// L2 function seeds (function code runs in them: believed about nothing but their own
// children) and their replicas. Seed records are plain data; what callers wait for (ready,
// forked, slots mounted) is kept apart from them. Messages about instances are handed to
// the instance side (InstanceEvents).
import net from 'node:net';
import { chmodSync, existsSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import { FailedPrecondition, InvalidArgument, Unavailable } from '../sys/errors.js';
import type { Language, SeedInfo } from '../protocols/fri/types.js';
import type { SeedClient } from '../engines/process/seed-client.js';
import * as sys from '../sys/libc.js';
import type { FromSeed, LoadSpec, SandboxPlan } from '../seeds/protocol.js';
import { SeedLink } from './seed-link.js';
import { childHostPid } from './host-pids.js';
import { SEED_MOVES, move } from './states.js';
import type { SeedRec, VersionRec } from './records.js';

export type { SeedRec };

const ZYGOTE = fileURLToPath(new URL('../../seeds/python/zygote.py', import.meta.url));


interface Waiter<T> { resolve: (v: T) => void; reject: (e: Error) => void }

export function deferred<T>(): [Promise<T>, Waiter<T>] {
  let w!: Waiter<T>;
  const p = new Promise<T>((resolve, reject) => { w = { resolve, reject }; });
  p.catch(() => undefined);
  return [p, w];
}

/** What callers wait for about one seed; not part of its record. */
interface SeedWaits {
  ready: [Promise<void>, Waiter<void>];
  forked: [Promise<number>, Waiter<number>];
  /** slot (re)mounts asked of the L1 parent, answered in order */
  slots: Waiter<number>[];
}

/** The instance side of seed messages (functions/instances.ts). Each returns whether the id was an instance. */
export interface InstanceEvents {
  onForked(seed: SeedRec, id: string, reportedPid: number, forkUs: number): boolean;
  onForkFailed(seed: SeedRec, id: string, message: string): boolean;
  onExit(seed: SeedRec, m: Extract<FromSeed, { t: 'exit' }>): boolean;
  /** the seed is gone, and its instances with it */
  onSeedGone(seed: SeedRec): number;
}

export interface SeedTreeOptions {
  runDir: string;
  l0: SeedClient;
  log: Logger;
  pythonBin?: string;
  /** a seed went away without being asked to (killed, crashed): after its instances were told */
  onLost?: (seed: SeedRec) => void;
}

export class SeedTree {
  private readonly seeds = new Map<string, SeedRec>();
  private readonly waits = new Map<string, SeedWaits>();
  private readonly languageSeeds = new Map<Language, SeedRec>();
  private readonly links = new Set<SeedLink>();
  private server: net.Server | null = null;
  private rootRec: SeedRec | null = null;
  private counter = 0;
  /** close() began: seeds going away now are not lost (onLost) */
  private closing = false;
  readonly socketPath: string;

  constructor(private readonly o: SeedTreeOptions, private readonly instances: InstanceEvents) {
    this.socketPath = join(o.runDir, 'seeds.sock');
  }

  /** Listen on seeds.sock (language seeds only). */
  async listen(): Promise<void> {
    if (existsSync(this.socketPath)) unlinkSync(this.socketPath);
    this.server = net.createServer((c) => this.onLanguageSeed(c));
    await new Promise<void>((resolve, reject) => { this.server?.once('error', reject); this.server?.listen(this.socketPath, resolve); });
    chmodSync(this.socketPath, 0o600);
  }

  /** Close every link (seeds kill their instances when theirs closes) and the listener. */
  async close(): Promise<void> {
    this.closing = true;
    for (const l of this.links) l.close('spored stopping');
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }

  nextId(prefix: string): string {
    return `${prefix}-${++this.counter}`;
  }

  get(id: string): SeedRec | undefined {
    return this.seeds.get(id);
  }

  list(): SeedRec[] {
    return [...this.seeds.values()];
  }

  // --- links ----------------------------------------------------------------------------

  /** A language seed connected to seeds.sock: believed only if the kernel says it is the process the root seed forked. */
  private onLanguageSeed(c: net.Socket): void {
    let rec: SeedRec | null = null;
    let link: SeedLink;
    try {
      link = new SeedLink(c, (m) => {
        if (rec) { this.onMessage(rec, m); return; }
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
      }, (why) => { this.links.delete(link); if (rec) this.onGone(rec, why); });
    } catch {
      c.destroy();
      return;
    }
    this.links.add(link);
  }

  /** A link spored made for a seed it asks another seed to fork (its end of a socketpair). */
  private linkFor(rec: SeedRec, fd: number): SeedLink {
    const link = new SeedLink(fd, (m) => this.onMessage(rec, m), (why) => { this.links.delete(link); this.onGone(rec, why); });
    this.links.add(link);
    rec.link = link;
    return link;
  }

  private onGone(rec: SeedRec, why: string): void {
    const deleting = rec.info.state === 'deleting';
    if (move(SEED_MOVES, rec.info, 'failed')) rec.info.error ??= why;
    const w = this.waits.get(rec.info.id);
    w?.ready[1].reject(new Unavailable(`seed ${rec.info.id} went away (${why})`));
    w?.forked[1].reject(new Unavailable(`seed ${rec.info.id} went away`));
    for (const s of w?.slots.splice(0) ?? []) s.reject(new Unavailable(`seed ${rec.info.id} went away`));
    const orphans = this.instances.onSeedGone(rec);
    if (!deleting) {
      this.o.log.warn({ seed: rec.info.id, why, orphans }, 'seed disconnected');
      if (!this.closing) this.o.onLost?.(rec);
    }
  }

  /** A child seed of `parent`, by id (a seed speaks only for its own children). */
  private childOf(parent: SeedRec, id: string): SeedRec | null {
    const c = this.seeds.get(id);
    return c && c.info.parent === parent.info.id ? c : null;
  }

  private onMessage(rec: SeedRec, m: FromSeed): void {
    switch (m.t) {
      case 'ready':
        if (move(SEED_MOVES, rec.info, 'ready')) {
          rec.info.initMs = m.initMs;
          this.waits.get(rec.info.id)?.ready[1].resolve();
        }
        return;
      case 'failed': {
        // a seed reports itself; an L1 reports a child lineage it could not finish
        const target = m.id === rec.info.id ? rec : this.childOf(rec, m.id);
        if (!target) return;
        if (move(SEED_MOVES, target.info, 'failed')) target.info.error = m.stack ?? m.message;
        const w = this.waits.get(target.info.id);
        w?.ready[1].reject(m.phase === 'load'
          ? new InvalidArgument(`function code failed to load: ${m.message}`)
          : new FailedPrecondition(`function sandbox could not be built (${m.phase ?? 'setup'}): ${m.message}`));
        return;
      }
      case 'forked': {
        if (this.instances.onForked(rec, m.id, m.pid, m.forkUs)) return;
        const child = this.childOf(rec, m.id);
        if (!child) return;
        const w = this.waits.get(child.info.id);
        const host = rec.hostPid ? childHostPid(rec.hostPid, m.pid) : null;
        if (host === null) {
          // A seed whose code threw at load is gone (reaped) before its pid is looked up; its
          // 'failed' report comes right after this one, and that is the answer then.
          const notFound = new FailedPrecondition(`seed ${child.info.id}: its process could not be found`);
          if (!w) return;
          const t = setTimeout(() => w.forked[1].reject(notFound), 500);
          w.ready[0].then(() => { clearTimeout(t); w.forked[1].reject(notFound); }, (e: Error) => { clearTimeout(t); w.forked[1].reject(e); });
          return;
        }
        child.hostPid = host;
        raiseOomScore(host, this.o.log);
        child.info.pid = host;
        w?.forked[1].resolve(host);
        return;
      }
      case 'slots': {
        const child = this.childOf(rec, m.id);
        const waiter = child ? this.waits.get(child.info.id)?.slots.shift() : undefined;
        if (m.error) waiter?.reject(new FailedPrecondition(m.error));
        else waiter?.resolve(m.count);
        return;
      }
      case 'forkFailed': {
        if (this.instances.onForkFailed(rec, m.id, m.message)) return;
        const child = this.childOf(rec, m.id);
        if (!child) return;
        const w = this.waits.get(child.info.id);
        w?.forked[1].reject(new FailedPrecondition(`fork failed: ${m.message}`));
        w?.ready[1].reject(new FailedPrecondition(`fork failed: ${m.message}`));
        return;
      }
      case 'exit': {
        if (this.instances.onExit(rec, m)) return;
        const child = this.childOf(rec, m.id);
        if (!child) return;
        const starting = child.info.state === 'starting';
        // how a seed ended (its link closing says only that it did); one being deleted is
        // expected, and one already failed said so once (a parent running init code can
        // repeat any child's exit)
        if (child.info.state !== 'deleting' && child.info.state !== 'failed') this.o.log.warn({ seed: child.info.id, parent: rec.info.id, code: m.code, signal: m.signal, starting }, 'seed exited');
        if (move(SEED_MOVES, child.info, 'failed')) child.info.error ??= `seed exited (code ${m.code}, signal ${m.signal})`;
        // its own 'failed' (with the reason) normally comes first or right after
        if (starting) setTimeout(() => this.waits.get(child.info.id)?.ready[1].reject(new FailedPrecondition(`seed ${child.info.id} exited before it was ready (code ${m.code}, signal ${m.signal})`)), 1000).unref();
        return;
      }
      default:
        return;
    }
  }

  // --- records --------------------------------------------------------------------------

  private add(partial: Pick<SeedInfo, 'id' | 'level' | 'engine' | 'language' | 'function' | 'parent' | 'replicaOf'>, version: VersionRec | null): SeedRec {
    const rec: SeedRec = {
      info: { ...partial, pid: 0, state: 'starting', forks: 0, createdAt: new Date().toISOString(), initMs: 0, memory: null, error: null },
      link: null, hostPid: 0, inflight: 0, memoryCheckAt: 0, version,
    };
    this.seeds.set(rec.info.id, rec);
    this.waits.set(rec.info.id, { ready: deferred<void>(), forked: deferred<number>(), slots: [] });
    return rec;
  }

  /** Wait for a seed's `ready`; Unavailable after timeoutMs. */
  async waitReady(rec: SeedRec, timeoutMs = 30_000): Promise<void> {
    const w = this.waits.get(rec.info.id);
    if (!w) { if (rec.info.state === 'ready') return; throw new Unavailable(`seed ${rec.info.id} is ${rec.info.state}`); }
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Unavailable(`seed ${rec.info.id} did not become ready in ${timeoutMs} ms`)), timeoutMs); });
    try { await Promise.race([w.ready[0], timeout]); } finally { clearTimeout(timer); }
  }

  /** Forget a seed: tell it to exit and close its link (its instances go with it). */
  drop(seed: SeedRec): void {
    move(SEED_MOVES, seed.info, 'deleting');
    for (const [l, s] of this.languageSeeds) if (s === seed) this.languageSeeds.delete(l);
    seed.link?.send({ t: 'exit' });
    seed.link?.close('deleted');
    this.seeds.delete(seed.info.id);
    this.waits.delete(seed.info.id);
  }

  // --- the tree -------------------------------------------------------------------------

  /** The process engine's root seed record (L0), made once. */
  root(): SeedRec {
    if (!this.rootRec) {
      this.rootRec = this.add({ id: 'l0-process', level: 0, engine: 'process', language: null, function: null, parent: null, replicaOf: null }, null);
      this.rootRec.info.pid = this.o.l0.pid;
      this.rootRec.hostPid = this.o.l0.pid;
      move(SEED_MOVES, this.rootRec.info, 'ready');
      this.waits.get(this.rootRec.info.id)?.ready[1].resolve();
    }
    return this.rootRec;
  }

  /** The ready L1 seed of a language, starting one (a fork of the root seed) when there is none. */
  async languageSeed(language: 'node' | 'python'): Promise<SeedRec> {
    const existing = this.languageSeeds.get(language);
    if (existing && existing.info.state !== 'failed' && existing.info.state !== 'deleting') { await this.waitReady(existing); return existing; }
    const root = this.root();
    const rec = this.add({ id: this.nextId(`l1-${language}`), level: 1, engine: 'process', language, function: null, parent: root.info.id, replicaOf: null }, null);
    this.languageSeeds.set(language, rec);
    rec.hostPid = await this.o.l0.spawnSeed(language, rec.info.id, this.socketPath, this.o.pythonBin ?? '/usr/bin/python3', ZYGOTE);
    raiseOomScore(rec.hostPid, this.o.log);
    rec.info.pid = rec.hostPid;
    root.info.forks++;
    await this.waitReady(rec);
    this.o.log.info({ seed: rec.info.id, hostPid: rec.info.pid }, 'language seed ready');
    return rec;
  }

  /**
   * A function lineage's first seed: the L1 seed builds its sandbox (plan) in a fork of
   * itself, which takes `env` from its own link, runs the function's init code and says
   * ready within initTimeoutMs.
   * `log` (the write end of the function's output pipe) is handed over and closed here.
   */
  async lineage(l1: SeedRec, version: VersionRec, load: LoadSpec, plan: SandboxPlan, env: Record<string, string>, log: number, initTimeoutMs: number): Promise<SeedRec> {
    const name = version.fn.spec.name;
    const rec = this.add({ id: this.nextId(`l2-${name}`), level: 2, engine: 'process', language: l1.info.language, function: name, parent: l1.info.id, replicaOf: null }, version);
    const [mine, theirs] = sys.socketpair();
    // the function's own env goes on the lineage's own link, so the L1 seed never holds it
    this.linkFor(rec, mine).send({ t: 'env', env });
    if (!l1.link) { sys.close(theirs); sys.close(log); this.drop(rec); throw new Unavailable(`language seed ${l1.info.id} is not connected`); }
    l1.link.send({ t: 'seed', id: rec.info.id, nfds: 2, load, sandbox: plan }, [theirs, log]);
    l1.info.forks++;
    const w = this.waits.get(rec.info.id) as SeedWaits;
    try {
      await Promise.race([w.forked[0], w.ready[0]]);
      await this.waitReady(rec, initTimeoutMs);
    } catch (e) {
      if (rec.hostPid) { try { process.kill(rec.hostPid, 'SIGKILL'); } catch { /* gone */ } }
      this.drop(rec);
      throw e instanceof Unavailable && /did not become ready/.test(e.message)
        ? new FailedPrecondition(`function ${name}: init code did not finish within ${initTimeoutMs} ms`)
        : e;
    }
    return rec;
  }

  /**
   * Ask the L1 parent of a lineage to mount its instances' /tmp slots (or, with `renew`, to
   * replace used ones by fresh, empty ones). At deploy the names are sent only after init
   * code ran, so the lineage's own memory never held them.
   */
  async mountSlots(first: SeedRec, slotDir: string, names: string[], bytes: number, renew = false): Promise<void> {
    const l1 = first.info.parent ? this.seeds.get(first.info.parent) : undefined;
    const w = this.waits.get(first.info.id);
    if (!l1?.link || !w) throw new Unavailable(`the language seed of ${first.info.id} is not connected`);
    const [done, waiter] = deferred<number>();
    w.slots.push(waiter);
    l1.link.send({ t: 'slots', id: first.info.id, slotDir, names, bytes, renew });
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([done, new Promise((_, reject) => { timer = setTimeout(() => reject(new Unavailable(`${l1.info.id} did not mount the /tmp slots`)), 10_000); })]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** A replica of a lineage: a fork of its first seed (same sandbox, function already loaded). */
  async replica(first: SeedRec, version: VersionRec): Promise<SeedRec> {
    if (!first.link) throw new Unavailable(`function ${version.fn.spec.name} has no running seed`);
    const rec = this.add({ id: this.nextId(`l2-${version.fn.spec.name}`), level: 2, engine: 'process', language: first.info.language, function: version.fn.spec.name, parent: first.info.id, replicaOf: first.info.id }, version);
    const [mine, theirs] = sys.socketpair();
    this.linkFor(rec, mine);
    first.link.send({ t: 'seed', id: rec.info.id, nfds: 1 }, [theirs]);
    first.info.forks++;
    try {
      await (this.waits.get(rec.info.id) as SeedWaits).forked[0];
      await this.waitReady(rec);
    } catch (e) {
      this.drop(rec);
      throw e;
    }
    return rec;
  }
}

/** How much more killable than spored a function's seeds (and so its instances) are. */
export const FUNCTION_OOM_BIAS = 300;

/**
 * The OOM killer takes functions before spored: a language seed's or function seed's
 * oom_score_adj is spored's own plus FUNCTION_OOM_BIAS (at most 1000), and what it forks
 * inherits it (instances had spored's 200: red team, helper-55). Raising needs no privilege;
 * a seed already gone is no error.
 */
export function raiseOomScore(pid: number, log: Logger): void {
  try {
    const own = Number(readFileSync('/proc/self/oom_score_adj', 'utf8'));
    writeFileSync(`/proc/${pid}/oom_score_adj`, String(Math.min(1000, own + FUNCTION_OOM_BIAS)));
  } catch (e) {
    log.debug({ pid, err: (e as Error).message }, 'oom_score_adj of a seed not raised');
  }
}
