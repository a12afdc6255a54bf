'use strict';
// Isolation probe (Node). Hostile on purpose: it tries to reach the host, its siblings and
// the kernel's namespace/mount/trace interfaces, once at module top level (init code, in
// the function's seed) and again in the handler (in the forked instance).
//
// Every check returns { denied, detail }: denied = true means the sandbox held (the access
// failed as it must). A check never throws; errno codes go into detail. Outside a sandbox
// (integration/probes/run-local.mjs, as root) nearly every check must report denied=false.
//
// Host facts (pids, ports, paths) come from the event, and for init (which has no event)
// from the JSON in $SPORE_PROBE_HOST. All checks are synchronous: the seed may be forked
// right after init, so nothing may be left in flight. Sockets and raw syscalls go through
// koffi (FFI), loaded from /var/task/node_modules: native code in the function, as a
// hostile function would ship it. Syscall numbers are x86_64.
const fs = require('fs');
const os = require('os');
const path = require('path');

const MAX_PROCS = 16; // "a handful": more pids in /proc means it is not the sandbox's own pid namespace
const REFUSED = new Set(['EPERM', 'EACCES', 'ENOSYS']); // what a kernel/filter refusal looks like
const FD_OK_PREFIXES = ['/dev/', '/var/task', '/.spore/', '/usr', '/lib', '/etc', '/proc'];
const FD_OK_DIRS = ['/', '/dev', '/var', '/.spore']; // the root's skeleton: parents of the above
const CAP_FIELDS = ['CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb'];
const SYS = { // x86_64
  mount: 165, umount2: 166, chroot: 161, sethostname: 170, pivot_root: 155, ptrace: 101,
  keyctl: 250, perf_event_open: 298, setns: 308, unshare: 272, bpf: 321, io_uring_setup: 425,
  landlock_create_ruleset: 444, lseek: 8, getdents64: 217, openat: 257,
};
const CLONE_NEWNS = 0x20000;
const CLONE_NEWUSER = 0x10000000;

const ERRNO_NAMES = Object.fromEntries(Object.entries(os.constants.errno).map(([k, v]) => [v, k]));
const errName = (n) => ERRNO_NAMES[n] ?? `errno ${n}`;
const codeOf = (e) => (e && e.code) || String((e && e.message) || e);

// --- native access (koffi) ---------------------------------------------------------------

function loadNative() {
  const koffi = require('koffi');
  const libc = koffi.load('libc.so.6');
  return {
    errno: () => errName(koffi.errno()),
    syscall: libc.func('long syscall(long nr, ...)'),
    socket: libc.func('int socket(int domain, int type, int protocol)'),
    connect: libc.func('int connect(int fd, void *addr, uint32_t len)'),
    poll: libc.func('int poll(void *fds, unsigned long nfds, int timeout)'),
    getsockopt: libc.func('int getsockopt(int fd, int level, int name, void *val, void *len)'),
    close: libc.func('int close(int fd)'),
    shmget: libc.func('int shmget(int key, size_t size, int flags)'),
  };
}

let native = null;
let nativeError = null;
try {
  if (process.arch !== 'x64') throw new Error(`syscall numbers are x86_64; this is ${process.arch}`);
  native = loadNative();
} catch (e) {
  nativeError = `koffi did not load: ${e && e.message}`;
}

/** raw syscall through libc: args are koffi (type, value) pairs; → { rc, err } */
function sys(nr, ...typedArgs) {
  const rc = Number(native.syscall(nr, ...typedArgs));
  return { rc, err: rc === -1 ? native.errno() : null };
}

