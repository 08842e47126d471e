/**
 * Options of `runTrain` and `runScore`: the interfaces users read (TSDoc, `@default`) and the zod
 * schemas that validate them once at the entry.
 */
import { z } from 'zod';
import { UsageError } from '../corpus/errors.ts';
import { parseOptions } from '../corpus/options.ts';
import { BACKEND_CHOICES, type BackendChoice } from './backend-names.ts';
import type { MemoryPair } from './data.ts';

/** Backends, as `selectBackend` takes them. */

/** Overrides of the preset's architecture (vocabulary size comes from the tokenizer). */
export interface ModelOverrides {
  imageSize?: number;
  patchSize?: number;
  visionWidth?: number;
  visionDepth?: number;
  visionHeads?: number;
  textWidth?: number;
  textDepth?: number;
  textHeads?: number;
  contextLength?: number;
  embedDim?: number;
}

/**
 * Why `noiseSignal: 'auto'` turned nlip's estimate off (`resolveNoiseSignal`), in the words every
 * summary and report uses. Here, not beside the rule, so the CLI can say it without loading TensorFlow.js.
 */
export const NOISE_SIGNAL_OFF_REASON = 'most captions have fewer than 3 holders';

/**
 * Ashman's D from which nlip acts on its mixture by default: below it the scores are one hump, which
 * the mixture still splits, but whose posterior then ranks the pairs rather than telling noise from clean.
 */
export const DEFAULT_MIN_SEPARATION = 2;

/**
 * What a scoring summary says after a mixture's separation below {@link DEFAULT_MIN_SEPARATION}:
 * its noise probabilities rank the pairs, and 0.5 is not a line between noise and clean. Null at or above it.
 */
export function oneHumpNote(separation: number): string | null {
  return separation < DEFAULT_MIN_SEPARATION
    ? `below ${DEFAULT_MIN_SEPARATION}: one hump of scores, so noise_prob ranks the pairs and 0.5 is no noise line`
    : null;
}

/** The noise signals nlip can fit its mixture to, and `auto` (see `TrainOptions.noiseSignal`). */
export const NOISE_SIGNAL_CHOICES = ['auto', 'agreement', 'loss', 'words'] as const;

/** A noise signal as resolved from `auto`: `off` is an estimate logged, never acted on. */
export type ResolvedNoiseSignal = Exclude<(typeof NOISE_SIGNAL_CHOICES)[number], 'auto'> | 'off';

/**
 * Whether a comparison has nlip runs and `auto` turned the estimate off in every one (so nlip
 * trained as vanilla): the summary line, the comparison's Markdown and the report all say so.
 */
export function nlipEstimateOff(runs: ReadonlyArray<{ method: string; noiseSignal?: string | null }>): boolean {
  const nlip = runs.filter((r) => r.method === 'nlip');
  return nlip.length > 0 && nlip.every((r) => r.noiseSignal === 'off');
}

/** Progress of a training run, for a progress bar. */
export interface TrainProgress {
  phase: 'decode' | 'train' | 'harmonise' | 'agreement';
  done: number;
  total: number;
  epoch: number;
  /** Last step's loss (train phase). */
  loss?: number;
}

