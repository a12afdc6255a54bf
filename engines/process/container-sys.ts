// Everything a container's init (container-init.ts) does to the system, as one interface
// with two implementations: the real one (sys/libc.ts and node:fs, call for call what
// container-init made before it had this seam) and a recording one that only writes down
// what would be done. The recording turns "plan -> set-up sequence" into plain data, so the
// order the container's safety depends on (mounts before pivot_root, masks after it,
// credentials before capabilities, seccomp last) is unit-tested without root, as
// seeds/sandbox-sys.ts does for function sandboxes.
import { accessSync, closeSync, constants as fsConstants, existsSync, fstatSync, lstatSync, mkdirSync, openSync, readdirSync, readFileSync, readlinkSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import * as sys from '../../sys/libc.js';
import { PR, RESOLVE } from '../../sys/constants.js';
import { SyscallError, errnoName } from '../../sys/errors.js';
import { OutputTail } from '../../protocols/oci/hooks.js';

/** access(2) mode for "may execute" (container-init has no other use for node:fs). */
export const X_OK: number = fsConstants.X_OK;

/** What container-init asks of a stat result: node's fs.Stats satisfies it. */
export interface FileStat {
  isDirectory(): boolean;
  isFile(): boolean;
  isSymbolicLink(): boolean;
  /** st_mode: the file type and permission bits */
  mode: number;
}

/**
 * Named after the syscalls they make. The node:fs ones throw node's errors (with `code`),
 * the others SyscallError, as before: container-init tells them apart.
 */
export interface ContainerSys {
  // --- process --------------------------------------------------------------------
  setsid(): number;
  /** getpid(2): this process's pid in its own pid namespace (whatever /proc is mounted there) */
  getpid(): number;
  /** close_range(first, ~0, cloexec ? CLOSE_RANGE_CLOEXEC : 0) */
  closeFrom(first: number, cloexec: boolean): void;
  /** the fd of Node's IPC channel to spored, when this process inherited one */
  ipcChannelFd(): number | undefined;
  /**
   * Every open fd but `keep` becomes /dev/null (dup3 over it, close-on-exec): what the seed
   * held is gone from this process, not merely closed at execve, while the numbers stay
   * taken (libuv may still write its async eventfd from here: to /dev/null now).
   */
  sealInheritedFds(keep: readonly number[]): void;
  exit(code: number): never;
  /** SIG_DFL for every ignored signal and an empty signal mask (sys.resetSignalsForExec) */
  resetSignalsForExec(): void;
  /** sys.cacheIgnoredSignals: the ignored set read now, for resetSignalsForExec later */
  cacheIgnoredSignals(): void;
  execve(path: string, argv: string[], envp: string[]): never;
  // --- file descriptors -----------------------------------------------------------
  open(path: string, flags: number): number;
  close(fd: number): void;
  dup2(from: number, to: number): void;
  dup3(from: number, to: number, flags: number): void;
  /** fcntl(F_DUPFD_CLOEXEC): a copy of `fd` at the lowest free number >= `min` (never replaces one) */
  dupAt(fd: number, min: number): number;
  setNonblock(fd: number, on: boolean): void;
  read(fd: number, n: number): Buffer;
  write(fd: number, data: Buffer): void;
  ioctl(fd: number, req: number, arg: number): number;
  /** sys.openPtyPair: a master and its slave on the devpts behind `ptmx` (both close-on-exec) */
  openPtyPair(ptmx: string, size?: { rows: number; cols: number }): { master: number; slave: number };
  /** fchown(2); -1 keeps that id */
  fchown(fd: number, uid: number, gid: number): void;
  // --- namespaces, mounts, the root -----------------------------------------------
  unshare(flags: number): void;
  setns(fd: number, nstype: number): void;
  mount(source: string | null, target: string, fstype: string | null, flags: number, data: string | null): void;
  /**
   * mount(2) onto `target`, a path at or below `root`, resolved again at the moment of the
   * mount: opened with openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS) from `root`, then
   * mounted onto /proc/self/fd/<fd>. A path component the container (or another one sharing
   * a volume with it) swapped for a symlink after secureJoin resolved it cannot take the
   * mount out of the root (runc's fix of CVE-2021-30465 does the same). Recorded as a mount.
   */
  mountInRoot(root: string, source: string | null, target: string, fstype: string | null, flags: number, data: string | null): void;
  umount2(target: string, flags: number): void;
  /** mount_setattr(AT_RECURSIVE) on a path below `root`, resolved in it as mountInRoot resolves its target */
  mountSetattrInRoot(root: string, target: string, set: number, clr: number): void;
  pivotRoot(newRoot: string, putOld: string): void;
  chdir(path: string): void;
  sethostname(name: string): void;
  setdomainname(name: string): void;
  /** fork(2) after sys.prepareFork (this process is a single-threaded fork of the seed) */
  fork(): number;
  /**
   * Run a program to its end (an OCI hook): posix_spawn of `path` with `argv` and `envp`,
   * `input` on its stdin, stdout and stderr captured together (the last 64 KiB kept). Killed
   * (SIGKILL) after `timeoutMs` (null: no limit). Returns its wait status, or null when it
   * was killed for the time; throws SyscallError when it cannot be started (ENOENT, EACCES).
   */
  runProgram(path: string, argv: string[], envp: string[], input: Buffer, timeoutMs: number | null): { status: number | null; output: string };
  /** bring `lo` up in the current network namespace (sys.loopbackUp) */
  loopbackUp(): void;
  /** keyctl(KEYCTL_JOIN_SESSION_KEYRING, name) (sys.joinSessionKeyring): the keyring's serial */
  joinSessionKeyring(name: string): number;
  /** add permission bits to a key (sys.addKeyPermission) */
  addKeyPermission(serial: number, bits: number): void;
  mknod(path: string, mode: number, major: number, minor: number): void;
  chown(path: string, uid: number, gid: number): void;
  // --- files (node:fs) ------------------------------------------------------------
  /** mkdir -p; mode undefined: node's default (0o777 before the umask) */
  mkdir(path: string, mode?: number): void;
  /**
   * After pivot_root, in the container's own tree: mkdir -p of `path` and chdir into a
   * directory, each component looked up without magic links (/proc/<pid>/root and friends:
   * a container's root could aim one at a stopped process still in the host's mount
   * namespace) and with the process's root as the limit (openat2 RESOLVE_NO_MAGICLINKS |
   * RESOLVE_IN_ROOT). Errors as SyscallError (ELOOP for a magic link).
   */
  mkdirInRoot(path: string, mode: number): void;
  chdirInRoot(path: string): void;
  /** writeFileSync; flag undefined: node's default ('w') */
  writeFile(path: string, content: string, flag?: string): void;
  /** create the file if missing (mode 0666 less the umask), leave it as it is otherwise: an open O_RDONLY|O_CREAT|O_NONBLOCK, closed */
  touch(path: string): void;
  symlink(target: string, path: string): void;
  exists(path: string): boolean;
  stat(path: string): FileStat;
  lstat(path: string): FileStat;
  readlink(path: string): string;
  access(path: string, mode: number): void;
  readFile(path: string): string;
  /**
   * A regular file of the container's own, as text (utf8), resolved in the process's root
   * (openat2 RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS, O_NONBLOCK: a FIFO there does not
   * hang the set-up), and read up to the size fstat gives it (none for a /proc file).
   * Throws when it is not there, is not a regular file (a link to /dev/zero, a FIFO) or is
   * longer than `maxBytes`.
   */
  readFileInRoot(path: string, maxBytes: number): string;
  // --- credentials, capabilities, limits, seccomp ---------------------------------
  prctl(option: number, a?: number, b?: number): number;
  setgroups(gids: number[]): void;
  setresgid(gid: number): void;
  setresuid(uid: number): void;
  capset(effective: bigint, permitted: bigint, inheritable: bigint): void;
  setrlimit(resource: number, soft: bigint, hard: bigint): void;
  umask(mask: number): number;
  seccomp(bpf: Buffer, flags: number): void;
}

export const realContainerSys: ContainerSys = {
  setsid: () => sys.setsid(),
  getpid: () => sys.getpid(),
  closeFrom: (first, cloexec) => sys.closeFrom(first, cloexec),
  ipcChannelFd: () => (process as unknown as { channel?: { fd?: number } }).channel?.fd,
  sealInheritedFds: (keep) => {
    const devnull = sys.open('/dev/null', sys.O.RDWR | sys.O.CLOEXEC);
    try {
      for (const name of readdirSync('/proc/self/fd')) {
        const fd = Number(name);
        if (fd === devnull || keep.includes(fd)) continue;
        // the listing's own fd is closed by now: dup3 onto it just takes the number
        sys.dup3(devnull, fd, sys.O.CLOEXEC);
      }
    } finally {
      sys.close(devnull);
    }
  },
  exit: (code) => sys.exit(code),
  resetSignalsForExec: () => sys.resetSignalsForExec(),
  cacheIgnoredSignals: () => sys.cacheIgnoredSignals(),
  execve: (path, argv, envp) => sys.execve(path, argv, envp),
  open: (path, flags) => sys.open(path, flags),
  close: (fd) => sys.close(fd),
  dup2: (from, to) => sys.dup2(from, to),
  dup3: (from, to, flags) => sys.dup3(from, to, flags),
  dupAt: (fd, min) => sys.dupAt(fd, min),
  setNonblock: (fd, on) => sys.setNonblock(fd, on),
  read: (fd, n) => sys.read(fd, n),
  write: (fd, data) => sys.write(fd, data),
  ioctl: (fd, req, arg) => sys.ioctl(fd, req, arg),
  openPtyPair: (ptmx, size) => sys.openPtyPair(ptmx, size),
  fchown: (fd, uid, gid) => sys.fchown(fd, uid, gid),
  unshare: (flags) => sys.unshare(flags),
  setns: (fd, nstype) => sys.setns(fd, nstype),
  mount: (source, target, fstype, flags, data) => sys.mount(source, target, fstype, flags, data),
  mountInRoot: (root, source, target, fstype, flags, data) => atPathInRoot('mount', root, target, (at) => sys.mount(source, at, fstype, flags, data)),
  umount2: (target, flags) => sys.umount2(target, flags),
  mountSetattrInRoot: (root, target, set, clr) => atPathInRoot('mount_setattr', root, target, (at) => sys.mountSetattrRecursive(at, set, clr)),
  pivotRoot: (newRoot, putOld) => sys.pivotRoot(newRoot, putOld),
  chdir: (path) => sys.chdir(path),
  sethostname: (name) => sys.sethostname(name),
  setdomainname: (name) => sys.setdomainname(name),
  fork: () => { sys.prepareFork(); return sys.fork(); },
  runProgram: (path, argv, envp, input, timeoutMs) => runProgramSync(path, argv, envp, input, timeoutMs),
  loopbackUp: () => sys.loopbackUp(),
  joinSessionKeyring: (name) => sys.joinSessionKeyring(name),
  addKeyPermission: (serial, bits) => sys.addKeyPermission(serial, bits),
  mknod: (path, mode, major, minor) => sys.mknod(path, mode, major, minor),
  chown: (path, uid, gid) => sys.chown(path, uid, gid),
  mkdir: (path, mode) => mkdirP(path, mode ?? 0o777),
  mkdirInRoot: (path, mode) => mkdirInRoot(path, mode),
  chdirInRoot: (path) => {
    const root = openRoot();
    let fd: number;
    try { fd = sys.openat2(root, path, sys.O.PATH | sys.O.DIRECTORY | sys.O.CLOEXEC, IN_ROOT); } finally { sys.close(root); }
    try { sys.fchdir(fd); } finally { sys.close(fd); }
  },
  writeFile: (path, content, flag) => (flag === undefined ? writeFileSync(path, content) : writeFileSync(path, content, { flag })),
  // read-only and non-blocking: a FIFO the image put there must not stall the set-up (a
  // write open waits for a reader), and an existing file on a read-only mount still opens
  touch: (path) => sys.close(sys.open(path, sys.O.RDONLY | sys.O.CREAT | sys.O.NONBLOCK | sys.O.NOCTTY | sys.O.CLOEXEC, 0o666)),
  symlink: (target, path) => symlinkSync(target, path),
  exists: (path) => existsSync(path),
  stat: (path) => statSync(path),
  lstat: (path) => lstatSync(path),
  readlink: (path) => readlinkSync(path),
  access: (path, mode) => accessSync(path, mode),
  readFile: (path) => readFileSync(path, 'utf8'),
  readFileInRoot: (path, maxBytes) => {
    const root = openRoot();
    let fd: number;
    try { fd = sys.openat2(root, path, sys.O.RDONLY | sys.O.NONBLOCK | sys.O.CLOEXEC, IN_ROOT); } finally { sys.close(root); }
    try {
      const st = fstatSync(fd);
      if (!st.isFile()) throw new SyscallError('read', EINVAL, `${path} is not a regular file`);
      if (st.size > maxBytes) throw new SyscallError('read', EFBIG, `${path} is longer than ${maxBytes} bytes`);
      // at most the size it says it has: a proc file says 0 and is not read at all (reading
      // /proc/kmsg as root would drain the host's kernel log), one that grows meanwhile is cut
      const parts: Buffer[] = [];
      let got = 0;
      while (got < st.size) {
        const b = sys.read(fd, Math.min(65536, st.size - got));
        if (b.length === 0) break;
        got += b.length;
        parts.push(b);
      }
      return Buffer.concat(parts).toString('utf8');
    } finally {
      sys.close(fd);
    }
  },
  prctl: (option, a, b) => sys.prctl(option, a, b),
  setgroups: (gids) => sys.setgroups(gids),
  setresgid: (gid) => sys.setresgid(gid),
  setresuid: (uid) => sys.setresuid(uid),
  capset: (e, p, i) => sys.capset(e, p, i),
  setrlimit: (resource, soft, hard) => sys.setrlimit(resource, soft, hard),
  umask: (mask) => sys.umask(mask),
  seccomp: (bpf, flags) => sys.seccompInstall(bpf, flags),
};

/**
 * ContainerSys.runProgram for real, in a process with no event loop to wait on (a container's
 * init): the input is in place before the program starts (nothing here can take a SIGPIPE
 * once the signals are back at their defaults, or block on a writer); then poll on the output
 * pipe and a non-blocking waitpid until the program exits or its time is up.
 */
function runProgramSync(path: string, argv: string[], envp: string[], input: Buffer, timeoutMs: number | null): { status: number | null; output: string } {
  // The input in a memfd, read from its start: any size (a pipe above pipe-max-size needs
  // CAP_SYS_RESOURCE, which a startContainer hook's process no longer has), and no writer
  // that could take a SIGPIPE or block
  // (a seccomp filter that denies memfd_create: a pipe, which holds what pipe-max-size allows)
  let inFd: number;
  let viaPipe = false;
  try { inFd = sys.memfdCreate('spore-hook-state', 1 /* MFD_CLOEXEC */); } catch {
    const [r, w] = sys.pipe();
    try {
      if (input.length > 65536) sys.setPipeSize(w, input.length);
      sys.write(w, input);
    } finally { sys.close(w); }
    inFd = r;
    viaPipe = true;
  }
  const [outR, outW] = sys.pipe();
  let pid: number;
  try {
    if (!viaPipe) {
      sys.write(inFd, input);
      sys.seekSet(inFd, 0);
    }
    pid = sys.spawnProgram(path, argv, envp, [inFd, outW, outW]);
  } catch (e) {
    sys.close(outR);
    throw e;
  } finally {
    for (const fd of [inFd, outW]) sys.close(fd);
  }
  const out = new OutputTail();
  let eof = false;
  const drain = (): void => {
    while (!eof && sys.pollIn(outR, 0)) {
      const b = sys.read(outR, 65536);
      if (b.length === 0) { eof = true; break; }
      out.push(b);
    }
  };
  const until = timeoutMs === null ? Infinity : Date.now() + timeoutMs;
  const nap = new Int32Array(new SharedArrayBuffer(4));
  try {
    for (;;) {
      drain();
      const done = sys.reapPid(pid);
      if (done) { drain(); return { status: done.status, output: out.text() }; }
      if (Date.now() >= until) {
        try { sys.kill(pid, 9); } catch { /* gone meanwhile */ }
        sys.reapPid(pid, true);
        drain();
        return { status: null, output: out.text() };
      }
      // output wakes the wait; an exit with the pipe still held elsewhere is seen within 2 ms
      if (eof) Atomics.wait(nap, 0, 0, 2); else sys.pollIn(outR, 2);
    }
  } finally {
    sys.close(outR);
  }
}

// --- recording ------------------------------------------------------------------------

/** JSON values only, so a sequence can be printed, diffed and stored as it is. */
export type SysArg = string | number | boolean | null | number[] | string[];

/** One recorded call: its syscall name and arguments; `errno` when it was made to fail. */
export interface SysCall {
  call: string;
  args: SysArg[];
  errno?: number;
}

/**
 * What the recording's file queries see: host paths (as before pivot_root) to a directory,
 * a regular file (optionally with content), a device node or a symlink. Parents of an entry
 * exist as directories without being listed.
 */
export type FakeEntry = 'dir' | 'file' | 'dev' | { content: string } | { link: string };

export interface RecordingOptions {
  files?: Record<string, FakeEntry>;
  /** fds open when the recording starts (default 0, 1, 2): open() answers the lowest free one */
  fds?: number[];
  /** what read() on the start pipe answers: true (default) one byte, Start; false EOF, abort */
  start?: boolean;
  /** highest capability the "kernel" knows: PR_CAPBSET_DROP of a higher one is EINVAL (default 40) */
  lastCap?: number;
  ipcChannelFd?: number;
  /**
   * bytes read() serves from these fds, in order, then EOF (a container shell's plan pipe);
   * reads from any other fd answer as the start pipe does (`start`)
   */
  feed?: Record<number, Buffer>;
  /** fault injection: an errno for the call to fail with (it is recorded with it), or undefined */
  fail?: (c: SysCall) => number | undefined;
  /** how runProgram's programs end (default: exit status 0, no output) */
  program?: (path: string, argv: string[]) => { status: number | null; output: string };
}

/**
 * Thrown by the recording's exit(), and by every call after it. A real _exit() never
 * returns; the recording's has to unwind, through container-init's error path (which
 * would report and exit(127)), so nothing after the first exit is recorded and the test
 * sees the code that process would have ended with.
 */
/**
 * `fn` with `target` (a path below `root`) resolved inside `root` as the kernel resolves it
 * there (openat2 RESOLVE_IN_ROOT: a symlink in the image cannot lead out), given as
 * /proc/self/fd/<fd> of an O_PATH handle. `syscall` names the call in the error for a target
 * outside `root`.
 */
function atPathInRoot(syscall: string, root: string, target: string, fn: (at: string) => void): void {
  if (target !== root && !target.startsWith(`${root}/`)) throw new SyscallError(syscall, EINVAL, `${target} is not below ${root}`);
  const rootFd = sys.open(root, sys.O.PATH | sys.O.DIRECTORY | sys.O.CLOEXEC);
  let fd: number;
  try {
    fd = sys.openat2(rootFd, target === root ? '.' : target.slice(root.length + 1), sys.O.PATH | sys.O.CLOEXEC, IN_ROOT);
  } finally {
    sys.close(rootFd);
  }
  try {
    fn(`/proc/self/fd/${fd}`);
  } finally {
    sys.close(fd);
  }
}

/**
 * mkdir -p in one pass, parent first only when needed. Not node's recursive mkdirSync: where a
 * parent exists but cannot hold the child (a path inside /proc: mkdir says ENOENT) it retries
 * forever, and an image or a mount list can aim a mount there (a Create that never answered).
 * Errors as node:fs's (ENOTDIR when a part is not a directory).
 */
export function mkdirP(path: string, mode: number): void {
  try {
    mkdirSync(path, { mode });
    return;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return existingDir(path);
    if (code !== 'ENOENT') throw e;
  }
  const parent = dirname(path);
  if (parent === path) throw Object.assign(new Error(`ENOENT: no such file or directory, mkdir '${path}'`), { code: 'ENOENT', errno: -2, syscall: 'mkdir', path });
  mkdirP(parent, mode);
  // once: ENOENT again, with the parent there, is the answer
  try { mkdirSync(path, { mode }); } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    existingDir(path);
  }
}

