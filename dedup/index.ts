/**
 * The dedup stage: finds the pairs of a corpus whose image is a near-duplicate of a registered
 * test image (or whose caption is a registered test caption), and near-duplicate clusters inside
 * the corpus. It records, never deletes: `pairs.dup_of` says what a pair duplicates, and the
 * filter and train stages skip pairs where it is set.
 *
 * Per shard, in one transaction: the corpus images' fingerprints (cached in `dedup_prints`, so
 * later runs against other benchmarks only look up), every match per benchmark in
 * `dedup_matches`, and `pairs.dup_*` recomputed from them. A killed run loses at most the shard in
 * flight; the same call continues and gives the same result.
 */
import { createHash } from 'node:crypto';
import pLimit from 'p-limit';
import { UsageError } from '../corpus/errors.ts';
import { acquireLock } from '../corpus/lock.ts';
import { isCorpus, openCorpus, recordStageRun, type Corpus, type Migration } from '../corpus/manifest.ts';
import {
  defaultRegistryPath,
  getCompleteBenchmark,
  openRegistry,
  readImageBytesById,
  type BenchmarkInfo,
  type Registry,
} from '../corpus/registry.ts';
import { readShard } from '../corpus/shard-reader.ts';
import { shardPaths } from '../corpus/shards.ts';
import { normaliseCaption } from '../corpus/text.ts';
import { contentBox, decodePixels, FINGERPRINT_VERSION, queryFromPixels, variantBox, type Box } from './fingerprint.ts';
import { loadHashHalves, loadMihTable, MihTable, storedHash, type TableHit } from './_mih.ts';
import { clusterMembers, exactGroups, findClusters } from './_within.ts';
import { refine, SECOND_PASS, toLabImage, type LabImage, type Refinement } from './_refine.ts';
import { agreement, DEFAULT_THRESHOLDS, verified, type Agreement, type VerifyThresholds } from './_verify.ts';
import { resolveDedupOptions, type DedupOptions, type DedupProgress, type ResolvedDedupOptions } from './options.ts';
import { toUnsigned } from './phash.ts';

export type { DedupOptions, DedupProgress } from './options.ts';
export { registerBenchmark, type RegisterOptions, type RegisterProgress, type RegisterResult } from './register.ts';
export { hamming, hashHex, phashGrid, type HashBasis } from './phash.ts';
export {
  FINGERPRINT_VERSION,
  plainPhash,
  queryFingerprint,
  registeredFingerprint,
  type Fingerprint,
  type Variant,
} from './fingerprint.ts';

/** The `benchmark` of within-corpus rows in `dedup_matches`. */
export const WITHIN = '@within';

/** The dedup stage's columns and tables in the corpus manifest. */
export const DEDUP_MIGRATIONS: readonly Migration[] = [
  {
    id: 'dedup/001-dup-of',
    sql: `
      ALTER TABLE pairs ADD COLUMN dup_of TEXT;
      ALTER TABLE pairs ADD COLUMN dup_kind TEXT;
      ALTER TABLE pairs ADD COLUMN dup_distance INTEGER;
      ALTER TABLE pairs ADD COLUMN dup_fingerprint TEXT;
      CREATE INDEX pairs_dup_of ON pairs(dup_of);
      CREATE TABLE dedup_prints (
        key TEXT PRIMARY KEY,
        version TEXT NOT NULL,
        status TEXT NOT NULL,
        error TEXT,
        hash INTEGER,
        p0 INTEGER, p1 INTEGER, p2 INTEGER, p3 INTEGER,
        thumb BLOB
      );
      CREATE INDEX dedup_prints_p0 ON dedup_prints(p0, hash, key);
      CREATE INDEX dedup_prints_p1 ON dedup_prints(p1, hash, key);
      CREATE INDEX dedup_prints_p2 ON dedup_prints(p2, hash, key);
      CREATE INDEX dedup_prints_p3 ON dedup_prints(p3, hash, key);
      CREATE TABLE dedup_matches (
        key TEXT NOT NULL,
        benchmark TEXT NOT NULL,
        image_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        distance INTEGER,
        fingerprint TEXT NOT NULL,
        correlation REAL,
        colour_difference REAL,
        PRIMARY KEY (key, benchmark)
      ) WITHOUT ROWID;
      CREATE INDEX dedup_matches_benchmark ON dedup_matches(benchmark);
      CREATE TABLE dedup_done (
        benchmark TEXT NOT NULL,
        shard INTEGER NOT NULL,
        params TEXT NOT NULL,
        PRIMARY KEY (benchmark, shard)
      ) WITHOUT ROWID;
    `,
  },
  {
    // The second pass's figures for an image match (NULL: not compared, or matched before they
    // were recorded): mean CIELAB difference of the aligned images, and the largest compact
    // region of strongly differing cells as a share of the grid (the rejection criterion).
    id: 'dedup/002-second-pass',
    sql: `
      ALTER TABLE dedup_matches ADD COLUMN mean_difference REAL;
      ALTER TABLE dedup_matches ADD COLUMN compact_difference REAL;
    `,
  },
];

