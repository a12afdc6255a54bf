// The one place spore calls libc. Every wrapper checks the return value and throws a
// SyscallError carrying errno, so callers never see -1. x86_64 Linux only (syscall
// numbers below); other arches need their own table.
import koffi from 'koffi';
import { readFileSync } from 'node:fs';
import { SyscallError } from './errors.js';
import { AF_UNIX, AT_RECURSIVE, LOCK, CLONE, TIOCSWINSZ, EPOLLERR, EPOLLHUP, EPOLLIN, F_SEAL, MADV, MADV_DOFORK, MAP, MAX_FDS_PER_MESSAGE, MFD, MS, O, PR, PROT, SIG, SOCK, SYS, WNOHANG } from './constants.js';

// Constants live in constants.ts (no koffi there, so pure modules can read them).
export * from './constants.js';

const lib = koffi.load('libc.so.6');








// --- raw bindings -------------------------------------------------------------------
const c = {
  getrandom: lib.func('long getrandom(_Out_ uint8_t *, size_t, unsigned int)'),
  malloc_trim: lib.func('int malloc_trim(size_t)'),
  fork: lib.func('int fork()'),
  _exit: lib.func('void _exit(int)'),
  getpid: lib.func('int getpid()'),
  setsid: lib.func('int setsid()'),
  unshare: lib.func('int unshare(int)'),
  setns: lib.func('int setns(int, int)'),
  mount: lib.func('int mount(const char *, const char *, const char *, unsigned long, const char *)'),
  umount2: lib.func('int umount2(const char *, int)'),
  fspick: lib.func('int fspick(int, const char *, unsigned int)'),
  fsconfig: lib.func('int fsconfig(int, unsigned int, const char *, const char *, int)'),
  chdir: lib.func('int chdir(const char *)'),
  fchdir: lib.func('int fchdir(int)'),
  mkdirat: lib.func('int mkdirat(int, const char *, unsigned int)'),
  chroot: lib.func('int chroot(const char *)'),
  sethostname: lib.func('int sethostname(const char *, size_t)'),
  setdomainname: lib.func('int setdomainname(const char *, size_t)'),
  setgroups: lib.func('int setgroups(size_t, const uint32_t *)'),
  setresuid: lib.func('int setresuid(uint32_t, uint32_t, uint32_t)'),
  setresgid: lib.func('int setresgid(uint32_t, uint32_t, uint32_t)'),
  prctl: lib.func('int prctl(int, unsigned long, unsigned long, unsigned long, unsigned long)'),
  syscallStr2: lib.func('long syscall(long, const char *, const char *)'),
  syscallIntStr: lib.func('long syscall(long, long, const char *)'),
  syscallDescribe: lib.func('long syscall(long, long, long, _Out_ uint8_t *, long)'),
  syscallOpenat2: lib.func('long syscall(long, int, const char *, const uint8_t *, size_t)'),
  syscallMountSetattr: lib.func('long syscall(long, int, const char *, unsigned int, const uint8_t *, size_t)'),
  syscallPtr2: lib.func('long syscall(long, void *, void *)'),
  syscall3: lib.func('long syscall(long, long, long, long)'),
  syscallSeccomp: lib.func('long syscall(long, long, long, void *)'),
  open: lib.func('int open(const char *, int, uint32_t)'),
  close: lib.func('int close(int)'),
  dup2: lib.func('int dup2(int, int)'),
  dup3: lib.func('int dup3(int, int, int)'),
  fcntl: lib.func('int fcntl(int, int, int)'),
  read: lib.func('long read(int, _Out_ uint8_t *, size_t)'),
  write: lib.func('long write(int, const uint8_t *, size_t)'),
  pipe2: lib.func('int pipe2(_Out_ int *, int)'),
  lseek: lib.func('int64_t lseek(int, int64_t, int)'),
  splice: lib.func('long splice(int, void *, int, void *, size_t, unsigned int)'),
  execve: lib.func('int execve(const char *, const char **, const char **)'),
  posix_spawn: lib.func('int posix_spawn(_Out_ int *, const char *, const uint8_t *, const uint8_t *, const char **, const char **)'),
  posix_spawn_file_actions_init: lib.func('int posix_spawn_file_actions_init(_Inout_ uint8_t *)'),
  posix_spawn_file_actions_destroy: lib.func('int posix_spawn_file_actions_destroy(_Inout_ uint8_t *)'),
  posix_spawn_file_actions_addclosefrom_np: lib.func('int posix_spawn_file_actions_addclosefrom_np(_Inout_ uint8_t *, int)'),
  posix_spawn_file_actions_adddup2: lib.func('int posix_spawn_file_actions_adddup2(_Inout_ uint8_t *, int, int)'),
  posix_spawnattr_init: lib.func('int posix_spawnattr_init(_Inout_ uint8_t *)'),
  posix_spawnattr_destroy: lib.func('int posix_spawnattr_destroy(_Inout_ uint8_t *)'),
  posix_spawnattr_setflags: lib.func('int posix_spawnattr_setflags(_Inout_ uint8_t *, short)'),
  posix_spawnattr_setsigdefault: lib.func('int posix_spawnattr_setsigdefault(_Inout_ uint8_t *, const uint8_t *)'),
  waitpid: lib.func('int waitpid(int, _Out_ int *, int)'),
  kill: lib.func('int kill(int, int)'),
  flock: lib.func('int flock(int, int)'),
  ioctlPtr: lib.func('int ioctl(int, unsigned long, void *)'),
  ioctlInt: lib.func('int ioctl(int, unsigned long, unsigned long)'),
  ioctlOut: lib.func('int ioctl(int, unsigned long, _Out_ int *)'),
  mknod: lib.func('int mknod(const char *, uint32_t, uint64_t)'),
  chown: lib.func('int chown(const char *, uint32_t, uint32_t)'),
  fchown: lib.func('int fchown(int, uint32_t, uint32_t)'),
  umask: lib.func('uint32_t umask(uint32_t)'),
  madvise: lib.func('int madvise(uintptr_t, size_t, int)'),
  setrlimit: lib.func('int setrlimit(int, const uint64_t *)'),
  grantpt: lib.func('int grantpt(int)'),
  unlockpt: lib.func('int unlockpt(int)'),
  ptsname_r: lib.func('int ptsname_r(int, _Out_ uint8_t *, size_t)'),
  socketpair: lib.func('int socketpair(int, int, int, _Out_ int *)'),
  socket: lib.func('int socket(int, int, int)'),
  connect: lib.func('int connect(int, const uint8_t *, uint32_t)'),
  sendmsg: lib.func('long sendmsg(int, const uint8_t *, int)'),
  recvmsg: lib.func('long recvmsg(int, uint8_t *, int)'),
  getsockopt: lib.func('int getsockopt(int, int, int, _Out_ uint8_t *, _Inout_ uint32_t *)'),
  epoll_create1: lib.func('int epoll_create1(int)'),
  epoll_ctl: lib.func('int epoll_ctl(int, int, int, const uint8_t *)'),
  epoll_wait: lib.func('int epoll_wait(int, _Out_ uint8_t *, int, int)'),
  poll: lib.func('int poll(_Inout_ uint8_t *, unsigned long, int)'),
  syscallPtr3: lib.func('long syscall(long, const uint8_t *, long, long)'),
  syscallRule: lib.func('long syscall(long, long, long, const uint8_t *, long)'),
  syscall2: lib.func('long syscall(long, long, long)'),
  syscall5: lib.func('long syscall(long, long, long, long, long, long)'),
  eventfd: lib.func('int eventfd(unsigned int, int)'),
};