function existingDir(path: string): void {
  if (!statSync(path).isDirectory()) throw Object.assign(new Error(`ENOTDIR: not a directory, mkdir '${path}'`), { code: 'ENOTDIR', errno: -20, syscall: 'mkdir', path });
}

const AT_FDCWD = -100;
const IN_ROOT = RESOLVE.NO_MAGICLINKS | RESOLVE.IN_ROOT;

/** the process's root directory (RESOLVE_IN_ROOT then keeps every lookup under it) */
const openRoot = (): number => sys.openat2(AT_FDCWD, '/', sys.O.PATH | sys.O.DIRECTORY | sys.O.CLOEXEC, 0);

function mkdirInRoot(path: string, mode: number): void {
  const open = (dirfd: number, name: string): number => sys.openat2(dirfd, name, sys.O.PATH | sys.O.DIRECTORY | sys.O.CLOEXEC, IN_ROOT);
  let dir = openRoot();
  try {
    for (const part of path.split('/').filter((x) => x && x !== '.')) {
      let next: number;
      try { next = open(dir, part); } catch (e) {
        if (!(e instanceof SyscallError && e.errno === 2)) throw e;
        try { sys.mkdirat(dir, part, mode); } catch (m) { if (!(m instanceof SyscallError && m.errno === 17)) throw m; }
        next = open(dir, part);
      }
      sys.close(dir);
      dir = next;
    }
  } finally {
    sys.close(dir);
  }
}

