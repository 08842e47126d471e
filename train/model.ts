/**
 * The dual encoder the train stage learns: a ViT image tower and a transformer text tower, each
 * projected to a shared dimension and L2-normalised (CLIP's design, sized for a CPU).
 *
 * Every op here has its forward and gradient kernels on the `cpu`, `wasm` and `tensorflow`
 * backends, so one model trains everywhere: the patch embedding is a reshape/transpose plus a
 * matmul (no Conv2D, whose filter gradient wasm lacks), and the token embedding is a gather whose
 * gradient is built with ScatterNd (the stock GatherV2 gradient needs UnsortedSegmentSum, which
 * wasm lacks too). Linear layers use `tf.fused.matMul`, so the BLAS kernels of `wasm-blas` take
 * every dense product, forward and backward.
 */
import * as tf from '@tensorflow/tfjs-core';
// tfjs-core ships no gradient functions: the union package registers them (and the cpu backend).
// Only its side effects are used; the model itself is written against tfjs-core.
import '@tensorflow/tfjs';
import { UsageError } from '../corpus/errors.ts';
import { createRandom } from '../corpus/random.ts';
import { LN_EPS, transformerBlock, type BlockWeights } from './_transformer.ts';

/** The shape of a dual encoder. Stored with every checkpoint; a checkpoint only loads into the same shape. */
/** The fields that define a model's shapes: a checkpoint fits a run only when all of them agree. */
export const MODEL_CONFIG_FIELDS = [
  'imageSize',
  'patchSize',
  'channels',
  'visionWidth',
  'visionDepth',
  'visionHeads',
  'textWidth',
  'textDepth',
  'textHeads',
  'contextLength',
  'vocabSize',
  'embedDim',
] as const;

export interface ModelConfig {
  /** Name of the preset it came from, for logs only. */
  preset?: string;
  /** Side of the square input image in pixels; a multiple of `patchSize`. */
  imageSize: number;
  /** Side of a square ViT patch in pixels. */
  patchSize: number;
  /** Colour channels of the input (RGB). */
  channels: 3;
  /** Width of the image transformer; a multiple of `visionHeads`. */
  visionWidth: number;
  /** Transformer blocks of the image tower. */
  visionDepth: number;
  /** Attention heads of the image tower. */
  visionHeads: number;
  /** Width of the text transformer; a multiple of `textHeads`. */
  textWidth: number;
  /** Transformer blocks of the text tower. */
  textDepth: number;
  /** Attention heads of the text tower. */
  textHeads: number;
  /** Tokens per caption (padded with 0, truncated beyond). */
  contextLength: number;
  /** Size of the tokenizer's vocabulary (ids 0..vocabSize-1; 0 is padding). */
  vocabSize: number;
  /** Dimension of the shared, L2-normalised embedding space. */
  embedDim: number;
}

/**
 * Model sizes. `tiny` (32 px, 16 patches, width 128, 2 blocks per tower) trains a demo corpus in
 * minutes on two cores; `small` (64 px, 64 patches, width 256, 4 blocks) is the size worth
 * evaluating. Both use 8 px patches, which suit 28 px Fashion-MNIST and 64 px emoji alike.
 */
export const PRESETS: Record<'tiny' | 'small', Omit<ModelConfig, 'vocabSize'>> = {
  tiny: {
    preset: 'tiny',
    imageSize: 32,
    patchSize: 8,
    channels: 3,
    visionWidth: 128,
    visionDepth: 2,
    visionHeads: 4,
    textWidth: 128,
    textDepth: 2,
    textHeads: 4,
    contextLength: 32,
    embedDim: 128,
  },
  small: {
    preset: 'small',
    imageSize: 64,
    patchSize: 8,
    channels: 3,
    visionWidth: 256,
    visionDepth: 4,
    visionHeads: 4,
    textWidth: 256,
    textDepth: 4,
    textHeads: 4,
    contextLength: 32,
    embedDim: 256,
  },
};

/** ln(1/0.07): CLIP's initial logit scale (temperature 0.07). */
export const INITIAL_LOGIT_SCALE = Math.log(1 / 0.07);
/** ln(100): the logit scale is clamped here (CLIP), so the temperature never falls below 0.01. */
export const MAX_LOGIT_SCALE = Math.log(100);

