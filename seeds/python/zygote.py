# spore Python language seed (L1) and function seeds (L2).
#
# Run as: python3 -S -E zygote.py <seeds.sock> <seed id>
# Speaks the wire protocol of seeds/protocol.ts: newline-delimited JSON over a unix stream
# socket read with recvmsg (messages carry fds: SCM_RIGHTS). Single-threaded: one epoll
# loop over the link and each child's pidfd (exits are learned from the pidfd, then reaped
# with waitpid; no SIGCHLD).
#
# An L1 seed makes each function lineage in a fork of itself: the child is pid 1 of a new
# pid namespace and applies the lineage's SandboxPlan (apply_sandbox: the Python twin of
# seeds/node/sandbox.ts) before any function code runs, then loads the function (its init
# code, unprivileged) and serves as the lineage's L2 seed. Instances are forks of it that
# take their own /tmp slot and Landlock layer, read one request from their channel (an fd
# spored passed with the fork), write one result line and _exit.
#
# Pure stdlib. Everything the sandbox needs is imported before pivot_root.

import os
import sys
import time

_T_START = time.perf_counter_ns()

import _socket
import socket
import select
import json
import gc
import ctypes
import struct
import fcntl
import resource
import importlib

sys.dont_write_bytecode = True  # /var/task is read-only
_perf = time.perf_counter_ns

SIGKILL = 9
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MNT_DETACH = 2
PR_SET_DUMPABLE, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT = 4, 24, 38, 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
SYS = {'pivot_root': 155, 'capset': 126, 'seccomp': 317, 'landlock_create_ruleset': 444,
       'landlock_add_rule': 445, 'landlock_restrict_self': 446}
LL_EXECUTE, LL_WRITE_FILE, LL_READ_FILE, LL_READ_DIR = 1, 2, 4, 8
LL_MAKE_SYM, LL_REFER, LL_TRUNCATE, LL_IOCTL_DEV = 4096, 8192, 16384, 32768
LL_READ = LL_EXECUTE | LL_READ_FILE | LL_READ_DIR
LL_DEVICE = LL_READ_FILE | LL_READ_DIR | LL_WRITE_FILE | LL_TRUNCATE | LL_IOCTL_DEV
MAX_FDS = 8
MAX_RESULT_BYTES = 6 * 1024 * 1024  # seeds/protocol.ts
SLOT_INODES = 16384  # functions/sandbox.ts
EPOLLIN = select.EPOLLIN

_lib = ctypes.CDLL(None, use_errno=True)
_ul = ctypes.c_ulong
_lib.prctl.argtypes = [ctypes.c_int, _ul, _ul, _ul, _ul]
_lib.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, _ul, ctypes.c_char_p]
_lib.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_lib.unshare.argtypes = [ctypes.c_int]
_lib.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_lib.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
_lib.syscall.restype = ctypes.c_long


def _check(rc, what):
    if rc < 0:
        e = ctypes.get_errno()
        raise OSError(e, '%s: %s' % (what, os.strerror(e)))
    return rc


def _b(s):
    return None if s is None else s.encode()


def prctl(opt, a=0, b=0, c=0, d=0):
    return _check(_lib.prctl(opt, a, b, c, d), 'prctl(%d)' % opt)


def mount(src, target, fstype, flags, data):
    _check(_lib.mount(_b(src), _b(target), _b(fstype), flags, _b(data)), 'mount %s' % target)


def _us(ns):
    return ns // 1000


# --- the sandbox (seeds/protocol.ts SandboxPlan) ------------------------------------------

class SandboxError(Exception):
    def __init__(self, phase, cause):
        super().__init__('%s: %s' % (phase, cause))
        self.phase = phase


def _phase(name, f, *a):
    try:
        return f(*a)
    except SandboxError:
        raise
    except BaseException as e:
        raise SandboxError(name, e)


