// The cgroup v1 manager: v1 hosts and hybrid hosts (v1 controllers plus a cgroup2 mount at
// <root>/unified that holds no controllers). Each controller is its own hierarchy (co-mounted
// ones such as cpu,cpuacct share a directory); limits use v1 names (memory.limit_in_bytes,
// cpu.cfs_quota_us, devices.allow, ...). On a hybrid host the cgroup is also made in the
// unified hierarchy, as runc does; it is frozen there only when no v1 freezer is mounted.

import * as fs from 'node:fs';
import { FailedPrecondition, Internal, InvalidArgument } from '../sys/errors.js';
import type { LinuxResources, LinuxMemory, LinuxCPU, LinuxBlockIO, LinuxDeviceCgroup } from '../protocols/oci/spec.js';
import {
  type BlkioEntry, type CgroupHandle, type CgroupMode,
  devicesAllowAll, parseBlkioV1, parseKeyValues, UNLIMITED,
} from './cgroup-layout.js';
import { ancestorsOf, exists, hugePageSizes, parentDir, readNumber, readText, sleepSync, writeIfExists, writeValue } from './cgroup-fs.js';
import { CgroupManagerBase, SIGKILL, type CgroupCpuStats, type CgroupHugetlbStats, type CgroupMemoryEntry, type CgroupMemoryStats, type CgroupStats } from './cgroup-manager.js';
import { setUnifiedFrozen } from './cgroup-v2.js';

/** cpuset: a cgroup with empty cpuset.cpus/mems cannot hold tasks, so copy from the parent. */
function populateCpuset(mount: string, dir: string): void {
  for (const d of [...ancestorsOf(mount, dir).slice(1), dir]) {
    const parent = d.slice(0, d.lastIndexOf('/'));
    for (const f of ['cpuset.cpus', 'cpuset.mems']) {
      const cur = (readText(`${d}/${f}`) ?? '').trim();
      if (cur !== '') continue;
      const p = (readText(`${parent}/${f}`) ?? '').trim();
      if (p !== '') writeValue(`${d}/${f}`, p);
    }
  }
}

function memoryValue(n: number): string {
  return n < 0 ? '-1' : String(n);
}

const USER_HZ_NS = 1e9 / 100; // cpuacct.stat is in USER_HZ ticks (100 on Linux)

function cpuStats(h: CgroupHandle): CgroupCpuStats | undefined {
  const acct = h.dirs['cpuacct'];
  const cpu = h.dirs['cpu'];
  if (!acct && !cpu) return undefined;
  let total = 0, user = 0, kernel = 0;
  let perCpu: number[] = [];
  if (acct) {
    total = readNumber(`${acct}/cpuacct.usage`) ?? 0;
    const u = readNumber(`${acct}/cpuacct.usage_user`);
    const s = readNumber(`${acct}/cpuacct.usage_sys`);
    if (u !== undefined && s !== undefined) { user = u; kernel = s; } else {
      const st = parseKeyValues(readText(`${acct}/cpuacct.stat`) ?? '');
      user = (st['user'] ?? 0) * USER_HZ_NS;
      kernel = (st['system'] ?? 0) * USER_HZ_NS;
    }
    perCpu = (readText(`${acct}/cpuacct.usage_percpu`) ?? '').trim().split(/\s+/).filter(Boolean).map(Number);
  }
  const st = cpu ? parseKeyValues(readText(`${cpu}/cpu.stat`) ?? '') : {};
  return {
    usage: { total, user, kernel, perCpu },
    throttling: { periods: st['nr_periods'] ?? 0, throttledPeriods: st['nr_throttled'] ?? 0, throttledTimeNs: st['throttled_time'] ?? 0 },
  };
}

function memEntry(dir: string, prefix: string): CgroupMemoryEntry | undefined {
  const usage = readNumber(`${dir}/${prefix}.usage_in_bytes`);
  if (usage === undefined) return undefined;
  return {
    usage,
    limit: readNumber(`${dir}/${prefix}.limit_in_bytes`) ?? UNLIMITED,
    maxUsage: readNumber(`${dir}/${prefix}.max_usage_in_bytes`) ?? 0,
    failcnt: readNumber(`${dir}/${prefix}.failcnt`) ?? 0,
  };
}

