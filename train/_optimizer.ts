/**
 * AdamW (decoupled weight decay) over named tf.Variables, with its state readable and writable as
 * plain arrays so a checkpoint restores it exactly. Written here rather than using tf.train.adam
 * because the trainer sets the learning rate every step and needs the moments by variable name.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { StoredTensor } from './checkpoint.ts';

export interface AdamWOptions {
  beta1: number;
  beta2: number;
  epsilon: number;
  weightDecay: number;
}

export class AdamW {
  private readonly m = new Map<string, tf.Variable>();
  private readonly v = new Map<string, tf.Variable>();
  /** Updates applied so far (the bias-correction step). */
  step = 0;

  /**
   * @param variables the trainable variables by stable name (the name checkpoints use)
   * @param noDecay stable names of variables that are not decayed (gains, biases, the temperature)
   */
  constructor(
    private readonly variables: ReadonlyMap<string, tf.Variable>,
    private readonly options: AdamWOptions,
    private readonly noDecay: ReadonlySet<string>,
  ) {
    for (const [name, variable] of variables) {
      this.m.set(name, tf.variable(tf.zerosLike(variable), false));
      this.v.set(name, tf.variable(tf.zerosLike(variable), false));
    }
  }

  /** Applies one update with learning rate `lr` from gradients keyed by `tf.Variable.name` (as `tf.variableGrads` gives them). */
  apply(grads: tf.NamedTensorMap, lr: number): void {
    this.step++;
    const { beta1, beta2, epsilon, weightDecay } = this.options;
    const c1 = 1 - beta1 ** this.step;
    const c2 = 1 - beta2 ** this.step;
    tf.tidy(() => {
      for (const [name, variable] of this.variables) {
        const g = grads[variable.name];
        if (g === undefined) continue;
        const m = this.m.get(name) as tf.Variable;
        const v = this.v.get(name) as tf.Variable;
        const m2 = tf.add(tf.mul(m, beta1), tf.mul(g, 1 - beta1));
        const v2 = tf.add(tf.mul(v, beta2), tf.mul(tf.square(g), 1 - beta2));
        m.assign(m2);
        v.assign(v2);
        const update = tf.div(tf.div(m2, c1), tf.add(tf.sqrt(tf.div(v2, c2)), epsilon));
        const decayed = weightDecay > 0 && !this.noDecay.has(name) ? tf.mul(variable, 1 - lr * weightDecay) : variable;
        variable.assign(tf.sub(decayed, tf.mul(update, lr)));
      }
    });
  }

  /** The moments as named arrays, for a checkpoint. */
  state(): StoredTensor[] {
    const out: StoredTensor[] = [];
    for (const [prefix, map] of [
      ['adamw/m/', this.m],
      ['adamw/v/', this.v],
    ] as const) {
      for (const [name, t] of map)
        out.push({ name: prefix + name, shape: t.shape, data: t.dataSync() as Float32Array });
    }
    return out;
  }

  /** Restores the moments written by {@link state}; returns the names that were missing. */
  restore(tensors: ReadonlyMap<string, StoredTensor>, step: number): string[] {
    const missing: string[] = [];
    for (const [prefix, map] of [
      ['adamw/m/', this.m],
      ['adamw/v/', this.v],
    ] as const) {
      for (const [name, t] of map) {
        const stored = tensors.get(prefix + name);
        if (stored === undefined) missing.push(prefix + name);
        else tf.tidy(() => t.assign(tf.tensor(stored.data, stored.shape, 'float32')));
      }
    }
    this.step = step;
    return missing;
  }

  dispose(): void {
    for (const t of this.m.values()) t.dispose();
    for (const t of this.v.values()) t.dispose();
  }
}