class RealSys:
    """The syscalls a sandbox executor makes (the vocabulary of seeds/sandbox-sys.ts), done.
    keep_fds, await_id_maps and set_env need the executor's context: given at construction."""

    def __init__(self, keep=(), log=None, to_parent=None, from_parent=None, plan=None):
        self._keep, self._log, self._to, self._from, self._plan = set(keep), log, to_parent, from_parent, plan

    def write(self, path, content):
        with open(path, 'w') as fh:
            fh.write(content)

    def unshare(self, flags):
        _check(_lib.unshare(flags), 'unshare(%#x)' % flags)

    def mount(self, src, target, fstype, flags, data):
        mount(src, target, fstype, flags, data)

    def umount2(self, target, flags):
        _check(_lib.umount2(target.encode(), flags), 'umount2')

    def pivot_root(self, new, old):
        _check(_lib.syscall(SYS['pivot_root'], new.encode(), old.encode()), 'pivot_root')

    def chdir(self, path):
        os.chdir(path)

    def mkdir(self, path, mode):
        os.makedirs(path, mode=mode, exist_ok=True)

    def chmod(self, path, mode):
        os.chmod(path, mode)

    def write_file(self, path, mode, content):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
        try:
            os.write(fd, content.encode())
        finally:
            os.close(fd)

    def symlink(self, target, path):
        os.symlink(target, path)

    def stat(self, path):
        if not os.path.exists(path):
            return None
        return 'dir' if os.path.isdir(path) else 'file'

    def sethostname(self, name):
        b = name.encode()
        _check(_lib.sethostname(b, len(b)), 'sethostname')

    def loopback_up(self):
        _loopback_up()

    def setrlimit(self, res, soft, hard):
        resource.setrlimit(res, (resource.RLIM_INFINITY if soft < 0 else soft, resource.RLIM_INFINITY if hard < 0 else hard))

    def drop_bounding_set(self):
        for cap in range(64):
            if _lib.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0:
                break  # EINVAL past the last capability

    def setgroups(self, gids):
        os.setgroups(gids)

    def setresgid(self, gid):
        os.setresgid(gid, gid, gid)

    def setresuid(self, uid):
        os.setresuid(uid, uid, uid)

    def seteuid(self, uid):
        os.setresuid(-1, uid, -1)

    def capset(self):
        _capset_zero()

    def prctl(self, opt, arg):
        prctl(opt, arg)

    def landlock_abi(self):
        return landlock_abi()

    def landlock_create_ruleset(self, handled, scope):
        return _ruleset(handled, scope)

    def landlock_add_rule(self, rs, path, rights):
        _rule_path(rs, path, rights)

    def landlock_restrict_self(self, rs):
        try:
            _check(_lib.syscall(SYS['landlock_restrict_self'], rs, 0), 'landlock_restrict_self')
        finally:
            os.close(rs)

    def seccomp(self, b64, flags):
        apply_seccomp(b64, flags)

    def keep_fds(self):
        _keep_only(self._plan, self._keep, self._log)

    def await_id_maps(self):
        os.write(self._to, b'u')
        if os.read(self._from, 1) != b'k':
            raise OSError('the parent seed did not write the id maps')
        os.close(self._to)
        os.close(self._from)

    def set_env(self, env):
        os.environ.clear()
        os.environ.update(env)


class RecordingSys:
    """Writes the calls down instead (test/sandbox-executors.test.ts compares the sequence with
    the Node executor's). stat answers from the host path with the sandbox root removed."""

    def __init__(self, root='', abi=7):
        self.calls = []
        self._root = root
        self._abi = abi

    def _rec(self, *c):
        self.calls.append(list(c))

    def write(self, path, content): self._rec('write', path, content)
    def unshare(self, flags): self._rec('unshare', flags)
    def mount(self, src, target, fstype, flags, data): self._rec('mount', src, target, fstype, flags, data)
    def umount2(self, target, flags): self._rec('umount2', target, flags)
    def pivot_root(self, new, old): self._rec('pivot_root', new, old)
    def chdir(self, path): self._rec('chdir', path)
    def mkdir(self, path, mode): self._rec('mkdir', path, mode)
    def chmod(self, path, mode): self._rec('chmod', path, mode)
    def write_file(self, path, mode, content): self._rec('write_file', path, mode, content)
    def symlink(self, target, path): self._rec('symlink', target, path)

    def stat(self, path):
        host = path[len(self._root):] or '/' if self._root and path.startswith(self._root) else path
        return RealSys().stat(host)

    def sethostname(self, name): self._rec('sethostname', name)
    def loopback_up(self): self._rec('loopback_up')
    def setrlimit(self, res, soft, hard): self._rec('setrlimit', res, soft, hard)
    def drop_bounding_set(self): self._rec('drop_bounding_set')
    def setgroups(self, gids): self._rec('setgroups', [str(g) for g in gids])
    def setresgid(self, gid): self._rec('setresgid', gid)
    def setresuid(self, uid): self._rec('setresuid', uid)
    def seteuid(self, uid): self._rec('seteuid', uid)
    def capset(self): self._rec('capset', 0, 0, 0)
    def prctl(self, opt, arg): self._rec('prctl', opt, arg)
    def landlock_abi(self): return self._abi

    def landlock_create_ruleset(self, handled, scope):
        self._rec('landlock_create_ruleset', handled, scope)
        return -1

    def landlock_add_rule(self, rs, path, rights): self._rec('landlock_add_rule', path, rights)
    def landlock_restrict_self(self, rs): self._rec('landlock_restrict_self')
    def seccomp(self, b64, flags): self._rec('seccomp', b64, flags)
    def keep_fds(self): self._rec('keep_fds')
    def await_id_maps(self): self._rec('await_id_maps')
    def set_env(self, env): self._rec('set_env', ['%s=%s' % (k, env[k]) for k in sorted(env)])


def _step(sy, root, s):
    op = s['op']
    at = root + s['path']
    if op == 'dir':
        sy.mkdir(at, s['mode'])
        sy.chmod(at, s['mode'])
    elif op == 'file':
        sy.write_file(at, s['mode'], s['content'])
    elif op == 'symlink':
        sy.symlink(s['target'], at)
    elif op == 'bind':
        sy.mount(s['source'], at, None, MS_BIND | (MS_REC if s['recursive'] else 0), None)
        sy.mount(None, at, None, MS_REMOUNT | MS_BIND | s['flags'], None)
    elif op == 'tmpfs':
        sy.mount('tmpfs', at, 'tmpfs', s['flags'], s['data'])
    elif op == 'proc':
        sy.mount('proc', at, 'proc', s['flags'], s.get('data'))
    elif op == 'mask':
        kind = sy.stat(at)
        if kind == 'dir':
            sy.mount('tmpfs', at, 'tmpfs', MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, 'size=0')
        elif kind == 'file':
            sy.mount('/dev/null', at, None, MS_BIND, None)
    elif op == 'readonly':
        if not sy.stat(at):
            return
        sy.mount(at, at, None, MS_BIND | MS_REC, None)
        sy.mount(None, at, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, None)
    elif op == 'remount':
        sy.mount(None, at, None, MS_REMOUNT | s['flags'], None)
    else:
        raise ValueError('unknown sandbox step %r' % op)


