// containerd.task.v2.Task over ttrpc: decode, call the TaskManager, encode. No state
// lives here. Unsupported operations answer Unimplemented with a reason, never success.
import { create, fromBinary } from '@bufbuild/protobuf';
import { BinaryReader, BinaryWriter, WireType } from '@bufbuild/protobuf/wire';
import { AnySchema, timestampFromDate, type Any, type Timestamp } from '@bufbuild/protobuf/wkt';
import { OptionsSchema } from '../fri-proto/gen/runtimeoptions/v1/api_pb.js';
import { existsSync } from 'node:fs';
import type { Logger } from 'pino';
import { Task } from '../fri-proto/gen/containerd/task/v2/shim_pb.js';
import { Status } from '../fri-proto/gen/containerd/types/task/task_pb.js';
import { InvalidArgument, NotFound, Unimplemented } from '../sys/errors.js';
import type { LinuxResources } from '../protocols/oci/spec.js';
import type { ServiceImplementationFor, CallContext } from '../protocols/ttrpc/server.js';
import { metricsAny } from './metrics.js';
import type { ContainerState, ProcState, TaskManager } from './tasks.js';
import type { CgroupLayout } from '../pools/cgroups.js';
import { REPLAY_METADATA_KEY } from '../protocols/keeper.js';
import { SPORE_VERSION, processDetails } from '../protocols/task-api.js';

/**
 * A request the keeper sent again after spored restarted (protocols/keeper.ts): the spored
 * that died may have carried it out. Such a request is answered with the outcome where the
 * state shows it happened, instead of the error a second, genuine request would get.
 */
export function isReplay(ctx: CallContext): boolean {
  return ctx.metadata.has(REPLAY_METADATA_KEY);
}

export { SPORE_VERSION, processDetails };

/**
 * containerd 1.7+ names the namespace in ttrpc metadata; 1.6 does not. Then it comes from
 * the bundle path (<state>/io.containerd.runtime.v2.task/<ns>/<id>) at Create, and is
 * remembered per connection: containerd opens one connection per task. After a
 * containerd restart a fresh connection may start with State/Connect: look the id up.
 */
export class NamespaceResolver {
  private readonly byConnection = new Map<number, string>();
  constructor(private readonly tasks: TaskManager) {}

  forCreate(ctx: CallContext, bundle: string): string {
    const ns = ctx.namespace ?? namespaceFromBundle(bundle);
    if (!ns) throw new InvalidArgument('cannot tell the namespace: no containerd-namespace-ttrpc metadata and the bundle path is not <state>/<ns>/<id>');
    this.byConnection.set(ctx.connectionId, ns);
    return ns;
  }

  of(ctx: CallContext, id: string): string {
    if (ctx.namespace) return ctx.namespace;
    const bound = this.byConnection.get(ctx.connectionId);
    if (bound) return bound;
    const found = this.tasks.namespacesOf(id);
    if (found.length === 1) {
      this.byConnection.set(ctx.connectionId, found[0] as string);
      return found[0] as string;
    }
    if (found.length === 0) throw new NotFound(`container ${id} not found`);
    throw new InvalidArgument(`container ${id} exists in several namespaces (${found.join(', ')}); send containerd-namespace-ttrpc metadata`);
  }

  forget(connectionId: number): void {
    this.byConnection.delete(connectionId);
  }
}

export function namespaceFromBundle(bundle: string): string | null {
  const parts = bundle.split('/').filter(Boolean);
  return parts.length >= 2 ? (parts[parts.length - 2] as string) : null;
}

/**
 * CreateTaskRequest.options: containerd's CRI sends runtimeoptions.v1.Options built from the
 * handler's `options` table (ConfigPath); ctr sends it for --runtime-config-path. Other types
 * (e.g. runc's options from a misconfigured handler) are ignored with a warning.
 */
export function createOptions(options: Any | undefined, log: Logger): { configPath?: string } {
  if (!options || (!options.typeUrl && options.value.length === 0)) return {};
  const type = options.typeUrl.slice(options.typeUrl.lastIndexOf('/') + 1);
  if (type === RUNC_CREATE_OPTIONS) {
    // what `ctr run --uidmap` sends: io_uid/io_gid, the owner runc's shim gives the stdio
    // FIFOs so that a user namespace's root may open them; spored relays stdio through pipes,
    // so those need nothing. Anything else set (ctr run --no-pivot: no_pivot_root) is named.
    const set = runcCreateOptionFields(options.value).filter((f) => f !== 'io_uid' && f !== 'io_gid');
    if (set.length > 0) log.warn({ typeUrl: options.typeUrl, fields: set }, `runc CreateOptions ${set.join(', ')} not applied by spore (it always uses pivot_root and its own keyring, shim and cgroup handling); ignored`);
    else log.debug({ typeUrl: options.typeUrl }, 'runc CreateOptions io_uid/io_gid not needed: spored relays stdio through pipes');
    return {};
  }
  if (type !== OptionsSchema.typeName) {
    log.warn({ typeUrl: options.typeUrl }, 'CreateTask options of a type spore does not read; ignored');
    return {};
  }
  let o;
  try {
    o = fromBinary(OptionsSchema, options.value);
  } catch (e) {
    throw new InvalidArgument(`CreateTask options (${options.typeUrl}) do not decode: ${(e as Error).message}`);
  }
  if (o.configPath && !existsSync(o.configPath)) log.warn({ configPath: o.configPath }, 'runtime options ConfigPath does not exist');
  return o.configPath ? { configPath: o.configPath } : {};
}

