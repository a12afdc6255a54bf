// Writes the seed corpora under fuzz/corpus/<target>/ (committed; run again after changing
// a seed: `npm run build && node dist/fuzz/gen-corpus.js`). Seeds are valid inputs of each
// target, plus the hostile and edge cases the fuzzer should start from (marked in the name).
// Files are named by content (sha1) with a readable prefix, so regenerating is idempotent.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { fileURLToPath } from 'node:url';
import { create, toBinary } from '@bufbuild/protobuf';
import type { DescMessage, MessageInitShape } from '@bufbuild/protobuf';
import { anyPack } from '@bufbuild/protobuf/wkt';
import { Header, Pax } from 'tar';
import { RequestSchema } from '../fri-proto/gen/ttrpc/request_pb.js';
import { Task } from '../fri-proto/gen/containerd/task/v2/shim_pb.js';
import { OptionsSchema } from '../fri-proto/gen/runtimeoptions/v1/api_pb.js';
import { FunctionRuntime, Engine, Language, PackageFormat, ForkTarget_Kind } from '../fri-proto/gen/spore/fri/v1/fri_pb.js';
import { FrameType, encodeFrame, encodeHeader } from '../protocols/ttrpc/frame.js';
import { FULL_SPEC, MINIMAL_SPEC } from './lib/oci-base.js';

const here = path.dirname(fileURLToPath(import.meta.url));
// dist/fuzz/gen-corpus.js -> <repo>/fuzz/corpus
const corpusRoot = path.resolve(here, '..', '..', 'fuzz', 'corpus');

function write(target: string, name: string, data: Buffer | string): void {
  const buf = Buffer.isBuffer(data) ? data : Buffer.from(data);
  const dir = path.join(corpusRoot, target);
  fs.mkdirSync(dir, { recursive: true });
  const sha = createHash('sha1').update(buf).digest('hex').slice(0, 12);
  fs.writeFileSync(path.join(dir, `seed-${name}-${sha}`), buf);
}

function reset(target: string): void {
  const dir = path.join(corpusRoot, target);
  if (!fs.existsSync(dir)) return;
  // Only seeds are regenerated; committed regression inputs (crash-*, regress-*) stay.
  for (const f of fs.readdirSync(dir)) if (f.startsWith('seed-')) fs.rmSync(path.join(dir, f));
}

// ---------------------------------------------------------------- ttrpc

const TASK = Task.typeName;
function taskInput(method: string): DescMessage {
  const m = Task.methods.find((x) => x.name === method);
  if (!m) throw new Error(`no Task method ${method}`);
  return m.input;
}
function requestFrame(streamId: number, method: string, init: Record<string, unknown>, extra: { service?: string; timeoutNano?: bigint; ns?: string | null } = {}): Buffer {
  const input = taskInput(method);
  const payload = toBinary(input, create(input, init as MessageInitShape<DescMessage>));
  const req = create(RequestSchema, {
    service: extra.service ?? TASK, method, payload, timeoutNano: extra.timeoutNano ?? 0n,
    metadata: extra.ns === null ? [] : [{ key: 'containerd-namespace-ttrpc', value: extra.ns ?? 'default' }],
  });
  return encodeFrame({ streamId, type: FrameType.Request, flags: 0 }, toBinary(RequestSchema, req));
}
const ttrpcInput = (config: number, seed: number, ...frames: Buffer[]): Buffer => Buffer.concat([Buffer.from([config, seed]), ...frames]);

