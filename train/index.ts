/**
 * The train stage: a contrastive dual encoder trained with TensorFlow.js on the kept pairs of one
 * or more corpora (vanilla, or NLIP-style noise-robust), and the scoring that writes each pair's
 * noise probability back to the manifest.
 *
 * A run directory holds `checkpoint.ckpt` (weights, optimizer, tokenizer, step, data-order and
 * noise state, config), `metrics.jsonl` and, for robust runs, `noise.json`.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, renameSync, rmdirSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { AltforgeError, UsageError } from '../corpus/errors.ts';
import { acquireLock } from '../corpus/lock.ts';
import { openCorpus, recordStageRun, type Migration } from '../corpus/manifest.ts';
import { createRandom } from '../corpus/random.ts';
import { selectBackend, type BackendChoice, type BackendReport } from './backend.ts';
import { readCheckpoint, removeStaleTemporaries, writeCheckpoint, type StoredTensor } from './checkpoint.ts';
import * as tf from '@tensorflow/tfjs-core';
import {
  baseSizeFor,
  buildImageStore,
  decodeSquare,
  listPairs,
  toModelInput,
  type AugmentOptions,
  type ImageStore,
  type PairRef,
  type RawImage,
  type SourceCounts,
  type TrainSource,
} from './data.ts';
import {
  agreementScores,
  completeNoisyCaptions,
  pairLosses,
  batchGeometry,
  groundingScores,
  runLoop,
  scoringInterrupted,
  storeThumbnails,
  type LoopState,
  type TrainData,
} from './loop.ts';
import { MetricsLog } from './metrics-log.ts';
import { MODEL_CONFIG_FIELDS, createDualEncoder, PRESETS, type DualEncoder, type ModelConfig } from './model.ts';
import { captionGroups, captionWords, harmonise, noiseStats, resolveNoiseSignal } from './noise.ts';
import { AdamW } from './_optimizer.ts';
import {
  resolveScoreOptions,
  resolveTrainOptions,
  type ResolvedNoiseSignal,
  type ResolvedTrainOptions,
  type ScoreOptions,
  type TrainOptions,
} from './options.ts';
import { Tokenizer, learnTokenizer, type TokenizerJSON } from './tokenizer.ts';

export { selectBackend, describeBackends, type BackendChoice, type BackendReport } from './backend.ts';
export { PRESETS, matmulFlops, type ModelConfig } from './model.ts';
export { Tokenizer, learnTokenizer } from './tokenizer.ts';
export { readMetrics, type MetricsRecord } from './metrics-log.ts';
export {
  NOISE_SIGNAL_CHOICES,
  NOISE_SIGNAL_OFF_REASON,
  nlipEstimateOff,
  oneHumpNote,
  type ResolvedNoiseSignal,
} from './options.ts';
export { listPairs } from './data.ts';
export type { MemoryPair, RawImage, TrainSource } from './data.ts';
export type {
  ModelOverrides,
  NoiseEpoch,
  ScoreOptions,
  ScoreProgress,
  TrainOptions,
  TrainProgress,
} from './options.ts';

/** File names inside a run directory. */
export const CHECKPOINT_FILE = 'checkpoint.ckpt';
export const METRICS_FILE = 'metrics.jsonl';
export const NOISE_FILE = 'noise.json';

/** The columns `altforge score` writes: `noise_prob REAL`, `completed_caption TEXT`. */
export const NOISE_MIGRATION: Migration = {
  id: 'train/001-noise',
  sql: `ALTER TABLE pairs ADD COLUMN noise_prob REAL;
        ALTER TABLE pairs ADD COLUMN completed_caption TEXT;`,
};

/** Per-pair noise estimate of a robust run. */
export interface NoiseEstimate {
  /** Pair ids (corpus key, `<corpus index>:<key>` for several corpora, or the in-memory id). */
  ids: string[];
  /** Noise probability of each pair (EMA of the per-epoch posteriors); 0 before the first harmonisation. */
  noiseProb: Float32Array;
  /** Completed caption of each pair, null when not completed. */
  completedCaption: Array<string | null>;
}

