// OCI hooks, runc as the oracle: each case runs with runc and with spore on one private
// containerd (oracle.ts) and what the hooks saw must match: the state on stdin, argv, env,
// working directory, which namespaces and root they ran in, whether the init was in its
// cgroup yet, and what a failing or slow hook does to `ctr run`.
import * as fs from 'node:fs';
import { containerdSkipReason } from '../harness.js';
import { ctr, custom, file, kase, pause, restartSpored, runSpec, states, waitStopped, type Case, type Ctx, type SpecJson } from './oracle.js';
import { oracleSuite } from './suite.js';

const skip = containerdSkipReason();
if (skip) console.warn(`[conformance/hooks] skipped: ${skip}`);

/**
 * A hook on the host: `hook.sh KIND LOG` appends what it sees to LOG, one "KIND key=value"
 * line each. pid numbers become N (they differ from run to run); the host's namespaces and
 * root are read from files the case wrote before (host-ns.*).
 */
const HOOK = `#!/bin/sh
kind=$1; log=$2; dir=$(dirname "$log")
state=$(cat)
pid=$(printf '%s' "$state" | sed -n 's/.*"pid":\\([0-9]*\\).*/\\1/p')
{
  printf '%s state=%s\\n' "$kind" "$(printf '%s' "$state" | sed 's/"pid":[0-9]*/"pid":N/')"
  printf '%s args=%s\\n' "$kind" "$*"
  printf '%s cwd=%s\\n' "$kind" "$(pwd)"
  printf '%s HOOKVAR=%s PATH=%s\\n' "$kind" "$HOOKVAR" "\${PATH:-unset}"
  for ns in mnt net pid uts; do
    if [ "$(readlink /proc/self/ns/$ns)" = "$(cat "$dir/host-ns.$ns")" ]; then w=host; else w=other; fi
    printf '%s self-%s=%s\\n' "$kind" "$ns" "$w"
  done
  case $kind in
  prestart|createRuntime|poststart)
    # the init as the runtime namespace sees it: its root not yet pivoted, its own network,
    # already in the container's cgroup
    printf '%s init-root=%s\\n' "$kind" "$(readlink /proc/$pid/root)"
    if [ "$(readlink /proc/$pid/ns/net)" = "$(cat "$dir/host-ns.net")" ]; then w=host; else w=other; fi
    printf '%s init-net=%s\\n' "$kind" "$w"
    if grep -q "$CGROUP_MARK" /proc/$pid/cgroup; then w=yes; else w=no; fi
    printf '%s init-in-cgroup=%s\\n' "$kind" "$w"
    ;;
  createContainer)
    # in the container's namespaces, before pivot_root: the host's files are still in sight
    if [ -e "$dir/host-ns.mnt" ]; then w=yes; else w=no; fi
    printf '%s sees-host-files=%s\\n' "$kind" "$w"
    ;;
  esac
} >> "$log"
exit "\${HOOK_EXIT:-0}"
`;

/** a startContainer hook runs in the container: busybox's sh, its log through a bind mount at /run */
const IN_CONTAINER = `state=$(cat)
{
  printf 'startContainer state=%s\\n' "$(printf '%s' "$state" | sed 's/"pid":[0-9]*/"pid":N/')"
  printf 'startContainer args=%s\\n' "$*"
  printf 'startContainer uid=%s cwd=%s\\n' "$(id -u)" "$(pwd)"
  printf 'startContainer env=%s\\n' "$(env | sort | tr '\\n' ' ')"
  if [ -e /run/host-ns.mnt ]; then printf 'startContainer pivoted=yes\\n'; fi
} >> /run/hooks.log
exit \${HOOK_EXIT:-0}
`;

async function setUp(x: Ctx): Promise<null> {
  fs.writeFileSync(`${x.dir}/hook.sh`, HOOK, { mode: 0o755 });
  for (const ns of ['mnt', 'net', 'pid', 'uts']) fs.writeFileSync(`${x.dir}/host-ns.${ns}`, fs.readlinkSync(`/proc/self/ns/${ns}`));
  return null;
}