function ttrpcSeeds(): void {
  const t = 'ttrpc';
  reset(t);
  const bundle = '/run/containerd/io.containerd.runtime.v2.task/default/c2';
  const options = anyPack(OptionsSchema, create(OptionsSchema, { typeUrl: 'runtimeoptions.v1.Options', configPath: '/etc/spore/runtime.toml' }));
  const requests: [string, Record<string, unknown>][] = [
    ['Create', { id: 'c2', bundle, rootfs: [{ type: 'overlay', source: 'overlay', target: '', options: ['lowerdir=/l', 'upperdir=/u', 'workdir=/w'] }], stdout: '/run/fifo/out', stderr: '/run/fifo/err', options }],
    ['Start', { id: 'c1' }],
    ['State', { id: 'c1' }],
    ['State', { id: 'c1', execId: 'e1' }],
    ['Kill', { id: 'c1', signal: 15, all: true }],
    ['Wait', { id: 'c1' }],
    ['Delete', { id: 'c1', execId: 'e1' }],
    ['Pids', { id: 'c1' }],
    ['Exec', { id: 'c1', execId: 'e2', stdout: '/run/fifo/e2', spec: { typeUrl: 'types.containerd.io/opencontainers/runtime-spec/1/Process', value: Buffer.from(JSON.stringify({ args: ['/bin/sh', '-c', 'true'], cwd: '/', user: { uid: 0, gid: 0 }, env: ['PATH=/bin'] })) } }],
    ['ResizePty', { id: 'c1', width: 80, height: 24 }],
    ['CloseIO', { id: 'c1', stdin: true }],
    ['Pause', { id: 'c1' }],
    ['Resume', { id: 'c1' }],
    ['Update', { id: 'c1', resources: { typeUrl: 'types.containerd.io/opencontainers/runtime-spec/1/LinuxResources', value: Buffer.from(JSON.stringify({ memory: { limit: 268435456 }, cpu: { shares: 512, quota: 50000, period: 100000 }, pids: { limit: 64 } })) } }],
    ['Stats', { id: 'c1' }],
    ['Connect', { id: 'c1' }],
    ['Shutdown', { id: 'c1' }],
    ['Checkpoint', { id: 'c1', path: '/tmp/ckpt' }],
  ];
  for (const [method, init] of requests) write(t, method.toLowerCase(), ttrpcInput(0, 0, requestFrame(1, method, init)));
  // no namespace metadata: resolved from the bundle (Create) or the task (State)
  write(t, 'create-no-ns', ttrpcInput(0, 0, requestFrame(1, 'Create', { id: 'c3', bundle }, { ns: null })));
  write(t, 'state-no-ns', ttrpcInput(0, 0, requestFrame(1, 'State', { id: 'c1' }, { ns: null })));
  // a connection's life: create, start, state, wait (with a deadline), delete; cut three ways
  const life = [
    requestFrame(1, 'Create', requests[0]![1]), requestFrame(3, 'Start', { id: 'c2' }), requestFrame(5, 'State', { id: 'c1' }),
    requestFrame(7, 'Wait', { id: 'c1' }, { timeoutNano: 5_000_000_000n }), requestFrame(9, 'Delete', { id: 'c1' }),
  ];
  write(t, 'life-whole', ttrpcInput(0, 0, ...life));
  write(t, 'life-bytewise', ttrpcInput(1, 0, ...life));
  write(t, 'life-seeded', ttrpcInput(3, 77, ...life));
  // protocol edges
  write(t, 'unknown-service', ttrpcInput(0, 0, requestFrame(1, 'State', { id: 'c1' }, { service: 'containerd.task.v3.Task' })));
  write(t, 'even-stream-id', ttrpcInput(0, 0, requestFrame(2, 'State', { id: 'c1' })));
  write(t, 'stream-id-reused', ttrpcInput(0, 0, requestFrame(5, 'State', { id: 'c1' }), requestFrame(3, 'Pids', { id: 'c1' })));
  write(t, 'malformed-request', ttrpcInput(0, 0, encodeFrame({ streamId: 1, type: FrameType.Request, flags: 0 }, Buffer.from([0x0a, 0xff, 0x01]))));
  write(t, 'malformed-payload', ttrpcInput(0, 0, encodeFrame({ streamId: 1, type: FrameType.Request, flags: 0 }, toBinary(RequestSchema, create(RequestSchema, { service: TASK, method: 'State', payload: Buffer.from([0x0a, 0x05, 0x61]) })))));
  write(t, 'data-frame', ttrpcInput(0, 0, encodeFrame({ streamId: 1, type: FrameType.Data, flags: 0 }, Buffer.from('x'))));
  write(t, 'remote-open', ttrpcInput(0, 0, encodeFrame({ streamId: 1, type: FrameType.Request, flags: 2 }, Buffer.alloc(0))));
  write(t, 'response-frame-protocol-error', ttrpcInput(0, 0, requestFrame(1, 'State', { id: 'c1' }), encodeFrame({ streamId: 3, type: FrameType.Response, flags: 0 }, Buffer.alloc(0)), requestFrame(5, 'State', { id: 'c1' })));
  write(t, 'oversized-small-limit', ttrpcInput(4, 0, requestFrame(1, 'Create', requests[0]![1]), requestFrame(3, 'State', { id: 'c1' })));
  write(t, 'oversized-header-only', ttrpcInput(0, 0, encodeHeader({ streamId: 1, type: FrameType.Request, flags: 0 }, 0xffffffff), Buffer.alloc(32)));
  write(t, 'truncated', ttrpcInput(2, 5, requestFrame(1, 'State', { id: 'c1' }).subarray(0, 17)));
}

