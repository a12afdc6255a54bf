// Function packages: a content-addressed store of unpacked deployment archives.
//
// A package (a .zip or a .tar.gz, like Lambda's) is unpacked into a temporary directory under the
// store root, checked and normalized entry by entry while it streams, then renamed atomically to
// <root>/<digest>. The digest is the sha256 of a canonical manifest of the unpacked tree (sorted
// paths, entry type, the exec bit, each file's sha256, each symlink's target), so the same files
// give the same digest whether they came zipped or tarred, from any tool, at any time. That
// directory is what a function's sandbox sees (read-only) at /var/task.
//
// Hostile archives are expected: absolute paths, "..", paths through symlinks, symlinks pointing
// out of the package, hard links, devices, FIFOs, duplicates, over-long or over-deep paths are
// rejected (InvalidArgument naming the entry and the rule); archive size, entry count and unpacked
// size over the limits are ResourceExhausted naming the limit. Sizes declared in the archive are
// never trusted: unpacked bytes are counted as they stream and the unpack stops at the limit
// (zip bombs, lying headers, gzip bombs, trailing garbage). A failed put leaves nothing behind.
//
// Archive parsing is done by maintained libraries rather than our own parser (the formats have
// decades of corner cases: zip64, data descriptors, CP437 vs UTF-8 names, Info-ZIP unicode path
// fields, pax and GNU long names, base-256 sizes, checksums):
// - `tar` (npm, isaacs; the tar implementation npm itself uses): only its streaming Parser and its
//   Pack (for packDirectory). Its extractor (tar.x) is not used: it repairs hostile entries
//   (strips "/", skips "..") where we must reject them, and it preserves modes we normalize.
//   We gunzip ourselves (node:zlib) to count the decompressed bytes.
// - `yauzl` (thejoshwolfe): a zip reader built around the central directory (the authority, not
//   the local headers), with random access over a Buffer, no native code, and per-entry size
//   validation (validateEntrySizes) on top of our own byte counting. Its own file name check is
//   bypassed (decodeStrings: false + getFileNameLowLevel) so our messages name the entry and rule.
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { Parser, create as tarCreate } from 'tar';
import type { ReadEntry } from 'tar';
import yauzl from 'yauzl';
import type { Entry as ZipEntry, ZipFile } from 'yauzl';
import { Internal, InvalidArgument, ResourceExhausted, SporeError } from '../sys/errors.js';
import { MAX_PACKAGE_BYTES } from '../protocols/fri/validate.js';
import type { PackageFormat } from '../protocols/fri/types.js';

export type { PackageFormat } from '../protocols/fri/types.js';

export interface PackageLimits {
  /** size of the archive as uploaded (Lambda: 50 MiB zipped) */
  maxArchiveBytes: number;
  /** total bytes of the unpacked regular files (Lambda: 250 MiB unzipped) */
  maxUnpackedBytes: number;
  /** entries in the unpacked tree: files, directories (explicit or implied) and symlinks */
  maxFiles: number;
  /** bytes (UTF-8) of an entry's path inside the package, and of a symlink's target */
  maxPathBytes: number;
  /** path components of an entry ("a/b/c" is 3) */
  maxDepth: number;
}

export const DEFAULT_PACKAGE_LIMITS: Readonly<PackageLimits> = Object.freeze({
  maxArchiveBytes: MAX_PACKAGE_BYTES,
  maxUnpackedBytes: 250 * 1024 * 1024,
  maxFiles: 20_000,
  maxPathBytes: 4096,
  maxDepth: 64,
});

export interface StoredPackage {
  /** sha256 (hex) of the canonical manifest */
  digest: string;
  /** <root>/<digest>: the unpacked tree */
  dir: string;
  /** regular files and symlinks (directories not counted) */
  files: number;
  /** total bytes of the regular files */
  bytes: number;
}

const DIGEST_RE = /^[0-9a-f]{64}$/;
const TMP_PREFIX = '.tmp-';
/** longest name of one path component (Linux NAME_MAX) */
const NAME_MAX = 255;
/** symlinks followed while resolving one target (Linux MAXSYMLINKS) */
const MAX_SYMLINK_HOPS = 40;
const MANIFEST_HEADER = 'spore-package-manifest v1\n';
/**
 * Running as root (spored), every entry is chowned to root:root, whatever group a setgid store
 * root would hand down; otherwise entries belong to the user running the store (tests).
 */
const AS_ROOT = process.geteuid?.() === 0;

