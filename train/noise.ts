/**
 * NLIP-style noise handling. Harmonisation turns per-pair losses into a noise probability (a
 * two-component mixture over min-max normalised losses, EMA over epochs) and that probability
 * into what the loss uses: a soft target or a weight per pair. Completion gives pairs that look
 * noisy an auxiliary caption made of the concepts the image tower finds in the image.
 */
import { setImmediate } from 'node:timers/promises';
import * as tf from '@tensorflow/tfjs-core';
import { normaliseCaption, wordTokens } from '../corpus/text.ts';
import type { NOISE_SIGNAL_CHOICES, ResolvedNoiseSignal } from './options.ts';
import { fitGmm, highPosterior, logLowPosterior, minMaxNormalise, separation, type Gmm1d } from './gmm.ts';

/** Options of {@link harmonise}. */
export interface HarmoniseOptions {
  /** Weight of the previous estimate in the EMA (0: use this epoch's alone). @default 0.5 */
  ema: number;
  /**
   * Act on the split only when Ashman's D of the two components reaches this; below it the
   * epoch's estimate is "all clean" (a mixture fitted to clean data still splits it). 0 always acts.
   * @default 2
   */
  minSeparation: number;
  /** Variance floor of the mixture. @default 5e-4 */
  varianceFloor: number;
  /**
   * Act only when the high-loss component holds at most this fraction of the pairs: a model that
   * has not learned the data yet (or learned it wrongly) can put most pairs in the high-loss hump.
   * @default 0.7
   */
  maxNoiseFraction: number;
  /**
   * The gate has opened on an earlier epoch: act whatever this epoch's separation and high-component
   * weight, so a gate that wavers around its thresholds does not switch the estimate (and the
   * relabelling built on it) off and on. Ignored when `minSeparation` is infinite (estimate off). @default false
   */
  latched?: boolean;
  /**
   * Act only when the high component holds at least this fraction of the pairs: on clean data a
   * trained model's hardest pairs (look-alike classes) can form a small hump of their own, as
   * well separated as real noise. @default 0
   */
  minNoiseFraction?: number;
}

/** What one harmonisation found. */
export interface HarmoniseResult {
  /** Noise probability per pair after the EMA. */
  noiseProb: Float32Array;
  /**
   * Natural log of `1 - noiseProb` (the clean probability, same EMA), in float64: where the noise
   * probability rounds to 1 (a posterior many standard deviations into the high component), this
   * keeps the pairs' order, which ROC AUC needs.
   */
  logCleanProb: Float64Array;
  gmm: Gmm1d;
  /** Ashman's D of the fitted components. */
  separation: number;
  /** Whether the split was clear enough to act on this epoch. */
  acted: boolean;
}

/** log(e^a + e^b), without overflow or underflow (either may be -Infinity). */
function logAddExp(a: number, b: number): number {
  const hi = Math.max(a, b);
  if (hi === Number.NEGATIVE_INFINITY) return hi;
  return hi + Math.log1p(Math.exp(Math.min(a, b) - hi));
}

/**
 * Fits the mixture to `losses` (per pair, any scale) and blends the high-loss posterior into
 * `previous` (null on the first harmonisation); `previousLogClean`, the previous result's
 * `logCleanProb`, when there is one (else `log(1 - previous)` is blended).
 */
export function harmonise(
  losses: ArrayLike<number>,
  previous: Float32Array | null,
  options: HarmoniseOptions,
  previousLogClean: Float64Array | null = null,
): HarmoniseResult {
  const normalised = minMaxNormalise(losses);
  const gmm = fitGmm(normalised, { varianceFloor: options.varianceFloor });
  const d = separation(gmm);
  const acted =
    (options.latched === true && Number.isFinite(options.minSeparation)) ||
    (d >= options.minSeparation &&
      (gmm.weights[1] as number) <= options.maxNoiseFraction &&
      (gmm.weights[1] as number) >= (options.minNoiseFraction ?? 0));
  const noiseProb = new Float32Array(normalised.length);
  const logCleanProb = new Float64Array(normalised.length);
  const logEma = Math.log(options.ema);
  const logFreshWeight = Math.log(1 - options.ema);
  for (let i = 0; i < normalised.length; i++) {
    const fresh = acted ? highPosterior(gmm, normalised[i] as number) : 0;
    const logFreshClean = acted ? logLowPosterior(gmm, normalised[i] as number) : 0;
    if (previous === null) {
      noiseProb[i] = fresh;
      logCleanProb[i] = logFreshClean;
    } else {
      noiseProb[i] = options.ema * (previous[i] as number) + (1 - options.ema) * fresh;
      const before =
        previousLogClean === null ? Math.log(1 - (previous[i] as number)) : (previousLogClean[i] as number);
      logCleanProb[i] = logAddExp(logEma + before, logFreshWeight + logFreshClean);
    }
  }
  return { noiseProb, logCleanProb, gmm, separation: d, acted };
}

