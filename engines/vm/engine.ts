// vm engine: resident root seed microVMs and copy-on-write forks of them.
//
//   createRootSeed(opts) -> SeedInfo     cold-boot the seed guest, snapshot it when it reports
//                                        ready, seal its memory, record its working set
//   fork(seedId, opts?)  -> VmInstance   shell from the pool + MAP_PRIVATE memory + state
//                                        restore + prefill + fresh entropy/identity (sync)
//   invoke(inst, bytes)  -> Buffer       one request/response over the virtio queue
//   destroy(inst)                        kill the vCPU if running, close fds, unmap memory
//   listSeeds()          -> SeedInfo[]   plain data
//
// Guests: the seed guest in guest/ (built with guest/build.sh on first use). A Linux boot path
// (boot_params/e820/initramfs) is NOT implemented; Linux guests are unverified on this
// project's PVM hosts, where a Linux kernel does not boot at all.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomUUID } from 'node:crypto';
import { close, open, O, pread } from '../../sys/libc.js';
import { KvmSystem, CAP, preFaultMemory } from '../../sys/kvm.js';
import { NotFound, FailedPrecondition } from '../../sys/errors.js';
import { ShellPool, createShell, destroyShell, shellsClosed, type Shell } from './shells.js';
import { VcpuThreadPool } from './vcpu-threads.js';
import { GUEST_MEM_SIZE, OP } from './abi.js';
import { GuestMemoryFile, loadElf, prefill, recordWorkingSet, type GuestMapping, type WorkingSet } from './memory.js';
import { Vm, type VmSnapshot } from './vm.js';

export interface VmEngineOptions {
  /** vCPU threads (pre-started worker_threads). Default 2. */
  threads?: number;
  /** Pre-created VM shells kept ready. Default 8; 0 disables the pool. */
  shellPool?: number;
  /** Populate the recorded working set in each fork. Default true. */
  prefill?: boolean;
  /** Restore the full vCPU/VM state set (MSRs, LAPIC, events, clock, irqchip, PIT). Default true. */
  fullRestore?: boolean;
  /** Return destroyed instances' shells to the pool (needs fullRestore). Default true. */
  recycle?: boolean;
}

export interface RootSeedOptions { id?: string; elf?: string; memBytes?: number }

export interface SeedInfo {
  id: string;
  engine: 'vm';
  parent: string | null;
  elf: string;
  memBytes: number;
  bootUs: number;
  snapshotUs: number;
  createdAt: string;
  forks: number;
  workingSet: { readPages: number; writePages: number };
  sealed: boolean;
  serialLog: string;
}

export interface ForkOptions { prefill?: boolean; pool?: boolean }


export interface VmInstance {
  id: string;
  seedId: string;
  /** Guest identity injected at fork (the guest echoes it in responses). */
  instanceId: bigint;
  forkUs: number;
  phases: { shellUs: number; mapUs: number; restoreUs: number; prefillUs: number };
  readonly vm: Vm;
}

interface Seed {
  info: SeedInfo;
  mem: GuestMemoryFile;
  snap: VmSnapshot;
  ws: WorkingSet;
}

function repoRoot(): string {
  let d = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(d, 'guest', 'build.sh'))) return d;
    d = dirname(d);
  }
  throw new FailedPrecondition('cannot find guest/build.sh above ' + fileURLToPath(import.meta.url));
}

/** Build guest/build/seed.elf if it is missing or older than its sources. */
export function ensureSeedGuest(): string {
  const root = repoRoot();
  const elf = join(root, 'guest', 'build', 'seed.elf');
  const srcs = ['start.S', 'seed.c', 'abi.h', 'link.ld', 'build.sh'].map((f) => join(root, 'guest', f));
  const stale = !existsSync(elf) || srcs.some((s) => statSync(s).mtimeMs > statSync(elf).mtimeMs);
  if (stale) execFileSync(join(root, 'guest', 'build.sh'), { stdio: ['ignore', 'ignore', 'inherit'] });
  return elf;
}

