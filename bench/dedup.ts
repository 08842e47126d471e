/**
 * `npm run bench:dedup`:
 * 1. the multi-index hash lookup against a linear scan (JavaScript, popcount over typed arrays) in
 *    the same run: 1M synthetic corpus fingerprints (clustered, as real ones are) against 100k
 *    registered images (10 hashes each, in SQLite with indexed part columns), at the default
 *    distance 8; through the in-memory mirror of the part indexes (what a dedup run uses) and,
 *    on a sample, through SQLite statements;
 * 2. fingerprinting (decode + trim + hash + thumbnail) against the sharp decode floor;
 * 3. the accuracy suite at full size, next to the plain 64-bit pHash baseline;
 * 4. `dedup --within` on a synthetic manifest of BENCH_DEDUP_WITHIN prints (real thumbnails of emoji
 *    drawings, hashes drawn at random, planted clusters of byte-identical copies and look-alike
 *    pairs whose hashes are close but whose drawings differ), in a process of its own: wall time,
 *    peak memory, and the clusters found against the planted ones;
 * 5. a whole `dedup --against` run, in a process of its own, on a crawled-like corpus of
 *    BENCH_DEDUP_RUN pairs (256 px JPEGs of emoji drawings on random backgrounds, shards of 10,000)
 *    in which BENCH_DEDUP_RUN_COPIES of the pairs are byte copies of a pair up to 50 rows before
 *    (an image the crawl stored again under another caption): wall time, images a second, peak
 *    memory, CPU time (all threads), copies found against those planted.
 * Sizes: BENCH_DEDUP_REGISTERED=100000 BENCH_DEDUP_CORPUS=1000000 BENCH_DEDUP_LINEAR_SAMPLE=300
 * BENCH_DEDUP_FINGERPRINTS=1000 BENCH_DEDUP_ACCURACY=500 BENCH_DEDUP_WITHIN=200000 BENCH_DEDUP_RUN=20000
 * (0 skips a part); BENCH_DEDUP_RUN_COPIES=0.2; BENCH_DEDUP_DISTANCE=8
 * (the lookup distance of part 1); BENCH_DEDUP_SEED=1 (the accuracy set's seed: check a second one);
 * BENCH_DEDUP_SECOND_PASS=0 (the accuracy suite without dedup's full-resolution second pass).
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import sharp from 'sharp';
import { MANIFEST_FILE, openCorpus } from '../corpus/manifest.ts';
import { ShardWriter } from '../corpus/shards.ts';
import { mulberry32 } from '../corpus/random.ts';
import { loadMihTable, MihIndex, storedHash } from '../dedup/_mih.ts';
import { popcount32 } from '../dedup/phash.ts';
import { DEDUP_MIGRATIONS, queryFingerprint, registerBenchmark } from '../dedup/index.ts';
import { DEFAULT_CROPS, FINGERPRINT_VERSION } from '../dedup/fingerprint.ts';
import { evaluateAccuracy } from '../test/dedup/_accuracy.ts';
import {
  asStored,
  buildAccuracySet,
  emojiConcepts,
  emojiFile,
  type EmojiConcept,
} from '../test/fixtures/transforms.ts';
import { storedSample } from '../test/fixtures/manifest.ts';
import { benchArgs, envNumber } from './_args.ts';

const { REGISTERED, CORPUS, LINEAR_SAMPLE, FINGERPRINTS, ACCURACY, WITHIN, RUN, RUN_COPIES, MAX_DISTANCE, SEED } =
  benchArgs(
    'dedup',
    `usage: [BENCH_DEDUP_REGISTERED=100000] [BENCH_DEDUP_CORPUS=1000000] [BENCH_DEDUP_LINEAR_SAMPLE=300]
  [BENCH_DEDUP_FINGERPRINTS=1000] [BENCH_DEDUP_ACCURACY=500] [BENCH_DEDUP_WITHIN=200000]
  [BENCH_DEDUP_RUN=20000] [BENCH_DEDUP_RUN_COPIES=0.2] [BENCH_DEDUP_DISTANCE=8] [BENCH_DEDUP_SEED=1] [BENCH_DEDUP_SECOND_PASS=0|1] npm run bench:dedup
  (a size of 0 skips that part)`,
    {},
    () => ({
      REGISTERED: envNumber('BENCH_DEDUP_REGISTERED', 100_000, 0, 100_000_000),
      CORPUS: envNumber('BENCH_DEDUP_CORPUS', 1_000_000, 0, 1_000_000_000),
      LINEAR_SAMPLE: envNumber('BENCH_DEDUP_LINEAR_SAMPLE', 300, 0, 100_000_000),
      FINGERPRINTS: envNumber('BENCH_DEDUP_FINGERPRINTS', 1000, 0, 10_000_000),
      ACCURACY: envNumber('BENCH_DEDUP_ACCURACY', 500, 0, 10_000_000),
      WITHIN: envNumber('BENCH_DEDUP_WITHIN', 200_000, 0, 1_000_000_000),
      RUN: envNumber('BENCH_DEDUP_RUN', 20_000, 0, 100_000_000),
      RUN_COPIES: envNumber('BENCH_DEDUP_RUN_COPIES', 0.2, 0, 0.99, false),
      MAX_DISTANCE: envNumber('BENCH_DEDUP_DISTANCE', 8, 0, 64),
      SEED: envNumber('BENCH_DEDUP_SEED', 1, 0, Number.MAX_SAFE_INTEGER),
    }),
  );
/** Hashes per registered image: the base and its crops (10). */
const VARIANTS = DEFAULT_CROPS.length + 1;
/** BENCH_DEDUP_SECOND_PASS=0 runs the accuracy suite without the full-resolution second pass. */
const SECOND_PASS = process.env['BENCH_DEDUP_SECOND_PASS'] !== '0';
const work = mkdtempSync(join(tmpdir(), 'altforge-bench-dedup-'));
const random = mulberry32(5);
const rand32 = () => Math.floor(random() * 2 ** 32) >>> 0;
const report: Record<string, unknown> = {
  bench: 'dedup',
  machine: `${cpus()[0]?.model ?? 'unknown'} x${cpus().length}`,
  node: process.version,
};

