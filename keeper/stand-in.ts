// What the keeper answers itself when spored does not: the read-only Task calls with which
// containerd, and Kubernetes through its CRI plugin, decide whether a container is alive.
//
// containerd 1.6 reconnects to every shim at start (runtime/v2 loadShim) and calls Connect
// with a 5 s deadline (io.containerd.timeout.shim.load); a shim that has not answered by then
// is taken for dead, and containerd runs its binary's `delete`, which ends the container
// (1.6.x and 1.7 also call Pids and clean up a shim that lists no process: containerd#6860).
// Then the CRI plugin reads every sandbox's State (2 s: io.containerd.timeout.task.state) and
// deletes, with a kill, a sandbox whose State fails. For runc that is one hung shim and one
// pod; for spore, where one spored serves the node, a spored that is down (a crash loop, a
// slow start) or hung (stopped, swapping) across a containerd restart would take every
// container and pod with it. So when spored has not answered a Connect, Pids or State within
// STAND_IN_AFTER_MS, the keeper answers it from the task record on disk, as spored would
// have, and drops spored's own answer if it comes later (proxy.ts keeps one answer per
// stream). It answers only what the record and /proc settle: State only for a process that is
// still itself (pid and start time) and recorded created, running or paused; an exit is
// spored's to report. Everything else keeps waiting for spored.
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConnectRequestSchema, ConnectResponseSchema, PidsRequestSchema, PidsResponseSchema, StateRequestSchema, StateResponseSchema } from '../fri-proto/gen/containerd/task/v2/shim_pb.js';
import { ProcessInfoSchema, Status } from '../fri-proto/gen/containerd/types/task/task_pb.js';
import { RequestSchema, ResponseSchema } from '../fri-proto/gen/ttrpc/request_pb.js';
import { StatusSchema } from '../fri-proto/gen/google/rpc/status_pb.js';
import { FrameType, encodeFrame, type Frame } from '../protocols/ttrpc/frame.js';
import type { StandInPolicy } from './proxy.js';
import { NAMESPACE_METADATA_KEY } from '../protocols/ttrpc/server.js';
import { processRunning, processStartTime } from '../sys/proc.js';
import { SPORE_VERSION, TASK_SERVICE, processDetails } from '../protocols/task-api.js';
import { isTaskName, recordPath, type RecordedProcess, type RecordedTask } from '../protocols/task-files.js';

/**
 * How long a Connect, Pids or State waits for spored before the keeper answers it (ms): inside
 * containerd's 2 s State deadline (and its 5 s shim-load one), and long enough that a spored
 * that is merely restarting (about 0.6 s here) answers first.
 */
export const STAND_IN_AFTER_MS = 1000;

function readRecorded(runDir: string, namespace: string, id: string): RecordedTask | null {
  try {
    const r = JSON.parse(readFileSync(recordPath(runDir, namespace, id), 'utf8')) as Partial<RecordedTask>;
    return r.id === id && typeof r.pid === 'number' ? (r as RecordedTask) : null;
  } catch {
    return null;
  }
}

/** The record of container `id`: in the request's namespace, or the one namespace that has it. */
function recordOf(runDir: string, id: string, namespace: string | undefined): RecordedTask | null {
  if (!isTaskName(id)) return null;
  if (namespace !== undefined) return isTaskName(namespace) ? readRecorded(runDir, namespace, id) : null;
  // containerd 1.6 sends no namespace metadata: the id must be in exactly one namespace
  let namespaces: string[] = [];
  try { namespaces = readdirSync(join(runDir, 'tasks')); } catch { return null; }
  const found = namespaces.filter(isTaskName).map((ns) => readRecorded(runDir, ns, id)).filter((r): r is RecordedTask => r !== null);
  return found.length === 1 ? (found[0] as RecordedTask) : null;
}

/**
 * The recorded processes that are still themselves (pid and start time), execs named. spored
 * lists the container cgroup's processes; the keeper, which reads no cgroup, lists what the
 * record names: enough for containerd, which only asks whether the shim has any.
 */
/** `pid` is the recorded process (its start time, when recorded) and has not exited (a zombie has). */
function isItself(pid: number, start: number | null): boolean {
  return pid > 0 && processRunning(pid) && (start === null || processStartTime(pid) === start);
}

/** State's status for a recorded process that is still itself; null for any other (stopped, gone: spored has its exit). */
function liveStatus(p: RecordedProcess): Status | null {
  if (!isItself(p.pid, p.pidStartTime)) return null;
  switch (p.status) {
    case 'created': return Status.CREATED;
    case 'running': return Status.RUNNING;
    case 'paused': return Status.PAUSED;
    default: return null;
  }
}

