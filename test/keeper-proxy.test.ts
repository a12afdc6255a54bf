// The keeper's hold on a containerd connection (keeper/proxy.ts), against fake spored
// servers that answer ttrpc frames: requests open when spored goes away are sent again to
// the next one, in stream order; containerd's side never closes; one answer per stream.
import net from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FrameDecoder, FrameType, encodeFrame } from '../protocols/ttrpc/frame.js';
import { HeldConnection, REPLAY_METADATA_KEY, markReplay } from '../keeper/proxy.js';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { RequestSchema, ResponseSchema } from '../fri-proto/gen/ttrpc/request_pb.js';

/** A fake spored: answers each request with its own data, unless told to stay silent. */
class FakeSpored {
  server!: net.Server;
  seen: number[] = [];
  conns = new Set<net.Socket>();
  silent = false;
  constructor(readonly path: string) {}
  listen(): Promise<void> {
    this.server = net.createServer((c) => {
      this.conns.add(c);
      const dec = new FrameDecoder();
      c.on('data', (chunk: Buffer) => {
        for (const d of dec.push(chunk)) {
          if (d.kind !== 'frame' || d.frame.type !== FrameType.Request) continue;
          this.seen.push(d.frame.streamId);
          if (!this.silent) c.write(encodeFrame({ streamId: d.frame.streamId, type: FrameType.Response, flags: 0 }, d.frame.data));
        }
      });
      c.on('error', () => undefined);
    });
    return new Promise((r) => this.server.listen(this.path, () => r()));
  }
  /** die like a killed process: connections cut, nothing answered */
  kill(): Promise<void> {
    for (const c of this.conns) c.destroy();
    return new Promise((r) => this.server.close(() => r()));
  }
}

