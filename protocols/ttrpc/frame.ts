// ttrpc frame codec (containerd/ttrpc channel.go, PROTOCOL.md).
//
// Wire layout: 10-byte header — uint32 BE data length, uint32 BE stream id, uint8 type,
// uint8 flags — followed by `length` bytes of data. The decoder is pure (no I/O) so it can be
// fuzzed in isolation; it is the first thing untrusted bytes touch in the daemon, so it never
// throws and never buffers more than one maximum-size frame.

import { ResourceExhausted, InvalidArgument } from '../../sys/errors.js';

export const HEADER_LENGTH = 10;
/** Go ttrpc's messageLengthMax (4 << 20); both peers enforce it. */
export const DEFAULT_MAX_DATA_LENGTH = 4 << 20;
const MAX_UINT32 = 0xffff_ffff;

export const FrameType = {
  Request: 0x01,
  Response: 0x02,
  Data: 0x03,
} as const;

export const FrameFlags = {
  RemoteClosed: 0x01,
  RemoteOpen: 0x02,
  NoData: 0x04,
} as const;

export interface FrameHeader {
  streamId: number;
  type: number;
  flags: number;
}

export interface Frame extends FrameHeader {
  data: Buffer;
}

/** What the decoder yields: a whole frame, or notice of an oversized one whose data was dropped. */
export type DecodedFrame =
  | { kind: 'frame'; frame: Frame }
  | { kind: 'oversized'; header: FrameHeader; length: number };

export function encodeHeader(header: FrameHeader, length: number): Buffer {
  const buf = Buffer.allocUnsafe(HEADER_LENGTH);
  buf.writeUInt32BE(length, 0);
  buf.writeUInt32BE(header.streamId, 4);
  buf.writeUInt8(header.type, 8);
  buf.writeUInt8(header.flags, 9);
  return buf;
}

/**
 * Encode one frame. Refuses (like Go's OversizedMessageErr) rather than emitting a frame the
 * peer would discard, so the caller can turn it into a status on the same stream.
 */
export function encodeFrame(
  header: FrameHeader,
  data: Uint8Array,
  maxDataLength: number = DEFAULT_MAX_DATA_LENGTH,
): Buffer {
  if (!Number.isInteger(header.streamId) || header.streamId < 0 || header.streamId > MAX_UINT32) {
    throw new InvalidArgument(`ttrpc: stream id ${header.streamId} out of range`);
  }
  if (data.length > maxDataLength) {
    throw new ResourceExhausted(`ttrpc: message length ${data.length} exceeds maximum message size of ${maxDataLength}`);
  }
  const out = Buffer.allocUnsafe(HEADER_LENGTH + data.length);
  encodeHeader(header, data.length).copy(out, 0);
  out.set(data, HEADER_LENGTH);
  return out;
}

export function decodeHeader(buf: Buffer): { header: FrameHeader; length: number } {
  return {
    length: buf.readUInt32BE(0),
    header: { streamId: buf.readUInt32BE(4), type: buf.readUInt8(8), flags: buf.readUInt8(9) },
  };
}

/**
 * Incremental decoder: push arbitrary chunks, receive every frame they complete.
 *
 * Invariant after each push(): buffered bytes < HEADER_LENGTH while waiting for a header,
 * or < the pending frame's length (≤ max) while waiting for its data. Oversized frames are
 * skipped by counting bytes, never by accumulating them.
 */
export class FrameDecoder {
  readonly maxDataLength: number;
  private chunks: Buffer[] = [];
  private bufferedBytes = 0;
  private pending: { header: FrameHeader; length: number } | null = null;
  private skipRemaining = 0;

  constructor(maxDataLength: number = DEFAULT_MAX_DATA_LENGTH) {
    this.maxDataLength = maxDataLength;
  }

  /** Bytes currently held (for tests and memory accounting). */
  get buffered(): number {
    return this.bufferedBytes;
  }

  push(chunk: Uint8Array): DecodedFrame[] {
    const out: DecodedFrame[] = [];
    if (chunk.length > 0) {
      this.chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length));
      this.bufferedBytes += chunk.length;
    }
    for (;;) {
      if (this.skipRemaining > 0) {
        const n = Math.min(this.skipRemaining, this.bufferedBytes);
        this.discard(n);
        this.skipRemaining -= n;
        if (this.skipRemaining > 0) break;
      }
      if (this.pending === null) {
        if (this.bufferedBytes < HEADER_LENGTH) break;
        const parsed = decodeHeader(this.take(HEADER_LENGTH));
        if (parsed.length > this.maxDataLength) {
          out.push({ kind: 'oversized', header: parsed.header, length: parsed.length });
          this.skipRemaining = parsed.length;
          continue;
        }
        this.pending = parsed;
      }
      if (this.bufferedBytes < this.pending.length) break;
      const data = this.take(this.pending.length);
      out.push({ kind: 'frame', frame: { ...this.pending.header, data } });
      this.pending = null;
    }
    return out;
  }

  /** Remove and return the first n buffered bytes; copies only when they span chunks. */
  private take(n: number): Buffer {
    if (n === 0) return Buffer.alloc(0);
    const first = this.chunks[0];
    if (first !== undefined && first.length >= n) {
      this.consumeFront(first, n);
      return first.subarray(0, n);
    }
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const head = this.chunks[0];
      if (head === undefined) throw new Error('FrameDecoder: internal underflow');
      const k = Math.min(head.length, n - filled);
      head.copy(out, filled, 0, k);
      filled += k;
      this.consumeFront(head, k);
    }
    return out;
  }

  private discard(n: number): void {
    let left = n;
    while (left > 0) {
      const head = this.chunks[0];
      if (head === undefined) break;
      const k = Math.min(head.length, left);
      this.consumeFront(head, k);
      left -= k;
    }
  }

  private consumeFront(head: Buffer, k: number): void {
    if (k === head.length) this.chunks.shift();
    else this.chunks[0] = head.subarray(k);
    this.bufferedBytes -= k;
  }
}
