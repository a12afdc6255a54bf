import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { InvocationCount } from '../functions/invocation-count.js';

const dir = mkdtempSync(join(tmpdir(), 'spore-count-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('InvocationCount', () => {
  it('counts into its file, which keeps the count for the next open', () => {
    const p = join(dir, 'a.count');
    const c = InvocationCount.open(p, true);
    expect(c.persistent).toBe(true);
    for (let i = 0; i < 5; i++) c.increment();
    expect(c.value).toBe(5);
    expect(statSync(p).mode & 0o777).toBe(0o600);
    // the store went to the file itself (no flush): another reader sees it now
    expect(readFileSync(p).readDoubleLE(0)).toBe(5);
    c.close();
    expect(c.value).toBe(5);
    c.increment(); // closed: ignored, and no touch of the unmapped page
    c.close();
    const again = InvocationCount.open(p);
    expect(again.value).toBe(5);
    again.close();
    const fresh = InvocationCount.open(p, true);
    expect(fresh.value).toBe(0);
    fresh.close();
  });

  it('keeps what a process counted up to its kill -9', () => {
    const p = join(dir, 'killed.count');
    const url = new URL('../dist/functions/invocation-count.js', import.meta.url).href;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e',
      `const { InvocationCount } = await import(${JSON.stringify(url)}); const c = InvocationCount.open(${JSON.stringify(p)}, true); for (let i = 0; i < 1000; i++) c.increment(); process.kill(process.pid, 'SIGKILL');`]);
    expect(r.signal).toBe('SIGKILL');
    const c = InvocationCount.open(p);
    expect(c.value).toBe(1000);
    c.close();
  });

  it('reads a damaged file as 0, and refuses a symlink', () => {
    const p = join(dir, 'bad.count');
    const b = Buffer.alloc(8);
    b.writeDoubleLE(-3.5, 0);
    writeFileSync(p, b);
    const c = InvocationCount.open(p);
    expect(c.value).toBe(0);
    c.increment();
    expect(c.value).toBe(1);
    c.close();
    writeFileSync(join(dir, 'short.count'), 'x');
    const s = InvocationCount.open(join(dir, 'short.count'));
    expect(statSync(join(dir, 'short.count')).size).toBe(4096);
    s.close();
    symlinkSync('/etc/passwd', join(dir, 'link.count'));
    expect(() => InvocationCount.open(join(dir, 'link.count'))).toThrow(/ELOOP|open/);
    expect(readFileSync('/etc/passwd', 'utf8')).toMatch(/^root:/);
  });

  it('in memory only when no file can be made', () => {
    const c = InvocationCount.inMemory();
    c.increment();
    expect(c.persistent).toBe(false);
    expect(c.value).toBe(1);
    c.close();
  });
});
