// Page-table prefill, the process engine's form of the paper's EPT prefill.
//
// fork() copies page-table entries only for mappings that have anonymous memory (an
// anon_vma). A seed's read-only file mappings (node's text and rodata, libc, libstdc++...)
// have none, so every forked instance starts with no entries for them and takes a minor
// fault (~2 µs on this PVM host) per 64 KiB fault-around window of code it runs.
//
// Prefill has two parts, both done once in the seed, nothing per instance:
//  1. give each private read-only file mapping an anon_vma, so fork copies its entries
//     (one write fault on a byte rewritten with its own value, then MADV_DONTNEED drops
//     the private copy again: contents and sharing stay as they were);
//  2. populate (MADV_POPULATE_READ) the ranges the seed's children touched, as recorded
//     from a child's /proc/self/pagemap, so entries exist in the seed to be copied.
// The cost moves to fork (copying entries is ~50 ns each vs a fault per window) and exit.
import { readFileSync, openSync, readSync, closeSync } from 'node:fs';
import * as sys from '../runtime/sys/libc.js';

export type PrefillMode = 'off' | 'inherit' | 'record';

export interface FileRange { start: bigint; end: bigint; prot: number; path: string }

const PAGE = 4096n;

/**
 * Private, non-writable, file-backed mappings with no private pages, from smaps text.
 * A mapping that has private pages already (RELRO after relocation) is copied by fork
 * anyway, and must never see MADV_DONTNEED: that would throw its relocations away.
 */
export function privateFileRanges(smaps: string): FileRange[] {
  const out: FileRange[] = [];
  let cur: FileRange | null = null;
  for (const line of smaps.split('\n')) {
    // 7f..-7f.. r-xp 00000000 08:01 1234   /usr/bin/node
    const m = /^([0-9a-f]+)-([0-9a-f]+) ([r-])([w-])([x-])([ps]) [0-9a-f]+ \S+ (\d+)\s*(.*)$/.exec(line);
    if (m) {
      const [, a, b, r, w, x, ps, inode, path] = m;
      cur = null;
      if (ps !== 'p' || w === 'w' || r !== 'r' || inode === '0' || !path?.startsWith('/') || path.endsWith(' (deleted)')) continue;
      cur = { start: BigInt('0x' + a), end: BigInt('0x' + b), prot: sys.PROT.READ | (x === 'x' ? sys.PROT.EXEC : 0), path };
      out.push(cur);
      continue;
    }
    if (cur && line.startsWith('Anonymous:') && !/^Anonymous:\s+0 kB/.test(line)) {
      out.pop();
      cur = null;
    }
  }
  return out;
}

/** Step 1: make fork copy these mappings' page-table entries. Returns how many took. */
export function inheritFilePageTables(ranges: FileRange[]): number {
  let done = 0;
  for (const r of ranges) {
    const len = Number(r.end - r.start);
    try {
      sys.mprotect(r.start, len, r.prot | sys.PROT.WRITE);
      try {
        sys.touchForWrite(r.start);
        sys.madviseRange(r.start, Number(PAGE), sys.MADV.DONTNEED);
      } finally {
        sys.mprotect(r.start, len, r.prot);
      }
      done++;
    } catch { /* a mapping that refuses (sealed, special) keeps faulting; harmless */ }
  }
  return done;
}

export interface PageRun { start: bigint; pages: number }

/** Present pages of `ranges` in this process, as runs (from /proc/self/pagemap bit 63). */
export function presentRuns(ranges: { start: bigint; end: bigint }[], pagemap: string | number = '/proc/self/pagemap'): PageRun[] {
  const fd = typeof pagemap === 'number' ? pagemap : openSync(pagemap, 'r');
  const runs: PageRun[] = [];
  try {
    for (const r of ranges) {
      const n = Number((r.end - r.start) / PAGE);
      const buf = Buffer.alloc(n * 8);
      const got = readSync(fd, buf, 0, buf.length, Number((r.start / PAGE) * 8n));
      runs.push(...runsOf(buf.subarray(0, got - (got % 8)), r.start));
    }
  } finally {
    if (typeof pagemap !== 'number') closeSync(fd);
  }
  return runs;
}

/** The parts of `runs` inside `ranges`: a record never makes the seed touch anything else. */
export function clipRuns(runs: PageRun[], ranges: { start: bigint; end: bigint }[]): PageRun[] {
  const out: PageRun[] = [];
  for (const r of runs) {
    const end = r.start + BigInt(r.pages) * PAGE;
    for (const g of ranges) {
      const a = r.start > g.start ? r.start : g.start;
      const b = end < g.end ? end : g.end;
      if (a < b) out.push({ start: a, pages: Number((b - a) / PAGE) });
    }
  }
  return out;
}

/** Runs of entries with the present bit set in raw pagemap bytes that start at `base`. */
export function runsOf(entries: Buffer, base: bigint): PageRun[] {
  const runs: PageRun[] = [];
  let cur: PageRun | null = null;
  for (let i = 0; i + 8 <= entries.length; i += 8) {
    const present = ((entries[i + 7] ?? 0) & 0x80) !== 0;
    if (present) {
      if (cur) cur.pages++;
      else { cur = { start: base + BigInt(i / 8) * PAGE, pages: 1 }; runs.push(cur); }
    } else cur = null;
  }
  return runs;
}

/** Merge runs from several recordings; runs closer than `gap` pages are joined. */
export function mergeRuns(runs: PageRun[], gap = 0): PageRun[] {
  const sorted = [...runs].sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
  const out: PageRun[] = [];
  for (const r of sorted) {
    const last = out[out.length - 1];
    const lastEnd = last ? last.start + BigInt(last.pages) * PAGE : 0n;
    if (last && r.start <= lastEnd + BigInt(gap) * PAGE) {
      const end = r.start + BigInt(r.pages) * PAGE;
      if (end > lastEnd) last.pages = Number((end - last.start) / PAGE);
    } else out.push({ ...r });
  }
  return out;
}

/** Step 2: fault the runs in here (read-only: nothing turns private). Returns pages asked for. */
export function populate(runs: PageRun[]): number {
  let pages = 0;
  for (const r of runs) {
    try { sys.madviseRange(r.start, r.pages * Number(PAGE), sys.MADV.POPULATE_READ); pages += r.pages; } catch { /* unmapped since */ }
  }
  return pages;
}

/** This process's pristine private read-only file mappings. */
export function ownFileRanges(): FileRange[] {
  return privateFileRanges(readFileSync('/proc/self/smaps', 'latin1'));
}

/** Serialized runs (compact, for the seed protocol): "hexstart:pages,..." */
export function encodeRuns(runs: PageRun[]): string {
  return runs.map((r) => `${r.start.toString(16)}:${r.pages}`).join(',');
}
export function decodeRuns(text: string): PageRun[] {
  const out: PageRun[] = [];
  for (const part of text.split(',')) {
    const m = /^([0-9a-f]{1,16}):(\d{1,9})$/.exec(part);
    if (m) out.push({ start: BigInt('0x' + m[1]), pages: Number(m[2]) });
  }
  return out;
}
