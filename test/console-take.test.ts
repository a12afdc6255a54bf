import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Console } from '../task/console.js';

const dir = mkdtempSync(join(tmpdir(), 'spore-console-take-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('Console.takeFromProcess (a replayed exec Start takes the terminal from the sandbox)', () => {
  it('finds the pty master a process holds at fd >= 100 and copies what the slave side writes', async () => {
    // a process that opens a pty pair, keeps the master at fd 100 and writes to the slave
    const holder = spawn('python3', ['-c', [
      'import os, pty, sys, time',
      'm, s = pty.openpty()',
      'os.dup2(m, 100); os.close(m)',
      'print("ready", flush=True)',
      'time.sleep(0.5)',
      'os.write(s, b"from-the-terminal\\n")',
      'time.sleep(5)',
    ].join('\n')], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((r) => holder.stdout.once('data', () => r()));
    const out = join(dir, 'out.fifo');
    const { execFileSync } = await import('node:child_process');
    execFileSync('mkfifo', [out]);
    const { openSync, readSync, closeSync, constants } = await import('node:fs');
    const reader = openSync(out, constants.O_RDWR | constants.O_NONBLOCK);
    try {
      const con = await Console.takeFromProcess(holder.pid as number, '', out);
      expect(con).not.toBeNull();
      con?.attached();
      const buf = Buffer.alloc(256);
      let got = '';
      for (let i = 0; i < 50 && !got.includes('from-the-terminal'); i++) {
        await new Promise((r) => setTimeout(r, 50));
        try { const n = readSync(reader, buf, 0, buf.length, null); got += buf.subarray(0, n).toString(); } catch { /* nothing yet */ }
      }
      expect(got).toContain('from-the-terminal');
      con?.close();
    } finally {
      closeSync(reader);
      holder.kill('SIGKILL');
    }
    // a process without a pty master: none
    const plain = spawn('sleep', ['5'], { stdio: 'ignore' });
    try { expect(await Console.takeFromProcess(plain.pid as number, '', '')).toBeNull(); } finally { plain.kill('SIGKILL'); }
  });
});
