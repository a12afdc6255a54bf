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
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { KeyValueSchema, RequestSchema, ResponseSchema } from '../fri-proto/gen/ttrpc/request_pb.js';
import { StatusSchema } from '../fri-proto/gen/google/rpc/status_pb.js';
import { FrameDecoder, FrameType, encodeFrame, type Frame } from '../protocols/ttrpc/frame.js';

import { REPLAY_METADATA_KEY } from '../protocols/keeper.js';

export { REPLAY_METADATA_KEY };

/** The request frame with the replay mark in its metadata; unchanged when it is not a ttrpc Request. */
export function markReplay(bytes: Buffer): Buffer {
  const dec = new FrameDecoder();
  const d = dec.push(bytes)[0];
  if (!d || d.kind !== 'frame' || d.frame.type !== FrameType.Request) return bytes;
  try {
    const req = fromBinary(RequestSchema, d.frame.data);
    if (req.metadata.some((kv) => kv.key === REPLAY_METADATA_KEY)) return bytes;
    req.metadata.push(create(KeyValueSchema, { key: REPLAY_METADATA_KEY, value: '1' }));
    return encodeFrame(d.frame, Buffer.from(toBinary(RequestSchema, req)));
  } catch {
    return bytes;
  }
}

/** How the keeper reaches spored: a fresh connection, or null while it is down. */
export type Connector = () => Promise<net.Socket | null>;

export interface HoldOptions {
  /** how often to try reaching spored again while it is down (ms) */
  retryMs?: number;
  /** most requests held for one containerd connection while spored is down */
  maxHeld?: number;
  /**
   * How long requests are held while no spored answers (ms, default 10 s): past it they, and
   * any that arrive until spored is back, are answered UNAVAILABLE, so containerd is never
   * left waiting on a spored that does not come back (bad install, crash loop).
   */
  maxDownMs?: number;
  /** what the UNAVAILABLE answers say (where to look) */
  downMessage?: string;
  /** requests the keeper may answer itself when spored does not (keeper/stand-in.ts) */
  standIn?: StandInPolicy;
  onEvent?: (e: { kind: 'up' | 'down' | 'replayed' | 'dropped' | 'failed' | 'stood-in'; streams: number }) => void;
}

/**
 * Which requests the keeper answers itself, and when: one policy for all of a keeper's held
 * connections (containerd opens one per task), since whether spored answers is the same for all.
 */
export interface StandInPolicy {
  /** how long a request waits for spored before answer() is asked (ms) */
  readonly afterMs: number;
  /** the keeper's own Response frame for `request`, or null: it is spored's to answer */
  answer(request: Frame): Buffer | null;
  /** true once the keeper answered for spored and spored has answered nothing since: ask answer() at once */
  owing(): boolean;
  /** spored sent a response (it is answering again) */
  sporedAnswered(): void;
}

/** google.rpc.Code UNAVAILABLE */
const UNAVAILABLE = 14;

/** A ttrpc Response frame for `streamId` carrying status UNAVAILABLE and `message`. */
export function unavailableResponse(streamId: number, message: string): Buffer {
  const body = toBinary(ResponseSchema, create(ResponseSchema, { status: create(StatusSchema, { code: UNAVAILABLE, message }) }));
  return encodeFrame({ streamId, type: FrameType.Response, flags: 0 }, Buffer.from(body));
}

