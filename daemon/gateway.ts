// The node gateway (the paper's per-node HTTP front door): `POST /invoke/<function>` with a JSON
// body runs the function through the FunctionRuntime and answers with the handler's JSON.
//
// Responses
//   200  the handler's result (JSON text exactly as returned), content-type application/json
//   400  body is not JSON, or a bad function name           {"error":{"kind":"request",...}}
//   404  unknown function or path                           {"error":{"kind":"request",...}}
//   401  a token is configured (--gateway-token) and the request lacks "Authorization: Bearer
//        <token>" (every route but /healthz)              WWW-Authenticate: Bearer
//   405  not POST on /invoke/... (Allow: POST)
//   413  body larger than the event limit (6 MiB)
//   429  overloaded: the function's concurrency and queue, or the node's instances, are full
//        (RESOURCE_EXHAUSTED, here or from a remote FRI); answered at once, with Retry-After
//        (seconds)                                          {"error":{"kind":"overloaded",...}}
//   500  the invocation failed: handler threw, module failed to load, instance crashed, out of
//        memory, or spore failed around it                  {"error":{"kind","message","stack"}}
//        OOM is a 500 (not 507: that is WebDAV "insufficient storage"); tell the kinds apart by
//        the body's error.kind or the x-spore-error header. The stack holds the function's own
//        frames only (functions/stack.ts): spore's frames and install paths are not shown.
//   504  the handler exceeded its timeout (kind "timeout")
//   503  the runtime is unavailable; other runtime errors map by gRPC code.
// A call refused before it ran carries {"error":{"kind","code","message"}}, `code` a gRPC
// status name (the gateway's own refusals too: UNAUTHENTICATED 401, NOT_FOUND 404,
// UNIMPLEMENTED 405 for a wrong method, RESOURCE_EXHAUSTED 413 and 429), so a client reads
// one vocabulary; a call that ran and failed carries {"error":{"kind","message","stack"}}.
// Other routes:
//   GET /metrics   Prometheus text (daemon/metrics.ts); needs the token when one is set
//   GET /healthz   200 {"ok":true,"components":{...}} when the OCI path, FRI and the L1 seeds are
//                  up, 503 with the same body when one is down (daemon/health.ts); no token
// Headers on every invocation that reached an instance (ok or not):
//   x-spore-timings      compact JSON of PhaseTimings (microseconds)
//   x-spore-parked       1 when a parked instance served the call (forked before it), else 0
//   x-spore-seed         id of the seed the instance was forked from
//   x-spore-seed-level   0, 1 or 2 (root, language, function seed)
//   x-spore-instance     instance id
//   x-spore-error        the error kind, when the invocation failed
// Keep-alive is on (wrk and other load generators reuse connections).
import { createHash, timingSafeEqual } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Logger } from 'pino';
import { isLoopback, parseAddress } from './config.js';
import { Code, InvalidArgument, Overloaded, codeName, statusOf } from '../sys/errors.js';
import type { CodeValue } from '../sys/errors.js';
import type { InvokeErrorKind, InvokeOptions, InvokeResult, PhaseTimings } from '../protocols/fri/types.js';
import { MAX_EVENT_BYTES, validateEvent, validateFunctionName } from '../protocols/fri/validate.js';
import type { Metrics } from './metrics.js';
import type { FdCustody } from '../task/custody.js';
import { isListenerKey, listenerKey, listeningFd } from '../protocols/keeper.js';
import { functionStack, scrubText } from '../functions/stack.js';

export { parseAddress } from './config.js';

/** What the gateway needs: the in-process runtime, or a FriClient for a gateway in another process. */
export interface Invoker {
  invoke(fn: string, event: string, opts?: InvokeOptions): Promise<InvokeResult>;
}

/** What /healthz reports (daemon/health.ts HealthReport, or anything with `ok`). */
export interface HealthBody {
  ok: boolean;
}

