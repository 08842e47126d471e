/**
 * The filter's rules as one pure function over the facts of a pair, checked in the fixed order of
 * {@link RULES}. The facts that need the whole corpus (how many images share a caption, the
 * vocabulary) are computed by the first pass and looked up here.
 */
import type { FilterReason, ResolvedFilterOptions, RuleName } from './options.ts';

/** What the rules need to know about one pair. */
export interface PairFacts {
  /** Original (pre-resize) image size. */
  width: number;
  height: number;
  /** Unigrams of the normalised caption. */
  words: number;
  /** Characters (code points) of the normalised caption. */
  chars: number;
  /** Distinct images whose normalised caption is this one's (only known exactly above the limit). */
  captionImages: number;
  /** Distinct normalised captions of this pair's image (only known exactly above the limit). */
  imageCaptions: number;
  /** Where the caption's first unigram or bigram outside the vocabulary is; -1 when none. */
  rareAt: number;
  /** Noise probability written by `altforge score`, null when not scored. */
  noiseProb: number | null;
}

/** Thresholds and the set of active rules, resolved once per run. */
export interface RuleSet {
  active: Set<RuleName>;
  options: ResolvedFilterOptions;
}

/** Whether the image fails the size rule (shorter side must exceed, or reach when inclusive, `minSide`). */
export function failsImageSize(width: number, height: number, o: ResolvedFilterOptions): boolean {
  const short = Math.min(width, height);
  return o.inclusiveBounds ? short < o.minSide : short <= o.minSide;
}

/** Whether the image fails the aspect rule (long/short must stay below, or reach when inclusive, `maxAspect`). */
export function failsAspect(width: number, height: number, o: ResolvedFilterOptions): boolean {
  const short = Math.min(width, height);
  if (short <= 0) return true;
  const ratio = Math.max(width, height) / short;
  return o.inclusiveBounds ? ratio > o.maxAspect : ratio >= o.maxAspect;
}

/**
 * The reasons in rule order: bit `i` of a {@link failureMask} is `REASON_ORDER[i]`, so a pair's
 * reason is its mask's lowest set bit.
 */
export const REASON_ORDER: readonly FilterReason[] = [
  'image_size',
  'aspect_ratio',
  'image_captions',
  'shared_caption',
  'rare_token',
  'too_few_words',
  'too_many_words',
  'caption_chars',
  'noise_prob',
  'nsfw',
];

/**
 * Compiles the rule set into a function giving every rule a pair fails as a bit mask over
 * {@link REASON_ORDER} (nsfw excluded: it is decided after the classifier ran on the pairs that
 * pass all the others). The thresholds are resolved once, so the second pass costs a few
 * comparisons a pair.
 */
export function failureMask(rules: RuleSet): (f: PairFacts) => number {
  const o = rules.options;
  const on = rules.active;
  const size = on.has('image_size');
  const aspect = on.has('aspect_ratio');
  const imageCaptions = on.has('image_captions');
  const shared = on.has('shared_caption');
  const rare = on.has('rare_token');
  const words = on.has('caption_words');
  const chars = on.has('caption_chars');
  const noise = on.has('noise_prob');
  const maxNoise = o.maxNoiseProb ?? 1;
  return (f) => {
    let mask = 0;
    if (size && failsImageSize(f.width, f.height, o)) mask |= 1;
    if (aspect && failsAspect(f.width, f.height, o)) mask |= 2;
    if (imageCaptions && f.imageCaptions > o.maxCaptionsPerImage) mask |= 4;
    if (shared && f.captionImages > o.maxImagesPerCaption) mask |= 8;
    if (rare && f.rareAt >= 0) mask |= 16;
    if (words) {
      if (f.words < o.minWords) mask |= 32;
      else if (o.maxWords > 0 && f.words > o.maxWords) mask |= 64;
    }
    if (chars && f.chars < o.minChars) mask |= 128;
    if (noise && f.noiseProb !== null && f.noiseProb > maxNoise) mask |= 256;
    return mask;
  };
}

/**
 * Every rule the pair fails, in rule order, as reasons (nsfw excluded: it is decided after the
 * classifier ran on the pairs that pass all the others). The first element is the pair's reason.
 */
export function failures(f: PairFacts, rules: RuleSet): FilterReason[] {
  const mask = failureMask(rules)(f);
  return REASON_ORDER.filter((_r, i) => (mask & (1 << i)) !== 0);
}

/** The rules a run applies: those whose threshold turns them on and that were not skipped. */
export function activeRules(o: ResolvedFilterOptions, nsfwOn: boolean): Set<RuleName> {
  const on = new Set<RuleName>(['image_size', 'aspect_ratio', 'caption_words']);
  if (o.minChars > 0) on.add('caption_chars');
  if (o.maxImagesPerCaption > 0) on.add('shared_caption');
  if (o.maxCaptionsPerImage > 0) on.add('image_captions');
  if (o.vocabSize > 0) on.add('rare_token');
  if (o.maxNoiseProb !== undefined) on.add('noise_prob');
  if (nsfwOn) on.add('nsfw');
  for (const r of o.skipRules) on.delete(r);
  return on;
}
