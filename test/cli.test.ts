// `spore` CLI: main(argv, io) in-process against a real FRI server (unix socket) backed by the
// in-memory FakeRuntime; plus the pure formatting and argument helpers.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pino from 'pino';
import type * as grpc from '@grpc/grpc-js';
import { closeFri, friServer, listenFri } from '../protocols/fri/server.js';
import { main, resolveSocket } from '../cli/main.js';
import type { CliIo } from '../cli/main.js';
import { UsageError, envFlags, parseArgs } from '../cli/args.js';
import { formatLogs, formatMicros, functionsTable, phaseTable, shortDigest, table } from '../cli/format.js';
import { languageOfFile, packageFormatOfFile } from '../cli/commands.js';
import { PackageStore } from '../functions/packages.js';
import type { FunctionInfo } from '../protocols/fri/types.js';
import { FAKE_TIMINGS, FakeRuntime, fakeDigest } from './fake-runtime.js';

describe('cli helpers (pure)', () => {
  it('formats microseconds: µs below 1 ms, else ms with 2 decimals', () => {
    expect(formatMicros(0)).toBe('0 µs');
    expect(formatMicros(999.4)).toBe('999 µs');
    expect(formatMicros(1000)).toBe('1.00 ms');
    expect(formatMicros(2575)).toBe('2.58 ms');
    expect(formatMicros(-1)).toBe('-');
  });

  it('phase table lists every phase in order, destroy marked as outside total', () => {
    const t = phaseTable(FAKE_TIMINGS);
    const labels = t.trimEnd().split('\n').slice(1).map((l) => l.split(/\s{2,}/)[0]);
    expect(labels).toEqual(['control path', 'fork', 'bind', 'seccomp', 'init', 'execute', 'respond', 'destroy', 'total']);
    expect(t).toMatch(/control path\s+45 µs/);
    expect(t).toMatch(/fork\s+1\.20 ms/);
    expect(t).toMatch(/destroy\s+310 µs\s+\(exit and recycling; not in total\)/);
    expect(t).toMatch(/total\s+2\.58 ms/);
  });

  it('table aligns columns', () => {
    expect(table(['A', 'BB'], [['xxx', '1'], ['y', '22']], [false, true])).toBe('A    BB\nxxx   1\ny    22\n');
  });

  it('argument parsing', () => {
    const spec = { file: { value: true }, env: { value: true, repeat: true }, json: { value: false }, help: { value: false, short: 'h' } };
    const p = parseArgs(['hello', '--file=a.js', '--env', 'A=1', '--env', 'B=x=y', '--json', '-h', '--', '--not-a-flag'], spec);
    expect(p.positionals).toEqual(['hello', '--not-a-flag']);
    expect(p.get('file')).toBe('a.js');
    expect(envFlags(p.all('env'))).toEqual({ A: '1', B: 'x=y' });
    expect(p.has('json') && p.has('help')).toBe(true);
    expect(() => parseArgs(['--nope'], spec)).toThrow(UsageError);
    expect(() => parseArgs(['--file'], spec)).toThrow(/needs a value/);
    expect(() => parseArgs(['--file', 'a', '--file', 'b'], spec)).toThrow(/more than once/);
    expect(() => parseArgs(['--json=1'], spec)).toThrow(/takes no value/);
    expect(() => envFlags(['novalue'])).toThrow(/KEY=VALUE/);
    expect(parseArgs(['--json', 'cmd', '--x'], spec, { stopAtPositional: true }).positionals).toEqual(['cmd', '--x']);
  });

  it('socket resolution and language inference', () => {
    expect(resolveSocket('/a.sock', { SPORE_FRI_SOCKET: '/b.sock' })).toBe('/a.sock');
    expect(resolveSocket(undefined, { SPORE_FRI_SOCKET: '/b.sock', SPORE_RUN_DIR: '/r' })).toBe('/b.sock');
    expect(resolveSocket(undefined, { SPORE_RUN_DIR: '/r' })).toBe('/r/fri.sock');
    expect(resolveSocket(undefined, {})).toBe('/run/spore/fri.sock');
    expect(languageOfFile('x/hello.js')).toBe('node');
    expect(languageOfFile('h.py')).toBe('python');
    expect(languageOfFile('h.txt')).toBeNull();
    expect(packageFormatOfFile('a/fn.zip')).toBe('zip');
    expect(packageFormatOfFile('fn.tar.gz')).toBe('tar.gz');
    expect(packageFormatOfFile('FN.TGZ')).toBe('tar.gz');
    expect(packageFormatOfFile('fn.js')).toBeNull();
    expect(packageFormatOfFile('fn.gz')).toBeNull();
  });

  it('logs output always ends with a newline (nothing for no logs)', () => {
    expect(formatLogs('')).toBe('');
    expect(formatLogs('a\nb')).toBe('a\nb\n');
    expect(formatLogs('a\n')).toBe('a\n');
  });

  it('functions table: version, short digest, retiring versions below', () => {
    const d = 'ab'.repeat(32);
    const f: FunctionInfo = {
      name: 'f', language: 'node', handler: 'index.handler', memoryMiB: 128, timeoutMs: 3000, env: {}, codeBytes: 10, version: 3,
      packageDigest: d, seedId: 's3', deployedAt: 't3', invocations: 5, state: 'ready', stateMessage: '',
      versions: [
        { version: 3, packageDigest: d, state: 'active', inflight: 0, seedIds: ['s3'], deployedAt: 't3' },
        { version: 2, packageDigest: 'cd'.repeat(32), state: 'retiring', inflight: 4, seedIds: ['s2a', 's2b'], deployedAt: 't2' },
      ],
    };
    expect(shortDigest(d)).toBe('abababababab');
    expect(shortDigest('')).toBe('-');
    const one = functionsTable([{ ...f, versions: f.versions.slice(0, 1) }]);
    expect(one).toMatch(/^NAME\s+STATE\s+RUNTIME\s+HANDLER\s+VERSION\s+DIGEST\s+MEMORY/);
    expect(one).toMatch(/^f\s+ready\s+node\s+index\.handler\s+3\s+abababababab\s+128 MiB/m);
    expect(one).not.toMatch(/ is ready/);
    const down = functionsTable([{ ...f, versions: f.versions.slice(0, 1), state: 'down', stateMessage: 'its first seed went away 4 times within a minute; redeploy it' }]);
    expect(down).toMatch(/^f\s+down\s+node/m);
    expect(down).toMatch(/\nf is down: its first seed went away 4 times within a minute; redeploy it\n$/);
    expect(one).not.toMatch(/retiring/);
    const sorted = functionsTable([{ ...f, name: 'tpl-py', versions: f.versions.slice(0, 1) }, { ...f, name: 'tpl', versions: f.versions.slice(0, 1) }]);
    expect(sorted.split('\n').slice(1, 3).map((l) => l.split(/\s+/)[0])).toEqual(['tpl', 'tpl-py']);
    const two = functionsTable([f]);
    expect(two).toMatch(/\n\nretiring versions \(finishing in-flight invocations\):\nNAME\s+VERSION\s+DIGEST\s+INFLIGHT\s+SEEDS\s+DEPLOYED\nf\s+2\s+cdcdcdcdcdcd\s+4\s+s2a,s2b\s+t2\n$/);
  });
});

