// The HTTP gateway over the in-memory FakeRuntime: status codes, headers, body limit, keep-alive.
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pino from 'pino';
import { Code, NotFound, Overloaded, ResourceExhausted } from '../sys/errors.js';
import {
  bearerMatches, functionFromPath, httpStatusOfCode, httpStatusOfInvokeError, parseAddress, responseForError, retryAfterSeconds,
  gatewayCustodyKey, startGateway, timingsHeader,
} from '../daemon/gateway.js';
import { Metrics, instrument } from '../daemon/metrics.js';
import { installRoot } from '../functions/stack.js';
import { closeFri, friServer, listenFri } from '../protocols/fri/server.js';
import { FriClient } from '../protocols/fri/client.js';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { FunctionSpec } from '../protocols/fri/types.js';
import type { FdCustody } from '../task/custody.js';
import * as sys from '../sys/libc.js';
import { FAKE_TIMINGS, FakeRuntime } from './fake-runtime.js';

const log = pino({ level: 'silent' });

describe('gateway mapping (pure)', () => {
  it('invoke error kinds -> status', () => {
    expect(httpStatusOfInvokeError('timeout')).toBe(504);
    for (const k of ['handler', 'load', 'oom', 'crash', 'internal'] as const) expect(httpStatusOfInvokeError(k)).toBe(500);
  });

  it('gRPC codes -> status', () => {
    expect(httpStatusOfCode(Code.NOT_FOUND)).toBe(404);
    expect(httpStatusOfCode(Code.INVALID_ARGUMENT)).toBe(400);
    expect(httpStatusOfCode(Code.RESOURCE_EXHAUSTED)).toBe(429);
    expect(httpStatusOfCode(Code.UNAVAILABLE)).toBe(503);
    expect(httpStatusOfCode(Code.DEADLINE_EXCEEDED)).toBe(504);
    expect(httpStatusOfCode(Code.UNKNOWN)).toBe(500);
    expect(responseForError(new NotFound('x'))).toMatchObject({ status: 404, body: '{"error":{"kind":"request","code":"NOT_FOUND","message":"x"}}' });
  });

  it('RESOURCE_EXHAUSTED -> 429 with Retry-After: ceil(retryAfterMs / 1000), at least 1; 1 s when not said', () => {
    expect(retryAfterSeconds(100)).toBe(1);
    expect(retryAfterSeconds(0)).toBe(1);
    expect(retryAfterSeconds(1000)).toBe(1);
    expect(retryAfterSeconds(1001)).toBe(2);
    expect(retryAfterSeconds(2500)).toBe(3);
    expect(retryAfterSeconds(undefined)).toBe(1);
    const o = responseForError(new Overloaded('busy', 2500));
    expect(o.status).toBe(429);
    expect(o.headers['retry-after']).toBe('3');
    expect(JSON.parse(o.body)).toEqual({ error: { kind: 'overloaded', code: 'RESOURCE_EXHAUSTED', message: 'busy' } });
    const plainRe = responseForError(new ResourceExhausted('pool empty')); // e.g. from a remote FRI without the trailer
    expect(plainRe.status).toBe(429);
    expect(plainRe.headers['retry-after']).toBe('1');
  });

  it('bearer token check', () => {
    expect(bearerMatches('Bearer s3cret', 's3cret')).toBe(true);
    expect(bearerMatches('bearer s3cret', 's3cret')).toBe(true);
    expect(bearerMatches('Bearer s3cre', 's3cret')).toBe(false);
    expect(bearerMatches('Bearer s3cret2', 's3cret')).toBe(false);
    expect(bearerMatches('Basic s3cret', 's3cret')).toBe(false);
    expect(bearerMatches('s3cret', 's3cret')).toBe(false);
    expect(bearerMatches(undefined, 's3cret')).toBe(false);
    expect(bearerMatches('Bearer ', 's3cret')).toBe(false);
  });

  it('paths, addresses, timings header', () => {
    expect(functionFromPath('/invoke/hello')).toBe('hello');
    expect(functionFromPath('/invoke/hello?x=1')).toBe('hello');
    expect(functionFromPath('/invoke/a%2Eb')).toBe('a.b');
    expect(functionFromPath('/invoke/')).toBeNull();
    expect(functionFromPath('/invoke/a/b')).toBeNull();
    expect(functionFromPath('/other')).toBeNull();
    expect(parseAddress('127.0.0.1:8780')).toEqual({ host: '127.0.0.1', port: 8780 });
    expect(parseAddress('[::1]:80')).toEqual({ host: '::1', port: 80 });
    expect(parseAddress(':9000')).toEqual({ host: '0.0.0.0', port: 9000 });
    expect(parseAddress('9000')).toEqual({ host: '0.0.0.0', port: 9000 });
    expect(() => parseAddress('localhost')).toThrow(/host:port/);
    expect(() => parseAddress('h:70000')).toThrow(/host:port/);
    expect(JSON.parse(timingsHeader({ ...FAKE_TIMINGS, fork: 1.6 }))).toEqual({ ...FAKE_TIMINGS, fork: 2 });
  });
});

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
  reused: boolean;
  localPort: number;
}

