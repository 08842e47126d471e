/**
 * The benchmark registry: a SQLite database of the downstream test sets a corpus must not contain
 * (`altforge bench add|list|remove`). Dedup stores each test image's fingerprints here and matches
 * corpora against them; eval reads the same images back with their captions and class names.
 *
 * Tables: `benchmarks` (one row per registered set), `bench_images` (one per test image: id,
 * sha256, label, where its bytes are), `bench_captions` (several per image), `bench_hashes` (the
 * fingerprints: a 64-bit hash split into four 16-bit parts, each part indexed, for multi-index
 * hashing lookups, plus the thumbnail that verifies a match).
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import Database from 'better-sqlite3';
import { UsageError } from './errors.ts';
import { refuseDirectory } from './paths.ts';
import { migrate, openSqliteFile, type Migration } from './manifest.ts';
import { readShardEntry } from './shards.ts';

/** The registry's schema, versioned like the manifest's. */
export const REGISTRY_MIGRATIONS: readonly Migration[] = [
  {
    id: 'registry/001-benchmarks',
    sql: `
      CREATE TABLE benchmarks (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL,
        source TEXT NOT NULL,
        source_kind TEXT NOT NULL,
        class_names TEXT,
        fingerprint_version TEXT NOT NULL,
        complete INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
      );
      CREATE TABLE bench_images (
        benchmark_id INTEGER NOT NULL REFERENCES benchmarks(id) ON DELETE CASCADE,
        image_id TEXT NOT NULL,
        status TEXT NOT NULL,
        error TEXT,
        sha256 TEXT,
        width INTEGER,
        height INTEGER,
        label INTEGER,
        class_name TEXT,
        path TEXT,
        member TEXT,
        image BLOB,
        PRIMARY KEY (benchmark_id, image_id)
      ) WITHOUT ROWID;
      CREATE INDEX bench_images_sha256 ON bench_images(sha256);
      CREATE TABLE bench_captions (
        benchmark_id INTEGER NOT NULL REFERENCES benchmarks(id) ON DELETE CASCADE,
        image_id TEXT NOT NULL,
        caption TEXT NOT NULL,
        normalised TEXT NOT NULL,
        PRIMARY KEY (benchmark_id, image_id, caption)
      ) WITHOUT ROWID;
      CREATE INDEX bench_captions_normalised ON bench_captions(normalised);
      CREATE TABLE bench_hashes (
        id INTEGER PRIMARY KEY,
        benchmark_id INTEGER NOT NULL REFERENCES benchmarks(id) ON DELETE CASCADE,
        image_id TEXT NOT NULL,
        variant TEXT NOT NULL,
        hash INTEGER NOT NULL,
        p0 INTEGER NOT NULL,
        p1 INTEGER NOT NULL,
        p2 INTEGER NOT NULL,
        p3 INTEGER NOT NULL,
        thumb BLOB NOT NULL,
        UNIQUE (benchmark_id, image_id, variant)
      );
      CREATE INDEX bench_hashes_p0 ON bench_hashes(p0, hash, benchmark_id);
      CREATE INDEX bench_hashes_p1 ON bench_hashes(p1, hash, benchmark_id);
      CREATE INDEX bench_hashes_p2 ON bench_hashes(p2, hash, benchmark_id);
      CREATE INDEX bench_hashes_p3 ON bench_hashes(p3, hash, benchmark_id);
    `,
  },
];

/** Where `--bench-db` points by default: `$XDG_DATA_HOME/altforge/benchmarks.sqlite` or `~/.local/share/...`. */
export function defaultRegistryPath(env: NodeJS.ProcessEnv = process.env): string {
  const base =
    env['XDG_DATA_HOME'] && env['XDG_DATA_HOME'] !== '' ? env['XDG_DATA_HOME'] : join(homedir(), '.local', 'share');
  return join(base, 'altforge', 'benchmarks.sqlite');
}

/** An open registry. */
export interface Registry {
  path: string;
  db: Database.Database;
  close(): void;
}

/**
 * Opens (and with `create`, creates) a registry database. Without `create`, a missing file is a
 * usage error: there is nothing registered to match against.
 */
export function openRegistry(path: string, options: { create?: boolean } = {}): Registry {
  refuseDirectory(path, 'Benchmark registry', 'bench');
  if (!existsSync(path)) {
    if (!options.create) {
      throw new UsageError(
        'ERR_REGISTRY_NOT_FOUND',
        `No benchmark registry at '${path}': add a benchmark first (altforge bench add)`,
        {
          context: { path },
        },
      );
    }
    mkdirSync(dirname(path), { recursive: true });
  }
  const db = openSqliteFile(path, 'Benchmark registry');
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma('busy_timeout = 10000');
  db.pragma('foreign_keys = ON');
  migrate(db, REGISTRY_MIGRATIONS);
  return {
    path,
    db,
    close: () => {
      if (db.open) db.close();
    },
  };
}

