// kill -9 of spored inside the windows a helper found by hand (2026-12-01): a Create whose
// sandbox is set up but not yet recorded, and an exec whose sandbox is set up but not yet
// started. containerd sends the cut-short request again through the keeper; the client must
// get its answer, its output and its exit code, and nothing may be left behind. The window
// is held open with SPORE_TEST_HOLD_SPAWNED_MS (task/tasks.ts), so the kill lands in it.
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { containerdSkipReason, ctrInBackground, leakCheck, rootfs, startContainerd, type Containerd } from './harness.js';

const skip = containerdSkipReason();
if (skip) console.warn(`[crash-window.test] skipped: ${skip}`);

const HOLD_MS = 2000;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const sporedPid = (c: Containerd): number => Number(readFileSync(join(c.runDir, 'spored.pid'), 'utf8').trim().split(/\s+/)[0]);

/** spored's log lines naming `id` (the last 15), for a failure's message */
function sporedAbout(c: Containerd, id: string): string {
  if (!existsSync(c.sporeLog)) return '(no log)';
  return readFileSync(c.sporeLog, 'utf8').split('\n').filter((l) => l.includes(id)).slice(-15).join('\n');
}

/** kill -9 of `c`'s spored; resolves once the keeper has started the next one */
async function killSpored(c: Containerd): Promise<void> {
  // the spored of the previous test's kill may not have written its pid file yet (under load)
  let old = 0;
  for (let i = 0; i < 100 && !old; i++) {
    try { const pid = sporedPid(c); process.kill(pid, 0); old = pid; } catch { await sleep(100); }
  }
  process.kill(old, 'SIGKILL');
  for (let i = 0; i < 100; i++) {
    await sleep(100);
    try { if (sporedPid(c) !== old) return; } catch { /* being rewritten */ }
  }
  throw new Error('no new spored');
}

/**
 * A client that has not read since it started (`p`'s stdout paused): kill -9 of spored after
 * 2 s, reading again 300 ms after the next one is up, into `chunks`; its exit code.
 */
async function stalledAcrossKill(c: Containerd, p: ChildProcess, chunks: Buffer[]): Promise<number | null | 'timeout'> {
  const exited = new Promise<number | null>((resolve) => p.on('exit', (code) => resolve(code)));
  await sleep(2000);
  await killSpored(c);
  await sleep(300);
  p.stdout?.on('data', (d: Buffer) => chunks.push(d));
  p.stdout?.resume();
  return Promise.race([exited, sleep(60_000).then(() => 'timeout' as const)]);
}

