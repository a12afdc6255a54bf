// Issue 13's goals table, every row from ONE run on this machine, beside the machine's floors
// (bench/floor.ts) measured in the same run:
//
//   node dist/bench/goals.js [--quick] [--out FILE] [--soak-seconds S] [--json] [--publish]   (root)
//   (GOALS_KEEP_LOG=<path> keeps the containerd-started spored's log there)
//
// --publish: the one command that regenerates the published results: the whole report goes to
// docs/goals.md, and README's short table (between its `<!-- goals:begin -->` and
// `<!-- goals:end -->` markers) is replaced by this run's.
// --quick stays under about 3 minutes; the default run takes about 10. --soak-seconds 600 is
// the issue's 10-minute soak. --out FILE also writes the markdown report there; --json prints
// the figures as one JSON line at the end. env GOALS_PARKED: the value given to spored's
// parked-instances flag for the parked rows (when this build has one; default 4).
//
// What it starts: a private containerd with the CRI plugin (integration/harness.ts: own temp
// dir, sockets, SPORE_RUN_DIR, SPORE_LOG, CNI bridge), so it can run beside other benches;
// containerd starts spored (and its keeper) through the shim on the first spore container;
// spored's gateway listens on a free loopback port. Functions are deployed over FRI and run in
// their function sandboxes as always. Everything is stopped at the end and checked to be gone.
//
// How each row is measured (nearest-rank percentiles; "gateway" = HTTP POST to spored's
// gateway on loopback, keep-alive):
//  - latency rows (heavy-init, hello): sequential POSTs from this process (node:http, one
//    keep-alive connection per daemon) for N seconds; with parked instances available the
//    requests alternate in blocks of 20 between the fork-on-request spored and the parked
//    one (the first 2 of each block not counted), so both see the same machine load.
//  - heavy-init Node: examples/slow-init.js (≈120 ms of module init) through the gateway vs a
//    fresh process per request: spawn-to-exit of `node bench/fresh/runner.cjs slow-init.js
//    '{"k":1}'` (Node starts, the module loads, the handler runs). Ratio = fresh p50 ÷ spore p50.
//  - Node hello (examples/hello.js) through the gateway: p50 ÷ the fork floor's p50 (fork +
//    _exit + waitpid of a Python process with 48 MiB touched).
//  - CPU per invocation, all processes: spore's whole process tree — the keeper and every
//    descendant (spored, the root seed, L1 and L2 seeds, replicas, instances) — read from
//    /proc/<pid>/stat: for each living process utime + stime + cutime + cstime (cutime/cstime
//    hold every child it has reaped, recursively; instances are reaped by their seed, seeds'
//    orphans by the sandbox's pid 1 or the keeper, a subreaper). The sum over the tree only
//    grows, and its delta over a wrk -c1 run, minus the tree's idle CPU rate (measured just
//    before, same way) times the run's length, divided by the requests completed, is the CPU
//    every spore process spent per invocation (the client, wrk, is not counted; kernel work
//    done outside spore's processes — kworkers, softirqs — is not either: the report prints
//    all kernel threads' CPU and the whole machine's busy time per request beside it, both of
//    which include everything else running on the machine). Baseline: the fork floor's CPU
//    per fork (getrusage self + children of the 48 MiB Python forker).
//  - c=24: wrk -t2 -c24 (bench/lua/post.lua) through the gateway on Node hello: requests/s ÷
//    the fork-floor throughput (24 forkers, forks/s); p50/p99 are wrk's. Goal: ≥ 0.6 and
//    p99 ≤ 3 × p50.
//  - `ctr run --rm` busybox /bin/true, spore and runc interleaved through the same containerd,
//    wall time around ctr. Spore's own share: the Create and Start RPC times spored logged
//    for that container id (SPORE_LOG, "msg":"rpc") ÷ its ctr wall time, median over runs.
//  - CRI RunPodSandbox + CreateContainer + StartContainer (busybox sleep, pause sandbox),
//    bench/cri.ts's measureCri: pod network from CNI and host network, interleaved rounds.
//  - soak: wrk -c24 on Node hello for S seconds in 5 consecutive windows, with the fork
//    floor's throughput (24 forkers, 5 s) measured before the first and after each window;
//    each window's ratio = its req/s ÷ the mean of the floor runs around it, and drift =
//    |ratio of the last window − ratio of the first| ÷ the first (first vs last 20 %), as
//    every other goal is a ratio to the machine's floor measured in the same run (the drift
//    of req/s alone is in the row too: a shared PVM host moves under a 10-minute run). Each
//    window also records what would show spore wearing down rather than the machine
//    changing under it: CPU of spore's tree per call, spored's RSS and open fds, the tree's
//    process count, replicas replaced (spored's log), and the machine's steal time (the
//    hypervisor running something else: this kind is itself a guest).
//  - memory: the Node hello function's primary L2 seed, memory.privateKiB from FRI listSeeds
//    (smaps_rollup Private_Clean + Private_Dirty), 3 s after the load above ended (the value
//    right after it is in the row too), ÷ a standalone
//    `node` that required the same module (its smaps_rollup Private_Clean + Private_Dirty).
//  - parked rows: only when `spored --help` lists a --parked… flag. Then the containerd-started
//    spored runs with it off (fork-on-request) and a second spored (bin/spored, own run dir and
//    port) with it on, beside it for the latency and parked CPU rows only.
// The fork floor is measured again after the run and printed, to show how much the machine's
// own speed moved while the bench ran (other work on the machine shows up there).
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { criClient, type CriClient } from '../integration/cri-client.js';
import { importImages, waitFor } from '../integration/cri-env.js';
import { containerdSkipReason, leakCheck, repoRoot, rootfs, startContainerd, which, type Containerd } from '../integration/harness.js';
import { FriClient } from '../protocols/fri/client.js';
import type { SeedInfo } from '../protocols/fri/types.js';
import { measureCri, type Row as CriRow } from './cri.js';
import { cpuByLabel, machineBusyMs, machineStealMs, parseParkedFlag, treeCpuMs, treeSnapshot, type ParkedFlag } from './proc-cpu.js';
import { formatFloor, loadAvg, measureFloor, measureForkFloor, measureForkThroughput, pct, showLoad, type Floor, type FloorOptions, type ForkFloorRow, type LoadAvg } from './floor.js';
import { children, track, waitExit } from './processes.js';
import { waitForFri } from './fri-ready.js';
import { wrk, type WrkResult } from './wrk.js';

// ------------------------------------------------------------------------------------- config

interface Config {
  /** write docs/goals.md and README's goals block */
  publish?: boolean;
  quick: boolean;
  out?: string;
  json: boolean;
  soakSeconds: number;
  floor: FloorOptions;
  ctrRuns: number;
  criRuns: number;
  criWarmup: number;
  /** wrk -c1 seconds per latency row */
  latencySeconds: number;
  freshRuns: number;
  throughputSeconds: number;
  idleSeconds: number;
  phaseSamples: number;
}

const USAGE = 'usage: node dist/bench/goals.js [--quick] [--out FILE] [--soak-seconds S] [--json] [--publish]\n';

function parseArgs(argv: string[]): Config {
  const value = (f: string): string | undefined => {
    const i = argv.indexOf(f);
    if (i < 0) return undefined;
    const v = argv[i + 1];
    if (v === undefined || v.startsWith('--')) throw new Error(`${f} needs a value`);
    return v;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--out' || a === '--soak-seconds') { i++; continue; }
    if (!['--quick', '--json', '--publish', '--help', '-h'].includes(a)) throw new Error(`unknown argument ${a}\n${USAGE}`);
  }
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(USAGE);
    process.exit(0);
  }
  const quick = argv.includes('--quick');
  const soak = value('--soak-seconds');
  const soakSeconds = soak === undefined ? (quick ? 30 : 60) : Number(soak);
  if (!Number.isFinite(soakSeconds) || soakSeconds < 5) throw new Error('--soak-seconds needs a number >= 5');
  const cfg: Config = quick
    ? { quick, json: false, soakSeconds, floor: { seconds: 3, spawnRuns: 50, nodeRuns: 10, cgroupMoves: 10 }, ctrRuns: 10, criRuns: 6, criWarmup: 1, latencySeconds: 5, freshRuns: 6, throughputSeconds: 10, idleSeconds: 2, phaseSamples: 20 }
    : { quick, json: false, soakSeconds, floor: {}, ctrRuns: 30, criRuns: 20, criWarmup: 3, latencySeconds: 15, freshRuns: 20, throughputSeconds: 30, idleSeconds: 3, phaseSamples: 50 };
  cfg.json = argv.includes('--json');
  cfg.publish = argv.includes('--publish');
  const out = value('--out');
  if (out !== undefined) cfg.out = out;
  return cfg;
}

