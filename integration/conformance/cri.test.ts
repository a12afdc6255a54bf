// Oracle conformance through containerd's CRI plugin, the way the kubelet drives it: the same
// pod and containers on RuntimeClass handler "runc" and on handler "spore" must answer alike
// (see oracle.ts; CRI steps are `custom` steps whose values are compared).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ContainerState } from '../../fri-proto/gen/cri/runtime/v1/api_pb.js';
import { CriError, criClient, type CriClient } from '../cri-client.js';
import { containerConfig, importImages, podConfig, waitExited, waitFor, type ContainerOptions, type PodConfig } from '../cri-env.js';
import { containerdSkipReason, which } from '../harness.js';
import { custom, kase, Oracle, report, timeClass, type Case, type Ctx, type Step } from './oracle.js';
import * as grpc from '@grpc/grpc-js';

const skip = containerdSkipReason() ?? (which('ip') ? undefined : 'iproute2 not installed') ?? (fs.existsSync('/usr/lib/cni/bridge') ? undefined : 'containernetworking-plugins not installed');
if (skip) console.warn(`[conformance/cri] skipped: ${skip}`);

let cri: CriClient;

interface PodState { id: string; config: PodConfig; logDir: string; containers: Map<string, string> }
const pods = new WeakMap<Ctx, PodState>();
function podOf(x: Ctx): PodState {
  const p = pods.get(x);
  if (!p) throw new Error('no pod: start the case with pod()');
  return p;
}

/** RunPodSandbox on the runtime's handler ("runc" or "spore") */
function pod(name: string, o: { sharedPid?: boolean } = {}): Step {
  return custom(`pod ${name}`, async (x) => {
    const logDir = path.join(x.dir, 'pod-logs');
    fs.mkdirSync(logDir, { recursive: true });
    const config = podConfig({ name, logDirectory: logDir, cgroupRoot: x.c.cri!.cgroupRoot, ...o });
    const r = await cri.runtime.runPodSandbox({ config, runtimeHandler: x.rt });
    pods.set(x, { id: r.podSandboxId, config, logDir, containers: new Map() });
    return null;
  });
}

/** CreateContainer + StartContainer */
function container(o: ContainerOptions): Step {
  return custom(`container ${o.name}`, async (x) => {
    const p = podOf(x);
    const { containerId } = await cri.runtime.createContainer({ podSandboxId: p.id, sandboxConfig: p.config, config: containerConfig(o) });
    p.containers.set(o.name, containerId);
    await cri.runtime.startContainer({ containerId });
    return null;
  });
}

/** ExecSync: exit code and output, or the error's gRPC code; with the timing class */
function execSync(name: string, cmd: string[], timeoutS: number): Step {
  return custom(`execSync ${name} ${JSON.stringify(cmd)} timeout=${timeoutS}s`, async (x) => {
    const id = podOf(x).containers.get(name) as string;
    const t0 = Date.now();
    try {
      const r = await cri.runtime.execSync({ containerId: id, cmd, timeout: BigInt(timeoutS) }, { timeoutMs: (timeoutS + 30) * 1000 });
      return { exitCode: r.exitCode, stdout: Buffer.from(r.stdout).toString(), stderr: Buffer.from(r.stderr).toString(), time: timeClass(Date.now() - t0) };
    } catch (e) {
      const ce = e as CriError;
      // the runtime's own wording of a failure is not compared; containerd's frame and the code are
      const message = x.normalize(ce.details ?? '').replace(/[0-9a-f]{64}/g, '{id}').replace(/(failed to start exec "\{id\}": ).*(: [a-z ]+)$/, '$1<runtime error>$2');
      return { error: grpc.status[ce.code], message, time: timeClass(Date.now() - t0) };
    }
  });
}

/** ContainerStatus once the container exited: state, exit code, reason */
function exited(name: string, timeoutMs = 20_000): Step {
  return custom(`exited ${name}`, async (x) => {
    const s = await waitExited(cri, podOf(x).containers.get(name) as string, timeoutMs);
    return { state: ContainerState[s.state], exitCode: s.exitCode, reason: s.reason };
  });
}

function state(name: string): Step {
  return custom(`state ${name}`, async (x) => {
    const s = (await cri.runtime.containerStatus({ containerId: podOf(x).containers.get(name) as string })).status;
    return { state: ContainerState[s?.state ?? 0], exitCode: s?.exitCode, reason: s?.reason };
  });
}

