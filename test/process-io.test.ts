// ProcessIO.open: bad stdio requests get errors that say what to fix.
import { describe, expect, it } from 'vitest';
import { ProcessIO } from '../task/stdio.js';

describe('ProcessIO.open refusals', () => {
  it('a log URI as stderr is refused as such (not as a path that is not absolute)', async () => {
    await expect(ProcessIO.open({ stdin: '', stdout: '/tmp/out.fifo', stderr: 'file:///tmp/x.log', terminal: false }, { id: 'c', namespace: 'test', cwd: '/tmp', relay: true }))
      .rejects.toThrow(/stderr: a log URI must be given as stdout/);
    await expect(ProcessIO.open({ stdin: '', stdout: '/tmp/out.fifo', stderr: 'binary:///usr/bin/logger', terminal: false }, { id: 'c', namespace: 'test', cwd: '/tmp', relay: true }))
      .rejects.toThrow(/stderr: a log URI must be given as stdout/);
  });

  it('a relative path is refused with the forms that are accepted', async () => {
    await expect(ProcessIO.open({ stdin: 'in', stdout: '', stderr: '', terminal: false }, { id: 'c', namespace: 'test', cwd: '/tmp', relay: true }))
      .rejects.toThrow(/stdin must be an absolute path or a file:\/\/ or binary:\/\/ URI, got "in"/);
  });
});
