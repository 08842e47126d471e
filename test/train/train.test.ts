import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createRandom, shuffle } from '../../corpus/random.ts';
import { readCheckpoint } from '../../train/checkpoint.ts';
import {
  CHECKPOINT_FILE,
  METRICS_FILE,
  NOISE_FILE,
  readMetrics,
  runTrain,
  type TrainOptions,
} from '../../train/index.ts';
import { resolveScoreOptions, resolveTrainOptions, vanillaRecipe } from '../../train/options.ts';
import { emoji, type Emoji } from '../fixtures/images.ts';
import { runCli } from '../helpers/cli.ts';
import { tempDir } from '../helpers/corpus.ts';
import { emojiJpeg, makeEmojiCorpus, TOY_MODEL } from './_corpus.ts';

let work: { path: string; remove: () => Promise<void> };
let corpus: string;
let run = 0;

function options(extra: Partial<TrainOptions> = {}): TrainOptions {
  return {
    corpus: [corpus],
    out: join(work.path, `run-${++run}`),
    backend: 'cpu',
    model: TOY_MODEL,
    vocabSize: 300,
    epochs: 4,
    batchSize: 8,
    lr: 3e-3,
    lrWarmupSteps: 2,
    ...extra,
  };
}

const stepLosses = (out: string) =>
  readMetrics(join(out, METRICS_FILE))
    .filter((r) => r.kind === 'step')
    .map((r) => [r.step, r.loss as number]);

beforeAll(async () => {
  work = await tempDir('train-run');
  corpus = join(work.path, 'corpus');
  await makeEmojiCorpus(corpus, { count: 16, shardSize: 10 });
});

afterAll(async () => {
  await work.remove();
});

