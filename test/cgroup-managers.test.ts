// CgroupV1Manager / CgroupV2Manager against a fake cgroupfs in a temp dir (no root needed).
// The fake is plain directories and files laid out like the kernel's: a "kernel" helper makes a
// cgroup directory with the control files a real one would have (empty, so one write is the
// whole content: writeValue opens without O_TRUNC, as cgroupfs needs). Layouts come from
// detectCgroupLayout(<temp root>, <fake mountinfo>), the same path the daemon uses.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FailedPrecondition, Internal, InvalidArgument } from '../sys/errors.js';
import {
  type CgroupHandle, type CgroupLayout, type CgroupManager, type CgroupStats,
  applyResources, cgroupHandle, cgroupManager, CgroupPool, CgroupV1Manager, CgroupV2Manager, detectCgroupLayout,
  freeze, killAll, oomKillCount, pids, procsFiles, stats, thaw, UNLIMITED,
} from '../pools/cgroups.js';

const MiB = 1 << 20;
const V1_FAR_MAX = '9223372036854771712'; // v1's "no limit" page-counter value

let tmp: string;
const children: ChildProcess[] = [];

function mk(dir: string, files: Record<string, string> = {}): void {
  mkdirSync(dir, { recursive: true });
  for (const [f, v] of Object.entries(files)) writeFileSync(join(dir, f), v);
}
function read(file: string): string {
  return readFileSync(file, 'utf8');
}
/** Files with empty content: what a write target looks like before the manager writes. */
function empty(...names: string[]): Record<string, string> {
  return Object.fromEntries(names.map((n) => [n, '']));
}
function hugepagesDir(): string {
  const d = join(tmp, 'sys-hugepages');
  mk(join(d, 'hugepages-2048kB'));
  mk(join(d, 'not-a-size'));
  return d;
}

