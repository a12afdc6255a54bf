// spored's end of one seed's link (seeds/protocol.ts): JSON lines in, JSON lines with
// SCM_RIGHTS fds out. Reads go through libuv (a net.Socket on the fd); writes go through
// sendmsg(2) on the same fd, so messages can carry fds (libuv cannot send those on a
// plain stream). A write that meets a full socket buffer is queued and retried in order.
import net from 'node:net';
import * as sys from '../sys/libc.js';
import { MAX_SEED_BYTES_PER_SECOND, MAX_SEED_LINE, MAX_SEED_MESSAGES_PER_SECOND, checkFromSeed, type FromSeed, type ToSeed } from '../seeds/protocol.js';

interface Pending { data: Buffer; fds: number[] }

export class SeedLink {
  private readonly socket: net.Socket;
  private readonly queue: Pending[] = [];
  private retry: NodeJS.Timeout | null = null;
  private closedFlag = false;
  private reason = 'seed link closed';
  readonly fd: number;

  /**
   * `source` is a connected unix stream socket this link now owns (closed with the link):
   * a raw fd (a socketpair end spored made) or an accepted net.Socket (an L1 seed).
   * `onMessage` gets each parsed line; `onClose` runs once when the seed's end is gone or
   * the link is closed here. A line over MAX_SEED_LINE, one that is not JSON or not a message
   * of the protocol (checkFromSeed), or more than MAX_SEED_MESSAGES_PER_SECOND messages or
   * MAX_SEED_BYTES_PER_SECOND bytes in a second close the link: the peer is not speaking the protocol (a function seed's init code
   * can write on it), and spored treats the seed as gone.
   */
  constructor(source: number | net.Socket, onMessage: (m: FromSeed) => void, onClose: (why: string) => void) {
    this.socket = typeof source === 'number' ? new net.Socket({ fd: source, readable: true, writable: false }) : source;
    this.fd = typeof source === 'number' ? source : SeedLink.fdOf(source);
    let buf = '';
    let windowStart = 0;
    let inWindow = 0;
    let bytesInWindow = 0;
    this.socket.setEncoding('utf8');
    this.socket.on('data', (chunk: string) => {
      const t = performance.now();
      if (t - windowStart >= 1000) { windowStart = t; inWindow = 0; bytesInWindow = 0; }
      bytesInWindow += chunk.length;
      if (bytesInWindow > MAX_SEED_BYTES_PER_SECOND) { this.close(`seed sent over ${MAX_SEED_BYTES_PER_SECOND} bytes in a second`); return; }
      buf += chunk;
      for (let nl = buf.indexOf('\n'); nl >= 0 && !this.closedFlag; nl = buf.indexOf('\n')) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (++inWindow > MAX_SEED_MESSAGES_PER_SECOND) { this.close(`seed sent over ${MAX_SEED_MESSAGES_PER_SECOND} messages in a second`); return; }
        let parsed: unknown;
        try { parsed = JSON.parse(line); } catch { this.close(`bad line from seed: ${JSON.stringify(line.slice(0, 120))}`); return; }
        const c = checkFromSeed(parsed);
        if (!c.ok) { this.close(`bad message from seed (${c.why})`); return; }
        onMessage(c.m);
      }
      if (buf.length > MAX_SEED_LINE) this.close(`seed line over ${MAX_SEED_LINE} bytes`);
    });
    this.socket.on('error', () => undefined);
    this.socket.on('close', () => {
      this.closedFlag = true;
      this.dropQueue();
      onClose(this.reason);
    });
  }

  /** Wrap an accepted net.Socket (an L1 seed that connected to seeds.sock). */
  static fdOf(socket: net.Socket): number {
    const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
    if (typeof fd !== 'number' || fd < 0) throw new Error('socket has no fd');
    return fd;
  }

  get closed(): boolean {
    return this.closedFlag;
  }

  /**
   * Send one message; `fds` travel with it and are closed here once sent (or when the link
   * closes first). Throws nothing: a dead link shows up as onClose.
   */
  send(m: ToSeed, fds: number[] = []): void {
    if (this.closedFlag) { for (const f of fds) sys.close(f); return; }
    this.queue.push({ data: Buffer.from(JSON.stringify(m) + '\n'), fds });
    this.flush();
  }

  private flush(): void {
    while (this.queue.length && !this.closedFlag) {
      const p = this.queue[0] as Pending;
      let n: number;
      try {
        n = sys.sendWithFds(this.fd, p.data, p.fds, true);
      } catch (e) {
        this.close(`send to seed failed: ${(e as Error).message}`);
        return;
      }
      if (n < 0) { this.schedule(); return; }
      for (const f of p.fds) sys.close(f);
      p.fds = [];
      if (n < p.data.length) { p.data = p.data.subarray(n); this.schedule(); return; }
      this.queue.shift();
    }
  }

  private schedule(): void {
    if (this.retry) return;
    this.retry = setTimeout(() => { this.retry = null; this.flush(); }, 1);
  }

  private dropQueue(): void {
    if (this.retry) { clearTimeout(this.retry); this.retry = null; }
    for (const p of this.queue.splice(0)) for (const f of p.fds) sys.close(f);
  }

  close(why = 'closed by spored'): void {
    if (this.closedFlag) return;
    this.closedFlag = true;
    this.reason = why;
    this.dropQueue();
    this.socket.destroy();
  }
}
