// Readiness of a raw fd on Node's own event loop: libuv's uv_poll_t, through koffi against
// the symbols the node binary exports for addons (libuv is linked into node). For what the
// loop's streams cannot do: be told an fd is readable or writable without reading or
// writing it (task/stdio.ts moves stdio with splice(2), so no byte ever waits in spored's
// memory, where a crash would lose it). Callbacks run on the loop's thread, like any I/O
// callback. Source of the API: libuv's uv.h (uv_poll_init, uv_poll_start, uv_close;
// UV_READABLE 1, UV_WRITABLE 2; uv_handle_type UV_POLL 8).
import koffi from 'koffi';

export const UV_READABLE = 1;
export const UV_WRITABLE = 2;
const UV_POLL = 8;

const node = koffi.load(null as unknown as string); // the running node binary itself
const libc = koffi.load('libc.so.6');
const PollCb = koffi.proto('void spore_uv_poll_cb(void *handle, int status, int events)');
const CloseCb = koffi.proto('void spore_uv_close_cb(void *handle)');
const uv = {
  defaultLoop: node.func('void *uv_default_loop()'),
  handleSize: node.func('size_t uv_handle_size(int)'),
  pollInit: node.func('int uv_poll_init(void *, void *, int)'),
  pollStart: node.func('int uv_poll_start(void *, int, spore_uv_poll_cb *)'),
  pollStop: node.func('int uv_poll_stop(void *)'),
  close: node.func('void uv_close(void *, spore_uv_close_cb *)'),
  strerror: node.func('const char *uv_strerror(int)'),
};
const malloc = libc.func('void *malloc(size_t)');
const free = libc.func('void free(void *)');

/** Live polls by their handle's address: one callback (registered once) serves them all. */
const live = new Map<bigint, FdPoll>();
let pollCb: unknown = null;
let closeCb: unknown = null;

function callbacks(): { poll: unknown; close: unknown } {
  pollCb ??= koffi.register((handle: unknown, status: number, events: number) => {
    live.get(koffi.address(handle))?.fire(status, events);
  }, koffi.pointer(PollCb));
  closeCb ??= koffi.register((handle: unknown) => { free(handle); }, koffi.pointer(CloseCb));
  return { poll: pollCb, close: closeCb };
}

/**
 * One fd watched for UV_READABLE and/or UV_WRITABLE (level-triggered: the callback comes
 * again while the condition holds). `onEvent(status, events)`: status < 0 is a libuv error
 * (the poll has stopped). The fd stays the caller's: close() the poll before closing it.
 * Throws Error when libuv refuses the fd (uv_poll_init: a regular file, say).
 */
export class FdPoll {
  private handle: unknown;
  private readonly key: bigint;
  private events = 0;

  constructor(readonly fd: number, private readonly onEvent: (status: number, events: number) => void) {
    this.handle = malloc(Number(uv.handleSize(UV_POLL)));
    const rc = uv.pollInit(uv.defaultLoop(), this.handle, fd);
    if (rc < 0) {
      free(this.handle);
      throw new Error(`uv_poll_init(${fd}): ${String(uv.strerror(rc))}`);
    }
    this.key = koffi.address(this.handle);
    live.set(this.key, this);
  }

  /** Watch for `events` (UV_READABLE | UV_WRITABLE); 0 stops watching. */
  watch(events: number): void {
    if (this.handle === null || events === this.events) return;
    this.events = events;
    if (events === 0) { uv.pollStop(this.handle); return; }
    const rc = uv.pollStart(this.handle, events, callbacks().poll);
    if (rc < 0) throw new Error(`uv_poll_start(${this.fd}): ${String(uv.strerror(rc))}`);
  }

  /** @internal the registered callback's way in */
  fire(status: number, events: number): void {
    this.onEvent(status, events);
  }

  /** Stop and free the handle (after the loop's close callback); the fd is left open. */
  close(): void {
    if (this.handle === null) return;
    uv.pollStop(this.handle);
    live.delete(this.key);
    uv.close(this.handle, callbacks().close);
    this.handle = null;
  }
}
