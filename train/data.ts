/**
 * Training data: which pairs to train on (kept pairs of one or more corpora, or pairs handed over
 * in memory), their images decoded once with sharp to a square uint8 cache, and seeded batches
 * with optional random resized crop and flip.
 *
 * Memory: the decoded cache holds `baseSize² × 3` bytes per pair (64 px: 12 KiB, so 2k emoji
 * pairs take 24 MiB and 20k Fashion-MNIST pairs 240 MiB). Up to `memoryLimitBytes` it lives in
 * one `Uint8Array`; beyond that it is written to a file in the run directory and batches are read
 * back with positional reads, so memory stays bounded whatever the corpus size. Shards are
 * streamed (`readShard`), never loaded whole.
 */
import { existsSync } from 'node:fs';
import { open, rm, type FileHandle } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import Database from 'better-sqlite3';
import sharp from 'sharp';
import { UsageError } from '../corpus/errors.ts';
import { filterReasonSql } from '../corpus/filter-reason.ts';
import { MANIFEST_FILE, hasColumn, openSqliteFile, refuseDuplicateCorpora } from '../corpus/manifest.ts';
import { createRandom, shuffle, type Random } from '../corpus/random.ts';
import { readShard } from '../corpus/shard-reader.ts';
import { readShardEntry, shardPaths } from '../corpus/shards.ts';

/** Raw pixels of an in-memory image (row-major, interleaved channels). */
export interface RawImage {
  pixels: Uint8Array;
  width: number;
  height: number;
  channels: 1 | 3 | 4;
}

/**
 * An image left in a WebDataset shard, read when it is decoded (so a list of a corpus's pairs
 * holds no image bytes). A missing member or undecodable bytes drop the pair, as for corpus pairs.
 */
export interface StoredImage {
  /** The shard's tar file. */
  tar: string;
  /** The member's name in the tar (`<key>.jpg`). */
  member: string;
}

/** A pair handed to the trainer in memory (eval's `compare` uses these). */
export interface MemoryPair {
  /** Unique id; reported back with the pair's noise probability. */
  id: string;
  caption: string;
  /** Encoded image bytes (any format sharp reads), raw pixels, or an image left in its shard. */
  image: Uint8Array | RawImage | StoredImage;
}

/** Where the pairs come from: corpus directories, or a list in memory. */
export type TrainSource =
  | {
      /** Corpus directories; their kept pairs are used. */
      corpus: string[];
      /** Also use pairs the filter stage rejected (`filter_reason` set). @default false */
      includeFiltered?: boolean;
      /** Also use pairs the dedup stage marked as duplicates (`dup_of` set). @default false */
      includeDuplicates?: boolean;
    }
  | { pairs: MemoryPair[] };

/** One pair to train on. */
export interface PairRef {
  /** `key` for a single corpus, `<corpus index>:<key>` for several, the given id in memory. */
  id: string;
  /** The WebDataset key (corpus pairs) or the id. */
  key: string;
  caption: string;
  /** Index into the corpus list, -1 for memory pairs. */
  corpus: number;
  shard: number | null;
}

/** Counts of a corpus's pairs, to explain an empty result. */
export interface SourceCounts {
  ok: number;
  filtered: number;
  duplicates: number;
  used: number;
}

function openManifestReadOnly(dir: string): Database.Database {
  const path = join(dir, MANIFEST_FILE);
  if (!existsSync(path)) {
    throw new UsageError('ERR_CORPUS_NOT_FOUND', `No corpus at '${dir}' (no ${MANIFEST_FILE})`, {
      context: { path: dir, stage: 'train' },
    });
  }
  return openSqliteFile(path, 'Corpus manifest', { readonly: true, fileMustExist: true });
}

/**
 * The pairs to train on: status `ok`, and (unless asked) neither rejected by the filter nor
 * marked `dup_of` by dedup, where those stages have run. Sorted by corpus and key (not by shard:
 * which shard a pair lands in depends on when its download finished), so the list is the same on
 * every run and every crawl of the same pairs.
 */
