#!/usr/bin/env node
// Runs both isolation probes OUTSIDE any sandbox, against real host fixtures, and prints
// their reports. Not a test: it shows that every check can fail. Run as root:
//
//   node integration/probes/run-local.mjs            # table
//   node integration/probes/run-local.mjs --verbose  # and every detail line
//   node integration/probes/run-local.mjs --json     # the raw results
//
// Each probe runs in its own child process (its init code at require/import time, then
// the handler), with what a sandbox must not give a function: stdout on a readable host
// file (logFd), an inherited host directory fd (fdEscape), a sibling /tmp under a stand-in
// for /.spore (siblingTmp: event.sporeRoot) and a peer's marker in /tmp (event.peerMarker),
// the host's TCP/abstract sockets and SysV shm.
// This process plays spored: its pid is sporedPid and it is the probes' parent.
import { execFileSync, spawn } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = fileURLToPath(new URL('.', import.meta.url));
const nodeProbe = join(here, 'node');
const pyProbe = join(here, 'python');
const verbose = process.argv.includes('--verbose');
const asJson = process.argv.includes('--json');

/** Host fixtures: what the probes must not reach. */
async function fixtures() {
  const work = mkdtempSync(join(tmpdir(), 'spore-probe-host-'));
  const secret = join(work, 'secret.txt');
  writeFileSync(secret, 'host secret\n');
  const hostDir = join(work, 'dir');
  mkdirSync(hostDir);
  // a stand-in for /.spore/tmp with a sibling's private /tmp in it
  const sporeRoot = join(work, 'spore');
  mkdirSync(join(sporeRoot, 'tmp', 'slot-sibling'), { recursive: true });
  writeFileSync(join(sporeRoot, 'tmp', 'slot-sibling', 'sibling-secret'), 'sibling\n');

  const tcp = net.createServer((c) => c.destroy());
  await new Promise((r) => tcp.listen(0, '0.0.0.0', r));
  const abstractName = `spore-probe-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  const abstract = net.createServer((c) => c.destroy());
  await new Promise((r) => abstract.listen(`\0${abstractName}`, r));

  const shmId = Number(/(\d+)\s*$/m.exec(execFileSync('ipcmk', ['-M', '4096'], { encoding: 'utf8' }))?.[1]);
  const shmLine = readFileSync('/proc/sysvipc/shm', 'utf8').split('\n').slice(1)
    .map((l) => l.trim().split(/\s+/)).find((f) => Number(f[1]) === shmId);
  if (!shmLine) throw new Error(`ipcmk made shm id ${shmId}, but /proc/sysvipc/shm does not list it`);

  // a "sibling's" marker in the shared /tmp: outside a sandbox every /tmp is one
  const peerMarker = `spore-probe-peer-${process.pid}`;
  writeFileSync(join('/tmp', peerMarker), 'peer\n');

  const hostAddr = Object.values(networkInterfaces()).flat().find((a) => a && a.family === 'IPv4' && !a.internal)?.address;
  const event = {
    sporedPid: process.pid,
    hostTcpPort: tcp.address().port,
    hostAddr: hostAddr ?? '127.0.0.1',
    hostAbstract: abstractName,
    hostShmKey: Number(shmLine[0]),
    hostFiles: [secret],
    hostDirs: [hostDir],
    sporeRoot,
    peerMarker,
  };
  const close = () => {
    tcp.close();
    abstract.close();
    try { execFileSync('ipcrm', ['-m', String(shmId)]); } catch { /* gone */ }
    rmSync(work, { recursive: true, force: true });
    rmSync(join('/tmp', peerMarker), { force: true });
  };
  return { event, work, hostDir, close };
}

/** Run one probe in a child: result JSON on fd 3, stdout on a host file, fd 4 a host dir. */
function runProbe(argv, event, fx, name) {
  const stdoutFile = join(fx.work, `${name}.stdout`);
  const out = openSync(stdoutFile, 'w+');
  const dirFd = openSync(fx.hostDir, 'r');
  const marker = `marker-${name}-${process.pid}`;
  const child = spawn(argv[0], argv.slice(1), {
    cwd: fx.work,
    env: { ...process.env, SPORE_PROBE_HOST: JSON.stringify(event), SPORE_PROBE_EVENT: JSON.stringify({ ...event, marker }) },
    stdio: ['ignore', out, 'pipe', 'pipe', dirFd],
  });
  closeSync(out);
  closeSync(dirFd);
  let result = '';
  let stderr = '';
  child.stdio[3].on('data', (d) => { result += d; });
  child.stderr.on('data', (d) => { stderr += d; });
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      rmSync(join('/tmp', marker), { force: true });
      if (!result) { resolve({ error: `exit ${code ?? signal}: ${stderr.trim()}` }); return; }
      try { resolve(JSON.parse(result)); } catch (e) { resolve({ error: `bad result (${e.message}): ${result.slice(0, 200)} ${stderr}` }); }
    });
  });
}

const nodeRunner = `
const fs = require('fs');
const probe = require(${JSON.stringify(nodeProbe)});
probe.handler(JSON.parse(process.env.SPORE_PROBE_EVENT), {}).then((r) => {
  fs.writeSync(3, JSON.stringify(r)); process.exit(0);
}, (e) => { console.error(e); process.exit(1); });`;

const pyRunner = `
import sys, os, json
sys.dont_write_bytecode = True
sys.path.insert(0, ${JSON.stringify(pyProbe)})
import main
data = json.dumps(main.handler(json.loads(os.environ["SPORE_PROBE_EVENT"]), None)).encode()
while data:
    data = data[os.write(3, data):]
`;

const fx = await fixtures();
for (const sig of ['SIGINT', 'SIGTERM']) process.once(sig, () => { fx.close(); process.exit(1); });
let results;
try {
  const [node, python] = await Promise.all([
    runProbe([process.execPath, '-e', nodeRunner], fx.event, fx, 'node'),
    runProbe(['python3', '-S', '-E', '-c', pyRunner], fx.event, fx, 'python'),
  ]);
  results = { node, python };
} finally {
  fx.close();
}

if (asJson) {
  console.log(JSON.stringify(results, null, 2));
  process.exit(0);
}
for (const [lang, r] of Object.entries(results)) if (r.error) console.log(`${lang}: ${r.error}`);
const checks = [...new Set(Object.values(results).flatMap((r) => Object.keys(r.handler ?? {})))];
const cell = (r, phase, c) => (r[phase]?.[c] ? (r[phase][c].denied ? 'DENIED' : 'open') : '-');
console.log(`whoami: uid ${process.getuid()}  (outside a sandbox: "open" is expected; DENIED means the check could not fail here)`);
console.log(['check'.padEnd(16), 'node init', 'node handler', 'py init', 'py handler'].map((s) => s.padEnd(13)).join(''));
for (const c of checks) {
  const row = [c.padEnd(16), cell(results.node, 'init', c), cell(results.node, 'handler', c), cell(results.python, 'init', c), cell(results.python, 'handler', c)];
  console.log(row.map((s) => s.padEnd(13)).join(''));
}
if (verbose) {
  for (const [lang, r] of Object.entries(results)) {
    for (const phase of ['init', 'handler']) {
      for (const [c, v] of Object.entries(r[phase] ?? {})) console.log(`\n[${lang} ${phase}] ${c}: ${v.denied ? 'DENIED' : 'open'}\n  ${v.detail}`);
    }
    const f = r.facts ?? {};
    console.log(`\n[${lang} facts] uid=${f.uid} gid=${f.gid} tmp=${f.tmp} landlock=${f.landlock} hostname=${f.hostname} cwd=${f.cwd} mounts=${f.mountinfo?.length} ns=${JSON.stringify(f.ns)} rlimits=${JSON.stringify(f.rlimits)} status=${JSON.stringify(f.status)} marker=${JSON.stringify(f.marker)}`);
  }
}
