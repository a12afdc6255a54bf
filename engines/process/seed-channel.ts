// The link between spored and the root seed: a unix stream socket carrying messages as
// frames of a 4-byte big-endian length and the message in V8's serialization (node:v8), so
// Buffers and bigints in plans pass as they are, as they did over Node's 'advanced' IPC
// channel. A socket, not an IPC channel, because the seed outlives a spored that dies under
// a keeper and must be reachable by the next one (an IPC channel cannot be re-attached).
import net from 'node:net';
import v8 from 'node:v8';

/** Largest frame either side accepts (a plan is a few KiB; env and mounts stay far below). */
export const MAX_SEED_FRAME = 16 << 20;

export class SeedChannel<In, Out> {
  private buf: Buffer = Buffer.alloc(0);
  private closedFlag = false;

  /**
   * `socket` is connected and owned by the channel from now on. `onMessage` gets each
   * decoded message; `onClose` runs once, with the reason, when the peer is gone, a frame is
   * malformed or oversized, or close() is called.
   */
  constructor(private readonly socket: net.Socket, onMessage: (m: In) => void, private readonly onClose: (why: string) => void) {
    socket.on('data', (chunk: Buffer) => {
      this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
      while (!this.closedFlag && this.buf.length >= 4) {
        const n = this.buf.readUInt32BE(0);
        if (n > MAX_SEED_FRAME) { this.close(`seed frame of ${n} bytes is over ${MAX_SEED_FRAME}`); return; }
        if (this.buf.length < 4 + n) break;
        const body = this.buf.subarray(4, 4 + n);
        this.buf = this.buf.subarray(4 + n);
        let m: In;
        try {
          m = v8.deserialize(body) as In;
        } catch (e) {
          this.close(`malformed seed frame: ${(e as Error).message}`);
          return;
        }
        onMessage(m);
      }
    });
    socket.on('error', () => undefined);
    socket.on('close', () => this.finish('peer closed the seed link'));
  }

  get closed(): boolean {
    return this.closedFlag;
  }

  /** Send one message; false when the channel is closed (the message is dropped). */
  send(m: Out): boolean {
    if (this.closedFlag) return false;
    const body = v8.serialize(m);
    const head = Buffer.alloc(4);
    head.writeUInt32BE(body.length, 0);
    this.socket.write(Buffer.concat([head, body]));
    return true;
  }

  close(why = 'closed'): void {
    this.finish(why);
    this.socket.destroy();
  }

  private finish(why: string): void {
    if (this.closedFlag) return;
    this.closedFlag = true;
    this.onClose(why);
  }
}

/** Connect to a seed's socket; null when nothing listens there. */
export function connectSeed(path: string, timeoutMs = 2000): Promise<net.Socket | null> {
  return new Promise((resolve) => {
    const s = net.connect(path);
    const t = setTimeout(() => { s.destroy(); resolve(null); }, timeoutMs);
    s.once('connect', () => { clearTimeout(t); s.removeAllListeners('error'); resolve(s); });
    s.once('error', () => { clearTimeout(t); resolve(null); });
  });
}