/** Synchronous connect with a timeout: 'connected', 'timeout' or an errno name. */
function connectSync(domain, addr, timeoutMs) {
  const SOCK_STREAM = 1, SOCK_NONBLOCK = 0x800, SOCK_CLOEXEC = 0x80000, POLLOUT = 4;
  const fd = native.socket(domain, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return `socket: ${native.errno()}`;
  try {
    if (native.connect(fd, addr, addr.length) === 0) return 'connected';
    const e = native.errno();
    if (e !== 'EINPROGRESS' && e !== 'EAGAIN') return e;
    const pfd = Buffer.alloc(8);
    pfd.writeInt32LE(fd, 0);
    pfd.writeInt16LE(POLLOUT, 4);
    const n = native.poll(pfd, 1, timeoutMs);
    if (n === 0) return 'timeout';
    if (n < 0) return `poll: ${native.errno()}`;
    const val = Buffer.alloc(4), len = Buffer.alloc(4);
    len.writeUInt32LE(4, 0);
    native.getsockopt(fd, 1 /* SOL_SOCKET */, 4 /* SO_ERROR */, val, len);
    const soErr = val.readInt32LE(0);
    return soErr === 0 ? 'connected' : errName(soErr);
  } finally {
    native.close(fd);
  }
}

function tcpConnect(host, port, timeoutMs) {
  const sa = Buffer.alloc(16);
  sa.writeUInt16LE(2 /* AF_INET */, 0);
  sa.writeUInt16BE(port, 2);
  const octets = String(host).split('.').map(Number);
  if (octets.length !== 4 || octets.some((o) => !(o >= 0 && o <= 255))) return `bad IPv4 address ${host}`;
  octets.forEach((o, i) => { sa[4 + i] = o; });
  return connectSync(2, sa, timeoutMs);
}

/** Abstract names are length-sensitive: try the exact name and the 108-byte NUL-padded one
 * (libuv, so Node's net, binds and connects with the padded form). */
function abstractConnect(name) {
  const exact = Buffer.concat([Buffer.from([1, 0]) /* AF_UNIX */, Buffer.from([0]), Buffer.from(name)]);
  const padded = Buffer.alloc(2 + 108);
  exact.copy(padded);
  return `exact: ${connectSync(1, exact, 500)}, padded: ${connectSync(1, padded, 500)}`;
}

// --- helpers -----------------------------------------------------------------------------

const tryDo = (f) => { try { return { ok: true, value: f() }; } catch (e) { return { ok: false, code: codeOf(e) }; } };
const readText = (p) => fs.readFileSync(p, 'utf8');
const pidsInProc = () => fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d)).map(Number);
const selfStatus = () => {
  const out = {};
  for (const line of readText('/proc/self/status').split('\n')) {
    const m = /^(\w+):\s*(.*)$/.exec(line);
    if (m) out[m[1]] = m[2].trim();
  }
  return out;
};
const uniqueName = () => `.spore-probe-${process.pid}-${Math.random().toString(36).slice(2, 10)}`;
const cut = (s, n = 600) => (s.length > n ? `${s.slice(0, n)}… (${s.length} chars)` : s);

function fdTable() {
  const table = {};
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    const r = tryDo(() => fs.readlinkSync(`/proc/self/fd/${fd}`));
    if (r.ok) table[fd] = r.value; // the listing's own fd is gone by now
  }
  return table;
}

/** 0 O_RDONLY, 1 O_WRONLY, 2 O_RDWR, from /proc/self/fdinfo (never blocks) */
function accessMode(fd) {
  const m = /^flags:\s+([0-7]+)/m.exec(readText(`/proc/self/fdinfo/${fd}`));
  return m ? parseInt(m[1], 8) & 3 : -1;
}

// --- checks ------------------------------------------------------------------------------

function hostFiles({ ev }) {
  const seen = [];
  const parts = [...(ev.hostFiles || []), '/etc/shadow'].map((p) => {
    const r = tryDo(() => fs.readFileSync(p));
    if (r.ok) seen.push(p);
    return `${p}: ${r.ok ? `READ ${r.value.length} bytes` : r.code}`;
  });
  return { denied: seen.length === 0, detail: parts.join('; ') };
}

function hostWrite({ ev }) {
  const made = [];
  const parts = [...(ev.hostDirs || []), '/', '/etc', '/usr', '/var/task'].map((d) => {
    const p = path.join(d, uniqueName());
    const r = tryDo(() => fs.closeSync(fs.openSync(p, 'wx', 0o600)));
    if (!r.ok) return `${d}: ${r.code}`;
    made.push(d);
    tryDo(() => fs.unlinkSync(p));
    return `${d}: CREATED ${p}`;
  });
  return { denied: made.length === 0, detail: parts.join('; ') };
}

/**
 * Every fd must stay inside the sandbox: a path fd must be under the sandbox's own tree
 * (FD_OK_PREFIXES, or one of the root's skeleton directories), must be the object its path
 * names in this root (same dev/inode: an fd from another root or mount namespace is not),
 * and a directory's '..' must list the same as the path's parent.
 */