export interface GatewayOptions {
  /** request body limit in bytes (default MAX_EVENT_BYTES) */
  maxBodyBytes?: number;
  /** serves GET /metrics and counts requests; absent: /metrics is 404 */
  metrics?: Metrics;
  /** GET /healthz's report; absent: {"ok":true} */
  health?: () => HealthBody | Promise<HealthBody>;
  /** bearer token required on every request but /healthz; null/absent: none */
  token?: string | null;
  /**
   * Connections open at once (the server's maxConnections); more are closed as they are
   * accepted, so a client holding connections cannot take spored's file descriptors (which
   * FRI, the seeds and containers' stdio need too). Default DEFAULT_MAX_CONNECTIONS.
   */
  maxConnections?: number;
  /**
   * Bytes of request bodies held at once, all connections, from the first byte until the
   * answer went out (a 6 MiB limit per request bounds nothing across many slow uploads).
   * A request that does not fit gets 429. Default DEFAULT_BODY_BUDGET_BYTES.
   */
  bodyBudgetBytes?: number;
  /** headers within this, and a silent connection closed after it (ms; default HEADERS_TIMEOUT_MS) */
  headersTimeoutMs?: number;
  /**
   * At the connection cap, a request whose body has been arriving for longer than this (ms)
   * is cut off (408) to make room, slowest first: a client that sends complete headers and
   * then one byte of body a minute held 1,024 connections (REQUEST_TIMEOUT_MS each) and
   * turned everyone else away (red team, helper-55). Default SLOW_REQUEST_MS.
   */
  slowRequestMs?: number;
  /**
   * Who keeps the listening socket while no spored runs (the keeper: task/custody.ts). The
   * socket is taken from it when it holds one for this address, else made and handed to it;
   * connections that arrive while spored restarts then wait in the socket's backlog instead
   * of being refused. Absent: the socket is spored's alone.
   */
  custody?: FdCustody;
}

/** listen(2) backlog of the gateway's socket: connections wait in it while spored restarts. */
export const LISTEN_BACKLOG = 4096;

/** Default cap on open gateway connections (spored --gateway-max-connections). */
export const DEFAULT_MAX_CONNECTIONS = 1024;

/** Default cap on request-body bytes held at once (spored --gateway-body-budget, MiB). */
export const DEFAULT_BODY_BUDGET_BYTES = 256 * 1024 * 1024;

/**
 * A request's headers must arrive within this (ms), and a connection that sends nothing is
 * closed after it: held-open connections are what a client starves others with.
 */
export const HEADERS_TIMEOUT_MS = 10_000;

/** A whole request (headers and body) must arrive within this (ms); the answer may take longer. */
export const REQUEST_TIMEOUT_MS = 60_000;

/** At the connection cap, a body still arriving after this long (ms) makes room (GatewayOptions.slowRequestMs). */
export const SLOW_REQUEST_MS = 5_000;

/** The custody key of the gateway's listening socket for `address` (host:port as configured). */
export const gatewayCustodyKey = (address: string): string => listenerKey('gateway', address);

/** Retry-After when a RESOURCE_EXHAUSTED does not say (a remote FRI, another pool), ms. */
export const DEFAULT_RETRY_AFTER_MS = 1000;

const INVOKE_PREFIX = '/invoke/';

/** HTTP status for a failed invocation (ok=false). */
export function httpStatusOfInvokeError(kind: InvokeErrorKind): number {
  return kind === 'timeout' ? 504 : 500;
}

/** HTTP status for an error thrown before or around an invocation (gRPC code from statusOf). */
export function httpStatusOfCode(code: CodeValue): number {
  switch (code) {
    case Code.INVALID_ARGUMENT:
    case Code.OUT_OF_RANGE: return 400;
    case Code.UNAUTHENTICATED: return 401;
    case Code.PERMISSION_DENIED: return 403;
    case Code.NOT_FOUND: return 404;
    case Code.ALREADY_EXISTS:
    case Code.FAILED_PRECONDITION:
    case Code.ABORTED: return 409;
    case Code.UNIMPLEMENTED: return 501;
    case Code.RESOURCE_EXHAUSTED: return 429;
    case Code.UNAVAILABLE:
    case Code.CANCELLED: return 503;
    case Code.DEADLINE_EXCEEDED: return 504;
    default: return 500;
  }
}

