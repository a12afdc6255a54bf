// Command-line parsing for `spore`: small and strict, so a typo is a usage error (exit 2) with a
// message rather than a silently ignored flag.

/** A mistake in how the command was called: exit code 2 and a pointer to --help. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export interface FlagDef {
  /** takes a value (`--file F` / `--file=F`); otherwise a boolean switch */
  value: boolean;
  /** may repeat (values collected in order) */
  repeat?: boolean;
  /** one-letter alias, e.g. 'h' for -h */
  short?: string;
}

export type FlagSpec = Record<string, FlagDef>;

export interface Parsed {
  positionals: string[];
  /** last value of a value flag */
  get(name: string): string | undefined;
  /** every value of a repeatable flag */
  all(name: string): string[];
  /** whether a flag was given at all */
  has(name: string): boolean;
}

/**
 * Parse argv against a spec. With `stopAtPositional`, parsing ends at the first positional and
 * the rest is returned untouched as positionals (used for the global flags before a command, and
 * for `spore bench <name> ...` pass-through).
 */
export function parseArgs(argv: readonly string[], spec: FlagSpec, opts: { stopAtPositional?: boolean } = {}): Parsed {
  const values = new Map<string, string[]>();
  const positionals: string[] = [];
  const byShort = new Map(Object.entries(spec).flatMap(([n, d]) => (d.short ? [[d.short, n] as const] : [])));
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (a === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    let name: string | undefined;
    let inline: string | undefined;
    if (a.startsWith('--') && a.length > 2) {
      const eq = a.indexOf('=');
      name = eq > 0 ? a.slice(2, eq) : a.slice(2);
      inline = eq > 0 ? a.slice(eq + 1) : undefined;
    } else if (/^-[A-Za-z]$/.test(a)) {
      name = byShort.get(a.slice(1));
      if (name === undefined) throw new UsageError(`unknown option ${a}`);
    } else {
      if (opts.stopAtPositional) {
        positionals.push(...argv.slice(i));
        break;
      }
      positionals.push(a);
      continue;
    }
    const def = spec[name];
    if (!def) throw new UsageError(`unknown option --${name}`);
    let v: string;
    if (def.value) {
      if (inline !== undefined) v = inline;
      else {
        const next = argv[i + 1];
        if (next === undefined) throw new UsageError(`option --${name} needs a value`);
        v = next;
        i++;
      }
    } else {
      if (inline !== undefined) throw new UsageError(`option --${name} takes no value`);
      v = 'true';
    }
    const list = values.get(name) ?? [];
    if (list.length > 0 && def.value && !def.repeat) throw new UsageError(`option --${name} given more than once`);
    list.push(v);
    values.set(name, list);
  }
  return {
    positionals,
    get: (n) => values.get(n)?.at(-1),
    all: (n) => values.get(n) ?? [],
    has: (n) => values.has(n),
  };
}

/** A positive integer flag value (memory, timeout), or the default when absent. */
export function intFlag(p: Parsed, name: string, dflt: number): number {
  const v = p.get(name);
  if (v === undefined) return dflt;
  if (!/^\d+$/.test(v) || Number(v) <= 0) throw new UsageError(`--${name} must be a positive integer, got ${JSON.stringify(v)}`);
  return Number(v);
}

/** `--env K=V` values -> a record; later keys win. */
export function envFlags(values: readonly string[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const kv of values) {
    const eq = kv.indexOf('=');
    if (eq <= 0) throw new UsageError(`--env needs KEY=VALUE, got ${JSON.stringify(kv)}`);
    env[kv.slice(0, eq)] = kv.slice(eq + 1);
  }
  return env;
}
