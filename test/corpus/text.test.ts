import { describe, expect, it } from 'vitest';
import { createRandom } from '../../corpus/random.ts';
import { CaptionHasher, normaliseCaption, textHash52, wordTokens } from '../../corpus/text.ts';

const segmenter = new Intl.Segmenter('und', { granularity: 'word' });
const reference = (text: string) => [...segmenter.segment(text)].filter((s) => s.isWordLike).map((s) => s.segment);

describe('caption text', () => {
  it('normalises NFKC, case and whitespace', () => {
    expect(normaliseCaption('  Ｃａｔ\n PHOTO ')).toBe('cat photo');
    expect(normaliseCaption('A  b\tC')).toBe('a b c');
    expect(normaliseCaption('Already fine')).toBe('already fine');
    expect(normaliseCaption(' \t ')).toBe('');
    expect(normaliseCaption('ﬁle №5')).toBe('file no5');
  });

  it('tokenises ASCII exactly as Intl.Segmenter does, on random strings', () => {
    const random = createRandom(1, 'text-test');
    const alphabet = 'ab Z09_:.\',;-!@# \t+/"()x'.split('');
    for (let k = 0; k < 50_000; k++) {
      const length = 1 + Math.floor(random() * 12);
      let text = '';
      for (let j = 0; j < length; j++) text += alphabet[Math.floor(random() * alphabet.length)];
      expect(wordTokens(text), JSON.stringify(text)).toEqual(reference(text));
    }
  });

  it('keeps emoji as tokens and segments Chinese, Japanese and Thai', () => {
    expect(wordTokens('🐶 dog 🇫🇷 flag')).toEqual(['🐶', 'dog', '🇫🇷', 'flag']);
    expect(wordTokens('東京タワーの写真')).toEqual(['東京タワー', 'の', '写真']);
    expect(wordTokens('สวัสดีครับ')).toEqual(['สวัสดี', 'ครับ']);
    expect(wordTokens("don't stop 1,000.5 e.g. alt_img")).toEqual(["don't", 'stop', '1,000.5', 'e.g', 'alt_img']);
  });

  it('hashes a plain caption and its unigrams as the normalised strings hash, and refuses any other', () => {
    const random = createRandom(2, 'text-hash-test');
    const alphabet = 'aB Zq09_:.\',;-!@# \t+/"()xé'.split('');
    const hasher = new CaptionHasher();
    const out = new Float64Array(64);
    let plain = 0;
    for (let k = 0; k < 50_000; k++) {
      const length = Math.floor(random() * 14);
      let text = '';
      for (let j = 0; j < length; j++) text += alphabet[Math.floor(random() * alphabet.length)];
      const words = hasher.hash(text, out, 3);
      const norm = normaliseCaption(text);
      // Plain: printable ASCII, no space at either end nor two in a row; normalising only lower-cases it.
      const isPlain = /^([\x21-\x7e]+( [\x21-\x7e]+)*)?$/.test(text);
      if (!isPlain) {
        expect(words, JSON.stringify(text)).toBe(-1);
        continue;
      }
      plain++;
      expect(norm).toBe(text.toLowerCase());
      const tokens = wordTokens(norm);
      expect(words, JSON.stringify(text)).toBe(tokens.length);
      expect(hasher.caption).toBe(textHash52(norm));
      expect([...out.subarray(3, 3 + words)]).toEqual(tokens.map(textHash52));
    }
    expect(plain).toBeGreaterThan(5_000);
    expect(textHash52('cat')).not.toBe(textHash52('Cat'));
  });
});
