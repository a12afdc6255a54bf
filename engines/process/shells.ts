// Pre-forked container shells, kept by the root seed (seed-main.ts). A shell is a child forked
// into a new pid namespace before any Create, which has made the first steps of a container's
// set-up that need no plan (container-init.ts, earlyStepsOf: its fds and session, and, in the
// shape the last Create had, a new network and IPC namespace) and waits on a pipe of its own
// for one plan. A Create whose plan fits (container-init.ts, shellFits) is handed to a waiting
// shell instead of forking; the pool is refilled when the seed is quiet, off the Create path.
// With spored's 'shell-claims' (the default) the seed offers each idle shell to spored, which
// claims one and writes the plan to it and reads its set-up's status itself
// (seed-client.ts, spawnDirect): one hop each way instead of two, and the plan never in the
// seed; the seed keeps the claimed shell's start and status pipes as for any sandbox waiting
// for Start.
//
// What a shell makes ahead: the fork (the seed's largest cost per container: the V8 heap
// re-allowed for fork, the address space copied, the child's first page faults), the new pid
// namespace (it is pid 1 of it), its fds marked close-on-exec and its own session; then it
// rehearses the set-up once on a plan made of no container's data, against the recording
// ContainerSys (container-init.ts, rehearse), so the real one finds its code warm and most of
// the pages it writes already copied. Everything
// bound to the spec or the final namespaces (stdio, cgroup, the other namespaces, mounts,
// devices, the root, identity) comes after its plan, exactly as in a fork at Create
// (container-init.ts says why the mount and uts namespaces are not made ahead).
//
// Nothing leaks: an idle shell dies with the seed (parent-death signal) and exits at EOF of
// its plan pipe; the seed kills its shells when it exits or when the count goes down; a shell
// holds none of the seed's links (closed at its fork); exits of idle shells are not reported to
// spored. A spored restart leaves them in the pool (the seed survives).
import * as sys from '../../sys/libc.js';
import { EARLY_STEPS, earlyStepsOf, runShell, shellFits, type EarlyStep, type Rehearsal } from './container-init.js';
import { initPlan } from './plan.js';
import { shellFrame, type InitPlan } from './protocol.js';

export interface Shell {
  pid: number;
  /** the seed's ends: plan (write), start (write), status (read) */
  planW: number;
  startW: number;
  statusR: number;
  ahead: readonly EarlyStep[];
  bornAt: number;
}

export interface ShellPoolOptions {
  /** the seed's own pid namespace, to return to after forking into a new one */
  ownPidNs: number;
  /** fds of the seed a new child must not keep (links, other children's pipes) */
  seedFds: () => number[];
  /** for the seed's log (stderr) */
  warn: (msg: string) => void;
  /** direct mode: a shell became idle (spored may claim it) */
  offer?: (sh: Shell) => void;
  /** direct mode: an idle shell was killed or died (spored drops its copies of its pipes) */
  gone?: (pid: number) => void;
}

/**
 * A shell whose network namespace was made ahead is replaced after this long idle, ms. A new
 * network namespace takes the host's net.ipv4/ipv6 `conf/all` and `conf/default` values as
 * they are when it is made (net.core.devconf_inherit_init_net 0), so a host sysctl change
 * reaches a container made with such a shell at most this late (runc's: at once).
 */
export const NET_SHELL_MAX_AGE_MS = ((): number => {
  // SPORE_NET_SHELL_MAX_AGE_MS: for tests (and operators who want another bound), 1 s to 1 h
  const v = Number(process.env.SPORE_NET_SHELL_MAX_AGE_MS);
  return Number.isInteger(v) && v >= 1000 && v <= 3_600_000 ? v : 30_000;
})();

/** Refill only after the seed has been quiet this long (no request in flight, no exit). */
const QUIET_MS = 10;
/** ...but not later than this after the pool went short. */
const MAX_DEFER_MS = 500;

export class ShellPool {
  private target = 0;
  private readonly idle: Shell[] = [];
  /** pids of shells without a plan, idle or being killed: their exits are the pool's, not spored's */
  private readonly mine = new Set<number>();
  /** pids this pool killed (an expected death) */
  private readonly killed = new Set<number>();
  private inflight = 0;
  /** Creates in flight: their plans are live in the seed's heap, so no shell is forked meanwhile */
  private plansInFlight = 0;
  private lastActivity = 0;
  private shortSince = 0;
  private timer: NodeJS.Timeout | null = null;
  private failures = 0;
  private notBefore = 0;
  /** spored hands plans to shells itself (claim): take() hands out none */
  private direct = false;
  /** when the oldest idle shell with a network namespace made ahead is due to go */
  private agingTimer: NodeJS.Timeout | null = null;
  /**
   * The early steps the next shells make ahead: the last Create's (earlyStepsOf), so a node
   * running `ctr run`s gets shells with their network namespace made, and one running
   * Kubernetes pods (whose containers join their sandbox's) plain ones.
   */
  private shape: readonly EarlyStep[] = EARLY_STEPS;

