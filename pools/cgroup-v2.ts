// The cgroup v2 manager: pure-v2 hosts, where one unified hierarchy holds every controller.
// A child only gets a controller's files if every ancestor delegates it in cgroup.subtree_control;
// limits use v2 names (memory.max, cpu.max, pids.max, io.max); device rules would need an eBPF
// program (not loaded: rules that restrict anything only warn); SIGKILL is cgroup.kill.

import * as fs from 'node:fs';
import { FailedPrecondition, Internal, InvalidArgument } from '../sys/errors.js';
import type { LinuxResources, LinuxMemory, LinuxCPU, LinuxBlockIO, LinuxDeviceCgroup } from '../protocols/oci/spec.js';
import {
  type CgroupHandle, type CgroupMode,
  blkioWeightToIoWeight, cpuMaxValue, devicesAllowAll, memorySwapV2, parseIoStatV2, parseKeyValues, sharesToWeight, UNLIMITED,
} from './cgroup-layout.js';
import { ancestorsOf, exists, hugePageSizes, readNumber, readText, sleepSync, writeIfExists, writeValue } from './cgroup-fs.js';
import { CgroupManagerBase, SIGKILL, type CgroupCpuStats, type CgroupHugetlbStats, type CgroupMemoryStats, type CgroupStats } from './cgroup-manager.js';

/** Controllers spore wants enabled in v2 ancestors' cgroup.subtree_control. */
const V2_CONTROLLERS = ['cpuset', 'cpu', 'io', 'memory', 'pids', 'hugetlb', 'misc'];

/** A child only gets controller files if every ancestor delegates them via subtree_control. */
function enableControllers(mount: string, dir: string): void {
  for (const anc of ancestorsOf(mount, dir)) {
    const available = (readText(`${anc}/cgroup.controllers`) ?? '').trim().split(/\s+/);
    const enabled = new Set((readText(`${anc}/cgroup.subtree_control`) ?? '').trim().split(/\s+/));
    for (const c of V2_CONTROLLERS) {
      if (!available.includes(c) || enabled.has(c)) continue;
      try {
        fs.writeFileSync(`${anc}/cgroup.subtree_control`, `+${c}`);
      } catch {
        // EBUSY (processes in a non-root ancestor) or a controller the host refuses to delegate:
        // the limit write later fails with a clear FailedPrecondition if that controller is needed.
      }
    }
  }
}

/**
 * Freeze or thaw through the core cgroup2 file cgroup.freeze and wait for cgroup.events to agree.
 * Exported because a hybrid host's unified directory can be frozen this way too (cgroup-v1.ts).
 */
export function setUnifiedFrozen(dir: string, frozen: boolean, timeoutMs: number): void {
  const deadline = Date.now() + timeoutMs;
  let delay = 1;
  writeValue(`${dir}/cgroup.freeze`, frozen ? 1 : 0);
  for (;;) {
    const ev = parseKeyValues(readText(`${dir}/cgroup.events`) ?? '');
    if ((ev['frozen'] ?? 0) === (frozen ? 1 : 0)) return;
    if (Date.now() > deadline) break;
    sleepSync(delay);
    delay = Math.min(delay * 2, 50);
  }
  if (frozen) { try { fs.writeFileSync(`${dir}/cgroup.freeze`, '0'); } catch { /* best effort */ } }
  throw new Internal(`cgroup ${dir}: frozen=${frozen ? 1 : 0} not reached within ${timeoutMs} ms`);
}

function v2Limit(n: number): string {
  return n < 0 ? 'max' : String(n);
}

function cpuStats(dir: string): CgroupCpuStats | undefined {
  const t = readText(`${dir}/cpu.stat`);
  if (t === undefined) return undefined;
  const st = parseKeyValues(t);
  return {
    usage: { total: (st['usage_usec'] ?? 0) * 1000, user: (st['user_usec'] ?? 0) * 1000, kernel: (st['system_usec'] ?? 0) * 1000, perCpu: [] },
    throttling: { periods: st['nr_periods'] ?? 0, throttledPeriods: st['nr_throttled'] ?? 0, throttledTimeNs: (st['throttled_usec'] ?? 0) * 1000 },
  };
}