export class VmEngine {
  private readonly seeds = new Map<string, Seed>();
  private readonly instances = new Set<VmInstance>();
  readonly threads: VcpuThreadPool;
  shells!: ShellPool;
  private readonly opts: Required<VmEngineOptions>;
  readonly preFaultSupported: boolean;
  private pagemapFd = -1;

  private constructor(opts: VmEngineOptions) {
    this.opts = { threads: opts.threads ?? 2, shellPool: opts.shellPool ?? 8, prefill: opts.prefill ?? true, fullRestore: opts.fullRestore ?? true, recycle: opts.recycle ?? true };
    this.threads = new VcpuThreadPool(this.opts.threads);
    this.preFaultSupported = KvmSystem.get().check(CAP.PRE_FAULT_MEMORY) > 0;
  }

  static async create(opts: VmEngineOptions = {}): Promise<VmEngine> {
    const e = new VmEngine(opts);
    await e.threads.start();
    e.shells = new ShellPool(e.opts.shellPool, e.threads.runMask(), GUEST_MEM_SIZE, () => e.threads.idle);
    e.shells.fill();
    return e;
  }

  async createRootSeed(o: RootSeedOptions = {}): Promise<SeedInfo> {
    const id = o.id ?? `vm-root-${randomUUID().slice(0, 8)}`;
    const elf = o.elf ?? ensureSeedGuest();
    const memBytes = o.memBytes ?? GUEST_MEM_SIZE;
    const t0 = performance.now();
    const { vm, mem, mapping, shell } = await this.coldBoot(id, elf, memBytes);
    const t1 = performance.now();
    let snap: VmSnapshot;
    try {
      snap = vm.snapshot();
    } finally {
      mapping.release(); // no shared writable mapping may remain for the write seal
      destroyShell(shell);
    }
    mem.seal();
    const t2 = performance.now();
    const info: SeedInfo = {
      id, engine: 'vm', parent: null, elf, memBytes, bootUs: Math.round((t1 - t0) * 1000), snapshotUs: Math.round((t2 - t1) * 1000),
      createdAt: new Date().toISOString(), forks: 0, workingSet: { readPages: 0, writePages: 0 }, sealed: true, serialLog: vm.serialLog,
    };
    const seed: Seed = { info, mem, snap, ws: { read: [], write: [] } };
    this.seeds.set(id, seed);
    // working set of a typical first request, recorded from one warm-up fork
    const warm = this.fork(id, { prefill: false });
    try {
      await this.invoke(warm, Buffer.from([OP.COMPUTE, ...Buffer.from('spore warm-up request')]));
      if (this.pagemapFd < 0) this.pagemapFd = open('/proc/self/pagemap', O.RDONLY | O.CLOEXEC);
      seed.ws = recordWorkingSet(warm.vm.mem, this.pagemapFd, (fd, buf, off) => pread(fd, buf, off));
      info.workingSet = { readPages: seed.ws.read.reduce((a, r) => a + r[1], 0), writePages: seed.ws.write.reduce((a, r) => a + r[1], 0) };
    } finally {
      await this.destroy(warm);
    }
    info.forks = 0;
    return { ...info };
  }

  /** Boot a guest from scratch to its first READY (used for seeds and the cold-boot bench). */
  async coldBoot(id: string, elf: string, memBytes = GUEST_MEM_SIZE): Promise<{ vm: Vm; mem: GuestMemoryFile; mapping: GuestMapping; shell: Shell }> {
    const mem = GuestMemoryFile.create(id, memBytes);
    let mapping: GuestMapping | null = null;
    let shell: Shell | null = null;
    try {
      shell = createShell(this.threads.runMask(), memBytes);
      mapping = mem.mapSharedAt(shell.mem.addr, shell.memBuf);
      const { entry } = loadElf(elf, mapping.buf);
      const vm = Vm.boot(id, shell, mapping, entry, this.threads);
      await vm.waitReady();
      return { vm, mem, mapping, shell };
    } catch (e) {
      mapping?.release();
      if (shell) destroyShell(shell);
      mem.close();
      throw e;
    }
  }

