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

/** A process as a task record (task/record.ts ProcRecord) names it, in the part others read. */
export interface RecordedProcess {
  execId: string;
  pid: number;
  /** its /proc starttime, when known: the pid is that process only while it matches */
  pidStartTime: number | null;
  /** created, running, paused or stopped (task/states.ts) */
  status: string;
  stdio: { stdin: string; stdout: string; stderr: string };
  terminal: boolean;
}

/** The part of a task record (task/record.ts TaskRecord) that names its processes. */
export interface RecordedTask {
  id: string;
  bundle: string;
  /** host pid of the container's init (0 before it exists) */
  pid: number;
  /** the init's /proc starttime, when known */
  pidStartTime?: number | null;
  /** the init (absent in records older than version 2) */
  init?: RecordedProcess;
  execs?: RecordedProcess[];
}
