// Python language seed (seeds/python/zygote.py) against a fake spored: a unix socket server in
// the test speaks seeds/protocol.ts to a real zygote process (Debian python3, stdlib only).
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Bind, FromSeed, InvokeRequest, ToSeed } from '../seeds/protocol.js';

const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
const ZYGOTE = fileURLToPath(new URL('../seeds/python/zygote.py', import.meta.url));
const NO_BIND: Bind = { cgroupProcs: [], netns: null, seccomp: null, seccompFlags: 0, noNewPrivs: false };

type Msg = FromSeed & { conn: number };

class FakeSpored {
  server!: Server;
  msgs: Msg[] = [];
  conns: Socket[] = [];
  bySeed = new Map<string, Socket>();
  private waiters: (() => void)[] = [];

  constructor(readonly path: string) {}

  listen(): Promise<void> {
    this.server = createServer((s) => {
      const conn = this.conns.push(s) - 1;
      let buf = '';
      s.setEncoding('utf8');
      s.on('data', (d: string) => {
        buf += d;
        let i: number;
        while ((i = buf.indexOf('\n')) >= 0) {
          const m = JSON.parse(buf.slice(0, i)) as FromSeed;
          buf = buf.slice(i + 1);
          if (m.t === 'hello') this.bySeed.set(m.id, s);
          this.msgs.push({ ...m, conn });
          for (const w of this.waiters.splice(0)) w();
        }
      });
      s.on('error', () => {});
    });
    return new Promise((res) => this.server.listen(this.path, res));
  }

  send(seed: string, m: ToSeed): void {
    const s = this.bySeed.get(seed);
    if (!s) throw new Error(`no connection from seed ${seed}`);
    s.write(JSON.stringify(m) + '\n');
  }