const big = (hi: number, lo: number) => (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);

/** Flips `count` random bits of hi:lo in place at position i. */
function flip(hi: Uint32Array, lo: Uint32Array, i: number, count: number): void {
  for (let f = 0; f < count; f++) {
    const b = Math.floor(random() * 64);
    if (b < 32) lo[i] = ((lo[i] as number) ^ (1 << b)) >>> 0;
    else hi[i] = ((hi[i] as number) ^ (1 << (b - 32))) >>> 0;
  }
}

/**
 * The index against a linear scan, as a dedup run uses it: `registered` test images stored the way
 * the registry stores them (base hash + 9 crop hashes each, a few bits from the base; a SQLite
 * table with the parts p0..p3 as indexed columns), looked up by `corpus` corpus fingerprints
 * (clustered: near-duplicates inside the corpus; 5 % are copies of a registered image, 0-8 bits
 * away). The in-memory mirror is read from the part columns in the same run and its load counted.
 */
async function indexBench(registered: number, corpusSize: number) {
  const n = registered * VARIANTS;
  const shi = new Uint32Array(n);
  const slo = new Uint32Array(n);
  for (let r = 0; r < registered; r++) {
    const base = r * VARIANTS;
    shi[base] = rand32();
    slo[base] = rand32();
    for (let v = 1; v < VARIANTS; v++) {
      shi[base + v] = shi[base] as number;
      slo[base + v] = slo[base] as number;
      flip(shi, slo, base + v, 2 + Math.floor(random() * 9));
    }
  }
  const db = new Database(join(work, `mih-${registered}.sqlite`));
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = OFF');
  db.exec(
    `CREATE TABLE h (id INTEGER PRIMARY KEY, benchmark_id INTEGER NOT NULL, hash INTEGER NOT NULL, p0 INTEGER, p1 INTEGER, p2 INTEGER, p3 INTEGER)`,
  );
  const insert = db.prepare('INSERT INTO h (id, benchmark_id, hash, p0, p1, p2, p3) VALUES (?, 1, ?, ?, ?, ?, ?)');
  let t = performance.now();
  db.transaction(() => {
    for (let i = 0; i < n; i++) {
      const s = storedHash(big(shi[i] as number, slo[i] as number));
      insert.run(i + 1, s.hash, s.p0, s.p1, s.p2, s.p3);
    }
  })();
  for (let k = 0; k < 4; k++) db.exec(`CREATE INDEX h${k} ON h(p${k}, hash, benchmark_id)`);
  const buildSeconds = (performance.now() - t) / 1000;

  // Corpus fingerprints: clusters of near-duplicates (1 centre per 20), 5 % copies of registered images.
  const qhi = new Uint32Array(corpusSize);
  const qlo = new Uint32Array(corpusSize);
  const centres = Math.max(1, Math.floor(corpusSize / 20));
  const chi = Uint32Array.from({ length: centres }, rand32);
  const clo = Uint32Array.from({ length: centres }, rand32);
  for (let q = 0; q < corpusSize; q++) {
    if (random() < 0.05) {
      const s = Math.floor(random() * n);
      qhi[q] = shi[s] as number;
      qlo[q] = slo[s] as number;
      flip(qhi, qlo, q, Math.floor(random() * 9));
    } else {
      const c = Math.floor(random() * centres);
      qhi[q] = chi[c] as number;
      qlo[q] = clo[c] as number;
      flip(qhi, qlo, q, Math.floor(random() * 13));
    }
  }

  // The in-memory mirror of the part indexes, read from SQLite, then every corpus fingerprint.
  t = performance.now();
  const { table } = loadMihTable<{ id: number }>(db, 'h', ['id']);
  const loadSeconds = (performance.now() - t) / 1000;
  t = performance.now();
  let hits = 0;
  // In batches, as a dedup run looks up a shard's fingerprints (lookupMany: queries in part order).
  const batch = 100_000;
  const batchHits: number[] = [];
  for (let start = 0; start < corpusSize; start += batch) {
    const end = Math.min(corpusSize, start + batch);
    for (const h of table.lookupMany(qhi.subarray(start, end), qlo.subarray(start, end), MAX_DISTANCE)) {
      hits += h.length;
      if (batchHits.length < LINEAR_SAMPLE) batchHits.push(h.length);
    }
  }
  const lookupSeconds = (performance.now() - t) / 1000;
  const tableQps = corpusSize / lookupSeconds;

  // The same lookups through SQLite (the statement per lookup of MihIndex), on a sample.
  const sqlSample = Math.min(corpusSize, 2000);
  const sqlIndex = new MihIndex<{ hash: bigint; id: bigint }>(db, 'h', ['id']);
  t = performance.now();
  for (let q = 0; q < sqlSample; q++) sqlIndex.lookup(big(qhi[q] as number, qlo[q] as number), MAX_DISTANCE);
  const sqlQps = sqlSample / ((performance.now() - t) / 1000);

  // Linear scan: every stored hash per query, on a sample; the same hits checked query by query.
  const linearSample = Math.min(corpusSize, LINEAR_SAMPLE);
  t = performance.now();
  const linearCounts = new Uint32Array(linearSample);
  for (let q = 0; q < linearSample; q++) {
    const qh = qhi[q] as number;
    const ql = qlo[q] as number;
    let c = 0;
    for (let i = 0; i < n; i++) {
      if (popcount32(((shi[i] as number) ^ qh) >>> 0) + popcount32(((slo[i] as number) ^ ql) >>> 0) <= MAX_DISTANCE)
        c++;
    }
    linearCounts[q] = c;
  }
  const linearQps = linearSample / ((performance.now() - t) / 1000);
  let same = true;
  for (let q = 0; q < linearSample; q++)
    if (
      table.lookupHalves(qhi[q] as number, qlo[q] as number, MAX_DISTANCE).length !== linearCounts[q] ||
      batchHits[q] !== linearCounts[q]
    )
      same = false;
  db.close();
  const row = {
    registered,
    storedHashes: n,
    corpusFingerprints: corpusSize,
    sqliteBuildSeconds: Number(buildSeconds.toFixed(1)),
    mirrorLoadSeconds: Number(loadSeconds.toFixed(2)),
    mirrorLookupSeconds: Number(lookupSeconds.toFixed(2)),
    mirrorQueriesPerSec: Math.round(tableQps),
    sqliteQueriesPerSec: Math.round(sqlQps),
    linearQueriesPerSec: Number(linearQps.toFixed(1)),
    linearSample,
    speedup: Number((tableQps / linearQps).toFixed(1)),
    speedupWithLoad: Number((corpusSize / (loadSeconds + lookupSeconds) / linearQps).toFixed(1)),
    sqliteSpeedup: Number((sqlQps / linearQps).toFixed(2)),
    hitsPerQuery: Number((hits / corpusSize).toFixed(2)),
    sameHitsAsLinear: same,
    secondsForCorpus: {
      mirror: Number((loadSeconds + lookupSeconds).toFixed(1)),
      sqlite: Math.round(corpusSize / sqlQps),
      linear: Math.round(corpusSize / linearQps),
    },
  };
  console.log(
    `index: ${corpusSize.toLocaleString()} corpus fingerprints against ${registered.toLocaleString()} registered (${n.toLocaleString()} hashes), distance ${MAX_DISTANCE}:\n` +
      `  in-memory mirror ${row.mirrorQueriesPerSec} q/s (load ${row.mirrorLoadSeconds} s + lookups ${row.mirrorLookupSeconds} s), ` +
      `SQLite ${row.sqliteQueriesPerSec} q/s, linear ${row.linearQueriesPerSec} q/s -> ${row.speedup}x (${row.speedupWithLoad}x with the load; SQLite ${row.sqliteSpeedup}x), same hits: ${same}`,
  );
  return row;
}

