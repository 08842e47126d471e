/**
 * Evaluation metrics on similarity matrices: zero-shot retrieval ranks (the Flickr30K/COCO protocol,
 * R@k, mean and median rank), top-k classification accuracy, and the noise-detection scores of the
 * comparison (ROC AUC, precision and recall at a threshold).
 *
 * Ties are counted against the model: a wrong candidate scoring exactly as high as the right one
 * ranks ahead of it. A model that gives every candidate the same score therefore gets the worst
 * rank, never a perfect one.
 */
import { UsageError } from '../corpus/errors.ts';

/** Retrieval metrics of one direction: R@k in percent, ranks 1-based. */
export interface RetrievalScores {
  'R@1': number;
  'R@5': number;
  'R@10': number;
  mean_rank: number;
  median_rank: number;
  /** Queries ranked. */
  queries: number;
}

/** Classification accuracy in percent. */
export interface ClassificationScores {
  top1: number;
  top5: number;
  /** Images classified. */
  images: number;
}

function emptyBenchmark(what: string): UsageError {
  return new UsageError('ERR_EMPTY_BENCHMARK', `Cannot evaluate an empty benchmark: ${what}`, {
    context: { stage: 'eval' },
  });
}

/**
 * `a · bᵀ` for row-major `a` `[na, dim]` and `b` `[nb, dim]`: cosine similarities when the rows
 * are L2-normalised, as the encoder's embeddings are.
 */
export function similarity(a: Float32Array, b: Float32Array, dim: number): Float32Array {
  const na = a.length / dim;
  const nb = b.length / dim;
  const out = new Float32Array(na * nb);
  for (let i = 0; i < na; i++) {
    const ao = i * dim;
    for (let j = 0; j < nb; j++) {
      const bo = j * dim;
      let s = 0;
      for (let k = 0; k < dim; k++) s += (a[ao + k] as number) * (b[bo + k] as number);
      out[i * nb + j] = s;
    }
  }
  return out;
}

/** Median of a non-empty list (the mean of the two middle values for an even count). */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((x, y) => x - y);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

function scoresFromRanks(ranks: readonly number[]): RetrievalScores {
  const recall = (k: number) => (100 * ranks.filter((r) => r <= k).length) / ranks.length;
  return {
    'R@1': recall(1),
    'R@5': recall(5),
    'R@10': recall(10),
    mean_rank: ranks.reduce((a, b) => a + b, 0) / ranks.length,
    median_rank: median(ranks),
    queries: ranks.length,
  };
}

/**
 * Zero-shot retrieval both ways from `sim` `[images, texts]` (row-major), where text `t` describes
 * image `textImage[t]`. Image→text: the rank of the best-scoring of the image's captions among all
 * texts (any of its captions is a hit); images without a caption are not queries. Text→image: the
 * rank of the caption's own image among all images.
 */
export function retrievalMetrics(
  sim: Float32Array,
  images: number,
  textImage: ArrayLike<number>,
): { imageToText: RetrievalScores; textToImage: RetrievalScores } {
  const texts = textImage.length;
  if (images === 0 || texts === 0) emptyBenchmarkFor(images, texts);
  if (sim.length !== images * texts) {
    throw new RangeError(`similarity has ${sim.length} entries, expected ${images} x ${texts}`);
  }
  for (let t = 0; t < texts; t++) {
    const i = textImage[t] as number;
    if (!Number.isInteger(i) || i < 0 || i >= images) throw new RangeError(`text ${t} points at image ${i}`);
  }
  const i2t: number[] = [];
  for (let i = 0; i < images; i++) {
    let best = -Infinity;
    let hasCaption = false;
    for (let t = 0; t < texts; t++) {
      if (textImage[t] === i) {
        hasCaption = true;
        best = Math.max(best, sim[i * texts + t] as number);
      }
    }
    if (!hasCaption) continue;
    let rank = 1;
    for (let t = 0; t < texts; t++) if (textImage[t] !== i && (sim[i * texts + t] as number) >= best) rank++;
    i2t.push(rank);
  }
  const t2i: number[] = [];
  for (let t = 0; t < texts; t++) {
    const own = textImage[t] as number;
    const score = sim[own * texts + t] as number;
    let rank = 1;
    for (let i = 0; i < images; i++) if (i !== own && (sim[i * texts + t] as number) >= score) rank++;
    t2i.push(rank);
  }
  return { imageToText: scoresFromRanks(i2t), textToImage: scoresFromRanks(t2i) };
}

/**
 * {@link retrievalMetrics} from the embeddings, without the `[images, texts]` matrix (5k images ×
 * 25k captions: 500 MB): image→text ranks from blocks of `blockRows` images against every text,
 * text→image ranks from blocks of texts (as many entries) against every image. Each rank compares
 * values of one block, so ties are counted exactly as in the whole matrix whatever `similarity`
 * computes them with (a BLAS product rounds differently from a row-by-row dot product); every
 * similarity is computed twice, once a direction.
 */
