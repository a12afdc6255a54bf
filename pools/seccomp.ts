// Seccomp profiles compiled once per daemon: OCI LinuxSeccomp → BPF program via libseccomp,
// cached by the sha256 of the profile's canonical JSON. Sandboxes only install the cached
// program (seccomp(2) with SECCOMP_SET_MODE_FILTER), which removes per-start compilation —
// one of the contention points the design moves off the start path.

import { createHash } from 'node:crypto';
import { InvalidArgument, SyscallError } from '../sys/errors.js';
import type { LinuxSeccomp, LinuxSeccompArg, LinuxSyscall } from '../protocols/oci/spec.js';
import {
  type ScmpArgCmp, type ScmpFilterCtx, SCMP_ACT, SCMP_CMP, SCMP_FLTATR,
  seccompArchAdd, seccompArchNative, seccompArchResolveName, seccompAttrSet, seccompExportBpf, seccompInit,
  seccompRelease, seccompRuleAddArray, seccompSyscallResolveName,
} from '../sys/libseccomp.js';

export interface CompiledFilter {
  /** sha256 (hex) of the canonical JSON of the profile. */
  hash: string;
  /** struct sock_filter[] (8 bytes each), ready for struct sock_fprog. */
  bpf: Buffer;
  /** SECCOMP_FILTER_FLAG_* bits for the seccomp(2) call. */
  flags: number;
  instructions: number;
  /** Syscall names unknown to libseccomp on this arch/version (skipped, like runc). */
  skipped: readonly string[];
}

/** seccomp(2) constants for installers. */
export const SECCOMP_SET_MODE_FILTER = 1;
export const SECCOMP_FILTER_FLAG = { TSYNC: 1, LOG: 2, SPEC_ALLOW: 4, NEW_LISTENER: 8, TSYNC_ESRCH: 16, WAIT_KILLABLE_RECV: 32 } as const;

const EPERM = 1;

// ---- pure mapping -------------------------------------------------------------------------

/** OCI action (+ errno/trace value) → libseccomp action value. */
export function actionValue(action: string, errnoRet: number | undefined, defaultErrno = EPERM): number {
  switch (action) {
    case 'SCMP_ACT_KILL':
    case 'SCMP_ACT_KILL_THREAD': return SCMP_ACT.KILL_THREAD;
    case 'SCMP_ACT_KILL_PROCESS': return SCMP_ACT.KILL_PROCESS;
    case 'SCMP_ACT_TRAP': return SCMP_ACT.TRAP;
    case 'SCMP_ACT_ERRNO': return SCMP_ACT.errno(errnoRet ?? defaultErrno);
    case 'SCMP_ACT_TRACE': return SCMP_ACT.trace(errnoRet ?? defaultErrno);
    case 'SCMP_ACT_ALLOW': return SCMP_ACT.ALLOW;
    case 'SCMP_ACT_LOG': return SCMP_ACT.LOG;
    case 'SCMP_ACT_NOTIFY': throw new InvalidArgument('seccomp notify not supported (SCMP_ACT_NOTIFY)');
    default: throw new InvalidArgument(`unknown seccomp action "${action}"`);
  }
}

/** OCI arch name → libseccomp arch name: SCMP_ARCH_X86_64 → x86_64. */
export function archName(ociArch: string): string {
  if (!/^SCMP_ARCH_[A-Z0-9_]+$/.test(ociArch)) throw new InvalidArgument(`unknown seccomp architecture "${ociArch}"`);
  return ociArch.slice('SCMP_ARCH_'.length).toLowerCase();
}

export function flagValue(flag: string): number {
  switch (flag) {
    case 'SECCOMP_FILTER_FLAG_TSYNC': return SECCOMP_FILTER_FLAG.TSYNC;
    case 'SECCOMP_FILTER_FLAG_LOG': return SECCOMP_FILTER_FLAG.LOG;
    case 'SECCOMP_FILTER_FLAG_SPEC_ALLOW': return SECCOMP_FILTER_FLAG.SPEC_ALLOW;
    case 'SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV': throw new InvalidArgument('SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV needs seccomp notify, which is not supported');
    default: throw new InvalidArgument(`unknown seccomp flag "${flag}"`);
  }
}