// ------------------------------------------------------------------------------------ helpers

const t0 = Date.now();
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const say = (msg: string): void => {
  process.stderr.write(`[goals ${((Date.now() - t0) / 1000).toFixed(0).padStart(3)}s] ${msg}\n`);
};
const f = (x: number | null | undefined, d = 2): string => (x === null || x === undefined || !Number.isFinite(x) ? '-' : x.toFixed(d));

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

function run(cmd: string, args: string[], cwd?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: 60_000, maxBuffer: 8 << 20, ...(cwd ? { cwd } : {}) }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(' ')} failed: ${err.message}\n${stderr}`));
      else resolve(stdout);
    });
  });
}


/** one window of the soak: wrk's result and what spore and the machine did meanwhile */
interface SoakWindow extends WrkResult {
  /** CPU of spore's tree per call, ms (own and reaped children, so instances count) */
  cpuPerCallMs: number;
  /** the machine's steal time as a share of its CPU time over the window, % */
  stealPct: number;
  /** at the window's end: spored's resident memory (MiB) and open fds, processes in spore's tree */
  sporedRssMiB: number;
  sporedFds: number;
  processes: number;
  /** replicas spored replaced during the window (its log's "replacing a replica seed" lines) */
  replicasReplaced: number;
  /** the fork floor's throughput at 24 forkers (forks/s) around the window: the mean of the SOAK_FLOOR_SECONDS runs right before and right after it */
  floorForksPerS: number;
}

function rssMiB(pid: number): number {
  try {
    return Number(/^VmRSS:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN) / 1024;
  } catch {
    return NaN;
  }
}

function fdCount(pid: number): number {
  try {
    return fs.readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return NaN;
  }
}

function countInFile(file: string, needle: string): number {
  try {
    return fs.readFileSync(file, 'utf8').split(needle).length - 1;
  } catch {
    return NaN;
  }
}

/** a soak window: wrk for `seconds` with the diagnostics of SoakWindow around it */
async function soakWindow(keeper: number, spored: number, log: string, url: string, body: string, seconds: number): Promise<SoakWindow> {
  const REPLACED = 'replacing a replica seed';
  const a = treeCpuMs(keeper);
  const st0 = machineStealMs();
  const m0 = machineBusyMs();
  const rep0 = countInFile(log, REPLACED);
  const w = await wrk(url, body, 24, seconds);
  const b = treeCpuMs(keeper);
  const stolen = machineStealMs() - st0;
  const busy = machineBusyMs() - m0;
  return {
    ...w,
    cpuPerCallMs: w.requests > 0 ? (b.ms - a.ms) / w.requests : NaN,
    stealPct: busy > 0 ? (stolen / busy) * 100 : NaN,
    sporedRssMiB: rssMiB(spored),
    sporedFds: fdCount(spored),
    processes: b.processes,
    replicasReplaced: countInFile(log, REPLACED) - rep0,
    floorForksPerS: NaN,
  };
}

// ------------------------------------------------------------------------- CPU of a process tree

interface CpuRun {
  wrk: WrkResult;
  /** CPU of spore's tree over the run, and the idle share subtracted from it, ms */
  treeMs: number;
  idleMs: number;
  /** (treeMs - idleMs) / requests */
  perInvocationMs: number;
  /** cross-checks over the same run, per request: the whole machine's busy time (/proc/stat), all kernel threads (children of kthreadd) */
  machinePerInvocationMs: number;
  kthreadPerInvocationMs: number;
  processes: number;
  /** per invocation, by kind of process: what it ran itself, and what its exited children (instances) ran */
  byLabel: [string, { self: number; reaped: number }][];
}

/** what a process of spore's tree is, from its command line */
function labelOf(pid: number): string {
  let cmd = '';
  try {
    cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'latin1');
  } catch {
    return 'other';
  }
  if (cmd.includes('keeper/main.js')) return 'keeper';
  if (cmd.includes('daemon/main.js')) return 'spored';
  if (cmd.includes('seed-main.js')) return 'root seed';
  if (cmd.startsWith('spore-init')) return 'container shells';
  if (cmd.includes('language-seed.js')) return 'Node seeds';
  if (cmd.includes('zygote.py')) return 'Python seeds';
  return 'other';
}

/** a wrk run with the tree's CPU around it; idleRate in ms of CPU per s */
async function wrkWithCpu(root: number, idleRate: number, url: string, body: string, c: number, seconds: number): Promise<CpuRun> {
  const a = treeCpuMs(root);
  const sa = treeSnapshot(root, labelOf);
  const k0 = treeCpuMs(2);
  const m0 = machineBusyMs();
  const w0 = performance.now();
  const r = await wrk(url, body, c, seconds);
  const wall = (performance.now() - w0) / 1000;
  const b = treeCpuMs(root);
  const sb = treeSnapshot(root, labelOf);
  const k1 = treeCpuMs(2);
  const m1 = machineBusyMs();
  const treeMs = b.ms - a.ms;
  const idleMs = idleRate * wall;
  const per = (x: number): number => (r.requests > 0 ? x / r.requests : NaN);
  return { wrk: r, treeMs, idleMs, perInvocationMs: per(treeMs - idleMs), machinePerInvocationMs: per(m1 - m0), kthreadPerInvocationMs: per(k1.ms - k0.ms), processes: b.processes,
    byLabel: [...cpuByLabel(sa, sb)].map(([k, v]) => [k, { self: per(v.self), reaped: per(v.reaped) }] as [string, { self: number; reaped: number }]) };
}

// --------------------------------------------------------------------------------- parked flag

/** spored's parked-instances flag, if this build has one (from `spored --help`) */
function parkedFlag(): ParkedFlag | null {
  let help = '';
  try {
    help = execFileSync(process.execPath, [path.join(repoRoot, 'dist', 'daemon', 'main.js'), '--help'], { encoding: 'utf8', timeout: 20_000 });
  } catch (e) {
    help = String((e as { stdout?: string }).stdout ?? '');
  }
  return parseParkedFlag(help, process.env.GOALS_PARKED);
}

// ------------------------------------------------------------------------------------ spored


const FUNCTIONS: { name: string; language: 'node' | 'python'; file: string; body: string }[] = [
  { name: 'hello', language: 'node', file: 'hello.js', body: '{"name":"goals"}' },
  { name: 'hello-py', language: 'python', file: 'hello.py', body: '{"name":"goals"}' },
  { name: 'slow-init', language: 'node', file: 'slow-init.js', body: '{"k":1}' },
];

async function deploy(fri: FriClient, names: string[]): Promise<void> {
  for (const fn of FUNCTIONS.filter((x) => names.includes(x.name))) {
    const s = performance.now();
    await fri.deploy({ name: fn.name, language: fn.language, code: fs.readFileSync(path.join(repoRoot, 'examples', fn.file), 'utf8'), handler: 'handler', memoryMiB: 128, timeoutMs: 10_000, env: {} });
    say(`deployed ${fn.name} (${fn.language}) in ${(performance.now() - s).toFixed(0)} ms`);
  }
  // replicas are forked after the deploy returns
  await waitFor('L2 seeds and replicas ready', async () => {
    const seeds = await fri.listSeeds();
    const l2 = seeds.filter((s) => s.level === 2 && s.function !== null && names.includes(s.function));
    return l2.length >= names.length && l2.every((s) => s.state === 'ready') ? true : undefined;
  }, 30_000, 200).catch((e: unknown) => say(`(${(e as Error).message}; going on)`));
  await sleep(300);
}

async function post(url: string, body: string): Promise<{ status: number; text: string; timings: string | null }> {
  const r = await fetch(url, { method: 'POST', body, headers: { 'content-type': 'application/json' } });
  return { status: r.status, text: await r.text(), timings: r.headers.get('x-spore-timings') };
}

interface Seq { ms: number[]; parked: number; errors: string[] }

/** one POST on a keep-alive agent: wall ms, status, x-spore-parked */
function request(agent: http.Agent, url: URL, body: string): Promise<{ ms: number; status: number; parked: boolean; text: string }> {
  return new Promise((resolve, reject) => {
    const s = performance.now();
    const req = http.request({ agent, host: url.hostname, port: url.port, path: url.pathname, method: 'POST', headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (d: Buffer) => chunks.push(d));
      res.on('end', () => resolve({ ms: performance.now() - s, status: res.statusCode ?? 0, parked: res.headers['x-spore-parked'] === '1', text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

/**
 * Sequential requests for `seconds`, in blocks of BLOCK requests that alternate between the
 * targets (order swapped every round), so that two daemons are compared under the same machine
 * load. The first 2 requests of every block are not counted: they would still share the CPUs
 * with the other daemon's background work (a parked pool's refill) from the block before. The
 * first round is warm-up. Keep-alive connections, one per target (node:http).
 */
const BLOCK = 20;
async function seqLatency(urls: string[], body: string, seconds: number): Promise<Seq[]> {
  const agents = urls.map(() => new http.Agent({ keepAlive: true, maxSockets: 1 }));
  const out: Seq[] = urls.map(() => ({ ms: [], parked: 0, errors: [] }));
  const until = performance.now() + seconds * 1000;
  try {
    for (let round = 0; performance.now() < until || round < 3; round++) {
      const order = urls.map((_, i) => i);
      if (round % 2 === 1) order.reverse();
      for (const i of order) {
        for (let k = 0; k < BLOCK; k++) {
          const r = await request(agents[i]!, new URL(urls[i]!), body);
          if (round === 0 || k < 2) continue;
          if (r.status !== 200) {
            out[i]!.errors.push(`HTTP ${r.status} ${r.text.slice(0, 100)}`);
            continue;
          }
          out[i]!.ms.push(r.ms);
          if (r.parked) out[i]!.parked++;
        }
      }
    }
  } finally {
    for (const a of agents) a.destroy();
  }
  return out;
}

async function check(gw: string, fn: string, body: string, expect: string): Promise<void> {
  const r = await post(`${gw}/${fn}`, body);
  if (r.status !== 200 || !r.text.includes(expect)) throw new Error(`${fn} through the gateway: HTTP ${r.status} ${r.text.slice(0, 300)}`);
}

/** medians of x-spore-timings (µs) over n sequential requests, plus which keys said "parked" */
async function phases(gw: string, fn: string, body: string, n: number): Promise<Record<string, number>> {
  const per: Record<string, number[]> = {};
  for (let i = 0; i < n; i++) {
    const r = await post(`${gw}/${fn}`, body);
    if (r.status !== 200 || !r.timings) continue;
    for (const [k, v] of Object.entries(JSON.parse(r.timings) as Record<string, unknown>)) {
      const x = typeof v === 'number' ? v : typeof v === 'boolean' ? Number(v) : NaN;
      if (Number.isFinite(x)) (per[k] ??= []).push(x);
    }
  }
  return Object.fromEntries(Object.entries(per).map(([k, v]) => [k, k.includes('parked') ? v.reduce((a, b) => a + b, 0) / v.length : pct(v, 50)]));
}

/** how long a spored is left alone before its idle CPU rate is measured (ms): the idle refresh at 1 s, a parked lot refilled by the next 2 s sweep */
const SETTLE_MS = 3500;
/** seconds of each fork-floor throughput run between soak windows */
const SOAK_FLOOR_SECONDS = 5;

function privateKiB(pid: number): number {
  const t = fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  const kb = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(t)?.[1] ?? NaN);
  return kb('Private_Clean') + kb('Private_Dirty');
}

/** a standalone process that loaded the function's module, idle: its private KiB */
async function standaloneKiB(language: 'node' | 'python', file: string, cwd: string): Promise<number> {
  const child = track(
    language === 'node'
      ? spawn(process.execPath, ['-e', `require(${JSON.stringify(file)}); process.stdout.write('ready\\n'); setInterval(() => {}, 1e9);`], { stdio: ['ignore', 'pipe', 'inherit'], cwd })
      : spawn('python3', ['-c', "import importlib.util, sys, time\ns = importlib.util.spec_from_file_location('m', sys.argv[1]); m = importlib.util.module_from_spec(s); s.loader.exec_module(m)\nprint('ready', flush=True); time.sleep(1e9)", file], { stdio: ['ignore', 'pipe', 'inherit'], cwd }),
  );
  try {
    const ready = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), 15_000);
      child.stdout!.on('data', (d: Buffer) => {
        if (d.toString().includes('ready')) {
          clearTimeout(timer);
          resolve(true);
        }
      });
      child.on('exit', () => resolve(false));
    });
    if (!ready) throw new Error(`standalone ${language} ${file} did not get ready`);
    await sleep(300);
    return privateKiB(child.pid!);
  } finally {
    child.kill('SIGKILL');
    await waitExit(child, 2000);
  }
}

/** spawn-to-exit wall time of a fresh `node runner.cjs <module> <event>`, runs + 1 warm-up */
async function fresh(module: string, event: string, expect: string, runs: number, cwd: string): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < runs + 1; i++) {
    const s = performance.now();
    const stdout = await run(process.execPath, [path.join(repoRoot, 'bench', 'fresh', 'runner.cjs'), module, event], cwd);
    const ms = performance.now() - s;
    if (!stdout.includes(expect)) throw new Error(`fresh ${module} printed ${stdout.slice(0, 200)}`);
    if (i > 0) out.push(ms);
  }
  return out;
}

// ------------------------------------------------------------------------------------- results

interface Stat { p50: number; p99: number; n: number }
const stat = (xs: number[]): Stat => ({ p50: pct(xs, 50), p99: pct(xs, 99), n: xs.length });

interface GoalRow { metric: string; spore: string; baseline: string; ratio: string; goal: string; met: 'yes' | 'no' | 'n/a'; value: number | null }

interface Latencies { stat: Stat; parked: number; errors: string[] }
const latencies = (s: Seq): Latencies => ({ stat: stat(s.ms), parked: s.parked, errors: s.errors });

interface Results {
  floor?: Floor;
  floorEnd?: ForkFloorRow;
  loadStart: LoadAvg;
  loadEnd?: LoadAvg;
  ctr?: { spore: Stat; runc: Stat; rpc: Stat; share: Stat; matched: number; busy: Stat; outside: Stat };
  cri?: CriRow[];
  hello?: Latencies;
  slowInit?: Latencies;
  freshSlowInit?: Stat;
  helloCpu?: CpuRun;
  helloPyCpu?: CpuRun;
  idleRate?: number;
  treeProcesses?: number;
  phases?: Record<string, number>;
  c24?: CpuRun;
  soak?: SoakWindow[];
  memory?: { seedKiB: number; seedBeforeKiB: number; seedLoadedKiB: number; idleSeconds: number; standaloneKiB: number; pySeedKiB: number; pyStandaloneKiB: number; seed: string; loaded: string };
  parked: { available: false; why: string } | { available: true; flag: ParkedFlag; hello?: Latencies; slowInit?: Latencies; cpu?: CpuRun; phases?: Record<string, number>; error?: string };
  notes: string[];
  cleanup: string[];
}

function goalRows(r: Results): GoalRow[] {
  const rows: GoalRow[] = [];
  const fl = r.floor;
  const ms = (s: Stat, unit = 'ms'): string => `${f(s.p50)}, ${f(s.p99)} ${unit}`;
  const add = (metric: string, spore: string, baseline: string, value: number, ratioText: string, goal: string, ok: (v: number) => boolean): void => {
    rows.push({ metric, spore, baseline, ratio: ratioText, goal, met: Number.isFinite(value) ? (ok(value) ? 'yes' : 'no') : 'n/a', value: Number.isFinite(value) ? value : null });
  };
  const none = (metric: string, why: string, goal: string): void => {
    rows.push({ metric, spore: why, baseline: '', ratio: '', goal, met: 'n/a', value: null });
  };
  const parked = r.parked;
  const parkedWhy = parked.available ? `failed: ${parked.error ?? 'not measured'}` : 'not available in this build';
  const share = (l: Latencies): string => (l.parked > 0 ? ` (${Math.round((100 * l.parked) / l.stat.n)} % parked)` : '');

  // heavy-init
  const heavy = 'heavy-init Node (slow-init.js) invoke p50 vs a fresh `node` per request';
  if (r.slowInit && r.freshSlowInit) {
    const v = r.freshSlowInit.p50 / r.slowInit.stat.p50;
    add(`${heavy} — fork-on-request`, ms(r.slowInit.stat), `fresh node: ${ms(r.freshSlowInit)}`, v, `${f(v, 1)}×`, '≥ 50×', (x) => x >= 50);
  } else none(`${heavy} — fork-on-request`, 'not measured (see notes)', '≥ 50×');
  if (parked.available && parked.slowInit && r.freshSlowInit) {
    const v = r.freshSlowInit.p50 / parked.slowInit.stat.p50;
    add(`${heavy} — parked`, `${ms(parked.slowInit.stat)}${share(parked.slowInit)}`, `fresh node: ${ms(r.freshSlowInit)}`, v, `${f(v, 1)}×`, '≥ 100×', (x) => x >= 100);
  } else none(`${heavy} — parked`, parkedWhy, '≥ 100×');

  // hello ÷ fork floor
  const hello = 'Node hello invoke p50 through the gateway ÷ fork floor';
  if (r.hello && fl) {
    const v = r.hello.stat.p50 / fl.fork.p50;
    add(`${hello} — fork-on-request`, ms(r.hello.stat), `fork floor: ${ms(fl.fork)}`, v, f(v), '≤ 1.5', (x) => x <= 1.5);
  } else none(`${hello} — fork-on-request`, 'not measured', '≤ 1.5');
  if (parked.available && parked.hello && fl) {
    const v = parked.hello.stat.p50 / fl.fork.p50;
    add(`${hello} — parked`, `${ms(parked.hello.stat)}${share(parked.hello)}`, `fork floor: ${ms(fl.fork)}`, v, f(v), '≤ 1.0', (x) => x <= 1.0);
  } else none(`${hello} — parked`, parkedWhy, '≤ 1.0');

  // CPU
  const cpuRows: [string, CpuRun | undefined][] = [['Node hello (c=1)', r.helloCpu], ['Python hello (c=1)', r.helloPyCpu]];
  if (parked.available) cpuRows.push(['Node hello parked (c=1, refills included)', parked.cpu]);
  for (const [label, c] of cpuRows) {
    const metric = `CPU per invocation, all spore processes, ${label} ÷ fork floor's CPU`;
    if (c && fl) {
      const v = c.perInvocationMs / fl.fork.cpuMs;
      add(metric, `${f(c.perInvocationMs)} ms CPU (mean of ${c.wrk.requests})`, `${f(fl.fork.cpuMs)} ms CPU per fork`, v, `${f(v, 1)}×`, '≤ 2×', (x) => x <= 2);
    } else none(metric, label.includes('parked') ? parkedWhy : 'not measured', '≤ 2×');
  }

  // c=24
  const c24 = 'c=24 (wrk, Node hello via gateway): invocations/s ÷ fork-floor throughput at 24 forkers';
  if (r.c24 && fl) {
    const w = r.c24.wrk;
    const v = w.rps / fl.throughput.forksPerS;
    const tail = w.p99 / w.p50;
    add(c24, `${f(w.rps, 1)} req/s (p50 ${f(w.p50, 1)}, p99 ${f(w.p99, 1)} ms)`, `${f(fl.throughput.forksPerS, 0)} forks/s (p50 ${f(fl.throughput.p50, 1)}, p99 ${f(fl.throughput.p99, 1)} ms)`,
      v, `${f(v)}; p99 = ${f(tail, 1)} × p50`, '≥ 0.6, p99 ≤ 3 × p50', (x) => x >= 0.6 && tail <= 3);
  } else none(c24, 'not measured', '≥ 0.6, p99 ≤ 3 × p50');

  // ctr
  if (r.ctr) {
    const v = r.ctr.spore.p50 / r.ctr.runc.p50;
    add('`ctr run --rm` busybox /bin/true: spore ÷ runc p50', ms(r.ctr.spore), `runc: ${ms(r.ctr.runc)}`, v, f(v), '≤ 0.50 (moonshot 0.40)', (x) => x <= 0.5);
    const s = r.ctr.share.p50 * 100;
    add("spore's own share: Create + Start RPCs ÷ spore's `ctr run` wall time", `Create+Start ${ms(r.ctr.rpc)}`, `spore ctr run wall: ${ms(r.ctr.spore)}`, s, `${f(s, 1)} %`, '≤ 10 %', (x) => x <= 10);
  } else {
    none('`ctr run --rm /bin/true`: spore ÷ runc p50', 'not measured', '≤ 0.50 (moonshot 0.40)');
    none("spore's own share: Create + Start RPCs ÷ spore's `ctr run` wall time", 'not measured', '≤ 10 %');
  }

  // CRI
  for (const n of ['cni', 'hostnet'] as const) {
    const sp = r.cri?.find((x) => x.handler === 'spore' && x.net === n);
    const rc = r.cri?.find((x) => x.handler === 'runc' && x.net === n);
    const label = `CRI RunPodSandbox + CreateContainer + StartContainer, ${n === 'cni' ? 'CNI pod network' : 'host network'}: spore ÷ runc p50`;
    if (sp && rc && sp.total.length && rc.total.length) {
      const v = pct(sp.total, 50) / pct(rc.total, 50);
      add(label, ms(stat(sp.total)), `runc: ${ms(stat(rc.total))}`, v, f(v), '≤ 0.50', (x) => x <= 0.5);
    } else none(label, `not measured${sp?.error ? `: spore ${sp.error.slice(0, 120)}` : ''}${rc?.error ? `: runc ${rc.error.slice(0, 120)}` : ''}`, '≤ 0.50');
  }

  // soak
  if (r.soak && r.soak.length >= 2) {
    const first = r.soak[0]!;
    const last = r.soak[r.soak.length - 1]!;
    const raw = (Math.abs(last.rps - first.rps) / first.rps) * 100;
    const secs = r.soak.reduce((a, b) => a + b.seconds, 0);
    const floored = r.soak.every((w) => Number.isFinite(w.floorForksPerS) && w.floorForksPerS > 0);
    if (floored) {
      // the drift of throughput ÷ the floor's throughput measured around the same window: what
      // spore's own wear would change, where the raw drift also moves with the machine
      const ratio = (w: SoakWindow): number => w.rps / w.floorForksPerS;
      const v = (Math.abs(ratio(last) - ratio(first)) / ratio(first)) * 100;
      add(`soak c=24 (${f(secs, 0)} s, Node hello): drift of throughput ÷ the fork floor's throughput measured around each window, last vs first 20 %`,
        `last: ${f(last.rps, 1)} req/s (p50 ${f(last.p50, 0)}, p99 ${f(last.p99, 0)} ms) ÷ ${f(last.floorForksPerS, 0)} forks/s = ${f(ratio(last), 3)}`,
        `first: ${f(first.rps, 1)} req/s (p50 ${f(first.p50, 0)}, p99 ${f(first.p99, 0)} ms) ÷ ${f(first.floorForksPerS, 0)} forks/s = ${f(ratio(first), 3)}`,
        v, `${f(v, 1)} % (req/s alone: ${f(raw, 1)} %)`, '≤ 5 %', (x) => x <= 5);
    } else {
      add(`soak c=24 (${f(secs, 0)} s, Node hello): throughput drift, last vs first 20 %`, `last: ${f(last.rps, 1)} req/s (p50 ${f(last.p50, 0)}, p99 ${f(last.p99, 0)} ms)`, `first: ${f(first.rps, 1)} req/s (p50 ${f(first.p50, 0)}, p99 ${f(first.p99, 0)} ms)`, raw, `${f(raw, 1)} %`, '≤ 5 %', (x) => x <= 5);
    }
  } else none('soak at c=24: throughput drift', 'not measured', '≤ 5 %');

  // memory
  if (r.memory) {
    const v = (100 * r.memory.seedKiB) / r.memory.standaloneKiB;
    add(`Node L2 seed private memory, idle ${r.memory.idleSeconds} s after the load ÷ a standalone \`node\` with the same function (hello)`, `${f(r.memory.seedKiB / 1024)} MiB (${f(r.memory.seedLoadedKiB / 1024)} right after the load, ${f(r.memory.seedBeforeKiB / 1024)} before it)`, `standalone: ${f(r.memory.standaloneKiB / 1024)} MiB`, v, `${f(v, 1)} %`, '≤ 10 %', (x) => x <= 10);
  } else none('Node L2 seed private memory ÷ a standalone process', 'not measured', '≤ 10 %');
  return rows;
}