// Temp dirs of puts in flight in this process (all stores): gc must not remove them.
const inflight = new Set<string>();

function fmtBytes(n: number): string {
  if (n >= 1024 * 1024 && n % (1024 * 1024) === 0) return `${n} bytes (${n / (1024 * 1024)} MiB)`;
  if (n >= 1024 * 1024) return `${n} bytes (${(n / (1024 * 1024)).toFixed(1)} MiB)`;
  return `${n} bytes`;
}

function limitsOf(partial?: Partial<PackageLimits>): PackageLimits {
  const l = { ...DEFAULT_PACKAGE_LIMITS, ...(partial ?? {}) };
  for (const [k, v] of Object.entries(l)) {
    if (!Number.isSafeInteger(v) || v <= 0) throw new InvalidArgument(`package limit ${k} must be a positive integer, got ${String(v)}`);
  }
  return l;
}

const q = (s: string): string => JSON.stringify(s);

function bad(entry: string, rule: string): InvalidArgument {
  return new InvalidArgument(`package entry ${q(entry)}: ${rule}`);
}

type Node =
  | { type: 'dir'; explicit: boolean }
  | { type: 'file'; exec: boolean; sha256: string; size: number }
  | { type: 'symlink'; target: string };

/**
 * The unpacked tree under construction: every entry goes through add*(), which checks its path
 * against the rules and the limits before anything touches the disk, then writes it below `root`
 * without ever following a symlink. finish() checks what can only be checked on the whole tree
 * (symlink targets) and computes the digest.
 */
class TreeBuilder {
  readonly nodes = new Map<string, Node>();
  bytes = 0;
  files = 0;

  constructor(readonly root: string, readonly limits: PackageLimits) {}

  /**
   * An archive path -> its normalized relative form ("" for the package root itself).
   * Separators are "/"; empty and "." components are dropped ("./a//b/" is "a/b").
   */
  normalize(raw: string): string {
    if (raw.includes('\0')) throw bad(raw, 'path contains a NUL byte');
    if (raw.startsWith('/') || /^[A-Za-z]:/.test(raw)) throw bad(raw, 'path is absolute');
    const parts = raw.split('/').filter((p) => p !== '' && p !== '.');
    if (parts.includes('..')) throw bad(raw, 'path leaves the package ("..")');
    const rel = parts.join('/');
    if (Buffer.byteLength(rel) > this.limits.maxPathBytes) {
      throw bad(raw.length > 120 ? `${raw.slice(0, 120)}...` : raw, `path is ${Buffer.byteLength(rel)} bytes; the limit is ${this.limits.maxPathBytes}`);
    }
    if (parts.length > this.limits.maxDepth) throw bad(raw, `path is ${parts.length} levels deep; the limit is ${this.limits.maxDepth}`);
    const long = parts.find((p) => Buffer.byteLength(p) > NAME_MAX);
    if (long !== undefined) throw bad(raw, `a path component is ${Buffer.byteLength(long)} bytes; the limit is ${NAME_MAX}`);
    return rel;
  }

  private count(raw: string): void {
    if (this.nodes.size >= this.limits.maxFiles) {
      throw new ResourceExhausted(`package has more than ${this.limits.maxFiles} entries (files, directories and symlinks; the entry count limit), at entry ${q(raw)}`);
    }
  }

  private abs(rel: string): string {
    return path.join(this.root, ...rel.split('/'));
  }

  /** Create the parents of `rel` (implied directories); refuse a path through a symlink or file. */
  private async parents(rel: string, raw: string): Promise<void> {
    const parts = rel.split('/');
    for (let i = 1; i < parts.length; i++) {
      const p = parts.slice(0, i).join('/');
      const n = this.nodes.get(p);
      if (n?.type === 'symlink') throw bad(raw, `path goes through the symlink ${q(p)}`);
      if (n?.type === 'file') throw bad(raw, `path goes through the file ${q(p)}`);
      if (n === undefined) {
        this.count(raw);
        this.nodes.set(p, { type: 'dir', explicit: false });
        await this.mkdir(p);
      }
    }
  }

  /** Checks common to every entry: the path rules, duplicates, the count, the parents. */
  private async place(raw: string, type: Node['type']): Promise<string | null> {
    const rel = this.normalize(raw);
    if (rel === '') {
      if (type === 'dir') return null; // "./": the package root itself
      throw bad(raw, 'a file or symlink cannot be the package root');
    }
    const existing = this.nodes.get(rel);
    if (existing !== undefined) {
      if (type === 'dir' && existing.type === 'dir' && !existing.explicit) {
        existing.explicit = true;
        return null; // implied by an earlier entry, now listed itself: not a duplicate
      }
      throw bad(raw, existing.type === type ? 'duplicate entry' : `duplicate entry (already a ${existing.type === 'dir' ? 'directory' : existing.type})`);
    }
    await this.parents(rel, raw);
    this.count(raw);
    return rel;
  }