/** How the loss uses the noise probability. */
export interface RobustTargetOptions {
  mode: 'soft' | 'weight';
  /** Smallest clean probability / weight a pair keeps. @default 0 */
  floor: number;
  /** When set, a hard split: pairs above it get `floor`, the others 1; null uses the probability. @default null */
  threshold: number | null;
}

/** The clean value per pair of a batch: a soft target or a weight, by `mode`. */
export function cleanValues(
  noiseProb: Float32Array,
  indices: readonly number[],
  options: RobustTargetOptions,
): Float32Array {
  const out = new Float32Array(indices.length);
  indices.forEach((idx, k) => {
    const noise = noiseProb[idx] as number;
    const clean = options.threshold === null ? 1 - noise : noise > options.threshold ? 0 : 1;
    out[k] = Math.max(options.floor, clean);
  });
  return out;
}

/** Summary statistics of noise probabilities, for the metrics log. */
export function noiseStats(noiseProb: Float32Array, threshold = 0.5): { mean: number; aboveHalf: number } {
  let sum = 0;
  let above = 0;
  for (const p of noiseProb) {
    sum += p;
    if (p > threshold) above++;
  }
  return { mean: noiseProb.length ? sum / noiseProb.length : 0, aboveHalf: above };
}

/**
 * A word more than this fraction of the captions carry (function words, boilerplate) names no
 * concept: left out of the completion's vocabulary and of word grounding's prototypes.
 */
const FUNCTION_WORD_FRACTION = 0.3;

/**
 * The concept vocabulary of noise completion: the most frequent words of the captions, skipping
 * those in more than `maxDocumentFraction` of them (function words, boilerplate), single
 * characters that are not letters of a logographic script, and pure numbers.
 */
export function conceptVocabulary(
  captions: readonly string[],
  options: { size: number; minCount?: number; maxDocumentFraction?: number },
): string[] {
  const counts = new Map<string, number>();
  for (const caption of captions) {
    for (const w of new Set(wordTokens(normaliseCaption(caption)))) counts.set(w, (counts.get(w) ?? 0) + 1);
  }
  const maxDocs = (options.maxDocumentFraction ?? FUNCTION_WORD_FRACTION) * captions.length;
  const minCount = options.minCount ?? 2;
  return [...counts.entries()]
    .filter(([w, n]) => n >= minCount && n <= Math.max(minCount, maxDocs) && !/^\p{N}+$/u.test(w))
    .filter(([w]) => Array.from(w).length > 1 || /\p{Script=Han}|\p{Extended_Pictographic}/u.test(w))
    .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
    .slice(0, options.size)
    .map(([w]) => w);
}

/** Images a product of {@link completeCaptions} takes: 4096 × 512 concepts, 8 MiB. */
const COMPLETION_ROWS = 4096;

/**
 * The `k` concepts whose text embeddings are closest to each image embedding (both L2-normalised,
 * row-major `[n, dim]` and `[concepts, dim]`), joined by spaces into an auxiliary caption; equal
 * scores keep the lower concept first. The products and the top-k run on the tfjs backend, a
 * block of images at a time.
 */
export function completeCaptions(
  imageEmbeddings: Float32Array,
  conceptEmbeddings: Float32Array,
  concepts: readonly string[],
  dim: number,
  k: number,
): string[] {
  const n = imageEmbeddings.length / dim;
  const take = Math.min(k, concepts.length);
  if (take <= 0) return Array.from({ length: n }, () => '');
  const out: string[] = [];
  const texts = tf.tensor2d(conceptEmbeddings, [concepts.length, dim]);
  try {
    for (let s = 0; s < n; s += COMPLETION_ROWS) {
      const rows = Math.min(COMPLETION_ROWS, n - s);
      const top = tf.tidy(
        () =>
          tf.topk(
            tf.matMul(
              tf.tensor2d(imageEmbeddings.subarray(s * dim, (s + rows) * dim), [rows, dim]),
              texts,
              false,
              true,
            ),
            take,
          ).indices,
      );
      const ids = top.dataSync() as Int32Array;
      top.dispose();
      for (let r = 0; r < rows; r++) {
        out.push(Array.from(ids.subarray(r * take, (r + 1) * take), (c) => concepts[c]).join(' '));
      }
    }
  } finally {
    texts.dispose();
  }
  return out;
}

