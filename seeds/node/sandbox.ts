// The Node executor of a function lineage's SandboxPlan (seeds/protocol.ts), run in the
// fork of an L1 seed that becomes the lineage's L2 seed (pid 1 of its new pid namespace),
// before any function code. Synchronous, in the plan's order; every step a syscall
// through sys/libc.ts. The Python twin is apply_sandbox in seeds/python/zygote.py;
// the isolation suite compares the two from inside the sandboxes they build.
import { closeSync, fstatSync, mkdirSync, openSync, readdirSync, readlinkSync } from 'node:fs';
import * as sys from '../../sys/libc.js';
import type { SandboxPlan, SandboxStep } from '../protocol.js';
import { realSandboxSys, type SandboxSys } from '../sandbox-sys.js';

/** A step failed: `phase` names it for the deployer ("mount /var/task", "user namespace"). */
export class SandboxError extends Error {
  constructor(readonly phase: string, cause: unknown) {
    super(`${phase}: ${cause instanceof Error ? cause.message : String(cause)}`);
  }
}

function phase<T>(name: string, f: () => T): T {
  try { return f(); } catch (e) { throw e instanceof SandboxError ? e : new SandboxError(name, e); }
}

/** The fds the executor is given and keeps (everything else the process holds is closed). */
export interface SandboxFds {
  /** the seed's link to spored */
  link: number;
  /** write end of the function's log pipe: becomes fds 1 and 2 */
  log: number;
  /** to the L1 parent: one byte when the user namespace exists and needs its maps */
  toParent: number;
  /** from the L1 parent: one byte once the maps are written */
  fromParent: number;
}

const REMOUNT_BIND = 32 /* MS_REMOUNT */ | sys.MS.BIND;

/** The real executor: the plan applied with real syscalls to this very process. */
export function applySandbox(plan: SandboxPlan, fds: SandboxFds, refs: FdReferences): void {
  runSandbox(plan, {
    ...realSandboxSys,
    keepFds: () => keepOnly(plan, fds, refs),
    awaitIdMaps: () => {
      sys.write(fds.toParent, Buffer.from('u'));
      const ack = sys.read(fds.fromParent, 1);
      if (ack.length !== 1) throw new Error('the parent seed did not write the id maps');
      sys.close(fds.toParent);
      sys.close(fds.fromParent);
    },
    setEnv: (env) => {
      for (const k of Object.keys(process.env)) delete process.env[k];
      Object.assign(process.env, env);
    },
  });
}

/**
 * Apply `plan` through `s`, in the plan's order (seeds/protocol.ts SandboxPlan); returns
 * with the process inside the sandbox as plan.uid, unprivileged. With a recording `s` it
 * only writes the sequence down (test/sandbox-executors.test.ts).
 */
export function runSandbox(plan: SandboxPlan, s: SandboxSys): void {
  phase('cgroup', () => { for (const f of plan.cgroupProcs) s.write(f, '0'); });
  phase('namespaces', () => s.unshare(sys.CLONE.NEWNS | sys.CLONE.NEWIPC | sys.CLONE.NEWUTS | sys.CLONE.NEWNET));
  phase('mount propagation', () => s.mount(null, '/', null, sys.MS.REC | sys.MS.PRIVATE, null));
  const root = plan.staging;
  phase('root tmpfs', () => s.mount('tmpfs', root, 'tmpfs', sys.MS.NOSUID | sys.MS.NODEV, plan.rootData));
  for (const st of plan.steps) phase(`${st.op} ${st.path}`, () => applyStep(s, root, st));
  phase('pivot_root', () => {
    s.chdir(root);
    s.pivotRoot('.', '.');
    s.umount2('.', sys.MNT_DETACH);
    s.chdir('/');
  });
  phase('root read-only', () => s.mount(null, '/', null, REMOUNT_BIND | plan.rootFlags, null));
  phase('hostname', () => s.sethostname(plan.hostname));
  phase('loopback', () => s.loopbackUp());
  phase('cgroup namespace', () => s.unshare(sys.CLONE.NEWCGROUP));
  phase('rlimits', () => { for (const r of plan.rlimits) s.setrlimit(r.resource, r.soft, r.hard); });
  phase('fds', () => s.keepFds());
  phase('user namespace', () => enterUserNamespace(plan, s));
  phase('landlock', () => landlockLineage(plan, s));
  phase('seccomp', () => s.seccomp(plan.seccomp.filter, plan.seccomp.flags));
  phase('cwd', () => s.chdir(plan.cwd));
  s.setEnv(plan.env);
}

