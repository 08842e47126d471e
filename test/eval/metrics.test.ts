import { describe, expect, it } from 'vitest';
import { createRandom } from '../../corpus/random.ts';
import {
  blockedRetrievalMetrics,
  classificationMetrics,
  meanAndSpread,
  precisionRecall,
  retrievalMetrics,
  rocAuc,
  similarity,
} from '../../eval/metrics.ts';
import { classEmbeddings, evaluateBenchmark, prompts } from '../../eval/zero-shot.ts';

describe('retrieval metrics', () => {
  it('ranks each caption and each image among all candidates, hand-computed', () => {
    // 3 images x 3 texts, text t describes image t.
    // image 0: own text 0.9 beats 0.1, 0.2 -> rank 1; image 1: own 0.5 behind 0.8 -> rank 2;
    // image 2: own 0.1 behind 0.7 and 0.3 -> rank 3.
    const sim = new Float32Array([0.9, 0.1, 0.2, 0.8, 0.5, 0.3, 0.7, 0.3, 0.1]);
    const { imageToText, textToImage } = retrievalMetrics(sim, 3, [0, 1, 2]);
    expect(imageToText).toEqual({ 'R@1': 100 / 3, 'R@5': 100, 'R@10': 100, mean_rank: 2, median_rank: 2, queries: 3 });
    // text 0: column [0.9, 0.8, 0.7] -> rank 1; text 1: [0.1, 0.5, 0.3] -> 1; text 2: [0.2, 0.3, 0.1] -> 3.
    expect(textToImage).toEqual({
      'R@1': (100 * 2) / 3,
      'R@5': 100,
      'R@10': 100,
      mean_rank: 5 / 3,
      median_rank: 1,
      queries: 3,
    });
  });

  it('counts a tie with a wrong candidate against the model', () => {
    // Every score equal: each right answer ties with the two wrong ones and ranks last.
    const sim = new Float32Array(9).fill(0.5);
    const { imageToText, textToImage } = retrievalMetrics(sim, 3, [0, 1, 2]);
    expect(imageToText['R@1']).toBe(0);
    expect(imageToText.mean_rank).toBe(3);
    expect(textToImage['R@1']).toBe(0);
    expect(textToImage.median_rank).toBe(3);
  });

  it('counts any of an image’s several captions as an image-to-text hit', () => {
    // 2 images, 4 texts: texts 0,1 describe image 0; texts 2,3 describe image 1.
    // image 0 scores: [0.2, 0.9, 0.5, 0.1] -> its best caption (0.9) is first: rank 1.
    // image 1 scores: [0.6, 0.7, 0.65, 0.1] -> best own 0.65, beaten by 0.7 only: rank 2.
    const sim = new Float32Array([0.2, 0.9, 0.5, 0.1, 0.6, 0.7, 0.65, 0.1]);
    const { imageToText, textToImage } = retrievalMetrics(sim, 2, [0, 0, 1, 1]);
    expect(imageToText).toEqual({ 'R@1': 50, 'R@5': 100, 'R@10': 100, mean_rank: 1.5, median_rank: 1.5, queries: 2 });
    // text 0: 0.2 vs 0.6 -> 2; text 1: 0.9 vs 0.7 -> 1; text 2: 0.65 vs 0.5 -> 1; text 3: 0.1 vs 0.1 (tie) -> 2.
    expect(textToImage.mean_rank).toBe(1.5);
    expect(textToImage['R@1']).toBe(50);
  });

  it('reaches R@5 and R@10 only within five and ten places', () => {
    // 12 images, 12 texts, text i describes image i. Image 0's caption scores below seven other
    // texts (rank 8: an R@10 hit, an R@5 miss); every other image scores 1 on its own caption only.
    const n = 12;
    const sim = new Float32Array(n * n);
    [0.3, 0.9, 0.8, 0.7, 0.6, 0.5, 0.45, 0.4, 0.1, 0.1, 0.1, 0.1].forEach((v, t) => (sim[t] = v));
    for (let i = 1; i < n; i++) sim[i * n + i] = 1;
    const { imageToText, textToImage } = retrievalMetrics(
      sim,
      n,
      Array.from({ length: n }, (_, i) => i),
    );
    expect(imageToText).toEqual({
      'R@1': (100 * 11) / 12,
      'R@5': (100 * 11) / 12,
      'R@10': 100,
      mean_rank: 19 / 12,
      median_rank: 1,
      queries: 12,
    });
    expect(textToImage['R@1']).toBe(100);
  });

  it('computes the same ranks a block of images at a time as from the whole matrix, ties included', () => {
    const random = createRandom(5, 'blocked');
    const dim = 8;
    // Coarse values (multiples of 0.25) and repeated rows make many exact ties.
    const row = () => Array.from({ length: dim }, () => Math.round(random() * 4) / 4);
    const imageRows = Array.from({ length: 23 }, row);
    imageRows[7] = [...(imageRows[3] as number[])];
    const textRows = Array.from({ length: 41 }, row);
    textRows[11] = [...(textRows[2] as number[])];
    const images = Float32Array.from(imageRows.flat());
    const texts = Float32Array.from(textRows.flat());
    // Up to three captions an image, some images with none.
    const textImage = Array.from({ length: 41 }, (_, t) => (t * 7) % 19);
    const whole = retrievalMetrics(similarity(images, texts, dim), 23, textImage);
    expect(whole.imageToText.queries).toBe(19);
    for (const blockRows of [1, 4, 23, 256]) {
      expect(blockedRetrievalMetrics(images, texts, dim, textImage, { blockRows })).toEqual(whole);
    }
    // Another way of computing the products (summed backwards, in float32 throughout, as a BLAS
    // kernel may): the blocks rank exactly as that function's own whole matrix does.
    const backwards = (a: Float32Array, b: Float32Array, d: number) => {
      const out = new Float32Array((a.length / d) * (b.length / d));
      for (let i = 0; i < a.length / d; i++) {
        for (let j = 0; j < b.length / d; j++) {
          let s = 0;
          for (let k = d - 1; k >= 0; k--)
            s = Math.fround(s + Math.fround((a[i * d + k] as number) * (b[j * d + k] as number)));
          out[i * (b.length / d) + j] = s;
        }
      }
      return out;
    };
    expect(blockedRetrievalMetrics(images, texts, dim, textImage, { blockRows: 5, similarity: backwards })).toEqual(
      retrievalMetrics(backwards(images, texts, dim), 23, textImage),
    );
  });

  it('refuses an empty benchmark with ERR_EMPTY_BENCHMARK', () => {
    expect(() => blockedRetrievalMetrics(new Float32Array(0), new Float32Array(0), 4, [])).toThrow(
      expect.objectContaining({ code: 'ERR_EMPTY_BENCHMARK' }),
    );
    expect(() => retrievalMetrics(new Float32Array(0), 0, [])).toThrow(
      expect.objectContaining({ code: 'ERR_EMPTY_BENCHMARK' }),
    );
    expect(() => classificationMetrics(new Float32Array(0), [], 10)).toThrow(
      expect.objectContaining({ code: 'ERR_EMPTY_BENCHMARK' }),
    );
  });
});

