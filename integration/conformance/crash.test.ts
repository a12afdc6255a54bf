// spored may die; nobody may notice. Each case runs through one containerd with runc and
// with spore; in spore's run spored is killed (or restarted with SIGTERM, or kept down for a
// while) in the middle, and its keeper starts the next one. runc's run has no crash. The
// traces (output bytes, exit codes, task states, containerd's events) must still match.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { containerdSkipReason, which } from '../harness.js';
import { crash, kase, Oracle, report, restartSpored, run, ctr, states, tty, waitFor, resize, waitStopped, type Case } from './oracle.js';

const skip = containerdSkipReason() ?? (which('tmux') ? undefined : 'tmux not installed');
if (skip) console.warn(`[conformance/crash] skipped: ${skip}`);

/** wait until ctr's initial resize reached the pty, then print the size */
const SIZED = 'i=0; until s=$(stty size 2>/dev/null); [ -n "$s" ] && [ "${s% *}" != 0 ]; do i=$((i+1)); [ $i -gt 100 ] && break; sleep 0.02; done';
const COUNT = (n: number, code: number) => `i=0; while [ $i -lt ${n} ]; do i=$((i+1)); echo line $i; sleep 0.03; done; exit ${code}`;

export const CASES: Case[] = [
  kase('ctr run across kill -9 of spored: every line, the exit code', [
    tty(`run --rm {c} /bin/sh -c '${COUNT(40, 3)}'`, [waitFor('line 5'), crash('SIGKILL')]),
  ]),
  kase('ctr run -t across kill -9: no hangup, every byte, resize and Ctrl-C after', [
    tty(`run -t --rm {c} /bin/sh -c 'trap "echo HANGUP; exit 9" HUP; ${SIZED}; echo "size=$s"; trap "stty size; exit 7" WINCH; echo ready; while :; do sleep 0.05; done'`, [
      waitFor('ready'), crash('SIGKILL'), resize(120, 40),
    ]),
  ]),
  kase('ctr task exec across kill -9: its output and exit code; the container runs on', [
    run('-d', '{c} /bin/sleep 1000'),
    tty(`exec --exec-id e1 {c} /bin/sh -c '${COUNT(40, 5)}'`, [waitFor('line 5'), crash('SIGKILL')]),
    ctr('task exec --exec-id e2 {c} /bin/echo after'),
    states('{c}'),
  ]),
  kase('exits while no spored runs are reported with their status, in order', [
    run('-d', "{c} /bin/sh -c 'sleep 0.4; exit 4'"),
    run('-d', '{c2} /bin/sleep 1000'),
    restartSpored('SIGKILL', 1200), // both the exit and the restart happen while spored is down
    waitStopped('{c}'),
    states('{c}', '{c2}'),
    ctr('task kill -s KILL {c2}'),
    waitStopped('{c2}'),
    states('{c2}'),
  ]),
  kase('pause, restart, resume; kill after a SIGTERM restart', [
    run('-d', '{c} /bin/sleep 1000'),
    ctr('task pause {c}'),
    restartSpored('SIGKILL'),
    states('{c}'),
    ctr('task resume {c}'),
    restartSpored('SIGTERM'),
    states('{c}'),
    ctr('task kill -s KILL {c}'),
    waitStopped('{c}'),
    states('{c}'),
  ]),
];

describe.skipIf(skip !== undefined)('conformance: spore with spored crashing = runc', () => {
  let o: Oracle;

  beforeAll(async () => {
    o = await Oracle.start();
  }, 60_000);

  afterAll(async () => {
    await o?.stop();
  }, 60_000);

  for (const k of CASES) {
    it(k.name, async () => {
      const before = o.crashes;
      const r = await o.compare({ ...k, serial: true });
      expect(r.diffs, report(r)).toEqual([]);
      expect(o.crashes).toBeGreaterThan(before); // spored really went away in spore's run
    }, 120_000);
  }
});
