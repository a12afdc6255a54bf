// Overload bench: how spored answers more concurrent callers than a function may run, at the
// default limits (--function-concurrency 32, --function-queue 32, --max-instances 256) unless
// told otherwise. The load test's twin (integration/overload.test.ts) with bigger numbers and a
// printed distribution instead of assertions.
//
//   node dist/bench/overload.js [--clients 200] [--rounds 5] [--concurrency N] [--queue N]
//                               [--function hello|echo|...] [--language node|python] [--json]
//   (also: bin/spore bench overload ...)
//
// It starts its own spored (temp run dir, free gateway port, log in the temp dir), deploys
// examples/<function>.<js|py>, opens --clients keep-alive connections, then runs --rounds rounds
// of --clients simultaneous POST /invoke/<function> (a barrier between rounds) and prints: the
// count of each status, latency percentiles of the 200s and of the 429s, a latency histogram,
// Retry-After values seen, and spored's own counters from GET /metrics. Everything it starts is
// stopped at the end (also on SIGINT/SIGTERM).
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = (() => {
  let d = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
  if (path.basename(d) === 'dist') d = path.dirname(d);
  return d;
})();

interface Args { clients: number; rounds: number; concurrency: number | null; queue: number | null; fn: string; language: 'node' | 'python'; json: boolean }

function parse(argv: string[]): Args {
  const a: Args = { clients: 200, rounds: 5, concurrency: null, queue: null, fn: 'hello', language: 'node', json: false };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const v = (): string => {
      const x = argv[++i];
      if (x === undefined) throw new Error(`${k} needs a value`);
      return x;
    };
    const n = (): number => {
      const x = Number(v());
      if (!Number.isInteger(x) || x <= 0) throw new Error(`${k} must be a positive integer`);
      return x;
    };
    if (k === '--clients') a.clients = n();
    else if (k === '--rounds') a.rounds = n();
    else if (k === '--concurrency') a.concurrency = n();
    else if (k === '--queue') a.queue = Number(v());
    else if (k === '--function') a.fn = v();
    else if (k === '--language') { const l = v(); if (l !== 'node' && l !== 'python') throw new Error('--language node|python'); a.language = l; }
    else if (k === '--json') a.json = true;
    else if (k === '--help' || k === '-h') {
      process.stdout.write('usage: node dist/bench/overload.js [--clients 200] [--rounds 5] [--concurrency N] [--queue N] [--function hello] [--language node|python] [--json]\n');
      process.exit(0);
    } else throw new Error(`unknown argument ${k}`);
  }
  return a;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => { const p = (s.address() as net.AddressInfo).port; s.close(() => resolve(p)); });
    s.on('error', reject);
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Reply { status: number; ms: number; retryAfter: string | null }

function post(agent: http.Agent, port: number, p: string, body: string): Promise<Reply> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: p, agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, ms: performance.now() - t0, retryAfter: (res.headers['retry-after'] as string | undefined) ?? null }));
    });
    req.setTimeout(30_000, () => req.destroy(new Error('timeout')));
    req.on('error', () => resolve({ status: 0, ms: performance.now() - t0, retryAfter: null }));
    req.end(body);
  });
}

function pct(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] as number;
}

const BUCKETS = [5, 10, 25, 50, 100, 250, 500, 1000, 2000, 5000, Infinity];

function histogram(ms: number[]): string {
  if (ms.length === 0) return '  (none)\n';
  const counts = BUCKETS.map(() => 0);
  for (const v of ms) counts[BUCKETS.findIndex((b) => v <= b)]! += 1;
  const max = Math.max(...counts);
  let out = '';
  let lo = 0;
  BUCKETS.forEach((b, i) => {
    const label = `${lo}–${b === Infinity ? '∞' : b} ms`;
    lo = b;
    if (counts[i] === 0) return;
    out += `  ${label.padStart(14)}  ${String(counts[i]).padStart(6)}  ${'#'.repeat(Math.max(1, Math.round(((counts[i] ?? 0) / max) * 40)))}\n`;
  });
  return out;
}

function summary(ms: number[]): Record<string, number> {
  const s = [...ms].sort((a, b) => a - b);
  const r = (x: number): number => Math.round(x * 10) / 10;
  return { n: s.length, p50: r(pct(s, 50)), p90: r(pct(s, 90)), p99: r(pct(s, 99)), max: r(s.at(-1) ?? NaN) };
}

