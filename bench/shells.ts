// Container shells, A/B: `ctr run --rm <busybox> /bin/true` through spore with the root seed's
// pre-forked container shells (engines/process/shells.ts) on and off, and through runc, in one
// run on this machine, interleaved (each round runs every row once, in a rotating order).
// Two private containerds (integration/harness.ts), each with its own spored: one with
// SPORE_CONTAINER_SHELLS=N (default 2), one with 0; runc runs through the first. Also, from
// spored's log: Create + Start RPC time per container (spore's own share of the wall time)
// and how many Creates a shell served.
//
// With --against DIR, the second spored is another built checkout of spore (its bin/ first on
// containerd's PATH) with the same shells: an A/B of two versions' container path.
//
//   npm run build && node dist/bench/shells.js [--runs 40] [--shells 2] [--warmup 3] [--out FILE.md] [--against DIR]
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { startContainerd, rootfs, type Containerd } from '../integration/harness.js';
import { benchArgs } from './args.js';

const flags = benchArgs(process.argv.slice(2), 'usage: node dist/bench/shells.js [--runs 40] [--shells 2] [--warmup 3] [--out FILE.md]   (root)', {
  runs: { type: 'number', default: 40, help: 'rounds (each runs every row once)' },
  warmup: { type: 'number', default: 3, help: 'rounds not counted' },
  shells: { type: 'number', default: 2, help: 'SPORE_CONTAINER_SHELLS of the spored with shells' },
  out: { type: 'string', default: '', help: 'also write the table to FILE.md' },
  against: { type: 'string', default: '', help: 'a built spore checkout to compare with (same shells) instead of shells=0' },
});
const AGAINST = flags.against ?? '';
const RUNS = flags.runs;
const WARMUP = flags.warmup;
const SHELLS = flags.shells;
const OUT = flags.out ?? '';

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] ?? NaN;
}
const f2 = (x: number): string => (Number.isFinite(x) ? x.toFixed(2) : '-');

/** 95 % bootstrap interval of p50(a) - p50(b) (2000 resamples, a fixed seed: the same data gives the same interval). */
function medianDiffCI(a: number[], b: number[]): [number, number] {
  let x = 0x2545f491;
  const rnd = (n: number): number => { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; return (x >>> 0) % n; };
  const draw = (xs: number[]): number[] => xs.map(() => xs[rnd(xs.length)] as number);
  const d: number[] = [];
  for (let i = 0; i < 2000; i++) d.push(pct(draw(a), 50) - pct(draw(b), 50));
  return [pct(d, 2.5), pct(d, 97.5)];
}
const say = (m: string): void => { process.stderr.write(`[shells] ${m}\n`); };

interface Row { name: string; c: Containerd; runtime: string[]; prefix: string; wall: number[] }

async function once(r: Row, id: string, image: string): Promise<number> {
  const t0 = performance.now();
  const res = await r.c.ctr(['run', '--rm', ...r.runtime, '--fifo-dir', `${r.c.dir}/fifo`, '--rootfs', image, id, '/bin/true'], { timeoutMs: 60_000 });
  const ms = performance.now() - t0;
  if (res.code !== 0) throw new Error(`ctr run ${id} (${r.name}) exited ${res.code}: ${res.stderr.trim()}`);
  return ms;
}

/** Create/Start RPC ms and whether a shell served the Create, per container id, from a spored log. */
interface LogEntry { create?: number; start?: number; shell?: boolean; phases?: Record<string, number> }
function fromLog(path: string): Map<string, LogEntry> {
  const out = new Map<string, LogEntry>();
  let text = '';
  try { text = readFileSync(path, 'utf8'); } catch { return out; }
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    let j: { msg?: string; method?: string; id?: string; ms?: number; phases?: Record<string, unknown> & { seed?: Record<string, number> } };
    try { j = JSON.parse(line) as typeof j; } catch { continue; }
    if (!j.id) continue;
    const e = out.get(j.id) ?? {};
    if (j.msg === 'rpc' && j.method === 'Create') e.create = j.ms;
    else if (j.msg === 'rpc' && j.method === 'Start') e.start = j.ms;
    else if (j.msg === 'created') {
      e.shell = j.phases?.seed?.shell === 1;
      // spored's phases (ms since Create began) and the seed's (fork, then the child's marks)
      const ph: Record<string, number> = {};
      for (const [k, v] of Object.entries(j.phases ?? {})) if (typeof v === 'number') ph[k] = v;
      for (const [k, v] of Object.entries(j.phases?.seed ?? {})) if (typeof v === 'number') ph[`seed.${k}`] = v;
      e.phases = ph;
    }
    out.set(j.id, e);
  }
  return out;
}