/** What a training run did. */
export interface TrainResult {
  /** The run directory. */
  out: string;
  /** Path of the last checkpoint. */
  checkpoint: string;
  /** The backend used, and why the ones before it were skipped. */
  backend: BackendReport;
  config: ModelConfig;
  /** Pairs trained on. */
  pairs: number;
  /** Per corpus: pairs ok, filtered, duplicates and used. */
  sources: SourceCounts[];
  /** Pairs listed in the manifest whose image was missing or undecodable (dropped). */
  missingImages: number;
  /** Global step reached, steps run in this call, steps per epoch. */
  step: number;
  stepsRun: number;
  stepsPerEpoch: number;
  batchSize: number;
  /** Step the run resumed from, null for a fresh run. */
  resumedFrom: number | null;
  /** Loss of the last step. */
  lastLoss: number | null;
  /** Training pairs per second over this call's steps. */
  pairsPerSecond: number;
  /** Noise estimate (robust runs after the warm-up), else null. */
  noise: NoiseEstimate | null;
  /**
   * What nlip's noise estimate is fitted to, `auto` resolved: `off` when most captions have fewer
   * than three holders (the estimate is logged, never acted on: nlip trains like vanilla); null without nlip.
   */
  noiseSignal: ResolvedNoiseSignal | null;
  /** Why the run stopped: all epochs done, `maxSteps` reached, or the signal. */
  stoppedBy: 'done' | 'maxSteps' | 'signal';
  durationMs: number;
}

/** What a checkpoint's header holds. */
interface CheckpointMeta {
  format: 'altforge-train';
  version: 1;
  config: ModelConfig;
  tokenizer: TokenizerJSON;
  seed: number;
  step: number;
  stepsPerEpoch: number;
  batchSize: number;
  optimizerStep: number;
  pairs: { count: number; fingerprint: string };
  harmonisedEpoch: number;
  completed: Array<string | null> | null;
  lastLoss: number | null;
  training: Record<string, unknown>;
  savedAt: string;
}

/** A hash of pairs' ids and captions, in order: what a checkpoint (or a comparison's run) was trained on. */
export function pairsFingerprint(pairs: ReadonlyArray<Pick<PairRef, 'id' | 'caption'>>): string {
  const h = createHash('sha256');
  for (const p of pairs) h.update(p.id).update('\u0000').update(p.caption).update('\u0001');
  return h.digest('hex').slice(0, 32);
}

function modelConfigFor(opts: ResolvedTrainOptions, vocabSize: number): ModelConfig {
  return { ...PRESETS[opts.preset], ...opts.model, vocabSize };
}

function checkpointMismatch(path: string, why: string): UsageError {
  return new UsageError('ERR_CHECKPOINT_MISMATCH', `Checkpoint '${path}' does not fit this run: ${why}`, {
    context: { path, stage: 'train' },
  });
}

function readTrainCheckpoint(path: string): { meta: CheckpointMeta; tensors: Map<string, StoredTensor> } {
  const ckpt = readCheckpoint<CheckpointMeta>(path);
  if (ckpt.meta?.format !== 'altforge-train' || ckpt.meta.version !== 1) {
    throw new UsageError('ERR_CHECKPOINT_CORRUPT', `Checkpoint '${path}' is not an altforge training checkpoint`, {
      context: { path },
    });
  }
  return ckpt;
}

/** Loads a checkpoint's weights into a new model; a shape mismatch is `ERR_CHECKPOINT_MISMATCH`. */
function modelFromCheckpoint(meta: CheckpointMeta, tensors: Map<string, StoredTensor>, path: string): DualEncoder {
  const model = createDualEncoder(meta.config, meta.seed);
  const weights = new Map<string, Float32Array>();
  for (const [name, t] of tensors) if (name.startsWith('model/')) weights.set(name.slice(6), t.data);
  try {
    model.loadWeights(weights);
  } catch (err) {
    model.dispose();
    if (err instanceof UsageError) throw checkpointMismatch(path, err.message);
    throw err;
  }
  return model;
}

/** Drops the pairs whose image is missing, keeping store indices aligned with the pair list. */
function withoutMissing(
  pairs: PairRef[],
  store: ImageStore,
  missing: number[],
): { pairs: PairRef[]; store: ImageStore } {
  if (missing.length === 0) return { pairs, store };
  const gone = new Set(missing);
  const keep: number[] = [];
  for (let i = 0; i < pairs.length; i++) if (!gone.has(i)) keep.push(i);
  return {
    pairs: keep.map((i) => pairs[i] as PairRef),
    store: {
      baseSize: store.baseSize,
      count: keep.length,
      read: (indices) => store.read(indices.map((i) => keep[i] as number)),
      close: () => store.close(),
    },
  };
}