function report(cfg: Config, r: Results, started: Date, commit: string): string {
  const L: string[] = [];
  L.push(`## spore goals (issue 13) — ${started.toISOString()} — ${cfg.quick ? '--quick' : 'full'} run`, '');
  L.push(`Command: \`node dist/bench/goals.js${cfg.quick ? ' --quick' : ''}${cfg.soakSeconds !== (cfg.quick ? 30 : 60) ? ` --soak-seconds ${cfg.soakSeconds}` : ''}\` (${commit}). Load average at start ${showLoad(r.loadStart)}${r.loadEnd ? `, at the end ${showLoad(r.loadEnd)}` : ''}; other work on the machine shows in the tails and in the fork floor re-measured at the end.`, '');
  if (r.floor) L.push(formatFloor(r.floor), '');
  if (r.floor && r.floorEnd) L.push(`Fork floor re-measured after the run: p50 ${f(r.floorEnd.p50)} ms, p99 ${f(r.floorEnd.p99)} ms, CPU ${f(r.floorEnd.cpuMs)} ms per fork (ratios below use the one above).`, '');
  L.push('| metric | spore (p50, p99) | baseline (p50, p99) | ratio | goal | met? |', '|---|---|---|---|---|---|');
  const rows = goalRows(r);
  for (const g of rows) L.push(`| ${g.metric} | ${g.spore} | ${g.baseline} | ${g.ratio} | ${g.goal} | ${g.met === 'no' ? '**no**' : g.met} |`);
  const met = rows.filter((g) => g.met === 'yes').length;
  const measured = rows.filter((g) => g.met !== 'n/a').length;
  L.push('', `Goals met: ${met} of ${measured} measured${rows.length > measured ? ` (${rows.length - measured} not measured or not available)` : ''}.`, '');

  L.push('Details from the same run:', '');
  const cpu = (c: CpuRun): string =>
    `${f(c.treeMs, 0)} ms of spore-tree CPU over ${c.wrk.requests} requests in ${f(c.wrk.seconds, 1)} s (wrk p50 ${f(c.wrk.p50)} ms), idle share ${f(c.idleMs, 0)} ms subtracted; per invocation by process (own + reaped children, ms): ${c.byLabel
      .filter(([, v]) => v.self + v.reaped >= 0.005)
      .map(([k, v]) => `${k} ${f(v.self)}${v.reaped >= 0.005 ? ` + ${f(v.reaped)}` : ''}`)
      .join(', ')}; cross-checks per request: whole machine busy ${f(c.machinePerInvocationMs)} ms (includes wrk and all other load on the machine), all kernel threads ${f(c.kthreadPerInvocationMs)} ms`;
  if (r.helloCpu) L.push(`- CPU, Node hello c=1: ${cpu(r.helloCpu)}.`);
  if (r.helloPyCpu) L.push(`- CPU, Python hello c=1: ${cpu(r.helloPyCpu)}.`);
  if (r.parked.available && r.parked.cpu) L.push(`- CPU, Node hello c=1, parked spored: ${cpu(r.parked.cpu)}.`);
  L.push(`- spore's process tree before the load: ${r.treeProcesses ?? '-'} processes (keeper, spored, root seed, L1/L2 seeds, replicas); idle CPU ${f(r.idleRate)} ms/s.`);
  if (r.c24) L.push(`- c=24 CPU per invocation (same method): ${f(r.c24.perInvocationMs)} ms = ${f(r.c24.perInvocationMs / (r.floor?.throughput.cpuMs ?? NaN), 1)}× the fork floor's CPU per fork at 24 forkers (${f(r.floor?.throughput.cpuMs)} ms); wrk errors: ${r.c24.wrk.errorText || '0'}.`);
  if (r.hello || r.slowInit) L.push(`- latency rows: sequential keep-alive POSTs from the bench (node:http)${r.parked.available ? `, alternating in blocks of ${BLOCK} (first 2 of each not counted) between the fork-on-request and the parked spored` : ''}; n = ${[r.hello, r.slowInit].filter(Boolean).map((x) => x!.stat.n).join(' / ')} (hello / slow-init)${[r.hello, r.slowInit].some((x) => x?.errors.length) ? `; errors: ${[r.hello, r.slowInit].flatMap((x) => x?.errors ?? []).slice(0, 3).join('; ')}` : ''}.`);
  if (r.phases) L.push(`- x-spore-timings medians, Node hello fork-on-request, ${cfg.phaseSamples} sequential requests (ms): ${Object.entries(r.phases).map(([k, v]) => `${k} ${f(v / 1000)}`).join(', ')}.`);
  if (r.parked.available && r.parked.phases) L.push(`- x-spore-timings medians, Node hello parked (ms): ${Object.entries(r.parked.phases).map(([k, v]) => `${k} ${f(v / 1000)}`).join(', ')}.`);
  if (r.soak) {
    L.push(`- soak windows (req/s, p99 ms; the fork floor's throughput around the window, forks/s): ${r.soak.map((w) => `${f(w.rps, 1)} (${f(w.p99, 0)}; ${f(w.floorForksPerS, 0)})`).join(', ')}${r.soak.some((w) => w.errors) ? `; errors: ${r.soak.map((w) => w.errorText).filter(Boolean).join('; ')}` : ''}.`);
    L.push(`- soak windows, what spore and the machine did: CPU of spore's tree per call (ms) ${r.soak.map((w) => f(w.cpuPerCallMs)).join(', ')}; the machine's steal time ${r.soak.map((w) => `${f(w.stealPct, 1)} %`).join(', ')}; at each window's end spored's RSS (MiB) ${r.soak.map((w) => f(w.sporedRssMiB, 0)).join(', ')}, its open fds ${r.soak.map((w) => String(w.sporedFds)).join(', ')}, processes in spore's tree ${r.soak.map((w) => String(w.processes)).join(', ')}; replicas replaced (private memory over the limit) ${r.soak.map((w) => String(w.replicasReplaced)).join(', ')}.`);
  }
  if (r.memory) L.push(`- memory: right after the load, Node L2 seed ${r.memory.loaded}; ${r.memory.idleSeconds} s later (an idle version's replicas that served are replaced by fresh forks: functions/registry.ts, the idle refresh), ${r.memory.seed}; Python hello L2 seed ${f(r.memory.pySeedKiB / 1024)} MiB private ÷ standalone python3 ${f(r.memory.pyStandaloneKiB / 1024)} MiB = ${f((100 * r.memory.pySeedKiB) / r.memory.pyStandaloneKiB, 1)} %.`);
  if (r.ctr) {
    L.push(`- ctr: ${r.ctr.spore.n} runs each after 1 warm-up, interleaved; Create+Start found in spored's log for ${r.ctr.matched} of them.`);
    if (r.ctr.busy.n > 0) L.push(`- ctr, where spore's \`ctr run\` goes: spore's task RPCs for the container in flight (Create, Wait holding Start and the program's run, Delete, ...) p50 ${f(r.ctr.busy.p50)} ms; the rest (ctr, containerd, the shim binary's start, the hops between them) p50 ${f(r.ctr.outside.p50)} ms = ${f(r.ctr.outside.p50 / r.ctr.runc.p50)} of runc's wall time: the ratio this runtime would get with its own RPCs at zero.`);
  }
  if (r.cri) L.push(`- CRI p50 by call (RunPodSandbox / CreateContainer / StartContainer, ms): ${r.cri.map((x) => `${x.handler}/${x.net} ${f(pct(x.run, 50), 1)} / ${f(pct(x.create, 50), 1)} / ${f(pct(x.start, 50), 1)} (n=${x.total.length}${x.error ? `, error: ${x.error.slice(0, 100)}` : ''})`).join('; ')}.`);
  if (!r.parked.available) L.push(`- parked instances: ${r.parked.why}.`);
  else L.push(`- parked instances: \`${r.parked.flag.line}\`; the fork-on-request rows ran with \`${r.parked.flag.flag} ${r.parked.flag.off}\` (containerd-started spored), the parked rows on a second spored (bin/spored, own run dir and port) with \`${r.parked.flag.flag} ${r.parked.flag.on}\`${r.parked.error ? `; error: ${r.parked.error}` : ''}.`);
  for (const n of r.notes) L.push(`- ${n}`);
  L.push(`- cleanup: ${r.cleanup.length ? r.cleanup.join('; ') : 'containerd, shims, keepers, spored, seeds and instances of this run stopped; none left running'}.`);
  L.push(`- elapsed ${((Date.now() - t0) / 1000).toFixed(0)} s.`);
  return L.join('\n') + '\n';
}

