// A function lineage's sandbox, described once as plain data (seeds/protocol.ts
// SandboxPlan) and applied by one small executor per seed language. Pure: everything it
// needs about the host (the runtime root's entries, the lineage cgroup, the id range) is
// passed in, so a plan can be printed, compared and unit-tested.
//
// What the sandbox gives function code of the host: nothing. A read-only root made of the
// language runtime's own directories (binary, libraries, standard library, CA
// certificates), the package read-only at /var/task, procfs of its own pid namespace
// (with the paths runc masks), a /dev of five character devices, a private /tmp per
// instance, loopback only, its own IPC and UTS namespaces, and a user namespace in which
// it runs as uid 1000 without capabilities.
import { MS } from '../sys/constants.js';
import { slotData, SLOT_INODES, type SandboxPlan, type SandboxStep } from '../seeds/protocol.js';

export { slotData, SLOT_INODES };

/** RLIMIT_* numbers (x86_64). */
export const RLIMIT = { FSIZE: 1, CORE: 4, NOFILE: 7 } as const;

/** The identity function code runs as inside its user namespace. */
export const SANDBOX_UID = 1000;
export const SANDBOX_GID = 1000;
/** Ids a function's user namespace maps: inside 0..ID_RANGE-1 -> host hostId.. */
export const ID_RANGE = 65536;
/** fd number /tmp links through (/tmp -> /proc/self/fd/TMP_FD); below RLIMIT_NOFILE. */
export const TMP_FD = 1000;
export const NOFILE = 1024;
export const SLOT_DIR = '/.spore/tmp';
export const TASK_ROOT = '/var/task';

/** Character devices a sandbox gets (bound from the host's /dev; world read-write there). */
export const DEVICES = ['null', 'zero', 'full', 'random', 'urandom'] as const;

/** runc's default masked and read-only /proc paths (a missing one is skipped). */
export const MASKED_PATHS = [
  '/proc/acpi', '/proc/asound', '/proc/interrupts', '/proc/kcore', '/proc/keys', '/proc/latency_stats',
  '/proc/timer_list', '/proc/timer_stats', '/proc/sched_debug', '/proc/scsi',
];
export const READONLY_PATHS = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];

/** Top-level entries of a runtime root that the sandbox never takes from it. */
const NOT_FROM_RUNTIME = new Set(['etc', 'proc', 'dev', 'tmp', 'sys', 'run', 'root', 'home', 'mnt', 'media', 'srv', 'opt', 'boot', 'var', 'fn', '.spore-stamp', '.spore']);

/** One entry of the language runtime's root directory (from readdir + lstat). */
export interface RuntimeEntry {
  name: string;
  kind: 'dir' | 'symlink' | 'file';
  /** symlink target (kind 'symlink') */
  target?: string;
}

export interface SandboxInput {
  /** function name: the sandbox's hostname */
  name: string;
  version: number;
  /** host directory of the language runtime's root (scripts/build-rootfs.sh) */
  runtimeRoot: string;
  runtimeEntries: RuntimeEntry[];
  /** the runtime root has etc/ssl (CA certificates) */
  runtimeHasSsl: boolean;
  /** host directory of the unpacked package (functions/packages.ts) */
  packageDir: string;
  /** host directory (empty, exists) the root tmpfs is mounted on in the new mount namespace */
  staging: string;
  /** first host uid/gid of the function's range (ID_RANGE ids) */
  hostId: number;
  cgroupProcs: string[];
  memoryMiB: number;
  /** size of each /tmp, bytes (the seed's own here; instances' slots are mounted later, see `slots`) */
  tmpBytes: number;
  seccomp: { filter: string; flags: number };
}

const RO_BIND = MS.RDONLY | MS.NOSUID | MS.NODEV;