function tokenRows(tokenizer: Tokenizer, pairs: readonly PairRef[], contextLength: number): Int32Array {
  const rows = new Int32Array(pairs.length * contextLength);
  pairs.forEach((p, i) =>
    tokenizer.encode(p.caption, contextLength, rows.subarray(i * contextLength, (i + 1) * contextLength)),
  );
  return rows;
}

function emptyCorpusError(
  source: TrainSource,
  counts: SourceCounts[],
  usable: number,
  stage: 'train' | 'score' = 'train',
): UsageError {
  if ('pairs' in source) {
    return new UsageError('ERR_EMPTY_CORPUS', `Need at least 2 pairs to train on, got ${usable}`, {
      context: { stage: 'train' },
    });
  }
  const detail = source.corpus
    .map((dir, i) => {
      const c = counts[i] as SourceCounts;
      return `${dir}: ${c.ok} ok, ${c.filtered} filtered, ${c.duplicates} duplicates`;
    })
    .join('; ');
  // Scoring reads filtered pairs and duplicates too: the flags that add them are train's alone.
  const message =
    stage === 'score'
      ? `Need at least 2 pairs with their images to score, found ${usable} (${detail}); crawl more`
      : `Need at least 2 kept pairs to train on, found ${usable} (${detail}); crawl more, or pass --include-filtered / --include-duplicates`;
  return new UsageError('ERR_EMPTY_CORPUS', message, { context: { stage, path: source.corpus[0] } });
}

function writeJsonAtomic(path: string, value: unknown): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, JSON.stringify(value));
  renameSync(tmp, path);
}

/**
 * Trains a dual encoder. Fresh runs learn the tokenizer from the captions; `resume` continues from
 * the run directory's checkpoint so that the loss curve matches an uninterrupted run. Killing it
 * at any moment leaves the last checkpoint intact.
 */
export async function runTrain(options: TrainOptions): Promise<TrainResult> {
  const started = Date.now();
  const opts = resolveTrainOptions(options);
  const out = resolve(opts.out);
  if (existsSync(out) && !statSync(out).isDirectory()) {
    throw new UsageError('ERR_NOT_A_RUN_DIR', `Output '${opts.out}' is a file, not a run directory`, {
      context: { path: out },
    });
  }
  // One run at a time in a directory, taken before the checkpoint is looked for: two fresh runs
  // both find none, and would then write one checkpoint and one metrics log together.
  const created = !existsSync(out);
  mkdirSync(out, { recursive: true });
  const release = acquireLock(opts.out, { subject: 'Run directory', code: 'ERR_RUN_LOCKED' });
  try {
    return await trainLocked(options, opts, out, started);
  } finally {
    release();
    if (created) {
      try {
        // Removed only when empty: a run that failed before writing anything leaves no directory it made.
        rmdirSync(out);
      } catch {
        // It holds what the run wrote.
      }
    }
  }
}