  constructor(private readonly o: ShellPoolOptions) {}

  get size(): number { return this.idle.length; }
  get wanted(): number { return this.target; }

  /** Keep `n` shells ready; fewer: the extra ones are killed now. */
  setTarget(n: number): void {
    this.target = Math.max(0, Math.floor(n));
    while (this.idle.length > this.target) this.discard(this.idle.pop() as Shell);
    this.schedule();
  }

  /**
   * Direct mode on or off (protocol.ts, 'shell-claims'): on, every idle shell is offered
   * (now, and each new one as it is made) and only claim() hands them out.
   */
  setDirect(on: boolean): void {
    this.direct = on;
    if (on) for (const sh of this.idle) this.o.offer?.(sh);
  }

  /**
   * spored claimed the idle shell `pid` and writes its plan itself: it leaves the pool, and
   * the seed keeps its start and status pipes (the plan pipe's end is closed here). Null when
   * `pid` is not an idle shell of this pool (killed or died meanwhile, or claimed before).
   */
  claim(pid: number, shape?: readonly EarlyStep[], anyMode = false): Shell | null {
    const at = this.direct || anyMode ? this.idle.findIndex((sh) => sh.pid === pid) : -1;
    if (at < 0) return null;
    const [sh] = this.idle.splice(at, 1) as [Shell];
    if (shape) this.reshape(shape);
    sys.close(sh.planW);
    sh.planW = -1;
    this.mine.delete(pid);
    this.failures = 0;
    this.activity();
    return sh;
  }

  /**
   * A claim from a spored that has since been replaced (read after the next one attached):
   * the plan it wrote to the shell has nobody to finish it, and its Create is in no pending
   * list the next spored aborts. The shell, idle here still, is killed.
   */
  killClaimed(pid: number): void {
    // (whatever the next spored asked for: direct or not, the shell took a plan)
    const sh = this.claim(pid, undefined, true);
    if (!sh) return;
    this.killed.add(pid);
    this.mine.add(pid); // its exit is the pool's, as an idle shell's
    try { sys.kill(pid, 9); } catch { /* gone already */ }
    this.closeSeedEnds(sh);
    if (this.direct) this.o.gone?.(pid);
  }

  /** A request began: the seed is not quiet. `plan`: it carries a container's plan (a Create). */
  begin(plan = false): void {
    this.inflight++;
    if (plan) this.plansInFlight++;
    this.lastActivity = performance.now();
  }

  /** A request ended: refill once quiet. */
  end(plan = false): void {
    if (this.inflight > 0) this.inflight--;
    if (plan && this.plansInFlight > 0) this.plansInFlight--;
    this.activity();
  }

  activity(): void {
    this.lastActivity = performance.now();
    this.schedule();
  }

  /**
   * The shell `plan` goes to, with the plan already written on its pipe; null: fork as
   * before (pool empty, plan does not fit, plan too large, or no shell took it).
   */
  take(plan: InitPlan): Shell | null {
    // (in direct mode a plan comes here when no shell spored was offered fitted it)
    if (shellFits(plan, [])) this.reshape(earlyStepsOf(plan));
    if (this.direct || this.idle.length === 0) return null;
    let frame: Buffer | null | undefined;
    // the one that made the most of the plan's steps ahead first
    for (const sh of [...this.idle].sort((x, y) => y.ahead.length - x.ahead.length)) {
      if (!shellFits(plan, sh.ahead)) continue;
      frame ??= shellFrame(plan);
      if (frame === null) return null;
      this.idle.splice(this.idle.indexOf(sh), 1);
      try {
        sys.write(sh.planW, frame); // non-blocking, into an empty 64 KiB pipe: never waits
      } catch {
        this.discard(sh); // died idle and not reaped yet
        continue;
      }
      sys.close(sh.planW);
      sh.planW = -1;
      this.mine.delete(sh.pid);
      this.failures = 0;
      this.schedule();
      return sh;
    }
    return null;
  }

