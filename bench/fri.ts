// FRI bench: spore's function path (gateway -> nearest seed -> fork -> bind -> run -> respond)
// side by side with the same functions run as a fresh process per request and as
// `ctr run --rm` with runc, in ONE run (issue 3, "What it must show").
//
//   node dist/bench/fri.js [--quick | --tiny] [--seconds N] [--soak SECONDS] [--no-ctr] [--json]
//   (also: bin/spore bench fri ...)   env: RESULTS_DIR (default bench/results)
//   --tiny is a seconds-long smoke profile for integration/bench-fri.test.ts.
//
// What it does, in order:
//  1. starts its own spored (temp run dir, free gateway port, log in the temp dir) and deploys
//     every function for node and python as <language>-<function> (memory 128 MiB, timeout 10 s);
//     checks each once through the gateway (status + body shown in the report).
//  2. spore: wrk (bench/lua/post.lua: POST + JSON body, --latency; p50/p99 from wrk's latency
//     histogram, requests/s from wrk) against the gateway at each concurrency.
//  3. per-phase medians from the x-spore-timings header of PHASE_SAMPLES sequential requests
//     (node hello, python hello).
//  4. L2 seed private memory (spore seeds: memory.privateKiB of the function's primary L2 seed)
//     vs a standalone process that loaded the same module (smaps_rollup Private_Clean+Private_Dirty).
//  5. fresh process per request: bench/fresh/server (compiled) spawns `node runner.cjs <fn>.js` /
//     `python3 runner.py <fn>.py` per request; same wrk, same concurrencies (shorter; a cell is
//     stretched so that a concurrency-c run completes enough requests).
//  6. ctr run --rm + runc per request through a private containerd (integration/harness.ts),
//     node / python rootfs, the functions dir bind-mounted at /fn (ro), c=1, N sequential runs
//     after one warm-up; wall-clock around the ctr client.
//  7. with --soak S: wrk c=24 on node hello in consecutive 30 s windows for S seconds; drift =
//     max |window req/s - mean| / mean.
//  8. markdown report to stdout and bench/results/fri-<UTC stamp>.md, goal lines, and as the
//     last stdout line one JSON object of the key figures.
// Everything it starts is stopped at the end (also on SIGINT/SIGTERM), and the daemon's pools
// (seed processes, netns, cgroups) are checked to be gone.
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { containerdSkipReason, repoRoot, rootfs, startContainerd, which, type Containerd } from '../integration/harness.js';
import { FriClient } from '../protocols/fri/client.js';
import type { SeedInfo } from '../protocols/fri/types.js';
import { children, track, waitExit } from './processes.js';
import { wrk, type WrkResult } from './wrk.js';

// ------------------------------------------------------------------------------------- config

type Lang = 'node' | 'python';
type Mode = 'spore' | 'fresh process' | 'ctr+runc';

const ALL_FUNCTIONS = ['echo', 'json', 'html', 'aes', 'pagerank', 'hello', 'slow-init'] as const;
/** request body per function (the same for every mode) */
const BODIES: Record<string, string> = {
  echo: '{"msg":"hello","list":[1,2,3],"nested":{"a":true}}',
  json: '{"n":200}',
  html: '{"rows":100,"title":"bench"}',
  aes: '{"bytes":65536}',
  pagerank: '{"nodes":300,"iters":20}',
  hello: '{"name":"bench"}',
  'slow-init': '{"k":1}',
};

interface Config {
  profile: 'full' | 'quick' | 'tiny';
  functions: string[];
  languages: Lang[];
  concurrencies: number[];
  /** concurrencies of the fresh-process baseline */
  freshConcurrencies: number[];
  /** wrk duration of a spore cell */
  seconds: number;
  /** wrk duration of a fresh-process cell (minimum; stretched for slow cells at high c) */
  freshSeconds: number;
  /** functions measured with ctr run --rm + runc, and runs per function/language */
  ctrFunctions: string[];
  ctrRuns: number;
  phaseSamples: number;
  soakSeconds: number;
  ctr: boolean;
  json: boolean;
}

function parseArgs(argv: string[]): Config {
  const has = (f: string): boolean => argv.includes(f);
  const num = (f: string): number | undefined => {
    const i = argv.indexOf(f);
    if (i < 0) return undefined;
    const v = Number(argv[i + 1]);
    if (!Number.isFinite(v) || v <= 0) throw new Error(`${f} needs a positive number`);
    return v;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (['--seconds', '--soak'].includes(a)) { i++; continue; }
    if (!['--quick', '--tiny', '--json', '--no-ctr', '--help', '-h'].includes(a)) throw new Error(`unknown argument ${a}`);
  }
  if (has('--help') || has('-h')) {
    process.stdout.write('usage: node dist/bench/fri.js [--quick | --tiny] [--seconds N] [--soak SECONDS] [--no-ctr] [--json]\n');
    process.exit(0);
  }
  const profile = has('--tiny') ? 'tiny' : has('--quick') ? 'quick' : 'full';
  const base: Config =
    profile === 'full'
      ? { profile, functions: [...ALL_FUNCTIONS], languages: ['node', 'python'], concurrencies: [1, 8, 24], freshConcurrencies: [1, 8, 24], seconds: 5, freshSeconds: 3, ctrFunctions: [...ALL_FUNCTIONS], ctrRuns: 10, phaseSamples: 50, soakSeconds: 0, ctr: true, json: false }
      : profile === 'quick'
        ? { profile, functions: ['hello', 'echo', 'slow-init'], languages: ['node', 'python'], concurrencies: [1, 24], freshConcurrencies: [1, 24], seconds: 5, freshSeconds: 2, ctrFunctions: ['hello', 'slow-init'], ctrRuns: 5, phaseSamples: 50, soakSeconds: 0, ctr: true, json: false }
        : { profile, functions: ['hello', 'slow-init'], languages: ['node', 'python'], concurrencies: [1, 24], freshConcurrencies: [1], seconds: 1, freshSeconds: 1, ctrFunctions: ['hello'], ctrRuns: 2, phaseSamples: 10, soakSeconds: 0, ctr: true, json: false };
  const s = num('--seconds');
  if (s !== undefined) {
    base.seconds = Math.max(1, Math.round(s));
    base.freshSeconds = Math.max(1, Math.min(base.freshSeconds, base.seconds));
  }
  base.soakSeconds = Math.round(num('--soak') ?? 0);
  base.ctr = !has('--no-ctr');
  base.json = has('--json');
  return base;
}

