// cgroup management for spore: create / limit / freeze / account / destroy cgroups on v1,
// hybrid and pure-v2 hosts, and a pool of pre-created cgroups for the function runtime.
// All state is plain data (CgroupHandle, CgroupStats, pool snapshots); side effects go only
// through synchronous fs calls so the same code runs in the daemon and in forked children
// before exec (no event loop needed there).

import * as fs from 'node:fs';
import { constants as osConstants } from 'node:os';
import { FailedPrecondition, Internal, InvalidArgument } from '../sys/errors.js';
import type { LinuxResources, LinuxMemory, LinuxCPU, LinuxBlockIO, LinuxDeviceCgroup, LinuxHugepageLimit } from '../protocols/oci/spec.js';
import {
  type BlkioEntry, type CgroupHandle, type CgroupLayout, type CgroupMode,
  blkioWeightToIoWeight, cgroupHandle, cpuMaxValue, deviceRuleLine, devicesAllowAll, hugePageSizeName,
  memorySwapV2, parseBlkioV1, parseCgroupNumber, parseIoStatV2, parseKeyValues, sharesToWeight, uniqueDirs, UNLIMITED,
} from './cgroup-layout.js';

export * from './cgroup-layout.js';

// ---- small fs helpers --------------------------------------------------------------------

const sleepCell = new Int32Array(new SharedArrayBuffer(4));
/** Synchronous sleep: these functions also run in forked children that have no event loop. */
function sleepSync(ms: number): void {
  Atomics.wait(sleepCell, 0, 0, ms);
}

function errCode(e: unknown): string | undefined {
  return typeof e === 'object' && e !== null && 'code' in e ? String((e as { code: unknown }).code) : undefined;
}

function readText(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (e) {
    if (errCode(e) === 'ENOENT' || errCode(e) === 'ENODEV' || errCode(e) === 'EOPNOTSUPP') return undefined;
    throw new Internal(`read ${file}: ${(e as Error).message}`, { cause: e });
  }
}

function readNumber(file: string): number | undefined {
  const t = readText(file);
  return t === undefined ? undefined : parseCgroupNumber(t);
}

function exists(file: string): boolean {
  return fs.existsSync(file);
}

/** Codes meaning "the kernel refused this value" rather than "something broke". */
const REJECTED = new Set(['EINVAL', 'ERANGE', 'EBUSY', 'EOPNOTSUPP', 'ENOTSUP', 'EPERM', 'EACCES', 'ENOSPC']);

/** Write one value to a cgroup file; kernel rejections become InvalidArgument naming file and value. */
function writeValue(file: string, value: string | number): void {
  const v = String(value);
  try {
    // O_WRONLY without O_CREAT: a missing cgroup file must read as ENOENT (kernfs answers EACCES to O_CREAT).
    const fd = fs.openSync(file, fs.constants.O_WRONLY);
    try {
      fs.writeSync(fd, v);
    } finally {
      fs.closeSync(fd);
    }
  } catch (e) {
    const code = errCode(e);
    if (code && REJECTED.has(code)) throw new InvalidArgument(`${file}: kernel rejected value "${v}" (${code})`, { cause: e });
    if (code === 'ENOENT') throw new FailedPrecondition(`${file}: no such cgroup file (controller not available?)`, { cause: e });
    throw new Internal(`write ${file}="${v}": ${(e as Error).message}`, { cause: e });
  }
}

/** Write if the file exists; returns whether it was written. For best-effort knobs. */
function writeIfExists(file: string, value: string | number): boolean {
  if (!exists(file)) return false;
  writeValue(file, value);
  return true;
}

function dirOf(handle: CgroupHandle, key: string): string | undefined {
  return handle.dirs[key];
}

/** Directory where limits for `ctrl` are written: v1 controller dir, or the unified dir on v2. */
function limitDir(handle: CgroupHandle, ctrl: string): string | undefined {
  if (handle.mode === 'v2') return handle.dirs['unified'];
  return handle.dirs[ctrl];
}

function isV2(handle: CgroupHandle): boolean {
  return handle.mode === 'v2';
}

// ---- create ------------------------------------------------------------------------------

/** Controllers spore wants enabled in v2 ancestors' cgroup.subtree_control. */
const V2_CONTROLLERS = ['cpuset', 'cpu', 'io', 'memory', 'pids', 'hugetlb', 'misc'];

function ancestorsOf(mount: string, dir: string): string[] {
  // [mount, mount/a, mount/a/b, ...] up to but excluding dir.
  const rel = dir.slice(mount.length).split('/').filter(Boolean);
  const out = [mount];
  for (let i = 1; i < rel.length; i++) out.push(`${mount}/${rel.slice(0, i).join('/')}`);
  return out;
}

