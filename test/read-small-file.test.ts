// sys.readSmallFile / writeSmallFile: open + read|write + close for /proc and cgroupfs files on hot paths.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readSmallFile, writeSmallFile } from '../sys/libc.js';
import { SyscallError } from '../sys/errors.js';

describe('readSmallFile', () => {
  it('reads seq_file-backed /proc files whole, as readFileSync does', () => {
    // maps and smaps are many records, longer than one seq_file buffer: they come in pieces
    for (const f of ['/proc/self/status', '/proc/self/mountinfo', '/proc/self/maps', '/proc/self/smaps']) {
      const fast = readSmallFile(f);
      const slow = readFileSync(f, 'latin1');
      expect(fast.split('\n').length, f).toBeGreaterThan(slow.split('\n').length * 0.9);
      expect(fast.split('\n')[0]).toBe(slow.split('\n')[0]);
      expect(fast.endsWith('\n')).toBe(true);
    }
    expect(readSmallFile('/proc/self/smaps').length).toBeGreaterThan(8192 * 2);
    expect(readSmallFile(`/proc/${process.pid}/status`)).toMatch(new RegExp(`^Pid:\\s+${process.pid}$`, 'm'));
  });

  it('reads files larger than its buffer, empty files, and utf8', () => {
    const dir = mkdtempSync(join(tmpdir(), 'spore-rsf-'));
    try {
      const big = Array.from({ length: 3000 }, (_, i) => `line ${i}`).join('\n');
      writeFileSync(join(dir, 'big'), big);
      expect(readSmallFile(join(dir, 'big'))).toBe(big);
      const exact = 'x'.repeat(8192);
      writeFileSync(join(dir, 'exact'), exact);
      expect(readSmallFile(join(dir, 'exact'))).toBe(exact);
      writeFileSync(join(dir, 'empty'), '');
      expect(readSmallFile(join(dir, 'empty'))).toBe('');
      writeFileSync(join(dir, 'u'), 'é→');
      expect(readSmallFile(join(dir, 'u'), 'utf8')).toBe('é→');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('throws SyscallError with errno for a missing file or process', () => {
    expect(() => readSmallFile('/proc/999999999/status')).toThrow(SyscallError);
    let err: unknown = null;
    try { readSmallFile('/nonexistent/x'); } catch (e) { err = e; }
    expect((err as SyscallError).errno).toBe(2);
  });

  it('writeSmallFile writes an existing file without creating or truncating one', () => {
    const dir = mkdtempSync(join(tmpdir(), 'spore-wsf-'));
    try {
      writeFileSync(join(dir, 'f'), 'abcdef');
      writeSmallFile(join(dir, 'f'), '12');
      expect(readFileSync(join(dir, 'f'), 'utf8')).toBe('12cdef');
      let err: unknown = null;
      try { writeSmallFile(join(dir, 'missing'), '1'); } catch (e) { err = e; }
      expect((err as SyscallError).errno).toBe(2);
      expect(() => readFileSync(join(dir, 'missing'))).toThrow(/ENOENT/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
