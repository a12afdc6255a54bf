// The OCI hooks that run in the runtime namespace: prestart and createRuntime (while the
// container's init waits before pivot_root), poststart (after Start), poststop (at Delete).
// spored runs them as runc's `create`/`start`/`delete` would: one at a time, in order, the
// state on stdin, the bundle as the working directory (containerd starts runc's shim there),
// the first failure ending the kind. The kinds that run inside the container are the child's
// (engines/process/container-init.ts); which runs where: protocols/oci/hooks.ts.
import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { Code, SporeError } from '../sys/errors.js';
import { OutputTail, describeWaitStatus, hookFailure, hookTimeoutMs, stateBytes, type Hook, type HookKind, type OciState } from '../protocols/oci/hooks.js';

/** A hook failed: Create or Start fails with this (gRPC Unknown, as containerd reports a runc failure). */
export class HookFailed extends SporeError {
  constructor(message: string) { super(Code.UNKNOWN, message); }
}

/**
 * Runs `hooks` of `kind`, in order, each with `state` on stdin and `cwd` as its working
 * directory; a hook without `env` gets spored's environment (runc's Go exec with a nil Env:
 * the runtime's own). A hook past its `timeout` (seconds) is killed. Resolves once all
 * exited 0; rejects with HookFailed naming the hook (#index, path), how it ended and the end of
 * its output; the hooks after it do not run.
 */
export async function runHooks(kind: HookKind, hooks: readonly Hook[], state: OciState, cwd: string, observe?: HookObserver): Promise<void> {
  const [failure] = await runList(kind, hooks, state, cwd, observe, true);
  if (failure !== undefined) throw new HookFailed(failure);
}

/** The hooks in order; the failures' messages (`stopAtFirst`: the first one ends the list). */
async function runList(kind: HookKind, hooks: readonly Hook[], state: OciState, cwd: string, observe: HookObserver | undefined, stopAtFirst: boolean): Promise<string[]> {
  const failures: string[] = [];
  const input = stateBytes(state);
  for (const [i, h] of hooks.entries()) {
    const r = await timed(kind, h, input, cwd, observe);
    if (r.why === null) continue;
    failures.push(hookFailure(kind, i, h, r.why, r.output));
    if (stopAtFirst) break;
  }
  return failures;
}

/** Told of every hook spored runs: its kind, how it ended, how long it took (seconds). */
export type HookObserver = (kind: HookKind, outcome: 'ok' | 'failed' | 'timeout', seconds: number) => void;

async function timed(kind: HookKind, h: Hook, input: Buffer, cwd: string, observe?: HookObserver): Promise<{ why: string | null; output: string }> {
  const t0 = performance.now();
  const r = await runOne(h, input, cwd);
  observe?.(kind, r.why === null ? 'ok' : r.timedOut ? 'timeout' : 'failed', (performance.now() - t0) / 1000);
  return r;
}

/**
 * Runs every hook of `kind` even when some fail (runtime-spec: poststop failures are logged
 * and the rest still run); returns the failures' messages, [] when all succeeded.
 */
export function runHooksAll(kind: HookKind, hooks: readonly Hook[], state: OciState, cwd: string, observe?: HookObserver): Promise<string[]> {
  return runList(kind, hooks, state, cwd, observe, false);
}

/** One hook to its end: `why` null when it exited 0, else how it failed (`timedOut`: killed for its time). */
function runOne(h: Hook, input: Buffer, cwd: string): Promise<{ why: string | null; output: string; timedOut?: boolean }> {
  return new Promise((resolve) => {
    const out = new OutputTail();
    const keep = (b: Buffer): void => out.push(b);
    let timedOut = false;
    let settled = false;
    const done = (why: string | null): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({ why, output: out.text(), timedOut });
    };
    // execve would refuse a file that is neither (ENOEXEC), as runc's hooks meet it; the
    // execvp under node:child_process would run it with /bin/sh instead
    const notExecutable = execFormatProblem(h.path);
    if (notExecutable) { resolve({ why: `cannot be started: ${notExecutable}`, output: '' }); return; }
    let child;
    try {
      child = spawn(h.path, h.args.slice(1), {
        argv0: h.args[0] ?? h.path,
        // (the bundle may be gone by a late poststop: containerd removes it after Delete)
        cwd: existsSync(cwd) ? cwd : '/',
        env: h.env === null ? process.env : envObject(h.env),
        stdio: ['pipe', 'pipe', 'pipe'],
      });
    } catch (e) {
      resolve({ why: `cannot be started: ${(e as Error).message}`, output: '' });
      return;
    }
    const ms = hookTimeoutMs(h);
    const timer = ms === null ? undefined : setTimeout(() => { timedOut = true; child.kill('SIGKILL'); }, ms);
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    // a hook that does not read its stdin: its exit says how it went, not our EPIPE
    child.stdin.on('error', () => undefined);
    child.stdin.end(input);
    child.on('error', (e) => done(`cannot be started: ${e.message}`));
    // killed for its time: done at its exit, not when its output closes (a child it left may hold that)
    child.on('exit', () => { if (timedOut) done(`ran past its timeout of ${h.timeout ?? 0} s and was killed`); });
    child.on('close', (code, signal) => {
      if (timedOut) return done(`ran past its timeout of ${h.timeout ?? 0} s and was killed`);
      if (code === 0) return done(null);
      done(signal ? describeWaitStatus(osConstants.signals[signal]) : `exit status ${code ?? '?'}`);
    });
  });
}

/**
 * Why execve would refuse `path` as a program (ENOEXEC: neither an ELF binary nor a `#!`
 * script), or null (also when it cannot be read: spawn then says why).
 */
function execFormatProblem(path: string): string | null {
  let fd: number;
  try { fd = openSync(path, 'r'); } catch { return null; }
  try {
    const head = Buffer.alloc(4);
    const n = readSync(fd, head, 0, 4, 0);
    if ((n >= 2 && head[0] === 0x23 && head[1] === 0x21) || (n === 4 && head.equals(Buffer.from([0x7f, 0x45, 0x4c, 0x46])))) return null;
    return 'exec format error (ENOEXEC: neither an ELF binary nor a script with a #! line)';
  } catch {
    return null; // a directory (EISDIR) and the like: spawn says why
  } finally {
    closeSync(fd);
  }
}

/** KEY=VALUE entries -> an env object (a later duplicate wins; an entry without '=' cannot be passed by node:child_process and is left out). */
function envObject(env: readonly string[]): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {};
  for (const e of env) {
    const at = e.indexOf('=');
    if (at > 0) out[e.slice(0, at)] = e.slice(at + 1);
  }
  return out;
}
