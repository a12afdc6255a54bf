// A process's stdio, wired the way containerd's runc shim wires it (pkg/process/io.go), so
// that clients see the same streams, files and timings:
//  - FIFO paths (ctr, CRI): the process writes stdout and stderr into pipes that spored copies
//    into the FIFOs and closes at EOF (the shim's NewPipeIO + copyPipes; the process never holds
//    the client's FIFO, a host file). Delete waits up to 2 s for that copy and then ends the
//    client's streams anyway, as the shim does, so a process whose background child still
//    holds stdout is not waited for until that child exits. stdin is the FIFO itself.
//  - file:///path: the file and its directory are created (0644/0755); stdout and stderr share
//    a pipe that spored appends to the file (the process never holds the file).
//  - binary:///path?k=v: the logging binary is started with args `k v`, only CONTAINER_ID and
//    CONTAINER_NAMESPACE in its environment, the process's stdout and stderr as its fds 3 and 4
//    and a pipe on fd 5 it writes to (or closes) when ready; Create waits for that. Delete closes
//    the pipes, sends SIGTERM and waits up to 12 s before SIGKILL.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, fstatSync, mkdirSync, openSync, statSync, write as fsWrite } from 'node:fs';
import net from 'node:net';
import { dirname, isAbsolute } from 'node:path';
import { Code, InvalidArgument, SporeError } from '../sys/errors.js';
import * as sys from '../sys/libc.js';
import type { Stdio } from '../engines/process/protocol.js';
import type { ProcessCustody } from './custody.js';
import { Pump } from './pump.js';

/** A stream spored copies for a process (a task record lists them, to adopt them after a restart). */
export type RelayedStream = 'stdin' | 'stdout' | 'stderr';

export interface StdioRequest { stdin: string; stdout: string; stderr: string; terminal: boolean }

/**
 * One end of a client's FIFO. O_RDWR never blocks and never sees a spurious EOF before the
 * client opened its end. An output FIFO must not be readable: the socket would start reading
 * and take the process's output away from the client.
 */
export function fifoSocket(path: string, dir: 'in' | 'out'): net.Socket {
  return socketOn(openFifo(path), dir);
}

/** The fd fifoSocket would wrap (so it can be parked with the keeper). */
export function openFifo(path: string): number {
  return sys.open(path, FIFO_OUT | sys.O.CLOEXEC);
}

/** How spored opens a client's output FIFO: read-write never blocks, nor sees a spurious EOF before the client opened its end. */
const FIFO_OUT = sys.O.RDWR | sys.O.NONBLOCK;

