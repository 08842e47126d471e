import { describe, expect, it } from 'vitest';
import { captionConsistency, noiseScores } from '../../train/noise.ts';

describe('caption consistency', () => {
  it('scores each pair by its image against the other images carrying the same caption', () => {
    // 2-d unit embeddings. "cat" on images 0, 1 (both along x) and 2 (along y: a shuffled caption);
    // "dog" on image 3 only.
    const emb = new Float32Array([1, 0, 1, 0, 0, 1, 0.6, 0.8]);
    const c = captionConsistency(emb, 2, ['Cat', 'cat', ' CAT ', 'dog']);
    // image 0 against mean(image 1, image 2) = (0.5, 0.5)/|.| -> cos = 1/sqrt(2)
    expect(c[0]).toBeCloseTo(Math.SQRT1_2, 6);
    expect(c[1]).toBeCloseTo(Math.SQRT1_2, 6);
    // image 2 against mean(image 0, image 1) = (1, 0) -> cos = 0
    expect(c[2]).toBeCloseTo(0, 6);
    expect(Number.isNaN(c[3])).toBe(true);
  });

  it('blends normalised loss and inconsistency, keeping the loss alone where a caption is unique', () => {
    const scores = noiseScores([0, 1, 2, 4], new Float32Array([1, 0.5, 0, Number.NaN]), 0.5);
    // loss normalised: 0, .25, .5, 1; inconsistency (1 - c) normalised over known: 0, .5, 1
    expect(Array.from(scores)).toEqual([0, 0.375, 0.75, 1]);
    expect(Array.from(noiseScores([0, 2], new Float32Array([0, 1]), 0))).toEqual([0, 1]);
  });
});
