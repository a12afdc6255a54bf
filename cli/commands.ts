// The `spore` commands. Each one parses its own flags, talks to spored over FRI through the
// typed client, and prints either human output or (--json) one JSON document.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { InvalidArgument, ResourceExhausted } from '../sys/errors.js';
import type { FunctionSpec, InvokeOptions, Language, PackageArchive, PackageFormat, SeedLevel } from '../protocols/fri/types.js';
import type { RemoteFunctionRuntime } from '../protocols/fri/client.js';
import {
  DEFAULT_HANDLER, DEFAULT_MEMORY_MIB, DEFAULT_PACKAGE_HANDLER, DEFAULT_TIMEOUT_MS, MAX_PACKAGE_BYTES, validateEvent,
  validateFunctionName, validateFunctionSpec, validateTailBytes,
} from '../protocols/fri/validate.js';
import { UsageError, envFlags, intFlag } from './args.js';
import type { FlagSpec, Parsed } from './args.js';
import { formatDeployed, formatLogs, functionsTable, instancesTable, invokeJson, formatInvoke, seedsTable } from './format.js';

export interface CliIo {
  stdout(s: string): void;
  stderr(s: string): void;
  /** all of standard input, as text (for `--data-file -`); absent: there is none to read */
  stdin?(): string;
  env: Record<string, string | undefined>;
  cwd: string;
}

export interface Ctx {
  args: Parsed;
  io: CliIo;
  json: boolean;
  socket: string;
  client(): Promise<RemoteFunctionRuntime>;
}

export interface Command {
  name: string;
  summary: string;
  usage: string;
  flags: FlagSpec;
  /** pass everything after the command through unparsed (bench) */
  passThrough?: boolean;
  run(ctx: Ctx): Promise<number>;
}

/** Local input mistakes (bad --data JSON, bad name) are usage errors: exit 2, like a bad flag. */
function asUsage<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof InvalidArgument || e instanceof ResourceExhausted) throw new UsageError(e.message);
    throw e;
  }
}

