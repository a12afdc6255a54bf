// Typed FRI client: the FunctionRuntime interface over gRPC, returning the plain types from
// types.ts. Used by the CLI, benchmarks and tests. RPC failures are thrown as the typed errors
// from runtime/errors.ts (NotFound, InvalidArgument, ...); a failed invocation is NOT thrown —
// it is an InvokeResult with ok=false.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type { DescMessage, DescMethod, MessageInitShape, MessageShape } from '@bufbuild/protobuf';
import { Internal, Unavailable } from '../errors.js';
import { FunctionRuntime as FunctionRuntimeService } from '../../fri-proto/gen/spore/fri/v1/fri_pb.js';
import type {
  Engine, ForkTarget, FunctionInfo, FunctionRuntime, FunctionSpec, InstanceInfo, InvokeOptions, InvokeResult, SeedInfo,
} from './types.js';
import {
  engineToProto, forkTargetToProto, functionInfoFromProto, functionSpecToProto, instanceFromProto, invokeResultFromProto,
  seedFromProto,
} from './convert.js';
import { unaryCall } from './grpc.js';
import { FRI_MAX_MESSAGE_BYTES } from './validate.js';

/** FunctionRuntime as seen from another process: every method is async. */
export type RemoteFunctionRuntime = {
  [K in keyof FunctionRuntime]: (...args: Parameters<FunctionRuntime[K]>) => Promise<Awaited<ReturnType<FunctionRuntime[K]>>>;
};

export interface FriClientOptions {
  /** how long connect() waits for the channel to become ready (default 5000 ms) */
  connectTimeoutMs?: number;
  /** deadline for every call (default none: an invoke lasts as long as the function's timeout) */
  callTimeoutMs?: number;
}

/**
 * A grpc-js target for an FRI address: a filesystem path (or unix://path) is a unix socket;
 * host:port (or dns:/ipv4:/ipv6: targets) is TCP.
 */
export function friTarget(address: string): { target: string; socket: string | null } {
  if (address.startsWith('unix://')) address = address.slice('unix://'.length);
  else if (address.startsWith('unix:')) address = address.slice('unix:'.length);
  else if (/^(dns|ipv4|ipv6):/.test(address) || /^[^/]+:\d+$/.test(address)) return { target: address, socket: null };
  const abs = path.resolve(address);
  return { target: `unix://${abs}`, socket: abs };
}

type Methods = (typeof FunctionRuntimeService)['method'];

export class FriClient implements RemoteFunctionRuntime {
  readonly address: string;
  private readonly client: grpc.Client;
  private readonly callTimeoutMs: number | undefined;

  private constructor(address: string, client: grpc.Client, callTimeoutMs: number | undefined) {
    this.address = address;
    this.client = client;
    this.callTimeoutMs = callTimeoutMs;
  }

  /** Connect and wait until ready, failing fast with a message that says how to fix it. */
  static async connect(address: string, opts: FriClientOptions = {}): Promise<FriClient> {
    const { target, socket } = friTarget(address);
    const hint = 'is spored running? (start bin/spored, or point --socket / SPORE_FRI_SOCKET at its FRI socket)';
    if (socket !== null && !fs.existsSync(socket)) throw new Unavailable(`no FRI socket at ${socket}; ${hint}`);
    // Sends up to the largest deploy (a 50 MiB package plus framing); receives anything.
    const client = new grpc.Client(target, grpc.credentials.createInsecure(), {
      'grpc.max_receive_message_length': -1,
      'grpc.max_send_message_length': FRI_MAX_MESSAGE_BYTES,
    });
    const deadline = Date.now() + (opts.connectTimeoutMs ?? 5000);
    try {
      await new Promise<void>((resolve, reject) => client.waitForReady(deadline, (err) => (err ? reject(err) : resolve())));
    } catch (e) {
      client.close();
      throw new Unavailable(`cannot connect to spored at ${socket ?? target}: ${(e as Error).message}; ${hint}`, { cause: e });
    }
    return new FriClient(socket ?? target, client, opts.callTimeoutMs);
  }

  close(): void {
    this.client.close();
  }

  private call<I extends DescMessage, O extends DescMessage>(
    method: DescMethod & { input: I; output: O },
    request: MessageInitShape<I>,
  ): Promise<MessageShape<O>> {
    const options: grpc.CallOptions = {};
    if (this.callTimeoutMs !== undefined) options.deadline = Date.now() + this.callTimeoutMs;
    return unaryCall(this.client, method, request, options);
  }

  private get m(): Methods {
    return FunctionRuntimeService.method;
  }

  async create(engine: Engine): Promise<SeedInfo> {
    const res = await this.call(this.m.create, { engine: engineToProto(engine) });
    if (!res.seed) throw new Internal('Create: response without seed');
    return seedFromProto(res.seed);
  }

  async fork(seedId: string, target: ForkTarget): Promise<InstanceInfo | SeedInfo> {
    const res = await this.call(this.m.fork, { seedId, target: forkTargetToProto(target) });
    switch (res.result.case) {
      case 'instance': return instanceFromProto(res.result.value);
      case 'seed': return seedFromProto(res.result.value);
      default: throw new Internal('Fork: response without instance or seed');
    }
  }

  async activate(instanceId: string, event: string): Promise<InvokeResult> {
    const res = await this.call(this.m.activate, { instanceId, event });
    return invokeResultFromProto(res.result);
  }

  async invoke(fn: string, event: string, opts: InvokeOptions = {}): Promise<InvokeResult> {
    const res = await this.call(this.m.invoke, {
      function: fn, event, level: opts.level,
    });
    return invokeResultFromProto(res.result);
  }

  async destroy(instanceId: string): Promise<void> {
    await this.call(this.m.destroy, { instanceId });
  }

  async listSeeds(): Promise<SeedInfo[]> {
    return (await this.call(this.m.listSeeds, {})).seeds.map(seedFromProto);
  }

  async deleteSeed(seedId: string): Promise<void> {
    await this.call(this.m.deleteSeed, { seedId });
  }

  async listInstances(): Promise<InstanceInfo[]> {
    return (await this.call(this.m.listInstances, {})).instances.map(instanceFromProto);
  }

  async deploy(spec: FunctionSpec): Promise<FunctionInfo> {
    const res = await this.call(this.m.deploy, { spec: functionSpecToProto(spec) });
    if (!res.function) throw new Internal('Deploy: response without function');
    return functionInfoFromProto(res.function);
  }

  async remove(name: string): Promise<void> {
    await this.call(this.m.remove, { name });
  }

  async listFunctions(): Promise<FunctionInfo[]> {
    return (await this.call(this.m.listFunctions, {})).functions.map(functionInfoFromProto);
  }

  async logs(name: string, tailBytes?: number): Promise<string> {
    return (await this.call(this.m.logs, { name, tailBytes: tailBytes ?? 0 })).text;
  }
}
