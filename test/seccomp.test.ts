// seccomp tests: mapping logic, compilation + cache, and installation of the compiled BPF in a
// real child process (koffi prctl + seccomp(2), then either fs calls or execve).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InvalidArgument } from '../sys/errors.js';
import type { LinuxSeccomp } from '../protocols/oci/spec.js';
import {
  actionValue, archName, canonicalJson, clearSeccompCache, compileSeccomp, conditionGroups, defaultProfile, functionProfile,
  flagValue, profileHash, SECCOMP_FILTER_FLAG, seccompCacheStats, type CompiledFilter,
} from '../pools/seccomp.js';
import { seccompVersion } from '../sys/libseccomp.js';

const KOFFI = createRequire(import.meta.url).resolve('koffi');

// Child: install the filter (argv[2] = bpf file, argv[3] = flags) on the main thread, then run `mode`.
const CHILD = String.raw`
const koffi = require(process.env.KOFFI);
const fs = require('fs');
const libc = koffi.load('libc.so.6');
const prctl = libc.func('int prctl(int, unsigned long, unsigned long, unsigned long, unsigned long)');
const syscall = libc.func('long syscall(long, ...)');
const execve = libc.func('int execve(const char *, const char **, const char **)');
koffi.struct('sock_fprog', { len: 'uint16', filter: 'void *' });
const bpf = fs.readFileSync(process.argv[2]);
if (prctl(38 /* PR_SET_NO_NEW_PRIVS */, 1, 0, 0, 0) !== 0) { console.error('prctl', koffi.errno()); process.exit(2); }
const rc = Number(syscall(317 /* SYS_seccomp */, 'uint', 1 /* SECCOMP_SET_MODE_FILTER */, 'uint', Number(process.argv[3]),
  'sock_fprog *', { len: bpf.length / 8, filter: bpf }));
if (rc !== 0) { console.error('seccomp', koffi.errno()); process.exit(3); }
const mode = process.argv[4];
if (mode === 'fs') {
  try { fs.mkdirSync(process.argv[5], { mode: Number(process.argv[6] || 0o777) }); console.log('mkdir ok'); } catch (e) { console.log('mkdir ' + e.code); }
  console.log('read ' + (fs.readFileSync('/proc/self/status', 'utf8').includes('Seccomp:\t2') ? 'filtered' : 'unfiltered'));
  process.exit(0);
}
const argv = process.argv.slice(5);
// Node/libuv leave stdio marked close-on-exec; the exec'd program needs them.
const fcntl = libc.func('int fcntl(int, int, ...)');
for (const fd of [0, 1, 2]) fcntl(fd, 2 /* F_SETFD */, 'int', 0);
execve(argv[0], [...argv, null], ['PATH=/usr/bin:/bin', null]);
console.error('execve', koffi.errno());
process.exit(4);
`;

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'spore-seccomp-'));
  writeFileSync(join(dir, 'child.cjs'), CHILD);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function runUnder(f: CompiledFilter, args: string[]): { status: number | null; stdout: string; stderr: string } {
  const bpfFile = join(dir, `${f.hash}.bpf`);
  writeFileSync(bpfFile, f.bpf);
  const r = spawnSync(process.execPath, [join(dir, 'child.cjs'), bpfFile, String(f.flags), ...args], {
    env: { ...process.env, KOFFI }, encoding: 'utf8', timeout: 8000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('seccomp mapping (pure)', () => {
  it('maps actions, arches, flags and args', () => {
    expect(actionValue('SCMP_ACT_ALLOW', undefined)).toBe(0x7fff0000);
    expect(actionValue('SCMP_ACT_ERRNO', undefined)).toBe(0x00050001);
    expect(actionValue('SCMP_ACT_ERRNO', 38)).toBe(0x00050026);
    expect(actionValue('SCMP_ACT_KILL_PROCESS', undefined)).toBe(0x80000000);
    expect(actionValue('SCMP_ACT_KILL', undefined)).toBe(0);
    expect(() => actionValue('SCMP_ACT_NOTIFY', undefined)).toThrow(/seccomp notify not supported/);
    expect(() => actionValue('SCMP_ACT_BOGUS', undefined)).toThrow(/SCMP_ACT_BOGUS/);
    expect(archName('SCMP_ARCH_X86_64')).toBe('x86_64');
    expect(() => archName('x86_64')).toThrow(InvalidArgument);
    expect(flagValue('SECCOMP_FILTER_FLAG_LOG') | flagValue('SECCOMP_FILTER_FLAG_SPEC_ALLOW')).toBe(6);
    expect(() => flagValue('SECCOMP_FILTER_FLAG_NOPE')).toThrow(InvalidArgument);
    // same index twice → OR of single-condition rules; distinct indexes → one AND rule
    expect(conditionGroups([{ index: 0, value: 1, op: 'SCMP_CMP_EQ' }, { index: 0, value: 2, op: 'SCMP_CMP_EQ' }])).toHaveLength(2);
    const and = conditionGroups([{ index: 0, value: 1, op: 'SCMP_CMP_EQ' }, { index: 2, value: 0xff, valueTwo: 3, op: 'SCMP_CMP_MASKED_EQ' }]);
    expect(and).toEqual([[{ arg: 0, op: 4, datumA: 1n, datumB: 0n }, { arg: 2, op: 7, datumA: 0xffn, datumB: 3n }]]);
    expect(() => conditionGroups([{ index: 6, value: 1, op: 'SCMP_CMP_EQ' }])).toThrow(InvalidArgument);
    expect(() => conditionGroups([{ index: 0, value: 1, op: 'SCMP_CMP_XX' as 'SCMP_CMP_EQ' }])).toThrow(/SCMP_CMP_XX/);
    expect(canonicalJson({ b: 1, a: [{ d: 2, c: 3 }] })).toBe('{"a":[{"c":3,"d":2}],"b":1}');
    expect(profileHash({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [] })).toBe(profileHash({ syscalls: [], defaultAction: 'SCMP_ACT_ALLOW' }));
  });
});

describe('seccomp compile', () => {
  it('the function profile is the default one with sockets narrowed to unix and route netlink, x86_64 only', () => {
    const f = functionProfile();
    const d = defaultProfile();
    expect(f.architectures).toEqual(['SCMP_ARCH_X86_64']);
    const sockets = (f.syscalls ?? []).filter((r) => r.names.includes('socket'));
    expect(sockets.map((r) => r.args)).toEqual([
      [{ index: 0, value: 1, op: 'SCMP_CMP_EQ' }],
      [{ index: 0, value: 16, op: 'SCMP_CMP_EQ' }, { index: 2, value: 0, op: 'SCMP_CMP_EQ' }],
    ]);
    expect(sockets.every((r) => r.action === 'SCMP_ACT_ALLOW' && r.names.length === 1)).toBe(true);
    // calls on other processes only on the caller (pid 0), no SysV IPC
    const rule = (n: string): unknown => (f.syscalls ?? []).filter((r) => r.names.includes(n)).map((r) => r.args ?? null);
    for (const n of ['prlimit64', 'sched_setaffinity', 'sched_setattr', 'sched_setparam', 'sched_setscheduler']) expect(rule(n), n).toEqual([[{ index: 0, value: 0, op: 'SCMP_CMP_EQ' }]]);
    expect(rule('setpriority')).toEqual([[{ index: 0, value: 0, op: 'SCMP_CMP_EQ' }, { index: 1, value: 0, op: 'SCMP_CMP_EQ' }]]);
    for (const n of ['shmget', 'shmat', 'msgget', 'msgsnd', 'semget', 'semop', 'ipc']) expect(rule(n), n).toEqual([]);
    // no Linux AIO: fs.aio-max-nr is the node's one limit (red team, helper-55)
    for (const n of ['io_setup', 'io_submit', 'io_getevents', 'io_pgetevents', 'io_cancel', 'io_destroy']) expect(rule(n), n).toEqual([]);
    // everything else is the default profile's
    const dropped = new Set(['socket', 'prlimit64', 'sched_setaffinity', 'sched_setattr', 'sched_setparam', 'sched_setscheduler', 'setpriority', 'ioprio_set']);
    const rest = (p: typeof f): unknown => (p.syscalls ?? [])
      .map((r) => ({ ...r, names: r.names.filter((n) => !dropped.has(n) && !/^(ipc|msg|sem|shm|io_(setup|submit|getevents|pgetevents|cancel|destroy))/.test(n)) })).filter((r) => r.names.length > 0);
    expect(rest(f)).toEqual(rest(d));
    expect(compileSeccomp(f).hash).not.toBe(compileSeccomp(d).hash);
  });

  it('compiles the default profile once and caches it', () => {
    expect(seccompVersion()).toMatch(/^2\./);
    clearSeccompCache();
    const a = compileSeccomp(defaultProfile());
    expect(a.instructions).toBeGreaterThan(100);
    expect(a.bpf.length).toBe(a.instructions * 8);
    expect(a.hash).toMatch(/^[0-9a-f]{64}$/);
    const b = compileSeccomp(defaultProfile());
    expect(b).toBe(a);
    expect(seccompCacheStats()).toEqual({ hits: 1, misses: 1, size: 1 });
  });

  it('rejects unknown actions/arches/ops and skips unknown syscalls', () => {
    expect(() => compileSeccomp({ defaultAction: 'SCMP_ACT_NOPE' })).toThrow(InvalidArgument);
    expect(() => compileSeccomp({ defaultAction: 'SCMP_ACT_ALLOW', architectures: ['SCMP_ARCH_VAX'] })).toThrow(/SCMP_ARCH_VAX/);
    expect(() => compileSeccomp({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['read'], action: 'SCMP_ACT_NOTIFY' }] })).toThrow(/notify/);
    const f = compileSeccomp({
      defaultAction: 'SCMP_ACT_ALLOW',
      flags: ['SECCOMP_FILTER_FLAG_LOG'],
      syscalls: [{ names: ['no_such_syscall_xyz', 'mkdir'], action: 'SCMP_ACT_ERRNO' }],
    });
    expect(f.skipped).toEqual(['no_such_syscall_xyz']);
    expect(f.flags).toBe(SECCOMP_FILTER_FLAG.LOG);
  });
});

describe('seccomp installation in a child process', () => {
  it('denies mkdir with EPERM while reads still work', () => {
    const profile: LinuxSeccomp = {
      defaultAction: 'SCMP_ACT_ALLOW',
      syscalls: [{ names: ['mkdir', 'mkdirat'], action: 'SCMP_ACT_ERRNO', errnoRet: 1 }],
    };
    const r = runUnder(compileSeccomp(profile), ['fs', join(dir, 'newdir')]);
    expect(r.stderr).toBe('');
    expect(r.stdout).toContain('mkdir EPERM');
    expect(r.stdout).toContain('read filtered');
    expect(r.status).toBe(0);
  });

  it('MASKED_EQ + multiple args on one rule filter by argument', () => {
    // Deny only when the mode has all owner bits set (and dirfd == AT_FDCWD for mkdirat).
    const masked = { value: 0o700, valueTwo: 0o700, op: 'SCMP_CMP_MASKED_EQ' as const };
    const profile: LinuxSeccomp = {
      defaultAction: 'SCMP_ACT_ALLOW',
      syscalls: [
        { names: ['mkdir'], action: 'SCMP_ACT_ERRNO', errnoRet: 13, args: [{ index: 1, ...masked }, { index: 0, value: 0, op: 'SCMP_CMP_NE' }] },
        { names: ['mkdirat'], action: 'SCMP_ACT_ERRNO', errnoRet: 13, args: [{ index: 2, ...masked }, { index: 0, value: -100, op: 'SCMP_CMP_EQ' }] },
      ],
    };
    const f = compileSeccomp(profile);
    expect(runUnder(f, ['fs', join(dir, 'm1'), String(0o777)]).stdout).toContain('mkdir EACCES');
    expect(runUnder(f, ['fs', join(dir, 'm2'), String(0o600)]).stdout).toContain('mkdir ok');
  });

  it('default profile: sh, node and python run; namespace creation is denied', () => {
    const f = compileSeccomp({ ...defaultProfile(), flags: ['SECCOMP_FILTER_FLAG_TSYNC'] });
    const sh = runUnder(f, ['exec', '/bin/sh', '-c', 'echo ok; unshare -U true 2>/dev/null; echo "unshare=$?"; grep Seccomp: /proc/self/status']);
    expect(sh).toMatchObject({ stderr: "", status: 0 });
    expect(sh.status).toBe(0);
    expect(sh.stdout).toMatch(/^ok\n/);
    expect(sh.stdout).toMatch(/unshare=[1-9]/);
    expect(sh.stdout).toMatch(/Seccomp:\s+2/);
    const node = runUnder(f, ['exec', process.execPath, '-e', 'setTimeout(() => require("fs").promises.readFile("/etc/hostname").then(() => console.log(1 + 1)), 1)']);
    expect(node.stdout.trim()).toBe('2');
    expect(node.status).toBe(0);
    const py = runUnder(f, ['exec', '/usr/bin/python3', '-c', 'import os, threading, subprocess; print(subprocess.run(["true"]).returncode, os.getpid() > 0)']);
    expect(py.stdout.trim()).toBe('0 True');
  });
});

describe('seccompInSpec', () => {
  it('absent, null, or {} (no defaultAction, no syscalls) asks for no filter, as runc reads it; anything else does', async () => {
    const { seccompInSpec } = await import('../pools/seccomp.js');
    expect(seccompInSpec(undefined)).toBe(false);
    expect(seccompInSpec(null)).toBe(false);
    expect(seccompInSpec({} as never)).toBe(false);
    expect(seccompInSpec({ defaultAction: '', syscalls: [] } as never)).toBe(false);
    expect(seccompInSpec({ defaultAction: 'SCMP_ACT_ALLOW' })).toBe(true);
    expect(seccompInSpec({ syscalls: [{ names: ['ptrace'], action: 'SCMP_ACT_ERRNO' }] } as never)).toBe(true);
  });
});
