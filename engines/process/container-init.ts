// Runs in the child right after the seed forks, and never returns: the child either
// execve()s the container process or _exit()s. Setup is one linear sequence (like crun):
// stdio -> cgroup -> namespaces -> mounts -> devices -> pivot_root -> masks -> identity
// -> wait for Start -> credentials, capabilities, seccomp -> exec.
// Only synchronous calls are allowed here: the child must never return to the event loop
// it inherited from the seed.
import { mkdirSync, writeFileSync, existsSync, statSync, lstatSync, readlinkSync, symlinkSync, accessSync, constants as fsConst, openSync, closeSync, readFileSync } from 'node:fs';
import * as sys from '../../sys/libc.js';
import type { ChildStatus, DeviceNode, ExecPlan, InitPlan, MountStep, NamespaceStep, ProcessPlan, SpawnPlan } from './protocol.js';
import { SyscallError } from '../../sys/errors.js';

const NS_FLAG: Record<NamespaceStep['type'], number> = {
  mount: sys.CLONE.NEWNS,
  network: sys.CLONE.NEWNET,
  ipc: sys.CLONE.NEWIPC,
  uts: sys.CLONE.NEWUTS,
  cgroup: sys.CLONE.NEWCGROUP,
  pid: sys.CLONE.NEWPID,
  user: sys.CLONE.NEWUSER,
  time: sys.CLONE.NEWTIME,
};

class PhaseError extends Error {
  constructor(readonly phase: string, readonly inner: unknown) {
    super(inner instanceof Error ? inner.message : String(inner));
  }
}

function phase<T>(name: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof PhaseError) throw e;
    throw new PhaseError(name, e);
  }
}

function report(fd: number, msg: ChildStatus): void {
  try {
    sys.write(fd, Buffer.from(JSON.stringify(msg) + '\n'));
  } catch {
    // the seed went away; nothing useful left to do but carry on / exit
  }
}

/** Entry point in the forked child. `startFd` blocks until Start; `statusFd` is CLOEXEC. */
export function runChild(plan: SpawnPlan, startFd: number, statusFd: number): never {
  const t0 = performance.now();
  const t: Record<string, number> = {};
  const mark = (name: string): void => { t[name] = Math.round((performance.now() - t0) * 1000) / 1000; };
  const warnings: string[] = [];
  try {
    closeInheritedFds();
    phase('setsid', () => sys.setsid());
    const stdio = phase('stdio', () => openStdio(plan.process));
    mark('stdio');
    const late = plan.kind === 'init' && plan.lateCgroup === true;
    // The host's cgroupfs is out of sight after pivot_root: keep handles on it.
    const lateProcs = late ? phase('cgroup', () => cgroupPathsViaFds(plan.cgroupProcs)) : [];
    if (!late) phase('cgroup', () => joinCgroup(plan.cgroupProcs));
    mark('cgroup');
    if (plan.kind === 'init') {
      setupContainer(plan, warnings, mark);
      if (late) {
        phase('cgroup', () => joinCgroupWhenReady(lateProcs));
        // the cgroup namespace's root is the cgroup we are in when it is created
        if (plan.namespaces.some((n) => n.type === 'cgroup' && n.path === null)) phase('namespaces', () => sys.unshare(sys.CLONE.NEWCGROUP));
        mark('cgroup-late');
      }
    } else {
      joinContainer(plan);
    }
    mark('setup');
    // The environment as runc builds it (later duplicates win; HOME from the container's
    // /etc/passwd when unset), then the executable resolved now, in the container's root,
    // so a missing binary fails Create (as with runc) and Start need not wait for execve.
    plan.process.env = phase('env', () => execEnv(plan.process.env, plan.process.uid));
    const path = phase('lookup', () => lookPath(plan.process.args[0] ?? '', plan.process.env));
    phase('oom_score_adj', () => applyOomScore(plan.process, warnings));
    phase('rlimits', () => applyRlimits(plan.process));
    report(statusFd, { s: 'ready', warnings, t });
    // Block until the seed says Start (one byte) or drops the pipe (abort: EOF).
    const go = sys.read(startFd, 1);
    if (go.length === 0) sys.exit(0);
    sys.close(startFd);
    finalizeAndExec(plan.process, stdio, path);
  } catch (e) {
    const pe = e instanceof PhaseError ? e : new PhaseError('init', e);
    const errno = pe.inner instanceof SyscallError ? pe.inner.errno : undefined;
    report(statusFd, { s: 'error', phase: pe.phase, message: pe.message, ...(errno !== undefined ? { errno } : {}) });
    // After Start nobody waits on the status pipe: tell the container's own stderr.
    if (pe.phase === 'exec') { try { sys.write(2, Buffer.from(`spore: ${pe.message}\n`)); } catch { /* no stderr */ } }
    sys.exit(127);
  }
}

