/**
 * The contrastive loss: CLIP's symmetric InfoNCE over the cosine similarities of a batch, with the
 * robust variants the noise-robust recipe needs (per-pair soft targets and per-pair weights).
 *
 * In every variant each pair stays a negative for the other rows and columns: only the target
 * distribution of its own row and column, or its weight in the mean, changes.
 */
import * as tf from '@tensorflow/tfjs-core';
import { MAX_LOGIT_SCALE } from './model.ts';

/** Options of {@link contrastiveLoss}. */
export interface LossOptions {
  /**
   * Label smoothing ε: the target puts 1 - ε on the positive and ε/B on every column, the positive
   * included (TensorFlow's convention, which ALIGN ports use with 0.1). @default 0
   */
  labelSmoothing?: number;
  /**
   * Per-pair clean probability t_i in [0,1] (NLIP-style soft targets): row i's target puts t_i on
   * its positive and spreads 1 - t_i uniformly over the other B - 1 columns, in both directions.
   * Label smoothing, if any, is applied on top. @default undefined (one-hot targets)
   */
  targets?: tf.Tensor1D;
  /**
   * Per-pair weights w_i >= 0: the loss is Σ w_i·ℓ_i / Σ w_i instead of the mean of ℓ_i.
   * @default undefined (every pair weighs 1)
   */
  weights?: tf.Tensor1D;
}

/**
 * Symmetric InfoNCE over `exp(min(logitScale, ln 100)) · img · txtᵀ`.
 *
 * `img` and `txt` are L2-normalised [B, D] embeddings where row i of each is pair i. Returns the
 * scalar loss (differentiable) and the per-pair loss ℓ_i = (CE of image i over texts + CE of text
 * i over images) / 2, before weighting. Both are created in the caller's scope: inside
 * `tf.variableGrads` only `loss` survives, so take `perPair` from a separate, gradient-free call
 * when you need it (as noise scoring does).
 */
export function contrastiveLoss(
  img: tf.Tensor2D,
  txt: tf.Tensor2D,
  logitScale: tf.Tensor,
  options: LossOptions = {},
): { loss: tf.Scalar; perPair: tf.Tensor1D } {
  const B = img.shape[0];
  if (txt.shape[0] !== B) throw new Error(`contrastiveLoss: ${B} images but ${txt.shape[0]} texts`);
  const smoothing = options.labelSmoothing ?? 0;
  if (!(smoothing >= 0 && smoothing < 1))
    throw new Error(`contrastiveLoss: labelSmoothing must be in [0, 1), got ${smoothing}`);

  const scale = tf.exp(tf.minimum(logitScale, MAX_LOGIT_SCALE));
  const logits = tf.mul(scale, tf.matMul(img, txt, false, true)) as tf.Tensor2D; // [B images, B texts]
  const logProbImageToText = tf.logSoftmax(logits, 1);
  const logProbTextToImage = tf.logSoftmax(tf.transpose(logits), 1);

  // Target matrix, row = anchor (image i for one direction, text i for the other).
  const eye = tf.eye(B);
  let target: tf.Tensor2D = eye;
  if (options.targets) {
    if (options.targets.shape[0] !== B)
      throw new Error(`contrastiveLoss: ${B} pairs but ${options.targets.shape[0]} targets`);
    const t = tf.expandDims(options.targets, 1); // [B, 1]
    const rest = B > 1 ? tf.div(tf.sub(1, t), B - 1) : tf.zerosLike(t);
    target = tf.add(tf.mul(eye, t), tf.mul(tf.sub(1, eye), rest)) as tf.Tensor2D;
  }
  if (smoothing > 0) target = tf.add(tf.mul(target, 1 - smoothing), smoothing / B) as tf.Tensor2D;

  const imageToText = tf.neg(tf.sum(tf.mul(target, logProbImageToText), 1));
  const textToImage = tf.neg(tf.sum(tf.mul(target, logProbTextToImage), 1));
  const perPair = tf.mul(tf.add(imageToText, textToImage), 0.5) as tf.Tensor1D;

  let loss: tf.Scalar;
  if (options.weights) {
    if (options.weights.shape[0] !== B)
      throw new Error(`contrastiveLoss: ${B} pairs but ${options.weights.shape[0]} weights`);
    loss = tf.div(tf.sum(tf.mul(perPair, options.weights)), tf.maximum(tf.sum(options.weights), 1e-12)) as tf.Scalar;
  } else {
    loss = tf.mean(perPair) as tf.Scalar;
  }
  return { loss, perPair };
}