export function blockedRetrievalMetrics(
  imageEmb: Float32Array,
  textEmb: Float32Array,
  dim: number,
  textImage: ArrayLike<number>,
  options: { blockRows?: number; similarity?: (a: Float32Array, b: Float32Array, dim: number) => Float32Array } = {},
): { imageToText: RetrievalScores; textToImage: RetrievalScores } {
  const blockRows = options.blockRows ?? 256;
  const sim = options.similarity ?? similarity;
  const images = imageEmb.length / dim;
  const texts = textImage.length;
  if (images === 0 || texts === 0) emptyBenchmarkFor(images, texts);
  if (textEmb.length !== texts * dim)
    throw new RangeError(`${textEmb.length / dim} text embeddings for ${texts} texts`);
  const captionsOf: number[][] = Array.from({ length: images }, () => []);
  for (let t = 0; t < texts; t++) {
    const i = textImage[t] as number;
    if (!Number.isInteger(i) || i < 0 || i >= images) throw new RangeError(`text ${t} points at image ${i}`);
    (captionsOf[i] as number[]).push(t);
  }
  const i2t: number[] = [];
  for (let start = 0; start < images; start += blockRows) {
    const end = Math.min(images, start + blockRows);
    const block = sim(imageEmb.subarray(start * dim, end * dim), textEmb, dim);
    for (let i = start; i < end; i++) {
      const mine = captionsOf[i] as number[];
      if (mine.length === 0) continue;
      const row = (i - start) * texts;
      let best = -Infinity;
      for (const t of mine) best = Math.max(best, block[row + t] as number);
      let rank = 1;
      for (let t = 0; t < texts; t++) if (textImage[t] !== i && (block[row + t] as number) >= best) rank++;
      i2t.push(rank);
    }
  }
  const t2i: number[] = [];
  const blockTexts = Math.max(1, Math.floor((blockRows * texts) / images));
  for (let start = 0; start < texts; start += blockTexts) {
    const end = Math.min(texts, start + blockTexts);
    const width = end - start;
    // [images, width]: every image against this block of texts.
    const block = sim(imageEmb, textEmb.subarray(start * dim, end * dim), dim);
    for (let t = start; t < end; t++) {
      const own = textImage[t] as number;
      const score = block[own * width + (t - start)] as number;
      let rank = 1;
      for (let i = 0; i < images; i++) if (i !== own && (block[i * width + (t - start)] as number) >= score) rank++;
      t2i.push(rank);
    }
  }
  return { imageToText: scoresFromRanks(i2t), textToImage: scoresFromRanks(t2i) };
}

function emptyBenchmarkFor(images: number, texts: number): never {
  throw emptyBenchmark(`${images} images and ${texts} captions (retrieval needs at least one of each)`);
}

/**
 * Top-1 and top-5 accuracy from `sim` `[images, classes]`: an image counts as correct at k when
 * fewer than k other classes score at least as high as its own.
 */
export function classificationMetrics(
  sim: Float32Array,
  labels: ArrayLike<number>,
  classes: number,
): ClassificationScores {
  const n = labels.length;
  if (n === 0 || classes === 0) throw emptyBenchmark(`${n} images and ${classes} classes`);
  if (sim.length !== n * classes)
    throw new RangeError(`similarity has ${sim.length} entries, expected ${n} x ${classes}`);
  let top1 = 0;
  let top5 = 0;
  for (let i = 0; i < n; i++) {
    const label = labels[i] as number;
    if (!Number.isInteger(label) || label < 0 || label >= classes)
      throw new RangeError(`image ${i} has label ${label}`);
    const own = sim[i * classes + label] as number;
    let ahead = 0;
    for (let c = 0; c < classes; c++) if (c !== label && (sim[i * classes + c] as number) >= own) ahead++;
    if (ahead < 1) top1++;
    if (ahead < 5) top5++;
  }
  return { top1: (100 * top1) / n, top5: (100 * top5) / n, images: n };
}

/**
 * Area under the ROC curve of `scores` for finding the `positive` items (Mann–Whitney U with
 * mid-ranks for ties): 1 ranks every positive above every negative, 0.5 is chance. Null when
 * either class is empty.
 */
export function rocAuc(scores: ArrayLike<number>, positive: ArrayLike<boolean>): number | null {
  const n = scores.length;
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => (scores[a] as number) - (scores[b] as number));
  const ranks = new Float64Array(n);
  for (let s = 0; s < n;) {
    let e = s;
    while (e + 1 < n && scores[order[e + 1] as number] === scores[order[s] as number]) e++;
    const mid = (s + e) / 2 + 1;
    for (let k = s; k <= e; k++) ranks[order[k] as number] = mid;
    s = e + 1;
  }
  let pos = 0;
  let rankSum = 0;
  for (let i = 0; i < n; i++) {
    if (positive[i]) {
      pos++;
      rankSum += ranks[i] as number;
    }
  }
  const neg = n - pos;
  if (pos === 0 || neg === 0) return null;
  return (rankSum - (pos * (pos + 1)) / 2) / (pos * neg);
}

/** Precision and recall of calling items with a score above `threshold` positive; null when undefined (0/0). */
export function precisionRecall(
  scores: ArrayLike<number>,
  positive: ArrayLike<boolean>,
  threshold = 0.5,
): { precision: number | null; recall: number | null } {
  let tp = 0;
  let fp = 0;
  let fn = 0;
  for (let i = 0; i < scores.length; i++) {
    const called = (scores[i] as number) > threshold;
    if (called && positive[i]) tp++;
    else if (called) fp++;
    else if (positive[i]) fn++;
  }
  return {
    precision: tp + fp === 0 ? null : tp / (tp + fp),
    recall: tp + fn === 0 ? null : tp / (tp + fn),
  };
}

/** Mean and spread (sample standard deviation; 0 for a single value) of a non-empty list. */
export function meanAndSpread(values: readonly number[]): { mean: number; spread: number } {
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  if (values.length < 2) return { mean, spread: 0 };
  const variance = values.reduce((a, v) => a + (v - mean) ** 2, 0) / (values.length - 1);
  return { mean, spread: Math.sqrt(variance) };
}