/** What a dedup run found, per benchmark. */
export interface BenchmarkMatches {
  /** Pairs whose image is a verified near-duplicate of a test image. */
  image: number;
  /** Pairs whose image bytes are a test image's bytes. */
  sha256: number;
  /** Pairs whose normalised caption is a test caption (and whose image did not match). */
  caption: number;
}

/** What a dedup run did, and the state of the corpus after it. */
export interface DedupResult {
  corpus: string;
  /** Pairs with status `ok` in committed shards. */
  pairs: number;
  /** Images fingerprinted in this run (the others were cached). */
  fingerprinted: number;
  /**
   * Of those, copies: images whose bytes equal an image fingerprinted earlier in this run, whose
   * print was taken from it instead of decoding them again.
   */
  copies: number;
  /** Corpus images that could not be decoded: their keys (they are not matched). */
  unreadable: string[];
  /** Shards matched in this run (the others were already done with the same parameters). */
  shardsMatched: number;
  /** Matches per benchmark named, over the whole corpus. */
  byBenchmark: Record<string, BenchmarkMatches>;
  /**
   * The second pass over the verified candidates of the shards matched in this run: compared at
   * full resolution with the registered image, rejected, or unavailable (registered bytes gone).
   */
  secondPass: SecondPassCounts;
  /** Near-duplicate clusters inside the corpus (--within): clusters and pairs pointing to a representative. */
  within: { clusters: number; duplicates: number } | null;
  /** Pairs with `dup_of` set, over the whole corpus. */
  flagged: number;
  durationMs: number;
  interrupted: boolean;
}

interface PairRow {
  key: string;
  sha256: string | null;
  caption: string;
}

interface Print {
  key: string;
  hash: bigint;
  thumb: Uint8Array;
}

interface Match {
  key: string;
  benchmark: string;
  imageId: string;
  kind: 'sha256' | 'image' | 'caption';
  distance: number | null;
  fingerprint: string;
  correlation: number | null;
  colourDifference: number | null;
  /** The second pass's mean CIELAB difference (image matches it compared; else null). */
  meanDifference: number | null;
  /** The second pass's largest compact region of strong differences, share of the grid (else null). */
  compactDifference: number | null;
}

/** A match on equal bytes (`sha256`) or an equal normalised caption: no image figures. */
function exactMatch(key: string, benchmark: string, imageId: string, kind: 'sha256' | 'caption'): Match {
  return {
    key,
    benchmark,
    imageId,
    kind,
    distance: kind === 'sha256' ? 0 : null,
    fingerprint: kind,
    correlation: null,
    colourDifference: null,
    meanDifference: null,
    compactDifference: null,
  };
}

/** A verified candidate of the first pass: a registered image whose hash and thumbnail agree. */
interface Candidate {
  benchmarkId: number;
  imageId: string;
  variant: string;
  thumb: Uint8Array;
  distance: number;
  agreement: Agreement;
  /** The second pass's comparison (undefined: not run, or the registered image could not be read). */
  refinement?: Refinement;
}

/** What the first pass found for one pair, per benchmark name. */
interface Findings {
  sha256: Map<string, Match>;
  /** Verified candidates, best first by the first pass's rule (luma correlation, then distance). */
  image: Map<string, Candidate[]>;
  caption: Map<string, Match>;
}

/** What the second pass did in a run. */
export interface SecondPassCounts {
  /** Verified candidates compared at full resolution. */
  compared: number;
  /** Of those, rejected (a compact colour difference). */
  rejected: number;
  /** Candidates whose registered image could not be read (kept on the first pass's word). */
  unavailable: number;
}

const KIND_RANK = `CASE m.kind WHEN 'sha256' THEN 0 WHEN 'image' THEN 1 WHEN 'caption' THEN 2 ELSE 3 END`;

/** Recomputes `pairs.dup_*` of the pairs `where` selects from their matches: a test set before the corpus itself, then exact, image, caption. */
const recomputeSql = (where: string) => `
  UPDATE pairs SET (dup_of, dup_kind, dup_distance, dup_fingerprint) = (
    SELECT CASE WHEN m.benchmark = '${WITHIN}' THEN m.image_id ELSE m.benchmark || '/' || m.image_id END,
           CASE WHEN m.benchmark = '${WITHIN}' THEN 'within' ELSE m.kind END, m.distance, m.fingerprint
      FROM dedup_matches m WHERE m.key = pairs.key
     ORDER BY m.benchmark = '${WITHIN}', ${KIND_RANK}, m.distance, m.benchmark LIMIT 1)
  WHERE ${where}`;

/** What fingerprinting one image's bytes gives: its base hash and thumbnail, or why it could not. */
type Fingerprinted = { hash: bigint; thumb: Uint8Array } | { error: string };

