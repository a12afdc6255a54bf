// The keeper's two protocols, shared by keeper/ and spored (daemon/, task/):
//  - its control socket (<run-dir>/keeper.sock): JSON lines, one object each;
//  - the mark it puts on ttrpc requests it sends again to a restarted spored.

/**
 * ttrpc metadata key the keeper adds to a request it sends again after spored came back:
 * spored's Task service then answers a request it had already carried out (Create, Start,
 * Exec, Delete, Kill, Pause, Resume) with the outcome instead of an error.
 */
export const REPLAY_METADATA_KEY = 'spore-replay';

/**
 * Version of the control protocol. A spored refuses a keeper of another version with a
 * message (the keeper outlives spored upgrades; a change here needs a keeper restart).
 */
export const KEEPER_PROTOCOL = 1;

/** One reaped process spored did not see exit. */
export interface ReapedExit { pid: number; status: number; at: string }

/** Lines on the control socket, keeper -> spored. */
export type KeeperMessage =
  /** `features`: optional requests this keeper understands ('open', 'sync'); a keeper that predates them sends none */
  | { t: 'hello'; protocol: number; keeperPid: number; generation: number; reaped: ReapedExit[]; parked: { key: string; fd: number }[]; features?: string[] }
  | { t: 'reaped'; exit: ReapedExit }
  /** the answer to a park or an open; `fd`: the keeper's own fd number of what it now holds (an open's) */
  | { t: 'parked'; key: string; ok: boolean; error?: string; fd?: number }
  /** the keeper is stopping: stop everything (seeds too), do not hand over */
  | { t: 'stop' }
  /** the answer to a sync, after every exit the keeper had reaped until then was sent */
  | { t: 'synced'; id: number };

/** Lines on the control socket, spored -> keeper. */
/**
 * The custody key of a listening socket spored parks with the keeper (the HTTP gateway's,
 * FRI's): `listen/<kind>/<name>`. The keeper lets these go when no spored comes up.
 */
export function listenerKey(kind: 'gateway' | 'fri', name: string): string {
  return `listen/${kind}/${name}`;
}

/** The key names a listening socket (listenerKey), of `kind` when given. */
export function isListenerKey(key: string, kind?: 'gateway' | 'fri'): boolean {
  return key.startsWith(kind ? `listen/${kind}/` : 'listen/');
}

/** The fd under a listening net.Server (Node keeps it on the server's handle; Linux only), to park. */
export function listeningFd(server: { address(): unknown }): number | null {
  const fd = (server as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : null;
}

export type SporedMessage =
  /** take a duplicate of spored's fd `fd` and hold it under `key` (replacing one held there) */
  | { t: 'park'; key: string; fd: number }
  /**
   * open `path` with `flags` (O_CLOEXEC added) and hold it under `key` (replacing one held
   * there); the answer carries the keeper's fd number for spored to take a duplicate of. For
   * a client's FIFO: held by the keeper before spored has it, so no kill of spored leaves the
   * FIFO without the end it opened (the client would see EOF). Only when the hello lists
   * the 'open' feature.
   */
  | { t: 'open'; key: string; path: string; flags: number }
  /** close what is held under `key` */
  | { t: 'unpark'; key: string }
  /** spored serves (its ttrpc socket listens): it came up (a keeper that predates this ignores it) */
  | { t: 'ready' }
  /**
   * answer `synced` with this id once every exit reaped so far (zombies reaped now included)
   * was sent: spored's round trip before it reports a process lost. Only when the hello
   * lists the 'sync' feature.
   */
  | { t: 'sync'; id: number };


