// The vCPU thread (engines/vm/vcpu-thread.ts) as a typed worker module: it starts, reports
// its tid and signal mask, runs a session and answers, and quits — without /dev/kvm (fd -1
// makes KVM_RUN fail with EBADF, which the thread reports like any other result).
import { describe, expect, it } from 'vitest';
import { VcpuThread } from '../engines/vm/vcpu-threads.js';

describe('vCPU thread', () => {
  it('starts, reports its tid and mask, answers a run with the ioctl result, and quits', async () => {
    const t = new VcpuThread();
    await t.ready();
    expect(t.tid).toBeGreaterThan(0);
    expect(t.tid).not.toBe(process.pid); // a thread of its own
    expect(t.runMask().length).toBe(8);
    const r = await t.run(-1, 0n);
    expect(r).toMatchObject({ rc: -1, errno: 9 }); // EBADF: the worker ran KVM_RUN on fd -1
    expect(r.serial.length).toBe(0);
    const again = await t.run(-1, 0n); // a second session on the same thread
    expect(again.errno).toBe(9);
    await t.quit();
  });
});
