/**
 * Reads a corpus directory the way a consumer would, independently of the code that wrote it:
 * the SQLite manifest (read-only), the WebDataset tars (parsed to the end, strictly), the
 * per-shard parquet and stats files.
 */
import { createReadStream, existsSync } from 'node:fs';
import { mkdtemp, open, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { asyncBufferFromFile, parquetReadObjects } from 'hyparquet';
import tar from 'tar-stream';

/** A row of the manifest's `pairs` table. */
export interface PairRow {
  key: string;
  url: string;
  page_url: string | null;
  caption: string;
  status: string;
  error_message: string | null;
  http_status: number | null;
  shard: number | null;
  width: number | null;
  height: number | null;
  original_width: number | null;
  original_height: number | null;
  sha256: string | null;
  bytes: number | null;
}

/** A row of the manifest's `pages` table. */
export interface PageRow {
  url: string;
  depth: number;
  status: string;
}

export interface Manifest {
  /** Sorted by key. */
  pairs: PairRow[];
  /** Sorted by url. */
  pages: PageRow[];
}

/** Opens `<out>/manifest.sqlite` read-only and returns both tables. */
export function readManifest(out: string): Manifest {
  const db = new Database(join(out, 'manifest.sqlite'), { readonly: true, fileMustExist: true });
  try {
    const pairs = db
      .prepare(
        `SELECT key, url, page_url, caption, status, error_message, http_status, shard, width, height,
                original_width, original_height, sha256, bytes
           FROM pairs ORDER BY key`,
      )
      .all() as PairRow[];
    const pages = db.prepare('SELECT url, depth, status FROM pages ORDER BY url').all() as PageRow[];
    return { pairs, pages };
  } finally {
    db.close();
  }
}

/** Counts rows per status. */
export function countByStatus(rows: ReadonlyArray<{ status: string }>): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const row of rows) counts[row.status] = (counts[row.status] ?? 0) + 1;
  return counts;
}

export interface TarEntry {
  name: string;
  data: Buffer;
}

/**
 * Parses a tar file to its end. Rejects when an entry is cut short, when an entry is not a plain
 * file, or when the archive lacks its end marker (two zero blocks): a tar whose writer died between
 * two entries parses "successfully" in most readers, so the marker is checked separately.
 */
export async function readTar(file: string): Promise<TarEntry[]> {
  const handle = await open(file, 'r');
  try {
    const { size } = await handle.stat();
    if (size < 1024 || size % 512 !== 0) throw new Error(`${file}: size ${size} is not a whole number of tar blocks`);
    const tail = Buffer.alloc(1024);
    await handle.read(tail, 0, 1024, size - 1024);
    if (tail.some((b) => b !== 0)) throw new Error(`${file}: no end-of-archive marker (truncated tar)`);
  } finally {
    await handle.close();
  }

  return new Promise<TarEntry[]>((resolve, reject) => {
    const entries: TarEntry[] = [];
    const extract = tar.extract();
    extract.on('entry', (header, stream, next) => {
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: unknown) => chunks.push(chunk as Buffer));
      stream.on('error', reject);
      stream.on('end', () => {
        if (header.type !== 'file') {
          reject(new Error(`${file}: entry ${header.name} is a ${String(header.type)}, not a file`));
          return;
        }
        const data = Buffer.concat(chunks);
        if (header.size !== undefined && data.length !== header.size) {
          reject(new Error(`${file}: entry ${header.name} has ${data.length} of ${header.size} bytes`));
          return;
        }
        entries.push({ name: header.name, data });
        next();
      });
    });
    extract.on('finish', () => resolve(entries));
    extract.on('error', reject);
    const input = createReadStream(file);
    input.on('error', reject);
    input.pipe(extract);
  });
}

/** One WebDataset sample: the `<key>.jpg`, `<key>.txt` and `<key>.json` entries of a tar. */
export interface ShardSample {
  shard: number;
  key: string;
  jpg: Buffer;
  txt: string;
  json: Record<string, unknown>;
}

export interface ShardFile {
  /** Absolute path of the tar. */
  file: string;
  /** The number in its name (`00003.tar` → 3). */
  shard: number;
  /** Complete samples, in archive order (a key may repeat here if the writer repeated it). */
  samples: ShardSample[];
  /** What is wrong with the tar's layout: an incomplete triple, a repeated entry, an unexpected name. */
  problems: string[];
}

/** `<out>/shards/*.tar` names, sorted. */
export async function listShardTars(out: string): Promise<string[]> {
  const dir = join(out, 'shards');
  if (!existsSync(dir)) return [];
  return (await readdir(dir)).filter((n) => n.endsWith('.tar')).toSorted();
}

