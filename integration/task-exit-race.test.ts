// An exit the seed reports in the same chunk as the spawn reply (a sandbox that died right
// after it said ready) is read before TaskManager has recorded the pid. It must still stop
// the task, after TaskCreate; an earlier process's exit with the same pid must not.
// A fake seed stands in for the root seed (it resolves the spawn and reports the exit in one
// tick, as SeedClient does when both frames arrive together); the cgroup and stdio are real.
import { EventEmitter } from 'node:events';
import { mkdtempSync, mkdirSync, readdirSync, rmSync, rmdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TaskManager, type TaskEvents } from '../dist/task/tasks.js';
import { detectCgroupLayout } from '../dist/pools/cgroups.js';
import type { SeedClient } from '../dist/engines/process/seed-client.js';
import { isRoot, rootfs } from './harness.js';

const PID = 4_000_000 - 7; // above any pid this machine hands out (pid_max is at most 4194304)

class FakeSeed extends EventEmitter {
  exitSeq = 100;
  /** 'after': the exit comes right after the reply (this sandbox's); 'before': an older process's */
  mode: 'after' | 'before' = 'after';
  /** every feature of this code's seed (SeedClient.has) */
  has(): boolean { return true; }
  spawn(): Promise<unknown> {
    return new Promise((resolve) => {
      setImmediate(() => {
        if (this.mode === 'before') this.emit('exit', PID, 9, ++this.exitSeq);
        resolve({ pid: PID, warnings: [], timings: {}, exitsBefore: this.exitSeq });
        if (this.mode === 'after') this.emit('exit', PID, 9, ++this.exitSeq);
      });
    });
  }
  abort(): Promise<void> { return Promise.resolve(); }
  startProcess(): Promise<number> { return Promise.reject(new Error('gone')); }
}

describe.skipIf(!isRoot())('an exit read before its pid is tracked', () => {
  let dir: string;
  const parent = `spore-exit-race-${process.pid}`;
  const bundle = (id: string): string => join(dir, id);
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'spore-exit-race-'));
    for (const id of ['after', 'before']) {
      mkdirSync(bundle(id));
      writeFileSync(join(bundle(id), 'config.json'), JSON.stringify({
        ociVersion: '1.1.0', root: { path: rootfs('busybox') },
        process: { args: ['/bin/true'], cwd: '/', env: ['PATH=/bin'], user: { uid: 0, gid: 0 } },
        mounts: [{ destination: '/proc', type: 'proc', source: 'proc' }],
        linux: { cgroupsPath: `/${parent}/${id}`, namespaces: [{ type: 'pid' }, { type: 'mount' }] },
      }));
    }
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
    // the tasks' cgroups went with Delete; their parent, if any hierarchy kept it
    for (const h of readdirSync('/sys/fs/cgroup')) { try { rmdirSync(join('/sys/fs/cgroup', h, parent)); } catch { /* none */ } }
  });

  it('stops the task after TaskCreate when it came after the spawn reply, and not when it came before', { timeout: 15_000 }, async () => {
    const seed = new FakeSeed();
    const order: string[] = [];
    const events: TaskEvents = {
      created: (c) => order.push(`created ${c.id}`), started: () => undefined, exited: (c) => order.push(`exited ${c.id}`),
      deleted: () => undefined, execAdded: () => undefined, paused: () => undefined, oom: () => undefined,
    };
    const tm = new TaskManager({ runDir: join(dir, 'run'), layout: detectCgroupLayout(), seed: seed as unknown as SeedClient, events, log: pino({ level: 'silent' }) });
    mkdirSync(join(dir, 'run'), { recursive: true });
    const io = { stdin: '', stdout: '', stderr: '', terminal: false };
    try {
      const c = await tm.create('race', 'after', bundle('after'), [], io);
      await new Promise((r) => setTimeout(r, 50));
      expect(c.init.status).toBe('stopped');
      expect(c.init.exitStatus).toBe(137);
      expect(order).toEqual(['created after', 'exited after']);
      await tm.delete('race', 'after', '');

      seed.mode = 'before';
      const d = await tm.create('race', 'before', bundle('before'), [], io);
      await new Promise((r) => setTimeout(r, 50));
      expect(d.init.status).toBe('created');
      expect(order).toEqual(['created after', 'exited after', 'created before']);
      seed.emit('exit', PID, 9, ++seed.exitSeq); // its own exit, now: applied at once
      expect(d.init.status).toBe('stopped');
    } finally {
      for (const id of ['after', 'before']) await tm.delete('race', id, '').catch(() => undefined);
    }
  });
});
