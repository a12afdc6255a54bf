// favordynmods: the plan from mountinfo (pure), and the real remount on this host (root).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseMountinfo } from '../pools/cgroup-layout.js';
import { addProcessAsync, procsWritesWarm, setProcsWritesFast } from '../pools/cgroups.js';
import { enableFavorDynmods, favorDynmodsPlan } from '../pools/favordynmods.js';
import { MS } from '../sys/constants.js';

// systemd's v2 mount: nsdelegate and memory_recursiveprot must survive the remount
const V2 = '30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot';
const HYBRID = `31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,nosuid,relatime shared:5 - cgroup2 cgroup2 rw`;

describe('favordynmods plan', () => {
  it('remounts the v2 hierarchy with every option it has plus favordynmods, and the mount\'s own flags', () => {
    const p = favorDynmodsPlan(parseMountinfo(V2));
    expect(p).toEqual({
      action: 'remount', on: false, mountpoint: '/sys/fs/cgroup',
      data: 'nsdelegate,memory_recursiveprot,favordynmods', flags: MS.REMOUNT | MS.NOSUID | MS.NODEV | MS.NOEXEC,
    });
  });

  it('on a hybrid host, remounts the unified hierarchy (its flag covers the v1 ones)', () => {
    const p = favorDynmodsPlan(parseMountinfo(HYBRID));
    expect(p).toMatchObject({ action: 'remount', mountpoint: '/sys/fs/cgroup/unified', data: 'favordynmods', flags: MS.REMOUNT | MS.NOSUID });
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
    expect(favorDynmodsPlan(parseMountinfo(ro))).toMatchObject({ on: false, reason: expect.stringContaining('read-only') });
    const elsewhere = '50 23 0:26 / /mnt/cg rw - cgroup2 cgroup2 rw,favordynmods';
    expect(favorDynmodsPlan(parseMountinfo(elsewhere))).toMatchObject({ on: false });
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
  it.skipIf(skip !== null)(`turns it on and the mount shows it, other options kept${skip ? ` (skipped: ${skip})` : ''}`, () => {
    const before = parseMountinfo(readFileSync('/proc/self/mountinfo', 'utf8')).find((e) => e.fstype === 'cgroup2' && e.mountpoint.startsWith('/sys/fs/cgroup'));
    const r = enableFavorDynmods('on');
    if (!r.on) throw new Error(`not turned on: ${r.reason}`);
    expect(['already', 'enabled']).toContain(r.state);
    const after = parseMountinfo(readFileSync('/proc/self/mountinfo', 'utf8')).find((e) => e.mountpoint === before?.mountpoint);
    expect(after?.superOptions).toContain('favordynmods');
    // nothing the mount had is lost (its nosuid/nodev/noexec, nsdelegate, ...)
    for (const o of before?.superOptions ?? []) expect(after?.superOptions).toContain(o);
    for (const o of (before?.mountOptions ?? []).filter((x) => /^no|^r[ow]$/.test(x))) expect(after?.mountOptions).toContain(o);
    // a second call changes nothing
    expect(enableFavorDynmods('on')).toMatchObject({ on: true, state: 'already' });
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