export function listPairs(source: TrainSource): { pairs: PairRef[]; counts: SourceCounts[] } {
  if ('pairs' in source) {
    const seen = new Set<string>();
    for (const p of source.pairs) {
      if (seen.has(p.id)) throw new UsageError('ERR_DUPLICATE_ID', `Pair id '${p.id}' appears twice`);
      seen.add(p.id);
    }
    return {
      pairs: source.pairs.map((p) => ({ id: p.id, key: p.id, caption: p.caption, corpus: -1, shard: null })),
      counts: [{ ok: source.pairs.length, filtered: 0, duplicates: 0, used: source.pairs.length }],
    };
  }
  refuseDuplicateCorpora(source.corpus, 'train');
  const pairs: PairRef[] = [];
  const counts: SourceCounts[] = [];
  const several = source.corpus.length > 1;
  source.corpus.forEach((dir, corpus) => {
    const db = openManifestReadOnly(dir);
    try {
      const filter = filterReasonSql(db);
      const hasDup = hasColumn(db, 'pairs', 'dup_of');
      const c = { ok: 0, filtered: 0, duplicates: 0, used: 0 };
      const rows = db
        .prepare(
          `SELECT key, caption, shard, ${filter?.reason ?? 'NULL'} AS filter_reason${hasDup ? ', dup_of' : ', NULL AS dup_of'}
             FROM ${filter?.from ?? 'pairs'} WHERE status = 'ok' ORDER BY key`,
        )
        .all() as Array<{
        key: string;
        caption: string;
        shard: number | null;
        filter_reason: string | null;
        dup_of: string | null;
      }>;
      for (const r of rows) {
        c.ok++;
        if (r.filter_reason !== null) c.filtered++;
        if (r.dup_of !== null) c.duplicates++;
        if (r.filter_reason !== null && !source.includeFiltered) continue;
        if (r.dup_of !== null && !source.includeDuplicates) continue;
        c.used++;
        pairs.push({
          id: several ? `${corpus}:${r.key}` : r.key,
          key: r.key,
          caption: r.caption,
          corpus,
          shard: r.shard,
        });
      }
      counts.push(c);
    } finally {
      db.close();
    }
  });
  return { pairs, counts };
}

/** Decoded images, `baseSize × baseSize × 3` uint8 each, addressed by pair index. */
export interface ImageStore {
  readonly baseSize: number;
  readonly count: number;
  /** Copies the images of `indices` one after the other into a new array. */
  read(indices: readonly number[]): Promise<Uint8Array>;
  /** Releases the cache (removes its file, if any). */
  close(): Promise<void>;
}

/** Options of {@link buildImageStore}. */
export interface ImageStoreOptions {
  /** Side of the cached square images. */
  baseSize: number;
  /** Largest cache kept in memory; a larger one goes to `spillDir`. @default 2 GiB */
  memoryLimitBytes?: number;
  /** Directory of the spill file when the cache exceeds memory. */
  spillDir: string;
  /** Images decoded at once (sharp runs them on libuv threads). @default 4 */
  concurrency?: number;
  /** Called as images are decoded. */
  onDecoded?: (done: number, total: number) => void;
  signal?: AbortSignal;
}

/**
 * Decodes one image to `size × size × 3` uint8: transparency flattened onto white (emoji and
 * icons are drawn on transparent backgrounds), the centre square kept (`cover`).
 */
export async function decodeSquare(image: Uint8Array | RawImage, size: number): Promise<Buffer> {
  const input =
    image instanceof Uint8Array
      ? sharp(image)
      : sharp(image.pixels, { raw: { width: image.width, height: image.height, channels: image.channels } });
  const { data, info } = await input
    .flatten({ background: '#ffffff' })
    .resize(size, size, { fit: 'cover', kernel: 'lanczos3' })
    .toColourspace('srgb')
    .removeAlpha()
    .raw()
    .toBuffer({ resolveWithObject: true });
  if (info.channels === 3) return data;
  const out = Buffer.alloc(size * size * 3);
  for (let i = 0; i < size * size; i++) {
    for (let c = 0; c < 3; c++) out[i * 3 + c] = data[i * info.channels + Math.min(c, info.channels - 1)] as number;
  }
  return out;
}

/** Async pool: runs `fn` over items with at most `limit` in flight. */
async function forEachLimited<T>(
  items: AsyncIterable<T>,
  limit: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  const inFlight = new Set<Promise<void>>();
  let failure: unknown;
  for await (const item of items) {
    if (failure !== undefined) break;
    const p: Promise<void> = fn(item)
      .catch((err: unknown) => {
        failure ??= err;
      })
      .finally(() => inFlight.delete(p));
    inFlight.add(p);
    if (inFlight.size >= limit) await Promise.race(inFlight);
  }
  await Promise.all(inFlight);
  if (failure !== undefined) throw failure;
}