  async addDir(raw: string): Promise<void> {
    const rel = await this.place(raw, 'dir');
    if (rel === null) return;
    this.nodes.set(rel, { type: 'dir', explicit: true });
    await this.mkdir(rel);
  }

  private async mkdir(rel: string): Promise<void> {
    const abs = this.abs(rel);
    await fsp.mkdir(abs, { mode: 0o755 });
    if (AS_ROOT) await fsp.lchown(abs, 0, 0);
    await fsp.chmod(abs, 0o755); // umask-proof, and clears a setgid bit inherited from the root
  }

  /** A regular file from a stream of its bytes; the unpacked-size limit is enforced per chunk. */
  async addFile(raw: string, exec: boolean, data: AsyncIterable<Uint8Array>): Promise<void> {
    const rel = await this.place(raw, 'file');
    if (rel === null) return;
    const node: Node = { type: 'file', exec, sha256: '', size: 0 };
    this.nodes.set(rel, node);
    this.files++;
    const hash = createHash('sha256');
    const fh = await fsp.open(
      this.abs(rel),
      fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW,
      0o600,
    );
    try {
      for await (const chunk of data) {
        node.size += chunk.byteLength;
        this.bytes += chunk.byteLength;
        if (this.bytes > this.limits.maxUnpackedBytes) {
          throw new ResourceExhausted(`package unpacks to more than ${fmtBytes(this.limits.maxUnpackedBytes)} (the unpacked size limit), at entry ${q(raw)}`);
        }
        hash.update(chunk);
        await fh.write(chunk);
      }
      // Normalized permissions (umask-proof): 0755 if any exec bit was set, else 0644.
      if (AS_ROOT) await fh.chown(0, 0);
      await fh.chmod(exec ? 0o755 : 0o644);
    } finally {
      await fh.close();
    }
    node.sha256 = hash.digest('hex');
  }

  /** A file's bytes known in advance (putFile). */
  async addBytes(raw: string, exec: boolean, data: Uint8Array): Promise<void> {
    await this.addFile(raw, exec, (async function* () { yield data; })());
  }

  /** Declared size check before streaming (cheap early refusal; the stream is counted anyway). */
  checkDeclared(raw: string, size: number): void {
    if (size > this.limits.maxUnpackedBytes - this.bytes) {
      throw new ResourceExhausted(`package unpacks to more than ${fmtBytes(this.limits.maxUnpackedBytes)} (the unpacked size limit): entry ${q(raw)} declares ${size} bytes`);
    }
  }

  async addSymlink(raw: string, target: string): Promise<void> {
    const rel = await this.place(raw, 'symlink');
    if (rel === null) return;
    if (target === '') throw bad(raw, 'symlink has an empty target');
    if (target.includes('\0')) throw bad(raw, 'symlink target contains a NUL byte');
    if (Buffer.byteLength(target) > this.limits.maxPathBytes) throw bad(raw, `symlink target is ${Buffer.byteLength(target)} bytes; the limit is ${this.limits.maxPathBytes}`);
    if (target.startsWith('/')) throw bad(raw, `symlink target ${q(target)} is absolute; only relative targets that stay inside the package are allowed`);
    // Lexical check now (cheap, catches "../x"); the full check through other symlinks is in finish().
    const lexical = path.posix.normalize(path.posix.join(path.posix.dirname(rel), target));
    if (lexical === '..' || lexical.startsWith('../')) throw bad(raw, `symlink target ${q(target)} leaves the package`);
    this.nodes.set(rel, { type: 'symlink', target });
    this.files++;
    await fsp.symlink(target, this.abs(rel));
    if (AS_ROOT) await fsp.lchown(this.abs(rel), 0, 0);
  }