// ------------------------------------------------------------------------------------ helpers

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const t0 = Date.now();
const say = (msg: string): void => {
  process.stderr.write(`[fri-bench ${((Date.now() - t0) / 1000).toFixed(0).padStart(3)}s] ${msg}\n`);
};
/** nearest-rank percentile */
function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}
const fmt = (x: number | null | undefined, d = 2): string => (x === null || x === undefined || !Number.isFinite(x) ? '-' : x.toFixed(d));
const ratio = (a: number | undefined, b: number | undefined): number | null =>
  a !== undefined && b !== undefined && Number.isFinite(a) && Number.isFinite(b) && b > 0 ? a / b : null;
const oneLine = (s: string): string => s.replace(/\s*\n\s*/g, ' ⏎ ');
const round = (x: number | null | undefined, d = 3): number | null => (x === null || x === undefined || !Number.isFinite(x) ? null : Number(x.toFixed(d)));

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

function alive(pid: number): boolean {
  try {
    const st = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^\d+ \(.*\) Z /.test(st);
  } catch {
    return false;
  }
}

function privateKiB(pid: number): { privateKiB: number; rssKiB: number } {
  const t = fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  const kb = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(t)?.[1] ?? NaN);
  return { privateKiB: kb('Private_Clean') + kb('Private_Dirty'), rssKiB: kb('Rss') };
}

function rssKiB(pid: number): number {
  try {
    return Number(/^VmRSS:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN);
  } catch {
    return NaN;
  }
}



/** SIGTERM, then SIGKILL after ms; by pid, only processes this bench started */
async function stopChild(c: ChildProcess | undefined, ms: number): Promise<boolean> {
  if (!c || c.pid === undefined) return true;
  if (c.exitCode !== null || c.signalCode !== null) return true;
  c.kill('SIGTERM');
  if (await waitExit(c, ms)) return true;
  c.kill('SIGKILL');
  await waitExit(c, 2000);
  return false;
}

// ------------------------------------------------------------------------------------- spored

interface Spored {
  dir: string;
  child: ChildProcess;
  pid: number;
  gateway: string;
  socket: string;
  client: FriClient;
  seedPids: Set<number>;
}

async function startSpored(dir: string): Promise<Spored> {
  const port = await freePort();
  const gateway = `127.0.0.1:${port}`;
  const socket = path.join(dir, 'fri.sock');
  const out = fs.openSync(path.join(dir, 'spored.out'), 'a');
  const child = track(
    spawn(path.join(repoRoot, 'bin', 'spored'), ['--run-dir', dir, '--state-dir', path.join(dir, 'state'), '--gateway', gateway, '--log', path.join(dir, 'spored.log')], {
      stdio: ['ignore', out, out],
      detached: true, // own process group: a terminal ^C reaches the bench, which stops spored itself
    }),
  );
  fs.closeSync(out);
  if (child.pid === undefined) throw new Error('could not spawn bin/spored');
  const deadline = Date.now() + 30_000;
  while (!fs.existsSync(socket)) {
    if (child.exitCode !== null || Date.now() > deadline) {
      const tail = fs.readFileSync(path.join(dir, 'spored.out'), 'utf8').slice(-2000);
      throw new Error(`spored did not create ${socket} (exit ${child.exitCode})\n${tail}`);
    }
    await sleep(100);
  }
  let client: FriClient | undefined;
  while (!client) {
    try {
      client = await FriClient.connect(socket, { connectTimeoutMs: 2000 });
    } catch (e) {
      if (Date.now() > deadline) throw e;
      await sleep(200);
    }
  }
  // bin/spored is `exec node ...`: the child's pid is the daemon's pid
  return { dir, child, pid: child.pid, gateway, socket, client, seedPids: new Set() };
}

async function deployAll(s: Spored, cfg: Config, fnDir: string): Promise<void> {
  for (const fn of cfg.functions) {
    for (const lang of cfg.languages) {
      const name = `${lang}-${fn}`;
      const code = fs.readFileSync(path.join(fnDir, `${fn}.${lang === 'node' ? 'js' : 'py'}`), 'utf8');
      const deadline = Date.now() + 15_000;
      for (;;) {
        try {
          await s.client.deploy({ name, language: lang, code, handler: 'handler', memoryMiB: 128, timeoutMs: 10_000, env: {} });
          break;
        } catch (e) {
          // the function runtime starts a moment after the FRI socket appears
          if (Date.now() > deadline) throw new Error(`deploy ${name}: ${(e as Error).message}`);
          await sleep(300);
        }
      }
    }
  }
}

