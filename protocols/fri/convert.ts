// Plain FRI types (types.ts) <-> generated protobuf messages (fri_pb.ts), both directions.
// The server converts results to messages; the client converts messages back, so the CLI, tests
// and the runtime only ever see the plain types. proto3 zero values / absent optionals become
// null, matching types.ts. Pure functions only.
import { create } from '@bufbuild/protobuf';
import type { MessageInitShape } from '@bufbuild/protobuf';
import {
  Engine as EngineMsg,
  Language as LanguageMsg,
  SeedState as SeedStateMsg,
  InstanceState as InstanceStateMsg,
  InvokeErrorKind as InvokeErrorKindMsg,
  PackageFormat as PackageFormatMsg,
  FunctionVersionState as FunctionVersionStateMsg,
  ForkTarget_Kind,
  SeedInfoSchema,
  InstanceInfoSchema,
  FunctionInfoSchema,
  FunctionSpecSchema,
  FunctionVersionInfoSchema,
  InvokeResultSchema,
  PhaseTimingsSchema,
  ForkTargetSchema,
} from '../../fri-proto/gen/spore/fri/v1/fri_pb.js';
import type {
  SeedInfo as SeedInfoMsg,
  InstanceInfo as InstanceInfoMsg,
  FunctionInfo as FunctionInfoMsg,
  FunctionSpec as FunctionSpecMsg,
  FunctionVersionInfo as FunctionVersionInfoMsg,
  InvokeResult as InvokeResultMsg,
  PhaseTimings as PhaseTimingsMsg,
  ForkTarget as ForkTargetMsg,
} from '../../fri-proto/gen/spore/fri/v1/fri_pb.js';
import type {
  Engine, Language, SeedLevel, SeedState, InstanceState, InvokeErrorKind, PackageFormat, FunctionVersionState,
  SeedInfo, InstanceInfo, FunctionSpec, FunctionInfo, FunctionState, FunctionVersionInfo, InvokeResult, PhaseTimings, ForkTarget,
} from './types.js';
import type { RawFunctionSpec } from './validate.js';

// ---- enums: tables in both directions, so adding a value is one line each ----

const ENGINES: Record<Engine, EngineMsg> = { process: EngineMsg.PROCESS, vm: EngineMsg.VM };
const LANGUAGES: Record<Language, LanguageMsg> = { node: LanguageMsg.NODE, python: LanguageMsg.PYTHON, vm: LanguageMsg.VM };
const SEED_STATES: Record<SeedState, SeedStateMsg> = {
  starting: SeedStateMsg.STARTING, ready: SeedStateMsg.READY, failed: SeedStateMsg.FAILED, deleting: SeedStateMsg.DELETING,
};
const INSTANCE_STATES: Record<InstanceState, InstanceStateMsg> = {
  paused: InstanceStateMsg.PAUSED, running: InstanceStateMsg.RUNNING, done: InstanceStateMsg.DONE, failed: InstanceStateMsg.FAILED,
};
const ERROR_KINDS: Record<InvokeErrorKind, InvokeErrorKindMsg> = {
  handler: InvokeErrorKindMsg.HANDLER, load: InvokeErrorKindMsg.LOAD, timeout: InvokeErrorKindMsg.TIMEOUT,
  oom: InvokeErrorKindMsg.OOM, crash: InvokeErrorKindMsg.CRASH, internal: InvokeErrorKindMsg.INTERNAL,
};

const PACKAGE_FORMATS: Record<PackageFormat, PackageFormatMsg> = { zip: PackageFormatMsg.ZIP, 'tar.gz': PackageFormatMsg.TAR_GZ };
const VERSION_STATES: Record<FunctionVersionState, FunctionVersionStateMsg> = {
  active: FunctionVersionStateMsg.ACTIVE, retiring: FunctionVersionStateMsg.RETIRING,
};

function invert<K extends string, V extends number>(table: Record<K, V>): Map<V, K> {
  return new Map(Object.entries(table).map(([k, v]) => [v as V, k as K]));
}
const ENGINE_OF = invert(ENGINES);
const LANGUAGE_OF = invert(LANGUAGES);
const SEED_STATE_OF = invert(SEED_STATES);
const INSTANCE_STATE_OF = invert(INSTANCE_STATES);
const ERROR_KIND_OF = invert(ERROR_KINDS);
const PACKAGE_FORMAT_OF = invert(PACKAGE_FORMATS);
const VERSION_STATE_OF = invert(VERSION_STATES);

export const engineToProto = (e: Engine): EngineMsg => ENGINES[e];
export const languageToProto = (l: Language | null): LanguageMsg => (l === null ? LanguageMsg.UNSPECIFIED : LANGUAGES[l]);
/** null for UNSPECIFIED or a value this build does not know (newer peer). */
export const engineFromProto = (e: EngineMsg): Engine | null => ENGINE_OF.get(e) ?? null;
export const languageFromProto = (l: LanguageMsg): Language | null => LANGUAGE_OF.get(l) ?? null;

