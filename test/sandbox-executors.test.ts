// The two sandbox executors (seeds/node/sandbox.ts runSandbox, seeds/python/zygote.py
// run_sandbox) turn the same plan into the same syscall sequence, recorded instead of made
// (no root needed), and that sequence has the order the sandbox's safety depends on.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { functionSandbox, type SandboxInput } from '../functions/sandbox.js';
import { RecordingSandboxSys, type SysCall } from '../seeds/sandbox-sys.js';
import { runSandbox } from '../seeds/node/sandbox.js';

const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
const ZYGOTE = fileURLToPath(new URL('../seeds/python/zygote.py', import.meta.url));
const CLONE_NEWUSER = 0x10000000;

const input: SandboxInput = {
  name: 'fn', version: 2, runtimeRoot: '/rt/python',
  runtimeEntries: [{ name: 'usr', kind: 'dir' }, { name: 'lib', kind: 'dir' }, { name: 'lib64', kind: 'dir' }, { name: 'bin', kind: 'symlink', target: 'usr/bin' }],
  runtimeHasSsl: true, packageDir: '/state/packages/d1g3st', staging: '/run/spore-x/sandbox-root', hostId: 1 << 30,
  cgroupProcs: ['/sys/fs/cgroup/memory/spore/f/cgroup.procs', '/sys/fs/cgroup/pids/spore/f/cgroup.procs'], memoryMiB: 128, tmpBytes: 1 << 20,
  seccomp: { filter: 'AAECAw==', flags: 0 },
};

function nodeSequence(plan: ReturnType<typeof functionSandbox>): SysCall[] {
  const rec = new RecordingSandboxSys({ root: plan.staging, abi: 7 });
  runSandbox(plan, rec);
  return rec.calls;
}

function pythonSequence(plan: ReturnType<typeof functionSandbox>): SysCall[] {
  return JSON.parse(execFileSync(PYTHON, ['-S', '-E', ZYGOTE, '--record-sandbox'], { input: JSON.stringify(plan), encoding: 'utf8' })) as SysCall[];
}

describe('sandbox executors', () => {
  const plan = functionSandbox(input);
  const seq = nodeSequence(plan);
  const at = (name: string, ...args: unknown[]): number => seq.findIndex((c) => c[0] === name && args.every((a, i) => a === undefined || c[i + 1] === a));

  it('make the same calls in the same order, Node and Python', () => {
    expect(pythonSequence(plan)).toEqual(seq);
  });

  it('join the cgroup first, build the root under the staging dir, then pivot into it', () => {
    expect(seq[0]).toEqual(['write', input.cgroupProcs[0], '0']);
    const pivot = at('pivot_root');
    expect(pivot).toBeGreaterThan(0);
    for (const c of seq.slice(0, pivot)) {
      if (c[0] === 'mount' && typeof c[2] === 'string' && c[2] !== '/') expect(c[2].startsWith(input.staging), JSON.stringify(c)).toBe(true);
    }
    expect(seq[pivot - 1]).toEqual(['chdir', input.staging]);
    expect(seq.slice(pivot + 1, pivot + 3)).toEqual([['umount2', '.', 2], ['chdir', '/']]);
  });

  it('enter the user namespace only after every mount, then drop everything before function code', () => {
    const userns = at('unshare', CLONE_NEWUSER);
    const lastMount = seq.map((c) => c[0]).lastIndexOf('mount');
    expect(userns).toBeGreaterThan(lastMount);
    expect(seq.slice(userns, userns + 7).map((c) => c[0])).toEqual(['unshare', 'await_id_maps', 'drop_bounding_set', 'setgroups', 'setresgid', 'setresuid', 'capset']);
    // made as the host uid its maps start at, which then owns it (per-user limits charged there, not to root)
    expect(seq[userns - 1]).toEqual(['seteuid', input.hostId]);
    expect(at('keep_fds')).toBeLessThan(userns);
    expect(at('landlock_restrict_self')).toBeLessThan(at('seccomp'));
    expect(at('prctl', 38, 1)).toBeLessThan(at('landlock_create_ruleset')); // no_new_privs before Landlock and seccomp
    expect(seq.at(-2)).toEqual(['chdir', '/var/task']);
    expect(seq.at(-1)?.[0]).toBe('set_env');
  });

  it('would not pass with a reordered plan: the comparison bites', () => {
    const other = functionSandbox({ ...input, hostId: input.hostId + 65536 });
    expect(nodeSequence(other)).toEqual(nodeSequence(other));
    const swapped = { ...plan, steps: [...plan.steps].reverse() };
    expect(nodeSequence(swapped)).not.toEqual(seq);
    expect(pythonSequence(swapped)).toEqual(nodeSequence(swapped));
  });
});
