// spored's handle on a resident process-engine seed: starts it, correlates requests
// with replies, and turns the seed's reaped exits into events. With directShells it also
// holds duplicates of the pipes of the seed's idle container shells (offered by the seed)
// and hands a fitting Create's plan to one itself (spawnDirect): a claim to the seed, the
// plan onto the shell's pipe with a nonce, the set-up's status read here, so the plan never
// passes through the seed and the Create saves a hop each way.
import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { existsSync, fstatSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SeedChannel, connectSeed } from './seed-channel.js';
import { FailedPrecondition, Unavailable } from '../../sys/errors.js';
import { SEED_PROTOCOL, sealPlan, sealedBody, setupAllowanceMs, shellFrame, type SEED_FEATURES, type ChildStatus, type ExitReport, type InitPlan, type SeedReply, type SeedRequest, type SpawnPlan } from './protocol.js';
import { earlyStepsOf, shellFits, type EarlyStep } from './container-init.js';
import { onJsonLines } from './lines.js';
import * as sys from '../../sys/libc.js';
import { randomBytes } from 'node:crypto';
import net from 'node:net';

type Reply = Extract<SeedReply, { type: 'reply' }>;
type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

/**
 * `exitsBefore`: the exitSeq of the last exit report read before this reply. An exit of `pid`
 * with a higher exitSeq is this sandbox's own (it may be read in the same chunk as the reply,
 * before the caller has recorded the pid); a lower one was an earlier process with that pid.
 */
/** `console`: for CONSOLE_INSIDE, the pty master's fd number in the child (take it with pidfd_getfd before Start) */
/** Events of one spawn before its reply (SeedClient.spawn). */
export interface SpawnEvents {
  pid?: (pid: number) => void;
  hooks?: (pid: number) => void;
}

export interface SpawnResult {
  pid: number; warnings: string[]; timings: Record<string, number>; exitsBefore: number; console?: number;
  /** the seed's fds of the sandbox's start and status pipes (protocol.ts, 'held-start') */
  pipes?: { start: number; status: number; ino?: { start: number; status: number } };
  /**
   * A direct spawn (a container shell spored wrote the plan to): this process's own fds of the
   * start pipe (write end) and status pipe (read end). The caller owns them (task/held-start.ts
   * HeldStart.own) and must close them.
   */
  own?: { start: number; status: number };
}

export class SeedError extends FailedPrecondition {
  constructor(readonly phase: string, message: string, readonly errno?: number) {
    super(`${phase}: ${message}`);
  }
}

export interface SeedClientEvents {
  /** exitSeq: the seed's sequence number of this report (see SpawnResult.exitsBefore); at: when the seed reaped it (ms since the epoch) */
  exit: [pid: number, status: number, exitSeq: number, at: number];
  down: [reason: string];
}

const SEED_MAIN = fileURLToPath(new URL('./seed-main.js', import.meta.url));

/**
 * Flags of the root seed, inherited by every fork. --single-threaded: V8 runs no helper
 * threads that could hold locks at fork time. --no-lazy + --no-flush-bytecode: code a
 * child runs but the seed never calls (container init, instance start-up, the function's
 * handler) is compiled once in the seed and stays compiled, instead of being compiled
 * again in every child. --use-largepages=silent: node's own machine code is copied onto
 * anonymous (transparent huge) pages. fork() copies no page tables of a file mapping, so
 * every instance used to fault node's text in again (about 145 instruction-fetch faults of
 * its ~500); an anonymous mapping's are copied with the fork, 2 MiB at a time. A/B on a
 * 2-CPU PVM guest, Node hello through the gateway (7 paired runs, all in its favour): CPU
 * per invocation -5 to -12 %, c=24 throughput +2 to +8 %. Without THP it is a no-op
 * ("silent").
 */
export const SEED_FLAGS = ['--single-threaded', '--v8-pool-size=0', '--max-semi-space-size=4', '--no-lazy', '--no-flush-bytecode', '--use-largepages=silent'];