/** Retry-After in whole seconds: ceil(ms / 1000), at least 1. */
export function retryAfterSeconds(ms: number | undefined): number {
  const v = ms === undefined || !Number.isFinite(ms) ? DEFAULT_RETRY_AFTER_MS : ms;
  return Math.max(1, Math.ceil(v / 1000));
}

/** Constant-time check of an Authorization header against the token (hashes: equal lengths). */
export function bearerMatches(header: string | undefined, token: string): boolean {
  const m = /^Bearer +(\S+) *$/i.exec(header ?? '');
  const given = createHash('sha256').update(m?.[1] ?? '').digest();
  const want = createHash('sha256').update(token).digest();
  return timingSafeEqual(given, want) && m !== null;
}

/** Compact header value: whole microseconds, fixed key order. */
export function timingsHeader(t: PhaseTimings): string {
  const r = (n: number): number => Math.round(n);
  return JSON.stringify({
    control: r(t.control), fork: r(t.fork), bind: r(t.bind), seccomp: r(t.seccomp), init: r(t.init),
    execute: r(t.execute), respond: r(t.respond), destroy: r(t.destroy), total: r(t.total),
  });
}

/** The function name from a request path, or null when the path is not /invoke/<name>. */
export function functionFromPath(url: string): string | null {
  const q = url.indexOf('?');
  const p = q >= 0 ? url.slice(0, q) : url;
  if (!p.startsWith(INVOKE_PREFIX)) return null;
  const raw = p.slice(INVOKE_PREFIX.length);
  if (raw === '' || raw.includes('/')) return null;
  try {
    return decodeURIComponent(raw);
  } catch {
    throw new InvalidArgument(`bad percent-encoding in function name ${JSON.stringify(raw)}`);
  }
}

export interface GatewayResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** The HTTP response for an invocation result (pure; the request handler only writes it). */
export function responseForResult(r: InvokeResult): GatewayResponse {
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    'x-spore-timings': timingsHeader(r.timings),
    'x-spore-seed': r.seedId,
    'x-spore-seed-level': String(r.seedLevel),
    'x-spore-instance': r.instanceId,
    // 1: the instance was parked (forked before this call), 0: forked for it
    'x-spore-parked': r.parked ? '1' : '0',
  };
  if (r.ok) return { status: 200, headers, body: r.result ?? 'null' };
  const error = r.error ?? { kind: 'internal' as const, message: 'invocation failed without an error', stack: null };
  headers['x-spore-error'] = error.kind;
  return {
    status: httpStatusOfInvokeError(error.kind),
    headers,
    // only the function's own frames: spore's frames and install paths are not the caller's business
    body: JSON.stringify({ error: { kind: error.kind, message: scrubText(error.message), stack: functionStack(error.stack) } }),
  };
}

/** The HTTP response for a request that did not produce an InvokeResult. */
export function responseForError(err: unknown): GatewayResponse {
  const { code, message } = statusOf(err);
  if (code === Code.RESOURCE_EXHAUSTED) {
    // Overloaded here, or RESOURCE_EXHAUSTED from a remote FRI (which carries retryAfterMs too)
    const ms = err instanceof Overloaded ? err.retryAfterMs : undefined;
    return {
      status: 429,
      headers: { 'content-type': 'application/json', 'retry-after': String(retryAfterSeconds(ms)), 'x-spore-error': 'overloaded' },
      body: JSON.stringify({ error: { kind: 'overloaded', code: codeName(code), message: scrubText(message) } }),
    };
  }
  return {
    status: httpStatusOfCode(code),
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ error: { kind: 'request', code: codeName(code), message: scrubText(message) } }),
  };
}

