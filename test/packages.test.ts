// functions/packages.ts: the content-addressed package store. Archives are built here with the
// same libraries the store reads them with (tar's Header/Pax/Pack) or with a minimal zip writer
// (which, unlike zip tools, can write the hostile entries), and with the zip/tar commands when
// installed. No root needed.
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Header, Pax, create as tarCreate } from 'tar';
import { Code, InvalidArgument, ResourceExhausted, SporeError } from '../sys/errors.js';
import { DEFAULT_PACKAGE_LIMITS, PackageStore, packDirectory } from '../functions/packages.js';
import type { PackageLimits } from '../functions/packages.js';

// ---- archive builders ----

interface TarItem {
  path: string;
  type?: 'File' | 'Directory' | 'SymbolicLink' | 'Link' | 'CharacterDevice' | 'BlockDevice' | 'FIFO';
  mode?: number;
  data?: Buffer | string;
  linkpath?: string;
}

function tarBytes(items: TarItem[], opts: { eof?: boolean } = {}): Buffer {
  const out: Buffer[] = [];
  for (const it of items) {
    const data = typeof it.data === 'string' ? Buffer.from(it.data) : it.data ?? Buffer.alloc(0);
    const type = it.type ?? 'File';
    const h = new Header({
      path: it.path, type, mode: it.mode ?? (type === 'Directory' ? 0o755 : 0o644), size: type === 'File' ? data.length : 0,
      linkpath: it.linkpath, mtime: new Date(1_700_000_000_000), uid: 0, gid: 0,
    });
    const block = Buffer.alloc(512);
    h.encode(block, 0);
    if (h.needPax) out.push(new Pax({ path: it.path, linkpath: it.linkpath, mtime: new Date(1_700_000_000_000) }).encode());
    out.push(block);
    if (type === 'File' && data.length > 0) {
      out.push(data, Buffer.alloc((512 - (data.length % 512)) % 512));
    }
  }
  if (opts.eof !== false) out.push(Buffer.alloc(1024));
  return Buffer.concat(out);
}

const tarGz = (items: TarItem[]): Buffer => zlib.gzipSync(tarBytes(items));

interface ZipItem {
  name: string;
  data?: Buffer | string;
  /** full st_mode (type + permission bits); default regular 0644, or dir 0755 for names ending "/" */
  mode?: number;
  deflate?: boolean;
  /** lie about the uncompressed size */
  declaredSize?: number;
}

/** A minimal zip writer (stored/deflate, Unix "version made by", no zip64). */
function zipBytes(items: ZipItem[], opts: { sharedData?: boolean } = {}): Buffer {
  const locals: Buffer[] = [];
  const central: Buffer[] = [];
  let offset = 0;
  let shared: { offset: number; crc: number; csize: number; usize: number; method: number } | null = null;
  for (const it of items) {
    const name = Buffer.from(it.name, 'utf8');
    const data = typeof it.data === 'string' ? Buffer.from(it.data) : it.data ?? Buffer.alloc(0);
    const method = it.deflate ? 8 : 0;
    const body = it.deflate ? zlib.deflateRawSync(data) : data;
    const crc = zlib.crc32(data);
    const usize = it.declaredSize ?? data.length;
    const mode = it.mode ?? (it.name.endsWith('/') ? 0o040755 : 0o100644);
    let local = shared;
    if (!(opts.sharedData && shared)) {
      const lh = Buffer.alloc(30);
      lh.writeUInt32LE(0x04034b50, 0);
      lh.writeUInt16LE(20, 4);
      lh.writeUInt16LE(0x800, 6); // UTF-8 names
      lh.writeUInt16LE(method, 8);
      lh.writeUInt32LE(crc, 14);
      lh.writeUInt32LE(body.length, 18);
      lh.writeUInt32LE(usize, 22);
      lh.writeUInt16LE(name.length, 26);
      local = { offset, crc, csize: body.length, usize, method };
      if (opts.sharedData) shared = local;
      locals.push(lh, name, body);
      offset += lh.length + name.length + body.length;
    }
    const l = local as NonNullable<typeof local>;
    const ch = Buffer.alloc(46);
    ch.writeUInt32LE(0x02014b50, 0);
    ch.writeUInt16LE((3 << 8) | 20, 4); // made by Unix
    ch.writeUInt16LE(20, 6);
    ch.writeUInt16LE(0x800, 8);
    ch.writeUInt16LE(l.method, 10);
    ch.writeUInt32LE(l.crc, 16);
    ch.writeUInt32LE(l.csize, 20);
    ch.writeUInt32LE(opts.sharedData ? l.usize : usize, 24);
    ch.writeUInt16LE(name.length, 28);
    ch.writeUInt32LE(((mode << 16) | (it.name.endsWith('/') ? 0x10 : 0)) >>> 0, 38);
    ch.writeUInt32LE(l.offset, 42);
    central.push(ch, name);
  }
  const cd = Buffer.concat(central);
  const eocd = Buffer.alloc(22);
  eocd.writeUInt32LE(0x06054b50, 0);
  eocd.writeUInt16LE(items.length, 8);
  eocd.writeUInt16LE(items.length, 10);
  eocd.writeUInt32LE(cd.length, 12);
  eocd.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, cd, eocd]);
}

