"""Isolation probe (Python). Hostile on purpose: it tries to reach the host, its siblings and
the kernel's namespace/mount/trace interfaces, once at module top level (init code, in the
function's seed) and again in the handler (in the forked instance).

Every check returns {"denied": bool, "detail": str}: denied = True means the sandbox held
(the access failed as it must). A check never raises; errno codes go into detail. Outside
a sandbox (integration/probes/run-local.mjs, as root) nearly every check must report
denied = False.

Host facts (pids, ports, paths) come from the event, and for init (which has no event)
from the JSON in $SPORE_PROBE_HOST. Standard library and ctypes only; the same checks as
integration/probes/node/index.js. Syscall numbers are x86_64.
"""
import ctypes
import errno
import json
import os
import platform
import random
import socket
import stat
import time

MAX_PROCS = 16  # "a handful": more pids in /proc means it is not the sandbox's own pid namespace
REFUSED = {"EPERM", "EACCES", "ENOSYS"}  # what a kernel/filter refusal looks like
FD_OK_PREFIXES = ("/dev/", "/var/task", "/.spore/", "/usr", "/lib", "/etc", "/proc")
FD_OK_DIRS = ("/", "/dev", "/var", "/.spore")  # the root's skeleton: parents of the above
CAP_FIELDS = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")
SYS = {  # x86_64
    "mount": 165, "umount2": 166, "chroot": 161, "sethostname": 170, "pivot_root": 155,
    "ptrace": 101, "keyctl": 250, "perf_event_open": 298, "setns": 308, "unshare": 272,
    "bpf": 321, "io_uring_setup": 425, "landlock_create_ruleset": 444, "io_setup": 206,
}
CLONE_NEWNS = 0x20000
CLONE_NEWUSER = 0x10000000


def err_name(n):
    return errno.errorcode.get(n, "errno %d" % n)


def code_of(e):
    if isinstance(e, OSError) and e.errno:
        return err_name(e.errno)
    if isinstance(e, socket.timeout):
        return "timeout"
    return "%s: %s" % (type(e).__name__, e)


# --- native access (ctypes) -------------------------------------------------------------

try:
    if platform.machine() != "x86_64":
        raise OSError("syscall numbers are x86_64; this is %s" % platform.machine())
    LIBC = ctypes.CDLL(None, use_errno=True)
    LIBC.syscall.restype = ctypes.c_long
    NATIVE_ERROR = None
except Exception as e:  # noqa: BLE001
    LIBC = None
    NATIVE_ERROR = "ctypes/libc did not load: %s" % e


def _arg(a):
    if a is None:
        return ctypes.c_void_p(None)
    if isinstance(a, str):
        return ctypes.c_char_p(a.encode())
    if isinstance(a, int):
        return ctypes.c_long(a)
    return a  # a ctypes object already


def sys_call(nr, *args):
    """raw syscall through libc → (rc, errno name or None)"""
    ctypes.set_errno(0)
    rc = LIBC.syscall(ctypes.c_long(nr), *[_arg(a) for a in args])
    return rc, (err_name(ctypes.get_errno()) if rc == -1 else None)


def in_child(fn):
    """Run fn() → (rc, err) in a throwaway fork, so that a call which succeeds (outside a
    sandbox: unshare) does not change this process. Falls back to running it here."""
    try:
        r, w = os.pipe()
        pid = os.fork()
    except OSError as e:
        rc, err = fn()
        return rc, err, "in-process (fork: %s)" % code_of(e)
    if pid == 0:
        try:
            os.write(w, json.dumps(fn()).encode())
        finally:
            os._exit(0)
    os.close(w)
    data = b""
    while True:
        chunk = os.read(r, 4096)
        if not chunk:
            break
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    try:
        rc, err = json.loads(data.decode())
    except ValueError:
        return -1, "CHILD-DIED", "in a fork"
    return rc, err, "in a fork"


# --- helpers ------------------------------------------------------------------------------

