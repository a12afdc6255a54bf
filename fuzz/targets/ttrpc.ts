// Fuzz target 1: ttrpc framing and messages (protocols/ttrpc/frame.ts, protocols/ttrpc/server.ts),
// through containerd's Task service (task/service.ts, the real request handling) on a
// stub TaskManager, so every Task API request message is decoded from fuzzed bytes.
//
// Input: [config byte][chunking seed byte][the byte stream a client sends on one connection].
//   config bit 0..1: how the stream is cut into socket reads (whole, 1-byte, fixed, seeded)
//   config bit 2:    small message limit (256 bytes) instead of ttrpc's 4 MiB, so oversized
//                    frames (skipped by counting, answered RESOURCE_EXHAUSTED) are reachable
//
// Acceptable, per the ttrpc contract (anything else is a finding):
//  - FrameDecoder.push never throws, holds fewer bytes than one frame (or header) after each
//    push, and cut anywhere yields exactly the frames a plain parse of the whole stream does;
//  - the server answers every Request and Data frame exactly once, in a Response frame whose
//    data decodes as ttrpc.Response, with a status code 0..16 that is never UNKNOWN (a
//    non-OK status has a message; an OK one carries the method's output message);
//  - any other frame type is a protocol error: the connection is closed and reported, and
//    nothing after it is answered; nothing else closes the connection;
//  - all of it within the per-input deadline (no hang).
import { EventEmitter } from 'node:events';
import { fromBinary } from '@bufbuild/protobuf';
import type { DescMessage } from '@bufbuild/protobuf';
import pino from 'pino';
import { Code, FailedPrecondition, InvalidArgument, NotFound, Unavailable } from '../../sys/errors.js';
import { DEFAULT_MAX_DATA_LENGTH, FrameDecoder, FrameType, HEADER_LENGTH } from '../../protocols/ttrpc/frame.js';
import type { DecodedFrame } from '../../protocols/ttrpc/frame.js';
import { TtrpcServer } from '../../protocols/ttrpc/server.js';
import { ResponseSchema } from '../../fri-proto/gen/ttrpc/request_pb.js';
import { RequestSchema } from '../../fri-proto/gen/ttrpc/request_pb.js';
import { Task } from '../../fri-proto/gen/containerd/task/v2/shim_pb.js';
import { taskService } from '../../task/service.js';
import type { ContainerState, ProcState, TaskManager } from '../../task/tasks.js';
import type { CgroupLayout } from '../../pools/cgroups.js';
import { FuzzFinding, INPUT_DEADLINE_MS, codeName, describe, withDeadline, keepGoing } from '../lib/oracle.js';

const SMALL_MAX = 256;
const log = pino({ level: 'silent' });
const layout: CgroupLayout = { mode: 'v2', root: '/sys/fs/cgroup', v1: {}, unified: '/sys/fs/cgroup', unifiedControllers: [] };

// ---- a stub TaskManager: one running container "c1" (exec "e1") in namespace "default" ----

function proc(execId: string): ProcState {
  return {
    execId, pid: execId ? 4243 : 4242, status: 'running', exitStatus: 0, exitedAt: null,
    stdio: { stdin: '', stdout: '/run/fifo/out', stderr: '/run/fifo/err', terminal: '' }, terminal: false, spec: null,
  };
}

function container(ns: string, id: string, bundle = `/run/containerd/io.containerd.runtime.v2.task/${ns}/${id}`): ContainerState {
  return {
    id, namespace: ns, bundle, rootfs: `${bundle}/rootfs`, rootfsMounted: true,
    cgroup: {} as ContainerState['cgroup'], madeParents: [], pod: null, namespaces: [],
    init: proc(''), execs: new Map([['e1', proc('e1')]]), createdAt: new Date(0), timings: {}, hooks: null,
  };
}

const C1 = container('default', 'c1');

function get(ns: string, id: string): ContainerState {
  if (ns === 'default' && id === 'c1') return C1;
  throw new NotFound(`container ${id} not found in namespace ${ns}`);
}