/** ctr's task options for runc (containerd runtime/linux/runctypes/runc.proto CreateOptions) */
const RUNC_CREATE_OPTIONS = 'containerd.linux.runc.CreateOptions';
const RUNC_CREATE_FIELDS: Record<number, string> = {
  1: 'no_pivot_root', 2: 'open_tcp', 3: 'external_unix_sockets', 4: 'terminal', 5: 'file_locks', 6: 'empty_namespaces',
  7: 'cgroups_mode', 8: 'no_new_keyring', 9: 'shim_cgroup', 10: 'io_uid', 11: 'io_gid', 12: 'criu_work_path', 13: 'criu_image_path',
};

/** The names of the fields set in an encoded runc CreateOptions (unknown numbers as `field N`); InvalidArgument if it does not parse. */
export function runcCreateOptionFields(value: Uint8Array): string[] {
  const r = new BinaryReader(value);
  const out: string[] = [];
  try {
    while (r.pos < r.len) {
      const [no, wire] = r.tag();
      r.skip(wire);
      const name = RUNC_CREATE_FIELDS[no] ?? `field ${no}`;
      if (!out.includes(name)) out.push(name);
    }
  } catch (e) {
    throw new InvalidArgument(`CreateTask options (${RUNC_CREATE_OPTIONS}) do not decode: ${(e as Error).message}`);
  }
  return out;
}

/**
 * An exec's ProcessInfo.info as runc's shim gives it: containerd.runc.v1.ProcessDetails
 * { string exec_id = 1 } (containerd runtime/v2/runc/options/oci.proto), under the type URL
 * containerd's typeurl registers it by, so `ctr task ps` shows the exec id.
 */

function ts(d: Date | null): Timestamp | undefined {
  return d ? timestampFromDate(d) : undefined;
}

export function statusOf(c: ContainerState, p: ProcState): Status {
  if (p.status === 'stopped') return Status.STOPPED;
  if (p.status === 'created') return Status.CREATED;
  if (p.status === 'paused') return Status.PAUSED;
  return Status.RUNNING;
}