/**
 * Caption consistency: for each pair, the cosine between its image embedding and the mean image
 * embedding of the *other* pairs carrying the same normalised caption (leave-one-out centroid).
 * A caption shuffled onto an unrelated image disagrees with the images that caption usually
 * comes with, whatever the batch it lands in; the contrastive loss alone barely tells them apart
 * when each concept appears only a few times. NaN for pairs whose caption no other pair carries.
 */
export function captionConsistency(
  imageEmbeddings: Float32Array,
  dim: number,
  captions: readonly string[],
): Float32Array {
  const n = captions.length;
  const groups = new Map<string, number[]>();
  captions.forEach((c, i) => {
    const key = normaliseCaption(c);
    const list = groups.get(key);
    if (list) list.push(i);
    else groups.set(key, [i]);
  });
  const out = new Float32Array(n).fill(Number.NaN);
  const sum = new Float64Array(dim);
  const centroid = new Float64Array(dim);
  for (const members of groups.values()) {
    if (members.length < 2) continue;
    sum.fill(0);
    for (const i of members)
      for (let d = 0; d < dim; d++) sum[d] = (sum[d] as number) + (imageEmbeddings[i * dim + d] as number);
    for (const i of members) {
      let norm = 0;
      for (let d = 0; d < dim; d++) {
        centroid[d] = (sum[d] as number) - (imageEmbeddings[i * dim + d] as number);
        norm += (centroid[d] as number) ** 2;
      }
      norm = Math.sqrt(norm) || 1;
      let dot = 0;
      for (let d = 0; d < dim; d++) dot += (imageEmbeddings[i * dim + d] as number) * ((centroid[d] as number) / norm);
      out[i] = dot;
    }
  }
  return out;
}

/** Words {@link wordGrounding} keeps an image prototype for, the most held first: 128 MiB of sums at dim 256. */
const GROUNDING_WORDS = 65_536;

/** The distinct words of each caption, as {@link wordGrounding} reads them: computed once a run. */
export interface CaptionWords {
  /** Pair i's word ids are `ids[starts[i]..starts[i + 1])`: one flat array, no array a pair. */
  ids: Int32Array;
  starts: Int32Array;
  /** Pairs holding each word id. */
  holders: Int32Array;
}

/** The distinct unigrams of each normalised caption ({@link wordTokens}), as ids. */
export function captionWords(captions: readonly string[]): CaptionWords {
  const n = captions.length;
  const wordIds = new Map<string, number>();
  const holders: number[] = [];
  const flat: number[] = [];
  const starts = new Int32Array(n + 1);
  captions.forEach((caption, i) => {
    for (const w of new Set(wordTokens(normaliseCaption(caption)))) {
      let id = wordIds.get(w);
      if (id === undefined) {
        id = holders.length;
        wordIds.set(w, id);
        holders.push(0);
      }
      holders[id] = (holders[id] as number) + 1;
      flat.push(id);
    }
    starts[i + 1] = flat.length;
  });
  return { ids: Int32Array.from(flat), starts, holders: Int32Array.from(holders) };
}

/**
 * Word grounding, a noise signal for corpora whose captions are seldom shared but whose words are:
 * a pair is suspect when its image does not look like the *other* images whose captions share its
 * caption's words. Each word held by two or more pairs (and by at most 30 % of them) has a
 * prototype, the sum of its holders' image embeddings. A pair's grounding is the mean, over its
 * caption's words (each weighted by `1 − 1/holders`: a word seen twice says less than one seen
 * fifty times), of the cosine between its image and the word's prototype without itself, less the
 * image's mean cosine with every word's prototype (an image that looks like every word is not
 * grounded by looking like its own). Each further round weights every image in the prototypes by
 * its rank in the previous round's grounding (0 for the least grounded, 1 for the most), so the
 * pairs found suspect pull their words' prototypes less. Linear in the pairs: O(pairs × words ×
 * dim) a round. `imageEmbeddings` are L2-normalised rows `[n, dim]`, `captions` their pairs'
 * {@link captionWords}. Returns a noise score a pair (minus its grounding: higher is more
 * suspect); 0 for a pair none of whose words has a prototype.
 */