export interface SeedStartOptions {
  /** the seed's socket (0600): `<run-dir>/process-seed.sock` */
  socket: string;
  /**
   * Under a keeper: attach to a seed already serving `socket` (one a previous spored left
   * running) and start a new one only when there is none; the seed outlives this spored.
   * Otherwise the seed is always new and ends when this spored's link to it closes.
   */
  survive: boolean;
  /** hold reported exits until releaseExits() (spored restores its records first) */
  holdExits: boolean;
  /**
   * container shells the seed keeps ready (pre-forked children a fitting Create is handed to;
   * engines/process/shells.ts); 0: none. Undefined: leave an attached seed's setting as it is
   * (a new seed starts with none).
   */
  shells?: number;
  /**
   * Hand plans that fit to the seed's idle container shells directly (its 'shell-claims'
   * feature): the plan goes from spored to the shell, and its set-up's status from the shell
   * to spored, never through the seed. Default false.
   */
  directShells?: boolean;
}

/** An idle container shell the seed offered, with this process's own copies of its pipes. */
interface OwnShell { pid: number; plan: number; start: number; status: number; pidfd: number; ahead: EarlyStep[] }

/** What a direct spawn came to: the reply the seed would have sent, and the pipes spored owns on success. */
interface DirectOutcome { reply: SeedReply & { type: 'reply' }; exitsBefore: number; own?: { start: number; status: number } }

/** A direct spawn between its claim and its ready: resume() writes its start pipe, abort() marks it */
interface DirectSpawn { pid: number; start: number; aborted: boolean; rearm: () => void }

let socketSeq = 0;

/** What a seed told the spored that attached to it. */
export interface SeedAttach {
  /** true when this spored started the seed, false when it found one running */
  started: boolean;
  /** sandboxes set up and waiting for Start, by key (adopt or abort) */
  pending: { key: string; pid: number }[];
}

export class SeedClient extends EventEmitter<SeedClientEvents> {
  private child: ChildProcess | null = null;
  /** per reply: lastExitSeq when it was read */
  private readonly exitsBeforeReply = new WeakMap<Reply, number>();
  private link: SeedChannel<SeedReply, SeedRequest> | null = null;
  private seq = 0;
  /** spawn requests' early pid callbacks by seq, until their reply */
  private readonly pidListeners = new Map<number, SpawnEvents>();
  /** what the attached seed can do beyond its protocol (its hello's features) */
  private features: readonly string[] = [];
  private readonly waiting = new Map<number, (r: Reply) => void>();
  /** exits the seed reported before holdExits() was released, oldest first */
  private held: ExitReport[] | null = null;
  private lastExitSeq = 0;
  private stopping = false;
  /** the socket of a seed this client started (removed at stop: a seed ended by a signal leaves it) */
  private ownSocket: string | null = null;
  /** plans go to the seed's shells directly (asked for, and the seed has 'shell-claims') */
  private direct = false;
  /** idle shells the seed offered, by pid */
  private readonly idleShells = new Map<number, OwnShell>();
  /** a pidfd of the seed (to take its shells' fds), while attached */
  private seedPidfd = -1;
  private readonly directs = new Map<string, DirectSpawn>();
  pid = 0;

