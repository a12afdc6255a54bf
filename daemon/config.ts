// Daemon configuration: defaults a user can rely on, overridable by flags and env.
// Plain data, printed at start-up. Every flag, its environment variable, its default and its
// one-line description live in one table (FLAGS): parsing, the set of known flags and
// `spored --help` all come from it, so they cannot drift apart.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { InvalidArgument } from '../sys/errors.js';
import type { FavorDynmodsMode } from '../pools/favordynmods.js';

export interface DaemonConfig {
  runDir: string;
  ttrpcSocket: string;
  friSocket: string;
  /** "host:port", or "off" (no gateway; FRI still serves on its socket) */
  gatewayAddress: string;
  /** bearer token every gateway request but /healthz must carry; null: none (loopback trust) */
  gatewayToken: string | null;
  /** gateway connections open at once; more are closed as they are accepted */
  gatewayMaxConnections: number;
  /** MiB of request bodies the gateway holds at once (all connections); a body that does not fit gets 429 */
  gatewayBodyBudgetMiB: number;
  /** containerd's ttrpc address for events (TTRPC_ADDRESS given to shims) */
  containerdTtrpc: string;
  logFile: string | null;
  logLevel: string;
  cgroupParent: string;
  /** function runtime: FRI gRPC + gateway + seed tree; off leaves only the OCI path */
  fri: boolean;
  /** function packages (content-addressed) live under <stateDir>/packages */
  stateDir: string;
  cgroupPool: number;
  /** container shells the root seed keeps forked ahead for the OCI/CRI path (0: none) */
  containerShells: number;
  /** spored hands plans to container shells itself, past the root seed (engines/process/seed-client.ts) */
  directShells: boolean;
  l2Replicas: number;
  /** instances of one function at a time (its /tmp slots); more callers wait */
  functionConcurrency: number;
  /** callers that may wait for a busy function; past it: RESOURCE_EXHAUSTED / HTTP 429 at once */
  functionQueue: number;
  /** instances on the node at once, all functions; past it: RESOURCE_EXHAUSTED / HTTP 429 */
  maxInstances: number;
  /** a function's init code must finish within this at deploy, ms */
  initTimeoutMs: number;
  /** the keeper's control socket when spored runs under one (set by the keeper), else null */
  keeperSocket: string | null;
  /** parked instances per active function version: 'auto' (from recent traffic) or a number (0: off) */
  parked: 'auto' | number;
  /** on: turn on the host's cgroup favordynmods at start (pools/favordynmods.ts); keep: leave the host as it is */
  cgroupFavorDynmods: FavorDynmodsMode;
}

export const DEFAULT_RUN_DIR = '/run/spore';
export const DEFAULT_CONTAINERD_TTRPC = '/run/containerd/containerd.sock.ttrpc';
export const DEFAULT_GATEWAY = '127.0.0.1:8780';

export interface FlagDef {
  /** the flag without its dashes */
  name: string;
  /** what the value looks like in --help */
  arg: string;
  /** environment variable read when the flag is absent (null: flag only) */
  env: string | null;
  /** the default as --help shows it; when `literal`, also the value loadConfig uses */
  default: string;
  literal: boolean;
  /** integer flags: the largest value accepted (0 is the smallest) */
  max?: number;
  /** the DaemonConfig field it sets */
  key: keyof DaemonConfig;
  /** one line for --help */
  help: string;
}

const flag = (name: string, arg: string, env: string | null, dflt: string, literal: boolean, key: keyof DaemonConfig, help: string, max?: number): FlagDef =>
  max === undefined ? { name, arg, env, default: dflt, literal, key, help } : { name, arg, env, default: dflt, literal, key, help, max };

