/**
 * The text tower's tokenizer: byte-pair encoding learned from the corpus captions, over the words
 * of `wordTokens(normaliseCaption(caption))` (so every script the Unicode word segmenter knows,
 * emoji included), with a byte fallback for characters the training captions did not contain.
 * It is plain data (`toJSON` / `Tokenizer.fromJSON`) and travels inside every checkpoint.
 */
import { normaliseCaption, wordTokens } from '../corpus/text.ts';
import { UsageError } from '../corpus/errors.ts';

/** Marks the start of a word (SentencePiece's convention): `cat` is learned as `▁cat`. */
const WORD_START = '\u2581';
/** Ids of the special tokens; 0 is padding, as the text tower expects. */
export const PAD_ID = 0;
export const UNK_ID = 1;
export const BOS_ID = 2;
export const EOS_ID = 3;
const SPECIALS = ['<pad>', '<unk>', '<bos>', '<eos>'];
const BYTE_OFFSET = SPECIALS.length;
const FIRST_SYMBOL_ID = BYTE_OFFSET + 256;

/** The serialised tokenizer, as stored in a checkpoint. */
export interface TokenizerJSON {
  kind: 'altforge-bpe';
  version: 1;
  /** Single characters (code points) of the base vocabulary, `▁` first. */
  alphabet: string[];
  /** Merges in the order they were learned; each adds the token `a + b`. */
  merges: Array<[string, string]>;
}

/** Options of {@link learnTokenizer}. */
export interface LearnTokenizerOptions {
  /** Size of the whole vocabulary: 4 specials, 256 bytes, the alphabet and the merges. @default 4096 */
  vocabSize?: number;
  /** A character enters the alphabet when it occurs at least this often; rarer ones fall back to bytes. @default 2 */
  minCharFrequency?: number;
  /** A pair is merged only while it occurs at least this often. @default 2 */
  minPairFrequency?: number;
  /** Most distinct words learned from (the most frequent); bounds time and memory on big corpora. @default 200000 */
  maxWords?: number;
}

/** A learned BPE tokenizer. */
export class Tokenizer {
  readonly alphabet: readonly string[];
  readonly merges: ReadonlyArray<readonly [string, string]>;
  /** Token string to id, specials and bytes excluded. */
  private readonly ids = new Map<string, number>();
  /** `a\u0000b` to merge rank. */
  private readonly ranks = new Map<string, number>();
  private readonly wordCache = new Map<string, number[]>();

  constructor(json: TokenizerJSON) {
    this.alphabet = json.alphabet;
    this.merges = json.merges;
    let next = FIRST_SYMBOL_ID;
    for (const c of json.alphabet) this.ids.set(c, next++);
    json.merges.forEach(([a, b], rank) => {
      this.ranks.set(`${a}\u0000${b}`, rank);
      if (!this.ids.has(a + b)) this.ids.set(a + b, next++);
    });
    this.vocabSize = next;
  }

  /** Number of token ids (the model's `vocabSize`). */
  readonly vocabSize: number;

  /** Rebuilds a tokenizer from {@link Tokenizer.toJSON}; refuses anything else. */
  static fromJSON(json: unknown): Tokenizer {
    const j = json as Partial<TokenizerJSON> | null;
    if (
      j === null ||
      typeof j !== 'object' ||
      j.kind !== 'altforge-bpe' ||
      j.version !== 1 ||
      !Array.isArray(j.alphabet) ||
      !Array.isArray(j.merges)
    ) {
      throw new UsageError('ERR_BAD_TOKENIZER', 'Not an altforge tokenizer (kind altforge-bpe, version 1)');
    }
    return new Tokenizer(j as TokenizerJSON);
  }

  toJSON(): TokenizerJSON {
    return {
      kind: 'altforge-bpe',
      version: 1,
      alphabet: [...this.alphabet],
      merges: this.merges.map(([a, b]) => [a, b]),
    };
  }

