// CRI path start latency, spore vs runc through the same containerd CRI plugin, in one run:
// wall-clock ms of RunPodSandbox + CreateContainer + StartContainer (container running), the
// kubelet's cold-start path for a one-container pod. Rows: handler x network mode
//   cni      pod network from the CNI bridge plugin (what a cluster does; CNI time is in both)
//   hostnet  pod in the node's network namespace (no CNI: runtime + CRI cost only)
// Method: a private containerd (integration/harness.ts, cri: true) with local images
// (scripts/build-images.sh busybox pause); per row one verification run, WARMUP warm-ups,
// then RUNS interleaved rounds (each round runs every row once). Each pod is torn down
// (StopPodSandbox + RemovePodSandbox) after it is measured, outside the timed section.
// Percentiles are nearest-rank. Results: bench/results/cri-<stamp>.md (+ printed).
// Usage: bench/cri.sh   env: RUNS=20 WARMUP=3 ONLY=regex (e.g. ONLY=spore, ONLY=hostnet) RESULTS_DIR
//        KEEP_LOGS=<dir> copies spored.log and containerd.log there before cleanup
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ContainerState } from '../fri-proto/gen/cri/runtime/v1/api_pb.js';
import { criClient, type CriClient } from '../integration/cri-client.js';
import { containerConfig, importImages, podConfig, waitFor } from '../integration/cri-env.js';
import { containerdSkipReason, repoRoot, startContainerd, type Containerd } from '../integration/harness.js';

const RUNS = Number(process.env.RUNS ?? 20);
const WARMUP = Number(process.env.WARMUP ?? 3);
const ONLY = new RegExp(process.env.ONLY ?? '.');
const RESULTS_DIR = process.env.RESULTS_DIR ?? path.join(repoRoot, 'bench', 'results');

export interface Row { handler: 'spore' | 'runc'; net: 'cni' | 'hostnet'; total: number[]; run: number[]; create: number[]; start: number[]; error?: string }

const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
};
const f = (x: number): string => (Number.isFinite(x) ? x.toFixed(1) : '-');

export async function onePod(cri: CriClient, c: Containerd, row: Row, n: number, record: boolean): Promise<void> {
  const logDirectory = path.join(c.dir, 'bench-logs', `${row.handler}-${row.net}-${n}`);
  fs.mkdirSync(logDirectory, { recursive: true });
  const config = podConfig({ name: `b-${row.handler}-${row.net}-${n}`, logDirectory, cgroupRoot: c.cri!.cgroupRoot });
  if (row.net === 'hostnet') {
    config.linux!.securityContext!.namespaceOptions!.network = 2; // NODE
    config.hostname = ''; // the kubelet sets no hostname for host-network pods (no own UTS namespace)
  }
  const cc = containerConfig({ name: 'app', command: ['/bin/sleep', '1000'] });
  if (row.net === 'hostnet') cc.linux!.securityContext!.namespaceOptions!.network = 2;
  const t0 = performance.now();
  const { podSandboxId } = await cri.runtime.runPodSandbox({ config, runtimeHandler: row.handler });
  const t1 = performance.now();
  let containerId = '';
  try {
    containerId = (await cri.runtime.createContainer({ podSandboxId, config: cc, sandboxConfig: config })).containerId;
    const t2 = performance.now();
    await cri.runtime.startContainer({ containerId });
    const t3 = performance.now();
    const st = (await cri.runtime.containerStatus({ containerId })).status;
    if (st?.state !== ContainerState.CONTAINER_RUNNING) throw new Error(`container not running after StartContainer (state ${st?.state})`);
    if (record) {
      row.run.push(t1 - t0);
      row.create.push(t2 - t1);
      row.start.push(t3 - t2);
      row.total.push(t3 - t0);
    }
  } finally {
    await cri.runtime.stopPodSandbox({ podSandboxId });
    await cri.runtime.removePodSandbox({ podSandboxId });
  }
}

/**
 * One verification run and `warmup` warm-ups per row, then `runs` interleaved rounds (every row
 * once per round); samples go into the rows, a failing row keeps its error and is skipped.
 * Also used by bench/goals.ts.
 */
export async function measureCri(cri: CriClient, c: Containerd, rows: Row[], runs: number, warmup: number): Promise<void> {
  for (const r of rows) {
    try {
      await onePod(cri, c, r, 0, false);
      for (let i = 0; i < warmup; i++) await onePod(cri, c, r, 1 + i, false);
    } catch (e) {
      r.error = (e as Error).message;
      console.error(`[cri-bench] ${r.handler}/${r.net} FAILED: ${r.error}`);
    }
  }
  for (let i = 0; i < runs; i++) {
    for (const r of rows) {
      if (r.error) continue;
      try {
        await onePod(cri, c, r, 100 + i, true);
      } catch (e) {
        r.error = (e as Error).message;
      }
    }
    process.stderr.write(`[cri-bench] round ${i + 1}/${runs}\r`);
  }
}

