// metricsAny: CgroupStats → containerd cgroups Metrics in an Any (bare type_url), decoded back.
import { fromBinary } from '@bufbuild/protobuf';
import { spawn, type ChildProcess } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { MetricsSchema as V1Metrics } from '../fri-proto/gen/cgroups/v1/metrics_pb.js';
import { MetricsSchema as V2Metrics } from '../fri-proto/gen/cgroups/v2/metrics_pb.js';
import {
  type CgroupHandle, addProcess, cgroupHandle, createCgroup, destroyCgroup, detectCgroupLayout, killAll, pids, stats,
  UNLIMITED, type CgroupStats,
} from '../pools/cgroups.js';
import { metricsAny, METRICS_V1_TYPE_URL, METRICS_V2_TYPE_URL, V1_UNLIMITED, V2_UNLIMITED } from '../task/metrics.js';

const V1_STATS: CgroupStats = {
  mode: 'hybrid',
  cpu: {
    usage: { total: 123_456_789, user: 100_000_000, kernel: 20_000_000, perCpu: [60_000_000, 63_456_789] },
    throttling: { periods: 10, throttledPeriods: 3, throttledTimeNs: 4_000_000 },
  },
  memory: {
    usage: { usage: 8_388_608, limit: UNLIMITED, maxUsage: 9_000_000, failcnt: 2 },
    swap: { usage: 9_000_000, limit: 268_435_456, maxUsage: 9_500_000, failcnt: 0 },
    kernel: { usage: 1_000_000, limit: UNLIMITED, maxUsage: 1_100_000, failcnt: 0 },
    kernelTCP: { usage: 0, limit: UNLIMITED, maxUsage: 0, failcnt: 0 },
    stat: {
      cache: 4096, rss: 8192, rss_huge: 0, mapped_file: 1024, dirty: 1, writeback: 2, pgpgin: 30, pgpgout: 31,
      pgfault: 100, pgmajfault: 5, inactive_anon: 11, active_anon: 12, inactive_file: 13, active_file: 14,
      unevictable: 15, hierarchical_memory_limit: UNLIMITED, hierarchical_memsw_limit: 268_435_456,
      total_cache: 40960, total_rss: 81920, total_rss_huge: 2097152, total_mapped_file: 10240, total_dirty: 3,
      total_writeback: 4, total_pgpgin: 300, total_pgpgout: 310, total_pgfault: 1000, total_pgmajfault: 50,
      total_inactive_anon: 110, total_active_anon: 120, total_inactive_file: 130, total_active_file: 140,
      total_unevictable: 150,
    },
    events: { oom_kill_disable: 0, under_oom: 1, oom_kill: 7 },
  },
  pids: { current: 3, limit: UNLIMITED },
  blkio: {
    io_service_bytes_recursive: [{ major: 8, minor: 0, op: 'Read', value: 4096 }, { major: 8, minor: 0, op: 'Write', value: 8192 }],
    io_serviced_recursive: [{ major: 8, minor: 0, op: 'Read', value: 1 }],
    time_recursive: [{ major: 8, minor: 0, op: '', value: 77 }],
  },
  hugetlb: [{ pageSize: '2MB', usage: 2097152, max: 4194304, failcnt: 1 }],
};

const V2_STATS: CgroupStats = {
  mode: 'v2',
  cpu: {
    usage: { total: 5_000_000, user: 3_000_000, kernel: 2_000_000, perCpu: [] },
    throttling: { periods: 8, throttledPeriods: 2, throttledTimeNs: 1_500_000 },
  },
  memory: {
    usage: { usage: 1_048_576, limit: UNLIMITED, maxUsage: 2_097_152, failcnt: 4 },
    swap: { usage: 0, limit: 1_048_576, maxUsage: 10, failcnt: 0 },
    stat: { anon: 1, file: 2, kernel_stack: 3, slab: 4, sock: 5, shmem: 6, file_mapped: 7, file_dirty: 8, file_writeback: 9,
      anon_thp: 10, inactive_anon: 11, active_anon: 12, inactive_file: 13, active_file: 14, unevictable: 15,
      slab_reclaimable: 16, slab_unreclaimable: 17, pgfault: 18, pgmajfault: 19, workingset_refault: 20,
      workingset_activate: 21, workingset_nodereclaim: 22, pgrefill: 23, pgscan: 24, pgsteal: 25, pgactivate: 26,
      pgdeactivate: 27, pglazyfree: 28, pglazyfreed: 29, thp_fault_alloc: 30, thp_collapse_alloc: 31 },
    events: { low: 1, high: 2, max: 4, oom: 5, oom_kill: 6 },
  },
  pids: { current: 2, limit: UNLIMITED },
  blkio: { io_stat: [
    { major: 254, minor: 0, op: 'rbytes', value: 100 }, { major: 254, minor: 0, op: 'wbytes', value: 200 },
    { major: 254, minor: 0, op: 'rios', value: 3 }, { major: 254, minor: 0, op: 'wios', value: 4 },
    { major: 254, minor: 0, op: 'dbytes', value: 9 }, { major: 8, minor: 16, op: 'rbytes', value: 1 },
  ] },
  hugetlb: [{ pageSize: '1GB', usage: 0, max: UNLIMITED, failcnt: 0 }],
};

