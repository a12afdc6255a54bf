// daemon/health.ts: what GET /healthz reports from the daemon's probes.
import { describe, expect, it } from 'vitest';
import { componentStates, healthReport, pidAlive, type HealthProbes } from '../daemon/health.js';
import type { SeedInfo } from '../protocols/fri/types.js';

const seed = (id: string, level: 0 | 1 | 2, language: SeedInfo['language'], state: SeedInfo['state'], pid = process.pid): SeedInfo => ({
  id, level, engine: 'process', language, function: null, parent: null, pid, state, replicaOf: null, forks: 0,
  createdAt: '', initMs: 0, memory: null, error: null,
});

const SEEDS = [seed('l0', 0, null, 'ready'), seed('l1-node', 1, 'node', 'ready'), seed('l1-python', 1, 'python', 'ready')];

function probes(over: Partial<HealthProbes> = {}): HealthProbes {
  return { processSeed: () => true, ttrpc: () => true, fri: () => true, seeds: () => SEEDS, ...over };
}

describe('healthReport', () => {
  it('ok when the OCI path, FRI and both L1 seeds are up, naming each', () => {
    const r = healthReport(probes());
    expect(r).toEqual({
      ok: true,
      components: {
        oci: { ok: true, process_seed: 'alive', ttrpc: 'listening' },
        fri: { ok: true, grpc: 'listening' },
        seeds: { ok: true, node: 'ready', python: 'ready' },
      },
    });
    expect(Object.values(componentStates(r)).every(Boolean)).toBe(true);
  });

  it('down when any one is down, and says which', () => {
    expect(healthReport(probes({ processSeed: () => false }))).toMatchObject({ ok: false, components: { oci: { ok: false, process_seed: 'down', ttrpc: 'listening' } } });
    expect(healthReport(probes({ ttrpc: () => false }))).toMatchObject({ ok: false, components: { oci: { ok: false, ttrpc: 'down' } } });
    expect(healthReport(probes({ fri: () => false }))).toMatchObject({ ok: false, components: { fri: { ok: false, grpc: 'down' } } });
    expect(healthReport(probes({ fri: () => { throw new Error('x'); } }))).toMatchObject({ ok: false, components: { fri: { ok: false } } });
    const noPython = healthReport(probes({ seeds: () => SEEDS.slice(0, 2) }));
    expect(noPython).toMatchObject({ ok: false, components: { seeds: { ok: false, node: 'ready', python: 'missing' } } });
    expect(componentStates(noPython)).toMatchObject({ seed_node: true, seed_python: false });
    const failed = healthReport(probes({ seeds: () => [SEEDS[0] as SeedInfo, seed('n', 1, 'node', 'failed'), SEEDS[2] as SeedInfo] }));
    expect(failed.components.seeds).toEqual({ ok: false, node: 'failed', python: 'ready' });
    // "ready" but its process is gone
    const dead = healthReport(probes({ seeds: () => [SEEDS[0] as SeedInfo, seed('n', 1, 'node', 'ready', 0x3fffffff), SEEDS[2] as SeedInfo] }));
    expect(dead.components.seeds.node).toBe('dead');
    expect(healthReport(probes({ seeds: () => [] })).components.seeds).toEqual({ ok: false, node: 'missing', python: 'missing' });
  });

  it('a containers-only node (--fri off): FRI and the seeds are "off", health is the OCI path\'s, and off components are no series', () => {
    const off = (over: Partial<HealthProbes> = {}) => healthReport(probes({ fri: () => false, seeds: () => [], functionsOff: true, ...over }));
    expect(off()).toEqual({
      ok: true,
      components: { oci: { ok: true, process_seed: 'alive', ttrpc: 'listening' }, fri: { ok: true, grpc: 'off' }, seeds: { ok: true, node: 'off', python: 'off' } },
    });
    expect(componentStates(off())).toEqual({ process_seed: true, ttrpc: true });
    expect(off({ ttrpc: () => false })).toMatchObject({ ok: false, components: { oci: { ok: false, ttrpc: 'down' } } });
    expect(componentStates(off({ processSeed: () => false }))).toEqual({ process_seed: false, ttrpc: true });
  });

  it('pidAlive', () => {
    expect(pidAlive(process.pid)).toBe(true);
    expect(pidAlive(0)).toBe(false);
    expect(pidAlive(0x3fffffff)).toBe(false);
  });
});
