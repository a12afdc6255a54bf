// A/B of two spore checkouts through the gateway, interleaved: what a change costs an
// invocation end to end. Each round starts spored from checkout A, then from B (own run
// dir, free port), deploys examples/hello.js and hello.py with that checkout's CLI, warms
// up, then times N sequential POST /invoke/<fn> (c=1) per language; rounds alternate
// A, B, A, B so drift on a shared machine hits both.
//
//   node dist/bench/ab.js --a /path/to/old/checkout --b /path/to/new/checkout [--rounds 4] [--n 300]
//
// Each checkout must be built (dist/) with node_modules. Prints one table (p50, p90, p99
// per variant and language; B/A ratio of p50) and, with --json, one JSON line.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

interface Args { a: string; b: string; rounds: number; n: number; json: boolean }

function parseArgs(argv: string[]): Args {
  const get = (k: string): string | undefined => { const i = argv.indexOf(k); return i >= 0 ? argv[i + 1] : undefined; };
  const a = get('--a');
  const b = get('--b') ?? repoRoot;
  if (!a || argv.includes('--help')) {
    process.stdout.write('usage: node dist/bench/ab.js --a OLD_CHECKOUT [--b NEW_CHECKOUT] [--rounds 4] [--n 300] [--json]\n');
    process.exit(a ? 0 : 2);
  }
  return { a: path.resolve(a), b: path.resolve(b), rounds: Number(get('--rounds') ?? 4), n: Number(get('--n') ?? 300), json: argv.includes('--json') };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => { const p = (s.address() as net.AddressInfo).port; s.close(() => resolve(p)); });
    s.on('error', reject);
  });
}

function post(port: number, fn: string, body: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const req = http.request({ host: '127.0.0.1', port, path: `/invoke/${fn}`, method: 'POST', agent: keepAlive, headers: { 'content-type': 'application/json' } }, (res) => {
      res.resume();
      res.on('end', () => (res.statusCode === 200 ? resolve(performance.now() - t0) : reject(new Error(`${fn}: HTTP ${res.statusCode}`))));
    });
    req.on('error', reject);
    req.end(body);
  });
}
const keepAlive = new http.Agent({ keepAlive: true, maxSockets: 1 });

async function waitFor(p: string, ms: number): Promise<void> {
  const until = Date.now() + ms;
  while (!fs.existsSync(p)) {
    if (Date.now() > until) throw new Error(`${p} did not appear in ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function round(checkout: string, n: number): Promise<Record<string, number[]>> {
  const dir = fs.mkdtempSync('/tmp/spore-ab-');
  const port = await freePort();
  const child: ChildProcess = spawn(path.join(checkout, 'bin', 'spored'), ['--run-dir', dir, '--gateway', `127.0.0.1:${port}`, '--log', path.join(dir, 'spored.log')], { stdio: 'ignore', detached: true });
  try {
    await waitFor(path.join(dir, 'fri.sock'), 30_000);
    const cli = (args: string[]): void => { execFileSync(path.join(checkout, 'bin', 'spore'), ['--socket', path.join(dir, 'fri.sock'), ...args], { stdio: 'ignore' }); };
    for (let i = 0; ; i++) {
      try { cli(['seeds']); break; } catch { if (i > 100) throw new Error('spored did not answer'); await new Promise((r) => setTimeout(r, 100)); }
    }
    cli(['deploy', 'hello-node', '--file', path.join(repoRoot, 'examples', 'hello.js')]);
    cli(['deploy', 'hello-python', '--file', path.join(repoRoot, 'examples', 'hello.py')]);
    await new Promise((r) => setTimeout(r, 1000));
    const out: Record<string, number[]> = {};
    for (const fn of ['hello-node', 'hello-python']) {
      for (let i = 0; i < 50; i++) await post(port, fn, '{}');
      const ts: number[] = [];
      for (let i = 0; i < n; i++) ts.push(await post(port, fn, '{}'));
      out[fn] = ts;
    }
    return out;
  } finally {
    keepAlive.destroy();
    try { process.kill(-(child.pid ?? 0), 'SIGTERM'); } catch { /* gone */ }
    await new Promise((r) => { child.once('exit', r); setTimeout(r, 10_000); });
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const q = (xs: number[], p: number): number => { const s = [...xs].sort((x, y) => x - y); return s[Math.min(s.length - 1, Math.floor(p * s.length))] ?? NaN; };
const r2 = (x: number): number => Math.round(x * 100) / 100;

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const all: Record<'A' | 'B', Record<string, number[]>> = { A: {}, B: {} };
  const load0 = fs.readFileSync('/proc/loadavg', 'utf8').split(' ')[0];
  for (let r = 0; r < args.rounds; r++) {
    for (const v of ['A', 'B'] as const) {
      const got = await round(v === 'A' ? args.a : args.b, args.n);
      for (const [fn, ts] of Object.entries(got)) (all[v][fn] ??= []).push(...ts);
      process.stderr.write(`[ab] round ${r + 1}/${args.rounds} ${v} done\n`);
    }
  }
  const rows: Record<string, unknown>[] = [];
  for (const fn of ['hello-node', 'hello-python']) {
    const a = all.A[fn] ?? [];
    const b = all.B[fn] ?? [];
    rows.push({ fn, a_p50: r2(q(a, 0.5)), a_p90: r2(q(a, 0.9)), a_p99: r2(q(a, 0.99)), b_p50: r2(q(b, 0.5)), b_p90: r2(q(b, 0.9)), b_p99: r2(q(b, 0.99)), b_over_a_p50: r2(q(b, 0.5) / q(a, 0.5)), n: a.length });
  }
  const load1 = fs.readFileSync('/proc/loadavg', 'utf8').split(' ')[0];
  process.stdout.write(`A = ${args.a}\nB = ${args.b}\nrounds ${args.rounds} x ${args.n} invocations per function, c=1, interleaved; load average ${load0} -> ${load1}\n\n`);
  process.stdout.write('| function | A p50 ms | A p90 | A p99 | B p50 ms | B p90 | B p99 | B/A p50 |\n|---|---:|---:|---:|---:|---:|---:|---:|\n');
  for (const r of rows) process.stdout.write(`| ${String(r.fn)} | ${String(r.a_p50)} | ${String(r.a_p90)} | ${String(r.a_p99)} | ${String(r.b_p50)} | ${String(r.b_p90)} | ${String(r.b_p99)} | ${String(r.b_over_a_p50)} |\n`);
  if (args.json) process.stdout.write(JSON.stringify({ rows, load: [load0, load1] }) + '\n');
}

main().catch((e: unknown) => { process.stderr.write(`ab: ${(e as Error).stack ?? String(e)}\n`); process.exit(1); });
