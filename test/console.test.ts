// A terminal between containerd's FIFOs and a pty (task/console.ts), in both copy modes: the
// kernel's splice (Linux 6.5+, probed) and the loop's streams (older kernels). The program
// on the slave is a real process; the client's ends are FIFOs, as ctr's.
import { execFileSync, spawn } from 'node:child_process';
import { closeSync, constants, mkdtempSync, openSync, readdirSync, readSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Console, forcePtySpliceForTests } from '../task/console.js';

const dir = mkdtempSync(join(tmpdir(), 'spore-console-'));
afterAll(() => { forcePtySpliceForTests(null); rmSync(dir, { recursive: true, force: true }); });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// the program: says ready, echoes one line back, then writes 300 KB and exits
const PROGRAM = [
  'import os, sys',
  'fd = os.open(sys.argv[1], os.O_RDWR)',
  'os.write(fd, b"ready\\n")',
  'line = b""',
  'while not line.endswith(b"\\n"): line += os.read(fd, 100)',
  'os.write(fd, b"got " + line.strip() + b"\\n")',
  'for i in range(3000): os.write(fd, b"%099d\\n" % i)',
  'os.write(fd, b"the-end\\n")',
].join('\n');

describe.each([['splice', true], ['streams', false]] as const)('Console (%s)', (_name, splice) => {
  it('copies the program\'s output to the stdout FIFO and the client\'s input to it; after its exit every byte is out and no fd is left', async () => {
    forcePtySpliceForTests(splice);
    const fds = () => readdirSync('/proc/self/fd').length;
    const fdsBefore = fds();
    const inPath = join(dir, `in-${_name}`);
    const outPath = join(dir, `out-${_name}`);
    execFileSync('mkfifo', [inPath, outPath]);
    const outR = openSync(outPath, constants.O_RDWR | constants.O_NONBLOCK);
    const inW = openSync(inPath, constants.O_RDWR | constants.O_NONBLOCK);
    let got = '';
    const buf = Buffer.alloc(65536);
    const drain = (): void => {
      for (;;) {
        try { const n = readSync(outR, buf, 0, buf.length, null); if (n <= 0) return; got += buf.subarray(0, n).toString(); } catch { return; }
      }
    };
    const con = await Console.open(inPath, outPath, { height: 24, width: 80 });
    try {
      const prog = spawn('python3', ['-c', PROGRAM, con.slave], { stdio: 'ignore' });
      const exited = new Promise<number | null>((r) => prog.on('exit', (code) => r(code)));
      for (let i = 0; i < 200 && !got.includes('ready'); i++) { await sleep(10); drain(); }
      expect(got).toContain('ready');
      con.attached();
      writeSync(inW, 'ping\n');
      // a client that reads as it goes, while the program writes 300 KB
      let code: number | null | undefined;
      void exited.then((c) => { code = c; });
      for (let i = 0; i < 500 && code === undefined; i++) { await sleep(10); drain(); }
      expect(code).toBe(0);
      const flushed = con.drainForExit(2000);
      while (!got.includes('the-end')) { await sleep(5); drain(); if (!got.includes('the-end') && (await Promise.race([flushed.then(() => true), sleep(0).then(() => false)]))) { drain(); break; } }
      await flushed;
      drain();
      expect(got).toContain('got ping');
      const lines = got.split(/\r?\n/).filter((l) => /^\d{99}$/.test(l));
      expect(lines.length).toBe(3000);
      expect(lines.at(-1)).toBe('2999'.padStart(99, '0'));
      expect(got.trimEnd().endsWith('the-end')).toBe(true);
    } finally {
      con.close();
      closeSync(outR);
      closeSync(inW);
    }
    expect(fds()).toBe(fdsBefore);
  });
});
