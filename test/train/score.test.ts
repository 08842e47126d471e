import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { runScore, runTrain, type ScoreOptions } from '../../train/index.ts';
import { tempDir } from '../helpers/corpus.ts';
import { emoji } from '../fixtures/images.ts';
import { makeEmojiCorpus, type CorpusPair, TOY_MODEL } from './_corpus.ts';

let work: { path: string; remove: () => Promise<void> };
let corpus: string;
let pairs: CorpusPair[];
let run: string;

/** Three epochs of the toy model on a corpus: enough for scores that mean something. */
async function trainToy(corpusDir: string, out: string): Promise<void> {
  await runTrain({
    corpus: [corpusDir],
    out,
    backend: 'cpu',
    model: TOY_MODEL,
    vocabSize: 300,
    epochs: 3,
    batchSize: 8,
    lr: 3e-3,
  });
}

beforeAll(async () => {
  work = await tempDir('train-score');
  corpus = join(work.path, 'corpus');
  pairs = await makeEmojiCorpus(corpus, { count: 20, shardSize: 8 });
  const db = new Database(join(corpus, 'manifest.sqlite'));
  db.exec(`ALTER TABLE pairs ADD COLUMN filter_reason TEXT`);
  db.prepare(`UPDATE pairs SET filter_reason = 'too_short' WHERE key = ?`).run(pairs[0]?.key);
  db.prepare(
    `INSERT INTO pairs (key, url, caption, status) VALUES ('gone', 'http://x/y.jpg', 'gone', 'http_404')`,
  ).run();
  db.close();
  run = join(work.path, 'run');
  await trainToy(corpus, run);
});

afterAll(async () => {
  await work.remove();
});

