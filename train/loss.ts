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
  /**
   * Multi-positive targets: a symmetric 0/1 `[B, B]` matrix (ones on the diagonal) marking pairs
   * whose captions are identical, so they are positives of each other instead of false negatives.
   * Image i's target over texts spreads its positive mass evenly over the texts marked in row i
   * (they are the same text); text i's target over images spreads it over the marked images in
   * proportion to their clean value (`cleanColumns`, default 1), so an image that probably does
   * not match the caption is not pulled towards it. @default undefined (the diagonal only)
   */
  positives?: tf.Tensor2D;
  /** Per-pair clean value in [0, 1] weighting the images of `positives` in the text→image direction. @default all 1 */
  cleanColumns?: tf.Tensor1D;
  /**
   * Where image i's mass off its own text goes over the texts, a `[B, B]` matrix whose rows sum to 1
   * with a zero diagonal: the 1 - t_i of `targets` (instead of uniformly over the other B - 1) and
   * the ε of label smoothing (instead of ε/B on every text): row i's target becomes
   * (1 - ε)·target + ε·spread. The text→image direction keeps the uniform spreads.
   * @default undefined (uniform)
   */
  imageSpread?: tf.Tensor2D;
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

  // Target matrices, row = anchor (image i over texts, text i over images).
  const eye = tf.eye(B);
  let baseImageToText: tf.Tensor2D = eye;
  let baseTextToImage: tf.Tensor2D = eye;
  if (options.positives) {
    if (options.positives.shape[0] !== B || options.positives.shape[1] !== B)
      throw new Error(`contrastiveLoss: ${B} pairs but a positives matrix of shape ${options.positives.shape}`);
    const m = tf.maximum(options.positives, eye) as tf.Tensor2D;
    baseImageToText = tf.div(m, tf.sum(m, 1, true)) as tf.Tensor2D;
    // Text i over images: other marked images count by their clean value; its own image counts 1
    // (the soft target below already scales the positive mass by its own clean value).
    const c = options.cleanColumns ? tf.expandDims(options.cleanColumns, 0) : tf.ones([1, B]);
    const weighted = tf.add(eye, tf.mul(tf.sub(m, eye), c)) as tf.Tensor2D;
    baseTextToImage = tf.div(weighted, tf.sum(weighted, 1, true)) as tf.Tensor2D;
  }
  if (options.imageSpread && (options.imageSpread.shape[0] !== B || options.imageSpread.shape[1] !== B))
    throw new Error(`contrastiveLoss: ${B} pairs but an image spread of shape ${options.imageSpread.shape}`);
  const finish = (base: tf.Tensor2D, spread?: tf.Tensor2D): tf.Tensor2D => {
    let target = base;
    if (options.targets) {
      if (options.targets.shape[0] !== B)
        throw new Error(`contrastiveLoss: ${B} pairs but ${options.targets.shape[0]} targets`);
      const t = tf.expandDims(options.targets, 1); // [B, 1]
      // The rest, 1 - t: over the texts the spread names, or evenly over the other B - 1 columns.
      const rest = spread
        ? tf.mul(spread, tf.sub(1, t))
        : tf.mul(tf.sub(1, eye), B > 1 ? tf.div(tf.sub(1, t), B - 1) : tf.zerosLike(t));
      target = tf.add(tf.mul(base, t), rest) as tf.Tensor2D;
    }
    if (smoothing > 0)
      target = tf.add(tf.mul(target, 1 - smoothing), spread ? tf.mul(spread, smoothing) : smoothing / B) as tf.Tensor2D;
    return target;
  };

  const imageToText = tf.neg(tf.sum(tf.mul(finish(baseImageToText, options.imageSpread), logProbImageToText), 1));
  const textToImage = tf.neg(tf.sum(tf.mul(finish(baseTextToImage), logProbTextToImage), 1));
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