/** One containerd connection, held. */
export class HeldConnection {
  private upstream: net.Socket | null = null;
  private readonly fromContainerd = new FrameDecoder();
  private fromSpored = new FrameDecoder();
  /** requests sent to spored (or waiting to be), by stream id, in arrival order */
  private readonly open = new Map<number, Buffer>();
  private connecting = false;
  /** open requests some spored has received: it may have carried them out before it died */
  private readonly sent = new Set<number>();
  private closed = false;
  private retry: NodeJS.Timeout | null = null;
  /** since when no spored has answered (null while connected) */
  private downSince: number | null = Date.now();
  /** held too long: answer at once until spored is back */
  private failFast = false;
  /** per open request: when the keeper answers it itself if spored has not (o.standIn) */
  private readonly standInTimers = new Map<number, NodeJS.Timeout>();

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
        if (!this.upstream && this.failFast) {
          // (a Connect after a containerd restart must not fail: containerd would take the
          // shim for dead and delete the container)
          if (!this.answerForSpored(f)) this.answerDown(f.streamId);
          continue;
        }
        if (this.open.size >= (this.o.maxHeld ?? 4096)) { this.o.onEvent?.({ kind: 'dropped', streams: 1 }); continue; }
        this.open.set(f.streamId, bytes);
        const standIn = this.o.standIn;
        // spored has let a Connect go unanswered and answered nothing since: containerd loads
        // its shims one by one, and each must not wait afterMs again
        if (standIn?.owing() && this.answerForSpored(f)) {
          this.open.delete(f.streamId);
          continue;
        }
        if (standIn) {
          this.clearStandIn(f.streamId);
          this.standInTimers.set(f.streamId, setTimeout(() => {
            this.standInTimers.delete(f.streamId);
            if (this.open.has(f.streamId) && this.answerForSpored(f)) {
              this.open.delete(f.streamId);
              this.sent.delete(f.streamId);
            }
          }, standIn.afterMs));
        }
      }
      if (this.upstream) {
        this.upstream.write(bytes);
        if (f.type === FrameType.Request) this.sent.add(f.streamId);
      }
    }
  }

  private onResponseBytes(chunk: Buffer): void {
    for (const d of this.fromSpored.push(chunk)) {
      if (d.kind !== 'frame') continue;
      const f: Frame = d.frame;
      // any answer, even one dropped below, shows spored answering again
      if (f.type === FrameType.Response) this.o.standIn?.sporedAnswered();
      // one answer per stream: a late duplicate (answered before, replayed after, or
      // answered by the keeper meanwhile) is dropped
      if (f.type === FrameType.Response && !this.open.delete(f.streamId)) continue;
      if (f.type === FrameType.Response) { this.sent.delete(f.streamId); this.clearStandIn(f.streamId); }
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
    this.downSince = null;
    this.failFast = false;
    this.fromSpored = new FrameDecoder();
    s.on('data', (c: Buffer) => this.onResponseBytes(c));
    s.on('error', () => undefined);
    s.on('close', () => {
      if (this.upstream !== s) return;
      this.upstream = null;
      this.downSince = Date.now();
      this.o.onEvent?.({ kind: 'down', streams: this.open.size });
      this.scheduleRetry();
    });
    const replay = [...this.open.entries()].sort((a, b) => a[0] - b[0]);
    for (const [id, bytes] of replay) {
      const marked = this.sent.has(id) ? markReplay(bytes) : bytes;
      this.open.set(id, marked);
      this.sent.add(id);
      s.write(marked);
    }
    this.o.onEvent?.({ kind: replay.length ? 'replayed' : 'up', streams: replay.length });
  }

  private scheduleRetry(): void {
    if (this.retry || this.closed) return;
    this.retry = setTimeout(() => { this.retry = null; this.checkDown(); void this.reach(); }, this.o.retryMs ?? 50);
  }

  /** Held past maxDownMs: answer everything open UNAVAILABLE, and new requests at once from now on. */
  private checkDown(): void {
    if (this.upstream || this.failFast || this.downSince === null) return;
    if (Date.now() - this.downSince < (this.o.maxDownMs ?? 10_000)) return;
    this.failFast = true;
    const ids = [...this.open.keys()];
    for (const id of ids) { this.clearStandIn(id); this.answerDown(id); }
    this.open.clear();
    this.sent.clear();
    this.o.onEvent?.({ kind: 'failed', streams: ids.length });
  }

  /** The keeper's own answer to `request` written to containerd (o.standIn); false: none, spored's to wait for. */
  private answerForSpored(request: Frame): boolean {
    const answer = this.o.standIn?.answer(request) ?? null;
    if (answer === null || this.downstream.destroyed) return false;
    this.downstream.write(answer);
    this.o.onEvent?.({ kind: 'stood-in', streams: 1 });
    return true;
  }

  private clearStandIn(streamId: number): void {
    const t = this.standInTimers.get(streamId);
    if (t) { clearTimeout(t); this.standInTimers.delete(streamId); }
  }

  private answerDown(streamId: number): void {
    if (!this.downstream.destroyed) this.downstream.write(unavailableResponse(streamId, this.o.downMessage ?? 'spored is not running'));
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.retry) clearTimeout(this.retry);
    for (const t of this.standInTimers.values()) clearTimeout(t);
    this.standInTimers.clear();
    this.upstream?.destroy();
    this.upstream = null;
    this.downstream.destroy();
  }
}