function check(name: string, rc: number | bigint, detail?: string): number {
  const n = Number(rc);
  if (n < 0) throw new SyscallError(name, koffi.errno(), detail);
  return n;
}

// --- process ------------------------------------------------------------------------
/** fork(2). Callers in a Node process must call prepareFork() first (see there). */
export function fork(): number { return check('fork', c.fork()); }
export function exit(code: number): never { c._exit(code); throw new Error('unreachable'); }
export function getpid(): number { return c.getpid(); }
/** Fill `buf` from the kernel's CSPRNG (getrandom(2)); no OpenSSL state involved. */
export function getrandom(buf: Buffer): void {
  const n = Number(c.getrandom(buf, buf.length, 0));
  if (n !== buf.length) throw new SyscallError('getrandom', n < 0 ? koffi.errno() : 5, `${n} of ${buf.length} bytes`);
}
/** Give free malloc pages back to the kernel (glibc malloc_trim); returns whether any were. */
export function mallocTrim(): boolean { return c.malloc_trim(0) === 1; }
export function setsid(): number { return check('setsid', c.setsid()); }
export function kill(pid: number, sig: number): void { check('kill', c.kill(pid, sig), String(pid)); }

export interface WaitResult { pid: number; status: number }
/** Non-blocking reap of any child; null when none is ready. */
export function reapOne(): WaitResult | null {
  const st = [0];
  const pid = c.waitpid(-1, st, WNOHANG);
  if (pid <= 0) return null;
  return { pid, status: st[0] ?? 0 };
}
/** Decode a wait status into the shell-style exit code containerd reports (128+sig). */
export function exitCodeOf(status: number): number {
  const sig = status & 0x7f;
  if (sig === 0) return (status >> 8) & 0xff;
  return 128 + sig;
}

/**
 * V8 marks its heap MADV_DONTFORK, so a forked child would fault on the first JS object it
 * touches. Re-allow forking of the whole user address space right before fork. Scanning
 * /proc/self/maps per mapping is not enough: the scan itself allocates, and V8 maps new
 * DONTFORK pages mid-scan. madvise() over a range with holes still applies to every
 * mapping in it (and reports ENOMEM), but aborts on special mappings ([vvar], [vdso]),
 * so the range is split around them; those never move and are looked up once.
 */
const USER_TOP = 0x7ffffffff000n;
let forkRanges: [bigint, bigint][] | null = null;

function computeForkRanges(): [bigint, bigint][] {
  const special: [bigint, bigint][] = [];
  for (const line of readFileSync('/proc/self/maps', 'latin1').split('\n')) {
    if (!line.includes('[v')) continue;
    const dash = line.indexOf('-');
    const space = line.indexOf(' ');
    const a = BigInt('0x' + line.slice(0, dash));
    const b = BigInt('0x' + line.slice(dash + 1, space));
    if (a < USER_TOP) special.push([a, b]);
  }
  special.sort((x, y) => (x[0] < y[0] ? -1 : 1));
  const ranges: [bigint, bigint][] = [];
  let at = 0x1000n;
  for (const [a, b] of special) {
    if (a > at) ranges.push([at, a]);
    at = b > at ? b : at;
  }
  if (at < USER_TOP) ranges.push([at, USER_TOP]);
  return ranges;
}

/**
 * Starts and lengths, flat and precomputed: the loop below must not allocate. An
 * allocation here can start a GC that maps a new (DONTFORK) heap page into a range
 * already walked, and the child then faults on it (a rare SIGSEGV in instances). They are
 * BigInts, which koffi takes for uintptr_t/size_t: an address above 2^31 held as a JS number
 * is a double, and reading one out of an array boxes it in a new heap number in code V8 has
 * not optimized (every tier but TurboFan), two allocations per range per fork.
 */
let forkFlat: bigint[] | null = null;
export function prepareFork(): void {
  if (!forkFlat) {
    forkRanges ??= computeForkRanges();
    forkFlat = forkRanges.flatMap(([a, b]) => [a, b - a]);
  }
  const f = forkFlat;
  for (let i = 0; i + 1 < f.length; i += 2) c.madvise(f[i] as bigint, f[i + 1] as bigint, MADV_DOFORK);
}

// --- namespaces, mounts -------------------------------------------------------------
export function unshare(flags: number): void { check('unshare', c.unshare(flags), flags.toString(16)); }
export function setns(fd: number, nstype: number): void { check('setns', c.setns(fd, nstype), String(fd)); }
export function mount(source: string | null, target: string, fstype: string | null, flags: number, data: string | null): void {
  check('mount', c.mount(source, target, fstype, flags, data), `${source ?? ''} -> ${target}${fstype ? ` (${fstype})` : ''}`);
}
/**
 * mount_setattr(2) on `path` and every mount below it (AT_RECURSIVE): MOUNT_ATTR_* bits to
 * set and to clear (linux/mount.h; Linux 5.12). Throws SyscallError (ENOSYS before 5.12).
 */
export function mountSetattrRecursive(path: string, set: number, clr: number): void {
  const attr = Buffer.alloc(32); // struct mount_attr { u64 attr_set, attr_clr, propagation, userns_fd }
  attr.writeBigUInt64LE(BigInt(set), 0);
  attr.writeBigUInt64LE(BigInt(clr), 8);
  check('mount_setattr', c.syscallMountSetattr(SYS.mount_setattr, AT_FDCWD, path, AT_RECURSIVE, attr, attr.length) as unknown as number, path);
}
export function umount2(target: string, flags: number): void { check('umount2', c.umount2(target, flags), target); }

/** fsconfig(2) commands (include/uapi/linux/mount.h). */
const FSCONFIG = { SET_FLAG: 0, SET_STRING: 1, CMD_RECONFIGURE: 7 } as const;
const FSPICK_CLOEXEC = 1;
const AT_FDCWD = -100;

/**
 * Reconfigure the superblock of the filesystem mounted at `target` with `options` ("key" or
 * "key=value", each an fsconfig flag or string) through fspick(2) + fsconfig(2)
 * FSCONFIG_CMD_RECONFIGURE (Linux >= 5.2). Unlike a legacy MS_REMOUNT it leaves every
 * mount's own flags (ro, nosuid, nodev, noexec, nosymfollow, atime) as they are. Whether an
 * option left out is reset is the filesystem's business (cgroup2 resets its root flags).
 * Throws SyscallError naming the step and option that failed.
 */
export function reconfigureSuperblock(target: string, options: readonly string[]): void {
  const fd = check('fspick', c.fspick(AT_FDCWD, target, FSPICK_CLOEXEC), target);
  try {
    for (const o of options) {
      const eq = o.indexOf('=');
      if (eq < 0) check('fsconfig', c.fsconfig(fd, FSCONFIG.SET_FLAG, o, null, 0), `${target}: ${o}`);
      else check('fsconfig', c.fsconfig(fd, FSCONFIG.SET_STRING, o.slice(0, eq), o.slice(eq + 1), 0), `${target}: ${o}`);
    }
    check('fsconfig', c.fsconfig(fd, FSCONFIG.CMD_RECONFIGURE, null, null, 0), `${target}: reconfigure`);
  } finally {
    c.close(fd);
  }
}
export function pivotRoot(newRoot: string, putOld: string): void {
  check('pivot_root', c.syscallStr2(SYS.pivot_root, newRoot, putOld) as unknown as number, newRoot);
}
export function chdir(path: string): void { check('chdir', c.chdir(path), path); }
export function fchdir(fd: number): void { check('fchdir', c.fchdir(fd)); }
export function mkdirat(dirfd: number, name: string, mode: number): void { check('mkdirat', c.mkdirat(dirfd, name, mode), name); }
/**
 * openat2(2): open `path` (relative to `dirfd`, or the cwd with AT_FDCWD = -100) with
 * `flags` and the RESOLVE_* restrictions in `resolve` (e.g. RESOLVE_NO_MAGICLINKS: no
 * /proc/<pid>/{root,cwd,fd/*} on the way). Throws SyscallError (ELOOP for a refused link).
 */
