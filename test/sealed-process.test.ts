// engines/process/protocol.ts sealPlan / unsealPlan: a process's args and env pass the
// root seed as a path to a memfd of spored's, never as data (integration/redteam/seed-memory.test.ts
// shows the seed's memory without them).
import { describe, expect, it } from 'vitest';
import { sealPlan, sealedBody, unsealPlan, type ExecPlan, type InitPlan } from '../engines/process/protocol.js';
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
    const sealed = sealPlan(plan, '/proc/7/fd/9');
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
    const sealed = sealPlan(plan, '/proc/7/fd/9');
    const reads: string[] = [];
    unsealPlan(sealed, (p) => { reads.push(p); return sealedBody(plan); });
    expect(reads).toEqual(['/proc/7/fd/9']);
    expect(sealed.process.args).toEqual(plan.process.args);
    expect(sealed.process.env).toEqual(plan.process.env);
    expect(sealed.process.sealedPath).toBeUndefined();
  });

  it('a plan with nothing sealed is left as it is, and nothing is read', () => {
    const p = structuredClone(plan);
    unsealPlan(p, () => { throw new Error('read'); });
    expect(p.process).toEqual(plan.process);
  });

  it('a body that is not args and env fails the unsealing', () => {
    for (const body of [v8.serialize({ args: ['a'], env: [1] }), v8.serialize(null), v8.serialize({ args: 'x', env: [] })]) {
      const p = sealPlan(plan, '/x');
      expect(() => unsealPlan(p, () => body)).toThrow(/does not hold this process's args, env and hooks/);
    }
    const p = sealPlan(plan, '/x');
    expect(() => unsealPlan(p, () => Buffer.from('garbage'))).toThrow();
  });

  it("an init's hooks keep their path and timeout for the seed; their args, env and the state's annotations are sealed", () => {
    const init: InitPlan = {
      kind: 'init', id: 'c2', rootfs: '/r', readonlyRoot: false, rootPropagation: 0, namespaces: [], hostname: null, domainname: null, mounts: [], devices: [],
      maskedPaths: [], readonlyPaths: [], sysctl: {}, cgroupProcs: [], process: structuredClone(plan.process),
      hooks: {
        pause: false,
        createContainer: [{ path: '/bin/hook', args: ['hook', '--token=HOOKARG'], env: ['HOOKTOKEN=x1'], timeout: 5 }],
        startContainer: [{ path: '/bin/start', args: ['start'], env: null, timeout: null }],
        state: { ociVersion: '1.0.2', id: 'c2', bundle: '/b', annotations: { 'tenant/key': 'ANNOTATED' } },
      },
    };
    const sealed = sealPlan(init, '/proc/7/fd/3');
    const wire = v8.serialize(sealed);
    for (const secret of ['HOOKARG', 'HOOKTOKEN', 'ANNOTATED', 's3cret']) expect(wire.includes(Buffer.from(secret))).toBe(false);
    expect(sealed.hooks?.createContainer).toEqual([{ path: '/bin/hook', args: [], env: null, timeout: 5 }]);
    expect(init.hooks?.createContainer[0]?.env).toEqual(['HOOKTOKEN=x1']); // spored's plan untouched
    unsealPlan(sealed, () => sealedBody(init));
    expect(sealed.hooks).toEqual(init.hooks);
    expect(sealed.process.env).toEqual(init.process.env);
    // a body made for another plan (a hook more or less) is refused
    const other = sealPlan(init, '/x');
    other.hooks?.startContainer.push({ path: '/bin/more', args: [], env: null, timeout: null });
    expect(() => unsealPlan(other, () => sealedBody(init))).toThrow(/does not hold/);
  });
});

