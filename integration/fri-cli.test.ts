// The function path as a user drives it: a real `bin/spored` (own run dir, free gateway
// port), `bin/spore deploy --dir` of packages with real dependencies, `spore invoke`, the
// HTTP gateway, `spore logs` and `spore functions`, then SIGTERM and nothing left behind.
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = process.getuid?.() === 0;
if (!root) console.warn('[fri-cli.test] skipped: needs root (spored: cgroups, namespaces)');
const repo = fileURLToPath(new URL('..', import.meta.url));
const examples = join(repo, 'examples');

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => { const p = (s.address() as net.AddressInfo).port; s.close(() => resolve(p)); });
    s.on('error', reject);
  });
}

/** Processes whose environment or command line mentions `dir`. */
function processesOf(dir: string): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d) || Number(d) === process.pid) continue;
    try {
      const cmd = readFileSync(`/proc/${d}/cmdline`, 'utf8');
      if (cmd.includes(dir)) out.push(Number(d));
    } catch { /* gone */ }
  }
  return out;
}

describe.skipIf(!root)('functions through spored, the CLI and the gateway', () => {
  let dir: string;
  let spored: ChildProcess;
  let port: number;
  const spore = (...args: string[]): Promise<{ code: number; out: string; err: string }> => new Promise((resolve) => {
    execFile(join(repo, 'bin', 'spore'), ['--socket', join(dir, 'fri.sock'), ...args], { cwd: repo }, (e, out, err) => resolve({ code: e ? (e as { code?: number }).code ?? 1 : 0, out, err }));
  });

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'spore-cli-'));
    port = await freePort();
    spored = spawn(join(repo, 'bin', 'spored'), ['--run-dir', dir, '--gateway', `127.0.0.1:${port}`, '--log', join(dir, 'spored.log')], { stdio: 'ignore' });
    for (let i = 0; i < 300; i++) {
      if (existsSync(join(dir, 'fri.sock')) && (await spore('seeds')).out.includes('l1-python')) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`spored did not come up: ${existsSync(join(dir, 'spored.log')) ? readFileSync(join(dir, 'spored.log'), 'utf8').slice(-2000) : ''}`);
  }, 60_000);

  afterAll(async () => {
    spored?.kill('SIGTERM');
    await new Promise((r) => { spored?.once('exit', r); setTimeout(r, 15_000); });
    rmSync(dir, { recursive: true, force: true });
  });

  it('deploys a Node package with its npm dependency and a Python package with a vendored one, and both render', async () => {
    expect(existsSync(join(examples, 'nunjucks', 'node_modules', 'nunjucks')), 'run scripts/install-deps.sh').toBe(true);
    const d1 = await spore('deploy', 'tpl', '--runtime', 'node', '--dir', 'examples/nunjucks', '--handler', 'index.handler');
    expect(d1.err).toBe('');
    expect(d1.code).toBe(0);
    const d2 = await spore('deploy', 'tpl-py', '--runtime', 'python', '--dir', 'examples/py-template', '--handler', 'main.handler');
    expect(d2.code).toBe(0);
    const i1 = await spore('invoke', 'tpl', '--data-file', 'examples/nunjucks/event.json', '--json');
    expect(i1.code).toBe(0);
    expect(JSON.stringify(JSON.parse(i1.out))).toContain('&lt;script&gt;');
    const i2 = await spore('invoke', 'tpl-py', '--data-file', 'examples/py-template/event.json', '--json');
    expect(i2.code).toBe(0);
    expect(i2.out).toContain('&lt;script&gt;');
  });

  it('answers packages through the gateway as it answers single files', async () => {
    expect((await spore('deploy', 'hello', '--file', 'examples/hello.js')).code).toBe(0);
    for (const [fn, body, want] of [['tpl', readFileSync(join(examples, 'nunjucks', 'event.json'), 'utf8'), 'rendered by tpl'], ['hello', '{"name":"gw"}', 'hello gw']] as const) {
      const res = await fetch(`http://127.0.0.1:${port}/invoke/${fn}`, { method: 'POST', body, headers: { 'content-type': 'application/json' } });
      expect(res.status).toBe(200);
      expect(await res.text()).toContain(want);
      expect(res.headers.get('x-spore-seed-level')).toBe('2');
    }
  });

  it('lists versions, replaces on redeploy, shows the function\'s output, and removes', async () => {
    const first = await spore('deploy', 'talk', '--file', 'examples/hello.js');
    if (first.code) await new Promise((r) => setTimeout(r, 1500)); // the seed's exit report follows its link's close
    const log = (): string => (existsSync(join(dir, 'spored.log')) ? readFileSync(join(dir, 'spored.log'), 'utf8').split('\n').filter((l) => /"level":(40|50|60)|went away|exited|seed/.test(l)).slice(-15).join('\n') : '');
    expect(first.code, `${first.err}\n${first.code ? log() : ''}`).toBe(0);
    const again = await spore('deploy', 'talk', '--runtime', 'node', '--dir', 'examples/nunjucks', '--handler', 'index.handler', '--json');
    expect(again.code, again.err).toBe(0);
    expect(JSON.parse(again.out)).toMatchObject({ name: 'talk', version: 2 });
    const fns = await spore('functions', '--json');
    const talk = (JSON.parse(fns.out) as { name: string; version: number; packageDigest: string }[]).find((f) => f.name === 'talk');
    expect(talk?.version).toBe(2);
    expect(talk?.packageDigest).toMatch(/^[0-9a-f]{64}$/);
    expect((await spore('deploy', 'loud', '--runtime', 'node', '--file', 'examples/hello.js')).code).toBe(0);
    const logs = await spore('logs', 'tpl');
    expect(logs.code).toBe(0);
    expect((await spore('logs', 'nope')).code).not.toBe(0);
    // README's example: what the function printed, its init's line and its call's
    expect((await spore('deploy', 'say', '--runtime', 'node', '--file', 'examples/say.js')).code).toBe(0);
    expect(JSON.parse((await spore('invoke', 'say', '{"name":"logs"}')).out.split('\n')[0] ?? '')).toEqual({ said: 'hello logs' });
    let said = '';
    for (let i = 0; i < 50 && !said.includes('say: hello logs'); i++) { said = (await spore('logs', 'say')).out; await new Promise((r) => setTimeout(r, 100)); }
    expect(said).toContain('say: module loaded');
    expect(said).toContain('say: hello logs');
    expect((await spore('rm', 'talk')).code).toBe(0);
    expect((await spore('invoke', 'talk')).code).not.toBe(0);
  });

  it('refuses hostile packages with a message that names the entry', async () => {
    const { writeFileSync, mkdirSync, symlinkSync } = await import('node:fs');
    const bad = join(dir, 'bad');
    mkdirSync(bad);
    writeFileSync(join(bad, 'index.js'), 'exports.handler = () => 1;');
    symlinkSync('/etc/shadow', join(bad, 'leak'));
    const r = await spore('deploy', 'bad', '--runtime', 'node', '--dir', bad);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/leak/);
  });

  it('stops on SIGTERM and leaves no process of its run dir behind', async () => {
    const seeds = (JSON.parse((await spore('seeds', '--json')).out) as { pid: number }[]).map((s) => s.pid).filter((p) => p > 0);
    expect(seeds.length).toBeGreaterThan(3);
    spored.kill('SIGTERM');
    await new Promise((r) => spored.once('exit', r));
    for (let i = 0; i < 50 && seeds.some((p) => existsSync(`/proc/${p}`)); i++) await new Promise((r) => setTimeout(r, 100));
    expect(seeds.filter((p) => existsSync(`/proc/${p}`))).toEqual([]);
    expect(processesOf(dir)).toEqual([]);
  }, 30_000);
});
