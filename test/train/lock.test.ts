import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { runDedup } from '../../dedup/index.ts';
import {
  CHECKPOINT_FILE,
  METRICS_FILE,
  readMetrics,
  runScore,
  runTrain,
  type TrainOptions,
} from '../../train/index.ts';
import { lines, runCli } from '../helpers/cli.ts';
import { tempDir } from '../helpers/corpus.ts';
import { makeEmojiCorpus, TOY_MODEL } from './_corpus.ts';

let work: { path: string; remove: () => Promise<void> };
let corpus: string;

beforeAll(async () => {
  work = await tempDir('train-lock');
  corpus = join(work.path, 'corpus');
  await makeEmojiCorpus(corpus, { count: 8, shardSize: 8 });
});

afterAll(async () => {
  await work.remove();
});

function options(out: string): TrainOptions {
  return { corpus: [corpus], out, backend: 'cpu', model: TOY_MODEL, vocabSize: 300, epochs: 2, batchSize: 4 };
}

/** Writes the lock a live process other than this one holds (the test runner's parent). */
function lockByLiveProcess(dir: string): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, '.lock'), String(process.ppid));
}

describe('train and the lock on its run directory', () => {
  test('refuses a run directory another run is writing, before it holds a checkpoint', async () => {
    const out = join(work.path, 'busy');
    lockByLiveProcess(out);
    await expect(runTrain(options(out))).rejects.toMatchObject({ code: 'ERR_RUN_LOCKED' });
    expect(readdirSync(out)).toEqual(['.lock']);
  });

  test('says so on one line with exit code 2', async () => {
    const out = join(work.path, 'busy-cli');
    lockByLiveProcess(out);
    const run = await runCli(['train', '--corpus', corpus, '--out', out, '--backend', 'cpu', '--epochs', '1']);
    expect(run.code).toBe(2);
    expect(lines(run.stderr)).toEqual([
      `altforge: Run directory '${out}' is being written by process ${process.ppid} [ERR_RUN_LOCKED]`,
    ]);
    expect(readdirSync(out)).toEqual(['.lock']);
  });

  test("takes over a killed run's lock, trains, and releases it when done", async () => {
    const out = join(work.path, 'stale');
    mkdirSync(out);
    const { pid: dead } = spawnSync(process.execPath, ['-e', '']);
    writeFileSync(join(out, '.lock'), String(dead));
    const result = await runTrain(options(out));
    expect(result.step).toBe(4);
    expect(existsSync(join(out, CHECKPOINT_FILE))).toBe(true);
    expect(readMetrics(join(out, METRICS_FILE)).filter((r) => r.kind === 'step')).toHaveLength(4);
    expect(existsSync(join(out, '.lock'))).toBe(false);
  });
});

describe('score and dedup take the corpus lock', () => {
  test("refuse a corpus another stage is writing, and run once a killed process's lock is all there is", async () => {
    const run = join(work.path, 'scored-run');
    await runTrain(options(run));
    const lock = join(corpus, '.lock');
    writeFileSync(lock, String(process.ppid));
    try {
      await expect(runScore({ corpus, checkpoint: run, backend: 'cpu' })).rejects.toMatchObject({
        code: 'ERR_CORPUS_LOCKED',
      });
      await expect(runDedup({ corpus, within: true })).rejects.toMatchObject({ code: 'ERR_CORPUS_LOCKED' });
      const db = new Database(join(corpus, 'manifest.sqlite'), { readonly: true });
      const runs = db.prepare(`SELECT stage FROM stage_runs WHERE stage IN ('score', 'dedup')`).all();
      db.close();
      expect(runs).toEqual([]);
      const { pid: dead } = spawnSync(process.execPath, ['-e', '']);
      writeFileSync(lock, String(dead));
      expect((await runScore({ corpus, checkpoint: run, backend: 'cpu' })).scored).toBe(8);
      expect(existsSync(lock)).toBe(false);
    } finally {
      rmSync(lock, { force: true });
    }
  });
});