async function fingerprintBench() {
  const concepts = emojiConcepts().slice(0, FINGERPRINTS);
  const images: Buffer[] = [];
  for (const [i, c] of concepts.entries()) {
    const size = 64 + (i % 4) * 64;
    images.push(await asStored(await sharp(emojiFile('twitter', c.image)).resize(size, size).png().toBuffer()));
  }
  const run = async (f: (b: Buffer) => Promise<unknown>, parallel: number) => {
    let next = 0;
    const t = performance.now();
    await Promise.all(
      Array.from({ length: parallel }, async () => {
        while (next < images.length) await f(images[next++] as Buffer);
      }),
    );
    return images.length / ((performance.now() - t) / 1000);
  };
  const floor = await run((b) => sharp(b).raw().toBuffer(), 4);
  const prints = await run((b) => queryFingerprint(b), 4);
  const row = {
    images: images.length,
    sizes: '64-256 px JPEG q95',
    decodeFloorPerSec: Math.round(floor),
    fingerprintPerSec: Math.round(prints),
    ratio: Number((prints / floor).toFixed(2)),
  };
  console.log(
    `fingerprints: ${row.fingerprintPerSec}/s against the sharp decode floor ${row.decodeFloorPerSec}/s (${row.ratio})`,
  );
  return row;
}

