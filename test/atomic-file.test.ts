// sys/atomic-file.ts: a file is the old version or the new one, and a failed write (a full
// disk above all) leaves no temp file behind. The full disk is a real one: a 64 KiB tmpfs.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeFileAtomic } from '../sys/atomic-file.js';
import { readRecord, writeRecord, type TaskRecord } from '../task/record.js';

const root = process.getuid?.() === 0;

describe('writeFileAtomic', () => {
  let dir = '';
  beforeAll(() => { dir = mkdtempSync(join(tmpdir(), 'spore-atomic-')); });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('writes a new file 0600 and replaces an old one, leaving no temp file', () => {
    const p = join(dir, 'a.json');
    writeFileAtomic(p, 'one');
    expect(readFileSync(p, 'utf8')).toBe('one');
    expect(statSync(p).mode & 0o777).toBe(0o600);
    writeFileAtomic(p, 'two', { mode: 0o644 });
    expect(readFileSync(p, 'utf8')).toBe('two');
    expect(readdirSync(dir).filter((f) => f.startsWith('a.json'))).toEqual(['a.json']);
  });

  it('a failed rename (the target is a directory) throws and removes its temp file', () => {
    const p = join(dir, 'taken');
    mkdirSync(join(p, 'inside'), { recursive: true });
    expect(() => writeFileAtomic(p, 'x')).toThrow(/EISDIR|ENOTEMPTY|EEXIST/);
    expect(readdirSync(dir).filter((f) => f.startsWith('taken'))).toEqual(['taken']);
  });

  it('a missing directory throws ENOENT and makes nothing', () => {
    expect(() => writeFileAtomic(join(dir, 'no', 'such', 'f'), 'x')).toThrow(/ENOENT/);
    expect(readdirSync(dir)).not.toContain('no');
  });
});

describe.skipIf(!root)('writeFileAtomic on a full file system (64 KiB tmpfs)', () => {
  let mnt = '';
  beforeAll(() => {
    mnt = mkdtempSync(join(tmpdir(), 'spore-full-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k,mode=0700', 'spore-full', mnt]);
  });
  afterAll(() => {
    try { execFileSync('umount', [mnt]); } catch { /* not mounted */ }
    rmSync(mnt, { recursive: true, force: true });
  });

  it('ENOSPC: the old version stays, no temp file is left', () => {
    const p = join(mnt, 'state.json');
    writeFileAtomic(p, 'old');
    expect(() => writeFileAtomic(p, Buffer.alloc(256 * 1024, 1))).toThrow(/ENOSPC/);
    expect(readFileSync(p, 'utf8')).toBe('old');
    expect(readdirSync(mnt)).toEqual(['state.json']);
  });

  it("a task record that does not fit: writeRecord throws, the record before it is read back, nothing else is left", () => {
    const rec: TaskRecord = { v: 2, id: 'c1', namespace: 'ns', bundle: '/b', pid: 1, rootfs: '/r', rootfsMounted: false, cgroup: null, createdAt: new Date(0).toISOString() };
    writeRecord(mnt, rec);
    // fill the rest of the file system, then a record too big for what is left
    const filler = join(mnt, 'filler');
    try { writeFileSync(filler, Buffer.alloc(256 * 1024)); } catch { /* ENOSPC: the file holds what fitted */ }
    expect(() => writeRecord(mnt, { ...rec, bundle: 'x'.repeat(16 * 1024) })).toThrow(/ENOSPC/);
    expect(readRecord(mnt, 'ns', 'c1')?.bundle).toBe('/b');
    expect(readdirSync(join(mnt, 'tasks', 'ns'))).toEqual(['c1.json']);
  });
});
