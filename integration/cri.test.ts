// spore behind containerd's CRI plugin, driven the way the kubelet drives it: RuntimeClass
// handler "spore", pods from locally built images, CNI bridge networking.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ContainerState, PodSandboxState } from '../fri-proto/gen/cri/runtime/v1/api_pb.js';
import * as grpc from '@grpc/grpc-js';
import { CriError, criClient, type CriClient } from './cri-client.js';
import { containerConfig, importImages, podConfig, sleep, waitExited, waitFor, type PodConfig } from './cri-env.js';
import { containerdSkipReason, startContainerd, which, type Containerd } from './harness.js';

const skip = containerdSkipReason() ?? (which('ip') ? undefined : 'iproute2 not installed') ?? (fs.existsSync('/usr/lib/cni/bridge') ? undefined : 'containernetworking-plugins not installed');
if (skip) console.warn(`[cri.test] skipped: ${skip}`);

const HANDLER = 'spore';

describe.skipIf(skip !== undefined)('spore via containerd CRI (kubelet path)', () => {
  let c: Containerd;
  let cri: CriClient;
  let logRoot: string;

  async function runPod(name: string, annotations: Record<string, string> = {}): Promise<{ id: string; config: PodConfig; logDir: string }> {
    const logDir = path.join(logRoot, name);
    fs.mkdirSync(logDir, { recursive: true });
    const config = podConfig({ name, logDirectory: logDir, annotations });
    const r = await cri.runtime.runPodSandbox({ config, runtimeHandler: HANDLER });
    return { id: r.podSandboxId, config, logDir };
  }

  async function removePod(id: string): Promise<void> {
    await cri.runtime.stopPodSandbox({ podSandboxId: id });
    await cri.runtime.removePodSandbox({ podSandboxId: id });
  }

  beforeAll(async () => {
    c = await startContainerd({ cri: true });
    importImages(c, ['pause', 'busybox']);
    cri = criClient(c.address);
    logRoot = path.join(c.dir, 'pod-logs');
    // CRI reports NetworkReady once it has loaded the CNI config
    await waitFor('CRI runtime and network ready', async () => {
      const s = await cri.runtime.status({});
      const conds = s.status?.conditions ?? [];
      return conds.length > 0 && conds.every((x) => x.status) ? true : undefined;
    }, 15_000);
  }, 90_000);

  afterAll(async () => {
    if (process.env.SPORE_TEST_DUMP && c) {
      console.log(fs.readFileSync(c.logFile, 'utf8').split('\n').filter((l) => /level=(error|warning)/.test(l)).slice(-40).join('\n'));
      console.log(fs.readFileSync(c.sporeLog, 'utf8').split('\n').filter((l) => /rpc failed|"level":[456]0/.test(l)).slice(-40).join('\n'));
    }
    cri?.close();
    await c?.stop();
  }, 60_000);

  it('runs the full kubelet lifecycle on handler spore', async () => {
    const version = await cri.runtime.version({ version: 'v1' });
    expect(version.runtimeApiVersion).toBe('v1');

    const pod = await runPod('life');
    const ps = await cri.runtime.podSandboxStatus({ podSandboxId: pod.id, verbose: true });
    expect(ps.status?.state).toBe(PodSandboxState.SANDBOX_READY);
    expect(ps.status?.runtimeHandler).toBe(HANDLER);
    expect(ps.status?.network?.ip).toMatch(/^10\./);
    expect(JSON.parse(ps.info.info ?? '{}').runtimeType).toBe('io.containerd.spore.v2');

    const cc = containerConfig({ name: 'app', command: ['/bin/sh', '-c', 'echo hello-out; echo hello-err >&2; echo $MYVAR; exec sleep 1000'], env: { MYVAR: 'from-env' } });
    const { containerId: id } = await cri.runtime.createContainer({ podSandboxId: pod.id, config: cc, sandboxConfig: pod.config });
    expect((await cri.runtime.containerStatus({ containerId: id })).status?.state).toBe(ContainerState.CONTAINER_CREATED);
    await cri.runtime.startContainer({ containerId: id });
    const st = await cri.runtime.containerStatus({ containerId: id, verbose: true });
    expect(st.status?.state).toBe(ContainerState.CONTAINER_RUNNING);
    expect(st.status?.startedAt).toBeGreaterThan(0n);
    const info = JSON.parse(st.info.info ?? '{}') as { pid?: number; runtimeType?: string };
    expect(info.runtimeType).toBe('io.containerd.spore.v2');
    expect(info.pid).toBeGreaterThan(1);

    const ex = await cri.runtime.execSync({ containerId: id, cmd: ['/bin/sh', '-c', 'echo in-exec; cat /proc/1/cmdline | tr "\\0" " "; echo oops >&2; exit 3'], timeout: 10n });
    expect(ex.exitCode).toBe(3);
    expect(Buffer.from(ex.stdout).toString()).toMatch(/in-exec\nsleep 1000/);
    expect(Buffer.from(ex.stderr).toString()).toBe('oops\n');

    // CRI log file: "<RFC3339Nano> <stream> <P|F> <line>"
    const logFile = path.join(pod.logDir, 'app/0.log');
    expect(st.status?.logPath).toBe(logFile);
    const log = await waitFor('container log', async () => {
      const t = fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8') : '';
      return t.includes('from-env') ? t : undefined;
    });
    expect(log).toMatch(/^\S+ stdout F hello-out$/m);
    expect(log).toMatch(/^\S+ stderr F hello-err$/m);
    expect(log).toMatch(/^\S+ stdout F from-env$/m);

    await cri.runtime.stopContainer({ containerId: id, timeout: 1n });
    const stopped = (await cri.runtime.containerStatus({ containerId: id })).status;
    expect(stopped?.state).toBe(ContainerState.CONTAINER_EXITED);
    expect(stopped?.exitCode).toBe(137); // sleep as pid 1 ignores SIGTERM; SIGKILL after the grace period
    expect(stopped?.finishedAt).toBeGreaterThan(0n);
    await cri.runtime.removeContainer({ containerId: id });
    expect((await cri.runtime.listContainers({ filter: { podSandboxId: pod.id } })).containers).toHaveLength(0);

    await cri.runtime.stopPodSandbox({ podSandboxId: pod.id });
    expect((await cri.runtime.podSandboxStatus({ podSandboxId: pod.id })).status?.state).toBe(PodSandboxState.SANDBOX_NOTREADY);
    await cri.runtime.removePodSandbox({ podSandboxId: pod.id });
    expect((await cri.runtime.listPodSandbox({})).items.filter((p) => p.id === pod.id)).toHaveLength(0);
    // again, as the kubelet may: remove is idempotent; containerd 1.6 answers stop with NotFound
    await cri.runtime.removePodSandbox({ podSandboxId: pod.id });
    await cri.runtime.stopPodSandbox({ podSandboxId: pod.id }).catch((e: CriError) => expect(e.code).toBe(grpc.status.NOT_FOUND));
  }, 60_000);
});