describe('gateway over HTTP', () => {
  let rt: FakeRuntime;
  let server: http.Server;
  let port: number;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

  function request(method: string, p: string, body?: string | Buffer, headers: http.OutgoingHttpHeaders = {}): Promise<Reply> {
    return new Promise((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, method, path: p, agent, headers }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({
          status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8'),
          reused: req.reusedSocket, localPort: req.socket?.localPort ?? 0,
        }));
      });
      req.on('error', reject);
      req.end(body);
    });
  }

  const spec = (name: string, code: string): FunctionSpec => ({ name, language: 'node', code, handler: 'handler', memoryMiB: 128, timeoutMs: 3000, env: {} });

  beforeAll(async () => {
    rt = new FakeRuntime();
    for (const [n, c] of [['echo', 'echo'], ['bad', 'throw'], ['slow', 'timeout'], ['fat', 'oom'], ['explode', 'explode'], ['busy', 'busy'], ['leaky', 'leaky']]) {
      await rt.deploy(spec(n as string, c as string));
    }
    server = await startGateway(rt, '127.0.0.1:0', log, { maxBodyBytes: 1024 });
    port = (server.address() as AddressInfo).port;
  });

  afterAll(async () => {
    agent.destroy();
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  it('200 with the handler result and timing/seed headers', async () => {
    const r = await request('POST', '/invoke/echo', '{"hello":"world"}', { 'content-type': 'application/json' });
    expect(r.status).toBe(200);
    expect(r.body).toBe('{"hello":"world"}');
    expect(r.headers['content-type']).toBe('application/json');
    expect(JSON.parse(r.headers['x-spore-timings'] as string)).toEqual(FAKE_TIMINGS);
    expect(r.headers['x-spore-seed']).toBe('seed-fn-echo');
    expect(r.headers['x-spore-seed-level']).toBe('2');
    expect(r.headers['x-spore-instance']).toMatch(/^inst-/);
    expect(r.headers['x-spore-error']).toBeUndefined();
    expect(rt.calls.at(-1)).toEqual({ method: 'invoke', args: ['echo', '{"hello":"world"}', undefined] });
  });

  it('empty body is the event {}', async () => {
    const r = await request('POST', '/invoke/echo');
    expect(r.status).toBe(200);
    expect(r.body).toBe('{}');
  });

  it('handler error -> 500 with {error:{kind,message,stack}} and timings', async () => {
    const r = await request('POST', '/invoke/bad', '{}');
    expect(r.status).toBe(500);
    expect(JSON.parse(r.body)).toEqual({ error: { kind: 'handler', message: 'boom', stack: 'Error: boom\n    at handler (index.js:1:1)' } });
    expect(r.headers['x-spore-error']).toBe('handler');
    expect(r.headers['x-spore-timings']).toBeDefined();
  });

  it('timeout -> 504, oom -> 500 (kind in body and header)', async () => {
    const t = await request('POST', '/invoke/slow', '{}');
    expect(t.status).toBe(504);
    expect(JSON.parse(t.body).error.kind).toBe('timeout');
    const o = await request('POST', '/invoke/fat', '{}');
    expect(o.status).toBe(500);
    expect(o.headers['x-spore-error']).toBe('oom');
    expect(JSON.parse(o.body).error).toEqual({ kind: 'oom', message: 'exceeded 128 MiB', stack: null });
  });

  it('unknown function -> 404; unknown path -> 404; internal failure -> 500', async () => {
    const r = await request('POST', '/invoke/nope', '{}');
    expect(r.status).toBe(404);
    expect(JSON.parse(r.body).error).toEqual({ kind: 'request', code: 'NOT_FOUND', message: 'function nope is not deployed' });
    expect((await request('POST', '/nowhere', '{}')).status).toBe(404);
    const e = await request('POST', '/invoke/explode', '{}');
    expect(e.status).toBe(500);
    expect(JSON.parse(e.body).error.message).toBe('kaboom');
  });

  it('bad JSON -> 400; bad name -> 400', async () => {
    const r = await request('POST', '/invoke/echo', '{"a":');
    expect(r.status).toBe(400);
    expect(JSON.parse(r.body).error.message).toMatch(/not valid JSON/);
    expect((await request('POST', '/invoke/a%20b', '{}')).status).toBe(400);
    expect((await request('POST', '/invoke/%E0%A4%A', '{}')).status).toBe(400);
  });

  it('only POST on /invoke -> 405 with Allow', async () => {
    const r = await request('GET', '/invoke/echo');
    expect(r.status).toBe(405);
    expect(r.headers.allow).toBe('POST');
    expect(JSON.parse(r.body).error).toMatchObject({ kind: 'request', code: 'UNIMPLEMENTED' });
  });

  it("the gateway's own refusals name gRPC codes, as every other error body does", async () => {
    const route = await request('GET', '/nowhere');
    expect(route.status).toBe(404);
    expect(JSON.parse(route.body).error).toMatchObject({ kind: 'request', code: 'NOT_FOUND' });
    const big = await request('POST', '/invoke/echo', JSON.stringify('x'.repeat(2000)));
    expect(big.status).toBe(413);
    expect(JSON.parse(big.body).error).toMatchObject({ kind: 'request', code: 'RESOURCE_EXHAUSTED' });
  });

  it('overloaded -> 429 at once with Retry-After, the connection kept', async () => {
    const r = await request('POST', '/invoke/busy', '{}');
    expect(r.status).toBe(429);
    expect(r.headers['retry-after']).toBe('3');
    expect(r.headers['x-spore-error']).toBe('overloaded');
    expect(JSON.parse(r.body).error).toMatchObject({ kind: 'overloaded', code: 'RESOURCE_EXHAUSTED' });
    expect(r.headers.connection).toBe('keep-alive');
  });

  it("a 500's stack holds the function's frames only: no spore frames, node internals or install paths", async () => {
    const r = await request('POST', '/invoke/leaky', '{}');
    expect(r.status).toBe(500);
    const e = JSON.parse(r.body).error as { message: string; stack: string };
    expect(e.stack).toBe('Error: bad input\n    at inner (/var/task/index.js:1:27)\n    at /var/task/index.js:2:43');
    expect(r.body).not.toContain(installRoot().replace(/\/$/, ''));
    expect(r.body).not.toMatch(/node:internal|dist\//);
    expect(e.message).toBe('bad input (loaded by <spore>)');
  });

  it('GET /healthz -> 200', async () => {
    const r = await request('GET', '/healthz');
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body)).toEqual({ ok: true });
  });

  it('no /metrics without a Metrics object: 404', async () => {
    expect((await request('GET', '/metrics')).status).toBe(404);
  });

  it('body over the limit -> 413 and the connection closes', async () => {
    const declared = await request('POST', '/invoke/echo', JSON.stringify('x'.repeat(2000)));
    expect(declared.status).toBe(413);
    expect(declared.headers.connection).toBe('close');
    // chunked (no content-length): detected while reading
    const chunked = await new Promise<number>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/invoke/echo', agent: false, headers: { 'transfer-encoding': 'chunked' } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      for (let i = 0; i < 4; i++) req.write('x'.repeat(500));
      req.end();
    });
    expect(chunked).toBe(413);
    // the server still serves afterwards
    expect((await request('POST', '/invoke/echo', '1')).status).toBe(200);
  });

  it('keep-alive: consecutive requests reuse one connection', async () => {
    await request('GET', '/healthz'); // (re)open the pooled socket
    const a = await request('POST', '/invoke/echo', '{"n":1}');
    const b = await request('POST', '/invoke/bad', '{}'); // errors keep the connection too
    const c = await request('POST', '/invoke/echo', '{"n":3}');
    expect(a.headers.connection).toBe('keep-alive');
    expect([a.reused, b.reused, c.reused]).toEqual([true, true, true]);
    expect(new Set([a.localPort, b.localPort, c.localPort]).size).toBe(1);
  });
});

