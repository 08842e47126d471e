import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../../train/backend.ts';
import { contrastiveLoss } from '../../train/loss.ts';

/** Three unit image rows and three unit text rows (3-4-5 and 5-12-13 triangles, exact in float32). */
const IMG = [
  [1, 0, 0],
  [0, 0.6, 0.8],
  [0.8, 0, 0.6],
];
const TXT = [
  [0.6, 0.8, 0],
  [0, 0, 1],
  [5 / 13, 0, 12 / 13],
];

/**
 * The loss written out in double precision, independent of tfjs: logits s·IMG·TXTᵀ, the target of
 * row i puts t_i on the positive and (1 - t_i)/(B - 1) elsewhere, smoothed by ε, cross-entropy in
 * both directions, averaged per pair, then a weighted mean.
 */
function reference(
  scale: number,
  options: { t?: number[]; eps?: number; w?: number[]; m?: number[][]; c?: number[]; s?: number[][] } = {},
) {
  const B = IMG.length;
  const logits = IMG.map((a) => TXT.map((b) => scale * a.reduce((s, x, k) => s + x * (b[k] as number), 0)));
  // Positive mass of anchor i on column j: one-hot, or (multi-positive) spread over the marked
  // columns, weighted by the clean value of the other images in the text→image direction.
  const positive = (i: number, j: number, textToImage: boolean) => {
    const m = options.m;
    if (!m) return i === j ? 1 : 0;
    const weight = (k: number) => (k === i ? 1 : (m[i]?.[k] as number) * (textToImage ? (options.c?.[k] ?? 1) : 1));
    let total = 0;
    for (let k = 0; k < B; k++) total += weight(k);
    return weight(j) / total;
  };
  let textToImageDirection = false;
  const target = (i: number, j: number) => {
    const t = options.t?.[i] ?? 1;
    // The rest of the mass: image i's over texts by the spread `s` when given, else evenly; so is
    // the smoothing's ε (else ε/B on every column, the positive included).
    const spread = options.s && !textToImageDirection ? (options.s[i]?.[j] as number) : null;
    const rest = spread ?? (i === j ? 0 : 1 / (B - 1));
    const base = t * positive(i, j, textToImageDirection) + (1 - t) * rest;
    const eps = options.eps ?? 0;
    return base * (1 - eps) + eps * (spread ?? 1 / B);
  };
  const ce = (row: (j: number) => number, anchor: number) => {
    let max = -Infinity;
    for (let j = 0; j < B; j++) max = Math.max(max, row(j));
    let z = 0;
    for (let j = 0; j < B; j++) z += Math.exp(row(j) - max);
    let loss = 0;
    for (let j = 0; j < B; j++) loss -= target(anchor, j) * (row(j) - max - Math.log(z));
    return loss;
  };
  const perPair = IMG.map((_, i) => {
    textToImageDirection = false;
    const imageToText = ce((j) => logits[i]?.[j] as number, i);
    textToImageDirection = true;
    const textToImage = ce((j) => logits[j]?.[i] as number, i);
    return (imageToText + textToImage) / 2;
  });
  const w = options.w ?? perPair.map(() => 1);
  const loss = perPair.reduce((s, l, i) => s + l * (w[i] as number), 0) / w.reduce((s, x) => s + x, 0);
  return { loss, perPair };
}

function run(logitScale: number, options: Parameters<typeof contrastiveLoss>[3] = {}) {
  return tf.tidy(() => {
    const { loss, perPair } = contrastiveLoss(tf.tensor2d(IMG), tf.tensor2d(TXT), tf.scalar(logitScale), options);
    return { loss: loss.dataSync()[0] as number, perPair: Array.from(perPair.dataSync()) };
  });
}

function expectClose(actual: { loss: number; perPair: number[] }, expected: { loss: number; perPair: number[] }) {
  expect(actual.loss).toBeCloseTo(expected.loss, 5);
  expect(actual.perPair.length).toBe(expected.perPair.length);
  actual.perPair.forEach((v, i) => expect(v).toBeCloseTo(expected.perPair[i] as number, 5));
}

beforeAll(async () => {
  await selectBackend('cpu');
});