/**
 * Prints computed this run by a digest of the stored bytes they came from, the most recently used
 * kept. The crawl stores an image once per caption it was found with, so a logo or a product
 * photo shown under many alt texts is many byte-identical copies, mostly a few rows apart: each
 * after the first is looked up here instead of decoded. A print is a function of the bytes, so a
 * copy's print is the one it would have computed. Entries are promises, so a copy that arrives
 * while its first is still being fingerprinted waits for that one.
 */
class PrintMemo {
  private readonly entries = new Map<string, Promise<Fingerprinted>>();
  /** Images whose print was taken from here. */
  copies = 0;

  constructor(private readonly capacity: number) {}

  /** The print of `bytes`: remembered, or computed by `compute` (and remembered). */
  print(bytes: Uint8Array, compute: () => Promise<Fingerprinted>): Promise<Fingerprinted> {
    const digest = createHash('sha256').update(bytes).digest('base64');
    const known = this.entries.get(digest);
    if (known !== undefined) {
      this.copies++;
      this.entries.delete(digest);
      this.entries.set(digest, known);
      return known;
    }
    const computed = compute();
    this.entries.set(digest, computed);
    if (this.entries.size > this.capacity) this.entries.delete(this.entries.keys().next().value as string);
    return computed;
  }
}

/**
 * Prints a dedup run remembers for copies of identical bytes: about 4 KiB each (the thumbnail),
 * so 16,384 hold 66 MB.
 */
const PRINT_MEMO_CAPACITY = 16_384;

/** Fingerprints one stored image: its base hash and thumbnail, or the first line of why it failed. */
async function fingerprintBytes(bytes: Uint8Array): Promise<Fingerprinted> {
  try {
    const v = queryFromPixels(await decodePixels(bytes)).variants[0];
    if (v === undefined) throw new Error('no fingerprint');
    return { hash: v.hash, thumb: v.thumb };
  } catch (err) {
    return { error: (err as Error).message.split('\n')[0] ?? 'decode error' };
  }
}

/**
 * Fingerprints the images of `keys` in one shard (a copy of bytes `memo` has seen takes that
 * print); undecodable ones come back with their error.
 */
async function fingerprintShard(
  corpus: Corpus,
  shard: number,
  keys: ReadonlySet<string>,
  concurrency: number,
  memo: PrintMemo,
): Promise<{ prints: Print[]; failed: Array<{ key: string; error: string }> }> {
  const limit = pLimit(concurrency);
  const jobs: Array<Promise<Fingerprinted & { key: string }>> = [];
  const { tar } = shardPaths(corpus.dir, shard);
  // Decodes and file reads share libuv's threads (4): with fewer decodes at once than that, reading
  // outruns decoding and, unbounded, the whole shard's images would wait in memory (4,000 images
  // of 45 KB at --concurrency 1: 336 MB peak unbounded, 210 MB bounded).
  const ahead = concurrency * 8;
  for await (const sample of readShard(tar, keys)) {
    const { key, jpg } = sample;
    jobs.push(memo.print(jpg, () => limit(fingerprintBytes, jpg)).then((r) => ({ ...r, key })));
    if (jobs.length > ahead) await jobs[jobs.length - 1 - ahead];
  }
  const prints: Print[] = [];
  const failed: Array<{ key: string; error: string }> = [];
  const seen = new Set<string>();
  for (const r of await Promise.all(jobs)) {
    seen.add(r.key);
    if ('error' in r) failed.push({ key: r.key, error: r.error });
    else prints.push({ key: r.key, hash: r.hash, thumb: r.thumb });
  }
  for (const key of keys) if (!seen.has(key)) failed.push({ key, error: `not found in ${tar}` });
  return { prints, failed };
}

/** Matching against the registry: exact bytes, hash + verification, caption. */
class BenchmarkMatcher {
  private readonly index: MihTable;
  private readonly indexRows: Array<{ id: number; benchmark_id: number }>;
  private readonly bySha;
  private readonly byCaption;
  private readonly hashRow;
  private readonly baseRow;
  private readonly names: Map<number, string>;
  private readonly pixelCache = new Map<string, Promise<{ image: LabImage; box: Box } | null>>();

  constructor(
    private readonly registry: Registry,
    benchmarks: BenchmarkInfo[],
    private readonly maxDistance: number,
    private readonly thresholds: VerifyThresholds,
    private readonly captions: boolean,
  ) {
    const db = registry.db;
    // The named benchmarks' hashes, read once from their part columns into the in-memory mirror
    // of the part indexes (see _mih.ts): every lookup of the run probes it instead of SQLite.
    const ids = benchmarks.map((b) => b.id);
    const loaded = loadMihTable<{ id: number; benchmark_id: number }>(
      db,
      'bench_hashes',
      ['id', 'benchmark_id'],
      `benchmark_id IN (${ids.map(() => '?').join(',')})`,
      ids,
    );
    this.index = loaded.table;
    this.indexRows = loaded.rows;
    this.bySha = db.prepare(
      `SELECT benchmark_id, image_id FROM bench_images WHERE sha256 = ? AND status = 'ok' ORDER BY image_id`,
    );
    this.byCaption = db.prepare(
      `SELECT benchmark_id, image_id FROM bench_captions WHERE normalised = ? ORDER BY image_id`,
    );
    this.hashRow = db.prepare('SELECT image_id, variant, thumb FROM bench_hashes WHERE id = ?');
    this.baseRow = db.prepare(
      `SELECT thumb FROM bench_hashes WHERE benchmark_id = ? AND image_id = ? AND variant = 'base'`,
    );
    this.names = new Map(benchmarks.map((b) => [b.id, b.name]));
  }

