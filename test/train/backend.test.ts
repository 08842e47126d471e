import * as tf from '@tensorflow/tfjs-core';
import { createRequire } from 'node:module';
import { afterAll, describe, expect, it } from 'vitest';
import { AltforgeError } from '../../corpus/errors.ts';
import { blasKernelStats } from '../../train/_blas-kernels.ts';
import {
  describeBackends,
  selectBackend,
  tfBackendName,
  type BackendChoice,
  type DoctorReport,
} from '../../train/backend.ts';
import { startCli } from '../helpers/cli.ts';
import { contrastiveLoss } from '../../train/loss.ts';
import { createDualEncoder } from '../../train/model.ts';
import { MICRO } from './_corpus.ts';

const require = createRequire(import.meta.url);
const installed = (pkg: string) => {
  try {
    require.resolve(pkg);
    return true;
  } catch {
    return false;
  }
};
const HAS_TFJS_NODE = installed('@tensorflow/tfjs-node');
const HAS_TFJS_NODE_GPU = installed('@tensorflow/tfjs-node-gpu');
const HAS_NBLAS = (() => {
  try {
    require('nblas');
    return true;
  } catch {
    return false;
  }
})();

afterAll(async () => {
  await selectBackend('cpu');
});

/** Deterministic inputs that do not depend on any backend's random generator. */
function values(n: number, salt: number): number[] {
  return Array.from({ length: n }, (_, i) => (((i + 1) * 7919 * salt) % 1009) / 1009 - 0.5);
}

