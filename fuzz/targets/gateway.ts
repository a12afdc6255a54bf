// Fuzz target 3: the gateway's HTTP inputs (daemon/gateway.ts) on the in-memory FakeRuntime
// (test/fake-runtime.ts). The server is the real one (startGateway: its options, its request
// handler, its clientError handler), listening on a loopback port that nothing connects to;
// each input is one client connection handed to it in-process (server.emit('connection')) as
// an in-memory duplex stream, carrying the fuzzed bytes: one or more HTTP/1.1 requests
// (method, path, headers, body), well-formed or not.
//
// Input: [config byte][the bytes the client sends].
//   config bit 0: body limit 64 bytes instead of the default 6 MiB (to reach 413 cheaply)
//
// Acceptable (anything else is a finding):
//  - every response that the request handler wrote has a valid status, content-type
//    application/json and a JSON body; 200 only for an invocation that returned; 5xx only
//    for an invocation that failed (x-spore-error set), never a request-level 500 (an error
//    code UNKNOWN or INTERNAL in the body); 4xx/5xx bodies are {"error":{kind,message,...}};
//  - bytes Node's HTTP parser refuses are answered by the clientError handler (a bare 400,
//    the last thing on the connection);
//  - the handler's catch-all (an exception escaping it: "gateway: request failed") is never
//    reached, whether the request arrived whole or its client hung up in the middle of it;
//  - the server answers what it parsed and goes quiet within the per-input deadline (no hang).
import type * as http from 'node:http';
import { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import pino from 'pino';
import { startGateway } from '../../daemon/gateway.js';
import { FakeRuntime } from '../../test/fake-runtime.js';
import { FuzzFinding, INPUT_DEADLINE_MS, withDeadline, keepGoing } from '../lib/oracle.js';

const SMALL_LIMIT = 64;

interface Tracked { method: string; url: string; req: http.IncomingMessage; res: http.ServerResponse }

interface Gateway {
  server: http.Server;
  warnings: string[];
  started: number;
  finished: number;
  /** the requests each connection's parser produced, in order */
  requests: WeakMap<object, Tracked[]>;
}

const gateways = new Map<number, Promise<Gateway>>();

function recordingLogger(warnings: string[]): Logger {
  const log = pino({ level: 'warn' }, { write: (line: string) => { warnings.push(line); } });
  return log;
}

async function gateway(limit: number | undefined): Promise<Gateway> {
  const key = limit ?? 0;
  let g = gateways.get(key);
  if (!g) {
    g = (async () => {
      const rt = new FakeRuntime();
      const base = { language: 'node' as const, handler: 'handler', memoryMiB: 128, timeoutMs: 3000, env: {} };
      for (const [name, code] of [['echo', 'echo'], ['throws', 'throw'], ['slow', 'timeout'], ['big', 'oom']] as const) {
        await rt.deploy({ ...base, name, code });
      }
      const warnings: string[] = [];
      const server = await startGateway(rt, '127.0.0.1:0', recordingLogger(warnings), limit === undefined ? {} : { maxBodyBytes: limit });
      server.unref();
      const gw: Gateway = { server, warnings, started: 0, finished: 0, requests: new WeakMap() };
      server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
        gw.started++;
        const list = gw.requests.get(req.socket) ?? [];
        list.push({ method: req.method ?? '', url: req.url ?? '', req, res });
        gw.requests.set(req.socket, list);
        let done = false;
        const finish = (): void => { if (!done) { done = true; gw.finished++; } };
        res.once('finish', finish);
        res.once('close', finish);
      });
      return gw;
    })();
    gateways.set(key, g);
  }
  return g;
}

class ClientConnection extends Duplex {
  readonly out: Buffer[] = [];
  outBytes = 0;
  remoteAddress = '127.0.0.1';
  remotePort = 40000;
  constructor() {
    super({ allowHalfOpen: true });
  }
  override _read(): void {}
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.out.push(Buffer.from(chunk));
    this.outBytes += chunk.length;
    cb();
  }
  override _final(cb: (err?: Error | null) => void): void { cb(); }
  setTimeout(): this { return this; }
  setNoDelay(): this { return this; }
  setKeepAlive(): this { return this; }
}

