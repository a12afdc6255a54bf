// Base config.json documents of the oci target: its structured mode edits one of these, and
// gen-corpus writes them as seeds. FULL is close to what containerd's CRI generates.
export const FULL_SPEC = {
    ociVersion: '1.1.0',
    process: {
      terminal: false, user: { uid: 1000, gid: 1000, additionalGids: [10, 20], umask: 18 },
      args: ['/bin/sh', '-c', 'echo hi'], env: ['PATH=/usr/bin:/bin', 'TERM=xterm'], cwd: '/',
      capabilities: { bounding: ['CAP_CHOWN', 'CAP_KILL', 'CAP_NET_BIND_SERVICE'], effective: ['CAP_KILL'], permitted: ['CAP_KILL'], inheritable: [], ambient: ['CAP_KILL'] },
      rlimits: [{ type: 'RLIMIT_NOFILE', hard: 1024, soft: 1024 }, { type: 'RLIMIT_NPROC', hard: 4096, soft: 512 }],
      noNewPrivileges: true, oomScoreAdj: 100,
    },
    root: { path: 'rootfs', readonly: true },
    hostname: 'box', domainname: 'example',
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc' },
      { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
      { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'] },
      { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
      { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev', 'relatime', 'ro'] },
      { destination: '/etc/resolv.conf', type: 'bind', source: '/etc/resolv.conf', options: ['rbind', 'ro', 'rprivate'] },
      { destination: '/data', source: '/srv/data', options: ['bind', 'nosuid', 'x-spore-note', 'defaults'] },
    ],
    linux: {
      namespaces: [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }, { type: 'network', path: '/var/run/netns/n1' }, { type: 'cgroup' }],
      devices: [{ type: 'c', path: '/dev/fuse', major: 10, minor: 229, fileMode: 438, uid: 0, gid: 0 }, { type: 'u', path: '/dev/null', major: 1, minor: 3 }],
      cgroupsPath: '/default/c1',
      resources: { memory: { limit: 268435456 }, pids: { limit: 64 } },
      rootfsPropagation: 'rslave',
      maskedPaths: ['/proc/kcore', '/proc/keys', '/sys/firmware'],
      readonlyPaths: ['/proc/sys', '/proc/sysrq-trigger'],
      sysctl: { 'net.ipv4.ip_forward': '0' },
      seccomp: {
        defaultAction: 'SCMP_ACT_ERRNO', defaultErrnoRet: 1, architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86'], flags: ['SECCOMP_FILTER_FLAG_SPEC_ALLOW'],
        syscalls: [
          { names: ['read', 'write', 'exit_group', 'futex', 'nosuchcall'], action: 'SCMP_ACT_ALLOW' },
          { names: ['personality'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: 0, op: 'SCMP_CMP_EQ' }, { index: 0, value: 8, op: 'SCMP_CMP_EQ' }] },
          { names: ['clone'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: 2114060288, valueTwo: 0, op: 'SCMP_CMP_MASKED_EQ' }] },
          { names: ['ptrace'], action: 'SCMP_ACT_KILL_PROCESS' },
        ],
      },
    },
    annotations: { 'io.kubernetes.cri.container-type': 'container' },
  };

export const MINIMAL_SPEC = { ociVersion: '1.0.2', process: { user: { uid: 0, gid: 0 }, args: ['/bin/true'], cwd: '/' }, root: { path: 'rootfs' }, linux: { namespaces: [{ type: 'mount' }] } };

export const BASE_SPECS = [FULL_SPEC, MINIMAL_SPEC] as never[];
