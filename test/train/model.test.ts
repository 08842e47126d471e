import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../../train/backend.ts';
import {
  INITIAL_LOGIT_SCALE,
  PRESETS,
  createDualEncoder,
  matmulFlops,
  validateModelConfig,
} from '../../train/model.ts';
import { AltforgeError } from '../../corpus/errors.ts';
import { contrastiveLoss } from '../../train/loss.ts';
import { BLOCK_WEIGHT_ORDER, LN_EPS, transformerBlock, type BlockWeights } from '../../train/_transformer.ts';
import { MICRO } from './_corpus.ts';

function images(batch: number, size: number): tf.Tensor4D {
  const values = new Float32Array(batch * size * size * 3).map((_, i) => ((i * 37) % 101) / 100);
  return tf.tensor4d(values, [batch, size, size, 3]);
}

const TOKENS = [
  [5, 6, 7, 0, 0, 0],
  [8, 9, 0, 0, 0, 0],
  [10, 11, 12, 13, 14, 15],
];

beforeAll(async () => {
  await selectBackend('cpu');
});

describe('createDualEncoder', () => {
  it('encodes images and captions to L2-normalised rows of embedDim', () => {
    const model = createDualEncoder(MICRO, 1);
    try {
      const img = model.encodeImages(images(3, 16));
      const txt = model.encodeTexts(tf.tensor2d(TOKENS, [3, 6], 'int32'));
      expect(img.shape).toEqual([3, 8]);
      expect(txt.shape).toEqual([3, 8]);
      for (const t of [img, txt]) {
        const norms = tf.sqrt(tf.sum(tf.square(t), 1)).arraySync() as number[];
        for (const n of norms) expect(n).toBeCloseTo(1, 5);
      }
      tf.dispose([img, txt]);
    } finally {
      model.dispose();
    }
  });

  it('starts the logit scale at ln(1/0.07)', () => {
    const model = createDualEncoder(MICRO, 1);
    expect(model.logitScale.shape).toEqual([]);
    expect(model.logitScale.dataSync()[0]).toBeCloseTo(2.65926, 5);
    expect(INITIAL_LOGIT_SCALE).toBeCloseTo(Math.log(1 / 0.07), 12);
    model.dispose();
  });

  it('gives the same weights and embeddings for a seed, and others for another seed', () => {
    const a = createDualEncoder(MICRO, 7);
    const b = createDualEncoder(MICRO, 7);
    const c = createDualEncoder(MICRO, 8);
    try {
      const input = images(2, 16);
      const ea = a.encodeImages(input).arraySync();
      const eb = b.encodeImages(input).arraySync();
      const ec = c.encodeImages(input).arraySync();
      expect(eb).toEqual(ea);
      expect(ec).not.toEqual(ea);
      a.variables.forEach((v, i) => {
        expect(Array.from(v.dataSync())).toEqual(Array.from((b.variables[i] as tf.Variable).dataSync()));
      });
    } finally {
      a.dispose();
      b.dispose();
      c.dispose();
    }
  });

  it('names every variable stably, once, in the same order for every instance', () => {
    const a = createDualEncoder(MICRO, 1);
    const b = createDualEncoder(MICRO, 2);
    try {
      expect(a.variableNames).toEqual(b.variableNames);
      expect(new Set(a.variableNames).size).toBe(a.variableNames.length);
      expect(a.variableNames.length).toBe(a.variables.length);
      expect(a.variableNames).toContain('vision/patch/w');
      expect(a.variableNames).toContain('vision/blocks/0/attn/q/w');
      expect(a.variableNames).toContain('text/token');
      expect(a.variableNames[a.variableNames.length - 1]).toBe('logit_scale');
      expect(a.variables[a.variables.length - 1]).toBe(a.logitScale);
      expect(a.namedVariables().get('text/token')?.shape).toEqual([30, 16]);
      // 2 towers: patch (192·16+16) + pos (4·16) + ln_pre/post (4·16) + proj (16·8)
      // + block (2·16 + 3·(16·16+16) + 16·16+16 + 2·16 + 16·64+64 + 64·16+16) per tower;
      // text: token (30·16) + pos (6·16) + ln_final (2·16) + proj (16·8); + logit scale.
      const block = 32 + 816 + 272 + 32 + 1088 + 1040;
      const vision = 192 * 16 + 16 + 64 + 64 + 128 + block;
      const text = 480 + 96 + 32 + 128 + block;
      expect(a.parameterCount()).toBe(vision + text + 1);
    } finally {
      a.dispose();
      b.dispose();
    }
  });

  it('encodes an all-padding caption to finite numbers', () => {
    const model = createDualEncoder(MICRO, 1);
    const out = model.encodeTexts(tf.zeros([1, 6], 'int32') as tf.Tensor2D);
    expect(Array.from(out.dataSync()).every(Number.isFinite)).toBe(true);
    out.dispose();
    model.dispose();
  });

  it('loads the weights of another instance by name and then encodes identically', () => {
    const a = createDualEncoder(MICRO, 1);
    const b = createDualEncoder(MICRO, 2);
    try {
      const saved = new Map([...a.namedVariables()].map(([name, v]) => [name, new Float32Array(v.dataSync())]));
      b.loadWeights(saved);
      const tokens = tf.tensor2d(TOKENS, [3, 6], 'int32');
      expect(b.encodeTexts(tokens).arraySync()).toEqual(a.encodeTexts(tokens).arraySync());
    } finally {
      a.dispose();
      b.dispose();
    }
  });

  it('refuses weights of another config with ERR_CHECKPOINT_MISMATCH, naming the variable', () => {
    const a = createDualEncoder({ ...MICRO, vocabSize: 31 }, 1);
    const b = createDualEncoder(MICRO, 2);
    try {
      const before = Array.from((b.namedVariables().get('vision/patch/w') as tf.Variable).dataSync());
      let error: unknown;
      try {
        b.loadWeights(a.namedVariables());
      } catch (err) {
        error = err;
      }
      expect(error).toBeInstanceOf(AltforgeError);
      expect((error as AltforgeError).code).toBe('ERR_CHECKPOINT_MISMATCH');
      expect((error as Error).message).toContain('text/token has shape [31, 16], expected [30, 16]');
      // Nothing was assigned.
      expect(Array.from((b.namedVariables().get('vision/patch/w') as tf.Variable).dataSync())).toEqual(before);
    } finally {
      a.dispose();
      b.dispose();
    }
  });

  it('rejects a config whose image is not a whole number of patches', () => {
    expect(() => validateModelConfig({ ...MICRO, imageSize: 20 })).toThrow(
      "Model config 'imageSize': expected a multiple of patchSize 8, got `20`",
    );
    expect(() => validateModelConfig({ ...MICRO, textWidth: 15 })).toThrow(/textWidth.*multiple of textHeads 2/);
    expect(() => validateModelConfig({ ...PRESETS.tiny, vocabSize: 4096 })).not.toThrow();
    expect(() => validateModelConfig({ ...PRESETS.small, vocabSize: 4096 })).not.toThrow();
  });

  it('sums the token-embedding gradient over repeated tokens (ScatterNd, not UnsortedSegmentSum)', () => {
    const model = createDualEncoder(MICRO, 3);
    try {
      const tokens = tf.tensor2d([[5, 5, 5, 9, 0, 0]], [1, 6], 'int32');
      const table = model.namedVariables().get('text/token') as tf.Variable;
      const probe = tf.tensor1d([1, -2, 3, -1, 0.5, 2, -3, 1]);
      const objective = () => tf.sum(tf.mul(model.encodeTexts(tokens), probe)) as tf.Scalar;
      const { grads } = tf.variableGrads(objective, [table]);
      const g = grads[table.name]?.arraySync() as number[][];
      const rowNorm = (r: number[] | undefined) => Math.hypot(...(r ?? []));
      // Unused tokens, and padding (masked out of attention and pooling), get no gradient.
      expect(rowNorm(g[0])).toBe(0);
      expect(rowNorm(g[6])).toBe(0);
      expect(rowNorm(g[29])).toBe(0);
      // Token 5 occurs three times: its gradient is the sum over the three positions, which a
      // central finite difference of the same function confirms.
      const direction = (j: number) => (j % 5) - 2 + j / 16;
      const f = (delta: number) =>
        tf.tidy(() => {
          const saved = table.clone();
          const bump = tf.buffer([30, 16], 'float32');
          for (let j = 0; j < 16; j++) bump.set(delta * direction(j), 5, j);
          table.assign(tf.add(saved, bump.toTensor()));
          const value = objective().dataSync()[0] as number;
          table.assign(saved);
          return value;
        });
      const numeric = (f(1e-3) - f(-1e-3)) / 2e-3;
      const analytic = (g[5] ?? []).reduce((a, b, j) => a + b * direction(j), 0);
      expect(Math.abs(analytic)).toBeGreaterThan(1e-3);
      expect(Math.abs(numeric - analytic)).toBeLessThan(0.02 * Math.abs(analytic));
      tf.dispose(grads);
    } finally {
      model.dispose();
    }
  });
});

