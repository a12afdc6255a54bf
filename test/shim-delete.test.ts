// shim `delete` subcommand: flag parsing, the no-record path, and a full cleanup on the real host
// (processes in a cgroup, a bind mount on <bundle>/rootfs, the cgroup dirs, the task record).
import { fromBinary } from '@bufbuild/protobuf';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DeleteResponseSchema } from '../fri-proto/gen/containerd/task/v2/shim_pb.js';
import {
  type CgroupHandle, addProcess, cgroupHandle, createCgroup, destroyCgroup, detectCgroupLayout, killAll, parseMountinfo, pids,
} from '../pools/cgroups.js';
import { MNT_DETACH, MS, mount, umount2 } from '../sys/libc.js';
import { claimCreating, readRecord, recordPath, removeRecord, takeAllCreating, takeCreating, writeCreating, writeRecord, type CreatingRecord, type TaskRecord } from '../task/record.js';
import { FlagError, keeperAlive, parseShimFlags, procStartTime, runDelete } from '../shim/delete.js';

function isMounted(path: string): boolean {
  return parseMountinfo(readFileSync('/proc/self/mountinfo', 'utf8')).some((m) => m.mountpoint === path);
}

function argv(ns: string, id: string, bundle: string, extra: string[] = []): string[] {
  return ['-namespace', ns, '-address', '/run/containerd/containerd.sock', '-publish-binary', '/usr/bin/containerd',
    '-id', id, '-bundle', bundle, ...extra, 'delete'];
}

describe('parseShimFlags', () => {
  it('parses Go-style flags in all spellings', () => {
    const f = parseShimFlags(['-namespace', 'k8s.io', '--address=/a.sock', '-publish-binary=/bin/c', '--id', 'abc', '-bundle', '/b', '-debug', 'delete']);
    expect(f).toMatchObject({ namespace: 'k8s.io', address: '/a.sock', publishBinary: '/bin/c', id: 'abc', bundle: '/b', debug: true, args: ['delete'] });
    expect(parseShimFlags(['-id', 'x', 'delete']).debug).toBe(false);
    expect(parseShimFlags(['-debug=false', '-id=x', 'delete']).debug).toBe(false);
    expect(parseShimFlags(['--debug=true', 'delete']).debug).toBe(true);
  });

  it('stops at the first positional, keeps unknown flags, rejects a missing value', () => {
    const f = parseShimFlags(['-id', 'x', '-socket', '/s', '-weird', 'delete', '-namespace', 'n']);
    expect(f.id).toBe('x');
    expect(f.namespace).toBe('');
    expect(f.args).toEqual(['delete', '-namespace', 'n']);
    expect(f.unknown).toEqual(['-socket=/s', '-weird']);
    expect(parseShimFlags(['--', '-x']).args).toEqual(['-x']);
    expect(() => parseShimFlags(['-id'])).toThrow(FlagError);
    expect(() => parseShimFlags(['-debug=maybe'])).toThrow(FlagError);
  });
});

