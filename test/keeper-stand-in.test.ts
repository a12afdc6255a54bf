// The keeper's own answers to containerd's Connect and Pids (keeper/stand-in.ts), from task
// records in a temp run dir: what spored would answer, or nothing (the request waits for it).
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConnectRequestSchema, ConnectResponseSchema, PidsRequestSchema, PidsResponseSchema, StateRequestSchema, StateResponseSchema } from '../fri-proto/gen/containerd/task/v2/shim_pb.js';
import { Status } from '../fri-proto/gen/containerd/types/task/task_pb.js';
import { RequestSchema, ResponseSchema } from '../fri-proto/gen/ttrpc/request_pb.js';
import { KeeperStandIn, standInResponse } from '../keeper/stand-in.js';
import { FrameDecoder, FrameType, encodeFrame, type Frame } from '../protocols/ttrpc/frame.js';
import { processStartTime } from '../sys/proc.js';
import { SPORE_VERSION } from '../protocols/task-api.js';
import type { TaskRecord } from '../task/record.js';

const frameOf = (bytes: Buffer): Frame => {
  const d = new FrameDecoder().push(bytes)[0];
  if (!d || d.kind !== 'frame') throw new Error('no frame');
  return d.frame;
};
const request = (streamId: number, method: string, payload: Uint8Array, ns?: string): Frame => frameOf(encodeFrame(
  { streamId, type: FrameType.Request, flags: 0 },
  Buffer.from(toBinary(RequestSchema, create(RequestSchema, { service: 'containerd.task.v2.Task', method, payload, metadata: ns ? [{ key: 'containerd-namespace-ttrpc', value: ns }] : [] }))),
));
const connect = (id: string, ns?: string, streamId = 1): Frame => request(streamId, 'Connect', toBinary(ConnectRequestSchema, create(ConnectRequestSchema, { id })), ns);
const pidsOf = (id: string, ns?: string): Frame => request(3, 'Pids', toBinary(PidsRequestSchema, create(PidsRequestSchema, { id })), ns);
const stateOf = (id: string, execId = '', ns?: string): Frame => request(5, 'State', toBinary(StateRequestSchema, create(StateRequestSchema, { id, execId })), ns);
const decoded = (bytes: Buffer | null): { streamId: number; code: number; payload: Uint8Array } => {
  if (!bytes) throw new Error('no answer');
  const f = frameOf(bytes);
  expect(f.type).toBe(FrameType.Response);
  const r = fromBinary(ResponseSchema, f.data);
  return { streamId: f.streamId, code: r.status?.code ?? 0, payload: r.payload };
};

