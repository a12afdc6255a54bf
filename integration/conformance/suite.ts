// The vitest suite every oracle file runs: one containerd (Oracle.start) for the file, each
// case through runc and spore, the normalized traces equal but for the case's allowed
// differences, which are printed.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Oracle, report, type Case } from './oracle.js';

/** `cases` as a describe block titled `title`; skipped (with the reason printed by the caller) when `skip` is set. */
export function oracleSuite(title: string, cases: readonly Case[], o: { skip: string | undefined; timeoutMs?: number }): void {
  describe.skipIf(o.skip !== undefined)(title, () => {
    let oracle: Oracle;

    beforeAll(async () => {
      oracle = await Oracle.start();
    }, 60_000);

    afterAll(async () => {
      await oracle?.stop();
    }, 60_000);

    for (const k of cases) {
      it(k.name, async () => {
        const r = await oracle.compare(k);
        if (r.allowed.length > 0) console.log(`[conformance] ${k.name}: deliberate differences:\n${r.allowed.join('\n')}`);
        expect(r.diffs, report(r)).toEqual([]);
      }, o.timeoutMs ?? 90_000);
    }
  });
}
