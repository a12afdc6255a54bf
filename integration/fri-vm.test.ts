// The vm engine behind the FRI on the real /dev/kvm: create("vm") boots the root seed guest,
// vm functions invoke in forked microVMs, Fork/Activate/Destroy on vm instances, typed errors;
// then the same through spored's wiring (CompositeFunctionRuntime over the real process runtime,
// FRI gRPC on a unix socket) and the `spore` CLI binary.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { testLogger } from './test-log.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kvmUnavailableReason } from '../dist/sys/kvm.js';
import { VmFunctions, VM_MAX_EVENT_BYTES } from '../dist/functions/vm-functions.js';
import { CompositeFunctionRuntime } from '../dist/functions/composite.js';
import { ProcessFunctionRuntime } from '../dist/functions/runtime.js';
import { SeedClient } from '../dist/engines/process/seed-client.js';
import { detectCgroupLayout } from '../dist/pools/cgroups.js';
import { FriClient, startFri, type FriHandle } from '../dist/daemon/fri.js';
import type { FunctionSpec, InstanceInfo, InvokeResult } from '../protocols/fri/types.js';

const why = kvmUnavailableReason();
if (why) console.warn(`[fri-vm.test] skipped: ${why}`);
const root = process.getuid?.() === 0;

const vmSpec = (name: string, extra: Partial<FunctionSpec> = {}): FunctionSpec => ({
  name, language: 'vm', code: '', handler: 'handler', memoryMiB: 128, timeoutMs: 3000, env: {}, ...extra,
});
interface VmResult { checksum: string; random: string; instance: string; served: number; bytes: number }
const value = (r: InvokeResult): VmResult => {
  if (!r.ok) throw new Error(`invoke failed: ${JSON.stringify(r.error)}`);
  return JSON.parse(r.result ?? 'null') as VmResult;
};

