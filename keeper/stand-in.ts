// What the keeper answers itself when spored does not: the two read-only Task calls with
// which containerd decides, after its own restart, whether a shim is alive.
//
// containerd 1.6 reconnects to every shim at start (runtime/v2 loadShim) and calls Connect
// with a 5 s deadline (io.containerd.timeout.shim.load); a shim that has not answered by then
// is taken for dead, and containerd runs its binary's `delete`, which ends the container
// (1.6.x and 1.7 also call Pids and clean up a shim that lists no process: containerd#6860).
// For runc that is one hung shim and one container; for spore, where one spored serves the
// node, a spored that is down (a crash loop, a slow start) or hung (stopped, swapping) across
// a containerd restart would take every container with it. So when spored has not answered
// a Connect or Pids within a short while, the keeper answers it from the task record on disk,
// as spored would have, and drops spored's own answer if it comes later (proxy.ts keeps one
// answer per stream). Everything else keeps waiting for spored.
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConnectRequestSchema, ConnectResponseSchema, PidsRequestSchema, PidsResponseSchema } from '../fri-proto/gen/containerd/task/v2/shim_pb.js';
import { ProcessInfoSchema } from '../fri-proto/gen/containerd/types/task/task_pb.js';
import { RequestSchema, ResponseSchema } from '../fri-proto/gen/ttrpc/request_pb.js';
import { StatusSchema } from '../fri-proto/gen/google/rpc/status_pb.js';
import { FrameType, encodeFrame, type Frame } from '../protocols/ttrpc/frame.js';
import type { StandInPolicy } from './proxy.js';
import { NAMESPACE_METADATA_KEY } from '../protocols/ttrpc/server.js';
import { processRunning, processStartTime } from '../sys/proc.js';
import { SPORE_VERSION, TASK_SERVICE, processDetails } from '../protocols/task-api.js';
import { isTaskName, recordPath, type RecordedProcesses } from '../protocols/task-files.js';

/**
 * How long a Connect or Pids waits for spored before the keeper answers it (ms): well inside
 * containerd's 5 s load deadline, and long enough that a spored that is merely restarting
 * (about 0.6 s here) answers first.
 */
export const STAND_IN_AFTER_MS = 2000;

function readRecorded(runDir: string, namespace: string, id: string): RecordedProcesses | null {
  try {
    const r = JSON.parse(readFileSync(recordPath(runDir, namespace, id), 'utf8')) as Partial<RecordedProcesses>;
    return r.id === id && typeof r.pid === 'number' ? (r as RecordedProcesses) : null;
  } catch {
    return null;
  }
}

/** The record of container `id`: in the request's namespace, or the one namespace that has it. */
function recordOf(runDir: string, id: string, namespace: string | undefined): RecordedProcesses | null {
  if (!isTaskName(id)) return null;
  if (namespace !== undefined) return isTaskName(namespace) ? readRecorded(runDir, namespace, id) : null;
  // containerd 1.6 sends no namespace metadata: the id must be in exactly one namespace
  let namespaces: string[] = [];
  try { namespaces = readdirSync(join(runDir, 'tasks')); } catch { return null; }
  const found = namespaces.filter(isTaskName).map((ns) => readRecorded(runDir, ns, id)).filter((r): r is RecordedProcesses => r !== null);
  return found.length === 1 ? (found[0] as RecordedProcesses) : null;
}

/**
 * The recorded processes that are still themselves (pid and start time), execs named. spored
 * lists the container cgroup's processes; the keeper, which reads no cgroup, lists what the
 * record names: enough for containerd, which only asks whether the shim has any.
 */
function processesOf(rec: RecordedProcesses): { pid: number; execId?: string }[] {
  const recorded = [{ pid: rec.pid, start: rec.pidStartTime ?? null, execId: undefined as string | undefined }, ...(rec.execs ?? []).map((e) => ({ pid: e.pid, start: e.pidStartTime, execId: e.execId }))];
  const seen = new Set<number>();
  const out: { pid: number; execId?: string }[] = [];
  for (const p of recorded) {
    if (p.pid <= 0 || seen.has(p.pid)) continue;
    if (!(p.start === null ? processRunning(p.pid) : processStartTime(p.pid) === p.start)) continue;
    seen.add(p.pid);
    out.push(p.execId === undefined ? { pid: p.pid } : { pid: p.pid, execId: p.execId });
  }
  return out;
}

/**
 * The keeper's own Response frame for `request` (a ttrpc Request frame containerd sent), or
 * null when it is not a Task Connect or Pids, cannot be decoded, or names a container with
 * no task record (or one in several namespaces): such a request waits for spored.
 * Connect answers `shimPid` (the keeper: the shim containerd talks to) and the init's pid;
 * Pids the recorded processes that live. Shapes: containerd/api/runtime/task/v2/shim.proto.
 */
export function standInResponse(runDir: string, shimPid: number, request: Frame): Buffer | null {
  if (request.type !== FrameType.Request) return null;
  let payload: Uint8Array;
  try {
    const req = fromBinary(RequestSchema, request.data);
    if (req.service !== TASK_SERVICE || (req.method !== 'Connect' && req.method !== 'Pids')) return null;
    const namespace = req.metadata.find((kv) => kv.key === NAMESPACE_METADATA_KEY)?.value;
    if (req.method === 'Connect') {
      const { id } = fromBinary(ConnectRequestSchema, req.payload);
      const rec = recordOf(runDir, id, namespace);
      if (!rec || rec.pid <= 0) return null;
      payload = toBinary(ConnectResponseSchema, create(ConnectResponseSchema, { shimPid, taskPid: rec.pid, version: SPORE_VERSION }));
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
 * standInResponse(); once it has answered for spored, later Connects and Pids are answered at
 * once until spored answers anything again (containerd 1.6 loads shims one after another, so
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
