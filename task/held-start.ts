// A created container's start, held outside its root seed. Between Create and Start a
// container's set-up process waits for one byte on its start pipe; the root seed holds the
// pipe's write end and reads the process's status pipe. Held by the seed alone, the seed's
// death (kill -9, the OOM killer) ended every created container: EOF on the start pipe is
// the set-up process's "abort" (container-init.ts runChild). spored takes duplicates of both
// from the seed at Create (pidfd_getfd; the seed names its fds: protocol.ts 'held-start')
// and, under a keeper, parks them with it: the pipe keeps a writer, the container keeps
// waiting, and the next spored takes them back. spored starts the container itself, as the
// seed's `start` does (seed-main.ts): one byte on the start pipe, then the status pipe's EOF
// (it is close-on-exec: EOF means execve happened); the seed is told first (`started`).
// An exec's set-up is held the same way for the length of its Start (task/tasks.ts
// startExec): a Start the seed's death or spored's cuts short is carried out by the next.
import { fstatSync } from 'node:fs';
import net from 'node:net';
import { onJsonLines } from '../engines/process/lines.js';
import type { ChildStatus } from '../engines/process/protocol.js';
import * as sys from '../sys/libc.js';
import type { ProcessCustody } from './custody.js';

/** custody roles (custodyKey's last part) of the two pipes */
const START = 'start';
const STATUS = 'status';

/** The keeper lets go of a sandbox's pipes (after its Start, or its Delete); nothing if it holds none. */
export function releaseSetupPipes(custody: ProcessCustody): void {
  custody.release(START);
  custody.release(STATUS);
}

/**
 * A created container's start pipe (write end) and status pipe (read end), held by spored:
 * taken from the root seed at Create (take), or back from the keeper by a later spored
 * (reclaim). spored starts the container through them itself (begin), without a round trip
 * to the seed.
 */
export class HeldStart {
  private constructor(private start: number, private status: number, private readonly custody: ProcessCustody | null) {}

  /**
   * Duplicates of fds `pipes.start` and `pipes.status` of the root seed `seedPid`
   * (pidfd_getfd), parked with the keeper too when there is one (`custody`): resolves once it
   * has them. Rejects when they cannot be taken from the seed (it died: the Create fails
   * anyway); nothing is left open then.
   */
  static async take(seedPid: number, pipes: { start: number; status: number; ino?: { start: number; status: number } }, custody: ProcessCustody | null): Promise<HeldStart> {
    const pidfd = sys.pidfdOpen(seedPid);
    const taken: number[] = [];
    try {
      taken.push(sys.pidfdGetfd(pidfd, pipes.start), sys.pidfdGetfd(pidfd, pipes.status));
      // (a seed that names the inodes: the numbers are still the sandbox's pipes, not files the
      // seed opened since it dropped a sandbox that died)
      if (pipes.ino && (fstatSync(taken[0] as number).ino !== pipes.ino.start || fstatSync(taken[1] as number).ino !== pipes.ino.status)) {
        throw new Error(`the seed's fds ${pipes.start} and ${pipes.status} are no longer the sandbox's pipes (it ended)`);
      }
    } catch (e) {
      for (const fd of taken) sys.close(fd);
      throw e;
    } finally {
      sys.close(pidfd);
    }
    const held = new HeldStart(taken[0] as number, taken[1] as number, custody);
    // (the custodian duplicates at once)
    if (custody) await Promise.all([custody.park(START, held.start), custody.park(STATUS, held.status)]);
    return held;
  }

  /**
   * Pipes this process owns already (a direct spawn's: engines/process/seed-client.ts), parked
   * with the keeper too when there is one; the HeldStart owns them from now on.
   */
  static async own(pipes: { start: number; status: number }, custody: ProcessCustody | null): Promise<HeldStart> {
    const held = new HeldStart(pipes.start, pipes.status, custody);
    if (custody) {
      try {
        await Promise.all([custody.park(START, held.start), custody.park(STATUS, held.status)]);
      } catch (e) {
        held.release();
        throw e;
      }
    }
    return held;
  }

  /** Both pipes from the keeper (duplicates in this process, close-on-exec); null unless it holds both. */
  static reclaim(custody: ProcessCustody): HeldStart | null {
    const start = custody.reclaim(START);
    const status = custody.reclaim(STATUS);
    if (start !== null && status !== null) return new HeldStart(start, status, custody);
    if (start !== null) sys.close(start);
    if (status !== null) sys.close(status);
    return null;
  }

  /**
   * Whether the set-up process still waits on the start pipe: it holds the only read end, and
   * closes it when it starts (or dies). False: it started already (an earlier spored started
   * it and died before recording so) or it is gone.
   */
  waiting(): boolean {
    return this.start >= 0 && sys.pipeHasReader(this.start);
  }

  /**
   * Start it: one byte on the start pipe, then wait for the status pipe's end (execve). What
   * fails after the byte (the program cannot be executed) is the process's exit status, and
   * the reason it wrote is returned (null: none), as the seed's start reports it. Rejects when
   * nobody reads the start pipe any more (EPIPE: the process is gone).
   * `atExec`: resolve already at the process's `exec` status line (written once it has the byte, on its way to execve)
   * (runc's start returns there too), instead of once the execve has replaced its address
   * space; a failure after that line goes to `late` (the exit status says it anyway). Not for
   * a container with poststart hooks: the spec runs them once the program runs.
   */
  async begin(o: { atExec?: boolean; late?: (failure: string) => void } = {}): Promise<string | null> {
    if (this.start < 0 || this.status < 0) throw new Error('this start was released');
    try {
      sys.write(this.start, Buffer.from([1]));
    } finally {
      sys.close(this.start);
      this.start = -1;
    }
    const fd = this.status;
    this.status = -1;
    const sock = new net.Socket({ fd, readable: true, writable: false });
    let failure: string | null = null;
    let answered = false;
    return new Promise<string | null>((resolve) => {
      onJsonLines<ChildStatus>(sock, (m) => {
        if (m.s === 'error') {
          failure = `${m.phase}: ${m.message}`;
          if (answered) o.late?.(failure);
        } else if (m.s === 'exec' && o.atExec && !answered) {
          answered = true;
          resolve(null);
        }
      });
      const end = (): void => {
        sock.destroy();
        if (!answered) { answered = true; resolve(failure); }
      };
      sock.on('end', end);
      sock.on('error', end);
      sock.on('close', end);
    });
  }

  /** Close what this process holds; the keeper keeps its copies (for the next spored). */
  dropOwn(): void {
    if (this.start >= 0) sys.close(this.start);
    if (this.status >= 0) sys.close(this.status);
    this.start = this.status = -1;
  }

  /** Close what this process holds and let the keeper go of both pipes. */
  release(): void {
    if (this.start >= 0) sys.close(this.start);
    if (this.status >= 0) sys.close(this.status);
    this.start = this.status = -1;
    if (this.custody) releaseSetupPipes(this.custody);
  }
}