const README_BEGIN = '<!-- goals:begin';
const README_END = '<!-- goals:end -->';

/** README's short version: the command, the floor in one line, the goal rows. */
function shortReport(cfg: Config, r: Results, started: Date, commit: string): string {
  const L: string[] = [];
  const fl = r.floor;
  L.push(`**Goals as ratios to this machine's floor** (${started.toISOString().slice(0, 10)}, \`node dist/bench/goals.js${cfg.quick ? ' --quick' : ''}${cfg.soakSeconds !== (cfg.quick ? 30 : 60) ? ` --soak-seconds ${cfg.soakSeconds}` : ''} --publish\`, ${commit}; ` +
    `every row and every floor from that one run; the whole report, with per-process CPU and phase timings, is [\`docs/goals.md\`](docs/goals.md)). ` +
    (fl ? `Floors: fork + exit + wait of a Python process with ${fl.fork.touchMb} MiB touched p50 ${f(fl.fork.p50)} ms (CPU ${f(fl.fork.cpuMs)} ms), ${fl.throughput.forkers} concurrent forkers ${f(fl.throughput.forksPerS, 0)} forks/s, spawn /bin/true ${f(fl.spawnTrue.p50)} ms, \`node -e 0\` ${f(fl.nodeE0.p50)} ms${typeof fl.cgroupMove === 'string' ? '' : `, a cgroup move ${f(fl.cgroupMove.p50)} ms`}; load average ${showLoad(fl.loadBefore)}.` : ''), '');
  L.push('| metric | spore (p50, p99) | baseline (p50, p99) | ratio | goal | met? |', '|---|---|---|---|---|---|');
  const rows = goalRows(r);
  for (const g of rows) L.push(`| ${g.metric} | ${g.spore} | ${g.baseline} | ${g.ratio} | ${g.goal} | ${g.met === 'no' ? '**no**' : g.met} |`);
  L.push('', `Goals met: ${rows.filter((g) => g.met === 'yes').length} of ${rows.filter((g) => g.met !== 'n/a').length} measured.`);
  return L.join('\n');
}