/** The plan for one function lineage. Throws only on a malformed input (a bug). */
export function functionSandbox(i: SandboxInput): SandboxPlan {
  const steps: SandboxStep[] = [];
  const instanceReadOnly: string[] = [];
  // 1. the language runtime's own directories, read-only (symlinks like bin -> usr/bin kept)
  for (const e of [...i.runtimeEntries].sort((a, b) => a.name.localeCompare(b.name))) {
    if (NOT_FROM_RUNTIME.has(e.name) || e.name.includes('/')) continue;
    if (e.kind === 'symlink' && e.target !== undefined) {
      steps.push({ op: 'symlink', path: `/${e.name}`, target: e.target });
    } else if (e.kind === 'dir') {
      steps.push({ op: 'dir', path: `/${e.name}`, mode: 0o755 });
      steps.push({ op: 'bind', source: `${i.runtimeRoot}/${e.name}`, path: `/${e.name}`, flags: RO_BIND, recursive: true });
      instanceReadOnly.push(`/${e.name}`);
    }
  }
  // 2. /etc: who the function is, name resolution without the host's files, CA certificates
  steps.push({ op: 'dir', path: '/etc', mode: 0o755 });
  const files: [string, string][] = [
    ['passwd', `root:x:0:0:root:/root:/bin/false\nsbx_user:x:${SANDBOX_UID}:${SANDBOX_GID}:function:/tmp:/bin/false\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n`],
    ['group', `root:x:0:\nsbx_user:x:${SANDBOX_GID}:\nnogroup:x:65534:\n`],
    ['hostname', `${i.name}\n`],
    ['hosts', `127.0.0.1\tlocalhost\n::1\tlocalhost\n127.0.1.1\t${i.name}\n`],
    ['resolv.conf', ''],
    ['nsswitch.conf', 'passwd: files\ngroup: files\nhosts: files\n'],
  ];
  for (const [f, content] of files) steps.push({ op: 'file', path: `/etc/${f}`, mode: 0o644, content });
  if (i.runtimeHasSsl) {
    steps.push({ op: 'dir', path: '/etc/ssl', mode: 0o755 });
    steps.push({ op: 'bind', source: `${i.runtimeRoot}/etc/ssl`, path: '/etc/ssl', flags: RO_BIND, recursive: true });
  }
  instanceReadOnly.push('/etc');
  // 3. the package
  steps.push({ op: 'dir', path: TASK_ROOT, mode: 0o755 });
  steps.push({ op: 'bind', source: i.packageDir, path: TASK_ROOT, flags: RO_BIND, recursive: false });
  instanceReadOnly.push('/var');
  // 4. /proc of the lineage's pid namespace, with runc's masks
  steps.push({ op: 'dir', path: '/proc', mode: 0o555 });
  // hidepid=2: every process of a lineage is non-dumpable and runs as one uid, so none may
  // ptrace another and none sees another's /proc/<pid> (its comm, stat, limits)
  steps.push({ op: 'proc', path: '/proc', flags: MS.NOSUID | MS.NODEV | MS.NOEXEC, data: 'hidepid=2' });
  for (const p of MASKED_PATHS) steps.push({ op: 'mask', path: p });
  for (const p of READONLY_PATHS) steps.push({ op: 'readonly', path: p });
  instanceReadOnly.push('/proc');
  // 5. /dev: five devices and the usual links, then read-only (the device binds stay writable)
  steps.push({ op: 'dir', path: '/dev', mode: 0o755 });
  steps.push({ op: 'tmpfs', path: '/dev', flags: MS.NOSUID | MS.NOEXEC, data: 'mode=755,size=64k' });
  for (const d of DEVICES) {
    steps.push({ op: 'file', path: `/dev/${d}`, mode: 0o666, content: '' });
    steps.push({ op: 'bind', source: `/dev/${d}`, path: `/dev/${d}`, flags: MS.NOSUID | MS.NOEXEC, recursive: false });
  }
  // /dev/shm is the process's own /tmp: POSIX semaphores and shared memory (Python's
  // multiprocessing locks, queues and pools) work, private to the instance like /tmp
  for (const [path, target] of [['/dev/fd', '/proc/self/fd'], ['/dev/stdin', '/proc/self/fd/0'], ['/dev/stdout', '/proc/self/fd/1'], ['/dev/stderr', '/proc/self/fd/2'], ['/dev/shm', `/proc/self/fd/${TMP_FD}`]] as const) {
    steps.push({ op: 'symlink', path, target });
  }
  steps.push({ op: 'remount', path: '/dev', flags: MS.RDONLY | MS.NOSUID | MS.NOEXEC });
  // 6. /tmp: /tmp goes through the fd each process holds, so every instance sees only its
  // own. The slot directory can be searched but not listed by function code; the seed's
  // own slot ('init') is here from the start, the instances' are mounted by the L1 parent
  // after init code ran, under names only spored and each owner learn (seeds/protocol.ts).
  steps.push({ op: 'dir', path: SLOT_DIR, mode: 0o755 });
  steps.push({ op: 'tmpfs', path: SLOT_DIR, flags: MS.NOSUID | MS.NODEV | MS.NOEXEC, data: 'mode=711,size=64k,nr_inodes=4096' });
  steps.push({ op: 'dir', path: `${SLOT_DIR}/init`, mode: 0o1777 });
  steps.push({ op: 'tmpfs', path: `${SLOT_DIR}/init`, flags: MS.NOSUID | MS.NODEV, data: slotData(i.tmpBytes) });
  steps.push({ op: 'symlink', path: '/tmp', target: `/proc/self/fd/${TMP_FD}` });

  return {
    cgroupProcs: [...i.cgroupProcs],
    staging: i.staging,
    rootData: 'mode=755,size=1m',
    steps,
    rootFlags: MS.RDONLY | MS.NOSUID | MS.NODEV,
    hostname: i.name,
    idmap: { hostId: i.hostId, size: ID_RANGE },
    uid: SANDBOX_UID,
    gid: SANDBOX_GID,
    rlimits: [
      { resource: RLIMIT.NOFILE, soft: NOFILE, hard: NOFILE },
      { resource: RLIMIT.FSIZE, soft: i.tmpBytes, hard: i.tmpBytes },
      { resource: RLIMIT.CORE, soft: 0, hard: 0 },
    ],
    tmpFd: TMP_FD,
    slotDir: SLOT_DIR,
    landlock: {
      readOnly: ['/'],
      // one rule: /dev holds nothing but these five devices, on a read-only tmpfs
      devices: ['/dev'],
      readWrite: [SLOT_DIR],
      instanceReadOnly: [...new Set(instanceReadOnly)].sort(),
    },
    seccomp: { ...i.seccomp },
    cwd: TASK_ROOT,
    env: sandboxEnv(i),
  };
}