describe('spore against a fake-backed spored', () => {
  let dir: string;
  let sock: string;
  let server: grpc.Server;
  let rt: FakeRuntime;

  interface Run { code: number; out: string; err: string }
  let stdin: string | null = null;
  async function spore(...argv: string[]): Promise<Run> {
    let out = '';
    let err = '';
    const io: CliIo = { stdout: (s) => { out += s; }, stderr: (s) => { err += s; }, env: { SPORE_FRI_SOCKET: sock }, cwd: dir };
    if (stdin !== null) { const text = stdin; io.stdin = () => text; }
    const code = await main(argv, io);
    return { code, out, err };
  }

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spore-cli-'));
    sock = path.join(dir, 'fri.sock');
    rt = new FakeRuntime();
    server = friServer(rt, pino({ level: 'silent' }));
    await listenFri(server, sock);
    fs.writeFileSync(path.join(dir, 'hello.js'), 'echo');
    fs.writeFileSync(path.join(dir, 'bad.js'), 'throw');
    fs.writeFileSync(path.join(dir, 'slow.py'), 'timeout');
    fs.writeFileSync(path.join(dir, 'event.json'), '{"from":"file"}');
  });

  afterAll(async () => {
    await closeFri(server, sock);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('deploy sends the spec with defaults and flags', async () => {
    const r = await spore('deploy', 'hello', '--runtime', 'node', '--file', 'hello.js', '--env', 'A=1', '--env', 'B=2', '--memory', '256');
    expect(r).toMatchObject({ code: 0, err: '' });
    expect(r.out).toMatch(/^deployed hello version 1 \(node, handler handler, 256 MiB, 3000 ms, 4 bytes, digest [0-9a-f]{12}\)\nseed: seed-fn-hello\n$/);
    expect(rt.functions.get('hello')).toEqual({
      name: 'hello', language: 'node', code: 'echo', handler: 'handler', memoryMiB: 256, timeoutMs: 3000, env: { A: '1', B: '2' }, invocations: 0,
      version: 1, retiring: [],
    });
    // runtime from the extension; --json
    const py = await spore('deploy', 'slow', '--file', 'slow.py', '--timeout', '50', '--handler', 'main', '--json');
    expect(py.code).toBe(0);
    expect(JSON.parse(py.out)).toMatchObject({ name: 'slow', language: 'python', handler: 'main', timeoutMs: 50 });
    expect((await spore('deploy', 'bad', '--file', 'bad.js')).code).toBe(0);
  });

  it('invoke prints the result and the phase table', async () => {
    const r = await spore('invoke', 'hello', '--data', '{"name":"spore"}');
    expect(r.code).toBe(0);
    expect(r.err).toBe('');
    const lines = r.out.split('\n');
    expect(lines[0]).toBe('{"name":"spore"}');
    expect(r.out).toMatch(/function hello · seed seed-fn-hello \(L2\) · instance inst-\d+/);
    for (const phase of ['control path', 'fork', 'bind', 'seccomp', 'init', 'execute', 'respond', 'destroy', 'total']) {
      expect(r.out).toMatch(new RegExp(`^${phase}\\s+\\d`, 'm'));
    }
    expect(r.out).toMatch(/^total\s+2\.58 ms$/m);
  });

  it('invoke: event from a file, default {}, --json; the removed experiment flags are usage errors', async () => {
    await spore('invoke', 'hello', '--data-file', 'event.json');
    expect(rt.calls.at(-1)).toEqual({ method: 'invoke', args: ['hello', '{"from":"file"}', {}] });
    expect((await spore('invoke', 'hello', '--fresh-namespaces')).code).toBe(2);
    await spore('invoke', 'hello');
    expect(rt.calls.at(-1)?.args[1]).toBe('{}');
    // --data-file - reads standard input; where there is none, it says so (usage)
    stdin = '{"from":"stdin"}';
    expect((await spore('invoke', 'hello', '--data-file', '-')).code).toBe(0);
    expect(rt.calls.at(-1)?.args[1]).toBe('{"from":"stdin"}');
    stdin = null;
    const noStdin = await spore('invoke', 'hello', '--data-file', '-');
    expect(noStdin.code).toBe(2);
    expect(noStdin.err).toMatch(/cannot read data file -: no standard input here/);
    // the event as the argument after the name, as people type it
    expect((await spore('invoke', 'hello', '{"name":"arg"}')).code).toBe(0);
    expect(rt.calls.at(-1)?.args[1]).toBe('{"name":"arg"}');
    const j = await spore('invoke', 'hello', '--data', '[1,2]', '--json');
    expect(j.code).toBe(0);
    expect(JSON.parse(j.out)).toMatchObject({ ok: true, result: [1, 2], seedLevel: 2, timings: FAKE_TIMINGS });
  });

  it('an unknown function: NOT_FOUND, and where the deployed ones are listed', async () => {
    const r = await spore('invoke', 'nosuch');
    expect(r.code).toBe(1);
    expect(r.err).toBe("spore: function nosuch is not deployed ('spore functions' lists the deployed ones; 'spore deploy' adds one)\n");
  });

  it('a failed invocation exits 1 with the error on stderr, table still printed', async () => {
    const r = await spore('invoke', 'bad');
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^spore: invocation failed \(handler\): boom\nError: boom\n {4}at handler/);
    expect(r.out).toMatch(/^total\s+/m);
    const t = await spore('invoke', 'slow', '--json');
    expect(t.code).toBe(1);
    expect(JSON.parse(t.out).error).toEqual({ kind: 'timeout', message: 'timed out after 3000 ms', stack: null });
  });

  it('RPC errors exit 1 with the server message', async () => {
    const r = await spore('invoke', 'missing');
    expect(r).toEqual({ code: 1, out: '', err: "spore: function missing is not deployed ('spore functions' lists the deployed ones; 'spore deploy' adds one)\n" });
    expect((await spore('rm', 'missing')).code).toBe(1);
  });

  it('seeds, ps, functions, rm', async () => {
    const root = await rt.create('process');
    const l1 = await rt.fork(root.id, { kind: 'seed', language: 'node' });
    await rt.fork(l1.id, { kind: 'instance' });
    const s = await spore('seeds');
    expect(s.code).toBe(0);
    expect(s.out.split('\n')[0]).toMatch(/^ID\s+LEVEL\s+LANGUAGE\s+FUNCTION\s+PID\s+STATE\s+FORKS\s+INIT ms\s+PRIVATE KiB\s+SHARED KiB$/);
    expect(s.out).toMatch(new RegExp(`^${root.id}\\s+L0\\s+-\\s+-\\s+\\d+\\s+ready\\s+1\\s+12\\.50\\s+2048\\s+88000$`, 'm'));
    expect(JSON.parse((await spore('seeds', '--json')).out)).toHaveLength(2);
    const ps = await spore('ps');
    expect(ps.out).toMatch(/^ID\s+SEED\s+FUNCTION\s+PID\s+STATE\s+CREATED\n/);
    expect(ps.out).toMatch(/paused/);
    const fns = await spore('functions');
    expect(fns.out).toMatch(/^hello\s+ready\s+node\s+handler\s+1\s+[0-9a-f]{12}\s+256 MiB\s+3000 ms\s+4 B\s+seed-fn-hello\s+\d+/m);
    expect(await spore('rm', 'hello')).toEqual({ code: 0, out: 'removed hello\n', err: '' });
    expect((await spore('functions', '--json')).out).not.toMatch(/"hello"/);
  });

  it('deploy --dir packs the directory and sends a tar.gz package', async () => {
    const src = path.join(dir, 'pkg-node');
    fs.mkdirSync(path.join(src, 'node_modules', 'dep'), { recursive: true });
    fs.writeFileSync(path.join(src, 'index.js'), 'exports.handler = async (e) => e;\n');
    fs.writeFileSync(path.join(src, 'node_modules', 'dep', 'index.js'), 'module.exports = 1;\n');
    const r = await spore('deploy', 'pkg', '--runtime', 'node', '--dir', 'pkg-node', '--env', 'A=1');
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    const sent = rt.functions.get('pkg');
    expect(sent).toMatchObject({ language: 'node', code: '', handler: 'index.handler', env: { A: '1' }, package: { format: 'tar.gz' } });
    const data = sent?.package?.data ?? new Uint8Array();
    expect(r.out).toBe(`deployed pkg version 1 (node, handler index.handler, 128 MiB, 3000 ms, tar.gz package, ${data.byteLength} bytes, digest ${fakeDigest(sent as NonNullable<typeof sent>).slice(0, 12)})\nseed: seed-fn-pkg\n`);
    // what was sent unpacks to the directory, node_modules included
    const store = new PackageStore(path.join(dir, 'store'));
    const p = await store.put('tar.gz', data);
    expect(fs.readFileSync(path.join(p.dir, 'node_modules', 'dep', 'index.js'), 'utf8')).toBe('module.exports = 1;\n');
    // python default handler; explicit MODULE.FUNCTION with a path
    fs.mkdirSync(path.join(dir, 'pkg-py', 'src'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'pkg-py', 'main.py'), 'def handler(e, c): return e\n');
    expect((await spore('deploy', 'pkgpy', '--runtime', 'python', '--dir', 'pkg-py')).code).toBe(0);
    expect(rt.functions.get('pkgpy')?.handler).toBe('main.handler');
    expect((await spore('deploy', 'pkgpy', '--runtime', 'python', '--dir', 'pkg-py', '--handler', 'src/app.main', '--json')).code).toBe(0);
    expect(rt.functions.get('pkgpy')).toMatchObject({ handler: 'src/app.main', version: 2 });
  });

  it('deploy --file PKG.zip|.tar.gz|.tgz sends the archive as is', async () => {
    const bytes = Buffer.from('PK\x05\x06'.padEnd(22, '\0'), 'latin1'); // the fake does not unpack
    fs.writeFileSync(path.join(dir, 'fn.zip'), bytes);
    fs.writeFileSync(path.join(dir, 'fn.tgz'), bytes);
    fs.writeFileSync(path.join(dir, 'fn.tar.gz'), bytes);
    for (const [file, format] of [['fn.zip', 'zip'], ['fn.tgz', 'tar.gz'], ['fn.tar.gz', 'tar.gz']] as const) {
      const r = await spore('deploy', 'z', '--runtime', 'node', '--file', file, '--handler', 'lib/app.run');
      expect({ file, code: r.code, err: r.err }).toEqual({ file, code: 0, err: '' });
      const pkg = rt.functions.get('z')?.package;
      expect(pkg?.format).toBe(format);
      expect(Buffer.from(pkg?.data ?? []).equals(bytes)).toBe(true);
      expect(rt.functions.get('z')?.handler).toBe('lib/app.run');
    }
    const j = await spore('deploy', 'z', '--runtime', 'python', '--file', 'fn.zip', '--json');
    expect(JSON.parse(j.out)).toMatchObject({ name: 'z', language: 'python', handler: 'main.handler', version: 4, codeBytes: 22 });
  });

  it('redeploy with work in flight: functions lists the retiring version; deploy says so', async () => {
    rt.retiringInflight = 2;
    try {
      await spore('deploy', 'ver', '--file', 'hello.js');
      const r = await spore('deploy', 'ver', '--file', 'hello.js', '--memory', '256');
      expect(r.out).toMatch(/^deployed ver version 2 .*\nseed: seed-fn-ver\nretiring: version 1 \(2 in flight\)\n$/);
      const f = await spore('functions');
      expect(f.out).toMatch(/^ver\s+ready\s+node\s+handler\s+2\s+/m);
      expect(f.out).toMatch(/retiring versions .*\nNAME\s+VERSION\s+DIGEST\s+INFLIGHT\s+SEEDS\s+DEPLOYED\nver\s+1\s+[0-9a-f]{12}\s+2\s+seed-fn-ver-v1\s+/);
      expect(f.out.endsWith('\n')).toBe(true);
      const j = JSON.parse((await spore('functions', '--json')).out) as FunctionInfo[];
      expect(j.find((x) => x.name === 'ver')?.versions.map((v) => [v.version, v.state, v.inflight])).toEqual([[2, 'active', 0], [1, 'retiring', 2]]);
    } finally {
      rt.retiringInflight = 0;
    }
  });

  it('logs prints the text ending with a newline; --tail; --json', async () => {
    await spore('deploy', 'chatty', '--file', 'hello.js');
    rt.logText.set('chatty', 'line one\nline two\nlast line without newline');
    const r = await spore('logs', 'chatty');
    expect(r).toEqual({ code: 0, out: 'line one\nline two\nlast line without newline\n', err: '' });
    expect(rt.calls.at(-1)).toEqual({ method: 'logs', args: ['chatty', 64 * 1024] }); // no --tail: the runtime's default
    const t = await spore('logs', 'chatty', '--tail', '30');
    expect(t.out).toBe('last line without newline\n');
    expect(rt.calls.at(-1)).toEqual({ method: 'logs', args: ['chatty', 30] });
    expect(JSON.parse((await spore('logs', 'chatty', '--json')).out)).toEqual({ name: 'chatty', text: 'line one\nline two\nlast line without newline' });
    rt.logText.set('chatty', '');
    expect(await spore('logs', 'chatty')).toEqual({ code: 0, out: '', err: '' });
    expect(await spore('logs', 'nobody')).toEqual({ code: 1, out: '', err: "spore: function nobody is not deployed ('spore functions' lists the deployed ones; 'spore deploy' adds one)\n" });
  });

  it('package usage errors say what to fix', async () => {
    fs.mkdirSync(path.join(dir, 'pkg-bad'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'pkg-bad', 'index.js'), 'x');
    fs.symlinkSync('/etc/passwd', path.join(dir, 'pkg-bad', 'passwd'));
    fs.writeFileSync(path.join(dir, 'empty.zip'), '');
    const cases: [string[], RegExp][] = [
      [['deploy', 'x', '--dir', 'pkg-node'], /--dir pkg-node is a package: pass --runtime node\|python/],
      [['deploy', 'x', '--file', 'fn.zip'], /--file fn\.zip is a package: pass --runtime node\|python/],
      [['deploy', 'x', '--runtime', 'node', '--dir', 'pkg-node', '--file', 'hello.js'], /give --file or --dir, not both/],
      [['deploy', 'x', '--runtime', 'vm', '--dir', 'pkg-node'], /--runtime vm takes no --dir/],
      [['deploy', 'x', '--runtime', 'node', '--dir', 'pkg-node', '--handler', 'handler'], /is not MODULE\.FUNCTION.*e\.g\. "index\.handler"/],
      [['deploy', 'x', '--runtime', 'node', '--dir', 'pkg-node', '--handler', '../up.handler'], /"\." or "\.\." segments/],
      [['deploy', 'x', '--runtime', 'node', '--dir', 'pkg-node', '--handler', '/abs.handler'], /without a leading "\/"/],
      [['deploy', 'x', '--runtime', 'python', '--dir', 'pkg-node', '--handler', 'main.not-ident'], /is not a python identifier/],
      [['deploy', 'x', '--runtime', 'node', '--dir', 'missing-dir'], /--dir missing-dir: cannot read directory/],
      [['deploy', 'x', '--runtime', 'node', '--dir', 'pkg-bad'], /passwd: symlink target "\/etc\/passwd" is absolute/],
      [['deploy', 'x', '--runtime', 'node', '--file', 'missing.zip'], /cannot read package missing\.zip: ENOENT/],
      [['deploy', 'x', '--runtime', 'node', '--file', 'empty.zip'], /code is empty|package/],
      [['deploy', 'x', '--runtime', 'node', '--file', 'hello.js', '--handler', 'index.handler'], /is not a node identifier/],
      [['logs'], /missing <name>/],
      [['logs', 'x', '--tail', '0'], /--tail must be a positive integer/],
      [['logs', 'x', '--tail', String(64 * 1024 * 1024)], /tail 67108864 bytes is out of range/],
    ];
    for (const [argv, msg] of cases) {
      const r = await spore(...argv);
      expect({ argv, code: r.code, err: r.err }).toEqual({ argv, code: 2, err: expect.stringMatching(msg) });
      expect(r.err.endsWith('\n')).toBe(true);
    }
  });

  it('usage errors exit 2 with a pointer to --help', async () => {
    const cases: string[][] = [
      [],
      ['frobnicate'],
      ['deploy'],
      ['deploy', 'x'],
      ['deploy', 'x', '--file', 'hello.js', '--runtime', 'ruby'],
      ['deploy', 'x', '--file', 'hello.js', '--memory', 'lots'],
      ['deploy', 'x', '--file', 'missing.js'],
      ['deploy', 'x', '--file', 'event.json'],
      ['invoke'],
      ['invoke', 'a', 'b'],
      ['invoke', 'hello', '{}', '{}'],
      ['invoke', 'hello', '{}', '--data', '{}'],
      ['invoke', 'hello', '{}', '--data-file', 'event.json'],
      ['invoke', 'hello', '--data', '{oops'],
      ['invoke', 'hello', '--data', '{}', '--data-file', 'event.json'],
      ['invoke', 'hello', '--level', '7'],
      ['invoke', 'bad name'],
      ['seeds', '--bogus'],
      ['ps', 'extra'],
    ];
    for (const argv of cases) {
      const r = await spore(...argv);
      expect({ argv, code: r.code }).toEqual({ argv, code: 2 });
      expect(r.err.length).toBeGreaterThan(0);
    }
    const r = await spore('invoke', 'hello', '--data', '{oops');
    expect(r.err).toMatch(/^spore: event is not valid JSON .*\nRun 'spore invoke --help' for usage\.\n$/);
  });

  it('--help everywhere', async () => {
    const top = await spore('--help');
    expect(top.code).toBe(0);
    for (const c of ['deploy', 'invoke', 'seeds', 'ps', 'functions', 'logs', 'rm', 'bench']) {
      expect(top.out).toContain(`  ${c}`);
      const h = await spore(c, '--help');
      expect({ c, code: h.code }).toEqual({ c, code: 0 });
      expect(h.out).toMatch(new RegExp(`^usage: spore ${c}`));
      expect((await spore('help', c)).out).toBe(h.out);
    }
    const dh = (await spore('deploy', '-h')).out;
    expect(dh).toMatch(/--runtime R/);
    expect(dh).toMatch(/--dir DIR/);
    expect(dh).toMatch(/PKG\.zip\|PKG\.tar\.gz\|PKG\.tgz/);
    expect(dh).toMatch(/default index\.handler for node/);
    expect(dh).toMatch(/main\.handler for python/);
    expect((await spore('logs', '--help')).out).toMatch(/--tail BYTES/);
  });

  it('an unreachable daemon is a clear error, exit 1', async () => {
    const r = await spore('--socket', path.join(dir, 'nope.sock'), 'seeds');
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^spore: no FRI socket at .*nope\.sock: spored is not running \(start bin\/spored\)/);
  });

  it("every command's output, success or error, is empty or ends with a newline", async () => {
    rt.logText.set('hello', 'no newline at the end');
    const runs: string[][] = [
      [], ['--help'], ['help'], ['help', 'deploy'], ['help', 'nope'], ['frobnicate'], ['--nope'],
      ['deploy', 'nl', '--file', 'hello.js'], ['deploy', 'nl', '--file', 'hello.js', '--json'], ['deploy', 'nl'], ['deploy', 'nl', '--file', 'missing.js'],
      ['deploy', 'nl', '--file', 'hello.txt'], ['deploy', 'nl', '--runtime', 'vm', '--file', 'hello.js'], ['deploy', '--help'],
      ['invoke', 'hello'], ['invoke', 'hello', '--json'], ['invoke', 'bad'], ['invoke', 'bad', '--json'], ['invoke', 'missing'], ['invoke', 'hello', '--data', '{'],
      ['invoke'], ['invoke', 'a', 'b'],
      ['seeds'], ['seeds', '--json'], ['seeds', 'x'], ['ps'], ['ps', '--json'], ['functions'], ['functions', '--json'],
      ['logs', 'hello'], ['logs', 'hello', '--json'], ['logs', 'hello', '--tail', '5'], ['logs', 'missing'], ['logs', 'hello', '--tail', 'x'],
      ['rm', 'nl'], ['rm', 'nl', '--json'], ['rm', 'nl'], ['bench'], ['bench', 'nosuchbench'],
    ];
    for (const argv of runs) {
      const r = await spore(...argv);
      for (const [stream, text] of [['stdout', r.out], ['stderr', r.err]] as const) {
        if (text !== '') expect(text.endsWith('\n'), `spore ${argv.join(' ')}: ${stream} ${JSON.stringify(text.slice(-60))}`).toBe(true);
      }
      expect(r.out + r.err, `spore ${argv.join(' ')} printed nothing`).not.toBe('');
    }
  });

  it('a call cut off by spored going away (a restart) says so, and that it may have run', async () => {
    // a spored of its own (a process, to be killed -9) whose invoke never answers
    const sockPath = path.join(dir, 'gone.sock');
    const url = (f: string): string => JSON.stringify(new URL(f, import.meta.url).href);
    const server = spawn(process.execPath, ['--input-type=module', '-e', `
      const { friServer, listenFri } = await import(${url('../dist/protocols/fri/server.js')});
      const { FakeRuntime } = await import(${url('../dist/test/fake-runtime.js')});
      const pino = (await import('pino')).default;
      const rt = new FakeRuntime();
      rt.invoke = () => new Promise(() => undefined);
      await listenFri(friServer(rt, pino({ level: 'silent' })), ${JSON.stringify(sockPath)});
      console.log('listening');`], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((r) => server.stdout.once('data', () => r()));
    let err = '';
    const run = main(['invoke', 'x', '--data', '{}'], { stdout: () => undefined, stderr: (x) => { err += x; }, env: { SPORE_FRI_SOCKET: sockPath }, cwd: dir });
    await new Promise((r) => setTimeout(r, 500));
    server.kill('SIGKILL');
    expect(await run).toBe(1);
    expect(err).toMatch(/^spore: .+ \(spored went away during the call, e\.g\. a restart: an invocation may or may not have run; retry once spored is back\)\n$/);
    fs.rmSync(sockPath, { force: true });
  });

  it('says which part is down: no socket, a socket nobody listens on, spored up without FRI', async () => {
    const run = path.join(dir, 'down');
    fs.mkdirSync(run);
    const io = (s: string): { io: CliIo; out: () => string } => {
      let err = '';
      return { io: { stdout: () => undefined, stderr: (x) => { err += x; }, env: { SPORE_FRI_SOCKET: s }, cwd: dir }, out: () => err };
    };
    const sockPath = path.join(run, 'fri.sock');
    let c = io(sockPath);
    expect(await main(['seeds'], c.io)).toBe(1);
    expect(c.out()).toBe(`spore: no FRI socket at ${sockPath}: spored is not running (start bin/spored), or it uses another run dir or socket (set SPORE_RUN_DIR to the run dir it was started with, or point --socket / SPORE_FRI_SOCKET at its fri.sock)\n`);
    execFileSync('python3', ['-c', `import socket; socket.socket(socket.AF_UNIX).bind(${JSON.stringify(sockPath)})`]);
    c = io(sockPath);
    expect(await main(['deploy', 'x', '--file', 'hello.js'], c.io)).toBe(1);
    expect(c.out()).toMatch(/^spore: .*fri\.sock exists but nothing listens on it: spored is not running .*\n$/);
    const fake = spawn('sleep', ['30'], { argv0: 'spored', stdio: 'ignore' });
    try {
      fs.writeFileSync(path.join(run, 'spored.pid'), `${fake.pid}\n`);
      await new Promise((r) => setTimeout(r, 50));
      c = io(sockPath);
      expect(await main(['ps'], c.io)).toBe(1);
      expect(c.out()).toMatch(new RegExp(`^spore: spored is running \\(pid ${fake.pid}, run dir .*\\) but its FRI is unavailable: .* nothing listens on it; FRI failed`));
      expect(c.out()).toMatch(/\n$/);
    } finally {
      fake.kill('SIGKILL');
    }
  });

  it('bench routes to dist/bench/<name>.js and says which file is missing', async () => {
    const r = await spore('bench', 'nosuchbench', '--json');
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/benchmark "nosuchbench" is not built: .*bench\/nosuchbench\.js is missing/);
    expect((await spore('bench')).code).toBe(2);
  });
});

// The built entry point (bin/spore runs node dist/cli/main.js): only when a build exists.
const built = path.resolve('dist/cli/main.js');
describe.skipIf(!fs.existsSync(built))('built CLI', () => {
  it('runs as a program: --help exits 0, usage error exits 2', () => {
    const ok = spawnSync(process.execPath, [built, '--help'], { encoding: 'utf8' });
    expect(ok.status).toBe(0);
    expect(ok.stdout).toMatch(/^usage: spore/);
    const bad = spawnSync('sh', [path.resolve('bin/spore'), 'frobnicate'], { encoding: 'utf8' });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/unknown command "frobnicate"/);
  });

  it('an unreachable spored is reported on one line that ends with a newline', () => {
    const r = spawnSync('sh', [path.resolve('bin/spore'), '--socket', '/nonexistent', 'deploy', 'x', '--file', 'examples/hello.js'], { encoding: 'utf8' });
    expect(r.status).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^spore: no FRI socket at \/nonexistent: spored is not running[^\n]*\n$/);
  });
});
