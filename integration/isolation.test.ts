// The function sandbox's isolation suite: what a deployed function must not be able to do.
// Two hostile probes (integration/probes/node, integration/probes/python) run the same
// checks in their init code (in the seed) and in the handler (in the forked instance) and
// report each as { denied, detail }; here every one must be denied. The probes can fail:
// integration/probes/run-local.mjs runs them outside a sandbox, where nearly all are open.
//
// Host fixtures the probes are pointed at: a TCP server on 0.0.0.0, an abstract unix
// socket, a SysV shm segment, a host file and directory, spored's own run/state dirs.
// SPORE_ISO_DUMP=<file> appends every probe result there (one JSON line each). Needs root
// and the language runtime roots (scripts/build-rootfs.sh, /var/lib/spore/rootfs).
import { execFileSync } from 'node:child_process';
import { appendFileSync, cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { hostname, networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { testLogger } from './test-log.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SeedClient } from '../dist/engines/process/seed-client.js';
import { ProcessFunctionRuntime } from '../dist/functions/runtime.js';
import { detectCgroupLayout } from '../dist/pools/cgroups.js';
import type { FunctionSpec, InvokeResult, Language } from '../protocols/fri/types.js';

const root = process.getuid?.() === 0;
if (!root) console.warn('[isolation.test] skipped: needs root (cgroups, user/mount/pid/net namespaces, the SysV shm fixture)');

const PROBES = fileURLToPath(new URL('./probes', import.meta.url));
const KOFFI = fileURLToPath(new URL('../node_modules/koffi', import.meta.url));
const CHECKS = ['hostFiles', 'hostWrite', 'fdEscape', 'hostProcs', 'signalSeed', 'hostLoopback', 'hostAddr', 'abstractSocket', 'sysvIpc', 'siblingTmp', 'siblingProc', 'caps', 'escapes', 'logFd'] as const;
const NS_TYPES = ['mnt', 'net', 'ipc', 'pid', 'user', 'uts'] as const; // must differ per function
const LANGS: Language[] = ['node', 'python'];
const FN = { node: 'iso-node', python: 'iso-python', nodeB: 'iso-node-b' } as const;

type Check = { denied: boolean; detail: string };
type Report = Record<string, Check | undefined>;
interface Mount { mountPoint: string; fsType: string; options: string }
interface Facts {
  uid: number; gid: number; uidMap: string; gidMap: string;
  status: Record<string, string | null>;
  mountinfo: Mount[];
  ns: Record<string, string>;
  hostname: string; cwd: string; tmp: string;
  landlock: number | string;
  rlimits: Record<string, { soft: string; hard: string } | null>;
  fds: Record<string, string>;
  pid: number; procPids: number[];
  marker: { path: string; written: true | string } | null;
}
interface ProbeResult { init: Report; handler: Report; facts: Facts }

interface HostFacts {
  sporedPid: number; hostTcpPort: number; hostAddr: string; hostAbstract: string; hostShmKey: number;
  hostFiles: string[]; hostDirs: string[];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const tarGz = (dir: string): Buffer => execFileSync('tar', ['-czf', '-', '--exclude=__pycache__', '-C', dir, '.'], { maxBuffer: 256 << 20 });

/** A temp copy of the Node probe with koffi (this platform's binary only) in node_modules. */
function nodeProbeCopy(into: string): string {
  const dir = join(into, 'node-probe');
  cpSync(join(PROBES, 'node'), dir, { recursive: true });
  const k = join(dir, 'node_modules', 'koffi');
  const triplet = `${process.platform}_${process.arch}`;
  for (const f of ['package.json', 'index.js', 'LICENSE.txt']) cpSync(join(KOFFI, f), join(k, f));
  cpSync(join(KOFFI, 'build', 'koffi', triplet), join(k, 'build', 'koffi', triplet), { recursive: true });
  return dir;
}

/** uid_map/gid_map text → [{inside, outside, count}] */
function idRanges(map: string): { inside: number; outside: number; count: number }[] {
  return map.trim().split('\n').filter(Boolean).map((l) => {
    const [inside, outside, count] = l.trim().split(/\s+/).map(Number);
    return { inside: inside ?? NaN, outside: outside ?? NaN, count: count ?? NaN };
  });
}

/** The mounts that are not the language runtime's own, runtime-independent. */
function sandboxMounts(f: Facts): string[] {
  const keep = (mp: string) => ['/', '/proc', '/dev', '/var/task'].includes(mp) || mp.startsWith('/dev/') || mp.startsWith('/.spore/tmp/');
  const norm = (mp: string) => (mp.startsWith('/.spore/tmp/') ? '/.spore/tmp/*' : mp);
  return [...new Set(f.mountinfo.filter((m) => keep(m.mountPoint)).map((m) => `${norm(m.mountPoint)} ${m.fsType} ${m.options.split(',')[0]}`))].sort();
}

/** hostname with the function's name and ids taken out: the rule that made it */
const hostnameRule = (h: string, fn: string): string => h.split(fn).join('<fn>').replace(/[0-9a-f]{8,}/g, '<id>').replace(/\d+/g, '<n>');

describe.skipIf(!root)('function sandbox isolation', () => {
  let runDir: string;
  let stateDir: string;
  let work: string;
  let l0: SeedClient;
  let rt: ProcessFunctionRuntime;
  let tcp: net.Server;
  let abstract: net.Server;
  let shmId: number | null = null;
  let host: HostFacts;
  const deployErrors = new Map<string, string>();

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'spore-iso-host-'));
    runDir = mkdtempSync(join(tmpdir(), 'spore-iso-run-'));
    stateDir = mkdtempSync(join(tmpdir(), 'spore-iso-state-'));

    // --- host fixtures ---
    const secret = join(work, 'secret.txt');
    writeFileSync(secret, 'host secret\n');
    const hostDir = join(work, 'dir');
    mkdirSync(hostDir);
    tcp = net.createServer((c) => c.destroy());
    await new Promise<void>((r) => tcp.listen(0, '0.0.0.0', () => r()));
    const abstractName = `spore-iso-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
    abstract = net.createServer((c) => c.destroy());
    await new Promise<void>((r) => abstract.listen(`\0${abstractName}`, () => r()));
    shmId = Number(/(\d+)\s*$/m.exec(execFileSync('ipcmk', ['-M', '4096'], { encoding: 'utf8' }))?.[1]);
    const shmLine = readFileSync('/proc/sysvipc/shm', 'utf8').split('\n').slice(1).map((l) => l.trim().split(/\s+/)).find((f) => Number(f[1]) === shmId);
    if (!shmLine) throw new Error(`ipcmk made shm id ${shmId}, not in /proc/sysvipc/shm`);
    const hostAddr = Object.values(networkInterfaces()).flat().find((a) => a && a.family === 'IPv4' && !a.internal)?.address;
    if (!hostAddr) console.warn('[isolation.test] no non-loopback IPv4 address: hostAddr probes 127.0.0.1');

    const nodeDir = nodeProbeCopy(work);
    host = {
      sporedPid: process.pid,
      hostTcpPort: (tcp.address() as net.AddressInfo).port,
      hostAddr: hostAddr ?? '127.0.0.1',
      hostAbstract: abstractName,
      hostShmKey: Number(shmLine[0]),
      hostFiles: [secret, join(nodeDir, 'index.js'), join(PROBES, 'python', 'main.py'), fileURLToPath(import.meta.url)],
      hostDirs: [hostDir, runDir, stateDir],
    };

    // --- the runtime (as integration/fri-runtime.test.ts starts it) ---
    l0 = new SeedClient();
    await l0.start();
    // ADAPT: constructor options (as of 9bbaf0a: idRangesDir and rootfsDir default to /var/lib/spore)
    rt = new ProcessFunctionRuntime({ runDir, stateDir, layout: detectCgroupLayout(), l0, log: testLogger() });
    await rt.start();

    // --- the probes, deployed as packages; host facts reach init code through env ---
    const env = { SPORE_PROBE_HOST: JSON.stringify(host) };
    const nodePkg = tarGz(nodeDir);
    const pyPkg = tarGz(join(PROBES, 'python'));
    // ADAPT: the package deploy spec (FunctionSpec.package, MODULE.FUNCTION handlers; as of 9bbaf0a)
    const spec = (name: string, language: Language, data: Buffer, handler: string): FunctionSpec => ({
      name, language, code: '', package: { format: 'tar.gz', data }, handler, memoryMiB: 128, timeoutMs: 10_000, env,
    });
    const deploys: [string, FunctionSpec][] = [
      [FN.node, spec(FN.node, 'node', nodePkg, 'index.handler')],
      [FN.python, spec(FN.python, 'python', pyPkg, 'main.handler')],
      [FN.nodeB, spec(FN.nodeB, 'node', nodePkg, 'index.handler')],
    ];
    for (const [name, s] of deploys) {
      try {
        await rt.deploy(s);
      } catch (e) {
        deployErrors.set(name, (e as Error).message);
      }
    }
  }, 180_000);

  afterAll(async () => {
    await rt?.stop();
    await l0?.stop();
    tcp?.close();
    abstract?.close();
    if (shmId !== null && Number.isFinite(shmId)) {
      try { execFileSync('ipcrm', ['-m', String(shmId)]); } catch { /* gone */ }
    }
    for (const d of [work, runDir, stateDir]) if (d) rmSync(d, { recursive: true, force: true });
  });

  /** Invoke a probe and return its report; fails with why if the function never deployed. */
  async function probe(name: string, event: Record<string, unknown> = {}): Promise<ProbeResult> {
    const why = deployErrors.get(name);
    if (why !== undefined) throw new Error(`deploy of ${name} was rejected: ${why}`);
    // ADAPT: invoke's signature / result shape (as of 9bbaf0a)
    const r: InvokeResult = await rt.invoke(name, JSON.stringify({ ...host, ...event }));
    if (!r.ok) throw new Error(`invoke ${name} failed: ${JSON.stringify(r.error)}`);
    const v = JSON.parse(r.result ?? 'null') as ProbeResult;
    if (process.env.SPORE_ISO_DUMP) appendFileSync(process.env.SPORE_ISO_DUMP, `${JSON.stringify({ name, event, result: v })}\n`);
    return v;
  }

  const fnOf = (lang: Language) => (lang === 'node' ? FN.node : FN.python);

  /** /proc/<pid>/ns/* as the host sees it */
  const nsOf = (pid: number): Record<string, string> => Object.fromEntries(readdirSync(`/proc/${pid}/ns`).map((t) => [t, readlinkSync(`/proc/${pid}/ns/${t}`)]));

  /** The namespaces of a function's sandbox, from its seeds (the same for all: one per lineage). */
  function functionNs(fn: string): Record<string, string> {
    const seeds = rt.listSeeds().filter((s) => s.function === fn && s.state === 'ready');
    if (!seeds[0]) throw new Error(`no ready seed for ${fn}`);
    const first = nsOf(seeds[0].pid);
    for (const s of seeds.slice(1)) expect.soft(nsOf(s.pid), `${fn}: seed ${s.id} is not in its lineage's sandbox`).toEqual(first);
    return first;
  }

  it.each(LANGS)('%s: every check is denied, at init (the seed) and in the handler (the instance)', async (lang) => {
    const r = await probe(fnOf(lang));
    for (const phase of ['init', 'handler'] as const) {
      for (const c of CHECKS) {
        const v = r[phase][c];
        expect.soft(v, `${lang} ${phase}: no ${c} in the report`).toBeDefined();
        expect.soft(v?.denied, `${lang} ${phase} ${c} LEAKED: ${v?.detail}`).toBe(true);
      }
    }
    // uid 1000 inside; inside 0 maps to an unprivileged host range, never to host root
    expect.soft(r.facts.uid, `${lang} uid`).toBe(1000);
    for (const m of idRanges(r.facts.uidMap)) expect.soft(m.outside, `${lang} uid_map ${JSON.stringify(r.facts.uidMap)}`).toBeGreaterThan(0);
    expect.soft(r.facts.tmp, `${lang} /tmp`).toMatch(/^\/\.spore\/tmp\/./);
  });

  it.each(LANGS)('%s: an instance cannot reach a concurrent sibling\'s /tmp or /proc', async (lang) => {
    const marker = `iso-marker-${lang}-${Date.now()}`;
    const a = probe(fnOf(lang), { marker, holdMs: 1500 }).then((v) => ({ v, done: Date.now() }));
    a.catch(() => undefined); // awaited below; B may fail first
    await sleep(300);
    const b = await probe(fnOf(lang), { peerMarker: marker });
    const bDone = Date.now();
    const { v: ra, done: aDone } = await a;
    expect(ra.facts.marker?.written, `A could not write its marker: ${JSON.stringify(ra.facts.marker)}`).toBe(true);
    expect(bDone, 'B finished after A: the two never overlapped').toBeLessThan(aDone);
    expect.soft(b.handler.siblingTmp?.denied, `B siblingTmp LEAKED: ${b.handler.siblingTmp?.detail}`).toBe(true);
    expect.soft(b.handler.siblingProc?.denied, `B siblingProc LEAKED: ${b.handler.siblingProc?.detail}`).toBe(true);
    expect.soft(b.handler.siblingTmp?.detail ?? '', 'B reached A\'s marker').not.toMatch(new RegExp(`(READ|LISTED|SEES)[^;]*${marker}`));
    expect.soft(b.facts.tmp, 'A and B share a /tmp').not.toBe(ra.facts.tmp);
    if (b.facts.procPids.includes(ra.facts.pid)) console.info(`[isolation.test] ${lang}: B saw A (pid ${ra.facts.pid}) in its /proc; siblingProc covered it`);
    // A has exited: the instances after it must not find its marker; go on until one got
    // A's /tmp slot (slots are per lineage, 32 by default)
    let reused = false;
    for (let i = 0; i < 40 && !reused; i++) {
      const c = await probe(fnOf(lang), { peerMarker: marker });
      reused ||= c.facts.tmp === ra.facts.tmp;
      expect.soft(c.handler.siblingTmp?.denied, `C${i} (after A exited) siblingTmp LEAKED: ${c.handler.siblingTmp?.detail}`).toBe(true);
    }
    if (!reused) console.info(`[isolation.test] ${lang}: no later instance got A's slot ${ra.facts.tmp}; slot reuse not covered`);
  });

  it('two functions: distinct uid ranges and namespaces, none the host\'s; one sandbox per lineage', async () => {
    const [a, b] = await Promise.all([probe(FN.node), probe(FN.nodeB)]);
    const span = (f: Facts) => idRanges(f.uidMap).map((m) => [m.outside, m.outside + m.count] as const);
    for (const [a0, a1] of span(a.facts)) {
      for (const [b0, b1] of span(b.facts)) {
        expect.soft(a1 <= b0 || b1 <= a0, `uid ranges overlap: ${JSON.stringify(a.facts.uidMap)} vs ${JSON.stringify(b.facts.uidMap)}`).toBe(true);
      }
    }
    // Seen from the host: a non-dumpable process cannot read its own /proc/self/ns.
    const nsA = functionNs(FN.node);
    const nsB = functionNs(FN.nodeB);
    const hostNs = nsOf(process.pid);
    // each user namespace is owned by the host uid its maps start at, not root: per-user
    // limits (inotify instances, pending signals) are charged to that uid (red team, helper-55)
    for (const f of [a, b]) {
      const seed = rt.listSeeds().find((x) => x.function === (f === a ? FN.node : FN.nodeB) && x.state === 'ready');
      const owner = execFileSync('python3', ['-c', 'import fcntl,struct,sys; f=open(sys.argv[1]); print(struct.unpack("I", fcntl.ioctl(f.fileno(), 0xb704, b"\\0"*4))[0])', `/proc/${seed?.pid}/ns/user`], { encoding: 'utf8' }).trim();
      expect.soft(Number(owner), `${seed?.function}: owner of its user namespace`).toBe(idRanges(f.facts.uidMap)[0]?.outside);
    }
    for (const t of NS_TYPES) {
      expect.soft(nsA[t], `${t} namespace shared by two functions`).not.toBe(nsB[t]);
      expect.soft(nsA[t], `${FN.node} is in the host's ${t} namespace`).not.toBe(hostNs[t]);
      expect.soft(nsB[t], `${FN.nodeB} is in the host's ${t} namespace`).not.toBe(hostNs[t]);
    }
  });

  it('node and python sandboxes look the same from inside', async () => {
    const [n, p] = await Promise.all([probe(FN.node), probe(FN.python)]);
    const width = (m: string) => idRanges(m).reduce((s, r) => s + r.count, 0);
    expect.soft(p.facts.uid, 'uid').toBe(n.facts.uid);
    expect.soft(p.facts.gid, 'gid').toBe(n.facts.gid);
    expect.soft(width(p.facts.uidMap), `uid map width: node ${JSON.stringify(n.facts.uidMap)}, python ${JSON.stringify(p.facts.uidMap)}`).toBe(width(n.facts.uidMap));
    expect.soft(width(p.facts.gidMap), 'gid map width').toBe(width(n.facts.gidMap));
    expect.soft(p.facts.status, 'status').toEqual(n.facts.status);
    expect.soft(sandboxMounts(p.facts), 'mounts other than the runtime\'s own').toEqual(sandboxMounts(n.facts));
    const unshared = (fn: string) => { const ns = functionNs(fn); const h = nsOf(process.pid); return Object.keys(ns).filter((t) => ns[t] !== h[t]).sort(); };
    expect.soft(unshared(FN.python), 'namespace types unshared from the host').toEqual(unshared(FN.node));
    expect.soft(hostnameRule(p.facts.hostname, FN.python), 'hostname rule').toBe(hostnameRule(n.facts.hostname, FN.node));
    expect.soft(n.facts.hostname, 'node sees the host\'s hostname').not.toBe(hostname());
    expect.soft(p.facts.hostname, 'python sees the host\'s hostname').not.toBe(hostname());
    expect.soft(typeof n.facts.landlock === 'number' && n.facts.landlock >= 1, `node landlock ABI: ${n.facts.landlock}`).toBe(true);
    expect.soft(p.facts.landlock, 'landlock ABI').toBe(n.facts.landlock);
  });
});