export function openat2(dirfd: number, path: string, flags: number, resolve: number, mode = 0): number {
  const how = Buffer.alloc(24);
  how.writeBigUInt64LE(BigInt(flags), 0);
  how.writeBigUInt64LE(BigInt(mode), 8);
  how.writeBigUInt64LE(BigInt(resolve), 16);
  return check('openat2', c.syscallOpenat2(SYS.openat2, dirfd, path, how, 24) as unknown as number, path);
}
export function chroot(path: string): void { check('chroot', c.chroot(path), path); }
export function sethostname(name: string): void { check('sethostname', c.sethostname(name, Buffer.byteLength(name))); }
export function setdomainname(name: string): void { check('setdomainname', c.setdomainname(name, Buffer.byteLength(name))); }
export function mknod(path: string, mode: number, major: number, minor: number): void {
  // glibc makedev encoding
  const dev = (BigInt(major & 0xfff) << 8n) | BigInt(minor & 0xff) | (BigInt(minor & ~0xff) << 12n) | (BigInt(major & ~0xfff) << 32n);
  check('mknod', c.mknod(path, mode, dev), path);
}
export function chown(path: string, uid: number, gid: number): void { check('chown', c.chown(path, uid, gid), path); }
/** fchown(2); -1 (0xffffffff) leaves that id as it is */
export function fchown(fd: number, uid: number, gid: number): void { check('fchown', c.fchown(fd, uid >>> 0, gid >>> 0)); }
export function umask(mask: number): number { return c.umask(mask); }

// --- credentials, capabilities, limits ----------------------------------------------
export function setgroups(gids: number[]): void { check('setgroups', c.setgroups(gids.length, gids.length ? gids : null)); }
export function setresuid(uid: number): void { check('setresuid', c.setresuid(uid, uid, uid), String(uid)); }
/** setresuid(-1, uid, -1): the effective uid alone (the real and saved ones stay) */
export function seteuid(uid: number): void { check('setresuid', c.setresuid(0xffffffff, uid, 0xffffffff), `-1, ${uid}, -1`); }
export function setresgid(gid: number): void { check('setresgid', c.setresgid(gid, gid, gid), String(gid)); }
export function prctl(option: number, a = 0, b = 0, cc = 0, d = 0): number {
  return check('prctl', c.prctl(option, a, b, cc, d), String(option));
}

/** capset(2) with _LINUX_CAPABILITY_VERSION_3 (two 32-bit words per set). */
export function capset(effective: bigint, permitted: bigint, inheritable: bigint): void {
  const hdr = Buffer.alloc(8);
  hdr.writeUInt32LE(0x20080522, 0);
  hdr.writeInt32LE(0, 4);
  const data = Buffer.alloc(24);
  const words = [effective, permitted, inheritable];
  for (let i = 0; i < 2; i++) {
    for (let s = 0; s < 3; s++) {
      data.writeUInt32LE(Number(((words[s] ?? 0n) >> BigInt(32 * i)) & 0xffffffffn), i * 12 + s * 4);
    }
  }
  check('capset', c.syscallPtr2(SYS.capset, hdr, data) as unknown as number);
}

export function setrlimit(resource: number, soft: bigint, hard: bigint): void {
  check('setrlimit', c.setrlimit(resource, [soft, hard]), String(resource));
}

// --- seccomp ------------------------------------------------------------------------
/** Install a classic-BPF seccomp program (struct sock_filter[]) for this thread. */
export function seccompInstall(bpf: Buffer, flags: number): void {
  const prog = Buffer.alloc(16);
  prog.writeUInt16LE(bpf.length / 8, 0);
  const ptr = koffi.address(bpf);
  prog.writeBigUInt64LE(BigInt(ptr), 8);
  // SECCOMP_SET_MODE_FILTER = 1
  check('seccomp', c.syscallSeccomp(SYS.seccomp, 1, flags, prog) as unknown as number);
}

// --- file descriptors ---------------------------------------------------------------
export function open(path: string, flags: number, mode = 0o644): number { return check('open', c.open(path, flags, mode), path); }
export function close(fd: number): void { c.close(fd); }
export function dup2(from: number, to: number): void { check('dup2', c.dup2(from, to), `${from}->${to}`); }
export function dup3(from: number, to: number, flags: number): void { check('dup3', c.dup3(from, to, flags), `${from}->${to}`); }
/** fcntl(F_DUPFD_CLOEXEC): a second fd on the same open file. */
export function dupFd(fd: number): number { return check('fcntl', c.fcntl(fd, 1030, 3)); }
/** fcntl(F_DUPFD_CLOEXEC) at the lowest free number >= min. */
export function dupAt(fd: number, min: number): number { return check('fcntl', c.fcntl(fd, 1030, min)); }
export function setCloexec(fd: number, on: boolean): void {
  const F_SETFD = 2;
  check('fcntl', c.fcntl(fd, F_SETFD, on ? 1 : 0));
}
/** lseek(fd, offset, SEEK_SET) */
export function seekSet(fd: number, offset: number): void { check('lseek', Number(c.lseek(fd, offset, 0))); }
export function setNonblock(fd: number, on: boolean): void {
  const F_GETFL = 3, F_SETFL = 4;
  const fl = check('fcntl', c.fcntl(fd, F_GETFL, 0));
  check('fcntl', c.fcntl(fd, F_SETFL, on ? fl | O.NONBLOCK : fl & ~O.NONBLOCK));
}
/**
 * Blocking read(2) of at most `n` bytes: only the bytes read are returned (empty at EOF). The buffer is not zeroed
 * first (the kernel writes what it returns, and nothing else of it is handed out): zeroing
 * 64 KiB cost a freshly forked instance 16 page faults per read.
 */
export function read(fd: number, n: number): Buffer {
  const buf = Buffer.allocUnsafeSlow(n);
  for (;;) {
    const r = Number(c.read(fd, buf, n));
    if (r >= 0) return buf.subarray(0, r);
    if (koffi.errno() !== 4) throw new SyscallError('read', koffi.errno());
  }
}
/**
 * The whole text of a small file: open, reads until one returns 0, close (fs.readFileSync
 * adds an fstat). For /proc and cgroupfs files on hot paths. A short read is not the end: the
 * kernel's seq_file hands out one buffer (a page at first) per read, so a file of many records
 * (cgroup.procs, /proc/<pid>/task/<pid>/children, maps) comes in pieces. Throws SyscallError
 * (open: ENOENT when the file or process is gone).
 */
export function readSmallFile(path: string, encoding: BufferEncoding = 'latin1'): string {
  const fd = check('open', c.open(path, O.RDONLY | O.CLOEXEC, 0), path);
  try {
    let buf = smallScratch;
    let len = 0;
    for (;;) {
      if (len === buf.length) {
        const bigger = Buffer.allocUnsafeSlow(buf.length * 2);
        buf.copy(bigger, 0, 0, len);
        buf = bigger;
      }
      const r = Number(c.read(fd, buf.subarray(len), buf.length - len));
      if (r < 0) {
        if (koffi.errno() === 4) continue;
        throw new SyscallError('read', koffi.errno(), path);
      }
      if (r === 0) return buf.toString(encoding, 0, len);
      len += r;
    }
  } finally {
    c.close(fd);
  }
}
const smallScratch = Buffer.allocUnsafeSlow(8192);
/**
 * Write `data` to an existing file in open(O_WRONLY) + write + close: for cgroupfs files on
 * hot paths (a pid into cgroup.procs). No O_CREAT or O_TRUNC: kernfs answers EACCES to
 * O_CREAT, and a missing file must read as ENOENT. Throws SyscallError.
 */
