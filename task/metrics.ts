// CgroupStats (plain data from pools/cgroups.ts) → containerd's cgroups Metrics message packed in
// a google.protobuf.Any, exactly as runc's shim answers the Task Stats RPC: type_url is the bare
// full name (`io.containerd.cgroups.v1.Metrics` on v1/hybrid hosts, `io.containerd.cgroups.v2.Metrics`
// on pure v2), which is what `ctr task metrics` and the CRI plugin decode.
//
// Value conventions follow containerd/cgroups (the library runc's shim reports through):
//  - v1 memory limits are the raw page-counter maximum when unlimited (9223372036854771712 on
//    4 KiB pages); v1 pids.max "max" becomes 0; v1 hugetlb `max` is max_usage_in_bytes.
//  - v2 "max" (memory.max, memory.swap.max, pids.max, hugetlb.<size>.max) becomes 2^64-1.
import { create, toBinary } from '@bufbuild/protobuf';
import { AnySchema, type Any } from '@bufbuild/protobuf/wkt';
import { readFileSync } from 'node:fs';
import * as v1 from '../fri-proto/gen/cgroups/v1/metrics_pb.js';
import * as v2 from '../fri-proto/gen/cgroups/v2/metrics_pb.js';
import type { BlkioEntry, CgroupMemoryEntry, CgroupMode, CgroupStats } from '../pools/cgroups.js';

export const METRICS_V1_TYPE_URL = 'io.containerd.cgroups.v1.Metrics';
export const METRICS_V2_TYPE_URL = 'io.containerd.cgroups.v2.Metrics';

/** What the v1 kernel prints for an unlimited page counter: PAGE_COUNTER_MAX * PAGE_SIZE (4 KiB pages). */
export const V1_UNLIMITED = 9223372036854771712n;
/** What containerd/cgroups reports for a v2 "max". */
export const V2_UNLIMITED = 18446744073709551615n;

/** A counter as uint64: negative (UNLIMITED or garbage) → `neg`, fractions truncated. */
function u64(n: number | undefined, neg = 0n): bigint {
  if (n === undefined || !Number.isFinite(n)) return 0n;
  if (n < 0) return neg;
  return BigInt(Math.trunc(n));
}

/** Resolve a block device major:minor to /dev/<name> (containerd fills BlkIOEntry.device so). */
export type DeviceNamer = (major: number, minor: number) => string;

const deviceCache = new Map<string, string>();
export function sysfsDeviceName(major: number, minor: number): string {
  const key = `${major}:${minor}`;
  const hit = deviceCache.get(key);
  if (hit !== undefined) return hit;
  let name = '';
  try {
    const m = /^DEVNAME=(.+)$/m.exec(readFileSync(`/sys/dev/block/${key}/uevent`, 'utf8'));
    if (m?.[1]) name = `/dev/${m[1]}`;
  } catch {
    // device gone or no sysfs: leave the name empty, major/minor still identify it
  }
  deviceCache.set(key, name);
  return name;
}

export interface MetricsOptions {
  /** Block device naming for v1 blkio entries; default reads /sys/dev/block. */
  deviceName?: DeviceNamer;
}

// ---- v1 -----------------------------------------------------------------------------------

function memEntryV1(e: CgroupMemoryEntry | undefined): v1.MemoryEntry {
  return create(v1.MemoryEntrySchema, e ? {
    usage: u64(e.usage),
    limit: u64(e.limit, V1_UNLIMITED),
    max: u64(e.maxUsage),
    failcnt: u64(e.failcnt),
  } : {});
}

/** memory.stat key → MemoryStat field (the names containerd/cgroups reads). */
const V1_MEMORY_STAT: ReadonlyArray<[string, keyof v1.MemoryStat]> = [
  ['cache', 'cache'], ['rss', 'rss'], ['rss_huge', 'rssHuge'], ['mapped_file', 'mappedFile'], ['dirty', 'dirty'],
  ['writeback', 'writeback'], ['pgpgin', 'pgPgIn'], ['pgpgout', 'pgPgOut'], ['pgfault', 'pgFault'],
  ['pgmajfault', 'pgMajFault'], ['inactive_anon', 'inactiveAnon'], ['active_anon', 'activeAnon'],
  ['inactive_file', 'inactiveFile'], ['active_file', 'activeFile'], ['unevictable', 'unevictable'],
  ['hierarchical_memory_limit', 'hierarchicalMemoryLimit'], ['hierarchical_memsw_limit', 'hierarchicalSwapLimit'],
  ['total_cache', 'totalCache'], ['total_rss', 'totalRss'], ['total_rss_huge', 'totalRssHuge'],
  ['total_mapped_file', 'totalMappedFile'], ['total_dirty', 'totalDirty'], ['total_writeback', 'totalWriteback'],
  ['total_pgpgin', 'totalPgPgIn'], ['total_pgpgout', 'totalPgPgOut'], ['total_pgfault', 'totalPgFault'],
  ['total_pgmajfault', 'totalPgMajFault'], ['total_inactive_anon', 'totalInactiveAnon'],
  ['total_active_anon', 'totalActiveAnon'], ['total_inactive_file', 'totalInactiveFile'],
  ['total_active_file', 'totalActiveFile'], ['total_unevictable', 'totalUnevictable'],
];