export const packageFormatToProto = (f: PackageFormat): PackageFormatMsg => PACKAGE_FORMATS[f];
/** null for UNSPECIFIED or unknown. */
export const packageFormatFromProto = (f: PackageFormatMsg): PackageFormat | null => PACKAGE_FORMAT_OF.get(f) ?? null;

export const ENGINE_NAMES = Object.keys(ENGINES) as Engine[];
export const LANGUAGE_NAMES = Object.keys(LANGUAGES) as Language[];

function seedLevel(n: number): SeedLevel {
  return n === 1 || n === 2 ? n : 0;
}

const UINT32_MAX = 0xffff_ffff;

/** Durations and KiB cross the wire as uint32: round, and clamp what would not encode. */
function u32(n: number): number {
  return Number.isFinite(n) && n > 0 ? Math.min(Math.round(n), UINT32_MAX) : 0;
}

/** Counters are uint64 on the wire (bigint in protobuf-es); below 2^53 in any real run. */
function u64(n: number): bigint {
  return Number.isFinite(n) && n > 0 ? BigInt(Math.round(n)) : 0n;
}

// ---- to proto (server side) ----

export function seedToProto(s: SeedInfo): MessageInitShape<typeof SeedInfoSchema> {
  return {
    id: s.id,
    level: s.level,
    engine: ENGINES[s.engine],
    language: languageToProto(s.language),
    function: s.function ?? undefined,
    parent: s.parent ?? undefined,
    pid: s.pid,
    state: SEED_STATES[s.state],
    replicaOf: s.replicaOf ?? undefined,
    forks: u64(s.forks),
    createdAt: s.createdAt,
    initMs: s.initMs,
    memory: s.memory
      ? { rssKib: u32(s.memory.rssKiB), pssKib: u32(s.memory.pssKiB), privateKib: u32(s.memory.privateKiB), sharedKib: u32(s.memory.sharedKiB) }
      : undefined,
    error: s.error ?? undefined,
  };
}

export function instanceToProto(i: InstanceInfo): MessageInitShape<typeof InstanceInfoSchema> {
  return {
    id: i.id, seedId: i.seedId, function: i.function ?? undefined, pid: i.pid,
    state: INSTANCE_STATES[i.state], createdAt: i.createdAt,
  };
}

export function functionVersionToProto(v: FunctionVersionInfo): MessageInitShape<typeof FunctionVersionInfoSchema> {
  return {
    version: u32(v.version), packageDigest: v.packageDigest, state: VERSION_STATES[v.state], inflight: u32(v.inflight),
    seedIds: [...v.seedIds], deployedAt: v.deployedAt,
  };
}

export function functionInfoToProto(f: FunctionInfo): MessageInitShape<typeof FunctionInfoSchema> {
  return {
    name: f.name, language: LANGUAGES[f.language], handler: f.handler, memoryMib: f.memoryMiB,
    timeoutMs: f.timeoutMs, env: { ...f.env }, codeBytes: u32(f.codeBytes), seedId: f.seedId ?? undefined,
    deployedAt: f.deployedAt, invocations: u64(f.invocations), version: u32(f.version), packageDigest: f.packageDigest,
    versions: f.versions.map(functionVersionToProto), state: f.state, stateMessage: f.stateMessage,
  };
}

export function functionSpecToProto(s: FunctionSpec): MessageInitShape<typeof FunctionSpecSchema> {
  return {
    name: s.name, language: LANGUAGES[s.language], code: s.code, handler: s.handler,
    memoryMib: s.memoryMiB, timeoutMs: s.timeoutMs, env: { ...s.env },
    ...(s.package ? { package: s.package.data, packageFormat: PACKAGE_FORMATS[s.package.format] } : {}),
  };
}

export function timingsToProto(t: PhaseTimings): MessageInitShape<typeof PhaseTimingsSchema> {
  return {
    control: u32(t.control), fork: u32(t.fork), bind: u32(t.bind), seccomp: u32(t.seccomp),
    init: u32(t.init), execute: u32(t.execute), respond: u32(t.respond), destroy: u32(t.destroy),
    total: u32(t.total),
  };
}

export function invokeResultToProto(r: InvokeResult): MessageInitShape<typeof InvokeResultSchema> {
  return {
    ok: r.ok,
    result: r.result ?? undefined,
    error: r.error ? { kind: ERROR_KINDS[r.error.kind], message: r.error.message, stack: r.error.stack ?? undefined } : undefined,
    function: r.function ?? undefined,
    seedId: r.seedId,
    seedLevel: r.seedLevel,
    instanceId: r.instanceId,
    timings: timingsToProto(r.timings),
    parked: r.parked === true,
  };
}