interface ParsedResponse { status: number; headers: Map<string, string>; body: Buffer }

/** The responses in `buf`; `methods[i]` is the method of the i-th request (a HEAD answer has no body). */
function parseResponses(buf: Buffer, methods: string[]): ParsedResponse[] {
  const out: ParsedResponse[] = [];
  let at = 0;
  while (at < buf.length) {
    const head = methods[out.length] === 'HEAD';
    const end = buf.indexOf('\r\n\r\n', at);
    if (end < 0) throw new FuzzFinding(`server wrote a truncated response head: ${JSON.stringify(buf.subarray(at, at + 200).toString('latin1'))}`);
    const lines = buf.subarray(at, end).toString('latin1').split('\r\n');
    const m = /^HTTP\/1\.1 (\d{3}) /.exec(lines[0] ?? '');
    if (!m) throw new FuzzFinding(`bad status line ${JSON.stringify(lines[0])}`);
    const headers = new Map<string, string>();
    for (const l of lines.slice(1)) {
      const c = l.indexOf(':');
      if (c <= 0) throw new FuzzFinding(`bad header line ${JSON.stringify(l)}`);
      headers.set(l.slice(0, c).toLowerCase(), l.slice(c + 1).trim());
    }
    at = end + 4;
    let body: Buffer;
    const cl = headers.get('content-length');
    if (head) {
      body = Buffer.alloc(0);
    } else if (cl !== undefined) {
      const n = Number(cl);
      if (!Number.isInteger(n) || n < 0 || at + n > buf.length) throw new FuzzFinding(`response body shorter than its content-length ${cl}`);
      body = buf.subarray(at, at + n);
      at += n;
    } else {
      body = buf.subarray(at);
      at = buf.length;
    }
    out.push({ status: Number(m[1]), headers, body });
  }
  return out;
}

function checkResponse(r: ParsedResponse, req: Tracked | undefined): void {
  const fromHandler = req !== undefined;
  if (!fromHandler) {
    // The parser refused the bytes: the clientError handler's bare 400 (or Node's own answer).
    if (r.status < 400 || r.status > 599) throw new FuzzFinding(`parser-level answer with status ${r.status}`);
    return;
  }
  if (r.status !== 200 && (r.status < 400 || r.status > 599)) throw new FuzzFinding(`status ${r.status}`);
  if (r.headers.get('content-type') !== 'application/json') throw new FuzzFinding(`status ${r.status} with content-type ${r.headers.get('content-type')}`);
  if (req.method === 'HEAD') {
    // 400 too: a path that is not a path (a bad percent-encoding, /invoke/ec%ZZho) is refused
    // before the method is looked at, as for every method (a short run found it, 2026-12-01)
    if (r.status !== 200 && r.status !== 400 && r.status !== 404 && r.status !== 405) throw new FuzzFinding(`HEAD ${req.url}: status ${r.status}`);
    return;
  }
  let body: unknown;
  try {
    body = JSON.parse(r.body.toString('utf8'));
  } catch {
    throw new FuzzFinding(`status ${r.status} with a body that is not JSON: ${JSON.stringify(r.body.subarray(0, 200).toString('utf8'))}`);
  }
  const failedInvocation = r.headers.has('x-spore-error');
  if (r.status === 200) {
    const healthz = req.url === '/healthz' || req.url.startsWith('/healthz?');
    if (!r.headers.has('x-spore-instance') && !(healthz && JSON.stringify(body) === '{"ok":true}')) {
      throw new FuzzFinding(`200 for ${req.method} ${req.url} without an invocation`);
    }
    return;
  }
  const error = (body as { error?: { kind?: unknown; message?: unknown; code?: unknown } } | null)?.error;
  if (!error || typeof error.kind !== 'string' || typeof error.message !== 'string' || error.message === '') {
    throw new FuzzFinding(`status ${r.status} without {"error":{kind,message}}: ${r.body.toString('utf8').slice(0, 200)}`);
  }
  if (r.status >= 500 && !failedInvocation) {
    throw new FuzzFinding(`request-level ${r.status} (${String(error.code)}): ${error.message}`);
  }
  if (error.kind === 'request' && (error.code === 'UNKNOWN' || error.code === 'INTERNAL')) {
    throw new FuzzFinding(`error code ${error.code} in a ${r.status}: ${error.message}`);
  }
}