/** Test images registered for the run part (twitter drawings, the first of the concepts). */
const RUN_REGISTERED = 200;

/**
 * A whole `dedup --against` run on a crawled-like corpus of `size` pairs: each a 256 px JPEG of an
 * emoji drawing (google's, else apple's or facebook's; a tenth of them of a concept whose twitter
 * drawing is registered, a drawing that must not be flagged) on a random background at a random quality, so that no two are
 * byte-identical, except that a share `copies` of the pairs are byte copies of a pair 1–50 rows
 * before them (the crawl stores an image once per caption it was found with). Written through the
 * shard writer as a crawl writes it; the run in a process of its own.
 */
async function runBench(size: number, copies: number) {
  const rng = mulberry32(23);
  const concepts = emojiConcepts();
  const dir = join(work, 'run');
  const benchDir = join(work, 'run-registered');
  mkdirSync(benchDir);
  for (const c of concepts.slice(0, RUN_REGISTERED))
    copyFileSync(emojiFile('twitter', c.image), join(benchDir, c.image));
  const benchDb = join(work, 'run-registry.sqlite');
  await registerBenchmark({ name: 'run', images: benchDir, benchDb });

  const started = performance.now();
  const corpus = openCorpus(dir, { create: true });
  const recent: Buffer[] = [];
  let planted = 0;
  let bytes = 0;
  try {
    const insert = corpus.db.prepare(`INSERT INTO pairs (key, url, caption, status) VALUES (?, ?, ?, 'pending')`);
    corpus.db.transaction(() => {
      for (let i = 0; i < size; i++)
        insert.run(`k${String(i).padStart(9, '0')}`, `http://bench.invalid/${i}.jpg`, `pair ${i}`);
    })();
    const writer = await ShardWriter.open(corpus, RUN_SHARD);
    for (let i = 0; i < size; i++) {
      let jpg: Buffer;
      if (recent.length > 0 && rng() < copies) {
        jpg = recent[recent.length - 1 - Math.floor(rng() * recent.length)] as Buffer;
        planted++;
      } else {
        const concept = concepts[Math.floor(rng() * Math.min(concepts.length, RUN_REGISTERED * 10))] as EmojiConcept;
        const vendor = RUN_VENDORS.find((v) => concept.vendors.includes(v)) ?? 'twitter';
        const background = { r: Math.floor(rng() * 256), g: Math.floor(rng() * 256), b: Math.floor(rng() * 256) };
        jpg = await sharp(emojiFile(vendor, concept.image))
          .resize(256, 256)
          .flatten({ background })
          .jpeg({ quality: 70 + Math.floor(rng() * 26) })
          .toBuffer();
      }
      recent.push(jpg);
      if (recent.length > 50) recent.shift();
      bytes += jpg.length;
      await writer.add(
        storedSample(`http://bench.invalid/${i}.jpg`, `pair ${i}`, jpg, `k${String(i).padStart(9, '0')}`),
      );
    }
    await writer.flush();
  } finally {
    corpus.close();
  }
  console.log(
    `run: ${size} pairs written in ${((performance.now() - started) / 1000).toFixed(1)} s ` +
      `(${(bytes / 2 ** 20).toFixed(0)} MiB of JPEG, ${planted} byte copies of a pair up to 50 rows before)`,
  );
  const child = spawnSync(
    process.execPath,
    ['--import', 'tsx', join(import.meta.dirname, '_dedup-run.ts'), dir, benchDb, 'run'],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 20 },
  );
  if (child.status !== 0) throw new Error(`the dedup --against run failed (exit ${child.status})`);
  const run = JSON.parse(child.stdout.trim().split('\n').pop() as string) as {
    fingerprinted: number;
    copies: number | null;
    matches: { image: number; sha256: number; caption: number };
    flagged: number;
    wallMs: number;
    cpuMs: number;
    maxRssKb: number;
  };
  const row = {
    pairs: size,
    planted,
    ...run,
    imagesPerSec: Math.round(size / (run.wallMs / 1000)),
    maxRssMb: Math.round(run.maxRssKb / 1024),
  };
  console.log(
    `run: dedup --against ${RUN_REGISTERED} registered in ${(run.wallMs / 1000).toFixed(1)} s (${row.imagesPerSec} images/s; ` +
      `CPU ${(run.cpuMs / 1000).toFixed(1)} s), ` +
      `peak ${row.maxRssMb} MB; ${run.fingerprinted} fingerprinted, ${run.copies ?? '-'} of them copies ` +
      `(planted ${planted}); ${run.matches.image} near-duplicates, ${run.flagged} flagged`,
  );
  return row;
}