describe('metricsAny (v1 / hybrid)', () => {
  const any = metricsAny(V1_STATS, 'hybrid', { deviceName: (ma, mi) => `/dev/test${ma}_${mi}` });
  const m = fromBinary(V1Metrics, any.value);

  it('uses the bare type_url runc uses', () => {
    expect(any.typeUrl).toBe(METRICS_V1_TYPE_URL);
    expect(metricsAny(V1_STATS, 'v1').typeUrl).toBe('io.containerd.cgroups.v1.Metrics');
  });

  it('fills what ctr task metrics prints', () => {
    expect(m.memory?.usage?.usage).toBe(8_388_608n);
    expect(m.memory?.usage?.limit).toBe(V1_UNLIMITED);
    expect(V1_UNLIMITED).toBe(9223372036854771712n);
    expect(m.memory?.totalCache).toBe(40960n);
    expect(m.cpu?.usage?.total).toBe(123_456_789n);
    expect(m.cpu?.usage?.perCpu).toEqual([60_000_000n, 63_456_789n]);
    expect(m.pids?.current).toBe(3n);
    expect(m.pids?.limit).toBe(0n); // containerd/cgroups v1: "max" → 0
  });

  it('maps cpu, memory entries, memory.stat, oom control, blkio and hugetlb', () => {
    expect(m.cpu?.usage?.user).toBe(100_000_000n);
    expect(m.cpu?.usage?.kernel).toBe(20_000_000n);
    expect(m.cpu?.throttling).toMatchObject({ periods: 10n, throttledPeriods: 3n, throttledTime: 4_000_000n });
    expect(m.memory?.usage).toMatchObject({ max: 9_000_000n, failcnt: 2n });
    expect(m.memory?.swap).toMatchObject({ usage: 9_000_000n, limit: 268_435_456n, max: 9_500_000n });
    expect(m.memory?.kernel).toMatchObject({ usage: 1_000_000n, limit: V1_UNLIMITED, max: 1_100_000n });
    expect(m.memory?.kernelTcp).toMatchObject({ usage: 0n, limit: V1_UNLIMITED });
    expect(m.memory).toMatchObject({
      cache: 4096n, rss: 8192n, rssHuge: 0n, mappedFile: 1024n, dirty: 1n, writeback: 2n, pgPgIn: 30n, pgPgOut: 31n,
      pgFault: 100n, pgMajFault: 5n, inactiveAnon: 11n, activeAnon: 12n, inactiveFile: 13n, activeFile: 14n,
      unevictable: 15n, hierarchicalMemoryLimit: V1_UNLIMITED, hierarchicalSwapLimit: 268_435_456n,
      totalRss: 81920n, totalRssHuge: 2097152n, totalMappedFile: 10240n, totalDirty: 3n, totalWriteback: 4n,
      totalPgPgIn: 300n, totalPgPgOut: 310n, totalPgFault: 1000n, totalPgMajFault: 50n, totalInactiveAnon: 110n,
      totalActiveAnon: 120n, totalInactiveFile: 130n, totalActiveFile: 140n, totalUnevictable: 150n,
    });
    expect(m.memoryOomControl).toMatchObject({ oomKillDisable: 0n, underOom: 1n, oomKill: 7n });
    expect(m.blkio?.ioServiceBytesRecursive.map((e) => [e.op, e.device, e.major, e.minor, e.value])).toEqual([
      ['Read', '/dev/test8_0', 8n, 0n, 4096n], ['Write', '/dev/test8_0', 8n, 0n, 8192n],
    ]);
    expect(m.blkio?.ioServicedRecursive).toHaveLength(1);
    expect(m.blkio?.ioTimeRecursive[0]?.value).toBe(77n);
    expect(m.blkio?.ioQueuedRecursive).toEqual([]);
    expect(m.hugetlb.map((h) => [h.pagesize, h.usage, h.max, h.failcnt])).toEqual([['2MB', 2097152n, 4194304n, 1n]]);
  });

  it('leaves out what the stats do not have', () => {
    const bare = fromBinary(V1Metrics, metricsAny({ mode: 'v1' }, 'v1').value);
    expect(bare.memory).toBeUndefined();
    expect(bare.cpu).toBeUndefined();
    expect(bare.pids).toBeUndefined();
    const memOnly = fromBinary(V1Metrics, metricsAny({ mode: 'v1', memory: { usage: { usage: 5, limit: 10, maxUsage: 6, failcnt: 0 }, stat: {}, events: {} } }, 'v1').value);
    // ctr dereferences Memory.Usage; swap/kernel entries are present (zero) as containerd/cgroups does.
    expect(memOnly.memory?.usage).toMatchObject({ usage: 5n, limit: 10n });
    expect(memOnly.memory?.swap?.usage).toBe(0n);
  });
});