describe.skipIf(why !== null)('vm engine through the FRI runtime', () => {
  let vm: VmFunctions;
  beforeAll(() => { vm = new VmFunctions({ log: testLogger(), engine: { threads: 2, shellPool: 4 } }); });
  afterAll(async () => { await vm?.close(); });

  it('create("vm") boots a ready level-0 root seed; idempotent', async () => {
    expect(vm.listSeeds()).toEqual([]);
    const s = await vm.create('vm');
    expect(s).toMatchObject({ id: 'l0-vm', level: 0, engine: 'vm', language: null, parent: null, state: 'ready' });
    expect(s.initMs).toBeGreaterThan(0);
    expect((await vm.create('vm')).createdAt).toBe(s.createdAt);
    await expect(vm.create('process')).rejects.toMatchObject({ name: 'InvalidArgument' });
  }, 60_000);

  it('deploys a vm function and invokes it in a fresh fork each time', async () => {
    const f = await vm.deploy(vmSpec('vmf'));
    expect(f).toMatchObject({ name: 'vmf', language: 'vm', seedId: 'l0-vm', codeBytes: 0, memoryMiB: 16 });
    const event = JSON.stringify({ name: 'spore' });
    const a = await vm.invoke('vmf', event);
    const b = await vm.invoke('vmf', event);
    const ra = value(a), rb = value(b);
    expect(ra.checksum).toMatch(/^0x[0-9a-f]{16}$/);
    expect(ra.bytes).toBe(event.length);
    expect(ra.served).toBe(1);
    expect(rb.checksum).toBe(ra.checksum); // same event, same seed state
    expect(rb.instance).not.toBe(ra.instance); // fresh identity per fork
    expect(rb.random).not.toBe(ra.random); // fresh entropy per fork
    expect(a.instanceId).not.toBe(b.instanceId);
    expect(a).toMatchObject({ function: 'vmf', seedId: 'l0-vm', seedLevel: 0 });
    expect(a.timings.fork).toBeGreaterThan(0);
    expect(a.timings.execute).toBeGreaterThan(0);
    expect(a.timings.total).toBeGreaterThanOrEqual(a.timings.fork + a.timings.execute);
    expect(value(await vm.invoke('vmf', JSON.stringify({ name: 'other' }))).checksum).not.toBe(ra.checksum);
    expect(vm.listInstances()).toEqual([]); // early destroy
    expect(vm.listFunctions()[0]?.invocations).toBe(3);
    const lat: number[] = [];
    for (let i = 0; i < 200; i++) {
      const t0 = performance.now();
      value(await vm.invoke('vmf', event));
      lat.push((performance.now() - t0) * 1000);
    }
    lat.sort((x, y) => x - y);
    console.log(`[fri-vm.test] VmFunctions.invoke x200: p50 ${Math.round(lat[100]!)} µs, p99 ${Math.round(lat[198]!)} µs; last timings ${JSON.stringify((await vm.invoke('vmf', event)).timings)}`);
  }, 60_000);

  it('fork(root, instance) is paused until activate; activate once; destroy', async () => {
    const inst = await vm.fork('l0-vm', { kind: 'instance' }) as InstanceInfo;
    expect(inst).toMatchObject({ seedId: 'l0-vm', state: 'paused', function: null });
    expect(vm.listInstances().map((i) => i.id)).toEqual([inst.id]);
    const [r, twice] = await Promise.allSettled([vm.activate(inst.id, '{"x":1}'), vm.activate(inst.id, '{}')]);
    expect(twice).toMatchObject({ status: 'rejected', reason: { name: 'FailedPrecondition' } });
    expect(r.status).toBe('fulfilled');
    const res = (r as PromiseFulfilledResult<InvokeResult>).value;
    expect(value(res).bytes).toBe(7);
    expect(res.instanceId).toBe(inst.id);
    expect(res.timings.fork).toBeGreaterThan(0);
    await expect(vm.activate(inst.id, '{}')).rejects.toMatchObject({ name: 'NotFound' }); // destroyed after its response

    const other = await vm.fork('l0-vm', { kind: 'instance' }) as InstanceInfo;
    await vm.destroy(other.id);
    expect(vm.listInstances()).toEqual([]);
    await expect(vm.activate(other.id, '{}')).rejects.toMatchObject({ name: 'NotFound' });
    await expect(vm.destroy(other.id)).rejects.toMatchObject({ name: 'NotFound' });
  });

  it('typed errors for bad input', async () => {
    await expect(vm.fork('no-such-seed', { kind: 'instance' })).rejects.toMatchObject({ name: 'NotFound' });
    await expect(vm.fork('l0-vm', { kind: 'seed' })).rejects.toMatchObject({ name: 'Unimplemented', message: expect.stringMatching(/no child seeds/) });
    await expect(vm.invoke('nope', '{}')).rejects.toMatchObject({ name: 'NotFound' });
    await expect(vm.invoke('vmf', '{}', { level: 2 })).rejects.toMatchObject({ name: 'FailedPrecondition' });
    await expect(vm.invoke('vmf', JSON.stringify('x'.repeat(VM_MAX_EVENT_BYTES)))).rejects.toMatchObject({ name: 'ResourceExhausted' });
    await expect(vm.deploy(vmSpec('vmf'))).rejects.toMatchObject({ name: 'AlreadyExists' });
    await expect(vm.deploy(vmSpec('withcode', { code: 'module.exports = 1' }))).rejects.toMatchObject({ name: 'InvalidArgument' });
    await expect(vm.deleteSeed('l0-vm')).rejects.toMatchObject({ name: 'FailedPrecondition' });
    expect(vm.listSeeds()[0]!.forks).toBeGreaterThan(200);
    await vm.remove('vmf');
    await expect(vm.invoke('vmf', '{}')).rejects.toMatchObject({ name: 'NotFound' });
    expect(vm.listInstances()).toEqual([]);
  });
});