/** Pairs a shard of the run part's corpus (the crawl's default shard size). */
const RUN_SHARD = 10_000;
/** The vendors whose drawings make the run part's corpus (the registered ones are twitter's). */
const RUN_VENDORS = ['google', 'apple', 'facebook'] as const;

/** Pairs a shard of the synthetic within-corpus manifest (the crawl's default shard size). */
const WITHIN_SHARD = 10_000;
/** Distinct drawings whose thumbnails the synthetic prints share out. */
const WITHIN_POOL = 1000;

/** `n` random bits flipped in a fresh copy of hi:lo, each bit at most once. */
function flipped(hi: number, lo: number, n: number, rng: () => number): [number, number] {
  const bits = new Set<number>();
  while (bits.size < n) bits.add(Math.floor(rng() * 64));
  for (const b of bits) {
    if (b < 32) lo = (lo ^ (1 << b)) >>> 0;
    else hi = (hi ^ (1 << (b - 32))) >>> 0;
  }
  return [hi >>> 0, lo >>> 0];
}

/**
 * `dedup --within` at scale: a manifest of `size` pairs whose prints are stored as a dedup run
 * stores them (status ok, the current fingerprint version, so nothing is fingerprinted), then one
 * run in a process of its own. Of the draws, 12 % plant a cluster of 2–5 copies of one drawing
 * (re-encoded copies: their own bytes, hashes at most 4 bits from a centre, so every two copies are
 * candidates), 3 % a group of 2–5 copies of identical bytes (one sha256: the same URL under several
 * captions), 5 % a look-alike pair (hashes 5–8 bits apart, two different drawings: candidates the
 * verification must reject), the rest a single print (a random hash, a drawing from the pool). One
 * more group of identical bytes holds 1 % of the prints (a logo or placeholder image that recurs
 * all over a crawl). Rows are shuffled, so a cluster's copies lie anywhere in the corpus, as
 * crawled copies do.
 */
