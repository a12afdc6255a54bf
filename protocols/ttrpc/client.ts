// ttrpc client (unary only), wire-compatible with containerd/ttrpc client.go.
//
// Calls on one connection are multiplexed by odd, increasing stream ids (1, 3, 5, ... like Go)
// and matched to responses by id, so replies may arrive in any order.

import * as net from 'node:net';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import type { DescMessage, DescMethod, MessageInitShape, MessageShape } from '@bufbuild/protobuf';
import type { GenService, GenServiceMethods } from '@bufbuild/protobuf/codegenv2';
import { Code, Cancelled, DeadlineExceeded, Internal, ResourceExhausted, SporeError, Unavailable } from '../../sys/errors.js';
import type { CodeValue } from '../../sys/errors.js';
import { RequestSchema, ResponseSchema } from '../../fri-proto/gen/ttrpc/request_pb.js';
import type { KeyValue, Response } from '../../fri-proto/gen/ttrpc/request_pb.js';
import { DEFAULT_MAX_DATA_LENGTH, FrameDecoder, FrameType, encodeFrame } from './frame.js';
import type { DecodedFrame } from './frame.js';
import { NAMESPACE_METADATA_KEY } from './server.js';

export interface CallOptions {
  /** Local deadline; also sent as timeout_nano so the server's handler sees it. */
  timeoutMs?: number;
  /** Extra metadata; one KeyValue is sent per value. */
  metadata?: Record<string, string | readonly string[]>;
  /** Shorthand for metadata `containerd-namespace-ttrpc`. */
  namespace?: string;
  signal?: AbortSignal;
}

export interface TtrpcClientOptions {
  maxMessageSize?: number;
  connectTimeoutMs?: number;
}

/** The subset of a generated method descriptor a call needs. */
export interface MethodRef<I extends DescMessage, O extends DescMessage> {
  name: string;
  parent: { typeName: string };
  input: I;
  output: O;
}

interface Pending {
  output: DescMessage;
  resolve: (value: unknown) => void;
  reject: (err: SporeError) => void;
  cleanup: () => void;
}

const MAX_STREAM_ID = 0xffff_ffff;
const KNOWN_CODES = new Set<number>(Object.values(Code));

export class TtrpcClient {
  private readonly decoder: FrameDecoder;
  private readonly pending = new Map<number, Pending>();
  private nextStreamId = 1;
  private closedError: SporeError | undefined;
  readonly maxMessageSize: number;

