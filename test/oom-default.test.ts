// A container process without oomScoreAdj in its spec gets containerd's + 1, as runc's
// (task/tasks.ts defaultOomScoreAdj; the shim's start writes containerd's score).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { defaultOomScoreAdj } from '../task/tasks.js';

const dir = mkdtempSync(join(tmpdir(), 'spore-oom-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('defaultOomScoreAdj', () => {
  it('is containerd\'s score + 1, at most 1000; none without a usable file', () => {
    expect(defaultOomScoreAdj(dir)).toBeNull(); // no containerd started spore
    const f = join(dir, 'containerd-oom-score-adj');
    for (const [text, want] of [['-999\n', -998], ['0\n', 1], ['1000\n', 1000], ['-1000', -999], ['', null], ['12abc\n', null], ['1001\n', null], ['-1001\n', null], ['1.5\n', null]] as const) {
      writeFileSync(f, text);
      expect(defaultOomScoreAdj(dir), JSON.stringify(text)).toBe(want);
    }
  });
});
