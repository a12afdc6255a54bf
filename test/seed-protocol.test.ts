// Both language seeds (seeds/node/seed.ts and seeds/python/zygote.py) against one fake
// spored that speaks seeds/protocol.ts, fds and all (SCM_RIGHTS through the same syscall
// layer spored uses). The same cases run for each language: the protocol is one.
// As root, a seed also builds a real function lineage from a SandboxPlan and serves an
// instance through a channel, so each executor is exercised end to end.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync, readdirSync, lstatSync, readlinkSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import * as sys from '../sys/libc.js';
import { SEED_FLAGS } from '../engines/process/seed-client.js';
import { functionSandbox, type RuntimeEntry } from '../functions/sandbox.js';
import { compileSeccomp, defaultProfile } from '../pools/seccomp.js';
import { checkFromSeed, type FromSeed, type ToSeed } from '../seeds/protocol.js';

const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
const ZYGOTE = fileURLToPath(new URL('../seeds/python/zygote.py', import.meta.url));
const NODE_SEED = fileURLToPath(new URL('../dist/seeds/node/seed.js', import.meta.url));
const ROOTFS = process.env.SPORE_ROOTFS_DIR ?? '/var/lib/spore/rootfs';
const root = process.getuid?.() === 0;

/** messages the seeds sent that spored's check (checkFromSeed) refuses: none, ever */
const notProtocol: string[] = [];
afterAll(() => { expect(notProtocol).toEqual([]); });

/** One seed link seen from spored's side: lines in, lines (with fds) out. */
class Link {
  msgs: FromSeed[] = [];
  closed = false;
  private waiters: (() => void)[] = [];
  readonly sock: net.Socket;