  /**
   * A plan a shell could take (shellFits with no steps ahead) whose steps are `steps`: the next
   * shells are made of that shape, and idle shells a plan of that shape does not fit go (the
   * pool refills once quiet), or such Creates would fork while they wait for a plan of their
   * own shape. (A node switching between `ctr run`s and pods pays one fork per switch; a shell
   * of the plain shape fits every plan and always stays.)
   */
  reshape(steps: readonly EarlyStep[]): void {
    this.shape = steps;
    for (const sh of this.idle.filter((x) => !(x.ahead.length <= steps.length && x.ahead.every((step, i) => steps[i] === step)))) {
      this.idle.splice(this.idle.indexOf(sh), 1);
      this.discard(sh);
    }
    this.schedule();
  }

  /** A child of the seed was reaped: true when it was an idle shell (not to be reported). */
  reaped(pid: number, status: number): boolean {
    if (!this.mine.delete(pid)) return false;
    const at = this.idle.findIndex((sh) => sh.pid === pid);
    if (at >= 0) {
      const [sh] = this.idle.splice(at, 1);
      if (sh) { this.closeSeedEnds(sh); if (this.direct) this.o.gone?.(pid); }
    }
    if (!this.killed.delete(pid)) {
      // died on its own before any plan: back off, so a host that refuses (say, unshare) is not
      // hammered with forks
      this.failures++;
      this.notBefore = performance.now() + Math.min(30_000, 100 * 2 ** this.failures);
      this.o.warn(`container shell ${pid} ended before its plan (${(status & 0x7f) ? `signal ${status & 0x7f}` : `exit ${(status >> 8) & 0xff}`}); shells back off ${Math.round(this.notBefore - performance.now())} ms`);
    }
    this.schedule();
    return true;
  }

  /** pids of the pool's own processes (idle shells, shells being killed): none is a container. */
  pids(): number[] {
    return [...this.mine];
  }

  /** fds the seed holds for its idle shells (a new child must not keep them). */
  fds(): number[] {
    return this.idle.flatMap((sh) => [sh.planW, sh.startW, sh.statusR]);
  }

  /** Kill every idle shell (the seed is exiting). Synchronous. */
  killAll(): void {
    if (this.timer) { clearTimeout(this.timer); this.timer = null; }
    if (this.agingTimer) { clearTimeout(this.agingTimer); this.agingTimer = null; }
    this.target = 0;
    while (this.idle.length) this.discard(this.idle.pop() as Shell);
  }

  private discard(sh: Shell): void {
    this.killed.add(sh.pid);
    if (this.direct) this.o.gone?.(sh.pid);
    try { sys.kill(sh.pid, 9); } catch { /* gone already */ }
    this.closeSeedEnds(sh);
  }

  private closeSeedEnds(sh: Shell): void {
    for (const fd of [sh.planW, sh.startW, sh.statusR]) if (fd >= 0) sys.close(fd);
    sh.planW = sh.startW = sh.statusR = -1;
  }

  /** Replace idle shells whose network namespace is older than NET_SHELL_MAX_AGE_MS (a claim of one in flight is refused). */
  private scheduleAging(): void {
    if (this.agingTimer) return;
    const born = this.idle.filter((sh) => sh.ahead.includes('net')).map((sh) => sh.bornAt);
    if (born.length === 0) return;
    const wait = Math.max(1, Math.min(...born) + NET_SHELL_MAX_AGE_MS - Date.now());
    this.agingTimer = setTimeout(() => {
      this.agingTimer = null;
      const now = Date.now();
      for (const sh of this.idle.filter((x) => x.ahead.includes('net') && now - x.bornAt >= NET_SHELL_MAX_AGE_MS)) {
        this.idle.splice(this.idle.indexOf(sh), 1);
        this.discard(sh);
      }
      this.schedule();
      this.scheduleAging();
    }, wait);
    this.agingTimer.unref();
  }

  private schedule(): void {
    if (this.idle.length >= this.target) { this.shortSince = 0; return; }
    if (this.timer) return;
    const now = performance.now();
    if (this.shortSince === 0) this.shortSince = now;
    const quietIn = this.inflight > 0 ? QUIET_MS : QUIET_MS - (now - this.lastActivity);
    const wait = Math.max(Math.min(quietIn, MAX_DEFER_MS - (now - this.shortSince)), this.notBefore - now, 1);
    this.timer = setTimeout(() => { this.timer = null; this.tick(); }, wait);
    this.timer.unref();
  }

  private tick(): void {
    if (this.idle.length >= this.target) { this.shortSince = 0; return; }
    const now = performance.now();
    const quiet = this.inflight === 0 && now - this.lastActivity >= QUIET_MS;
    // never while a Create is in flight (a shell is forked before any plan exists, and holds
    // none in its copy of the seed's memory); otherwise at the latest MAX_DEFER_MS after the
    // pool went short, quiet or not
    if (now < this.notBefore || this.plansInFlight > 0 || (!quiet && now - this.shortSince < MAX_DEFER_MS)) { this.schedule(); return; }
    const sh = this.fork();
    if (sh) {
      this.idle.push(sh);
      if (this.direct) this.o.offer?.(sh);
      this.scheduleAging();
    }
    this.lastActivity = performance.now(); // the next one after another quiet spell
    this.schedule();
  }