export function opValue(op: string): number {
  const m: Record<string, number> = {
    SCMP_CMP_NE: SCMP_CMP.NE, SCMP_CMP_LT: SCMP_CMP.LT, SCMP_CMP_LE: SCMP_CMP.LE, SCMP_CMP_EQ: SCMP_CMP.EQ,
    SCMP_CMP_GE: SCMP_CMP.GE, SCMP_CMP_GT: SCMP_CMP.GT, SCMP_CMP_MASKED_EQ: SCMP_CMP.MASKED_EQ,
  };
  const v = Object.hasOwn(m, op) ? m[op] : undefined;
  if (v === undefined) throw new InvalidArgument(`unknown seccomp operator "${op}"`);
  return v;
}

function u64(n: number | undefined): bigint {
  if (n === undefined) return 0n;
  if (!Number.isInteger(n)) throw new InvalidArgument(`seccomp argument value ${n} is not an integer`);
  return BigInt.asUintN(64, BigInt(n));
}

/** For MASKED_EQ, OCI `value` is the mask and `valueTwo` the expected result (libseccomp order). */
export function argCmp(a: LinuxSeccompArg): ScmpArgCmp {
  if (!Number.isInteger(a.index) || a.index < 0 || a.index > 5) throw new InvalidArgument(`seccomp argument index ${a.index} (want 0..5)`);
  return { arg: a.index, op: opValue(a.op), datumA: u64(a.value), datumB: u64(a.valueTwo) };
}

/**
 * Conditions of one OCI rule as libseccomp rule groups. libseccomp cannot AND two comparisons
 * on the same argument, so (like runc) a rule that repeats an index becomes one rule per
 * condition (OR); otherwise all conditions form one rule (AND).
 */
export function conditionGroups(args: LinuxSeccompArg[] | undefined): ScmpArgCmp[][] {
  const conds = (args ?? []).map(argCmp);
  if (conds.length === 0) return [[]];
  const seen = new Set<number>();
  const repeated = conds.some((c) => (seen.has(c.arg) ? true : (seen.add(c.arg), false)));
  return repeated ? conds.map((c) => [c]) : [conds];
}

/** JSON with object keys sorted recursively, so equal profiles hash equally. */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o).filter((k) => o[k] !== undefined).sort().map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`).join(',')}}`;
  }
  return JSON.stringify(v);
}

export function profileHash(profile: LinuxSeccomp): string {
  return createHash('sha256').update(canonicalJson(profile)).digest('hex');
}

// ---- compile + cache ----------------------------------------------------------------------

const cache = new Map<string, CompiledFilter>();
const cacheCounters = { hits: 0, misses: 0 };

export function seccompCacheStats(): { hits: number; misses: number; size: number } {
  return { ...cacheCounters, size: cache.size };
}

/** For tests and profile reloads. */
export function clearSeccompCache(): void {
  cache.clear();
  cacheCounters.hits = 0;
  cacheCounters.misses = 0;
}

function addRules(ctx: ScmpFilterCtx, rule: LinuxSyscall, defaultAction: number, skipped: Set<string>): void {
  if (!Array.isArray(rule.names) || rule.names.length === 0) throw new InvalidArgument('seccomp rule without syscall names');
  const action = actionValue(rule.action, rule.errnoRet);
  const groups = conditionGroups(rule.args);
  // A rule whose action equals the default is a no-op and libseccomp rejects it (EACCES); skip like runc.
  if (action === defaultAction) return;
  for (const name of rule.names) {
    const nr = seccompSyscallResolveName(name);
    if (nr === undefined) {
      skipped.add(name);
      continue;
    }
    for (const g of groups) {
      const rc = seccompRuleAddArray(ctx, action, nr, g);
      if (rc < 0) throw new InvalidArgument(`seccomp rule for ${name} (${rule.action}) rejected by libseccomp: errno ${-rc}`);
    }
  }
}

