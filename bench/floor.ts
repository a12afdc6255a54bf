// The machine's floors (issue 13, item 5), measured in the same run as the bench that prints
// them, so that results are read as ratios to what this machine can do at all:
//   fork floor      fork + _exit + waitpid of a Python process with 48 MiB touched (p50, p99 of
//                   200) and its CPU time per fork (parent + children, getrusage)
//   idle forks      the same for an idle Python and an idle Node process (Node: prepareFork()
//                   first, as the seeds do)
//   throughput      24 forkers (children of the 48 MiB process, its pages shared copy-on-write)
//                   each running fork + _exit + waitpid in a loop at once: forks/s, per-fork
//                   latency p50/p99 under that concurrency, CPU per fork
//   spawn           posix_spawn + waitpid of /bin/true and of `node -e 0` (p50)
//   cgroup move     one write of a pid into a new cgroup's cgroup.procs (what every container
//                   start pays, runc's and spore's alike: an RCU grace period unless the host
//                   mounts a cgroup hierarchy with favordynmods)
//   load average    /proc/loadavg before and after
// bench/fork-floor.py and bench/fork-floor.ts do the forking; this module runs them.
//
//   node dist/bench/floor.js [--json] [--quick]
//
// measureFloor() returns plain data; formatFloor() renders it as markdown for other benches.
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseMountinfo } from '../pools/cgroup-layout.js';
import { favorDynmodsPlan } from '../pools/favordynmods.js';

const here = path.dirname(fileURLToPath(import.meta.url));
/** the repository, also when this file runs compiled from dist/bench */
const repoRoot = path.basename(path.dirname(here)) === 'dist' ? path.dirname(path.dirname(here)) : path.dirname(here);

export interface Latency {
  n: number;
  p50: number;
  p99: number;
}
export interface ForkFloorRow extends Latency {
  /** CPU time (user + system) of the forking process and its children per fork, ms */
  cpuMs: number;
}
export interface LoadAvg {
  one: number;
  five: number;
  fifteen: number;
  /** the /proc/loadavg line */
  raw: string;
  /** CPU pressure (PSI, /proc/pressure/cpu "some avg10"): % of the last 10 s some task waited for a CPU; NaN without PSI */
  cpuPressure: number;
}
export interface Floor {
  at: string;
  host: { cpus: number; memGiB: number; kernel: string; node: string; python: string };
  /** the fork floor: Python with touchMb MiB touched */
  fork: ForkFloorRow & { touchMb: number };
  idlePython: ForkFloorRow;
  idleNode: ForkFloorRow;
  throughput: { forkers: number; seconds: number; forks: number; forksPerS: number; p50: number; p99: number; cpuMs: number; touchMb: number };
  spawnTrue: Latency;
  nodeE0: Latency;
  /** cgroup.procs write of a sleeping child into a new cgroup, 50 ms apart; a string: why skipped */
  cgroupMove: (Latency & { dir: string; favordynmods: boolean }) | string;
  loadBefore: LoadAvg;
  loadAfter: LoadAvg;
  elapsedS: number;
}
export interface FloorOptions {
  /** forks per sequential row (default 200) */
  forks?: number;
  /** MiB touched by the fork-floor process (default 48) */
  touchMb?: number;
  /** concurrent forkers (default 24) */
  forkers?: number;
  /** seconds of the throughput run (default 5) */
  seconds?: number;
  /** posix_spawn runs of /bin/true (default 100) */
  spawnRuns?: number;
  /** runs of `node -e 0` (default 20) */
  nodeRuns?: number;
  /** cgroup moves (default 20) */
  cgroupMoves?: number;
}

/** nearest-rank percentile */
export function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

export function loadAvg(): LoadAvg {
  const raw = fs.readFileSync('/proc/loadavg', 'utf8').trim();
  const [one, five, fifteen] = raw.split(/\s+/).map(Number);
  let cpuPressure = NaN;
  try {
    cpuPressure = Number(/^some avg10=([\d.]+)/m.exec(fs.readFileSync('/proc/pressure/cpu', 'utf8'))?.[1] ?? NaN);
  } catch {
    /* kernel without PSI */
  }
  return { one: one ?? NaN, five: five ?? NaN, fifteen: fifteen ?? NaN, raw, cpuPressure };
}

