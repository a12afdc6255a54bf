// A container's set-up (engines/process/container-init.ts) run against the recording
// ContainerSys (engines/process/container-sys.ts): the plan comes from a realistic
// config.json through plan.ts, and the result is the exact syscall sequence the forked child
// would make, up to and including the execve it would not return from. No root, no
// containerd. The order checked here is the one the container's isolation depends on.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CLONE, MNT_DETACH, MS, O, PR, TIOCSCTTY } from '../sys/constants.js';
import type { Spec } from '../protocols/oci/spec.js';
import { compileSeccomp } from '../pools/seccomp.js';
import { execPlan, initPlan, CAPS } from '../engines/process/plan.js';
import type { ExecPlan, InitPlan, SpawnPlan, Stdio } from '../engines/process/protocol.js';
import { AWAIT_JOIN_MS, EARLY_STEPS, READY_UNWRITABLE, earlyStepsOf, isEarlyShape, runChild, runShell, shellFits, type EarlyStep } from '../engines/process/container-init.js';
import { CONSOLE_INSIDE, forksIntoPidNs, shellFrame } from '../engines/process/protocol.js';
import { rehearsal } from '../engines/process/shells.js';
import {
  RecordedExec, RecordedExit, RecordingContainerSys, realContainerSys, type FakeEntry, type RecordingOptions, type SysCall,
} from '../engines/process/container-sys.js';

const R = '/run/spore/rootfs/c1';
const START = 20; // the seed's start pipe, read end
const STATUS = 21; // the status pipe, write end
const CGROUP_PROCS = '/sys/fs/cgroup/default/c1/cgroup.procs';
const STDIO: Stdio = { stdin: '/run/spore/fifo/c1-stdin', stdout: '/run/spore/fifo/c1-stdout', stderr: '/run/spore/fifo/c1-stderr', terminal: '' };
const PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** containerd's default capability set (what `ctr run` gives): CapEff 00000000a80425fb */
const DEFAULT_CAPS = ['CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FSETID', 'CAP_FOWNER', 'CAP_MKNOD', 'CAP_NET_RAW', 'CAP_SETGID', 'CAP_SETUID',
  'CAP_SETFCAP', 'CAP_SETPCAP', 'CAP_NET_BIND_SERVICE', 'CAP_SYS_CHROOT', 'CAP_KILL', 'CAP_AUDIT_WRITE'];

