// Processes that function code started outside any instance's cgroup. An instance is forked
// into its lineage's cgroup and moved into its own pooled one only after the seed reports the
// fork; function code can run in between (a Python `os.register_at_fork` hook, a JavaScript
// global the instance's start-up calls, both installed by the function's init in the seed).
// What it forks there stays in the lineage's cgroup: out of the instance's memory and pids
// limits, and alive after the instance is destroyed (a red team, 2026-12-01). spored sweeps the
// lineage's cgroup after instances exit and kills these; this module only decides which.
//
// A lineage's cgroup (pids hierarchy, or v2's) holds, by design: its seeds (the first one, pid
// 1 of the lineage, and replicas), instances between their fork and their move (children of a
// seed; spored learns of each from its seed's report a moment after the fork), and whatever the
// function's init started in the first seed before the version became ready (a helper it runs
// for its calls), with that one's own children. Anything else is an escapee.

/** One member of the lineage's cgroup, as /proc shows it (host pid namespace). */
export interface Member {
  pid: number;
  /** proc(5) stat field 4 */
  ppid: number;
  /** proc(5) stat field 22: clock ticks since boot */
  startTicks: number;
}

export interface SweepInput {
  members: readonly Member[];
  /** host pids of the version's seeds (starting and retiring ones too) */
  seeds: ReadonlySet<number>;
  /** host pids of the version's instances spored holds (one may not be moved yet) */
  instances: ReadonlySet<number>;
  /**
   * whether a child of this seed may be a fork spored has not resolved yet (an instance whose
   * fork report is still on its way, a replica starting): then a young unknown child is spared
   */
  mayBeFresh: (seedPid: number) => boolean;
  /** parent and start of any pid (a parent may have left the cgroup: a bound instance); null: gone */
  lookup: (pid: number) => Member | null;
  /** when the version became ready (clock ticks since boot): what its init started is older */
  readyTicks: number;
  /**
   * the lineage's processes at that moment ("pid:startTicks"): what its init started, also
   * in the clock tick (10 ms) the version became ready in, which the time alone cannot tell
   * (a helper started just before ready was killed: red team, helper-55)
   */
  readyMembers?: ReadonlySet<string>;
  /** now, in clock ticks since boot */
  nowTicks: number;
  /** ...for this long at most (ticks): a fork is resolved within milliseconds */
  graceTicks: number;
}

export interface SweepVerdict {
  /** kill these now */
  kill: number[];
  /** direct children of a seed that may be a fork not resolved yet: look again later */
  deferred: number[];
}

/**
 * Which members of a lineage's cgroup to kill. Seeds and held instances stay. Each other
 * member's parent chain is followed up to a seed; the process just below the seed decides:
 *  - started before the version was ready: the init's own helper; it and its descendants stay;
 *  - the member itself, started after: a fork spored has not resolved yet while its seed may
 *    have one (`mayBeFresh`) and it is younger than `graceTicks` (deferred), else an orphan
 *    of an instance reparented to the lineage's pid 1 (killed);
 *  - a deeper member under one started after: forked by an instance (or by an escapee):
 *    killed at once.
 * A chain that never reaches a seed (its links gone) is killed. Pure: all of /proc comes in
 * `input`.
 */
export function sweepVerdict(input: SweepInput): SweepVerdict {
  const kill: number[] = [];
  const deferred: number[] = [];
  for (const m of input.members) {
    if (input.seeds.has(m.pid) || input.instances.has(m.pid)) continue;
    let below: Member = m;
    let reached = false;
    for (let hops = 0; hops < 64; hops++) {
      if (input.seeds.has(below.ppid)) { reached = true; break; }
      const up = input.lookup(below.ppid);
      if (!up) break;
      below = up;
    }
    if (reached && (below.startTicks < input.readyTicks || input.readyMembers?.has(`${below.pid}:${below.startTicks}`))) continue;
    if (reached && below.pid === m.pid && input.mayBeFresh(m.ppid) && input.nowTicks - m.startTicks < input.graceTicks) { deferred.push(m.pid); continue; }
    kill.push(m.pid);
  }
  return { kill, deferred };
}
