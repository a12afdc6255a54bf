// The keeper and the launcher (bin/containerd-shim-spore-v2): one keeper and one spored per
// run dir (a second of either refuses, naming the holder); a pid file is trusted only with
// its process's start time; what a killed keeper costs (containerd deletes the tasks, as
// when a runc shim dies) and that spore comes back clean afterwards; the OOM killer prefers
// spored and what it starts over the keeper.
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { containerdSkipReason, isRoot, leakCheck, repoRoot, rootfs, startContainerd } from './harness.js';

const run = promisify(execFile);
const skip = isRoot() ? undefined : 'needs root';
const skipCtrd = containerdSkipReason();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const KEEPER = join(repoRoot, 'dist', 'keeper', 'main.js');
/** pids of root seeds (seed-main.js) serving `socket`; not their forks (container shells) */
function rootSeedPids(socket: string): number[] {
  const out: number[] = [];
  const ppid = (pid: number): number => { try { return Number(/^PPid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]); } catch { return 0; } };
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const cmd = readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0');
      if (cmd.some((a) => a.endsWith('seed-main.js')) && cmd.includes(socket)) out.push(Number(d));
    } catch { /* gone */ }
  }
  return out.filter((pid) => !out.includes(ppid(pid)));
}
const DAEMON = join(repoRoot, 'dist', 'daemon', 'main.js');
const LAUNCHER = join(repoRoot, 'bin', 'containerd-shim-spore-v2');

function pidOf(runDir: string, f: string): number {
  try { return parseInt(readFileSync(join(runDir, f), 'utf8'), 10); } catch { return 0; }
}
async function until(f: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const t = Date.now() + ms;
  while (!(await f())) { if (Date.now() > t) throw new Error('timed out'); await sleep(30); }
}
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => { const p = (s.address() as net.AddressInfo).port; s.close(() => resolve(p)); });
  });
}
function connectTo(opts: net.NetConnectOpts): Promise<string> {
  return new Promise((resolve) => {
    const c = net.connect(opts);
    const t = setTimeout(() => { c.destroy(); resolve('timeout'); }, 2000);
    c.once('connect', () => { clearTimeout(t); c.destroy(); resolve('connected'); });
    c.once('error', (err: NodeJS.ErrnoException) => { clearTimeout(t); resolve(err.code ?? err.message); });
  });
}
const tcpConnect = (port: number): Promise<string> => connectTo({ host: '127.0.0.1', port });
const unixConnect = (path: string): Promise<string> => connectTo({ path });
function oomAdj(pid: number): number {
  return Number(readFileSync(`/proc/${pid}/oom_score_adj`, 'utf8'));
}