/**
 * Nothing the seed holds may reach the container. The fds cannot simply be closed: the
 * JS running here still needs libuv's internals (a young-generation GC posts a task
 * through the loop's eventfd, and libuv aborts if that write fails). So every fd is
 * marked close-on-exec, and only the IPC channel to spored is closed now, so spored sees
 * the seed's EOF even while sandboxes are parked waiting for Start.
 */
function closeInheritedFds(): void {
  sys.closeFrom(3, true);
  const channelFd = (process as unknown as { channel?: { fd?: number } }).channel?.fd;
  if (typeof channelFd === 'number' && channelFd > 2) sys.close(channelFd);
}

interface OpenStdio { fds: [number, number, number]; terminal: boolean }

// Host paths are opened before any namespace or root change, then parked above 100 so
// the container's own setup cannot clobber them; they become 0/1/2 right before exec.
function openStdio(p: ProcessPlan): OpenStdio {
  const park = (fd: number, to: number): number => { sys.dup3(fd, to, sys.O.CLOEXEC); sys.close(fd); return to; };
  if (p.stdio.terminal) {
    const fd = park(sys.open(p.stdio.terminal, sys.O.RDWR | sys.O.NOCTTY), 100);
    return { fds: [fd, fd, fd], terminal: true };
  }
  const openOne = (path: string, flags: number, to: number): number =>
    park(path ? sys.open(path, flags) : sys.open('/dev/null', sys.O.RDWR), to);
  // The client already holds the read side of stdout/stderr, so these opens return at once.
  // O_APPEND: a file:// log is appended to, as containerd's shims do.
  const out = openOne(p.stdio.stdout, sys.O.WRONLY | sys.O.APPEND, 101);
  const err = p.stdio.stderr && p.stdio.stderr === p.stdio.stdout ? out : openOne(p.stdio.stderr, sys.O.WRONLY | sys.O.APPEND, 102);
  // Non-blocking open: a client whose own stdin is already at EOF never opens its writer
  // (containerd's fifo package cancels the pending open), so a blocking open would hang.
  // Until a writer connects, reads see EOF — which is then exactly what the client meant.
  const inn = openOne(p.stdio.stdin, sys.O.RDONLY | sys.O.NONBLOCK, 103);
  if (p.stdio.stdin) sys.setNonblock(inn, false);
  return { fds: [inn, out, err], terminal: false };
}

function joinCgroup(procs: string[]): void {
  for (const f of procs) writeFileSync(f, '0');
}

/**
 * /proc/self/fd/<dir>/<rest> paths for files that may not exist yet, anchored at their
 * nearest existing ancestor directory (opened now, while the host's cgroupfs is visible).
 */
function cgroupPathsViaFds(files: string[]): string[] {
  const anchors = new Map<string, number>();
  return files.map((f) => {
    let dir = f.slice(0, f.lastIndexOf('/'));
    while (dir.length > 1 && !existsSync(dir)) dir = dir.slice(0, dir.lastIndexOf('/'));
    let fd = anchors.get(dir);
    if (fd === undefined) {
      fd = sys.open(dir, sys.O.PATH | sys.O.DIRECTORY | sys.O.CLOEXEC);
      anchors.set(dir, fd);
    }
    return `/proc/self/fd/${fd}${f.slice(dir.length)}`;
  });
}

/**
 * spored creates the cgroup while we set up; it is there long before we get here, mostly.
 * ENOENT: not made yet; ENOSPC: a v1 cpuset made but its cpus/mems not copied in yet.
 */
function joinCgroupWhenReady(procs: string[]): void {
  const until = Date.now() + 2000;
  for (const f of procs) {
    for (;;) {
      try { writeFileSync(f, '0'); break; } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if ((code !== 'ENOENT' && code !== 'ENOSPC') || Date.now() > until) throw e;
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1);
      }
    }
  }
}

// --- init: new container ------------------------------------------------------------

