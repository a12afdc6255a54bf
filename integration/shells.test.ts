// Container shells in the real root seed (engines/process/shells.ts), without containerd: the
// seed keeps the asked number of children forked ahead, each pid 1 of a pid namespace of its
// own and waiting; a Create that fits is handed to one (no fork on its path) and runs as a
// forked one would; one that does not fit is forked as before; the pool refills; idle shells'
// exits never reach spored; nothing is left behind when the count goes down, when the seed
// stops, or when a spored lets go of a surviving seed (shells stay in its pool for the next).
import { closeSync, mkdtempSync, writeSync, readFileSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SeedClient } from '../dist/engines/process/seed-client.js';
import { initPlan } from '../dist/engines/process/plan.js';
import type { InitPlan } from '../dist/engines/process/protocol.js';
import { containerdSkipReason, rootfs, startContainerd, type Containerd } from './harness.js';
import { execFileSync } from 'node:child_process';

const root = process.getuid?.() === 0;
if (!root) console.warn('[shells.test] skipped: needs root (namespaces, mounts)');

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function children(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

/** The seed's children that are still its own code (shells, or inits not yet exec'd). */
function shellsOf(seedPid: number): number[] {
  return children(seedPid).filter((k) => {
    try { return readFileSync(`/proc/${k}/cmdline`, 'utf8').startsWith('spore-init'); } catch { return false; }
  });
}

/**
 * `spawn(p)` on `seed` while the seed is stopped (SIGSTOP) for `ms`, after `first` (sent
 * before the claim, read first): what a busy seed does to a claim waiting in its link.
 */
async function spawnWhileSeedStopped(seed: SeedClient, p: { key: string; plan: InitPlan }, first: () => void, ms: number): ReturnType<SeedClient['spawn']> {
  process.kill(seed.pid, 'SIGSTOP');
  let spawning: ReturnType<SeedClient['spawn']>;
  try {
    first();
    spawning = seed.spawn(p.key, p.plan);
    spawning.catch(() => undefined);
    await sleep(ms);
  } finally {
    process.kill(seed.pid, 'SIGCONT');
  }
  return spawning;
}

/** A root seed of its own, started with `o`, and the exits it reports (pid → wait status). */
async function seedWithExits(o: Parameters<SeedClient['start']>[0]): Promise<{ seed: SeedClient; exits: Map<number, number> }> {
  const seed = new SeedClient();
  const exits = new Map<number, number>();
  seed.on('exit', (pid, status) => exits.set(pid, status));
  await seed.start(o);
  return { seed, exits };
}

/** Close a direct spawn's own pipes (the test starts it through the seed, which keeps its copies). */
function closeOwn(r: { own?: { start: number; status: number } }): void {
  if (r.own) { closeSync(r.own.start); closeSync(r.own.status); }
}

async function until<T>(what: string, f: () => T | undefined | false, ms = 5000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

// direct: spored claims a shell and writes the plan to it itself (seed-client.ts spawnDirect);
// the seed never holds the plan, and reads none of the set-up's status
describe.skipIf(!root).each([{ direct: false }, { direct: true }])('container shells in the root seed (direct $direct)', ({ direct }) => {
  let dir: string;
  let busybox: string;
  let n = 0;

  /** A container that writes `text` to a file and exits; `pid`: how its spec has the pid namespace. */
  function plan(text: string, pid: 'new' | 'host' = 'new', hooks?: Record<string, unknown>): { key: string; plan: InitPlan; out: string } {
    const id = `sh${++n}`;
    const out = join(dir, `${id}.out`);
    writeFileSync(out, '');
    const spec = {
      ociVersion: '1.1.0',
      process: { args: ['/bin/sh', '-c', `echo ${text} pid=$$`], cwd: '/', env: ['PATH=/bin'], user: { uid: 0, gid: 0 } },
      root: { path: busybox },
      // a fresh /dev (device nodes go there, never into the shared rootfs)
      mounts: [{ destination: '/proc', type: 'proc', source: 'proc' }, { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'mode=755'] }],
      linux: { namespaces: [...(pid === 'new' ? [{ type: 'pid' }] : []), { type: 'mount' }, { type: 'ipc' }, { type: 'uts' }, { type: 'network' }] },
      ...(hooks ? { hooks } : {}),
    };
    const p = initPlan({ id, spec: spec as never, bundle: dir, rootfs: busybox, stdio: { stdin: '', stdout: out, stderr: out, terminal: '' }, cgroupProcs: [], cgroupV1Dirs: null, seccomp: null });
    return { key: `default/${id}`, plan: p, out };
  }

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'spore-shells-'));
    busybox = rootfs('busybox');
  });
  afterAll(() => { rmSync(dir, { recursive: true, force: true }); });

  it('keeps N ready (pid 1 of their own pid namespace), hands a fitting Create to one, forks one that does not fit, refills, goes to 0', async () => {
    const { seed, exits } = await seedWithExits({ shells: 2, directShells: direct });
    try {
      const ready = await until('2 shells', () => { const s = shellsOf(seed.pid); return s.length === 2 ? s : undefined; });
      const seedPidNs = readlinkSync(`/proc/${seed.pid}/ns/pid`);
      for (const k of ready) {
        expect(readlinkSync(`/proc/${k}/ns/pid`)).not.toBe(seedPidNs);
        expect(readFileSync(`/proc/${k}/status`, 'utf8')).toMatch(new RegExp(`^NSpid:\\s+${k}\\s+1$`, 'm'));
      }

      // a Create that fits: a shell becomes its init, no fork on the way
      const a = plan('from-a-shell');
      const got = await seed.spawn(a.key, a.plan);
      expect(got.timings.shell).toBe(1);
      expect(got.timings.direct).toBe(direct ? 1 : undefined);
      // a direct spawn's start and status pipes are spored's own (the seed keeps its copies)
      expect(got.own !== undefined).toBe(direct);
      closeOwn(got);
      expect(got.timings.forkMs).toBeUndefined();
      expect(ready).toContain(got.pid);
      await seed.startProcess(a.key);
      await until('its exit', () => exits.has(got.pid));
      expect(exits.get(got.pid)).toBe(0);
      expect(readFileSync(a.out, 'utf8')).toBe('from-a-shell pid=1\n');

      // refilled (off the Create path), with new children
      const refilled = await until('the pool refilled', () => { const s = shellsOf(seed.pid); return s.length === 2 && s.some((k) => !ready.includes(k)) ? s : undefined; });

      // a spec in the host's pid namespace does not fit: forked as before, the shells stay
      const b = plan('forked', 'host');
      const forked = await seed.spawn(b.key, b.plan);
      expect(forked.timings.shell).toBeUndefined();
      expect(forked.timings.forkMs).toBeGreaterThan(0);
      await seed.startProcess(b.key);
      await until('its exit', () => exits.has(forked.pid));
      expect(readFileSync(b.out, 'utf8')).toMatch(/^forked pid=\d+\n$/);
      expect(shellsOf(seed.pid).sort()).toEqual(refilled.sort());

      // an aborted Create a shell took: killed like a forked one, its exit reported
      const c = plan('never');
      const aborted = await seed.spawn(c.key, c.plan);
      closeOwn(aborted);
      expect(aborted.timings.shell).toBe(1);
      await seed.abort(c.key);
      await until('the aborted init\'s exit', () => exits.has(aborted.pid));
      expect(readFileSync(c.out, 'utf8')).toBe('');

      // fewer: the extra ones end at once, and their exits are not reported
      const before = await until('2 shells again', () => { const s = shellsOf(seed.pid); return s.length === 2 ? s : undefined; });
      seed.setShells(0);
      await until('no shells', () => shellsOf(seed.pid).length === 0 && before.every((k) => !alive(k)));
      await sleep(200);
      for (const k of [...ready, ...refilled, ...before]) if (k !== got.pid && k !== aborted.pid) expect(exits.has(k), `idle shell ${k}'s exit reported`).toBe(false);
    } finally {
      await seed.stop();
    }
  }, 60_000);

  it('sandboxes killed before Start leave nothing behind: their ids can be created again, and later shells keep all their pipes', async () => {
    const { seed, exits } = await seedWithExits({ shells: 2, directShells: direct });
    try {
      await until('2 shells', () => shellsOf(seed.pid).length === 2 || undefined);
      // Create, then kill -9 (as a Kill before Start does), never Start, never abort
      const killed = Array.from({ length: 12 }, () => plan('never'));
      const pids = await Promise.all(killed.map(async (k) => { const r = await seed.spawn(k.key, k.plan); closeOwn(r); return r.pid; }));
      for (const pid of pids) process.kill(pid, 'SIGKILL');
      await until('their exits', () => pids.every((pid) => exits.has(pid)) || undefined);
      await sleep(300); // the pool refills meanwhile
      // every shell now waiting holds its three pipe ends (a stale fd number once made a new
      // shell close one of its own)
      const pipes = (pid: number): number => readdirSync(`/proc/${pid}/fd`).filter((f) => { try { return readlinkSync(`/proc/${pid}/fd/${f}`).startsWith('pipe:'); } catch { return false; } }).length;
      const waiting = await until('2 shells', () => { const s = shellsOf(seed.pid); return s.length === 2 ? s : undefined; });
      for (const k of waiting) expect(pipes(k), `shell ${k}'s pipes`).toBeGreaterThanOrEqual(3);
      // the same ids again, and new ones: each runs to its end
      for (const k of [...killed.slice(0, 3), plan('a'), plan('b'), plan('c')]) {
        const again = { ...k, plan: { ...k.plan } };
        writeFileSync(k.out, '');
        const got = await seed.spawn(k.key, again.plan);
        closeOwn(got);
        await seed.startProcess(k.key);
        await until('its exit', () => exits.has(got.pid) || undefined);
        expect(exits.get(got.pid)).toBe(0);
        expect(readFileSync(k.out, 'utf8')).toMatch(/ pid=1\n$/);
      }
    } finally {
      await seed.stop();
    }
  }, 60_000);

  it('a surviving seed keeps its shells when its spored lets go; they end with the seed', async () => {
    const socket = join(dir, 'seed.sock');
    const first = new SeedClient();
    await first.start({ socket, survive: true, shells: 2, directShells: direct });
    const seedPid = first.pid;
    try {
      const shells = await until('2 shells', () => { const s = shellsOf(seedPid); return s.length === 2 ? s : undefined; });
      // the seed's own sockets (its listener, its link to this spored): no shell holds one
      const sockets = (pid: number): string[] => readdirSync(`/proc/${pid}/fd`).filter((f) => Number(f) > 2)
        .map((f) => { try { return readlinkSync(`/proc/${pid}/fd/${f}`); } catch { return ''; } }).filter((t) => t.startsWith('socket:'));
      expect(sockets(seedPid).length).toBeGreaterThanOrEqual(2);
      // a shell just forked still holds them for a moment, until it has closed what it inherited
      await until('shells without the seed\'s sockets', () => shells.every((k) => sockets(k).length === 0) || undefined).catch(() => undefined);
      for (const k of shells) expect(sockets(k)).toEqual([]);
      first.detach(); // a spored restarting
      await sleep(300);
      expect(shellsOf(seedPid).sort()).toEqual(shells.sort());
      const next = new SeedClient();
      const exits: number[] = [];
      next.on('exit', (pid) => exits.push(pid));
      // shells not given: the seed keeps its count (and hands shells itself: direct hand-offs
      // are per spored, asked for with a count)
      const at = await next.start({ socket, survive: true, directShells: direct });
      expect(at.started).toBe(false);
      expect(next.pid).toBe(seedPid);
      const p = plan('after-restart');
      const got = await next.spawn(p.key, p.plan);
      expect(got.timings.shell).toBe(1);
      expect(shells).toContain(got.pid);
      await next.startProcess(p.key);
      await until('its exit', () => exits.includes(got.pid));
      const now = await until('refilled', () => { const s = shellsOf(seedPid); return s.length === 2 ? s : undefined; });
      await next.stop();
      await until('the seed and its shells gone', () => !alive(seedPid) && now.every((k) => !alive(k)));
    } finally {
      try { process.kill(seedPid, 'SIGKILL'); } catch { /* gone */ }
    }
  }, 60_000);

  it('a shell whose network namespace was made ahead is replaced once older than the bound (SPORE_NET_SHELL_MAX_AGE_MS)', async () => {
    process.env.SPORE_NET_SHELL_MAX_AGE_MS = '1000';
    const seed = new SeedClient();
    try {
      await seed.start({ shells: 1, directShells: direct });
    } finally {
      delete process.env.SPORE_NET_SHELL_MAX_AGE_MS;
    }
    const exits = new Map<number, number>();
    seed.on('exit', (pid, status) => exits.set(pid, status));
    const ns = (pid: number): string => readlinkSync(`/proc/${pid}/ns/net`);
    try {
      const seedNet = ns(seed.pid);
      await until('a shell', () => shellsOf(seed.pid).length === 1 || undefined);
      const a = plan('x');
      a.plan.lateCgroup = true;
      const got = await seed.spawn(a.key, a.plan);
      closeOwn(got);
      await seed.startProcess(a.key);
      const first = await until('a shell with its own network namespace', () => shellsOf(seed.pid).find((k) => { try { return ns(k) !== seedNet; } catch { return false; } }));
      const firstNet = ns(first);
      // a second later it is gone, and another with a network namespace of its own waits
      await until('the old one replaced', () => (!alive(first) && shellsOf(seed.pid).some((k) => { try { const n = ns(k); return n !== seedNet && n !== firstNet; } catch { return false; } })) || undefined, 10_000);
      // an idle shell's exit is the pool's, never reported
      expect(exits.has(first)).toBe(false);
    } finally {
      await seed.stop();
    }
  }, 60_000);

  it('a Create that makes its network namespace gets the next shells to make one ahead; one that joins a network namespace turns them back', async () => {
    const { seed, exits } = await seedWithExits({ shells: 2, directShells: direct });
    const ns = (pid: number, type: string): string => readlinkSync(`/proc/${pid}/ns/${type}`);
    /** a late-cgroup plan (spored's usual one), making its network namespace or joining `netns` */
    const late = (text: string, netns?: string): ReturnType<typeof plan> => {
      const p = plan(text);
      p.plan.lateCgroup = true;
      if (netns) p.plan.namespaces = p.plan.namespaces.map((n) => (n.type === 'network' ? { ...n, path: netns } : n));
      return p;
    };
    const run = async (p: ReturnType<typeof plan>): Promise<number> => {
      const got = await seed.spawn(p.key, p.plan);
      closeOwn(got);
      expect(got.timings.shell).toBe(1);
      const net = ns(got.pid, 'net');
      await seed.startProcess(p.key);
      await until('its exit', () => exits.has(got.pid) || undefined);
      expect(exits.get(got.pid)).toBe(0);
      expect(readFileSync(p.out, 'utf8')).toMatch(new RegExp(`^${p.key.split('/')[1]}-ran pid=1\n$`));
      return got.pid && net.length;
    };
    try {
      const seedNet = ns(seed.pid, 'net');
      await until('2 shells', () => shellsOf(seed.pid).length === 2 || undefined);
      // plain shells: in the seed's network namespace
      for (const k of shellsOf(seed.pid)) expect(ns(k, 'net')).toBe(seedNet);
      const a = late('x'); a.plan.process.args = ['/bin/sh', '-c', `echo ${a.key.split('/')[1]}-ran pid=$$`];
      await run(a);
      // the refill is of the plan's shape: its own network namespace, made ahead
      const netShell = await until('a shell with its own network namespace', () => shellsOf(seed.pid).find((k) => { try { return ns(k, 'net') !== seedNet && ns(k, 'ipc') !== ns(seed.pid, 'ipc'); } catch { return false; } }));
      const aheadNet = ns(netShell, 'net');
      // the next such Create goes to it (the shell that made most ahead) and keeps that namespace
      const b = late('x'); b.plan.process.args = ['/bin/sh', '-c', `echo ${b.key.split('/')[1]}-ran pid=$$`];
      const got = await seed.spawn(b.key, b.plan);
      closeOwn(got);
      expect(got.pid).toBe(netShell);
      expect(ns(got.pid, 'net')).toBe(aheadNet);
      await seed.startProcess(b.key);
      await until('its exit', () => exits.has(got.pid) || undefined);
      expect(readFileSync(b.out, 'utf8')).toBe(`${b.key.split('/')[1]}-ran pid=1\n`);
      // joining a network namespace (a pod's): the container is in that one, and the shells
      // made from then on are in the seed's network namespace again
      await until('2 shells', () => shellsOf(seed.pid).length === 2 || undefined);
      const c = late('x', `/proc/${seed.pid}/ns/net`); c.plan.process.args = ['/bin/sh', '-c', `echo ${c.key.split('/')[1]}-ran pid=$$`];
      const joined = await seed.spawn(c.key, c.plan);
      closeOwn(joined);
      expect(ns(joined.pid, 'net')).toBe(seedNet);
      await seed.startProcess(c.key);
      await until('its exit', () => exits.has(joined.pid) || undefined);
      expect(exits.get(joined.pid)).toBe(0);
      await until('only shells in the seed\'s network namespace', () => { const sh = shellsOf(seed.pid); return sh.length === 2 && sh.every((k) => { try { return ns(k, 'net') === seedNet; } catch { return false; } }) || undefined; });
    } finally {
      await seed.stop();
    }
  }, 60_000);


  // (direct only: the seed hands shells itself otherwise, and reads their status)
  if (direct) {
    it.each([{ nextDirect: true }, { nextDirect: false }])('a shell an earlier spored wrote a plan to is not taken for another: killed, and the plan forked (next spored direct $nextDirect)', async ({ nextDirect }) => {
      const socket = join(dir, `seed-foreign-${nextDirect}.sock`);
      const first = new SeedClient();
      await first.start({ socket, survive: true, shells: 1, directShells: true });
      const seedPid = first.pid;
      try {
        const offered = (c: SeedClient): Map<number, { plan: number }> => (c as unknown as { idleShells: Map<number, { plan: number }> }).idleShells;
        const [victim] = await until('an offered shell', () => { const m = offered(first); return m.size === 1 ? [...m.keys()] : undefined; });
        // an earlier spored's plan on the shell's pipe, its claim never sent (it died first)
        const old = plan('old-plan');
        old.plan.nonce = 'an-earlier-spored';
        const { shellFrame } = await import('../dist/engines/process/protocol.js');
        writeSync(offered(first).get(victim as number)?.plan as number, shellFrame(old.plan) as Buffer);
        first.detach();
        const next = new SeedClient();
        const exits = new Map<number, number>();
        next.on('exit', (pid, status) => exits.set(pid, status));
        await next.start({ socket, survive: true, shells: 1, directShells: nextDirect });
        // (direct: offered to it again; else the seed hands it to the next fitting plan itself)
        if (nextDirect) await until('the shell offered again', () => offered(next).has(victim as number) || undefined);
        else await sleep(300);
        const p = plan('new-plan');
        const got = await next.spawn(p.key, p.plan);
        closeOwn(got);
        // not the shell that set up the old plan: that one is killed, the new plan forked (or
        // handed to a refilled shell)
        expect(got.pid).not.toBe(victim);
        await until('the old plan\'s shell gone', () => !alive(victim as number) || undefined);
        await next.startProcess(p.key);
        await until('its exit', () => exits.has(got.pid) || undefined);
        expect(exits.get(got.pid)).toBe(0);
        expect(readFileSync(p.out, 'utf8')).toMatch(/^new-plan pid=\d+\n$/);
        expect(readFileSync(old.out, 'utf8')).toBe('');
        await next.stop();
      } finally {
        try { process.kill(seedPid, 'SIGKILL'); } catch { /* gone */ }
      }
    }, 60_000);

    it('a plan with a createContainer hook waits for its claim: a refused one is forked, and the hook runs once', async () => {
      const { seed, exits } = await seedWithExits({ shells: 1, directShells: true });
      try {
        const offered = (c: SeedClient): Map<number, unknown> => (c as unknown as { idleShells: Map<number, unknown> }).idleShells;
        const [z] = await until('an offered shell', () => { const m = offered(seed); return m.size === 1 ? [...m.keys()] : undefined; });
        const ran = join(dir, `hook-ran-${n}`);
        writeFileSync(ran, '');
        const p = plan('hooked', 'new', { createContainer: [{ path: '/bin/sh', args: ['sh', '-c', `cat > /dev/null; echo ran >> ${ran}`] }] });
        // the count going to 0 is read before the claim: the shell is discarded, the claim
        // refused; 400 ms: time for a shell that had the plan to run its hook
        const got = await spawnWhileSeedStopped(seed, p, () => seed.setShells(0), 400);
        closeOwn(got);
        expect(got.pid).not.toBe(z);
        await seed.startProcess(p.key);
        await until('its exit', () => exits.has(got.pid) || undefined);
        expect(exits.get(got.pid)).toBe(0);
        expect(readFileSync(ran, 'utf8')).toBe('ran\n');
      } finally {
        try { process.kill(seed.pid, 'SIGCONT'); } catch { /* gone */ }
        await seed.stop();
      }
    }, 60_000);

    it('a shell the seed discards while the claim waits in the link is not answered as the container: refused, killed, the plan forked', async () => {
      const { seed, exits } = await seedWithExits({ shells: 1, directShells: true });
      try {
        const offered = (c: SeedClient): Map<number, unknown> => (c as unknown as { idleShells: Map<number, unknown> }).idleShells;
        const [z] = await until('an offered shell', () => { const m = offered(seed); return m.size === 1 ? [...m.keys()] : undefined; });
        const p = plan('after-discard');
        // the seed busy (stopped): it reads the count going to 0 (discarding the shell) before
        // the claim, while the shell sets the plan up and reports ready
        const got = await spawnWhileSeedStopped(seed, p, () => seed.setShells(0), 400);
        closeOwn(got);
        expect(got.pid).not.toBe(z);
        expect(got.timings.forkMs).toBeGreaterThan(0);
        await until('the discarded shell gone', () => !alive(z as number) || undefined);
        await seed.startProcess(p.key);
        await until('its exit', () => exits.has(got.pid) || undefined);
        expect(exits.get(got.pid)).toBe(0);
        expect(readFileSync(p.out, 'utf8')).toMatch(/^after-discard pid=\d+\n$/);
      } finally {
        try { process.kill(seed.pid, 'SIGCONT'); } catch { /* gone */ }
        await seed.stop();
      }
    }, 60_000);
  }
});

