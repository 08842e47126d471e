/**
 * The training loop: seeded batches from the image cache, one AdamW step per batch on the
 * contrastive loss (with per-pair soft targets or weights once NLIP harmonisation has run),
 * per-epoch noise harmonisation and completion, metrics, checkpoints, and a clean stop on NaN.
 * Everything random is derived from (seed, epoch, step), so a resumed run replays the same batches.
 */
import { setImmediate } from 'node:timers/promises';
import * as tf from '@tensorflow/tfjs-core';
import { AltforgeError, CriticalError } from '../corpus/errors.ts';
import { createRandom, shuffle, type Random } from '../corpus/random.ts';
import { epochOrder, toModelInput, type AugmentOptions, type ImageStore, type PairRef } from './data.ts';
import { contrastiveLoss } from './loss.ts';
import type { MetricsLog } from './metrics-log.ts';
import { MAX_LOGIT_SCALE, type DualEncoder } from './model.ts';
import { normaliseCaption } from '../corpus/text.ts';
import {
  autoNeighbours,
  captionAgreement,
  captionConsistency,
  captionGroups,
  cleanValues,
  completeCaptions,
  conceptVocabulary,
  harmonise,
  noiseScores,
  resolveNoiseSignal,
  noiseStats,
  positiveMask,
  type Agreement,
  type CaptionGroups,
  type CaptionWords,
  captionWords,
  sideBySide,
  thumbnailRows,
  thumbnailSpread,
  THUMBNAIL_WIDTH,
  wordGrounding,
} from './noise.ts';
import type { AdamW } from './_optimizer.ts';
import type { ResolvedNoiseSignal, ResolvedTrainOptions, TrainProgress } from './options.ts';
import { prefetch } from './_prefetch.ts';
import type { Tokenizer } from './tokenizer.ts';

/** The pairs, their decoded images and their tokenised captions. */
export interface TrainData {
  pairs: readonly PairRef[];
  store: ImageStore;
  /** `[pairs, contextLength]` token rows. */
  tokens: Int32Array;
  contextLength: number;
  imageSize: number;
  augment: AugmentOptions;
}

/** What a run carries from step to step, and what a checkpoint stores. */
export interface LoopState {
  /** Steps done (the next step's index). */
  step: number;
  /** Noise probability per pair (NLIP), null before the first harmonisation. */
  noiseProb: Float32Array | null;
  /** The log of its complement (see `HarmoniseResult.logCleanProb`); null until this run's first harmonisation. */
  logCleanProb?: Float64Array | null;
  /** Last epoch whose harmonisation has run (-1: none). */
  harmonisedEpoch: number;
  /** Completed caption per pair (null: not completed). */
  completed: Array<string | null> | null;
  /** Loss of the last step. */
  lastLoss: number | null;
  /** Step of the last checkpoint written (or resumed from), null when none yet. */
  checkpointStep: number | null;
}

/** Everything the loop needs. */
export interface LoopContext {
  model: DualEncoder;
  optimizer: AdamW;
  tokenizer: Tokenizer;
  data: TrainData;
  options: ResolvedTrainOptions;
  log: MetricsLog;
  /** Writes a checkpoint of the state (called every `checkpointEvery` steps and at the end). */
  checkpoint: (state: LoopState) => void;
  onProgress?: (progress: TrainProgress) => void;
}

/** How the loop ended. */
export interface LoopOutcome {
  state: LoopState;
  stepsRun: number;
  stoppedBy: 'done' | 'maxSteps' | 'signal';
  /** Training throughput over this run's steps. */
  pairsPerSecond: number;
  /** What nlip's noise estimate was fitted to (`auto` resolved; `off`: logged, never acted on); null without nlip. */
  noiseSignal: ResolvedNoiseSignal | null;
}

/** Pairs per step and steps per epoch for `n` pairs. */
export function batchGeometry(n: number, batchSize: number): { batch: number; stepsPerEpoch: number } {
  const batch = Math.min(batchSize, n);
  return { batch, stepsPerEpoch: Math.floor(n / batch) };
}