// ---- helpers ----

let work: string;
let n = 0;
beforeAll(() => { work = fs.mkdtempSync(path.join(os.tmpdir(), 'spore-pkg-')); });
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

function freshStore(limits?: Partial<PackageLimits>): PackageStore {
  return new PackageStore(path.join(work, `store-${++n}`), limits);
}

function storeEntries(s: PackageStore): string[] {
  return fs.existsSync(s.root) ? fs.readdirSync(s.root) : [];
}

async function rejection(p: Promise<unknown>): Promise<SporeError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof SporeError) return e;
    throw e;
  }
  throw new Error('expected a rejection');
}

// One tree, three ways: files with and without exec, nested and empty dirs, an inside symlink.
const TREE = {
  'index.js': 'exports.handler = async (e) => e;\n',
  'bin/run.sh': '#!/bin/sh\necho hi\n',
  'lib/util.js': 'module.exports = 1;\n',
  'node_modules/left-pad/index.js': 'module.exports = (s) => s;\n',
  'node_modules/left-pad/package.json': '{"name":"left-pad"}\n',
};

function treeTar(order: 'forward' | 'reverse' = 'forward'): TarItem[] {
  const items: TarItem[] = [
    { path: './', type: 'Directory' },
    { path: './bin/', type: 'Directory' },
    { path: './bin/run.sh', data: TREE['bin/run.sh'], mode: 0o4775 }, // setuid + exec: normalized to 0755
    { path: './empty/', type: 'Directory' },
    { path: './index.js', data: TREE['index.js'], mode: 0o600 },
    { path: './lib/', type: 'Directory' },
    { path: './lib/util.js', data: TREE['lib/util.js'] },
    { path: './lib/current', type: 'SymbolicLink', linkpath: 'util.js' },
    { path: './node_modules/', type: 'Directory' },
    { path: './node_modules/left-pad/', type: 'Directory' },
    { path: './node_modules/left-pad/index.js', data: TREE['node_modules/left-pad/index.js'] },
    { path: './node_modules/left-pad/package.json', data: TREE['node_modules/left-pad/package.json'] },
  ];
  return order === 'forward' ? items : [items[0] as TarItem, ...items.slice(1).reverse().filter((i) => i.type !== 'Directory'), { path: 'empty', type: 'Directory' }];
}

function treeZip(withDirs: boolean): ZipItem[] {
  const items: ZipItem[] = [
    { name: 'index.js', data: TREE['index.js'], deflate: true },
    { name: 'bin/run.sh', data: TREE['bin/run.sh'], mode: 0o100755 },
    { name: 'lib/util.js', data: TREE['lib/util.js'], deflate: true },
    { name: 'lib/current', data: 'util.js', mode: 0o120777 },
    { name: 'node_modules/left-pad/index.js', data: TREE['node_modules/left-pad/index.js'] },
    { name: 'node_modules/left-pad/package.json', data: TREE['node_modules/left-pad/package.json'], deflate: true },
    { name: 'empty/' },
  ];
  if (withDirs) items.unshift({ name: 'bin/' }, { name: 'lib/' }, { name: 'node_modules/' }, { name: 'node_modules/left-pad/' });
  return items;
}

function writeTree(dir: string): void {
  for (const [rel, text] of Object.entries(TREE)) {
    fs.mkdirSync(path.join(dir, path.dirname(rel)), { recursive: true });
    fs.writeFileSync(path.join(dir, rel), text);
  }
  fs.chmodSync(path.join(dir, 'bin/run.sh'), 0o755);
  fs.mkdirSync(path.join(dir, 'empty'));
  fs.symlinkSync('util.js', path.join(dir, 'lib/current'));
}

const hasCmd = (c: string): boolean => spawnSync('sh', ['-c', `command -v ${c}`]).status === 0;

// ---- tests ----

