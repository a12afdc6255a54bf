// Child processes a bench starts (wrk, standalone spored, fresh runtimes): tracked so the
// bench can kill what is still running when it stops, and waited for with a bound.
import type { ChildProcess } from 'node:child_process';

/** every tracked child that has not exited yet */
export const children = new Set<ChildProcess>();

/** Track `c` until it exits; returns it. */
export function track(c: ChildProcess): ChildProcess {
  children.add(c);
  c.on('exit', () => children.delete(c));
  return c;
}

/** Resolves true once `c` has exited, false after `ms` milliseconds. */
export function waitExit(c: ChildProcess, ms: number): Promise<boolean> {
  if (c.exitCode !== null || c.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    c.once('exit', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}