async function withinBench(size: number) {
  // Its own generator: the same manifest whichever other parts ran before it.
  const rng = mulberry32(17);
  const u32 = () => Math.floor(rng() * 2 ** 32) >>> 0;
  const pool: Buffer[] = [];
  const poolNames: string[] = [];
  for (const c of emojiConcepts().slice(0, WITHIN_POOL)) {
    poolNames.push(c.image);
    const png = await sharp(emojiFile('twitter', c.image)).resize(128, 128).png().toBuffer();
    const print = await queryFingerprint(await asStored(png));
    pool.push(Buffer.from((print.variants[0] as { thumb: Uint8Array }).thumb));
  }
  const hi = new Uint32Array(size);
  const lo = new Uint32Array(size);
  const drawing = new Uint16Array(size);
  const group = new Int32Array(size).fill(-1);
  // Prints of identical bytes: their group's sha256 and size.
  const exact = new Int32Array(size).fill(-1);
  const width = new Uint16Array(size);
  const height = new Uint16Array(size);
  for (let i = 0; i < size; i++) [width[i], height[i]] = [200 + Math.floor(rng() * 800), 200 + Math.floor(rng() * 800)];
  // The other print of a look-alike pair.
  const partner = new Int32Array(size).fill(-1);
  let planted = { clusters: 0, duplicates: 0, lookAlikes: 0, exactGroups: 0, largestExactGroup: 0 };
  const plantExact = (from: number, copies: number, centre: [number, number], d: number) => {
    for (let c = 0; c < copies; c++) {
      [hi[from + c], lo[from + c]] = centre;
      drawing[from + c] = d;
      group[from + c] = planted.clusters;
      exact[from + c] = planted.exactGroups;
      [width[from + c], height[from + c]] = [width[from] as number, height[from] as number];
    }
    planted = {
      ...planted,
      clusters: planted.clusters + 1,
      duplicates: planted.duplicates + copies - 1,
      exactGroups: planted.exactGroups + 1,
      largestExactGroup: Math.max(planted.largestExactGroup, copies),
    };
  };
  const logo = Math.max(2, Math.floor(size / 100));
  plantExact(0, Math.min(logo, size), [u32(), u32()], Math.floor(rng() * pool.length));
  for (let i = Math.min(logo, size); i < size;) {
    const draw = rng();
    const centre: [number, number] = [u32(), u32()];
    const d = Math.floor(rng() * pool.length);
    if (draw < 0.03 && size - i >= 2) {
      const copies = Math.min(size - i, 2 + Math.floor(rng() * 4));
      plantExact(i, copies, centre, d);
      i += copies;
    } else if (draw < 0.15 && size - i >= 2) {
      const copies = Math.min(size - i, 2 + Math.floor(rng() * 4));
      for (let c = 0; c < copies; c++, i++) {
        [hi[i], lo[i]] = flipped(centre[0], centre[1], Math.floor(rng() * 5), rng);
        drawing[i] = d;
        group[i] = planted.clusters;
      }
      planted = { ...planted, clusters: planted.clusters + 1, duplicates: planted.duplicates + copies - 1 };
    } else if (draw < 0.2 && size - i >= 2) {
      [hi[i], lo[i]] = centre;
      drawing[i++] = d;
      [hi[i], lo[i]] = flipped(centre[0], centre[1], 5 + Math.floor(rng() * 4), rng);
      drawing[i] = (d + 1 + Math.floor(rng() * (pool.length - 1))) % pool.length;
      [partner[i - 1], partner[i]] = [i, i - 1];
      i++;
      planted = { ...planted, lookAlikes: planted.lookAlikes + 1 };
    } else {
      [hi[i], lo[i]] = centre;
      drawing[i++] = d;
    }
  }
  // Rows in random order: position p holds draw order[p].
  const order = Uint32Array.from({ length: size }, (_, p) => p);
  for (let p = size - 1; p > 0; p--) {
    const q = Math.floor(rng() * (p + 1));
    [order[p], order[q]] = [order[q] as number, order[p] as number];
  }
  const dir = join(work, 'within');
  const started = performance.now();
  const corpus = openCorpus(dir, { create: true, migrations: DEDUP_MIGRATIONS });
  const pixels = new Float64Array(size);
  const keys: string[] = [];
  try {
    const { db } = corpus;
    const insertPair = db.prepare(
      `INSERT INTO pairs (key, url, caption, status, shard, width, height, original_width, original_height, sha256, bytes)
       VALUES (?, ?, ?, 'ok', ?, 256, 256, ?, ?, ?, 20000)`,
    );
    const insertPrint = db.prepare(
      `INSERT INTO dedup_prints (key, version, status, error, hash, p0, p1, p2, p3, thumb)
       VALUES (?, ?, 'ok', NULL, ?, ?, ?, ?, ?, ?)`,
    );
    const insertShard = db.prepare(
      `INSERT INTO shards (shard, count, successes, bytes, committed_at) VALUES (?, ?, ?, 0, '2026-01-01T00:00:00Z')`,
    );
    for (let start = 0; start < size; start += WITHIN_SHARD) {
      const end = Math.min(size, start + WITHIN_SHARD);
      const shard = start / WITHIN_SHARD;
      db.transaction(() => {
        for (let p = start; p < end; p++) {
          const i = order[p] as number;
          const url = `http://bench.invalid/${i}.jpg`;
          const key = createHash('md5').update(url).digest('hex');
          const [w, h] = [width[i] as number, height[i] as number];
          pixels[i] = w * h;
          if (group[i] !== -1) keys[i] = key;
          const bytes = exact[i] === -1 ? url : `exact ${exact[i]}`;
          insertPair.run(key, url, `draw ${i}`, shard, w, h, createHash('sha256').update(bytes).digest('hex'));
          const s = storedHash(big(hi[i] as number, lo[i] as number));
          insertPrint.run(key, FINGERPRINT_VERSION, s.hash, s.p0, s.p1, s.p2, s.p3, pool[drawing[i] as number]);
        }
        insertShard.run(shard, end - start, end - start);
      })();
    }
  } finally {
    corpus.close();
  }
  const buildSeconds = (performance.now() - started) / 1000;
  const manifestBytes = statSync(join(dir, MANIFEST_FILE)).size;
  console.log(
    `within: ${size} prints written in ${buildSeconds.toFixed(1)} s (manifest ${(manifestBytes / 2 ** 30).toFixed(2)} GiB); ` +
      `planted ${planted.clusters} clusters (${planted.duplicates} duplicates; ${planted.exactGroups} of identical ` +
      `bytes, the largest ${planted.largestExactGroup} copies), ${planted.lookAlikes} look-alike pairs`,
  );

  const child = spawnSync(process.execPath, ['--import', 'tsx', join(import.meta.dirname, '_within-run.ts'), dir], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    maxBuffer: 1 << 20,
  });
  if (child.status !== 0) throw new Error(`the dedup --within run failed (exit ${child.status})`);
  const run = JSON.parse(child.stdout.trim().split('\n').pop() as string) as {
    within: { clusters: number; duplicates: number };
    wallMs: number;
    maxRssKb: number;
  };

  // Every link checked against the planted clusters: right when both ends are copies of one
  // cluster; wrong otherwise, and then told apart: a look-alike pair whose two drawings the
  // verification took for copies (two pool emoji drawn nearly alike), or anything else. Each found
  // cluster's representative checked against the largest copy (then smallest key).
  const check = new Database(join(dir, MANIFEST_FILE), { readonly: true });
  let right = 0;
  let wrong = 0;
  const lookAlikesJoined: string[] = [];
  const representatives = new Map<number, number>();
  const drawOf = (url: string) => Number(/\/(\d+)\.jpg$/.exec(url)?.[1]);
  for (const row of check
    .prepare(
      `SELECT p.url AS url, r.url AS rep FROM pairs p JOIN pairs r ON r.key = p.dup_of WHERE p.dup_kind = 'within'`,
    )
    .iterate() as Iterable<{ url: string; rep: string }>) {
    const i = drawOf(row.url);
    const r = drawOf(row.rep);
    const g = group[i] as number;
    if (g !== -1 && g === group[r]) {
      right++;
      representatives.set(g, r);
    } else {
      wrong++;
      if (partner[i] === r)
        lookAlikesJoined.push(`${poolNames[drawing[i] as number]}~${poolNames[drawing[r] as number]}`);
    }
  }
  check.close();
  const best = new Map<number, number>();
  for (let i = 0; i < size; i++) {
    const g = group[i] as number;
    if (g === -1) continue;
    const b = best.get(g);
    const larger =
      b === undefined ||
      (pixels[i] as number) > (pixels[b] as number) ||
      (pixels[i] === pixels[b] && (keys[i] as string) < (keys[b] as string));
    if (larger) best.set(g, i);
  }
  let representativeRight = 0;
  for (const [g, r] of representatives) if (best.get(g) === r) representativeRight++;
  const row = {
    prints: size,
    manifestGiB: Number((manifestBytes / 2 ** 30).toFixed(2)),
    planted,
    found: run.within,
    rightLinks: right,
    wrongLinks: wrong,
    lookAlikesJoined: lookAlikesJoined.length,
    missed: planted.duplicates - right,
    representativesRight: `${representativeRight}/${representatives.size}`,
    wallSeconds: Number((run.wallMs / 1000).toFixed(1)),
    peakRssMB: Math.round(run.maxRssKb / 1024),
  };
  console.log(
    `within: ${row.found.duplicates} duplicates in ${row.found.clusters} clusters (planted ${planted.duplicates} in ` +
      `${planted.clusters}); ${right} links right, ${wrong} wrong (${lookAlikesJoined.length} look-alike pairs of two ` +
      `near-identical drawings${lookAlikesJoined.length > 0 ? `, e.g. ${[...new Set(lookAlikesJoined)].slice(0, 3).join(', ')}` : ''}), ` +
      `${row.missed} missed; representatives ` +
      `${row.representativesRight} right; run ${row.wallSeconds} s, peak RSS ${row.peakRssMB} MB`,
  );
  rmSync(dir, { recursive: true, force: true });
  return row;
}

