// The keeper's hold on containerd's ttrpc connections. containerd 1.6 takes a closed shim
// connection for a dead shim (it deletes the task), so the connections it opens must
// outlive spored: the keeper accepts them, and relays every frame, unchanged, to spored
// over a connection of its own per containerd connection. When spored goes away the
// containerd side stays open; requests spored had not answered, and any that arrive
// meanwhile, are held and sent again, in stream order, on a new connection once spored is
// back (its Task service answers a request it already carried out as it did the first time).
// A response to a request that was already answered is dropped, so containerd sees one
// answer per stream. Frames are relayed whole: a frame cut by spored's death is discarded.
import net from 'node:net';
import { FrameDecoder, FrameType, encodeFrame, type Frame } from '../runtime/ttrpc/frame.js';

/** How the keeper reaches spored: a fresh connection, or null while it is down. */
export type Connector = () => Promise<net.Socket | null>;

export interface HoldOptions {
  /** how often to try reaching spored again while it is down (ms) */
  retryMs?: number;
  /** most requests held for one containerd connection while spored is down */
  maxHeld?: number;
  onEvent?: (e: { kind: 'up' | 'down' | 'replayed' | 'dropped'; streams: number }) => void;
}

/** One containerd connection, held. */
export class HeldConnection {
  private upstream: net.Socket | null = null;
  private readonly fromContainerd = new FrameDecoder();
  private fromSpored = new FrameDecoder();
  /** requests sent to spored (or waiting to be), by stream id, in arrival order */
  private readonly open = new Map<number, Buffer>();
  private connecting = false;
  private closed = false;
  private retry: NodeJS.Timeout | null = null;

  constructor(private readonly downstream: net.Socket, private readonly connect: Connector, private readonly o: HoldOptions = {}) {
    downstream.on('data', (chunk: Buffer) => this.onRequestBytes(chunk));
    downstream.on('close', () => this.close());
    downstream.on('error', () => undefined);
    void this.reach();
  }

  /** Streams containerd is waiting on. */
  get pending(): number {
    return this.open.size;
  }

  get connected(): boolean {
    return this.upstream !== null;
  }

  private onRequestBytes(chunk: Buffer): void {
    for (const d of this.fromContainerd.push(chunk)) {
      if (d.kind !== 'frame') continue; // oversized: spored's own decoder would answer it; drop
      const f = d.frame;
      const bytes = encodeFrame(f, f.data);
      if (f.type === FrameType.Request) {
        if (this.open.size >= (this.o.maxHeld ?? 4096)) { this.o.onEvent?.({ kind: 'dropped', streams: 1 }); continue; }
        this.open.set(f.streamId, bytes);
      }
      if (this.upstream) this.upstream.write(bytes);
    }
  }

  private onResponseBytes(chunk: Buffer): void {
    for (const d of this.fromSpored.push(chunk)) {
      if (d.kind !== 'frame') continue;
      const f: Frame = d.frame;
      // one answer per stream: a late duplicate (answered before, replayed after) is dropped
      if (f.type === FrameType.Response && !this.open.delete(f.streamId)) continue;
      if (!this.downstream.destroyed) this.downstream.write(encodeFrame(f, f.data));
    }
  }

  /** Connect to spored (again) and send every request still open, in stream order. */
  private async reach(): Promise<void> {
    if (this.connecting || this.closed || this.upstream) return;
    this.connecting = true;
    let s: net.Socket | null = null;
    try { s = await this.connect(); } catch { s = null; }
    this.connecting = false;
    if (this.closed) { s?.destroy(); return; }
    if (!s) { this.scheduleRetry(); return; }
    this.upstream = s;
    this.fromSpored = new FrameDecoder();
    s.on('data', (c: Buffer) => this.onResponseBytes(c));
    s.on('error', () => undefined);
    s.on('close', () => {
      if (this.upstream !== s) return;
      this.upstream = null;
      this.o.onEvent?.({ kind: 'down', streams: this.open.size });
      this.scheduleRetry();
    });
    const replay = [...this.open.entries()].sort((a, b) => a[0] - b[0]);
    for (const [, bytes] of replay) s.write(bytes);
    this.o.onEvent?.({ kind: replay.length ? 'replayed' : 'up', streams: replay.length });
  }

  private scheduleRetry(): void {
    if (this.retry || this.closed) return;
    this.retry = setTimeout(() => { this.retry = null; void this.reach(); }, this.o.retryMs ?? 50);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.retry) clearTimeout(this.retry);
    this.upstream?.destroy();
    this.upstream = null;
    this.downstream.destroy();
  }
}