function applyStep(s: SandboxSys, root: string, st: SandboxStep): void {
  const at = root + st.path;
  switch (st.op) {
    case 'dir':
      s.mkdir(at, st.mode);
      s.chmod(at, st.mode);
      return;
    case 'file':
      s.writeFile(at, st.content, st.mode);
      return;
    case 'symlink':
      s.symlink(st.target, at);
      return;
    case 'bind':
      s.mount(st.source, at, null, sys.MS.BIND | (st.recursive ? sys.MS.REC : 0), null);
      s.mount(null, at, null, REMOUNT_BIND | st.flags, null);
      return;
    case 'tmpfs':
      s.mount('tmpfs', at, 'tmpfs', st.flags, st.data);
      return;
    case 'proc':
      s.mount('proc', at, 'proc', st.flags, st.data ?? null);
      return;
    case 'mask': {
      const kind = s.stat(at);
      if (kind === 'dir') s.mount('tmpfs', at, 'tmpfs', sys.MS.RDONLY | sys.MS.NOSUID | sys.MS.NODEV | sys.MS.NOEXEC, 'size=0');
      else if (kind === 'file') s.mount('/dev/null', at, null, sys.MS.BIND, null);
      return;
    }
    case 'readonly':
      if (!s.stat(at)) return;
      s.mount(at, at, null, sys.MS.BIND | sys.MS.REC, null);
      s.mount(null, at, null, REMOUNT_BIND | sys.MS.RDONLY | sys.MS.NOSUID | sys.MS.NODEV | sys.MS.NOEXEC, null);
      return;
    case 'remount':
      s.mount(null, at, null, 32 /* MS_REMOUNT */ | st.flags, null);
      return;
    default: {
      const never: never = st;
      throw new Error(`unknown sandbox step ${JSON.stringify(never)}`);
    }
  }
}

/** Where inherited fds stand before libuv re-creates its loop in the child (see referenceFds). */
export type FdReferences = Map<number, number>;

/** Reference dups land here, above anything a seed holds and below RLIMIT_NOFILE. */
const REF_BASE = 900;

/**
 * Right after fork, before uv_loop_fork: keep a second handle (a dup at >= REF_BASE) on
 * every inherited fd, so that keepOnly can tell the files this process shares with its
 * ancestors (same open file as the reference) from the ones libuv has just re-created.
 */
export function referenceFds(): FdReferences {
  const refs: FdReferences = new Map();
  for (const name of readdirSync('/proc/self/fd')) {
    const fd = Number(name);
    if (fd < 3 || fd >= REF_BASE) continue;
    try { refs.set(fd, sys.dupAt(fd, REF_BASE)); } catch { /* the readdir's own fd, closed by now */ }
  }
  return refs;
}

/**
 * The fd allowlist at the lineage boundary. Whatever this process shares with the L1 seed
 * and the root seed (open files it inherited) must not cross into the sandbox: a pipe or
 * an epoll instance shared with the root seed is a channel into a root process. Node's own
 * internals cannot simply be closed (libuv aborts when a write to its eventfd fails), so
 * each shared epoll instance, eventfd and pipe is replaced, at the same fd number and
 * with the same flags, by a fresh one of this process's own (pending bytes copied: libuv's
 * signal lock is a pipe holding one byte). libuv's default loop re-created its fds after
 * fork: those are kept. Everything else is closed: sockets, host files and directories,
 * the root seed's pid-namespace fd; libuv's reserved /dev/null becomes the sandbox's own.
 * Then 0 = /dev/null, 1 and 2 = the log pipe, and TMP_FD = the seed's own /tmp slot.
 */
