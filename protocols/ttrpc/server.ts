// ttrpc server (unary only), wire-compatible with containerd/ttrpc server.go.
//
// This is the shim daemon's public entry point: every byte from the socket is untrusted. The
// frame decoder bounds memory; everything after it converts failures into a ttrpc status on
// the offending stream, or closes only that connection. Nothing here may throw out of an
// event handler.
//
// Peer credentials: Go ttrpc can require SO_PEERCRED uid == our uid. Node's stdlib cannot read
// SO_PEERCRED, so we rely on the socket file being created 0600 (owner-only connect), which gives
// the same same-user guarantee for a root-owned shim. Callers wanting more can wrap
// handleConnection() with their own check.

import * as fs from 'node:fs';
import * as net from 'node:net';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import type { DescMessage, DescMethod, MessageInitShape, MessageShape } from '@bufbuild/protobuf';
import type { GenService, GenServiceMethods } from '@bufbuild/protobuf/codegenv2';
import { Code, Cancelled, DeadlineExceeded, SporeError, AlreadyExists, FailedPrecondition, statusOf } from '../../sys/errors.js';
import type { CodeValue } from '../../sys/errors.js';
import { RequestSchema, ResponseSchema } from '../../fri-proto/gen/ttrpc/request_pb.js';
import type { Request } from '../../fri-proto/gen/ttrpc/request_pb.js';
import { DEFAULT_MAX_DATA_LENGTH, FrameDecoder, FrameFlags, FrameType, encodeFrame } from './frame.js';
import type { DecodedFrame, FrameHeader } from './frame.js';

/** Metadata key containerd uses to carry the namespace (namespaces/ttrpc.go). */
export const NAMESPACE_METADATA_KEY = 'containerd-namespace-ttrpc';

export interface CallContext {
  service: string;
  method: string;
  /** Keys lower-cased; one entry per KeyValue, in arrival order. */
  metadata: Map<string, string[]>;
  namespace: string | undefined;
  /** Fires on timeout_nano deadline (reason DeadlineExceeded), connection loss or server close (Cancelled). */
  signal: AbortSignal;
  /** Absolute deadline (Date.now() ms) from timeout_nano, if the caller set one. */
  deadline: number | undefined;
  connectionId: number;
}

export type UnaryHandler<I extends DescMessage, O extends DescMessage> = (
  request: MessageShape<I>,
  ctx: CallContext,
) => Promise<MessageInitShape<O> | MessageShape<O>>;

/**
 * Implementation object keyed by the generated method local names (e.g. `create`, `forward`).
 * Missing methods answer UNIMPLEMENTED, which containerd requires for unsupported RPCs.
 */
export type ServiceImplementation<M extends GenServiceMethods> = {
  [K in keyof M]?: UnaryHandler<M[K]['input'], M[K]['output']>;
};

/** Implementation type for a generated service: `ServiceImplementationFor<typeof Task>`. */
export type ServiceImplementationFor<S> = S extends GenService<infer M> ? ServiceImplementation<M> : never;

export interface CallInfo {
  service: string;
  method: string;
  durationMs: number;
  code: CodeValue;
  connectionId: number;
}

export interface TtrpcServerOptions {
  /** Max frame data length accepted and sent; default 4 MiB like Go ttrpc. */
  maxMessageSize?: number;
  /** Requests in flight per connection beyond this are answered RESOURCE_EXHAUSTED. */
  maxConcurrentCallsPerConnection?: number;
  /** Per-call hook for logging/metrics; exceptions from it are swallowed. */
  onCall?: (info: CallInfo) => void;
  /** Connection-level problems (protocol violations, socket errors); never fatal to the server. */
  onConnectionError?: (err: Error, connectionId: number) => void;
  /**
   * A call that failed with `err` is left unanswered when this says so: under spore's keeper,
   * which holds containerd's connections and sends unanswered requests to the next spored,
   * a call that failed because this spored lost what it needs (its root seed) is answered by
   * the next one instead of failing (helper-56: `ctr run` failed with "process seed is not
   * running" while spored restarted itself).
   */
  leaveUnanswered?: (err: unknown, call: { service: string; method: string }) => boolean;
}

interface RegisteredMethod {
  input: DescMessage;
  output: DescMessage;
  handler: (request: unknown, ctx: CallContext) => Promise<unknown>;
}

