// The logger integration tests give the runtimes they start in-process: silent, so test output
// is not interleaved with pino JSON lines, unless SPORE_TEST_LOG names a level (or is set at
// all: then debug) to see them while debugging a test.
import pino, { type Logger } from 'pino';

const LEVELS = new Set(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']);

export function testLogLevel(env: NodeJS.ProcessEnv = process.env): string {
  const v = env.SPORE_TEST_LOG;
  if (v === undefined || v === '') return 'silent';
  return LEVELS.has(v) ? v : 'debug';
}

export function testLogger(): Logger {
  return pino({ level: testLogLevel() });
}
