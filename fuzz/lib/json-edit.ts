// Structure-aware mutation for JSON targets: the fuzzer's bytes, read as a small edit script,
// change a valid base document (replace a value by one of another type, delete or add a key,
// append to an array). libFuzzer's byte mutations on JSON text mostly break the syntax; as an
// edit script they become type confusions, prototype keys, out-of-range numbers and odd
// strings in every field, which is what the parsers behind JSON inputs get wrong.

/** Reads bytes as small choices; past the end every read is 0. */
export class ByteReader {
  private at = 0;
  constructor(private readonly data: Uint8Array) {}
  get left(): number {
    return this.data.length - this.at;
  }
  byte(): number {
    return this.at < this.data.length ? (this.data[this.at++] as number) : 0;
  }
  below(n: number): number {
    return n <= 1 ? 0 : (this.byte() | (n > 256 ? this.byte() << 8 : 0)) % n;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.below(xs.length)] as T;
  }
}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

const KEYS = [
  '__proto__', 'constructor', 'toString', 'hasOwnProperty', 'valueOf', 'length', '0', '', 'type', 'path', 'options',
  'source', 'destination', 'args', 'env', 'cwd', 'user', 'uid', 'gid', 'umask', 'additionalGids', 'capabilities',
  'bounding', 'ambient', 'rlimits', 'soft', 'hard', 'namespaces', 'devices', 'mounts', 'linux', 'process', 'root',
  'readonly', 'hostname', 'sysctl', 'maskedPaths', 'readonlyPaths', 'seccomp', 'syscalls', 'names', 'action', 'args',
  'index', 'value', 'op', 'major', 'minor', 'fileMode', 'oomScoreAdj', 'noNewPrivileges', 'terminal', 'rootfsPropagation',
];
const STRINGS = [
  '', '__proto__', 'constructor', 'toString', '/', '/dev/', '/dev/x', '../x', 'a/../../b', 'rel', '\u0000', 'x'.repeat(300),
  'CAP_KILL', 'CAP_SYS_ADMIN', 'RLIMIT_NOFILE', 'RLIMIT_CPU', 'bind', 'rbind', 'ro', 'rprivate', 'shared', 'mount', 'uts',
  'pid', 'user', 'time', 'cgroup', 'proc', 'tmpfs', 'c', 'b', 'u', 'p', 'SCMP_ACT_ALLOW', 'SCMP_ACT_ERRNO', 'SCMP_CMP_EQ',
  'SCMP_ARCH_X86_64', 'read', '1', '-1', 'NaN', '0777',
];
const NUMBERS = [0, 1, -1, 0.5, 255, 511, 4095, 0o7777 + 1, 1000, -1001, 2 ** 31, 2 ** 32, 2 ** 32 + 1, 2 ** 53, 2 ** 53 + 2, 1e300, -1e300, 64, 65];

function value(r: ByteReader, depth: number): Json {
  switch (r.below(10)) {
    case 0: return null;
    case 1: return r.below(2) === 1;
    case 2: case 3: return r.pick(NUMBERS);
    case 4: case 5: return r.pick(STRINGS);
    case 6: return [];
    case 7: return {};
    case 8: return depth > 2 ? r.pick(STRINGS) : [value(r, depth + 1)];
    default: {
      if (depth > 2) return r.pick(NUMBERS);
      const o: { [k: string]: Json } = {};
      setKey(o, r.pick(KEYS), value(r, depth + 1));
      return o;
    }
  }
}

/** An own, enumerable property even for "__proto__" (what JSON.parse would make). */
function setKey(o: { [k: string]: Json }, k: string, v: Json): void {
  Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
}

function isContainer(v: Json): v is Json[] | { [k: string]: Json } {
  return v !== null && typeof v === 'object';
}

/** Apply up to 8 edits read from `r` to a deep copy of `base`; returns the new document. */
export function editJson(base: Json, r: ByteReader): Json {
  const doc = { root: structuredClone(base) } as { [k: string]: Json };
  for (let n = 0; n < 8 && r.left > 0; n++) {
    // walk down from the root: each step either stops or goes into a child
    let parent: Json[] | { [k: string]: Json } = doc;
    let key: string | number = 'root';
    for (let depth = 0; depth < 8; depth++) {
      const cur: Json = Array.isArray(parent) ? (parent[key as number] as Json) : (parent[key as string] as Json);
      if (!isContainer(cur) || r.below(4) === 0) break;
      const keys: (string | number)[] = Array.isArray(cur) ? cur.map((_, i) => i) : Object.keys(cur);
      if (keys.length === 0) break;
      parent = cur;
      key = r.pick(keys);
    }
    const target: Json = Array.isArray(parent) ? (parent[key as number] as Json) : (parent[key as string] as Json);
    switch (r.below(4)) {
      case 0: // replace
        if (Array.isArray(parent)) parent[key as number] = value(r, 0);
        else setKey(parent, key as string, value(r, 0));
        break;
      case 1: // delete
        if (Array.isArray(parent)) parent.splice(key as number, 1);
        else if (parent !== doc) delete parent[key as string];
        break;
      case 2: // add a key to an object
        if (isContainer(target) && !Array.isArray(target)) setKey(target, r.pick(KEYS), value(r, 0));
        break;
      default: // append to an array
        if (Array.isArray(target)) target.push(value(r, 0));
        break;
    }
  }
  return doc.root ?? null;
}
