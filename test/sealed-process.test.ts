// engines/process/protocol.ts sealProcess / unsealProcess: a process's args and env pass the
// root seed as a path to a memfd of spored's, never as data (integration/redteam/seed-memory.test.ts
// shows the seed's memory without them).
import { describe, expect, it } from 'vitest';
import { sealProcess, sealedBody, unsealProcess, type ExecPlan } from '../engines/process/protocol.js';
import v8 from 'node:v8';

const plan: ExecPlan = {
  kind: 'exec', id: 'c1', execId: 'e1', targetPid: 42, namespaces: [], cgroupProcs: [],
  process: {
    apparmorProfile: null, selinuxLabel: null, args: ['/bin/sh', '-c', 'echo $TOKEN'], env: ['TOKEN=s3cret', 'PATH=/bin'], cwd: '/', uid: 0, gid: 0,
    additionalGids: [], umask: 0o22, caps: { bounding: 0n, effective: 0n, permitted: 0n, inheritable: 0n, ambient: [] }, rlimits: [], noNewPrivileges: true,
    oomScoreAdj: null, seccomp: null, stdio: { stdin: '', stdout: '', stderr: '', terminal: '' },
  },
};

describe('sealed process args and env', () => {
  it('the sealed plan carries neither args nor env, only where to read them', () => {
    const sealed = sealProcess(plan, '/proc/7/fd/9');
    expect(sealed.process.args).toEqual([]);
    expect(sealed.process.env).toEqual([]);
    expect(sealed.process.sealedPath).toBe('/proc/7/fd/9');
    // what crosses the seed link (v8 serialization) holds no byte of them
    const wire = v8.serialize(sealed);
    for (const s of ['s3cret', 'TOKEN', 'echo']) expect(wire.includes(Buffer.from(s))).toBe(false);
    // the caller's plan is untouched (spored keeps it)
    expect(plan.process.env).toContain('TOKEN=s3cret');
  });

  it('unsealing reads them back from the path and drops it', () => {
    const sealed = sealProcess(plan, '/proc/7/fd/9');
    const reads: string[] = [];
    unsealProcess(sealed.process, (p) => { reads.push(p); return sealedBody(plan.process); });
    expect(reads).toEqual(['/proc/7/fd/9']);
    expect(sealed.process.args).toEqual(plan.process.args);
    expect(sealed.process.env).toEqual(plan.process.env);
    expect(sealed.process.sealedPath).toBeUndefined();
  });

  it('a plan with nothing sealed is left as it is, and nothing is read', () => {
    const p = structuredClone(plan);
    unsealProcess(p.process, () => { throw new Error('read'); });
    expect(p.process).toEqual(plan.process);
  });

  it('a body that is not args and env fails the unsealing', () => {
    for (const body of [v8.serialize({ args: ['a'], env: [1] }), v8.serialize(null), v8.serialize({ args: 'x', env: [] })]) {
      const p = sealProcess(plan, '/x');
      expect(() => unsealProcess(p.process, () => body)).toThrow(/does not hold a process's args and env/);
    }
    const p = sealProcess(plan, '/x');
    expect(() => unsealProcess(p.process, () => Buffer.from('garbage'))).toThrow();
  });
});