/** Linear warm-up to `peak`, then cosine decay to 0 at `total` steps. */
export function learningRate(step: number, total: number, peak: number, warmup: number): number {
  if (warmup > 0 && step < warmup) return (peak * (step + 1)) / warmup;
  const span = Math.max(1, total - warmup);
  const progress = Math.min(1, (step - warmup) / span);
  return 0.5 * peak * (1 + Math.cos(Math.PI * progress));
}

/** Copies the token rows of `indices`. */
function gatherTokens(data: TrainData, indices: readonly number[]): Int32Array {
  const L = data.contextLength;
  const out = new Int32Array(indices.length * L);
  indices.forEach((idx, k) => out.set(data.tokens.subarray(idx * L, (idx + 1) * L), k * L));
  return out;
}

/** One batch ready for the backend. */
interface Batch {
  indices: number[];
  images: Float32Array;
  tokens: Int32Array;
}

async function loadBatch(data: TrainData, indices: number[], random: Random | null): Promise<Batch> {
  const pixels = await data.store.read(indices);
  const images = toModelInput(
    pixels,
    indices.length,
    data.store.baseSize,
    data.imageSize,
    random === null ? null : data.augment,
    random,
  );
  return { indices, images, tokens: gatherTokens(data, indices) };
}

/** Scoring stopped by its signal (`during`: what it was doing); it writes nothing before its end. */
export function scoringInterrupted(during: string): AltforgeError {
  return new AltforgeError('ERR_INTERRUPTED', `Interrupted while ${during}; nothing was written`, {
    context: { stage: 'score' },
  });
}

/**
 * Each pair's contrastive loss against the others of a fixed-size random batch, without
 * gradients, plus its image embedding. The last batch is topped up with pairs from the start of
 * the permutation (their losses are not counted twice). With `signal`, each batch waits a turn of
 * the event loop (so that a SIGINT's handler runs) and an aborted signal stops it with
 * `ERR_INTERRUPTED`.
 */
export async function pairLosses(
  model: DualEncoder,
  data: TrainData,
  batchSize: number,
  random: Random,
  onBatch?: (done: number, total: number) => void,
  signal?: AbortSignal,
): Promise<{ losses: Float32Array; imageEmbeddings: Float32Array; dim: number }> {
  const n = data.pairs.length;
  const b = Math.min(batchSize, n);
  const order = shuffle(
    random,
    Array.from({ length: n }, (_, i) => i),
  );
  const losses = new Float32Array(n);
  let imageEmbeddings = new Float32Array(0);
  let dim = 0;
  const starts: number[] = [];
  for (let s = 0; s < n; s += b) starts.push(s);
  async function* batches() {
    for (const s of starts) {
      const indices = order.slice(s, s + b);
      for (let k = 0; indices.length < b; k++) indices.push(order[k] as number);
      yield { fresh: Math.min(b, n - s), batch: await loadBatch(data, indices, null) };
    }
  }
  let done = 0;
  for await (const { fresh, batch } of prefetch(batches(), 2)) {
    if (signal) {
      await setImmediate();
      if (signal.aborted) {
        throw scoringInterrupted('scoring the pairs');
      }
    }
    const [perPair, img] = tf.tidy(() => {
      const x = tf.tensor4d(batch.images, [b, data.imageSize, data.imageSize, 3]);
      const t = tf.tensor2d(batch.tokens, [b, data.contextLength], 'int32');
      const imgEmb = model.encodeImages(x);
      const txtEmb = model.encodeTexts(t);
      return [contrastiveLoss(imgEmb, txtEmb, model.logitScale).perPair, imgEmb] as const;
    });
    const lossValues = (await perPair.data()) as Float32Array;
    const embValues = (await img.data()) as Float32Array;
    if (dim === 0) {
      dim = img.shape[1] as number;
      imageEmbeddings = new Float32Array(n * dim);
    }
    perPair.dispose();
    img.dispose();
    for (let k = 0; k < fresh; k++) {
      const idx = batch.indices[k] as number;
      losses[idx] = lossValues[k] as number;
      imageEmbeddings.set(embValues.subarray(k * dim, (k + 1) * dim), idx * dim);
    }
    done += fresh;
    onBatch?.(done, n);
  }
  return { losses, imageEmbeddings, dim };
}

