// Parked instances (functions/parking.ts): instances forked before calls arrive. A call takes
// one (parked: true, no fork on its path), each is used once and is a fresh sandbox, its
// timeout starts at activation, lots refill and shrink with traffic, and a retired or
// removed version gives everything back.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SeedClient } from '../dist/engines/process/seed-client.js';
import { ProcessFunctionRuntime } from '../dist/functions/runtime.js';
import { detectCgroupLayout } from '../dist/pools/cgroups.js';
import type { FunctionSpec } from '../dist/protocols/fri/types.js';

const root = process.getuid?.() === 0;
if (!root) console.warn('[parked.test] skipped: needs root (function sandboxes)');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const spec = (name: string, code: string, o: Partial<FunctionSpec> = {}): FunctionSpec => ({ name, language: 'node', code, handler: 'handler', memoryMiB: 128, timeoutMs: 5000, env: {}, ...o });
const FRESH = `const fs = require('fs');
exports.handler = async (e) => {
  let before = null; try { before = fs.readFileSync('/tmp/mark', 'utf8'); } catch {}
  fs.writeFileSync('/tmp/mark', String(e.n));
  if (e.ms) await new Promise((r) => setTimeout(r, e.ms));
  return { before, r: Math.random() };
};`;

describe.skipIf(!root)('parked instances', () => {
  let dir: string;
  let l0: SeedClient;
  let fixed: ProcessFunctionRuntime;
  let auto: ProcessFunctionRuntime;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'spore-parked-'));
    l0 = new SeedClient();
    await l0.start();
    const common = { layout: detectCgroupLayout(), l0, log: pino({ level: process.env.SPORE_TEST_LOG ?? 'silent' }), cgroupPoolSize: 8, slotsPerFunction: 8, l2Replicas: 1 };
    const { mkdirSync } = await import('node:fs');
    for (const d of ['fixed', 'auto']) mkdirSync(join(dir, d), { recursive: true });
    fixed = new ProcessFunctionRuntime({ ...common, runDir: join(dir, 'fixed'), stateDir: join(dir, 'fixed-state'), parked: 2, cgroupParent: `/spore/fri-${process.pid}-parked-fixed` });
    auto = new ProcessFunctionRuntime({ ...common, runDir: join(dir, 'auto'), stateDir: join(dir, 'auto-state'), parked: 'auto', parkedIdleMs: 1500, cgroupParent: `/spore/fri-${process.pid}-parked-auto` });
    await fixed.start();
    await auto.start();
  }, 60_000);

  afterAll(async () => {
    await fixed?.stop();
    await auto?.stop();
    await l0?.stop();
    rmSync(dir, { recursive: true, force: true });
  }, 30_000);

  const parkedOf = (rt: ProcessFunctionRuntime, fn: string) => rt.listInstances().filter((i) => i.function === fn && i.state === 'paused');
  const until = async (f: () => boolean, ms = 5000): Promise<void> => { const t = Date.now() + ms; while (!f()) { if (Date.now() > t) throw new Error('timed out'); await sleep(25); } };

  it('a call takes a parked instance (no fork on its path), each is used once, the lot refills', async () => {
    await fixed.deploy(spec('fresh', FRESH));
    const first = await fixed.invoke('fresh', JSON.stringify({ n: 0 }));
    expect(first.ok).toBe(true);
    await until(() => parkedOf(fixed, 'fresh').length === 2);
    const waiting = parkedOf(fixed, 'fresh').map((i) => i.id);
    const seen = new Set<string>();
    const randoms = new Set<number>();
    for (let n = 1; n <= 6; n++) {
      const r = await fixed.invoke('fresh', JSON.stringify({ n }));
      expect(r.ok, JSON.stringify(r.error)).toBe(true);
      expect(seen.has(r.instanceId)).toBe(false); // used once
      seen.add(r.instanceId);
      const v = JSON.parse(r.result ?? '{}') as { before: string | null; r: number };
      expect(v.before).toBeNull(); // a fresh /tmp: no earlier call's file
      randoms.add(v.r);
      // the phases add up to the call's total; a parked instance's fork, bind and start-up
      // happened before the call and are not in it
      const t = r.timings;
      expect(Math.abs(t.control + t.fork + t.bind + t.seccomp + t.init + t.execute + t.respond - t.total)).toBeLessThanOrEqual(3);
      if (r.parked) expect([t.fork, t.bind, t.seccomp, t.init]).toEqual([0, 0, 0, 0]);
      await until(() => parkedOf(fixed, 'fresh').length === 2);
    }
    expect(randoms.size).toBe(6); // uniqueness state re-initialized per instance
    // the lot is not calls in flight (a redeploy said "2 in flight" for one call)
    expect(parkedOf(fixed, 'fresh').length).toBe(2);
    expect(fixed.listFunctions().find((f) => f.name === 'fresh')?.versions.map((v) => v.inflight)).toEqual([0]);
    const used = [...seen];
    expect(used.some((id) => waiting.includes(id))).toBe(true);
  }, 60_000);

  it('a parked instance\'s timeout starts when its call arrives, not when it was forked', async () => {
    await fixed.deploy(spec('short', FRESH, { timeoutMs: 300 }));
    await fixed.invoke('short', JSON.stringify({ n: 0 }));
    await until(() => parkedOf(fixed, 'short').length === 2);
    await sleep(700); // parked longer than the timeout
    const r = await fixed.invoke('short', JSON.stringify({ n: 1, ms: 150 }));
    expect(r.parked).toBe(true);
    expect(r.ok, JSON.stringify(r.error)).toBe(true);
    const slow = await fixed.invoke('short', JSON.stringify({ n: 2, ms: 600 }));
    expect(slow.error?.kind).toBe('timeout');
    // the handler's time, not the answer's: about its timeout of 300 ms
    expect(slow.timings.execute).toBeGreaterThanOrEqual(280_000);
    expect(slow.timings.respond).toBe(0);
  }, 60_000);

  it('a parked instance whose handler throws reports the handler\'s time, not the time it waited parked', async () => {
    await fixed.deploy(spec('throws', 'module.exports.handler = async () => { throw new Error("no"); };'));
    await fixed.invoke('throws', '{}');
    await until(() => parkedOf(fixed, 'throws').length === 2);
    await sleep(300); // parked a while
    const r = await fixed.invoke('throws', '{}');
    expect(r.parked).toBe(true);
    expect(r.error?.kind).toBe('handler');
    expect(r.timings.execute).toBeLessThan(100_000);
    expect(r.timings.execute).toBeLessThanOrEqual(r.timings.total);
    await fixed.remove('throws');
  }, 60_000);

  it('a redeploy drains the old version\'s lot; a removal gives every slot and cgroup back', async () => {
    await until(() => parkedOf(fixed, 'fresh').length === 2);
    const old = parkedOf(fixed, 'fresh').map((i) => i.id);
    await fixed.deploy(spec('fresh', FRESH.replace('Math.random()', '-Math.random()')));
    await until(() => old.every((id) => !fixed.listInstances().some((i) => i.id === id)));
    await fixed.invoke('fresh', JSON.stringify({ n: 9 }));
    await until(() => parkedOf(fixed, 'fresh').length === 2);
    await fixed.remove('fresh');
    await fixed.remove('short');
    await until(() => fixed.listInstances().length === 0);
    const inUse = () => (fixed.pools() as { cgroups: { inUse: number } }).cgroups.inUse;
    await until(() => inUse() === 0).catch(() => undefined);
    expect(inUse()).toBe(0);
  }, 60_000);

  it('auto: none for a function never called, some once it is called, none again once it goes idle', async () => {
    await auto.deploy(spec('a', FRESH));
    await sleep(500);
    expect(parkedOf(auto, 'a')).toHaveLength(0);
    await Promise.all([auto.invoke('a', '{"n":1}'), auto.invoke('a', '{"n":2}'), auto.invoke('a', '{"n":3}')]);
    await until(() => parkedOf(auto, 'a').length >= 1);
    const r = await auto.invoke('a', '{"n":4}');
    expect(r.ok).toBe(true);
    await until(() => parkedOf(auto, 'a').length === 0, 8000); // idle past parkedIdleMs
  }, 60_000);
});
