// What spored's wiring (daemon/daemon.ts) needs from the FRI layer: start the gRPC service on
// config.friSocket and the HTTP gateway on config.gatewayAddress over one FunctionRuntime.
// FRI on its unix socket is the function path's core: a gateway address that cannot be bound
// (a second spored on the default 127.0.0.1:8780) is logged as an error naming the address and
// the fix, and FRI keeps serving without it. `--gateway off` runs FRI without a gateway.
import * as fs from 'node:fs';
import type * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import type * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { DaemonConfig } from './config.js';
import { GatewayListenError, gatewayCustodyKey, startGateway, type HealthBody, type Invoker } from './gateway.js';
import { Unavailable } from '../sys/errors.js';
import type { Metrics } from './metrics.js';
import type { FunctionRuntime } from '../protocols/fri/types.js';
import { closeFri, friServer, listenFri } from '../protocols/fri/server.js';
import type { FdCustody } from '../task/custody.js';

export { FriClient } from '../protocols/fri/client.js';
export type { RemoteFunctionRuntime } from '../protocols/fri/client.js';
export { friServer, friHandlers, listenFri, closeFri } from '../protocols/fri/server.js';
export { startGateway } from './gateway.js';

export interface FriHandle {
  grpc: grpc.Server;
  /** null: --gateway off, or its address could not be bound (logged) */
  gateway: http.Server | null;
  /** absolute FRI socket path */
  socket: string;
  /** the gateway's bound "host:port" (useful when configured with port 0); null without a gateway */
  gatewayAddress: string | null;
  /** FRI is bound and not closed, and its socket file is still in place */
  listening(): boolean;
  /**
   * Stop accepting, let in-flight calls finish (bounded), remove the socket. `handover` (a
   * restart under the keeper): the sockets stay, held by the keeper for the next spored.
   */
  close(handover?: boolean): Promise<void>;
}

export interface FriOptions {
  /** RPC latencies (spore_rpc_seconds{service="fri"}) and the gateway's /metrics */
  metrics?: Metrics;
  /** the gateway's /healthz report */
  health?: () => HealthBody | Promise<HealthBody>;
  /** keeps the gateway's listening socket across spored restarts (the keeper) */
  custody?: FdCustody;
}

export async function startFri(
  rt: FunctionRuntime,
  config: Pick<DaemonConfig, 'friSocket' | 'gatewayAddress'> & Partial<Pick<DaemonConfig, 'gatewayToken' | 'gatewayMaxConnections' | 'gatewayBodyBudgetMiB'>> & { friTcp?: string },
  log: Logger,
  opts: FriOptions = {},
): Promise<FriHandle> {
  const metrics = opts.metrics;
  const server = friServer(rt, log.child({ c: 'fri' }), metrics ? { onCall: (rec) => metrics.observeRpc('fri', rec.method, rec.ms / 1000, rec.code) } : {});
  const { socket, held } = await listenFri(server, config.friSocket, config.friTcp, opts.custody);
  let open = true;
  let gateway: http.Server | null = null;
  if (config.gatewayAddress === 'off') {
    log.info({ socket }, 'gateway off (--gateway off); FRI serves on its socket only');
  } else {
    try {
      gateway = await startGateway(rt, config.gatewayAddress, log.child({ c: 'gateway' }), gatewayOptions(config, opts));
    } catch (e) {
      if (!(e instanceof GatewayListenError)) {
        held?.listener.close();
        await closeFri(server, socket, 0);
        throw e;
      }
      log.error(
        { address: e.address, err: e.message, fri: socket },
        `${e.message}; the HTTP gateway is disabled and FRI keeps serving on ${socket}. ` +
        'Choose a free address with --gateway HOST:PORT (or SPORE_GATEWAY), or run without a gateway with --gateway off',
      );
    }
  }
  const a = gateway ? (gateway.address() as AddressInfo) : null;
  const gatewayAddress = a ? `${a.address}:${a.port}` : null;
  log.info({ socket, gateway: gatewayAddress ?? 'off' }, 'FRI ready');
  return {
    grpc: server,
    gateway,
    socket,
    gatewayAddress,
    listening() {
      if (!open) return false;
      try {
        return fs.statSync(socket).isSocket();
      } catch {
        return false;
      }
    },
    async close(handover = false) {
      open = false;
      held?.listener.close();
      if (held && !handover) opts.custody?.release(held.key);
      await Promise.all([closeFri(server, handover && held ? null : socket), closeGateway(gateway, config.gatewayAddress, opts.custody, handover)]);
    },
  };
}