export function wordGrounding(
  imageEmbeddings: Float32Array,
  dim: number,
  captions: CaptionWords,
  rounds = 2,
): Float32Array {
  const { starts, holders } = captions;
  const n = starts.length - 1;
  // A word more than 30 % of the captions carry looks like any image: no prototype.
  const maxHolders = FUNCTION_WORD_FRACTION * n;
  const kept = Array.from(holders.keys())
    .filter((id) => (holders[id] as number) >= 2 && (holders[id] as number) <= maxHolders)
    .sort((a, b) => (holders[b] as number) - (holders[a] as number) || a - b)
    .slice(0, GROUNDING_WORDS);
  // A word's prototype slot, -1 for a word without one.
  const slotOf = new Int32Array(holders.length).fill(-1);
  kept.forEach((id, slot) => {
    slotOf[id] = slot;
  });
  const words = Int32Array.from(captions.ids, (id) => slotOf[id] as number);
  const slotWeight = Float64Array.from(kept, (id) => 1 - 1 / (holders[id] as number));
  const sums = new Float64Array(kept.length * dim);
  // The mean of the unit prototypes: an image's mean cosine with every word's prototype is `e · meanUnit`.
  const meanUnit = new Float64Array(dim);
  const weight = new Float64Array(n).fill(1);
  const grounding = new Float64Array(n);
  for (let round = 0; round <= rounds; round++) {
    sums.fill(0);
    for (let i = 0; i < n; i++) {
      const w = weight[i] as number;
      if (w === 0) continue;
      for (let k = starts[i] as number; k < (starts[i + 1] as number); k++) {
        const s = words[k] as number;
        if (s < 0) continue;
        for (let d = 0; d < dim; d++) {
          sums[s * dim + d] = (sums[s * dim + d] as number) + w * (imageEmbeddings[i * dim + d] as number);
        }
      }
    }
    meanUnit.fill(0);
    let prototypes = 0;
    for (let s = 0; s < kept.length; s++) {
      let norm = 0;
      for (let d = 0; d < dim; d++) norm += (sums[s * dim + d] as number) ** 2;
      if (norm === 0) continue;
      norm = Math.sqrt(norm);
      prototypes++;
      for (let d = 0; d < dim; d++) meanUnit[d] = (meanUnit[d] as number) + (sums[s * dim + d] as number) / norm;
    }
    for (let i = 0; i < n; i++) {
      const w = weight[i] as number;
      let sum = 0;
      let weights = 0;
      for (let k = starts[i] as number; k < (starts[i + 1] as number); k++) {
        const s = words[k] as number;
        if (s < 0) continue;
        // cos(e_i, sum − w_i e_i): the prototype without pair i's own image.
        let dot = 0;
        let norm = 0;
        for (let d = 0; d < dim; d++) {
          const e = imageEmbeddings[i * dim + d] as number;
          const v = (sums[s * dim + d] as number) - w * e;
          dot += e * v;
          norm += v * v;
        }
        const ws = slotWeight[s] as number;
        sum += ws * (norm > 0 ? dot / Math.sqrt(norm) : 0);
        weights += ws;
      }
      if (weights === 0) {
        grounding[i] = 0;
        continue;
      }
      let meanCos = 0;
      for (let d = 0; d < dim; d++) meanCos += (imageEmbeddings[i * dim + d] as number) * (meanUnit[d] as number);
      grounding[i] = sum / weights - meanCos / prototypes;
    }
    if (round < rounds) {
      const order = Array.from({ length: n }, (_, i) => i).sort(
        (a, b) => (grounding[a] as number) - (grounding[b] as number) || a - b,
      );
      order.forEach((i, rank) => {
        weight[i] = n > 1 ? rank / (n - 1) : 1;
      });
    }
  }
  // `|| 0`: a pair without a prototype scores +0, not -0.
  return Float32Array.from(grounding, (g) => -g || 0);
}

/**
 * Side of the colour thumbnails `groundingThumbnails` sets beside the model's image embeddings in
 * word grounding: at 8 the thumbnails of emoji found a drawing's other-vendor twin more often than
 * at 16 (21.2 % against 19.2 %) and grounded words as well as at 12 (AUC 0.775 against 0.777;
 * `npm run bench:detection`, session 10).
 */
export const THUMBNAIL_SIDE = 8;

/** Values a thumbnail row of {@link thumbnailRows} at the default side holds (cells × 3 colours). */
export const THUMBNAIL_WIDTH = THUMBNAIL_SIDE * THUMBNAIL_SIDE * 3;

/** Centres each of the `width`-wide rows of `rows` on its mean and scales it to unit length, in place. */
export function centreRows(rows: Float32Array, width: number): Float32Array {
  for (let start = 0; start < rows.length; start += width) {
    let mean = 0;
    for (let d = 0; d < width; d++) mean += rows[start + d] as number;
    mean /= width;
    let norm = 0;
    for (let d = 0; d < width; d++) norm += ((rows[start + d] as number) - mean) ** 2;
    norm = Math.sqrt(norm) || 1;
    for (let d = 0; d < width; d++) rows[start + d] = ((rows[start + d] as number) - mean) / norm;
  }
  return rows;
}