def try_do(f):
    try:
        return True, f()
    except BaseException as e:  # noqa: BLE001 (a check must never raise)
        return False, code_of(e)


def read_text(p):
    with open(p, "r") as fh:
        return fh.read()


def read_bytes(p):
    with open(p, "rb") as fh:
        return fh.read()


def pids_in_proc():
    return sorted(int(d) for d in os.listdir("/proc") if d.isdigit())


def self_status():
    out = {}
    for line in read_text("/proc/self/status").splitlines():
        k, sep, v = line.partition(":")
        if sep:
            out[k] = v.strip()
    return out


def unique_name():
    return ".spore-probe-%d-%08x" % (os.getpid(), random.getrandbits(32))


def cut(s, n=600):
    return s if len(s) <= n else "%s… (%d chars)" % (s[:n], len(s))


def fd_table():
    table = {}
    for fd in os.listdir("/proc/self/fd"):
        ok, target = try_do(lambda: os.readlink("/proc/self/fd/%s" % fd))
        if ok:  # the listing's own fd is gone by now
            table[fd] = target
    return table


def access_mode(fd):
    """0 O_RDONLY, 1 O_WRONLY, 2 O_RDWR, from /proc/self/fdinfo (never blocks)"""
    for line in read_text("/proc/self/fdinfo/%d" % fd).splitlines():
        if line.startswith("flags:"):
            return int(line.split()[1], 8) & 3
    return -1


def connect(family, addr, timeout=0.5):
    """'connected', 'timeout' or an errno name ('socket: EPERM' when no socket is made)"""
    try:
        s = socket.socket(family, socket.SOCK_STREAM)
    except OSError as e:
        return "socket: " + code_of(e)
    try:
        s.settimeout(timeout)
        s.connect(addr)
        return "connected"
    except BaseException as e:  # noqa: BLE001
        return code_of(e)
    finally:
        s.close()


# --- checks -------------------------------------------------------------------------------

def host_files(ctx):
    ev = ctx["ev"]
    seen, parts = [], []
    for p in list(ev.get("hostFiles") or []) + ["/etc/shadow"]:
        ok, v = try_do(lambda: read_bytes(p))
        if ok:
            seen.append(p)
        parts.append("%s: %s" % (p, "READ %d bytes" % len(v) if ok else v))
    return {"denied": not seen, "detail": "; ".join(parts)}


def host_write(ctx):
    ev = ctx["ev"]
    made, parts = [], []
    for d in list(ev.get("hostDirs") or []) + ["/", "/etc", "/usr", "/var/task"]:
        p = os.path.join(d, unique_name())
        ok, v = try_do(lambda: os.close(os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)))
        if not ok:
            parts.append("%s: %s" % (d, v))
            continue
        made.append(d)
        try_do(lambda: os.unlink(p))
        parts.append("%s: CREATED %s" % (d, p))
    return {"denied": not made, "detail": "; ".join(parts)}


