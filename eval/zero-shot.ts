/**
 * Zero-shot evaluation of an encoder on one benchmark held in memory: retrieval both ways when
 * the images have captions, classification when they have labels and the set has class names.
 * Class embeddings are the mean of the prompt templates' text embeddings, re-normalised (CLIP).
 */
import { AltforgeError, UsageError } from '../corpus/errors.ts';
import type { Encoder, RawImage } from '../train/index.ts';
import { blockedRetrievalMetrics, classificationMetrics, similarity } from './metrics.ts';

/** The default prompt templates of zero-shot classification (`{}` is the class name). */
export const DEFAULT_TEMPLATES: readonly string[] = [
  'a photo of a {}.',
  'a picture of a {}.',
  'an image of a {}.',
  'a drawing of a {}.',
  'a {}.',
];

/** One task's metric, as stored and reported. */
export interface EvalMetric {
  benchmark: string;
  task: 'image_to_text' | 'text_to_image' | 'classification';
  metric: string;
  value: number;
}

/** A benchmark's images read a batch at a time, so that only their embeddings are held at once. */
export interface ImageStream {
  count: number;
  /** The images in order, at most `size` at a time. */
  batches(size: number): AsyncIterable<ReadonlyArray<Uint8Array | RawImage>>;
}

/** A benchmark: its captions and labels in memory, its images in memory or streamed. */
export interface EvalBenchmark {
  name: string;
  /** Encoded image bytes or raw pixels, in memory or read as they are embedded. */
  images: ReadonlyArray<Uint8Array | RawImage> | ImageStream;
  /** Captions per image (may be empty lists). */
  captions: ReadonlyArray<readonly string[]>;
  /** Label per image, or null for unlabelled images (classification sets). */
  labels?: ReadonlyArray<number | null>;
  /** Class names by label (classification sets). */
  classNames?: readonly string[] | null;
}

/** The prompts of a class: every template with `{}` replaced by the name. */
export function prompts(className: string, templates: readonly string[]): string[] {
  return templates.map((t) => t.split('{}').join(className));
}

/**
 * Class embeddings `[classes, dim]`: for each class, the mean of its prompts' embeddings
 * (each already unit length), re-normalised to unit length.
 */
export function classEmbeddings(
  embedTexts: (texts: readonly string[]) => Float32Array,
  classNames: readonly string[],
  templates: readonly string[],
  dim: number,
): Float32Array {
  if (templates.length === 0) {
    throw new UsageError('ERR_INVALID_OPTION', "Option 'eval.templates': give at least one template", {
      context: { stage: 'eval', option: 'templates' },
    });
  }
  const all = classNames.flatMap((c) => prompts(c, templates));
  const emb = embedTexts(all);
  const out = new Float32Array(classNames.length * dim);
  for (let c = 0; c < classNames.length; c++) {
    for (let t = 0; t < templates.length; t++) {
      const row = (c * templates.length + t) * dim;
      for (let k = 0; k < dim; k++) out[c * dim + k] = (out[c * dim + k] as number) + (emb[row + k] as number);
    }
    let norm = 0;
    for (let k = 0; k < dim; k++) norm += (out[c * dim + k] as number) ** 2;
    norm = Math.sqrt(norm) || 1;
    for (let k = 0; k < dim; k++) out[c * dim + k] = (out[c * dim + k] as number) / norm;
  }
  return out;
}

/** How many images a benchmark has. */
export function imageCount(benchmark: Pick<EvalBenchmark, 'images'>): number {
  return 'count' in benchmark.images ? benchmark.images.count : benchmark.images.length;
}

/** `[images, dim]` image embeddings of a benchmark, a batch at a time. */
async function embedBenchmarkImages(
  encoder: Pick<Encoder, 'embedImages' | 'dim'>,
  benchmark: EvalBenchmark,
  batchSize: number,
  onImages?: (done: number, total: number) => void,
  signal?: AbortSignal,
): Promise<Float32Array> {
  const total = imageCount(benchmark);
  const { images } = benchmark;
  const batches =
    'count' in images
      ? images.batches(batchSize)
      : (function* () {
          for (let s = 0; s < images.length; s += batchSize) yield images.slice(s, s + batchSize);
        })();
  const out = new Float32Array(total * encoder.dim);
  let done = 0;
  onImages?.(0, total);
  for await (const batch of batches) {
    if (signal?.aborted) {
      throw new AltforgeError('ERR_INTERRUPTED', `Interrupted while embedding the images of '${benchmark.name}'`, {
        context: { stage: 'eval' },
      });
    }
    if (done + batch.length > total) break;
    out.set(await encoder.embedImages(batch, batchSize), done * encoder.dim);
    done += batch.length;
    onImages?.(done, total);
  }
  if (done !== total) {
    throw new AltforgeError('ERR_IMAGE_NOT_FOUND', `Benchmark '${benchmark.name}': read ${done} of ${total} images`, {
      context: { stage: 'eval' },
    });
  }
  return out;
}

