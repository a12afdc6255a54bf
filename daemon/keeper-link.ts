// spored's link to its keeper (keeper/keeper.ts), when it runs under one: JSON lines on
// the keeper's control socket. It hears what the keeper reaped while spored was away, and
// whether the keeper is stopping; it parks the fds that carry containers' stdio with the
// keeper and takes them back after a restart (task/custody.ts describes the contract).
import { EventEmitter } from 'node:events';
import net from 'node:net';
import * as sys from '../sys/libc.js';
import { FailedPrecondition, Unavailable } from '../sys/errors.js';
import { KEEPER_PROTOCOL, type KeeperMessage, type ReapedExit, type SporedMessage } from '../protocols/keeper.js';
import type { FdCustody } from '../task/custody.js';

export interface KeeperLinkEvents {
  reaped: [exit: ReapedExit];
  /** the keeper is stopping: stop fully */
  stop: [];
  /** the link is gone (the keeper died): parking is off from now on */
  lost: [];
}

export class KeeperLink extends EventEmitter<KeeperLinkEvents> implements FdCustody {
  readonly keeperPid: number;
  readonly generation: number;
  /** exits the keeper reaped while no spored listened */
  readonly reapedBefore: ReapedExit[];
  /** keeper-side fd numbers of what is parked, by key */
  private readonly parked: Map<string, number>;
  private readonly acks = new Map<string, { resolve: (fd: number | undefined) => void; reject: (e: Error) => void }[]>();
  /** optional requests the keeper understands (its hello) */
  private readonly features: ReadonlySet<string>;
  private keeperPidfd = -1;
  private closed = false;
  private syncSeq = 0;
  /** sync() round trips waiting for their 'synced', by id */
  private readonly syncs = new Map<number, () => void>();

  private constructor(private readonly socket: net.Socket, hello: Extract<KeeperMessage, { t: 'hello' }>) {
    super();
    this.keeperPid = hello.keeperPid;
    this.generation = hello.generation;
    this.reapedBefore = hello.reaped;
    this.parked = new Map(hello.parked.map((p) => [p.key, p.fd]));
    this.features = new Set(hello.features ?? []);
    try { this.keeperPidfd = sys.pidfdOpen(hello.keeperPid); } catch { this.keeperPidfd = -1; }
  }

