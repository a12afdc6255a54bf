// The syscalls a sandbox executor makes, as one small interface with two implementations:
// the real one (sys/libc.ts and node:fs) and a recording one that only writes down
// what would be done. The recording turns "plan -> syscall sequence" into plain data, so an
// executor is unit-tested without root, and the Node executor's sequence is compared with
// the Python one's (zygote.py's RecordingSys records the same vocabulary).
import { chmodSync, existsSync, mkdirSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import * as sys from '../sys/libc.js';

/** One recorded call: its name, then its arguments (JSON values only). */
export type SysCall = [string, ...(string | number | boolean | null | string[])[]];

export interface SandboxSys {
  /** write `content` to an existing file (cgroup.procs) */
  write(path: string, content: string): void;
  unshare(flags: number): void;
  mount(source: string | null, target: string, fstype: string | null, flags: number, data: string | null): void;
  umount2(target: string, flags: number): void;
  pivotRoot(newRoot: string, putOld: string): void;
  chdir(path: string): void;
  mkdir(path: string, mode: number): void;
  chmod(path: string, mode: number): void;
  writeFile(path: string, content: string, mode: number): void;
  symlink(target: string, path: string): void;
  /** 'file', 'dir' or null when missing */
  stat(path: string): 'file' | 'dir' | null;
  sethostname(name: string): void;
  loopbackUp(): void;
  setrlimit(resource: number, soft: number, hard: number): void;
  /** every capability out of the bounding set (while CAP_SETPCAP is still held) */
  dropBoundingSet(): void;
  setgroups(gids: number[]): void;
  setresgid(gid: number): void;
  setresuid(uid: number): void;
  /** the effective uid alone (setresuid(-1, uid, -1)) */
  seteuid(uid: number): void;
  capsetZero(): void;
  prctl(option: number, arg: number): void;
  landlockAbi(): number;
  landlockRuleset(handled: number, scope: number): number;
  landlockRule(ruleset: number, path: string, rights: number): void;
  landlockRestrict(ruleset: number): void;
  seccomp(filterBase64: string, flags: number): void;
  /** the executor's fd allowlist (language-specific: recorded as one step) */
  keepFds(): void;
  /** after unshare(CLONE_NEWUSER): ask the L1 parent for the id maps and wait for them */
  awaitIdMaps(): void;
  /** replace the environment */
  setEnv(env: Record<string, string>): void;
}

const CAP_LAST = 63;

/** The real calls, but for the three steps that need the executor's own context. */
export const realSandboxSys: Omit<SandboxSys, 'keepFds' | 'awaitIdMaps' | 'setEnv'> = {
  write: (p, c) => writeFileSync(p, c),
  unshare: (f) => sys.unshare(f),
  mount: (s, t, f, fl, d) => sys.mount(s, t, f, fl, d),
  umount2: (t, f) => sys.umount2(t, f),
  pivotRoot: (n, o) => sys.pivotRoot(n, o),
  chdir: (p) => process.chdir(p),
  mkdir: (p, m) => { mkdirSync(p, { recursive: true, mode: m }); chmodSync(p, m); },
  chmod: (p, m) => chmodSync(p, m),
  writeFile: (p, c, m) => writeFileSync(p, c, { mode: m }),
  symlink: (t, p) => symlinkSync(t, p),
  stat: (p) => (existsSync(p) ? (statSync(p).isDirectory() ? 'dir' : 'file') : null),
  sethostname: (n) => sys.sethostname(n),
  loopbackUp: () => sys.loopbackUp(),
  setrlimit: (r, s, h) => sys.setrlimit(r, BigInt.asUintN(64, BigInt(s)), BigInt.asUintN(64, BigInt(h))),
  dropBoundingSet: () => {
    for (let cap = 0; cap <= CAP_LAST; cap++) {
      try { sys.prctl(sys.PR.CAPBSET_DROP, cap); } catch { break; /* EINVAL past the last capability */ }
    }
  },
  setgroups: (g) => sys.setgroups(g),
  setresgid: (g) => sys.setresgid(g),
  setresuid: (u) => sys.setresuid(u),
  seteuid: (u) => sys.seteuid(u),
  capsetZero: () => sys.capset(0n, 0n, 0n),
  prctl: (o, a) => { sys.prctl(o, a); },
  landlockAbi: () => sys.landlockAbi(),
  landlockRuleset: (h, s) => sys.landlockCreateRuleset(BigInt(h), BigInt(s)),
  landlockRule: (rs, p, r) => {
    const fd = sys.open(p, sys.O.PATH | sys.O.CLOEXEC);
    try { sys.landlockAddPath(rs, fd, BigInt(r)); } finally { sys.close(fd); }
  },
  landlockRestrict: (rs) => { try { sys.landlockRestrictSelf(rs); } finally { sys.close(rs); } },
  seccomp: (f, fl) => sys.seccompInstall(Buffer.from(f, 'base64'), fl),
};

/**
 * Records instead of calling. `stat` answers from `exists` (path -> kind) or, by default,
 * from the host path with the sandbox root prefix removed (so /proc masks are decided as
 * they would be on this machine).
 */
export class RecordingSandboxSys implements SandboxSys {
  readonly calls: SysCall[] = [];
  constructor(private readonly opts: { root?: string; abi?: number; exists?: (path: string) => 'file' | 'dir' | null } = {}) {}
  private rec(...c: SysCall): void { this.calls.push(c); }
  write(p: string, c: string): void { this.rec('write', p, c); }
  unshare(f: number): void { this.rec('unshare', f); }
  mount(s: string | null, t: string, f: string | null, fl: number, d: string | null): void { this.rec('mount', s, t, f, fl, d); }
  umount2(t: string, f: number): void { this.rec('umount2', t, f); }
  pivotRoot(n: string, o: string): void { this.rec('pivot_root', n, o); }
  chdir(p: string): void { this.rec('chdir', p); }
  mkdir(p: string, m: number): void { this.rec('mkdir', p, m); }
  chmod(p: string, m: number): void { this.rec('chmod', p, m); }
  writeFile(p: string, c: string, m: number): void { this.rec('write_file', p, m, c); }
  symlink(t: string, p: string): void { this.rec('symlink', t, p); }
  stat(p: string): 'file' | 'dir' | null {
    if (this.opts.exists) return this.opts.exists(p);
    const root = this.opts.root ?? '';
    const host = root && p.startsWith(root) ? p.slice(root.length) || '/' : p;
    return realSandboxSys.stat(host);
  }
  sethostname(n: string): void { this.rec('sethostname', n); }
  loopbackUp(): void { this.rec('loopback_up'); }
  setrlimit(r: number, s: number, h: number): void { this.rec('setrlimit', r, s, h); }
  dropBoundingSet(): void { this.rec('drop_bounding_set'); }
  setgroups(g: number[]): void { this.rec('setgroups', g.map(String)); }
  setresgid(g: number): void { this.rec('setresgid', g); }
  setresuid(u: number): void { this.rec('setresuid', u); }
  seteuid(u: number): void { this.rec('seteuid', u); }
  capsetZero(): void { this.rec('capset', 0, 0, 0); }
  prctl(o: number, a: number): void { this.rec('prctl', o, a); }
  landlockAbi(): number { return this.opts.abi ?? 7; }
  landlockRuleset(h: number, s: number): number { this.rec('landlock_create_ruleset', h, s); return -1; }
  landlockRule(_rs: number, p: string, r: number): void { this.rec('landlock_add_rule', p, r); }
  landlockRestrict(_rs: number): void { this.rec('landlock_restrict_self'); }
  seccomp(f: string, fl: number): void { this.rec('seccomp', f, fl); }
  keepFds(): void { this.rec('keep_fds'); }
  awaitIdMaps(): void { this.rec('await_id_maps'); }
  setEnv(env: Record<string, string>): void { this.rec('set_env', Object.keys(env).sort().map((k) => `${k}=${env[k] ?? ''}`)); }
}