/** A refusal the gateway itself makes; `code` is a gRPC code name, as in every other error body. */
function plain(status: number, code: CodeValue, message: string, extra: Record<string, string> = {}): GatewayResponse {
  return {
    status,
    headers: { 'content-type': 'application/json', ...extra },
    body: JSON.stringify({ error: { kind: 'request', code: codeName(code), message } }),
  };
}

function send(res: http.ServerResponse, r: GatewayResponse): void {
  const body = Buffer.from(r.body, 'utf8');
  res.writeHead(r.status, { ...r.headers, 'content-length': String(body.length) });
  res.end(body);
}

class BodyTooLarge extends Error {}

/**
 * The client went away before its body arrived whole (Node's "aborted"): there is nobody to
 * answer, and nothing failed on our side. (Fuzzing finding: it used to reach the catch-all as a
 * warn "gateway: request failed" with a stack; fuzz/corpus/gateway/regress-client-gone-*.)
 */
class ClientGone extends Error {}

/** The gateway's request bodies held at once, across connections (GatewayOptions.bodyBudgetBytes). */
class BodyBudget {
  private used = 0;
  constructor(readonly limit: number) {}
  /** Hold `n` more bytes; false (nothing held) when they do not fit. */
  take(n: number): boolean {
    if (this.used + n > this.limit) return false;
    this.used += n;
    return true;
  }
  give(n: number): void {
    this.used = Math.max(0, this.used - n);
  }
}

/** The body does not fit in what the gateway holds for all requests at once (BodyBudget). */
class BodyBudgetFull extends Error {}

/**
 * Read the whole body up to `limit` bytes; rejects with BodyTooLarge beyond it, and with
 * BodyBudgetFull when `hold` refuses bytes. Bytes are held as they arrive, never on a
 * declared length alone: headers that declare 6 MiB and send nothing hold nothing.
 */
function readBody(req: http.IncomingMessage, limit: number, hold: (n: number) => boolean): Promise<string> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) return Promise.reject(new BodyTooLarge());
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (c: Buffer): void => {
      size += c.length;
      if (size > limit) {
        req.off('data', onData);
        reject(new BodyTooLarge());
        return;
      }
      if (!hold(c.length)) {
        req.off('data', onData);
        reject(new BodyBudgetFull());
        return;
      }
      chunks.push(c);
    };
    req.on('data', onData);
    req.once('end', () => resolve(Buffer.concat(chunks, size).toString('utf8')));
    req.once('error', (e: Error) => reject(new ClientGone(e.message)));
  });
}

/** The route a request path belongs to (a metrics label: bounded). */
function routeOf(pathname: string): 'invoke' | 'metrics' | 'healthz' | 'other' {
  if (pathname.startsWith(INVOKE_PREFIX)) return 'invoke';
  if (pathname === '/metrics') return 'metrics';
  if (pathname === '/healthz') return 'healthz';
  return 'other';
}

