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
  if (spans.length < text.length + 2) spans = new Int32Array(2 * (text.length + 2));
  const n = scanAscii(text, spans, null, 0);
  const tokens: string[] = [];
  for (let k = 0; k < n; k++) tokens.push(text.slice(spans[2 * k]!, spans[2 * k + 1]!));
  return tokens;
}

let spans = new Int32Array(256);

const SPACE = 32;
const LANE_A = 0x811c9dc5;
const LANE_B = 0x9747b28c;
const PRIME_A = 0x01000193;
const PRIME_B = 0x5bd1e995;

/** MurmurHash3's 32-bit finaliser: spreads every input bit over the output. */
export function fmix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * A 52-bit hash of a string, an exact integer in a JS number: two 32-bit FNV-1a-style lanes over
 * its UTF-16 code units, each finished by murmur3's mixer. Among 10M distinct strings the chance
 * that any two collide is about 1 %. The filter counts captions and tokens by it.
 */
export function textHash52(text: string): number {
  let a = LANE_A;
  let b = LANE_B;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    a = Math.imul(a ^ c, PRIME_A);
    b = Math.imul(b ^ c, PRIME_B);
  }
  return fmix(a) * 0x100000 + (fmix(b) >>> 12);
}

// What the last scanAscii() found besides the unigrams.
let scannedPlain = false;
let scannedCaptionHash = 0;

/**
 * One pass over an ASCII text: its unigrams (the hand-written UAX #29 path of {@link wordTokens})
 * with, when asked, their `[start, end)` in `spanOut` and the {@link textHash52} of each one
 * lower-cased in `hashOut[at + k]`; and, in `scannedPlain` and `scannedCaptionHash`, whether the
 * text is plain (printable ASCII, single inner spaces, nothing at either end: normalisation only
 * lower-cases it) and the hash of it lower-cased. Returns the number of unigrams, or -1 as soon as
 * a character outside ASCII shows up.
 */
function scanAscii(text: string, spanOut: Int32Array | null, hashOut: Float64Array | null, at: number): number {
  const n = text.length;
  let ca = LANE_A;
  let cb = LANE_B;
  let plain = true;
  let last = SPACE;
  let count = 0;
  let i = 0;
  while (i < n) {
    let c = text.charCodeAt(i);
    if (c > 127) return -1;
    let cls = ASCII_CLASS[c]!;
    if (cls === OTHER || cls >= MID_LETTER) {
      // Not a letter: no case to lower.
      if (c === SPACE ? last === SPACE : c < 0x21 || c > 0x7e) plain = false;
      ca = Math.imul(ca ^ c, PRIME_A);
      cb = Math.imul(cb ^ c, PRIME_B);
      last = c;
      i++;
      continue;
    }
    const start = i;
    if (c >= 65 && c <= 90) c += 32;
    let ta = Math.imul(LANE_A ^ c, PRIME_A);
    let tb = Math.imul(LANE_B ^ c, PRIME_B);
    ca = Math.imul(ca ^ c, PRIME_A);
    cb = Math.imul(cb ^ c, PRIME_B);
    let prev = cls;
    let wordLike = cls !== UNDERSCORE;
    i++;
    while (i < n) {
      c = text.charCodeAt(i);
      if (c > 127) return -1;
      cls = ASCII_CLASS[c]!;
      if (cls !== OTHER && cls < MID_LETTER) {
        prev = cls;
        if (cls !== UNDERSCORE) wordLike = true;
        if (c >= 65 && c <= 90) c += 32;
        ta = Math.imul(ta ^ c, PRIME_A);
        tb = Math.imul(tb ^ c, PRIME_B);
        ca = Math.imul(ca ^ c, PRIME_A);
        cb = Math.imul(cb ^ c, PRIME_B);
        i++;
        continue;
      }
      if (cls >= MID_LETTER && i + 1 < n) {
        let d = text.charCodeAt(i + 1);
        if (d > 127) return -1;
        const next = ASCII_CLASS[d]!;
        const joinsLetters = prev === LETTER && next === LETTER && cls !== MID_NUM;
        const joinsDigits = prev === DIGIT && next === DIGIT && cls !== MID_LETTER;
        if (joinsLetters || joinsDigits) {
          if (d >= 65 && d <= 90) d += 32;
          ta = Math.imul(Math.imul(ta ^ c, PRIME_A) ^ d, PRIME_A);
          tb = Math.imul(Math.imul(tb ^ c, PRIME_B) ^ d, PRIME_B);
          ca = Math.imul(Math.imul(ca ^ c, PRIME_A) ^ d, PRIME_A);
          cb = Math.imul(Math.imul(cb ^ c, PRIME_B) ^ d, PRIME_B);
          prev = next;
          i += 2;
          continue;
        }
      }
      break;
    }
    // Letters, digits, underscores and mid characters are all printable.
    last = 0;
    if (wordLike || i - start > 1) {
      if (spanOut !== null) {
        spanOut[2 * count] = start;
        spanOut[2 * count + 1] = i;
      }
      if (hashOut !== null) hashOut[at + count] = fmix(ta) * 0x100000 + (fmix(tb) >>> 12);
      count++;
    }
  }
  scannedPlain = plain && (last !== SPACE || n === 0);
  scannedCaptionHash = fmix(ca) * 0x100000 + (fmix(cb) >>> 12);
  return count;
}

/**
 * Hashes of a caption's words without building any string, for counting at scale. For a plain
 * caption (printable ASCII with single inner spaces and nothing at either end, which
 * {@link normaliseCaption} only lower-cases), {@link hash} writes `textHash52` of each unigram of
 * the normalised caption (the tokens of {@link wordTokens}, in order) to `out[at + k]`, sets
 * {@link caption} to `textHash52` of the normalised caption, and returns the number of unigrams.
 * For any other caption it returns -1: normalise and tokenise it the ordinary way.
 */
export class CaptionHasher {
  /** `textHash52(normaliseCaption(caption))` of the last caption hashed successfully. */
  caption = 0;

  /** `out` needs room for `caption.length / 2 + 1` values from `at`. */
  hash(caption: string, out: Float64Array, at: number): number {
    const words = scanAscii(caption, null, out, at);
    if (words < 0 || !scannedPlain) return -1;
    this.caption = scannedCaptionHash;
    return words;
  }
}