  /** The string of a token id (`<0xE2>` for a byte, `<pad>` for padding). */
  token(id: number): string {
    if (id < BYTE_OFFSET) return SPECIALS[id] ?? '<unk>';
    if (id < FIRST_SYMBOL_ID) return `<0x${(id - BYTE_OFFSET).toString(16).toUpperCase().padStart(2, '0')}>`;
    for (const [token, tid] of this.ids) if (tid === id) return token;
    return '<unk>';
  }

  /** The token ids of one word (already normalised), `▁` included. */
  encodeWord(word: string): number[] {
    const cached = this.wordCache.get(word);
    if (cached !== undefined) return cached;
    let symbols = [WORD_START, ...Array.from(word)];
    // Greedy BPE: merge the lowest-ranked adjacent pair until none is a known merge.
    for (;;) {
      let best = -1;
      let bestRank = Infinity;
      for (let i = 0; i + 1 < symbols.length; i++) {
        const rank = this.ranks.get(`${symbols[i]}\u0000${symbols[i + 1]}`);
        if (rank !== undefined && rank < bestRank) {
          bestRank = rank;
          best = i;
        }
      }
      if (best < 0) break;
      const merged: string[] = [];
      const [a, b] = this.merges[bestRank] as readonly [string, string];
      for (let i = 0; i < symbols.length; i++) {
        if (i + 1 < symbols.length && symbols[i] === a && symbols[i + 1] === b) {
          merged.push(a + b);
          i++;
        } else merged.push(symbols[i] as string);
      }
      symbols = merged;
    }
    const ids: number[] = [];
    for (const s of symbols) {
      const id = this.ids.get(s);
      if (id !== undefined) ids.push(id);
      else for (const byte of Buffer.from(s, 'utf8')) ids.push(BYTE_OFFSET + byte);
    }
    if (this.wordCache.size < 100_000) this.wordCache.set(word, ids);
    return ids;
  }

  /** The token ids of a caption, without specials. */
  tokenize(caption: string): number[] {
    const ids: number[] = [];
    for (const word of wordTokens(normaliseCaption(caption))) ids.push(...this.encodeWord(word));
    return ids;
  }

  /**
   * A caption as a fixed-length row for the text tower: `<bos>`, tokens, `<eos>`, then padding (0).
   * A long caption is cut so that `<eos>` still ends it.
   */
  encode(caption: string, contextLength: number, out = new Int32Array(contextLength)): Int32Array {
    if (contextLength < 2) throw new RangeError('contextLength must be at least 2');
    out.fill(PAD_ID);
    const ids = this.tokenize(caption);
    const n = Math.min(ids.length, contextLength - 2);
    out[0] = BOS_ID;
    for (let i = 0; i < n; i++) out[i + 1] = ids[i] as number;
    out[n + 1] = EOS_ID;
    return out;
  }

  /** Text of token ids (specials dropped, bytes reassembled): the inverse of {@link tokenize} up to spacing. */
  decode(ids: ArrayLike<number>): string {
    const bytes: number[] = [];
    const id2token = new Map<number, string>();
    for (const [token, id] of this.ids) id2token.set(id, token);
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i] as number;
      if (id < BYTE_OFFSET) continue;
      if (id < FIRST_SYMBOL_ID) bytes.push(id - BYTE_OFFSET);
      else bytes.push(...Buffer.from(id2token.get(id) ?? '', 'utf8'));
    }
    return Buffer.from(bytes).toString('utf8').split(WORD_START).join(' ').trim();
  }
}

/**
 * Learns a BPE tokenizer from captions: counts the words, keeps characters seen at least
 * `minCharFrequency` times, then merges the most frequent adjacent pair (ties: the pair first
 * seen) until the vocabulary is full or no pair is frequent enough. Deterministic for a given
 * list of captions.
 */
