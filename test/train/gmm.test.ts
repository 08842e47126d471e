import { describe, expect, test } from 'vitest';
import { createRandom } from '../../corpus/random.ts';
import { fitGmm, highPosterior, minMaxNormalise, separation } from '../../train/gmm.ts';

/** Box–Muller normal samples from a seeded stream. */
function normals(n: number, mean: number, sd: number, stream: string): number[] {
  const random = createRandom(7, stream);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const u = 1 - random();
    const v = random();
    out.push(mean + sd * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v));
  }
  return out;
}

describe('two-component Gaussian mixture', () => {
  test('recovers the means, spreads and weights of a hand-made mixture', () => {
    const values = [...normals(3000, 0.2, 0.05, 'a'), ...normals(1000, 0.7, 0.1, 'b')];
    const gmm = fitGmm(values);
    expect(gmm.means[0]).toBeCloseTo(0.2, 2);
    expect(gmm.means[1]).toBeCloseTo(0.7, 1);
    expect(Math.sqrt(gmm.variances[0])).toBeCloseTo(0.05, 2);
    expect(Math.sqrt(gmm.variances[1])).toBeCloseTo(0.1, 1);
    expect(gmm.weights[0]).toBeCloseTo(0.75, 1);
    expect(separation(gmm)).toBeGreaterThan(4);
    expect(highPosterior(gmm, 0.2)).toBeLessThan(0.01);
    expect(highPosterior(gmm, 0.7)).toBeGreaterThan(0.99);
  });

  test('keeps both variances at or above the floor', () => {
    const values = [...Array(50).fill(0.1), ...Array(50).fill(0.9)];
    const gmm = fitGmm(values, { varianceFloor: 5e-4 });
    expect(gmm.variances[0]).toBe(5e-4);
    expect(gmm.variances[1]).toBe(5e-4);
    expect(gmm.means).toEqual([expect.closeTo(0.1, 6), expect.closeTo(0.9, 6)]);
  });

  test('separates a few high values from a majority of equal ones (quartiles that coincide)', () => {
    // 20 clean pairs whose agreement gap is exactly 0, four noisy ones well above.
    const values = [...Array(20).fill(0), 0.65, 0.86, 0.96, 1];
    const gmm = fitGmm(values);
    expect(gmm.means[0]).toBeCloseTo(0, 6);
    expect(gmm.means[1]).toBeCloseTo((0.65 + 0.86 + 0.96 + 1) / 4, 2);
    expect(gmm.weights[1]).toBeCloseTo(4 / 24, 2);
    expect(highPosterior(gmm, 0)).toBeLessThan(0.01);
    for (const x of [0.65, 0.86, 0.96, 1]) expect(highPosterior(gmm, x)).toBeGreaterThan(0.99);
  });

  test('reports a single hump as poorly separated', () => {
    const gmm = fitGmm(normals(2000, 0.4, 0.1, 'c'));
    expect(separation(gmm)).toBeLessThan(2);
  });

  test('gives a noise posterior that never falls as the loss grows', () => {
    const values = [...normals(900, 0.2, 0.02, 'd'), ...normals(100, 0.6, 0.2, 'e')];
    const gmm = fitGmm(values);
    let last = 0;
    for (let x = -0.5; x <= 1.5; x += 0.01) {
      const p = highPosterior(gmm, x);
      expect(p).toBeGreaterThanOrEqual(last - 1e-12);
      last = p;
    }
  });

  test('min-max normalises to [0, 1], and constant values to zeros', () => {
    expect(Array.from(minMaxNormalise([2, 4, 3]))).toEqual([0, 1, 0.5]);
    expect(Array.from(minMaxNormalise([5, 5]))).toEqual([0, 0]);
  });
});
