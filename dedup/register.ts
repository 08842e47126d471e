/**
 * Registering a test set (`altforge bench add`): every image is fingerprinted and recorded in the
 * registry with its sha256, label and captions, in batched transactions. Re-adding the same set
 * is idempotent: images already recorded are skipped, so an interrupted registration continues.
 * A captions file given again replaces the captions of the images registered before.
 */
import { createHash } from 'node:crypto';
import type Database from 'better-sqlite3';
import pLimit from 'p-limit';
import { z } from 'zod';
import { EMOJI_VENDORS, type EmojiVendor } from '../corpus/emoji.ts';
import { UsageError } from '../corpus/errors.ts';
import { parseOptions } from '../corpus/options.ts';
import { normaliseCaption } from '../corpus/text.ts';
import {
  defaultRegistryPath,
  findBenchmark,
  getBenchmark,
  openRegistry,
  type BenchmarkInfo,
  type BenchmarkKind,
} from '../corpus/registry.ts';
import { FINGERPRINT_VERSION, registeredFingerprint, type Fingerprint } from './fingerprint.ts';
import { emojiSource, openImageSource, readCaptions, type ImageSource, type InputImage } from './_inputs.ts';
import { storedHash } from './_mih.ts';

/** Progress of a registration. */
export interface RegisterProgress {
  done: number;
  total: number | null;
  ok: number;
  failed: number;
}

/** Options of {@link registerBenchmark}. */
export interface RegisterOptions {
  /** Name the set is registered under (`flickr30k-test`). */
  name: string;
  /** A folder of images, WebDataset shards (a `.tar` or a folder of them), or an IDX image file. Give this or `emoji`. */
  images?: string;
  /**
   * Instead of `images`: the drawings of an emoji vendor's npm package (`apple`, `facebook`,
   * `google`, `twitter`), each captioned with its Unicode name.
   */
  emoji?: EmojiVendor;
  /**
   * Captions: COCO JSON, JSONL (`image`, `caption`) or `image<TAB>caption` lines. Given again for a
   * registered set, they replace its captions: each image keeps those its source carries (a
   * shard's text, an emoji's name) and has the file's. @default none
   */
  captions?: string;
  /** IDX label file. @default the `*-labels-idx1-ubyte[.gz]` beside the images, if any */
  labels?: string;
  /**
   * The class names of a labelled IDX set, by label (`['T-shirt/top', 'Trouser', ...]`): what
   * zero-shot classification prompts with. Given again for a registered set, they replace its own.
   * @default Fashion-MNIST's ten when the IDX path says fashion, else each label's number
   */
  classNames?: string[];
  /** `images` or `classification`. @default 'classification' for labelled IDX, else 'images' */
  kind?: BenchmarkKind;
  /** The registry database. @default `$XDG_DATA_HOME/altforge/benchmarks.sqlite` */
  benchDb?: string;
  /** Images fingerprinted at once. @default 4 */
  concurrency?: number;
  onProgress?: (progress: RegisterProgress) => void;
  /** Aborting stops after the batch in flight; `bench add` again continues. */
  signal?: AbortSignal;
}

/** What a registration did. */
export interface RegisterResult {
  benchmark: BenchmarkInfo;
  /** Images fingerprinted in this run. */
  added: number;
  /** Images already registered, skipped. */
  skipped: number;
  /** Images that could not be read in this run: id and why. */
  unreadable: Array<{ imageId: string; error: string }>;
  /** Caption lines whose image is not in the set. */
  unmatchedCaptions: number;
  /** Whether this run gave an earlier registration other class names (`classNames`). */
  renamedClasses: boolean;
  /**
   * The set's caption count before and after, when this run's `captions` replaced those of an
   * earlier registration with other ones; null when no caption changed.
   */
  replacedCaptions: { before: number; after: number } | null;
  durationMs: number;
  interrupted: boolean;
}

const schema = z.strictObject({
  name: z
    .string()
    .min(1)
    .max(100)
    .regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'expected letters, digits, dot, dash or underscore'),
  images: z.string().min(1).optional(),
  emoji: z.enum(EMOJI_VENDORS).optional(),
  captions: z.string().min(1).optional(),
  labels: z.string().min(1).optional(),
  classNames: z.array(z.string().trim().min(1)).min(1).optional(),
  kind: z.enum(['images', 'classification']).optional(),
  benchDb: z.string().min(1).optional(),
  concurrency: z.number().int().min(1).max(64).default(4),
  onProgress: z.custom<(p: RegisterProgress) => void>((v) => typeof v === 'function').optional(),
  signal: z.custom<AbortSignal>((v) => v instanceof AbortSignal).optional(),
});

const BATCH = 256;

interface Prepared {
  input: InputImage;
  sha256: string | null;
  fingerprint: Fingerprint | null;
  error: string | null;
}

