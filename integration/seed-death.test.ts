// kill -9 of the root seed (the parent of every container's init; the OOM killer may take it)
// while containers and execs exit and while new ones are created (helper-56, 2026-12-02).
// spored restarts itself for a new root seed; the keeper, the containers' subreaper, reaps
// their exits meanwhile. What must hold: every exit code as the program gave it (3 to 5 of 12
// were reported as 255: exits reaped before spored listened were dropped). (A Create that
// fails with the seed is left for the next spored, daemon.ts leaveUnanswered.) A container
// created but not yet started when the seed dies waits on: the keeper holds its start pipe
// (task/held-start.ts), and its Start, in flight or later, is carried out by the next spored.
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { containerdSkipReason, rootfs, startContainerd, type Containerd } from './harness.js';

const skip = containerdSkipReason();
if (skip) console.warn(`[seed-death.test] skipped: ${skip}`);
const RT = ['--runtime', 'io.containerd.spore.v2'];
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe.skipIf(skip !== undefined)('the root seed killed under load', () => {
  let c: Containerd;
  const bb = rootfs('busybox');
  const bg = (args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> => new Promise((resolve) => {
    const p = spawn('ctr', ['--address', c.address, '--namespace', c.namespace, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    p.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    const t = setTimeout(() => p.kill('SIGKILL'), 60_000);
    p.on('close', (code) => { clearTimeout(t); resolve({ code, stdout, stderr }); });
  });
  const parentOf = (pid: number): number => Number(readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ')[1]);
  const sporedPid = (): number => Number(readFileSync(join(c.runDir, 'spored.pid'), 'utf8').trim().split(/\s+/)[0]);
  const waitNewSpored = async (old: number): Promise<void> => {
    for (let i = 0; i < 150; i++) { await sleep(100); try { if (sporedPid() !== old) return; } catch { /* rewritten */ } }
  };

  beforeAll(async () => {
    c = await startContainerd({ extraEnv: { SPORE_GATEWAY: 'off' } });
    const r = await c.ctr(['run', '-d', ...RT, '--rootfs', bb, 'x', '/bin/sleep', '100000']);
    expect(r.code, r.stderr).toBe(0);
  }, 60_000);
  afterAll(async () => { await c?.stop(); }, 60_000);

  it('exits while no spored listens keep their codes; the running container stays', async () => {
    // the seed a container was forked from is its init's parent (a shell's, then the seed's)
    const xpid = Number((await c.ctr(['task', 'ls'])).stdout.split('\n').find((l) => l.startsWith('x '))?.trim().split(/\s+/)[1]);
    const root = parentOf(xpid);
    expect(readFileSync(`/proc/${root}/cmdline`, 'utf8')).toMatch(/seed/);
    const runs = Array.from({ length: 6 }, (_, i) => bg(['run', ...RT, '--rm', '--rootfs', bb, `z${i}`, '/bin/sh', '-c', `sleep 1.${5 + i}; echo z${i}; exit ${10 + i}`]));
    const execs = Array.from({ length: 3 }, (_, i) => bg(['task', 'exec', '--exec-id', `e${i}`, 'x', '/bin/sh', '-c', `sleep 1.${6 + 2 * i}; echo e${i}; exit ${20 + i}`]));
    await sleep(1400);
    const old = sporedPid();
    process.kill(root, 'SIGKILL');
    const got = await Promise.all([...runs, ...execs]);
    const want = [...runs.map((_, i) => ({ code: 10 + i, stdout: `z${i}\n` })), ...execs.map((_, i) => ({ code: 20 + i, stdout: `e${i}\n` }))];
    expect(got.map((g) => ({ code: g.code, stdout: g.stdout }))).toEqual(want);
    await waitNewSpored(old);
    expect((await c.ctr(['task', 'ls'])).stdout).toMatch(new RegExp(`^x\\s+${xpid}\\s+RUNNING`, 'm'));
  }, 120_000);
});

// Between Create and Start (SPORE_TEST_HOLD_START_MS holds each init's Start before it goes to
// the seed), the seed is killed: the set-up process waited on the seed's pipe alone and ended
// with it (exit 0 for a program that never ran, or a failed Start).
describe.skipIf(skip !== undefined)('the root seed killed between a container\'s Create and its Start', () => {
  let c: Containerd;
  const bb = rootfs('busybox');
  const rootSeed = (): number => {
    const sock = join(c.runDir, 'process-seed.sock');
    const all = readdirSync('/proc').filter((d) => /^\d+$/.test(d)).map(Number).filter((pid) => {
      try { const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0'); return cmd.some((a) => a.endsWith('seed-main.js')) && cmd.includes(sock); } catch { return false; }
    });
    const ppid = (pid: number): number => { try { return Number(/^PPid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]); } catch { return 0; } };
    return all.find((pid) => !all.includes(ppid(pid))) ?? 0; // not its forks (container shells)
  };
  // (spored, and its log, start with the first container)
  const held = (): number => (existsSync(c.sporeLog) ? readFileSync(c.sporeLog, 'utf8') : '').split('\n').filter((l) => l.includes('test hold: an init')).length;

  beforeAll(async () => {
    c = await startContainerd({ extraEnv: { SPORE_GATEWAY: 'off', SPORE_TEST_HOLD_START_MS: '1500' } });
  }, 60_000);
  afterAll(async () => { await c?.stop(); }, 60_000);

  it('a foreground run and a detached one whose Starts wait when the seed dies both run, with their output and exit code', async () => {
    const keeperPipes = (): string[] => {
      const keeper = Number(readFileSync(join(c.runDir, 'keeper.pid'), 'utf8').trim().split(/\s+/)[0]);
      return readdirSync(`/proc/${keeper}/fd`).map((fd) => { try { return readlinkSync(`/proc/${keeper}/fd/${fd}`); } catch { return ''; } }).filter((l) => l.startsWith('pipe:')).sort();
    };
    expect((await c.ctr(['run', ...RT, '--rm', '--rootfs', bb, 'first', '/bin/true'])).code).toBe(0);
    const ownPipes = keeperPipes(); // the keeper's own (Node's), with spored up and no container
    const fg = ctrIn(c, ['run', ...RT, '--rm', '--rootfs', bb, 'fg', '/bin/sh', '-c', 'echo ran-after-the-seed; exit 7']);
    const before = held();
    for (let i = 0; i < 100 && held() === before; i++) await sleep(50);
    const bgRun = ctrIn(c, ['run', '-d', ...RT, '--rootfs', bb, 'bg', '/bin/sleep', '1000']);
    for (let i = 0; i < 100 && held() < before + 2; i++) await sleep(50);
    expect(held()).toBe(before + 2); // both Creates answered, both Starts held
    process.kill(rootSeed(), 'SIGKILL');
    const [f, b] = await Promise.all([fg, bgRun]);
    expect({ code: f.code, stdout: f.stdout }).toEqual({ code: 7, stdout: 'ran-after-the-seed\n' });
    expect(b.code, b.stderr).toBe(0);
    const ls = (await c.ctr(['task', 'ls'])).stdout;
    const pid = Number(/^bg\s+(\d+)\s+RUNNING/m.exec(ls)?.[1]);
    expect(readFileSync(`/proc/${pid}/cmdline`, 'utf8')).toBe('/bin/sleep\u00001000\u0000');
    expect((await c.ctr(['task', 'kill', '-s', 'KILL', 'bg'])).code).toBe(0);
    for (let i = 0; i < 100 && !/^bg\s+\d+\s+STOPPED/m.test((await c.ctr(['task', 'ls'])).stdout); i++) await sleep(50);
    expect((await c.ctr(['task', 'rm', 'bg'])).code).toBe(0);
    // the keeper let go of their pipes (start, status, stdio relays)
    expect(keeperPipes()).toEqual(ownPipes);
  }, 120_000);
});

function ctrIn(c: Containerd, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn('ctr', ['--address', c.address, '--namespace', c.namespace, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    p.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    const t = setTimeout(() => p.kill('SIGKILL'), 60_000);
    p.on('close', (code) => { clearTimeout(t); resolve({ code, stdout, stderr }); });
  });
}