export function writeSmallFile(path: string, data: string): void {
  const fd = check('open', c.open(path, O.WRONLY | O.CLOEXEC, 0), path);
  try {
    const b = Buffer.from(data);
    for (;;) {
      const r = Number(c.write(fd, b, b.length));
      if (r >= 0) {
        if (r !== b.length) throw new SyscallError('write', 5 /* EIO: a short write to a kernel file */, path);
        return;
      }
      if (koffi.errno() !== 4) throw new SyscallError('write', koffi.errno(), path);
    }
  } finally {
    c.close(fd);
  }
}
export function write(fd: number, data: Buffer): void {
  let off = 0;
  while (off < data.length) {
    const r = Number(c.write(fd, data.subarray(off), data.length - off));
    if (r < 0) {
      if (koffi.errno() === 4) continue;
      throw new SyscallError('write', koffi.errno());
    }
    off += r;
  }
}
/** fcntl(F_SETPIPE_SZ): a pipe that holds at least `bytes` (up to /proc/sys/fs/pipe-max-size unless CAP_SYS_RESOURCE). */
export function setPipeSize(fd: number, bytes: number): void { check('fcntl', c.fcntl(fd, 1031, bytes), 'F_SETPIPE_SZ'); }
export function pipe(flags: number = O.CLOEXEC): [number, number] {
  const fds = [0, 0];
  check('pipe2', c.pipe2(fds, flags));
  return [fds[0] ?? -1, fds[1] ?? -1];
}
/** close_range(2) over every fd >= first: close them, or with cloexec only mark them. */
export function closeFrom(first: number, cloexec = false): void {
  const CLOSE_RANGE_CLOEXEC = 4;
  check('close_range', c.syscall3(SYS.close_range, first, 0xffffffff, cloexec ? CLOSE_RANGE_CLOEXEC : 0) as unknown as number);
}
/**
 * ioctl(2) with an integer argument that never throws: the result, or -errno. For hot loops
 * where a failure is an answer, not an exception (KVM_RUN returning EINTR on a kick).
 */
export function ioctlRaw(fd: number, req: number, arg: number): number {
  const r = c.ioctlInt(fd, req, arg);
  return r < 0 ? -koffi.errno() : r;
}
export function ioctl(fd: number, req: number, arg: Buffer | number): number {
  if (typeof arg === 'number') return check('ioctl', c.ioctlInt(fd, req, arg));
  return check('ioctl', c.ioctlPtr(fd, req, arg));
}

// --- exec ---------------------------------------------------------------------------
/** execve(2); returns only by throwing. */
export function execve(path: string, argv: string[], envp: string[]): never {
  c.execve(path, [...argv, null], [...envp, null]);
  throw new SyscallError('execve', koffi.errno(), path);
}

/**
 * posix_spawn(3) of `path` with `argv` and `envp`, keeping fds 0-2 (close-on-exec or not) and closing every other
 * (posix_spawn_file_actions_addclosefrom_np, glibc >= 2.34). glibc's posix_spawn runs no code
 * of ours in the child (clone with CLONE_VM|CLONE_VFORK straight into execve): the way for a
 * multi-threaded Node process to start a program, where a fork would copy locks held by other
 * threads (a GC in the child then waited forever on a worker's condition variable). Returns
 * the pid. Throws SyscallError (the error posix_spawn returns, e.g. ENOENT).
 * `stdio`: fds to become the program's 0, 1 and 2 (default: this process's own).
 */
export function spawnProgram(path: string, argv: string[], envp: string[], stdio: readonly [number, number, number] = [0, 1, 2]): number {
  const actions = Buffer.alloc(128); // posix_spawn_file_actions_t is 80 bytes on x86_64 glibc
  let rc = c.posix_spawn_file_actions_init(actions);
  if (rc !== 0) throw new SyscallError('posix_spawn_file_actions_init', rc);
  try {
    // dup2(fd, fd) in a spawn clears close-on-exec (POSIX; glibc >= 2.29): Node marks 0-2 so
    for (const [to, fd] of stdio.entries()) {
      rc = c.posix_spawn_file_actions_adddup2(actions, fd, to);
      if (rc !== 0) throw new SyscallError('posix_spawn_file_actions_adddup2', rc);
    }
    rc = c.posix_spawn_file_actions_addclosefrom_np(actions, 3);
    if (rc !== 0) throw new SyscallError('posix_spawn_file_actions_addclosefrom_np', rc);
    // every signal at SIG_DFL in the program, glibc's own 32 and 33 too: posix_spawn sets
    // those to SIG_IGN in its child unless told otherwise, and an ignored signal survives
    // execve into spored, its seeds and every container (a fork + execve resets them)
    const attr = Buffer.alloc(512); // posix_spawnattr_t is 336 bytes on x86_64 glibc
    rc = c.posix_spawnattr_init(attr);
    if (rc !== 0) throw new SyscallError('posix_spawnattr_init', rc);
    try {
      const all = Buffer.alloc(128, 0); // sigset_t; bit n-1 is signal n (set directly: sigaddset refuses 32 and 33)
      all.fill(0xff, 0, 8);
      const POSIX_SPAWN_SETSIGDEF = 0x04;
      rc = c.posix_spawnattr_setsigdefault(attr, all);
      if (rc === 0) rc = c.posix_spawnattr_setflags(attr, POSIX_SPAWN_SETSIGDEF);
      if (rc !== 0) throw new SyscallError('posix_spawnattr', rc);
      const pid = [0];
      rc = c.posix_spawn(pid, path, actions, attr, [...argv, null], [...envp, null]);
      if (rc !== 0) throw new SyscallError('posix_spawn', rc, path);
      return pid[0] as number;
    } finally {
      c.posix_spawnattr_destroy(attr);
    }
  } finally {
    c.posix_spawn_file_actions_destroy(actions);
  }
}

// --- terminals ----------------------------------------------------------------------
/** Open a pty master on the host's /dev/ptmx; returns the master fd and the slave path. */
export function openPty(): { master: number; slave: string } {
  const master = open('/dev/ptmx', O.RDWR | O.NOCTTY | O.CLOEXEC);
  check('grantpt', c.grantpt(master));
  check('unlockpt', c.unlockpt(master));
  const buf = Buffer.alloc(64);
  const rc = c.ptsname_r(master, buf, buf.length);
  if (rc !== 0) throw new SyscallError('ptsname_r', rc);
  const slave = buf.subarray(0, buf.indexOf(0)).toString();
  return { master, slave };
}
/**
 * A pty on the devpts instance behind `ptmx` (a container's own /dev/ptmx, from inside its
 * mount namespace, as runc's init opens it): the master (close-on-exec) and its slave, opened
 * through the master (TIOCGPTPEER, Linux 4.13; no path lookup in /dev/pts), not the
 * controlling terminal yet, close-on-exec too; `size` (rows, cols) set when given.
 */
