import type cliProgress from 'cli-progress';
import { defineCommand } from 'citty';
import { UsageError } from '../corpus/errors.ts';
// The train stage (TensorFlow.js) is loaded when the command runs, so other commands start fast.
import { DEFAULT_MIN_SEPARATION, NOISE_SIGNAL_CHOICES, NOISE_SIGNAL_OFF_REASON } from '../train/options.ts';
import type { TrainOptions, TrainProgress, TrainResult } from '../train/index.ts';
import { backendFlag, cittyArgs, parseFlags, type FlagSpecs } from './_args.ts';
import { startBar } from './_progress.ts';
import { interruptSignal, setExitCode } from './_run.ts';

/** The flags of nlip's noise signal, shared with `altforge compare`. */
export const NLIP_SIGNAL_FLAGS = {
  noiseSignal: {
    type: 'string',
    description:
      'What nlip fits its mixture to: caption agreement of the image neighbourhood, the loss, words (does the image look like the other images whose captions share its words), or auto (agreement when captions are shared by 3+ pairs)',
    default: 'auto',
    valueHint: 'SIGNAL',
    choices: [...NOISE_SIGNAL_CHOICES],
  },
  // No default here: unset, it stays out of a comparison's recipe (training's default: off).
  groundingThumbnails: {
    type: 'boolean',
    description:
      'nlip words signal: ground words on the image embeddings and 8×8 colour thumbnails side by side (drawings whose colours carry the concept, e.g. emoji)',
  },
  agreementNeighbours: {
    type: 'string',
    description:
      'Nearest training images averaged with each image for the agreement signal (auto: from caption sharing)',
    default: 'auto',
    valueHint: 'K|auto',
  },
  multiPositive: {
    type: 'boolean',
    description: 'nlip: pairs with identical captions are positives of each other (--no-multi-positive: off)',
    default: true,
  },
  relabel: {
    type: 'boolean',
    description:
      'nlip: train likely-noisy pairs on a caption chosen for them (see --relabel-source; --no-relabel: off)',
    default: true,
  },
  relabelSource: {
    type: 'string',
    description:
      "nlip: the caption a relabelled pair gets: the model's first choice for its image neighbourhood, the caption its nearest images carry (neighbours), or both cosines summed (joint)",
    default: 'neighbours',
    valueHint: 'SOURCE',
    choices: ['model', 'neighbours', 'joint'],
  },
  agreementScore: {
    type: 'string',
    description:
      "nlip agreement signal's score: the cosine gap of the model's first-choice caption for the image neighbourhood (gap), or that gap plus the neighbours' caption vote through the text tower (joint)",
    default: 'joint',
    valueHint: 'SCORE',
    choices: ['gap', 'joint'],
  },
  minNoiseFraction: {
    type: 'number',
    description:
      'nlip: act only when the high-score component holds at least this fraction of pairs (a smaller hump on clean data is the hardest pairs, not noise)',
    default: 0,
    valueHint: 'F',
  },
  gateLatch: {
    type: 'boolean',
    description:
      'nlip: once the noise estimate has been acted on, keep acting on later epochs (--no-gate-latch: re-check the gate every epoch)',
    default: true,
  },
} satisfies FlagSpecs;