async function post(url: string, body: string): Promise<{ status: number; text: string; timings: string | null; ms: number }> {
  const t = performance.now();
  const r = await fetch(url, { method: 'POST', body, headers: { 'content-type': 'application/json' } });
  const text = await r.text();
  return { status: r.status, text, timings: r.headers.get('x-spore-timings'), ms: performance.now() - t };
}

/** seed pids (remembered for the leftover check) and the function's primary L2 seed */
async function seeds(s: Spored): Promise<SeedInfo[]> {
  const list = await s.client.listSeeds();
  for (const x of list) if (x.pid > 0) s.seedPids.add(x.pid);
  return list;
}

interface CleanupReport {
  ok: boolean;
  notes: string[];
}

async function stopSpored(s: Spored): Promise<CleanupReport> {
  const notes: string[] = [];
  try {
    await seeds(s);
  } catch {
    /* daemon already gone */
  }
  s.client.close();
  const graceful = await stopChild(s.child, 20_000);
  if (!graceful) notes.push('spored did not exit within 20 s of SIGTERM; SIGKILLed');
  await sleep(300);
  const leftPids = [...s.seedPids].filter((p) => alive(p));
  if (leftPids.length) notes.push(`seed processes still alive: ${leftPids.join(', ')}`);
  // processes whose command line names the run dir (seeds and instances carry it in argv/env)
  const tag = (s.pid % 0xffff).toString(16).padStart(4, '0');
  let ns: string[] = [];
  try {
    ns = fs.readdirSync('/run/netns').filter((n) => n.startsWith(`sp${tag}-`));
  } catch {
    /* no /run/netns */
  }
  if (ns.length) notes.push(`network namespaces left: ${ns.length} (${ns.slice(0, 4).join(', ')}${ns.length > 4 ? ', ...' : ''})`);
  const cg: string[] = [];
  const roots = ['/sys/fs/cgroup', ...fs.readdirSync('/sys/fs/cgroup').map((d) => path.join('/sys/fs/cgroup', d))];
  for (const r of roots) if (fs.existsSync(path.join(r, 'spore', `fri-${s.pid}`))) cg.push(path.join(r, 'spore', `fri-${s.pid}`));
  if (cg.length) notes.push(`cgroups left: ${cg.join(', ')}`);
  return { ok: notes.length === 0, notes };
}

// ------------------------------------------------------------------------------------ results

interface Cell {
  fn: string;
  lang: Lang;
  mode: Mode;
  c: number;
  p50: number;
  p99: number;
  rps: number;
  requests: number;
  seconds: number;
  errors: string;
  errorCount: number;
  failed?: string;
}
const cells: Cell[] = [];
const cellOf = (fn: string, lang: Lang, mode: Mode, c: number): Cell | undefined =>
  cells.find((x) => x.fn === fn && x.lang === lang && x.mode === mode && x.c === c && !x.failed && x.requests > 0);

interface Check { fn: string; lang: Lang; mode: Mode; status: string; body: string }
const checks: Check[] = [];
const anomalies: string[] = [];

function addWrkCell(fn: string, lang: Lang, mode: Mode, c: number, r: WrkResult): Cell {
  const cell: Cell = { fn, lang, mode, c, p50: r.p50, p99: r.p99, rps: r.rps, requests: r.requests, seconds: r.seconds, errors: r.errorText, errorCount: r.non2xx + r.socketErrors };
  if (r.requests === 0) cell.failed = 'no request completed';
  cells.push(cell);
  if (cell.errorCount > 0) anomalies.push(`${mode} ${lang} ${fn} c=${c}: ${r.errorText} (of ${r.requests} requests)`);
  return cell;
}

// ---------------------------------------------------------------------------------- the bench

