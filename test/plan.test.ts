// engines/process/plan.ts: config.json -> the plan the forked child runs. The translation
// (options to mount flags, capability names to masks, namespaces, devices, rlimits) and the
// rejections: every bad field is an InvalidArgument that names it, before anything is forked.
import { describe, expect, it } from 'vitest';
import { InvalidArgument } from '../sys/errors.js';
import { MS } from '../sys/constants.js';
import type { Spec } from '../protocols/oci/spec.js';
import { capMask, checkLsm, execPlan, initPlan, lateCgroupFits, mountStep, namespaceSteps, nsFile, parseMountOptions, processPlan } from '../engines/process/plan.js';
import { idMapText, type InitPlan, type Stdio } from '../engines/process/protocol.js';

const STDIO: Stdio = { stdin: '', stdout: '/run/spore/fifo/c1-stdout', stderr: '/run/spore/fifo/c1-stderr', terminal: '' };
const SECCOMP = { bpf: Buffer.from('0600000000000000', 'hex'), flags: 0 };

function baseSpec(): Record<string, unknown> & { process: Record<string, unknown>; linux: Record<string, unknown> } {
  return {
    ociVersion: '1.1.0',
    process: { user: { uid: 0, gid: 0 }, args: ['/bin/sh'], env: ['PATH=/bin'], cwd: '/' },
    root: { path: 'rootfs' },
    linux: { namespaces: [{ type: 'pid' }, { type: 'mount' }, { type: 'uts' }] },
  };
}

function plan(spec: unknown, opts: { v1?: { name: string; hostDir: string }[]; stdio?: Stdio } = {}): InitPlan {
  return initPlan({
    id: 'c1', spec: spec as Spec, rootfs: '/run/spore/rootfs/c1', stdio: opts.stdio ?? STDIO,
    cgroupProcs: ['/sys/fs/cgroup/default/c1/cgroup.procs'], cgroupV1Dirs: opts.v1 ?? null, seccomp: SECCOMP,
  });
}

/** InvalidArgument, and its message matches `field` (the field it names). */
function rejects(fn: () => unknown, field: RegExp): void {
  let err: unknown;
  try { fn(); } catch (e) { err = e; }
  expect(err, `accepted; expected InvalidArgument ${field}`).toBeInstanceOf(InvalidArgument);
  expect((err as Error).message).toMatch(field);
}

