// FRI over a real unix socket: grpc-js server + FriClient, backed by the in-memory FakeRuntime.
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pino from 'pino';
import type * as grpc from '@grpc/grpc-js';
import { Code, FailedPrecondition, InvalidArgument, NotFound, Overloaded, ResourceExhausted, SporeError, Unavailable } from '../sys/errors.js';
import { FriClient } from '../protocols/fri/client.js';
import { closeFri, friCustodyKey, friServer, listenFri, removeStaleSocket } from '../protocols/fri/server.js';
import * as sys from '../sys/libc.js';
import { startFri } from '../daemon/fri.js';
import { errorFromStatus } from '../protocols/fri/grpc.js';
import {
  invokeResultFromProto, invokeResultToProto, seedFromProto, seedToProto, functionInfoFromProto, functionInfoToProto,
  functionSpecFromProto, functionSpecToProto,
} from '../protocols/fri/convert.js';
import { create } from '@bufbuild/protobuf';
import { FunctionInfoSchema, FunctionSpecSchema, InvokeResultSchema, PackageFormat as PackageFormatMsg, SeedInfoSchema } from '../fri-proto/gen/spore/fri/v1/fri_pb.js';
import {
  FRI_MAX_MESSAGE_BYTES, MAX_PACKAGE_BYTES, MAX_EVENT_BYTES, validateEvent, validateFunctionName, validateFunctionSpec, validatePackageHandler,
  validateTailBytes,
} from '../protocols/fri/validate.js';
import type { RawFunctionSpec } from '../protocols/fri/validate.js';
import type { Engine, FunctionInfo, FunctionSpec, InstanceInfo, InvokeResult, Language, SeedInfo } from '../protocols/fri/types.js';
import { FAKE_TIMINGS, FakeRuntime, fakeDigest } from './fake-runtime.js';

const log = pino({ level: 'silent' });

async function rejection(p: Promise<unknown>): Promise<SporeError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof SporeError) return e;
    throw e;
  }
  throw new Error('expected a rejection');
}

function spec(name: string, code = 'echo', over: Partial<FunctionSpec> = {}): FunctionSpec {
  return { name, language: 'node', code, handler: 'handler', memoryMiB: 128, timeoutMs: 3000, env: {}, ...over };
}

