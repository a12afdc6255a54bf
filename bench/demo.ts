// spore's main job, end to end, in one run (README's first command):
// a private containerd; spored started by containerd through the shim on the first
// container; the seed tree built (L0 root, L1 node + python, L2 per function); ordinary
// containers run through ctr with spore and with runc side by side; Node.js and Python
// functions deployed and invoked over FRI; one latency table at the end, with the baselines
// measured in the same run: runc through the same containerd, each function run as a fresh
// process (its runtime started, its module loaded, its handler called, as a cold start
// without seeds), and the machine's fork floor (fork + exit + wait of an idle Node or
// Python process: what no fork-based runtime can beat).
import { readFileSync, existsSync, mkdirSync, copyFileSync } from 'node:fs';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { startContainerd, rootfs, repoRoot, type Containerd } from '../integration/harness.js';
import { FriClient } from '../protocols/fri/client.js';
import { packDirectory } from '../functions/packages.js';
import type { InvokeResult, SeedInfo } from '../protocols/fri/types.js';
import { waitForFri } from './fri-ready.js';
import { pct } from './floor.js';

interface Row { what: string; how: string; n: number; p50: number; p90: number; p99: number; ratio: string; note: string }

const RUNS = Number(process.env.DEMO_RUNS ?? 10);
const INVOKES = Number(process.env.DEMO_INVOKES ?? 50);

/** A row from samples (ms); `ratio` compares medians against the named baselines. */
function row(what: string, how: string, xs: number[], ratio = '', note = ''): Row {
  return { what, how, n: xs.length, p50: pct(xs, 50), p90: pct(xs, 90), p99: pct(xs, 99), ratio, note };
}

function times(a: number[], b: number[]): string {
  return `${(pct(a, 50) / pct(b, 50)).toFixed(2)}×`;
}

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { env, timeout: 60_000, maxBuffer: 8 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(' ')} failed: ${err.message}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

/** Wall time (ms) of `cmd args` from spawn to exit, RUNS times after one warm-up; checks its stdout. */
async function timeFresh(cmd: string, args: string[], expect: string, env?: NodeJS.ProcessEnv): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < RUNS + 1; i++) {
    const t0 = performance.now();
    const stdout = await run(cmd, args, env);
    const ms = performance.now() - t0;
    if (!stdout.includes(expect)) throw new Error(`${cmd} ${args.join(' ')} printed ${stdout.slice(0, 200)}, not ${expect}`);
    if (i > 0) out.push(ms);
  }
  return out;
}