function setupContainer(plan: InitPlan, warnings: string[], mark: (name: string) => void): void {
  phase('namespaces', () => enterNamespaces(plan.lateCgroup ? plan.namespaces.filter((n) => !(n.type === 'cgroup' && n.path === null)) : plan.namespaces));
  mark('namespaces');
  const ownMountNs = plan.namespaces.some((n) => n.type === 'mount');
  if (!ownMountNs) throw new PhaseError('namespaces', new Error('a mount namespace is required'));
  phase('rootfs', () => {
    sys.mount(null, '/', null, plan.rootPropagation | sys.MS.REC, null);
    sys.mount(plan.rootfs, plan.rootfs, null, sys.MS.BIND | sys.MS.REC, null);
  });
  for (const m of plan.mounts) phase(`mount ${m.destination}`, () => doMount(plan.rootfs, m, warnings));
  mark('mounts');
  phase('devices', () => createDevices(plan.rootfs, plan.devices, plan.mounts));
  mark('devices');
  phase('pivot_root', () => {
    sys.chdir(plan.rootfs);
    sys.pivotRoot('.', '.');
    sys.umount2('.', sys.MNT_DETACH);
    sys.chdir('/');
  });
  mark('pivot');
  // runc creates a missing working directory (before the root goes read-only)
  phase('cwd', () => mkdirSync(plan.process.cwd, { recursive: true, mode: 0o755 }));
  // runc's order (the mount table shows it): read-only paths, then masked ones
  for (const p of plan.readonlyPaths) phase(`readonly ${p}`, () => readonlyPath(p));
  for (const p of plan.maskedPaths) phase(`mask ${p}`, () => maskPath(p));
  if (plan.readonlyRoot) phase('readonly root', () => remountReadonly('/'));
  if (plan.hostname !== null) phase('hostname', () => sys.sethostname(plan.hostname ?? ''));
  if (plan.domainname !== null) phase('domainname', () => sys.setdomainname(plan.domainname ?? ''));
  for (const [k, v] of Object.entries(plan.sysctl)) phase(`sysctl ${k}`, () => writeFileSync('/proc/sys/' + k.replace(/\./g, '/'), v));
}

function enterNamespaces(steps: NamespaceStep[]): void {
  // Joins first (by fd, opened before anything changes), then one unshare for the rest.
  // pid is handled by the seed around fork(); it is never unshared here.
  const joins = steps.filter((s) => s.path !== null && s.type !== 'pid');
  const fds = joins.map((s) => ({ s, fd: sys.open(s.path ?? '', sys.O.RDONLY | sys.O.CLOEXEC) }));
  for (const { s, fd } of fds) {
    sys.setns(fd, NS_FLAG[s.type]);
    sys.close(fd);
  }
  let flags = 0;
  for (const s of steps) if (s.path === null && s.type !== 'pid') flags |= NS_FLAG[s.type];
  if (flags) sys.unshare(flags);
}

/**
 * Resolve `dest` inside `root` the way the kernel would after pivot_root: symlinks in
 * the (untrusted) rootfs are followed but clamped to the root, so a link like
 * /etc -> /../../host cannot make a mount land outside the container.
 */
export function secureJoin(root: string, dest: string, maxLinks = 40): string {
  const parts = dest.split('/').filter((p) => p && p !== '.');
  const resolved: string[] = [];
  let links = 0;
  while (parts.length) {
    const part = parts.shift() as string;
    if (part === '..') { resolved.pop(); continue; }
    const candidate = root + '/' + [...resolved, part].join('/');
    let st;
    try { st = lstatSync(candidate); } catch { resolved.push(part); continue; }
    if (st.isSymbolicLink()) {
      if (++links > maxLinks) throw new SyscallError('secure_join', 40, dest);
      const target = readlinkSync(candidate);
      if (target.startsWith('/')) resolved.length = 0;
      parts.unshift(...target.split('/').filter((p) => p && p !== '.'));
      continue;
    }
    resolved.push(part);
  }
  return root + (resolved.length ? '/' + resolved.join('/') : '');
}

function ensureTarget(target: string, asFile: boolean): void {
  if (existsSync(target)) return;
  if (asFile) {
    mkdirSync(target.slice(0, target.lastIndexOf('/')) || '/', { recursive: true });
    closeSync(openSync(target, 'a'));
  } else {
    mkdirSync(target, { recursive: true });
  }
}

