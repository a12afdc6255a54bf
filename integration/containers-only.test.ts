// A containers-only node (spored --fri off, a fresh user's case): no FRI socket and no seed
// tree, but the gateway still serves /healthz (the OCI path's health, FRI and the seeds "off",
// not down) and /metrics (ttrpc RPC latencies, component gauges), and an invocation is 503
// naming the flag. A real bin/spored (own run dir, free gateway port).
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = process.getuid?.() === 0;
if (!root) console.warn('[containers-only.test] skipped: needs root (spored: cgroups, namespaces)');
const repo = fileURLToPath(new URL('..', import.meta.url));

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => { const p = (s.address() as net.AddressInfo).port; s.close(() => resolve(p)); });
    s.on('error', reject);
  });
}

describe.skipIf(!root)('spored --fri off: a containers-only node keeps /healthz and /metrics', () => {
  let dir: string;
  let spored: ChildProcess;
  let port: number;
  const get = async (path: string, init?: RequestInit): Promise<{ status: number; text: string }> => {
    const res = await fetch(`http://127.0.0.1:${port}${path}`, init);
    return { status: res.status, text: await res.text() };
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'spore-fri-off-'));
    port = await freePort();
    spored = spawn(join(repo, 'bin', 'spored'), ['--run-dir', dir, '--fri', 'off', '--gateway', `127.0.0.1:${port}`, '--log', join(dir, 'spored.log')], { stdio: 'ignore' });
    for (let i = 0; i < 200; i++) {
      try { if ((await get('/healthz')).status === 200) break; } catch { /* not listening yet */ }
      await new Promise((r) => setTimeout(r, 100));
    }
    if ((await get('/healthz').catch(() => ({ status: 0 }))).status !== 200) {
      throw new Error(`spored did not come up: ${existsSync(join(dir, 'spored.log')) ? readFileSync(join(dir, 'spored.log'), 'utf8').slice(-2000) : ''}`);
    }
  }, 60_000);

  afterAll(async () => {
    spored?.kill('SIGTERM');
    await new Promise((r) => { if (spored?.exitCode !== null) r(null); spored?.once('exit', r); setTimeout(r, 15_000); });
    rmSync(dir, { recursive: true, force: true });
  });

  it('/healthz: 200, the OCI path up, FRI and the seeds off', async () => {
    const h = await get('/healthz');
    expect(h.status).toBe(200);
    expect(JSON.parse(h.text)).toEqual({
      ok: true,
      components: { oci: { ok: true, process_seed: 'alive', ttrpc: 'listening' }, fri: { ok: true, grpc: 'off' }, seeds: { ok: true, node: 'off', python: 'off' } },
    });
    expect(existsSync(join(dir, 'fri.sock'))).toBe(false);
  });

  it('/metrics: the OCI components are series, the ones that are off are not', async () => {
    const m = await get('/metrics');
    expect(m.status).toBe(200);
    expect(m.text).toMatch(/spore_component_up\{component="ttrpc"\} 1/);
    expect(m.text).toMatch(/spore_component_up\{component="process_seed"\} 1/);
    expect(m.text).not.toMatch(/spore_component_up\{component="fri"\}/);
  });

  it('an invocation is 503 UNAVAILABLE naming --fri off', async () => {
    const r = await get('/invoke/hello', { method: 'POST', body: '{}' });
    expect(r.status).toBe(503);
    expect(JSON.parse(r.text)).toMatchObject({ error: { kind: 'request', code: 'UNAVAILABLE' } });
    expect(JSON.parse(r.text).error.message).toContain('--fri off');
  });
});