/** Text-tower embeddings of single-word captions, `[concepts, dim]`. */
function embedConcepts(model: DualEncoder, tokenizer: Tokenizer, concepts: readonly string[]): Float32Array {
  const L = model.config.contextLength;
  const chunks: Float32Array[] = [];
  for (let s = 0; s < concepts.length; s += 256) {
    const part = concepts.slice(s, s + 256);
    const rows = new Int32Array(part.length * L);
    part.forEach((c, k) => tokenizer.encode(c, L, rows.subarray(k * L, (k + 1) * L)));
    const emb = tf.tidy(() => model.encodeTexts(tf.tensor2d(rows, [part.length, L], 'int32')));
    chunks.push(emb.dataSync() as Float32Array);
    emb.dispose();
  }
  const out = new Float32Array(chunks.reduce((n, c) => n + c.length, 0));
  let offset = 0;
  for (const c of chunks) {
    out.set(c, offset);
    offset += c.length;
  }
  return out;
}

/**
 * The agreement noise signal of every pair ({@link captionAgreement}) with the model's own
 * embeddings: `scores` is the per-pair score the mixture is fitted to (`gap` or `jointGap`, as
 * `agreementScore` says), the rest is the agreement itself (its first choices for relabelling).
 */
export async function agreementScores(
  model: DualEncoder,
  tokenizer: Tokenizer,
  groups: CaptionGroups,
  imageEmbeddings: Float32Array,
  dim: number,
  options: { agreementNeighbours: number | 'auto'; agreementScore: 'gap' | 'joint' },
  onProgress?: (done: number, total: number) => void,
): Promise<Agreement & { scores: Float32Array }> {
  const captionEmb = embedConcepts(model, tokenizer, groups.representatives);
  const logit = Math.min((model.logitScale.dataSync() as Float32Array)[0] as number, MAX_LOGIT_SCALE);
  const found = await captionAgreement(imageEmbeddings, captionEmb, groups.index, dim, {
    neighbours: options.agreementNeighbours === 'auto' ? autoNeighbours(groups.index) : options.agreementNeighbours,
    scale: Math.exp(logit),
    ...(onProgress ? { onProgress } : {}),
  });
  return { ...found, scores: options.agreementScore === 'joint' ? found.jointGap : found.gap };
}

/** Every stored image's colour thumbnail ({@link thumbnailRows}), read from the store a chunk at a time. */
export async function storeThumbnails(store: ImageStore): Promise<Float32Array> {
  const out = new Float32Array(store.count * THUMBNAIL_WIDTH);
  const chunk = 256;
  for (let start = 0; start < store.count; start += chunk) {
    const indices = Array.from({ length: Math.min(chunk, store.count - start) }, (_, k) => start + k);
    out.set(thumbnailRows(await store.read(indices), store.baseSize), start * THUMBNAIL_WIDTH);
  }
  return out;
}

/** The `words` signal: word grounding on the image embeddings, beside the thumbnails when given. */
export function groundingScores(
  imageEmbeddings: Float32Array,
  dim: number,
  words: CaptionWords,
  thumbnails: Float32Array | null,
): Float32Array {
  return thumbnails === null
    ? wordGrounding(imageEmbeddings, dim, words)
    : wordGrounding(sideBySide(imageEmbeddings, dim, thumbnails, THUMBNAIL_WIDTH), dim + THUMBNAIL_WIDTH, words);
}