function compileUncached(profile: LinuxSeccomp, hash: string): CompiledFilter {
  if (profile.listenerPath) throw new InvalidArgument('seccomp notify not supported (listenerPath set)');
  const defaultAction = actionValue(profile.defaultAction, profile.defaultErrnoRet);
  const flags = (profile.flags ?? []).reduce((acc, f) => acc | flagValue(f), 0);
  const arches = (profile.architectures ?? []).map((a) => {
    const t = seccompArchResolveName(archName(a));
    if (t === undefined) throw new InvalidArgument(`unknown seccomp architecture "${a}"`);
    return t;
  });
  let ctx: ScmpFilterCtx;
  try {
    ctx = seccompInit(defaultAction);
  } catch (e) {
    // e.g. SCMP_ACT_ERRNO with an errno libseccomp refuses (>= 4095): the profile's fault.
    if (e instanceof SyscallError) throw new InvalidArgument(`seccomp defaultAction ${profile.defaultAction} (errno ${profile.defaultErrnoRet ?? 'default'}) rejected by libseccomp: ${e.message}`, { cause: e });
    throw e;
  }
  try {
    // The BPF is exported, not loaded by libseccomp: NO_NEW_PRIVS is the installer's job.
    seccompAttrSet(ctx, SCMP_FLTATR.CTL_NNP, 0);
    const native = seccompArchNative();
    for (const t of new Set(arches)) {
      if (t === native) continue;
      try {
        seccompArchAdd(ctx, t);
      } catch (e) {
        if (e instanceof SyscallError) throw new InvalidArgument(`seccomp architectures: libseccomp refused one (${e.message})`, { cause: e });
        throw e;
      }
    }
    const skipped = new Set<string>();
    for (const rule of profile.syscalls ?? []) addRules(ctx, rule, defaultAction, skipped);
    const bpf = seccompExportBpf(ctx);
    return Object.freeze({ hash, bpf, flags, instructions: bpf.length / 8, skipped: Object.freeze([...skipped].sort()) });
  } finally {
    seccompRelease(ctx);
  }
}

function show(v: unknown): string {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 80 ? `${s.slice(0, 80)}...` : s;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function checkStrings(v: unknown, field: string, optional = true): void {
  if (v === undefined && optional) return;
  if (!Array.isArray(v)) throw new InvalidArgument(`linux.seccomp.${field} must be an array of strings, got ${show(v)}`);
  const i = v.findIndex((x) => typeof x !== 'string');
  if (i >= 0) throw new InvalidArgument(`linux.seccomp.${field}[${i}] must be a string, got ${show(v[i])}`);
}

function checkUint(v: unknown, field: string, max: number): void {
  if (v === undefined) return;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max) throw new InvalidArgument(`linux.seccomp.${field} must be an integer 0..${max}, got ${show(v)}`);
}

/**
 * The profile comes from config.json: check every field's type before any of it reaches
 * libseccomp through koffi, which takes a number where a char * belongs as an address (a
 * syscall name 1 crashed spored with SIGSEGV) and throws TypeErrors for other wrong types.
 * (Fuzzing finding: fuzz/corpus/oci/regress-*.)
 */
