// Files that are either the old version or the new one, never half of either: spore's state
// on disk (task and pod records, function records, id ranges, pid files) survives a crash of
// the process writing it only if each write is a whole temp file renamed over the old one.
//
// Our own few lines, not npm's write-file-atomic: the temp file's name is fixed per target (a
// write cut short by a crash is overwritten by the next one, and restore code can remove it
// by its suffix), and Create's task record pays no realpath, stat, chown or chmod per write.
import { renameSync, rmSync, writeFileSync } from 'node:fs';

export interface AtomicWriteOptions {
  /** permission bits of a newly made file (default 0o600: spore's state is root's alone) */
  mode?: number;
  /** the temp file (default `<path>.tmp`); give a per-process name where two processes may write one target */
  tmp?: string;
}

/**
 * Write `data` to `path` through a temp file renamed over it (rename(2) is atomic within a
 * file system). No fsync: this guards against a crash of the writer, not of the machine.
 * Throws the write's or the rename's error (ENOSPC, EDQUOT, EACCES, ENOENT for a missing
 * directory, ...), and then leaves no temp file behind: a full disk must not also leave
 * half-written files that nothing removes.
 */
export function writeFileAtomic(path: string, data: string | Uint8Array, o: AtomicWriteOptions = {}): void {
  const tmp = o.tmp ?? `${path}.tmp`;
  try {
    writeFileSync(tmp, data, { mode: o.mode ?? 0o600 });
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
}