/** NLIP harmonisation (and completion) at the start of `epoch`; updates `state` and logs a record. */
async function harmoniseEpoch(
  ctx: LoopContext,
  state: LoopState,
  epoch: number,
  resolved: ResolvedNoiseSignal,
  groups: CaptionGroups,
  words: CaptionWords | null,
  thumbnails: Float32Array | null,
): Promise<void> {
  // `off`: the loss estimate is computed and logged, never acted on.
  const signal = resolved === 'off' ? 'loss' : resolved;
  const { model, data, options } = ctx;
  const n = data.pairs.length;
  const { losses, imageEmbeddings, dim } = await pairLosses(
    model,
    data,
    options.batchSize,
    createRandom(options.seed, `harmonise:${epoch}`),
    (done, total) => ctx.onProgress?.({ phase: 'harmonise', done, total, epoch }),
  );
  let best: Int32Array | null = null;
  let groupCaptions: string[] = [];
  let scores: Float32Array;
  if (signal === 'agreement') {
    groupCaptions = groups.representatives;
    const found = await agreementScores(model, ctx.tokenizer, groups, imageEmbeddings, dim, options, (done, total) =>
      ctx.onProgress?.({ phase: 'agreement', done, total, epoch }),
    );
    best =
      options.relabelSource === 'neighbours'
        ? found.voteBest
        : options.relabelSource === 'joint'
          ? found.jointBest
          : found.best;
    scores = found.scores;
  } else if (signal === 'words') {
    // `runLoop` tokenises the captions (and takes the thumbnails, when asked) once a run for this signal.
    scores = groundingScores(imageEmbeddings, dim, words as CaptionWords, thumbnails);
  } else {
    scores = lossScores(losses, imageEmbeddings, dim, data, options);
  }
  const previous = state.noiseProb;
  // A probability above 0 means an earlier harmonisation acted (closed gates add 0 through the EMA).
  const latched = options.gateLatch && previous !== null && previous.some((p) => p > 0);
  const result = harmonise(
    scores,
    previous,
    {
      ema: options.noiseEma,
      // `off`: the loss estimate is logged, never acted on.
      minSeparation: resolved === 'off' ? Number.POSITIVE_INFINITY : options.minSeparation,
      varianceFloor: options.varianceFloor,
      maxNoiseFraction: options.maxNoiseFraction,
      minNoiseFraction: options.minNoiseFraction,
      latched,
    },
    state.logCleanProb ?? null,
  );
  state.noiseProb = result.noiseProb;
  state.logCleanProb = result.logCleanProb;
  state.harmonisedEpoch = epoch;
  options.onNoise?.({
    epoch,
    step: state.step,
    ids: data.pairs.map((p) => p.id),
    noiseProb: result.noiseProb.slice(),
    logCleanProb: result.logCleanProb.slice(),
    scores,
    acted: result.acted,
    separation: result.separation,
  });
  let completedCount = 0;
  if (!options.completion && options.relabel && best !== null) {
    const completed: Array<string | null> = Array.from({ length: n }, () => null);
    const own = groups.index;
    for (let i = 0; i < n; i++) {
      if ((result.noiseProb[i] as number) > options.relabelThreshold && best[i] !== own[i]) {
        completed[i] = groupCaptions[best[i] as number] as string;
        completedCount++;
      }
    }
    state.completed = completed;
  }
  if (options.completion) {
    completedCount = completeEpoch(ctx, state, result.noiseProb, imageEmbeddings, dim);
  }
  logEpoch(ctx, state, epoch, result, losses, completedCount);
}

/** The loss-based noise score (NLIP), blended with caption consistency when asked. */
function lossScores(
  losses: Float32Array,
  imageEmbeddings: Float32Array,
  dim: number,
  data: TrainData,
  options: ResolvedTrainOptions,
): Float32Array {
  const consistency =
    options.consistencyWeight > 0
      ? captionConsistency(
          imageEmbeddings,
          dim,
          data.pairs.map((p) => p.caption),
        )
      : null;
  return noiseScores(losses, consistency, options.consistencyWeight);
}