function memoryStats(dir: string): CgroupMemoryStats | undefined {
  const usage = memEntry(dir, 'memory');
  if (!usage) return undefined;
  const out: CgroupMemoryStats = {
    usage,
    stat: parseKeyValues(readText(`${dir}/memory.stat`) ?? ''),
    events: parseKeyValues(readText(`${dir}/memory.oom_control`) ?? ''),
  };
  const swap = memEntry(dir, 'memory.memsw');
  if (swap) out.swap = swap;
  const kernel = memEntry(dir, 'memory.kmem');
  if (kernel) out.kernel = kernel;
  const tcp = memEntry(dir, 'memory.kmem.tcp');
  if (tcp) out.kernelTCP = tcp;
  return out;
}

const BLKIO_FILES = [
  'io_service_bytes_recursive', 'io_serviced_recursive', 'io_queued_recursive', 'io_service_time_recursive',
  'io_wait_time_recursive', 'io_merged_recursive', 'time_recursive', 'sectors_recursive',
];

function blkioStats(dir: string | undefined): CgroupStats['blkio'] {
  if (!dir) return undefined;
  const out: Record<string, BlkioEntry[]> = {};
  for (const name of BLKIO_FILES) {
    // CFQ files first; on blk-mq kernels only the bfq / throttle variants exist.
    const text = readText(`${dir}/blkio.${name}`) ?? readText(`${dir}/blkio.bfq.${name}`) ?? readText(`${dir}/blkio.throttle.${name}`);
    if (text !== undefined) out[name] = parseBlkioV1(text);
  }
  return out;
}

export class CgroupV1Manager extends CgroupManagerBase {
  readonly kind = 'v1' as const;

  /** v1 and hybrid handles: every mode but v2. */
  protected drives(mode: CgroupMode): boolean {
    return mode !== 'v2';
  }

  protected makeDirs(h: CgroupHandle): void {
    for (const [key, dir] of Object.entries(h.dirs)) {
      const mount = h.mounts[key];
      if (!mount) continue;
      fs.mkdirSync(dir, { recursive: true });
      if (key === 'cpuset') populateCpuset(mount, dir);
    }
  }

  protected limitDir(h: CgroupHandle, ctrl: string): string | undefined {
    return h.dirs[ctrl];
  }

  protected applyMemory(dir: string, m: LinuxMemory, warnings: string[]): void {
    const memsw = `${dir}/memory.memsw.limit_in_bytes`;
    const hasMemsw = exists(memsw);
    const limit = m.limit !== undefined && m.limit !== 0 ? m.limit : undefined;
    const swap = m.swap !== undefined && m.swap !== 0 ? m.swap : undefined;
    if (swap !== undefined && !hasMemsw) warnings.push('memory.memsw not available (swap accounting disabled); swap limit ignored');
    if (limit !== undefined && swap !== undefined && hasMemsw) {
      // The kernel keeps memsw >= limit at all times: when raising, write memsw first; when lowering, limit first.
      const curLimit = readNumber(`${dir}/memory.limit_in_bytes`) ?? UNLIMITED;
      const raising = swap === -1 || (curLimit !== UNLIMITED && curLimit < limit);
      if (raising) {
        writeValue(memsw, memoryValue(swap));
        writeValue(`${dir}/memory.limit_in_bytes`, memoryValue(limit));
      } else {
        writeValue(`${dir}/memory.limit_in_bytes`, memoryValue(limit));
        writeValue(memsw, memoryValue(swap));
      }
    } else if (limit !== undefined) {
      writeValue(`${dir}/memory.limit_in_bytes`, memoryValue(limit));
    } else if (swap !== undefined && hasMemsw) {
      writeValue(memsw, memoryValue(swap));
    }
    if (m.reservation !== undefined && m.reservation !== 0) writeValue(`${dir}/memory.soft_limit_in_bytes`, memoryValue(m.reservation));
    if (m.swappiness !== undefined && m.swappiness >= 0) {
      if (m.swappiness > 100) throw new InvalidArgument(`memory.swappiness ${m.swappiness} out of range [0, 100]`);
      writeValue(`${dir}/memory.swappiness`, m.swappiness);
    }
    if (m.disableOOMKiller !== undefined) writeValue(`${dir}/memory.oom_control`, m.disableOOMKiller ? 1 : 0);
  }

