// koffi binding to libseccomp.so.2 — the only place spore calls libseccomp. Loaded lazily so
// processes that never compile a filter do not need the library. Functions return raw values;
// negative returns are turned into SyscallError (libseccomp returns -errno).

import * as fs from 'node:fs';
import koffi from 'koffi';
import { FailedPrecondition, InvalidArgument, SyscallError } from './errors.js';

/** scmp_filter_ctx: an opaque pointer owned by libseccomp. */
export type ScmpFilterCtx = unknown;

export interface ScmpArgCmp {
  arg: number;
  op: number;
  datumA: bigint;
  datumB: bigint;
}

/** Values from seccomp.h (libseccomp 2.5). */
export const SCMP_ACT = {
  KILL_PROCESS: 0x80000000,
  KILL_THREAD: 0x00000000,
  TRAP: 0x00030000,
  NOTIFY: 0x7fc00000,
  LOG: 0x7ffc0000,
  ALLOW: 0x7fff0000,
  errno: (e: number): number => (0x00050000 | (e & 0xffff)) >>> 0,
  trace: (msg: number): number => (0x7ff00000 | (msg & 0xffff)) >>> 0,
} as const;

export const SCMP_CMP = { NE: 1, LT: 2, LE: 3, EQ: 4, GE: 5, GT: 6, MASKED_EQ: 7 } as const;

export const SCMP_FLTATR = {
  ACT_DEFAULT: 1, ACT_BADARCH: 2, CTL_NNP: 3, CTL_TSYNC: 4, API_TSKIP: 5, CTL_LOG: 6, CTL_SSB: 7, CTL_OPTIMIZE: 8, API_SYSRAWRC: 9,
} as const;

/** __NR_SCMP_ERROR: what seccomp_syscall_resolve_name returns for unknown names. */
export const NR_SCMP_ERROR = -1;

interface Bound {
  init: (defAction: number) => ScmpFilterCtx;
  release: (ctx: ScmpFilterCtx) => void;
  archAdd: (ctx: ScmpFilterCtx, arch: number) => number;
  archRemove: (ctx: ScmpFilterCtx, arch: number) => number;
  archNative: () => number;
  archResolveName: (name: string) => number;
  syscallResolveName: (name: string) => number;
  syscallResolveNameArch: (arch: number, name: string) => number;
  ruleAddArray: (ctx: ScmpFilterCtx, action: number, syscall: number, count: number, args: Array<Record<string, number | bigint>> | null) => number;
  attrSet: (ctx: ScmpFilterCtx, attr: number, value: number) => number;
  exportBpf: (ctx: ScmpFilterCtx, fd: number) => number;
  memfdCreate: (name: string, flags: number) => number;
  version: () => { major: number; minor: number; micro: number };
}

let bound: Bound | undefined;

function load(): Bound {
  if (bound) return bound;
  let lib: koffi.IKoffiLib;
  try {
    lib = koffi.load('libseccomp.so.2');
  } catch (e) {
    throw new FailedPrecondition(`libseccomp.so.2 not found (install libseccomp2): ${(e as Error).message}`, { cause: e });
  }
  const libc = koffi.load('libc.so.6');
  koffi.opaque('scmp_filter_ctx_t');
  // Registered by name for the prototypes below (koffi lays it out with C alignment: 24 bytes).
  koffi.struct('scmp_arg_cmp', { arg: 'uint', op: 'int', datum_a: 'uint64', datum_b: 'uint64' });
  const ver = koffi.struct('scmp_version', { major: 'uint', minor: 'uint', micro: 'uint' });
  const versionFn = lib.func('const scmp_version *seccomp_version(void)');
  bound = {
    init: lib.func('scmp_filter_ctx_t *seccomp_init(uint32_t def_action)'),
    release: lib.func('void seccomp_release(scmp_filter_ctx_t *ctx)'),
    archAdd: lib.func('int seccomp_arch_add(scmp_filter_ctx_t *ctx, uint32_t arch_token)'),
    archRemove: lib.func('int seccomp_arch_remove(scmp_filter_ctx_t *ctx, uint32_t arch_token)'),
    archNative: lib.func('uint32_t seccomp_arch_native(void)'),
    archResolveName: lib.func('uint32_t seccomp_arch_resolve_name(const char *arch_name)'),
    syscallResolveName: lib.func('int seccomp_syscall_resolve_name(const char *name)'),
    syscallResolveNameArch: lib.func('int seccomp_syscall_resolve_name_arch(uint32_t arch_token, const char *name)'),
    ruleAddArray: lib.func('int seccomp_rule_add_array(scmp_filter_ctx_t *ctx, uint32_t action, int syscall, unsigned int arg_cnt, const scmp_arg_cmp *arg_array)'),
    attrSet: lib.func('int seccomp_attr_set(scmp_filter_ctx_t *ctx, int attr, uint32_t value)'),
    exportBpf: lib.func('int seccomp_export_bpf(scmp_filter_ctx_t *ctx, int fd)'),
    memfdCreate: libc.func('int memfd_create(const char *name, unsigned int flags)'),
    version: () => koffi.decode(versionFn(), ver) as { major: number; minor: number; micro: number },
  };
  return bound;
}

