import { beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../../train/backend.ts';
import {
  agreementChunk,
  autoNeighbours,
  captionAgreement,
  captionConsistency,
  captionGroups,
  captionWords,
  completeCaptions,
  harmonise,
  noiseScores,
  positiveMask,
  resolveNoiseSignal,
  centreRows,
  sideBySide,
  thumbnailRows,
  thumbnailSpread,
  wordGrounding,
} from '../../train/noise.ts';

beforeAll(async () => {
  await selectBackend('cpu');
});

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

describe('word grounding', () => {
  // 2-d unit embeddings. "red" is held by pairs 0, 1 (images along x) and 2 (along y); "blue" by
  // pairs 3 and 4 (along y); five more pairs (along x) hold words no other pair does, so "red" is
  // in 30 % of the captions, the most a word with a prototype may be.
  const emb = new Float32Array([1, 0, 1, 0, 0, 1, 0, 1, 0, 1, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0]);
  const others = ['one', 'two', 'three', 'four', 'five'];
  const captions = ['Red ball', 'red cup', 'RED  box', 'blue sky', 'blue sea', ...others];
  const r5 = Math.sqrt(5);

  it("scores each pair's words against the other images holding them, less its mean over every word", () => {
    const s = wordGrounding(emb, 2, captionWords(captions), 0);
    // Prototypes red (2, 1), blue (0, 2): an image along x has mean cosine 1/√5 with them, one
    // along y (1 + 1/√5)/2.
    // pair 0: red without itself (1, 1) -> cos 1/√2.
    expect(s[0]).toBeCloseTo(-(Math.SQRT1_2 - 1 / r5), 6);
    expect(s[1]).toBeCloseTo(-(Math.SQRT1_2 - 1 / r5), 6);
    // pair 2: red without itself (2, 0) -> cos 0.
    expect(s[2]).toBeCloseTo((1 + 1 / r5) / 2, 6);
    // pairs 3, 4: blue without itself (0, 1) -> cos 1.
    expect(s[3]).toBeCloseTo(-(1 - 1 / r5) / 2, 6);
    expect(s[4]).toBeCloseTo(-(1 - 1 / r5) / 2, 6);
    // No prototype for a word of one pair.
    expect(Array.from(s.subarray(5))).toEqual([0, 0, 0, 0, 0]);
  });

  it('weights each image by its rank in the previous round, so suspect images pull their words less', () => {
    // Round 0 ranks the pairs 2, 5..9, 0, 1, 3, 4 (ties by index): weights 0, 1/9 .. 5/9, 6/9, 7/9,
    // 8/9, 1. Pair 2's image no longer counts in red's prototype: red (13/9, 0), blue (0, 17/9),
    // mean cosine 1/2 for every image.
    const s = wordGrounding(emb, 2, captionWords(captions), 1);
    expect(Array.from(s, (x) => Math.round(x * 1e6) / 1e6)).toEqual([-0.5, -0.5, 0.5, -0.5, -0.5, 0, 0, 0, 0, 0]);
  });

  it('weights a word by how many pairs hold it, and leaves out a word most captions carry', () => {
    // "ball" now held by pairs 0 and 3: prototypes red (2, 1), blue (0, 2), ball (1, 1).
    const s = wordGrounding(
      emb,
      2,
      captionWords(['red ball', 'red cup', 'red box', 'blue ball', 'blue sea', ...others]),
      0,
    );
    // pair 0, along x: cosines 2/√5, 0, 1/√2 with the three; its own words red (without it
    // (1, 1): 1/√2, weight 2/3) and ball (without it (0, 1): cosine 0, weight 1/2).
    const own = ((2 / 3) * Math.SQRT1_2) / (2 / 3 + 0.5);
    expect(s[0]).toBeCloseTo(-(own - (2 / r5 + Math.SQRT1_2) / 3), 6);
    // Without the five other pairs "red" is in 3 of 5 captions: no prototype; "blue" is the only one.
    const five = wordGrounding(emb.subarray(0, 10), 2, captionWords(captions.slice(0, 5)), 0);
    expect(Array.from(five.subarray(0, 3))).toEqual([0, 0, 0]);
    // pair 3: blue without it is its image (cos 1), as is the mean over the one prototype.
    expect(five[3]).toBeCloseTo(0, 6);
  });
});

describe('caption groups and multi-positive masks', () => {
  it('groups captions that are identical after normalisation, keeping the first spelling', () => {
    const g = captionGroups(['A Cat', 'dog', ' a cat ', 'DOG', 'bird']);
    expect(Array.from(g.index)).toEqual([0, 1, 0, 1, 2]);
    expect(g.representatives).toEqual(['A Cat', 'dog', 'bird']);
  });

  it('marks every pair of a batch that shares a group, the diagonal included', () => {
    expect(Array.from(positiveMask([3, 5, 3]))).toEqual([1, 0, 1, 0, 1, 0, 1, 0, 1]);
    expect(Array.from(positiveMask(['a', 'b']))).toEqual([1, 0, 0, 1]);
  });
});

describe('caption agreement', () => {
  // Unit 2-d embeddings at angles (degrees): three "cat" images near 0°, two "dog" images near 90°.
  const at = (deg: number) => [Math.cos((deg * Math.PI) / 180), Math.sin((deg * Math.PI) / 180)];
  const images = new Float32Array([0, 10, 20, 80, 90].flatMap(at));
  const captions = new Float32Array([0, 90].flatMap(at)); // group 0 "cat" at 0°, group 1 "dog" at 90°
  const cos = (a: number, b: number) => Math.cos(((a - b) * Math.PI) / 180);

  it('is 1 where the own caption is the first choice, and exp(own − best logit) elsewhere', async () => {
    // Image 2 (20°) carries "dog": a shuffled caption. No neighbours: the image alone decides.
    const own = new Int32Array([0, 0, 1, 1, 1]);
    const { agreement, best } = await captionAgreement(images, captions, own, 2, { neighbours: 0, scale: 10 });
    expect(Array.from(best)).toEqual([0, 0, 0, 1, 1]);
    expect(agreement[0]).toBeCloseTo(1, 6);
    expect(agreement[3]).toBeCloseTo(1, 6);
    expect(agreement[2]).toBeCloseTo(Math.exp(10 * (cos(20, 90) - cos(20, 0))), 5);
    const { gap } = await captionAgreement(images, captions, own, 2, { neighbours: 0, scale: 10 });
    expect(gap[0]).toBeCloseTo(0, 6);
    expect(gap[2]).toBeCloseTo(cos(20, 0) - cos(20, 90), 5);
  });

  it('sizes the neighbourhood as the median caption group minus one, between 1 and 10', () => {
    expect(autoNeighbours(new Int32Array([0, 0, 1, 1, 2, 2]))).toBe(1);
    expect(autoNeighbours(new Int32Array([0, 0, 0, 0, 1, 1, 1, 1, 2]))).toBe(3);
    expect(autoNeighbours(new Int32Array(Array.from({ length: 300 }, (_, i) => i % 5)))).toBe(10);
    expect(autoNeighbours(new Int32Array([0, 1, 2]))).toBe(1);
  });

  it('takes agreement for auto when the median caption has three holders or more, else turns the estimate off', () => {
    expect(resolveNoiseSignal('auto', new Int32Array([0, 0, 0, 1, 1, 1, 2]))).toBe('agreement');
    expect(resolveNoiseSignal('auto', new Int32Array([0, 0, 1, 1, 2, 2, 3, 3, 4]))).toBe('off');
    expect(resolveNoiseSignal('loss', new Int32Array([0, 0, 0, 0]))).toBe('loss');
    expect(resolveNoiseSignal('agreement', new Int32Array([0, 1]))).toBe('agreement');
  });

  it('judges an image by the mean embedding of itself and its nearest images', async () => {
    // Image 3 (80°) carries "cat": shuffled. Alone it points at "dog" (best), 70° from "cat".
    const own = new Int32Array([0, 0, 0, 0, 1]);
    const alone = await captionAgreement(images, captions, own, 2, { neighbours: 0, scale: 10 });
    expect(alone.agreement[3]).toBeCloseTo(Math.exp(10 * (cos(80, 0) - cos(80, 90))), 5);
    // With 2 neighbours (90° and 20°, the nearest by cosine) its neighbourhood is the normalised
    // mean of 80°, 90° and 20°.
    const hood = await captionAgreement(images, captions, own, 2, { neighbours: 2, scale: 10 });
    const sum = [80, 90, 20]
      .map(at)
      .reduce((s, v) => [(s[0] as number) + (v[0] as number), (s[1] as number) + (v[1] as number)]);
    const angle = (Math.atan2(sum[1] as number, sum[0] as number) * 180) / Math.PI;
    expect(hood.best[3]).toBe(1);
    expect(hood.agreement[3]).toBeCloseTo(Math.exp(10 * (cos(angle, 0) - cos(angle, 90))), 5);
    // Image 2 (20°): its neighbours 10° and 0° keep it on "cat", its own caption.
    expect(hood.best[2]).toBe(0);
    expect(hood.agreement[2]).toBeCloseTo(1, 6);
    // More neighbours than other images: every image, i.e. the same mean for all.
    const all = await captionAgreement(images, captions, own, 2, { neighbours: 99, scale: 10 });
    expect(new Set(Array.from(all.best)).size).toBe(1);
  });

  it("votes with the nearest images' own captions, itself left out", async () => {
    // Image 3 (80°) carries "cat" (shuffled); its neighbours 90° ("dog") and 20° ("cat").
    const own = new Int32Array([0, 0, 0, 0, 1]);
    const found = await captionAgreement(images, captions, own, 2, { neighbours: 2, scale: 10 });
    // Mean of the "dog" and "cat" caption embeddings is 45°: cosine 45° with its own "cat".
    expect(found.vote[3]).toBeCloseTo(cos(45, 0), 5);
    // Image 0 (0°): neighbours 10° and 20°, both "cat" like itself.
    expect(found.vote[0]).toBeCloseTo(1, 6);
    // Image 4 (90°, "dog"): neighbours 80° and 20°, both carrying "cat": the vote names "cat".
    expect(found.vote[4]).toBeCloseTo(cos(90, 0), 5);
    expect(found.voteBest[4]).toBe(0);
    expect(found.voteBest[0]).toBe(0);
    // Joint: cos(neighbourhood, g) + cos(neighbours' captions, g). Image 4's neighbourhood mean of
    // 90°, 80°, 20° points at "dog" by the model, its neighbours' captions at "cat".
    const sum = [90, 80, 20]
      .map(at)
      .reduce((s, v) => [(s[0] as number) + (v[0] as number), (s[1] as number) + (v[1] as number)]);
    const angle = (Math.atan2(sum[1] as number, sum[0] as number) * 180) / Math.PI;
    const joint = (g: number) => cos(angle, g) + cos(0, g);
    expect(found.jointBest[4]).toBe(joint(0) > joint(90) ? 0 : 1);
    // Without neighbours there is no vote: 1, and the own caption.
    const alone = await captionAgreement(images, captions, own, 2, { neighbours: 0, scale: 10 });
    expect(Array.from(alone.vote)).toEqual([1, 1, 1, 1, 1]);
    expect(Array.from(alone.voteBest)).toEqual(Array.from(own));
  });

  it("scores the joint gap: the neighbourhood's cosine plus the neighbours' unnormalised caption vote", async () => {
    const own = new Int32Array([0, 0, 0, 0, 1]);
    const found = await captionAgreement(images, captions, own, 2, { neighbours: 2, scale: 10 });
    const hoodAngle = (degs: number[]) => {
      const sum = degs
        .map(at)
        .reduce((s, v) => [(s[0] as number) + (v[0] as number), (s[1] as number) + (v[1] as number)]);
      return (Math.atan2(sum[1] as number, sum[0] as number) * 180) / Math.PI;
    };
    // Image 4 (90°, "dog"): neighbours 80° and 20° both carry "cat", so the vote is cos(0°, g) at full weight.
    const a4 = hoodAngle([90, 80, 20]);
    const j4 = (g: number) => cos(a4, g) + cos(0, g);
    expect(found.jointGap[4]).toBeCloseTo(Math.max(j4(0), j4(90)) - j4(90), 5);
    expect(found.jointGap[4]).toBeGreaterThan(0);
    // Image 3 (80°, "cat"): neighbours 90° ("dog") and 20° ("cat") disagree: the vote is the mean of
    // cos(0°, g) and cos(90°, g), 0.5 for both groups, so it adds nothing and the model's gap remains.
    const a3 = hoodAngle([80, 90, 20]);
    expect(found.jointGap[3]).toBeCloseTo(Math.max(0, cos(a3, 90) - cos(a3, 0)), 5);
    expect(found.jointGap[3]).toBeCloseTo(found.gap[3] as number, 5);
    // Image 0 (0°, "cat", neighbours "cat"): its own caption is best both ways.
    expect(found.jointGap[0]).toBeCloseTo(0, 6);
    // Without neighbours the joint gap is the gap.
    const alone = await captionAgreement(images, captions, own, 2, { neighbours: 0, scale: 10 });
    alone.jointGap.forEach((g, i) => expect(g).toBeCloseTo(alone.gap[i] as number, 6));
  });
});

describe('caption agreement in chunks', () => {
  it('gives the same result whatever the rows a chunk takes', async () => {
    // 40 images in 5 caption groups, deterministic pseudo-random unit embeddings of width 8.
    const n = 40;
    const dim = 8;
    const unit = (seed: number) => {
      const v = Array.from({ length: dim }, (_, k) => (Math.sin(seed * 12.9898 + k * 78.233) * 43758.5453) % 1);
      const norm = Math.hypot(...v);
      return v.map((x) => x / norm);
    };
    const images = new Float32Array(Array.from({ length: n }, (_, i) => unit(i + 1)).flat());
    const captions = new Float32Array(Array.from({ length: 5 }, (_, g) => unit(100 + g)).flat());
    const own = Int32Array.from({ length: n }, (_, i) => i % 5);
    const whole = await captionAgreement(images, captions, own, dim, { neighbours: 3, scale: 20 });
    for (const chunk of [1, 7, 16]) {
      const reported: Array<[number, number]> = [];
      const parts = await captionAgreement(images, captions, own, dim, {
        neighbours: 3,
        scale: 20,
        chunk,
        onProgress: (done, total) => reported.push([done, total]),
      });
      // One report a chunk, the pairs done so far.
      expect(reported).toEqual(
        Array.from({ length: Math.ceil(n / chunk) }, (_, c) => [Math.min(n, (c + 1) * chunk), n]),
      );
      expect(parts.best).toEqual(whole.best);
      expect(parts.voteBest).toEqual(whole.voteBest);
      expect(parts.jointBest).toEqual(whole.jointBest);
      for (const key of ['agreement', 'gap', 'jointGap', 'vote'] as const) {
        parts[key].forEach((v, i) => expect(v).toBeCloseTo(whole[key][i] as number, 5));
      }
    }
  });

  it('takes fewer rows a chunk as the pairs or the distinct captions grow, so a chunk stays within 2^25 entries', () => {
    expect(agreementChunk(4000, 60)).toBe(512);
    expect(agreementChunk(65536, 100)).toBe(512);
    expect(agreementChunk(1_000_000, 300_000)).toBe(33);
    expect(agreementChunk(100, 2_000_000)).toBe(16);
    expect(agreementChunk(100_000_000, 10)).toBe(1);
    for (const [n, g] of [
      [1_000_000, 300_000],
      [100, 2_000_000],
    ] as const)
      expect(agreementChunk(n, g) * Math.max(n, g)).toBeLessThanOrEqual(2 ** 25);
  });
});

describe('harmonisation', () => {
  // Two clear humps: 6 low scores, 4 high ones.
  const scores = [0.01, 0.02, 0.03, 0.02, 0.01, 0.03, 0.97, 0.98, 0.99, 0.96];
  const options = { ema: 0.5, minSeparation: 0, varianceFloor: 5e-4, maxNoiseFraction: 1 };

  it('keeps acting once latched, even when this epoch would not open the gate', () => {
    const closed = { ...options, minSeparation: 1e9 };
    expect(harmonise(scores, null, closed).acted).toBe(false);
    const latched = harmonise(scores, null, { ...closed, latched: true });
    expect(latched.acted).toBe(true);
    expect(latched.noiseProb[9]).toBeGreaterThan(0.99);
    expect(latched.noiseProb[0]).toBeLessThan(0.01);
    // An estimate turned off (infinite gate) stays off, latch or not.
    expect(harmonise(scores, null, { ...options, minSeparation: Infinity, latched: true }).acted).toBe(false);
  });

  it('keeps the gate shut while the high component holds less than the smallest noise fraction', () => {
    // The high hump holds 4 of 10 pairs.
    const open = harmonise(scores, null, { ...options, minNoiseFraction: 0.35 });
    expect(open.acted).toBe(true);
    expect(open.gmm.weights[1]).toBeCloseTo(0.4, 3);
    const shut = harmonise(scores, null, { ...options, minNoiseFraction: 0.45 });
    expect(shut.acted).toBe(false);
    expect(Array.from(shut.noiseProb)).toEqual(Array.from({ length: scores.length }, () => 0));
    // A latched gate keeps acting whatever the fraction.
    expect(harmonise(scores, null, { ...options, minNoiseFraction: 0.45, latched: true }).acted).toBe(true);
  });

  it('blends the previous estimate in with the EMA weight', () => {
    const previous = new Float32Array(scores.length).fill(0.2);
    const first = harmonise(scores, null, options);
    const blended = harmonise(scores, previous, options);
    blended.noiseProb.forEach((p, i) => expect(p).toBeCloseTo(0.5 * 0.2 + 0.5 * (first.noiseProb[i] as number), 6));
    blended.logCleanProb.forEach((c, i) => expect(Math.exp(c)).toBeCloseTo(1 - (blended.noiseProb[i] as number), 6));
    // Blended with a previous clean probability, which takes the place of 1 - previous.
    const again = harmonise(scores, blended.noiseProb, options, blended.logCleanProb);
    again.logCleanProb.forEach((c, i) =>
      expect(Math.exp(c)).toBeCloseTo(
        0.5 * Math.exp(blended.logCleanProb[i] as number) + 0.5 * Math.exp(first.logCleanProb[i] as number),
        12,
      ),
    );
  });

  it('keeps the order of pairs whose noise probability rounds to 1 in the log of its complement', () => {
    // A narrow low hump and high scores far above it: every high posterior rounds to 1 in float32.
    const far = [0.01, 0.011, 0.012, 0.01, 0.011, 0.012, 0.5, 0.7, 0.85, 1];
    const result = harmonise(far, null, options);
    expect(result.acted).toBe(true);
    expect(Array.from(result.noiseProb.subarray(6))).toEqual([1, 1, 1, 1]);
    const logClean = Array.from(result.logCleanProb.subarray(6));
    for (const c of logClean) expect(Number.isFinite(c)).toBe(true);
    // A higher score, a smaller clean probability: the order the rounded probability lost.
    expect(logClean).toEqual([...logClean].sort((a, b) => b - a));
    expect(new Set(logClean).size).toBe(4);
    result.logCleanProb.forEach((c, i) => expect(Math.exp(c)).toBeCloseTo(1 - (result.noiseProb[i] as number), 6));
    // And through the EMA, from a previous estimate that had them at 1 too.
    const next = harmonise(far, result.noiseProb, options, result.logCleanProb);
    const nextLog = Array.from(next.logCleanProb.subarray(6));
    expect(new Set(nextLog).size).toBe(4);
    expect(nextLog).toEqual([...nextLog].sort((a, b) => b - a));
  });
});

describe('caption completion', () => {
  const at = (deg: number) => [Math.cos((deg * Math.PI) / 180), Math.sin((deg * Math.PI) / 180)];
  it("names each image's k closest concepts, the lower concept first on a tie", () => {
    // Concepts at 0° (cat), 90° (dog), 0° again (kitten: the same embedding as cat), 180° (car).
    const concepts = new Float32Array([0, 90, 0, 180].flatMap(at));
    const names = ['cat', 'dog', 'kitten', 'car'];
    const images = new Float32Array([10, 80, 170, 260].flatMap(at));
    expect(completeCaptions(images, concepts, names, 2, 2)).toEqual(['cat kitten', 'dog cat', 'car dog', 'car cat']);
    expect(completeCaptions(images, concepts, names, 2, 1)).toEqual(['cat', 'dog', 'car', 'car']);
    // More concepts asked for than there are: all of them; none: empty captions.
    expect(completeCaptions(images.subarray(0, 2), concepts, names, 2, 9)).toEqual(['cat kitten dog car']);
    expect(completeCaptions(images, new Float32Array(0), [], 2, 3)).toEqual(['', '', '', '']);
  });
});

describe('colour thumbnails for word grounding', () => {
  it('averages each cell of the grid, then centres and normalises the row', () => {
    // One 4×4 image, 2×2 cells: the top-left cell red (255, 0, 0), the rest black but one pixel of
    // the bottom-right cell, white.
    const size = 4;
    const px = new Uint8Array(size * size * 3);
    for (let y = 0; y < 2; y++) for (let x = 0; x < 2; x++) px[(y * size + x) * 3] = 255;
    px.set([255, 255, 255], (3 * size + 3) * 3);
    const rows = thumbnailRows(px, size, 2);
    expect(rows).toHaveLength(12);
    // Cell means before centring: red cell (255, 0, 0), two black cells, bottom-right (63.75 × 3).
    const raw = [255, 0, 0, 0, 0, 0, 0, 0, 0, 63.75, 63.75, 63.75];
    const mean = raw.reduce((a, b) => a + b) / 12;
    const norm = Math.hypot(...raw.map((v) => v - mean));
    raw.forEach((v, d) => expect(rows[d]).toBeCloseTo((v - mean) / norm, 6));
  });

  it('covers every pixel once when the side does not divide the image, image after image', () => {
    // Two 5×5 images, 2×2 cells of 2 and 3 pixels: a uniform image has no contrast (a zero row), a
    // one-pixel image puts it in the cell that holds the pixel.
    const size = 5;
    const px = new Uint8Array(2 * size * size * 3).fill(200, 0, size * size * 3);
    px.set([90, 90, 90], size * size * 3 + (4 * size + 4) * 3);
    const rows = thumbnailRows(px, size, 2);
    expect(rows).toHaveLength(24);
    expect(Array.from(rows.subarray(0, 12)).every((v) => v === 0)).toBe(true);
    const second = rows.subarray(12);
    // Bottom-right cell (3×3 pixels), its three colours equal and the largest.
    expect(second[9]).toBeGreaterThan(0);
    expect(second[9]).toBeCloseTo(second[11] as number, 6);
    expect(Array.from(second.subarray(0, 9)).every((v) => v < 0)).toBe(true);
    expect(Math.hypot(...second)).toBeCloseTo(1, 6);
  });

  it('sets unit rows side by side so they stay unit length and a cosine is the mean of the halves', () => {
    const a = centreRows(new Float32Array([1, 2, 3, 3, 2, 1]), 3);
    const b = new Float32Array([1, 0, 0, 1]);
    const both = sideBySide(a, 3, b, 2);
    expect(both).toHaveLength(10);
    const row = (i: number) => both.subarray(i * 5, i * 5 + 5);
    const dot = (x: Float32Array, y: Float32Array) => x.reduce((s, v, d) => s + v * (y[d] as number), 0);
    expect(dot(row(0), row(0))).toBeCloseTo(1, 6);
    // a's rows are opposite (cos −1), b's orthogonal (0): the mean is −0.5.
    expect(dot(row(0), row(1))).toBeCloseTo(-0.5, 6);
  });

  it("spreads a batch's soft targets by the softmax of κ × thumbnail cosine over the other pairs", () => {
    // Four unit rows of width 2 (cosines: rows 0 and 1 alike, 0.6; 0 and 2 orthogonal; 0 and 3 opposite).
    const rows = new Float32Array([1, 0, 0.6, 0.8, 0, 1, -1, 0]);
    // The batch takes pairs 3, 0 and 1 (in that order): row a is pair indices[a] against the others.
    const spread = thumbnailSpread(rows, [3, 0, 1], 2, 2);
    expect(spread).toHaveLength(9);
    const softmax = (xs: number[]) => xs.map((x) => Math.exp(x) / xs.reduce((s, y) => s + Math.exp(y), 0));
    // Pair 0 against pairs 3 (cos −1) and 1 (cos 0.6), κ = 2.
    const [to3, to1] = softmax([2 * -1, 2 * 0.6]);
    expect(spread[3]).toBeCloseTo(to3 as number, 6);
    expect(spread[5]).toBeCloseTo(to1 as number, 6);
    // Pair 3 against 0 (cos −1) and 1 (cos −0.6); pair 1 against 3 (−0.6) and 0 (0.6).
    const [from3to0, from3to1] = softmax([-2, -1.2]);
    expect([spread[1], spread[2]].map((v) => (v as number).toFixed(6))).toEqual(
      [from3to0, from3to1].map((v) => (v as number).toFixed(6)),
    );
    const [from1to3, from1to0] = softmax([-1.2, 1.2]);
    expect(spread[6]).toBeCloseTo(from1to3 as number, 6);
    expect(spread[7]).toBeCloseTo(from1to0 as number, 6);
    for (let a = 0; a < 3; a++) {
      expect(spread[a * 3 + a]).toBe(0);
      expect((spread[a * 3] as number) + (spread[a * 3 + 1] as number) + (spread[a * 3 + 2] as number)).toBeCloseTo(
        1,
        6,
      );
    }
    // κ = 0: the even spread over the other pairs.
    expect(Array.from(thumbnailSpread(rows, [3, 0, 1], 0, 2))).toEqual([0, 0.5, 0.5, 0.5, 0, 0.5, 0.5, 0.5, 0]);
  });
});
