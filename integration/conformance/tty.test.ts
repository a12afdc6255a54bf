// Oracle conformance for terminals: `ctr run -t` and `ctr task exec -t` inside tmux panes,
// runc and spore side by side (see oracle.ts). What the pane shows and ctr's exit status
// must match, over many runs where output could be lost.
import { containerdSkipReason, which } from '../harness.js';
import { kase, keys, repeat, resize, run, states, tty, waitFor, type Case } from './oracle.js';
import { oracleSuite } from './suite.js';

const skip = containerdSkipReason() ?? (which('tmux') ? undefined : 'tmux not installed');
if (skip) console.warn(`[conformance/tty] skipped: ${skip}`);

const RUNS = Number(process.env.SPORE_CONFORMANCE_TTY_RUNS ?? 15);

/**
 * Appended to one-shot terminal commands: a process gone within milliseconds of Start races
 * ctr's own set-up (its first resize, its reader of the output FIFO), and under load ctr then
 * loses the output with runc as with spore. The repeated cases keep the instant exit.
 */
const LINGER = '; sleep 0.3';

/** `stty size` right at start races ctr's first resize (with runc too): either answer is fine */
const sttyRace = (s: string) => s.replace(/^(\d+ \d+|stty: standard input)$/m, '<stty size or not yet sized>');
/**
 * ctr resizes an exec's pty right after Start; a process that is already gone by then makes
 * ctr log this (with runc as with spore), or not: a race in ctr, not a difference
 */
const execResizeRace = (s: string) => s.replace(/^ERRO\[\d+\] resize pty +error="cannot resize a stopped container: unknown"\n?/gm, '').replace(/\n$/, '');
/** wait until ctr's initial resize reached the pty, then print the size */
const SIZED = 'i=0; until s=$(stty size 2>/dev/null); [ -n "$s" ] && [ "${s% *}" != 0 ]; do i=$((i+1)); [ $i -gt 100 ] && break; sleep 0.02; done';

export const CASES: Case[] = [
  // --- named case 4: the last output before exit is never lost
  kase('ctr run -t: every byte written before exit is shown', [
    repeat(RUNS, tty("run -t --rm {c} /bin/sh -c 'stty size; echo done'", [], { normalize: sttyRace })),
  ]),
  kase('ctr run -t: a burst of output right before exit', [
    repeat(Math.max(3, Math.floor(RUNS / 3)), tty("run -t --rm {c} /bin/sh -c 'seq 1 400; echo done'")),
  ]),
  kase('ctr run -t: initial size, resize (SIGWINCH), stdin', [
    tty(`run -t --rm {c} /bin/sh -c '${SIZED}; echo "size=$s"; trap "stty size; exit 7" WINCH; echo ready; while :; do sleep 0.05; done'`, [
      waitFor('ready'), resize(120, 40),
    ]),
    tty("run -t --rm {c2} /bin/sh -c 'echo ask; read x; echo \"got=$x\"'", [waitFor('ask'), keys('hello', 'Enter')]),
  ]),
  kase('ctr run -t: Ctrl-C exits 130', [
    tty("run -t --rm {c} /bin/sh -c 'echo ready; sleep 30; exit $?'", [waitFor('ready'), keys('C-c')]),
  ]),
  kase('ctr run -t: stderr goes to the terminal (no stderr stream)', [
    tty(`run -t --rm {c} /bin/sh -c 'echo to-err >&2; echo to-out; ls -l /proc/self/fd/ | grep -c pts${LINGER}'`),
  ]),
  // runc binds an init's terminal onto /dev/console; without a terminal there is none
  kase('ctr run -t: the terminal is /dev/console too', [
    tty(`run -t --rm {c} /bin/sh -c 'ls -l /dev/console | cut -c1-10; [ "$(stat -c %t:%T /dev/console)" = "$(stat -c %t:%T $(tty))" ] && echo same-device${LINGER}'`),
    run('--rm', '{c2} /bin/sh -c "ls /dev/console 2>&1; true"'),
  ]),
  // runc opens the terminal on the container's own devpts: `tty` names it, /dev/pts lists it,
  // and a non-root process owns it (runc's fixStdioPermissions)
  kase('ctr run -t / exec -t: the terminal is on the container\'s own devpts', [
    tty(`run -t --rm {c} /bin/sh -c 'tty; ls /dev/pts; stat -c %u:%g $(tty)${LINGER}'`),
    run('-d', '{c2} /bin/sleep 1000'),
    tty(`exec -t --exec-id p1 {c2} /bin/sh -c 'tty; ls /dev/pts${LINGER}'`, [], { normalize: execResizeRace }),
    tty(`exec -t --user 1000 --exec-id p2 {c2} /bin/sh -c 'stat -c %u:%g $(tty)${LINGER}'`, [], { normalize: execResizeRace }),
  ]),
  kase('ctr task exec -t: size, resize, Ctrl-C, every byte', [
    run('-d', '{c} /bin/sleep 1000'),
    repeat(Math.max(3, Math.floor(RUNS / 2)), tty("exec -t --exec-id t1 {c} /bin/sh -c 'stty size; echo done'", [], { normalize: (s) => execResizeRace(sttyRace(s)) })),
    tty(`exec -t --exec-id t2 {c} /bin/sh -c '${SIZED}; echo "size=$s"; trap "stty size; exit 3" WINCH; echo ready; while :; do sleep 0.05; done'`, [
      waitFor('ready'), resize(90, 20),
    ]),
    tty("exec -t --exec-id t3 {c} /bin/sh -c 'echo ready; sleep 30; exit $?'", [waitFor('ready'), keys('C-c')]),
    tty(`exec -t --exec-id t4 {c} /bin/sh -c 'echo to-err >&2; echo to-out${LINGER}'`, [], { normalize: execResizeRace }),
    states('{c}'),
  ]),
];

oracleSuite('conformance: spore = runc with a terminal', CASES, { skip, timeoutMs: 120_000 });