  private constructor(private readonly socket: net.Socket, options: TtrpcClientOptions) {
    this.maxMessageSize = options.maxMessageSize ?? DEFAULT_MAX_DATA_LENGTH;
    this.decoder = new FrameDecoder(this.maxMessageSize);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err: Error) => this.fail(new Unavailable(`ttrpc: connection error: ${err.message}`, { cause: err })));
    socket.on('close', () => this.fail(new Unavailable('ttrpc: connection closed')));
  }

  static connect(path: string, options: TtrpcClientOptions = {}): Promise<TtrpcClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(path);
      const timeoutMs = options.connectTimeoutMs ?? 5000;
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new DeadlineExceeded(`ttrpc: connect ${path} timed out after ${timeoutMs}ms`));
      }, timeoutMs);
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.off('error', onError);
        resolve(new TtrpcClient(socket, options));
      });
      const onError = (err: Error): void => {
        clearTimeout(timer);
        reject(new Unavailable(`ttrpc: connect ${path}: ${err.message}`, { cause: err }));
      };
      socket.once('error', onError);
    });
  }

  /** Wrap an already-connected socket (e.g. a socketpair end in tests). */
  static fromSocket(socket: net.Socket, options: TtrpcClientOptions = {}): TtrpcClient {
    return new TtrpcClient(socket, options);
  }

  get closed(): boolean {
    return this.closedError !== undefined;
  }

  call<I extends DescMessage, O extends DescMessage>(
    method: MethodRef<I, O>,
    request: MessageInitShape<I> | MessageShape<I>,
    options?: CallOptions,
  ): Promise<MessageShape<O>>;
  call<I extends DescMessage, O extends DescMessage>(
    service: string,
    method: string,
    input: I,
    output: O,
    request: MessageInitShape<I> | MessageShape<I>,
    options?: CallOptions,
  ): Promise<MessageShape<O>>;
  call(...args: unknown[]): Promise<unknown> {
    const parsed = parseCallArgs(args);
    return this.invoke(parsed.service, parsed.method, parsed.input, parsed.output, parsed.request, parsed.options);
  }

  /** Untyped core used by both overloads and by clientFor. */
  invoke(
    service: string,
    method: string,
    input: DescMessage,
    output: DescMessage,
    request: unknown,
    options: CallOptions = {},
  ): Promise<unknown> {
    if (this.closedError !== undefined) return Promise.reject(this.closedError);
    if (options.signal?.aborted) return Promise.reject(abortError(options.signal));
    if (this.nextStreamId > MAX_STREAM_ID) {
      // Go ttrpc has the same ceiling; a fresh connection restarts the id space.
      return Promise.reject(new Unavailable('ttrpc: stream ids exhausted on this connection; reconnect'));
    }

    let frame: Buffer;
    const streamId = this.nextStreamId;
    try {
      const payload = toBinary(input, create(input, request as MessageInitShape<DescMessage>));
      const data = toBinary(RequestSchema, create(RequestSchema, {
        service,
        method,
        payload,
        timeoutNano: options.timeoutMs !== undefined && options.timeoutMs > 0 ? BigInt(Math.ceil(options.timeoutMs * 1e6)) : 0n,
        metadata: metadataList(options),
      }));
      if (data.length > this.maxMessageSize) {
        return Promise.reject(new ResourceExhausted(
          `ttrpc: message length ${data.length} exceeds maximum message size of ${this.maxMessageSize}`,
        ));
      }
      frame = encodeFrame({ streamId, type: FrameType.Request, flags: 0 }, data, this.maxMessageSize);
    } catch (err) {
      return Promise.reject(err instanceof SporeError ? err : new Internal(`ttrpc: encode request: ${errorMessage(err)}`, { cause: err }));
    }
    this.nextStreamId += 2;

    return new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const onAbort = (): void => {
        this.settle(streamId)?.reject(abortError(options.signal));
      };
      const cleanup = (): void => {
        if (timer !== undefined) clearTimeout(timer);
        options.signal?.removeEventListener('abort', onAbort);
      };
      this.pending.set(streamId, { output, resolve, reject, cleanup });
      if (options.timeoutMs !== undefined && options.timeoutMs > 0) {
        timer = setTimeout(() => {
          this.settle(streamId)?.reject(new DeadlineExceeded(`ttrpc: ${service}/${method} timed out after ${options.timeoutMs}ms`));
        }, options.timeoutMs);
      }
      options.signal?.addEventListener('abort', onAbort, { once: true });
      this.socket.write(frame);
    });
  }

  /** Close the connection; pending calls reject with UNAVAILABLE. */
  close(): void {
    this.fail(new Unavailable('ttrpc: client closed'));
    this.socket.destroy();
  }

  private settle(streamId: number): Pending | undefined {
    const p = this.pending.get(streamId);
    if (p === undefined) return undefined;
    this.pending.delete(streamId);
    p.cleanup();
    return p;
  }

  private onData(chunk: Buffer): void {
    let items: DecodedFrame[];
    try {
      items = this.decoder.push(chunk);
    } catch (err) {
      this.fail(new Unavailable(`ttrpc: corrupt stream: ${errorMessage(err)}`));
      this.socket.destroy();
      return;
    }
    for (const item of items) {
      if (item.kind === 'oversized') {
        this.settle(item.header.streamId)?.reject(new ResourceExhausted(
          `ttrpc: response length ${item.length} exceeds maximum message size of ${this.maxMessageSize}`,
        ));
        continue;
      }
      // Server-initiated or data frames are not part of unary calls; ignore them.
      if (item.frame.type !== FrameType.Response) continue;
      const p = this.settle(item.frame.streamId);
      if (p === undefined) continue; // late answer to a timed-out/cancelled call
      settleFromResponse(p, item.frame.data);
    }
  }

  private fail(err: SporeError): void {
    if (this.closedError === undefined) this.closedError = err;
    for (const id of [...this.pending.keys()]) this.settle(id)?.reject(err);
  }
}