function keepOnly(plan: SandboxPlan, fds: SandboxFds, refs: FdReferences): void {
  const devNull = sys.open('/dev/null', sys.O.RDWR | sys.O.CLOEXEC);
  const keep = new Set([fds.link, fds.log, fds.toParent, fds.fromParent, devNull]);
  const current = readdirSync('/proc/self/fd').map(Number).filter((fd) => fd > 2 && fd < REF_BASE && !keep.has(fd));
  const pipes = new Map<string, number[]>();
  for (const fd of current) {
    let l: string;
    try { l = readlinkSync(`/proc/self/fd/${fd}`); } catch { continue; }
    const ref = refs.get(fd);
    const shared = ref !== undefined && sys.sameFile(fd, ref);
    if (!shared) {
      // created in this process since fork (libuv's loop): ours alone, unless it is a
      // kind nothing here creates, which is closed to be safe
      if (l === 'anon_inode:[eventpoll]' || l === 'anon_inode:[eventfd]' || l.startsWith('pipe:')) continue;
      sys.close(fd);
      continue;
    }
    if (l === 'anon_inode:[eventpoll]') { const d = deadFd(fd); replaceWith(d, sys.epollCreate()); deadLoops.epolls.push(d); }
    else if (l === 'anon_inode:[eventfd]') { const d = deadFd(fd); replaceWith(d, sys.eventfd(d.nonblock)); deadLoops.eventfds.push(d); }
    else if (l.startsWith('pipe:')) pipes.set(l, [...(pipes.get(l) ?? []), fd]);
    else if (isNullDevice(fd)) replaceWith(deadFd(fd), sys.dupFd(devNull));
    else sys.close(fd);
  }
  for (const group of pipes.values()) {
    const ends = group.map((fd) => ({ ...deadFd(fd), write: (sys.fdFlags(fd).status & 3) === sys.O.WRONLY }));
    const reader = ends.find((e) => !e.write);
    if (!reader || !ends.some((e) => e.write)) { for (const e of ends) sys.close(e.fd); continue; }
    replacePipe(ends);
    deadLoops.pipes.push(ends);
  }
  for (const ref of refs.values()) sys.close(ref);
  sys.dup2(devNull, 0);
  sys.dup2(fds.log, 1);
  sys.dup2(fds.log, 2);
  sys.close(fds.log);
  sys.close(devNull);
  const slot = openSync(`${plan.slotDir}/init`, sys.O.PATH | sys.O.DIRECTORY);
  sys.dup2(slot, plan.tmpFd);
  closeSync(slot);
}

/**
 * The fds of Node's other event loops (whose threads do not exist after fork), as the
 * lineage boundary found them, with the flags each must keep: every fork of this seed shares
 * them with the seed and with its siblings until it replaces them (severDeadLoops).
 */
interface DeadFd { fd: number; cloexec: boolean; nonblock: boolean }
const deadLoops: { epolls: DeadFd[]; eventfds: DeadFd[]; pipes: (DeadFd & { write: boolean })[][] } = { epolls: [], eventfds: [], pipes: [] };

function deadFd(fd: number): DeadFd {
  const f = sys.fdFlags(fd);
  return { fd, cloexec: f.cloexec, nonblock: (f.status & sys.O.NONBLOCK) !== 0 };
}

/**
 * Fresh stand-ins for the dead loops' fds, one per dead fd in deadLoops' order (a pipe's ends
 * each get their end of one fresh pipe, its pending bytes already written), made by a seed
 * before it forks and given up by it right after: the child that inherits them is then their
 * only holder, and severing costs it a dup3 and a close per fd instead of making each object
 * (with its flag reads and writes) in a fresh, cold process. Null outside a function seed.
 */
let spares: number[] | null = null;

