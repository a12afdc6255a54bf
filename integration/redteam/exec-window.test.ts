// A container's root against the processes spore forks into its pid namespace before they
// exec: an exec child (and, with a shared pid namespace, another container's init) is a
// fork of the root seed, holding the seed's memory (every container's spec) and fds until
// its execve. The attacker is the container's init: it watches /proc for new pids and spins
// on PTRACE_SEIZE (or stops each new process and reads its /proc); then `ctr task exec` runs
// a few times, or containers join its pid namespace. Safe outcome: no process is ever
// seized before it became the exec'd program (runc's init is the same: non-dumpable).
// Needs root, containerd and a C compiler (the attacker is a static binary in the rootfs).
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { containerdSkipReason, rootfs, startContainerd, which, type Containerd } from '../harness.js';

const skip = containerdSkipReason() ?? (which('gcc') ? undefined : 'no gcc to build the attacker');
if (skip) console.warn(`[exec-window.test] skipped: ${skip}`);

// For each new pid: PTRACE_SEIZE until it works or the pid is gone. A seized process is
// reported with what it was running (/proc/<pid>/exe) and killed, so it never goes on. With
// "steal" (and CAP_SYS_PTRACE, which non-dumpable does not stop), it first takes every fd
// the seized process has (pidfd_getfd) and reports what each is.
const SEIZER = `
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
static char seen[1 << 22];
int main(int argc, char **argv) {
  int steal = argc > 1 && strcmp(argv[1], "steal") == 0;
  int self = getpid();
  FILE *log = fopen("/seized.log", "w");
  setvbuf(log, NULL, _IONBF, 0);
  fprintf(log, "watching\\n");
  for (;;) {
    DIR *d = opendir("/proc");
    struct dirent *e;
    while ((e = readdir(d))) {
      int p = atoi(e->d_name);
      if (p <= 1 || p == self || p >= (1 << 22) || seen[p]) continue;
      seen[p] = 1;
      for (long tries = 0; tries < 20000000; tries++) {
        if (ptrace(PTRACE_SEIZE, p, 0, 0) == 0) {
          // stopped, what it runs cannot change while it is read; a process that ends first
          // (an exec'd command that was done) is reported as such
          char path[64], exe[256] = {0};
          int st;
          ptrace(PTRACE_INTERRUPT, p, 0, 0);
          if (waitpid(p, &st, __WALL) == p && WIFSTOPPED(st)) {
            snprintf(path, sizeof path, "/proc/%d/exe", p);
            if (readlink(path, exe, sizeof exe - 1) < 0) strcpy(exe, "?");
            fprintf(log, "seized %d %s\\n", p, exe);
            int pfd = steal ? syscall(434 /* pidfd_open */, p, 0) : -1;
            for (int fd = 0; pfd >= 0 && fd < 1024; fd++) {
              int got = syscall(438 /* pidfd_getfd */, pfd, fd, 0);
              if (got < 0) continue;
              char lp[64], link[256] = {0};
              snprintf(lp, sizeof lp, "/proc/self/fd/%d", got);
              if (readlink(lp, link, sizeof link - 1) < 0) strcpy(link, "?");
              // a path: the container's own file (the same inode under that path in this root) or not
              struct stat a, b;
              const char *whose = link[0] != '/' ? "" : (fstat(got, &a) == 0 && stat(link, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino) ? " own" : " foreign";
              fprintf(log, "took %d %d %s %s%s\\n", p, fd, exe, link, whose);
              close(got);
            }
            if (pfd >= 0) close(pfd);
            kill(p, SIGKILL);
            waitpid(p, &st, __WALL); // a tracee's exit goes to its tracer first: collect it, so its parent hears of it
          } else {
            fprintf(log, "seized %d ended\\n", p);
          }
          break;
        }
        if (errno == ESRCH) break;
      }
    }
    closedir(d);
  }
}
`;

