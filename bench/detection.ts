/**
 * `npm run bench:detection`: how well image-side noise signals can find shuffled captions in the
 * eval issue's emoji setting (google+apple drawings, each concept drawn twice), and why they stop
 * near ROC AUC 0.8. Trains a vanilla model at the given noise rate (or takes `--checkpoint`),
 * embeds every training pair, and prints the AUC of each signal against the injected noise:
 *
 * - word grounding (`--noise-signal words`) on the model's image embeddings, on 8×8 colour
 *   thumbnails (no training at all), and on both;
 * - caption consistency (the other holder of the caption looks alike) and the pair's own
 *   image–caption cosine (the contrastive loss's view);
 * - how often an image's nearest other image is its concept's other drawing (its "twin"), by the
 *   model and by thumbnails: the structure a caption-swap detector would lean on;
 * - word grounding made exclusive between twins (of two drawings of one concept with different
 *   captions, at most one is clean), with the true twin (an upper bound no corpus gives) and with
 *   the nearest image;
 * - with `--crossfit`, scores no model has memorised: two more vanilla runs of the same recipe,
 *   each on one vendor's pairs, rank every pair of the other vendor (its caption among all the
 *   captions, its image among that vendor's images for its caption) — co-teaching's view, where a
 *   shuffled pair cannot look clean by having been learnt.
 *
 *   npm run bench:detection -- [--pairs 3800] [--epochs 10] [--rate 0.5] [--seed 1]
 *     [--checkpoint RUN_DIR] [--crossfit] [--out /tmp/altforge-bench-detection]
 *
 * The pairs, their order and the injected noise are those of `bench:compare --settings emoji` with
 * the same pairs, rate and seed, so a checkpoint from its `runs/rate-R-vanilla-seed-S` fits.
 */
import { existsSync, rmSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { BenchUsageError, benchArgs } from './_args.ts';
import { createRandom } from '../corpus/random.ts';
import { injectNoise, rocAuc, runCompare, similarity } from '../eval/index.ts';
import { emoji } from '../eval/_settings.ts';
import { loadEncoder, runTrain, type MemoryPair } from '../train/index.ts';
import {
  THUMBNAIL_SIDE,
  THUMBNAIL_WIDTH,
  captionConsistency,
  captionGroups,
  captionWords,
  centreRows,
  sideBySide,
  wordGrounding,
} from '../train/noise.ts';

const USAGE =
  'usage: npm run bench:detection -- [--pairs 3800] [--epochs 10] [--rate 0.5] [--seed 1] [--checkpoint RUN_DIR] [--crossfit] [--out DIR]';

const args = benchArgs(
  'detection',
  USAGE,
  {
    pairs: { type: 'string', default: '3800' },
    epochs: { type: 'string', default: '10' },
    rate: { type: 'string', default: '0.5' },
    seed: { type: 'string', default: '1' },
    checkpoint: { type: 'string' },
    crossfit: { type: 'boolean', default: false },
    out: { type: 'string', default: '/tmp/altforge-bench-detection' },
  },
  (flags) => {
    const checkpoint = flags.values['checkpoint'] as string | undefined;
    if (checkpoint !== undefined && !existsSync(checkpoint))
      throw new BenchUsageError(`--checkpoint: no run directory or checkpoint at '${checkpoint}'`);
    return {
      rate: flags.number('rate', 0, 1),
      seed: flags.number('seed', 0, Number.MAX_SAFE_INTEGER, true),
      trainPairs: flags.number('pairs', 4, 1_000_000, true),
      epochs: flags.number('epochs', 1, 10_000, true),
      checkpoint,
      crossfit: flags.values['crossfit'] === true,
      out: flags.values['out'] as string,
    };
  },
);
const { rate, seed, trainPairs, epochs } = args;
/** The vanilla recipe of `bench:compare --settings emoji` (batch 64, lr 5e-4, tiny preset). */
const recipe = { epochs, batchSize: 64, lr: 0.0005 };

console.log(
  `# bench:detection — ${new Date().toISOString()}, node ${process.version}, ${availableParallelism()} cpus, load average ${loadavg()
    .map((l) => l.toFixed(2))
    .join(' ')}`,
);

let checkpoint = args.checkpoint;
if (checkpoint === undefined) {
  const out = args.out as string;
  rmSync(out, { recursive: true, force: true });
  // The comparison's own vanilla run: same recipe as bench:compare's defaults, measured now.
  await runCompare({
    setting: 'emoji',
    out,
    noiseRates: [rate],
    methods: ['vanilla'],
    seeds: 1,
    firstSeed: seed,
    trainPairs,
    testImages: 500,
    train: recipe,
  });
  checkpoint = join(out, 'runs', `rate-${rate}-vanilla-seed-${seed}`);
}

// The comparison's pairs and noise: the setting is built with seed 1, the noise with the run's seed.
const setting = emoji({ trainPairs, testImages: 500, seed: 1 });
const pairs = setting.pairs;
const n = pairs.length;
const injected = injectNoise(
  pairs.map((p) => p.caption),
  rate,
  createRandom(seed, `noise:${rate}`),
  { groups: setting.groups },
);
const captions = injected.captions;
const noisy = injected.noisy;

const encoder = await loadEncoder(checkpoint);
const dim = encoder.dim;
const images = await encoder.embedImages(pairs.map((p) => p.image as Uint8Array));
const texts = encoder.embedTexts(captions);
encoder.dispose();

/** 8×8 colour thumbnails on white, centred and L2-normalised: what a drawing looks like before any training. */
async function thumbnails(): Promise<Float32Array> {
  const width = THUMBNAIL_WIDTH;
  const out = new Float32Array(n * width);
  for (const [i, p] of pairs.entries()) {
    const px = await sharp(p.image as Uint8Array)
      .flatten({ background: '#ffffff' })
      .resize(THUMBNAIL_SIDE, THUMBNAIL_SIDE, { fit: 'fill' })
      .removeAlpha()
      .raw()
      .toBuffer();
    out.set(px, i * width);
  }
  return centreRows(out, width);
}
const thumbs = await thumbnails();
const thumbWidth = THUMBNAIL_WIDTH;

/** Each row's nearest other row by dot product. */
function nearest(rows: Float32Array, width: number): Int32Array {
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    let best = -1;
    let bestDot = Number.NEGATIVE_INFINITY;
    for (let j = 0; j < n; j++) {
      if (j === i) continue;
      let dot = 0;
      for (let d = 0; d < width; d++) dot += (rows[i * width + d] as number) * (rows[j * width + d] as number);
      if (dot > bestDot) {
        bestDot = dot;
        best = j;
      }
    }
    out[i] = best;
  }
  return out;
}