describe('gateway with metrics, health and a token', () => {
  const TOKEN = 'tok-0123456789abcdef';
  let rt: FakeRuntime;
  let metrics: Metrics;
  let server: http.Server;
  let port: number;
  let healthy = true;

  const req = async (method: string, p: string, headers: Record<string, string> = {}, body?: string): Promise<{ status: number; headers: Headers; text: string }> => {
    const res = await fetch(`http://127.0.0.1:${port}${p}`, { method, headers, body });
    return { status: res.status, headers: res.headers, text: await res.text() };
  };
  const auth = { authorization: `Bearer ${TOKEN}` };

  beforeAll(async () => {
    rt = new FakeRuntime();
    for (const [n, c] of [['echo', 'echo'], ['bad', 'throw'], ['busy', 'busy']]) {
      await rt.deploy({ name: n as string, language: 'node', code: c as string, handler: 'handler', memoryMiB: 128, timeoutMs: 3000, env: {} });
    }
    metrics = new Metrics({ defaultMetrics: false });
    const health = () => ({ ok: healthy, components: { fri: { ok: healthy } } });
    server = await startGateway(instrument(rt, metrics), '127.0.0.1:0', log, { metrics, health, token: TOKEN });
    port = (server.address() as AddressInfo).port;
  });

  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  it('every route but /healthz needs the bearer token: 401 without it or with a wrong one', async () => {
    for (const [m, p] of [['POST', '/invoke/echo'], ['GET', '/metrics'], ['GET', '/nowhere'], ['POST', '/invoke/nope']] as const) {
      const none = await req(m, p, {}, m === 'POST' ? '{}' : undefined);
      expect(none.status, `${m} ${p}`).toBe(401);
      expect(none.headers.get('www-authenticate')).toMatch(/^Bearer/);
      expect((await req(m, p, { authorization: `Bearer ${TOKEN}x` }, m === 'POST' ? '{}' : undefined)).status).toBe(401);
      expect((await req(m, p, { authorization: TOKEN }, m === 'POST' ? '{}' : undefined)).status).toBe(401);
    }
    expect(rt.calls.filter((c) => c.method === 'invoke')).toEqual([]);
    const ok = await req('POST', '/invoke/echo', auth, '{"a":1}');
    expect(ok.status).toBe(200);
    expect(ok.text).toBe('{"a":1}');
  });

  it('/healthz: no token needed; 200 when ok, 503 with the same body when something is down', async () => {
    healthy = true;
    const up = await req('GET', '/healthz');
    expect(up.status).toBe(200);
    expect(JSON.parse(up.text)).toEqual({ ok: true, components: { fri: { ok: true } } });
    healthy = false;
    const down = await req('GET', '/healthz');
    expect(down.status).toBe(503);
    expect(JSON.parse(down.text)).toEqual({ ok: false, components: { fri: { ok: false } } });
    healthy = true;
  });

  it('/metrics: Prometheus text with invocations by outcome, phases and gateway requests', async () => {
    await req('POST', '/invoke/echo', auth, '{}');
    await req('POST', '/invoke/bad', auth, '{}');
    const busy = await req('POST', '/invoke/busy', auth, '{}');
    expect(busy.status).toBe(429);
    const m = await req('GET', '/metrics', auth);
    expect(m.status).toBe(200);
    expect(m.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(m.text).toMatch(/^spore_invocations_total\{function="echo",outcome="ok"\} [1-9]/m);
    expect(m.text).toMatch(/^spore_invocations_total\{function="bad",outcome="handler"\} 1$/m);
    expect(m.text).toMatch(/^spore_invocations_total\{function="busy",outcome="rejected"\} 1$/m);
    expect(m.text).toMatch(/^spore_phase_seconds_count\{phase="fork"\} [1-9]/m);
    expect(m.text).toMatch(/^spore_gateway_requests_total\{route="invoke",status="429"\} 1$/m);
    expect(m.text).toMatch(/^spore_gateway_requests_total\{route="invoke",status="401"\} [1-9]/m);
  });
});

describe('gateway over a remote FRI (FriClient as the invoker)', () => {
  it('RESOURCE_EXHAUSTED from the remote runtime is a 429 with its Retry-After', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spore-gw-remote-'));
    const rt = new FakeRuntime();
    await rt.deploy({ name: 'busy', language: 'node', code: 'busy', handler: 'handler', memoryMiB: 128, timeoutMs: 3000, env: {} });
    const grpcServer = friServer(rt, log);
    const { socket } = await listenFri(grpcServer, path.join(dir, 'fri.sock'));
    const client = await FriClient.connect(socket);
    const gw = await startGateway(client, '127.0.0.1:0', log);
    try {
      const res = await fetch(`http://127.0.0.1:${(gw.address() as AddressInfo).port}/invoke/busy`, { method: 'POST', body: '{}' });
      expect(res.status).toBe(429);
      expect(res.headers.get('retry-after')).toBe('3');
      expect((await res.json() as { error: { kind: string } }).error.kind).toBe('overloaded');
    } finally {
      gw.closeAllConnections();
      await new Promise((r) => gw.close(r));
      client.close();
      await closeFri(grpcServer, socket, 0);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('gateway socket custody (the keeper holds the listening socket across spored restarts)', () => {
  it('parks a new socket, a later gateway listens on the held one (same port), connections made meanwhile are served, other addresses are let go', async () => {
    const held = new Map<string, number>();
    const released: string[] = [];
    const custody: FdCustody = {
      park: (key, fd) => { held.set(key, sys.dupFd(fd)); return Promise.resolve(); },
      open: () => Promise.reject(new Error('not used here')),
      release: (key) => { released.push(key); const fd = held.get(key); if (fd !== undefined) sys.close(fd); held.delete(key); },
      keys: () => [...held.keys()],
      reclaim: (key) => { const fd = held.get(key); return fd === undefined ? null : sys.dupFd(fd); },
      heldAs: (key) => held.get(key),
    };
    const rt = new FakeRuntime();
    await rt.deploy({ name: 'hello', language: 'node', code: 'hello', handler: 'handler', memoryMiB: 128, timeoutMs: 3000, env: {} });
    held.set(gatewayCustodyKey('127.0.0.1:1'), sys.dupFd(0)); // an old address: let go
    const first = await startGateway(rt, '127.0.0.1:0', log, { custody });
    const port = (first.address() as AddressInfo).port;
    expect([...held.keys()]).toEqual([gatewayCustodyKey('127.0.0.1:0')]);
    expect(released).toEqual([gatewayCustodyKey('127.0.0.1:1')]);
    first.closeAllConnections();
    await new Promise((r) => first.close(r));
    // no gateway now: a connection is accepted by the kernel (the held socket's backlog), not refused
    const pending = fetch(`http://127.0.0.1:${port}/invoke/hello`, { method: 'POST', body: '{}' });
    await new Promise((r) => setTimeout(r, 100));
    const second = await startGateway(rt, '127.0.0.1:0', log, { custody });
    try {
      expect((second.address() as AddressInfo).port).toBe(port);
      expect((await pending).status).toBe(200);
      expect(held.size).toBe(1);
    } finally {
      second.closeAllConnections();
      await new Promise((r) => second.close(r));
      for (const fd of held.values()) sys.close(fd);
    }
  });
});

describe('gateway closing (a restart hands its socket on)', () => {
  it('answers with "Connection: close" once closing, so a busy keep-alive client moves to the next spored instead of being cut', async () => {
    const rt = new FakeRuntime();
    await rt.deploy({ name: 'hello', language: 'node', code: 'hello', handler: 'handler', memoryMiB: 128, timeoutMs: 3000, env: {} });
    let release: () => void = () => undefined;
    let gate: Promise<void> = Promise.resolve();
    const gw = await startGateway({ invoke: async (fn, event) => { await gate; return rt.invoke(fn, event); } }, '127.0.0.1:0', log);
    const port = (gw.address() as AddressInfo).port;
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const post = (): Promise<{ status: number; connection: string | undefined }> => new Promise((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, path: '/invoke/hello', method: 'POST', agent }, (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0, connection: res.headers.connection }));
      });
      req.on('error', reject);
      req.end('{}');
    });
    try {
      expect(await post()).toEqual({ status: 200, connection: 'keep-alive' });
      // a call in flight on the keep-alive connection when closing starts
      gate = new Promise((r) => { release = r; });
      const busy = post();
      await new Promise((r) => setTimeout(r, 50));
      const closed = new Promise((r) => gw.close(r));
      release();
      expect(await busy).toEqual({ status: 200, connection: 'close' });
      await closed;
    } finally {
      agent.destroy();
      gw.closeAllConnections();
    }
  });
});

