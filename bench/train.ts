/**
 * `npm run bench:train`: milliseconds per training step (forward, symmetric InfoNCE, gradients,
 * Adam update) and the GFLOP/s this achieves, counted from the model's matmul shapes
 * (`matmulFlops`), for the `tiny` and `small` presets at batch 256 on the chosen backend. In the
 * same run it measures the sgemm rate of the BLAS behind `wasm-blas` on the products the model
 * does most (its MLP products at this batch; best of three windows) and on a 1024³ square.
 * Target: the step (mean over the timed steps) reaches at least 40 % of the sgemm rate.
 *
 *   npm run bench:train -- [--backend auto|wasm-blas|wasm|cpu|tensorflow|tensorflow-gpu]
 *                          [--batch 256] [--steps 5] [--presets tiny,small] [--json]
 */
import * as tf from '@tensorflow/tfjs-core';
import { availableParallelism, loadavg } from 'node:os';
import {
  BACKEND_CHOICES,
  blasDescription,
  describeBackends,
  measureSgemm,
  selectBackend,
  type BackendChoice,
} from '../train/backend.ts';
import { contrastiveLoss } from '../train/loss.ts';
import { PRESETS, createDualEncoder, matmulFlops, type ModelConfig } from '../train/model.ts';
import { createRandom } from '../corpus/random.ts';
import { BenchUsageError, benchArgs } from './_args.ts';

const USAGE = `usage: npm run bench:train -- [--backend auto|${BACKEND_CHOICES.filter((b) => b !== 'auto').join('|')}]
  [--batch 256] [--steps 5] [--presets tiny,small] [--vocab 4096] [--json]`;

const { backendChoice, batch, steps, vocabSize, presets, json } = benchArgs(
  'train',
  USAGE,
  {
    backend: { type: 'string', default: 'auto' },
    batch: { type: 'string', default: '256' },
    steps: { type: 'string', default: '5' },
    presets: { type: 'string', default: 'tiny,small' },
    vocab: { type: 'string', default: '4096' },
    json: { type: 'boolean', default: false },
  },
  (flags) => {
    const backend = flags.values['backend'] as BackendChoice;
    if (!BACKEND_CHOICES.includes(backend))
      throw new BenchUsageError(`--backend: expected one of ${BACKEND_CHOICES.join(', ')}, got \`${backend}\``);
    const names = (flags.values['presets'] as string).split(',').filter(Boolean);
    const unknown = names.find((p) => !(p in PRESETS));
    if (unknown !== undefined || names.length === 0)
      throw new BenchUsageError(
        `--presets: expected some of ${Object.keys(PRESETS).join(', ')}, got \`${flags.values['presets']}\``,
      );
    return {
      backendChoice: backend,
      batch: flags.number('batch', 1, 65_536, true),
      steps: flags.number('steps', 1, 100_000, true),
      vocabSize: flags.number('vocab', 8, 10_000_000, true),
      presets: names as Array<keyof typeof PRESETS>,
      json: flags.values['json'] === true,
    };
  },
);

const log = (line: string) => process.stderr.write(line + '\n');
const report = await selectBackend(backendChoice);
log(describeBackends(report));
log(
  `machine: ${availableParallelism()} cpus, load average ${loadavg()
    .map((l) => l.toFixed(1))
    .join(' ')} (shared)`,
);

/** Seeded synthetic batch: images in [0,1] and captions of 3-20 tokens (the rest padding). */
function syntheticBatch(config: ModelConfig, seed: number): { images: tf.Tensor4D; tokens: tf.Tensor2D } {
  const random = createRandom(seed, 'bench-train');
  const S = config.imageSize;
  const pixels = new Float32Array(batch * S * S * 3).map(() => random());
  const ids = new Int32Array(batch * config.contextLength);
  for (let b = 0; b < batch; b++) {
    const length = 3 + Math.floor(random() * 18);
    for (let t = 0; t < Math.min(length, config.contextLength); t++) {
      ids[b * config.contextLength + t] = 4 + Math.floor(random() * (config.vocabSize - 4));
    }
  }
  return {
    images: tf.tensor4d(pixels, [batch, S, S, 3]),
    tokens: tf.tensor2d(ids, [batch, config.contextLength], 'int32'),
  };
}