  /** Connect and wait for the keeper's hello (at most `timeoutMs`). */
  static connect(path: string, timeoutMs = 5000): Promise<KeeperLink> {
    return new Promise((resolve, reject) => {
      const s = net.connect(path);
      let buf = '';
      let link: KeeperLink | null = null;
      const t = setTimeout(() => { s.destroy(); reject(new Unavailable(`the keeper at ${path} sent no hello within ${timeoutMs} ms`)); }, timeoutMs);
      s.setEncoding('utf8');
      s.on('data', (chunk: string) => {
        buf += chunk;
        for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          let m: KeeperMessage;
          try { m = JSON.parse(line) as KeeperMessage; } catch { continue; }
          if (!link) {
            if (m.t !== 'hello') continue;
            clearTimeout(t);
            if (m.protocol !== KEEPER_PROTOCOL) {
              s.destroy();
              reject(new FailedPrecondition(`the keeper speaks control protocol ${String(m.protocol)}, this spored ${KEEPER_PROTOCOL}: restart the keeper (stop spored fully) to upgrade across this change`));
              return;
            }
            link = new KeeperLink(s, m);
            resolve(link);
          } else {
            link.onMessage(m);
          }
        }
      });
      s.on('error', (e) => { clearTimeout(t); if (!link) reject(new Unavailable(`cannot reach the keeper at ${path}: ${e.message}`)); });
      s.on('close', () => { if (link) link.onClose(); });
    });
  }

  private onMessage(m: KeeperMessage): void {
    // spored listens only once its seed is attached and its tasks restored: an exit the
    // keeper reaps meanwhile (the root seed died, its containers' exits came to the keeper)
    // waits in reapedBefore with the hello's, or its status was lost (255: helper-56)
    if (m.t === 'reaped') { if (this.listenerCount('reaped') === 0) this.reapedBefore.push(m.exit); else this.emit('reaped', m.exit); }
    else if (m.t === 'synced') { this.syncs.get(m.id)?.(); this.syncs.delete(m.id); }
    else if (m.t === 'stop') this.emit('stop');
    else if (m.t === 'parked') {
      const list = this.acks.get(m.key);
      const w = list?.shift();
      if (list && list.length === 0) this.acks.delete(m.key);
      if (!w) return;
      if (m.ok) w.resolve(m.fd);
      else w.reject(new Error(`keeper could not take ${m.key}: ${m.error ?? 'unknown'}`));
    }
  }

  /**
   * One round trip to the keeper: resolves once every exit it reaped before it answered was
   * delivered ('reaped' events come first), so what looks ended unseen can be told from what
   * is on its way. Resolves at once with a keeper that predates 'sync', and after `timeoutMs`
   * or the link's loss in any case (the caller goes on with what it has).
   */
  sync(timeoutMs = 2000): Promise<void> {
    if (this.closed || !this.features.has('sync')) return Promise.resolve();
    const id = ++this.syncSeq;
    return new Promise<void>((resolve) => {
      const t = setTimeout(() => { this.syncs.delete(id); resolve(); }, timeoutMs);
      this.syncs.set(id, () => { clearTimeout(t); resolve(); });
      this.write({ t: 'sync', id });
    });
  }

  private onClose(): void {
    if (this.closed) return;
    this.closed = true;
    for (const done of this.syncs.values()) done();
    this.syncs.clear();
    for (const list of this.acks.values()) for (const w of list) w.reject(new Error('keeper link lost'));
    this.acks.clear();
    this.emit('lost');
  }

  private write(m: SporedMessage): void {
    if (!this.closed) this.socket.write(JSON.stringify(m) + '\n');
  }

  /**
   * Hand the keeper a duplicate of `fd` under `key`. spored keeps and may close its own at
   * any time: a private duplicate is held here until the keeper has taken its copy.
   */
  park(key: string, fd: number): Promise<void> {
    if (this.closed) return Promise.resolve();
    const dup = sys.dupFd(fd);
    this.parked.set(key, -1);
    const done = this.ackOf(key);
    this.write({ t: 'park', key, fd: dup });
    return done.then(() => undefined).finally(() => sys.close(dup));
  }

  private ackOf(key: string): Promise<number | undefined> {
    return new Promise<number | undefined>((resolve, reject) => {
      const list = this.acks.get(key) ?? [];
      list.push({ resolve, reject });
      this.acks.set(key, list);
    });
  }

  /**
   * Open `path` (flags as open(2); O_CLOEXEC added) held by the keeper from the start, and
   * return spored's own duplicate (close-on-exec). A keeper that predates 'open' (an upgrade
   * in progress): opened here and parked, as before. Rejects with the keeper's error (the
   * path is missing, say).
   */
  async open(key: string, path: string, flags: number): Promise<number> {
    if (this.closed || !this.features.has('open') || this.keeperPidfd < 0) {
      const fd = sys.open(path, flags | sys.O.CLOEXEC);
      await this.park(key, fd).catch(() => undefined);
      return fd;
    }
    this.parked.set(key, -1);
    const done = this.ackOf(key);
    this.write({ t: 'open', key, path, flags });
    const theirs = await done;
    if (theirs === undefined) throw new Error(`keeper held ${key} without saying where`);
    this.parked.set(key, theirs);
    return sys.pidfdGetfd(this.keeperPidfd, theirs);
  }

  /** The keeper closes what it holds under `key`. */
  release(key: string): void {
    this.parked.delete(key);
    this.write({ t: 'unpark', key });
  }

  /** Tell the keeper this spored came up (it serves containerd). */
  ready(): void {
    this.write({ t: 'ready' });
  }

  /** Keys parked by an earlier spored (from the hello), for restore. */
  keys(): string[] {
    return [...this.parked.keys()];
  }

  /** The keeper's fd number for what it holds under `key` (a new one once the key is parked or opened anew); undefined if none. */
  heldAs(key: string): number | undefined {
    const fd = this.parked.get(key);
    return fd === undefined || fd < 0 ? undefined : fd;
  }

  /** A duplicate, in spored, of what the keeper holds under `key` (close-on-exec); null if none. */
  reclaim(key: string): number | null {
    const fd = this.parked.get(key);
    if (fd === undefined || fd < 0 || this.keeperPidfd < 0) return null;
    try {
      return sys.pidfdGetfd(this.keeperPidfd, fd);
    } catch {
      return null;
    }
  }

  close(): void {
    this.closed = true;
    this.socket.destroy();
    if (this.keeperPidfd >= 0) { sys.close(this.keeperPidfd); this.keeperPidfd = -1; }
  }
}
