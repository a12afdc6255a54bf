// Small synchronous cgroupfs helpers shared by the v1 and v2 managers. Synchronous on purpose:
// the same code runs in the daemon and in forked children before exec (no event loop there).
// Nothing here knows about cgroup versions.

import * as fs from 'node:fs';
import { FailedPrecondition, Internal, InvalidArgument, SyscallError } from '../sys/errors.js';
import * as sys from '../sys/libc.js';
import { hugePageSizeName, parseCgroupNumber } from './cgroup-layout.js';

const sleepCell = new Int32Array(new SharedArrayBuffer(4));
/** Synchronous sleep: these functions also run in forked children that have no event loop. */
export function sleepSync(ms: number): void {
  Atomics.wait(sleepCell, 0, 0, ms);
}

export function errCode(e: unknown): string | undefined {
  return typeof e === 'object' && e !== null && 'code' in e ? String((e as { code: unknown }).code) : undefined;
}

/** File content, or undefined when the file (or its controller) is absent. */
export function readText(file: string): string | undefined {
  try {
    // open + read + close: the pool reads one of these at every instance's release
    return sys.readSmallFile(file, 'utf8');
  } catch (e) {
    if (e instanceof SyscallError && ABSENT.has(e.errno)) return undefined;
    throw new Internal(`read ${file}: ${(e as Error).message}`, { cause: e });
  }
}
/** ENOENT, ENODEV, EOPNOTSUPP: the file (or its controller) is not there. */
const ABSENT = new Set([2, 19, 95]);

export function readNumber(file: string): number | undefined {
  const t = readText(file);
  return t === undefined ? undefined : parseCgroupNumber(t);
}

export function exists(file: string): boolean {
  return fs.existsSync(file);
}

/** Codes meaning "the kernel refused this value" rather than "something broke". */
const REJECTED = new Set(['EINVAL', 'ERANGE', 'EBUSY', 'EOPNOTSUPP', 'ENOTSUP', 'EPERM', 'EACCES', 'ENOSPC']);

/** Write one value to a cgroup file; kernel rejections become InvalidArgument naming file and value. */
export function writeValue(file: string, value: string | number): void {
  const v = String(value);
  try {
    // O_WRONLY without O_CREAT: a missing cgroup file must read as ENOENT (kernfs answers EACCES to O_CREAT).
    const fd = fs.openSync(file, fs.constants.O_WRONLY);
    try {
      fs.writeSync(fd, v);
    } finally {
      fs.closeSync(fd);
    }
  } catch (e) {
    const code = errCode(e);
    if (code && REJECTED.has(code)) throw new InvalidArgument(`${file}: kernel rejected value "${v}" (${code})`, { cause: e });
    if (code === 'ENOENT') throw new FailedPrecondition(`${file}: no such cgroup file (controller not available?)`, { cause: e });
    throw new Internal(`write ${file}="${v}": ${(e as Error).message}`, { cause: e });
  }
}

/** Write if the file exists; returns whether it was written. For best-effort knobs. */
export function writeIfExists(file: string, value: string | number): boolean {
  if (!exists(file)) return false;
  writeValue(file, value);
  return true;
}

/** [mount, mount/a, mount/a/b, ...] up to but excluding dir. */
export function ancestorsOf(mount: string, dir: string): string[] {
  const rel = dir.slice(mount.length).split('/').filter(Boolean);
  const out = [mount];
  for (let i = 1; i < rel.length; i++) out.push(`${mount}/${rel.slice(0, i).join('/')}`);
  return out;
}

export function parentDir(dir: string): string {
  return dir.slice(0, dir.lastIndexOf('/'));
}

/** Directories of the cgroup and all its descendants, deepest first. */
export function subtreeDirs(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    let ents: fs.Dirent[];
    try {
      ents = fs.readdirSync(d, { withFileTypes: true });
    } catch (e) {
      if (errCode(e) === 'ENOENT') return;
      throw e;
    }
    for (const ent of ents) if (ent.isDirectory()) walk(`${d}/${ent.name}`);
    out.push(d);
  };
  walk(dir);
  return out;
}

const RMDIR_RETRY_MS = 1000;

export function rmdirRetry(dir: string): void {
  const deadline = Date.now() + RMDIR_RETRY_MS;
  let delay = 1;
  for (;;) {
    try {
      fs.rmdirSync(dir);
      return;
    } catch (e) {
      const code = errCode(e);
      if (code === 'ENOENT') return;
      // EBUSY: processes just exited and the kernel has not unlinked them from the css_set yet.
      if (code === 'EBUSY' && Date.now() < deadline) {
        sleepSync(delay);
        delay = Math.min(delay * 2, 50);
        continue;
      }
      if (code === 'EBUSY') throw new FailedPrecondition(`cgroup ${dir} still has processes (kill them first)`, { cause: e });
      throw new Internal(`rmdir ${dir}: ${(e as Error).message}`, { cause: e });
    }
  }
}

export const DEFAULT_HUGEPAGES_DIR = '/sys/kernel/mm/hugepages';

/** Huge page sizes this kernel has, in cgroup file naming ("2MB", "1GB"). */
export function hugePageSizes(sysfsDir = DEFAULT_HUGEPAGES_DIR): string[] {
  try {
    return fs.readdirSync(sysfsDir).map(hugePageSizeName).filter((s): s is string => !!s);
  } catch {
    return [];
  }
}