export const flags = {
  corpus: { type: 'list', description: 'Corpus directory to train on', valueHint: 'DIR', alias: 'c' },
  out: {
    type: 'string',
    description: 'Run directory: checkpoint.ckpt, metrics.jsonl, noise.json',
    valueHint: 'DIR',
    alias: 'o',
  },
  backend: backendFlag(),
  preset: { type: 'string', description: 'Model size', default: 'tiny', valueHint: 'NAME', choices: ['tiny', 'small'] },
  imageSize: { type: 'integer', description: "Input image size (overrides the preset's)", valueHint: 'PX' },
  epochs: { type: 'integer', description: 'Passes over the data', default: 10, valueHint: 'N' },
  batchSize: { type: 'integer', description: 'Pairs per step', default: 256, valueHint: 'N' },
  lr: { type: 'number', description: 'Peak learning rate', default: 0.0005, valueHint: 'LR' },
  lrWarmupSteps: { type: 'integer', description: 'Learning-rate warm-up steps', default: 50, valueHint: 'N' },
  weightDecay: { type: 'number', description: 'AdamW weight decay', default: 0.1, valueHint: 'WD' },
  labelSmoothing: { type: 'number', description: 'Label smoothing (ALIGN: 0.1)', default: 0, valueHint: 'EPS' },
  vocabSize: { type: 'integer', description: 'Tokenizer vocabulary size', default: 4096, valueHint: 'N' },
  seed: { type: 'integer', description: 'Seed of weights, data order, augmentation', default: 1, valueHint: 'N' },
  cropScale: {
    type: 'number',
    description: 'Random resized crop: smallest area kept (1: no crop)',
    default: 1,
    valueHint: 'F',
  },
  flip: { type: 'boolean', description: 'Random left-right flips' },
  includeFiltered: { type: 'boolean', description: 'Also train on pairs the filter stage rejected' },
  includeDuplicates: { type: 'boolean', description: 'Also train on pairs dedup marked as duplicates' },
  robust: {
    type: 'string',
    description: 'Noise-robust training',
    default: 'none',
    valueHint: 'MODE',
    choices: ['none', 'nlip'],
  },
  robustMode: {
    type: 'string',
    description: 'How noise enters the loss',
    default: 'soft',
    valueHint: 'MODE',
    choices: ['soft', 'weight'],
  },
  warmupEpochs: {
    type: 'integer',
    description: 'Vanilla epochs before the first noise estimate',
    default: 2,
    valueHint: 'N',
  },
  noiseEma: {
    type: 'number',
    description: 'Weight of the previous noise estimate (EMA)',
    default: 0.5,
    valueHint: 'F',
  },
  minSeparation: {
    type: 'number',
    description: "Act only when the mixture's components are this far apart (Ashman's D; 0: always)",
    default: DEFAULT_MIN_SEPARATION,
    valueHint: 'D',
  },
  maxNoiseFraction: {
    type: 'number',
    description: 'Act only when the high-loss component holds at most this fraction of pairs',
    default: 0.7,
    valueHint: 'F',
  },
  robustFloor: {
    type: 'number',
    description: 'Smallest clean target / weight a pair keeps',
    default: 0,
    valueHint: 'F',
  },
  thumbnailSpread: {
    type: 'number',
    description:
      "Give an image's target mass off its own caption (nlip soft targets' 1 − t, label smoothing's ε) to the batch's captions whose images' 8×8 colour thumbnails look alike (softmax sharpness K; 0: evenly)",
    default: 0,
    valueHint: 'K',
  },
  robustThreshold: { type: 'number', description: 'Hard split at this noise probability', valueHint: 'P' },
  ...NLIP_SIGNAL_FLAGS,
  relabelThreshold: {
    type: 'number',
    description: 'Noise probability above which pairs are relabelled',
    default: 0.5,
    valueHint: 'P',
  },
  completion: { type: 'boolean', description: 'Noise completion: train noisy pairs on captions of retrieved concepts' },
  completionThreshold: {
    type: 'number',
    description: 'Noise probability above which pairs are completed',
    default: 0.5,
    valueHint: 'P',
  },
  checkpointEvery: {
    type: 'integer',
    description: 'Checkpoint every N steps (and at the end)',
    default: 500,
    valueHint: 'N',
  },
  maxSteps: { type: 'integer', description: 'Stop (with a checkpoint) at this global step', valueHint: 'N' },
  resume: { type: 'boolean', description: 'Continue the run in --out from its checkpoint' },
  json: { type: 'boolean', description: 'Print the result as JSON on stdout' },
  progress: { type: 'boolean', description: 'Show a progress bar on a terminal', default: true },
} satisfies FlagSpecs;

/** `--agreement-neighbours`: `auto` or a whole number of neighbours. */
export function parseNeighbours(raw: unknown): number | 'auto' {
  if (raw === 'auto') return 'auto';
  const n = typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : Number.NaN;
  if (!Number.isInteger(n) || n < 0) {
    throw new UsageError(
      'ERR_USAGE',
      `Flag --agreement-neighbours: expected auto or a whole number, got \`${String(raw)}\``,
    );
  }
  return n;
}