  fork(seedId: string, o: ForkOptions = {}): VmInstance {
    const seed = this.seeds.get(seedId);
    if (!seed) throw new NotFound(`vm seed ${seedId} not found`);
    if (seed.info.memBytes !== this.shells.memSize) throw new FailedPrecondition(`seed memory ${seed.info.memBytes} != shell size ${this.shells.memSize}`);
    const t0 = performance.now();
    const shell = o.pool === false ? createShell(this.threads.runMask(), seed.info.memBytes) : this.shells.take();
    const t1 = performance.now();
    let mapping: GuestMapping | null = null;
    try {
      mapping = seed.mem.mapPrivateAt(shell.mem.addr, shell.memBuf);
      const t2 = performance.now();
      const id = `${seedId}/${randomUUID().slice(0, 8)}`;
      const vm = Vm.fork(id, shell, mapping, seed.snap, this.threads, this.opts.fullRestore);
      const t3 = performance.now();
      if (o.prefill ?? this.opts.prefill) {
        if (!(this.preFaultSupported && preFaultMemory(shell.vcpuFd, 0n, BigInt(seed.info.memBytes)))) prefill(mapping, seed.ws);
      }
      const t4 = performance.now();
      seed.info.forks++;
      const inst: VmInstance = {
        id, seedId, vm, instanceId: vm.instanceId, forkUs: (t4 - t0) * 1000,
        phases: { shellUs: (t1 - t0) * 1000, mapUs: (t2 - t1) * 1000, restoreUs: (t3 - t2) * 1000, prefillUs: (t4 - t3) * 1000 },
      };
      this.instances.add(inst);
      return inst;
    } catch (e) {
      mapping?.release();
      destroyShell(shell);
      throw e;
    }
  }

  invoke(inst: VmInstance, request: Buffer): Promise<Buffer> {
    return inst.vm.request(request);
  }

  async destroy(inst: VmInstance): Promise<void> {
    if (!this.instances.delete(inst)) return;
    const healthy = inst.vm.status !== 'dead';
    await inst.vm.kill();
    inst.vm.mem.release();
    // healthy shells go back to the pool (see engines/vm/shells.ts); failed ones are torn down
    if (healthy && this.opts.recycle && this.opts.fullRestore) this.shells.put(inst.vm.shell);
    else destroyShell(inst.vm.shell);
  }

  listSeeds(): SeedInfo[] {
    return [...this.seeds.values()].map((s) => ({ ...s.info, workingSet: { ...s.info.workingSet } }));
  }

  get instanceCount(): number { return this.instances.size; }
  /** Resolves when all destroyed VMs' fds are closed (closing is asynchronous, see engines/vm/shells). */
  settled(): Promise<void> { return shellsClosed(); }

  async removeSeed(id: string): Promise<void> {
    const s = this.seeds.get(id);
    if (!s) throw new NotFound(`vm seed ${id} not found`);
    for (const i of [...this.instances]) if (i.seedId === id) await this.destroy(i);
    this.seeds.delete(id);
    s.mem.close();
  }

  async close(): Promise<void> {
    for (const i of [...this.instances]) await this.destroy(i);
    for (const id of [...this.seeds.keys()]) await this.removeSeed(id);
    this.shells.drain();
    await shellsClosed();
    await this.threads.stop();
    if (this.pagemapFd >= 0) { close(this.pagemapFd); this.pagemapFd = -1; }
  }
}

/** Private (CoW-copied + anonymous) memory of this process, KiB, from smaps_rollup. */
export function privateKib(): number {
  const t = readFileSync('/proc/self/smaps_rollup', 'utf8');
  let kib = 0;
  for (const m of t.matchAll(/^Private_(?:Clean|Dirty):\s+(\d+) kB/gm)) kib += Number(m[1]);
  return kib;
}
