// OCI lifecycle hooks (runtime-spec config.md "POSIX-platform Hooks", runtime.md "State"):
// what config.json may say about them, checked, and the state a hook reads on its stdin.
//
// Where each kind runs (runtime-spec; runc 1.1's libcontainer does the same, and is the
// oracle the tests compare with):
//   prestart, createRuntime  runtime namespace, after the container's namespaces and mounts
//                            exist, before pivot_root; state status "creating", pid the
//                            init's host pid. A failure fails Create.
//   createContainer          container namespaces (its mount namespace, before pivot_root:
//                            paths resolve on the host's view), cwd the rootfs; pid as the
//                            container sees it. A failure fails Create.
//   startContainer           in the container after Start, before the program's execve, as
//                            its user, with its capabilities and seccomp filter. A failure
//                            ends the container (Start itself has answered).
//   poststart                runtime namespace, after the program started (runc 1.2 and the
//                            spec; runc 1.1 ran it during Create); a failure kills the container
//                            and fails Start.
//   poststop                 runtime namespace, at Delete; a failure is a warning.
import { InvalidArgument } from '../../sys/errors.js';

/** The hook kinds, in the order the spec lists them. */
export const HOOK_KINDS = ['prestart', 'createRuntime', 'createContainer', 'startContainer', 'poststart', 'poststop'] as const;
export type HookKind = (typeof HOOK_KINDS)[number];

/** One hook (runtime-spec "hooks" entries), checked. */
export interface Hook {
  /** absolute path of the program, as execv's path (no PATH search) */
  path: string;
  /** argv, argv[0] included; [] when absent (runc then passes no argv[0] either) */
  args: string[];
  /** the environment; null when absent: the runner's own (runc's Go exec.Cmd with Env nil) */
  env: string[] | null;
  /** seconds, > 0; null: no limit */
  timeout: number | null;
}

export type Hooks = Partial<Record<HookKind, Hook[]>>;

/**
 * The state a hook reads on stdin (runtime-spec runtime.md "State"): `pid` omitted for a
 * stopped container, `annotations` only when the config has some (runc's JSON omits both
 * when empty).
 */
export interface OciState {
  ociVersion: string;
  id: string;
  status: 'creating' | 'created' | 'running' | 'stopped';
  pid?: number;
  bundle: string;
  annotations?: Record<string, string>;
}

/** The runtime-spec version spore's state reports (the spec release whose hooks it implements). */
export const OCI_STATE_VERSION = '1.0.2';

/**
 * The OCI state of container `id` but for status and pid: its string annotations from
 * config.json's (left out when there are none, as runc's JSON does).
 */
export function ociStateBase(id: string, bundle: string, annotations: unknown): Omit<OciState, 'status' | 'pid'> {
  const kept: Record<string, string> = {};
  if (annotations && typeof annotations === 'object' && !Array.isArray(annotations)) {
    for (const [k, v] of Object.entries(annotations)) if (typeof v === 'string') kept[k] = v;
  }
  return { ociVersion: OCI_STATE_VERSION, id, bundle, ...(Object.keys(kept).length > 0 ? { annotations: kept } : {}) };
}

const show = (v: unknown): string => (JSON.stringify(v) ?? String(v)).slice(0, 80);

/**
 * config.json's `hooks` -> Hooks, each kind with at least one hook present (an empty list is
 * no hook). Throws InvalidArgument naming the field: an unknown kind, a relative path, args or
 * env that are not strings, a timeout that is not a positive integer (runtime-spec: "timeout
 * (int, OPTIONAL) ... MUST be greater than zero").
 */
export function parseHooks(raw: unknown): Hooks {
  if (raw === undefined || raw === null) return {};
  if (typeof raw !== 'object' || Array.isArray(raw)) throw new InvalidArgument(`hooks must be an object, got ${show(raw)}`);
  const out: Hooks = {};
  for (const [kind, list] of Object.entries(raw as Record<string, unknown>)) {
    if (!(HOOK_KINDS as readonly string[]).includes(kind)) throw new InvalidArgument(`hooks.${kind}: unknown hook kind (OCI runtime spec: ${HOOK_KINDS.join(', ')})`);
    if (list === null || list === undefined) continue;
    if (!Array.isArray(list)) throw new InvalidArgument(`hooks.${kind} must be an array, got ${show(list)}`);
    const hooks = list.map((h, i) => parseHook(h, `hooks.${kind}[${i}]`));
    if (hooks.length > 0) out[kind as HookKind] = hooks;
  }
  return out;
}

