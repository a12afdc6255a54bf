# spore Python language seed (L1) and function seed (L2).
#
# Run as: python3 -S -E zygote.py <seeds.sock> <seed id>
# Speaks the wire protocol of seeds/protocol.ts over the unix socket: newline-delimited JSON,
# one request at a time, results and exits reported as they happen. Single-threaded: one
# epoll loop over the control socket, each live instance's result pipe and each child's
# pidfd (exits are learned from the pidfd, then reaped with waitpid; no SIGCHLD).
#
# Pure stdlib. Start-up imports only what every fork needs (ctypes for PR_SET_PDEATHSIG in each
# child; json; importlib.util for loading function modules); the rest is imported lazily
# (traceback on errors, binascii for seccomp, asyncio for coroutine handlers).

import os
import sys
import time

_T_START = time.perf_counter_ns()

import _socket
import select
import json
import gc
import ctypes
import importlib.util  # every L1-fallback instance and child seed loads a module with it

_perf = time.perf_counter_ns

PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38
SIGKILL = 9
CLONE_NEWNET = 0x40000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWNS = 0x00020000
SECCOMP_SET_MODE_FILTER = 1
_SYS_SECCOMP = {'x86_64': 317, 'aarch64': 277, 'i686': 354, 'i386': 354, 'armv7l': 383, 's390x': 348,
                'ppc64le': 358, 'riscv64': 277}
EPOLLIN = select.EPOLLIN
EPOLL_ERRHUP = select.EPOLLERR | select.EPOLLHUP

_libc = None


def libc():
    global _libc
    if _libc is None:
        lib = ctypes.CDLL(None, use_errno=True)
        ul = ctypes.c_ulong
        lib.prctl.argtypes = [ctypes.c_int, ul, ul, ul, ul]
        lib.prctl.restype = ctypes.c_int
        lib.setns.argtypes = [ctypes.c_int, ctypes.c_int]
        lib.setns.restype = ctypes.c_int
        lib.syscall.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_long, ctypes.c_void_p]
        lib.syscall.restype = ctypes.c_long
        _libc = lib
    return _libc


def _oserror(what):
    e = ctypes.get_errno()
    return OSError(e, '%s: %s' % (what, os.strerror(e)))


def _us(ns):
    return ns // 1000


_LINEAGE_SECCOMP = None  # set in a freshly forked child seed, consumed before its load


class Become(BaseException):
    """Raised in a freshly forked child seed to unwind out of the parent's loop."""

    def __init__(self, seed_id, load, env, t0, handler, loaded):
        super().__init__(seed_id)
        self.seed_id = seed_id
        self.load = load
        self.env = env
        self.t0 = t0
        self.handler = handler  # the parent's loaded function, if any (replicas of L2 keep it)
        self.loaded = loaded


class Child:
    __slots__ = ('id', 'pid', 'kind', 'pidfd', 'rfd', 'afd', 'buf', 'deadline', 'timed_out', 'timeout_ms', 'answered')

    def __init__(self, cid, pid, kind, pidfd, rfd, afd, timeout_ms):
        self.id = cid
        self.pid = pid
        self.kind = kind  # 'instance' | 'seed'
        self.pidfd = pidfd
        self.rfd = rfd  # result pipe read end (instances)
        self.afd = afd  # activation pipe write end (parked instances)
        self.buf = b''
        self.deadline = None  # perf_counter_ns
        self.timed_out = False
        self.timeout_ms = timeout_ms
        self.answered = False


# --- function code ------------------------------------------------------------------------

_mod_seq = 0


def load_function(load):
    """Imports load.module (runs its top-level code) and returns the handler callable."""
    global _mod_seq
    path = load['module']
    name = load['handler']
    _mod_seq += 1
    modname = 'spore_fn_%d_%d' % (os.getpid(), _mod_seq)
    d = os.path.dirname(os.path.abspath(path))
    if d not in sys.path:
        sys.path.insert(0, d)
    spec = importlib.util.spec_from_file_location(modname, path)
    if spec is None or spec.loader is None:
        raise ImportError('cannot load module from %r' % (path,))
    mod = importlib.util.module_from_spec(spec)
    sys.modules[modname] = mod
    spec.loader.exec_module(mod)
    fn = getattr(mod, name, None)
    if fn is None and '.' in name:
        fn = getattr(mod, name.rsplit('.', 1)[1], None)
    if fn is None:
        raise AttributeError('module %r has no handler %r' % (path, name))
    if not callable(fn):
        raise TypeError('handler %r of %r is not callable' % (name, path))
    return fn


