// CgroupPool's drain and quarantine with a fake manager and fake timers (no cgroupfs, no
// real signals): what is left in a pool cgroup after RELEASE_DRAIN_MS must still be killed.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { CgroupLayout } from '../pools/cgroup-layout.js';
import type { CgroupManager } from '../pools/cgroup-manager.js';
import { CgroupPool } from '../pools/cgroups.js';

const LAYOUT = {
  mode: 'hybrid', root: '/fake', v1: { memory: '/fake/memory', pids: '/fake/pids' }, unified: '/fake/unified', unifiedControllers: [], named: {},
} satisfies CgroupLayout;

/** pids per pool cgroup path; a pid leaves when it has been SIGKILLed (`dies`) or never (`stuck`). */
function fakeManager(): { mgr: CgroupManager; procs: Map<string, Set<number>>; fenced: Set<string> } {
  const procs = new Map<string, Set<number>>();
  const fenced = new Set<string>();
  const of = (path: string): Set<number> => { let s = procs.get(path); if (!s) { s = new Set(); procs.set(path, s); } return s; };
  const mgr = {
    kind: 'v1',
    create: () => ({ warnings: [] }),
    applyResources: () => ({ warnings: [] }),
    procsFiles: () => [],
    addProcess: () => undefined,
    pids: (h: { path: string }) => [...of(h.path)].sort((a, b) => a - b),
    populated: (h: { path: string }) => of(h.path).size > 0,
    freeze: () => undefined,
    thaw: () => undefined,
    fenceForks: (h: { path: string }) => { fenced.add(h.path); return () => fenced.delete(h.path); },
    killAll: (h: { path: string }) => { const n = of(h.path).size; of(h.path).clear(); return n; },
    stats: () => ({ mode: 'hybrid' }),
    oomKillCount: () => 0,
    scrub: () => undefined,
    destroy: () => undefined,
  } as unknown as CgroupManager;
  return { mgr, procs, fenced };
}

const FAKE_PIDS = [4_000_001, 4_000_002, 4_000_003]; // above any pid_max: never a real process

describe('CgroupPool drain past its deadline (fake manager)', () => {
  let killed: number[];
  beforeEach(() => {
    vi.useFakeTimers();
    killed = [];
    vi.spyOn(process, 'kill').mockImplementation(((pid: number) => { killed.push(pid); return true; }) as typeof process.kill);
  });
  afterEach(() => {
    vi.restoreAllMocks();
    vi.useRealTimers();
  });

  it('a drain whose first look comes after RELEASE_DRAIN_MS (loop held) still SIGKILLs every leftover, and keeps at it until the cgroup is empty', async () => {
    const { mgr, procs, fenced } = fakeManager();
    const quarantines: string[] = [];
    const pool = new CgroupPool(LAYOUT, { size: 1, parent: '/spore/fri-test', manager: mgr, onQuarantine: (m) => quarantines.push(m) });
    pool.fill();
    const { handle } = pool.acquire(undefined, 'k');
    const leftovers = procs.get(handle.path) ?? new Set<number>();
    procs.set(handle.path, leftovers);
    for (const p of FAKE_PIDS) leftovers.add(p);
    pool.release(handle, { keepLimits: true });
    expect(fenced.has(handle.path)).toBe(true);
    // spored's loop held past the drain's deadline before its first look
    vi.setSystemTime(Date.now() + 2500);
    await vi.advanceTimersByTimeAsync(1);
    expect(pool.snapshot()).toMatchObject({ quarantined: 1, draining: 0 });
    expect(quarantines).toHaveLength(1);
    // none of them may be left unsignalled, and the fence stays
    expect(new Set(killed)).toEqual(new Set(FAKE_PIDS));
    expect(fenced.has(handle.path)).toBe(true);
    // still there a second later (dying slowly): killed again
    killed = [];
    await vi.advanceTimersByTimeAsync(1000);
    expect(new Set(killed)).toEqual(new Set(FAKE_PIDS));
    // gone: the cgroup is unfenced and back in the pool
    leftovers.clear();
    await vi.advanceTimersByTimeAsync(1000);
    expect(fenced.has(handle.path)).toBe(false);
    expect(pool.snapshot()).toMatchObject({ quarantined: 1, inQuarantine: 0, free: 1, inUse: 0 });
    pool.close();
  });

  it('close() kills and removes a quarantined cgroup too', async () => {
    const { mgr, procs } = fakeManager();
    const destroyed: string[] = [];
    const killedAll: string[] = [];
    const m = Object.assign(Object.create(null), mgr, {
      destroy: (h: { path: string }) => { destroyed.push(h.path); },
      killAll: (h: { path: string }) => { killedAll.push(h.path); procs.get(h.path)?.clear(); return 0; },
    }) as CgroupManager;
    const pool = new CgroupPool(LAYOUT, { size: 1, parent: '/spore/fri-test2', manager: m });
    pool.fill();
    const { handle } = pool.acquire();
    procs.set(handle.path, new Set(FAKE_PIDS));
    pool.release(handle);
    vi.setSystemTime(Date.now() + 2500);
    await vi.advanceTimersByTimeAsync(1);
    expect(pool.snapshot()).toMatchObject({ quarantined: 1, inQuarantine: 1 });
    killedAll.length = 0;
    destroyed.length = 0;
    pool.close();
    expect(killedAll).toContain(handle.path);
    expect(destroyed).toContain(handle.path);
  });
});
