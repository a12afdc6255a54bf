// vm engine on the real /dev/kvm: fork correctness, state round trip, device round trip,
// pause/kill, bad guest code, no fd/memory leak over 1,000 forks.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readdirSync } from 'node:fs';
import { kvmUnavailableReason, getRegs, getSregs } from '../sys/kvm.js';
import { VmEngine, privateKib, type SeedInfo } from '../engines/vm/engine.js';
import { GuestError, Vm } from '../engines/vm/vm.js';
import { OP, TABLE_WORDS } from '../engines/vm/abi.js';
import { Cancelled } from '../sys/errors.js';

const why = kvmUnavailableReason();
if (why) console.warn(`[vm-engine.test] skipped: ${why}`);

function poke(idx: number, value: number): Buffer {
  const b = Buffer.alloc(12); b[0] = OP.POKE; b.writeUInt32LE(idx, 4); b.writeUInt32LE(value, 8); return b;
}
function peek(idx: number): Buffer {
  const b = Buffer.alloc(8); b[0] = OP.PEEK; b.writeUInt32LE(idx, 4); return b;
}
const u32 = (r: Buffer): number => Number(r.readBigUInt64LE(0));

/** The guest's table and hash, re-implemented (guest/seed.c). */
function guestTable(): Uint32Array {
  const t = new Uint32Array(TABLE_WORDS);
  let x = 0x2545f4914f6cdd1dn;
  const M = (1n << 64n) - 1n;
  for (let i = 0; i < TABLE_WORDS; i++) {
    x ^= (x << 13n) & M; x ^= x >> 7n; x ^= (x << 17n) & M;
    t[i] = Number(x & 0xffffffffn);
  }
  return t;
}
function guestHash(t: Uint32Array, p: Buffer): bigint {
  const M = (1n << 64n) - 1n;
  let h = 0xcbf29ce484222325n;
  for (const b of p) { h ^= BigInt(b); h = (h * 0x100000001b3n) & M; h ^= BigInt(t[Number(h % BigInt(TABLE_WORDS))]!); }
  return h;
}

