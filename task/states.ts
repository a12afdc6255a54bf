// State moves of containerd's Task records, as data. One table per process kind says which
// status may follow which, and one says, for each status, whether an operation is allowed
// there or how runc's shim refuses it. Modelled on containerd's runc shim
// (pkg/process/init_state.go: created, running, paused, stopped; exec_state.go: created,
// running, stopped), where each state is a type with the operations it allows; here the
// states are strings and the answers are data, so they can be printed, tested and compared.

/** A container's init process. `paused` is a status of its own, as in init_state.go. */
export type InitStatus = 'created' | 'running' | 'paused' | 'stopped';
/** An exec'd process: it has no pause of its own (the container's cgroup is what freezes). */
export type ExecStatus = 'created' | 'running' | 'stopped';
export type ProcStatus = InitStatus;

export const INIT_MOVES: Readonly<Record<InitStatus, readonly InitStatus[]>> = {
  created: ['running', 'stopped'],
  running: ['paused', 'stopped'],
  paused: ['running', 'stopped'],
  stopped: [],
};

export const EXEC_MOVES: Readonly<Record<ExecStatus, readonly ExecStatus[]>> = {
  created: ['running', 'stopped'],
  running: ['stopped'],
  stopped: [],
};

/** Operations whose admission depends on the init's status. */
export type InitOp = 'start' | 'exec' | 'execStart' | 'pause' | 'resume' | 'update' | 'delete';

/**
 * For each init status and operation: `null` when allowed, else the error runc's shim gives
 * (containerd's clients see it as UNKNOWN with this text, e.g. `ctr: cannot exec in a paused
 * state: unknown`). The texts are runc 1.1's and containerd 1.6's, checked by the runc-oracle
 * suite (integration/conformance/).
 */
export const INIT_OPS: Readonly<Record<InitStatus, Readonly<Record<InitOp, string | null>>>> = {
  created: {
    start: null,
    exec: null,
    execStart: 'container is created; exec needs a running container',
    pause: 'cannot pause task in created state',
    resume: 'cannot resume task in created state',
    update: null,
    delete: null,
  },
  running: {
    start: 'cannot start a running process',
    exec: null,
    execStart: null,
    pause: null,
    resume: 'cannot resume a running process',
    update: null,
    delete: 'cannot delete a running process',
  },
  paused: {
    start: 'cannot start a running process',
    exec: 'cannot exec in a paused state',
    // a child joining a frozen cgroup would freeze in its set-up: refuse, as `runc exec` does
    execStart: 'OCI runtime exec failed: cannot exec in a paused container',
    pause: 'cannot pause a paused container',
    resume: null,
    update: null,
    delete: 'cannot delete a paused process',
  },
  stopped: {
    start: 'cannot start a stopped process',
    exec: 'cannot exec in a stopped state',
    execStart: 'container is stopped; exec needs a running container',
    pause: 'cannot pause a stopped container',
    resume: 'cannot resume a stopped container',
    update: 'cannot update a stopped container',
    delete: null,
  },
};

/** Operations on an exec'd process that depend on its own status. */
export type ExecOp = 'start' | 'delete' | 'resize';

export const EXEC_OPS: Readonly<Record<ExecStatus, Readonly<Record<ExecOp, string | null>>>> = {
  created: { start: null, delete: null, resize: null },
  running: { start: 'cannot start a running process', delete: 'cannot delete a running process', resize: null },
  stopped: { start: 'cannot start a stopped process', delete: null, resize: 'cannot resize a stopped container' },
};

/** Whether `to` may follow `from` in `table` (staying put is not a move). */
export function canMove<S extends string>(table: Readonly<Record<S, readonly S[]>>, from: S, to: S): boolean {
  return table[from].includes(to);
}

/** Apply the move to `rec.status` if allowed; returns whether it happened. */
export function move<S extends string>(table: Readonly<Record<S, readonly S[]>>, rec: { status: S }, to: S): boolean {
  if (!canMove(table, rec.status, to)) return false;
  rec.status = to;
  return true;
}

/** The refusal for `op` in `status`, or null when it is allowed. */
export function refusal<S extends string, O extends string>(table: Readonly<Record<S, Readonly<Record<O, string | null>>>>, status: S, op: O): string | null {
  return table[status][op];
}

/** A process that has been started and has not exited (a paused init is alive). */
export function isAlive(status: InitStatus | ExecStatus): boolean {
  return status === 'running' || status === 'paused';
}
