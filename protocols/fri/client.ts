// Typed FRI client: the FunctionRuntime interface over gRPC, returning the plain types from
// types.ts. Used by the CLI, benchmarks and tests. RPC failures are thrown as the typed errors
// from sys/errors.ts (NotFound, InvalidArgument, ...); a failed invocation is NOT thrown —
// it is an InvokeResult with ok=false.
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type { DescMessage, DescMethod, MessageInitShape, MessageShape } from '@bufbuild/protobuf';
import { Internal, Unavailable } from '../../sys/errors.js';
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
  /** run dirs whose spored.pid tells whether spored runs (default: the socket's directory) */
  runDirs?: string[];
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

/** The pid of a running spored according to `<runDir>/spored.pid`, or null. */
export function runningSpored(runDirs: readonly string[]): { pid: number; runDir: string } | null {
  for (const runDir of new Set(runDirs)) {
    let pid: number;
    try {
      // "pid starttime" (daemon/main.ts), or a bare pid
      pid = Number(fs.readFileSync(path.join(runDir, 'spored.pid'), 'utf8').trim().split(/\s+/)[0]);
    } catch {
      continue;
    }
    if (!Number.isInteger(pid) || pid <= 0) continue;
    try {
      // the pid may have been reused since a crash: it must still be spored
      const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      if (cmd.includes('spored') || cmd.includes('daemon/main.js')) return { pid, runDir };
    } catch { /* not running */ }
  }
  return null;
}

/** errno of connecting to a unix socket, or null when something accepts. */
function probe(socket: string): Promise<string | null> {
  return new Promise((resolve) => {
    const s = net.connect(socket);
    s.once('connect', () => { s.destroy(); resolve(null); });
    s.once('error', (e: NodeJS.ErrnoException) => { s.destroy(); resolve(e.code ?? e.message); });
  });
}

/**
 * Why the FRI socket cannot be used, as a message for a person, or null when something
 * accepts connections on it. Tells apart: no socket, a socket nobody listens on, permission,
 * and whether spored itself runs (then its FRI is what is down).
 */
export async function friSocketProblem(socket: string, runDirs: readonly string[]): Promise<string | null> {
  let st: fs.Stats | null = null;
  try {
    st = fs.statSync(socket);
  } catch { /* missing */ }
  const err = st === null ? 'ENOENT' : !st.isSocket() ? 'ENOTSOCK' : await probe(socket);
  if (err === null) return null;
  const spored = runningSpored(runDirs);
  const up = spored ? `spored is running (pid ${spored.pid}, run dir ${spored.runDir}) but its FRI is unavailable: ` : '';
  const log = "see spored's log (--log / SPORE_LOG; the shim's default is <run-dir>/spored.log)";
  switch (err) {
    case 'ENOENT':
      return spored
        ? `${up}there is no socket at ${socket}. Its function runtime may still be starting, may have failed (${log}), or spored runs with --fri off or another --fri-socket`
        : `no FRI socket at ${socket}: spored is not running (start bin/spored), or it uses another run dir or socket (set SPORE_RUN_DIR to the run dir it was started with, or point --socket / SPORE_FRI_SOCKET at its fri.sock)`;
    case 'ECONNREFUSED':
      return spored
        ? `${up}${socket} exists but nothing listens on it; FRI failed or stopped (${log}); restarting spored brings it back`
        : `${socket} exists but nothing listens on it: spored is not running (it exited without removing its socket); start bin/spored`;
    case 'EACCES':
    case 'EPERM':
      return `permission denied on ${socket}: FRI is root-only (the socket is mode 0600, owned by root); run spore as root`;
    case 'ENOTSOCK':
      return `${socket} is not a socket; point --socket / SPORE_FRI_SOCKET at spored's FRI socket`;
    default:
      return `${up}cannot connect to ${socket}: ${err}`;
  }
}

export class FriClient implements RemoteFunctionRuntime {
  readonly address: string;
  private readonly client: grpc.Client;
  private readonly callTimeoutMs: number | undefined;

  private constructor(address: string, client: grpc.Client, callTimeoutMs: number | undefined) {
    this.address = address;
    this.client = client;
    this.callTimeoutMs = callTimeoutMs;
  }

  /**
   * Connect and wait until ready, failing fast with a message that says what is wrong and how
   * to fix it: no socket, a socket nobody listens on, or spored up but its FRI unavailable.
   */
  static async connect(address: string, opts: FriClientOptions = {}): Promise<FriClient> {
    const { target, socket } = friTarget(address);
    const hint = 'is spored running? (start bin/spored, or point --socket / SPORE_FRI_SOCKET at its FRI socket)';
    if (socket !== null) {
      const why = await friSocketProblem(socket, opts.runDirs ?? [path.dirname(socket)]);
      if (why !== null) throw new Unavailable(why);
    }
    // Sends up to the largest deploy (a 50 MiB package plus framing); receives anything.
    // A connection of its own: grpc-js otherwise shares one per target across a process's
    // clients (its global subchannel pool), and a client made while spored is dying (a kill -9
    // takes tens of ms to close a large process's sockets) would take the dying connection and
    // fail with it, instead of waiting in the socket the keeper holds for the next spored.
    const client = new grpc.Client(target, grpc.credentials.createInsecure(), {
      'grpc.max_receive_message_length': -1,
      'grpc.max_send_message_length': FRI_MAX_MESSAGE_BYTES,
      'grpc.use_local_subchannel_pool': 1,
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
