// The node gateway (the paper's per-node HTTP front door): `POST /invoke/<function>` with a JSON
// body runs the function through the FunctionRuntime and answers with the handler's JSON.
//
// Responses
//   200  the handler's result (JSON text exactly as returned), content-type application/json
//   400  body is not JSON, or a bad function name           {"error":{"kind":"request",...}}
//   404  unknown function or path                           {"error":{"kind":"request",...}}
//   405  not POST on /invoke/... (Allow: POST)
//   413  body larger than the event limit (6 MiB)
//   500  the invocation failed: handler threw, module failed to load, instance crashed, out of
//        memory, or spore failed around it                  {"error":{"kind","message","stack"}}
//        OOM is a 500 (not 507: that is WebDAV "insufficient storage"); tell the kinds apart by
//        the body's error.kind or the x-spore-error header.
//   504  the handler exceeded its timeout (kind "timeout")
//   503  the runtime is out of capacity or unavailable; other runtime errors map by gRPC code.
// Headers on every invocation that reached an instance (ok or not):
//   x-spore-timings      compact JSON of PhaseTimings (microseconds)
//   x-spore-seed         id of the seed the instance was forked from
//   x-spore-seed-level   0, 1 or 2 (root, language, function seed)
//   x-spore-instance     instance id
//   x-spore-error        the error kind, when the invocation failed
// Keep-alive is on (wrk and other load generators reuse connections).
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { Code, InvalidArgument, statusOf } from './errors.js';
import type { CodeValue } from './errors.js';
import type { InvokeErrorKind, InvokeOptions, InvokeResult, PhaseTimings } from './fri/types.js';
import { MAX_EVENT_BYTES, validateEvent, validateFunctionName } from './fri/validate.js';

/** What the gateway needs: the in-process runtime, or a FriClient for a gateway in another process. */
export interface Invoker {
  invoke(fn: string, event: string, opts?: InvokeOptions): Promise<InvokeResult>;
}

export interface GatewayOptions {
  /** request body limit in bytes (default MAX_EVENT_BYTES) */
  maxBodyBytes?: number;
}

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
    case Code.RESOURCE_EXHAUSTED:
    case Code.UNAVAILABLE:
    case Code.CANCELLED: return 503;
    case Code.DEADLINE_EXCEEDED: return 504;
    default: return 500;
  }
}

const CODE_NAMES = new Map<number, string>(Object.entries(Code).map(([k, v]) => [v, k]));

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
  };
  if (r.ok) return { status: 200, headers, body: r.result ?? 'null' };
  const error = r.error ?? { kind: 'internal' as const, message: 'invocation failed without an error', stack: null };
  headers['x-spore-error'] = error.kind;
  return {
    status: httpStatusOfInvokeError(error.kind),
    headers,
    body: JSON.stringify({ error: { kind: error.kind, message: error.message, stack: error.stack } }),
  };
}

/** The HTTP response for a request that did not produce an InvokeResult. */
export function responseForError(err: unknown): GatewayResponse {
  const { code, message } = statusOf(err);
  return {
    status: httpStatusOfCode(code),
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ error: { kind: 'request', code: CODE_NAMES.get(code) ?? 'UNKNOWN', message } }),
  };
}

function plain(status: number, message: string, extra: Record<string, string> = {}): GatewayResponse {
  return {
    status,
    headers: { 'content-type': 'application/json', ...extra },
    body: JSON.stringify({ error: { kind: 'request', code: http.STATUS_CODES[status] ?? String(status), message } }),
  };
}

function send(res: http.ServerResponse, r: GatewayResponse): void {
  const body = Buffer.from(r.body, 'utf8');
  res.writeHead(r.status, { ...r.headers, 'content-length': String(body.length) });
  res.end(body);
}

class BodyTooLarge extends Error {}

/** Read the whole body up to `limit` bytes; rejects with BodyTooLarge beyond it. */
function readBody(req: http.IncomingMessage, limit: number): Promise<string> {
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
      chunks.push(c);
    };
    req.on('data', onData);
    req.once('end', () => resolve(Buffer.concat(chunks, size).toString('utf8')));
    req.once('error', reject);
  });
}

/** The request listener (exported so tests or other servers can mount it). */
export function gatewayHandler(rt: Invoker, log: Logger, opts: GatewayOptions = {}): http.RequestListener {
  const limit = opts.maxBodyBytes ?? MAX_EVENT_BYTES;
  return (req, res) => {
    void handle(req, res).catch((e: unknown) => {
      log.warn({ err: (e as Error)?.stack ?? String(e) }, 'gateway: request failed');
      if (!res.headersSent) send(res, responseForError(e));
      else res.destroy();
    });
  };

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = req.url ?? '/';
    if (url === '/healthz' || url.startsWith('/healthz?')) {
      if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, plain(405, 'use GET /healthz', { allow: 'GET, HEAD' }));
      return send(res, { status: 200, headers: { 'content-type': 'application/json' }, body: '{"ok":true}' });
    }
    let fn: string | null;
    try {
      fn = functionFromPath(url);
    } catch (e) {
      return send(res, responseForError(e));
    }
    if (fn === null) return send(res, plain(404, `no route ${url}; use POST /invoke/<function> or GET /healthz`));
    if (req.method !== 'POST') return send(res, plain(405, `use POST /invoke/${fn} with a JSON body`, { allow: 'POST' }));

    const t0 = performance.now();
    let body: string;
    try {
      body = await readBody(req, limit);
    } catch (e) {
      if (!(e instanceof BodyTooLarge)) throw e;
      // The rest of the body is not read: close the connection rather than drain an unbounded upload.
      res.shouldKeepAlive = false;
      return send(res, plain(413, `request body exceeds ${limit} bytes; send a smaller event`, { connection: 'close' }));
    }
    let result: InvokeResult;
    try {
      result = await rt.invoke(validateFunctionName(fn), validateEvent(body, limit));
    } catch (e) {
      const r = responseForError(e);
      log.info({ fn, status: r.status, err: statusOf(e).message }, 'gateway: rejected');
      return send(res, r);
    }
    const r = responseForResult(result);
    send(res, r);
    log.debug({ fn, status: r.status, totalUs: result.timings.total, gatewayUs: Math.round((performance.now() - t0) * 1000) }, 'gateway: invoke');
  }
}

/** "host:port", "[v6]:port" or ":port"/"port" (all interfaces) -> listen arguments. */
export function parseAddress(address: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(address) ?? /^()()(\d+)$/.exec(address);
  const port = m ? Number(m[3]) : NaN;
  if (!m || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new InvalidArgument(`bad gateway address ${JSON.stringify(address)}; use host:port, e.g. 127.0.0.1:8780`);
  }
  const host = m[1] ?? m[2] ?? '';
  return { host: host === '' ? '0.0.0.0' : host, port };
}

/** Start the gateway; resolves once listening (port 0 picks a free port: see server.address()). */
export async function startGateway(rt: Invoker, address: string, log: Logger, opts: GatewayOptions = {}): Promise<http.Server> {
  const { host, port } = parseAddress(address);
  const server = http.createServer({ keepAlive: true, noDelay: true }, gatewayHandler(rt, log, opts));
  // Longer than typical client/LB idle timeouts so the server is not the side that drops pooled connections.
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 66_000;
  server.on('clientError', (err, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
    else socket.destroy();
    log.debug({ err: err.message }, 'gateway: client error');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const a = server.address() as AddressInfo;
  log.info({ address: `${a.address}:${a.port}` }, 'gateway listening');
  return server;
}