function fdEscape() {
  const table = fdTable();
  const escapes = [];
  const dirs = [];
  for (const [fd, target] of Object.entries(table)) {
    if (!target.startsWith('/') || target.startsWith('/memfd:')) continue; // pipe:[…], socket:[…], anon_inode:…
    const deleted = target.endsWith(' (deleted)');
    const p = deleted ? target.slice(0, -' (deleted)'.length) : target;
    if (!FD_OK_PREFIXES.some((pre) => p.startsWith(pre)) && !FD_OK_DIRS.includes(p)) escapes.push(`fd ${fd} → ${target}`);
    const st = tryDo(() => fs.fstatSync(Number(fd)));
    if (!st.ok) continue;
    if (!deleted) {
      const here = tryDo(() => fs.lstatSync(p));
      if (here.ok && (here.value.dev !== st.value.dev || here.value.ino !== st.value.ino)) escapes.push(`fd ${fd} → ${target} is not this root's ${p}`);
      if (!here.ok && here.code === 'ENOENT') escapes.push(`fd ${fd} → ${target}: no such path in this root`);
    }
    if (!st.value.isDirectory()) continue;
    const viaFd = tryDo(() => fs.readdirSync(`/proc/self/fd/${fd}/..`).sort().join(','));
    const viaPath = tryDo(() => fs.readdirSync(path.dirname(p)).sort().join(','));
    if (viaFd.ok && (!viaPath.ok || viaFd.value !== viaPath.value)) escapes.push(`fd ${fd} '..' lists [${cut(viaFd.value, 200)}], not ${path.dirname(p)}`);
    dirs.push(`${fd} ${viaFd.ok ? (viaPath.ok && viaFd.value === viaPath.value ? 'same' : 'DIFFERS') : viaFd.code}`);
  }
  const tableText = Object.entries(table).map(([fd, t]) => `${fd}=${t}`).join(' ');
  return { denied: escapes.length === 0, detail: `${escapes.length ? `ESCAPES: ${escapes.join('; ')}; ` : ''}dir fds' '..': ${dirs.join(', ') || '-'}; fds: ${tableText}` };
}

function hostProcs({ ev }) {
  if (!ev.sporedPid) return { denied: false, detail: 'no sporedPid in the host facts: cannot check' };
  const pids = pidsInProc();
  const listed = pids.includes(Number(ev.sporedPid));
  const kill = tryDo(() => process.kill(Number(ev.sporedPid), 0));
  const denied = !listed && pids.length <= MAX_PROCS && !kill.ok;
  return { denied, detail: `${pids.length} pids in /proc${pids.length > MAX_PROCS ? ` (more than ${MAX_PROCS})` : `: ${pids.join(',')}`}; spored pid ${ev.sporedPid} ${listed ? 'LISTED' : 'not listed'}; kill(${ev.sporedPid}, 0): ${kill.ok ? 'DELIVERED' : kill.code}` };
}

function signalSeed({ phase }) {
  if (phase === 'init') return { denied: true, detail: 'n/a' };
  const reached = [];
  const parts = [['pid 1', 1], ['parent', process.ppid]].map(([what, pid]) => {
    if (pid === 0) return `${what}: ppid 0 (the parent is outside this pid namespace)`;
    if (pid === process.pid) return `${what}: is this process (pid ${pid})`;
    const r = tryDo(() => process.kill(pid, 0));
    if (r.ok) reached.push(what);
    return `${what} (${pid}): ${r.ok ? 'DELIVERED' : r.code}`;
  });
  return { denied: reached.length === 0, detail: parts.join('; ') };
}

function hostLoopback({ ev }) {
  if (!native) return { denied: false, detail: nativeError };
  if (!ev.hostTcpPort) return { denied: false, detail: 'no hostTcpPort in the host facts' };
  const r = tcpConnect('127.0.0.1', Number(ev.hostTcpPort), 500);
  return { denied: r !== 'connected', detail: `127.0.0.1:${ev.hostTcpPort}: ${r}` };
}