  constructor(readonly fd: number, sock?: net.Socket) {
    this.sock = sock ?? new net.Socket({ fd, readable: true, writable: false });
    let buf = '';
    this.sock.setEncoding('utf8');
    this.sock.on('data', (d: string) => {
      buf += d;
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        const m = JSON.parse(buf.slice(0, i)) as FromSeed;
        // what spored's SeedLink checks (it closes the link on a message that fails)
        const c = checkFromSeed(m);
        if (!c.ok) notProtocol.push(`${JSON.stringify(m).slice(0, 200)}: ${c.why}`);
        this.msgs.push(m);
        buf = buf.slice(i + 1);
      }
      this.wake();
    });
    this.sock.on('close', () => { this.closed = true; this.wake(); });
    this.sock.on('error', () => undefined);
  }

  private wake(): void { for (const w of this.waiters.splice(0)) w(); }

  send(m: ToSeed, fds: number[] = []): void {
    sys.sendWithFds(this.fd, Buffer.from(JSON.stringify(m) + '\n'), fds);
    for (const f of fds) sys.close(f);
  }

  /** All of `text`, however many writes the (non-blocking) socket takes. */
  async sendRaw(text: string): Promise<void> {
    let data = Buffer.from(text);
    while (data.length) {
      const n = sys.sendWithFds(this.fd, data, [], true);
      if (n < 0) { await new Promise((r) => setTimeout(r, 5)); continue; }
      data = data.subarray(n);
    }
  }

  async wait<T extends FromSeed['t']>(t: T, id: string, timeoutMs = 8000): Promise<Extract<FromSeed, { t: T }>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = this.msgs.find((x) => x.t === t && (x as { id?: string }).id === id);
      if (m) return m as Extract<FromSeed, { t: T }>;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${t} ${id}; got ${JSON.stringify(this.msgs)}`);
      await new Promise<void>((r) => { this.waiters.push(r); setTimeout(r, 100); });
    }
  }

  async untilClosed(timeoutMs = 5000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed && Date.now() < deadline) await new Promise<void>((r) => { this.waiters.push(r); setTimeout(r, 50); });
    return this.closed;
  }
}

/** Read one line from a raw socket fd (the instance channel) without libuv. */
async function channelLine(s: net.Socket, timeoutMs = 8000): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const t = setTimeout(() => reject(new Error(`no line on the channel in ${timeoutMs} ms (got ${JSON.stringify(buf)})`)), timeoutMs);
    s.setEncoding('utf8');
    s.on('data', (d: string) => {
      buf += d;
      const i = buf.indexOf('\n');
      if (i >= 0) { clearTimeout(t); resolve(buf.slice(0, i)); }
    });
  });
}

const langs = [
  { language: 'node' as const, start: (sock: string, id: string): ChildProcess => spawn(process.execPath, [...SEED_FLAGS, '--input-type=module', '-e', `import(${JSON.stringify(NODE_SEED)}).then((m) => m.main(process.argv.slice(1)))`, sock, id], { stdio: ['ignore', 'inherit', 'inherit'] }) },
  { language: 'python' as const, start: (sock: string, id: string): ChildProcess => spawn(PYTHON, ['-S', '-E', ZYGOTE, sock, id], { stdio: ['ignore', 'inherit', 'inherit'] }) },
];

describe.each(langs)('$language seed protocol', ({ language, start }) => {
  let dir: string;
  let server: net.Server;
  let child: ChildProcess;
  let link: Link;

  beforeAll(() => { dir = mkdtempSync(join(tmpdir(), `spore-seedproto-${language}-`)); });
  afterAll(() => { rmSync(dir, { recursive: true, force: true }); });
  afterEach(async () => {
    child?.kill('SIGKILL');
    await new Promise<void>((r) => server.close(() => r()));
  });

  /** A fresh L1 seed connected to a fresh fake spored. */
  async function l1(id: string): Promise<void> {
    const sock = join(dir, `${id}.sock`);
    const accepted = new Promise<net.Socket>((resolve) => { server = net.createServer(resolve); server.listen(sock); });
    child = start(sock, id);
    const s = await accepted;
    const fd = (s as unknown as { _handle: { fd: number } })._handle.fd;
    link = new Link(fd, s);
  }

  it('says hello and ready, with its own pid (what SO_PEERCRED shows)', async () => {
    await l1('l1-a');
    const hello = await link.wait('hello', 'l1-a');
    expect(hello).toMatchObject({ language, level: 1, pid: child.pid });
    expect(sys.peerCred(link.fd).pid).toBe(child.pid);
    await link.wait('ready', 'l1-a');
  });

  it('refuses instances (no function), seeds without fds or plan, and closes the fds it was given', async () => {
    await l1('l1-b');
    await link.wait('ready', 'l1-b');
    const [mine, theirs] = sys.socketpair();
    const ch = new net.Socket({ fd: mine, readable: true, writable: false });
    const eof = new Promise<void>((r) => ch.on('close', () => r()));
    ch.on('error', () => undefined);
    link.send({ t: 'fork', id: 'i-1', nfds: 1, slot: 0, timeoutMs: 1000 }, [theirs]);
    expect((await link.wait('forkFailed', 'i-1')).message).toMatch(/function/);
    await eof; // the seed closed its copy of the channel
    link.send({ t: 'seed', id: 's-1', nfds: 2 });
    expect((await link.wait('forkFailed', 's-1')).message).toMatch(/without its fds/);
    const [a, b] = sys.socketpair();
    const [c, d] = sys.socketpair();
    sys.close(a);
    sys.close(c);
    link.send({ t: 'seed', id: 's-2', nfds: 2, load: { module: '/var/task/index', handler: 'handler' } }, [b, d]);
    expect((await link.wait('forkFailed', 's-2')).message).toMatch(/sandbox plan/);
    link.send({ t: 'stats' });
    expect(await link.wait('stats', 'l1-b')).toMatchObject({ children: 0, pid: child.pid });
  });

  it('ignores lines that are not JSON, and exits on a frame no message could be', async () => {
    await l1('l1-c');
    await link.wait('ready', 'l1-c');
    await link.sendRaw('not json\n{"t":"nope"}\n');
    link.send({ t: 'stats' });
    await link.wait('stats', 'l1-c');
    void link.sendRaw('x'.repeat(2 * 1024 * 1024)).catch(() => undefined);
    expect(await link.untilClosed()).toBe(true);
  });

  it('exits when spored says exit, and when the link closes', async () => {
    await l1('l1-d');
    await link.wait('ready', 'l1-d');
    const gone = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    link.send({ t: 'exit' });
    expect(await gone).toBe(0);
    await new Promise<void>((r) => server.close(() => r()));
    await l1('l1-e');
    await link.wait('ready', 'l1-e');
    const gone2 = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    link.sock.destroy();
    expect(await gone2).toBe(0);
  });

  it.skipIf(!root || !existsSync(join(ROOTFS, language)))('builds a function lineage from a plan and serves an instance through its channel', async () => {
    await l1('l1-f');
    await link.wait('ready', 'l1-f');
    const pkg = join(dir, `pkg-${language}`);
    mkdirSync(pkg, { recursive: true });
    if (language === 'node') writeFileSync(join(pkg, 'index.js'), 'const os = require("os"), fs = require("fs"); exports.handler = async (e, c) => ({ echo: e, uid: process.getuid(), host: os.hostname(), fn: c.functionName, tmp: fs.realpathSync("/tmp"), secret: process.env.SECRET });');
    else writeFileSync(join(pkg, 'main.py'), 'import os, socket\ndef handler(e, c):\n    return {"echo": e, "uid": os.getuid(), "host": socket.gethostname(), "fn": c.function_name, "tmp": os.path.realpath("/tmp"), "secret": os.environ.get("SECRET")}\n');
    const staging = join(dir, `staging-${language}`);
    mkdirSync(staging, { recursive: true });
    const rootDir = join(ROOTFS, language);
    const entries: RuntimeEntry[] = readdirSync(rootDir).map((name) => {
      const st = lstatSync(join(rootDir, name));
      return st.isSymbolicLink() ? { name, kind: 'symlink' as const, target: readlinkSync(join(rootDir, name)) } : { name, kind: st.isDirectory() ? 'dir' as const : 'file' as const };
    });
    const f = compileSeccomp(defaultProfile());
    const plan = functionSandbox({
      name: `proto-${language}`, version: 1, runtimeRoot: rootDir, runtimeEntries: entries, runtimeHasSsl: existsSync(join(rootDir, 'etc/ssl')),
      packageDir: pkg, staging, hostId: (1 << 30) + 16383 * 65536, cgroupProcs: [], memoryMiB: 128, tmpBytes: 1 << 20,
      seccomp: { filter: f.bpf.toString('base64'), flags: f.flags }, env: {},
    });
    const [mine, theirs] = sys.socketpair();
    const l2 = new Link(mine);
    l2.send({ t: 'env', env: { SECRET: 'only-on-the-lineage-link' } });
    const [logR, logW] = sys.pipe();
    sys.close(logR);
    link.send({ t: 'seed', id: 'l2-x', nfds: 2, load: { module: `/var/task/${language === 'node' ? 'index' : 'main'}`, handler: 'handler' }, sandbox: plan }, [theirs, logW]);
    await link.wait('forked', 'l2-x');
    await l2.wait('ready', 'l2-x', 15_000);
    const slot = 'c'.repeat(32);
    link.send({ t: 'slots', id: 'l2-x', slotDir: plan.slotDir, names: [slot], bytes: 1 << 20 });
    expect(await link.wait('slots', 'l2-x')).toMatchObject({ count: 1 });
    const [chMine, chTheirs] = sys.socketpair();
    const ch = new net.Socket({ fd: chMine, readable: true, writable: true });
    ch.write(JSON.stringify({ slot }) + '\n');
    l2.send({ t: 'fork', id: 'i-9', nfds: 1, timeoutMs: 5000 }, [chTheirs]);
    const forked = await l2.wait('forked', 'i-9');
    expect(forked.pid).toBeGreaterThan(1); // a pid in the lineage's own namespace
    const line = channelLine(ch);
    ch.write(JSON.stringify({ event: '{"n":7}', context: { functionName: 'proto', functionVersion: '1', requestId: 'i-9', deadlineMs: Date.now() + 5000, memoryLimitMiB: 128 } }) + '\n');
    const r = JSON.parse(await line) as { ok: boolean; value: string };
    expect(r.ok).toBe(true);
    expect(JSON.parse(r.value)).toEqual({ echo: { n: 7 }, uid: 1000, host: `proto-${language}`, fn: 'proto', tmp: `/.spore/tmp/${slot}`, secret: 'only-on-the-lineage-link' });
    expect(await l2.wait('exit', 'i-9')).toMatchObject({ code: 0, signal: null });
    ch.destroy();
    l2.sock.destroy();
    await link.wait('exit', 'l2-x');
  }, 30_000);
});

describe('what spored takes from a seed link (a function seed runs untrusted init code: red team, helper-55)', () => {
  it('checkFromSeed: each message type field by field; anything else is refused with the field named', () => {
    const ok = [
      { t: 'hello', id: 'l1-node', pid: 7, language: 'node', level: 1 },
      { t: 'ready', id: 'x', initMs: 1.5 },
      { t: 'failed', id: 'x', message: 'boom', stack: null, phase: 'load' },
      { t: 'failed', id: 'x', message: 'boom', stack: 'at x', phase: null },
      { t: 'forked', id: 'i1', pid: 9, forkUs: 800 },
      { t: 'forkFailed', id: 'i1', message: 'EAGAIN' },
      { t: 'exit', id: 'i1', pid: 9, code: 0, signal: null, timedOut: false },
      { t: 'exit', id: 'i1', pid: 9, code: null, signal: 9, timedOut: false },
      { t: 'stats', id: 'x', pid: 3, children: 2 },
      { t: 'slots', id: 'x', count: 4 },
      { t: 'slots', id: 'x', count: 0, error: 'no' },
    ];
    for (const m of ok) expect(checkFromSeed(m), JSON.stringify(m)).toEqual({ ok: true, m });
    const bad: [unknown, RegExp][] = [
      [null, /not an object/], [[1], /not an object/], [{ t: 'zz', id: 'x' }, /unknown message type "zz"/],
      [{ t: 'ready', initMs: 1 }, /bad id/], [{ t: 'ready', id: 'x'.repeat(300), initMs: 1 }, /bad id/],
      [{ t: 'ready', id: 'x', initMs: 'NaN' }, /bad initMs/], [{ t: 'ready', id: 'x', initMs: -1 }, /bad initMs/],
      [{ t: 'exit', id: 'x', pid: 1, code: 'X'.repeat(2000), signal: null, timedOut: false }, /bad code/],
      [{ t: 'exit', id: 'x', pid: 1, code: 256, signal: null, timedOut: false }, /bad code/],
      [{ t: 'exit', id: 'x', pid: 1, code: null, signal: 65, timedOut: false }, /bad signal/],
      [{ t: 'exit', id: 'x', pid: 1, code: 0, signal: null }, /bad timedOut/],
      [{ t: 'forked', id: 'x', pid: -1, forkUs: 1 }, /bad pid/],
      [{ t: 'failed', id: 'x', message: 'm'.repeat(70_000), stack: null }, /bad message/],
      [{ t: 'hello', id: 'x', pid: 1, language: 'ruby', level: 1 }, /bad language/],
      // a padded message under the count limit carried 1 MiB a line (helper-58)
      [{ t: 'stats', id: 'x', pid: 1, children: 0, pad: 'a'.repeat(100) }, /stats: unknown field "pad"/],
    ];
    for (const [m, why] of bad) {
      const c = checkFromSeed(m);
      expect(c.ok, JSON.stringify(m).slice(0, 80)).toBe(false);
      if (!c.ok) expect(c.why).toMatch(why);
    }
  });

  it('SeedLink closes on a message that is not the protocol, and on a flood of ones that are, naming why', async () => {
    const { SeedLink } = await import('../functions/seed-link.js');
    const { MAX_SEED_MESSAGES_PER_SECOND } = await import('../seeds/protocol.js');
    // the seed's end written through libuv (partial writes and a full buffer handled there)
    const run = async (chunks: Buffer[]): Promise<{ got: number; why: string }> => {
      const [ours, theirs] = sys.socketpair();
      let got = 0;
      const closed = new Promise<string>((resolve) => { new SeedLink(ours, () => { got++; }, resolve); });
      const seed = new net.Socket({ fd: theirs, readable: false, writable: true });
      seed.on('error', () => undefined); // EPIPE once spored's end is closed
      for (const c of chunks) seed.write(c);
      const why = await closed;
      seed.destroy();
      return { got, why };
    };
    const forged = await run([Buffer.from(`${JSON.stringify({ t: 'exit', id: 'l2-x-1', pid: 1, code: 'X'.repeat(2000), signal: null, timedOut: false })}\n`)]);
    expect(forged).toEqual({ got: 0, why: 'bad message from seed (exit: bad code)' });
    const unknown = await run([Buffer.from('{"t":"zz","id":"a"}\n')]);
    expect(unknown.why).toMatch(/unknown message type "zz"/);
    // valid messages, more than a second's allowance, as fast as the socket takes them
    const line = `${JSON.stringify({ t: 'stats', id: 'x', pid: 1, children: 0 })}\n`;
    const flood = await run(Array.from({ length: (MAX_SEED_MESSAGES_PER_SECOND + 5000) / 1000 }, () => Buffer.from(line.repeat(1000))));
    expect(flood.why).toBe(`seed sent over ${MAX_SEED_MESSAGES_PER_SECOND} messages in a second`);
    expect(flood.got).toBe(MAX_SEED_MESSAGES_PER_SECOND);
    // few messages, many bytes: valid `failed` lines with a stack near the line limit
    const { MAX_SEED_BYTES_PER_SECOND, MAX_SEED_LINE } = await import('../seeds/protocol.js');
    const big = Buffer.from(`${JSON.stringify({ t: 'failed', id: 'x', message: 'm', stack: 's'.repeat(MAX_SEED_LINE - 100), phase: 'load' })}\n`);
    const bytes = await run(Array.from({ length: Math.ceil(MAX_SEED_BYTES_PER_SECOND / big.length) + 2 }, () => big));
    expect(bytes.why).toBe(`seed sent over ${MAX_SEED_BYTES_PER_SECOND} bytes in a second`);
    expect(bytes.got).toBeLessThanOrEqual(Math.ceil(MAX_SEED_BYTES_PER_SECOND / big.length));
  });
});
