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

describe('resetSignalsForExec', () => {
  it('resets every ignored signal, glibc\'s own 32 and 33 too (signal() refuses those)', async () => {
    const { spawnSync } = await import('node:child_process');
    const lib = new URL('../dist/sys/libc.js', import.meta.url).href;
    const koffiUrl = new URL('../node_modules/koffi/index.js', import.meta.url).href;
    // in a child: 32 and 33 ignored through rt_sigaction itself (as posix_spawn leaves them), then the reset
    const code = `
      const koffi = (await import(${JSON.stringify(koffiUrl)})).default;
      const sys = await import(${JSON.stringify(lib)});
      const fs = await import('node:fs');
      const c = koffi.load('libc.so.6');
      const raw = c.func('long syscall(long, long, const uint8_t *, uint8_t *, long)');
      const ign = Buffer.alloc(32); ign.writeBigUInt64LE(1n, 0); // SIG_IGN
      raw(13, 32, ign, null, 8); raw(13, 33, ign, null, 8);
      const before = /^SigIgn:\\s*(\\S+)/m.exec(fs.readFileSync('/proc/self/status', 'utf8'))[1];
      sys.resetSignalsForExec();
      const after = /^SigIgn:\\s*(\\S+)/m.exec(fs.readFileSync('/proc/self/status', 'utf8'))[1];
      console.log(before, after);`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', code], { encoding: 'utf8' });
    const [before, after] = r.stdout.trim().split(' ');
    expect(BigInt(`0x${before}`) & 0x180000000n, r.stderr).toBe(0x180000000n);
    expect(after).toBe('0000000000000000');
  });

  it('with the ignored set read ahead (a shell, cacheIgnoredSignals), resets exactly that set', async () => {
    const { spawnSync } = await import('node:child_process');
    const lib = new URL('../dist/sys/libc.js', import.meta.url).href;
    const koffiUrl = new URL('../node_modules/koffi/index.js', import.meta.url).href;
    // SIGUSR1 (10) ignored before the read ahead is reset; SIGUSR2 (12), ignored after it, is
    // not: the cache is for a process whose dispositions do not change in between
    const code = `
      const koffi = (await import(${JSON.stringify(koffiUrl)})).default;
      const sys = await import(${JSON.stringify(lib)});
      const fs = await import('node:fs');
      const raw = koffi.load('libc.so.6').func('long syscall(long, long, const uint8_t *, uint8_t *, long)');
      const ign = Buffer.alloc(32); ign.writeBigUInt64LE(1n, 0); // SIG_IGN
      raw(13, 10, ign, null, 8);
      sys.cacheIgnoredSignals();
      raw(13, 12, ign, null, 8);
      sys.resetSignalsForExec();
      console.log(/^SigIgn:\\s*(\\S+)/m.exec(fs.readFileSync('/proc/self/status', 'utf8'))[1]);`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', code], { encoding: 'utf8' });
    expect(BigInt(`0x${r.stdout.trim() || 'x'}`), r.stderr).toBe(1n << 11n);
  });
});