  /**
   * Start the seed (or, with `survive`, attach to the one already serving the socket) and
   * wait for its hello. Exits it reports are held until releaseExits(), so that whoever
   * restores state from disk sees them after restoring, in the seed's order.
   */
  async start(opts: Partial<SeedStartOptions> = {}): Promise<SeedAttach> {
    const o: SeedStartOptions = {
      socket: opts.socket ?? join(tmpdir(), `spore-seed-${process.pid}-${++socketSeq}.sock`),
      survive: opts.survive ?? false,
      holdExits: opts.holdExits ?? false,
      ...(opts.shells !== undefined ? { shells: opts.shells } : {}),
    };
    if (o.holdExits) this.held = [];
    let sock = o.survive ? await connectSeed(o.socket) : null;
    const started = sock === null;
    if (!sock) {
      rmSync(o.socket, { force: true });
      const child = spawn(process.execPath, [...SEED_FLAGS, SEED_MAIN, '--socket', o.socket, ...(o.survive ? ['--survive'] : [])], {
        stdio: ['ignore', 'inherit', 'inherit'],
        // nothing of spored's environment but PATH, and the orphan grace (seed-main.ts) and the
        // network shells' age bound (shells.ts) when set
        env: {
          PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
          ...(process.env.SPORE_SEED_ORPHAN_GRACE_MS ? { SPORE_SEED_ORPHAN_GRACE_MS: process.env.SPORE_SEED_ORPHAN_GRACE_MS } : {}),
          ...(process.env.SPORE_NET_SHELL_MAX_AGE_MS ? { SPORE_NET_SHELL_MAX_AGE_MS: process.env.SPORE_NET_SHELL_MAX_AGE_MS } : {}),
        },
      });
      this.child = child;
      this.ownSocket = o.socket;
      const died = new Promise<never>((_, reject) => child.once('exit', (code, sig) => reject(new Unavailable(`process seed exited during start-up (code ${code}, signal ${sig})`))));
      died.catch(() => undefined);
      const until = Date.now() + 10_000;
      while (!sock) {
        if (child.exitCode !== null || child.signalCode !== null) await died;
        if (Date.now() > until) { child.kill('SIGKILL'); throw new Unavailable(`process seed did not listen on ${o.socket} within 10 s`); }
        await new Promise((r) => setTimeout(r, 5));
        if (existsSync(o.socket)) sock = await connectSeed(o.socket);
      }
      child.once('exit', () => { this.child = null; });
    }
    const hello = await new Promise<Extract<SeedReply, { type: 'hello' }>>((resolve, reject) => {
      let first = true;
      const link = new SeedChannel<SeedReply, SeedRequest>(sock as net.Socket, (m) => {
        if (first) {
          first = false;
          if (m.type !== 'hello') { link.close('seed did not say hello'); reject(new Unavailable('process seed spoke before its hello')); return; }
          if (m.protocol !== SEED_PROTOCOL) {
            link.close('protocol mismatch');
            reject(new FailedPrecondition(`the running root seed (pid ${m.pid}) speaks protocol ${String(m.protocol)}, this spored ${SEED_PROTOCOL}: it holds the node's containers, so this upgrade needs them stopped (stop the keeper, then start again)`));
            return;
          }
          resolve(m);
          return;
        }
        this.onMessage(m);
      }, (why) => this.onLinkClosed(why));
      this.link = link;
      setTimeout(() => reject(new Unavailable('process seed sent no hello within 5 s')), 5000).unref();
    });
    this.pid = hello.pid;
    this.features = hello.features ?? [];
    this.direct = opts.directShells === true && this.features.includes('shell-claims');
    for (const e of hello.exits) this.onExit(e);
    if (o.shells !== undefined) this.setShells(o.shells);
    return { started, pending: hello.pending };
  }

  /** Deliver the exits held since start(), in order, and every later one as it comes. */
  releaseExits(): void {
    const held = this.held ?? [];
    this.held = null;
    for (const e of held) this.deliver(e);
  }

  private onExit(e: ExitReport): void {
    if (e.exitSeq <= this.lastExitSeq) return; // reported twice (hello after a live report)
    this.lastExitSeq = e.exitSeq;
    if (this.held) this.held.push(e);
    else this.deliver(e);
  }

  private deliver(e: ExitReport): void {
    this.emit('exit', e.pid, e.status, e.exitSeq, e.at);
    this.link?.send({ op: 'ack', seq: 0, exitSeq: e.exitSeq });
  }

  private onLinkClosed(why: string): void {
    this.link = null;
    for (const pid of [...this.idleShells.keys()]) this.dropShell(pid);
    if (this.seedPidfd >= 0) { sys.close(this.seedPidfd); this.seedPidfd = -1; }
    const reason = this.stopping ? 'process seed link closed' : `process seed link lost: ${why}`;
    for (const [, w] of this.waiting) w({ type: 'reply', seq: -1, ok: false, error: reason, phase: 'seed' });
    this.waiting.clear();
    this.pidListeners.clear();
    if (!this.stopping) this.emit('down', reason);
  }

