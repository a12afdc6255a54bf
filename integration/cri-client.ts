// A small CRI client, as the kubelet uses it: runtime.v1 RuntimeService and ImageService over
// gRPC (@grpc/grpc-js) on containerd's socket, messages from fri-proto/gen/cri (protobuf-es v2).
import * as grpc from '@grpc/grpc-js';
import { create, fromBinary, toBinary, type DescMessage, type MessageInitShape, type MessageShape } from '@bufbuild/protobuf';
import type { GenService, GenServiceMethods } from '@bufbuild/protobuf/codegenv2';
import { ImageService, RuntimeService } from '../fri-proto/gen/cri/runtime/v1/api_pb.js';

type UnaryClient<S extends GenServiceMethods> = {
  [K in keyof S]: (
    req: MessageInitShape<S[K]['input'] & DescMessage>,
    opts?: { timeoutMs?: number },
  ) => Promise<MessageShape<S[K]['output'] & DescMessage>>;
};

/** A gRPC error with the status code and details of the failed CRI call. */
export class CriError extends Error {
  constructor(readonly method: string, readonly code: grpc.status, readonly details: string) {
    super(`${method}: ${grpc.status[code] ?? code}: ${details}`);
  }
}

function unaryClient<S extends GenServiceMethods>(client: grpc.Client, service: GenService<S>, defaultTimeoutMs: number): UnaryClient<S> {
  const out: Record<string, unknown> = {};
  for (const m of service.methods) {
    const path = `/${service.typeName}/${m.name}`;
    out[m.localName] = (req: MessageInitShape<DescMessage>, opts: { timeoutMs?: number } = {}) =>
      new Promise((resolve, reject) => {
        const msg = create(m.input, req as never);
        client.makeUnaryRequest(
          path,
          (x: unknown) => Buffer.from(toBinary(m.input, x as never)),
          (b: Buffer) => fromBinary(m.output, b),
          msg,
          new grpc.Metadata(),
          { deadline: Date.now() + (opts.timeoutMs ?? defaultTimeoutMs) },
          (err, res) => (err ? reject(new CriError(m.name, err.code, err.details)) : resolve(res)),
        );
      });
  }
  return out as UnaryClient<S>;
}

type MethodsOf<T> = T extends GenService<infer S> ? S : never;

export interface CriClient {
  runtime: UnaryClient<MethodsOf<typeof RuntimeService>>;
  image: UnaryClient<MethodsOf<typeof ImageService>>;
  close(): void;
}

/** Connect to containerd's CRI endpoint (its grpc socket). */
export function criClient(socket: string, defaultTimeoutMs = 60_000): CriClient {
  const client = new grpc.Client(`unix://${socket}`, grpc.credentials.createInsecure(), {
    'grpc.max_receive_message_length': 32 * 1024 * 1024,
  });
  return {
    runtime: unaryClient(client, RuntimeService, defaultTimeoutMs),
    image: unaryClient(client, ImageService, defaultTimeoutMs),
    close: () => client.close(),
  };
}
