// Which syscalls an invocation costs, per language: `strace -f -c` attached to a function's
// serving seeds (so every instance they fork is followed) over N invocations through the
// gateway. Prints calls per invocation, and names any of the sandbox's once-per-lineage
// calls (namespaces, mounts, pivot_root, seccomp, id maps, rlimits) that show up per
// invocation: there must be none.
//
//   node dist/bench/syscalls.js [--n 1000] [--json]
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
/** Syscalls the sandbox makes once per lineage (functions/sandbox.ts, seeds/*): none may be per invocation. */
export const LINEAGE_ONCE = ['unshare', 'setns', 'mount', 'umount2', 'pivot_root', 'sethostname', 'seccomp', 'setrlimit', 'prlimit64', 'setgroups', 'setresuid', 'setresgid', 'capset', 'chroot', 'mknod', 'symlink', 'mkdir', 'ioctl'];

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => { const p = (s.address() as net.AddressInfo).port; s.close(() => resolve(p)); });
    s.on('error', reject);
  });
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
function post(port: number, fn: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: `/invoke/${fn}`, method: 'POST', agent }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => { body += d; });
      res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`${fn}: HTTP ${res.statusCode}: ${body.slice(0, 500)}`))));
    });
    req.on('error', reject);
    req.end('{}');
  });
}

/** strace -c's summary table -> syscall -> calls. */
export function parseStraceSummary(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?([a-z_0-9]+)\s*$/.exec(line);
    if (m && m[2] !== 'total') out.set(m[2] as string, Number(m[1]));
  }
  return out;
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const n = Number(argv[argv.indexOf('--n') + 1] ?? 0) || 1000;
  if (process.getuid?.() !== 0) throw new Error('needs root (spored, strace -p)');
  try { execFileSync('strace', ['-V'], { stdio: 'ignore' }); } catch { throw new Error('strace is not installed (apt-get install strace)'); }
  const dir = fs.mkdtempSync('/tmp/spore-syscalls-');
  const port = await freePort();
  const spored: ChildProcess = spawn(path.join(repoRoot, 'bin', 'spored'), ['--run-dir', dir, '--gateway', `127.0.0.1:${port}`, '--log', path.join(dir, 'spored.log'), '--l2-replicas', '1'], { stdio: 'ignore', detached: true });
  const rows: { fn: string; perInvocation: Record<string, number>; lineageOnceSeen: string[] }[] = [];
  try {
    while (!fs.existsSync(path.join(dir, 'fri.sock'))) await new Promise((r) => setTimeout(r, 50));
    const cli = (args: string[]): string => execFileSync(path.join(repoRoot, 'bin', 'spore'), ['--socket', path.join(dir, 'fri.sock'), ...args], { encoding: 'utf8' });
    for (let i = 0; ; i++) { try { if (cli(['seeds']).includes('l1-python')) break; } catch { /* not yet */ } if (i > 300) throw new Error('spored did not come up'); await new Promise((r) => setTimeout(r, 100)); }
    for (const [fn, file] of [['hello-node', 'hello.js'], ['hello-python', 'hello.py']] as const) {
      cli(['deploy', fn, '--file', path.join(repoRoot, 'examples', file)]);
      await new Promise((r) => setTimeout(r, 1000));
      for (let i = 0; i < 20; i++) await post(port, fn);
      const seeds = (JSON.parse(cli(['seeds', '--json'])) as { function: string | null; pid: number; replicaOf: string | null }[]).filter((s) => s.function === fn);
      // the replica serves once it is ready; trace every seed of the lineage anyway
      const out = path.join(dir, `${fn}.strace`);
      const st = spawn('strace', ['-f', '-c', '-o', out, ...seeds.flatMap((s) => ['-p', String(s.pid)])], { stdio: 'ignore' });
      await new Promise((r) => setTimeout(r, 1000));
      for (let i = 0; i < n; i++) await post(port, fn);
      await new Promise((r) => setTimeout(r, 500));
      st.kill('SIGINT');
      await new Promise((r) => st.once('exit', r));
      const counts = parseStraceSummary(fs.readFileSync(out, 'utf8'));
      const per: Record<string, number> = {};
      for (const [k, v] of [...counts].sort((a, b) => b[1] - a[1])) per[k] = Math.round((v / n) * 100) / 100;
      rows.push({ fn, perInvocation: per, lineageOnceSeen: LINEAGE_ONCE.filter((k) => (counts.get(k) ?? 0) >= n / 2) });
    }
  } finally {
    agent.destroy();
    try { process.kill(-(spored.pid ?? 0), 'SIGTERM'); } catch { /* gone */ }
    await new Promise((r) => { spored.once('exit', r); setTimeout(r, 10_000); });
    fs.rmSync(dir, { recursive: true, force: true });
  }
  process.stdout.write(`# syscalls per invocation (strace -f -c on the function's seeds, ${n} invocations, c=1)\n\n`);
  for (const r of rows) {
    process.stdout.write(`## ${r.fn}\n\n| syscall | calls / invocation |\n|---|---:|\n`);
    for (const [k, v] of Object.entries(r.perInvocation)) if (v >= 0.05) process.stdout.write(`| ${k} | ${v} |\n`);
    process.stdout.write(`\nonce-per-lineage calls seen per invocation: ${r.lineageOnceSeen.length ? r.lineageOnceSeen.join(', ') : 'none'}\n\n`);
  }
  if (argv.includes('--json')) process.stdout.write(JSON.stringify(rows) + '\n');
}

main().catch((e: unknown) => { process.stderr.write(`syscalls: ${(e as Error).stack ?? String(e)}\n`); process.exit(1); });