/**
 * Decodes every pair's image once into the cache. Corpus images are streamed shard by shard; a
 * pair whose sample is missing from its shard is reported in `missing` (the caller drops it).
 */
export async function buildImageStore(
  source: TrainSource,
  pairs: readonly PairRef[],
  options: ImageStoreOptions,
): Promise<{ store: ImageStore; missing: number[] }> {
  const size = options.baseSize;
  const bytesPer = size * size * 3;
  const total = bytesPer * pairs.length;
  const inMemory = total <= (options.memoryLimitBytes ?? 2 * 1024 ** 3);
  const memory = inMemory ? new Uint8Array(total) : undefined;
  const spillPath = join(options.spillDir, `.pixels-${size}-${process.pid}.u8`);
  let file: FileHandle | undefined = inMemory ? undefined : await open(spillPath, 'w+');
  const found = new Uint8Array(pairs.length);
  let done = 0;
  const put = async (index: number, pixels: Buffer) => {
    if (memory) memory.set(pixels, index * bytesPer);
    else await (file as FileHandle).write(pixels, 0, bytesPer, index * bytesPer);
    found[index] = 1;
    options.onDecoded?.(++done, pairs.length);
  };
  // A stored image (a corpus's, or a StoredImage) that does not decode is dropped like a missing one.
  const putStored = async (index: number, bytes: Uint8Array) => {
    try {
      await put(index, await decodeSquare(bytes, size));
    } catch {
      // Left out of `found`: reported in `missing`.
    }
  };
  const concurrency = options.concurrency ?? 4;
  try {
    if ('pairs' in source) {
      const list = source.pairs;
      async function* all() {
        for (let i = 0; i < list.length; i++) yield i;
      }
      await forEachLimited(all(), concurrency, async (i) => {
        const image = (list[i] as MemoryPair).image;
        if (!('tar' in image)) {
          await put(i, await decodeSquare(image, size));
          return;
        }
        const bytes = existsSync(image.tar) ? readShardEntry(image.tar, image.member) : null;
        if (bytes !== null) await putStored(i, bytes);
      });
    } else {
      // Group by (corpus, shard) so that each tar is read once, in order.
      const groups = new Map<string, { corpus: number; shard: number; index: Map<string, number> }>();
      pairs.forEach((p, i) => {
        const id = `${p.corpus}:${p.shard}`;
        let g = groups.get(id);
        if (g === undefined) groups.set(id, (g = { corpus: p.corpus, shard: p.shard ?? -1, index: new Map() }));
        g.index.set(p.key, i);
      });
      for (const g of groups.values()) {
        if (options.signal?.aborted) break;
        const tar = shardPaths(resolve(source.corpus[g.corpus] as string), g.shard).tar;
        if (!existsSync(tar)) continue;
        const keys = new Set(g.index.keys());
        await forEachLimited(readShard(tar, keys), concurrency, async (sample) => {
          const i = g.index.get(sample.key);
          if (i !== undefined) await putStored(i, sample.jpg);
        });
      }
    }
  } catch (err) {
    await file?.close();
    if (!inMemory) await rm(spillPath, { force: true });
    throw err;
  }
  const missing: number[] = [];
  for (let i = 0; i < pairs.length; i++) if (found[i] === 0) missing.push(i);

  const store: ImageStore = {
    baseSize: size,
    count: pairs.length,
    async read(indices) {
      const out = new Uint8Array(indices.length * bytesPer);
      if (memory) {
        indices.forEach((idx, k) => out.set(memory.subarray(idx * bytesPer, (idx + 1) * bytesPer), k * bytesPer));
      } else {
        await Promise.all(
          indices.map((idx, k) => (file as FileHandle).read(out, k * bytesPer, bytesPer, idx * bytesPer)),
        );
      }
      return out;
    },
    async close() {
      if (file) {
        await file.close();
        file = undefined;
        await rm(spillPath, { force: true });
      }
    },
  };
  return { store, missing };
}

/** Augmentation of training images. */
export interface AugmentOptions {
  /** Random resized crop: area fraction range of the crop (e.g. `[0.6, 1]`); null for none. */
  crop: [number, number] | null;
  /** Mirror images left-right with probability 0.5. */
  flip: boolean;
}

