import { describe, expect, it } from 'vitest';
import {
  DEFAULT_MAX_DATA_LENGTH,
  FrameDecoder,
  FrameType,
  HEADER_LENGTH,
  encodeFrame,
  encodeHeader,
} from '../protocols/ttrpc/frame.js';
import type { DecodedFrame } from '../protocols/ttrpc/frame.js';
import { Code, SporeError } from '../sys/errors.js';

/** Small deterministic PRNG so fuzz failures reproduce. */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function frames(items: DecodedFrame[]): Array<{ streamId: number; type: number; flags: number; data: string }> {
  return items.flatMap((i) =>
    i.kind === 'frame'
      ? [{ streamId: i.frame.streamId, type: i.frame.type, flags: i.frame.flags, data: i.frame.data.toString('hex') }]
      : [],
  );
}

describe('ttrpc frame codec', () => {
  it('encodes the 10-byte big-endian header', () => {
    const buf = encodeFrame({ streamId: 0x01020304, type: FrameType.Response, flags: 0x05 }, Buffer.from('hi'));
    expect(buf.subarray(0, HEADER_LENGTH).toString('hex')).toBe('00000002' + '01020304' + '02' + '05');
    expect(buf.subarray(HEADER_LENGTH).toString()).toBe('hi');
  });

  it('round-trips a frame, including an empty one', () => {
    const d = new FrameDecoder();
    const out = d.push(Buffer.concat([
      encodeFrame({ streamId: 1, type: FrameType.Request, flags: 0 }, Buffer.from('abc')),
      encodeFrame({ streamId: 3, type: FrameType.Request, flags: 2 }, Buffer.alloc(0)),
    ]));
    expect(frames(out)).toEqual([
      { streamId: 1, type: 1, flags: 0, data: Buffer.from('abc').toString('hex') },
      { streamId: 3, type: 1, flags: 2, data: '' },
    ]);
    expect(d.buffered).toBe(0);
  });

  it('refuses to encode oversized data or invalid stream ids', () => {
    expect(() => encodeFrame({ streamId: 1, type: 1, flags: 0 }, Buffer.alloc(11), 10)).toThrowError(SporeError);
    try {
      encodeFrame({ streamId: 1, type: 1, flags: 0 }, Buffer.alloc(11), 10);
    } catch (err) {
      expect((err as SporeError).code).toBe(Code.RESOURCE_EXHAUSTED);
    }
    expect(() => encodeFrame({ streamId: 2 ** 32, type: 1, flags: 0 }, Buffer.alloc(0))).toThrowError(SporeError);
  });

  it('reassembles frames split at every byte', () => {
    const stream = Buffer.concat([1, 3, 5].map((id) =>
      encodeFrame({ streamId: id, type: FrameType.Request, flags: 0 }, Buffer.from(`payload-${id}`)),
    ));
    const d = new FrameDecoder();
    const out: DecodedFrame[] = [];
    for (const byte of stream) out.push(...d.push(Buffer.from([byte])));
    expect(frames(out).map((f) => f.streamId)).toEqual([1, 3, 5]);
    expect(frames(out).map((f) => Buffer.from(f.data, 'hex').toString())).toEqual(['payload-1', 'payload-3', 'payload-5']);
  });

  it('handles random split points over coalesced frames', () => {
    const rnd = prng(42);
    const expected = Array.from({ length: 200 }, (_, i) => ({ id: 2 * i + 1, data: Buffer.alloc(Math.floor(rnd() * 300), i) }));
    const stream = Buffer.concat(expected.map((e) => encodeFrame({ streamId: e.id, type: 2, flags: 0 }, e.data)));
    const d = new FrameDecoder();
    const got: DecodedFrame[] = [];
    for (let off = 0; off < stream.length;) {
      const n = 1 + Math.floor(rnd() * 700);
      got.push(...d.push(stream.subarray(off, off + n)));
      off += n;
    }
    expect(frames(got).map((f) => f.streamId)).toEqual(expected.map((e) => e.id));
    expect(frames(got).map((f) => f.data)).toEqual(expected.map((e) => e.data.toString('hex')));
  });

  it('skips an oversized frame without buffering it, then resumes', () => {
    const max = 16;
    const d = new FrameDecoder(max);
    const big = 1_000_000;
    const items: DecodedFrame[] = [];
    items.push(...d.push(encodeHeader({ streamId: 7, type: FrameType.Request, flags: 0 }, big)));
    for (let sent = 0; sent < big; sent += 4096) {
      items.push(...d.push(Buffer.alloc(Math.min(4096, big - sent), 0xaa)));
      expect(d.buffered).toBeLessThan(HEADER_LENGTH + max);
    }
    items.push(...d.push(encodeFrame({ streamId: 9, type: FrameType.Request, flags: 0 }, Buffer.from('ok'), max)));
    expect(items).toHaveLength(2);
    expect(items[0]).toEqual({ kind: 'oversized', header: { streamId: 7, type: 1, flags: 0 }, length: big });
    expect(frames(items)).toEqual([{ streamId: 9, type: 1, flags: 0, data: Buffer.from('ok').toString('hex') }]);
  });

  it('reports a frame whose header claims 4 GiB as oversized (default limit)', () => {
    const d = new FrameDecoder();
    const out = d.push(Buffer.from('ffffffff00000001010000', 'hex'));
    expect(out).toEqual([{ kind: 'oversized', header: { streamId: 1, type: 1, flags: 0 }, length: 0xffffffff }]);
    expect(d.buffered).toBe(0);
    expect(DEFAULT_MAX_DATA_LENGTH).toBe(4 << 20);
  });

  it('fuzz: random and mutated byte streams never throw and never over-buffer', () => {
    const rnd = prng(0xdecaf);
    const max = 4096;
    const valid = Buffer.concat(Array.from({ length: 20 }, (_, i) =>
      encodeFrame({ streamId: 2 * i + 1, type: 1 + (i % 3), flags: i % 8 }, Buffer.alloc(i * 50, i), max),
    ));
    let totalFrames = 0;
    for (let iter = 0; iter < 5000; iter++) {
      let input: Buffer;
      if (iter % 2 === 0) {
        input = Buffer.alloc(Math.floor(rnd() * 2048));
        for (let i = 0; i < input.length; i++) input[i] = Math.floor(rnd() * 256);
      } else {
        input = Buffer.from(valid);
        const flips = 1 + Math.floor(rnd() * 8);
        for (let f = 0; f < flips; f++) input[Math.floor(rnd() * input.length)] = Math.floor(rnd() * 256);
        if (rnd() < 0.3) input = input.subarray(0, Math.floor(rnd() * input.length));
      }
      const d = new FrameDecoder(max);
      for (let off = 0; off < input.length;) {
        const n = 1 + Math.floor(rnd() * 512);
        const out = d.push(input.subarray(off, off + n));
        off += n;
        for (const item of out) {
          if (item.kind === 'frame') {
            totalFrames++;
            expect(item.frame.data.length).toBeLessThanOrEqual(max);
          } else {
            expect(item.length).toBeGreaterThan(max);
          }
        }
        expect(d.buffered).toBeLessThan(HEADER_LENGTH + max);
      }
    }
    expect(totalFrames).toBeGreaterThan(0);
  });
});