describe('PackageStore: valid packages', () => {
  it('zip and tar.gz of the same files give the same digest and a normalized tree', async () => {
    const s = freshStore();
    const a = await s.put('tar.gz', tarGz(treeTar()));
    const b = await s.put('zip', zipBytes(treeZip(true)));
    const c = await s.put('zip', zipBytes(treeZip(false))); // no directory entries: implied
    const d = await s.put('tar.gz', tarGz(treeTar('reverse'))); // other order, no "./" prefixes
    expect(a.digest).toMatch(/^[0-9a-f]{64}$/);
    expect([b.digest, c.digest, d.digest]).toEqual([a.digest, a.digest, a.digest]);
    expect(a).toEqual({ digest: a.digest, dir: path.join(s.root, a.digest), files: 6, bytes: Object.values(TREE).reduce((x, t) => x + t.length, 0) });
    expect(storeEntries(s)).toEqual([a.digest]);
    expect(s.has(a.digest)).toBe(true);
    expect(s.dir(a.digest)).toBe(a.dir);

    const mode = (rel: string): number => fs.lstatSync(path.join(a.dir, rel)).mode & 0o7777;
    expect(mode('.')).toBe(0o755);
    expect(mode('index.js')).toBe(0o644);
    expect(mode('bin/run.sh')).toBe(0o755); // exec kept, setuid dropped
    expect(mode('lib')).toBe(0o755);
    expect(mode('empty')).toBe(0o755);
    expect(fs.readlinkSync(path.join(a.dir, 'lib/current'))).toBe('util.js');
    expect(fs.readFileSync(path.join(a.dir, 'node_modules/left-pad/package.json'), 'utf8')).toBe(TREE['node_modules/left-pad/package.json']);
    expect(fs.statSync(path.join(a.dir, 'index.js')).uid).toBe(process.getuid?.());
  });

  it('a different file content, exec bit or symlink target changes the digest', async () => {
    const s = freshStore();
    const base = (await s.put('tar.gz', tarGz(treeTar()))).digest;
    const change = async (f: (items: TarItem[]) => void): Promise<string> => {
      const items = treeTar();
      f(items);
      return (await s.put('tar.gz', tarGz(items))).digest;
    };
    const digests = [
      await change((i) => { (i[4] as TarItem).data = 'exports.handler = 1;\n'; }),
      await change((i) => { (i[4] as TarItem).mode = 0o755; }),
      await change((i) => { (i[7] as TarItem).linkpath = './util.js'; }),
      await change((i) => { i.splice(3, 1); }), // no empty dir
    ];
    expect(new Set([base, ...digests]).size).toBe(5);
    // mtimes and owners do not matter
    expect(await change((i) => { for (const x of i) x.mode = x.type === 'Directory' ? 0o700 : x.mode; })).toBe(base);
  });

  it.skipIf(!hasCmd('zip') || !hasCmd('tar'))('archives made by the zip and tar commands give the same digest', async () => {
    const src = path.join(work, `cmd-${++n}`);
    fs.mkdirSync(src);
    writeTree(src);
    const z = path.join(work, `cmd-${n}.zip`);
    const t = path.join(work, `cmd-${n}.tar.gz`);
    execFileSync('zip', ['-q', '-r', '-y', z, '.'], { cwd: src });
    execFileSync('tar', ['czf', t, '-C', src, '.']);
    const s = freshStore();
    const a = await s.put('zip', fs.readFileSync(z));
    const b = await s.put('tar.gz', fs.readFileSync(t));
    const c = await s.put('tar.gz', tarGz(treeTar()));
    expect(b.digest).toBe(a.digest);
    expect(c.digest).toBe(a.digest);
  });

  it('putFile stores a one-file package, same digest as that file zipped', async () => {
    const s = freshStore();
    const a = await s.putFile('index.js', TREE['index.js']);
    const b = await s.put('zip', zipBytes([{ name: 'index.js', data: TREE['index.js'] }]));
    expect(a).toEqual(b);
    expect(a.files).toBe(1);
    expect(fs.readdirSync(a.dir)).toEqual(['index.js']);
    expect(await rejection(s.putFile('../x.js', 'x'))).toBeInstanceOf(InvalidArgument);
  });

  it('concurrent puts of the same archive all succeed with one stored copy', async () => {
    const s = freshStore();
    const zip = zipBytes(treeZip(true));
    const tgz = tarGz(treeTar());
    const rs = await Promise.all(Array.from({ length: 8 }, (_, i) => s.put(i % 2 ? 'zip' : 'tar.gz', i % 2 ? zip : tgz)));
    expect(new Set(rs.map((r) => r.digest)).size).toBe(1);
    expect(storeEntries(s)).toEqual([rs[0]?.digest]);
    expect(fs.readFileSync(path.join(rs[0]?.dir ?? '', 'index.js'), 'utf8')).toBe(TREE['index.js']);
  });

  it('gc removes only unreferenced packages (and dead temp dirs)', async () => {
    const s = freshStore();
    const a = await s.putFile('index.js', 'a');
    const b = await s.putFile('index.js', 'b');
    const c = await s.putFile('main.py', 'c');
    // a temp dir left by a process that died (pid far above pid_max)
    fs.mkdirSync(path.join(s.root, '.tmp-99999999-deadbeef'));
    fs.writeFileSync(path.join(s.root, 'README'), 'not ours'); // unrelated names are left alone
    expect(s.gc(new Set([b.digest]))).toEqual([a.digest, c.digest].sort());
    expect(storeEntries(s).sort()).toEqual(['README', b.digest].sort());
    expect(s.has(a.digest)).toBe(false);
    expect(s.has(b.digest)).toBe(true);
    expect(s.gc(new Set([b.digest]))).toEqual([]);
    expect(freshStore().gc(new Set())).toEqual([]); // no root yet
    expect(() => s.dir('../etc')).toThrow(InvalidArgument);
    expect(s.has('../etc')).toBe(false);
  });
});