  /**
   * Resolve a symlink's target the way the kernel would inside the package (other symlinks
   * followed, ".." applied to the real parent) and say whether it stays inside. A missing
   * component is taken as a plain directory (at run time the lookup fails there: no escape).
   */
  private staysInside(rel: string, target: string): 'inside' | 'outside' | 'loop' {
    const stack = rel.split('/').slice(0, -1);
    const queue = target.split('/');
    let hops = 0;
    while (queue.length > 0) {
      const c = queue.shift() as string;
      if (c === '' || c === '.') continue;
      if (c === '..') {
        if (stack.length === 0) return 'outside';
        stack.pop();
        continue;
      }
      stack.push(c);
      const n = this.nodes.get(stack.join('/'));
      if (n?.type === 'symlink') {
        if (++hops > MAX_SYMLINK_HOPS) return 'loop';
        stack.pop();
        if (n.target.startsWith('/')) return 'outside';
        queue.unshift(...n.target.split('/'));
      }
    }
    return 'inside';
  }

  /** Whole-tree checks, then the digest of the canonical manifest. */
  finish(): { digest: string; files: number; bytes: number } {
    if (this.nodes.size === 0) throw new InvalidArgument('package is empty: the archive has no files');
    for (const [rel, n] of this.nodes) {
      if (n.type !== 'symlink') continue;
      const r = this.staysInside(rel, n.target);
      if (r === 'outside') throw bad(rel, `symlink target ${q(n.target)} leaves the package (through another symlink)`);
      if (r === 'loop') throw bad(rel, `symlink target ${q(n.target)} loops (more than ${MAX_SYMLINK_HOPS} symlinks to follow)`);
    }
    return { digest: manifestDigest(this.nodes), files: this.files, bytes: this.bytes };
  }
}

/**
 * sha256 of the canonical manifest: one JSON line per entry, sorted by the UTF-8 bytes of the
 * path. Directories carry no mode (always 0755), files only their exec bit (0755 or 0644).
 */
function manifestDigest(nodes: Map<string, Node>): string {
  const rows = [...nodes.entries()].map(([rel, n]) => ({ key: Buffer.from(rel, 'utf8'), rel, n }));
  rows.sort((a, b) => Buffer.compare(a.key, b.key));
  const h = createHash('sha256');
  h.update(MANIFEST_HEADER);
  for (const { rel, n } of rows) {
    const line = n.type === 'dir' ? ['d', rel]
      : n.type === 'file' ? ['f', rel, n.exec ? '755' : '644', n.size, n.sha256]
        : ['l', rel, n.target];
    h.update(`${JSON.stringify(line)}\n`);
  }
  return h.digest('hex');
}

// ---- tar.gz ----

/** Tar stream bytes allowed on top of the file contents: headers, pax records, padding, EOF. */
const TAR_OVERHEAD_PER_ENTRY = 4096;
const TAR_OVERHEAD_FIXED = 1024 * 1024;

function tarError(e: unknown): SporeError {
  if (e instanceof SporeError) return e;
  const msg = (e as Error)?.message ?? String(e);
  return new InvalidArgument(`package archive is not a valid tar.gz: ${msg}`, { cause: e });
}