/** {@link runTrain} once it holds the run directory's lock. */
async function trainLocked(
  options: TrainOptions,
  opts: ResolvedTrainOptions,
  out: string,
  started: number,
): Promise<TrainResult> {
  const checkpointPath = join(out, CHECKPOINT_FILE);
  if (!opts.resume && existsSync(checkpointPath)) {
    throw new UsageError(
      'ERR_RUN_EXISTS',
      `'${opts.out}' already holds a checkpoint: pass --resume to continue it, or choose another --out`,
      { context: { path: out, stage: 'train' } },
    );
  }
  const previous = opts.resume ? readTrainCheckpoint(checkpointPath) : null;

  const source: TrainSource = opts.pairs
    ? { pairs: opts.pairs }
    : {
        corpus: opts.corpus as string[],
        includeFiltered: opts.includeFiltered,
        includeDuplicates: opts.includeDuplicates,
      };
  const listed = listPairs(source);
  if (listed.pairs.length < 2) throw emptyCorpusError(source, listed.counts, listed.pairs.length);

  let config: ModelConfig;
  let tokenizer: Tokenizer;
  if (previous) {
    tokenizer = Tokenizer.fromJSON(previous.meta.tokenizer);
    config = previous.meta.config;
    if (options.preset !== undefined || options.model !== undefined) {
      const wanted = modelConfigFor(opts, tokenizer.vocabSize);
      const field = MODEL_CONFIG_FIELDS.find((f) => wanted[f] !== config[f]);
      if (field !== undefined) {
        throw checkpointMismatch(
          checkpointPath,
          `it has ${field} ${config[field]}, this run asks for ${wanted[field]}`,
        );
      }
    }
  } else {
    tokenizer = learnTokenizer(
      listed.pairs.map((p) => p.caption),
      { vocabSize: opts.vocabSize },
    );
    config = modelConfigFor(opts, tokenizer.vocabSize);
  }

  removeStaleTemporaries(checkpointPath, readdirSync(out));
  const backend = await selectBackend(opts.backend);

  const augment: AugmentOptions = { crop: opts.cropScale < 1 ? [opts.cropScale, 1] : null, flip: opts.flip };
  const built = await buildImageStore(source, listed.pairs, {
    baseSize: baseSizeFor(config.imageSize, augment),
    memoryLimitBytes: opts.memoryLimitMb * 1024 * 1024,
    spillDir: out,
    onDecoded: (done, total) => opts.onProgress?.({ phase: 'decode', done, total, epoch: 0 }),
    ...(opts.signal ? { signal: opts.signal } : {}),
  });
  if (opts.signal?.aborted) {
    await built.store.close();
    throw new AltforgeError('ERR_INTERRUPTED', 'Interrupted while decoding the images; nothing was trained', {
      context: { stage: 'train' },
    });
  }
  const { pairs, store } = withoutMissing(listed.pairs, built.store, built.missing);
  let model: DualEncoder | undefined;
  let optimizer: AdamW | undefined;
  let log: MetricsLog | undefined;
  try {
    if (pairs.length < 2) throw emptyCorpusError(source, listed.counts, pairs.length);
    const { batch, stepsPerEpoch } = batchGeometry(pairs.length, opts.batchSize);
    const print = pairsFingerprint(pairs);
    if (previous) {
      if (previous.meta.pairs.fingerprint !== print) {
        throw checkpointMismatch(
          checkpointPath,
          `it was trained on ${previous.meta.pairs.count} other pairs (the corpus or its filters changed since)`,
        );
      }
      if (previous.meta.batchSize !== batch) {
        throw checkpointMismatch(checkpointPath, `it used batch size ${previous.meta.batchSize}, this run ${batch}`);
      }
    }

    model = previous
      ? modelFromCheckpoint(previous.meta, previous.tensors, checkpointPath)
      : createDualEncoder(config, opts.seed);
    const named = model.namedVariables();
    const noDecay = new Set([...named].filter(([, v]) => v.rank < 2).map(([name]) => name));
    optimizer = new AdamW(named, { beta1: 0.9, beta2: 0.98, epsilon: 1e-6, weightDecay: opts.weightDecay }, noDecay);
    const state: LoopState = {
      step: 0,
      noiseProb: null,
      harmonisedEpoch: -1,
      completed: null,
      lastLoss: null,
      checkpointStep: null,
    };
    if (previous) {
      const missing = optimizer.restore(previous.tensors, previous.meta.optimizerStep);
      if (missing.length > 0) throw checkpointMismatch(checkpointPath, `optimizer state lacks ${missing[0]}`);
      state.step = previous.meta.step;
      state.harmonisedEpoch = previous.meta.harmonisedEpoch;
      state.completed = previous.meta.completed;
      state.lastLoss = previous.meta.lastLoss;
      state.checkpointStep = previous.meta.step;
      state.noiseProb = previous.tensors.get('noise/prob')?.data ?? null;
    }
    log = MetricsLog.open(join(out, METRICS_FILE), previous ? state.step : undefined);

    const training = Object.fromEntries(
      Object.entries(opts).filter(([k]) => !['pairs', 'onProgress', 'onNoise', 'signal', 'corpus'].includes(k)),
    );
    const activeModel = model;
    const activeOptimizer = optimizer;
    const activeLog = log;
    const saveCheckpoint = (s: LoopState) => {
      const tensors: StoredTensor[] = [];
      for (const [name, v] of activeModel.namedVariables()) {
        tensors.push({ name: `model/${name}`, shape: v.shape, data: v.dataSync() as Float32Array });
      }
      tensors.push(...activeOptimizer.state());
      if (s.noiseProb) tensors.push({ name: 'noise/prob', shape: [s.noiseProb.length], data: s.noiseProb });
      const meta: CheckpointMeta = {
        format: 'altforge-train',
        version: 1,
        config,
        tokenizer: tokenizer.toJSON(),
        seed: opts.seed,
        step: s.step,
        stepsPerEpoch,
        batchSize: batch,
        optimizerStep: activeOptimizer.step,
        pairs: { count: pairs.length, fingerprint: print },
        harmonisedEpoch: s.harmonisedEpoch,
        completed: s.completed,
        lastLoss: s.lastLoss,
        training: { ...training, corpus: opts.corpus?.map((c) => resolve(c)) ?? null },
        savedAt: new Date().toISOString(),
      };
      activeLog.sync();
      writeCheckpoint(checkpointPath, meta, tensors);
      if (s.noiseProb) {
        writeJsonAtomic(join(out, NOISE_FILE), {
          step: s.step,
          ids: pairs.map((p) => p.id),
          noiseProb: Array.from(s.noiseProb),
          completedCaption: s.completed ?? pairs.map(() => null),
        });
      }
    };

    const data: TrainData = {
      pairs,
      store,
      tokens: tokenRows(tokenizer, pairs, config.contextLength),
      contextLength: config.contextLength,
      imageSize: config.imageSize,
      augment,
    };
    const outcome = await runLoop(
      {
        model,
        optimizer,
        tokenizer,
        data,
        options: opts,
        log,
        checkpoint: saveCheckpoint,
        ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
      },
      state,
    );
    log.append({ kind: 'end', step: state.step, stoppedBy: outcome.stoppedBy, lastLoss: state.lastLoss });
    saveCheckpoint(state);
    return {
      out,
      checkpoint: checkpointPath,
      backend,
      config,
      pairs: pairs.length,
      sources: listed.counts,
      missingImages: built.missing.length,
      step: state.step,
      stepsRun: outcome.stepsRun,
      stepsPerEpoch,
      batchSize: batch,
      resumedFrom: previous ? previous.meta.step : null,
      lastLoss: state.lastLoss,
      pairsPerSecond: outcome.pairsPerSecond,
      noise: state.noiseProb
        ? {
            ids: pairs.map((p) => p.id),
            noiseProb: state.noiseProb,
            completedCaption: state.completed ?? pairs.map(() => null),
          }
        : null,
      noiseSignal: outcome.noiseSignal,
      stoppedBy: outcome.stoppedBy,
      durationMs: Date.now() - started,
    };
  } finally {
    log?.close();
    optimizer?.dispose();
    model?.dispose();
    await store.close();
  }
}