/**
 * Concept completion (NLIP): for every pair whose noise probability exceeds `threshold`, a caption
 * of the `topK` concepts (the corpus's most frequent words, `vocabularySize` of them) nearest its
 * image embedding; `null` for the others (and for every pair when there is no concept).
 */
export function completeNoisyCaptions(
  model: DualEncoder,
  tokenizer: Tokenizer,
  captions: readonly string[],
  noiseProb: Float32Array,
  imageEmbeddings: Float32Array,
  dim: number,
  options: { threshold: number; topK: number; vocabularySize: number },
): Array<string | null> {
  const completed: Array<string | null> = captions.map(() => null);
  const concepts = conceptVocabulary(captions, { size: options.vocabularySize });
  const noisy: number[] = [];
  for (let i = 0; i < captions.length; i++) if ((noiseProb[i] as number) > options.threshold) noisy.push(i);
  if (concepts.length === 0 || noisy.length === 0) return completed;
  const conceptEmb = embedConcepts(model, tokenizer, concepts);
  const imgs = new Float32Array(noisy.length * dim);
  noisy.forEach((idx, k) => imgs.set(imageEmbeddings.subarray(idx * dim, (idx + 1) * dim), k * dim));
  const found = completeCaptions(imgs, conceptEmb, concepts, dim, Math.min(options.topK, concepts.length));
  noisy.forEach((idx, k) => (completed[idx] = found[k] as string));
  return completed;
}

/** Concept completion at a harmonisation: sets the run's auxiliary captions; returns how many. */
function completeEpoch(
  ctx: LoopContext,
  state: LoopState,
  noiseProb: Float32Array,
  imageEmbeddings: Float32Array,
  dim: number,
): number {
  const { model, data, options } = ctx;
  state.completed = completeNoisyCaptions(
    model,
    ctx.tokenizer,
    data.pairs.map((p) => p.caption),
    noiseProb,
    imageEmbeddings,
    dim,
    { threshold: options.completionThreshold, topK: options.completionTopK, vocabularySize: options.conceptVocabSize },
  );
  return state.completed.filter((c) => c !== null).length;
}

/** The metrics record of one harmonisation. */
function logEpoch(
  ctx: LoopContext,
  state: LoopState,
  epoch: number,
  result: ReturnType<typeof harmonise>,
  losses: Float32Array,
  completedCount: number,
): void {
  const n = losses.length;
  const stats = noiseStats(result.noiseProb);
  ctx.log.append({
    kind: 'epoch',
    step: state.step,
    epoch,
    noiseMean: stats.mean,
    noisyPairs: stats.aboveHalf,
    separation: result.separation,
    acted: result.acted,
    gmmMeans: result.gmm.means,
    gmmVariances: result.gmm.variances,
    gmmWeights: result.gmm.weights,
    lossMean: losses.reduce((a, b) => a + b, 0) / n,
    completed: completedCount,
  });
}

