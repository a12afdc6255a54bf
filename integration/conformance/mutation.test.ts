// The conformance suite must bite: a spored with a deliberately wrong behaviour (the test-only
// SPORE_TEST_MUTATION=exit-code makes it report every exit code one too high) has to fail the
// comparison with runc, and the comparison of repeated terminal runs has to catch output that
// is lost in some runs (the old "done shown in 4 of 8 runs").
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { containerdSkipReason } from '../harness.js';
import { ctr, diffTraces, isLostRunOutput, kase, Oracle, report, run, states, waitStopped, type StepResult, type Trace } from './oracle.js';

const skip = containerdSkipReason();
if (skip) console.warn(`[conformance/mutation] skipped: ${skip}`);

const EXIT_CODES = kase('exit codes (mutation target)', [
  run('--rm', "{c} /bin/sh -c 'echo hi; exit 3'"),
  run('-d', '{c2} /bin/sleep 1000'),
  ctr('task kill -s KILL {c2}'),
  waitStopped('{c2}'),
  states('{c2}'),
]);

describe.skipIf(skip !== undefined)('conformance: the suite bites', () => {
  let o: Oracle;

  beforeAll(async () => {
    o = await Oracle.start({ extraEnv: { SPORE_TEST_MUTATION: 'exit-code' } });
  }, 60_000);

  afterAll(async () => {
    await o?.stop();
  }, 60_000);

  it('a spored that maps exit codes wrongly fails the exit-code case', async () => {
    const r = await o.compare(EXIT_CODES, ['runc', 'spore'], { oracleRetries: 0 });
    const text = r.diffs.join('\n');
    expect(r.diffs.length, report(r)).toBeGreaterThan(0);
    expect(text).toContain('code: runc=3 spore=4'); // ctr run's exit status
    expect(text).toMatch(/runc: .*\/tasks\/exit id=\{c\} status=3[^]*spore: .*\/tasks\/exit id=\{c\} status=4/); // the event
    expect(text).toMatch(/runc: .*\/tasks\/exit id=\{c2\} status=137[^]*spore: .*\/tasks\/exit id=\{c2\} status=138/); // 128+SIGKILL
    // and nothing else differs: stdout and the task states still match
    for (const d of r.diffs) expect(d).toMatch(/ (code|class): |^events:/);
  }, 90_000);
});

describe('conformance: repeated runs', () => {
  const step = (stdout: string): StepResult => ({ label: 'tty', check: ['code', 'stdout'], code: 0, stdout });
  const repeated = (rt: Trace['rt'], lost: number, n = 8): Trace => {
    const runs: Record<string, number> = { [JSON.stringify({ code: 0, stdout: '30 100\ndone' })]: n - lost };
    if (lost) runs[JSON.stringify({ code: 0, stdout: '30 100' })] = lost;
    const s = step('');
    return { rt, events: [], steps: [{ ...s, label: '8x tty', check: ['value', 'deviations'], value: { code: 0, stdout: '30 100\ndone' }, deviations: lost, runs }] };
  };
  const k = kase('repeat', []);

  it('output lost in 4 of 8 runs fails', () => {
    expect(diffTraces(k, repeated('runc', 0), repeated('spore', 4)).diffs).toHaveLength(1);
  });

  it('one run lost to a client-side race is tolerated, as runc shows it too', () => {
    expect(diffTraces(k, repeated('runc', 0), repeated('spore', 1)).diffs).toEqual([]);
    expect(diffTraces(k, repeated('runc', 1), repeated('spore', 0)).diffs).toEqual([]);
  });
});

describe('conformance: which differences take spore\'s trace again', () => {
  const runStep = (label: string, stdout: string, code = 0): StepResult => ({ label, check: ['code', 'stdout'], code, stdout });
  const trace = (rt: Trace['rt'], steps: StepResult[]): Trace => ({ rt, events: [], steps });
  const k = kase('lost', []);

  it('only ctr losing a foreground run\'s whole output: spore empty where runc is not, same exit code', () => {
    const lost = diffTraces(k, trace('runc', [runStep('run --rm {c} /bin/echo hi', 'hi\n')]), trace('spore', [runStep('run --rm {c} /bin/echo hi', '')])).diffs;
    expect(lost).toHaveLength(1);
    expect(lost.every(isLostRunOutput)).toBe(true);
    // different output, a different exit code, runc's side empty, a detached run, an exec: never
    const other = [
      diffTraces(k, trace('runc', [runStep('run --rm {c} /bin/echo hi', 'hi\n')]), trace('spore', [runStep('run --rm {c} /bin/echo hi', 'ho\n')])).diffs,
      diffTraces(k, trace('runc', [runStep('run --rm {c} /bin/echo hi', 'hi\n')]), trace('spore', [runStep('run --rm {c} /bin/echo hi', '', 1)])).diffs,
      diffTraces(k, trace('runc', [runStep('run --rm {c} /bin/echo hi', '')]), trace('spore', [runStep('run --rm {c} /bin/echo hi', 'hi\n')])).diffs,
      diffTraces(k, trace('runc', [runStep('run -d {c} /bin/echo hi', 'hi\n')]), trace('spore', [runStep('run -d {c} /bin/echo hi', '')])).diffs,
      diffTraces(k, trace('runc', [runStep('exec --exec-id e {c} /bin/echo hi', 'hi\n')]), trace('spore', [runStep('exec --exec-id e {c} /bin/echo hi', '')])).diffs,
    ];
    for (const d of other) expect(d.length > 0 && d.every(isLostRunOutput), d.join('; ')).toBe(false);
  });
});

describe('conformance: event order', () => {
  const ev = (rt: Trace['rt'], events: string[]): Trace => ({ rt, events, steps: [] });
  const runcOrder = ['{c} /containers/create', '{c} /tasks/start', '{c2} /containers/create', '{c2} /tasks/start'];
  // spore's forwarded /tasks/start of {c} arriving after containerd's own /containers/create of {c2}
  const interleaved = ['{c} /containers/create', '{c2} /containers/create', '{c} /tasks/start', '{c2} /tasks/start'];
  const swappedInOne = ['{c} /tasks/start', '{c} /containers/create', '{c2} /containers/create', '{c2} /tasks/start'];

  it('by default two containers\' events may interleave, but each container\'s own order must hold', () => {
    const k = kase('two', []);
    expect(diffTraces(k, ev('runc', runcOrder), ev('spore', interleaved)).diffs).toEqual([]);
    expect(diffTraces(k, ev('runc', runcOrder), ev('spore', swappedInOne)).diffs).toHaveLength(1);
    expect(diffTraces(k, ev('runc', runcOrder), ev('spore', runcOrder.slice(0, 3))).diffs).toHaveLength(1);
  });

  it("'ordered' holds the whole sequence, 'unordered' only the multiset", () => {
    expect(diffTraces(kase('o', [], { events: 'ordered' }), ev('runc', runcOrder), ev('spore', interleaved)).diffs).toHaveLength(1);
    expect(diffTraces(kase('u', [], { events: 'unordered' }), ev('runc', runcOrder), ev('spore', swappedInOne)).diffs).toEqual([]);
  });
});