function run(cmd: string, args: string[], timeoutMs = 120_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(' ')}: ${err.message}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

const PY = path.join(repoRoot, 'bench', 'fork-floor.py');
const NODE_FLOOR = path.join(repoRoot, 'dist', 'bench', 'fork-floor.js');

/** just the fork floor row (Python, touchMb MiB touched), e.g. to re-check it at the end of a bench */
export async function measureForkFloor(forks = 200, touchMb = 48): Promise<ForkFloorRow & { touchMb: number }> {
  return { ...(await forkRow('python3', [PY, String(forks), '--touch-mb', String(touchMb)])), touchMb };
}

/**
 * The fork floor's throughput: `forkers` processes sharing `touchMb` MiB copy-on-write, each
 * running fork + _exit + waitpid in a loop for `seconds` s (bench/fork-floor.py --forkers).
 * Also on its own, e.g. between a soak's windows, so each window has the floor of its minutes.
 */
export async function measureForkThroughput(forkers = 24, seconds = 5, touchMb = 48): Promise<Floor['throughput']> {
  const tp = JSON.parse(await run('python3', [PY, '--forkers', String(forkers), '--seconds', String(seconds), '--touch-mb', String(touchMb)])) as {
    forkers: number; seconds: number; forks: number; forks_per_s: number; p50_ms: number; p99_ms: number; cpu_ms_per_fork: number;
  };
  return { forkers: tp.forkers, seconds: tp.seconds, forks: tp.forks, forksPerS: tp.forks_per_s, p50: tp.p50_ms, p99: tp.p99_ms, cpuMs: tp.cpu_ms_per_fork, touchMb };
}

async function forkRow(cmd: string, args: string[]): Promise<ForkFloorRow> {
  const j = JSON.parse(await run(cmd, args)) as { samples: number[]; cpu_ms_per_fork: number };
  return { n: j.samples.length, p50: pct(j.samples, 50), p99: pct(j.samples, 99), cpuMs: j.cpu_ms_per_fork };
}

async function cgroupRow(n: number): Promise<(Latency & { dir: string; favordynmods: boolean }) | string> {
  const j = JSON.parse(await run('python3', [PY, '--cgroup-move', String(n)])) as { samples?: number[]; dir?: string; skipped?: string };
  if (!j.samples) return j.skipped ?? 'skipped';
  // whether the host skips the grace period (spored turns it on unless --cgroup-favordynmods keep)
  const favordynmods = favorDynmodsPlan(parseMountinfo(fs.readFileSync('/proc/self/mountinfo', 'utf8'))).on;
  return { n: j.samples.length, p50: pct(j.samples, 50), p99: pct(j.samples, 99), dir: j.dir ?? '', favordynmods };
}

async function spawnRow(n: number, argv: string[]): Promise<Latency> {
  const j = JSON.parse(await run('python3', [PY, '--spawn', String(n), ...argv])) as { samples: number[] };
  return { n: j.samples.length, p50: pct(j.samples, 50), p99: pct(j.samples, 99) };
}

export async function measureFloor(o: FloorOptions = {}): Promise<Floor> {
  const forks = o.forks ?? 200;
  const touchMb = o.touchMb ?? 48;
  const forkers = o.forkers ?? 24;
  const seconds = o.seconds ?? 5;
  const t0 = performance.now();
  const loadBefore = loadAvg();
  const python = (await run('python3', ['--version'])).trim().replace(/^Python /, '');
  const fork = await measureForkFloor(forks, touchMb);
  const idlePython = await forkRow('python3', [PY, String(forks)]);
  const idleNode = await forkRow(process.execPath, [NODE_FLOOR, String(forks)]);
  const throughput = await measureForkThroughput(forkers, seconds, touchMb);
  const spawnTrue = await spawnRow(o.spawnRuns ?? 100, ['/bin/true']);
  const nodeE0 = await spawnRow(o.nodeRuns ?? 20, [process.execPath, '-e', '0']);
  const cgroupMove = await cgroupRow(o.cgroupMoves ?? 20);
  const loadAfter = loadAvg();
  return {
    at: new Date().toISOString(),
    host: { cpus: os.cpus().length, memGiB: Math.round(os.totalmem() / 2 ** 30), kernel: os.release(), node: process.versions.node, python },
    fork,
    idlePython,
    idleNode,
    throughput,
    spawnTrue,
    nodeE0,
    cgroupMove,
    loadBefore,
    loadAfter,
    elapsedS: (performance.now() - t0) / 1000,
  };
}