/** Options of {@link runTrain}. Give `corpus` or `pairs`. */
export interface TrainOptions {
  /** Corpus directories whose kept pairs are trained on. */
  corpus?: string[];
  /** Pairs in memory instead of a corpus (eval's `compare`). */
  pairs?: MemoryPair[];
  /** Also train on pairs the filter stage rejected. @default false */
  includeFiltered?: boolean;
  /** Also train on pairs the dedup stage marked as duplicates. @default false */
  includeDuplicates?: boolean;
  /** Run directory: `checkpoint.ckpt`, `metrics.jsonl`, `noise.json`. Created if missing. */
  out: string;
  /** Compute backend. @default 'auto' */
  backend?: BackendChoice;
  /** Model preset. @default 'tiny' */
  preset?: 'tiny' | 'small';
  /** Architecture overrides of the preset. @default {} */
  model?: ModelOverrides;
  /** Tokenizer vocabulary size learned from the captions. @default 4096 */
  vocabSize?: number;
  /** Passes over the data. @default 10 */
  epochs?: number;
  /** Pairs per step (capped at the number of pairs). @default 256 */
  batchSize?: number;
  /** Peak learning rate (linear warm-up, then cosine decay to 0). @default 5e-4 */
  lr?: number;
  /** Learning-rate warm-up steps. @default 50 */
  lrWarmupSteps?: number;
  /** AdamW decoupled weight decay (not applied to gains, biases and the temperature). @default 0.1 */
  weightDecay?: number;
  /** Label smoothing of the contrastive targets (ALIGN: 0.1). @default 0 */
  labelSmoothing?: number;
  /** Seed of the weights, the data order and the augmentation. @default 1 */
  seed?: number;
  /** Random resized crop: smallest area fraction kept (1 disables crops). @default 1 */
  cropScale?: number;
  /** Random left-right flips. @default false */
  flip?: boolean;
  /** Noise-robust training: `none` (vanilla) or `nlip`. @default 'none' */
  robust?: 'none' | 'nlip';
  /** How the noise probability enters the loss: `soft` targets or `weight`s. @default 'soft' */
  robustMode?: 'soft' | 'weight';
  /** Epochs of vanilla training before the first harmonisation. @default 2 */
  warmupEpochs?: number;
  /** Weight of the previous noise estimate in the per-epoch EMA. @default 0.5 */
  noiseEma?: number;
  /** Act on the mixture only when its components are at least this far apart (Ashman's D). @default 2 */
  minSeparation?: number;
  /** Act on the mixture only when its high-loss component holds at most this fraction of the pairs. @default 0.7 */
  maxNoiseFraction?: number;
  /**
   * Act on the mixture only when its high component holds at least this fraction of the pairs: on
   * clean data a trained model's hardest pairs can form a small, well separated hump of their own
   * (Fashion-MNIST: 11–16 % of the pairs, Ashman's D up to 2.4), which is no reason to relabel
   * them. Noise rates below it are left to the plain loss. @default 0
   */
  minNoiseFraction?: number;
  /**
   * Once the mixture has been acted on, keep acting on later epochs even when their separation
   * falls below `minSeparation` or their high component grows past `maxNoiseFraction` (a latch:
   * the gate decides when the estimate starts, not every epoch anew). @default true
   */
  gateLatch?: boolean;
  /** Smallest clean target or weight a pair keeps. @default 0 */
  robustFloor?: number;
  /**
   * κ > 0 gives what a pair's image→text target puts off its own caption — nlip's soft-target
   * 1 − t, label smoothing's ε — to the batch's other captions by how alike their images look
   * (softmax of κ × the cosine of 8×8 colour thumbnails, `thumbnailSpread`) instead of to all of
   * them evenly; 0 spreads it evenly. Needs something to spread: `labelSmoothing` > 0, or nlip's
   * soft targets. On emoji at 50 % noise κ = 8 on nlip halved the median rank and lifted R@10 by 4
   * points, with R@1 no better; on clean emoji it lifted R@1 by 1 / 6 points (i→t / t→i) over the
   * even spread, as a regulariser (BENCHMARKS, session 12); on vanilla with label smoothing 0.5 it
   * is the same prior without a noise estimate, and lifted clean R@1 by 9 / 11 points (session 13).
   * @default 0
   */
  thumbnailSpread?: number;
  /** Hard split at this noise probability instead of using the probability itself. @default null */
  robustThreshold?: number | null;
  /** Variance floor of the mixture. @default 5e-4 */
  varianceFloor?: number;
  /**
   * Weight of caption consistency in the noise score (0: the loss alone, NLIP): how far a pair's
   * image lies from the other images carrying the same caption. @default 0
   */
  consistencyWeight?: number;
  /**
   * The per-pair signal the mixture is fitted to (robust `nlip`): `agreement` (how far the pair's
   * caption is from the model's first choice among every distinct training caption for the image
   * and its nearest training images, as a cosine gap; see `captionAgreement`), `loss` (the per-pair
   * contrastive loss, blended with caption consistency by `consistencyWeight`) or `words` (how
   * little the pair's image looks like the other images whose captions share its caption's words;
   * see `wordGrounding`: for captions seldom shared whose words are); `auto` takes
   * `agreement` when the median caption is carried by at least three pairs, else no estimate is
   * acted on (nlip then trains like vanilla; see `resolveNoiseSignal`). @default 'auto'
   */
  noiseSignal?: (typeof NOISE_SIGNAL_CHOICES)[number];
  /**
   * The `words` signal only: ground words on the model's image embeddings and 8×8 colour thumbnails
   * of the images side by side (`thumbnailRows`, `sideBySide`), not on the embeddings alone. On
   * emoji the thumbnails ground words about as well as a model and do not memorise as it does over
   * many epochs (`npm run bench:detection`); on photos their colours say little. @default false
   */
  groundingThumbnails?: boolean;
  /**
   * Nearest training images averaged with each image for the `agreement` signal (0: the image
   * alone); `auto` takes the median number of pairs per distinct caption − 1, between 1 and 10. @default 'auto'
   */
  agreementNeighbours?: number | 'auto';
  /**
   * Robust `nlip` only: pairs of a batch with identical normalised captions are positives of each
   * other (multi-positive targets) instead of false negatives. @default true
   */
  multiPositive?: boolean;
  /**
   * Robust `nlip` only, when `completion` is off: a pair whose noise probability exceeds
   * `relabelThreshold` is trained on the model's first-choice caption among the distinct training
   * captions (from the `agreement` signal) as a clean pair, instead of its own. @default true
   */
  relabel?: boolean;
  /**
   * The `agreement` signal's per-pair score: `gap` (the cosine gap between the model's first-choice
   * caption for the image neighbourhood and the pair's own) or `joint` (the same gap taken over
   * that cosine plus the mean text-tower cosine of each caption with the neighbours' own captions;
   * see `Agreement.jointGap`). The joint score separates noise better right after the warm-up
   * (Fashion-MNIST 50 %: AUC 0.913 against 0.886 at the first harmonisation). @default 'joint'
   */
  agreementScore?: 'gap' | 'joint';
  /** Noise probability above which a pair is relabelled. @default 0.5 */
  relabelThreshold?: number;
  /**
   * The caption a relabelled pair gets: the model's first choice for the image's neighbourhood
   * (`model`), the caption closest to its nearest images' own captions (`neighbours`, label
   * propagation), or the best of both cosines summed (`joint`). @default 'neighbours'
   */
  relabelSource?: 'model' | 'neighbours' | 'joint';
  /** Noise completion: train likely-noisy pairs against captions made of retrieved concepts. @default false */
  completion?: boolean;
  /** Noise probability above which a pair is completed. @default 0.5 */
  completionThreshold?: number;
  /** Concepts per completed caption. @default 3 */
  completionTopK?: number;
  /** Weight of the completion loss. @default 0.5 */
  completionWeight?: number;
  /** Size of the concept vocabulary (frequent caption words). @default 512 */
  conceptVocabSize?: number;
  /** Write a checkpoint every this many steps (and at the end). @default 500 */
  checkpointEvery?: number;
  /** Continue from `<out>/checkpoint.ckpt`. @default false */
  resume?: boolean;
  /** Stop (with a checkpoint) once this global step is reached; null runs every epoch. @default null */
  maxSteps?: number | null;
  /** Largest decoded-image cache kept in memory, in MiB; beyond it the cache spills to a file in `out`. @default 2048 */
  memoryLimitMb?: number;
  /** Called as work advances. */
  onProgress?: (progress: TrainProgress) => void;
  /** Called after each NLIP harmonisation with every pair's noise probability (eval's noise-detection report). */
  onNoise?: (estimate: NoiseEpoch) => void;
  /** Aborting it stops after the current step, with a checkpoint. */
  signal?: AbortSignal;
}