  /** The hash lookups of a shard's prints in one batch (see MihTable.lookupMany), by key. */
  lookupAll(prints: readonly Print[]): Map<string, TableHit[]> {
    const hi = new Uint32Array(prints.length);
    const lo = new Uint32Array(prints.length);
    prints.forEach((p, i) => {
      hi[i] = Number(p.hash >> 32n);
      lo[i] = Number(p.hash & 0xffffffffn);
    });
    const hits = this.index.lookupMany(hi, lo, this.maxDistance);
    return new Map(prints.map((p, i) => [p.key, hits[i] as TableHit[]]));
  }

  /**
   * The first pass for one pair (`hits`: its print's lookup, from {@link lookupAll}): exact bytes,
   * every verified candidate per benchmark, and caption leaks.
   */
  find(pair: PairRow, print: Print | undefined, hits: readonly TableHit[] = []): Findings {
    const findings: Findings = { sha256: new Map(), image: new Map(), caption: new Map() };
    if (pair.sha256) {
      for (const row of this.bySha.all(pair.sha256) as { benchmark_id: number; image_id: string }[]) {
        const benchmark = this.names.get(row.benchmark_id);
        if (benchmark === undefined || findings.sha256.has(benchmark)) continue;
        findings.sha256.set(benchmark, exactMatch(pair.key, benchmark, row.image_id, 'sha256'));
      }
    }
    if (print) {
      // Per benchmark and registered image, the variant whose thumbnail agrees best.
      const byImage = new Map<string, Candidate>();
      for (const hit of hits) {
        const stored = this.indexRows[hit.index] as { id: number; benchmark_id: number };
        const benchmark = this.names.get(stored.benchmark_id);
        if (benchmark === undefined || findings.sha256.has(benchmark)) continue;
        const row = this.hashRow.get(stored.id) as { image_id: string; variant: string; thumb: Buffer };
        // A registered crop's fine grid is the part of its base variant's grid where it lies.
        const base =
          row.variant === 'base'
            ? undefined
            : (this.baseRow.get(stored.benchmark_id, row.image_id) as { thumb: Buffer } | undefined)?.thumb;
        const a = agreement(print.thumb, row.thumb, base);
        if (!verified(a, this.thresholds)) continue;
        const id = `${stored.benchmark_id}/${row.image_id}`;
        const current = byImage.get(id);
        if (current && !firstPassBetter(a.correlation, hit.distance, current)) continue;
        byImage.set(id, {
          benchmarkId: stored.benchmark_id,
          imageId: row.image_id,
          variant: row.variant,
          thumb: row.thumb,
          distance: hit.distance,
          agreement: a,
        });
      }
      for (const c of byImage.values()) {
        const benchmark = this.names.get(c.benchmarkId) as string;
        const list = findings.image.get(benchmark) ?? [];
        list.push(c);
        findings.image.set(benchmark, list);
      }
      for (const list of findings.image.values())
        list.sort((x, y) =>
          firstPassBetter(x.agreement.correlation, x.distance, y)
            ? -1
            : firstPassBetter(y.agreement.correlation, y.distance, x)
              ? 1
              : 0,
        );
    }
    const normalised = normaliseCaption(pair.caption);
    if (this.captions && normalised !== '') {
      for (const row of this.byCaption.all(normalised) as { benchmark_id: number; image_id: string }[]) {
        const benchmark = this.names.get(row.benchmark_id);
        if (benchmark === undefined || findings.caption.has(benchmark)) continue;
        findings.caption.set(benchmark, exactMatch(pair.key, benchmark, row.image_id, 'caption'));
      }
    }
    return findings;
  }

  /**
   * The registered image's pixels (decoded as at registration), or null when its bytes can no
   * longer be read (a folder moved since `bench add`). Cached for the run.
   */
  registeredPixels(benchmarkId: number, imageId: string): Promise<{ image: LabImage; box: Box } | null> {
    const id = `${benchmarkId}/${imageId}`;
    let cached = this.pixelCache.get(id);
    if (cached === undefined) {
      if (this.pixelCache.size >= PIXEL_CACHE) this.pixelCache.clear();
      cached = readImageBytesById(this.registry, benchmarkId, imageId)
        .then(decodePixels)
        .then((pixels) => ({ image: toLabImage(pixels), box: contentBox(pixels) }))
        .catch(() => null);
      this.pixelCache.set(id, cached);
    }
    return cached;
  }

