// The run dir's task records as processes other than spored read them: the keeper (which
// answers containerd's Connect and Pids when spored does not: keeper/stand-in.ts) and the
// shim binary's `delete`. spored writes them (task/record.ts, which has the whole format).
import { join } from 'node:path';

/**
 * Whether `s` can name a container or a namespace in a run dir path: containerd's identifiers
 * (containerd/identifiers: letters, digits, '.', '_', '-'; never a '/' or a leading dot).
 */
export function isTaskName(s: string): boolean {
  return /^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(s);
}

/** <runDir>/tasks/<namespace>/<id>.json */
export function recordPath(runDir: string, namespace: string, id: string): string {
  return join(runDir, 'tasks', namespace, `${id}.json`);
}

/** The part of a task record (task/record.ts TaskRecord) that names its processes. */
export interface RecordedProcesses {
  id: string;
  /** host pid of the container's init (0 before it exists) */
  pid: number;
  /** the init's /proc starttime, when known: the pid is that process only while it matches */
  pidStartTime?: number | null;
  execs?: { execId: string; pid: number; pidStartTime: number | null }[];
}
