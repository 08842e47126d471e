import { describe, expect, test } from 'vitest';
import { BOS_ID, EOS_ID, PAD_ID, Tokenizer, learnTokenizer } from '../../train/tokenizer.ts';

const captions = [
  'A red apple on a table',
  'a green apple',
  'Red apples in a basket',
  'Pommes rouges dans un panier',
  '赤いりんごがテーブルの上にある',
  'a grinning face 😀 emoji',
  'grinning face with big eyes',
  'Grinning cat face',
];

describe('tokenizer', () => {
  test('learns whole frequent words as single tokens', () => {
    const tok = learnTokenizer(captions, { vocabSize: 400 });
    const ids = tok.tokenize('apple');
    expect(ids).toHaveLength(1);
    expect(tok.token(ids[0] as number)).toBe('\u2581apple');
    expect(tok.tokenize('grinning face').map((id) => tok.token(id))).toEqual(['\u2581grinning', '\u2581face']);
  });

  test('normalises captions the way the corpus does (case, width, spacing)', () => {
    const tok = learnTokenizer(captions, { vocabSize: 400 });
    expect(tok.tokenize('  ＡＰＰＬＥ\n')).toEqual(tok.tokenize('apple'));
  });

  test('encodes unseen characters through their UTF-8 bytes and decodes them back', () => {
    const tok = learnTokenizer(captions, { vocabSize: 400 });
    const ids = tok.tokenize('apple ж');
    // ж (U+0436) is two UTF-8 bytes, neither learned: ▁ is known, then two byte tokens.
    expect(ids.slice(-2).map((id) => tok.token(id))).toEqual(['<0xD0>', '<0xB6>']);
    expect(tok.decode(ids)).toBe('apple ж');
    // Japanese is segmented into words (赤い | りんご), so the decoded text has a space between them.
    expect(tok.decode(tok.tokenize('赤いりんご 😀'))).toBe('赤い りんご 😀');
  });

  test('frames a caption with bos and eos, pads with zeros and cuts long captions before eos', () => {
    const tok = learnTokenizer(captions, { vocabSize: 400 });
    const row = tok.encode('red apple', 6);
    expect(Array.from(row)).toEqual([BOS_ID, ...tok.tokenize('red apple'), EOS_ID, PAD_ID, PAD_ID]);
    const long = tok.encode('a red apple on a table a green apple', 5);
    expect(long[0]).toBe(BOS_ID);
    expect(long[4]).toBe(EOS_ID);
    expect(Array.from(long.slice(1, 4))).toEqual(tok.tokenize('a red apple on a table').slice(0, 3));
  });

  test('stops merging at the vocabulary size', () => {
    const tok = learnTokenizer(captions, { vocabSize: 300 });
    expect(tok.vocabSize).toBe(300);
    const all = learnTokenizer(captions, { vocabSize: 100000 });
    expect(all.vocabSize).toBeLessThan(100000);
    for (const id of all.tokenize(captions.join(' '))) expect(id).toBeLessThan(all.vocabSize);
  });

  test('round-trips through JSON and learns the same merges from the same captions', () => {
    const tok = learnTokenizer(captions, { vocabSize: 400 });
    const copy = Tokenizer.fromJSON(JSON.parse(JSON.stringify(tok.toJSON())));
    expect(copy.vocabSize).toBe(tok.vocabSize);
    for (const c of captions) expect(Array.from(copy.encode(c, 16))).toEqual(Array.from(tok.encode(c, 16)));
    expect(learnTokenizer(captions, { vocabSize: 400 }).toJSON()).toEqual(tok.toJSON());
    expect(() => Tokenizer.fromJSON({ kind: 'other' })).toThrow(expect.objectContaining({ code: 'ERR_BAD_TOKENIZER' }));
  });
});
