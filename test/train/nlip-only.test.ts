import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { NLIP_ONLY_OPTIONS, vanillaRecipe } from '../../train/options.ts';
import { readCheckpoint } from '../../train/checkpoint.ts';
import { CHECKPOINT_FILE, runTrain, type TrainOptions } from '../../train/index.ts';
import { tempDir } from '../helpers/corpus.ts';
import { makeEmojiCorpus, TOY_MODEL } from './_corpus.ts';

let work: { path: string; remove: () => Promise<void> };
let corpus: string;

beforeAll(async () => {
  work = await tempDir('train-nlip-only');
  corpus = join(work.path, 'corpus');
  await makeEmojiCorpus(corpus, { count: 8, shardSize: 8 });
});

afterAll(async () => {
  await work.remove();
});

/** A value other than the default of each option only nlip reads. */
const CHANGED: { [K in (typeof NLIP_ONLY_OPTIONS)[number]]: TrainOptions[K] } = {
  robustMode: 'weight',
  warmupEpochs: 0,
  noiseEma: 0.9,
  minSeparation: 0,
  maxNoiseFraction: 0.3,
  minNoiseFraction: 0.1,
  gateLatch: false,
  robustFloor: 0.5,
  robustThreshold: 0.5,
  varianceFloor: 0.01,
  consistencyWeight: 0.5,
  noiseSignal: 'loss',
  groundingThumbnails: true,
  agreementNeighbours: 3,
  multiPositive: false,
  relabel: false,
  agreementScore: 'gap',
  relabelThreshold: 0.8,
  relabelSource: 'model',
  completion: true,
  completionThreshold: 0.2,
  completionTopK: 5,
  completionWeight: 2,
  conceptVocabSize: 64,
};

/** The model weights a vanilla run of `recipe` ends with, taken as a comparison's vanilla runs take a shared recipe. */
async function vanillaWeights(name: string, recipe: Partial<TrainOptions>): Promise<Map<string, Float32Array>> {
  const out = join(work.path, name);
  const base = {
    backend: 'cpu',
    model: TOY_MODEL,
    vocabSize: 300,
    epochs: 2,
    batchSize: 4,
    labelSmoothing: 0.1,
  } as const;
  await runTrain({ ...vanillaRecipe({ ...base, ...recipe }), corpus: [corpus], out });
  const { tensors } = readCheckpoint(join(out, CHECKPOINT_FILE));
  return new Map([...tensors].filter(([key]) => key.startsWith('model/')).map(([key, t]) => [key, t.data]));
}

describe('the options only nlip reads', () => {
  test('leave a vanilla run bit for bit as it was, each one changed; a recipe option does not', async () => {
    expect(Object.keys(CHANGED).sort()).toEqual([...NLIP_ONLY_OPTIONS].sort());
    const reference = await vanillaWeights('reference', {});
    for (const [option, value] of Object.entries(CHANGED)) {
      expect(await vanillaWeights(option, { [option]: value }), option).toEqual(reference);
    }
    // The check can tell: an option vanilla reads changes the weights.
    expect(await vanillaWeights('lr', { lr: 1e-3 })).not.toEqual(reference);
  });
});