def fd_escape(ctx):
    """Every fd must stay inside the sandbox: a path fd must be under the sandbox's own tree
    (FD_OK_PREFIXES, or one of the root's skeleton directories), must be the object its path
    names in this root (same dev/inode: an fd from another root or mount namespace is not),
    and a directory's '..' must list the same as the path's parent."""
    table = fd_table()
    escapes, dirs = [], []
    for fd, target in sorted(table.items(), key=lambda kv: int(kv[0])):
        if not target.startswith("/") or target.startswith("/memfd:"):  # pipe:[…], socket:[…], anon_inode:…
            continue
        deleted = target.endswith(" (deleted)")
        p = target[:-len(" (deleted)")] if deleted else target
        if not p.startswith(FD_OK_PREFIXES) and p not in FD_OK_DIRS:
            escapes.append("fd %s → %s" % (fd, target))
        ok, st = try_do(lambda: os.fstat(int(fd)))
        if not ok:
            continue
        if not deleted:
            ok_here, here = try_do(lambda: os.lstat(p))
            if ok_here and (here.st_dev, here.st_ino) != (st.st_dev, st.st_ino):
                escapes.append("fd %s → %s is not this root's %s" % (fd, target, p))
            if not ok_here and here == "ENOENT":
                escapes.append("fd %s → %s: no such path in this root" % (fd, target))
        if not stat.S_ISDIR(st.st_mode):
            continue

        def list_parent():
            pfd = os.open("..", os.O_RDONLY | os.O_DIRECTORY, dir_fd=int(fd))
            try:
                return ",".join(sorted(os.listdir(pfd)))
            finally:
                os.close(pfd)
        ok_fd, via_fd = try_do(list_parent)
        ok_path, via_path = try_do(lambda: ",".join(sorted(os.listdir(os.path.dirname(p)))))
        if ok_fd and (not ok_path or via_fd != via_path):
            escapes.append("fd %s '..' lists [%s], not %s" % (fd, cut(via_fd, 200), os.path.dirname(p)))
        dirs.append("%s %s" % (fd, ("same" if ok_path and via_fd == via_path else "DIFFERS") if ok_fd else via_fd))
    table_text = " ".join("%s=%s" % (fd, t) for fd, t in sorted(table.items(), key=lambda kv: int(kv[0])))
    return {"denied": not escapes,
            "detail": "%sdir fds' '..': %s; fds: %s" % ("ESCAPES: %s; " % "; ".join(escapes) if escapes else "",
                                                    ", ".join(dirs) or "-", table_text)}


def host_procs(ctx):
    ev = ctx["ev"]
    if not ev.get("sporedPid"):
        return {"denied": False, "detail": "no sporedPid in the host facts: cannot check"}
    spored = int(ev["sporedPid"])
    pids = pids_in_proc()
    listed = spored in pids
    ok, v = try_do(lambda: os.kill(spored, 0))
    many = len(pids) > MAX_PROCS
    return {"denied": not listed and not many and not ok,
            "detail": "%d pids in /proc%s; spored pid %d %s; kill(%d, 0): %s" % (
                len(pids), " (more than %d)" % MAX_PROCS if many else ": " + ",".join(map(str, pids)),
                spored, "LISTED" if listed else "not listed", spored, "DELIVERED" if ok else v)}


def signal_seed(ctx):
    if ctx["phase"] == "init":
        return {"denied": True, "detail": "n/a"}
    reached, parts = [], []
    for what, pid in (("pid 1", 1), ("parent", os.getppid())):
        if pid == 0:
            parts.append("%s: ppid 0 (the parent is outside this pid namespace)" % what)
            continue
        if pid == os.getpid():
            parts.append("%s: is this process (pid %d)" % (what, pid))
            continue
        ok, v = try_do(lambda: os.kill(pid, 0))
        if ok:
            reached.append(what)
        parts.append("%s (%d): %s" % (what, pid, "DELIVERED" if ok else v))
    return {"denied": not reached, "detail": "; ".join(parts)}


def host_loopback(ctx):
    ev = ctx["ev"]
    if not ev.get("hostTcpPort"):
        return {"denied": False, "detail": "no hostTcpPort in the host facts"}
    r = connect(socket.AF_INET, ("127.0.0.1", int(ev["hostTcpPort"])))
    return {"denied": r != "connected", "detail": "127.0.0.1:%s: %s" % (ev["hostTcpPort"], r)}


def host_addr(ctx):
    ev = ctx["ev"]
    if not ev.get("hostAddr") or not ev.get("hostTcpPort"):
        return {"denied": False, "detail": "no hostAddr/hostTcpPort in the host facts"}
    r = connect(socket.AF_INET, (ev["hostAddr"], int(ev["hostTcpPort"])))
    return {"denied": r != "connected", "detail": "%s:%s: %s" % (ev["hostAddr"], ev["hostTcpPort"], r)}


