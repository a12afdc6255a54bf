// Namespace sharing (issue 3 item 4, the paper's "resource contention"): instances of one
// function share the IPC and mount namespaces their L2 seed created once, versus creating
// fresh ones per instance. Measures fork + bind (namespace work happens in bind) and the
// whole invocation at concurrency 1 and 24, for Node and Python. Runs the function runtime
// in-process (no gRPC), root required. `node dist/bench/namespaces.js [--n 200] [--json]`
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { SeedClient } from '../runtime/engines/process/seed-client.js';
import { ProcessFunctionRuntime } from '../seeds/runtime.js';
import { detectCgroupLayout } from '../pools/cgroups.js';
import type { InvokeResult } from '../runtime/fri/types.js';
import { repoRoot } from '../integration/harness.js';

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] ?? NaN;
}

interface Row { language: string; namespaces: 'shared' | 'fresh'; concurrency: number; n: number; forkBindP50: number; forkBindP99: number; totalP50: number; totalP99: number; wallMs: number }

async function run(rt: ProcessFunctionRuntime, fn: string, fresh: boolean, c: number, n: number): Promise<{ rs: InvokeResult[]; wallMs: number }> {
  const rs: InvokeResult[] = [];
  let next = 0;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: c }, async () => {
    while (next < n) {
      next++;
      const r = await rt.invoke(fn, '{}', { freshNamespaces: fresh });
      if (!r.ok) throw new Error(`${fn}: ${r.error?.kind} ${r.error?.message}`);
      rs.push(r);
    }
  }));
  return { rs, wallMs: performance.now() - t0 };
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const n = Number(args[args.indexOf('--n') + 1] ?? 0) || 200;
  const dir = mkdtempSync('/tmp/spore-nsbench-');
  const l0 = new SeedClient();
  await l0.start();
  const rt = new ProcessFunctionRuntime({ runDir: dir, layout: detectCgroupLayout(), l0, log: pino({ level: 'warn' }), netnsPoolSize: 32, cgroupPoolSize: 32 });
  const rows: Row[] = [];
  try {
    await rt.start();
    const ex = join(repoRoot, 'examples');
    await rt.deploy({ name: 'hello', language: 'node', code: readFileSync(join(ex, 'hello.js'), 'utf8'), handler: 'handler', memoryMiB: 128, timeoutMs: 10_000, env: {} });
    await rt.deploy({ name: 'hello-py', language: 'python', code: readFileSync(join(ex, 'hello.py'), 'utf8'), handler: 'handler', memoryMiB: 128, timeoutMs: 10_000, env: {} });
    await new Promise((r) => setTimeout(r, 500));
    for (const [language, fn] of [['node', 'hello'], ['python', 'hello-py']] as const) {
      await run(rt, fn, false, 4, 40); // warm-up
      for (const c of [1, 24]) {
        for (const fresh of [false, true]) {
          const { rs, wallMs } = await run(rt, fn, fresh, c, n);
          const fb = rs.map((r) => (r.timings.fork + r.timings.bind) / 1000);
          const tot = rs.map((r) => r.timings.total / 1000);
          rows.push({ language, namespaces: fresh ? 'fresh' : 'shared', concurrency: c, n: rs.length, forkBindP50: pct(fb, 50), forkBindP99: pct(fb, 99), totalP50: pct(tot, 50), totalP99: pct(tot, 99), wallMs });
        }
      }
    }
  } finally {
    await rt.stop();
    await l0.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  const lines = [
    `## Namespace sharing: shared lineage (IPC + mount created once by the L2 seed) vs fresh per instance — ${new Date().toISOString()}`,
    '',
    '| language | namespaces | concurrency | n | fork+bind p50 ms | fork+bind p99 ms | invoke p50 ms | invoke p99 ms | throughput /s |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|',
    ...rows.map((r) => `| ${r.language} | ${r.namespaces} | ${r.concurrency} | ${r.n} | ${r.forkBindP50.toFixed(2)} | ${r.forkBindP99.toFixed(2)} | ${r.totalP50.toFixed(2)} | ${r.totalP99.toFixed(2)} | ${((r.n / r.wallMs) * 1000).toFixed(0)} |`),
  ];
  process.stdout.write(lines.join('\n') + '\n');
  if (args.includes('--json')) process.stdout.write(JSON.stringify(rows) + '\n');
}

main().catch((e: unknown) => {
  process.stderr.write(`namespaces bench failed: ${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