// ---------------------------------------------------------------- fri

function friSeeds(zip: Buffer, tgz: Buffer): void {
  const t = 'fri';
  reset(t);
  const methods = FunctionRuntime.methods;
  const req = (name: string, label: string, init: Record<string, unknown>): void => {
    const i = methods.findIndex((m) => m.name === name);
    if (i < 0) throw new Error(`no FRI method ${name}`);
    const m = methods[i]!;
    write(t, `${name.toLowerCase()}-${label}`, Buffer.concat([Buffer.from([i]), Buffer.from(toBinary(m.input, create(m.input, init as MessageInitShape<DescMessage>)))]));
  };
  req('Create', 'process', { engine: Engine.PROCESS });
  req('Create', 'vm', { engine: Engine.VM });
  req('Fork', 'instance', { seedId: 'seed-2', target: { kind: ForkTarget_Kind.INSTANCE } });
  req('Fork', 'seed', { seedId: 'seed-1', target: { kind: ForkTarget_Kind.SEED, language: Language.PYTHON, function: 'echo' } });
  req('Activate', 'event', { instanceId: 'inst-3', event: '{"name":"spore"}' });
  req('Invoke', 'echo', { function: 'echo', event: '{"a":[1,2,3]}' });
  req('Invoke', 'level', { function: 'throws', event: '', level: 1 });
  req('Invoke', 'bad-json', { function: 'echo', event: '{"a":' });
  req('Destroy', 'inst', { instanceId: 'inst-3' });
  req('ListSeeds', 'all', {});
  req('DeleteSeed', 'seed', { seedId: 'seed-1' });
  req('ListInstances', 'all', {});
  const spec = { name: 'hello', language: Language.NODE, code: 'exports.handler = async (e) => e;', handler: 'handler', memoryMib: 256, timeoutMs: 1000, env: { GREETING: 'hi', _X1: 'y' } };
  req('Deploy', 'code', { spec });
  req('Deploy', 'python', { spec: { ...spec, language: Language.PYTHON, code: 'def handler(event, context):\n    return event\n' } });
  req('Deploy', 'zip', { spec: { ...spec, code: '', handler: 'lib/app.main', package: zip, packageFormat: PackageFormat.ZIP } });
  req('Deploy', 'targz', { spec: { ...spec, code: '', handler: '', package: tgz, packageFormat: PackageFormat.TAR_GZ } });
  req('Deploy', 'vm', { spec: { name: 'vmfn', language: Language.VM } });
  req('Deploy', 'bad-handler', { spec: { ...spec, code: '', handler: '../x.y', package: zip, packageFormat: PackageFormat.ZIP } });
  req('Remove', 'echo', { name: 'echo' });
  req('ListFunctions', 'all', {});
  req('Logs', 'tail', { name: 'echo', tailBytes: 7 });
}

// ---------------------------------------------------------------- gateway

function httpReq(method: string, target: string, body: string | null, headers: Record<string, string> = {}): string {
  const h: Record<string, string> = { host: 'spore.local', ...headers };
  if (body !== null && !('transfer-encoding' in h) && !('content-length' in h)) h['content-length'] = String(Buffer.byteLength(body));
  if (body !== null && !('content-type' in h)) h['content-type'] = 'application/json';
  return `${method} ${target} HTTP/1.1\r\n${Object.entries(h).map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n${body ?? ''}`;
}

