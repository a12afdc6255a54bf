// Kubelet-side helpers for CRI tests and benches: locally built images imported into
// containerd's k8s.io namespace, pod/container configs shaped like the kubelet's, polling.
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as path from 'node:path';
import type { MessageInitShape } from '@bufbuild/protobuf';
import { ContainerState, type ContainerConfigSchema, type PodSandboxConfigSchema } from '../fri-proto/gen/cri/runtime/v1/api_pb.js';
import { CRI_NAMESPACE, repoRoot, type Containerd } from './harness.js';
import type { CriClient } from './cri-client.js';

export const imagesDir: string = process.env.SPORE_IMAGES_DIR ?? '/var/lib/spore/images';
export type ImageName = 'busybox' | 'pause' | 'node' | 'python';
export const imageRef = (name: ImageName): string => `docker.io/spore/${name}:latest`;

/** Build (if needed) and import image tarballs into the containerd's k8s.io namespace. */
export function importImages(c: Containerd, names: ImageName[]): void {
  execFileSync(path.join(repoRoot, 'scripts', 'build-images.sh'), names, { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, SPORE_IMAGES_DIR: imagesDir } });
  for (const n of names) {
    const r = spawnSync('ctr', ['--address', c.address, '--namespace', CRI_NAMESPACE, 'images', 'import', path.join(imagesDir, `${n}.tar`)], { encoding: 'utf8', timeout: 120_000 });
    if (r.status !== 0) throw new Error(`ctr images import ${n}: ${r.stderr || r.error}`);
  }
}

export type PodConfig = MessageInitShape<typeof PodSandboxConfigSchema>;
export type ContainerConfig = MessageInitShape<typeof ContainerConfigSchema>;

export interface PodOptions {
  name?: string;
  /** the kubelet's cgroup root (default /kubepods; tests pass Containerd.cri.cgroupRoot) */
  cgroupRoot?: string;
  logDirectory: string;
  annotations?: Record<string, string>;
  hostname?: string;
  /** one pid namespace for the whole pod (the kubelet's shareProcessNamespace: true) */
  sharedPid?: boolean;
  /** the pod's cgroup parent as given (a kubelet on the systemd cgroup driver gives its pod slice, e.g. kubepods-besteffort-pod<uid>.slice) */
  cgroupParent?: string;
}

/** A pod sandbox config as the kubelet sends it (cgroupfs driver: <cgroupRoot>/besteffort/pod<uid>). */
export function podConfig(o: PodOptions): PodConfig {
  const uid = randomBytes(8).toString('hex');
  const name = o.name ?? `pod-${uid.slice(0, 6)}`;
  return {
    metadata: { name, uid, namespace: 'default', attempt: 0 },
    hostname: o.hostname ?? name,
    logDirectory: o.logDirectory,
    labels: { 'io.kubernetes.pod.name': name, 'io.kubernetes.pod.namespace': 'default', 'io.kubernetes.pod.uid': uid },
    annotations: o.annotations ?? {},
    linux: {
      cgroupParent: o.cgroupParent ?? `${o.cgroupRoot ?? '/kubepods'}/besteffort/pod${uid}`,
      securityContext: { namespaceOptions: { network: 0, pid: o.sharedPid ? 0 : 1, ipc: 0 } }, // POD, CONTAINER (or POD), POD
    },
  };
}

export interface ContainerOptions {
  name: string;
  image?: ImageName;
  command: string[];
  args?: string[];
  env?: Record<string, string>;
  memoryLimit?: number;
  /** in the pod's pid namespace (its pod must have sharedPid) */
  sharedPid?: boolean;
}

export function containerConfig(o: ContainerOptions): ContainerConfig {
  return {
    metadata: { name: o.name, attempt: 0 },
    image: { image: imageRef(o.image ?? 'busybox') },
    command: o.command,
    args: o.args ?? [],
    envs: Object.entries(o.env ?? {}).map(([key, value]) => ({ key, value })),
    labels: { 'io.kubernetes.container.name': o.name },
    logPath: `${o.name}/0.log`,
    linux: {
      resources: { cpuShares: 2n, oomScoreAdj: 1000n, ...(o.memoryLimit ? { memoryLimitInBytes: BigInt(o.memoryLimit) } : {}) },
      securityContext: { namespaceOptions: { network: 0, pid: o.sharedPid ? 0 : 1, ipc: 0 } },
    },
  };
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Poll until fn returns a value that is not undefined, or throw after timeoutMs. */
export async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 10_000, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await sleep(everyMs);
  }
}

/** Wait until the container is EXITED; returns its status. */
export async function waitExited(cri: CriClient, id: string, timeoutMs = 10_000) {
  return waitFor(`container ${id} to exit`, async () => {
    const s = (await cri.runtime.containerStatus({ containerId: id })).status;
    return s?.state === ContainerState.CONTAINER_EXITED ? s : undefined;
  }, timeoutMs);
}
