import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { refuseDirectory, refuseNonDirectory } from '../../corpus/paths.ts';
import { openRegistry } from '../../corpus/registry.ts';
import { openResults } from '../../eval/results.ts';
import { lines, runCli } from '../helpers/cli.ts';
import { tempDir } from '../helpers/corpus.ts';
import { makeEmojiCorpus } from '../train/_corpus.ts';

let work: { path: string; remove: () => Promise<void> };
let file: string;
let dir: string;

beforeAll(async () => {
  work = await tempDir('paths');
  file = join(work.path, 'a-file');
  writeFileSync(file, 'mine\n');
  dir = join(work.path, 'a-dir');
  mkdirSync(dir);
});

afterAll(async () => {
  await work.remove();
});

describe('path checks', () => {
  test('a directory wanted: a file is refused, a directory or nothing passes', () => {
    expect(() => refuseNonDirectory(file, 'Report directory', 'report')).toThrow(
      expect.objectContaining({
        code: 'ERR_NOT_A_DIRECTORY',
        message: `Report directory '${file}' is a file, not a directory`,
      }),
    );
    expect(() => refuseNonDirectory(dir, 'Report directory', 'report')).not.toThrow();
    expect(() => refuseNonDirectory(join(work.path, 'nothing'), 'Report directory', 'report')).not.toThrow();
  });

  test('a database file wanted: a directory is refused by the results database and the registry', () => {
    expect(() => refuseDirectory(file, 'Results database', 'eval')).not.toThrow();
    expect(() => openResults(dir)).toThrow(
      expect.objectContaining({
        code: 'ERR_NOT_A_FILE',
        message: `Results database '${dir}' is a directory, not a file`,
      }),
    );
    expect(() => openRegistry(dir, { create: true })).toThrow(expect.objectContaining({ code: 'ERR_NOT_A_FILE' }));
  });

  test('the commands that write into a directory refuse a file with one line, exit 2, the file untouched', async () => {
    const corpus = join(work.path, 'corpus');
    await makeEmojiCorpus(corpus, { count: 3 });
    for (const [args, what] of [
      [['report', '--corpus', corpus, '--out', file], 'Report directory'],
      [['demo', '--out', file], 'Demo directory'],
      [['compare', '--setting', 'emoji', '--out', file], 'Comparison directory'],
    ] as const) {
      const res = await runCli([...args]);
      expect(res.code, res.stderr).toBe(2);
      expect(lines(res.stderr)).toEqual([
        `altforge: ${what} '${file}' is a file, not a directory [ERR_NOT_A_DIRECTORY]`,
      ]);
    }
    expect(readFileSync(file, 'utf8')).toBe('mine\n');
    const list = await runCli(['bench', 'list', '--bench-db', dir]);
    expect(list.code).toBe(2);
    expect(lines(list.stderr)).toEqual([
      `altforge: Benchmark registry '${dir}' is a directory, not a file [ERR_NOT_A_FILE]`,
    ]);
    // A registry named on purpose must exist (the default one is read only when it is there).
    const missing = join(work.path, 'no-registry.sqlite');
    const report = await runCli(['report', '--corpus', corpus, '--bench-db', missing]);
    expect(report.code).toBe(2);
    expect(lines(report.stderr)).toEqual([`altforge: No benchmark registry at '${missing}' [ERR_REGISTRY_NOT_FOUND]`]);
  });
});
