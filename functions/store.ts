// Deployed functions on disk: one record per function under <state-dir>/functions/<name>.json
// (mode 0600: env may hold secrets), written atomically after each deploy that made a new
// version active and removed with the function. A spored that starts (after a crash, a
// restart or an upgrade) rebuilds every recorded function from its stored package, with the
// same version number and the same host id range; nobody redeploys.
import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Language } from '../protocols/fri/types.js';
import type { LoadSpec } from '../seeds/protocol.js';
import { writeFileAtomic } from '../sys/atomic-file.js';

/** Format tag of a record; a record of another format is left alone (and reported). */
export const FUNCTION_RECORD_FORMAT = 'spore.function/v1';

export interface FunctionRecord {
  format: typeof FUNCTION_RECORD_FORMAT;
  name: string;
  language: Language;
  /** as deployed: "handler" (single file) or MODULE.FUNCTION (package) */
  handler: string;
  memoryMiB: number;
  timeoutMs: number;
  env: Record<string, string>;
  /** the stored package (functions/packages.ts), content-addressed */
  packageDigest: string;
  /** what the seed loads from /var/task */
  load: LoadSpec;
  codeBytes: number;
  /** the active version when recorded */
  version: number;
  /** first host uid/gid of its id range (functions/id-ranges.ts) */
  hostId: number;
  deployedAt: string;
}

export class FunctionStore {
  readonly dir: string;

  constructor(stateDir: string) {
    this.dir = join(stateDir, 'functions');
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
  }

  private path(name: string): string {
    return join(this.dir, `${name}.json`);
  }

  /** Record (or re-record) a function; a crash leaves the old record or the new one. */
  save(rec: FunctionRecord): void {
    const p = this.path(rec.name);
    writeFileAtomic(p, JSON.stringify(rec), { tmp: `${p}.${process.pid}.tmp` });
  }

  /** Where the function's invocation count lives (functions/invocation-count.ts). */
  countPath(name: string): string {
    return join(this.dir, `${name}.count`);
  }

  /** Remove the record and the count. */
  remove(name: string): void {
    rmSync(this.path(name), { force: true });
    this.removeCount(name);
  }

  removeCount(name: string): void {
    rmSync(this.countPath(name), { force: true });
  }

  /** Every readable record, and what could not be read (left on disk, for an operator). */
  loadAll(): { records: FunctionRecord[]; bad: string[] } {
    const records: FunctionRecord[] = [];
    const bad: string[] = [];
    let names: string[] = [];
    try { names = readdirSync(this.dir); } catch { return { records, bad }; }
    for (const f of names.sort()) {
      if (!f.endsWith('.json')) {
        if (f.endsWith('.tmp')) rmSync(join(this.dir, f), { force: true }); // a save cut short
        continue;
      }
      try {
        const r = JSON.parse(readFileSync(join(this.dir, f), 'utf8')) as Partial<FunctionRecord>;
        if (r.format !== FUNCTION_RECORD_FORMAT) throw new Error(`format ${JSON.stringify(r.format)}, not ${FUNCTION_RECORD_FORMAT}`);
        if (typeof r.name !== 'string' || `${r.name}.json` !== f) throw new Error('name does not match the file');
        if (r.language !== 'node' && r.language !== 'python') throw new Error(`language ${JSON.stringify(r.language)}`);
        if (typeof r.packageDigest !== 'string' || !r.load || typeof r.version !== 'number') throw new Error('incomplete record');
        records.push(r as FunctionRecord);
      } catch (e) {
        bad.push(`${f}: ${(e as Error).message}`);
      }
    }
    return { records, bad };
  }

  /** Package digests the records need (kept by package garbage collection). */
  digests(): Set<string> {
    return new Set(this.loadAll().records.map((r) => r.packageDigest));
  }
}
