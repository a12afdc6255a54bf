// The FRI gRPC service: protobuf requests -> validated plain values -> FunctionRuntime -> protobuf
// responses. All transport concerns live here; the runtime (seeds/) sees only types.ts values and
// throws typed errors, which serviceImplementation maps through statusOf.
//
// A failed invocation (handler threw, timeout, OOM, crash) is a successful RPC whose InvokeResult
// has ok=false: the caller still gets the phase timings, and the CLI decides the exit code.
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { Code, FailedPrecondition, InvalidArgument, Unavailable } from '../../sys/errors.js';
import { FunctionRuntime as FunctionRuntimeService } from '../../fri-proto/gen/spore/fri/v1/fri_pb.js';
import type { FunctionRuntime, InvokeOptions, SeedLevel, ForkTarget } from './types.js';
import {
  engineFromProto, forkTargetKindFromProto, functionInfoToProto, functionSpecFromProto, instanceToProto,
  invokeResultToProto, languageFromProto, seedToProto,
} from './convert.js';
import {
  FRI_MAX_MESSAGE_BYTES, validateEngine, validateEvent, validateFunctionName, validateFunctionSpec, validateId, validateTailBytes,
} from './validate.js';
import { serviceDefinition, serviceImplementation } from './grpc.js';
import { listenerKey, listeningFd } from '../keeper.js';
import type { CallRecord, ServiceImpl } from './grpc.js';

function seedLevelOf(n: number | undefined): SeedLevel | undefined {
  if (n === undefined) return undefined;
  if (n === 0 || n === 1 || n === 2) return n;
  throw new InvalidArgument(`level ${n} does not exist; use 0 (root), 1 (language) or 2 (function)`);
}

/** The handlers, separate from grpc.Server so tests and other transports can call them directly. */
export function friHandlers(rt: FunctionRuntime): ServiceImpl<(typeof FunctionRuntimeService)['method']> {
  return {
    async create(req) {
      return { seed: seedToProto(await rt.create(validateEngine(engineFromProto(req.engine)))) };
    },
    async fork(req) {
      const seedId = validateId('seed_id', req.seedId);
      const kind = forkTargetKindFromProto(req.target);
      if (kind === null) throw new InvalidArgument('fork target is missing; set target.kind to INSTANCE or SEED');
      let target: ForkTarget = { kind: 'instance' };
      if (kind === 'seed') {
        const fn = req.target?.function;
        const language = languageFromProto(req.target?.language ?? 0);
        target = { kind: 'seed' };
        if (fn !== undefined) target.function = validateFunctionName(fn);
        if (language !== null) target.language = language;
      }
      const out = await rt.fork(seedId, target);
      // SeedInfo has a level; InstanceInfo has a seedId. The union is discriminated structurally.
      return 'level' in out
        ? { result: { case: 'seed', value: seedToProto(out) } }
        : { result: { case: 'instance', value: instanceToProto(out) } };
    },
    async activate(req) {
      const id = validateId('instance_id', req.instanceId);
      return { result: invokeResultToProto(await rt.activate(id, validateEvent(req.event))) };
    },
    async invoke(req) {
      const fn = validateFunctionName(req.function);
      const event = validateEvent(req.event);
      const opts: InvokeOptions = {};
      const level = seedLevelOf(req.level);
      if (level !== undefined) opts.level = level;
      return { result: invokeResultToProto(await rt.invoke(fn, event, opts)) };
    },
    async destroy(req) {
      await rt.destroy(validateId('instance_id', req.instanceId));
      return {};
    },
    async listSeeds() {
      return { seeds: rt.listSeeds().map(seedToProto) };
    },
    async deleteSeed(req) {
      await rt.deleteSeed(validateId('seed_id', req.seedId));
      return {};
    },
    async listInstances() {
      return { instances: rt.listInstances().map(instanceToProto) };
    },
    async deploy(req) {
      if (!req.spec) throw new InvalidArgument('deploy: spec is missing');
      const spec = validateFunctionSpec(functionSpecFromProto(req.spec));
      return { function: functionInfoToProto(await rt.deploy(spec)) };
    },
    async remove(req) {
      await rt.remove(validateFunctionName(req.name));
      return {};
    },
    async listFunctions() {
      return { functions: rt.listFunctions().map(functionInfoToProto) };
    },
    async logs(req) {
      const name = validateFunctionName(req.name);
      const tail = validateTailBytes(req.tailBytes);
      return { text: await rt.logs(name, tail) };
    },
  };
}