// For each new pid: SIGSTOP it, compare a file of its /proc with ours (argv[1], such as
// mountinfo: a process still in another mount namespace, the host's, shows another table
// through /proc/<pid>/mountinfo, which needs no ptrace access; or net/dev, another network
// namespace's devices), SIGCONT it.
const STOPPER = `
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
static char seen[1 << 22];
static long lines(const char *path) {
  FILE *f = fopen(path, "r"); if (!f) return -1;
  long n = 0; int ch; while ((ch = fgetc(f)) != EOF) if (ch == '\\n') n++;
  fclose(f); return n;
}
int main(int argc, char **argv) {
  int self = getpid();
  const char *what = argc > 1 ? argv[1] : "mountinfo";
  char mine[64];
  FILE *log = fopen("/stopped.log", "w");
  setvbuf(log, NULL, _IONBF, 0);
  snprintf(mine, sizeof mine, "/proc/self/%s", what);
  long own = lines(mine);
  fprintf(log, "watching %ld\\n", own);
  for (;;) {
    DIR *d = opendir("/proc");
    struct dirent *e;
    while ((e = readdir(d))) {
      int p = atoi(e->d_name);
      if (p <= 1 || p == self || p >= (1 << 22) || seen[p]) continue;
      seen[p] = 1;
      if (kill(p, SIGSTOP) != 0) continue;
      char path[64];
      snprintf(path, sizeof path, "/proc/%d/%s", p, what);
      long theirs = lines(path);
      // -1: it ended between the stop and the read (a short exec): nothing seen
      fprintf(log, "%s %d %ld\\n", theirs < 0 ? "gone" : theirs == own ? "same" : "OTHER", p, theirs);
      kill(p, SIGCONT);
    }
    closedir(d);
  }
}
`;

