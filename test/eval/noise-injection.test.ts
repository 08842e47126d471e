import { describe, expect, it } from 'vitest';
import { createRandom } from '../../corpus/random.ts';
import { injectNoise, noisyCount } from '../../eval/noise-injection.ts';

const captions = (n: number) => Array.from({ length: n }, (_, i) => `caption ${i}`);

describe('noise injection', () => {
  it('shuffles exactly the requested fraction of captions by a derangement', () => {
    for (const [n, rate] of [
      [100, 0.2],
      [100, 0.5],
      [37, 0.5],
      [1000, 0.8],
      [10, 1],
    ] as const) {
      const caps = captions(n);
      const r = injectNoise(caps, rate, createRandom(3, 'test'));
      const expected = Math.round(rate * n);
      expect(r.count).toBe(expected);
      expect(r.noisy.filter(Boolean).length).toBe(expected);
      // Every shuffled pair carries another pair's caption; every other pair keeps its own.
      r.captions.forEach((c, i) => {
        if (r.noisy[i]) {
          expect(r.source[i]).not.toBe(i);
          expect(c).not.toBe(caps[i]);
          expect(r.noisy[r.source[i] as number]).toBe(true);
        } else {
          expect(c).toBe(caps[i]);
          expect(r.source[i]).toBe(i);
        }
      });
      // A permutation of the shuffled pairs' captions: each is used exactly once.
      const used = r.source.filter((_, i) => r.noisy[i]).sort((a, b) => a - b);
      const chosen = r.noisy.flatMap((x, i) => (x ? [i] : [])).sort((a, b) => a - b);
      expect(used).toEqual(chosen);
    }
  });

  it('leaves every caption in place at rate 0 and is the same for the same seed', () => {
    const caps = captions(50);
    const clean = injectNoise(caps, 0, createRandom(1, 'x'));
    expect(clean.captions).toEqual(caps);
    expect(clean.count).toBe(0);
    const a = injectNoise(caps, 0.4, createRandom(7, 'x'));
    const b = injectNoise(caps, 0.4, createRandom(7, 'x'));
    const c = injectNoise(caps, 0.4, createRandom(8, 'x'));
    expect(a).toEqual(b);
    expect(a.captions).not.toEqual(c.captions);
  });

  it('never gives a pair a caption of its own concept when groups are given', () => {
    // 300 pairs in 10 classes, each class's captions different templates of the class name.
    const groups = Array.from({ length: 300 }, (_, i) => i % 10);
    const caps = groups.map((g, i) => `template ${i % 3} of class ${g}`);
    const r = injectNoise(caps, 0.5, createRandom(2, 'g'), { groups });
    expect(r.count).toBe(150);
    r.source.forEach((from, i) => {
      if (r.noisy[i]) expect(groups[from]).not.toBe(groups[i]);
    });
  });

  it('refuses groups that make a wrong caption impossible, and rates outside [0, 1]', () => {
    expect(() => injectNoise(captions(4), 1, createRandom(1, 'x'), { groups: [0, 0, 0, 1] })).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_OPTION' }),
    );
    expect(() => injectNoise(captions(4), 1.5, createRandom(1, 'x'))).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_OPTION' }),
    );
  });

  it('rounds the count and never moves a single caption alone', () => {
    expect(noisyCount(10, 0.25)).toBe(3);
    expect(noisyCount(10, 0.1)).toBe(2);
    expect(noisyCount(1, 1)).toBe(0);
  });
});
