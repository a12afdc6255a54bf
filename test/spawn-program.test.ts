import { mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import * as sys from '../sys/libc.js';

const dir = mkdtempSync(join(tmpdir(), 'spore-spawn-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** waits (bounded) for `pid`'s exit status, reaping only it */
async function exitOf(pid: number): Promise<number> {
  for (let i = 0; i < 200; i++) {
    const r = sys.reapPid(pid, false);
    if (r) return r.status;
    await new Promise((res) => setTimeout(res, 10));
  }
  throw new Error(`${pid} did not exit`);
}

describe('spawnProgram (posix_spawn: how the keeper starts spored)', () => {
  it('runs the program with exactly argv and envp, fds 0-2 kept (close-on-exec or not), every other fd closed', async () => {
    const leak = openSync('/dev/null', 'r');
    sys.setCloexec(leak, false); // an fd that a plain fork + exec would pass on
    sys.setCloexec(1, true); // Node marks its stdio close-on-exec
    const out = join(dir, 'out');
    try {
      const pid = sys.spawnProgram('/bin/sh', ['sh', '-c', `echo "$0 $FOO" > ${out}; ls /proc/self/fd >> ${out}`, 'zero'], ['FOO=bar']);
      expect(await exitOf(pid)).toBe(0);
    } finally {
      sys.setCloexec(1, false);
    }
    const lines = readFileSync(out, 'utf8').trim().split('\n');
    expect(lines[0]).toBe('zero bar');
    // 0-2 and the ls's own directory fd; not `leak`
    expect(lines.slice(1).map(Number).filter((fd) => fd > 3)).toEqual([]);
  });

  it('a program that cannot be executed is an error at once (no child to reap)', () => {
    expect(() => sys.spawnProgram('/no/such/program', ['x'], [])).toThrow(/posix_spawn\(\/no\/such\/program\): ENOENT/);
  });
});
