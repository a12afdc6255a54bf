// Daemon configuration: defaults a user can rely on, overridable by flags and env.
// Plain data, printed at start-up.
import { join } from 'node:path';
import { InvalidArgument } from './errors.js';

export interface DaemonConfig {
  runDir: string;
  ttrpcSocket: string;
  friSocket: string;
  gatewayAddress: string;
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
  l2Replicas: number;
  /** instances of one function at a time (its /tmp slots); more callers wait */
  functionConcurrency: number;
  /** callers that may wait for a busy function; past it: RESOURCE_EXHAUSTED / HTTP 429 at once */
  functionQueue: number;
  /** instances on the node at once, all functions; past it: RESOURCE_EXHAUSTED / HTTP 429 */
  maxInstances: number;
  /** a function's init code must finish within this at deploy, ms */
  initTimeoutMs: number;
}

export const DEFAULT_RUN_DIR = '/run/spore';
export const DEFAULT_CONTAINERD_TTRPC = '/run/containerd/containerd.sock.ttrpc';

export function parseFlags(argv: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (!a.startsWith('--')) throw new InvalidArgument(`unexpected argument ${JSON.stringify(a)}`);
    const eq = a.indexOf('=');
    if (eq > 0) { out[a.slice(2, eq)] = a.slice(eq + 1); continue; }
    const v = argv[i + 1];
    if (v === undefined || v.startsWith('--')) throw new InvalidArgument(`flag ${a} needs a value`);
    out[a.slice(2)] = v;
    i++;
  }
  return out;
}

const KNOWN = new Set(['run-dir', 'state-dir', 'ttrpc-socket', 'fri-socket', 'gateway', 'containerd-ttrpc', 'log', 'log-level', 'cgroup-parent', 'fri', 'cgroup-pool', 'l2-replicas', 'function-concurrency', 'function-queue', 'max-instances', 'init-timeout']);

function count(name: string, v: string | undefined, dflt: number, max: number): number {
  if (v === undefined || v === '') return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > max) throw new InvalidArgument(`--${name} must be an integer between 0 and ${max}, got ${JSON.stringify(v)}`);
  return n;
}

export function loadConfig(argv: string[], env: NodeJS.ProcessEnv): DaemonConfig {
  const f = parseFlags(argv);
  for (const k of Object.keys(f)) if (!KNOWN.has(k)) throw new InvalidArgument(`unknown flag --${k}; known: ${[...KNOWN].map((x) => '--' + x).join(' ')}`);
  const runDir = f['run-dir'] ?? env.SPORE_RUN_DIR ?? DEFAULT_RUN_DIR;
  return {
    runDir,
    ttrpcSocket: f['ttrpc-socket'] ?? join(runDir, 'ttrpc.sock'),
    friSocket: f['fri-socket'] ?? join(runDir, 'fri.sock'),
    gatewayAddress: f.gateway ?? env.SPORE_GATEWAY ?? '127.0.0.1:8780',
    containerdTtrpc: (f['containerd-ttrpc'] ?? env.TTRPC_ADDRESS ?? DEFAULT_CONTAINERD_TTRPC).replace(/^unix:\/\//, ''),
    logFile: f.log ?? env.SPORE_LOG ?? null,
    logLevel: f['log-level'] ?? env.SPORE_LOG_LEVEL ?? 'info',
    cgroupParent: f['cgroup-parent'] ?? env.SPORE_CGROUP_PARENT ?? '/spore',
    fri: (f.fri ?? env.SPORE_FRI ?? 'on') !== 'off',
    // a spored with its own run dir (a second containerd, a test) keeps its own state too:
    // package garbage collection must never see another daemon's functions
    stateDir: f['state-dir'] ?? env.SPORE_STATE_DIR ?? (runDir === DEFAULT_RUN_DIR ? '/var/lib/spore' : join(runDir, 'state')),
    cgroupPool: count('cgroup-pool', f['cgroup-pool'] ?? env.SPORE_CGROUP_POOL, 32, 4096),
    l2Replicas: count('l2-replicas', f['l2-replicas'] ?? env.SPORE_L2_REPLICAS, 2, 16) || 1,
    functionConcurrency: count('function-concurrency', f['function-concurrency'] ?? env.SPORE_FUNCTION_CONCURRENCY, 32, 1024) || 1,
    functionQueue: count('function-queue', f['function-queue'] ?? env.SPORE_FUNCTION_QUEUE, 32, 65536),
    maxInstances: count('max-instances', f['max-instances'] ?? env.SPORE_MAX_INSTANCES, 256, 65536) || 1,
    initTimeoutMs: count('init-timeout', f['init-timeout'] ?? env.SPORE_INIT_TIMEOUT, 10_000, 900_000) || 1,
  };
}