describe.skipIf(skip !== undefined)('a container\'s root cannot seize what spore forks into it before execve', () => {
  let c: Containerd;
  let dir: string;
  let rfs: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'spore-exec-window-'));
    rfs = join(dir, 'rootfs');
    cpSync(rootfs('busybox'), rfs, { recursive: true, verbatimSymlinks: true });
    writeFileSync(join(dir, 'seizer.c'), SEIZER);
    execFileSync('gcc', ['-static', '-O1', '-o', join(rfs, 'seizer'), join(dir, 'seizer.c')]);
    writeFileSync(join(dir, 'stopper.c'), STOPPER);
    execFileSync('gcc', ['-static', '-O1', '-o', join(rfs, 'stopper'), join(dir, 'stopper.c')]);
    c = await startContainerd();
  }, 120_000);

  afterAll(async () => {
    await c?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  it('ctr task exec, 12 times, under a container init spinning on PTRACE_SEIZE', async () => {
    const r = await c.ctr(['run', '-d', '--runtime', 'io.containerd.spore.v2', '--rootfs', rfs, 'victim', '/seizer'], { timeoutMs: 30_000 });
    expect(r.code, r.stderr).toBe(0);
    const log = join(rfs, 'seized.log');
    for (let i = 0; i < 50 && !existsSync(log); i++) await new Promise((res) => setTimeout(res, 100));
    const results: number[] = [];
    for (let i = 0; i < 12; i++) {
      const e = await c.ctr(['task', 'exec', '--exec-id', `x${i}`, 'victim', '/bin/sh', '-c', 'exit 0'], { timeoutMs: 30_000 });
      results.push(e.code);
    }
    const seized = readFileSync(log, 'utf8').split('\n').filter((l) => l.startsWith('seized'));
    // the attacker really attacks: the exec'd /bin/true (busybox), being the container's own, may be seized
    // (then its exec fails with a signal); a fork of the seed (node) must never be
    expect(seized.filter((l) => !/ (\/bin\/busybox|ended)$/.test(l)), seized.join('\n')).toEqual([]);
    console.log(`[exec-window] ${results.filter((x) => x === 0).length} of 12 execs ran; seized after exec: ${seized.length}`);
    await c.ctr(['task', 'kill', '-s', 'KILL', 'victim']);
  }, 120_000);

  // A third attacker, with CAP_SYS_PTRACE (granted by --cap-add; non-dumpable does not stop
  // it), seized an exec child before its execve and took its fds: the seed's sockets,
  // spored's log and idle container shells' plan pipes, and ran a plan of its own as host
  // root. The child now holds only its own start and status pipes; the rest is /dev/null.
  // (With CAP_SYS_PTRACE a container can still take over such a child before it drops its
  // capabilities, as it can runc's init: README's security model says so.)
  it('with CAP_SYS_PTRACE: a seized exec child holds nothing of the seed (only /dev/null, its own stdio, its two pipes and the memfd of its own plan)', async () => {
    const r = await c.ctr(['run', '-d', '--runtime', 'io.containerd.spore.v2', '--cap-add', 'CAP_SYS_PTRACE', '--rootfs', rfs, 'thief', '/seizer', 'steal'], { timeoutMs: 30_000 });
    expect(r.code, r.stderr).toBe(0);
    const log = join(rfs, 'seized.log');
    for (let i = 0; i < 50 && !existsSync(log); i++) await new Promise((res) => setTimeout(res, 100));
    for (let i = 0; i < 6; i++) await c.ctr(['task', 'exec', '--exec-id', `t${i}`, 'thief', '/bin/sh', '-c', 'exit 0'], { timeoutMs: 30_000 });
    const lines = readFileSync(log, 'utf8').split('\n');
    const took = lines.filter((l) => l.startsWith('took ') && / \/usr\/bin\/node /.test(l)).map((l) => l.split(' '));
    expect(lines.filter((l) => / \/usr\/bin\/node$/.test(l)).length, `the attacker seized a fork of the seed:\n${lines.join('\n')}`).toBeGreaterThan(0);
    // /dev/null, pipes (counted below), and files of the container's own (its /etc/passwd, read
    // for HOME, or its root, open for a moment): anything else came from the seed
    // (and spored's memfd with this exec's own args and env, where its set-up's failure text goes: protocol.ts sealedBody)
    const bad = took.filter(([, , , , link, whose]) => link !== '/dev/null' && !/^pipe:\[\d+\]$/.test(link ?? '') && !/^\/memfd:spore-process( \(deleted\))?$/.test(link ?? '') && whose !== 'own');
    expect(bad.map((t) => t.join(' ')), lines.join('\n')).toEqual([]);
    // per seized process (a "seized" line starts each; pids are reused in the container): its
    // start and status pipes at most, besides its own stdio (parked at 100 and above until
    // execve) and a pipe it made itself, both ends (libuv's signal lock pipe, made anew by its
    // fork handler in every forked child)
    const pipesOf: string[][] = [];
    for (const l of lines) {
      if (l.startsWith('seized ')) pipesOf.push([]);
      // a fork of the seed's (the exec'd program's own stdio pipes are its own: 0, 1, 2)
      else if (l.startsWith('took ') && / \/usr\/bin\/node pipe:/.test(l) && Number(l.split(' ')[2]) < 100) pipesOf.at(-1)?.push(l);
    }
    for (const held of pipesOf) {
      const ends = (l: string): number => held.filter((x) => x.split(' ')[4] === l.split(' ')[4]).length;
      const seeds = held.filter((l) => ends(l) === 1);
      expect(seeds.length, held.join('\n')).toBeLessThanOrEqual(2);
    }
    await c.ctr(['task', 'kill', '-s', 'KILL', 'thief']);
  }, 120_000);

  it('an exec is never seen in the container before it is in the container\'s mount namespace (stopped, its mountinfo is the container\'s)', async () => {
    const r = await c.ctr(['run', '-d', '--runtime', 'io.containerd.spore.v2', '--rootfs', rfs, 'stopper', '/stopper'], { timeoutMs: 30_000 });
    expect(r.code, r.stderr).toBe(0);
    const log = join(rfs, 'stopped.log');
    for (let i = 0; i < 50 && !existsSync(log); i++) await new Promise((res) => setTimeout(res, 100));
    for (let i = 0; i < 8; i++) await c.ctr(['task', 'exec', '--exec-id', `s${i}`, 'stopper', '/bin/sh', '-c', 'exit 0'], { timeoutMs: 30_000 });
    const seen = readFileSync(log, 'utf8').split('\n').filter((l) => /^(same|OTHER|gone) /.test(l));
    expect(seen.length, 'the stopper saw the execs').toBeGreaterThan(0);
    expect(seen.filter((l) => l.startsWith('OTHER')), seen.join('\n')).toEqual([]);
    await c.ctr(['task', 'kill', '-s', 'KILL', 'stopper']);
  }, 120_000);

  // A container whose init joins another's pid namespace (a pod's shared one) is seen there
  // from its fork on. Forked into it by the seed, it sat in the host's network namespace
  // (and cgroup, and mounts) until its set-up got there: the first container could stop it
  // and read the host's sockets and devices through /proc/<pid>/net. It now enters the pid
  // namespace last (as runc's nsexec does); its mount table is a copy of the host's until
  // pivot_root, as runc's init's is.
  it('an init joining a shared pid namespace is never seen there before it is in its own network namespace', async () => {
    let r = await c.ctr(['run', '-d', '--runtime', 'io.containerd.spore.v2', '--rootfs', rfs, 'podstop', '/stopper', 'net/dev'], { timeoutMs: 30_000 });
    expect(r.code, r.stderr).toBe(0);
    const log = join(rfs, 'stopped.log');
    for (let i = 0; i < 50 && !existsSync(log); i++) await new Promise((res) => setTimeout(res, 100));
    const pa = (await c.ctr(['task', 'ls'])).stdout.split('\n').find((l) => l.startsWith('podstop '))?.split(/\s+/)[1];
    const other = join(dir, 'rootfs-pod');
    cpSync(rootfs('busybox'), other, { recursive: true, verbatimSymlinks: true });
    for (let i = 0; i < 4; i++) {
      r = await c.ctr(['run', '--rm', '--runtime', 'io.containerd.spore.v2', '--with-ns', `pid:/proc/${pa}/ns/pid`, '--rootfs', other, `pod${i}`, '/bin/true'], { timeoutMs: 30_000 });
      expect(r.code, r.stderr).toBe(0);
    }
    const seen = readFileSync(log, 'utf8').split('\n').filter((l) => /^(same|OTHER|gone) /.test(l));
    expect(seen.length, 'the stopper saw the inits').toBeGreaterThan(0);
    expect(seen.filter((l) => l.startsWith('OTHER')), seen.join('\n')).toEqual([]);
    await c.ctr(['task', 'kill', '-s', 'KILL', 'podstop']);
  }, 120_000);

  // The container's /etc/passwd is read as root for HOME (as runc's init does): a link to
  // /dev/zero grew the process without bound (read whole), a FIFO hung its set-up. Only a
  // regular file in the container's root, at most 16 MiB, is read; otherwise HOME is "/".
  it('an /etc/passwd that is /dev/zero or a FIFO: the process starts at once with HOME=/', async () => {
    for (const kind of ['zero', 'fifo']) {
      const r2 = join(dir, `rootfs-${kind}`);
      cpSync(rootfs('busybox'), r2, { recursive: true, verbatimSymlinks: true });
      rmSync(join(r2, 'etc/passwd'), { force: true });
      if (kind === 'zero') symlinkSync('/dev/zero', join(r2, 'etc/passwd'));
      else execFileSync('mkfifo', [join(r2, 'etc/passwd')]);
      const t0 = Date.now();
      const r = await c.ctr(['run', '--rm', '--runtime', 'io.containerd.spore.v2', '--rootfs', r2, `pw-${kind}`, '/bin/sh', '-c', 'echo "home=$HOME"'], { timeoutMs: 20_000 });
      expect({ code: r.code, out: r.stdout }, `${kind}: ${r.stderr}`).toEqual({ code: 0, out: 'home=/\n' });
      expect(Date.now() - t0, kind).toBeLessThan(10_000);
    }
  }, 60_000);

  // The escape a second attacker found: a working directory that is a symlink to
  // /proc/<pid>/root of a process whose root is not this container's (there, an exec child
  // it had stopped before it joined the mount namespace: the host's root; here, a
  // container sharing its pid namespace). The chdir runs with every capability; it must not
  // follow the magic link.
  it('an exec\'s working directory cannot lead through /proc/<pid>/root into another root', async () => {
    const other = join(dir, 'rootfs-b');
    cpSync(rootfs('busybox'), other, { recursive: true, verbatimSymlinks: true });
    writeFileSync(join(other, 'marker-b'), 'root of B\n');
    let r = await c.ctr(['run', '-d', '--runtime', 'io.containerd.spore.v2', '--rootfs', rfs, 'pa', '/bin/sleep', '1000'], { timeoutMs: 30_000 });
    expect(r.code, r.stderr).toBe(0);
    const pa = (await c.ctr(['task', 'ls'])).stdout.split('\n').find((l) => l.startsWith('pa '))?.split(/\s+/)[1];
    r = await c.ctr(['run', '-d', '--runtime', 'io.containerd.spore.v2', '--with-ns', `pid:/proc/${pa}/ns/pid`, '--rootfs', other, 'pb', '/bin/sleep', '1000'], { timeoutMs: 30_000 });
    expect(r.code, r.stderr).toBe(0);
    // in A: /app -> /proc/<B's init>/root
    r = await c.ctr(['task', 'exec', '--exec-id', 'ln', 'pa', '/bin/sh', '-c', 'b=$(ls /proc | grep -E "^[0-9]+$" | sort -n | sed -n 2p); ln -s /proc/$b/root /app; readlink /app']);
    expect(r.code, r.stderr).toBe(0);
    const ex = await c.ctr(['task', 'exec', '--exec-id', 'cwd', '--cwd', '/app', 'pa', '/bin/sh', '-c', 'cat marker-b 2>&1; echo rc=$?'], { timeoutMs: 30_000 });
    expect(ex.stdout).not.toContain('root of B');
    expect(ex.code).not.toBe(0);
    await c.ctr(['task', 'kill', '-s', 'KILL', 'pb']);
    await c.ctr(['task', 'kill', '-s', 'KILL', 'pa']);
  }, 120_000);
});