/** Per-call log line: debug for success and caller mistakes, warn for our own failures. */
function logCall(log: Logger): (rec: CallRecord) => void {
  return (rec) => {
    const ms = Math.round(rec.ms * 1000) / 1000;
    if (rec.code === Code.OK) log.debug({ method: rec.method, ms }, 'fri');
    else if (rec.code === Code.UNKNOWN || rec.code === Code.INTERNAL) {
      log.warn({ method: rec.method, ms, code: rec.code, err: rec.err instanceof Error ? rec.err.stack : rec.message }, 'fri failed');
    } else log.info({ method: rec.method, ms, code: rec.code, err: rec.message }, 'fri rejected');
  };
}

/**
 * A grpc-js server with the FRI service registered (not yet bound; see listenFri). Requests may
 * be as large as the largest deploy (a 50 MiB package plus framing: FRI_MAX_MESSAGE_BYTES).
 */
export function friServer(rt: FunctionRuntime, log: Logger, opts: { onCall?: (rec: CallRecord) => void } = {}): grpc.Server {
  const server = new grpc.Server({
    'grpc.max_receive_message_length': FRI_MAX_MESSAGE_BYTES,
    'grpc.max_send_message_length': -1,
  });
  const logged = logCall(log);
  const extra = opts.onCall;
  server.addService(
    serviceDefinition(FunctionRuntimeService),
    serviceImplementation(FunctionRuntimeService, friHandlers(rt), extra ? (rec) => { logged(rec); extra(rec); } : logged),
  );
  return server;
}

function bind(server: grpc.Server, address: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port)));
  });
}

/** Resolve whether something accepts connections on a unix socket path. */
function socketAlive(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(socketPath);
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}

/**
 * Remove a socket file left by a daemon that died; refuse to steal a live one (another spored)
 * or to delete something that is not a socket.
 */
export async function removeStaleSocket(socketPath: string): Promise<void> {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(socketPath);
  } catch {
    return;
  }
  if (!st.isSocket()) throw new FailedPrecondition(`${socketPath} exists and is not a socket; remove it or choose another --fri-socket`);
  if (await socketAlive(socketPath)) throw new FailedPrecondition(`${socketPath} is in use (is another spored running?)`);
  fs.rmSync(socketPath, { force: true });
}

export interface FriListen {
  socket: string;
  /** bound TCP port when `tcp` was given (0 in the address picks one) */
  tcpPort: number | null;
  /**
   * With a custody: the listener on the unix socket (its connections are handed to the gRPC
   * server), and the custody key it is held under. Close the listener to stop accepting;
   * the socket itself lives on in the custody until it is released.
   */
  held: { listener: net.Server; key: string } | null;
}

/**
 * Who keeps a listening socket while no spored runs (the keeper; task/custody.ts FdCustody
 * has this shape): `park` takes a duplicate, `reclaim` gives one back, `release` closes it.
 */
export interface SocketCustody {
  park(key: string, fd: number): Promise<void>;
  reclaim(key: string): number | null;
  release(key: string): void;
}

/** The custody key of the FRI socket at `socketPath` (absolute). */
export const friCustodyKey = (socketPath: string): string => listenerKey('fri', socketPath);

/**
 * Bind the server on `unix://<socketPath>` and optionally on a TCP address ("host:port").
 *
 * The socket is mode 0600, owned by the daemon's user (root): FRI has no authentication, so only
 * root may drive the runtime. grpc-js binds asynchronously and offers no mode option, so the
 * socket is bound inside a fresh 0700 directory next to its final path, chmod'ed to 0600 there
 * and only then renamed into place: at no moment can another user connect, whatever the umask
 * or the mode of the socket's directory.
 */
