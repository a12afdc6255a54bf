// Human-readable output for `spore`: durations, the phase table and plain aligned tables.
// Pure functions, so output is testable without a daemon.
import type { FunctionInfo, InstanceInfo, InvokeResult, PackageFormat, PhaseTimings, SeedInfo } from '../protocols/fri/types.js';

/** Microseconds -> "850 µs" below a millisecond, else "1.23 ms" (two decimals). */
export function formatMicros(us: number): string {
  if (!Number.isFinite(us) || us < 0) return '-';
  if (us < 1000) return `${Math.round(us)} µs`;
  return `${(us / 1000).toFixed(2)} ms`;
}

/** Phases in the paper's Figure 6 order; destroy (the exit and recycling: measured only when it came before the answer, a failed call) is not in total. */
export const PHASES: readonly { key: keyof PhaseTimings; label: string; note?: string }[] = [
  { key: 'control', label: 'control path' },
  { key: 'fork', label: 'fork' },
  { key: 'bind', label: 'bind' },
  { key: 'seccomp', label: 'seccomp' },
  { key: 'init', label: 'init' },
  { key: 'execute', label: 'execute' },
  { key: 'respond', label: 'respond' },
  { key: 'destroy', label: 'destroy', note: 'exit and recycling; not in total' },
  { key: 'total', label: 'total' },
];

/** Left-aligned text columns, right-aligned when `right[i]`; two spaces between columns. */
export function table(header: readonly string[], rows: readonly (readonly string[])[], right: readonly boolean[] = []): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    cells
      .map((c, i) => (right[i] ? c.padStart(widths[i] ?? 0) : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n') + '\n';
}

export function phaseTable(t: PhaseTimings): string {
  return table(
    ['phase', 'time', ''],
    PHASES.map((p) => [p.label, formatMicros(t[p.key]), p.note ? `(${p.note})` : '']),
    [false, true, false],
  );
}

const dash = (v: string | number | null | undefined): string => (v === null || v === undefined || v === '' ? '-' : String(v));

/** The human output of `spore invoke`: result (or error), provenance line, phase table. */
export function formatInvoke(r: InvokeResult): { stdout: string; stderr: string } {
  let stdout = '';
  let stderr = '';
  if (r.ok) stdout += `${r.result ?? 'null'}\n`;
  else {
    const e = r.error;
    stderr += `spore: invocation failed (${e?.kind ?? 'internal'}): ${e?.message ?? 'no error message'}\n`;
    if (e?.stack) stderr += `${e.stack.trimEnd()}\n`;
  }
  stdout += `\nfunction ${dash(r.function)} · seed ${dash(r.seedId)} (L${r.seedLevel}) · instance ${dash(r.instanceId)}${r.parked ? ' (parked: forked before the call)' : ''}\n`;
  stdout += phaseTable(r.timings);
  return { stdout, stderr };
}

/** For --json: the result with its JSON text parsed, so consumers need not double-decode. */
export function invokeJson(r: InvokeResult): Record<string, unknown> {
  let result: unknown = null;
  if (r.result !== null) {
    try {
      result = JSON.parse(r.result);
    } catch {
      result = r.result; // not JSON after all: pass the text through rather than fail
    }
  }
  return { ...r, result };
}

export function seedsTable(seeds: readonly SeedInfo[]): string {
  return table(
    ['ID', 'LEVEL', 'LANGUAGE', 'FUNCTION', 'PID', 'STATE', 'FORKS', 'INIT ms', 'PRIVATE KiB', 'SHARED KiB'],
    seeds.map((s) => [
      s.id, `L${s.level}`, dash(s.language), dash(s.function), String(s.pid),
      s.replicaOf ? `${s.state} (replica)` : s.state, String(s.forks), s.initMs.toFixed(2),
      dash(s.memory?.privateKiB), dash(s.memory?.sharedKiB),
    ]),
    [false, false, false, false, true, false, true, true, true, true],
  );
}

export function instancesTable(instances: readonly InstanceInfo[]): string {
  return table(
    ['ID', 'SEED', 'FUNCTION', 'PID', 'STATE', 'CREATED'],
    instances.map((i) => [i.id, i.seedId, dash(i.function), String(i.pid), i.state, i.createdAt]),
    [false, false, false, true, false, false],
  );
}

/** A package digest as shown in tables: the first 12 hex digits (like short git hashes). */
export function shortDigest(d: string): string {
  return d === '' ? '-' : d.slice(0, 12);
}

/**
 * `spore functions`: one row per function (its active version), then, when any function has
 * more than one live version, the retiring ones with their in-flight invocations.
 */
export function functionsTable(list: readonly FunctionInfo[]): string {
  // by name: spored lists them in the order it came to know them (deploys, or a restart's restore)
  const fns = [...list].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  let out = table(
    ['NAME', 'STATE', 'RUNTIME', 'HANDLER', 'VERSION', 'DIGEST', 'MEMORY', 'TIMEOUT', 'CODE', 'SEED', 'INVOCATIONS', 'DEPLOYED'],
    fns.map((f) => [
      f.name, f.state, f.language, f.handler, String(f.version), shortDigest(f.packageDigest), `${f.memoryMiB} MiB`, `${f.timeoutMs} ms`,
      `${f.codeBytes} B`, dash(f.seedId), String(f.invocations), f.deployedAt,
    ]),
    [false, false, false, false, true, false, true, true, true, false, true, false],
  );
  const unwell = fns.filter((f) => f.state !== 'ready');
  if (unwell.length > 0) out += `\n${unwell.map((f) => `${f.name} is ${f.state}: ${f.stateMessage}`).join('\n')}\n`;
  const retiring = fns.flatMap((f) => (f.versions.length > 1 ? f.versions.filter((v) => v.state !== 'active').map((v) => ({ f, v })) : []));
  if (retiring.length > 0) {
    out += `\nretiring versions (finishing in-flight invocations):\n${table(
      ['NAME', 'VERSION', 'DIGEST', 'INFLIGHT', 'SEEDS', 'DEPLOYED'],
      retiring.map(({ f, v }) => [f.name, String(v.version), shortDigest(v.packageDigest), String(v.inflight), v.seedIds.join(',') || '-', v.deployedAt]),
      [false, true, false, true, false, false],
    )}`;
  }
  return out;
}

/** `spore deploy`'s human output; `format` is the package's when one was deployed. */
export function formatDeployed(info: FunctionInfo, format: PackageFormat | null): string {
  const size = format === null ? `${info.codeBytes} bytes` : `${format} package, ${info.codeBytes} bytes`;
  const digest = info.packageDigest === '' ? '' : `, digest ${shortDigest(info.packageDigest)}`;
  let out = `deployed ${info.name} version ${info.version} (${info.language}, handler ${info.handler}, ${info.memoryMiB} MiB, ${info.timeoutMs} ms, ${size}${digest})\n`;
  out += `seed: ${info.seedId ?? 'not built yet (the first invocations fork the language seed)'}\n`;
  const retiring = info.versions.filter((v) => v.state !== 'active');
  if (retiring.length > 0) {
    out += `retiring: ${retiring.map((v) => `version ${v.version} (${v.inflight} in flight)`).join(', ')}\n`;
  }
  return out;
}

/** `spore logs`: the text as is, ending with a newline (nothing at all for no logs). */
export function formatLogs(text: string): string {
  return text === '' || text.endsWith('\n') ? text : `${text}\n`;
}