def abstract_socket(ctx):
    ev = ctx["ev"]
    if not ev.get("hostAbstract"):
        return {"denied": False, "detail": "no hostAbstract in the host facts"}
    # Abstract names are length-sensitive: try the exact name and the 108-byte NUL-padded
    # one (libuv, so Node's net, binds and connects with the padded form).
    exact = b"\0" + ev["hostAbstract"].encode()
    exact_r = connect(socket.AF_UNIX, exact)
    padded_r = connect(socket.AF_UNIX, exact.ljust(108, b"\0"))
    return {"denied": "connected" not in (exact_r, padded_r),
            "detail": "@%s: exact: %s, padded: %s" % (ev["hostAbstract"], exact_r, padded_r)}


def sysv_ipc(ctx):
    ev = ctx["ev"]
    if ev.get("hostShmKey") is None:
        return {"denied": False, "detail": "no hostShmKey in the host facts"}
    key = int(ev["hostShmKey"])
    ok, text = try_do(lambda: read_text("/proc/sysvipc/shm"))
    keys = [int(line.split()[0]) for line in text.splitlines()[1:] if line.strip()] if ok else []
    listed = key in keys
    got_it = False
    if LIBC is None:
        get = "shmget not tried (%s)" % NATIVE_ERROR
    else:
        ctypes.set_errno(0)
        shm_id = LIBC.shmget(ctypes.c_int(key), ctypes.c_size_t(0), ctypes.c_int(0))
        got_it = shm_id >= 0
        get = "shmget(%d): %s" % (key, "GOT id %d" % shm_id if got_it else err_name(ctypes.get_errno()))
    return {"denied": not listed and not got_it,
            "detail": "/proc/sysvipc/shm %s; key %d %s; %s" % (
                "keys [%s]" % ",".join(map(str, keys)) if ok else text, key,
                "LISTED" if listed else "not listed", get)}


def hold_tmp_dirs(ev):
    """Init code opens what it can of the /tmp slots and keeps the fds: an instance forked
    later inherits them unless the runtime closes them, and Landlock only checks at open time."""
    tmp_root = os.path.join(ev.get("sporeRoot") or "/.spore", "tmp")
    ok, names = try_do(lambda: sorted(os.listdir(tmp_root)))
    held = []
    for name in names if ok else []:
        p = os.path.join(tmp_root, name)
        ok_fd, fd = try_do(lambda: os.open(p, os.O_RDONLY | os.O_DIRECTORY))
        if ok_fd:
            held.append((fd, p))
    return held


def sibling_tmp(ctx):
    ev = ctx["ev"]
    tmp_root = os.path.join(ev.get("sporeRoot") or "/.spore", "tmp")
    ok_own, own = try_do(lambda: os.path.realpath("/tmp"))
    leaks, parts = [], ["/tmp → %s" % own]
    ok, names = try_do(lambda: sorted(os.listdir(tmp_root)))
    if not ok:
        parts.append("%s: %s" % (tmp_root, names))
    for name in names if ok else []:
        d = os.path.join(tmp_root, name)
        if ok_own and d == own:
            continue
        ok_d, files = try_do(lambda: sorted(os.listdir(d)))
        if not ok_d:
            parts.append("%s: %s" % (d, files))
            continue
        leaks.append("LISTED %s [%s]" % (d, cut(",".join(files), 100)))
        for f in files[:8]:
            ok_f, _ = try_do(lambda: read_bytes(os.path.join(d, f)))
            if ok_f:
                leaks.append("READ %s" % os.path.join(d, f))
    if ctx["phase"] == "handler":
        still_open = 0
        for fd, p in HELD_TMP:
            ok_now, now = try_do(lambda: os.readlink("/proc/self/fd/%d" % fd))
            if not ok_now or now != p:  # closed at fork (or the number reused)
                continue
            still_open += 1
            if ok_own and p == own:
                continue
            ok_l, files = try_do(lambda: os.listdir(fd))  # getdents on the fd: no path walk
            if not ok_l or not files:
                continue
            leaks.append("THROUGH init's fd %d on %s [%s]" % (fd, p, cut(",".join(sorted(files)), 200)))
            for f in sorted(files)[:4]:
                def read_at():  # openat relative to the held fd: no path walk from /
                    ffd = os.open(f, os.O_RDONLY, dir_fd=fd)
                    try:
                        return len(os.read(ffd, 4096))
                    finally:
                        os.close(ffd)
                ok_r, n = try_do(read_at)
                leaks.append("READ %s/%s through fd %d (%d bytes)" % (p, f, fd, n) if ok_r
                             else "open %s/%s through fd %d: %s" % (p, f, fd, n))
        parts.append("init code held %d dir fds under %s, %d still open here" % (len(HELD_TMP), tmp_root, still_open))
    if ev.get("peerMarker"):
        ok_m, v = try_do(lambda: os.stat(os.path.join("/tmp", ev["peerMarker"])))
        if ok_m:
            leaks.append("SEES peer marker /tmp/%s" % ev["peerMarker"])
        else:
            parts.append("/tmp/%s: %s" % (ev["peerMarker"], v))
    return {"denied": not leaks, "detail": "; ".join(leaks + parts)}


