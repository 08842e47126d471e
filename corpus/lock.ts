import { linkSync, readFileSync, readdirSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { UsageError } from './errors.ts';

/** The lock file {@link acquireLock} takes in a directory. */
export const LOCK_FILE = '.lock';

/** The marker {@link acquireReadLock} leaves in a directory it reads: `.read-<pid>`. */
const READ_MARKER = /^\.read-(\d+)$/;

/** Whether a process with this pid runs (one of another user counts). */
export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Who holds a lock: `subject` names the directory in the error (`Corpus '<dir>'`), `code` is its code. */
export interface LockLabel {
  subject: string;
  code: string;
}

const CORPUS_LOCK: LockLabel = { subject: 'Corpus', code: 'ERR_CORPUS_LOCKED' };

/**
 * Takes `<dir>/.lock` so two processes never write one directory at once (two crawls of a corpus,
 * two comparisons into one --out), nor one while another reads it ({@link acquireReadLock}). A
 * lock left by a process that no longer runs (a SIGKILL) is taken over. Returns the release
 * function.
 */
export function acquireLock(dir: string, label: LockLabel = CORPUS_LOCK): () => void {
  const path = join(dir, LOCK_FILE);
  for (let tries = 0; tries < 3; tries++) {
    if (!placeLock(path)) {
      const holder = readPid(path);
      if (holder !== undefined && holder !== process.pid && isProcessAlive(holder)) {
        throw busy(dir, label, holder, 'written');
      }
      removeStaleLock(path, dir, label);
      continue;
    }
    const release = (): void => {
      try {
        if (readFileSync(path, 'utf8') === String(process.pid)) unlinkSync(path);
      } catch {
        // Already gone: nothing to release.
      }
    };
    // A reader marks the directory before it looks for this lock, and this lock is taken before
    // the markers are read, so of a reader and a writer starting together at least one sees the other.
    const reader = liveReaders(dir).find((pid) => pid !== process.pid);
    if (reader !== undefined) {
      release();
      throw busy(dir, label, reader, 'read');
    }
    return release;
  }
  throw new UsageError(label.code, `Could not lock ${label.subject.toLowerCase()} '${dir}'`, {
    context: { path: dir },
  });
}

/**
 * Marks `dir` as read by this process (`<dir>/.read-<pid>`) for as long as a reader needs its
 * manifest and shards to hold still (an export of it): a stage that would write it
 * ({@link acquireLock}) is refused meanwhile, and a directory being written is refused here.
 * Readers do not exclude each other. A directory this process may not write is read without a
 * marker: no stage of this user can write it either. Returns the release function.
 */
export function acquireReadLock(dir: string, label: LockLabel = CORPUS_LOCK): () => void {
  const marker = join(dir, `.read-${process.pid}`);
  try {
    writeFileSync(marker, String(process.pid));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') return () => undefined;
    throw err;
  }
  const release = (): void => unlinkIfThere(marker);
  const writer = readPid(join(dir, LOCK_FILE));
  if (writer !== undefined && writer !== process.pid && isProcessAlive(writer)) {
    release();
    throw busy(dir, label, writer, 'written');
  }
  return release;
}

function busy(dir: string, { subject, code }: LockLabel, pid: number, doing: 'read' | 'written'): UsageError {
  return new UsageError(code, `${subject} '${dir}' is being ${doing} by process ${pid}`, { context: { path: dir } });
}

/**
 * Puts a lock holding this pid at `path`, unless one is there: written under another name and
 * linked into place, so no other process ever reads a lock that is there but still empty (and
 * would take it for a stale one). Returns whether it was placed.
 */
function placeLock(path: string): boolean {
  const fresh = `${path}.new-${process.pid}`;
  writeFileSync(fresh, String(process.pid));
  try {
    linkSync(fresh, path);
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return false;
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'ENOSYS') throw err;
  } finally {
    unlinkSync(fresh);
  }
  // A file system without hard links (some FUSE mounts of object stores): created exclusively
  // and then written, with the short moment between the two in which the lock is empty.
  try {
    writeFileSync(path, String(process.pid), { flag: 'wx' });
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  }
}

/** Whether `name` is a file the locks of this module leave in a directory. */
export function isLockFile(name: string): boolean {
  return name === LOCK_FILE || name.startsWith(`${LOCK_FILE}.`) || READ_MARKER.test(name);
}

/** The pid a lock or marker file holds; undefined when it is gone or holds none. */
function readPid(path: string): number | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  const pid = Number(text);
  return Number.isInteger(pid) && pid > 0 ? pid : undefined;
}

/** The pids of the processes whose read markers are in `dir`; the markers of dead ones are removed. */
function liveReaders(dir: string): number[] {
  const pids: number[] = [];
  for (const name of readdirSync(dir)) {
    const pid = Number(READ_MARKER.exec(name)?.[1]);
    if (!pid) continue;
    if (isProcessAlive(pid)) pids.push(pid);
    else unlinkIfThere(join(dir, name));
  }
  return pids;
}

/**
 * Removes a lock whose holder is gone. It is moved aside first, and only removed if it is still
 * the stale one: two processes taking over one stale lock at once would otherwise each delete it,
 * the second deleting the lock the first had just taken in its place. One that moved a fresh lock
 * puts it back and is refused.
 */
function removeStaleLock(path: string, dir: string, label: LockLabel): void {
  const aside = `${path}.stale-${process.pid}`;
  let stale: string;
  try {
    stale = readFileSync(path, 'utf8');
    renameSync(path, aside);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return; // Another process took it over.
    throw err;
  }
  const moved = readFileSync(aside, 'utf8');
  if (moved !== stale) {
    try {
      linkSync(aside, path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    unlinkSync(aside);
    throw busy(dir, label, Number(moved), 'written');
  }
  unlinkSync(aside);
}

function unlinkIfThere(path: string): void {
  try {
    unlinkSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}