/** What kind of test set: plain images (retrieval), or labelled classes (classification). */
export type BenchmarkKind = 'images' | 'classification';
/** Where the images were read from. */
export type BenchmarkSourceKind = 'folder' | 'shards' | 'idx' | 'emoji';

/** A registered test set. */
export interface BenchmarkInfo {
  id: number;
  name: string;
  kind: BenchmarkKind;
  /** The `--images` path, absolute. */
  source: string;
  sourceKind: BenchmarkSourceKind;
  /** Class names by label (classification sets). */
  classNames: string[] | null;
  fingerprintVersion: string;
  /** False while a registration is under way or was interrupted (`bench add` again continues it). */
  complete: boolean;
  /** Images fingerprinted. */
  images: number;
  /** Images that could not be read (recorded with their error). */
  unreadable: number;
  /** Captions recorded. */
  captions: number;
  createdAt: string;
  updatedAt: string;
}

interface BenchmarkRow {
  id: number;
  name: string;
  kind: BenchmarkKind;
  source: string;
  source_kind: BenchmarkSourceKind;
  class_names: string | null;
  fingerprint_version: string;
  complete: number;
  created_at: string;
  updated_at: string;
}

function toInfo(db: Database.Database, row: BenchmarkRow): BenchmarkInfo {
  const counts = db
    .prepare(`SELECT SUM(status = 'ok') AS ok, SUM(status != 'ok') AS bad FROM bench_images WHERE benchmark_id = ?`)
    .get(row.id) as { ok: number | null; bad: number | null };
  const captions = (
    db.prepare('SELECT COUNT(*) AS n FROM bench_captions WHERE benchmark_id = ?').get(row.id) as { n: number }
  ).n;
  return {
    id: row.id,
    name: row.name,
    kind: row.kind,
    source: row.source,
    sourceKind: row.source_kind,
    classNames: row.class_names === null ? null : (JSON.parse(row.class_names) as string[]),
    fingerprintVersion: row.fingerprint_version,
    complete: row.complete === 1,
    images: counts.ok ?? 0,
    unreadable: counts.bad ?? 0,
    captions,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

/** Every registered benchmark, by name. */
export function listBenchmarks(registry: Registry): BenchmarkInfo[] {
  const rows = registry.db.prepare('SELECT * FROM benchmarks ORDER BY name').all() as BenchmarkRow[];
  return rows.map((row) => toInfo(registry.db, row));
}

/** One benchmark by name, or undefined. */
export function findBenchmark(registry: Registry, name: string): BenchmarkInfo | undefined {
  const row = registry.db.prepare('SELECT * FROM benchmarks WHERE name = ?').get(name) as BenchmarkRow | undefined;
  return row === undefined ? undefined : toInfo(registry.db, row);
}

/** One benchmark by name; an unknown name is a usage error that lists the registered ones. */
export function getBenchmark(registry: Registry, name: string): BenchmarkInfo {
  const found = findBenchmark(registry, name);
  if (found !== undefined) return found;
  return unknownBenchmark(registry, name);
}

/**
 * A registered benchmark whose registration finished ({@link getBenchmark} otherwise): one
 * `bench add` interrupted holds part of its images, and a stage measuring on it or keeping it out
 * of a corpus would say nothing of the rest.
 */
export function getCompleteBenchmark(registry: Registry, name: string, stage: string): BenchmarkInfo {
  const info = getBenchmark(registry, name);
  if (!info.complete) {
    throw new UsageError(
      'ERR_BENCHMARK_INCOMPLETE',
      `Benchmark '${name}' is only partly registered: run altforge bench add again to finish it`,
      { context: { stage, path: registry.path } },
    );
  }
  return info;
}

function unknownBenchmark(registry: Registry, name: string): never {
  const names = (registry.db.prepare('SELECT name FROM benchmarks ORDER BY name').all() as { name: string }[]).map(
    (r) => r.name,
  );
  throw new UsageError(
    'ERR_UNKNOWN_BENCHMARK',
    `Unknown benchmark '${name}' in ${registry.path} (registered: ${names.length > 0 ? names.join(', ') : 'none'})`,
    { context: { path: registry.path } },
  );
}

/** Removes a benchmark and everything recorded for it, in one transaction. */
export function removeBenchmark(registry: Registry, name: string): BenchmarkInfo {
  const info = getBenchmark(registry, name);
  registry.db.transaction(() => {
    // Explicit deletes: the cascade needs foreign_keys on, which another client may not have set.
    for (const table of ['bench_hashes', 'bench_captions', 'bench_images']) {
      registry.db.prepare(`DELETE FROM ${table} WHERE benchmark_id = ?`).run(info.id);
    }
    registry.db.prepare('DELETE FROM benchmarks WHERE id = ?').run(info.id);
  })();
  return info;
}

/** A registered test image, as eval and dedup read it. */
export interface BenchmarkImage {
  imageId: string;
  /** `ok`, or `unreadable` (then `error` says why and there are no fingerprints). */
  status: string;
  error: string | null;
  /** SHA-256 of the image file's bytes (IDX: of the PNG stored). */
  sha256: string | null;
  width: number | null;
  height: number | null;
  label: number | null;
  className: string | null;
  captions: string[];
  /** The file (folder), the tar (shards) or null (IDX: the PNG is stored in the registry). */
  path: string | null;
  /** The WebDataset key inside the tar (shards). */
  member: string | null;
}

interface ImageRow {
  image_id: string;
  status: string;
  error: string | null;
  sha256: string | null;
  width: number | null;
  height: number | null;
  label: number | null;
  class_name: string | null;
  path: string | null;
  member: string | null;
}

/** The images of a benchmark in image-id order, with their captions; `ok` ones only unless asked. */
export function* iterateImages(
  registry: Registry,
  name: string,
  options: { includeUnreadable?: boolean } = {},
): Generator<BenchmarkImage> {
  const { id } = getBenchmark(registry, name);
  const captionsOf = registry.db.prepare(
    'SELECT caption FROM bench_captions WHERE benchmark_id = ? AND image_id = ? ORDER BY caption',
  );
  const rows = registry.db
    .prepare(
      `SELECT image_id, status, error, sha256, width, height, label, class_name, path, member
         FROM bench_images WHERE benchmark_id = ? ${options.includeUnreadable ? '' : "AND status = 'ok'"}
        ORDER BY image_id`,
    )
    .iterate(id) as IterableIterator<ImageRow>;
  for (const row of rows) {
    yield {
      imageId: row.image_id,
      status: row.status,
      error: row.error,
      sha256: row.sha256,
      width: row.width,
      height: row.height,
      label: row.label,
      className: row.class_name,
      captions: (captionsOf.all(id, row.image_id) as { caption: string }[]).map((c) => c.caption),
      path: row.path,
      member: row.member,
    };
  }
}

/**
 * The bytes of a registered image: the stored PNG (IDX), the file (folder), or the sample of the
 * tar (shards; read through an index of the tar's headers, `readShardEntry`).
 */
export async function readImageBytes(registry: Registry, name: string, image: BenchmarkImage): Promise<Buffer> {
  const { id } = getBenchmark(registry, name);
  return readImageBytesById(registry, id, image.imageId, `image ${image.imageId} of ${name}`);
}

/** The prepared lookup of {@link readImageBytesById}, one per open registry. */
const imageBytesLookups = new WeakMap<Database.Database, Database.Statement>();

/** {@link readImageBytes} by the benchmark's id (what dedup's second pass has at hand). */
export async function readImageBytesById(
  registry: Registry,
  benchmarkId: number,
  imageId: string,
  label = `image ${imageId}`,
): Promise<Buffer> {
  let lookup = imageBytesLookups.get(registry.db);
  if (lookup === undefined) {
    lookup = registry.db.prepare(
      'SELECT path, member, image FROM bench_images WHERE benchmark_id = ? AND image_id = ?',
    );
    imageBytesLookups.set(registry.db, lookup);
  }
  const row = lookup.get(benchmarkId, imageId) as
    { path: string | null; member: string | null; image: Buffer | null } | undefined;
  if (row?.image) return row.image;
  if (row && row.path !== null && row.member !== null) {
    const jpg = readShardEntry(row.path, `${row.member}.jpg`);
    if (jpg !== null) return jpg;
    throw new UsageError('ERR_IMAGE_NOT_FOUND', `Sample ${row.member} is no longer in ${row.path}`, {
      context: { path: row.path },
    });
  }
  if (row && row.path !== null) return readFileSync(row.path);
  throw new UsageError('ERR_IMAGE_NOT_FOUND', `No bytes recorded for ${label}`);
}