export function forkTargetToProto(t: ForkTarget): MessageInitShape<typeof ForkTargetSchema> {
  if (t.kind === 'instance') return { kind: ForkTarget_Kind.INSTANCE };
  return { kind: ForkTarget_Kind.SEED, function: t.function, language: languageToProto(t.language ?? null) };
}

// ---- from proto (client side; server side for requests) ----

export function seedFromProto(m: SeedInfoMsg): SeedInfo {
  return {
    id: m.id,
    level: seedLevel(m.level),
    engine: engineFromProto(m.engine) ?? 'process',
    language: languageFromProto(m.language),
    function: m.function ?? null,
    parent: m.parent ?? null,
    pid: m.pid,
    state: SEED_STATE_OF.get(m.state) ?? 'failed',
    replicaOf: m.replicaOf ?? null,
    forks: Number(m.forks),
    createdAt: m.createdAt,
    initMs: m.initMs,
    memory: m.memory
      ? { rssKiB: m.memory.rssKib, pssKiB: m.memory.pssKib, privateKiB: m.memory.privateKib, sharedKiB: m.memory.sharedKib }
      : null,
    error: m.error ?? null,
  };
}

export function instanceFromProto(m: InstanceInfoMsg): InstanceInfo {
  return {
    id: m.id, seedId: m.seedId, function: m.function ?? null, pid: m.pid,
    state: INSTANCE_STATE_OF.get(m.state) ?? 'failed', createdAt: m.createdAt,
  };
}

export function functionVersionFromProto(m: FunctionVersionInfoMsg): FunctionVersionInfo {
  return {
    version: m.version, packageDigest: m.packageDigest, state: VERSION_STATE_OF.get(m.state) ?? 'retiring',
    inflight: m.inflight, seedIds: [...m.seedIds], deployedAt: m.deployedAt,
  };
}

export function functionInfoFromProto(m: FunctionInfoMsg): FunctionInfo {
  return {
    name: m.name, language: languageFromProto(m.language) ?? 'node', handler: m.handler, memoryMiB: m.memoryMib,
    timeoutMs: m.timeoutMs, env: { ...m.env }, codeBytes: m.codeBytes, version: m.version, packageDigest: m.packageDigest,
    seedId: m.seedId ?? null, deployedAt: m.deployedAt, invocations: Number(m.invocations),
    versions: m.versions.map(functionVersionFromProto),
    state: FUNCTION_STATES.has(m.state as FunctionState) ? m.state as FunctionState : 'ready', stateMessage: m.stateMessage,
  };
}

const FUNCTION_STATES: ReadonlySet<FunctionState> = new Set(['ready', 'deploying', 'rebuilding', 'down']);

export function timingsFromProto(m: PhaseTimingsMsg | undefined): PhaseTimings {
  const t = m ?? create(PhaseTimingsSchema);
  return {
    control: t.control, fork: t.fork, bind: t.bind, seccomp: t.seccomp, init: t.init,
    execute: t.execute, respond: t.respond, destroy: t.destroy, total: t.total,
  };
}

export function invokeResultFromProto(m: InvokeResultMsg | undefined): InvokeResult {
  const r = m ?? create(InvokeResultSchema);
  return {
    ok: r.ok,
    result: r.result ?? null,
    error: r.error
      ? { kind: ERROR_KIND_OF.get(r.error.kind) ?? 'internal', message: r.error.message, stack: r.error.stack ?? null }
      : null,
    function: r.function ?? null,
    seedId: r.seedId,
    seedLevel: seedLevel(r.seedLevel),
    instanceId: r.instanceId,
    timings: timingsFromProto(r.timings),
    ...(r.parked ? { parked: true } : {}),
  };
}

/**
 * Spec fields exactly as sent; defaults and validation are the server's job (validate.ts). An
 * empty `package` is no package (proto3 cannot tell them apart); its format may be null
 * (UNSPECIFIED or unknown), which validation rejects.
 */
export function functionSpecFromProto(m: FunctionSpecMsg): RawFunctionSpec {
  return {
    name: m.name, language: languageFromProto(m.language), code: m.code, handler: m.handler,
    memoryMiB: m.memoryMib, timeoutMs: m.timeoutMs, env: { ...m.env },
    package: m.package.byteLength > 0 ? { format: packageFormatFromProto(m.packageFormat), data: m.package } : null,
  };
}

export function forkTargetKindFromProto(m: ForkTargetMsg | undefined): 'instance' | 'seed' | null {
  if (!m) return null;
  if (m.kind === ForkTarget_Kind.INSTANCE) return 'instance';
  if (m.kind === ForkTarget_Kind.SEED) return 'seed';
  return null;
}