/**
 * Colour thumbnails of square images, as rows for {@link wordGrounding}: each `size × size × 3`
 * uint8 image of `pixels` (one after the other) averaged over a `side × side` grid of cells, then
 * centred and L2-normalised ({@link centreRows}). What an image looks like before any training:
 * on drawings whose colours carry the concept (emoji) they ground words about as well as the model
 * does, and they do not memorise as the model does over many epochs.
 */
export function thumbnailRows(pixels: Uint8Array, size: number, side = THUMBNAIL_SIDE): Float32Array {
  const imageBytes = size * size * 3;
  const count = Math.floor(pixels.length / imageBytes);
  const width = side * side * 3;
  const out = new Float32Array(count * width);
  // Cell c covers source rows/columns [edge[c], edge[c + 1]): every pixel in exactly one cell.
  const edge = Int32Array.from({ length: side + 1 }, (_, c) => Math.floor((c * size) / side));
  for (let i = 0; i < count; i++) {
    const src = i * imageBytes;
    for (let cy = 0; cy < side; cy++) {
      for (let cx = 0; cx < side; cx++) {
        const y0 = edge[cy] as number;
        const y1 = Math.max(edge[cy + 1] as number, y0 + 1);
        const x0 = edge[cx] as number;
        const x1 = Math.max(edge[cx + 1] as number, x0 + 1);
        const cell = (y1 - y0) * (x1 - x0);
        for (let c = 0; c < 3; c++) {
          let sum = 0;
          for (let y = y0; y < y1; y++)
            for (let x = x0; x < x1; x++) sum += pixels[src + (y * size + x) * 3 + c] as number;
          out[i * width + (cy * side + cx) * 3 + c] = sum / cell;
        }
      }
    }
  }
  return centreRows(out, width);
}

/**
 * Where a batch's targets put each image's mass off its own caption — soft targets' 1 − t, label
 * smoothing's ε — over the other captions (`TrainOptions.thumbnailSpread`): row a of the `[B, B]` result (row-major) is the softmax over
 * b ≠ a of `kappa` × the cosine of the thumbnails of pairs `indices[a]` and `indices[b]` (unit
 * rows of {@link thumbnailRows}, `width` wide); the diagonal is 0 and each row sums to 1. κ = 0 is
 * the even spread.
 */
export function thumbnailSpread(
  thumbnails: Float32Array,
  indices: readonly number[],
  kappa: number,
  width = THUMBNAIL_WIDTH,
): Float32Array {
  const B = indices.length;
  const out = new Float32Array(B * B);
  // The cosines are symmetric: each is computed once (a product's terms in the same order either way).
  const dots = new Float64Array(B * B);
  for (let a = 0; a < B; a++) {
    const ia = (indices[a] as number) * width;
    for (let b = a + 1; b < B; b++) {
      const ib = (indices[b] as number) * width;
      let dot = 0;
      for (let d = 0; d < width; d++) dot += (thumbnails[ia + d] as number) * (thumbnails[ib + d] as number);
      dots[a * B + b] = dot;
      dots[b * B + a] = dot;
    }
  }
  const logits = new Float32Array(B);
  for (let a = 0; a < B; a++) {
    let max = Number.NEGATIVE_INFINITY;
    for (let b = 0; b < B; b++) {
      if (b === a) continue;
      const dot = dots[a * B + b] as number;
      logits[b] = kappa * dot;
      max = Math.max(max, kappa * dot);
    }
    let sum = 0;
    for (let b = 0; b < B; b++) {
      if (b === a) continue;
      const e = Math.exp((logits[b] as number) - max);
      out[a * B + b] = e;
      sum += e;
    }
    for (let b = 0; b < B; b++) out[a * B + b] = (out[a * B + b] as number) / sum;
  }
  return out;
}

/**
 * Unit rows `a` (`aw` wide) and `b` (`bw` wide) side by side, each half scaled by √½ so the rows
 * stay unit length and a cosine between two rows is the mean of the halves' cosines.
 */
export function sideBySide(a: Float32Array, aw: number, b: Float32Array, bw: number): Float32Array {
  const n = Math.min(a.length / aw, b.length / bw);
  const w = aw + bw;
  const out = new Float32Array(n * w);
  for (let i = 0; i < n; i++) {
    for (let d = 0; d < aw; d++) out[i * w + d] = Math.SQRT1_2 * (a[i * aw + d] as number);
    for (let d = 0; d < bw; d++) out[i * w + aw + d] = Math.SQRT1_2 * (b[i * bw + d] as number);
  }
  return out;
}

/**
 * The per-pair score the mixture is fitted to: the min-max normalised loss, averaged (when
 * `consistencyWeight` > 0) with the min-max normalised inconsistency `1 − consistency` for the
 * pairs whose caption other pairs share. Higher means more likely noisy.
 */
