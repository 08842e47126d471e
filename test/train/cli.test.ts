import { existsSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { lines, runCli } from '../helpers/cli.ts';
import { tempDir } from '../helpers/corpus.ts';
import { makeEmojiCorpus } from './_corpus.ts';

let work: { path: string; remove: () => Promise<void> };
let corpus: string;

beforeAll(async () => {
  work = await tempDir('train-cli');
  corpus = join(work.path, 'corpus');
  await makeEmojiCorpus(corpus, { count: 12, shardSize: 12 });
});

afterAll(async () => {
  await work.remove();
});

describe('altforge train and score', () => {
  test('train prints the backend and a one-line summary; score writes noise_prob', async () => {
    const out = join(work.path, 'run');
    const train = await runCli([
      'train',
      '--corpus',
      corpus,
      '--out',
      out,
      '--backend',
      'wasm',
      '--image-size',
      '16',
      '--epochs',
      '2',
      '--batch-size',
      '6',
      '--vocab-size',
      '300',
    ]);
    expect(train.stderr).toMatch(/^backend: wasm/);
    const summary = lines(train.stderr).at(-1) ?? '';
    expect(summary).toMatch(
      /^train: 12 pairs, step 4 \(4 this run, 2\/epoch at batch 6\), loss \d+\.\d{4}, .* on wasm; .* -> .*checkpoint\.ckpt$/,
    );
    expect(train.code).toBe(0);
    expect(existsSync(join(out, 'checkpoint.ckpt'))).toBe(true);

    const score = await runCli(['score', '--corpus', corpus, '--checkpoint', out, '--backend', 'wasm', '--json']);
    expect(score.code).toBe(0);
    const result = JSON.parse(score.stdout) as { scored: number };
    expect(result.scored).toBe(12);
    const db = new Database(join(corpus, 'manifest.sqlite'), { readonly: true });
    const { n } = db.prepare(`SELECT COUNT(*) AS n FROM pairs WHERE noise_prob IS NOT NULL`).get() as { n: number };
    db.close();
    expect(n).toBe(12);
  });

  test('usage errors exit 2 with one line', async () => {
    const missing = await runCli(['train', '--out', join(work.path, 'x')]);
    expect(missing.code).toBe(2);
    expect(lines(missing.stderr)).toEqual([expect.stringContaining('Missing --corpus DIR')]);
    const none = await runCli([
      'train',
      '--corpus',
      join(work.path, 'nope'),
      '--out',
      join(work.path, 'y'),
      '--backend',
      'cpu',
    ]);
    expect(none.code).toBe(2);
    expect(lines(none.stderr)).toEqual([expect.stringMatching(/No corpus at .*\[ERR_CORPUS_NOT_FOUND\]$/)]);
    const badMode = await runCli(['train', '--corpus', corpus, '--out', join(work.path, 'z'), '--robust', 'magic']);
    expect(badMode.code).toBe(2);
    expect(lines(badMode.stderr)).toEqual([expect.stringContaining('--robust: expected one of none, nlip')]);
    const score = await runCli(['score', '--corpus', corpus, '--checkpoint', join(work.path, 'nothing.ckpt')]);
    expect(score.code).toBe(2);
    expect(lines(score.stderr)).toEqual([expect.stringContaining('[ERR_CHECKPOINT_NOT_FOUND]')]);
  });
});