try {
  if (REGISTERED > 0 && CORPUS > 0) report['index'] = await indexBench(REGISTERED, CORPUS);
  if (FINGERPRINTS > 0) report['fingerprint'] = await fingerprintBench();
  if (ACCURACY > 0) {
    const set = await buildAccuracySet({
      seed: SEED,
      benchmarkSize: ACCURACY,
      copiesPerTransform: Math.round(ACCURACY / 5),
      otherVendors: ACCURACY,
      skinTones: ACCURACY,
      otherEmoji: ACCURACY,
    });
    const dir = join(work, 'accuracy');
    const r = await evaluateAccuracy(set, dir, { secondPass: SECOND_PASS });
    const byKind = (list: Array<{ kind: string }>) =>
      list.reduce<Record<string, number>>((a, f) => ((a[f.kind] = (a[f.kind] ?? 0) + 1), a), {});
    report['accuracy'] = {
      seed: SEED,
      registered: set.benchmark.length,
      corpus: set.corpus.length,
      dedup: r.dedup,
      baseline: r.baseline,
      pixelIdentical: r.pixelIdentical,
      nearIdentical: r.nearIdentical,
      falsePositivesByKind: byKind(r.falsePositives),
      falsePositives: r.falsePositives,
      misses: r.misses,
      secondPass: SECOND_PASS ? r.secondPass : null,
      dedupMs: r.dedupMs,
    };
    const fmt = (x: number | undefined) => (x === undefined ? '-' : x.toFixed(3));
    console.log(
      `accuracy (seed ${SEED}): near-identical definition (${r.nearIdentical.negativesLeftOut} negatives left out, ` +
        `${r.nearIdentical.copiesWithLookAlikes} copies with a near-identical registered look-alike); pixel-identical in ()`,
    );
    console.log('transform      dedup recall         pHash recall');
    for (const t of Object.keys(r.dedup.recall)) {
      const k = t as 'crop';
      console.log(
        `${t.padEnd(12)}${fmt(r.dedup.recall[k]).padStart(8)} (${fmt(r.pixelIdentical.dedup.recall[k])})` +
          `${fmt(r.baseline.recall[k]).padStart(12)} (${fmt(r.pixelIdentical.baseline.recall[k])})`,
      );
    }
    console.log(
      `precision   ${fmt(r.dedup.precision).padStart(8)} (${fmt(r.pixelIdentical.dedup.precision)})` +
        `${fmt(r.baseline.precision).padStart(12)} (${fmt(r.pixelIdentical.baseline.precision)})` +
        '   negatives: other vendors, skin tones, other Twitter emoji',
    );
    console.log(
      `issue 5     ${fmt(r.dedup.issuePrecision).padStart(8)} (${fmt(r.pixelIdentical.dedup.issuePrecision)})` +
        `${fmt(r.baseline.issuePrecision).padStart(12)} (${fmt(r.pixelIdentical.baseline.issuePrecision)})` +
        '   negatives: other vendors, skin tones (issue 5: precision >= 0.99)',
    );
    console.log(
      SECOND_PASS
        ? `second pass: ${r.secondPass.compared} verified candidates compared at full resolution, ` +
            `${r.secondPass.rejected} rejected, ${r.secondPass.unavailable} without registered pixels; ` +
            `dedup run ${(r.dedupMs / 1000).toFixed(1)} s`
        : `second pass: off (BENCH_DEDUP_SECOND_PASS=0); dedup run ${(r.dedupMs / 1000).toFixed(1)} s`,
    );
    for (const f of r.falsePositives) console.log(`  false positive: ${f.kind} ${f.detail} -> ${f.dupOf}`);
    for (const m of r.misses) console.log(`  missed: ${m.kind} ${m.detail} of ${m.copyOf}`);
  }
  if (WITHIN > 0) report['within'] = await withinBench(WITHIN);
  if (RUN > 0) report['run'] = await runBench(RUN, RUN_COPIES);
  console.log(JSON.stringify(report));
} finally {
  rmSync(work, { recursive: true, force: true });
}
