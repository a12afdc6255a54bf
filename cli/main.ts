// `spore`: the command-line client of spored's FRI. `main(argv, io)` is the whole program and
// returns the exit code, so tests drive it in-process; the bottom of the file runs it when this
// module is the entry point (bin/spore -> node dist/cli/main.js).
//
// Exit codes: 0 ok · 1 error (spored unreachable, RPC rejected, function failed) · 2 usage.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULT_RUN_DIR } from '../daemon/config.js';
import { Code, statusOf } from '../sys/errors.js';
import type { FriClient, RemoteFunctionRuntime } from '../protocols/fri/client.js';
import { UsageError, parseArgs } from './args.js';
import type { FlagSpec } from './args.js';
import { COMMANDS } from './commands.js';
import type { CliIo, Command, Ctx } from './commands.js';

export type { CliIo } from './commands.js';

const GLOBAL_FLAGS: FlagSpec = {
  socket: { value: true },
  json: { value: false },
  help: { value: false, short: 'h' },
};

const GLOBAL_HELP = `  --socket PATH  spored's FRI socket (env SPORE_FRI_SOCKET; default $SPORE_RUN_DIR/fri.sock, ${DEFAULT_RUN_DIR}/fri.sock)
  --json         machine-readable output
  -h, --help     help`;

function usage(): string {
  const w = Math.max(...COMMANDS.map((c) => c.name.length));
  return `usage: spore [--socket PATH] <command> [args] [--json]

commands:
${COMMANDS.map((c) => `  ${c.name.padEnd(w)}  ${c.summary}`).join('\n')}

global options:
${GLOBAL_HELP}

Run 'spore <command> --help' for a command's options.
`;
}

function commandHelp(c: Command): string {
  return `usage: ${c.usage}\n\nglobal options:\n${GLOBAL_HELP}\n`;
}

/** --socket, then SPORE_FRI_SOCKET, then $SPORE_RUN_DIR/fri.sock (as spored's config defaults). */
export function resolveSocket(flag: string | undefined, env: Record<string, string | undefined>): string {
  return flag ?? env.SPORE_FRI_SOCKET ?? path.join(env.SPORE_RUN_DIR ?? DEFAULT_RUN_DIR, 'fri.sock');
}

export async function main(argv: readonly string[], io: CliIo): Promise<number> {
  // A holder, not a `let`: the connection is made lazily inside ctx.client().
  const conn: { client: FriClient | null } = { client: null };
  let cmd: Command | undefined;
  try {
    // Global flags may come before the command; the command's own parse accepts them too.
    const head = parseArgs(argv, GLOBAL_FLAGS, { stopAtPositional: true });
    const [name, ...rest] = head.positionals;
    if (name === undefined || name === 'help') {
      const topic = name === 'help' ? rest[0] : undefined;
      const c = COMMANDS.find((x) => x.name === topic);
      if (topic !== undefined && !c) throw new UsageError(`unknown command ${JSON.stringify(topic)}`);
      if (c) io.stdout(commandHelp(c));
      else if (name === undefined && !head.has('help')) { io.stderr(usage()); return 2; }
      else io.stdout(usage());
      return 0;
    }
    cmd = COMMANDS.find((x) => x.name === name);
    if (!cmd) throw new UsageError(`unknown command ${JSON.stringify(name)}`);
    if (head.has('help') || (cmd.passThrough && (rest[0] === '--help' || rest[0] === '-h'))) {
      io.stdout(commandHelp(cmd));
      return 0;
    }
    const args = cmd.passThrough
      ? { positionals: rest, get: () => undefined, all: () => [], has: () => false }
      : parseArgs(rest, { ...GLOBAL_FLAGS, ...cmd.flags });
    if (args.has('help')) {
      io.stdout(commandHelp(cmd));
      return 0;
    }
    const socket = resolveSocket(args.get('socket') ?? head.get('socket'), io.env);
    const ctx: Ctx = {
      args,
      io,
      json: head.has('json') || args.has('json'),
      socket,
      async client(): Promise<RemoteFunctionRuntime> {
        // Loaded on first use: grpc-js + protobuf cost ~120 ms to import, which --help and
        // usage errors should not pay.
        const { FriClient: Client } = await import('../protocols/fri/client.js');
        conn.client ??= await Client.connect(socket);
        return conn.client;
      },
    };
    return await cmd.run(ctx);
  } catch (e) {
    if (e instanceof UsageError) {
      const hint = cmd ? `spore ${cmd.name} --help` : 'spore --help';
      io.stderr(`spore: ${e.message}\nRun '${hint}' for usage.\n`);
      return 2;
    }
    const st = statusOf(e);
    // UNAVAILABLE once connected: spored went away under the call (a restart, a crash); the
    // keeper holds the socket, so a retry reaches the next spored
    const dropped = conn.client !== null && (st.code === Code.UNAVAILABLE || (e as { code?: unknown }).code === Code.UNAVAILABLE);
    // an unknown function: say where the known ones are
    const unknownFn = st.code === Code.NOT_FOUND && /^function \S+ is not deployed$/.test(st.message);
    io.stderr(`spore: ${st.message}${dropped ? ' (spored went away during the call, e.g. a restart: an invocation may or may not have run; retry once spored is back)' : ''}${unknownFn ? " ('spore functions' lists the deployed ones; 'spore deploy' adds one)" : ''}\n`);
    return 1;
  } finally {
    conn.client?.close();
  }
}

export function processIo(): CliIo {
  return {
    stdout: (s) => process.stdout.write(s),
    stderr: (s) => process.stderr.write(s),
    stdin: () => fs.readFileSync(0, 'utf8'),
    env: process.env,
    cwd: process.cwd(),
  };
}

/** True when this module is the program (node dist/cli/main.js), not an import (tests). */
function isEntry(): boolean {
  const arg = process.argv[1];
  if (!arg) return false;
  try {
    return fs.realpathSync(arg) === fs.realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isEntry()) {
  main(process.argv.slice(2), processIo()).then(
    (code) => { process.exitCode = code; },
    (e: unknown) => { process.stderr.write(`spore: ${(e as Error)?.stack ?? String(e)}\n`); process.exitCode = 1; },
  );
}
