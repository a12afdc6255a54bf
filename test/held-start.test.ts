// A created container's start pipe and status pipe held by the keeper (task/held-start.ts),
// with a custodian that keeps duplicates in this process: parked, taken back, probed, used to
// start, let go of. Real pipes and pidfd_getfd; the set-up process is played by this test.
import { fstatSync, readdirSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { ProcessCustody, type FdCustody } from '../task/custody.js';
import { HeldStart } from '../task/held-start.js';
import * as sys from '../sys/libc.js';

class DupCustody implements FdCustody {
  readonly held = new Map<string, number>();
  park(key: string, fd: number): Promise<void> {
    const dup = sys.dupFd(fd); // at once, as the keeper link's
    return Promise.resolve().then(() => { this.release(key); this.held.set(key, dup); });
  }
  open(): Promise<number> { return Promise.reject(new Error('not used')); }
  release(key: string): void { const fd = this.held.get(key); if (fd !== undefined) sys.close(fd); this.held.delete(key); }
  keys(): string[] { return [...this.held.keys()]; }
  reclaim(key: string): number | null { const fd = this.held.get(key); return fd === undefined ? null : sys.dupFd(fd); }
  heldAs(key: string): number | undefined { return this.held.get(key); }
}

const open: number[] = [];
const pipe = (): [number, number] => { const p = sys.pipe(); open.push(...p); return p; };
afterEach(() => { for (const fd of open.splice(0)) sys.close(fd); });

async function parked(): Promise<{ custody: DupCustody; startR: number; statusW: number }> {
  const custody = new DupCustody();
  const [startR, startW] = pipe();
  const [statusR, statusW] = pipe();
  const own = await HeldStart.take(process.pid, { start: startW, status: statusR }, new ProcessCustody(custody, 'ns', 'c1', ''));
  own.dropOwn(); // (this spored dies: the keeper's copies remain)
  // the seed's own ends go (its death)
  sys.close(startW); sys.close(statusR);
  open.splice(open.indexOf(startW), 1); open.splice(open.indexOf(statusR), 1);
  return { custody, startR, statusW };
}

describe('held start', () => {
  it('takes both pipes, parks them under the init\'s keys, and leaves nothing open here once its own copies go', async () => {
    const fds = (): number => readdirSync('/proc/self/fd').length;
    const n = fds();
    const { custody } = await parked();
    expect(custody.keys().sort()).toEqual(['ns/c1/init/start', 'ns/c1/init/status']);
    // this test's two remaining pipe ends and the custodian's two duplicates: no pidfd, no copy
    expect(fds() - n).toBe(4);
  });

  it("without a keeper: spored's own copies only, and the process starts through them", async () => {
    const [startR, startW] = pipe();
    const [statusR, statusW] = pipe();
    const held = await HeldStart.take(process.pid, { start: startW, status: statusR }, null);
    // the seed's copies go (it died): the process still waits, on spored's
    sys.close(startW); sys.close(statusR);
    open.splice(open.indexOf(startW), 1); open.splice(open.indexOf(statusR), 1);
    expect(held.waiting()).toBe(true);
    const begun = held.begin();
    expect([...sys.read(startR, 1)]).toEqual([1]);
    sys.close(statusW); open.splice(open.indexOf(statusW), 1);
    expect(await begun).toBeNull();
    held.release();
  });

  it('a waiting process is started with one byte, and Start ends at the status pipe\'s EOF (execve)', async () => {
    const { custody, startR, statusW } = await parked();
    const held = HeldStart.reclaim(new ProcessCustody(custody, 'ns', 'c1', ''));
    expect(held).not.toBeNull();
    expect(held!.waiting()).toBe(true);
    let ended = false;
    const begun = held!.begin().then((r) => { ended = true; return r; });
    expect([...sys.read(startR, 1)]).toEqual([1]);
    await new Promise((r) => setTimeout(r, 30));
    expect(ended).toBe(false); // not before the exec
    sys.close(statusW); open.splice(open.indexOf(statusW), 1);
    expect(await begun).toBeNull();
    held!.release();
    expect(custody.keys()).toEqual([]);
  });

  it('what the process reports failing after the byte is returned', async () => {
    const { custody, startR, statusW } = await parked();
    const held = HeldStart.reclaim(new ProcessCustody(custody, 'ns', 'c1', ''))!;
    const begun = held.begin();
    sys.read(startR, 1);
    sys.write(statusW, Buffer.from(JSON.stringify({ s: 'error', phase: 'exec', message: 'no such file' }) + '\n'));
    sys.close(statusW); open.splice(open.indexOf(statusW), 1);
    expect(await begun).toBe('exec: no such file');
    held.release();
  });

  it('a process that no longer reads the start pipe (started, or gone) is not waiting, and cannot be started', async () => {
    const { custody, startR } = await parked();
    sys.close(startR); open.splice(open.indexOf(startR), 1);
    const held = HeldStart.reclaim(new ProcessCustody(custody, 'ns', 'c1', ''))!;
    expect(held.waiting()).toBe(false);
    await expect(held.begin()).rejects.toThrow(/EPIPE/);
    held.release();
    expect(custody.keys()).toEqual([]);
  });

  it('nothing to take back unless both pipes are held', async () => {
    const custody = new DupCustody();
    const [, w] = pipe();
    await custody.park('ns/c1/init/start', w);
    expect(HeldStart.reclaim(new ProcessCustody(custody, 'ns', 'c1', ''))).toBeNull();
    expect(HeldStart.reclaim(new ProcessCustody(custody, 'ns', 'other', ''))).toBeNull();
    custody.release('ns/c1/init/start');
  });

  it('atExec: answered at the exec line, before the status pipe ends; a later failure goes to `late`; without it, only at the end', async () => {
    const [startR, startW] = pipe();
    const [statusR, statusW] = pipe();
    const held = await HeldStart.own({ start: sys.dupFd(startW), status: sys.dupFd(statusR) }, null);
    const late: string[] = [];
    let answered = false;
    const begun = held.begin({ atExec: true, late: (f) => late.push(f) }).then((r) => { answered = true; return r; });
    expect([...sys.read(startR, 1)]).toEqual([1]);
    sys.write(statusW, Buffer.from(`${JSON.stringify({ s: 'exec' })}\n`));
    // the status pipe is still open (the execve has not replaced the process yet): answered all the same
    expect(await begun).toBeNull();
    expect(answered).toBe(true);
    sys.write(statusW, Buffer.from(`${JSON.stringify({ s: 'error', phase: 'exec', message: 'execve(/x): EACCES' })}\n`));
    sys.close(statusW); open.splice(open.indexOf(statusW), 1);
    await new Promise((r) => setTimeout(r, 50));
    expect(late).toEqual(['exec: execve(/x): EACCES']);

    // without atExec the exec line does not answer: only the pipe's end does
    const [startR2, startW2] = pipe();
    const [statusR2, statusW2] = pipe();
    const held2 = await HeldStart.own({ start: sys.dupFd(startW2), status: sys.dupFd(statusR2) }, null);
    let done2 = false;
    const begun2 = held2.begin().then((r) => { done2 = true; return r; });
    expect([...sys.read(startR2, 1)]).toEqual([1]);
    sys.write(statusW2, Buffer.from(`${JSON.stringify({ s: 'exec' })}\n`));
    await new Promise((r) => setTimeout(r, 50));
    expect(done2).toBe(false);
    sys.close(statusW2); open.splice(open.indexOf(statusW2), 1);
    expect(await begun2).toBeNull();
  });

  it('take refuses fds that are no longer the named pipes (inode check) and leaves nothing open', async () => {
    const [, startW] = pipe();
    const [statusR] = pipe();
    const ino = (fd: number): number => fstatSync(fd).ino;
    const before = readdirSync('/proc/self/fd').length;
    // the numbers name other files now: the inodes given are another pipe's
    const [otherR, otherW] = pipe();
    await expect(HeldStart.take(process.pid, { start: startW, status: statusR, ino: { start: ino(otherW), status: ino(otherR) } }, null)).rejects.toThrow(/no longer the sandbox's pipes/);
    expect(readdirSync('/proc/self/fd').length).toBe(before + 2); // only the other pipe's two ends
    // the right inodes: taken
    const held = await HeldStart.take(process.pid, { start: startW, status: statusR, ino: { start: ino(startW), status: ino(statusR) } }, null);
    expect(held.waiting()).toBe(true);
    held.release();
  });
});