/** The request listener (exported so tests or other servers can mount it). */
export function gatewayHandler(rt: Invoker, log: Logger, opts: GatewayOptions = {}): http.RequestListener {
  const limit = opts.maxBodyBytes ?? MAX_EVENT_BYTES;
  const token = opts.token ?? null;
  const metrics = opts.metrics;
  const budget = new BodyBudget(opts.bodyBudgetBytes ?? DEFAULT_BODY_BUDGET_BYTES);
  return (req, res) => {
    if (metrics) {
      const route = routeOf((req.url ?? '/').split('?')[0] ?? '/');
      res.once('finish', () => metrics.observeGateway(route, res.statusCode));
    }
    void handle(req, res).catch((e: unknown) => {
      log.warn({ err: (e as Error)?.stack ?? String(e) }, 'gateway: request failed');
      if (!res.headersSent) send(res, responseForError(e));
      else res.destroy();
    });
  };

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = req.url ?? '/';
    const pathname = url.split('?')[0] ?? '/';
    if (pathname === '/healthz') {
      if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, plain(405, Code.UNIMPLEMENTED, 'use GET /healthz', { allow: 'GET, HEAD' }));
      const report: HealthBody = opts.health ? await opts.health() : { ok: true };
      return send(res, { status: report.ok ? 200 : 503, headers: { 'content-type': 'application/json', 'cache-control': 'no-store' }, body: JSON.stringify(report) });
    }
    if (token !== null && !bearerMatches(req.headers.authorization, token)) {
      // its body (if any) is not read: close rather than drain what an unauthenticated client sends
      res.shouldKeepAlive = false;
      return send(res, plain(401, Code.UNAUTHENTICATED, 'this gateway needs "Authorization: Bearer <token>" (spored --gateway-token / --gateway-token-file)', { 'www-authenticate': 'Bearer realm="spore"', connection: 'close' }));
    }
    if (pathname === '/metrics') {
      if (!metrics) return send(res, plain(404, Code.NOT_FOUND, 'metrics are not enabled on this gateway'));
      if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, plain(405, Code.UNIMPLEMENTED, 'use GET /metrics', { allow: 'GET, HEAD' }));
      return send(res, { status: 200, headers: { 'content-type': metrics.contentType, 'cache-control': 'no-store' }, body: await metrics.text() });
    }
    let fn: string | null;
    try {
      fn = functionFromPath(url);
    } catch (e) {
      return send(res, responseForError(e));
    }
    if (fn === null) return send(res, plain(404, Code.NOT_FOUND, `no route ${pathname}; use POST /invoke/<function>, GET /metrics or GET /healthz`));
    if (req.method !== 'POST') return send(res, plain(405, Code.UNIMPLEMENTED, `use POST /invoke/${fn} with a JSON body`, { allow: 'POST' }));

    const t0 = performance.now();
    let body: string;
    // The body's bytes stay held until the answer is out (the event lives as long as the
    // call), or the connection is gone: a pipelined request's queued response never emits
    // 'close' when its socket closes (Node 20), and its bytes would stay held for good.
    let held = 0;
    let released = false;
    const sock = req.socket;
    const release = (): void => {
      if (released) return;
      released = true;
      budget.give(held);
      sock.off('close', release);
    };
    res.once('close', release);
    sock.once('close', release);
    try {
      body = await readBody(req, limit, (n) => {
        if (!budget.take(n)) return false;
        held += n;
        return true;
      });
    } catch (e) {
      if (e instanceof ClientGone) {
        log.debug({ fn, err: e.message }, 'gateway: client went away before its body arrived');
        return;
      }
      if (e instanceof BodyBudgetFull) {
        log.debug({ fn, budget: budget.limit }, 'gateway: request bodies over budget');
        // the rest of the body is not read: close rather than drain it
        res.shouldKeepAlive = false;
        return send(res, {
          status: 429,
          headers: { 'content-type': 'application/json', 'retry-after': '1', 'x-spore-error': 'overloaded', connection: 'close' },
          body: JSON.stringify({ error: { kind: 'overloaded', code: codeName(Code.RESOURCE_EXHAUSTED), message: `the gateway holds ${budget.limit} bytes of request bodies at once and they are in use; retry shortly (spored --gateway-body-budget)` } }),
        });
      }
      if (!(e instanceof BodyTooLarge)) throw e;
      return tooLarge(res, limit);
    }
    let event: string;
    let name: string;
    try {
      name = validateFunctionName(fn);
      event = validateEvent(body, limit);
    } catch (e) {
      // a too-large event is 413 whichever check finds it (not 429: it is not overload)
      if (statusOf(e).code === Code.RESOURCE_EXHAUSTED) return tooLarge(res, limit);
      return send(res, responseForError(e));
    }
    let result: InvokeResult;
    try {
      result = await rt.invoke(name, event);
    } catch (e) {
      const r = responseForError(e);
      if (r.status === 429) log.debug({ fn, status: r.status, err: statusOf(e).message }, 'gateway: overloaded');
      else log.info({ fn, status: r.status, err: statusOf(e).message }, 'gateway: rejected');
      return send(res, r);
    }
    const r = responseForResult(result);
    send(res, r);
    log.debug({ fn, status: r.status, totalUs: result.timings.total, gatewayUs: Math.round((performance.now() - t0) * 1000) }, 'gateway: invoke');
  }
}

