/**
 * Chooses and starts the TensorFlow.js backend the train stage runs on, and says why.
 *
 * `auto` tries, in order: `tensorflow-gpu` (@tensorflow/tfjs-node-gpu), `tensorflow`
 * (@tensorflow/tfjs-node) — both optional dependencies whose installers download libtensorflow,
 * so they are often absent — then `wasm-blas` (the wasm backend with its matrix products done by
 * OpenBLAS sgemm through the optional `nblas` binding, see `_blas-kernels.ts`), then plain `wasm`,
 * then the pure-JavaScript `cpu` backend. Each backend skipped is reported with its reason.
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { dirname } from 'node:path';
import { UsageError } from '../corpus/errors.ts';
import { blasKernelConfigs, NO_TRANS, type Sgemm, type Sgemv } from './_blas-kernels.ts';

import { BACKEND_CHOICES, type BackendChoice } from './backend-names.ts';

export { BACKEND_CHOICES, type BackendChoice } from './backend-names.ts';

/** Which backend runs, and why each one tried before it was skipped. */
export interface BackendReport {
  backend: Exclude<BackendChoice, 'auto'>;
  skipped: Array<{ backend: string; reason: string }>;
  /** How the chosen backend runs (library, SIMD, threads). */
  detail?: string;
}

const require = createRequire(import.meta.url);

/** Name of the tfjs backend that each choice registers and activates. */
export function tfBackendName(backend: Exclude<BackendChoice, 'auto'>): string {
  return backend === 'tensorflow-gpu' ? 'tensorflow' : backend;
}

/** A backend that cannot start here; `reason` is one human line. */
class Unavailable extends Error {}

function reasonOf(err: unknown): string {
  const e = err as { code?: string; message?: string };
  const message = (e?.message ?? String(err)).split('\n')[0] ?? '';
  return message;
}

function isNotInstalled(err: unknown, pkg: string): boolean {
  const e = err as { code?: string; message?: string };
  return (
    (e?.code === 'ERR_MODULE_NOT_FOUND' ||
      e?.code === 'MODULE_NOT_FOUND' ||
      /Cannot find (module|package)/.test(e?.message ?? '')) &&
    (e?.message ?? '').includes(pkg)
  );
}

async function startTensorflow(gpu: boolean): Promise<string> {
  const pkg = gpu ? '@tensorflow/tfjs-node-gpu' : '@tensorflow/tfjs-node';
  try {
    // A variable specifier: the package is optional and has no types here.
    const name: string = pkg;
    await import(name);
  } catch (err) {
    if (isNotInstalled(err, pkg)) throw new Unavailable(`not installed (optional dependency ${pkg})`);
    throw new Unavailable(`${pkg} failed to load: ${reasonOf(err)}`);
  }
  if (!(await tf.setBackend('tensorflow'))) throw new Unavailable(`${pkg} loaded but its backend did not start`);
  await tf.ready();
  return `${pkg} (libtensorflow)`;
}

let wasmModule: typeof import('@tensorflow/tfjs-backend-wasm') | undefined;

/** Loads the wasm backend package and points it at its own .wasm files (Node has no bundler to do it). */
async function loadWasm(): Promise<typeof import('@tensorflow/tfjs-backend-wasm')> {
  if (wasmModule) return wasmModule;
  const mod = await import('@tensorflow/tfjs-backend-wasm');
  try {
    mod.setWasmPaths(dirname(require.resolve('@tensorflow/tfjs-backend-wasm')) + '/');
  } catch {
    // Already initialised by someone else with their own paths: keep them.
  }
  wasmModule = mod;
  return mod;
}

async function wasmDetail(): Promise<string> {
  const simd = await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT');
  const threads = wasmModule?.getThreadsCount() ?? 1;
  return `wasm${simd ? ' SIMD' : ''}, ${threads} thread${threads === 1 ? '' : 's'}`;
}

