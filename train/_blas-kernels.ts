/**
 * BatchMatMul and _FusedMatMul for the wasm backend, computed by OpenBLAS sgemm (through the
 * `nblas` binding) directly on the wasm heap: the inputs and the output are Float32Array views
 * of the wasm memory at each tensor's offset, so nothing is copied in or out.
 *
 * Everything else (shapes with zero size, non-float32 inputs, activations or bias shapes this
 * file does not handle) falls back to the stock wasm kernel, which stays registered under its
 * own backend.
 */
import * as tf from '@tensorflow/tfjs-core';

/** The part of nblas this file uses: CBLAS sgemm, row-major. */
export interface Sgemm {
  (
    transA: number,
    transB: number,
    m: number,
    n: number,
    k: number,
    alpha: number,
    a: Float32Array,
    lda: number,
    b: Float32Array,
    ldb: number,
    beta: number,
    c: Float32Array,
    ldc: number,
  ): void;
}

/** The part of nblas this file uses for column sums: CBLAS sgemv, row-major. */
export interface Sgemv {
  (
    trans: number,
    m: number,
    n: number,
    alpha: number,
    a: Float32Array,
    lda: number,
    x: Float32Array,
    incx: number,
    beta: number,
    y: Float32Array,
    incy: number,
  ): void;
}

/** CBLAS_TRANSPOSE values (cblas.h). */
export const NO_TRANS = 111;
export const TRANS = 112;

/** The internals of tfjs-backend-wasm's BackendWasm that the kernels read. */
interface WasmBackendInternals {
  wasm: { HEAPF32: Float32Array };
  dataIdMap: { get(dataId: object): { memoryOffset: number } | undefined };
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  incRef(dataId: object): void;
}

type KernelArgs = { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: tf.NamedAttrMap };

/** Counts of what the kernels did, for tests and the doctor. */
export const blasKernelStats = { sgemmCalls: 0, blasKernels: 0, columnSums: 0, rowGathers: 0, fallbacks: 0 };

/** Row-major strides of the batch dims of `shape` aligned right to `rank` dims, 0 where broadcast. */
function batchStrides(batchShape: number[], outBatch: number[]): number[] {
  const padded = [...Array.from({ length: outBatch.length - batchShape.length }, () => 1), ...batchShape];
  const strides = Array.from({ length: outBatch.length }, () => 0);
  let stride = 1;
  for (let i = padded.length - 1; i >= 0; i--) {
    const dim = padded[i] as number;
    strides[i] = dim === 1 ? 0 : stride;
    stride *= dim;
  }
  return strides;
}

interface Product {
  out: tf.TensorInfo;
  rows: number;
  cols: number;
  heap: Float32Array;
  outOffset: number;
}

/**
 * C = op(A)·op(B) + (C if `accumulate`) for every broadcast batch, with sgemm on heap views.
 * `prefill`, when given, writes C's initial contents (the bias) before the products.
 */
