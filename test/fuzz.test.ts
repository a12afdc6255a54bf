// The fuzz targets (fuzz/targets/*.ts) in CI, two ways:
//  1. replay: every committed corpus input (the seeds, and the regress-* inputs that once were
//     findings) through each target in this process; a target throws on anything outside its
//     contract (see the top of each target), so this is the regression test of every fixed
//     finding;
//  2. a short coverage-guided run of each target under Jazzer.js (node dist/fuzz/run.js), a
//     few thousand mutated inputs each, failing on any crash, hang or untyped error. Needs
//     `npm run build` (scripts/test does it) and the fuzzer's addon (scripts/install-deps.sh).
// The bench (100,000 inputs per target) is `npm run fuzz:bench`; see fuzz/README.md.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { Code, InvalidArgument } from '../sys/errors.js';

const ROOT = path.resolve(import.meta.dirname, '..');
// Targets keep scratch files under SPORE_FUZZ_TMP. Their own cleanup runs at process exit,
// which a vitest worker's end and Jazzer.js's native exit skip: one dir, removed here, holds it all.
const FUZZ_TMP = fs.mkdtempSync(path.join(os.tmpdir(), 'spore-fuzz-tmp-'));
process.env.SPORE_FUZZ_TMP = FUZZ_TMP;
afterAll(() => fs.rmSync(FUZZ_TMP, { recursive: true, force: true }));
const TARGETS = ['ttrpc', 'fri', 'gateway', 'oci', 'packages'] as const;
/** inputs per target in the short run: about 5 s each with the start-up (2 cores); at most 8 s of fuzzing each (--max-time), so the five stay under a minute on a loaded machine */
const SHORT_RUNS: Record<(typeof TARGETS)[number], number> = { ttrpc: 2500, fri: 3000, gateway: 3000, oci: 20000, packages: 1500 };

const LOAD: Record<(typeof TARGETS)[number], () => Promise<unknown>> = {
  ttrpc: () => import('../fuzz/targets/ttrpc.js'),
  fri: () => import('../fuzz/targets/fri.js'),
  gateway: () => import('../fuzz/targets/gateway.js'),
  oci: () => import('../fuzz/targets/oci.js'),
  packages: () => import('../fuzz/targets/packages.js'),
};

function corpus(target: string): string[] {
  const dir = path.join(ROOT, 'fuzz', 'corpus', target);
  return fs.readdirSync(dir).sort().map((f) => path.join(dir, f));
}

describe('fuzz targets: committed corpus replay', () => {
  for (const target of TARGETS) {
    it(`${target}: every seed and regression input is within the contract`, async () => {
      const { fuzz } = (await LOAD[target]()) as { fuzz: (data: Buffer) => unknown };
      const files = corpus(target);
      expect(files.length).toBeGreaterThan(5);
      const failures: string[] = [];
      for (const f of files) {
        try {
          await fuzz(fs.readFileSync(f));
        } catch (e) {
          failures.push(`${path.basename(f)}: ${(e as Error).message.split('\n')[0]}`);
        }
      }
      expect(failures).toEqual([]);
    }, 60_000);
  }
});

describe('fuzz targets: short coverage-guided run (Jazzer.js)', () => {
  const built = fs.existsSync(path.join(ROOT, 'dist', 'fuzz', 'run.js'));
  for (const target of TARGETS) {
    it.skipIf(!built)(`${target}: ${SHORT_RUNS[target]} inputs, no finding`, () => {
      const json = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'spore-fuzz-test-')), 'result.json');
      const r = spawnSync(process.execPath, [
        path.join(ROOT, 'dist', 'fuzz', 'run.js'), '--target', target, '--runs', String(SHORT_RUNS[target]), '--max-time', '8', '--ci', '--json', json,
      ], { encoding: 'utf8', timeout: 55_000 });
      const out = `${r.stdout}\n${r.stderr}`;
      expect(r.error, out).toBeUndefined();
      const [res] = JSON.parse(fs.readFileSync(json, 'utf8')) as { ok: boolean; inputs: number; cov: number; findings: string[]; error?: string }[];
      fs.rmSync(path.dirname(json), { recursive: true, force: true });
      expect(res, out).toBeDefined();
      expect({ ok: res!.ok, error: res!.error, findings: res!.findings }, out).toEqual({ ok: true, error: undefined, findings: [] });
      expect(res!.cov, 'edges covered').toBeGreaterThan(50);
      expect(res!.inputs).toBeGreaterThanOrEqual(Math.min(SHORT_RUNS[target], 1000));
      expect(r.status, out).toBe(0);
    }, 60_000);
  }
});