/** A dual encoder: its variables and the two encoders. */
export interface DualEncoder {
  config: ModelConfig;
  /**
   * Every trainable variable (logitScale included, last), in a stable order. Their stable names,
   * the ones checkpoints save them by, are in `variableNames` at the same index (e.g.
   * `vision/blocks/0/attn/q/w`); `tf.Variable.name` adds a per-instance prefix so that two
   * models can live in one process.
   */
  variables: tf.Variable[];
  /** Stable name of each of `variables`, same order. */
  variableNames: string[];
  /** Scalar, initialised to ln(1/0.07); the loss clamps it at ln(100). */
  logitScale: tf.Variable;
  /** images: float32 [B, H, W, 3] in [0,1] -> L2-normalised [B, embedDim] */
  encodeImages(images: tf.Tensor4D): tf.Tensor2D;
  /** tokens: int32 [B, contextLength], 0 = padding -> L2-normalised [B, embedDim] */
  encodeTexts(tokens: tf.Tensor2D): tf.Tensor2D;
  /** The variables by stable name. */
  namedVariables(): Map<string, tf.Variable>;
  /**
   * Assigns weights by stable name (a checkpoint's). Every variable must be present with its exact
   * shape; otherwise nothing is assigned and a UsageError (`ERR_CHECKPOINT_MISMATCH`) says which.
   */
  loadWeights(weights: ReadonlyMap<string, tf.Tensor | Float32Array>): void;
  /** Number of trainable scalars. */
  parameterCount(): number;
  dispose(): void;
}

/**
 * Checks a config: positive integers, image divisible into patches, widths divisible into heads.
 * Throws a UsageError (`ERR_INVALID_MODEL_CONFIG`) naming the field.
 */
export function validateModelConfig(config: ModelConfig): void {
  const fail = (field: string, why: string): never => {
    throw new UsageError(
      'ERR_INVALID_MODEL_CONFIG',
      `Model config '${field}': ${why}, got \`${String((config as unknown as Record<string, unknown>)[field])}\``,
      { context: { stage: 'train', option: field } },
    );
  };
  for (const field of MODEL_CONFIG_FIELDS) {
    if (field === 'channels') continue;
    const v = config[field];
    if (!Number.isInteger(v) || v < 1) fail(field, 'expected a positive integer');
  }
  if (config.channels !== 3) fail('channels', 'expected 3');
  if (config.imageSize % config.patchSize !== 0)
    fail('imageSize', `expected a multiple of patchSize ${config.patchSize}`);
  if (config.visionWidth % config.visionHeads !== 0)
    fail('visionWidth', `expected a multiple of visionHeads ${config.visionHeads}`);
  if (config.textWidth % config.textHeads !== 0)
    fail('textWidth', `expected a multiple of textHeads ${config.textHeads}`);
  if (config.vocabSize < 2) fail('vocabSize', 'expected at least 2 (padding and one token)');
}

/**
 * Multiply-add work of the model's matrix products, counted as 2·M·N·K floating-point operations
 * per product: `forward` for encoding `batch` images and `batch` captions plus the B×B logits,
 * `step` for a training step (forward, and a backward that costs twice the forward).
 */
export function matmulFlops(config: ModelConfig, batch: number): { forward: number; step: number } {
  const B = batch;
  const grid = config.imageSize / config.patchSize;
  const N = grid * grid;
  const patchDim = config.patchSize * config.patchSize * config.channels;
  const tower = (tokens: number, width: number, depth: number) =>
    // qkv (3 W²) + attention out (W²) + MLP (8 W²) per token, plus scores and weighted values.
    depth * (2 * B * tokens * 12 * width * width + 2 * 2 * B * tokens * tokens * width);
  const vision =
    2 * B * N * patchDim * config.visionWidth +
    tower(N, config.visionWidth, config.visionDepth) +
    2 * B * config.visionWidth * config.embedDim;
  const text =
    tower(config.contextLength, config.textWidth, config.textDepth) + 2 * B * config.textWidth * config.embedDim;
  const logits = 2 * B * B * config.embedDim;
  const forward = vision + text + logits;
  return { forward, step: 3 * forward };
}

