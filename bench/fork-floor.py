# The machine's fork floor for a Python process (bench/demo.ts, bench/floor.ts).
#
#   python3 fork-floor.py [N] [--touch-mb MB]
#       forks this interpreter N times (child os._exit(0), parent waits) and prints
#       {"n":N,"samples":[ms,...],"cpu_ms_per_fork":x,"touch_mb":MB}: fork + exit + wait per
#       sample, in milliseconds. With --touch-mb the parent first writes every page of an MB
#       MiB buffer (so fork copies the page tables of that much present, private memory).
#       cpu_ms_per_fork: CPU time (user + system) of the parent (RUSAGE_SELF) and of its
#       reaped children (RUSAGE_CHILDREN) over the N forks, divided by N.
#   python3 fork-floor.py --forkers K --seconds S [--touch-mb MB]
#       throughput: the parent touches MB MiB, forks K forkers (which share those pages
#       copy-on-write, so each of their forks copies the same page tables), then every forker
#       runs fork + _exit + waitpid in a loop for S seconds, all at once. Prints
#       {"forkers":K,"seconds":s,"forks":F,"forks_per_s":F/s,"p50_ms","p99_ms","cpu_ms_per_fork"}
#       (latency of each fork + exit + wait under that concurrency; CPU of the forkers and
#       their children per fork, from RUSAGE_CHILDREN).
#   python3 fork-floor.py --spawn N CMD [ARG...]
#       posix_spawn (glibc: clone(CLONE_VM|CLONE_VFORK) + exec) + waitpid of CMD, N times after
#       one warm-up: {"n":N,"samples":[ms,...]}.
#   python3 fork-floor.py --cgroup-move N
#       the cgroup floor every container start pays (runc and spore alike): the write of a
#       sleeping child's pid into cgroup.procs of a new cgroup (cgroup v2 when the host is
#       pure v2, else the v1 pids hierarchy), N times, 50 ms apart as container starts are.
#       The write takes cgroup_threadgroup_rwsem for writing; unless a hierarchy is mounted
#       with favordynmods, that waits for an RCU grace period. {"n":N,"samples":[ms,...],
#       "dir":path} or {"skipped":reason} (not root, no writable hierarchy).
import json, os, resource, sys, time


def cpu_ms(who):
    r = resource.getrusage(who)
    return (r.ru_utime + r.ru_stime) * 1000.0