beforeEach(() => {
  tmp = mkdtempSync(join(tmpdir(), 'spore-cgmgr-'));
});
afterEach(() => {
  rmSync(tmp, { recursive: true, force: true });
});
afterAll(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

// ---- fake hierarchies ----------------------------------------------------------------------

const V2_LEAF_FILES = [
  'cgroup.procs', 'cgroup.freeze', 'cgroup.kill', 'memory.max', 'memory.swap.max', 'memory.low', 'memory.high',
  'cpu.weight', 'cpu.max', 'cpu.idle', 'cpuset.cpus', 'cpuset.mems', 'pids.max', 'io.max', 'io.weight', 'hugetlb.2MB.max',
];

/** A pure-v2 host: cgroup2 mounted at <tmp>/cgroup. */
function fakeV2(): { root: string; layout: CgroupLayout } {
  const root = join(tmp, 'cgroup');
  mk(root, { 'cgroup.controllers': 'cpuset cpu io memory hugetlb pids misc\n', 'cgroup.subtree_control': 'cpu memory\n', 'cgroup.procs': '' });
  const mi = join(tmp, 'mountinfo');
  writeFileSync(mi, `30 23 0:26 / ${root} rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n`);
  return { root, layout: detectCgroupLayout(root, mi) };
}

/** A v2 cgroup as the kernel would show it: control files present, all empty. */
function v2Leaf(dir: string, extra: Record<string, string> = {}): void {
  mk(dir, { ...empty(...V2_LEAF_FILES), ...extra });
}

const V1_MOUNTS: [string, string][] = [
  ['cpu,cpuacct', 'cpu,cpuacct'], ['cpuset', 'cpuset'], ['memory', 'memory'], ['devices', 'devices'],
  ['freezer', 'freezer'], ['blkio', 'blkio'], ['pids', 'pids'], ['hugetlb', 'hugetlb'], ['net_cls', 'net_cls'],
];

/** A hybrid host like this machine's: v1 controllers under <tmp>/cgroup/<ctrl>, cgroup2 at <tmp>/cgroup/unified. */
function fakeHybrid(opts: { omit?: string[]; noUnified?: boolean } = {}): { root: string; layout: CgroupLayout } {
  const root = join(tmp, 'cgroup');
  const lines: string[] = [`31 23 0:28 / ${root} rw - tmpfs tmpfs rw,mode=755`];
  let id = 32;
  for (const [dir, opt] of V1_MOUNTS) {
    if (opts.omit?.includes(dir)) continue;
    mk(join(root, dir), { 'cgroup.procs': '' });
    lines.push(`${id} 31 0:${id} / ${root}/${dir} rw,relatime - cgroup cgroup rw,${opt}`);
    id++;
  }
  lines.push(`${id++} 31 0:${id} / ${root}/systemd rw - cgroup cgroup rw,xattr,name=systemd`);
  if (!opts.noUnified) {
    mk(join(root, 'unified'), { 'cgroup.controllers': '', 'cgroup.procs': '' });
    lines.push(`${id} 31 0:${id} / ${root}/unified rw - cgroup2 cgroup2 rw`);
  }
  const mi = join(tmp, 'mountinfo');
  writeFileSync(mi, lines.join('\n') + '\n');
  return { root, layout: detectCgroupLayout(root, mi) };
}

/** The v1 control files of a cgroup in each hierarchy (and the cgroup2 core files in unified). */
function v1Cgroup(root: string, path: string, extra: Record<string, Record<string, string>> = {}): void {
  const files: Record<string, string[]> = {
    'cpu,cpuacct': ['cpu.shares', 'cpu.cfs_period_us', 'cpu.cfs_quota_us', 'cpu.rt_period_us', 'cpu.rt_runtime_us'],
    cpuset: ['cpuset.cpus', 'cpuset.mems'],
    memory: ['memory.limit_in_bytes', 'memory.memsw.limit_in_bytes', 'memory.soft_limit_in_bytes', 'memory.swappiness', 'memory.oom_control',
      'memory.max_usage_in_bytes', 'memory.memsw.max_usage_in_bytes', 'memory.failcnt', 'memory.memsw.failcnt'],
    devices: ['devices.allow', 'devices.deny'],
    freezer: ['freezer.state'],
    blkio: ['blkio.weight', 'blkio.throttle.read_bps_device', 'blkio.reset_stats'],
    pids: ['pids.max'],
    hugetlb: ['hugetlb.2MB.limit_in_bytes'],
    net_cls: ['net_cls.classid'],
    unified: ['cgroup.freeze', 'cgroup.kill'],
  };
  for (const [h, names] of Object.entries(files)) {
    if (!existsSync(join(root, h))) continue;
    mk(join(root, h) + path, { 'cgroup.procs': '', ...empty(...names), ...(extra[h] ?? {}) });
  }
}

// ---- choosing the manager ------------------------------------------------------------------

describe('choosing a manager from the detected layout', () => {
  it('pure v2 gets the v2 manager, hybrid and v1 the v1 manager', () => {
    const v2 = fakeV2();
    expect(v2.layout.mode).toBe('v2');
    expect(v2.layout.unified).toBe(v2.root);
    expect(v2.layout.unifiedControllers).toEqual(['cpuset', 'cpu', 'io', 'memory', 'hugetlb', 'pids', 'misc']);
    expect(cgroupManager(v2.layout).kind).toBe('v2');
    expect(cgroupManager(v2.layout)).toBeInstanceOf(CgroupV2Manager);
    rmSync(join(tmp, 'cgroup'), { recursive: true });

    const hy = fakeHybrid();
    expect(hy.layout.mode).toBe('hybrid');
    expect(hy.layout.v1['cpuacct']).toBe(join(hy.root, 'cpu,cpuacct'));
    expect(cgroupManager(hy.layout)).toBeInstanceOf(CgroupV1Manager);
    expect(cgroupManager('v1').kind).toBe('v1');
    expect(cgroupManager('v2', { freezeTimeoutMs: 5 })).not.toBe(cgroupManager('v2'));
    expect(() => cgroupManager('v3' as never)).toThrow(InvalidArgument);

    const h = cgroupHandle(hy.layout, 'ctr');
    expect(h.dirs['unified']).toBe(`${hy.root}/unified/spore/ctr`);
    expect(h.dirs['cpu']).toBe(h.dirs['cpuacct']);
    expect(procsFiles(h)).toContain(`${hy.root}/unified/spore/ctr/cgroup.procs`);
    expect(procsFiles(h).length).toBe(new Set(Object.values(h.dirs)).size);
  });

  it('a manager refuses a handle of the other version', () => {
    const { layout } = fakeV2();
    const h = cgroupHandle(layout, 'ctr');
    expect(() => new CgroupV1Manager().applyResources(h, { pids: { limit: 5 } })).toThrow(/v2 handle; the cgroup v1 manager/);
    const v1h: CgroupHandle = { ...h, mode: 'hybrid' };
    expect(() => new CgroupV2Manager().create(v1h)).toThrow(InvalidArgument);
    expect(() => new CgroupV2Manager().stats(v1h)).toThrow(InvalidArgument);
  });
});

// ---- v2 ------------------------------------------------------------------------------------

describe('CgroupV2Manager on a fake unified hierarchy', () => {
  let root: string;
  let layout: CgroupLayout;
  let m: CgroupManager;
  let h: CgroupHandle;
  let dir: string;
  beforeEach(() => {
    ({ root, layout } = fakeV2());
    m = new CgroupV2Manager({ hugepagesDir: hugepagesDir(), freezeTimeoutMs: 30 });
    h = cgroupHandle(layout, 'ctr');
    dir = `${root}/spore/ctr`;
  });

  it('create delegates missing controllers to ancestors, makes the dir, then writes limits', () => {
    // /spore exists with everything delegated; the root lacks pids/io/cpuset/hugetlb/misc in subtree_control.
    mk(`${root}/spore`, { 'cgroup.controllers': 'cpu memory pids\n', 'cgroup.subtree_control': 'cpu memory pids\n' });
    writeFileSync(`${root}/cgroup.controllers`, 'cpu memory pids\n');
    v2Leaf(dir);
    const { warnings } = m.create(h, {
      memory: { limit: 64 * MiB, swap: 96 * MiB, reservation: 32 * MiB },
      cpu: { shares: 1024, quota: 50000, period: 100000, cpus: '0-1', mems: '0' },
      pids: { limit: 100 },
    });
    expect(warnings).toEqual([]);
    expect(read(`${root}/cgroup.subtree_control`)).toBe('+pids'); // the one controller missing at the root (writeFileSync: one write replaces)
    expect(read(`${root}/spore/cgroup.subtree_control`)).toBe('cpu memory pids\n'); // untouched
    expect(read(`${dir}/memory.max`)).toBe(String(64 * MiB));
    expect(read(`${dir}/memory.swap.max`)).toBe(String(32 * MiB)); // v2 swap is swap alone
    expect(read(`${dir}/memory.low`)).toBe(String(32 * MiB));
    expect(read(`${dir}/cpu.weight`)).toBe('39');
    expect(read(`${dir}/cpu.max`)).toBe('50000 100000');
    expect(read(`${dir}/cpuset.cpus`)).toBe('0-1');
    expect(read(`${dir}/cpuset.mems`)).toBe('0');
    expect(read(`${dir}/pids.max`)).toBe('100');
  });

  it('create on a bare hierarchy makes the directories; destroy removes them and sub-cgroups', () => {
    m.create(h);
    expect(existsSync(dir)).toBe(true);
    mk(`${dir}/sub/deeper`);
    m.destroy(h);
    expect(existsSync(dir)).toBe(false);
    expect(existsSync(`${root}/spore`)).toBe(true); // ancestors stay
    m.destroy(h); // idempotent
    expect(() => m.destroy({ ...h, dirs: { unified: `${root}/spore` } })).toThrow(/refusing to remove/);
  });

  it('writes v2 names: unlimited as max, cpu.max keeps the current period, io, hugetlb, unified', () => {
    v2Leaf(dir, { 'cpu.max': 'max 50000\n' });
    m.applyResources(h, { memory: { limit: -1 }, pids: { limit: -1 }, cpu: { quota: 20000 } });
    expect(read(`${dir}/memory.max`)).toBe('max');
    expect(read(`${dir}/memory.swap.max`)).toBe('max'); // unlimited memory, no swap given: unlimited swap
    expect(read(`${dir}/pids.max`)).toBe('max');
    expect(read(`${dir}/cpu.max`)).toBe('20000 50000');
    m.applyResources(h, {
      blockIO: { weight: 500, throttleReadBpsDevice: [{ major: 8, minor: 0, rate: 1048576 }] },
      hugepageLimits: [{ pageSize: '2MB', limit: 4 * MiB }],
      unified: { 'memory.high': '123456' },
    });
    expect(read(`${dir}/io.weight`)).toBe(`default ${Math.floor(1 + (490 * 9999) / 990)}`);
    expect(read(`${dir}/io.max`)).toBe('8:0 rbps=1048576');
    expect(read(`${dir}/hugetlb.2MB.max`)).toBe(String(4 * MiB));
    expect(read(`${dir}/memory.high`)).toBe('123456');
    expect(m.applyResources(h, { pids: { limit: 0 } }).warnings).toEqual([]); // 0 = not set: nothing written
  });

  it('warns for what v2 cannot honour', () => {
    v2Leaf(dir);
    rmSync(`${dir}/memory.swap.max`);
    const { warnings } = m.applyResources(h, {
      memory: { limit: 64 * MiB, swap: 128 * MiB, swappiness: 10, disableOOMKiller: true, kernel: 1 },
      cpu: { realtimeRuntime: 1000 },
      devices: [{ allow: false, access: 'rwm' }, { allow: true, type: 'c', major: 1, minor: 3, access: 'rwm' }],
      hugepageLimits: [{ pageSize: '1GB', limit: 1 }],
      network: { classID: 7, priorities: [{ name: 'eth0', priority: 1 }] },
      rdma: { mlx: { hcaHandles: 1 } },
    });
    expect(warnings).toEqual([
      'memory.swap.max not available (swap accounting disabled); swap limit ignored',
      'memory.swappiness has no cgroup v2 equivalent; ignored',
      'disableOOMKiller is not supported on cgroup v2; ignored',
      'memory.kernel / kernelTCP limits are deprecated by the kernel; ignored',
      'realtime cpu limits are not supported on cgroup v2; ignored',
      'device cgroup rules are not enforced on cgroup v2 (needs an eBPF device program); ignored',
      'hugetlb limit for 1GB not available (controller or page size missing); ignored',
      'net_cls controller not available; network.classID ignored',
      'net_prio controller not available; priority for eth0 ignored',
      'rdma limits are not supported; ignored',
    ]);
    expect(m.applyResources(h, { devices: [{ allow: true, access: 'rwm' }] }).warnings).toEqual([]);
  });

  it('rejects bad input with typed errors', () => {
    v2Leaf(dir);
    expect(() => m.applyResources(h, { memory: { limit: 100, swap: 50 } })).toThrow(InvalidArgument);
    expect(() => m.applyResources(h, { memory: { swap: 50 } })).toThrow(/without a memory limit/);
    expect(() => m.applyResources(h, { unified: { 'cgroup.max.depth': '1' } })).toThrow(/core files/);
    expect(() => m.applyResources(h, { unified: { '../x': '1' } })).toThrow(/not a cgroup file name/);
    expect(() => m.applyResources(h, { unified: { 'rdma.max': '1' } })).toThrow(/no such cgroup file/);
    expect(() => m.applyResources(h, { hugepageLimits: [{ pageSize: '2M', limit: 1 }] })).toThrow(/pageSize "2M"/);
    expect(() => m.applyResources(h, { devices: [{ allow: true, type: 'x' as 'a' }] })).toThrow(InvalidArgument);
    rmSync(`${dir}/pids.max`);
    expect(() => m.applyResources(h, { pids: { limit: 5 } })).toThrow(FailedPrecondition); // controller not delegated
    expect(() => m.addProcess(h, -1)).toThrow(InvalidArgument);
    expect(() => m.killAll(h, 'SIGNOPE' as NodeJS.Signals)).toThrow(/unknown signal/);
  });

  it('reads stats and OOM kills from v2 files', () => {
    v2Leaf(dir);
    writeFileSync(`${dir}/cpu.stat`, 'usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 10\nnr_throttled 2\nthrottled_usec 7\n');
    writeFileSync(`${dir}/memory.current`, '4096\n');
    writeFileSync(`${dir}/memory.max`, 'max\n');
    writeFileSync(`${dir}/memory.peak`, '8192\n');
    writeFileSync(`${dir}/memory.events`, 'low 0\nhigh 1\nmax 4\noom 3\noom_kill 3\n');
    writeFileSync(`${dir}/memory.stat`, 'anon 100\nfile 200\n');
    writeFileSync(`${dir}/memory.swap.current`, '0\n');
    writeFileSync(`${dir}/memory.swap.max`, '1048576\n');
    writeFileSync(`${dir}/memory.swap.events`, 'max 1\nfail 0\n');
    writeFileSync(`${dir}/pids.current`, '2\n');
    writeFileSync(`${dir}/pids.max`, '64\n');
    writeFileSync(`${dir}/io.stat`, '8:0 rbytes=5 wbytes=6\n');
    writeFileSync(`${dir}/hugetlb.2MB.current`, '2097152\n');
    writeFileSync(`${dir}/hugetlb.2MB.max`, 'max\n');
    writeFileSync(`${dir}/hugetlb.2MB.events`, 'max 9\n');
    const want: CgroupStats = {
      mode: 'v2',
      cpu: { usage: { total: 1_500_000, user: 1_000_000, kernel: 500_000, perCpu: [] }, throttling: { periods: 10, throttledPeriods: 2, throttledTimeNs: 7000 } },
      memory: {
        usage: { usage: 4096, limit: UNLIMITED, maxUsage: 8192, failcnt: 4 },
        swap: { usage: 0, limit: 1048576, maxUsage: 0, failcnt: 1 },
        stat: { anon: 100, file: 200 },
        events: { low: 0, high: 1, max: 4, oom: 3, oom_kill: 3 },
      },
      pids: { current: 2, limit: 64 },
      blkio: { io_stat: [{ major: 8, minor: 0, op: 'rbytes', value: 5 }, { major: 8, minor: 0, op: 'wbytes', value: 6 }] },
      hugetlb: [{ pageSize: '2MB', usage: 2097152, max: UNLIMITED, failcnt: 9 }],
    };
    expect(m.stats(h)).toEqual(want);
    expect(m.oomKillCount(h)).toBe(3);
    rmSync(`${dir}/memory.events`);
    expect(m.oomKillCount(h)).toBe(0);
  });

  it('freezes through cgroup.freeze and waits for cgroup.events; times out with Internal', () => {
    v2Leaf(dir, { 'cgroup.events': 'populated 1\nfrozen 1\n' });
    m.freeze(h);
    expect(read(`${dir}/cgroup.freeze`)).toBe('1');
    writeFileSync(`${dir}/cgroup.events`, 'populated 1\nfrozen 0\n');
    m.thaw(h);
    expect(read(`${dir}/cgroup.freeze`)).toBe('0');
    // The kernel never reports frozen: give up, and leave the cgroup thawed.
    expect(() => m.freeze(h)).toThrow(Internal);
    expect(read(`${dir}/cgroup.freeze`)).toBe('0');
    rmSync(`${dir}/cgroup.freeze`);
    expect(() => m.freeze(h)).toThrow(FailedPrecondition);
  });

  it('populated reads cgroup.events; null when the file is missing', () => {
    v2Leaf(dir, { 'cgroup.events': 'populated 1\nfrozen 0\n' });
    expect(m.populated(h)).toBe(true);
    writeFileSync(`${dir}/cgroup.events`, 'populated 0\nfrozen 0\n');
    expect(m.populated(h)).toBe(false);
    rmSync(`${dir}/cgroup.events`);
    expect(m.populated(h)).toBeNull();
  });

  it('SIGKILL goes through cgroup.kill; pids read the whole subtree', () => {
    v2Leaf(dir, { 'cgroup.procs': '4194305\n4194306\n' });
    mk(`${dir}/sub`, { 'cgroup.procs': '4194307\n4194305\n' });
    expect(m.pids(h)).toEqual([4194305, 4194306, 4194307]);
    expect(m.killAll(h, 'SIGKILL')).toBe(3);
    expect(read(`${dir}/cgroup.kill`)).toBe('1');
    writeFileSync(`${dir}/cgroup.procs`, '');
    rmSync(`${dir}/sub`, { recursive: true });
    writeFileSync(`${dir}/cgroup.kill`, '');
    expect(m.killAll(h, 9)).toBe(0);
    expect(read(`${dir}/cgroup.kill`)).toBe(''); // nothing to kill: not written
  });

  it('other signals go pid by pid (cgroup.kill is SIGKILL only), even when freezing fails', async () => {
    v2Leaf(dir, { 'cgroup.events': 'frozen 0\n' }); // never reports frozen: killAll signals without fork protection
    const child = spawn('sleep', ['30'], { stdio: 'ignore' });
    children.push(child);
    const exit = new Promise<NodeJS.Signals | null>((res) => child.on('exit', (_c, sig) => res(sig)));
    await new Promise((r) => child.once('spawn', r));
    writeFileSync(`${dir}/cgroup.procs`, `${child.pid}\n`);
    expect(m.killAll(h, 'SIGTERM')).toBe(1);
    expect(await exit).toBe('SIGTERM');
    expect(read(`${dir}/cgroup.kill`)).toBe('');
    expect(read(`${dir}/cgroup.freeze`)).toBe('0'); // the failed freeze was undone
  });

  it('scrub removes sub-cgroups and lifts every limit', () => {
    v2Leaf(dir);
    mk(`${dir}/child`);
    m.scrub(h);
    expect(existsSync(`${dir}/child`)).toBe(false);
    expect(read(`${dir}/memory.max`)).toBe('max');
    expect(read(`${dir}/memory.swap.max`)).toBe('max');
    expect(read(`${dir}/memory.low`)).toBe('0');
    expect(read(`${dir}/cpu.weight`)).toBe('100');
    expect(read(`${dir}/cpu.max`)).toBe('max 100000');
    expect(read(`${dir}/pids.max`)).toBe('max');
    expect(read(`${dir}/hugetlb.2MB.max`)).toBe('max');
  });

  it('a pool of cgroups on the fake hierarchy: fill, acquire, release, close', () => {
    const pool = new CgroupPool(layout, { size: 2, parent: '/spore/pool', manager: m });
    pool.fill();
    expect(existsSync(`${root}/spore/pool/0`) && existsSync(`${root}/spore/pool/1`)).toBe(true);
    const { handle } = pool.acquire();
    expect(handle.poolIndex).toBe(0);
    expect(handle.oomKillsAtAcquire).toBe(0);
    pool.release(handle);
    expect(pool.snapshot()).toMatchObject({ free: 2, inUse: 0, created: 2, acquires: 1, releases: 1 });
    pool.close();
    expect(existsSync(`${root}/spore/pool`)).toBe(false);
  });
});

// ---- v1 / hybrid ---------------------------------------------------------------------------

describe('CgroupV1Manager on a fake v1 / hybrid host', () => {
  let root: string;
  let layout: CgroupLayout;
  let m: CgroupManager;
  let h: CgroupHandle;
  beforeEach(() => {
    ({ root, layout } = fakeHybrid());
    m = new CgroupV1Manager({ hugepagesDir: hugepagesDir(), freezeTimeoutMs: 30 });
    h = cgroupHandle(layout, 'ctr');
  });
  const d = (ctrl: string): string => h.dirs[ctrl]!;

  it('create makes the cgroup in every hierarchy (unified too) and fills an empty cpuset from the parent', () => {
    writeFileSync(`${root}/cpuset/cpuset.cpus`, '0-3\n');
    writeFileSync(`${root}/cpuset/cpuset.mems`, '0\n');
    mk(`${root}/cpuset/spore`, empty('cpuset.cpus', 'cpuset.mems'));
    v1Cgroup(root, '/spore/ctr');
    m.create(h, { pids: { limit: 16 } });
    for (const dir of Object.values(h.dirs)) expect(existsSync(dir)).toBe(true);
    expect(d('unified')).toBe(`${root}/unified/spore/ctr`);
    expect(read(`${root}/cpuset/spore/cpuset.cpus`)).toBe('0-3');
    expect(read(`${d('cpuset')}/cpuset.cpus`)).toBe('0-3');
    expect(read(`${d('cpuset')}/cpuset.mems`)).toBe('0');
    expect(read(`${d('pids')}/pids.max`)).toBe('16');
  });

  it('writes v1 names in each controller directory', () => {
    v1Cgroup(root, '/spore/ctr');
    const { warnings } = m.applyResources(h, {
      memory: { limit: 64 * MiB, swap: 128 * MiB, reservation: 32 * MiB, swappiness: 10, disableOOMKiller: true },
      cpu: { shares: 512, quota: 50000, period: 100000, realtimePeriod: 1000000, realtimeRuntime: 950000 },
      pids: { limit: -1 },
      devices: [{ allow: false, access: 'rwm' }, { allow: true, type: 'c', major: 1, minor: 3, access: 'rwm' }],
      blockIO: { weight: 500, throttleReadBpsDevice: [{ major: 8, minor: 0, rate: 1048576 }] },
      hugepageLimits: [{ pageSize: '2MB', limit: 4 * MiB }],
      network: { classID: 0x100001, priorities: [{ name: 'eth0', priority: 1 }] },
    });
    expect(warnings).toEqual(['net_prio controller not available; priority for eth0 ignored']);
    expect(read(`${d('memory')}/memory.limit_in_bytes`)).toBe(String(64 * MiB));
    expect(read(`${d('memory')}/memory.memsw.limit_in_bytes`)).toBe(String(128 * MiB)); // memory+swap, as OCI says
    expect(read(`${d('memory')}/memory.soft_limit_in_bytes`)).toBe(String(32 * MiB));
    expect(read(`${d('memory')}/memory.swappiness`)).toBe('10');
    expect(read(`${d('memory')}/memory.oom_control`)).toBe('1');
    expect(d('cpu')).toBe(`${root}/cpu,cpuacct/spore/ctr`);
    expect(read(`${d('cpu')}/cpu.shares`)).toBe('512');
    expect(read(`${d('cpu')}/cpu.cfs_quota_us`)).toBe('50000');
    expect(read(`${d('cpu')}/cpu.cfs_period_us`)).toBe('100000');
    expect(read(`${d('cpu')}/cpu.rt_period_us`)).toBe('1000000');
    expect(read(`${d('cpu')}/cpu.rt_runtime_us`)).toBe('950000');
    expect(read(`${d('pids')}/pids.max`)).toBe('max');
    expect(read(`${d('devices')}/devices.deny`)).toBe('a *:* rwm'); // 'a' first, then the deny rule
    expect(read(`${d('devices')}/devices.allow`)).toBe('c 1:3 rwm');
    expect(read(`${d('blkio')}/blkio.weight`)).toBe('500');
    expect(read(`${d('blkio')}/blkio.throttle.read_bps_device`)).toBe('8:0 1048576');
    expect(read(`${d('hugetlb')}/hugetlb.2MB.limit_in_bytes`)).toBe(String(4 * MiB));
    expect(read(`${d('net_cls')}/net_cls.classid`)).toBe(String(0x100001));
    v1Cgroup(root, '/spore/ctr'); // fresh (empty) files again
    m.applyResources(h, { cpu: { quota: -5, shares: 0, period: 0 } }); // negative quota = unlimited; 0 = not set
    expect(read(`${d('cpu')}/cpu.cfs_quota_us`)).toBe('-1');
    expect(read(`${d('cpu')}/cpu.shares`)).toBe('');
    expect(read(`${d('cpu')}/cpu.cfs_period_us`)).toBe('');
    // Nothing was written into the unified dir of the hybrid host.
    expect(read(`${d('unified')}/cgroup.freeze`)).toBe('');
  });

  it('the handle API routes a hybrid handle to v1 files and a v2 handle to v2 files', () => {
    v1Cgroup(root, '/spore/ctr');
    applyResources(h, { memory: { limit: 8 * MiB } });
    expect(read(`${d('memory')}/memory.limit_in_bytes`)).toBe(String(8 * MiB));
    expect(existsSync(`${d('unified')}/memory.max`)).toBe(false);
    const v2: CgroupLayout = { mode: 'v2', root: layout.root, v1: {}, unified: layout.unified!, unifiedControllers: [] };
    const h2 = cgroupHandle(v2, 'ctr2');
    v2Leaf(h2.dirs['unified']!);
    applyResources(h2, { memory: { limit: 8 * MiB } });
    expect(read(`${h2.dirs['unified']}/memory.max`)).toBe(String(8 * MiB));
  });

  it('warns for what this host lacks and rejects bad input', () => {
    v1Cgroup(root, '/spore/ctr');
    rmSync(`${d('memory')}/memory.memsw.limit_in_bytes`);
    expect(m.applyResources(h, { memory: { limit: 64 * MiB, swap: 128 * MiB }, cpu: { idle: 1 } }).warnings).toEqual([
      'memory.memsw not available (swap accounting disabled); swap limit ignored',
      'cpu.idle not supported by this kernel; ignored',
    ]);
    expect(read(`${d('memory')}/memory.limit_in_bytes`)).toBe(String(64 * MiB));
    expect(() => m.applyResources(h, { memory: { swappiness: 101 } })).toThrow(/swappiness 101 out of range/);
    expect(() => m.applyResources(h, { unified: { 'memory.max': '1' } })).toThrow(/only supported on cgroup v2/);
    expect(() => m.applyResources(h, { devices: [{ allow: true, access: 'rwx' }] })).toThrow(/access "rwx"/);
    rmSync(`${d('pids')}/pids.max`);
    expect(() => m.applyResources(h, { pids: { limit: 5 } })).toThrow(/pids\.max: no such cgroup file/);
  });

  it('a controller that is not mounted: FailedPrecondition for limits, warnings for best-effort requests', () => {
    rmSync(join(tmp, 'cgroup'), { recursive: true });
    ({ root, layout } = fakeHybrid({ omit: ['pids', 'devices', 'blkio', 'freezer'], noUnified: true }));
    expect(layout.mode).toBe('v1');
    h = cgroupHandle(layout, 'ctr');
    v1Cgroup(root, '/spore/ctr');
    expect(h.dirs['pids']).toBeUndefined();
    expect(() => m.applyResources(h, { pids: { limit: 5 } })).toThrow(/pids limit requested but the pids cgroup controller is not available/);
    expect(m.applyResources(h, { devices: [{ allow: false, access: 'rwm' }], blockIO: { weight: 100 } }).warnings).toEqual([
      'blockIO requested but the blkio/io controller is not available; ignored',
      'devices cgroup controller not available; device rules ignored',
    ]);
    expect(() => m.freeze(h)).toThrow(/no freezer available/);
  });

  it('reads stats and OOM kills from v1 files', () => {
    v1Cgroup(root, '/spore/ctr', {
      'cpu,cpuacct': {
        'cpuacct.usage': '3000\n', 'cpuacct.stat': 'user 2\nsystem 1\n', 'cpuacct.usage_percpu': '1000 2000 \n',
        'cpu.stat': 'nr_periods 5\nnr_throttled 1\nthrottled_time 99\n',
      },
      memory: {
        'memory.usage_in_bytes': '4096\n', 'memory.limit_in_bytes': `${V1_FAR_MAX}\n`, 'memory.max_usage_in_bytes': '8192\n', 'memory.failcnt': '1\n',
        'memory.memsw.usage_in_bytes': '5000\n', 'memory.memsw.limit_in_bytes': '268435456\n',
        'memory.stat': 'cache 10\nrss 20\n', 'memory.oom_control': 'oom_kill_disable 0\nunder_oom 0\noom_kill 2\n',
      },
      pids: { 'pids.current': '3\n', 'pids.max': 'max\n' },
      blkio: { 'blkio.throttle.io_service_bytes_recursive': '8:0 Read 4096\n8:0 Write 0\nTotal 4096\n' },
      hugetlb: { 'hugetlb.2MB.usage_in_bytes': '0\n', 'hugetlb.2MB.max_usage_in_bytes': '2097152\n', 'hugetlb.2MB.failcnt': '0\n' },
    });
    const s = stats(h);
    expect(s).toEqual({
      mode: 'hybrid',
      cpu: { usage: { total: 3000, user: 20_000_000, kernel: 10_000_000, perCpu: [1000, 2000] }, throttling: { periods: 5, throttledPeriods: 1, throttledTimeNs: 99 } },
      memory: {
        usage: { usage: 4096, limit: UNLIMITED, maxUsage: 8192, failcnt: 1 },
        swap: { usage: 5000, limit: 268435456, maxUsage: 0, failcnt: 0 },
        stat: { cache: 10, rss: 20 },
        events: { oom_kill_disable: 0, under_oom: 0, oom_kill: 2 },
      },
      pids: { current: 3, limit: UNLIMITED },
      blkio: { io_service_bytes_recursive: [{ major: 8, minor: 0, op: 'Read', value: 4096 }, { major: 8, minor: 0, op: 'Write', value: 0 }] },
      hugetlb: [{ pageSize: '2MB', usage: 0, max: 2097152, failcnt: 0 }],
    } satisfies CgroupStats);
    expect(oomKillCount(h)).toBe(2);
  });

  it('populated: the pids hierarchy\'s pids.current, else the unified cgroup.events, else null', () => {
    v1Cgroup(root, '/spore/ctr', { pids: { 'pids.current': '2\n' }, unified: { 'cgroup.events': 'populated 0\n' } });
    expect(m.populated(h)).toBe(true); // pids.current wins (it also counts unreaped zombies)
    writeFileSync(`${d('pids')}/pids.current`, '0\n');
    expect(m.populated(h)).toBe(false);
    rmSync(`${d('pids')}/pids.current`);
    writeFileSync(`${d('unified')}/cgroup.events`, 'populated 1\n');
    expect(m.populated(h)).toBe(true);
    rmSync(`${d('unified')}/cgroup.events`);
    expect(m.populated(h)).toBeNull();
  });

  it('freezes through freezer.state; without a v1 freezer, through the unified cgroup.freeze', () => {
    v1Cgroup(root, '/spore/ctr', { freezer: { 'freezer.state': 'THAWED\n' } });
    freeze(h);
    expect(read(`${d('freezer')}/freezer.state`).trim()).toBe('FROZEN');
    thaw(h);
    expect(read(`${d('freezer')}/freezer.state`).trim()).toBe('THAWED');
    expect(read(`${d('unified')}/cgroup.freeze`)).toBe(''); // the v1 freezer was used

    rmSync(join(tmp, 'cgroup'), { recursive: true });
    ({ root, layout } = fakeHybrid({ omit: ['freezer'] }));
    h = cgroupHandle(layout, 'ctr');
    v1Cgroup(root, '/spore/ctr', { unified: { 'cgroup.events': 'frozen 1\n' } });
    m.freeze(h);
    expect(read(`${d('unified')}/cgroup.freeze`)).toBe('1');
  });

  it('killAll freezes, signals each process, thaws (no cgroup.kill on v1/hybrid)', async () => {
    v1Cgroup(root, '/spore/ctr', { freezer: { 'freezer.state': 'THAWED\n' } });
    const child = spawn('sleep', ['30'], { stdio: 'ignore' });
    children.push(child);
    const exit = new Promise<NodeJS.Signals | null>((res) => child.on('exit', (_c, sig) => res(sig)));
    await new Promise((r) => child.once('spawn', r));
    writeFileSync(`${d('memory')}/cgroup.procs`, `${child.pid}\n${process.pid}\n`); // ourselves: never signalled
    expect(pids(h)).toEqual([child.pid!, process.pid].sort((a, b) => a - b));
    expect(killAll(h, 'SIGTERM')).toBe(1);
    expect(await exit).toBe('SIGTERM');
    expect(read(`${d('freezer')}/freezer.state`).trim()).toBe('THAWED');
    // SIGKILL also signals pid by pid: the unified cgroup.kill of a hybrid host is left alone.
    writeFileSync(`${d('memory')}/cgroup.procs`, '');
    const c2 = spawn('sleep', ['30'], { stdio: 'ignore' });
    children.push(c2);
    const exit2 = new Promise<NodeJS.Signals | null>((res) => c2.on('exit', (_c, sig) => res(sig)));
    await new Promise((r) => c2.once('spawn', r));
    writeFileSync(`${d('pids')}/cgroup.procs`, `${c2.pid}\n`);
    expect(m.killAll(h)).toBe(1);
    expect(await exit2).toBe('SIGKILL');
    expect(read(`${d('unified')}/cgroup.kill`)).toBe('');
  });

  it('scrub lifts limits, copies cpuset and swappiness from the parent, reopens devices', () => {
    writeFileSync(`${root}/memory/memory.swappiness`, '30\n');
    writeFileSync(`${root}/cpuset/cpuset.cpus`, '0-7\n');
    writeFileSync(`${root}/cpuset/cpuset.mems`, '0-1\n');
    mk(`${root}/memory/spore`, { 'memory.swappiness': '30\n' });
    mk(`${root}/cpuset/spore`, { 'cpuset.cpus': '0-7\n', 'cpuset.mems': '0-1\n' });
    v1Cgroup(root, '/spore/ctr');
    mk(`${d('memory')}/leftover`);
    m.scrub(h);
    expect(existsSync(`${d('memory')}/leftover`)).toBe(false);
    expect(read(`${d('memory')}/memory.limit_in_bytes`)).toBe('-1');
    expect(read(`${d('memory')}/memory.memsw.limit_in_bytes`)).toBe('-1');
    expect(read(`${d('memory')}/memory.oom_control`)).toBe('0');
    expect(read(`${d('memory')}/memory.swappiness`)).toBe('30');
    expect(read(`${d('cpu')}/cpu.shares`)).toBe('1024');
    expect(read(`${d('cpu')}/cpu.cfs_quota_us`)).toBe('-1');
    expect(read(`${d('cpu')}/cpu.cfs_period_us`)).toBe('100000');
    expect(read(`${d('cpuset')}/cpuset.cpus`)).toBe('0-7');
    expect(read(`${d('cpuset')}/cpuset.mems`)).toBe('0-1');
    expect(read(`${d('pids')}/pids.max`)).toBe('max');
    expect(read(`${d('devices')}/devices.allow`)).toBe('a');
    expect(read(`${d('hugetlb')}/hugetlb.2MB.limit_in_bytes`)).toBe('-1');
    expect(read(`${d('blkio')}/blkio.reset_stats`)).toBe('0');
  });
});
