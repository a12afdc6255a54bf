// What GET /healthz reports: the OCI path (the process seed alive, the ttrpc socket listening),
// FRI (its socket listening) and the seeds functions need (the L1 Node and Python seeds ready).
// 200 when all are up, 503 with the same body when one is down. The body names components and
// states only (no paths, pids or messages): /healthz needs no token.
import * as fs from 'node:fs';
import type { SeedInfo } from '../protocols/fri/types.js';

export interface HealthProbes {
  /** the process engine's root seed (containers and L1 seeds fork from it) is running */
  processSeed(): boolean;
  /** containerd's ttrpc socket is bound and accepting */
  ttrpc(): boolean;
  /** FRI's gRPC socket is bound and accepting */
  fri(): boolean;
  /** the function runtime's seeds */
  seeds(): SeedInfo[];
  /** the function runtime is off on purpose (spored --fri off): FRI and the seeds are "off", not down */
  functionsOff?: boolean;
}

export const L1_LANGUAGES = ['node', 'python'] as const;

export interface HealthReport {
  ok: boolean;
  components: {
    oci: { ok: boolean; process_seed: 'alive' | 'down'; ttrpc: 'listening' | 'down' };
    fri: { ok: boolean; grpc: 'listening' | 'down' | 'off' };
    seeds: { ok: boolean } & Record<(typeof L1_LANGUAGES)[number], string>;
  };
}

/** Whether a process exists (signal 0; EPERM still means it exists). */
export function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** A unix socket file is still at `path` (not removed or replaced by something else). */
export function socketPresent(path: string): boolean {
  try {
    return fs.statSync(path).isSocket();
  } catch {
    return false;
  }
}

/** The state of a language's L1 seed: "ready" only when one is ready and its process lives. */
function l1State(seeds: readonly SeedInfo[], language: string): string {
  const l1 = seeds.filter((s) => s.level === 1 && s.language === language);
  if (l1.length === 0) return 'missing';
  const ready = l1.find((s) => s.state === 'ready');
  if (ready) return pidAlive(ready.pid) ? 'ready' : 'dead';
  return (l1[0] as SeedInfo).state;
}

export function healthReport(p: HealthProbes): HealthReport {
  const seedUp = safe(() => p.processSeed());
  const ttrpcUp = safe(() => p.ttrpc());
  const oci: HealthReport['components']['oci'] = { ok: seedUp && ttrpcUp, process_seed: seedUp ? 'alive' : 'down', ttrpc: ttrpcUp ? 'listening' : 'down' };
  // a containers-only node: healthy when its OCI path is
  if (p.functionsOff) return { ok: oci.ok, components: { oci, fri: { ok: true, grpc: 'off' }, seeds: { ok: true, node: 'off', python: 'off' } } };
  const friUp = safe(() => p.fri());
  let seeds: SeedInfo[] = [];
  try { seeds = p.seeds(); } catch { /* reported as missing */ }
  const node = l1State(seeds, 'node');
  const python = l1State(seeds, 'python');
  const seedsOk = node === 'ready' && python === 'ready';
  const components: HealthReport['components'] = { oci, fri: { ok: friUp, grpc: friUp ? 'listening' : 'down' }, seeds: { ok: seedsOk, node, python } };
  return { ok: oci.ok && components.fri.ok && seedsOk, components };
}

/** Per-component up/down for spore_component_up. */
export function componentStates(r: HealthReport): Record<string, boolean> {
  // (components that are off on purpose are not series: they are neither up nor down)
  if (r.components.fri.grpc === 'off') return { process_seed: r.components.oci.process_seed === 'alive', ttrpc: r.components.oci.ttrpc === 'listening' };
  return {
    process_seed: r.components.oci.process_seed === 'alive',
    ttrpc: r.components.oci.ttrpc === 'listening',
    fri: r.components.fri.ok,
    seed_node: r.components.seeds.node === 'ready',
    seed_python: r.components.seeds.python === 'ready',
  };
}

function safe(f: () => boolean): boolean {
  try {
    return f();
  } catch {
    return false;
  }
}
