/**
 * The accuracy suite at small size (the full size runs in `npm run bench:dedup`): 60 Twitter emoji
 * registered; 12 copies per transform; the other vendors' drawings of the same concepts, Twitter's
 * skin-tone variants and other Twitter emoji as negatives. Targets from issue 5; scored under the
 * suite's near-identical definition (see `_accuracy.ts`), which here counts as the pixel-identical one.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/corpus.ts';
import { buildAccuracySet, emojiFile, nearIdenticalFiles } from '../fixtures/transforms.ts';
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

  it('counts mirror-image clock faces and moon phases as near-identical, but not a skin tone on a tiny face', async () => {
    const twitter = (image: string) => emojiFile('twitter', image);
    expect(await nearIdenticalFiles(twitter('1f562.png'), twitter('1f560.png'))).toEqual({
      direct: false,
      mirrored: true,
    });
    expect(await nearIdenticalFiles(twitter('1f312.png'), twitter('1f318.png'))).toEqual({
      direct: false,
      mirrored: true,
    });
    expect(await nearIdenticalFiles(twitter('1f6a3-1f3fb.png'), twitter('1f6a3.png'))).toEqual({
      direct: false,
      mirrored: false,
    });
    expect(await nearIdenticalFiles(twitter('1f556.png'), twitter('1f55b.png'))).toEqual({
      direct: false,
      mirrored: false,
    });
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

  // Under the near-identical definition (fixtures/transforms.ts NEAR_IDENTICAL: no negative or
  // look-alike of a source is near-identical in this small set, so both definitions agree here).
  // 1.0 here; full size (500 registered, fp5): 0.983 / 0.975 on seeds 1 and 2 (see BENCHMARKS.md).
  it('reaches precision 0.99 with the other vendors, the skin-tone variants and other emoji as negatives', () => {
    expect(report.nearIdentical).toEqual({ negativesLeftOut: 0, copiesWithLookAlikes: 0 });
    expect(report.dedup.precision).toBeGreaterThanOrEqual(0.99);
  });

  // Issue 5's own definition: flags on other Twitter emoji do not count. Full size (fp5): 0.994 /
  // 0.986 on seeds 1 and 2.
  it('reaches precision 0.99 with the other vendors and the skin-tone variants as negatives (issue 5)', () => {
    const copies = (['resize', 'jpeg', 'grayscale', 'flip', 'border', 'crop', 'rotate'] as const).reduce(
      (n, t) => n + (report.dedup.byKind[t]?.flagged ?? 0),
      0,
    );
    const negatives = ['other-vendor', 'skin-tone'] as const;
    const flagged = copies + negatives.reduce((n, k) => n + (report.dedup.byKind[k]?.flagged ?? 0), 0);
    const correct = Object.values(report.dedup.byKind).reduce((n, s) => n + s.correct, 0);
    expect(report.dedup.issuePrecision).toBe(correct / flagged);
    expect(report.dedup.issuePrecision).toBeGreaterThanOrEqual(0.99);
    expect(report.baseline.issuePrecision).toBeLessThan(0.99);
  });
});
