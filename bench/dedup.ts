/**
 * `npm run bench:dedup`:
 * 1. the multi-index hash lookup in SQLite against a linear scan (JavaScript, popcount over typed
 *    arrays) in the same run, with 100k and 1M stored synthetic 64-bit hashes (clustered, as real
 *    hashes are), at the default distance 8;
 * 2. fingerprinting (decode + trim + hash + thumbnail) against the sharp decode floor;
 * 3. the accuracy suite at full size, next to the plain 64-bit pHash baseline.
 * Sizes: BENCH_DEDUP_SMALL=100000 BENCH_DEDUP_LARGE=1000000 BENCH_DEDUP_ACCURACY=500 (0 skips);
 * BENCH_DEDUP_DISTANCE=8 (the lookup distance of part 1).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import sharp from 'sharp';
import { mulberry32 } from '../corpus/random.ts';
import { MihIndex, storedHash } from '../dedup/_mih.ts';
import { popcount32 } from '../dedup/phash.ts';
import { queryFingerprint } from '../dedup/index.ts';
import { evaluateAccuracy } from '../test/dedup/_accuracy.ts';
import { asStored, buildAccuracySet, emojiConcepts, emojiFile } from '../test/fixtures/transforms.ts';

const SMALL = Number(process.env['BENCH_DEDUP_SMALL'] ?? 100_000);
const LARGE = Number(process.env['BENCH_DEDUP_LARGE'] ?? 1_000_000);
const ACCURACY = Number(process.env['BENCH_DEDUP_ACCURACY'] ?? 500);
const MAX_DISTANCE = Number(process.env['BENCH_DEDUP_DISTANCE'] ?? 8);
const work = mkdtempSync(join(tmpdir(), 'altforge-bench-dedup-'));
const random = mulberry32(5);
const rand32 = () => Math.floor(random() * 2 ** 32) >>> 0;
const report: Record<string, unknown> = {
  bench: 'dedup',
  machine: `${cpus()[0]?.model ?? 'unknown'} x${cpus().length}`,
  node: process.version,
};

/** Hashes around 1/20 as many centres, up to 12 bits away: many near neighbours, like real corpora. */
function makeHashes(n: number): { hi: Uint32Array; lo: Uint32Array } {
  const hi = new Uint32Array(n);
  const lo = new Uint32Array(n);
  const centres = Math.max(1, Math.floor(n / 20));
  const ch = Uint32Array.from({ length: centres }, rand32);
  const cl = Uint32Array.from({ length: centres }, rand32);
  for (let i = 0; i < n; i++) {
    const c = Math.floor(random() * centres);
    let h = ch[c] as number;
    let l = cl[c] as number;
    const flips = Math.floor(random() * 13);
    for (let f = 0; f < flips; f++) {
      const b = Math.floor(random() * 64);
      if (b < 32) l ^= 1 << b;
      else h ^= 1 << (b - 32);
    }
    hi[i] = h >>> 0;
    lo[i] = l >>> 0;
  }
  return { hi, lo };
}
const big = (hi: number, lo: number) => (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);