function procOf(ns: string, id: string, execId: string): { c: ContainerState; p: ProcState } {
  const c = get(ns, id);
  if (!execId) return { c, p: c.init };
  const p = c.execs.get(execId);
  if (!p) throw new NotFound(`exec ${execId} not found in container ${id}`);
  return { c, p };
}

// (checked against TaskManager's methods it stands in for: a changed signature fails to compile)
const stubMethods = {
  get,
  proc: procOf,
  namespacesOf: (id: string) => (id === 'c1' ? ['default'] : []),
  async create(ns: string, id: string, bundle: string) {
    if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/.test(id)) throw new InvalidArgument(`invalid container id ${JSON.stringify(id)}`);
    if (ns === 'default' && id === 'c1') throw new FailedPrecondition('container c1 already exists');
    return container(ns, id, bundle);
  },
  async start(ns: string, id: string, execId: string) { return procOf(ns, id, execId).p; },
  kill(ns: string, id: string, execId: string, signal: number) {
    procOf(ns, id, execId);
    if (signal < 0 || signal > 64) throw new InvalidArgument(`invalid signal ${signal}`);
  },
  async wait(ns: string, id: string, execId: string) { return procOf(ns, id, execId).p; },
  async delete(ns: string, id: string, execId: string) { return procOf(ns, id, execId).p; },
  async createSettled() { /* no Create is ever in flight in the stub */ },
  pids(ns: string, id: string) { get(ns, id); return [{ pid: 4242 }, { pid: 4243, execId: 'e1' }]; },
  exec(ns: string, id: string, execId: string, processJson: Uint8Array) {
    get(ns, id);
    try {
      JSON.parse(Buffer.from(processJson).toString('utf8'));
    } catch (e) {
      throw new InvalidArgument(`exec spec is not valid JSON: ${(e as Error).message}`);
    }
  },
  resizePty(ns: string, id: string, execId: string) { procOf(ns, id, execId); throw new FailedPrecondition(`${execId || id} has no terminal`); },
  closeIO(ns: string, id: string, execId: string) { procOf(ns, id, execId); },
  pause(ns: string, id: string) { get(ns, id); },
  resume(ns: string, id: string) { get(ns, id); },
  update(ns: string, id: string) { get(ns, id); return []; },
  stats(ns: string, id: string) { get(ns, id); throw new Unavailable('stats: no cgroup in the fuzz stub'); },
} satisfies Partial<{ [K in keyof TaskManager]: TaskManager[K] extends (...a: never[]) => unknown ? (...a: Parameters<TaskManager[K]>) => ReturnType<TaskManager[K]> : never }>;
const stubTasks = stubMethods as unknown as TaskManager;

const outputByMethod = new Map<string, DescMessage>(Task.methods.map((m) => [m.name, m.output]));

// ---- a socket that records what the server writes ----

class FakeSocket extends EventEmitter {
  readonly written: Buffer[] = [];
  destroyed = false;
  writableLength = 0;
  write(b: Uint8Array): boolean {
    this.written.push(Buffer.from(b));
    return true;
  }
  pause(): this { return this; }
  resume(): this { return this; }
  destroy(): this {
    if (!this.destroyed) {
      this.destroyed = true;
      queueMicrotask(() => this.emit('close', false));
    }
    return this;
  }
}

// ---- the reference parse the decoder is compared with ----

interface RefFrame { length: number; streamId: number; type: number; flags: number; data: Buffer | null }

function referenceParse(stream: Buffer, max: number): RefFrame[] {
  const out: RefFrame[] = [];
  let at = 0;
  while (stream.length - at >= HEADER_LENGTH) {
    const length = stream.readUInt32BE(at);
    const f: RefFrame = { length, streamId: stream.readUInt32BE(at + 4), type: stream[at + 8] as number, flags: stream[at + 9] as number, data: null };
    at += HEADER_LENGTH;
    if (length > max) {
      out.push(f); // oversized: reported as soon as its header is complete
      at += length;
      continue;
    }
    if (stream.length - at < length) break;
    f.data = stream.subarray(at, at + length);
    at += length;
    out.push(f);
  }
  return out;
}