def reinit_uniqueness():
    """Per-child uniqueness: reseed random generators, drop id caches (forks share memory)."""
    m = sys.modules
    r = m.get('random')
    if r is not None:
        r.seed(int.from_bytes(os.urandom(32), 'little'))
    u = m.get('uuid')
    if u is not None and hasattr(u, '_last_timestamp'):
        u._last_timestamp = None
    t = m.get('tempfile')
    if t is not None and hasattr(t, '_name_sequence'):
        t._name_sequence = None
    s = m.get('ssl')
    if s is not None and hasattr(s, 'RAND_add'):
        try:
            s.RAND_add(os.urandom(32), 32.0)
        except Exception:
            pass
    npr = m.get('numpy.random')
    if npr is not None:
        try:
            npr.seed()
        except Exception:
            pass


def _errinfo(kind, exc):
    import traceback
    return {'kind': kind, 'message': '%s: %s' % (type(exc).__name__, exc),
            'stack': ''.join(traceback.format_exception(type(exc), exc, exc.__traceback__))}


class Context:
    __slots__ = ('function_name', 'request_id', 'deadline_ms', 'memory_limit_mib')

    def __init__(self, c):
        self.function_name = c.get('functionName', '')
        self.request_id = c.get('requestId', '')
        self.deadline_ms = c.get('deadlineMs', 0)
        self.memory_limit_mib = c.get('memoryLimitMiB', 0)

    def remaining_time_ms(self):
        return max(0, int(self.deadline_ms - time.time() * 1000))

    # AWS Lambda spellings
    @property
    def aws_request_id(self):
        return self.request_id

    @property
    def memory_limit_in_mb(self):
        return self.memory_limit_mib

    def get_remaining_time_in_millis(self):
        return self.remaining_time_ms()


# --- the seed -----------------------------------------------------------------------------