describe('classification metrics', () => {
  it('computes top-1 and top-5 accuracy with ties counted against the model', () => {
    // 3 images x 6 classes.
    const sim = new Float32Array([
      // label 0: own 0.9 highest -> top1 and top5
      0.9, 0.1, 0.2, 0.3, 0.4, 0.5,
      // label 1: own 0.5, beaten by 0.6, 0.7, 0.8 -> top5 only
      0.6, 0.5, 0.7, 0.8, 0.1, 0.2,
      // label 2: own 0.1, five classes at least as high (one a tie) -> neither
      0.2, 0.3, 0.1, 0.4, 0.5, 0.1,
    ]);
    expect(classificationMetrics(sim, [0, 1, 2], 6)).toEqual({ top1: 100 / 3, top5: 200 / 3, images: 3 });
  });
});

describe('class embeddings', () => {
  it('averages the prompt templates of a class and re-normalises', () => {
    // A fake text tower: 'a X.' -> [1, 0], 'one X' -> [0, 1], for every class name.
    const embed = (texts: readonly string[]) =>
      new Float32Array(texts.flatMap((t) => (t.startsWith('a ') ? [1, 0] : [0, 1])));
    const emb = classEmbeddings(embed, ['cat', 'dog'], ['a {}.', 'one {}'], 2);
    const h = Math.SQRT1_2;
    expect(Array.from(emb)).toEqual([
      expect.closeTo(h, 6),
      expect.closeTo(h, 6),
      expect.closeTo(h, 6),
      expect.closeTo(h, 6),
    ]);
    expect(prompts('t-shirt', ['a photo of a {}.', '{} and {}'])).toEqual([
      'a photo of a t-shirt.',
      't-shirt and t-shirt',
    ]);
  });

  it('refuses a benchmark with images but no captions or classes', async () => {
    const encoder = {
      dim: 2,
      embedImages: async (imgs: readonly unknown[]) => new Float32Array(imgs.length * 2),
      embedTexts: (t: readonly string[]) => new Float32Array(t.length * 2),
    };
    await expect(
      evaluateBenchmark(encoder, { name: 'bare', images: [new Uint8Array(4)], captions: [[]] }, { templates: ['{}'] }),
    ).rejects.toMatchObject({ code: 'ERR_EMPTY_BENCHMARK', message: expect.stringContaining("'bare'") });
    await expect(
      evaluateBenchmark(encoder, { name: 'none', images: [], captions: [] }, { templates: ['{}'] }),
    ).rejects.toMatchObject({ code: 'ERR_EMPTY_BENCHMARK' });
  });
});

describe('similarity', () => {
  it('multiplies rows of both sides', () => {
    const s = similarity(new Float32Array([1, 0, 0, 1]), new Float32Array([1, 2, 3, 4, 5, 6]), 2);
    expect(Array.from(s)).toEqual([1, 3, 5, 2, 4, 6]);
  });
});

describe('noise-detection scores', () => {
  it('computes ROC AUC with mid-ranks for ties', () => {
    expect(rocAuc([0.9, 0.8, 0.2, 0.1], [true, true, false, false])).toBe(1);
    expect(rocAuc([0.1, 0.2, 0.8, 0.9], [true, true, false, false])).toBe(0);
    // positives 0.5 and 0.7, negatives 0.5 and 0.1: pairs (0.5,0.5)=0.5, (0.5,0.1)=1, (0.7,*)=1,1 -> 3.5/4
    expect(rocAuc([0.5, 0.7, 0.5, 0.1], [true, true, false, false])).toBe(0.875);
    expect(rocAuc([0.5, 0.7], [true, true])).toBeNull();
  });

  it('computes precision and recall above the threshold', () => {
    // called: 0.9 (pos), 0.6 (neg); missed: 0.4 (pos)
    expect(precisionRecall([0.9, 0.6, 0.4, 0.1], [true, false, true, false])).toEqual({ precision: 0.5, recall: 0.5 });
    expect(precisionRecall([0.1, 0.2], [true, false])).toEqual({ precision: null, recall: 0 });
  });

  it('gives the mean and the sample standard deviation over seeds', () => {
    expect(meanAndSpread([2, 4])).toEqual({ mean: 3, spread: Math.SQRT2 });
    expect(meanAndSpread([5])).toEqual({ mean: 5, spread: 0 });
  });
});