describe('runTrain', () => {
  test('trains on the kept pairs, lowers the loss, and writes a checkpoint and JSONL metrics', async () => {
    const opts = options({ epochs: 8 });
    const result = await runTrain(opts);
    expect(result.backend.backend).toBe('cpu');
    expect(result.pairs).toBe(16);
    expect(result.stepsPerEpoch).toBe(2);
    expect(result.step).toBe(16);
    expect(result.stoppedBy).toBe('done');
    expect(result.noise).toBeNull();
    expect(result.noiseSignal).toBeNull();
    expect(existsSync(join(opts.out, CHECKPOINT_FILE))).toBe(true);
    expect(readdirSync(opts.out).filter((n) => n.includes('.tmp'))).toEqual([]);
    const records = readMetrics(join(opts.out, METRICS_FILE));
    const steps = records.filter((r) => r.kind === 'step');
    expect(steps.map((r) => r.step)).toEqual(Array.from({ length: 16 }, (_, i) => i + 1));
    for (const r of steps) {
      expect(Object.keys(r)).toEqual(expect.arrayContaining(['loss', 'temperature', 'lr', 'pairsPerSecond', 'epoch']));
    }
    const first = (steps[0]?.loss as number) + (steps[1]?.loss as number);
    const last = (steps[14]?.loss as number) + (steps[15]?.loss as number);
    expect(last).toBeLessThan(first * 0.8);
    expect(records.at(-1)).toMatchObject({ kind: 'end', step: 16, stoppedBy: 'done' });
  });

  test('resumes so that the loss curve matches an uninterrupted run with the same seed', async () => {
    const robust = {
      robust: 'nlip',
      warmupEpochs: 1,
      minSeparation: 0,
      completion: true,
      epochs: 4,
      checkpointEvery: 3,
    } as const;
    const whole = options(robust);
    const full = await runTrain(whole);
    const parted = options(robust);
    const firstPart = await runTrain({ ...parted, maxSteps: 5 });
    expect(firstPart.stoppedBy).toBe('maxSteps');
    expect(firstPart.step).toBe(5);
    const rest = await runTrain({ ...parted, resume: true });
    expect(rest.resumedFrom).toBe(5);
    expect(rest.stepsRun).toBe(3);
    const a = stepLosses(whole.out);
    const b = stepLosses(parted.out);
    expect(b.map(([s]) => s)).toEqual(a.map(([s]) => s));
    b.forEach(([, loss], i) => expect(loss).toBeCloseTo(a[i]?.[1] as number, 4));
    expect(Array.from(rest.noise?.noiseProb ?? [])).toEqual(
      Array.from(full.noise?.noiseProb ?? []).map((p) => expect.closeTo(p, 4)),
    );
    expect(rest.noise?.completedCaption).toEqual(full.noise?.completedCaption);
  });

  test('refuses to overwrite a run without resume, and a resume with another model config', async () => {
    const first = options({ maxSteps: 1 });
    await runTrain(first);
    await expect(runTrain(first)).rejects.toMatchObject({ code: 'ERR_RUN_EXISTS' });
    await expect(runTrain({ ...first, resume: true, model: { ...TOY_MODEL, visionWidth: 64 } })).rejects.toMatchObject({
      code: 'ERR_CHECKPOINT_MISMATCH',
      message: expect.stringContaining('visionWidth 32, this run asks for 64'),
    });
    await expect(runTrain({ ...options(), resume: true })).rejects.toMatchObject({ code: 'ERR_CHECKPOINT_NOT_FOUND' });
  });

  test('refuses an empty or fully filtered corpus with one clear line', async () => {
    const filtered = join(work.path, 'filtered');
    await makeEmojiCorpus(filtered, { count: 3, offset: 40 });
    const db = new Database(join(filtered, 'manifest.sqlite'));
    db.exec(`ALTER TABLE pairs ADD COLUMN filter_reason TEXT; UPDATE pairs SET filter_reason = 'too_short'`);
    db.close();
    const error = await runTrain({ ...options(), corpus: [filtered] }).catch((e: unknown) => e);
    expect(error).toMatchObject({
      code: 'ERR_EMPTY_CORPUS',
      message: expect.stringContaining('found 0 (' + filtered + ': 3 ok, 3 filtered, 0 duplicates)'),
    });
    expect((error as Error).message).not.toContain('\n');
  });

  test('stops on a NaN loss naming the step and keeps the last good checkpoint', async () => {
    // A learning rate of 1e12 blows the weights up within a few steps.
    const opts = options({ lr: 1e12, lrWarmupSteps: 0, weightDecay: 0, checkpointEvery: 1, epochs: 50 });
    const error = await runTrain(opts).catch((e: unknown) => e);
    expect(error).toMatchObject({
      code: 'ERR_NAN_LOSS',
      message: expect.stringMatching(
        /^Loss became (NaN|-?Infinity) at step \d+ \(epoch 1\); .*last good checkpoint \(step \d+\) is kept/,
      ),
    });
    const failedStep = Number(/at step (\d+)/.exec((error as Error).message)?.[1]);
    expect(failedStep).toBeGreaterThan(1);
    const kept = readCheckpoint<{ step: number; lastLoss: number }>(join(opts.out, CHECKPOINT_FILE));
    expect(kept.meta.step).toBe(failedStep - 1);
    expect(Number.isFinite(kept.meta.lastLoss)).toBe(true);
    for (const t of kept.tensors.values()) expect(t.data.every((v) => Number.isFinite(v))).toBe(true);
    expect(stepLosses(opts.out).map(([step]) => step)).toEqual(Array.from({ length: failedStep - 1 }, (_, i) => i + 1));
  });

  /** Four emoji, eight pairs each; eight of the 32 captions (`noisy`) name the next emoji instead. */
  async function shuffledPairs() {
    const classes = ['cat', 'pizza', 'rocket', 'deciduous_tree'].map((name) => emoji(name));
    const images = await Promise.all(classes.map((e) => emojiJpeg(e)));
    const noisy = new Set(
      shuffle(
        createRandom(3, 'noisy'),
        Array.from({ length: 32 }, (_, i) => i),
      ).slice(0, 8),
    );
    const captionOf = (i: number) => `${(classes[noisy.has(i) ? (i + 1) % 4 : i % 4] as Emoji).name} number ${i}`;
    const pairs = Array.from({ length: 32 }, (_, i) => ({
      id: `p${i}`,
      caption: captionOf(i),
      image: images[i % 4] as Buffer,
    }));
    return { pairs, noisy };
  }

  test('trains on pairs in memory and finds the pairs whose caption names another image', async () => {
    const { pairs, noisy } = await shuffledPairs();
    const result = await runTrain({
      ...options(),
      corpus: undefined,
      pairs,
      batchSize: 16,
      epochs: 12,
      robust: 'nlip',
      // Every caption is unique, where the default (`auto`) estimates but never acts: ask for the loss.
      noiseSignal: 'loss',
      warmupEpochs: 4,
      robustMode: 'weight',
    });
    expect(result.noiseSignal).toBe('loss');
    const noise = result.noise;
    expect(noise?.ids).toEqual(Array.from({ length: 32 }, (_, i) => `p${i}`));
    const probs = Array.from(noise?.noiseProb ?? []);
    expect(probs.every((p) => p >= 0 && p <= 1)).toBe(true);
    // Most shuffled pairs are found (a toy model memorises a few of them), and no clean pair is flagged.
    const found = [...noisy].filter((i) => (probs[i] as number) > 0.5);
    expect(found.length).toBeGreaterThanOrEqual(6);
    const flaggedClean = probs.filter((p, i) => !noisy.has(i) && p > 0.1);
    expect(flaggedClean).toEqual([]);
    const saved = JSON.parse(readFileSync(join(result.out, NOISE_FILE), 'utf8')) as {
      ids: string[];
      noiseProb: number[];
    };
    expect(saved.ids).toEqual(noise?.ids);
    expect(saved.noiseProb).toEqual(probs);
  });

  test("finds them by word grounding: a caption's name word whose other holders are other images", async () => {
    const { pairs, noisy } = await shuffledPairs();
    const scores: Float32Array[] = [];
    const result = await runTrain({
      ...options(),
      corpus: undefined,
      pairs,
      batchSize: 16,
      epochs: 10,
      robust: 'nlip',
      noiseSignal: 'words',
      warmupEpochs: 8,
      onNoise: (e) => scores.push(e.scores),
    });
    expect(result.noiseSignal).toBe('words');
    expect(scores).toHaveLength(2);
    // Each harmonisation ranks the eight shuffled pairs above every clean one.
    for (const s of scores) {
      const ranked = Array.from(s.keys()).sort((a, b) => (s[b] as number) - (s[a] as number));
      expect(new Set(ranked.slice(0, 8))).toEqual(noisy);
    }
    const probs = Array.from(result.noise?.noiseProb ?? []);
    // The mixture flags half of them (the four furthest from their name word's images), no clean pair.
    expect(probs.filter((p, i) => noisy.has(i) && p > 0.5).length).toBeGreaterThanOrEqual(4);
    expect(probs.filter((p, i) => !noisy.has(i) && p > 0.5)).toEqual([]);
  });

  test('grounds words on colour thumbnails beside the embeddings when asked, from the first epoch', async () => {
    const { pairs, noisy } = await shuffledPairs();
    const scoresOf = async (groundingThumbnails: boolean) => {
      const scores: Float32Array[] = [];
      await runTrain({
        ...options(),
        corpus: undefined,
        pairs,
        batchSize: 16,
        epochs: 1,
        robust: 'nlip',
        noiseSignal: 'words',
        groundingThumbnails,
        // Harmonised before any step: the model is as initialised, the thumbnails what the images are.
        warmupEpochs: 0,
        onNoise: (e) => scores.push(e.scores),
      });
      expect(scores).toHaveLength(1);
      return scores[0] as Float32Array;
    };
    const withThumbnails = await scoresOf(true);
    const ranked = Array.from(withThumbnails.keys()).sort(
      (a, b) => (withThumbnails[b] as number) - (withThumbnails[a] as number),
    );
    expect(new Set(ranked.slice(0, 8))).toEqual(noisy);
    // The thumbnails change the scores: the option reaches word grounding.
    const alone = await scoresOf(false);
    expect(Array.from(alone)).not.toEqual(Array.from(withThumbnails));
  });

  test("spreads the flagged pairs' soft targets by thumbnail likeness when asked (the loss changes once nlip acts), and vanilla's label smoothing from the first step", async () => {
    const { pairs } = await shuffledPairs();
    const lossesOf = async (name: string, thumbnailSpread: number, recipe: Partial<TrainOptions>) => {
      const out = join(work.path, `${name}-${thumbnailSpread}`);
      await runTrain({ ...options(), corpus: undefined, pairs, out, batchSize: 16, ...recipe, thumbnailSpread });
      return stepLosses(out).map(([, loss]) => loss as number);
    };
    const nlip = {
      epochs: 2,
      robust: 'nlip',
      noiseSignal: 'words',
      minSeparation: 0,
      maxNoiseFraction: 1,
      warmupEpochs: 1,
    } as const;
    const even = await lossesOf('spread', 0, nlip);
    const spread = await lossesOf('spread', 8, nlip);
    expect(even).toHaveLength(4);
    // The warm-up epoch (steps 1–2) is the same computation; from the first harmonisation on, the targets differ.
    expect(spread.slice(0, 2)).toEqual(even.slice(0, 2));
    expect(spread[2]).not.toBe(even[2]);
    // Vanilla with label smoothing: the smoothing's ε is spread from the first step on.
    const smoothedEvenly = await lossesOf('vanilla-spread', 0, { epochs: 1, labelSmoothing: 0.5 });
    const smoothedSpread = await lossesOf('vanilla-spread', 8, { epochs: 1, labelSmoothing: 0.5 });
    expect(smoothedSpread).toHaveLength(2);
    expect(smoothedSpread[0]).not.toBe(smoothedEvenly[0]);
  });

  test("refuses thumbnails where nothing would read them: without nlip's words signal", async () => {
    const refused = (message: RegExp) =>
      expect.objectContaining({ code: 'ERR_INVALID_OPTION', message: expect.stringMatching(message) });
    const train = (extra: Partial<TrainOptions>) => () =>
      resolveTrainOptions(options({ groundingThumbnails: true, ...extra }));
    expect(train({ robust: 'none', noiseSignal: 'words' })).toThrow(
      refused(/^Option 'train.groundingThumbnails'.*robust 'nlip'/),
    );
    expect(train({ robust: 'nlip' })).toThrow(refused(/noiseSignal 'words'/));
    expect(train({ robust: 'nlip', noiseSignal: 'words' })).not.toThrow();
    // The same for the spread by thumbnails: it needs label smoothing or nlip's soft targets to spread.
    const spread = (extra: Partial<TrainOptions>) => () =>
      resolveTrainOptions(options({ thumbnailSpread: 8, ...extra }));
    expect(spread({ robust: 'none' })).toThrow(refused(/^Option 'train.thumbnailSpread'.*labelSmoothing > 0/));
    expect(spread({ robust: 'nlip', robustMode: 'weight' })).toThrow(refused(/robustMode 'soft'/));
    expect(spread({ robust: 'nlip' })).not.toThrow();
    expect(spread({ robust: 'none', labelSmoothing: 0.1 })).not.toThrow();
    expect(spread({ robust: 'nlip', robustMode: 'weight', labelSmoothing: 0.1 })).not.toThrow();
    // A recipe shared with nlip keeps the spread for vanilla only where smoothing gives it something to spread.
    const shared = { thumbnailSpread: 8, completion: true, groundingThumbnails: true } as const;
    expect(vanillaRecipe(shared)).toEqual({
      ...shared,
      robust: 'none',
      completion: false,
      groundingThumbnails: false,
      thumbnailSpread: 0,
    });
    expect(vanillaRecipe({ ...shared, labelSmoothing: 0.1 })).toMatchObject({ robust: 'none', thumbnailSpread: 8 });
    const score = (noiseSignal: 'auto' | 'words') => () =>
      resolveScoreOptions({ corpus, checkpoint: corpus, groundingThumbnails: true, noiseSignal });
    expect(score('auto')).toThrow(refused(/^Option 'score.groundingThumbnails'.*noiseSignal 'words'/));
    expect(score('words')).not.toThrow();
    // The train command says it in one line, exit 2, before anything trains.
    const out = join(work.path, 'thumbs-refused');
    const res = await runCli(['train', '--corpus', corpus, '--out', out, '--robust', 'nlip', '--grounding-thumbnails']);
    expect(res.code).toBe(2);
    expect(res.stderr.trim().split('\n')).toHaveLength(1);
    expect(res.stderr).toContain(
      'Flag --grounding-thumbnails: thumbnails ground the words signal: it needs --robust nlip and --noise-signal words',
    );
    expect(existsSync(join(out, 'checkpoint.ckpt'))).toBe(false);
  });
});