/** Parses every `<out>/shards/*.tar`; rejects when a tar is truncated or corrupt. */
export async function readShards(out: string): Promise<ShardFile[]> {
  const result: ShardFile[] = [];
  for (const name of await listShardTars(out)) {
    const file = join(out, 'shards', name);
    const problems: string[] = [];
    if (!/^\d{5}\.tar$/.test(name)) problems.push(`unexpected shard name ${name}`);
    const shard = Number.parseInt(name, 10);
    type Group = Partial<Record<'jpg' | 'txt' | 'json', Buffer>>;
    const latest = new Map<string, Group>();
    const groups: Array<{ key: string; group: Group }> = [];
    for (const entry of await readTar(file)) {
      const dot = entry.name.indexOf('.');
      const key = dot === -1 ? entry.name : entry.name.slice(0, dot);
      const ext = dot === -1 ? '' : entry.name.slice(dot + 1);
      if (ext !== 'jpg' && ext !== 'txt' && ext !== 'json') {
        problems.push(`${name}: unexpected entry ${entry.name}`);
        continue;
      }
      let group = latest.get(key);
      if (group === undefined || group[ext] !== undefined) {
        // A repeated entry starts a new sample, so that a key written twice shows as a duplicate.
        if (group !== undefined) problems.push(`${name}: entry ${entry.name} repeated`);
        group = {};
        latest.set(key, group);
        groups.push({ key, group });
      }
      group[ext] = entry.data;
    }
    const samples: ShardSample[] = [];
    for (const { key, group } of groups) {
      const { jpg, txt, json } = group;
      if (jpg === undefined || txt === undefined || json === undefined) {
        const missing = (['jpg', 'txt', 'json'] as const).filter((e) => group[e] === undefined);
        problems.push(`${name}: sample ${key} lacks ${missing.join(', ')}`);
        continue;
      }
      let meta: Record<string, unknown>;
      try {
        meta = JSON.parse(json.toString('utf8')) as Record<string, unknown>;
      } catch {
        problems.push(`${name}: ${key}.json is not JSON`);
        continue;
      }
      samples.push({ shard, key, jpg, txt: txt.toString('utf8'), json: meta });
    }
    result.push({ file, shard, samples, problems });
  }
  return result;
}

/** Every file under `dir` whose name contains `.tmp` (a temporary file left behind). */
export async function findTempFiles(dir: string): Promise<string[]> {
  if (!existsSync(dir)) return [];
  const entries = await readdir(dir, { recursive: true });
  return entries.filter((p) => /\.tmp(\b|$)|\.tmp\./.test(p)).toSorted();
}

/** A parquet row with bigint columns turned into numbers and missing values into null. */
export type ParquetRecord = Record<string, unknown>;

/** Reads every row of a parquet file. */
export async function readParquet(file: string): Promise<ParquetRecord[]> {
  const rows = await parquetReadObjects({ file: await asyncBufferFromFile(file) });
  return rows.map((row) =>
    Object.fromEntries(Object.entries(row).map(([k, v]) => [k, typeof v === 'bigint' ? Number(v) : (v ?? null)])),
  );
}

/** `<out>/shards/*.parquet`, each with its rows. */
export async function readShardParquets(out: string): Promise<Array<{ shard: number; rows: ParquetRecord[] }>> {
  const dir = join(out, 'shards');
  const names = (await readdir(dir)).filter((n) => n.endsWith('.parquet')).toSorted();
  const result: Array<{ shard: number; rows: ParquetRecord[] }> = [];
  for (const name of names) result.push({ shard: Number.parseInt(name, 10), rows: await readParquet(join(dir, name)) });
  return result;
}

/** The per-shard stats file, as the crawl writes it. */
export interface ShardStats {
  count: number;
  successes: number;
  failures: Record<string, number>;
  /** Records of earlier shards, by status, that a requeued pair's new outcome replaces. */
  superseded: Record<string, number>;
  duration: number;
  bytes: number;
}

/** `<out>/stats/*.json`, each with its shard number. */
export async function readStats(out: string): Promise<Array<{ shard: number; stats: ShardStats }>> {
  const dir = join(out, 'stats');
  const names = (await readdir(dir)).filter((n) => n.endsWith('.json')).toSorted();
  const result: Array<{ shard: number; stats: ShardStats }> = [];
  for (const name of names) {
    result.push({
      shard: Number.parseInt(name, 10),
      stats: JSON.parse(await readFile(join(dir, name), 'utf8')) as ShardStats,
    });
  }
  return result;
}

/**
 * The shards' stats summed over the corpus as a consumer sums them: `count` and `failures` less
 * what later shards list as `superseded`; statuses that come to 0 are left out.
 */
export function sumStats(stats: Array<{ stats: ShardStats }>): {
  count: number;
  successes: number;
  failures: Record<string, number>;
} {
  let count = 0;
  let successes = 0;
  const failures: Record<string, number> = {};
  for (const { stats: s } of stats) {
    count += s.count;
    successes += s.successes;
    for (const [status, n] of Object.entries(s.failures)) failures[status] = (failures[status] ?? 0) + n;
    for (const [status, n] of Object.entries(s.superseded)) {
      count -= n;
      failures[status] = (failures[status] ?? 0) - n;
    }
  }
  for (const [status, n] of Object.entries(failures)) if (n === 0) delete failures[status];
  return { count, successes, failures };
}

/**
 * The size `keep_ratio` resizing gives without upscaling: the shorter side becomes `size`
 * when it is longer than that, the other side keeps the ratio (rounded); smaller images keep theirs.
 */
export function keepRatioSize(width: number, height: number, size = 256): { width: number; height: number } {
  const shorter = Math.min(width, height);
  if (shorter <= size) return { width, height };
  const scale = size / shorter;
  return { width: Math.round(width * scale), height: Math.round(height * scale) };
}

/** A fresh directory under the system temp dir, and a function that removes it. */
export async function tempDir(prefix: string): Promise<{ path: string; remove: () => Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), `altforge-${prefix}-`));
  return { path, remove: () => rm(path, { recursive: true, force: true }) };
}