/** Private memory of the idle shells of a root seed (children of it that are not containers): KiB each. */
function shellMemory(seedPid: number): number[] {
  const kids = readFileSync(`/proc/${seedPid}/task/${seedPid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  const out: number[] = [];
  for (const k of kids) {
    try {
      if (!readFileSync(`/proc/${k}/cmdline`, 'utf8').startsWith('spore-init')) continue;
      const m = readFileSync(`/proc/${k}/smaps_rollup`, 'utf8');
      const kb = (f: string): number => Number(new RegExp(`^${f}:\\s+(\\d+)`, 'm').exec(m)?.[1] ?? 0);
      out.push(kb('Private_Dirty') + kb('Private_Clean'));
    } catch { /* gone */ }
  }
  return out;
}

function rootSeedOf(c: Containerd): number {
  const r = spawnSync('pgrep', ['-f', `seed-main.js --socket ${c.runDir}/`], { encoding: 'utf8' });
  const pids = r.stdout.trim().split('\n').filter(Boolean).map(Number);
  // the seed is the one whose parent is not another seed-main (shells are its children)
  return pids.find((p) => !pids.includes(Number(readFileSync(`/proc/${p}/stat`, 'utf8').split(') ')[1]?.split(' ')[1]))) ?? 0;
}

async function main(): Promise<void> {
  const image = rootfs('busybox');
  const load0 = loadavg();
  say(`two private containerds: shells=${SHELLS} and ${AGAINST ? `${AGAINST} (shells=${SHELLS})` : 'shells=0'} (function runtime off in both)`);
  const on = await startContainerd({ extraEnv: { SPORE_CONTAINER_SHELLS: String(SHELLS), SPORE_FRI: 'off', SPORE_GATEWAY: 'off' } });
  const off = AGAINST
    ? await startContainerd({ extraEnv: { SPORE_CONTAINER_SHELLS: String(SHELLS), SPORE_FRI: 'off', SPORE_GATEWAY: 'off', PATH: `${AGAINST}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin` } })
    : await startContainerd({ extraEnv: { SPORE_CONTAINER_SHELLS: '0', SPORE_FRI: 'off', SPORE_GATEWAY: 'off' } });
  const spore = ['--runtime', 'io.containerd.spore.v2'];
  const rows: Row[] = [
    { name: `spore, shells=${SHELLS}`, c: on, runtime: spore, prefix: 'son', wall: [] },
    { name: AGAINST ? `spore at ${AGAINST}` : 'spore, shells=0', c: off, runtime: spore, prefix: 'sof', wall: [] },
    { name: 'runc', c: on, runtime: [], prefix: 'rc', wall: [] },
  ];
  try {
    for (let i = 0; i < WARMUP; i++) for (const r of rows) await once(r, `${r.prefix}-w${i}`, image);
    say(`${RUNS} rounds, rows in rotating order`);
    for (let i = 0; i < RUNS; i++) {
      for (let k = 0; k < rows.length; k++) {
        const r = rows[(i + k) % rows.length] as Row;
        r.wall.push(await once(r, `${r.prefix}-m${i}`, image));
      }
      if ((i + 1) % 10 === 0) say(`round ${i + 1}/${RUNS}`);
    }
    const seedOn = rootSeedOf(on);
    const mem = seedOn ? shellMemory(seedOn) : [];
    const load1 = loadavg();
    const runc = rows[2] as Row;
    const lines: string[] = [];
    const rpcOf = (r: Row): number[] => {
      const log = fromLog(r.c.sporeLog);
      const out: number[] = [];
      for (let i = 0; i < RUNS; i++) {
        const e = log.get(`${r.prefix}-m${i}`);
        if (e?.create !== undefined && e.start !== undefined) out.push(e.create + e.start);
      }
      return out;
    };
    lines.push(`## Container shells A/B: \`ctr run --rm\` busybox /bin/true, wall ms (${RUNS} interleaved rounds after ${WARMUP} warm-ups)`);
    lines.push('');
    lines.push(`${new Date().toISOString()} · ${cpus().length} CPUs · load average ${load0.map(f2).join(' ')} → ${load1.map(f2).join(' ')}`);
    lines.push('');
    lines.push('| how | n | p50 | p90 | p99 | p50 ÷ runc | p99 ÷ runc | Create+Start RPC p50 | RPC share of wall (p50) | Creates served by a shell |');
    lines.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
    for (const r of rows) {
      const log = r.runtime.length ? fromLog(r.c.sporeLog) : new Map();
      const rpc: number[] = [];
      let served = 0, measured = 0;
      for (let i = 0; i < RUNS; i++) {
        const e = log.get(`${r.prefix}-m${i}`);
        if (!e) continue;
        measured++;
        if (e.shell) served++;
        if (e.create !== undefined && e.start !== undefined) rpc.push(e.create + e.start);
      }
      const p50 = pct(r.wall, 50);
      lines.push(`| ${r.name} | ${r.wall.length} | ${f2(p50)} | ${f2(pct(r.wall, 90))} | ${f2(pct(r.wall, 99))} | ${r === runc ? 'baseline' : f2(p50 / pct(runc.wall, 50))} | ${r === runc ? 'baseline' : f2(pct(r.wall, 99) / pct(runc.wall, 99))} | ${rpc.length ? f2(pct(rpc, 50)) : '-'} | ${rpc.length ? `${((pct(rpc, 50) / p50) * 100).toFixed(0)} %` : '-'} | ${r.runtime.length ? `${served} of ${measured}` : '-'} |`);
    }
    lines.push('');
    const [son, sof] = rows as [Row, Row, Row];
    const [wlo, whi] = medianDiffCI(son.wall, sof.wall);
    const [rlo, rhi] = medianDiffCI(rpcOf(son), rpcOf(sof));
    lines.push(`${AGAINST ? `This checkout − ${AGAINST}` : 'Shells on − off'}, p50 (95 % bootstrap interval): wall ${f2(pct(son.wall, 50) - pct(sof.wall, 50))} ms [${f2(wlo)}, ${f2(whi)}]; Create+Start RPC ${f2(pct(rpcOf(son), 50) - pct(rpcOf(sof), 50))} ms [${f2(rlo)}, ${f2(rhi)}].`);
    lines.push('');
    // where a Create's time goes (p50 of each mark; spored's are ms since Create began, the
    // child's ms since it started its set-up, the seed's fork/handoff and readyMs its own)
    const spores = rows.filter((r) => r.runtime.length);
    const phaseOf = (r: Row): Map<string, number[]> => {
      const m = new Map<string, number[]>();
      const log = fromLog(r.c.sporeLog);
      for (let i = 0; i < RUNS; i++) {
        const e = log.get(`${r.prefix}-m${i}`);
        // (the RPCs' own times first: Start is not in Create's phases)
        const rpcs: Record<string, number> = { ...(e?.create !== undefined ? { 'rpc Create': e.create } : {}), ...(e?.start !== undefined ? { 'rpc Start': e.start } : {}) };
        for (const [k, v] of Object.entries({ ...rpcs, ...(e?.phases ?? {}) })) m.set(k, [...(m.get(k) ?? []), v]);
      }
      return m;
    };
    const phases = spores.map(phaseOf);
    const keys = [...new Set(phases.flatMap((m) => [...m.keys()]))].filter((k) => k !== 'seed.shell');
    lines.push(`| Create phase (p50 ms) | ${spores.map((r) => r.name).join(' | ')} |`);
    lines.push(`|---|${spores.map(() => '---:').join('|')}|`);
    for (const k of keys) lines.push(`| ${k} | ${phases.map((m) => f2(pct(m.get(k) ?? [], 50))).join(' | ')} |`);
    lines.push('');
    if (mem.length) lines.push(`Idle shells after the run: ${mem.length}, private memory ${mem.map((k) => `${k} KiB`).join(', ')} (smaps_rollup Private_*).`);
    const text = `${lines.join('\n')}\n`;
    process.stdout.write(text);
    if (OUT) writeFileSync(OUT, text);
  } finally {
    await on.stop();
    await off.stop();
  }
}

main().catch((e: unknown) => { process.stderr.write(`${(e as Error).stack ?? String(e)}\n`); process.exit(1); });
