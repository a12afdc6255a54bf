// The on-disk record of a task, written at Create and removed at Delete. It is what
// `containerd-shim-spore-v2 delete` needs to clean up after a dead spored, and what the
// launcher checks (by existence alone, from sh) to skip Node on the common path.
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { CgroupHandle } from '../pools/cgroups.js';

export interface TaskRecord {
  id: string;
  namespace: string;
  bundle: string;
  /** host pid of the container init (0 before it exists) */
  pid: number;
  /** absolute rootfs path the container uses */
  rootfs: string;
  /** true when spored mounted CreateTaskRequest.rootfs at rootfs and must unmount it */
  rootfsMounted: boolean;
  cgroup: CgroupHandle | null;
  createdAt: string;
}

export function recordPath(runDir: string, namespace: string, id: string): string {
  return join(runDir, 'tasks', namespace, `${id}.json`);
}

export function writeRecord(runDir: string, rec: TaskRecord): void {
  const path = recordPath(runDir, rec.namespace, rec.id);
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.tmp`;
  writeFileSync(tmp, JSON.stringify(rec));
  renameSync(tmp, path);
}

export function readRecord(runDir: string, namespace: string, id: string): TaskRecord | null {
  try {
    return JSON.parse(readFileSync(recordPath(runDir, namespace, id), 'utf8')) as TaskRecord;
  } catch {
    return null;
  }
}

export function removeRecord(runDir: string, namespace: string, id: string): void {
  rmSync(recordPath(runDir, namespace, id), { force: true });
}