async function main(): Promise<void> {
  const cfg = parseArgs(process.argv.slice(2));
  if (process.getuid?.() !== 0) throw new Error('needs root (spored: cgroups, namespaces; containerd)');
  if (!which('wrk')) throw new Error('wrk is not installed (apt-get install wrk)');
  const started = new Date();
  const stamp = started.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'spore-fri-bench-'));
  const runDir = path.join(work, 'run');
  const fnDir = path.join(work, 'fn'); // CommonJS context (no package.json above it), bind-mounted for ctr
  fs.mkdirSync(runDir);
  fs.mkdirSync(fnDir);
  for (const f of fs.readdirSync(path.join(repoRoot, 'examples'))) if (fs.statSync(path.join(repoRoot, 'examples', f)).isFile()) fs.copyFileSync(path.join(repoRoot, 'examples', f), path.join(fnDir, f));
  fs.copyFileSync(path.join(repoRoot, 'bench', 'fresh', 'runner.cjs'), path.join(fnDir, 'runner.cjs'));
  fs.copyFileSync(path.join(repoRoot, 'bench', 'fresh', 'runner.py'), path.join(fnDir, 'runner.py'));
  const load0 = os.loadavg();
  say(`profile ${cfg.profile}: ${cfg.functions.join(', ')} x ${cfg.languages.join('+')} at c=${cfg.concurrencies.join(',')}; spore ${cfg.seconds}s/cell, fresh >=${cfg.freshSeconds}s/cell; work dir ${work}`);

  let spored: Spored | undefined;
  let fresh: ChildProcess | undefined;
  let ctrd: Containerd | undefined;
  let cleanup: CleanupReport = { ok: false, notes: ['not stopped'] };
  let stopping: Promise<void> | undefined;
  const stopAll = (): Promise<void> =>
    (stopping ??= (async () => {
      for (const c of children) if (c !== spored?.child && c !== fresh) c.kill('SIGKILL'); // wrk, standalone processes
      await stopChild(fresh, 3000);
      if (ctrd) await ctrd.stop().catch((e) => anomalies.push(`containerd stop: ${(e as Error).message}`));
      if (spored) {
        try {
          logSizeAtStop = fs.statSync(path.join(spored.dir, 'spored.log')).size;
        } catch {
          /* no log yet */
        }
        cleanup = await stopSpored(spored);
      }
      else cleanup = { ok: true, notes: [] };
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

  const phases: Record<string, Record<string, number>> = {};
  const phaseN: Record<string, number> = {};
  const memory: { fn: string; lang: Lang; standalone: number; standaloneRss: number; seed: number; seedRss: number; seedBefore: number; seedId: string; replicas: number; pct: number }[] = [];
  /** private KiB of each function's primary L2 seed right after deploy + check, before any load */
  const seedBefore = new Map<string, number>();
  const soak: { window: number; rps: number; p50: number; p99: number; errors: string }[] = [];
  let soakRss: { before: number; after: number } | undefined;
  let ctrSkip: string | undefined;
  let logSizeAtStop = Infinity;
  const logErrors = { run: [] as string[], shutdown: [] as string[] };

  try {
    // ------------------------------------------------------------------ 1. spored + deploy
    say('starting spored');
    spored = await startSpored(runDir);
    const gw = `http://${spored.gateway}/invoke`;
    say(`spored pid ${spored.pid}, gateway ${spored.gateway}; deploying ${cfg.functions.length * cfg.languages.length} functions`);
    await deployAll(spored, cfg, fnDir);
    for (const fn of cfg.functions) for (const lang of cfg.languages) {
      const name = `${lang}-${fn}`;
      let r = await post(`${gw}/${name}`, BODIES[fn]!);
      for (let i = 0; i < 2; i++) r = await post(`${gw}/${name}`, BODIES[fn]!); // warm-up, keep the last
      checks.push({ fn, lang, mode: 'spore', status: String(r.status), body: r.text.slice(0, 120) });
      if (r.status !== 200) anomalies.push(`spore ${name} check: HTTP ${r.status} ${r.text.slice(0, 200)}`);
    }

    for (const x of await seeds(spored)) if (x.level === 2 && x.replicaOf === null && x.function && x.memory) seedBefore.set(x.function, x.memory.privateKiB);

    // ------------------------------------------------------------------ 2. spore under wrk
    for (const fn of cfg.functions) for (const lang of cfg.languages) for (const c of cfg.concurrencies) {
      const r = await wrk(`${gw}/${lang}-${fn}`, BODIES[fn]!, c, cfg.seconds);
      addWrkCell(fn, lang, 'spore', c, r);
      say(`spore ${lang} ${fn} c=${c}: p50 ${fmt(r.p50)} ms p99 ${fmt(r.p99)} ms ${fmt(r.rps, 1)} req/s${r.errorText ? ` [${r.errorText}]` : ''}`);
    }

    // ------------------------------------------------------------------ 3. phases
    for (const lang of cfg.languages) {
      const name = `${lang}-hello`;
      if (!cfg.functions.includes('hello')) break;
      const per: Record<string, number[]> = {};
      let n = 0;
      for (let i = 0; i < cfg.phaseSamples; i++) {
        const r = await post(`${gw}/${name}`, BODIES.hello!);
        if (r.status !== 200 || !r.timings) {
          anomalies.push(`phase sample ${name}: HTTP ${r.status}${r.timings ? '' : ' (no x-spore-timings header)'}`);
          continue;
        }
        n++;
        const t = JSON.parse(r.timings) as Record<string, number>;
        for (const [k, v] of Object.entries(t)) (per[k] ??= []).push(v);
        (per.client ??= []).push(r.ms * 1000);
      }
      phases[lang] = Object.fromEntries(Object.entries(per).map(([k, v]) => [k, pct(v, 50)]));
      phaseN[lang] = n;
    }
    say('phases sampled');

    // ------------------------------------------------------------------ 4. memory
    const seedList = await seeds(spored);
    for (const fn of cfg.functions) for (const lang of cfg.languages) {
      const name = `${lang}-${fn}`;
      const l2 = seedList.filter((s) => s.level === 2 && s.function === name);
      const primary = l2.find((s) => s.replicaOf === null) ?? l2[0];
      if (!primary?.memory) {
        anomalies.push(`memory: no L2 seed with memory for ${name}`);
        continue;
      }
      const file = path.join(fnDir, `${fn}.${lang === 'node' ? 'js' : 'py'}`);
      const child = track(
        lang === 'node'
          ? spawn(process.execPath, ['-e', `require(${JSON.stringify(file)}); process.stdout.write('ready\\n'); setInterval(() => {}, 1e9);`], { stdio: ['ignore', 'pipe', 'inherit'], cwd: fnDir })
          : spawn('python3', ['-c', "import importlib.util, sys, time\ns = importlib.util.spec_from_file_location('m', sys.argv[1]); m = importlib.util.module_from_spec(s); s.loader.exec_module(m)\nprint('ready', flush=True); time.sleep(1e9)", file], { stdio: ['ignore', 'pipe', 'inherit'], cwd: fnDir }),
      );
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
      if (!ready) {
        anomalies.push(`memory: standalone ${name} did not get ready`);
        child.kill('SIGKILL');
        continue;
      }
      await sleep(300); // settle after init
      const st = privateKiB(child.pid!);
      child.kill('SIGKILL');
      await waitExit(child, 2000);
      memory.push({ fn, lang, standalone: st.privateKiB, standaloneRss: st.rssKiB, seed: primary.memory.privateKiB, seedRss: primary.memory.rssKiB, seedBefore: seedBefore.get(name) ?? NaN, seedId: primary.id, replicas: l2.length - 1, pct: (100 * primary.memory.privateKiB) / st.privateKiB });
    }
    say('memory measured');

    // ------------------------------------------------------------------ 7. soak (before the baselines load the box differently)
    if (cfg.soakSeconds > 0 && cfg.functions.includes('hello') && cfg.languages.includes('node')) {
      const windows = Math.max(1, Math.round(cfg.soakSeconds / 30));
      const each = Math.max(1, Math.round(cfg.soakSeconds / windows));
      const before = rssKiB(spored.pid);
      say(`soak: ${windows} x ${each}s windows at c=24 on node hello`);
      for (let w = 0; w < windows; w++) {
        const r = await wrk(`${gw}/node-hello`, BODIES.hello!, 24, each);
        soak.push({ window: w + 1, rps: r.rps, p50: r.p50, p99: r.p99, errors: r.errorText });
        if (r.errorText) anomalies.push(`soak window ${w + 1}: ${r.errorText} (of ${r.requests})`);
        say(`soak window ${w + 1}/${windows}: ${fmt(r.rps, 1)} req/s p99 ${fmt(r.p99)} ms`);
      }
      soakRss = { before, after: rssKiB(spored.pid) };
    }

    // ------------------------------------------------------------------ 5. fresh process per request
    const freshPort = await freePort();
    fresh = track(spawn(process.execPath, [path.join(repoRoot, 'dist', 'bench', 'fresh', 'server.js'), '--port', String(freshPort), '--dir', fnDir], { stdio: ['ignore', 'pipe', 'inherit'] }));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('fresh-process server did not start')), 10_000);
      fresh!.stdout!.on('data', (d: Buffer) => {
        if (d.toString().includes('listening')) {
          clearTimeout(timer);
          resolve();
        }
      });
      fresh!.on('exit', (code) => reject(new Error(`fresh-process server exited (${code})`)));
    });
    const fgw = `http://127.0.0.1:${freshPort}/invoke`;
    for (const fn of cfg.functions) for (const lang of cfg.languages) {
      const r = await post(`${fgw}/${lang}-${fn}`, BODIES[fn]!);
      checks.push({ fn, lang, mode: 'fresh process', status: String(r.status), body: r.text.trim().slice(0, 120) });
      if (r.status !== 200) anomalies.push(`fresh ${lang}-${fn} check: HTTP ${r.status} ${r.text.slice(0, 300)}`);
      let c1ms = r.ms;
      for (const c of cfg.freshConcurrencies) {
        // a concurrency-c run of a slow function needs time to complete enough requests on this box
        const need = Math.ceil(((c1ms / 1000) * c * 4) / Math.max(1, os.cpus().length));
        const secs = Math.min(30, Math.max(cfg.freshSeconds, need));
        const w = await wrk(`${fgw}/${lang}-${fn}`, BODIES[fn]!, c, secs);
        const cell = addWrkCell(fn, lang, 'fresh process', c, w);
        if (c === 1 && Number.isFinite(cell.p50)) c1ms = cell.p50;
        say(`fresh ${lang} ${fn} c=${c} (${secs}s): p50 ${fmt(w.p50)} ms p99 ${fmt(w.p99)} ms ${fmt(w.rps, 1)} req/s${w.errorText ? ` [${w.errorText}]` : ''}`);
      }
    }
    await stopChild(fresh, 3000);

    // ------------------------------------------------------------------ 6. ctr run --rm + runc
    ctrSkip = !cfg.ctr ? 'disabled (--no-ctr)' : containerdSkipReason();
    if (!ctrSkip) {
      say('starting a private containerd for ctr run --rm + runc');
      ctrd = await startContainerd({});
      const rootfsOf: Partial<Record<Lang, string>> = {};
      for (const lang of cfg.languages) {
        try {
          rootfsOf[lang] = rootfs(lang);
        } catch (e) {
          anomalies.push(`ctr: ${lang} rootfs: ${(e as Error).message}`);
        }
      }
      let seq = 0;
      for (const fn of cfg.ctrFunctions.filter((f) => cfg.functions.includes(f))) for (const lang of cfg.languages) {
        const rfs = rootfsOf[lang];
        if (!rfs) continue;
        const argv = lang === 'node' ? ['/usr/bin/node', '/fn/runner.cjs', `/fn/${fn}.js`, BODIES[fn]!] : ['/usr/bin/python3', '/fn/runner.py', `/fn/${fn}.py`, BODIES[fn]!];
        const times: number[] = [];
        let failure = '';
        let body = '';
        const t1 = performance.now();
        for (let i = 0; i <= cfg.ctrRuns; i++) {
          const id = `fri-${lang}-${fn}-${process.pid}-${seq++}`;
          const t = performance.now();
          const r = await ctrd.ctr(
            ['run', '--rm', '--fifo-dir', path.join(ctrd.dir, 'fifo'), '--mount', `type=bind,src=${fnDir},dst=/fn,options=rbind:ro`, '--rootfs', rfs, id, ...argv],
            { timeoutMs: 60_000 },
          );
          const ms = performance.now() - t;
          if (r.code !== 0) {
            failure = `exit ${r.code}: ${(r.stderr || r.stdout).trim().slice(-400)}`;
            break;
          }
          body = r.stdout.trim();
          if (i > 0) times.push(ms); // run 0 is the warm-up
        }
        const total = (performance.now() - t1) / 1000;
        checks.push({ fn, lang, mode: 'ctr+runc', status: failure ? 'failed' : 'exit 0', body: oneLine(failure || body).slice(-160) });
        const cell: Cell = { fn, lang, mode: 'ctr+runc', c: 1, p50: pct(times, 50), p99: pct(times, 99), rps: times.length / (times.reduce((a, b) => a + b, 0) / 1000), requests: times.length, seconds: total, errors: failure, errorCount: failure ? 1 : 0 };
        if (failure) {
          cell.failed = failure;
          anomalies.push(`ctr+runc ${lang} ${fn}: ${oneLine(failure)}`);
        }
        cells.push(cell);
        say(`ctr+runc ${lang} ${fn}: p50 ${fmt(cell.p50)} ms p99 ${fmt(cell.p99)} ms (${times.length} runs)${failure ? ` [${failure}]` : ''}`);
      }
    } else {
      say(`ctr+runc baseline skipped: ${ctrSkip}`);
    }
  } finally {
    await stopAll();
    if (spored) {
      try {
        // error/fatal lines, split into "while the bench ran" and "after SIGTERM"
        const buf = fs.readFileSync(path.join(spored.dir, 'spored.log'));
        const cut = Math.min(logSizeAtStop, buf.length);
        const errs = (b: Buffer): string[] => b.toString('utf8').split('\n').filter((l) => /"level":(50|60)/.test(l));
        logErrors.run = errs(buf.subarray(0, cut));
        logErrors.shutdown = errs(buf.subarray(cut));
      } catch {
        /* no log */
      }
    }
    fs.rmSync(work, { recursive: true, force: true });
  }
  for (const [when, lines] of [['while the bench ran', logErrors.run], ['after SIGTERM (shutdown)', logErrors.shutdown]] as const) {
    if (lines.length) anomalies.push(`spored logged ${lines.length} error/fatal line(s) ${when}; last: ${lines.slice(-3).map((l) => '`' + l.slice(0, 300) + '`').join(' ')}`);
  }
  if (!cleanup.ok) anomalies.push(`cleanup: ${cleanup.notes.join('; ')}`);

  // ---------------------------------------------------------------------------------- report
  const speed = (fn: string, lang: Lang, base: Mode, c: number): number | null => ratio(cellOf(fn, lang, base, base === 'ctr+runc' ? 1 : c)?.p50, cellOf(fn, lang, 'spore', c)?.p50);
  const L: string[] = [];
  L.push(`## spore FRI bench (${cfg.profile}) — ${started.toISOString()}`, '');
  L.push(`Host: ${os.cpus().length} cores, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, Linux ${os.release()}, Node ${process.versions.node}; load average at start ${load0.map((x) => x.toFixed(2)).join(' ')}, at the end ${os.loadavg().map((x) => x.toFixed(2)).join(' ')} (other work on the box shows up in the tails).`);
  L.push(`Method: wrk 4.1 (\`-t min(c,2) --latency --timeout 30s\`, bench/lua/post.lua: POST + JSON body); p50/p99 from wrk's latency histogram; spore through its gateway (L2 seeds, fork per request), ${cfg.seconds} s per cell; fresh process per request through bench/fresh/server (spawn \`node runner.cjs\` / \`python3 runner.py\` per request), >= ${cfg.freshSeconds} s per cell; ctr+runc: \`ctr run --rm --rootfs\` (runc, private containerd, function dir bind-mounted ro at /fn), c=1, ${cfg.ctrRuns} runs after 1 warm-up, wall clock around ctr. Speed-up = baseline p50 / spore p50 (ctr+runc: vs spore at c=1).`, '');
  L.push('| function | language | mode | c | p50 ms | p99 ms | req/s | requests | errors | speed-up vs fresh | speed-up vs ctr+runc |');
  L.push('|---|---|---|--:|--:|--:|--:|--:|---|--:|--:|');
  const modeOrder: Mode[] = ['spore', 'fresh process', 'ctr+runc'];
  for (const fn of cfg.functions) for (const lang of cfg.languages) for (const mode of modeOrder) {
    for (const x of cells.filter((y) => y.fn === fn && y.lang === lang && y.mode === mode)) {
      const sf = mode === 'spore' ? speed(fn, lang, 'fresh process', x.c) : null;
      const sc = mode === 'spore' && x.c === 1 ? speed(fn, lang, 'ctr+runc', 1) : null;
      L.push(`| ${fn} | ${lang} | ${mode} | ${x.c} | ${fmt(x.p50)} | ${fmt(x.p99)} | ${fmt(x.rps, 1)} | ${x.requests} | ${x.failed ? `FAILED: ${oneLine(x.failed).slice(0, 100)}` : x.errors || '0'} | ${sf === null ? '' : fmt(sf, 1) + '×'} | ${sc === null ? '' : fmt(sc, 1) + '×'} |`);
    }
  }
  if (ctrSkip) L.push('', `ctr+runc baseline: skipped (${ctrSkip}).`);

  const phaseKeys = ['control', 'fork', 'bind', 'seccomp', 'init', 'execute', 'respond', 'destroy', 'total', 'client'];
  if (Object.keys(phases).length) {
    L.push('', `### Per-phase medians, ms (x-spore-timings of ${cfg.phaseSamples} sequential requests at c=1; "client" = round trip seen by the bench)`, '');
    const langs = Object.keys(phases);
    L.push(`| phase | ${langs.map((l) => `${l} hello (n=${phaseN[l]})`).join(' | ')} |`, `|---|${langs.map(() => '--:').join('|')}|`);
    for (const k of phaseKeys) if (langs.some((l) => phases[l]![k] !== undefined)) L.push(`| ${k} | ${langs.map((l) => fmt((phases[l]![k] ?? NaN) / 1000, 3)).join(' | ')} |`);
  }

  if (memory.length) {
    L.push('', '### L2 seed private memory vs a standalone process (Private_Clean + Private_Dirty from smaps_rollup; seed = primary L2 seed, measured after the spore load)', '');
    L.push('| function | language | standalone private MiB (RSS) | L2 seed private MiB (RSS) | seed | replicas | L2 / standalone | L2 private before load MiB (/ standalone) |', '|---|---|--:|--:|---|--:|--:|--:|');
    for (const m of memory) L.push(`| ${m.fn} | ${m.lang} | ${fmt(m.standalone / 1024, 1)} (${fmt(m.standaloneRss / 1024, 1)}) | ${fmt(m.seed / 1024, 2)} (${fmt(m.seedRss / 1024, 1)}) | ${m.seedId} | ${m.replicas} | ${fmt(m.pct, 1)} % | ${fmt(m.seedBefore / 1024, 2)} (${fmt((100 * m.seedBefore) / m.standalone, 1)} %) |`);
  }

  let drift: number | null = null;
  if (soak.length) {
    const mean = soak.reduce((a, b) => a + b.rps, 0) / soak.length;
    drift = Math.max(...soak.map((w) => (Math.abs(w.rps - mean) / mean) * 100));
    L.push('', `### Soak: node hello at c=24, ${soak.length} windows over ${cfg.soakSeconds} s`, '');
    L.push('| window | req/s | p50 ms | p99 ms | errors |', '|--:|--:|--:|--:|---|');
    for (const w of soak) L.push(`| ${w.window} | ${fmt(w.rps, 1)} | ${fmt(w.p50)} | ${fmt(w.p99)} | ${w.errors || '0'} |`);
    L.push('', `mean ${fmt(mean, 1)} req/s, max drift from the mean ${fmt(drift, 2)} %; spored RSS ${fmt((soakRss?.before ?? NaN) / 1024, 1)} MiB before, ${fmt((soakRss?.after ?? NaN) / 1024, 1)} MiB after.`);
  }

  // goals
  const nh1 = cellOf('hello', 'node', 'spore', 1);
  const nh24 = cellOf('hello', 'node', 'spore', 24);
  const memOf = (fn: string, lang: Lang) => memory.find((m) => m.fn === fn && m.lang === lang);
  const maxMem = memory.length ? Math.max(...memory.map((m) => m.pct)) : null;
  const goals: { text: string; value: number | null | undefined; ok: (v: number) => boolean; unit: string }[] = [
    { text: 'Node hello c=1 p50 <= 3 ms', value: nh1?.p50, ok: (v) => v <= 3, unit: ' ms' },
    { text: 'Node hello c=1 p99 <= 8 ms', value: nh1?.p99, ok: (v) => v <= 8, unit: ' ms' },
    { text: 'Node hello c=24 p99 <= 30 ms', value: nh24?.p99, ok: (v) => v <= 30, unit: ' ms' },
    { text: 'hello >= 8x faster than a fresh process (node, c=1 p50)', value: speed('hello', 'node', 'fresh process', 1), ok: (v) => v >= 8, unit: '×' },
    { text: 'hello >= 8x faster than a fresh process (python, c=1 p50)', value: speed('hello', 'python', 'fresh process', 1), ok: (v) => v >= 8, unit: '×' },
    { text: 'slow-init >= 50x faster than a fresh process (node, c=1 p50)', value: speed('slow-init', 'node', 'fresh process', 1), ok: (v) => v >= 50, unit: '×' },
    { text: 'slow-init >= 50x faster than a fresh process (python, c=1 p50)', value: speed('slow-init', 'python', 'fresh process', 1), ok: (v) => v >= 50, unit: '×' },
    { text: 'throughput drift <= 5 % at c=24 (soak)', value: drift, ok: (v) => v <= 5, unit: ' %' },
    { text: 'L2 seed private memory <= 10 % of standalone (node hello)', value: memOf('hello', 'node')?.pct, ok: (v) => v <= 10, unit: ' %' },
    { text: 'L2 seed private memory <= 10 % of standalone (worst function)', value: maxMem, ok: (v) => v <= 10, unit: ' %' },
  ];
  L.push('', '### Goals', '');
  let met = 0;
  let measured = 0;
  for (const g of goals) {
    if (g.value === null || g.value === undefined || !Number.isFinite(g.value)) {
      L.push(`- not measured: ${g.text}${g.text.includes('soak') ? ' (run with --soak 600)' : ''}`);
      continue;
    }
    measured++;
    const ok = g.ok(g.value);
    if (ok) met++;
    L.push(`- ${ok ? 'met' : 'NOT MET'}: ${g.text} — measured ${fmt(g.value, g.unit === '×' ? 1 : 2)}${g.unit}`);
  }

  if (checks.length) {
    L.push('', '### Response check (one request per function and mode, body truncated)', '');
    L.push('| function | language | mode | status | body |', '|---|---|---|---|---|');
    for (const c of checks) L.push(`| ${c.fn} | ${c.lang} | ${c.mode} | ${c.status} | \`${oneLine(c.body).replace(/\|/g, '\\|').replace(/`/g, "'")}\` |`);
  }
  L.push('', `### Cleanup and anomalies`, '');
  L.push(`- cleanup after SIGTERM to spored: ${cleanup.ok ? 'ok (daemon exited; no seed processes, netns or cgroups of its pools left)' : cleanup.notes.join('; ')}`);
  if (anomalies.length === 0) L.push('- no errors, no non-2xx responses');
  for (const a of anomalies) L.push(`- ${a}`);
  L.push('', `Elapsed: ${((Date.now() - t0) / 1000).toFixed(0)} s.`);

  const md = L.join('\n') + '\n';
  const resultsDir = process.env.RESULTS_DIR ?? path.join(repoRoot, 'bench', 'results');
  fs.mkdirSync(resultsDir, { recursive: true });
  const resultFile = path.join(resultsDir, `fri-${stamp}.md`);
  fs.writeFileSync(resultFile, md);
  process.stdout.write(md + `\nWritten to ${path.relative(process.cwd(), resultFile) || resultFile}\n`);

  const key = (fn: string, lang: Lang, mode: Mode, c: number, k: 'p50' | 'p99' | 'rps') => round(cellOf(fn, lang, mode, c)?.[k]);
  const figures: Record<string, unknown> = {
    bench: 'fri',
    profile: cfg.profile,
    node_hello_c1_p50_ms: key('hello', 'node', 'spore', 1, 'p50'),
    node_hello_c1_p99_ms: key('hello', 'node', 'spore', 1, 'p99'),
    node_hello_c24_p50_ms: key('hello', 'node', 'spore', 24, 'p50'),
    node_hello_c24_p99_ms: key('hello', 'node', 'spore', 24, 'p99'),
    node_hello_c1_rps: key('hello', 'node', 'spore', 1, 'rps'),
    node_hello_c24_rps: key('hello', 'node', 'spore', 24, 'rps'),
    python_hello_c1_p50_ms: key('hello', 'python', 'spore', 1, 'p50'),
    python_hello_c1_p99_ms: key('hello', 'python', 'spore', 1, 'p99'),
    python_hello_c24_p99_ms: key('hello', 'python', 'spore', 24, 'p99'),
    fresh_node_hello_c1_p50_ms: key('hello', 'node', 'fresh process', 1, 'p50'),
    fresh_node_slowinit_c1_p50_ms: key('slow-init', 'node', 'fresh process', 1, 'p50'),
    ctr_node_hello_p50_ms: key('hello', 'node', 'ctr+runc', 1, 'p50'),
    speedup_hello_vs_fresh: round(speed('hello', 'node', 'fresh process', 1), 2),
    speedup_hello_vs_fresh_python: round(speed('hello', 'python', 'fresh process', 1), 2),
    speedup_slowinit_vs_fresh: round(speed('slow-init', 'node', 'fresh process', 1), 2),
    speedup_slowinit_vs_fresh_python: round(speed('slow-init', 'python', 'fresh process', 1), 2),
    speedup_hello_vs_ctr: round(speed('hello', 'node', 'ctr+runc', 1), 2),
    speedup_hello_vs_ctr_python: round(speed('hello', 'python', 'ctr+runc', 1), 2),
    l2_private_pct: round(memOf('hello', 'node')?.pct, 2),
    l2_private_pct_max: round(maxMem, 2),
    phase_node_hello_total_ms: round((phases.node?.total ?? NaN) / 1000),
    phase_node_hello_fork_ms: round((phases.node?.fork ?? NaN) / 1000),
    soak_drift_pct: round(drift, 2),
    goals_met: met,
    goals_measured: measured,
    errors: cells.reduce((a, b) => a + b.errorCount, 0),
    cleanup_ok: cleanup.ok,
    results: resultFile.startsWith(repoRoot + path.sep) ? path.relative(repoRoot, resultFile) : resultFile,
    elapsed_s: Math.round((Date.now() - t0) / 1000),
  };
  process.stdout.write(JSON.stringify(figures) + '\n');
}

main().catch((e) => {
  process.stderr.write(`[fri-bench] failed: ${(e as Error).stack ?? e}\n`);
  process.exit(1);
});
