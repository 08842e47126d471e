/**
 * The accuracy suite at small size (the full size runs in `npm run bench:dedup`): 60 Twitter emoji
 * registered; 12 copies per transform; the other vendors' drawings of the same concepts, Twitter's
 * skin-tone variants and other Twitter emoji as negatives. Targets from issue 5. Targets not met
 * yet are written as `it.fails` with what is measured, so they turn red the day they are met and
 * must be moved to `it`.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/corpus.ts';
import { buildAccuracySet } from '../fixtures/transforms.ts';
import { evaluateAccuracy, type AccuracyReport } from './_accuracy.ts';

let work: { path: string; remove: () => Promise<void> };
let report: AccuracyReport;

beforeAll(async () => {
  work = await tempDir('dedup-accuracy');
  const set = await buildAccuracySet({
    seed: 3,
    benchmarkSize: 60,
    copiesPerTransform: 12,
    otherVendors: 60,
    skinTones: 60,
    otherEmoji: 60,
  });
  report = await evaluateAccuracy(set, work.path);
});
afterAll(async () => {
  await work.remove();
});

describe('dedup accuracy on transformed emoji (default threshold)', () => {
  it.each(['resize', 'jpeg', 'grayscale', 'flip', 'border'] as const)(
    'finds at least 98 %% of %s copies',
    (transform) => {
      expect(report.dedup.byKind[transform]?.n).toBe(12);
      expect(report.dedup.recall[transform]).toBeGreaterThanOrEqual(0.98);
    },
  );

  it('finds the flips, borders and crops that the plain 64-bit pHash misses', () => {
    for (const t of ['flip', 'border', 'crop'] as const) {
      expect(report.baseline.recall[t]).toBeLessThan(0.5);
      expect(report.dedup.recall[t]).toBeGreaterThan((report.baseline.recall[t] ?? 0) + 0.4);
    }
  });

  it('flags none of the other vendors drawings of the registered concepts', () => {
    expect(report.dedup.byKind['other-vendor']).toMatchObject({ n: 60, flagged: 0 });
  });

  it('is more precise than the plain pHash at the same distance', () => {
    expect(report.dedup.precision).toBeGreaterThan(report.baseline.precision + 0.2);
  });

  // Measured: 9 of 12 crops here (0.75); 75 of 100 at full size (bench:dedup, 500 registered).
  it.fails('finds at least 85 % of 5-10 % crops (not met at this size yet)', () => {
    expect(report.dedup.recall['crop']).toBeGreaterThanOrEqual(0.85);
  });

  // Measured: 0.84 here, 0.81 at full size; most false positives are skin-tone variants (same
  // drawing, other skin colour: 109 of 142 at full size).
  it.fails('reaches precision 0.99 with skin-tone variants as negatives (not met yet)', () => {
    expect(report.dedup.precision).toBeGreaterThanOrEqual(0.99);
  });
});