/** One epoch's noise estimate, as {@link TrainOptions.onNoise} receives it. */
export interface NoiseEpoch {
  /** The epoch whose start the harmonisation ran at (0-based). */
  epoch: number;
  /** Global step at that moment. */
  step: number;
  /** Pair ids, in the order of `noiseProb`. */
  ids: readonly string[];
  /** Noise probability per pair after the EMA. */
  noiseProb: Float32Array;
  /**
   * Natural log of `1 - noiseProb`, in float64: ranks the pairs where the noise probability
   * rounds to 1 (ROC AUC is computed from it).
   */
  logCleanProb: Float64Array;
  /** The score the mixture was fitted to (normalised loss, blended with inconsistency), before any gate. */
  scores: Float32Array;
  /** Whether the mixture was acted on this epoch. */
  acted: boolean;
  /** Ashman's D of the fitted mixture. */
  separation: number;
}

const positiveInt = z.number().int().positive();
const fraction = z.number().min(0).max(1);

const trainSchema = z.strictObject({
  corpus: z.array(z.string().min(1)).min(1).optional(),
  pairs: z.array(z.custom<MemoryPair>((v) => v !== null && typeof v === 'object')).optional(),
  includeFiltered: z.boolean().default(false),
  includeDuplicates: z.boolean().default(false),
  out: z.string().min(1),
  backend: z.enum(BACKEND_CHOICES).default('auto'),
  preset: z.enum(['tiny', 'small']).default('tiny'),
  model: z
    .strictObject({
      imageSize: positiveInt.max(1024).optional(),
      patchSize: positiveInt.optional(),
      visionWidth: positiveInt.optional(),
      visionDepth: positiveInt.optional(),
      visionHeads: positiveInt.optional(),
      textWidth: positiveInt.optional(),
      textDepth: positiveInt.optional(),
      textHeads: positiveInt.optional(),
      contextLength: z.number().int().min(2).optional(),
      embedDim: positiveInt.optional(),
    })
    .default({}),
  vocabSize: z.number().int().min(261).max(1_000_000).default(4096),
  epochs: positiveInt.max(100_000).default(10),
  batchSize: z.number().int().min(2).max(65_536).default(256),
  lr: z.number().positive().default(5e-4),
  lrWarmupSteps: z.number().int().min(0).default(50),
  weightDecay: z.number().min(0).max(10).default(0.1),
  labelSmoothing: z.number().min(0).max(0.5).default(0),
  seed: z.number().int().min(0).default(1),
  cropScale: z.number().gt(0).max(1).default(1),
  flip: z.boolean().default(false),
  robust: z.enum(['none', 'nlip']).default('none'),
  robustMode: z.enum(['soft', 'weight']).default('soft'),
  warmupEpochs: z.number().int().min(0).default(2),
  noiseEma: z.number().min(0).lt(1).default(0.5),
  minSeparation: z.number().min(0).default(DEFAULT_MIN_SEPARATION),
  maxNoiseFraction: fraction.default(0.7),
  minNoiseFraction: fraction.default(0),
  gateLatch: z.boolean().default(true),
  robustFloor: fraction.default(0),
  thumbnailSpread: z.number().min(0).max(100).default(0),
  robustThreshold: fraction.nullable().default(null),
  varianceFloor: z.number().positive().max(1).default(5e-4),
  consistencyWeight: fraction.default(0),
  noiseSignal: z.enum(NOISE_SIGNAL_CHOICES).default('auto'),
  groundingThumbnails: z.boolean().default(false),
  agreementNeighbours: z.union([z.literal('auto'), z.number().int().min(0).max(1000)]).default('auto'),
  multiPositive: z.boolean().default(true),
  relabel: z.boolean().default(true),
  agreementScore: z.enum(['gap', 'joint']).default('joint'),
  relabelThreshold: fraction.default(0.5),
  relabelSource: z.enum(['model', 'neighbours', 'joint']).default('neighbours'),
  completion: z.boolean().default(false),
  completionThreshold: fraction.default(0.5),
  completionTopK: positiveInt.max(16).default(3),
  completionWeight: z.number().min(0).max(10).default(0.5),
  conceptVocabSize: positiveInt.max(100_000).default(512),
  checkpointEvery: positiveInt.default(500),
  resume: z.boolean().default(false),
  maxSteps: positiveInt.nullable().default(null),
  memoryLimitMb: positiveInt.default(2048),
  onProgress: z.custom<(p: TrainProgress) => void>((v) => typeof v === 'function').optional(),
  onNoise: z.custom<(e: NoiseEpoch) => void>((v) => typeof v === 'function').optional(),
  signal: z.custom<AbortSignal>((v) => v instanceof AbortSignal).optional(),
});