class Seed:
    def __init__(self, sock_path, seed_id, handler, load):
        self.sock_path = sock_path
        self.id = seed_id
        self.handler = handler  # loaded function (L2) or None (L1)
        self.load = load  # the load spec the handler came from
        self.sock = None
        self.ep = None
        self.children = {}  # id -> Child
        self.by_fd = {}  # fd -> (Child, is_pidfd)
        self.rbuf = b''

    # -- wire
    def send(self, obj):
        self.send_raw(json.dumps(obj, separators=(',', ':')).encode() + b'\n')

    def send_raw(self, data):
        try:
            self.sock.sendall(data)
        except OSError:
            self.shutdown(report=False)  # spored is gone: never leave orphans

    def connect(self):
        s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
        s.connect(self.sock_path)
        self.sock = s

    # -- loop
    def serve(self):
        ep = select.epoll()
        self.ep = ep
        sfd = self.sock.fileno()
        ep.register(sfd, EPOLLIN)
        while True:
            timeout = -1
            now = _perf()
            first = None
            for c in self.children.values():
                if c.deadline is not None and (first is None or c.deadline < first):
                    first = c.deadline
            if first is not None:
                timeout = max(0.0, (first - now) / 1e9)
            events = ep.poll(timeout)
            for fd, ev in events:
                if fd == sfd:
                    self.on_control()
                    continue
                ent = self.by_fd.get(fd)
                if ent is None:
                    continue
                child, is_pidfd = ent
                if is_pidfd:
                    self.on_exit(child)
                else:
                    self.on_result(child)
            if first is not None:
                now = _perf()
                for c in list(self.children.values()):
                    if c.deadline is not None and c.deadline <= now:
                        c.deadline = None
                        c.timed_out = True
                        self._kill(c)

    def on_control(self):
        try:
            data = self.sock.recv(262144)
        except OSError:
            data = b''
        if not data:
            self.shutdown(report=False)
        t_recv = _perf()
        buf = self.rbuf + data
        while True:
            i = buf.find(b'\n')
            if i < 0:
                break
            line = buf[:i]
            buf = buf[i + 1:]
            self.rbuf = buf
            if line.strip():
                self.dispatch(line, t_recv)
        self.rbuf = buf

    def dispatch(self, line, t_recv):
        try:
            msg = json.loads(line)
        except ValueError as e:
            sys.stderr.write('zygote %s: bad frame: %s\n' % (self.id, e))
            return
        t = msg.get('t')
        if t == 'fork':
            self.do_fork(msg, t_recv)
        elif t == 'activate':
            self.do_activate(msg, line)
        elif t == 'kill':
            c = self.children.get(msg.get('id'))
            if c is not None:
                self._kill(c)
        elif t == 'seed':
            self.do_seed(msg, t_recv)
        elif t == 'stats':
            self.send({'t': 'stats', 'id': self.id, 'pid': os.getpid(), 'children': len(self.children)})
        elif t == 'exit':
            self.shutdown(report=True)
        else:
            sys.stderr.write('zygote %s: unknown message %r\n' % (self.id, t))

    # -- children bookkeeping
    def _track(self, c):
        self.children[c.id] = c
        self.by_fd[c.pidfd] = (c, True)
        self.ep.register(c.pidfd, EPOLLIN)
        if c.rfd is not None:
            self.by_fd[c.rfd] = (c, False)
            self.ep.register(c.rfd, EPOLLIN)

    def _close_rfd(self, c):
        if c.rfd is not None:
            self.by_fd.pop(c.rfd, None)
            try:
                self.ep.unregister(c.rfd)
            except (OSError, ValueError):
                pass
            os.close(c.rfd)
            c.rfd = None

    def _close_afd(self, c):
        if c.afd is not None:
            os.close(c.afd)
            c.afd = None

    def _kill(self, c):
        try:
            os.kill(c.pid, SIGKILL)  # not yet reaped, so the pid cannot have been reused
        except ProcessLookupError:
            pass
        self._close_afd(c)

    def _drain(self, c):
        """Reads what the child wrote; relays complete result lines. Returns False at EOF."""
        while c.rfd is not None:
            try:
                data = os.read(c.rfd, 262144)
            except BlockingIOError:
                return True
            if not data:
                self._close_rfd(c)
                return False
            buf = c.buf + data
            while True:
                i = buf.find(b'\n')
                if i < 0:
                    break
                line = buf[:i + 1]
                buf = buf[i + 1:]
                if self._own_result(c, line):
                    self.send_raw(line)
            c.buf = buf
        return False

    @staticmethod
    def _own_result(c, line):
        """Handler code shares the child's pipe: relay one result for this instance only,
        never a line that speaks for another instance or as the seed."""
        if c.answered:
            return False
        try:
            m = json.loads(line)
        except ValueError:
            return False
        if not isinstance(m, dict) or m.get('t') != 'result' or m.get('id') != c.id:
            return False
        c.answered = True
        return True

    def on_result(self, c):
        self._drain(c)

    def on_exit(self, c):
        self._drain(c)  # results go out before the exit
        self._close_rfd(c)
        self._close_afd(c)
        self.by_fd.pop(c.pidfd, None)
        try:
            self.ep.unregister(c.pidfd)
        except (OSError, ValueError):
            pass
        os.close(c.pidfd)
        self.children.pop(c.id, None)
        try:
            _, status = os.waitpid(c.pid, 0)
        except ChildProcessError:
            status = None
        code = sig = None
        if status is not None:
            if os.WIFEXITED(status):
                code = os.WEXITSTATUS(status)
            elif os.WIFSIGNALED(status):
                sig = os.WTERMSIG(status)
        self.send({'t': 'exit', 'id': c.id, 'pid': c.pid, 'code': code, 'signal': sig,
                   'timedOut': c.timed_out})

    def shutdown(self, report):
        for c in list(self.children.values()):
            try:
                os.kill(c.pid, SIGKILL)
            except ProcessLookupError:
                pass
        for c in list(self.children.values()):
            if report:
                try:
                    self.on_exit(c)
                    continue
                except OSError:
                    report = False
            try:
                os.waitpid(c.pid, 0)
            except ChildProcessError:
                pass
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except Exception:
            pass
        os._exit(0)

    def _close_inherited(self):
        """In a fresh child: drop the parent's connection and all instance bookkeeping fds.
        Plain close (never epoll unregister: the epoll instance is shared with the parent)."""
        self.ep.close()  # closes our fd only; the registrations belong to the parent's file
        fds = [self.sock.fileno()]
        for c in self.children.values():
            fds.append(c.pidfd)
            if c.rfd is not None:
                fds.append(c.rfd)
            if c.afd is not None:
                fds.append(c.afd)
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self.sock.detach()
        self.children = {}
        self.by_fd = {}
        self.rbuf = b''

    # -- fork an instance
    def do_fork(self, msg, t_recv):
        iid = msg['id']
        if iid in self.children:
            self.send({'t': 'forkFailed', 'id': iid, 'message': 'duplicate id'})
            return
        request = msg.get('request')
        r = w = ar = aw = None
        # the result goes straight to spored's FIFO when it gave a slot (pools/result-fifos.ts)
        slot = (msg.get('bind') or {}).get('resultSlot')
        fifo = os.path.join(os.path.dirname(self.sock_path), 'results', str(int(slot))) if slot is not None else None
        try:
            if fifo is None:
                r, w = os.pipe()  # O_CLOEXEC: handler subprocesses do not inherit them
            if request is None:
                ar, aw = os.pipe()
            ppid = os.getpid()
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
        except OSError as e:
            for fd in (r, w, ar, aw):
                if fd is not None:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
            self.send({'t': 'forkFailed', 'id': iid, 'message': str(e)})
            return
        if pid == 0:
            t0 = _perf()
            try:
                self._instance(msg, t0, ppid, r, w, ar, aw, fifo)
            finally:
                os._exit(70)
        t_fork = _perf()
        if w is not None:
            os.close(w)
        if ar is not None:
            os.close(ar)
        if r is not None:
            os.set_blocking(r, False)
        pidfd = os.pidfd_open(pid)
        c = Child(iid, pid, 'instance', pidfd, r, aw, msg.get('timeoutMs') or 0)
        if request is not None and c.timeout_ms > 0:
            c.deadline = t_fork + c.timeout_ms * 1000000
        self._track(c)
        self.send({'t': 'forked', 'id': iid, 'pid': pid, 'forkUs': _us(t_fork - t_recv)})

    def do_activate(self, msg, line):
        c = self.children.get(msg.get('id'))
        if c is None or c.afd is None:
            sys.stderr.write('zygote %s: activate for unknown or active instance %r\n' % (self.id, msg.get('id')))
            return
        data = line + b'\n'
        try:
            while data:
                n = os.write(c.afd, data)
                data = data[n:]
        except OSError:
            pass  # the instance died; its exit is reported from the pidfd
        self._close_afd(c)
        if c.timeout_ms > 0:
            c.deadline = _perf() + c.timeout_ms * 1000000

    # -- instance child (never returns)
    def _instance(self, msg, t0, ppid, r, w, ar, aw, fifo):
        lib = libc()
        lib.prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0)
        if os.getppid() != ppid:
            os._exit(1)
        self._close_inherited()
        if r is not None:
            os.close(r)
        if aw is not None:
            os.close(aw)
        if fifo is not None:
            # while still root (the FIFOs are root-only), before anything can fail
            try:
                w = os.open(fifo, os.O_WRONLY | os.O_CLOEXEC)
            except OSError:
                os._exit(71)
        env = msg.get('env')
        if env:
            os.environ.update(env)
        request = msg.get('request')
        if request is None:
            buf = b''
            while not buf.endswith(b'\n'):
                chunk = os.read(ar, 262144)
                if not chunk:
                    os._exit(0)  # the seed dropped the parked instance
                buf += chunk
            os.close(ar)
            t0 = _perf()
            request = json.loads(buf)['request']
        iid = msg['id']
        timings = {'bind': 0, 'seccomp': 0, 'init': 0, 'execute': 0}
        out = {'t': 'result', 'id': iid, 'ok': False, 'value': None, 'error': None, 'timings': timings}
        code = 0
        try:
            code = self._run(msg, request, t0, timings, out)
        except BaseException as e:  # noqa: internal failure (bind, seccomp, bad request)
            out['ok'] = False
            out['value'] = None
            out['error'] = _errinfo('internal', e)
            code = 1
        if fifo is not None:
            out['token'] = (msg.get('bind') or {}).get('resultToken') or ''
            code = 0  # the result says how it went; exit 0 tells spored to wait for the line
        try:
            data = json.dumps(out, separators=(',', ':')).encode() + b'\n'
        except Exception as e:
            data = json.dumps({'t': 'result', 'id': iid, 'ok': False, 'value': None,
                               'error': {'kind': 'internal', 'message': str(e), 'stack': None},
                               'timings': timings, 'token': out.get('token')}).encode() + b'\n'
        try:
            while data:
                n = os.write(w, data)
                data = data[n:]
        except OSError:
            pass
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except Exception:
            pass
        os._exit(code)

    def _run(self, msg, request, t0, timings, out):
        bind = msg.get('bind') or {}
        # 1. cgroup, netns
        for p in bind.get('cgroupProcs') or ():
            fd = os.open(p, os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, b'0')
            finally:
                os.close(fd)
        ns = bind.get('netns')
        if ns:
            fd = os.open(ns, os.O_RDONLY | os.O_CLOEXEC)
            try:
                if libc().setns(fd, CLONE_NEWNET) != 0:
                    raise _oserror('setns(%s)' % ns)
            finally:
                os.close(fd)
        if msg.get('fresh'):
            # experiments: this instance's own IPC + mount namespaces instead of the lineage's
            if libc().unshare(CLONE_NEWIPC | CLONE_NEWNS) != 0:
                raise _oserror('unshare(IPC|NS)')
        t1 = _perf()
        timings['bind'] = _us(t1 - t0)
        # 2. uniqueness
        reinit_uniqueness()
        t2 = _perf()
        # 3. seccomp (user code, including an L1 fallback's module top level, runs under it)
        filt = bind.get('seccomp')
        if filt:
            apply_seccomp(filt, bind.get('seccompFlags') or 0, bind.get('noNewPrivs', True))
        elif bind.get('noNewPrivs'):
            if libc().prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
                raise _oserror('prctl(PR_SET_NO_NEW_PRIVS)')
        t3 = _perf()
        timings['seccomp'] = _us(t3 - t2)
        # 4. code (L1 fallback)
        load = msg.get('load')
        handler = self.handler
        if load and (handler is None or load != self.load):
            try:
                handler = load_function(load)
            except BaseException as e:
                timings['init'] = _us(t2 - t1 + _perf() - t3)
                out['error'] = _errinfo('load', e)
                return 1
        t4 = _perf()
        timings['init'] = _us(t2 - t1 + t4 - t3)
        if handler is None:
            out['error'] = {'kind': 'load', 'message': 'no function loaded in seed %s' % self.id, 'stack': None}
            return 1
        # 5. handler
        event = json.loads(request['event']) if request.get('event') not in (None, '') else None
        ctx = Context(request.get('context') or {})
        try:
            value = handler(event, ctx)
            if hasattr(value, '__await__'):
                import asyncio
                value = asyncio.run(_await(value))
            text = json.dumps(value)
        except BaseException as e:
            timings['execute'] = _us(_perf() - t4)
            out['error'] = _errinfo('handler', e)
            return 0
        timings['execute'] = _us(_perf() - t4)
        out['ok'] = True
        out['value'] = text
        return 0

    # -- child seed
    def do_seed(self, msg, t_recv):
        sid = msg['id']
        if sid in self.children:
            self.send({'t': 'forkFailed', 'id': sid, 'message': 'duplicate id'})
            return
        ppid = os.getpid()
        try:
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
        except OSError as e:
            self.send({'t': 'forkFailed', 'id': sid, 'message': str(e)})
            return
        if pid == 0:
            t0 = _perf()
            try:
                libc().prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0)
                if os.getppid() != ppid:
                    os._exit(1)
                self._close_inherited()
            except BaseException:
                os._exit(70)
            global _LINEAGE_SECCOMP
            _LINEAGE_SECCOMP = msg.get('seccomp')
            raise Become(sid, msg.get('load'), msg.get('env'), t0, self.handler, self.load)
        t_fork = _perf()
        pidfd = os.pidfd_open(pid)
        self._track(Child(sid, pid, 'seed', pidfd, None, None, 0))
        self.send({'t': 'forked', 'id': sid, 'pid': pid, 'forkUs': _us(t_fork - t_recv)})


