// The fuzz runner and bench: runs each target under Jazzer.js (libFuzzer, coverage-guided over
// the instrumented JavaScript) in its own process, seeded from fuzz/corpus/<target>/, and
// prints per target the inputs executed, the time, the coverage libFuzzer reports and what was
// found. Exit status 1 when any target found something (or failed to run).
//
//   node dist/fuzz/run.js --target all --runs 100000          (the bench; npm run fuzz:bench)
//   node dist/fuzz/run.js --target gateway,oci --max-time 600 (a longer campaign)
//   node dist/fuzz/run.js --target ttrpc --runs 2000 --ci     (test/fuzz.test.ts)
//
// Options:
//   --target T[,T..]|all   targets (ttrpc, fri, gateway, oci, packages)
//   --runs N               inputs per target, seed corpus included (libFuzzer -runs)
//   --max-time S           stop each target after S seconds (libFuzzer -max_total_time)
//   --work DIR             where new corpus entries and crash files go (default fuzz/.work);
//                          with --ci a fresh temp dir, removed afterwards
//   --seed N               libFuzzer's random seed (default: random)
//   --json FILE            also write the results as JSON
//   --verbose              pass libFuzzer's output through
// Wall clock per target: --max-time + 120 s, or 30 min; past it the target counts as hung.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

export const TARGETS = ['ttrpc', 'fri', 'gateway', 'oci', 'packages'] as const;
export type TargetName = (typeof TARGETS)[number];

interface TargetConfig {
  /** substrings of the paths Jazzer.js instruments (coverage and compare hooks) */
  includes: string[];
  /** target is synchronous: libFuzzer calls it on its own thread (faster; -timeout works) */
  sync: boolean;
  maxLen: number;
  dict?: string;
}

const PROTOBUF = ['@bufbuild/protobuf/dist/esm/from-binary.js', '@bufbuild/protobuf/dist/esm/wire/'];
export const CONFIG: Record<TargetName, TargetConfig> = {
  ttrpc: { includes: ['dist/protocols/ttrpc/', 'dist/task/service.js', 'dist/sys/errors.js', ...PROTOBUF], sync: false, maxLen: 8192 },
  fri: { includes: ['dist/protocols/fri/', 'dist/sys/errors.js', ...PROTOBUF], sync: false, maxLen: 4096 },
  gateway: { includes: ['dist/daemon/gateway.js', 'dist/protocols/fri/validate.js', 'dist/sys/errors.js'], sync: false, maxLen: 4096, dict: 'http.dict' },
  oci: { includes: ['dist/protocols/oci/', 'dist/engines/process/plan.js', 'dist/pools/seccomp.js'], sync: true, maxLen: 8192, dict: 'oci.dict' },
  packages: { includes: ['dist/functions/packages.js', 'node_modules/tar/dist/esm/', 'node_modules/yauzl/'], sync: false, maxLen: 65536 },
};

export interface TargetResult {
  target: TargetName;
  ok: boolean;
  inputs: number;
  seconds: number;
  execPerSec: number;
  /** libFuzzer's "cov": instrumented edges (JS branches) reached */
  cov: number;
  /** libFuzzer's "ft": features (edges x hit-count buckets) */
  ft: number;
  /** instrumented edges loaded when fuzzing started (the denominator of cov, roughly) */
  edges: number;
  corpus: number;
  crashes: number;
  hangs: number;
  exitCode: number | null;
  /** the first lines of what was found, and the files the inputs were written to */
  findings: string[];
  artifacts: string[];
  error?: string;
}

const here = path.dirname(fileURLToPath(import.meta.url)); // <repo>/dist/fuzz
export const REPO = path.resolve(here, '..', '..');

export interface RunOptions {
  runs?: number;
  maxTime?: number;
  work: string;
  seed?: number;
  verbose?: boolean;
  /** extra libFuzzer flags */
  extra?: string[];
  /** wall-clock limit (ms) for the target process */
  wallMs?: number;
}

