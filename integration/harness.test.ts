// Proves the integration harness with the stock runc runtime (io.containerd.runc.v2).
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { containerdSkipReason, leakCheck, repoRoot, rootfs, startContainerd, type Containerd } from './harness.js';

const skip = containerdSkipReason();
if (skip) console.warn(`[harness.test] skipped: ${skip}`);

describe.skipIf(skip !== undefined)('integration harness (runc)', () => {
  const started: Containerd[] = [];
  afterAll(async () => {
    for (const c of started) await c.stop();
  });

  it('runs a busybox container with runc, passes its exit code, and stop() leaves nothing behind', async () => {
    const busybox = rootfs('busybox');
    const c = await startContainerd();
    started.push(c);
    expect(fs.existsSync(c.address)).toBe(true);
    expect((c.env.PATH ?? '').split(':')[0]).toBe(`${repoRoot}/bin`);
    expect(c.env.SPORE_RUN_DIR).toBe(c.runDir);

    const r = await c.ctr(['run', '--rm', '--fifo-dir', `${c.dir}/fifo`, '--rootfs', busybox, 'id1', '/bin/sh', '-c', 'echo hi; exit 3'], {
      timeoutMs: 30_000,
    });
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('hi');
    expect(r.code).toBe(3);

    // a task still running at stop() must be killed, too
    const bg = await c.ctr(['run', '-d', '--fifo-dir', `${c.dir}/fifo`, '--rootfs', busybox, 'sleeper', '/bin/sleep', '1000'], {
      timeoutMs: 30_000,
    });
    expect(bg.code, bg.stderr).toBe(0);
    const during = leakCheck({ match: [c.dir], cgroupName: c.namespace });
    expect(during.processes.some((p) => p.cmdline.includes('containerd-shim-runc-v2'))).toBe(true);
    expect(during.cgroups.length).toBeGreaterThan(0);
    // this container's own pid: other suites on the machine may run a `sleep 1000` of their own
    const ls = await c.ctr(['task', 'ls'], { timeoutMs: 30_000 });
    const sleeperPid = Number(/^sleeper\s+(\d+)/m.exec(ls.stdout)?.[1]);
    expect(sleeperPid, ls.stdout).toBeGreaterThan(0);

    await c.stop();
    const after = leakCheck({ match: [c.dir, c.address], envEntry: `SPORE_RUN_DIR=${c.runDir}`, mountsUnder: [c.dir], cgroupName: c.namespace });
    expect(after.processes).toEqual([]);
    expect(after.mounts).toEqual([]);
    expect(after.cgroups).toEqual([]);
    expect(fs.existsSync(c.dir)).toBe(false);
    expect(fs.existsSync(`/proc/${c.pid}`)).toBe(false);
    expect(fs.existsSync(`/proc/${sleeperPid}`)).toBe(false);
    await c.stop(); // idempotent
  }, 90_000);

  it('hides /sys/fs/cgroup/unified only when asked and needed', async () => {
    const c = await startContainerd({ hideUnified: true });
    started.push(c);
    const mi = fs.readFileSync(`/proc/${c.pid}/mountinfo`, 'utf8');
    expect(mi.includes(' /sys/fs/cgroup/unified ')).toBe(!c.hiddenUnified && fs.existsSync('/sys/fs/cgroup/unified/cgroup.controllers'));
    // host mounts unchanged
    if (c.hiddenUnified) expect(fs.readFileSync('/proc/self/mountinfo', 'utf8')).toContain(' /sys/fs/cgroup/unified ');
    const r = await c.ctr(['run', '--rm', '--fifo-dir', `${c.dir}/fifo`, '--runc-binary', '/usr/bin/crun', '--rootfs', rootfs('busybox'), 'c1', '/bin/true'], {
      timeoutMs: 30_000,
    });
    if (c.hiddenUnified || !fs.existsSync('/sys/fs/cgroup/unified')) expect(r.code, r.stderr).toBe(0);
    await c.stop();
    expect(fs.existsSync(c.dir)).toBe(false);
  }, 90_000);

  it('stop() kills a spored found by pidfile / SPORE_RUN_DIR and removes its shim socket', async () => {
    const c = await startContainerd();
    started.push(c);
    fs.mkdirSync('/run/containerd/s', { recursive: true });
    const sock = `/run/containerd/s/spore-harness-test-${process.pid}`;
    // stands in for spored: detached, inherits SPORE_RUN_DIR, listens under /run/containerd/s
    const fake = spawn(process.execPath, ['-e', `require("net").createServer().listen(${JSON.stringify(sock)}); setInterval(() => {}, 1e6)`], {
      env: c.env,
      detached: true,
      stdio: 'ignore',
    });
    fake.unref();
    for (let i = 0; i < 100 && !fs.existsSync(sock); i++) await new Promise((r) => setTimeout(r, 20));
    fs.writeFileSync(`${c.runDir}/spored.pid`, String(fake.pid));
    expect(leakCheck({ envEntry: `SPORE_RUN_DIR=${c.runDir}` }).processes.map((p) => p.pid)).toContain(fake.pid);
    await c.stop();
    expect(leakCheck({ envEntry: `SPORE_RUN_DIR=${c.runDir}` }).processes).toEqual([]);
    expect(fs.existsSync(sock)).toBe(false);
  }, 60_000);

  it.each(['SIGINT', 'SIGTERM'] as const)('a script given %s stops the containerd, spored and containers it started, then exits 130 / 143', async (sig) => {
    // as scripts/demo runs it: the compiled harness in a plain node process (not under vitest)
    const script = `import { startContainerd, rootfs } from ${JSON.stringify(`${repoRoot}/dist/integration/harness.js`)};
      const c = await startContainerd();
      const r = await c.ctr(['run', '-d', '--runtime', 'io.containerd.spore.v2', '--rootfs', rootfs('busybox'), 'sig1', '/bin/sleep', '1000'], { timeoutMs: 30000 });
      if (r.code !== 0) { console.error(r.stderr); process.exit(9); }
      console.log(JSON.stringify({ dir: c.dir, runDir: c.runDir, pid: c.pid }));
      setInterval(() => {}, 1e6);`;
    const env = { ...process.env };
    delete env.VITEST;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    for (let i = 0; i < 600 && !out.includes('\n') && child.exitCode === null; i++) await new Promise((r) => setTimeout(r, 50));
    expect(out, err).toContain('"dir"');
    const { dir, runDir, pid } = JSON.parse(out) as { dir: string; runDir: string; pid: number };
    const before = leakCheck({ match: [dir], envEntry: `SPORE_RUN_DIR=${runDir}` }).processes;
    expect(before.some((p) => p.cmdline.includes('dist/daemon/main.js')), JSON.stringify(before)).toBe(true);
    child.kill(sig);
    expect(await exited, err).toBe(sig === 'SIGINT' ? 130 : 143);
    expect(err).toContain(`${sig}: stopping containerd`);
    expect(leakCheck({ match: [dir], envEntry: `SPORE_RUN_DIR=${runDir}` }).processes).toEqual([]);
    expect(() => process.kill(pid, 0)).toThrow();
    expect(fs.existsSync(dir)).toBe(false);
  }, 90_000);

  it.each(['a closed stdout (| head)', 'an uncaught error'] as const)('a script that meets %s stops what it started too', async (how) => {
    // `scripts/demo | head` left containerd, the keeper, spored and its seeds running (EPIPE)
    const fail = how === 'an uncaught error' ? 'setTimeout(() => { throw new Error("boom"); }, 100);' : 'const spam = () => { process.stdout.write("x".repeat(65536) + "\\n"); setImmediate(spam); }; spam();';
    const script = `import { startContainerd } from ${JSON.stringify(`${repoRoot}/dist/integration/harness.js`)};
      const c = await startContainerd();
      console.error(JSON.stringify({ dir: c.dir, runDir: c.runDir, pid: c.pid }));
      ${fail}
      setInterval(() => {}, 1e6);`;
    const env = { ...process.env };
    delete env.VITEST;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    for (let i = 0; i < 600 && !err.includes('"dir"') && child.exitCode === null; i++) await new Promise((r) => setTimeout(r, 50));
    const line = err.split('\n').find((l) => l.includes('"dir"')) ?? '';
    expect(line, err).toContain('"dir"');
    const { dir, runDir, pid } = JSON.parse(line) as { dir: string; runDir: string; pid: number };
    if (how === 'a closed stdout (| head)') child.stdout.destroy(); else child.stdout.resume();
    expect(await exited, err).toBe(how === 'an uncaught error' ? 1 : 0);
    expect(leakCheck({ match: [dir], envEntry: `SPORE_RUN_DIR=${runDir}` }).processes).toEqual([]);
    expect(() => process.kill(pid, 0)).toThrow();
    expect(fs.existsSync(dir)).toBe(false);
  }, 90_000);
});
