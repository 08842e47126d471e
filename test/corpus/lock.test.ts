import { existsSync, mkdirSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { acquireLock, acquireReadLock } from '../../corpus/lock.ts';
import { tempDir } from '../helpers/corpus.ts';

let work: { path: string; remove: () => Promise<void> };
let dirs = 0;

beforeAll(async () => {
  work = await tempDir('lock');
});

afterAll(async () => {
  await work.remove();
});

/** A new empty directory. */
function freshDir(): string {
  const dir = join(work.path, `dir-${dirs++}`);
  mkdirSync(dir);
  return dir;
}

/** The lock and marker files in `dir`. */
const lockFiles = (dir: string) => readdirSync(dir).toSorted();

describe('a lock naming this process', () => {
  test('is taken over when this process does not hold it: a killed earlier process had the same pid', () => {
    const dir = freshDir();
    writeFileSync(join(dir, '.lock'), String(process.pid));
    const release = acquireLock(dir);
    expect(readFileSync(join(dir, '.lock'), 'utf8')).toBe(String(process.pid));
    release();
    expect(lockFiles(dir)).toEqual([]);
  });

  test('is refused while this process holds it (a second run through the library), and taken once released', () => {
    const dir = freshDir();
    const release = acquireLock(dir);
    expect(() => acquireLock(dir)).toThrow(
      expect.objectContaining({
        name: 'UsageError',
        code: 'ERR_CORPUS_LOCKED',
        message: `Corpus '${dir}' is being written by another run in this process (${process.pid})`,
      }),
    );
    expect(() => acquireLock(join(dir, '.'), { subject: 'Run directory', code: 'ERR_RUN_LOCKED' })).toThrow(
      expect.objectContaining({ code: 'ERR_RUN_LOCKED' }),
    );
    const link = join(work.path, `link-${dirs++}`);
    symlinkSync(dir, link);
    expect(() => acquireLock(link)).toThrow(expect.objectContaining({ code: 'ERR_CORPUS_LOCKED' }));
    expect(lockFiles(dir)).toEqual(['.lock']);
    release();
    expect(lockFiles(dir)).toEqual([]);
    acquireLock(dir)();
  });

  test('is not released a second time by a release already called, once taken again', () => {
    const dir = freshDir();
    const first = acquireLock(dir);
    first();
    const second = acquireLock(dir);
    first();
    expect(existsSync(join(dir, '.lock'))).toBe(true);
    expect(() => acquireLock(dir)).toThrow(expect.objectContaining({ code: 'ERR_CORPUS_LOCKED' }));
    second();
    expect(lockFiles(dir)).toEqual([]);
  });
});

describe('a read mark naming this process', () => {
  test('refuses a writer in this process while a reader in it holds the mark, and is shared by its readers', () => {
    const dir = freshDir();
    const first = acquireReadLock(dir);
    const second = acquireReadLock(dir);
    expect(() => acquireLock(dir)).toThrow(
      expect.objectContaining({
        code: 'ERR_CORPUS_LOCKED',
        message: `Corpus '${dir}' is being read by another run in this process (${process.pid})`,
      }),
    );
    first();
    expect(lockFiles(dir)).toEqual([`.read-${process.pid}`]);
    expect(() => acquireLock(dir)).toThrow(expect.objectContaining({ code: 'ERR_CORPUS_LOCKED' }));
    second();
    expect(lockFiles(dir)).toEqual([]);
    acquireLock(dir)();
  });

  test('refuses a reader in this process while a writer in it holds the lock', () => {
    const dir = freshDir();
    const release = acquireLock(dir);
    expect(() => acquireReadLock(dir)).toThrow(
      expect.objectContaining({
        code: 'ERR_CORPUS_LOCKED',
        message: `Corpus '${dir}' is being written by another run in this process (${process.pid})`,
      }),
    );
    expect(lockFiles(dir)).toEqual(['.lock']);
    release();
  });

  test('left by a killed earlier process with the same pid blocks no writer, and is removed', () => {
    const dir = freshDir();
    writeFileSync(join(dir, `.read-${process.pid}`), String(process.pid));
    const release = acquireLock(dir);
    expect(lockFiles(dir)).toEqual(['.lock']);
    release();
  });
});
