import { defineCommand } from 'citty';
import type { ScoreOptions, ScoreResult } from '../train/index.ts';
import { oneHumpNote } from '../train/options.ts';
import { backendFlag, cittyArgs, type FlagSpecs } from './_args.ts';
import { runStageCommand } from './_run.ts';
import { NLIP_SIGNAL_FLAGS, parseNeighbours } from './train.ts';

export const flags = {
  corpus: { type: 'string', description: 'Corpus directory whose pairs are scored', valueHint: 'DIR', alias: 'c' },
  checkpoint: {
    type: 'string',
    description: 'Checkpoint file, or a run directory of altforge train',
    valueHint: 'PATH',
  },
  backend: backendFlag(),
  batchSize: { type: 'integer', description: 'Pairs per scoring batch', default: 256, valueHint: 'N' },
  seed: { type: 'integer', description: 'Seed of the random batches', default: 1, valueHint: 'N' },
  noiseSignal: {
    ...NLIP_SIGNAL_FLAGS.noiseSignal,
    description:
      'What the mixture is fitted to: caption agreement of the image neighbourhood, the loss, words (does the image look like the other images whose captions share its words), or auto (agreement when captions are shared by 3+ pairs, else the loss)',
  },
  groundingThumbnails: {
    ...NLIP_SIGNAL_FLAGS.groundingThumbnails,
    description:
      'words signal: ground words on the image embeddings and 8×8 colour thumbnails side by side, as in altforge train',
  },
  agreementNeighbours: {
    ...NLIP_SIGNAL_FLAGS.agreementNeighbours,
    description: 'Nearest corpus images averaged with each image for the agreement signal (auto: from caption sharing)',
  },
  agreementScore: {
    ...NLIP_SIGNAL_FLAGS.agreementScore,
    description: "The agreement signal's score, as in altforge train",
  },
  completion: {
    type: 'boolean',
    description: 'Write completed captions for likely-noisy pairs (--no-completion: none)',
    default: true,
  },
  completionThreshold: {
    type: 'number',
    description: 'Noise probability above which a caption is completed',
    default: 0.5,
    valueHint: 'P',
  },
  json: { type: 'boolean', description: 'Print the result as JSON on stdout' },
  progress: { type: 'boolean', description: 'Show a progress bar on a terminal', default: true },
} satisfies FlagSpecs;

/** One line that says what scoring did. */
export function summarizeScore(result: ScoreResult): string {
  const oneHump = oneHumpNote(result.separation);
  return (
    `score: ${result.scored} pairs scored by ${result.signal}, ${result.noisy} likely noisy (noise_prob > 0.5), mean ${result.meanNoise.toFixed(3)}, ` +
    `${result.completed} completed captions, separation ${result.separation.toFixed(2)}${oneHump === null ? '' : ` (${oneHump})`}` +
    `${result.missingImages ? `, ${result.missingImages} images unreadable` : ''}; ` +
    `${(result.durationMs / 1000).toFixed(1)} s -> ${result.corpus}/manifest.sqlite (pairs.noise_prob, pairs.completed_caption)`
  );
}

export const scoreCommand = defineCommand({
  meta: {
    name: 'score',
    description:
      "Write each pair's noise probability (and a completed caption for likely-noisy pairs) to the corpus manifest, using a trained checkpoint; the filter stage reads it with --max-noise-prob.",
  },
  args: cittyArgs(flags),
  async run({ rawArgs }) {
    // The train stage (TensorFlow.js) is loaded when the command runs, so other commands start fast.
    const { describeBackends, runScore } = await import('../train/index.ts');
    await runStageCommand({
      rawArgs,
      flags,
      required: {
        corpus: 'Missing --corpus DIR: the corpus to score',
        checkpoint: 'Missing --checkpoint PATH: a checkpoint of altforge train',
      },
      run: (options, hooks) =>
        runScore({
          ...options,
          agreementNeighbours: parseNeighbours(options['agreementNeighbours'] ?? 'auto'),
          onProgress: hooks.onProgress,
          signal: hooks.signal,
        } as ScoreOptions),
      summarize: (result: ScoreResult) => `${describeBackends(result.backend)}\n${summarizeScore(result)}`,
    });
  },
});