/** In a function seed: stand-ins ready for the next fork (see `spares`). */
export function prepareSpares(): void {
  const out: number[] = [];
  try {
    for (const d of deadLoops.epolls) {
      const e = sys.epollCreate();
      out.push(e);
      if (d.nonblock) sys.setNonblock(e, true);
    }
    for (const d of deadLoops.eventfds) out.push(sys.eventfd(d.nonblock));
    for (const ends of deadLoops.pipes) {
      // bytes waiting in a dead pipe (libuv's signal lock holds one): nothing reads them in a
      // seed, so the count read the first time holds for every fork after
      const waiting = pipeWaiting.get(ends) ?? pendingOf(ends);
      pipeWaiting.set(ends, waiting);
      const [a, b] = ends;
      if (ends.length === 2 && a && b && a.write !== b.write && a.nonblock === b.nonblock) {
        // the usual pair: the fresh pipe's own two ends, flags set at creation
        const [r, w] = sys.pipe(sys.O.CLOEXEC | (a.nonblock ? sys.O.NONBLOCK : 0));
        out.push(...(a.write ? [w, r] : [r, w]));
        if (waiting > 0) sys.write(w, Buffer.alloc(waiting));
        continue;
      }
      const [r, w] = sys.pipe(sys.O.CLOEXEC);
      try {
        if (waiting > 0) sys.write(w, Buffer.alloc(waiting));
        for (const e of ends) {
          const fresh = sys.dupFd(e.write ? w : r);
          out.push(fresh);
          sys.setNonblock(fresh, e.nonblock);
        }
      } finally {
        sys.close(r);
        sys.close(w);
      }
    }
  } catch (e) {
    for (const fd of out) sys.close(fd);
    throw e;
  }
  spares = out;
}
const pipeWaiting = new WeakMap<object, number>();
function pendingOf(ends: (DeadFd & { write: boolean })[]): number {
  const reader = ends.find((e) => !e.write);
  return reader ? sys.pendingBytes(reader.fd) : 0;
}

/** In a function seed right after a fork: its stand-ins now belong to the child alone; make the next. */
export function renewSpares(): void {
  if (spares === null) return;
  for (const fd of spares) sys.close(fd);
  spares = null;
  // out of fds, say: the next instance makes its own (severDeadLoops' slow way)
  try { prepareSpares(); } catch { /* spares stay null */ }
}

/** In an instance: the dead loops' fds become its own, shared with nobody. */
export function severDeadLoops(): void {
  const dead = [...deadLoops.epolls, ...deadLoops.eventfds, ...deadLoops.pipes.flat()];
  // none from the seed (it ran out of fds): made here, the slow way
  if (spares === null || spares.length !== dead.length) {
    for (const fd of spares ?? []) sys.close(fd);
    prepareSpares();
  }
  const ready = spares as number[];
  spares = null;
  dead.forEach((d, i) => {
    const fresh = ready[i] as number;
    sys.dup3(fresh, d.fd, d.cloexec ? sys.O.CLOEXEC : 0);
    sys.close(fresh);
  });
}

/** One pipe's ends (both in this process) replaced by a fresh pipe, pending bytes copied. */
function replacePipe(ends: (DeadFd & { write: boolean })[]): void {
  const reader = ends.find((e) => !e.write);
  const waiting = reader ? sys.pendingBytes(reader.fd) : 0;
  const [r, w] = sys.pipe(sys.O.CLOEXEC);
  for (const e of ends) replaceWith(e, sys.dupFd(e.write ? w : r));
  if (waiting > 0) sys.write(w, Buffer.alloc(waiting));
  sys.close(r);
  sys.close(w);
}

/** Put `fresh` at `d`'s number with `d`'s O_NONBLOCK and close-on-exec flags; closes `fresh`. */
function replaceWith(d: DeadFd, fresh: number): void {
  sys.dup3(fresh, d.fd, d.cloexec ? sys.O.CLOEXEC : 0);
  sys.setNonblock(d.fd, d.nonblock);
  sys.close(fresh);
}

function isNullDevice(fd: number): boolean {
  try {
    const st = fstatSync(fd);
    return st.isCharacterDevice() && st.rdev === 259 /* makedev(1, 3) */;
  } catch {
    return false;
  }
}

