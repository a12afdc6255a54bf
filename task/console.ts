// A pty for terminal=true processes. spored owns the master. As runc does, the process opens
// the pty on the container's own devpts (/dev/ptmx after its mounts; spored takes the master
// with pidfd_getfd before Start), so /dev/pts in the container holds its terminal and `tty`
// names it; a spec without a devpts mount gets a host pty whose slave it opens by path. Output is copied
// master -> stdout FIFO and input stdin FIFO -> master, all on the event loop (epoll),
// never on the libuv threadpool, so any number of consoles can be open. Where the kernel
// splices a pty (Linux 6.5 and later; probed once) the copies are pumps (pump.ts): no byte
// waits in spored's memory, so a client that is not reading at a spored crash loses none
// (a helper measured 14-26 KB lost per kill with the streams, which older kernels still use).
//
// Exit: containerd's clients close their end of the stdout FIFO as soon as they learn of the
// exit (ctr run: task.Delete -> cio.Close), so whatever is still in the pty then is lost. The
// task manager therefore publishes an exit only after drainForExit(): the master is read until
// nothing is left (poll flushes the tty layer's pending input first), that output is handed to
// the FIFO, and the console shuts down as the shim's ShutdownConsole does (a background process
// still holding the slave is not waited for).
//
// Under a keeper the master and both FIFO ends are parked with it (task/custody.ts), so a
// restarted spored adopts the console (adopt()) and the process never sees a hangup.
import { readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import tty from 'node:tty';
import * as sys from '../sys/libc.js';
import type { ProcessCustody } from './custody.js';
import { openFifo, socketOn } from './stdio.js';
import { Pump } from './pump.js';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Whether this kernel splices to and from a pty master (tty splice_read came in Linux 6.5;
 * before, a terminal is copied through the loop's streams, which hold a chunk in memory
 * while the client is not reading). Probed once: a pty, a byte through it, splice.
 */
let ptySplice: boolean | null = null;
function ptySpliceWorks(): boolean {
  if (ptySplice !== null) return ptySplice;
  let fds: number[] = [];
  try {
    const { master, slave } = sys.openPty();
    const s = sys.open(slave, sys.O.RDWR | sys.O.NOCTTY | sys.O.CLOEXEC);
    const [r, w] = sys.pipe(sys.O.CLOEXEC | sys.O.NONBLOCK);
    fds = [master, s, r, w];
    sys.setNonblock(master, true);
    sys.write(s, Buffer.from('x'));
    for (let i = 0; i < 100 && !sys.pollIn(master, 10); i++) { /* the tty's flip buffer */ }
    ptySplice = sys.splice(master, w, 16) === 1 && sys.splice(r, master, 16) === 1; // out of the master, and back in
  } catch {
    ptySplice = false;
  } finally {
    for (const fd of fds) { try { sys.close(fd); } catch { /* closed */ } }
  }
  return ptySplice;
}

/** Tests run both copy modes on one kernel: true / false forces one, null probes again. */
export function forcePtySpliceForTests(mode: boolean | null): void {
  ptySplice = mode;
}

export class Console {
  /** stream mode (no pty splice): the master's reader and writer, the FIFO ends as sockets */
  private readonly out: tty.ReadStream | null = null;
  private readonly inTo: tty.WriteStream | null = null;
  private readonly stdin: net.Socket | null = null;
  private readonly stdout: net.Socket | null = null;
  /** splice mode: master -> stdout FIFO, stdin FIFO -> a duplicate of the master (no byte in spored's memory) */
  private readonly outPump: Pump | null = null;
  private inPump: Pump | null = null;
  private readonly inMaster: number = -1;
  private holdSlave: number;
  private closed = false;
  private finishing = false;

  private constructor(readonly master: number, readonly slave: string, private stdinFd: number | null, private stdoutFd: number | null, private readonly custody: ProcessCustody | null) {
    // Hold one slave fd until the process has its own, so reads on the master do not
    // fail with EIO before the container opens the terminal (none when adopting: it has it).
    this.holdSlave = slave ? sys.open(slave, sys.O.RDWR | sys.O.NOCTTY | sys.O.CLOEXEC) : -1;
    if (ptySpliceWorks()) {
      // EIO (every slave fd closed, nothing left) or an error ends the output side
      if (stdoutFd !== null) { this.outPump = new Pump(master, stdoutFd, () => this.finish()); this.outPump.start(); }
      if (stdinFd !== null) {
        this.inMaster = sys.dupFd(master);
        this.inPump = new Pump(stdinFd, this.inMaster, () => this.inPump?.stop());
        this.inPump.start();
      }
      return;
    }
    this.out = new tty.ReadStream(master);
    this.inTo = new tty.WriteStream(sys.dupFd(master));
    this.stdout = stdoutFd !== null ? socketOn(stdoutFd, 'out') : null;
    this.stdin = stdinFd !== null ? socketOn(stdinFd, 'in') : null;
    // backpressure both ways: a client that stops reading (or a container that stops reading
    // its terminal) makes the other side wait, instead of spored buffering without limit
    const out = this.out;
    const inTo = this.inTo;
    out.on('data', (chunk: Buffer) => {
      const o = this.stdout;
      if (o && !o.write(chunk)) { out.pause(); o.once('drain', () => { if (!out.destroyed) out.resume(); }); }
    });
    out.on('error', () => this.finish()); // EIO: every slave fd is closed
    out.on('end', () => this.finish());
    this.stdin?.on('data', (chunk: Buffer) => {
      const i = this.stdin;
      if (i && !inTo.write(chunk)) { i.pause(); inTo.once('drain', () => { if (!i.destroyed) i.resume(); }); }
    });
    this.stdin?.on('error', () => undefined);
  }

  /** A pty on the host's /dev/ptmx; the process opens `slave` by path (a spec without its own devpts). */
  static async open(stdinPath: string, stdoutPath: string, size?: { height: number; width: number }, custody: ProcessCustody | null = null): Promise<Console> {
    const { master, slave } = sys.openPty();
    const c = await Console.around(master, slave, stdinPath, stdoutPath, custody);
    if (size) c.resize(size.width, size.height);
    return c;
  }

  /**
   * The master of a pty the process opened on its own devpts (protocol.ts CONSOLE_INSIDE),
   * taken from it with pidfd_getfd; the process holds the slave already, sized by itself.
   */
  static ofMaster(master: number, stdinPath: string, stdoutPath: string, custody: ProcessCustody | null = null): Promise<Console> {
    sys.setNonblock(master, true);
    return Console.around(master, '', stdinPath, stdoutPath, custody);
  }

  private static async around(master: number, slave: string, stdinPath: string, stdoutPath: string, custody: ProcessCustody | null): Promise<Console> {
    // the client's FIFOs opened by the keeper, held from the start (as a relay's): opened
    // here and parked after, a kill -9 in between left the client's reader at EOF
    const openEnd = (role: string, path: string): Promise<number | null> =>
      (!path ? Promise.resolve(null) : custody ? custody.open(role, path, sys.O.RDWR | sys.O.NONBLOCK) : Promise.resolve(openFifo(path)));
    const [out, inn] = await Promise.allSettled([openEnd('stdout', stdoutPath), openEnd('stdin', stdinPath)]);
    const stdoutFd = out.status === 'fulfilled' ? out.value : null;
    const stdinFd = inn.status === 'fulfilled' ? inn.value : null;
    const failed = [out, inn].find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) {
      // nothing owns the master yet: it (and a FIFO already opened) would leak
      for (const fd of [master, stdoutFd, stdinFd]) if (fd !== null) { try { sys.close(fd); } catch { /* closed */ } }
      custody?.release('stdout');
      custody?.release('stdin');
      throw failed.reason;
    }
    const parks: Promise<void>[] = [];
    if (custody) parks.push(custody.park('master', master));
    const con = new Console(master, slave, stdinFd, stdoutFd, custody);
    con.parked = Promise.all(parks).then(() => undefined);
    return con;
  }

  /** resolves once the keeper holds this console's fds (at once without custody) */
  parked: Promise<void> = Promise.resolve();

  /**
   * The pty master a sandbox opened on its own devpts and holds (close-on-exec, at fd 100 or
   * above: container-init's openConsole), taken with pidfd_getfd: for a sandbox an earlier
   * spored set up but died before it took the master (its replayed Start would otherwise run
   * the process on a terminal nobody holds: SIGHUP). Null when there is none. A master is
   * told by its fdinfo's `tty-index` line (ptmx's show_fdinfo).
   */
  static async takeFromProcess(pid: number, stdinPath: string, stdoutPath: string, custody: ProcessCustody | null = null): Promise<Console | null> {
    let pidfd = -1;
    try {
      pidfd = sys.pidfdOpen(pid);
      for (const name of readdirSync(`/proc/${pid}/fd`)) {
        const fd = Number(name);
        if (fd < 100) continue;
        let info = '';
        try { info = readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'); } catch { continue; }
        if (!/^tty-index:/m.test(info)) continue;
        const master = sys.pidfdGetfd(pidfd, fd);
        sys.close(pidfd);
        pidfd = -1;
        return await Console.ofMaster(master, stdinPath, stdoutPath, custody);
      }
    } catch { /* the sandbox is gone */ } finally {
      if (pidfd >= 0) sys.close(pidfd);
    }
    return null;
  }

  /**
   * Take over a console an earlier spored opened (its fds are in custody); null when the
   * master is not there (no keeper then, or the console had already shut down).
   */
  static adopt(custody: ProcessCustody): Console | null {
    const master = custody.reclaim('master');
    if (master === null) return null;
    sys.setNonblock(master, true);
    return new Console(master, '', custody.reclaim('stdin'), custody.reclaim('stdout'), custody);
  }

  /** The process has the slave open now; let EIO mark its end. */
  attached(): void {
    if (this.holdSlave >= 0) { sys.close(this.holdSlave); this.holdSlave = -1; }
  }

  /** A console that already shut down ignores resizes (the shim's does too). */
  resize(width: number, height: number): void {
    // the read stream closes the master itself at EIO (every slave fd closed)
    if (this.closed || this.out?.destroyed) return;
    sys.setWinsize(this.master, height, width);
  }

  closeStdin(): void {
    if (this.inPump) {
      this.inPump.stop();
      this.inPump = null;
      if (this.stdinFd !== null) { sys.close(this.stdinFd); this.stdinFd = null; }
    }
    this.stdin?.destroy();
    this.custody?.release('stdin');
  }

  /**
   * The process exited: copy what it left in the pty to stdout, wait until that is in the
   * FIFO (at most flushMs while the client does not read), then shut the console down.
   */
  async drainForExit(flushMs = 1000): Promise<void> {
    if (this.closed) return;
    this.attached();
    if (this.outPump) {
      // poll() flushes the tty's pending input; the pump moves what the FIFO takes, and ends
      // at EIO once nothing is left; bytes the client has not read yet stay in the FIFO
      const until = performance.now() + flushMs;
      while (!this.outPump.ended && performance.now() < until) {
        if (sys.pollIn(this.master, 0)) this.outPump.drain();
        if (!this.outPump.ended) await sleep(2);
      }
      while (this.stdoutFd !== null && performance.now() < until) {
        let n = 0;
        try { n = sys.pendingBytes(this.stdoutFd); } catch { n = 0; }
        if (n === 0) break;
        await sleep(5);
      }
      this.close();
      return;
    }
    // Once the read stream is destroyed the master fd is closed (and its number may be reused):
    // it read everything up to the EIO that ended it.
    if (this.out && !this.out.destroyed) try {
      // poll() flushes the tty's pending input; readable or hung up means read() returns at once
      for (let i = 0; i < 4096 && sys.pollIn(this.master, 0); i++) {
        const chunk = sys.read(this.master, 65536);
        if (chunk.length === 0) break;
        this.stdout?.write(chunk);
      }
    } catch {
      /* EIO: no slave left and nothing more to read */
    }
    const out = this.stdout;
    if (out && !out.destroyed && out.writableLength > 0) {
      await Promise.race([new Promise<void>((r) => { out.once('drain', () => r()); out.once('close', () => r()); }), sleep(flushMs)]);
    }
    this.finish();
  }

  private finish(): void {
    if (this.closed || this.finishing) return;
    this.finishing = true;
    if (this.stdout && !this.stdout.destroyed) this.stdout.end(() => this.close());
    else this.close();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.attached();
    if (this.outPump || this.inMaster >= 0 || (!this.out && !this.inTo)) {
      this.outPump?.stop();
      this.inPump?.stop();
      for (const fd of [this.master, this.inMaster, this.stdinFd ?? -1, this.stdoutFd ?? -1]) if (fd >= 0) { try { sys.close(fd); } catch { /* closed */ } }
      this.stdinFd = this.stdoutFd = null;
    }
    this.out?.destroy();
    this.inTo?.destroy();
    this.stdin?.destroy();
    this.stdout?.destroy();
    if (this.custody) for (const role of ['master', 'stdin', 'stdout']) this.custody.release(role);
  }
}