describe('validation (pure)', () => {
  it('events: empty means {}, JSON checked, size limited', () => {
    expect(validateEvent('')).toBe('{}');
    expect(validateEvent('  \n')).toBe('{}');
    expect(validateEvent('{"a":1}')).toBe('{"a":1}');
    expect(validateEvent('42')).toBe('42');
    expect(() => validateEvent('{a:1}')).toThrow(InvalidArgument);
    expect(() => validateEvent('{a:1}')).toThrow(/not valid JSON.*send a JSON value/);
    expect(() => validateEvent('"x"'.padEnd(20, ' '), 10)).toThrow(ResourceExhausted);
    expect(() => validateEvent('"é"', 3)).toThrow(/4 bytes; the limit is 3/); // bytes, not characters
  });

  it('names', () => {
    expect(validateFunctionName('hello-world_1.v2')).toBe('hello-world_1.v2');
    expect(() => validateFunctionName('')).toThrow(/empty/);
    expect(() => validateFunctionName('a/b')).toThrow(InvalidArgument);
    expect(() => validateFunctionName('-x')).toThrow(InvalidArgument);
    expect(() => validateFunctionName('x'.repeat(64))).toThrow(InvalidArgument);
  });

  it('function specs: defaults for zero values, bounds, identifiers', () => {
    const s = validateFunctionSpec({ name: 'f', language: 'python', code: 'def handler(e, c): return e', handler: '', memoryMiB: 0, timeoutMs: 0, env: { A_1: 'x' } });
    expect(s).toMatchObject({ handler: 'handler', memoryMiB: 128, timeoutMs: 3000, env: { A_1: 'x' } });
    const base = { name: 'f', language: 'node' as Language | null, code: 'x', handler: 'h', memoryMiB: 128, timeoutMs: 100, env: {} };
    expect(() => validateFunctionSpec({ ...base, language: null })).toThrow(/node.*python/);
    expect(() => validateFunctionSpec({ ...base, code: ' ' })).toThrow(/code is empty/);
    expect(() => validateFunctionSpec({ ...base, memoryMiB: 1 })).toThrow(/memory/);
    expect(() => validateFunctionSpec({ ...base, timeoutMs: 10 ** 9 })).toThrow(/timeout/);
    expect(() => validateFunctionSpec({ ...base, handler: 'a-b' })).toThrow(/identifier/);
    expect(() => validateFunctionSpec({ ...base, language: 'python', handler: '$h' })).toThrow(/identifier/);
    expect(() => validateFunctionSpec({ ...base, env: { '1X': 'v' } })).toThrow(/env name/);
  });

  it('package specs: exactly one of code/package, format, size, MODULE.FUNCTION handlers with defaults', () => {
    const data = new Uint8Array([1, 2, 3]);
    const base: RawFunctionSpec = { name: 'p', language: 'node', code: '', package: { format: 'zip', data }, handler: '', memoryMiB: 0, timeoutMs: 0, env: {} };
    expect(validateFunctionSpec(base)).toEqual({
      name: 'p', language: 'node', code: '', package: { format: 'zip', data }, handler: 'index.handler', memoryMiB: 128, timeoutMs: 3000, env: {},
    });
    expect(validateFunctionSpec({ ...base, language: 'python' }).handler).toBe('main.handler');
    expect(validateFunctionSpec({ ...base, handler: 'src/lib/app.v2.run' }).handler).toBe('src/lib/app.v2.run');
    expect(validateFunctionSpec({ ...base, handler: '@scope/pkg/index.$h' }).handler).toBe('@scope/pkg/index.$h');
    expect(validateFunctionSpec({ ...base, language: 'python', handler: 'pkg/sub.mod.lambda_handler' }).handler).toBe('pkg/sub.mod.lambda_handler');
    // an empty package is no package (proto3): the single-file rules apply
    expect(() => validateFunctionSpec({ ...base, package: { format: 'zip', data: new Uint8Array() } })).toThrow(/code is empty/);
    expect(() => validateFunctionSpec({ ...base, code: 'x' })).toThrow(/either code .* or a package, not both/);
    expect(() => validateFunctionSpec({ ...base, package: { format: null, data } })).toThrow(/package format is missing or unknown; use "zip" or "tar.gz"/);
    expect(() => validateFunctionSpec({ ...base, language: 'vm' })).toThrow(/vm function takes no package/);
    const big = { ...base, package: { format: 'tar.gz' as const, data: new Uint8Array(MAX_PACKAGE_BYTES + 1) } };
    expect(() => validateFunctionSpec(big)).toThrow(ResourceExhausted);
    expect(() => validateFunctionSpec(big)).toThrow(/package archive is 52428801 bytes; the limit is 52428800 bytes \(50 MiB\)/);
    expect(validateFunctionSpec({ ...big, package: { format: 'tar.gz', data: new Uint8Array(MAX_PACKAGE_BYTES) } }).package?.format).toBe('tar.gz');
    const bad: [string, Language, RegExp][] = [
      ['handler', 'node', /is not MODULE\.FUNCTION/],
      ['index.', 'node', /is not MODULE\.FUNCTION/],
      ['.handler', 'node', /is not MODULE\.FUNCTION/],
      ['/var/task/index.handler', 'node', /without a leading "\/"/],
      ['../x/index.handler', 'node', /"\." or "\.\." segments/],
      ['a/./index.handler', 'node', /"\." or "\.\." segments/],
      ['a//index.handler', 'node', /bad module path segment ""/],
      ['.hidden/index.handler', 'node', /bad module path segment "\.hidden"/],
      ['in dex.handler', 'node', /bad module path segment "in dex"/],
      ['index.not-ident', 'node', /"not-ident" is not a node identifier/],
      ['my-mod.handler', 'python', /bad module path segment "my-mod"/],
      ['main.$h', 'python', /"\$h" is not a python identifier/],
      [`${'m'.repeat(130)}.h`, 'node', /longer than 128 characters/],
    ];
    for (const [handler, language, msg] of bad) {
      expect(() => validateFunctionSpec({ ...base, language, handler }), handler).toThrow(msg);
      expect(() => validateFunctionSpec({ ...base, language, handler }), handler).toThrow(InvalidArgument);
    }
    expect(validatePackageHandler('node', 'index.handler')).toBe('index.handler');
    // single files keep the identifier rule
    expect(() => validateFunctionSpec({ ...base, package: null, code: 'x', handler: 'index.handler' })).toThrow(/is not a node identifier/);
  });

  it('logs tail bytes', () => {
    expect(validateTailBytes(undefined)).toBeUndefined();
    expect(validateTailBytes(0)).toBeUndefined();
    expect(validateTailBytes(100)).toBe(100);
    expect(() => validateTailBytes(16 * 1024 * 1024 + 1)).toThrow(/out of range/);
  });

  it('the gRPC message limit fits the largest package plus framing', () => {
    expect(FRI_MAX_MESSAGE_BYTES).toBeGreaterThanOrEqual(MAX_PACKAGE_BYTES + 64 * 1024);
  });
});

