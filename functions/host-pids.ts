// Host identities of processes a seed reports. A seed (and the function code in it) speaks
// in its own pid namespace and could claim anything, so spored never acts on a reported
// pid: it finds the seed's child whose pid, seen from the seed's pid namespace, is the
// reported one (/proc/<seed>/task/<seed>/children and each child's NSpid, both written by
// the kernel), and from then on holds a pidfd to it, which cannot come to mean another
// process.
import { childPids } from '../sys/proc.js';
import * as sys from '../sys/libc.js';

/** The NSpid line of /proc/<pid>/status: the pid in each pid namespace, outermost first. */
export function nsPids(hostPid: number): number[] | null {
  let text: string;
  try { text = sys.readSmallFile(`/proc/${hostPid}/status`); } catch { return null; }
  return statusNsPids(text);
}

function statusNsPids(status: string): number[] | null {
  const m = /^NSpid:\s+(.+)$/m.exec(status);
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
 *
 * The children file can miss a child: the kernel walks the list by position, so a sibling
 * that exits during the walk shifts the list and the next entry (often the newest child,
 * at the end) is skipped (seen at 24 concurrent invocations: about 1 in 2,000 forks). So it
 * is read again, and as a last resort every /proc/<pid>/status is searched for the child by
 * its parent and NSpid. `readChildren`: for tests (the children file's text).
 */
export function childHostPid(parentHostPid: number, reported: number, readChildren: (pid: number) => string = childrenFile): number | null {
  return childOf(parentHostPid, reported, readChildren)?.host ?? null;
}

/**
 * childHostPid with the NSpid it matched on (for openChildPidfd's check, without reading it
 * again). `parentNs`: the parent's own NSpid when the caller has it already (a process's
 * NSpid never changes), else it is read.
 */
export function childOf(parentHostPid: number, reported: number, readChildren: (pid: number) => string = childrenFile, parentNs: number[] | null = nsPids(parentHostPid)): { host: number; ns: number[] } | null {
  if (!parentNs) return null;
  const depth = parentNs.length - 1;
  for (let attempt = 0; attempt < 3; attempt++) {
    const pids = newestFirst(parentHostPid, readChildren);
    if (!pids) return null;
    for (const host of pids) {
      const ns = nsPids(host);
      if (ns?.[depth] === reported) return { host, ns };
    }
  }
  const all = scanChildren(parentHostPid);
  const host = matchChild(all, depth, reported);
  return host === null ? null : { host, ns: all.find(([h]) => h === host)?.[1] as number[] };
}

/**
 * The host pid of `parentHostPid`'s child known to the parent as `reported`, and a pidfd
 * for it; null when the parent has no such child (exited, or a lie). The hot path of every
 * fork: the pidfd is opened first and the process it holds is then checked (PPid and NSpid
 * from one status read), so one read serves both the match and the check that the fd
 * cannot belong to a reused pid. Falls back to childOf + openChildPidfd when the children
 * file missed the child (see childHostPid). `parentNs`: the parent's NSpid.
 */
export function openChildOf(parentHostPid: number, reported: number, parentNs: number[], readChildren: (pid: number) => string = childrenFile): { host: number; pidfd: number } | null {
  const depth = parentNs.length - 1;
  const pids = newestFirst(parentHostPid, readChildren);
  if (!pids) return null;
  for (const host of pids) {
    let fd: number;
    try { fd = sys.pidfdOpen(host); } catch { continue; }
    let text: string | null = null;
    try { text = sys.readSmallFile(`/proc/${host}/status`); } catch { /* gone */ }
    const ns = text === null ? null : statusNsPids(text);
    if (text !== null && ns?.[depth] === reported && Number(/^PPid:\s+(\d+)/m.exec(text)?.[1]) === parentHostPid) return { host, pidfd: fd };
    sys.close(fd);
  }
  const child = childOf(parentHostPid, reported, readChildren, parentNs);
  if (!child) return null;
  const pidfd = openChildPidfd(parentHostPid, child.host, child.ns);
  return pidfd === null ? null : { host: child.host, pidfd };
}

/**
 * The parent's children (host pids), newest first, from its children file; null when it
 * cannot be read (the parent is gone). Newest first: the child asked about is nearly always
 * the newest, so a seed with many children in flight still costs one status read.
 */
function newestFirst(parentHostPid: number, readChildren: (pid: number) => string): number[] | null {
  let list: string;
  try { list = readChildren(parentHostPid); } catch { return null; }
  return list.trim().split(/\s+/).filter((x) => x !== '').map(Number).filter(Number.isInteger).reverse();
}

function childrenFile(pid: number): string {
  return sys.readSmallFile(`/proc/${pid}/task/${pid}/children`);
}

/** Every process whose parent is `parentHostPid`, with its NSpid (a full /proc scan: sys/proc.ts childPids). */
function scanChildren(parentHostPid: number): [number, number[]][] {
  const out: [number, number[]][] = [];
  for (const pid of childPids(parentHostPid)) {
    const ns = nsPids(pid);
    if (ns) out.push([pid, ns]);
  }
  return out;
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
  let ns: number[] | null = null;
  try {
    const text = sys.readSmallFile(`/proc/${hostPid}/status`);
    ppid = Number(/^PPid:\s+(\d+)/m.exec(text)?.[1]);
    ns = statusNsPids(text);
  } catch { /* gone */ }
  if (ppid !== parentHostPid || !ns || (expectNs && ns.join(' ') !== expectNs.join(' '))) { sys.close(fd); return null; }
  return fd;
}