/** a host hook of `kind` with its environment (CGROUP_MARK: the container's cgroup path) */
function hostHook(x: Ctx, kind: string, cid: string, extra: Record<string, unknown> = {}, env: string[] = []): Record<string, unknown> {
  return { path: `${x.dir}/hook.sh`, args: ['hook.sh', kind, `${x.dir}/hooks.log`], env: [`HOOKVAR=${kind}-var`, `CGROUP_MARK=${x.c.namespace}/${cid}`, 'PATH=/usr/sbin:/usr/bin:/sbin:/bin', ...env], ...extra };
}

/** the spec patch for one container: every hook kind, the log dir bound at /run */
function allHooks(s: SpecJson, x: Ctx, cid: string, fail: Partial<Record<string, string>> = {}): void {
  const env = (kind: string): string[] => (fail[kind] ? [`HOOK_EXIT=${fail[kind]}`] : []);
  s.hooks = {
    prestart: [hostHook(x, 'prestart', cid, {}, env('prestart'))],
    createRuntime: [hostHook(x, 'createRuntime', cid, {}, env('createRuntime'))],
    createContainer: [hostHook(x, 'createContainer', cid, {}, env('createContainer'))],
    // no env: the container process's (runc's init passes its own)
    startContainer: [{ path: '/bin/sh', args: ['sh', '-c', IN_CONTAINER, 'start-arg0', 'start-arg1'], ...(fail.startContainer ? { env: [`HOOK_EXIT=${fail.startContainer}`, 'PATH=/bin'] } : {}) }],
    poststart: [hostHook(x, 'poststart', cid, {}, env('poststart'))],
    poststop: [hostHook(x, 'poststop', cid, {}, env('poststop'))],
  };
  s.annotations = { 'org.example.hooks': 'yes' };
  // at /run, which the shared busybox root has: a new mount point would be made in it
  s.mounts.push({ destination: '/run', type: 'bind', source: x.dir, options: ['rbind', 'rw'] });
}

/**
 * The hooks' lines, sorted (runc 1.1 runs poststart during Create, spore and runc 1.2 after
 * Start: the order is its own step), ociVersion not compared (each runtime names the spec
 * version it implements: runc 1.1.5 "1.0.2-dev"), and poststart's state left to its own step
 * (its status differs for the same reason).
 */