  protected applyCpu(dir: string, c: LinuxCPU, warnings: string[]): void {
    if (c.shares !== undefined && c.shares !== 0) writeValue(`${dir}/cpu.shares`, c.shares);
    // Period first: the kernel validates quota against the current period.
    if (c.period !== undefined && c.period !== 0) writeValue(`${dir}/cpu.cfs_period_us`, c.period);
    if (c.quota !== undefined && c.quota !== 0) writeValue(`${dir}/cpu.cfs_quota_us`, c.quota < 0 ? -1 : c.quota);
    if (c.realtimePeriod !== undefined && c.realtimePeriod !== 0) writeValue(`${dir}/cpu.rt_period_us`, c.realtimePeriod);
    if (c.realtimeRuntime !== undefined && c.realtimeRuntime !== 0) writeValue(`${dir}/cpu.rt_runtime_us`, c.realtimeRuntime);
    if (c.idle !== undefined) {
      if (!writeIfExists(`${dir}/cpu.idle`, c.idle)) warnings.push('cpu.idle not supported by this kernel; ignored');
    }
  }

  protected applyBlockIO(h: CgroupHandle, b: LinuxBlockIO, warnings: string[]): void {
    const dir = h.dirs['blkio'];
    if (!dir) {
      warnings.push('blockIO requested but the blkio/io controller is not available; ignored');
      return;
    }
    const skip = (what: string): void => { warnings.push(`${what} not supported here; ignored`); };
    const weightFile = exists(`${dir}/blkio.weight`) ? 'blkio.weight' : exists(`${dir}/blkio.bfq.weight`) ? 'blkio.bfq.weight' : undefined;
    if (b.weight) {
      if (weightFile) writeValue(`${dir}/${weightFile}`, b.weight);
      else skip('blkio weight');
    }
    if (b.leafWeight && !writeIfExists(`${dir}/blkio.leaf_weight`, b.leafWeight)) skip('blkio leaf weight');
    for (const d of b.weightDevice ?? []) {
      const f = exists(`${dir}/blkio.weight_device`) ? 'blkio.weight_device' : exists(`${dir}/blkio.bfq.weight_device`) ? 'blkio.bfq.weight_device' : undefined;
      if (d.weight && f) writeValue(`${dir}/${f}`, `${d.major}:${d.minor} ${d.weight}`);
      else if (d.weight) skip(`blkio weight for ${d.major}:${d.minor}`);
      if (d.leafWeight && !writeIfExists(`${dir}/blkio.leaf_weight_device`, `${d.major}:${d.minor} ${d.leafWeight}`)) skip('blkio leaf weight device');
    }
    const thr = (list: LinuxBlockIO['throttleReadBpsDevice'], file: string): void => {
      for (const d of list ?? []) if (!writeIfExists(`${dir}/${file}`, `${d.major}:${d.minor} ${d.rate}`)) skip(file);
    };
    thr(b.throttleReadBpsDevice, 'blkio.throttle.read_bps_device');
    thr(b.throttleWriteBpsDevice, 'blkio.throttle.write_bps_device');
    thr(b.throttleReadIOPSDevice, 'blkio.throttle.read_iops_device');
    thr(b.throttleWriteIOPSDevice, 'blkio.throttle.write_iops_device');
  }