def sibling_proc(ctx):
    others = [p for p in pids_in_proc() if p != os.getpid()]
    leaks, refusals = [], set()

    def attempt(what, f):
        ok, v = try_do(f)
        if ok:
            leaks.append(what)
        else:
            refusals.add(v)
    for pid in others:
        attempt("ls /proc/%d/root" % pid, lambda: os.listdir("/proc/%d/root" % pid))
        attempt("open /proc/%d/mem" % pid, lambda: os.close(os.open("/proc/%d/mem" % pid, os.O_RDONLY)))
        attempt("read /proc/%d/environ" % pid, lambda: read_bytes("/proc/%d/environ" % pid))
    head = "other pids: %s" % cut(",".join(map(str, others)), 200) if others else "no other pids visible"
    return {"denied": not leaks,
            "detail": "%s; %s; refusals: %s" % (
                head, "%d LEAKS: %s" % (len(leaks), cut(", ".join(leaks), 400)) if leaks else "no leaks",
                ",".join(sorted(refusals)) or "-")}


def caps(ctx):
    st = self_status()
    bad = [f for f in CAP_FIELDS if not st.get(f, "x").strip("0") == ""]
    if st.get("NoNewPrivs") != "1":
        bad.append("NoNewPrivs")
    if st.get("Seccomp") != "2":
        bad.append("Seccomp")
    shown = " ".join("%s=%s" % (f, st.get(f)) for f in CAP_FIELDS + ("NoNewPrivs", "Seccomp"))
    return {"denied": not bad, "detail": "%s%s" % ("WRONG: %s; " % ",".join(bad) if bad else "", shown)}