describe('metricsAny (v2)', () => {
  const any = metricsAny(V2_STATS, 'v2');
  const m = fromBinary(V2Metrics, any.value);

  it('uses the v2 type_url', () => {
    expect(any.typeUrl).toBe(METRICS_V2_TYPE_URL);
  });

  it('maps every field, "max" → 2^64-1', () => {
    expect(m.pids).toMatchObject({ current: 2n, limit: V2_UNLIMITED });
    expect(m.cpu).toMatchObject({ usageUsec: 5000n, userUsec: 3000n, systemUsec: 2000n, nrPeriods: 8n, nrThrottled: 2n, throttledUsec: 1500n });
    expect(m.memory).toMatchObject({
      usage: 1_048_576n, usageLimit: V2_UNLIMITED, maxUsage: 2_097_152n, swapUsage: 0n, swapLimit: 1_048_576n, swapMaxUsage: 10n,
      anon: 1n, file: 2n, kernelStack: 3n, slab: 4n, sock: 5n, shmem: 6n, fileMapped: 7n, fileDirty: 8n, fileWriteback: 9n,
      anonThp: 10n, inactiveAnon: 11n, activeAnon: 12n, inactiveFile: 13n, activeFile: 14n, unevictable: 15n,
      slabReclaimable: 16n, slabUnreclaimable: 17n, pgfault: 18n, pgmajfault: 19n, workingsetRefault: 20n,
      workingsetActivate: 21n, workingsetNodereclaim: 22n, pgrefill: 23n, pgscan: 24n, pgsteal: 25n, pgactivate: 26n,
      pgdeactivate: 27n, pglazyfree: 28n, pglazyfreed: 29n, thpFaultAlloc: 30n, thpCollapseAlloc: 31n,
    });
    expect(m.memoryEvents).toMatchObject({ low: 1n, high: 2n, max: 4n, oom: 5n, oomKill: 6n });
    expect(m.io?.usage.map((e) => [e.major, e.minor, e.rbytes, e.wbytes, e.rios, e.wios])).toEqual([
      [254n, 0n, 100n, 200n, 3n, 4n], [8n, 16n, 1n, 0n, 0n, 0n],
    ]);
    expect(m.hugetlb.map((h) => [h.pagesize, h.current, h.max])).toEqual([['1GB', 0n, V2_UNLIMITED]]);
  });
});

describe('metricsAny on a real cgroup', () => {
  const layout = detectCgroupLayout();
  const parent = `/spore-metrics-test-${process.pid}`;
  const h: CgroupHandle = cgroupHandle(layout, 'ctr', { parent });
  let child: ChildProcess | undefined;

  afterAll(async () => {
    try { killAll(h, 'SIGKILL'); } catch { /* ignore */ }
    child?.kill('SIGKILL');
    const deadline = Date.now() + 2000;
    while (pids(h).length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    destroyCgroup(h);
    destroyCgroup(cgroupHandle(layout, parent));
  });

  it('reports memory usage and one pid for a sleep in the cgroup', async () => {
    createCgroup(h);
    // Gate the exec on stdin so the process joins the cgroup before sleep starts (and charges memory there).
    child = spawn('/bin/sh', ['-c', 'read x; exec sleep 100'], { stdio: ['pipe', 'ignore', 'ignore'] });
    addProcess(h, child.pid!);
    child.stdin!.end('go\n');
    // wait for the exec to happen (comm becomes "sleep")
    const { readFileSync } = await import('node:fs');
    const deadline = Date.now() + 2000;
    while (readFileSync(`/proc/${child.pid}/comm`, 'utf8').trim() !== 'sleep' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    const s = stats(h);
    const any = metricsAny(s, layout.mode);
    if (layout.mode === 'v2') {
      const m = fromBinary(V2Metrics, any.value);
      expect(any.typeUrl).toBe(METRICS_V2_TYPE_URL);
      expect(m.memory!.usage).toBeGreaterThan(0n);
      expect(m.pids!.current).toBe(1n);
    } else {
      const m = fromBinary(V1Metrics, any.value);
      expect(any.typeUrl).toBe(METRICS_V1_TYPE_URL);
      expect(m.memory!.usage!.usage).toBeGreaterThan(0n);
      expect(m.memory!.usage!.limit).toBe(V1_UNLIMITED);
      expect(m.pids!.current).toBe(1n);
      expect(m.cpu!.usage!.perCpu.length).toBeGreaterThan(0);
    }
  });
});
