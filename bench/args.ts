// Flags of the long-running benches (soak, kill-storm, shells), parsed strictly with node's own
// util.parseArgs: an unknown flag or a bad number stops the bench with a message and its usage
// (exit 2) instead of starting a half-hour run with defaults, and --help prints the usage.
import { parseArgs } from 'node:util';

export interface BenchFlag {
  /** 'number': a finite number ≥ 0; 'string': any text; 'boolean': present or not */
  type: 'number' | 'string' | 'boolean';
  default?: number | string;
  help: string;
}

/**
 * Parse `argv` (process.argv.slice(2)) against `flags` ({ name: spec }, names without "--").
 * Returns the values by name (numbers as numbers; absent flags without a default are
 * undefined). On --help prints `usage` and the flags and exits 0; on a bad flag or value
 * prints the problem and the usage to stderr and exits 2.
 */
export type BenchValues<F extends Record<string, BenchFlag>> = {
  [K in keyof F]: F[K]['type'] extends 'number' ? number : F[K]['type'] extends 'boolean' ? boolean : string | undefined;
};

export function benchArgs<F extends Record<string, BenchFlag>>(
  argv: string[], usage: string, flags: F,
): BenchValues<F> {
  const text = (): string => [usage, '', ...Object.entries(flags).map(([n, f]) => `  --${n.padEnd(12)} ${f.help}${f.default !== undefined && f.default !== '' ? ` (default ${f.default})` : ''}`), ''].join('\n');
  const fail = (msg: string): never => {
    process.stderr.write(`${msg}\n\n${text()}`);
    process.exit(2);
  };
  let values: Record<string, string | boolean | undefined>;
  try {
    const options = Object.fromEntries([...Object.entries(flags).map(([n, f]) => [n, { type: f.type === 'boolean' ? 'boolean' as const : 'string' as const }]), ['help', { type: 'boolean' as const, short: 'h' }]]);
    values = parseArgs({ args: argv, options, strict: true, allowPositionals: false }).values as Record<string, string | boolean | undefined>;
  } catch (e) {
    return fail((e as Error).message);
  }
  if (values.help) {
    process.stdout.write(text());
    process.exit(0);
  }
  const out: Record<string, number | string | boolean | undefined> = {};
  for (const [n, f] of Object.entries(flags)) {
    if (f.type === 'boolean') { out[n] = values[n] === true; continue; }
    const raw = values[n] as string | undefined;
    if (f.type === 'string') { out[n] = raw ?? (f.default as string | undefined); continue; }
    if (raw === undefined) { out[n] = f.default as number; continue; }
    const v = Number(raw);
    if (raw.trim() === '' || !Number.isFinite(v) || v < 0) fail(`--${n} must be a number ≥ 0, not ${JSON.stringify(raw)}`);
    out[n] = v;
  }
  return out as BenchValues<F>;
}
