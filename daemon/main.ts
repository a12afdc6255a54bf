// spored entry point.
import { helpText, loadConfig, parseFlags } from './config.js';
import { startDaemon } from './daemon.js';
import { makeLogger } from './log.js';
import { statusOf } from '../sys/errors.js';

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  let config;
  // bin/spored checks the flags and environment this way before it starts the keeper, so a
  // mistake is one line on stderr and exit 2, with nothing started or created (exit 10: --help
  // was printed, nothing to start)
  const checkOnly = process.env.SPORE_CONFIG_CHECK === '1';
  try {
    if (parseFlags(argv).help !== undefined) {
      process.stdout.write(helpText());
      if (checkOnly) process.exit(10);
      return;
    }
    config = loadConfig(argv, process.env);
  } catch (e) {
    process.stderr.write(`spored: ${statusOf(e).message}\n`);
    process.exit(2);
  }
  if (checkOnly) process.exit(0);
  // The launcher starts us from the first container's bundle dir; never pin it.
  process.chdir('/');
  const log = makeLogger(config.logFile, config.logLevel);
  const daemon = await startDaemon(config, log);
  let stopping = false;
  // Under a keeper, SIGTERM is a restart (containers stay, the keeper starts the next
  // spored); the keeper's own stop asks for a full one.
  const stop = (sig: string, full: boolean): void => {
    if (stopping) return;
    stopping = true;
    log.info({ sig, containers: daemon.tasks.size, full: full || !daemon.keeper }, 'spored stopping');
    void daemon.stop(full).finally(() => { log.flush(); process.exit(0); });
  };
  process.on('SIGTERM', () => stop('SIGTERM', false));
  process.on('SIGINT', () => stop('SIGINT', false));
  daemon.keeper?.on('stop', () => stop('keeper stopping', true));
  // The keeper died: containerd has lost its connections (it takes the shim for dead and
  // deletes its tasks), and nothing would restart this spored. Stop fully, so the keeper
  // the launcher starts next begins clean.
  daemon.keeper?.on('lost', () => {
    log.error('the keeper is gone: containerd takes the shim for dead and deletes its tasks; spored stops');
    stop('keeper lost', true);
  });
  process.on('uncaughtException', (err) => { log.fatal({ err: err.stack }, 'uncaught exception'); log.flush(); });
  process.on('unhandledRejection', (err) => { log.error({ err: String((err as Error)?.stack ?? err) }, 'unhandled rejection'); });
}

main().catch((e: unknown) => {
  process.stderr.write(`spored: failed to start: ${(e as Error)?.stack ?? String(e)}\n`);
  process.exit(1);
});