export function checkProfile(profile: unknown): asserts profile is LinuxSeccomp {
  if (!isObject(profile)) throw new InvalidArgument(`linux.seccomp must be an object, got ${show(profile)}`);
  if (typeof profile.defaultAction !== 'string') throw new InvalidArgument(`linux.seccomp.defaultAction must be a string, got ${show(profile.defaultAction)}`);
  checkUint(profile.defaultErrnoRet, 'defaultErrnoRet', 0xffff);
  checkStrings(profile.architectures, 'architectures');
  checkStrings(profile.flags, 'flags');
  if (profile.listenerPath !== undefined && typeof profile.listenerPath !== 'string') throw new InvalidArgument(`linux.seccomp.listenerPath must be a string, got ${show(profile.listenerPath)}`);
  if (profile.syscalls === undefined) return;
  if (!Array.isArray(profile.syscalls)) throw new InvalidArgument(`linux.seccomp.syscalls must be an array, got ${show(profile.syscalls)}`);
  for (const [i, rule] of profile.syscalls.entries()) {
    const at = `syscalls[${i}]`;
    if (!isObject(rule)) throw new InvalidArgument(`linux.seccomp.${at} must be an object, got ${show(rule)}`);
    checkStrings(rule.names, `${at}.names`, false);
    if (typeof rule.action !== 'string') throw new InvalidArgument(`linux.seccomp.${at}.action must be a string, got ${show(rule.action)}`);
    checkUint(rule.errnoRet, `${at}.errnoRet`, 0xffff);
    if (rule.args === undefined) continue;
    if (!Array.isArray(rule.args)) throw new InvalidArgument(`linux.seccomp.${at}.args must be an array, got ${show(rule.args)}`);
    for (const [j, a] of rule.args.entries()) {
      if (!isObject(a)) throw new InvalidArgument(`linux.seccomp.${at}.args[${j}] must be an object, got ${show(a)}`);
      if (typeof a.op !== 'string') throw new InvalidArgument(`linux.seccomp.${at}.args[${j}].op must be a string, got ${show(a.op)}`);
      // (a negative value is taken as its 64-bit two's complement, see u64)
      for (const k of ['index', 'value', 'valueTwo'] as const) {
        if (k !== 'index' && a[k] === undefined) continue;
        if (typeof a[k] !== 'number' || !Number.isInteger(a[k])) {
          throw new InvalidArgument(`linux.seccomp.${at}.args[${j}].${k} must be an integer, got ${show(a[k])}`);
        }
      }
    }
  }
}

/**
 * Whether a spec's linux.seccomp asks for a filter: absent, or with no defaultAction and no
 * syscalls (`{}`), it does not, as runc reads it ("assume seccomp disabled").
 */
export function seccompInSpec(profile: LinuxSeccomp | undefined | null): profile is LinuxSeccomp {
  if (profile === undefined || profile === null) return false;
  if (typeof profile !== 'object') return true; // checkProfile names what is wrong
  const p = profile as { defaultAction?: unknown; syscalls?: unknown };
  return !((p.defaultAction === undefined || p.defaultAction === '') && (p.syscalls === undefined || p.syscalls === null || (Array.isArray(p.syscalls) && p.syscalls.length === 0)));
}

/** Compile (or fetch from cache) the BPF program for an OCI seccomp profile. */
export function compileSeccomp(profile: LinuxSeccomp): CompiledFilter {
  checkProfile(profile);
  const hash = profileHash(profile);
  const hit = cache.get(hash);
  if (hit) {
    cacheCounters.hits++;
    return hit;
  }
  cacheCounters.misses++;
  const compiled = compileUncached(profile, hash);
  cache.set(hash, compiled);
  return compiled;
}

// ---- default profile -------------------------------------------------------------------------

/**
 * Syscalls a normal Linux program needs, modeled on the Docker/containerd default allow-list.
 * Deliberately absent: mount/umount2/pivot_root, ptrace, process_vm_*, kexec_*, bpf,
 * perf_event_open, keyctl/add_key/request_key, setns, open_by_handle_at, *_module, reboot,
 * swapon/swapoff, acct, settimeofday/clock_settime/adjtimex writes, io_uring_*, userfaultfd,
 * fanotify_init, lookup_dcookie, quotactl, vhangup, syslog, sysfs, uselib,
 * ustat, nfsservctl, personality (except safe values below), unshare/clone with namespace flags.
 */
