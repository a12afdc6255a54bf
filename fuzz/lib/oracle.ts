// What every fuzz target shares: the one way to report a finding, and the per-input deadline.
//
// A target returns normally for every acceptable outcome (the input was accepted, or rejected
// with the clear, typed error its contract names) and throws a FuzzFinding for anything else.
// Jazzer.js treats any exception out of a target as a finding: it prints it, writes the input
// to crash-<sha1> and stops. Exceptions other than FuzzFinding (a TypeError out of the code
// under test, say) are findings too, just less well described.
import { appendFileSync } from 'node:fs';
import { Code, SporeError } from '../../sys/errors.js';

export class FuzzFinding extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'FuzzFinding';
  }
}

export function describe(err: unknown): string {
  if (err instanceof Error) return `${err.name}: ${err.message}${err.stack ? `\n${err.stack.split('\n').slice(1, 6).join('\n')}` : ''}`;
  return `non-Error thrown: ${String(err)}`;
}

/** A rejection must be a SporeError whose code is one of `allowed`, with a message. */
export function expectTyped(err: unknown, allowed: readonly number[], what: string): SporeError {
  if (!(err instanceof SporeError)) throw new FuzzFinding(`${what}: untyped error ${describe(err)}`, { cause: err });
  if (!allowed.includes(err.code)) {
    const names = allowed.map(codeName).join('/');
    throw new FuzzFinding(`${what}: ${err.name} with code ${codeName(err.code)} (expected ${names}): ${err.message}`, { cause: err });
  }
  if (err.message.trim() === '') throw new FuzzFinding(`${what}: ${err.name} without a message`, { cause: err });
  return err;
}

const CODE_NAMES = new Map<number, string>(Object.entries(Code).map(([k, v]) => [v, k]));
export function codeName(code: number): string {
  return CODE_NAMES.get(code) ?? `code ${code}`;
}

/**
 * `p`, or a FuzzFinding when it has not settled within `ms` (a hang: libFuzzer's own -timeout
 * does not see async targets, whose callbacks run on the event loop, not on its thread).
 */
export function withDeadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new FuzzFinding(`hang: ${what} did not settle within ${ms} ms`)), ms);
  });
  return Promise.race([p, deadline]).finally(() => clearTimeout(timer));
}

/** Per-input deadline of the async targets (ms); SPORE_FUZZ_DEADLINE_MS overrides it. */
export const INPUT_DEADLINE_MS = Number(process.env.SPORE_FUZZ_DEADLINE_MS ?? '') || 5000;

/**
 * Triage aid: with SPORE_FUZZ_KEEP_GOING=<file>, a target wrapped in keepGoing() records each
 * distinct finding (its message with values blanked) and the first input that showed it as a
 * JSON line in <file>, and goes on fuzzing instead of stopping at the first one.
 */
export function keepGoing<R>(fn: (data: Buffer) => R): (data: Buffer) => R {
  const file = process.env.SPORE_FUZZ_KEEP_GOING;
  if (!file) return fn;
  const seen = new Set<string>();
  const record = (e: unknown, data: Buffer): void => {
    const message = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
    const signature = message.replace(/"(?:[^"\\]|\\.)*"/g, '"…"').replace(/\d+/g, 'N').slice(0, 160);
    if (seen.has(signature)) return;
    seen.add(signature);
    appendFileSync(file, `${JSON.stringify({ signature, message: message.slice(0, 2000), stack: e instanceof Error ? e.stack?.split('\n').slice(1, 6) : undefined, input: data.toString('base64') })}\n`);
  };
  return function keepGoingTarget(data: Buffer): R {
    try {
      const r = fn(data);
      if (r instanceof Promise) return r.catch((e: unknown) => record(e, data)) as R;
      return r;
    } catch (e) {
      record(e, data);
      return undefined as R;
    }
  };
}
