// Page-table prefill (issue 3 item 5): the same Node functions deployed three times, with
// prefill off, 'inherit' (fork copies the seed's file mappings' entries) and 'record'
// (the seed keeps exactly what its first children touched mapped), invoked in
// interleaved rounds in one runtime. Reports the instance's minor faults, fork time,
// invoke latency and the CPU the seeds and their instances spent per invocation. In-process runtime, root required.
// `node dist/bench/prefill.js [--rounds 10] [--per 40] [--json]`
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { SeedClient } from '../runtime/engines/process/seed-client.js';
import { ProcessFunctionRuntime } from '../seeds/runtime.js';
import { detectCgroupLayout } from '../pools/cgroups.js';
import type { PrefillMode } from '../seeds/prefill.js';
import { repoRoot } from '../integration/harness.js';

const MODES: PrefillMode[] = ['off', 'inherit', 'record'];
const FUNCTIONS = ['hello', 'aes'];

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] ?? NaN;
}

/**
 * CPU jiffies spent by a function's seeds and everything they reaped (their instances,
 * exit teardown included): fork is charged to the seed, the rest to its children. Unlike
 * machine-wide counters this leaves out other jobs and the hypervisor's steal time.
 */
function seedJiffies(pids: number[]): number {
  let sum = 0;
  for (const pid of pids) {
    try {
      const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
      sum += Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
    } catch { /* gone */ }
  }
  return sum;
}

export interface PrefillRow { fn: string; mode: PrefillMode; n: number; minfltP50: number; forkP50: number; totalP50: number; totalP99: number; cpuMsPerInvoke: number }

function argNum(args: string[], name: string, dflt: number): number {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) || dflt : dflt;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const rounds = argNum(args, '--rounds', 10);
  const per = argNum(args, '--per', 40);
  // the instances' minor faults arrive in the runtime's debug 'hops' log
  const minflt = new Map<string, number>();
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb): void {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (/"level":(40|50|60)/.test(line)) process.stderr.write(line + '\n');
        if (!line.includes('"hops"')) continue;
        try { const m = JSON.parse(line) as { inst?: string; minflt?: number }; if (m.inst && typeof m.minflt === 'number') minflt.set(m.inst, m.minflt); } catch { /* partial */ }
      }
      cb();
    },
  });
  const dir = mkdtempSync('/tmp/spore-prefill-');
  const l0 = new SeedClient();
  await l0.start();
  const modeOf = (fn: string): PrefillMode => (MODES.find((m) => fn.endsWith(`-${m}`)) ?? 'off');
  // no replica rotation here: a retired replica's whole life would land in one window
  const rt = new ProcessFunctionRuntime({ runDir: dir, layout: detectCgroupLayout(), l0, log: pino({ level: 'debug' }, sink), netnsPoolSize: 8, cgroupPoolSize: 8, prefill: modeOf, replicaPrivateLimitKiB: 1 << 30 });
  const seedPids = (name: string): number[] => rt.listSeeds().filter((x) => x.function === name).map((x) => x.pid);
  const samples = new Map<string, { minflt: number[]; fork: number[]; total: number[]; busy: number; n: number }>();
  try {
    await rt.start();
    for (const fn of FUNCTIONS) {
      const code = readFileSync(join(repoRoot, 'examples', `${fn}.js`), 'utf8');
      for (const mode of MODES) {
        await rt.deploy({ name: `${fn}-${mode}`, language: 'node', code, handler: 'handler', memoryMiB: 128, timeoutMs: 10_000, env: {} });
        samples.set(`${fn}-${mode}`, { minflt: [], fork: [], total: [], busy: 0, n: 0 });
      }
    }
    await new Promise((r) => setTimeout(r, 1000));
    // warm-up: replicas ready, 'record' seeds have recorded
    for (const name of samples.keys()) for (let i = 0; i < 10; i++) await rt.invoke(name, '{}');
    for (let round = 0; round < rounds; round++) {
      for (const [name, s] of samples) {
        const c0 = seedJiffies(seedPids(name));
        for (let i = 0; i < per; i++) {
          const r = await rt.invoke(name, '{"name":"prefill"}');
          if (!r.ok) throw new Error(`${name}: ${r.error?.kind} ${r.error?.message}`);
          s.fork.push(r.timings.fork / 1000);
          s.total.push(r.timings.total / 1000);
          const f = minflt.get(r.instanceId);
          if (f !== undefined) s.minflt.push(f);
        }
        // let the last instance's exit land inside this cell's CPU window
        await new Promise((r) => setTimeout(r, 20));
        s.busy += seedJiffies(seedPids(name)) - c0;
        s.n += per;
      }
    }
  } finally {
    await rt.stop();
    await l0.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  const tick = 1000 / 100; // USER_HZ
  const rows: PrefillRow[] = [...samples].map(([name, s]) => ({
    fn: name.slice(0, name.lastIndexOf('-')), mode: modeOf(name), n: s.n,
    minfltP50: pct(s.minflt, 50), forkP50: pct(s.fork, 50), totalP50: pct(s.total, 50), totalP99: pct(s.total, 99),
    cpuMsPerInvoke: (s.busy * tick) / Math.max(1, s.n),
  }));
  const lines = [
    `## Page-table prefill, Node, concurrency 1, ${rounds} interleaved rounds of ${per} — ${new Date().toISOString()}`,
    '',
    '| function | prefill | n | minor faults p50 | fork p50 ms | invoke p50 ms | invoke p99 ms | seed + instance CPU ms / invoke |',
    '|---|---|---:|---:|---:|---:|---:|---:|',
    ...rows.map((r) => `| ${r.fn} | ${r.mode} | ${r.n} | ${r.minfltP50} | ${r.forkP50.toFixed(2)} | ${r.totalP50.toFixed(2)} | ${r.totalP99.toFixed(2)} | ${r.cpuMsPerInvoke.toFixed(2)} |`),
  ];
  process.stdout.write(lines.join('\n') + '\n');
  if (args.includes('--json')) process.stdout.write(JSON.stringify(rows) + '\n');
}

main().catch((e: unknown) => {
  process.stderr.write(`prefill bench failed: ${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