async function startWasm(): Promise<string> {
  try {
    await loadWasm();
  } catch (err) {
    throw new Unavailable(`@tensorflow/tfjs-backend-wasm failed to load: ${reasonOf(err)}`);
  }
  let ok = false;
  try {
    ok = await tf.setBackend('wasm');
  } catch (err) {
    throw new Unavailable(`the wasm backend did not start: ${reasonOf(err)}`);
  }
  if (!ok) throw new Unavailable('the wasm backend did not start');
  await tf.ready();
  return await wasmDetail();
}

/** Kernels of the `wasm` backend that `wasm-blas` replaces (see `_blas-kernels.ts`). */
const REPLACED_KERNELS = new Set(['BatchMatMul', '_FusedMatMul', 'Identity', 'Sum', 'GatherV2']);

/** sgemv from nblas, if it has one (used for column sums). */
function loadSgemv(): Sgemv | undefined {
  const nblas = require('nblas') as { sgemv?: unknown };
  return typeof nblas.sgemv === 'function' ? (nblas.sgemv as Sgemv) : undefined;
}

let sgemmCache: { sgemm: Sgemm } | { error: string } | undefined;

/**
 * Loads OpenBLAS sgemm from the optional `nblas` binding and checks it on a 2×2 product.
 * Throws an Error whose message is the reason when it cannot be used.
 */
export function loadSgemm(): Sgemm {
  if (sgemmCache === undefined) {
    try {
      const nblas = require('nblas') as { sgemm?: unknown };
      if (typeof nblas.sgemm !== 'function') throw new Error('nblas has no sgemm');
      const sgemm = nblas.sgemm as Sgemm;
      const c = new Float32Array(4);
      sgemm(
        NO_TRANS,
        NO_TRANS,
        2,
        2,
        2,
        1,
        new Float32Array([1, 2, 3, 4]),
        2,
        new Float32Array([5, 6, 7, 8]),
        2,
        0,
        c,
        2,
      );
      if (c.join() !== '19,22,43,50') throw new Error(`nblas sgemm gave a wrong product (${c.join()})`);
      sgemmCache = { sgemm };
    } catch (err) {
      sgemmCache = {
        error: isNotInstalled(err, 'nblas')
          ? 'not installed (optional dependency nblas, built against libopenblas-dev)'
          : `nblas failed to load: ${reasonOf(err)}`,
      };
    }
  }
  if ('error' in sgemmCache) throw new Error(sgemmCache.error);
  return sgemmCache.sgemm;
}

/** The BLAS library nblas is linked against, as far as we can tell (for reports). */
export function blasDescription(): string {
  const threads = process.env['OPENBLAS_NUM_THREADS'] ?? String(availableParallelism());
  return `OpenBLAS sgemm via nblas, ${threads} BLAS thread${threads === '1' ? '' : 's'}`;
}