export class RecordedExit extends Error {
  constructor(readonly code: number) { super(`exit(${code})`); }
}

/** Thrown once the recording's execve() has "succeeded", and by every call after it: a real execve does not return. */
export class RecordedExec extends Error {
  constructor(readonly path: string, readonly argv: string[], readonly envp: string[]) { super(`execve(${path})`); }
}

const hex = (v: bigint): string => `0x${v.toString(16)}`;

// errno values the recording's own model raises
const ENOENT = 2, EEXIST = 17, EINVAL = 22, ENOTDIR = 20, ELOOP = 40, EACCES = 13, EFBIG = 27;

/**
 * Records instead of calling. Effects go to `calls` in order; the file queries (exists,
 * stat, lstat, readlink, access, readFile) are answered from `files` and go to `reads`.
 * The fake tree follows the recorded effects that create things (mkdir, touch, writeFile,
 * symlink, mknod) and pivot_root (after it, paths are looked up under the new root); it
 * does not model mounts: a mount neither hides nor shows anything to later queries.
 */
export class RecordingContainerSys implements ContainerSys {
  readonly calls: SysCall[] = [];
  readonly reads: SysCall[] = [];
  private readonly files = new Map<string, FakeEntry>();
  private readonly openFds: Set<number>;
  private readonly fed = new Map<number, Buffer>();
  private root = '/';
  private cwd = '/';
  /** set by execve or exit: the process is gone, nothing after it may be recorded */
  private ended: RecordedExec | RecordedExit | null = null;

