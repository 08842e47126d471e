/**
 * Caption text shared by the stages: one normalisation (filter's frequency rules, dedup's caption
 * leakage and train's tokenizer all agree on what "the same alt-text" means) and one
 * language-agnostic word segmentation.
 */

const WHITESPACE = /\s+/gu;

/**
 * The normalised form of an alt-text: Unicode NFKC, lower case, runs of whitespace collapsed to
 * one space, trimmed. `"  Ｃａｔ\n PHOTO "` becomes `"cat photo"`.
 */
export function normaliseCaption(caption: string): string {
  return caption.normalize('NFKC').toLowerCase().replace(WHITESPACE, ' ').trim();
}

const segmenter = new Intl.Segmenter('und', { granularity: 'word' });
const PICTOGRAPHIC = /\p{Extended_Pictographic}|\p{Regional_Indicator}/u;

/**
 * The unigrams of a (normalised) caption, in order: the word-like segments of Unicode word
 * segmentation (UAX #29 through `Intl.Segmenter`, with ICU's dictionaries for Chinese, Japanese and
 * Thai) plus emoji, which the segmenter returns as non-word segments but which carry meaning in
 * alt-texts. Punctuation and spaces are not tokens.
 */
export function wordTokens(text: string): string[] {
  const tokens: string[] = [];
  for (const s of segmenter.segment(text)) {
    if (s.isWordLike || PICTOGRAPHIC.test(s.segment)) tokens.push(s.segment);
  }
  return tokens;
}
