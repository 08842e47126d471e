import { linkSync, readFileSync, readdirSync, realpathSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { UsageError } from './errors.ts';

/** The lock file {@link acquireLock} takes in a directory. */
export const LOCK_FILE = '.lock';

/** The marker {@link acquireReadLock} leaves in a directory it reads: `.read-<pid>`. */
const READ_MARKER = /^\.read-(\d+)$/;

/**
 * The directories whose lock this process holds, by real path. A lock file naming this process's
 * pid is ours only if its directory is here: otherwise an earlier process that had the same pid
 * left it (containers reuse low pids: a killed run as pid 7, the next one pid 7 again).
 */
const held = new Set<string>();

/** The directories this process marks as read, by real path, with how many of its readers hold the mark. */
const reading = new Map<string, number>();

/** The key of `dir` in {@link held} and {@link reading}: one directory however it is spelt. */
function directoryKey(dir: string): string {
  try {
    return realpathSync(dir);
  } catch {
    return resolve(dir);
  }
}

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
 * two comparisons into one --out), nor one while another reads it ({@link acquireReadLock}), nor
 * two runs in this process (two `runFilter` calls on one corpus). A lock left by a process that no
 * longer runs (a SIGKILL) is taken over, one holding this process's pid included when this process
 * does not hold it. Returns the release function; calling it again does nothing.
 */
export function acquireLock(dir: string, label: LockLabel = CORPUS_LOCK): () => void {
  const path = join(dir, LOCK_FILE);
  const key = directoryKey(dir);
  if (held.has(key)) throw busy(dir, label, process.pid, 'written');
  for (let tries = 0; tries < 3; tries++) {
    if (!placeLock(path)) {
      const holder = readPid(path);
      // Our own pid here is a dead process's: this process holds no lock on `dir` (checked above).
      if (holder !== undefined && holder !== process.pid && isProcessAlive(holder)) {
        throw busy(dir, label, holder, 'written');
      }
      removeStaleLock(path, dir, label);
      continue;
    }
    held.add(key);
    let released = false;
    const release = (): void => {
      // Once only: a second call must not release a lock taken again since, in this process or another.
      if (released) return;
      released = true;
      held.delete(key);
      try {
        if (readFileSync(path, 'utf8') === String(process.pid)) unlinkSync(path);
      } catch {
        // Already gone: nothing to release.
      }
    };
    // A reader marks the directory before it looks for this lock, and this lock is taken before
    // the markers are read, so of a reader and a writer starting together at least one sees the other.
    const reader = liveReaders(dir, key)[0];
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
 * Readers do not exclude each other; this process's readers of one directory share its marker,
 * removed when the last one releases it. A directory this process may not write is read without a
 * marker: no stage of this user can write it either. Returns the release function; calling it
 * again does nothing.
 */
export function acquireReadLock(dir: string, label: LockLabel = CORPUS_LOCK): () => void {
  const marker = join(dir, `.read-${process.pid}`);
  const key = directoryKey(dir);
  if (held.has(key)) throw busy(dir, label, process.pid, 'written');
  try {
    writeFileSync(marker, String(process.pid));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') return () => undefined;
    throw err;
  }
  reading.set(key, (reading.get(key) ?? 0) + 1);
  let released = false;
  const release = (): void => {
    if (released) return;
    released = true;
    const readers = (reading.get(key) ?? 1) - 1;
    if (readers > 0) {
      reading.set(key, readers);
    } else {
      reading.delete(key);
      unlinkIfThere(marker);
    }
  };
  // Our own pid here is a dead process's: this process holds no lock on `dir` (checked above).
  const writer = readPid(join(dir, LOCK_FILE));
  if (writer !== undefined && writer !== process.pid && isProcessAlive(writer)) {
    release();
    throw busy(dir, label, writer, 'written');
  }
  return release;
}

function busy(dir: string, { subject, code }: LockLabel, pid: number, doing: 'read' | 'written'): UsageError {
  const by = pid === process.pid ? `another run in this process (${pid})` : `process ${pid}`;
  return new UsageError(code, `${subject} '${dir}' is being ${doing} by ${by}`, { context: { path: dir } });
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

/**
 * The pids of the processes whose read markers are in `dir` (`key`), this one's when it reads it;
 * the markers of dead ones are removed, this pid's too when this process does not read `dir` (a
 * killed earlier process that had the same pid left it).
 */
function liveReaders(dir: string, key: string): number[] {
  const pids: number[] = [];
  for (const name of readdirSync(dir)) {
    const pid = Number(READ_MARKER.exec(name)?.[1]);
    if (!pid) continue;
    if (pid === process.pid ? reading.has(key) : isProcessAlive(pid)) pids.push(pid);
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