/** Runs the remaining steps of the run described by `ctx.options`, from `state.step`. */
export async function runLoop(ctx: LoopContext, state: LoopState): Promise<LoopOutcome> {
  const { model, data, options, optimizer } = ctx;
  const n = data.pairs.length;
  const { batch: B, stepsPerEpoch } = batchGeometry(n, options.batchSize);
  const totalSteps = options.epochs * stepsPerEpoch;
  const lastStep = options.maxSteps === null ? totalSteps : Math.min(totalSteps, options.maxSteps);
  const trainable = model.variables;
  const maxLogit = MAX_LOGIT_SCALE;
  const L = data.contextLength;
  let stepsRun = 0;
  let trainMs = 0;
  let stoppedBy: LoopOutcome['stoppedBy'] = 'done';
  const nlip = options.robust === 'nlip';
  // Captions do not change during a run: their groups are computed once.
  const groups = nlip ? captionGroups(data.pairs.map((p) => p.caption)) : null;
  const resolvedSignal = groups ? resolveNoiseSignal(options.noiseSignal, groups.index) : null;
  const signal = resolvedSignal ?? 'loss';
  const words = signal === 'words' ? captionWords(data.pairs.map((p) => p.caption)) : null;
  // The images do not change either: their thumbnails (for word grounding, or the targets'
  // spread) are taken once, before the first step.
  const groundOnThumbnails = words !== null && options.groundingThumbnails;
  const spreadOnThumbnails = options.thumbnailSpread > 0;
  const thumbnails = groundOnThumbnails || spreadOnThumbnails ? await storeThumbnails(data.store) : null;
  const relabelling = nlip && !options.completion && options.relabel && signal === 'agreement';
  const multiPositive = nlip && options.multiPositive;
  const captionKeys = multiPositive ? data.pairs.map((p) => normaliseCaption(p.caption)) : [];
  const relabelTokens = new Map<string, Int32Array<ArrayBuffer>>();

  outer: for (let epoch = Math.floor(state.step / stepsPerEpoch); epoch < options.epochs; epoch++) {
    if (state.step >= lastStep) break;
    if (groups !== null && epoch >= options.warmupEpochs && state.harmonisedEpoch < epoch) {
      await harmoniseEpoch(ctx, state, epoch, signal, groups, words, groundOnThumbnails ? thumbnails : null);
    }
    const order = epochOrder(n, options.seed, epoch);
    const first = state.step - epoch * stepsPerEpoch;
    async function* batches() {
      for (let s = first; s < stepsPerEpoch; s++) {
        const globalStep = epoch * stepsPerEpoch + s;
        const random = createRandom(options.seed, `augment:${globalStep}`);
        yield loadBatch(data, order.slice(s * B, (s + 1) * B), random);
      }
    }
    for await (const batch of prefetch(batches(), 2)) {
      if (state.step >= lastStep) {
        stoppedBy = 'maxSteps';
        break outer;
      }
      // A step computes synchronously and the batches come from memory: without a turn of the event
      // loop here, a SIGINT's handler (which aborts the signal) would wait for the whole run.
      if (options.signal) await setImmediate();
      if (options.signal?.aborted) {
        stoppedBy = 'signal';
        break outer;
      }
      const started = performance.now();
      const lr = learningRate(state.step, totalSteps, options.lr, options.lrWarmupSteps);
      const robust = options.robust === 'nlip' && state.noiseProb !== null;
      const clean = robust
        ? cleanValues(state.noiseProb as Float32Array, batch.indices, {
            mode: options.robustMode,
            floor: options.robustFloor,
            threshold: options.robustThreshold,
          })
        : null;
      // Relabelling: a relabelled pair trains on its new caption, as a clean pair.
      const relabelled = relabelling && state.completed ? state.completed : null;
      if (relabelled) {
        batch.indices.forEach((idx, k) => {
          const caption = relabelled[idx];
          if (!caption) return;
          let row = relabelTokens.get(caption);
          if (!row) {
            row = new Int32Array(L);
            ctx.tokenizer.encode(caption, L, row);
            relabelTokens.set(caption, row);
          }
          batch.tokens.set(row, k * L);
          if (clean) clean[k] = 1;
        });
      }
      const positives = multiPositive
        ? positiveMask(
            batch.indices.map((idx) => {
              const caption = relabelled?.[idx];
              return caption ? normaliseCaption(caption) : (captionKeys[idx] as string);
            }),
          )
        : null;
      // Completion: the batch's completed pairs, as a selection of image rows and their captions.
      const aux =
        options.completion && state.completed
          ? batch.indices.flatMap((idx, k) =>
              state.completed?.[idx] ? [{ k, caption: state.completed[idx] as string }] : [],
            )
          : [];
      // The spread places soft targets' 1 − t and label smoothing's ε: computed when either is there.
      const spread =
        (clean !== null || options.labelSmoothing > 0) && spreadOnThumbnails && thumbnails !== null
          ? thumbnailSpread(thumbnails, batch.indices, options.thumbnailSpread)
          : null;
      const { value, grads } = tf.variableGrads(() => {
        const x = tf.tensor4d(batch.images, [B, data.imageSize, data.imageSize, 3]);
        const t = tf.tensor2d(batch.tokens, [B, L], 'int32');
        const img = model.encodeImages(x);
        const txt = model.encodeTexts(t);
        const lossOptions = {
          labelSmoothing: options.labelSmoothing,
          ...(spread === null ? {} : { imageSpread: tf.tensor2d(spread, [B, B]) }),
          ...(positives === null ? {} : { positives: tf.tensor2d(positives, [B, B]) }),
          ...(positives === null || clean === null ? {} : { cleanColumns: tf.tensor1d(clean) }),
          ...(clean === null
            ? {}
            : options.robustMode === 'soft'
              ? { targets: tf.tensor1d(clean) }
              : { weights: tf.tensor1d(clean) }),
        };
        let loss = contrastiveLoss(img, txt, model.logitScale, lossOptions).loss;
        if (aux.length >= 2 && options.completionWeight > 0) {
          // A one-hot selection by matmul, not gather: gather's gradient is missing on wasm.
          const select = new Float32Array(aux.length * B);
          aux.forEach(({ k }, r) => (select[r * B + k] = 1));
          const auxImg = tf.matMul(tf.tensor2d(select, [aux.length, B]), img);
          const rows = new Int32Array(aux.length * L);
          aux.forEach(({ caption }, r) => ctx.tokenizer.encode(caption, L, rows.subarray(r * L, (r + 1) * L)));
          const auxTxt = model.encodeTexts(tf.tensor2d(rows, [aux.length, L], 'int32'));
          loss = tf.add(
            loss,
            tf.mul(contrastiveLoss(auxImg as tf.Tensor2D, auxTxt, model.logitScale).loss, options.completionWeight),
          );
        }
        return loss as tf.Scalar;
      }, trainable);
      const lossValue = (value.dataSync() as Float32Array)[0] as number;
      value.dispose();
      if (!Number.isFinite(lossValue)) {
        tf.dispose(grads);
        throw new CriticalError(
          'ERR_NAN_LOSS',
          `Loss became ${lossValue} at step ${state.step + 1} (epoch ${epoch + 1}); stopped without saving it: ` +
            (state.checkpointStep === null
              ? 'no checkpoint had been written yet (lower --lr, or check the data)'
              : `the last good checkpoint (step ${state.checkpointStep}) is kept (lower --lr, or check the data)`),
          { context: { stage: 'train' } },
        );
      }
      optimizer.apply(grads, lr);
      tf.dispose(grads);
      tf.tidy(() => {
        model.logitScale.assign(tf.minimum(model.logitScale, tf.scalar(maxLogit)));
      });
      const elapsed = performance.now() - started;
      trainMs += elapsed;
      state.step++;
      state.lastLoss = lossValue;
      stepsRun++;
      const logit = (model.logitScale.dataSync() as Float32Array)[0] as number;
      ctx.log.append({
        kind: 'step',
        step: state.step,
        epoch,
        loss: lossValue,
        temperature: Math.exp(-logit),
        lr,
        pairsPerSecond: (B * 1000) / Math.max(elapsed, 1e-3),
        ...(state.noiseProb ? { noiseMean: noiseStats(state.noiseProb).mean } : {}),
        ...(aux.length > 0 ? { completedInBatch: aux.length } : {}),
      });
      ctx.onProgress?.({ phase: 'train', done: state.step, total: lastStep, epoch, loss: lossValue });
      if (state.step % options.checkpointEvery === 0 && state.step < lastStep) {
        ctx.checkpoint(state);
        state.checkpointStep = state.step;
      }
    }
  }
  if (stoppedBy === 'done' && state.step >= lastStep && lastStep < totalSteps) stoppedBy = 'maxSteps';
  return {
    state,
    stepsRun,
    stoppedBy,
    pairsPerSecond: trainMs > 0 ? (stepsRun * B * 1000) / trainMs : 0,
    noiseSignal: resolvedSignal,
  };
}