export async function listenFri(server: grpc.Server, socketPath: string, tcp?: string, custody?: SocketCustody): Promise<FriListen> {
  const abs = path.resolve(socketPath);
  fs.mkdirSync(path.dirname(abs), { recursive: true, mode: 0o700 });
  const held = custody ? await listenHeld(server, abs, custody) : null;
  if (!held) await placeSocket(abs, (tmp) => bind(server, `unix://${tmp}`));
  let tcpPort: number | null = null;
  if (tcp) {
    try {
      tcpPort = await bind(server, tcp);
    } catch (e) {
      throw new Unavailable(`cannot listen on ${tcp}: ${(e as Error).message}`, { cause: e });
    }
  }
  return { socket: abs, tcpPort, held };
}

/**
 * The unix socket under a custody (the keeper): the one it holds for this path when there is
 * one and the path still names it, else a new one (made as bindUnix makes it: 0600 before it
 * is in place), handed to the custody. Calls that arrive while no spored runs then wait in its
 * backlog instead of being refused. A net.Server accepts; grpc-js serves what it accepts.
 */
async function listenHeld(server: grpc.Server, abs: string, custody: SocketCustody): Promise<{ listener: net.Server; key: string }> {
  const key = friCustodyKey(abs);
  const injector = server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
  const listener = net.createServer((c) => injector.injectConnection(c));
  const listen = (target: string | { fd: number }): Promise<void> => new Promise((resolve, reject) => {
    listener.once('error', reject);
    // a deep backlog (capped by net.core.somaxconn): FRI calls wait in it while spored restarts
    listener.listen(typeof target === 'string' ? { path: target, backlog: 4096 } : { ...target, backlog: 4096 }, () => { listener.off('error', reject); resolve(); });
  });
  let fd = custody.reclaim(key);
  if (fd !== null) {
    // the path must still lead to the held socket: a socket file put there meanwhile (nothing
    // listening on it) refuses the probe, and the held one would be out of everyone's reach
    let here = false;
    try { here = fs.lstatSync(abs).isSocket() && await socketAlive(abs); } catch { /* gone */ }
    if (here) {
      try {
        await listen({ fd });
        return { listener, key };
      } catch { /* not a listening socket: a new one below */ }
    }
    fs.closeSync(fd);
    custody.release(key);
    fd = null;
  }
  await placeSocket(abs, listen);
  const own = listeningFd(listener);
  if (own !== null) await custody.park(key, own).catch(() => undefined);
  return { listener, key };
}

/**
 * A unix socket at `abs`, mode 0600 before anyone can reach it: `bindAt` binds it inside a
 * fresh 0700 directory beside `abs`; it is chmod'ed there and then renamed into place (a
 * stale socket at `abs` is removed first; a live one is refused).
 */
async function placeSocket(abs: string, bindAt: (tmp: string) => Promise<unknown>): Promise<void> {
  await removeStaleSocket(abs);
  const staging = fs.mkdtempSync(path.join(path.dirname(abs), '.fri-bind-'));
  try {
    fs.chmodSync(staging, 0o700);
    const tmp = path.join(staging, 's');
    try {
      await bindAt(tmp);
    } catch (e) {
      throw new Unavailable(`cannot listen on ${abs}: ${(e as Error).message}`, { cause: e });
    }
    fs.chmodSync(tmp, 0o600);
    fs.renameSync(tmp, abs);
  } finally {
    fs.rmSync(staging, { recursive: true, force: true });
  }
}

/** Graceful shutdown bounded by `graceMs`, then cancel what is left. */
export function closeFri(server: grpc.Server, socketPath: string | null, graceMs = 2000): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => server.forceShutdown(), graceMs);
    server.tryShutdown(() => {
      clearTimeout(timer);
      if (socketPath) fs.rmSync(socketPath, { force: true });
      resolve();
    });
  });
}