export function runTarget(target: TargetName, o: RunOptions): Promise<TargetResult> {
  const cfg = CONFIG[target];
  const work = path.join(o.work, target);
  const corpusOut = path.join(work, 'corpus');
  const artifacts = path.join(work, 'artifacts');
  fs.mkdirSync(corpusOut, { recursive: true });
  fs.mkdirSync(artifacts, { recursive: true });
  const libFuzzer = [
    `-max_len=${cfg.maxLen}`,
    `-artifact_prefix=${artifacts}/`,
    '-print_final_stats=1',
    '-rss_limit_mb=4096',
  ];
  if (o.runs !== undefined) libFuzzer.push(`-runs=${o.runs}`);
  if (o.maxTime !== undefined) libFuzzer.push(`-max_total_time=${o.maxTime}`);
  if (o.seed !== undefined) libFuzzer.push(`-seed=${o.seed}`);
  if (cfg.dict) libFuzzer.push(`-dict=${path.join(REPO, 'fuzz', 'dict', cfg.dict)}`);
  libFuzzer.push(...(o.extra ?? []));
  const args = [
    '--require', path.join(REPO, 'fuzz', 'jazzer', 'load-addon.cjs'),
    path.join(REPO, 'node_modules', '@jazzer.js', 'core', 'dist', 'cli.js'),
    path.join(REPO, 'dist', 'fuzz', 'targets', `${target}.js`),
    corpusOut,
    path.join(REPO, 'fuzz', 'corpus', target),
    ...cfg.includes.flatMap((i) => ['-i', i]),
    ...(cfg.sync ? ['--sync'] : []),
    '--timeout', '10000',
    '--',
    ...libFuzzer,
  ];
  const started = performance.now();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, args, {
      cwd: work,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, SPORE_FUZZ_TMP: work, NODE_OPTIONS: '' },
    });
    let out = '';
    const take = (b: Buffer): void => {
      const s = b.toString();
      out += s;
      if (out.length > 4_000_000) out = out.slice(-2_000_000);
      if (o.verbose) process.stderr.write(s);
    };
    child.stdout.on('data', take);
    child.stderr.on('data', take);
    let timedOut = false;
    const wall = setTimeout(() => { timedOut = true; child.kill('SIGKILL'); }, o.wallMs ?? 30 * 60_000);
    child.on('close', (code) => {
      clearTimeout(wall);
      resolve(parse(target, out, code, (performance.now() - started) / 1000, timedOut, artifacts));
    });
    child.on('error', (e) => {
      clearTimeout(wall);
      resolve({ ...parse(target, out, null, 0, false, artifacts), ok: false, error: e.message });
    });
  });
}

function lastMatch(text: string, re: RegExp): RegExpExecArray | null {
  let m: RegExpExecArray | null = null;
  const g = new RegExp(re.source, re.flags.includes('g') ? re.flags : `${re.flags}g`);
  for (let x = g.exec(text); x !== null; x = g.exec(text)) m = x;
  return m;
}

