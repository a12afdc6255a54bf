// spore-keeper entry point: `node dist/keeper/main.js [spored flags...]`. What
// `bin/spored` and the shim launcher run. It takes the run dir's lock for its whole life (a
// second keeper for the same run dir refuses to start, naming the holder), writes
// `keeper.pid` as "pid starttime" (the launcher trusts a pid only with its start time), then
// runs spored (dist/daemon/main.js) with the same flags and keeps it running.
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as sys from '../sys/libc.js';
import { processIdentity } from '../sys/proc.js';
import { Keeper } from './keeper.js';
import { writeFileAtomic } from '../sys/atomic-file.js';

const DAEMON_MAIN = join(dirname(dirname(fileURLToPath(import.meta.url))), 'daemon', 'main.js');

/** The value of spored flag `--name VALUE` / `--name=VALUE` in argv, else undefined (the daemon's own parsing validates it). */
function flagOf(argv: string[], name: string): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (a === name) return argv[i + 1] ?? '';
    if (a.startsWith(`${name}=`)) return a.slice(name.length + 1);
  }
  return undefined;
}

/** --run-dir from argv or SPORE_RUN_DIR. */
function runDirOf(argv: string[]): string {
  return flagOf(argv, '--run-dir') ?? (process.env.SPORE_RUN_DIR || '/run/spore');
}

/** --log FILE (or SPORE_LOG) from argv: spored's log file, which the keeper's lines join. */
function logFileOf(argv: string[]): string {
  return flagOf(argv, '--log') ?? process.env.SPORE_LOG ?? '';
}

let logFd = 2;
/** One pino-shaped JSON line, to spored's --log file when there is one (appended), else stderr. */
function log(msg: string, fields: Record<string, unknown> = {}): void {
  const line = `${JSON.stringify({ level: 30, time: new Date().toISOString(), pid: process.pid, c: 'keeper', msg, ...fields })}\n`;
  try { writeSync(logFd, line); } catch { /* a log that went away must not stop the keeper */ }
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv.includes('--help') || argv.includes('-h')) {
    // the flags are spored's: let it print them. Node marks the stdio fds it opened
    // close-on-exec; spored must get them back.
    for (const fd of [0, 1, 2]) { try { sys.setCloexec(fd, false); } catch { /* not open */ } }
    sys.execve(process.execPath, [process.execPath, DAEMON_MAIN, '--help'], Object.entries(process.env).map(([k, v]) => `${k}=${v ?? ''}`));
  }
  const runDir = runDirOf(argv);
  mkdirSync(runDir, { recursive: true, mode: 0o700 });
  const lockFd = openSync(join(runDir, 'keeper.lock'), 'a', 0o600);
  if (!sys.tryLockExclusive(lockFd)) {
    let holder = '';
    try { holder = readFileSync(join(runDir, 'keeper.pid'), 'utf8').trim().split(/\s+/)[0] ?? ''; } catch { /* none */ }
    process.stderr.write(`spored: another spore keeper serves ${runDir}${holder ? ` (pid ${holder})` : ''}; stop it first or give this one its own --run-dir\n`);
    process.exit(1);
  }
  // held for the keeper's whole life, and never inherited by the spored it runs
  sys.setCloexec(lockFd, true);
  const logFile = logFileOf(argv);
  if (logFile) {
    try { logFd = openSync(logFile, 'a', 0o640); sys.setCloexec(logFd, true); } catch (e) {
      process.stderr.write(`spore keeper: cannot append to ${logFile} (${(e as Error).message}); logging to stderr\n`);
    }
  }
  process.chdir('/');
  // SPORE_KEEPER_MAX_DOWN_MS: how long containerd's requests and the held listening sockets
  // wait for a spored that does not come up (default 10 s; tests shorten it)
  const maxDown = Number(process.env.SPORE_KEEPER_MAX_DOWN_MS ?? '');
  let usageError = false;
  const keeper = new Keeper({
    runDir, spored: [process.execPath, DAEMON_MAIN, ...argv], log, ...(Number.isInteger(maxDown) && maxDown > 0 ? { maxDownMs: maxDown } : {}),
    // bad flags: spored printed why on stderr (ours); exit as it did rather than retry forever.
    // Only when run by hand (bin/spored sets SPORE_KEEPER_USAGE_EXIT): under containerd's
    // launcher the keeper stays, so containerd's held requests end after maxDownMs with a
    // message that points at the log, where spored's own message is.
    ...(process.env.SPORE_KEEPER_USAGE_EXIT === '1' ? { onUsageError: () => { usageError = true; stop('spored refused its flags'); } } : {}),
  });
  await keeper.start();
  const pidFile = join(runDir, 'keeper.pid');
  writeFileAtomic(pidFile, `${processIdentity(process.pid) ?? process.pid}\n`, { mode: 0o644 });
  log('keeper ready', { runDir, ttrpc: keeper.ttrpcSocket });
  let stopping = false;
  const stop = (why: string): void => {
    if (stopping) return;
    stopping = true;
    log('keeper stopping', { why });
    void keeper.stop().finally(() => {
      rmSync(pidFile, { force: true });
      closeSync(lockFd);
      process.exit(usageError ? 2 : 0);
    });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  // the keeper's stderr may be a log file that is rotated or a terminal that goes away
  process.on('SIGPIPE', () => undefined);
  process.on('SIGHUP', () => undefined);
}

main().catch((e: unknown) => {
  process.stderr.write(`spore keeper: failed to start: ${(e as Error)?.stack ?? String(e)}\n`);
  process.exit(1);
});