/** Registers a test set, or continues an interrupted registration of the same set. */
export async function registerBenchmark(options: RegisterOptions): Promise<RegisterResult> {
  const started = Date.now();
  const opts = parseOptions(schema, options, 'bench');
  if ((opts.images === undefined) === (opts.emoji === undefined)) {
    throw new UsageError(
      'ERR_USAGE',
      opts.images === undefined
        ? 'Missing --images PATH (a folder, WebDataset shards or an IDX file) or --emoji VENDOR'
        : 'Give --images PATH or --emoji VENDOR, not both',
    );
  }
  if (opts.emoji !== undefined && opts.classNames !== undefined) {
    throw new UsageError('ERR_USAGE', '--class-names names the labels of an IDX set; --emoji drawings have none');
  }
  const source =
    opts.images !== undefined
      ? openImageSource(opts.images, {
          ...(opts.labels === undefined ? {} : { labels: opts.labels }),
          ...(opts.classNames === undefined ? {} : { classNames: opts.classNames }),
        })
      : emojiSource(opts.emoji as EmojiVendor);
  const captions = opts.captions === undefined ? new Map<string, string[]>() : readCaptions(opts.captions);
  const kind: BenchmarkKind = opts.kind ?? (source.classNames !== null ? 'classification' : 'images');
  const registry = openRegistry(opts.benchDb ?? defaultRegistryPath(), { create: true });
  try {
    const { db } = registry;
    const now = new Date().toISOString();
    const existing = findBenchmark(registry, opts.name);
    if (existing && (existing.source !== source.path || existing.fingerprintVersion !== FINGERPRINT_VERSION)) {
      throw new UsageError(
        'ERR_BENCHMARK_EXISTS',
        existing.source !== source.path
          ? `Benchmark '${opts.name}' is already registered from '${existing.source}': remove it first (altforge bench remove --name ${opts.name})`
          : `Benchmark '${opts.name}' was registered with fingerprints ${existing.fingerprintVersion}: remove it and add it again`,
        { context: { path: existing.source } },
      );
    }
    if (!existing) {
      db.prepare(
        `INSERT INTO benchmarks (name, kind, source, source_kind, class_names, fingerprint_version, complete, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?)`,
      ).run(
        opts.name,
        kind,
        source.path,
        source.kind,
        source.classNames && JSON.stringify(source.classNames),
        FINGERPRINT_VERSION,
        now,
        now,
      );
    }
    const benchmarkId = getBenchmark(registry, opts.name).id;
    const renamedClasses =
      existing !== undefined &&
      opts.classNames !== undefined &&
      source.classNames !== null &&
      renameClasses(db, benchmarkId, source.classNames);
    const done = new Set(
      (
        db.prepare('SELECT image_id FROM bench_images WHERE benchmark_id = ?').all(benchmarkId) as {
          image_id: string;
        }[]
      ).map((r) => r.image_id),
    );

    const insertImage = db.prepare(
      `INSERT OR REPLACE INTO bench_images (benchmark_id, image_id, status, error, sha256, width, height, label, class_name, path, member, image)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    const insertHash = db.prepare(
      `INSERT OR REPLACE INTO bench_hashes (benchmark_id, image_id, variant, hash, p0, p1, p2, p3, thumb)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    const insertCaption = db.prepare(
      `INSERT OR IGNORE INTO bench_captions (benchmark_id, image_id, caption, normalised) VALUES (?, ?, ?, ?)`,
    );
    const touch = () =>
      db.prepare('UPDATE benchmarks SET updated_at = ? WHERE id = ?').run(new Date().toISOString(), benchmarkId);
    const commit = db.transaction((batch: Prepared[]) => {
      for (const { input, sha256, fingerprint, error } of batch) {
        const label = input.label;
        insertImage.run(
          benchmarkId,
          input.imageId,
          fingerprint ? 'ok' : 'unreadable',
          error,
          sha256,
          fingerprint?.width ?? null,
          fingerprint?.height ?? null,
          label,
          label !== null && source.classNames ? (source.classNames[label] ?? null) : null,
          input.path,
          input.member,
          input.storeBytes ? input.bytes : null,
        );
        for (const v of fingerprint?.variants ?? []) {
          const s = storedHash(v.hash);
          insertHash.run(benchmarkId, input.imageId, v.name, s.hash, s.p0, s.p1, s.p2, s.p3, Buffer.from(v.thumb));
        }
        for (const caption of [...input.captions, ...(captions.get(input.imageId) ?? [])]) {
          insertCaption.run(benchmarkId, input.imageId, caption, normaliseCaption(caption));
        }
      }
      // Only a change moves `updated_at`: dedup's per-shard record holds it, and redoes its matching when it moves.
      if (batch.length > 0) touch();
    });

    const limit = pLimit(opts.concurrency);
    const prepare = (input: InputImage): Promise<Prepared> =>
      limit(async () => {
        if (input.bytes === null) return { input, sha256: null, fingerprint: null, error: input.error ?? 'unreadable' };
        const sha256 = createHash('sha256').update(input.bytes).digest('hex');
        try {
          return { input, sha256, fingerprint: await registeredFingerprint(input.bytes), error: null };
        } catch (err) {
          return { input, sha256, fingerprint: null, error: (err as Error).message.split('\n')[0] ?? 'decode error' };
        }
      });

    const unreadable: RegisterResult['unreadable'] = [];
    let added = 0;
    let ok = 0;
    let failed = 0;
    let interrupted = false;
    const total = source.count;
    const report = () => opts.onProgress?.({ done: done.size + added, total, ok, failed });
    let pending: Promise<Prepared>[] = [];
    const flush = async () => {
      const batch = await Promise.all(pending);
      pending = [];
      commit(batch);
      for (const p of batch) {
        added++;
        if (p.fingerprint) ok++;
        else {
          failed++;
          unreadable.push({ imageId: p.input.imageId, error: p.error ?? 'unreadable' });
        }
      }
      report();
    };
    for await (const input of source.images(done)) {
      pending.push(prepare(input));
      if (pending.length >= BATCH) {
        await flush();
        if (opts.signal?.aborted) {
          interrupted = true;
          break;
        }
      }
    }
    if (!interrupted) {
      await flush();
      db.prepare('UPDATE benchmarks SET complete = 1, updated_at = ? WHERE id = ? AND complete = 0').run(
        new Date().toISOString(),
        benchmarkId,
      );
    }
    // The captions of the images registered in an earlier run, replaced by the file's given now. An
    // interrupted run leaves them: the same command again finishes the registration, then this.
    let replacedCaptions: RegisterResult['replacedCaptions'] = null;
    if (opts.captions !== undefined && done.size > 0 && !interrupted) {
      const own = await ownCaptions(source, done);
      replacedCaptions = db.transaction(() => {
        const count = db.prepare('SELECT COUNT(*) FROM bench_captions WHERE benchmark_id = ?').pluck();
        const before = count.get(benchmarkId) as number;
        const registered = new Map<string, Set<string>>();
        for (const [imageId, caption] of db
          .prepare('SELECT image_id, caption FROM bench_captions WHERE benchmark_id = ?')
          .raw()
          .all(benchmarkId) as Array<[string, string]>) {
          let set = registered.get(imageId);
          if (set === undefined) registered.set(imageId, (set = new Set()));
          set.add(caption);
        }
        const remove = db.prepare('DELETE FROM bench_captions WHERE benchmark_id = ? AND image_id = ? AND caption = ?');
        let changes = 0;
        for (const imageId of done) {
          const wanted = new Set([...(own.get(imageId) ?? []), ...(captions.get(imageId) ?? [])]);
          const have = registered.get(imageId) ?? new Set<string>();
          for (const caption of have)
            if (!wanted.has(caption)) changes += remove.run(benchmarkId, imageId, caption).changes;
          for (const caption of wanted) {
            if (!have.has(caption))
              changes += insertCaption.run(benchmarkId, imageId, caption, normaliseCaption(caption)).changes;
          }
        }
        if (changes === 0) return null;
        touch();
        return { before, after: count.get(benchmarkId) as number };
      })();
    }
    const imageIds = new Set(
      (
        db.prepare('SELECT image_id FROM bench_images WHERE benchmark_id = ?').all(benchmarkId) as {
          image_id: string;
        }[]
      ).map((r) => r.image_id),
    );
    let unmatchedCaptions = 0;
    for (const [imageId, list] of captions) if (!imageIds.has(imageId)) unmatchedCaptions += list.length;
    return {
      benchmark: getBenchmark(registry, opts.name),
      added,
      skipped: done.size,
      unreadable,
      unmatchedCaptions,
      renamedClasses,
      replacedCaptions,
      durationMs: Date.now() - started,
      interrupted,
    };
  } finally {
    registry.close();
  }
}

/**
 * The captions the images `ids` carry in their source (a shard's text, an emoji's name), by image
 * id. Folders and IDX files carry none: they are not read again.
 */
async function ownCaptions(source: ImageSource, ids: ReadonlySet<string>): Promise<Map<string, string[]>> {
  const own = new Map<string, string[]>();
  if (source.kind !== 'shards' && source.kind !== 'emoji') return own;
  for await (const input of source.images(new Set())) {
    if (ids.has(input.imageId) && input.captions.length > 0) own.set(input.imageId, input.captions);
  }
  return own;
}

/**
 * Gives a registered set new class names (`bench add --class-names` again): the set's list and
 * each image's name, in one transaction; returns whether a name changed. `updated_at` stays:
 * dedup reads no class name.
 */
function renameClasses(db: Database.Database, benchmarkId: number, classNames: readonly string[]): boolean {
  const names = JSON.stringify(classNames);
  return db.transaction(() => {
    const changed = db
      .prepare('UPDATE benchmarks SET class_names = ? WHERE id = ? AND class_names IS NOT ?')
      .run(names, benchmarkId, names).changes;
    if (changed === 0) return false;
    db.prepare(
      `UPDATE bench_images SET class_name = json_extract(?, '$[' || label || ']') WHERE benchmark_id = ? AND label IS NOT NULL`,
    ).run(names, benchmarkId);
    return true;
  })();
}
