/**
 * The test-set inputs `bench add --images` accepts: a folder of image files (searched
 * recursively), WebDataset shards (a `.tar`, or a folder of them), or a Fashion-MNIST / MNIST IDX
 * image file (plain or gzip, its label file found beside it). Each is checked before anything is
 * written, then streamed one image at a time.
 */
import { closeSync, existsSync, openSync, readdirSync, readFileSync, readSync, statSync, type Dirent } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname, extname, join, relative, resolve } from 'node:path';
import sharp from 'sharp';
import { emojiDrawings, emojiImageDir, type EmojiVendor } from '../corpus/emoji.ts';
import { UsageError } from '../corpus/errors.ts';
import { FASHION_MNIST_CLASSES, idxImages, looksLikeIdx, parseIdx, readIdx, type IdxArray } from '../corpus/idx.ts';
import type { BenchmarkSourceKind } from '../corpus/registry.ts';
import { readShard } from '../corpus/shard-reader.ts';

/** Extensions read from an image folder. */
const IMAGE_EXTENSIONS = new Set(['.jpg', '.jpeg', '.png', '.webp', '.gif', '.tif', '.tiff', '.avif', '.bmp']);

/** One test image as read from its source; `bytes` is missing when it could not be read. */
export interface InputImage {
  imageId: string;
  bytes: Buffer | null;
  error: string | null;
  /** Where eval finds the bytes again (null for IDX: the PNG itself is stored). */
  path: string | null;
  member: string | null;
  /** Store these bytes in the registry (IDX images, as PNG). */
  storeBytes: boolean;
  label: number | null;
  captions: string[];
}

/** A checked input: its kind, its size when known, and a stream of its images. */
export interface ImageSource {
  kind: BenchmarkSourceKind;
  path: string;
  /** Images it holds (null when only known by reading it all: shards). */
  count: number | null;
  /** Class names by label, for a labelled IDX set. */
  classNames: string[] | null;
  images(skip: ReadonlySet<string>): AsyncGenerator<InputImage>;
}

function listImageFiles(dir: string): string[] {
  return (readdirSync(dir, { recursive: true, withFileTypes: true }) as Dirent[])
    .filter((e) => e.isFile() && IMAGE_EXTENSIONS.has(extname(e.name).toLowerCase()))
    .map((e) => join(e.parentPath, e.name))
    .sort();
}

function listTars(dir: string): string[] {
  return readdirSync(dir)
    .filter((n) => n.endsWith('.tar'))
    .sort()
    .map((n) => join(dir, n));
}

function readHead(path: string, bytes: number): Buffer {
  const fd = openSync(path, 'r');
  try {
    const head = Buffer.alloc(bytes);
    const n = readSync(fd, head, 0, bytes, 0);
    return head.subarray(0, n);
  } finally {
    closeSync(fd);
  }
}

/** The label file of an IDX image file: `--labels`, or `*-labels-idx1-ubyte[.gz]` beside it. */
function findLabels(imagesPath: string, explicit: string | undefined): string | null {
  if (explicit !== undefined) {
    if (!existsSync(explicit))
      throw new UsageError('ERR_INPUT_NOT_FOUND', `Labels file '${explicit}' does not exist`, {
        context: { path: explicit },
      });
    return explicit;
  }
  const name = basename(imagesPath);
  if (!name.includes('images-idx3')) return null;
  const candidate = join(dirname(imagesPath), name.replace('images-idx3', 'labels-idx1'));
  return existsSync(candidate) ? candidate : null;
}

async function idxPng(pixels: Uint8Array, width: number, height: number): Promise<Buffer> {
  return sharp(Buffer.from(pixels), { raw: { width, height, channels: 1 } })
    .toColourspace('b-w')
    .png()
    .toBuffer();
}

/**
 * Checks `--images` and says what it is. An empty folder, a missing path or an unrecognised file
 * is a usage error, raised before the registry is touched.
 */
