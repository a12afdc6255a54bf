// Parked instances: per active function version, a few instances forked from its L2 seed
// before any call arrives (FRI's Fork without its Activate), each already in its pooled
// cgroup with its own /tmp slot and channel, waiting for one request. A call takes one
// (its timeout starts then) and the lot is refilled in the background, so the fork is off
// the call's path. A parked instance is a fresh sandbox no request has touched: it holds
// only what any instance holds before its request (its slot, its cgroup, its channel), is
// used once and destroyed early like any other. Fork-on-request stays the fallback.
//
// Sizing: a fixed number per version (`--parked N`), or `auto` from recent traffic: as many
// as calls arrived in the last second (at least one while the function was called in the
// last minute, none when it was not), at most `max` and at most half its concurrency.
import type { Logger } from 'pino';
import type { InstRec, SeedRec, VersionRec } from './records.js';
import type { Instances } from './instances.js';

export type ParkingMode = 'auto' | number;

export interface ParkingOptions {
  mode: ParkingMode;
  /** most parked instances per version in auto mode */
  max: number;
  /** auto mode: a function not called for this long keeps none parked (ms, default 60 s) */
  idleMs?: number;
  log: Logger;
}

interface Lot {
  ready: InstRec[];
  /** being forked for this lot */
  filling: number;
  /** arrival times (ms) of recent calls */
  arrivals: number[];
  /** refills fail (a seed gone, limits reached): wait before trying again */
  backoffUntil: number;
}

const WINDOW_MS = 1000;
const IDLE_MS = 60_000;

export class Parking {
  private readonly lots = new Map<VersionRec, Lot>();
  private readonly sweeper: NodeJS.Timeout;
  private closed = false;

  constructor(private readonly o: ParkingOptions, private readonly inst: Instances) {
    // shrink lots of functions that went quiet, drop instances that died while parked
    this.sweeper = setInterval(() => this.sweep(), 2000);
    this.sweeper.unref();
  }

  get enabled(): boolean {
    return this.o.mode === 'auto' || this.o.mode > 0;
  }

  private lot(v: VersionRec): Lot {
    let l = this.lots.get(v);
    if (!l) { l = { ready: [], filling: 0, arrivals: [], backoffUntil: 0 }; this.lots.set(v, l); }
    return l;
  }

  /** Instances of `v` parked or being forked for its lot (each counts in v.inflight). */
  held(v: VersionRec): number {
    const l = this.lots.get(v);
    return l ? l.ready.length + l.filling : 0;
  }

  /** How many instances `v` should have parked now. */
  target(v: VersionRec, now = Date.now()): number {
    if (v.state !== 'active' || !this.enabled) return 0;
    const cap = Math.max(1, Math.floor(v.slots.concurrency / 2));
    if (this.o.mode !== 'auto') return Math.min(this.o.mode, cap);
    const l = this.lot(v);
    const last = l.arrivals.at(-1) ?? 0;
    if (now - last > (this.o.idleMs ?? IDLE_MS)) return 0;
    const recent = l.arrivals.filter((t) => now - t <= WINDOW_MS).length;
    return Math.min(this.o.max, cap, Math.max(1, recent));
  }

  /**
   * A call to `v` arrived: take a parked instance if one is ready (null: fork on request).
   * The lot is refilled once the call is answered (refill()), so the refill's fork does not
   * compete with the call for the CPU.
   */
  take(v: VersionRec): InstRec | null {
    if (!this.enabled) return null;
    const l = this.lot(v);
    const now = Date.now();
    l.arrivals.push(now);
    while (l.arrivals.length > 1 && now - (l.arrivals[0] as number) > (this.o.idleMs ?? IDLE_MS)) l.arrivals.shift();
    if (l.arrivals.length > 4096) l.arrivals.splice(0, l.arrivals.length - 4096);
    let got: InstRec | null = null;
    while (l.ready.length > 0 && !got) {
      const i = l.ready.shift() as InstRec;
      if (usable(i)) got = i;
    }
    return got;
  }

  /** Fork parked instances for `v` until it has its target (background; never waits for a slot). */
  refill(v: VersionRec): void {
    if (this.closed) return;
    const l = this.lot(v);
    if (Date.now() < l.backoffUntil) return;
    const want = this.target(v) - l.ready.length - l.filling;
    for (let k = 0; k < want; k++) {
      // only with a slot free now: parking must never make a caller wait
      if (v.slots.inUse + v.slots.waiting >= v.slots.concurrency) break;
      l.filling++;
      void (async () => {
        let i: InstRec | null = null;
        try {
          i = await this.inst.start(v, null, true);
          await this.inst.ready(i);
          // (its seed replaced meanwhile: dropFrom did not see this one)
          if (this.closed || v.state !== 'active' || !v.seeds.includes(i.seed)) { await this.inst.destroy(i); return; }
          l.ready.push(i);
        } catch (e) {
          if (i) await this.inst.destroy(i).catch(() => undefined);
          l.backoffUntil = Date.now() + 500;
          this.o.log.debug({ fn: v.fn.spec.name, err: (e as Error).message }, 'parking an instance failed');
        } finally {
          l.filling--;
        }
      })();
    }
  }

  /**
   * A seed is being replaced: its parked instances go now (so it can end), and the lot is
   * refilled from the version's other seeds by the next sweep or call.
   */
  dropFrom(seed: SeedRec): void {
    const l = seed.version ? this.lots.get(seed.version) : undefined;
    if (l) this.dropWhere(l, (i) => i.seed === seed);
  }

  /** Take the lot's ready instances that `gone` picks out of it and destroy them. */
  private dropWhere(l: Lot, gone: (i: InstRec) => boolean): void {
    const out = l.ready.filter(gone);
    if (out.length === 0) return;
    l.ready = l.ready.filter((i) => !gone(i));
    for (const i of out) void this.inst.destroy(i);
  }

  /** The version stops taking calls: its parked instances go (their resources come back). */
  drain(v: VersionRec): void {
    const l = this.lots.get(v);
    if (!l) return;
    this.lots.delete(v);
    for (const i of l.ready.splice(0)) void this.inst.destroy(i);
  }

  private sweep(): void {
    for (const [v, l] of this.lots) {
      // one that is no longer usable (its seed died: it may live on, reparented) is destroyed,
      // so its process, slot and cgroup go and it stops counting as in flight
      this.dropWhere(l, (i) => !usable(i));
      if (v.state !== 'active') { this.drain(v); continue; }
      const extra = l.ready.length - this.target(v);
      for (let k = 0; k < extra; k++) {
        const i = l.ready.pop();
        if (i) void this.inst.destroy(i);
      }
      if (extra < 0) this.refill(v);
    }
  }

  /** Parked instances per function version, for metrics and `spore ps`. */
  snapshot(): Record<string, { parked: number; filling: number; target: number }> {
    const out: Record<string, { parked: number; filling: number; target: number }> = {};
    for (const [v, l] of this.lots) out[`${v.fn.spec.name}@${v.version}`] = { parked: l.ready.length, filling: l.filling, target: this.target(v) };
    return out;
  }

  close(): void {
    this.closed = true;
    clearInterval(this.sweeper);
    for (const v of [...this.lots.keys()]) this.drain(v);
  }
}

/** Still parked: paused, not released, its seed still linked. */
function usable(i: InstRec): boolean {
  return i.info.state === 'paused' && !i.released && i.seed.link !== null && !i.seed.link.closed;
}
