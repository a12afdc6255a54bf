// Input validation shared by the FRI server, the gateway and the CLI. Pure functions that either
// return a normalized value or throw a typed error whose message says what to fix; statusOf then
// maps them (InvalidArgument -> INVALID_ARGUMENT / HTTP 400, ResourceExhausted -> RESOURCE_EXHAUSTED
// / HTTP 413). Validating at the transport keeps garbage out of the seed manager and gives every
// entry point the same messages.
import { InvalidArgument, ResourceExhausted } from '../../sys/errors.js';
import type { Engine, FunctionSpec, Language, PackageFormat } from './types.js';

/** Largest event accepted (bytes of JSON text); like Lambda's synchronous payload limit. */
export const MAX_EVENT_BYTES = 6 * 1024 * 1024;
/** Largest module source accepted on deploy. */
export const MAX_CODE_BYTES = 8 * 1024 * 1024;
/** Largest package archive accepted on deploy (Lambda's zipped limit; functions/packages.ts). */
export const MAX_PACKAGE_BYTES = 50 * 1024 * 1024;
/**
 * gRPC message limit: room for the largest deploy (a package archive; a single file is smaller)
 * plus framing (the spec's other fields, env included). Oversized events and deploys below this
 * get validation's RESOURCE_EXHAUSTED message (which states the real limit); above it grpc-js
 * rejects them itself, with the same code.
 */
export const FRI_MAX_MESSAGE_BYTES = Math.max(MAX_CODE_BYTES, MAX_PACKAGE_BYTES) + 1024 * 1024;
/** Largest tail of a function's logs one Logs call returns. */
export const MAX_LOG_TAIL_BYTES = 16 * 1024 * 1024;
/** The handler of a single-file function: the exported function's name. */
export const DEFAULT_HANDLER = 'handler';
/** The handler of a package when none is given: MODULE.FUNCTION per language. */
export const DEFAULT_PACKAGE_HANDLER: Readonly<Record<'node' | 'python', string>> = Object.freeze({
  node: 'index.handler',
  python: 'main.handler',
});
/** Longest package handler (MODULE.FUNCTION), as Lambda's. */
export const MAX_HANDLER_CHARS = 128;
export const DEFAULT_MEMORY_MIB = 128;
export const DEFAULT_TIMEOUT_MS = 3000;
export const MIN_MEMORY_MIB = 16;
export const MAX_MEMORY_MIB = 16384;
export const MAX_TIMEOUT_MS = 15 * 60 * 1000;

// Names appear in URLs (/invoke/<name>), seed ids and cgroup names: keep them URL- and path-safe.
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;
const NAME_RULE = 'letters, digits, "-", "_" and "." (starting with a letter or digit), at most 63 characters';
const ENV_KEY_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;
const JS_IDENT_RE = /^[A-Za-z_$][A-Za-z0-9_$]*$/;
const PY_IDENT_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;
// One path segment of a Node package handler's module ("lib", "app.v2", "@scope"): no leading
// "." (so no "." or ".." segments, no hidden files), no separators or shell-ish characters.
const NODE_MODULE_SEGMENT_RE = /^[A-Za-z0-9_$@+-][A-Za-z0-9_$@+.-]*$/;

export function validateFunctionName(name: string): string {
  if (name === '') throw new InvalidArgument(`function name is empty; use ${NAME_RULE}, e.g. "hello"`);
  if (!NAME_RE.test(name)) throw new InvalidArgument(`bad function name ${JSON.stringify(name)}; use ${NAME_RULE}`);
  return name;
}

/** A required id (seed or instance): only emptiness is checked; unknown ids are the runtime's NOT_FOUND. */
export function validateId(what: string, id: string): string {
  if (id === '') throw new InvalidArgument(`${what} is empty; list ids with \`spore seeds\` / \`spore ps\``);
  return id;
}

export function validateEngine(e: Engine | null): Engine {
  if (e === null) throw new InvalidArgument('engine is missing or unknown; use "process" or "vm"');
  return e;
}

export function validateLanguage(l: Language | null): Language {
  if (l === null) throw new InvalidArgument('runtime (language) is missing or unknown; use "node" or "python" (or "vm" for the vm engine\'s built-in seed guest)');
  return l;
}