const DEFAULT_ALLOW: readonly string[] = [
  'accept', 'accept4', 'access', 'alarm', 'arch_prctl', 'bind', 'brk', 'cachestat', 'capget', 'capset',
  'chdir', 'chmod', 'chown', 'chown32', 'clock_adjtime', 'clock_getres', 'clock_getres_time64', 'clock_gettime',
  'clock_gettime64', 'clock_nanosleep', 'clock_nanosleep_time64', 'close', 'close_range', 'connect',
  'copy_file_range', 'creat', 'dup', 'dup2', 'dup3', 'epoll_create', 'epoll_create1', 'epoll_ctl', 'epoll_ctl_old',
  'epoll_pwait', 'epoll_pwait2', 'epoll_wait', 'epoll_wait_old', 'eventfd', 'eventfd2', 'execve', 'execveat', 'exit',
  'exit_group', 'faccessat', 'faccessat2', 'fadvise64', 'fadvise64_64', 'fallocate', 'fchdir', 'fchmod', 'fchmodat',
  'fchmodat2', 'fchown', 'fchown32', 'fchownat', 'fcntl', 'fcntl64', 'fdatasync', 'fgetxattr', 'flistxattr', 'flock',
  'fork', 'fremovexattr', 'fsetxattr', 'fstat', 'fstat64', 'fstatat64', 'fstatfs', 'fstatfs64', 'fsync', 'ftruncate',
  'ftruncate64', 'futex', 'futex_requeue', 'futex_time64', 'futex_wait', 'futex_waitv', 'futex_wake', 'futimesat',
  'get_mempolicy', 'get_robust_list', 'get_thread_area', 'getcpu', 'getcwd', 'getdents', 'getdents64', 'getegid',
  'getegid32', 'geteuid', 'geteuid32', 'getgid', 'getgid32', 'getgroups', 'getgroups32', 'getitimer', 'getpeername',
  'getpgid', 'getpgrp', 'getpid', 'getppid', 'getpriority', 'getrandom', 'getresgid', 'getresgid32', 'getresuid',
  'getresuid32', 'getrlimit', 'getrusage', 'getsid', 'getsockname', 'getsockopt', 'gettid', 'gettimeofday', 'getuid',
  'getuid32', 'getxattr', 'inotify_add_watch', 'inotify_init', 'inotify_init1', 'inotify_rm_watch', 'io_cancel',
  'io_destroy', 'io_getevents', 'io_pgetevents', 'io_pgetevents_time64', 'io_setup', 'io_submit', 'ioctl', 'ioprio_get',
  'ioprio_set', 'ipc', 'kill', 'landlock_add_rule', 'landlock_create_ruleset', 'landlock_restrict_self', 'lchown',
  'lchown32', 'lgetxattr', 'link', 'linkat', 'listen', 'listxattr', 'llistxattr', '_llseek', 'lremovexattr', 'lseek',
  'lsetxattr', 'lstat', 'lstat64', 'madvise', 'map_shadow_stack', 'membarrier', 'memfd_create', 'memfd_secret',
  'mincore', 'mkdir', 'mkdirat', 'mknod', 'mknodat', 'mlock', 'mlock2', 'mlockall', 'mmap', 'mmap2', 'mprotect',
  'mq_getsetattr', 'mq_notify', 'mq_open', 'mq_timedreceive', 'mq_timedreceive_time64', 'mq_timedsend',
  'mq_timedsend_time64', 'mq_unlink', 'mremap', 'mseal', 'msgctl', 'msgget', 'msgrcv', 'msgsnd', 'msync', 'munlock',
  'munlockall', 'munmap', 'name_to_handle_at', 'nanosleep', 'newfstatat', '_newselect', 'open', 'openat', 'openat2',
  'pause', 'pidfd_open', 'pidfd_send_signal', 'pipe', 'pipe2', 'pkey_alloc', 'pkey_free', 'pkey_mprotect', 'poll',
  'ppoll', 'ppoll_time64', 'prctl', 'pread64', 'preadv', 'preadv2', 'prlimit64', 'process_mrelease', 'pselect6',
  'pselect6_time64', 'pwrite64', 'pwritev', 'pwritev2', 'read', 'readahead', 'readlink', 'readlinkat', 'readv',
  'recv', 'recvfrom', 'recvmmsg', 'recvmmsg_time64', 'recvmsg', 'remap_file_pages', 'removexattr', 'rename',
  'renameat', 'renameat2', 'restart_syscall', 'rmdir', 'rseq', 'rt_sigaction', 'rt_sigpending', 'rt_sigprocmask',
  'rt_sigqueueinfo', 'rt_sigreturn', 'rt_sigsuspend', 'rt_sigtimedwait', 'rt_sigtimedwait_time64', 'rt_tgsigqueueinfo',
  'sched_get_priority_max', 'sched_get_priority_min', 'sched_getaffinity', 'sched_getattr', 'sched_getparam',
  'sched_getscheduler', 'sched_rr_get_interval', 'sched_rr_get_interval_time64', 'sched_setaffinity', 'sched_setattr',
  'sched_setparam', 'sched_setscheduler', 'sched_yield', 'seccomp', 'select', 'semctl', 'semget', 'semop',
  'semtimedop', 'semtimedop_time64', 'send', 'sendfile', 'sendfile64', 'sendmmsg', 'sendmsg', 'sendto',
  'set_robust_list', 'set_thread_area', 'set_tid_address', 'setfsgid', 'setfsgid32', 'setfsuid', 'setfsuid32',
  'setgid', 'setgid32', 'setgroups', 'setgroups32', 'setitimer', 'setpgid', 'setpriority', 'setregid', 'setregid32',
  'setresgid', 'setresgid32', 'setresuid', 'setresuid32', 'setreuid', 'setreuid32', 'setrlimit', 'setsid',
  'setsockopt', 'setuid', 'setuid32', 'setxattr', 'shmat', 'shmctl', 'shmdt', 'shmget', 'shutdown', 'sigaltstack',
  'signalfd', 'signalfd4', 'sigprocmask', 'sigreturn', 'socketcall', 'socketpair', 'splice', 'stat', 'stat64',
  'statfs', 'statfs64', 'statx', 'symlink', 'symlinkat', 'sync', 'sync_file_range', 'syncfs', 'sysinfo', 'tee',
  'tgkill', 'time', 'timer_create', 'timer_delete', 'timer_getoverrun', 'timer_gettime', 'timer_gettime64',
  'timer_settime', 'timer_settime64', 'timerfd_create', 'timerfd_gettime', 'timerfd_gettime64', 'timerfd_settime',
  'timerfd_settime64', 'times', 'tkill', 'truncate', 'truncate64', 'ugetrlimit', 'umask', 'uname', 'unlink',
  'unlinkat', 'utime', 'utimensat', 'utimensat_time64', 'utimes', 'vfork', 'vmsplice', 'wait4', 'waitid', 'waitpid',
  'write', 'writev',
];

/** CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET. */
const CLONE_NS_MASK = 0x7e020000;
/** The same plus CLONE_NEWTIME (0x80), which only unshare/clone3 accept (clone uses the low byte for the exit signal). */
const UNSHARE_NS_MASK = CLONE_NS_MASK | 0x80;
const ENOSYS = 38;
const AF_VSOCK = 40;

/** Default-deny (EPERM) profile allowing what busybox, node and python need. */
export function defaultProfile(): LinuxSeccomp {
  return {
    defaultAction: 'SCMP_ACT_ERRNO',
    defaultErrnoRet: EPERM,
    architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'],
    syscalls: [
      { names: [...DEFAULT_ALLOW], action: 'SCMP_ACT_ALLOW' },
      // Only the personalities libc and node use (PER_LINUX, UNAME26, PER_LINUX32, query).
      ...[0x0, 0x8, 0x20000, 0x20008, 0xffffffff].map((v) => ({
        names: ['personality'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: v, op: 'SCMP_CMP_EQ' as const }],
      })),
      // clone without namespace flags (x86_64/x86: flags are argument 0).
      { names: ['clone'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: CLONE_NS_MASK, valueTwo: 0, op: 'SCMP_CMP_MASKED_EQ' }] },
      // clone3 takes a struct pointer BPF cannot inspect: ENOSYS makes glibc fall back to clone.
      { names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: ENOSYS },
      { names: ['unshare'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: UNSHARE_NS_MASK, valueTwo: 0, op: 'SCMP_CMP_MASKED_EQ' }] },
      { names: ['socket'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: AF_VSOCK, op: 'SCMP_CMP_NE' }] },
    ],
  };
}