describe('gateway: what one client may hold (red team helper-44: held connections took every fd, unfinished bodies took gigabytes)', () => {
  const rt = new FakeRuntime();
  let gw: http.Server;
  let port = 0;
  const open: import('node:net').Socket[] = [];
  beforeAll(async () => {
    await rt.deploy({ name: 'hello', language: 'node', code: 'hello', handler: 'handler', memoryMiB: 128, timeoutMs: 3000, env: {} });
    gw = await startGateway(rt, '127.0.0.1:0', log, { maxConnections: 3, bodyBudgetBytes: 1000, headersTimeoutMs: 400 });
    port = (gw.address() as AddressInfo).port;
  });
  afterAll(async () => {
    for (const s of open) s.destroy();
    gw.closeAllConnections();
    await new Promise((r) => gw.close(r));
  });
  const net = async () => (await import('node:net')).default;
  /** a raw connection; resolves with it once connected, records how it ended */
  const connect = async (): Promise<{ s: import('node:net').Socket; data: () => string; closedAt: Promise<number> }> => {
    const n = await net();
    const s = n.connect(port, '127.0.0.1');
    open.push(s);
    let data = '';
    s.on('data', (d: Buffer) => { data += d.toString(); });
    s.on('error', () => undefined);
    const t0 = Date.now();
    const closedAt = new Promise<number>((r) => s.on('close', () => r(Date.now() - t0)));
    await new Promise<void>((r) => s.once('connect', () => r()));
    return { s, data: () => data, closedAt };
  };
  const call = (body: string, agent?: http.Agent): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> => new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: '/invoke/hello', method: 'POST', ...(agent ? { agent } : { agent: false }) }, (res) => {
      let b = '';
      res.on('data', (d: Buffer) => { b += d.toString(); });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: b, headers: res.headers }));
    });
    req.on('error', reject);
    req.end(body);
  });

  it('a connection that sends nothing, or headers that never end, is closed after the headers timeout', async () => {
    const silent = await connect();
    const partial = await connect();
    partial.s.write('POST /invoke/hello HTTP/1.1\r\nHost: x\r\n');
    expect(await silent.closedAt).toBeLessThan(3000);
    expect(await partial.closedAt).toBeLessThan(3000);
    // (closed by the silent-connection timer, or answered 408 by Node's headersTimeout first)
    expect(partial.data()).toMatch(/^$|^HTTP\/1\.1 408/);
  });

  it('an idle keep-alive connection outlives the headers timeout (keepAliveTimeout applies to it)', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const a = await call('{"n":1}', agent);
      expect(a.status).toBe(200);
      await new Promise((r) => setTimeout(r, 1500));
      const b = await call('{"n":2}', agent);
      expect(b.status).toBe(200);
      expect(b.headers.connection).toBe('keep-alive');
    } finally {
      agent.destroy();
    }
  });

  it('connections over maxConnections are closed as they are accepted; a freed one lets the next in', async () => {
    const held = [await connect(), await connect(), await connect()];
    const over = await connect();
    expect(await over.closedAt).toBeLessThan(1000);
    expect(over.data()).toBe('');
    held[0]?.s.destroy();
    await new Promise((r) => setTimeout(r, 100));
    for (const h of held) h.s.destroy();
    await new Promise((r) => setTimeout(r, 100));
    expect((await call('{}')).status).toBe(200);
  });

  it('request bodies held at once are capped: one that does not fit gets 429 overloaded at once, and fits again once the first is answered', async () => {
    // 795 of 1000 bytes held by an upload that has not finished (800 declared, 5 to come)
    const slow = await connect();
    const head = '{"pad":"';
    const whole = `${head}${'y'.repeat(800 - head.length - 2)}"}`;
    slow.s.write(`POST /invoke/hello HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 800\r\n\r\n${whole.slice(0, 795)}`);
    await new Promise((r) => setTimeout(r, 100));
    const refused = await call(JSON.stringify({ pad: 'x'.repeat(290) }));
    expect(refused.status).toBe(429);
    expect(refused.headers['retry-after']).toBe('1');
    expect(JSON.parse(refused.body)).toMatchObject({ error: { kind: 'overloaded', code: 'RESOURCE_EXHAUSTED' } });
    expect(JSON.parse(refused.body).error.message).toContain('--gateway-body-budget');
    // a small body still fits beside it
    expect((await call('{"a":1}')).status).toBe(200);
    // the upload finishes and is answered: its 800 bytes are given back
    slow.s.write(whole.slice(795));
    await new Promise<void>((r) => { const t = setInterval(() => { if (slow.data().includes('\r\n\r\n')) { clearInterval(t); r(); } }, 10); });
    expect(slow.data()).toMatch(/^HTTP\/1\.1 200/);
    slow.s.destroy();
    expect((await call(JSON.stringify({ pad: 'x'.repeat(290) }))).status).toBe(200);
  });

  it('headers that declare a large body and send none hold nothing (helper-46: 43 such connections refused every call)', async () => {
    const idle = await connect();
    idle.s.write('POST /invoke/hello HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 990\r\n\r\n');
    await new Promise((r) => setTimeout(r, 100));
    expect((await call(JSON.stringify({ pad: 'x'.repeat(800) }))).status).toBe(200);
    idle.s.destroy();
  });

  it('a chunked body is counted as it arrives', async () => {
    const res = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, path: '/invoke/hello', method: 'POST', agent: false, headers: { 'transfer-encoding': 'chunked' } }, (r) => {
        let b = '';
        r.on('data', (d: Buffer) => { b += d.toString(); });
        r.on('end', () => resolve({ status: r.statusCode ?? 0, body: b }));
      });
      req.on('error', reject);
      req.write(`{"pad":"${'z'.repeat(600)}`);
      setTimeout(() => req.end(`${'z'.repeat(600)}"}`), 50);
    });
    expect(res.status).toBe(429);
    expect((await call('{"after":1}')).status).toBe(200);
  });
});