function settleFromResponse(p: Pending, data: Uint8Array): void {
  let response: Response;
  try {
    response = fromBinary(ResponseSchema, data);
  } catch (err) {
    p.reject(new Internal(`ttrpc: malformed response: ${errorMessage(err)}`));
    return;
  }
  const code = response.status?.code ?? 0;
  if (code !== Code.OK) {
    p.reject(new SporeError(toCode(code), response.status?.message ?? ''));
    return;
  }
  try {
    p.resolve(fromBinary(p.output, response.payload));
  } catch (err) {
    p.reject(new Internal(`ttrpc: cannot decode ${p.output.typeName}: ${errorMessage(err)}`));
  }
}

/** Codes outside google.rpc.Code collapse to UNKNOWN, as Go's status package does. */
function toCode(code: number): CodeValue {
  return KNOWN_CODES.has(code) ? (code as CodeValue) : Code.UNKNOWN;
}

function metadataList(options: CallOptions): Array<Omit<KeyValue, '$typeName'>> {
  const out: Array<Omit<KeyValue, '$typeName'>> = [];
  if (options.namespace !== undefined) out.push({ key: NAMESPACE_METADATA_KEY, value: options.namespace });
  for (const [rawKey, value] of Object.entries(options.metadata ?? {})) {
    const key = rawKey.toLowerCase();
    const values: readonly string[] = typeof value === 'string' ? [value] : value;
    for (const v of values) out.push({ key, value: v });
  }
  return out;
}

function abortError(signal: AbortSignal | undefined): SporeError {
  const reason: unknown = signal?.reason;
  if (reason instanceof SporeError) return reason;
  return new Cancelled(`ttrpc: call cancelled${reason instanceof Error ? `: ${reason.message}` : ''}`);
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

interface ParsedCall {
  service: string;
  method: string;
  input: DescMessage;
  output: DescMessage;
  request: unknown;
  options: CallOptions | undefined;
}

function parseCallArgs(args: unknown[]): ParsedCall {
  if (typeof args[0] === 'string') {
    const [service, method, input, output, request, options] = args as [string, string, DescMessage, DescMessage, unknown, CallOptions | undefined];
    return { service, method, input, output, request, options };
  }
  const [ref, request, options] = args as [MethodRef<DescMessage, DescMessage>, unknown, CallOptions | undefined];
  return { service: ref.parent.typeName, method: ref.name, input: ref.input, output: ref.output, request, options };
}

/** Typed proxy: `clientFor(Events, c).forward({ envelope })` — keys are the generated local names. */
export type ServiceClient<M extends GenServiceMethods> = {
  [K in keyof M]: (
    request: MessageInitShape<M[K]['input']> | MessageShape<M[K]['input']>,
    options?: CallOptions,
  ) => Promise<MessageShape<M[K]['output']>>;
};

export function clientFor<M extends GenServiceMethods>(service: GenService<M>, client: TtrpcClient): ServiceClient<M> {
  const proxy: Record<string, unknown> = {};
  const methods: DescMethod[] = Object.values(service.method);
  for (const m of methods) {
    proxy[m.localName] = (request: unknown, options?: CallOptions) =>
      client.invoke(service.typeName, m.name, m.input, m.output, request, options);
  }
  return proxy as ServiceClient<M>;
}
