// spore's main job, end to end, in one run (README's first command):
// a private containerd; spored started by containerd through the shim on the first
// container; the seed tree built (L0 root, L1 node + python, L2 per function); ordinary
// containers run through ctr with spore and with runc side by side; Node.js and Python
// functions deployed and invoked over FRI; one latency table at the end.
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { startContainerd, rootfs, repoRoot, type Containerd } from '../integration/harness.js';
import { FriClient } from '../runtime/fri/client.js';
import { packDirectory } from '../functions/packages.js';
import type { InvokeResult, SeedInfo } from '../runtime/fri/types.js';

interface Row { what: string; how: string; n: number; p50: number; p90: number; note: string }

const RUNS = Number(process.env.DEMO_RUNS ?? 10);
const INVOKES = Number(process.env.DEMO_INVOKES ?? 50);

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] ?? NaN;
}

function say(msg: string): void {
  process.stderr.write(`[demo] ${msg}\n`);
}

async function timeCtr(c: Containerd, runtime: string[], image: string, args: string[], tag: string): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < RUNS + 1; i++) {
    const t0 = performance.now();
    const r = await c.ctr(['run', '--rm', ...runtime, '--fifo-dir', `${c.dir}/fifo`, '--rootfs', image, `${tag}-${i}`, ...args], { timeoutMs: 60_000 });
    const ms = performance.now() - t0;
    if (r.code !== 0) throw new Error(`ctr run (${tag}) failed with ${r.code}: ${r.stderr.trim()}`);
    if (i > 0) out.push(ms); // the first run warms caches (and, for spore, starts spored)
  }
  return out;
}