async function startWasmBlas(): Promise<string> {
  let sgemm: Sgemm;
  try {
    sgemm = loadSgemm();
  } catch (err) {
    throw new Unavailable((err as Error).message);
  }
  try {
    await loadWasm();
  } catch (err) {
    throw new Unavailable(`@tensorflow/tfjs-backend-wasm failed to load: ${reasonOf(err)}`);
  }
  if (tf.findBackendFactory('wasm-blas') == null) {
    // A backend of its own (a second wasm module instance) so that `wasm` stays stock and both can
    // be compared in one process: every wasm kernel is registered for it, the two matrix
    // products replaced.
    const factory = tf.findBackendFactory('wasm');
    const stockBatch = tf.getKernel('BatchMatMul', 'wasm');
    const stockFused = tf.getKernel('_FusedMatMul', 'wasm');
    if (factory == null || stockBatch === undefined || stockFused === undefined) {
      throw new Unavailable('the wasm backend registered no BatchMatMul/_FusedMatMul kernels');
    }
    tf.registerBackend('wasm-blas', factory, 0);
    for (const kernel of tf.getKernelsForBackend('wasm')) {
      if (REPLACED_KERNELS.has(kernel.kernelName)) continue;
      tf.registerKernel({ ...kernel, backendName: 'wasm-blas' });
    }
    const blasKernels = blasKernelConfigs(
      sgemm,
      'wasm-blas',
      {
        batchMatMul: stockBatch,
        fusedMatMul: stockFused,
        identity: tf.getKernel('Identity', 'wasm'),
        sum: tf.getKernel('Sum', 'wasm'),
        gather: tf.getKernel('GatherV2', 'wasm'),
      },
      loadSgemv(),
    );
    for (const kernel of blasKernels) tf.registerKernel(kernel);
    for (const name of REPLACED_KERNELS) {
      // A stock kernel without its replacement (none expected) is registered as it is.
      if (!blasKernels.some((k) => k.kernelName === name)) {
        const stockKernel = tf.getKernel(name, 'wasm');
        if (stockKernel) tf.registerKernel({ ...stockKernel, backendName: 'wasm-blas' });
      }
    }
  }
  let ok = false;
  try {
    ok = await tf.setBackend('wasm-blas');
  } catch (err) {
    throw new Unavailable(`the wasm backend did not start: ${reasonOf(err)}`);
  }
  if (!ok) throw new Unavailable('the wasm backend did not start');
  await tf.ready();
  return `${blasDescription()} on the wasm heap; ${await wasmDetail()} for the other kernels`;
}

async function startCpu(): Promise<string> {
  if (!(await tf.setBackend('cpu'))) throw new Unavailable('the cpu backend did not start');
  await tf.ready();
  return 'pure JavaScript (slowest)';
}

const starters: Record<Exclude<BackendChoice, 'auto'>, () => Promise<string>> = {
  'tensorflow-gpu': () => startTensorflow(true),
  tensorflow: () => startTensorflow(false),
  'wasm-blas': startWasmBlas,
  wasm: startWasm,
  cpu: startCpu,
};

const AUTO_ORDER: Array<Exclude<BackendChoice, 'auto'>> = ['tensorflow-gpu', 'tensorflow', 'wasm-blas', 'wasm', 'cpu'];

let current: { choice: BackendChoice; report: BackendReport } | undefined;

/**
 * Initialises and activates the backend (tf.setBackend + ready). Idempotent: choosing again what
 * is active returns the same report. `auto` falls through the list in order; an explicit choice
 * that cannot start is a UsageError (`ERR_BACKEND_UNAVAILABLE`) naming the reason.
 */
export async function selectBackend(choice: BackendChoice): Promise<BackendReport> {
  if (!BACKEND_CHOICES.includes(choice)) {
    throw new UsageError(
      'ERR_INVALID_OPTION',
      `Option 'backend': expected one of ${BACKEND_CHOICES.join(', ')}, got \`${String(choice)}\``,
      { context: { stage: 'train', option: 'backend' } },
    );
  }
  // The "install tfjs-node" banner of the cpu backend would repeat what the report already says.
  tf.env().set('PROD', true);
  if (current && current.choice === choice && tf.getBackend() === tfBackendName(current.report.backend)) {
    return current.report;
  }
  const order = choice === 'auto' ? AUTO_ORDER : [choice];
  const skipped: BackendReport['skipped'] = [];
  for (const backend of order) {
    try {
      const detail = await starters[backend]();
      const report: BackendReport = { backend, skipped, detail };
      current = { choice, report };
      return report;
    } catch (err) {
      if (!(err instanceof Unavailable)) throw err;
      skipped.push({ backend, reason: err.message });
    }
  }
  const last = skipped[skipped.length - 1];
  throw new UsageError(
    'ERR_BACKEND_UNAVAILABLE',
    choice === 'auto'
      ? `No backend could start: ${skipped.map((s) => `${s.backend}: ${s.reason}`).join('; ')}`
      : `Backend '${choice}' is not available: ${last?.reason ?? 'unknown reason'}`,
    { context: { stage: 'train', option: 'backend' } },
  );
}