interface Reply {
  code: CodeValue;
  message: string;
  payload?: Uint8Array;
}

const MAX_TIMER_MS = 2 ** 31 - 1;
const WRITE_BACKLOG_LIMIT = 8 << 20;

export class TtrpcServer {
  private readonly methods = new Map<string, Map<string, RegisteredMethod>>();
  private readonly connections = new Set<Connection>();
  private readonly listeners = new Set<net.Server>();
  private readonly ownedSocketPaths = new Set<string>();
  private nextConnectionId = 1;
  private closing = false;
  private handingOver = false;
  private longPoll: ((service: string, method: string) => boolean) | null = null;
  readonly maxMessageSize: number;
  readonly maxConcurrentCallsPerConnection: number;
  readonly onCall: ((info: CallInfo) => void) | undefined;
  readonly onConnectionError: ((err: Error, connectionId: number) => void) | undefined;
  readonly leaveUnanswered: ((err: unknown, call: { service: string; method: string }) => boolean) | undefined;

  constructor(options: TtrpcServerOptions = {}) {
    this.maxMessageSize = options.maxMessageSize ?? DEFAULT_MAX_DATA_LENGTH;
    this.maxConcurrentCallsPerConnection = options.maxConcurrentCallsPerConnection ?? 1024;
    this.onCall = options.onCall;
    this.onConnectionError = options.onConnectionError;
    this.leaveUnanswered = options.leaveUnanswered;
  }

  register<M extends GenServiceMethods>(service: GenService<M>, implementation: ServiceImplementation<M>): this {
    const table = new Map<string, RegisteredMethod>();
    // Local names are what the generated descriptor keys by; the wire uses the proto name.
    const impl = implementation as Record<string, RegisteredMethod['handler'] | undefined>;
    const methods: DescMethod[] = Object.values(service.method);
    for (const m of methods) {
      const fn = impl[m.localName];
      if (typeof fn !== 'function') continue;
      if (m.methodKind !== 'unary') continue; // streaming is not supported; caller gets UNIMPLEMENTED
      table.set(m.name, { input: m.input, output: m.output, handler: fn.bind(implementation) });
    }
    this.methods.set(service.typeName, table);
    return this;
  }

  /** Listen on a unix socket path, owner-only (0600). Refuses to steal a socket something still answers on. */
  async listen(path: string): Promise<net.Server> {
    await removeStaleSocket(path);
    const server = net.createServer();
    // Bound and listening under a temporary name, then renamed into place: whoever sees the
    // file (the shim launcher tests for it) can connect at once, never between bind and listen.
    const tmp = `${path.slice(0, path.lastIndexOf('/') + 1)}.t${process.pid}`;
    fs.rmSync(tmp, { force: true });
    await listenOwnerOnly(server, tmp);
    fs.renameSync(tmp, path);
    this.ownedSocketPaths.add(path);
    this.serve(server);
    return server;
  }

  /** Serve an existing listening (or about to listen) server, e.g. one created on an inherited fd. */
  serve(server: net.Server): void {
    this.listeners.add(server);
    server.on('connection', (socket: net.Socket) => this.handleConnection(socket));
    server.on('error', (err: Error) => this.reportConnectionError(err, 0));
  }

  /** Take over one already-connected socket. */
  handleConnection(socket: net.Socket): void {
    if (this.closing) {
      socket.destroy();
      return;
    }
    const conn = new Connection(this, this.nextConnectionId++, socket);
    this.connections.add(conn);
    socket.once('close', () => this.connections.delete(conn));
  }

  lookup(service: string, method: string): RegisteredMethod | { missing: string } {
    const table = this.methods.get(service);
    if (table === undefined) return { missing: `unknown service ${service}` };
    const m = table.get(method);
    if (m === undefined) return { missing: `unknown method ${service}/${method}` };
    return m;
  }

  get isClosing(): boolean {
    return this.closing;
  }

  get isHandingOver(): boolean {
    return this.handingOver;
  }

  isLongPoll(service: string, method: string): boolean {
    return this.longPoll !== null && this.longPoll(service, method);
  }

  /** Connections currently open (for diagnostics/tests). */
  get connectionCount(): number {
    return this.connections.size;
  }

