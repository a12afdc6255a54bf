// Fuzz target 4: config.json (the OCI runtime spec, protocols/oci/spec.ts) -> the spawn plan
// (engines/process/plan.ts initPlan and execPlan, and pools/seccomp.ts for
// linux.seccomp), the pure translation a Task Create and Exec run before anything is forked.
//
// Input: config.json's bytes (parseSpec, as the task manager reads the bundle's file, then
// the plans; a text of odd length plans for a cgroup v1 host). An input starting with a 0
// byte is an edit script instead (lib/json-edit.ts) applied to one of the base specs below:
// structure-aware mutation, so type confusions reach every field.
//
// Acceptable (anything else is a finding):
//  - InvalidArgument with a message (the rejection plan.ts promises: "a bad config.json is
//    answered with InvalidArgument naming the field before anything is forked");
//  - a plan the forked child can execute: every field of InitPlan/ExecPlan/ProcessPlan
//    (engines/process/protocol.ts) of its declared type and within what the kernel
//    interface it feeds takes (uids, modes, umask, oom_score_adj, rlimits, mount flags).
import { InvalidArgument, SporeError } from '../../sys/errors.js';
import { parseSpec } from '../../protocols/oci/spec.js';
import type { Spec } from '../../protocols/oci/spec.js';
import { execPlan, initPlan } from '../../engines/process/plan.js';
import type { ExecPlan, InitPlan, MountStep, NamespaceStep, ProcessPlan, Stdio } from '../../engines/process/protocol.js';
import { clearSeccompCache, compileSeccomp } from '../../pools/seccomp.js';
import { FuzzFinding, describe, keepGoing } from '../lib/oracle.js';
import { ByteReader, editJson } from '../lib/json-edit.js';
import { BASE_SPECS } from '../lib/oci-base.js';

const STDIO: Stdio = { stdin: '', stdout: '/run/fifo/out', stderr: '/run/fifo/err', terminal: '' };
const V1_DIRS = [{ name: 'memory', hostDir: '/sys/fs/cgroup/memory/default/c1' }];
const NS_TYPES = new Set(['mount', 'network', 'ipc', 'uts', 'cgroup', 'pid', 'user', 'time']);

function bad(field: string, value: unknown): never {
  let shown: string;
  try {
    shown = typeof value === 'bigint' ? `${value}n` : JSON.stringify(value) ?? String(value);
  } catch {
    shown = String(value);
  }
  throw new FuzzFinding(`accepted config.json gave a plan with ${field} = ${shown.slice(0, 200)}`);
}

const isStr = (v: unknown): v is string => typeof v === 'string';
const isAbs = (v: unknown): boolean => isStr(v) && v.startsWith('/');
const isUint32 = (v: unknown): boolean => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 0xffff_ffff;
const isInt32 = (v: unknown): boolean => typeof v === 'number' && Number.isInteger(v) && v >= -(2 ** 31) && v < 2 ** 31;
const isStrArray = (v: unknown): boolean => Array.isArray(v) && v.every(isStr);

function checkProcess(p: ProcessPlan, at: string): void {
  if (!Array.isArray(p.args) || p.args.length === 0 || !p.args.every(isStr)) bad(`${at}.args`, p.args);
  if (!isStrArray(p.env)) bad(`${at}.env`, p.env);
  if (!isAbs(p.cwd)) bad(`${at}.cwd`, p.cwd);
  if (!isUint32(p.uid)) bad(`${at}.uid`, p.uid);
  if (!isUint32(p.gid)) bad(`${at}.gid`, p.gid);
  if (!Array.isArray(p.additionalGids) || !p.additionalGids.every(isUint32)) bad(`${at}.additionalGids`, p.additionalGids);
  if (typeof p.umask !== 'number' || !Number.isInteger(p.umask) || p.umask < 0 || p.umask > 0o7777) bad(`${at}.umask`, p.umask);
  for (const k of ['bounding', 'effective', 'permitted', 'inheritable'] as const) {
    const m = p.caps[k];
    if (typeof m !== 'bigint' || m < 0n || m >= 1n << 64n) bad(`${at}.caps.${k}`, m);
  }
  if (!Array.isArray(p.caps.ambient) || !p.caps.ambient.every((b) => Number.isInteger(b) && b >= 0 && b < 64)) bad(`${at}.caps.ambient`, p.caps.ambient);
  for (const [i, r] of p.rlimits.entries()) {
    if (!Number.isInteger(r.resource) || r.resource < 0 || r.resource > 15) bad(`${at}.rlimits[${i}].resource`, r.resource);
    if (typeof r.soft !== 'bigint' || typeof r.hard !== 'bigint' || r.soft < 0n || r.hard < 0n || r.soft > r.hard) bad(`${at}.rlimits[${i}]`, r);
  }
  if (typeof p.noNewPrivileges !== 'boolean') bad(`${at}.noNewPrivileges`, p.noNewPrivileges);
  if (p.oomScoreAdj !== null && (!Number.isInteger(p.oomScoreAdj) || p.oomScoreAdj < -1000 || p.oomScoreAdj > 1000)) bad(`${at}.oomScoreAdj`, p.oomScoreAdj);
}

