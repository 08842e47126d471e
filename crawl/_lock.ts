import { closeSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { UsageError } from '../corpus/errors.ts';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Takes `<dir>/.lock` so two crawls never write one corpus at once. A lock left by a process that
 * no longer runs (a SIGKILL) is taken over. Returns the release function.
 */
export function acquireLock(dir: string): () => void {
  const path = join(dir, '.lock');
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
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && alive(pid)) {
        throw new UsageError('ERR_CORPUS_LOCKED', `Corpus '${dir}' is being written by process ${pid}`, {
          context: { path: dir },
        });
      }
      unlinkSync(path);
    }
  }
  throw new UsageError('ERR_CORPUS_LOCKED', `Could not lock corpus '${dir}'`, { context: { path: dir } });
}