def escapes(ctx):
    """Each call must be refused (EPERM/EACCES/ENOSYS). Failing for another reason (EINVAL,
    EFAULT, ENOENT…) means the call got past the filter and the capability checks. Targets
    are chosen so that a success outside a sandbox changes nothing that matters (chroot '/',
    sethostname to the current name, setns into our own netns), is undone (the tmpfs that
    mount makes is what umount2 then removes; fds that succeed are closed) or happens in a
    throwaway fork (unshare, ptrace)."""
    if LIBC is None:
        return {"denied": False, "detail": NATIVE_ERROR}
    results = []

    def record(name, rc, err, where="", after=None):
        refused = rc == -1 and err in REFUSED
        if not refused and rc >= 0 and after:
            try_do(lambda: after(rc))
        text = err if rc == -1 else "ALLOWED rc=%d" % rc
        results.append((name, refused, text + (" (%s)" % where if where else "")))

    import tempfile
    ok, target = try_do(lambda: tempfile.mkdtemp(prefix="spore-probe-mnt-"))
    if not ok:
        target = "/var/task"
    record("mount", *sys_call(SYS["mount"], "none", target, "tmpfs", 0, "size=16k"))
    # umount2 takes down the tmpfs mount made (outside a sandbox); else a plain directory
    # (EINVAL if the call is let through, EPERM if refused)
    record("umount2", *sys_call(SYS["umount2"], target, 0))
    if ok:
        try_do(lambda: os.rmdir(target))

    record("unshare(CLONE_NEWUSER)", *in_child(lambda: sys_call(SYS["unshare"], CLONE_NEWUSER)))
    record("unshare(CLONE_NEWNS)", *in_child(lambda: sys_call(SYS["unshare"], CLONE_NEWNS)))
    ok, ns_fd = try_do(lambda: os.open("/proc/self/ns/net", os.O_RDONLY))
    if ok:
        record("setns(net)", *sys_call(SYS["setns"], ns_fd, 0))
        os.close(ns_fd)
    else:
        results.append(("setns(net)", True, "open /proc/self/ns/net: %s" % ns_fd))
    tracer = self_status().get("TracerPid", "0")
    if tracer != "0":
        results.append(("ptrace(TRACEME)", False, "ALREADY TRACED by %s" % tracer))
    else:
        # in a fork too: a traced process stops at its next signal (SIGCHLD included)
        record("ptrace(TRACEME)", *in_child(lambda: sys_call(SYS["ptrace"], 0, 0, None, None)))
    record("keyctl(GET_KEYRING_ID)", *sys_call(SYS["keyctl"], 0, -3, 0))  # -3: session keyring
    record("bpf(PROG_LOAD, NULL)", *sys_call(SYS["bpf"], 5, None, 0), after=os.close)
    record("perf_event_open(NULL)", *sys_call(SYS["perf_event_open"], None, 0, -1, -1, 0), after=os.close)
    params = ctypes.create_string_buffer(120)  # struct io_uring_params, zeroed
    record("io_uring_setup", *sys_call(SYS["io_uring_setup"], 1, params), after=os.close)
    # Linux AIO: fs.aio-max-nr is the node's one limit (a handler took all of it)
    aio_ctx = ctypes.c_ulong(0)
    record("io_setup(65536)", *sys_call(SYS["io_setup"], 65536, ctypes.byref(aio_ctx)),
           after=lambda _rc: sys_call(207, aio_ctx.value))  # io_destroy, outside a sandbox
    record("chroot(/)", *sys_call(SYS["chroot"], "/"))
    host = os.uname().nodename
    record("sethostname(same)", *sys_call(SYS["sethostname"], host, len(host.encode())))
    record("pivot_root", *sys_call(SYS["pivot_root"], "/nonexistent-spore-probe", "/nonexistent-spore-probe"))
    return {"denied": all(r for _, r, _ in results),
            "detail": "; ".join("%s: %s" % (n, t) for n, _, t in results)}


def log_fd(ctx):
    problems, parts = [], []
    for fd in (1, 2):
        ok, t = try_do(lambda: os.readlink("/proc/self/fd/%d" % fd))
        if not ok or not t.startswith("pipe:["):
            problems.append("fd %d not a pipe" % fd)
        parts.append("fd %d → %s" % (fd, t))
    # Read fd 1 only where it cannot block: a write-only fd (EBADF at once) or a regular file.
    ok_m, mode = try_do(lambda: access_mode(1))
    ok_s, st = try_do(lambda: os.fstat(1))
    regular = ok_s and stat.S_ISREG(st.st_mode)
    if ok_m and (mode == 1 or regular):
        ok, v = try_do(lambda: os.read(1, 16))
        if ok:
            problems.append("fd 1 readable")
        parts.append("read(1): %s" % ("READ %d bytes" % len(v) if ok else v))
    else:
        problems.append("fd 1 readable")
        how = ("reading", "writing", "reading and writing")[mode] if ok_m and 0 <= mode <= 2 else mode
        parts.append("read(1) not tried: fd 1 open for %s" % how)
    return {"denied": not problems,
            "detail": "%s%s" % (", ".join(problems) + "; " if problems else "", "; ".join(parts))}


