import { mkdtempSync, rmSync, writeFileSync, mkdirSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { REPLAY_METADATA_KEY } from '../protocols/keeper.js';
import type { CallContext } from '../protocols/ttrpc/server.js';
import { NotFound } from '../sys/errors.js';
import { findTombstones, pruneTombstones, removeTombstone, writeTombstone } from '../task/record.js';
import { taskService } from '../task/service.js';
import type { TaskManager } from '../task/tasks.js';
import { detectCgroupLayout } from '../pools/cgroups.js';

const dir = mkdtempSync(join(tmpdir(), 'spore-tomb-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const ctx = (replay: boolean, namespace?: string): CallContext => ({
  service: 'containerd.task.v2.Task', method: 'Delete', metadata: new Map(replay ? [[REPLAY_METADATA_KEY, ['1']]] : []),
  namespace, signal: new AbortController().signal, deadline: undefined, connectionId: 1,
});

describe('a replayed Delete gets the answer of the Delete the dead spored carried out', () => {
  it('tombstones: written, found by id in any namespace, removed, pruned by age', () => {
    writeTombstone(dir, 'ns1', 'c1', { pid: 42, exitStatus: 3, exitedAt: '2026-12-01T10:00:00.000Z', deletedAt: new Date().toISOString() });
    expect(findTombstones(dir, 'c1')).toEqual([{ namespace: 'ns1', t: { pid: 42, exitStatus: 3, exitedAt: '2026-12-01T10:00:00.000Z', deletedAt: expect.any(String) } }]);
    expect(findTombstones(dir, 'c1', 'other')).toEqual([]);
    writeTombstone(dir, 'ns2', 'old', { pid: 1, exitStatus: 0, exitedAt: null, deletedAt: new Date(Date.now() - 3_600_000).toISOString() });
    mkdirSync(join(dir, 'tasks', 'ns2'), { recursive: true });
    writeFileSync(join(dir, 'tasks', 'ns2', 'junk.deleted'), 'not json');
    pruneTombstones(dir, 600_000);
    expect(findTombstones(dir, 'old')).toEqual([]);
    expect(existsSync(join(dir, 'tasks', 'ns2', 'junk.deleted'))).toBe(false);
    expect(findTombstones(dir, 'c1')).toHaveLength(1);
    removeTombstone(dir, 'ns1', 'c1');
    expect(findTombstones(dir, 'c1')).toEqual([]);
  });

  it('the service answers a replay from the tombstone, and a genuine second Delete with NotFound', async () => {
    const tomb = { pid: 42, exitStatus: 3, exitedAt: '2026-12-01T10:00:00.000Z', deletedAt: '2026-12-01T10:00:01.000Z' };
    const tasks = {
      delete: () => Promise.reject(new NotFound('container c1 not found')),
      deletedRecently: (id: string) => (id === 'c1' ? tomb : null),
      namespacesOf: () => [],
    } as unknown as TaskManager;
    const svc = taskService(tasks, detectCgroupLayout(), pino({ level: 'silent' }));
    const del = svc.delete as unknown as (req: { id: string; execId: string }, c: CallContext) => Promise<{ pid: number; exitStatus: number; exitedAt?: { seconds: bigint } }>;
    const r = await del({ id: 'c1', execId: '' }, ctx(true, 'ns1'));
    expect(r.pid).toBe(42);
    expect(r.exitStatus).toBe(3);
    expect(Number(r.exitedAt?.seconds)).toBe(Date.parse(tomb.exitedAt) / 1000);
    await expect(del({ id: 'c1', execId: '' }, ctx(false, 'ns1'))).rejects.toBeInstanceOf(NotFound);
    await expect(del({ id: 'c2', execId: '' }, ctx(true, 'ns1'))).rejects.toBeInstanceOf(NotFound);
  });
});