function checkNamespaces(ns: NamespaceStep[], at: string): void {
  const seen = new Set<string>();
  for (const [i, n] of ns.entries()) {
    if (!NS_TYPES.has(n.type) || seen.has(n.type)) bad(`${at}[${i}].type`, n.type);
    seen.add(n.type);
    if (n.path !== null && !isAbs(n.path)) bad(`${at}[${i}].path`, n.path);
  }
}

function checkMount(m: MountStep, at: string): void {
  if (!isAbs(m.destination)) bad(`${at}.destination`, m.destination);
  if (!isStr(m.source)) bad(`${at}.source`, m.source);
  if (!isStr(m.type)) bad(`${at}.type`, m.type);
  if (!isStr(m.data)) bad(`${at}.data`, m.data);
  for (const k of ['flags', 'propagation', 'remountFlags'] as const) if (!isUint32(m[k])) bad(`${at}.${k}`, m[k]);
  if (typeof m.bind !== 'boolean') bad(`${at}.bind`, m.bind);
  if (m.bind && !isAbs(m.source)) bad(`${at}.source (bind)`, m.source);
}

function checkInit(plan: InitPlan): void {
  if (typeof plan.readonlyRoot !== 'boolean') bad('readonlyRoot', plan.readonlyRoot);
  if (!isUint32(plan.rootPropagation)) bad('rootPropagation', plan.rootPropagation);
  checkNamespaces(plan.namespaces, 'namespaces');
  if (plan.hostname !== null && !isStr(plan.hostname)) bad('hostname', plan.hostname);
  if (plan.domainname !== null && !isStr(plan.domainname)) bad('domainname', plan.domainname);
  if (!Array.isArray(plan.mounts)) bad('mounts', plan.mounts);
  plan.mounts.forEach((m, i) => checkMount(m, `mounts[${i}]`));
  for (const [i, d] of plan.devices.entries()) {
    // anywhere in the container's root, as runc makes them (resolved in it: secureJoin), never the root itself
    if (!isStr(d.path) || !d.path.startsWith('/') || d.path.replace(/\/+/g, '/').replace(/\/$/, '') === '') bad(`devices[${i}].path`, d.path);
    if (!['c', 'b', 'p'].includes(d.type)) bad(`devices[${i}].type`, d.type);
    for (const k of ['major', 'minor', 'mode', 'uid', 'gid'] as const) if (!isUint32(d[k])) bad(`devices[${i}].${k}`, d[k]);
  }
  if (!isStrArray(plan.maskedPaths)) bad('maskedPaths', plan.maskedPaths);
  if (!isStrArray(plan.readonlyPaths)) bad('readonlyPaths', plan.readonlyPaths);
  if (!plan.sysctl || typeof plan.sysctl !== 'object' || Array.isArray(plan.sysctl) || !Object.values(plan.sysctl).every(isStr)) bad('sysctl', plan.sysctl);
  checkProcess(plan.process, 'process');
}

function checkExec(plan: ExecPlan): void {
  checkNamespaces(plan.namespaces, 'exec namespaces');
  checkProcess(plan.process, 'exec process');
}

/** An InvalidArgument with a message is the one acceptable rejection; anything else is a finding. */
function rejected(e: unknown, what: string): void {
  if (e instanceof FuzzFinding) throw e;
  if (e instanceof InvalidArgument && e.message.trim() !== '') return;
  if (e instanceof SporeError) throw new FuzzFinding(`${what}: ${e.name} (code ${e.code}), not InvalidArgument: ${e.message}`, { cause: e });
  throw new FuzzFinding(`${what}: untyped error ${describe(e)}`, { cause: e });
}

export const fuzz = keepGoing(fuzzOne);

function fuzzOne(data: Buffer): void {
  let text: Buffer | string = data;
  if (data[0] === 0) {
    const r = new ByteReader(data.subarray(1));
    text = JSON.stringify(editJson(r.pick(BASE_SPECS), r)) ?? 'null';
  }
  let spec: Spec;
  try {
    spec = parseSpec(text, 'config.json');
  } catch (e) {
    rejected(e, 'parseSpec');
    return;
  }
  let seccomp: ProcessPlan['seccomp'] = null;
  try {
    if (spec.linux?.seccomp) {
      const c = compileSeccomp(spec.linux.seccomp);
      seccomp = { bpf: c.bpf, flags: c.flags };
    }
  } catch (e) {
    rejected(e, 'compileSeccomp');
    return;
  } finally {
    clearSeccompCache();
  }
  let init: InitPlan;
  try {
    init = initPlan({
      id: 'c1', spec, rootfs: '/run/spore/rootfs/c1', stdio: STDIO,
      cgroupProcs: ['/sys/fs/cgroup/default/c1/cgroup.procs'], cgroupV1Dirs: text.length % 2 === 1 ? V1_DIRS : null, seccomp,
    });
  } catch (e) {
    rejected(e, 'initPlan');
    return;
  }
  checkInit(init);
  let exec: ExecPlan;
  try {
    exec = execPlan({
      id: 'c1', execId: 'e1', targetPid: 4242, initNamespaces: init.namespaces, process: spec.process, stdio: STDIO,
      cgroupProcs: ['/sys/fs/cgroup/default/c1/cgroup.procs'], seccomp,
    });
  } catch (e) {
    rejected(e, 'execPlan');
    return;
  }
  checkExec(exec);
}
