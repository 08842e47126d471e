import { z } from 'zod';
import { UsageError } from '../corpus/errors.ts';
import { parseOptions } from '../corpus/options.ts';
import type { NsfwClassifier } from './nsfw.ts';

/**
 * The rules in the fixed order in which they are checked; a pair's reason is the first one it
 * fails. ALIGN's order (image rules, then shared alt-texts, rare tokens, length), except that the
 * pornography classifier comes last: it is the one costly rule, so it only sees images that pass
 * all the others.
 */
export const RULES = [
  'image_size',
  'aspect_ratio',
  'image_captions',
  'shared_caption',
  'rare_token',
  'caption_words',
  'caption_chars',
  'noise_prob',
  'nsfw',
] as const;
export type RuleName = (typeof RULES)[number];

/**
 * The reason recorded in `filter_decisions.reason`: the rule name, or for the word-count rule which
 * side it failed (`too_few_words`, `too_many_words`).
 */
export type FilterReason = Exclude<RuleName, 'caption_words'> | 'too_few_words' | 'too_many_words';

/** Progress of a filter run, for a progress bar. */
export interface FilterProgress {
  phase: 'count' | 'vocabulary' | 'decide' | 'nsfw' | 'apply';
  done: number;
  /** Undefined when the size of the phase is not known. */
  total?: number;
}

/** Options of {@link runFilter}. Thresholds default to ALIGN's; `preset` switches to DataComp's basic filter. */
export interface FilterOptions {
  /** Corpus directories, counted together as one corpus and each given its own decisions. */
  corpus: string | string[];
  /**
   * `align` (ALIGN's rules, strict bounds) or `datacomp-basic` (> 2 words, > 5 characters, shorter
   * side >= 200, aspect <= 3, no frequency rules). Options given explicitly override the preset.
   * @default 'align'
   */
  preset?: 'align' | 'datacomp-basic';
  /** The shorter side of the original image must exceed this (or reach it, with `inclusiveBounds`). @default 200 */
  minSide?: number;
  /**
   * The aspect ratio (long / short side) must stay below this (or reach it, with `inclusiveBounds`);
   * above 1 unless `inclusiveBounds`, since no ratio is below 1. @default 3
   */
  maxAspect?: number;
  /** Bounds of `minSide` and `maxAspect` are inclusive (DataComp) instead of strict (ALIGN). @default false */
  inclusiveBounds?: boolean;
  /** Fewest unigrams a normalised caption may have; at most `maxWords` (unless that is 0). @default 3 */
  minWords?: number;
  /** Most unigrams a normalised caption may have (0: no limit). @default 20 */
  maxWords?: number;
  /** Fewest characters a normalised caption may have (DataComp's > 5 is 6). @default 0 */
  minChars?: number;
  /** A normalised caption shared by more distinct images than this is dropped (0: rule off). @default 10 */
  maxImagesPerCaption?: number;
  /** An image (by sha256) with more distinct normalised captions than this is dropped (0: rule off). @default 1000 */
  maxCaptionsPerImage?: number;
  /** The vocabulary holds the this many most frequent unigrams and bigrams (0: rule off). @default 100000000 */
  vocabSize?: number;
  /** A unigram or bigram seen fewer times than this in the raw corpus is rare. @default 1 */
  vocabMinCount?: number;
  /** Drop pairs whose noise probability (written by `altforge score`) exceeds this; unset: rule off. */
  maxNoiseProb?: number;
  /**
   * The pornography classifier: `nsfwjs` (MobileNetV2 from the nsfwjs package on the tfjs wasm
   * backend), `none` (rule off), or your own {@link NsfwClassifier}.
   * @default 'nsfwjs'
   */
  nsfw?: 'nsfwjs' | 'none' | NsfwClassifier;
  /** An image whose pornography score (P(porn) + P(hentai)) exceeds this is dropped. @default 0.5 */
  nsfwThreshold?: number;
  /** Rules to leave out, by name. @default [] */
  skipRules?: RuleName[];
  /** Compute and report, but write nothing. @default false */
  dryRun?: boolean;
  /** Examples listed per rule in the report. @default 5 */
  examples?: number;
  /** Distinct tokens counted in memory (12 bytes each, about 200 MB at the default) before they spill, sorted, to a run file beside the manifest. @default 8000000 */
  maxTokensInMemory?: number;
  onProgress?: (progress: FilterProgress) => void;
  signal?: AbortSignal;
}