describe('runDelete', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'spore-shim-delete-'));
  const runDir = join(tmp, 'run');
  const env = { SPORE_RUN_DIR: runDir };
  const layout = detectCgroupLayout();
  const parent = `/spore-shim-delete-test-${process.pid}`;
  const handles: CgroupHandle[] = [];
  const children: ChildProcess[] = [];
  const mounts: string[] = [];
  const logs: string[] = [];
  const log = (l: string): void => { logs.push(l); };

  afterAll(async () => {
    for (const m of mounts.reverse()) {
      for (let i = 0; i < 4 && isMounted(m); i++) { try { umount2(m, MNT_DETACH); } catch { /* ignore */ } }
    }
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    for (const h of handles) {
      try { killAll(h); } catch { /* ignore */ }
      const deadline = Date.now() + 2000;
      while (pids(h).length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
      try { destroyCgroup(h); } catch { /* ignore */ }
    }
    try { destroyCgroup(cgroupHandle(layout, parent)); } catch { /* ignore */ }
    rmSync(tmp, { recursive: true, force: true });
  });

  it('rejects other actions and bad ids', async () => {
    expect((await runDelete(['-namespace', 'default', '-id', 'x', 'start'], env, log)).code).toBe(2);
    expect((await runDelete(['-namespace', 'default', '-id', '../x', 'delete'], env, log)).code).toBe(2);
    expect((await runDelete(['-namespace', 'default', '-id'], env, log)).code).toBe(2);
  });

  it('without a record: unmounts <bundle>/rootfs and answers 137', async () => {
    const bundle = join(tmp, 'bundle-norec');
    const rootfs = join(bundle, 'rootfs');
    const src = join(tmp, 'src-norec');
    mkdirSync(rootfs, { recursive: true });
    mkdirSync(src, { recursive: true });
    mount(src, rootfs, null, MS.BIND, null);
    mounts.push(rootfs);
    expect(isMounted(rootfs)).toBe(true);
    const before = Math.floor(Date.now() / 1000);
    const { stdout, code } = await runDelete(argv('default', 'norec', bundle), env, log);
    expect(code).toBe(0);
    const r = fromBinary(DeleteResponseSchema, stdout);
    expect(r.exitStatus).toBe(137);
    expect(r.pid).toBe(0);
    expect(Number(r.exitedAt?.seconds)).toBeGreaterThanOrEqual(before);
    expect(isMounted(rootfs)).toBe(false);
    // and again with nothing mounted
    const again = await runDelete(argv('default', 'norec', bundle), env, log);
    expect(again.code).toBe(0);
    expect(fromBinary(DeleteResponseSchema, again.stdout).exitStatus).toBe(137);
  });

  it('runs the record\'s poststop hooks, once everything else is gone, and warns of a failing one (spored is not there to)', async () => {
    const ns = 'default';
    const id = 'hooked';
    const bundle = join(tmp, 'bundle-hooked');
    mkdirSync(join(bundle, 'rootfs'), { recursive: true });
    const out = join(tmp, 'poststop.out');
    const rec: TaskRecord = {
      id, namespace: ns, bundle, pid: 0, rootfs: join(bundle, 'rootfs'), rootfsMounted: false, cgroup: null, createdAt: new Date().toISOString(),
      hooks: {
        poststart: [],
        poststop: [
          { path: '/bin/sh', args: ['sh', '-c', `{ cat; echo; pwd; } > ${out}`], env: null, timeout: null },
          { path: '/bin/sh', args: ['sh', '-c', 'echo no cleanup for you >&2; exit 7'], env: null, timeout: 5 },
        ],
        state: { ociVersion: '1.0.2', id, bundle },
      },
    };
    writeRecord(runDir, rec);
    const before = logs.length;
    const { code } = await runDelete(argv(ns, id, bundle), env, log);
    expect(code).toBe(0); // a poststop failure is a warning, never a failed delete
    expect(readFileSync(out, 'utf8')).toBe(`{"ociVersion":"1.0.2","id":"${id}","status":"stopped","bundle":"${bundle}"}\n${bundle}\n`);
    expect(logs.slice(before)).toEqual([`spore shim delete ${ns}/${id}: poststop hook #1 (/bin/sh): exit status 7; output: no cleanup for you`]);
    expect(readRecord(runDir, ns, id)).toBeNull();
  });

  it('a container with its own pid namespace in a shared cgroup: its processes are killed, a neighbour\'s are not, and the cgroup is left to them (red team, helper-50)', async () => {
    const ns = 'default';
    const id = 'sharedcg';
    const bundle = join(tmp, 'bundle-sharedcg');
    mkdirSync(join(bundle, 'rootfs'), { recursive: true });
    const h = cgroupHandle(layout, 'sharedcg', { parent });
    handles.push(h);
    createCgroup(h);
    // the container: a sleep that is pid 1 of a pid namespace of its own (unshare's child)
    const holder = spawn('unshare', ['--pid', '--fork', 'sleep', '100'], { stdio: 'ignore' });
    children.push(holder);
    let init = 0;
    for (let i = 0; i < 200 && !init; i++) {
      await new Promise((r) => setTimeout(r, 5));
      try { init = Number(readFileSync(`/proc/${holder.pid}/task/${holder.pid}/children`, 'utf8').trim().split(' ')[0]) || 0; } catch { /* not yet */ }
    }
    expect(init).toBeGreaterThan(0);
    addProcess(h, init);
    // a neighbour in the same cgroup, in the host's pid namespace
    const neighbour = spawn('sleep', ['100'], { stdio: 'ignore' });
    children.push(neighbour);
    addProcess(h, neighbour.pid!);
    const pidNs = readlinkSync(`/proc/${init}/ns/pid`);
    expect(pidNs).not.toBe(readlinkSync('/proc/self/ns/pid'));
    writeRecord(runDir, {
      id, namespace: ns, bundle, pid: init, pidStartTime: procStartTime(init), rootfs: join(bundle, 'rootfs'), rootfsMounted: false, cgroup: h,
      createdAt: new Date().toISOString(), v: 2, namespaces: [{ type: 'pid', path: null }, { type: 'mount', path: null }], pidNs,
    });
    const { code } = await runDelete(argv(ns, id, bundle), env, log);
    expect(code).toBe(0);
    expect(existsSync(`/proc/${init}`) && !readFileSync(`/proc/${init}/stat`, 'utf8').includes(') Z')).toBe(false);
    expect(neighbour.exitCode === null && neighbour.signalCode === null, 'the neighbour lives').toBe(true);
    expect(pids(h)).toEqual([neighbour.pid]);
    expect(readRecord(runDir, ns, id)).toBeNull();
    neighbour.kill('SIGKILL');
  });

  it('with a record: kills, unmounts, destroys the cgroup and removes the record', async () => {
    const ns = 'default';
    const id = 'withrec';
    const bundle = join(tmp, 'bundle-rec');
    const rootfs = join(bundle, 'rootfs');
    const src = join(tmp, 'src-rec');
    mkdirSync(rootfs, { recursive: true });
    mkdirSync(src, { recursive: true });
    writeFileSync(join(src, 'marker'), 'x');

    const h = cgroupHandle(layout, id, { parent });
    handles.push(h);
    createCgroup(h);
    const child = spawn('/bin/sh', ['-c', 'read x; exec sleep 100'], { stdio: ['pipe', 'ignore', 'ignore'] });
    children.push(child);
    const exited = new Promise<NodeJS.Signals | null>((res) => child.on('exit', (_c, sig) => res(sig)));
    const pid = child.pid!;
    addProcess(h, pid);
    child.stdin!.end('go\n');
    const deadline = Date.now() + 2000;
    while (readFileSync(`/proc/${pid}/comm`, 'utf8').trim() !== 'sleep' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    expect(pids(h)).toEqual([pid]);

    mount(src, rootfs, null, MS.BIND, null);
    mounts.push(rootfs);
    expect(existsSync(join(rootfs, 'marker'))).toBe(true);

    const rec: TaskRecord & { pidStartTime?: number } = {
      id, namespace: ns, bundle, pid, rootfs, rootfsMounted: true, cgroup: h, createdAt: new Date().toISOString(),
    };
    const st = procStartTime(pid);
    expect(st).toBeGreaterThan(0);
    rec.pidStartTime = st!;
    writeRecord(runDir, rec);
    expect(readRecord(runDir, ns, id)).not.toBeNull();

    const { stdout, code } = await runDelete(argv(ns, id, bundle, ['-debug']), env, log);
    expect(logs.filter((l) => l.includes('default/withrec'))).toEqual([]); // no warnings
    expect(code).toBe(0);
    const r = fromBinary(DeleteResponseSchema, stdout);
    expect(r.pid).toBe(pid);
    expect(r.exitStatus).toBe(137);
    expect(r.exitedAt).toBeDefined();

    expect(await exited).toBe('SIGKILL');
    expect(isMounted(rootfs)).toBe(false);
    expect(existsSync(join(rootfs, 'marker'))).toBe(false);
    for (const dir of Object.values(h.dirs)) expect(existsSync(dir)).toBe(false);
    expect(existsSync(recordPath(runDir, ns, id))).toBe(false);
  });

  it('does not kill a recorded pid that is no longer the container (start time differs)', async () => {
    const ns = 'default';
    const id = 'reused';
    const bundle = join(tmp, 'bundle-reused');
    mkdirSync(join(bundle, 'rootfs'), { recursive: true });
    const child = spawn('sleep', ['100'], { stdio: 'ignore' });
    children.push(child);
    const pid = child.pid!;
    const rec: TaskRecord & { pidStartTime?: number } = {
      id, namespace: ns, bundle, pid, rootfs: join(bundle, 'rootfs'), rootfsMounted: false, cgroup: null,
      createdAt: new Date().toISOString(), pidStartTime: 1,
    };
    writeRecord(runDir, rec);
    const { stdout, code } = await runDelete(argv(ns, id, bundle), env, log);
    expect(code).toBe(0);
    expect(fromBinary(DeleteResponseSchema, stdout).pid).toBe(pid);
    expect(child.exitCode).toBeNull();
    expect(child.signalCode).toBeNull();
    expect(existsSync(`/proc/${pid}`)).toBe(true);
    expect(existsSync(recordPath(runDir, ns, id))).toBe(false);
    child.kill('SIGKILL');
  });

  it('a Create cut short with its keeper gone (.creating, no record): the set-up is killed, its cgroup and the parents it made go, its poststop hooks run once', async () => {
    const ns = 'default';
    const id = 'cutshort';
    const bundle = join(tmp, 'bundle-cut');
    mkdirSync(join(bundle, 'rootfs'), { recursive: true });
    const out = join(tmp, 'cut-poststop.out');
    // the parents it made: <parent>/cutns, and its leaf below
    const h = cgroupHandle(layout, `cutns/${id}`, { parent });
    handles.push(h);
    const madeParents = [...new Set(Object.values(h.dirs).map((d) => dirname(d)))];
    createCgroup(h);
    const child = spawn('sleep', ['100'], { stdio: 'ignore' });
    children.push(child);
    const exited = new Promise<NodeJS.Signals | null>((res) => child.on('exit', (_c, sig) => res(sig)));
    addProcess(h, child.pid!);
    writeCreating(runDir, {
      namespace: ns, id, bundle,
      hooks: { poststart: [], poststop: [{ path: '/bin/sh', args: ['sh', '-c', `echo ran >> ${out}`], env: null, timeout: null }], state: { ociVersion: '1.0.2', id, bundle } },
      cgroup: { handle: h, made: true, madeParents },
    });
    // a keeper is up (keeper.pid names a live process with its start time): the Create is
    // its spored's to finish or clean up
    const keeperPid = join(runDir, 'keeper.pid');
    writeFileSync(keeperPid, `${process.pid} ${procStartTime(process.pid)}\n`);
    expect(keeperAlive(runDir)).toBe(true);
    expect((await runDelete(argv(ns, id, bundle), env, log)).code).toBe(0);
    expect(pids(h)).toEqual([child.pid]);
    expect(existsSync(join(runDir, 'tasks', ns, `${id}.creating`))).toBe(true);
    // a pid file whose start time is another process's (a reused pid) is no keeper
    writeFileSync(keeperPid, `${process.pid} 1\n`);
    expect(keeperAlive(runDir)).toBe(false);
    rmSync(keeperPid);
    expect(keeperAlive(runDir)).toBe(false);
    const before = logs.length;
    const { stdout, code } = await runDelete(argv(ns, id, bundle), env, log);
    expect(logs.slice(before)).toEqual([]);
    expect(code).toBe(0);
    expect(fromBinary(DeleteResponseSchema, stdout).exitStatus).toBe(137);
    expect(await exited).toBe('SIGKILL');
    for (const dir of [...Object.values(h.dirs), ...madeParents]) expect(existsSync(dir), dir).toBe(false);
    expect(readFileSync(out, 'utf8')).toBe('ran\n');
    expect(existsSync(join(runDir, 'tasks', ns, `${id}.creating`))).toBe(false);
    // taken once: a second delete finds nothing to do
    expect((await runDelete(argv(ns, id, bundle), env, log)).code).toBe(0);
    expect(readFileSync(out, 'utf8')).toBe('ran\n');
  });

  it('a .creating its live Create took (claimCreating) is left to it: the delete waits for its record and cleans that up, parents and .creating included', async () => {
    const ns = 'default';
    const id = 'claimed';
    const bundle = join(tmp, 'bundle-claimed');
    mkdirSync(join(bundle, 'rootfs'), { recursive: true });
    const h = cgroupHandle(layout, `claimns/${id}`, { parent });
    handles.push(h);
    const madeParents = [...new Set(Object.values(h.dirs).map((d) => dirname(d)))];
    createCgroup(h);
    const state = { ociVersion: '1.0.2', id, bundle };
    writeCreating(runDir, { namespace: ns, id, bundle, hooks: { poststart: [], poststop: [], state }, cgroup: { handle: h, made: true, madeParents } });
    // "another process" (a sleeping child's pid) claimed it and records the task 300 ms later
    const creator = spawn('sleep', ['100'], { stdio: 'ignore' });
    children.push(creator);
    const dir = join(runDir, 'tasks', ns);
    const taken = join(dir, `${id}.creating.taken-${creator.pid}-${procStartTime(creator.pid!)}`);
    renameSync(join(dir, `${id}.creating`), taken);
    setTimeout(() => {
      writeRecord(runDir, { id, namespace: ns, bundle, pid: 0, rootfs: join(bundle, 'rootfs'), rootfsMounted: false, cgroup: h, madeParents, createdAt: new Date().toISOString() });
      // a crash between its record and its claim's end left the .creating too
      writeCreating(runDir, { namespace: ns, id, bundle, hooks: { poststart: [], poststop: [], state }, cgroup: { handle: h, made: true, madeParents } });
      rmSync(taken);
    }, 300);
    const t0 = Date.now();
    expect((await runDelete(argv(ns, id, bundle), env, log)).code).toBe(0);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
    for (const d of [...Object.values(h.dirs), ...madeParents]) expect(existsSync(d), d).toBe(false);
    expect(readdirSync(dir).filter((f) => f.startsWith(id))).toEqual([]);
    creator.kill('SIGKILL');
  });

  it('a cut-short Create whose cgroup a recorded container shares, or whose leaf it did not make: the cgroup and its processes stay', async () => {
    const ns = 'default';
    const bundle = join(tmp, 'bundle-shared');
    mkdirSync(join(bundle, 'rootfs'), { recursive: true });
    const h = cgroupHandle(layout, 'sharedcg', { parent });
    handles.push(h);
    createCgroup(h);
    const child = spawn('sleep', ['100'], { stdio: 'ignore' });
    children.push(child);
    addProcess(h, child.pid!);
    const state = { ociVersion: '1.0.2', id: 'x', bundle };
    writeRecord(runDir, { id: 'sharer', namespace: ns, bundle, pid: child.pid!, rootfs: join(bundle, 'rootfs'), rootfsMounted: false, cgroup: h, createdAt: new Date().toISOString() });
    writeCreating(runDir, { namespace: ns, id: 'cut2', bundle, hooks: { poststart: [], poststop: [], state }, cgroup: { handle: h, made: true, madeParents: [] } });
    expect((await runDelete(argv(ns, 'cut2', bundle), env, log)).code).toBe(0);
    expect(pids(h)).toEqual([child.pid]);
    removeRecord(runDir, ns, 'sharer');
    writeCreating(runDir, { namespace: ns, id: 'cut3', bundle, hooks: { poststart: [], poststop: [], state }, cgroup: { handle: h, made: false, madeParents: [] } });
    expect((await runDelete(argv(ns, 'cut3', bundle), env, log)).code).toBe(0);
    expect(pids(h)).toEqual([child.pid]);
    expect(existsSync(join(runDir, 'tasks', ns, 'cut3.creating'))).toBe(false);
    child.kill('SIGKILL');
  });
});