  /**
   * Stop accepting, let in-flight handlers finish (new requests get UNAVAILABLE), then after
   * `timeoutMs` abort the rest and drop all connections. Removes socket files we created.
   */
  /**
   * Stop: no new connections; calls in flight may finish within `timeoutMs` (long polls,
   * o.longPoll, are not waited for); then every connection is cut. With `handover` (a keeper
   * holds the clients' connections and replays what was not answered to the next server),
   * calls that arrive meanwhile are left unanswered instead of refused with UNAVAILABLE.
   */
  async close(timeoutMs = 5000, o: { handover?: boolean; longPoll?: (service: string, method: string) => boolean } = {}): Promise<void> {
    this.closing = true;
    this.handingOver = o.handover === true;
    this.longPoll = o.longPoll ?? null;
    const listenersClosed = [...this.listeners].map(
      (l) => new Promise<void>((resolve) => l.close(() => resolve())),
    );
    this.listeners.clear();
    const drained = Promise.all([...this.connections].map((c) => c.drained()));
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, timeoutMs);
    });
    await Promise.race([drained, timedOut]);
    if (timer !== undefined) clearTimeout(timer);
    for (const c of this.connections) c.destroy(new Cancelled('ttrpc: server closed'));
    await Promise.all(listenersClosed);
    for (const p of this.ownedSocketPaths) {
      try {
        fs.unlinkSync(p);
      } catch {
        // Already gone: nothing to clean.
      }
    }
    this.ownedSocketPaths.clear();
  }

  reportCall(info: CallInfo): void {
    if (this.onCall === undefined) return;
    try {
      this.onCall(info);
    } catch {
      // A broken metrics hook must not take calls down with it.
    }
  }

  reportConnectionError(err: Error, connectionId: number): void {
    if (this.onConnectionError === undefined) return;
    try {
      this.onConnectionError(err, connectionId);
    } catch {
      // Same reasoning as reportCall.
    }
  }
}

/** One accepted socket: decodes frames, dispatches requests concurrently, writes replies as they finish. */
class Connection {
  private readonly decoder: FrameDecoder;
  private readonly inflight = new Map<number, AbortController>();
  /** service and method of each call in flight (drained() skips long polls) */
  private readonly calls = new Map<number, [string, string]>();
  private lastStreamId = 0;
  private closed = false;
  private idleWaiters: Array<() => void> = [];