/**
 * The best of three 300 ms windows: on a shared machine the ceiling is what sgemm reaches when it
 * gets the cores, which makes the step's fraction of it a conservative figure.
 */
function bestSgemm(m: number, n: number, k: number): number {
  return Math.max(...[0, 1, 2].map(() => measureSgemm(m, n, k, 300).gflops));
}

interface PresetResult {
  preset: string;
  batch: number;
  msPerStep: number;
  bestMsPerStep: number;
  stepGflop: number;
  gflops: number;
  sgemmGflops: number | null;
  fractionOfSgemm: number | null;
  loss: number[];
}

const results: PresetResult[] = [];
const sgemmRates: Record<string, number> = {};
for (const preset of presets) {
  const config: ModelConfig = { ...PRESETS[preset], vocabSize };
  const model = createDualEncoder(config, 1);
  const optimizer = tf.train.adam(1e-4);
  const { images, tokens } = syntheticBatch(config, 1);
  const losses: number[] = [];
  const step = () => {
    const { value, grads } = tf.variableGrads(
      () => contrastiveLoss(model.encodeImages(images), model.encodeTexts(tokens), model.logitScale).loss,
      model.variables,
    );
    optimizer.applyGradients(grads as tf.NamedTensorMap & Record<string, tf.Variable>);
    losses.push(value.dataSync()[0] as number); // waits for the step to finish
    tf.dispose(grads);
    value.dispose();
  };
  log(`${preset}: ${model.parameterCount().toLocaleString('en')} parameters, warming up...`);
  step();
  const times: number[] = [];
  for (let i = 0; i < steps; i++) {
    const start = performance.now();
    step();
    times.push(performance.now() - start);
    log(`  step ${i + 1}/${steps}: ${times[times.length - 1]?.toFixed(0)} ms`);
  }
  const ms = times.reduce((a, b) => a + b, 0) / times.length;
  const flops = matmulFlops(config, batch).step;
  // The sgemm ceiling at this model's sizes: its MLP product [B·tokens, W]·[W, 4W] (the largest).
  let sgemm: number | null = null;
  try {
    const rows = batch * (config.imageSize / config.patchSize) ** 2;
    const width = config.visionWidth;
    sgemm = bestSgemm(rows, 4 * width, width);
    sgemmRates[`${preset} mlp ${rows}x${4 * width}x${width}`] = sgemm;
  } catch (err) {
    log(`  sgemm: ${(err as Error).message}`);
  }
  const gflops = flops / (ms * 1e6);
  results.push({
    preset,
    batch,
    msPerStep: ms,
    bestMsPerStep: Math.min(...times),
    stepGflop: flops / 1e9,
    gflops,
    sgemmGflops: sgemm,
    fractionOfSgemm: sgemm === null ? null : gflops / sgemm,
    loss: losses,
  });
  tf.dispose([images, tokens]);
  optimizer.dispose();
  model.dispose();
}
try {
  sgemmRates['square 1024x1024x1024'] = bestSgemm(1024, 1024, 1024);
} catch {
  // reported above
}

const summary = {
  backend: report,
  blas: blasDescription(),
  cpus: availableParallelism(),
  loadAverage: loadavg()[0],
  results,
  sgemmRates,
};
if (json) {
  process.stdout.write(JSON.stringify(summary) + '\n');
} else {
  const lines = [
    `backend ${report.backend}, batch ${batch}, ${steps} timed steps after one warm-up`,
    'preset | ms/step (mean) | ms/step (best) | GFLOP/step | GFLOP/s | sgemm GFLOP/s (same sizes) | step / sgemm',
    '---|---|---|---|---|---|---',
    ...results.map(
      (r) =>
        `${r.preset} | ${r.msPerStep.toFixed(0)} | ${r.bestMsPerStep.toFixed(0)} | ${r.stepGflop.toFixed(1)} | ${r.gflops.toFixed(1)} | ` +
        `${r.sgemmGflops?.toFixed(1) ?? 'n/a'} | ${r.fractionOfSgemm === null ? 'n/a' : `${(100 * r.fractionOfSgemm).toFixed(0)} %`}`,
    ),
    ...Object.entries(sgemmRates).map(
      ([name, rate]) => `sgemm ${name}: ${rate.toFixed(1)} GFLOP/s (${blasDescription()})`,
    ),
  ];
  process.stdout.write(lines.join('\n') + '\n');
}