/** A busybox rootfs as the host sees it, and what the mounted /proc and /sys would show in it. */
function busyboxTree(extra: Record<string, FakeEntry> = {}): Record<string, FakeEntry> {
  return {
    [`${R}/bin/busybox`]: 'file',
    [`${R}/bin/sh`]: { link: 'busybox' },
    [`${R}/bin/ls`]: { link: 'busybox' },
    [`${R}/etc/passwd`]: { content: 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n' },
    [`${R}/dev`]: 'dir',
    [`${R}/proc`]: 'dir',
    [`${R}/sys`]: 'dir',
    [`${R}/tmp`]: 'dir',
    // the host: the cgroup's parent exists, the cgroup itself is being made by spored meanwhile
    '/sys/fs/cgroup/default': 'dir',
    '/var/run/netns/n1': 'file',
    ...extra,
  };
}

/** containerd's default spec on a cgroup v2 host (oci.WithDefaultSpec), for `ctr run ... sh` */
function defaultSpec(): Spec {
  return {
    ociVersion: '1.1.0',
    process: {
      user: { uid: 0, gid: 0 }, args: ['sh', '-c', 'echo hi'], env: [PATH], cwd: '/',
      capabilities: { bounding: DEFAULT_CAPS, effective: DEFAULT_CAPS, permitted: DEFAULT_CAPS },
      rlimits: [{ type: 'RLIMIT_NOFILE', hard: 1024, soft: 1024 }],
      noNewPrivileges: true,
    },
    root: { path: 'rootfs' },
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
      { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
      { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'] },
      { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
      { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
      { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
    ],
    linux: {
      namespaces: [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }, { type: 'network' }, { type: 'cgroup' }],
    },
  } as Spec;
}

type SpecEdit = (s: Spec & { process: NonNullable<Spec['process']>; linux: NonNullable<Spec['linux']> }) => void;

/**
 * spec -> plan as task/tasks.ts builds it with a current root seed: `lateCgroup` by the /proc
 * part of its rule (plan.ts lateCgroupFits; the rest, tested in plan.test.ts, is for the child
 * to honour too). `late: false`: as for a plan with runtime hooks, or on an older seed when
 * the spec mounts the cgroup hierarchy.
 */
function planOf(edit: SpecEdit = () => {}, opts: { stdio?: Stdio; seccomp?: InitPlan['process']['seccomp']; late?: boolean; v1?: { name: string; hostDir: string }[] } = {}): InitPlan {
  const spec = defaultSpec();
  edit(spec as Parameters<SpecEdit>[0]);
  const plan = initPlan({
    id: 'c1', spec, rootfs: R, stdio: opts.stdio ?? STDIO, cgroupProcs: [CGROUP_PROCS], cgroupV1Dirs: opts.v1 ?? null, seccomp: opts.seccomp ?? null,
  });
  plan.lateCgroup = opts.late ?? plan.mounts.some((m) => m.destination === '/proc' && m.type === 'proc');
  return plan;
}

interface Run { calls: SysCall[]; reads: SysCall[]; exec: RecordedExec | null; exit: number | null; status: unknown[] }

function run(plan: SpawnPlan, opts: RecordingOptions = {}): Run {
  const rec = new RecordingContainerSys({ fds: [0, 1, 2, START, STATUS], files: busyboxTree(), ...opts });
  let exec: RecordedExec | null = null;
  let exit: number | null = null;
  try {
    runChild(plan, START, STATUS, rec);
  } catch (e) {
    if (e instanceof RecordedExec) exec = e;
    else if (e instanceof RecordedExit) exit = e.code;
    else throw e;
  }
  const status = rec.calls.filter((c) => c.call === 'write' && c.args[0] === STATUS).map((c) => JSON.parse(String(c.args[1])) as unknown);
  return { calls: normalized(rec.calls), reads: rec.reads, exec, exit, status };
}

/** The ready report carries set-up timings; they are not part of the sequence. */
function normalized(calls: SysCall[]): SysCall[] {
  return calls.map((c) => {
    if (c.call !== 'write' || c.args[0] !== STATUS) return c;
    const msg = JSON.parse(String(c.args[1])) as { s: string; t?: unknown };
    if (msg.s === 'ready') msg.t = {};
    return { call: 'write', args: [STATUS, `${JSON.stringify(msg)}\n`] };
  });
}

const c = (call: string, ...args: SysCall['args']): SysCall => ({ call, args });
const failed = (errno: number, call: string, ...args: SysCall['args']): SysCall => ({ call, args, errno });

/** Index of the first call named `call` whose leading args match (undefined: any). */
function at(calls: SysCall[], call: string, ...args: unknown[]): number {
  return calls.findIndex((x) => x.call === call && args.every((a, i) => a === undefined || JSON.stringify(x.args[i]) === JSON.stringify(a)));
}
function lastAt(calls: SysCall[], call: string, ...args: unknown[]): number {
  for (let i = calls.length - 1; i >= 0; i--) {
    const x = calls[i] as SysCall;
    if (x.call === call && args.every((a, j) => a === undefined || JSON.stringify(x.args[j]) === JSON.stringify(a))) return i;
  }
  return -1;
}
/** The indices exist and increase. */
function inOrder(calls: SysCall[], ...idx: number[]): void {
  for (const [k, i] of idx.entries()) {
    expect(i, `step ${k} missing in\n${show(calls)}`).toBeGreaterThanOrEqual(0);
    if (k > 0) expect(i, `step ${k} (${JSON.stringify(calls[i])}) not after step ${k - 1} (${JSON.stringify(calls[idx[k - 1] as number])})`).toBeGreaterThan(idx[k - 1] as number);
  }
}
const show = (calls: SysCall[]): string => calls.map((x, i) => `${i}: ${JSON.stringify(x)}`).join('\n');

/** prctl(PR_CAPBSET_DROP) for every capability outside `keep`, up to the kernel's last (40), then the EINVAL that ends the loop. */
function boundingDrops(keep: string[]): SysCall[] {
  const kept = new Set(keep.map((n) => CAPS[n]));
  const out: SysCall[] = [];
  for (let cap = 0; cap <= 40; cap++) if (!kept.has(cap)) out.push(c('prctl', PR.CAPBSET_DROP, cap));
  out.push(failed(22, 'prctl', PR.CAPBSET_DROP, 41));
  return out;
}
const capHex = (names: string[]): string => `0x${names.reduce((m, n) => m | (1n << BigInt(CAPS[n] ?? 0)), 0n).toString(16)}`;

/** The six device nodes every container gets (plan.ts DEFAULT_DEVICES), in a fresh /dev tmpfs. */
function defaultDevices(): SysCall[] {
  const devs: [string, number, number][] = [['null', 1, 3], ['random', 1, 8], ['full', 1, 7], ['tty', 5, 0], ['zero', 1, 5], ['urandom', 1, 9]];
  // with the umask at 0, so that the nodes get exactly 0666 (runc's createDevices)
  return [c('umask', 0), ...devs.flatMap(([n, major, minor]) => [
    c('mkdir', `${R}/dev`, 0o755), c('mknod', `${R}/dev/${n}`, 0o020000 | 0o666, major, minor), c('chown', `${R}/dev/${n}`, 0, 0),
  ]), c('umask', 0o022)];
}

/**
 * Order properties every init sequence must have, whatever the plan. Returns the first
 * broken one (null: none), so a test can also show that each of them catches a reordering.
 */
function brokenInvariant(calls: SysCall[], rootfs = R): string | null {
  const idx = (call: string, ...args: unknown[]): number => at(calls, call, ...args);
  const pivot = idx('pivot_root');
  if (pivot < 0) return 'no pivot_root';
  if (JSON.stringify(calls[pivot - 1]) !== JSON.stringify(c('chdir', rootfs))) return 'pivot_root not right after chdir(rootfs)';
  if (JSON.stringify(calls.slice(pivot + 1, pivot + 3)) !== JSON.stringify([c('umount2', '.', MNT_DETACH), c('chdir', '/')])) return 'old root not detached right after pivot_root';
  for (const [i, x] of calls.entries()) {
    if (x.call !== 'mount') continue;
    const target = String(x.args[1]);
    if (i < pivot && target !== '/' && target !== rootfs && !target.startsWith(`${rootfs}/`)) return `mount outside the rootfs before pivot_root: ${JSON.stringify(x)}`;
    if (i > pivot && target.startsWith(`${rootfs}/`)) return `mount of a host rootfs path after pivot_root: ${JSON.stringify(x)}`;
  }
  const mountNs = calls.findIndex((x) => (x.call === 'unshare' || x.call === 'setns') && ((x.call === 'unshare' ? Number(x.args[0]) : Number(x.args[1])) & CLONE.NEWNS) !== 0);
  if (mountNs < 0 || mountNs > idx('mount')) return 'mount before the mount namespace';
  // Start is the last read of the start pipe (a user namespace's maps and the runtime hooks
  // are waited for on it before)
  const start = lastAt(calls, 'read', START);
  if (start < 0) return 'no wait for Start';
  const ready = calls.findIndex((x) => x.call === 'write' && x.args[0] === STATUS && String(x.args[1]).startsWith('{"s":"ready"'));
  // the set-up is made with every capability; the process's own credentials after it
  // (pivot_root, the limits) and before the ready report (a failure fails Create, as in
  // runc's init, which takes them before its parent's create returns). The only identity
  // taken before: root inside a user namespace, made (uid right after its maps) or joined,
  // right after the other namespaces' unshare (groups, gid, uid)
  const userNsAt = calls.findIndex((x) => (x.call === 'setns' && x.args[1] === CLONE.NEWUSER) || (x.call === 'unshare' && x.args[0] === CLONE.NEWUSER));
  const root = [c('setgroups', []), c('setresgid', 0), c('setresuid', 0)].map((x) => JSON.stringify(x));
  const entry = new Set<number>();
  for (let i = userNsAt + 1; userNsAt >= 0 && i < pivot; i++) if (root.includes(JSON.stringify(calls[i]))) entry.add(i);
  const cred = (call: string): number => calls.findIndex((x, i) => x.call === call && !entry.has(i));
  const setUp = Math.max(pivot, lastAt(calls, 'setrlimit'));
  for (const name of ['setgroups', 'setresgid', 'setresuid', 'capset']) {
    const i = cred(name);
    if (i >= 0 && i < setUp) return `${name} before the set-up is made`;
    if (i >= 0 && i > ready) return `${name} after the ready report`;
  }
  const firstFilter = idx('seccomp');
  if (firstFilter >= 0 && firstFilter < setUp) return 'seccomp before the set-up is made';
  if (idx('execve') < start) return 'execve before Start';
  if (lastAt(calls, 'setrlimit') > ready) return 'setrlimit after the ready report';
  const keep1 = idx('prctl', PR.SET_KEEPCAPS, 1), gid = cred('setresgid'), uid = cred('setresuid'), keep0 = idx('prctl', PR.SET_KEEPCAPS, 0), capset = idx('capset');
  if (!(cred('setgroups') > keep1 && gid > cred('setgroups') && uid > gid && keep0 > uid && capset > keep0)) return 'credentials not keepcaps -> setgroups -> setresgid -> setresuid -> !keepcaps -> capset';
  if (lastAt(calls, 'prctl', PR.CAPBSET_DROP) > keep1) return 'bounding set dropped after the uid change';
  const nnp = idx('prctl', PR.SET_NO_NEW_PRIVS, 1);
  const seccomp = idx('seccomp');
  if (nnp >= 0 && nnp < capset) return 'no_new_privs before capset';
  if (seccomp >= 0 && nnp >= 0 && seccomp < nnp) return 'seccomp before no_new_privs';
  // with no_new_privs the filter goes in as late as possible: after Start (what runs before it is ours)
  if (seccomp >= 0 && nnp >= 0 && seccomp < start) return 'a no_new_privs filter before Start';
  if (seccomp >= 0 && nnp < 0 && seccomp > idx('prctl', PR.CAPBSET_DROP)) return 'seccomp without no_new_privs after the capability drop';
  const exec = idx('execve');
  if (exec !== calls.length - 1) return 'execve is not the last call';
  // after the last step that changes what the process may do (seccomp when it goes in
  // late, else no_new_privs or the umask) only the stdio shuffle: dup2 0..2 (+ TIOCSCTTY)
  const lastPriv = seccomp > nnp && nnp >= 0 ? seccomp : Math.max(nnp, lastAt(calls, 'umask'));
  // (and the wait for Start, where nothing privileged follows it)
  const tail = calls.slice(lastPriv + 1, exec).filter((x) => !((x.call === 'read' || x.call === 'close') && x.args[0] === START) && !(x.call === 'write' && x.args[0] === STATUS)).map((x) => x.call);
  if (!tail.every((n) => n === 'dup2' || n === 'ioctl')) return `more than the stdio shuffle between the last privileged step and execve: ${tail.join(',')}`;
  return null;
}

describe('container-init against the recording ContainerSys', () => {
  it('stdio is parked at free numbers from 100 up, never over the start and status pipes when the seed held 100+ fds', () => {
    const rec = new RecordingContainerSys({ fds: [0, 1, 2, 100, 101], files: busyboxTree() });
    let exec: RecordedExec | null = null;
    try { runChild(planOf(), 100, 101, rec); } catch (e) { if (e instanceof RecordedExec) exec = e; else throw e; }
    expect(exec).not.toBeNull();
    // nothing was ever put on 100 or 101 (a dup3/dup2 there would have replaced the pipes)
    expect(rec.calls.filter((c) => (c.call === 'dup3' || c.call === 'dup2') && (c.args[1] === 100 || c.args[1] === 101))).toEqual([]);
    // Start was read from 100; the ready status went to 101, not to a container's stdio
    expect(rec.calls.some((c) => c.call === 'read' && c.args[0] === 100)).toBe(true);
    expect(rec.calls.some((c) => c.call === 'write' && c.args[0] === 101 && String(c.args[1]).includes('"ready"'))).toBe(true);
    expect(rec.calls.filter((c) => c.call === 'dup2' && (c.args[1] as number) <= 2).map((c) => c.args[0])).toEqual([104, 102, 103]);
  });

  it('a minimal spec (containerd defaults, busybox rootfs): the exact sequence', () => {
    const r = run(planOf());
    const NOSUID = MS.NOSUID, NODEV = MS.NODEV, NOEXEC = MS.NOEXEC;
    expect(r.exit).toBeNull();
    expect(r.calls).toEqual([
      // nothing of the seed's reaches the container (every fd but its own pipes is /dev/null
      // now, close-on-exec); a session of its own
      c('close_range', 3, true),
      c('seal_fds', START, STATUS),
      c('setsid'),
      // the new network namespace (its lo up, runc's loopback network) and IPC namespace:
      // early steps, which a container shell makes ahead
      c('unshare', CLONE.NEWNET), c('loopback_up'), c('unshare', CLONE.NEWIPC),
      // stdio opened on the host, parked above 100 until exec
      c('open', STDIO.stdout, O.WRONLY | O.APPEND), c('dup_at', 3, 100), c('close', 3),
      c('open', STDIO.stderr, O.WRONLY | O.APPEND), c('dup_at', 3, 100), c('close', 3),
      c('open', STDIO.stdin, O.RDONLY | O.NONBLOCK), c('dup_at', 3, 100), c('close', 3), c('set_nonblock', 102, false),
      // late cgroup: a handle on the cgroup's nearest existing ancestor, while the host's cgroupfs is in sight
      c('open', '/sys/fs/cgroup/default', O.PATH | O.DIRECTORY | O.CLOEXEC),
      // every other new namespace but pid (the seed's fork) and cgroup (after joining the cgroup), in one unshare
      c('unshare', CLONE.NEWUTS | CLONE.NEWNS),
      c('mount', null, '/', null, MS.SLAVE | MS.REC, null),
      c('mount', R, R, null, MS.BIND | MS.REC, null),
      c('mount', 'proc', `${R}/proc`, 'proc', NOSUID | NOEXEC | NODEV, null),
      c('mount', 'tmpfs', `${R}/dev`, 'tmpfs', NOSUID | MS.STRICTATIME, 'mode=755,size=65536k'),
      c('mkdir', `${R}/dev/pts`),
      c('mount', 'devpts', `${R}/dev/pts`, 'devpts', NOSUID | NOEXEC, 'newinstance,ptmxmode=0666,mode=0620,gid=5'),
      c('mkdir', `${R}/dev/shm`),
      c('mount', 'shm', `${R}/dev/shm`, 'tmpfs', NOSUID | NOEXEC | NODEV, 'mode=1777,size=65536k'),
      c('mkdir', `${R}/dev/mqueue`),
      c('mount', 'mqueue', `${R}/dev/mqueue`, 'mqueue', NOSUID | NOEXEC | NODEV, null),
      c('mount', 'sysfs', `${R}/sys`, 'sysfs', NOSUID | NOEXEC | NODEV | MS.RDONLY, null),
      ...defaultDevices(),
      c('symlink', '/proc/self/fd', `${R}/dev/fd`),
      c('symlink', '/proc/self/fd/0', `${R}/dev/stdin`),
      c('symlink', '/proc/self/fd/1', `${R}/dev/stdout`),
      c('symlink', '/proc/self/fd/2', `${R}/dev/stderr`),
      c('symlink', 'pts/ptmx', `${R}/dev/ptmx`),
      c('chdir', R), c('pivot_root', '.', '.'), c('umount2', '.', MNT_DETACH), c('chdir', '/'),
      c('mkdir', '/', 0o755),
      // the cgroup spored made meanwhile, through the handle; then the cgroup namespace rooted there
      c('write_file', '/proc/self/fd/3/c1/cgroup.procs', '0'),
      c('unshare', CLONE.NEWCGROUP),
      c('setrlimit', 7, '1024', '1024'),
      // the process's own credentials, before Create's answer (runc's finalizeNamespace)
      c('reset_signals'),
      // its own session keyring (runc: _ses.<container id>)
      c('join_session_keyring', '_ses.c1'), c('add_key_permission', 1000, 0x80000),
      c('chdir', '/'),
      ...boundingDrops(DEFAULT_CAPS),
      c('prctl', PR.SET_KEEPCAPS, 1), c('setgroups', []), c('setresgid', 0), c('setresuid', 0), c('prctl', PR.SET_KEEPCAPS, 0),
      c('capset', '0xa80425fb', '0xa80425fb', '0x0'),
      c('prctl', PR.CAP_AMBIENT, 4 /* CLEAR_ALL */),
      c('umask', 0o022),
      c('prctl', PR.SET_NO_NEW_PRIVS, 1),
      c('write', STATUS, `${JSON.stringify({ s: 'ready', warnings: [], t: {} })}\n`),
      // Start
      c('read', START, 1), c('close', START),
      // Start may be answered now (runc's start returns once its init wrote the exec fifo)
      c('write', STATUS, `${JSON.stringify({ s: 'exec' })}\n`),
      c('dup2', 102, 0), c('dup2', 100, 1), c('dup2', 101, 2),
      c('execve', '/bin/sh', ['sh', '-c', 'echo hi'], [PATH, 'HOME=/root']),
    ]);
    expect(capHex(DEFAULT_CAPS)).toBe('0xa80425fb');
    expect(brokenInvariant(r.calls)).toBeNull();
    // HOME came from the container's /etc/passwd, `sh` from its PATH, both after pivot_root (so in the container's root)
    expect(r.reads.filter((x) => x.call === 'read_file' || x.call === 'access')).toEqual([c('read_file', '/etc/passwd'), c('access', '/usr/local/sbin/sh', 1), c('access', '/usr/local/bin/sh', 1), c('access', '/usr/sbin/sh', 1), c('access', '/usr/bin/sh', 1), c('access', '/sbin/sh', 1), c('access', '/bin/sh', 1)]);
  });

  describe('joined by spored (joinedBySpored): the child waits for the join instead of making it', () => {
    // the child is pid 1 of its namespace (the recording sys's getpid), and the cgroup's procs
    // file is reached through the handle (fd 3) kept on the host's cgroupfs; /proc/self resolves
    // to 1 in the container's procfs (not looked at: a spec may mount the host's /proc there)
    const procsViaHandle = `${R}/proc/1/fd/3/c1/cgroup.procs`;
    const procfs = (procs: string): Record<string, FakeEntry> => ({
      [`${R}/proc/self`]: { link: '1' }, [`${R}/proc/1`]: 'dir', [`${R}/proc/1/fd`]: 'dir', [`${R}/proc/1/fd/3`]: 'dir', [`${R}/proc/1/fd/3/c1`]: 'dir',
      [procsViaHandle]: { content: procs },
    });
    const joined = (): InitPlan => { const p = planOf(); p.joinedBySpored = true; return p; };

    it('spored has joined it: no cgroup.procs write of its own (that would wait out an RCU grace period again), then the cgroup namespace', () => {
      const r = run(joined(), { files: { ...busyboxTree(), ...procfs('1\n') } });
      expect(r.exec).not.toBeNull();
      expect(r.calls.filter((x) => x.call === 'write_file' && String(x.args[0]).endsWith('cgroup.procs'))).toEqual([]);
      const looked = r.reads.findIndex((x) => x.call === 'read_file' && x.args[0] === '/proc/self/fd/3/c1/cgroup.procs');
      expect(looked).toBeGreaterThanOrEqual(0);
      expect(r.reads.some((x) => x.call === 'getpid')).toBe(true);
      inOrder(r.calls, at(r.calls, 'pivot_root'), at(r.calls, 'unshare', CLONE.NEWCGROUP), at(r.calls, 'write', STATUS));
      expect(brokenInvariant(r.calls)).toBeNull();
    });

    it('another process listed, not this one: it waits, then joins itself (a spored that died or whose write failed)', () => {
      const t0 = Date.now();
      const r = run(joined(), { files: { ...busyboxTree(), ...procfs('12\n') } });
      expect(Date.now() - t0).toBeGreaterThanOrEqual(AWAIT_JOIN_MS - 50);
      expect(r.exec).not.toBeNull();
      inOrder(r.calls, at(r.calls, 'pivot_root'), at(r.calls, 'write_file', '/proc/self/fd/3/c1/cgroup.procs', '0'), at(r.calls, 'unshare', CLONE.NEWCGROUP));
    });

    it('without the flag (a spored older than it): the child joins itself at once, as before', () => {
      const r = run(planOf(), { files: { ...busyboxTree(), ...procfs('1\n') } });
      expect(r.reads.some((x) => x.call === 'read_file' && x.args[0] === '/proc/self/fd/3/c1/cgroup.procs')).toBe(false);
      expect(at(r.calls, 'write_file', '/proc/self/fd/3/c1/cgroup.procs', '0')).toBeGreaterThanOrEqual(0);
    });
  });

  describe('the spec mounts the cgroup hierarchy (CRI\'s specs do): the late join comes before that mount', () => {
    const cgroupMount = (s: Parameters<SpecEdit>[0]): void => { s.mounts?.push({ destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev', 'relatime', 'ro'] }); };

    it('v2: namespaces and mounts while spored makes the cgroup; joined, then the cgroup namespace, then cgroup2 mounted in it; no second join', () => {
      const r = run(planOf(cgroupMount));
      expect(r.exec).not.toBeNull();
      // a handle on the cgroup's nearest existing ancestor; the cgroup namespace not in the first unshare
      inOrder(r.calls, at(r.calls, 'open', '/sys/fs/cgroup/default', O.PATH | O.DIRECTORY | O.CLOEXEC), at(r.calls, 'unshare', CLONE.NEWUTS | CLONE.NEWNS));
      const join = at(r.calls, 'write_file', '/proc/self/fd/3/c1/cgroup.procs', '0');
      const cgroupNs = at(r.calls, 'unshare', CLONE.NEWCGROUP);
      const mount = at(r.calls, 'mount', 'cgroup2', `${R}/sys/fs/cgroup`);
      // the mounts before it are made meanwhile (the overlap this is for)
      inOrder(r.calls, at(r.calls, 'mount', 'proc', `${R}/proc`), join, cgroupNs, mount, at(r.calls, 'pivot_root'));
      expect(r.calls.filter((x) => x.call === 'write_file' && String(x.args[0]).endsWith('cgroup.procs'))).toHaveLength(1);
      expect(r.calls.filter((x) => x.call === 'unshare' && x.args[0] === CLONE.NEWCGROUP)).toHaveLength(1);
      expect(brokenInvariant(r.calls)).toBeNull();
    });

    it('joined by spored: it waits for spored\'s join right before the mount, and writes nothing itself', () => {
      const plan = planOf(cgroupMount);
      plan.joinedBySpored = true;
      // before pivot_root: the handle is read through the host's /proc, still in sight
      const r = run(plan, { files: { ...busyboxTree(), '/proc/self': { link: '1' }, '/proc/1': 'dir', '/proc/1/fd': 'dir', '/proc/1/fd/3': 'dir', '/proc/1/fd/3/c1': 'dir', '/proc/1/fd/3/c1/cgroup.procs': { content: '1\n' } } });
      expect(r.exec).not.toBeNull();
      expect(r.calls.filter((x) => x.call === 'write_file' && String(x.args[0]).endsWith('cgroup.procs'))).toEqual([]);
      inOrder(r.calls, at(r.calls, 'mount', 'proc', `${R}/proc`), at(r.calls, 'unshare', CLONE.NEWCGROUP), at(r.calls, 'mount', 'cgroup2', `${R}/sys/fs/cgroup`));
    });

    it('v1: joined before the first controller\'s dir is bound (the dirs exist only once spored made them)', () => {
      const v1 = [{ name: 'memory', hostDir: '/sys/fs/cgroup/memory/default/c1' }];
      const r = run(planOf(cgroupMount, { v1 }));
      inOrder(r.calls, at(r.calls, 'write_file', '/proc/self/fd/3/c1/cgroup.procs', '0'), at(r.calls, 'mount', '/sys/fs/cgroup/memory/default/c1', `${R}/sys/fs/cgroup/memory`, null, MS.BIND, null));
    });
  });

  it('without the late cgroup (runtime hooks; an older root seed when the spec mounts the cgroup hierarchy): join first, no handle, cgroup ns in the one unshare', () => {
    const r = run(planOf((s) => { s.mounts?.push({ destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev', 'relatime', 'ro'] }); }, { late: false }));
    const join = at(r.calls, 'write_file', CGROUP_PROCS, '0');
    inOrder(r.calls, at(r.calls, 'set_nonblock'), join, at(r.calls, 'unshare'));
    expect(r.calls[at(r.calls, 'unshare')]).toEqual(c('unshare', CLONE.NEWIPC | CLONE.NEWUTS | CLONE.NEWNS | CLONE.NEWNET | CLONE.NEWCGROUP));
    expect(at(r.calls, 'open', '/sys/fs/cgroup/default')).toBe(-1);
    expect(r.calls.filter((x) => x.call === 'unshare')).toHaveLength(1);
    // cgroup2 on a v2 host, read-only as asked, under the rootfs before pivot_root
    const m = at(r.calls, 'mount', 'cgroup2', `${R}/sys/fs/cgroup`);
    expect(r.calls[m]).toEqual(c('mount', 'cgroup2', `${R}/sys/fs/cgroup`, 'cgroup2', MS.NOSUID | MS.NOEXEC | MS.NODEV | MS.RELATIME | MS.RDONLY, null));
    inOrder(r.calls, m, at(r.calls, 'pivot_root'));
    expect(brokenInvariant(r.calls)).toBeNull();
  });

  it('on a cgroup v1 host: tmpfs, one read-only bind per controller, links for co-mounted ones', () => {
    const v1 = [{ name: 'memory', hostDir: '/sys/fs/cgroup/memory/default/c1' }, { name: 'cpu,cpuacct', hostDir: '/sys/fs/cgroup/cpu,cpuacct/default/c1' }];
    const r = run(planOf((s) => { s.mounts?.push({ destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['ro'] }); }, { v1 }));
    const cg = `${R}/sys/fs/cgroup`;
    const ro = MS.BIND | MS.REMOUNT | MS.RDONLY | MS.NOSUID | MS.NODEV | MS.NOEXEC;
    const from = at(r.calls, 'mkdir', cg);
    expect(r.calls.slice(from, from + 12)).toEqual([
      c('mkdir', cg),
      c('mount', 'tmpfs', cg, 'tmpfs', MS.NOSUID | MS.NODEV | MS.NOEXEC, 'mode=755'),
      c('mkdir', `${cg}/memory`), c('mount', '/sys/fs/cgroup/memory/default/c1', `${cg}/memory`, null, MS.BIND, null), c('mount', null, `${cg}/memory`, null, ro, null),
      c('mkdir', `${cg}/cpu,cpuacct`), c('mount', '/sys/fs/cgroup/cpu,cpuacct/default/c1', `${cg}/cpu,cpuacct`, null, MS.BIND, null), c('mount', null, `${cg}/cpu,cpuacct`, null, ro, null),
      c('symlink', 'cpu,cpuacct', `${cg}/cpu`), c('symlink', 'cpu,cpuacct', `${cg}/cpuacct`),
      // the tmpfs itself stays writable, as runc leaves it
      ...defaultDevices().slice(0, 2),
    ]);
  });

  it('a read-only rootfs: remounted read-only after pivot_root, the hostname and the masks', () => {
    const r = run(planOf((s) => { s.root = { path: 'rootfs', readonly: true }; s.hostname = 'box'; s.linux.maskedPaths = ['/proc/kcore']; }),
      { files: busyboxTree({ [`${R}/proc/kcore`]: 'file' }) });
    const remount = at(r.calls, 'mount', null, '/', null, MS.BIND | MS.REMOUNT | MS.RDONLY, null);
    inOrder(r.calls, at(r.calls, 'pivot_root'), at(r.calls, 'mkdir', '/', 0o755), at(r.calls, 'sethostname', 'box'), at(r.calls, 'mount', '/dev/null', '/proc/kcore'), remount, at(r.calls, 'read', START));
    expect(brokenInvariant(r.calls)).toBeNull();
    // without readonly, / is only made a slave (before anything is mounted), never remounted
    expect(run(planOf()).calls.filter((x) => x.call === 'mount' && x.args[1] === '/')).toEqual([c('mount', null, '/', null, MS.SLAVE | MS.REC, null)]);
  });

  it('a read-only remount the kernel refuses is retried with the locked flags added', () => {
    const plain = MS.BIND | MS.REMOUNT | MS.RDONLY;
    const r = run(planOf((s) => { s.root = { path: 'rootfs', readonly: true }; }), { fail: (x) => (x.call === 'mount' && x.args[1] === '/' && x.args[3] === plain ? 1 : undefined) });
    const i = at(r.calls, 'mount', null, '/', null, plain);
    expect(r.calls.slice(i, i + 2)).toEqual([failed(1, 'mount', null, '/', null, plain, null), c('mount', null, '/', null, plain | MS.NOSUID | MS.NODEV | MS.NOEXEC, null)]);
    expect(r.exec).not.toBeNull();
  });

  it('masked and read-only paths: after pivot_root, read-only ones first, each by what it is; missing ones skipped', () => {
    const mountinfo = [
      '22 1 0:21 / / rw,relatime - overlay overlay rw',
      '23 22 0:22 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw',
      '40 23 0:22 /sys /proc/sys rw,nosuid,nodev,noexec,relatime - proc proc rw',
      '41 23 0:22 /sysrq-trigger /proc/sysrq-trigger rw,relatime - proc proc rw',
    ].join('\n');
    const r = run(planOf((s) => {
      s.linux.readonlyPaths = ['/proc/bus', '/proc/sys', '/proc/sysrq-trigger'];
      s.linux.maskedPaths = ['/proc/acpi', '/proc/kcore', '/proc/timer_stats', '/sys/firmware'];
    }), {
      files: busyboxTree({
        [`${R}/proc/sys/kernel/hostname`]: 'file', [`${R}/proc/sysrq-trigger`]: 'file', [`${R}/proc/acpi`]: 'dir', [`${R}/proc/kcore`]: 'file',
        [`${R}/sys/firmware`]: 'dir', [`${R}/proc/self/mountinfo`]: { content: mountinfo },
        // the host has them too: masking them before pivot_root would hit the host's paths
        '/proc/kcore': 'file', '/proc/acpi': 'dir', '/proc/sys/kernel/hostname': 'file', '/sys/firmware': 'dir',
      }),
    });
    const from = at(r.calls, 'mkdir', '/', 0o755) + 1;
    const ro = MS.BIND | MS.REMOUNT | MS.RDONLY | MS.REC;
    expect(r.calls.slice(from, from + 7)).toEqual([
      // /proc/bus is not there: nothing
      c('mount', '/proc/sys', '/proc/sys', null, MS.BIND | MS.REC, null),
      c('mount', null, '/proc/sys', null, ro | MS.NOSUID | MS.NODEV | MS.NOEXEC, null), // the flags the proc mount has, kept
      c('mount', '/proc/sysrq-trigger', '/proc/sysrq-trigger', null, MS.BIND | MS.REC, null),
      c('mount', null, '/proc/sysrq-trigger', null, ro, null),
      c('mount', 'tmpfs', '/proc/acpi', 'tmpfs', MS.RDONLY, null), // a directory: an empty read-only tmpfs
      c('mount', '/dev/null', '/proc/kcore', null, MS.BIND, null), // a file: /dev/null over it
      // /proc/timer_stats is not there: nothing
      c('mount', 'tmpfs', '/sys/firmware', 'tmpfs', MS.RDONLY, null),
    ]);
    expect(r.calls[from + 7]?.call).not.toBe('mount');
    // looked up in the container's root (the fake tree maps them under the rootfs after pivot_root)
    expect(r.reads).toContainEqual(c('stat', '/proc/kcore'));
    expect(r.reads).toContainEqual(c('read_file', '/proc/self/mountinfo'));
    expect(brokenInvariant(r.calls)).toBeNull();
  });

  it('a joined namespace is entered by fd before the one unshare of the new ones; a joined pid namespace last, for a child, before any mount', () => {
    const joined = run(planOf((s) => { s.linux.namespaces = [{ type: 'pid', path: '/proc/77/ns/pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }, { type: 'network', path: '/var/run/netns/n1' }, { type: 'cgroup' }]; }));
    const open = at(joined.calls, 'open', '/proc/77/ns/pid');
    expect(joined.calls.slice(open, open + 9)).toEqual([
      // the pid namespace's fd first, while /proc is the host's (no late cgroup handle: fd 3)
      c('open', '/proc/77/ns/pid', O.RDONLY | O.CLOEXEC),
      c('open', '/var/run/netns/n1', O.RDONLY | O.CLOEXEC),
      c('setns', 4, CLONE.NEWNET),
      c('close', 4),
      // the cgroup namespace too: it joined its cgroup first, even with a late cgroup asked for
      // (and the IPC namespace: an early step only with a new network namespace)
      c('unshare', CLONE.NEWIPC | CLONE.NEWUTS | CLONE.NEWNS | CLONE.NEWCGROUP),
      // only then, in every other namespace (and the cgroup), the pod's pid namespace: for a
      // child, which goes on (the recording follows it) and mounts proc from in there
      c('setns', 3, CLONE.NEWPID), c('close', 3), c('fork'), c('setsid'),
    ]);
    inOrder(joined.calls, at(joined.calls, 'write_file', CGROUP_PROCS, '0'), open, at(joined.calls, 'fork'), at(joined.calls, 'mount'));
    // never an unshare of a pid namespace here: a new one is the seed's business (it forks into it)
    expect(joined.calls.filter((x) => x.call === 'unshare' && (x.args[0] as number) & CLONE.NEWPID)).toEqual([]);

    const fresh = run(planOf());
    expect(at(fresh.calls, 'setns')).toBe(-1);
    expect(at(fresh.calls, 'fork')).toBe(-1);
    // a new network and IPC namespace are early steps (a shell makes them ahead), the rest in one unshare
    expect(fresh.calls.filter((x) => x.call === 'unshare')).toEqual([c('unshare', CLONE.NEWNET), c('unshare', CLONE.NEWIPC), c('unshare', CLONE.NEWUTS | CLONE.NEWNS), c('unshare', CLONE.NEWCGROUP)]);
    expect(brokenInvariant(joined.calls)).toBeNull();
  });

  describe('a user namespace of its own', () => {
    const USERNS_MAPS = { uidMappings: [{ containerID: 0, hostID: 100000, size: 65536 }], gidMappings: [{ containerID: 0, hostID: 100000, size: 65536 }] };
    const userNsPlan = (): InitPlan => planOf((s) => {
      s.linux.namespaces = [...(s.linux.namespaces ?? []), { type: 'user' }];
      Object.assign(s.linux, USERNS_MAPS);
      s.process.rlimits = [{ type: 'RLIMIT_MEMLOCK', hard: 67108864, soft: 67108864 }];
      s.process.oomScoreAdj = -100;
    });

    it('limits and cgroup as root on the host; the namespace, its maps from the seed, root in it; then the rest, owned by it, the pid namespace for a child', () => {
      const plan = userNsPlan();
      expect(plan.lateCgroup).toBe(true); // what the rule alone says: the child must not take it
      const r = run(plan);
      expect(r.exec?.path).toBe('/bin/sh');
      const userns = at(r.calls, 'unshare', CLONE.NEWUSER);
      expect(r.calls.slice(userns, userns + 9)).toEqual([
        c('unshare', CLONE.NEWUSER),
        // the seed writes uid_map and gid_map (root on the host), then one byte
        c('write', STATUS, '{"s":"userns"}\n'),
        c('read', START, 1),
        c('setresuid', 0),
        // every other new namespace now belongs to it, the pid namespace among them
        c('unshare', CLONE.NEWIPC | CLONE.NEWUTS | CLONE.NEWNS | CLONE.NEWNET | CLONE.NEWCGROUP | CLONE.NEWPID),
        // gid 0 after that unshare, as runc's init takes it (the mqueue root's group shows it)
        c('setgroups', []), c('setresgid', 0),
        c('loopback_up'),
        c('fork'),
      ]);
      // what needs root on the host comes before: the cgroup joined, the oom score and the
      // rlimits set (CAP_SYS_RESOURCE counts in the host's namespace only), as runc sets them from outside
      inOrder(r.calls, at(r.calls, 'write_file', CGROUP_PROCS, '0'), at(r.calls, 'write_file', '/proc/self/oom_score_adj', '-100'), at(r.calls, 'setrlimit'), userns);
      expect(r.calls.filter((x) => x.call === 'setrlimit')).toHaveLength(1);
      // the child goes on in the new pid namespace and mounts from there
      inOrder(r.calls, at(r.calls, 'fork'), lastAt(r.calls, 'setsid'), at(r.calls, 'mount'));
      expect(brokenInvariant(r.calls)).toBeNull();
      expect(r.status[0]).toEqual({ s: 'userns' });
      expect(r.status.at(-2)).toMatchObject({ s: 'ready' });
      expect(r.status.at(-1)).toEqual({ s: 'exec' });
    });

    it('device nodes are the host\'s, bound onto empty files (mknod is refused in a user namespace)', () => {
      const r = run(userNsPlan());
      expect(at(r.calls, 'mknod')).toBe(-1);
      const touch = at(r.calls, 'touch', `${R}/dev/null`);
      expect(r.calls.slice(touch, touch + 2)).toEqual([c('touch', `${R}/dev/null`), c('mount', '/dev/null', `${R}/dev/null`, null, MS.BIND, null)]);
      expect(r.calls.filter((x) => x.call === 'touch').map((x) => x.args[0])).toEqual(['null', 'random', 'full', 'tty', 'zero', 'urandom'].map((n) => `${R}/dev/${n}`));
      expect(brokenInvariant(r.calls)).toBeNull();
    });

    it('a rootfs the mapped root cannot reach: the error says which uid and what to fix', () => {
      const r = run(userNsPlan(), { fail: (x) => (x.call === 'mount' && x.args[0] === R && x.args[1] === R ? 13 : undefined) });
      expect(r.exit).toBe(127);
      expect(r.status.at(-1)).toMatchObject({ s: 'error', phase: 'rootfs' });
      expect((r.status.at(-1) as { message: string }).message).toMatch(new RegExp(`EACCES.*: the user namespace's root \\(host uid 100000\\) cannot reach ${R}; every directory above it must be searchable by that uid`));
    });

    it('EOF instead of its maps (the Create was aborted): exit 0, nothing made in the namespace', () => {
      const r = run(userNsPlan(), { start: false });
      expect(r.exit).toBe(0);
      expect(r.calls.slice(-2)).toEqual([c('read', START, 1), c('exit', 0)]);
      expect(at(r.calls, 'setresuid')).toBe(-1);
      expect(at(r.calls, 'mount')).toBe(-1);
    });

    it('with a pod\'s pid namespace: entered while still root on the host, before the user namespace; a joined user namespace first of the joins', () => {
      const pod = run(planOf((s) => {
        s.linux.namespaces = [{ type: 'pid', path: '/proc/77/ns/pid' }, { type: 'ipc' }, { type: 'mount' }, { type: 'network', path: '/var/run/netns/n1' }, { type: 'user' }];
        Object.assign(s.linux, USERNS_MAPS);
      }));
      inOrder(pod.calls, at(pod.calls, 'setns', undefined, CLONE.NEWNET), at(pod.calls, 'setns', undefined, CLONE.NEWPID), at(pod.calls, 'unshare', CLONE.NEWUSER), at(pod.calls, 'unshare', CLONE.NEWIPC | CLONE.NEWNS), at(pod.calls, 'fork'));
      expect(pod.calls.filter((x) => x.call === 'unshare' && (x.args[0] as number) & CLONE.NEWPID)).toEqual([]);

      const joined = run(planOf((s) => { s.linux.namespaces = [{ type: 'ipc' }, { type: 'mount' }, { type: 'network', path: '/var/run/netns/n1' }, { type: 'user', path: '/var/run/netns/n1' }]; }));
      expect(joined.calls.filter((x) => x.call === 'setns').map((x) => x.args[1])).toEqual([CLONE.NEWUSER, CLONE.NEWNET]);
      expect(at(joined.calls, 'unshare', CLONE.NEWUSER)).toBe(-1);
      expect(joined.status.some((x) => (x as { s: string }).s === 'userns')).toBe(false);
      // root inside the joined namespace after the unshare (the host's root is unmapped in there)
      const unshare = at(joined.calls, 'unshare');
      expect(joined.calls.slice(unshare, unshare + 4)).toEqual([c('unshare', CLONE.NEWIPC | CLONE.NEWNS), c('setgroups', []), c('setresgid', 0), c('setresuid', 0)]);
      expect(brokenInvariant(joined.calls)).toBeNull();

      // with a new pid namespace: made here, after the join, so that it belongs to the joined user namespace
      const joinedPid = run(planOf((s) => { s.linux.namespaces = [{ type: 'pid' }, { type: 'mount' }, { type: 'user', path: '/var/run/netns/n1' }]; }));
      const u = at(joinedPid.calls, 'setns', undefined, CLONE.NEWUSER);
      inOrder(joinedPid.calls, u, at(joinedPid.calls, 'unshare', CLONE.NEWNS | CLONE.NEWPID), at(joinedPid.calls, 'setresuid', 0), at(joinedPid.calls, 'fork'), at(joinedPid.calls, 'mount'));
      expect(forksIntoPidNs(planOf((s) => { s.linux.namespaces = [{ type: 'pid' }, { type: 'mount' }, { type: 'user', path: '/var/run/netns/n1' }]; }))).toBe(true);
      expect(brokenInvariant(joinedPid.calls)).toBeNull();
    });

    const execIn = (user: { uid: number; gid: number; additionalGids?: number[] }): Run => run(execPlan({
      id: 'c1', execId: 'e1', targetPid: 42, initNamespaces: [{ type: 'pid', path: null }, { type: 'mount', path: null }, { type: 'user', path: null }, { type: 'network', path: null }],
      process: { user, args: ['/bin/ls'], env: [PATH], cwd: '/', rlimits: [{ type: 'RLIMIT_MEMLOCK', hard: 67108864, soft: 67108864 }] }, stdio: { ...STDIO, stdin: '' }, cgroupProcs: [CGROUP_PROCS], seccomp: null,
    }), { files: {
      '/bin/ls': 'file', '/etc/passwd': { content: 'root:x:0:0:root:/root:/bin/sh\n' },
      // the init's maps as the kernel prints them
      '/proc/42/uid_map': { content: '         0     100000       1000\n      5000     200000         10\n' },
      '/proc/42/gid_map': { content: '         0     100000      65536\n' },
    } });

    it('an exec into it: its ids checked against the init\'s maps, its limits set, then the user namespace joined first of all', () => {
      const r = execIn({ uid: 5009, gid: 7 });
      expect(r.status.at(-2)).toMatchObject({ s: 'ready' });
      expect(r.status.at(-1)).toEqual({ s: 'exec' });
      expect(r.exec?.path).toBe('/bin/ls');
      const setns = r.calls.filter((x) => x.call === 'setns').map((x) => x.args[1]);
      expect(setns).toEqual([CLONE.NEWUSER, CLONE.NEWNET, CLONE.NEWNS, CLONE.NEWPID]);
      inOrder(r.calls, at(r.calls, 'setrlimit'), at(r.calls, 'setns'));
      // root inside once joined, before its own pid namespace child and its terminal (the host's root is unmapped there)
      const mnt = at(r.calls, 'setns', undefined, CLONE.NEWNS);
      expect(r.calls.slice(mnt + 2, mnt + 5)).toEqual([c('setgroups', []), c('setresgid', 0), c('setresuid', 0)]);
      inOrder(r.calls, mnt, at(r.calls, 'setns', undefined, CLONE.NEWPID));
      // and its own identity after Start, as any exec
      expect(r.calls.filter((x) => x.call === 'setresuid').map((x) => x.args[0])).toEqual([0, 5009]);
    });

    it('an exec whose user or group the namespace does not map fails its set-up (before Start), naming the id', () => {
      for (const [user, message] of [
        [{ uid: 1000, gid: 0 }, 'uid 1000 is not mapped in the container\'s user namespace'],
        [{ uid: 5010, gid: 0 }, 'uid 5010 is not mapped in the container\'s user namespace'],
        [{ uid: 0, gid: 0, additionalGids: [70000] }, 'gid 70000 is not mapped in the container\'s user namespace'],
      ] as const) {
        const r = execIn(user);
        expect(r.status.at(-1)).toEqual({ s: 'error', phase: 'user', message });
        expect(r.exit).toBe(127);
        expect(at(r.calls, 'setns')).toBe(-1);
      }
    });
  });

  it('an exec joins every namespace of the init (all fds first, mount last), mounts nothing', () => {
    const init = planOf((s) => { s.linux.namespaces = [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }, { type: 'network', path: '/var/run/netns/n1' }, { type: 'cgroup' }]; });
    const plan: ExecPlan = execPlan({
      id: 'c1', execId: 'e1', targetPid: 4242, initNamespaces: init.namespaces, process: { user: { uid: 0, gid: 0 }, args: ['/bin/ls', '/'], env: [PATH], cwd: '/', noNewPrivileges: true },
      stdio: { ...STDIO, stdin: '' }, cgroupProcs: [CGROUP_PROCS], seccomp: null,
    });
    // no pivot_root for an exec: the recording cannot follow setns(mnt), so the binary is looked up as the host path
    const r = run(plan, { files: { '/bin/ls': 'file', '/etc/passwd': { content: 'root:x:0:0:root:/root:/bin/sh\n' } } });
    const ns = (n: string): string => `/proc/4242/ns/${n}`;
    const from = at(r.calls, 'write_file', CGROUP_PROCS, '0');
    expect(r.calls.slice(from, from + 21)).toEqual([
      c('write_file', CGROUP_PROCS, '0'),
      // the pid namespace's fd while /proc is still the host's; entered last, for a child
      c('open', ns('pid'), O.RDONLY | O.CLOEXEC),
      c('open', ns('cgroup'), O.RDONLY | O.CLOEXEC), c('open', ns('ipc'), O.RDONLY | O.CLOEXEC), c('open', ns('uts'), O.RDONLY | O.CLOEXEC),
      c('open', ns('net'), O.RDONLY | O.CLOEXEC), c('open', ns('mnt'), O.RDONLY | O.CLOEXEC),
      c('setns', 4, CLONE.NEWCGROUP), c('close', 4), c('setns', 5, CLONE.NEWIPC), c('close', 5), c('setns', 6, CLONE.NEWUTS), c('close', 6),
      c('setns', 7, CLONE.NEWNET), c('close', 7), c('setns', 8, CLONE.NEWNS), c('close', 8),
      // only then the container's pid namespace, for the child that becomes the exec (the recording goes on as that child)
      c('setns', 3, CLONE.NEWPID), c('close', 3), c('fork'), c('setsid'),
    ]);
    for (const name of ['mount', 'pivot_root', 'unshare', 'mknod']) expect(at(r.calls, name), name).toBe(-1);
    expect(r.exec?.path).toBe('/bin/ls');
    // its credentials made before Start (no_new_privs last), then only Start and the stdio shuffle
    expect(r.calls.slice(-9).map((x) => x.call)).toEqual(['prctl', 'write', 'read', 'close', 'write', 'dup2', 'dup2', 'dup2', 'execve']);
  });

  it('a working directory that is not there fails before the ready report (an exec too), not the process after Start', () => {
    const init = planOf();
    const exec = (cwd: string): ExecPlan => execPlan({
      id: 'c1', execId: 'e1', targetPid: 4242, initNamespaces: init.namespaces, process: { user: { uid: 0, gid: 0 }, args: ['/bin/ls'], env: [PATH], cwd },
      stdio: { ...STDIO, stdin: '' }, cgroupProcs: [CGROUP_PROCS], seccomp: null,
    });
    const files = { '/bin/ls': 'file' as const, '/etc/passwd': { content: 'root:x:0:0:root:/root:/bin/sh\n' }, '/etc/hosts': 'file' as const };
    const missing = run(exec('/nonexist'), { files });
    expect(missing.status).toEqual([{ s: 'error', phase: 'cwd', message: 'chdir to cwd ("/nonexist") set in config.json failed: no such file or directory' }]);
    expect(at(missing.calls, 'read', START)).toBe(-1);
    expect(missing.exit).toBe(127);
    const file = run(exec('/etc/hosts'), { files });
    expect(file.status).toEqual([{ s: 'error', phase: 'cwd', message: 'chdir to cwd ("/etc/hosts") set in config.json failed: not a directory' }]);
    expect(run(exec('/'), { files }).exec?.path).toBe('/bin/ls');
  });

  it('mounts inside /proc are refused as runc refuses them, also when an image symlink aims one there; the lxcfs files may be bound', () => {
    const bind = (dst: string): SpecEdit => (s) => { s.mounts?.push({ destination: dst, type: 'bind', source: '/tmp', options: ['rbind'] }); };
    const inside = run(planOf(bind('/proc/x/y')));
    expect(inside.status.at(-1)).toMatchObject({ s: 'error', phase: 'mount /proc/x/y', message: '"/proc/x/y" cannot be mounted because it is inside /proc' });
    expect(at(inside.calls, 'mkdir', `${R}/proc/x/y`)).toBe(-1);
    // /mnt -> /proc in the image: the resolved target is what counts
    const viaLink = run(planOf(bind('/mnt/x')), { files: busyboxTree({ [`${R}/mnt`]: { link: '/proc' } }) });
    expect(viaLink.status.at(-1)).toMatchObject({ s: 'error', message: '"/mnt/x" cannot be mounted because it is inside /proc' });
    const onProc = run(planOf((s) => { s.mounts?.push({ destination: '/proc', type: 'tmpfs', source: 'tmpfs' }); }));
    expect(onProc.status.at(-1)).toMatchObject({ s: 'error', message: '"/proc" cannot be mounted because it is not of type proc' });
    expect(run(planOf((s) => { s.mounts?.push({ destination: '/proc/meminfo', type: 'bind', source: '/var/lib/lxcfs/proc/meminfo', options: ['bind'] }); }), { files: busyboxTree({ '/var/lib/lxcfs/proc/meminfo': 'file' }) }).exec).not.toBeNull();
    // an image whose /proc is a symlink: proc is not mounted where it points (a bind could
    // then land on its files: runc's CVE-2019-16884 rule)
    const moved = run(planOf(), { files: busyboxTree({ [`${R}/proc`]: { link: '/xproc' }, [`${R}/xproc`]: 'dir' }) });
    expect(moved.status.at(-1)).toMatchObject({ s: 'error', phase: 'mount /proc', message: 'filesystem "proc" must be mounted on ordinary directory (/proc is a symlink in the image)' });
    expect(at(moved.calls, 'mount', 'proc')).toBe(-1);
  });

  it('a shared root propagation: the rootfs\'s parent mount made private, the old root rslave before it goes, then / shared again', () => {
    const mountinfo = ['22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/vda rw', `30 22 0:30 / /run/spore rw,relatime shared:5 - tmpfs tmpfs rw`].join('\n');
    const r = run(planOf((s) => { s.linux.rootfsPropagation = 'rshared'; }), { files: busyboxTree({ '/proc/self/mountinfo': { content: mountinfo } }) });
    const shared = MS.SHARED | MS.REC;
    const first = at(r.calls, 'mount', null, '/', null, shared, null);
    expect(r.calls.slice(first, first + 3)).toEqual([c('mount', null, '/', null, shared, null), c('mount', null, '/run/spore', null, MS.PRIVATE, null), c('mount', R, R, null, MS.BIND | MS.REC, null)]);
    const pivot = at(r.calls, 'pivot_root');
    expect(r.calls.slice(pivot, pivot + 5)).toEqual([c('pivot_root', '.', '.'), c('mount', null, '.', null, MS.SLAVE | MS.REC, null), c('umount2', '.', MNT_DETACH), c('chdir', '/'), c('mount', null, '/', null, shared, null)]);
    expect(r.exec).not.toBeNull();
    // the default (rslave) needs none of it
    expect(at(run(planOf()).calls, 'mount', null, '.', null, MS.SLAVE | MS.REC, null)).toBe(-1);
  });

  it('an AppArmor profile and an SELinux label are set for execve, before the capabilities go', () => {
    const r = run(planOf((s) => { s.process.apparmorProfile = 'cri-default'; s.process.selinuxLabel = 'system_u:system_r:container_t:s0'; }));
    const aa = at(r.calls, 'write_file', '/proc/self/attr/apparmor/exec', 'exec cri-default');
    // with the process's other credentials, before the ready report (they take effect at execve)
    expect(aa).toBeLessThan(at(r.calls, 'write', STATUS));
    expect(r.calls[aa + 1]).toEqual(c('write_file', '/proc/self/attr/exec', 'system_u:system_r:container_t:s0'));
    inOrder(r.calls, aa, at(r.calls, 'prctl', PR.CAPBSET_DROP), at(r.calls, 'execve'));
  });

  it('user + additional gids: keepcaps around setgroups/setresgid/setresuid, capabilities set after; HOME of the user', () => {
    const r = run(planOf((s) => {
      s.process.user = { uid: 1000, gid: 1000, additionalGids: [10, 20, 10], umask: 0o027 };
      s.process.cwd = '/home/app';
      s.process.capabilities = { bounding: ['CAP_NET_BIND_SERVICE', 'CAP_KILL'], effective: ['CAP_NET_BIND_SERVICE'], permitted: ['CAP_NET_BIND_SERVICE'], inheritable: ['CAP_NET_BIND_SERVICE'], ambient: ['CAP_NET_BIND_SERVICE'] };
    }));
    const keep1 = at(r.calls, 'prctl', PR.SET_KEEPCAPS, 1);
    expect(r.calls.slice(keep1, keep1 + 10)).toEqual([
      c('prctl', PR.SET_KEEPCAPS, 1),
      c('setgroups', [10, 20]), // duplicates dropped
      c('setresgid', 1000),
      c('setresuid', 1000),
      c('prctl', PR.SET_KEEPCAPS, 0),
      c('capset', '0x400', '0x400', '0x400'),
      c('prctl', PR.CAP_AMBIENT, 4 /* CLEAR_ALL */),
      c('prctl', PR.CAP_AMBIENT, 2 /* RAISE */, 10),
      c('umask', 0o027),
      c('prctl', PR.SET_NO_NEW_PRIVS, 1),
    ]);
    expect(r.calls.slice(at(r.calls, 'chdir', '/home/app') - 3, keep1)).toEqual([c('reset_signals'), c('join_session_keyring', '_ses.c1'), c('add_key_permission', 1000, 0x80000), c('chdir', '/home/app'), ...boundingDrops(['CAP_NET_BIND_SERVICE', 'CAP_KILL'])]);
    // the working directory is made before Start, inside the new root
    inOrder(r.calls, at(r.calls, 'pivot_root'), at(r.calls, 'mkdir', '/home/app', 0o755), at(r.calls, 'read', START));
    expect(r.exec?.envp).toEqual([PATH, 'HOME=/home/app']);
    expect(brokenInvariant(r.calls)).toBeNull();
  });

  it('a working directory root may enter but the user may not: entered again after the uid change', () => {
    const r = run(planOf((s) => { s.process.user = { uid: 1000, gid: 1000 }; s.process.cwd = '/data'; }), { fail: (x) => (x.call === 'chdir' && x.args[0] === '/data' ? 13 : undefined) });
    // as root: EACCES is tolerated (root squash, a 0700 dir of the user's)...
    expect(r.calls[at(r.calls, 'chdir', '/data')]).toEqual(failed(13, 'chdir', '/data'));
    // ...and the second attempt, as the user, is the one that counts (here it fails too: exec never comes)
    const keep0 = at(r.calls, 'prctl', PR.SET_KEEPCAPS, 0);
    expect(r.calls[keep0 + 1]).toEqual(failed(13, 'chdir', '/data'));
    expect(r.exec).toBeNull();
    // before the ready report: Create fails, as runc's create fails (its init's finalizeNamespace)
    expect(r.exit).toBe(127);
    expect(r.status.map((x) => (x as { s: string }).s)).toEqual(['error']);
    expect(r.status.at(-1)).toMatchObject({ s: 'error', phase: 'cwd', errno: 13 });
  });

  it('rlimits and oom_score_adj: in spec order, before the ready report (so before Start)', () => {
    const r = run(planOf((s) => {
      s.process.oomScoreAdj = 500;
      s.process.rlimits = [
        { type: 'RLIMIT_NOFILE', soft: 1024, hard: 4096 }, { type: 'RLIMIT_CORE', soft: 0, hard: 0 },
        { type: 'RLIMIT_NPROC', soft: 512, hard: 512 }, { type: 'RLIMIT_AS', soft: 2 ** 64, hard: 2 ** 64 },
      ];
    }));
    const oom = at(r.calls, 'write_file', '/proc/self/oom_score_adj');
    expect(r.calls.slice(oom, oom + 6)).toEqual([
      c('write_file', '/proc/self/oom_score_adj', '500'),
      c('setrlimit', 7, '1024', '4096'),
      c('setrlimit', 4, '0', '0'),
      c('setrlimit', 6, '512', '512'),
      c('setrlimit', 9, String(Number.MAX_SAFE_INTEGER), String(Number.MAX_SAFE_INTEGER)), // "unlimited" past 2^53
      c('reset_signals'),
    ]);
    inOrder(r.calls, at(r.calls, 'unshare', CLONE.NEWCGROUP), oom, at(r.calls, 'read', START));
  });

  it('an oom_score_adj the kernel refuses is a warning in the ready report, not a failure', () => {
    const r = run(planOf((s) => { s.process.oomScoreAdj = -999; }), { fail: (x) => (x.call === 'write_file' && x.args[0] === '/proc/self/oom_score_adj' ? 13 : undefined) });
    expect(r.status[0]).toMatchObject({ s: 'ready', warnings: [expect.stringMatching(/^oom_score_adj -999 not applied: EACCES/)] });
    expect(r.exec).not.toBeNull();
  });

  it('hostname, domainname and sysctls: in the new namespaces, after pivot_root, before /proc/sys goes read-only and the root does', () => {
    const r = run(planOf((s) => { s.hostname = 'box'; s.domainname = 'example.org'; s.root = { path: 'rootfs', readonly: true }; s.linux.readonlyPaths = ['/proc/sys']; s.linux.sysctl = { 'net.ipv4.ip_forward': '0', 'kernel.msgmax': '65536' }; }),
      { files: busyboxTree({ [`${R}/proc/sys`]: 'dir' }) });
    const ro = at(r.calls, 'mount', null, '/', null, MS.BIND | MS.REMOUNT | MS.RDONLY);
    const host = at(r.calls, 'sethostname', 'box');
    expect(r.calls.slice(host, host + 4)).toEqual([
      c('sethostname', 'box'),
      c('setdomainname', 'example.org'),
      c('write_file', '/proc/sys/net/ipv4/ip_forward', '0'),
      c('write_file', '/proc/sys/kernel/msgmax', '65536'),
    ]);
    // the sysctls were written while /proc/sys could still take them (runc: sysctls, then read-only paths)
    inOrder(r.calls, at(r.calls, 'unshare'), at(r.calls, 'pivot_root'), host, at(r.calls, 'mount', '/proc/sys', '/proc/sys'), ro);
    // no hostname in the spec: none set (the new uts namespace keeps the host's name)
    expect(at(run(planOf()).calls, 'sethostname')).toBe(-1);
  });

  it('no_new_privs + seccomp: the filter goes in last, after no_new_privs; only the stdio shuffle before execve', () => {
    const f = compileSeccomp({ defaultAction: 'SCMP_ACT_ERRNO', architectures: ['SCMP_ARCH_X86_64'], syscalls: [{ names: ['read', 'write', 'execve', 'exit_group', 'dup2', 'dup3'], action: 'SCMP_ACT_ALLOW' }] });
    const r = run(planOf(undefined, { seccomp: { bpf: f.bpf, flags: f.flags } }));
    expect(r.calls.slice(-13)).toEqual([
      c('capset', '0xa80425fb', '0xa80425fb', '0x0'),
      c('prctl', PR.CAP_AMBIENT, 4),
      c('umask', 0o022),
      c('prctl', PR.SET_NO_NEW_PRIVS, 1),
      c('write', STATUS, `${JSON.stringify({ s: 'ready', warnings: [], t: {} })}\n`),
      // Start, then the filter (what runs before it is ours)
      c('read', START, 1), c('close', START),
      // the exec line before the filter (a filter that kills on write would kill it there)
      c('write', STATUS, `${JSON.stringify({ s: 'exec' })}\n`),
      c('seccomp', f.bpf.toString('base64'), f.flags),
      c('dup2', 102, 0), c('dup2', 100, 1), c('dup2', 101, 2),
      c('execve', '/bin/sh', ['sh', '-c', 'echo hi'], [PATH, 'HOME=/root']),
    ]);
    expect(r.calls.filter((x) => x.call === 'seccomp')).toHaveLength(1);
    expect(brokenInvariant(r.calls)).toBeNull();
  });

  it('a ready report that cannot be written (an early filter denying write) ends the set-up at once with its own status; a reader gone (EPIPE) does not', () => {
    const denied = run(planOf((s) => { s.process.noNewPrivileges = false; }), { fail: (x) => (x.call === 'write' && x.args[0] === STATUS && String(x.args[1]).includes('"ready"') ? 1 : undefined) });
    expect(denied.exec).toBeNull();
    expect(denied.exit).toBe(READY_UNWRITABLE);
    expect(at(denied.calls, 'read', START)).toBe(-1); // never waits for a Start nobody can tell it to take
    const gone = run(planOf(), { fail: (x) => (x.call === 'write' && x.args[0] === STATUS && String(x.args[1]).includes('"ready"') ? 32 : undefined) });
    expect(gone.exit).toBeNull();
    expect(gone.exec).not.toBeNull(); // (the keeper holds its start pipe: it still waits for Start)
  });

  it('seccomp without no_new_privs: installed early, while CAP_SYS_ADMIN is still held (before the bounding drop)', () => {
    const f = compileSeccomp({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['ptrace'], action: 'SCMP_ACT_ERRNO' }] });
    const r = run(planOf((s) => { s.process.noNewPrivileges = false; }, { seccomp: { bpf: f.bpf, flags: f.flags } }));
    const i = at(r.calls, 'seccomp');
    expect(r.calls.slice(i - 4, i + 2)).toEqual([c('reset_signals'), c('join_session_keyring', '_ses.c1'), c('add_key_permission', 1000, 0x80000), c('chdir', '/'), c('seccomp', f.bpf.toString('base64'), f.flags), boundingDrops(DEFAULT_CAPS)[0]]);
    expect(at(r.calls, 'prctl', PR.SET_NO_NEW_PRIVS)).toBe(-1);
    expect(brokenInvariant(r.calls)).toBeNull();
  });

  it('a TTY: the pty slave is opened once, parked at 100, becomes 0/1/2 and the controlling terminal right before execve', () => {
    const tty: Stdio = { stdin: '', stdout: '', stderr: '', terminal: '/dev/pts/7' };
    const r = run(planOf((s) => { s.process.terminal = true; }, { stdio: tty }));
    expect(r.calls.slice(6, 9)).toEqual([c('open', '/dev/pts/7', O.RDWR | O.NOCTTY), c('dup_at', 3, 100), c('close', 3)]);
    expect(r.calls.filter((x) => x.call === 'open' && String(x.args[0]).startsWith('/run/spore/fifo'))).toEqual([]);
    expect(r.calls.slice(-6)).toEqual([
      c('write', STATUS, `${JSON.stringify({ s: 'exec' })}\n`),
      c('dup2', 100, 0), c('dup2', 100, 1), c('dup2', 100, 2), c('ioctl', 0, TIOCSCTTY, 0),
      c('execve', '/bin/sh', ['sh', '-c', 'echo hi'], [PATH, 'HOME=/root']),
    ]);
    expect(brokenInvariant(r.calls)).toBeNull();
  });

  it('a TTY on the container\'s own devpts (CONSOLE_INSIDE): opened after pivot_root, its slave owned by the user, the master reported before Start', () => {
    const tty: Stdio = { stdin: '', stdout: '', stderr: '', terminal: CONSOLE_INSIDE, consoleSize: { rows: 40, cols: 120 } };
    const r = run(planOf((s) => { s.process.terminal = true; s.process.user = { uid: 1000, gid: 1000 }; }, { stdio: tty }));
    const names = r.calls.map((x) => x.call);
    const at = names.indexOf('openpty');
    expect(r.calls[at]).toEqual(c('openpty', '/dev/ptmx', '40x120'));
    expect(at).toBeGreaterThan(names.indexOf('pivot_root'));
    // and before the late cgroup join: spored may still be writing the cgroup's device
    // rules ('deny a' first) when the child joins (a full-suite run hit EPERM on /dev/ptmx)
    const join = r.calls.findIndex((x) => x.call === 'write_file' && String(x.args[0]).endsWith('cgroup.procs'));
    expect(join).toBeGreaterThan(at);
    // nothing is opened by host path for the terminal
    expect(r.calls.filter((x) => x.call === 'open' && String(x.args[0]).includes('pts'))).toEqual([]);
    const [slave, master] = [r.calls[at + 1]?.args[0], r.calls[at + 4]?.args[0]];
    expect(slave).not.toBe(master);
    expect(r.calls.slice(at + 1, at + 6)).toEqual([c('fchown', slave, 1000, -1), c('dup_at', slave, 100), c('close', slave), c('dup_at', master, 100), c('close', master)]);
    // the init's terminal is its /dev/console too (runc's mountConsole), in the container's
    // root; its mount point made before the root may go read-only (and never a write open)
    expect(r.calls[at + 6]).toEqual(c('mount', '/proc/self/fd/100', '/dev/console', null, MS.BIND, null));
    const find = (calls: SysCall[], call: string, ...args: unknown[]): number => calls.findIndex((x) => x.call === call && args.every((a, i) => a === undefined || JSON.stringify(x.args[i]) === JSON.stringify(a)));
    const point = find(r.calls, 'touch', '/dev/console');
    expect(r.calls.slice(point - 1, point + 2)).toEqual([c('umask', 0), c('touch', '/dev/console'), c('umask', 0o022)]);
    inOrder(r.calls, find(r.calls, 'pivot_root'), point, at);
    const ro = run(planOf((s) => { s.process.terminal = true; s.root = { path: 'rootfs', readonly: true }; }, { stdio: tty }));
    inOrder(ro.calls, find(ro.calls, 'touch', '/dev/console'), find(ro.calls, 'mount', null, '/', null, MS.BIND | MS.REMOUNT | MS.RDONLY, null), find(ro.calls, 'mount', '/proc/self/fd/100', '/dev/console'));
    expect(find(run(planOf()).calls, 'touch', '/dev/console')).toBe(-1);
    const ready = r.status.find((m) => (m as { s: string }).s === 'ready') as { console?: number };
    expect(ready.console).toBe(101); // the master, parked after the slave at 100
    expect(r.calls.slice(-6)).toEqual([
      c('write', STATUS, `${JSON.stringify({ s: 'exec' })}\n`),
      c('dup2', 100, 0), c('dup2', 100, 1), c('dup2', 100, 2), c('ioctl', 0, TIOCSCTTY, 0),
      c('execve', '/bin/sh', ['sh', '-c', 'echo hi'], [PATH, 'HOME=/home/app']),
    ]);
    expect(brokenInvariant(r.calls)).toBeNull();
  });

  it('a bind mount of a file: the mount point is made as a file, the source\'s flags applied by a remount; propagation last', () => {
    const r = run(planOf((s) => { s.mounts?.push({ destination: '/etc/resolv.conf', type: 'bind', source: '/etc/resolv.conf', options: ['rbind', 'ro', 'nosuid', 'rprivate'] }); }),
      { files: busyboxTree({ '/etc/resolv.conf': { content: 'nameserver 10.0.0.1\n' } }) });
    const i = at(r.calls, 'mkdir', `${R}/etc`);
    expect(r.calls.slice(i, i + 5)).toEqual([
      c('mkdir', `${R}/etc`),
      c('touch', `${R}/etc/resolv.conf`),
      c('mount', '/etc/resolv.conf', `${R}/etc/resolv.conf`, null, MS.BIND | MS.REC, null),
      c('mount', null, `${R}/etc/resolv.conf`, null, MS.BIND | MS.REMOUNT | MS.RDONLY | MS.NOSUID, null),
      c('mount', null, `${R}/etc/resolv.conf`, null, MS.PRIVATE | MS.REC, null),
    ]);
  });

  it('a symlink in the rootfs cannot carry a mount out of it', () => {
    const r = run(planOf((s) => { s.mounts?.push({ destination: '/etc/hosts', type: 'bind', source: '/srv/hosts', options: ['bind'] }); }),
      { files: busyboxTree({ [`${R}/etc`]: { link: '/../../../host-etc' }, '/srv/hosts': 'file', '/host-etc/hosts': 'file' }) });
    const m = at(r.calls, 'mount', '/srv/hosts');
    expect(r.calls[m]).toEqual(c('mount', '/srv/hosts', `${R}/host-etc/hosts`, null, MS.BIND, null));
    expect(r.reads).toContainEqual(c('readlink', `${R}/etc`));
    expect(brokenInvariant(r.calls)).toBeNull();
  });

  it('sysfs refused in a namespace that is not private: the host\'s /sys bound read-only instead, with a warning', () => {
    const r = run(planOf(), { fail: (x) => (x.call === 'mount' && x.args[2] === 'sysfs' ? 1 : undefined) });
    const i = at(r.calls, 'mount', 'sysfs');
    expect(r.calls.slice(i, i + 3)).toEqual([
      failed(1, 'mount', 'sysfs', `${R}/sys`, 'sysfs', MS.NOSUID | MS.NOEXEC | MS.NODEV | MS.RDONLY, null),
      c('mount', '/sys', `${R}/sys`, null, MS.BIND | MS.REC, null),
      c('mount', null, `${R}/sys`, null, MS.BIND | MS.REMOUNT | MS.RDONLY | MS.NOSUID | MS.NODEV | MS.NOEXEC, null),
    ]);
    expect(r.status[0]).toMatchObject({ s: 'ready', warnings: ['/sys: sysfs bound from host (namespace not private)'] });
  });

  it('abort (the start pipe closes instead of Start): exit 0, no late filter, no exec step', () => {
    const f = compileSeccomp({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['ptrace'], action: 'SCMP_ACT_ERRNO' }] });
    const r = run(planOf(undefined, { seccomp: { bpf: f.bpf, flags: f.flags } }), { start: false });
    expect(r.exit).toBe(0);
    expect(r.calls.slice(-2)).toEqual([c('read', START, 1), c('exit', 0)]); // nothing after it, as after a real _exit
    for (const name of ['seccomp', 'execve']) expect(at(r.calls, name), name).toBe(-1);
  });

  it('recursive mount attributes: mount_setattr on a bind mount after its remount (a tmpfs\'s are ignored, as runc 1.1 ignores them)', () => {
    const r = run(planOf((s) => { s.mounts?.push({ destination: '/m', type: 'bind', source: '/srv', options: ['rbind', 'ro', 'rro'] }, { destination: '/t', type: 'tmpfs', source: 'tmpfs', options: ['rro'] }); }, {}), { files: { ...busyboxTree(), '/srv': 'dir' } });
    const set = at(r.calls, 'mount_setattr', `${R}/m`, 0x1, 0);
    expect(set).toBeGreaterThan(at(r.calls, 'mount', null, `${R}/m`, null, MS.BIND | MS.REMOUNT | MS.RDONLY, null));
    expect(r.calls.filter((x) => x.call === 'mount_setattr')).toHaveLength(1);
  });

  it('a tmpfs over a directory of the image gets that directory\'s mode, whatever the options said (runc chmods it); a new one keeps its options', () => {
    const r = run(planOf((s) => { s.mounts?.push({ destination: '/etc', type: 'tmpfs', source: 'tmpfs', options: ['mode=1777', 'size=1m'] }, { destination: '/new', type: 'tmpfs', source: 'tmpfs', options: ['mode=1777'] }); }));
    expect(r.calls[at(r.calls, 'mount', 'tmpfs', `${R}/etc`)]?.args.at(-1)).toBe('mode=755,size=1m');
    expect(r.calls[at(r.calls, 'mount', 'tmpfs', `${R}/new`)]?.args.at(-1)).toBe('mode=1777');
  });

  it('a relative program path is looked up in the working directory (WORKDIR /bin, CMD ["./sh"]), and run as given from there', () => {
    const r = run(planOf((s) => { s.process.cwd = '/bin'; s.process.args = ['./sh', '-c', 'true']; }));
    expect(r.exec).not.toBeNull();
    expect(r.reads.some((x) => x.call === 'stat' && x.args[0] === '/bin/./sh')).toBe(true);
    inOrder(r.calls, at(r.calls, 'chdir', '/bin'), at(r.calls, 'execve', './sh'));
    // a relative PATH entry finding it is refused, as Go's LookPath (ErrDot) refuses it for runc
    const dot = run(planOf((s) => { s.process.cwd = '/bin'; s.process.env = ['PATH=.:/nowhere']; s.process.args = ['sh']; }));
    expect(dot.status.at(-1)).toMatchObject({ s: 'error', phase: 'lookup', message: 'exec: "sh": cannot run executable found relative to current directory' });
    // not found relative to / (where the lookup looked before: helper-54's oracle sweep)
    const missing = run(planOf((s) => { s.process.cwd = '/'; s.process.args = ['./sh']; }));
    expect(missing.status.at(-1)).toMatchObject({ s: 'error', phase: 'lookup' });
  });

  it('a binary not in the rootfs fails set-up (Create), before the ready report; nothing waits for Start', () => {
    const r = run(planOf((s) => { s.process.args = ['nosuch']; }));
    expect(r.exit).toBe(127);
    expect(at(r.calls, 'read', START)).toBe(-1);
    expect(r.status).toEqual([{ s: 'error', phase: 'lookup', message: 'exec: "nosuch": executable file not found in $PATH', errno: 2 }]);
    expect(r.calls.at(-1)).toEqual(c('exit', 127));
  });

  it('a failing execve is told on the status pipe and on the container\'s stderr, then exit 1 (after Start, as runc\'s init)', () => {
    const r = run(planOf(), { fail: (x) => (x.call === 'execve' ? 13 : undefined) });
    expect(r.calls.slice(-4)).toEqual([
      failed(13, 'execve', '/bin/sh', ['sh', '-c', 'echo hi'], [PATH, 'HOME=/root']),
      c('write', STATUS, `${JSON.stringify({ s: 'error', phase: 'exec', message: 'execve(/bin/sh): EACCES (errno 13)', errno: 13 })}\n`),
      c('write', 2, 'spore: execve(/bin/sh): EACCES (errno 13)\n'),
      c('exit', 1),
    ]);
  });

  it('a failing mount names its destination as the phase', () => {
    const r = run(planOf(), { fail: (x) => (x.call === 'mount' && x.args[2] === 'mqueue' ? 19 : undefined) });
    expect(r.status).toEqual([expect.objectContaining({ s: 'error', phase: 'mount /dev/mqueue', errno: 19 })]);
    expect(at(r.calls, 'pivot_root')).toBe(-1);
  });

  it('the order checks bite: each reordering of a real sequence is caught', () => {
    const f = compileSeccomp({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['ptrace'], action: 'SCMP_ACT_ERRNO' }] });
    const good = run(planOf(undefined, { seccomp: { bpf: f.bpf, flags: f.flags } })).calls;
    expect(brokenInvariant(good)).toBeNull();
    /** `good` with the call at `from` moved to just before (or after) the call at `to` */
    const move = (from: number, to: number, where: 'before' | 'after' = 'before'): SysCall[] => {
      const x = good[from] as SysCall, anchor = good[to] as SysCall;
      const s = good.filter((y) => y !== x);
      s.splice(s.indexOf(anchor) + (where === 'after' ? 1 : 0), 0, x);
      return s;
    };
    const cases: [string, SysCall[], RegExp][] = [
      ['a mount after pivot_root', move(at(good, 'mount', 'sysfs'), at(good, 'chdir', '/'), 'after'), /mount of a host rootfs path after pivot_root/],
      ['pivot_root without the detach', good.filter((x) => x.call !== 'umount2'), /old root not detached/],
      ['pivot_root not from inside the new root', move(at(good, 'chdir', R), at(good, 'mount', 'proc')), /pivot_root not right after chdir\(rootfs\)/],
      ['a mount before unshare', move(at(good, 'unshare', CLONE.NEWUTS | CLONE.NEWNS), at(good, 'mount', 'proc'), 'after'), /mount before the mount namespace/],
      ['setresuid before setresgid', move(at(good, 'setresuid'), at(good, 'setresgid')), /credentials not/],
      ['capset before the uid change', move(at(good, 'capset'), at(good, 'setresuid')), /credentials not/],
      ['the bounding set dropped after keepcaps', move(at(good, 'prctl', PR.CAPBSET_DROP, 2), at(good, 'prctl', PR.SET_KEEPCAPS, 1), 'after'), /bounding set dropped after the uid change|credentials not/],
      ['seccomp before no_new_privs', move(at(good, 'seccomp'), at(good, 'prctl', PR.SET_NO_NEW_PRIVS)), /seccomp before no_new_privs/],
      ['no_new_privs before capset', move(at(good, 'prctl', PR.SET_NO_NEW_PRIVS), at(good, 'capset')), /no_new_privs before capset/],
      ['setrlimit after the ready report', move(at(good, 'setrlimit'), at(good, 'write', STATUS), 'after'), /setrlimit after the ready report|before the set-up is made/],
      ['setgroups after the ready report', move(at(good, 'setgroups'), at(good, 'read', START)), /setgroups after the ready report|credentials not/],
      ['setgroups before pivot_root', move(at(good, 'setgroups'), at(good, 'chdir', R)), /setgroups before the set-up is made|credentials not/],
      ['a no_new_privs filter before Start', move(at(good, 'seccomp'), at(good, 'read', START)), /a no_new_privs filter before Start/],
      ['execve before Start', move(good.length - 1, at(good, 'read', START)), /execve before Start|execve is not the last call/],
      ['execve not last', move(good.length - 1, good.length - 2), /execve is not the last call/],
      ['a step between seccomp and execve', move(at(good, 'umask'), good.length - 1), /more than the stdio shuffle/],
    ];
    for (const [what, seq, why] of cases) expect(brokenInvariant(seq) ?? `not caught: ${what}`, what).toMatch(why);
  });
});

// --- container shells --------------------------------------------------------------------

const PLAN = 30; // the shell's plan pipe, read end
const SEED_FDS = [40, 41]; // fds of the seed's the shell inherited (its link to spored, ...)

interface ShellRun extends Run {
  /** every call the shell made before its plan was in (its own, then the early steps) */
  beforePlan: SysCall[];
  /** the early steps it made ahead: between arming the parent-death signal and the first read of the plan (its idle read-ahead left out) */
  ahead: SysCall[];
  /** the handoff: the plan read, its pipe closed, the parent-death signal disarmed */
  handoff: SysCall[];
  /** the container's set-up, after the handoff */
  after: SysCall[];
}

/** A shell that made `ahead`, waiting, then handed `plan` (its frame fed on the plan pipe). */
function runAsShell(plan: InitPlan | null, ahead: readonly EarlyStep[], opts: RecordingOptions = {}, rehearse = false): ShellRun {
  const feed = plan ? shellFrame(plan) : Buffer.alloc(0);
  if (!feed) throw new Error('plan too large for a shell');
  const rec = new RecordingContainerSys({ fds: [0, 1, 2, START, STATUS, PLAN, ...SEED_FDS], files: busyboxTree(), feed: { [PLAN]: feed }, ...opts });
  let exec: RecordedExec | null = null;
  let exit: number | null = null;
  try {
    runShell({ planFd: PLAN, startFd: START, statusFd: STATUS, closeFds: SEED_FDS, ...(rehearse ? { rehearsal: rehearsal() } : {}) }, ahead, rec);
  } catch (e) {
    if (e instanceof RecordedExec) exec = e;
    else if (e instanceof RecordedExit) exit = e.code;
    else throw e;
  }
  const calls = normalized(rec.calls);
  const firstRead = at(calls, 'read', PLAN);
  const armed = at(calls, 'prctl', PR.SET_PDEATHSIG, 9);
  const disarmed = at(calls, 'prctl', PR.SET_PDEATHSIG, 0);
  const status = rec.calls.filter((x) => x.call === 'write' && x.args[0] === STATUS).map((x) => JSON.parse(String(x.args[1])) as unknown);
  return {
    calls, reads: rec.reads, exec, exit, status,
    beforePlan: firstRead < 0 ? calls : calls.slice(0, firstRead),
    ahead: armed < 0 ? [] : calls.slice(armed + 1, firstRead < 0 ? calls.length : firstRead).filter((x) => x.call !== 'cache_ignored_signals'),
    handoff: disarmed < 0 ? [] : calls.slice(firstRead, disarmed + 1),
    after: disarmed < 0 ? [] : calls.slice(disarmed + 1),
  };
}

/** A pod's app container as containerd's CRI makes it: joins the sandbox's net, ipc and uts; its own pid and mount. */
const criApp: SpecEdit = (s) => {
  s.linux.namespaces = [{ type: 'pid' }, { type: 'mount' }, { type: 'network', path: '/proc/77/ns/net' }, { type: 'ipc', path: '/proc/77/ns/ipc' }, { type: 'uts', path: '/proc/77/ns/uts' }, { type: 'cgroup' }];
  s.mounts?.push({ destination: '/dev/shm', type: 'bind', source: '/run/containerd/sandboxes/p1/shm', options: ['rbind', 'ro'] });
};
/** A pod sandbox (the pause container): joins the network namespace CNI made, new everything else. */
const criSandbox: SpecEdit = (s) => {
  s.linux.namespaces = [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }, { type: 'network', path: '/var/run/netns/n1' }];
  s.hostname = 'pod-1';
};

describe('container shells: the same sequence, from a later step', () => {
  const seccomp = compileSeccomp({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['ptrace'], action: 'SCMP_ACT_ERRNO' }] });
  const plans: [string, InitPlan][] = [
    ['ctr run (containerd defaults)', planOf()],
    ['a CRI pod sandbox (CNI netns joined, hostname)', planOf(criSandbox)],
    ['a CRI app container (joined net/ipc/uts, /dev/shm bound from the sandbox)', planOf(criApp)],
    ['a TTY, a user, a read-only root, seccomp', planOf((s) => { s.process.terminal = true; s.process.user = { uid: 1000, gid: 1000, additionalGids: [10] }; s.root = { path: 'rootfs', readonly: true }; }, { stdio: { stdin: '', stdout: '', stderr: '', terminal: '/dev/pts/7' }, seccomp: { bpf: seccomp.bpf, flags: seccomp.flags } })],
    ['the cgroup hierarchy mounted (joined before it is mounted)', planOf((s) => { s.mounts?.push({ destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['ro'] }); })],
    ['the cgroup hierarchy mounted, no late cgroup', planOf((s) => { s.mounts?.push({ destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['ro'] }); }, { late: false })],
  ];

  for (const [what, plan] of plans) {
    it(`${what}: after its plan, a shell makes the normal sequence minus the steps it made ahead, in the same order`, () => {
      expect(shellFits(plan, EARLY_STEPS)).toBe(true);
      const normal = run(structuredClone(plan));
      const shell = runAsShell(structuredClone(plan), EARLY_STEPS);
      // the steps made ahead are the first steps of the normal sequence...
      // (a shell keeps its plan pipe through the seal as well)
      expect(shell.ahead).toEqual([c('close_range', 3, true), c('seal_fds', PLAN, START, STATUS), c('setsid')]);
      const withoutPlan = (xs: SysCall[]): SysCall[] => xs.map((x) => (x.call === 'seal_fds' ? { ...x, args: x.args.filter((a) => a !== PLAN) } : x));
      expect(withoutPlan(shell.ahead)).toEqual(normal.calls.slice(0, shell.ahead.length));
      // ...and after its plan the shell makes exactly the rest of it
      expect(shell.after).toEqual(normal.calls.slice(shell.ahead.length));
      expect(shell.exec).toEqual(normal.exec);
      expect(shell.exec).not.toBeNull();
      const untimed = (xs: unknown[]): unknown[] => xs.map((x) => ({ ...(x as object), t: {} }));
      expect(untimed(shell.status)).toEqual(untimed(normal.status));
      expect(brokenInvariant([...shell.ahead, ...shell.after])).toBeNull();
      // the handoff: the frame read off its own pipe, the pipe closed, the parent-death signal disarmed
      expect(shell.handoff[0]).toEqual(c('read', PLAN, 4));
      expect(shell.handoff.slice(1, -2).every((x) => x.call === 'read' && x.args[0] === PLAN)).toBe(true);
      expect(shell.handoff.slice(-2)).toEqual([c('close', PLAN), c('prctl', PR.SET_PDEATHSIG, 0)]);
    });
  }

  it('abort of a container a shell became: the same as a forked one (exit 0 at EOF of the start pipe)', () => {
    const normal = run(planOf(), { start: false });
    const shell = runAsShell(planOf(), EARLY_STEPS, { start: false });
    expect(shell.exit).toBe(0);
    expect(shell.after).toEqual(normal.calls.slice(shell.ahead.length));
  });

  it('before its plan a shell touches nothing of any container: the seed\'s fds closed, death with the seed armed, the early steps, then it waits', () => {
    const shell = runAsShell(planOf(), EARLY_STEPS);
    expect(shell.beforePlan).toEqual([
      c('close', 40), c('close', 41),
      c('prctl', PR.SET_PDEATHSIG, 9),
      c('close_range', 3, true), c('seal_fds', PLAN, START, STATUS), c('setsid'),
      // what it reads ahead for its exec while idle (its signal dispositions: nothing changes them before)
      c('cache_ignored_signals'),
    ]);
    expect(shell.reads).toEqual(run(planOf()).reads); // and it looks at nothing more than a forked init
  });

  it('the rehearsal a shell runs before waiting goes the whole way (to execve) on a plan of no container\'s data, and touches nothing: the shell\'s own sequence is the same with it', () => {
    const r = rehearsal();
    expect(r.plan.rootfs).toBe('/spore-rehearsal/rootfs');
    expect(JSON.stringify(r.plan, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v))).not.toMatch(/"\/(run|var|tmp)\//); // no path of any container's
    const dry = run(structuredClone(r.plan), { files: r.files });
    expect(dry.exec?.path).toBe('/bin/true');
    expect(brokenInvariant(dry.calls, r.plan.rootfs)).toBeNull();
    for (const plan of [planOf(), planOf(criApp)]) {
      const plain = runAsShell(structuredClone(plan), EARLY_STEPS);
      const rehearsed = runAsShell(structuredClone(plan), EARLY_STEPS, {}, true);
      expect(rehearsed.calls).toEqual(plain.calls);
      expect(rehearsed.reads).toEqual(plain.reads);
    }
  });

  it('EOF on its plan pipe (the seed let it go): exit 0 after the early steps, nothing else, nothing reported', () => {
    const shell = runAsShell(null, EARLY_STEPS);
    expect(shell.exit).toBe(0);
    expect(shell.calls.slice(-2)).toEqual([c('read', PLAN, 4), c('exit', 0)]);
    expect(shell.status).toEqual([]);
  });

  it('an early step that fails in a shell: exit 127 before reading any plan, nothing reported (no Create waits on it)', () => {
    const shell = runAsShell(planOf(), EARLY_STEPS, { fail: (x) => (x.call === 'setsid' ? 1 : undefined) });
    expect(shell.exit).toBe(127);
    expect(shell.status).toEqual([]);
    expect(at(shell.calls, 'read', PLAN)).toBe(-1);
  });

  it('a plan that does not fit is refused by the shell too (the seed never sends one)', () => {
    const joinedPid = planOf((s) => { s.linux.namespaces = [{ type: 'pid', path: '/proc/77/ns/pid' }, { type: 'mount' }, { type: 'ipc' }, { type: 'uts' }, { type: 'network' }]; });
    const shell = runAsShell(joinedPid, EARLY_STEPS);
    expect(shell.exit).toBe(127);
    expect(shell.status).toEqual([{ s: 'error', phase: 'shell', message: 'the plan does not fit this container shell' }]);
    expect(at(shell.calls, 'open')).toBe(-1);
  });

  it('which plans fit: a container in a new pid namespace (ctr, CRI sandboxes and app containers); not a joined or the host\'s pid namespace, not an exec', () => {
    // a late cgroup's new network and IPC namespaces are early steps (a shell of that shape makes them ahead)
    expect(earlyStepsOf(planOf())).toEqual(['fds', 'setsid', 'net', 'ipc']);
    expect(earlyStepsOf(planOf(undefined, { late: false }))).toEqual(['fds', 'setsid']);
    for (const edit of [undefined, criSandbox, criApp]) expect(shellFits(planOf(edit), EARLY_STEPS)).toBe(true);
    // a shell with the network namespace made fits a plan that makes one, not one that joins its pod's
    expect(shellFits(planOf(), ['fds', 'setsid', 'net', 'ipc'])).toBe(true);
    expect(shellFits(planOf(criApp), ['fds', 'setsid', 'net', 'ipc'])).toBe(false);
    expect(shellFits(planOf(undefined, { late: false }), ['fds', 'setsid', 'net', 'ipc'])).toBe(false);
    // the shapes a claim may ask the seed to make
    for (const ok of [['fds', 'setsid'], ['fds', 'setsid', 'net'], ['fds', 'setsid', 'net', 'ipc']]) expect(isEarlyShape(ok), ok.join()).toBe(true);
    for (const bad of [[], ['fds'], ['setsid', 'fds'], ['fds', 'net'], ['fds', 'setsid', 'ipc'], ['fds', 'setsid', 'ipc', 'net'], ['fds', 'setsid', 'net', 'net'], ['fds', 'setsid', 'mount']]) expect(isEarlyShape(bad), bad.join()).toBe(false);
    // a pod's sandbox (its own IPC namespace, CNI's network namespace) and its containers (both
    // joined) have one shape: shells are not discarded at every pod
    expect(earlyStepsOf(planOf(criSandbox))).toEqual(earlyStepsOf(planOf(criApp)));
    // joining a pod's pid namespace (shareProcessNamespace) or any pid namespace by path
    expect(shellFits(planOf((s) => { s.linux.namespaces = [{ type: 'pid', path: '/proc/77/ns/pid' }, { type: 'mount' }, { type: 'ipc' }, { type: 'uts' }]; }), EARLY_STEPS)).toBe(false);
    // the host's pid namespace (no pid entry)
    expect(shellFits(planOf((s) => { s.linux.namespaces = s.linux.namespaces?.filter((n) => n.type !== 'pid'); }), EARLY_STEPS)).toBe(false);
    // an exec joins a running container
    const exec = execPlan({ id: 'c1', execId: 'e1', targetPid: 4242, initNamespaces: planOf().namespaces, process: { args: ['/bin/ls'], cwd: '/' }, stdio: STDIO, cgroupProcs: [], seccomp: null });
    expect(shellFits(exec, EARLY_STEPS)).toBe(false);
    // a user namespace of its own, which must own the pid namespace (a shell's is the host's)
    const ownUserNs = planOf((s) => {
      s.linux.namespaces = [...(s.linux.namespaces ?? []), { type: 'user' }];
      s.linux.uidMappings = s.linux.gidMappings = [{ containerID: 0, hostID: 100000, size: 65536 }];
    });
    expect(shellFits(ownUserNs, EARLY_STEPS)).toBe(false);
    expect(forksIntoPidNs(ownUserNs)).toBe(true);
    expect(forksIntoPidNs(planOf())).toBe(false);
    // steps a plan's sequence does not start with
    expect(shellFits(planOf(), ['setsid'] as EarlyStep[])).toBe(false);
  });

  it('a plan too large for one pipe write is not framed (the seed forks as before)', () => {
    expect(shellFrame(planOf())?.length).toBeLessThan(4096);
    expect(shellFrame(planOf((s) => { s.process.env = [`BIG=${'x'.repeat(70_000)}`]; }))).toBeNull();
  });
});

describe('the seam itself', () => {
  it('container-init reaches the system only through ContainerSys: no libc, no node:fs', () => {
    const src = readFileSync(new URL('../engines/process/container-init.ts', import.meta.url), 'utf8');
    const imports = [...src.matchAll(/^import .* from '([^']+)';$/gm)].map((m) => m[1]);
    // (protocols/oci/hooks.js: pure data and text, the OCI state and a hook's failure message)
    expect(imports).toEqual(['../../sys/constants.js', './container-sys.js', './protocol.js', '../../sys/errors.js', '../../protocols/oci/hooks.js']);
    expect(src).not.toMatch(/(?<![\w-])sys\.|Sync\(|process\.channel/);
  });

  it('the real and the recording implementations offer the same calls', () => {
    const recorded = Object.getOwnPropertyNames(RecordingContainerSys.prototype).filter((k) => k !== 'constructor' && !['rec', 'query', 'view', 'host', 'kind', 'resolve', 'entryOf', 'target'].includes(k));
    expect(Object.keys(realContainerSys).sort()).toEqual(recorded.sort());
  });

  it('the real touch: creates a missing file (0666 less the umask), never waits on a FIFO, never writes', () => {
    const dir = mkdtempSync(join(tmpdir(), 'spore-touch-'));
    try {
      const fifo = join(dir, 'console');
      execFileSync('mkfifo', [fifo]);
      const t0 = Date.now();
      realContainerSys.touch(fifo); // a write open would wait here for a reader
      expect(Date.now() - t0).toBeLessThan(2000);
      const fresh = join(dir, 'fresh');
      const old = process.umask(0);
      try { realContainerSys.touch(fresh); } finally { process.umask(old); }
      expect(statSync(fresh).mode & 0o777).toBe(0o666);
      writeFileSync(join(dir, 'kept'), 'data');
      realContainerSys.touch(join(dir, 'kept'));
      expect(readFileSync(join(dir, 'kept'), 'utf8')).toBe('data');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('the real implementation\'s queries answer as node:fs does (read-only, no root)', () => {
    const s = realContainerSys;
    expect(s.exists('/proc/self')).toBe(true);
    expect(s.exists('/nonexistent-spore')).toBe(false);
    expect(s.lstat('/proc/self').isSymbolicLink()).toBe(true);
    expect(s.stat('/proc/self').isDirectory()).toBe(true);
    expect(s.readlink('/proc/self')).toBe(String(process.pid));
    expect(s.readFile('/proc/self/status')).toMatch(/^Name:/);
    expect(() => s.stat('/nonexistent-spore')).toThrow(expect.objectContaining({ code: 'ENOENT' }));
    expect(() => s.access(process.execPath, 1)).not.toThrow();
  });

  it('readFileInRoot reads a regular file up to the size it says it has, and nothing else (no /proc draining, no /dev/zero, no FIFO wait)', async () => {
    const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
    const { execFileSync } = await import('node:child_process');
    const s = realContainerSys;
    const d = mkdtempSync('/tmp/spore-rfir-');
    try {
      writeFileSync(`${d}/passwd`, 'root:x:0:0:root:/root:/bin/sh\n');
      expect(s.readFileInRoot(`${d}/passwd`, 1 << 20)).toBe('root:x:0:0:root:/root:/bin/sh\n');
      expect(() => s.readFileInRoot(`${d}/passwd`, 10)).toThrow(/longer than 10 bytes/);
      // a proc file says size 0: not read (its content would be consumed, as /proc/kmsg's)
      expect(s.readFileInRoot('/proc/self/status', 1 << 20)).toBe('');
      expect(() => s.readFileInRoot('/dev/zero', 1 << 20)).toThrow(/not a regular file/);
      execFileSync('mkfifo', [`${d}/fifo`]);
      expect(() => s.readFileInRoot(`${d}/fifo`, 1 << 20)).toThrow(/not a regular file/); // and at once: O_NONBLOCK
      expect(() => s.readFileInRoot(`${d}/missing`, 1 << 20)).toThrow();
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });

  it.skipIf(process.getuid?.() !== 0)('mountInRoot: a target whose component became a symlink out of the root after it was resolved still lands inside the root', async () => {
    const { mkdtempSync, mkdirSync, symlinkSync, statSync, rmSync } = await import('node:fs');
    const sys = await import('../sys/libc.js');
    const d = mkdtempSync('/tmp/spore-mir-');
    const root = `${d}/root`;
    const outside = `${d}/outside`;
    mkdirSync(`${outside}/mnt`, { recursive: true });
    mkdirSync(`${root}${outside}/mnt`, { recursive: true }); // where the link leads when resolved in the root
    symlinkSync(outside, `${root}/evil`); // swapped in after secureJoin: /evil -> /tmp/…/outside
    try {
      realContainerSys.mountInRoot(root, 'tmpfs', `${root}/evil/mnt`, 'tmpfs', 0, 'size=64k');
      try {
        expect(statSync(`${outside}/mnt`).dev, 'nothing mounted outside the root').toBe(statSync(outside).dev);
        expect(statSync(`${root}${outside}/mnt`).dev, 'the mount is inside the root').not.toBe(statSync(`${root}${outside}`).dev);
      } finally {
        for (const t of [`${root}${outside}/mnt`, `${outside}/mnt`]) { try { sys.umount2(t, sys.MNT_DETACH); } catch { /* not mounted */ } }
      }
      expect(() => realContainerSys.mountInRoot(root, 'tmpfs', '/etc', 'tmpfs', 0, null)).toThrow(/not below/);
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });

  it('the recording\'s fake tree: lowest free fd, symlinks followed, pivot_root maps paths under the new root', () => {
    const s = new RecordingContainerSys({ fds: [0, 1, 2, 3], files: { '/r/bin/busybox': 'file', '/r/bin/sh': { link: '/bin/busybox' }, '/r/etc/passwd': { content: 'x' } } });
    expect(s.open('/a', 0)).toBe(4);
    expect(s.open('/b', 0)).toBe(5);
    s.close(4);
    expect(s.open('/c', 0)).toBe(4);
    expect(s.exists('/bin/sh')).toBe(false);
    s.chdir('/r');
    s.pivotRoot('.', '.');
    expect(s.exists('/bin/sh')).toBe(true); // /bin/busybox, in the new root
    expect(s.lstat('/bin/sh').isSymbolicLink()).toBe(true);
    expect(s.stat('/bin/sh').isFile()).toBe(true);
    expect(s.readFile('/etc/passwd')).toBe('x');
    s.mkdir('/home/app', 0o755);
    expect(s.stat('/home').isDirectory()).toBe(true);
    expect(() => s.symlink('x', '/bin/sh')).toThrow(expect.objectContaining({ code: 'EEXIST' }));
    expect(s.calls.at(-1)).toEqual(failed(17, 'symlink', 'x', '/bin/sh'));
  });
});

describe('mkdirP (the real mkdir -p of container setup)', () => {
  it('makes what is missing, accepts what is there, and ends at once where a parent cannot hold the child', async () => {
    const { mkdirP } = await import('../engines/process/container-sys.js');
    const { mkdtempSync, statSync, writeFileSync, rmSync } = await import('node:fs');
    const d = mkdtempSync('/tmp/spore-mkdirp-');
    try {
      mkdirP(`${d}/a/b/c`, 0o755);
      expect(statSync(`${d}/a/b/c`).isDirectory()).toBe(true);
      mkdirP(`${d}/a/b`, 0o755);
      writeFileSync(`${d}/f`, '');
      expect(() => mkdirP(`${d}/f/x`, 0o755)).toThrow(/ENOTDIR/);
      expect(() => mkdirP(`${d}/f`, 0o755)).toThrow(/ENOTDIR/);
      // node's recursive mkdirSync loops forever here (the test's timeout would end it)
      expect(() => mkdirP('/proc/spore-no-such/x', 0o755)).toThrow(/ENOENT/);
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });
});

describe('OCI hooks: the child\'s part (runtime-spec config.md "POSIX-platform Hooks"; runc 1.1 as the oracle, integration/conformance/hooks.test.ts)', () => {
  const BUNDLE = '/run/containerd/bundle/c1';
  const hook = (path: string, extra: Record<string, unknown> = {}): Record<string, unknown> => ({ path, args: [path.split('/').pop(), 'arg1'], ...extra });
  const withHooks = (hooks: Record<string, unknown>): InitPlan => {
    const spec = defaultSpec();
    (spec as unknown as Record<string, unknown>).hooks = hooks;
    spec.annotations = { 'org.example': 'yes' };
    const plan = initPlan({ id: 'c1', bundle: BUNDLE, spec, rootfs: R, stdio: STDIO, cgroupProcs: [CGROUP_PROCS], cgroupV1Dirs: null, seccomp: compileSeccomp({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['kexec_load'], action: 'SCMP_ACT_ERRNO' }] }) });
    plan.lateCgroup = false; // tasks.ts: prestart/createRuntime hooks run with the init in its cgroup
    return plan;
  };
  const runs = (calls: SysCall[]): SysCall[] => calls.filter((x) => x.call === 'run');

  it('pauses for the runtime hooks after mounts and devices, runs createContainer in the rootfs before pivot_root, startContainer as the user just before execve', () => {
    const plan = withHooks({
      prestart: [hook('/usr/bin/pre')],
      createContainer: [hook('/usr/bin/cc', { env: ['A=1'], timeout: 5 })],
      startContainer: [hook('/bin/sc')],
      poststop: [hook('/usr/bin/stop')],
    });
    expect(plan.hooks?.pause).toBe(true);
    const r = run(plan);
    expect(r.exec?.path).toBe('/bin/sh');
    const pause = at(r.calls, 'write', STATUS, '{"s":"hooks"}\n');
    const lastDevice = lastAt(r.calls, 'mknod');
    const resumeRead = r.calls.findIndex((x, i) => i > pause && x.call === 'read' && x.args[0] === START);
    const cc = at(r.calls, 'run', '/usr/bin/cc');
    const sc = at(r.calls, 'run', '/bin/sc');
    inOrder(r.calls, lastDevice, pause, resumeRead, at(r.calls, 'chdir', R), cc, at(r.calls, 'pivot_root'));
    // startContainer: credentials and capabilities (before Start, after the ready report), then
    // Start (the second read of the start pipe) and the filter, then the hook, before stdio and execve
    const startRead = r.calls.findIndex((x, i) => i > resumeRead && x.call === 'read' && x.args[0] === START);
    inOrder(r.calls, at(r.calls, 'write', STATUS, undefined), at(r.calls, 'setresuid'), at(r.calls, 'capset'), startRead, lastAt(r.calls, 'seccomp'), sc, at(r.calls, 'dup2', undefined, 0));
    const [ccRun, scRun] = runs(r.calls);
    // the hook's own argv and env; the state on stdin, runc's key order, pid as the container sees it
    expect(ccRun?.args.slice(1, 3)).toEqual([['cc', 'arg1'], ['A=1']]);
    expect(ccRun?.args[3]).toBe(`{"ociVersion":"1.0.2","id":"c1","status":"creating","pid":1,"bundle":"${BUNDLE}","annotations":{"org.example":"yes"}}`);
    expect(ccRun?.args[4]).toBe(5000);
    // no env of its own: the container process's (HOME added as for the program)
    expect(scRun?.args[2]).toEqual([PATH, 'HOME=/root']);
    expect(JSON.parse(String(scRun?.args[3]))).toMatchObject({ status: 'created', pid: 1 });
    expect(scRun?.args[4]).toBeNull();
    // the runtime kinds are spored's: never run here
    expect(runs(r.calls).map((x) => x.args[0])).toEqual(['/usr/bin/cc', '/bin/sc']);
  });

  it('no pause without prestart or createRuntime; no hook calls at all without hooks', () => {
    const cc = run(withHooks({ createContainer: [hook('/usr/bin/cc')] }));
    expect(cc.status.filter((s) => (s as { s: string }).s === 'hooks')).toEqual([]);
    expect(runs(cc.calls)).toHaveLength(1);
    const none = run(withHooks({ poststart: [hook('/usr/bin/ps')] }));
    expect(none.calls.some((x) => x.call === 'run')).toBe(false);
    expect(withHooks({ poststart: [hook('/usr/bin/ps')] }).hooks).toBeUndefined();
  });

  it('an abort while paused (EOF on the start pipe) ends the child before pivot_root, exit 0', () => {
    const r = run(withHooks({ createRuntime: [hook('/usr/bin/cr')], createContainer: [hook('/usr/bin/cc')] }), { start: false });
    expect(r.exit).toBe(0);
    expect(at(r.calls, 'pivot_root')).toBe(-1);
    expect(runs(r.calls)).toEqual([]);
  });

  it('a createContainer hook that fails, times out or cannot start fails the set-up, naming the hook; the next does not run', () => {
    const plan = (): InitPlan => withHooks({ createContainer: [hook('/usr/bin/cc'), hook('/usr/bin/cc2')] });
    const exited = run(plan(), { program: () => ({ status: 3 << 8, output: 'no GPU here\n' }) });
    expect(exited.status.at(-1)).toEqual({ s: 'error', phase: 'createContainer hook', message: 'createContainer hook #0 (/usr/bin/cc): exit status 3; output: no GPU here' });
    expect(exited.exit).toBe(127);
    expect(runs(exited.calls)).toHaveLength(1);
    const slow = run(withHooks({ createContainer: [hook('/usr/bin/cc', { timeout: 2 })] }), { program: () => ({ status: null, output: '' }) });
    expect(slow.status.at(-1)).toMatchObject({ phase: 'createContainer hook', message: 'createContainer hook #0 (/usr/bin/cc): ran past its timeout of 2 s and was killed' });
    const missing = run(plan(), { fail: (x) => (x.call === 'run' ? 2 : undefined) });
    expect(missing.status.at(-1)).toMatchObject({ phase: 'createContainer hook', message: expect.stringMatching(/^createContainer hook #0 \(\/usr\/bin\/cc\): cannot be started: .*ENOENT/) as unknown as string });
    expect(at(missing.calls, 'pivot_root')).toBe(-1);
  });

  it('a startContainer hook that fails ends the container with status 1 and says why on its stderr; the program never runs', () => {
    const r = run(withHooks({ startContainer: [hook('/bin/sc')] }), { program: () => ({ status: 9, output: '' }) });
    expect(r.exec).toBeNull();
    expect(r.exit).toBe(1);
    const said = r.calls.find((x) => x.call === 'write' && typeof x.args[1] === 'string' && x.args[1].startsWith('spore: startContainer hook #0'));
    expect(said?.args[1]).toBe('spore: startContainer hook #0 (/bin/sc): killed by signal 9\n');
    expect(said?.args[0]).not.toBe(STATUS);
  });
});