  private fork(): Shell | null {
    const ahead = this.shape;
    const [planR, planW] = sys.pipe();
    const [startR, startW] = sys.pipe();
    const [statusR, statusW] = sys.pipe();
    const seedEnds = [planW, startW, statusR];
    const closeFds = [...this.o.seedFds(), ...this.fds(), ...seedEnds];
    let pid = -1;
    try {
      sys.unshare(sys.CLONE.NEWPID);
      try {
        sys.prepareFork();
        pid = sys.fork();
        if (pid === 0) {
          process.title = 'spore-init'; // its container sees this, not the host's node command line
          runShell({ planFd: planR, startFd: startR, statusFd: statusW, closeFds, rehearsal: rehearsal() }, ahead);
        }
      } finally {
        sys.setns(this.o.ownPidNs, sys.CLONE.NEWPID);
      }
    } catch (e) {
      this.o.warn(`container shell fork failed: ${(e as Error).message}`);
      for (const fd of [planR, planW, startR, startW, statusR, statusW]) sys.close(fd);
      this.failures++;
      this.notBefore = performance.now() + Math.min(30_000, 100 * 2 ** this.failures);
      return null;
    }
    for (const fd of [planR, startR, statusW]) sys.close(fd);
    sys.setNonblock(planW, true);
    this.mine.add(pid);
    return { pid, planW, startW, statusR, ahead, bornAt: Date.now() };
  }
}



let made: Rehearsal | null = null;

/**
 * What a shell rehearses with: the plan of containerd's default spec for `ctr run`, on paths
 * that exist nowhere (it only ever meets the recording ContainerSys), and the files that plan
 * looks up. No container's data: it is made from constants, once, in the seed.
 */
export function rehearsal(): Rehearsal {
  if (made) return made;
  const rootfs = '/spore-rehearsal/rootfs';
  const caps = ['CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FSETID', 'CAP_FOWNER', 'CAP_MKNOD', 'CAP_NET_RAW', 'CAP_SETGID', 'CAP_SETUID',
    'CAP_SETFCAP', 'CAP_SETPCAP', 'CAP_NET_BIND_SERVICE', 'CAP_SYS_CHROOT', 'CAP_KILL', 'CAP_AUDIT_WRITE'];
  const spec = {
    ociVersion: '1.1.0',
    process: {
      user: { uid: 0, gid: 0 }, args: ['true'], env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], cwd: '/',
      capabilities: { bounding: caps, effective: caps, permitted: caps }, rlimits: [{ type: 'RLIMIT_NOFILE', hard: 1024, soft: 1024 }], noNewPrivileges: true,
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
      maskedPaths: ['/proc/acpi', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list', '/proc/timer_stats', '/proc/sched_debug', '/proc/scsi', '/sys/firmware'],
      readonlyPaths: ['/proc/asound', '/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'],
    },
  };
  const cgroups = '/spore-rehearsal/cgroup';
  const plan = initPlan({
    id: 'rehearsal', spec: spec as never, rootfs,
    stdio: { stdin: '/spore-rehearsal/stdin', stdout: '/spore-rehearsal/stdout', stderr: '/spore-rehearsal/stderr', terminal: '' },
    cgroupProcs: ['cpu', 'memory', 'pids'].map((c) => `${cgroups}/${c}/rehearsal/cgroup.procs`), cgroupV1Dirs: null, seccomp: null,
  });
  plan.lateCgroup = true;
  made = {
    plan,
    files: {
      [`${rootfs}/bin/true`]: 'file', [`${rootfs}/etc/passwd`]: { content: 'root:x:0:0:root:/root:/bin/sh\n' },
      [`${rootfs}/proc/acpi`]: 'dir', [`${rootfs}/proc/kcore`]: 'file', [`${rootfs}/proc/sys`]: 'dir', [`${rootfs}/sys/firmware`]: 'dir',
      [`${rootfs}/proc/self/mountinfo`]: { content: `1 0 0:1 / /proc rw,nosuid,nodev,noexec - proc proc rw\n` },
      [`${cgroups}/cpu`]: 'dir', [`${cgroups}/memory`]: 'dir', [`${cgroups}/pids`]: 'dir',
    },
  };
  return made;
}
