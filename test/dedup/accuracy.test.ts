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

  // Nine registered crops (the corners, the edges' middles, the centre) since fingerprints fp3.
  it('finds at least 85 % of 5-10 % crops', () => {
    expect(report.dedup.recall['crop']).toBeGreaterThanOrEqual(0.85);
  });

  // Measured (fp3, with the colour-histogram check): 0.975 here (2 skin-tone variants flagged),
  // 0.946 at full size (was 0.81: skin-tone false positives 109 -> 10). What is left at full size:
  // 11 other Twitter emoji that are (nearly) another's mirror image (clock faces, moon phases) or
  // the man/woman/person version of one drawing, 14 copies flagged as such a look-alike of their
  // source, 10 skin tones on a tiny face, 2 other vendors' drawings.
  it.fails('reaches precision 0.99 with skin-tone variants as negatives (not met yet)', () => {
    expect(report.dedup.precision).toBeGreaterThanOrEqual(0.99);
  });
});