/** The side of the cached images: a margin for crops, else the model's input size. */
export function baseSizeFor(imageSize: number, augment: AugmentOptions): number {
  return augment.crop ? Math.round(imageSize * 1.25) : imageSize;
}

/**
 * Samples the `crop` rectangle of a `base × base × 3` uint8 image bilinearly into `size × size × 3`
 * float32 in [0, 1] at `out[offset]`, mirrored when `flip` is set.
 */
export function sampleCrop(
  src: Uint8Array,
  srcOffset: number,
  base: number,
  crop: { x: number; y: number; w: number; h: number },
  flip: boolean,
  out: Float32Array,
  offset: number,
  size: number,
): void {
  const sx = crop.w / size;
  const sy = crop.h / size;
  for (let oy = 0; oy < size; oy++) {
    const fy = Math.min(base - 1, Math.max(0, crop.y + (oy + 0.5) * sy - 0.5));
    const y0 = Math.floor(fy);
    const y1 = Math.min(base - 1, y0 + 1);
    const wy = fy - y0;
    for (let ox = 0; ox < size; ox++) {
      const tx = flip ? size - 1 - ox : ox;
      const fx = Math.min(base - 1, Math.max(0, crop.x + (tx + 0.5) * sx - 0.5));
      const x0 = Math.floor(fx);
      const x1 = Math.min(base - 1, x0 + 1);
      const wx = fx - x0;
      const o = offset + (oy * size + ox) * 3;
      const a = srcOffset + (y0 * base + x0) * 3;
      const b = srcOffset + (y0 * base + x1) * 3;
      const c = srcOffset + (y1 * base + x0) * 3;
      const d = srcOffset + (y1 * base + x1) * 3;
      for (let ch = 0; ch < 3; ch++) {
        const top = (src[a + ch] as number) * (1 - wx) + (src[b + ch] as number) * wx;
        const bottom = (src[c + ch] as number) * (1 - wx) + (src[d + ch] as number) * wx;
        out[o + ch] = (top * (1 - wy) + bottom * wy) / 255;
      }
    }
  }
}

/** A random resized crop (area in `scale`, aspect ratio in [3/4, 4/3]) of a `base` square. */
export function randomCrop(
  random: Random,
  base: number,
  scale: [number, number],
): { x: number; y: number; w: number; h: number } {
  for (let attempt = 0; attempt < 10; attempt++) {
    const area = base * base * (scale[0] + random() * (scale[1] - scale[0]));
    const logRatio = Math.log(3 / 4) + random() * (Math.log(4 / 3) - Math.log(3 / 4));
    const ratio = Math.exp(logRatio);
    const w = Math.sqrt(area * ratio);
    const h = Math.sqrt(area / ratio);
    if (w <= base && h <= base) return { x: random() * (base - w), y: random() * (base - h), w, h };
  }
  return { x: 0, y: 0, w: base, h: base };
}

/**
 * Turns cached images into the model's float input: a random crop and flip per image when
 * `augment` and `random` are given, else the whole image (centre view, for scoring).
 */
export function toModelInput(
  pixels: Uint8Array,
  count: number,
  base: number,
  size: number,
  augment: AugmentOptions | null,
  random: Random | null,
): Float32Array {
  const out = new Float32Array(count * size * size * 3);
  const full = { x: 0, y: 0, w: base, h: base };
  for (let k = 0; k < count; k++) {
    const crop = augment?.crop && random ? randomCrop(random, base, augment.crop) : full;
    const flip = augment?.flip === true && random !== null && random() < 0.5;
    if (!augment?.crop && !flip && base === size) {
      for (let i = 0, o = k * size * size * 3, s = k * base * base * 3; i < size * size * 3; i++) {
        out[o + i] = (pixels[s + i] as number) / 255;
      }
    } else {
      sampleCrop(pixels, k * base * base * 3, base, crop, flip, out, k * size * size * 3, size);
    }
  }
  return out;
}

/** The order of pairs in one epoch: a seeded permutation, the same for a seed and epoch on every run. */
export function epochOrder(count: number, seed: number, epoch: number): number[] {
  return shuffle(
    createRandom(seed, `order:${epoch}`),
    Array.from({ length: count }, (_, i) => i),
  );
}
