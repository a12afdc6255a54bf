// Kill storm: `ctr run --rm` loops through a private containerd while spored is killed -9
// every 0.5-2.5 s, and every run's exit code and output are checked. It is how two crash
// bugs were found on 2026-12-01 (a Create cut short twice lost its output; concurrent first
// containers hung), each within two minutes; both are fixed, and each has a test in CI.
//
//   node dist/bench/kill-storm.js [--seconds 120] [--loops 4] [--keep-logs DIR]   (root; not in CI)
//
// Prints one line per bad run (exit code other than 7, or its output missing), one per thing
// left behind at the end (the namespace's cgroup dirs, task files), and a summary; exits 1 if
// any run was bad or anything was left. --keep-logs copies spored's and containerd's logs there first.
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { rootfs, startContainerd, type Containerd } from '../integration/harness.js';
import { benchArgs } from './args.js';

const flags = benchArgs(process.argv.slice(2), 'usage: node dist/bench/kill-storm.js [--seconds 120] [--loops 4] [--keep-logs DIR]   (root; not in CI)', {
  seconds: { type: 'number', default: 120, help: 'how long the storm lasts' },
  loops: { type: 'number', default: 4, help: 'concurrent `ctr run --rm` loops' },
  'keep-logs': { type: 'string', help: "copy spored's and containerd's logs to DIR" },
});
const SECONDS = flags.seconds;
const LOOPS = flags.loops;
const KEEP_LOGS = flags['keep-logs'];
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Run { id: string; code: number | null; ok: boolean; ms: number; stderr: string }

function sporedPid(c: Containerd): number {
  try { return Number(readFileSync(join(c.runDir, 'spored.pid'), 'utf8').trim().split(/\s+/)[0]); } catch { return 0; }
}

/**
 * The namespace's cgroup dirs (ctr's cgroupsPath is /<namespace>/<id>) in every hierarchy,
 * and the run dir's task files of the namespace (records, .creating, temp files).
 */
function leftBehind(c: Containerd): string[] {
  const out: string[] = [];
  for (const h of readdirSync('/sys/fs/cgroup', { withFileTypes: true })) {
    if (!h.isDirectory()) continue;
    for (const dir of [join('/sys/fs/cgroup', h.name, c.namespace), join('/sys/fs/cgroup', h.name, 'spore', c.namespace)]) if (existsSync(dir)) out.push(dir);
  }
  try { for (const f of readdirSync(join(c.runDir, 'tasks', c.namespace))) if (!f.endsWith('.deleted')) out.push(join(c.runDir, 'tasks', c.namespace, f)); } catch { /* none */ }
  return out;
}

async function main(): Promise<void> {
  const c = await startContainerd();
  const busybox = rootfs('busybox');
  const runs: Run[] = [];
  const left: string[] = [];
  let stop = false;
  // every loop's first run starts spore (concurrent first starts are part of the test)
  const loop = async (w: number): Promise<void> => {
    for (let i = 0; !stop; i++) {
      const id = `ks${w}-${i}`;
      const t0 = Date.now();
      const r = await c.ctr(['run', '--rm', '--runtime', 'io.containerd.spore.v2', '--rootfs', busybox, id, '/bin/sh', '-c', `echo out-${id}; exit 7`], { timeoutMs: 60_000 });
      runs.push({ id, code: r.code, ok: r.code === 7 && r.stdout === `out-${id}\n`, ms: Date.now() - t0, stderr: r.stderr.trim().slice(0, 200) });
    }
  };
  const loops = Array.from({ length: LOOPS }, (_, w) => loop(w));
  let kills = 0;
  try {
    await sleep(3000);
    const end = Date.now() + SECONDS * 1000;
    while (Date.now() < end) {
      await sleep(500 + Math.random() * 2000);
      const pid = sporedPid(c);
      if (pid > 0) { try { process.kill(pid, 'SIGKILL'); kills++; } catch { /* restarting */ } }
    }
  } finally {
    stop = true;
    await Promise.all(loops);
    if (KEEP_LOGS) {
      mkdirSync(KEEP_LOGS, { recursive: true });
      copyFileSync(c.sporeLog, join(KEEP_LOGS, 'spored.log'));
      copyFileSync(join(c.dir, 'containerd.log'), join(KEEP_LOGS, 'containerd.log'));
    }
    // every run ended (--rm): what a Create or Delete cut short left behind, while spore is still up
    // (the cut-short clean-up may still be running after the last kill: a few seconds)
    for (let i = 0; i < 50 && leftBehind(c).length > 0; i++) await sleep(100);
    left.push(...leftBehind(c));
    await c.stop();
  }
  const bad = runs.filter((r) => !r.ok);
  for (const b of bad) process.stdout.write(`bad: ${JSON.stringify(b)}\n`);
  for (const l of left) process.stdout.write(`left behind: ${l}\n`);
  const ms = runs.map((r) => r.ms).sort((a, b) => a - b);
  process.stdout.write(`kill storm: ${runs.length} runs in ${LOOPS} loops, ${kills} kills of spored in ${SECONDS} s, ${bad.length} bad, ${left.length} left behind; run p50 ${ms[ms.length >> 1] ?? NaN} ms, max ${ms.at(-1) ?? NaN} ms\n`);
  if (bad.length || left.length) process.exitCode = 1;
}

main().catch((e: unknown) => { process.stderr.write(`kill-storm: ${(e as Error).stack ?? String(e)}\n`); process.exit(1); });