function onePositional(ctx: Ctx, what: string): string {
  const [name, ...extra] = ctx.args.positionals;
  if (name === undefined) throw new UsageError(`missing <${what}>`);
  if (extra.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(extra[0])}`);
  return name;
}

function noPositionals(ctx: Ctx): void {
  const [first] = ctx.args.positionals;
  if (first !== undefined) throw new UsageError(`unexpected argument ${JSON.stringify(first)}`);
}

function printJson(ctx: Ctx, v: unknown): void {
  ctx.io.stdout(`${JSON.stringify(v)}\n`);
}

function readInput(ctx: Ctx, file: string, what: string): string {
  try {
    if (file === '-') {
      if (!ctx.io.stdin) throw new Error('no standard input here');
      return ctx.io.stdin();
    }
    return fs.readFileSync(path.resolve(ctx.io.cwd, file), 'utf8');
  } catch (e) {
    throw new UsageError(`cannot read ${what} ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

/** A package archive's format from its name (.zip, .tar.gz, .tgz); null for anything else. */
export function packageFormatOfFile(file: string): PackageFormat | null {
  const f = file.toLowerCase();
  if (f.endsWith('.zip')) return 'zip';
  if (f.endsWith('.tar.gz') || f.endsWith('.tgz')) return 'tar.gz';
  return null;
}

function readPackage(ctx: Ctx, file: string): Uint8Array {
  const abs = path.resolve(ctx.io.cwd, file);
  try {
    const size = fs.statSync(abs).size;
    if (size > MAX_PACKAGE_BYTES) throw new UsageError(`package ${file} is ${size} bytes; the limit is ${MAX_PACKAGE_BYTES} bytes (${MAX_PACKAGE_BYTES / 1048576} MiB)`);
    return fs.readFileSync(abs);
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw new UsageError(`cannot read package ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

/** node for .js/.mjs/.cjs, python for .py; null when the extension says nothing. */
export function languageOfFile(file: string): Language | null {
  const ext = path.extname(file).toLowerCase();
  if (ext === '.js' || ext === '.mjs' || ext === '.cjs') return 'node';
  if (ext === '.py') return 'python';
  return null;
}

const deploy: Command = {
  name: 'deploy',
  summary: 'register a function (or replace it with a new version) and build its seed',
  usage: `spore deploy <name> --file F.js|F.py [--runtime node|python] [--handler NAME] [options]
       spore deploy <name> --runtime node|python --dir DIR [--handler MODULE.FUNCTION] [options]
       spore deploy <name> --runtime node|python --file PKG.zip|PKG.tar.gz|PKG.tgz [--handler MODULE.FUNCTION] [options]
       spore deploy <name> --runtime vm [--timeout MS]

A single file is one module; a package is a directory tree (Node: package.json + node_modules;
Python: modules and vendored packages) that the function sees read-only at /var/task, as on
Lambda. Deploying a name again makes a new version: new invocations go to it while the old one
finishes what it has in flight.

  --file F        single file: the module source (Node: module.exports.handler = async (event,
                  context) => result; Python: def handler(event, context): return result);
                  a .zip, .tar.gz or .tgz file is a package, sent as is (at most ${MAX_PACKAGE_BYTES / 1048576} MiB)
  --dir DIR       package: DIR's whole contents (node_modules and dotfiles included), packed as
                  tar.gz; symlinks must stay inside DIR; at most ${MAX_PACKAGE_BYTES / 1048576} MiB packed, 250 MiB
                  unpacked, 20000 entries
  --runtime R     node or python (single file default: from the extension; required for a
                  package); vm: no --file, the function is spore's built-in seed guest in a
                  forked microVM (result: a checksum of the event)
  --handler H     single file: the exported function (default ${DEFAULT_HANDLER});
                  package: MODULE.FUNCTION, MODULE a path below the package root without
                  extension (default ${DEFAULT_PACKAGE_HANDLER.node} for node = index.js's export "handler",
                  ${DEFAULT_PACKAGE_HANDLER.python} for python = main.py's "handler"; e.g. src/app.main)
  --memory MiB    memory limit (default ${DEFAULT_MEMORY_MIB})
  --timeout MS    timeout in milliseconds (default ${DEFAULT_TIMEOUT_MS})
  --env K=V       environment variable for the function; repeatable
  --json          print the deployed function as JSON`,
  flags: {
    file: { value: true }, dir: { value: true }, runtime: { value: true }, handler: { value: true }, memory: { value: true },
    timeout: { value: true }, env: { value: true, repeat: true },
  },
  async run(ctx) {
    const name = onePositional(ctx, 'name');
    const file = ctx.args.get('file');
    const dir = ctx.args.get('dir');
    const rt = ctx.args.get('runtime');
    if (rt !== undefined && rt !== 'node' && rt !== 'python' && rt !== 'vm') throw new UsageError(`--runtime must be node, python or vm, got ${JSON.stringify(rt)}`);
    if (file !== undefined && dir !== undefined) throw new UsageError('give --file or --dir, not both');
    if (file === undefined && dir === undefined && rt !== 'vm') throw new UsageError('missing --file F (a module, or a .zip/.tar.gz package) or --dir DIR (a package directory)');
    if ((file !== undefined || dir !== undefined) && rt === 'vm') throw new UsageError(`--runtime vm takes no ${file !== undefined ? '--file' : '--dir'}: a vm function runs spore's built-in seed guest`);
    const format = dir !== undefined ? 'tar.gz' : file !== undefined ? packageFormatOfFile(file) : null;
    let language: Language | null;
    let code = '';
    let pkg: PackageArchive | null = null;
    let handler: string;
    if (format !== null) {
      const what = dir !== undefined ? `--dir ${dir}` : `--file ${file ?? ''}`;
      if (rt === undefined) throw new UsageError(`${what} is a package: pass --runtime node|python`);
      language = rt as Language;
      handler = ctx.args.get('handler') ?? DEFAULT_PACKAGE_HANDLER[rt as 'node' | 'python'];
      let data: Uint8Array;
      if (dir !== undefined) {
        // Loaded on use: tar is only needed here.
        const { packDirectory } = await import('../functions/packages.js');
        try {
          data = await packDirectory(path.resolve(ctx.io.cwd, dir));
        } catch (e) {
          if (e instanceof InvalidArgument || e instanceof ResourceExhausted) throw new UsageError(`--dir ${dir}: ${e.message}`);
          throw e;
        }
      } else data = readPackage(ctx, file ?? '');
      pkg = { format, data };
    } else {
      language = (rt as Language | undefined) ?? languageOfFile(file ?? '');
      if (language === null) throw new UsageError(`cannot tell the runtime of ${file ?? ''} from its extension; pass --runtime node|python (packages: .zip, .tar.gz, .tgz, or --dir)`);
      code = file === undefined ? '' : readInput(ctx, file, 'file');
      handler = ctx.args.get('handler') ?? DEFAULT_HANDLER;
    }
    const spec: FunctionSpec = asUsage(() => validateFunctionSpec({
      name,
      language,
      code,
      package: pkg,
      handler,
      memoryMiB: intFlag(ctx.args, 'memory', DEFAULT_MEMORY_MIB),
      timeoutMs: intFlag(ctx.args, 'timeout', DEFAULT_TIMEOUT_MS),
      env: envFlags(ctx.args.all('env')),
    }));
    const info = await (await ctx.client()).deploy(spec);
    if (ctx.json) printJson(ctx, info);
    else ctx.io.stdout(formatDeployed(info, spec.package ? spec.package.format : null));
    return 0;
  },
};

const invoke: Command = {
  name: 'invoke',
  summary: 'run a function once and show its result and phase timings',
  usage: `spore invoke <name> [EVENT | --data JSON | --data-file F] [--json]

  EVENT, --data JSON  the event (default {}), e.g. spore invoke hello '{"name":"x"}'
  --data-file F       read the event from a file, or from standard input with -
  --json              print the InvokeResult as one JSON line (result parsed)
Exit status: 0 when the function succeeded, 1 when it failed (error on stderr), 2 for usage.`,
  flags: { data: { value: true }, 'data-file': { value: true } },
  async run(ctx) {
    const [first, positional, ...extra] = ctx.args.positionals;
    if (first === undefined) throw new UsageError('missing <name>');
    if (extra.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(extra[0])}`);
    const name = asUsage(() => validateFunctionName(first));
    const data = ctx.args.get('data');
    const dataFile = ctx.args.get('data-file');
    if ([positional, data, dataFile].filter((x) => x !== undefined).length > 1) throw new UsageError('give the event once: as the argument after the name, --data or --data-file');
    const text = dataFile !== undefined ? readInput(ctx, dataFile, 'data file') : positional ?? data ?? '';
    const event = asUsage(() => validateEvent(text));
    const opts: InvokeOptions = {};
    const r = await (await ctx.client()).invoke(name, event, opts);
    if (ctx.json) printJson(ctx, invokeJson(r));
    else {
      const out = formatInvoke(r);
      if (out.stderr) ctx.io.stderr(out.stderr);
      ctx.io.stdout(out.stdout);
    }
    return r.ok ? 0 : 1;
  },
};

const seeds: Command = {
  name: 'seeds',
  summary: 'list seeds (root, language and function seeds) with memory',
  usage: 'spore seeds [--json]',
  flags: {},
  async run(ctx) {
    noPositionals(ctx);
    const list = await (await ctx.client()).listSeeds();
    if (ctx.json) printJson(ctx, list);
    else ctx.io.stdout(list.length ? seedsTable(list) : 'no seeds\n');
    return 0;
  },
};

const ps: Command = {
  name: 'ps',
  summary: 'list live instances',
  usage: 'spore ps [--json]',
  flags: {},
  async run(ctx) {
    noPositionals(ctx);
    const list = await (await ctx.client()).listInstances();
    if (ctx.json) printJson(ctx, list);
    else ctx.io.stdout(list.length ? instancesTable(list) : 'no instances\n');
    return 0;
  },
};

const functions: Command = {
  name: 'functions',
  summary: 'list deployed functions (versions, package digests)',
  usage: `spore functions [--json]

One line per function: its active version and package digest (short). Versions that were
replaced but still finish in-flight invocations are listed below, under "retiring versions".`,
  flags: {},
  async run(ctx) {
    noPositionals(ctx);
    const list = await (await ctx.client()).listFunctions();
    if (ctx.json) printJson(ctx, list);
    else ctx.io.stdout(list.length ? functionsTable(list) : 'no functions\n');
    return 0;
  },
};

const logs: Command = {
  name: 'logs',
  summary: "print a function's captured stdout/stderr",
  usage: `spore logs <name> [--tail BYTES] [--json]

  --tail BYTES  at most the last BYTES bytes, from a line start (default: spored's, 64 KiB)
  --json        print {"name", "text"} as one JSON line`,
  flags: { tail: { value: true } },
  async run(ctx) {
    const name = asUsage(() => validateFunctionName(onePositional(ctx, 'name')));
    const tail = ctx.args.has('tail') ? asUsage(() => validateTailBytes(intFlag(ctx.args, 'tail', 0))) : undefined;
    const text = await (await ctx.client()).logs(name, tail);
    if (ctx.json) printJson(ctx, { name, text });
    else ctx.io.stdout(formatLogs(text));
    return 0;
  },
};

const rm: Command = {
  name: 'rm',
  summary: 'remove a function and its seeds',
  usage: 'spore rm <name> [--json]',
  flags: {},
  async run(ctx) {
    const name = asUsage(() => validateFunctionName(onePositional(ctx, 'name')));
    await (await ctx.client()).remove(name);
    if (ctx.json) printJson(ctx, { removed: name });
    else ctx.io.stdout(`removed ${name}\n`);
    return 0;
  },
};

/** Where built benchmarks live: dist/bench next to dist/cli (this file's directory's sibling). */
export function benchDir(): string {
  return fileURLToPath(new URL('../bench/', import.meta.url));
}

const bench: Command = {
  name: 'bench',
  summary: 'run a benchmark from dist/bench (e.g. vm, fri)',
  usage: `spore bench <name> [args...]

Runs node dist/bench/<name>.js with the remaining arguments and SPORE_FRI_SOCKET set, e.g.
  spore bench vm --json
  spore bench fri --json
With --json a benchmark ends its output with one JSON line of the figures.`,
  flags: {},
  passThrough: true,
  async run(ctx) {
    const [name, ...rest] = ctx.args.positionals;
    const dir = benchDir();
    const available = fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => f.endsWith('.js')).map((f) => f.slice(0, -3)) : [];
    if (name === undefined) throw new UsageError(`missing <name>; built benchmarks: ${available.join(', ') || 'none'}`);
    if (!/^[a-z0-9][a-z0-9-]*$/.test(name)) throw new UsageError(`bad benchmark name ${JSON.stringify(name)}`);
    const file = path.join(dir, `${name}.js`);
    if (!fs.existsSync(file)) {
      ctx.io.stderr(`spore: benchmark "${name}" is not built: ${file} is missing (build with \`npm run build\`; bench/${name}.ts must exist). Built: ${available.join(', ') || 'none'}\n`);
      return 1;
    }
    const child = spawn(process.execPath, [file, ...rest, ...(ctx.json ? ['--json'] : [])], {
      stdio: 'inherit',
      cwd: ctx.io.cwd,
      env: { ...ctx.io.env, SPORE_FRI_SOCKET: ctx.socket },
    });
    return await new Promise<number>((resolve) => {
      child.once('error', (e) => { ctx.io.stderr(`spore: cannot run ${file}: ${e.message}\n`); resolve(1); });
      child.once('exit', (code, signal) => resolve(code ?? 128 + (signal ? os.constants.signals[signal] : 0)));
    });
  },
};

export const COMMANDS: readonly Command[] = [deploy, invoke, seeds, ps, functions, logs, rm, bench];
