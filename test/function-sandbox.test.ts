// The pure parts of function sandboxes, without root: the plan (functions/sandbox.ts), host
// pid matching (functions/host-pids.ts), id ranges, per-lineage /tmp slots and output logs.
import { closeSync, mkdtempSync, readdirSync, rmSync, writeFileSync, existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { functionSandbox, sandboxEnv, slotName, ID_RANGE, TMP_FD, SLOT_DIR, type SandboxInput } from '../functions/sandbox.js';
import { childHostPid, matchChild, nsPids, openChildOf } from '../functions/host-pids.js';
import { spawn } from 'node:child_process';
import { IdRanges, ID_BASE } from '../functions/id-ranges.js';
import { IDLE_RENEW_MS, SlotPool } from '../functions/slots.js';
import { FunctionLogs, MAX_LOG_LINE } from '../functions/logs.js';
import { splitHandler } from '../functions/runtime.js';

const base: SandboxInput = {
  name: 'tpl', version: 3, runtimeRoot: '/rt/node',
  runtimeEntries: [
    { name: 'usr', kind: 'dir' }, { name: 'lib', kind: 'dir' }, { name: 'lib64', kind: 'dir' }, { name: 'etc', kind: 'dir' },
    { name: 'proc', kind: 'dir' }, { name: 'tmp', kind: 'dir' }, { name: 'bin', kind: 'symlink', target: 'usr/bin' }, { name: '.spore-stamp', kind: 'file' },
    { name: 'fn', kind: 'dir' },
  ],
  runtimeHasSsl: true, packageDir: '/state/packages/abc', staging: '/run/spore/sandbox-root', hostId: ID_BASE + 7 * ID_RANGE,
  cgroupProcs: ['/sys/fs/cgroup/memory/spore/x/cgroup.procs'], memoryMiB: 256, tmpBytes: 1 << 20,
  seccomp: { filter: 'AAAA', flags: 0 },
};

describe('function sandbox plan', () => {
  const plan = functionSandbox(base);
  const binds = plan.steps.filter((s) => s.op === 'bind') as Extract<(typeof plan.steps)[number], { op: 'bind' }>[];

  it('takes only the runtime\'s own directories from its root, read-only, and never its /etc, /proc or /tmp', () => {
    const fromRuntime = binds.filter((b) => b.source.startsWith('/rt/node/')).map((b) => [b.source, b.path]);
    expect(fromRuntime).toEqual([['/rt/node/lib', '/lib'], ['/rt/node/lib64', '/lib64'], ['/rt/node/usr', '/usr'], ['/rt/node/etc/ssl', '/etc/ssl']]);
    for (const b of binds.filter((x) => x.source.startsWith('/rt/') || x.path === '/var/task')) expect(b.flags & 1).toBe(1); // MS_RDONLY
    expect(plan.steps).toContainEqual({ op: 'symlink', path: '/bin', target: 'usr/bin' });
    expect(plan.steps.some((s) => s.path === '/fn')).toBe(false);
  });

  it('mounts the package read-only at /var/task and procfs with runc\'s masks', () => {
    expect(binds.find((b) => b.path === '/var/task')).toMatchObject({ source: '/state/packages/abc', recursive: false });
    expect(plan.steps).toContainEqual(expect.objectContaining({ op: 'proc', path: '/proc' }));
    for (const p of ['/proc/kcore', '/proc/keys', '/proc/timer_list']) expect(plan.steps).toContainEqual({ op: 'mask', path: p });
    expect(plan.steps).toContainEqual({ op: 'readonly', path: '/proc/sys' });
  });

  it('gives /dev exactly five devices from the host, then makes /dev read-only', () => {
    const devs = binds.filter((b) => b.path.startsWith('/dev/')).map((b) => b.source);
    expect(devs).toEqual(['/dev/null', '/dev/zero', '/dev/full', '/dev/random', '/dev/urandom']);
    for (const b of binds.filter((x) => x.path.startsWith('/dev/'))) expect(b.flags & 4).toBe(0); // not MS_NODEV: they are devices
    const last = plan.steps.findIndex((s) => s.op === 'remount' && s.path === '/dev');
    expect(last).toBeGreaterThan(plan.steps.findIndex((s) => s.op === 'bind' && s.path === '/dev/urandom'));
  });

  it('makes the slot directory searchable but not listable, with only the seed\'s own /tmp in it, and /tmp a link through TMP_FD', () => {
    const tmpfs = plan.steps.filter((s) => s.op === 'tmpfs' && s.path.startsWith(SLOT_DIR)) as Extract<(typeof plan.steps)[number], { op: 'tmpfs' }>[];
    expect(tmpfs.map((s) => s.path)).toEqual([SLOT_DIR, `${SLOT_DIR}/init`]);
    expect(tmpfs[0]?.data).toMatch(/^mode=711,/);
    expect(tmpfs[1]?.data).toBe('mode=1777,size=1048576,nr_inodes=16384');
    expect(plan.steps).toContainEqual({ op: 'symlink', path: '/tmp', target: `/proc/self/fd/${TMP_FD}` });
    expect(plan.rlimits.find((r) => r.resource === 7)?.soft).toBeGreaterThan(TMP_FD); // RLIMIT_NOFILE leaves room for TMP_FD
  });

  it('maps the function\'s own id range and runs as uid 1000 inside', () => {
    expect(plan.idmap).toEqual({ hostId: ID_BASE + 7 * ID_RANGE, size: ID_RANGE });
    expect([plan.uid, plan.gid]).toEqual([1000, 1000]);
    expect(plan.steps.find((s) => s.op === 'file' && s.path === '/etc/passwd')).toMatchObject({ content: expect.stringContaining('sbx_user:x:1000:1000') });
    expect(plan.hostname).toBe('tpl');
  });

  it('keeps instances out of / and of every slot but their own (Landlock), and scopes them', () => {
    expect(plan.landlock.readOnly).toEqual(['/']);
    expect(plan.landlock.readWrite).toEqual([SLOT_DIR]);
    expect(plan.landlock.instanceReadOnly).not.toContain('/');
    expect(plan.landlock.instanceReadOnly.some((p) => p === SLOT_DIR || p.startsWith('/.spore'))).toBe(false);
    expect(plan.landlock.instanceReadOnly).toEqual(expect.arrayContaining(['/usr', '/etc', '/var', '/proc']));
    expect(plan.landlock.devices).toEqual(['/dev']);
  });

  it('builds the environment with Lambda\'s names, and never the function\'s own (it may hold secrets)', () => {
    expect(plan.env).toMatchObject({ AWS_LAMBDA_FUNCTION_NAME: 'tpl', AWS_LAMBDA_FUNCTION_VERSION: '3', AWS_LAMBDA_FUNCTION_MEMORY_SIZE: '256', LAMBDA_TASK_ROOT: '/var/task', TMPDIR: '/tmp', HOME: '/tmp' });
    expect(JSON.stringify(plan)).not.toMatch(/GREETING/);
    expect(sandboxEnv({ ...base, runtimeHasSsl: true }).SSL_CERT_FILE).toBe('/etc/ssl/certs/ca-certificates.crt');
    expect(plan.cwd).toBe('/var/task');
  });

  it('is plain data: the same input gives the same plan, and it survives JSON', () => {
    expect(functionSandbox(base)).toEqual(plan);
    expect(JSON.parse(JSON.stringify(plan))).toEqual(plan);
  });
});

describe('handler names', () => {
  it('splits Lambda\'s MODULE.FUNCTION and refuses paths out of the package', () => {
    expect(splitHandler('index.handler')).toEqual({ module: '/var/task/index', handler: 'handler' });
    expect(splitHandler('src/app.main')).toEqual({ module: '/var/task/src/app', handler: 'main' });
    expect(splitHandler('pkg/sub.mod.fn')).toEqual({ module: '/var/task/pkg/sub.mod', handler: 'fn' });
    for (const bad of ['handler', '.x', 'x.', '../up.h', '/abs.h', 'a//b.h']) expect(() => splitHandler(bad)).toThrow(/MODULE\.FUNCTION|relative path/);
  });
});

describe('slot names', () => {
  it('are 128 random bits in hex, and refuse less', () => {
    expect(slotName(Buffer.alloc(16, 0xab))).toBe('ab'.repeat(16));
    expect(() => slotName(Buffer.alloc(8))).toThrow(/16 random bytes/);
  });
});

describe('host pids', () => {
  it('finds the child whose pid in the parent\'s namespace is the reported one, newest first', () => {
    const kids: [number, number[]][] = [[500, [500, 2]], [501, [501, 3]], [502, [502, 2, 1]]];
    expect(matchChild(kids, 1, 3)).toBe(501);
    expect(matchChild(kids, 1, 2)).toBe(502);
    expect(matchChild(kids, 0, 500)).toBe(500);
    expect(matchChild(kids, 1, 9)).toBeNull();
    expect(matchChild([], 0, 1)).toBeNull();
  });

  it('finds a real child even when the children file leaves it out (a sibling exited during the walk)', async () => {
    const kids = [0, 1, 2].map(() => spawn('sleep', ['30'], { stdio: 'ignore' }));
    try {
      const pids = kids.map((k) => k.pid as number);
      const newest = pids[2] as number;
      expect(childHostPid(process.pid, newest)).toBe(newest);
      // the kernel's file as it reads when the walk skipped the newest child
      let reads = 0;
      const missing = (): string => { reads++; return `${pids[0]} ${pids[1]}\n`; };
      expect(childHostPid(process.pid, newest, missing)).toBe(newest);
      expect(reads).toBe(3);
      // not a child at all (a lie, or gone): null, after the search
      expect(childHostPid(process.pid, 1, missing)).toBeNull();
      // the fork's path: a pidfd to the child, held before its identity was checked
      const ns = nsPids(process.pid) as number[];
      const got = openChildOf(process.pid, newest, ns);
      expect(got?.host).toBe(newest);
      expect(readFileSync(`/proc/self/fdinfo/${got?.pidfd}`, 'utf8')).toMatch(new RegExp(`^Pid:\\s+${newest}$`, 'm'));
      closeSync(got?.pidfd as number);
      const viaSearch = openChildOf(process.pid, newest, ns, missing);
      expect(viaSearch?.host).toBe(newest);
      closeSync(viaSearch?.pidfd as number);
      // a listed pid that is not the reported one, or not a child (pid 1), is passed over
      expect(openChildOf(process.pid, newest, ns, () => `1 ${pids[0]}\n`)?.host ?? null).toBe(newest);
      expect(openChildOf(process.pid, 999_999, ns, () => `1 ${pids[0]} ${pids[1]}\n`)).toBeNull();
    } finally {
      for (const k of kids) k.kill('SIGKILL');
    }
  });
});

describe('id ranges', () => {
  let dir: string;
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('gives distinct ranges, the same one again to the same function, and reclaims a dead owner\'s', () => {
    dir = mkdtempSync(join(tmpdir(), 'spore-ids-'));
    const alive = new Set([process.pid]);
    const ids = new IdRanges(dir, (pid) => alive.has(pid));
    const a = ids.acquire('/s1', 'a');
    const b = ids.acquire('/s1', 'b');
    const c = ids.acquire('/s2', 'a');
    expect(new Set([a, b, c]).size).toBe(3);
    for (const x of [a, b, c]) expect((x - ID_BASE) % ID_RANGE).toBe(0);
    expect(ids.acquire('/s1', 'a')).toBe(a);
    ids.release(b);
    expect(ids.acquire('/s1', 'd')).toBe(b);
    // an owner that is gone: its range is free for others
    writeFileSync(join(dir, '40'), JSON.stringify({ stateDir: '/dead', name: 'x', pid: 999999999 }));
    const taken = readdirSync(dir).length;
    new IdRanges(dir, (pid) => alive.has(pid)).acquire('/s3', 'z');
    expect(existsSync(join(dir, '40'))).toBe(false);
    expect(readdirSync(dir).length).toBe(taken);
  });
});

describe('tmp slots', () => {
  const names = ['a', 'b', 'c', 'd'].map((c) => c.repeat(32));

  it('hands out at most `concurrency` slots, queues the rest in order, and never hands out a used slot before it is renewed', async () => {
    const renewed: string[][] = [];
    let finish: (() => void) | null = null;
    const pool = new SlotPool(names, 2, (batch) => { renewed.push(batch); return new Promise<void>((r) => { finish = r; }); });
    const [a, b] = [await pool.acquire(), await pool.acquire()];
    expect([a, b]).toEqual([names[0], names[1]]);
    expect(pool.inUse).toBe(2);
    const order: string[] = [];
    const w1 = pool.acquire().then((s) => { order.push(s); return s; });
    const w2 = pool.acquire().then((s) => { order.push(s); return s; });
    expect(pool.waiting).toBe(2);
    await expect(pool.acquire(2)).rejects.toThrow(/busy and 2 calls are waiting/);
    pool.release(a);
    // the next caller gets a fresh slot at once; the used one goes to renewal, not to anyone
    expect(await w1).toBe(names[2]);
    expect(renewed).toEqual([[a]]);
    expect(pool.pending.dirty).toBe(0);
    pool.release(b);
    expect(await w2).toBe(names[3]);
    // both fresh slots are taken now; the next caller waits for a renewal to finish
    const w3 = pool.acquire();
    pool.release(names[2] as string);
    (finish as unknown as () => void)();
    expect(await w3).toBe(a);
    expect(order).toEqual([names[2], names[3]]);
  });

  it('renews in batches (one call at a time: one renewal per `concurrency` calls), never hands out a used slot, and renews the rest when quiet', async () => {
    const many = Array.from({ length: 8 }, (_, i) => String(i).repeat(32));
    const renewed: string[][] = [];
    const used = new Set<string>(); // released and not renewed since
    const pool = new SlotPool(many, 4, (batch) => { renewed.push([...batch]); for (const x of batch) used.delete(x); return Promise.resolve(); });
    for (let i = 0; i < 12; i++) {
      const s = await pool.acquire();
      expect(used.has(s), `slot ${s} handed out again without a renewal`).toBe(false);
      used.add(s);
      pool.release(s);
      await new Promise((r) => setImmediate(r));
    }
    expect(pool.pending.batches).toBeLessThanOrEqual(3); // 12 calls, 4 at a time: not 12 forks
    expect(renewed.every((b) => b.length >= 4)).toBe(true);
    expect(pool.pending.dirty).toBeGreaterThan(0);
    await new Promise((r) => setTimeout(r, IDLE_RENEW_MS + 50));
    expect(pool.pending.dirty).toBe(0); // quiet: the rest renewed
  });

  it('takes slots whose renewal failed out of service', async () => {
    const pool = new SlotPool(names.slice(0, 2), 1, () => Promise.reject(new Error('L1 gone')));
    const s = await pool.acquire();
    pool.release(s);
    await new Promise((r) => setTimeout(r, IDLE_RENEW_MS + 50));
    expect(pool.pending.broken).toBe(1);
    expect(await pool.acquire()).toBe(names[1]);
  });
});

describe('function output', () => {
  let dir: string;
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('timestamps lines, cuts long ones, rotates past its size and tails from a line start', async () => {
    dir = mkdtempSync(join(tmpdir(), 'spore-logs-'));
    const logs = new FunctionLogs(dir, 4096);
    const w = logs.open('f', 'v1');
    const { writeSync, closeSync } = await import('node:fs');
    writeSync(w, 'one\ntwo\n');
    writeSync(w, `${'z'.repeat(MAX_LOG_LINE + 10)}\n`);
    for (let i = 0; i < 100; i++) writeSync(w, `line ${i}\n`);
    writeSync(w, 'partial');
    closeSync(w);
    for (let i = 0; i < 100 && !logs.tail('f').includes('partial'); i++) { await new Promise((r) => setTimeout(r, 20)); await logs.flush('f'); }
    const tail = logs.tail('f', 1 << 20);
    expect(tail).toMatch(/^\d{4}-\d\d-\d\dT[\d:.]+Z v1 /m);
    expect(tail).toContain('line 99');
    expect(tail).toContain('partial');
    expect(existsSync(join(dir, 'f.log.1')), 'rotated').toBe(true);
    expect(readFileSync(join(dir, 'f.log'), 'utf8').length).toBeLessThanOrEqual(4096 + MAX_LOG_LINE);
    const small = logs.tail('f', 100);
    expect(small.length).toBeLessThanOrEqual(100);
    expect(small.startsWith('20'), `tail starts at a line: ${JSON.stringify(small)}`).toBe(true);
    logs.remove('f');
    expect(logs.tail('f')).toBe('');
    logs.close();
  });
});
