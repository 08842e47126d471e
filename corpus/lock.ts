import { closeSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { UsageError } from './errors.ts';

/** The lock file {@link acquireLock} takes in a directory. */
export const LOCK_FILE = '.lock';

/** Whether a process with this pid runs (one of another user counts). */
export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Takes `<dir>/.lock` so two processes never write one directory at once (two crawls of a corpus,
 * two comparisons into one --out). A lock left by a process that no longer runs (a SIGKILL) is
 * taken over. Returns the release function. `subject` names the directory in the error
 * (`Corpus '<dir>'`), `code` is the error's code.
 */
export function acquireLock(
  dir: string,
  { subject, code }: { subject: string; code: string } = { subject: 'Corpus', code: 'ERR_CORPUS_LOCKED' },
): () => void {
  const path = join(dir, LOCK_FILE);
  for (let tries = 0; tries < 2; tries++) {
    try {
      const fd = openSync(path, 'wx');
      writeSync(fd, String(process.pid));
      closeSync(fd);
      return () => {
        try {
          if (readFileSync(path, 'utf8') === String(process.pid)) unlinkSync(path);
        } catch {
          // Already gone: nothing to release.
        }
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const pid = Number(readFileSync(path, 'utf8'));
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && isProcessAlive(pid)) {
        throw new UsageError(code, `${subject} '${dir}' is being written by process ${pid}`, {
          context: { path: dir },
        });
      }
      unlinkSync(path);
    }
  }
  throw new UsageError(code, `Could not lock ${subject.toLowerCase()} '${dir}'`, { context: { path: dir } });
}