/** Every spored flag. */
export const FLAGS: readonly FlagDef[] = [
  flag('run-dir', 'DIR', 'SPORE_RUN_DIR', DEFAULT_RUN_DIR, true, 'runDir', 'sockets, pid file, task records and function output logs (one spored per run dir)'),
  flag('state-dir', 'DIR', 'SPORE_STATE_DIR', '/var/lib/spore for the default run dir, else <run-dir>/state', false, 'stateDir', 'function packages (content-addressed), kept across restarts'),
  flag('ttrpc-socket', 'PATH', null, '<run-dir>/ttrpc.sock', false, 'ttrpcSocket', "containerd's shim v2 Task API (ttrpc), mode 0600"),
  flag('fri-socket', 'PATH', 'SPORE_FRI_SOCKET', '<run-dir>/fri.sock', false, 'friSocket', 'FRI gRPC unix socket, mode 0600 owned by the daemon (root): no other authentication'),
  flag('fri', 'on|off', 'SPORE_FRI', 'on', false, 'fri', 'the function runtime (FRI, gateway, seed tree); off leaves only the OCI path'),
  flag('gateway', 'HOST:PORT|off', 'SPORE_GATEWAY', DEFAULT_GATEWAY, true, 'gatewayAddress', 'HTTP gateway (/invoke/<fn>, /metrics, /healthz); off disables it, FRI keeps serving'),
  flag('gateway-token', 'TOKEN', 'SPORE_GATEWAY_TOKEN', 'none', false, 'gatewayToken', 'require "Authorization: Bearer TOKEN" on every gateway request but /healthz'),
  flag('gateway-token-file', 'FILE', 'SPORE_GATEWAY_TOKEN_FILE', 'none', false, 'gatewayToken', 'read the gateway token from FILE (first line; keeps it out of ps and /proc)'),
  flag('gateway-max-connections', 'N', 'SPORE_GATEWAY_MAX_CONNECTIONS', '1024', true, 'gatewayMaxConnections', 'gateway connections open at once; more are closed as they are accepted (0 means 1)', 1_000_000),
  flag('gateway-body-budget', 'MIB', 'SPORE_GATEWAY_BODY_BUDGET', '256', true, 'gatewayBodyBudgetMiB', 'MiB of request bodies the gateway holds at once, all connections; a body that does not fit gets 429 (0 means 1)', 65536),
  flag('containerd-ttrpc', 'PATH', 'TTRPC_ADDRESS', DEFAULT_CONTAINERD_TTRPC, true, 'containerdTtrpc', "containerd's ttrpc socket, where task events are published"),
  flag('log', 'FILE', 'SPORE_LOG', 'stderr', false, 'logFile', "spored's own log (pino JSON lines)"),
  flag('log-level', 'LEVEL', 'SPORE_LOG_LEVEL', 'info', true, 'logLevel', 'trace, debug, info, warn, error, fatal or silent'),
  flag('cgroup-parent', 'PATH', 'SPORE_CGROUP_PARENT', '/spore', true, 'cgroupParent', 'parent cgroup of containers whose cgroupsPath is relative or absent'),
  flag('cgroup-favordynmods', 'on|keep', 'SPORE_CGROUP_FAVORDYNMODS', 'on', true, 'cgroupFavorDynmods', "on: turn on favordynmods on the host's cgroup2 root (Linux >= 6.0; checked every 10 s) so cgroup moves skip an RCU grace period; keep: leave the host as it is"),
  flag('cgroup-pool', 'N', 'SPORE_CGROUP_POOL', '32', true, 'cgroupPool', 'pre-created cgroups for function instances', 4096),
  flag('direct-shells', 'on|off', 'SPORE_DIRECT_SHELLS', 'on', false, 'directShells', 'on: spored writes a Create\'s plan to a container shell and reads its set-up itself (the root seed never holds the plan); off: through the root seed'),
  flag('container-shells', 'N', 'SPORE_CONTAINER_SHELLS', '2', true, 'containerShells', 'containers pre-forked by the root seed (new pid namespace, waiting for a Create that fits); 0 disables', 64),
  flag('l2-replicas', 'N', 'SPORE_L2_REPLICAS', '2', true, 'l2Replicas', 'forks of each function seed that serve invocations (0 means 1)', 16),
  flag('function-concurrency', 'N', 'SPORE_FUNCTION_CONCURRENCY', '32', true, 'functionConcurrency', 'instances of one function at a time (its /tmp slots; 0 means 1)', 1024),
  flag('function-queue', 'N', 'SPORE_FUNCTION_QUEUE', '32', true, 'functionQueue', 'callers that may wait for a busy function; more get 429 / RESOURCE_EXHAUSTED at once', 65536),
  flag('max-instances', 'N', 'SPORE_MAX_INSTANCES', '256', true, 'maxInstances', 'instances on this node at once, all functions (0 means 1); more get 429 at once', 65536),
  flag('parked', 'auto|N', 'SPORE_PARKED', 'auto', true, 'parked', 'instances forked before calls arrive, per function: auto (sized from recent traffic, none when idle), N, or 0 (off)'),
  flag('keeper-socket', 'PATH', null, 'none', false, 'keeperSocket', "set by spore's keeper (bin/spored): its control socket; containers then survive spored restarts"),
  flag('init-timeout', 'MS', 'SPORE_INIT_TIMEOUT', '10000', true, 'initTimeoutMs', "a function's init code must finish within this at deploy, ms (0 means 1)", 900_000),
];