  /** The matches of one pair per benchmark: exact bytes, else the best candidate left, else the caption. */
  decide(pair: PairRow, findings: Findings, maxCompactDifference: number): Match[] {
    const out: Match[] = [];
    const names = new Set([...findings.sha256.keys(), ...findings.image.keys(), ...findings.caption.keys()]);
    for (const benchmark of [...names].sort()) {
      const exact = findings.sha256.get(benchmark);
      if (exact) {
        out.push(exact);
        continue;
      }
      const kept = (findings.image.get(benchmark) ?? []).filter(
        (c) => c.refinement === undefined || c.refinement.compactDifference <= maxCompactDifference,
      );
      // Compared at full resolution: the candidate that agrees best (the true source over a
      // look-alike that the thumbnails could not tell apart); the others keep the first pass's order.
      const best = kept.reduce<Candidate | undefined>((b, c) => {
        if (b === undefined) return c;
        if (c.refinement && (!b.refinement || c.refinement.meanDifference < b.refinement.meanDifference)) return c;
        return b;
      }, undefined);
      if (best) {
        out.push({
          key: pair.key,
          benchmark,
          imageId: best.imageId,
          kind: 'image',
          distance: best.distance,
          fingerprint: best.agreement.mirrored ? `${best.variant}+mirror` : best.variant,
          correlation: Number(best.agreement.correlation.toFixed(4)),
          colourDifference: Number(best.agreement.colourDifference.toFixed(2)),
          meanDifference: best.refinement ? Number(best.refinement.meanDifference.toFixed(2)) : null,
          compactDifference: best.refinement ? Number(best.refinement.compactDifference.toFixed(5)) : null,
        });
        continue;
      }
      const caption = findings.caption.get(benchmark);
      if (caption) out.push(caption);
    }
    return out;
  }
}

/** Whether a candidate (correlation, distance) beats `other` in the first pass: better luma correlation (to 4 places), then fewer bits. */
function firstPassBetter(correlation: number, distance: number, other: Candidate): boolean {
  const a = Number(correlation.toFixed(4));
  const b = Number(other.agreement.correlation.toFixed(4));
  return a > b || (a === b && distance < other.distance);
}

/** Registered images' pixels kept per run (a registered emoji decodes to ~12 kB; a photo to ~200 kB). */
const PIXEL_CACHE = 2048;

/**
 * The second pass over one shard: the corpus images with verified candidates are decoded again
 * and compared at full resolution with each candidate's registered image (see _refine.ts).
 */
async function secondPass(
  corpus: Corpus,
  shard: number,
  matcher: BenchmarkMatcher,
  findings: Map<string, Findings>,
  counts: SecondPassCounts,
): Promise<void> {
  const keys = new Set<string>();
  for (const [key, f] of findings) for (const list of f.image.values()) if (list.length > 0) keys.add(key);
  if (keys.size === 0) return;
  const { tar } = shardPaths(corpus.dir, shard);
  for await (const sample of readShard(tar, keys)) {
    const f = findings.get(sample.key) as Findings;
    let query: { image: LabImage; box: Box };
    try {
      const pixels = await decodePixels(sample.jpg);
      query = { image: toLabImage(pixels), box: contentBox(pixels) };
    } catch {
      continue;
    }
    for (const list of f.image.values()) {
      for (const c of list) {
        const reg = await matcher.registeredPixels(c.benchmarkId, c.imageId);
        if (reg === null) {
          counts.unavailable++;
          continue;
        }
        // Aligned from the matched variant's box, and from the whole image's (a whole copy can be
        // nominated by a crop's hash).
        const box = variantBox(c.thumb, reg.box);
        c.refinement = refine(
          query.image,
          query.box,
          reg.image,
          box === reg.box ? [box] : [box, reg.box],
          c.agreement.mirrored,
          c.agreement.gray,
        );
        counts.compared++;
        if (c.refinement.compactDifference > SECOND_PASS.maxCompactDifference) counts.rejected++;
      }
    }
  }
}

/** Checks the registry and the benchmark names before the corpus is touched. */
function openBenchmarks(opts: ResolvedDedupOptions): { registry: Registry; benchmarks: BenchmarkInfo[] } | null {
  if (opts.against.length === 0) return null;
  const registry = openRegistry(opts.benchDb ?? defaultRegistryPath());
  try {
    const benchmarks = [...new Set(opts.against)].map((name) => getCompleteBenchmark(registry, name, 'dedup'));
    for (const b of benchmarks) {
      if (b.images === 0) {
        throw new UsageError('ERR_EMPTY_BENCHMARK', `Benchmark '${b.name}' has no readable images: add it again`, {
          context: { path: registry.path },
        });
      }
    }
    return { registry, benchmarks };
  } catch (err) {
    registry.close();
    throw err;
  }
}

/**
 * Runs dedup on a corpus: `against` named benchmarks and/or `within` the corpus. Killed at any
 * moment, it leaves the manifest consistent, and the same call continues.
 */
