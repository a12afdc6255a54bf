// vm engine bench: fork -> first response of the seed guest, side by side with booting the
// same guest from scratch. `node dist/bench/vm.js` prints a markdown table and ends with one
// JSON line {"fork_p50_us":…,"fork_p99_us":…,"cold_boot_p50_us":…,"idle_private_kib":…}.
// env: VM_BENCH_N (forks per scenario, default 300), VM_BENCH_SECONDS (forks/s window, 2).
import { fileURLToPath } from 'node:url';
import { VmEngine, ensureSeedGuest, privateKib, type VmInstance } from '../engines/vm/engine.js';
import { destroyShell } from '../engines/vm/shells.js';
import { OP } from '../engines/vm/abi.js';
import { kvmUnavailableReason } from '../sys/kvm.js';

export interface VmBenchOptions { n?: number; seconds?: number; coldBoots?: number; idleVms?: number }

export interface Dist { n: number; p50: number; p90: number; p99: number; max: number }
export interface VmBenchResult {
  fork_p50_us: number; fork_p99_us: number; cold_boot_p50_us: number; idle_private_kib: number;
  scenarios: { name: string; pool: boolean; prefill: boolean; firstResponseUs: Dist; forkUs: Dist }[];
  forksPerSec: { clients: number; forksPerSec: number }[];
  coldBoot: Dist;
  warmRequestUs: Dist;
  seed: { bootUs: number; snapshotUs: number; workingSetPages: { read: number; write: number } };
  host: { preFaultMemory: boolean };
}

function dist(xs: number[]): Dist {
  const a = [...xs].sort((x, y) => x - y);
  const q = (p: number): number => Math.round(a[Math.min(a.length - 1, Math.floor(p * a.length))] ?? 0);
  return { n: a.length, p50: q(0.5), p90: q(0.9), p99: q(0.99), max: Math.round(a[a.length - 1] ?? 0) };
}

const REQ = Buffer.from([OP.COMPUTE, ...Buffer.from('hello from the bench: checksum me against the table')]);

export async function runVmBench(o: VmBenchOptions = {}): Promise<VmBenchResult> {
  const why = kvmUnavailableReason();
  if (why) throw new Error(why);
  const n = o.n ?? Number(process.env.VM_BENCH_N ?? 300);
  const seconds = o.seconds ?? Number(process.env.VM_BENCH_SECONDS ?? 2);
  const coldBoots = o.coldBoots ?? 20;
  const idleVms = o.idleVms ?? 100;
  const eng = await VmEngine.create({ threads: 2, shellPool: 4 });
  try {
    const seed = await eng.createRootSeed({ id: 'bench-root' });
    eng.shells.autoRefill = false;
    const scenarios: VmBenchResult['scenarios'] = [];
    for (const [pool, prefill] of [[true, true], [true, false], [false, true], [false, false]] as const) {
      if (pool) eng.shells.fill();
      const first: number[] = [], fork: number[] = [];
      for (let i = 0; i < n + 10; i++) {
        const t0 = performance.now();
        const inst = eng.fork(seed.id, { pool, prefill });
        await eng.invoke(inst, REQ);
        const dt = (performance.now() - t0) * 1000;
        if (i >= 10) { first.push(dt); fork.push(inst.forkUs); }
        await eng.destroy(inst);
      }
      scenarios.push({ name: `${pool ? 'shell pool' : 'no pool'}, ${prefill ? 'prefill' : 'no prefill'}`, pool, prefill, firstResponseUs: dist(first), forkUs: dist(fork) });
    }

    // warm requests on one forked VM (the vCPU-thread round trip floor)
    const warm: number[] = [];
    {
      const inst = eng.fork(seed.id, { pool: false });
      for (let i = 0; i < 200; i++) {
        const t0 = performance.now();
        await eng.invoke(inst, REQ);
        warm.push((performance.now() - t0) * 1000);
      }
      await eng.destroy(inst);
    }

    // forks/s: each client loops fork -> first response -> destroy, with the shell pool
    // (destroyed instances' shells are recycled, so the rate is sustainable)
    const forksPerSec: VmBenchResult['forksPerSec'] = [];
    for (const clients of [1, 2]) {
      let count = 0;
      const end = performance.now() + seconds * 1000;
      await Promise.all(Array.from({ length: clients }, async () => {
        while (performance.now() < end) {
          const inst = eng.fork(seed.id);
          await eng.invoke(inst, REQ);
          await eng.destroy(inst);
          count++;
        }
      }));
      forksPerSec.push({ clients, forksPerSec: Math.round(count / seconds) });
    }

    // private memory per idle forked VM (after its first response)
    const before = privateKib();
    const insts: VmInstance[] = [];
    for (let i = 0; i < idleVms; i++) {
      const inst = eng.fork(seed.id, { pool: false });
      await eng.invoke(inst, REQ);
      insts.push(inst);
    }
    const idleKib = Math.max(0, Math.round((privateKib() - before) / idleVms));
    for (const i of insts) await eng.destroy(i);

    // cold boot: new memfd, ELF load, boot to ready, first response
    const elf = ensureSeedGuest();
    const cold: number[] = [];
    for (let i = 0; i < coldBoots; i++) {
      const t0 = performance.now();
      const { vm, mem, mapping, shell } = await eng.coldBoot(`cold-${i}`, elf);
      await vm.request(REQ);
      cold.push((performance.now() - t0) * 1000);
      await vm.kill();
      mapping.release();
      destroyShell(shell);
      mem.close();
    }

    const main = scenarios[0]!.firstResponseUs;
    return {
      fork_p50_us: main.p50, fork_p99_us: main.p99, cold_boot_p50_us: dist(cold).p50, idle_private_kib: idleKib,
      scenarios, forksPerSec, coldBoot: dist(cold), warmRequestUs: dist(warm),
      seed: { bootUs: seed.bootUs, snapshotUs: seed.snapshotUs, workingSetPages: { read: seed.workingSet.readPages, write: seed.workingSet.writePages } },
      host: { preFaultMemory: eng.preFaultSupported },
    };
  } finally {
    await eng.close();
  }
}

