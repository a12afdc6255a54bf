// A copy between two fds that holds no byte: splice(2) moves data in the kernel as fast as
// the destination takes it, woken by the loop's readiness of either fd. What the
// destination cannot take stays in the source (a pipe, a FIFO, a pty), which a keeper can
// hold across a spored restart. Used by the stdio relays (stdio.ts) and terminals (console.ts).
import * as sys from '../sys/libc.js';
import { SyscallError } from '../sys/errors.js';
import { FdPoll, UV_READABLE, UV_WRITABLE } from '../sys/uv-poll.js';

const EPIPE = 32;

/**
 * Moves bytes from `src` to `dst` with splice(2) as fast as `dst` takes them, driven by the
 * loop's readiness of either fd (sys/uv-poll.ts). No byte is ever in spored's memory: what
 * the destination cannot take yet stays in the source pipe, which the keeper holds, so a
 * spored killed (or restarted) in the middle loses nothing, and the next one's pump goes on
 * from there. `onEnd` once: 'eof' (`src` has no writer left and nothing buffered), 'epipe'
 * (`dst` has no reader), 'error'. Both fds stay the caller's; the pump only watches them.
 */
export class Pump {
  private readonly srcPoll: FdPoll;
  private readonly dstPoll: FdPoll;
  private state: 'idle' | 'running' | 'ended' = 'idle';

  constructor(private readonly src: number, private readonly dst: number, private readonly onEnd: (why: 'eof' | 'epipe' | 'error') => void) {
    sys.setNonblock(src, true);
    sys.setNonblock(dst, true);
    this.srcPoll = new FdPoll(src, (status) => (status < 0 ? this.end('error') : this.pump()));
    try {
      this.dstPoll = new FdPoll(dst, (status) => (status < 0 ? this.end('error') : this.pump()));
    } catch (e) {
      this.srcPoll.close();
      throw e;
    }
  }

  start(): void {
    if (this.state !== 'idle') return;
    this.state = 'running';
    this.pump();
  }

  /** Stop watching, without onEnd (the fds are the caller's to close, after this). */
  stop(): void {
    if (this.state === 'ended') return;
    this.state = 'ended';
    this.srcPoll.close();
    this.dstPoll.close();
  }

  /** Move what can move now (the loop would otherwise do it at the next readiness). */
  drain(): void {
    if (this.state === 'running') this.pump();
  }

  get ended(): boolean { return this.state === 'ended'; }

  private pump(): void {
    // a bounded batch per wake-up: one busy stream must not hold the loop every other
    // container and function shares
    for (let i = 0; i < 16 && this.state === 'running'; i++) {
      let n: number;
      try {
        n = sys.splice(this.src, this.dst, 1 << 20);
      } catch (e) {
        this.end(e instanceof SyscallError && e.errno === EPIPE ? 'epipe' : 'error');
        return;
      }
      if (n === 0) { this.end('eof'); return; }
      if (n > 0) continue;
      // nothing moved: the source is empty (wait for it) or the destination full (wait for room)
      let waiting = 0;
      try { waiting = sys.pendingBytes(this.src); } catch { waiting = 0; }
      if (waiting > 0) { this.srcPoll.watch(0); this.dstPoll.watch(UV_WRITABLE); } else { this.dstPoll.watch(0); this.srcPoll.watch(UV_READABLE); }
      return;
    }
    if (this.state === 'running') { this.dstPoll.watch(0); this.srcPoll.watch(UV_READABLE); }
  }

  private end(why: 'eof' | 'epipe' | 'error'): void {
    if (this.state === 'ended') return;
    this.stop();
    this.onEnd(why);
  }
}

