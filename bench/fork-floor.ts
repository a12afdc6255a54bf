// The machine's fork floor, measured in the same run as the thing it is a floor for:
// `node dist/bench/fork-floor.js [N]` forks this (small, idle) Node process N times; each
// child _exits at once and the parent waits for it. Prints one JSON line
// {"n":N,"samples":[ms,...]} on stdout: fork + exit + wait, in milliseconds, per sample.
// Node's heap is MADV_DONTFORK, so prepareFork() runs before each fork exactly as in the
// seeds; what is left is the kernel's cost of copying a Node-sized address space.
import { fork, exit, prepareFork, reapPid } from '../sys/libc.js';

const n = Math.max(1, Number(process.argv[2] ?? 50));
const samples: number[] = [];
for (let i = 0; i < n + 3; i++) {
  const t0 = performance.now();
  prepareFork();
  const pid = fork();
  if (pid === 0) exit(0);
  reapPid(pid, true);
  const ms = performance.now() - t0;
  if (i >= 3) samples.push(ms); // the first forks fault in page tables once
}
process.stdout.write(`${JSON.stringify({ n, samples })}\n`);