/** What scoring did. */
export interface ScoreResult {
  corpus: string;
  checkpoint: string;
  backend: BackendReport;
  /** Pairs given a noise probability. */
  scored: number;
  /** The signal the mixture was fitted to (`auto` resolved). */
  signal: Exclude<ResolvedNoiseSignal, 'off'>;
  /** Pairs whose image could not be read (left NULL). */
  missingImages: number;
  /** Pairs with a noise probability above 0.5. */
  noisy: number;
  /** Mean noise probability. */
  meanNoise: number;
  /** Pairs given a completed caption. */
  completed: number;
  /** Ashman's D of the fitted mixture (above 2: clearly bimodal losses). */
  separation: number;
  durationMs: number;
}

/**
 * Scores every `ok` pair of a corpus with a trained checkpoint: each pair's contrastive loss in
 * seeded random batches (or, with the `agreement` signal, its caption agreement), min-max
 * normalised, a two-component mixture, and the high-score posterior written to `pairs.noise_prob`
 * (migration `train/001-noise`), with a caption of retrieved concepts in
 * `pairs.completed_caption` for pairs above the completion threshold.
 */
export async function runScore(options: ScoreOptions): Promise<ScoreResult> {
  const started = Date.now();
  const opts = resolveScoreOptions(options);
  const path =
    existsSync(opts.checkpoint) && statSync(opts.checkpoint).isDirectory()
      ? join(opts.checkpoint, CHECKPOINT_FILE)
      : opts.checkpoint;
  const checkpoint = readTrainCheckpoint(path);
  const source: TrainSource = { corpus: [opts.corpus], includeFiltered: true, includeDuplicates: true };
  const listed = listPairs(source);
  if (listed.pairs.length < 2) throw emptyCorpusError(source, listed.counts, listed.pairs.length, 'score');
  // The corpus lock, as the crawl, filter and dedup take it: scoring writes `noise_prob` at its end.
  const release = acquireLock(opts.corpus);
  try {
    return await scoreLocked(opts, path, checkpoint, source, listed, started);
  } finally {
    release();
  }
}