function heapMatMul(
  sgemm: Sgemm,
  backend: WasmBackendInternals,
  a: tf.TensorInfo,
  b: tf.TensorInfo,
  transposeA: boolean,
  transposeB: boolean,
  prefill?: (heap: Float32Array, outOffset: number, rows: number, cols: number, batches: number) => void,
): Product {
  const ra = a.shape.length;
  const rb = b.shape.length;
  const M = (transposeA ? a.shape[ra - 1] : a.shape[ra - 2]) as number;
  const K = (transposeA ? a.shape[ra - 2] : a.shape[ra - 1]) as number;
  const Kb = (transposeB ? b.shape[rb - 1] : b.shape[rb - 2]) as number;
  const N = (transposeB ? b.shape[rb - 2] : b.shape[rb - 1]) as number;
  if (K !== Kb) {
    throw new Error(
      `BatchMatMul (wasm-blas): inner dimensions ${K} and ${Kb} of shapes [${a.shape}] and [${b.shape}] differ`,
    );
  }
  const batchA = a.shape.slice(0, -2);
  const batchB = b.shape.slice(0, -2);
  const outBatch = tf.backend_util.assertAndGetBroadcastShape(batchA, batchB);
  const batches = outBatch.reduce((x, y) => x * y, 1);
  const out = backend.makeOutput([...outBatch, M, N], 'float32');
  // Read the heap only now: makeOutput may have grown the wasm memory, detaching older views.
  const heap = backend.wasm.HEAPF32;
  const buffer = heap.buffer;
  const offsetOf = (t: tf.TensorInfo) => {
    const data = backend.dataIdMap.get(t.dataId);
    if (data === undefined) throw new Error('wasm-blas: a tensor is not on this backend');
    return data.memoryOffset;
  };
  const aOffset = offsetOf(a);
  const bOffset = offsetOf(b);
  const outOffset = offsetOf(out);
  if (prefill) prefill(heap, outOffset, M, N, batches);
  const beta = prefill ? 1 : 0;
  const ta = transposeA ? TRANS : NO_TRANS;
  const tb = transposeB ? TRANS : NO_TRANS;
  const lda = transposeA ? M : K;
  const ldb = transposeB ? K : N;
  const aSize = M * K;
  const bSize = K * N;
  const cSize = M * N;

  const batchCountA = batchA.reduce((x, y) => x * y, 1);
  const batchCountB = batchB.reduce((x, y) => x * y, 1);
  if (batchCountB === 1 && !transposeA && batchCountA === batches) {
    // A's batches are contiguous rows of one matrix: one sgemm of [batches·M, K]·[K, N].
    blasKernelStats.sgemmCalls++;
    sgemm(
      ta,
      tb,
      batches * M,
      N,
      K,
      1,
      new Float32Array(buffer, aOffset, batches * aSize),
      lda,
      new Float32Array(buffer, bOffset, bSize),
      ldb,
      beta,
      new Float32Array(buffer, outOffset, batches * cSize),
      N,
    );
    return { out, rows: M, cols: N, heap, outOffset };
  }
  const stridesA = batchStrides(batchA, outBatch);
  const stridesB = batchStrides(batchB, outBatch);
  for (let i = 0; i < batches; i++) {
    let ia = 0;
    let ib = 0;
    let rest = i;
    for (let d = outBatch.length - 1; d >= 0; d--) {
      const dim = outBatch[d] as number;
      const idx = rest % dim;
      rest = (rest - idx) / dim;
      ia += idx * (stridesA[d] as number);
      ib += idx * (stridesB[d] as number);
    }
    blasKernelStats.sgemmCalls++;
    sgemm(
      ta,
      tb,
      M,
      N,
      K,
      1,
      new Float32Array(buffer, aOffset + ia * aSize * 4, aSize),
      lda,
      new Float32Array(buffer, bOffset + ib * bSize * 4, bSize),
      ldb,
      beta,
      new Float32Array(buffer, outOffset + i * cSize * 4, cSize),
      N,
    );
  }
  return { out, rows: M, cols: N, heap, outOffset };
}

const isEmpty = (t: tf.TensorInfo) => t.shape.some((d) => d === 0);

/** Applies a fused activation in place over `count` floats from `start` (float index). */
function applyActivation(heap: Float32Array, start: number, count: number, activation: string, alpha: number): boolean {
  const end = start + count;
  switch (activation) {
    case 'linear':
      return true;
    case 'relu':
      for (let i = start; i < end; i++) if ((heap[i] as number) < 0) heap[i] = 0;
      return true;
    case 'relu6':
      for (let i = start; i < end; i++) heap[i] = Math.min(6, Math.max(0, heap[i] as number));
      return true;
    case 'leakyrelu':
      for (let i = start; i < end; i++) {
        const v = heap[i] as number;
        if (v < 0) heap[i] = v * alpha;
      }
      return true;
    case 'elu':
      for (let i = start; i < end; i++) {
        const v = heap[i] as number;
        if (v < 0) heap[i] = Math.expm1(v);
      }
      return true;
    case 'sigmoid':
      for (let i = start; i < end; i++) heap[i] = 1 / (1 + Math.exp(-(heap[i] as number)));
      return true;
    default:
      return false;
  }
}

const SUPPORTED_ACTIVATIONS = new Set(['linear', 'relu', 'relu6', 'leakyrelu', 'elu', 'sigmoid']);

/**
 * Kernel configs for `backendName` that run BatchMatMul and _FusedMatMul through `sgemm`,
 * falling back to `stock` (the wasm kernels of the same name) for cases they do not cover.
 *
 * Two more kernels remove copies that dominate a training step once the products are fast:
 * Identity shares the input's memory (reference-counted, as the cpu backend does; no kernel
 * writes into its inputs) instead of copying it — tfjs clones every tensor a custom gradient
 * saves — and Sum over leading axes (bias and LayerNorm gradients, broadcast adds) is one sgemv
 * against a vector of ones instead of the stock transpose-then-reduce. GatherV2 of whole rows
 * (the token embedding) is one memmove per row; the stock kernel walks it element by element.
 */