async function unpackTarGz(data: Uint8Array, tree: TreeBuilder): Promise<void> {
  const limits = tree.limits;
  const maxStream = limits.maxUnpackedBytes + limits.maxFiles * TAR_OVERHEAD_PER_ENTRY + TAR_OVERHEAD_FIXED;
  let failure: SporeError | null = null;
  let rejectFailed: (e: SporeError) => void = () => {};
  const failed = new Promise<never>((_, reject) => { rejectFailed = reject; });
  failed.catch(() => {});
  const fail = (e: unknown): void => {
    if (failure) return;
    failure = tarError(e);
    rejectFailed(failure);
  };

  // zstd/brotli sniffing off: only the gzip layer we decompress (and count) ourselves.
  const parser = new Parser({ strict: true, zstd: false, brotli: false, maxMetaEntrySize: 2 * limits.maxPathBytes + 4096 });
  let chain: Promise<void> = Promise.resolve();
  let sawEof = false;
  parser.on('entry', (e: ReadEntry) => {
    chain = chain
      .then(async () => {
        if (failure) throw failure;
        await addTarEntry(tree, e, failed);
      })
      .catch((err: unknown) => {
        fail(err);
        e.resume(); // drain it so the parser is not left waiting
      });
  });
  parser.on('ignoredEntry', (e: ReadEntry) => {
    fail(e.meta
      ? bad(e.path, `extended header is larger than ${2 * limits.maxPathBytes + 4096} bytes`)
      : bad(e.path, `unsupported tar entry type ${e.type}; only files, directories and symlinks are allowed`));
  });
  parser.on('error', (err: unknown) => fail(err));
  parser.on('eof', () => { sawEof = true; });
  const ended = new Promise<void>((resolve) => parser.once('end', () => resolve()));

  const gunzip = zlib.createGunzip({ chunkSize: 64 * 1024 });
  gunzip.end(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
  let total = 0;
  try {
    for await (const chunk of gunzip as AsyncIterable<Buffer>) {
      if (failure) break;
      if (total === 0 && chunk.length >= 2 && chunk[0] === 0x1f && chunk[1] === 0x8b) {
        throw new InvalidArgument('package archive is gzip inside gzip; expected a tar archive inside one gzip layer');
      }
      total += chunk.length;
      if (total > maxStream) {
        throw new ResourceExhausted(`package unpacks to more than ${fmtBytes(maxStream)} of tar data (the unpacked size limit of ${fmtBytes(limits.maxUnpackedBytes)} plus headers)`);
      }
      if (sawEof) break; // what follows the end-of-archive blocks is ignored, not buffered
      if (!parser.write(chunk)) {
        await Promise.race([new Promise((resolve) => parser.once('drain', resolve)), failed]);
      }
    }
  } catch (e) {
    fail(e instanceof SporeError ? e : new InvalidArgument(`package archive is not a valid tar.gz: ${(e as Error).message}`, { cause: e }));
  } finally {
    gunzip.destroy();
  }
  if (!failure) {
    parser.end();
    await Promise.race([ended, failed]).catch(() => {});
  }
  await chain;
  if (failure) throw failure;
  if (total === 0) throw new InvalidArgument('package archive is not a valid tar.gz: no data after gunzip');
}

/**
 * An entry's data, ending with the unpack's failure if there is one: when the gzip stream
 * breaks off in the middle of an entry, the parser is not ended and the entry's own stream
 * would wait forever for the rest of its data (put() never settled and left its temp dir
 * behind; fuzzing finding, fuzz/corpus/packages/regress-truncated-gzip-*).
 */
async function* tarData(e: ReadEntry, failed: Promise<never>): AsyncIterable<Uint8Array> {
  const it = (e as unknown as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]();
  for (;;) {
    const next = it.next();
    next.catch(() => {}); // left behind when `failed` wins the race
    const r = await Promise.race([next, failed]);
    if (r.done) return;
    yield r.value;
  }
}

async function addTarEntry(tree: TreeBuilder, e: ReadEntry, failed: Promise<never>): Promise<void> {
  const raw = e.path;
  switch (e.type) {
    case 'Directory':
      await tree.addDir(raw);
      e.resume();
      return;
    case 'File':
    case 'OldFile':
    case 'ContiguousFile':
      if (raw.endsWith('/')) {
        // Old (V7) tars mark directories as files whose name ends in "/".
        if (e.size !== 0) throw bad(raw, 'a file entry whose name ends in "/"');
        await tree.addDir(raw);
        e.resume();
        return;
      }
      tree.checkDeclared(raw, e.size);
      await tree.addFile(raw, ((e.mode ?? 0) & 0o111) !== 0, tarData(e, failed));
      return;
    case 'SymbolicLink':
      await tree.addSymlink(raw, e.linkpath ?? '');
      e.resume();
      return;
    case 'Link':
      throw bad(raw, 'hard links are not allowed (pack the file itself)');
    case 'CharacterDevice':
    case 'BlockDevice':
      throw bad(raw, 'device files are not allowed; only files, directories and symlinks');
    case 'FIFO':
      throw bad(raw, 'FIFOs are not allowed; only files, directories and symlinks');
    default:
      throw bad(raw, `unsupported tar entry type ${e.type}; only files, directories and symlinks are allowed`);
  }
}

// ---- zip ----

const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;
const S_IFBLK = 0o060000;
const S_IFIFO = 0o010000;
const S_IFSOCK = 0o140000;
/** "version made by" hosts whose external attributes carry a Unix mode in the high 16 bits */
const UNIX_HOSTS = new Set([3 /* Unix */, 19 /* OS X */]);

function zipError(e: unknown): SporeError {
  if (e instanceof SporeError) return e;
  return new InvalidArgument(`package archive is not a valid zip: ${(e as Error)?.message ?? String(e)}`, { cause: e });
}

function nextZipEntry(zip: ZipFile): Promise<ZipEntry | null> {
  return new Promise((resolve, reject) => {
    const onEntry = (entry: ZipEntry): void => { cleanup(); resolve(entry); };
    const onEnd = (): void => { cleanup(); resolve(null); };
    const onError = (err: unknown): void => { cleanup(); reject(zipError(err)); };
    const cleanup = (): void => {
      zip.off('entry', onEntry);
      zip.off('end', onEnd);
      zip.off('error', onError);
    };
    zip.on('entry', onEntry);
    zip.on('end', onEnd);
    zip.on('error', onError);
    zip.readEntry();
  });
}

/** An entry's data as a stream; yauzl's errors (bad deflate data, size mismatch) become typed. */
async function* zipData(zip: ZipFile, entry: ZipEntry): AsyncIterable<Uint8Array> {
  let stream;
  try {
    stream = await zip.openReadStreamPromise(entry);
  } catch (e) {
    throw zipError(e);
  }
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) yield chunk;
  } catch (e) {
    throw zipError(e);
  } finally {
    stream.destroy();
  }
}