  protected applyDevices(h: CgroupHandle, rules: LinuxDeviceCgroup[], lines: { allow: boolean; line: string }[], warnings: string[]): void {
    const dir = h.dirs['devices'];
    if (!dir) {
      if (!devicesAllowAll(rules)) warnings.push('devices cgroup controller not available; device rules ignored');
      return;
    }
    if (rules.length === 0) return;
    // Default deny, then the rules in order (later rules override earlier ones, as in runc).
    writeValue(`${dir}/devices.deny`, 'a');
    for (const { allow, line } of lines) writeValue(`${dir}/${allow ? 'devices.allow' : 'devices.deny'}`, line);
  }

  protected hugetlbLimitFile(pageSize: string): string {
    return `hugetlb.${pageSize}.limit_in_bytes`;
  }

  protected applyNetwork(h: CgroupHandle, n: NonNullable<LinuxResources['network']>, warnings: string[]): void {
    if (n.classID !== undefined) {
      const d = h.dirs['net_cls'];
      if (d) writeValue(`${d}/net_cls.classid`, n.classID);
      else warnings.push('net_cls controller not available; network.classID ignored');
    }
    for (const p of n.priorities ?? []) {
      const d = h.dirs['net_prio'];
      if (d) writeValue(`${d}/net_prio.ifpriomap`, `${p.name} ${p.priority}`);
      else warnings.push(`net_prio controller not available; priority for ${p.name} ignored`);
    }
  }

  protected applyUnified(): void {
    // On a hybrid host the unified hierarchy has no controllers: there is nothing to set there.
    throw new InvalidArgument('linux.resources.unified is only supported on cgroup v2 hosts');
  }

  protected setFrozen(h: CgroupHandle, frozen: boolean): void {
    const dir = h.dirs['freezer'];
    if (!dir) {
      // No v1 freezer mounted: cgroup.freeze is a core cgroup2 file, so a hybrid host's unified dir can do it.
      const u = h.dirs['unified'];
      if (u && exists(`${u}/cgroup.freeze`)) return setUnifiedFrozen(u, frozen, this.freezeTimeoutMs);
      throw new FailedPrecondition('no freezer available for this cgroup');
    }
    const want = frozen ? 'FROZEN' : 'THAWED';
    const deadline = Date.now() + this.freezeTimeoutMs;
    let delay = 1;
    for (;;) {
      // Re-writing is how v1 makes progress when it got stuck in FREEZING (tasks in uninterruptible waits).
      writeValue(`${dir}/freezer.state`, want);
      if ((readText(`${dir}/freezer.state`) ?? '').trim() === want) return;
      if (Date.now() > deadline) break;
      sleepSync(delay);
      delay = Math.min(delay * 2, 50);
    }
    if (frozen) { try { fs.writeFileSync(`${dir}/freezer.state`, 'THAWED'); } catch { /* best effort */ } }
    throw new Internal(`freezer ${dir}: state ${want} not reached within ${this.freezeTimeoutMs} ms`);
  }

  protected killAtomically(h: CgroupHandle, signo: number): number | undefined {
    // v1 has no cgroup.kill, but on a hybrid host a container's processes are placed in the
    // controller-less cgroup2 hierarchy too, and cgroup.kill is a core cgroup2 file: one write
    // kills the subtree there with no race against forks. A process the unified dir does not
    // hold (a function instance is only in its pool cgroup's memory and pids hierarchies;
    // CgroupPool fences its forks instead) is left to the other path: once the unified dir
    // is empty this answers undefined and the caller signals the v1 pids.
    const u = h.dirs['unified'];
    if (signo !== SIGKILL || !u || this.eventsPopulated(u) !== true || !exists(`${u}/cgroup.kill`) || this.holdsSelf(u, h.mounts['unified'] ?? '')) return undefined;
    const n = this.pids(h).length;
    writeValue(`${u}/cgroup.kill`, 1);
    return n;
  }