describe('conversion (pure)', () => {
  it('seed info round-trips, nulls included', () => {
    const seeds: SeedInfo[] = [
      { id: 's0', level: 0, engine: 'process', language: null, function: null, parent: null, pid: 10, state: 'ready', replicaOf: null, forks: 3, createdAt: 'now', initMs: 1.5, memory: null, error: null },
      { id: 's2', level: 2, engine: 'vm', language: 'python', function: 'f', parent: 's1', pid: 11, state: 'failed', replicaOf: 's2a', forks: 0, createdAt: 'now', initMs: 0, memory: { rssKiB: 1, pssKiB: 2, privateKiB: 3, sharedKiB: 4 }, error: 'bad' },
    ];
    for (const s of seeds) expect(seedFromProto(create(SeedInfoSchema, seedToProto(s)))).toEqual(s);
  });

  it('invoke results round-trip; timings become whole microseconds', () => {
    const r: InvokeResult = {
      ok: false, result: null, error: { kind: 'oom', message: 'm', stack: null }, function: null, seedId: 's', seedLevel: 1, instanceId: 'i',
      timings: { ...FAKE_TIMINGS, fork: 1200.4, bind: -3 },
    };
    const back = invokeResultFromProto(create(InvokeResultSchema, invokeResultToProto(r)));
    expect(back).toEqual({ ...r, timings: { ...FAKE_TIMINGS, fork: 1200, bind: 0 } });
  });

  it('function info round-trips (bigint counters come back as numbers), versions included', () => {
    const f: FunctionInfo = {
      name: 'f', language: 'node', handler: 'h', memoryMiB: 256, timeoutMs: 10, env: { A: 'b' }, codeBytes: 12, version: 3,
      packageDigest: 'ab'.repeat(32), seedId: null, deployedAt: 'now', invocations: 7, state: 'rebuilding', stateMessage: 'its first seed went away',
      versions: [
        { version: 3, packageDigest: 'ab'.repeat(32), state: 'active', inflight: 0, seedIds: [], deployedAt: 'now' },
        { version: 2, packageDigest: 'cd'.repeat(32), state: 'retiring', inflight: 5, seedIds: ['s1', 's2'], deployedAt: 'before' },
      ],
    };
    expect(functionInfoFromProto(create(FunctionInfoSchema, functionInfoToProto(f)))).toEqual(f);
  });

  it('function specs with a package cross the wire with their format', () => {
    const data = new Uint8Array([9, 8, 7]);
    const s: FunctionSpec = { name: 'f', language: 'python', code: '', package: { format: 'tar.gz', data }, handler: 'main.handler', memoryMiB: 1, timeoutMs: 2, env: {} };
    const m = create(FunctionSpecSchema, functionSpecToProto(s));
    expect(m.packageFormat).toBe(PackageFormatMsg.TAR_GZ);
    expect(functionSpecFromProto(m)).toEqual({ ...s, package: { format: 'tar.gz', data } });
    const single = create(FunctionSpecSchema, functionSpecToProto({ ...s, code: 'x', package: null }));
    expect(functionSpecFromProto(single).package).toBeNull();
    // bytes without a format: null format, which validation rejects
    expect(functionSpecFromProto(create(FunctionSpecSchema, { package: data })).package).toEqual({ format: null, data });
  });

  it('status codes become typed errors', () => {
    expect(errorFromStatus(Code.NOT_FOUND, 'x')).toBeInstanceOf(NotFound);
    expect(errorFromStatus(Code.UNKNOWN, 'x').code).toBe(Code.UNKNOWN);
    expect(errorFromStatus(99, 'x').code).toBe(Code.UNKNOWN);
  });
});