def pct(xs, p):
    s = sorted(xs)
    if not s:
        return None
    i = min(len(s) - 1, max(0, -(-p * len(s) // 100) - 1))  # nearest rank
    return s[i]


def touch(mb):
    if mb <= 0:
        return None
    buf = bytearray(mb << 20)
    for i in range(0, len(buf), 4096):
        buf[i] = 1
    return buf


def arg(name, default=None):
    if name in sys.argv:
        return sys.argv[sys.argv.index(name) + 1]
    return default


def sequential(n, mb):
    keep = touch(mb)
    samples = []
    c0 = None
    for i in range(n + 3):
        if i == 3:
            c0 = cpu_ms(resource.RUSAGE_SELF) + cpu_ms(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        if i >= 3:  # the first forks fault in page tables once
            samples.append((time.perf_counter() - t0) * 1000)
    cpu = cpu_ms(resource.RUSAGE_SELF) + cpu_ms(resource.RUSAGE_CHILDREN) - c0
    del keep
    return {"n": n, "samples": samples, "cpu_ms_per_fork": cpu / n, "touch_mb": mb}


def throughput(k, seconds, mb):
    keep = touch(mb)
    go_r, go_w = os.pipe()
    out_r, out_w = os.pipe()
    c0 = cpu_ms(resource.RUSAGE_CHILDREN)
    pids = []
    for _ in range(k):
        pid = os.fork()
        if pid == 0:
            os.close(go_w)
            os.close(out_r)
            os.read(go_r, 1)  # wait for the start: all forkers begin together
            start = time.perf_counter()
            deadline = start + seconds
            lat = []
            while True:
                t0 = time.perf_counter()
                if t0 >= deadline:
                    break
                p = os.fork()
                if p == 0:
                    os._exit(0)
                os.waitpid(p, 0)
                lat.append(round((time.perf_counter() - t0) * 1000, 4))
            line = (json.dumps({"forks": len(lat), "lat": lat, "elapsed": time.perf_counter() - start}) + "\n").encode()
            # one write per forker; large results go in pieces (the parent drains concurrently)
            view = memoryview(line)
            while view:
                view = view[os.write(out_w, view):]
            os._exit(0)
        pids.append(pid)
    os.close(go_r)
    os.close(out_w)
    t_start = time.perf_counter()
    os.write(go_w, b"g" * k)
    chunks = []
    while True:
        b = os.read(out_r, 1 << 16)
        if not b:
            break
        chunks.append(b)
    for p in pids:
        os.waitpid(p, 0)
    wall = time.perf_counter() - t_start
    cpu = cpu_ms(resource.RUSAGE_CHILDREN) - c0
    del keep
    forks, lat, elapsed = 0, [], []
    for line in b"".join(chunks).decode().splitlines():
        r = json.loads(line)
        forks += r["forks"]
        lat.extend(r["lat"])
        elapsed.append(r["elapsed"])
    span = max(elapsed) if elapsed else wall
    return {
        "forkers": k, "seconds": span, "forks": forks, "forks_per_s": forks / span if span > 0 else None,
        "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99), "cpu_ms_per_fork": cpu / forks if forks else None, "touch_mb": mb,
    }


def spawn(n, argv):
    samples = []
    devnull = os.open(os.devnull, os.O_RDWR)
    fa = [(os.POSIX_SPAWN_DUP2, devnull, 0), (os.POSIX_SPAWN_DUP2, devnull, 1), (os.POSIX_SPAWN_DUP2, devnull, 2)]
    for i in range(n + 1):
        t0 = time.perf_counter()
        pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=fa)
        _, status = os.waitpid(pid, 0)
        if status != 0:
            raise SystemExit("%s exited with status %d" % (" ".join(argv), status))
        if i >= 1:
            samples.append((time.perf_counter() - t0) * 1000)
    return {"n": n, "samples": samples}


def cgroup_move(n):
    if os.geteuid() != 0:
        return {"skipped": "needs root"}
    base = "/sys/fs/cgroup" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "/sys/fs/cgroup/pids"
    d = os.path.join(base, "spore-floor-%d" % os.getpid())
    try:
        os.mkdir(d)
    except OSError as e:
        return {"skipped": "cannot make a cgroup under %s: %s" % (base, e.strerror)}
    samples = []
    try:
        for i in range(n + 1):
            pid = os.fork()
            if pid == 0:
                time.sleep(5)
                os._exit(0)
            try:
                time.sleep(0.05)
                t0 = time.perf_counter()
                with open(os.path.join(d, "cgroup.procs"), "w") as f:
                    f.write(str(pid))
                if i >= 1:
                    samples.append((time.perf_counter() - t0) * 1000)
            finally:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
    finally:
        os.rmdir(d)
    return {"n": n, "samples": samples, "dir": base}


def main():
    mb = int(arg("--touch-mb", "0"))
    if "--cgroup-move" in sys.argv:
        result = cgroup_move(int(arg("--cgroup-move")))
    elif "--spawn" in sys.argv:
        i = sys.argv.index("--spawn")
        result = spawn(int(sys.argv[i + 1]), sys.argv[i + 2:])
    elif "--forkers" in sys.argv:
        result = throughput(int(arg("--forkers")), float(arg("--seconds", "3")), mb)
    else:
        pos = [a for j, a in enumerate(sys.argv[1:], 1) if not a.startswith("--") and not sys.argv[j - 1].startswith("--")]
        n = max(1, int(pos[0]) if pos else 50)
        result = sequential(n, mb)
    print(json.dumps(result))


main()