export function noiseScores(
  losses: ArrayLike<number>,
  consistency: Float32Array | null,
  consistencyWeight: number,
): Float32Array {
  const loss = minMaxNormalise(losses);
  if (consistency === null || consistencyWeight <= 0) return loss;
  const known: number[] = [];
  consistency.forEach((c, i) => {
    if (!Number.isNaN(c)) known.push(i);
  });
  if (known.length < 2) return loss;
  const inconsistency = minMaxNormalise(known.map((i) => 1 - (consistency[i] as number)));
  known.forEach((i, k) => {
    loss[i] = (1 - consistencyWeight) * (loss[i] as number) + consistencyWeight * (inconsistency[k] as number);
  });
  return loss;
}

/** The distinct normalised captions of a caption list. */
export interface CaptionGroups {
  /** Group (distinct caption) of each caption. */
  index: Int32Array;
  /** One raw caption per group (its first occurrence), in group order. */
  representatives: string[];
}

/** Groups captions that are identical after {@link normaliseCaption}. */
export function captionGroups(captions: readonly string[]): CaptionGroups {
  const byKey = new Map<string, number>();
  const representatives: string[] = [];
  const index = new Int32Array(captions.length);
  captions.forEach((c, i) => {
    const key = normaliseCaption(c);
    let g = byKey.get(key);
    if (g === undefined) {
      g = representatives.length;
      byKey.set(key, g);
      representatives.push(c);
    }
    index[i] = g;
  });
  return { index, representatives };
}

/** The `[B, B]` 0/1 matrix (row-major) of pairs of a batch that share a caption group, diagonal included. */
export function positiveMask(groups: ArrayLike<number | string>): Float32Array {
  const B = groups.length;
  const out = new Float32Array(B * B);
  for (let i = 0; i < B; i++) for (let j = 0; j < B; j++) if (groups[i] === groups[j]) out[i * B + j] = 1;
  return out;
}

/** Options of {@link captionAgreement}. */
export interface AgreementOptions {
  /** Nearest images (by image-embedding cosine, self excluded) averaged with the image itself. @default 5 */
  neighbours: number;
  /** Logit scale of the softmax over captions (the model's `exp(logitScale)`). */
  scale: number;
  /** Rows per chunk of the similarity products. @default {@link agreementChunk} of the pairs and caption groups */
  chunk?: number;
  /** Called after each chunk with the pairs done and the total. */
  onProgress?: (done: number, total: number) => void;
}

/** Entries of one chunk's largest product ([rows, pairs] or [rows, caption groups]): 2^25 floats, 128 MiB. */
const AGREEMENT_BLOCK_ENTRIES = 2 ** 25;

/**
 * Rows a chunk of {@link captionAgreement} takes: 512, fewer when the pairs or the distinct
 * captions are so many that a chunk's products would pass {@link AGREEMENT_BLOCK_ENTRIES}
 * (a million pairs: 33 rows), so its memory stays bounded whatever the corpus.
 */
export function agreementChunk(pairs: number, groups: number): number {
  return Math.max(1, Math.min(512, Math.floor(AGREEMENT_BLOCK_ENTRIES / Math.max(pairs, groups, 1))));
}

/** What {@link captionAgreement} finds per pair. */
export interface Agreement {
  /**
   * How much the model agrees with the pair's caption, in [0, 1]: the softmax probability of the
   * pair's own caption group divided by that of the best group, both over every distinct training
   * caption, for the image's neighbourhood embedding (1: its own caption is the model's first choice).
   */
  agreement: Float32Array;
  /**
   * Cosine of the neighbourhood embedding with the best caption minus that with the own caption
   * (0 when the own caption is the first choice; `−ln(agreement) / scale`): the noise score, which
   * keeps shuffled captions far from near-miss ones (another template of the right class).
   */
  gap: Float32Array;
  /** The model's first-choice caption group for the image's neighbourhood embedding. */
  best: Int32Array;
  /**
   * Caption vote of the neighbours: the cosine between the text embedding of the pair's caption and
   * the mean text embedding of its `neighbours` nearest images' own captions (itself excluded; 1
   * when it has no neighbours). Uses only image–image and text–text similarity, not the image–text
   * match a noisy training set has weakened: a shuffled caption names what its image's look-alikes'
   * captions do not.
   */
  vote: Float32Array;
  /**
   * The caption group closest (cosine) to the neighbours' mean caption embedding: what the image's
   * look-alikes are called, whatever the model makes of the image itself (its own group when it
   * has no neighbours).
   */
  voteBest: Int32Array;
  /**
   * The caption group maximising the sum of both cosines (the neighbourhood image embedding's and
   * the neighbours' mean caption embedding's).
   */
  jointBest: Int32Array;
  /**
   * The joint noise score: over every distinct training caption g, the best value of
   * `cos(hood, g) + mean_j cos(caption_j, g)` (j over the `neighbours` nearest images, itself
   * excluded) minus that of the pair's own caption. The second term is the neighbours' caption
   * vote through the text tower, unnormalised, so neighbours that disagree among themselves count
   * less; with no neighbours it equals `gap`. A shuffled caption is far both from what the
   * model sees in the neighbourhood and from what the neighbours are called.
   */
  jointGap: Float32Array;
}