  /** The first message of type t for id, waiting for it if needed. */
  async wait<T extends FromSeed['t']>(t: T, id: string, timeoutMs = 5000): Promise<Extract<Msg, { t: T }>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = this.msgs.find((x) => x.t === t && (x as { id?: string }).id === id);
      if (m) return m as Extract<Msg, { t: T }>;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timeout waiting for ${t} ${id}; got ${JSON.stringify(this.msgs.slice(-5))}`);
      await new Promise<void>((res) => {
        const tm = setTimeout(res, left);
        this.waiters.push(() => { clearTimeout(tm); res(); });
      });
    }
  }

  index(t: FromSeed['t'], id: string): number {
    return this.msgs.findIndex((x) => x.t === t && (x as { id?: string }).id === id);
  }

  close(): void {
    for (const s of this.conns) s.destroy();
    this.server.close();
  }
}

function req(event: unknown, fn = 'f', timeoutMs = 5000): InvokeRequest {
  return { event: JSON.stringify(event), context: { functionName: fn, requestId: `r-${Math.random()}`, deadlineMs: Date.now() + timeoutMs, memoryLimitMiB: 128 } };
}

/** alive = exists in /proc and not a zombie */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

async function until(cond: () => boolean, timeoutMs = 3000): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (cond()) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return cond();
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((s.length * p) / 100))]!;
}

// sock_filter[]: uname(2) -> ERRNO(EPERM), everything else allowed (x86_64 numbers, no arch check: test only)
function unameDenyFilter(): string {
  const ins: [number, number, number, number][] = [
    [0x20, 0, 0, 0], // ld [0] (nr)
    [0x15, 0, 1, 63], // jeq #__NR_uname
    [0x06, 0, 0, 0x00050000 | 1], // ret ERRNO(EPERM)
    [0x06, 0, 0, 0x7fff0000], // ret ALLOW
  ];
  const b = Buffer.alloc(ins.length * 8);
  ins.forEach(([code, jt, jf, k], i) => {
    b.writeUInt16LE(code, i * 8);
    b.writeUInt8(jt, i * 8 + 2);
    b.writeUInt8(jf, i * 8 + 3);
    b.writeUInt32LE(k >>> 0, i * 8 + 4);
  });
  return b.toString('base64');
}

describe('python zygote', () => {
  let dir: string;
  let spored: FakeSpored;
  let zygote: ChildProcess;
  let seq = 0;
  const mods: Record<string, string> = {};
  const cgDir = `/sys/fs/cgroup/pids/spore-pytest-${process.pid}`;
  const pids: number[] = [];

  const mod = (name: string, src: string): string => {
    const p = join(dir, `${name}.py`);
    writeFileSync(p, src);
    mods[name] = p;
    return p;
  };

  /** fork an instance with an attached request; resolves with its result and exit */
  async function invoke(seed: string, opts: { event?: unknown; load?: string | null; bind?: Bind; timeoutMs?: number; env?: Record<string, string> } = {}) {
    const id = `i${++seq}`;
    const m: ToSeed = {
      t: 'fork', id, bind: opts.bind ?? NO_BIND, timeoutMs: opts.timeoutMs ?? 5000, request: req(opts.event ?? {}),
      load: opts.load ? { module: opts.load, handler: 'handler' } : null,
    };
    if (opts.env) m.env = opts.env;
    const t0 = performance.now();
    spored.send(seed, m);
    const forked = await spored.wait('forked', id);
    pids.push(forked.pid);
    // a result (if any) is relayed before the exit: time to whichever comes first
    const first = await Promise.race([spored.wait('result', id, 60_000), spored.wait('exit', id, (opts.timeoutMs ?? 5000) + 2000)]);
    const ms = performance.now() - t0;
    const exit = await spored.wait('exit', id);
    const result = (spored.msgs.find((x) => x.t === 'result' && x.id === id) as Extract<Msg, { t: 'result' }> | undefined) ?? null;
    expect(first.t).toBe(result ? 'result' : 'exit');
    return { id, forked, result, exit, ms };
  }

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'spore-pyz-'));
    spored = new FakeSpored(join(dir, 'seeds.sock'));
    await spored.listen();
    mod('echo', `import os
def handler(event, context):
    return {"event": event, "fn": context.function_name, "rem": context.remaining_time_ms() > 0,
            "mem": context.memory_limit_mib, "env": os.environ.get("PYZ_ENV")}
`);
    mod('boom', `def handler(event, context):
    raise ValueError("boom " + str(event["n"]))
`);
    mod('sleepy', `import time
def handler(event, context):
    time.sleep(10)
`);
    mod('rand', `import random, uuid
random.random()
def handler(event, context):
    return {"r": random.random(), "u": str(uuid.uuid4()), "u1": str(uuid.uuid1())}
`);
    mod('trivial', `def handler(event, context):
    return 1
`);
    mod('cg', `def handler(event, context):
    return open("/proc/self/cgroup").read()
`);
    mod('sec', `import os
def handler(event, context):
    try:
        os.uname()
        denied = 0
    except OSError as e:
        denied = e.errno
    status = open("/proc/self/status").read()
    return {"denied": denied, "mode": [l for l in status.splitlines() if l.startswith("Seccomp:")][0]}
`);
    mod('badsyntax', `def handler(event, context)\n    return 1\n`);
    mod('counter', `import os, random, uuid
with open(os.environ["PYZ_COUNTER"], "a") as f:
    f.write("init %d\\n" % os.getpid())
LOADED_PID = os.getpid()
def handler(event, context):
    with open(os.environ["PYZ_COUNTER"]) as f:
        lines = f.read().splitlines()
    return {"inits": len(lines), "loadedPid": LOADED_PID, "pid": os.getpid(), "r": random.random(),
            "u": str(uuid.uuid4())}
`);
    zygote = spawn(PYTHON, ['-S', '-E', ZYGOTE, spored.path, 'py-l1'], { stdio: ['ignore', 'inherit', 'inherit'] });
  });

  afterAll(() => {
    spored?.close();
    if (zygote && zygote.exitCode === null) zygote.kill('SIGKILL');
    for (const p of pids) { try { process.kill(p, 'SIGKILL'); } catch { /* gone */ } }
    rmSync(dir, { recursive: true, force: true });
    try { rmdirSync(cgDir); } catch { /* absent */ }
  });

  it('says hello and ready', async () => {
    const hello = await spored.wait('hello', 'py-l1');
    expect(hello).toMatchObject({ pid: zygote.pid, language: 'python', level: 1 });
    const ready = await spored.wait('ready', 'py-l1');
    expect(ready.initMs).toBeGreaterThan(0);
    expect(spored.index('hello', 'py-l1')).toBeLessThan(spored.index('ready', 'py-l1'));
  });

  it('L1 fallback: loads the module in the instance, runs the handler, relays result then exit', async () => {
    const r = await invoke('py-l1', { event: { a: [1, 'x'] }, load: mods['echo'], env: { PYZ_ENV: 'yes' } });
    expect(r.forked.pid).toBeGreaterThan(0);
    expect(r.forked.forkUs).toBeGreaterThan(0);
    expect(r.result).toMatchObject({ ok: true, error: null });
    expect(JSON.parse(r.result!.value!)).toEqual({ event: { a: [1, 'x'] }, fn: 'f', rem: true, mem: 128, env: 'yes' });
    for (const k of ['bind', 'seccomp', 'init', 'execute'] as const) expect(r.result!.timings[k]).toBeGreaterThanOrEqual(0);
    expect(r.result!.timings.init).toBeGreaterThan(0); // module load counted in init
    expect(r.exit).toMatchObject({ pid: r.forked.pid, code: 0, signal: null, timedOut: false });
    expect(spored.index('result', r.id)).toBeLessThan(spored.index('exit', r.id));
  });

  it('handler exception -> ok:false kind handler with traceback', async () => {
    const r = await invoke('py-l1', { event: { n: 7 }, load: mods['boom'] });
    expect(r.result).toMatchObject({ ok: false, value: null });
    expect(r.result!.error).toMatchObject({ kind: 'handler', message: 'ValueError: boom 7' });
    expect(r.result!.error!.stack).toMatch(/Traceback[\s\S]*boom\.py[\s\S]*ValueError: boom 7/);
    expect(r.exit.code).toBe(0);
  });

  it('load failure -> kind load', async () => {
    const r = await invoke('py-l1', { load: mods['badsyntax'] });
    expect(r.result!.error).toMatchObject({ kind: 'load' });
    expect(r.result!.error!.message).toMatch(/SyntaxError/);
  });

  it('timeout -> SIGKILL and exit timedOut', async () => {
    const r = await invoke('py-l1', { load: mods['sleepy'], timeoutMs: 300 });
    expect(r.result).toBeNull();
    expect(r.exit).toMatchObject({ code: null, signal: 9, timedOut: true });
    expect(r.ms).toBeGreaterThanOrEqual(290);
    expect(r.ms).toBeLessThan(2000);
  });

  it('forks get distinct random/uuid state', async () => {
    const a = await invoke('py-l1', { load: mods['rand'] });
    const b = await invoke('py-l1', { load: mods['rand'] });
    const va = JSON.parse(a.result!.value!), vb = JSON.parse(b.result!.value!);
    expect(va.r).not.toBe(vb.r);
    expect(va.u).not.toBe(vb.u);
    expect(va.u1).not.toBe(vb.u1);
  });

  it('parked instance runs on activate; kill ends one early; stats counts children', async () => {
    spored.send('py-l1', { t: 'fork', id: 'park1', bind: NO_BIND, timeoutMs: 5000, load: { module: mods['echo']!, handler: 'handler' } });
    spored.send('py-l1', { t: 'fork', id: 'park2', bind: NO_BIND, timeoutMs: 200, load: null });
    const f1 = await spored.wait('forked', 'park1');
    const f2 = await spored.wait('forked', 'park2');
    pids.push(f1.pid, f2.pid);
    await new Promise((r) => setTimeout(r, 350)); // parked: the timeout has not started
    expect(alive(f2.pid)).toBe(true);
    spored.send('py-l1', { t: 'stats' });
    const st = await spored.wait('stats', 'py-l1');
    expect(st).toMatchObject({ pid: zygote.pid, children: 2 });
    spored.send('py-l1', { t: 'activate', id: 'park1', request: req({ hi: 1 }, 'parked') });
    const r1 = await spored.wait('result', 'park1');
    expect(JSON.parse(r1.value!)).toMatchObject({ event: { hi: 1 }, fn: 'parked' });
    expect((await spored.wait('exit', 'park1')).code).toBe(0);
    spored.send('py-l1', { t: 'kill', id: 'park2' });
    expect(await spored.wait('exit', 'park2')).toMatchObject({ pid: f2.pid, signal: 9, timedOut: false });
    expect(spored.index('result', 'park2')).toBe(-1);
    expect(alive(f2.pid)).toBe(false);
  });

  it('bind.cgroupProcs puts the instance in the cgroup', async (ctx) => {
    try { mkdirSync(cgDir); } catch { ctx.skip(); }
    const bind: Bind = { ...NO_BIND, cgroupProcs: [join(cgDir, 'cgroup.procs')] };
    const r = await invoke('py-l1', { load: mods['cg'], bind });
    expect(r.result!.ok).toBe(true);
    expect(JSON.parse(r.result!.value!)).toMatch(new RegExp(`:pids:/spore-pytest-${process.pid}\\n`));
    expect(r.result!.timings.bind).toBeGreaterThan(0);
    rmdirSync(cgDir);
  });

  it('bind.seccomp installs the filter before user code', async () => {
    const bind: Bind = { ...NO_BIND, seccomp: unameDenyFilter(), noNewPrivs: true };
    const r = await invoke('py-l1', { load: mods['sec'], bind });
    expect(r.result!.ok).toBe(true);
    expect(JSON.parse(r.result!.value!)).toEqual({ denied: 1, mode: 'Seccomp:\t2' });
  });

  it('seed: child seed connects as L2, loads the module once; its forks reuse it', async () => {
    const counter = join(dir, 'counter.txt');
    spored.send('py-l1', { t: 'seed', id: 'py-l2', load: { module: mods['counter']!, handler: 'handler' }, env: { PYZ_COUNTER: counter } });
    const forked = await spored.wait('forked', 'py-l2');
    pids.push(forked.pid);
    const hello = await spored.wait('hello', 'py-l2');
    expect(hello).toMatchObject({ pid: forked.pid, language: 'python', level: 2 });
    expect(hello.conn).not.toBe(spored.msgs.find((m) => m.t === 'hello' && m.id === 'py-l1')!.conn);
    const ready = await spored.wait('ready', 'py-l2');
    expect(ready.initMs).toBeGreaterThan(0);
    const vals = [];
    for (let i = 0; i < 3; i++) {
      const r = await invoke('py-l2');
      expect(r.result!.ok).toBe(true);
      vals.push(JSON.parse(r.result!.value!));
    }
    expect(readFileSync(counter, 'utf8').trim().split('\n')).toEqual([`init ${forked.pid}`]);
    for (const v of vals) expect(v).toMatchObject({ inits: 1, loadedPid: forked.pid });
    expect(new Set(vals.map((v) => v.r)).size).toBe(3);
    expect(new Set(vals.map((v) => v.u)).size).toBe(3);
    // a broken module -> failed, and the child exits
    spored.send('py-l1', { t: 'seed', id: 'py-bad', load: { module: mods['badsyntax']!, handler: 'handler' } });
    const failed = await spored.wait('failed', 'py-bad');
    expect(failed.message).toMatch(/SyntaxError/);
    expect(await spored.wait('exit', 'py-bad')).toMatchObject({ code: 1, timedOut: false });
  });

  it('fork->result latency (trivial handler, 50 forks, L2 and L1 fallback)', async () => {
    spored.send('py-l1', { t: 'seed', id: 'py-l2t', load: { module: mods['trivial']!, handler: 'handler' } });
    pids.push((await spored.wait('forked', 'py-l2t')).pid);
    await spored.wait('ready', 'py-l2t');
    const l2: number[] = [], l1: number[] = [], forkUs: number[] = [], childUs: number[] = [];
    for (let i = 0; i < 50; i++) {
      const r = await invoke('py-l2t');
      expect(r.result!.value).toBe('1');
      l2.push(r.ms);
      forkUs.push(r.forked.forkUs);
      const t = r.result!.timings;
      childUs.push(t.bind + t.seccomp + t.init + t.execute);
    }
    for (let i = 0; i < 50; i++) l1.push((await invoke('py-l1', { load: mods['trivial'] })).ms);
    console.log(`python zygote fork->result ms: L2 p50 ${pct(l2, 50).toFixed(2)} p90 ${pct(l2, 90).toFixed(2)}; ` +
      `L1 fallback p50 ${pct(l1, 50).toFixed(2)} p90 ${pct(l1, 90).toFixed(2)}; forkUs p50 ${pct(forkUs, 50)}, ` +
      `child bind+seccomp+init+execute us p50 ${pct(childUs, 50)}`);
    expect(pct(l2, 50)).toBeLessThan(50);
  });

  it('exit: a seed kills its children and exits; its parent reports the exit', async () => {
    spored.send('py-l2t', { t: 'fork', id: 'doomed', bind: NO_BIND, timeoutMs: 0, load: null });
    const d = (await spored.wait('forked', 'doomed')).pid;
    pids.push(d);
    spored.send('py-l2t', { t: 'exit' });
    expect(await spored.wait('exit', 'doomed')).toMatchObject({ signal: 9 });
    expect(await spored.wait('exit', 'py-l2t')).toMatchObject({ code: 0, signal: null, timedOut: false });
    expect(alive(d)).toBe(false);
  });

  it('EOF on the control socket: the zygote, its child seeds and instances exit', async () => {
    spored.send('py-l1', { t: 'fork', id: 'orphan1', bind: NO_BIND, timeoutMs: 0, load: null });
    spored.send('py-l2', { t: 'fork', id: 'orphan2', bind: NO_BIND, timeoutMs: 0, load: null });
    const o1 = (await spored.wait('forked', 'orphan1')).pid;
    const o2 = (await spored.wait('forked', 'orphan2')).pid;
    const l2 = (await spored.wait('hello', 'py-l2')).pid;
    pids.push(o1, o2);
    const all = [zygote.pid!, o1, o2, l2];
    expect(all.every(alive)).toBe(true);
    const exited = new Promise((res) => zygote.once('exit', (code, sig) => res({ code, sig })));
    spored.close();
    expect(await exited).toEqual({ code: 0, sig: null });
    expect(await until(() => !all.some(alive))).toBe(true);
  });
});
