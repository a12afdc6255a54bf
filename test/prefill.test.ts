// Page-table prefill: the parsing and run arithmetic, and on the real kernel that a
// forked child starts with the seed's file mappings' entries and their contents intact.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { clipRuns, decodeRuns, encodeRuns, mergeRuns, privateFileRanges, runsOf } from '../seeds/prefill.js';

const SMAPS = `55d0a0000000-55d0a0100000 r--p 00000000 08:01 1001   /usr/bin/node
Rss:                 400 kB
Anonymous:             0 kB
55d0a0100000-55d0a0400000 r-xp 00100000 08:01 1001   /usr/bin/node
Anonymous:             0 kB
55d0a0400000-55d0a0410000 r--p 00400000 08:01 1001   /usr/bin/node
Anonymous:            64 kB
55d0a0410000-55d0a0420000 rw-p 00410000 08:01 1001   /usr/bin/node
Anonymous:            64 kB
7f0000000000-7f0000001000 r--s 00000000 00:05 77     /dev/shm/x
Anonymous:             0 kB
7f0000001000-7f0000002000 ---p 00000000 08:01 1002   /usr/lib/libc.so.6
Anonymous:             0 kB
7f0000002000-7f0000003000 r--p 00000000 00:00 0      [vvar]
Anonymous:             0 kB
7f0000003000-7f0000004000 r--p 00000000 00:01 5      /memfd:x (deleted)
Anonymous:             0 kB
7f0000004000-7f0000006000 r-xp 00001000 08:01 1002   /usr/lib/libc.so.6
Anonymous:             0 kB
`;

describe('prefill', () => {
  it('takes only pristine private read-only file mappings (never RELRO with relocations)', () => {
    const r = privateFileRanges(SMAPS);
    expect(r.map((x) => [x.start.toString(16), x.prot])).toEqual([
      ['55d0a0000000', 1], ['55d0a0100000', 5], ['7f0000004000', 5],
    ]);
  });

  it('turns pagemap entries into runs, merges, clips and round-trips them', () => {
    const e = Buffer.alloc(8 * 6);
    for (const i of [0, 1, 3, 4, 5]) e[i * 8 + 7] = 0x80;
    const runs = runsOf(e, 0x10000n);
    expect(runs).toEqual([{ start: 0x10000n, pages: 2 }, { start: 0x13000n, pages: 3 }]);
    expect(mergeRuns(runs)).toEqual(runs);
    expect(mergeRuns(runs, 1)).toEqual([{ start: 0x10000n, pages: 6 }]);
    expect(mergeRuns([{ start: 0x2000n, pages: 4 }, { start: 0x1000n, pages: 2 }])).toEqual([{ start: 0x1000n, pages: 5 }]);
    expect(clipRuns([{ start: 0x1000n, pages: 10 }], [{ start: 0x3000n, end: 0x5000n }, { start: 0x9000n, end: 0x20000n }]))
      .toEqual([{ start: 0x3000n, pages: 2 }, { start: 0x9000n, pages: 2 }]);
    expect(decodeRuns(encodeRuns(runs))).toEqual(runs);
    expect(decodeRuns('zz:1,12:-1,,1000:2')).toEqual([{ start: 0x1000n, pages: 2 }]);
  });

  it.skipIf(process.platform !== 'linux')('a forked child starts with the seed\'s file page-table entries, contents intact', () => {
    const dist = fileURLToPath(new URL('../dist/', import.meta.url));
    // In a fresh process: hash the mappings, prefill, hash again, fork, count in the child.
    const script = `
      import { createHash } from 'node:crypto';
      import { writeSync } from 'node:fs';
      import koffi from 'koffi';
      const pf = await import(${JSON.stringify(dist + 'seeds/prefill.js')});
      const sys = await import(${JSON.stringify(dist + 'runtime/sys/libc.js')});
      const mode = process.argv[1];
      const ranges = pf.ownFileRanges();
      const hash = () => { const h = createHash('sha256'); for (const r of ranges) h.update(Buffer.from(koffi.view(sys.pointerFromAddress(r.start), Math.min(65536, Number(r.end - r.start))))); return h.digest('hex'); };
      const before = hash();
      const inherited = mode === 'inherit' ? pf.inheritFilePageTables(ranges) : 0;
      const after = hash();
      const parent = pf.presentRuns(ranges).reduce((a, r) => a + r.pages, 0);
      sys.prepareFork();
      const pid = sys.fork();
      if (pid === 0) {
        const child = pf.presentRuns(ranges).reduce((a, r) => a + r.pages, 0);
        writeSync(1, JSON.stringify({ ranges: ranges.length, inherited, same: before === after, parent, child }) + '\\n');
        sys.exit(0);
      }
      await new Promise((r) => setTimeout(r, 200));
      sys.reapOne();
    `;
    const run = (mode: string): { ranges: number; inherited: number; same: boolean; parent: number; child: number } => {
      const r = spawnSync(process.execPath, ['--input-type=module', '-e', script, mode], { encoding: 'utf8', cwd: fileURLToPath(new URL('..', import.meta.url)) });
      expect(r.status, r.stderr).toBe(0);
      return JSON.parse(r.stdout.trim().split('\n')[0] ?? '{}');
    };
    const on = run('inherit');
    expect(on.ranges).toBeGreaterThan(3);
    expect(on.inherited).toBe(on.ranges);
    expect(on.same).toBe(true);
    // every entry the parent had is in the child (the scan itself may add a few)
    expect(on.child).toBeGreaterThanOrEqual(on.parent);
    const off = run('off');
    // without prefill the child has only what its own few reads faulted in
    expect(off.child).toBeLessThan(off.parent / 2);
  });
});
