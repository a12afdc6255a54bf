// pino logger: structured JSON lines with ids and phase timings, to a file or stderr.
import pino, { type Logger } from 'pino';

export function makeLogger(file: string | null, level: string): Logger {
  const dest = pino.destination({ dest: file ?? 2, sync: false, mkdir: true });
  return pino({ level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime }, dest);
}
