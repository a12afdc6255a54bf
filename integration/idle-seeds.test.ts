// Idle seeds cost nothing: once a seed is ready it waits in a blocking epoll_wait (no JS
// event loop runs in it again), whatever its function's init code left behind (timers,
// immediates, sockets). An earlier build had idle Node seeds spinning at 33 % CPU each in
// node::Environment::CheckImmediate; this pins the whole class.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SeedClient } from '../dist/engines/process/seed-client.js';
import { ProcessFunctionRuntime } from '../dist/functions/runtime.js';
import { detectCgroupLayout } from '../dist/pools/cgroups.js';

const root = process.getuid?.() === 0;
if (!root) console.warn('[idle-seeds.test] skipped: needs root (function sandboxes)');

/** utime + stime of a process, in clock ticks (USER_HZ = 100 on Linux). */
function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(f[11]) + Number(f[12]);
}

describe.skipIf(!root)('idle seeds', () => {
  let dir: string;
  let l0: SeedClient;
  let rt: ProcessFunctionRuntime;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'spore-idle-'));
    l0 = new SeedClient();
    await l0.start();
    rt = new ProcessFunctionRuntime({ runDir: dir, stateDir: join(dir, 'state'), layout: detectCgroupLayout(), l0, log: pino({ level: 'silent' }), cgroupPoolSize: 4 });
    await rt.start();
  }, 60_000);

  afterAll(async () => {
    await rt?.stop();
    await l0?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('use under 0.5 % CPU each, even when init code leaves timers, immediates and promises running', async () => {
    const busyInit = [
      'setInterval(() => {}, 1);',
      'const again = () => setImmediate(again); again();',
      'let p = Promise.resolve(); const spin = () => { p = p.then(() => {}); }; setInterval(spin, 0);',
      'exports.handler = async () => "ok";',
    ].join('\n');
    await rt.deploy({ name: 'busy', language: 'node', code: busyInit, handler: 'handler', memoryMiB: 128, timeoutMs: 3000, env: {} });
    await rt.deploy({ name: 'busy-py', language: 'python', code: 'import threading\ndef handler(e, c):\n    return "ok"\n', handler: 'handler', memoryMiB: 128, timeoutMs: 3000, env: {} });
    for (let i = 0; i < 20; i++) {
      expect((await rt.invoke('busy', '{}')).ok).toBe(true);
      expect((await rt.invoke('busy-py', '{}')).ok).toBe(true);
    }
    // replicas come up, exits drain, and 1 s after its last call each function's replicas
    // that served are replaced by fresh forks (the idle refresh): measure after that
    await new Promise((r) => setTimeout(r, 3500));
    const seeds = rt.listSeeds().filter((s) => s.level >= 1 && s.pid > 0 && s.state === 'ready');
    expect(seeds.filter((s) => s.level === 2).length).toBeGreaterThanOrEqual(4);
    const before = new Map(seeds.map((s) => [s.id, cpuTicks(s.pid)]));
    const seconds = 5;
    await new Promise((r) => setTimeout(r, seconds * 1000));
    const percent = seeds.map((s) => ({ id: s.id, pct: ((cpuTicks(s.pid) - (before.get(s.id) ?? 0)) / (seconds * 100)) * 100 }));
    for (const p of percent) expect(p.pct, `${p.id} used ${p.pct.toFixed(2)} % CPU while idle`).toBeLessThan(0.5);
  }, 60_000);
});