/** docs/goals.md := the whole report; README's goals block := `short`. Throws without the markers. */
function publish(md: string, short: string): void {
  const readme = path.join(repoRoot, 'README.md');
  const text = fs.readFileSync(readme, 'utf8');
  const a = text.indexOf(README_BEGIN);
  const b = text.indexOf(README_END);
  if (a < 0 || b < a) throw new Error(`README.md has no ${README_BEGIN} … ${README_END} block to replace`);
  const head = text.slice(0, text.indexOf('\n', a) + 1);
  fs.writeFileSync(path.join(repoRoot, 'docs', 'goals.md'), `# Goals as ratios to the machine's floor\n\nRegenerated by \`node dist/bench/goals.js --publish\` (root; about 10 minutes, plus the soak). README shows the short table.\n\n${md}`);
  fs.writeFileSync(readme, `${head}${short}\n${text.slice(b)}`);
}

// ---------------------------------------------------------------------------------------- main

function keeperPid(runDir: string): number {
  try {
    return parseInt(fs.readFileSync(path.join(runDir, 'keeper.pid'), 'utf8').trim().split(' ')[0]!, 10);
  } catch {
    return NaN;
  }
}

function sporedPid(runDir: string): number {
  try {
    return parseInt(fs.readFileSync(path.join(runDir, 'spored.pid'), 'utf8').trim().split(' ')[0]!, 10);
  } catch {
    return NaN;
  }
}

