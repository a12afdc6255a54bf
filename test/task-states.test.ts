// task/states.ts: containerd's Task records move only along their tables, and every
// operation is either allowed or refused with runc's words, for every status.
import { describe, expect, it } from 'vitest';
import { EXEC_MOVES, EXEC_OPS, INIT_MOVES, INIT_OPS, canMove, isAlive, move, refusal, type ExecStatus, type InitStatus } from '../task/states.js';

const INIT: InitStatus[] = ['created', 'running', 'paused', 'stopped'];
const EXEC: ExecStatus[] = ['created', 'running', 'stopped'];

describe('task states', () => {
  it('a stopped process is final; paused exists for the init only', () => {
    expect(INIT_MOVES.stopped).toEqual([]);
    expect(EXEC_MOVES.stopped).toEqual([]);
    expect(Object.keys(EXEC_MOVES)).not.toContain('paused');
    for (const from of INIT) for (const to of INIT_MOVES[from]) expect(INIT).toContain(to);
    for (const from of EXEC) for (const to of EXEC_MOVES[from]) expect(EXEC).toContain(to);
  });

  it('pause and resume move between running and paused; both can stop; nothing returns to created', () => {
    expect(canMove(INIT_MOVES, 'running', 'paused')).toBe(true);
    expect(canMove(INIT_MOVES, 'paused', 'running')).toBe(true);
    expect(canMove(INIT_MOVES, 'paused', 'stopped')).toBe(true);
    expect(canMove(INIT_MOVES, 'created', 'paused')).toBe(false);
    for (const s of INIT) expect(canMove(INIT_MOVES, s, 'created')).toBe(false);
  });

  it('move applies only allowed moves and says whether it did', () => {
    const rec: { status: InitStatus } = { status: 'created' };
    expect(move(INIT_MOVES, rec, 'paused')).toBe(false);
    expect(rec.status).toBe('created');
    expect(move(INIT_MOVES, rec, 'running')).toBe(true);
    expect(move(INIT_MOVES, rec, 'paused')).toBe(true);
    expect(move(INIT_MOVES, rec, 'stopped')).toBe(true);
    expect(move(INIT_MOVES, rec, 'running')).toBe(false); // a late resume after the exit
    expect(rec.status).toBe('stopped');
  });

  it('refuses with runc shim texts where runc refuses', () => {
    expect(refusal(INIT_OPS, 'paused', 'exec')).toBe('cannot exec in a paused state');
    expect(refusal(INIT_OPS, 'stopped', 'exec')).toBe('cannot exec in a stopped state');
    expect(refusal(INIT_OPS, 'created', 'pause')).toBe('cannot pause task in created state');
    expect(refusal(INIT_OPS, 'paused', 'pause')).toBe('cannot pause a paused container');
    expect(refusal(INIT_OPS, 'running', 'resume')).toBe('cannot resume a running process');
    expect(refusal(INIT_OPS, 'running', 'delete')).toBe('cannot delete a running process');
    expect(refusal(INIT_OPS, 'paused', 'delete')).toBe('cannot delete a paused process');
    expect(refusal(INIT_OPS, 'stopped', 'update')).toBe('cannot update a stopped container');
    expect(refusal(EXEC_OPS, 'running', 'delete')).toBe('cannot delete a running process');
    expect(refusal(EXEC_OPS, 'stopped', 'resize')).toBe('cannot resize a stopped container');
  });

  it('allows exactly what a status permits', () => {
    const allowed = (s: InitStatus): string[] => Object.entries(INIT_OPS[s]).filter(([, v]) => v === null).map(([k]) => k).sort();
    expect(allowed('created')).toEqual(['delete', 'exec', 'start', 'update']);
    expect(allowed('running')).toEqual(['exec', 'execStart', 'pause', 'update']);
    expect(allowed('paused')).toEqual(['resume', 'update']);
    expect(allowed('stopped')).toEqual(['delete']);
    expect(refusal(EXEC_OPS, 'created', 'start')).toBeNull();
    expect(isAlive('paused')).toBe(true);
    expect(isAlive('created')).toBe(false);
  });
});
