// spored's side of the keeper's control protocol (daemon/keeper-link.ts) against a keeper
// played by this test: a client's FIFO is opened by the keeper when its hello lists 'open'
// (held before spored has it), and opened here and parked with a keeper that predates it.
import { execFileSync } from 'node:child_process';
import { fstatSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { KeeperLink } from '../daemon/keeper-link.js';
import * as sys from '../sys/libc.js';
import { KEEPER_PROTOCOL, type SporedMessage } from '../protocols/keeper.js';

const dir = mkdtempSync(join(tmpdir(), 'spore-keeper-link-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A keeper that is this process: it opens what it is asked to and answers with its fd. */
function fakeKeeper(sock: string, features: string[] | undefined, opts: { syncs?: boolean } = {}): Promise<{ server: net.Server; seen: SporedMessage[]; held: number[] }> {
  const seen: SporedMessage[] = [];
  const held: number[] = [];
  const server = net.createServer((c) => {
    c.write(JSON.stringify({ t: 'hello', protocol: KEEPER_PROTOCOL, keeperPid: process.pid, generation: 1, reaped: [], parked: [], ...(features ? { features } : {}) }) + '\n');
    let buf = '';
    c.setEncoding('utf8');
    c.on('data', (d: string) => {
      buf += d;
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const m = JSON.parse(buf.slice(0, nl)) as SporedMessage;
        buf = buf.slice(nl + 1);
        seen.push(m);
        if (m.t === 'open') {
          try {
            const fd = sys.open(m.path, m.flags | sys.O.CLOEXEC);
            held.push(fd);
            c.write(JSON.stringify({ t: 'parked', key: m.key, ok: true, fd }) + '\n');
          } catch (e) {
            c.write(JSON.stringify({ t: 'parked', key: m.key, ok: false, error: (e as Error).message }) + '\n');
          }
        } else if (m.t === 'park') {
          c.write(JSON.stringify({ t: 'parked', key: m.key, ok: true }) + '\n');
        } else if (m.t === 'sync' && opts.syncs) {
          // an exit reaped just now goes out before the answer, as the keeper's reap() writes it
          c.write(JSON.stringify({ t: 'reaped', exit: { pid: 4242, status: 7 << 8, at: new Date().toISOString() } }) + '\n');
          c.write(JSON.stringify({ t: 'synced', id: m.id }) + '\n');
        }
      }
    });
  });
  return new Promise((resolve) => server.listen(sock, () => resolve({ server, seen, held })));
}

describe('KeeperLink.open', () => {
  const fifo = join(dir, 'c1-stdout');
  execFileSync('mkfifo', [fifo]);

  it('asks a keeper that can to open the FIFO, and gets a duplicate of the keeper\'s own end', async () => {
    const k = await fakeKeeper(join(dir, 'k1.sock'), ['open']);
    const link = await KeeperLink.connect(join(dir, 'k1.sock'));
    try {
      const fd = await link.open('default/c1/init/relay-stdout-dst', fifo, sys.O.RDWR | sys.O.NONBLOCK);
      expect(k.seen.map((m) => m.t)).toEqual(['open']);
      expect(fstatSync(fd).ino).toBe(statSync(fifo).ino);
      expect(k.held).toHaveLength(1);
      expect(fd).not.toBe(k.held[0]); // spored's own duplicate, not the keeper's fd
      expect(link.keys()).toContain('default/c1/init/relay-stdout-dst');
      sys.close(fd);
      await expect(link.open('default/c1/init/x', join(dir, 'missing'), sys.O.RDONLY)).rejects.toThrow(/keeper could not take .*x: .*ENOENT/);
    } finally {
      link.close();
      k.server.close();
      for (const fd of k.held) sys.close(fd);
    }
  });

  it('with a keeper that predates open: opened here and parked', async () => {
    const k = await fakeKeeper(join(dir, 'k2.sock'), undefined);
    const link = await KeeperLink.connect(join(dir, 'k2.sock'));
    try {
      const fd = await link.open('default/c1/init/relay-stdout-dst', fifo, sys.O.RDWR | sys.O.NONBLOCK);
      expect(k.seen.map((m) => m.t)).toEqual(['park']);
      expect(fstatSync(fd).ino).toBe(statSync(fifo).ino);
      sys.close(fd);
    } finally {
      link.close();
      k.server.close();
    }
  });
});

describe('KeeperLink.sync (the round trip before the lost-process sweep)', () => {
  it('resolves after the exits the keeper reaped before its answer were delivered', async () => {
    const k = await fakeKeeper(join(dir, 'k3.sock'), ['open', 'sync'], { syncs: true });
    const link = await KeeperLink.connect(join(dir, 'k3.sock'));
    try {
      const reaped: number[] = [];
      link.on('reaped', (e) => reaped.push(e.pid));
      await link.sync();
      expect(reaped).toEqual([4242]);
      expect(k.seen.map((m) => m.t)).toEqual(['sync']);
    } finally {
      link.close();
      k.server.close();
    }
  });

  it('exits reaped before spored listens (its seed attached, its tasks restored) wait in reapedBefore: none is lost (helper-56)', async () => {
    await fakeKeeper(join(dir, 'k3b.sock'), ['open', 'sync'], { syncs: true }).then(async (k) => {
      const link = await KeeperLink.connect(join(dir, 'k3b.sock'));
      try {
        await link.sync(); // its 'reaped' comes first, with no listener yet
        expect(link.reapedBefore.map((e) => e.pid)).toEqual([4242]);
        const later: number[] = [];
        link.on('reaped', (e) => later.push(e.pid));
        await link.sync();
        expect(later).toEqual([4242]);
        expect(link.reapedBefore).toHaveLength(1);
      } finally {
        link.close();
        k.server.close();
      }
    });
  });

  it('with a keeper that predates sync: resolves at once, sends nothing', async () => {
    const k = await fakeKeeper(join(dir, 'k4.sock'), ['open']);
    const link = await KeeperLink.connect(join(dir, 'k4.sock'));
    try {
      await link.sync();
      await new Promise((r) => setTimeout(r, 50));
      expect(k.seen).toEqual([]);
    } finally {
      link.close();
      k.server.close();
    }
  });

  it('a keeper that lists sync but never answers: resolves after the timeout', async () => {
    const k = await fakeKeeper(join(dir, 'k5.sock'), ['sync']);
    const link = await KeeperLink.connect(join(dir, 'k5.sock'));
    try {
      const t0 = Date.now();
      await link.sync(300);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(280);
      expect(k.seen.map((m) => m.t)).toEqual(['sync']);
    } finally {
      link.close();
      k.server.close();
    }
  });
});