describe('gateway: budget and connections given back on every path (red team helper-46)', () => {
  const rt = new FakeRuntime();
  let gw: http.Server;
  let port = 0;
  beforeAll(async () => {
    await rt.deploy({ name: 'hello', language: 'node', code: 'hello', handler: 'handler', memoryMiB: 128, timeoutMs: 3000, env: {} });
    // 'slow' answers after 300 ms
    const invoker = { invoke: async (fn: string, event: string) => { if (fn === 'slow') await new Promise((r) => setTimeout(r, 300)); return rt.invoke('hello', event); } };
    gw = await startGateway(invoker, '127.0.0.1:0', log, { maxConnections: 2, bodyBudgetBytes: 1000, headersTimeoutMs: 2000 });
    port = (gw.address() as AddressInfo).port;
  });
  afterAll(async () => {
    gw.closeAllConnections();
    await new Promise((r) => gw.close(r));
  });
  const call = (body: string): Promise<number> => new Promise((resolve) => {
    const req = http.request({ host: '127.0.0.1', port, path: '/invoke/hello', method: 'POST', agent: false }, (res) => { res.resume(); res.on('end', () => resolve(res.statusCode ?? 0)); });
    req.on('error', () => resolve(0));
    req.end(body);
  });

  it('a pipelined request whose connection closes before its answer gives its body bytes back', async () => {
    const net = (await import('node:net')).default;
    for (let round = 0; round < 3; round++) {
      const s = net.connect(port, '127.0.0.1');
      s.on('error', () => undefined);
      await new Promise<void>((r) => s.once('connect', () => r()));
      const big = JSON.stringify({ pad: 'p'.repeat(580) });
      s.write(`POST /invoke/slow HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}POST /invoke/hello HTTP/1.1\r\nHost: x\r\nContent-Length: ${big.length}\r\n\r\n${big}`);
      await new Promise((r) => setTimeout(r, 100));
      s.destroy();
      await new Promise((r) => setTimeout(r, 400));
    }
    // without the give-back, 3 x ~590 bytes would be held for good and this would be 429
    expect(await call(JSON.stringify({ pad: 'x'.repeat(900) }))).toBe(200);
  });

  it('at the connection cap, idle keep-alive connections are closed to make room', async () => {
    const net = (await import('node:net')).default;
    const idle: import('node:net').Socket[] = [];
    for (let i = 0; i < 2; i++) {
      const s = net.connect(port, '127.0.0.1');
      s.on('error', () => undefined);
      let got = '';
      s.on('data', (d: Buffer) => { got += d.toString(); });
      await new Promise<void>((r) => s.once('connect', () => r()));
      s.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
      for (let t = 0; t < 100 && !got.includes('\r\n\r\n'); t++) await new Promise((r) => setTimeout(r, 10));
      idle.push(s);
    }
    const closed = idle.map((s) => new Promise<void>((r) => { if (s.destroyed) r(); else s.once('close', () => r()); }));
    // the first caller over the cap is turned away, and makes room; a retry gets in
    const first = await call('{}');
    await Promise.race([Promise.all(closed), new Promise((r) => setTimeout(r, 2000))]);
    expect(idle.every((s) => s.destroyed || s.readableEnded)).toBe(true);
    expect(first === 200 || first === 0).toBe(true);
    expect(await call('{}')).toBe(200);
    for (const s of idle) s.destroy();
  });
});