function check(name: string, rc: number): number {
  if (rc < 0) throw new SyscallError(name, -rc);
  return rc;
}

export function seccompVersion(): string {
  const v = load().version();
  return `${v.major}.${v.minor}.${v.micro}`;
}

export function seccompInit(defAction: number): ScmpFilterCtx {
  const ctx = load().init(defAction >>> 0);
  if (!ctx) throw new SyscallError('seccomp_init', 22, `action 0x${(defAction >>> 0).toString(16)}`);
  return ctx;
}

export function seccompRelease(ctx: ScmpFilterCtx): void {
  load().release(ctx);
}

/** Adds an architecture; an already present one (EEXIST) is not an error. */
export function seccompArchAdd(ctx: ScmpFilterCtx, arch: number): void {
  const rc = load().archAdd(ctx, arch >>> 0);
  if (rc === -17) return;
  check('seccomp_arch_add', rc);
}

export function seccompArchRemove(ctx: ScmpFilterCtx, arch: number): void {
  check('seccomp_arch_remove', load().archRemove(ctx, arch >>> 0));
}

export function seccompArchNative(): number {
  return load().archNative() >>> 0;
}

/** Arch token for a libseccomp arch name ("x86_64", "aarch64", ...), or undefined. */
export function seccompArchResolveName(name: string): number | undefined {
  requireString(name, 'architecture');
  const t = load().archResolveName(name) >>> 0;
  return t === 0 ? undefined : t;
}

/**
 * koffi passes a number given for a `const char *` as an address: a syscall name 1 made
 * libseccomp read address 1 (SIGSEGV, the whole daemon). Names come from config.json.
 */
function requireString(name: unknown, what: string): void {
  if (typeof name !== 'string') throw new InvalidArgument(`seccomp ${what} must be a string, got ${JSON.stringify(name) ?? String(name)}`);
}

/** Syscall number (possibly a negative libseccomp pseudo number) or undefined for unknown names. */
export function seccompSyscallResolveName(name: string, arch?: number): number | undefined {
  requireString(name, 'syscall name');
  const n = arch === undefined ? load().syscallResolveName(name) : load().syscallResolveNameArch(arch >>> 0, name);
  return n === NR_SCMP_ERROR ? undefined : n;
}

/** Adds a rule; returns the negative errno from libseccomp instead of throwing (callers decide). */
export function seccompRuleAddArray(ctx: ScmpFilterCtx, action: number, syscall: number, args: ScmpArgCmp[]): number {
  const arr = args.map((a) => ({ arg: a.arg, op: a.op, datum_a: a.datumA, datum_b: a.datumB }));
  return load().ruleAddArray(ctx, action >>> 0, syscall, arr.length, arr.length ? arr : null);
}

export function seccompAttrSet(ctx: ScmpFilterCtx, attr: number, value: number): void {
  check('seccomp_attr_set', load().attrSet(ctx, attr, value >>> 0));
}

/**
 * The filter as raw BPF (struct sock_filter[]). libseccomp 2.5 can only write to an fd, so it
 * goes through a memfd (no temp file, nothing on disk).
 */
export function seccompExportBpf(ctx: ScmpFilterCtx): Buffer {
  const b = load();
  const fd = b.memfdCreate('spore-seccomp', 1 /* MFD_CLOEXEC */);
  if (fd < 0) throw new SyscallError('memfd_create', Number(koffi.errno()));
  try {
    check('seccomp_export_bpf', b.exportBpf(ctx, fd));
    const size = fs.fstatSync(fd).size;
    const buf = Buffer.alloc(size);
    let off = 0;
    while (off < size) {
      const n = fs.readSync(fd, buf, off, size - off, off);
      if (n === 0) break;
      off += n;
    }
    return buf.subarray(0, off);
  } finally {
    fs.closeSync(fd);
  }
}