async function readSmall(data: AsyncIterable<Uint8Array>, max: number, raw: string): Promise<string> {
  const parts: Uint8Array[] = [];
  let n = 0;
  for await (const c of data) {
    n += c.byteLength;
    if (n > max) throw bad(raw, `symlink target is more than ${max} bytes`);
    parts.push(c);
  }
  return Buffer.concat(parts).toString('utf8');
}

async function unpackZip(data: Uint8Array, tree: TreeBuilder): Promise<void> {
  let zip: ZipFile;
  try {
    zip = await yauzl.fromBufferPromise(Buffer.from(data.buffer, data.byteOffset, data.byteLength), {
      lazyEntries: true, decodeStrings: false, validateEntrySizes: true, strictFileNames: false,
    });
  } catch (e) {
    throw zipError(e);
  }
  try {
    if (zip.entryCount > tree.limits.maxFiles) {
      throw new ResourceExhausted(`package has ${zip.entryCount} entries; the limit is ${tree.limits.maxFiles} (files, directories and symlinks)`);
    }
    for (;;) {
      const entry = await nextZipEntry(zip);
      if (entry === null) break;
      await addZipEntry(tree, zip, entry);
    }
  } finally {
    zip.close();
  }
}

async function addZipEntry(tree: TreeBuilder, zip: ZipFile, entry: ZipEntry): Promise<void> {
  // decodeStrings: false leaves the raw bytes; decode like yauzl (UTF-8 flag, Info-ZIP unicode
  // path field, else CP437; "\" -> "/") but apply our own rules and messages.
  const raw = yauzl.getFileNameLowLevel(entry.generalPurposeBitFlag, entry.fileNameRaw, entry.extraFields, false);
  const mode = UNIX_HOSTS.has(entry.versionMadeBy >> 8) ? (entry.externalFileAttributes >>> 16) & 0xffff : 0;
  const fmt = mode & S_IFMT;
  const dosDir = (entry.externalFileAttributes & 0x10) !== 0 && fmt === 0;
  if (fmt === S_IFCHR || fmt === S_IFBLK) throw bad(raw, 'device files are not allowed; only files, directories and symlinks');
  if (fmt === S_IFIFO) throw bad(raw, 'FIFOs are not allowed; only files, directories and symlinks');
  if (fmt === S_IFSOCK) throw bad(raw, 'sockets are not allowed; only files, directories and symlinks');
  if (fmt !== 0 && fmt !== S_IFREG && fmt !== S_IFDIR && fmt !== S_IFLNK) throw bad(raw, `unsupported file type ${fmt.toString(8)}`);
  if (fmt === S_IFDIR || (fmt !== S_IFLNK && (raw.endsWith('/') || dosDir))) {
    await tree.addDir(raw);
    return;
  }
  if (entry.isEncrypted()) throw bad(raw, 'encrypted entries are not supported');
  if (!entry.canDecodeFileData()) throw bad(raw, `compression method ${entry.compressionMethod} is not supported (only stored and deflate)`);
  if (fmt === S_IFLNK) {
    tree.normalize(raw); // the path rules first, so a bad path is reported as such
    const target = await readSmall(zipData(zip, entry), tree.limits.maxPathBytes, raw);
    await tree.addSymlink(raw, target);
    return;
  }
  tree.checkDeclared(raw, entry.uncompressedSize);
  await tree.addFile(raw, (mode & 0o111) !== 0, zipData(zip, entry));
}

// ---- the store ----

function errnoOf(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException)?.code;
}

/** Any failure as a typed error: ours pass through, file system trouble is Internal. */
function typed(e: unknown): SporeError {
  if (e instanceof SporeError) return e;
  const code = errnoOf(e);
  if (code === 'ENAMETOOLONG') return new InvalidArgument(`package path too long for the file system: ${(e as Error).message}`, { cause: e });
  return new Internal(`package store: ${(e as Error)?.message ?? String(e)}`, { cause: e });
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return errnoOf(e) === 'EPERM';
  }
}

