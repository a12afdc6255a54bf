// What spored's wiring (runtime/daemon.ts) needs from the FRI layer: start the gRPC service on
// config.friSocket and the HTTP gateway on config.gatewayAddress over one FunctionRuntime.
import type * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import type * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { DaemonConfig } from '../config.js';
import { startGateway } from '../gateway.js';
import type { FunctionRuntime } from './types.js';
import { closeFri, friServer, listenFri } from './server.js';

export { FriClient } from './client.js';
export type { RemoteFunctionRuntime } from './client.js';
export { friServer, friHandlers, listenFri, closeFri } from './server.js';
export { startGateway } from '../gateway.js';

export interface FriHandle {
  grpc: grpc.Server;
  gateway: http.Server;
  /** absolute FRI socket path */
  socket: string;
  /** the gateway's bound "host:port" (useful when configured with port 0) */
  gatewayAddress: string;
  /** stop accepting, let in-flight calls finish (bounded), remove the socket */
  close(): Promise<void>;
}

export async function startFri(
  rt: FunctionRuntime,
  config: Pick<DaemonConfig, 'friSocket' | 'gatewayAddress'> & { friTcp?: string },
  log: Logger,
): Promise<FriHandle> {
  const server = friServer(rt, log.child({ c: 'fri' }));
  const { socket } = await listenFri(server, config.friSocket, config.friTcp);
  let gateway: http.Server;
  try {
    gateway = await startGateway(rt, config.gatewayAddress, log.child({ c: 'gateway' }));
  } catch (e) {
    await closeFri(server, socket, 0);
    throw e;
  }
  const a = gateway.address() as AddressInfo;
  log.info({ socket, gateway: `${a.address}:${a.port}` }, 'FRI ready');
  return {
    grpc: server,
    gateway,
    socket,
    gatewayAddress: `${a.address}:${a.port}`,
    async close() {
      const gw = new Promise<void>((resolve) => gateway.close(() => resolve()));
      // close() would otherwise wait on idle keep-alive connections (wrk leaves them open) and on
      // busy ones indefinitely; give in-flight requests the same grace as gRPC calls.
      gateway.closeIdleConnections();
      const force = setTimeout(() => gateway.closeAllConnections(), 2000);
      await Promise.all([closeFri(server, socket), gw]);
      clearTimeout(force);
    },
  };
}