export async function runDedup(options: DedupOptions): Promise<DedupResult> {
  const started = Date.now();
  const opts = resolveDedupOptions(options);
  if (!isCorpus(opts.corpus)) {
    throw new UsageError('ERR_CORPUS_NOT_FOUND', `No corpus at '${opts.corpus}' (no manifest.sqlite)`, {
      context: { path: opts.corpus, stage: 'dedup' },
    });
  }
  const opened = openBenchmarks(opts);
  let corpus: Corpus | undefined;
  let finishRun: ((outcome: string, summary: unknown) => void) | undefined;
  // The corpus lock, as the crawl and the filter take it: dedup writes `dup_of` and its tables.
  let release: (() => void) | undefined;
  try {
    release = acquireLock(opts.corpus);
    corpus = openCorpus(opts.corpus, { migrations: DEDUP_MIGRATIONS });
    finishRun = recordStageRun(corpus.db, 'dedup', { ...opts, signal: undefined, onProgress: undefined });
    const result = await dedupCorpus(corpus, opts, opened);
    result.durationMs = Date.now() - started;
    finishRun(result.interrupted ? 'interrupted' : 'ok', result);
    return result;
  } catch (err) {
    finishRun?.('failed', { error: (err as Error).message });
    throw err;
  } finally {
    corpus?.close();
    opened?.registry.close();
    release?.();
  }
}