async function main(): Promise<void> {
  const skip = containerdSkipReason();
  if (skip) throw new Error(`cannot run: ${skip}`);
  const rows: Row[] = [];
  for (const handler of ['spore', 'runc'] as const) for (const net of ['cni', 'hostnet'] as const) {
    if (ONLY.test(`${handler}/${net}`)) rows.push({ handler, net, total: [], run: [], create: [], start: [] });
  }
  if (rows.length === 0) throw new Error(`ONLY=${process.env.ONLY} matches none of spore/cni, spore/hostnet, runc/cni, runc/hostnet`);
  const c = await startContainerd({ cri: true });
  const sporeRpc = { create: [] as number[], start: [] as number[] };
  let cri: CriClient | undefined;
  const started = new Date();
  try {
    importImages(c, ['pause', 'busybox']);
    cri = criClient(c.address);
    await waitFor('CRI ready', async () => ((await cri!.runtime.status({})).status?.conditions ?? []).every((x) => x.status) || undefined, 15_000);
    await measureCri(cri, c, rows, RUNS, WARMUP);
    process.stderr.write('\n');
    // spore's own share: the Create and Start rpc times spored logged (ms), per measured container
    for (const l of fs.readFileSync(c.sporeLog, 'utf8').split('\n')) {
      if (!l.includes('"msg":"rpc"')) continue;
      try {
        const j = JSON.parse(l) as { method?: string; ms?: number; execId?: string };
        if (j.execId || typeof j.ms !== 'number') continue;
        if (j.method === 'create' || j.method === 'Create') sporeRpc.create.push(j.ms);
        if (j.method === 'start' || j.method === 'Start') sporeRpc.start.push(j.ms);
      } catch {
        /* not json */
      }
    }
  } finally {
    cri?.close();
    // a log that is not there (no spore row ran) must not keep containerd running
    if (process.env.KEEP_LOGS) {
      for (const f of [c.sporeLog, c.logFile]) {
        try { fs.copyFileSync(f, path.join(process.env.KEEP_LOGS, path.basename(f))); } catch (e) { process.stderr.write(`[cri-bench] not kept: ${(e as Error).message}\n`); }
      }
    }
    await c.stop();
  }

  const lines: string[] = [];
  lines.push(`# CRI bench ${started.toISOString()}`, '');
  lines.push(`RunPodSandbox + CreateContainer + StartContainer (busybox \`sleep 1000\`, pause image sandbox) through containerd ${(await import('node:child_process')).execFileSync('containerd', ['--version'], { encoding: 'utf8' }).trim().split(' ')[2]} CRI,`);
  lines.push(`handler \`spore\` (io.containerd.spore.v2) vs \`runc\` (io.containerd.runc.v2). RUNS=${RUNS} WARMUP=${WARMUP}, interleaved; ms; nearest-rank percentiles.`, '');
  lines.push('| handler | network | n | total p50 | total p90 | RunPodSandbox p50 | CreateContainer p50 | StartContainer p50 | total p50 vs runc |');
  lines.push('|---|---|---|---|---|---|---|---|---|');
  for (const r of rows) {
    if (r.error && r.total.length === 0) { lines.push(`| ${r.handler} | ${r.net} | 0 | FAILED: ${r.error.replace(/\|/g, '/')} | | | | | |`); continue; }
    const base = rows.find((x) => x.handler === 'runc' && x.net === r.net);
    const ratio = base && base.total.length ? pct(r.total, 50) / pct(base.total, 50) : NaN;
    lines.push(`| ${r.handler} | ${r.net} | ${r.total.length} | ${f(pct(r.total, 50))} | ${f(pct(r.total, 90))} | ${f(pct(r.run, 50))} | ${f(pct(r.create, 50))} | ${f(pct(r.start, 50))} | ${Number.isFinite(ratio) ? ratio.toFixed(2) + 'x' : '-'} |`);
  }
  if (sporeRpc.create.length > 0) {
    lines.push('', `spored's share (all spore tasks incl. warm-ups, sandbox and app containers; n=${sporeRpc.create.length}): Create rpc p50 ${f(pct(sporeRpc.create, 50))} p90 ${f(pct(sporeRpc.create, 90))} ms, Start rpc p50 ${f(pct(sporeRpc.start, 50))} p90 ${f(pct(sporeRpc.start, 90))} ms.`);
  }
  const out = lines.join('\n') + '\n';
  console.log(out);
  fs.mkdirSync(RESULTS_DIR, { recursive: true });
  const file = path.join(RESULTS_DIR, `cri-${started.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z')}.md`);
  fs.writeFileSync(file, out);
  console.error(`[cri-bench] wrote ${file}`);
}

// run as a program (bench/cri.sh), not when bench/goals.ts imports measureCri
if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