export function openImageSource(
  images: string,
  options: { labels?: string; classNames?: readonly string[] } = {},
): ImageSource {
  const path = resolve(images);
  if (!existsSync(path)) {
    throw new UsageError('ERR_INPUT_NOT_FOUND', `--images '${images}' does not exist`, { context: { path: images } });
  }
  if (statSync(path).isDirectory()) {
    refuseClassNames(images, options.classNames);
    const tars = listTars(path);
    if (tars.length > 0) return shardSource(path, tars);
    const files = listImageFiles(path);
    if (files.length === 0) {
      throw new UsageError(
        'ERR_EMPTY_INPUT',
        `--images '${images}' holds no image files (${[...IMAGE_EXTENSIONS].join(' ')}) and no .tar shards`,
        {
          context: { path: images },
        },
      );
    }
    return {
      kind: 'folder',
      path,
      count: files.length,
      classNames: null,
      async *images(skip) {
        for (const file of files) {
          const imageId = relative(path, file);
          if (skip.has(imageId)) continue;
          let bytes: Buffer | null = null;
          let error: string | null = null;
          try {
            bytes = await readFile(file);
          } catch (err) {
            error = (err as Error).message;
          }
          yield { imageId, bytes, error, path: file, member: null, storeBytes: false, label: null, captions: [] };
        }
      },
    };
  }
  if (path.endsWith('.tar')) {
    refuseClassNames(images, options.classNames);
    return shardSource(path, [path]);
  }
  const head = readHead(path, 8);
  const gz = head[0] === 0x1f && head[1] === 0x8b;
  if (gz || looksLikeIdx(head)) {
    const array = readIdx(path);
    const labelsPath = findLabels(path, options.labels);
    const labels = labelsPath === null ? undefined : parseIdx(readFileSync(labelsPath), labelsPath);
    const count = array.dims[0] ?? 0;
    if (count === 0)
      throw new UsageError('ERR_EMPTY_INPUT', `--images '${images}' holds no images`, { context: { path: images } });
    // Validates the dimensions and the label count now, before anything is written.
    idxImages(array, labels, path).next();
    return {
      kind: 'idx',
      path,
      count,
      classNames:
        labels === undefined
          ? refuseClassNames(images, options.classNames)
          : idxClassNames(path, labels, options.classNames),
      async *images(skip) {
        for (const image of idxImages(array, labels, path)) {
          const imageId = String(image.index);
          if (skip.has(imageId)) continue;
          const bytes = await idxPng(image.pixels, image.width, image.height);
          yield {
            imageId,
            bytes,
            error: null,
            path: null,
            member: null,
            storeBytes: true,
            label: image.label,
            captions: [],
          };
        }
      },
    };
  }
  throw new UsageError(
    'ERR_INPUT_MALFORMED',
    `--images '${images}' is neither a folder, a .tar shard nor an IDX file`,
    { context: { path: images } },
  );
}

/**
 * The 64 px drawings of an emoji vendor's npm package (`emoji-datasource-<vendor>`), each captioned
 * with its Unicode name: an offline retrieval benchmark that needs no files of its own.
 */
export function emojiSource(vendor: string): ImageSource {
  const drawings = emojiDrawings([vendor]).get(vendor as EmojiVendor) ?? [];
  return {
    kind: 'emoji',
    path: emojiImageDir(vendor),
    count: drawings.length,
    classNames: null,
    async *images(skip) {
      for (const d of drawings) {
        const imageId = d.entry.image;
        if (skip.has(imageId)) continue;
        let bytes: Buffer | null = null;
        let error: string | null = null;
        try {
          bytes = await readFile(d.file);
        } catch (err) {
          error = (err as Error).message;
        }
        yield {
          imageId,
          bytes,
          error,
          path: d.file,
          member: null,
          storeBytes: false,
          label: null,
          captions: [d.caption],
        };
      }
    },
  };
}

function shardSource(path: string, tars: string[]): ImageSource {
  for (const tar of tars) {
    // A tar that is not readable fails now, not half-way through a registration.
    closeSync(openSync(tar, 'r'));
    if (statSync(tar).size === 0)
      throw new UsageError('ERR_INPUT_MALFORMED', `Shard '${tar}' is empty`, { context: { path: tar } });
  }
  return {
    kind: 'shards',
    path,
    count: null,
    classNames: null,
    async *images(skip) {
      for (const tar of tars) {
        for await (const sample of readShard(tar)) {
          if (skip.has(sample.key)) continue;
          yield {
            imageId: sample.key,
            bytes: sample.jpg,
            error: null,
            path: tar,
            member: sample.key,
            storeBytes: false,
            label: null,
            captions: sample.txt.trim() === '' ? [] : [sample.txt],
          };
        }
      }
    },
  };
}