function chunksOf(stream: Buffer, mode: number, seed: number): Buffer[] {
  if (mode === 0 || stream.length === 0) return [stream];
  const out: Buffer[] = [];
  let s = seed | 1;
  for (let at = 0; at < stream.length;) {
    let n: number;
    if (mode === 1) n = 1;
    else if (mode === 2) n = (seed % 23) + 1;
    else {
      s = (s * 1103515245 + 12345) >>> 0;
      n = ((s >>> 16) % 64) + 1;
    }
    out.push(stream.subarray(at, at + n));
    at += n;
  }
  return out;
}

function sameFrame(got: DecodedFrame, want: RefFrame): boolean {
  if (got.kind === 'oversized') {
    return want.data === null && got.length === want.length && got.header.streamId === want.streamId
      && got.header.type === want.type && got.header.flags === want.flags;
  }
  const f = got.frame;
  return want.data !== null && f.streamId === want.streamId && f.type === want.type && f.flags === want.flags && f.data.equals(want.data);
}

function checkDecoder(chunks: Buffer[], max: number, ref: RefFrame[]): void {
  const d = new FrameDecoder(max);
  const got: DecodedFrame[] = [];
  for (const c of chunks) {
    let items: DecodedFrame[];
    try {
      items = d.push(c);
    } catch (e) {
      throw new FuzzFinding(`FrameDecoder.push threw: ${describe(e)}`, { cause: e });
    }
    got.push(...items);
    if (d.buffered >= Math.max(HEADER_LENGTH, max)) {
      throw new FuzzFinding(`FrameDecoder holds ${d.buffered} bytes after a push (limit ${max})`);
    }
  }
  if (got.length !== ref.length) throw new FuzzFinding(`FrameDecoder yielded ${got.length} frames; a plain parse finds ${ref.length}`);
  for (let i = 0; i < got.length; i++) {
    if (!sameFrame(got[i] as DecodedFrame, ref[i] as RefFrame)) throw new FuzzFinding(`FrameDecoder frame ${i} differs from a plain parse`);
  }
}

// ---- the server ----