/** Standard-normal samples from a seeded stream (Box–Muller), so weights do not depend on the backend. */
function normalValues(seed: number, stream: string, size: number, std: number): Float32Array {
  const random = createRandom(seed, stream);
  const out = new Float32Array(size);
  for (let i = 0; i < size; i += 2) {
    const u1 = Math.max(random(), 1e-12);
    const u2 = random();
    const r = Math.sqrt(-2 * Math.log(u1)) * std;
    out[i] = r * Math.cos(2 * Math.PI * u2);
    if (i + 1 < size) out[i + 1] = r * Math.sin(2 * Math.PI * u2);
  }
  return out;
}

let instances = 0;

/**
 * LayerNorm over the last axis with a hand-written gradient: about half the kernels of the
 * automatic one, and only Mean/Sum/Mul/Sub/Rsqrt, which every backend has.
 */
function layerNorm(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor): tf.Tensor {
  const norm = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const [input, g, b] = args as [tf.Tensor, tf.Tensor, tf.Tensor];
    const save = args[3] as tf.GradSaveFunc;
    const centred = tf.sub(input, tf.mean(input, -1, true));
    const rstd = tf.rsqrt(tf.add(tf.mean(tf.square(centred), -1, true), LN_EPS));
    const xhat = tf.mul(centred, rstd);
    save([xhat, rstd, g]);
    return {
      value: tf.add(tf.mul(xhat, g), b),
      // tf.tidy: tfjs runs custom gradients outside any scope of their own.
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) =>
        tf.tidy(() => {
          const [xh, rs, gain] = saved as [tf.Tensor, tf.Tensor, tf.Tensor];
          const dxhat = tf.mul(dy, gain);
          // dx = rstd · (dx̂ - mean(dx̂) - x̂ · mean(dx̂ · x̂))
          const dx = tf.mul(
            rs,
            tf.sub(tf.sub(dxhat, tf.mean(dxhat, -1, true)), tf.mul(xh, tf.mean(tf.mul(dxhat, xh), -1, true))),
          );
          const rows = Array.from({ length: dy.rank - 1 }, (_, i) => i);
          return [dx, tf.sum(tf.mul(dy, xh), rows), tf.sum(dy, rows)];
        }),
    };
  });
  return norm(x, gamma, beta);
}

/** x·W + b over the last axis of a [rows, in] tensor. */
function linear(x: tf.Tensor2D, w: tf.Tensor, b: tf.Tensor): tf.Tensor2D {
  return tf.fused.matMul({ a: x, b: w as tf.Tensor2D, bias: b }) as tf.Tensor2D;
}

/** L2-normalises the rows of a [B, D] tensor. */
function l2Normalise(x: tf.Tensor2D): tf.Tensor2D {
  return tf.mul(x, tf.rsqrt(tf.add(tf.sum(tf.square(x), -1, true), 1e-12))) as tf.Tensor2D;
}

/**
 * Row lookup `table[ids]` whose gradient is a ScatterNd (duplicates summed) instead of the stock
 * UnsortedSegmentSum, which the wasm backend lacks.
 */
function embed(table: tf.Tensor, ids: tf.Tensor1D): tf.Tensor2D {
  const lookup = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const t = args[0] as tf.Tensor;
    const save = args[1] as tf.GradSaveFunc;
    // Saved, not closed over: the tape keeps saved tensors alive until the backward pass, after
    // the tidy that created `ids` has ended.
    save([ids]);
    return {
      value: tf.gather(t, ids),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) =>
        tf.tidy(() => tf.scatterND(tf.expandDims(saved[0] as tf.Tensor1D, 1), dy, t.shape)),
    };
  });
  return lookup(table) as tf.Tensor2D;
}

/**
 * Creates a dual encoder with weights drawn from seeded streams (one per variable name), so the
 * same config and seed give the same weights on every backend.
 */
