// Integration-test harness: a private containerd per test (own config, root, state, sockets
// under a mkdtemp dir), wired so that containerd finds spore's shim (<repo>/bin first on PATH)
// and every shim/spored it starts uses a private SPORE_RUN_DIR and SPORE_LOG.
// stop() removes everything the containerd started; leakCheck() lets tests prove it.
import { execFileSync, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const parentDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
/** the repository (also when this file runs compiled, from dist/integration, e.g. in bench/cri.ts) */
export const repoRoot: string = path.basename(parentDir) === 'dist' ? path.dirname(parentDir) : parentDir;
export const rootfsDir: string = process.env.SPORE_ROOTFS_DIR ?? '/var/lib/spore/rootfs';
/** containerd 1.6 hard-codes shim sockets under this dir. */
export const SHIM_SOCKET_DIR = '/run/containerd/s';

export interface CtrResult {
  code: number;
  stdout: string;
  stderr: string;
}
export interface CtrOptions {
  input?: string;
  /** default 60 s; on timeout the ctr process is SIGKILLed and code is 124 */
  timeoutMs?: number;
}
export interface StartOptions {
  /**
   * Run containerd in a private mount namespace with /sys/fs/cgroup/unified unmounted (crun 1.8.1
   * refuses hybrid hosts whose cgroup2 mount still offers controllers). true = apply where the
   * host needs it (see needsHideUnified), false = never. Default: env SPORE_HIDE_UNIFIED=1|0,
   * else false — spore itself must work on the real layout, only crun needs this.
   */
  hideUnified?: boolean;
  /** added to (and overriding) containerd's environment, which shims and spored inherit */
  extraEnv?: Record<string, string>;
  /** enable the CRI plugin (runtimes runc and spore configured); default false */
  cri?: boolean;
  /** containerd namespace used by ctr(); default: a unique `spore-it-<hex>` */
  namespace?: string;
  /** how long to wait for `ctr version` to answer; default 20 s */
  startTimeoutMs?: number;
}
export interface Containerd {
  /** the temp dir holding config, root, state, sockets, logs */
  dir: string;
  /** grpc socket */
  address: string;
  ttrpcAddress: string;
  namespace: string;
  /** SPORE_RUN_DIR given to shims (<dir>/spore-run) */
  runDir: string;
  /** SPORE_LOG given to shims (<dir>/spored.log) */
  sporeLog: string;
  /** containerd's stdout+stderr */
  logFile: string;
  /** containerd's pid (also its process group id) */
  pid: number;
  /** true when containerd runs with /sys/fs/cgroup/unified hidden */
  hiddenUnified: boolean;
  /** environment containerd was started with */
  env: Record<string, string>;
  /** with cri: sandbox image, CNI bridge/subnet, spore ConfigPath */
  cri?: CriSetup;
  ctr(args: string[], opts?: CtrOptions): Promise<CtrResult>;
  /** kill tasks, containerd, shims, spored; unmount and remove everything; idempotent */
  stop(): Promise<void>;
  /** stop containerd (SIGTERM, as a service manager would) and start it again on the same config and state */
  restart(): Promise<void>;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Same rule as needs_hide_unified in shared/bench-baselines/env.sh. */
export function needsHideUnified(): boolean {
  try {
    if (fs.statfsSync('/sys/fs/cgroup').type !== 0x01021994) return false; // TMPFS_MAGIC
    if (fs.statfsSync('/sys/fs/cgroup/unified').type !== 0x63677270) return false; // CGROUP2_SUPER_MAGIC
    return fs.readFileSync('/sys/fs/cgroup/unified/cgroup.controllers', 'utf8').trim() !== '';
  } catch {
    return false;
  }
}

export function isRoot(): boolean {
  return process.getuid?.() === 0;
}

/**
 * `ctr` against containerd `c` (its address and namespace) in the background: resolves with
 * its exit code and whole output once its stdio closed; SIGKILLed after `timeoutMs` (code null).
 */
export function ctrInBackground(c: Pick<Containerd, 'address' | 'namespace'>, args: string[], timeoutMs = 60_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn('ctr', ['--address', c.address, '--namespace', c.namespace, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    p.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    const t = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.on('close', (code) => { clearTimeout(t); resolve({ code, stdout, stderr }); });
  });
}

export function which(bin: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(':'), '/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];
  for (const d of dirs) {
    if (!d) continue;
    const p = path.join(d, bin);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch {
      /* next */
    }
  }
  return undefined;
}

/** Why integration tests against a real containerd cannot run here, or undefined if they can. */
export function containerdSkipReason(): string | undefined {
  if (!isRoot()) return 'needs root';
  for (const b of ['containerd', 'ctr', 'containerd-shim-runc-v2', 'runc']) if (!which(b)) return `${b} not installed`;
  return undefined;
}

/** Path of a root filesystem built by scripts/build-rootfs.sh; builds it on first use. */
export function rootfs(name: 'busybox' | 'node' | 'python'): string {
  const dir = path.join(rootfsDir, name);
  if (!fs.existsSync(path.join(dir, '.spore-stamp'))) {
    execFileSync(path.join(repoRoot, 'scripts', 'build-rootfs.sh'), [name], {
      stdio: ['ignore', 'inherit', 'inherit'],
      env: { ...process.env, SPORE_ROOTFS_DIR: rootfsDir },
    });
  }
  return dir;
}

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv, opts: CtrOptions = {}): Promise<CtrResult> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, opts.timeoutMs ?? 60_000);
    child.on('error', (e) => {
      clearTimeout(timer);
      resolve({ code: 127, stdout, stderr: stderr + String(e) });
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: timedOut ? 124 : (code ?? (signal ? 128 + (os.constants.signals[signal] ?? 0) : 1)), stdout, stderr });
    });
    child.stdin.on('error', () => {});
    child.stdin.end(opts.input ?? '');
  });
}

