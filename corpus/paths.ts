/**
 * Checks of the paths a user names, before anything is written there: a file where a directory is
 * wanted (or the other way round) is one clear line, not `ENOTDIR` or SQLite's "unable to open
 * database file" from deep inside a stage.
 */
import { existsSync, statSync } from 'node:fs';
import { UsageError } from './errors.ts';

/** Refuses `path` when it exists and is not a directory (`what`: "Report directory", ...). */
export function refuseNonDirectory(path: string, what: string, stage: string): void {
  if (existsSync(path) && !statSync(path).isDirectory()) {
    throw new UsageError('ERR_NOT_A_DIRECTORY', `${what} '${path}' is a file, not a directory`, {
      context: { path, stage },
    });
  }
}

/** Refuses `path` when it is a directory (`what`: "Results database", ...). */
export function refuseDirectory(path: string, what: string, stage: string): void {
  if (existsSync(path) && statSync(path).isDirectory()) {
    throw new UsageError('ERR_NOT_A_FILE', `${what} '${path}' is a directory, not a file`, {
      context: { path, stage },
    });
  }
}
