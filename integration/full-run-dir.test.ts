// A run dir with no space left (helper-56, 2026-12-02): an RPC whose change spored cannot
// record fails, and the change is undone, instead of being answered OK and lost at the next
// crash (an exec's processes orphaned, a frozen container restored as running). The run dir
// is a small tmpfs mounted where spored will keep it, before the first container starts it.
import { execFileSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { containerdSkipReason, rootfs, startContainerd, type Containerd } from './harness.js';

const skip = containerdSkipReason();
if (skip) console.warn(`[full-run-dir.test] skipped: ${skip}`);
const RT = ['--runtime', 'io.containerd.spore.v2'];
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe.skipIf(skip !== undefined)('a full run dir: changes that cannot be recorded are refused and undone', () => {
  let c: Containerd;
  const filler = (): string => join(c.runDir, 'filler');
  const fill = (): void => {
    const fd = openSync(filler(), 'a');
    const b = Buffer.alloc(4096);
    try { for (;;) writeSync(fd, b); } catch { /* ENOSPC: full */ } finally { closeSync(fd); }
  };
  const state = async (): Promise<string> => (await c.ctr(['task', 'ls'])).stdout.split('\n').find((l) => l.startsWith('x1 '))?.trim().split(/\s+/)[2] ?? '-';

  beforeAll(async () => {
    c = await startContainerd({ extraEnv: { SPORE_GATEWAY: 'off' } });
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', c.runDir]);
    const r = await c.ctr(['run', '-d', ...RT, '--rootfs', rootfs('busybox'), 'x1', '/bin/sleep', '1000']);
    expect(r.code, r.stderr).toBe(0);
  }, 60_000);
  afterAll(async () => {
    try { rmSync(filler(), { force: true }); } catch { /* gone */ }
    await c?.stop();
    try { execFileSync('umount', ['-l', c.runDir]); } catch { /* already gone with the dir */ }
  }, 60_000);

  it('pause and exec fail with the reason; the task keeps running, unfrozen; with space again both work and survive a kill -9', async () => {
    fill();
    const pause = await c.ctr(['task', 'pause', 'x1'], { timeoutMs: 20_000 });
    expect(pause.code).not.toBe(0);
    expect(pause.stderr).toMatch(/cannot write the task record in the run dir .*ENOSPC.*the change was undone/);
    expect(await state()).toBe('RUNNING');
    const freezer = `/sys/fs/cgroup/freezer/${c.namespace}/x1/freezer.state`;
    try { expect(readFileSync(freezer, 'utf8').trim()).toBe('THAWED'); } catch (e) { if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e; }
    const exec = await c.ctr(['task', 'exec', '--exec-id', 'e1', 'x1', '/bin/echo', 'hi'], { timeoutMs: 20_000 });
    expect(exec.code).not.toBe(0);
    expect(exec.stderr).toMatch(/cannot write the task record/);

    rmSync(filler());
    expect((await c.ctr(['task', 'pause', 'x1'])).code).toBe(0);
    const old = Number(readFileSync(join(c.runDir, 'spored.pid'), 'utf8').trim().split(/\s+/)[0]);
    process.kill(old, 'SIGKILL');
    for (let i = 0; i < 100; i++) { await sleep(100); try { if (Number(readFileSync(join(c.runDir, 'spored.pid'), 'utf8').trim().split(/\s+/)[0]) !== old) break; } catch { /* rewritten */ } }
    expect(await state()).toBe('PAUSED');
    expect((await c.ctr(['task', 'resume', 'x1'], { timeoutMs: 20_000 })).code).toBe(0);
    const ok = await c.ctr(['task', 'exec', '--exec-id', 'e2', 'x1', '/bin/echo', 'hi'], { timeoutMs: 20_000 });
    expect(ok.stdout.trim()).toBe('hi');
  }, 90_000);

  it('a Create whose task record cannot be written fails and leaves nothing: no claimed .creating, no container known, no cgroup (red team, helper-70)', async () => {
    // its record's name taken by a non-empty directory: the rename over it fails (EISDIR)
    const dir = join(c.runDir, 'tasks', c.namespace);
    mkdirSync(join(dir, 'z.json', 'x'), { recursive: true });
    try {
      const r = await c.ctr(['run', '--rm', ...RT, '--rootfs', rootfs('busybox'), 'z', '/bin/true'], { timeoutMs: 20_000 });
      expect(r.code).not.toBe(0);
      expect(readdirSync(dir).filter((f) => f.startsWith('z.'))).toEqual(['z.json']);
      expect(existsSync(`/sys/fs/cgroup/pids/${c.namespace}/z`)).toBe(false);
    } finally {
      rmSync(join(dir, 'z.json'), { recursive: true, force: true });
    }
    // not known to spored: containerd's clean-up found nothing, and the id runs now
    await c.ctr(['container', 'rm', 'z']);
    const ok = await c.ctr(['run', '--rm', ...RT, '--rootfs', rootfs('busybox'), 'z', '/bin/echo', 'z-ran'], { timeoutMs: 20_000 });
    expect(ok.stdout, ok.stderr).toBe('z-ran\n');
  }, 90_000);
});