describe('PackageStore: hostile archives are rejected and leave nothing behind', () => {
  const ok = (p: string, data = 'x'): TarItem => ({ path: p, data });
  const cases: { name: string; tar?: TarItem[]; zip?: ZipItem[]; limits?: Partial<PackageLimits>; code: number; msg: RegExp }[] = [
    { name: 'absolute path', tar: [ok('/etc/cron.d/x')], zip: [{ name: '/etc/cron.d/x', data: 'x' }], code: Code.INVALID_ARGUMENT, msg: /package entry "\/etc\/cron\.d\/x": path is absolute/ },
    { name: '.. traversal', tar: [ok('../x')], zip: [{ name: '../x', data: 'x' }], code: Code.INVALID_ARGUMENT, msg: /package entry "\.\.\/x": path leaves the package/ },
    { name: 'nested .. traversal', tar: [ok('a/../../x')], zip: [{ name: 'a\\..\\..\\x', data: 'x' }], code: Code.INVALID_ARGUMENT, msg: /path leaves the package/ },
    {
      name: 'path through a symlink',
      tar: [{ path: 'l', type: 'SymbolicLink', linkpath: 'sub' }, { path: 'sub/', type: 'Directory' }, ok('l/x')],
      zip: [{ name: 'l', data: 'sub', mode: 0o120777 }, { name: 'sub/' }, { name: 'l/x', data: 'x' }],
      code: Code.INVALID_ARGUMENT, msg: /package entry "l\/x": path goes through the symlink "l"/,
    },
    {
      name: 'absolute symlink target',
      tar: [{ path: 'passwd', type: 'SymbolicLink', linkpath: '/etc/passwd' }],
      zip: [{ name: 'passwd', data: '/etc/passwd', mode: 0o120777 }],
      code: Code.INVALID_ARGUMENT, msg: /package entry "passwd": symlink target "\/etc\/passwd" is absolute/,
    },
    {
      name: 'relative symlink target leaving',
      tar: [{ path: 'a/up', type: 'SymbolicLink', linkpath: '../../etc' }],
      zip: [{ name: 'a/up', data: '../../etc', mode: 0o120777 }],
      code: Code.INVALID_ARGUMENT, msg: /package entry "a\/up": symlink target "\.\.\/\.\.\/etc" leaves the package/,
    },
    {
      name: 'symlink leaving through another symlink',
      tar: [{ path: 'd', type: 'SymbolicLink', linkpath: '.' }, { path: 'e', type: 'SymbolicLink', linkpath: 'd/..' }],
      zip: [{ name: 'd', data: '.', mode: 0o120777 }, { name: 'e', data: 'd/..', mode: 0o120777 }],
      code: Code.INVALID_ARGUMENT, msg: /package entry "e": symlink target "d\/\.\." leaves the package/,
    },
    {
      name: 'symlink loop',
      tar: [{ path: 'a', type: 'SymbolicLink', linkpath: 'b/x' }, { path: 'b', type: 'SymbolicLink', linkpath: 'a/x' }],
      code: Code.INVALID_ARGUMENT, msg: /package entry "a": symlink target "b\/x" loops/,
    },
    { name: 'hard link', tar: [ok('a'), { path: 'b', type: 'Link', linkpath: 'a' }], code: Code.INVALID_ARGUMENT, msg: /package entry "b": hard links are not allowed/ },
    { name: 'character device', tar: [{ path: 'null', type: 'CharacterDevice' }], zip: [{ name: 'null', mode: 0o020666 }], code: Code.INVALID_ARGUMENT, msg: /package entry "null": device files are not allowed/ },
    { name: 'block device', tar: [{ path: 'sda', type: 'BlockDevice' }], zip: [{ name: 'sda', mode: 0o060660 }], code: Code.INVALID_ARGUMENT, msg: /package entry "sda": device files are not allowed/ },
    { name: 'FIFO', tar: [{ path: 'p', type: 'FIFO' }], zip: [{ name: 'p', mode: 0o010644 }], code: Code.INVALID_ARGUMENT, msg: /package entry "p": FIFOs are not allowed/ },
    { name: 'socket', zip: [{ name: 's', mode: 0o140755 }], code: Code.INVALID_ARGUMENT, msg: /package entry "s": sockets are not allowed/ },
    { name: 'duplicate file', tar: [ok('a/x'), ok('a/x', 'y')], zip: [{ name: 'a/x', data: 'x' }, { name: 'a/x', data: 'y' }], code: Code.INVALID_ARGUMENT, msg: /package entry "a\/x": duplicate entry/ },
    { name: 'duplicate: file then directory', tar: [ok('a'), { path: 'a/', type: 'Directory' }], zip: [{ name: 'a', data: 'x' }, { name: 'a/' }], code: Code.INVALID_ARGUMENT, msg: /package entry "a\/": duplicate entry \(already a file\)/ },
    { name: 'file under a file', tar: [ok('a'), ok('a/b')], code: Code.INVALID_ARGUMENT, msg: /package entry "a\/b": path goes through the file "a"/ },
    { name: 'duplicate after normalization', tar: [ok('./a'), ok('a')], code: Code.INVALID_ARGUMENT, msg: /package entry "a": duplicate entry/ },
    {
      name: 'path over the byte limit', limits: { maxPathBytes: 64 },
      tar: [ok(`${'d/'.repeat(20)}${'x'.repeat(40)}`)], zip: [{ name: `${'d/'.repeat(20)}${'x'.repeat(40)}`, data: 'x' }],
      code: Code.INVALID_ARGUMENT, msg: /path is 80 bytes; the limit is 64/,
    },
    { name: 'path over the default 4096 bytes (pax header)', tar: [ok(`${`${'c'.repeat(200)}/`.repeat(21)}x`)], code: Code.INVALID_ARGUMENT, msg: /path is 4222 bytes; the limit is 4096/ },
    { name: 'path over the depth limit', tar: [ok(`${'d/'.repeat(64)}x`)], zip: [{ name: `${'d/'.repeat(64)}x`, data: 'x' }], code: Code.INVALID_ARGUMENT, msg: /path is 65 levels deep; the limit is 64/ },
    { name: 'path component over 255 bytes', tar: [ok(`a/${'n'.repeat(256)}`)], code: Code.INVALID_ARGUMENT, msg: /a path component is 256 bytes; the limit is 255/ },
    { name: 'empty archive', tar: [], zip: [], code: Code.INVALID_ARGUMENT, msg: /package is empty|not a valid tar\.gz: TAR_BAD_ARCHIVE/ },
    { name: 'only a root entry', tar: [{ path: './', type: 'Directory' }], code: Code.INVALID_ARGUMENT, msg: /package is empty/ },
    {
      name: 'too many files', limits: { maxFiles: 10 },
      tar: Array.from({ length: 11 }, (_, i) => ok(`f${i}`)), zip: Array.from({ length: 11 }, (_, i) => ({ name: `f${i}`, data: 'x' })),
      code: Code.RESOURCE_EXHAUSTED, msg: /limit is 10|more than 10 entries/,
    },
    {
      name: 'implied directories count as entries', limits: { maxFiles: 10 },
      tar: [ok('a/b/c/d/e/f/g/h/i/j/k')], zip: [{ name: 'a/b/c/d/e/f/g/h/i/j/k', data: 'x' }],
      code: Code.RESOURCE_EXHAUSTED, msg: /more than 10 entries/,
    },
    {
      name: 'unpacked size over the limit', limits: { maxUnpackedBytes: 1000 },
      tar: [ok('a', 'x'.repeat(600)), ok('b', 'y'.repeat(600))], zip: [{ name: 'a', data: 'x'.repeat(600) }, { name: 'b', data: 'y'.repeat(600), deflate: true }],
      code: Code.RESOURCE_EXHAUSTED, msg: /package unpacks to more than 1000 bytes \(the unpacked size limit\).*"b"/,
    },
  ];

  for (const c of cases) {
    for (const format of ['tar.gz', 'zip'] as const) {
      const items = format === 'zip' ? c.zip : c.tar;
      if (!items) continue;
      it(`${format}: ${c.name}`, async () => {
        const s = freshStore(c.limits);
        const data = format === 'zip' ? zipBytes(items as ZipItem[]) : tarGz(items as TarItem[]);
        const e = await rejection(s.put(format, data));
        expect({ code: e.code, message: e.message }).toEqual({ code: c.code, message: expect.stringMatching(c.msg) });
        expect(storeEntries(s)).toEqual([]);
      });
    }
  }

  it('archive over the size limit; unknown format; empty data', async () => {
    const s = freshStore({ maxArchiveBytes: 100 });
    const e = await rejection(s.put('zip', Buffer.alloc(101)));
    expect(e).toBeInstanceOf(ResourceExhausted);
    expect(e.message).toMatch(/package archive is 101 bytes; the limit is 100 bytes \(the archive size limit\)/);
    expect((await rejection(s.put('rar' as 'zip', Buffer.alloc(1)))).message).toMatch(/"rar" is not supported/);
    expect((await rejection(s.put('zip', Buffer.alloc(0)))).message).toMatch(/empty/);
    expect(storeEntries(s)).toEqual([]);
    expect(DEFAULT_PACKAGE_LIMITS).toEqual({ maxArchiveBytes: 50 * 1048576, maxUnpackedBytes: 250 * 1048576, maxFiles: 20000, maxPathBytes: 4096, maxDepth: 64 });
  });

  it('not an archive at all', async () => {
    const s = freshStore();
    expect(await rejection(s.put('zip', Buffer.from('hello world, not a zip')))).toBeInstanceOf(InvalidArgument);
    expect(await rejection(s.put('tar.gz', Buffer.from('hello world, not gzip')))).toBeInstanceOf(InvalidArgument);
    expect(await rejection(s.put('tar.gz', zlib.gzipSync('hello world, not a tar')))).toBeInstanceOf(InvalidArgument);
    expect(await rejection(s.put('tar.gz', zlib.gzipSync(tarGz([ok('a')]))))).toMatchObject({ message: expect.stringMatching(/gzip inside gzip/) });
    expect(await rejection(s.put('tar.gz', tarBytes([ok('a')])))).toBeInstanceOf(InvalidArgument); // plain tar: not gzip
    expect(await rejection(s.put('tar.gz', zlib.gzipSync(tarBytes([ok('a', 'x'.repeat(2000))], { eof: false }).subarray(0, 1024))))).toBeInstanceOf(InvalidArgument); // truncated
    expect(storeEntries(s)).toEqual([]);
  });
});