export function renderVmBench(r: VmBenchResult): string {
  const L: string[] = [];
  L.push('### vm engine: fork -> first response (seed guest, 16 MiB, 4 MiB table)', '');
  L.push('| scenario | n | p50 µs | p90 µs | p99 µs | max µs | fork part p50 µs |', '|---|---|---|---|---|---|---|');
  for (const s of r.scenarios) {
    const d = s.firstResponseUs;
    L.push(`| fork, ${s.name} | ${d.n} | ${d.p50} | ${d.p90} | ${d.p99} | ${d.max} | ${s.forkUs.p50} |`);
  }
  const c = r.coldBoot;
  L.push(`| boot from scratch (memfd + ELF + boot + init + first response) | ${c.n} | ${c.p50} | ${c.p90} | ${c.p99} | ${c.max} | - |`);
  const w = r.warmRequestUs;
  L.push(`| warm request on a running fork (floor) | ${w.n} | ${w.p50} | ${w.p90} | ${w.p99} | ${w.max} | - |`);
  L.push('', '| metric | value |', '|---|---|');
  for (const f of r.forksPerSec) L.push(`| forks/s (fork → response → destroy), ${f.clients} client(s) | ${f.forksPerSec} |`);
  L.push(`| private memory per idle forked VM (smaps_rollup Private_*) | ${r.idle_private_kib} KiB |`);
  L.push(`| cold boot / fork p50 ratio | ${(r.cold_boot_p50_us / Math.max(1, r.fork_p50_us)).toFixed(1)}x |`);
  L.push(`| seed boot / snapshot | ${r.seed.bootUs} µs / ${r.seed.snapshotUs} µs |`);
  L.push(`| recorded working set (read / CoW pages) | ${r.seed.workingSetPages.read} / ${r.seed.workingSetPages.write} |`);
  L.push(`| KVM_PRE_FAULT_MEMORY on this host | ${r.host.preFaultMemory ? 'yes' : 'no (host-side populate used)'} |`);
  return L.join('\n');
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const r = await runVmBench();
  console.log(renderVmBench(r));
  console.log(JSON.stringify({ fork_p50_us: r.fork_p50_us, fork_p99_us: r.fork_p99_us, cold_boot_p50_us: r.cold_boot_p50_us, idle_private_kib: r.idle_private_kib }));
}