describe('FRI over a unix socket', () => {
  let dir: string;
  let sock: string;
  let server: grpc.Server;
  let rt: FakeRuntime;
  let client: FriClient;

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spore-fri-'));
    sock = path.join(dir, 'run', 'fri.sock');
    rt = new FakeRuntime();
    server = friServer(rt, log);
    await listenFri(server, sock);
    client = await FriClient.connect(sock);
  });

  afterAll(async () => {
    client?.close();
    await closeFri(server, sock);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('binds the socket owner-only', () => {
    expect(fs.statSync(sock).mode & 0o777).toBe(0o600);
  });

  it('Create, Fork (seed and instance), Activate, Destroy, ListSeeds, ListInstances, DeleteSeed', async () => {
    const root = await client.create('process');
    expect(root).toMatchObject({ level: 0, engine: 'process', language: null, function: null, state: 'ready' });
    expect(await client.create('process')).toEqual(root); // idempotent

    const l1 = (await client.fork(root.id, { kind: 'seed', language: 'python' })) as SeedInfo;
    expect(l1).toMatchObject({ level: 1, language: 'python', parent: root.id });
    const l2 = (await client.fork(l1.id, { kind: 'seed', function: 'f' })) as SeedInfo;
    expect(l2).toMatchObject({ level: 2, function: 'f', parent: l1.id, memory: { privateKiB: 2048 } });
    expect(rt.calls.at(-1)).toEqual({ method: 'fork', args: [l1.id, { kind: 'seed', function: 'f' }] });

    const inst = (await client.fork(l2.id, { kind: 'instance' })) as InstanceInfo;
    expect(inst).toMatchObject({ seedId: l2.id, function: 'f', state: 'paused' });
    expect((await client.listInstances()).map((i) => i.id)).toEqual([inst.id]);

    const r = await client.activate(inst.id, '{"x":1}');
    expect(r).toMatchObject({ ok: true, result: '{"x":1}', instanceId: inst.id, timings: FAKE_TIMINGS });
    await client.destroy(inst.id);
    expect(await client.listInstances()).toEqual([]);

    expect((await client.listSeeds()).map((s) => s.id)).toEqual([root.id, l1.id, l2.id]);
    expect((await client.listSeeds()).find((s) => s.id === l1.id)?.forks).toBe(1);
    await client.deleteSeed(l2.id);
    expect((await client.listSeeds()).map((s) => s.id)).toEqual([root.id, l1.id]);
  });

  it('Deploy, ListFunctions, Invoke, Remove', async () => {
    const info = await client.deploy(spec('hello', 'echo', { env: { GREETING: 'hi' }, memoryMiB: 256 }));
    expect(info).toMatchObject({ name: 'hello', language: 'node', memoryMiB: 256, env: { GREETING: 'hi' }, codeBytes: 4, invocations: 0 });
    const r = await client.invoke('hello', '{"name":"spore"}', { level: 2 });
    expect(r).toEqual({
      ok: true, result: '{"name":"spore"}', error: null, function: 'hello', seedId: 'seed-fn-hello', seedLevel: 2,
      instanceId: expect.stringMatching(/^inst-/), timings: FAKE_TIMINGS,
    });
    expect(rt.calls.at(-1)).toEqual({ method: 'invoke', args: ['hello', '{"name":"spore"}', { level: 2 }] });
    // empty event: the runtime receives {}
    await client.invoke('hello', '');
    expect(rt.calls.at(-1)).toEqual({ method: 'invoke', args: ['hello', '{}', {}] });
    expect((await client.listFunctions()).map((f) => [f.name, f.invocations])).toEqual([['hello', 2]]);
    await client.remove('hello');
    expect(await client.listFunctions()).toEqual([]);
  });

  it('Deploy a package: the runtime gets the archive, ListFunctions shows version and digest', async () => {
    const data = new Uint8Array(Buffer.from('fake archive bytes'));
    const info = await client.deploy(spec('pkg', '', { package: { format: 'zip', data }, handler: '' }));
    const digest = fakeDigest({ ...spec('pkg', ''), package: { format: 'zip', data } });
    expect(info).toMatchObject({ name: 'pkg', handler: 'index.handler', codeBytes: data.byteLength, version: 1, packageDigest: digest });
    expect(info.versions).toEqual([{ version: 1, packageDigest: digest, state: 'active', inflight: 0, seedIds: ['seed-fn-pkg'], deployedAt: expect.any(String) }]);
    const sent = rt.calls.at(-1)?.args[0] as FunctionSpec;
    expect(sent.code).toBe('');
    expect(sent.package?.format).toBe('zip');
    expect(Buffer.from(sent.package?.data ?? []).toString()).toBe('fake archive bytes');
    rt.retiringInflight = 1;
    try {
      const v2 = await client.deploy(spec('pkg', '', { package: { format: 'tar.gz', data: new Uint8Array([1]) }, handler: 'src/app.run' }));
      expect(v2.version).toBe(2);
      expect(v2.versions.map((v) => [v.version, v.state, v.inflight, v.packageDigest])).toEqual([[2, 'active', 0, v2.packageDigest], [1, 'retiring', 1, digest]]);
    } finally {
      rt.retiringInflight = 0;
    }
    expect((await client.listFunctions()).find((f) => f.name === 'pkg')).toMatchObject({ version: 2, handler: 'src/app.run' });
    // rejected before the runtime: both code and package, no format (raw proto), bad handler
    const before = rt.calls.length;
    expect((await rejection(client.deploy(spec('pkg', 'x', { package: { format: 'zip', data } })))).message).toMatch(/not both/);
    expect((await rejection(client.deploy(spec('pkg', '', { package: { format: 'zip', data }, handler: 'handler' })))).message).toMatch(/MODULE\.FUNCTION/);
    expect(rt.calls.length).toBe(before);
    await client.remove('pkg');
  });

  it('a 50 MiB package fits in one Deploy; one byte more is RESOURCE_EXHAUSTED naming the limit', async () => {
    const max = new Uint8Array(MAX_PACKAGE_BYTES);
    const info = await client.deploy(spec('big', '', { package: { format: 'tar.gz', data: max }, handler: '' }));
    expect(info.codeBytes).toBe(MAX_PACKAGE_BYTES);
    const e = await rejection(client.deploy(spec('big', '', { package: { format: 'tar.gz', data: new Uint8Array(MAX_PACKAGE_BYTES + 1) }, handler: '' })));
    expect(e).toBeInstanceOf(ResourceExhausted);
    expect(e.message).toMatch(/the limit is 52428800 bytes \(50 MiB\)/);
    // beyond the transport limit grpc-js refuses it on the client side, with the same code
    const huge = await rejection(client.deploy(spec('big', '', { package: { format: 'tar.gz', data: new Uint8Array(FRI_MAX_MESSAGE_BYTES + 1) }, handler: '' })));
    expect(huge.code).toBe(Code.RESOURCE_EXHAUSTED);
    await client.remove('big');
  }, 30_000);

  it('Logs: the text, a tail, NOT_FOUND for an unknown name, bad input rejected', async () => {
    await client.deploy(spec('talker'));
    rt.logText.set('talker', 'a\nbb\nccc\n');
    expect(await client.logs('talker')).toBe('a\nbb\nccc\n');
    expect(rt.calls.at(-1)).toEqual({ method: 'logs', args: ['talker', 64 * 1024] }); // 0 on the wire = the runtime's default
    expect(await client.logs('talker', 6)).toBe('ccc\n');
    expect(rt.calls.at(-1)).toEqual({ method: 'logs', args: ['talker', 6] });
    expect(await rejection(client.logs('nobody'))).toBeInstanceOf(NotFound);
    expect((await rejection(client.logs('bad name'))).message).toMatch(/bad function name/);
    expect((await rejection(client.logs('talker', 17 * 1024 * 1024))).message).toMatch(/tail 17825792 bytes is out of range/);
    await client.remove('talker');
  });

  it('deploy applies defaults for zero values', async () => {
    const info = await client.deploy(spec('dflt', 'echo', { handler: '', memoryMiB: 0, timeoutMs: 0 }));
    expect(info).toMatchObject({ handler: 'handler', memoryMiB: 128, timeoutMs: 3000 });
  });

  it('a failed invocation is a result with ok=false and timings, not an RPC error', async () => {
    await client.deploy(spec('bad', 'throw'));
    await client.deploy(spec('slow', 'timeout'));
    await client.deploy(spec('fat', 'oom'));
    const r = await client.invoke('bad', '{}');
    expect(r).toMatchObject({ ok: false, result: null, error: { kind: 'handler', message: 'boom' }, timings: FAKE_TIMINGS });
    expect(r.error?.stack).toContain('at handler');
    expect((await client.invoke('slow', '{}')).error).toEqual({ kind: 'timeout', message: 'timed out after 3000 ms', stack: null });
    expect((await client.invoke('fat', '{}')).error?.kind).toBe('oom');
  });

  it('unknown function / seed / instance -> NOT_FOUND with the runtime message', async () => {
    const e = await rejection(client.invoke('nope', '{}'));
    expect(e).toBeInstanceOf(NotFound);
    expect(e.message).toBe('function nope is not deployed');
    expect(await rejection(client.fork('no-seed', { kind: 'instance' }))).toBeInstanceOf(NotFound);
    expect(await rejection(client.activate('no-inst', '{}'))).toBeInstanceOf(NotFound);
    expect(await rejection(client.destroy('no-inst'))).toBeInstanceOf(NotFound);
    expect(await rejection(client.deleteSeed('no-seed'))).toBeInstanceOf(NotFound);
    expect(await rejection(client.remove('nope'))).toBeInstanceOf(NotFound);
  });

  it('bad input -> INVALID_ARGUMENT saying what to fix; runtime not called', async () => {
    await client.deploy(spec('echo'));
    const before = rt.calls.length;
    const bad = await rejection(client.invoke('echo', '{"a":'));
    expect(bad).toBeInstanceOf(InvalidArgument);
    expect(bad.message).toMatch(/event is not valid JSON/);
    expect((await rejection(client.invoke('', '{}'))).message).toMatch(/function name is empty/);
    expect((await rejection(client.create('kvm' as Engine))).message).toMatch(/engine.*"process" or "vm"/);
    expect((await rejection(client.deploy(spec('r', 'x', { language: 'ruby' as Language })))).message).toMatch(/"node" or "python"/);
    expect((await rejection(client.deploy(spec('bad name')))).message).toMatch(/bad function name/);
    expect((await rejection(client.fork('', { kind: 'instance' }))).message).toMatch(/seed_id is empty/);
    expect((await rejection(client.activate('', '{}'))).message).toMatch(/instance_id is empty/);
    expect((await rejection(client.invoke('echo', '{}', { level: 3 as 2 }))).message).toMatch(/level 3/);
    expect(rt.calls.length).toBe(before);
  });

  it('oversized event -> RESOURCE_EXHAUSTED naming the limit', async () => {
    const big = JSON.stringify('x'.repeat(MAX_EVENT_BYTES));
    const e = await rejection(client.invoke('echo', big));
    expect(e).toBeInstanceOf(ResourceExhausted);
    expect(e.message).toMatch(/limit is 6291456 bytes/);
    // just under the limit goes through
    const ok = JSON.stringify('x'.repeat(MAX_EVENT_BYTES - 2));
    expect((await client.invoke('echo', ok)).result?.length).toBe(MAX_EVENT_BYTES);
  });

  it('an untyped runtime failure -> UNKNOWN with its message', async () => {
    await client.deploy(spec('explode', 'explode'));
    const e = await rejection(client.invoke('explode', '{}'));
    expect(e.code).toBe(Code.UNKNOWN);
    expect(e.message).toBe('kaboom');
  });

  it('concurrent calls on one connection', async () => {
    await client.deploy(spec('c'));
    const rs = await Promise.all(Array.from({ length: 50 }, (_, i) => client.invoke('c', JSON.stringify({ i }))));
    expect(rs.map((r) => JSON.parse(r.result ?? 'null').i)).toEqual(Array.from({ length: 50 }, (_, i) => i));
  });
});