  constructor(
    private readonly server: TtrpcServer,
    readonly id: number,
    private readonly socket: net.Socket,
  ) {
    this.decoder = new FrameDecoder(server.maxMessageSize);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err: Error) => this.server.reportConnectionError(err, this.id));
    socket.on('close', () => this.onClose());
    // A peer that sends requests but never reads replies must not grow our write queue
    // without bound: stop reading from it until it catches up.
    socket.on('drain', () => socket.resume());
  }

  drained(): Promise<void> {
    if (this.busy() === 0 || this.closed) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** calls in flight that are not long polls */
  private busy(): number {
    let n = 0;
    for (const [, [service, method]] of this.calls) if (!this.server.isLongPoll(service, method)) n++;
    return n;
  }

  destroy(reason: SporeError): void {
    this.abortAll(reason);
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    let items: DecodedFrame[];
    try {
      items = this.decoder.push(chunk);
    } catch (err) {
      // The decoder is designed not to throw; if it ever does, only this peer pays.
      this.protocolError(err instanceof Error ? err.message : String(err));
      return;
    }
    for (const item of items) {
      if (this.closed) return;
      if (item.kind === 'oversized') this.onOversized(item.header, item.length);
      else this.onFrame(item.frame.streamId, item.frame.type, item.frame.flags, item.frame.data);
    }
  }

  private onOversized(header: FrameHeader, length: number): void {
    if (header.type !== FrameType.Request && header.type !== FrameType.Data) {
      this.protocolError(`oversized frame of type ${header.type}`);
      return;
    }
    if (header.type === FrameType.Request && !this.acceptStreamId(header.streamId)) return;
    this.reply(header.streamId, {
      code: Code.RESOURCE_EXHAUSTED,
      message: `message length ${length} exceed maximum message size of ${this.server.maxMessageSize}`,
    });
    this.server.reportCall({ service: '', method: '', durationMs: 0, code: Code.RESOURCE_EXHAUSTED, connectionId: this.id });
  }

  private onFrame(streamId: number, type: number, flags: number, data: Buffer): void {
    if (type === FrameType.Data) {
      // Streams are never opened by this server, so any Data frame is for an unknown stream.
      this.reply(streamId, { code: Code.UNIMPLEMENTED, message: 'ttrpc: streaming is not supported' });
      return;
    }
    if (type !== FrameType.Request) {
      this.protocolError(`unexpected frame type ${type}`);
      return;
    }
    if (!this.acceptStreamId(streamId)) return;
    if ((flags & FrameFlags.RemoteOpen) !== 0) {
      this.reply(streamId, { code: Code.UNIMPLEMENTED, message: 'ttrpc: streaming requests are not supported' });
      return;
    }
    let request: Request;
    try {
      request = fromBinary(RequestSchema, data);
    } catch (err) {
      this.reply(streamId, { code: Code.INVALID_ARGUMENT, message: `ttrpc: malformed request: ${errorMessage(err)}` });
      return;
    }
    this.dispatch(streamId, request);
  }

  /** Stream ids must be odd and strictly increasing; violations are answered on that id. */
  private acceptStreamId(streamId: number): boolean {
    if (streamId % 2 !== 1) {
      this.reply(streamId, { code: Code.INVALID_ARGUMENT, message: 'StreamID must be odd for client initiated streams' });
      return false;
    }
    if (streamId <= this.lastStreamId) {
      this.reply(streamId, { code: Code.INVALID_ARGUMENT, message: 'StreamID must increment' });
      return false;
    }
    this.lastStreamId = streamId;
    return true;
  }

  private dispatch(streamId: number, request: Request): void {
    const started = performance.now();
    const { service, method } = request;
    const finish = (reply: Reply): void => {
      this.reply(streamId, reply);
      this.server.reportCall({
        service,
        method,
        durationMs: performance.now() - started,
        code: reply.code,
        connectionId: this.id,
      });
    };

    if (this.server.isClosing) {
      // handing over: leave it unanswered; the keeper sends it to the next spored
      if (this.server.isHandingOver) return;
      finish({ code: Code.UNAVAILABLE, message: 'ttrpc: server shutting down' });
      return;
    }
    const target = this.server.lookup(service, method);
    if ('missing' in target) {
      finish({ code: Code.UNIMPLEMENTED, message: target.missing });
      return;
    }
    if (this.inflight.size >= this.server.maxConcurrentCallsPerConnection) {
      finish({ code: Code.RESOURCE_EXHAUSTED, message: 'ttrpc: too many concurrent requests on connection' });
      return;
    }
    let input: unknown;
    try {
      input = fromBinary(target.input, request.payload);
    } catch (err) {
      finish({ code: Code.INVALID_ARGUMENT, message: `ttrpc: cannot decode ${target.input.typeName}: ${errorMessage(err)}` });
      return;
    }

    const controller = new AbortController();
    this.inflight.set(streamId, controller);
    this.calls.set(streamId, [service, method]);
    const deadline = deadlineOf(request.timeoutNano);
    const timer = deadline === undefined ? undefined : setTimeout(
      () => controller.abort(new DeadlineExceeded(`ttrpc: ${service}/${method} deadline exceeded`)),
      Math.min(Math.max(deadline - Date.now(), 0), MAX_TIMER_MS),
    );
    const metadata = metadataMap(request);
    const ctx: CallContext = {
      service,
      method,
      metadata,
      namespace: metadata.get(NAMESPACE_METADATA_KEY)?.[0],
      signal: controller.signal,
      deadline,
      connectionId: this.id,
    };

    // Promise.resolve().then() also converts a synchronous throw into a rejection.
    Promise.resolve()
      .then(() => target.handler(input, ctx))
      .then(
        (result) => encodeResult(target.output, result),
        (err: unknown) => {
          let leave = false;
          try { leave = this.server.leaveUnanswered?.(err, { service, method }) === true; } catch { /* answer it */ }
          return leave ? null : ({ ...statusOf(err) }) satisfies Reply;
        },
      )
      .catch((err: unknown): Reply => ({ ...statusOf(err) }))
      .then((reply) => {
        if (timer !== undefined) clearTimeout(timer);
        this.inflight.delete(streamId);
        this.calls.delete(streamId);
        if (reply) finish(reply);
        if (this.busy() === 0) this.notifyIdle();
      });
  }

  private reply(streamId: number, reply: Reply): void {
    if (this.closed || this.socket.destroyed) return;
    const frame = this.encodeResponse(streamId, reply);
    try {
      this.socket.write(frame);
      if (this.socket.writableLength > WRITE_BACKLOG_LIMIT) this.socket.pause();
    } catch (err) {
      this.server.reportConnectionError(err instanceof Error ? err : new Error(String(err)), this.id);
    }
  }

  /** A response that would exceed the peer's limit becomes a RESOURCE_EXHAUSTED status instead. */
  private encodeResponse(streamId: number, reply: Reply): Buffer {
    const header = { streamId, type: FrameType.Response, flags: 0 };
    const data = toBinary(ResponseSchema, create(ResponseSchema, {
      status: { code: reply.code, message: reply.message },
      payload: reply.payload ?? new Uint8Array(0),
    }));
    if (data.length <= this.server.maxMessageSize) return encodeFrame(header, data, this.server.maxMessageSize);
    const fallback = toBinary(ResponseSchema, create(ResponseSchema, {
      status: {
        code: Code.RESOURCE_EXHAUSTED,
        message: `ttrpc: response length ${data.length} exceeds maximum message size of ${this.server.maxMessageSize}`,
      },
    }));
    return encodeFrame(header, fallback, Number.MAX_SAFE_INTEGER);
  }

  private protocolError(message: string): void {
    this.server.reportConnectionError(new Error(`ttrpc protocol error: ${message}`), this.id);
    this.destroy(new Cancelled(`ttrpc: connection closed: ${message}`));
  }

  private onClose(): void {
    this.closed = true;
    this.abortAll(new Cancelled('ttrpc: connection closed'));
    this.notifyIdle();
  }

  private abortAll(reason: SporeError): void {
    for (const c of this.inflight.values()) c.abort(reason);
  }

  private notifyIdle(): void {
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }
}