describe.skipIf(skip !== undefined)('keeper and launcher', () => {
  const dir = mkdtempSync(join(tmpdir(), 'spore-keeper-'));
  const runDir = join(dir, 'run');
  const env = { ...process.env, SPORE_RUN_DIR: runDir, SPORE_GATEWAY: 'off', SPORE_FRI: 'off', SPORE_LOG: join(dir, 'spored.log'), TTRPC_ADDRESS: join(dir, 'no-containerd.sock') };
  const started: number[] = [];

  afterAll(async () => {
    for (const p of started) { try { process.kill(p, 'SIGTERM'); } catch { /* gone */ } }
    await until(() => started.every((p) => !existsSync(`/proc/${p}`)), 20_000).catch(() => undefined);
    const left = leakCheck({ match: [dir] });
    try {
      expect(left.processes.map((p) => `${p.pid} ${p.cmdline}`)).toEqual([]);
    } finally {
      // a failed test (or leak) must not leave its run dirs behind
      for (const p of left.processes) { try { process.kill(p.pid, 'SIGKILL'); } catch { /* gone */ } }
      rmSync(dir, { recursive: true, force: true });
    }
  }, 30_000);

  it('one keeper per run dir; one spored per run dir; the OOM killer prefers spored', async () => {
    const k = spawn(process.execPath, [KEEPER, '--run-dir', runDir], { env, stdio: 'ignore' });
    started.push(k.pid ?? 0);
    await until(() => pidOf(runDir, 'keeper.pid') === k.pid && pidOf(runDir, 'spored.pid') > 0);
    // the keeper's own lines go to spored's log file (SPORE_LOG / --log), not to stderr
    await until(() => { try { return readFileSync(join(dir, 'spored.log'), 'utf8').includes('"c":"keeper","msg":"keeper ready"'); } catch { return false; } });
    // a second keeper: refused at once, naming the first
    const second = await run(process.execPath, [KEEPER, '--run-dir', runDir], { env, timeout: 10_000 }).then(() => ({ code: 0, stderr: '' }), (e: { code: number; stderr: string }) => e);
    expect(second.code).toBe(1);
    expect(second.stderr).toContain(`another spore keeper serves ${runDir} (pid ${k.pid})`);
    // a spored of its own for the same run dir: refused too
    const sp = await run(process.execPath, [DAEMON, '--run-dir', runDir], { env, timeout: 10_000 }).then(() => ({ code: 0, stderr: '' }), (e: { code: number; stderr: string }) => e);
    expect(sp.code).not.toBe(0);
    expect(sp.stderr).toContain(`another spored serves ${runDir}`);
    // spored (and so everything it starts) is the OOM killer's choice before the keeper
    const spored = pidOf(runDir, 'spored.pid');
    expect(oomAdj(spored)).toBeGreaterThan(oomAdj(k.pid ?? 0));
    // stop: the keeper stops spored fully and removes its pid file
    k.kill('SIGTERM');
    await until(() => !existsSync(`/proc/${spored}`) && !existsSync(join(runDir, 'keeper.pid')), 20_000);
  }, 60_000);

  it('a root seed whose keeper and spored both die exits once no spored came back and it holds no container', async () => {
    const rd = join(dir, 'orphan');
    const e = { ...env, SPORE_RUN_DIR: rd, SPORE_SEED_ORPHAN_GRACE_MS: '1500' };
    const k = spawn(process.execPath, [KEEPER, '--run-dir', rd], { env: e, stdio: 'ignore' });
    started.push(k.pid ?? 0);
    const socket = join(rd, 'process-seed.sock');
    await until(() => pidOf(rd, 'spored.pid') > 0 && rootSeedPids(socket).length === 1, 20_000);
    const [seed] = rootSeedPids(socket);
    const spored = pidOf(rd, 'spored.pid');
    process.kill(k.pid ?? 0, 'SIGKILL');
    process.kill(spored, 'SIGKILL');
    await sleep(500);
    expect(existsSync(`/proc/${seed}`), 'the seed waits for a new spored at first').toBe(true);
    // within two periods of the grace it sees that nobody came back and nothing is left to keep
    await until(() => !existsSync(`/proc/${seed}`), 8_000);
    expect(leakCheck({ match: [rd] }).processes.map((p) => `${p.pid} ${p.cmdline}`)).toEqual([]);
  }, 40_000);

  it('holds the gateway and FRI sockets across a spored restart, and lets them go when no spored comes up', async () => {
    const rd = join(dir, 'held');
    const port = await freePort();
    const e: Record<string, string | undefined> = { ...env, SPORE_RUN_DIR: rd, SPORE_GATEWAY: `127.0.0.1:${port}`, SPORE_KEEPER_MAX_DOWN_MS: '1500' };
    delete e.SPORE_FRI; // FRI on
    const k = spawn(process.execPath, [KEEPER, '--run-dir', rd], { env: e, stdio: 'ignore' });
    started.push(k.pid ?? 0);
    await until(async () => (await tcpConnect(port)) === 'connected' && existsSync(join(rd, 'fri.sock')), 30_000);
    const spored = pidOf(rd, 'spored.pid');
    // the next spored cannot come up: its ttrpc socket path is taken by a directory
    rmSync(join(rd, 'spored-ttrpc.sock'), { force: true });
    mkdirSync(join(rd, 'spored-ttrpc.sock', 'x'), { recursive: true });
    process.kill(spored, 'SIGKILL');
    await until(() => !existsSync(`/proc/${spored}`));
    // held: a connection made now is accepted (it waits in the backlog), not refused
    expect(await tcpConnect(port)).toBe('connected');
    // let go once no spored came up within SPORE_KEEPER_MAX_DOWN_MS: refused, as with no spored
    await until(async () => (await tcpConnect(port)) === 'ECONNREFUSED', 10_000);
    await until(async () => (await unixConnect(join(rd, 'fri.sock'))) !== 'connected', 5_000);
    // a spored that can come up again binds both anew
    rmSync(join(rd, 'spored-ttrpc.sock'), { recursive: true, force: true });
    await until(async () => (await tcpConnect(port)) === 'connected' && (await unixConnect(join(rd, 'fri.sock'))) === 'connected', 30_000);
    k.kill('SIGTERM');
    await until(() => !existsSync(join(rd, 'keeper.pid')), 20_000);
    expect(await tcpConnect(port)).toBe('ECONNREFUSED');
  }, 90_000);

  it('the launcher trusts keeper.pid only with its start time: a reused pid starts a real keeper', async () => {
    mkdirSync(runDir, { recursive: true });
    // a stale socket and a pid file naming a live process that is not the keeper (wrong start time)
    const imposter = spawn('sleep', ['60'], { stdio: 'ignore' });
    started.push(imposter.pid ?? 0);
    writeFileSync(join(runDir, 'keeper.pid'), `${imposter.pid} 1\n`);
    const stale = net.createServer();
    await new Promise<void>((r) => stale.listen(join(runDir, 'ttrpc.sock'), () => r()));
    await new Promise((r) => stale.close(() => r(null)));
    const bundle = join(dir, 'bundle');
    mkdirSync(bundle, { recursive: true });
    const t0 = Date.now();
    const r = await run(LAUNCHER, ['-namespace', 'default', '-id', 'x', 'start'], { env, cwd: bundle, timeout: 20_000 });
    expect(r.stdout).toBe(`unix://${join(runDir, 'ttrpc.sock')}\n`);
    expect(r.stderr).toBe(''); // containerd 1.6 reads start's combined output as the address
    expect(readFileSync(join(bundle, 'address'), 'utf8')).toBe(`unix://${join(runDir, 'ttrpc.sock')}`);
    const keeper = pidOf(runDir, 'keeper.pid');
    started.push(keeper);
    expect(keeper).not.toBe(imposter.pid);
    expect(existsSync(`/proc/${keeper}`)).toBe(true);
    console.log(`[keeper] launcher started a keeper in ${Date.now() - t0} ms`);
    // the common path: the launcher answers again without starting anything (pure sh)
    const again = await run(LAUNCHER, ['-namespace', 'default', '-id', 'y', 'start'], { env, cwd: bundle, timeout: 5000 });
    expect(again.stdout).toBe(r.stdout);
    expect(pidOf(runDir, 'keeper.pid')).toBe(keeper);
    process.kill(keeper, 'SIGTERM');
    await until(() => !existsSync(`/proc/${keeper}`), 20_000);
  }, 60_000);
});