describe('gateway: trickling bodies make room at the cap (red team, helper-55)', () => {
  const rt = new FakeRuntime();
  let gw: http.Server;
  let port = 0;
  beforeAll(async () => {
    await rt.deploy({ name: 'hello', language: 'node', code: 'hello', handler: 'handler', memoryMiB: 128, timeoutMs: 3000, env: {} });
    gw = await startGateway(rt, '127.0.0.1:0', log, { maxConnections: 4, slowRequestMs: 300, headersTimeoutMs: 5000 });
    port = (gw.address() as AddressInfo).port;
  });
  afterAll(async () => {
    gw.closeAllConnections();
    await new Promise((r) => gw.close(r));
  });
  const call = (localAddress?: string): Promise<number> => new Promise((resolve) => {
    const req = http.request({ host: '127.0.0.1', port, path: '/invoke/hello', method: 'POST', agent: false, ...(localAddress ? { localAddress } : {}) }, (res) => { res.resume(); res.on('end', () => resolve(res.statusCode ?? 0)); });
    req.on('error', () => resolve(0));
    req.end('{}');
  });
  const open = async (localAddress: string): Promise<import('node:net').Socket> => {
    const net = (await import('node:net')).default;
    const s = net.connect({ port, host: '127.0.0.1', localAddress });
    s.on('error', () => undefined);
    await new Promise<void>((r) => s.once('connect', () => r()));
    return s;
  };

  it('requests whose body trickles in are cut off (408) once the cap is reached and they are slower than slowRequestMs; the next caller gets in', async () => {
    const slow: import('node:net').Socket[] = [];
    for (let i = 0; i < 4; i++) {
      const s = await open('127.0.0.1');
      s.write('POST /invoke/hello HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{');
      slow.push(s);
    }
    await new Promise((r) => setTimeout(r, 400));
    const replies = slow.map((s) => new Promise<string>((r) => { let got = ''; s.on('data', (d: Buffer) => { got += d.toString(); }); s.once('close', () => r(got)); }));
    let status = 0;
    for (let i = 0; i < 20 && status !== 200; i++) { status = await call(); if (status !== 200) await new Promise((r) => setTimeout(r, 100)); }
    expect(status).toBe(200);
    const got = await Promise.race([Promise.all(replies), new Promise<string[]>((r) => setTimeout(() => r([]), 3000))]);
    expect(got).toHaveLength(4);
    expect(got.every((g) => g.startsWith('HTTP/1.1 408'))).toBe(true);
  });
});