describe.skipIf(skip !== undefined)('kill -9 of spored inside a Create or an exec Start', () => {
  let c: Containerd;
  let busybox: string;

  beforeAll(async () => {
    busybox = rootfs('busybox');
    c = await startContainerd({ extraEnv: { SPORE_TEST_HOLD_SPAWNED_MS: String(HOLD_MS) } });
  }, 60_000);

  afterAll(async () => {
    await c?.stop();
    if (c) {
      const left = leakCheck({ match: [c.dir], mountsUnder: [c.dir] });
      expect(left.processes.map((p) => `${p.pid} ${p.cmdline}`)).toEqual([]);
      expect(left.mounts).toEqual([]);
    }
  }, 60_000);

  /** a ctr command in the background: its exit code and output */
  const background = (args: string[]): ReturnType<typeof ctrInBackground> => ctrInBackground(c, args);

  /** spored's log says the sandbox of `key` is set up and held (task/tasks.ts holdForTest) */
  const held = (k: string): boolean => existsSync(c.sporeLog) && readFileSync(c.sporeLog, 'utf8').split('\n').some((l) => l.includes('test hold') && l.includes(`"key":"${k}"`));

  async function killSporedInWindow(k: string): Promise<void> {
    for (let i = 0; i < 300 && !held(k); i++) await sleep(50);
    expect(held(k), `${k} was never held`).toBe(true);
    await killSpored(c);
  }

  it('ctr run --rm: the replayed Create is answered; output and exit code arrive; no cgroup is left', async () => {
    const run = background(['run', '--rm', '--runtime', 'io.containerd.spore.v2', '--rootfs', busybox, 'cw1', '/bin/sh', '-c', 'echo hello-after-crash; exit 3']);
    await killSporedInWindow(`${c.namespace}/cw1`);
    const r = await run;
    expect({ code: r.code, stdout: r.stdout }, r.stderr).toEqual({ code: 3, stdout: 'hello-after-crash\n' });
    const cgroups = readdirSync('/sys/fs/cgroup/pids', { withFileTypes: true }).filter((d) => d.isDirectory() && d.name === c.namespace)
      .flatMap(() => (existsSync(`/sys/fs/cgroup/pids/${c.namespace}/cw1`) ? ['cw1'] : []));
    expect(cgroups).toEqual([]);
    // nor the namespace's, which the cut-short Create made: the next spored removed it before
    // the replay made it again, so the replay's Delete knew to remove it (helper-67 found it left)
    for (let i = 0; i < 50 && existsSync(`/sys/fs/cgroup/pids/${c.namespace}`); i++) await sleep(100);
    expect(existsSync(`/sys/fs/cgroup/pids/${c.namespace}`)).toBe(false);
  }, 90_000);

  it('a kill -9 during a createRuntime hook: the cut-short Create gets its poststop hooks once, the replayed one runs its hooks again for its own init', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'spore-cw-hooks-'));
    try {
      const log = join(dir, 'hooks.log');
      const hook = join(dir, 'hook.sh');
      writeFileSync(hook, `#!/bin/sh\necho "$1 $(sed -n 's/.*"pid":\\([0-9]*\\).*/\\1/p')" >> ${log}\n[ "$1" = createRuntime ] && sleep 1.5\nexit 0\n`, { mode: 0o755 });
      const spec = JSON.parse((await c.ctr(['oci', 'spec'])).stdout) as { root: unknown; process: { args: string[] }; linux: { cgroupsPath: string }; hooks: unknown };
      spec.root = { path: busybox };
      spec.process.args = ['/bin/echo', 'made'];
      spec.linux.cgroupsPath = `/${c.namespace}/cw3`;
      spec.hooks = { createRuntime: [{ path: hook, args: ['hook.sh', 'createRuntime'] }], poststop: [{ path: hook, args: ['hook.sh', 'poststop'] }] };
      writeFileSync(join(dir, 'spec.json'), JSON.stringify(spec));
      const run = background(['run', '--rm', '--runtime', 'io.containerd.spore.v2', '--config', join(dir, 'spec.json'), 'cw3']);
      const logged = (): string[] => (existsSync(log) ? readFileSync(log, 'utf8').trim().split('\n') : []);
      for (let i = 0; i < 400 && logged().length === 0; i++) await sleep(25);
      expect(logged()).toHaveLength(1);
      await killSpored(c);
      const r = await run;
      expect({ code: r.code, stdout: r.stdout }, r.stderr).toEqual({ code: 0, stdout: 'made\n' });
      const lines = logged().map((l) => l.split(' '));
      expect(lines.map((l) => l[0])).toEqual(['createRuntime', 'poststop', 'createRuntime', 'poststop']);
      expect(lines[0]?.[1], 'each createRuntime saw its own init').not.toBe(lines[2]?.[1]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 90_000);

  it('ctr task exec: the replayed Start starts the sandbox set up before the crash; output and exit code arrive', async () => {
    const r0 = await c.ctr(['run', '-d', '--runtime', 'io.containerd.spore.v2', '--rootfs', busybox, 'cw2', '/bin/sleep', '1000'], { timeoutMs: 30_000 });
    expect(r0.code, r0.stderr).toBe(0);
    const ex = background(['task', 'exec', '--exec-id', 'e1', 'cw2', '/bin/sh', '-c', 'echo exout; exit 5']);
    await killSporedInWindow(`${c.namespace}/cw2/e1`);
    const r = await ex;
    expect({ code: r.code, stdout: r.stdout }, r.stderr).toEqual({ code: 5, stdout: 'exout\n' });
    // no stray sandbox in the container: only its init
    const ps = await c.ctr(['task', 'ps', 'cw2']);
    expect(ps.stdout.split('\n').filter((l) => /^\s*\d+/.test(l))).toHaveLength(1);
    await c.ctr(['task', 'kill', '-s', 'KILL', 'cw2']);
  }, 90_000);

  it('keeper and spored killed together inside a Create: its cgroup and the parents it made go (the shim\'s delete, or the next spored), and spore comes back', async () => {
    const parent = `${c.namespace}-kp`;
    const run = background(['run', '--rm', '--runtime', 'io.containerd.spore.v2', '--cgroup', `/${parent}/cw4`, '--rootfs', busybox, 'cw4', '/bin/true']);
    const k = `${c.namespace}/cw4`;
    for (let i = 0; i < 300 && !held(k); i++) await sleep(50);
    expect(held(k), `${k} was never held`).toBe(true);
    expect(existsSync(`/sys/fs/cgroup/pids/${parent}/cw4`)).toBe(true);
    const keeper = Number(readFileSync(join(c.runDir, 'keeper.pid'), 'utf8').trim().split(/\s+/)[0]);
    process.kill(keeper, 'SIGKILL');
    process.kill(sporedPid(c), 'SIGKILL');
    const r = await run;
    expect(r.code, 'a Create cut short with its keeper fails, as with a dead shim').not.toBe(0);
    const creating = (): string[] => {
      try { return readdirSync(join(c.runDir, 'tasks', c.namespace)).filter((f) => f.includes('.creating')); } catch { return []; }
    };
    for (let i = 0; i < 200 && (existsSync(`/sys/fs/cgroup/pids/${parent}`) || creating().length > 0); i++) await sleep(100);
    expect(existsSync(`/sys/fs/cgroup/pids/${parent}`), sporedAbout(c, 'cw4')).toBe(false);
    expect(creating()).toEqual([]);
    const back = await c.ctr(['run', '--rm', '--runtime', 'io.containerd.spore.v2', '--rootfs', busybox, 'cw5', '/bin/echo', 'back'], { timeoutMs: 60_000 });
    expect(back.stdout, back.stderr).toBe('back\n');
  }, 90_000);
});

