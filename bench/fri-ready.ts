// Waiting for a spored's function runtime from a bench.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { FriClient } from '../protocols/fri/client.js';

/**
 * An FRI client once `<runDir>/fri.sock` answers and both L1 seeds (Node, Python) are ready.
 * Throws after `timeoutMs` with the last errors of spored's log (`log`, pino JSON).
 */
export async function waitForFri(runDir: string, log: string, timeoutMs = 60_000): Promise<FriClient> {
  const socket = join(runDir, 'fri.sock');
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (existsSync(socket)) {
      try {
        const fri = await FriClient.connect(socket, { connectTimeoutMs: 2000 });
        const seeds = await fri.listSeeds();
        if (seeds.filter((s) => s.level === 1 && s.state === 'ready').length >= 2) return fri;
        fri.close();
      } catch { /* not yet */ }
    }
    if (Date.now() > until) {
      const errors = existsSync(log) ? readFileSync(log, 'utf8').split('\n').filter((l) => /"level":[56]0/.test(l)).slice(-3).join('\n') : '';
      throw new Error(`FRI did not come up at ${socket}; spored said:\n${errors}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}