/** A socket on an open FIFO end (or a pipe end) this process now owns. */
export function socketOn(fd: number, dir: 'in' | 'out'): net.Socket {
  return new net.Socket({ fd, readable: dir === 'in', writable: dir === 'out' });
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** path of one of spored's fds as another process (the sandbox being set up) can open it */
const fdPath = (fd: number): string => `/proc/${process.pid}/fd/${fd}`;

function isFifo(path: string): boolean {
  try {
    return statSync(path).isFIFO();
  } catch {
    return false;
  }
}

function plainPath(uri: string, field: string): string {
  if (!uri) return '';
  if (!isAbsolute(uri)) throw new InvalidArgument(`${field} must be an absolute path or a file:// or binary:// URI, got ${JSON.stringify(uri)}`);
  return uri;
}


/**
 * pipe -> FIFO copy of a process's stdout or stderr (splice, no byte in spored's memory), or
 * pipe -> file copy of a file:// log: the process only ever holds the pipe, as with runc's
 * shim (given the FIFO or the log file itself, a container's root could chmod it, read what
 * it held before and truncate it through /proc/self/fd).
 */
class Relay {
  readonly childPath: string;
  private w: number;
  /** FIFO mode: the pump; its source (the pipe's read end) and destination (the FIFO end) */
  private readonly pump: Pump | null;
  private r: number;
  private fifoFd: number;
  /** file mode: the pipe as a stream, and the file (written with blocking appends) */
  private readonly src: net.Socket | null;
  private fileFd: number;
  /** the chunk being appended to the file (file relays write one at a time) */
  private fileWrite: Promise<void> | null = null;
  readonly done: Promise<void>;
  private finishNow: () => void = () => undefined;

  /**
   * A new relay into `target` (a FIFO, or with `file` a regular file opened for appending);
   * with custody, its pipe's read end and the destination are parked as `relay-<stream>-{src,dst}`.
   */
  static async create(target: string, stream: 'stdout' | 'stderr', custody: ProcessCustody | null, file = false): Promise<Relay> {
    const left: number[] = [];
    try {
      return await Relay.begin(target, stream, custody, file, left).relay;
    } finally {
      for (const fd of left) sys.close(fd);
    }
  }

  /**
   * The pipe first (the process is handed its end, `childPath`, at once), the destination
   * after: a FIFO's open is a round trip to the keeper, made while the process sets up.
   * `relay` rejects when the destination cannot be opened; the pipe's fds are then added to
   * `left`, for the caller to close once the process no longer opens its end (closed at once,
   * the process could open whatever took the number meanwhile, and fail on that instead).
   */
  static begin(target: string, stream: 'stdout' | 'stderr', custody: ProcessCustody | null, file: boolean, left: number[]): { childPath: string; relay: Promise<Relay> } {
    const [r, w] = sys.pipe();
    return { childPath: fdPath(w), relay: Relay.attach(r, w, target, stream, custody, file, left) };
  }

  private static async attach(r: number, w: number, target: string, stream: 'stdout' | 'stderr', custody: ProcessCustody | null, file: boolean, left: number[]): Promise<Relay> {
    // A client's FIFO is opened by the keeper, which holds it from the start: opened here
    // and parked after, a kill -9 in between took the FIFO's only writer along and the
    // client saw EOF (the process's whole output lost, ctr exiting 0).
    let dst: number;
    try {
      if (file) dst = sys.open(target, sys.O.WRONLY | sys.O.APPEND | sys.O.CLOEXEC | sys.O.NOFOLLOW);
      else dst = custody ? await custody.open(`relay-${stream}-dst`, target, FIFO_OUT) : openFifo(target);
    } catch (e) {
      left.push(r, w);
      throw e;
    }
    let relay: Relay;
    try {
      relay = new Relay(r, w, dst, stream, custody, file);
    } catch (e) {
      for (const fd of [r, w, dst]) sys.close(fd);
      custody?.release(`relay-${stream}-dst`);
      throw e;
    }
    if (custody) relay.parked = Promise.all([custody.park(`relay-${stream}-src`, r), file ? custody.park(`relay-${stream}-dst`, dst) : Promise.resolve()]).then(() => undefined);
    return relay;
  }

  /** resolves once the keeper holds this relay's fds (at once without custody) */
  parked: Promise<void> = Promise.resolve();

  /** Take over a relay an earlier spored started (its pipe and FIFO ends are in custody). */
  static adopt(stream: 'stdout' | 'stderr', custody: ProcessCustody): Relay | null {
    const r = custody.reclaim(`relay-${stream}-src`);
    const dst = custody.reclaim(`relay-${stream}-dst`);
    if (r === null || dst === null) {
      // half a relay is none: and the keeper must not keep the other half, or the client's
      // FIFO never sees its EOF (a client that waited forever after a restart)
      for (const fd of [r, dst]) if (fd !== null) sys.close(fd);
      custody.release(`relay-${stream}-src`);
      custody.release(`relay-${stream}-dst`);
      return null;
    }
    let file = false;
    try { file = !fstatSync(dst).isFIFO(); } catch { /* treated as a FIFO */ }
    if (file) sys.setNonblock(r, true);
    return new Relay(r, -1, dst, stream, custody, file);
  }

  get streamName(): 'stdout' | 'stderr' { return this.stream; }

  private constructor(r: number, w: number, dstFd: number, private readonly stream: 'stdout' | 'stderr', private custody: ProcessCustody | null, file: boolean) {
    this.w = w;
    this.childPath = w >= 0 ? fdPath(w) : '';
    this.fileFd = file ? dstFd : -1;
    this.fifoFd = file ? -1 : dstFd;
    this.r = file ? -1 : r;
    if (!file) {
      this.src = null;
      let ended: (why: 'eof' | 'epipe' | 'error') => void = () => undefined;
      this.pump = new Pump(r, dstFd, (why) => ended(why));
      this.done = new Promise<void>((resolve) => {
        let finishing = false;
        const finish = async (): Promise<void> => {
          if (finishing) return;
          finishing = true;
          // The client's reader may not be open yet (containerd's fifo package opens it in
          // the background), and bytes still in the FIFO go with its last open end: wait
          // (bounded) until they are read, as the shim's copy waits for its FIFO's reader.
          const until = performance.now() + 2000;
          for (;;) {
            let n = 0;
            try { n = this.fifoFd >= 0 ? sys.pendingBytes(this.fifoFd) : 0; } catch { n = 0; }
            if (n === 0 || performance.now() >= until) break;
            await sleep(5);
          }
          this.closeFifo();
          resolve();
        };
        ended = () => void finish();
        this.finishNow = () => { this.pump?.stop(); this.closeFifo(); resolve(); };
      });
      this.pump.start();
      return;
    }
    this.pump = null;
    const src = new net.Socket({ fd: r, readable: true, writable: false });
    this.src = src;
    src.on('error', () => undefined);
    src.on('data', (d: Buffer) => {
      if (this.fileFd < 0) return;
      // on the thread pool, one chunk at a time: a file write can block (dirty-page
      // throttling under a container that floods its log), and spored's loop serves every
      // container and function. The pipe fills meanwhile and the writer waits, as with a shim.
      src.pause();
      this.fileWrite = new Promise<void>((resolve) => {
        appendAll(this.fileFd, d, () => { resolve(); this.fileWrite = null; if (!src.destroyed) src.resume(); });
      });
    });
    this.done = new Promise<void>((resolve) => {
      let ending = false;
      const finish = async (): Promise<void> => {
        if (ending) return;
        ending = true;
        await this.fileWrite;
        this.closeFile();
        this.releaseCustody();
        resolve();
      };
      src.on('end', () => void finish());
      src.on('close', () => void finish());
    });
  }

  private closeFifo(): void {
    this.pump?.stop();
    for (const fd of [this.r, this.fifoFd]) if (fd >= 0) sys.close(fd);
    this.r = this.fifoFd = -1;
    this.releaseCustody();
  }

  private closeFile(): void {
    if (this.fileFd < 0) return;
    const fd = this.fileFd;
    this.fileFd = -1;
    // after the chunk in flight (its write holds the fd number)
    if (this.fileWrite) void this.fileWrite.then(() => sys.close(fd)); else sys.close(fd);
  }

  /** the process opened its end: EOF now comes when it (and its children) close theirs */
  dropWriteEnd(): void {
    if (this.w >= 0) { sys.close(this.w); this.w = -1; }
  }

  close(): void {
    this.dropWriteEnd();
    if (this.pump) { this.finishNow(); return; }
    this.src?.destroy();
    this.closeFile();
    this.releaseCustody();
  }

  private releaseCustody(): void {
    this.custody?.release(`relay-${this.stream}-src`);
    this.custody?.release(`relay-${this.stream}-dst`);
  }

  /** From now on what the keeper holds for this relay stays there (ProcessIO.abandon). */
  keepCustody(): void {
    this.custody = null;
  }
}

/**
 * FIFO -> pipe copy of a process's stdin (splice, no byte in spored's memory), as the runc
 * shim's (copyPipes, openStdin): the process holds only the pipe's read end. spored reads
 * the client's FIFO, and holds a write end of that FIFO as well (`keep`), so the process's
 * stdin ends only once the client has closed its own and CloseIO came; a client may attach
 * again meanwhile. Before any writer opened the FIFO its reader sees nothing, not EOF (Linux
 * reports POLLHUP on a FIFO only for writers that came after the reader). Nothing is moved
 * before begin(): what the client wrote stays in its FIFO until the process is recorded (a
 * spored killed before that took the first lines with it into a pipe nobody else held).
 * With custody its fds are parked as `relay-stdin-{src,dst,keep}`.
 */
class StdinRelay {
  readonly childPath: string;
  private r: number;
  private keep: number;
  private src: number;
  private dst: number;
  private readonly pump: Pump;
  /** resolves once the keeper holds its fds (at once without custody) */
  parked: Promise<void> = Promise.resolve();

  /** As Relay.begin: the pipe at once (the process's end: `childPath`), the FIFO's ends after. */
  static begin(fifo: string, custody: ProcessCustody | null, left: number[]): { childPath: string; relay: Promise<StdinRelay> } {
    const pipe = sys.pipe();
    return { childPath: fdPath(pipe[0]), relay: StdinRelay.attach(pipe, fifo, custody, left) };
  }

  private static async attach(pipe: [number, number], fifo: string, custody: ProcessCustody | null, left: number[]): Promise<StdinRelay> {
    // the FIFO's ends are opened by the keeper, held from the start (as Relay's)
    const openEnd = (role: string, flags: number): Promise<number> => (custody ? custody.open(role, fifo, flags) : Promise.resolve(sys.open(fifo, flags | sys.O.CLOEXEC)));
    let src = -1;
    let keep = -1;
    let relay: StdinRelay;
    try {
      src = await openEnd('relay-stdin-src', sys.O.RDONLY | sys.O.NONBLOCK);
      // a writer can open without blocking now that a reader (src) is there
      keep = await openEnd('relay-stdin-keep', sys.O.WRONLY | sys.O.NONBLOCK);
      relay = new StdinRelay(src, pipe[1], keep, pipe[0], custody);
    } catch (e) {
      for (const fd of [src, keep]) if (fd >= 0) sys.close(fd);
      left.push(...pipe); // (as Relay.begin's)
      for (const role of ['src', 'keep']) custody?.release(`relay-stdin-${role}`);
      throw e;
    }
    if (custody) relay.parked = custody.park('relay-stdin-dst', pipe[1]);
    return relay;
  }

  /** Take over the stdin relay an earlier spored started, moving again at once; null if its FIFO or pipe end is not in custody. */
  static adopt(custody: ProcessCustody): StdinRelay | null {
    const src = custody.reclaim('relay-stdin-src');
    const w = custody.reclaim('relay-stdin-dst');
    const keep = custody.reclaim('relay-stdin-keep'); // none: CloseIO had come
    if (src === null || w === null) {
      for (const fd of [src, w, keep]) if (fd !== null) sys.close(fd);
      for (const role of ['src', 'dst', 'keep']) custody.release(`relay-stdin-${role}`);
      return null;
    }
    const relay = new StdinRelay(src, w, keep ?? -1, -1, custody);
    relay.begin();
    return relay;
  }

  private constructor(src: number, w: number, keep: number, r: number, private custody: ProcessCustody | null) {
    this.r = r;
    this.keep = keep;
    this.src = src;
    this.dst = w;
    this.childPath = r >= 0 ? fdPath(r) : '';
    this.pump = new Pump(src, w, (why) => {
      // 'eof': the client's last writer (and ours) closed: the process reads what is left, then EOF.
      // 'epipe': the process closed its stdin or ended: stop reading; the client's writes
      // then fail, as the shim's copy ends.
      void why;
      this.close();
    });
  }

  /** Start moving what the client writes (once the process is recorded). */
  begin(): void {
    this.pump.start();
  }

  /** the process opened its end: spored's copy of the pipe's read end goes */
  dropReadEnd(): void {
    if (this.r >= 0) { sys.close(this.r); this.r = -1; }
  }

  /** CloseIO: spored's own writer goes; the process sees EOF once the client's has gone too. */
  closeStdin(): void {
    if (this.keep >= 0) { sys.close(this.keep); this.keep = -1; }
    this.custody?.release('relay-stdin-keep');
  }

  /** From now on what the keeper holds for this relay stays there (ProcessIO.abandon). */
  keepCustody(): void {
    this.custody = null;
  }

  close(): void {
    this.pump.stop();
    this.dropReadEnd();
    this.closeStdin();
    for (const fd of [this.src, this.dst]) if (fd >= 0) sys.close(fd);
    this.src = this.dst = -1;
    for (const role of ['src', 'dst', 'keep']) this.custody?.release(`relay-stdin-${role}`);
  }
}

/** Write all of `d` at `fd` (a short write goes on from where it stopped); an error ends it (a full disk loses the rest, as the shim's copy would). */
function appendAll(fd: number, d: Buffer, done: () => void): void {
  fsWrite(fd, d, (err, n) => {
    if (err || n >= d.length || n <= 0) done();
    else appendAll(fd, d.subarray(n), done);
  });
}

/** binary:// logging: the logger process and the pipes it reads */
class BinaryLogger {
  private constructor(private readonly child: ChildProcess, private outW: number, private errW: number, readonly exited: Promise<void>) {}

  get stdoutPath(): string { return fdPath(this.outW); }
  get stderrPath(): string { return fdPath(this.errW); }

  static async start(uri: string, id: string, ns: string, cwd: string): Promise<BinaryLogger> {
    const u = new URL(uri);
    const bin = decodeURIComponent(u.pathname);
    const args: string[] = [];
    for (const k of new Set(u.searchParams.keys())) args.push(k, u.searchParams.get(k) ?? '');
    const [outR, outW] = sys.pipe();
    const [errR, errW] = sys.pipe();
    const [readyR, readyW] = sys.pipe();
    let child: ChildProcess;
    try {
      child = spawn(bin, args, {
        cwd, env: { CONTAINER_ID: id, CONTAINER_NAMESPACE: ns },
        stdio: ['ignore', 'ignore', 'ignore', outR, errR, readyW], detached: false,
      });
    } finally {
      for (const fd of [outR, errR, readyW]) sys.close(fd);
    }
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    const ready = new net.Socket({ fd: readyR, readable: true, writable: false });
    try {
      await new Promise<void>((resolve, reject) => {
        child.once('error', (e) => reject(new SporeError(Code.UNKNOWN, `failed to start binary process: ${e.message}`)));
        ready.once('data', () => resolve());
        ready.once('end', () => resolve());
        ready.once('error', () => resolve());
      });
    } catch (e) {
      sys.close(outW);
      sys.close(errW);
      throw e;
    } finally {
      ready.destroy();
    }
    return new BinaryLogger(child, outW, errW, exited);
  }

  async close(): Promise<void> {
    for (const fd of [this.outW, this.errW]) if (fd >= 0) sys.close(fd);
    this.outW = this.errW = -1;
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill('SIGTERM');
    await Promise.race([this.exited, sleep(12_000)]);
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill('SIGKILL');
      await Promise.race([this.exited, sleep(1000)]);
    }
  }
}