// Through containerd: a Create whose shell goes away under it is forked by the seed, and spored
// joins that child to its cgroup too (it joined the shell's pid first): the child does not wait
// a second (AWAIT_JOIN_MS) for a join that was not coming, to make it itself (red team, helper-65).
describe.skipIf(!root || containerdSkipReason() !== undefined)('container shells through containerd', () => {
  let c: Containerd;
  beforeAll(async () => { c = await startContainerd({ extraEnv: { SPORE_CONTAINER_SHELLS: '1', SPORE_FRI: 'off', SPORE_GATEWAY: 'off' } }); }, 60_000);
  afterAll(async () => { await c?.stop(); }, 60_000);

  it('a shell killed under its Create: the plan forked, and that child joined by spored', async () => {
    const fifo = ['--fifo-dir', join(c.dir, 'fifo')];
    const run = (id: string, ...args: string[]): ReturnType<Containerd['ctr']> => c.ctr(['run', '--rm', '--runtime', 'io.containerd.spore.v2', ...fifo, '--rootfs', rootfs('busybox'), id, ...args], { timeoutMs: 60_000 });
    expect((await run('warm', '/bin/true')).code).toBe(0);
    const seed = Number(execFileSync('pgrep', ['-f', `seed-main.js --socket ${c.runDir}`], { encoding: 'utf8' }).trim().split('\n')[0]);
    const [shell] = await until('an idle shell', () => { const s = shellsOf(seed); return s.length === 1 ? s : undefined; });
    process.kill(shell as number, 'SIGSTOP');
    const ran = run('under', '/bin/echo', 'fb-ok');
    await sleep(300);
    process.kill(shell as number, 'SIGKILL');
    const r = await ran;
    expect({ code: r.code, out: r.stdout.trim() }).toEqual({ code: 0, out: 'fb-ok' });
    const created = readFileSync(c.sporeLog, 'utf8').split('\n').filter((l) => l.includes('"created"') && l.includes('"under"')).map((l) => JSON.parse(l) as { phases?: { seed?: Record<string, number> } })[0];
    expect(created?.phases?.seed?.forkMs).toBeGreaterThan(0);
    expect(created?.phases?.seed?.joinedSelf).toBeUndefined();
  }, 120_000);
});
