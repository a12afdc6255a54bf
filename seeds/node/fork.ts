// Forking a live Node process and making the child a working Node process again: V8's
// DONTFORK heap, libuv's loop (uv_loop_fork), the cached pid, and the uniqueness state a
// child must never share with its siblings (Math.random, randomUUID's cache).
import koffi from 'koffi';
import { randomBytes } from 'node:crypto';
import crypto from 'node:crypto';
import { syncBuiltinESMExports } from 'node:module';
import { setFlagsFromString } from 'node:v8';
import * as sys from '../../sys/libc.js';

const self = koffi.load(null);
const uvDefaultLoop = self.func('void *uv_default_loop()');
const uvLoopFork = self.func('int uv_loop_fork(void *)');

/**
 * fork(); in the child, the event loop is already fixed, and the pid and random state are
 * fresh when first read (installForkAware must have run in this process).
 * `beforeLoopFork` runs in the child first, while every fd is still the parent's.
 */
export function forkNode(beforeLoopFork?: () => void): number {
  sys.prepareFork();
  const pid = sys.fork();
  if (pid === 0) {
    beforeLoopFork?.();
    afterForkInChild();
  }
  return pid;
}

let childStartedAt = 0;
/** When this process came out of fork() (performance.now() of the child; 0 in a seed). */
export function forkedAt(): number {
  return childStartedAt;
}

/** this process's pid, read once per process (0: not read since the last fork) */
let ownPid = 0;
/** Math.random's xorshift128+ state, seeded from the kernel at its first use in each process */
let s0 = 0n;
let s1 = 0n;
let seeded = false;

function afterForkInChild(): void {
  childStartedAt = performance.now();
  // The epoll fd and the async/signal wakeup fds are shared with the parent until this.
  const rc = uvLoopFork(uvDefaultLoop());
  if (rc !== 0) sys.exit(70);
  // process.pid and Math.random (installed by installForkAware) start over in every child;
  // both are only read again if something asks, which most handlers never do
  ownPid = 0;
  seeded = false;
  // A new context (vm.createContext, a Worker) seeds its Math.random from the isolate's
  // generator, whose state every fork inherits, unless --random-seed is set: a fresh one here.
  const seed = Buffer.allocUnsafe(4);
  sys.getrandom(seed);
  setFlagsFromString(`--random-seed=${(seed.readInt32LE(0) | 1)}`);
}

/**
 * Call once in a seed, before its first fork: `process.pid` becomes the pid of the process
 * it is read in, and Math.random and crypto.randomUUID (also Web Crypto's, and as an ES
 * module import) never share state with a sibling.
 * V8 cannot reseed Math.random's state from JS, so it is replaced by xorshift128+ seeded
 * from the kernel (getrandom) at its first call in each process. OpenSSL reseeds itself
 * after fork (it checks the pid), but Node keeps a batch of pre-generated UUIDs, so
 * randomUUID must not come from that cache. (Each child used to redo all of this at its
 * start, in code that ran once and so uncompiled: ~2 % of an instance's CPU.)
 */
export function installForkAware(): void {
  Object.defineProperty(process, 'pid', { get: (): number => (ownPid ||= sys.getpid()), configurable: true, enumerable: true });
  const MASK = (1n << 64n) - 1n;
  // BigInt keeps the generator exact; ~0.2 µs per call is fine for handler code.
  Math.random = (): number => {
    if (!seeded) {
      const seed = Buffer.allocUnsafe(16);
      sys.getrandom(seed);
      s0 = seed.readBigUInt64LE(0) | 1n;
      s1 = seed.readBigUInt64LE(8) | 2n;
      seeded = true;
    }
    let x = s0;
    const y = s1;
    s0 = y;
    x ^= (x << 23n) & MASK;
    s1 = x ^ y ^ (x >> 17n) ^ (y >> 26n);
    return Number(((s1 + y) & MASK) >> 11n) / 2 ** 53;
  };
  const randomUUID = (): `${string}-${string}-${string}-${string}-${string}` => {
    const b = randomBytes(16);
    b[6] = ((b[6] ?? 0) & 0x0f) | 0x40;
    b[8] = ((b[8] ?? 0) & 0x3f) | 0x80;
    const h = b.toString('hex');
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  };
  crypto.randomUUID = randomUUID;
  // Web Crypto's randomUUID (globalThis.crypto, crypto.webcrypto) draws on the same cache
  const web = (globalThis as { crypto?: object }).crypto;
  if (web) Object.defineProperty(web, 'randomUUID', { value: randomUUID, configurable: true, writable: true, enumerable: false });
  // `import { randomUUID } from 'node:crypto'` sees builtins' ESM exports, which follow the
  // CommonJS ones only when synced
  syncBuiltinESMExports();
}
