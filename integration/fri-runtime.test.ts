// The process engine's function runtime on the real kernel: seed tree, instances, pools,
// failure modes and leaks. Transport-free (the gRPC/CLI path has its own tests).
import { closeSync, mkdtempSync, openSync, readdirSync, readFileSync, readlinkSync, rmSync, writeSync } from 'node:fs';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SeedClient } from '../dist/runtime/engines/process/seed-client.js';
import { ProcessFunctionRuntime } from '../dist/seeds/runtime.js';
import { detectCgroupLayout } from '../dist/pools/cgroups.js';
import type { FunctionSpec, InvokeResult } from '../runtime/fri/types.js';

const root = process.getuid?.() === 0;
if (!root) console.warn('[fri-runtime.test] skipped: needs root (cgroups, namespaces)');

const examples = fileURLToPath(new URL('../examples', import.meta.url));
const spec = (name: string, language: 'node' | 'python', code: string, extra: Partial<FunctionSpec> = {}): FunctionSpec => ({
  name, language, code, handler: 'handler', memoryMiB: 128, timeoutMs: 5000, env: {}, ...extra,
});
const value = (r: InvokeResult): unknown => {
  if (!r.ok) throw new Error(`invoke failed: ${JSON.stringify(r.error)}`);
  return JSON.parse(r.result ?? 'null');
};

function seedChildren(rt: ProcessFunctionRuntime): number {
  let n = 0;
  const seedPids = new Set(rt.listSeeds().map((s) => s.pid));
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const ppid = Number(/^PPid:\s+(\d+)/m.exec(readFileSync(`/proc/${d}/status`, 'utf8'))?.[1]);
      if (seedPids.has(ppid) && !seedPids.has(Number(d))) n++;
    } catch { /* gone */ }
  }
  return n;
}

