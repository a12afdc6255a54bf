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
      const pid = sys.spawnProgram('/bin/sh', ['sh', '-c', `echo "$0 $FOO" > ${out}; grep -E '^SigIgn' /proc/self/status >> ${out}; ls /proc/self/fd >> ${out}`, 'zero'], ['FOO=bar']);
      expect(await exitOf(pid)).toBe(0);
    } finally {
      sys.setCloexec(1, false);
    }
    const lines = readFileSync(out, 'utf8').trim().split('\n');
    expect(lines[0]).toBe('zero bar');
    // no signal ignored, glibc's 32 and 33 included (posix_spawn ignores those by default)
    expect(lines[1]).toMatch(/^SigIgn:\s+0000000000000000$/);
    // 0-2 and the ls's own directory fd; not `leak`
    expect(lines.slice(2).map(Number).filter((fd) => fd > 3)).toEqual([]);
  });

  it('a program that cannot be executed is an error at once (no child to reap)', () => {
    expect(() => sys.spawnProgram('/no/such/program', ['x'], [])).toThrow(/posix_spawn\(\/no\/such\/program\): ENOENT/);
  });
});

/**
 * Runs `body` in a fresh node (a process of its own: it changes signal dispositions) with
 * `sys` (dist/sys/libc.js), `ignore(sig)` (SIG_IGN through rt_sigaction itself, which glibc's
 * signal() refuses for 32 and 33) and `sigIgn()` (SigIgn of /proc/self/status) in scope; its stdout.
 */
async function inFreshNode(body: string): Promise<{ stdout: string; stderr: string }> {
  const { spawnSync } = await import('node:child_process');
  const lib = new URL('../dist/sys/libc.js', import.meta.url).href;
  const koffiUrl = new URL('../node_modules/koffi/index.js', import.meta.url).href;
  const code = `
    const koffi = (await import(${JSON.stringify(koffiUrl)})).default;
    const sys = await import(${JSON.stringify(lib)});
    const fs = await import('node:fs');
    const raw = koffi.load('libc.so.6').func('long syscall(long, long, const uint8_t *, uint8_t *, long)');
    const ignore = (sig) => { const ign = Buffer.alloc(32); ign.writeBigUInt64LE(1n, 0); raw(13, sig, ign, null, 8); };
    const sigIgn = () => /^SigIgn:\\s*(\\S+)/m.exec(fs.readFileSync('/proc/self/status', 'utf8'))[1];
    ${body}`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', code], { encoding: 'utf8' });
  return { stdout: r.stdout, stderr: r.stderr };
}

describe('resetSignalsForExec', () => {
  it('resets every ignored signal, glibc\'s own 32 and 33 too (signal() refuses those)', async () => {
    // 32 and 33 ignored as posix_spawn leaves them, then the reset
    const r = await inFreshNode('ignore(32); ignore(33); const before = sigIgn(); sys.resetSignalsForExec(); console.log(before, sigIgn());');
    const [before, after] = r.stdout.trim().split(' ');
    expect(BigInt(`0x${before}`) & 0x180000000n, r.stderr).toBe(0x180000000n);
    expect(after).toBe('0000000000000000');
  });

  it('with the ignored set read ahead (a shell, cacheIgnoredSignals), resets exactly that set', async () => {
    // SIGUSR1 (10) ignored before the read ahead is reset; SIGUSR2 (12), ignored after it, is
    // not: the cache is for a process whose dispositions do not change in between
    const r = await inFreshNode('ignore(10); sys.cacheIgnoredSignals(); ignore(12); sys.resetSignalsForExec(); console.log(sigIgn());');
    expect(BigInt(`0x${r.stdout.trim() || 'x'}`), r.stderr).toBe(1n << 11n);
  });
});
