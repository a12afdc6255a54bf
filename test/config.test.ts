import { describe, expect, it } from 'vitest';
import { loadConfig } from '../runtime/config.js';

describe('spored config', () => {
  it('has the documented defaults', () => {
    const c = loadConfig([], {});
    expect(c.ttrpcSocket).toBe('/run/spore/ttrpc.sock');
    expect(c.friSocket).toBe('/run/spore/fri.sock');
    expect(c.gatewayAddress).toBe('127.0.0.1:8780');
    expect(c.l2Replicas).toBe(2);
    expect(c.prefill).toBe('off');
  });

  it('takes flags over env, and both forms of a flag', () => {
    expect(loadConfig(['--prefill', 'record'], { SPORE_PREFILL: 'inherit' }).prefill).toBe('record');
    expect(loadConfig(['--prefill=inherit'], {}).prefill).toBe('inherit');
    expect(loadConfig([], { SPORE_PREFILL: 'inherit', SPORE_NETNS_POOL: '4' })).toMatchObject({ prefill: 'inherit', netnsPool: 4 });
  });

  it('rejects bad values with a message that says what to fix', () => {
    expect(() => loadConfig(['--prefill', 'yes'], {})).toThrow(/--prefill must be off, inherit or record/);
    expect(() => loadConfig(['--netns-pool', '-1'], {})).toThrow(/--netns-pool must be an integer between 0 and 1024/);
    expect(() => loadConfig(['--bogus', '1'], {})).toThrow(/unknown flag --bogus/);
    expect(() => loadConfig(['--gateway'], {})).toThrow(/needs a value/);
  });
});