describe.skipIf(skipCtrd !== undefined)('the first containers of a node', () => {
  it('started at once while spore is not up yet: every one runs (the keeper does not keep the start lock)', async () => {
    // The first shim start launches the keeper under a lock the others wait on; the keeper
    // inherited the lock's fd and so held it for its life, and every start queued behind the
    // first hung (3 of 4 here: a node booting its pods).
    const c = await startContainerd({ extraEnv: { SPORE_GATEWAY: 'off', SPORE_FRI: 'off' } });
    try {
      const rt = ['--runtime', 'io.containerd.spore.v2'];
      const runs = await Promise.all([0, 1, 2, 3].map((i) => c.ctr(['run', '--rm', ...rt, '--rootfs', rootfs('busybox'), `first${i}`, '/bin/sh', '-c', `echo hi ${i}; exit 7`], { timeoutMs: 30_000 })));
      expect(runs.map((r) => [r.code, r.stdout])).toEqual([0, 1, 2, 3].map((i) => [7, `hi ${i}\n`]));
    } finally {
      await c.stop();
    }
  }, 120_000);
});

describe.skipIf(skipCtrd !== undefined)('a killed root seed', () => {
  it('restarts spored with a new seed: running containers stay, new ones start', async () => {
    const c = await startContainerd({ extraEnv: { SPORE_GATEWAY: 'off', SPORE_FRI: 'off' } });
    try {
      const rt = ['--runtime', 'io.containerd.spore.v2'];
      const r1 = await c.ctr(['run', '-d', ...rt, '--rootfs', rootfs('busybox'), 's1', '/bin/sleep', '1000']);
      expect(r1.code, r1.stderr).toBe(0);
      const spored = pidOf(c.runDir, 'spored.pid');
      const seedSock = join(c.runDir, 'process-seed.sock');
      const seeds = (): number[] => rootSeedPids(seedSock);
      const [seed] = seeds();
      expect(seed).toBeGreaterThan(0);
      process.kill(seed as number, 'SIGKILL');
      await until(() => existsSync(join(c.runDir, 'spored.pid')) && pidOf(c.runDir, 'spored.pid') !== spored, 15_000);
      const r2 = await c.ctr(['run', '--rm', ...rt, '--rootfs', rootfs('busybox'), 's2', '/bin/echo', 'new seed'], { timeoutMs: 30_000 });
      expect(r2.stdout).toBe('new seed\n');
      expect((await c.ctr(['task', 'ls'])).stdout).toMatch(/^s1\s+\d+\s+RUNNING/m);
      expect(seeds().filter((p) => p !== seed)).toHaveLength(1);
      const k = await c.ctr(['task', 'kill', '-s', 'KILL', 's1']);
      expect(k.code, k.stderr).toBe(0);
      await until(async () => !(await c.ctr(['task', 'ls'])).stdout.includes('RUNNING'), 20_000);
    } finally {
      await c.stop();
    }
  }, 120_000);
});

