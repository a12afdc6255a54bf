// Every process the root seed forks (a container shell, an exec child, an init before its
// execve) starts as a copy of the seed's memory, and a container's root with CAP_SYS_PTRACE
// can seize such a process before its execve and read that memory (README, "Isolation").
// So no container's args or env may be in it: they travel past the seed (protocol.ts,
// sealProcess). Here a container's env and args, and an exec's args, are markers, and the
// seed's whole readable memory is searched for them afterwards (UTF-8 and UTF-16). On the
// code before the change: 5, 5 and 2 copies.
import { execFileSync } from 'node:child_process';
import { closeSync, openSync, readFileSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { containerdSkipReason, rootfs, startContainerd, type Containerd } from '../harness.js';

const skip = containerdSkipReason();
if (skip) console.warn(`[seed-memory.test] skipped: ${skip}`);

/** Copies of `needle` in the readable mappings of process `pid` (UTF-8 or UTF-16LE). */
function copiesIn(pid: number, needle: string): number {
  const maps = readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n').filter((l) => /^[0-9a-f]+-[0-9a-f]+ r/.test(l));
  const fd = openSync(`/proc/${pid}/mem`, 'r');
  let hits = 0;
  try {
    for (const l of maps) {
      const [a, b] = (l.split(' ')[0] as string).split('-').map((x) => BigInt(`0x${x}`)) as [bigint, bigint];
      const len = Number(b - a);
      if (len > 256 << 20) continue; // reservations, not data
      const buf = Buffer.alloc(len);
      try { readSync(fd, buf, 0, len, a); } catch { continue; } // [vvar] and the like
      for (const n of [Buffer.from(needle), Buffer.from(needle, 'utf16le')]) for (let i = buf.indexOf(n); i >= 0; i = buf.indexOf(n, i + 1)) hits++;
    }
  } finally {
    closeSync(fd);
  }
  return hits;
}

describe.skipIf(skip !== undefined)('the root seed holds no container args or env', () => {
  let c: Containerd;
  beforeAll(async () => { c = await startContainerd({}); }, 60_000);
  afterAll(async () => { await c?.stop(); }, 60_000);

  it('after a container ran and an exec ran in another, their markers are nowhere in the seed', async () => {
    const mark = (what: string): string => `${what}${randomBytes(6).toString('hex')}`;
    const env = mark('ENVMARK');
    const arg = mark('ARGMARK');
    const execArg = mark('EXECMARK');
    const fifo = ['--fifo-dir', join(c.dir, 'fifo')];
    const run = await c.ctr(['run', '--rm', '--runtime', 'io.containerd.spore.v2', '--env', `SECRET=${env}`, ...fifo, '--rootfs', rootfs('busybox'), 'sealed-1', '/bin/sh', '-c', `echo $SECRET ${arg}`], { timeoutMs: 60_000 });
    // the container got both (the unsealing works)
    expect({ code: run.code, out: run.stdout.trim() }).toEqual({ code: 0, out: `${env} ${arg}` });
    const bg = await c.ctr(['run', '-d', '--runtime', 'io.containerd.spore.v2', ...fifo, '--rootfs', rootfs('busybox'), 'sealed-2', '/bin/sleep', '60'], { timeoutMs: 60_000 });
    expect(bg.code).toBe(0);
    const ex = await c.ctr(['task', 'exec', '--exec-id', 'e1', ...fifo, 'sealed-2', '/bin/echo', execArg], { timeoutMs: 60_000 });
    expect({ code: ex.code, out: ex.stdout.trim() }).toEqual({ code: 0, out: execArg });
    const seed = Number(execFileSync('pgrep', ['-f', `seed-main.js --socket ${c.runDir}`], { encoding: 'utf8' }).trim().split('\n')[0]);
    expect(seed).toBeGreaterThan(1);
    expect({ env: copiesIn(seed, env), args: copiesIn(seed, arg), exec: copiesIn(seed, execArg) }).toEqual({ env: 0, args: 0, exec: 0 });
    // the search itself finds what is there: spored (which made the plans) still has them
    const spored = Number(execFileSync('pgrep', ['-f', `daemon/main.js.*${c.runDir}`], { encoding: 'utf8' }).trim().split('\n')[0]);
    expect(copiesIn(spored, env)).toBeGreaterThan(0);
  }, 120_000);
});