describe('training', () => {
  it('learns to match four images to their captions with a few Adam steps', () => {
    const model = createDualEncoder(MICRO, 5);
    const optimizer = tf.train.adam(1e-2);
    // Four images of distinct flat colours and four distinct captions.
    const colours = [
      [1, 0, 0],
      [0, 1, 0],
      [0, 0, 1],
      [1, 1, 0],
    ];
    const colourImages = tf.tensor4d(
      colours.flatMap((c) => Array.from({ length: 16 * 16 }, () => c).flat()),
      [4, 16, 16, 3],
    );
    const tokens = tf.tensor2d(
      [
        [5, 6, 0, 0, 0, 0],
        [7, 8, 9, 0, 0, 0],
        [10, 0, 0, 0, 0, 0],
        [11, 12, 13, 14, 0, 0],
      ],
      [4, 6],
      'int32',
    );
    const losses: number[] = [];
    for (let step = 0; step < 25; step++) {
      const { value, grads } = tf.variableGrads(
        () => contrastiveLoss(model.encodeImages(colourImages), model.encodeTexts(tokens), model.logitScale).loss,
        model.variables,
      );
      optimizer.applyGradients(grads as Record<string, tf.Variable>);
      losses.push(value.dataSync()[0] as number);
      tf.dispose(grads);
      value.dispose();
    }
    // Chance is ln 4 ≈ 1.386; the pairs are learned.
    expect(losses[0]).toBeGreaterThan(0.9);
    expect(losses[losses.length - 1]).toBeLessThan(0.1);
    const retrieved = tf.tidy(() =>
      tf.argMax(tf.matMul(model.encodeImages(colourImages), model.encodeTexts(tokens), false, true), 1).arraySync(),
    );
    expect(retrieved).toEqual([0, 1, 2, 3]);
    optimizer.dispose();
    model.dispose();
  });
});