/** Train options with every default filled in. */
export type ResolvedTrainOptions = z.output<typeof trainSchema>;

/**
 * The options that act only on nlip's noise estimate and that {@link resolveTrainOptions} refuses
 * without it, each at its off value: what a vanilla run takes from a recipe shared with nlip.
 */
const NLIP_ONLY_OFF = {
  completion: false,
  groundingThumbnails: false,
} as const satisfies Partial<TrainOptions>;

/**
 * The options only nlip reads (its noise estimate, how it acts on it, relabelling, completion): a
 * vanilla run trains the same whatever they are (a test trains vanilla with each one changed and
 * compares the weights), so a comparison's vanilla runs do not depend on them.
 */
export const NLIP_ONLY_OPTIONS = [
  'robustMode',
  'warmupEpochs',
  'noiseEma',
  'minSeparation',
  'maxNoiseFraction',
  'minNoiseFraction',
  'gateLatch',
  'robustFloor',
  'robustThreshold',
  'varianceFloor',
  'consistencyWeight',
  'noiseSignal',
  'groundingThumbnails',
  'agreementNeighbours',
  'multiPositive',
  'relabel',
  'agreementScore',
  'relabelThreshold',
  'relabelSource',
  'completion',
  'completionThreshold',
  'completionTopK',
  'completionWeight',
  'conceptVocabSize',
] as const satisfies ReadonlyArray<keyof ResolvedTrainOptions>;

