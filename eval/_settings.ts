/**
 * The data of a comparison: training pairs (in memory, so captions can be shuffled) with a concept
 * per pair, and the clean benchmarks evaluated after training. Two built-in offline settings
 * (Fashion-MNIST from Debian's `dataset-fashion-mnist`; emoji drawings of two vendors against a
 * third) and any corpus directory with registered benchmarks.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { emojiDrawings, type EmojiDrawing, type EmojiVendor } from '../corpus/emoji.ts';
import { UsageError } from '../corpus/errors.ts';
import { FASHION_MNIST_CLASSES, idxImages, readIdx } from '../corpus/idx.ts';
import { MANIFEST_FILE } from '../corpus/manifest.ts';
import { createRandom, shuffle } from '../corpus/random.ts';
import { normaliseCaption } from '../corpus/text.ts';
import { getBenchmark, openRegistry } from '../corpus/registry.ts';
import { shardEntryNames, shardPaths } from '../corpus/shards.ts';
import { listPairs, type MemoryPair } from '../train/index.ts';
import { openBenchmark } from './benchmarks.ts';
import type { EvalBenchmark } from './zero-shot.ts';

/** Training pairs plus the concept of each (noise injection never gives a pair its own concept's caption). */
export interface SettingData {
  /** `fashion-mnist`, `emoji`, or `corpus:<dir>`. */
  setting: string;
  pairs: MemoryPair[];
  groups: Array<string | number>;
  benchmarks: EvalBenchmark[];
  /** Class names for classification benchmarks' templates, when the setting has them. */
  description: string;
  /** Releases what the benchmarks read their images from (a corpus setting's registry). */
  close?: () => void;
}

/** Where Debian's `dataset-fashion-mnist` puts the files. */
export const FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist';

/** Captions of Fashion-MNIST training pairs: several templates per class (`{}` is the class name). */
export const FASHION_CAPTION_TEMPLATES: readonly string[] = [
  'a photo of a {}.',
  'a {} in black and white.',
  'a grayscale picture of a {}.',
  'a small image of a {}.',
  'a {}, product photo.',
  'this is a {}.',
];

/** The class names as used in captions ("T-shirt/top" -> "t-shirt or top"). */
export function fashionClassNames(): string[] {
  return FASHION_MNIST_CLASSES.map((c) => c.toLowerCase().replace('/', ' or '));
}

/** Fashion-MNIST: `trainPairs` training images with a templated caption each, `testImages` test images to classify. */
export function fashionMnist(options: {
  trainPairs: number;
  testImages: number;
  seed: number;
  dir?: string;
}): SettingData {
  const dir = options.dir ?? FASHION_MNIST_DIR;
  const file = (name: string) => join(dir, name);
  for (const f of [
    'train-images-idx3-ubyte.gz',
    'train-labels-idx1-ubyte.gz',
    't10k-images-idx3-ubyte.gz',
    't10k-labels-idx1-ubyte.gz',
  ]) {
    if (!existsSync(file(f))) {
      throw new UsageError(
        'ERR_DATASET_NOT_FOUND',
        `Fashion-MNIST not found (${file(f)}): install Debian's dataset-fashion-mnist`,
        { context: { path: file(f), stage: 'compare' } },
      );
    }
  }
  const names = fashionClassNames();
  const random = createRandom(options.seed, 'fashion-captions');
  const train = [
    ...idxImages(readIdx(file('train-images-idx3-ubyte.gz')), readIdx(file('train-labels-idx1-ubyte.gz'))),
  ];
  const chosen = shuffle(createRandom(options.seed, 'fashion-subset'), train).slice(0, options.trainPairs);
  const pairs: MemoryPair[] = [];
  const groups: number[] = [];
  for (const img of chosen) {
    const label = img.label as number;
    const template = FASHION_CAPTION_TEMPLATES[Math.floor(random() * FASHION_CAPTION_TEMPLATES.length)] as string;
    pairs.push({
      id: `train-${img.index}`,
      caption: template.split('{}').join(names[label] as string),
      image: { pixels: img.pixels, width: img.width, height: img.height, channels: 1 },
    });
    groups.push(label);
  }
  const test = [
    ...idxImages(readIdx(file('t10k-images-idx3-ubyte.gz')), readIdx(file('t10k-labels-idx1-ubyte.gz'))),
  ].slice(0, options.testImages);
  return {
    setting: 'fashion-mnist',
    pairs,
    groups,
    benchmarks: [
      {
        name: 'fashion-mnist',
        images: test.map((t) => ({ pixels: t.pixels, width: t.width, height: t.height, channels: 1 as const })),
        captions: test.map(() => []),
        labels: test.map((t) => t.label),
        classNames: names,
      },
    ],
    description: `Fashion-MNIST: ${pairs.length} training pairs (${FASHION_CAPTION_TEMPLATES.length} caption templates per class), zero-shot classification of ${test.length} test images`,
  };
}

/**
 * Emoji: the drawings of `trainVendors` (google, apple) named by their Unicode name, and
 * `testImages` drawings of `testVendor` (twitter) of the same concepts, retrieved by name both ways
 * (a change of drawing style the model has not seen).
 */