export function blasKernelConfigs(
  sgemm: Sgemm,
  backendName: string,
  stock: {
    batchMatMul: tf.KernelConfig;
    fusedMatMul: tf.KernelConfig;
    identity?: tf.KernelConfig;
    sum?: tf.KernelConfig;
    gather?: tf.KernelConfig;
  },
  sgemv?: Sgemv,
): tf.KernelConfig[] {
  const fallback = (config: tf.KernelConfig, args: KernelArgs) => {
    blasKernelStats.fallbacks++;
    return config.kernelFunc(args as Parameters<tf.KernelFunc>[0]);
  };

  const batchMatMul: tf.KernelFunc = (args) => {
    const { a, b } = args.inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
    const { transposeA, transposeB } = args.attrs as unknown as { transposeA: boolean; transposeB: boolean };
    if (a.dtype !== 'float32' || b.dtype !== 'float32' || isEmpty(a) || isEmpty(b)) {
      return fallback(stock.batchMatMul, args);
    }
    blasKernelStats.blasKernels++;
    return heapMatMul(sgemm, args.backend as WasmBackendInternals, a, b, transposeA, transposeB).out;
  };

  const fusedMatMul: tf.KernelFunc = (args) => {
    const { a, b, bias, preluActivationWeights } = args.inputs as {
      a: tf.TensorInfo;
      b: tf.TensorInfo;
      bias?: tf.TensorInfo;
      preluActivationWeights?: tf.TensorInfo;
    };
    const { transposeA, transposeB, activation, leakyreluAlpha } = args.attrs as unknown as {
      transposeA: boolean;
      transposeB: boolean;
      activation: string;
      leakyreluAlpha?: number;
    };
    const biasSize = bias ? bias.shape.reduce((x, y) => x * y, 1) : 0;
    const N = (transposeB ? b.shape[b.shape.length - 2] : b.shape[b.shape.length - 1]) as number;
    const simpleBias = !bias || (bias.dtype === 'float32' && (biasSize === N || biasSize === 1));
    if (
      a.dtype !== 'float32' ||
      b.dtype !== 'float32' ||
      isEmpty(a) ||
      isEmpty(b) ||
      preluActivationWeights != null ||
      !SUPPORTED_ACTIVATIONS.has(activation) ||
      !simpleBias
    ) {
      return fallback(stock.fusedMatMul, args);
    }
    const backend = args.backend as WasmBackendInternals;
    blasKernelStats.blasKernels++;
    const prefill = bias
      ? (heap: Float32Array, outOffset: number, rows: number, cols: number, batches: number) => {
          const data = backend.dataIdMap.get(bias.dataId);
          if (data === undefined) throw new Error('wasm-blas: the bias is not on this backend');
          const start = outOffset / 4;
          const total = rows * cols * batches;
          if (biasSize === 1) {
            heap.fill(heap[data.memoryOffset / 4] as number, start, start + total);
            return;
          }
          // Write the bias row once, then double the filled region: log2(rows) memmoves.
          const biasStart = data.memoryOffset / 4;
          heap.copyWithin(start, biasStart, biasStart + cols);
          let filled = cols;
          while (filled < total) {
            const n = Math.min(filled, total - filled);
            heap.copyWithin(start + filled, start, start + n);
            filled += n;
          }
        }
      : undefined;
    const product = heapMatMul(sgemm, backend, a, b, transposeA, transposeB, prefill);
    const count = product.out.shape.reduce((x, y) => x * y, 1);
    applyActivation(product.heap, product.outOffset / 4, count, activation, leakyreluAlpha ?? 0.2);
    return product.out;
  };

  // The stock setup functions bind the stock kernels to this backend's wasm module, so that a
  // fallback runs on the right heap.
  const withSetup = (config: tf.KernelConfig, kernelFunc: tf.KernelFunc): tf.KernelConfig => ({
    kernelName: config.kernelName,
    backendName,
    kernelFunc,
    ...(config.setupFunc ? { setupFunc: config.setupFunc } : {}),
    ...(config.disposeFunc ? { disposeFunc: config.disposeFunc } : {}),
  });
  const configs = [withSetup(stock.batchMatMul, batchMatMul), withSetup(stock.fusedMatMul, fusedMatMul)];

  if (stock.identity) {
    const stockIdentity = stock.identity;
    const identity: tf.KernelFunc = (args) => {
      const { x } = args.inputs as { x: tf.TensorInfo };
      if (x.dtype === 'string') return fallback(stockIdentity, args);
      (args.backend as WasmBackendInternals).incRef(x.dataId);
      return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
    };
    configs.push(withSetup(stockIdentity, identity));
  }

  if (stock.sum && sgemv) {
    const stockSum = stock.sum;
    let ones = new Float32Array(0);
    const sum: tf.KernelFunc = (args) => {
      const { x } = args.inputs as { x: tf.TensorInfo };
      const { axis, keepDims } = args.attrs as unknown as { axis: number | number[]; keepDims: boolean };
      const rank = x.shape.length;
      const axes = tf.util.parseAxisParam(axis, x.shape).toSorted((a, b) => a - b);
      const leading = axes.length > 0 && axes.length < rank && axes.every((a, i) => a === i);
      if (x.dtype !== 'float32' || !leading || x.shape.some((d) => d === 0)) return fallback(stockSum, args);
      const rows = x.shape.slice(0, axes.length).reduce((a, b) => a * b, 1);
      const cols = x.shape.slice(axes.length).reduce((a, b) => a * b, 1);
      const backend = args.backend as WasmBackendInternals;
      const outShape = keepDims ? x.shape.map((d, i) => (i < axes.length ? 1 : d)) : x.shape.slice(axes.length);
      const out = backend.makeOutput(outShape, 'float32');
      const buffer = backend.wasm.HEAPF32.buffer;
      const xOffset = backend.dataIdMap.get(x.dataId)?.memoryOffset;
      const outOffset = backend.dataIdMap.get(out.dataId)?.memoryOffset;
      if (xOffset === undefined || outOffset === undefined)
        throw new Error('wasm-blas: a tensor is not on this backend');
      if (ones.length < rows) ones = new Float32Array(rows).fill(1);
      blasKernelStats.columnSums++;
      // y = Aᵀ·1 over A = x viewed as [rows, cols].
      sgemv(
        TRANS,
        rows,
        cols,
        1,
        new Float32Array(buffer, xOffset, rows * cols),
        cols,
        ones,
        1,
        0,
        new Float32Array(buffer, outOffset, cols),
        1,
      );
      return out;
    };
    configs.push(withSetup(stockSum, sum));
  }
  if (stock.gather) {
    const stockGather = stock.gather;
    const gather: tf.KernelFunc = (args) => {
      const { x, indices } = args.inputs as { x: tf.TensorInfo; indices: tf.TensorInfo };
      const { axis, batchDims } = args.attrs as unknown as { axis: number; batchDims?: number };
      const rank = x.shape.length;
      const normalisedAxis = axis < 0 ? axis + rank : axis;
      if (
        normalisedAxis !== 0 ||
        (batchDims ?? 0) !== 0 ||
        (x.dtype !== 'float32' && x.dtype !== 'int32') ||
        indices.dtype !== 'int32' ||
        rank < 1
      ) {
        return fallback(stockGather, args);
      }
      const backend = args.backend as WasmBackendInternals;
      const count = indices.shape.reduce((a, b) => a * b, 1);
      const rows = x.shape[0] as number;
      const row = x.shape.slice(1).reduce((a, b) => a * b, 1);
      const xOffset = backend.dataIdMap.get(x.dataId)?.memoryOffset;
      const iOffset = backend.dataIdMap.get(indices.dataId)?.memoryOffset;
      if (xOffset === undefined || iOffset === undefined) throw new Error('wasm-blas: a tensor is not on this backend');
      const ids = new Int32Array(backend.wasm.HEAPF32.buffer, iOffset, count);
      for (let i = 0; i < count; i++) {
        const id = ids[i] as number;
        // Out-of-range ids: the stock kernel decides what happens, as on plain wasm.
        if (id < 0 || id >= rows) return fallback(stockGather, args);
      }
      const out = backend.makeOutput([...indices.shape, ...x.shape.slice(1)], x.dtype);
      const heap = backend.wasm.HEAPF32; // after makeOutput, which may grow the memory
      const outStart = (backend.dataIdMap.get(out.dataId)?.memoryOffset ?? 0) / 4;
      const xStart = xOffset / 4;
      const idsNow = new Int32Array(heap.buffer, iOffset, count);
      for (let i = 0; i < count; i++) {
        const src = xStart + (idsNow[i] as number) * row;
        heap.copyWithin(outStart + i * row, src, src + row);
      }
      blasKernelStats.rowGathers++;
      return out;
    };
    configs.push(withSetup(stockGather, gather));
  }
  return configs;
}