describe.skipIf(skipCtrd !== undefined)('a killed keeper', () => {
  it('costs the running containers (containerd deletes them, as when a shim dies), leaks nothing, and spore comes back', async () => {
    const c = await startContainerd({ extraEnv: { SPORE_GATEWAY: 'off', SPORE_FRI: 'off' } });
    try {
      const rt = ['--runtime', 'io.containerd.spore.v2'];
      for (const id of ['k1', 'k2']) {
        const r = await c.ctr(['run', '-d', ...rt, '--rootfs', rootfs('busybox'), id, '/bin/sleep', '1000']);
        expect(r.code, r.stderr).toBe(0);
      }
      const pids = (await c.ctr(['task', 'ls'])).stdout.split('\n').slice(1).map((l) => Number(l.trim().split(/\s+/)[1])).filter((n) => n > 0);
      expect(pids).toHaveLength(2);
      const keeper = pidOf(c.runDir, 'keeper.pid');
      const spored = pidOf(c.runDir, 'spored.pid');
      process.kill(keeper, 'SIGKILL');
      // spored follows its keeper; containerd cleans up after the "dead shim": the containers go
      await until(() => !existsSync(`/proc/${spored}`), 15_000);
      await until(() => pids.every((p) => !existsSync(`/proc/${p}`)), 20_000);
      await until(async () => !(await c.ctr(['task', 'ls'])).stdout.includes('RUNNING'), 20_000);
      // spore comes back on the next container: a new keeper, a new spored
      const r = await c.ctr(['run', '--rm', ...rt, '--rootfs', rootfs('busybox'), 'k3', '/bin/echo', 'back']);
      expect(r.stdout).toBe('back\n');
      expect(pidOf(c.runDir, 'keeper.pid')).not.toBe(keeper);
    } finally {
      await c.stop();
    }
    const left = leakCheck({ match: [c.dir], mountsUnder: [c.dir] });
    expect(left.processes.map((p) => `${p.pid} ${p.cmdline}`)).toEqual([]);
  }, 120_000);
});