// The findings, each also a regress-* input in fuzz/corpus/ (replayed above); here with the
// expected answer spelled out.
describe('fuzzing findings stay fixed', () => {
  it('oci: a seccomp syscall name that is a number is InvalidArgument (it was a SIGSEGV of spored, through koffi)', async () => {
    const { compileSeccomp } = await import('../pools/seccomp.js');
    const profile = { defaultAction: 'SCMP_ACT_ERRNO', syscalls: [{ names: ['read', 1], action: 'SCMP_ACT_ALLOW' }] };
    expect(() => compileSeccomp(profile as never)).toThrow(InvalidArgument);
    expect(() => compileSeccomp({ defaultAction: 'SCMP_ACT_ERRNO', defaultErrnoRet: 4095 })).toThrow(InvalidArgument);
  });

  it('oci: wrong JSON types and prototype keys in config.json are InvalidArgument naming the field', async () => {
    const { initPlan } = await import('../engines/process/plan.js');
    const base = { ociVersion: '1.0.2', process: { user: { uid: 0, gid: 0 }, args: ['/bin/true'], cwd: '/' }, linux: { namespaces: [{ type: 'mount' }, { type: 'uts' }] } };
    const plan = (spec: unknown): unknown => initPlan({
      id: 'c1', spec: spec as never, rootfs: '/r', stdio: { stdin: '', stdout: '', stderr: '', terminal: '' }, cgroupProcs: [], cgroupV1Dirs: null, seccomp: null,
    });
    const cases: [unknown, RegExp][] = [
      [{ ...base, process: { ...base.process, capabilities: { bounding: 'toString' } } }, /capabilities.bounding must be an array/],
      [{ ...base, mounts: [null] }, /mounts\[0\] must be an object/],
      [{ ...base, mounts: 'x' }, /mounts must be an array/],
      [{ ...base, hostname: 0 }, /hostname must be a string/],
      [{ ...base, linux: { ...base.linux, sysctl: { a: null } } }, /linux.sysctl\["a"\] must be a string/],
      [{ ...base, linux: { ...base.linux, maskedPaths: ['/p', null] } }, /linux.maskedPaths\[1\] must be a string/],
      [{ ...base, process: { ...base.process, user: { uid: 0, gid: 0, umask: 'x' } } }, /user.umask must be an integer/],
      [{ ...base, process: { ...base.process, rlimits: [{ type: 'RLIMIT_NOFILE', soft: 0.5, hard: 1 }] } }, /soft and hard must be unsigned integers/],
      [{ ...base, mounts: [{ destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['rbind'] }] }, /cgroup mount cannot be a bind mount/],
    ];
    for (const [spec, message] of cases) expect(() => plan(spec)).toThrow(message);
  });

  it('fri: request bytes that do not decode are INVALID_ARGUMENT with the reason (grpc-js said INTERNAL)', async () => {
    const { FunctionRuntime } = await import('../fri-proto/gen/spore/fri/v1/fri_pb.js');
    const { serviceDefinition, serviceImplementation } = await import('../protocols/fri/grpc.js');
    const { friHandlers } = await import('../protocols/fri/server.js');
    const { FakeRuntime } = await import('./fake-runtime.js');
    const request = serviceDefinition(FunctionRuntime).invoke!.requestDeserialize(Buffer.from([0x0a, 0xfa, 0xfa]));
    const impl = serviceImplementation(FunctionRuntime, friHandlers(new FakeRuntime())).invoke as (call: unknown, cb: (err: { code: number; details: string } | null) => void) => void;
    const err = await new Promise<{ code: number; details: string } | null>((resolve) => impl({ request }, resolve));
    expect(err?.code).toBe(Code.INVALID_ARGUMENT);
    expect(err?.details).toMatch(/^malformed spore.fri.v1.InvokeRequest: /);
  });

  it('packages: a gzip stream cut off inside a file entry is InvalidArgument at once and leaves no temp dir (it never settled)', async () => {
    const { PackageStore } = await import('../functions/packages.js');
    const { Header } = await import('tar');
    const h = new Header({ path: 'index.js', type: 'File', size: 600, mode: 0o644, mtime: new Date(0) });
    const block = Buffer.alloc(512);
    h.encode(block, 0);
    const gz = zlib.gzipSync(Buffer.concat([block, Buffer.alloc(600, 0x61), Buffer.alloc(1024)]));
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'spore-fuzz-regress-'));
    try {
      const store = new PackageStore(root);
      await expect(store.put('tar.gz', gz.subarray(0, gz.length - 20))).rejects.toThrow(/not a valid tar.gz/);
      expect(fs.readdirSync(root)).toEqual([]);
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  }, 10_000);
});