describe('listen and connect', () => {
  let dir: string;
  beforeAll(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spore-fri-l-')); });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('connect fails fast with a hint when there is no socket', async () => {
    const e = await rejection(FriClient.connect(path.join(dir, 'missing.sock')));
    expect(e).toBeInstanceOf(Unavailable);
    expect(e.message).toMatch(/^no FRI socket at .*missing\.sock: spored is not running \(start bin\/spored\)/);
  });

  it('the socket is 0600 and owned by the daemon from the start, whatever the umask and its directory', async () => {
    const open = path.join(dir, 'open');
    fs.mkdirSync(open, { mode: 0o777 });
    fs.chmodSync(open, 0o777);
    const sock = path.join(open, 'fri.sock');
    const server = friServer(new FakeRuntime(), log);
    const old = process.umask(0);
    try {
      await listenFri(server, sock);
    } finally {
      process.umask(old);
    }
    const st = fs.statSync(sock);
    expect(st.isSocket()).toBe(true);
    expect(st.mode & 0o777).toBe(0o600);
    expect(st.uid).toBe(process.getuid?.());
    expect(fs.readdirSync(open)).toEqual(['fri.sock']); // the staging directory is gone
    const c = await FriClient.connect(sock);
    expect((await c.create('process')).level).toBe(0);
    c.close();
    await closeFri(server, sock);
    expect(fs.existsSync(sock)).toBe(false);
  });

  it('tells apart no socket, a socket nobody listens on, and spored up with its FRI down', async () => {
    const run = path.join(dir, 'diag');
    fs.mkdirSync(run);
    const sock = path.join(run, 'fri.sock');
    // a socket file nobody listens on (a spored killed with SIGKILL leaves one)
    execFileSync('python3', ['-c', `import socket; socket.socket(socket.AF_UNIX).bind(${JSON.stringify(sock)})`]);
    let e = await rejection(FriClient.connect(sock, { connectTimeoutMs: 10_000 }));
    expect(e.message).toBe(`${sock} exists but nothing listens on it: spored is not running (it exited without removing its socket); start bin/spored`);
    // a live spored (by its pid file; the process must be spored, not a reused pid)
    const fake = spawn('sleep', ['30'], { argv0: 'spored', stdio: 'ignore' });
    try {
      fs.writeFileSync(path.join(run, 'spored.pid'), `${fake.pid}\n`);
      await new Promise((r) => setTimeout(r, 50));
      e = await rejection(FriClient.connect(sock));
      expect(e.message).toMatch(new RegExp(`^spored is running \\(pid ${fake.pid}, run dir ${run}\\) but its FRI is unavailable: ${sock} exists but nothing listens on it; FRI failed`));
      fs.rmSync(sock);
      e = await rejection(FriClient.connect(sock));
      expect(e.message).toMatch(/^spored is running \(pid \d+, .*\) but its FRI is unavailable: there is no socket at .*--fri off/);
      fs.writeFileSync(path.join(run, 'spored.pid'), `${process.pid}\n`); // alive, but not spored
      e = await rejection(FriClient.connect(sock));
      expect(e.message).toMatch(/^no FRI socket at/);
    } finally {
      fake.kill('SIGKILL');
    }
    fs.writeFileSync(sock, 'x');
    e = await rejection(FriClient.connect(sock));
    expect(e.message).toMatch(/is not a socket/);
  });

  it('Overloaded crosses FRI with its retry-after (a trailer), so a remote gateway can answer 429 + Retry-After', async () => {
    const rt = new FakeRuntime();
    await rt.deploy(spec('busy', 'busy'));
    const sock = path.join(dir, 'busy.sock');
    const server = friServer(rt, log);
    await listenFri(server, sock);
    const c = await FriClient.connect(sock);
    const e = await rejection(c.invoke('busy', '{}'));
    expect(e).toBeInstanceOf(Overloaded);
    expect(e.code).toBe(Code.RESOURCE_EXHAUSTED);
    expect((e as Overloaded).retryAfterMs).toBe(2500);
    c.close();
    await closeFri(server, sock);
  });

  it('replaces a stale socket; refuses a live one and a non-socket', async () => {
    const stale = path.join(dir, 'stale.sock');
    // A socket file nobody listens on (a process that bound and exited without unlinking).
    execFileSync('python3', ['-c', `import socket; socket.socket(socket.AF_UNIX).bind(${JSON.stringify(stale)})`]);
    expect(fs.lstatSync(stale).isSocket()).toBe(true);
    const server = friServer(new FakeRuntime(), log);
    await listenFri(server, stale);
    const c = await FriClient.connect(`unix://${stale}`);
    expect(await c.listSeeds()).toEqual([]);
    c.close();
    // now it is live: a second daemon must not steal it
    expect(await rejection(removeStaleSocket(stale))).toBeInstanceOf(FailedPrecondition);
    await closeFri(server, stale);
    expect(fs.existsSync(stale)).toBe(false);

    const file = path.join(dir, 'file');
    fs.writeFileSync(file, 'x');
    expect((await rejection(removeStaleSocket(file))).message).toMatch(/not a socket/);
  });

  it('optional TCP listener', async () => {
    const server = friServer(new FakeRuntime(), log);
    const { tcpPort } = await listenFri(server, path.join(dir, 't.sock'), '127.0.0.1:0');
    expect(tcpPort).toBeGreaterThan(0);
    const c = await FriClient.connect(`127.0.0.1:${tcpPort}`);
    expect((await c.create('vm')).engine).toBe('vm');
    c.close();
    await closeFri(server, path.join(dir, 't.sock'));
  });

  it('startFri serves gRPC and the gateway; close() frees both', async () => {
    const rt = new FakeRuntime();
    await rt.deploy(spec('hello'));
    const sock = path.join(dir, 'd', 'fri.sock');
    const h = await startFri(rt, { friSocket: sock, gatewayAddress: '127.0.0.1:0' }, log);
    const c = await FriClient.connect(sock);
    expect((await c.invoke('hello', '{"a":1}')).result).toBe('{"a":1}');
    c.close();
    const res = await fetch(`http://${h.gatewayAddress}/invoke/hello`, { method: 'POST', body: '{"b":2}' });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ b: 2 });
    await h.close();
    expect(fs.existsSync(sock)).toBe(false);
    await expect(new Promise((resolve, reject) => {
      const s = net.connect(Number(h.gatewayAddress.split(':')[1]), '127.0.0.1');
      s.once('connect', () => { s.destroy(); resolve('connected'); });
      s.once('error', reject);
    })).rejects.toThrow(/ECONNREFUSED/);
  });

  it('a gateway address that is taken: FRI keeps serving, the error names the address and the fix', async () => {
    const rt = new FakeRuntime();
    await rt.deploy(spec('hello'));
    const squatter = net.createServer();
    await new Promise<void>((r) => squatter.listen(0, '127.0.0.1', () => r()));
    const taken = `127.0.0.1:${(squatter.address() as net.AddressInfo).port}`;
    const lines: { level: number; msg: string; address?: string }[] = [];
    const capture = pino({ level: 'info' }, { write: (l: string) => { lines.push(JSON.parse(l)); } });
    const sock = path.join(dir, 'taken', 'fri.sock');
    const h = await startFri(rt, { friSocket: sock, gatewayAddress: taken }, capture);
    try {
      expect(h.gateway).toBeNull();
      expect(h.gatewayAddress).toBeNull();
      expect(h.listening()).toBe(true);
      const c = await FriClient.connect(sock);
      expect((await c.invoke('hello', '{"a":1}')).result).toBe('{"a":1}');
      c.close();
      const err = lines.find((l) => l.level === 50);
      expect(err?.address).toBe(taken);
      expect(err?.msg).toContain(`cannot listen on ${taken}: the address is already in use`);
      expect(err?.msg).toContain('EADDRINUSE');
      expect(err?.msg).toContain('--gateway HOST:PORT');
      expect(err?.msg).toContain('--gateway off');
    } finally {
      await h.close();
      squatter.close();
    }
    expect(h.listening()).toBe(false);
  });

  it('--gateway off: FRI only', async () => {
    const sock = path.join(dir, 'off', 'fri.sock');
    const h = await startFri(new FakeRuntime(), { friSocket: sock, gatewayAddress: 'off' }, log);
    expect(h.gateway).toBeNull();
    const c = await FriClient.connect(sock);
    expect((await c.listSeeds())).toEqual([]);
    c.close();
    await h.close();
  });
});