/** Ranks scaled to [0, 1] (0: least suspect). */
function ranks(scores: ArrayLike<number>): Float64Array {
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => (scores[a] as number) - (scores[b] as number));
  const out = new Float64Array(n);
  order.forEach((i, r) => {
    out[i] = r / (n - 1);
  });
  return out;
}

// A pair's concept is its drawing's file name (the same for every vendor: `google/1f600.png`).
const concept = pairs.map((p) => p.id.slice(p.id.indexOf('/') + 1));
const byConcept = new Map<string, number[]>();
concept.forEach((c, i) => byConcept.set(c, [...(byConcept.get(c) ?? []), i]));
const twin = Int32Array.from(concept, (c, i) => (byConcept.get(c) ?? []).find((j) => j !== i) ?? -1);
const group = captionGroups(captions).index;

// The captions' words, tokenised once for the three groundings below.
const captionWordIds = captionWords(captions);
const words = wordGrounding(images, dim, captionWordIds);
const wordRanks = ranks(words);
const thumbWords = wordGrounding(thumbs, thumbWidth, captionWordIds);
/**
 * A score's ranks (word grounding's unless given) made exclusive between twins: a twin holding the
 * same caption makes both clean; else the better scored of the two is the likelier clean one, so a
 * pair's rank moves up by half the amount its twin's rank lies below the middle.
 */
function exclusive(twins: Int32Array, scoreRanks: Float64Array = wordRanks): Float64Array {
  return Float64Array.from(scoreRanks, (r, i) => {
    const t = twins[i] as number;
    if (t < 0) return r;
    if (group[t] === group[i]) return r - 1;
    return r - 0.5 * ((scoreRanks[t] as number) - 0.5);
  });
}
const consistency = captionConsistency(images, dim, captions);
const ownCosine = Float64Array.from({ length: n }, (_, i) => {
  let dot = 0;
  for (let d = 0; d < dim; d++) dot += (images[i * dim + d] as number) * (texts[i * dim + d] as number);
  return -dot;
});
const modelNearest = nearest(images, dim);
const thumbNearest = nearest(thumbs, thumbWidth);
const twinRate = (near: Int32Array) => near.filter((j, i) => j === twin[i]).length / n;