function hostAddr({ ev }) {
  if (!native) return { denied: false, detail: nativeError };
  if (!ev.hostAddr || !ev.hostTcpPort) return { denied: false, detail: 'no hostAddr/hostTcpPort in the host facts' };
  const r = tcpConnect(ev.hostAddr, Number(ev.hostTcpPort), 500);
  return { denied: r !== 'connected', detail: `${ev.hostAddr}:${ev.hostTcpPort}: ${r}` };
}

function abstractSocket({ ev }) {
  if (!native) return { denied: false, detail: nativeError };
  if (!ev.hostAbstract) return { denied: false, detail: 'no hostAbstract in the host facts' };
  const r = abstractConnect(ev.hostAbstract);
  return { denied: !r.includes('connected'), detail: `@${ev.hostAbstract}: ${r}` };
}

function sysvIpc({ ev }) {
  if (ev.hostShmKey === undefined) return { denied: false, detail: 'no hostShmKey in the host facts' };
  const key = Number(ev.hostShmKey);
  const shm = tryDo(() => readText('/proc/sysvipc/shm'));
  const keys = shm.ok ? shm.value.split('\n').slice(1).map((l) => l.trim().split(/\s+/)[0]).filter(Boolean).map(Number) : [];
  const listed = keys.includes(key);
  let get = `shmget not tried (${nativeError})`;
  let gotIt = false;
  if (native) {
    const id = native.shmget(key, 0, 0);
    gotIt = id >= 0;
    get = `shmget(${key}): ${gotIt ? `GOT id ${id}` : native.errno()}`;
  }
  return { denied: !listed && !gotIt, detail: `/proc/sysvipc/shm ${shm.ok ? `keys [${keys.join(',')}]` : shm.code}; key ${key} ${listed ? 'LISTED' : 'not listed'}; ${get}` };
}

/**
 * Init code opens what it can of the /tmp slots and keeps the fds: an instance forked later
 * inherits them unless the runtime closes them, and Landlock only checks at open time.
 */
function holdTmpDirs(ev) {
  const tmpRoot = path.join(ev.sporeRoot || '/.spore', 'tmp');
  const names = tryDo(() => fs.readdirSync(tmpRoot));
  const held = [];
  for (const p of names.ok ? names.value.map((n) => path.join(tmpRoot, n)) : []) {
    const r = tryDo(() => fs.openSync(p, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY));
    if (r.ok) held.push({ fd: r.value, path: p });
  }
  return held;
}

/** List a directory through its fd alone (getdents64: no path walk, so no Landlock check). */
function listFd(fd) {
  if (!native) return fs.readdirSync(`/proc/self/fd/${fd}`);
  sys(SYS.lseek, 'int', fd, 'long', 0, 'int', 0);
  const buf = Buffer.alloc(32768);
  const names = [];
  for (;;) {
    const r = sys(SYS.getdents64, 'int', fd, 'void *', buf, 'uint32_t', buf.length);
    if (r.rc < 0) throw Object.assign(new Error(r.err), { code: r.err });
    if (r.rc === 0) return names;
    for (let off = 0; off < r.rc; off += buf.readUInt16LE(off + 16)) {
      const name = buf.toString('utf8', off + 19, buf.indexOf(0, off + 19));
      if (name !== '.' && name !== '..') names.push(name);
    }
  }
}

/** Open `name` relative to a directory fd (openat: no path walk from /) and read it. */
function readAt(dirFd, name) {
  if (!native) return fs.readFileSync(`/proc/self/fd/${dirFd}/${name}`).length;
  const r = sys(SYS.openat, 'int', dirFd, 'const char *', name, 'int', fs.constants.O_RDONLY | 0x80000 /* O_CLOEXEC */, 'int', 0);
  if (r.rc < 0) throw Object.assign(new Error(r.err), { code: r.err });
  try { return fs.readSync(r.rc, Buffer.alloc(4096), 0, 4096, 0); } finally { fs.closeSync(r.rc); }
}

