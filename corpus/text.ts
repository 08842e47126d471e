/**
 * Caption text shared by the stages: one normalisation (filter's frequency rules, dedup's caption
 * leakage and train's tokenizer all agree on what "the same alt-text" means) and one
 * language-agnostic word segmentation.
 */

const WHITESPACE = /\s+/gu;
const NON_ASCII_OR_SPACE = /[^\x21-\x7e ]|  |^ | $/;

/**
 * The normalised form of an alt-text: Unicode NFKC, lower case, runs of whitespace collapsed to
 * one space, trimmed. `"  Ｃａｔ\n PHOTO "` becomes `"cat photo"`.
 */
export function normaliseCaption(caption: string): string {
  // Printable ASCII with single inner spaces is already NFKC and collapsed: only the case changes.
  if (!NON_ASCII_OR_SPACE.test(caption)) return caption.toLowerCase();
  return caption.normalize('NFKC').toLowerCase().replace(WHITESPACE, ' ').trim();
}

const segmenter = new Intl.Segmenter('und', { granularity: 'word' });
const PICTOGRAPHIC = /\p{Extended_Pictographic}|\p{Regional_Indicator}/u;
const NON_ASCII = /[^\u0000-\u007f]/u; // oxlint-disable-line no-control-regex

/**
 * The unigrams of a (normalised) caption, in order: the word-like segments of Unicode word
 * segmentation (UAX #29 through `Intl.Segmenter`, with ICU's dictionaries for Chinese, Japanese and
 * Thai) plus emoji, which the segmenter returns as non-word segments but which carry meaning in
 * alt-texts. Punctuation and spaces are not tokens.
 *
 * ASCII text takes a hand-written path that returns exactly what the segmenter returns (checked
 * against it on random strings in the tests) at ~20x its speed: the filter tokenises every caption
 * of a corpus twice.
 */
export function wordTokens(text: string): string[] {
  if (!NON_ASCII.test(text)) return asciiWordTokens(text);
  const tokens: string[] = [];
  for (const s of segmenter.segment(text)) {
    if (s.isWordLike || PICTOGRAPHIC.test(s.segment)) tokens.push(s.segment);
  }
  return tokens;
}

// UAX #29 word classes of the ASCII characters that matter.
const OTHER = 0;
const LETTER = 1; // ALetter
const DIGIT = 2; // Numeric
const UNDERSCORE = 3; // ExtendNumLet
const MID_LETTER = 4; // ':' joins letters only
const MID_NUM_LET = 5; // '.' and "'" join letters or digits
const MID_NUM = 6; // ',' and ';' join digits only
const ASCII_CLASS = new Uint8Array(128);
for (let c = 65; c <= 90; c++) ASCII_CLASS[c] = LETTER;
for (let c = 97; c <= 122; c++) ASCII_CLASS[c] = LETTER;
for (let c = 48; c <= 57; c++) ASCII_CLASS[c] = DIGIT;
ASCII_CLASS[95] = UNDERSCORE;
ASCII_CLASS[58] = MID_LETTER;
ASCII_CLASS[46] = MID_NUM_LET;
ASCII_CLASS[39] = MID_NUM_LET;
ASCII_CLASS[44] = MID_NUM;
ASCII_CLASS[59] = MID_NUM;

/**
 * UAX #29 word boundaries restricted to ASCII: letters, digits and underscores always join
 * (WB5, WB8-WB10, WB13a/b); a single mid character joins two letters (WB6/7: `:` `.` `'`) or two
 * digits (WB11/12: `,` `;` `.` `'`). As in ICU, a segment is word-like when it holds a letter or a
 * digit, or is a run of two or more underscores.
 */
function asciiWordTokens(text: string): string[] {
  const tokens: string[] = [];
  const n = text.length;
  let i = 0;
  while (i < n) {
    let cls = ASCII_CLASS[text.charCodeAt(i)]!;
    if (cls === OTHER || cls >= MID_LETTER) {
      i++;
      continue;
    }
    const start = i;
    let prev = cls;
    let wordLike = cls !== UNDERSCORE;
    i++;
    while (i < n) {
      cls = ASCII_CLASS[text.charCodeAt(i)]!;
      if (cls !== OTHER && cls < MID_LETTER) {
        prev = cls;
        if (cls !== UNDERSCORE) wordLike = true;
        i++;
        continue;
      }
      if (cls >= MID_LETTER && i + 1 < n) {
        const next = ASCII_CLASS[text.charCodeAt(i + 1)]!;
        const joinsLetters = prev === LETTER && next === LETTER && cls !== MID_NUM;
        const joinsDigits = prev === DIGIT && next === DIGIT && cls !== MID_LETTER;
        if (joinsLetters || joinsDigits) {
          prev = next;
          i += 2;
          continue;
        }
      }
      break;
    }
    if (wordLike || i - start > 1) tokens.push(text.slice(start, i));
  }
  return tokens;
}