  constructor(private readonly opts: RecordingOptions = {}) {
    for (const [p, e] of Object.entries(opts.files ?? {})) this.files.set(normalize(p), e);
    this.openFds = new Set(opts.fds ?? [0, 1, 2]);
    for (const [fd, bytes] of Object.entries(opts.feed ?? {})) this.fed.set(Number(fd), bytes);
  }

  /**
   * Records an effect. It fails, recorded with its errno, when the fake tree says so
   * (`modelErrno`) or `fail` does: as node's error for the node:fs calls (`fsPath` given),
   * as SyscallError for the others.
   */
  private rec(call: string, args: SysArg[], fsPath?: string, modelErrno?: number): void {
    if (this.ended) throw this.ended;
    const c: SysCall = { call, args };
    const errno = modelErrno ?? this.opts.fail?.(c);
    if (errno !== undefined) {
      c.errno = errno;
      this.calls.push(c);
      throw fsPath !== undefined ? fsError(call, errno, fsPath) : new SyscallError(call, errno, String(args[0]));
    }
    this.calls.push(c);
  }

  private query(call: string, args: SysArg[]): void {
    if (this.ended) throw this.ended;
    this.reads.push({ call, args });
  }

  // paths: the process's view (relative to cwd, under the current root) -> the fake tree's key
  private view(p: string): string {
    return normalize(p.startsWith('/') ? p : `${this.cwd}/${p}`);
  }