describe('runScore', () => {
  test("writes every stored pair's noise probability to the manifest, filtered pairs included", async () => {
    const result = await runScore({ corpus, checkpoint: run, backend: 'cpu', batchSize: 8, completionThreshold: 0 });
    expect(result.scored).toBe(20);
    // Every caption is held once: auto fits the mixture to the losses.
    expect(result.signal).toBe('loss');
    const db = new Database(join(corpus, 'manifest.sqlite'), { readonly: true });
    const rows = db
      .prepare(`SELECT key, status, noise_prob, completed_caption FROM pairs ORDER BY key`)
      .all() as Array<{
      key: string;
      status: string;
      noise_prob: number | null;
      completed_caption: string | null;
    }>;
    const migrations = db.prepare(`SELECT id FROM schema_migrations WHERE id LIKE 'train/%'`).all();
    const runs = db.prepare(`SELECT stage, outcome FROM stage_runs WHERE stage = 'score'`).all();
    db.close();
    expect(migrations).toEqual([{ id: 'train/001-noise' }]);
    expect(runs).toEqual([{ stage: 'score', outcome: 'done' }]);
    for (const row of rows) {
      if (row.status !== 'ok') {
        expect(row.noise_prob).toBeNull();
        continue;
      }
      expect(row.noise_prob).toBeGreaterThanOrEqual(0);
      expect(row.noise_prob).toBeLessThanOrEqual(1);
    }
    expect(rows.filter((r) => r.noise_prob !== null)).toHaveLength(20);
    // With threshold 0 every pair with any noise probability gets a caption of retrieved concepts.
    const completed = rows.filter((r) => r.completed_caption !== null);
    expect(completed).toHaveLength(rows.filter((r) => (r.noise_prob ?? 0) > 0).length);
    expect(result.completed).toBe(completed.length);
    for (const r of completed) expect(r.completed_caption?.split(' ').length).toBeGreaterThanOrEqual(1);
    expect(result.noisy).toBe(rows.filter((r) => (r.noise_prob ?? 0) > 0.5).length);
  });

  test('fits the mixture to caption agreement when captions are shared (or to the loss or word grounding when asked), flagging the captions that disagree with their look-alikes', async () => {
    // Four drawings, six copies each, named by their own name except one copy a drawing, which
    // carries the next drawing's name (a derangement): every name is held by six pairs.
    const shared = join(work.path, 'shared');
    const drawings = ['grinning', 'pizza', 'dog', 'rocket'].map((name) => emoji(name));
    const made = await makeEmojiCorpus(shared, {
      count: 24,
      shardSize: 10,
      drawing: (i) => drawings[i % 4] as (typeof drawings)[number],
      caption: (_, i) => (drawings[i < 20 ? i % 4 : (i + 1) % 4] as (typeof drawings)[number]).name,
    });
    const shuffled = new Set(made.slice(20).map((p) => p.key));
    const sharedRun = join(work.path, 'shared-run');
    await trainToy(shared, sharedRun);
    const scoreShared = (extra: Partial<ScoreOptions>) =>
      runScore({ corpus: shared, checkpoint: sharedRun, backend: 'cpu', batchSize: 8, completion: false, ...extra });
    const phases = new Set<string>();
    const auto = await runScore({
      corpus: shared,
      checkpoint: sharedRun,
      backend: 'cpu',
      batchSize: 8,
      completion: false,
      onProgress: (p) => {
        if (p.phase === 'agreement') expect(p.total).toBe(24);
        phases.add(p.phase);
      },
    });
    expect(auto.signal).toBe('agreement');
    expect([...phases]).toEqual(['decode', 'score', 'agreement']);
    expect(auto.scored).toBe(24);
    const db = new Database(join(shared, 'manifest.sqlite'), { readonly: true });
    const read = () =>
      new Map(
        (db.prepare(`SELECT key, noise_prob FROM pairs`).all() as Array<{ key: string; noise_prob: number }>).map(
          (r) => [r.key, r.noise_prob],
        ),
      );
    const agreement = read();
    // The four shuffled copies are the four most likely noisy pairs.
    const ranked = [...agreement.entries()].sort((a, b) => b[1] - a[1]).map(([key]) => key);
    expect(new Set(ranked.slice(0, 4))).toEqual(shuffled);
    const minShuffled = Math.min(...[...shuffled].map((k) => agreement.get(k) as number));
    const maxClean = Math.max(...[...agreement].filter(([k]) => !shuffled.has(k)).map(([, v]) => v));
    expect(minShuffled).toBeGreaterThan(maxClean);
    const loss = await scoreShared({ noiseSignal: 'loss' });
    expect(loss.signal).toBe('loss');
    expect([...read().values()]).not.toEqual([...agreement.values()]);
    // Word grounding: each shuffled copy's name words are held by five drawings of another emoji.
    const words = await scoreShared({ noiseSignal: 'words' });
    expect(words.signal).toBe('words');
    const byWords = [...read().entries()].sort((a, b) => b[1] - a[1]).map(([key]) => key);
    expect(new Set(byWords.slice(0, 4))).toEqual(shuffled);
    // And beside the drawings' colour thumbnails, as training can: the same four, other values.
    const before = read();
    const thumbs = await scoreShared({ noiseSignal: 'words', groundingThumbnails: true });
    expect(thumbs.signal).toBe('words');
    const byThumbs = [...read().entries()].sort((a, b) => b[1] - a[1]).map(([key]) => key);
    expect(new Set(byThumbs.slice(0, 4))).toEqual(shuffled);
    expect([...read().values()]).not.toEqual([...before.values()]);
    db.close();
  });

  test('scores again over the earlier values, and refuses a file that is not a checkpoint', async () => {
    const again = await runScore({
      corpus,
      checkpoint: join(run, 'checkpoint.ckpt'),
      backend: 'cpu',
      batchSize: 8,
      completion: false,
    });
    expect(again.completed).toBe(0);
    const db = new Database(join(corpus, 'manifest.sqlite'), { readonly: true });
    const left = db.prepare(`SELECT COUNT(*) AS n FROM pairs WHERE completed_caption IS NOT NULL`).get() as {
      n: number;
    };
    db.close();
    expect(left.n).toBe(0);
    await expect(
      runScore({ corpus, checkpoint: join(corpus, 'manifest.sqlite'), backend: 'cpu' }),
    ).rejects.toMatchObject({
      code: 'ERR_CHECKPOINT_CORRUPT',
    });
  });

  test('stops when its signal is aborted, writing nothing to the manifest', async () => {
    const fresh = join(work.path, 'stopped');
    await makeEmojiCorpus(fresh, { count: 12, offset: 50 });
    const stop = new AbortController();
    const phases: string[] = [];
    await expect(
      runScore({
        corpus: fresh,
        checkpoint: run,
        backend: 'cpu',
        batchSize: 4,
        signal: stop.signal,
        onProgress: (p) => {
          phases.push(p.phase);
          if (p.phase === 'score' && p.done === 4) stop.abort();
        },
      }),
    ).rejects.toMatchObject({ code: 'ERR_INTERRUPTED', message: expect.stringContaining('nothing was written') });
    // Stopped before the second of its three batches; nothing written.
    expect(phases.filter((p) => p === 'score')).toHaveLength(1);
    const db = new Database(join(fresh, 'manifest.sqlite'), { readonly: true });
    const columns = (db.prepare('PRAGMA table_info(pairs)').all() as Array<{ name: string }>).map((c) => c.name);
    const runs = db.prepare(`SELECT COUNT(*) AS n FROM stage_runs WHERE stage = 'score'`).get() as { n: number };
    db.close();
    expect(columns).not.toContain('noise_prob');
    expect(runs.n).toBe(0);
  });

  test("refuses a corpus of fewer than 2 pairs without naming train's flags", async () => {
    const single = join(work.path, 'single');
    await makeEmojiCorpus(single, { count: 1, offset: 30 });
    const error = await runScore({ corpus: single, checkpoint: run, backend: 'cpu' }).catch((e: unknown) => e);
    expect(error).toMatchObject({
      code: 'ERR_EMPTY_CORPUS',
      message: `Need at least 2 pairs with their images to score, found 1 (${single}: 1 ok, 0 filtered, 0 duplicates); crawl more`,
    });
  });
});
