// Every process the root seed forks (a container shell, an exec child, an init before its
// execve) starts as a copy of the seed's memory, and a container's root with CAP_SYS_PTRACE
// can seize such a process before its execve and read that memory (README, "Isolation").
// So no container's args, env or hooks' secrets may be in it: they travel past the seed
// (protocol.ts, sealedBody). Here a container's env and args, an exec's args, and a
// createContainer hook's args and env and an annotation are markers, and the readable memory
// of the seed and of its idle container shells is searched for them afterwards (UTF-8, which
// is also V8's one-byte form for these ASCII markers, and UTF-16). On the code before the
// change: 5, 5 and 2 copies of the first three; hooks: 5 and 5. And a plan a container shell
// takes straight from spored ('direct-shells') is not in the seed at all (its hostname and
// cgroup path), where one the seed forks is (the control).
import { execFileSync } from 'node:child_process';
import { closeSync, openSync, readdirSync, readFileSync, readSync, writeFileSync } from 'node:fs';
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
    // a createContainer hook with its own args and env, and an annotation (config.json by hand)
    const hookArg = mark('HOOKARG');
    const hookEnv = mark('HOOKENV');
    const note = mark('NOTEMARK');
    const spec = JSON.parse((await c.ctr(['oci', 'spec'], { timeoutMs: 20_000 })).stdout) as Record<string, unknown> & { process: { args: string[] }; linux: Record<string, unknown> };
    spec.root = { path: rootfs('busybox'), readonly: false };
    spec.process.args = ['/bin/true'];
    spec.linux.cgroupsPath = `/spore-sealed-${randomBytes(3).toString('hex')}`;
    // (createContainer runs before pivot_root, in the container's copy of the host's mounts: c.dir is there)
    const hookOut = join(c.dir, 'hook.out');
    spec.hooks = { createContainer: [{ path: '/bin/sh', args: ['sh', '-c', `echo "$HOOKTOKEN $0" > ${hookOut}`, hookArg], env: [`HOOKTOKEN=${hookEnv}`] }] };
    spec.annotations = { 'example.com/note': note };
    const specFile = join(c.dir, 'sealed-spec.json');
    writeFileSync(specFile, JSON.stringify(spec));
    const hooked = await c.ctr(['run', '--rm', '--runtime', 'io.containerd.spore.v2', ...fifo, '--config', specFile, 'sealed-3'], { timeoutMs: 60_000 });
    expect(hooked.code, hooked.stderr).toBe(0);
    expect(readFileSync(hookOut, 'utf8').trim()).toBe(`${hookEnv} ${hookArg}`); // the hook got its args and env
    // a Create that fails on a missing program: its name is in the error ctr prints (runc's
    // words), carried past the seed in the plan's memfd
    const missing = mark('MISSINGPROG');
    const failed = await c.ctr(['run', '--rm', '--runtime', 'io.containerd.spore.v2', ...fifo, '--rootfs', rootfs('busybox'), 'sealed-4', `/bin/${missing}`], { timeoutMs: 60_000 });
    expect(failed.code).not.toBe(0);
    expect(failed.stderr).toContain(`/bin/${missing}`);
    const seed = Number(execFileSync('pgrep', ['-f', `seed-main.js --socket ${c.runDir}`], { encoding: 'utf8' }).trim().split('\n')[0]);
    expect(seed).toBeGreaterThan(1);
    // the seed and its children now (idle container shells, forked after these Creates)
    const children = readdirSync(`/proc/${seed}/task`).flatMap((t) => readFileSync(`/proc/${seed}/task/${t}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number));
    for (const pid of [seed, ...children]) {
      const found = Object.fromEntries(Object.entries({ env, arg, execArg, hookArg, hookEnv, note, missing }).map(([k, v]) => [k, copiesIn(pid, v)]));
      expect({ pid, ...found }).toEqual({ pid, env: 0, arg: 0, execArg: 0, hookArg: 0, hookEnv: 0, note: 0, missing: 0 });
    }
    // the search itself finds what is there: spored (which made the plans) still has them
    const spored = Number(execFileSync('pgrep', ['-f', `daemon/main.js.*${c.runDir}`], { encoding: 'utf8' }).trim().split('\n')[0]);
    expect(copiesIn(spored, env)).toBeGreaterThan(0);
  }, 120_000);

  it('a Create a container shell takes directly: its plan (hostname, cgroup path) is never in the seed; a forked one\'s is', async () => {
    const mark = (what: string): string => `${what}${randomBytes(6).toString('hex')}`;
    const fifo = ['--fifo-dir', join(c.dir, 'fifo')];
    const specOf = async (hostname: string, cgroup: string, hostPid: boolean): Promise<string> => {
      const spec = JSON.parse((await c.ctr(['oci', 'spec'], { timeoutMs: 20_000 })).stdout) as Record<string, unknown> & { process: { args: string[] }; linux: { namespaces: { type: string }[] } & Record<string, unknown> };
      spec.root = { path: rootfs('busybox'), readonly: false };
      spec.process.args = ['/bin/true'];
      spec.hostname = hostname;
      spec.linux.cgroupsPath = `/${cgroup}`;
      // the host's pid namespace: no shell fits, the seed forks it (the plan passes through it)
      if (hostPid) spec.linux.namespaces = spec.linux.namespaces.filter((n) => n.type !== 'pid');
      const file = join(c.dir, `${hostname}.json`);
      writeFileSync(file, JSON.stringify(spec));
      return file;
    };
    const created = (id: string): Record<string, number> | undefined => {
      for (const line of readFileSync(c.sporeLog, 'utf8').split('\n')) {
        if (!line.includes('"created"') || !line.includes(`"${id}"`)) continue;
        try { return (JSON.parse(line) as { phases?: { seed?: Record<string, number> } }).phases?.seed; } catch { /* not JSON */ }
      }
      return undefined;
    };
    const seed = Number(execFileSync('pgrep', ['-f', `seed-main.js --socket ${c.runDir}`], { encoding: 'utf8' }).trim().split('\n')[0]);
    const direct = { host: mark('HOSTMARK'), cgroup: mark('CGMARK') };
    const ran = await c.ctr(['run', '--rm', '--runtime', 'io.containerd.spore.v2', ...fifo, '--config', await specOf(direct.host, direct.cgroup, false), 'direct-1'], { timeoutMs: 60_000 });
    expect(ran.code, ran.stderr).toBe(0);
    expect(created('direct-1')).toMatchObject({ shell: 1, direct: 1 });
    expect({ host: copiesIn(seed, direct.host), cgroup: copiesIn(seed, direct.cgroup) }).toEqual({ host: 0, cgroup: 0 });
    // the control: a plan the seed forks is in its memory, and the search finds it
    const forked = { host: mark('HOSTMARK'), cgroup: mark('CGMARK') };
    const ran2 = await c.ctr(['run', '--rm', '--runtime', 'io.containerd.spore.v2', ...fifo, '--config', await specOf(forked.host, forked.cgroup, true), 'forked-1'], { timeoutMs: 60_000 });
    expect(ran2.code, ran2.stderr).toBe(0);
    expect(created('forked-1')?.forkMs).toBeGreaterThan(0);
    expect(copiesIn(seed, forked.host) + copiesIn(seed, forked.cgroup)).toBeGreaterThan(0);
  }, 120_000);
});