  protected readStats(h: CgroupHandle, out: CgroupStats): void {
    const cpu = cpuStats(h);
    if (cpu) out.cpu = cpu;
    const m = h.dirs['memory'];
    const mem = m ? memoryStats(m) : undefined;
    if (mem) out.memory = mem;
    const p = h.dirs['pids'];
    const current = p ? readNumber(`${p}/pids.current`) : undefined;
    if (p && current !== undefined) out.pids = { current, limit: readNumber(`${p}/pids.max`) ?? UNLIMITED };
    const b = blkioStats(h.dirs['blkio']);
    if (b) out.blkio = b;
    const hd = h.dirs['hugetlb'];
    if (!hd) return;
    const hugetlb: CgroupHugetlbStats[] = [];
    for (const ps of hugePageSizes(this.hugepagesDir)) {
      const usage = readNumber(`${hd}/hugetlb.${ps}.usage_in_bytes`);
      if (usage === undefined) continue;
      hugetlb.push({ pageSize: ps, usage, max: readNumber(`${hd}/hugetlb.${ps}.max_usage_in_bytes`) ?? 0, failcnt: readNumber(`${hd}/hugetlb.${ps}.failcnt`) ?? 0 });
    }
    if (hugetlb.length) out.hugetlb = hugetlb;
  }

  protected readOomKills(h: CgroupHandle): number {
    const m = h.dirs['memory'];
    return m ? parseKeyValues(readText(`${m}/memory.oom_control`) ?? '')['oom_kill'] ?? 0 : 0;
  }

  protected readPopulated(h: CgroupHandle): boolean | null {
    const p = h.dirs['pids'];
    const current = p ? readNumber(`${p}/pids.current`) : undefined;
    if (current !== undefined) return current > 0;
    // hybrid: the controller-less cgroup2 hierarchy still keeps cgroup.events
    return this.eventsPopulated(h.dirs['unified']);
  }

  protected resetLimits(h: CgroupHandle): void {
    const w = (dir: string | undefined, file: string, v: string | number): void => { if (dir) writeIfExists(`${dir}/${file}`, v); };
    const m = h.dirs['memory'];
    w(m, 'memory.memsw.limit_in_bytes', -1); // raise memsw before limit (memsw >= limit invariant)
    w(m, 'memory.limit_in_bytes', -1);
    w(m, 'memory.memsw.limit_in_bytes', -1);
    w(m, 'memory.soft_limit_in_bytes', -1);
    w(m, 'memory.oom_control', 0);
    if (m) w(m, 'memory.swappiness', (readText(`${parentDir(m)}/memory.swappiness`) ?? '60').trim());
    w(m, 'memory.max_usage_in_bytes', 0);
    w(m, 'memory.memsw.max_usage_in_bytes', 0);
    w(m, 'memory.failcnt', 0);
    w(m, 'memory.memsw.failcnt', 0);
    const c = h.dirs['cpu'];
    w(c, 'cpu.shares', 1024);
    w(c, 'cpu.cfs_quota_us', -1);
    w(c, 'cpu.cfs_period_us', 100000);
    w(c, 'cpu.idle', 0);
    const cs = h.dirs['cpuset'];
    if (cs) {
      w(cs, 'cpuset.cpus', (readText(`${parentDir(cs)}/cpuset.cpus`) ?? '').trim());
      w(cs, 'cpuset.mems', (readText(`${parentDir(cs)}/cpuset.mems`) ?? '').trim());
    }
    w(h.dirs['pids'], 'pids.max', 'max');
    const d = h.dirs['devices'];
    if (d) {
      // Allowing 'a' only works when the parent allows everything; otherwise copy the parent's list.
      try {
        writeValue(`${d}/devices.allow`, 'a');
      } catch {
        writeValue(`${d}/devices.deny`, 'a');
        for (const line of (readText(`${parentDir(d)}/devices.list`) ?? '').split('\n')) if (line.trim()) writeValue(`${d}/devices.allow`, line.trim());
      }
    }
    const hd = h.dirs['hugetlb'];
    for (const ps of hugePageSizes(this.hugepagesDir)) w(hd, `hugetlb.${ps}.limit_in_bytes`, -1);
    w(h.dirs['blkio'], 'blkio.reset_stats', 0);
  }
}
