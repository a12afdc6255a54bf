// daemon/metrics.ts: the Prometheus families spored exposes at GET /metrics, over the in-memory
// FakeRuntime and fake sources (pools, seeds, containers, health).
import { describe, expect, it } from 'vitest';
import { Internal, InvalidArgument, NotFound, Overloaded } from '../sys/errors.js';
import { Metrics, OUTCOMES, instrument, outcomeOfThrown } from '../daemon/metrics.js';
import type { FunctionRuntime, InvokeResult } from '../protocols/fri/types.js';
import { FakeRuntime } from './fake-runtime.js';
import { setProcsWritesFast } from '../pools/cgroups.js';

/** The value of one sample line `name{labels} value` in the exposition text. */
function sample(text: string, name: string, labels: Record<string, string>): number | undefined {
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !(want.length === 0 && line.startsWith(`${name} `))) continue;
    const m = /^([^{ ]+)(?:\{([^}]*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got = (m[2] ?? '').split(',').filter(Boolean);
    if (want.every((w) => got.includes(w)) && got.length === want.length) return Number(m[3]);
  }
  return undefined;
}

const spec = (name: string, code: string) => ({ name, language: 'node' as const, code, handler: 'handler', memoryMiB: 128, timeoutMs: 3000, env: {} });

describe('Metrics', () => {
  it('counts invocations by function and outcome through the instrumented runtime, and observes phases in seconds', async () => {
    const rt = new FakeRuntime();
    for (const [n, c] of [['ok', 'echo'], ['bad', 'throw'], ['slow', 'timeout'], ['fat', 'oom'], ['busy', 'busy'], ['boom', 'explode']]) await rt.deploy(spec(n as string, c as string));
    const m = new Metrics({ defaultMetrics: false });
    const irt = instrument(rt, m);
    await irt.invoke('ok', '{}');
    await irt.invoke('ok', '{}');
    await irt.invoke('bad', '{}');
    await irt.invoke('slow', '{}');
    await irt.invoke('fat', '{}');
    await expect(irt.invoke('busy', '{}')).rejects.toBeInstanceOf(Overloaded);
    await expect(irt.invoke('boom', '{}')).rejects.toThrow('kaboom');
    await expect(irt.invoke('nope', '{}')).rejects.toBeInstanceOf(NotFound);
    const t = await m.text();
    expect(sample(t, 'spore_invocations_total', { function: 'ok', outcome: 'ok' })).toBe(2);
    expect(sample(t, 'spore_invocations_total', { function: 'bad', outcome: 'handler' })).toBe(1);
    expect(sample(t, 'spore_invocations_total', { function: 'slow', outcome: 'timeout' })).toBe(1);
    expect(sample(t, 'spore_invocations_total', { function: 'fat', outcome: 'oom' })).toBe(1);
    expect(sample(t, 'spore_invocations_total', { function: 'busy', outcome: 'rejected' })).toBe(1);
    expect(sample(t, 'spore_invocations_total', { function: 'boom', outcome: 'internal' })).toBe(1);
    // an unknown name is the caller's mistake, not an invocation: no series for it
    expect(t).not.toContain('function="nope"');
    // 5 results reached an instance; FAKE_TIMINGS.fork = 1200 µs -> 0.0012 s
    expect(sample(t, 'spore_phase_seconds_count', { phase: 'fork' })).toBe(5);
    expect(sample(t, 'spore_phase_seconds_sum', { phase: 'fork' })).toBeCloseTo(5 * 0.0012, 9);
    expect(sample(t, 'spore_phase_seconds_bucket', { phase: 'fork', le: '0.001' })).toBe(0);
    expect(sample(t, 'spore_phase_seconds_bucket', { phase: 'fork', le: '0.0025' })).toBe(5);
    for (const p of ['control', 'fork', 'bind', 'seccomp', 'init', 'execute', 'respond', 'destroy', 'total']) {
      expect(sample(t, 'spore_phase_seconds_count', { phase: p }), p).toBe(5);
    }
    // removing a function ends its series
    await irt.remove('bad');
    expect(await m.text()).not.toContain('function="bad"');
  });

  it('a phase an engine does not have (0) is not observed; activate counts by the instance\'s function', async () => {
    const m = new Metrics({ defaultMetrics: false });
    const zero: InvokeResult = {
      ok: true, result: '1', error: null, function: 'vmf', seedId: 's', seedLevel: 2, instanceId: 'i',
      timings: { control: 10, fork: 300, bind: 0, seccomp: 0, init: 0, execute: 900, respond: 8, destroy: 0, total: 1300 },
    };
    m.observeResult('vmf', zero);
    const t = await m.text();
    expect(sample(t, 'spore_phase_seconds_count', { phase: 'fork' })).toBe(1);
    expect(sample(t, 'spore_phase_seconds_count', { phase: 'bind' })).toBeUndefined();

    const rt = new FakeRuntime();
    const seed = await rt.create('process');
    const fnSeed = await rt.fork(seed.id, { kind: 'seed', function: 'f', language: 'node' });
    const inst = await rt.fork(fnSeed.id, { kind: 'instance' });
    const m2 = new Metrics({ defaultMetrics: false });
    await instrument(rt, m2).activate(inst.id, '{}');
    expect(sample(await m2.text(), 'spore_invocations_total', { function: 'f', outcome: 'ok' })).toBe(1);
  });

  it('classifies thrown errors: RESOURCE_EXHAUSTED rejected, spore failures internal, caller mistakes not counted', () => {
    expect(outcomeOfThrown(new Overloaded('x'))).toBe('rejected');
    expect(outcomeOfThrown(new Internal('x'))).toBe('internal');
    expect(outcomeOfThrown(new Error('x'))).toBe('internal');
    expect(outcomeOfThrown(new NotFound('x'))).toBeNull();
    expect(outcomeOfThrown(new InvalidArgument('x'))).toBeNull();
    expect(OUTCOMES).toEqual(['ok', 'handler', 'load', 'timeout', 'oom', 'crash', 'internal', 'rejected']);
  });

  it('RPC latency by service, method and code', async () => {
    const m = new Metrics({ defaultMetrics: false });
    m.observeRpc('ttrpc', 'Create', 0.004, 0);
    m.observeRpc('fri', 'Invoke', 0.002, 8);
    const t = await m.text();
    expect(sample(t, 'spore_rpc_seconds_count', { service: 'ttrpc', method: 'Create', code: 'OK' })).toBe(1);
    expect(sample(t, 'spore_rpc_seconds_count', { service: 'fri', method: 'Invoke', code: 'RESOURCE_EXHAUSTED' })).toBe(1);
    expect(sample(t, 'spore_rpc_seconds_bucket', { service: 'ttrpc', method: 'Create', code: 'OK', le: '0.005' })).toBe(1);
  });

  it('OCI hooks by kind and outcome, fed by the hook runner itself', async () => {
    const { runHooks, runHooksAll } = await import('../task/hooks.js');
    const m = new Metrics({ defaultMetrics: false });
    const observe = m.observeHook.bind(m);
    const state = { ociVersion: '1.0.2', id: 'c', status: 'creating' as const, pid: 1, bundle: '/' };
    const hook = (script: string, timeout: number | null = null) => ({ path: '/bin/sh', args: ['sh', '-c', script], env: null, timeout });
    await runHooks('prestart', [hook('exit 0'), hook('exit 0')], state, '/', observe);
    await expect(runHooks('createRuntime', [hook('exec sleep 5', 1)], state, '/', observe)).rejects.toThrow(/timeout/);
    expect(await runHooksAll('poststop', [hook('exit 2'), hook('exit 0')], state, '/', observe)).toHaveLength(1);
    const t = await m.text();
    expect(sample(t, 'spore_oci_hook_seconds_count', { kind: 'prestart', outcome: 'ok' })).toBe(2);
    expect(sample(t, 'spore_oci_hook_seconds_count', { kind: 'createRuntime', outcome: 'timeout' })).toBe(1);
    expect(sample(t, 'spore_oci_hook_seconds_count', { kind: 'poststop', outcome: 'failed' })).toBe(1);
    expect(sample(t, 'spore_oci_hook_seconds_count', { kind: 'poststop', outcome: 'ok' })).toBe(1);
    expect(sample(t, 'spore_oci_hook_seconds_sum', { kind: 'createRuntime', outcome: 'timeout' })).toBeGreaterThanOrEqual(0.99);
  });

  it('gauges read pools, seeds, instances, containers and component health at scrape time', async () => {
    const rt = new FakeRuntime();
    const l0 = await rt.create('process');
    const l1 = await rt.fork(l0.id, { kind: 'seed', language: 'node' });
    await rt.fork(l1.id, { kind: 'seed', function: 'f', language: 'node' });
    const failed = await rt.fork(l1.id, { kind: 'seed', function: 'g', language: 'node' });
    if ('level' in failed) failed.state = 'failed';
    await rt.fork(l1.id, { kind: 'instance' });
    let pools = { cgroups: { free: 30, inUse: 2, created: 32 }, functions: { 'hello@1': { concurrency: 8, inUse: 3, waiting: 5, dirty: 1, broken: 0 }, 'a@b@2': { slots: 4, inUse: 0, waiting: 0 } } as Record<string, unknown> };
    const m = new Metrics({ defaultMetrics: false });
    m.setFunctionSources({ pools: () => pools, listSeeds: () => rt.listSeeds(), listInstances: () => rt.listInstances() });
    const containers = [
      { init: { status: 'running' } }, { init: { status: 'running' } },
      { init: { status: 'paused' } }, { init: { status: 'stopped' } },
    ];
    m.setContainerSource(() => containers);
    m.setComponentSource(async () => ({ ttrpc: true, seed_python: false }));
    let t = await m.text();
    expect(sample(t, 'spore_cgroup_pool_cgroups', { state: 'free' })).toBe(30);
    expect(sample(t, 'spore_cgroup_pool_cgroups', { state: 'in_use' })).toBe(2);
    expect(sample(t, 'spore_function_slots', { function: 'hello', version: '1', state: 'in_use' })).toBe(3);
    expect(sample(t, 'spore_function_slots', { function: 'hello', version: '1', state: 'free' })).toBe(5);
    expect(sample(t, 'spore_function_callers_waiting', { function: 'hello', version: '1' })).toBe(5);
    expect(sample(t, 'spore_function_slots', { function: 'a@b', version: '2', state: 'free' })).toBe(4);
    expect(sample(t, 'spore_seeds', { engine: 'process', level: '0', state: 'ready' })).toBe(1);
    expect(sample(t, 'spore_seeds', { engine: 'process', level: '1', state: 'ready' })).toBe(1);
    expect(sample(t, 'spore_seeds', { engine: 'process', level: '2', state: 'ready' })).toBe(1);
    expect(sample(t, 'spore_seeds', { engine: 'process', level: '2', state: 'failed' })).toBe(1);
    // FakeRuntime seeds: privateKiB 2048, sharedKiB 88000, pssKiB 40000 each; two L2 seeds
    expect(sample(t, 'spore_seed_memory_bytes', { level: '2', kind: 'private' })).toBe(2 * 2048 * 1024);
    expect(sample(t, 'spore_seed_memory_bytes', { level: '2', kind: 'shared' })).toBe(2 * 88000 * 1024);
    expect(sample(t, 'spore_seed_memory_bytes', { level: '0', kind: 'pss' })).toBe(40000 * 1024);
    expect(sample(t, 'spore_instances', { state: 'paused' })).toBe(1);
    expect(sample(t, 'spore_instances', { state: 'running' })).toBe(0);
    expect(sample(t, 'spore_containers', { state: 'running' })).toBe(2);
    expect(sample(t, 'spore_containers', { state: 'paused' })).toBe(1);
    expect(sample(t, 'spore_containers', { state: 'stopped' })).toBe(1);
    expect(sample(t, 'spore_containers', { state: 'created' })).toBe(0);
    expect(sample(t, 'spore_component_up', { component: 'ttrpc' })).toBe(1);
    expect(sample(t, 'spore_component_up', { component: 'seed_python' })).toBe(0);
    setProcsWritesFast(true);
    expect(sample(await m.text(), 'spore_cgroup_favordynmods', {})).toBe(1);
    setProcsWritesFast(false);
    expect(sample(await m.text(), 'spore_cgroup_favordynmods', {})).toBe(0);
    // a version that is gone disappears from the next scrape
    pools = { cgroups: { free: 32, inUse: 0, created: 32 }, functions: {} };
    t = await m.text();
    expect(t).not.toContain('function="hello"');
  });

  it('without sources the gauges are empty, and prom-client\'s process metrics are on by default', async () => {
    const bare = await new Metrics({ defaultMetrics: false }).text();
    expect(bare).toContain('# TYPE spore_seeds gauge');
    expect(sample(bare, 'spore_seeds', { engine: 'process', level: '0', state: 'ready' })).toBeUndefined();
    const full = new Metrics();
    const t = await full.text();
    expect(t).toMatch(/^process_cpu_user_seconds_total \d/m);
    expect(t).toMatch(/^process_resident_memory_bytes \d/m);
    expect(t).toMatch(/^nodejs_heap_size_used_bytes \d/m);
    expect(full.contentType).toMatch(/^text\/plain; version=0\.0\.4/);
  });

  it('the instrumented runtime passes everything else through', async () => {
    const rt = new FakeRuntime();
    const irt: FunctionRuntime = instrument(rt, new Metrics({ defaultMetrics: false }));
    const info = await irt.deploy(spec('x', 'echo'));
    expect(info.name).toBe('x');
    expect(irt.listFunctions().map((f) => f.name)).toEqual(['x']);
    rt.logText.set('x', 'hi\n');
    expect(await irt.logs('x')).toBe('hi\n');
    expect((await irt.create('process')).level).toBe(0);
    expect(irt.listSeeds().length).toBe(1);
  });
});