export function createDualEncoder(config: ModelConfig, seed: number): DualEncoder {
  validateModelConfig(config);
  const cfg: ModelConfig = { ...config };
  const prefix = `altforge${++instances}/`;
  const variables: tf.Variable[] = [];
  const variableNames: string[] = [];

  const make = (name: string, shape: number[], init: 'zeros' | 'ones' | number): tf.Variable => {
    const size = shape.reduce((a, b) => a * b, 1);
    const values =
      init === 'zeros'
        ? new Float32Array(size)
        : init === 'ones'
          ? new Float32Array(size).fill(1)
          : normalValues(seed, name, size, init);
    const initial = tf.tensor(values, shape, 'float32');
    const variable = tf.variable(initial, true, prefix + name);
    initial.dispose(); // the variable holds its own reference
    variables.push(variable);
    variableNames.push(name);
    return variable;
  };

  const makeBlocks = (tower: string, width: number, depth: number): BlockWeights[] => {
    // CLIP's initialisation: attention width^-1/2, residual projections scaled down by depth.
    const attnStd = width ** -0.5;
    const projStd = width ** -0.5 * (2 * depth) ** -0.5;
    const fcStd = (2 * width) ** -0.5;
    const blocks: BlockWeights[] = [];
    for (let i = 0; i < depth; i++) {
      const p = `${tower}/blocks/${i}/`;
      blocks.push({
        ln1g: make(p + 'ln1/g', [width], 'ones'),
        ln1b: make(p + 'ln1/b', [width], 'zeros'),
        qW: make(p + 'attn/q/w', [width, width], attnStd),
        qB: make(p + 'attn/q/b', [width], 'zeros'),
        kW: make(p + 'attn/k/w', [width, width], attnStd),
        kB: make(p + 'attn/k/b', [width], 'zeros'),
        vW: make(p + 'attn/v/w', [width, width], attnStd),
        vB: make(p + 'attn/v/b', [width], 'zeros'),
        outW: make(p + 'attn/out/w', [width, width], projStd),
        outB: make(p + 'attn/out/b', [width], 'zeros'),
        ln2g: make(p + 'ln2/g', [width], 'ones'),
        ln2b: make(p + 'ln2/b', [width], 'zeros'),
        fcW: make(p + 'mlp/fc/w', [width, 4 * width], fcStd),
        fcB: make(p + 'mlp/fc/b', [4 * width], 'zeros'),
        projW: make(p + 'mlp/proj/w', [4 * width, width], projStd),
        projB: make(p + 'mlp/proj/b', [width], 'zeros'),
      });
    }
    return blocks;
  };

  const grid = cfg.imageSize / cfg.patchSize;
  const patches = grid * grid;
  const patchDim = cfg.patchSize * cfg.patchSize * cfg.channels;
  const Wv = cfg.visionWidth;
  const Wt = cfg.textWidth;

  const vision = {
    patchW: make('vision/patch/w', [patchDim, Wv], patchDim ** -0.5),
    patchB: make('vision/patch/b', [Wv], 'zeros'),
    pos: make('vision/pos', [patches, Wv], Wv ** -0.5),
    lnPreG: make('vision/ln_pre/g', [Wv], 'ones'),
    lnPreB: make('vision/ln_pre/b', [Wv], 'zeros'),
    blocks: makeBlocks('vision', Wv, cfg.visionDepth),
    lnPostG: make('vision/ln_post/g', [Wv], 'ones'),
    lnPostB: make('vision/ln_post/b', [Wv], 'zeros'),
    proj: make('vision/proj', [Wv, cfg.embedDim], Wv ** -0.5),
  };
  const text = {
    token: make('text/token', [cfg.vocabSize, Wt], 0.02),
    pos: make('text/pos', [cfg.contextLength, Wt], 0.01),
    blocks: makeBlocks('text', Wt, cfg.textDepth),
    lnFinalG: make('text/ln_final/g', [Wt], 'ones'),
    lnFinalB: make('text/ln_final/b', [Wt], 'zeros'),
    proj: make('text/proj', [Wt, cfg.embedDim], Wt ** -0.5),
  };
  const initialScale = tf.scalar(INITIAL_LOGIT_SCALE);
  const logitScale = tf.variable(initialScale, true, prefix + 'logit_scale');
  initialScale.dispose();
  variables.push(logitScale);
  variableNames.push('logit_scale');

  const encodeImages = (images: tf.Tensor4D): tf.Tensor2D =>
    tf.tidy(() => {
      const [B, H, Wpx, C] = images.shape;
      if (H !== cfg.imageSize || Wpx !== cfg.imageSize || C !== cfg.channels) {
        throw new UsageError(
          'ERR_INPUT_SHAPE',
          `encodeImages: expected images of shape [B, ${cfg.imageSize}, ${cfg.imageSize}, ${cfg.channels}], got [${images.shape.join(', ')}]`,
        );
      }
      const p = cfg.patchSize;
      // [B, H, W, C] -> [B, gh, p, gw, p, C] -> [B, gh, gw, p, p, C] -> one row per patch.
      const rows = tf.reshape(tf.transpose(tf.reshape(images, [B, grid, p, grid, p, C]), [0, 1, 3, 2, 4, 5]), [
        B * patches,
        patchDim,
      ]) as tf.Tensor2D;
      const centred = tf.sub(tf.mul(rows, 2), 1) as tf.Tensor2D;
      let x = tf.add(tf.reshape(linear(centred, vision.patchW, vision.patchB), [B, patches, Wv]), vision.pos);
      x = layerNorm(x, vision.lnPreG, vision.lnPreB);
      for (const w of vision.blocks) x = transformerBlock(x as tf.Tensor3D, w, cfg.visionHeads);
      const pooled = layerNorm(tf.mean(x, 1), vision.lnPostG, vision.lnPostB) as tf.Tensor2D;
      return l2Normalise(tf.matMul(pooled, vision.proj));
    });

  const encodeTexts = (tokens: tf.Tensor2D): tf.Tensor2D =>
    tf.tidy(() => {
      const [B, L] = tokens.shape;
      if (L !== cfg.contextLength) {
        throw new UsageError(
          'ERR_INPUT_SHAPE',
          `encodeTexts: expected tokens of shape [B, ${cfg.contextLength}], got [${tokens.shape.join(', ')}]`,
        );
      }
      const ids = tf.reshape(tf.cast(tokens, 'int32'), [B * L]) as tf.Tensor1D;
      const mask = tf.cast(tf.notEqual(tokens, 0), 'float32'); // [B, L]
      let x: tf.Tensor = tf.add(tf.reshape(embed(text.token, ids), [B, L, Wt]), text.pos);
      const keyBias = tf.reshape(tf.mul(tf.sub(mask, 1), 1e9), [B, 1, 1, L]);
      for (const w of text.blocks) x = transformerBlock(x as tf.Tensor3D, w, cfg.textHeads, keyBias);
      x = layerNorm(x, text.lnFinalG, text.lnFinalB);
      // Mean over the real tokens; an all-padding caption pools to zeros instead of NaN.
      const count = tf.maximum(tf.sum(mask, 1, true), 1);
      const pooled = tf.div(tf.sum(tf.mul(x, tf.expandDims(mask, 2)), 1), count) as tf.Tensor2D;
      return l2Normalise(tf.matMul(pooled, text.proj));
    });

  const namedVariables = () => new Map(variableNames.map((n, i) => [n, variables[i] as tf.Variable]));

  return {
    config: cfg,
    variables,
    variableNames,
    logitScale,
    encodeImages,
    encodeTexts,
    namedVariables,
    loadWeights(weights) {
      const problems: string[] = [];
      variableNames.forEach((name, i) => {
        const v = variables[i] as tf.Variable;
        const w = weights.get(name);
        if (w === undefined) problems.push(`missing ${name}`);
        else if (w instanceof Float32Array ? w.length !== v.size : w.shape.join() !== v.shape.join())
          problems.push(
            `${name} has shape ${w instanceof Float32Array ? `[${w.length}]` : `[${w.shape.join(', ')}]`}, expected [${v.shape.join(', ')}]`,
          );
      });
      for (const name of weights.keys()) if (!variableNames.includes(name)) problems.push(`unexpected ${name}`);
      if (problems.length > 0) {
        throw new UsageError(
          'ERR_CHECKPOINT_MISMATCH',
          `The weights do not fit this model config: ${problems.slice(0, 3).join('; ')}${problems.length > 3 ? ` (+${problems.length - 3} more)` : ''}`,
          { context: { stage: 'train' } },
        );
      }
      tf.tidy(() => {
        variableNames.forEach((name, i) => {
          const v = variables[i] as tf.Variable;
          const w = weights.get(name) as tf.Tensor | Float32Array;
          v.assign(w instanceof Float32Array ? tf.tensor(w, v.shape, 'float32') : tf.reshape(w, v.shape));
        });
      });
    },
    parameterCount: () => variables.reduce((n, v) => n + v.size, 0),
    dispose() {
      for (const v of variables) v.dispose();
    },
  };
}