export interface ProcessIOOptions {
  /** CONTAINER_ID for a logging binary: the container id, or the exec id */
  id: string;
  namespace: string;
  /** the logging binary's working directory (the shim's is the bundle) */
  cwd: string;
  /** copy FIFO stdout/stderr through pipes (every process now; false: the process opens the FIFOs itself) */
  relay: boolean;
  /** where the relays' fds are parked (under a keeper) */
  custody?: ProcessCustody | null;
}

export class ProcessIO {
  private readonly relays: Relay[] = [];
  private stdinRelay: StdinRelay | null = null;
  private logger: BinaryLogger | null = null;
  private closed = false;
  /** the client's FIFOs being opened for the relays (ready()) */
  private opening: Promise<void> = Promise.resolve();
  /** pipes of relays that could not be made, closed with this ProcessIO (Relay.begin) */
  private readonly left: number[] = [];

  /** what the process itself opens: host paths, '' for /dev/null */
  readonly stdio: Stdio;

  private constructor(stdio: Stdio) {
    this.stdio = stdio;
  }

  /** Validate and prepare; the child may open `stdio` once this resolves. */
  static async open(req: StdioRequest, o: ProcessIOOptions): Promise<ProcessIO> {
    const io = new ProcessIO({ stdin: '', stdout: '', stderr: '', terminal: '' });
    const s = io.stdio;
    try {
      if (req.stdout.startsWith('binary://')) {
        io.logger = await BinaryLogger.start(req.stdout, o.id, o.namespace, o.cwd);
        s.stdout = io.logger.stdoutPath;
        s.stderr = io.logger.stderrPath;
        s.stdin = plainPath(req.stdin, 'stdin');
      } else if (req.stdout.startsWith('file://')) {
        const path = decodeURIComponent(new URL(req.stdout).pathname);
        mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
        closeSync(openSync(path, 'a', 0o644));
        // stdout and stderr share one pipe into the file: their order is kept
        const r = await Relay.create(path, 'stdout', o.custody ?? null, true);
        io.relays.push(r);
        s.stdout = s.stderr = r.childPath;
        s.stdin = plainPath(req.stdin, 'stdin');
      } else {
        // (before plainPath, whose message would offer the very URI it then refuses)
        if (req.stderr.startsWith('binary://') || req.stderr.startsWith('file://')) {
          throw new InvalidArgument('stderr: a log URI must be given as stdout (containerd sets both)');
        }
        s.stdin = plainPath(req.stdin, 'stdin');
        s.stdout = plainPath(req.stdout, 'stdout');
        s.stderr = plainPath(req.stderr, 'stderr');
        if (o.relay && !req.terminal) {
          // the pipes now (what the process is given), the FIFOs' opens (each a round trip
          // to the keeper, the three at once) while it sets up: ready() waits for them. Every
          // relay made is kept on `io` as it comes, so a failure of another closes it.
          const custody = o.custody ?? null;
          const shared = s.stderr === s.stdout;
          const opening: Promise<void>[] = [];
          if (s.stdin && isFifo(s.stdin)) {
            const b = StdinRelay.begin(s.stdin, custody, io.left);
            s.stdin = b.childPath;
            opening.push(b.relay.then((r) => { if (io.closed) r.close(); else io.stdinRelay = r; }));
          }
          for (const stream of ['stdout', 'stderr'] as const) {
            if (stream === 'stderr' && shared) continue;
            if (!s[stream] || !isFifo(s[stream])) continue;
            const b = Relay.begin(s[stream], stream, custody, false, io.left);
            s[stream] = b.childPath;
            opening.push(b.relay.then((r) => { if (io.closed) r.close(); else io.relays.push(r); }));
          }
          if (shared) s.stderr = s.stdout;
          io.opening = Promise.allSettled(opening).then((made) => {
            // (closed meanwhile: what failed after the close is closed here)
            if (io.closed) for (const fd of io.left.splice(0)) sys.close(fd);
            const failed = made.find((m): m is PromiseRejectedResult => m.status === 'rejected');
            if (failed) throw failed.reason;
          });
          io.opening.catch(() => undefined); // (ready() reports it)
        }
      }
    } catch (e) {
      await io.close(0);
      throw e;
    }
    return io;
  }

