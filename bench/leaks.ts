// Leak soak (issue 3 item 4): N invocations (default 10,000, alternating Node and Python,
// concurrency 8, a failing and a timing-out one mixed in) through the in-process function
// runtime, then a census of what could leak: seed children, pooled cgroups and netns,
// instance records, the daemon's fds and its memory. Exit code 1 when anything leaked.
// `node dist/bench/leaks.js [--n 10000] [--json]` (root).
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { SeedClient } from '../engines/process/seed-client.js';
import { ProcessFunctionRuntime } from '../functions/runtime.js';
import { detectCgroupLayout } from '../pools/cgroups.js';
import { repoRoot } from '../integration/harness.js';

function childrenOf(pids: Set<number>): number {
  let n = 0;
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d) || pids.has(Number(d))) continue;
    try {
      const ppid = Number(/^PPid:\s+(\d+)/m.exec(readFileSync(`/proc/${d}/status`, 'utf8'))?.[1]);
      if (pids.has(ppid)) n++;
    } catch { /* gone */ }
  }
  return n;
}

const rssKiB = (): number => Math.round(process.memoryUsage().rss / 1024);
const heapKiB = (): number => Math.round(process.memoryUsage().heapUsed / 1024);

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const n = Number(args[args.indexOf('--n') + 1] ?? 0) || 10_000;
  const dir = mkdtempSync('/tmp/spore-leaks-');
  const l0 = new SeedClient();
  await l0.start();
  const rt = new ProcessFunctionRuntime({ runDir: dir, layout: detectCgroupLayout(), l0, log: pino({ level: 'error' }), stateDir: join(dir, 'state'), cgroupPoolSize: 16 });
  const ex = join(repoRoot, 'examples');
  let ok = 0;
  let failed = 0;
  const t0 = performance.now();
  const report: Record<string, unknown> = {};
  try {
    await rt.start();
    await rt.deploy({ name: 'hello', language: 'node', code: readFileSync(join(ex, 'hello.js'), 'utf8'), handler: 'handler', memoryMiB: 128, timeoutMs: 10_000, env: {} });
    await rt.deploy({ name: 'hello-py', language: 'python', code: readFileSync(join(ex, 'hello.py'), 'utf8'), handler: 'handler', memoryMiB: 128, timeoutMs: 10_000, env: {} });
    await rt.deploy({ name: 'thrower', language: 'node', code: 'module.exports.handler = async () => { throw new Error("x"); };', handler: 'handler', memoryMiB: 128, timeoutMs: 10_000, env: {} });
    await rt.deploy({ name: 'sleeper', language: 'python', code: 'import time\ndef handler(e, c):\n    time.sleep(1)\n', handler: 'handler', memoryMiB: 128, timeoutMs: 50, env: {} });
    await new Promise((r) => setTimeout(r, 500));
    // warm up, then take the baseline the census is compared with
    for (let i = 0; i < 200; i++) await rt.invoke(i % 2 ? 'hello' : 'hello-py', '{}');
    const fds0 = readdirSync('/proc/self/fd').length;
    global.gc?.();
    const rss0 = rssKiB();
    const heap0 = heapKiB();
    let next = 0;
    await Promise.all(Array.from({ length: 8 }, async () => {
      while (next < n) {
        const i = next++;
        const fn = i % 1000 === 7 ? 'thrower' : i % 1000 === 500 ? 'sleeper' : i % 2 ? 'hello' : 'hello-py';
        const r = await rt.invoke(fn, JSON.stringify({ i }));
        if (r.ok) ok++; else failed++;
        if (i % 2000 === 0) process.stderr.write(`[leaks] ${i}/${n}\n`);
      }
    }));
    await new Promise((r) => setTimeout(r, 1000)); // exits after the last responses
    global.gc?.();
    const pools = rt.pools() as { cgroups: { free: number; target: number; inUse: number }; functions: Record<string, { inUse: number; waiting: number }> };
    const seedPids = new Set(rt.listSeeds().map((s) => s.pid).filter((p) => p > 0));
    Object.assign(report, {
      invocations: n, ok, failed, seconds: Math.round((performance.now() - t0) / 100) / 10,
      instancesLeft: rt.listInstances().length,
      // children of seeds that are not seeds themselves: live instances
      strayChildren: childrenOf(seedPids),
      cgroupsInUse: pools.cgroups.inUse, tmpSlotsInUse: Object.values(pools.functions).reduce((a, f) => a + f.inUse, 0),
      fdsBefore: fds0, fdsAfter: readdirSync('/proc/self/fd').length,
      rssKiBBefore: rss0, rssKiBAfter: rssKiB(), heapKiBBefore: heap0, heapKiBAfter: heapKiB(),
    });
  } finally {
    await rt.stop();
    await l0.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  const leaked = report.instancesLeft !== 0 || (report.strayChildren as number) > 0 || report.cgroupsInUse !== 0 || report.resultSlotsInUse !== 0
    || (report.fdsAfter as number) > (report.fdsBefore as number) + 2;
  process.stdout.write(`${Object.entries(report).map(([k, v]) => `${k}: ${v}`).join('\n')}\nleaks: ${leaked ? 'FOUND' : 'none'}\n`);
  if (args.includes('--json')) process.stdout.write(JSON.stringify({ ...report, leaked }) + '\n');
  process.exit(leaked ? 1 : 0);
}

main().catch((e: unknown) => {
  process.stderr.write(`leak soak failed: ${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