async def _await(a):
    return await a


def apply_seccomp(b64, flags, no_new_privs):
    import binascii
    prog = binascii.a2b_base64(b64)
    if not prog or len(prog) % 8:
        raise ValueError('seccomp: filter length %d is not a multiple of 8' % len(prog))
    n = len(prog) // 8
    if n > 4096:
        raise ValueError('seccomp: filter too long (%d)' % n)

    class SockFprog(ctypes.Structure):
        _fields_ = [('len', ctypes.c_ushort), ('filter', ctypes.c_void_p)]

    buf = ctypes.create_string_buffer(prog, len(prog))
    fprog = SockFprog(n, ctypes.addressof(buf))
    lib = libc()
    if no_new_privs and lib.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise _oserror('prctl(PR_SET_NO_NEW_PRIVS)')
    nr = _SYS_SECCOMP.get(os.uname().machine)
    if nr is None:
        raise OSError('seccomp: unknown syscall number on %s' % os.uname().machine)
    if lib.syscall(nr, SECCOMP_SET_MODE_FILTER, flags, ctypes.addressof(fprog)) != 0:
        raise _oserror('seccomp(SET_MODE_FILTER)')


def run_seed(sock_path, seed_id, load, env, t0, handler, loaded):
    """Connects, says hello, loads the function (child seeds), says ready, serves."""
    if env:
        os.environ.update(env)
    if load and loaded is not None and handler is not None and load == loaded:
        pass  # replica of a function seed: the code is already in memory, top level ran once
    elif load:
        handler = None
        loaded = load
    level = 2 if (load or handler is not None) else 1
    seed = Seed(sock_path, seed_id, handler, loaded)
    seed.connect()
    seed.send({'t': 'hello', 'id': seed_id, 'pid': os.getpid(), 'language': 'python', 'level': level})
    global _LINEAGE_SECCOMP
    if load and seed.handler is None:
        try:
            if _LINEAGE_SECCOMP:
                # the function seed filters itself before its init code runs (protocol `seed.seccomp`)
                filt, _LINEAGE_SECCOMP = _LINEAGE_SECCOMP, None
                apply_seccomp(filt['filter'], filt.get('flags') or 0, True)
            seed.handler = load_function(load)
        except BaseException as e:
            info = _errinfo('load', e)
            try:
                seed.send({'t': 'failed', 'id': seed_id, 'message': info['message'], 'stack': info['stack']})
            finally:
                os._exit(1)
    gc.collect()
    gc.freeze()  # keep the collector off the shared pages in forks
    seed.send({'t': 'ready', 'id': seed_id, 'initMs': round((_perf() - t0) / 1e6, 3)})
    seed.serve()


def main():
    if len(sys.argv) != 3:
        sys.stderr.write('usage: zygote.py <seeds.sock> <seed id>\n')
        os._exit(2)
    sock_path, seed_id = sys.argv[1], sys.argv[2]
    load = env = None
    t0 = _T_START
    handler = loaded = None
    while True:
        try:
            run_seed(sock_path, seed_id, load, env, t0, handler, loaded)
            os._exit(0)
        except Become as b:
            # we are a freshly forked child seed; the parent's state was dropped in do_seed
            seed_id, load, env, t0, handler, loaded = b.seed_id, b.load, b.env, b.t0, b.handler, b.loaded
            b.__traceback__ = None
            reinit_uniqueness()


if __name__ == '__main__':
    main()