export function taskService(tasks: TaskManager, layout: CgroupLayout, log: Logger, nsr = new NamespaceResolver(tasks), shimPid: number | null = null): ServiceImplementationFor<typeof Task> {
  return {
    async create(req, ctx) {
      if (req.checkpoint || req.parentCheckpoint) throw new Unimplemented('checkpoint/restore is not supported by spore');
      if (isReplay(ctx)) {
        const ns = nsr.forCreate(ctx, req.bundle);
        const done = tasks.containers.get(`${ns}/${req.id}`);
        if (done && done.bundle === req.bundle) return { pid: done.init.pid };
      }
      const c = await tasks.create(nsr.forCreate(ctx, req.bundle), req.id, req.bundle, req.rootfs.map((m) => ({ type: m.type, source: m.source, target: m.target, options: m.options })), {
        stdin: req.stdin, stdout: req.stdout, stderr: req.stderr, terminal: req.terminal,
      }, createOptions(req.options, log));
      log.info({ id: req.id, ns: c.namespace, hostPid: c.init.pid, phases: c.timings, ...(c.pod ? { pod: c.pod } : {}) }, 'created');
      return { pid: c.init.pid };
    },

    async start(req, ctx) {
      if (isReplay(ctx)) {
        const { p } = tasks.proc(nsr.of(ctx, req.id), req.id, req.execId);
        if (p.status !== 'created') return { pid: p.pid };
      }
      const p = await tasks.start(nsr.of(ctx, req.id), req.id, req.execId);
      return { pid: p.pid };
    },

    // State and the calls below wait for a Create of the container in flight, as runc's shim
    // answers them only after its Create (they take its one lock): answered NotFound, a `ctr
    // container rm` or `task kill` during a slow Create (a hook) left the task behind
    async state(req, ctx) {
      await tasks.createSettled(nsr.of(ctx, req.id), req.id);
      const { c, p } = tasks.proc(nsr.of(ctx, req.id), req.id, req.execId);
      return {
        id: req.id, execId: req.execId, bundle: c.bundle, pid: p.pid, status: statusOf(c, p),
        stdin: p.stdio.stdin, stdout: p.stdio.stdout, stderr: p.stdio.stderr, terminal: p.terminal,
        exitStatus: p.exitStatus, exitedAt: ts(p.exitedAt),
      };
    },

    async kill(req, ctx) {
      await tasks.createSettled(nsr.of(ctx, req.id), req.id);
      try {
        tasks.kill(nsr.of(ctx, req.id), req.id, req.execId, req.signal, req.all);
      } catch (e) {
        // the first delivery killed it: "already finished" is the outcome, not an error
        if (!(isReplay(ctx) && e instanceof NotFound)) throw e;
      }
      return {};
    },

    async wait(req, ctx) {
      const p = await tasks.wait(nsr.of(ctx, req.id), req.id, req.execId, ctx.signal);
      return { exitStatus: p.exitStatus, exitedAt: ts(p.exitedAt) };
    },

    async delete(req, ctx) {
      try {
        const p = await tasks.delete(nsr.of(ctx, req.id), req.id, req.execId);
        return { pid: p.pid, exitStatus: p.exitStatus, exitedAt: ts(p.exitedAt ?? new Date()) };
      } catch (e) {
        // a replay of a Delete the spored before this one carried out: its answer
        const t = isReplay(ctx) && !req.execId && e instanceof NotFound ? tasks.deletedRecently(req.id, ctx.namespace) : null;
        if (!t) throw e;
        return { pid: t.pid, exitStatus: t.exitStatus, exitedAt: ts(t.exitedAt ? new Date(t.exitedAt) : new Date(t.deletedAt)) };
      }
    },

    async pids(req, ctx) {
      await tasks.createSettled(nsr.of(ctx, req.id), req.id);
      return { processes: tasks.pids(nsr.of(ctx, req.id), req.id).map(({ pid, execId }) => (execId === undefined ? { pid } : { pid, info: processDetails(execId) })) };
    },

    async exec(req, ctx) {
      await tasks.createSettled(nsr.of(ctx, req.id), req.id);
      if (!req.spec) throw new InvalidArgument('exec: spec (OCI Process as JSON in an Any) is required');
      if (isReplay(ctx) && tasks.get(nsr.of(ctx, req.id), req.id).execs.has(req.execId)) return {};
      tasks.exec(nsr.of(ctx, req.id), req.id, req.execId, req.spec.value, { stdin: req.stdin, stdout: req.stdout, stderr: req.stderr, terminal: req.terminal });
      return {};
    },

    async resizePty(req, ctx) {
      tasks.resizePty(nsr.of(ctx, req.id), req.id, req.execId, req.width, req.height);
      return {};
    },

    async closeIO(req, ctx) {
      tasks.closeIO(nsr.of(ctx, req.id), req.id, req.execId);
      return {};
    },

    async pause(req, ctx) {
      await tasks.createSettled(nsr.of(ctx, req.id), req.id);
      if (isReplay(ctx) && tasks.get(nsr.of(ctx, req.id), req.id).init.status === 'paused') return {};
      tasks.pause(nsr.of(ctx, req.id), req.id);
      return {};
    },

    async resume(req, ctx) {
      await tasks.createSettled(nsr.of(ctx, req.id), req.id);
      if (isReplay(ctx) && tasks.get(nsr.of(ctx, req.id), req.id).init.status === 'running') return {};
      tasks.resume(nsr.of(ctx, req.id), req.id);
      return {};
    },

    async update(req, ctx) {
      await tasks.createSettled(nsr.of(ctx, req.id), req.id);
      if (!req.resources) throw new InvalidArgument('update: resources are required');
      let res: LinuxResources;
      try {
        res = JSON.parse(Buffer.from(req.resources.value).toString('utf8')) as LinuxResources;
      } catch (e) {
        throw new InvalidArgument(`update: resources must be OCI LinuxResources as JSON (${req.resources.typeUrl}): ${(e as Error).message}`);
      }
      const warnings = tasks.update(nsr.of(ctx, req.id), req.id, res);
      for (const w of warnings) log.warn({ id: req.id }, w);
      return {};
    },

    async stats(req, ctx) {
      await tasks.createSettled(nsr.of(ctx, req.id), req.id);
      return { stats: metricsAny(tasks.stats(nsr.of(ctx, req.id), req.id), layout.mode) };
    },

    async connect(req, ctx) {
      const c = tasks.get(nsr.of(ctx, req.id), req.id);
      // under a keeper the shim containerd talks to is the keeper, which outlives spored
      return { shimPid: shimPid ?? process.pid, taskPid: c.init.pid, version: SPORE_VERSION };
    },

    async shutdown() {
      // spored is shared by every container on the node and outlives them all.
      return {};
    },

    async checkpoint() {
      throw new Unimplemented('checkpoint is not supported by spore');
    },
  };
}