function siblingTmp({ phase, ev }) {
  const tmpRoot = path.join(ev.sporeRoot || '/.spore', 'tmp');
  const own = tryDo(() => fs.realpathSync('/tmp'));
  const leaks = [];
  const parts = [`/tmp → ${own.ok ? own.value : own.code}`];
  const list = tryDo(() => fs.readdirSync(tmpRoot));
  if (!list.ok) parts.push(`${tmpRoot}: ${list.code}`);
  for (const name of list.ok ? list.value : []) {
    const dir = path.join(tmpRoot, name);
    if (own.ok && dir === own.value) continue;
    const files = tryDo(() => fs.readdirSync(dir));
    if (!files.ok) { parts.push(`${dir}: ${files.code}`); continue; }
    leaks.push(`LISTED ${dir} [${cut(files.value.join(','), 100)}]`);
    for (const f of files.value.slice(0, 8)) {
      const r = tryDo(() => fs.readFileSync(path.join(dir, f)));
      if (r.ok) leaks.push(`READ ${path.join(dir, f)}`);
    }
  }
  if (phase === 'handler') {
    let open = 0;
    for (const { fd, path: p } of HELD_TMP) {
      const now = tryDo(() => fs.readlinkSync(`/proc/self/fd/${fd}`));
      if (!now.ok || now.value !== p) continue; // closed at fork (or the number reused)
      open++;
      if (own.ok && p === own.value) continue;
      const files = tryDo(() => listFd(fd));
      if (!files.ok || !files.value.length) continue;
      leaks.push(`THROUGH init's fd ${fd} on ${p} [${cut(files.value.join(','), 200)}]`);
      for (const f of files.value.slice(0, 4)) {
        const r = tryDo(() => readAt(fd, f));
        leaks.push(r.ok ? `READ ${p}/${f} through fd ${fd} (${r.value} bytes)` : `open ${p}/${f} through fd ${fd}: ${r.code}`);
      }
    }
    parts.push(`init code held ${HELD_TMP.length} dir fds under ${tmpRoot}, ${open} still open here`);
  }
  if (ev.peerMarker) {
    const r = tryDo(() => fs.statSync(path.join('/tmp', ev.peerMarker)));
    if (r.ok) leaks.push(`SEES peer marker /tmp/${ev.peerMarker}`);
    else parts.push(`/tmp/${ev.peerMarker}: ${r.code}`);
  }
  return { denied: leaks.length === 0, detail: [...leaks, ...parts].join('; ') };
}

function siblingProc() {
  const others = pidsInProc().filter((p) => p !== process.pid);
  const leaks = [];
  const refusals = new Set();
  const attempt = (what, f) => {
    const r = tryDo(f);
    if (r.ok) leaks.push(what); else refusals.add(r.code);
  };
  for (const pid of others) {
    attempt(`ls /proc/${pid}/root`, () => fs.readdirSync(`/proc/${pid}/root`));
    attempt(`open /proc/${pid}/mem`, () => fs.closeSync(fs.openSync(`/proc/${pid}/mem`, 'r')));
    attempt(`read /proc/${pid}/environ`, () => fs.readFileSync(`/proc/${pid}/environ`));
  }
  const head = others.length ? `other pids: ${cut(others.join(','), 200)}` : 'no other pids visible';
  return {
    denied: leaks.length === 0,
    detail: `${head}; ${leaks.length ? `${leaks.length} LEAKS: ${cut(leaks.join(', '), 400)}` : 'no leaks'}; refusals: ${[...refusals].join(',') || '-'}`,
  };
}

function caps() {
  const st = selfStatus();
  const bad = CAP_FIELDS.filter((f) => !/^0+$/.test(st[f] || 'x'));
  if (st.NoNewPrivs !== '1') bad.push('NoNewPrivs');
  if (st.Seccomp !== '2') bad.push('Seccomp');
  const shown = [...CAP_FIELDS, 'NoNewPrivs', 'Seccomp'].map((f) => `${f}=${st[f]}`).join(' ');
  return { denied: bad.length === 0, detail: `${bad.length ? `WRONG: ${bad.join(',')}; ` : ''}${shown}` };
}

/**
 * Each call must be refused (EPERM/EACCES/ENOSYS). Failing for another reason (EINVAL,
 * EFAULT, ENOENT…) means the call got past the filter and the capability checks. Targets
 * are chosen so that a success outside a sandbox changes nothing that matters (chroot '/',
 * sethostname to the current name, setns into our own netns) or is undone (the tmpfs that
 * mount makes is what umount2 then removes; fds that succeed are closed).
 */