  private host(view: string): string {
    if (this.root === '/') return view;
    return view === '/' ? this.root : this.root + view;
  }

  private kind(hostPath: string): FakeEntry | undefined {
    const e = this.files.get(hostPath);
    if (e !== undefined) return e;
    if (hostPath === '/') return 'dir';
    const prefix = `${hostPath}/`;
    for (const k of this.files.keys()) if (k.startsWith(prefix)) return 'dir';
    return undefined;
  }

  /** The host key `p` names, symlinks followed (the last one only when `followLast`), or an errno. */
  private resolve(p: string, followLast: boolean): string | number {
    const parts = this.view(p).split('/').filter((x) => x);
    const done: string[] = [];
    let links = 0;
    while (parts.length) {
      const part = parts.shift() as string;
      if (part === '..') { done.pop(); continue; }
      const at = this.host(`/${[...done, part].join('/')}`);
      const e = this.kind(at);
      if (e === undefined) return parts.length ? ENOENT : at;
      if (typeof e === 'object' && 'link' in e && (parts.length > 0 || followLast)) {
        if (++links > 40) return ELOOP;
        if (e.link.startsWith('/')) done.length = 0;
        parts.unshift(...e.link.split('/').filter((x) => x && x !== '.'));
        continue;
      }
      if (parts.length && e !== 'dir') return ENOTDIR;
      done.push(part);
    }
    return this.host(`/${done.join('/')}`);
  }

