import { describe, expect, it } from 'vitest';
import { batchFor, innerBatch, ownerOfSlot, slotAddresses } from '../pools/netns.js';

describe('netns pool naming', () => {
  it('names slots after the owner pid so a later spored can find a dead owner', () => {
    expect(ownerOfSlot('sp76d-3')).toBe(0x76d);
    expect(ownerOfSlot('sp3fffff-31')).toBe(0x3fffff);
    expect(ownerOfSlot('cni-1234')).toBeNull();
    expect(ownerOfSlot('sp-3')).toBeNull();
    expect(ownerOfSlot('spzz-3')).toBeNull();
  });

  it('gives every slot its own /30 and keeps interface names within 15 bytes', () => {
    const a = slotAddresses(7, 0);
    const b = slotAddresses(7, 1);
    expect(a).toEqual({ host: '10.207.0.1', instance: '10.207.0.2' });
    expect(b.host).toBe('10.207.0.5');
    expect(slotAddresses(7, 64).host).toBe('10.207.1.1');
    const batch = batchFor('sp3fffff-', 7, 30, 32);
    for (const m of batch.matchAll(/link add (\S+) type veth/g)) expect((m[1] ?? '').length).toBeLessThanOrEqual(15);
    expect(batch).toContain('netns add sp3fffff-31');
    expect(innerBatch(7, 1)).toContain('addr add 10.207.0.6/30 dev eth0');
  });
});
