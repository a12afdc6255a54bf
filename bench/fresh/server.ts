// "Fresh process per request" baseline server for bench/fri.ts: the same HTTP shape as spore's
// gateway (POST /invoke/<language>-<function>, JSON body -> handler's JSON result), but every
// request spawns a new `node runner.cjs <dir>/<function>.js <body>` or
// `python3 runner.py <dir>/<function>.py <body>` and answers with what it prints. No pooling,
// no pre-initialization: what a runtime without seeds pays per cold start.
// Usage: node dist/bench/fresh/server.js --port P --dir <functions dir> [--host 127.0.0.1]
//   prints "listening <port>" once ready; SIGTERM closes it (children are killed).
import { spawn, type ChildProcess } from 'node:child_process';
import * as http from 'node:http';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
// runner.cjs / runner.py live in <repo>/bench/fresh (also when this file runs from dist/bench/fresh)
const runnerDir = path.resolve(here, here.includes(`${path.sep}dist${path.sep}`) ? '../../../bench/fresh' : '.');

function arg(name: string, def?: string): string {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? process.argv[i + 1] : def;
  if (v === undefined) throw new Error(`missing --${name}`);
  return v;
}

const port = Number(arg('port', '0'));
const host = arg('host', '127.0.0.1');
const dir = path.resolve(arg('dir'));
const live = new Set<ChildProcess>();

function commandFor(name: string): { cmd: string; args: string[] } | undefined {
  const m = /^(node|python)-([a-z0-9][a-z0-9-]*)$/.exec(name);
  if (!m) return undefined;
  return m[1] === 'node'
    ? { cmd: process.execPath, args: [path.join(runnerDir, 'runner.cjs'), path.join(dir, `${m[2]}.js`)] }
    : { cmd: 'python3', args: [path.join(runnerDir, 'runner.py'), path.join(dir, `${m[2]}.py`)] };
}

const server = http.createServer((req, res) => {
  const m = /^\/invoke\/([^/?]+)/.exec(req.url ?? '');
  const c = m ? commandFor(decodeURIComponent(m[1]!)) : undefined;
  if (req.method !== 'POST' || !c) {
    res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"POST /invoke/<node|python>-<function>"}');
    return;
  }
  const chunks: Buffer[] = [];
  req.on('data', (d: Buffer) => chunks.push(d));
  req.on('end', () => {
    const body = Buffer.concat(chunks).toString('utf8');
    const child = spawn(c.cmd, [...c.args, body], { stdio: ['ignore', 'pipe', 'pipe'], cwd: dir });
    live.add(child);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout!.on('data', (d: Buffer) => out.push(d));
    child.stderr!.on('data', (d: Buffer) => err.push(d));
    child.on('error', (e) => {
      live.delete(child);
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' }).end(JSON.stringify({ error: String(e) }));
    });
    child.on('close', (code) => {
      live.delete(child);
      if (res.headersSent) return;
      if (code === 0) res.writeHead(200, { 'content-type': 'application/json' }).end(Buffer.concat(out));
      else res.writeHead(500, { 'content-type': 'application/json' }).end(JSON.stringify({ error: `exit ${code}`, stderr: Buffer.concat(err).toString('utf8').slice(0, 2000) }));
    });
  });
});
server.keepAliveTimeout = 65_000;

const stop = (): void => {
  for (const c of live) c.kill('SIGKILL');
  server.close();
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 200).unref();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
server.listen(port, host, () => {
  const a = server.address();
  process.stdout.write(`listening ${typeof a === 'object' && a ? a.port : port}\n`);
});