export function openPtyPair(ptmx: string, size?: { rows: number; cols: number }): { master: number; slave: number } {
  const master = open(ptmx, O.RDWR | O.NOCTTY | O.CLOEXEC);
  try {
    check('unlockpt', c.unlockpt(master));
    const slave = check('ioctl(TIOCGPTPEER)', c.ioctlInt(master, TIOCGPTPEER, O.RDWR | O.NOCTTY | O.CLOEXEC));
    if (size && size.rows > 0 && size.cols > 0) setWinsize(master, size.rows, size.cols);
    return { master, slave };
  } catch (e) {
    close(master);
    throw e;
  }
}
/** _IO('T', 0x41): open the slave of this master (include/uapi/asm-generic/ioctls.h) */
const TIOCGPTPEER = 0x5441;
export function setWinsize(fd: number, rows: number, cols: number): void {
  const ws = Buffer.alloc(8);
  ws.writeUInt16LE(rows, 0);
  ws.writeUInt16LE(cols, 2);
  ioctl(fd, TIOCSWINSZ, ws);
}

export function errno(): number { return koffi.errno(); }

// --- unix sockets and fd passing (seed links, instance channels) --------------------
const SOL_SOCKET = 1;
const SCM_RIGHTS = 1;
const SO_PEERCRED = 17;
const MSG_NOSIGNAL = 0x4000;
const MSG_DONTWAIT = 0x40;
const MSG_CMSG_CLOEXEC = 0x40000000;
const EAGAIN = 11;
const EINTR = 4;

/** socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC): two connected ends. */
export function socketpair(type: number = SOCK.STREAM | SOCK.CLOEXEC): [number, number] {
  const fds = [0, 0];
  check('socketpair', c.socketpair(AF_UNIX, type, 0, fds));
  return [fds[0] ?? -1, fds[1] ?? -1];
}

/** A blocking AF_UNIX stream socket connected to `path` (close-on-exec). */
export function connectUnix(path: string): number {
  const fd = check('socket', c.socket(AF_UNIX, SOCK.STREAM | SOCK.CLOEXEC, 0));
  const addr = Buffer.alloc(110);
  addr.writeUInt16LE(AF_UNIX, 0);
  const p = Buffer.from(path);
  if (p.length > 107) { c.close(fd); throw new SyscallError('connect', 36, path); }
  p.copy(addr, 2);
  if (c.connect(fd, addr, 2 + p.length + 1) < 0) {
    const e = koffi.errno();
    c.close(fd);
    throw new SyscallError('connect', e, path);
  }
  return fd;
}

/** SO_PEERCRED of a connected unix socket: the peer as the kernel saw it at connect(). */
export function peerCred(fd: number): { pid: number; uid: number; gid: number } {
  const buf = Buffer.alloc(12);
  const len = [12];
  check('getsockopt', c.getsockopt(fd, SOL_SOCKET, SO_PEERCRED, buf, len));
  return { pid: buf.readInt32LE(0), uid: buf.readUInt32LE(4), gid: buf.readUInt32LE(8) };
}

// struct msghdr (x86_64): name 0, namelen 8, iov 16, iovlen 24, control 32, controllen 40, flags 48; 56 bytes.
function msghdr(iov: Buffer, iovlen: number, control: Buffer | null): Buffer {
  const h = Buffer.alloc(56);
  h.writeBigUInt64LE(BigInt(koffi.address(iov)), 16);
  h.writeBigUInt64LE(BigInt(iovlen), 24);
  if (control) {
    h.writeBigUInt64LE(BigInt(koffi.address(control)), 32);
    h.writeBigUInt64LE(BigInt(control.length), 40);
  }
  return h;
}
function iovOf(data: Buffer): Buffer {
  const iov = Buffer.alloc(16);
  iov.writeBigUInt64LE(BigInt(koffi.address(data)), 0);
  iov.writeBigUInt64LE(BigInt(data.length), 8);
  return iov;
}
const cmsgSpace = (n: number): number => 16 + ((n * 4 + 7) & ~7);

/**
 * sendmsg(2) of `data` with `fds` attached as SCM_RIGHTS (unix(7)): the fds arrive with the
 * first byte of `data`. Returns the bytes sent, which can be fewer than data.length on a
 * non-blocking socket (the caller sends the rest without fds), or -1 for EAGAIN before any
 * byte went out. Throws SyscallError otherwise (EPIPE when the peer is gone).
 */
export function sendWithFds(fd: number, data: Buffer, fds: readonly number[] = [], nonblocking = false): number {
  if (fds.length > MAX_FDS_PER_MESSAGE) throw new SyscallError('sendmsg', 22, `${fds.length} fds`);
  const iov = iovOf(data);
  let control: Buffer | null = null;
  if (fds.length) {
    control = Buffer.alloc(cmsgSpace(fds.length));
    control.writeBigUInt64LE(BigInt(16 + fds.length * 4), 0);
    control.writeInt32LE(SOL_SOCKET, 8);
    control.writeInt32LE(SCM_RIGHTS, 12);
    fds.forEach((f, i) => control!.writeInt32LE(f, 16 + i * 4));
  }
  const h = msghdr(iov, 1, control);
  for (;;) {
    const n = Number(c.sendmsg(fd, h, MSG_NOSIGNAL | (nonblocking ? MSG_DONTWAIT : 0)));
    if (n >= 0) return n;
    const e = koffi.errno();
    if (e === EINTR) continue;
    if (e === EAGAIN && nonblocking) return -1;
    throw new SyscallError('sendmsg', e, `fd ${fd}`);
  }
}

/**
 * recvmsg(2) of up to `max` bytes plus any SCM_RIGHTS fds (received close-on-exec).
 * `data` is empty at EOF; `wouldBlock` is set for EAGAIN on a non-blocking socket.
 */
export function recvWithFds(fd: number, max = 65536, nonblocking = false): { data: Buffer; fds: number[]; wouldBlock: boolean } {
  // One set of buffers per process, reused: a seed calls this for every message, and
  // fresh allocations there would run the GC and turn its shared pages private.
  const r = recvScratch(max);
  let n: number;
  for (;;) {
    n = Number(c.recvmsg(fd, r.hdr, MSG_CMSG_CLOEXEC | (nonblocking ? MSG_DONTWAIT : 0)));
    if (n >= 0) break;
    const e = koffi.errno();
    if (e === EINTR) continue;
    if (e === EAGAIN) return { data: EMPTY, fds: [], wouldBlock: true };
    if (e === 104 /* ECONNRESET */) return { data: EMPTY, fds: [], wouldBlock: false };
    throw new SyscallError('recvmsg', e, `fd ${fd}`);
  }
  const fds: number[] = [];
  const clen = Number(r.hdr.readBigUInt64LE(40));
  let off = 0;
  while (off + 16 <= clen) {
    const len = Number(r.control.readBigUInt64LE(off));
    if (len < 16) break;
    if (r.control.readInt32LE(off + 8) === SOL_SOCKET && r.control.readInt32LE(off + 12) === SCM_RIGHTS) {
      for (let i = 16; i + 4 <= len; i += 4) fds.push(r.control.readInt32LE(off + i));
    }
    off += (len + 7) & ~7;
  }
  // msg_controllen is in-out: restore it for the next call
  r.hdr.writeBigUInt64LE(BigInt(r.control.length), 40);
  return { data: Buffer.from(r.data.subarray(0, n)), fds, wouldBlock: false };
}
const EMPTY = Buffer.alloc(0);
let scratch: { data: Buffer; control: Buffer; iov: Buffer; hdr: Buffer } | null = null;
function recvScratch(max: number): { data: Buffer; control: Buffer; iov: Buffer; hdr: Buffer } {
  if (scratch && scratch.data.length === max) return scratch;
  const data = Buffer.alloc(max);
  const control = Buffer.alloc(cmsgSpace(MAX_FDS_PER_MESSAGE) * 4);
  const iov = iovOf(data);
  scratch = { data, control, iov, hdr: msghdr(iov, 1, control) };
  return scratch;
}