export function utf8Bytes(s: string): number {
  return Buffer.byteLength(s, 'utf8');
}

/**
 * The event as the handler will receive it: JSON text, at most MAX_EVENT_BYTES. An empty or
 * blank event means `{}` (what `spore invoke f` without --data and an empty POST send).
 */
export function validateEvent(text: string, limit = MAX_EVENT_BYTES): string {
  const size = utf8Bytes(text);
  if (size > limit) {
    throw new ResourceExhausted(`event is ${size} bytes; the limit is ${limit} bytes (${(limit / 1048576).toFixed(0)} MiB) — send a smaller event or pass a reference (a URL or path) instead of the data`);
  }
  if (text.trim() === '') return '{}';
  try {
    JSON.parse(text);
  } catch (e) {
    throw new InvalidArgument(`event is not valid JSON (${(e as Error).message}); send a JSON value such as {} or {"name":"spore"}`);
  }
  return text;
}

export interface RawFunctionSpec {
  name: string;
  language: Language | null;
  code: string;
  /** format null: UNSPECIFIED or unknown on the wire (rejected) */
  package?: { format: PackageFormat | null; data: Uint8Array } | null;
  handler: string;
  memoryMiB: number;
  timeoutMs: number;
  env: Record<string, string>;
}

/**
 * A package's handler: Lambda's MODULE.FUNCTION, split at the last ".". MODULE is a path below
 * /var/task without extension, "/"-separated (no leading "/", no "." or ".." segments); for
 * Python its segments (also "."-separated, as a dotted module path) are identifiers. FUNCTION is
 * an identifier of the language.
 */
export function validatePackageHandler(language: 'node' | 'python', handler: string, fn = ''): string {
  const where = fn === '' ? '' : `function ${fn}: `;
  const example = DEFAULT_PACKAGE_HANDLER[language];
  const what = `handler ${JSON.stringify(handler)}`;
  if (handler.length > MAX_HANDLER_CHARS) throw new InvalidArgument(`${where}${what} is longer than ${MAX_HANDLER_CHARS} characters`);
  const dot = handler.lastIndexOf('.');
  if (dot <= 0 || dot === handler.length - 1) {
    throw new InvalidArgument(`${where}${what} is not MODULE.FUNCTION; a package's handler names the module file (without extension) and its exported function, e.g. "${example}"`);
  }
  const mod = handler.slice(0, dot);
  const func = handler.slice(dot + 1);
  if (mod.startsWith('/')) throw new InvalidArgument(`${where}${what}: the module must be a path inside the package, without a leading "/"`);
  const segments = mod.split('/');
  if (segments.some((seg) => seg === '..' || seg === '.')) throw new InvalidArgument(`${where}${what}: the module path may not contain "." or ".." segments`);
  const segOk = language === 'python'
    ? (seg: string): boolean => seg.split('.').every((p) => PY_IDENT_RE.test(p))
    : (seg: string): boolean => NODE_MODULE_SEGMENT_RE.test(seg);
  const badSeg = segments.find((seg) => !segOk(seg));
  if (badSeg !== undefined) {
    throw new InvalidArgument(`${where}${what}: bad module path segment ${JSON.stringify(badSeg)}; use ${language === 'python' ? 'Python identifiers' : 'letters, digits and "_$@+-." (not starting with ".")'} separated by "/", e.g. "${example}"`);
  }
  const ident = language === 'python' ? PY_IDENT_RE : JS_IDENT_RE;
  if (!ident.test(func)) throw new InvalidArgument(`${where}${what}: ${JSON.stringify(func)} is not a ${language} identifier; name the module's exported function, e.g. "${example}"`);
  return handler;
}