  private entryOf(call: string, p: string, followLast: boolean): FakeEntry {
    const at = this.resolve(p, followLast);
    const e = typeof at === 'string' ? this.kind(at) : undefined;
    if (e === undefined) throw fsError(call, typeof at === 'number' ? at : ENOENT, p);
    return e;
  }

  /** For a call that makes `p`: the host key it makes, or the errno it fails with. */
  private target(p: string): string | number {
    const at = this.resolve(p, false);
    if (typeof at === 'number') return at;
    return this.kind(at) === undefined ? at : EEXIST;
  }

  // --- process
  setsid(): number { this.rec('setsid', []); return 1; }
  /** pid 1: a container's init in its new pid namespace (queried, not recorded) */
  getpid(): number { this.query('getpid', []); return 1; }
  closeFrom(first: number, cloexec: boolean): void { this.rec('close_range', [first, cloexec]); }
  ipcChannelFd(): number | undefined { return this.opts.ipcChannelFd; }
  sealInheritedFds(keep: readonly number[]): void { this.rec('seal_fds', [...keep]); }
  exit(code: number): never {
    if (this.ended) throw this.ended;
    this.calls.push({ call: 'exit', args: [code] });
    this.ended = new RecordedExit(code);
    throw this.ended;
  }
  resetSignalsForExec(): void { this.rec('reset_signals', []); }
  cacheIgnoredSignals(): void { this.rec('cache_ignored_signals', []); }
  execve(path: string, argv: string[], envp: string[]): never {
    this.rec('execve', [path, argv, envp]);
    this.ended = new RecordedExec(path, argv, envp);
    throw this.ended;
  }

  // --- file descriptors
  open(path: string, flags: number): number {
    this.rec('open', [path, flags]);
    let fd = 0;
    while (this.openFds.has(fd)) fd++;
    this.openFds.add(fd);
    return fd;
  }
  close(fd: number): void { this.rec('close', [fd]); this.openFds.delete(fd); }
  dup2(from: number, to: number): void { this.rec('dup2', [from, to]); this.openFds.add(to); }
  dup3(from: number, to: number, flags: number): void { this.rec('dup3', [from, to, flags]); this.openFds.add(to); }
  dupAt(fd: number, min: number): number {
    this.rec('dup_at', [fd, min]);
    let to = min;
    while (this.openFds.has(to)) to++;
    this.openFds.add(to);
    return to;
  }
  setNonblock(fd: number, on: boolean): void { this.rec('set_nonblock', [fd, on]); }
  read(fd: number, n: number): Buffer {
    this.rec('read', [fd, n]);
    const fed = this.fed.get(fd);
    if (fed !== undefined) {
      const out = fed.subarray(0, n);
      this.fed.set(fd, fed.subarray(out.length));
      return Buffer.from(out);
    }
    return this.opts.start === false ? Buffer.alloc(0) : Buffer.from([1]);
  }
  write(fd: number, data: Buffer): void { this.rec('write', [fd, data.toString('utf8')]); }
  ioctl(fd: number, req: number, arg: number): number { this.rec('ioctl', [fd, req, arg]); return 0; }
  fchown(fd: number, uid: number, gid: number): void { this.rec('fchown', [fd, uid, gid]); }
  openPtyPair(ptmx: string, size?: { rows: number; cols: number }): { master: number; slave: number } {
    this.rec('openpty', [ptmx, size ? `${size.rows}x${size.cols}` : null]);
    const next = (): number => { let fd = 0; while (this.openFds.has(fd)) fd++; this.openFds.add(fd); return fd; };
    const master = next();
    return { master, slave: next() };
  }

