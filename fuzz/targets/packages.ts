// Fuzz target 5: function packages (functions/packages.ts PackageStore.put): zip and tar.gz
// archives, hostile ones included (the seed corpus has path traversal, absolute paths,
// symlink escapes and loops, hard links, devices, zip and gzip bombs, lying sizes).
//
// Input: [format byte][archive bytes]. Format byte % 3: 0 zip, 1 tar.gz, 2 a tar that the
// harness gzips first (so mutations reach the tar parser instead of breaking the gzip CRC).
// The store runs with small limits (below) so bombs hit them within a millisecond or two.
//
// Acceptable (anything else is a finding):
//  - a stored package: its digest names a directory under the store root holding only
//    directories (0755), regular files (0644/0755) and symlinks that resolve inside it;
//  - InvalidArgument or ResourceExhausted with a message;
//  - either way: no temp dir left in the store root, nothing written outside it, and the put
//    settles within the per-input deadline.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { Code } from '../../sys/errors.js';
import { PackageStore } from '../../functions/packages.js';
import type { PackageFormat, PackageLimits, StoredPackage } from '../../functions/packages.js';
import { FuzzFinding, INPUT_DEADLINE_MS, expectTyped, withDeadline, keepGoing } from '../lib/oracle.js';

export const FUZZ_PACKAGE_LIMITS: PackageLimits = {
  maxArchiveBytes: 1024 * 1024,
  maxUnpackedBytes: 256 * 1024,
  maxFiles: 200,
  maxPathBytes: 512,
  maxDepth: 16,
};

const base = fs.mkdtempSync(path.join(process.env.SPORE_FUZZ_TMP ?? os.tmpdir(), 'spore-fuzz-packages-'));
const storeRoot = path.join(base, 'store');
fs.mkdirSync(storeRoot);
const store = new PackageStore(storeRoot, FUZZ_PACKAGE_LIMITS);
process.once('exit', () => fs.rmSync(base, { recursive: true, force: true }));

function checkTree(pkg: StoredPackage): void {
  if (!/^[0-9a-f]{64}$/.test(pkg.digest)) throw new FuzzFinding(`digest ${pkg.digest}`);
  if (pkg.dir !== path.join(storeRoot, pkg.digest)) throw new FuzzFinding(`stored at ${pkg.dir}`);
  const real = fs.realpathSync(pkg.dir);
  let files = 0;
  let bytes = 0;
  const walk = (dir: string): void => {
    for (const name of fs.readdirSync(dir)) {
      const p = path.join(dir, name);
      const st = fs.lstatSync(p);
      const mode = st.mode & 0o7777;
      if (st.isDirectory()) {
        if (mode !== 0o755) throw new FuzzFinding(`directory ${p} has mode ${mode.toString(8)}`);
        walk(p);
      } else if (st.isFile()) {
        if (mode !== 0o644 && mode !== 0o755) throw new FuzzFinding(`file ${p} has mode ${mode.toString(8)}`);
        if (st.nlink !== 1) throw new FuzzFinding(`file ${p} has ${st.nlink} links`);
        files++;
        bytes += st.size;
      } else if (st.isSymbolicLink()) {
        files++;
        const target = fs.readlinkSync(p);
        if (path.isAbsolute(target)) throw new FuzzFinding(`symlink ${p} -> ${target} is absolute`);
        let resolved: string;
        try {
          resolved = fs.realpathSync(p);
        } catch {
          continue; // dangling (or a loop the kernel refuses): no escape through it
        }
        if (resolved !== real && !resolved.startsWith(`${real}${path.sep}`)) throw new FuzzFinding(`symlink ${p} -> ${target} resolves outside the package: ${resolved}`);
      } else {
        throw new FuzzFinding(`${p} is neither a file, a directory nor a symlink`);
      }
    }
  };
  walk(pkg.dir);
  if (files !== pkg.files || bytes !== pkg.bytes) throw new FuzzFinding(`put reported ${pkg.files} files / ${pkg.bytes} bytes; the tree has ${files} / ${bytes}`);
  if (bytes > FUZZ_PACKAGE_LIMITS.maxUnpackedBytes) throw new FuzzFinding(`stored ${bytes} bytes, over the unpacked limit`);
}

export const fuzz = keepGoing(fuzzOne);

async function fuzzOne(data: Buffer): Promise<void> {
  const mode = (data[0] ?? 0) % 3;
  let archive: Buffer = data.subarray(1);
  const format: PackageFormat = mode === 0 ? 'zip' : 'tar.gz';
  if (mode === 2) archive = zlib.gzipSync(archive, { level: 1 });

  let pkg: StoredPackage | null = null;
  try {
    pkg = await withDeadline(store.put(format, archive), INPUT_DEADLINE_MS, `PackageStore.put(${format})`);
  } catch (e) {
    if (e instanceof FuzzFinding) throw e;
    expectTyped(e, [Code.INVALID_ARGUMENT, Code.RESOURCE_EXHAUSTED], `put(${format})`);
  }
  try {
    if (pkg) checkTree(pkg);
    const left = fs.readdirSync(storeRoot).filter((n) => !/^[0-9a-f]{64}$/.test(n));
    if (left.length > 0) throw new FuzzFinding(`put(${format}) left ${left.join(', ')} in the store root`);
    const outside = fs.readdirSync(base).filter((n) => n !== 'store');
    if (outside.length > 0) throw new FuzzFinding(`put(${format}) wrote ${outside.join(', ')} next to the store root`);
  } finally {
    if (pkg) fs.rmSync(pkg.dir, { recursive: true, force: true });
  }
}