describe('FRI socket custody (the keeper holds the listening socket across spored restarts)', () => {
  it('a later server listens on the held socket; a client that connects in between is served by it; a path removed meanwhile gets a new socket', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spore-fri-held-'));
    const sock = path.join(dir, 'fri.sock');
    const held = new Map<string, number>();
    let parks = 0;
    const custody = {
      park: (key: string, fd: number) => { parks++; held.set(key, sys.dupFd(fd)); return Promise.resolve(); },
      reclaim: (key: string) => { const fd = held.get(key); return fd === undefined ? null : sys.dupFd(fd); },
      release: (key: string) => { const fd = held.get(key); if (fd !== undefined) sys.close(fd); held.delete(key); },
    };
    const rt = new FakeRuntime();
    await rt.deploy({ name: 'hello', language: 'node', code: 'hello', handler: 'handler', memoryMiB: 128, timeoutMs: 3000, env: {} });
    const log = pino({ level: 'silent' });
    try {
      const first = friServer(rt, log);
      const a = await listenFri(first, sock, undefined, custody);
      expect(a.held?.key).toBe(friCustodyKey(sock));
      expect(held.size).toBe(1);
      const ino = fs.statSync(sock).ino;
      expect(fs.statSync(sock).mode & 0o777).toBe(0o600);
      a.held?.listener.close();
      await closeFri(first, null, 0);
      // nobody serves now; the socket is held: a client connects and waits
      const late = FriClient.connect(sock, { connectTimeoutMs: 5000 }).then(async (c) => { try { return await c.invoke('hello', '{}'); } finally { c.close(); } });
      await new Promise((r) => setTimeout(r, 100));
      const second = friServer(rt, log);
      const b = await listenFri(second, sock, undefined, custody);
      expect(fs.statSync(sock).ino).toBe(ino);
      expect(parks).toBe(1); // the held one, not a new one
      expect((await late).ok).toBe(true);
      b.held?.listener.close();
      await closeFri(second, null, 0);
      // a dead socket file put over the path: the held socket is out of reach, so it is let go
      // and a new one made
      fs.rmSync(sock);
      const dead = net.createServer();
      await new Promise<void>((r) => dead.listen(sock, r));
      fs.renameSync(sock, `${sock}.keep`); // (closing a server unlinks its path: keep the file)
      await new Promise((r) => dead.close(r));
      fs.renameSync(`${sock}.keep`, sock);
      const third = friServer(rt, log);
      const c3 = await listenFri(third, sock, undefined, custody);
      expect(parks).toBe(2);
      expect(held.size).toBe(1);
      const client = await FriClient.connect(sock);
      expect((await client.invoke('hello', '{}')).ok).toBe(true);
      client.close();
      c3.held?.listener.close();
      await closeFri(third, sock, 0);
    } finally {
      for (const fd of held.values()) sys.close(fd);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
