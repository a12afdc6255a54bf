// A pty for terminal=true processes. spored owns the master; the child opens the slave
// by path before pivot_root and makes it its controlling terminal. Output is copied
// master -> stdout FIFO and input stdin FIFO -> master, all on the event loop (epoll),
// never on the libuv threadpool, so any number of consoles can be open.
import net from 'node:net';
import tty from 'node:tty';
import * as sys from '../sys/libc.js';

function fifoSocket(path: string): net.Socket {
  // O_RDWR never blocks on a FIFO and never sees a spurious EOF before the client has
  // opened its end; the client's close is signalled by CloseIO / process exit instead.
  const fd = sys.open(path, sys.O.RDWR | sys.O.NONBLOCK | sys.O.CLOEXEC);
  return new net.Socket({ fd, readable: true, writable: true });
}

export class Console {
  private readonly out: tty.ReadStream;
  private readonly inTo: tty.WriteStream;
  private readonly stdin: net.Socket | null;
  private readonly stdout: net.Socket | null;
  private holdSlave: number;
  private closed = false;

  private constructor(readonly master: number, readonly slave: string, stdinPath: string, stdoutPath: string) {
    // Hold one slave fd until the process has its own, so reads on the master do not
    // fail with EIO before the container opens the terminal.
    this.holdSlave = sys.open(slave, sys.O.RDWR | sys.O.NOCTTY | sys.O.CLOEXEC);
    this.out = new tty.ReadStream(master);
    this.inTo = new tty.WriteStream(sys.dupFd(master));
    this.stdout = stdoutPath ? fifoSocket(stdoutPath) : null;
    this.stdin = stdinPath ? fifoSocket(stdinPath) : null;
    this.out.on('data', (chunk: Buffer) => this.stdout?.write(chunk));
    this.out.on('error', () => this.finish()); // EIO: every slave fd is closed
    this.out.on('end', () => this.finish());
    this.stdin?.on('data', (chunk: Buffer) => this.inTo.write(chunk));
    this.stdin?.on('error', () => undefined);
    this.inTo.on('error', () => undefined);
    this.stdout?.on('error', () => undefined);
  }

  static open(stdinPath: string, stdoutPath: string, size?: { height: number; width: number }): Console {
    const { master, slave } = sys.openPty();
    const c = new Console(master, slave, stdinPath, stdoutPath);
    if (size) c.resize(size.width, size.height);
    return c;
  }

  /** The process has the slave open now; let EIO mark its end. */
  attached(): void {
    if (this.holdSlave >= 0) { sys.close(this.holdSlave); this.holdSlave = -1; }
  }

  resize(width: number, height: number): void {
    sys.setWinsize(this.master, height, width);
  }

  closeStdin(): void {
    this.stdin?.destroy();
  }

  /** After exit: output still in the master is read until EIO, then everything closes. */
  drainAndClose(): void {
    this.attached();
    setTimeout(() => this.close(), 2000).unref();
  }

  private finish(): void {
    if (this.stdout) this.stdout.end(() => this.close());
    else this.close();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.attached();
    this.out.destroy();
    this.inTo.destroy();
    this.stdin?.destroy();
    this.stdout?.destroy();
  }
}