const sortedHookLines = (s: string): string => s.split('\n')
  .filter((l) => l && !l.startsWith('poststart state='))
  .map((l) => l.replace(/"ociVersion":"[^"]*"/, '"ociVersion":V'))
  .sort().join('\n');

/** the status in poststart's state */
function poststartStatus(x: Ctx): Promise<string> {
  const line = fs.readFileSync(`${x.dir}/hooks.log`, 'utf8').split('\n').find((l) => l.startsWith('poststart state='));
  return Promise.resolve(line ? (/"status":"([a-z]+)"/.exec(line)?.[1] ?? 'none') : 'no poststart');
}

/** how many poststop hooks ran */
function poststopRuns(x: Ctx): Promise<number> {
  const log = `${x.dir}/hooks.log`;
  return Promise.resolve(fs.existsSync(log) ? fs.readFileSync(log, 'utf8').split('\n').filter((l) => l.startsWith('poststop args=')).length : 0);
}

/** Which kinds ran, in the order they ran. */
function kindsInOrder(x: Ctx): Promise<string[]> {
  const log = `${x.dir}/hooks.log`;
  if (!fs.existsSync(log)) return Promise.resolve([]);
  const kinds: string[] = [];
  for (const l of fs.readFileSync(log, 'utf8').split('\n')) {
    const k = l.split(' ')[0];
    if (k && kinds[kinds.length - 1] !== k) kinds.push(k);
  }
  return Promise.resolve(kinds);
}

/** Processes in cgroup `path` (the pids hierarchy on v1, the unified one on v2), 0 when it is gone. */
function cgroupProcs(path: string): Promise<number> {
  for (const root of ['/sys/fs/cgroup/pids', '/sys/fs/cgroup/unified', '/sys/fs/cgroup']) {
    const f = `${root}${path}/cgroup.procs`;
    if (fs.existsSync(f)) return Promise.resolve(fs.readFileSync(f, 'utf8').split('\n').filter((l) => l).length);
  }
  return Promise.resolve(0);
}

const POSTSTART = 'runc 1.1 runs poststart hooks during Create (before startContainer, status "created"); spore runs them after Start (status "running"), as the runtime spec says and runc >= 1.2 does';

export const CASES: Case[] = [
  kase('every hook kind runs where and when the runtime spec puts it, with the state on stdin', [
    custom('install hook', setUp),
    // alive a while: poststart looks at the running init
    runSpec('--rm', '{c}', ['/bin/sh', '-c', 'sleep 0.5; echo ran'], (s, x) => allHooks(s, x, x.id('c'))),
    file('{dir}/hooks.log', sortedHookLines),
    custom('hook order', kindsInOrder),
    custom('poststart status', poststartStatus),
    states('{c}'),
  ], { allow: [{ step: 3, field: 'value', reason: POSTSTART }, { step: 4, field: 'value', reason: POSTSTART }] }),

  kase('a failing createRuntime hook fails Create and leaves nothing behind; later hooks do not run', [
    custom('install hook', setUp),
    runSpec('--rm', '{c}', ['/bin/echo', 'ran'], (s, x) => allHooks(s, x, x.id('c'), { createRuntime: '3' }), { check: ['code', 'stdout', 'class'] }),
    custom('hook order', kindsInOrder),
    states('{c}'),
  ]),

  kase('a failing createContainer hook fails Create', [
    custom('install hook', setUp),
    runSpec('--rm', '{c}', ['/bin/echo', 'ran'], (s, x) => allHooks(s, x, x.id('c'), { createContainer: '4' }), { check: ['code', 'stdout', 'class'] }),
    custom('hook order', kindsInOrder),
    states('{c}'),
  ]),

  kase('a prestart hook past its timeout is killed and fails Create', [
    custom('install hook', setUp),
    runSpec('--rm', '{c}', ['/bin/echo', 'ran'], (s, x) => {
      s.hooks = { prestart: [{ path: '/bin/sh', args: ['sh', '-c', 'exec sleep 30'], timeout: 1 }] };
    }, { check: ['code', 'stdout', 'class'], timeoutMs: 20_000 }),
    states('{c}'),
  ]),

  kase('a createContainer hook past its timeout is killed and fails Create', [
    runSpec('--rm', '{c}', ['/bin/echo', 'ran'], (s) => {
      s.hooks = { createContainer: [{ path: '/bin/sh', args: ['sh', '-c', 'exec sleep 30'], timeout: 1 }] };
    }, { check: ['code', 'stdout', 'class'], timeoutMs: 20_000 }),
    states('{c}'),
  ]),

  kase('a failing startContainer hook ends the container before its program runs', [
    custom('install hook', setUp),
    runSpec('--rm', '{c}', ['/bin/echo', 'ran'], (s, x) => allHooks(s, x, x.id('c'), { startContainer: '5' }), { check: ['code', 'stdout'] }),
    custom('hook order', kindsInOrder),
    states('{c}'),
  ], { allow: [{ step: 2, field: 'value', reason: POSTSTART }] }),

  kase('a failing poststop hook is only a warning; Delete succeeds', [
    custom('install hook', setUp),
    runSpec('--rm', '{c}', ['/bin/echo', 'ran'], (s, x) => {
      const cid = x.id('c');
      s.hooks = { poststop: [hostHook(x, 'poststop', cid, {}, ['HOOK_EXIT=1']), hostHook(x, 'poststop', cid)] };
    }),
    custom('poststop hooks run', poststopRuns),
    states('{c}'),
  ], { allow: [{ step: 2, field: 'value', reason: 'after a failing poststop hook spore runs the rest, as the runtime spec says; runc stops at the first failure (a warning either way)' }] }),

  kase('poststop hooks outlive a restart of spored (kept in the task record); Delete runs them once', [
    custom('install hook', setUp),
    runSpec('-d', '{c}', ['/bin/sleep', '1000'], (s, x) => { s.hooks = { poststop: [hostHook(x, 'poststop', x.id('c'))] }; }),
    restartSpored('SIGKILL'),
    ctr('task kill -s KILL {c}'),
    waitStopped('{c}'),
    ctr('task rm {c}', { check: ['code', 'stdout'] }), // (stderr: ctr's timestamped warning)
    ctr('container rm {c}'),
    file('{dir}/hooks.log', sortedHookLines),
  ]),

  kase('a Create that outlives its caller (a slow prestart hook, ctr killed) leaves no process behind', [
    runSpec('--rm', '{c}', ['/bin/echo', 'ran'], (s) => {
      s.hooks = { prestart: [{ path: '/bin/sh', args: ['sh', '-c', 'sleep 2'] }] };
    }, { check: ['class'], timeoutMs: 700 }),
    // containerd's Delete after the cancelled Create: the Create fails, nothing is left (runc's
    // init, orphaned by its killed `runc create`, takes a few seconds to go)
    pause(6000),
    custom('processes left in its cgroup', async (x) => cgroupProcs(`/${x.c.namespace}/${x.id('c')}`)),
    states('{c}'),
  ]),

  // runc's shim answers State only after its Create (one lock), and so does spore now: before,
  // it answered NotFound, ctr removed the container and the task was left behind, unknown to
  // containerd. What ctr then does depends on the status it reads: runc's State runs `runc
  // state` after ctr run's Start went in ("running": refused), spore's answers at once
  // ("created": ctr deletes the task, then the container). Either way nothing is left.
  kase('`ctr container rm` during a slow Create leaves no task without its container (red team, helper-51)', [
    custom('`ctr run -d` with a 2 s createRuntime hook, `ctr container rm` 0.7 s in', async (x) => {
      const run = runSpec('-d', '{c}', ['/bin/sleep', '1000'], (s) => {
        s.hooks = { createRuntime: [{ path: '/bin/sh', args: ['sh', '-c', 'sleep 2'] }] };
      }, { timeoutMs: 10_000 })(x);
      await new Promise((r) => setTimeout(r, 700));
      const rm = await x.ctr(['container', 'rm', await x.expand('{c}')]);
      const created = await run;
      return { run: created?.code, rm: rm.code };
    }),
    states('{c}'),
    custom('a task without its container, or processes without either', async (x) => {
      const id = await x.expand('{c}');
      const tasks = (await x.ctr(['task', 'ls', '-q'])).stdout.split('\n').includes(id);
      const containers = (await x.ctr(['container', 'ls', '-q'])).stdout.split('\n').includes(id);
      const procs = await cgroupProcs(`/${x.c.namespace}/${x.id('c')}`);
      return { orphanTask: tasks && !containers, orphanProcesses: procs > 0 && !tasks };
    }),
  ], { allow: [
    { step: 0, field: 'value', reason: 'ctr container rm races ctr run\'s Start: runc\'s State reads `runc state` after the Start ("running": rm refused), spore\'s answers right after the Create ("created": ctr deletes task and container); neither leaves anything' },
    { step: 1, field: 'value', reason: 'the same race: the container runs on with runc, is gone with spore' },
  ] }),

  kase('two Deletes at once run the poststop hooks once (red team, helper-50)', [
    custom('install hook', setUp),
    runSpec('-d', '{c}', ['/bin/sleep', '1000'], (s, x) => { s.hooks = { poststop: [hostHook(x, 'poststop', x.id('c'))] }; }),
    ctr('task kill -s KILL {c}'),
    waitStopped('{c}'),
    custom('two `task rm` at once: their exit codes', async (x) => {
      const id = await x.expand('{c}');
      const rs = await Promise.all([x.ctr(['task', 'rm', id]), x.ctr(['task', 'rm', id])]);
      return rs.map((r) => r.code).sort();
    }),
    custom('poststop hooks run', poststopRuns),
    ctr('container rm {c}'),
  ]),

  kase('bad hooks in config.json are refused at Create', [
    runSpec('--rm', '{c}', ['/bin/echo', 'ran'], (s) => { s.hooks = { prestart: [{ path: 'relative/hook' }] }; }, { check: ['code', 'stdout'] }),
    runSpec('--rm', '{c2}', ['/bin/echo', 'ran'], (s) => { s.hooks = { createRuntime: [{ path: '/bin/true', timeout: 0 }] }; }, { check: ['code', 'stdout'] }),
    states('{c}', '{c2}'),
  ]),
];

oracleSuite('conformance: OCI hooks, spore = runc through ctr', CASES, { skip });