async function checkServer(chunks: Buffer[], max: number, ref: RefFrame[]): Promise<void> {
  // What the server must do with the frames, in order, up to the first protocol error.
  let expected = 0;
  let protocolError = false;
  const requestIds = new Map<number, number>(); // stream id -> frames carrying it
  for (const f of ref) {
    if (f.type === FrameType.Request || f.type === FrameType.Data) {
      expected++;
      requestIds.set(f.streamId, (requestIds.get(f.streamId) ?? 0) + 1);
    } else {
      protocolError = true;
      break;
    }
  }

  const connectionErrors: Error[] = [];
  const server = new TtrpcServer({ maxMessageSize: max, onConnectionError: (e) => connectionErrors.push(e) });
  server.register(Task, taskService(stubTasks, layout, log));
  const socket = new FakeSocket();
  server.handleConnection(socket as never);
  for (const c of chunks) {
    if (socket.destroyed) break; // a destroyed socket delivers no more data
    socket.emit('data', c);
  }

  const replies = new FrameDecoder(Number.MAX_SAFE_INTEGER);
  const responses: { streamId: number; data: Buffer }[] = [];
  const collect = (): void => {
    const ws = socket.written.splice(0);
    for (const w of ws) {
      for (const item of replies.push(w)) {
        if (item.kind !== 'frame') throw new FuzzFinding('server wrote an oversized frame header');
        const f = item.frame;
        if (f.type !== FrameType.Response || f.flags !== 0) throw new FuzzFinding(`server wrote a frame of type ${f.type} flags ${f.flags}`);
        responses.push({ streamId: f.streamId, data: f.data });
      }
    }
  };
  const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
  await withDeadline((async () => {
    // After a protocol error the connection is gone: requests still in their handlers are
    // never answered, so only an upper bound holds. Handlers here settle within a few ticks.
    for (let ticks = 0; ; ticks++) {
      collect();
      if (protocolError ? ticks >= 3 : responses.length >= expected) break;
      await tick();
    }
    await tick();
    collect();
  })(), INPUT_DEADLINE_MS, `ttrpc server answering ${expected} request frame(s)`);

  if (replies.buffered !== 0) throw new FuzzFinding('server wrote a partial frame');
  if (protocolError ? responses.length > expected : responses.length !== expected) {
    throw new FuzzFinding(`server answered ${responses.length} frames; expected ${protocolError ? 'at most ' : ''}${expected}`);
  }
  for (const r of responses) {
    const left = requestIds.get(r.streamId) ?? 0;
    if (left === 0) throw new FuzzFinding(`server answered stream ${r.streamId}, which no request frame (left) used`);
    requestIds.set(r.streamId, left - 1);
    let res;
    try {
      res = fromBinary(ResponseSchema, r.data);
    } catch (e) {
      throw new FuzzFinding(`server response does not decode: ${describe(e)}`, { cause: e });
    }
    const code = res.status?.code ?? 0;
    if (!Number.isInteger(code) || code < 0 || code > 16) throw new FuzzFinding(`server answered status code ${code}`);
    if (code === Code.UNKNOWN) throw new FuzzFinding(`server answered UNKNOWN (an untyped error escaped a handler): ${res.status?.message}`);
    if (code !== Code.OK && !res.status?.message) throw new FuzzFinding(`server answered ${codeName(code)} without a message`);
  }
  // An OK response carries the output message of the method that was called: check by
  // decoding the request frames again (in order) and pairing them with OK answers.
  checkPayloads(ref, responses);

  if (protocolError) {
    if (!socket.destroyed) throw new FuzzFinding('a frame of an unknown type did not close the connection');
    if (!connectionErrors.some((e) => e.message.startsWith('ttrpc protocol error'))) {
      throw new FuzzFinding('the protocol error was not reported to onConnectionError');
    }
  } else if (socket.destroyed) {
    throw new FuzzFinding(`the server closed a connection without a protocol error: ${connectionErrors.map((e) => e.message).join('; ')}`);
  }
  await server.close(0);
}

function checkPayloads(ref: RefFrame[], responses: { streamId: number; data: Buffer }[]): void {
  const methodOf = new Map<number, string>();
  for (const f of ref) {
    if (f.type !== FrameType.Request || f.data === null || methodOf.has(f.streamId)) continue;
    try {
      const req = fromBinary(RequestSchema, f.data);
      if (req.service === Task.typeName) methodOf.set(f.streamId, req.method);
    } catch {
      // malformed: answered INVALID_ARGUMENT, checked above
    }
  }
  for (const r of responses) {
    const res = fromBinary(ResponseSchema, r.data);
    if ((res.status?.code ?? 0) !== Code.OK) continue;
    const output = outputByMethod.get(methodOf.get(r.streamId) ?? '');
    if (output === undefined) throw new FuzzFinding(`OK answer on stream ${r.streamId}, which called no Task method`);
    try {
      fromBinary(output, res.payload);
    } catch (e) {
      throw new FuzzFinding(`OK answer's payload is not a ${output.typeName}: ${describe(e)}`, { cause: e });
    }
  }
}

export const fuzz = keepGoing(fuzzOne);

async function fuzzOne(data: Buffer): Promise<void> {
  const config = data[0] ?? 0;
  const seed = data[1] ?? 0;
  const stream = data.subarray(2);
  const max = (config & 4) !== 0 ? SMALL_MAX : DEFAULT_MAX_DATA_LENGTH;
  const chunks = chunksOf(stream, config & 3, seed);
  const ref = referenceParse(stream, max);
  checkDecoder(chunks, max, ref);
  await checkServer(chunks, max, ref);
}