function memoryStats(dir: string): CgroupMemoryStats | undefined {
  const usage = readNumber(`${dir}/memory.current`);
  if (usage === undefined) return undefined;
  const events = parseKeyValues(readText(`${dir}/memory.events`) ?? '');
  const out: CgroupMemoryStats = {
    usage: { usage, limit: readNumber(`${dir}/memory.max`) ?? UNLIMITED, maxUsage: readNumber(`${dir}/memory.peak`) ?? 0, failcnt: events['max'] ?? 0 },
    stat: parseKeyValues(readText(`${dir}/memory.stat`) ?? ''),
    events,
  };
  const su = readNumber(`${dir}/memory.swap.current`);
  if (su !== undefined) {
    const sev = parseKeyValues(readText(`${dir}/memory.swap.events`) ?? '');
    out.swap = { usage: su, limit: readNumber(`${dir}/memory.swap.max`) ?? UNLIMITED, maxUsage: readNumber(`${dir}/memory.swap.peak`) ?? 0, failcnt: sev['max'] ?? 0 };
  }
  return out;
}

export class CgroupV2Manager extends CgroupManagerBase {
  readonly kind = 'v2' as const;

  protected drives(mode: CgroupMode): boolean {
    return mode === 'v2';
  }

  protected makeDirs(h: CgroupHandle): void {
    for (const [key, dir] of Object.entries(h.dirs)) {
      const mount = h.mounts[key];
      if (!mount) continue;
      if (key === 'unified') {
        // Enable before mkdir so the leaf is born with the controller files.
        fs.mkdirSync(dir.slice(0, dir.lastIndexOf('/')), { recursive: true });
        enableControllers(mount, dir);
      }
      fs.mkdirSync(dir, { recursive: true });
    }
  }

  protected limitDir(h: CgroupHandle): string | undefined {
    return h.dirs['unified'];
  }

  protected applyMemory(dir: string, m: LinuxMemory, warnings: string[]): void {
    const swapMax = memorySwapV2(m.swap, m.limit);
    if (swapMax !== undefined) {
      if (!writeIfExists(`${dir}/memory.swap.max`, swapMax)) warnings.push('memory.swap.max not available (swap accounting disabled); swap limit ignored');
    }
    if (m.limit !== undefined && m.limit !== 0) writeValue(`${dir}/memory.max`, v2Limit(m.limit));
    if (m.reservation !== undefined && m.reservation !== 0) writeValue(`${dir}/memory.low`, v2Limit(m.reservation));
    if (m.swappiness !== undefined) warnings.push('memory.swappiness has no cgroup v2 equivalent; ignored');
    if (m.disableOOMKiller) warnings.push('disableOOMKiller is not supported on cgroup v2; ignored');
  }

  protected applyCpu(dir: string, c: LinuxCPU, warnings: string[]): void {
    if (c.shares !== undefined && c.shares !== 0) writeValue(`${dir}/cpu.weight`, sharesToWeight(c.shares));
    if (c.quota !== undefined || c.period !== undefined) {
      let quota = c.quota;
      let curPeriod = 100000;
      const cur = readText(`${dir}/cpu.max`)?.trim().split(/\s+/);
      if (cur) {
        curPeriod = Number(cur[1]) || curPeriod;
        if (quota === undefined && cur[0] !== 'max') quota = Number(cur[0]);
      }
      writeValue(`${dir}/cpu.max`, cpuMaxValue(quota, c.period, curPeriod));
    }
    if (c.idle !== undefined) writeValue(`${dir}/cpu.idle`, c.idle);
    if (c.realtimeRuntime !== undefined || c.realtimePeriod !== undefined) warnings.push('realtime cpu limits are not supported on cgroup v2; ignored');
  }

  protected applyBlockIO(h: CgroupHandle, b: LinuxBlockIO, warnings: string[]): void {
    const dir = h.dirs['unified'];
    if (!dir) {
      warnings.push('blockIO requested but the blkio/io controller is not available; ignored');
      return;
    }
    const skip = (what: string): void => { warnings.push(`${what} not supported here; ignored`); };
    if (b.weight) {
      if (!writeIfExists(`${dir}/io.bfq.weight`, b.weight) && !writeIfExists(`${dir}/io.weight`, `default ${blkioWeightToIoWeight(b.weight)}`)) skip('io weight');
    }
    for (const d of b.weightDevice ?? []) {
      if (d.weight && !writeIfExists(`${dir}/io.bfq.weight`, `${d.major}:${d.minor} ${d.weight}`)) skip(`io weight for ${d.major}:${d.minor}`);
    }
    const max = (list: LinuxBlockIO['throttleReadBpsDevice'], key: string): void => {
      for (const d of list ?? []) if (!writeIfExists(`${dir}/io.max`, `${d.major}:${d.minor} ${key}=${d.rate === 0 ? 'max' : d.rate}`)) skip('io.max');
    };
    max(b.throttleReadBpsDevice, 'rbps');
    max(b.throttleWriteBpsDevice, 'wbps');
    max(b.throttleReadIOPSDevice, 'riops');
    max(b.throttleWriteIOPSDevice, 'wiops');
  }

