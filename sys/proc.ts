// Process identity from /proc: a pid alone can be reused, a pid plus its start time cannot
// (proc(5) /proc/<pid>/stat field 22, starttime, in clock ticks since boot). Pid files,
// task records and the launcher compare both.
import { readdirSync, readFileSync } from 'node:fs';

/**
 * The fields of /proc/<pid>/stat after comm (field 3 on: fields[0] is field 3), or null when
 * no such process exists. comm (field 2) may hold spaces and parentheses: they start past the
 * last ')'.
 */
function statFields(pid: number): string[] | null {
  if (!Number.isInteger(pid) || pid <= 0) return null;
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch {
    return null;
  }
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

/** starttime of `pid` (clock ticks since boot), or null when no such process exists. */
export function processStartTime(pid: number): number | null {
  const v = Number(statFields(pid)?.[19]); // field 22
  return Number.isFinite(v) ? v : null;
}

/** Whether `pid` is a process that has not exited: false for none, a zombie (stat state Z) or one exiting (X). */
export function processRunning(pid: number): boolean {
  const state = statFields(pid)?.[0]; // field 3
  return state !== undefined && state !== 'Z' && state !== 'X';
}

/** Parent pid and start time of `pid` (proc(5) stat fields 4 and 22) in one read, or null when no such process exists. */
export function parentAndStart(pid: number): { ppid: number; startTicks: number } | null {
  const f = statFields(pid);
  const ppid = Number(f?.[1]);
  const startTicks = Number(f?.[19]);
  return Number.isFinite(ppid) && Number.isFinite(startTicks) ? { ppid, startTicks } : null;
}

/**
 * Now, in the clock ticks of stat's starttime: /proc/uptime (seconds, to 1/100) times USER_HZ,
 * which is 100 on Linux's ABI (sysconf(_SC_CLK_TCK)).
 */
export function bootTicksNow(): number {
  return Math.floor(Number(readFileSync('/proc/uptime', 'latin1').split(' ')[0]) * 100);
}

/** The parent pid of `pid` (proc(5) stat field 4) as this pid namespace sees it, or null when no such process exists. */
export function parentPid(pid: number): number | null {
  const v = Number(statFields(pid)?.[1]); // field 4
  return Number.isFinite(v) ? v : null;
}

/** "pid starttime": what a pid file holds. */
export function processIdentity(pid: number): string | null {
  const t = processStartTime(pid);
  return t === null ? null : `${pid} ${t}`;
}

/** Whether the identity read from a pid file ("pid starttime") is a live process now. */
export function identityAlive(identity: string): boolean {
  const [p, t] = identity.trim().split(/\s+/);
  const pid = Number(p);
  if (!Number.isInteger(pid) || pid <= 0 || t === undefined) return false;
  return processStartTime(pid) === Number(t);
}

/**
 * Pids whose parent (proc(5) stat field 4) is `ppid`, zombies included, from a scan of /proc
 * (as seen from the caller's pid namespace). Slower than /proc/<pid>/task/<pid>/children but
 * complete: the kernel walks that list by position, and a sibling exiting mid-walk hides one.
 */
export function childPids(ppid: number): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (d.charCodeAt(0) < 48 || d.charCodeAt(0) > 57) continue;
    let stat: string;
    try { stat = readFileSync(`/proc/${d}/stat`, 'latin1'); } catch { continue; }
    if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === ppid) out.push(Number(d));
  }
  return out;
}