function escapes() {
  if (!native) return { denied: false, detail: nativeError };
  const results = [];
  const record = (name, r, after) => {
    const refused = r.rc === -1 && REFUSED.has(r.err);
    if (!refused && r.rc >= 0 && after) tryDo(() => after(r.rc));
    results.push({ name, refused, text: r.rc === -1 ? r.err : `ALLOWED rc=${r.rc}` });
  };
  const str = (s) => ['const char *', s];

  const mnt = tryDo(() => fs.mkdtempSync(path.join(os.tmpdir(), 'spore-probe-mnt-')));
  const target = mnt.ok ? mnt.value : '/var/task';
  const mounted = sys(SYS.mount, ...str('none'), ...str(target), ...str('tmpfs'), 'unsigned long', 0, ...str('size=16k'));
  record('mount', mounted);
  // umount2 takes down the tmpfs mount made (outside a sandbox); else a plain directory
  // (EINVAL if the call is let through, EPERM if refused)
  record('umount2', sys(SYS.umount2, ...str(target), 'int', 0));
  if (mnt.ok) tryDo(() => fs.rmdirSync(target));

  record('unshare(CLONE_NEWUSER)', sys(SYS.unshare, 'unsigned long', CLONE_NEWUSER));
  record('unshare(CLONE_NEWNS)', sys(SYS.unshare, 'unsigned long', CLONE_NEWNS));
  const nsFd = tryDo(() => fs.openSync('/proc/self/ns/net', 'r'));
  if (nsFd.ok) {
    record('setns(net)', sys(SYS.setns, 'int', nsFd.value, 'int', 0));
    fs.closeSync(nsFd.value);
  } else results.push({ name: 'setns(net)', refused: true, text: `open /proc/self/ns/net: ${nsFd.code}` });
  const tracer = selfStatus().TracerPid;
  if (tracer && tracer !== '0') results.push({ name: 'ptrace(TRACEME)', refused: false, text: `ALREADY TRACED by ${tracer}` });
  else record('ptrace(TRACEME)', sys(SYS.ptrace, 'long', 0, 'long', 0, 'void *', null, 'void *', null));
  record('keyctl(GET_KEYRING_ID)', sys(SYS.keyctl, 'int', 0, 'int', -3 /* session */, 'int', 0));
  record('bpf(PROG_LOAD, NULL)', sys(SYS.bpf, 'int', 5, 'void *', null, 'uint32_t', 0), (fd) => fs.closeSync(fd));
  record('perf_event_open(NULL)', sys(SYS.perf_event_open, 'void *', null, 'int', 0, 'int', -1, 'int', -1, 'unsigned long', 0), (fd) => fs.closeSync(fd));
  const params = Buffer.alloc(120); // struct io_uring_params, zeroed
  record('io_uring_setup', sys(SYS.io_uring_setup, 'uint32_t', 1, 'void *', params), (fd) => fs.closeSync(fd));
  record('chroot(/)', sys(SYS.chroot, ...str('/')));
  const host = os.hostname();
  record('sethostname(same)', sys(SYS.sethostname, ...str(host), 'size_t', Buffer.byteLength(host)));
  record('pivot_root', sys(SYS.pivot_root, ...str('/nonexistent-spore-probe'), ...str('/nonexistent-spore-probe')));

  return { denied: results.every((r) => r.refused), detail: results.map((r) => `${r.name}: ${r.text}`).join('; ') };
}

function logFd() {
  const problems = [];
  const parts = [1, 2].map((fd) => {
    const t = tryDo(() => fs.readlinkSync(`/proc/self/fd/${fd}`));
    if (!t.ok || !t.value.startsWith('pipe:[')) problems.push(`fd ${fd} not a pipe`);
    return `fd ${fd} → ${t.ok ? t.value : t.code}`;
  });
  // Read fd 1 only where it cannot block: a write-only fd (EBADF at once) or a regular file.
  const mode = tryDo(() => accessMode(1));
  const regular = tryDo(() => fs.fstatSync(1).isFile());
  if (mode.ok && (mode.value === 1 || regular.value)) {
    const r = tryDo(() => fs.readSync(1, Buffer.alloc(16), 0, 16, null));
    if (r.ok) problems.push('fd 1 readable');
    parts.push(`read(1): ${r.ok ? `READ ${r.value} bytes` : r.code}`);
  } else {
    problems.push('fd 1 readable');
    parts.push(`read(1) not tried: fd 1 open for ${mode.ok ? ['reading', 'writing', 'reading and writing'][mode.value] : mode.code}`);
  }
  return { denied: problems.length === 0, detail: `${problems.length ? `${problems.join(', ')}; ` : ''}${parts.join('; ')}` };
}

