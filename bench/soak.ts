// Crash soak (issue 12): containers and invocations mixed for a long time while spored is
// taken away every few minutes (kill -9 and SIGTERM in turn), through a private containerd.
// It counts what must not happen: a container lost (gone, or with another pid), an
// invocation failing other than UNAVAILABLE during a restart, a leaked process, cgroup,
// mount, netns or fd; and reports spored's RSS over time and the CPU of idle seeds.
//
//   node dist/bench/soak.js [--minutes 30] [--every 3] [--json]      (root; not in CI)
//
// Prints a markdown table; with --out FILE also writes it there.
import { existsSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FriClient } from '../protocols/fri/client.js';
import { leakCheck, rootfs, startContainerd, type Containerd } from '../integration/harness.js';
import { benchArgs } from './args.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const flags = benchArgs(process.argv.slice(2), 'usage: node dist/bench/soak.js [--minutes 30] [--every 3] [--out FILE] [--json]   (root; not in CI)', {
  minutes: { type: 'number', default: Number(process.env.SOAK_MINUTES ?? 30), help: 'how long to run (env SOAK_MINUTES)' },
  every: { type: 'number', default: 3, help: 'minutes between takings of spored (kill -9 and SIGTERM in turn)' },
  out: { type: 'string', help: 'also write the table to FILE' },
  json: { type: 'boolean', help: 'also print the raw stats as JSON' },
});
const MINUTES = flags.minutes;
const EVERY_MIN = flags.every;
const KEEP = 10;
const RT = ['--runtime', 'io.containerd.spore.v2'];
const say = (m: string) => process.stderr.write(`[soak] ${new Date().toISOString().slice(11, 19)} ${m}\n`);

function pidOf(c: Containerd, f: string): number {
  try { return parseInt(readFileSync(join(c.runDir, f), 'utf8'), 10); } catch { return 0; }
}
function rssKiB(pid: number): number {
  try { return Number(/^VmRSS:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0); } catch { return 0; }
}
/** utime + stime of a process, in clock ticks */
function cpuTicks(pid: number): number {
  try {
    const st = readFileSync(`/proc/${pid}/stat`, 'latin1');
    const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
    return Number(f[11]) + Number(f[12]);
  } catch { return NaN; }
}
/** distinct network namespaces of all processes (a leaked netns shows as one more) */
function netnsCount(): number {
  const seen = new Set<string>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try { seen.add(readlinkSync(`/proc/${d}/ns/net`)); } catch { /* gone, or a kernel thread */ }
  }
  return seen.size;
}

async function tasks(c: Containerd): Promise<Map<string, [number, string]>> {
  const r = await c.ctr(['task', 'ls']);
  const m = new Map<string, [number, string]>();
  for (const line of r.stdout.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length >= 3) m.set(f[0] as string, [Number(f[1]), f[2] as string]);
  }
  return m;
}