/** One line that says what the run did. */
export function summarizeTrain(result: TrainResult): string {
  const noise =
    result.noiseSignal === 'off'
      ? `; noise estimate off (${NOISE_SIGNAL_OFF_REASON}; --noise-signal loss acts on the loss)`
      : result.noise
        ? `; noise (${result.noiseSignal ?? 'loss'}): ${result.noise.noiseProb.filter((p) => p > 0.5).length} of ${result.pairs} pairs above 0.5`
        : '';
  const stop = result.stoppedBy === 'signal' ? ' interrupted' : result.stoppedBy === 'maxSteps' ? ' (max steps)' : '';
  return (
    `train${stop}: ${result.pairs} pairs, step ${result.step} (${result.stepsRun} this run, ${result.stepsPerEpoch}/epoch at batch ${result.batchSize}), ` +
    `loss ${result.lastLoss === null ? '-' : result.lastLoss.toFixed(4)}, ${result.pairsPerSecond.toFixed(1)} pairs/s on ${result.backend.backend}` +
    `${noise}; ${(result.durationMs / 1000).toFixed(1)} s -> ${result.checkpoint}`
  );
}

/** A progress bar for decoding, harmonisation and training, with the loss and an ETA. */
function trainBar(enabled: boolean): { update(p: TrainProgress): void; stop(): void } {
  if (!enabled || !process.stderr.isTTY) return { update: () => undefined, stop: () => undefined };
  let bar: cliProgress.SingleBar | null = null;
  let phase = '';
  return {
    update(p) {
      if (p.phase !== phase || bar === null) {
        bar?.stop();
        phase = p.phase;
        bar = startBar(
          {
            format: `${p.phase.padEnd(9)} [{bar}] {value}/{total} | epoch {epoch} | loss {loss} | ETA {eta_formatted}`,
            etaBuffer: 50,
          },
          p.total,
          { epoch: p.epoch + 1, loss: '-' },
        );
        if (bar === null) return;
      }
      bar.setTotal(p.total);
      bar.update(p.done, { epoch: p.epoch + 1, loss: p.loss === undefined ? '-' : p.loss.toFixed(4) });
    },
    stop() {
      bar?.stop();
    },
  };
}

export const trainCommand = defineCommand({
  meta: {
    name: 'train',
    description:
      'Train a contrastive dual encoder (ViT + text transformer) on the kept pairs of one or more corpora, vanilla or noise-robust (--robust nlip). Ctrl-C stops with a checkpoint; --resume continues.',
  },
  args: {
    dirs: { type: 'positional', required: false, description: 'Corpus directories (same as --corpus)' },
    ...cittyArgs(flags),
  },
  async run({ rawArgs }) {
    const { values, positionals } = parseFlags(rawArgs, flags, Infinity);
    const {
      json,
      progress: showProgress,
      corpus,
      imageSize,
      agreementNeighbours,
      ...rest
    } = values as Record<string, unknown> & {
      json?: boolean;
      progress?: boolean;
      corpus?: string[];
      imageSize?: number;
      agreementNeighbours?: string;
    };
    const dirs = [...positionals, ...(corpus ?? [])];
    if (dirs.length === 0) throw new UsageError('ERR_USAGE', 'Missing --corpus DIR: the corpus to train on');
    if (rest['out'] === undefined) throw new UsageError('ERR_USAGE', 'Missing --out DIR: the run directory');
    const bar = trainBar(showProgress !== false && json !== true);
    const options = {
      ...rest,
      corpus: dirs,
      ...(imageSize !== undefined ? { model: { imageSize } } : {}),
      ...(agreementNeighbours !== undefined ? { agreementNeighbours: parseNeighbours(agreementNeighbours) } : {}),
      onProgress: (p: TrainProgress) => bar.update(p),
      signal: interruptSignal(),
    } as TrainOptions;
    let result: TrainResult;
    try {
      const { runTrain } = await import('../train/index.ts');
      result = await runTrain(options);
    } finally {
      bar.stop();
    }
    if (json) {
      const noise = result.noise ? { ...result.noise, noiseProb: Array.from(result.noise.noiseProb) } : null;
      process.stdout.write(JSON.stringify({ ...result, noise }) + '\n');
    } else {
      const { describeBackends } = await import('../train/index.ts');
      process.stderr.write(describeBackends(result.backend) + '\n');
      process.stderr.write(summarizeTrain(result) + '\n');
    }
    if (result.stoppedBy === 'signal') setExitCode(130);
  },
});