function gatewaySeeds(): void {
  const t = 'gateway';
  reset(t);
  const g = (label: string, text: string, config = 0): void => write(t, label, Buffer.concat([Buffer.from([config]), Buffer.from(text, 'latin1')]));
  g('invoke-echo', httpReq('POST', '/invoke/echo', '{"name":"spore"}'));
  g('invoke-empty', httpReq('POST', '/invoke/echo', ''));
  g('invoke-query', httpReq('POST', '/invoke/echo?x=1&y', '[1,2]'));
  g('invoke-throws', httpReq('POST', '/invoke/throws', '{}'));
  g('invoke-timeout', httpReq('POST', '/invoke/slow', '{}'));
  g('invoke-oom', httpReq('POST', '/invoke/big', '{}'));
  g('invoke-unknown', httpReq('POST', '/invoke/nope', '{}'));
  g('invoke-bad-name', httpReq('POST', '/invoke/-bad', '{}'));
  g('invoke-bad-escape', httpReq('POST', '/invoke/ec%ZZho', '{}'));
  g('invoke-escaped', httpReq('POST', '/invoke/e%63ho', '"s"'));
  g('invoke-bad-json', httpReq('POST', '/invoke/echo', '{"a":'));
  g('invoke-get', httpReq('GET', '/invoke/echo', null));
  g('invoke-chunked', `POST /invoke/echo HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\ncontent-type: application/json\r\n\r\n5\r\n{"a":\r\n2\r\n1}\r\n0\r\n\r\n`);
  g('invoke-too-large-small-limit', httpReq('POST', '/invoke/echo', JSON.stringify({ data: 'x'.repeat(100) })), 1);
  g('invoke-declared-too-large', httpReq('POST', '/invoke/echo', '{}', { 'content-length': '99999999' }));
  g('healthz', httpReq('GET', '/healthz', null));
  g('healthz-head', httpReq('HEAD', '/healthz?verbose=1', null));
  g('healthz-post', httpReq('POST', '/healthz', '{}'));
  g('no-route', httpReq('GET', '/', null));
  g('nested-path', httpReq('POST', '/invoke/echo/x', '{}'));
  g('pipelined', httpReq('POST', '/invoke/echo', '1') + httpReq('GET', '/healthz', null) + httpReq('POST', '/invoke/nope', '{}'));
  g('keepalive-close', httpReq('POST', '/invoke/echo', '{}', { connection: 'close' }));
  g('garbage', 'NOT HTTP AT ALL\r\n\r\n');
  g('incomplete-body', httpReq('POST', '/invoke/echo', '{}', { 'content-length': '10' }));
}

// ---------------------------------------------------------------- oci

function ociSeeds(): void {
  const t = 'oci';
  reset(t);
  const spec = FULL_SPEC;
  write(t, 'full', JSON.stringify(spec, null, 1));
  const minimal = MINIMAL_SPEC;
  write(t, 'minimal', JSON.stringify(minimal));
  write(t, 'minimal-odd', `${JSON.stringify(minimal)} `);
  write(t, 'terminal', JSON.stringify({ ...minimal, process: { ...minimal.process, terminal: true, consoleSize: { height: 24, width: 80 } } }));
  write(t, 'user-ns', JSON.stringify({ ...minimal, linux: { namespaces: [{ type: 'mount' }, { type: 'user' }], uidMappings: [{ containerID: 0, hostID: 100000, size: 65536 }] } }));
  write(t, 'no-mount-ns', JSON.stringify({ ...minimal, linux: { namespaces: [{ type: 'pid' }] } }));
  write(t, 'hostname-without-uts', JSON.stringify({ ...minimal, hostname: 'x' }));
  write(t, 'bad-cap', JSON.stringify({ ...minimal, process: { ...minimal.process, capabilities: { bounding: ['CAP_NOPE'] } } }));
  write(t, 'bad-rlimit', JSON.stringify({ ...minimal, process: { ...minimal.process, rlimits: [{ type: 'RLIMIT_NOFILE', soft: 10, hard: 5 }] } }));
  write(t, 'bind-relative', JSON.stringify({ ...minimal, mounts: [{ destination: '/x', type: 'bind', source: 'rel' }] }));
  write(t, 'seccomp-notify', JSON.stringify({ ...minimal, linux: { ...minimal.linux, seccomp: { defaultAction: 'SCMP_ACT_ALLOW', listenerPath: '/run/x.sock' } } }));
  write(t, 'not-json', '{"ociVersion": "1.0.2", ');
  write(t, 'array', '[]');
  // structured mode (a 0 byte, then an edit script on a base spec; see lib/json-edit.ts)
  write(t, 'edit-full-unchanged', Buffer.from([0, 0]));
  write(t, 'edit-minimal-unchanged', Buffer.from([0, 1]));
  write(t, 'edit-full-replace', Buffer.from([0, 0, 1, 1, 0, 0, 4, 3]));
  write(t, 'edit-minimal-add-key', Buffer.from([0, 1, 1, 0, 2, 0, 5, 7]));
}