describe('contrastiveLoss', () => {
  it('is symmetric InfoNCE over exp(logitScale)-scaled cosine similarities', () => {
    expectClose(run(Math.log(2)), reference(2));
    expectClose(run(Math.log(1 / 0.07)), reference(1 / 0.07));
    // Spot value, worked by hand for the first pair at scale 1: its image row has logits
    // (0.6, 0, 5/13) and its text column (0.6, 0.48, 0.48).
    const lse = (xs: number[]) => Math.log(xs.reduce((s, x) => s + Math.exp(x), 0));
    const first = (lse([0.6, 0, 5 / 13]) - 0.6 + (lse([0.6, 0.48, 0.48]) - 0.6)) / 2;
    expect(run(0).perPair[0]).toBeCloseTo(first, 5);
  });

  it('clamps the logit scale at ln(100), where its gradient is zero', () => {
    expectClose(run(10), reference(100));
    const g = tf.grad((s: tf.Tensor) => contrastiveLoss(tf.tensor2d(IMG), tf.tensor2d(TXT), s).loss);
    expect(Math.abs(g(tf.scalar(10)).dataSync()[0] as number)).toBe(0);
    expect(Math.abs(g(tf.scalar(1)).dataSync()[0] as number)).toBeGreaterThan(1e-4);
  });

  it('smooths labels: 1 - ε on the positive plus ε/B everywhere (ε = 0.1)', () => {
    expectClose(run(Math.log(5), { labelSmoothing: 0.1 }), reference(5, { eps: 0.1 }));
    expect(run(Math.log(5), { labelSmoothing: 0.1 }).loss).not.toBeCloseTo(reference(5).loss, 3);
  });

  it('equals the vanilla loss when every soft target is 1', () => {
    expectClose(run(Math.log(5), { targets: tf.tensor1d([1, 1, 1]) }), reference(5));
  });

  it('puts the clean probability on the positive and spreads the rest over the other columns', () => {
    const t = [1, 0.25, 0.6];
    expectClose(run(Math.log(5), { targets: tf.tensor1d(t) }), reference(5, { t }));
    expectClose(run(Math.log(5), { targets: tf.tensor1d(t), labelSmoothing: 0.1 }), reference(5, { t, eps: 0.1 }));
  });

  it('gives the image→text rest of a soft target to the texts a spread names; text→image keeps it even', () => {
    const t = [1, 0.25, 0.6];
    const s = [
      [0, 0.9, 0.1],
      [0.5, 0, 0.5],
      [0.2, 0.8, 0],
    ];
    const spread = run(Math.log(5), { targets: tf.tensor1d(t), imageSpread: tf.tensor2d(s) });
    expectClose(spread, reference(5, { t, s }));
    expect(spread.loss).not.toBeCloseTo(reference(5, { t }).loss, 3);
    // An even spread is the default's.
    const even = [
      [0, 0.5, 0.5],
      [0.5, 0, 0.5],
      [0.5, 0.5, 0],
    ];
    expectClose(run(Math.log(5), { targets: tf.tensor1d(t), imageSpread: tf.tensor2d(even) }), reference(5, { t }));
  });

  it("gives label smoothing's image→text ε to the texts a spread names, with or without soft targets", () => {
    const s = [
      [0, 0.9, 0.1],
      [0.5, 0, 0.5],
      [0.2, 0.8, 0],
    ];
    const smoothed = run(Math.log(5), { labelSmoothing: 0.5, imageSpread: tf.tensor2d(s) });
    expectClose(smoothed, reference(5, { eps: 0.5, s }));
    expect(smoothed.loss).not.toBeCloseTo(reference(5, { eps: 0.5 }).loss, 3);
    const t = [1, 0.25, 0.6];
    expectClose(
      run(Math.log(5), { targets: tf.tensor1d(t), labelSmoothing: 0.1, imageSpread: tf.tensor2d(s) }),
      reference(5, { t, eps: 0.1, s }),
    );
    // Without smoothing or soft targets there is nothing to spread: the plain loss.
    expectClose(run(Math.log(5), { imageSpread: tf.tensor2d(s) }), reference(5));
  });

  it('refuses a spread whose shape is not the batch by the batch', () => {
    expect(() =>
      run(Math.log(5), {
        labelSmoothing: 0.1,
        imageSpread: tf.tensor2d([
          [0, 1],
          [1, 0],
        ]),
      }),
    ).toThrow(/3 pairs but an image spread of shape 2,2/);
  });

  it('weights each pair and normalises by the sum of weights; a zero weight keeps the pair as a negative', () => {
    const w = [2, 0, 1];
    const weighted = run(Math.log(5), { weights: tf.tensor1d(w) });
    expectClose(weighted, reference(5, { w }));
    // Per-pair losses are the unweighted ones: pair 1 still shapes the softmax of pairs 0 and 2.
    expectClose(
      { loss: weighted.loss, perPair: weighted.perPair },
      { loss: reference(5, { w }).loss, perPair: reference(5).perPair },
    );
    expect(weighted.loss).toBeCloseTo(
      (2 * (reference(5).perPair[0] as number) + (reference(5).perPair[2] as number)) / 3,
      5,
    );
  });

  it('makes pairs with identical captions positives of each other (multi-positive targets)', () => {
    // Pairs 0 and 2 share a caption: image 0's target over texts is 1/2 on texts 0 and 2.
    const m = [
      [1, 0, 1],
      [0, 1, 0],
      [1, 0, 1],
    ];
    const multi = run(Math.log(5), { positives: tf.tensor2d(m) });
    expectClose(multi, reference(5, { m }));
    expect(multi.perPair[0]).not.toBeCloseTo(reference(5).perPair[0] as number, 3);
    expect(multi.perPair[1]).toBeCloseTo(reference(5).perPair[1] as number, 5);
    // A mask of the diagonal alone is the one-hot loss.
    expectClose(run(Math.log(5), { positives: tf.eye(3) as tf.Tensor2D }), reference(5));
    // With soft targets, text i weighs the other marked images by their clean values.
    const t = [0.9, 1, 0.2];
    expectClose(
      run(Math.log(5), { positives: tf.tensor2d(m), targets: tf.tensor1d(t), cleanColumns: tf.tensor1d(t) }),
      reference(5, { m, t, c: t }),
    );
  });

  it('gives the same loss and gradients as the reference formula (finite differences of the image rows)', () => {
    const img = tf.variable(tf.tensor2d(IMG));
    const { grads } = tf.variableGrads(
      () =>
        contrastiveLoss(img, tf.tensor2d(TXT), tf.scalar(Math.log(5)), { targets: tf.tensor1d([1, 0.5, 0.8]) }).loss,
      [img],
    );
    const g = grads[img.name]?.arraySync() as number[][];
    const h = 1e-6;
    for (const [i, k] of [
      [0, 0],
      [1, 2],
      [2, 1],
    ] as Array<[number, number]>) {
      const bumped = (d: number) => {
        const saved = IMG[i]?.[k] as number;
        (IMG[i] as number[])[k] = saved + d;
        const v = reference(5, { t: [1, 0.5, 0.8] }).loss;
        (IMG[i] as number[])[k] = saved;
        return v;
      };
      expect(g[i]?.[k]).toBeCloseTo((bumped(h) - bumped(-h)) / (2 * h), 4);
    }
    tf.dispose(grads);
    img.dispose();
  });
});