  private onMessage(m: SeedReply): void {
    if (m.type === 'exit') { this.onExit(m); return; }
    if (m.type === 'pid') { this.pidListeners.get(m.seq)?.pid?.(m.pid); return; }
    if (m.type === 'hooks') { this.pidListeners.get(m.seq)?.hooks?.(m.pid); return; }
    if (m.type === 'shell') { this.adoptShell(m.pid, m.fds, m.ahead, m.ino); return; }
    if (m.type === 'shellGone') { this.dropShell(m.pid); return; }
    if (m.type !== 'reply') return;
    this.pidListeners.delete(m.seq);
    const w = this.waiting.get(m.seq);
    if (w) { this.waiting.delete(m.seq); this.exitsBeforeReply.set(m, this.lastExitSeq); w(m); }
  }

  private request(req: DistributiveOmit<SeedRequest, 'seq'>, on?: SpawnEvents): Promise<Reply> {
    const link = this.link;
    if (!link || link.closed) return Promise.reject(new Unavailable('process seed is not running'));
    const seq = ++this.seq;
    return new Promise<Reply>((resolve) => {
      this.waiting.set(seq, resolve);
      if (on) this.pidListeners.set(seq, on);
      link.send({ ...req, seq } as SeedRequest);
    });
  }

  /** Whether the attached seed has `feature` (protocol.ts SEED_FEATURES; from its hello). */
  has(feature: (typeof SEED_FEATURES)[number]): boolean {
    return this.features.includes(feature);
  }

  /**
   * Fork a sandbox that sets itself up and waits for start(). `on.pid`: called with its pid
   * (host pid namespace) before this resolves, when the plan has joinedBySpored and the seed
   * reports it early (a seed older than that never calls it). `on.hooks`: the sandbox paused
   * for its runtime hooks (plan.hooks.pause), with its host pid; the caller runs them, then
   * resume() or abort(). A plan with hooks on a seed without the 'hooks' feature throws
   * FailedPrecondition: its old child code would set up the container without them; so does
   * a plan with a user namespace on a seed without 'userns'.
   */
  async spawn(key: string, plan: SpawnPlan, on?: SpawnEvents): Promise<SpawnResult> {
    if (plan.kind === 'init' && plan.hooks && !this.features.includes('hooks')) {
      throw new FailedPrecondition('this node\'s root seed predates OCI hooks (it outlived a spored upgrade); restart spored with no containers running, or remove the hooks');
    }
    if (plan.kind === 'init' && plan.userNs && !this.features.includes('userns')) {
      throw new FailedPrecondition('this node\'s root seed predates user namespaces in OCI specs (it outlived a spored upgrade); restart spored with no containers running, or remove the user namespace');
    }
    // the args, env and hooks' secrets go past the seed (protocol.ts, sealedBody); an older
    // seed's children cannot read them so (attach warns of such a seed)
    let sealed = -1;
    let bodyBytes = 0;
    if (this.features.includes('sealed-process')) {
      sealed = sys.memfdCreate('spore-process', sys.MFD.CLOEXEC);
      const body = sealedBody(plan);
      bodyBytes = body.length;
      try { sys.write(sealed, body); } catch (e) { sys.close(sealed); throw e; }
      plan = sealPlan(plan, `/proc/${process.pid}/fd/${sealed}`);
    }
    let r: SeedReply;
    let direct: DirectOutcome | null = null;
    try {
      // a container shell spored hands the plan to itself, when one fits; else the seed forks
      direct = plan.kind === 'init' ? await this.spawnDirect(key, plan, on) : null;
      r = direct ? direct.reply : await this.request({ op: 'spawn', key, plan }, on);
      // a child's failure text is in the memfd after the body, not in the reply (container-init.ts)
      if (!r.ok && r.error === '' && sealed >= 0) {
        const text = Buffer.alloc(64 * 1024);
        let n = 0;
        try { n = sys.pread(sealed, text, BigInt(bodyBytes)); } catch { /* the reply's phase and errno stay */ }
        if (n > 0) r = { ...r, error: text.subarray(0, n).toString('utf8') };
      }
    } finally {
      if (sealed >= 0) sys.close(sealed);
    }
    if (!r.ok) throw new SeedError(r.phase, r.error, r.errno);
    return {
      pid: r.pid ?? 0, warnings: r.warnings ?? [], timings: r.timings ?? {},
      exitsBefore: direct ? direct.exitsBefore : this.exitsBeforeReply.get(r) ?? this.lastExitSeq,
      ...(typeof r.console === 'number' ? { console: r.console } : {}),
      ...(r.pipes && Number.isInteger(r.pipes.start) && Number.isInteger(r.pipes.status) ? { pipes: { start: r.pipes.start, status: r.pipes.status, ...(r.pipes.ino ? { ino: r.pipes.ino } : {}) } } : {}),
      ...(direct?.own ? { own: direct.own } : {}),
    };
  }