function processesOf(rec: RecordedTask): { pid: number; execId?: string }[] {
  const recorded = [{ pid: rec.pid, start: rec.pidStartTime ?? null, execId: undefined as string | undefined }, ...(rec.execs ?? []).map((e) => ({ pid: e.pid, start: e.pidStartTime, execId: e.execId }))];
  const seen = new Set<number>();
  const out: { pid: number; execId?: string }[] = [];
  for (const p of recorded) {
    if (seen.has(p.pid)) continue;
    if (!isItself(p.pid, p.start)) continue;
    seen.add(p.pid);
    out.push(p.execId === undefined ? { pid: p.pid } : { pid: p.pid, execId: p.execId });
  }
  return out;
}

/**
 * The keeper's own Response frame for `request` (a ttrpc Request frame containerd sent), or
 * null when it is not a Task Connect, Pids or State, cannot be decoded, or names a container
 * with no task record (or one in several namespaces), or a process the record cannot settle:
 * such a request waits for spored. Connect answers `shimPid` (the keeper: the shim containerd
 * talks to) and the init's pid; Pids the recorded processes that live; State a live process's
 * recorded status, pid, bundle and stdio. Shapes: containerd/api/runtime/task/v2/shim.proto.
 */
export function standInResponse(runDir: string, shimPid: number, request: Frame): Buffer | null {
  if (request.type !== FrameType.Request) return null;
  let payload: Uint8Array;
  try {
    const req = fromBinary(RequestSchema, request.data);
    if (req.service !== TASK_SERVICE || (req.method !== 'Connect' && req.method !== 'Pids' && req.method !== 'State')) return null;
    const namespace = req.metadata.find((kv) => kv.key === NAMESPACE_METADATA_KEY)?.value;
    if (req.method === 'Connect') {
      const { id } = fromBinary(ConnectRequestSchema, req.payload);
      const rec = recordOf(runDir, id, namespace);
      if (!rec || rec.pid <= 0) return null;
      payload = toBinary(ConnectResponseSchema, create(ConnectResponseSchema, { shimPid, taskPid: rec.pid, version: SPORE_VERSION }));
    } else if (req.method === 'State') {
      const { id, execId } = fromBinary(StateRequestSchema, req.payload);
      const rec = recordOf(runDir, id, namespace);
      const p = execId === '' ? rec?.init : rec?.execs?.find((e) => e.execId === execId);
      const status = p ? liveStatus(p) : null;
      if (!rec || !p || status === null) return null;
      payload = toBinary(StateResponseSchema, create(StateResponseSchema, {
        id, execId, bundle: rec.bundle, pid: p.pid, status,
        stdin: p.stdio.stdin, stdout: p.stdio.stdout, stderr: p.stdio.stderr, terminal: p.terminal,
      }));
    } else {
      const { id } = fromBinary(PidsRequestSchema, req.payload);
      const rec = recordOf(runDir, id, namespace);
      if (!rec || rec.pid <= 0) return null;
      const live = processesOf(rec);
      // none left: spored, which has their exits, answers (an empty list is a shim to clean up)
      if (live.length === 0) return null;
      const processes = live.map(({ pid, execId }) => create(ProcessInfoSchema, execId === undefined ? { pid } : { pid, info: processDetails(execId) }));
      payload = toBinary(PidsResponseSchema, create(PidsResponseSchema, { processes }));
    }
  } catch {
    return null;
  }
  const body = toBinary(ResponseSchema, create(ResponseSchema, { status: create(StatusSchema, { code: 0 }), payload }));
  return encodeFrame({ streamId: request.streamId, type: FrameType.Response, flags: 0 }, Buffer.from(body));
}

/**
 * The keeper's StandInPolicy (proxy.ts), shared by its held connections: answers with
 * standInResponse(); once it has answered for spored, later Connect, Pids and State calls are
 * answered at once until spored answers anything again (containerd 1.6 loads shims one after another, so
 * a hung spored would otherwise hold its start for afterMs per container).
 */
export class KeeperStandIn implements StandInPolicy {
  private stoodInAt = -Infinity;
  private sporedAt = -Infinity;
  constructor(private readonly runDir: string, private readonly shimPid: number, readonly afterMs: number = STAND_IN_AFTER_MS) {}

  answer(request: Frame): Buffer | null {
    const r = standInResponse(this.runDir, this.shimPid, request);
    if (r !== null) this.stoodInAt = performance.now();
    return r;
  }

  owing(): boolean {
    return this.stoodInAt > this.sporedAt;
  }

  sporedAnswered(): void {
    this.sporedAt = performance.now();
  }
}