/** CRI pieces of a cri=true containerd: sandbox image, CNI bridge, spore runtime options. */
export interface CriSetup {
  /** the pod sandbox ("pause") image CRI uses; import it into namespace k8s.io before RunPodSandbox */
  sandboxImage: string;
  /** CNI bridge device created by the bridge plugin for this containerd (removed by stop()) */
  bridge: string;
  /** pod subnet (host-local IPAM, state under <dir>/cni-ipam) */
  subnet: string;
  /** runtimeoptions.v1.Options ConfigPath given to the spore handler */
  sporeConfigPath: string;
  /**
   * cgroup root for this containerd's pods (the kubelet's /kubepods): pod cgroup parents go
   * under it, and stop() removes it (runc leaves pod cgroup parents behind, as the kubelet owns them)
   */
  cgroupRoot: string;
}

export const CRI_SANDBOX_IMAGE = 'docker.io/spore/pause:latest';
export const CRI_NAMESPACE = 'k8s.io';

function criSetup(dir: string): CriSetup {
  const r = randomBytes(2);
  return {
    sandboxImage: CRI_SANDBOX_IMAGE,
    bridge: `spcni${randomBytes(4).toString('hex')}`.slice(0, 15),
    subnet: `10.${200 + (r[0]! % 50)}.${r[1]!}.0/24`,
    sporeConfigPath: path.join(dir, 'spore-runtime.toml'),
    cgroupRoot: `/kubepods-${path.basename(dir)}`,
  };
}

function cniConflist(dir: string, s: CriSetup): string {
  return JSON.stringify({
    cniVersion: '0.4.0',
    name: 'spore-it',
    plugins: [
      {
        type: 'bridge', bridge: s.bridge, isGateway: true, ipMasq: false, hairpinMode: true,
        ipam: { type: 'host-local', ranges: [[{ subnet: s.subnet }]], routes: [{ dst: '0.0.0.0/0' }], dataDir: path.join(dir, 'cni-ipam') },
      },
    ],
  }, null, 2);
}