describe('matmulFlops', () => {
  it('counts 2·M·N·K for every product of a forward pass and three times that for a step', () => {
    // Hand count for MICRO at batch 2. Vision: 4 patches of 192 values, width 16.
    //   patch embed 2·(2·4)·192·16 = 49152; block: qkv/out/mlp 2·8·12·16² = 49152,
    //   scores + weighted values 2·2·2·4²·16 = 2048; proj 2·2·16·8 = 512.
    // Text: 6 tokens. block 2·12·12·16² = 73728, attention 2·2·2·6²·16 = 4608; proj 512.
    // Logits 2·2·2·8 = 64.
    const forward = 49152 + 49152 + 2048 + 512 + 73728 + 4608 + 512 + 64;
    expect(matmulFlops(MICRO, 2)).toEqual({ forward, step: 3 * forward });
  });
});

describe('transformerBlock', () => {
  /** The same block written with plain tf ops, differentiated by tfjs's autodiff. */
  function referenceBlock(x: tf.Tensor3D, w: BlockWeights, heads: number, keyBias?: tf.Tensor): tf.Tensor {
    const [B, T, W] = x.shape;
    const dh = W / heads;
    const ln = (t: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => {
      const c = tf.sub(t, tf.mean(t, -1, true));
      return tf.add(tf.mul(tf.mul(c, tf.rsqrt(tf.add(tf.mean(tf.square(c), -1, true), LN_EPS))), g), b);
    };
    const lin = (t: tf.Tensor, wt: tf.Tensor, b: tf.Tensor) => tf.add(tf.matMul(tf.reshape(t, [B * T, -1]), wt), b);
    const heads4 = (t: tf.Tensor) => tf.transpose(tf.reshape(t, [B, T, heads, dh]), [0, 2, 1, 3]);
    const h = ln(x, w.ln1g, w.ln1b);
    const q = heads4(tf.div(lin(h, w.qW, w.qB), Math.sqrt(dh)));
    const k = heads4(lin(h, w.kW, w.kB));
    const v = heads4(lin(h, w.vW, w.vB));
    let s = tf.matMul(q, k, false, true);
    if (keyBias) s = tf.add(s, keyBias);
    const o = tf.reshape(tf.transpose(tf.matMul(tf.softmax(s), v), [0, 2, 1, 3]), [B * T, W]);
    const x1 = tf.add(x, tf.reshape(lin(o, w.outW, w.outB), [B, T, W]));
    const f = lin(ln(x1, w.ln2g, w.ln2b), w.fcW, w.fcB);
    const m = lin(tf.mul(f, tf.sigmoid(tf.mul(f, 1.702))), w.projW, w.projB);
    return tf.add(x1, tf.reshape(m, [B, T, W]));
  }

  it('has the forward values and gradients of the same block under autodiff, padding mask included', () => {
    const W = 8;
    const shapes: Record<(typeof BLOCK_WEIGHT_ORDER)[number], number[]> = {
      ln1g: [W],
      ln1b: [W],
      qW: [W, W],
      qB: [W],
      kW: [W, W],
      kB: [W],
      vW: [W, W],
      vB: [W],
      outW: [W, W],
      outB: [W],
      ln2g: [W],
      ln2b: [W],
      fcW: [W, 4 * W],
      fcB: [4 * W],
      projW: [4 * W, W],
      projB: [W],
    };
    const weights = Object.fromEntries(
      BLOCK_WEIGHT_ORDER.map((name, i) => {
        const shape = shapes[name];
        const size = shape.reduce((a, b) => a * b, 1);
        const base = name.endsWith('g') && name.startsWith('ln') ? 1 : 0;
        const values = Array.from(
          { length: size },
          (_, j) => base + ((((j + 1) * (i + 3) * 7919) % 997) / 997 - 0.5) * 0.6,
        );
        return [name, tf.variable(tf.tensor(values, shape))];
      }),
    ) as unknown as BlockWeights;
    const x = tf.tensor3d(
      Array.from({ length: 2 * 5 * W }, (_, j) => Math.sin(j * 1.3)),
      [2, 5, W],
    );
    // Second sequence: its last two positions are padding.
    const keyBias = tf.tensor4d([0, 0, 0, 0, 0, 0, 0, 0, -1e9, -1e9], [2, 1, 1, 5]);
    const probe = tf.tensor3d(
      Array.from({ length: 2 * 5 * W }, (_, j) => Math.cos(j * 0.7)),
      [2, 5, W],
    );
    const vars = BLOCK_WEIGHT_ORDER.map((n) => weights[n]);
    const run = (f: (x: tf.Tensor3D) => tf.Tensor) => {
      const { value, grads } = tf.variableGrads(() => tf.sum(tf.mul(f(x), probe)) as tf.Scalar, vars);
      const dx = tf.grad((input: tf.Tensor) => tf.sum(tf.mul(f(input as tf.Tensor3D), probe)))(x);
      return {
        value: value.dataSync()[0] as number,
        grads: vars.map((v) => Array.from(grads[v.name]?.dataSync() ?? [])),
        dx: Array.from(dx.dataSync()),
      };
    };
    const mine = run((input) => transformerBlock(input, weights, 2, keyBias));
    const reference = run((input) => referenceBlock(input, weights, 2, keyBias));
    expect(mine.value).toBeCloseTo(reference.value, 4);
    const close = (a: number[], b: number[], what: string) => {
      expect(a.length, what).toBe(b.length);
      const scale = Math.max(1e-3, ...b.map(Math.abs));
      let worst = 0;
      for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs((a[i] as number) - (b[i] as number)));
      expect(worst / scale, what).toBeLessThan(1e-4);
    };
    close(mine.dx, reference.dx, 'dx');
    BLOCK_WEIGHT_ORDER.forEach((name, i) => close(mine.grads[i] as number[], reference.grads[i] as number[], name));
    expect(mine.dx.some((v) => Math.abs(v) > 1e-3)).toBe(true);
    for (const v of vars) v.dispose();
  });
});