describe('keeper: held containerd connection', () => {
  let dir: string;
  let sock: string;
  beforeEach(() => { dir = mkdtempSync(join(tmpdir(), 'spore-keeper-')); sock = join(dir, 'spored.sock'); });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const connector = (path: string) => (): Promise<net.Socket | null> => new Promise((resolve) => {
    const s = net.connect(path);
    s.once('connect', () => resolve(s));
    s.once('error', () => resolve(null));
  });

  /** a containerd-side socket pair: what containerd writes reaches the keeper and back */
  async function containerdPair(): Promise<{ client: net.Socket; keeperSide: net.Socket; answers: Map<number, Buffer[]>; closed: () => boolean }> {
    const path = join(dir, `k-${Math.random().toString(36).slice(2)}.sock`);
    const accepted = new Promise<net.Socket>((resolve) => { const srv = net.createServer((c) => { resolve(c); srv.close(); }); srv.listen(path); });
    const client = net.connect(path);
    await new Promise((r) => client.once('connect', r));
    const keeperSide = await accepted;
    const answers = new Map<number, Buffer[]>();
    const dec = new FrameDecoder();
    let isClosed = false;
    client.on('data', (c: Buffer) => { for (const d of dec.push(c)) if (d.kind === 'frame') answers.set(d.frame.streamId, [...(answers.get(d.frame.streamId) ?? []), d.frame.data]); });
    client.on('close', () => { isClosed = true; });
    return { client, keeperSide, answers, closed: () => isClosed };
  }

  const req = (id: number, text: string): Buffer => encodeFrame({ streamId: id, type: FrameType.Request, flags: 0 }, Buffer.from(text));
  const until = async (f: () => boolean, ms = 3000): Promise<void> => { const t = Date.now() + ms; while (!f()) { if (Date.now() > t) throw new Error('timed out'); await new Promise((r) => setTimeout(r, 10)); } };

  it('relays requests and answers unchanged', async () => {
    const spored = new FakeSpored(sock);
    await spored.listen();
    const c = await containerdPair();
    const held = new HeldConnection(c.keeperSide, connector(sock));
    c.client.write(Buffer.concat([req(1, 'a'), req(3, 'b')]));
    await until(() => c.answers.size === 2);
    expect(c.answers.get(1)?.[0]?.toString()).toBe('a');
    expect(c.answers.get(3)?.[0]?.toString()).toBe('b');
    expect(held.pending).toBe(0);
    held.close();
    await spored.kill();
  });

  it('holds requests across spored\'s death and sends them again, in order, to the next spored', async () => {
    const first = new FakeSpored(sock);
    first.silent = true; // takes the requests and dies before answering
    await first.listen();
    const c = await containerdPair();
    const held = new HeldConnection(c.keeperSide, connector(sock), { retryMs: 20 });
    c.client.write(req(1, 'wait-1'));
    c.client.write(req(3, 'wait-3'));
    await until(() => first.seen.length === 2);
    await first.kill();
    // meanwhile containerd sends more; its connection stays open
    c.client.write(req(5, 'create-5'));
    await new Promise((r) => setTimeout(r, 100));
    expect(c.closed()).toBe(false);
    expect(held.connected).toBe(false);
    const second = new FakeSpored(sock);
    await second.listen();
    await until(() => c.answers.size === 3);
    expect(second.seen).toEqual([1, 3, 5]);
    expect([...c.answers.keys()].sort()).toEqual([1, 3, 5]);
    expect(c.answers.get(5)?.[0]?.toString()).toBe('create-5');
    held.close();
    await second.kill();
  });

  it('gives containerd one answer per stream even when a replayed request is answered twice', async () => {
    const first = new FakeSpored(sock);
    await first.listen();
    const c = await containerdPair();
    const held = new HeldConnection(c.keeperSide, connector(sock), { retryMs: 20 });
    c.client.write(req(1, 'x'));
    await until(() => c.answers.size === 1);
    // a duplicate answer for an already answered stream (spored answered, then died before
    // the keeper saw it: the replay is answered again)
    for (const conn of first.conns) conn.write(encodeFrame({ streamId: 1, type: FrameType.Response, flags: 0 }, Buffer.from('again')));
    await new Promise((r) => setTimeout(r, 50));
    expect(c.answers.get(1)).toHaveLength(1);
    held.close();
    await first.kill();
  });

  it('drops a frame cut in half by spored\'s death and closes spored\'s side when containerd goes', async () => {
    const first = new FakeSpored(sock);
    first.silent = true;
    await first.listen();
    const c = await containerdPair();
    const held = new HeldConnection(c.keeperSide, connector(sock), { retryMs: 20 });
    c.client.write(req(7, 'y'));
    await until(() => first.seen.length === 1);
    const half = encodeFrame({ streamId: 7, type: FrameType.Response, flags: 0 }, Buffer.from('partial-answer'));
    for (const conn of first.conns) conn.write(half.subarray(0, 12));
    await new Promise((r) => setTimeout(r, 30));
    await first.kill();
    const second = new FakeSpored(sock);
    await second.listen();
    await until(() => c.answers.size === 1);
    expect(c.answers.get(7)?.[0]?.toString()).toBe('y');
    c.client.destroy();
    await until(() => [...second.conns].every((s) => s.destroyed || s.readableEnded));
    expect(held.connected).toBe(false);
    await second.kill();
  });

  /** a real ttrpc Request frame (service/method), as containerd sends it */
  const ttrpcReq = (id: number, method: string): Buffer => encodeFrame(
    { streamId: id, type: FrameType.Request, flags: 0 },
    Buffer.from(toBinary(RequestSchema, create(RequestSchema, { service: 'containerd.task.v2.Task', method, payload: new Uint8Array([1, 2]) }))),
  );
  const metaOf = (frame: Buffer): string[] => {
    const d = new FrameDecoder().push(frame)[0];
    if (!d || d.kind !== 'frame') throw new Error('no frame');
    return fromBinary(RequestSchema, d.frame.data).metadata.map((kv) => `${kv.key}=${kv.value}`);
  };

  it('marks a request sent again as a replay only when a spored had received it', async () => {
    expect(metaOf(markReplay(ttrpcReq(1, 'Start')))).toEqual([`${REPLAY_METADATA_KEY}=1`]);
    expect(metaOf(markReplay(markReplay(ttrpcReq(1, 'Start'))))).toEqual([`${REPLAY_METADATA_KEY}=1`]); // once
    expect(markReplay(req(1, 'not a ttrpc request')).toString()).toContain('not a ttrpc request'); // left alone
    // through the hold: 'Wait' reached the first spored, 'Create' arrived while it was down
    const first = new FakeSpored(sock);
    first.silent = true;
    const frames: Buffer[] = [];
    await first.listen();
    const c = await containerdPair();
    const held = new HeldConnection(c.keeperSide, connector(sock), { retryMs: 20 });
    c.client.write(ttrpcReq(1, 'Wait'));
    await until(() => first.seen.length === 1);
    await first.kill();
    // (a request written to a spored that is dying counts as received: it may have been)
    await until(() => !held.connected);
    c.client.write(ttrpcReq(3, 'Create'));
    const second = net.createServer((conn) => {
      const dec = new FrameDecoder();
      conn.on('data', (chunk: Buffer) => { for (const d of dec.push(chunk)) if (d.kind === 'frame') frames.push(encodeFrame(d.frame, d.frame.data)); });
    });
    await new Promise<void>((r) => second.listen(sock, () => r()));
    await until(() => frames.length === 2);
    expect(metaOf(frames[0] as Buffer)).toEqual([`${REPLAY_METADATA_KEY}=1`]);
    expect(metaOf(frames[1] as Buffer)).toEqual([]);
    held.close();
    await new Promise((r) => second.close(() => r(null)));
  });

  it('answers UNAVAILABLE when no spored comes back within maxDownMs, then at once until one does', async () => {
    const c = await containerdPair();
    const held = new HeldConnection(c.keeperSide, connector(sock), { retryMs: 20, maxDownMs: 300, downMessage: 'spored is gone; see its log' });
    const t0 = Date.now();
    c.client.write(ttrpcReq(1, 'Create'));
    await until(() => c.answers.size === 1);
    const waited = Date.now() - t0;
    expect(waited).toBeGreaterThanOrEqual(280);
    const status = (id: number) => fromBinary(ResponseSchema, c.answers.get(id)?.[0] ?? new Uint8Array()).status;
    expect(status(1)).toMatchObject({ code: 14, message: 'spored is gone; see its log' });
    const t1 = Date.now();
    c.client.write(ttrpcReq(3, 'State'));
    await until(() => c.answers.has(3));
    expect(Date.now() - t1).toBeLessThan(250); // fail fast now
    expect(held.pending).toBe(0);
    // spored is back: requests are relayed again
    const spored = new FakeSpored(sock);
    await spored.listen();
    await until(() => held.connected);
    c.client.write(req(5, 'after'));
    await until(() => c.answers.has(5));
    expect(c.answers.get(5)?.[0]?.toString()).toBe('after');
    held.close();
    await spored.kill();
  });

  it('lets the stand-in answer a request spored leaves unanswered after afterMs, at once while it owes, and never twice', async () => {
    const spored = new FakeSpored(sock);
    spored.silent = true; // hung: connected, answers nothing
    await spored.listen();
    let asked = 0;
    let owing = false;
    const policy = {
      afterMs: 150,
      answer: (f: { streamId: number; data: Buffer }) => {
        asked++;
        // only "Connect" is the keeper's to answer
        if (fromBinary(RequestSchema, f.data).method !== 'Connect') return null;
        owing = true;
        return encodeFrame({ streamId: f.streamId, type: FrameType.Response, flags: 0 }, Buffer.from('stood-in'));
      },
      owing: () => owing,
      sporedAnswered: () => { owing = false; },
    };
    const a = await containerdPair();
    const heldA = new HeldConnection(a.keeperSide, connector(sock), { standIn: policy });
    await until(() => heldA.connected);
    const t0 = Date.now();
    a.client.write(Buffer.concat([ttrpcReq(1, 'Connect'), ttrpcReq(3, 'State')]));
    await until(() => a.answers.has(1));
    expect(Date.now() - t0).toBeGreaterThanOrEqual(140);
    expect(a.answers.get(1)?.[0]?.toString()).toBe('stood-in');
    expect(heldA.pending).toBe(1); // State still waits for spored
    // a second connection (containerd's next shim) is answered at once: the keeper owes
    const b = await containerdPair();
    const heldB = new HeldConnection(b.keeperSide, connector(sock), { standIn: policy });
    const t1 = Date.now();
    b.client.write(ttrpcReq(1, 'Connect'));
    await until(() => b.answers.has(1));
    expect(Date.now() - t1).toBeLessThan(120);
    // spored wakes up and first answers only what the keeper answered already: dropped, but
    // it is answering again
    spored.silent = false;
    const toA = [...spored.conns][0] as net.Socket;
    toA.write(encodeFrame({ streamId: 1, type: FrameType.Response, flags: 0 }, Buffer.from('late')));
    await until(() => !owing);
    // then the rest: containerd gets one answer per stream
    for (const c of spored.conns) c.write(Buffer.concat([encodeFrame({ streamId: 1, type: FrameType.Response, flags: 0 }, Buffer.from('late')), encodeFrame({ streamId: 3, type: FrameType.Response, flags: 0 }, Buffer.from('state'))]));
    await until(() => a.answers.has(3));
    await new Promise((r) => setTimeout(r, 50));
    expect(a.answers.get(1)).toHaveLength(1);
    expect(b.answers.get(1)).toHaveLength(1);
    expect(a.answers.get(3)?.[0]?.toString()).toBe('state');
    expect(owing).toBe(false); // spored answered: back to waiting afterMs
    expect(asked).toBeGreaterThanOrEqual(3);
    heldA.close();
    heldB.close();
    await spored.kill();
  });

  it('answers with the stand-in rather than UNAVAILABLE once spored is down too long', async () => {
    const c = await containerdPair();
    const policy = {
      afterMs: 10_000,
      answer: (f: { streamId: number; data: Buffer }) => (fromBinary(RequestSchema, f.data).method === 'Connect' ? encodeFrame({ streamId: f.streamId, type: FrameType.Response, flags: 0 }, Buffer.from('stood-in')) : null),
      owing: () => false,
      sporedAnswered: () => undefined,
    };
    const held = new HeldConnection(c.keeperSide, connector(sock), { retryMs: 20, maxDownMs: 100, standIn: policy });
    c.client.write(ttrpcReq(1, 'State'));
    await until(() => c.answers.has(1)); // UNAVAILABLE after maxDownMs
    c.client.write(Buffer.concat([ttrpcReq(3, 'Connect'), ttrpcReq(5, 'Pids')]));
    await until(() => c.answers.has(3) && c.answers.has(5));
    expect(c.answers.get(3)?.[0]?.toString()).toBe('stood-in');
    expect(fromBinary(ResponseSchema, c.answers.get(5)?.[0] ?? new Uint8Array()).status?.code).toBe(14);
    held.close();
  });
});