/** Whether a pair's target has mass off its own caption for `thumbnailSpread` to place. */
function spreadsSomething(o: Pick<TrainOptions, 'labelSmoothing' | 'robust' | 'robustMode'>): boolean {
  return (o.labelSmoothing ?? 0) > 0 || (o.robust === 'nlip' && (o.robustMode ?? 'soft') === 'soft');
}

/**
 * A recipe shared with nlip as a vanilla run takes it: robust `none`, the nlip-only options off
 * ({@link NLIP_ONLY_OFF}), and the thumbnail spread kept only where label smoothing gives it
 * something to spread.
 */
export function vanillaRecipe<T extends Omit<TrainOptions, 'corpus' | 'pairs' | 'out'>>(
  recipe: T,
): T & { robust: 'none' } {
  const vanilla = { ...recipe, robust: 'none' as const, ...NLIP_ONLY_OFF };
  return spreadsSomething(vanilla) ? vanilla : { ...vanilla, thumbnailSpread: 0 };
}

/** Validates train options once; exactly one of `corpus` and `pairs` must be given. */
export function resolveTrainOptions(options: TrainOptions): ResolvedTrainOptions {
  const resolved = parseOptions(trainSchema, options, 'train');
  if ((resolved.corpus === undefined) === (resolved.pairs === undefined)) {
    throw new UsageError('ERR_NO_INPUT', 'Give the pairs to train on: --corpus DIR (one or more), or pairs in memory', {
      context: { stage: 'train' },
    });
  }
  if (resolved.completion && resolved.robust !== 'nlip') {
    throw new UsageError('ERR_INVALID_OPTION', "Option 'train.completion': noise completion needs robust 'nlip'", {
      context: { stage: 'train', option: 'completion' },
    });
  }
  if (resolved.thumbnailSpread > 0 && !spreadsSomething(resolved)) {
    throw new UsageError(
      'ERR_INVALID_OPTION',
      "Option 'train.thumbnailSpread': it spreads label smoothing or nlip's soft targets: it needs labelSmoothing > 0, or robust 'nlip' with robustMode 'soft'",
      { context: { stage: 'train', option: 'thumbnailSpread' } },
    );
  }
  if (resolved.groundingThumbnails && (resolved.robust !== 'nlip' || resolved.noiseSignal !== 'words')) {
    throw new UsageError(
      'ERR_INVALID_OPTION',
      "Option 'train.groundingThumbnails': thumbnails ground the words signal: it needs robust 'nlip' and noiseSignal 'words'",
      { context: { stage: 'train', option: 'groundingThumbnails' } },
    );
  }
  return resolved;
}