async function dedupCorpus(
  corpus: Corpus,
  opts: ResolvedDedupOptions,
  opened: { registry: Registry; benchmarks: BenchmarkInfo[] } | null,
): Promise<DedupResult> {
  const { db } = corpus;
  const thresholds = {
    minCorrelation: opts.minCorrelation,
    maxColourDifference: opts.maxColourDifference,
    maxUncoveredColour: opts.maxUncoveredColour,
    maxCompactDifference: DEFAULT_THRESHOLDS.maxCompactDifference,
  };
  const progress = (p: DedupProgress) => opts.onProgress?.(p);
  const shards = (db.prepare('SELECT shard FROM shards ORDER BY shard').all() as { shard: number }[]).map(
    (r) => r.shard,
  );
  const pairsOf = db.prepare(`SELECT key, sha256, caption FROM pairs WHERE shard = ? AND status = 'ok' ORDER BY key`);
  const missingPrints = db.prepare(
    `SELECT p.key FROM pairs p LEFT JOIN dedup_prints d ON d.key = p.key AND d.version = ?
      WHERE p.shard = ? AND p.status = 'ok' AND d.key IS NULL`,
  );
  const printsOf = db
    .prepare(
      `SELECT d.key, d.hash, d.thumb FROM dedup_prints d JOIN pairs p ON p.key = d.key
        WHERE p.shard = ? AND p.status = 'ok' AND d.status = 'ok' AND d.version = ?`,
    )
    .safeIntegers(true);
  const insertPrint = db.prepare(
    `INSERT OR REPLACE INTO dedup_prints (key, version, status, error, hash, p0, p1, p2, p3, thumb)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  );
  const doneParams = db.prepare('SELECT params FROM dedup_done WHERE benchmark = ? AND shard = ?');
  const setDone = db.prepare('INSERT OR REPLACE INTO dedup_done (benchmark, shard, params) VALUES (?, ?, ?)');
  const deleteMatch = db.prepare('DELETE FROM dedup_matches WHERE key = ? AND benchmark = ?');
  const insertMatch = db.prepare(
    `INSERT OR REPLACE INTO dedup_matches (key, benchmark, image_id, kind, distance, fingerprint, correlation,
       colour_difference, mean_difference, compact_difference)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  );
  const recompute = db.prepare(recomputeSql('key = ?'));

  const matcher = opened
    ? new BenchmarkMatcher(opened.registry, opened.benchmarks, opts.maxDistance, thresholds, opts.captions)
    : null;
  const paramsOf = (b: BenchmarkInfo) =>
    JSON.stringify({
      benchmark: b.id,
      registered: b.updatedAt,
      version: FINGERPRINT_VERSION,
      maxDistance: opts.maxDistance,
      captions: opts.captions,
      thresholds,
      secondPass: opts.secondPass ? SECOND_PASS : null,
    });

  // Without the second pass nothing is refined, and every verified candidate stays in the race.
  const maxCompact = SECOND_PASS.maxCompactDifference;
  const secondPassCounts: SecondPassCounts = { compared: 0, rejected: 0, unavailable: 0 };
  const memo = new PrintMemo(PRINT_MEMO_CAPACITY);
  let fingerprinted = 0;
  let shardsMatched = 0;
  let interrupted = false;
  let done = 0;
  const total = (
    db.prepare(`SELECT COUNT(*) AS n FROM pairs WHERE status = 'ok' AND shard IN (SELECT shard FROM shards)`).get() as {
      n: number;
    }
  ).n;
  for (const shard of shards) {
    if (opts.signal?.aborted) {
      interrupted = true;
      break;
    }
    const pairs = pairsOf.all(shard) as PairRow[];
    const missing = new Set((missingPrints.all(FINGERPRINT_VERSION, shard) as { key: string }[]).map((r) => r.key));
    const fresh =
      missing.size > 0
        ? await fingerprintShard(corpus, shard, missing, opts.concurrency, memo)
        : { prints: [], failed: [] };
    const todo = opened
      ? opened.benchmarks.filter(
          (b) => (doneParams.get(b.name, shard) as { params: string } | undefined)?.params !== paramsOf(b),
        )
      : [];
    let matches: Match[] = [];
    if (todo.length > 0 && matcher) {
      const prints = new Map<string, Print>();
      for (const row of printsOf.all(shard, FINGERPRINT_VERSION) as Array<{
        key: string;
        hash: bigint;
        thumb: Buffer;
      }>) {
        prints.set(row.key, { key: row.key, hash: toUnsigned(row.hash), thumb: row.thumb });
      }
      for (const p of fresh.prints) prints.set(p.key, p);
      const names = new Set(todo.map((b) => b.name));
      const hits = matcher.lookupAll([...prints.values()]);
      const findings = new Map<string, Findings>();
      for (const pair of pairs) findings.set(pair.key, matcher.find(pair, prints.get(pair.key), hits.get(pair.key)));
      if (opts.secondPass) await secondPass(corpus, shard, matcher, findings, secondPassCounts);
      for (const pair of pairs) {
        const found = matcher.decide(pair, findings.get(pair.key) as Findings, maxCompact);
        matches.push(...found.filter((m) => names.has(m.benchmark)));
      }
    }
    db.transaction(() => {
      for (const p of fresh.prints) {
        const s = storedHash(p.hash);
        insertPrint.run(p.key, FINGERPRINT_VERSION, 'ok', null, s.hash, s.p0, s.p1, s.p2, s.p3, Buffer.from(p.thumb));
      }
      for (const f of fresh.failed)
        insertPrint.run(f.key, FINGERPRINT_VERSION, 'unreadable', f.error, null, null, null, null, null, null);
      if (todo.length === 0) return;
      for (const pair of pairs) for (const b of todo) deleteMatch.run(pair.key, b.name);
      for (const m of matches) {
        insertMatch.run(
          m.key,
          m.benchmark,
          m.imageId,
          m.kind,
          m.distance,
          m.fingerprint,
          m.correlation,
          m.colourDifference,
          m.meanDifference,
          m.compactDifference,
        );
      }
      for (const b of todo) setDone.run(b.name, shard, paramsOf(b));
      for (const pair of pairs) recompute.run(pair.key);
    })();
    fingerprinted += fresh.prints.length + fresh.failed.length;
    if (todo.length > 0) shardsMatched++;
    matches = [];
    done += pairs.length;
    progress({ phase: opened ? 'match' : 'fingerprint', done, total });
  }

  let within: DedupResult['within'] = null;
  if (opts.within && !interrupted) {
    if (opts.signal?.aborted) interrupted = true;
    else {
      within = await clusterWithin(corpus, opts, thresholds, progress);
      if (within === null) interrupted = true;
    }
  }

  const unreadable = (
    db
      .prepare(`SELECT key FROM dedup_prints WHERE status != 'ok' AND version = ? ORDER BY key`)
      .all(FINGERPRINT_VERSION) as {
      key: string;
    }[]
  ).map((r) => r.key);
  const byBenchmark: Record<string, BenchmarkMatches> = {};
  for (const b of opened?.benchmarks ?? []) {
    const counts = { image: 0, sha256: 0, caption: 0 };
    for (const row of db
      .prepare('SELECT kind, COUNT(*) AS n FROM dedup_matches WHERE benchmark = ? GROUP BY kind')
      .all(b.name) as {
      kind: keyof BenchmarkMatches;
      n: number;
    }[]) {
      counts[row.kind] = row.n;
    }
    byBenchmark[b.name] = counts;
  }
  const flagged = (db.prepare('SELECT COUNT(*) AS n FROM pairs WHERE dup_of IS NOT NULL').get() as { n: number }).n;
  return {
    corpus: opts.corpus,
    pairs: total,
    fingerprinted,
    copies: memo.copies,
    unreadable,
    shardsMatched,
    byBenchmark,
    secondPass: secondPassCounts,
    within,
    flagged,
    durationMs: 0,
    interrupted,
  };
}

/**
 * Near-duplicate clusters inside the corpus: prints of identical bytes joined at once (see
 * `exactGroups`), every other fingerprint looked up in the corpus's own index and verified pairs
 * joined (see _within.ts), and in each cluster the pair with the largest original image (then the
 * smallest key) kept as the representative that the others point to. Written in one transaction
 * that replaces the previous --within result; null, and nothing written, when the signal stopped it.
 */