describe('PackageStore: bombs', () => {
  const MiB = 1024 * 1024;

  it('zip: a highly compressible entry stops at the unpacked limit', async () => {
    const s = freshStore({ maxUnpackedBytes: MiB });
    const zip = zipBytes([{ name: 'zeros', data: Buffer.alloc(64 * MiB), deflate: true }]);
    expect(zip.length).toBeLessThan(MiB);
    const e = await rejection(s.put('zip', zip));
    expect(e).toBeInstanceOf(ResourceExhausted);
    expect(e.message).toMatch(/unpacked size limit/);
    expect(storeEntries(s)).toEqual([]);
  });

  it('zip: a lying declared size is caught while streaming', async () => {
    const s = freshStore({ maxUnpackedBytes: MiB });
    for (const declaredSize of [10, MiB - 1]) {
      const zip = zipBytes([{ name: 'liar', data: Buffer.alloc(64 * MiB), deflate: true, declaredSize }]);
      const t0 = Date.now();
      const e = await rejection(s.put('zip', zip));
      expect([Code.INVALID_ARGUMENT, Code.RESOURCE_EXHAUSTED]).toContain(e.code);
      expect(e.message).toMatch(/too many bytes|unpacked size limit/);
      expect(Date.now() - t0).toBeLessThan(5000);
      expect(storeEntries(s)).toEqual([]);
    }
  });

  it('zip: many entries sharing one compressed body (overlapping bomb) stop at the limit', async () => {
    const s = freshStore({ maxUnpackedBytes: 8 * MiB });
    const items = Array.from({ length: 100 }, (_, i) => ({ name: `f${i}`, data: Buffer.alloc(MiB), deflate: true }));
    const zip = zipBytes(items, { sharedData: true });
    expect(zip.length).toBeLessThan(64 * 1024);
    const e = await rejection(s.put('zip', zip));
    expect(e).toBeInstanceOf(ResourceExhausted);
    expect(e.message).toMatch(/unpacked size limit.*"f8"/);
    expect(storeEntries(s)).toEqual([]);
  });

  it('tar.gz: a highly compressible entry stops at the unpacked limit', async () => {
    const s = freshStore({ maxUnpackedBytes: MiB });
    const tgz = tarGz([{ path: 'zeros', data: Buffer.alloc(64 * MiB) }]);
    expect(tgz.length).toBeLessThan(MiB);
    const e = await rejection(s.put('tar.gz', tgz));
    expect(e).toBeInstanceOf(ResourceExhausted);
    expect(storeEntries(s)).toEqual([]);
  });

  it('tar.gz: a stream of headers and padding is bounded too', async () => {
    const s = freshStore({ maxUnpackedBytes: MiB, maxFiles: 100 });
    // many small entries hit the entry count
    const tgz = tarGz(Array.from({ length: 200 }, (_, i) => ({ path: `f${i}`, data: '' })));
    expect((await rejection(s.put('tar.gz', tgz))).code).toBe(Code.RESOURCE_EXHAUSTED);
    // one extended header over the size a path needs is refused outright
    const hugeMeta = zlib.gzipSync(Buffer.concat([
      (() => { const b = Buffer.alloc(512); new Header({ path: 'x', type: 'ExtendedHeader', size: 64 * MiB, mode: 0o644 }).encode(b, 0); return b; })(),
      Buffer.alloc(64 * MiB, 'a'),
    ]));
    expect((await rejection(s.put('tar.gz', hugeMeta))).message).toMatch(/extended header is larger than 12288 bytes/);
    // 64 MiB of pax headers, each within the size, none followed by an entry: the stream bound
    const pax = new Pax({ comment: 'a'.repeat(8000) }).encode();
    const paxFlood = zlib.gzipSync(Buffer.concat(Array.from({ length: Math.ceil((64 * MiB) / pax.length) }, () => pax)));
    const e = await rejection(s.put('tar.gz', paxFlood));
    expect(e.code).toBe(Code.RESOURCE_EXHAUSTED);
    expect(e.message).toMatch(/of tar data/);
    expect(storeEntries(s)).toEqual([]);
  });

  it('tar.gz: data after the end-of-archive blocks is ignored, not decompressed', async () => {
    const s = freshStore({ maxUnpackedBytes: MiB });
    const tgz = zlib.gzipSync(Buffer.concat([tarBytes([{ path: 'a', data: 'x' }]), Buffer.alloc(512 * MiB)]), { level: 1 });
    const t0 = Date.now();
    const p = await s.put('tar.gz', tgz);
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(p.files).toBe(1);
  }, 30_000);
});