  /**
   * An idle shell the seed offered ('shell-claims'): duplicates of its plan, start and status
   * pipes (pidfd_getfd from the seed), each checked against the inode the offer names, and a
   * pidfd of the shell (a kill never hits a reused pid). A shell gone meanwhile is not kept.
   */
  private adoptShell(pid: number, fds: { plan: number; start: number; status: number }, ahead: string[], ino: { plan: number; start: number; status: number }): void {
    if (!this.direct || this.idleShells.has(pid)) return;
    const taken: number[] = [];
    try {
      if (this.seedPidfd < 0) this.seedPidfd = sys.pidfdOpen(this.pid);
      for (const [role, fd] of [['plan', fds.plan], ['start', fds.start], ['status', fds.status]] as const) {
        const mine = sys.pidfdGetfd(this.seedPidfd, fd);
        taken.push(mine);
        if (fstatSync(mine).ino !== ino[role]) throw new Error(`the seed's fd ${fd} is no longer shell ${pid}'s ${role} pipe`);
      }
      const pidfd = sys.pidfdOpen(pid);
      const [plan, start, status] = taken as [number, number, number];
      this.idleShells.set(pid, { pid, plan, start, status, pidfd, ahead: ahead as EarlyStep[] });
    } catch {
      // gone (or going: its shellGone follows); the seed forks another
      for (const fd of taken) sys.close(fd);
    }
  }

  /** Forget an offered shell (gone, or the link closed): close this process's copies. */
  private dropShell(pid: number): void {
    const sh = this.idleShells.get(pid);
    if (!sh) return;
    this.idleShells.delete(pid);
    for (const fd of [sh.plan, sh.start, sh.status, sh.pidfd]) sys.close(fd);
  }

