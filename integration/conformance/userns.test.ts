// User namespaces in OCI specs (`linux.namespaces` user with uidMappings/gidMappings, what
// `ctr run --uidmap/--gidmap` writes), runc as the oracle: each case runs with runc and with
// spore on one private containerd (oracle.ts) and what the container and the host see must
// match: the maps, the identity and capabilities inside, the owners of /dev and its nodes, the
// mount table, limits that only root on the host may raise, an exec's identity, and the ids
// the host sees the processes run as. The busybox root belongs to the host's root, so inside
// it is nobody's and read-only to the container's root.
import * as fs from 'node:fs';
import { containerdSkipReason } from '../harness.js';
import { custom, exec, kase, restartSpored, runSpec, tty, type Case, type Ctx, type SpecJson } from './oracle.js';
import { oracleSuite } from './suite.js';

const skip = containerdSkipReason() ?? (fs.existsSync('/proc/self/ns/user') ? undefined : 'this kernel has no user namespaces');
if (skip) console.warn(`[conformance/userns] skipped: ${skip}`);

/** container ids 0..65535 as host ids 100000.. (what `ctr run --uidmap 0:100000:65536` asks for) */
const MAP = [{ containerID: 0, hostID: 100000, size: 65536 }];

function userNs(s: SpecJson): void {
  s.linux.namespaces.push({ type: 'user' });
  s.linux.uidMappings = MAP;
  s.linux.gidMappings = MAP;
}

/** inside: maps, identity, capabilities, /dev's owners, the mount table, limits, the root's files */
const INSIDE = [
  'cat /proc/self/uid_map /proc/self/gid_map /proc/self/setgroups',
  'id',
  'grep -E "^Cap(Inh|Prm|Eff|Bnd|Amb)" /proc/self/status',
  // owner, group and mode of every entry, the nodes' numbers (dates differ)
  'ls -ln /dev | awk \'NR > 1 { print $1, $3, $4, $5, $6, $NF }\'',
  // mount point, options, type: the order of /dev's bound nodes shows too
  'cut -d" " -f5,6,9 /proc/self/mountinfo',
  'ulimit -n; ulimit -Hn; ulimit -l; ulimit -Hl; cat /proc/self/oom_score_adj',
  'ls -ln / | awk \'NR > 1 { print $3, $4, $NF }\'',
  'touch /etc/userns-probe 2>&1; echo "touch: $?"',
].join('; echo ---; ');

/** a host process's ids and capabilities, and whether it shares the host's user namespace */
async function hostView(x: Ctx, id: string): Promise<unknown> {
  const pid = await x.expand(`{pid:${id}}`);
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').filter((l) => /^(Uid|Gid|Groups|CapEff|CapBnd):/.test(l));
  return {
    status,
    uidMap: fs.readFileSync(`/proc/${pid}/uid_map`, 'utf8').trim().split(/\s+/).join(' '),
    ownUserNs: fs.readlinkSync(`/proc/${pid}/ns/user`) !== fs.readlinkSync('/proc/self/ns/user'),
  };
}