export const fuzz = keepGoing(fuzzOne);

async function fuzzOne(data: Buffer): Promise<void> {
  const config = data[0] ?? 0;
  const bytes = data.subarray(1);
  const gw = await gateway((config & 1) !== 0 ? SMALL_LIMIT : undefined);
  const warningsBefore = gw.warnings.length;
  const startedBefore = gw.started;
  const conn = new ClientConnection();
  let closed = false;
  conn.once('close', () => { closed = true; });

  await withDeadline((async () => {
    gw.server.emit('connection', conn);
    if (bytes.length > 0) conn.push(bytes);
    // Quiet: every request parsed so far answered, nothing new written, for a few ticks. A
    // request whose body has not fully arrived keeps waiting for it: that is the client's
    // doing, not a hang.
    let quiet = 0;
    let last = '';
    while (!closed && quiet < 4) {
      await new Promise((resolve) => setImmediate(resolve));
      const now = `${gw.started}/${gw.finished}/${conn.outBytes}/${conn.writableEnded}`;
      quiet = now === last ? quiet + 1 : 0;
      last = now;
    }
  })(), INPUT_DEADLINE_MS, 'the gateway answering what it parsed');

  const complete = gw.started - startedBefore;
  const completeWarnings = gw.warnings.length - warningsBefore;
  const unanswered = gw.started - gw.finished;
  // The client hangs up; requests still waiting for their body are abandoned.
  conn.push(null);
  await withDeadline(new Promise<void>((resolve) => {
    if (closed) return resolve();
    conn.once('close', () => resolve());
    conn.once('finish', () => resolve());
    setImmediate(() => { if (!conn.destroyed) conn.destroy(); });
  }), INPUT_DEADLINE_MS, 'the gateway closing the connection');
  // Let abandoned requests settle so their effects (log lines) land in this input: every
  // request either answered or torn down by Node, then a few ticks for the handler to react.
  const settled = (): boolean => (gw.requests.get(conn) ?? []).every((t) => t.res.writableEnded || t.req.destroyed);
  for (let i = 0, after = 0; i < 200 && after < 8; i++) {
    await new Promise((resolve) => setImmediate(resolve));
    if (settled()) after++;
  }

  // The catch-all logs "gateway: request failed" (warn) when an exception escapes the handler:
  // never for a request that arrived whole, nor for one whose client went away mid-body (that
  // is the client's doing, not a server failure).
  const escaped = gw.warnings.slice(warningsBefore).filter((l) => l.includes('gateway: request failed'));
  if (escaped.length > 0) {
    const when = completeWarnings > 0 && unanswered === 0 ? 'a complete request' : 'a request whose client hung up';
    throw new FuzzFinding(`an exception escaped the gateway's handler on ${when}: ${escaped.join('').slice(0, 500)}`);
  }
  const requests = gw.requests.get(conn) ?? [];
  if (requests.length !== complete) throw new FuzzFinding(`${complete} requests started, ${requests.length} seen on this connection`);
  const responses = parseResponses(Buffer.concat(conn.out), requests.map((r) => r.method));
  // The handler's answers come in request order; the clientError handler's bare 400 (bytes the
  // parser refused) may come last, even before an answer still in progress.
  const last = responses[responses.length - 1];
  const parserAnswer = last !== undefined && !last.headers.has('content-type') && last.status >= 400 ? responses.pop() : undefined;
  if (responses.length > requests.length) throw new FuzzFinding(`${responses.length} responses for ${requests.length} parsed requests`);
  responses.forEach((r, i) => checkResponse(r, requests[i]));
  if (parserAnswer) checkResponse(parserAnswer, undefined);
  // A request whose body arrived in full is answered (end() called), connection or not.
  for (const t of requests) {
    if (t.req.complete && !t.res.writableEnded) throw new FuzzFinding(`${t.method} ${t.url}: the handler never answered a complete request`);
  }
}
