// Linux x86_64 constants for the syscall layer, koffi-free: pure modules (plans, the sandbox
// description) read them without loading libc. Values from the kernel's uapi headers
// (linux/sched.h, linux/mount.h, asm-generic/fcntl.h, linux/prctl.h, linux/landlock.h,
// asm-generic/mman-common.h, arch/x86/entry/syscalls/syscall_64.tbl); libc.ts re-exports them.

export const CLONE = {
  NEWNS: 0x00020000,
  NEWCGROUP: 0x02000000,
  NEWUTS: 0x04000000,
  NEWIPC: 0x08000000,
  NEWUSER: 0x10000000,
  NEWPID: 0x20000000,
  NEWNET: 0x40000000,
  NEWTIME: 0x00000080,
} as const;

export const MS = {
  RDONLY: 1, NOSUID: 2, NODEV: 4, NOEXEC: 8, SYNCHRONOUS: 16, REMOUNT: 32, MANDLOCK: 64,
  DIRSYNC: 128, NOSYMFOLLOW: 256, NOATIME: 1024, NODIRATIME: 2048, BIND: 4096, MOVE: 8192,
  REC: 16384, SILENT: 32768, UNBINDABLE: 1 << 17, PRIVATE: 1 << 18, SLAVE: 1 << 19,
  SHARED: 1 << 20, RELATIME: 1 << 21, STRICTATIME: 1 << 24, LAZYTIME: 1 << 25,
} as const;

export const MNT_DETACH = 2;

export const O = {
  RDONLY: 0, WRONLY: 1, RDWR: 2, CREAT: 0o100, EXCL: 0o200, NOCTTY: 0o400, TRUNC: 0o1000,
  APPEND: 0o2000, NONBLOCK: 0o4000, DIRECTORY: 0o200000, NOFOLLOW: 0o400000, CLOEXEC: 0o2000000,
  PATH: 0o10000000,
} as const;

export const PR = {
  SET_PDEATHSIG: 1, SET_DUMPABLE: 4, SET_KEEPCAPS: 8, SET_NAME: 15, CAPBSET_DROP: 24, SET_SECUREBITS: 28,
  SET_CHILD_SUBREAPER: 36, SET_NO_NEW_PRIVS: 38, CAP_AMBIENT: 47,
} as const;

export const PR_CAP_AMBIENT_RAISE = 2;

export const PR_CAP_AMBIENT_CLEAR_ALL = 4;

export const MADV_DOFORK = 11;

export const WNOHANG = 1;

export const AT_FDCWD = -100;

export const TIOCSCTTY = 0x540e;

export const TIOCSWINSZ = 0x5414;

export const AF_UNIX = 1;

export const SOCK = { STREAM: 1, DGRAM: 2, SEQPACKET: 5, NONBLOCK: 0o4000, CLOEXEC: 0o2000000 } as const;

/** Most fds one message may carry (SCM_MAX_FD is 253; spore's messages carry at most 2). */
export const MAX_FDS_PER_MESSAGE = 8;

export const EPOLLIN = 0x001;

export const EPOLLERR = 0x008;

export const EPOLLHUP = 0x010;

export const LANDLOCK_ACCESS_FS = {
  EXECUTE: 1, WRITE_FILE: 2, READ_FILE: 4, READ_DIR: 8, REMOVE_DIR: 16, REMOVE_FILE: 32, MAKE_CHAR: 64,
  MAKE_DIR: 128, MAKE_REG: 256, MAKE_SOCK: 512, MAKE_FIFO: 1024, MAKE_BLOCK: 2048, MAKE_SYM: 4096,
  REFER: 8192, TRUNCATE: 16384, IOCTL_DEV: 32768,
} as const;

export const LANDLOCK_SCOPE = { ABSTRACT_UNIX_SOCKET: 1, SIGNAL: 2 } as const;

export const PROT = { NONE: 0, READ: 1, WRITE: 2, EXEC: 4 } as const;

export const MAP = { SHARED: 0x01, PRIVATE: 0x02, FIXED: 0x10, ANONYMOUS: 0x20, NORESERVE: 0x4000, POPULATE: 0x8000 } as const;

export const MFD = { CLOEXEC: 1, ALLOW_SEALING: 2, HUGETLB: 4 } as const;

export const MADV = {
  NORMAL: 0, RANDOM: 1, SEQUENTIAL: 2, WILLNEED: 3, DONTNEED: 4, REMOVE: 9, DONTFORK: 10, DOFORK: 11,
  MERGEABLE: 12, HUGEPAGE: 14, NOHUGEPAGE: 15, POPULATE_READ: 22, POPULATE_WRITE: 23,
} as const;

export const F_SEAL = { SEAL: 1, SHRINK: 2, GROW: 4, WRITE: 8, FUTURE_WRITE: 16 } as const;

export const SIG = { USR2: 12 } as const;

/** struct mount_attr's attr_set/attr_clr bits (linux/mount.h), for mount_setattr(2). */
export const MOUNT_ATTR = {
  RDONLY: 0x1, NOSUID: 0x2, NODEV: 0x4, NOEXEC: 0x8,
  /** the atime mode is one field: RELATIME is 0 in it; clearing it takes _ATIME */
  _ATIME: 0x70, RELATIME: 0x0, NOATIME: 0x10, STRICTATIME: 0x20,
  NODIRATIME: 0x80, NOSYMFOLLOW: 0x200000,
} as const;
/** mount_setattr(2) flag: the mount and every mount below it */
export const AT_RECURSIVE = 0x8000;

/** x86_64 syscall numbers for calls glibc does not wrap. */
export const SYS = {
  keyctl: 250,
  mount_setattr: 442,
  openat2: 437,
  gettid: 186,
  tgkill: 234,
  memfd_create: 319,
  pivot_root: 155,
  capget: 125,
  capset: 126,
  seccomp: 317,
  pidfd_open: 434,
  pidfd_getfd: 438,
  close_range: 436,
  prlimit64: 302,
  landlock_create_ruleset: 444,
  landlock_add_rule: 445,
  landlock_restrict_self: 446,
} as const;

/** flock(2) operations (sys/file.h). */
export const LOCK = { SH: 1, EX: 2, NB: 4, UN: 8 } as const;

/** openat2(2) resolve flags (linux/openat2.h) */
export const RESOLVE = { NO_XDEV: 0x01, NO_MAGICLINKS: 0x02, NO_SYMLINKS: 0x04, BENEATH: 0x08, IN_ROOT: 0x10 } as const;
