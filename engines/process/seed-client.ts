// spored's handle on a resident process-engine seed: starts it, correlates requests
// with replies, and turns the seed's reaped exits into events.
import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { fileURLToPath } from 'node:url';
import { FailedPrecondition, Unavailable } from '../../sys/errors.js';
import type { SeedReply, SeedRequest, SpawnPlan } from './protocol.js';

type Reply = Extract<SeedReply, { type: 'reply' }>;
type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

export interface SpawnResult { pid: number; warnings: string[]; timings: Record<string, number> }

export class SeedError extends FailedPrecondition {
  constructor(readonly phase: string, message: string, readonly errno?: number) {
    super(`${phase}: ${message}`);
  }
}

export interface SeedClientEvents {
  exit: [pid: number, status: number];
  down: [reason: string];
}

const SEED_MAIN = fileURLToPath(new URL('./seed-main.js', import.meta.url));

/**
 * Flags of the root seed, inherited by every fork. --single-threaded: V8 runs no helper
 * threads that could hold locks at fork time. --no-lazy + --no-flush-bytecode: code a
 * child runs but the seed never calls (container init, instance start-up, the function's
 * handler) is compiled once in the seed and stays compiled, instead of being compiled
 * again in every child.
 */
export const SEED_FLAGS = ['--single-threaded', '--v8-pool-size=0', '--max-semi-space-size=4', '--no-lazy', '--no-flush-bytecode'];

export class SeedClient extends EventEmitter<SeedClientEvents> {
  private child: ChildProcess | null = null;
  private seq = 0;
  private readonly waiting = new Map<number, (r: Reply) => void>();
  pid = 0;

  /** Start the seed and wait until it reports ready. */
  async start(): Promise<void> {
    const child = spawn(process.execPath, [...SEED_FLAGS, SEED_MAIN], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      serialization: 'advanced',
      env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin' },
    });
    this.child = child;
    await new Promise<void>((resolve, reject) => {
      const onReady = (m: SeedReply): void => {
        if (m.type === 'ready') { this.pid = m.pid; child.off('message', onReady); resolve(); }
      };
      child.on('message', onReady);
      child.once('exit', (code, sig) => reject(new Unavailable(`process seed exited during start-up (code ${code}, signal ${sig})`)));
    });
    child.on('message', (m: SeedReply) => this.onMessage(m));
    child.on('exit', (code, sig) => {
      this.child = null;
      const reason = `process seed exited (code ${code}, signal ${sig})`;
      for (const [, w] of this.waiting) w({ type: 'reply', seq: -1, ok: false, error: reason, phase: 'seed' });
      this.waiting.clear();
      this.emit('down', reason);
    });
  }

  private onMessage(m: SeedReply): void {
    if (m.type === 'exit') { this.emit('exit', m.pid, m.status); return; }
    if (m.type !== 'reply') return;
    const w = this.waiting.get(m.seq);
    if (w) { this.waiting.delete(m.seq); w(m); }
  }

  private request(req: DistributiveOmit<SeedRequest, 'seq'>): Promise<Reply> {
    const child = this.child;
    if (!child?.connected) return Promise.reject(new Unavailable('process seed is not running'));
    const seq = ++this.seq;
    return new Promise<Reply>((resolve) => {
      this.waiting.set(seq, resolve);
      child.send({ ...req, seq } as SeedRequest);
    });
  }

  /** Fork a sandbox that sets itself up and waits for start(). */
  async spawn(key: string, plan: SpawnPlan): Promise<SpawnResult> {
    const r = await this.request({ op: 'spawn', key, plan });
    if (!r.ok) throw new SeedError(r.phase, r.error, r.errno);
    return { pid: r.pid ?? 0, warnings: r.warnings ?? [], timings: r.timings ?? {} };
  }

  /** Let a spawned sandbox exec its process; resolves once execve succeeded. */
  async startProcess(key: string): Promise<number> {
    const r = await this.request({ op: 'start', key });
    if (!r.ok) throw new SeedError(r.phase, r.error, r.errno);
    return r.pid ?? 0;
  }

  /** Fork an L1 language seed from the root seed; returns its pid. */
  async spawnSeed(language: 'node' | 'python', id: string, socket: string, pythonBin: string, zygote: string): Promise<number> {
    const r = await this.request({ op: 'spawnSeed', language, id, socket, pythonBin, zygote });
    if (!r.ok) throw new SeedError(r.phase, r.error, r.errno);
    return r.pid ?? 0;
  }

  /** Kill a spawned sandbox that never started. */
  async abort(key: string): Promise<void> {
    await this.request({ op: 'abort', key });
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (!child) return;
    await new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.kill('SIGTERM');
      setTimeout(() => child.kill('SIGKILL'), 2000).unref();
    });
  }
}
