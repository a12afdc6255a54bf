// OCI hooks: config.json's hooks checked (protocols/oci/hooks.ts), the state a hook reads,
// and spored's runner for the runtime-namespace kinds (task/hooks.ts) with real programs.
// Where each kind runs is the child's and spored's business: test/container-init.test.ts and
// integration/conformance/hooks.test.ts (runc as the oracle).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { hasHooks, hookTimeoutMs, ociStateBase, parseHooks, stateBytes, type Hook } from '../protocols/oci/hooks.js';
import { HookFailed, runHooks, runHooksAll } from '../task/hooks.js';
import { statusOf } from '../sys/errors.js';

const dir = mkdtempSync(join(tmpdir(), 'spore-hooks-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const sh = (script: string, extra: Partial<Hook> = {}): Hook => ({ path: '/bin/sh', args: ['sh', '-c', script, 'hook0'], env: null, timeout: null, ...extra });
const STATE = { ociVersion: '1.0.2', id: 'c1', status: 'creating' as const, pid: 4242, bundle: dir };

describe('parseHooks', () => {
  it('keeps each kind with hooks, defaults args to [] and env and timeout to null, drops empty lists', () => {
    const h = parseHooks({ prestart: [{ path: '/a' }], poststop: [], createRuntime: [{ path: '/b', args: ['b', '-x'], env: ['A=1'], timeout: 3 }], poststart: null });
    expect(h).toEqual({ prestart: [{ path: '/a', args: [], env: null, timeout: null }], createRuntime: [{ path: '/b', args: ['b', '-x'], env: ['A=1'], timeout: 3 }] });
    expect(hasHooks(h, 'poststop')).toBe(false);
    expect(hasHooks(h, 'poststop', 'createRuntime')).toBe(true);
    expect(parseHooks(undefined)).toEqual({});
  });

  it('refuses what a runtime cannot run, naming the field', () => {
    expect(() => parseHooks({ prestop: [] })).toThrow(/^hooks.prestop: unknown hook kind/);
    expect(() => parseHooks({ prestart: [{ path: '/a\0b' }] })).toThrow(/hooks.prestart\[0\].path must not contain NUL/);
    expect(() => parseHooks({ prestart: [{ path: '/a', env: ['A=\0'] }] })).toThrow(/hooks.prestart\[0\].env must be an array of strings/);
    expect(() => parseHooks({ prestart: [{ path: '/a', timeout: -1 }] })).toThrow(/timeout must be a positive integer/);
    expect(() => parseHooks('x')).toThrow(/^hooks must be an object/);
    try { parseHooks({ prestart: [{}] }); } catch (e) { expect(statusOf(e).code).toBe(3); } // InvalidArgument
  });
});

describe('the state on a hook\'s stdin (runtime-spec runtime.md "State")', () => {
  it('is compact JSON in runc\'s key order; pid and annotations only when there are some', () => {
    const base = ociStateBase('c1', '/b', { z: 'last', a: 'first', n: 3 });
    expect(stateBytes({ ...base, pid: 7, status: 'running' }).toString()).toBe('{"ociVersion":"1.0.2","id":"c1","status":"running","pid":7,"bundle":"/b","annotations":{"z":"last","a":"first"}}');
    expect(stateBytes({ ...ociStateBase('c1', '/b', undefined), status: 'stopped' }).toString()).toBe('{"ociVersion":"1.0.2","id":"c1","status":"stopped","bundle":"/b"}');
    expect(ociStateBase('c1', '/b', ['not', 'an', 'object'])).toEqual({ ociVersion: '1.0.2', id: 'c1', bundle: '/b' });
  });
});

describe('runHooks (spored\'s: prestart, createRuntime, poststart, poststop)', () => {
  it('runs each in order with the state on stdin, its argv, its env (or spored\'s), the bundle as cwd', async () => {
    const out = join(dir, 'seen');
    const hooks = [
      sh(`{ cat; echo; echo "$0 $*"; pwd; echo "A=$A HOME=\${HOME:-none}"; } > ${out}.1`, { args: ['sh', '-c', `{ cat; echo; echo "$0 $*"; pwd; echo "A=$A HOME=\${HOME:-none}"; } > ${out}.1`, 'first', 'x', 'y'], env: ['A=from-hook'] }),
      sh(`echo "HOME=\${HOME:-none}" > ${out}.2`),
    ];
    await runHooks('createRuntime', hooks, STATE, dir);
    expect(readFileSync(`${out}.1`, 'utf8')).toBe(`${stateBytes(STATE).toString()}\nfirst x y\n${dir}\nA=from-hook HOME=none\n`);
    // no env of its own: spored's (runc: the runtime's own environment)
    expect(readFileSync(`${out}.2`, 'utf8')).toBe(`HOME=${process.env.HOME ?? 'none'}\n`);
  });

  it('the first failure ends the kind: HookFailed (gRPC Unknown) naming the hook, how it ended and its output; the rest do not run', async () => {
    const marker = join(dir, 'second-ran');
    const err = await runHooks('prestart', [sh('echo out; echo err >&2; exit 3'), sh(`touch ${marker}`)], STATE, dir).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HookFailed);
    expect((err as Error).message).toBe('prestart hook #0 (/bin/sh): exit status 3; output: out\nerr');
    expect(statusOf(err).code).toBe(2);
    expect(() => readFileSync(marker)).toThrow();
  });

  it('a hook killed by a signal, one that cannot start, one past its timeout (even with a child holding its output)', async () => {
    await expect(runHooks('poststart', [sh('kill -9 $$')], STATE, dir)).rejects.toThrow('poststart hook #0 (/bin/sh): killed by signal 9');
    await expect(runHooks('poststart', [{ path: join(dir, 'nonexistent'), args: [], env: null, timeout: null }], STATE, dir)).rejects.toThrow(/poststart hook #0 \(.*nonexistent\): cannot be started: .*ENOENT/);
    const t0 = Date.now();
    const left = join(dir, 'left.pid');
    await expect(runHooks('createRuntime', [sh(`sleep 30 & echo $! > ${left}; echo started; wait`, { timeout: 1 })], STATE, dir)).rejects.toThrow('createRuntime hook #0 (/bin/sh): ran past its timeout of 1 s and was killed; output: started');
    expect(Date.now() - t0).toBeLessThan(5000);
    process.kill(Number(readFileSync(left, 'utf8')), 'SIGKILL'); // (runc leaves a hook's children too)
  });

  it('a timeout too long for a timer is no limit, not an immediate kill (Node fires such a timer at once)', async () => {
    expect(hookTimeoutMs(sh('x', { timeout: 3 }))).toBe(3000);
    expect(hookTimeoutMs(sh('x', { timeout: 2_147_484 }))).toBeNull();
    expect(hookTimeoutMs(sh('x'))).toBeNull();
    await runHooks('prestart', [sh('sleep 0.2', { timeout: 1e12 })], STATE, dir);
  });

  it('a hook that does not read its stdin, and a large state (256 KiB of annotations), both work', async () => {
    await runHooks('createRuntime', [sh('exit 0')], { ...STATE, annotations: { big: 'x'.repeat(256 * 1024) } }, dir);
    const out = join(dir, 'big');
    await runHooks('createRuntime', [sh(`wc -c > ${out}`)], { ...STATE, annotations: { big: 'x'.repeat(256 * 1024) } }, dir);
    expect(Number(readFileSync(out, 'utf8').trim())).toBeGreaterThan(256 * 1024);
  });

  it('a file that is neither ELF nor #! fails as execve fails it (runc: exec format error), not run by /bin/sh; a bundle gone by then is no failure', async () => {
    const script = join(dir, 'no-shebang');
    writeFileSync(script, `touch ${join(dir, 'no-shebang-ran')}\n`, { mode: 0o755 });
    await expect(runHooks('prestart', [{ path: script, args: [], env: null, timeout: null }], STATE, dir)).rejects.toThrow(/prestart hook #0 \(.*no-shebang\): cannot be started: exec format error/);
    expect(() => readFileSync(join(dir, 'no-shebang-ran'))).toThrow();
    const out = join(dir, 'cwd-fallback');
    await runHooks('poststop', [sh(`pwd > ${out}`)], { ...STATE, status: 'stopped', pid: undefined }, join(dir, 'removed-bundle'));
    expect(readFileSync(out, 'utf8')).toBe('/\n');
  });

  it('runHooksAll (poststop) runs every hook and returns each failure', async () => {
    const marker = join(dir, 'all-second');
    writeFileSync(marker, '');
    rmSync(marker);
    const failures = await runHooksAll('poststop', [sh('exit 1'), sh(`touch ${marker}`), sh('exit 2')], { ...STATE, status: 'stopped', pid: undefined }, dir);
    expect(failures).toEqual(['poststop hook #0 (/bin/sh): exit status 1', 'poststop hook #2 (/bin/sh): exit status 2']);
    expect(readFileSync(marker, 'utf8')).toBe('');
  });
});

/**
 * A root seed that speaks the protocol with `features` in its hello (absent: none, a seed
 * older than hooks) and answers every spawn with pid 4242; `spawned` lists the keys it got.
 */
async function oldSeed(name: string, features: string[] | undefined): Promise<{ socket: string; spawned: string[]; close: () => void }> {
  const { SeedChannel } = await import('../engines/process/seed-channel.js');
  const { SEED_PROTOCOL } = await import('../engines/process/protocol.js');
  const net = await import('node:net');
  const socket = join(dir, `${name}.sock`);
  const spawned: string[] = [];
  const server = net.createServer((sock) => {
    const ch = new SeedChannel<{ op: string; seq: number; key?: string }, unknown>(sock, (req) => {
      if (req.op === 'spawn') { spawned.push(req.key ?? ''); ch.send({ type: 'reply', seq: req.seq, ok: true, pid: 4242 }); }
    }, () => undefined);
    ch.send({ type: 'hello', protocol: SEED_PROTOCOL, pid: 1, survive: true, pending: [], exits: [], ...(features ? { features } : {}) });
  });
  await new Promise<void>((r) => server.listen(socket, r));
  return { socket, spawned, close: () => server.close() };
}

describe('a root seed that predates a feature (it outlived a spored upgrade)', () => {
  const hooked = (id: string): unknown => ({ kind: 'init', id, hooks: { pause: true, createContainer: [], startContainer: [], state: { ociVersion: '1.0.2', id, bundle: '/b' } } });

  it('before hooks: a plan with hooks is refused (FailedPrecondition) rather than set up without them; one without goes through', async () => {
    const { SeedClient } = await import('../engines/process/seed-client.js');
    const seed = await oldSeed('old-seed', undefined);
    const client = new SeedClient();
    try {
      await client.start({ socket: seed.socket, survive: true });
      const plan = hooked('c1') as Parameters<typeof client.spawn>[1];
      const err = await client.spawn('default/c1', plan).catch((e: unknown) => e);
      expect(statusOf(err)).toEqual({ code: 9, message: expect.stringMatching(/root seed predates OCI hooks/) as unknown as string });
      const { hooks: _none, ...plain } = plan as unknown as Record<string, unknown>;
      await expect(client.spawn('default/c2', plain as unknown as typeof plan)).resolves.toMatchObject({ pid: 4242 });
      expect(seed.spawned).toEqual(['default/c2']);
    } finally {
      client.detach();
      seed.close();
    }
  });

  it('before user namespaces (hooks only): a plan with one is refused rather than set up in the host\'s; hooks still go through', async () => {
    const { SeedClient } = await import('../engines/process/seed-client.js');
    const seed = await oldSeed('hooks-seed', ['hooks']);
    const client = new SeedClient();
    try {
      await client.start({ socket: seed.socket, survive: true });
      const maps = [{ containerID: 0, hostID: 100000, size: 65536 }];
      const plan = { kind: 'init', id: 'c1', userNs: { uidMappings: maps, gidMappings: maps } } as unknown as Parameters<typeof client.spawn>[1];
      const err = await client.spawn('default/c1', plan).catch((e: unknown) => e);
      expect(statusOf(err)).toEqual({ code: 9, message: expect.stringMatching(/root seed predates user namespaces in OCI specs/) as unknown as string });
      await expect(client.spawn('default/c2', hooked('c2') as typeof plan)).resolves.toMatchObject({ pid: 4242 });
      expect(seed.spawned).toEqual(['default/c2']);
    } finally {
      client.detach();
      seed.close();
    }
  });
});

describe('a root seed\'s features as spored sees them (SeedClient.has)', () => {
  it('one from before late cgroup mounts lacks it (spored then joins CRI containers first, as before); this code\'s seed names every feature', async () => {
    const { SeedClient } = await import('../engines/process/seed-client.js');
    const { SEED_FEATURES } = await import('../engines/process/protocol.js');
    for (const [features, late] of [[['hooks', 'userns'], false], [[...SEED_FEATURES], true]] as const) {
      const seed = await oldSeed(`features-${late}`, [...features]);
      const client = new SeedClient();
      try {
        await client.start({ socket: seed.socket, survive: true });
        expect(client.has('late-cgroup-mount')).toBe(late);
        expect(client.has('userns')).toBe(true);
      } finally {
        client.detach();
        seed.close();
      }
    }
  });
});

describe('runProgram for real (the container init\'s runner: createContainer, startContainer)', () => {
  it('gives the program its input whole (2 MiB: past what a pipe may hold without CAP_SYS_RESOURCE), captures its output, reports its status', async () => {
    const { realContainerSys } = await import('../engines/process/container-sys.js');
    const r = realContainerSys.runProgram('/bin/sh', ['sh', '-c', 'wc -c; echo to-err >&2; exit 3'], ['PATH=/usr/bin:/bin'], Buffer.alloc(2 << 20, 0x61), 10_000);
    expect(r.status).toBe(3 << 8);
    expect(r.output).toBe(`${2 << 20}\nto-err\n`);
  });

  it('kills a program past its time (null status) without waiting for a child that holds its output', async () => {
    const { realContainerSys } = await import('../engines/process/container-sys.js');
    const left = join(dir, 'sync-left.pid');
    const t0 = Date.now();
    const r = realContainerSys.runProgram('/bin/sh', ['sh', '-c', `sleep 30 & echo $! > ${left}; echo started; wait`], ['PATH=/usr/bin:/bin'], Buffer.from('{}'), 300);
    expect(r).toEqual({ status: null, output: 'started\n' });
    expect(Date.now() - t0).toBeLessThan(3000);
    process.kill(Number(readFileSync(left, 'utf8')), 'SIGKILL');
  });
});
