// Which processes in a lineage's cgroup the escapee sweep kills (functions/escapees.ts), on
// made-up process tables: seeds 10 (the lineage's pid 1) and 11, 12 (replicas), 11 with a fork
// spored has not resolved yet; the version became ready at tick 1000; now is tick 5000; a child
// of a seed with such a fork, younger than 1000 ticks, is spared.
import { describe, expect, it } from 'vitest';
import { sweepVerdict, type Member } from '../functions/escapees.js';

const SEEDS = new Set([10, 11, 12]);

function verdict(table: Member[], members = table.map((m) => m.pid), o: { instances?: number[]; forking?: number[] } = {}): { kill: number[]; deferred: number[] } {
  const byPid = new Map(table.map((m) => [m.pid, m]));
  const forking = new Set(o.forking ?? [11]);
  return sweepVerdict({
    members: members.map((p) => byPid.get(p) as Member), seeds: SEEDS, instances: new Set(o.instances ?? []),
    mayBeFresh: (seed) => forking.has(seed), lookup: (pid) => byPid.get(pid) ?? null,
    readyTicks: 1000, nowTicks: 5000, graceTicks: 1000,
  });
}

describe('escapee sweep verdicts', () => {
  it('a helper the init started in the clock tick the version became ready in is spared when the lineage held it at ready (helper-55: 1 deploy in 3 lost it); one started in that tick after is not', () => {
    const table: Member[] = [
      { pid: 25, ppid: 10, startTicks: 1000 }, // the init's helper, just before ready (same tick)
      { pid: 26, ppid: 12, startTicks: 1000 }, // a replica's fork-hook child, just after ready (same tick)
    ];
    const byPid = new Map(table.map((m) => [m.pid, m]));
    const run = (readyMembers?: Set<string>): { kill: number[]; deferred: number[] } => sweepVerdict({
      members: table, seeds: SEEDS, instances: new Set(), mayBeFresh: () => false, lookup: (pid) => byPid.get(pid) ?? null,
      readyTicks: 1000, nowTicks: 5000, graceTicks: 1000, ...(readyMembers ? { readyMembers } : {}),
    });
    expect(run(new Set(['10:1', '25:1000']))).toEqual({ kill: [26], deferred: [] });
    // by time alone both were killed; a reused pid (another start) is not the helper
    expect(run()).toEqual({ kill: [25, 26], deferred: [] });
    expect(run(new Set(['25:999']))).toEqual({ kill: [25, 26], deferred: [] });
  });

  it('spares the init\'s helpers and their children, and instances not yet moved', () => {
    const table: Member[] = [
      { pid: 20, ppid: 10, startTicks: 500 }, // a helper the init started, before ready
      { pid: 21, ppid: 20, startTicks: 4800 }, // its child, started later
      { pid: 30, ppid: 11, startTicks: 4900 }, // an instance forked 1 s ago, not moved yet
    ];
    expect(verdict(table)).toEqual({ kill: [], deferred: [30] });
  });

  it('kills what an instance forked before its move at once, and its descendants', () => {
    const table: Member[] = [
      { pid: 40, ppid: 12, startTicks: 4990 }, // the instance (moved: not a member, but its parent link is there)
      { pid: 41, ppid: 40, startTicks: 4991 }, // forked by the instance's at-fork hook
      { pid: 42, ppid: 41, startTicks: 4995 }, // and its child
    ];
    expect(verdict(table, [41, 42])).toEqual({ kill: [41, 42], deferred: [] });
  });

  it('kills an orphan reparented to the lineage\'s pid 1 at once; spares it while the first seed has a fork unresolved, for the grace only', () => {
    const table: Member[] = [
      { pid: 50, ppid: 10, startTicks: 3000 }, // its instance is gone: now a child of the first seed
      { pid: 51, ppid: 10, startTicks: 4500 },
    ];
    expect(verdict(table)).toEqual({ kill: [50, 51], deferred: [] });
    expect(verdict(table, undefined, { forking: [10] })).toEqual({ kill: [50], deferred: [51] });
  });

  it('spares the instances spored holds (bound, or their move still under way)', () => {
    const table: Member[] = [{ pid: 80, ppid: 12, startTicks: 4999 }, { pid: 81, ppid: 12, startTicks: 4999 }];
    expect(verdict(table, undefined, { instances: [80] })).toEqual({ kill: [81], deferred: [] });
  });

  it('kills a member whose chain reaches no seed, and never a seed', () => {
    const table: Member[] = [
      { pid: 60, ppid: 99, startTicks: 4000 }, // its parent is gone from /proc
      { pid: 11, ppid: 10, startTicks: 1200 }, // a replica: a seed
    ];
    expect(verdict(table)).toEqual({ kill: [60], deferred: [] });
  });

  it('a parent cycle (a table read mid-change) ends, and the member is killed', () => {
    const table: Member[] = [
      { pid: 70, ppid: 71, startTicks: 4000 },
      { pid: 71, ppid: 70, startTicks: 4000 },
    ];
    expect(verdict(table).kill).toEqual([70, 71]);
  });
});
