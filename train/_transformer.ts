/**
 * One pre-norm transformer block (LayerNorm, multi-head attention, LayerNorm, QuickGELU MLP, two
 * residuals) with a hand-written backward pass.
 *
 * Autodiff over the same ops keeps every intermediate the kernels' gradients ask for (about three
 * times the activations) and runs about twice the kernels. The hand-written backward saves only
 * x̂ and 1/σ of both LayerNorms, q, k, v, the attention probabilities, the attention output and
 * the MLP pre-activation, recomputing the cheap rest; that is what lets the `small` preset train
 * at batch 256 inside the wasm backend's 4 GB heap. Only MatMul, Mul, Add, Sub, Mean, Sum, Rsqrt,
 * Sigmoid, Softmax, Reshape and Transpose are used, so every backend runs it.
 */
import * as tf from '@tensorflow/tfjs-core';

/** The variables of one block, in the order the backward pass returns their gradients. */
export interface BlockWeights {
  ln1g: tf.Variable;
  ln1b: tf.Variable;
  qW: tf.Variable;
  qB: tf.Variable;
  kW: tf.Variable;
  kB: tf.Variable;
  vW: tf.Variable;
  vB: tf.Variable;
  outW: tf.Variable;
  outB: tf.Variable;
  ln2g: tf.Variable;
  ln2b: tf.Variable;
  fcW: tf.Variable;
  fcB: tf.Variable;
  projW: tf.Variable;
  projB: tf.Variable;
}

/** Field order of {@link BlockWeights}; the gradients come back in this order. */
export const BLOCK_WEIGHT_ORDER = [
  'ln1g',
  'ln1b',
  'qW',
  'qB',
  'kW',
  'kB',
  'vW',
  'vB',
  'outW',
  'outB',
  'ln2g',
  'ln2b',
  'fcW',
  'fcB',
  'projW',
  'projB',
] as const satisfies ReadonlyArray<keyof BlockWeights>;

export const LN_EPS = 1e-5;
const GELU_K = 1.702;

/** x̂ and 1/σ of a LayerNorm over the last axis. */
function normalise(x: tf.Tensor): { xhat: tf.Tensor; rstd: tf.Tensor } {
  const centred = tf.sub(x, tf.mean(x, -1, true));
  const rstd = tf.rsqrt(tf.add(tf.mean(tf.square(centred), -1, true), LN_EPS));
  return { xhat: tf.mul(centred, rstd), rstd };
}

/** Gradient of LayerNorm's input from dx̂: 1/σ · (dx̂ - mean(dx̂) - x̂ · mean(dx̂ · x̂)). */
function normaliseBackward(dxhat: tf.Tensor, xhat: tf.Tensor, rstd: tf.Tensor): tf.Tensor {
  return tf.mul(
    rstd,
    tf.sub(tf.sub(dxhat, tf.mean(dxhat, -1, true)), tf.mul(xhat, tf.mean(tf.mul(dxhat, xhat), -1, true))),
  );
}

/**
 * The block over x [B, T, W]. `keyBias` [B, 1, 1, T], when given, is added to the attention
 * scores (0 for real tokens, a large negative number for padding).
 */