export function emoji(options: {
  trainPairs: number;
  testImages: number;
  seed: number;
  trainVendors?: string[];
  testVendor?: string;
}): SettingData {
  const trainVendors = options.trainVendors ?? ['google', 'apple'];
  const testVendor = options.testVendor ?? 'twitter';
  if (trainVendors.length === 0 || new Set(trainVendors).size !== trainVendors.length) {
    throw new UsageError(
      'ERR_INVALID_OPTION',
      `The emoji setting trains on one or more distinct vendors, got '${trainVendors.join(',')}'`,
      { context: { stage: 'compare', option: 'trainVendors' } },
    );
  }
  if (trainVendors.includes(testVendor)) {
    throw new UsageError(
      'ERR_INVALID_OPTION',
      `The emoji setting's test vendor '${testVendor}' is also trained on: its drawings would be training images`,
      { context: { stage: 'compare', option: 'testVendor' } },
    );
  }
  // The concepts every vendor drew, in the test vendor's package order.
  const drawings = emojiDrawings([testVendor, ...trainVendors]);
  const usable = (drawings.get(testVendor as EmojiVendor) ?? []).map((_, i) => i);
  const concepts = shuffle(createRandom(options.seed, 'emoji-concepts'), usable).slice(
    0,
    Math.max(1, Math.floor(options.trainPairs / trainVendors.length)),
  );
  const drawing = (v: string, i: number) => (drawings.get(v as EmojiVendor) as EmojiDrawing[])[i] as EmojiDrawing;
  const pairs: MemoryPair[] = [];
  const groups: string[] = [];
  for (const i of concepts) {
    for (const v of trainVendors) {
      const d = drawing(v, i);
      pairs.push({ id: `${v}/${d.entry.image}`, caption: d.caption, image: new Uint8Array(readFileSync(d.file)) });
      groups.push(d.caption);
    }
  }
  const test = concepts.slice(0, options.testImages).map((i) => drawing(testVendor, i));
  return {
    setting: 'emoji',
    pairs,
    groups,
    benchmarks: [
      {
        name: `emoji-${testVendor}`,
        images: test.map((d) => new Uint8Array(readFileSync(d.file))),
        captions: test.map((d) => [d.caption]),
      },
    ],
    description: `emoji: ${pairs.length} training pairs (${trainVendors.join('+')}, ${concepts.length} concepts), retrieval on ${test.length} ${testVendor} drawings`,
  };
}

/**
 * A corpus: its kept pairs (status `ok`, not filtered, not duplicates; ids and captions in memory,
 * images left in the shards), grouped by normalised caption, evaluated on registered benchmarks.
 */
export async function corpusSetting(options: {
  corpus: string;
  benchmark: string[];
  benchDb: string;
  limit?: number;
}): Promise<SettingData> {
  const path = join(options.corpus, MANIFEST_FILE);
  if (!existsSync(path)) {
    throw new UsageError('ERR_CORPUS_NOT_FOUND', `No corpus at '${options.corpus}' (no ${MANIFEST_FILE})`, {
      context: { path: options.corpus, stage: 'compare' },
    });
  }
  // The benchmarks' images are read from the registry at every evaluation (one batch at a time), so
  // it stays open until the comparison closes the setting.
  const registry = openRegistry(options.benchDb);
  try {
    const benchmarks = options.benchmark.map((name) => openBenchmark(registry, name, options.limit));
    const pairs = keptPairs(options.corpus);
    return {
      setting: `corpus:${options.corpus}`,
      pairs,
      // A concept is a caption as training compares them, so a shuffle never hands a pair its own caption.
      groups: pairs.map((p) => normaliseCaption(p.caption)),
      benchmarks,
      // A benchmark cut to its first --test-images says so: its figures are not the whole set's.
      description: `corpus ${options.corpus}: ${pairs.length} kept pairs, benchmarks ${benchmarks
        .map(({ name, images }) => {
          const total = getBenchmark(registry, name).images;
          return images.count < total ? `${name} (its first ${images.count} of ${total} images: --test-images)` : name;
        })
        .join(', ')}`,
      close: () => registry.close(),
    };
  } catch (err) {
    registry.close();
    throw err;
  }
}

/**
 * A corpus's kept pairs (status `ok`, not filtered, not duplicates) whose image is in its shard;
 * the images stay there (`StoredImage`) and training reads each as it decodes it, so a large
 * corpus costs its ids and captions in memory, not its images.
 */
function keptPairs(corpus: string): MemoryPair[] {
  // The pairs training would take (`listPairs`), shard by shard as the comparison has always listed them.
  const rows = listPairs({ corpus: [corpus] }).pairs.sort(
    (x, y) => (x.shard as number) - (y.shard as number) || (x.key < y.key ? -1 : x.key > y.key ? 1 : 0),
  );
  const pairs: MemoryPair[] = [];
  // The rows come shard by shard: one shard's entry names at a time.
  let shard = null as { number: number; tar: string; names: Set<string> } | null;
  for (const r of rows) {
    if (shard?.number !== r.shard) {
      const tar = shardPaths(corpus, r.shard as number).tar;
      shard = { number: r.shard as number, tar, names: new Set(existsSync(tar) ? shardEntryNames(tar) : []) };
    }
    const member = `${r.key}.jpg`;
    if (shard.names.has(member)) pairs.push({ id: r.key, caption: r.caption, image: { tar: shard.tar, member } });
  }
  return pairs;
}