async function indexBench(n: number) {
  const stored = makeHashes(n);
  const db = new Database(join(work, `mih-${n}.sqlite`));
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = OFF');
  db.exec(
    `CREATE TABLE h (id INTEGER PRIMARY KEY, hash INTEGER NOT NULL, p0 INTEGER, p1 INTEGER, p2 INTEGER, p3 INTEGER)`,
  );
  const insert = db.prepare('INSERT INTO h (hash, p0, p1, p2, p3) VALUES (?, ?, ?, ?, ?)');
  let t = performance.now();
  db.transaction(() => {
    for (let i = 0; i < n; i++) {
      const s = storedHash(big(stored.hi[i] as number, stored.lo[i] as number));
      insert.run(s.hash, s.p0, s.p1, s.p2, s.p3);
    }
  })();
  for (let k = 0; k < 4; k++) db.exec(`CREATE INDEX h${k} ON h(p${k}, hash, id)`);
  const buildSeconds = (performance.now() - t) / 1000;
  // Queries: half near a stored hash (0-8 bits away), half random.
  const queries = Array.from({ length: n >= 1_000_000 ? 5000 : 20_000 }, (_, q) => {
    if (q % 2) return big(rand32(), rand32());
    const i = Math.floor(random() * n);
    let h = stored.hi[i] as number;
    let l = stored.lo[i] as number;
    for (let f = Math.floor(random() * 9); f > 0; f--) {
      const b = Math.floor(random() * 64);
      if (b < 32) l ^= 1 << b;
      else h ^= 1 << (b - 32);
    }
    return big(h, l);
  });
  const index = new MihIndex<{ hash: bigint; id: bigint }>(db, 'h', ['id']);
  t = performance.now();
  let hits = 0;
  for (const q of queries) hits += index.lookup(q, MAX_DISTANCE).length;
  const indexQps = queries.length / ((performance.now() - t) / 1000);
  // Linear scan: every stored hash, per query.
  const linearQueries = queries.slice(0, n >= 1_000_000 ? 200 : 1000);
  t = performance.now();
  let linearHits = 0;
  let linearOfIndexed = 0;
  for (const q of linearQueries) {
    const qh = Number(q >> 32n) >>> 0;
    const ql = Number(q & 0xffffffffn) >>> 0;
    for (let i = 0; i < n; i++) {
      if (
        popcount32(((stored.hi[i] as number) ^ qh) >>> 0) + popcount32(((stored.lo[i] as number) ^ ql) >>> 0) <=
        MAX_DISTANCE
      )
        linearHits++;
    }
  }
  const linearQps = linearQueries.length / ((performance.now() - t) / 1000);
  for (const q of linearQueries) linearOfIndexed += index.lookup(q, MAX_DISTANCE).length;
  db.close();
  const row = {
    stored: n,
    buildSeconds: Number(buildSeconds.toFixed(1)),
    indexQueriesPerSec: Math.round(indexQps),
    linearQueriesPerSec: Number(linearQps.toFixed(1)),
    speedup: Number((indexQps / linearQps).toFixed(1)),
    hitsPerQuery: Number((hits / queries.length).toFixed(2)),
    sameHitsAsLinear: linearHits === linearOfIndexed,
    secondsFor1MQueries: { index: Math.round(1e6 / indexQps), linear: Math.round(1e6 / linearQps) },
  };
  console.log(
    `index ${n.toLocaleString()} stored: MIH ${row.indexQueriesPerSec} q/s, linear ${row.linearQueriesPerSec} q/s -> ${row.speedup}x (same hits: ${row.sameHitsAsLinear})`,
  );
  return row;
}

async function fingerprintBench() {
  const concepts = emojiConcepts().slice(0, 1000);
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

try {
  report['index'] = [];
  for (const n of [SMALL, LARGE].filter((x) => x > 0)) (report['index'] as unknown[]).push(await indexBench(n));
  report['fingerprint'] = await fingerprintBench();
  if (ACCURACY > 0) {
    const set = await buildAccuracySet({
      seed: 1,
      benchmarkSize: ACCURACY,
      copiesPerTransform: Math.round(ACCURACY / 5),
      otherVendors: ACCURACY,
      skinTones: ACCURACY,
      otherEmoji: ACCURACY,
    });
    const dir = join(work, 'accuracy');
    const r = await evaluateAccuracy(set, dir);
    report['accuracy'] = {
      registered: set.benchmark.length,
      corpus: set.corpus.length,
      dedup: r.dedup,
      baseline: r.baseline,
      falsePositivesByKind: r.falsePositives.reduce<Record<string, number>>(
        (a, f) => ((a[f.kind] = (a[f.kind] ?? 0) + 1), a),
        {},
      ),
    };
    const fmt = (x: number | undefined) => (x === undefined ? '-' : x.toFixed(3));
    console.log('transform   dedup recall   pHash recall');
    for (const t of Object.keys(r.dedup.recall))
      console.log(
        `${t.padEnd(12)}${fmt(r.dedup.recall[t as 'crop']).padStart(12)}${fmt(r.baseline.recall[t as 'crop']).padStart(15)}`,
      );
    console.log(`precision   ${fmt(r.dedup.precision).padStart(12)}${fmt(r.baseline.precision).padStart(15)}`);
  }
  console.log(JSON.stringify(report));
} finally {
  rmSync(work, { recursive: true, force: true });
}
