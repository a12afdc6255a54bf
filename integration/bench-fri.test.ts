// bench/fri.ts end to end in its seconds-long profile (--tiny): starts its own spored, drives
// the gateway with wrk, runs the fresh-process and (if containerd is there) ctr+runc baselines,
// and must end its stdout with one JSON line of sane figures and a clean shutdown.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { containerdSkipReason, which } from '../dist/integration/harness.js';

const repo = fileURLToPath(new URL('..', import.meta.url));
const bench = join(repo, 'dist', 'bench', 'fri.js');
const skip = process.getuid?.() !== 0 ? 'needs root' : !which('wrk') ? 'wrk not installed' : !existsSync(bench) ? 'dist/bench/fri.js not built (npx tsc -p .)' : undefined;
if (skip) console.warn(`[bench-fri.test] skipped: ${skip}`);

describe.skipIf(skip !== undefined)('bench/fri.ts --tiny', () => {
  const results = mkdtempSync(join(tmpdir(), 'spore-fri-bench-results-'));
  afterAll(() => rmSync(results, { recursive: true, force: true }));

  it('ends its stdout with one JSON line of sane figures', async () => {
    const { code, stdout, stderr } = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, [bench, '--tiny', '--json'], { env: { ...process.env, RESULTS_DIR: results }, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
      child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
      const timer = setTimeout(() => child.kill('SIGTERM'), 52_000); // the bench stops its daemon on SIGTERM
      child.on('close', (c) => {
        clearTimeout(timer);
        resolve({ code: c, stdout, stderr });
      });
    });
    expect(code, stderr.slice(-3000)).toBe(0);
    const lines = stdout.trimEnd().split('\n');
    const j = JSON.parse(lines[lines.length - 1]!) as Record<string, unknown>;
    const positive = [
      'node_hello_c1_p50_ms', 'node_hello_c1_p99_ms', 'node_hello_c24_p99_ms', 'node_hello_c1_rps',
      'python_hello_c1_p50_ms', 'fresh_node_hello_c1_p50_ms', 'speedup_hello_vs_fresh', 'speedup_slowinit_vs_fresh',
      'l2_private_pct', 'phase_node_hello_total_ms',
    ];
    if (!containerdSkipReason()) positive.push('ctr_node_hello_p50_ms', 'speedup_hello_vs_ctr');
    for (const k of positive) {
      expect(typeof j[k], k).toBe('number');
      expect(j[k] as number, k).toBeGreaterThan(0);
      expect(Number.isFinite(j[k]), k).toBe(true);
    }
    expect(j.node_hello_c1_p99_ms as number).toBeGreaterThanOrEqual(j.node_hello_c1_p50_ms as number);
    expect(j.node_hello_c1_p50_ms as number).toBeLessThan(1000);
    // a seed-forked invoke must beat a fresh process by some margin, even on a loaded box
    expect(j.speedup_hello_vs_fresh as number).toBeGreaterThan(1);
    expect(j.soak_drift_pct).toBeNull();
    expect(j.errors).toBe(0);
    expect(j.cleanup_ok).toBe(true);
    // the markdown report was written where RESULTS_DIR says, with the table
    expect(existsSync(j.results as string)).toBe(true);
    const md = readFileSync(j.results as string, 'utf8');
    expect(md).toContain('| function | language | mode | c | p50 ms | p99 ms | req/s |');
    expect(md).toMatch(/\| hello \| node \| spore \| 1 \|/);
    expect(md).toMatch(/\| hello \| node \| fresh process \| 1 \|/);
  }, 60_000);
});