async function clusterWithin(
  corpus: Corpus,
  opts: ResolvedDedupOptions,
  thresholds: VerifyThresholds,
  progress: (p: DedupProgress) => void,
): Promise<{ clusters: number; duplicates: number } | null> {
  const { db } = corpus;
  // The corpus's prints in their physical order (rowid): position i is rowids[i].
  const { rowids, hi, lo } = loadHashHalves(
    db,
    'dedup_prints',
    `status = 'ok' AND version = ? AND key IN (SELECT key FROM pairs WHERE status = 'ok')`,
    [FINGERPRINT_VERSION],
  );
  const n = rowids.length;
  const firstOf = exactGroups(
    rowids,
    db
      .prepare(
        `SELECT d.rowid, p.sha256 FROM dedup_prints d JOIN pairs p ON p.key = d.key
          WHERE d.status = 'ok' AND d.version = ? AND p.status = 'ok' ORDER BY p.sha256, d.rowid`,
      )
      .raw()
      .iterate(FINGERPRINT_VERSION) as Iterable<unknown[]>,
  );
  // Only the first print of each group of identical bytes is looked up: distinct k is position distinct[k].
  const distinct = Uint32Array.from(firstOf.filter((first, p) => first === p));
  const distinctIndex = new Int32Array(n).fill(-1);
  distinct.forEach((p, k) => (distinctIndex[p] = k));
  const thumbOf = db.prepare('SELECT thumb FROM dedup_prints WHERE rowid = ?').pluck();
  const index = MihTable.fromHalves(
    distinct.map((p) => hi[p] as number),
    distinct.map((p) => lo[p] as number),
  );
  const found = await findClusters(index, (k) => thumbOf.get(rowids[distinct[k] as number]) as Buffer, {
    maxDistance: opts.maxDistance,
    thresholds,
    signal: opts.signal,
    onProgress: (done) => progress({ phase: 'within', done, total: distinct.length }),
  });
  if (found === null) return null;
  const { pairs } = found;
  // The distinct print of position p, and the cluster root of every position: the smallest
  // position of its cluster (a group's first is its smallest position).
  const distinctOf = (p: number) => distinctIndex[firstOf[p] as number] as number;
  const root = new Int32Array(n);
  for (let p = 0; p < n; p++) root[p] = distinct[found.root[distinctOf(p)] as number] as number;
  const { members, start } = clusterMembers(root);
  const clusters = start.length - 1;

  // Each cluster's representative: the largest original image, then the smallest key.
  const memberOf = db.prepare(
    `SELECT d.key AS key, COALESCE(p.original_width * p.original_height, 0) AS px
       FROM dedup_prints d JOIN pairs p ON p.key = d.key WHERE d.rowid = ?`,
  );
  const representative = new Int32Array(n).fill(-1);
  for (let c = 0; c < clusters; c++) {
    let best = -1;
    let bestKey = '';
    let bestPx = -1;
    for (let m = start[c] as number; m < (start[c + 1] as number); m++) {
      const i = members[m] as number;
      const { key, px } = memberOf.get(rowids[i]) as { key: string; px: number };
      if (px > bestPx || (px === bestPx && key < bestKey)) [best, bestKey, bestPx] = [i, key, px];
    }
    representative[root[best] as number] = best;
  }
  // The verified pair joining a member's distinct print to its representative's directly, where
  // there is one (by distinct print; a copy of the representative's own bytes needs none).
  const direct = new Int32Array(distinct.length).fill(-1);
  for (let k = 0; k < pairs.count; k++) {
    const a = pairs.a[k] as number;
    const b = pairs.b[k] as number;
    const rep = distinctOf(representative[root[distinct[a] as number] as number] as number);
    if (rep === b) direct[a] = k;
    else if (rep === a) direct[b] = k;
  }

  const keyOf = db.prepare('SELECT key FROM dedup_prints WHERE rowid = ?').pluck();
  const insert = db.prepare(
    `INSERT INTO dedup_matches (key, benchmark, image_id, kind, distance, fingerprint) VALUES (?, '${WITHIN}', ?, 'within', ?, ?)`,
  );
  // The pairs whose dup_of the change can move: those that pointed into a cluster, and the new links.
  const recompute = db.prepare(
    recomputeSql(`dup_kind = 'within' OR key IN (SELECT key FROM dedup_matches WHERE benchmark = '${WITHIN}')`),
  );
  let duplicates = 0;
  db.transaction(() => {
    db.prepare('DELETE FROM dedup_matches WHERE benchmark = ?').run(WITHIN);
    for (let c = 0; c < clusters; c++) {
      const rep = representative[root[members[start[c] as number] as number] as number] as number;
      const repKey = keyOf.get(rowids[rep]) as string;
      for (let m = start[c] as number; m < (start[c + 1] as number); m++) {
        const i = members[m] as number;
        if (i === rep) continue;
        // Identical bytes: hash distance 0, the thumbnails equal as they are.
        const same = distinctOf(i) === distinctOf(rep);
        const k = same ? -1 : (direct[distinctOf(i)] as number);
        const fingerprint = same ? 'base' : k === -1 ? 'cluster' : pairs.mirrored[k] ? 'base+mirror' : 'base';
        insert.run(keyOf.get(rowids[i]), repKey, same ? 0 : k === -1 ? null : pairs.distance[k], fingerprint);
        duplicates++;
      }
    }
    recompute.run();
  })();
  return { clusters, duplicates };
}