  /**
   * Resolves once every relay's destination is open (the client's FIFOs: open() gives their
   * pipes at once and opens them meanwhile); rejects with what failed, this ProcessIO closed.
   * The process must not start before: its output would have nowhere to go.
   */
  async ready(): Promise<void> {
    try {
      await this.opening;
    } catch (e) {
      await this.close(0);
      throw e;
    }
  }

  /** Resolves once the keeper holds every relay's fds: before the RPC that made them is answered. */
  parked(): Promise<void> {
    return Promise.all([...this.relays.map((r) => r.parked), this.stdinRelay?.parked]).then(() => undefined);
  }

  /** Which streams are relayed (for the task record). */
  get relayed(): RelayedStream[] {
    return [...(this.stdinRelay ? ['stdin' as const] : []), ...this.relays.map((r) => r.streamName)];
  }

  /** Take over the relays of a process an earlier spored started (their fds are in custody). */
  static adopt(streams: readonly RelayedStream[], custody: ProcessCustody): ProcessIO {
    const io = new ProcessIO({ stdin: '', stdout: '', stderr: '', terminal: '' });
    for (const st of streams) {
      if (st === 'stdin') { io.stdinRelay = StdinRelay.adopt(custody); continue; }
      const r = Relay.adopt(st, custody);
      if (r) io.relays.push(r);
    }
    return io;
  }