export class PackageStore {
  readonly root: string;
  readonly limits: PackageLimits;

  constructor(root: string, limits?: Partial<PackageLimits>) {
    this.root = path.resolve(root);
    this.limits = limitsOf(limits);
  }

  /** Unpack, check and store an archive; the same content twice (or at once) is stored once. */
  async put(format: PackageFormat, data: Uint8Array): Promise<StoredPackage> {
    if (format !== 'zip' && format !== 'tar.gz') throw new InvalidArgument(`package format ${q(String(format))} is not supported; use "zip" or "tar.gz"`);
    if (data.byteLength > this.limits.maxArchiveBytes) {
      throw new ResourceExhausted(`package archive is ${data.byteLength} bytes; the limit is ${fmtBytes(this.limits.maxArchiveBytes)} (the archive size limit)`);
    }
    if (data.byteLength === 0) throw new InvalidArgument('package archive is empty (0 bytes)');
    return this.store((tree) => (format === 'zip' ? unpackZip(data, tree) : unpackTarGz(data, tree)));
  }

  /** A single-file function as a package of one file (e.g. "index.js"), mode 0644. */
  async putFile(fileName: string, content: string): Promise<StoredPackage> {
    const bytes = Buffer.from(content, 'utf8');
    if (bytes.byteLength > this.limits.maxUnpackedBytes) {
      throw new ResourceExhausted(`${q(fileName)} is ${bytes.byteLength} bytes; the limit is ${fmtBytes(this.limits.maxUnpackedBytes)} (the unpacked size limit)`);
    }
    return this.store((tree) => tree.addBytes(fileName, false, bytes));
  }

  has(digest: string): boolean {
    return DIGEST_RE.test(digest) && fs.existsSync(path.join(this.root, digest));
  }

  /** Where a stored package's tree is (whether or not it exists). */
  dir(digest: string): string {
    if (!DIGEST_RE.test(digest)) throw new InvalidArgument(`bad package digest ${q(digest)}; expected 64 lowercase hex digits`);
    return path.join(this.root, digest);
  }

  /**
   * Remove every stored package whose digest is not in `keep`, and temp dirs left by puts that
   * died (a crashed process, or a failed clean-up); returns the removed digests, sorted.
   */
  gc(keep: Set<string>): string[] {
    let names: string[];
    try {
      names = fs.readdirSync(this.root);
    } catch (e) {
      if (errnoOf(e) === 'ENOENT') return [];
      throw typed(e);
    }
    const removed: string[] = [];
    for (const name of names.sort()) {
      const p = path.join(this.root, name);
      if (DIGEST_RE.test(name)) {
        if (keep.has(name)) continue;
        fs.rmSync(p, { recursive: true, force: true });
        removed.push(name);
      } else if (name.startsWith(TMP_PREFIX)) {
        if (inflight.has(p)) continue;
        const pid = Number(/^\.tmp-(\d+)-/.exec(name)?.[1] ?? NaN);
        if (pid === process.pid || !Number.isInteger(pid) || !pidAlive(pid)) fs.rmSync(p, { recursive: true, force: true });
      }
    }
    return removed;
  }

  private async store(fill: (tree: TreeBuilder) => Promise<void>): Promise<StoredPackage> {
    try {
      await fsp.mkdir(this.root, { recursive: true, mode: 0o755 });
    } catch (e) {
      throw typed(e);
    }
    const tmp = path.join(this.root, `${TMP_PREFIX}${process.pid}-${randomBytes(8).toString('hex')}`);
    inflight.add(tmp);
    try {
      await fsp.mkdir(tmp, { mode: 0o700 });
      const tree = new TreeBuilder(tmp, this.limits);
      await fill(tree);
      const { digest, files, bytes } = tree.finish();
      if (AS_ROOT) await fsp.chown(tmp, 0, 0);
      await fsp.chmod(tmp, 0o755);
      const dir = path.join(this.root, digest);
      try {
        await fsp.rename(tmp, dir);
      } catch (e) {
        // Another put of the same content won the race (or it was stored before): same tree.
        if (errnoOf(e) !== 'ENOTEMPTY' && errnoOf(e) !== 'EEXIST') throw e;
        await fsp.rm(tmp, { recursive: true, force: true });
      }
      return { digest, dir, files, bytes };
    } catch (e) {
      await fsp.rm(tmp, { recursive: true, force: true }).catch(() => {});
      throw typed(e);
    } finally {
      inflight.delete(tmp);
    }
  }
}