async function main(): Promise<void> {
  const netns0 = netnsCount();
  const c = await startContainerd({ extraEnv: { SPORE_GATEWAY: 'off' } });
  const stats = {
    restarts: 0, restartMs: [] as number[], containersStarted: 0, containersKept: 0, containersLost: 0, lostDetail: [] as string[],
    ctrRuns: 0, ctrFailed: 0, ctrFailures: [] as string[], invOk: 0, invUnavailable: 0, invFailed: 0, invFailures: [] as string[],
    rss: [] as { min: number; sporedKiB: number; keeperKiB: number }[], idleSeedCpuPct: [] as { seed: string; pct: number }[],
    leaks: {} as Record<string, unknown>,
  };
  const t0 = Date.now();
  const until = t0 + MINUTES * 60_000;
  let fri: FriClient | null = null;
  const connectFri = async (): Promise<FriClient> => {
    for (;;) {
      try { const f = await FriClient.connect(join(c.runDir, 'fri.sock'), { connectTimeoutMs: 2000 }); await f.listSeeds(); return f; } catch { await sleep(200); }
    }
  };
  try {
    // spore starts with the first container
    const first = await c.ctr(['run', '--rm', ...RT, '--rootfs', rootfs('busybox'), 'warm', '/bin/true']);
    if (first.code !== 0) throw new Error(`first container: ${first.stderr}`);
    fri = await connectFri();
    for (let i = 0; i < 50; i++) {
      if ((await fri.listSeeds()).filter((s) => s.level === 1 && s.state === 'ready').length >= 2) break;
      await sleep(200);
    }
    await fri.deploy({ name: 'hello', language: 'node', code: 'exports.handler = async (e) => ({ n: e.n })', handler: 'handler', memoryMiB: 128, timeoutMs: 5000, env: {} });
    await fri.deploy({ name: 'hello-py', language: 'python', code: 'def handler(e, c):\n    return {"n": e.get("n")}\n', handler: 'handler', memoryMiB: 128, timeoutMs: 5000, env: {} });
    const kept = new Map<string, number>(); // id -> pid
    let nextId = 0;
    let stop = false;

    // containers: keep KEEP long-running ones (replace the oldest now and then), plus run --rm ones
    const containerLoop = (async () => {
      while (!stop) {
        const id = `s${nextId++}`;
        const r = await c.ctr(['run', '-d', ...RT, '--rootfs', rootfs('busybox'), id, '/bin/sh', '-c', 'while :; do sleep 1; done'], { timeoutMs: 30_000 });
        stats.ctrRuns++;
        if (r.code !== 0) { stats.ctrFailed++; stats.ctrFailures.push(`run -d ${id}: ${r.stderr.trim().slice(0, 200)}`); } else {
          stats.containersStarted++;
          const t = (await tasks(c)).get(id);
          if (t) kept.set(id, t[0]);
        }
        if (kept.size > KEEP) {
          const [old] = kept.keys();
          kept.delete(old as string);
          for (const a of [['task', 'kill', '-s', 'KILL', old as string]]) await c.ctr(a);
          for (let i = 0; i < 50 && (await tasks(c)).get(old as string)?.[1] !== 'STOPPED'; i++) await sleep(50);
          const d = await c.ctr(['task', 'rm', old as string]);
          if (d.code !== 0) { stats.ctrFailed++; stats.ctrFailures.push(`task rm ${old}: ${d.stderr.trim().slice(0, 200)}`); }
          await c.ctr(['c', 'rm', old as string]);
        }
        const once = await c.ctr(['run', '--rm', ...RT, '--rootfs', rootfs('busybox'), `o${nextId++}`, '/bin/echo', 'once'], { timeoutMs: 30_000 });
        stats.ctrRuns++;
        if (once.code !== 0 || once.stdout !== 'once\n') { stats.ctrFailed++; stats.ctrFailures.push(`run --rm: ${once.code} ${once.stderr.trim().slice(0, 200)}`); }
        await sleep(500);
      }
    })();

    // invocations, two at a time
    const invokeLoop = async (fn: string): Promise<void> => {
      let n = 0;
      while (!stop) {
        const f = fri;
        if (!f) { await sleep(50); continue; }
        try {
          const r = await f.invoke(fn, JSON.stringify({ n: ++n }));
          if (r.ok && JSON.parse(r.result ?? '{}').n === n) stats.invOk++;
          else { stats.invFailed++; stats.invFailures.push(`${fn}: ${r.error?.kind}: ${r.error?.message?.slice(0, 120)}`); }
        } catch (e) {
          const code = (e as { code?: number }).code;
          // UNAVAILABLE: spored going away or coming back (the channel reconnects with backoff)
          if (code === 14) stats.invUnavailable++;
          else { stats.invFailed++; stats.invFailures.push(`${fn}: code ${code}: ${(e as Error).message.slice(0, 120)}`); }
          await sleep(50);
        }
        await sleep(20);
      }
    };
    const invokers = [invokeLoop('hello'), invokeLoop('hello-py')];

    // spored goes away every EVERY_MIN minutes; RSS sampled every 30 s
    let nextCrash = Date.now() + EVERY_MIN * 60_000;
    let nextSample = Date.now();
    let crashNo = 0;
    while (Date.now() < until) {
      if (Date.now() >= nextSample) {
        stats.rss.push({ min: Math.round((Date.now() - t0) / 6000) / 10, sporedKiB: rssKiB(pidOf(c, 'spored.pid')), keeperKiB: rssKiB(pidOf(c, 'keeper.pid')) });
        nextSample += 30_000;
      }
      if (Date.now() >= nextCrash) {
        const before = new Map(kept);
        const old = pidOf(c, 'spored.pid');
        const sig = crashNo++ % 2 === 0 ? 'SIGKILL' : 'SIGTERM';
        const tk = Date.now();
        process.kill(old, sig);
        for (;;) {
          const now = pidOf(c, 'spored.pid');
          if (now && now !== old && existsSync(`/proc/${now}`)) break;
          if (Date.now() - tk > 30_000) throw new Error('no new spored within 30 s');
          await sleep(20);
        }
        const f2 = await connectFri();
        stats.restartMs.push(Date.now() - tk);
        const old2 = fri;
        fri = f2;
        old2?.close();
        stats.restarts++;
        const t = await tasks(c);
        for (const [id, pid] of before) {
          if (!kept.has(id)) continue; // removed by the container loop meanwhile
          const now = t.get(id);
          if (now && now[0] === pid && now[1] === 'RUNNING') stats.containersKept++;
          else { stats.containersLost++; stats.lostDetail.push(`${id}: ${pid} -> ${JSON.stringify(now)}`); }
        }
        say(`${sig} #${stats.restarts}: back in ${stats.restartMs.at(-1)} ms; kept ${stats.containersKept}, lost ${stats.containersLost}; invocations ok ${stats.invOk} unavailable ${stats.invUnavailable} failed ${stats.invFailed}; ctr runs ${stats.ctrRuns} failed ${stats.ctrFailed}`);
        nextCrash += EVERY_MIN * 60_000;
      }
      await sleep(250);
    }
    stop = true;
    await Promise.all([containerLoop, ...invokers]);
    // idle seeds: nothing runs for 20 s; each seed's CPU share over 10 s
    await sleep(10_000);
    const seeds = (await (fri as FriClient).listSeeds()).filter((s) => s.pid && s.level > 0);
    const a = new Map(seeds.map((s) => [s.id, cpuTicks(s.pid as number)]));
    await sleep(10_000);
    for (const s of seeds) stats.idleSeedCpuPct.push({ seed: s.id, pct: Math.round(((cpuTicks(s.pid as number) - (a.get(s.id) ?? 0)) / 100 / 10) * 10000) / 100 });
  } finally {
    fri?.close();
    await c.stop();
  }
  const left = leakCheck({ match: [c.dir], mountsUnder: [c.dir], cgroupName: c.namespace });
  stats.leaks = { processes: left.processes.length, mounts: left.mounts.length, cgroups: left.cgroups.length, netnsDelta: netnsCount() - netns0 };
  const med = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)] ?? NaN;
  const md = [
    `## crash soak — ${new Date().toISOString()} (${MINUTES} min, spored taken away every ${EVERY_MIN} min, kill -9 and SIGTERM in turn)`,
    '',
    '| what | value |', '|---|---|',
    `| spored restarts | ${stats.restarts} (back and serving FRI: median ${med(stats.restartMs)} ms, max ${Math.max(...stats.restartMs, 0)} ms) |`,
    `| long-running containers checked at restarts: kept / lost | ${stats.containersKept} / ${stats.containersLost} |`,
    `| containers started | ${stats.containersStarted} (ctr commands ${stats.ctrRuns}, failed ${stats.ctrFailed}) |`,
    `| invocations ok / UNAVAILABLE (during restarts) / other failures | ${stats.invOk} / ${stats.invUnavailable} / ${stats.invFailed} |`,
    `| leaks after stop: processes, mounts, cgroups, netns | ${JSON.stringify(stats.leaks)} |`,
    `| spored RSS KiB (first, max, last) | ${stats.rss[0]?.sporedKiB ?? '-'}, ${Math.max(...stats.rss.map((r) => r.sporedKiB))}, ${stats.rss.at(-1)?.sporedKiB ?? '-'} |`,
    `| keeper RSS KiB (first, last) | ${stats.rss[0]?.keeperKiB ?? '-'}, ${stats.rss.at(-1)?.keeperKiB ?? '-'} |`,
    `| idle seed CPU % over 10 s (max) | ${Math.max(...stats.idleSeedCpuPct.map((s) => s.pct), 0)} (${stats.idleSeedCpuPct.map((s) => `${s.seed} ${s.pct}`).join(', ')}) |`,
    '',
    ...(stats.lostDetail.length ? ['lost:', ...stats.lostDetail.map((l) => `- ${l}`), ''] : []),
    ...(stats.ctrFailures.length ? ['ctr failures:', ...stats.ctrFailures.slice(0, 20).map((l) => `- ${l}`), ''] : []),
    ...(stats.invFailures.length ? ['invocation failures:', ...stats.invFailures.slice(0, 20).map((l) => `- ${l}`), ''] : []),
    'spored RSS over time (min: KiB): ' + stats.rss.map((r) => `${r.min}: ${r.sporedKiB}`).join(', '),
  ].join('\n');
  process.stdout.write(md + '\n');
  if (flags.out) writeFileSync(flags.out, md + '\n');
  if (flags.json) process.stdout.write(JSON.stringify(stats) + '\n');
  const bad = stats.containersLost + stats.ctrFailed + stats.invFailed + (stats.leaks.processes as number) + (stats.leaks.mounts as number) + (stats.leaks.cgroups as number);
  process.exit(bad > 0 ? 1 : 0);
}

main().catch((e: unknown) => {
  process.stderr.write(`[soak] failed: ${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