// --- waiting: epoll, poll, pidfds ---------------------------------------------------
const EPOLL_CLOEXEC = 0o2000000;
export function epollCreate(): number { return check('epoll_create1', c.epoll_create1(EPOLL_CLOEXEC)); }
/** Watch fd for `events`; epoll_event.data carries fd itself. */
export function epollAdd(ep: number, fd: number, events: number = EPOLLIN): void {
  const ev = Buffer.alloc(12); // struct epoll_event is packed on x86_64
  ev.writeUInt32LE(events, 0);
  ev.writeBigUInt64LE(BigInt(fd), 4);
  check('epoll_ctl', c.epoll_ctl(ep, 1 /* ADD */, fd, ev), String(fd));
}
export function epollDel(ep: number, fd: number): void {
  c.epoll_ctl(ep, 2 /* DEL */, fd, Buffer.alloc(12));
}
/** Ready fds and their event bits; blocks up to timeoutMs (-1: forever). EINTR yields []. */
export function epollWait(ep: number, max: number, timeoutMs: number): { fd: number; events: number }[] {
  if (!epollBuf || epollBuf.length < 12 * max) epollBuf = Buffer.alloc(12 * max);
  const buf = epollBuf;
  const n = c.epoll_wait(ep, buf, max, timeoutMs);
  if (n < 0) {
    if (koffi.errno() === EINTR) return [];
    throw new SyscallError('epoll_wait', koffi.errno());
  }
  const out: { fd: number; events: number }[] = [];
  for (let i = 0; i < n; i++) out.push({ fd: Number(buf.readBigUInt64LE(i * 12 + 4)), events: buf.readUInt32LE(i * 12) });
  return out;
}
let epollBuf: Buffer | null = null;
/** poll(2) one fd for input; true when readable (or at EOF/hang-up) within timeoutMs. */
export function pollIn(fd: number, timeoutMs: number): boolean {
  const pfd = Buffer.alloc(8);
  pfd.writeInt32LE(fd, 0);
  pfd.writeInt16LE(1 /* POLLIN */, 4);
  for (;;) {
    const n = c.poll(pfd, 1, timeoutMs);
    if (n >= 0) return n > 0;
    if (koffi.errno() !== EINTR) throw new SyscallError('poll', koffi.errno());
  }
}
/**
 * Whether a pipe's write end `fd` still has a reader: poll(2) with a zero timeout; a pipe
 * whose read ends are all closed reports POLLERR to its writers (Linux fs/pipe.c pipe_poll).
 * Nothing is written. Throws SyscallError.
 */
export function pipeHasReader(fd: number): boolean {
  const pfd = Buffer.alloc(8);
  pfd.writeInt32LE(fd, 0);
  pfd.writeInt16LE(4 /* POLLOUT */, 4);
  for (;;) {
    const n = c.poll(pfd, 1, 0);
    if (n >= 0) return (pfd.readInt16LE(6) & 8 /* POLLERR */) === 0;
    if (koffi.errno() !== EINTR) throw new SyscallError('poll', koffi.errno());
  }
}
/**
 * pidfd_getfd(2): a duplicate, in this process and close-on-exec, of fd `targetFd` of the
 * process `pidfd` refers to. Needs ptrace access to it (root here). How the keeper takes
 * custody of spored's stdio fds, and a restarted spored takes them back.
 */
/**
 * keyctl(KEYCTL_JOIN_SESSION_KEYRING, name): join (or create) the session keyring `name`
 * (keyrings(7)); returns its serial. Throws SyscallError (ENOSYS without keyrings).
 */
export function joinSessionKeyring(name: string): number {
  const KEYCTL_JOIN_SESSION_KEYRING = 1;
  return check('keyctl', c.syscallIntStr(SYS.keyctl, KEYCTL_JOIN_SESSION_KEYRING, name) as unknown as number, name);
}
/**
 * Add `bits` to a key's permission mask (keyctl KEYCTL_DESCRIBE, then KEYCTL_SETPERM; the
 * mask is the 4th field of "type;uid;gid;perm;description"). Throws SyscallError.
 */
export function addKeyPermission(serial: number, bits: number): void {
  const KEYCTL_SETPERM = 5, KEYCTL_DESCRIBE = 6;
  const buf = Buffer.alloc(512);
  const n = check('keyctl', c.syscallDescribe(SYS.keyctl, KEYCTL_DESCRIBE, serial, buf, buf.length) as unknown as number, `describe ${serial}`);
  const perm = parseInt(buf.subarray(0, Math.min(n, buf.length)).toString('latin1').split(';')[3] ?? '', 16);
  if (!Number.isFinite(perm)) throw new SyscallError('keyctl', 22, `describe ${serial}: no permission field`);
  check('keyctl', c.syscall3(SYS.keyctl, KEYCTL_SETPERM, serial, ((perm | bits) >>> 0)) as unknown as number, `setperm ${serial}`);
}
export function pidfdGetfd(pidfd: number, targetFd: number): number {
  return check('pidfd_getfd', c.syscall3(SYS.pidfd_getfd, pidfd, targetFd, 0) as unknown as number, `fd ${targetFd}`);
}

/**
 * flock(2) LOCK_EX|LOCK_NB on `fd`: true when this process now holds the lock, false when
 * another open file description holds it (EWOULDBLOCK). The lock lives as long as the fd.
 */
export function tryLockExclusive(fd: number): boolean {
  const r = c.flock(fd, LOCK.EX | LOCK.NB);
  if (r === 0) return true;
  const e = koffi.errno();
  if (e === 11) return false;
  throw new SyscallError('flock', e, `fd ${fd}`);
}

/** pidfd_open(2): an fd that becomes readable when the process exits. */
export function pidfdOpen(pid: number): number {
  return check('pidfd_open', c.syscall2(SYS.pidfd_open, pid, 0) as unknown as number, String(pid));
}
/** pidfd_send_signal(2): signal the process a pidfd refers to (never a reused pid). */
export function pidfdSignal(pidfd: number, sig: number): void {
  check('pidfd_send_signal', c.syscall5(424, pidfd, sig, 0, 0, 0) as unknown as number, String(pidfd));
}
/** Reap one given child; null when it has not exited (WNOHANG) or is not ours. */
export function reapPid(pid: number, block = false): WaitResult | null {
  const st = [0];
  const r = c.waitpid(pid, st, block ? 0 : WNOHANG);
  if (r <= 0) return null;
  return { pid: r, status: st[0] ?? 0 };
}

/** eventfd(2), close-on-exec, with O_NONBLOCK when asked. */
export function eventfd(nonblock: boolean): number {
  return check('eventfd', c.eventfd(0, O.CLOEXEC | (nonblock ? O.NONBLOCK : 0)));
}
/**
 * kcmp(2) KCMP_FILE within this process: whether fds a and b refer to the same open file
 * description. EBADF (either fd closed) counts as "not the same".
 */
export function sameFile(a: number, b: number): boolean {
  const self = c.getpid();
  return Number(c.syscall5(312 /* kcmp */, self, self, 0 /* KCMP_FILE */, a, b)) === 0;
}
/** fcntl F_GETFL / F_GETFD of an fd. */
export function fdFlags(fd: number): { status: number; cloexec: boolean } {
  return { status: check('fcntl', c.fcntl(fd, 3, 0)), cloexec: (check('fcntl', c.fcntl(fd, 1, 0)) & 1) === 1 };
}
/** FIONREAD: bytes waiting to be read from a pipe or socket. */
/**
 * splice(2) from `fdIn` to `fdOut` (one of them a pipe or FIFO), no offsets, SPLICE_F_MOVE |
 * SPLICE_F_NONBLOCK: the bytes move in the kernel and never pass through this process, so
 * a process that dies meanwhile loses none. Returns the count moved (at most `maxBytes`), 0
 * at EOF of `fdIn` (no writer left and nothing buffered), or -1 when nothing can move now
 * (EAGAIN: `fdIn` empty, or `fdOut` full). Throws SyscallError otherwise (EPIPE: `fdOut`
 * has no reader).
 */