describe.skipIf(why !== null)('vm engine (KVM)', () => {
  let eng: VmEngine;
  let seed: SeedInfo;
  beforeAll(async () => {
    eng = await VmEngine.create({ threads: 2, shellPool: 4 });
    seed = await eng.createRootSeed({ id: 'test-root' });
  });
  afterAll(async () => { await eng?.close(); });

  it('boots the seed guest to CPL3 and lists the seed as plain data', () => {
    expect(seed.serialLog).toContain('seed: cpl3 up');
    expect(seed.serialLog).toContain('virtio up');
    const l = eng.listSeeds();
    expect(l).toHaveLength(1);
    expect(l[0]!.id).toBe('test-root');
    expect(l[0]!.sealed).toBe(true);
    expect(JSON.parse(JSON.stringify(l))[0].engine).toBe('vm');
  });

  it("a child's writes never reach the seed or its siblings; the seed forks again identically", async () => {
    const a = eng.fork(seed.id), b = eng.fork(seed.id);
    const orig = u32(await eng.invoke(b, peek(5)));
    expect(u32(await eng.invoke(a, poke(5, 0x1234567)))).toBe(orig);
    expect(u32(await eng.invoke(a, peek(5)))).toBe(0x1234567);
    expect(u32(await eng.invoke(b, peek(5)))).toBe(orig);
    const c = eng.fork(seed.id);
    expect(u32(await eng.invoke(c, peek(5)))).toBe(orig);
    // same request -> same table-derived hash; fresh entropy/identity -> different random and id
    const req = Buffer.from([OP.COMPUTE, 1, 2, 3, 4, 5]);
    const [ra, rc] = [await eng.invoke(a, req), await eng.invoke(c, req)];
    const d = eng.fork(seed.id);
    const rd = await eng.invoke(d, req);
    expect(rc.readBigUInt64LE(0)).toBe(rd.readBigUInt64LE(0));
    expect(ra.readBigUInt64LE(0)).toBe(rd.readBigUInt64LE(0)); // the poke at index 5 is not on this path
    expect(rc.readBigUInt64LE(8)).not.toBe(rd.readBigUInt64LE(8));
    expect(rc.readBigUInt64LE(16)).toBe(c.instanceId);
    expect(rd.readBigUInt64LE(16)).toBe(d.instanceId);
    expect(c.instanceId).not.toBe(d.instanceId);
    for (const i of [a, b, c, d]) await eng.destroy(i);
  });

  it('device round trip: responses match the guest computation for small and large requests', async () => {
    const t = guestTable();
    const inst = eng.fork(seed.id);
    for (const len of [0, 1, 17, 4000]) {
      const p = Buffer.alloc(len);
      for (let i = 0; i < len; i++) p[i] = (i * 7 + 3) & 0xff;
      if (len) p[0] = OP.COMPUTE;
      const r = await eng.invoke(inst, p);
      expect(r.length).toBe(32);
      expect(r.readBigUInt64LE(0)).toBe(guestHash(t, p));
    }
    // pipelined requests are answered in order
    const rs = await Promise.all([1, 2, 3].map((k) => eng.invoke(inst, Buffer.from([OP.COMPUTE, k]))));
    expect(rs.map((r) => Number(r.readBigUInt64LE(24)))).toEqual([5, 6, 7]);
    await eng.destroy(inst);
  });

  it('state round trip: save -> restore into a new VM -> same registers', async () => {
    const a = eng.fork(seed.id);
    await eng.invoke(a, Buffer.from([OP.COMPUTE, 9]));
    const snap = a.vm.snapshot();
    const shell = eng.shells.take();
    const mapping = a.vm.mem; // same memory contents are not needed for a register round trip
    const b = Vm.fork('rt', shell, mapping, snap, eng.threads);
    expect(getRegs(shell.vcpuFd).equals(snap.vcpu.regs)).toBe(true);
    expect(getSregs(shell.vcpuFd).buf.equals(snap.vcpu.sregs)).toBe(true);
    const again = b.snapshot();
    expect(again.vcpu.regs.equals(snap.vcpu.regs)).toBe(true);
    expect(again.vcpu.sregs.equals(snap.vcpu.sregs)).toBe(true);
    expect(again.vcpu.msrs.readUInt32LE(0)).toBe(snap.vcpu.msrs.readUInt32LE(0));
    // device state is cloned; the fork then injected one entropy message on rx
    expect(again.device.status).toBe(snap.device.status);
    expect(again.device.queues[1]).toEqual(snap.device.queues[1]);
    expect(again.device.queues[0]!.usedIdx).toBe(snap.device.queues[0]!.usedIdx + 1);
    await b.kill();
    eng.shells.put(shell);
    await eng.destroy(a);
  });

  it('pauses and kills a VM that is running guest code', async () => {
    const inst = eng.fork(seed.id);
    const p = eng.invoke(inst, Buffer.from([OP.SPIN]));
    await new Promise((r) => setTimeout(r, 30));
    expect(inst.vm.status).toBe('running');
    await inst.vm.pause();
    expect(inst.vm.status).toBe('paused');
    inst.vm.resume();
    await new Promise((r) => setTimeout(r, 10));
    expect(inst.vm.status).toBe('running');
    await eng.destroy(inst);
    await expect(p).rejects.toBeInstanceOf(Cancelled);
    // the engine keeps serving
    const ok = eng.fork(seed.id);
    expect((await eng.invoke(ok, Buffer.from([OP.COMPUTE]))).length).toBe(32);
    await eng.destroy(ok);
  });

  it('reports bad guest code as errors with the guest state, without crashing', async () => {
    const cases: [number, RegExp][] = [
      [OP.FAULT, /#UD/],
      [OP.HLT, /#GP/],
      [OP.WILD_WRITE, /unbacked guest-physical 0x20000000/],
    ];
    for (const [op, re] of cases) {
      const inst = eng.fork(seed.id);
      const err = await eng.invoke(inst, Buffer.from([op])).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(GuestError);
      expect((err as Error).message).toMatch(re);
      expect((err as GuestError).regs).not.toBeNull();
      expect(inst.vm.status).toBe('dead');
      await expect(eng.invoke(inst, Buffer.from([0]))).rejects.toBeInstanceOf(GuestError);
      await eng.destroy(inst);
    }
    const ok = eng.fork(seed.id);
    expect((await eng.invoke(ok, Buffer.from([OP.COMPUTE]))).length).toBe(32);
    await eng.destroy(ok);
  });

  it('no fd or memory leak over 1,000 forks', async () => {
    const fds = (): number => readdirSync('/proc/self/fd').length;
    // warm up (pool at steady state, JIT, buffers)
    for (let i = 0; i < 50; i++) { const x = eng.fork(seed.id); await eng.invoke(x, Buffer.from([0, i])); await eng.destroy(x); }
    await eng.settled();
    const fd0 = fds(), mem0 = privateKib();
    for (let i = 0; i < 1000; i++) {
      const x = eng.fork(seed.id);
      await eng.invoke(x, Buffer.from([0, i & 0xff]));
      await eng.destroy(x);
    }
    await eng.settled();
    expect(eng.instanceCount).toBe(0);
    expect(fds() - fd0).toBeLessThanOrEqual(2);
    // JS heap noise aside, 1,000 leaked 16 MiB guests (or even their CoW pages) would show
    expect(privateKib() - mem0).toBeLessThan(16 * 1024);
  });
});