describe('selectBackend', () => {
  it('auto takes the first backend that starts and says why each one before it was skipped', async () => {
    const report = await selectBackend('auto');
    const order = ['tensorflow-gpu', 'tensorflow', 'wasm-blas', 'wasm', 'cpu'];
    expect(order.indexOf(report.backend)).toBe(report.skipped.length);
    expect(report.skipped.map((s) => s.backend)).toEqual(order.slice(0, report.skipped.length));
    if (!HAS_TFJS_NODE_GPU) {
      expect(report.skipped[0]).toEqual({
        backend: 'tensorflow-gpu',
        reason: 'not installed (optional dependency @tensorflow/tfjs-node-gpu)',
      });
    }
    if (!HAS_TFJS_NODE_GPU && !HAS_TFJS_NODE) {
      expect(report.skipped[1]).toEqual({
        backend: 'tensorflow',
        reason: 'not installed (optional dependency @tensorflow/tfjs-node)',
      });
      expect(report.backend).toBe(HAS_NBLAS ? 'wasm-blas' : 'wasm');
    }
    expect(tf.getBackend()).toBe(tfBackendName(report.backend));
    const text = describeBackends(report);
    expect(text.split('\n')[0]).toBe(`backend: ${report.backend} (${report.detail})`);
    for (const s of report.skipped) expect(text).toContain(`  skipped ${s.backend}: ${s.reason}`);
  });

  it('returns the same report when the active backend is chosen again', async () => {
    const first = await selectBackend('wasm');
    expect(await selectBackend('wasm')).toBe(first);
    expect(tf.getBackend()).toBe('wasm');
  });

  it.skipIf(HAS_TFJS_NODE)('refuses an explicit backend that is not installed with one line naming why', async () => {
    let error: unknown;
    try {
      await selectBackend('tensorflow');
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(AltforgeError);
    expect((error as AltforgeError).code).toBe('ERR_BACKEND_UNAVAILABLE');
    expect((error as Error).message).toBe(
      "Backend 'tensorflow' is not available: not installed (optional dependency @tensorflow/tfjs-node)",
    );
  });

  it('refuses an unknown backend name as an invalid option', async () => {
    await expect(selectBackend('gpu' as BackendChoice)).rejects.toThrow(
      "Option 'backend': expected one of auto, tensorflow-gpu, tensorflow, wasm-blas, wasm, cpu, got `gpu`",
    );
  });
});

describe.skipIf(!HAS_NBLAS)('the wasm-blas kernels', () => {
  /** Runs `f` on cpu and on wasm-blas with the same inputs and returns both results as arrays. */
  async function both(f: () => tf.Tensor): Promise<{ cpu: Float32Array; blas: Float32Array; shape: number[] }> {
    await selectBackend('cpu');
    const expected = tf.tidy(f);
    const cpu = expected.dataSync() as Float32Array;
    const shape = expected.shape;
    expected.dispose();
    await selectBackend('wasm-blas');
    const actual = tf.tidy(f);
    expect(actual.shape).toEqual(shape);
    const blas = actual.dataSync() as Float32Array;
    actual.dispose();
    return { cpu, blas, shape };
  }

  function expectAllClose(a: Float32Array, b: Float32Array, tol = 1e-5) {
    expect(a.length).toBe(b.length);
    let worst = 0;
    for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs((a[i] as number) - (b[i] as number)));
    expect(worst).toBeLessThanOrEqual(tol);
  }

  it('compute every transpose and batch-broadcast case of BatchMatMul as the cpu backend does', async () => {
    const cases: Array<[number[], number[], boolean, boolean]> = [
      [[5, 7], [7, 3], false, false],
      [[7, 5], [7, 3], true, false],
      [[5, 7], [3, 7], false, true],
      [[7, 5], [3, 7], true, true],
      [[4, 5, 7], [7, 3], false, false], // batch × matrix: one stacked sgemm
      [[4, 7, 5], [7, 3], true, false],
      [[5, 7], [4, 7, 3], false, false],
      [[1, 5, 7], [3, 7, 6], false, false], // broadcast batch of A
      [[2, 3, 5, 7], [2, 3, 6, 7], false, true],
    ];
    const before = blasKernelStats.blasKernels;
    for (const [sa, sb, ta, tb] of cases) {
      const size = (s: number[]) => s.reduce((x, y) => x * y, 1);
      const { cpu, blas } = await both(() =>
        tf.matMul(tf.tensor(values(size(sa), 3), sa), tf.tensor(values(size(sb), 5), sb), ta, tb),
      );
      expectAllClose(blas, cpu);
    }
    expect(blasKernelStats.blasKernels - before).toBe(cases.length);
  });

  it('gather whole rows as the cpu backend does, for any row shape and index shape', async () => {
    const before = blasKernelStats.rowGathers;
    const cases: Array<[number[], number[][]]> = [
      [[6, 4], [[5, 0, 5, 2]]],
      [
        [6, 2, 3],
        [
          [1, 1],
          [4, 0],
        ],
      ],
    ];
    for (const [shape, ids] of cases) {
      const size = shape.reduce((a, b) => a * b, 1);
      const { cpu, blas } = await both(() =>
        tf.gather(tf.tensor(values(size, 17), shape), tf.tensor(ids, undefined, 'int32')),
      );
      expectAllClose(blas, cpu, 0);
    }
    expect(blasKernelStats.rowGathers - before).toBe(2);
    // Along another axis: the stock kernel.
    const { cpu, blas } = await both(() =>
      tf.gather(tf.tensor(values(12, 3), [3, 4]), tf.tensor1d([3, 0], 'int32'), 1),
    );
    expectAllClose(blas, cpu, 0);
    expect(blasKernelStats.rowGathers - before).toBe(2);
  });

  it('broadcast batch dimensions on both sides ([2,1] with [1,3]), which the stock kernels get wrong', async () => {
    await selectBackend('wasm-blas');
    const a = values(2 * 5 * 7, 3);
    const b = values(3 * 7 * 6, 5);
    const out = tf.tidy(() => tf.matMul(tf.tensor(a, [2, 1, 5, 7]), tf.tensor(b, [1, 3, 7, 6])));
    expect(out.shape).toEqual([2, 3, 5, 6]);
    const got = out.dataSync();
    let worst = 0;
    for (let i = 0; i < 2; i++)
      for (let j = 0; j < 3; j++)
        for (let r = 0; r < 5; r++)
          for (let c = 0; c < 6; c++) {
            let sum = 0;
            for (let k = 0; k < 7; k++) sum += (a[i * 35 + r * 7 + k] as number) * (b[j * 42 + k * 6 + c] as number);
            worst = Math.max(worst, Math.abs(sum - (got[((i * 3 + j) * 5 + r) * 6 + c] as number)));
          }
    expect(worst).toBeLessThan(1e-5);
    out.dispose();
  });

  it('compute fused products with bias and activation as the cpu backend does', async () => {
    for (const activation of ['linear', 'relu', 'relu6', 'leakyrelu', 'elu', 'sigmoid'] as const) {
      const { cpu, blas } = await both(() =>
        tf.fused.matMul({
          a: tf.tensor(values(3 * 9 * 7, 2), [3, 9, 7]),
          b: tf.tensor(values(7 * 5, 11), [7, 5]),
          bias: tf.tensor1d([0.5, -1, 2, 0, 0.25]),
          activation,
          leakyreluAlpha: 0.3,
        }),
      );
      expectAllClose(blas, cpu);
    }
    const scalarBias = await both(() =>
      tf.fused.matMul({ a: tf.tensor(values(12, 2), [3, 4]), b: tf.tensor(values(8, 3), [4, 2]), bias: tf.scalar(3) }),
    );
    expectAllClose(scalarBias.blas, scalarBias.cpu);
  });

  it('sum over leading axes with one sgemv and share memory for Identity', async () => {
    const before = blasKernelStats.columnSums;
    for (const [axes, keepDims] of [
      [[0], false],
      [[0, 1], true],
      [[1], false], // not leading: the stock kernel
      [[2], true],
    ] as Array<[number[], boolean]>) {
      const { cpu, blas } = await both(() => tf.sum(tf.tensor(values(4 * 5 * 6, 7), [4, 5, 6]), axes, keepDims));
      expectAllClose(blas, cpu, 1e-4);
    }
    expect(blasKernelStats.columnSums - before).toBe(2);
    await selectBackend('wasm-blas');
    const x = tf.tensor1d([1, 2, 3]);
    const y = tf.clone(x);
    x.dispose();
    expect(Array.from(y.dataSync())).toEqual([1, 2, 3]);
    y.dispose();
  });
});