async function timeCtrPair(c: Containerd, image: string, runs: number): Promise<{ spore: number[]; runc: number[]; ids: string[] }> {
  const out = { spore: [] as number[], runc: [] as number[], ids: [] as string[] };
  for (let i = 0; i < runs + 1; i++) {
    const order = i % 2 === 0 ? (['spore', 'runc'] as const) : (['runc', 'spore'] as const);
    for (const rt of order) {
      const id = `goals-${rt}-${i}`;
      const s = performance.now();
      const r = await c.ctr(['run', '--rm', ...(rt === 'spore' ? ['--runtime', 'io.containerd.spore.v2'] : []), '--fifo-dir', path.join(c.dir, 'fifo'), '--rootfs', image, id, '/bin/true'], { timeoutMs: 60_000 });
      const ms = performance.now() - s;
      if (r.code !== 0) throw new Error(`ctr run (${rt}) exited ${r.code}: ${r.stderr.trim()}`);
      if (i === 0) continue; // warm-up
      out[rt].push(ms);
      if (rt === 'spore') out.ids.push(id);
    }
  }
  return out;
}

/**
 * Per container id from spored's log ("msg":"rpc" lines): Create and Start ms, and `busy`, the
 * ms during which any task RPC for it was in flight (the union of [end - ms, end]: ctr calls
 * Wait before Start, so Wait's interval holds Start's and the program's run).
 */
function rpcTimes(log: string): Map<string, { create?: number; start?: number; busy?: number }> {
  const m = new Map<string, { create?: number; start?: number; busy?: number }>();
  const spans = new Map<string, Array<[number, number]>>();
  for (const l of fs.readFileSync(log, 'utf8').split('\n')) {
    if (!l.includes('"msg":"rpc"')) continue;
    try {
      const j = JSON.parse(l) as { method?: string; id?: string; execId?: string; ms?: number; time?: string };
      if (!j.id || j.execId || typeof j.ms !== 'number') continue;
      const e = m.get(j.id) ?? {};
      if (j.method === 'Create' || j.method === 'create') e.create = (e.create ?? 0) + j.ms;
      if (j.method === 'Start' || j.method === 'start') e.start = (e.start ?? 0) + j.ms;
      m.set(j.id, e);
      const end = j.time ? Date.parse(j.time) : NaN;
      if (Number.isFinite(end)) { const a = spans.get(j.id) ?? []; a.push([end - j.ms, end]); spans.set(j.id, a); }
    } catch { /* not JSON */ }
  }
  for (const [id, a] of spans) {
    a.sort((x, y) => x[0] - y[0]);
    let busy = 0;
    let [from, to] = a[0] as [number, number];
    for (const [s, e] of a.slice(1)) {
      if (s > to) { busy += to - from; from = s; to = e; } else if (e > to) to = e;
    }
    busy += to - from;
    (m.get(id) as { busy?: number }).busy = busy;
  }
  return m;
}

interface ParkedSpored { dir: string; child: ChildProcess; fri?: FriClient; gw: string; keeper: number }

/** a second spored (bin/spored: keeper + spored) with parked instances on, hello and slow-init deployed */
async function startParked(flag: ParkedFlag, work: string): Promise<ParkedSpored> {
  const dir = path.join(work, 'parked');
  fs.mkdirSync(dir);
  const port = await freePort();
  const log = path.join(dir, 'spored.log');
  const out = fs.openSync(path.join(dir, 'spored.out'), 'a');
  const child = track(spawn(path.join(repoRoot, 'bin', 'spored'), ['--run-dir', dir, '--state-dir', path.join(dir, 'state'), '--gateway', `127.0.0.1:${port}`, '--log', log, flag.flag, flag.on], { stdio: ['ignore', out, out], detached: true }));
  fs.closeSync(out);
  // bin/spored execs the keeper: the child is the keeper, the root of this spored's tree
  const p: ParkedSpored = { dir, child, gw: `http://127.0.0.1:${port}/invoke`, keeper: child.pid ?? NaN };
  p.fri = await waitForFri(dir, log);
  await deploy(p.fri, ['hello', 'slow-init']);
  await check(p.gw, 'hello', FUNCTIONS[0]!.body, 'hello goals');
  await check(p.gw, 'slow-init', FUNCTIONS[2]!.body, 'entries');
  return p;
}