function parseHook(h: unknown, field: string): Hook {
  if (h === null || typeof h !== 'object' || Array.isArray(h)) throw new InvalidArgument(`${field} must be an object, got ${show(h)}`);
  const o = h as Record<string, unknown>;
  if (typeof o.path !== 'string' || !o.path.startsWith('/')) throw new InvalidArgument(`${field}.path must be an absolute path, got ${show(o.path)}`);
  const strings = (v: unknown, name: string): string[] | null => {
    if (v === undefined || v === null) return null;
    if (!Array.isArray(v) || v.some((x) => typeof x !== 'string' || x.includes('\0'))) throw new InvalidArgument(`${field}.${name} must be an array of strings, got ${show(v)}`);
    return v as string[];
  };
  if (o.path.includes('\0')) throw new InvalidArgument(`${field}.path must not contain NUL`);
  const t = o.timeout;
  if (t !== undefined && t !== null && (typeof t !== 'number' || !Number.isInteger(t) || t <= 0)) {
    throw new InvalidArgument(`${field}.timeout must be a positive integer (seconds), got ${show(t)}`);
  }
  return { path: o.path, args: strings(o.args, 'args') ?? [], env: strings(o.env, 'env'), timeout: typeof t === 'number' ? t : null };
}

/** The longest delay a Node timer takes (2^31 - 1 ms, about 24.8 days); a longer one fires at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * A hook's timeout in milliseconds for a timer, or null for none: no timeout, or one past
 * what a timer can wait (runc takes any; a hook that long is one without a limit).
 */
export function hookTimeoutMs(h: Hook): number | null {
  return h.timeout === null || h.timeout * 1000 > MAX_TIMER_MS ? null : h.timeout * 1000;
}

/** Whether `hooks` has any of `kinds`. */
export function hasHooks(hooks: Hooks | null | undefined, ...kinds: HookKind[]): boolean {
  return kinds.some((k) => (hooks?.[k]?.length ?? 0) > 0);
}

/**
 * The state's bytes as a hook reads them: compact JSON with runc's key order (ociVersion, id,
 * status, pid, bundle, annotations), whatever order `state` was built in.
 */
export function stateBytes(state: OciState): Buffer {
  const { ociVersion, id, status, pid, bundle, annotations } = state;
  return Buffer.from(JSON.stringify({ ociVersion, id, status, ...(pid !== undefined ? { pid } : {}), bundle, ...(annotations ? { annotations } : {}) }));
}

/** A wait status in words: "exit status 3", "killed by signal 9". */
export function describeWaitStatus(status: number): string {
  const sig = status & 0x7f;
  return sig === 0 ? `exit status ${(status >> 8) & 0xff}` : `killed by signal ${sig}`;
}

/**
 * The error text for hook `index` of `kind` (runc: `error running hook #<i>: <err>, stdout:
 * ..., stderr: ...`; spore gives the combined output, trimmed to its last 2 KiB).
 */
export function hookFailure(kind: HookKind, index: number, hook: Hook, why: string, output: string): string {
  const tail = output.length > 2048 ? `…${output.slice(-2048)}` : output;
  return `${kind} hook #${index} (${hook.path}): ${why}${tail.trim() ? `; output: ${tail.trim()}` : ''}`;
}

/**
 * The end of a hook's output (stdout and stderr together), at most `keep` bytes of whole
 * chunks past the last one: where its error usually is. Both hook runners (spored's, the
 * container init's) keep it so.
 */
export class OutputTail {
  private readonly parts: Buffer[] = [];
  private kept = 0;
  constructor(private readonly keep = 64 * 1024) {}

  push(b: Buffer): void {
    this.parts.push(b);
    this.kept += b.length;
    while (this.kept - (this.parts[0]?.length ?? 0) >= this.keep) this.kept -= (this.parts.shift() as Buffer).length;
  }

  text(): string {
    return Buffer.concat(this.parts).toString('utf8');
  }
}