  /**
   * `plan` handed to an idle shell by this process ('shell-claims'): the claim goes to the
   * seed first (accepted, it keeps the start and status pipes as a sandbox of `key`, for a
   * restarted spored and for Start), then the plan (with a nonce) onto the shell's pipe, and
   * the set-up's status lines are read here until ready; the seed sees neither. Ready counts
   * only once the claim is accepted. Null: no shell fits, or the shell was not this plan's
   * after all (gone before it took the plan, another plan's, the claim refused): killed, its
   * claim undone, and the caller asks the seed to fork.
   */
  private async spawnDirect(key: string, plan: InitPlan, on?: SpawnEvents): Promise<DirectOutcome | null> {
    const link = this.link;
    if (!this.direct || !link || link.closed || this.idleShells.size === 0) return null;
    // the one that made the most of the plan's steps ahead
    let sh: OwnShell | undefined;
    for (const c of this.idleShells.values()) if (shellFits(plan, c.ahead) && (!sh || c.ahead.length > sh.ahead.length)) sh = c;
    if (!sh) return null;
    const t0 = performance.now();
    const nonce = randomBytes(12).toString('base64url');
    const frame = shellFrame({ ...plan, nonce });
    if (frame === null) return null; // too large for the shell's pipe: the seed forks it
    this.idleShells.delete(sh.pid);
    const exitsBefore = this.lastExitSeq;
    const closeAll = (): void => { for (const fd of [sh.plan, sh.start, sh.status, sh.pidfd]) if (fd >= 0) sys.close(fd); };
    const kill = (): void => { try { sys.pidfdSignal(sh.pidfd, 9); } catch { /* gone */ } };
    // answered once the seed has it; the plan goes to the shell meanwhile
    const claimed = this.request({ op: 'claim', key, pid: sh.pid, shape: earlyStepsOf(plan) });
    /** undo an accepted claim: the seed drops the sandbox (a Create of this id again must not meet it) */
    const unclaim = async (): Promise<void> => { if ((await claimed).ok) await this.abort(key).catch(() => undefined); };
    /** not this plan's shell after all: killed, its pipes closed, its claim undone; the seed forks the plan */
    const giveUp = async (): Promise<null> => { kill(); closeAll(); await unclaim(); return null; };
    // A plan with hooks waits for the claim before the shell sees it: its set-up runs
    // createContainer hooks (and pauses for spored to run prestart and createRuntime), which
    // must run once, and a refused claim's plan is forked and set up again (red team, helper-67)
    if (plan.hooks && (plan.hooks.pause || plan.hooks.createContainer.length > 0) && !(await claimed).ok) return giveUp();
    try {
      sys.write(sh.plan, frame); // non-blocking, into an empty 64 KiB pipe (MAX_SHELL_FRAME)
    } catch {
      // it died idle (EPIPE): undo the claim, then fork
      return giveUp();
    }
    sys.close(sh.plan);
    sh.plan = -1;
    const handoffMs = performance.now() - t0;
    if (plan.joinedBySpored === true && plan.lateCgroup === true) on?.pid?.(sh.pid);
    const d: DirectSpawn = { pid: sh.pid, start: sh.start, aborted: false, rearm: () => undefined };
    this.directs.set(key, d);
    const allowance = setupAllowanceMs(plan);
    let timer: NodeJS.Timeout | undefined;
    let timedOut = false;
    d.rearm = (): void => {
      clearTimeout(timer);
      if (allowance !== Infinity) timer = setTimeout(() => { timedOut = true; kill(); }, allowance);
    };
    d.rearm();
    // a duplicate is read (and closed with its socket); sh.status stays for Start
    const sock = new net.Socket({ fd: sys.dupFd(sh.status), readable: true, writable: false });
    let ours = false;
    const st = await new Promise<ChildStatus | null | 'foreign'>((resolve) => {
      let done = false;
      const finish = (v: ChildStatus | null | 'foreign'): void => { if (!done) { done = true; resolve(v); } };
      onJsonLines<ChildStatus>(sock, (m) => {
        if (done) return;
        // another plan's report: a shell an earlier spored wrote to before it died
        if (!('n' in m) || m.n !== nonce) { finish('foreign'); return; }
        ours = true;
        if (m.s === 'hooks') {
          // spored runs prestart and createRuntime; resume() writes the byte (and re-arms)
          clearTimeout(timer);
          on?.hooks?.(sh.pid);
          return;
        }
        finish(m);
      }, (line) => finish({ s: 'error', phase: 'protocol', message: `bad status line: ${line.slice(0, 200)}` }));
      sock.on('end', () => finish(null));
      sock.on('error', () => finish(null));
      sock.on('close', () => finish(null));
    });
    clearTimeout(timer);
    sock.destroy();
    this.directs.delete(key);
    // Not answered before the seed has the claim: refused, the seed may have discarded the
    // shell (its count went down, its shape changed) while the claim waited in the link, and
    // would never report the exit of a shell it counts as its own idle one.
    const accepted = (await claimed).ok;
    const fail = async (phase: string, error: string, errno?: number): Promise<DirectOutcome> => {
      kill();
      closeAll();
      await unclaim();
      return { reply: { type: 'reply', seq: 0, ok: false, error, phase, ...(errno !== undefined ? { errno } : {}) }, exitsBefore };
    };
    if (d.aborted) return fail('seed', 'aborted');
    // (the seed's no more, another plan's, or it ended before it took the plan)
    if (!accepted || st === 'foreign' || (st === null && !ours && !timedOut)) return giveUp();
    if (st === null) return fail('setup', timedOut ? `setup did not finish in ${allowance} ms; killed` : 'sandbox process exited during setup');
    if (st.s === 'error') return fail(st.phase, st.message, st.errno);
    if (st.s !== 'ready') return fail('protocol', `unexpected status ${st.s} from a container shell`);
    sys.close(sh.pidfd);
    const { planAt: _planAt, ...marks } = st.t;
    return {
      reply: {
        type: 'reply', seq: 0, ok: true, pid: sh.pid, warnings: st.warnings,
        timings: { shell: 1, direct: 1, handoffMs, ...marks, readyMs: performance.now() - t0 },
        ...(typeof st.console === 'number' ? { console: st.console } : {}),
      },
      exitsBefore,
      own: { start: sh.start, status: sh.status },
    };
  }

