import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { EmptySchema, timestampFromMs } from '@bufbuild/protobuf/wkt';
import {
  Task,
  StateRequestSchema,
  StateResponseSchema,
  CreateTaskRequestSchema,
} from '../fri-proto/gen/containerd/task/v2/shim_pb.js';
import { Status } from '../fri-proto/gen/containerd/types/task/task_pb.js';
import { RequestSchema, ResponseSchema } from '../fri-proto/gen/ttrpc/request_pb.js';
import { Code, NotFound, SporeError } from '../sys/errors.js';
import {
  FrameDecoder,
  FrameFlags,
  FrameType,
  TtrpcClient,
  TtrpcServer,
  clientFor,
  encodeFrame,
  encodeHeader,
} from '../protocols/ttrpc/index.js';
import type { CallContext, CallInfo, ServiceImplementationFor } from '../protocols/ttrpc/index.js';


let dir: string;
let sock: string;
let server: TtrpcServer;
let clients: TtrpcClient[];
let calls: CallInfo[];

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spore-ttrpc-'));
  sock = path.join(dir, 's.sock');
  clients = [];
  calls = [];
});

afterEach(async () => {
  for (const c of clients) c.close();
  await server?.close(1000);
  fs.rmSync(dir, { recursive: true, force: true });
});

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function start(impl: ServiceImplementationFor<typeof Task>, opts: { maxMessageSize?: number; leaveUnanswered?: (err: unknown) => boolean } = {}): Promise<void> {
  server = new TtrpcServer({ ...opts, onCall: (i) => calls.push(i) });
  server.register(Task, impl);
  await server.listen(sock);
}

async function connect(maxMessageSize?: number): Promise<TtrpcClient> {
  const c = await TtrpcClient.connect(sock, maxMessageSize === undefined ? {} : { maxMessageSize });
  clients.push(c);
  return c;
}

async function expectCode(p: Promise<unknown>, code: number, message?: RegExp): Promise<SporeError> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(SporeError);
  const se = err as SporeError;
  expect(se.code).toBe(code);
  if (message) expect(se.message).toMatch(message);
  return se;
}

interface RawReply { streamId: number; code: number; message: string }

/** Speak raw frames to the server and collect `count` responses (a map keyed by stream id, plus the list). */
async function raw(frames: Buffer[], count: number): Promise<Map<number, RawReply> & { list: RawReply[] }> {
  const s = net.connect(sock);
  const dec = new FrameDecoder();
  const list: RawReply[] = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { s.destroy(); reject(new Error(`only got ${list.length}/${count} responses`)); }, 3000);
    s.on('data', (chunk) => {
      for (const item of dec.push(chunk)) {
        if (item.kind !== 'frame') continue;
        const r = fromBinary(ResponseSchema, item.frame.data);
        list.push({ streamId: item.frame.streamId, code: r.status?.code ?? 0, message: r.status?.message ?? '' });
      }
      if (list.length >= count) {
        clearTimeout(timer);
        s.destroy();
        resolve(Object.assign(new Map(list.map((r) => [r.streamId, r] as const)), { list }));
      }
    });
    s.on('error', reject);
    s.on('connect', () => { for (const f of frames) s.write(f); });
  });
}

function requestFrame(streamId: number, req: Parameters<typeof create<typeof RequestSchema>>[1], flags = 0): Buffer {
  return encodeFrame({ streamId, type: FrameType.Request, flags }, toBinary(RequestSchema, create(RequestSchema, req)));
}

const stateReq = (id: string): Uint8Array => toBinary(StateRequestSchema, create(StateRequestSchema, { id }));