describe('.creating records', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'spore-creating-'));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));
  const h: CgroupHandle = { path: '/ns/c', mode: 'v2', dirs: { unified: '/sys/fs/cgroup/unified/ns/c' }, mounts: { unified: '/sys/fs/cgroup/unified' } };
  const rec = (id: string): CreatingRecord => ({ namespace: 'ns', id, bundle: '/b', hooks: { poststart: [], poststop: [], state: { ociVersion: '1.0.2', id, bundle: '/b' } }, cgroup: { handle: h, made: true, madeParents: ['/sys/fs/cgroup/unified/ns'] } });

  it('each is taken once; one a dead process took and left is taken again (also under a reused pid), a live one\'s is not; malformed ones are dropped', () => {
    const runDir = join(tmp, 'run');
    writeCreating(runDir, rec('a'));
    writeCreating(runDir, rec('b'));
    const dir = join(runDir, 'tasks', 'ns');
    // taken by a process that died before it finished (no such pid), and by a live one (this)
    const me = `${process.pid}-${procStartTime(process.pid)}`;
    renameSync(join(dir, 'b.creating'), join(dir, 'b.creating.taken-999999999-1'));
    writeFileSync(join(dir, `c.creating.taken-${me}`), JSON.stringify(rec('c')));
    // this pid with another start time: a process that had this pid before, and died
    writeFileSync(join(dir, `e.creating.taken-${process.pid}-1`), JSON.stringify(rec('e')));
    writeFileSync(join(dir, 'bad.creating'), JSON.stringify({ ...rec('bad'), cgroup: { handle: { path: 1 }, made: true, madeParents: [] } }));
    writeFileSync(join(dir, 'torn.creating'), '{"namespace":');
    // a temp file an atomic write left at a crash
    writeFileSync(join(dir, 'd.creating.tmp'), '{');
    const a = takeCreating(runDir, 'ns', 'a');
    expect(a?.record).toEqual(rec('a'));
    expect(takeCreating(runDir, 'ns', 'a')).toBeNull();
    // taken, the file stays (renamed) until what it names is cleaned up: a taker that dies first leaves it to the next
    expect(readdirSync(dir)).toContain(`a.creating.taken-${me}`);
    a?.done();
    writeCreating(runDir, rec('a'));
    const all = takeAllCreating(runDir);
    expect(all.map((t) => t.record.id).sort()).toEqual(['a', 'b', 'e']);
    for (const t of all) t.done();
    expect(readdirSync(dir).sort()).toEqual([`c.creating.taken-${me}`]);
    expect(takeAllCreating(runDir)).toEqual([]);
    // an older spored's record (hooks only) is still one
    const { cgroup: _cg, ...old } = rec('old');
    writeFileSync(join(dir, 'old.creating'), JSON.stringify(old));
    expect(takeAllCreating(runDir).map((t) => t.record)).toEqual([old]);
  });

  it('a Create claims its own .creating once; after another took it, it cannot', () => {
    const runDir = join(tmp, 'run-claim');
    writeCreating(runDir, rec('x'));
    const claimed = claimCreating(runDir, 'ns', 'x');
    expect(claimed).not.toBeNull();
    expect(takeCreating(runDir, 'ns', 'x')).toBeNull();
    claimed?.();
    expect(readdirSync(join(runDir, 'tasks', 'ns'))).toEqual([]);
    writeCreating(runDir, rec('y'));
    takeCreating(runDir, 'ns', 'y')?.done();
    expect(claimCreating(runDir, 'ns', 'y')).toBeNull();
  });
});