export function splice(fdIn: number, fdOut: number, maxBytes: number): number {
  const n = Number(c.splice(fdIn, null, fdOut, null, maxBytes, 1 | 2));
  if (n >= 0) return n;
  const errno = koffi.errno();
  if (errno === 11) return -1;
  throw new SyscallError('splice', errno, `${fdIn}->${fdOut}`);
}

export function pendingBytes(fd: number): number {
  const n = [0];
  check('ioctl(FIONREAD)', c.ioctlOut(fd, 0x541b, n));
  return n[0] ?? 0;
}

// --- landlock (linux/landlock.h; ABI 1..7) --------------------------------------------
/** Landlock ABI version of this kernel, 0 when Landlock is unavailable. */
export function landlockAbi(): number {
  const r = Number(c.syscallPtr3(SYS.landlock_create_ruleset, null as unknown as Buffer, 0, 1 /* _VERSION */));
  return r < 0 ? 0 : r;
}
/**
 * struct landlock_ruleset_attr {handled_access_fs, handled_access_net, scoped} (u64 each),
 * encoded for landlockCreateRulesetFrom; the size passed is 16 bytes without a scope (ABI < 6).
 */
export interface RulesetAttr { attr: Buffer; size: number }
export function landlockRulesetAttr(handledFs: bigint, scoped: bigint, handledNet = 0n): RulesetAttr {
  const attr = Buffer.alloc(24);
  attr.writeBigUInt64LE(handledFs, 0);
  attr.writeBigUInt64LE(handledNet, 8);
  attr.writeBigUInt64LE(scoped, 16);
  return { attr, size: scoped ? 24 : 16 };
}
/** landlock_create_ruleset(2) from an encoded attr (landlockRulesetAttr); returns the ruleset fd. */
export function landlockCreateRulesetFrom(a: RulesetAttr): number {
  return check('landlock_create_ruleset', c.syscallPtr3(SYS.landlock_create_ruleset, a.attr, a.size, 0) as unknown as number);
}
/** LANDLOCK_ACCESS_NET_BIND_TCP | LANDLOCK_ACCESS_NET_CONNECT_TCP (ABI >= 4), linux/landlock.h */
export const LANDLOCK_NET_TCP = 3n;
/** landlock_create_ruleset(2) with struct landlock_ruleset_attr {fs, net, scoped}. */
export function landlockCreateRuleset(handledFs: bigint, scoped: bigint): number {
  return landlockCreateRulesetFrom(landlockRulesetAttr(handledFs, scoped));
}
/** packed struct landlock_path_beneath_attr {u64 allowed_access; s32 parent_fd} (12 bytes), for landlockAddRule */
export function landlockPathBeneath(parentFd: number, allowed: bigint): Buffer {
  const attr = Buffer.alloc(12);
  attr.writeBigUInt64LE(allowed, 0);
  attr.writeInt32LE(parentFd, 8);
  return attr;
}
/** landlock_add_rule(2), LANDLOCK_RULE_PATH_BENEATH, with an encoded rule (landlockPathBeneath). */
export function landlockAddRule(ruleset: number, pathBeneath: Buffer): void {
  check('landlock_add_rule', c.syscallRule(SYS.landlock_add_rule, ruleset, 1, pathBeneath, 0) as unknown as number, `fd ${pathBeneath.readInt32LE(8)}`);
}
/** LANDLOCK_RULE_PATH_BENEATH: `allowed` beneath the file or directory `parentFd` refers to. */
export function landlockAddPath(ruleset: number, parentFd: number, allowed: bigint): void {
  landlockAddRule(ruleset, landlockPathBeneath(parentFd, allowed));
}
export function landlockRestrictSelf(ruleset: number): void {
  check('landlock_restrict_self', c.syscall2(SYS.landlock_restrict_self, ruleset, 0) as unknown as number);
}

// --- network interfaces ---------------------------------------------------------------
/** Bring the loopback interface of the current network namespace up (SIOCSIFFLAGS). */
export function loopbackUp(): void {
  const AF_INET = 2;
  const SIOCGIFFLAGS = 0x8913;
  const SIOCSIFFLAGS = 0x8914;
  const IFF_UP = 0x1;
  const s = check('socket', c.socket(AF_INET, SOCK.DGRAM | SOCK.CLOEXEC, 0));
  try {
    const ifr = Buffer.alloc(40);
    ifr.write('lo', 0);
    check('ioctl(SIOCGIFFLAGS)', c.ioctlPtr(s, SIOCGIFFLAGS, ifr));
    ifr.writeInt16LE(ifr.readInt16LE(16) | IFF_UP, 16);
    check('ioctl(SIOCSIFFLAGS)', c.ioctlPtr(s, SIOCSIFFLAGS, ifr));
  } finally {
    c.close(s);
  }
}

// --- memory, memfd, threads, signals (added for the vm engine) ----------------------


const m = {
  mmap: lib.func('void *mmap(void *, size_t, int, int, int, int64_t)'),
  munmap: lib.func('int munmap(uintptr_t, size_t)'),
  madvise: lib.func('int madvise(uintptr_t, size_t, int)'),
  mprotect: lib.func('int mprotect(uintptr_t, size_t, int)'),
  ftruncate: lib.func('int ftruncate(int, int64_t)'),
  memfd: lib.func('long syscall(long, const char *, unsigned int)'),
  syscall0: lib.func('long syscall(long)'),
  fcntl: lib.func('int fcntl(int, int, int)'),
  // memmove(dst, src, 0) returns dst: the cheapest way to turn an address into a koffi pointer.
  asPointer: lib.func('void *memmove(uintptr_t, uintptr_t, size_t)'),
  pthread_sigmask: lib.func('int pthread_sigmask(int, const uint8_t *, _Out_ uint8_t *)'),
  sigtimedwait: lib.func('int sigtimedwait(const uint8_t *, void *, const int64_t *)'),
  pread: lib.func('long pread(int, _Out_ uint8_t *, size_t, int64_t)'),
  close: lib.func('int close(int)'),
  mmapAt: lib.func('void *mmap(uintptr_t, size_t, int, int, int, int64_t)'),
};