function configToml(dir: string, address: string, ttrpcAddress: string, cri: boolean, crs?: CriSetup): string {
  const lines = [
    '# private containerd for one spore integration test (integration/harness.ts)',
    'version = 2',
    `root = "${dir}/root"`,
    `state = "${dir}/state"`,
    cri ? 'disabled_plugins = []' : 'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
    '',
    '[grpc]',
    `  address = "${address}"`,
    '[ttrpc]',
    `  address = "${ttrpcAddress}"`,
    '[debug]',
    '  level = "info"',
    '',
    '[plugins]',
    '  [plugins."io.containerd.internal.v1.opt"]',
    `    path = "${dir}/opt"`,
  ];
  if (cri) {
    lines.push(
      '  [plugins."io.containerd.grpc.v1.cri"]',
      // root here lacks CAP_SYS_RESOURCE: lowering oom_score_adj fails otherwise
      '    restrict_oom_score_adj = true',
      `    sandbox_image = "${crs?.sandboxImage ?? CRI_SANDBOX_IMAGE}"`,
      `    stream_server_address = "127.0.0.1"`,
      `    stream_server_port = "0"`,
      '    [plugins."io.containerd.grpc.v1.cri".containerd]',
      '      default_runtime_name = "runc"',
      '      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]',
      '        runtime_type = "io.containerd.runc.v2"',
      '      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.spore]',
      '        runtime_type = "io.containerd.spore.v2"',
      '        pod_annotations = ["spore.dev/*"]',
      '        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.spore.options]',
      `          ConfigPath = "${crs?.sporeConfigPath ?? ''}"`,
      '    [plugins."io.containerd.grpc.v1.cri".cni]',
      '      bin_dir = "/usr/lib/cni"',
      `      conf_dir = "${dir}/cni"`,
      '      max_conf_num = 1',
    );
  }
  return lines.join('\n') + '\n';
}

// ------------------------------------------------------------------------------ /proc helpers

interface ProcInfo {
  pid: number;
  cmdline: string;
  cwd: string;
  exe: string;
}

function listPids(): number[] {
  return fs
    .readdirSync('/proc')
    .filter((n) => /^\d+$/.test(n))
    .map(Number)
    .filter((p) => p !== process.pid);
}

function procInfo(pid: number): ProcInfo | undefined {
  try {
    const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
    let cwd = '';
    let exe = '';
    try {
      cwd = fs.readlinkSync(`/proc/${pid}/cwd`);
    } catch {
      /* kernel thread or gone */
    }
    try {
      exe = fs.readlinkSync(`/proc/${pid}/exe`);
    } catch {
      /* ditto */
    }
    return { pid, cmdline, cwd, exe };
  } catch {
    return undefined;
  }
}

function environHas(pid: number, needle: string): boolean {
  try {
    return fs.readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').includes(needle);
  } catch {
    return false;
  }
}

function alive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    /* gone */
  }
}

async function waitGone(pids: number[], ms: number): Promise<number[]> {
  const deadline = Date.now() + ms;
  let left = pids.filter(alive);
  while (left.length > 0 && Date.now() < deadline) {
    await sleep(50);
    left = left.filter(alive);
  }
  return left;
}

/** TERM, wait, KILL. */
async function terminate(pids: number[], graceMs = 3000): Promise<void> {
  if (pids.length === 0) return;
  for (const p of pids) signal(p, 'SIGTERM');
  const left = await waitGone(pids, graceMs);
  for (const p of left) signal(p, 'SIGKILL');
  await waitGone(left, 2000);
}

/** inode -> path of listening unix sockets (from /proc/net/unix). */
function unixSocketPaths(): Map<string, string> {
  const m = new Map<string, string>();
  try {
    for (const line of fs.readFileSync('/proc/net/unix', 'utf8').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length >= 8 && f[7]) m.set(f[6]!, f[7]);
    }
  } catch {
    /* ignore */
  }
  return m;
}