const rows: Array<[string, number | null]> = [
  ['word grounding, model embeddings', rocAuc(words, noisy)],
  ['word grounding, 8×8 thumbnails', rocAuc(thumbWords, noisy)],
  [
    'word grounding, model + thumbnails',
    rocAuc(wordGrounding(sideBySide(images, dim, thumbs, thumbWidth), dim + thumbWidth, captionWordIds), noisy),
  ],
  [
    'caption consistency (model)',
    rocAuc(
      Float64Array.from(consistency, (c) => (Number.isNaN(c) ? 0 : -c)),
      noisy,
    ),
  ],
  ["pair's own image–caption cosine (model)", rocAuc(ownCosine, noisy)],
  ['word grounding exclusive between true twins (upper bound)', rocAuc(exclusive(twin), noisy)],
  ['word grounding exclusive between nearest images (model)', rocAuc(exclusive(modelNearest), noisy)],
];
if (args.crossfit) rows.push(...(await crossfitRows()));

/**
 * Co-teaching's view, cross-fitted by vendor: a vanilla run of the same recipe on one vendor's
 * (noisy) pairs scores every pair of the other vendor, which it never saw. A pair's score is the
 * rank of its caption among all the distinct captions for its image, plus the rank of its image
 * among that vendor's images for its caption (0: first both ways).
 */
async function crossfitRows(): Promise<Array<[string, number | null]>> {
  const vendor = pairs.map((p) => p.id.slice(0, p.id.indexOf('/')));
  const distinct = [...new Set(captions)];
  const captionIndex = new Map(distinct.map((c, i) => [c, i]));
  const m = distinct.length;
  const score = new Float64Array(n);
  for (const heldOut of new Set(vendor)) {
    const train: MemoryPair[] = pairs.flatMap((p, i) =>
      vendor[i] === heldOut ? [] : [{ ...p, caption: captions[i] as string }],
    );
    const runDir = join(args.out, 'crossfit', `without-${heldOut}`);
    rmSync(runDir, { recursive: true, force: true });
    console.error(`crossfit: training on ${train.length} pairs, scoring the ${n - train.length} of ${heldOut}`);
    await runTrain({ ...recipe, pairs: train, out: runDir, seed });
    const scored = pairs.flatMap((_, i) => (vendor[i] === heldOut ? [i] : []));
    const held = await loadEncoder(runDir);
    const d = held.dim;
    const image = await held.embedImages(scored.map((i) => pairs[i]?.image as Uint8Array));
    const text = held.embedTexts(distinct);
    held.dispose();
    const sims = similarity(image, text, d);
    scored.forEach((i, a) => {
      const own = captionIndex.get(captions[i] as string) as number;
      const mine = sims[a * m + own] as number;
      let captionsAbove = 0;
      for (let c = 0; c < m; c++) if ((sims[a * m + c] as number) > mine) captionsAbove++;
      let imagesAbove = 0;
      for (let b = 0; b < scored.length; b++) if ((sims[b * m + own] as number) > mine) imagesAbove++;
      score[i] = captionsAbove / m + imagesAbove / scored.length;
    });
  }
  const crossRanks = ranks(score);
  const thumbRanks = ranks(thumbWords);
  return [
    ['cross-fitted by vendor: own caption and image ranks (a model that never saw the pair)', rocAuc(score, noisy)],
    ['cross-fitted, exclusive between true twins (upper bound)', rocAuc(exclusive(twin, crossRanks), noisy)],
    [
      'word grounding on thumbnails + cross-fitted, ranks summed',
      rocAuc(
        Float64Array.from(thumbRanks, (r, i) => r + (crossRanks[i] as number)),
        noisy,
      ),
    ],
  ];
}

console.log(`\nemoji: ${n} pairs, ${(rate * 100).toFixed(0)} % shuffled (seed ${seed}), checkpoint ${checkpoint}\n`);
console.log('| signal | ROC AUC |\n|---|---|');
for (const [name, auc] of rows) console.log(`| ${name} | ${auc === null ? '–' : auc.toFixed(3)} |`);
console.log(
  `\nnearest other image is the concept's other drawing: model ${(100 * twinRate(modelNearest)).toFixed(1)} %, ` +
    `8×8 thumbnails ${(100 * twinRate(thumbNearest)).toFixed(1)} %`,
);
