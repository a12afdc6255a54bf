// The Function Runtime Interface as plain data: what spored's FRI gRPC service, the HTTP
// gateway and the CLI expose. The gRPC layer (fri-proto/fri.proto) mirrors these types;
// the implementation (FunctionRuntime) lives in seeds/ and never sees transport types.

export type Engine = 'process' | 'vm';
/** 'vm': the vm engine's seed guest (spore's own CPL3 guest, no user code); see functions/vm-functions.ts */
export type Language = 'node' | 'python' | 'vm';
export type SeedLevel = 0 | 1 | 2;
export type SeedState = 'starting' | 'ready' | 'failed' | 'deleting';

export interface MemoryInfo {
  rssKiB: number;
  pssKiB: number;
  privateKiB: number;
  sharedKiB: number;
}

export interface SeedInfo {
  id: string;
  level: SeedLevel;
  engine: Engine;
  language: Language | null; // null for L0
  function: string | null; // L2 only
  parent: string | null;
  pid: number;
  state: SeedState;
  /** id of the seed this one replicates (same level/function), or null for a primary */
  replicaOf: string | null;
  forks: number;
  createdAt: string;
  initMs: number;
  memory: MemoryInfo | null;
  error: string | null;
}

export type InstanceState = 'paused' | 'running' | 'done' | 'failed';

export interface InstanceInfo {
  id: string;
  seedId: string;
  function: string | null;
  pid: number;
  state: InstanceState;
  createdAt: string;
}

/** Archive formats a function package may come in (same layout either way). */
export type PackageFormat = 'zip' | 'tar.gz';

/** A function package as deployed: an archive whose root becomes /var/task in the sandbox. */
export interface PackageArchive {
  format: PackageFormat;
  data: Uint8Array;
}

export interface FunctionSpec {
  name: string;
  language: Language;
  /** single-file deploy: the module source text ('' when `package` is given) */
  code: string;
  /**
   * package deploy: Node (`package.json` + `node_modules`) or Python (modules and vendored
   * packages) files, unpacked read-only at /var/task; null/absent for a single file
   */
  package?: PackageArchive | null;
  /**
   * single file: the exported function's name ("handler"); package: Lambda's
   * MODULE.FUNCTION ("index.handler" = /var/task/index.js's export `handler`;
   * "app.main" = /var/task/app.py's `main`)
   */
  handler: string;
  memoryMiB: number;
  timeoutMs: number;
  env: Record<string, string>;
}

export type FunctionVersionState = 'active' | 'retiring';

/** One deployed version of a function: its own L2 seed(s) and package. */
export interface FunctionVersionInfo {
  version: number;
  /** sha256 (hex) of the stored package's canonical manifest (functions/packages.ts) */
  packageDigest: string;
  state: FunctionVersionState;
  /** invocations still running on this version */
  inflight: number;
  seedIds: string[];
  deployedAt: string;
}

export interface FunctionInfo extends Omit<FunctionSpec, 'code' | 'package'> {
  /** bytes of the single-file source or of the package archive as deployed */
  codeBytes: number;
  /** the active version (1 for the first deploy; each redeploy adds one) */
  version: number;
  /** the active version's package digest */
  packageDigest: string;
  seedId: string | null; // its L2 seed once built
  deployedAt: string;
  invocations: number;
  /** the active version first, then versions still finishing in-flight work */
  versions: FunctionVersionInfo[];
  /**
   * ready; deploying (a new version is being built); rebuilding (its first seed went away and
   * it is being built again from its stored package); down (it cannot serve until redeployed)
   */
  state: FunctionState;
  /** why, when not ready ('' when ready) */
  stateMessage: string;
}

export type FunctionState = 'ready' | 'deploying' | 'rebuilding' | 'down';

/** Per-phase timings of one invocation, microseconds (the paper's Figure 6 phases). */
export interface PhaseTimings {
  control: number; // request arrival -> fork requested (lookup, pool take)
  fork: number; // fork requested -> child running
  bind: number; // cgroup + netns bind in the child
  seccomp: number;
  init: number; // uniqueness re-init + code load in the child (L1 fallback loads code here)
  execute: number; // handler run
  respond: number; // child result -> caller
  destroy: number; // kill/reap + resource recycle (after the response; not in total)
  total: number; // request arrival -> response ready
}

export type InvokeErrorKind = 'handler' | 'load' | 'timeout' | 'oom' | 'crash' | 'internal';

export interface InvokeError {
  kind: InvokeErrorKind;
  message: string;
  stack: string | null;
}

export interface InvokeResult {
  ok: boolean;
  /** the handler's return value as JSON text (ok only) */
  result: string | null;
  error: InvokeError | null;
  function: string | null;
  seedId: string;
  seedLevel: SeedLevel;
  instanceId: string;
  timings: PhaseTimings;
  /** the instance was parked: forked before the call arrived (timings.fork is 0) */
  parked?: boolean;
}

export interface InvokeOptions {
  /** the seed level to fork from; function code runs only in its own sandbox, so only 2 (the default) is accepted by the process engine */
  level?: SeedLevel;
}

export type ForkTarget = { kind: 'instance' } | { kind: 'seed'; function?: string; language?: Language };

export interface FunctionRuntime {
  /** The root seed of an engine (idempotent: returns the existing one). */
  create(engine: Engine): Promise<SeedInfo>;
  /** A paused instance, or a child seed (L1 language seed from L0, L2 function seed from L1). */
  fork(seedId: string, target: ForkTarget): Promise<InstanceInfo | SeedInfo>;
  /** Bind resources and the request to a paused instance, run it, return the response. */
  activate(instanceId: string, event: string): Promise<InvokeResult>;
  /** Nearest seed -> fork -> activate -> wait -> early destroy. */
  invoke(fn: string, event: string, opts?: InvokeOptions): Promise<InvokeResult>;
  destroy(instanceId: string): Promise<void>;
  listSeeds(): SeedInfo[];
  deleteSeed(seedId: string): Promise<void>;
  listInstances(): InstanceInfo[];
  deploy(spec: FunctionSpec): Promise<FunctionInfo>;
  remove(name: string): Promise<void>;
  listFunctions(): FunctionInfo[];
  /**
   * The function's captured stdout/stderr (its seeds' and instances'), newest last: at most
   * `tailBytes` bytes (default 64 KiB, cut at a line start). NotFound for an unknown name.
   */
  logs(name: string, tailBytes?: number): Promise<string>;
}