export function openFds(pid: number): string[] {
  try {
    return fs
      .readdirSync(`/proc/${pid}/fd`)
      .map((fd) => {
        try {
          return `${fd} -> ${fs.readlinkSync(`/proc/${pid}/fd/${fd}`)}`;
        } catch {
          return undefined;
        }
      })
      .filter((x): x is string => x !== undefined)
      .sort((a, b) => parseInt(a, 10) - parseInt(b, 10));
  } catch {
    return [];
  }
}

/** Socket paths held open by pid (resolved via /proc/net/unix of its net namespace). */
function socketPathsOf(pid: number): string[] {
  const socks = unixSocketPaths();
  const out: string[] = [];
  for (const fd of openFds(pid)) {
    const m = /socket:\[(\d+)\]/.exec(fd);
    const p = m && socks.get(m[1]!);
    if (p) out.push(p);
  }
  return out;
}

function mountPointsUnder(dir: string): string[] {
  const out: string[] = [];
  try {
    for (const line of fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
      const mp = line.split(' ')[4];
      if (!mp) continue;
      const p = mp.replace(/\\(\d{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
      if (p === dir || p.startsWith(dir + '/')) out.push(p);
    }
  } catch {
    /* ignore */
  }
  return out;
}

/** cgroup dirs (any hierarchy under /sys/fs/cgroup) whose basename equals/contains name. */
function cgroupsNamed(name: string, maxDepth = 4): string[] {
  const out: string[] = [];
  const walk = (d: string, depth: number) => {
    let ents: fs.Dirent[];
    try {
      ents = fs.readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of ents) {
      if (!e.isDirectory()) continue;
      const p = path.join(d, e.name);
      if (e.name.includes(name)) out.push(p);
      if (depth < maxDepth) walk(p, depth + 1);
    }
  };
  let roots: string[] = [];
  try {
    const top = fs.readdirSync('/sys/fs/cgroup', { withFileTypes: true });
    const isV2 = fs.existsSync('/sys/fs/cgroup/cgroup.controllers');
    roots = isV2 ? ['/sys/fs/cgroup'] : top.filter((e) => e.isDirectory() || e.isSymbolicLink()).map((e) => path.join('/sys/fs/cgroup', e.name));
  } catch {
    return out;
  }
  const seen = new Set<string>();
  for (const r of roots) {
    let real: string;
    try {
      real = fs.realpathSync(r);
    } catch {
      continue;
    }
    if (seen.has(real)) continue; // cpu -> cpu,cpuacct symlinks
    seen.add(real);
    walk(real, 1);
  }
  return out.sort();
}

/** rmdir a cgroup dir bottom-up (cgroupfs only allows rmdir of empty cgroups). */
function rmCgroupTree(d: string): void {
  try {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) rmCgroupTree(path.join(d, e.name));
    fs.rmdirSync(d);
  } catch {
    /* busy or gone */
  }
}

// ------------------------------------------------------------------------------ leak check

export interface LeakCheckOptions {
  /** processes whose cmdline, cwd or exe mention one of these strings (e.g. the temp dir) */
  match?: string[];
  /** processes whose environment has exactly this entry, e.g. `SPORE_RUN_DIR=/tmp/x/spore-run` */
  envEntry?: string;
  /** mounts at or under these dirs (from /proc/self/mountinfo) */
  mountsUnder?: string[];
  /** cgroup dirs whose name contains this (any hierarchy under /sys/fs/cgroup) */
  cgroupName?: string;
  /** list the open fds of this pid */
  fdsOf?: number;
}
export interface LeakSnapshot {
  processes: { pid: number; cmdline: string; cwd: string; exe: string }[];
  mounts: string[];
  cgroups: string[];
  /** `"<fd> -> <target>"`, only with fdsOf */
  fds: string[];
}

/** Snapshot what could leak. Compare snapshots before/after, or expect empty lists after stop(). */
export function leakCheck(opts: LeakCheckOptions): LeakSnapshot {
  const processes: LeakSnapshot['processes'] = [];
  const match = (opts.match ?? []).filter((s) => s !== '');
  if (match.length > 0 || opts.envEntry) {
    for (const pid of listPids()) {
      const info = procInfo(pid);
      if (!info) continue;
      const hit =
        match.some((s) => info.cmdline.includes(s) || info.cwd.includes(s) || info.exe.includes(s)) ||
        (opts.envEntry !== undefined && environHas(pid, opts.envEntry));
      if (hit && alive(pid)) processes.push(info);
    }
  }
  return {
    processes,
    mounts: (opts.mountsUnder ?? []).flatMap(mountPointsUnder),
    cgroups: opts.cgroupName ? cgroupsNamed(opts.cgroupName) : [],
    fds: opts.fdsOf !== undefined ? openFds(opts.fdsOf) : [],
  };
}

// ------------------------------------------------------------------------------ containerd

/**
 * CRI state a test left behind: stop and remove every pod sandbox through CRI (that releases
 * CNI addresses and network namespaces and removes the pods' containers), then kill and remove
 * whatever is still in containerd's k8s.io namespace. Collects the container ids seen.
 */
async function removeCriLeftovers(address: string, ctrK8s: (a: string[], o?: CtrOptions) => Promise<CtrResult>, seen: Set<string>): Promise<void> {
  try {
    const { criClient } = await import('./cri-client.js');
    const c = criClient(address, 15_000);
    try {
      const pods = await c.runtime.listPodSandbox({});
      const ctrs = await c.runtime.listContainers({});
      for (const x of ctrs.containers) seen.add(x.id);
      for (const p of pods.items) {
        seen.add(p.id);
        await c.runtime.stopPodSandbox({ podSandboxId: p.id }).catch(() => undefined);
        await c.runtime.removePodSandbox({ podSandboxId: p.id }).catch(() => undefined);
      }
    } finally {
      c.close();
    }
  } catch {
    /* CRI not serving; fall through to ctr */
  }
  const tl = await ctrK8s(['tasks', 'ls', '-q'], { timeoutMs: 10_000 });
  const cl = await ctrK8s(['containers', 'ls', '-q'], { timeoutMs: 10_000 });
  const tasks = tl.stdout.split('\n').map((x) => x.trim()).filter(Boolean);
  const ctrs = cl.stdout.split('\n').map((x) => x.trim()).filter(Boolean);
  for (const id of [...tasks, ...ctrs]) seen.add(id);
  await Promise.all(tasks.map((id) => ctrK8s(['tasks', 'kill', '-a', '-s', 'KILL', id], { timeoutMs: 10_000 })));
  if (tasks.length > 0) await sleep(200);
  await Promise.all(tasks.map((id) => ctrK8s(['tasks', 'rm', '-f', id], { timeoutMs: 10_000 })));
  await Promise.all(ctrs.map((id) => ctrK8s(['containers', 'rm', id], { timeoutMs: 10_000 })));
}

/** stop() of every containerd this process started and has not stopped yet */
const live = new Set<() => Promise<void>>();
let signalsHooked = false;

/**
 * A script (scripts/demo, the benches) interrupted by Ctrl-C or SIGTERM stops what it started
 * (containerd, the keeper, spored, containers, mounts, the temp dir) before it exits 130 / 143,
 * instead of leaving them running; so does one whose stdout reader went away (exit 0) or that
 * threw an uncaught error (exit 1). A script with a handler of its own (bench/goals.ts,
 * bench/fri.ts) stops them itself; under vitest the runner decides. A second signal while
 * stopping exits at once and names what may be left.
 */
function stopOnSignals(): void {
  if (signalsHooked || process.env.VITEST !== undefined) return;
  signalsHooked = true;
  let first = true;
  const onSignal = (sig: NodeJS.Signals): void => {
    if (process.listenerCount(sig) > 1) return;
    const code = sig === 'SIGINT' ? 130 : 143;
    if (!first) {
      process.stderr.write(`${sig} again: exiting without waiting; containerd or spore processes and /tmp/spore-ctrd-* dirs may be left\n`);
      process.exit(code);
    }
    first = false;
    process.stderr.write(`${sig}: stopping containerd, spore and their containers (again to exit at once)\n`);
    void Promise.allSettled([...live].map((stop) => stop())).finally(() => process.exit(code));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  // Nor when the script fails: `scripts/demo | head` closed its stdout (EPIPE) and left
  // containerd, the keeper, spored and its seeds running; so did any uncaught error.
  const stopThenExit = (code: number): void => {
    if (!first) return;
    first = false;
    void Promise.allSettled([...live].map((stop) => stop())).finally(() => process.exit(code));
  };
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    // the reader went away (`| head`): nothing more to show; stop what was started, exit 0
    if (e.code === 'EPIPE') stopThenExit(0);
  });
  process.on('uncaughtException', (e) => {
    if (!first) return;
    process.stderr.write(`${e.stack ?? String(e)}\nstopping containerd, spore and their containers\n`);
    stopThenExit(1);
  });
}

export async function startContainerd(opts: StartOptions = {}): Promise<Containerd> {
  const dir = fs.mkdtempSync(path.join('/tmp', 'spore-ctrd-'));
  const address = path.join(dir, 'containerd.sock');
  const ttrpcAddress = address + '.ttrpc';
  const runDir = path.join(dir, 'spore-run');
  const sporeLog = path.join(dir, 'spored.log');
  const logFile = path.join(dir, 'containerd.log');
  const configFile = path.join(dir, 'config.toml');
  const namespace = opts.namespace ?? `spore-it-${randomBytes(4).toString('hex')}`;
  const cri = opts.cri ?? false;
  const wantHide = opts.hideUnified ?? process.env.SPORE_HIDE_UNIFIED === '1';
  const hiddenUnified = wantHide && needsHideUnified();
  const hadRunContainerd = fs.existsSync('/run/containerd');

  fs.mkdirSync(runDir, { recursive: true });
  fs.mkdirSync(path.join(dir, 'fifo'));
  const crs = cri ? criSetup(dir) : undefined;
  if (crs) {
    fs.mkdirSync(path.join(dir, 'cni'));
    fs.writeFileSync(path.join(dir, 'cni', '10-spore-it.conflist'), cniConflist(dir, crs));
    fs.writeFileSync(crs.sporeConfigPath, '# spore runtime options for the CRI handler (runtimeoptions.v1.Options ConfigPath)\n');
  }
  fs.writeFileSync(configFile, configToml(dir, address, ttrpcAddress, cri, crs));

  const sysPath = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (k.startsWith('SPORE_') && v !== undefined) env[k] = v;
  Object.assign(env, {
    PATH: `${path.join(repoRoot, 'bin')}:${sysPath}`,
    HOME: process.env.HOME ?? '/root',
    LANG: 'C.UTF-8',
    SPORE_RUN_DIR: runDir,
    SPORE_LOG: sporeLog,
    ...(opts.extraEnv ?? {}),
  });

  const [cmd, args] = hiddenUnified
    ? [
        'unshare',
        ['--mount', '--propagation', 'slave', 'sh', '-c', 'umount /sys/fs/cgroup/unified || exit 1; exec "$@"', 'sh', 'containerd', '--config', configFile],
      ]
    : ['containerd', ['--config', configFile]];
  let pid = 0;
  let exited: string | undefined;
  let reaped: Promise<void> = Promise.resolve();
  const launch = (): void => {
    const out = fs.openSync(logFile, 'a');
    // detached: own session + process group; unshare and sh exec, so pid is containerd's pid
    const child = spawn(cmd as string, args as string[], { env, detached: true, stdio: ['ignore', out, out], cwd: dir });
    fs.closeSync(out);
    child.unref();
    if (child.pid === undefined) throw new Error('could not spawn containerd');
    pid = child.pid;
    exited = undefined;
    reaped = new Promise<void>((resolve) =>
      child.on('exit', (code, sig) => {
        exited = `containerd exited (code ${code}, signal ${sig})`;
        resolve();
      }),
    );
  };
  launch();

  const ctrEnv = { PATH: `${path.join(repoRoot, 'bin')}:${sysPath}`, HOME: env.HOME, LANG: 'C.UTF-8' };
  const ctr = (a: string[], o?: CtrOptions) => run('ctr', ['--address', address, '--namespace', namespace, ...a], ctrEnv, o);

  // a second stop() while one runs waits for it (a signal handler and a script's own finally)
  let stopping: Promise<void> | null = null;
  const stop = (): Promise<void> => (stopping ??= stopOnce().finally(() => live.delete(stop)));
  live.add(stop);
  stopOnSignals();
  const stopOnce = async (): Promise<void> => {
    const envEntry = `SPORE_RUN_DIR=${runDir}`;
    const sockets = new Set<string>();
    const ids = new Set<string>();
    const criIds = new Set<string>();
    if (alive(pid)) {
      // 1. tasks and containers
      const tl = await ctr(['tasks', 'ls', '-q'], { timeoutMs: 10_000 });
      const cl = await ctr(['containers', 'ls', '-q'], { timeoutMs: 10_000 });
      for (const id of [...tl.stdout.split('\n'), ...cl.stdout.split('\n')].map((s) => s.trim()).filter(Boolean)) ids.add(id);
      const tasks = tl.stdout.split('\n').map((s) => s.trim()).filter(Boolean);
      await Promise.all(tasks.map((id) => ctr(['tasks', 'kill', '-a', '-s', 'KILL', id], { timeoutMs: 10_000 })));
      if (tasks.length > 0) await sleep(200);
      await Promise.all(tasks.map((id) => ctr(['tasks', 'rm', '-f', id], { timeoutMs: 10_000 })));
      await Promise.all([...ids].map((id) => ctr(['containers', 'rm', id], { timeoutMs: 10_000 })));
      if (crs) await removeCriLeftovers(address, (a, o) => run('ctr', ['--address', address, '--namespace', CRI_NAMESPACE, ...a], ctrEnv, o), criIds);
    }
    // 2. shims of this containerd (their cmdline has `-address <grpc socket>`), remember their sockets
    const shims = listPids().filter((p) => {
      const info = procInfo(p);
      return info !== undefined && info.cmdline.includes(`-address ${address}`);
    });
    for (const p of shims) for (const s of socketPathsOf(p)) if (s.startsWith(SHIM_SOCKET_DIR + '/')) sockets.add(s);
    // 3. containerd's process group
    try {
      process.kill(-pid, 'SIGTERM');
    } catch {
      /* gone */
    }
    if ((await waitGone([pid], 5000)).length > 0) {
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        /* gone */
      }
      await waitGone([pid], 2000);
    }
    await Promise.race([reaped, sleep(2000)]); // node reaps its child: no zombie left behind
    // 4. shims, spored (pidfile), and anything else that belongs to this containerd
    await terminate(shims, 2000);
    // the keeper first: it would start spored again; its own stop ends spored fully
    const keeperFile = path.join(runDir, 'keeper.pid');
    const keeperPid = fs.existsSync(keeperFile) ? parseInt(fs.readFileSync(keeperFile, 'utf8').trim(), 10) : NaN;
    if (Number.isInteger(keeperPid) && keeperPid > 1 && keeperPid !== process.pid && (environHas(keeperPid, envEntry) || (procInfo(keeperPid)?.cmdline ?? '').includes(dir))) {
      await terminate([keeperPid], 15_000);
    }
    const pidFile = path.join(runDir, 'spored.pid');
    const sporedPid = fs.existsSync(pidFile) ? parseInt(fs.readFileSync(pidFile, 'utf8').trim(), 10) : NaN;
    if (Number.isInteger(sporedPid) && sporedPid > 1 && sporedPid !== process.pid) {
      // only if it really is one of ours (pid reuse)
      if (environHas(sporedPid, envEntry) || (procInfo(sporedPid)?.cmdline ?? '').includes(dir)) {
        for (const s of socketPathsOf(sporedPid)) if (s.startsWith(SHIM_SOCKET_DIR + '/')) sockets.add(s);
        await terminate([sporedPid], 3000);
      }
    }
    const stray = leakCheck({ match: [dir], envEntry }).processes.map((p) => p.pid);
    for (const p of stray) for (const s of socketPathsOf(p)) if (s.startsWith(SHIM_SOCKET_DIR + '/')) sockets.add(s);
    await terminate(stray, 2000);
    // 5. mounts, files
    for (const mp of mountPointsUnder(dir).reverse()) {
      try {
        execFileSync('umount', [mp], { stdio: 'ignore' });
      } catch {
        try {
          execFileSync('umount', ['-l', mp], { stdio: 'ignore' });
        } catch {
          /* reported by leakCheck */
        }
      }
    }
    for (const id of ids) sockets.add(path.join(SHIM_SOCKET_DIR, createHash('sha256').update(`${address}/${namespace}/${id}`).digest('hex')));
    for (const id of criIds) {
      sockets.add(path.join(SHIM_SOCKET_DIR, createHash('sha256').update(`${address}/${CRI_NAMESPACE}/${id}`).digest('hex')));
      fs.rmSync(path.join('/run/containerd/runc', CRI_NAMESPACE, id), { recursive: true, force: true });
    }
    if (crs) {
      for (const cg of cgroupsNamed(crs.cgroupRoot.slice(1), 1)) rmCgroupTree(cg);
      try {
        execFileSync('ip', ['link', 'del', crs.bridge], { stdio: 'ignore' });
      } catch {
        /* never created, or gone */
      }
    }
    for (const s of sockets) fs.rmSync(s, { force: true });
    fs.rmSync(path.join('/run/containerd/runc', namespace), { recursive: true, force: true });
    for (const cg of cgroupsNamed(namespace, 2)) rmCgroupTree(cg);
    if (mountPointsUnder(dir).length === 0) fs.rmSync(dir, { recursive: true, force: true });
    if (!hadRunContainerd) {
      for (const d of ['/run/containerd/s', '/run/containerd/fifo', '/run/containerd/runc', '/run/containerd']) {
        try {
          fs.rmdirSync(d);
        } catch {
          /* not empty (another containerd) or absent */
        }
      }
    }
  };

  // 6. wait until it answers
  const answers = async (): Promise<void> => {
    const deadline = Date.now() + (opts.startTimeoutMs ?? 20_000);
    for (;;) {
      const r = await ctr(['version'], { timeoutMs: 5000 });
      if (r.code === 0) break;
      if (exited || Date.now() > deadline) {
        const tail = fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8').split('\n').slice(-20).join('\n') : '';
        await stop();
        throw new Error(`${exited ?? 'containerd did not answer in time'}; ctr: ${r.stderr.trim()}\n--- containerd.log tail:\n${tail}`);
      }
      await sleep(100);
    }
  };
  await answers();

  const restart = async (): Promise<void> => {
    try { process.kill(pid, 'SIGTERM'); } catch { /* gone */ }
    await Promise.race([reaped, sleep(10_000)]);
    if (alive(pid)) throw new Error(`containerd ${pid} did not stop on SIGTERM`);
    launch();
    await answers();
  };

  return {
    dir, address, ttrpcAddress, namespace, runDir, sporeLog, logFile, get pid() { return pid; }, hiddenUnified, env, ctr, stop, restart,
    ...(crs ? { cri: crs } : {}),
  };
}
