// A/B of two spore checkouts through the gateway, interleaved: what a change costs an
// invocation end to end. Each round starts spored from checkout A, then from B (own run
// dir, free port), deploys examples/hello.js and hello.py with that checkout's CLI, warms
// up, then times N sequential POST /invoke/<fn> (c=1) per language; rounds alternate
// A, B, A, B so drift on a shared machine hits both.
//
//   node dist/bench/ab.js --a /path/to/old/checkout --b /path/to/new/checkout [--rounds 4] [--n 300]
//
//   options: --parked N (spored's --parked; default 0, fork-on-request), --fns node,python
//   (which hello functions), --wrk-seconds S (after the c=1 loop, wrk -t2 -c24 for S seconds
//   on each function: requests/s; 0 skips)
//
// Each checkout must be built (dist/) with node_modules. Prints one table (p50, p90, p99
// per variant and language; B/A ratio of p50; the whole machine's busy CPU per invocation
// over the c=1 loop, from /proc/stat, which counts the client too, the same in A and B;
// c=24 requests/s) and, with --json, one JSON line.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { wrk } from './wrk.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

interface Args { a: string; b: string; rounds: number; n: number; json: boolean; parked: number; fns: string[]; wrkSeconds: number }

function parseArgs(argv: string[]): Args {
  const get = (k: string): string | undefined => { const i = argv.indexOf(k); return i >= 0 ? argv[i + 1] : undefined; };
  const a = get('--a');
  const b = get('--b') ?? repoRoot;
  if (!a || argv.includes('--help')) {
    process.stdout.write('usage: node dist/bench/ab.js --a OLD_CHECKOUT [--b NEW_CHECKOUT] [--rounds 4] [--n 300] [--parked N] [--fns node,python] [--wrk-seconds S] [--json]\n');
    process.exit(a ? 0 : 2);
  }
  return { a: path.resolve(a), b: path.resolve(b), rounds: Number(get('--rounds') ?? 4), n: Number(get('--n') ?? 300), json: argv.includes('--json'),
    parked: Number(get('--parked') ?? 0), fns: (get('--fns') ?? 'node,python').split(',').map((l) => `hello-${l}`), wrkSeconds: Number(get('--wrk-seconds') ?? 0) };
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

/** The machine's busy CPU time so far, ms: all CPUs' user+nice+system+irq+softirq+steal (proc(5) /proc/stat "cpu"). */
function busyMs(): number {
  const f = (fs.readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '').trim().split(/\s+/).slice(1).map(Number);
  const busy = (f[0] ?? 0) + (f[1] ?? 0) + (f[2] ?? 0) + (f[5] ?? 0) + (f[6] ?? 0) + (f[7] ?? 0);
  return (busy * 1000) / 100; // USER_HZ is 100 on Linux
}

interface RoundResult { lat: number[]; cpuMs: number; rps: number }

async function round(checkout: string, args: Args): Promise<Record<string, RoundResult>> {
  const n = args.n;
  const dir = fs.mkdtempSync('/tmp/spore-ab-');
  const port = await freePort();
  const child: ChildProcess = spawn(path.join(checkout, 'bin', 'spored'), ['--run-dir', dir, '--gateway', `127.0.0.1:${port}`, '--log', path.join(dir, 'spored.log'), '--parked', String(args.parked)], { stdio: 'ignore', detached: true });
  try {
    await waitFor(path.join(dir, 'fri.sock'), 30_000);
    const cli = (args: string[]): void => { execFileSync(path.join(checkout, 'bin', 'spore'), ['--socket', path.join(dir, 'fri.sock'), ...args], { stdio: 'ignore' }); };
    for (let i = 0; ; i++) {
      try { cli(['seeds']); break; } catch { if (i > 100) throw new Error('spored did not answer'); await new Promise((r) => setTimeout(r, 100)); }
    }
    cli(['deploy', 'hello-node', '--file', path.join(repoRoot, 'examples', 'hello.js')]);
    cli(['deploy', 'hello-python', '--file', path.join(repoRoot, 'examples', 'hello.py')]);
    await new Promise((r) => setTimeout(r, 1000));
    const out: Record<string, RoundResult> = {};
    for (const fn of args.fns) {
      for (let i = 0; i < 50; i++) await post(port, fn, '{}');
      const ts: number[] = [];
      const c0 = busyMs();
      for (let i = 0; i < n; i++) ts.push(await post(port, fn, '{}'));
      const cpuMs = (busyMs() - c0) / n;
      const rps = args.wrkSeconds > 0 ? (await wrk(`http://127.0.0.1:${port}/invoke/${fn}`, process.env.WRK_BODY ?? '{}', 24, args.wrkSeconds)).rps : NaN;
      out[fn] = { lat: ts, cpuMs, rps };
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
  const cpu: Record<'A' | 'B', Record<string, number[]>> = { A: {}, B: {} };
  const rps: Record<'A' | 'B', Record<string, number[]>> = { A: {}, B: {} };
  const load0 = fs.readFileSync('/proc/loadavg', 'utf8').split(' ')[0];
  for (let r = 0; r < args.rounds; r++) {
    for (const v of ['A', 'B'] as const) {
      const got = await round(v === 'A' ? args.a : args.b, args);
      for (const [fn, g] of Object.entries(got)) {
        (all[v][fn] ??= []).push(...g.lat);
        (cpu[v][fn] ??= []).push(g.cpuMs);
        (rps[v][fn] ??= []).push(g.rps);
      }
      process.stderr.write(`[ab] round ${r + 1}/${args.rounds} ${v}: ${Object.entries(got).map(([fn, g]) => `${fn} p50 ${r2(q(g.lat, 0.5))} ms, CPU ${r2(g.cpuMs)} ms/call${Number.isNaN(g.rps) ? '' : `, c=24 ${Math.round(g.rps)}/s`}`).join('; ')}\n`);
    }
  }
  const rows: Record<string, unknown>[] = [];
  const med = (xs: number[] | undefined): number => q(xs ?? [], 0.5);
  for (const fn of args.fns) {
    const a = all.A[fn] ?? [];
    const b = all.B[fn] ?? [];
    rows.push({
      fn, a_p50: r2(q(a, 0.5)), a_p90: r2(q(a, 0.9)), a_p99: r2(q(a, 0.99)), b_p50: r2(q(b, 0.5)), b_p90: r2(q(b, 0.9)), b_p99: r2(q(b, 0.99)), b_over_a_p50: r2(q(b, 0.5) / q(a, 0.5)), n: a.length,
      a_cpu: r2(med(cpu.A[fn])), b_cpu: r2(med(cpu.B[fn])), a_rps: Math.round(med(rps.A[fn])), b_rps: Math.round(med(rps.B[fn])),
    });
  }
  const load1 = fs.readFileSync('/proc/loadavg', 'utf8').split(' ')[0];
  process.stdout.write(`A = ${args.a}\nB = ${args.b}\nrounds ${args.rounds} x ${args.n} invocations per function, c=1, interleaved; --parked ${args.parked}; load average ${load0} -> ${load1}\n\n`);
  process.stdout.write('| function | A p50 ms | A p90 | A p99 | B p50 ms | B p90 | B p99 | B/A p50 | A CPU ms/call | B CPU | A c=24 /s | B c=24 /s |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n');
  for (const r of rows) process.stdout.write(`| ${String(r.fn)} | ${String(r.a_p50)} | ${String(r.a_p90)} | ${String(r.a_p99)} | ${String(r.b_p50)} | ${String(r.b_p90)} | ${String(r.b_p99)} | ${String(r.b_over_a_p50)} | ${String(r.a_cpu)} | ${String(r.b_cpu)} | ${String(r.a_rps)} | ${String(r.b_rps)} |\n`);
  if (args.json) process.stdout.write(JSON.stringify({ rows, load: [load0, load1] }) + '\n');
}

main().catch((e: unknown) => { process.stderr.write(`ab: ${(e as Error).stack ?? String(e)}\n`); process.exit(1); });