async function stopParked(p: ParkedSpored | undefined): Promise<void> {
  if (!p) return;
  p.fri?.close();
  if (p.child.exitCode === null && p.child.signalCode === null) {
    p.child.kill('SIGTERM'); // the keeper stops spored fully (seeds, instances), then itself
    if (!(await waitExit(p.child, 20_000))) {
      p.child.kill('SIGKILL');
      await waitExit(p.child, 2000);
    }
  }
}

async function main(): Promise<void> {
  const cfg = parseArgs(process.argv.slice(2));
  const skip = containerdSkipReason();
  if (skip) throw new Error(`cannot run: ${skip}`);
  if (!which('wrk')) throw new Error('wrk is not installed (apt-get install wrk)');
  const started = new Date();
  let commit = 'unknown commit';
  try {
    const head = execFileSync('git', ['-C', repoRoot, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['-C', repoRoot, 'status', '--porcelain', '--untracked-files=no'], { encoding: 'utf8' }).trim() !== '';
    commit = `commit ${head}${dirty ? ' + uncommitted changes in the working tree' : ''}`;
  } catch { /* not a git checkout */ }
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'spore-goals-'));
  const flag = parkedFlag();
  const r: Results = { loadStart: loadAvg(), notes: [], cleanup: [], parked: flag ? { available: true, flag } : { available: false, why: 'not available in this build (`spored --help` lists no --parked flag)' } };
  let c: Containerd | undefined;
  let fri: FriClient | undefined;
  let cri: CriClient | undefined;
  let parked: ParkedSpored | undefined;
  let stopping: Promise<void> | undefined;
  const stopAll = (): Promise<void> =>
    (stopping ??= (async () => {
      for (const ch of children) if (ch !== parked?.child) ch.kill('SIGKILL'); // wrk, standalone processes
      fri?.close();
      cri?.close();
      await stopParked(parked);
      // GOALS_KEEP_LOG=<path>: spored's log outlives the run (to look into a tail afterwards)
      const keep = process.env.GOALS_KEEP_LOG;
      if (keep && c) { try { fs.copyFileSync(c.sporeLog, keep); } catch (e) { r.cleanup.push(`keeping spored's log: ${(e as Error).message}`); } }
      if (c) await c.stop().catch((e: unknown) => r.cleanup.push(`containerd stop: ${(e as Error).message}`));
    })());
  const onSignal = (sig: NodeJS.Signals): void => {
    say(`${sig}: stopping everything`);
    void stopAll().finally(() => {
      fs.rmSync(work, { recursive: true, force: true });
      process.exit(sig === 'SIGINT' ? 130 : 143);
    });
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  try {
    // ------------------------------------------------------------------ floors, before anything of ours runs
    say('machine floors (bench/floor.ts)');
    r.floor = await measureFloor(cfg.floor);
    say(`fork floor p50 ${f(r.floor.fork.p50)} ms, CPU ${f(r.floor.fork.cpuMs)} ms/fork; ${f(r.floor.throughput.forksPerS, 0)} forks/s at ${r.floor.throughput.forkers} forkers`);

    // ------------------------------------------------------------------ containerd + spored
    const port = await freePort();
    const gw = `http://127.0.0.1:${port}/invoke`;
    const extraEnv: Record<string, string> = { SPORE_GATEWAY: `127.0.0.1:${port}` };
    if (flag?.env) extraEnv[flag.env] = flag.off;
    else if (flag) r.notes.push(`the parked flag ${flag.flag} has no environment variable: the containerd-started spored ran with its default`);
    say('starting a private containerd (CRI on)');
    c = await startContainerd({ cri: true, extraEnv });
    const busybox = rootfs('busybox');
    say('first spore container (containerd starts spored through the shim), then the seed tree');
    const warm = await c.ctr(['run', '--rm', '--runtime', 'io.containerd.spore.v2', '--fifo-dir', path.join(c.dir, 'fifo'), '--rootfs', busybox, 'goals-warm', '/bin/true'], { timeoutMs: 60_000 });
    if (warm.code !== 0) throw new Error(`first spore container failed (${warm.code}): ${warm.stderr.trim()}`);
    fri = await waitForFri(c.runDir, c.sporeLog);
    const keeper = keeperPid(c.runDir);
    if (!Number.isInteger(keeper)) throw new Error(`no keeper.pid in ${c.runDir}`);

    // ------------------------------------------------------------------ ctr run --rm /bin/true
    say(`ctr run --rm /bin/true: spore and runc interleaved, ${cfg.ctrRuns} runs each`);
    const ct = await timeCtrPair(c, busybox, cfg.ctrRuns);
    const rpc = rpcTimes(c.sporeLog);
    const rpcMs: number[] = [];
    const shares: number[] = [];
    const busy: number[] = [];
    const outside: number[] = [];
    ct.ids.forEach((id, i) => {
      const e = rpc.get(id);
      if (e?.create === undefined || e.start === undefined) return;
      rpcMs.push(e.create + e.start);
      shares.push((e.create + e.start) / ct.spore[i]!);
      if (e.busy !== undefined) { busy.push(e.busy); outside.push(ct.spore[i]! - e.busy); }
    });
    r.ctr = { spore: stat(ct.spore), runc: stat(ct.runc), rpc: stat(rpcMs), share: stat(shares), matched: rpcMs.length, busy: stat(busy), outside: stat(outside) };
    say(`ctr: spore p50 ${f(r.ctr.spore.p50)} ms, runc p50 ${f(r.ctr.runc.p50)} ms; Create+Start p50 ${f(r.ctr.rpc.p50)} ms`);

    // ------------------------------------------------------------------ CRI
    try {
      say(`CRI: RunPodSandbox + CreateContainer + StartContainer, spore and runc, CNI and host network, ${cfg.criRuns} rounds`);
      importImages(c, ['pause', 'busybox']);
      cri = criClient(c.address);
      await waitFor('CRI ready', async () => ((await cri!.runtime.status({})).status?.conditions ?? []).every((x) => x.status) || undefined, 15_000);
      const rows: CriRow[] = [];
      for (const handler of ['spore', 'runc'] as const) for (const n of ['cni', 'hostnet'] as const) rows.push({ handler, net: n, total: [], run: [], create: [], start: [] });
      await measureCri(cri, c, rows, cfg.criRuns, cfg.criWarmup);
      process.stderr.write('\n');
      r.cri = rows;
      say(`CRI: ${rows.map((x) => `${x.handler}/${x.net} p50 ${f(pct(x.total, 50), 1)} ms`).join(', ')}`);
    } catch (e) {
      r.notes.push(`CRI rows failed: ${(e as Error).message.split('\n')[0]}`);
    } finally {
      cri?.close();
      cri = undefined;
    }

    // ------------------------------------------------------------------ functions
    await deploy(fri, FUNCTIONS.map((x) => x.name));
    await check(gw, 'hello', FUNCTIONS[0]!.body, 'hello goals');
    await check(gw, 'hello-py', FUNCTIONS[1]!.body, 'hello goals');
    await check(gw, 'slow-init', FUNCTIONS[2]!.body, 'entries');
    if (flag) {
      try {
        say(`parked instances: a second spored with ${flag.flag} ${flag.on}`);
        parked = await startParked(flag, work);
      } catch (e) {
        if (r.parked.available) r.parked.error = (e as Error).message.split('\n')[0]!.slice(0, 300);
        await stopParked(parked);
        parked = undefined;
      }
    }
    const seeds0 = await fri.listSeeds();
    const primary = (list: SeedInfo[], fn: string): SeedInfo | undefined => list.find((s) => s.level === 2 && s.function === fn && s.replicaOf === null);
    const seedBefore = primary(seeds0, 'hello')?.memory?.privateKiB ?? NaN;
    await sleep(1000); // replicas and parked pools settle

    // latency: sequential, the two daemons alternating request by request
    const targets = (fn: string): string[] => [`${gw}/${fn}`, ...(parked ? [`${parked.gw}/${fn}`] : [])];
    const [h, hp] = await seqLatency(targets('hello'), FUNCTIONS[0]!.body, cfg.latencySeconds);
    r.hello = latencies(h!);
    say(`Node hello c=1: p50 ${f(r.hello.stat.p50)} ms p99 ${f(r.hello.stat.p99)} ms${hp ? `; parked p50 ${f(pct(hp.ms, 50))} ms (${hp.parked} of ${hp.ms.length} parked)` : ''}`);
    const [s, sp] = await seqLatency(targets('slow-init'), FUNCTIONS[2]!.body, cfg.latencySeconds);
    r.slowInit = latencies(s!);
    say(`slow-init c=1: p50 ${f(r.slowInit.stat.p50)} ms${sp ? `; parked p50 ${f(pct(sp.ms, 50))} ms (${sp.parked} of ${sp.ms.length} parked)` : ''}`);
    if (r.parked.available && hp && sp) {
      r.parked.hello = latencies(hp);
      r.parked.slowInit = latencies(sp);
    }

    // CPU: idle rate of the tree, then wrk -c1 with the tree's CPU around it. The idle rate
    // is measured once the tree is at rest: 1 s after the last call an idle version's busy
    // replicas are replaced (registry.ts, the idle refresh), work the calls caused, which
    // must not count as the tree's idle rate (it is subtracted from the runs' CPU).
    await sleep(SETTLE_MS);
    const i0 = treeCpuMs(keeper);
    const is = performance.now();
    await sleep(cfg.idleSeconds * 1000);
    const i1 = treeCpuMs(keeper);
    r.idleRate = (i1.ms - i0.ms) / ((performance.now() - is) / 1000);
    r.treeProcesses = i1.processes;
    r.helloCpu = await wrkWithCpu(keeper, r.idleRate, `${gw}/hello`, FUNCTIONS[0]!.body, 1, cfg.latencySeconds);
    say(`CPU: Node hello ${f(r.helloCpu.perInvocationMs)} ms per invocation (${r.helloCpu.wrk.requests} requests; tree of ${i1.processes} processes, idle ${f(r.idleRate)} ms/s)`);
    r.helloPyCpu = await wrkWithCpu(keeper, r.idleRate, `${gw}/hello-py`, FUNCTIONS[1]!.body, 1, cfg.latencySeconds);
    say(`CPU: Python hello ${f(r.helloPyCpu.perInvocationMs)} ms per invocation`);
    if (parked && r.parked.available) {
      await sleep(SETTLE_MS);
      const j0 = treeCpuMs(parked.keeper);
      const js = performance.now();
      await sleep(cfg.idleSeconds * 1000);
      const idle = (treeCpuMs(parked.keeper).ms - j0.ms) / ((performance.now() - js) / 1000);
      r.parked.cpu = await wrkWithCpu(parked.keeper, idle, `${parked.gw}/hello`, FUNCTIONS[0]!.body, 1, cfg.latencySeconds);
      say(`CPU: Node hello parked ${f(r.parked.cpu.perInvocationMs)} ms per invocation`);
      r.parked.phases = await phases(parked.gw, 'hello', FUNCTIONS[0]!.body, cfg.phaseSamples);
    }
    await stopParked(parked);
    if (parked) {
      const left = leakCheck({ match: [parked.dir] }).processes;
      if (left.length) r.cleanup.push(`parked spored left running: ${left.map((p) => `${p.pid} ${p.cmdline.slice(0, 80)}`).join(', ')}`);
    }
    parked = undefined;

    // fresh process per request; the module is copied out of the repository (its package.json says "type": "module")
    for (const file of ['slow-init.js', 'hello.js', 'hello.py']) fs.copyFileSync(path.join(repoRoot, 'examples', file), path.join(work, file));
    r.freshSlowInit = stat(await fresh(path.join(work, 'slow-init.js'), FUNCTIONS[2]!.body, 'entries', cfg.freshRuns, work));
    say(`fresh node slow-init: p50 ${f(r.freshSlowInit.p50)} ms`);
    r.phases = await phases(gw, 'hello', FUNCTIONS[0]!.body, cfg.phaseSamples);

    // ------------------------------------------------------------------ c=24 and the soak
    r.c24 = await wrkWithCpu(keeper, r.idleRate, `${gw}/hello`, FUNCTIONS[0]!.body, 24, cfg.throughputSeconds);
    say(`Node hello c=24: ${f(r.c24.wrk.rps, 1)} req/s, p50 ${f(r.c24.wrk.p50)} ms p99 ${f(r.c24.wrk.p99)} ms`);
    say(`soak: c=24 for ${cfg.soakSeconds} s in 5 windows`);
    r.soak = [];
    const win = Math.max(1, Math.round(cfg.soakSeconds / 5));
    const spored = sporedPid(c.runDir);
    // the floor's throughput between windows: the machine's minutes, so that the drift can be
    // read as a ratio to the floor (a shared PVM host speeds up and slows down under a soak)
    let floorBefore = (await measureForkThroughput(24, SOAK_FLOOR_SECONDS)).forksPerS;
    for (let i = 0; i < 5; i++) {
      const w = await soakWindow(keeper, spored, c.sporeLog, `${gw}/hello`, FUNCTIONS[0]!.body, win);
      const floorAfter = (await measureForkThroughput(24, SOAK_FLOOR_SECONDS)).forksPerS;
      r.soak.push({ ...w, floorForksPerS: (floorBefore + floorAfter) / 2 });
      floorBefore = floorAfter;
    }
    say(`soak: ${r.soak.map((w) => `${f(w.rps, 1)} (floor ${f(w.floorForksPerS, 0)} forks/s)`).join(', ')} req/s`);

    // ------------------------------------------------------------------ memory
    // right after the load, and once the function has been idle long enough for its busy
    // replicas to be replaced (registry.ts: the idle refresh, 1 s after the last call)
    const lineage = (list: SeedInfo[]): string => {
      const first = primary(list, 'hello');
      const reps = list.filter((x) => x.function === 'hello' && x.replicaOf !== null);
      return `${first?.id ?? '?'} (pid ${first?.pid ?? '?'}) ${f((first?.memory?.privateKiB ?? NaN) / 1024)} MiB private, its ${reps.length} replicas ${reps.map((x) => `${f((x.memory?.privateKiB ?? NaN) / 1024)} MiB`).join(', ')}`;
    };
    const seeds1 = await fri.listSeeds();
    const idleSeconds = 3;
    await sleep(idleSeconds * 1000);
    const seeds2 = await fri.listSeeds();
    const nodeSeed = primary(seeds2, 'hello');
    const pySeed = primary(seeds2, 'hello-py');
    r.memory = {
      seedKiB: nodeSeed?.memory?.privateKiB ?? NaN,
      seedBeforeKiB: seedBefore,
      seedLoadedKiB: primary(seeds1, 'hello')?.memory?.privateKiB ?? NaN,
      idleSeconds,
      standaloneKiB: await standaloneKiB('node', path.join(work, 'hello.js'), work),
      pySeedKiB: pySeed?.memory?.privateKiB ?? NaN,
      pyStandaloneKiB: await standaloneKiB('python', path.join(work, 'hello.py'), work),
      seed: lineage(seeds2),
      loaded: lineage(seeds1),
    };
    say(`memory: L2 ${f(r.memory.seedKiB / 1024)} MiB vs standalone ${f(r.memory.standaloneKiB / 1024)} MiB`);
  } finally {
    say('stopping containerd, spored and everything they started');
    await stopAll();
  }
  if (c) {
    const left = leakCheck({ match: [c.dir], envEntry: `SPORE_RUN_DIR=${c.runDir}` }).processes;
    if (left.length) r.cleanup.push(`left running: ${left.map((p) => `${p.pid} ${p.cmdline.slice(0, 80)}`).join(', ')}`);
  }
  fs.rmSync(work, { recursive: true, force: true });
  r.floorEnd = await measureForkFloor(cfg.floor.forks ?? 200, cfg.floor.touchMb ?? 48);
  r.loadEnd = loadAvg();

  const md = report(cfg, r, started, commit);
  process.stdout.write(`\n${md}`);
  if (cfg.out) {
    fs.writeFileSync(cfg.out, md);
    say(`wrote ${cfg.out}`);
  }
  if (cfg.publish) {
    publish(md, shortReport(cfg, r, started, commit));
    say('wrote docs/goals.md and README.md\'s goals block');
  }
  if (cfg.json) {
    process.stdout.write(`${JSON.stringify({ bench: 'goals', quick: cfg.quick, at: started.toISOString(), floor: r.floor, floorEnd: r.floorEnd, goals: goalRows(r).map((g) => ({ metric: g.metric, value: g.value, met: g.met })) })}\n`);
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`[goals] failed: ${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