describe('a training step', () => {
  it('gives the same loss and gradients on every backend present as on cpu, for the same seed', async () => {
    const step = () => {
      const model = createDualEncoder(MICRO, 42);
      const images = tf.tensor4d(
        values(3 * 16 * 16 * 3, 13).map((v) => v + 0.5),
        [3, 16, 16, 3],
      );
      const tokens = tf.tensor2d(
        [
          [5, 6, 7, 0, 0, 0],
          [8, 9, 5, 5, 0, 0],
          [10, 11, 12, 13, 14, 15],
        ],
        [3, 6],
        'int32',
      );
      const { value, grads } = tf.variableGrads(
        () =>
          contrastiveLoss(model.encodeImages(images), model.encodeTexts(tokens), model.logitScale, {
            targets: tf.tensor1d([1, 0.7, 0.9]),
          }).loss,
        model.variables,
      );
      const result = {
        loss: value.dataSync()[0] as number,
        grads: model.variables.map((v) => Array.from(grads[v.name]?.dataSync() ?? [])),
        names: model.variableNames,
      };
      tf.dispose([value, images, tokens]);
      tf.dispose(grads);
      model.dispose();
      return result;
    };
    await selectBackend('cpu');
    const reference = step();
    expect(reference.grads.every((g) => g.length > 0)).toBe(true);
    const compared: string[] = [];
    for (const backend of ['tensorflow-gpu', 'tensorflow', 'wasm-blas', 'wasm'] as const) {
      try {
        await selectBackend(backend);
      } catch {
        continue; // not present here
      }
      const before = tf.memory().numTensors;
      const result = step();
      expect(tf.memory().numTensors).toBe(before);
      expect(result.loss).toBeCloseTo(reference.loss, 5);
      result.grads.forEach((g, i) => {
        const ref = reference.grads[i] as number[];
        const scale = Math.max(1e-3, ...ref.map(Math.abs));
        let worst = 0;
        for (let j = 0; j < ref.length; j++) worst = Math.max(worst, Math.abs((g[j] as number) - (ref[j] as number)));
        // Float32 sums in a different order: relative to the largest component.
        expect(worst / scale, `${backend} ${reference.names[i]}`).toBeLessThan(1e-3);
      });
      compared.push(backend);
    }
    expect(compared).toContain('wasm');
    if (HAS_NBLAS) expect(compared).toContain('wasm-blas');
  });
});

describe('altforge doctor', () => {
  it('prints as JSON the backend auto picks, the skipped ones with reasons, the sgemm rate and versions', async () => {
    const expected = await selectBackend('auto');
    const { code, stdout } = await startCli(['doctor', '--json', '--sgemm-size', '64']).exited;
    expect(code).toBe(0);
    const report = JSON.parse(stdout) as DoctorReport;
    expect(report.backend).toEqual(expected);
    expect(report.versions['@tensorflow/tfjs-core']).toBe(require('@tensorflow/tfjs-core/package.json').version);
    expect(report.versions['@tensorflow/tfjs-node']).toBe(HAS_TFJS_NODE ? expect.any(String) : null);
    if (HAS_NBLAS) {
      expect(report.sgemm).toMatchObject({ size: 64 });
      expect((report.sgemm as { gflops: number }).gflops).toBeGreaterThan(0);
    } else {
      expect(report.sgemm).toHaveProperty('error');
    }
  });

  it('prints the same report as lines, and exits 2 on an unknown backend', async () => {
    const { code, stdout } = await startCli(['doctor', '--sgemm-size', '64']).exited;
    expect(code).toBe(0);
    const lines = stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^backend: (tensorflow-gpu|tensorflow|wasm-blas|wasm|cpu) \(/);
    expect(lines.some((l) => l.startsWith('sgemm: '))).toBe(true);
    expect(lines.some((l) => l.startsWith('versions: node '))).toBe(true);
    const bad = await startCli(['doctor', '--backend', 'gpu']).exited;
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain(
      'Flag --backend: expected one of auto, tensorflow-gpu, tensorflow, wasm-blas, wasm, cpu, got `gpu`',
    );
  });
});