const CHECKS = { hostFiles, hostWrite, fdEscape, hostProcs, signalSeed, hostLoopback, hostAddr, abstractSocket, sysvIpc, siblingTmp, siblingProc, caps, escapes, logFd };

function runChecks(phase, ev) {
  const report = {};
  for (const [name, check] of Object.entries(CHECKS)) {
    try {
      report[name] = check({ phase, ev });
    } catch (e) {
      report[name] = { denied: false, detail: `the check threw: ${(e && e.stack) || e}` };
    }
  }
  return report;
}

// --- facts -------------------------------------------------------------------------------

function mountinfo() {
  const unescape = (s) => s.replace(/\\([0-7]{3})/g, (_, o) => String.fromCharCode(parseInt(o, 8)));
  return readText('/proc/self/mountinfo').split('\n').filter(Boolean).map((line) => {
    const f = line.split(' ');
    const dash = f.indexOf('-');
    return { mountPoint: unescape(f[4]), fsType: f[dash + 1], options: f[5] };
  }).sort((a, b) => (a.mountPoint < b.mountPoint ? -1 : a.mountPoint > b.mountPoint ? 1 : 0));
}

function rlimits() {
  const text = readText('/proc/self/limits');
  const get = (label) => {
    const m = new RegExp(`^${label}\\s+(\\S+)\\s+(\\S+)`, 'm').exec(text);
    return m ? { soft: m[1], hard: m[2] } : null;
  };
  return { nofile: get('Max open files'), fsize: get('Max file size'), nproc: get('Max processes') };
}

function landlockAbi() {
  if (!native) return nativeError;
  const r = sys(SYS.landlock_create_ruleset, 'void *', null, 'size_t', 0, 'uint32_t', 1 /* LANDLOCK_CREATE_RULESET_VERSION */);
  return r.rc >= 0 ? r.rc : r.err;
}

function facts(extra) {
  const get = (f) => { const r = tryDo(f); return r.ok ? r.value : `error: ${r.code}`; };
  const st = get(selfStatus);
  return {
    uid: process.getuid(),
    gid: process.getgid(),
    uidMap: get(() => readText('/proc/self/uid_map')),
    gidMap: get(() => readText('/proc/self/gid_map')),
    status: Object.fromEntries([...CAP_FIELDS, 'NoNewPrivs', 'Seccomp'].map((k) => [k, st[k] ?? null])),
    mountinfo: get(mountinfo),
    ns: get(() => Object.fromEntries(fs.readdirSync('/proc/self/ns').sort().map((n) => [n, get(() => fs.readlinkSync(`/proc/self/ns/${n}`))]))),
    hostname: get(() => os.hostname()),
    cwd: get(() => process.cwd()),
    tmp: get(() => fs.realpathSync('/tmp')),
    landlock: get(landlockAbi),
    rlimits: get(rlimits),
    fds: get(fdTable),
    pid: process.pid,
    procPids: get(pidsInProc),
    ...extra,
  };
}

// --- init and handler --------------------------------------------------------------------

function hostFacts() {
  try { return JSON.parse(process.env.SPORE_PROBE_HOST || '{}'); } catch { return {}; }
}

const HELD_TMP = holdTmpDirs(hostFacts());
const INIT = runChecks('init', hostFacts());

exports.handler = async (event) => {
  const ev = { ...hostFacts(), ...(event && typeof event === 'object' ? event : {}) };
  let marker = null;
  if (ev.marker) {
    const p = path.join('/tmp', String(ev.marker));
    const w = tryDo(() => fs.writeFileSync(p, `marker ${ev.marker} from pid ${process.pid}\n`));
    marker = { path: p, written: w.ok ? true : w.code };
  }
  if (ev.holdMs) await new Promise((r) => setTimeout(r, Number(ev.holdMs)));
  const handler = runChecks('handler', ev);
  return { init: INIT, handler, facts: facts({ marker }) };
};
