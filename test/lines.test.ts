import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { onJsonLines } from '../engines/process/lines.js';

describe('onJsonLines', () => {
  it('splits across chunks and reports malformed lines without throwing', () => {
    const s = new PassThrough();
    const got: unknown[] = [];
    const bad: string[] = [];
    onJsonLines(s, (m) => got.push(m), (l) => bad.push(l));
    s.write('{"a":1}\n{"b"');
    s.write(':2}\nnot json\n{"c":3}');
    expect(got).toEqual([{ a: 1 }, { b: 2 }]);
    expect(bad).toEqual(['not json']);
    s.write('\n');
    expect(got).toEqual([{ a: 1 }, { b: 2 }, { c: 3 }]);
  });

  // A seed forks inside its message handler; the child destroys its copy of the
  // connection and must not act on the seed's next messages read in the same chunk.
  it('delivers nothing more once a handler destroyed the stream, even lines already read', () => {
    const s = new PassThrough();
    const got: string[] = [];
    onJsonLines<{ t: string }>(s, (m) => { got.push(m.t); if (m.t === 'fork') s.destroy(); });
    s.write('{"t":"stats"}\n{"t":"fork"}\n{"t":"fork"}\n{"t":"kill"}\n');
    expect(got).toEqual(['stats', 'fork']);
  });
});
