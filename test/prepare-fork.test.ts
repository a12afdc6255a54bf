// sys.prepareFork: V8 maps its heap MADV_DONTFORK, so a child forked without it faults on the
// first object it reads; with it, every object is there. (In a process of its own: a fork
// from vitest's multi-threaded worker could wait forever on a lock another thread held.)
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

const FIXTURE = new URL('./fixtures/fork-heap.mjs', import.meta.url).pathname;
const run = (mode: string): number[] => {
  const r = spawnSync(process.execPath, ['--single-threaded', FIXTURE, mode, '8'], { encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) throw new Error(`fixture failed (${r.status}): ${r.stderr}`);
  return r.stdout.trim().split('\n').map(Number);
};

describe.skipIf(!existsSync(new URL('../dist/sys/libc.js', import.meta.url)))('prepareFork', () => {
  it('children of a grown heap read every object with it (status 0 each)', () => {
    expect(run('with')).toEqual(Array(8).fill(0));
  });

  it('and fault without it (SIGSEGV): what it guards against is real', () => {
    const statuses = run('without');
    expect(statuses.some((s) => (s & 0x7f) === 11)).toBe(true);
  });
});
