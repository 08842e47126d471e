/**
 * Real test data for the eval tests: a benchmark registry holding a folder of Twemoji drawings
 * with two captions each, a Fashion-MNIST IDX subset (labelled, ten class names), and a folder
 * whose only image is unreadable; plus a tiny checkpoint trained on emoji and Fashion-MNIST pairs.
 */
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { readIdx } from '../../corpus/idx.ts';
import { registerBenchmark } from '../../dedup/index.ts';
import { runTrain, type MemoryPair } from '../../train/index.ts';
import { emojis } from '../fixtures/images.ts';

export const FASHION = '/usr/share/datasets/fashion-mnist';

/** An IDX file of unsigned bytes with `dims`. */
function idxBytes(dims: number[], data: Uint8Array): Buffer {
  const header = Buffer.alloc(4 + 4 * dims.length);
  header[2] = 0x08;
  header[3] = dims.length;
  dims.forEach((d, i) => header.writeUInt32BE(d, 4 + 4 * i));
  return gzipSync(Buffer.concat([header, data]));
}

/** The first `n` Fashion-MNIST test images and labels, written as IDX into `dir`. */
export function writeFashionSubset(dir: string, n: number): { images: string; labels: string } {
  mkdirSync(dir, { recursive: true });
  const images = readIdx(join(FASHION, 't10k-images-idx3-ubyte.gz'));
  const labels = readIdx(join(FASHION, 't10k-labels-idx1-ubyte.gz'));
  const paths = {
    images: join(dir, 'fashion-images-idx3-ubyte.gz'),
    labels: join(dir, 'fashion-labels-idx1-ubyte.gz'),
  };
  writeFileSync(paths.images, idxBytes([n, 28, 28], images.data.subarray(0, n * 784)));
  writeFileSync(paths.labels, idxBytes([n], labels.data.subarray(0, n)));
  return paths;
}

export interface EvalFixture {
  benchDb: string;
  checkpoint: string;
  /** Images and captions of the emoji benchmark, in image-id order. */
  emoji: Array<{ file: string; captions: string[] }>;
}

/** Registers `emoji` (12 drawings), `fashion` (30 labelled images) and `broken` (unreadable) in a registry under `dir`, and trains a checkpoint. */
export async function makeEvalFixture(dir: string): Promise<EvalFixture> {
  const benchDb = join(dir, 'bench', 'benchmarks.sqlite');
  const emojiDir = join(dir, 'emoji');
  mkdirSync(emojiDir, { recursive: true });
  const chosen = emojis().slice(0, 12);
  const lines: string[] = [];
  const emoji = chosen
    .map((e) => {
      const file = `${e.shortName}.png`;
      copyFileSync(e.file, join(emojiDir, file));
      const captions = [e.name.toLowerCase(), `an emoji of ${e.name.toLowerCase()}`];
      for (const caption of captions) lines.push(JSON.stringify({ image: file, caption }));
      return { file, captions };
    })
    .sort((a, b) => (a.file < b.file ? -1 : 1));
  const captionsFile = join(dir, 'emoji-captions.jsonl');
  writeFileSync(captionsFile, lines.join('\n') + '\n');
  await registerBenchmark({ name: 'emoji', images: emojiDir, captions: captionsFile, benchDb });
  const fashion = writeFashionSubset(join(dir, 'fashion'), 30);
  await registerBenchmark({ name: 'fashion', images: fashion.images, labels: fashion.labels, benchDb });
  const brokenDir = join(dir, 'broken');
  mkdirSync(brokenDir, { recursive: true });
  writeFileSync(
    join(brokenDir, 'truncated.png'),
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0]),
  );
  await registerBenchmark({ name: 'broken', images: brokenDir, benchDb });

  const images = readIdx(join(FASHION, 'train-images-idx3-ubyte.gz'));
  const labels = readIdx(join(FASHION, 'train-labels-idx1-ubyte.gz'));
  const names = ['t-shirt', 'trouser', 'pullover', 'dress', 'coat', 'sandal', 'shirt', 'sneaker', 'bag', 'ankle boot'];
  const pairs: MemoryPair[] = chosen.map((e, i) => ({
    id: `e${i}`,
    caption: e.name.toLowerCase(),
    image: new Uint8Array(0),
  }));
  await Promise.all(
    chosen.map(async (e, i) => {
      const { readFile } = await import('node:fs/promises');
      (pairs[i] as MemoryPair).image = new Uint8Array(await readFile(e.file));
    }),
  );
  for (let i = 0; i < 36; i++) {
    pairs.push({
      id: `f${i}`,
      caption: `a photo of a ${names[labels.data[i] as number]}.`,
      image: { pixels: images.data.subarray(i * 784, (i + 1) * 784), width: 28, height: 28, channels: 1 },
    });
  }
  const run = await runTrain({
    pairs,
    out: join(dir, 'run'),
    epochs: 3,
    batchSize: 16,
    lrWarmupSteps: 1,
    vocabSize: 300,
  });
  return { benchDb, checkpoint: run.out, emoji };
}