/**
 * Reads a captions file into image id → captions. Formats: COCO annotations JSON (`images` with
 * `file_name`, `annotations` with `image_id` and `caption`), JSONL (`{"image": ..., "caption": ...}`),
 * or tab-separated `image<TAB>caption` lines (Flickr30k's `image.jpg#0` numbering is dropped).
 */
export function readCaptions(path: string): Map<string, string[]> {
  if (!existsSync(path))
    throw new UsageError('ERR_INPUT_NOT_FOUND', `--captions '${path}' does not exist`, { context: { path } });
  const text = readFileSync(path, 'utf8');
  const out = new Map<string, string[]>();
  const add = (image: string, caption: string) => {
    if (caption.trim() === '') return;
    const list = out.get(image) ?? [];
    list.push(caption);
    out.set(image, list);
  };
  const malformed = (line: number, why: string) =>
    new UsageError('ERR_INPUT_MALFORMED', `--captions '${path}' line ${line}: ${why}`, { context: { path } });
  if (path.endsWith('.json')) {
    let doc: {
      images?: { id: number | string; file_name: string }[];
      annotations?: { image_id: number | string; caption: string }[];
    };
    try {
      doc = JSON.parse(text) as typeof doc;
    } catch (err) {
      throw new UsageError('ERR_INPUT_MALFORMED', `--captions '${path}' is not JSON: ${(err as Error).message}`, {
        context: { path },
      });
    }
    if (!Array.isArray(doc.annotations)) throw malformed(1, 'expected COCO annotations (an "annotations" array)');
    const files = new Map((doc.images ?? []).map((i) => [String(i.id), i.file_name]));
    for (const a of doc.annotations) add(files.get(String(a.image_id)) ?? String(a.image_id), String(a.caption));
    return out;
  }
  const lines = text.split(/\r?\n/);
  lines.forEach((line, i) => {
    if (line.trim() === '') return;
    if (path.endsWith('.jsonl')) {
      let row: Record<string, unknown>;
      try {
        row = JSON.parse(line) as Record<string, unknown>;
      } catch {
        throw malformed(i + 1, 'not JSON');
      }
      const image = row['image'] ?? row['image_id'] ?? row['file'] ?? row['key'];
      const caption = row['caption'] ?? row['text'];
      if (image === undefined || typeof caption !== 'string')
        throw malformed(i + 1, 'expected "image" and "caption" fields');
      add(String(image), caption);
      return;
    }
    const tab = line.indexOf('\t');
    if (tab === -1) throw malformed(i + 1, 'expected image<TAB>caption');
    add(line.slice(0, tab).replace(/#\d+$/, ''), line.slice(tab + 1));
  });
  return out;
}

/**
 * The class names of a labelled IDX set: those given, else Fashion-MNIST's when its path says
 * fashion, else each label's number. Given names must name every label the set holds.
 */
function idxClassNames(path: string, labels: IdxArray, given: readonly string[] | undefined): string[] {
  let top = 0;
  for (let i = 0; i < labels.data.length; i++) top = Math.max(top, labels.data[i] as number);
  if (given !== undefined) {
    if (given.length <= top) {
      throw new UsageError(
        'ERR_USAGE',
        `--class-names gives ${given.length} names, but the labels of '${path}' go up to ${top} (${top + 1} classes)`,
        { context: { path } },
      );
    }
    return [...given];
  }
  if (/fashion/i.test(path) && top < FASHION_MNIST_CLASSES.length) return [...FASHION_MNIST_CLASSES];
  return Array.from({ length: top + 1 }, (_, i) => String(i));
}

/** Class names name the labels of an IDX set: a set without labels has nothing for them to name. */
function refuseClassNames(images: string, given: readonly string[] | undefined): null {
  if (given !== undefined) {
    throw new UsageError(
      'ERR_USAGE',
      `--class-names names the labels of an IDX set, and '${images}' has none (an IDX file with its labels-idx1 file)`,
      { context: { path: images } },
    );
  }
  return null;
}