describe('ttrpc server + client over a unix socket', () => {
  it('round-trips real Task messages and creates an owner-only socket', async () => {
    await start({
      async state(req) {
        return {
          id: req.id,
          execId: req.execId,
          bundle: '/run/b',
          pid: 42,
          status: Status.RUNNING,
          exitedAt: timestampFromMs(1_700_000_000_000),
        };
      },
      async create(req) {
        return { pid: req.rootfs.length * 100 + (req.terminal ? 1 : 0) };
      },
    });
    expect(fs.statSync(sock).mode & 0o777).toBe(0o600);
    const c = await connect();
    const st = await c.call(Task.method.state, { id: 'c1', execId: 'e1' });
    expect(st.$typeName).toBe('containerd.task.v2.StateResponse');
    expect(st).toMatchObject({ id: 'c1', execId: 'e1', bundle: '/run/b', pid: 42, status: Status.RUNNING });
    expect(st.exitedAt?.seconds).toBe(1_700_000_000n);

    const task = clientFor(Task, c);
    const cr = await task.create(create(CreateTaskRequestSchema, {
      id: 'c1', terminal: true, rootfs: [{ type: 'overlay', source: 'overlay', options: ['lowerdir=/a'] }],
    }));
    expect(cr.pid).toBe(101);

    // String-addressed overload.
    const st2 = await c.call('containerd.task.v2.Task', 'State', StateRequestSchema, StateResponseSchema, { id: 'x' });
    expect(st2.id).toBe('x');
    expect(calls.map((k) => `${k.service}/${k.method}:${k.code}`)).toEqual([
      'containerd.task.v2.Task/State:0', 'containerd.task.v2.Task/Create:0', 'containerd.task.v2.Task/State:0',
    ]);
  });

  it('answers 50 concurrent calls out of order, each matched to its request', async () => {
    const completion: string[] = [];
    // every call waits until all 50 are in, then they finish in reverse order (later requests first)
    const waiting = new Map<number, () => void>();
    await start({
      async state(req) {
        const n = Number(req.id);
        await new Promise<void>((resolve) => {
          waiting.set(n, resolve);
          if (waiting.size === 50) setImmediate(() => { for (let i = 49; i >= 0; i--) waiting.get(i)?.(); });
        });
        completion.push(req.id);
        return { id: req.id, pid: n };
      },
    });
    const c = await connect();
    const results = await Promise.all(Array.from({ length: 50 }, (_, i) => c.call(Task.method.state, { id: String(i) })));
    results.forEach((r, i) => {
      expect(r.id).toBe(String(i));
      expect(r.pid).toBe(i);
    });
    expect(completion[0]).toBe('49');
    expect(completion).not.toEqual([...completion].sort((a, b) => Number(a) - Number(b)));
  });

  it('rejects even and non-increasing stream ids with INVALID_ARGUMENT on that id', async () => {
    await start({ async state(req) { return { id: req.id }; } });
    const base = { service: 'containerd.task.v2.Task', method: 'State', payload: stateReq('a') };
    const res = await raw([
      requestFrame(2, base),
      requestFrame(5, base),
      requestFrame(3, base),
      requestFrame(5, base),
      requestFrame(7, base),
    ], 5);
    expect(res.get(2)).toMatchObject({ code: Code.INVALID_ARGUMENT, message: expect.stringMatching(/odd/) });
    expect(res.get(3)).toMatchObject({ code: Code.INVALID_ARGUMENT, message: expect.stringMatching(/increment/) });
    expect(res.get(7)?.code).toBe(Code.OK);
    // Stream 5 is served once; its reuse is rejected on the same id.
    expect(res.list.filter((r) => r.streamId === 5).map((r) => r.code).sort()).toEqual([Code.OK, Code.INVALID_ARGUMENT]);
  });

  it('answers UNIMPLEMENTED for unknown services, methods, unimplemented handlers and streaming', async () => {
    await start({ async state(req) { return { id: req.id }; } });
    const c = await connect();
    await expectCode(c.call('foo.Bar', 'Baz', EmptySchema, EmptySchema, {}), Code.UNIMPLEMENTED, /foo\.Bar/);
    await expectCode(c.call('containerd.task.v2.Task', 'Nope', EmptySchema, EmptySchema, {}), Code.UNIMPLEMENTED, /Nope/);
    await expectCode(c.call(Task.method.pause, { id: 'x' }), Code.UNIMPLEMENTED, /Pause/);
    const base = { service: 'containerd.task.v2.Task', method: 'State', payload: stateReq('a') };
    const res = await raw([
      requestFrame(1, base, FrameFlags.RemoteOpen),
      encodeFrame({ streamId: 3, type: FrameType.Data, flags: 0 }, Buffer.from('x')),
    ], 2);
    expect(res.get(1)?.code).toBe(Code.UNIMPLEMENTED);
    expect(res.get(3)?.code).toBe(Code.UNIMPLEMENTED);
  });

  it('answers INVALID_ARGUMENT for undecodable request envelopes and payloads', async () => {
    await start({ async state(req) { return { id: req.id }; } });
    const res = await raw([
      encodeFrame({ streamId: 1, type: FrameType.Request, flags: 0 }, Buffer.from([0xff, 0xff, 0xff, 0xff])),
      requestFrame(3, { service: 'containerd.task.v2.Task', method: 'State', payload: Buffer.from([0x0a, 0x50, 0x41]) }),
      requestFrame(5, { service: 'containerd.task.v2.Task', method: 'State', payload: stateReq('ok') }),
    ], 3);
    expect(res.get(1)?.code).toBe(Code.INVALID_ARGUMENT);
    expect(res.get(3)).toMatchObject({ code: Code.INVALID_ARGUMENT, message: expect.stringMatching(/StateRequest/) });
    expect(res.get(5)?.code).toBe(Code.OK);
  });

  it('answers RESOURCE_EXHAUSTED for oversized requests and responses, and keeps the connection', async () => {
    await start({
      async state(req) { return { id: req.id, bundle: req.id === 'big' ? 'x'.repeat(5000) : '' }; },
    }, { maxMessageSize: 2048 });
    const c = await connect(1 << 20);
    await expectCode(c.call(Task.method.state, { id: 'y'.repeat(4000) }), Code.RESOURCE_EXHAUSTED);
    await expectCode(c.call(Task.method.state, { id: 'big' }), Code.RESOURCE_EXHAUSTED, /response/);
    expect((await c.call(Task.method.state, { id: 'small' })).id).toBe('small');

    // A client with the same limit refuses locally instead of sending.
    const strict = await connect(2048);
    await expectCode(strict.call(Task.method.state, { id: 'y'.repeat(4000) }), Code.RESOURCE_EXHAUSTED);

    // Raw oversized header with a short body: the server skips it by counting bytes.
    const res = await raw([
      encodeHeader({ streamId: 1, type: FrameType.Request, flags: 0 }, 100_000),
      Buffer.alloc(100_000),
      requestFrame(3, { service: 'containerd.task.v2.Task', method: 'State', payload: stateReq('after') }),
    ], 2);
    expect(res.get(1)?.code).toBe(Code.RESOURCE_EXHAUSTED);
    expect(res.get(3)?.code).toBe(Code.OK);
  });

  it('preserves SporeError codes from handlers; plain errors become UNKNOWN', async () => {
    await start({
      async kill() { throw new NotFound('process already finished'); },
      async pause() { throw new Error('boom'); },
      resume() { throw new SporeError(Code.FAILED_PRECONDITION, 'sync throw'); },
    });
    const c = await connect();
    await expectCode(c.call(Task.method.kill, { id: 'x', signal: 9 }), Code.NOT_FOUND, /^process already finished$/);
    await expectCode(c.call(Task.method.pause, { id: 'x' }), Code.UNKNOWN, /boom/);
    await expectCode(c.call(Task.method.resume, { id: 'x' }), Code.FAILED_PRECONDITION, /sync throw/);
  });

  it('leaves a failed call unanswered when leaveUnanswered says so (the keeper sends it to the next spored); answers the rest; close() does not wait for it', async () => {
    let leave = true;
    await start({
      async kill() { throw new SporeError(Code.UNAVAILABLE, 'process seed link lost'); },
      async pause() { throw new NotFound('no such task'); },
    }, { leaveUnanswered: (err) => leave && (err as Error).message.includes('seed') });
    const c = await connect();
    const left = c.call(Task.method.kill, { id: 'x', signal: 9 }).then(() => 'answered', () => 'answered');
    await expectCode(c.call(Task.method.pause, { id: 'x' }), Code.NOT_FOUND); // not a seed failure: answered
    const got = await Promise.race([left, sleep(300).then(() => 'unanswered')]);
    expect(got).toBe('unanswered');
    leave = false;
    await expectCode(c.call(Task.method.kill, { id: 'x', signal: 9 }), Code.UNAVAILABLE, /seed link lost/);
    const t0 = Date.now();
    await server.close(2000);
    expect(Date.now() - t0).toBeLessThan(1500);
  });

  it('aborts the handler signal when timeout_nano expires', async () => {
    let seen: unknown;
    let aborted!: () => void;
    const abortedP = new Promise<void>((r) => { aborted = r; });
    await start({
      async wait(_req, ctx) {
        expect(ctx.deadline).toBeGreaterThan(Date.now() - 1000);
        await new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve(), { once: true }));
        seen = ctx.signal.reason;
        aborted();
        ctx.signal.throwIfAborted();
        return {};
      },
    });
    const c = await connect();
    const t0 = Date.now();
    await expectCode(c.call(Task.method.wait, { id: 'x' }, { timeoutMs: 80 }), Code.DEADLINE_EXCEEDED);
    await abortedP;
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(seen).toBeInstanceOf(SporeError);
    expect((seen as SporeError).code).toBe(Code.DEADLINE_EXCEEDED);
  });

  it('survives a client killed mid-call: the in-flight handler signal aborts', async () => {
    let ctxSeen: CallContext | undefined;
    let entered!: () => void;
    const enteredP = new Promise<void>((r) => { entered = r; });
    let aborted!: () => void;
    const abortedP = new Promise<void>((r) => { aborted = r; });
    await start({
      async wait(_req, ctx) {
        ctxSeen = ctx;
        ctx.signal.addEventListener('abort', () => aborted(), { once: true });
        entered();
        await new Promise<void>(() => undefined); // never resolves on its own
        return {};
      },
      async state(req) { return { id: req.id }; },
    });
    const victim = await connect();
    const pending = victim.call(Task.method.wait, { id: 'x' });
    await enteredP;
    victim.close();
    await expectCode(pending, Code.UNAVAILABLE);
    await abortedP;
    expect((ctxSeen?.signal.reason as SporeError).code).toBe(Code.CANCELLED);
    const next = await connect();
    expect((await next.call(Task.method.state, { id: 'alive' })).id).toBe('alive');
    await server.close(100); // the stuck handler must not block shutdown past the timeout
  });

  it('exposes metadata (lower-cased keys) and the containerd namespace', async () => {
    let ctxSeen: CallContext | undefined;
    await start({ async state(req, ctx) { ctxSeen = ctx; return { id: req.id }; } });
    const c = await connect();
    await c.call(Task.method.state, { id: 'x' }, { namespace: 'k8s.io', metadata: { 'X-Trace': ['a', 'b'], other: 'v' } });
    expect(ctxSeen?.namespace).toBe('k8s.io');
    expect(ctxSeen?.metadata.get('x-trace')).toEqual(['a', 'b']);
    expect(ctxSeen?.metadata.get('other')).toEqual(['v']);
    expect(ctxSeen?.service).toBe('containerd.task.v2.Task');
    expect(ctxSeen?.method).toBe('State');
  });

  it('closes only the offending connection on malformed frames and survives garbage', async () => {
    await start({ async state(req) { return { id: req.id }; } });
    const bad = net.connect(sock);
    await new Promise<void>((resolve) => bad.on('connect', () => resolve()));
    const closed = new Promise<void>((resolve) => bad.on('close', () => resolve()));
    bad.on('error', () => undefined);
    bad.write(encodeFrame({ streamId: 1, type: 0x7f, flags: 0 }, Buffer.from('??')));
    await closed;

    const rnd = (() => { let s = 7; return () => (s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31; })();
    for (let i = 0; i < 20; i++) {
      const g = net.connect(sock);
      g.on('error', () => undefined);
      await new Promise<void>((resolve) => g.on('connect', () => resolve()));
      const junk = Buffer.alloc(1 + Math.floor(rnd() * 4000));
      for (let j = 0; j < junk.length; j++) junk[j] = Math.floor(rnd() * 256);
      g.write(junk);
      g.end();
    }
    await sleep(50);
    const c = await connect();
    expect((await c.call(Task.method.state, { id: 'still-up' })).id).toBe('still-up');
  });

  it('close() waits for in-flight handlers, refuses to steal a live socket, and removes the socket file', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => { release = r; });
    await start({ async state(req) { await gate; return { id: req.id }; } });
    await expect(new TtrpcServer().listen(sock)).rejects.toMatchObject({ code: Code.ALREADY_EXISTS });
    const c = await connect();
    const inflight = c.call(Task.method.state, { id: 'slow' });
    await sleep(20);
    const closing = server.close(5000);
    setTimeout(release, 50);
    expect((await inflight).id).toBe('slow');
    await closing;
    expect(fs.existsSync(sock)).toBe(false);
  });

  it('replaces a stale socket file left by a dead server', async () => {
    // A crashed server (SIGKILL) leaves its socket file behind with nobody accepting.
    const script = `require('net').createServer().listen(${JSON.stringify(sock)}, () => process.kill(process.pid, 'SIGKILL'))`;
    const child = spawn(process.execPath, ['-e', script], { stdio: 'ignore' });
    await new Promise<void>((r) => child.on('exit', () => r()));
    expect(fs.statSync(sock).isSocket()).toBe(true);
    await start({ async state(req) { return { id: req.id }; } });
    const c = await connect();
    expect((await c.call(Task.method.state, { id: 'fresh' })).id).toBe('fresh');
  });

  it('rejects pending calls with UNAVAILABLE when the server goes away, and honours AbortSignal', async () => {
    await start({ async wait() { await new Promise<void>(() => undefined); return {}; } });
    const c = await connect();
    const ac = new AbortController();
    const cancelled = c.call(Task.method.wait, { id: 'a' }, { signal: ac.signal });
    ac.abort();
    await expectCode(cancelled, Code.CANCELLED);
    const p = c.call(Task.method.wait, { id: 'b' });
    await sleep(20);
    await server.close(10);
    await expectCode(p, Code.UNAVAILABLE);
    await expectCode(c.call(Task.method.wait, { id: 'c' }), Code.UNAVAILABLE);
  });
});

describe('wire details', () => {
  it('encodes Response.status the way Go expects (code 0 present on success)', async () => {
    await start({ async state(req) { return { id: req.id }; } });
    const s = net.connect(sock);
    const dec = new FrameDecoder();
    const data = await new Promise<Buffer>((resolve) => {
      s.on('data', (chunk) => {
        for (const item of dec.push(chunk)) if (item.kind === 'frame') resolve(item.frame.data);
      });
      s.on('connect', () => s.write(requestFrame(1, { service: 'containerd.task.v2.Task', method: 'State', payload: stateReq('w') })));
    });
    s.destroy();
    const r = fromBinary(ResponseSchema, data);
    expect(r.status).toBeDefined();
    expect(fromBinary(StateResponseSchema, r.payload).id).toBe('w');
  });
});