/** CgroupStats.blkio key (v1 file short name) → BlkIOStat field. */
const V1_BLKIO: ReadonlyArray<[string, keyof v1.BlkIOStat]> = [
  ['io_service_bytes_recursive', 'ioServiceBytesRecursive'], ['io_serviced_recursive', 'ioServicedRecursive'],
  ['io_queued_recursive', 'ioQueuedRecursive'], ['io_service_time_recursive', 'ioServiceTimeRecursive'],
  ['io_wait_time_recursive', 'ioWaitTimeRecursive'], ['io_merged_recursive', 'ioMergedRecursive'],
  ['time_recursive', 'ioTimeRecursive'], ['sectors_recursive', 'sectorsRecursive'],
];

export function metricsV1(s: CgroupStats, opts: MetricsOptions = {}): v1.Metrics {
  const m = create(v1.MetricsSchema);
  if (s.cpu) {
    m.cpu = create(v1.CPUStatSchema, {
      usage: {
        total: u64(s.cpu.usage.total),
        user: u64(s.cpu.usage.user),
        kernel: u64(s.cpu.usage.kernel),
        perCpu: s.cpu.usage.perCpu.map((n) => u64(n)),
      },
      throttling: {
        periods: u64(s.cpu.throttling.periods),
        throttledPeriods: u64(s.cpu.throttling.throttledPeriods),
        throttledTime: u64(s.cpu.throttling.throttledTimeNs),
      },
    });
  }
  if (s.memory) {
    const mem = create(v1.MemoryStatSchema, {
      usage: memEntryV1(s.memory.usage),
      swap: memEntryV1(s.memory.swap),
      kernel: memEntryV1(s.memory.kernel),
      kernelTcp: memEntryV1(s.memory.kernelTCP),
    });
    const rec = mem as unknown as Record<string, bigint>;
    // Only the hierarchical limits can legitimately be "unlimited"; the rest are counters.
    for (const [key, field] of V1_MEMORY_STAT) {
      rec[field] = u64(s.memory.stat[key], key.startsWith('hierarchical_') ? V1_UNLIMITED : 0n);
    }
    m.memory = mem;
    m.memoryOomControl = create(v1.MemoryOomControlSchema, {
      oomKillDisable: u64(s.memory.events['oom_kill_disable']),
      underOom: u64(s.memory.events['under_oom']),
      oomKill: u64(s.memory.events['oom_kill']),
    });
  }
  if (s.pids) {
    // containerd/cgroups v1: pids.max "max" → 0.
    m.pids = create(v1.PidsStatSchema, { current: u64(s.pids.current), limit: u64(s.pids.limit, 0n) });
  }
  if (s.blkio) {
    const name = opts.deviceName ?? sysfsDeviceName;
    const b = create(v1.BlkIOStatSchema);
    const rec = b as unknown as Record<string, v1.BlkIOEntry[]>;
    for (const [key, field] of V1_BLKIO) {
      rec[field] = (s.blkio[key] ?? []).map((e) => create(v1.BlkIOEntrySchema, {
        op: e.op, device: name(e.major, e.minor), major: u64(e.major), minor: u64(e.minor), value: u64(e.value),
      }));
    }
    m.blkio = b;
  }
  if (s.hugetlb) {
    m.hugetlb = s.hugetlb.map((h) => create(v1.HugetlbStatSchema, {
      pagesize: h.pageSize, usage: u64(h.usage), max: u64(h.max, V1_UNLIMITED), failcnt: u64(h.failcnt),
    }));
  }
  return m;
}

// ---- v2 -----------------------------------------------------------------------------------

