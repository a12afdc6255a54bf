// `spore` CLI: main(argv, io) in-process against a real FRI server (unix socket) backed by the
// in-memory FakeRuntime; plus the pure formatting and argument helpers.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pino from 'pino';
import type * as grpc from '@grpc/grpc-js';
import { closeFri, friServer, listenFri } from '../runtime/fri/server.js';
import { main, resolveSocket } from '../cli/main.js';
import type { CliIo } from '../cli/main.js';
import { UsageError, envFlags, parseArgs } from '../cli/args.js';
import { formatMicros, phaseTable, table } from '../cli/format.js';
import { languageOfFile } from '../cli/commands.js';
import { FAKE_TIMINGS, FakeRuntime } from './fake-runtime.js';

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
    expect(t).toMatch(/destroy\s+310 µs\s+\(after the response, not in total\)/);
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
  });
});

describe('spore against a fake-backed spored', () => {
  let dir: string;
  let sock: string;
  let server: grpc.Server;
  let rt: FakeRuntime;

  interface Run { code: number; out: string; err: string }
  async function spore(...argv: string[]): Promise<Run> {
    let out = '';
    let err = '';
    const io: CliIo = { stdout: (s) => { out += s; }, stderr: (s) => { err += s; }, env: { SPORE_FRI_SOCKET: sock }, cwd: dir };
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
    expect(r.out).toMatch(/^deployed hello \(node, handler handler, 256 MiB, 3000 ms, 4 bytes\)\nseed: seed-fn-hello\n$/);
    expect(rt.functions.get('hello')).toEqual({
      name: 'hello', language: 'node', code: 'echo', handler: 'handler', memoryMiB: 256, timeoutMs: 3000, env: { A: '1', B: '2' }, invocations: 0,
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

  it('invoke: event from a file, default {}, --level, --json', async () => {
    await spore('invoke', 'hello', '--data-file', 'event.json', '--level', '1', '--fresh-namespaces');
    expect(rt.calls.at(-1)).toEqual({ method: 'invoke', args: ['hello', '{"from":"file"}', { level: 1, freshNamespaces: true }] });
    await spore('invoke', 'hello');
    expect(rt.calls.at(-1)?.args[1]).toBe('{}');
    const j = await spore('invoke', 'hello', '--data', '[1,2]', '--json');
    expect(j.code).toBe(0);
    expect(JSON.parse(j.out)).toMatchObject({ ok: true, result: [1, 2], seedLevel: 2, timings: FAKE_TIMINGS });
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
    expect(r).toEqual({ code: 1, out: '', err: 'spore: function missing is not deployed\n' });
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
    expect(fns.out).toMatch(/^hello\s+node\s+handler\s+256 MiB\s+3000 ms\s+4 B\s+seed-fn-hello\s+\d+/m);
    expect(await spore('rm', 'hello')).toEqual({ code: 0, out: 'removed hello\n', err: '' });
    expect((await spore('functions', '--json')).out).not.toMatch(/"hello"/);
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
    for (const c of ['deploy', 'invoke', 'seeds', 'ps', 'functions', 'rm', 'bench']) {
      expect(top.out).toContain(`  ${c}`);
      const h = await spore(c, '--help');
      expect({ c, code: h.code }).toEqual({ c, code: 0 });
      expect(h.out).toMatch(new RegExp(`^usage: spore ${c}`));
      expect((await spore('help', c)).out).toBe(h.out);
    }
    expect((await spore('deploy', '-h')).out).toMatch(/--runtime R/);
  });

  it('an unreachable daemon is a clear error, exit 1', async () => {
    const r = await spore('--socket', path.join(dir, 'nope.sock'), 'seeds');
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/no FRI socket at .*nope\.sock; is spored running\?/);
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
});