/**
 * A user namespace whose maps only the L1 parent (root on the host) can write: inside 0..
 * size-1 -> host hostId... It is made with the effective uid hostId, so that host uid owns it,
 * not root: the kernel charges what its processes hold of per-user limits (inotify
 * instances, pending signals) to the namespace's owner as well, and one function drew on
 * root's own (host root's inotify_init1 then failed: red team, helper-55). Then the lineage's
 * identity and no capability at all: the
 * bounding set emptied while CAP_SETPCAP is still ours, then uid/gid, then the effective,
 * permitted, inheritable and ambient sets cleared (a uid change inside a new user namespace
 * does not clear them by itself), not dumpable, no_new_privs.
 */
function enterUserNamespace(plan: SandboxPlan, s: SandboxSys): void {
  s.seteuid(plan.idmap.hostId);
  s.unshare(sys.CLONE.NEWUSER);
  s.awaitIdMaps();
  s.dropBoundingSet();
  s.setgroups([]);
  s.setresgid(plan.gid);
  s.setresuid(plan.uid);
  s.capsetZero();
  s.prctl(sys.PR.CAP_AMBIENT, sys.PR_CAP_AMBIENT_CLEAR_ALL);
  s.prctl(sys.PR.SET_DUMPABLE, 0);
  s.prctl(sys.PR.SET_NO_NEW_PRIVS, 1);
}

/** Every filesystem right this kernel's Landlock ABI knows (linux/landlock.h). */
export function landlockFsRights(abi: number): bigint {
  const A = sys.LANDLOCK_ACCESS_FS;
  let r = 0;
  if (abi >= 1) r |= (A.MAKE_SYM << 1) - 1;
  if (abi >= 2) r |= A.REFER;
  if (abi >= 3) r |= A.TRUNCATE;
  if (abi >= 5) r |= A.IOCTL_DEV;
  return BigInt(r);
}

const A = sys.LANDLOCK_ACCESS_FS;
const READ = BigInt(A.EXECUTE | A.READ_FILE | A.READ_DIR);
const DEVICE = BigInt(A.READ_FILE | A.READ_DIR | A.WRITE_FILE | A.TRUNCATE | A.IOCTL_DEV);

/** The lineage's Landlock layer: the sandbox's own tree only; scoped signals and abstract sockets. */
function landlockLineage(plan: SandboxPlan, s: SandboxSys): void {
  const abi = s.landlockAbi();
  if (abi === 0) return;
  const handled = landlockFsRights(abi);
  const scope = abi >= 6 ? sys.LANDLOCK_SCOPE.ABSTRACT_UNIX_SOCKET | sys.LANDLOCK_SCOPE.SIGNAL : 0;
  const rs = s.landlockRuleset(Number(handled), scope);
  for (const p of plan.landlock.readOnly) s.landlockRule(rs, p, Number(READ & handled));
  for (const p of plan.landlock.devices) s.landlockRule(rs, p, Number(DEVICE & handled));
  for (const p of plan.landlock.readWrite) s.landlockRule(rs, p, Number(handled));
  s.landlockRestrict(rs);
}

/**
 * In an L1 seed (host root): mount instance /tmp slots in the mount namespace of its child
 * lineage `pid`, then come back to its own. The names arrive after the child ran its init
 * code, so they never were in the child's memory.
 */
export function mountSlots(pid: number, slotDir: string, names: string[], data: string, renew = false): void {
  for (const n of names) if (!/^[0-9a-f]{32}$/.test(n)) throw new Error(`bad slot name ${JSON.stringify(n)}`);
  // In a short-lived fork: joining a mount namespace needs a process of one thread that
  // shares its filesystem context with nobody, and the seed itself never leaves its own.
  const [r, w] = sys.pipe();
  sys.prepareFork();
  const child = sys.fork();
  if (child === 0) {
    let code = 0;
    try {
      sys.close(r);
      sys.setns(sys.open(`/proc/${pid}/ns/mnt`, sys.O.RDONLY | sys.O.CLOEXEC), sys.CLONE.NEWNS);
      for (const n of names) {
        if (renew) sys.umount2(`${slotDir}/${n}`, sys.MNT_DETACH);
        else mkdirSync(`${slotDir}/${n}`, { mode: 0o1777 });
        sys.mount('tmpfs', `${slotDir}/${n}`, 'tmpfs', sys.MS.NOSUID | sys.MS.NODEV, data);
      }
    } catch (e) {
      try { sys.write(w, Buffer.from((e as Error).message)); } catch { /* the parent reports the status */ }
      code = 1;
    }
    sys.exit(code);
  }
  sys.close(w);
  const why = sys.read(r, 4096).toString();
  sys.close(r);
  const st = sys.reapPid(child, true);
  if (!st || st.status !== 0) throw new Error(why || `the mounting process ended with status ${st?.status ?? 'unknown'}`);
}