  // --- namespaces, mounts, the root
  unshare(flags: number): void { this.rec('unshare', [flags]); }
  setns(fd: number, nstype: number): void { this.rec('setns', [fd, nstype]); }
  mount(source: string | null, target: string, fstype: string | null, flags: number, data: string | null): void {
    this.rec('mount', [source, target, fstype, flags, data]);
  }
  mountInRoot(_root: string, source: string | null, target: string, fstype: string | null, flags: number, data: string | null): void {
    this.mount(source, target, fstype, flags, data);
  }
  umount2(target: string, flags: number): void { this.rec('umount2', [target, flags]); }
  mountSetattrInRoot(_root: string, target: string, set: number, clr: number): void { this.rec('mount_setattr', [target, set, clr]); }
  pivotRoot(newRoot: string, putOld: string): void {
    this.rec('pivot_root', [newRoot, putOld]);
    this.root = this.host(this.view(newRoot));
    this.cwd = '/';
  }
  chdir(path: string): void {
    this.rec('chdir', [path]);
    this.cwd = this.view(path);
  }
  sethostname(name: string): void { this.rec('sethostname', [name]); }
  setdomainname(name: string): void { this.rec('setdomainname', [name]); }
  loopbackUp(): void { this.rec('loopback_up', []); }
  /** records the fork and goes on as the child (what follows a fork in the code is the child's) */
  fork(): number { this.rec('fork', []); return 0; }
  /** recorded as `run`; ends as `program` says (`fail` makes it fail to start) */
  runProgram(path: string, argv: string[], envp: string[], input: Buffer, timeoutMs: number | null): { status: number | null; output: string } {
    this.rec('run', [path, argv, envp, input.toString('utf8'), timeoutMs]);
    return this.opts.program?.(path, argv) ?? { status: 0, output: '' };
  }
  mkdirInRoot(path: string, mode: number): void { this.mkdir(path, mode); }
  chdirInRoot(path: string): void { this.chdir(path); }
  joinSessionKeyring(name: string): number { this.rec('join_session_keyring', [name]); return 1000; }
  addKeyPermission(serial: number, bits: number): void { this.rec('add_key_permission', [serial, bits]); }
  mknod(path: string, mode: number, major: number, minor: number): void {
    const at = this.target(path);
    this.rec('mknod', [path, mode, major, minor], undefined, typeof at === 'number' ? at : undefined);
    this.files.set(at as string, 'dev');
  }
  chown(path: string, uid: number, gid: number): void { this.rec('chown', [path, uid, gid]); }

  // --- files
  mkdir(path: string, mode?: number): void {
    this.rec('mkdir', mode === undefined ? [path] : [path, mode], path);
    // -p: every missing component, each looked up (symlinks followed) as the kernel would
    const parts = this.view(path).split('/').filter((x) => x);
    for (let i = 1; i <= parts.length; i++) {
      const at = this.resolve(`/${parts.slice(0, i).join('/')}`, true);
      if (typeof at === 'string' && this.kind(at) === undefined) this.files.set(at, 'dir');
    }
  }
  writeFile(path: string, content: string, flag?: string): void {
    const at = this.resolve(path, true);
    const missing = typeof at === 'number' || this.kind(at) === undefined;
    this.rec('write_file', flag === undefined ? [path, content] : [path, content, flag], path, missing && flag === 'r+' ? ENOENT : undefined);
    if (missing && typeof at === 'string') this.files.set(at, { content });
  }
  touch(path: string): void {
    this.rec('touch', [path], path);
    const at = this.resolve(path, true);
    if (typeof at === 'string' && this.kind(at) === undefined) this.files.set(at, 'file');
  }
  symlink(target: string, path: string): void {
    const at = this.target(path);
    this.rec('symlink', [target, path], path, typeof at === 'number' ? at : undefined);
    this.files.set(at as string, { link: target });
  }
  exists(path: string): boolean {
    this.query('exists', [path]);
    const at = this.resolve(path, true);
    return typeof at === 'string' && this.kind(at) !== undefined;
  }
  stat(path: string): FileStat {
    this.query('stat', [path]);
    return statOf(this.entryOf('stat', path, true));
  }
  lstat(path: string): FileStat {
    this.query('lstat', [path]);
    return statOf(this.entryOf('lstat', path, false));
  }
  readlink(path: string): string {
    this.query('readlink', [path]);
    const e = this.entryOf('readlink', path, false);
    if (typeof e === 'object' && 'link' in e) return e.link;
    throw fsError('readlink', EINVAL, path);
  }
  access(path: string, mode: number): void {
    this.query('access', [path, mode]);
    const e = this.entryOf('access', path, true);
    // the fake tree has no modes: regular files and directories are executable, nothing else is
    if (mode & X_OK && e === 'dev') throw fsError('access', EACCES, path);
  }
  readFile(path: string): string {
    this.query('read_file', [path]);
    const e = this.entryOf('open', path, true);
    if (typeof e === 'object' && 'content' in e) return e.content;
    return '';
  }
  readFileInRoot(path: string, maxBytes: number): string {
    this.query('read_file', [path]);
    const e = this.entryOf('open', path, true);
    if (e === 'dev') throw fsError('read', EINVAL, path);
    const text = typeof e === 'object' && 'content' in e ? e.content : '';
    if (Buffer.byteLength(text) > maxBytes) throw fsError('read', EFBIG, path);
    return text;
  }

  // --- credentials, capabilities, limits, seccomp
  prctl(option: number, a = 0, b = 0): number {
    const args: number[] = b === 0 ? [option, a] : [option, a, b];
    if (option === PR.CAPBSET_DROP && a > (this.opts.lastCap ?? 40)) {
      if (this.ended) throw this.ended;
      this.calls.push({ call: 'prctl', args, errno: EINVAL });
      throw new SyscallError('prctl', EINVAL, String(option));
    }
    this.rec('prctl', args);
    return 0;
  }
  setgroups(gids: number[]): void { this.rec('setgroups', [[...gids]]); }
  setresgid(gid: number): void { this.rec('setresgid', [gid]); }
  setresuid(uid: number): void { this.rec('setresuid', [uid]); }
  capset(e: bigint, p: bigint, i: bigint): void { this.rec('capset', [hex(e), hex(p), hex(i)]); }
  setrlimit(resource: number, soft: bigint, hard: bigint): void { this.rec('setrlimit', [resource, String(soft), String(hard)]); }
  umask(mask: number): number { this.rec('umask', [mask]); return 0o022; }
  seccomp(bpf: Buffer, flags: number): void { this.rec('seccomp', [bpf.toString('base64'), flags]); }
}