/** Progress of scoring. */
export interface ScoreProgress {
  phase: 'decode' | 'score' | 'agreement';
  done: number;
  total: number;
}

/** Options of {@link runScore}. */
export interface ScoreOptions {
  /** Corpus directory whose pairs are scored (every `ok` pair, filtered and duplicates included). */
  corpus: string;
  /** A checkpoint file, or a run directory holding `checkpoint.ckpt`. */
  checkpoint: string;
  /** Compute backend. @default 'auto' */
  backend?: BackendChoice;
  /** Pairs per scoring batch: each pair's loss is taken against the others of its batch. @default 256 */
  batchSize?: number;
  /** Seed of the random batches. @default 1 */
  seed?: number;
  /** Variance floor of the mixture. @default 5e-4 */
  varianceFloor?: number;
  /**
   * The per-pair signal the mixture is fitted to: `loss` (the pair's contrastive loss against the
   * others of its batch), `agreement` or `words` (training's signals of those names, see
   * `TrainOptions.noiseSignal`), or `auto`: `agreement` when the median caption is carried by at
   * least three pairs, else `loss` (the rule training's `auto` follows). @default 'auto'
   */
  noiseSignal?: (typeof NOISE_SIGNAL_CHOICES)[number];
  /** The `words` signal on the image embeddings and colour thumbnails side by side, as in training. @default false */
  groundingThumbnails?: boolean;
  /** Nearest images averaged with each image for the `agreement` signal; `auto` as in training. @default 'auto' */
  agreementNeighbours?: number | 'auto';
  /** The `agreement` signal's per-pair score, as in training. @default 'joint' */
  agreementScore?: 'gap' | 'joint';
  /** Also write `completed_caption` for pairs whose noise probability exceeds `completionThreshold`. @default true */
  completion?: boolean;
  /** @default 0.5 */
  completionThreshold?: number;
  /** @default 3 */
  completionTopK?: number;
  /** @default 512 */
  conceptVocabSize?: number;
  /** @default 2048 */
  memoryLimitMb?: number;
  onProgress?: (progress: ScoreProgress) => void;
  signal?: AbortSignal;
}

const scoreSchema = z.strictObject({
  corpus: z.string().min(1),
  checkpoint: z.string().min(1),
  backend: z.enum(BACKEND_CHOICES).default('auto'),
  batchSize: z.number().int().min(2).max(65_536).default(256),
  seed: z.number().int().min(0).default(1),
  varianceFloor: z.number().positive().max(1).default(5e-4),
  noiseSignal: z.enum(NOISE_SIGNAL_CHOICES).default('auto'),
  groundingThumbnails: z.boolean().default(false),
  agreementNeighbours: z.union([z.literal('auto'), z.number().int().min(0).max(1000)]).default('auto'),
  agreementScore: z.enum(['gap', 'joint']).default('joint'),
  completion: z.boolean().default(true),
  completionThreshold: fraction.default(0.5),
  completionTopK: positiveInt.max(16).default(3),
  conceptVocabSize: positiveInt.max(100_000).default(512),
  memoryLimitMb: positiveInt.default(2048),
  onProgress: z.custom<(p: ScoreProgress) => void>((v) => typeof v === 'function').optional(),
  signal: z.custom<AbortSignal>((v) => v instanceof AbortSignal).optional(),
});

export type ResolvedScoreOptions = z.output<typeof scoreSchema>;

export function resolveScoreOptions(options: ScoreOptions): ResolvedScoreOptions {
  const resolved = parseOptions(scoreSchema, options, 'score');
  if (resolved.groundingThumbnails && resolved.noiseSignal !== 'words') {
    throw new UsageError(
      'ERR_INVALID_OPTION',
      "Option 'score.groundingThumbnails': thumbnails ground the words signal: it needs noiseSignal 'words'",
      { context: { stage: 'score', option: 'groundingThumbnails' } },
    );
  }
  return resolved;
}