const cases: Case[] = [
  kase('a user namespace of its own: maps, identity, capabilities, devices, mounts, limits', [
    runSpec('', '{c}', ['/bin/sh', '-c', INSIDE], (s) => {
      userNs(s);
      // (raising a hard limit or lowering the oom score needs CAP_SYS_RESOURCE on the host,
      // which this machine's root may lack: test/container-init.test.ts checks that spore sets
      // them before entering the namespace)
      s.process.rlimits = [{ type: 'RLIMIT_NOFILE', hard: 4096, soft: 2048 }, { type: 'RLIMIT_MEMLOCK', hard: 4194304, soft: 2097152 }];
      s.process.oomScoreAdj = 500;
    }),
  ]),

  kase('seen from the host: the mapped ids, a user namespace of its own', [
    runSpec('-d', '{c}', ['/bin/sleep', '60'], userNs),
    custom('host view of the init', (x) => hostView(x, 'c')),
    exec('-d --exec-id sleeper', '{c} /bin/sleep 60'),
    custom('host view of the init after an exec', (x) => hostView(x, 'c')),
  ]),

  kase('an exec joins it, also after spored was killed: as root, as a user; an unmapped one fails before it starts', [
    runSpec('-d', '{c}', ['/bin/sleep', '60'], userNs),
    // the next spored knows the container's user namespace from its record
    restartSpored(),
    exec('--exec-id e1', '{c} /bin/sh -c "id; cat /proc/self/uid_map; grep -e CapEff -e CapBnd /proc/self/status; ulimit -Hn"'),
    exec('--exec-id e2 --user 1000:1000', '{c} /bin/sh -c "id; grep CapEff /proc/self/status; touch /etc/userns-probe 2>&1; echo $?"'),
    // a uid the namespace does not map fails the exec before it starts
    exec('--exec-id e3 --user 70000:0', '{c} /bin/true', { check: ['code', 'class'] }),
    exec('--exec-id e4 --user 0:70000', '{c} /bin/true', { check: ['code', 'class'] }),
  ]),

  kase('a read-only root and a hostname in it', [
    runSpec('', '{c}', ['/bin/sh', '-c', 'hostname; grep " / / " /proc/self/mountinfo | cut -d" " -f5,6; touch /userns-probe 2>&1; echo $?'], (s) => {
      userNs(s);
      s.root.readonly = true;
      s.hostname = 'userns-box';
    }),
  ]),

  kase('a user with supplementary groups, mapped one to one', [
    runSpec('', '{c}', ['/bin/sh', '-c', 'id; cat /proc/self/gid_map'], (s) => {
      userNs(s);
      s.linux.uidMappings = [{ containerID: 0, hostID: 200000, size: 1 }, { containerID: 1000, hostID: 201000, size: 1 }];
      s.linux.gidMappings = [{ containerID: 0, hostID: 200000, size: 10 }, { containerID: 1000, hostID: 201000, size: 1 }];
      s.process.user = { uid: 1000, gid: 1000, additionalGids: [5] };
    }),
  ]),

  kase('a second container joins the first one\'s user namespace by path (with the maps runc asks for)', [
    runSpec('-d', '{c}', ['/bin/sleep', '60'], userNs),
    runSpec('', '{c2}', ['/bin/sh', '-c', 'cat /proc/self/uid_map; id; grep CapEff /proc/self/status; ls -ln /dev | awk \'NR > 1 { print $1, $3, $4, $NF }\'; cut -d" " -f5,6,9 /proc/self/mountinfo'], async (s, x) => {
      userNs(s);
      const path = `/proc/${await x.expand('{pid:c}')}/ns/user`;
      s.linux.namespaces = s.linux.namespaces.map((n: { type: string }) => (n.type === 'user' ? { type: 'user', path } : n));
    }),
  ]),

  kase('an exec with a terminal in it: its pty belongs to the namespace\'s root, or to its user', [
    runSpec('-d', '{c}', ['/bin/sleep', '60'], userNs),
    tty('exec -t --exec-id p1 {c} /bin/sh -c \'tty; stat -c %u:%g $(tty); sleep 0.3\'', [], { normalize: (t) => t.replace(/^ERRO\[\d+\] resize pty .*\n?/gm, '').replace(/\n$/, '') }),
    tty('exec -t --user 1000:1000 --exec-id p2 {c} /bin/sh -c \'stat -c %u:%g $(tty); sleep 0.3\'', [], { normalize: (t) => t.replace(/^ERRO\[\d+\] resize pty .*\n?/gm, '').replace(/\n$/, '') }),
  ]),

  // the host's network namespace belongs to the host's user namespace: sysfs cannot be
  // mounted for it, and the host's /sys is not bound instead (it would show every cgroup)
  kase('with the host\'s network: sysfs refused, as by runc', [
    runSpec('', '{c}', ['/bin/true'], (s) => {
      userNs(s);
      s.linux.namespaces = s.linux.namespaces.filter((n: { type: string }) => n.type !== 'network');
    }, { check: ['code'] }),
  ]),

  kase('a map that leaves the container\'s root unmapped is refused', [
    runSpec('', '{c}', ['/bin/true'], (s) => {
      userNs(s);
      s.linux.uidMappings = [{ containerID: 1, hostID: 100001, size: 100 }];
    }, { check: ['code'] }),
  ]),
];

oracleSuite('conformance: user namespaces (runc oracle)', cases, { skip });