/** v2: a child only gets controller files if every ancestor delegates them via subtree_control. */
function enableV2Controllers(mount: string, dir: string): void {
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

/** v1 cpuset: a cgroup with empty cpuset.cpus/mems cannot hold tasks, so copy from the parent. */
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

/** mkdir -p the cgroup in every hierarchy, prepare controllers, then apply resources. */
export function createCgroup(handle: CgroupHandle, resources?: LinuxResources): { warnings: string[] } {
  for (const [key, dir] of Object.entries(handle.dirs)) {
    const mount = handle.mounts[key];
    if (!mount) continue;
    if (isV2(handle) && key === 'unified') {
      // Enable before mkdir so the leaf is born with the controller files.
      fs.mkdirSync(dir.slice(0, dir.lastIndexOf('/')), { recursive: true });
      enableV2Controllers(mount, dir);
    }
    fs.mkdirSync(dir, { recursive: true });
    if (key === 'cpuset' && !isV2(handle)) populateCpuset(mount, dir);
  }
  return resources ? applyResources(handle, resources) : { warnings: [] };
}

// ---- apply resources ------------------------------------------------------------------------

function requireDir(handle: CgroupHandle, ctrl: string, what: string): string {
  const d = limitDir(handle, ctrl);
  if (!d) throw new FailedPrecondition(`${what} requested but the ${ctrl} cgroup controller is not available`);
  return d;
}

function memoryV1Value(n: number): string {
  return n < 0 ? '-1' : String(n);
}
function v2Limit(n: number): string {
  return n < 0 ? 'max' : String(n);
}

function applyMemory(handle: CgroupHandle, m: LinuxMemory, warnings: string[]): void {
  const dir = requireDir(handle, 'memory', 'memory limit');
  if (isV2(handle)) {
    const swapMax = memorySwapV2(m.swap, m.limit);
    if (swapMax !== undefined) {
      if (!writeIfExists(`${dir}/memory.swap.max`, swapMax)) warnings.push('memory.swap.max not available (swap accounting disabled); swap limit ignored');
    }
    if (m.limit !== undefined && m.limit !== 0) writeValue(`${dir}/memory.max`, v2Limit(m.limit));
    if (m.reservation !== undefined && m.reservation !== 0) writeValue(`${dir}/memory.low`, v2Limit(m.reservation));
    if (m.swappiness !== undefined) warnings.push('memory.swappiness has no cgroup v2 equivalent; ignored');
    if (m.disableOOMKiller) warnings.push('disableOOMKiller is not supported on cgroup v2; ignored');
  } else {
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
        writeValue(memsw, memoryV1Value(swap));
        writeValue(`${dir}/memory.limit_in_bytes`, memoryV1Value(limit));
      } else {
        writeValue(`${dir}/memory.limit_in_bytes`, memoryV1Value(limit));
        writeValue(memsw, memoryV1Value(swap));
      }
    } else if (limit !== undefined) {
      writeValue(`${dir}/memory.limit_in_bytes`, memoryV1Value(limit));
    } else if (swap !== undefined && hasMemsw) {
      writeValue(memsw, memoryV1Value(swap));
    }
    if (m.reservation !== undefined && m.reservation !== 0) writeValue(`${dir}/memory.soft_limit_in_bytes`, memoryV1Value(m.reservation));
    if (m.swappiness !== undefined && m.swappiness >= 0) {
      if (m.swappiness > 100) throw new InvalidArgument(`memory.swappiness ${m.swappiness} out of range [0, 100]`);
      writeValue(`${dir}/memory.swappiness`, m.swappiness);
    }
    if (m.disableOOMKiller !== undefined) writeValue(`${dir}/memory.oom_control`, m.disableOOMKiller ? 1 : 0);
  }
  if ((m.kernel ?? 0) !== 0 || (m.kernelTCP ?? 0) !== 0) warnings.push('memory.kernel / kernelTCP limits are deprecated by the kernel; ignored');
}