/** An unguessable slot name: 128 bits from `random` (crypto.randomBytes), hex. */
export function slotName(random: Buffer): string {
  if (random.length < 16) throw new Error('slot names need 16 random bytes');
  return random.subarray(0, 16).toString('hex');
}

/**
 * The environment function code sees (Lambda's names where Lambda has one), without the
 * function's own env: that may hold secrets and never passes through the L1 seed (whose
 * memory every later lineage is forked from); spored sends it on the lineage's own link
 * (ToSeed `env`), and the seed lays it over this one.
 */
export function sandboxEnv(i: Pick<SandboxInput, 'name' | 'version' | 'memoryMiB'> & { runtimeHasSsl?: boolean }): Record<string, string> {
  return {
    ...(i.runtimeHasSsl ? { SSL_CERT_FILE: '/etc/ssl/certs/ca-certificates.crt', SSL_CERT_DIR: '/etc/ssl/certs' } : {}),
    PATH: '/usr/local/bin:/usr/bin:/bin',
    LANG: 'C.UTF-8',
    HOME: '/tmp',
    TMPDIR: '/tmp',
    TZ: 'UTC',
    LAMBDA_TASK_ROOT: TASK_ROOT,
    AWS_LAMBDA_FUNCTION_NAME: i.name,
    AWS_LAMBDA_FUNCTION_VERSION: String(i.version),
    AWS_LAMBDA_FUNCTION_MEMORY_SIZE: String(i.memoryMiB),
  };
}