  protected applyDevices(_h: CgroupHandle, rules: LinuxDeviceCgroup[], _lines: unknown, warnings: string[]): void {
    // v2 device control is an eBPF program attached to the cgroup; spore does not load one yet.
    if (!devicesAllowAll(rules)) warnings.push('device cgroup rules are not enforced on cgroup v2 (needs an eBPF device program); ignored');
  }

  protected hugetlbLimitFile(pageSize: string): string {
    return `hugetlb.${pageSize}.max`;
  }

  protected applyNetwork(_h: CgroupHandle, n: NonNullable<LinuxResources['network']>, warnings: string[]): void {
    // net_cls / net_prio are v1-only controllers.
    if (n.classID !== undefined) warnings.push('net_cls controller not available; network.classID ignored');
    for (const p of n.priorities ?? []) warnings.push(`net_prio controller not available; priority for ${p.name} ignored`);
  }

  protected applyUnified(h: CgroupHandle, entries: [string, string][]): void {
    const dir = h.dirs['unified'];
    if (!dir) throw new FailedPrecondition('no unified cgroup directory');
    for (const [k, v] of entries) {
      if (!/^[a-z0-9_]+\.[a-z0-9_.]+$/i.test(k) || k.includes('..')) throw new InvalidArgument(`unified key "${k}" is not a cgroup file name`);
      if (k.startsWith('cgroup.')) throw new InvalidArgument(`unified key "${k}": cgroup core files may not be set`);
      if (!exists(`${dir}/${k}`)) throw new InvalidArgument(`unified key "${k}": no such cgroup file (controller not enabled?)`);
      writeValue(`${dir}/${k}`, v);
    }
  }

  protected setFrozen(h: CgroupHandle, frozen: boolean): void {
    const u = h.dirs['unified'];
    if (!u || !exists(`${u}/cgroup.freeze`)) throw new FailedPrecondition('no freezer available for this cgroup');
    setUnifiedFrozen(u, frozen, this.freezeTimeoutMs);
  }

  protected killAtomically(h: CgroupHandle, signo: number): number | undefined {
    // cgroup.kill (Linux 5.14+): no race with forks, no freezing needed.
    const u = h.dirs['unified'];
    if (signo !== SIGKILL || !u || !exists(`${u}/cgroup.kill`) || this.holdsSelf(u, h.mounts['unified'] ?? '')) return undefined;
    const n = this.pids(h).length;
    if (n > 0) writeValue(`${u}/cgroup.kill`, 1);
    return n;
  }

  protected readStats(h: CgroupHandle, out: CgroupStats): void {
    const u = h.dirs['unified'];
    if (!u) return;
    const cpu = cpuStats(u);
    if (cpu) out.cpu = cpu;
    const mem = memoryStats(u);
    if (mem) out.memory = mem;
    const current = readNumber(`${u}/pids.current`);
    if (current !== undefined) out.pids = { current, limit: readNumber(`${u}/pids.max`) ?? UNLIMITED };
    const io = readText(`${u}/io.stat`);
    if (io !== undefined) out.blkio = { io_stat: parseIoStatV2(io) };
    const hugetlb: CgroupHugetlbStats[] = [];
    for (const ps of hugePageSizes(this.hugepagesDir)) {
      const usage = readNumber(`${u}/hugetlb.${ps}.current`);
      if (usage === undefined) continue;
      const ev = parseKeyValues(readText(`${u}/hugetlb.${ps}.events`) ?? '');
      hugetlb.push({ pageSize: ps, usage, max: readNumber(`${u}/hugetlb.${ps}.max`) ?? UNLIMITED, failcnt: ev['max'] ?? 0 });
    }
    if (hugetlb.length) out.hugetlb = hugetlb;
  }

  protected readOomKills(h: CgroupHandle): number {
    const u = h.dirs['unified'];
    return u ? parseKeyValues(readText(`${u}/memory.events`) ?? '')['oom_kill'] ?? 0 : 0;
  }

  protected readPopulated(h: CgroupHandle): boolean | null {
    return this.eventsPopulated(h.dirs['unified']);
  }

  protected resetLimits(h: CgroupHandle): void {
    const u = h.dirs['unified'];
    if (!u) return;
    const w = (file: string, v: string | number): void => { writeIfExists(`${u}/${file}`, v); };
    w('memory.max', 'max');
    w('memory.swap.max', 'max');
    w('memory.low', 0);
    w('memory.high', 'max');
    w('cpu.weight', 100);
    w('cpu.max', 'max 100000');
    w('cpu.idle', 0);
    w('pids.max', 'max');
    w('cpuset.cpus', '');
    w('cpuset.mems', '');
    for (const ps of hugePageSizes(this.hugepagesDir)) w(`hugetlb.${ps}.max`, 'max');
  }
}