/** Human lines: which backend runs and how, then why each one tried before it was skipped. */
export function describeBackends(report: BackendReport): string {
  const lines = [`backend: ${report.backend}${report.detail ? ` (${report.detail})` : ''}`];
  for (const s of report.skipped) lines.push(`  skipped ${s.backend}: ${s.reason}`);
  return lines.join('\n');
}

/**
 * Sustained sgemm rate of the BLAS behind `wasm-blas`, in GFLOP/s (2·m·n·k per product), on
 * plain Float32Arrays: the ceiling the training step is compared with. Runs at least `minMs`.
 */
export function measureSgemm(
  m: number,
  n: number,
  k: number,
  minMs = 300,
): { gflops: number; ms: number; runs: number } {
  const sgemm = loadSgemm();
  const a = new Float32Array(m * k).map((_, i) => ((i * 7919) % 1000) / 1000 - 0.5);
  const b = new Float32Array(k * n).map((_, i) => ((i * 104729) % 1000) / 1000 - 0.5);
  const c = new Float32Array(m * n);
  sgemm(NO_TRANS, NO_TRANS, m, n, k, 1, a, k, b, n, 0, c, n); // warm-up: threads, caches
  let runs = 0;
  const start = performance.now();
  let elapsed = 0;
  do {
    sgemm(NO_TRANS, NO_TRANS, m, n, k, 1, a, k, b, n, 0, c, n);
    runs++;
    elapsed = performance.now() - start;
  } while (elapsed < minMs);
  const ms = elapsed / runs;
  return { gflops: (2 * m * n * k) / (ms * 1e6), ms, runs };
}

/** What `altforge doctor` reports. */
export interface DoctorReport {
  /** What the requested choice (normally `auto`) starts, and why each backend before it was skipped. */
  backend: BackendReport;
  /** The BLAS behind `wasm-blas`, measured on one square sgemm, or why it cannot be used. */
  sgemm: { gflops: number; size: number; blas: string } | { error: string };
  /** Versions of Node and of the packages each backend needs; `null` where not installed. */
  versions: Record<string, string | null>;
  /** Logical CPUs Node sees. */
  cpus: number;
}

function packageVersion(name: string): string | null {
  try {
    return (require(`${name}/package.json`) as { version?: string }).version ?? null;
  } catch {
    return null;
  }
}

/**
 * Starts the backend `choice` would start (as training would) and measures the sgemm rate of
 * `nblas` on a `sgemmSize`² product, without training anything.
 */
export async function diagnoseBackends(
  options: { choice?: BackendChoice; sgemmSize?: number; sgemmMs?: number } = {},
): Promise<DoctorReport> {
  const size = options.sgemmSize ?? 1024;
  if (!Number.isInteger(size) || size < 1 || size > 8192) {
    throw new UsageError(
      'ERR_INVALID_OPTION',
      `Option 'sgemmSize': expected an integer in [1, 8192], got \`${size}\``,
      {
        context: { stage: 'train', option: 'sgemmSize' },
      },
    );
  }
  const backend = await selectBackend(options.choice ?? 'auto');
  let sgemm: DoctorReport['sgemm'];
  try {
    sgemm = { gflops: measureSgemm(size, size, size, options.sgemmMs ?? 300).gflops, size, blas: blasDescription() };
  } catch (err) {
    sgemm = { error: (err as Error).message };
  }
  const versions: Record<string, string | null> = { node: process.versions.node };
  for (const pkg of [
    '@tensorflow/tfjs-core',
    '@tensorflow/tfjs-backend-cpu',
    '@tensorflow/tfjs-backend-wasm',
    '@tensorflow/tfjs-node',
    '@tensorflow/tfjs-node-gpu',
    'nblas',
  ]) {
    versions[pkg] = packageVersion(pkg);
  }
  return { backend, sgemm, versions, cpus: availableParallelism() };
}
