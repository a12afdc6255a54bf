// spore-keeper: one small, long-lived process per run dir (per containerd) that makes
// spored's death invisible. It
//   - holds containerd's ttrpc connections (keeper/proxy.ts): containerd connects to the
//     keeper's socket, never to spored's, so a dying spored closes nothing containerd sees;
//     a Connect, Pids or State spored leaves unanswered for 1 s it answers itself from the
//     task records (keeper/stand-in.ts), so a containerd (or its CRI plugin) restarted while
//     spored is down or hung does not take the containers and pods for dead;
//   - is the child subreaper of everything spored starts: containers and their execs whose
//     parent (the root seed) died with spored are reparented here, and their exit statuses
//     are kept until the next spored takes them;
//   - runs spored as its child and starts a new one at once when it dies;
//   - tells each spored, over its control socket, what it reaped while spored was away;
//   - keeps custody of the file descriptors that carry containers' stdio (pty masters, the
//     client's FIFO ends, exec output pipes) and the listening sockets of the HTTP gateway
//     and FRI: spored parks each one here when it opens it (the keeper takes a duplicate
//     with pidfd_getfd), so a dying spored hangs up no terminal, ends no stream and refuses
//     no connection, and the next spored takes them back the same way.
// It does no container or function work of its own, so there is little in it to fail; it
// raises spored's oom_score_adj above its own, so the OOM killer takes spored (which it
// replaces) rather than the keeper.
import net from 'node:net';
import { chmodSync, existsSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as sys from '../sys/libc.js';
import { HeldConnection } from './proxy.js';
import { KeeperStandIn, STAND_IN_AFTER_MS } from './stand-in.js';
import { KEEPER_PROTOCOL, isListenerKey, type KeeperMessage, type ReapedExit, type SporedMessage } from '../protocols/keeper.js';

export type { KeeperMessage, ReapedExit, SporedMessage };

/** Longest control line accepted from spored. */
const MAX_CONTROL_LINE = 64 * 1024;


export interface KeeperOptions {
  runDir: string;
  /** the command that runs spored (argv[0] and its arguments); the keeper adds --ttrpc-socket and --keeper-socket */
  spored: string[];
  env?: NodeJS.ProcessEnv;
  /** extra oom_score_adj given to spored (and so to everything it starts), default 200 */
  oomBias?: number;
  /** containerd's requests are held at most this long while no spored runs (ms, default 10 s) */
  maxDownMs?: number;
  /** a Connect, Pids or State spored has not answered in this long is answered by the keeper (ms, default STAND_IN_AFTER_MS: keeper/stand-in.ts) */
  standInAfterMs?: number;
  log?: (msg: string, fields?: Record<string, unknown>) => void;
  /**
   * spored refused its flags or environment (exit status 2, daemon/main.ts) before any spored
   * of this keeper ever came up: retrying cannot help, and the command that started the
   * keeper would never return. Called instead of a restart; the caller stops the keeper.
   * (Once a spored has come up, containers may be running: an exit 2 is retried as any other.)
   */
  onUsageError?: () => void;
}

/** How long an exit sent to spored is sent again to the next one (ms), and at most how many. */
const RECENT_EXITS_MS = 30_000;
const RECENT_EXITS_MAX = 4096;

export class Keeper {
  private server: net.Server | null = null;
  private control: net.Server | null = null;
  private readonly held = new Set<HeldConnection>();
  private sporedPid = 0;
  private generation = 0;
  private stopping = false;
  /** exits reaped here that no spored has taken yet */
  private readonly reaped: ReapedExit[] = [];
  /**
   * exits sent to a spored in the last RECENT_EXITS_MS: the next spored gets them again in its
   * hello. A spored that is going away (its root seed died and it stops) can take an exit and
   * end before recording it: the next one then reported the process's status as lost (255;
   * helper-56). spored ignores an exit it already has.
   */
  private recent: ReapedExit[] = [];
  private controlConn: net.Socket | null = null;
  private sporedPidfd = -1;
  private startedAt = 0;
  private backoffMs = 50;
  /** the running spored said it serves (SporedMessage ready) */
  private sporedUp = false;
  /** some spored of this keeper came up */
  private everUp = false;
  /** while no spored is up: when the held listening sockets are let go (maxDownMs) */
  private listenersTimer: NodeJS.Timeout | null = null;
  /** fds held for spored, by key; the numbers are the keeper's own */
  private readonly parked = new Map<string, number>();
  readonly ttrpcSocket: string;
  readonly sporedSocket: string;
  readonly controlSocket: string;

  /** containerd's Connect, Pids and State answered from the task records when spored does not */
  private readonly standIn: KeeperStandIn;

  constructor(private readonly o: KeeperOptions) {
    this.standIn = new KeeperStandIn(o.runDir, process.pid, o.standInAfterMs ?? STAND_IN_AFTER_MS);
    this.ttrpcSocket = join(o.runDir, 'ttrpc.sock');
    this.sporedSocket = join(o.runDir, 'spored-ttrpc.sock');
    this.controlSocket = join(o.runDir, 'keeper.sock');
  }

  private log(msg: string, fields: Record<string, unknown> = {}): void {
    this.o.log?.(msg, fields);
  }

  async start(): Promise<void> {
    sys.prctl(sys.PR.SET_CHILD_SUBREAPER, 1);
    process.on('SIGCHLD', () => this.reap());
    this.control = await listen(this.controlSocket, (c) => this.onControl(c));
    this.server = await listen(this.ttrpcSocket, (c) => {
      const h = new HeldConnection(c, () => connectTo(this.sporedSocket), {
        maxDownMs: this.o.maxDownMs ?? 10_000,
        downMessage: `spored did not come back within ${Math.round((this.o.maxDownMs ?? 10_000) / 1000)} s; see its log (--log / SPORE_LOG; <run-dir>/spored.log when containerd started it)`,
        standIn: this.standIn,
        onEvent: (e) => {
          if (e.kind === 'stood-in') this.log('spored did not answer containerd\'s Connect, Pids or State in time: the keeper answered it from the task record', { sporedUp: this.sporedUp });
          if (e.kind === 'replayed') this.log('held requests sent to spored', { streams: e.streams });
          if (e.kind === 'failed') this.log('spored is down too long: held requests answered UNAVAILABLE', { streams: e.streams });
        },
      });
      this.held.add(h);
      c.once('close', () => this.held.delete(h));
    });
    this.spawnSpored();
  }

  /** The keeper's own state, for `spore` and tests. */
  status(): { keeperPid: number; sporedPid: number; generation: number; heldConnections: number; pendingRequests: number; reapedWaiting: number; parkedFds: number } {
    let pending = 0;
    for (const h of this.held) pending += h.pending;
    return { keeperPid: process.pid, sporedPid: this.sporedPid, generation: this.generation, heldConnections: this.held.size, pendingRequests: pending, reapedWaiting: this.reaped.length, parkedFds: this.parked.size };
  }

  /**
   * posix_spawn spored (not child_process: every child of the keeper is reaped in one place,
   * here; not fork: the keeper has threads, and a forked child that runs JavaScript before its
   * execve can wait forever on a lock another thread held at the fork, seen as a spored that
   * never came back after 1 of ~330 restarts).
   */
  private spawnSpored(): void {
    if (this.stopping) return;
    this.generation++;
    const [cmd, ...args] = this.o.spored;
    const argv = [cmd as string, ...args, '--ttrpc-socket', this.sporedSocket, '--keeper-socket', this.controlSocket];
    const env = Object.entries(this.o.env ?? process.env).filter(([, v]) => v !== undefined).map(([k, v]) => `${k}=${v as string}`);
    let pid: number;
    try {
      pid = sys.spawnProgram(argv[0] as string, argv, env);
    } catch (e) {
      // as a child that could not exec (which a fork reported as an exit 127): one that died
      // young, tried again ever more slowly, the held sockets let go meanwhile
      this.backoffMs = Math.min(5000, Math.max(100, this.backoffMs * 2));
      this.armListenersTimer();
      this.log('spored could not be started', { err: (e as Error).message, restartInMs: this.backoffMs });
      setTimeout(() => this.spawnSpored(), this.backoffMs);
      return;
    }
    this.sporedPid = pid;
    this.startedAt = Date.now();
    this.sporedUp = false;
    if (this.sporedPidfd >= 0) sys.close(this.sporedPidfd);
    try { this.sporedPidfd = sys.pidfdOpen(pid); } catch { this.sporedPidfd = -1; }
    // raising another process's score needs no CAP_SYS_RESOURCE; its children inherit it
    try {
      const own = Number(readFileSync('/proc/self/oom_score_adj', 'utf8'));
      writeFileSync(`/proc/${pid}/oom_score_adj`, String(Math.min(1000, own + (this.o.oomBias ?? 200))));
    } catch { /* best effort */ }
    this.log('spored started', { pid, generation: this.generation });
  }

  /**
   * Reap every child: spored (started again at once), and orphans (containers and execs
   * reparented here), whose exits wait for the next spored.
   */
  private reap(): void {
    for (;;) {
      const r = sys.reapOne();
      if (!r) return;
      if (r.pid === this.sporedPid) {
        const lived = Date.now() - this.startedAt;
        // a spored that dies before it came up (bad flags, a broken install) is retried ever
        // more slowly; one that came up and was killed is replaced at once
        this.backoffMs = !this.sporedUp && lived < 2000 ? Math.min(5000, Math.max(100, this.backoffMs * 2)) : 100;
        this.sporedUp = false;
        this.armListenersTimer();
        const usageError = !this.everUp && (r.status & 0x7f) === 0 && ((r.status >> 8) & 0xff) === 2 && this.o.onUsageError !== undefined;
        this.log('spored exited', { pid: r.pid, status: r.status, livedMs: lived, restartInMs: this.stopping || usageError ? null : this.backoffMs });
        this.sporedPid = 0;
        if (usageError && !this.stopping) {
          this.log('spored refused its flags or environment (exit status 2, its message is on stderr); the keeper stops rather than retry');
          this.o.onUsageError?.();
          continue;
        }
        if (!this.stopping) setTimeout(() => this.spawnSpored(), this.backoffMs);
        continue;
      }
      const exit: ReapedExit = { pid: r.pid, status: r.status, at: new Date().toISOString() };
      this.log('reaped an orphan', { pid: r.pid, status: r.status });
      if (this.controlConn && !this.controlConn.destroyed) {
        this.controlConn.write(JSON.stringify({ t: 'reaped', exit } satisfies KeeperMessage) + '\n');
        const now = Date.now();
        this.recent = [...this.recent.filter((e) => now - Date.parse(e.at) < RECENT_EXITS_MS), exit].slice(-RECENT_EXITS_MAX);
      } else this.reaped.push(exit);
    }
  }

  /**
   * spored connects here at start: it gets what happened while it was away and what is held
   * for it, then live reaps; it parks and unparks fds.
   */
  private onControl(c: net.Socket): void {
    this.controlConn?.destroy();
    this.controlConn = c;
    const hello: KeeperMessage = {
      t: 'hello', protocol: KEEPER_PROTOCOL, keeperPid: process.pid, generation: this.generation,
      reaped: [...this.recent.filter((e) => Date.now() - Date.parse(e.at) < RECENT_EXITS_MS), ...this.reaped.splice(0)],
      parked: [...this.parked].map(([key, fd]) => ({ key, fd })), features: ['open', 'sync'],
    };
    c.write(JSON.stringify(hello) + '\n');
    let buf = '';
    c.setEncoding('utf8');
    c.on('data', (chunk: string) => {
      buf += chunk;
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        this.onSporedMessage(c, line);
      }
      if (buf.length > MAX_CONTROL_LINE) { this.log('control line too long; link closed'); c.destroy(); }
    });
    c.on('error', () => undefined);
    c.on('close', () => { if (this.controlConn === c) this.controlConn = null; });
  }

  private onSporedMessage(c: net.Socket, line: string): void {
    let m: SporedMessage;
    try { m = JSON.parse(line) as SporedMessage; } catch { this.log('bad control line from spored', { line: line.slice(0, 120) }); return; }
    if (m.t === 'park' && typeof m.key === 'string' && Number.isInteger(m.fd)) {
      let reply: KeeperMessage;
      try {
        const fd = sys.pidfdGetfd(this.sporedPidfd, m.fd);
        const old = this.parked.get(m.key);
        if (old !== undefined) sys.close(old);
        this.parked.set(m.key, fd);
        reply = { t: 'parked', key: m.key, ok: true };
      } catch (e) {
        reply = { t: 'parked', key: m.key, ok: false, error: (e as Error).message };
      }
      c.write(JSON.stringify(reply) + '\n');
    } else if (m.t === 'open' && typeof m.key === 'string' && typeof m.path === 'string' && Number.isInteger(m.flags)) {
      let reply: KeeperMessage;
      try {
        const fd = sys.open(m.path, m.flags | sys.O.CLOEXEC);
        const old = this.parked.get(m.key);
        if (old !== undefined) sys.close(old);
        this.parked.set(m.key, fd);
        reply = { t: 'parked', key: m.key, ok: true, fd };
      } catch (e) {
        reply = { t: 'parked', key: m.key, ok: false, error: (e as Error).message };
      }
      c.write(JSON.stringify(reply) + '\n');
    } else if (m.t === 'sync' && Number.isInteger(m.id)) {
      // every exit reaped before this answer goes out ahead of it (reap() writes each at once)
      this.reap();
      c.write(JSON.stringify({ t: 'synced', id: m.id } satisfies KeeperMessage) + '\n');
    } else if (m.t === 'ready') {
      this.sporedUp = true;
      this.everUp = true;
      if (this.listenersTimer) { clearTimeout(this.listenersTimer); this.listenersTimer = null; }
    } else if (m.t === 'unpark' && typeof m.key === 'string') {
      const fd = this.parked.get(m.key);
      if (fd !== undefined) { sys.close(fd); this.parked.delete(m.key); }
    }
  }

  /**
   * No spored is up: connections to the gateway and FRI wait in the listening sockets held
   * here, which is right for a restart but not for a spored that cannot come up. After
   * maxDownMs without one they are let go (clients are then refused, as with no spored at
   * all); the next spored that comes up binds them anew.
   */
  private armListenersTimer(): void {
    if (this.listenersTimer || this.stopping) return;
    this.listenersTimer = setTimeout(() => {
      this.listenersTimer = null;
      if (this.sporedUp || this.stopping) return;
      const letGo: string[] = [];
      for (const [key, fd] of this.parked) {
        if (!isListenerKey(key)) continue;
        try { sys.close(fd); } catch { /* closed */ }
        this.parked.delete(key);
        letGo.push(key);
      }
      if (letGo.length) this.log('no spored came up: let go of the listening sockets', { keys: letGo, downMs: this.o.maxDownMs ?? 10_000 });
    }, this.o.maxDownMs ?? 10_000);
    this.listenersTimer.unref();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    if (this.listenersTimer) { clearTimeout(this.listenersTimer); this.listenersTimer = null; }
    for (const h of this.held) h.close();
    const pid = this.sporedPid;
    if (pid) {
      this.controlConn?.write(JSON.stringify({ t: 'stop' } satisfies KeeperMessage) + '\n');
      try { process.kill(pid, 'SIGTERM'); } catch { /* gone */ }
      const until = Date.now() + 20_000;
      while (this.sporedPid === pid && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    }
    await Promise.all([this.server, this.control].map((s) => new Promise<void>((r) => (s ? s.close(() => r()) : r()))));
    for (const p of [this.ttrpcSocket, this.controlSocket]) rmSync(p, { force: true });
    for (const fd of this.parked.values()) sys.close(fd);
    this.parked.clear();
  }
}

/** Listen on a unix socket owned by root only, bound under a temporary name then renamed in place. */
async function listen(path: string, onConn: (c: net.Socket) => void): Promise<net.Server> {
  const tmp = `${path}.${process.pid}.tmp`;
  rmSync(tmp, { force: true });
  const s = net.createServer(onConn);
  await new Promise<void>((resolve, reject) => { s.once('error', reject); s.listen(tmp, () => resolve()); });
  chmodSync(tmp, 0o600);
  if (existsSync(path)) rmSync(path, { force: true });
  renameSync(tmp, path);
  return s;
}

function connectTo(path: string): Promise<net.Socket | null> {
  return new Promise((resolve) => {
    const s = net.connect(path);
    s.once('connect', () => { s.removeAllListeners('error'); resolve(s); });
    s.once('error', () => resolve(null));
  });
}
