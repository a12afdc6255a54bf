// spore behind containerd's CRI plugin, driven the way the kubelet drives it: RuntimeClass
// handler "spore", pods from locally built images, CNI bridge networking.
import { spawnSync } from 'node:child_process';
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
    const config = podConfig({ name, logDirectory: logDir, annotations, cgroupRoot: c.cri!.cgroupRoot });
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

  /** host pid of a container (verbose ContainerStatus info) */
  async function pidOf(id: string): Promise<number> {
    const st = await cri.runtime.containerStatus({ containerId: id, verbose: true });
    return (JSON.parse(st.info.info ?? '{}') as { pid: number }).pid;
  }
  async function sandboxPid(id: string): Promise<number> {
    const st = await cri.runtime.podSandboxStatus({ podSandboxId: id, verbose: true });
    return (JSON.parse(st.info.info ?? '{}') as { pid: number }).pid;
  }
  const nsOf = (pid: number, ns: string): string => fs.readlinkSync(`/proc/${pid}/ns/${ns}`);
  const cgroupOf = (pid: number): string => fs.readFileSync(`/proc/${pid}/cgroup`, 'utf8');

  it('groups a pod: two containers share net/ipc/uts with the sandbox, the pod cgroup, and talk over localhost', async () => {
    const pod = await runPod('duo', { 'spore.dev/seed': 'busybox' });
    const uid = pod.config.metadata!.uid!;
    const server = (await cri.runtime.createContainer({
      podSandboxId: pod.id, sandboxConfig: pod.config,
      config: containerConfig({ name: 'server', command: ['/bin/sh', '-c', 'mkdir -p /www && echo "pong from $(hostname)" > /www/index.html && exec httpd -f -p 8080 -h /www'] }),
    })).containerId;
    await cri.runtime.startContainer({ containerId: server });
    const client = (await cri.runtime.createContainer({
      podSandboxId: pod.id, sandboxConfig: pod.config,
      config: containerConfig({ name: 'client', command: ['/bin/sh', '-c', 'for i in $(seq 1 100); do wget -q -O - http://127.0.0.1:8080/ && exit 0; sleep 0.05; done; exit 1'] }),
    })).containerId;
    await cri.runtime.startContainer({ containerId: client });

    const done = await waitExited(cri, client, 15_000);
    expect(done.exitCode).toBe(0);
    const log = fs.readFileSync(path.join(pod.logDir, 'client/0.log'), 'utf8');
    expect(log).toMatch(/ stdout F pong from duo$/m);

    // namespaces and cgroup parent shared with the sandbox
    const [sp, vp] = [await sandboxPid(pod.id), await pidOf(server)];
    for (const ns of ['net', 'ipc', 'uts']) expect(nsOf(vp, ns), ns).toBe(nsOf(sp, ns));
    expect(nsOf(vp, 'mnt')).not.toBe(nsOf(sp, 'mnt'));
    expect(cgroupOf(sp)).toContain(`${c.cri!.cgroupRoot}/besteffort/pod${uid}/${pod.id}`);
    expect(cgroupOf(vp)).toContain(`${c.cri!.cgroupRoot}/besteffort/pod${uid}/${server}`);

    // spore.dev/* pod annotations reach the container's OCI spec (pod_annotations in the CRI config)
    const spec = JSON.parse((await cri.runtime.containerStatus({ containerId: server, verbose: true })).info.info ?? '{}').runtimeSpec as { annotations: Record<string, string> };
    expect(spec.annotations['spore.dev/seed']).toBe('busybox');
    expect(spec.annotations['io.kubernetes.cri.sandbox-id']).toBe(pod.id);

    // one resident pod record in spored: members, spore.dev/* hints, the handler's ConfigPath
    const recFile = path.join(c.runDir, 'pods', 'k8s.io', `${pod.id}.json`);
    const rec = JSON.parse(fs.readFileSync(recFile, 'utf8')) as { members: string[]; hints: Record<string, string>; configPath: string };
    // members are live tasks: CRI deletes a task as soon as it exits (the client did)
    expect(rec.members.sort(), JSON.stringify({ rec, pod: pod.id, server, client })).toEqual([pod.id, server].sort());
    expect(rec.hints).toEqual({ 'spore.dev/seed': 'busybox' });
    expect(rec.configPath).toBe(c.cri!.sporeConfigPath);

    // teardown: StopPodSandbox kills the containers, RemovePodSandbox removes them and the pod cgroup
    await cri.runtime.stopPodSandbox({ podSandboxId: pod.id });
    expect((await cri.runtime.containerStatus({ containerId: server })).status?.state).toBe(ContainerState.CONTAINER_EXITED);
    await cri.runtime.removePodSandbox({ podSandboxId: pod.id });
    expect((await cri.runtime.listContainers({ filter: { podSandboxId: pod.id } })).containers).toHaveLength(0);
    expect(fs.existsSync(`/sys/fs/cgroup/memory${c.cri!.cgroupRoot}/besteffort/pod${uid}`) || fs.existsSync(`/sys/fs/cgroup${c.cri!.cgroupRoot}/besteffort/pod${uid}`)).toBe(false);
    expect(fs.existsSync(recFile)).toBe(false);
  }, 60_000);

  it('a kubelet on the systemd cgroup driver: the pod slice expanded as systemd nests it, a scope per container, all of it gone with the pod', async () => {
    // (a slice tree of this run's own: kubepods.slice may be another run's)
    const top = `spit${Math.random().toString(36).slice(2, 8)}`;
    const podSlice = `${top}-besteffort-pod${Math.random().toString(36).slice(2, 10)}.slice`;
    const logDir = path.join(logRoot, 'slice');
    fs.mkdirSync(logDir, { recursive: true });
    const config = podConfig({ name: 'slice', logDirectory: logDir, cgroupParent: podSlice });
    const podId = (await cri.runtime.runPodSandbox({ config, runtimeHandler: HANDLER })).podSandboxId;
    const id = (await cri.runtime.createContainer({
      podSandboxId: podId, sandboxConfig: config,
      config: containerConfig({ name: 'app', memoryLimit: 64 * 1024 * 1024, command: ['/bin/sh', '-c', 'cat /proc/self/cgroup; sleep 60'] }),
    })).containerId;
    await cri.runtime.startContainer({ containerId: id });
    // containerd's CRI names it "<pod slice>:cri-containerd:<id>" (getCgroupsPath); runc's
    // systemd driver has systemd make <expanded slice>/cri-containerd-<id>.scope
    const sliceDir = `/${top}.slice/${top}-besteffort.slice/${podSlice}`;
    const scope = `${sliceDir}/cri-containerd-${id}.scope`;
    expect(cgroupOf(await pidOf(id))).toMatch(new RegExp(`^\\d+:[^:]*memory[^:]*:${scope.replace(/\./g, '\\.')}$|^0::${scope.replace(/\./g, '\\.')}$`, 'm'));
    expect(cgroupOf(await sandboxPid(podId))).toContain(`${sliceDir}/cri-containerd-${podId}.scope`);
    const memDir = fs.existsSync('/sys/fs/cgroup/memory') ? `/sys/fs/cgroup/memory${scope}` : `/sys/fs/cgroup${scope}`;
    const limit = fs.readFileSync(fs.existsSync(`${memDir}/memory.limit_in_bytes`) ? `${memDir}/memory.limit_in_bytes` : `${memDir}/memory.max`, 'utf8').trim();
    expect(Number(limit)).toBe(64 * 1024 * 1024);
    await removePod(podId);
    // spore made the slices (no kubelet, no systemd here): the last container took them with it
    for (const root of ['/sys/fs/cgroup/memory', '/sys/fs/cgroup/pids', '/sys/fs/cgroup/unified', '/sys/fs/cgroup']) {
      expect(fs.existsSync(`${root}/${top}.slice`), `${root}/${top}.slice`).toBe(false);
    }
  }, 60_000);

  it('reports exit codes, and a crashed container is seen as exited without any client call', async () => {
    const pod = await runPod('exits');
    const mk = async (name: string, script: string) => {
      const id = (await cri.runtime.createContainer({ podSandboxId: pod.id, sandboxConfig: pod.config, config: containerConfig({ name, command: ['/bin/sh', '-c', script] }) })).containerId;
      await cri.runtime.startContainer({ containerId: id });
      return id;
    };
    const ok = await mk('ok', 'exit 0');
    const seven = await mk('seven', 'echo about to fail; exit 7');
    const crash = await mk('crash', 'sleep 0.3; echo boom >&2; exit 134');
    const okSt = await waitExited(cri, ok);
    expect(okSt.exitCode).toBe(0);
    expect(okSt.reason).toBe('Completed');
    const sevenSt = await waitExited(cri, seven);
    expect(sevenSt.exitCode).toBe(7);
    expect(sevenSt.reason).toBe('Error');
    const crashSt = await waitExited(cri, crash);
    expect(crashSt.exitCode).toBe(134);
    expect(crashSt.reason).toBe('Error');
    expect(crashSt.finishedAt).toBeGreaterThan(crashSt.startedAt);
    expect(fs.readFileSync(path.join(pod.logDir, 'crash/0.log'), 'utf8')).toMatch(/ stderr F boom$/m);
    // the sandbox itself stays ready while its containers come and go
    expect((await cri.runtime.podSandboxStatus({ podSandboxId: pod.id })).status?.state).toBe(PodSandboxState.SANDBOX_READY);
    await removePod(pod.id);
  }, 60_000);

  it('reports an out-of-memory kill as OOMKilled', async () => {
    const pod = await runPod('oom');
    const id = (await cri.runtime.createContainer({
      podSandboxId: pod.id, sandboxConfig: pod.config,
      config: containerConfig({ name: 'hog', memoryLimit: 32 * 1024 * 1024, command: ['/bin/sh', '-c', 'x=$(head -c 200000000 /dev/zero | tr "\\0" a); echo survived'] }),
    })).containerId;
    await cri.runtime.startContainer({ containerId: id });
    const st = await waitExited(cri, id, 20_000);
    expect(st.exitCode).toBe(137);

    expect(st.reason).toBe("OOMKilled");
    await sleep(50);
    expect(fs.readFileSync(path.join(pod.logDir, 'hog/0.log'), 'utf8')).not.toContain('survived');
    await removePod(pod.id);
  }, 60_000);

  it('a containerd restart while spored is hung: the pod stays ready and its container running (the keeper answers Connect and State)', async () => {
    // containerd's CRI plugin reads each sandbox's State when it starts (2 s deadline) and
    // deletes, with a kill, a sandbox whose State fails; with one spored for every pod, a hung
    // spored across a containerd restart would lose them all (keeper/stand-in.ts)
    const pod = await runPod('hung');
    const id = (await cri.runtime.createContainer({ podSandboxId: pod.id, sandboxConfig: pod.config, config: containerConfig({ name: 'app', command: ['/bin/busybox', 'sleep', '1000'] }) })).containerId;
    await cri.runtime.startContainer({ containerId: id });
    // this pod's two tasks (sandbox and app) as `ctr task ls` shows them: id, pid, status
    const taskLs = (): string => spawnSync('ctr', ['--address', c.address, '--namespace', 'k8s.io', 'task', 'ls'], { encoding: 'utf8' }).stdout
      .split('\n').filter((l) => l.startsWith(pod.id) || l.startsWith(id)).map((l) => l.trim().split(/\s+/).join(' ')).sort().join('\n');
    const pidBefore = taskLs();
    expect(pidBefore.split('\n').filter((l) => l.endsWith(' RUNNING'))).toHaveLength(2);
    const spored = parseInt(fs.readFileSync(path.join(c.runDir, 'spored.pid'), 'utf8'), 10);
    const logFrom = fs.readFileSync(c.logFile, 'utf8').length;
    process.kill(spored, 'SIGSTOP');
    const t0 = Date.now();
    try {
      cri.close();
      await c.restart();
      cri = criClient(c.address);
      // past the 10 s the keeper holds other requests, so every answer containerd got was the keeper's
      await sleep(Math.max(0, 11_000 - (Date.now() - t0)));
      expect((await cri.runtime.podSandboxStatus({ podSandboxId: pod.id })).status?.state).toBe(PodSandboxState.SANDBOX_READY);
    } finally {
      process.kill(spored, 'SIGCONT');
    }
    await sleep(500);
    expect((await cri.runtime.containerStatus({ containerId: id })).status?.state).toBe(ContainerState.CONTAINER_RUNNING);
    expect((await cri.runtime.podSandboxStatus({ podSandboxId: pod.id })).status?.state).toBe(PodSandboxState.SANDBOX_READY);
    expect(taskLs()).toBe(pidBefore);
    const log = fs.readFileSync(c.logFile, 'utf8').slice(logFrom);
    expect(log).not.toMatch(/Failed to load sandbox status|cleaning up dead shim|unknown status/);
    await removePod(pod.id);
  }, 90_000);
});