// A client that stops reading (or a process that does not read its stdin yet) while spored
// is killed: the bytes waiting between them were in spored's memory (a stream's chunk the
// destination could not take) and went with it, a 32-128 KiB hole in the stream (a crash
// tester, 2026-12-01). Relays now move bytes with splice(2): what cannot move stays in the
// kernel's pipes, which the keeper holds.
describe.skipIf(skip !== undefined)('kill -9 of spored while a stream waits for its reader', () => {
  let c: Containerd;
  let busybox: string;

  beforeAll(async () => {
    busybox = rootfs('busybox');
    c = await startContainerd();
  }, 60_000);

  afterAll(async () => {
    await c?.stop();
  }, 60_000);


  it('stdout: a client that stalls across the kill gets every byte, in order', async () => {
    const n = 300_000;
    const p = spawn('ctr', ['--address', c.address, '--namespace', c.namespace, 'run', '--rm', '--runtime', 'io.containerd.spore.v2', '--rootfs', busybox, 'stall1', '/bin/sh', '-c', `seq 1 ${n}`], { stdio: ['ignore', 'pipe', 'pipe'] });
    p.stdout.pause(); // nothing read: ctr's pipe, the FIFO and the container's pipe fill up
    const chunks: Buffer[] = [];
    let stderr = '';
    p.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    const code = await stalledAcrossKill(c, p, chunks);
    const out = Buffer.concat(chunks).toString();
    const want = Array.from({ length: n }, (_, i) => `${i + 1}\n`).join('');
    expect(code, stderr).toBe(0);
    expect(out.length).toBe(want.length);
    expect(out === want, 'the output is the sequence, whole and in order').toBe(true);
  }, 90_000);

  it('a terminal (run -t): a client that stalls across the kill gets every byte, in order', async () => {
    const n = 200_000;
    const cmd = `ctr --address ${c.address} --namespace ${c.namespace} run -t --rm --runtime io.containerd.spore.v2 --rootfs ${busybox} stall3 /bin/sh -c 'seq 1 ${n}'`;
    // ctr run -t wants a terminal of its own: script(1) gives it one
    const p = spawn('script', ['-q', '-e', '-c', cmd, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
    p.stdout.pause();
    const chunks: Buffer[] = [];
    const code = await stalledAcrossKill(c, p, chunks);
    p.stdin.end();
    // the terminal turns \n into \r\n (and ctr may echo a NUL first, as with runc)
    const lines = Buffer.concat(chunks).toString('latin1').split(/\r*\n/).map((l) => l.replace(/^[\0^@]+/, '')).filter((l) => l !== '');
    const missing: number[] = [];
    for (let i = 0, j = 0; i < n; i++) { if (lines[j] === String(i + 1)) j++; else { missing.push(i + 1); if (missing.length > 5) break; } }
    expect(code).toBe(0);
    expect({ count: lines.length, missing, last: lines.at(-1) }).toEqual({ count: n, missing: [], last: String(n) });
  }, 90_000);

  it('a terminal (run -t) whose process exited while its client was not reading: a kill in the flush, and the exit is still reported after the flush', async () => {
    // The init exits while a child of it has filled the pty, the FIFO and the client's
    // buffers (the client is not reading); spored then flushes the pty for up to a second
    // before it publishes the exit and answers Wait. A kill -9 in that second: the next
    // spored answered the replayed Wait at once (the Delete that followed threw away what
    // was still in the pty: 12-40 KB, a crash tester, 2026-12-01), and published no exit.
    const events = spawn('ctr', ['--address', c.address, '--namespace', c.namespace, 'events'], { stdio: ['ignore', 'pipe', 'ignore'] });
    let seen = '';
    events.stdout.on('data', (d: Buffer) => { seen += d.toString(); });
    try {
      await sleep(300);
      const cmd = `ctr --address ${c.address} --namespace ${c.namespace} run -t --rm --runtime io.containerd.spore.v2 --rootfs ${busybox} flush1 /bin/sh -c '(seq 1 1000000 &); sleep 1.5'`;
      const p = spawn('script', ['-q', '-e', '-c', cmd, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
      p.stdout.pause();
      const chunks: Buffer[] = [];
      const exited = new Promise<number | null>((resolve) => p.on('exit', (code) => resolve(code)));
      let status = '';
      for (let i = 0; i < 100 && status !== 'STOPPED'; i++) {
        await sleep(50);
        const ls = await c.ctr(['task', 'ls']);
        status = ls.stdout.split('\n').find((l) => l.startsWith('flush1 '))?.trim().split(/\s+/)[2] ?? '';
      }
      expect(status).toBe('STOPPED');
      expect(seen).not.toMatch(/\/tasks\/exit[^\n]*flush1/); // still flushing
      await killSpored(c);
      await sleep(200);
      p.stdout.on('data', (d: Buffer) => chunks.push(d));
      p.stdout.resume();
      const code = await Promise.race([exited, sleep(60_000).then(() => 'timeout' as const)]);
      p.stdin.end();
      expect(code).toBe(0);
      // a prefix of the writer's lines, nothing missing in between (the writer died with the init)
      const lines = Buffer.concat(chunks).toString('latin1').split(/\r*\n/).map((l) => l.replace(/^[\0^@]+/, '')).filter((l) => /^\d+$/.test(l));
      const gaps = lines.filter((l, i) => l !== String(i + 1)).slice(0, 3);
      expect({ gaps, some: lines.length > 1000 }).toEqual({ gaps: [], some: true });
      for (let i = 0; i < 50 && !/\/tasks\/exit[^\n]*flush1/.test(seen); i++) await sleep(100);
      expect(seen, 'the exit was never published').toMatch(/\/tasks\/exit[^\n]*flush1/);
    } finally {
      events.kill();
    }
  }, 90_000);

  it('stdin: input the process has not read yet at the kill reaches it whole', async () => {
    const input = Buffer.alloc(2 << 20);
    for (let i = 0; i < input.length; i++) input[i] = (i * 7 + (i >> 11)) & 0xff;
    const want = `${createHash('md5').update(input).digest('hex')}  -\n`;
    const p = spawn('ctr', ['--address', c.address, '--namespace', c.namespace, 'run', '--rm', '--runtime', 'io.containerd.spore.v2', '--rootfs', busybox, 'stall2', '/bin/sh', '-c', 'sleep 3; md5sum'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    p.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    p.stdin.on('error', () => undefined);
    const exited = new Promise<number | null>((resolve) => p.on('exit', (code) => resolve(code)));
    p.stdin.end(input);
    await sleep(1500);
    await killSpored(c);
    const code = await Promise.race([exited, sleep(60_000).then(() => 'timeout' as const)]);
    expect({ code, out }, stderr).toEqual({ code: 0, out: want });
  }, 90_000);
});

// kill -9 once the seed has started an exec but before its Start is answered (a crash tester,
// 2026-12-01: 13 of 70): the record had no pid yet, and the replayed Start set up and ran the
// exec a second time. It is recorded with its pid before it starts now.
describe.skipIf(skip !== undefined)('kill -9 of spored right after an exec started', () => {
  let c: Containerd;
  let dir: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'spore-crash-started-'));
    cpSync(rootfs('busybox'), join(dir, 'rootfs'), { recursive: true, verbatimSymlinks: true });
    c = await startContainerd({ extraEnv: { SPORE_TEST_HOLD_STARTED_MS: String(HOLD_MS) } });
  }, 60_000);

  afterAll(async () => {
    await c?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  it('the replayed Start is answered; the exec ran once, its output and exit code arrive', async () => {
    const r0 = await c.ctr(['run', '-d', '--runtime', 'io.containerd.spore.v2', '--rootfs', join(dir, 'rootfs'), 'cs1', '/bin/sleep', '1000'], { timeoutMs: 30_000 });
    expect(r0.code, r0.stderr).toBe(0);
    const p = spawn('ctr', ['--address', c.address, '--namespace', c.namespace, 'task', 'exec', '--exec-id', 'e1', 'cs1', '/bin/sh', '-c', 'echo ran >> /runs; sleep 1; echo exout; exit 4'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    p.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    const exited = new Promise<number | null>((resolve) => p.on('exit', (code) => resolve(code)));
    const k = `${c.namespace}/cs1/e1`;
    const held = (): boolean => existsSync(c.sporeLog) && readFileSync(c.sporeLog, 'utf8').split('\n').some((l) => l.includes('test hold: started') && l.includes(`"key":"${k}"`));
    for (let i = 0; i < 300 && !held(); i++) await sleep(50);
    // (failed once in a clean-clone CI, not since: say what ctr and spored said)
    expect(held(), `the exec was never held after its start; ctr: ${stderr || '(nothing)'}; spored about cs1: ${sporedAbout(c, 'cs1')}`).toBe(true);
    process.kill(sporedPid(c), 'SIGKILL');
    const code = await Promise.race([exited, sleep(60_000).then(() => 'timeout' as const)]);
    expect({ code, out }, stderr).toEqual({ code: 4, out: 'exout\n' });
    expect(readFileSync(join(dir, 'rootfs', 'runs'), 'utf8')).toBe('ran\n');
    await c.ctr(['task', 'kill', '-s', 'KILL', 'cs1']);
  }, 90_000);

  it('an exec that exits before its Start is answered: a kill then, and its exit event is still published', async () => {
    // Its exit event waits for the start event; the record said nothing of it, so a kill -9
    // in that wait left it published by no spored (containerd, and CRI after it, never
    // heard that the exec ended).
    const r0 = await c.ctr(['run', '-d', '--runtime', 'io.containerd.spore.v2', '--rootfs', join(dir, 'rootfs'), 'cs2', '/bin/sleep', '1000'], { timeoutMs: 30_000 });
    expect(r0.code, r0.stderr).toBe(0);
    const events = spawn('ctr', ['--address', c.address, '--namespace', c.namespace, 'events'], { stdio: ['ignore', 'pipe', 'ignore'] });
    let seen = '';
    events.stdout.on('data', (d: Buffer) => { seen += d.toString(); });
    try {
      await sleep(300);
      const p = spawn('ctr', ['--address', c.address, '--namespace', c.namespace, 'task', 'exec', '--exec-id', 'e2', 'cs2', '/bin/sh', '-c', 'exit 5'], { stdio: ['ignore', 'pipe', 'pipe'] });
      const exited = new Promise<number | null>((resolve) => p.on('exit', (code) => resolve(code)));
      const k = `${c.namespace}/cs2/e2`;
      const held = (): boolean => existsSync(c.sporeLog) && readFileSync(c.sporeLog, 'utf8').split('\n').some((l) => l.includes('test hold: started') && l.includes(`"key":"${k}"`));
      for (let i = 0; i < 300 && !held(); i++) await sleep(50);
      expect(held(), 'the exec was never held after its start').toBe(true);
      await sleep(500); // it has exited by now; its event waits for Start's answer
      expect(seen).not.toMatch(/\/tasks\/exit[^\n]*e2/);
      process.kill(sporedPid(c), 'SIGKILL');
      const code = await Promise.race([exited, sleep(60_000).then(() => 'timeout' as const)]);
      expect(code).toBe(5);
      for (let i = 0; i < 50 && !/\/tasks\/exit[^\n]*e2/.test(seen); i++) await sleep(100);
      expect(seen, 'the exec\'s exit was never published').toMatch(/\/tasks\/exit[^\n]*e2/);
    } finally {
      events.kill();
      await c.ctr(['task', 'kill', '-s', 'KILL', 'cs2']);
    }
  }, 90_000);
});

// A container that exits while the next spored restores (a SIGTERM handover, 2026-12-01 in
// CI): its exit came in on the seed's link while spored was still reading records, and the
// sweep for processes that ended unseen ran first and reported 255. The sweep now waits for
// one round trip to the seed. The restore is stalled here so that the exit falls in it.
describe.skipIf(skip !== undefined)('a container exits while spored restores', () => {
  let c: Containerd;

  beforeAll(async () => {
    c = await startContainerd({ extraEnv: { SPORE_TEST_STALL_RESTORE_MS: '1500' } });
  }, 60_000);

  afterAll(async () => {
    await c?.stop();
  }, 60_000);

  it('its exit code is reported, not 255', async () => {
    const r = await c.ctr(['run', '-d', '--runtime', 'io.containerd.spore.v2', '--rootfs', rootfs('busybox'), 'xr1', '/bin/sh', '-c', 'sleep 0.7; exit 6'], { timeoutMs: 30_000 });
    expect(r.code, r.stderr).toBe(0);
    const stalls = (): number => readFileSync(c.sporeLog, 'utf8').split('\n').filter((l) => l.includes('test stall: restore')).length;
    const before = stalls();
    process.kill(sporedPid(c), 'SIGTERM');
    for (let i = 0; i < 500 && stalls() === before; i++) await sleep(20);
    expect(stalls(), 'the next spored never stalled in its restore').toBe(before + 1);
    let status = '';
    for (let i = 0; i < 100 && status !== 'STOPPED'; i++) {
      await sleep(100);
      const ls = await c.ctr(['task', 'ls']);
      status = ls.stdout.split('\n').find((l) => l.startsWith('xr1 '))?.trim().split(/\s+/)[2] ?? '';
    }
    expect(status).toBe('STOPPED');
    expect(readFileSync(c.sporeLog, 'utf8')).not.toMatch(/status is lost; reporting 255/);
    const del = await c.ctr(['task', 'rm', 'xr1']);
    expect(del.stderr).toMatch(/exit code 6/);
    await c.ctr(['c', 'rm', 'xr1']);
  }, 90_000);
});

// A Create cut short twice: the first spored is killed inside it (its client's FIFO ends are
// with the keeper, its record not written), the next one inside its restore, before the
// replayed Create opens the FIFOs again. That restore used to take the FIFO ends from the
// keeper into its own memory for the wait, so its kill closed the client's last writer: ctr
// saw EOF, printed nothing and waited for the exit (a kill storm, 3 of ~1,000 runs).
describe.skipIf(skip !== undefined)('kill -9 of spored inside a Create, then inside the next one\'s restore', () => {
  let c: Containerd;

  beforeAll(async () => {
    c = await startContainerd({ extraEnv: { SPORE_TEST_HOLD_SPAWNED_MS: '1500', SPORE_TEST_STALL_RESTORE_MS: '1500' } });
  }, 60_000);

  afterAll(async () => {
    await c?.stop();
  }, 60_000);

  it('the replayed Create\'s output reaches the client', async () => {
    const warm = await c.ctr(['run', '--rm', '--runtime', 'io.containerd.spore.v2', '--rootfs', rootfs('busybox'), 'tw0', '/bin/true'], { timeoutMs: 30_000 });
    expect(warm.code, warm.stderr).toBe(0);
    const log = (): string[] => readFileSync(c.sporeLog, 'utf8').split('\n');
    const count = (needle: string, k?: string): number => log().filter((l) => l.includes(needle) && (k === undefined || l.includes(`"key":"${k}"`))).length;
    const k = `${c.namespace}/tw1`;
    const p = spawn('ctr', ['--address', c.address, '--namespace', c.namespace, 'run', '--rm', '--runtime', 'io.containerd.spore.v2', '--rootfs', rootfs('busybox'), 'tw1', '/bin/sh', '-c', 'echo out-tw1; exit 7'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    const exited = new Promise<number | null>((resolve) => p.on('exit', (code) => resolve(code)));
    for (let i = 0; i < 300 && count('test hold', k) === 0; i++) await sleep(20);
    expect(count('test hold', k), 'the Create was never held').toBe(1);
    const stalls = count('test stall: restore');
    process.kill(sporedPid(c), 'SIGKILL');
    for (let i = 0; i < 500 && count('test stall: restore') === stalls; i++) await sleep(10);
    expect(count('test stall: restore'), 'the next spored never stalled in its restore').toBe(stalls + 1);
    process.kill(sporedPid(c), 'SIGKILL');
    const code = await Promise.race([exited, sleep(60_000).then(() => 'timeout' as const)]);
    expect({ code, out }).toEqual({ code: 7, out: 'out-tw1\n' });
  }, 120_000);
});

// The keeper alone killed inside a Create (SPORE_TEST_HOLD_SPAWNED_MS=600, shorter than the 2 s
// spored, losing its keeper, gives the calls in flight): containerd runs the shim's delete for
// the dead shim while spored still finishes the Create (red team, helper-68).
describe.skipIf(skip !== undefined)('the keeper killed inside a Create, spored finishing it', () => {
  let c: Containerd;
  let busybox: string;
  beforeAll(async () => {
    busybox = rootfs('busybox');
    c = await startContainerd({ extraEnv: { SPORE_TEST_HOLD_SPAWNED_MS: '600' } });
  }, 60_000);
  afterAll(async () => {
    await c?.stop();
    if (c) expect(leakCheck({ match: [c.dir], mountsUnder: [c.dir] }).processes.map((p) => `${p.pid} ${p.cmdline}`)).toEqual([]);
  }, 60_000);
  const background = (args: string[]): ReturnType<typeof ctrInBackground> => ctrInBackground(c, args);
  const held = (k: string): boolean => existsSync(c.sporeLog) && readFileSync(c.sporeLog, 'utf8').split('\n').some((l) => l.includes('test hold') && l.includes(`"key":"${k}"`));

  it('the keeper alone killed inside a Create: the shim\'s delete undoes it while spored stops (a Create spored finishes then fails: claimCreating, test/shim-delete.test.ts); poststop once, nothing left, the id runs again (red team, helper-68)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'spore-cw-keeper-'));
    try {
      const log = join(dir, 'hooks.log');
      const hook = join(dir, 'hook.sh');
      writeFileSync(hook, `#!/bin/sh\necho "$1" >> ${log}\n`, { mode: 0o755 });
      const parent = `${c.namespace}-k1`;
      const spec = JSON.parse((await c.ctr(['oci', 'spec'])).stdout) as { root: unknown; process: { args: string[] }; linux: { cgroupsPath: string }; hooks: unknown };
      spec.root = { path: busybox };
      spec.process.args = ['/bin/echo', 'made'];
      spec.linux.cgroupsPath = `/${parent}/cw6`;
      spec.hooks = { poststop: [{ path: hook, args: ['hook.sh', 'poststop'] }] };
      writeFileSync(join(dir, 'spec.json'), JSON.stringify(spec));
      const runArgs = ['run', '--rm', '--runtime', 'io.containerd.spore.v2', '--config', join(dir, 'spec.json'), 'cw6'];
      // (a keeper and spored up: the first Create starts them)
      await c.ctr(['run', '--rm', '--runtime', 'io.containerd.spore.v2', '--rootfs', busybox, 'cw6w', '/bin/true'], { timeoutMs: 60_000 });
      const oldSpored = sporedPid(c);
      const run = background(runArgs);
      const k = `${c.namespace}/cw6`;
      for (let i = 0; i < 300 && !held(k); i++) await sleep(50);
      expect(held(k), `${k} was never held`).toBe(true);
      process.kill(Number(readFileSync(join(c.runDir, 'keeper.pid'), 'utf8').trim().split(/\s+/)[0]), 'SIGKILL');
      const r = await run;
      expect(r.code).not.toBe(0);
      for (let i = 0; i < 100 && existsSync(`/proc/${oldSpored}`); i++) await sleep(100);
      expect(existsSync(`/proc/${oldSpored}`), 'spored follows its keeper').toBe(false);
      const left = (): string[] => { try { return readdirSync(join(c.runDir, 'tasks', c.namespace)).filter((f) => f.startsWith('cw6.')); } catch { return []; } };
      for (let i = 0; i < 100 && (existsSync(`/sys/fs/cgroup/pids/${parent}`) || left().length > 0); i++) await sleep(100);
      expect({ parent: existsSync(`/sys/fs/cgroup/pids/${parent}`), files: left() }, sporedAbout(c, 'cw6')).toEqual({ parent: false, files: [] });
      const logged = (): string[] => (existsSync(log) ? readFileSync(log, 'utf8').trim().split('\n') : []);
      expect(logged()).toEqual(['poststop']);
      const again = await c.ctr(runArgs, { timeoutMs: 60_000 });
      expect({ code: again.code, stdout: again.stdout }, again.stderr).toEqual({ code: 0, stdout: 'made\n' });
      expect(logged()).toEqual(['poststop', 'poststop']);
      expect(existsSync(`/sys/fs/cgroup/pids/${parent}`)).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 90_000);
});