/** memory.stat key → v2 MemoryStat field (containerd/cgroups cgroup2 manager names). */
const V2_MEMORY_STAT: ReadonlyArray<[string, keyof v2.MemoryStat]> = [
  ['anon', 'anon'], ['file', 'file'], ['kernel_stack', 'kernelStack'], ['slab', 'slab'], ['sock', 'sock'],
  ['shmem', 'shmem'], ['file_mapped', 'fileMapped'], ['file_dirty', 'fileDirty'], ['file_writeback', 'fileWriteback'],
  ['anon_thp', 'anonThp'], ['inactive_anon', 'inactiveAnon'], ['active_anon', 'activeAnon'],
  ['inactive_file', 'inactiveFile'], ['active_file', 'activeFile'], ['unevictable', 'unevictable'],
  ['slab_reclaimable', 'slabReclaimable'], ['slab_unreclaimable', 'slabUnreclaimable'], ['pgfault', 'pgfault'],
  ['pgmajfault', 'pgmajfault'], ['workingset_refault', 'workingsetRefault'], ['workingset_activate', 'workingsetActivate'],
  ['workingset_nodereclaim', 'workingsetNodereclaim'], ['pgrefill', 'pgrefill'], ['pgscan', 'pgscan'],
  ['pgsteal', 'pgsteal'], ['pgactivate', 'pgactivate'], ['pgdeactivate', 'pgdeactivate'], ['pglazyfree', 'pglazyfree'],
  ['pglazyfreed', 'pglazyfreed'], ['thp_fault_alloc', 'thpFaultAlloc'], ['thp_collapse_alloc', 'thpCollapseAlloc'],
];

/** io.stat entries (one per key) → one IOEntry per device, in first-seen order. */
function ioEntriesV2(entries: BlkioEntry[]): v2.IOEntry[] {
  const byDev = new Map<string, v2.IOEntry>();
  for (const e of entries) {
    const key = `${e.major}:${e.minor}`;
    let io = byDev.get(key);
    if (!io) {
      io = create(v2.IOEntrySchema, { major: u64(e.major), minor: u64(e.minor) });
      byDev.set(key, io);
    }
    switch (e.op) {
      case 'rbytes': io.rbytes = u64(e.value); break;
      case 'wbytes': io.wbytes = u64(e.value); break;
      case 'rios': io.rios = u64(e.value); break;
      case 'wios': io.wios = u64(e.value); break;
      default: break; // dbytes/dios: not in the message
    }
  }
  return [...byDev.values()];
}

const usec = (ns: number): bigint => u64(Math.round(ns / 1000));

export function metricsV2(s: CgroupStats): v2.Metrics {
  const m = create(v2.MetricsSchema);
  if (s.pids) m.pids = create(v2.PidsStatSchema, { current: u64(s.pids.current), limit: u64(s.pids.limit, V2_UNLIMITED) });
  if (s.cpu) {
    m.cpu = create(v2.CPUStatSchema, {
      usageUsec: usec(s.cpu.usage.total),
      userUsec: usec(s.cpu.usage.user),
      systemUsec: usec(s.cpu.usage.kernel),
      nrPeriods: u64(s.cpu.throttling.periods),
      nrThrottled: u64(s.cpu.throttling.throttledPeriods),
      throttledUsec: usec(s.cpu.throttling.throttledTimeNs),
    });
  }
  if (s.memory) {
    const mem = create(v2.MemoryStatSchema, {
      usage: u64(s.memory.usage.usage),
      usageLimit: u64(s.memory.usage.limit, V2_UNLIMITED),
      maxUsage: u64(s.memory.usage.maxUsage),
      swapUsage: u64(s.memory.swap?.usage),
      // No swap files (swap accounting off) reads as 0 in containerd/cgroups.
      swapLimit: s.memory.swap ? u64(s.memory.swap.limit, V2_UNLIMITED) : 0n,
      swapMaxUsage: u64(s.memory.swap?.maxUsage),
    });
    const rec = mem as unknown as Record<string, bigint>;
    for (const [key, field] of V2_MEMORY_STAT) rec[field] = u64(s.memory.stat[key]);
    m.memory = mem;
    const ev = s.memory.events;
    if (Object.keys(ev).length > 0) {
      m.memoryEvents = create(v2.MemoryEventsSchema, {
        low: u64(ev['low']), high: u64(ev['high']), max: u64(ev['max']), oom: u64(ev['oom']), oomKill: u64(ev['oom_kill']),
      });
    }
  }
  if (s.blkio) m.io = create(v2.IOStatSchema, { usage: ioEntriesV2(s.blkio['io_stat'] ?? []) });
  if (s.hugetlb) {
    m.hugetlb = s.hugetlb.map((h) => create(v2.HugeTlbStatSchema, {
      pagesize: h.pageSize, current: u64(h.usage), max: u64(h.max, V2_UNLIMITED),
    }));
  }
  return m;
}

// ---- Any ----------------------------------------------------------------------------------

/** The Stats RPC payload: Metrics for the host's cgroup mode, packed with a bare type_url. */
export function metricsAny(stats: CgroupStats, mode: CgroupMode, opts: MetricsOptions = {}): Any {
  if (mode === 'v2') {
    return create(AnySchema, { typeUrl: METRICS_V2_TYPE_URL, value: toBinary(v2.MetricsSchema, metricsV2(stats)) });
  }
  return create(AnySchema, { typeUrl: METRICS_V1_TYPE_URL, value: toBinary(v1.MetricsSchema, metricsV1(stats, opts)) });
}
