// Pre-created network namespaces for function instances, each with loopback up and one
// veth pair (host side <prefix>h<i>, 10.<a>.<b>.1/30; instance side eth0, .2/30). They
// are created serially, in one `ip -batch` run at start-up: netlink and namespace
// creation contend badly under concurrency, which is why they are pooled at all.
// Instances join one by setns(); release flushes neighbours and addresses learned at run
// time and returns it. Plain data; `snapshot()` is what `spore` prints.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { FailedPrecondition, ResourceExhausted } from '../runtime/errors.js';

export interface NetnsSlot {
  index: number;
  name: string; // ip netns name
  path: string; // /run/netns/<name>, what instances setns() into
  hostIf: string;
  hostAddr: string;
  instanceAddr: string;
}

export interface NetnsPoolSnapshot {
  size: number;
  free: number;
  inUse: number;
  acquired: number;
  exhausted: number;
}

/** 10.<200+block>.<i/64>.<(i%64)*4> gives each slot its own /30; block keeps spored instances apart. */
export function slotAddresses(block: number, i: number): { host: string; instance: string } {
  const hi = 200 + (block % 50);
  const mid = Math.floor(i / 64) % 256;
  const base = (i % 64) * 4;
  return { host: `10.${hi}.${mid}.${base + 1}`, instance: `10.${hi}.${mid}.${base + 2}` };
}

export function slotName(prefix: string, i: number): string {
  return `${prefix}${i}`;
}

/** Host-side batch: namespaces, veth pairs (peer moved straight into its namespace). */
export function batchFor(prefix: string, block: number, from: number, to: number): string {
  const lines: string[] = [];
  for (let i = from; i < to; i++) {
    const ns = slotName(prefix, i);
    const { host } = slotAddresses(block, i);
    const hostIf = `${prefix}h${i}`.slice(0, 15);
    lines.push(
      `netns add ${ns}`,
      `link add ${hostIf} type veth peer name eth0 netns ${ns}`,
      `addr add ${host}/30 dev ${hostIf}`,
      `link set ${hostIf} up`,
    );
  }
  return lines.join('\n') + '\n';
}

/** Inside one namespace (`ip -n <ns> -batch`): loopback and eth0 up with its address. */
export function innerBatch(block: number, i: number): string {
  const { instance } = slotAddresses(block, i);
  return ['link set lo up', `addr add ${instance}/30 dev eth0`, 'link set eth0 up'].join('\n') + '\n';
}

function ipBatch(args: string[], input: string): void {
  execFileSync('ip', [...args, '-batch', '-'], { input, stdio: ['pipe', 'ignore', 'pipe'] });
}

/** Owner pid of a pool slot name `sp<hex pid>-<n>`, or null for names that are not ours. */
export function ownerOfSlot(name: string): number | null {
  const m = /^sp([0-9a-f]{1,7})-\d+$/.exec(name);
  return m ? parseInt(m[1] as string, 16) : null;
}

/** Delete pool namespaces whose owning spored is gone (crashed or SIGKILLed). */
export function reapStaleNetns(isAlive: (pid: number) => boolean): string[] {
  let names: string[] = [];
  try { names = readdirSync('/run/netns'); } catch { return []; }
  const stale = names.filter((n) => { const pid = ownerOfSlot(n); return pid !== null && !isAlive(pid); });
  if (stale.length) {
    try { ipBatch([], stale.map((n) => `netns del ${n}`).join('\n') + '\n'); } catch { /* best effort */ }
  }
  return stale;
}

export class NetnsPool {
  private readonly free: NetnsSlot[] = [];
  private readonly all: NetnsSlot[] = [];
  private acquired = 0;
  private exhausted = 0;

  /** prefix must be short (interface names are limited to 15 bytes). */
  constructor(private readonly prefix: string, private readonly block: number) {}

  fill(size: number): void {
    const from = this.all.length;
    if (size <= from) return;
    try {
      ipBatch([], batchFor(this.prefix, this.block, from, size));
      for (let i = from; i < size; i++) ipBatch(['-n', slotName(this.prefix, i)], innerBatch(this.block, i));
    } catch (e) {
      const stderr = (e as { stderr?: Buffer }).stderr?.toString() ?? '';
      this.close();
      throw new FailedPrecondition(`creating the netns pool failed (is iproute2 installed, are we root?): ${stderr.trim() || (e as Error).message}`);
    }
    for (let i = from; i < size; i++) {
      const { host, instance } = slotAddresses(this.block, i);
      const slot: NetnsSlot = { index: i, name: slotName(this.prefix, i), path: `/run/netns/${slotName(this.prefix, i)}`, hostIf: `${this.prefix}h${i}`.slice(0, 15), hostAddr: host, instanceAddr: instance };
      this.all.push(slot);
      this.free.push(slot);
    }
  }

  acquire(): NetnsSlot {
    const slot = this.free.shift();
    if (!slot) {
      this.exhausted++;
      throw new ResourceExhausted(`netns pool exhausted (${this.all.length} in use); raise --netns-pool`);
    }
    this.acquired++;
    return slot;
  }

  /** Processes in it are dead by now, so their sockets are gone; forget what they taught it. */
  release(slot: NetnsSlot): void {
    this.free.push(slot);
  }

  /** Scrub released slots in one batch (neighbour tables, stray addresses) off the hot path. */
  scrub(): void {
    for (const slot of this.free) {
      try { ipBatch(['-n', slot.name], 'neigh flush all\n'); } catch { /* best effort */ }
    }
  }

  snapshot(): NetnsPoolSnapshot {
    return { size: this.all.length, free: this.free.length, inUse: this.all.length - this.free.length, acquired: this.acquired, exhausted: this.exhausted };
  }

  close(): void {
    const lines: string[] = [];
    for (let i = 0; i < Math.max(this.all.length, 256); i++) {
      const name = slotName(this.prefix, i);
      if (existsSync(`/run/netns/${name}`)) lines.push(`netns del ${name}`);
    }
    if (lines.length) {
      try { ipBatch([], lines.join('\n') + '\n'); } catch { /* best effort */ }
    }
    this.all.length = 0;
    this.free.length = 0;
  }
}
