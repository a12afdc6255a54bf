// The function runtime's records: plain data (plus the handles each owns), one per function,
// version, seed and instance. Their states move only through functions/states.ts; what
// callers wait for (promises, resolvers) is kept apart, in the module that owns the record.
import type net from 'node:net';
import type { FunctionSpec, InstanceInfo, SeedInfo } from '../protocols/fri/types.js';
import type { CgroupHandle, PooledCgroup } from '../pools/cgroups.js';
import type { InstanceResult, LoadSpec, SandboxPlan } from '../seeds/protocol.js';
import type { InvocationCount } from './invocation-count.js';
import type { StoredPackage } from './packages.js';
import type { SeedLink } from './seed-link.js';
import type { SlotPool } from './slots.js';
import type { VersionState } from './states.js';

export interface FunctionRec {
  spec: FunctionSpec;
  /** first host uid/gid of the function's id range */
  hostId: number;
  /** the active one last */
  versions: VersionRec[];
  /** calls made to it, kept across spored restarts (functions/invocation-count.ts) */
  invocations: InvocationCount;
  lastVersion: number;
}

export interface VersionRec {
  fn: FunctionRec;
  version: number;
  pkg: StoredPackage;
  load: LoadSpec;
  codeBytes: number;
  cgroup: CgroupHandle;
  /**
   * v1/hybrid: the cpu cgroup.procs of `<lineage>/instances`, where the version's instances run
   * (one group, weighted above its seeds); null on v2, where an instance's own cgroup holds all
   */
  instancesCpuProcs: string | null;
  plan: SandboxPlan;
  /** [0] the lineage's first seed (pid 1 of its pid namespace), then replicas */
  seeds: SeedRec[];
  nextReplica: number;
  slots: SlotPool;
  /**
   * spored's duplicate of the write end of the version's log pipe (-1 before the lineage is
   * asked for): each instance gets a fresh open file description of it (instances.ts)
   */
  logFd: number;
  tmpBytes: number;
  state: VersionState;
  /** calls admitted to this version and not yet released */
  inflight: number;
  /**
   * of `inflight`: instances whose call was answered and whose resources are being recycled
   * (its exit, its cgroup and /tmp slot): no longer calls in flight (instances.ts finish)
   */
  recycling: number;
  /** performance.now() of its last instance exit (registry.ts: the idle refresh) */
  lastExitAt: number;
  /** when it became active, in clock ticks since boot (escapees.ts: what its init started is older) */
  readyTicks: number;
  /** the lineage's processes when it became ready ("pid:startTicks"): its init's helpers among them (escapees.ts) */
  readyMembers?: ReadonlySet<string>;
  deployedAt: string;
}

export interface SeedRec {
  info: SeedInfo;
  link: SeedLink | null;
  /** the seed's host pid, resolved by the kernel (0 until known) */
  hostPid: number;
  /** its NSpid (pid in each namespace, outermost first), read at its first fork (it never changes) */
  nsPids?: number[];
  /** instances forked from it that have not exited */
  inflight: number;
  /** its fork count at which a replica's memory is checked next (registry.ts, maybeRotate; 0: at its first exit) */
  memoryCheckAt: number;
  /** calls its instances were given (parked ones that never got a call not counted; registry.ts, the idle refresh) */
  served?: number;
  /** the function version an L2 seed belongs to */
  version: VersionRec | null;
}

/** One instance's record: plain data plus the handles it owns. */
export interface InstRec {
  info: InstanceInfo;
  seed: SeedRec;
  version: VersionRec;
  cgroup: PooledCgroup | null;
  /** its /tmp slot's name */
  slot: string;
  channel: net.Socket;
  hostPid: number;
  pidfd: number;
  result: InstanceResult | null;
  timer: NodeJS.Timeout | null;
  timedOut: boolean;
  released: boolean;
  /** its call was answered (counted in its version's `recycling` until released) */
  answered?: boolean;
  /** its pool cgroup went back (emptied) before its exit: it answered and left processes behind */
  cgroupReleased?: boolean;
  /** when (performance.now() ms) each step of its way happened, for the debug log's hop breakdown */
  at: { forkSent: number; forked: number; bound: number; requestSent: number };
}