export function transformerBlock(x: tf.Tensor3D, w: BlockWeights, heads: number, keyBias?: tf.Tensor): tf.Tensor3D {
  const [B, T, W] = x.shape;
  const N = B * T;
  const dh = W / heads;
  const scale = 1 / Math.sqrt(dh);
  const toHeads = (t: tf.Tensor) => tf.transpose(tf.reshape(t, [B, T, heads, dh]), [0, 2, 1, 3]);
  const fromHeads = (t: tf.Tensor) => tf.reshape(tf.transpose(t, [0, 2, 1, 3]), [N, W]) as tf.Tensor2D;
  const dense = (a: tf.Tensor, weight: tf.Tensor, bias: tf.Tensor) =>
    tf.fused.matMul({ a: a as tf.Tensor2D, b: weight as tf.Tensor2D, bias });
  const weights = BLOCK_WEIGHT_ORDER.map((k) => w[k]);

  const block = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const input = args[0] as tf.Tensor;
    const save = args[args.length - 1] as tf.GradSaveFunc;
    const x2 = tf.reshape(input, [N, W]);
    // Attention half.
    const ln1 = normalise(x2);
    const h1 = tf.add(tf.mul(ln1.xhat, w.ln1g), w.ln1b);
    const qh = toHeads(tf.mul(dense(h1, w.qW, w.qB), scale));
    const kh = toHeads(dense(h1, w.kW, w.kB));
    const vh = toHeads(dense(h1, w.vW, w.vB));
    let scores = tf.matMul(qh, kh, false, true);
    if (keyBias) scores = tf.add(scores, keyBias);
    const probs = tf.softmax(scores);
    const attended = fromHeads(tf.matMul(probs, vh));
    const x1 = tf.add(x2, dense(attended, w.outW, w.outB));
    // MLP half.
    const ln2 = normalise(x1);
    const h2 = tf.add(tf.mul(ln2.xhat, w.ln2g), w.ln2b);
    const pre = dense(h2, w.fcW, w.fcB);
    const activated = tf.mul(pre, tf.sigmoid(tf.mul(pre, GELU_K)));
    const out = tf.add(x1, dense(activated, w.projW, w.projB));
    save([ln1.xhat, ln1.rstd, qh, kh, vh, probs, attended, ln2.xhat, ln2.rstd, pre]);
    return {
      value: tf.reshape(out, [B, T, W]),
      // tfjs calls a custom gradient outside any tidy scope: without this tidy every
      // intermediate of every block's backward pass would live until the whole backward ends.
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) =>
        tf.tidy(() => {
          const [xhat1, rstd1, sq, sk, sv, sp, so, xhat2, rstd2, sf] = saved as [
            tf.Tensor,
            tf.Tensor,
            tf.Tensor,
            tf.Tensor,
            tf.Tensor,
            tf.Tensor,
            tf.Tensor2D,
            tf.Tensor,
            tf.Tensor,
            tf.Tensor2D,
          ];
          const rows = (t: tf.Tensor) => tf.sum(t, 0);
          const dOut = tf.reshape(dy, [N, W]) as tf.Tensor2D;
          // MLP: out = x1 + act(h2·fcW + fcB)·projW + projB
          const kf = tf.mul(sf, GELU_K);
          const sig = tf.sigmoid(kf);
          const act = tf.mul(sf, sig) as tf.Tensor2D;
          const dProjW = tf.matMul(act, dOut, true, false);
          const dProjB = rows(dOut);
          const dAct = tf.matMul(dOut, w.projW as tf.Tensor2D, false, true);
          // d/df f·σ(kf) = σ(kf)·(1 + k·f·(1 - σ(kf)))
          const dPre = tf.mul(dAct, tf.mul(sig, tf.add(1, tf.mul(kf, tf.sub(1, sig))))) as tf.Tensor2D;
          const h2r = tf.add(tf.mul(xhat2, w.ln2g), w.ln2b) as tf.Tensor2D;
          const dFcW = tf.matMul(h2r, dPre, true, false);
          const dFcB = rows(dPre);
          const dH2 = tf.matMul(dPre, w.fcW as tf.Tensor2D, false, true);
          const dLn2g = rows(tf.mul(dH2, xhat2));
          const dLn2b = rows(dH2);
          const dX1 = tf.add(dOut, normaliseBackward(tf.mul(dH2, w.ln2g), xhat2, rstd2)) as tf.Tensor2D;
          // Attention: x1 = x + attended·outW + outB
          const dOutW = tf.matMul(so, dX1, true, false);
          const dOutB = rows(dX1);
          const dAttendedHeads = toHeads(tf.matMul(dX1, w.outW as tf.Tensor2D, false, true));
          const dProbs = tf.matMul(dAttendedHeads, sv, false, true);
          const dVh = tf.matMul(sp, dAttendedHeads, true, false);
          const dScores = tf.mul(sp, tf.sub(dProbs, tf.sum(tf.mul(dProbs, sp), -1, true)));
          const dQh = tf.matMul(dScores, sk);
          const dKh = tf.matMul(dScores, sq, true, false);
          const dQ = tf.mul(fromHeads(dQh), scale) as tf.Tensor2D;
          const dK = fromHeads(dKh);
          const dV = fromHeads(dVh);
          const h1r = tf.add(tf.mul(xhat1, w.ln1g), w.ln1b) as tf.Tensor2D;
          const dH1 = tf.addN([
            tf.matMul(dQ, w.qW as tf.Tensor2D, false, true),
            tf.matMul(dK, w.kW as tf.Tensor2D, false, true),
            tf.matMul(dV, w.vW as tf.Tensor2D, false, true),
          ]);
          const dX = tf.add(dX1, normaliseBackward(tf.mul(dH1, w.ln1g), xhat1, rstd1));
          return [
            tf.reshape(dX, [B, T, W]),
            rows(tf.mul(dH1, xhat1)),
            rows(dH1),
            tf.matMul(h1r, dQ, true, false),
            rows(dQ),
            tf.matMul(h1r, dK, true, false),
            rows(dK),
            tf.matMul(h1r, dV, true, false),
            rows(dV),
            dOutW,
            dOutB,
            dLn2g,
            dLn2b,
            dFcW,
            dFcB,
            dProjW,
            dProjB,
          ];
        }),
    };
  });
  return block(x, ...weights) as tf.Tensor3D;
}