/**
 * The neighbourhood size of {@link captionAgreement} when `agreementNeighbours` is `auto`: as many
 * other images as a caption typically has holders (median group size − 1), between 1 and 10. A
 * caption held by ~50 images (Fashion-MNIST templates) gives 10; one held by two drawings gives 1.
 */
export function autoNeighbours(groupIndex: Int32Array): number {
  const sizes = new Map<number, number>();
  for (const g of groupIndex) sizes.set(g, (sizes.get(g) ?? 0) + 1);
  const sorted = [...sizes.values()].sort((a, b) => a - b);
  const median = sorted.length === 0 ? 1 : (sorted[Math.floor((sorted.length - 1) / 2)] as number);
  return Math.max(1, Math.min(10, median - 1));
}

/**
 * The noise estimate `auto` stands for: `agreement` when a caption is typically carried by at least
 * three pairs (median caption-group size ≥ 3, so an image's neighbourhood can carry its caption),
 * else `off` — with one or two holders per caption neither signal separates shuffled captions from
 * clean ones well enough to act on (emoji: agreement AUC 0.55–0.64; the loss mixture opened its
 * gate on clean data), and acting on them cost clean accuracy. `off` still runs the estimate for
 * the log, but never acts on it.
 */
export function resolveNoiseSignal(
  signal: (typeof NOISE_SIGNAL_CHOICES)[number],
  groupIndex: Int32Array,
): ResolvedNoiseSignal {
  if (signal !== 'auto') return signal;
  return autoNeighbours(groupIndex) >= 2 ? 'agreement' : 'off';
}

/**
 * Caption agreement, a noise signal that is not the loss: each image embedding is averaged with
 * those of its `neighbours` nearest training images (re-normalised), and that neighbourhood
 * embedding is compared with the text embedding of every distinct training caption. A clean
 * pair's caption is among the model's choices for what its neighbourhood shows; a shuffled
 * caption is not, even after the model has started to memorise it for that one image, because
 * the neighbours do not carry it. `imageEmbeddings` `[n, dim]` and `captionEmbeddings`
 * `[groups, dim]` are L2-normalised rows; `own[i]` is pair i's caption group. Uses the active
 * tfjs backend for the products. Between chunks it yields to the event loop (a large corpus takes
 * minutes: the progress bar moves and a second Ctrl-C still exits at once).
 */