describe('packDirectory', () => {
  it('round-trips through put with the same digest as the archives', async () => {
    const src = path.join(work, `src-${++n}`);
    fs.mkdirSync(src);
    writeTree(src);
    fs.writeFileSync(path.join(src, '.env'), 'dotfiles too');
    fs.mkdirSync(path.join(src, '@scope'));
    fs.writeFileSync(path.join(src, '@scope', 'x.js'), 'x');
    fs.linkSync(path.join(src, 'index.js'), path.join(src, 'hardlinked.js'));
    const tgz = await packDirectory(src);
    const s = freshStore();
    const p = await s.put('tar.gz', tgz);
    expect(fs.readFileSync(path.join(p.dir, '.env'), 'utf8')).toBe('dotfiles too');
    expect(fs.readFileSync(path.join(p.dir, '@scope/x.js'), 'utf8')).toBe('x');
    expect(fs.readFileSync(path.join(p.dir, 'hardlinked.js'), 'utf8')).toBe(TREE['index.js']);
    expect(fs.readFileSync(path.join(p.dir, 'node_modules/left-pad/index.js'), 'utf8')).toBe(TREE['node_modules/left-pad/index.js']);
    // without the extras, the same tree as the hand-made archives
    for (const x of ['.env', '@scope', 'hardlinked.js']) fs.rmSync(path.join(src, x), { recursive: true });
    const again = await s.put('tar.gz', await packDirectory(src));
    expect(again.digest).toBe((await s.put('tar.gz', tarGz(treeTar()))).digest);
  });

  it('refuses symlinks that leave the directory, special files, and what is over the limits', async () => {
    const mk = (): string => {
      const d = path.join(work, `src-${++n}`);
      fs.mkdirSync(d);
      fs.writeFileSync(path.join(d, 'index.js'), 'x'.repeat(100));
      return d;
    };
    const up = mk();
    fs.symlinkSync('../../etc', path.join(up, 'etc'));
    expect((await rejection(packDirectory(up))).message).toMatch(/etc: symlink target "\.\.\/\.\.\/etc" leaves/);
    const abs = mk();
    fs.symlinkSync(path.join(abs, 'index.js'), path.join(abs, 'self'));
    expect((await rejection(packDirectory(abs))).message).toMatch(/is absolute/);
    if (hasCmd('mkfifo')) {
      const fifo = mk();
      execFileSync('mkfifo', [path.join(fifo, 'pipe')]);
      expect((await rejection(packDirectory(fifo))).message).toMatch(/pipe: not a file, directory or symlink/);
    }
    const big = mk();
    const e = await rejection(packDirectory(big, { maxUnpackedBytes: 50 }));
    expect(e).toBeInstanceOf(ResourceExhausted);
    expect(e.message).toMatch(/more than 50 bytes of files/);
    fs.writeFileSync(path.join(big, 'b'), '');
    const many = await rejection(packDirectory(big, { maxFiles: 1 }));
    expect(many).toBeInstanceOf(ResourceExhausted);
    expect(many.message).toMatch(/more than 1 entries/);
    const random = mk();
    fs.writeFileSync(path.join(random, 'r.bin'), Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919) % 251)));
    expect((await rejection(packDirectory(random, { maxArchiveBytes: 200 }))).message).toMatch(/packs to more than 200 bytes compressed/);
    expect((await rejection(packDirectory(path.join(work, 'nope')))).message).toMatch(/cannot read directory/);
    const empty = path.join(work, `src-${++n}`);
    fs.mkdirSync(empty);
    expect((await rejection(packDirectory(empty))).message).toMatch(/is empty/);
  });
});

