// Interop: our TtrpcClient against a real (private) containerd's ttrpc server, the same path a
// shim uses to publish task events ($TTRPC_ADDRESS, Events/Forward).
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { create, toBinary } from '@bufbuild/protobuf';
import { EmptySchema, timestampNow } from '@bufbuild/protobuf/wkt';
import { Events } from '../fri-proto/gen/containerd/services/ttrpc/events/v1/events_pb.js';
import { TaskOOMSchema } from '../fri-proto/gen/containerd/events/task_pb.js';
import { Code, SporeError } from '../sys/errors.js';
import { TtrpcClient, clientFor } from '../protocols/ttrpc/index.js';

const CONTAINERD = '/usr/bin/containerd';
const CTR = '/usr/bin/ctr';

function skipReason(): string | undefined {
  if (!fs.existsSync(CONTAINERD) || !fs.existsSync(CTR)) return `containerd/ctr not installed at ${CONTAINERD}, ${CTR}`;
  if (process.getuid?.() !== 0) return 'needs root to run a private containerd';
  return undefined;
}
const reason = skipReason();
if (reason !== undefined) console.warn(`skipping containerd ttrpc interop: ${reason}`);

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function canConnect(p: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(p);
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}

async function waitFor(what: string, check: () => Promise<boolean> | boolean, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await check()) return;
    await sleep(50);
  }
  throw new Error(`timed out waiting for ${what}`);
}

async function stop(child: ChildProcess | undefined): Promise<void> {
  if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  const killTimer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(killTimer);
}

describe.skipIf(reason !== undefined)('ttrpc interop with real containerd', () => {
  let dir: string;
  let grpcSock: string;
  let ttrpcSock: string;
  let containerd: ChildProcess | undefined;
  let ctrEvents: ChildProcess | undefined;
  let eventsOut = '';
  let containerdLog = '';
  let client: TtrpcClient | undefined;

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spore-ctrd-'));
    grpcSock = path.join(dir, 'c.sock');
    ttrpcSock = `${grpcSock}.ttrpc`;
    const config = [
      'version = 2',
      `root = ${JSON.stringify(path.join(dir, 'root'))}`,
      `state = ${JSON.stringify(path.join(dir, 'state'))}`,
      'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
      '[grpc]',
      `  address = ${JSON.stringify(grpcSock)}`,
      '[ttrpc]',
      `  address = ${JSON.stringify(ttrpcSock)}`,
      '[plugins."io.containerd.internal.v1.opt"]',
      `  path = ${JSON.stringify(path.join(dir, 'opt'))}`,
      '',
    ].join('\n');
    const cfgPath = path.join(dir, 'config.toml');
    fs.writeFileSync(cfgPath, config);
    containerd = spawn(CONTAINERD, ['--config', cfgPath], { stdio: ['ignore', 'pipe', 'pipe'] });
    containerd.stdout?.on('data', (b: Buffer) => { containerdLog += b.toString(); });
    containerd.stderr?.on('data', (b: Buffer) => { containerdLog += b.toString(); });
    try {
      await waitFor('containerd sockets', async () => (await canConnect(ttrpcSock)) && (await canConnect(grpcSock)), 30_000);
    } catch (err) {
      throw new Error(`${(err as Error).message}\ncontainerd log:\n${containerdLog.slice(-4000)}`);
    }
    ctrEvents = spawn(CTR, ['-a', grpcSock, 'events'], { stdio: ['ignore', 'pipe', 'pipe'] });
    ctrEvents.stdout?.on('data', (b: Buffer) => { eventsOut += b.toString(); });
    ctrEvents.stderr?.on('data', (b: Buffer) => { eventsOut += b.toString(); });
    client = await TtrpcClient.connect(ttrpcSock);
  }, 60_000);

  afterAll(async () => {
    client?.close();
    await stop(ctrEvents);
    await stop(containerd);
    if (dir !== undefined) fs.rmSync(dir, { recursive: true, force: true });
  }, 30_000);

  it('Forward(TaskOOM envelope) is accepted and reaches `ctr events` subscribers', async () => {
    if (client === undefined) throw new Error('no client');
    const events = clientFor(Events, client);
    const containerId = `spore-oom-${process.pid}`;
    const envelope = {
      timestamp: timestampNow(),
      namespace: 'default',
      topic: '/tasks/oom',
      // typeurl v2 uses the bare full name, no type.googleapis.com/ prefix.
      event: {
        typeUrl: TaskOOMSchema.typeName,
        value: toBinary(TaskOOMSchema, create(TaskOOMSchema, { containerId })),
      },
    };
    // ctr gives no "subscribed" signal, so re-forward until the subscriber prints it.
    const deadline = Date.now() + 20_000;
    while (!eventsOut.includes(containerId)) {
      if (Date.now() > deadline) throw new Error(`ctr events never printed the event; output:\n${eventsOut}`);
      const res = await events.forward({ envelope }, { namespace: 'default', timeoutMs: 5000 });
      expect(res.$typeName).toBe('google.protobuf.Empty');
      await sleep(300);
    }
    const line = eventsOut.split('\n').find((l) => l.includes(containerId)) ?? '';
    expect(line).toContain('/tasks/oom');
    // ctr decoded our Any back into JSON, so type_url and payload were understood.
    expect(line).toContain(`{"container_id":"${containerId}"}`);
    expect(line).toContain('default');
    expect(line).toContain(containerId);
  }, 40_000);

  it('the Go server answers UNIMPLEMENTED for an unknown method', async () => {
    if (client === undefined) throw new Error('no client');
    const err = await client
      .call('containerd.services.events.ttrpc.v1.Events', 'NoSuchMethod', EmptySchema, EmptySchema, {}, { namespace: 'default' })
      .then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(SporeError);
    expect((err as SporeError).code).toBe(Code.UNIMPLEMENTED);
    expect((err as SporeError).message).toMatch(/NoSuchMethod/);
  });

  it('rejects an envelope without a namespace with a gRPC-mapped error (not a protocol failure)', async () => {
    if (client === undefined) throw new Error('no client');
    const err = await clientFor(Events, client)
      .forward({ envelope: { topic: '/tasks/oom', event: { typeUrl: TaskOOMSchema.typeName, value: new Uint8Array() } } })
      .then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(SporeError);
    expect((err as SporeError).code).not.toBe(Code.OK);
    expect((err as SporeError).code).not.toBe(Code.UNAVAILABLE);
  });
});