function tooLarge(res: http.ServerResponse, limit: number): void {
  // The rest of the body is not read: close the connection rather than drain an unbounded upload.
  res.shouldKeepAlive = false;
  send(res, plain(413, Code.RESOURCE_EXHAUSTED, `request body exceeds ${limit} bytes; send a smaller event`, { connection: 'close' }));
}

/** Start the gateway; resolves once listening (port 0 picks a free port: see server.address()). */
export async function startGateway(rt: Invoker, address: string, log: Logger, opts: GatewayOptions = {}): Promise<http.Server> {
  const { host, port } = parseAddress(address);
  const handler = gatewayHandler(rt, log, opts);
  // Once closing (a restart hands the listening socket to the next spored), answers carry
  // "Connection: close": a busy keep-alive client never goes idle, and would otherwise have
  // its connection cut, with a request on it, when the grace ends. The answers being worked on
  // when close() is called are marked then; later ones as they arrive.
  const pending = new Set<http.ServerResponse>();
  const headersTimeout = opts.headersTimeoutMs ?? HEADERS_TIMEOUT_MS;
  // (the timeouts are read at construction: set later they do not apply; Node checks them
  // every connectionsCheckingInterval, 30 s by default)
  const server: http.Server = http.createServer({
    keepAlive: true, noDelay: true, headersTimeout, requestTimeout: Math.max(REQUEST_TIMEOUT_MS, headersTimeout), connectionsCheckingInterval: Math.min(1000, headersTimeout),
  }, (req, res) => {
    // a request came: the silent-connection timer below is done (an invocation may then take
    // as long as its function's timeout; after the answer Node applies keepAliveTimeout)
    req.socket.setTimeout(0);
    // until its body is in, it may be cut off to make room (slowRequestMs)
    const socket = req.socket;
    receiving.set(socket, Date.now());
    const done = (): void => { if (receiving.get(socket) !== undefined) receiving.delete(socket); };
    req.once('end', done);
    req.once('close', done);
    if (!server.listening) res.shouldKeepAlive = false;
    else {
      pending.add(res);
      res.once('close', () => pending.delete(res));
    }
    handler(req, res);
  });
  const close = server.close.bind(server);
  server.close = (cb?: (err?: Error) => void): http.Server => {
    for (const res of pending) if (!res.headersSent) res.shouldKeepAlive = false;
    pending.clear();
    return close(cb);
  };
  // Longer than typical client/LB idle timeouts so the server is not the side that drops pooled connections.
  server.keepAliveTimeout = 65_000;
  server.maxConnections = connectionCap(opts.maxConnections ?? DEFAULT_MAX_CONNECTIONS, log);
  const slowMs = opts.slowRequestMs ?? SLOW_REQUEST_MS;
  /** sockets whose request body is still arriving, with when its headers came */
  const receiving = new Map<Socket, number>();
  // a connection that never sends a request holds a descriptor as surely as a slow one
  server.on('connection', (socket: Socket) => {
    socket.setTimeout(headersTimeout, () => socket.destroy());
    socket.once('close', () => receiving.delete(socket));
  });
  let dropped = 0;
  let dropWarned = 0;
  let idleClosedAt = 0;
  server.on('drop', () => {
    dropped++;
    const now = Date.now();
    // At the cap, idle keep-alive connections go first (at most once a second): connections
    // that made one request and went quiet would otherwise hold the gateway for
    // keepAliveTimeout (65 s) while callers with requests are turned away. So do requests
    // whose body has been arriving for longer than slowRequestMs, slowest first.
    if (now - idleClosedAt >= 1000) {
      idleClosedAt = now;
      server.closeIdleConnections();
      const slow = [...receiving].filter(([, since]) => now - since > slowMs).sort((a, b) => a[1] - b[1]);
      for (const [socket] of slow.slice(0, 64)) {
        receiving.delete(socket);
        if (socket.writable) socket.end('HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
        socket.destroy();
      }
    }
    if (now - dropWarned < 10_000) return;
    dropWarned = now;
    log.warn({ dropped, maxConnections: server.maxConnections }, `gateway: ${server.maxConnections} connections are open; new ones are closed at once, and idle keep-alive ones and requests slower than ${slowMs} ms closed to make room (spored --gateway-max-connections)`);
  });
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    // a request that did not arrive in time (headersTimeout, requestTimeout) is a 408, as Node's own answer
    const status = err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? '408 Request Timeout' : '400 Bad Request';
    if (socket.writable) socket.end(`HTTP/1.1 ${status}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
    else socket.destroy();
    log.debug({ err: err.message }, 'gateway: client error');
  });
  const custody = opts.custody;
  const key = gatewayCustodyKey(address);
  // a socket another spored left with the keeper for this address; others (an address
  // changed across a restart) are let go, so their ports are free again
  for (const k of custody?.keys() ?? []) if (isListenerKey(k, 'gateway') && k !== key) custody?.release(k);
  const held = custody?.reclaim(key) ?? null;
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      const listening = (): void => {
        server.off('error', reject);
        resolve();
      };
      if (held !== null) server.listen({ fd: held }, listening);
      // a deep backlog: while spored restarts, connections wait in it (the kernel caps it at
      // net.core.somaxconn)
      else server.listen({ port, host, backlog: LISTEN_BACKLOG }, listening);
    });
  } catch (e) {
    if (held !== null) {
      // not a listening socket any more (it should be): let it go and make a new one
      custody?.release(key);
      log.warn({ address, err: (e as Error).message }, 'gateway: the socket the keeper held is unusable; binding anew');
      return startGateway(rt, address, log, opts);
    }
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'EADDRINUSE' ? 'the address is already in use (another spored, or another program)'
      : code === 'EACCES' ? 'permission denied' : code === 'EADDRNOTAVAIL' ? 'no such local address' : (e as Error).message;
    throw new GatewayListenError(address, `gateway: cannot listen on ${address}: ${why}${code ? ` (${code})` : ''}`, { cause: e });
  }
  if (custody && held === null) {
    const fd = listeningFd(server);
    if (fd !== null) await custody.park(key, fd).catch((e: Error) => log.warn({ address, err: e.message }, 'gateway: the keeper did not take the listening socket; a restart will refuse connections meanwhile'));
  }
  const a = server.address() as AddressInfo;
  if (!isLoopback(host) && !opts.token) {
    log.warn({ address: `${a.address}:${a.port}` }, 'gateway listens beyond loopback without a token: anyone who reaches it may invoke functions and read /metrics; set --gateway-token-file');
  }
  log.info({ address: `${a.address}:${a.port}`, token: opts.token ? 'required' : 'none' }, 'gateway listening');
  return server;
}

/**
 * `wanted` connections at most, and at most half of this process's open-file limit (the
 * rest is FRI's, the seeds' and containers' stdio): a cap above the limit would bring back
 * what it is for (held connections taking every descriptor). Logs when it lowers the cap.
 */
function connectionCap(wanted: number, log: Logger): number {
  let soft = Infinity;
  try {
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(fs.readFileSync('/proc/self/limits', 'utf8'));
    if (m?.[1] && m[1] !== 'unlimited') soft = Number(m[1]);
  } catch { /* no /proc: the flag's value */ }
  const cap = Math.max(1, Math.min(wanted, Math.floor(soft / 2)));
  if (cap < wanted) log.warn({ wanted, cap, openFileLimit: soft }, `gateway: --gateway-max-connections ${wanted} is above half of spored's open-file limit (${soft}); ${cap} connections at most`);
  return cap;
}

/** The gateway's address could not be bound; `address` names it. */
export class GatewayListenError extends Error {
  constructor(readonly address: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'GatewayListenError';
  }
}
