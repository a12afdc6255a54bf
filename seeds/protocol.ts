// Wire protocol between spored and language seeds (Node and Python), identical for both.
//
// Transport: every L1/L2 seed connects to spored's seed socket ($SPORE_RUN_DIR/seeds.sock,
// a unix stream socket) right after it comes to life and sends `hello`. Frames are one
// JSON object per line ('\n'-terminated, UTF-8). Binary data (seccomp BPF) is base64.
//
// A seed is single-threaded and serves one request at a time; forks are its only heavy
// work. It is the parent of its instances and child seeds: it reaps them and reports
// their exits, enforces instance timeouts, and relays instance results. An instance talks
// only to its seed (through a pipe the seed created before fork), never to spored.
//
// Instance life: `fork` -> (seed forks) -> `forked` -> [if no request was attached:
// `activate`] -> child binds resources, runs the handler -> `result` -> child _exits ->
// `exit`. `kill` ends an instance early. The child applies `bind` in this order:
// cgroup (write "0" to each cgroupProcs file), netns (setns on the path), then
// uniqueness re-init (random generators, uuid caches), then seccomp (after
// PR_SET_NO_NEW_PRIVS), then the handler. Timings are microseconds from the child's
// first instruction after fork.
//
// Child seeds: `seed` asks a seed to fork a child that becomes a new seed: the child
// re-initializes uniqueness state, closes the parent's connection, connects anew to
// seeds.sock, sends `hello` with the new id, loads the function module (top-level code
// runs once, here) and sends `ready` (or `failed` with the load error). The parent
// reports `forked` with the child's pid.

export interface Bind {
  cgroupProcs: string[];
  netns: string | null;
  seccomp: string | null; // base64 struct sock_filter[]
  seccompFlags: number;
  noNewPrivs: boolean;
  /**
   * Node instances: write the result line, with `resultToken` added, to spored's result
   * FIFO number `resultSlot` (pools/result-fifos.ts; <dir of seeds.sock>/results/<slot>)
   * instead of through the seed. Absent: through the seed's pipe.
   */
  resultSlot?: number;
  resultToken?: string;
}

export interface InvokeRequest {
  event: string; // JSON text handed to the handler (parsed)
  context: { functionName: string; requestId: string; deadlineMs: number; memoryLimitMiB: number };
}

/** spored -> seed */
export type ToSeed =
  | {
      t: 'fork';
      id: string; // instance id
      bind: Bind;
      timeoutMs: number;
      /** attached request: run at once (invoke); absent: park until `activate` */
      request?: InvokeRequest;
      /** L1 fallback: code the instance must load before running (module path) */
      load?: { module: string; handler: string } | null;
      env?: Record<string, string>;
      /** experiments: fresh IPC + mount namespaces for this instance instead of the lineage's */
      fresh?: boolean;
    }
  | { t: 'activate'; id: string; request: InvokeRequest }
  | { t: 'kill'; id: string }
  | {
      t: 'seed';
      id: string; // new seed id
      /** L2: module file to load (absolute path) and handler export name; absent for L1 replicas */
      load?: { module: string; handler: string };
      env?: Record<string, string>;
      /**
       * lineage filter (base64 sock_filter[]) the new seed installs on itself, with
       * PR_SET_NO_NEW_PRIVS, after its namespace set-up and BEFORE running the function's
       * init code; its instances inherit it and stack only their small `bind.seccomp`.
       */
      seccomp?: { filter: string; flags: number };
      /** page-table prefill for the new seed's instances (seeds/prefill.ts) */
      prefill?: 'off' | 'inherit' | 'record';
    }
  | { t: 'stats' }
  | { t: 'exit' }; // the seed itself should exit (DeleteSeed)

export interface ChildTimings {
  bind: number;
  seccomp: number;
  init: number;
  execute: number;
  /** optional wall-clock stamps (epoch ms, fractional) for cross-process latency */
  startAt?: number; // the child's first instruction after fork
  doneAt?: number; // the result written
  minflt?: number; // minor page faults the instance took (prefill experiments)
}

/** seed -> spored */
export type FromSeed =
  | { t: 'hello'; id: string; pid: number; language: 'node' | 'python'; level: 1 | 2 }
  | { t: 'ready'; id: string; initMs: number }
  | { t: 'failed'; id: string; message: string; stack: string | null }
  | { t: 'forked'; id: string; pid: number; forkUs: number } // instance or child seed
  | { t: 'forkFailed'; id: string; message: string }
  | {
      t: 'result';
      id: string;
      ok: boolean;
      value: string | null; // JSON text of the handler's return value
      error: { kind: 'handler' | 'load' | 'internal'; message: string; stack: string | null } | null;
      timings: ChildTimings;
    }
  | { t: 'exit'; id: string; pid: number; code: number | null; signal: number | null; timedOut: boolean }
  | { t: 'stats'; id: string; pid: number; children: number };