/** Deploy input -> a complete FunctionSpec (zero values take defaults, as proto3 sends them). */
export function validateFunctionSpec(raw: RawFunctionSpec): FunctionSpec {
  const name = validateFunctionName(raw.name);
  const language = validateLanguage(raw.language);
  const codeBytes = utf8Bytes(raw.code);
  const pkg = raw.package && raw.package.data.byteLength > 0 ? raw.package : null;
  if (language === 'vm') {
    // A vm function runs spore's own seed guest (guest/seed.c): there is no user code or env to load.
    if (raw.code.trim() !== '') throw new InvalidArgument(`function ${name}: a vm function takes no code (it runs spore's built-in CPL3 seed guest, which checksums the event); omit --file`);
    if (pkg) throw new InvalidArgument(`function ${name}: a vm function takes no package (it runs spore's built-in CPL3 seed guest); omit --dir/--file`);
    if (Object.keys(raw.env).length > 0) throw new InvalidArgument(`function ${name}: a vm function takes no env (the seed guest has no environment)`);
  } else if (pkg) {
    if (raw.code !== '') throw new InvalidArgument(`function ${name}: give either code (a single file) or a package, not both`);
  } else if (raw.code.trim() === '') throw new InvalidArgument(`function ${name}: code is empty; pass the module source (spore deploy --file F) or a package (--dir DIR, --file PKG.zip)`);
  if (codeBytes > MAX_CODE_BYTES) throw new ResourceExhausted(`function ${name}: code is ${codeBytes} bytes; the limit is ${MAX_CODE_BYTES} bytes`);
  let handler: string;
  let pkgOut: FunctionSpec['package'] = null;
  if (pkg && language !== 'vm') {
    if (pkg.format === null) throw new InvalidArgument(`function ${name}: package format is missing or unknown; use "zip" or "tar.gz"`);
    if (pkg.data.byteLength > MAX_PACKAGE_BYTES) {
      throw new ResourceExhausted(`function ${name}: package archive is ${pkg.data.byteLength} bytes; the limit is ${MAX_PACKAGE_BYTES} bytes (${MAX_PACKAGE_BYTES / 1048576} MiB)`);
    }
    handler = validatePackageHandler(language, raw.handler === '' ? DEFAULT_PACKAGE_HANDLER[language] : raw.handler, name);
    pkgOut = { format: pkg.format, data: pkg.data };
  } else {
    handler = raw.handler === '' ? DEFAULT_HANDLER : raw.handler;
    const ident = language === 'python' ? PY_IDENT_RE : JS_IDENT_RE;
    if (!ident.test(handler)) throw new InvalidArgument(`function ${name}: handler ${JSON.stringify(handler)} is not a ${language} identifier; name the exported function, e.g. "handler"`);
  }
  const memoryMiB = raw.memoryMiB === 0 ? DEFAULT_MEMORY_MIB : raw.memoryMiB;
  if (!Number.isInteger(memoryMiB) || memoryMiB < MIN_MEMORY_MIB || memoryMiB > MAX_MEMORY_MIB) {
    throw new InvalidArgument(`function ${name}: memory ${memoryMiB} MiB is out of range; use ${MIN_MEMORY_MIB}..${MAX_MEMORY_MIB} MiB`);
  }
  const timeoutMs = raw.timeoutMs === 0 ? DEFAULT_TIMEOUT_MS : raw.timeoutMs;
  if (!Number.isInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > MAX_TIMEOUT_MS) {
    throw new InvalidArgument(`function ${name}: timeout ${timeoutMs} ms is out of range; use 1..${MAX_TIMEOUT_MS} ms`);
  }
  for (const k of Object.keys(raw.env)) {
    if (!ENV_KEY_RE.test(k)) throw new InvalidArgument(`function ${name}: bad env name ${JSON.stringify(k)}; use letters, digits and "_", not starting with a digit`);
  }
  const spec: FunctionSpec = { name, language, code: pkgOut ? '' : raw.code, handler, memoryMiB, timeoutMs, env: { ...raw.env } };
  if (pkgOut) spec.package = pkgOut;
  return spec;
}

/** Logs' tail size: 0 / absent means the runtime's default. */
export function validateTailBytes(n: number | undefined): number | undefined {
  if (n === undefined || n === 0) return undefined;
  if (!Number.isInteger(n) || n < 0 || n > MAX_LOG_TAIL_BYTES) {
    throw new InvalidArgument(`tail ${n} bytes is out of range; use 1..${MAX_LOG_TAIL_BYTES} bytes (0 = the default, 64 KiB)`);
  }
  return n;
}
