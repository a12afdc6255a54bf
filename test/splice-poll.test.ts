// sys.splice and sys/uv-poll.ts FdPoll: the two halves of a relay that holds no byte itself.
import { describe, expect, it } from 'vitest';
import * as sys from '../sys/libc.js';
import { FdPoll, UV_READABLE, UV_WRITABLE } from '../sys/uv-poll.js';

describe('splice between pipes', () => {
  it('moves what there is, says -1 when the source is empty or the destination full, 0 at EOF', () => {
    const [ar, aw] = sys.pipe(sys.O.CLOEXEC | sys.O.NONBLOCK);
    const [br, bw] = sys.pipe(sys.O.CLOEXEC | sys.O.NONBLOCK);
    try {
      expect(sys.splice(ar, bw, 1 << 20)).toBe(-1); // empty, a writer still there
      sys.write(aw, Buffer.from('hello'));
      expect(sys.splice(ar, bw, 1 << 20)).toBe(5);
      expect(sys.read(br, 64).toString()).toBe('hello');
      // a full destination: nothing moves and the bytes stay in the source
      for (;;) { try { sys.write(bw, Buffer.alloc(1 << 16, 1)); } catch { break; } }
      sys.write(aw, Buffer.from('xyz'));
      expect(sys.splice(ar, bw, 1 << 20)).toBe(-1);
      expect(sys.pendingBytes(ar)).toBe(3);
      while (sys.pendingBytes(br) > 0) sys.read(br, 1 << 16);
      expect(sys.splice(ar, bw, 1 << 20)).toBe(3);
      expect(sys.read(br, 64).toString()).toBe('xyz');
      // no writer left, nothing buffered: EOF
      sys.close(aw);
      expect(sys.splice(ar, bw, 1 << 20)).toBe(0);
    } finally {
      for (const fd of [ar, br, bw]) { try { sys.close(fd); } catch { /* closed */ } }
    }
  });

  it('EPIPE when the destination has no reader', () => {
    const [ar, aw] = sys.pipe(sys.O.CLOEXEC | sys.O.NONBLOCK);
    const [br, bw] = sys.pipe(sys.O.CLOEXEC | sys.O.NONBLOCK);
    sys.close(br);
    sys.write(aw, Buffer.from('x'));
    expect(() => sys.splice(ar, bw, 16)).toThrow(expect.objectContaining({ errno: 32 }));
    for (const fd of [ar, aw, bw]) sys.close(fd);
  });
});

describe('FdPoll on the event loop', () => {
  it('calls back while an fd is readable or writable, not after watch(0) or close()', async () => {
    const [r, w] = sys.pipe(sys.O.CLOEXEC | sys.O.NONBLOCK);
    const seen: number[] = [];
    const poll = new FdPoll(r, (status, events) => {
      expect(status).toBe(0);
      seen.push(events);
      sys.read(r, 64); // drained: level-triggered, no more calls until the next write
    });
    poll.watch(UV_READABLE);
    await new Promise((res) => setTimeout(res, 20));
    expect(seen).toEqual([]);
    sys.write(w, Buffer.from('a'));
    await new Promise((res) => setTimeout(res, 20));
    expect(seen).toEqual([UV_READABLE]);
    poll.watch(0);
    sys.write(w, Buffer.from('b'));
    await new Promise((res) => setTimeout(res, 20));
    expect(seen).toEqual([UV_READABLE]);
    const wpoll = new FdPoll(w, (_s, events) => { seen.push(events); wpoll.watch(0); });
    wpoll.watch(UV_WRITABLE);
    await new Promise((res) => setTimeout(res, 20));
    expect(seen).toEqual([UV_READABLE, UV_WRITABLE]);
    poll.close();
    wpoll.close();
    poll.close(); // twice is nothing
    await new Promise((res) => setTimeout(res, 20));
    sys.close(r);
    sys.close(w);
  });

  it('refuses an fd libuv cannot poll (a regular file) with an error, not a crash', () => {
    const fd = sys.open('/proc/self/status', sys.O.RDONLY | sys.O.CLOEXEC);
    try {
      let poll: FdPoll | null = null;
      try { poll = new FdPoll(fd, () => undefined); poll.watch(UV_READABLE); } catch (e) { expect(String(e)).toMatch(/uv_poll/); }
      poll?.close();
    } finally {
      sys.close(fd);
    }
  });
});