function applyCpu(handle: CgroupHandle, c: LinuxCPU, warnings: string[]): void {
  const needsCpu = c.shares !== undefined || c.quota !== undefined || c.period !== undefined || c.idle !== undefined || c.realtimeRuntime !== undefined || c.realtimePeriod !== undefined;
  if (needsCpu) {
    const dir = requireDir(handle, 'cpu', 'cpu limit');
    if (isV2(handle)) {
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
    } else {
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
  }
  if (c.cpus || c.mems) {
    const dir = requireDir(handle, 'cpuset', 'cpuset');
    if (c.cpus) writeValue(`${dir}/cpuset.cpus`, c.cpus);
    if (c.mems) writeValue(`${dir}/cpuset.mems`, c.mems);
  }
}

function applyPids(handle: CgroupHandle, limit: number): void {
  if (limit === 0) return; // OCI/runc: 0 means "not set"
  const dir = requireDir(handle, 'pids', 'pids limit');
  writeValue(`${dir}/pids.max`, limit < 0 ? 'max' : limit);
}

function applyBlockIO(handle: CgroupHandle, b: LinuxBlockIO, warnings: string[]): void {
  const dir = limitDir(handle, isV2(handle) ? 'io' : 'blkio');
  if (!dir) {
    warnings.push('blockIO requested but the blkio/io controller is not available; ignored');
    return;
  }
  const skip = (what: string): void => { warnings.push(`${what} not supported here; ignored`); };
  if (isV2(handle)) {
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
  } else {
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
}

function applyDevices(handle: CgroupHandle, rules: LinuxDeviceCgroup[], warnings: string[]): void {
  const lines = rules.map((r) => ({ allow: r.allow, line: deviceRuleLine(r) })); // validates first
  if (isV2(handle)) {
    // v2 device control is an eBPF program attached to the cgroup; spore does not load one yet.
    if (!devicesAllowAll(rules)) warnings.push('device cgroup rules are not enforced on cgroup v2 (needs an eBPF device program); ignored');
    return;
  }
  const dir = handle.dirs['devices'];
  if (!dir) {
    if (!devicesAllowAll(rules)) warnings.push('devices cgroup controller not available; device rules ignored');
    return;
  }
  if (rules.length === 0) return;
  // Default deny, then the rules in order (later rules override earlier ones, as in runc).
  writeValue(`${dir}/devices.deny`, 'a');
  for (const { allow, line } of lines) writeValue(`${dir}/${allow ? 'devices.allow' : 'devices.deny'}`, line);
}

function applyHugepages(handle: CgroupHandle, limits: LinuxHugepageLimit[], warnings: string[]): void {
  const dir = limitDir(handle, 'hugetlb');
  for (const h of limits) {
    if (!/^\d+[KMGT]B$/.test(h.pageSize)) throw new InvalidArgument(`hugepage pageSize "${h.pageSize}" (want e.g. 2MB)`);
    const file = isV2(handle) ? `hugetlb.${h.pageSize}.max` : `hugetlb.${h.pageSize}.limit_in_bytes`;
    if (!dir || !exists(`${dir}/${file}`)) {
      warnings.push(`hugetlb limit for ${h.pageSize} not available (controller or page size missing); ignored`);
      continue;
    }
    writeValue(`${dir}/${file}`, h.limit);
  }
}

function applyUnified(handle: CgroupHandle, unified: Record<string, string>): void {
  const entries = Object.entries(unified);
  if (entries.length === 0) return;
  if (!isV2(handle)) throw new InvalidArgument('linux.resources.unified is only supported on cgroup v2 hosts');
  const dir = handle.dirs['unified'];
  if (!dir) throw new FailedPrecondition('no unified cgroup directory');
  for (const [k, v] of entries) {
    if (!/^[a-z0-9_]+\.[a-z0-9_.]+$/i.test(k) || k.includes('..')) throw new InvalidArgument(`unified key "${k}" is not a cgroup file name`);
    if (k.startsWith('cgroup.')) throw new InvalidArgument(`unified key "${k}": cgroup core files may not be set`);
    if (!exists(`${dir}/${k}`)) throw new InvalidArgument(`unified key "${k}": no such cgroup file (controller not enabled?)`);
    writeValue(`${dir}/${k}`, v);
  }
}

function applyNetwork(handle: CgroupHandle, n: NonNullable<LinuxResources['network']>, warnings: string[]): void {
  if (n.classID !== undefined) {
    const d = handle.dirs['net_cls'];
    if (d && !isV2(handle)) writeValue(`${d}/net_cls.classid`, n.classID);
    else warnings.push('net_cls controller not available; network.classID ignored');
  }
  for (const p of n.priorities ?? []) {
    const d = handle.dirs['net_prio'];
    if (d && !isV2(handle)) writeValue(`${d}/net_prio.ifpriomap`, `${p.name} ${p.priority}`);
    else warnings.push(`net_prio controller not available; priority for ${p.name} ignored`);
  }
}

/** Apply OCI resources. Returns warnings for requests that cannot be honoured on this host. */
export function applyResources(handle: CgroupHandle, resources: LinuxResources): { warnings: string[] } {
  const warnings: string[] = [];
  if (resources.memory) applyMemory(handle, resources.memory, warnings);
  if (resources.cpu) applyCpu(handle, resources.cpu, warnings);
  if (resources.pids) applyPids(handle, resources.pids.limit);
  if (resources.blockIO) applyBlockIO(handle, resources.blockIO, warnings);
  if (resources.devices) applyDevices(handle, resources.devices, warnings);
  if (resources.hugepageLimits?.length) applyHugepages(handle, resources.hugepageLimits, warnings);
  if (resources.network) applyNetwork(handle, resources.network, warnings);
  if (resources.rdma && Object.keys(resources.rdma).length) warnings.push('rdma limits are not supported; ignored');
  if (resources.unified) applyUnified(handle, resources.unified);
  return { warnings };
}

// ---- processes ------------------------------------------------------------------------------

/** cgroup.procs files to write a pid (or "0" for the writer itself) into, one per hierarchy. */
export function procsFiles(handle: CgroupHandle): string[] {
  return uniqueDirs(handle).map((d) => `${d}/cgroup.procs`);
}

export function addProcess(handle: CgroupHandle, pid: number): void {
  if (!Number.isInteger(pid) || pid < 0) throw new InvalidArgument(`pid ${pid}`);
  for (const f of procsFiles(handle)) {
    try {
      fs.writeFileSync(f, String(pid));
    } catch (e) {
      if (errCode(e) === 'ESRCH') throw new InvalidArgument(`process ${pid} does not exist`, { cause: e });
      if (errCode(e) === 'ENOENT') throw new FailedPrecondition(`${f}: cgroup does not exist (createCgroup first)`, { cause: e });
      throw new Internal(`add ${pid} to ${f}: ${(e as Error).message}`, { cause: e });
    }
  }
}

/** Directories of the cgroup and all its descendants, deepest first. */
function subtreeDirs(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    let ents: fs.Dirent[];
    try {
      ents = fs.readdirSync(d, { withFileTypes: true });
    } catch (e) {
      if (errCode(e) === 'ENOENT') return;
      throw e;
    }
    for (const ent of ents) if (ent.isDirectory()) walk(`${d}/${ent.name}`);
    out.push(d);
  };
  walk(dir);
  return out;
}

/** Pids in the cgroup and its descendants, across all hierarchies (deduplicated, sorted). */
export function pids(handle: CgroupHandle): number[] {
  const set = new Set<number>();
  for (const dir of uniqueDirs(handle)) {
    for (const d of subtreeDirs(dir)) {
      for (const l of (readText(`${d}/cgroup.procs`) ?? '').split('\n')) {
        const n = Number(l);
        if (l.trim() !== '' && Number.isInteger(n) && n > 0) set.add(n);
      }
    }
  }
  return [...set].sort((a, b) => a - b);
}

// ---- freezer -------------------------------------------------------------------------------

const FREEZE_TIMEOUT_MS = 2000;

function freezerTarget(handle: CgroupHandle): { kind: 'v1'; dir: string } | { kind: 'v2'; dir: string } | undefined {
  if (!isV2(handle) && handle.dirs['freezer']) return { kind: 'v1', dir: handle.dirs['freezer'] };
  // cgroup.freeze is a core cgroup2 file, so it also works for the unified dir of a hybrid host.
  const u = handle.dirs['unified'];
  if (u && exists(`${u}/cgroup.freeze`)) return { kind: 'v2', dir: u };
  return undefined;
}

function setFrozen(handle: CgroupHandle, frozen: boolean): void {
  const t = freezerTarget(handle);
  if (!t) throw new FailedPrecondition('no freezer available for this cgroup');
  const deadline = Date.now() + FREEZE_TIMEOUT_MS;
  let delay = 1;
  if (t.kind === 'v1') {
    const want = frozen ? 'FROZEN' : 'THAWED';
    for (;;) {
      // Re-writing is how v1 makes progress when it got stuck in FREEZING (tasks in uninterruptible waits).
      writeValue(`${t.dir}/freezer.state`, want);
      if ((readText(`${t.dir}/freezer.state`) ?? '').trim() === want) return;
      if (Date.now() > deadline) break;
      sleepSync(delay);
      delay = Math.min(delay * 2, 50);
    }
    if (frozen) { try { fs.writeFileSync(`${t.dir}/freezer.state`, 'THAWED'); } catch { /* best effort */ } }
    throw new Internal(`freezer ${t.dir}: state ${want} not reached within ${FREEZE_TIMEOUT_MS} ms`);
  }
  writeValue(`${t.dir}/cgroup.freeze`, frozen ? 1 : 0);
  for (;;) {
    const ev = parseKeyValues(readText(`${t.dir}/cgroup.events`) ?? '');
    if ((ev['frozen'] ?? 0) === (frozen ? 1 : 0)) return;
    if (Date.now() > deadline) break;
    sleepSync(delay);
    delay = Math.min(delay * 2, 50);
  }
  if (frozen) { try { fs.writeFileSync(`${t.dir}/cgroup.freeze`, '0'); } catch { /* best effort */ } }
  throw new Internal(`cgroup ${t.dir}: frozen=${frozen ? 1 : 0} not reached within ${FREEZE_TIMEOUT_MS} ms`);
}

export function freeze(handle: CgroupHandle): void { setFrozen(handle, true); }
export function thaw(handle: CgroupHandle): void { setFrozen(handle, false); }

const SIGNALS: Record<string, number> = osConstants.signals as unknown as Record<string, number>;

/**
 * Signal every process in the cgroup subtree. SIGKILL on v2 uses cgroup.kill (atomic, no
 * races with forks); otherwise freeze → signal each pid → thaw, so nothing forks in between.
 * Returns how many processes were signalled.
 */
export function killAll(handle: CgroupHandle, signal: NodeJS.Signals | number = 'SIGKILL'): number {
  const signo = typeof signal === 'number' ? signal : SIGNALS[signal];
  if (signo === undefined) throw new InvalidArgument(`unknown signal ${String(signal)}`);
  const u = handle.dirs['unified'];
  if (isV2(handle) && signo === SIGNALS['SIGKILL'] && u && exists(`${u}/cgroup.kill`)) {
    const n = pids(handle).length;
    if (n > 0) writeValue(`${u}/cgroup.kill`, 1);
    return n;
  }
  const list = pids(handle).filter((p) => p !== process.pid);
  if (list.length === 0) return 0;
  let frozen = false;
  try {
    freeze(handle);
    frozen = true;
  } catch {
    // No freezer or it timed out: still deliver the signal, just without fork protection.
  }
  let n = 0;
  try {
    for (const p of frozen ? pids(handle).filter((q) => q !== process.pid) : list) {
      try {
        process.kill(p, signo);
        n++;
      } catch (e) {
        if (errCode(e) !== 'ESRCH') throw e;
      }
    }
  } finally {
    if (frozen) thaw(handle);
  }
  return n;
}

// ---- stats ---------------------------------------------------------------------------------

export interface CgroupCpuStats {
  /** Nanoseconds. */
  usage: { total: number; user: number; kernel: number; perCpu: number[] };
  throttling: { periods: number; throttledPeriods: number; throttledTimeNs: number };
}

export interface CgroupMemoryEntry { usage: number; limit: number; maxUsage: number; failcnt: number }

export interface CgroupMemoryStats {
  /** Bytes; limits use UNLIMITED (-1) for "no limit"; maxUsage/failcnt are 0 where the kernel lacks them (v2). */
  usage: CgroupMemoryEntry;
  /** v1: memsw (memory+swap, as containerd reports it); v2: memory.swap.* (swap only). */
  swap?: CgroupMemoryEntry;
  kernel?: CgroupMemoryEntry;
  kernelTCP?: CgroupMemoryEntry;
  /** memory.stat as numbers. */
  stat: Record<string, number>;
  /** v2 memory.events (low, high, max, oom, oom_kill, ...); v1: oom_kill / under_oom from memory.oom_control. */
  events: Record<string, number>;
}

export interface CgroupHugetlbStats { pageSize: string; usage: number; max: number; failcnt: number }

export interface CgroupStats {
  mode: CgroupMode;
  cpu?: CgroupCpuStats;
  memory?: CgroupMemoryStats;
  pids?: { current: number; limit: number };
  /** v1 blkio *_recursive files keyed by their short name; v2: { io_stat: [...] }. */
  blkio?: Record<string, BlkioEntry[]>;
  hugetlb?: CgroupHugetlbStats[];
}

const USER_HZ_NS = 1e9 / 100; // cpuacct.stat is in USER_HZ ticks (100 on Linux)

function cpuStatsV1(handle: CgroupHandle): CgroupCpuStats | undefined {
  const acct = handle.dirs['cpuacct'];
  const cpu = handle.dirs['cpu'];
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

function cpuStatsV2(dir: string): CgroupCpuStats | undefined {
  const t = readText(`${dir}/cpu.stat`);
  if (t === undefined) return undefined;
  const st = parseKeyValues(t);
  return {
    usage: { total: (st['usage_usec'] ?? 0) * 1000, user: (st['user_usec'] ?? 0) * 1000, kernel: (st['system_usec'] ?? 0) * 1000, perCpu: [] },
    throttling: { periods: st['nr_periods'] ?? 0, throttledPeriods: st['nr_throttled'] ?? 0, throttledTimeNs: (st['throttled_usec'] ?? 0) * 1000 },
  };
}

function memEntryV1(dir: string, prefix: string): CgroupMemoryEntry | undefined {
  const usage = readNumber(`${dir}/${prefix}.usage_in_bytes`);
  if (usage === undefined) return undefined;
  return {
    usage,
    limit: readNumber(`${dir}/${prefix}.limit_in_bytes`) ?? UNLIMITED,
    maxUsage: readNumber(`${dir}/${prefix}.max_usage_in_bytes`) ?? 0,
    failcnt: readNumber(`${dir}/${prefix}.failcnt`) ?? 0,
  };
}

function memoryStatsV1(dir: string): CgroupMemoryStats | undefined {
  const usage = memEntryV1(dir, 'memory');
  if (!usage) return undefined;
  const out: CgroupMemoryStats = {
    usage,
    stat: parseKeyValues(readText(`${dir}/memory.stat`) ?? ''),
    events: parseKeyValues(readText(`${dir}/memory.oom_control`) ?? ''),
  };
  const swap = memEntryV1(dir, 'memory.memsw');
  if (swap) out.swap = swap;
  const kernel = memEntryV1(dir, 'memory.kmem');
  if (kernel) out.kernel = kernel;
  const tcp = memEntryV1(dir, 'memory.kmem.tcp');
  if (tcp) out.kernelTCP = tcp;
  return out;
}

function memoryStatsV2(dir: string): CgroupMemoryStats | undefined {
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

function pidsStats(dir: string | undefined): CgroupStats['pids'] {
  if (!dir) return undefined;
  const current = readNumber(`${dir}/pids.current`);
  if (current === undefined) return undefined;
  return { current, limit: readNumber(`${dir}/pids.max`) ?? UNLIMITED };
}

const BLKIO_V1_FILES = [
  'io_service_bytes_recursive', 'io_serviced_recursive', 'io_queued_recursive', 'io_service_time_recursive',
  'io_wait_time_recursive', 'io_merged_recursive', 'time_recursive', 'sectors_recursive',
];

function blkioStatsV1(dir: string | undefined): CgroupStats['blkio'] {
  if (!dir) return undefined;
  const out: Record<string, BlkioEntry[]> = {};
  for (const name of BLKIO_V1_FILES) {
    // CFQ files first; on blk-mq kernels only the bfq / throttle variants exist.
    const text = readText(`${dir}/blkio.${name}`) ?? readText(`${dir}/blkio.bfq.${name}`) ?? readText(`${dir}/blkio.throttle.${name}`);
    if (text !== undefined) out[name] = parseBlkioV1(text);
  }
  return out;
}

function hugePageSizes(): string[] {
  try {
    return fs.readdirSync('/sys/kernel/mm/hugepages').map(hugePageSizeName).filter((s): s is string => !!s);
  } catch {
    return [];
  }
}

function hugetlbStats(handle: CgroupHandle): CgroupHugetlbStats[] | undefined {
  const dir = limitDir(handle, 'hugetlb');
  if (!dir) return undefined;
  const out: CgroupHugetlbStats[] = [];
  for (const ps of hugePageSizes()) {
    if (isV2(handle)) {
      const usage = readNumber(`${dir}/hugetlb.${ps}.current`);
      if (usage === undefined) continue;
      const ev = parseKeyValues(readText(`${dir}/hugetlb.${ps}.events`) ?? '');
      out.push({ pageSize: ps, usage, max: readNumber(`${dir}/hugetlb.${ps}.max`) ?? UNLIMITED, failcnt: ev['max'] ?? 0 });
    } else {
      const usage = readNumber(`${dir}/hugetlb.${ps}.usage_in_bytes`);
      if (usage === undefined) continue;
      out.push({ pageSize: ps, usage, max: readNumber(`${dir}/hugetlb.${ps}.max_usage_in_bytes`) ?? 0, failcnt: readNumber(`${dir}/hugetlb.${ps}.failcnt`) ?? 0 });
    }
  }
  return out;
}

/** Collect the metrics containerd's cgroups Metrics carry, as a plain serializable object. */
export function stats(handle: CgroupHandle): CgroupStats {
  const out: CgroupStats = { mode: handle.mode };
  if (isV2(handle)) {
    const u = handle.dirs['unified'];
    if (!u) return out;
    const cpu = cpuStatsV2(u);
    if (cpu) out.cpu = cpu;
    const mem = memoryStatsV2(u);
    if (mem) out.memory = mem;
    const p = pidsStats(u);
    if (p) out.pids = p;
    const io = readText(`${u}/io.stat`);
    if (io !== undefined) out.blkio = { io_stat: parseIoStatV2(io) };
  } else {
    const cpu = cpuStatsV1(handle);
    if (cpu) out.cpu = cpu;
    const m = handle.dirs['memory'];
    const mem = m ? memoryStatsV1(m) : undefined;
    if (mem) out.memory = mem;
    const p = pidsStats(handle.dirs['pids']);
    if (p) out.pids = p;
    const b = blkioStatsV1(handle.dirs['blkio']);
    if (b) out.blkio = b;
  }
  const h = hugetlbStats(handle);
  if (h && h.length) out.hugetlb = h;
  return out;
}

/** Number of OOM kills in this cgroup (cumulative for the cgroup's lifetime). */
export function oomKillCount(handle: CgroupHandle): number {
  if (isV2(handle)) {
    const u = handle.dirs['unified'];
    return u ? parseKeyValues(readText(`${u}/memory.events`) ?? '')['oom_kill'] ?? 0 : 0;
  }
  const m = handle.dirs['memory'];
  return m ? parseKeyValues(readText(`${m}/memory.oom_control`) ?? '')['oom_kill'] ?? 0 : 0;
}

// ---- destroy -------------------------------------------------------------------------------

const RMDIR_RETRY_MS = 1000;

function rmdirRetry(dir: string): void {
  const deadline = Date.now() + RMDIR_RETRY_MS;
  let delay = 1;
  for (;;) {
    try {
      fs.rmdirSync(dir);
      return;
    } catch (e) {
      const code = errCode(e);
      if (code === 'ENOENT') return;
      // EBUSY: processes just exited and the kernel has not unlinked them from the css_set yet.
      if (code === 'EBUSY' && Date.now() < deadline) {
        sleepSync(delay);
        delay = Math.min(delay * 2, 50);
        continue;
      }
      if (code === 'EBUSY') throw new FailedPrecondition(`cgroup ${dir} still has processes (kill them first)`, { cause: e });
      throw new Internal(`rmdir ${dir}: ${(e as Error).message}`, { cause: e });
    }
  }
}

/**
 * Remove the cgroup (and any sub-cgroups created inside it) in every hierarchy, deepest first.
 * Idempotent; never touches the handle's ancestors (e.g. /spore stays for other containers).
 */
export function destroyCgroup(handle: CgroupHandle): void {
  for (const [key, dir] of Object.entries(handle.dirs)) {
    const mount = handle.mounts[key];
    // Defensive: only ever remove strictly below the hierarchy's mountpoint and at the handle's path.
    if (!mount || dir !== mount + handle.path || handle.path === '/' || handle.path.includes('..')) {
      throw new InvalidArgument(`refusing to remove ${dir}: not the handle's cgroup`);
    }
  }
  for (const dir of uniqueDirs(handle)) {
    for (const d of subtreeDirs(dir)) rmdirRetry(d);
  }
}

// ---- pool ----------------------------------------------------------------------------------

export interface PooledCgroup extends CgroupHandle {
  poolIndex: number;
  /** oomKillCount at acquire: kernel counters are cumulative, so callers subtract this. */
  oomKillsAtAcquire: number;
}

export interface CgroupPoolSnapshot {
  parent: string;
  target: number;
  free: number;
  inUse: number;
  created: number;
  acquires: number;
  releases: number;
  /** acquire() found the pool empty and created a cgroup on the spot. */
  misses: number;
  /** release() could not scrub in place and recreated the cgroup. */
  recreated: number;
  /** release() could not empty the cgroup; it was taken out of the pool. */
  quarantined: number;
}

export interface CgroupPoolOptions {
  size: number;
  /** Parent cgroup path of the pool, default /spore/pool. */
  parent?: string;
}

const RELEASE_DRAIN_MS = 2000;

/**
 * Pre-created cgroups for the function runtime. Creating cgroups on the start path contends on
 * the kernel's cgroup mutex under concurrency; the pool moves that off the path. Limits are applied
 * at acquire (cheap file writes) and reset at release.
 */
export class CgroupPool {
  readonly parent: string;
  readonly target: number;
  private readonly layout: CgroupLayout;
  private readonly free: number[] = [];
  private readonly inUse = new Set<number>();
  /** the resource key each free cgroup's limits were last set for (see acquire) */
  private readonly configured = new Map<number, string>();
  private nextIndex = 0;
  private counters = { created: 0, acquires: 0, releases: 0, misses: 0, recreated: 0, quarantined: 0 };

  constructor(layout: CgroupLayout, opts: CgroupPoolOptions) {
    if (!Number.isInteger(opts.size) || opts.size < 0) throw new InvalidArgument(`pool size ${opts.size}`);
    this.layout = layout;
    this.target = opts.size;
    this.parent = opts.parent ?? '/spore/pool';
    cgroupHandle(layout, this.parent); // validate early
  }

  private handleFor(index: number): CgroupHandle {
    return cgroupHandle(this.layout, `${this.parent}/${index}`);
  }

  private createOne(): number {
    const i = this.nextIndex++;
    const h = this.handleFor(i);
    // A leftover from a previous daemon run would carry stale limits and maybe processes.
    killAll(h, 'SIGKILL');
    destroyCgroup(h);
    createCgroup(h);
    this.counters.created++;
    return i;
  }

  /** Pre-create the pool's cgroups. */
  fill(): void {
    while (this.free.length < this.target) this.free.push(this.createOne());
  }

  /**
   * `key` names the limits (e.g. one per function): a free cgroup last configured with the
   * same key is handed out as-is, so the hot path writes no limit files at all.
   */
  acquire(resources?: LinuxResources, key?: string): { handle: PooledCgroup; warnings: string[] } {
    let index: number | undefined;
    if (key !== undefined) {
      const at = this.free.findIndex((i) => this.configured.get(i) === key);
      if (at >= 0) index = this.free.splice(at, 1)[0];
    }
    const reuse = index !== undefined;
    index ??= this.free.shift();
    if (index === undefined) {
      this.counters.misses++;
      index = this.createOne();
    }
    const h = this.handleFor(index);
    let warnings: string[] = [];
    try {
      if (resources && !reuse) warnings = applyResources(h, resources).warnings;
      if (key !== undefined) this.configured.set(index, key); else this.configured.delete(index);
    } catch (e) {
      // Limits partially applied: scrub before it goes back.
      this.recycle(index);
      throw e;
    }
    this.inUse.add(index);
    this.counters.acquires++;
    return { handle: { ...h, poolIndex: index, oomKillsAtAcquire: oomKillCount(h) }, warnings };
  }

  /**
   * Kill leftovers, reset limits and return the cgroup to the pool. With keepLimits the
   * limits stay (for the next acquire with the same key); leftovers are killed either way.
   */
  release(handle: PooledCgroup, opts: { keepLimits?: boolean } = {}): void {
    if (!this.inUse.has(handle.poolIndex)) throw new FailedPrecondition(`pool cgroup ${handle.poolIndex} is not in use`);
    this.inUse.delete(handle.poolIndex);
    this.counters.releases++;
    if (!opts.keepLimits) this.configured.delete(handle.poolIndex);
    this.recycle(handle.poolIndex, opts.keepLimits === true);
  }

  private recycle(index: number, keepLimits = false): void {
    const h = this.handleFor(index);
    const deadline = Date.now() + RELEASE_DRAIN_MS;
    while (pids(h).length > 0) {
      killAll(h, 'SIGKILL');
      if (Date.now() > deadline) {
        this.counters.quarantined++;
        throw new Internal(`pool cgroup ${h.path}: processes survived SIGKILL for ${RELEASE_DRAIN_MS} ms; quarantined`);
      }
      sleepSync(2);
    }
    if (keepLimits) {
      this.free.push(index);
      return;
    }
    try {
      scrub(h);
    } catch {
      destroyCgroup(h);
      createCgroup(h);
      this.counters.recreated++;
    }
    this.free.push(index);
  }

  snapshot(): CgroupPoolSnapshot {
    return { parent: this.parent, target: this.target, free: this.free.length, inUse: this.inUse.size, ...this.counters };
  }

  /** Destroy every pool cgroup (in-use ones too) and the pool parent. */
  close(): void {
    for (const i of [...this.free, ...this.inUse]) {
      const h = this.handleFor(i);
      killAll(h, 'SIGKILL');
      destroyCgroup(h);
    }
    this.free.length = 0;
    this.inUse.clear();
    destroyCgroup(cgroupHandle(this.layout, this.parent));
  }
}

function parentDir(dir: string): string {
  return dir.slice(0, dir.lastIndexOf('/'));
}

/**
 * Reset a cgroup to "no limits" so the next tenant sees nothing of the previous one:
 * remove sub-cgroups, lift limits, reset the v1 counters that can be reset.
 */
export function scrub(handle: CgroupHandle): void {
  for (const dir of uniqueDirs(handle)) {
    for (const d of subtreeDirs(dir)) if (d !== dir) rmdirRetry(d);
  }
  const w = (dir: string | undefined, file: string, v: string | number): void => { if (dir) writeIfExists(`${dir}/${file}`, v); };
  if (isV2(handle)) {
    const u = handle.dirs['unified'];
    w(u, 'memory.max', 'max');
    w(u, 'memory.swap.max', 'max');
    w(u, 'memory.low', 0);
    w(u, 'memory.high', 'max');
    w(u, 'cpu.weight', 100);
    w(u, 'cpu.max', 'max 100000');
    w(u, 'cpu.idle', 0);
    w(u, 'pids.max', 'max');
    w(u, 'cpuset.cpus', '');
    w(u, 'cpuset.mems', '');
    for (const ps of hugePageSizes()) w(u, `hugetlb.${ps}.max`, 'max');
    return;
  }
  const m = handle.dirs['memory'];
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
  const c = handle.dirs['cpu'];
  w(c, 'cpu.shares', 1024);
  w(c, 'cpu.cfs_quota_us', -1);
  w(c, 'cpu.cfs_period_us', 100000);
  w(c, 'cpu.idle', 0);
  const cs = handle.dirs['cpuset'];
  if (cs) {
    w(cs, 'cpuset.cpus', (readText(`${parentDir(cs)}/cpuset.cpus`) ?? '').trim());
    w(cs, 'cpuset.mems', (readText(`${parentDir(cs)}/cpuset.mems`) ?? '').trim());
  }
  w(handle.dirs['pids'], 'pids.max', 'max');
  const d = handle.dirs['devices'];
  if (d) {
    // Allowing 'a' only works when the parent allows everything; otherwise copy the parent's list.
    try {
      writeValue(`${d}/devices.allow`, 'a');
    } catch {
      writeValue(`${d}/devices.deny`, 'a');
      for (const line of (readText(`${parentDir(d)}/devices.list`) ?? '').split('\n')) if (line.trim()) writeValue(`${d}/devices.allow`, line.trim());
    }
  }
  const hd = handle.dirs['hugetlb'];
  for (const ps of hugePageSizes()) w(hd, `hugetlb.${ps}.limit_in_bytes`, -1);
  w(handle.dirs['blkio'], 'blkio.reset_stats', 0);
}