CHECKS = {
    "hostFiles": host_files, "hostWrite": host_write, "fdEscape": fd_escape,
    "hostProcs": host_procs, "signalSeed": signal_seed, "hostLoopback": host_loopback,
    "hostAddr": host_addr, "abstractSocket": abstract_socket, "sysvIpc": sysv_ipc,
    "siblingTmp": sibling_tmp, "siblingProc": sibling_proc, "caps": caps,
    "escapes": escapes, "logFd": log_fd,
}


def run_checks(phase, ev):
    report = {}
    for name, check in CHECKS.items():
        try:
            report[name] = check({"phase": phase, "ev": ev})
        except BaseException as e:  # noqa: BLE001
            report[name] = {"denied": False, "detail": "the check raised: %s" % code_of(e)}
    return report


# --- facts --------------------------------------------------------------------------------

def mountinfo():
    def unescape(s):
        import re
        return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), s)
    out = []
    for line in read_text("/proc/self/mountinfo").splitlines():
        f = line.split(" ")
        dash = f.index("-")
        out.append({"mountPoint": unescape(f[4]), "fsType": f[dash + 1], "options": f[5]})
    return sorted(out, key=lambda m: m["mountPoint"])


def rlimits():
    text = read_text("/proc/self/limits")

    def get(label):
        for line in text.splitlines():
            if line.startswith(label):
                soft, hard = line[len(label):].split()[:2]
                return {"soft": soft, "hard": hard}
        return None
    return {"nofile": get("Max open files"), "fsize": get("Max file size"), "nproc": get("Max processes")}


def landlock_abi():
    if LIBC is None:
        return NATIVE_ERROR
    rc, err = sys_call(SYS["landlock_create_ruleset"], None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    return rc if rc >= 0 else err


def facts(extra):
    def get(f):
        ok, v = try_do(f)
        return v if ok else "error: %s" % v
    st = get(self_status)
    st = st if isinstance(st, dict) else {}
    out = {
        "uid": os.getuid(),
        "gid": os.getgid(),
        "uidMap": get(lambda: read_text("/proc/self/uid_map")),
        "gidMap": get(lambda: read_text("/proc/self/gid_map")),
        "status": {k: st.get(k) for k in CAP_FIELDS + ("NoNewPrivs", "Seccomp")},
        "mountinfo": get(mountinfo),
        "ns": get(lambda: {n: get(lambda: os.readlink("/proc/self/ns/" + n)) for n in sorted(os.listdir("/proc/self/ns"))}),
        "hostname": get(lambda: os.uname().nodename),
        "cwd": get(os.getcwd),
        "tmp": get(lambda: os.path.realpath("/tmp")),
        "landlock": get(landlock_abi),
        "rlimits": get(rlimits),
        "fds": get(fd_table),
        "pid": os.getpid(),
        "procPids": get(pids_in_proc),
    }
    out.update(extra)
    return out


# --- init and handler ---------------------------------------------------------------------

def host_facts():
    try:
        v = json.loads(os.environ.get("SPORE_PROBE_HOST") or "{}")
        return v if isinstance(v, dict) else {}
    except ValueError:
        return {}


HELD_TMP = hold_tmp_dirs(host_facts())
INIT = run_checks("init", host_facts())


def handler(event, context):
    ev = host_facts()
    if isinstance(event, dict):
        ev.update(event)
    marker = None
    if ev.get("marker"):
        p = os.path.join("/tmp", str(ev["marker"]))

        def write():
            with open(p, "w") as fh:
                fh.write("marker %s from pid %d\n" % (ev["marker"], os.getpid()))
        ok, v = try_do(write)
        marker = {"path": p, "written": True if ok else v}
    if ev.get("holdMs"):
        time.sleep(float(ev["holdMs"]) / 1000)
    return {"init": INIT, "handler": run_checks("handler", ev), "facts": facts({"marker": marker})}