def _loopback_up():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        ifr = struct.pack('16sh', b'lo', 0)
        flags = struct.unpack('16sh', fcntl.ioctl(s.fileno(), 0x8913, ifr))[1]
        fcntl.ioctl(s.fileno(), 0x8914, struct.pack('16sh', b'lo', flags | 1))
    finally:
        s.close()


def _keep_only(plan, keep, log):
    """The fd allowlist: this interpreter holds no hidden fds of its own, so everything but
    `keep` is closed; then 0 = /dev/null, 1 and 2 = the log pipe, tmpFd = the init slot."""
    for name in os.listdir('/proc/self/fd'):
        fd = int(name)
        if fd > 2 and fd not in keep and fd != log:
            try:
                os.close(fd)
            except OSError:
                pass
    null = os.open('/dev/null', os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(null)
    os.close(log)
    slot = os.open(plan['slotDir'] + '/init', os.O_PATH | os.O_DIRECTORY)
    os.dup2(slot, plan['tmpFd'])
    os.close(slot)


def _capset_zero():
    hdr = struct.pack('Ii', 0x20080522, 0)
    data = bytes(24)
    hb = ctypes.create_string_buffer(hdr, len(hdr))
    db = ctypes.create_string_buffer(data, len(data))
    _check(_lib.syscall(SYS['capset'], hb, db), 'capset')


def landlock_abi():
    r = _lib.syscall(SYS['landlock_create_ruleset'], None, 0, 1)
    return 0 if r < 0 else r


def landlock_fs_rights(abi):
    r = 0
    if abi >= 1:
        r |= (LL_MAKE_SYM << 1) - 1
    if abi >= 2:
        r |= LL_REFER
    if abi >= 3:
        r |= LL_TRUNCATE
    if abi >= 5:
        r |= LL_IOCTL_DEV
    return r


def _landlock_scope(abi):
    return 3 if abi >= 6 else 0  # ABSTRACT_UNIX_SOCKET | SIGNAL


def _ruleset(handled, scope):
    attr = struct.pack('QQQ', handled, 0, scope)
    buf = ctypes.create_string_buffer(attr, len(attr))
    return _check(_lib.syscall(SYS['landlock_create_ruleset'], buf, 24 if scope else 16, 0), 'landlock_create_ruleset')


def _rule(rs, fd, allowed):
    attr = struct.pack('=Qi', allowed, fd)
    buf = ctypes.create_string_buffer(attr, len(attr))
    _check(_lib.syscall(SYS['landlock_add_rule'], rs, 1, buf, 0), 'landlock_add_rule')


def _rule_path(rs, path, allowed):
    fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    try:
        _rule(rs, fd, allowed)
    finally:
        os.close(fd)


def apply_seccomp(b64, flags):
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
    _check(_lib.syscall(SYS['seccomp'], 1, flags, ctypes.byref(fprog)), 'seccomp(SET_MODE_FILTER)')


def apply_sandbox(plan, link, log, to_parent, from_parent):
    """The real executor: the plan applied with real syscalls to this very process."""
    run_sandbox(plan, RealSys(keep=(link, to_parent, from_parent), log=log, to_parent=to_parent,
                              from_parent=from_parent, plan=plan))


def run_sandbox(plan, sy):
    """seeds/protocol.ts SandboxPlan through `sy`, in its order (the same as runSandbox in
    seeds/node/sandbox.ts; with a RecordingSys it only writes the sequence down)."""
    _phase('cgroup', lambda: [sy.write(f, '0') for f in plan['cgroupProcs']])
    _phase('namespaces', sy.unshare, CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNET)
    _phase('mount propagation', sy.mount, None, '/', None, MS_REC | MS_PRIVATE, None)
    root = plan['staging']
    _phase('root tmpfs', sy.mount, 'tmpfs', root, 'tmpfs', MS_NOSUID | MS_NODEV, plan['rootData'])
    for s in plan['steps']:
        _phase('%s %s' % (s['op'], s['path']), _step, sy, root, s)

    def pivot():
        sy.chdir(root)
        sy.pivot_root('.', '.')
        sy.umount2('.', MNT_DETACH)
        sy.chdir('/')
    _phase('pivot_root', pivot)
    _phase('root read-only', sy.mount, None, '/', None, MS_REMOUNT | MS_BIND | plan['rootFlags'], None)
    _phase('hostname', sy.sethostname, plan['hostname'])
    _phase('loopback', sy.loopback_up)
    _phase('cgroup namespace', sy.unshare, CLONE_NEWCGROUP)
    _phase('rlimits', lambda: [sy.setrlimit(r['resource'], r['soft'], r['hard']) for r in plan['rlimits']])
    _phase('fds', sy.keep_fds)

    def user_ns():
        # made with the effective uid the maps start at: that host uid owns the namespace,
        # and per-user limits are charged to it rather than to root (sandbox.ts says more)
        sy.seteuid(plan['idmap']['hostId'])
        sy.unshare(CLONE_NEWUSER)
        sy.await_id_maps()
        sy.drop_bounding_set()
        sy.setgroups([])
        sy.setresgid(plan['gid'])
        sy.setresuid(plan['uid'])
        sy.capset()
        sy.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
        sy.prctl(PR_SET_DUMPABLE, 0)
        sy.prctl(PR_SET_NO_NEW_PRIVS, 1)
    _phase('user namespace', user_ns)

    def landlock():
        abi = sy.landlock_abi()
        if abi == 0:
            return
        handled = landlock_fs_rights(abi)
        rs = sy.landlock_create_ruleset(handled, _landlock_scope(abi))
        ll = plan['landlock']
        for p in ll['readOnly']:
            sy.landlock_add_rule(rs, p, LL_READ & handled)
        for p in ll['devices']:
            sy.landlock_add_rule(rs, p, LL_DEVICE & handled)
        for p in ll['readWrite']:
            sy.landlock_add_rule(rs, p, handled)
        sy.landlock_restrict_self(rs)
    _phase('landlock', landlock)
    _phase('seccomp', sy.seccomp, plan['seccomp']['filter'], plan['seccomp'].get('flags') or 0)
    _phase('cwd', sy.chdir, plan['cwd'])
    sy.set_env(plan['env'])


class InstanceLayer:
    """An instance's own Landlock layer, prepared once in the seed: the O_PATH handles and
    the rule attributes for everything but the instance's slot are built here, so binding an
    instance is a handful of syscalls."""
    __slots__ = ('abi', 'handled', 'slot_dir', 'tmp_fd', 'ruleset_attr', 'ruleset_size', 'rules', 'fds')

    def __init__(self, plan):
        self.abi = landlock_abi()
        self.handled = landlock_fs_rights(self.abi)
        scope = _landlock_scope(self.abi)
        self.slot_dir = plan['slotDir']
        self.tmp_fd = plan['tmpFd']
        # TCP handled with no rule (ABI >= 4: BIND_TCP | CONNECT_TCP): an instance can neither
        # listen nor connect, so concurrent siblings cannot reach each other on loopback
        attr = struct.pack('QQQ', self.handled, 3 if self.abi >= 4 else 0, scope)
        self.ruleset_attr = ctypes.create_string_buffer(attr, len(attr))
        self.ruleset_size = 24 if scope else 16
        self.fds = []
        self.rules = []
        if self.abi:
            for paths, rights in ((plan['landlock']['instanceReadOnly'], LL_READ), (plan['landlock']['devices'], LL_DEVICE)):
                for p in paths:
                    fd = os.open(p, os.O_PATH | os.O_CLOEXEC)
                    self.fds.append(fd)
                    a = struct.pack('=Qi', rights & self.handled, fd)
                    self.rules.append(ctypes.create_string_buffer(a, len(a)))

    def bind(self, slot):
        """This instance's /tmp slot and a Landlock layer of its own; no privilege needed."""
        if not isinstance(slot, str) or len(slot) != 32 or any(ch not in '0123456789abcdef' for ch in slot):
            raise ValueError('bad /tmp slot name %r' % (slot,))
        fd = os.open('%s/%s' % (self.slot_dir, slot), os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        os.dup2(fd, self.tmp_fd)
        if self.abi:
            sc = _lib.syscall
            rs = _check(sc(SYS['landlock_create_ruleset'], self.ruleset_attr, self.ruleset_size, 0), 'landlock_create_ruleset')
            try:
                for r in self.rules:
                    _check(sc(SYS['landlock_add_rule'], rs, 1, r, 0), 'landlock_add_rule')
                _rule(rs, fd, self.handled)
                _check(sc(SYS['landlock_restrict_self'], rs, 0), 'landlock_restrict_self')
            finally:
                os.close(rs)
        os.close(fd)
        prctl(PR_SET_DUMPABLE, 0)


def mount_slots(pid, slot_dir, names, data, renew=False):
    """In an L1 seed (host root): mount instance /tmp slots in the mount namespace of its child
    lineage `pid`, then come back to its own (the twin of mountSlots in seeds/node/sandbox.ts)."""
    for n in names:
        if not isinstance(n, str) or len(n) != 32 or any(ch not in '0123456789abcdef' for ch in n):
            raise ValueError('bad slot name %r' % (n,))
    own = os.open('/proc/self/ns/mnt', os.O_RDONLY | os.O_CLOEXEC)
    theirs = os.open('/proc/%d/ns/mnt' % pid, os.O_RDONLY | os.O_CLOEXEC)
    try:
        _check(_lib.setns(theirs, CLONE_NEWNS), 'setns(mnt)')
        try:
            for n in names:
                path = '%s/%s' % (slot_dir, n)
                if renew:
                    _check(_lib.umount2(path.encode(), MNT_DETACH), 'umount2 %s' % path)
                else:
                    os.mkdir(path, 0o1777)
                mount('tmpfs', path, 'tmpfs', MS_NOSUID | MS_NODEV, data)
        finally:
            _check(_lib.setns(own, CLONE_NEWNS), 'setns(mnt) back')
    finally:
        os.close(own)
        os.close(theirs)


# --- function code ------------------------------------------------------------------------

def load_function(load):
    """Lambda's MODULE.FUNCTION: import /var/task/<module>.py (its top level runs here, once)."""
    path = load['module']
    if not path.startswith('/var/task/'):
        raise ImportError('module %r is not inside /var/task' % path)
    name = path[len('/var/task/'):].replace('/', '.')
    if '/var/task' not in sys.path:
        sys.path.insert(0, '/var/task')
    mod = importlib.import_module(name)
    fn = getattr(mod, load['handler'], None)
    if fn is None:
        raise AttributeError('module %r has no handler %r' % (name, load['handler']))
    if not callable(fn):
        raise TypeError('handler %r of %r is not callable' % (load['handler'], name))
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


_LOOKS_LIKE_JS = r'module\.exports|^\s*exports\.\w+\s*=|\brequire\(|=>|^\s*(const|let|function)\s'


def _load_error_message(message, exc):
    """What the deployer sees of an error in the function's top level: where in the package it
    happened (a SyntaxError says so itself), and, for a file that does not parse and reads as
    JavaScript, that it was deployed to the wrong runtime."""
    if isinstance(exc, SyntaxError):
        import re
        try:
            with open(exc.filename or '', encoding='utf-8', errors='replace') as f:
                text = f.read(1 << 16)
        except (OSError, ValueError):
            text = ''
        if re.search(_LOOKS_LIKE_JS, text, re.M):
            message += ' (this looks like JavaScript: deploy it as a .js file or with --runtime node)'
        return message
    where = None
    tb = exc.__traceback__
    while tb is not None:
        name = tb.tb_frame.f_code.co_filename
        if name.startswith('/var/task/'):
            where = '%s:%d' % (name, tb.tb_lineno)
        tb = tb.tb_next
    return '%s (%s)' % (message, where) if where else message


def _errinfo(kind, exc):
    import traceback
    return {'kind': kind, 'message': '%s: %s' % (type(exc).__name__, exc),
            'stack': ''.join(traceback.format_exception(type(exc), exc, exc.__traceback__))}


class Context:
    """Lambda's context object for Python handlers."""
    __slots__ = ('function_name', 'function_version', 'aws_request_id', 'memory_limit_in_mb',
                 'invoked_function_arn', 'deadline_ms')

    def __init__(self, c):
        self.function_name = c.get('functionName', '')
        self.function_version = c.get('functionVersion', '')
        self.aws_request_id = c.get('requestId', '')
        self.memory_limit_in_mb = c.get('memoryLimitMiB', 0)
        self.invoked_function_arn = 'arn:spore:function:%s:%s' % (self.function_name, self.function_version)
        self.deadline_ms = c.get('deadlineMs', 0)

    def get_remaining_time_in_millis(self):
        return max(0, int(self.deadline_ms - time.time() * 1000))

    # spore's earlier spellings
    @property
    def request_id(self):
        return self.aws_request_id

    @property
    def memory_limit_mib(self):
        return self.memory_limit_in_mb

    def remaining_time_ms(self):
        return self.get_remaining_time_in_millis()


async def _await(a):
    return await a


# --- the seed -----------------------------------------------------------------------------

class Next(BaseException):
    """Raised in a freshly forked child to unwind out of its parent's loop."""

    def __init__(self, kind, **kw):
        super().__init__(kind)
        self.kind = kind
        self.kw = kw


class Child:
    __slots__ = ('id', 'pid', 'pidfd', 'kind')

    def __init__(self, cid, pid, pidfd, kind):
        self.id = cid
        self.pid = pid
        self.pidfd = pidfd
        self.kind = kind


_own_pid_ns = -1


class Seed:
    def __init__(self, seed_id, level, link, fn):
        self.id = seed_id
        self.level = level
        self.link = link  # fd
        self.fn = fn  # (handler, InstanceLayer) in an L2 seed
        self.ep = None
        self.sock = None
        self.children = {}
        self.by_pid = {}
        self.by_pidfd = {}
        self.queued = []
        self.buf = b''

    def send(self, obj):
        data = json.dumps(obj, separators=(',', ':')).encode() + b'\n'
        try:
            while data:
                n = os.write(self.link, data)
                data = data[n:]
        except OSError:
            pass  # spored is gone: the loop sees EOF

    def take(self, n):
        if len(self.queued) < n:
            return None
        got, self.queued = self.queued[:n], self.queued[n:]
        return got

    def track(self, c):
        self.children[c.id] = c
        self.by_pid[c.pid] = c
        self.by_pidfd[c.pidfd] = c
        self.ep.register(c.pidfd, EPOLLIN)

    def leave(self, keep):
        """In a fresh child: nothing of the seed's role may remain reachable. Plain close:
        the epoll instance is shared with the parent until closed."""
        self.ep.close()
        if self.sock is not None:
            self.sock.close()
        else:
            os.close(self.link)
        for c in self.children.values():
            os.close(c.pidfd)
        for fd in self.queued:
            if fd not in keep:
                os.close(fd)
        self.children = {}
        self.queued = []

    def shutdown(self):
        for c in list(self.children.values()):
            try:
                os.kill(c.pid, SIGKILL)
            except ProcessLookupError:
                pass
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except Exception:
            pass
        os._exit(0)

    def reap(self):
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            c = self.by_pid.pop(pid, None)
            if c is None:
                continue  # an orphan reparented to us (pid 1 of the lineage)
            self.by_pidfd.pop(c.pidfd, None)
            self.children.pop(c.id, None)
            try:
                self.ep.unregister(c.pidfd)
            except (OSError, ValueError):
                pass
            os.close(c.pidfd)
            code = sig = None
            if os.WIFEXITED(status):
                code = os.WEXITSTATUS(status)
            elif os.WIFSIGNALED(status):
                sig = os.WTERMSIG(status)
            self.send({'t': 'exit', 'id': c.id, 'pid': pid, 'code': code, 'signal': sig, 'timedOut': False})

    def serve(self):
        """Serve until a fork makes this process something else (raises Next in the child)."""
        self.ep = select.epoll()
        self.ep.register(self.link, EPOLLIN)
        self.sock = socket.socket(fileno=self.link)
        space = socket.CMSG_SPACE(MAX_FDS * 4) * 4
        # pid 1 of a lineage also reaps orphans: it looks every second even without an
        # event; any other seed sleeps until one (its children's exits are pidfd events)
        reap_every = 1.0 if os.getpid() == 1 else -1
        while True:
            events = self.ep.poll(reap_every)
            saw_child = not events
            for fd, _ev in events:
                if fd != self.link:
                    saw_child = True
                    continue
                t0 = _perf()
                try:
                    data, anc, _flags, _addr = self.sock.recvmsg(262144, space, socket.MSG_CMSG_CLOEXEC)
                except (ConnectionResetError, BrokenPipeError):
                    data, anc = b'', []
                for level, typ, cdata in anc:
                    if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                        n = len(cdata) // 4
                        self.queued.extend(struct.unpack('%di' % n, cdata[:n * 4]))
                if not data:
                    self.shutdown()
                self.buf += data
                while True:
                    i = self.buf.find(b'\n')
                    if i < 0:
                        break
                    line, self.buf = self.buf[:i], self.buf[i + 1:]
                    try:
                        msg = json.loads(line)
                    except ValueError:
                        continue
                    self.dispatch(msg, t0)
                if len(self.buf) > 1 << 20:
                    self.shutdown()
            if saw_child:
                self.reap()

    def dispatch(self, msg, t0):
        t = msg.get('t')
        if t == 'fork':
            self.fork_instance(msg, t0)
        elif t == 'seed':
            self.fork_seed(msg, t0)
        elif t == 'kill':
            c = self.children.get(msg.get('id'))
            if c is not None:
                try:
                    os.kill(c.pid, SIGKILL)
                except ProcessLookupError:
                    pass
        elif t == 'stats':
            self.send({'t': 'stats', 'id': self.id, 'pid': os.getpid(), 'children': len(self.children)})
        elif t == 'slots':
            cid = msg.get('id')
            c = self.children.get(cid)
            try:
                if self.level != 1 or c is None or c.kind != 'seed':
                    raise ValueError('no child lineage %r here' % (cid,))
                mount_slots(c.pid, msg['slotDir'], msg['names'], 'mode=1777,size=%d,nr_inodes=%d' % (int(msg['bytes']), SLOT_INODES),
                            bool(msg.get('renew')))
                self.send({'t': 'slots', 'id': cid, 'count': len(msg['names'])})
            except BaseException as e:
                self.send({'t': 'slots', 'id': cid, 'count': 0, 'error': 'mounting /tmp slots failed: %s' % e})
        elif t == 'exit':
            self.shutdown()

    def _fail(self, iid, fds, why):
        for fd in fds or ():
            os.close(fd)
        self.send({'t': 'forkFailed', 'id': iid, 'message': why})

    def fork_instance(self, msg, t0):
        iid = msg['id']
        fds = self.take(1)
        if fds is None:
            return self._fail(iid, None, 'fork came without its channel fd')
        if self.fn is None or iid in self.children:
            return self._fail(iid, fds, 'duplicate id' if self.fn else 'this seed has no function loaded; instances fork from a function (L2) seed')
        try:
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
        except OSError as e:
            return self._fail(iid, fds, str(e))
        if pid == 0:
            t_child = _perf()
            self.leave(fds)
            raise Next('instance', msg=msg, channel=fds[0], fn=self.fn, t0=t_child)
        t_fork = _perf()
        os.close(fds[0])
        self.track(Child(iid, pid, os.pidfd_open(pid), 'instance'))
        self.send({'t': 'forked', 'id': iid, 'pid': pid, 'forkUs': _us(t_fork - t0)})

    def fork_seed(self, msg, t0):
        sid = msg['id']
        fds = self.take(msg.get('nfds') or 0)
        if fds is None:
            return self._fail(sid, None, 'seed came without its fds')
        if sid in self.children:
            return self._fail(sid, fds, 'duplicate id')
        if self.level == 1:
            if not msg.get('sandbox') or not msg.get('load') or len(fds) != 2:
                return self._fail(sid, fds, 'a function seed needs a sandbox plan, a module and two fds')
            return self.fork_lineage(msg, fds, t0)
        if self.fn is None:
            return self._fail(sid, fds, 'no function loaded')
        try:
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
        except OSError as e:
            return self._fail(sid, fds, str(e))
        if pid == 0:
            self.leave(fds)
            raise Next('replica', id=sid, link=fds[0], fn=self.fn)
        os.close(fds[0])
        self.track(Child(sid, pid, os.pidfd_open(pid), 'seed'))
        self.send({'t': 'forked', 'id': sid, 'pid': pid, 'forkUs': _us(_perf() - t0)})

    def fork_lineage(self, msg, fds, t0):
        """L1 -> a new function lineage, pid 1 of a new pid namespace; this (host) side writes
        the id maps of its user namespace when asked."""
        sid = msg['id']
        link, log = fds
        up_r, up_w = os.pipe()
        down_r, down_w = os.pipe()
        try:
            sys.stdout.flush()
            sys.stderr.flush()
            _check(_lib.unshare(CLONE_NEWPID), 'unshare(CLONE_NEWPID)')
            try:
                pid = os.fork()
            finally:
                if os.getpid() != 1:
                    _check(_lib.setns(_own_pid_ns, CLONE_NEWPID), 'setns(pid)')
        except OSError as e:
            for fd in (up_r, up_w, down_r, down_w):
                os.close(fd)
            return self._fail(sid, fds, str(e))
        if pid == 0:
            os.close(up_r)
            os.close(down_w)
            self.leave(fds)
            raise Next('lineage', msg=msg, link=link, log=log, to_parent=up_w, from_parent=down_r)
        for fd in (link, log, up_w, down_r):
            os.close(fd)
        self.track(Child(sid, pid, os.pidfd_open(pid), 'seed'))
        try:
            r, _, _ = select.select([up_r], [], [], 10.0)
            if r and os.read(up_r, 1) == b'u':
                m = msg['sandbox']['idmap']
                for f in ('uid_map', 'gid_map'):
                    with open('/proc/%d/%s' % (pid, f), 'w') as fh:
                        fh.write('0 %d %d\n' % (m['hostId'], m['size']))
                os.write(down_w, b'k')
        except OSError as e:
            try:
                os.kill(pid, SIGKILL)
            except ProcessLookupError:
                pass
            self.send({'t': 'failed', 'id': sid, 'message': 'writing the id maps failed: %s' % e, 'stack': None,
                       'phase': 'user namespace'})
        finally:
            os.close(up_r)
            os.close(down_w)
        self.send({'t': 'forked', 'id': sid, 'pid': pid, 'forkUs': _us(_perf() - t0)})


# --- becoming what a fork was for ---------------------------------------------------------

def _read_env(link):
    """The function's own env: the first line spored wrote on this lineage's own link (it never
    passed through the L1 seed, whose memory later lineages are forked from)."""
    buf = b''
    while not buf.endswith(b'\n'):
        chunk = os.read(link, 65536)
        if not chunk:
            raise OSError('the link closed before the function env arrived')
        buf += chunk
        if len(buf) > 1 << 20:
            raise ValueError('the env message is too long')
    if buf.count(b'\n') != 1:
        raise ValueError('unexpected data after the env message')
    m = json.loads(buf)
    if not isinstance(m, dict) or m.get('t') != 'env' or not isinstance(m.get('env'), dict):
        raise ValueError('expected the env message first')
    return {k: v for k, v in m['env'].items() if isinstance(k, str) and isinstance(v, str)}


def _forget_host_paths():
    """Inside the sandbox, nothing names where spore is installed on the host: __main__ (this
    file) has no path and sys.argv is empty, as in an interactive interpreter. That is also
    what multiprocessing's spawn and forkserver start methods need: their workers re-run the
    main module from its path when it has one, and this file is not in the sandbox (they
    failed with FileNotFoundError and the pool restarted them until the handler timed out)."""
    main = sys.modules.get('__main__')
    if main is not None:
        for k in ('__file__', '__cached__'):
            main.__dict__.pop(k, None)
        main.__spec__ = None
    sys.argv[:] = ['']


def _keep_tmp_in_children(tmp_fd):
    """/tmp (and /dev/shm) lead through the fd `tmp_fd` every process of the function holds.
    subprocess closes every fd above 2 in a child by default (close_fds=True), and
    multiprocessing's spawn and forkserver do too, so their children found no /tmp. The fd is
    kept across those closes, as if /tmp were a directory like any other."""
    import _posixsubprocess
    fork_exec = _posixsubprocess.fork_exec

    def keep_tmp(args, executable_list, close_fds, fds_to_keep, *rest):
        if close_fds and tmp_fd not in fds_to_keep:
            fds_to_keep = tuple(sorted((*fds_to_keep, tmp_fd)))
        return fork_exec(args, executable_list, close_fds, fds_to_keep, *rest)
    _posixsubprocess.fork_exec = keep_tmp


def start_lineage(kw):
    """In an L1's fresh child: build the sandbox, run the function's init code once
    (unprivileged, filtered, pid 1 of the lineage), then serve as its L2 seed."""
    t0 = _perf()
    msg = kw['msg']
    sid = msg['id']
    link = kw['link']

    def fail(message, stack, phase):
        data = json.dumps({'t': 'failed', 'id': sid, 'message': message, 'stack': stack, 'phase': phase}).encode() + b'\n'
        try:
            os.write(link, data)
        finally:
            os._exit(1)
    try:
        apply_sandbox(msg['sandbox'], link, kw['log'], kw['to_parent'], kw['from_parent'])
        layer = InstanceLayer(msg['sandbox'])
        os.environ.update(_read_env(link))
        _forget_host_paths()
        _keep_tmp_in_children(msg['sandbox']['tmpFd'])
    except BaseException as e:
        fail('sandbox: %s' % e, None, 'sandbox')
    try:
        handler = load_function(msg['load'])
    except BaseException as e:
        info = _errinfo('load', e)
        fail(_load_error_message(info['message'], e), info['stack'], 'load')
    gc.collect()
    gc.freeze()  # keep the collector off the shared pages in forks
    seed = Seed(sid, 2, link, (handler, layer))
    seed.send({'t': 'ready', 'id': sid, 'initMs': round((_perf() - t0) / 1e6, 3)})
    return seed


class _ChannelReader:
    """Lines from the instance's channel (blocking): its /tmp slot, then its request; `fds`
    collects the fds that came with them (the log pipe's, with the first line). EOF before a
    line means spored destroyed the instance unused: exit quietly."""
    __slots__ = ('sock', 'buf', 'fds', 'space')

    def __init__(self, fd):
        self.sock = socket.socket(fileno=fd)
        self.buf = b''
        self.fds = []
        self.space = socket.CMSG_SPACE(4 * 4)

    def detach(self):
        """The channel fd stays open for the result; the socket object lets go of it."""
        self.sock.detach()

    def line(self):
        while True:
            i = self.buf.find(b'\n')
            if i >= 0:
                out, self.buf = self.buf[:i], self.buf[i + 1:]
                return out
            chunk, anc, _flags, _addr = self.sock.recvmsg(262144, self.space, socket.MSG_CMSG_CLOEXEC)
            for level, typ, data in anc:
                if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                    self.fds.extend(struct.unpack('%di' % (len(data) // 4), data[:len(data) - len(data) % 4]))
            if not chunk:
                os._exit(0)
            self.buf += chunk


def run_instance(kw):
    """A fresh instance: bind its parts, take its request, run the handler, answer, exit."""
    msg, channel, (handler, layer), t0 = kw['msg'], kw['channel'], kw['fn'], kw['t0']
    timings = {'bind': 0, 'seccomp': 0, 'init': 0, 'execute': 0}
    out = {'t': 'result', 'ok': False, 'value': None, 'error': None, 'timings': timings}
    try:
        reinit_uniqueness()
        reader = _ChannelReader(channel)
        t1 = _perf()
        slot = json.loads(reader.line())['slot']
        if reader.fds:
            # stdout/stderr on a log pipe description of this instance's own (the seed's is
            # shared with every sibling: O_NONBLOCK set on it by one handler broke later calls)
            log = reader.fds.pop(0)
            os.dup2(log, 1)
            os.dup2(log, 2)
            os.close(log)
        layer.bind(slot)
        t2 = _perf()
        timings['bind'] = _us(t2 - t1)
        timings['init'] = _us(t1 - t0)
        request = json.loads(reader.line())
        reader.detach()
        t3 = _perf()
        req = request.get('event')
        event = json.loads(req) if req not in (None, '') else None
        ctx = Context(request.get('context') or {})
        try:
            value = handler(event, ctx)
            if hasattr(value, '__await__'):
                import asyncio
                value = asyncio.run(_await(value))
            try:
                text = json.dumps(value)
            except (TypeError, ValueError) as e:
                raise TypeError("the handler's result is not JSON-serializable: %s" % e)
            size = len(text.encode())
            if size > MAX_RESULT_BYTES:
                raise ValueError("the handler's result is %d bytes; the limit is %d bytes (6 MiB)" % (size, MAX_RESULT_BYTES))
            out['ok'] = True
            out['value'] = text
        except BaseException as e:
            out['error'] = _errinfo('handler', e)
        timings['execute'] = _us(_perf() - t3)
    except BaseException as e:  # internal failure (bind, bad request)
        out['error'] = _errinfo('internal', e)
    try:
        data = json.dumps(out, separators=(',', ':')).encode() + b'\n'
    except Exception as e:
        data = json.dumps({'t': 'result', 'ok': False, 'value': None, 'timings': timings,
                           'error': {'kind': 'internal', 'message': str(e), 'stack': None}}).encode() + b'\n'
    try:
        while data:
            n = os.write(channel, data)
            data = data[n:]
    except OSError:
        pass
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:
        pass
    os._exit(0)


def main():
    global _own_pid_ns
    if len(sys.argv) == 2 and sys.argv[1] == '--record-sandbox':
        # tests: the syscall sequence a plan (JSON on stdin) makes, as JSON on stdout
        plan = json.loads(sys.stdin.read())
        rec = RecordingSys(root=plan['staging'])
        run_sandbox(plan, rec)
        sys.stdout.write(json.dumps(rec.calls))
        sys.stdout.flush()
        os._exit(0)
    if len(sys.argv) != 3:
        sys.stderr.write('usage: zygote.py <seeds.sock> <seed id>\n')
        os._exit(2)
    sock_path, seed_id = sys.argv[1], sys.argv[2]
    _own_pid_ns = os.open('/proc/self/ns/pid', os.O_RDONLY | os.O_CLOEXEC)
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    s.connect(sock_path)
    seed = Seed(seed_id, 1, s.detach(), None)
    seed.send({'t': 'hello', 'id': seed_id, 'pid': os.getpid(), 'language': 'python', 'level': 1})
    gc.collect()
    gc.freeze()
    seed.send({'t': 'ready', 'id': seed_id, 'initMs': round((_perf() - _T_START) / 1e6, 3)})
    while True:
        try:
            seed.serve()
            os._exit(0)
        except Next as n:
            kw = n.kw
            n.__traceback__ = None
            if n.kind == 'instance':
                run_instance(kw)
            elif n.kind == 'replica':
                reinit_uniqueness()
                seed = Seed(kw['id'], 2, kw['link'], kw['fn'])
                seed.send({'t': 'ready', 'id': kw['id'], 'initMs': 0})
            elif n.kind == 'lineage':
                reinit_uniqueness()
                seed = start_lineage(kw)


if __name__ == '__main__':
    main()