const f = (x: number, d = 2): string => (Number.isFinite(x) ? x.toFixed(d) : '-');

/** "1.00 0.80 0.50 (CPU pressure 12 %)": the load averages and PSI's some avg10 */
export function showLoad(l: LoadAvg): string {
  return `${l.one.toFixed(2)} ${l.five.toFixed(2)} ${l.fifteen.toFixed(2)}${Number.isFinite(l.cpuPressure) ? ` (CPU pressure ${l.cpuPressure.toFixed(0)} %)` : ''}`;
}

/** The floor as a markdown table plus one line of context (host, load average). */
export function formatFloor(fl: Floor): string {
  const L: string[] = [];
  L.push(`Machine floors (bench/floor.ts, ${fl.at}; ${fl.host.cpus} CPUs, ${fl.host.memGiB} GiB, Linux ${fl.host.kernel}, Node ${fl.host.node}, Python ${fl.host.python}; load average before ${showLoad(fl.loadBefore)}, after ${showLoad(fl.loadAfter)}):`, '');
  L.push('| floor | n | p50 ms | p99 ms | CPU ms per fork | note |', '|---|--:|--:|--:|--:|---|');
  const row = (what: string, r: Latency & { cpuMs?: number }, note = ''): void => {
    L.push(`| ${what} | ${r.n} | ${f(r.p50)} | ${f(r.p99)} | ${r.cpuMs === undefined ? '' : f(r.cpuMs)} | ${note} |`);
  };
  row(`**fork floor**: fork + _exit + waitpid, Python, ${fl.fork.touchMb} MiB touched`, fl.fork, 'CPU: parent + children (getrusage)');
  row('fork + _exit + waitpid, idle Python', fl.idlePython);
  row('fork + _exit + waitpid, idle Node (prepareFork first)', fl.idleNode, 'CPU: process.cpuUsage + cutime/cstime');
  const t = fl.throughput;
  L.push(`| **fork-floor throughput**: ${t.forkers} concurrent forkers, ${t.touchMb} MiB each (shared COW), ${f(t.seconds, 1)} s | ${t.forks} | ${f(t.p50)} | ${f(t.p99)} | ${f(t.cpuMs)} | **${f(t.forksPerS, 0)} forks/s** |`);
  row('spawn /bin/true (posix_spawn + waitpid)', fl.spawnTrue);
  row('spawn `node -e 0` (posix_spawn + waitpid)', fl.nodeE0);
  if (typeof fl.cgroupMove === 'string') L.push(`| cgroup move (pid into a new cgroup's cgroup.procs) | | | | | skipped: ${fl.cgroupMove} |`);
  else row(`cgroup move: a pid into a new cgroup's cgroup.procs (${fl.cgroupMove.dir}), 50 ms apart`, fl.cgroupMove, fl.cgroupMove.favordynmods
    ? 'every container start pays it (runc too); favordynmods is on here (spored turns it on: pools/favordynmods.ts), no grace period'
    : 'every container start pays it (runc too); favordynmods is off here: ≈ one RCU grace period (on Linux ≥ 6.17 not once it has been on since boot)');
  return L.join('\n');
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  for (const a of argv) if (!['--json', '--quick', '--help', '-h'].includes(a)) throw new Error(`unknown argument ${a}`);
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write('usage: node dist/bench/floor.js [--json] [--quick]\n');
    return;
  }
  const fl = await measureFloor(argv.includes('--quick') ? { seconds: 3, spawnRuns: 50, nodeRuns: 10, cgroupMoves: 10 } : {});
  process.stdout.write(argv.includes('--json') ? `${JSON.stringify(fl)}\n` : `${formatFloor(fl)}\n`);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((e: unknown) => {
    process.stderr.write(`[floor] failed: ${(e as Error).stack ?? String(e)}\n`);
    process.exit(1);
  });
}