  /**
   * Let a spawned sandbox exec its process; resolves once execve succeeded, or with
   * `atExec` right before it (the seed's 'start-at-exec'; else as without): what fails after
   * that is the process's exit status. Not for a container with poststart hooks.
   */
  async startProcess(key: string, o: { atExec?: boolean } = {}): Promise<number> {
    const r = await this.request({ op: 'start', key, ...(o.atExec && this.features.includes('start-at-exec') ? { atExec: true } : {}) });
    if (!r.ok) throw new SeedError(r.phase, r.error, r.errno);
    return r.pid ?? 0;
  }

  /** Fork an L1 language seed from the root seed; returns its pid. */
  async spawnSeed(language: 'node' | 'python', id: string, socket: string, pythonBin: string, zygote: string): Promise<number> {
    const r = await this.request({ op: 'spawnSeed', language, id, socket, pythonBin, zygote });
    if (!r.ok) throw new SeedError(r.phase, r.error, r.errno);
    return r.pid ?? 0;
  }

  /** How many container shells the seed keeps ready (0: none; the extra ones end now). No answer. */
  setShells(count: number): void {
    this.link?.send({ op: 'shells', seq: 0, count, ...(this.direct ? { direct: true } : {}) });
  }

  /**
   * A round trip to the seed: it sends each exit as it reaps it, on the same link and before
   * the reply to any later request, so once this resolves every exit it reaped before has
   * been delivered (spored's sweep of lost processes waits on it). Old seeds know `ping` too.
   */
  async sync(): Promise<void> {
    const r = await this.request({ op: 'ping' });
    if (!r.ok) throw new SeedError(r.phase, r.error, r.errno);
  }

  /** Let a sandbox paused for its runtime hooks go on with its set-up (spawn's `on.hooks`). */
  async resume(key: string): Promise<void> {
    const d = this.directs.get(key);
    if (d) {
      // a direct spawn: its start pipe is ours (the byte is the child's "go on")
      sys.write(d.start, Buffer.from([1]));
      d.rearm();
      return;
    }
    const r = await this.request({ op: 'resume', key });
    if (!r.ok) throw new SeedError(r.phase, r.error, r.errno);
  }

  /** spored started `key` itself (protocol.ts `started`): the seed lets go of it. Nothing on a seed without 'started-by-spored'. */
  started(key: string): void {
    if (this.features.includes('started-by-spored')) this.link?.send({ op: 'started', key });
  }

  /** Kill a spawned sandbox that never started. */
  async abort(key: string): Promise<void> {
    const d = this.directs.get(key);
    if (d) d.aborted = true; // (its set-up's end is then this abort, not a shell to fork again)
    await this.request({ op: 'abort', key });
  }

  /** Let go of the seed without ending it (a spored under a keeper handing over). */
  detach(): void {
    this.stopping = true;
    this.link?.close('spored detached');
  }

  /** End the seed (and with it every sandbox still waiting for Start). */
  async stop(): Promise<void> {
    this.stopping = true;
    const pid = this.pid;
    this.link?.close('spored stopping');
    const child = this.child;
    if (child) {
      await new Promise<void>((resolve) => {
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
        setTimeout(() => child.kill('SIGKILL'), 2000).unref();
      });
      if (this.ownSocket) rmSync(this.ownSocket, { force: true });
      return;
    }
    // attached to a seed another spored started: not our child, end it by pid
    if (pid) { try { process.kill(pid, 'SIGTERM'); } catch { /* gone */ } }
  }
}
