// favordynmods: the plan from mountinfo (pure), and the real remount on this host (root).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseMountinfo, type MountinfoEntry } from '../pools/cgroup-layout.js';
import { reconfigureSuperblock } from '../sys/libc.js';
import { addProcessAsync, procsWritesWarm, setProcsWritesFast } from '../pools/cgroups.js';
import { cgroup2RootOptions, enableFavorDynmods, favorDynmodsPlan, watchFavorDynmods, type FavorDynmodsOutcome } from '../pools/favordynmods.js';
import type { Logger } from 'pino';

// systemd's v2 mount: nsdelegate and memory_recursiveprot must survive the remount
const V2 = '30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot';
const HYBRID = `31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,nosuid,relatime shared:5 - cgroup2 cgroup2 rw`;

describe('favordynmods plan', () => {
  it('reconfigures the v2 hierarchy with every option it has plus favordynmods', () => {
    const p = favorDynmodsPlan(parseMountinfo(V2));
    expect(p).toEqual({ action: 'reconfigure', on: false, mountpoint: '/sys/fs/cgroup', options: ['nsdelegate', 'memory_recursiveprot', 'favordynmods'] });
  });

  it('on a hybrid host, the unified hierarchy (its flag covers the v1 ones)', () => {
    const p = favorDynmodsPlan(parseMountinfo(HYBRID));
    expect(p).toEqual({ action: 'reconfigure', on: false, mountpoint: '/sys/fs/cgroup/unified', options: ['favordynmods'] });
  });

  it('goes by what is on top of a mountpoint, and prefers a writable mount of the whole hierarchy', () => {
    // a read-only bind stacked over the writable mount: what the path shows is read-only
    const stacked = `${V2}\n60 30 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot`;
    expect(favorDynmodsPlan(parseMountinfo(stacked))).toMatchObject({ action: 'none', on: false, reason: expect.stringContaining('read-only') });
    // a tmpfs over the unified mount: no cgroup2 there any more
    const covered = `${HYBRID}\n70 41 0:90 / /sys/fs/cgroup/unified rw - tmpfs tmpfs rw`;
    expect(favorDynmodsPlan(parseMountinfo(covered))).toMatchObject({ action: 'none', on: false, reason: expect.stringContaining('no cgroup2 mount') });
    // a read-only bind of a subtree listed first, the writable hierarchy after it
    const subtree = `45 31 0:38 /spore /sys/fs/cgroup/sub ro,relatime - cgroup2 cgroup2 rw\n${HYBRID}`;
    expect(favorDynmodsPlan(parseMountinfo(subtree))).toMatchObject({ action: 'reconfigure', mountpoint: '/sys/fs/cgroup/unified' });
    // key=value options are kept as they are
    const labelled = V2.replace('memory_recursiveprot', 'memory_recursiveprot,seclabel');
    expect(favorDynmodsPlan(parseMountinfo(labelled))).toMatchObject({ options: ['nsdelegate', 'memory_recursiveprot', 'seclabel', 'favordynmods'] });
  });

  it('does nothing when any cgroup hierarchy already has it (v1 included)', () => {
    expect(favorDynmodsPlan(parseMountinfo(V2.replace('memory_recursiveprot', 'memory_recursiveprot,favordynmods')))).toEqual({ action: 'none', on: true, mountpoint: '/sys/fs/cgroup' });
    const v1 = HYBRID.replace('rw,memory', 'rw,memory,favordynmods');
    expect(favorDynmodsPlan(parseMountinfo(v1))).toEqual({ action: 'none', on: true, mountpoint: '/sys/fs/cgroup/memory' });
  });

  it('says why it cannot: pure v1, read-only, mounts outside the root', () => {
    const v1only = HYBRID.split('\n').slice(0, 2).join('\n');
    expect(favorDynmodsPlan(parseMountinfo(v1only))).toMatchObject({ action: 'none', on: false, reason: expect.stringMatching(/no cgroup2 mount.*cgroup_favordynmods=true/) });
    const ro = V2.replace('rw,nosuid', 'ro,nosuid');
    expect(favorDynmodsPlan(parseMountinfo(ro))).toMatchObject({ on: false, reason: expect.stringMatching(/read-only.*mount -o remount,favordynmods/) });
    const elsewhere = '50 23 0:26 / /mnt/cg rw - cgroup2 cgroup2 rw,favordynmods';
    expect(favorDynmodsPlan(parseMountinfo(elsewhere))).toMatchObject({ on: false });
  });
});