/** {@link runScore} once it holds the corpus lock. */
async function scoreLocked(
  opts: ReturnType<typeof resolveScoreOptions>,
  path: string,
  { meta, tensors }: ReturnType<typeof readTrainCheckpoint>,
  source: TrainSource,
  listed: ReturnType<typeof listPairs>,
  started: number,
): Promise<ScoreResult> {
  const backend = await selectBackend(opts.backend);
  const tokenizer = Tokenizer.fromJSON(meta.tokenizer);
  const model = modelFromCheckpoint(meta, tensors, path);
  const built = await buildImageStore(source, listed.pairs, {
    baseSize: meta.config.imageSize,
    memoryLimitBytes: opts.memoryLimitMb * 1024 * 1024,
    spillDir: opts.corpus,
    onDecoded: (done, total) => opts.onProgress?.({ phase: 'decode', done, total }),
    ...(opts.signal ? { signal: opts.signal } : {}),
  });
  const { pairs, store } = withoutMissing(listed.pairs, built.store, built.missing);
  try {
    if (opts.signal?.aborted) {
      throw scoringInterrupted('decoding the images');
    }
    if (pairs.length < 2) throw emptyCorpusError(source, listed.counts, pairs.length, 'score');
    const data: TrainData = {
      pairs,
      store,
      tokens: tokenRows(tokenizer, pairs, meta.config.contextLength),
      contextLength: meta.config.contextLength,
      imageSize: meta.config.imageSize,
      augment: { crop: null, flip: false },
    };
    const { losses, imageEmbeddings, dim } = await pairLosses(
      model,
      data,
      opts.batchSize,
      createRandom(opts.seed, 'score'),
      (done, total) => opts.onProgress?.({ phase: 'score', done, total }),
      opts.signal,
    );
    const captions = pairs.map((p) => p.caption);
    const groups = captionGroups(captions);
    const resolved = resolveNoiseSignal(opts.noiseSignal, groups.index);
    // Scoring has no "off": where training's `auto` would not act, the loss is scored.
    const signal = resolved === 'off' ? 'loss' : resolved;
    const scores =
      signal === 'agreement'
        ? (
            await agreementScores(model, tokenizer, groups, imageEmbeddings, dim, opts, (done, total) =>
              opts.onProgress?.({ phase: 'agreement', done, total }),
            )
          ).scores
        : signal === 'words'
          ? groundingScores(
              imageEmbeddings,
              dim,
              captionWords(captions),
              opts.groundingThumbnails ? await storeThumbnails(store) : null,
            )
          : losses;
    if (opts.signal?.aborted) {
      throw scoringInterrupted('scoring the pairs');
    }
    const result = harmonise(scores, null, {
      ema: 0,
      minSeparation: 0,
      maxNoiseFraction: 1,
      varianceFloor: opts.varianceFloor,
    });
    const completed: Array<string | null> = opts.completion
      ? completeNoisyCaptions(model, tokenizer, captions, result.noiseProb, imageEmbeddings, dim, {
          threshold: opts.completionThreshold,
          topK: opts.completionTopK,
          vocabularySize: opts.conceptVocabSize,
        })
      : pairs.map(() => null);
    const corpus = openCorpus(opts.corpus, { migrations: [NOISE_MIGRATION] });
    const stats = noiseStats(result.noiseProb);
    const summary: ScoreResult = {
      corpus: opts.corpus,
      checkpoint: path,
      backend,
      scored: pairs.length,
      signal,
      missingImages: built.missing.length,
      noisy: stats.aboveHalf,
      meanNoise: stats.mean,
      completed: completed.filter((c) => c !== null).length,
      separation: result.separation,
      durationMs: 0,
    };
    try {
      const finish = recordStageRun(corpus.db, 'score', {
        ...opts,
        onProgress: undefined,
        signal: undefined,
        checkpoint: resolve(path),
      });
      const update = corpus.db.prepare('UPDATE pairs SET noise_prob = ?, completed_caption = ? WHERE key = ?');
      corpus.db.transaction(() => {
        pairs.forEach((p, i) => update.run(result.noiseProb[i] as number, completed[i] ?? null, p.key));
      })();
      summary.durationMs = Date.now() - started;
      finish('done', summary);
    } finally {
      corpus.close();
    }
    return summary;
  } finally {
    model.dispose();
    await store.close();
  }
}