// ---- packing a directory (the CLI's `spore deploy --dir`) ----

/** tar's hard-link detection off: a file linked twice is packed twice (put() refuses hard links). */
class NoLinkCache extends Map<`${number}:${number}`, string> {
  override get(): string | undefined {
    return undefined;
  }
  override set(): this {
    return this;
  }
}

/**
 * A directory's contents as a tar.gz that put() accepts: everything is included (node_modules,
 * dotfiles), symlinks are kept as symlinks and must stay inside the directory, other special
 * files are refused, and the same limits as put() apply, with a message saying which.
 */
export async function packDirectory(dir: string, limits?: Partial<PackageLimits>): Promise<Uint8Array> {
  const lim = limitsOf(limits);
  let root: string;
  try {
    root = await fsp.realpath(dir);
    if (!(await fsp.stat(root)).isDirectory()) throw new InvalidArgument(`${dir} is not a directory`);
  } catch (e) {
    if (e instanceof SporeError) throw e;
    throw new InvalidArgument(`cannot read directory ${dir}: ${errnoOf(e) ?? (e as Error).message}`, { cause: e });
  }
  const list: string[] = [];
  let bytes = 0;
  const walk = async (rel: string): Promise<void> => {
    const names = (await fsp.readdir(rel === '' ? root : path.join(root, rel))).sort();
    for (const name of names) {
      const r = rel === '' ? name : `${rel}/${name}`;
      const abs = path.join(root, r);
      const st = await fsp.lstat(abs);
      if (list.length >= lim.maxFiles) throw new ResourceExhausted(`directory ${dir} has more than ${lim.maxFiles} entries (files, directories and symlinks; the package entry limit)`);
      if (Buffer.byteLength(r) > lim.maxPathBytes) throw new InvalidArgument(`${path.join(dir, r)}: path inside the package is ${Buffer.byteLength(r)} bytes; the limit is ${lim.maxPathBytes}`);
      if (r.split('/').length > lim.maxDepth) throw new InvalidArgument(`${path.join(dir, r)}: path is ${r.split('/').length} levels deep; the limit is ${lim.maxDepth}`);
      if (st.isSymbolicLink()) {
        const target = await fsp.readlink(abs);
        if (path.isAbsolute(target)) throw new InvalidArgument(`${path.join(dir, r)}: symlink target ${q(target)} is absolute; only relative symlinks that stay inside ${dir} can be packed`);
        let resolved = path.resolve(path.dirname(abs), target);
        try {
          resolved = await fsp.realpath(abs);
        } catch {
          // dangling: the lexical resolution is what there is
        }
        if (resolved !== root && !resolved.startsWith(`${root}${path.sep}`)) {
          throw new InvalidArgument(`${path.join(dir, r)}: symlink target ${q(target)} leaves ${dir}`);
        }
        list.push(r);
      } else if (st.isDirectory()) {
        list.push(r);
        await walk(r);
      } else if (st.isFile()) {
        bytes += st.size;
        if (bytes > lim.maxUnpackedBytes) throw new ResourceExhausted(`directory ${dir} holds more than ${fmtBytes(lim.maxUnpackedBytes)} of files (the package's unpacked size limit)`);
        list.push(r);
      } else {
        throw new InvalidArgument(`${path.join(dir, r)}: not a file, directory or symlink (sockets, FIFOs and devices cannot be packed)`);
      }
    }
  };
  await walk('');
  if (list.length === 0) throw new InvalidArgument(`directory ${dir} is empty; nothing to deploy`);
  // "./" keeps names starting with "@" from being read as "append this archive" by tar.
  const pack = tarCreate(
    { gzip: { level: 9 }, cwd: root, portable: true, noDirRecurse: true, follow: false, linkCache: new NoLinkCache() },
    list.map((r) => `./${r}`),
  );
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const c of pack as AsyncIterable<Buffer>) {
      size += c.length;
      if (size > lim.maxArchiveBytes) {
        throw new ResourceExhausted(`directory ${dir} packs to more than ${fmtBytes(lim.maxArchiveBytes)} compressed (the package archive limit)`);
      }
      chunks.push(c);
    }
  } catch (e) {
    if (e instanceof SporeError) throw e;
    throw new InvalidArgument(`cannot pack ${dir}: ${(e as Error).message}`, { cause: e });
  }
  const out = Buffer.concat(chunks);
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}