describe('keeper stand-in: Connect and Pids from the task records', () => {
  let runDir: string;
  beforeEach(() => { runDir = mkdtempSync(join(tmpdir(), 'spore-standin-')); });
  afterEach(() => rmSync(runDir, { recursive: true, force: true }));

  const record = (ns: string, id: string, over: Partial<TaskRecord> = {}): void => {
    mkdirSync(join(runDir, 'tasks', ns), { recursive: true });
    // this test process stands for the container's init: alive, with its own start time
    const rec: TaskRecord = { v: 2, id, namespace: ns, bundle: `/run/containerd/x/${ns}/${id}`, pid: process.pid, pidStartTime: processStartTime(process.pid), rootfs: '/r', rootfsMounted: false, cgroup: null, createdAt: new Date().toISOString(), execs: [], ...over };
    writeFileSync(join(runDir, 'tasks', ns, `${id}.json`), JSON.stringify(rec));
  };

  it('answers Connect as spored: the keeper as the shim, the init as the task, on the same stream', () => {
    record('k8s.io', 'web');
    for (const ns of ['k8s.io', undefined]) { // containerd 1.6 sends no namespace: the one that has it
      const r = decoded(standInResponse(runDir, 4242, connect('web', ns, 7)));
      expect(r.streamId).toBe(7);
      expect(r.code).toBe(0);
      expect(fromBinary(ConnectResponseSchema, r.payload)).toMatchObject({ shimPid: 4242, taskPid: process.pid, version: SPORE_VERSION });
    }
  });

  it('answers Pids with the recorded processes that are still themselves, execs named', () => {
    // the parent of this test process stands for a live exec; a recorded exec that is gone is left out
    record('default', 'app', { execs: [{ execId: 'sh1', pid: process.ppid, pidStartTime: processStartTime(process.ppid) } as never, { execId: 'gone', pid: 999_999_999, pidStartTime: 1 } as never] });
    const r = decoded(standInResponse(runDir, 1, pidsOf('app')));
    const procs = fromBinary(PidsResponseSchema, r.payload).processes;
    expect(procs.map((p) => p.pid)).toEqual([process.pid, process.ppid]);
    expect(procs[0]?.info).toBeUndefined();
    expect(procs[1]?.info?.typeUrl).toBe('containerd.runc.v1.ProcessDetails');
  });

  it('answers State for a process still itself with its recorded status, pid, bundle and stdio', () => {
    const proc = (execId: string, pid: number, status: string) => ({ execId, pid, pidStartTime: processStartTime(pid), status, exitStatus: 0, exitedAt: null, stdio: { stdin: `/f/${execId}-in`, stdout: `/f/${execId}-out`, stderr: '' }, terminal: execId === 'tty', spec: null, io: { console: false, relays: [] } });
    record('k8s.io', 'pod', { init: proc('', process.pid, 'running') as never, execs: [proc('tty', process.ppid, 'paused') as never, proc('done', process.ppid, 'stopped') as never] });
    const init = fromBinary(StateResponseSchema, decoded(standInResponse(runDir, 1, stateOf('pod'))).payload);
    expect(init).toMatchObject({ id: 'pod', execId: '', bundle: '/run/containerd/x/k8s.io/pod', pid: process.pid, status: Status.RUNNING, stdin: '/f/-in', stdout: '/f/-out', terminal: false });
    const tty = fromBinary(StateResponseSchema, decoded(standInResponse(runDir, 1, stateOf('pod', 'tty', 'k8s.io'))).payload);
    expect(tty).toMatchObject({ execId: 'tty', pid: process.ppid, status: Status.PAUSED, terminal: true });
    // a stopped process, an unknown exec: their exits and errors are spored's
    expect(standInResponse(runDir, 1, stateOf('pod', 'done'))).toBeNull();
    expect(standInResponse(runDir, 1, stateOf('pod', 'nosuch'))).toBeNull();
    // recorded running but not itself any more (pid reused or gone): spored reports its exit
    record('k8s.io', 'gone', { init: { ...proc('', process.pid, 'running'), pidStartTime: 1 } as never });
    expect(standInResponse(runDir, 1, stateOf('gone'))).toBeNull();
    // a zombie (exited, not reaped yet) has its pid and start time still: it is not running
    const parent = spawn('sh', ['-c', '(exit 3) & exec sleep 5'], { stdio: 'ignore' });
    const zombie = (() => { for (let i = 0; i < 200; i++) { const kids = readFileSync(`/proc/${parent.pid}/task/${parent.pid}/children`, 'utf8').trim(); if (kids) return Number(kids.split(' ')[0]); spawnSync('sleep', ['0.01']); } return 0; })();
    try {
      for (let i = 0; i < 200 && !/^\S+ \(.*\) Z/.test(readFileSync(`/proc/${zombie}/stat`, 'utf8')); i++) spawnSync('sleep', ['0.01']);
      record('k8s.io', 'zombie', { init: proc('', zombie, 'running') as never });
      expect(standInResponse(runDir, 1, stateOf('zombie'))).toBeNull();
    } finally { parent.kill('SIGKILL'); }
    // a record without its init (older format): nothing to say
    record('k8s.io', 'old');
    expect(standInResponse(runDir, 1, stateOf('old'))).toBeNull();
  });

  it('leaves to spored what it cannot answer from a record: unknown ids, ambiguous ones, other methods, bad payloads, no pid yet', () => {
    record('a', 'twice');
    record('b', 'twice');
    record('a', 'creating', { pid: 0 });
    record('a', 'exited', { pid: 999_999_999, pidStartTime: 1 });
    expect(standInResponse(runDir, 1, connect('nosuch'))).toBeNull();
    expect(standInResponse(runDir, 1, connect('nosuch', 'a'))).toBeNull();
    expect(standInResponse(runDir, 1, connect('twice'))).toBeNull(); // in two namespaces, none named
    expect(decoded(standInResponse(runDir, 1, connect('twice', 'b'))).code).toBe(0);
    expect(standInResponse(runDir, 1, connect('creating', 'a'))).toBeNull();
    // no recorded process left: spored has the exits; an empty list would have containerd clean the shim up
    expect(standInResponse(runDir, 1, pidsOf('exited', 'a'))).toBeNull();
    expect(standInResponse(runDir, 1, request(1, 'State', toBinary(StateRequestSchema, create(StateRequestSchema, { id: 'twice' })), 'a'))).toBeNull();
    expect(standInResponse(runDir, 1, request(1, 'Connect', new Uint8Array([0xff, 0xff, 0xff]), 'a'))).toBeNull();
    expect(standInResponse(runDir, 1, frameOf(encodeFrame({ streamId: 1, type: FrameType.Request, flags: 0 }, Buffer.from([0x0a, 0xff]))))).toBeNull();
    expect(standInResponse(runDir, 1, frameOf(encodeFrame({ streamId: 2, type: FrameType.Response, flags: 0 }, Buffer.alloc(0))))).toBeNull();
    // a path in the id does not reach outside the run dir
    mkdirSync(join(runDir, 'outside'), { recursive: true });
    writeFileSync(join(runDir, 'outside', 'x.json'), JSON.stringify({ id: '../../outside/x', pid: process.pid }));
    expect(standInResponse(runDir, 1, connect('../../outside/x', 'a'))).toBeNull();
  });

  it('owes answers once it stood in, until spored answers anything', () => {
    record('n', 'c1');
    const s = new KeeperStandIn(runDir, 1, 50);
    expect(s.owing()).toBe(false);
    expect(s.answer(connect('nosuch', 'n'))).toBeNull();
    expect(s.owing()).toBe(false); // nothing answered: nothing owed
    expect(s.answer(connect('c1', 'n'))).not.toBeNull();
    expect(s.owing()).toBe(true);
    s.sporedAnswered();
    expect(s.owing()).toBe(false);
  });
});