function encodeResult(output: DescMessage, result: unknown): Reply {
  // `create` returns `result` unchanged when it already is a message of this type.
  const message = create(output, (result ?? undefined) as MessageInitShape<DescMessage> | undefined);
  return { code: Code.OK, message: '', payload: toBinary(output, message) };
}

function metadataMap(request: Request): Map<string, string[]> {
  const map = new Map<string, string[]>();
  for (const kv of request.metadata) {
    const key = kv.key.toLowerCase();
    const values = map.get(key);
    if (values === undefined) map.set(key, [kv.value]);
    else values.push(kv.value);
  }
  return map;
}

/** timeout_nano ≤ 0 means "no deadline", as in Go ttrpc. */
function deadlineOf(timeoutNano: bigint): number | undefined {
  if (timeoutNano <= 0n) return undefined;
  return Date.now() + Number(timeoutNano / 1_000_000n);
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Unlink `path` only if it is a socket nobody accepts on. A live socket means another server
 * (e.g. a grouped shim) owns it: surface AlreadyExists instead of stealing it.
 */
export async function removeStaleSocket(path: string): Promise<void> {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(path);
  } catch {
    return;
  }
  if (!st.isSocket()) throw new FailedPrecondition(`ttrpc: ${path} exists and is not a socket`);
  if (await socketAnswers(path)) throw new AlreadyExists(`ttrpc: ${path} is in use by a live server`);
  fs.unlinkSync(path);
}

function socketAnswers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/**
 * bind() creates the socket file with the process umask; tighten the umask around the (synchronous)
 * bind so the file is never connectable by others, then chmod for umask-less contexts (workers).
 */
function listenOwnerOnly(server: net.Server, path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    server.once('error', onError);
    let previous: number | undefined;
    try {
      previous = process.umask(0o177);
    } catch {
      previous = undefined;
    }
    try {
      server.listen(path, () => {
        server.off('error', onError);
        try {
          fs.chmodSync(path, 0o600);
          resolve();
        } catch (err) {
          server.close();
          reject(err);
        }
      });
    } finally {
      if (previous !== undefined) process.umask(previous);
    }
  });
}
