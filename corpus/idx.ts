/**
 * The IDX format of MNIST and Fashion-MNIST (plain or gzip): a magic number giving the element
 * type and the number of dimensions, the dimensions as big-endian 32-bit integers, then the data.
 * Dedup registers Fashion-MNIST test images from it; eval reads its labels.
 */
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { UsageError } from './errors.ts';

/** The class names of Fashion-MNIST, by label. */
export const FASHION_MNIST_CLASSES = [
  'T-shirt/top',
  'Trouser',
  'Pullover',
  'Dress',
  'Coat',
  'Sandal',
  'Shirt',
  'Sneaker',
  'Bag',
  'Ankle boot',
] as const;

/** An IDX array of unsigned bytes. */
export interface IdxArray {
  /** Sizes of the dimensions, outermost first (`[10000, 28, 28]` for images). */
  dims: number[];
  data: Uint8Array;
}

/** True when the bytes start like an IDX file of unsigned bytes (after any gzip layer). */
export function looksLikeIdx(bytes: Uint8Array): boolean {
  return bytes.length >= 8 && bytes[0] === 0 && bytes[1] === 0 && bytes[2] === 0x08 && (bytes[3] ?? 0) >= 1;
}

/** Parses IDX bytes (gzip is detected by its magic number). Only the unsigned-byte type is read. */
export function parseIdx(raw: Uint8Array, source = 'IDX data'): IdxArray {
  const bytes = raw[0] === 0x1f && raw[1] === 0x8b ? new Uint8Array(gunzipSync(raw)) : raw;
  if (!looksLikeIdx(bytes)) {
    throw new UsageError('ERR_INPUT_MALFORMED', `${source} is not an IDX file of unsigned bytes`, {
      context: { path: source },
    });
  }
  const rank = bytes[3] as number;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const dims: number[] = [];
  for (let i = 0; i < rank; i++) dims.push(view.getUint32(4 + 4 * i, false));
  const offset = 4 + 4 * rank;
  const size = dims.reduce((a, b) => a * b, 1);
  if (bytes.length < offset + size) {
    throw new UsageError(
      'ERR_INPUT_MALFORMED',
      `${source} is truncated: dimensions ${dims.join('x')} need ${offset + size} bytes, found ${bytes.length}`,
      { context: { path: source } },
    );
  }
  return { dims, data: bytes.subarray(offset, offset + size) };
}

/** Reads an IDX file, plain or `.gz`. */
export function readIdx(path: string): IdxArray {
  return parseIdx(readFileSync(path), path);
}

/** One image of an IDX image file: its index, row-major 8-bit pixels, and its label if known. */
export interface IdxImage {
  index: number;
  width: number;
  height: number;
  pixels: Uint8Array;
  label: number | null;
}

/**
 * The images of an IDX image file (`[n, rows, cols]`), with the labels of a matching label file
 * (`[n]`) when given. The counts must agree.
 */
export function* idxImages(images: IdxArray, labels?: IdxArray, source = 'IDX images'): Generator<IdxImage> {
  const [count, height, width] = images.dims;
  if (images.dims.length !== 3 || count === undefined || height === undefined || width === undefined) {
    throw new UsageError('ERR_INPUT_MALFORMED', `${source}: expected 3 dimensions, got ${images.dims.join('x')}`, {
      context: { path: source },
    });
  }
  if (labels && (labels.dims.length !== 1 || labels.dims[0] !== count)) {
    throw new UsageError(
      'ERR_INPUT_MALFORMED',
      `${source}: ${count} images but the label file holds ${labels.dims.join('x')}`,
      { context: { path: source } },
    );
  }
  const size = width * height;
  for (let i = 0; i < count; i++) {
    yield {
      index: i,
      width,
      height,
      pixels: images.data.subarray(i * size, (i + 1) * size),
      label: labels ? (labels.data[i] as number) : null,
    };
  }
}