export function parse(target: TargetName, out: string, exitCode: number | null, seconds: number, timedOut: boolean, artifactDir: string): TargetResult {
  const status = lastMatch(out, /^#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+) corp: (\d+)/m);
  const executed = /stat::number_of_executed_units:\s*(\d+)/.exec(out);
  const done = lastMatch(out, /^Done (\d+) runs in (\d+) second/m);
  const loaded = [...out.matchAll(/INFO: Loaded \d+ modules\s+\((\d+) inline 8-bit counters\)/g)];
  const edges = loaded.reduce((n, m) => n + Number(m[1]), 0);
  const artifacts = fs.existsSync(artifactDir) ? fs.readdirSync(artifactDir).map((f) => path.join(artifactDir, f)) : [];
  const crashFiles = artifacts.filter((f) => /\/(crash|oom|leak)-/.test(f));
  const hangFiles = artifacts.filter((f) => /\/(timeout|slow-unit)-/.test(f));
  const findingText: string[] = [];
  const hung = timedOut || /ALARM: working on the last Unit|hang: /.test(out) || hangFiles.length > 0;
  if (exitCode !== 0 || timedOut) {
    const lines = out.split('\n');
    const at = lines.findIndex((l) => /==\d+== (Uncaught Exception|Segmentation|ERROR)|FuzzFinding|ALARM:|Jazzer.js: Unexpected|Error:/.test(l));
    findingText.push(...lines.slice(Math.max(at, 0), Math.max(at, 0) + 12).filter((l) => l.trim() !== ''));
    if (timedOut) findingText.unshift('the target process passed its wall-clock limit and was killed (hang)');
  }
  const inputs = executed ? Number(executed[1]) : done ? Number(done[1]) : status ? Number(status[1]) : 0;
  const crashes = exitCode !== 0 && !hung ? Math.max(1, crashFiles.length) : crashFiles.length;
  const hangs = hung ? Math.max(1, hangFiles.length) : 0;
  const ok = exitCode === 0 && !timedOut && crashes === 0 && hangs === 0 && status !== null;
  return {
    target, ok, inputs, seconds, execPerSec: seconds > 0 ? inputs / seconds : 0,
    cov: status ? Number(status[2]) : 0, ft: status ? Number(status[3]) : 0, edges, corpus: status ? Number(status[4]) : 0,
    crashes, hangs, exitCode, findings: findingText, artifacts,
    ...(status === null && exitCode === 0 ? { error: 'no libFuzzer status line in the output' } : {}),
  };
}

export function table(results: TargetResult[]): string {
  const rows = [['target', 'inputs', 'time (s)', 'exec/s', 'cov (edges)', 'ft', 'corpus', 'crashes', 'hangs', 'result']];
  for (const r of results) {
    rows.push([
      r.target, String(r.inputs), r.seconds.toFixed(1), r.execPerSec.toFixed(0), `${r.cov} / ${r.edges}`, String(r.ft), String(r.corpus),
      String(r.crashes), String(r.hangs), r.ok ? 'ok' : r.error ? `error: ${r.error}` : 'FINDING',
    ]);
  }
  const w = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r, n) => {
    const line = r.map((c, i) => (i === 0 || i === r.length - 1 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join('  ');
    return n === 0 ? `${line}\n${w.map((x) => '-'.repeat(x)).join('  ')}` : line;
  }).join('\n');
}

function parseArgs(argv: string[]): { targets: TargetName[]; o: RunOptions; json?: string; ci: boolean } {
  const get = (name: string): string | undefined => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const t = get('--target') ?? 'all';
  const targets = (t === 'all' ? [...TARGETS] : t.split(',')) as TargetName[];
  for (const x of targets) if (!TARGETS.includes(x)) throw new Error(`unknown target ${x}; use ${TARGETS.join(', ')} or all`);
  const num = (name: string): number | undefined => {
    const v = get(name);
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) throw new Error(`${name} wants a non-negative integer, got ${v}`);
    return n;
  };
  const ci = argv.includes('--ci');
  const runs = num('--runs');
  const maxTime = num('--max-time');
  if (runs === undefined && maxTime === undefined) throw new Error('give --runs N and/or --max-time S');
  const work = get('--work') ?? (ci ? fs.mkdtempSync(path.join(os.tmpdir(), 'spore-fuzz-')) : path.join(REPO, 'fuzz', '.work'));
  const seed = num('--seed');
  const o: RunOptions = { work, verbose: argv.includes('--verbose') };
  if (runs !== undefined) o.runs = runs;
  if (maxTime !== undefined) {
    o.maxTime = maxTime;
    o.wallMs = (maxTime + 120) * 1000;
  }
  if (seed !== undefined) o.seed = seed;
  const json = get('--json');
  return json === undefined ? { targets, o, ci } : { targets, o, ci, json };
}

async function main(): Promise<void> {
  const { targets, o, json, ci } = parseArgs(process.argv.slice(2));
  const results: TargetResult[] = [];
  for (const t of targets) {
    process.stderr.write(`[fuzz] ${t}: ${o.runs !== undefined ? `${o.runs} runs` : ''}${o.maxTime !== undefined ? ` max ${o.maxTime} s` : ''}\n`);
    const r = await runTarget(t, o);
    results.push(r);
    if (!r.ok) {
      process.stderr.write(`[fuzz] ${t}: ${r.error ?? 'FINDING'}\n${r.findings.map((l) => `    ${l}`).join('\n')}\n`);
      for (const a of r.artifacts) process.stderr.write(`    input: ${a} (base64 ${fs.readFileSync(a).toString('base64').slice(0, 400)})\n`);
    }
  }
  console.log(table(results));
  const found = results.filter((r) => !r.ok);
  console.log(`fuzz: ${results.length - found.length} passed, ${found.length} failed`);
  if (json) fs.writeFileSync(json, JSON.stringify(results, null, 2));
  if (ci && found.length === 0) fs.rmSync(o.work, { recursive: true, force: true });
  process.exitCode = found.length > 0 ? 1 : 0;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((e: unknown) => {
    console.error(`fuzz: ${(e as Error).message}`);
    process.exitCode = 2;
  });
}