function doMount(root: string, m: MountStep, warnings: string[]): void {
  const target = secureJoin(root, m.destination);
  if (m.type === 'cgroup' && m.cgroupV1) return mountCgroupV1(target, m);
  if (m.bind) {
    const srcIsFile = existsSync(m.source) && !statSync(m.source).isDirectory();
    ensureTarget(target, srcIsFile);
    sys.mount(m.source, target, null, m.flags, null);
    if (m.remountFlags) remountBind(target, m.remountFlags);
  } else {
    ensureTarget(target, false);
    try {
      sys.mount(m.source, target, m.type, m.flags, m.data || null);
    } catch (e) {
      // sysfs/mqueue refuse to mount when the namespace they belong to is the host's;
      // fall back to a read-only bind of the host's view, as runc does.
      if (e instanceof SyscallError && e.errno === 1 && (m.type === 'sysfs' || m.type === 'mqueue')) {
        const hostPath = m.type === 'sysfs' ? '/sys' : '/dev/mqueue';
        sys.mount(hostPath, target, null, sys.MS.BIND | sys.MS.REC, null);
        remountBind(target, sys.MS.RDONLY | sys.MS.NOSUID | sys.MS.NODEV | sys.MS.NOEXEC);
        warnings.push(`${m.destination}: ${m.type} bound from host (namespace not private)`);
      } else {
        throw e;
      }
    }
  }
  if (m.propagation) sys.mount(null, target, null, m.propagation, null);
}

function remountBind(target: string, flags: number): void {
  // A remount must keep flags the kernel locked on the source mount; retry with the
  // usual locked ones added if the plain request is refused.
  const base = sys.MS.BIND | sys.MS.REMOUNT;
  const attempts = [flags, flags | sys.MS.NOSUID | sys.MS.NODEV | sys.MS.NOEXEC, flags | sys.MS.NOSUID | sys.MS.NODEV];
  let last: unknown;
  for (const f of attempts) {
    try { sys.mount(null, target, null, base | f, null); return; } catch (e) { last = e; }
  }
  throw last;
}

function mountCgroupV1(target: string, m: MountStep): void {
  ensureTarget(target, false);
  sys.mount('tmpfs', target, 'tmpfs', sys.MS.NOSUID | sys.MS.NODEV | sys.MS.NOEXEC, 'mode=755');
  for (const c of m.cgroupV1 ?? []) {
    const dir = `${target}/${c.name}`;
    mkdirSync(dir, { recursive: true });
    sys.mount(c.hostDir, dir, null, sys.MS.BIND, null);
    remountBind(dir, (m.remountFlags & sys.MS.RDONLY) | sys.MS.NOSUID | sys.MS.NODEV | sys.MS.NOEXEC);
    if (c.name.includes(',')) {
      for (const alias of c.name.split(',')) {
        if (!existsSync(`${target}/${alias}`)) symlinkSync(c.name, `${target}/${alias}`);
      }
    }
  }
  if (m.remountFlags & sys.MS.RDONLY) remountBind(target, sys.MS.RDONLY | sys.MS.NOSUID | sys.MS.NODEV | sys.MS.NOEXEC);
}

const DEFAULT_LINKS: [string, string][] = [
  ['/proc/self/fd', '/dev/fd'],
  ['/proc/self/fd/0', '/dev/stdin'],
  ['/proc/self/fd/1', '/dev/stdout'],
  ['/proc/self/fd/2', '/dev/stderr'],
];

function createDevices(root: string, devices: DeviceNode[], mounts: MountStep[]): void {
  // A /dev we just mounted as tmpfs holds nothing the image controls, so direct children
  // of it need no symlink-safe resolution.
  const freshDev = mounts.some((m) => m.destination === '/dev' && m.type === 'tmpfs');
  const join = (p: string): string => (freshDev && p.lastIndexOf('/') === 4 && p.startsWith('/dev/') ? root + p : secureJoin(root, p));
  for (const d of devices) {
    const target = join(d.path);
    mkdirSync(target.slice(0, target.lastIndexOf('/')), { recursive: true });
    if (existsSync(target)) continue;
    const typeBits = d.type === 'b' ? 0o060000 : d.type === 'p' ? 0o010000 : 0o020000;
    sys.mknod(target, typeBits | (d.mode & 0o7777), d.major, d.minor);
    sys.chown(target, d.uid, d.gid);
  }
  for (const [from, to] of DEFAULT_LINKS) {
    const target = join(to);
    try { symlinkSync(from, target); } catch { /* exists in the image already */ }
  }
  if (mounts.some((m) => m.destination === '/dev/pts')) {
    const ptmx = join('/dev/ptmx');
    try {
      if (existsSync(ptmx) && !lstatSync(ptmx).isSymbolicLink()) {
        writeFileSync(ptmx, '', { flag: 'r+' });
      }
    } catch { /* a device node we cannot touch; leave it */ }
    if (!existsSync(ptmx)) symlinkSync('pts/ptmx', ptmx);
  }
}