describe.skipIf(why !== null || !root)('vm engine through spored wiring: FRI gRPC + spore CLI', () => {
  const run = promisify(execFile);
  const spore = fileURLToPath(new URL('../bin/spore', import.meta.url));
  let dir: string;
  let l0: SeedClient;
  let proc: ProcessFunctionRuntime;
  let vm: VmFunctions;
  let fri: FriHandle;
  const cli = async (...args: string[]): Promise<{ stdout: string; stderr: string; code: number }> => {
    try {
      const r = await run(spore, ['--socket', fri.socket, ...args]);
      return { ...r, code: 0 };
    } catch (e) {
      const x = e as { stdout: string; stderr: string; code: number };
      return { stdout: x.stdout, stderr: x.stderr, code: x.code };
    }
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'spore-fri-vm-'));
    const log = testLogger();
    l0 = new SeedClient();
    await l0.start();
    proc = new ProcessFunctionRuntime({ runDir: dir, stateDir: join(dir, 'state'), layout: detectCgroupLayout(), l0, log, cgroupPoolSize: 4 });
    await proc.start();
    vm = new VmFunctions({ log, engine: { threads: 2, shellPool: 4 } });
    fri = await startFri(new CompositeFunctionRuntime(proc, vm), { friSocket: join(dir, 'fri.sock'), gatewayAddress: '127.0.0.1:0' }, log);
  }, 60_000);

  afterAll(async () => {
    await fri?.close();
    await proc?.stop();
    await vm?.close();
    await l0?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('spore deploy --runtime vm, invoke, seeds: both engines side by side', async () => {
    const d = await cli('deploy', 'vmf', '--runtime', 'vm', '--json');
    expect(d.code, d.stderr).toBe(0);
    expect(JSON.parse(d.stdout)).toMatchObject({ name: 'vmf', language: 'vm', seedId: 'l0-vm' });
    const inv = await cli('invoke', 'vmf', '--data', '{"name":"spore"}', '--json');
    expect(inv.code, inv.stderr).toBe(0);
    const r = JSON.parse(inv.stdout) as { ok: boolean; result: VmResult; seedLevel: number; timings: { fork: number; total: number } };
    expect(r.ok).toBe(true);
    expect(r.result.bytes).toBe(16);
    expect(r.seedLevel).toBe(0);
    expect(r.timings.fork).toBeGreaterThan(0);
    const human = await cli('invoke', 'vmf', '--data', '{"name":"spore"}');
    expect(human.code, human.stderr).toBe(0);
    expect(human.stdout).toContain(r.result.checksum);
    const seeds = JSON.parse((await cli('seeds', '--json')).stdout) as { id: string; engine: string; level: number }[];
    expect(seeds.find((s) => s.id === 'l0-vm')).toMatchObject({ engine: 'vm', level: 0 });
    expect(seeds.find((s) => s.id === 'l0-process')).toMatchObject({ engine: 'process', level: 0 });
    const fns = JSON.parse((await cli('functions', '--json')).stdout) as { name: string; language: string }[];
    expect(fns).toContainEqual(expect.objectContaining({ name: 'vmf', language: 'vm' }));
    // names are unique across engines; a node function next to it still runs on the process engine
    const clash = await cli('deploy', 'vmf', '--runtime', 'vm');
    expect(clash.code).not.toBe(0);
    expect(clash.stderr).toMatch(/already exists/);
    const usage = await cli('deploy', 'vmg', '--runtime', 'vm', '--file', spore);
    expect(usage.code).toBe(2);
    // latency of one vm invocation over FRI gRPC (unix socket), as a client sees it
    const c = await FriClient.connect(fri.socket);
    try {
      const lat: number[] = [];
      let last: InvokeResult | null = null;
      for (let i = 0; i < 210; i++) {
        const t0 = performance.now();
        last = await c.invoke('vmf', '{"name":"spore"}');
        if (i >= 10) lat.push((performance.now() - t0) * 1000);
        expect(last.ok).toBe(true);
      }
      lat.sort((x, y) => x - y);
      console.log(`[fri-vm.test] FRI gRPC Invoke(vmf) x200: p50 ${Math.round(lat[100]!)} µs, p99 ${Math.round(lat[198]!)} µs; server timings ${JSON.stringify(last?.timings)}`);
    } finally {
      c.close();
    }
    expect((await cli('rm', 'vmf')).code).toBe(0);
    expect((await cli('invoke', 'vmf')).code).not.toBe(0);
  }, 60_000);
});