describe('the host cgroup2 root options', () => {
  it('are the visible cgroup2 mount\'s, without rw; none without one', () => {
    const dir = mkdtempSync(join(tmpdir(), 'spore-fdm-'));
    try {
      const mi = join(dir, 'mountinfo');
      writeFileSync(mi, `${V2.replace('memory_recursiveprot', 'memory_recursiveprot,favordynmods')}\n`);
      expect(cgroup2RootOptions(mi)).toEqual(['nsdelegate', 'memory_recursiveprot', 'favordynmods']);
      writeFileSync(mi, `${HYBRID.split('\n').slice(0, 2).join('\n')}\n`);
      expect(cgroup2RootOptions(mi)).toEqual([]);
      expect(cgroup2RootOptions(join(dir, 'missing'))).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('favordynmods on this host', () => {
  it('keep leaves a host without it alone; a mountinfo that cannot be read is reported', () => {
    const dir = mkdtempSync(join(tmpdir(), 'spore-fdm-'));
    try {
      const mi = join(dir, 'mountinfo');
      writeFileSync(mi, `${HYBRID}\n`);
      expect(enableFavorDynmods('keep', mi)).toEqual({ on: false, state: 'kept', reason: '--cgroup-favordynmods keep' });
      writeFileSync(mi, `${HYBRID.replace('rw,memory', 'rw,memory,favordynmods')}\n`);
      expect(enableFavorDynmods('keep', mi)).toMatchObject({ on: true, state: 'already' });
      expect(enableFavorDynmods('on', join(dir, 'missing'))).toMatchObject({ on: false, state: 'unavailable', reason: expect.stringContaining('cannot read') });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  const plan = favorDynmodsPlan(parseMountinfo(readFileSync('/proc/self/mountinfo', 'utf8')));
  const major = Number(release().split('.')[0]);
  const skip = process.getuid?.() !== 0 ? 'needs root'
    : major < 6 ? `Linux ${release()} has no favordynmods (6.0 and later)`
    : !plan.on && plan.action === 'none' ? plan.reason : null;
  it.skipIf(skip !== null)(`turns it on through fspick/fsconfig, every other option and mount flag kept${skip ? ` (skipped: ${skip})` : ''}`, () => {
    const cgroup2 = (): MountinfoEntry | undefined => parseMountinfo(readFileSync('/proc/self/mountinfo', 'utf8')).find((e) => e.fstype === 'cgroup2' && e.mountpoint.startsWith('/sys/fs/cgroup'));
    const first = cgroup2();
    if (!first) throw new Error('no cgroup2 mount');
    // a node that has it already (an earlier spored): off for a moment, so that the real
    // reconfigure runs (spored's own periodic check would turn it on again anyway)
    if (first.superOptions.includes('favordynmods')) reconfigureSuperblock(first.mountpoint, first.superOptions.filter((o) => o !== 'rw' && o !== 'ro' && o !== 'favordynmods'));
    try {
      const before = cgroup2();
      expect(before?.superOptions).not.toContain('favordynmods');
      const r = enableFavorDynmods('on');
      if (!r.on) throw new Error(`not turned on: ${r.reason}`);
      expect(r.state).toBe('enabled');
      const after = cgroup2();
      expect(after?.superOptions).toContain('favordynmods');
      for (const o of before?.superOptions ?? []) expect(after?.superOptions).toContain(o);
      expect(after?.mountOptions).toEqual(before?.mountOptions); // the mount itself untouched
      expect(enableFavorDynmods('on')).toMatchObject({ on: true, state: 'already' });
    } finally {
      enableFavorDynmods('on');
    }
  });

  it('with fast writes, addProcessAsync writes every file before it returns; without, the first waits for the threadpool', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'spore-fdm-'));
    const files = [join(dir, 'a.procs'), join(dir, 'b.procs')];
    const reset = (): void => { for (const f of files) writeFileSync(f, ''); };
    try {
      reset();
      setProcsWritesFast(true);
      expect(procsWritesWarm(Number.MAX_SAFE_INTEGER)).toBe(true);
      const fast = addProcessAsync(files, 4242);
      expect(files.map((f) => readFileSync(f, 'utf8'))).toEqual(['4242', '4242']); // before any await
      await fast;
      reset();
      setProcsWritesFast(false);
      expect(procsWritesWarm(Number.MAX_SAFE_INTEGER)).toBe(false);
      const slow = addProcessAsync(files, 4343);
      expect(readFileSync(files[0] as string, 'utf8')).toBe(''); // the threadpool has not run yet
      await slow;
      expect(files.map((f) => readFileSync(f, 'utf8'))).toEqual(['4343', '4343']);
    } finally {
      setProcsWritesFast(false);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('watching favordynmods', () => {
  it('follows the node: turned on, found off and on again (warned once), the fast path following each check', async () => {
    const script: FavorDynmodsOutcome[] = [
      { on: true, state: 'enabled', mountpoint: '/sys/fs/cgroup' },
      { on: true, state: 'already', mountpoint: '/sys/fs/cgroup' },
      { on: true, state: 'enabled', mountpoint: '/sys/fs/cgroup' }, // someone had cleared it
      { on: false, state: 'unavailable', reason: 'refused' },
      { on: false, state: 'unavailable', reason: 'refused' }, // no second warning
      { on: true, state: 'already', mountpoint: '/sys/fs/cgroup' },
    ];
    const lines: string[] = [];
    const log = { info: (...a: unknown[]) => lines.push(`info ${String(a.at(-1))}`), warn: (...a: unknown[]) => lines.push(`warn ${String(a.at(-1))}`) } as unknown as Logger;
    const fast: boolean[] = [];
    let i = 0;
    const w = watchFavorDynmods('on', log, 20, () => {
      const o = script[Math.min(i++, script.length - 1)] as FavorDynmodsOutcome;
      return o;
    });
    try {
      fast.push(procsWritesWarm(Number.MAX_SAFE_INTEGER));
      while (i < script.length) {
        await new Promise((r) => setTimeout(r, 25));
        fast.push(procsWritesWarm(Number.MAX_SAFE_INTEGER));
      }
      expect(w.first).toEqual(script[0]);
      expect(lines.map((l) => l.split(':')[0])).toEqual([
        'info cgroup favordynmods turned on',
        'warn cgroup favordynmods had been turned off on this node (a cgroup2 mount without it?); turned on again',
        'warn cgroup favordynmods is off',
      ]);
      expect(fast[0]).toBe(true);
      expect(fast).toContain(false); // while it was off, writes left the loop again
      expect(fast.at(-1)).toBe(true);
    } finally {
      clearInterval(w.timer);
      setProcsWritesFast(false);
    }
  });

  it('keep: says once that it is off and left so', () => {
    const lines: string[] = [];
    const log = { info: (...a: unknown[]) => lines.push(String(a.at(-1))), warn: (...a: unknown[]) => lines.push(`warn ${String(a.at(-1))}`) } as unknown as Logger;
    const w = watchFavorDynmods('keep', log, 60_000, () => ({ on: false, state: 'kept', reason: '--cgroup-favordynmods keep' }));
    clearInterval(w.timer);
    expect(lines).toEqual(['cgroup favordynmods is off and left so (--cgroup-favordynmods keep): the first cgroup move after a quiet spell waits for an RCU grace period']);
    expect(procsWritesWarm(Number.MAX_SAFE_INTEGER)).toBe(false);
  });
});