/** the CRI log file of a container, without timestamps */
function log(name: string): Step {
  return custom(`log ${name}`, async (x) => {
    const f = path.join(podOf(x).logDir, `${name}/0.log`);
    const text = await waitFor(`log of ${name}`, async () => (fs.existsSync(f) ? fs.readFileSync(f, 'utf8') : undefined), 5000);
    return text.split('\n').filter(Boolean).map((l) => l.replace(/^\S+ /, ''));
  });
}

function removePod(): Step {
  return custom('remove pod', async (x) => {
    const p = podOf(x);
    await cri.runtime.stopPodSandbox({ podSandboxId: p.id });
    await cri.runtime.removePodSandbox({ podSandboxId: p.id });
    return null;
  });
}

export const CASES: Case[] = [
  kase('ExecSync: output, exit code, and a timeout', [
    pod('exec'),
    container({ name: 'app', command: ['/bin/sleep', '1000'] }),
    execSync('app', ['/bin/sh', '-c', 'echo out; echo err >&2; exit 3'], 10),
    execSync('app', ['/bin/sleep', '30'], 1),
    state('app'),
    execSync('app', ['/bin/sh', '-c', 'echo still-here'], 10),
    execSync('app', ['/no/such/binary'], 10),
    // a background child keeps the exec's stdout open: ExecSync waits for the stream's end
    execSync('app', ['/bin/sh', '-c', '/bin/sleep 4 & echo hi'], 10),
    removePod(),
  ], { events: false }),
  kase('OOMKilled: reason and exit code 137', [
    pod('oom'),
    container({ name: 'hog', memoryLimit: 32 * 1024 * 1024, command: ['/bin/sh', '-c', 'echo start; x=$(head -c 200000000 /dev/zero | tr "\\0" a); echo survived'] }),
    exited('hog'),
    log('hog'),
    removePod(),
  ], { events: false }),
  kase('exit codes and reasons of finished containers', [
    pod('exits'),
    container({ name: 'ok', command: ['/bin/sh', '-c', 'echo fine'] }),
    container({ name: 'seven', command: ['/bin/sh', '-c', 'echo bad >&2; exit 7'] }),
    container({ name: 'killed', command: ['/bin/sh', '-c', 'kill -KILL $$'] }),
    exited('ok'),
    exited('seven'),
    exited('killed'),
    log('ok'),
    log('seven'),
    removePod(),
  ], { events: false }),
  // shareProcessNamespace: true. Each container's init joins the pause container's pid
  // namespace (spore: last, through a child of its own); what the pod's processes see of
  // each other, and their exits, as with runc
  kase('a pod that shares one pid namespace', [
    pod('sharedpid', { sharedPid: true }),
    container({ name: 'app', sharedPid: true, command: ['/bin/sleep', '1000'] }),
    // what the pod's processes are, without this shell's own transient ones (a pipeline's
    // children may or may not have exec'd, or be gone, when the glob is read: either runtime)
    container({ name: 'peek', sharedPid: true, command: ['/bin/sh', '-c', 'for p in /proc/[0-9]*; do tr "\\0" " " < $p/cmdline 2>/dev/null; echo; done | grep -v -e "^$" -e "^/bin/sh" -e "^sort" -e "^grep" | sort; kill -0 1 && echo can-signal-pause; echo pid-1-is $(tr "\\0" " " < /proc/1/cmdline)'] }),
    exited('peek'),
    log('peek'),
    execSync('app', ['/bin/sh', '-c', 'for p in /proc/[0-9]*; do tr "\\0" " " < $p/cmdline 2>/dev/null; echo; done | grep -v -e "^$" -e "^/bin/sh" -e "^sort" -e "^grep" | sort'], 10),
    removePod(),
  ], { events: false }),
];

describe.skipIf(skip !== undefined)('conformance: spore = runc through CRI', () => {
  let o: Oracle;

  beforeAll(async () => {
    o = await Oracle.start({ cri: true });
    importImages(o.c, ['pause', 'busybox']);
    cri = criClient(o.c.address);
    await waitFor('CRI runtime and network ready', async () => {
      const s = await cri.runtime.status({});
      const conds = s.status?.conditions ?? [];
      return conds.length > 0 && conds.every((x) => x.status) ? true : undefined;
    }, 15_000);
  }, 120_000);

  afterAll(async () => {
    cri?.close();
    await o?.stop();
  }, 60_000);

  for (const k of CASES) {
    it(k.name, async () => {
      const r = await o.compare(k);
      expect(r.diffs, report(r)).toEqual([]);
    }, 120_000);
  }
});
