// The machine's fork floor, measured in the same run as the thing it is a floor for:
// `node dist/bench/fork-floor.js [N]` forks this (small, idle) Node process N times; each
// child _exits at once and the parent waits for it. Prints one JSON line
// {"n":N,"samples":[ms,...],"cpu_ms_per_fork":x} on stdout: fork + exit + wait, in
// milliseconds, per sample; cpu_ms_per_fork is the CPU time (user + system) of this process
// (process.cpuUsage) and of its reaped children (cutime + cstime in /proc/self/stat, clock
// ticks of 10 ms) over the N forks, divided by N.
// Node's heap is MADV_DONTFORK, so prepareFork() runs before each fork exactly as in the
// seeds; what is left is the kernel's cost of copying a Node-sized address space.
import { readFileSync } from 'node:fs';
import { fork, exit, prepareFork, reapPid } from '../sys/libc.js';

/** cutime + cstime of this process (its waited-for children), ms; USER_HZ is 100 on Linux */
function childrenCpuMs(): number {
  const st = readFileSync('/proc/self/stat', 'latin1');
  const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
  return (Number(f[13]) + Number(f[14])) * 10;
}

const n = Math.max(1, Number(process.argv[2] ?? 50));
const samples: number[] = [];
let self0 = process.cpuUsage();
let children0 = 0;
for (let i = 0; i < n + 3; i++) {
  if (i === 3) {
    self0 = process.cpuUsage();
    children0 = childrenCpuMs();
  }
  const t0 = performance.now();
  prepareFork();
  const pid = fork();
  if (pid === 0) exit(0);
  reapPid(pid, true);
  const ms = performance.now() - t0;
  if (i >= 3) samples.push(ms); // the first forks fault in page tables once
}
const self = process.cpuUsage(self0);
const cpu = (self.user + self.system) / 1000 + (childrenCpuMs() - children0);
process.stdout.write(`${JSON.stringify({ n, samples, cpu_ms_per_fork: cpu / n })}\n`);
