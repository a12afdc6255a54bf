import { mkdtempSync, openSync, writeSync, closeSync, statSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ResultFifoPool } from '../pools/result-fifos.js';

const until = async (cond: () => boolean, ms = 2000): Promise<void> => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
};

describe('result FIFO pool', () => {
  let base = '';
  afterEach(() => { if (base) rmSync(base, { recursive: true, force: true }); });

  it('hands out root-only FIFOs and delivers whole lines with their slot', async () => {
    base = mkdtempSync(join(tmpdir(), 'spore-fifo-'));
    const got: [number, string][] = [];
    const pool = new ResultFifoPool(join(base, 'results'), (slot, line) => got.push([slot, line]));
    pool.fill(3);
    try {
      const a = pool.acquire();
      const b = pool.acquire();
      expect([a, b]).toEqual([0, 1]);
      const st = statSync(join(base, 'results', '1'));
      expect(st.isFIFO()).toBe(true);
      expect(st.mode & 0o777).toBe(0o600);
      // a writer opening and closing does not end spored's side
      const fd = openSync(join(base, 'results', '1'), 'w');
      writeSync(fd, '{"t":"result",');
      writeSync(fd, '"id":"x"}\nsecond\n');
      closeSync(fd);
      await until(() => got.length === 2);
      expect(got).toEqual([[1, '{"t":"result","id":"x"}'], [1, 'second']]);
      const fd2 = openSync(join(base, 'results', '1'), 'w');
      writeSync(fd2, 'after reopen\n');
      closeSync(fd2);
      await until(() => got.length === 3);
      expect(pool.snapshot()).toMatchObject({ size: 3, free: 1, inUse: 2 });
    } finally {
      pool.close();
    }
    expect(existsSync(join(base, 'results'))).toBe(false);
  });

  it('refuses double releases and forgets an unfinished line when a slot changes hands', async () => {
    base = mkdtempSync(join(tmpdir(), 'spore-fifo-'));
    const got: string[] = [];
    const pool = new ResultFifoPool(join(base, 'results'), (_slot, line) => got.push(line));
    pool.fill(1);
    try {
      const s = pool.acquire();
      expect(s).toBe(0);
      expect(pool.acquire()).toBeNull();
      const fd = openSync(join(base, 'results', '0'), 'w');
      writeSync(fd, 'half a line from the last owner');
      await until(() => pool.pending(0) > 0);
      pool.release(0);
      expect(() => pool.release(0)).toThrow(/not in use/);
      expect(pool.acquire()).toBe(0);
      writeSync(fd, '{"new":1}\n');
      closeSync(fd);
      await until(() => got.length === 1);
      expect(got).toEqual(['{"new":1}']);
    } finally {
      pool.close();
    }
  });
});