  /** The process has opened its stdio: spored's copies of the pipes' ends go. */
  childHasStdio(): void {
    for (const r of this.relays) r.dropWriteEnd();
    this.stdinRelay?.dropReadEnd();
  }

  /** The process is recorded: its stdin may flow now (what came before waits in the client's FIFO). */
  begin(): void {
    this.stdinRelay?.begin();
  }

  /** CloseIO of a relayed stdin (the shim closes its stdin writer); false when stdin is not relayed. */
  closeStdin(): boolean {
    if (!this.stdinRelay) return false;
    this.stdinRelay.closeStdin();
    return true;
  }

  /**
   * Delete: let the copies finish (up to graceMs, as the shim's Delete does), then end the
   * client's streams and stop a logging binary.
   */
  /**
   * Let go of this process's stdio here, leaving what the keeper holds (the client's FIFO
   * ends) with it: for an RPC left for the next spored (a Create that failed as the root seed
   * died), whose replay opens the same FIFOs again under the same keys. Released here, the
   * client saw EOF on its stdout and the replayed container's output went nowhere. What no
   * replay takes back, the next spored lets go of (Tasks.releaseStrayCustody).
   */
  abandon(): void {
    for (const r of this.relays) r.keepCustody();
    this.stdinRelay?.keepCustody();
    void this.close(0);
  }

  async close(graceMs = 2000): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const fd of this.left.splice(0)) sys.close(fd);
    this.stdinRelay?.close();
    if (this.relays.length > 0) {
      for (const r of this.relays) r.dropWriteEnd();
      if (graceMs > 0) await Promise.race([Promise.all(this.relays.map((r) => r.done)), sleep(graceMs)]);
      for (const r of this.relays) r.close();
    }
    await this.logger?.close();
  }
}