export async function captionAgreement(
  imageEmbeddings: Float32Array,
  captionEmbeddings: Float32Array,
  own: Int32Array,
  dim: number,
  options: AgreementOptions,
): Promise<Agreement> {
  const n = own.length;
  const groups = captionEmbeddings.length / dim;
  const k = Math.max(0, Math.min(options.neighbours, n - 1));
  const chunk = options.chunk ?? agreementChunk(n, groups);
  const agreement = new Float32Array(n);
  const gap = new Float32Array(n);
  const best = new Int32Array(n);
  const vote = new Float32Array(n).fill(1);
  const voteBest = Int32Array.from(own);
  const jointBest = new Int32Array(n);
  const jointGap = new Float32Array(n);
  const images = tf.tensor2d(imageEmbeddings, [n, dim]);
  const texts = tf.tensor2d(captionEmbeddings, [groups, dim]);
  try {
    for (let s = 0; s < n; s += chunk) {
      const rows = Math.min(chunk, n - s);
      const ownCells = new Int32Array(rows * 2);
      for (let r = 0; r < rows; r++) {
        ownCells[2 * r] = r;
        ownCells[2 * r + 1] = own[s + r] as number;
      }
      // The softmax of `agreement` is never materialised: its own-over-best ratio is
      // exp(scale · (cos(own) − cos(best))), so the cosines, their maximum and the own cell suffice.
      const [cosines, bestIdx, gapRows, nearest] = tf.tidy(() => {
        const part = tf.slice(images, [s, 0], [rows, dim]);
        let hood = part;
        let near: tf.Tensor | null = null;
        if (k > 0) {
          // k + 1 nearest include the image itself (cosine 1); gather their mean embedding.
          const sims = tf.matMul(part, images, false, true);
          const { indices } = tf.topk(sims, k + 1);
          near = indices;
          const gathered = tf.reshape(tf.gather(images, tf.reshape(indices, [-1])), [rows, k + 1, dim]);
          const mean = tf.mean(gathered, 1);
          hood = tf.div(mean, tf.maximum(tf.norm(mean, 2, 1, true), 1e-12)) as tf.Tensor2D;
        }
        const c = tf.matMul(hood, texts, false, true);
        const cells = tf.tensor2d(ownCells, [rows, 2], 'int32');
        return [c, tf.argMax(c, 1), tf.sub(tf.max(c, 1), tf.gatherND(c, cells)), near] as const;
      });
      const top = bestIdx.dataSync() as Int32Array;
      const gaps = gapRows.dataSync() as Float32Array;
      const neighbourIdx = nearest ? (nearest.dataSync() as Int32Array) : null;
      bestIdx.dispose();
      gapRows.dispose();
      nearest?.dispose();
      const spread = new Float32Array(rows);
      const means = neighbourIdx
        ? voteRows(vote, spread, s, rows, k + 1, neighbourIdx, captionEmbeddings, own, dim)
        : new Float32Array(rows * dim);
      const [voteTop, jointTop, jointGapTensor] = tf.tidy(() => {
        const dots = tf.matMul(tf.tensor2d(means, [rows, dim]), texts, false, true);
        // The unnormalised vote: mean_j cos(caption_j, g) = |mean| · cos(normalised mean, g).
        const joint = tf.add(cosines, tf.mul(dots, tf.tensor2d(spread, [rows, 1])));
        // Best value over the groups minus the own group's, on the backend: one value a row comes back.
        const jointGapRows = tf.sub(tf.max(joint, 1), tf.gatherND(joint, tf.tensor2d(ownCells, [rows, 2], 'int32')));
        return [tf.argMax(dots, 1), tf.argMax(tf.add(cosines, dots), 1), jointGapRows] as const;
      });
      cosines.dispose();
      const votes = voteTop.dataSync() as Int32Array;
      const joints = jointTop.dataSync() as Int32Array;
      jointGap.set(jointGapTensor.dataSync() as Float32Array, s);
      voteTop.dispose();
      jointTop.dispose();
      jointGapTensor.dispose();
      for (let r = 0; r < rows; r++) {
        const i = s + r;
        best[i] = top[r] as number;
        gap[i] = gaps[r] as number;
        agreement[i] = Math.exp(-options.scale * (gaps[r] as number));
        jointBest[i] = joints[r] as number;
        if (neighbourIdx) voteBest[i] = votes[r] as number;
      }
      options.onProgress?.(s + rows, n);
      await setImmediate();
    }
  } finally {
    images.dispose();
    texts.dispose();
  }
  return { agreement, gap, best, vote, voteBest, jointBest, jointGap };
}

/**
 * Fills `vote[s .. s + rows)` from each row's `width` nearest pairs (see {@link Agreement.vote})
 * and `spread[r]` with the length of the row's mean neighbour-caption embedding (1: the neighbours
 * share one caption; 0 when it has none); returns the rows' normalised mean neighbour-caption
 * embeddings, `[rows, dim]`.
 */
function voteRows(
  vote: Float32Array,
  spread: Float32Array,
  s: number,
  rows: number,
  width: number,
  neighbourIdx: Int32Array,
  captionEmbeddings: Float32Array,
  own: Int32Array,
  dim: number,
): Float32Array {
  const means = new Float32Array(rows * dim);
  const sum = new Float64Array(dim);
  for (let r = 0; r < rows; r++) {
    const i = s + r;
    sum.fill(0);
    let count = 0;
    for (let c = 0; c < width; c++) {
      const j = neighbourIdx[r * width + c] as number;
      if (j === i) continue;
      const o = (own[j] as number) * dim;
      for (let d = 0; d < dim; d++) sum[d] = (sum[d] as number) + (captionEmbeddings[o + d] as number);
      count++;
    }
    if (count === 0) continue;
    let norm = 0;
    let dot = 0;
    const o = (own[i] as number) * dim;
    for (let d = 0; d < dim; d++) {
      norm += (sum[d] as number) ** 2;
      dot += (sum[d] as number) * (captionEmbeddings[o + d] as number);
    }
    vote[i] = norm > 0 ? dot / Math.sqrt(norm) : 0;
    spread[r] = Math.sqrt(norm) / count;
    const inv = norm > 0 ? 1 / Math.sqrt(norm) : 0;
    for (let d = 0; d < dim; d++) means[r * dim + d] = (sum[d] as number) * inv;
  }
  return means;
}
