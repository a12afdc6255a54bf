// ProcessIO.open: bad stdio requests get errors that say what to fix; the process's pipes
// come at once, the client's FIFOs (a keeper's round trips) while it sets up.
import { execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ProcessCustody, type FdCustody } from '../task/custody.js';
import { ProcessIO } from '../task/stdio.js';
import * as sys from '../sys/libc.js';

describe('ProcessIO.open refusals', () => {
  it('a log URI as stderr is refused as such (not as a path that is not absolute)', async () => {
    await expect(ProcessIO.open({ stdin: '', stdout: '/tmp/out.fifo', stderr: 'file:///tmp/x.log', terminal: false }, { id: 'c', namespace: 'test', cwd: '/tmp', relay: true }))
      .rejects.toThrow(/stderr: a log URI must be given as stdout/);
    await expect(ProcessIO.open({ stdin: '', stdout: '/tmp/out.fifo', stderr: 'binary:///usr/bin/logger', terminal: false }, { id: 'c', namespace: 'test', cwd: '/tmp', relay: true }))
      .rejects.toThrow(/stderr: a log URI must be given as stdout/);
  });

  it('a relative path is refused with the forms that are accepted', async () => {
    await expect(ProcessIO.open({ stdin: 'in', stdout: '', stderr: '', terminal: false }, { id: 'c', namespace: 'test', cwd: '/tmp', relay: true }))
      .rejects.toThrow(/stdin must be an absolute path or a file:\/\/ or binary:\/\/ URI, got "in"/);
  });
});

describe('ProcessIO: the pipes at once, the client\'s FIFOs while the process sets up', () => {
  const fds = (): number => readdirSync('/proc/self/fd').length;
  let dir = '';
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'pio-'));
    for (const f of ['in', 'out', 'err']) execFileSync('mkfifo', [join(dir, f)]);
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));
  const req = () => ({ stdin: join(dir, 'in'), stdout: join(dir, 'out'), stderr: join(dir, 'err'), terminal: false });

  /** a keeper whose open() answers when told to (or fails) */
  class SlowCustody implements FdCustody {
    readonly waiting: { path: string; flags: number; go: (fail?: Error) => void }[] = [];
    park(): Promise<void> { return Promise.resolve(); }
    open(_key: string, path: string, flags: number): Promise<number> {
      return new Promise((resolve, reject) => { this.waiting.push({ path, flags, go: (fail) => (fail ? reject(fail) : resolve(sys.open(path, flags | sys.O.CLOEXEC))) }); });
    }
    release(): void { /* nothing held */ }
    keys(): string[] { return []; }
    reclaim(): number | null { return null; }
    heldAs(): number | undefined { return undefined; }
  }

  it('open() gives the process its pipe ends before any FIFO is open; ready() once they are', async () => {
    const custody = new SlowCustody();
    const io = await ProcessIO.open(req(), { id: 'c', namespace: 'test', cwd: '/tmp', relay: true, custody: new ProcessCustody(custody, 'test', 'c', '') });
    for (const k of ['stdin', 'stdout', 'stderr'] as const) expect(io.stdio[k]).toMatch(new RegExp(`^/proc/${process.pid}/fd/\\d+$`));
    expect(custody.waiting.map((w) => w.path).sort()).toEqual([join(dir, 'err'), join(dir, 'in'), join(dir, 'out')]);
    let ready = false;
    const r = io.ready().then(() => { ready = true; });
    await new Promise((res) => setTimeout(res, 20));
    expect(ready).toBe(false);
    // stdin's second end (its keep-alive writer) is asked for once the first is open
    while (custody.waiting.length > 0) { custody.waiting.shift()?.go(); await new Promise((res) => setTimeout(res, 5)); }
    await r;
    expect(io.relayed.sort()).toEqual(['stderr', 'stdin', 'stdout']);
    await io.close(0);
  });

  it('a FIFO that cannot be opened fails ready() with its error, and nothing is left open', async () => {
    const before = fds();
    const custody = new SlowCustody();
    const io = await ProcessIO.open(req(), { id: 'c', namespace: 'test', cwd: '/tmp', relay: true, custody: new ProcessCustody(custody, 'test', 'c', '') });
    for (const w of custody.waiting.splice(0)) w.go(w.path.endsWith('out') ? new Error('keeper could not take it') : undefined);
    await new Promise((res) => setTimeout(res, 20));
    for (const w of custody.waiting.splice(0)) w.go();
    await new Promise((res) => setTimeout(res, 20));
    // the process, setting up meanwhile, can still open what it was given (closed at once, it
    // would fail on that, or open whatever took the number, instead of the FIFO's error being told)
    const end = openSync(io.stdio.stdout, 'w');
    closeSync(end);
    await expect(io.ready()).rejects.toThrow(/keeper could not take it/);
    await new Promise((res) => setTimeout(res, 20));
    expect(fds()).toBe(before);
  });
});