function maskPath(path: string): void {
  let st;
  try { st = statSync(path); } catch { return; }
  if (st.isDirectory()) sys.mount('tmpfs', path, 'tmpfs', sys.MS.RDONLY, null);
  else sys.mount('/dev/null', path, null, sys.MS.BIND, null);
}

function readonlyPath(path: string): void {
  if (!existsSync(path)) return;
  sys.mount(path, path, null, sys.MS.BIND | sys.MS.REC, null);
  // keep nosuid/nodev/noexec of the mount it came from, as runc does (statfs flags)
  remountBind(path, sys.MS.RDONLY | sys.MS.REC | lockedFlagsOf(path));
}

/** MS_NOSUID|MS_NODEV|MS_NOEXEC of the mount at `path` (the topmost one), from mountinfo. */
function lockedFlagsOf(path: string): number {
  let flags = 0;
  try {
    for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
      const f = line.split(' ');
      const mp = (f[4] ?? '').replace(/\\(\d{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
      if (mp !== path) continue;
      flags = 0;
      for (const o of (f[5] ?? '').split(',')) {
        if (o === 'nosuid') flags |= sys.MS.NOSUID;
        else if (o === 'nodev') flags |= sys.MS.NODEV;
        else if (o === 'noexec') flags |= sys.MS.NOEXEC;
      }
    }
  } catch {
    /* no /proc: plain read-only */
  }
  return flags;
}

function remountReadonly(path: string): void {
  remountBind(path, sys.MS.RDONLY);
}

// --- exec: join a running container -------------------------------------------------

function joinContainer(plan: ExecPlan): void {
  phase('namespaces', () => {
    // All fds first: once the mount namespace changes, /proc/<pid> on the host is gone.
    const order: NamespaceStep['type'][] = ['user', 'cgroup', 'ipc', 'uts', 'network', 'time', 'mount'];
    const steps = order
      .map((type) => plan.namespaces.find((n) => n.type === type))
      .filter((s): s is NamespaceStep => s !== undefined && s.path !== null);
    const fds = steps.map((s) => ({ s, fd: sys.open(s.path ?? '', sys.O.RDONLY | sys.O.CLOEXEC) }));
    for (const { s, fd } of fds) {
      sys.setns(fd, NS_FLAG[s.type]);
      sys.close(fd);
    }
  });
}

// --- common tail --------------------------------------------------------------------

function applyOomScore(p: ProcessPlan, warnings: string[]): void {
  if (p.oomScoreAdj === null) return;
  try {
    writeFileSync('/proc/self/oom_score_adj', String(p.oomScoreAdj));
  } catch (e) {
    // Lowering the score needs CAP_SYS_RESOURCE, which root lacks on some hosts: run
    // with the inherited score rather than refuse the container.
    warnings.push(`oom_score_adj ${p.oomScoreAdj} not applied: ${(e as Error).message}`);
  }
}

function applyRlimits(p: ProcessPlan): void {
  for (const r of p.rlimits) sys.setrlimit(r.resource, r.soft, r.hard);
}


function finalizeAndExec(p: ProcessPlan, stdio: OpenStdio, path: string): never {
  // Node ignores SIGPIPE and SIGXFSZ; execve would pass that on (before seccomp: it may deny rt_sigaction)
  phase('signals', () => sys.resetSignalsForExec());
  let cwdDone = false;
  phase('cwd', () => {
    try { sys.chdir(p.cwd); cwdDone = true; } catch (e) {
      if (!(e instanceof SyscallError && e.errno === 13)) throw e;
    }
  });
  // Without no_new_privileges a filter can only be installed while CAP_SYS_ADMIN is held,
  // so it goes in before the capability drop; with it, as late as possible.
  const earlySeccomp = p.seccomp !== null && !p.noNewPrivileges;
  if (earlySeccomp && p.seccomp) {
    const f = p.seccomp;
    phase('seccomp', () => sys.seccompInstall(f.bpf, f.flags));
  }
  phase('capabilities', () => {
    for (let cap = 0; cap <= 63; cap++) {
      if ((p.caps.bounding >> BigInt(cap)) & 1n) continue;
      try { sys.prctl(sys.PR.CAPBSET_DROP, cap); } catch (e) {
        if (e instanceof SyscallError && e.errno === 22) break; // past the last cap
        throw e;
      }
    }
  });
  phase('user', () => {
    sys.prctl(sys.PR.SET_KEEPCAPS, 1);
    sys.setgroups([...new Set(p.additionalGids)]);
    sys.setresgid(p.gid);
    sys.setresuid(p.uid);
    sys.prctl(sys.PR.SET_KEEPCAPS, 0);
  });
  if (!cwdDone) phase('cwd', () => sys.chdir(p.cwd));
  phase('capabilities', () => {
    sys.capset(p.caps.effective, p.caps.permitted, p.caps.inheritable);
    sys.prctl(sys.PR.CAP_AMBIENT, sys.PR_CAP_AMBIENT_CLEAR_ALL);
    for (const cap of p.caps.ambient) {
      try { sys.prctl(sys.PR.CAP_AMBIENT, sys.PR_CAP_AMBIENT_RAISE, cap); } catch { /* not in inheritable+permitted */ }
    }
  });
  sys.umask(p.umask);
  if (p.noNewPrivileges) phase('no_new_privs', () => sys.prctl(sys.PR.SET_NO_NEW_PRIVS, 1));
  if (p.seccomp && !earlySeccomp) {
    const f = p.seccomp;
    phase('seccomp', () => sys.seccompInstall(f.bpf, f.flags));
  }
  phase('stdio', () => {
    sys.dup2(stdio.fds[0], 0);
    sys.dup2(stdio.fds[1], 1);
    sys.dup2(stdio.fds[2], 2);
    if (stdio.terminal) sys.ioctl(0, sys.TIOCSCTTY, 0);
  });
  return phase('exec', () => sys.execve(path, p.args, p.env));
}

/**
 * process.env as runc's init hands it to execve: entries set one by one (a later duplicate
 * replaces the earlier one in place), then HOME, when unset or empty, from the user's
 * /etc/passwd entry in the container ("/" without one).
 */
export function execEnv(env: string[], uid: number): string[] {
  const out: string[] = [];
  const at = new Map<string, number>();
  for (const kv of env) {
    const eq = kv.indexOf('=');
    const k = eq < 0 ? kv : kv.slice(0, eq);
    const i = at.get(k);
    if (i !== undefined) out[i] = kv;
    else { at.set(k, out.length); out.push(kv); }
  }
  const h = at.get('HOME');
  if (h === undefined || out[h] === 'HOME=') {
    const kv = `HOME=${homeOf(uid)}`;
    if (h === undefined) out.push(kv);
    else out[h] = kv;
  }
  return out;
}

function homeOf(uid: number): string {
  let text: string;
  try { text = readFileSync('/etc/passwd', 'utf8'); } catch { return '/'; }
  for (const line of text.split('\n')) {
    const f = line.trim().split(':');
    if (f.length >= 6 && f[2] !== '' && Number(f[2]) === uid) return f[5] ?? '/';
  }
  return '/';
}

/**
 * PATH lookup with the container's PATH (not the seed's), relative to the new root. Like
 * runc (Go's exec.LookPath): without a PATH, a name without a slash is not found.
 */
export function lookPath(file: string, env: string[]): string {
  if (!file) throw new SyscallError('exec', 2, 'empty args');
  if (file.includes('/')) {
    let st;
    try { st = statSync(file); } catch { throw new SyscallError('exec', 2, `${file}: no such file`); }
    if (!st.isFile()) throw new SyscallError('exec', 13, `${file} is not a regular file`);
    try { accessSync(file, fsConst.X_OK); } catch { throw new SyscallError('exec', 13, `${file} is not executable`); }
    return file;
  }
  const pathVar = env.find((e) => e.startsWith('PATH='))?.slice(5) ?? '';
  for (const dir of pathVar ? pathVar.split(':') : []) {
    const candidate = `${dir || '.'}/${file}`;
    try {
      accessSync(candidate, fsConst.X_OK);
      if (statSync(candidate).isFile()) return candidate;
    } catch { /* next */ }
  }
  throw new SyscallError('exec', 2, `"${file}": executable file not found in $PATH`);
}