/** A trained dual encoder loaded for inference (eval): both towers, L2-normalised embeddings. */
export interface Encoder {
  /** The checkpoint file it was loaded from, as an absolute path. */
  checkpoint: string;
  /** Global training step of the checkpoint. */
  step: number;
  config: ModelConfig;
  /** Embedding width. */
  dim: number;
  /** The backend it runs on, and why the ones before it were skipped. */
  backend: BackendReport;
  /** `[images, dim]` row-major: each image decoded like training does (flattened on white, centre square). */
  embedImages(images: ReadonlyArray<Uint8Array | RawImage>, batchSize?: number): Promise<Float32Array>;
  /** `[texts, dim]` row-major, tokenised with the checkpoint's tokenizer. */
  embedTexts(texts: readonly string[], batchSize?: number): Float32Array;
  /** `a · bᵀ` `[na, nb]` for row-major `a` `[na, dim]`, `b` `[nb, dim]`, on the backend (BLAS where there is one). */
  similarity(a: Float32Array, b: Float32Array, dim: number): Float32Array;
  /** Releases the weights. */
  dispose(): void;
}

/**
 * Loads a checkpoint (file, or run directory holding `checkpoint.ckpt`) for inference. Eval's
 * zero-shot retrieval and classification call this, never the model internals.
 */
export async function loadEncoder(checkpoint: string, options: { backend?: BackendChoice } = {}): Promise<Encoder> {
  const path =
    existsSync(checkpoint) && statSync(checkpoint).isDirectory() ? join(checkpoint, CHECKPOINT_FILE) : checkpoint;
  if (!existsSync(path)) {
    throw new UsageError('ERR_CHECKPOINT_NOT_FOUND', `No checkpoint at '${checkpoint}'`, { context: { path } });
  }
  const { meta, tensors } = readTrainCheckpoint(path);
  const backend = await selectBackend(options.backend ?? 'auto');
  const tokenizer = Tokenizer.fromJSON(meta.tokenizer);
  const model = modelFromCheckpoint(meta, tensors, path);
  const size = meta.config.imageSize;
  const L = meta.config.contextLength;
  const dim = meta.config.embedDim;
  return {
    checkpoint: resolve(path),
    step: meta.step,
    config: meta.config,
    dim,
    backend,
    async embedImages(images, batchSize = 256) {
      const out = new Float32Array(images.length * dim);
      for (let s = 0; s < images.length; s += batchSize) {
        const part = images.slice(s, s + batchSize);
        const decoded = await Promise.all(part.map((img) => decodeSquare(img, size)));
        const pixels = new Uint8Array(part.length * size * size * 3);
        decoded.forEach((d, k) => pixels.set(d, k * size * size * 3));
        const input = toModelInput(pixels, part.length, size, size, null, null);
        const emb = tf.tidy(() => model.encodeImages(tf.tensor4d(input, [part.length, size, size, 3])));
        out.set(emb.dataSync() as Float32Array, s * dim);
        emb.dispose();
      }
      return out;
    },
    embedTexts(texts, batchSize = 256) {
      const out = new Float32Array(texts.length * dim);
      for (let s = 0; s < texts.length; s += batchSize) {
        const part = texts.slice(s, s + batchSize);
        const rows = new Int32Array(part.length * L);
        part.forEach((t, k) => tokenizer.encode(t, L, rows.subarray(k * L, (k + 1) * L)));
        const emb = tf.tidy(() => model.encodeTexts(tf.tensor2d(rows, [part.length, L], 'int32')));
        out.set(emb.dataSync() as Float32Array, s * dim);
        emb.dispose();
      }
      return out;
    },
    similarity(a, b, width) {
      const product = tf.tidy(() =>
        tf.matMul(tf.tensor2d(a, [a.length / width, width]), tf.tensor2d(b, [b.length / width, width]), false, true),
      );
      const out = product.dataSync() as Float32Array;
      product.dispose();
      return out;
    },
    dispose: () => model.dispose(),
  };
}