/** The fork floor of an idle Node (bench/fork-floor.ts) or Python (bench/fork-floor.py) process. */
async function forkFloor(language: 'node' | 'python'): Promise<number[]> {
  const n = String(Math.max(20, INVOKES));
  const stdout = language === 'node'
    ? await run(process.execPath, [join(repoRoot, 'dist', 'bench', 'fork-floor.js'), n])
    : await run('python3', [join(repoRoot, 'bench', 'fork-floor.py'), n]);
  return (JSON.parse(stdout) as { samples: number[] }).samples;
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


/** `how`: where the counted calls' instances came from: forked on request, or parked (forked before the call, --parked auto) */
async function invokeMany(fri: FriClient, name: string, event: string): Promise<{ wall: number[]; last: InvokeResult; how: string; phases: string }> {
  const wall: number[] = [];
  const total: number[] = [];
  const execute: number[] = [];
  let last: InvokeResult | null = null;
  let parked = 0;
  for (let i = 0; i < INVOKES + 3; i++) {
    const t0 = performance.now();
    const r = await fri.invoke(name, event);
    const ms = performance.now() - t0;
    if (!r.ok) throw new Error(`invoke ${name} failed: ${r.error?.kind}: ${r.error?.message}`);
    if (i >= 3) {
      wall.push(ms);
      if (r.parked) parked++;
      total.push(r.timings.total / 1000);
      execute.push(r.timings.execute / 1000);
    }
    last = r;
  }
  const l = last as InvokeResult;
  const how = parked === 0 ? `fork from L${l.seedLevel} on request` : parked === wall.length ? `parked (forked from L${l.seedLevel} before the call)` : `parked ${Math.round((100 * parked) / wall.length)} %, else fork from L${l.seedLevel}`;
  // the phases of every counted call, not the last one's (most calls take a parked instance)
  const phases = `p50 in spore ${pct(total, 50).toFixed(2)} ms, of it the handler ${pct(execute, 50).toFixed(2)} ms`;
  return { wall, last: l, how, phases };
}

function table(rows: Row[]): string {
  const lines = ['| what | how | n | p50 ms | p90 ms | p99 ms | p50 ratio | note |', '|---|---|---:|---:|---:|---:|---|---|'];
  for (const r of rows) lines.push(`| ${r.what} | ${r.how} | ${r.n} | ${r.p50.toFixed(2)} | ${r.p90.toFixed(2)} | ${r.p99.toFixed(2)} | ${r.ratio} | ${r.note} |`);
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
      rows.push(row(`ctr run --rm ${what}`, 'spore', s, `${times(s, r)} runc`));
      rows.push(row(`ctr run --rm ${what}`, 'runc', r, 'baseline'));
    }

    say('waiting for the function runtime (seed tree: L0 -> L1 node, python)');
    const fri = await waitForFri(c.runDir, c.sporeLog, 30_000);
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

      say(`baselines: the machine's fork floor (Node, Python), each function as a fresh process (${RUNS} runs)`);
      const floor = { node: await forkFloor('node'), python: await forkFloor('python') };
      const runner = { node: join(repoRoot, 'bench', 'fresh', 'runner.cjs'), python: join(repoRoot, 'bench', 'fresh', 'runner.py') };
      const fresh = (language: 'node' | 'python', module: string, event: string, expect: string, env?: NodeJS.ProcessEnv): Promise<number[]> =>
        timeFresh(language === 'node' ? process.execPath : 'python3', [runner[language], module, event], expect, env);
      const vs = (wall: number[], base: number[], language: 'node' | 'python'): string =>
        `${times(wall, base)} fresh, ${times(wall, floor[language])} fork floor`;

      for (const [name, language, dir] of pkgs) {
        const event = readFileSync(join(examples, dir, 'event.json'), 'utf8');
        const { wall, last, how } = await invokeMany(fri, name, event);
        const html = (JSON.parse(last.result ?? '{}') as { html?: string }).html ?? '';
        if (!html.includes('&lt;script&gt;')) throw new Error(`${name} did not render its template: ${last.result ?? ''}`);
        const module = join(examples, dir, language === 'node' ? 'index.js' : 'main.py');
        const base = await fresh(language, module, event, '&lt;script&gt;');
        rows.push(row(`FRI invoke ${name} (package)`, `spore ${language}, ${how}`, wall, vs(wall, base, language), `rendered ${html.length} bytes of HTML`));
        rows.push(row(`${name} as a fresh process`, `${language} runner, per request`, base, 'baseline'));
      }
      for (const [name, language, file] of fns) {
        const event = JSON.stringify({ name: 'demo' });
        const { wall, last, how, phases } = await invokeMany(fri, name, event);
        // outside the repository: its package.json says "type": "module", the examples are CommonJS
        mkdirSync(join(c.dir, 'fresh'), { recursive: true });
        copyFileSync(join(examples, file), join(c.dir, 'fresh', file));
        const base = await fresh(language, join(c.dir, 'fresh', file), event, (last.result ?? '').split(':')[0] ?? '');
        rows.push(row(`FRI invoke ${name}`, `spore ${language}, ${how}`, wall, vs(wall, base, language), phases));
        rows.push(row(`${name} as a fresh process`, `${language} runner, per request`, base, 'baseline'));
      }
      rows.push(row('fork floor: fork + exit + wait', 'idle Node process', floor.node, 'baseline'));
      rows.push(row('fork floor: fork + exit + wait', 'idle Python process', floor.python, 'baseline'));
      const seeds = await fri.listSeeds();
      process.stdout.write(`\n## spore demo — ${new Date().toISOString()} — load average ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}\n\n`);
      process.stdout.write(`${table(rows)}\n\n### seed tree\n\n${seedTable(seeds)}\n\n`);
      process.stdout.write('ctr rows: wall time of `ctr run --rm` (client start to exit) through the same private containerd.\n');
      process.stdout.write('FRI rows: wall time of an Invoke call over the FRI unix socket (seed lookup, the instance (forked on request, or parked: forked before the call by the default --parked auto), bind, run, respond).\n');
      process.stdout.write('Fresh-process rows: spawn to exit of `node bench/fresh/runner.cjs <module> <event>` (or `python3 runner.py`): runtime start, module load, handler, exit.\n');
      process.stdout.write('Fork floor: fork + _exit + waitpid of an idle Node / Python process (`bench/fork-floor.{ts,py}`), the same run.\n');
    } finally {
      // the functions go with the demo (their node-wide id ranges too: /var/lib/spore/idmaps)
      for (const f of await fri.listFunctions().catch(() => [])) await fri.remove(f.name).catch(() => undefined);
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