async function main(): Promise<void> {
  const args = parse(process.argv.slice(2));
  if (process.getuid?.() !== 0) throw new Error('needs root (spored: cgroups, namespaces)');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spore-bench-overload-'));
  const port = await freePort();
  const flags = ['--run-dir', dir, '--gateway', `127.0.0.1:${port}`, '--log', path.join(dir, 'spored.log')];
  if (args.concurrency !== null) flags.push('--function-concurrency', String(args.concurrency));
  if (args.queue !== null) flags.push('--function-queue', String(args.queue));
  const spored: ChildProcess = spawn(path.join(repoRoot, 'bin', 'spored'), flags, { stdio: 'ignore', detached: true });
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    if (spored.exitCode === null) {
      spored.kill('SIGTERM');
      await Promise.race([new Promise((r) => spored.once('exit', r)), sleep(20_000)]);
      if (spored.exitCode === null) spored.kill('SIGKILL');
    }
    fs.rmSync(dir, { recursive: true, force: true });
  };
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => { void stop().finally(() => process.exit(130)); });
  try {
    const base = `http://127.0.0.1:${port}`;
    const deadline = Date.now() + 60_000;
    for (;;) {
      const ok = await fetch(`${base}/healthz`).then((r) => r.status === 200, () => false);
      if (ok) break;
      if (Date.now() > deadline || spored.exitCode !== null) throw new Error(`spored did not become healthy; see ${path.join(dir, 'spored.log')}`);
      await sleep(100);
    }
    const file = path.join(repoRoot, 'examples', `${args.fn}.${args.language === 'node' ? 'js' : 'py'}`);
    const { FriClient } = await import('../protocols/fri/client.js');
    const client = await FriClient.connect(path.join(dir, 'fri.sock'));
    await client.deploy({ name: args.fn, language: args.language, code: fs.readFileSync(file, 'utf8'), handler: 'handler', memoryMiB: 128, timeoutMs: 10_000, env: {} });
    client.close();

    const agent = new http.Agent({ keepAlive: true, maxSockets: args.clients });
    const body = '{"name":"bench"}';
    // open the connections and warm the replicas (not counted)
    for (let i = 0; i < args.clients; i += 8) await Promise.all(Array.from({ length: Math.min(8, args.clients - i) }, () => post(agent, port, `/invoke/${args.fn}`, body)));
    const replies: Reply[] = [];
    const t0 = performance.now();
    for (let round = 0; round < args.rounds; round++) {
      replies.push(...await Promise.all(Array.from({ length: args.clients }, () => post(agent, port, `/invoke/${args.fn}`, body))));
    }
    const wallMs = performance.now() - t0;
    agent.destroy();
    const metrics = await fetch(`${base}/metrics`).then((r) => r.text());

    const byStatus = new Map<number, number>();
    for (const r of replies) byStatus.set(r.status, (byStatus.get(r.status) ?? 0) + 1);
    const ok = replies.filter((r) => r.status === 200).map((r) => r.ms);
    const busy = replies.filter((r) => r.status === 429).map((r) => r.ms);
    const retryAfter = [...new Set(replies.filter((r) => r.retryAfter !== null).map((r) => r.retryAfter))];
    const counters = metrics.split('\n').filter((l) => /^spore_invocations_total\{|^spore_gateway_requests_total\{route="invoke"/.test(l));
    const limits = `concurrency ${args.concurrency ?? '32 (default)'}, queue ${args.queue ?? '32 (default)'}, max instances 256 (default)`;

    let out = `# overload: ${args.language} ${args.fn}, ${args.clients} clients x ${args.rounds} rounds, ${limits}\n`;
    out += `${os.cpus().length} CPUs, load average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}; ${replies.length} requests in ${(wallMs / 1000).toFixed(2)} s\n\n`;
    out += `status counts: ${[...byStatus].sort((a, b) => a[0] - b[0]).map(([s, n]) => `${s === 0 ? 'no answer' : s}: ${n}`).join(', ')}\n`;
    out += `Retry-After seen: ${retryAfter.join(', ') || '-'}\n\n`;
    out += '| answer | n | p50 ms | p90 ms | p99 ms | max ms |\n|---|---:|---:|---:|---:|---:|\n';
    for (const [label, ms] of [['200', ok], ['429', busy]] as const) {
      const s = summary(ms);
      out += `| ${label} | ${s.n} | ${s.p50} | ${s.p90} | ${s.p99} | ${s.max} |\n`;
    }
    out += `\n200 latency:\n${histogram(ok)}\n429 latency:\n${histogram(busy)}\nspored's counters (GET /metrics):\n${counters.map((l) => `  ${l}`).join('\n')}\n`;
    process.stdout.write(out);
    if (args.json) {
      process.stdout.write(JSON.stringify({
        clients: args.clients, rounds: args.rounds, statuses: Object.fromEntries(byStatus), ok: summary(ok), rejected: summary(busy),
        p99OverP50: Math.round((pct([...ok].sort((a, b) => a - b), 99) / pct([...ok].sort((a, b) => a - b), 50)) * 100) / 100,
        wallMs: Math.round(wallMs),
      }) + '\n');
    }
  } finally {
    await stop();
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`overload: ${(e as Error)?.message ?? String(e)}\n`);
  process.exitCode = 1;
});