/** What startGateway is given from spored's config and the FRI options. */
function gatewayOptions(
  config: Partial<Pick<DaemonConfig, 'gatewayToken' | 'gatewayMaxConnections' | 'gatewayBodyBudgetMiB'>>, opts: FriOptions,
): Parameters<typeof startGateway>[3] {
  const o: Parameters<typeof startGateway>[3] = { token: config.gatewayToken ?? null };
  if (config.gatewayMaxConnections !== undefined) o.maxConnections = config.gatewayMaxConnections;
  if (config.gatewayBodyBudgetMiB !== undefined) o.bodyBudgetBytes = config.gatewayBodyBudgetMiB * 1024 * 1024;
  if (opts.metrics) o.metrics = opts.metrics;
  if (opts.health) o.health = opts.health;
  if (opts.custody) o.custody = opts.custody;
  return o;
}

/**
 * Close a gateway: stop accepting, let calls in flight finish (at most 2 s), then cut what is
 * left. `handover` (a restart under the keeper): its listening socket stays with the keeper.
 */
async function closeGateway(gw: http.Server | null, address: string, custody: FdCustody | undefined, handover: boolean): Promise<void> {
  if (!gw) return;
  if (!handover) custody?.release(gatewayCustodyKey(address));
  let force: NodeJS.Timeout | undefined;
  await new Promise<void>((resolve) => {
    gw.close(() => resolve());
    // close() would otherwise wait on idle keep-alive connections (wrk leaves them open) and on
    // busy ones indefinitely; give in-flight requests the same grace as gRPC calls.
    gw.closeIdleConnections();
    force = setTimeout(() => gw.closeAllConnections(), 2000);
  });
  if (force) clearTimeout(force);
}

/** The gateway of a node whose function runtime is off (spored --fri off). */
export interface GatewayOnlyHandle {
  gateway: http.Server | null;
  close(handover?: boolean): Promise<void>;
}

/**
 * `--fri off` (a containers-only node): the gateway still serves `/metrics` and `/healthz`
 * (ttrpc RPC latencies, the OCI path's health); `/invoke/...` is 503 UNAVAILABLE naming the
 * flag. An address that cannot be bound is logged (containers are served without it).
 */
export async function startGatewayOnly(
  config: Pick<DaemonConfig, 'gatewayAddress'> & Partial<Pick<DaemonConfig, 'gatewayToken' | 'gatewayMaxConnections' | 'gatewayBodyBudgetMiB'>>,
  log: Logger,
  opts: FriOptions = {},
): Promise<GatewayOnlyHandle> {
  const off: Invoker = { invoke: () => Promise.reject(new Unavailable('the function runtime is off on this node (spored --fri off); functions are not served here')) };
  let gateway: http.Server | null = null;
  if (config.gatewayAddress !== 'off') {
    try {
      gateway = await startGateway(off, config.gatewayAddress, log.child({ c: 'gateway' }), gatewayOptions(config, opts));
    } catch (e) {
      if (!(e instanceof GatewayListenError)) throw e;
      log.error({ address: e.address, err: e.message }, `${e.message}; no /metrics or /healthz on this node. Choose a free address with --gateway HOST:PORT (or SPORE_GATEWAY), or --gateway off`);
    }
  }
  return { gateway, close: (handover = false) => closeGateway(gateway, config.gatewayAddress, opts.custody, handover) };
}
