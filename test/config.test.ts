import { describe, expect, it } from 'vitest';
import { loadConfig } from '../runtime/config.js';

describe('spored config', () => {
  it('has the documented defaults', () => {
    const c = loadConfig([], {});
    expect(c.ttrpcSocket).toBe('/run/spore/ttrpc.sock');
    expect(c.friSocket).toBe('/run/spore/fri.sock');
    expect(c.gatewayAddress).toBe('127.0.0.1:8780');
    expect(c.l2Replicas).toBe(2);
    expect(c.stateDir).toBe('/var/lib/spore');
    expect(c.functionConcurrency).toBe(32);
  });

  it('takes flags over env, and both forms of a flag', () => {
    expect(loadConfig(['--function-concurrency', '8'], { SPORE_FUNCTION_CONCURRENCY: '4' }).functionConcurrency).toBe(8);
    expect(loadConfig(['--state-dir=/tmp/x'], {}).stateDir).toBe('/tmp/x');
    expect(loadConfig([], { SPORE_STATE_DIR: '/tmp/y', SPORE_CGROUP_POOL: '4' })).toMatchObject({ stateDir: '/tmp/y', cgroupPool: 4 });
    expect(loadConfig(['--run-dir', '/tmp/r'], {}).stateDir).toBe('/tmp/r/state');
  });

  it('rejects bad values with a message that says what to fix', () => {
    expect(() => loadConfig(['--function-concurrency', 'lots'], {})).toThrow(/--function-concurrency must be an integer between 0 and 1024/);
    expect(() => loadConfig(['--cgroup-pool', '-1'], {})).toThrow(/--cgroup-pool must be an integer between 0 and 4096/);
    expect(() => loadConfig(['--bogus', '1'], {})).toThrow(/unknown flag --bogus/);
    expect(() => loadConfig(['--gateway'], {})).toThrow(/needs a value/);
  });
});