describe('plan.ts: translation', () => {
  it('capability names it does not know (a typo, lower case, a prototype key) are left out and listed, as runc ignores them', () => {
    const p = plan({ ...baseSpec(), process: { ...baseSpec().process, capabilities: { bounding: ['CAP_FLY', 'CAP_KILL'], permitted: ['__proto__', 'cap_sys_admin', 'CAP_KILL'], effective: ['CAP_KILL'], ambient: ['CAP_NOPE'] } } });
    expect(p.process.caps.bounding).toBe(1n << 5n); // CAP_KILL
    expect(p.process.caps.permitted).toBe(1n << 5n);
    expect(p.process.caps.ambient).toEqual([]);
    expect(p.process.caps.unknown).toEqual(['CAP_FLY', 'CAP_NOPE', '__proto__', 'cap_sys_admin']);
    expect(plan(baseSpec()).process.caps.unknown).toBeUndefined();
  });

  it('a minimal spec: defaults filled in, the process as given, the default devices', () => {
    const p = plan(baseSpec());
    expect(p).toEqual({
      kind: 'init', id: 'c1', rootfs: '/run/spore/rootfs/c1', readonlyRoot: false,
      rootPropagation: MS.SLAVE, // default, MS_REC stripped (the child adds it)
      namespaces: [{ type: 'pid', path: null }, { type: 'mount', path: null }, { type: 'uts', path: null }],
      hostname: null, domainname: null, mounts: [],
      devices: [
        // runc's order (specconv.AllowedDevices): a user namespace's mount table shows it
        { path: '/dev/null', type: 'c', major: 1, minor: 3, mode: 0o666, uid: 0, gid: 0 },
        { path: '/dev/random', type: 'c', major: 1, minor: 8, mode: 0o666, uid: 0, gid: 0 },
        { path: '/dev/full', type: 'c', major: 1, minor: 7, mode: 0o666, uid: 0, gid: 0 },
        { path: '/dev/tty', type: 'c', major: 5, minor: 0, mode: 0o666, uid: 0, gid: 0 },
        { path: '/dev/zero', type: 'c', major: 1, minor: 5, mode: 0o666, uid: 0, gid: 0 },
        { path: '/dev/urandom', type: 'c', major: 1, minor: 9, mode: 0o666, uid: 0, gid: 0 },
      ],
      maskedPaths: [], readonlyPaths: [], sysctl: {},
      cgroupProcs: ['/sys/fs/cgroup/default/c1/cgroup.procs'],
      process: {
        args: ['/bin/sh'], env: ['PATH=/bin'], cwd: '/', uid: 0, gid: 0, additionalGids: [], umask: 0o022,
        caps: { bounding: 0n, effective: 0n, permitted: 0n, inheritable: 0n, ambient: [] },
        rlimits: [], noNewPrivileges: false, oomScoreAdj: null, seccomp: SECCOMP, stdio: STDIO, apparmorProfile: null, selinuxLabel: null,
      },
    });
    expect(p.lateCgroup).toBeUndefined(); // task/tasks.ts decides it
  });

  it('mount options: flags set and cleared in order, propagation apart, the rest is data; x- and defaults dropped', () => {
    expect(parseMountOptions(['ro', 'nosuid', 'nodev', 'rw', 'noexec', 'exec', 'relatime', 'rslave', 'mode=755', 'size=64k', 'x-systemd.automount', 'defaults'])).toEqual({
      flags: MS.NOSUID | MS.NODEV | MS.RELATIME, propagation: MS.SLAVE | MS.REC, data: ['mode=755', 'size=64k'],
    });
    expect(parseMountOptions(['strictatime', 'nostrictatime', 'noatime', 'nodiratime', 'sync', 'dirsync', 'lazytime', 'nosymfollow'])).toEqual({
      flags: MS.NOATIME | MS.NODIRATIME | MS.SYNCHRONOUS | MS.DIRSYNC | MS.LAZYTIME | MS.NOSYMFOLLOW, propagation: 0, data: [],
    });
    expect(parseMountOptions(['shared', 'private', 'unbindable'])).toEqual({ flags: 0, propagation: MS.SHARED | MS.PRIVATE | MS.UNBINDABLE, data: [] });
    expect(parseMountOptions(undefined)).toEqual({ flags: 0, propagation: 0, data: [] });
  });

  it('devices anywhere in the container, as runc makes them; a relative path is from its top', () => {
    const p = plan({ ...baseSpec(), linux: { ...baseSpec().linux, devices: [{ type: 'c', path: '/tmp/nul', major: 1, minor: 3 }, { type: 'c', path: 'dev/zero2', major: 1, minor: 5 }] } });
    expect(p.devices.map((d) => d.path)).toEqual(expect.arrayContaining(['/tmp/nul', '/dev/zero2']));
  });

  it('an exec runs with umask 0022 whatever its spec says, as runc\'s exec', () => {
    const e = execPlan({ id: 'c1', execId: 'e1', targetPid: 1, initNamespaces: [], process: { args: ['/bin/sh'], cwd: '/', user: { uid: 0, gid: 0, umask: 0o077 } } as never, stdio: STDIO, cgroupProcs: [], seccomp: null });
    expect(e.process.umask).toBe(0o022);
  });

  it('recursive mount attributes (runc\'s rro, rnoexec, ...): MOUNT_ATTR_* to set and clear, an atime mode with the whole atime field cleared; never mount data', () => {
    expect(parseMountOptions(['rbind', 'rro', 'rnoexec'])).toEqual({ flags: MS.BIND | MS.REC, propagation: 0, data: [], recursive: { set: 0x1 | 0x8, clr: 0 } });
    expect(parseMountOptions(['rrw', 'rsuid'])).toEqual({ flags: 0, propagation: 0, data: [], recursive: { set: 0, clr: 0x1 | 0x2 } });
    expect(parseMountOptions(['rnoatime']).recursive).toEqual({ set: 0x10, clr: 0x70 });
    expect(parseMountOptions(['rrelatime']).recursive).toEqual({ set: 0, clr: 0x70 });
    const step = mountStep({ destination: '/m', type: 'bind', source: '/src', options: ['rbind', 'rro'] }, 0, null);
    expect(step.recursive).toEqual({ set: 0x1, clr: 0 });
    expect(step.data).toBe('');
    expect(() => parseMountOptions(['tmpcopyup'])).toThrow(/tmpcopyup .* is not supported by spore/);
  });

  it('a bind mount: MS_BIND (REC for rbind) first, the rest only on the remount pass; type dropped', () => {
    expect(mountStep({ destination: '/etc/resolv.conf', type: 'bind', source: '/etc/resolv.conf', options: ['rbind', 'ro', 'nosuid', 'rprivate'] }, 0, null)).toEqual({
      destination: '/etc/resolv.conf', source: '/etc/resolv.conf', type: '', flags: MS.BIND | MS.REC, propagation: MS.PRIVATE | MS.REC,
      data: '', bind: true, remountFlags: MS.RDONLY | MS.NOSUID,
    });
    // `bind` in the options makes it a bind mount whatever the type; no remount flags: no remount pass
    expect(mountStep({ destination: '/data', source: '/srv/data', options: ['bind'] }, 0, null)).toMatchObject({ type: '', flags: MS.BIND, bind: true, remountFlags: 0 });
  });

  it('a filesystem mount: flags on the mount call, data joined; source defaults to the type', () => {
    expect(mountStep({ destination: '/dev/pts', type: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'] }, 2, null)).toEqual({
      destination: '/dev/pts', source: 'devpts', type: 'devpts', flags: MS.NOSUID | MS.NOEXEC, propagation: 0,
      data: 'newinstance,ptmxmode=0666,mode=0620,gid=5', bind: false, remountFlags: 0,
    });
  });

  it('a cgroup mount: cgroup2 on a v2 host, per-controller binds on v1; read-only carried as the remount flag', () => {
    const m = { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev', 'relatime', 'ro'] };
    expect(mountStep(m, 0, null)).toMatchObject({ type: 'cgroup2', source: 'cgroup2', remountFlags: MS.RDONLY, bind: false });
    const v1 = [{ name: 'memory', hostDir: '/sys/fs/cgroup/memory/default/c1' }];
    const step = mountStep(m, 0, v1);
    expect(step).toMatchObject({ type: 'cgroup', remountFlags: MS.RDONLY, cgroupV1: v1 });
    expect(mountStep({ ...m, options: [] }, 0, null).remountFlags).toBe(0);
  });

  it("a container's cgroup2 mount carries the host root's options (a mount without them resets them node-wide)", () => {
    const m = { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'ro'] };
    expect(mountStep(m, 0, null, ['nsdelegate', 'memory_recursiveprot', 'favordynmods']).data).toBe('nsdelegate,memory_recursiveprot,favordynmods');
    // the spec's own data first; a host option it sets itself is not doubled
    const own = { ...m, options: ['nosuid', 'nsdelegate', 'memory_localevents'] };
    expect(mountStep(own, 0, null, ['nsdelegate', 'favordynmods']).data).toBe('nsdelegate,memory_localevents,favordynmods');
    // v1 binds take none
    expect(mountStep(m, 0, [{ name: 'memory', hostDir: '/x' }], ['favordynmods']).data).toBe('');
  });

  it('capabilities: names to bit masks per set, ambient as a list of bits', () => {
    expect(capMask(['CAP_CHOWN', 'CAP_KILL', 'CAP_NET_BIND_SERVICE'], 'bounding')).toBe((1n << 0n) | (1n << 5n) | (1n << 10n));
    expect(capMask(['CAP_CHECKPOINT_RESTORE'], 'effective')).toBe(1n << 40n);
    expect(capMask(undefined, 'effective')).toBe(0n);
    const p = plan({ ...baseSpec(), process: { ...baseSpec().process, capabilities: { bounding: ['CAP_SYS_ADMIN'], effective: ['CAP_SYS_ADMIN'], permitted: ['CAP_SYS_ADMIN', 'CAP_KILL'], inheritable: [], ambient: ['CAP_KILL', 'CAP_SYS_ADMIN'] } } });
    expect(p.process.caps).toEqual({ bounding: 1n << 21n, effective: 1n << 21n, permitted: (1n << 21n) | (1n << 5n), inheritable: 0n, ambient: [5, 21] });
  });

  it('user, umask, rlimits, no_new_privs, oom_score_adj', () => {
    const p = processPlan({
      user: { uid: 1000, gid: 100, additionalGids: [10, 20], umask: 0o077 }, args: ['app'], cwd: '/srv', env: ['A=1'],
      rlimits: [{ type: 'RLIMIT_NOFILE', soft: 1024, hard: 4096 }, { type: 'RLIMIT_CORE', soft: 0, hard: 0 }, { type: 'RLIMIT_AS', soft: 2 ** 64, hard: 2 ** 64 }],
      noNewPrivileges: true, oomScoreAdj: -500,
    }, STDIO, null);
    expect(p).toMatchObject({ uid: 1000, gid: 100, additionalGids: [10, 20], umask: 0o077, noNewPrivileges: true, oomScoreAdj: -500, seccomp: null });
    expect(p.rlimits).toEqual([
      { resource: 7, soft: 1024n, hard: 4096n },
      { resource: 4, soft: 0n, hard: 0n },
      { resource: 9, soft: BigInt(Number.MAX_SAFE_INTEGER), hard: BigInt(Number.MAX_SAFE_INTEGER) }, // past 2^53: unlimited anyway
    ]);
    // no user: root; noNewPrivileges only when exactly true
    expect(processPlan({ args: ['a'], cwd: '/', noNewPrivileges: 'yes' } as never, STDIO, null)).toMatchObject({ uid: 0, gid: 0, noNewPrivileges: false });
  });

  it('namespaces: new ones (path null) and joined ones (absolute path), in spec order', () => {
    expect(namespaceSteps({ linux: { namespaces: [{ type: 'network', path: '/var/run/netns/n1' }, { type: 'mount' }, { type: 'ipc', path: '/proc/7/ns/ipc' }] } } as Spec)).toEqual([
      { type: 'network', path: '/var/run/netns/n1' }, { type: 'mount', path: null }, { type: 'ipc', path: '/proc/7/ns/ipc' },
    ]);
    expect(namespaceSteps({} as Spec)).toEqual([]);
  });

  it('hostname and domainname only with a new uts namespace (joined one: ignored, none: hostname refused)', () => {
    const named = { ...baseSpec(), hostname: 'box', domainname: 'example.org' };
    expect(plan(named)).toMatchObject({ hostname: 'box', domainname: 'example.org' });
    expect(plan({ ...named, hostname: undefined })).toMatchObject({ hostname: null, domainname: 'example.org' });
    const joinedUts = { ...named, hostname: undefined, linux: { namespaces: [{ type: 'mount' }, { type: 'uts', path: '/proc/9/ns/uts' }] } };
    expect(plan(joinedUts)).toMatchObject({ hostname: null, domainname: null });
  });

  it('a user namespace: a new one carries its maps for the seed to write; a joined one is only a namespace to enter', () => {
    const maps = { uidMappings: [{ containerID: 0, hostID: 100000, size: 65536 }], gidMappings: [{ containerID: 0, hostID: 200000, size: 1000 }, { containerID: 1000, hostID: 300000, size: 1 }] };
    const own = plan({ ...baseSpec(), process: { ...baseSpec().process, user: { uid: 1000, gid: 1000 } }, linux: { namespaces: [{ type: 'pid' }, { type: 'mount' }, { type: 'user' }], ...maps } });
    expect(own.userNs).toEqual(maps);
    expect(own.namespaces).toContainEqual({ type: 'user', path: null });
    const joined = plan({ ...baseSpec(), linux: { namespaces: [{ type: 'mount' }, { type: 'user', path: '/proc/7/ns/user' }] } });
    expect(joined.userNs).toBeUndefined();
    // with the mappings runc asks for beside a path: accepted, not written (the namespace has its own)
    expect(plan({ ...baseSpec(), linux: { namespaces: [{ type: 'mount' }, { type: 'user', path: '/proc/7/ns/user' }], ...maps } }).userNs).toBeUndefined();
    expect(joined.namespaces).toContainEqual({ type: 'user', path: '/proc/7/ns/user' });
    expect(plan(baseSpec()).userNs).toBeUndefined();
    expect(idMapText(maps.gidMappings)).toBe('0 200000 1000\n1000 300000 1\n');
  });

  it('devices: "u" is a char device, a listed default replaces it in place, the rest appended', () => {
    const p = plan({ ...baseSpec(), linux: { ...baseSpec().linux, devices: [
      { type: 'c', path: '/dev/fuse', major: 10, minor: 229, fileMode: 0o600, uid: 0, gid: 0 },
      { type: 'u', path: '/dev/null', major: 1, minor: 3, fileMode: 0o640, gid: 5 },
      { type: 'b', path: '/dev/loop0', major: 7, minor: 0 },
      { type: 'p', path: '/dev/fifo0' },
    ] } });
    expect(p.devices.map((d) => d.path)).toEqual(['/dev/null', '/dev/random', '/dev/full', '/dev/tty', '/dev/zero', '/dev/urandom', '/dev/fuse', '/dev/loop0', '/dev/fifo0']);
    expect(p.devices[0]).toEqual({ path: '/dev/null', type: 'c', major: 1, minor: 3, mode: 0o640, uid: 0, gid: 5 });
    expect(p.devices[6]).toEqual({ path: '/dev/fuse', type: 'c', major: 10, minor: 229, mode: 0o600, uid: 0, gid: 0 });
    expect(p.devices[7]).toEqual({ path: '/dev/loop0', type: 'b', major: 7, minor: 0, mode: 0o666, uid: 0, gid: 0 });
    expect(p.devices[8]).toMatchObject({ type: 'p', major: 0, minor: 0 });
  });

  it('root propagation, read-only root, masked and read-only paths, sysctls', () => {
    const p = plan({ ...baseSpec(), root: { path: 'rootfs', readonly: true }, linux: {
      ...baseSpec().linux, namespaces: [...baseSpec().linux.namespaces, { type: 'network' }], rootfsPropagation: 'rshared', maskedPaths: ['/proc/kcore', '/sys/firmware'], readonlyPaths: ['/proc/sys'], sysctl: { 'net.ipv4.ip_forward': '1' },
    } });
    expect(p).toMatchObject({ readonlyRoot: true, rootPropagation: MS.SHARED, maskedPaths: ['/proc/kcore', '/sys/firmware'], readonlyPaths: ['/proc/sys'], sysctl: { 'net.ipv4.ip_forward': '1' } });
    expect(plan({ ...baseSpec(), linux: { ...baseSpec().linux, rootfsPropagation: 'private' } }).rootPropagation).toBe(MS.PRIVATE);
  });

  it('sysctls of the container\'s own namespaces pass; a network namespace joined by path is checked against the host\'s', () => {
    const ns = [{ type: 'mount' }, { type: 'ipc' }, { type: 'uts' }, { type: 'network', path: '/var/run/netns/n1' }];
    const spec = { ...baseSpec(), linux: { namespaces: ns, sysctl: { 'kernel.shm_rmid_forced': '1', 'fs.mqueue.msg_max': '20', 'kernel.domainname': 'd', 'net.ipv4.ip_unprivileged_port_start': '80' } } };
    expect(initPlan({ id: 'c1', spec: spec as Spec, rootfs: '/r', stdio: STDIO, cgroupProcs: [], cgroupV1Dirs: null, seccomp: null, isHostNetns: () => false }).sysctl).toMatchObject({ 'kernel.domainname': 'd' });
    rejects(() => initPlan({ id: 'c1', spec: spec as Spec, rootfs: '/r', stdio: STDIO, cgroupProcs: [], cgroupV1Dirs: null, seccomp: null, isHostNetns: (p) => p === '/var/run/netns/n1' }), /^linux.sysctl net.ipv4.ip_unprivileged_port_start: not allowed in the host's network namespace/);
  });

  it('a relative mount destination is taken from the root, as runc takes it', () => {
    expect(plan({ ...baseSpec(), mounts: [{ destination: 'proc', type: 'proc', source: 'proc' }] }).mounts[0]?.destination).toBe('/proc');
  });

  it('AppArmor and SELinux: carried to execve when the host has the module, refused when it has not', () => {
    const p = plan({ ...baseSpec(), process: { ...baseSpec().process, apparmorProfile: 'cri-default', selinuxLabel: 'system_u:system_r:container_t:s0' } }).process;
    expect(p).toMatchObject({ apparmorProfile: 'cri-default', selinuxLabel: 'system_u:system_r:container_t:s0' });
    expect(() => checkLsm(p, { apparmor: true, selinux: true })).not.toThrow();
    expect(() => checkLsm(p, { apparmor: false, selinux: true })).toThrow(/^process.apparmorProfile "cri-default": AppArmor is not enabled on this host/);
    expect(() => checkLsm(p, { apparmor: true, selinux: false })).toThrow(/^process.selinuxLabel is set, but SELinux is not enabled/);
    expect(() => checkLsm(plan(baseSpec()).process, { apparmor: false, selinux: false })).not.toThrow();
  });

  it('an exec plan joins every namespace of the init but pid (the seed forks into that one), by /proc/<pid>/ns', () => {
    const init = plan({ ...baseSpec(), linux: { namespaces: [{ type: 'pid' }, { type: 'mount' }, { type: 'network', path: '/var/run/netns/n1' }, { type: 'ipc' }, { type: 'cgroup' }] } });
    const e = execPlan({
      id: 'c1', execId: 'e1', targetPid: 4242, initNamespaces: init.namespaces, process: { user: { uid: 0, gid: 0 }, args: ['/bin/ls'], cwd: '/' },
      stdio: STDIO, cgroupProcs: ['/sys/fs/cgroup/default/c1/cgroup.procs'], seccomp: null,
    });
    expect(e).toMatchObject({ kind: 'exec', id: 'c1', execId: 'e1', targetPid: 4242 });
    expect(e.namespaces).toEqual([
      { type: 'mount', path: '/proc/4242/ns/mnt' }, { type: 'network', path: '/proc/4242/ns/net' },
      { type: 'ipc', path: '/proc/4242/ns/ipc' }, { type: 'cgroup', path: '/proc/4242/ns/cgroup' },
    ]);
    expect(['mount', 'network', 'uts', 'cgroup'].map((t) => nsFile(t as never))).toEqual(['mnt', 'net', 'uts', 'cgroup']);
  });
});

describe('plan.ts: lateCgroupFits (the child sets up while spored makes its cgroup)', () => {
  const proc = { destination: '/proc', type: 'proc', source: 'proc' };
  const cgroupMount = { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['ro'] };
  const with_ = (edit: (s: ReturnType<typeof baseSpec>) => void): InitPlan => { const s = baseSpec(); edit(s); return plan(s); };
  const ctrLike = with_((s) => { s.mounts = [proc]; });
  const criLike = with_((s) => { s.mounts = [proc, cgroupMount]; });

  it('a plain spec with /proc: yes, from any seed', () => {
    expect(lateCgroupFits(ctrLike, false, true)).toBe(true);
    expect(lateCgroupFits(ctrLike, false, false)).toBe(true);
  });
  it('the cgroup hierarchy mounted (CRI): only with a root seed that joins before that mount', () => {
    expect(lateCgroupFits(criLike, false, true)).toBe(true);
    expect(lateCgroupFits(criLike, false, false)).toBe(false);
  });
  it('no /proc, runtime hooks, a pod\'s pid namespace joined, a user namespace of its own: no', () => {
    expect(lateCgroupFits(with_((s) => { s.mounts = []; }), false, true)).toBe(false);
    expect(lateCgroupFits(ctrLike, true, true)).toBe(false);
    expect(lateCgroupFits(with_((s) => { s.mounts = [proc]; s.linux.namespaces = [{ type: 'pid', path: '/proc/7/ns/pid' }, { type: 'mount' }]; }), false, true)).toBe(false);
    const maps = [{ containerID: 0, hostID: 100000, size: 65536 }];
    expect(lateCgroupFits(with_((s) => { s.mounts = [proc]; s.linux.namespaces = [{ type: 'pid' }, { type: 'mount' }, { type: 'user' }]; s.linux.uidMappings = maps; s.linux.gidMappings = maps; }), false, true)).toBe(false);
  });
});

describe('plan.ts: rejections (InvalidArgument naming the field)', () => {
  const withProcess = (p: Record<string, unknown>): unknown => ({ ...baseSpec(), process: { ...baseSpec().process, ...p } });
  const withLinux = (l: Record<string, unknown>): unknown => ({ ...baseSpec(), linux: { ...baseSpec().linux, ...l } });
  const ID_MAP = { containerID: 0, hostID: 100000, size: 65536 };
  // a user namespace of its own with good maps, then `l` over it
  const withUserNs = (l: Record<string, unknown>): Record<string, unknown> => ({ ...baseSpec(), linux: {
    ...baseSpec().linux, namespaces: [...(baseSpec().linux.namespaces as unknown[]), { type: 'user' }], uidMappings: [ID_MAP], gidMappings: [ID_MAP], ...l,
  } });
  const cases: [string, unknown, RegExp][] = [
    ['not an object', [], /config.json must be a JSON object/],
    ['linux not an object', { ...baseSpec(), linux: 'x' }, /^linux must be an object/],
    ['root not an object', { ...baseSpec(), root: 7 }, /^root must be an object/],
    ['no process', { ...baseSpec(), process: undefined }, /^process is required/],
    ['empty args', withProcess({ args: [] }), /^process.args must be a non-empty array of strings/],
    ['args not strings', withProcess({ args: ['sh', 1] }), /^process.args must be a non-empty array of strings/],
    ['relative cwd', withProcess({ cwd: 'srv' }), /^process.cwd must be an absolute path/],
    ['uid negative', withProcess({ user: { uid: -1, gid: 0 } }), /^process.user.uid\/gid must be integers from 0 to 2147483647/],
    ['gid too big', withProcess({ user: { uid: 0, gid: 2 ** 32 } }), /^process.user.uid\/gid/],
    // 2^32-1 is -1 to setresuid ("unchanged"): the process stayed root (oracle sweep, helper-54)
    ['uid 2^32-1', withProcess({ user: { uid: 2 ** 32 - 1, gid: 0 } }), /^process.user.uid\/gid must be integers from 0 to 2147483647, got 4294967295\/0/],
    ['uid 2^31', withProcess({ user: { uid: 2 ** 31, gid: 0 } }), /^process.user.uid\/gid/],
    ['additional gid 2^32-1', withProcess({ user: { uid: 0, gid: 0, additionalGids: [2 ** 32 - 1] } }), /^process.user.additionalGids must be integers from 0 to 2147483647/],
    ['additional gid a string', withProcess({ user: { uid: 0, gid: 0, additionalGids: ['10'] } }), /^process.user.additionalGids must be integers from 0 to 2147483647/],
    ['umask past 0777', withProcess({ user: { uid: 0, gid: 0, umask: 0o1000 } }), /^process.user.umask must be an integer 0..511/],
    ['env not strings', withProcess({ env: ['A=1', null] }), /^process.env\[1\] must be a string/],
    ['capabilities not an object', withProcess({ capabilities: ['CAP_KILL'] }), /^process.capabilities must be an object/],
    ['rlimit of unknown type', withProcess({ rlimits: [{ type: 'RLIMIT_FOO', soft: 1, hard: 1 }] }), /^process.rlimits\[0\]: unknown type "RLIMIT_FOO"/],
    ['rlimit soft > hard', withProcess({ rlimits: [{ type: 'RLIMIT_NOFILE', soft: 2048, hard: 1024 }] }), /^process.rlimits\[0\] \(RLIMIT_NOFILE\): soft must be <= hard/],
    ['rlimit negative', withProcess({ rlimits: [{ type: 'RLIMIT_NOFILE', soft: -1, hard: 1 }] }), /^process.rlimits\[0\] \(RLIMIT_NOFILE\): soft and hard must be unsigned integers/],
    ['rlimit not an object', withProcess({ rlimits: [1] }), /^process.rlimits\[0\] must be an object/],
    ['oom_score_adj out of range', withProcess({ oomScoreAdj: 1001 }), /^process.oomScoreAdj must be an integer -1000..1000/],
    ['terminal without a console', withProcess({ terminal: true }), /^process.terminal is true but no console was allocated/],
    ['no mount namespace', withLinux({ namespaces: [{ type: 'pid' }] }), /^linux.namespaces must include a mount namespace/],
    ['unknown namespace', withLinux({ namespaces: [{ type: 'mount' }, { type: 'sound' }] }), /^linux.namespaces\[1\]: unknown type "sound"/],
    ['namespace twice', withLinux({ namespaces: [{ type: 'mount' }, { type: 'mount' }] }), /^linux.namespaces: mount listed twice/],
    ['user namespace without mappings', withLinux({ namespaces: [{ type: 'mount' }, { type: 'user' }] }), /^linux.uidMappings is empty: a new user namespace needs at least one mapping/],
    ['mappings without a user namespace', withLinux({ uidMappings: [ID_MAP], gidMappings: [ID_MAP] }), /^linux.uidMappings\/gidMappings are set but linux.namespaces has no user namespace/],
    ['gid mappings missing', withUserNs({ gidMappings: [] }), /^linux.gidMappings is empty/],
    ['a mapping of size 0', withUserNs({ uidMappings: [{ containerID: 0, hostID: 100000, size: 0 }] }), /^linux.uidMappings\[0\].size must be at least 1/],
    ['a mapping without hostID', withUserNs({ uidMappings: [{ containerID: 0, size: 10 }] }), /^linux.uidMappings\[0\] needs containerID, hostID and size/],
    ['a negative id', withUserNs({ gidMappings: [{ containerID: 0, hostID: -1, size: 10 }] }), /^linux.gidMappings\[0\].hostID must be an integer 0..4294967295/],
    ['a mapping not an object', withUserNs({ uidMappings: ['0:100000:65536'] }), /^linux.uidMappings\[0\] must be an object, got "0:100000:65536"/],
    ['a range past 2^32-1', withUserNs({ uidMappings: [{ containerID: 0, hostID: 4294967000, size: 65536 }] }), /^linux.uidMappings\[0\]: the range reaches 2\^32-1, which is not an id/],
    ['a range that reaches 2^32-1 (the kernel\'s EINVAL)', withUserNs({ uidMappings: [{ containerID: 0, hostID: 1, size: 4294967295 }] }), /^linux.uidMappings\[0\]: the range reaches 2\^32-1/],
    ['overlapping container ranges', withUserNs({ uidMappings: [ID_MAP, { containerID: 1000, hostID: 300000, size: 10 }] }), /^linux.uidMappings: the containerID ranges at 0 \(size 65536\) and 1000 overlap/],
    ['overlapping host ranges', withUserNs({ gidMappings: [{ containerID: 0, hostID: 100000, size: 10 }, { containerID: 10, hostID: 100005, size: 10 }] }), /^linux.gidMappings: the hostID ranges at 100000 \(size 10\) and 100005 overlap/],
    ['more lines than the kernel takes', withUserNs({ uidMappings: Array.from({ length: 341 }, (_, i) => ({ containerID: i, hostID: 100000 + i, size: 1 })) }), /^linux.uidMappings has 341 entries; the kernel takes at most 340/],
    ['a map over one page', withUserNs({ uidMappings: Array.from({ length: 200 }, (_, i) => ({ containerID: 4000000000 + i * 2, hostID: 4000000000 + i, size: 1 })) }), /^linux.uidMappings is \d+ bytes as a map; the kernel takes one write under 4096 bytes/],
    ['container root not mapped', withUserNs({ uidMappings: [{ containerID: 1, hostID: 100000, size: 65535 }] }), /^linux.uidMappings must map container id 0/],
    ['container root group not mapped', withUserNs({ gidMappings: [{ containerID: 1, hostID: 100000, size: 65535 }] }), /^linux.gidMappings must map container id 0/],
    ['the process user not mapped', { ...withUserNs({ uidMappings: [{ containerID: 0, hostID: 100000, size: 1000 }] }), process: { ...baseSpec().process, user: { uid: 1000, gid: 0 } } }, /^process.user.uid 1000 is not mapped by linux.uidMappings/],
    ['an additional gid not mapped', { ...withUserNs({ gidMappings: [{ containerID: 0, hostID: 100000, size: 100 }] }), process: { ...baseSpec().process, user: { uid: 0, gid: 0, additionalGids: [5, 500] } } }, /^gid 500 of process.user is not mapped by linux.gidMappings/],
    ['time namespace', withLinux({ namespaces: [{ type: 'mount' }, { type: 'time' }] }), /^linux.namespaces: time namespaces are not supported/],
    ['relative namespace path', withLinux({ namespaces: [{ type: 'mount' }, { type: 'network', path: 'netns/n1' }] }), /^linux.namespaces\[1\] \(network\): path must be absolute/],
    ['namespace not an object', withLinux({ namespaces: ['mount'] }), /^linux.namespaces\[0\] must be an object/],
    ['hostname without a new uts namespace', { ...baseSpec(), hostname: 'box', linux: { namespaces: [{ type: 'mount' }] } }, /^hostname is set but there is no new uts namespace/],
    ['hostname not a string', { ...baseSpec(), hostname: 42 }, /^hostname must be a string/],
    ['domainname not a string', { ...baseSpec(), domainname: ['a'] }, /^domainname must be a string/],
    ['empty mount destination', { ...baseSpec(), mounts: [{ destination: '', type: 'proc' }] }, /^mounts\[0\].destination must be a path/],
    ['sysctl of the ipc namespace without one', withLinux({ namespaces: [{ type: 'mount' }], sysctl: { 'kernel.shm_rmid_forced': '1' } }), /^linux.sysctl kernel.shm_rmid_forced: not allowed in the host's ipc namespace/],
    ['fs.mqueue sysctl without an ipc namespace', withLinux({ namespaces: [{ type: 'mount' }], sysctl: { 'fs.mqueue.msg_max': '20' } }), /^linux.sysctl fs.mqueue.msg_max: not allowed in the host's ipc namespace/],
    ['net sysctl without a network namespace', withLinux({ namespaces: [{ type: 'mount' }], sysctl: { 'net.ipv4.ip_forward': '1' } }), /^linux.sysctl net.ipv4.ip_forward: not allowed in the host's network namespace/],
    ['a sysctl of no namespace', withLinux({ namespaces: [{ type: 'mount' }, { type: 'ipc' }, { type: 'network' }, { type: 'uts' }], sysctl: { 'vm.swappiness': '60' } }), /^linux.sysctl vm.swappiness: not in a separate kernel namespace/],
    ['kernel.hostname as a sysctl', withLinux({ namespaces: [{ type: 'mount' }, { type: 'uts' }], sysctl: { 'kernel.hostname': 'x' } }), /^linux.sysctl kernel.hostname: conflicts with the "hostname" field/],
    ['a sysctl name that climbs out of /proc/sys', withLinux({ namespaces: [{ type: 'mount' }, { type: 'network' }], sysctl: { 'net.ipv4/../../../sysrq-trigger': 'b' } }), /^linux.sysctl: "net.ipv4\/..\/..\/..\/sysrq-trigger" is not a sysctl name/],
    ['a hook with a relative path', { ...baseSpec(), hooks: { prestart: [{ path: 'bin/true' }] } }, /^hooks.prestart\[0\].path must be an absolute path/],
    ['a hook without a path', { ...baseSpec(), hooks: { createRuntime: [{ args: ['x'] }] } }, /^hooks.createRuntime\[0\].path must be an absolute path/],
    ['a hook timeout of 0', { ...baseSpec(), hooks: { poststop: [{ path: '/bin/true', timeout: 0 }] } }, /^hooks.poststop\[0\].timeout must be a positive integer/],
    ['a hook timeout not an integer', { ...baseSpec(), hooks: { poststart: [{ path: '/bin/true', timeout: 1.5 }] } }, /^hooks.poststart\[0\].timeout must be a positive integer/],
    ['hook args not strings', { ...baseSpec(), hooks: { createContainer: [{ path: '/bin/true', args: ['a', 1] }] } }, /^hooks.createContainer\[0\].args must be an array of strings/],
    ['hook env not an array', { ...baseSpec(), hooks: { startContainer: [{ path: '/bin/true', env: 'A=1' }] } }, /^hooks.startContainer\[0\].env must be an array of strings/],
    ['a hook list not an array', { ...baseSpec(), hooks: { prestart: { path: '/bin/true' } } }, /^hooks.prestart must be an array/],
    ['a hook not an object', { ...baseSpec(), hooks: { prestart: ['/bin/true'] } }, /^hooks.prestart\[0\] must be an object/],
    ['hook of an unknown kind', { ...baseSpec(), hooks: { prestop: [] } }, /^hooks.prestop: unknown hook kind/],
    ['hooks not an object', { ...baseSpec(), hooks: [] }, /^hooks must be an object/],
    ['mount without a type', { ...baseSpec(), mounts: [{ destination: '/x', source: 'x' }] }, /^mounts\[0\] \(\/x\): type is required for non-bind mounts/],
    ['bind of a relative source', { ...baseSpec(), mounts: [{ destination: '/x', type: 'bind', source: 'x', options: ['bind'] }] }, /^mounts\[0\] \(\/x\): bind source must be an absolute host path/],
    ['cgroup as a bind', { ...baseSpec(), mounts: [{ destination: '/sys/fs/cgroup', type: 'cgroup', options: ['rbind'] }] }, /^mounts\[0\] \(\/sys\/fs\/cgroup\): a cgroup mount cannot be a bind mount/],
    ['mount options not strings', { ...baseSpec(), mounts: [{ destination: '/x', type: 'tmpfs', options: ['ro', 3] }] }, /^mounts\[0\].options\[1\] must be a string/],
    ['mount type not a string', { ...baseSpec(), mounts: [{ destination: '/x', type: {} }] }, /^mounts\[0\].type must be a string/],
    ['mounts not an array', { ...baseSpec(), mounts: {} }, /^mounts must be an array/],
    ['device path empty', withLinux({ devices: [{ type: 'c', path: '', major: 1, minor: 3 }] }), /^linux.devices\[0\].path must be a file path in the container/],
    ['device path the root', withLinux({ devices: [{ type: 'c', path: '//', major: 1, minor: 3 }] }), /^linux.devices\[0\].path must be a file path/],
    // runc's init refuses these (helper-54's sweep: spore ran them)
    ['env without =', withProcess({ env: ['PATH=/bin', 'FOO'] }), /^process.env\[1\] "FOO": invalid environment variable: missing '='/],
    ['env with an empty name', withProcess({ env: ['=x'] }), /^process.env\[0\] "=x": invalid environment variable: name cannot be empty/],
    ['env empty', withProcess({ env: [''] }), /missing '='/],
    ['env with NUL', withProcess({ env: ['A=b\u0000c'] }), /contains a NUL byte/],
    ['device of unknown type', withLinux({ devices: [{ type: 'x', path: '/dev/x' }] }), /^linux.devices\[0\].type must be c, b, u or p/],
    ['device mode past 07777', withLinux({ devices: [{ type: 'c', path: '/dev/x', fileMode: 0o10000 }] }), /^linux.devices\[0\].fileMode must be an integer 0..4095/],
    ['device major negative', withLinux({ devices: [{ type: 'c', path: '/dev/x', major: -1 }] }), /^linux.devices\[0\].major must be an integer/],
    ['unknown root propagation', withLinux({ rootfsPropagation: 'rsometimes' }), /^linux.rootfsPropagation: unknown value "rsometimes"/],
    ['sysctl value not a string', withLinux({ sysctl: { 'net.ipv4.ip_forward': 1 } }), /^linux.sysctl\["net.ipv4.ip_forward"\] must be a string/],
    ['masked path not a string', withLinux({ maskedPaths: ['/proc/kcore', 1] }), /^linux.maskedPaths\[1\] must be a string/],
    ['read-only paths not an array', withLinux({ readonlyPaths: '/proc/sys' }), /^linux.readonlyPaths must be an array/],
  ];
  for (const [what, spec, field] of cases) {
    it(what, () => rejects(() => plan(spec), field));
  }

  it('an exec process is named as such', () => {
    rejects(() => execPlan({
      id: 'c1', execId: 'e1', targetPid: 1, initNamespaces: [{ type: 'mount', path: null }], process: { user: { uid: 0, gid: 0 }, args: [], cwd: '/' },
      stdio: STDIO, cgroupProcs: [], seccomp: null,
    }), /^exec process.args must be a non-empty array of strings/);
    rejects(() => execPlan({
      id: 'c1', execId: 'e1', targetPid: 1, initNamespaces: [], process: undefined, stdio: STDIO, cgroupProcs: [], seccomp: null,
    }), /^exec process is required/);
  });

  it('the rejection test itself bites: a valid spec is not rejected', () => {
    expect(() => rejects(() => plan(baseSpec()), /./)).toThrow(/accepted/);
  });
});