export interface Mapping { addr: bigint; len: number; ptr: unknown }
/** mmap(2); returns the address (bigint) and a koffi pointer usable with koffi.view. */
export function mmap(len: number, prot: number, flags: number, fd: number, offset = 0): Mapping {
  const ptr = m.mmap(null, len, prot, flags, fd, offset);
  const addr = ptr === null ? 0n : koffi.address(ptr);
  if (addr === 0xffffffffffffffffn || addr === 0n) throw new SyscallError('mmap', koffi.errno(), `len=${len}`);
  return { addr, len, ptr };
}
/** The memory of a mapping as a Buffer over it (no copy): a store into it is a store into the mapping. */
export function mappingBytes(mp: Mapping): Buffer { return Buffer.from(koffi.view(mp.ptr as never, mp.len)); }
export function munmap(addr: bigint, len: number): void { check('munmap', m.munmap(addr, len)); }
/** madvise(2) with errno checking (the raw binding above ignores errors on purpose). */
export function madviseRange(addr: bigint, len: number, advice: number): void {
  check('madvise', m.madvise(addr, len, advice), `advice=${advice}`);
}
export function mprotect(addr: bigint, len: number, prot: number): void {
  check('mprotect', m.mprotect(addr, len, prot), `prot=${prot}`);
}
/** Rewrite one byte with its own value: a write fault that leaves the contents alone. */
export function touchForWrite(addr: bigint): void {
  const p = pointerFromAddress(addr);
  koffi.encode(p, 'uint8', koffi.decode(p, 'uint8') as number);
}
export function memfdCreate(name: string, flags: number): number {
  return check('memfd_create', m.memfd(SYS.memfd_create, name, flags), name);
}
export function ftruncate(fd: number, size: number): void { check('ftruncate', m.ftruncate(fd, size)); }
export function addSeals(fd: number, seals: number): void {
  const F_ADD_SEALS = 1033;
  check('fcntl(F_ADD_SEALS)', m.fcntl(fd, F_ADD_SEALS, seals));
}
export function getSeals(fd: number): number {
  const F_GET_SEALS = 1034;
  return check('fcntl(F_GET_SEALS)', m.fcntl(fd, F_GET_SEALS, 0));
}
export function pointerFromAddress(addr: bigint): unknown { return m.asPointer(addr, addr, 0); }
export function gettid(): number { return Number(m.syscall0(SYS.gettid)); }
export function tgkill(tgid: number, tid: number, sig: number): void {
  check('tgkill', c.syscall3(SYS.tgkill, tgid, tid, sig) as unknown as number, `${tid}`);
}
function sigset(sigs: number[]): Buffer {
  const b = Buffer.alloc(128);
  for (const s of sigs) b[(s - 1) >> 3]! |= 1 << ((s - 1) & 7);
  return b;
}
/** Block signals in the calling thread; returns the previous 8-byte kernel sigset. */
export function blockSignals(sigs: number[]): Buffer {
  const old = Buffer.alloc(128);
  const rc = m.pthread_sigmask(0 /* SIG_BLOCK */, sigset(sigs), old);
  if (rc !== 0) throw new SyscallError('pthread_sigmask', rc);
  return old.subarray(0, 8);
}
/** Consume one pending signal from the set without waiting; true if one was pending. */
export function takePendingSignal(sigs: number[]): boolean {
  const zero = [0n, 0n];
  const r = m.sigtimedwait(sigset(sigs), null, zero);
  return r > 0;
}
/** pread(2) into buf at a file offset; returns the byte count. */
export function pread(fd: number, buf: Buffer, offset: bigint): number {
  return check('pread', m.pread(fd, buf, buf.length, offset));
}
/**
 * close(2) on a libuv pool thread (koffi async call). For fds whose last close does slow
 * kernel work: closing a KVM VM fd tears the VM down synchronously (15-25 ms measured here).
 */
export function closeAsync(fd: number): Promise<void> {
  return new Promise((resolve, reject) => {
    m.close.async(fd, (err: unknown, rc: number) => {
      if (err) reject(err as Error);
      else if (rc < 0) reject(new SyscallError('close', EBADF_OR_UNKNOWN, String(fd)));
      else resolve();
    });
  });
}
const EBADF_OR_UNKNOWN = 9;
/** mmap(2) with MAP_FIXED at addr (replaces whatever was mapped there). */
export function mmapFixed(addr: bigint, len: number, prot: number, flags: number, fd: number, offset = 0): Mapping {
  const ptr = m.mmapAt(addr, len, prot, flags | MAP.FIXED, fd, offset);
  const got = ptr === null ? 0n : koffi.address(ptr);
  if (got !== addr) throw new SyscallError('mmap', koffi.errno(), `fixed 0x${addr.toString(16)} len=${len}`);
  return { addr, len, ptr };
}

// --- signal dispositions before execve (added for OCI conformance with runc) -------------
// A fresh container process has every signal at SIG_DFL and none blocked. execve keeps
// ignored signals and the signal mask, and the process engine forks from Node, which ignores
// SIGPIPE and SIGXFSZ: without this, `yes | head -1` in a container gets EPIPE errors instead
// of dying of SIGPIPE. Used by engines/process/container-init.ts.
const sigDfl = lib.func('void *signal(int, void *)');
const rtSigaction = lib.func('long syscall(long, long, const uint8_t *, uint8_t *, long)');
/** rt_sigaction(sig, {SIG_DFL}, NULL, 8): a struct kernel_sigaction of zeros is SIG_DFL, no flags, empty mask. */
function rawSigDfl(sig: number): void {
  const RT_SIGACTION = 13;
  rtSigaction(RT_SIGACTION, sig, Buffer.alloc(32), null, 8);
}
/** SigIgn and SigCgt of /proc/self/status (SIGPIPE and SIGXFSZ ignored, all caught, without /proc). */
function signalMasks(): { ignored: bigint; caught: bigint } {
  let ignored = (1n << 12n) | (1n << 24n); // SIGPIPE, SIGXFSZ
  let caught = -1n;
  try {
    const status = readFileSync('/proc/self/status', 'utf8');
    const ign = /^SigIgn:\s*([0-9a-f]+)$/m.exec(status);
    if (ign) ignored = BigInt(`0x${ign[1]}`);
    const cgt = /^SigCgt:\s*([0-9a-f]+)$/m.exec(status);
    if (cgt) caught = BigInt(`0x${cgt[1]}`);
  } catch {
    /* no /proc */
  }
  return { ignored, caught };
}

/**
 * resetSignalsForExec's calls, made where they change nothing: SIG_DFL again for one signal
 * that has it, and an empty set added to the mask. For a process that forks children which
 * later reset (container-sys.ts warmContainerSys).
 */
export function warmSignalReset(): void {
  const { ignored, caught } = signalMasks();
  // a standard signal neither ignored nor caught (and not SIGKILL/SIGSTOP) is at SIG_DFL
  for (let s = 1; s <= 31; s++) {
    if (s === 9 || s === 19 || ((ignored | caught) >> BigInt(s - 1)) & 1n) continue;
    sigDfl(s, null);
    break;
  }
  const rc = m.pthread_sigmask(0 /* SIG_BLOCK */, sigset([]), Buffer.alloc(128));
  if (rc !== 0) throw new SyscallError('pthread_sigmask', rc);
}

/** Set by cacheIgnoredSignals: this process's SigIgn, read ahead. */
let ignoredAhead: bigint | null = null;

/**
 * Read which signals are ignored now, for resetSignalsForExec to use instead of reading
 * /proc/self/status itself (~0.1 ms in a fresh fork). Only for a process whose dispositions
 * do not change before it resets them: a container shell, idle before its plan.
 */
export function cacheIgnoredSignals(): void {
  ignoredAhead = signalMasks().ignored;
}

/**
 * For a process about to execve: every signal the kernel reports as ignored (SigIgn in
 * /proc/self/status, or the set cacheIgnoredSignals read ahead; SIGPIPE and SIGXFSZ when /proc is
 * not there) back to SIG_DFL, and an
 * empty signal mask.
 */
export function resetSignalsForExec(): void {
  const ignored = ignoredAhead ?? signalMasks().ignored;
  for (let s = 1; s <= 64; s++) {
    if (!((ignored >> BigInt(s - 1)) & 1n)) continue;
    // glibc's signal() refuses its own 32 and 33 (EINVAL): those through rt_sigaction itself
    if (s === 32 || s === 33) rawSigDfl(s); else sigDfl(s, null);
  }
  const rc = m.pthread_sigmask(2 /* SIG_SETMASK */, sigset([]), Buffer.alloc(128));
  if (rc !== 0) throw new SyscallError('pthread_sigmask', rc);
}