const nonNegInt = z.number().int().min(0);
const classifier = z.custom<NsfwClassifier>(
  (v) => typeof v === 'object' && v !== null && typeof (v as NsfwClassifier).load === 'function',
  { message: "expected 'nsfwjs', 'none' or a classifier with a load() method" },
);

const schema = z.strictObject({
  corpus: z
    .union([z.string().min(1), z.array(z.string().min(1)).min(1)])
    .transform((v) => (Array.isArray(v) ? v : [v])),
  preset: z.enum(['align', 'datacomp-basic']).default('align'),
  minSide: nonNegInt.optional(),
  maxAspect: z.number().min(1).optional(),
  inclusiveBounds: z.boolean().optional(),
  minWords: nonNegInt.optional(),
  maxWords: nonNegInt.optional(),
  minChars: nonNegInt.optional(),
  maxImagesPerCaption: nonNegInt.optional(),
  maxCaptionsPerImage: nonNegInt.optional(),
  vocabSize: nonNegInt.optional(),
  vocabMinCount: z.number().int().min(1).default(1),
  maxNoiseProb: z.number().min(0).max(1).optional(),
  nsfw: z.union([z.enum(['nsfwjs', 'none']), classifier]).default('nsfwjs'),
  nsfwThreshold: z.number().min(0).max(1).default(0.5),
  skipRules: z.array(z.enum(RULES)).default([]),
  dryRun: z.boolean().default(false),
  examples: z.number().int().min(0).max(1000).default(5),
  maxTokensInMemory: z.number().int().min(1000).default(8_000_000),
  onProgress: z.custom<(p: FilterProgress) => void>((v) => typeof v === 'function').optional(),
  signal: z.custom<AbortSignal>((v) => v instanceof AbortSignal).optional(),
});

const PRESETS = {
  align: {
    minSide: 200,
    maxAspect: 3,
    inclusiveBounds: false,
    minWords: 3,
    maxWords: 20,
    minChars: 0,
    maxImagesPerCaption: 10,
    maxCaptionsPerImage: 1000,
    vocabSize: 100_000_000,
  },
  'datacomp-basic': {
    minSide: 200,
    maxAspect: 3,
    inclusiveBounds: true,
    minWords: 3,
    maxWords: 0,
    minChars: 6,
    maxImagesPerCaption: 0,
    maxCaptionsPerImage: 0,
    vocabSize: 0,
  },
} as const;

/** Options after validation, with the preset applied. */
export type ResolvedFilterOptions = Omit<z.output<typeof schema>, keyof (typeof PRESETS)['align']> & {
  -readonly [K in keyof (typeof PRESETS)['align']]: K extends 'inclusiveBounds' ? boolean : number;
};

/**
 * Validates options once at the entry and applies the preset's defaults. Bounds that no pair can
 * meet are refused, the preset's values counted (`minWords` above `maxWords`; a strict `maxAspect`
 * of 1): the run would drop every pair without a word.
 */
export function resolveFilterOptions(options: FilterOptions): ResolvedFilterOptions {
  const parsed = parseOptions(schema, options, 'filter');
  const preset = PRESETS[parsed.preset];
  const out = { ...parsed } as Record<string, unknown>;
  for (const [k, v] of Object.entries(preset)) if (out[k] === undefined) out[k] = v;
  const o = out as ResolvedFilterOptions;
  const applies = (rule: RuleName) => !o.skipRules.includes(rule);
  if (applies('caption_words') && o.maxWords > 0 && o.minWords > o.maxWords) {
    throw new UsageError(
      'ERR_INVALID_OPTION',
      `Option 'filter.minWords': expected at most maxWords (${o.maxWords}), got \`${o.minWords}\`: no caption could pass`,
      { context: { stage: 'filter', option: 'minWords' } },
    );
  }
  // Long side over short side is at least 1: a strict bound of 1 leaves no image.
  if (applies('aspect_ratio') && !o.inclusiveBounds && o.maxAspect <= 1) {
    throw new UsageError(
      'ERR_INVALID_OPTION',
      `Option 'filter.maxAspect': expected above 1, or inclusiveBounds to keep square images, got \`${o.maxAspect}\`: no image could pass`,
      { context: { stage: 'filter', option: 'maxAspect' } },
    );
  }
  return o;
}
