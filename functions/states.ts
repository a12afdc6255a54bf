// State moves of the function runtime's records, as data: for each record type, which
// states may follow which. A record's state changes only through `move`, which answers
// whether the move is allowed from where the record is (a late or repeated event, e.g. an
// exit report after a seed was deleted, is then simply not applied).
import type { InstanceState, SeedState } from '../protocols/fri/types.js';

/** A function version: built, serving, finishing its in-flight work, gone. */
export type VersionState = 'starting' | 'active' | 'retiring' | 'gone';

export const SEED_MOVES: Readonly<Record<SeedState, readonly SeedState[]>> = {
  starting: ['ready', 'failed', 'deleting'],
  ready: ['failed', 'deleting'],
  failed: ['deleting'],
  deleting: [],
};

/** An instance is 'running' from an invoke's fork, or 'paused' (FRI Fork) until Activate. */
export const INSTANCE_MOVES: Readonly<Record<InstanceState, readonly InstanceState[]>> = {
  paused: ['running', 'failed'],
  running: ['done', 'failed'],
  done: [],
  failed: [],
};

export const VERSION_MOVES: Readonly<Record<VersionState, readonly VersionState[]>> = {
  starting: ['active', 'gone'],
  active: ['retiring', 'gone'],
  retiring: ['gone'],
  gone: [],
};

/** Whether `to` may follow `from` in `table` (staying put is not a move). */
export function canMove<S extends string>(table: Readonly<Record<S, readonly S[]>>, from: S, to: S): boolean {
  return table[from].includes(to);
}

/** Apply the move to `rec.state` if allowed; returns whether it happened. */
export function move<S extends string>(table: Readonly<Record<S, readonly S[]>>, rec: { state: S }, to: S): boolean {
  if (!canMove(table, rec.state, to)) return false;
  rec.state = to;
  return true;
}

/** States a record cannot leave. */
export function isFinal<S extends string>(table: Readonly<Record<S, readonly S[]>>, s: S): boolean {
  return table[s].length === 0;
}