async function waitForFri(c: Containerd): Promise<FriClient> {
  const socket = join(c.runDir, 'fri.sock');
  const until = Date.now() + 30_000;
  for (;;) {
    if (existsSync(socket)) {
      try {
        const fri = await FriClient.connect(socket, { connectTimeoutMs: 2000 });
        const seeds = await fri.listSeeds();
        if (seeds.filter((s) => s.level === 1 && s.state === 'ready').length >= 2) return fri;
        fri.close();
      } catch { /* not yet */ }
    }
    if (Date.now() > until) {
      const errors = existsSync(c.sporeLog) ? readFileSync(c.sporeLog, 'utf8').split('\n').filter((l) => /"level":[56]0/.test(l)).slice(-3).join('\n') : '';
      throw new Error(`FRI did not come up at ${socket}; spored said:\n${errors}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function invokeMany(fri: FriClient, name: string, event: string): Promise<{ wall: number[]; last: InvokeResult }> {
  const wall: number[] = [];
  let last: InvokeResult | null = null;
  for (let i = 0; i < INVOKES + 3; i++) {
    const t0 = performance.now();
    const r = await fri.invoke(name, event);
    const ms = performance.now() - t0;
    if (!r.ok) throw new Error(`invoke ${name} failed: ${r.error?.kind}: ${r.error?.message}`);
    if (i >= 3) wall.push(ms);
    last = r;
  }
  return { wall, last: last as InvokeResult };
}

function table(rows: Row[]): string {
  const lines = ['| what | how | n | p50 ms | p90 ms | note |', '|---|---|---:|---:|---:|---|'];
  for (const r of rows) lines.push(`| ${r.what} | ${r.how} | ${r.n} | ${r.p50.toFixed(2)} | ${r.p90.toFixed(2)} | ${r.note} |`);
  return lines.join('\n');
}

function seedTable(seeds: SeedInfo[]): string {
  const lines = ['| seed | level | language | function | state | private KiB | shared KiB |', '|---|---|---|---|---|---:|---:|'];
  for (const s of seeds) lines.push(`| ${s.id} | L${s.level} | ${s.language ?? '-'} | ${s.function ?? '-'} | ${s.state}${s.replicaOf ? ' (replica)' : ''} | ${s.memory?.privateKiB ?? '-'} | ${s.memory?.sharedKiB ?? '-'} |`);
  return lines.join('\n');
}

async function main(): Promise<void> {
  const images = { busybox: rootfs('busybox'), node: rootfs('node'), python: rootfs('python') };
  say('starting a private containerd');
  const c = await startContainerd({ extraEnv: { SPORE_GATEWAY: '127.0.0.1:0' } });
  const rows: Row[] = [];
  try {
    const spore = ['--runtime', 'io.containerd.spore.v2'];
    const workloads: [string, string, string[]][] = [
      ['/bin/true (busybox)', images.busybox, ['/bin/true']],
      ['node -e 0', images.node, ['/usr/bin/node', '-e', '0']],
      ['python3 -c pass', images.python, ['/usr/bin/python3', '-c', 'pass']],
    ];
    for (const [what, image, args] of workloads) {
      say(`ctr run --rm ${what}: spore and runc, ${RUNS} runs each`);
      const s = await timeCtr(c, spore, image, args, 'sp');
      const r = await timeCtr(c, [], image, args, 'rc');
      rows.push({ what: `ctr run --rm ${what}`, how: 'spore', n: s.length, p50: pct(s, 50), p90: pct(s, 90), note: `${(pct(s, 50) / pct(r, 50)).toFixed(2)}× runc` });
      rows.push({ what: `ctr run --rm ${what}`, how: 'runc', n: r.length, p50: pct(r, 50), p90: pct(r, 90), note: '' });
    }

    say('waiting for the function runtime (seed tree: L0 -> L1 node, python)');
    const fri = await waitForFri(c);
    try {
      const examples = join(repoRoot, 'examples');
      const fns: [string, 'node' | 'python', string][] = [
        ['hello', 'node', 'hello.js'], ['hello-py', 'python', 'hello.py'],
        ['slow-init', 'node', 'slow-init.js'], ['slow-init-py', 'python', 'slow-init.py'],
      ];
      for (const [name, language, file] of fns) {
        const t0 = performance.now();
        await fri.deploy({ name, language, code: readFileSync(join(examples, file), 'utf8'), handler: 'handler', memoryMiB: 128, timeoutMs: 5000, env: {} });
        say(`deployed ${name} (${language}) with its L2 seed in ${(performance.now() - t0).toFixed(1)} ms`);
      }
      // packages with real dependencies: nunjucks from npm, a vendored jinja2 (scripts/example-deps.sh)
      const pkgs: [string, 'node' | 'python', string, string][] = [['tpl', 'node', 'nunjucks', 'index.handler'], ['tpl-py', 'python', 'py-template', 'main.handler']];
      for (const [name, language, dir, handler] of pkgs) {
        const t0 = performance.now();
        const data = await packDirectory(join(examples, dir));
        await fri.deploy({ name, language, code: '', package: { format: 'tar.gz', data }, handler, memoryMiB: 128, timeoutMs: 5000, env: {} });
        say(`deployed package ${name} (${language}, ${(data.length / 1024).toFixed(0)} KiB packed) in ${(performance.now() - t0).toFixed(1)} ms`);
      }
      await new Promise((r) => setTimeout(r, 500)); // replicas
      for (const [name, language, dir] of pkgs) {
        const { wall, last } = await invokeMany(fri, name, readFileSync(join(examples, dir, 'event.json'), 'utf8'));
        const html = (JSON.parse(last.result ?? '{}') as { html?: string }).html ?? '';
        if (!html.includes('&lt;script&gt;')) throw new Error(`${name} did not render its template: ${last.result ?? ''}`);
        rows.push({ what: `FRI invoke ${name} (package)`, how: `spore ${language}, fork from L${last.seedLevel}`, n: wall.length, p50: pct(wall, 50), p90: pct(wall, 90), note: `rendered ${html.length} bytes of HTML` });
      }
      for (const [name, language] of fns) {
        const { wall, last } = await invokeMany(fri, name, JSON.stringify({ name: 'demo' }));
        const t = last.timings;
        rows.push({
          what: `FRI invoke ${name}`, how: `spore ${language}, fork from L${last.seedLevel}`, n: wall.length, p50: pct(wall, 50), p90: pct(wall, 90),
          note: `last: fork ${(t.fork / 1000).toFixed(2)}, bind ${(t.bind / 1000).toFixed(2)}, seccomp ${(t.seccomp / 1000).toFixed(2)}, init ${(t.init / 1000).toFixed(2)}, exec ${(t.execute / 1000).toFixed(2)} ms`,
        });
      }
      const seeds = await fri.listSeeds();
      process.stdout.write(`\n## spore demo — ${new Date().toISOString()}\n\n`);
      process.stdout.write(`${table(rows)}\n\n### seed tree\n\n${seedTable(seeds)}\n\n`);
      process.stdout.write('ctr rows: wall time of `ctr run --rm` (client start to exit) through the same private containerd.\n');
      process.stdout.write('FRI rows: wall time of an Invoke call over the FRI unix socket (seed lookup, fork, bind, run, respond).\n');
    } finally {
      fri.close();
    }
  } finally {
    say('stopping containerd, spored and everything they started');
    await c.stop();
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`[demo] failed: ${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