export function learnTokenizer(captions: Iterable<string>, options: LearnTokenizerOptions = {}): Tokenizer {
  const vocabSize = options.vocabSize ?? 4096;
  const minChar = options.minCharFrequency ?? 2;
  const minPair = options.minPairFrequency ?? 2;
  const maxWords = options.maxWords ?? 200_000;
  if (!Number.isInteger(vocabSize) || vocabSize < FIRST_SYMBOL_ID + 1) {
    throw new UsageError(
      'ERR_INVALID_OPTION',
      `Option 'tokenizer.vocabSize': expected at least ${FIRST_SYMBOL_ID + 1}, got \`${vocabSize}\``,
    );
  }
  const wordCounts = new Map<string, number>();
  for (const caption of captions) {
    for (const w of wordTokens(normaliseCaption(caption))) wordCounts.set(w, (wordCounts.get(w) ?? 0) + 1);
  }
  const words = [...wordCounts.entries()]
    .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
    .slice(0, maxWords);

  const charCounts = new Map<string, number>();
  for (const [w, n] of words) for (const c of Array.from(w)) charCounts.set(c, (charCounts.get(c) ?? 0) + n);
  const alphabet = [
    WORD_START,
    ...[...charCounts.entries()]
      .filter(([c, n]) => n >= minChar && c !== WORD_START)
      .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
      .map(([c]) => c),
  ].slice(0, vocabSize - FIRST_SYMBOL_ID);
  const known = new Set(alphabet);

  // Each word as a symbol list; characters outside the alphabet are barriers merges never cross.
  const seqs: Array<Array<string | null>> = words.map(([w]) =>
    [WORD_START, ...Array.from(w)].map((c) => (known.has(c) ? c : null)),
  );
  const freq = words.map(([, n]) => n);
  const pairCounts = new Map<string, number>();
  const pairWords = new Map<string, Set<number>>();
  const key = (a: string, b: string) => `${a}\u0000${b}`;
  const addPairs = (wi: number, sign: number) => {
    const s = seqs[wi] as Array<string | null>;
    const n = freq[wi] as number;
    for (let i = 0; i + 1 < s.length; i++) {
      const a = s[i];
      const b = s[i + 1];
      if (a == null || b == null) continue;
      const k = key(a, b);
      const count = (pairCounts.get(k) ?? 0) + sign * n;
      if (count > 0) pairCounts.set(k, count);
      else pairCounts.delete(k);
      if (sign > 0) {
        let set = pairWords.get(k);
        if (set === undefined) pairWords.set(k, (set = new Set()));
        set.add(wi);
      }
    }
  };
  for (let wi = 0; wi < seqs.length; wi++) addPairs(wi, 1);

  const merges: Array<[string, string]> = [];
  const tokens = new Set(alphabet);
  while (FIRST_SYMBOL_ID + tokens.size < vocabSize) {
    let bestKey = '';
    let bestCount = 0;
    for (const [k, n] of pairCounts) {
      if (n > bestCount || (n === bestCount && n > 0 && k < bestKey)) {
        bestKey = k;
        bestCount = n;
      }
    }
    if (bestCount < minPair) break;
    const [a, b] = bestKey.split('\u0000') as [string, string];
    merges.push([a, b]);
    tokens.add(a + b);
    for (const wi of pairWords.get(bestKey) ?? []) {
      addPairs(wi, -1);
      const s = seqs[wi] as Array<string | null>;
      const merged: Array<string | null> = [];
      for (let i = 0; i < s.length; i++) {
        if (i + 1 < s.length && s[i] === a && s[i + 1] === b) {
          merged.push(a + b);
          i++;
        } else merged.push(s[i] as string | null);
      }
      seqs[wi] = merged;
      addPairs(wi, 1);
    }
    pairCounts.delete(bestKey);
    pairWords.delete(bestKey);
  }
  return new Tokenizer({ kind: 'altforge-bpe', version: 1, alphabet, merges });
}
