// bench/proc-cpu.ts: the CPU accounting behind bench/goals.ts's "CPU per invocation, all
// processes" row. A process tree's CPU must include children that already exited (through
// their reaper's cutime/cstime) and living grandchildren, and must only grow.
import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { helpText } from '../daemon/config.js';
import { cpuByLabel, parseParkedFlag, procTable, treeCpuMs, treeSnapshot, type ProcEntry } from '../bench/proc-cpu.js';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

describe('treeCpuMs', () => {
  it('sums a tree from a /proc table and leaves other processes out', () => {
    const t = new Map<number, ProcEntry>([
      [1, { ppid: 0, ticks: 1000, self: 1000 }],
      [10, { ppid: 1, ticks: 5, self: 5 }], // root
      [11, { ppid: 10, ticks: 7, self: 2 }],
      [12, { ppid: 11, ticks: 3, self: 3 }],
      [20, { ppid: 1, ticks: 100, self: 100 }], // not in the tree
    ]);
    expect(treeCpuMs(10, t)).toEqual({ ms: 150, processes: 3 });
    expect(treeCpuMs(99, t)).toEqual({ ms: 0, processes: 0 });
  });

  it('counts CPU burnt by a grandchild that has exited and one that still runs', async () => {
    // parent: fork a child that burns ~300 ms and exits (reaped by waitpid), then fork a child
    // that burns ~300 ms and stays alive, then wait to be killed
    const script = [
      'import os, time, signal',
      'def burn(s):',
      '    t = time.process_time()',
      '    while time.process_time() - t < s: pass',
      'p = os.fork()',
      'if p == 0:',
      '    burn(0.3); os._exit(0)',
      'os.waitpid(p, 0)',
      'q = os.fork()',
      'if q == 0:',
      '    burn(0.3); print("burnt", flush=True); time.sleep(60); os._exit(0)',
      'time.sleep(60)',
    ].join('\n');
    // its own process group, so that the grandchild is killed with it
    const child = spawn('python3', ['-c', script], { stdio: ['ignore', 'pipe', 'inherit'], detached: true });
    try {
      await new Promise<void>((resolve, reject) => {
        child.stdout.on('data', (d: Buffer) => d.toString().includes('burnt') && resolve());
        child.on('exit', (c) => reject(new Error(`python exited ${c}`)));
      });
      const before = treeCpuMs(child.pid!);
      // by process: the parent ran little itself; the exited child is in its reaped time
      const snap = treeSnapshot(child.pid!, (pid) => (pid === child.pid ? 'parent' : 'child'));
      const by = cpuByLabel({ pids: new Map() }, snap);
      expect(by.get('parent')!.reaped).toBeGreaterThanOrEqual(280);
      expect(by.get('child')!.self).toBeGreaterThanOrEqual(280);
      expect(before.processes).toBe(2); // the parent and its living child
      // two 300 ms burns (tick granularity 10 ms; interpreter start-up adds a little)
      expect(before.ms).toBeGreaterThanOrEqual(560);
      expect(before.ms).toBeLessThan(1500);
      await sleep(200);
      expect(treeCpuMs(child.pid!).ms).toBeGreaterThanOrEqual(before.ms); // never shrinks
      expect(procTable().get(child.pid!)?.ppid).toBe(process.pid);
    } finally {
      process.kill(-child.pid!, 'SIGKILL');
    }
  });
});

describe('parseParkedFlag', () => {
  it('finds nothing in a help text without the flag', () => {
    expect(parseParkedFlag('usage: spored\n  --run-dir DIR   x\n                 env SPORE_RUN_DIR · default /run/spore\n')).toBeNull();
  });

  it('reads a count flag with its environment variable', () => {
    const help = '  --parked auto|N            instances forked before calls arrive\n                             env SPORE_PARKED · default auto\n';
    const f = parseParkedFlag(help);
    expect(f).toMatchObject({ flag: '--parked', env: 'SPORE_PARKED', off: '0', on: '4' });
    expect(parseParkedFlag(help, '8')?.on).toBe('8');
    expect(parseParkedFlag('  --parked on|off   x\n   env SPORE_P · default off\n')).toMatchObject({ off: 'off', on: 'on' });
  });

  it("agrees with this build's spored --help", () => {
    const f = parseParkedFlag(helpText());
    if (f === null) return; // a build without parked instances: goals.ts prints those rows as not available
    expect(f.flag.startsWith('--parked')).toBe(true);
    expect(f.env).toMatch(/^SPORE_/);
  });
});