const BY_NAME = new Map(FLAGS.map((f) => [f.name, f]));
/** Flags spored accepts: the table's, plus --help / -h. */
export const KNOWN: ReadonlySet<string> = new Set([...BY_NAME.keys(), 'help']);

/** `spored --help`, generated from FLAGS. */
export function helpText(): string {
  const w = Math.max(...FLAGS.map((f) => `--${f.name} ${f.arg}`.length));
  const lines = FLAGS.map((f) => {
    const head = `  ${`--${f.name} ${f.arg}`.padEnd(w)}  ${f.help}`;
    const tail = `  ${''.padEnd(w)}  env ${f.env ?? '-'} · default ${f.default}`;
    return `${head}\n${tail}`;
  });
  return `usage: spored [--flag VALUE | --flag=VALUE]...

spored serves containerd's shim v2 Task API (ttrpc), FRI (gRPC, spore.fri.v1) and an HTTP
gateway. A flag wins over its environment variable; both over the default.

${lines.join('\n')}
  ${'-h, --help'.padEnd(w)}  this help
`;
}

export function parseFlags(argv: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (a === '--help' || a === '-h') { out.help = 'true'; continue; }
    if (!a.startsWith('--')) throw new InvalidArgument(`unexpected argument ${JSON.stringify(a)}; see spored --help`);
    const eq = a.indexOf('=');
    if (eq > 0) { out[a.slice(2, eq)] = a.slice(eq + 1); continue; }
    const v = argv[i + 1];
    if (v === undefined || v.startsWith('--')) throw new InvalidArgument(`flag ${a} needs a value; see spored --help`);
    out[a.slice(2)] = v;
    i++;
  }
  return out;
}

/** "host:port", "[v6]:port" or ":port"/"port" (all interfaces) -> listen arguments. */
export function parseAddress(address: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(address) ?? /^()()(\d+)$/.exec(address);
  const port = m ? Number(m[3]) : NaN;
  if (!m || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new InvalidArgument(`bad gateway address ${JSON.stringify(address)}; use host:port, e.g. ${DEFAULT_GATEWAY}, or off`);
  }
  const host = m[1] ?? m[2] ?? '';
  return { host: host === '' ? '0.0.0.0' : host, port };
}

/** True for addresses only this host can reach (127.0.0.0/8, ::1, localhost). */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

