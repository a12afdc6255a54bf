// CPU accounting for benches (bench/goals.ts): the CPU time of a whole process tree, and of the
// machine, from /proc. No root needed to read one's own processes.
//
// treeCpuMs(root): for every living process in root's tree (root and all descendants, by
// the ppid in /proc/<pid>/stat), utime + stime + cutime + cstime. cutime/cstime hold the
// times of every child the process has reaped with wait*() (and, recursively, of the children
// those had reaped), so a process that exited and was reaped inside the tree is still counted,
// by its reaper; a zombie not yet reaped still shows its own times. The sum only grows while
// the tree runs, and its difference between two moments is the CPU the tree spent between
// them. What it misses: children reaped outside the tree, children auto-reaped (SIGCHLD
// ignored), and kernel work not charged to the tree's processes (kworkers, softirqs).
import * as fs from 'node:fs';

/** USER_HZ: /proc/<pid>/stat times are in 1/100 s on Linux */
const TICK_MS = 10;

export interface ProcEntry {
  ppid: number;
  /** utime + stime + cutime + cstime */
  ticks: number;
  /** utime + stime: the process's own threads */
  self: number;
}

/** utime + stime + cutime + cstime (clock ticks) and the parent of every process in /proc */
export function procTable(): Map<number, ProcEntry> {
  const m = new Map<number, ProcEntry>();
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const e = procEntry(Number(d));
    if (e) m.set(Number(d), e);
  }
  return m;
}

function procEntry(pid: number): ProcEntry | undefined {
  try {
    const st = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
    // after "pid (comm) ": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime cutime cstime
    const x = st.slice(st.lastIndexOf(')') + 2).split(' ');
    const self = Number(x[11]) + Number(x[12]);
    return { ppid: Number(x[1]), ticks: self + Number(x[13]) + Number(x[14]), self };
  } catch {
    return undefined; // gone
  }
}

/** CPU ms of `root` and all its descendants (living ones directly, exited ones through their reapers) */
export function treeCpuMs(root: number, table: Map<number, ProcEntry> = procTable()): { ms: number; processes: number } {
  const pids = treePids(root, table);
  return { ms: pids.reduce((a, pid) => a + (table.get(pid)?.ticks ?? 0), 0) * TICK_MS, processes: pids.length };
}

/** the pids of root's tree (root first), from a /proc table */
export function treePids(root: number, table: Map<number, ProcEntry>): number[] {
  const kids = new Map<number, number[]>();
  for (const [pid, p] of table) {
    const list = kids.get(p.ppid);
    if (list) list.push(pid);
    else kids.set(p.ppid, [pid]);
  }
  const out: number[] = [];
  const todo = table.has(root) ? [root] : [];
  while (todo.length) {
    const pid = todo.pop()!;
    out.push(pid);
    todo.push(...(kids.get(pid) ?? []));
  }
  return out;
}

/** A tree's CPU at one moment, per process: own ms and ms of the children it reaped. */
export interface TreeSnapshot { pids: Map<number, { selfMs: number; reapedMs: number; name: string }> }

/** name: a label from the command line (e.g. what bench/goals.ts groups by) */
export function treeSnapshot(root: number, name: (pid: number) => string): TreeSnapshot {
  const table = procTable();
  const pids = new Map<number, { selfMs: number; reapedMs: number; name: string }>();
  for (const pid of treePids(root, table)) {
    const e = table.get(pid)!;
    pids.set(pid, { selfMs: e.self * TICK_MS, reapedMs: (e.ticks - e.self) * TICK_MS, name: name(pid) });
  }
  return { pids };
}

/**
 * CPU between two snapshots by label: `self` is what the processes with that label ran
 * themselves, `reaped` what their children that exited in between had run (a process new
 * since `a` counts from 0; one gone since `a` is left out: its reaper has it). The sum of
 * both over all labels is treeCpuMs(b) - treeCpuMs(a), less what processes gone since `a`
 * had run before it.
 */
export function cpuByLabel(a: TreeSnapshot, b: TreeSnapshot): Map<string, { self: number; reaped: number }> {
  const out = new Map<string, { self: number; reaped: number }>();
  for (const [pid, y] of b.pids) {
    const x = a.pids.get(pid) ?? { selfMs: 0, reapedMs: 0 };
    const e = out.get(y.name) ?? { self: 0, reaped: 0 };
    e.self += y.selfMs - x.selfMs;
    e.reaped += y.reapedMs - x.reapedMs;
    out.set(y.name, e);
  }
  return out;
}

/** busy ms of the whole machine (all CPUs) from /proc/stat: everything but idle and iowait */
export function machineBusyMs(): number {
  const x = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const [user, nice, system, , , irq, softirq, steal] = x;
  return ((user ?? 0) + (nice ?? 0) + (system ?? 0) + (irq ?? 0) + (softirq ?? 0) + (steal ?? 0)) * TICK_MS;
}

/** stolen ms of the whole machine (all CPUs) from /proc/stat: time the hypervisor ran something else while a vCPU wanted to run */
export function machineStealMs(): number {
  const x = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  return (x[7] ?? 0) * TICK_MS;
}

export interface ParkedFlag {
  flag: string;
  /** its environment variable, when the help names one */
  env: string | null;
  /** the value that turns it off, and the one the bench uses to turn it on */
  off: string;
  on: string;
  /** the help's two lines, joined */
  line: string;
}

/**
 * spored's parked-instances flag from its --help text (FLAGS in daemon/config.ts: a line
 * `  --flag PLACEHOLDER  description` and below it `env NAME · default X`), or null.
 * Off: `off` when the placeholder offers it, else 0. On: `onValue` if given, else 4 for a
 * count (`N`), else `on`.
 */
export function parseParkedFlag(help: string, onValue?: string): ParkedFlag | null {
  const lines = help.split('\n');
  const i = lines.findIndex((l) => /^\s+--parked[\w-]*(\s|$)/.test(l));
  if (i < 0) return null;
  const m = /^\s+(--parked[\w-]*)(?:\s+(\S+))?/.exec(lines[i]!)!;
  const choices = (m[2] ?? '').split('|');
  const env = /env (SPORE_[A-Z0-9_]+)/.exec(lines[i + 1] ?? '')?.[1] ?? null;
  const count = choices.some((c) => /^(N|COUNT|\d+)$/.test(c));
  return {
    flag: m[1]!,
    env,
    off: choices.includes('off') ? 'off' : '0',
    on: onValue ?? (count ? '4' : choices.includes('on') ? 'on' : '4'),
    line: `${lines[i]!.trim().replace(/\s{2,}/g, ' ')} (${(lines[i + 1] ?? '').trim()})`,
  };
}