// ---- fuzz: random mutations never crash or hang put(), never leave temp dirs ----

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function mutate(src: Buffer, rnd: () => number): Buffer {
  const b = Buffer.from(src);
  const kind = Math.floor(rnd() * 4);
  if (kind === 0) return b.subarray(0, Math.floor(rnd() * b.length)); // truncate
  const flips = 1 + Math.floor(rnd() * 8);
  for (let i = 0; i < flips; i++) {
    const at = Math.floor(rnd() * b.length);
    if (kind === 1) b[at] = Math.floor(rnd() * 256);
    else if (kind === 2) b[at] = (b[at] ?? 0) ^ (1 << Math.floor(rnd() * 8));
    else b[at] = [0, 0xff, 0x2f, 0x2e, 0x30, 0x37][Math.floor(rnd() * 6)] ?? 0; // "/", ".", "0", "7": paths, octal fields
  }
  return b;
}

describe('fuzz', () => {
  const ROUNDS = Number(process.env.SPORE_FUZZ_ROUNDS ?? 150);
  const inputs: { label: string; format: 'zip' | 'tar.gz'; make: (rnd: () => number) => Buffer }[] = [
    { label: 'zip bytes', format: 'zip', make: (rnd) => mutate(zipBytes(treeZip(true)), rnd) },
    { label: 'tar.gz bytes', format: 'tar.gz', make: (rnd) => mutate(tarGz(treeTar()), rnd) },
    { label: 'tar bytes inside a valid gzip', format: 'tar.gz', make: (rnd) => zlib.gzipSync(mutate(tarBytes(treeTar()), rnd)) },
  ];
  for (const input of inputs) {
    it(`${input.label}: ${ROUNDS} mutations end in success or a typed error`, async () => {
      const rnd = mulberry32(0x5eed + input.label.length);
      const s = freshStore({ maxUnpackedBytes: 4 * 1024 * 1024 });
      const outcomes = { ok: 0, invalid: 0, exhausted: 0 };
      for (let i = 0; i < ROUNDS; i++) {
        const data = input.make(rnd);
        let timer: NodeJS.Timeout | undefined;
        const hang = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`round ${i}: put() hung`)), 10_000); });
        try {
          await Promise.race([s.put(input.format, data), hang]);
          outcomes.ok++;
        } catch (e) {
          if (!(e instanceof SporeError)) throw new Error(`round ${i}: untyped error ${(e as Error)?.stack ?? String(e)}`);
          if (e.code === Code.INVALID_ARGUMENT) outcomes.invalid++;
          else if (e.code === Code.RESOURCE_EXHAUSTED) outcomes.exhausted++;
          else throw new Error(`round ${i}: unexpected ${e.name}: ${e.message}`);
        } finally {
          clearTimeout(timer);
        }
        expect(storeEntries(s).filter((x) => x.startsWith('.tmp-'))).toEqual([]);
      }
      expect(outcomes.ok + outcomes.invalid + outcomes.exhausted).toBe(ROUNDS);
      expect(outcomes.invalid).toBeGreaterThan(0);
    }, 120_000);
  }
});