/**
 * Refuses (`ERR_EMPTY_BENCHMARK`) a benchmark with no image, or with neither a caption nor a
 * labelled image of a named class: there is nothing to retrieve or classify.
 */
export function refuseEmpty(benchmark: EvalBenchmark): void {
  const { name } = benchmark;
  const count = imageCount(benchmark);
  if (count === 0) {
    throw new UsageError('ERR_EMPTY_BENCHMARK', `Benchmark '${name}' has no readable images to evaluate on`, {
      context: { stage: 'eval' },
    });
  }
  const hasCaptions = benchmark.captions.some((caps) => caps.length > 0);
  const hasLabels =
    (benchmark.classNames?.length ?? 0) > 0 && (benchmark.labels ?? []).some((l) => l !== null && l !== undefined);
  if (!hasCaptions && !hasLabels) {
    throw new UsageError(
      'ERR_EMPTY_BENCHMARK',
      `Benchmark '${name}' has ${count} images but neither captions nor labelled classes to evaluate with`,
      { context: { stage: 'eval' } },
    );
  }
}

/** Every metric of `benchmark` for `encoder`; an empty benchmark (or one with nothing to score) is refused. */
export async function evaluateBenchmark(
  encoder: Pick<Encoder, 'embedImages' | 'embedTexts' | 'dim'> & Partial<Pick<Encoder, 'similarity'>>,
  benchmark: EvalBenchmark,
  options: {
    templates: readonly string[];
    batchSize?: number;
    /** Images embedded so far, and how many there are. */
    onImages?: (done: number, total: number) => void;
    /** Aborting it stops between batches of images (`ERR_INTERRUPTED`). */
    signal?: AbortSignal;
  },
): Promise<EvalMetric[]> {
  refuseEmpty(benchmark);
  const { name } = benchmark;
  const texts: string[] = [];
  const textImage: number[] = [];
  benchmark.captions.forEach((caps, i) =>
    caps.forEach((c) => {
      texts.push(c);
      textImage.push(i);
    }),
  );
  const labelled: number[] = [];
  benchmark.labels?.forEach((l, i) => {
    if (l !== null && l !== undefined) labelled.push(i);
  });
  const classNames = benchmark.classNames ?? null;
  const canClassify = classNames !== null && classNames.length > 0 && labelled.length > 0;
  const dim = encoder.dim;
  const imageEmb = await embedBenchmarkImages(
    encoder,
    benchmark,
    options.batchSize ?? 256,
    options.onImages,
    options.signal,
  );
  const metrics: EvalMetric[] = [];
  const push = (task: EvalMetric['task'], values: Record<string, number>) => {
    for (const [metric, value] of Object.entries(values)) metrics.push({ benchmark: name, task, metric, value });
  };
  if (texts.length > 0) {
    const textEmb = encoder.embedTexts(texts, options.batchSize);
    const r = blockedRetrievalMetrics(
      imageEmb,
      textEmb,
      dim,
      textImage,
      encoder.similarity ? { similarity: encoder.similarity } : {},
    );
    const pick = (s: typeof r.imageToText) => ({
      'R@1': s['R@1'],
      'R@5': s['R@5'],
      'R@10': s['R@10'],
      mean_rank: s.mean_rank,
      median_rank: s.median_rank,
    });
    push('image_to_text', pick(r.imageToText));
    push('text_to_image', pick(r.textToImage));
  }
  if (canClassify) {
    const classEmb = classEmbeddings(
      (t) => encoder.embedTexts(t, options.batchSize),
      classNames,
      options.templates,
      dim,
    );
    const rows = new Float32Array(labelled.length * dim);
    labelled.forEach((i, k) => rows.set(imageEmb.subarray(i * dim, (i + 1) * dim), k * dim));
    const c = classificationMetrics(
      (encoder.similarity ?? similarity)(rows, classEmb, dim),
      labelled.map((i) => benchmark.labels?.[i] as number),
      classNames.length,
    );
    push('classification', { top1: c.top1, top5: c.top5 });
  }
  return metrics;
}
