// Bridge between protobuf-es generated services (GenService) and @grpc/grpc-js, which only knows
// untyped ServiceDefinitions with (de)serializers. We use protobuf-es for messages (as the ttrpc
// side does) rather than @grpc/proto-loader so there is one code generator and one message model.
import * as grpc from '@grpc/grpc-js';
import { fromBinary, toBinary, create } from '@bufbuild/protobuf';
import type { DescMessage, DescMethod, MessageInitShape, MessageShape } from '@bufbuild/protobuf';
import type { GenService, GenServiceMethods } from '@bufbuild/protobuf/codegenv2';
import {
  AlreadyExists, Cancelled, Code, DeadlineExceeded, FailedPrecondition, Internal, InvalidArgument, NotFound, Overloaded,
  ResourceExhausted, SporeError, Unavailable, Unimplemented, statusOf,
} from '../../sys/errors.js';

/** Trailer carrying Overloaded.retryAfterMs, so a remote caller (a gateway) can say Retry-After. */
export const RETRY_AFTER_MS_KEY = 'spore-retry-after-ms';
import type { CodeValue } from '../../sys/errors.js';

/** gRPC path of a method: /<package>.<Service>/<Method>. */
export function methodPath(method: DescMethod): string {
  return `/${method.parent.typeName}/${method.name}`;
}

function serializer<D extends DescMessage>(schema: D): (m: MessageShape<D>) => Buffer {
  return (m) => {
    const bytes = toBinary(schema, m);
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  };
}

function deserializer<D extends DescMessage>(schema: D): (b: Buffer) => MessageShape<D> {
  return (b) => fromBinary(schema, b);
}

/**
 * A request whose bytes are not a valid message. grpc-js answers a request deserializer that
 * throws with INTERNAL "Error deserializing request" (no detail), as if the server had failed;
 * so the request deserializer returns this instead, and serviceImplementation answers
 * INVALID_ARGUMENT naming the message type and what did not decode. (Fuzzing finding:
 * fuzz/corpus/fri/regress-malformed-*.)
 */
class MalformedRequest {
  constructor(readonly error: InvalidArgument) {}
}

function requestDeserializer<D extends DescMessage>(schema: D): (b: Buffer) => MessageShape<D> | MalformedRequest {
  return (b) => {
    try {
      return fromBinary(schema, b);
    } catch (e) {
      return new MalformedRequest(new InvalidArgument(`malformed ${schema.typeName}: ${(e as Error).message}`, { cause: e }));
    }
  };
}

/** grpc-js ServiceDefinition for a generated service (unary methods only; FRI has no streams). */
export function serviceDefinition(service: GenService<GenServiceMethods>): grpc.ServiceDefinition {
  const def: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const m of service.methods) {
    if (m.methodKind !== 'unary') throw new Error(`${methodPath(m)}: only unary methods are supported`);
    def[m.localName] = {
      path: methodPath(m),
      requestStream: false,
      responseStream: false,
      requestSerialize: serializer(m.input) as (m: unknown) => Buffer,
      requestDeserialize: requestDeserializer(m.input),
      responseSerialize: serializer(m.output) as (m: unknown) => Buffer,
      responseDeserialize: deserializer(m.output),
      originalName: m.localName,
    };
  }
  return def;
}

export type UnaryImpl<I extends DescMessage, O extends DescMessage> = (
  request: MessageShape<I>,
  call: grpc.ServerUnaryCall<MessageShape<I>, MessageShape<O>>,
) => Promise<MessageInitShape<O>>;

/** Promise-returning handlers keyed by the generated local method names (`create`, `listSeeds`). */
export type ServiceImpl<M extends GenServiceMethods> = {
  [K in keyof M]: UnaryImpl<M[K]['input'], M[K]['output']>;
};

export interface CallRecord {
  method: string;
  ms: number;
  code: CodeValue;
  message?: string;
  err?: unknown;
}

/**
 * grpc-js implementation object: each call awaits its handler, builds the response message and
 * maps a thrown error through statusOf (the single error -> status mapping).
 */
export function serviceImplementation<M extends GenServiceMethods>(
  service: GenService<M>,
  impl: ServiceImpl<M>,
  onCall?: (rec: CallRecord) => void,
): grpc.UntypedServiceImplementation {
  const out: grpc.UntypedServiceImplementation = {};
  for (const m of service.methods) {
    const handler = impl[m.localName as keyof M] as unknown as (req: unknown, call: unknown) => Promise<MessageInitShape<DescMessage>>;
    const output = m.output;
    const fn: grpc.handleUnaryCall<unknown, unknown> = (call, callback) => {
      const t0 = performance.now();
      const request: unknown = call.request;
      (request instanceof MalformedRequest ? Promise.reject(request.error) : handler(request, call)).then(
        (res) => {
          onCall?.({ method: m.name, ms: performance.now() - t0, code: Code.OK });
          callback(null, create(output, res));
        },
        (err: unknown) => {
          const { code, message } = statusOf(err);
          onCall?.({ method: m.name, ms: performance.now() - t0, code, message, err });
          const metadata = new grpc.Metadata();
          if (err instanceof Overloaded) metadata.set(RETRY_AFTER_MS_KEY, String(err.retryAfterMs));
          callback({ code: code as number as grpc.status, details: message, metadata });
        },
      );
    };
    out[m.localName] = fn;
  }
  return out;
}

const ERROR_BY_CODE: Partial<Record<number, new (message: string) => SporeError>> = {
  [Code.INVALID_ARGUMENT]: InvalidArgument,
  [Code.NOT_FOUND]: NotFound,
  [Code.ALREADY_EXISTS]: AlreadyExists,
  [Code.FAILED_PRECONDITION]: FailedPrecondition,
  [Code.UNIMPLEMENTED]: Unimplemented,
  [Code.UNAVAILABLE]: Unavailable,
  [Code.DEADLINE_EXCEEDED]: DeadlineExceeded,
  [Code.RESOURCE_EXHAUSTED]: ResourceExhausted,
  [Code.CANCELLED]: Cancelled,
  [Code.INTERNAL]: Internal,
};

/**
 * The typed error a client throws for a gRPC status, so callers can `instanceof NotFound`; a
 * RESOURCE_EXHAUSTED with a retry-after trailer is Overloaded.
 */
export function errorFromStatus(code: number, message: string, metadata?: grpc.Metadata): SporeError {
  const retry = metadata?.get(RETRY_AFTER_MS_KEY)[0];
  if (code === Code.RESOURCE_EXHAUSTED && retry !== undefined && Number.isFinite(Number(retry))) return new Overloaded(message, Number(retry));
  const Ctor = ERROR_BY_CODE[code];
  if (Ctor) return new Ctor(message);
  return new SporeError((code >= 0 && code <= 16 ? code : Code.UNKNOWN) as CodeValue, message);
}

/** Promise wrapper over grpc-js' callback unary call, with typed request/response messages. */
export function unaryCall<I extends DescMessage, O extends DescMessage>(
  client: grpc.Client,
  method: DescMethod & { input: I; output: O },
  request: MessageInitShape<I>,
  options: grpc.CallOptions,
): Promise<MessageShape<O>> {
  const req = create(method.input, request);
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest<MessageShape<I>, MessageShape<O>>(
      methodPath(method),
      serializer(method.input),
      deserializer(method.output),
      req,
      new grpc.Metadata(),
      options,
      (err, res) => {
        if (err) reject(errorFromStatus(err.code, err.details || err.message, err.metadata));
        else if (res === undefined) reject(new Internal(`${methodPath(method)}: empty response`));
        else resolve(res);
      },
    );
  });
}