/**
 * Handles an instance needs for its own Landlock layer, opened once in the seed (O_PATH,
 * sandbox paths only) so that binding an instance costs no path lookups.
 */
export interface InstanceLayer {
  abi: number;
  handled: bigint;
  scope: bigint;
  readOnly: number[];
  devices: number[];
  slotDir: string;
  tmpFd: number;
  /** encoded once in the seed: the ruleset's attr, and the rules for readOnly and devices */
  rulesetAttr: sys.RulesetAttr;
  rules: Buffer[];
}

export function prepareInstanceLayer(plan: SandboxPlan): InstanceLayer {
  const abi = sys.landlockAbi();
  const open = (p: string): number => sys.open(p, sys.O.PATH | sys.O.CLOEXEC);
  const handled = landlockFsRights(abi);
  const scope = abi >= 6 ? BigInt(sys.LANDLOCK_SCOPE.ABSTRACT_UNIX_SOCKET | sys.LANDLOCK_SCOPE.SIGNAL) : 0n;
  const readOnly = abi ? plan.landlock.instanceReadOnly.map(open) : [];
  const devices = abi ? plan.landlock.devices.map(open) : [];
  return {
    abi, handled, scope, readOnly, devices,
    slotDir: plan.slotDir,
    tmpFd: plan.tmpFd,
    // TCP handled with no rule: an instance can neither listen nor connect (the lineage's
    // network is loopback only, so this keeps concurrent siblings from reaching each other)
    rulesetAttr: sys.landlockRulesetAttr(handled, scope, abi >= 4 ? sys.LANDLOCK_NET_TCP : 0n),
    rules: [...readOnly.map((fd) => sys.landlockPathBeneath(fd, READ & handled)), ...devices.map((fd) => sys.landlockPathBeneath(fd, DEVICE & handled))],
  };
}

/**
 * 32 lowercase hex digits. Not a RegExp: each instance would compile it anew (a RegExp
 * literal's code is made at its first match, and the seed never makes one): 2 % of an
 * instance's CPU.
 */
export function isSlotName(s: string): boolean {
  if (s.length !== 32) return false;
  for (let i = 0; i < 32; i++) {
    const c = s.charCodeAt(i);
    if (!((c >= 48 && c <= 57) || (c >= 97 && c <= 102))) return false;
  }
  return true;
}

/**
 * In a fresh instance: /tmp becomes this instance's slot, and a Landlock layer of its own
 * keeps it out of every other slot and scopes its signals and abstract sockets to itself
 * (so siblings and the seed are out of reach). Needs no privilege.
 */
export function bindInstance(layer: InstanceLayer, slot: string): void {
  if (!isSlotName(slot)) throw new Error(`bad /tmp slot name ${JSON.stringify(slot)}`);
  severDeadLoops();
  const fd = sys.open(`${layer.slotDir}/${slot}`, sys.O.PATH | sys.O.DIRECTORY | sys.O.CLOEXEC);
  sys.dup2(fd, layer.tmpFd);
  if (layer.abi) {
    const rs = sys.landlockCreateRulesetFrom(layer.rulesetAttr);
    try {
      for (const rule of layer.rules) sys.landlockAddRule(rs, rule);
      sys.landlockAddPath(rs, fd, layer.handled);
      sys.landlockRestrictSelf(rs);
    } finally {
      sys.close(rs);
    }
  }
  sys.close(fd);
  sys.prctl(sys.PR.SET_DUMPABLE, 0);
}
