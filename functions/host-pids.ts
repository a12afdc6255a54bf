// Host identities of processes a seed reports. A seed (and the function code in it) speaks
// in its own pid namespace and could claim anything, so spored never acts on a reported
// pid: it finds the seed's child whose pid, seen from the seed's pid namespace, is the
// reported one (/proc/<seed>/task/<seed>/children and each child's NSpid, both written by
// the kernel), and from then on holds a pidfd to it, which cannot come to mean another
// process.
import { readFileSync } from 'node:fs';
import * as sys from '../sys/libc.js';

/** The NSpid line of /proc/<pid>/status: the pid in each pid namespace, outermost first. */
export function nsPids(hostPid: number): number[] | null {
  let text: string;
  try { text = readFileSync(`/proc/${hostPid}/status`, 'latin1'); } catch { return null; }
  const m = /^NSpid:\s+(.+)$/m.exec(text);
  return m ? (m[1] as string).trim().split(/\s+/).map(Number) : null;
}

/** Pure part: which of `children` (host pid -> NSpid list) is `reported` at `depth`. */
export function matchChild(children: [number, number[]][], depth: number, reported: number): number | null {
  for (let i = children.length - 1; i >= 0; i--) {
    const [host, ns] = children[i] as [number, number[]];
    if (ns[depth] === reported) return host;
  }
  return null;
}

/**
 * The host pid of `parentHostPid`'s child that the parent knows as `reported` (a pid in
 * the parent's own pid namespace), or null when it has no such child (exited, or a lie).
 */
export function childHostPid(parentHostPid: number, reported: number): number | null {
  const parentNs = nsPids(parentHostPid);
  if (!parentNs) return null;
  let list: string;
  try { list = readFileSync(`/proc/${parentHostPid}/task/${parentHostPid}/children`, 'latin1'); } catch { return null; }
  const children: [number, number[]][] = [];
  for (const s of list.trim().split(/\s+/)) {
    if (!s) continue;
    const ns = nsPids(Number(s));
    if (ns) children.push([Number(s), ns]);
  }
  return matchChild(children, parentNs.length - 1, reported);
}

/**
 * A pidfd for the host process `hostPid`, checked to still be `parentHostPid`'s child with
 * the same NSpid after it was opened (so the fd cannot belong to a reused pid). Null when
 * the process is gone.
 */
export function openChildPidfd(parentHostPid: number, hostPid: number, expectNs: number[] | null): number | null {
  let fd: number;
  try { fd = sys.pidfdOpen(hostPid); } catch { return null; }
  let ppid: number | null = null;
  try { ppid = Number(/^PPid:\s+(\d+)/m.exec(readFileSync(`/proc/${hostPid}/status`, 'latin1'))?.[1]); } catch { /* gone */ }
  const ns = nsPids(hostPid);
  if (ppid !== parentHostPid || !ns || (expectNs && ns.join(' ') !== expectNs.join(' '))) { sys.close(fd); return null; }
  return fd;
}