// ---------------------------------------------------------------- packages

interface TarItem { path: string; type?: string; mode?: number; data?: Buffer | string; linkpath?: string; size?: number }

function tarBytes(items: TarItem[], eof = true): Buffer {
  const out: Buffer[] = [];
  for (const it of items) {
    const data = typeof it.data === 'string' ? Buffer.from(it.data) : it.data ?? Buffer.alloc(0);
    const type = it.type ?? 'File';
    const h = new Header({
      path: it.path, type: type as never, mode: it.mode ?? (type === 'Directory' ? 0o755 : 0o644),
      size: it.size ?? (type === 'File' ? data.length : 0), linkpath: it.linkpath, mtime: new Date(1_700_000_000_000), uid: 0, gid: 0,
    });
    const block = Buffer.alloc(512);
    h.encode(block, 0);
    if (h.needPax) out.push(new Pax({ path: it.path, linkpath: it.linkpath, mtime: new Date(1_700_000_000_000) }).encode());
    out.push(block);
    if (data.length > 0) out.push(data, Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  if (eof) out.push(Buffer.alloc(1024));
  return Buffer.concat(out);
}

interface ZipItem { name: string; data?: Buffer | string; mode?: number; deflate?: boolean; declaredSize?: number; host?: number }

/** A minimal zip writer (stored/deflate, no zip64) that can write what zip tools refuse to. */
function zipBytes(items: ZipItem[], sharedData = false): Buffer {
  const locals: Buffer[] = [];
  const central: Buffer[] = [];
  let offset = 0;
  let shared: { offset: number; crc: number; csize: number; method: number } | null = null;
  for (const it of items) {
    const name = Buffer.from(it.name, 'utf8');
    const data = typeof it.data === 'string' ? Buffer.from(it.data) : it.data ?? Buffer.alloc(0);
    const method = it.deflate ? 8 : 0;
    const body = it.deflate ? zlib.deflateRawSync(data, { level: 9 }) : data;
    const crc = zlib.crc32(data);
    const usize = it.declaredSize ?? data.length;
    const mode = it.mode ?? (it.name.endsWith('/') ? 0o040755 : 0o100644);
    let at = offset;
    if (!(sharedData && shared)) {
      const lh = Buffer.alloc(30);
      lh.writeUInt32LE(0x04034b50, 0);
      lh.writeUInt16LE(20, 4);
      lh.writeUInt16LE(0x800, 6);
      lh.writeUInt16LE(method, 8);
      lh.writeUInt32LE(crc, 14);
      lh.writeUInt32LE(body.length, 18);
      lh.writeUInt32LE(usize, 22);
      lh.writeUInt16LE(name.length, 26);
      locals.push(lh, name, body);
      shared = { offset, crc, csize: body.length, method };
      offset += 30 + name.length + body.length;
    } else {
      at = shared.offset;
    }
    const ch = Buffer.alloc(46);
    ch.writeUInt32LE(0x02014b50, 0);
    ch.writeUInt16LE(((it.host ?? 3) << 8) | 20, 4);
    ch.writeUInt16LE(20, 6);
    ch.writeUInt16LE(0x800, 8);
    ch.writeUInt16LE(sharedData && shared ? shared.method : method, 10);
    ch.writeUInt32LE(sharedData && shared ? shared.crc : crc, 16);
    ch.writeUInt32LE(sharedData && shared ? shared.csize : body.length, 20);
    ch.writeUInt32LE(usize, 24);
    ch.writeUInt16LE(name.length, 28);
    ch.writeUInt32LE((mode << 16) >>> 0, 38);
    ch.writeUInt32LE(at, 42);
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

const TREE_TAR: TarItem[] = [
  { path: './', type: 'Directory' },
  { path: 'index.js', data: 'exports.handler = async (e) => e;\n' },
  { path: 'lib/', type: 'Directory' },
  { path: 'lib/app.js', data: 'exports.main = () => 1;\n' },
  { path: 'bin/run', data: '#!/bin/sh\necho hi\n', mode: 0o755 },
  { path: 'current', type: 'SymbolicLink', linkpath: 'lib' },
  { path: 'lib/up', type: 'SymbolicLink', linkpath: '../index.js' },
];
const TREE_ZIP: ZipItem[] = [
  { name: 'index.js', data: 'exports.handler = async (e) => e;\n', deflate: true },
  { name: 'lib/', mode: 0o040755 },
  { name: 'lib/app.js', data: 'exports.main = () => 1;\n' },
  { name: 'bin/run', data: '#!/bin/sh\necho hi\n', mode: 0o100755, deflate: true },
  { name: 'current', data: 'lib', mode: 0o120777 },
  { name: 'lib/up', data: '../index.js', mode: 0o120777 },
];

function packageSeeds(): { zip: Buffer; tgz: Buffer } {
  const t = 'packages';
  reset(t);
  const zip = (label: string, items: ZipItem[], shared = false): void => write(t, `zip-${label}`, Buffer.concat([Buffer.from([0]), zipBytes(items, shared)]));
  const tgz = (label: string, items: TarItem[], eof = true): void => write(t, `targz-${label}`, Buffer.concat([Buffer.from([1]), zlib.gzipSync(tarBytes(items, eof))]));
  const tar = (label: string, items: TarItem[], eof = true): void => write(t, `tar-${label}`, Buffer.concat([Buffer.from([2]), tarBytes(items, eof)]));
  const both = (label: string, tarItems: TarItem[], zipItems: ZipItem[]): void => { tar(label, tarItems); zip(label, zipItems); };

  zip('tree', TREE_ZIP);
  tgz('tree', TREE_TAR);
  tar('tree', TREE_TAR);
  zip('dos-host', [{ name: 'a.txt', data: 'dos', host: 0 }, { name: 'dir\\b.txt', data: 'b', host: 0 }]);
  tar('long-name-pax', [{ path: `${'d'.repeat(100)}/${'f'.repeat(120)}.js`, data: 'x' }]);
  // hostile: traversal, absolute, symlinks out, through symlinks, loops, specials, duplicates
  both('traversal', [{ path: '../evil.js', data: 'x' }], [{ name: '../evil.js', data: 'x' }]);
  both('traversal-nested', [{ path: 'a/../../evil.js', data: 'x' }], [{ name: 'a/../../evil.js', data: 'x' }]);
  both('absolute', [{ path: '/etc/evil', data: 'x' }], [{ name: '/etc/evil', data: 'x' }]);
  zip('drive-letter', [{ name: 'C:/evil', data: 'x' }]);
  both('symlink-out', [{ path: 'out', type: 'SymbolicLink', linkpath: '../../etc' }], [{ name: 'out', data: '../../etc', mode: 0o120777 }]);
  both('symlink-absolute', [{ path: 'out', type: 'SymbolicLink', linkpath: '/etc/passwd' }], [{ name: 'out', data: '/etc/passwd', mode: 0o120777 }]);
  both('symlink-chain-out',
    [{ path: 'a', type: 'SymbolicLink', linkpath: 'b/..' }, { path: 'b', type: 'SymbolicLink', linkpath: '..' }],
    [{ name: 'a', data: 'b/..', mode: 0o120777 }, { name: 'b', data: '..', mode: 0o120777 }]);
  both('symlink-loop',
    [{ path: 'a', type: 'SymbolicLink', linkpath: 'b' }, { path: 'b', type: 'SymbolicLink', linkpath: 'a' }, { path: 'c', type: 'SymbolicLink', linkpath: 'a/x' }],
    [{ name: 'a', data: 'b', mode: 0o120777 }, { name: 'b', data: 'a', mode: 0o120777 }, { name: 'c', data: 'a/x', mode: 0o120777 }]);
  both('through-symlink',
    [{ path: 'link', type: 'SymbolicLink', linkpath: '.' }, { path: 'link/x.js', data: 'x' }],
    [{ name: 'link', data: '.', mode: 0o120777 }, { name: 'link/x.js', data: 'x' }]);
  both('duplicate', [{ path: 'a.js', data: '1' }, { path: './a.js', data: '2' }], [{ name: 'a.js', data: '1' }, { name: 'a.js', data: '2' }]);
  both('file-then-dir', [{ path: 'a', data: '1' }, { path: 'a/b', data: '2' }], [{ name: 'a', data: '1' }, { name: 'a/b', data: '2' }]);
  tar('hardlink', [{ path: 'a.js', data: '1' }, { path: 'b.js', type: 'Link', linkpath: 'a.js' }]);
  tar('chardev', [{ path: 'null', type: 'CharacterDevice' }]);
  tar('fifo', [{ path: 'pipe', type: 'FIFO' }]);
  zip('chardev', [{ name: 'null', mode: 0o020666 }]);
  zip('socket', [{ name: 'sock', mode: 0o140777 }]);
  zip('nul-byte', [{ name: 'a\0b', data: 'x' }]);
  both('deep', [{ path: `${'d/'.repeat(20)}f`, data: 'x' }], [{ name: `${'d/'.repeat(20)}f`, data: 'x' }]);
  zip('long-component', [{ name: `${'n'.repeat(300)}.js`, data: 'x' }]);
  both('empty', [], []);
  // bombs (the fuzz limits: 256 KiB unpacked, 200 entries)
  zip('bomb-deflate', [{ name: 'zeros', data: Buffer.alloc(4 << 20), deflate: true }]);
  zip('bomb-lying-size', [{ name: 'zeros', data: Buffer.alloc(1 << 20), deflate: true, declaredSize: 10 }]);
  zip('bomb-overlapping', Array.from({ length: 20 }, (_, i) => ({ name: `f${i}`, data: Buffer.alloc(64 << 10), deflate: true })), true);
  zip('many-entries', Array.from({ length: 250 }, (_, i) => ({ name: `f${i}` })));
  tgz('bomb-gzip', [{ path: 'zeros', data: Buffer.alloc(4 << 20) }]);
  tar('lying-size', [{ path: 'a', data: 'abc', size: 1 << 30 }], false);
  tgz('no-eof', TREE_TAR, false);
  write(t, 'targz-gzip-in-gzip', Buffer.concat([Buffer.from([1]), zlib.gzipSync(zlib.gzipSync(tarBytes(TREE_TAR)))]));
  write(t, 'targz-trailing-garbage', Buffer.concat([Buffer.from([1]), zlib.gzipSync(tarBytes(TREE_TAR)), Buffer.from('garbage')]));
  return { zip: zipBytes(TREE_ZIP), tgz: zlib.gzipSync(tarBytes(TREE_TAR)) };
}

const { zip, tgz } = packageSeeds();
ttrpcSeeds();
friSeeds(zip, tgz);
gatewaySeeds();
ociSeeds();
for (const t of ['ttrpc', 'fri', 'gateway', 'oci', 'packages']) {
  const dir = path.join(corpusRoot, t);
  const files = fs.readdirSync(dir);
  const bytes = files.reduce((n, f) => n + fs.statSync(path.join(dir, f)).size, 0);
  console.log(`${t}: ${files.length} files, ${bytes} bytes`);
}