const AF_UNIX = 1;
const AF_NETLINK = 16;
/** Default-profile calls a function may not make at all, or only on itself (functionProfile). */
const FUNCTION_DROPS = new Set([
  'prlimit64', 'sched_setaffinity', 'sched_setattr', 'sched_setparam', 'sched_setscheduler', 'setpriority', 'ioprio_set',
  'ipc', 'msgctl', 'msgget', 'msgrcv', 'msgsnd', 'semctl', 'semget', 'semop', 'semtimedop', 'semtimedop_time64',
  'shmat', 'shmctl', 'shmdt', 'shmget',
  'io_setup', 'io_submit', 'io_getevents', 'io_pgetevents', 'io_pgetevents_time64', 'io_cancel', 'io_destroy',
]);
const NETLINK_ROUTE = 0;

/**
 * The filter a function lineage installs on itself before its init code runs (and every
 * instance inherits): the default profile, narrowed where a function's sandbox differs from
 * a container's.
 * - Sockets: AF_UNIX, and AF_NETLINK with NETLINK_ROUTE (glibc's getaddrinfo and
 *   getifaddrs, Node's os.networkInterfaces). No AF_INET/AF_INET6 at all: the lineage's
 *   network namespace has only loopback, where the only peers are the function's own seed
 *   and concurrent instances, and Landlock (ABI 4-6) covers only plain TCP bind/connect, not
 *   UDP, MPTCP (protocol 262), TCP Fast Open (sendto with MSG_FASTOPEN) or listen() without
 *   bind(). NETLINK_USERSOCK would let two unprivileged sockets message each other.
 * - x86_64 only: a 64-bit process can still enter the 32-bit ABI with `int 0x80`, where
 *   socketcall(2) hides socket's arguments behind a pointer BPF cannot read. Calls from any
 *   other ABI hit libseccomp's bad-arch action (the thread is killed).
 * - Calls that change another process (rlimits, priority, CPU affinity, scheduling, I/O
 *   priority) only on the caller itself (pid 0): every process of a lineage runs as the
 *   same uid, so one instance could otherwise lower its seed's RLIMIT_NOFILE or nice it to
 *   19 and break every later call (a helper did). `os.sched_setaffinity(os.getpid(), …)`
 *   is refused for the same reason; pass 0.
 * - No SysV IPC (shm*, msg*, sem*): the IPC namespace is the lineage's, so its objects
 *   would be shared by concurrent instances and outlive a call, carrying one request's data
 *   to later ones. POSIX shared memory needs /dev/shm, which the sandbox does not have.
 * - No Linux AIO (io_setup and the rest): its contexts count against fs.aio-max-nr, one
 *   limit for the whole node, and one handler took all 65,536 (red team, helper-55); host
 *   root's own io_setup then failed. Neither Node (libuv) nor Python uses it.
 * Denied calls fail with EPERM, like everything else the default profile leaves out.
 */
export function functionProfile(): LinuxSeccomp {
  const p = defaultProfile();
  p.architectures = ['SCMP_ARCH_X86_64'];
  const self = [{ index: 0, value: 0, op: 'SCMP_CMP_EQ' as const }];
  p.syscalls = [
    ...(p.syscalls ?? []).filter((r) => !r.names.includes('socket')).map((r) => ({ ...r, names: r.names.filter((n) => !FUNCTION_DROPS.has(n)) })),
    { names: ['prlimit64', 'sched_setaffinity', 'sched_setattr', 'sched_setparam', 'sched_setscheduler'], action: 'SCMP_ACT_ALLOW', args: self },
    // setpriority(PRIO_PROCESS, 0, n); ioprio_set(IOPRIO_WHO_PROCESS, 0, n)
    { names: ['setpriority'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: 0, op: 'SCMP_CMP_EQ' }, { index: 1, value: 0, op: 'SCMP_CMP_EQ' }] },
    { names: ['ioprio_set'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: 1, op: 'SCMP_CMP_EQ' }, { index: 1, value: 0, op: 'SCMP_CMP_EQ' }] },
    { names: ['socket'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: AF_UNIX, op: 'SCMP_CMP_EQ' }] },
    {
      names: ['socket'], action: 'SCMP_ACT_ALLOW',
      args: [{ index: 0, value: AF_NETLINK, op: 'SCMP_CMP_EQ' }, { index: 2, value: NETLINK_ROUTE, op: 'SCMP_CMP_EQ' }],
    },
  ];
  return p;
}
