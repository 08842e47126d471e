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
 * Every rule the pair fails, in rule order, as reasons (nsfw excluded: it is decided after the
 * classifier ran on the pairs that pass all the others). The first element is the pair's reason.
 */
export function failures(f: PairFacts, rules: RuleSet): FilterReason[] {
  const o = rules.options;
  const on = rules.active;
  const out: FilterReason[] = [];
  if (on.has('image_size') && failsImageSize(f.width, f.height, o)) out.push('image_size');
  if (on.has('aspect_ratio') && failsAspect(f.width, f.height, o)) out.push('aspect_ratio');
  if (on.has('image_captions') && f.imageCaptions > o.maxCaptionsPerImage) out.push('image_captions');
  if (on.has('shared_caption') && f.captionImages > o.maxImagesPerCaption) out.push('shared_caption');
  if (on.has('rare_token') && f.rareAt >= 0) out.push('rare_token');
  if (on.has('caption_words')) {
    if (f.words < o.minWords) out.push('too_few_words');
    else if (o.maxWords > 0 && f.words > o.maxWords) out.push('too_many_words');
  }
  if (on.has('caption_chars') && f.chars < o.minChars) out.push('caption_chars');
  if (on.has('noise_prob') && f.noiseProb !== null && f.noiseProb > (o.maxNoiseProb ?? 1)) out.push('noise_prob');
  return out;
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