export function loadConfig(argv: string[], env: NodeJS.ProcessEnv): DaemonConfig {
  const f = parseFlags(argv);
  for (const k of Object.keys(f)) {
    if (!KNOWN.has(k)) throw new InvalidArgument(`unknown flag --${k}; known: ${[...KNOWN].map((x) => '--' + x).join(' ')} (spored --help describes them)`);
  }
  const def = (name: string): FlagDef => {
    const d = BY_NAME.get(name);
    if (!d) throw new Error(`config: flag --${name} is not in FLAGS`);
    return d;
  };
  /** the flag's value, else its environment variable's (empty counts as unset), else undefined */
  const given = (name: string): string | undefined => {
    const d = def(name);
    const v = f[name] ?? (d.env ? env[d.env] : undefined);
    return v === '' && f[name] === undefined ? undefined : v;
  };
  const str = (name: string): string => given(name) ?? def(name).default;
  /** how a value's source is named in an error: the flag, or the variable it came from */
  const src = (name: string): string => {
    const d = def(name);
    return f[name] === undefined && d.env && env[d.env] !== undefined && env[d.env] !== '' ? `${d.env} (--${name})` : `--${name}`;
  };
  const int = (name: string, atLeastOne = false): number => {
    const d = def(name);
    const v = given(name);
    if (v === undefined || v === '') return Number(d.default);
    const n = Number(v);
    const max = d.max ?? Number.MAX_SAFE_INTEGER;
    if (!/^\d+$/.test(v.trim()) || !Number.isInteger(n) || n < 0 || n > max) {
      throw new InvalidArgument(`${src(name)} must be an integer between 0 and ${max}, got ${JSON.stringify(v)}`);
    }
    return atLeastOne ? n || 1 : n;
  };

  const runDir = str('run-dir');
  const gatewayAddress = str('gateway');
  if (gatewayAddress !== 'off') parseAddress(gatewayAddress);
  const fri = str('fri');
  if (fri !== 'on' && fri !== 'off') throw new InvalidArgument(`${src('fri')} must be on or off, got ${JSON.stringify(fri)}`);
  const directShells = str('direct-shells');
  if (directShells !== 'on' && directShells !== 'off') throw new InvalidArgument(`${src('direct-shells')} must be on or off, got ${JSON.stringify(directShells)}`);
  return {
    runDir,
    ttrpcSocket: given('ttrpc-socket') ?? join(runDir, 'ttrpc.sock'),
    friSocket: given('fri-socket') ?? join(runDir, 'fri.sock'),
    gatewayAddress,
    gatewayToken: gatewayToken(given('gateway-token'), given('gateway-token-file')),
    gatewayMaxConnections: int('gateway-max-connections', true),
    gatewayBodyBudgetMiB: int('gateway-body-budget', true),
    containerdTtrpc: str('containerd-ttrpc').replace(/^unix:\/\//, ''),
    logFile: given('log') ?? null,
    logLevel: str('log-level'),
    cgroupParent: str('cgroup-parent'),
    fri: fri === 'on',
    // a spored with its own run dir (a second containerd, a test) keeps its own state too:
    // package garbage collection must never see another daemon's functions
    stateDir: given('state-dir') ?? (runDir === DEFAULT_RUN_DIR ? '/var/lib/spore' : join(runDir, 'state')),
    cgroupPool: int('cgroup-pool'),
    containerShells: int('container-shells'),
    directShells: directShells === 'on',
    l2Replicas: int('l2-replicas', true),
    functionConcurrency: int('function-concurrency', true),
    functionQueue: int('function-queue'),
    maxInstances: int('max-instances', true),
    initTimeoutMs: int('init-timeout', true),
    keeperSocket: given('keeper-socket') ?? null,
    parked: parkedOf(str('parked'), src('parked')),
    cgroupFavorDynmods: favorDynmodsOf(str('cgroup-favordynmods'), src('cgroup-favordynmods')),
  };
}

function favorDynmodsOf(v: string, from: string): FavorDynmodsMode {
  if (v === 'on' || v === 'keep') return v;
  throw new InvalidArgument(`${from} must be on or keep, got ${JSON.stringify(v)}${v.trim().toLowerCase() === 'off' ? ' (spored never turns it off: keep leaves the host as it is)' : ''}`);
}

function parkedOf(v: string, from: string): 'auto' | number {
  if (v === 'auto') return 'auto';
  if (!/^\d+$/.test(v.trim()) || Number(v) > 64) throw new InvalidArgument(`${from} must be auto or an integer between 0 and 64, got ${JSON.stringify(v)}`);
  return Number(v);
}

/** The gateway token from --gateway-token or the first line of --gateway-token-file; null: none. */
function gatewayToken(token: string | undefined, file: string | undefined): string | null {
  if (token !== undefined && file !== undefined) throw new InvalidArgument('give --gateway-token or --gateway-token-file (or their SPORE_ variables), not both');
  let t = token;
  if (file !== undefined) {
    try {
      t = readFileSync(file, 'utf8').split('\n')[0] ?? '';
    } catch (e) {
      throw new InvalidArgument(`cannot read --gateway-token-file ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
  }
  if (t === undefined) return null;
  t = t.trim();
  if (t === '') throw new InvalidArgument(`the gateway token is empty${file !== undefined ? ` (${file})` : ''}; give a token or leave it unset`);
  if (!/^[\x21-\x7e]+$/.test(t)) throw new InvalidArgument('the gateway token must be printable ASCII without spaces (it travels in an HTTP header)');
  return t;
}
