// wrk, the HTTP load generator, as the benches run it: POSTs of one body (bench/lua/post.lua,
// which prints one WRKJSON line with the totals, wrk's own latency percentiles and the errors
// by kind, and a WRKFAIL line per non-2xx answer it saw first).
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import { repoRoot } from '../integration/harness.js';
import { track, waitExit } from './processes.js';

export interface WrkResult {
  requests: number;
  /** the run's length as wrk measured it, s */
  seconds: number;
  rps: number;
  /** latency percentiles, ms (NaN without requests) */
  p50: number;
  p99: number;
  /** answers that were not 2xx */
  non2xx: number;
  /** connect, read, write and timeout errors */
  socketErrors: number;
  /** non2xx + socketErrors */
  errors: number;
  /** the errors in words ('' without any): counts by kind and the first non-2xx answers */
  errorText: string;
}

const LUA = path.join(repoRoot, 'bench', 'lua', 'post.lua');

/**
 * `wrk` with `c` connections (on min(c, 2) threads) POSTing `body` to `url` for `seconds`.
 * Throws when wrk gives no result line (not installed, a bad URL); a wrk that outlives the run
 * by a minute is killed.
 */
export async function wrk(url: string, body: string, c: number, seconds: number): Promise<WrkResult> {
  const args = ['-t', String(Math.min(c, 2)), '-c', String(c), '-d', `${seconds}s`, '--timeout', '30s', '--latency', '-s', LUA, url];
  const child = track(spawn('wrk', args, { env: { ...process.env, WRK_BODY: body }, stdio: ['ignore', 'pipe', 'pipe'] }));
  let out = '';
  let err = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  if (!(await waitExit(child, (seconds + 60) * 1000))) child.kill('SIGKILL');
  const line = /^WRKJSON (.*)$/m.exec(out)?.[1];
  if (!line) throw new Error(`wrk gave no result (exit ${child.exitCode}): ${(err || out).trim().slice(0, 500)}`);
  const j = JSON.parse(line) as { requests: number; duration_us: number; p50_us: number; p99_us: number; errors: Record<string, number> };
  const socketErrors = (j.errors.connect ?? 0) + (j.errors.read ?? 0) + (j.errors.write ?? 0) + (j.errors.timeout ?? 0);
  const non2xx = j.errors.status ?? 0;
  const parts: string[] = [];
  if (non2xx) {
    const why = [...err.matchAll(/^WRKFAIL (.*)$/gm)].slice(0, 3).map((m) => (m[1] ?? '').slice(0, 200));
    parts.push(`${non2xx} non-2xx${why.length ? ` (${why.join('; ')})` : ''}`);
  }
  for (const k of ['connect', 'read', 'write', 'timeout']) if (j.errors[k]) parts.push(`${j.errors[k]} ${k}`);
  const secs = j.duration_us / 1e6;
  return {
    requests: j.requests,
    seconds: secs,
    rps: secs > 0 ? j.requests / secs : NaN,
    p50: j.requests > 0 ? j.p50_us / 1000 : NaN,
    p99: j.requests > 0 ? j.p99_us / 1000 : NaN,
    non2xx,
    socketErrors,
    errors: non2xx + socketErrors,
    errorText: parts.join(', '),
  };
}