describe.skipIf(!root)('process function runtime', () => {
  let dir: string;
  let l0: SeedClient;
  let rt: ProcessFunctionRuntime;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'spore-fri-'));
    l0 = new SeedClient();
    await l0.start();
    rt = new ProcessFunctionRuntime({ runDir: dir, layout: detectCgroupLayout(), l0, log: pino({ level: process.env.SPORE_TEST_LOG ?? 'warn' }), cgroupPoolSize: 8, netnsPoolSize: 8 });
    await rt.start();
  }, 60_000);

  afterAll(async () => {
    await rt?.stop();
    await l0?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('builds the tree: L0 root, L1 node and python seeds, ready', () => {
    const seeds = rt.listSeeds();
    expect(seeds.find((s) => s.level === 0)?.state).toBe('ready');
    expect(seeds.filter((s) => s.level === 1 && s.state === 'ready').map((s) => s.language).sort()).toEqual(['node', 'python']);
  });

  it('deploys and invokes node and python functions from their L2 seeds', async () => {
    const node = await rt.deploy(spec('hello', 'node', readFileSync(join(examples, 'hello.js'), 'utf8')));
    expect(node.seedId).toMatch(/^l2-hello-/);
    const r = await rt.invoke('hello', JSON.stringify({ name: 'spore' }));
    expect(value(r)).toEqual({ message: 'hello spore' });
    expect(r.seedLevel).toBe(2);
    expect(r.timings.total).toBeGreaterThan(0);
    expect(r.timings.fork).toBeGreaterThan(0);

    await rt.deploy(spec('hello-py', 'python', readFileSync(join(examples, 'hello.py'), 'utf8')));
    const p = await rt.invoke('hello-py', JSON.stringify({ name: 'py' }));
    expect(value(p)).toEqual({ message: 'hello py' });
    expect(p.seedLevel).toBe(2);
  });

  it('runs top-level code once per seed, not per invocation', async () => {
    await rt.deploy(spec('counter', 'node', 'let loads = 0; loads++; module.exports.handler = async () => ({ loads, pid: process.pid });', { env: { A: '1' } }));
    const a = value(await rt.invoke('counter', '{}')) as { loads: number; pid: number };
    const b = value(await rt.invoke('counter', '{}')) as { loads: number; pid: number };
    expect(a.loads).toBe(1);
    expect(b.loads).toBe(1);
    expect(a.pid).not.toBe(b.pid);
  });

  it('falls back to the L1 language seed, which loads the code in the instance', async () => {
    const r = await rt.invoke('hello', JSON.stringify({ name: 'l1' }), { level: 1 });
    expect(value(r)).toEqual({ message: 'hello l1' });
    expect(r.seedLevel).toBe(1);
  });

  it('never shares randomness between two forks (node and python)', async () => {
    await rt.deploy(spec('rand', 'node', "const c = require('node:crypto'); module.exports.handler = async () => ({ m: Math.random(), u: c.randomUUID(), b: c.randomBytes(8).toString('hex') });"));
    const [x, y] = await Promise.all([rt.invoke('rand', '{}'), rt.invoke('rand', '{}')]);
    const vx = value(x) as Record<string, unknown>;
    const vy = value(y) as Record<string, unknown>;
    expect(vx.m).not.toBe(vy.m);
    expect(vx.u).not.toBe(vy.u);
    expect(vx.b).not.toBe(vy.b);
    await rt.deploy(spec('rand-py', 'python', 'import random, uuid, os\ndef handler(e, c):\n    return {"r": random.random(), "u": str(uuid.uuid4()), "b": os.urandom(8).hex()}\n'));
    const [p, q] = await Promise.all([rt.invoke('rand-py', '{}'), rt.invoke('rand-py', '{}')]);
    const vp = value(p) as Record<string, unknown>;
    const vq = value(q) as Record<string, unknown>;
    expect(vp.r).not.toBe(vq.r);
    expect(vp.u).not.toBe(vq.u);
  });

  it('sandboxes instances: own netns, nobody, no capabilities, seccomp, memory limit', async () => {
    await rt.deploy(spec('probe', 'node', "const fs = require('fs'); module.exports.handler = async () => { const st = fs.readFileSync('/proc/self/status', 'utf8'); return { net: fs.readlinkSync('/proc/self/ns/net'), uid: process.getuid(), capeff: /CapEff:\\s+(\\S+)/.exec(st)[1], seccomp: /Seccomp:\\s+(\\d)/.exec(st)[1], nnp: /NoNewPrivs:\\s+(\\d)/.exec(st)[1] }; };"));
    const v = value(await rt.invoke('probe', '{}')) as Record<string, string | number>;
    expect(v.net).not.toBe(readlinkSync('/proc/self/ns/net'));
    expect(v.uid).toBe(65534);
    expect(v.capeff).toBe('0000000000000000');
    expect(v.seccomp).toBe('2');
    expect(v.nnp).toBe('1');
  });

  it('reports load errors at deploy, handler errors, timeouts and OOM — and the seed survives', async () => {
    await expect(rt.deploy(spec('broken', 'node', 'throw new Error("boom at load");'))).rejects.toThrow(/boom at load/);
    await expect(rt.deploy(spec('broken-py', 'python', 'raise RuntimeError("py boom")\n'))).rejects.toThrow(/py boom/);
    expect(rt.listFunctions().some((f) => f.name === 'broken')).toBe(false);

    await rt.deploy(spec('thrower', 'node', 'module.exports.handler = async () => { throw new TypeError("bad input"); };'));
    const t = await rt.invoke('thrower', '{}');
    expect(t.ok).toBe(false);
    expect(t.error?.kind).toBe('handler');
    expect(t.error?.message).toBe('bad input');
    expect(t.error?.stack).toContain('TypeError');

    await rt.deploy(spec('hang', 'node', 'module.exports.handler = () => new Promise(() => {});', { timeoutMs: 300 }));
    const h = await rt.invoke('hang', '{}');
    expect(h.ok).toBe(false);
    expect(h.error?.kind).toBe('timeout');

    await rt.deploy(spec('hog', 'node', 'module.exports.handler = async () => { const a = []; for (;;) a.push(Buffer.alloc(1 << 20, 1)); };', { memoryMiB: 64 }));
    const o = await rt.invoke('hog', '{}');
    expect(o.ok).toBe(false);
    expect(o.error?.kind).toBe('oom');

    // the seeds are still there and serve
    expect(value(await rt.invoke('hello', '{}'))).toEqual({ message: 'hello world' });
    expect(rt.listSeeds().filter((s) => s.function === 'hang').every((s) => s.state === 'ready')).toBe(true);
  });

  it('forks a paused instance, activates it, and destroys another before activation', async () => {
    const l2 = rt.listSeeds().find((s) => s.function === 'hello' && s.state === 'ready');
    expect(l2).toBeDefined();
    const inst = await rt.fork(l2?.id ?? '', { kind: 'instance' });
    expect('seedId' in inst && inst.state).toBe('paused');
    const r = await rt.activate(inst.id, JSON.stringify({ name: 'later' }));
    expect(value(r)).toEqual({ message: 'hello later' });
    const other = await rt.fork(l2?.id ?? '', { kind: 'instance' });
    await rt.destroy(other.id);
    await expect(rt.activate(other.id, '{}')).rejects.toThrow(/not found/);
    await expect(rt.fork('no-such-seed', { kind: 'instance' })).rejects.toThrow(/not found/);
  });

  it('an instance cannot speak for its seed or other instances through its result pipe', async () => {
    // Handler code shares the instance's pipe to the seed: forge what the seed would relay.
    const forger = `module.exports.handler = async (event, ctx) => {
      const fs = require('fs');
      const n = parseInt(ctx.requestId.slice(2), 36);
      const lines = [];
      for (let i = 1; i <= 40; i++) lines.push(JSON.stringify({ t: 'failed', id: 'l2-forger-' + i, message: 'forged' }));
      for (let i = 1; i <= 5; i++) lines.push(JSON.stringify({ t: 'exit', id: 'i-' + (n + i).toString(36), pid: 1, code: 0, signal: null, timedOut: false }));
      lines.push(JSON.stringify({ t: 'result', id: 'i-' + (n + 1).toString(36), ok: true, value: '"forged"', error: null, timings: {} }));
      for (let fd = 3; fd < 64; fd++) { try { fs.writeSync(fd, lines.join('\\n') + '\\n'); } catch {} }
      return 'mine';
    };`;
    await rt.deploy(spec('forger', 'node', forger));
    const results = await Promise.all([rt.invoke('forger', '{}'), rt.invoke('hello', '{"name":"a"}'), rt.invoke('forger', '{}'), rt.invoke('hello', '{"name":"b"}')]);
    expect(results.map(value)).toEqual(['mine', { message: 'hello a' }, 'mine', { message: 'hello b' }]);
    expect(rt.listSeeds().filter((s) => s.function === 'forger').map((s) => s.state)).not.toContain('failed');
    expect(value(await rt.invoke('forger', '{}'))).toBe('mine');
    await rt.remove('forger');
  });

  it('a second connection cannot claim a running seed (init code can open one)', async () => {
    const l1 = rt.listSeeds().find((s) => s.level === 1 && s.language === 'node');
    expect(l1?.state).toBe('ready');
    const c = net.connect(join(dir, 'seeds.sock'));
    await new Promise<void>((r) => c.once('connect', () => r()));
    const closed = new Promise<void>((r) => c.once('close', () => r()));
    c.on('error', () => undefined);
    c.write(JSON.stringify({ t: 'hello', id: l1?.id, pid: 1, language: 'node', level: 1 }) + '\n');
    c.write(JSON.stringify({ t: 'failed', id: l1?.id, message: 'hijacked' }) + '\n');
    await closed;
    expect(rt.listSeeds().find((s) => s.id === l1?.id)?.state).toBe('ready');
    expect(value(await rt.invoke('hello', '{"name":"still"}'))).toEqual({ message: 'hello still' });
    expect(value(await rt.invoke('hello', '{}', { level: 1 }))).toEqual({ message: 'hello world' });
  });

  it('a result FIFO takes only its instance\'s own line, with its token', async () => {
    const code = `module.exports.handler = async (e) => { await new Promise((r) => setTimeout(r, 300)); return 'real'; };`;
    await rt.deploy(spec('slowok', 'node', code));
    const p = rt.invoke('slowok', '{}');
    await new Promise((r) => setTimeout(r, 100));
    const inst = rt.listInstances().find((i) => i.function === 'slowok');
    expect(inst).toBeDefined();
    // forge the instance's result into every slot: without its token nothing counts
    const forged = JSON.stringify({ t: 'result', id: inst?.id, ok: true, value: '"forged"', error: null, timings: { bind: 0, seccomp: 0, init: 0, execute: 0 }, token: '00'.repeat(16) }) + '\n';
    for (const f of readdirSync(join(dir, 'results'))) {
      const fd = openSync(join(dir, 'results', f), 'w');
      writeSync(fd, forged);
      closeSync(fd);
    }
    expect(value(await p)).toBe('real');
    await rt.remove('slowok');
  });

  it('an instance holds none of its in-flight siblings\' pipes', async () => {
    const code = `const fs = require('fs');
      module.exports.handler = async (event) => {
        if (event.sleep) { await new Promise((r) => setTimeout(r, event.sleep)); return -1; }
        let pipes = 0;
        for (let fd = 0; fd < 256; fd++) { try { if (fs.fstatSync(fd).isFIFO()) pipes++; } catch {} }
        return pipes;
      };`;
    await rt.deploy(spec('fds', 'node', code));
    const alone = value(await rt.invoke('fds', '{}')) as number;
    const sleepers = Array.from({ length: 6 }, () => rt.invoke('fds', '{"sleep":400}'));
    await new Promise((r) => setTimeout(r, 100));
    const crowded = value(await rt.invoke('fds', '{}')) as number;
    await Promise.all(sleepers);
    expect(crowded).toBe(alone);
    await rt.remove('fds');
  });

  it('serves concurrent invocations and leaks nothing over many', async () => {
    const before = rt.pools() as { cgroups: { free: number }; netns: { free: number } };
    const fds = readdirSync('/proc/self/fd').length;
    const burst = await Promise.all(Array.from({ length: 24 }, (_, i) => rt.invoke('hello', JSON.stringify({ name: `c${i}` }))));
    expect(burst.filter((r) => !r.ok).map((r) => r.error)).toEqual([]);
    for (let i = 0; i < 200; i++) {
      const r = await rt.invoke(i % 2 ? 'hello' : 'hello-py', '{}');
      expect(r.ok).toBe(true);
    }
    // early destroy: resources come back when each exit arrives, after the responses
    type Pools = { cgroups: { free: number; inUse: number }; netns: { free: number; size: number } };
    let after = rt.pools() as Pools;
    for (let i = 0; i < 100 && (after.netns.free < after.netns.size || after.cgroups.inUse > 0); i++) {
      await new Promise((r) => setTimeout(r, 100));
      after = rt.pools() as Pools;
    }
    expect(after.cgroups.inUse).toBe(0);
    expect(after.cgroups.free).toBeGreaterThanOrEqual(before.cgroups.free);
    expect(after.netns.free).toBe(after.netns.size);
    expect((rt.pools() as { results: { inUse: number } }).results.inUse).toBe(0);
    expect(rt.listInstances()).toEqual([]);
    expect(seedChildren(rt)).toBeLessThanOrEqual(rt.listSeeds().filter((s) => s.level === 2).length);
    expect(readdirSync('/proc/self/fd').length).toBeLessThanOrEqual(fds + 2);
  }, 120_000);
});