function normalize(p: string): string {
  const out: string[] = [];
  for (const part of p.split('/')) {
    if (!part || part === '.') continue;
    if (part === '..') out.pop(); else out.push(part);
  }
  return `/${out.join('/')}`;
}

function statOf(e: FakeEntry): FileStat {
  const link = typeof e === 'object' && 'link' in e;
  const dir = e === 'dir';
  // a made-up tree's modes: what an image's usually are
  const mode = link ? 0o120777 : dir ? 0o040755 : e === 'dev' ? 0o020666 : 0o100644;
  return { isDirectory: () => dir, isFile: () => !dir && !link && e !== 'dev', isSymbolicLink: () => link, mode };
}

/** An error shaped like node:fs's own (code, errno, syscall, path). */
function fsError(syscall: string, errno: number, path: string): NodeJS.ErrnoException {
  const code = errnoName(errno);
  return Object.assign(new Error(`${code}: ${syscall} '${path}'`), { code, errno: -errno, syscall, path });
}

// --- warming --------------------------------------------------------------------------

/**
 * Run each real call a container's set-up makes once in this process, in a form that
 * changes nothing (a path below /dev/null, fd -1, an invalid argument, or today's own
 * value), so that a fork of it finds the code warm. Called by the root seed at start, before
 * its first fork: every call's first use in a process costs 20-400 µs (wrapper and koffi
 * call paths compiled, inline caches filled, error classes made), and a forked child that
 * made them cold spent ~0.3 ms on signal resetting alone after Start. What a fork inherits
 * is that state; its own first writes to it are copy-on-write faults (~1.6 µs a page here).
 * Never: setsid, fork, exit, fd closing or sealing, sethostname and friends with a valid
 * name, the session keyring, seccomp, capset, the loopback: those would change the seed.
 */
export function warmContainerSys(): void {
  // below a character device: every lookup fails with ENOTDIR, whatever anyone creates
  // (a path that merely does not exist could be made to, and the seed would then write
  // files there, make a device node, or execve it as root)
  const NX = '/dev/null/spore-warm';
  const s = realContainerSys;
  const tryIt = (f: () => unknown): void => { try { f(); } catch { /* the expected refusal */ } };
  const devnull = s.open('/dev/null', sys.O.RDWR | sys.O.CLOEXEC);
  try {
    tryIt(() => s.open(NX, sys.O.RDONLY | sys.O.CLOEXEC));
    s.dup2(devnull, devnull);
    const d = s.dupAt(devnull, 100);
    s.dup3(devnull, d, sys.O.CLOEXEC);
    s.close(d);
    s.setNonblock(devnull, false);
    s.read(devnull, 1);
    s.write(devnull, Buffer.alloc(1));
    tryIt(() => s.ioctl(-1, 0x540e /* TIOCSCTTY */, 0));
    tryIt(() => s.fchown(-1, -1, -1));
  } finally {
    s.close(devnull);
  }
  s.unshare(0); // no namespace asked for: nothing happens
  tryIt(() => s.setns(-1, 0));
  tryIt(() => s.mount(null, NX, null, sys.MS.BIND, null));
  tryIt(() => s.mountInRoot('/', null, NX, null, sys.MS.BIND, null)); // ENOENT from openat2, before any mount
  tryIt(() => s.umount2(NX, 0));
  tryIt(() => s.pivotRoot(NX, NX));
  tryIt(() => s.chdir(NX));
  s.chdirInRoot(process.cwd()); // where it is already
  tryIt(() => s.sethostname('x'.repeat(65))); // EINVAL: longer than HOST_NAME_MAX
  tryIt(() => s.setdomainname('x'.repeat(65)));
  tryIt(() => s.addKeyPermission(0, 0)); // no such key
  tryIt(() => s.mknod(`${NX}/null`, 0o20666, 1, 3));
  tryIt(() => s.chown(NX, -1, -1));
  tryIt(() => s.writeFile(`${NX}/f`, ''));
  tryIt(() => s.touch(`${NX}/f`));
  tryIt(() => s.symlink('x', `${NX}/l`));
  s.exists(NX);
  s.stat('/');
  s.lstat('/');
  tryIt(() => s.readlink(NX));
  tryIt(() => s.access(NX, X_OK));
  tryIt(() => s.readFile(NX));
  tryIt(() => s.readFileInRoot(NX, 1));
  s.getpid();
  s.prctl(23 /* PR_CAPBSET_READ */, 0);
  tryIt(() => s.setgroups(new Array<number>(65537).fill(0))); // EINVAL: more than NGROUPS_MAX
  s.setresgid(process.getgid?.() ?? 0); // its own gid: no change
  s.setresuid(process.getuid?.() ?? 0);
  tryIt(() => s.setrlimit(1 << 20, 0n, 0n)); // EINVAL: no such resource
  s.umask(s.umask(0o022));
  tryIt(() => s.execve(NX, [NX], []));
  sys.warmSignalReset();
}
