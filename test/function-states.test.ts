// The function runtime's state moves (functions/states.ts): what may follow what.
import { describe, expect, it } from 'vitest';
import { INSTANCE_MOVES, SEED_MOVES, VERSION_MOVES, canMove, isFinal, move } from '../functions/states.js';

describe('function runtime state moves', () => {
  it('seeds: starting -> ready -> failed/deleting; nothing leaves deleting; a late ready does not revive a failed seed', () => {
    const s = { state: 'starting' as const as 'starting' | 'ready' | 'failed' | 'deleting' };
    expect(move(SEED_MOVES, s, 'ready')).toBe(true);
    expect(move(SEED_MOVES, s, 'ready')).toBe(false);
    expect(move(SEED_MOVES, s, 'failed')).toBe(true);
    expect(move(SEED_MOVES, s, 'ready')).toBe(false);
    expect(s.state).toBe('failed');
    expect(move(SEED_MOVES, s, 'deleting')).toBe(true);
    expect(isFinal(SEED_MOVES, 'deleting')).toBe(true);
    for (const to of ['starting', 'ready', 'failed'] as const) expect(canMove(SEED_MOVES, 'deleting', to)).toBe(false);
  });

  it('instances: a parked one runs once; done and failed are final', () => {
    expect(canMove(INSTANCE_MOVES, 'paused', 'running')).toBe(true);
    expect(canMove(INSTANCE_MOVES, 'running', 'paused')).toBe(false);
    expect(canMove(INSTANCE_MOVES, 'done', 'running')).toBe(false);
    expect(isFinal(INSTANCE_MOVES, 'done') && isFinal(INSTANCE_MOVES, 'failed')).toBe(true);
  });

  it('versions: starting -> active -> retiring -> gone, or straight to gone; never back', () => {
    expect(canMove(VERSION_MOVES, 'starting', 'active')).toBe(true);
    expect(canMove(VERSION_MOVES, 'active', 'retiring')).toBe(true);
    expect(canMove(VERSION_MOVES, 'retiring', 'active')).toBe(false);
    expect(canMove(VERSION_MOVES, 'starting', 'retiring')).toBe(false);
    expect(canMove(VERSION_MOVES, 'gone', 'active')).toBe(false);
  });

  it('every table is closed: each target state is itself a key', () => {
    for (const t of [SEED_MOVES, INSTANCE_MOVES, VERSION_MOVES] as Record<string, readonly string[]>[]) {
      for (const tos of Object.values(t)) for (const to of tos) expect(Object.keys(t)).toContain(to);
    }
  });
});
