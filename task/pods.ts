// Pods: containers whose OCI spec names a CRI sandbox (io.kubernetes.cri.sandbox-id) belong to
// one pod. spored keeps one resident record per pod (members, spore.dev/* hints from the pod's
// annotations, the handler's runtimeoptions ConfigPath) and mirrors it to
// <runDir>/pods/<namespace>/<sandbox-id>.json. Cgroup ancestors made for the pod (the pod's
// cgroup parent, e.g. /kubepods/besteffort/pod<uid>) belong to the pod and are removed when
// its last member is deleted, whatever the order of deletes.
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Spec } from '../protocols/oci/spec.js';
import { writeFileAtomic } from '../sys/atomic-file.js';

/** containerd CRI's annotation, and CRI-O's */
export const SANDBOX_ID_ANNOTATIONS = ['io.kubernetes.cri.sandbox-id', 'io.kubernetes.cri-o.SandboxID'] as const;
/** pod annotations spore reads (copied into container specs by `pod_annotations = ["spore.dev/*"]`) */
export const HINT_PREFIX = 'spore.dev/';

export interface PodRecord {
  sandboxId: string;
  namespace: string;
  /** container ids, the sandbox ("pause") container included */
  members: string[];
  /** spore.dev/* annotations, e.g. spore.dev/seed */
  hints: Record<string, string>;
  /** runtimeoptions.v1.Options.config_path the handler was configured with */
  configPath: string | null;
  createdAt: string;
  /** cgroup dirs made for the pod's members, deepest first; removed when the pod empties */
  ownedDirs?: string[];
}

interface Pod extends PodRecord {
  ownedDirs: string[];
}

export function sandboxIdOf(spec: Spec): string | null {
  const a = spec.annotations ?? {};
  for (const k of SANDBOX_ID_ANNOTATIONS) if (typeof a[k] === 'string' && a[k]) return a[k] as string;
  return null;
}

export function hintsOf(spec: Spec): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(spec.annotations ?? {})) if (k.startsWith(HINT_PREFIX) && typeof v === 'string') out[k] = v;
  return out;
}

export function podRecordPath(runDir: string, namespace: string, sandboxId: string): string {
  return join(runDir, 'pods', namespace, `${sandboxId}.json`);
}

export class PodRegistry {
  private readonly pods = new Map<string, Pod>();
  constructor(private readonly runDir: string) {}

  get(namespace: string, sandboxId: string): PodRecord | undefined {
    return this.pods.get(`${namespace}/${sandboxId}`);
  }

  /**
   * Add a container to its pod (created on first join). The cgroup dirs its Create made are
   * handed to the pod. Returns the sandbox id, or null for a container outside any pod.
   */
  join(namespace: string, id: string, spec: Spec, madeDirs: string[], configPath: string | null): string | null {
    const sandboxId = sandboxIdOf(spec);
    if (!sandboxId) return null;
    const k = `${namespace}/${sandboxId}`;
    let pod = this.pods.get(k);
    if (!pod) {
      pod = { sandboxId, namespace, members: [], hints: {}, configPath, createdAt: new Date().toISOString(), ownedDirs: [] };
      this.pods.set(k, pod);
    }
    if (!pod.members.includes(id)) pod.members.push(id);
    Object.assign(pod.hints, hintsOf(spec));
    if (configPath && !pod.configPath) pod.configPath = configPath;
    for (const d of madeDirs) if (!pod.ownedDirs.includes(d)) pod.ownedDirs.push(d);
    pod.ownedDirs.sort((a, b) => b.length - a.length);
    this.write(pod);
    return sandboxId;
  }

  /** A restarted spored: the container is a member of a pod whose record is on disk. */
  rejoin(namespace: string, id: string, sandboxId: string): void {
    const k = `${namespace}/${sandboxId}`;
    let pod = this.pods.get(k);
    if (!pod) {
      let rec: PodRecord;
      try {
        rec = JSON.parse(readFileSync(podRecordPath(this.runDir, namespace, sandboxId), 'utf8')) as PodRecord;
      } catch {
        rec = { sandboxId, namespace, members: [], hints: {}, configPath: null, createdAt: new Date().toISOString() };
      }
      pod = { ...rec, members: [], ownedDirs: rec.ownedDirs ?? [] };
      this.pods.set(k, pod);
    }
    if (!pod.members.includes(id)) pod.members.push(id);
  }

  /** Remove a container from its pod; returns the pod's dirs to remove once it is empty, else []. */
  leave(namespace: string, id: string, sandboxId: string): string[] {
    const k = `${namespace}/${sandboxId}`;
    const pod = this.pods.get(k);
    if (!pod) return [];
    pod.members = pod.members.filter((m) => m !== id);
    if (pod.members.length > 0) {
      this.write(pod);
      return [];
    }
    this.pods.delete(k);
    rmSync(podRecordPath(this.runDir, namespace, sandboxId), { force: true });
    return pod.ownedDirs;
  }

  private write(pod: Pod): void {
    const path = podRecordPath(this.runDir, pod.namespace, pod.sandboxId);
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    const rec: PodRecord = { sandboxId: pod.sandboxId, namespace: pod.namespace, members: pod.members, hints: pod.hints, configPath: pod.configPath, createdAt: pod.createdAt, ownedDirs: pod.ownedDirs };
    writeFileAtomic(path, JSON.stringify(rec));
  }
}
