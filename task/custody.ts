// Custody of the fds that carry containers' stdio across a spored restart. Under a keeper
// (daemon/keeper-link.ts), spored parks each pty master, client FIFO end and exec output
// pipe it opens, under a key naming its container, process and role; the keeper holds a
// duplicate, so a dying spored ends no stream and hangs up no terminal (a process writing
// meanwhile blocks on a full pipe or pty; nothing is lost), and the next spored reclaims
// them and resumes copying. Without a keeper there is no custody (NO_CUSTODY).
import { isListenerKey } from '../protocols/keeper.js';
import * as sys from '../sys/libc.js';

export interface FdCustody {
  /** hand over a duplicate of `fd` under `key` (spored keeps its own and may close it any time) */
  park(key: string, fd: number): Promise<void>;
  /** open `path` (open(2) flags) held under `key` from the start; resolves to this process's own duplicate (close-on-exec) */
  open(key: string, path: string, flags: number): Promise<number>;
  /** the holder closes what it has under `key` */
  release(key: string): void;
  /** keys held from before this spored started */
  keys(): string[];
  /** a duplicate of what is held under `key`, in this process, close-on-exec; null if none */
  reclaim(key: string): number | null;
  /** the holder's own name for what is under `key` now (its fd number: a new one when the key is held anew); undefined if none */
  heldAs(key: string): number | undefined;
}

export const NO_CUSTODY: FdCustody = {
  park: () => Promise.resolve(),
  open: (_key, path, flags) => Promise.resolve(sys.open(path, flags | sys.O.CLOEXEC)),
  release: () => undefined,
  keys: () => [],
  reclaim: () => null,
  heldAs: () => undefined,
};

/** The key of one stdio fd: `<ns>/<id>/<execId or "init">/<role>`. */
export function custodyKey(ns: string, id: string, execId: string, role: string): string {
  return `${ns}/${id}/${execId || 'init'}/${role}`;
}

/** The parts of a stdio custody key (custodyKey); null for any other key (a held listening socket's). */
export function parseCustodyKey(k: string): { ns: string; id: string; proc: string; role: string } | null {
  if (isListenerKey(k)) return null;
  const parts = k.split('/');
  if (parts.length !== 4 || parts.some((x) => x === '')) return null;
  const [ns, id, proc, role] = parts as [string, string, string, string];
  return { ns, id, proc, role };
}

/** One process's view of custody: roles ("master", "stdout", …) under its own key prefix. */
export class ProcessCustody {
  constructor(private readonly custody: FdCustody, private readonly ns: string, private readonly id: string, private readonly execId: string) {}

  /**
   * Park; resolves once the holder has it (never rejects: a failure is logged by the
   * caller's custody and costs only survival across restarts). Callers await it before
   * answering the RPC that made the fd: an answered Create whose relay the keeper never got
   * lost the process's output to a kill -9 right after.
   */
  park(role: string, fd: number): Promise<void> {
    return this.custody.park(custodyKey(this.ns, this.id, this.execId, role), fd).catch(() => undefined);
  }

  release(role: string): void {
    this.custody.release(custodyKey(this.ns, this.id, this.execId, role));
  }

  /** A client's FIFO opened held by the custodian from the start (FdCustody.open); rejects when it cannot be opened. */
  open(role: string, path: string, flags: number): Promise<number> {
    return this.custody.open(custodyKey(this.ns, this.id, this.execId, role), path, flags);
  }

  reclaim(role: string): number | null {
    return this.custody.reclaim(custodyKey(this.ns, this.id, this.execId, role));
  }

  /** Whether the holder has something under `role` from before this spored started (FdCustody.heldAs). */
  holds(role: string): boolean {
    return this.custody.heldAs(custodyKey(this.ns, this.id, this.execId, role)) !== undefined;
  }
}
