import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mulberry32 } from '../../corpus/random.ts';
import { loadMihTable, MihIndex, storedHash } from '../../dedup/_mih.ts';
import { hamming, queryFingerprint } from '../../dedup/index.ts';
import { agreement, DEFAULT_THRESHOLDS, verified } from '../../dedup/_verify.ts';
import { tempDir } from '../helpers/corpus.ts';
import { asStored, emojiFile } from '../fixtures/transforms.ts';

function randomHash(random: () => number): bigint {
  return (BigInt(Math.floor(random() * 2 ** 32)) << 32n) | BigInt(Math.floor(random() * 2 ** 32));
}

/** `hash` with `bits` distinct random bits flipped. */
function flipBits(hash: bigint, bits: number, random: () => number): bigint {
  const chosen = new Set<number>();
  while (chosen.size < bits) chosen.add(Math.floor(random() * 64));
  let out = hash;
  for (const b of chosen) out ^= 1n << BigInt(b);
  return out;
}

describe('multi-index hash lookup in SQLite', () => {
  let dir: { path: string; remove: () => Promise<void> };
  let db: Database.Database;
  const stored: bigint[] = [];
  const random = mulberry32(42);

  beforeAll(async () => {
    dir = await tempDir('dedup-mih');
    db = new Database(join(dir.path, 'mih.sqlite'));
    db.exec(`CREATE TABLE h (id INTEGER PRIMARY KEY, hash INTEGER NOT NULL, p0 INTEGER, p1 INTEGER, p2 INTEGER, p3 INTEGER);
      CREATE INDEX h0 ON h(p0, hash); CREATE INDEX h1 ON h(p1, hash); CREATE INDEX h2 ON h(p2, hash); CREATE INDEX h3 ON h(p3, hash);`);
    const insert = db.prepare('INSERT INTO h (hash, p0, p1, p2, p3) VALUES (?, ?, ?, ?, ?)');
    const bases = Array.from({ length: 200 }, () => randomHash(random));
    db.transaction(() => {
      for (let i = 0; i < 3000; i++) {
        // Clusters around a few hundred centres, so many stored hashes are close to each other.
        const hash = flipBits(bases[i % bases.length] as bigint, Math.floor(random() * 20), random);
        stored.push(hash);
        const s = storedHash(hash);
        insert.run(s.hash, s.p0, s.p1, s.p2, s.p3);
      }
    })();
  });
  afterAll(async () => {
    db.close();
    await dir.remove();
  });

  it('finds exactly the stored hashes a linear scan finds, at every distance up to 16', () => {
    const index = new MihIndex<{ hash: bigint; id: bigint }>(db, 'h', ['id']);
    for (const maxDistance of [0, 3, 4, 7, 8, 12, 16]) {
      for (let q = 0; q < 40; q++) {
        const query = flipBits(stored[Math.floor(random() * stored.length)] as bigint, q % 12, random);
        const expected = stored
          .map((h, i) => ({ id: i + 1, d: hamming(query, h) }))
          .filter((x) => x.d <= maxDistance)
          .map((x) => x.id)
          .sort((a, b) => a - b);
        const found = index
          .lookup(query, maxDistance)
          .map((hit) => Number(hit.row.id))
          .sort((a, b) => a - b);
        expect(found).toEqual(expected);
      }
    }
  });

  it('answers from the in-memory mirror of the part columns exactly what the SQL lookup answers', () => {
    const sql = new MihIndex<{ hash: bigint; id: bigint }>(db, 'h', ['id']);
    const { table, rows } = loadMihTable<{ id: number }>(db, 'h', ['id']);
    expect(table.size).toBe(stored.length);
    for (const maxDistance of [0, 3, 4, 7, 8, 12, 16]) {
      for (let q = 0; q < 40; q++) {
        const query = flipBits(stored[Math.floor(random() * stored.length)] as bigint, q % 12, random);
        const expected = sql
          .lookup(query, maxDistance)
          .map((hit) => `${Number(hit.row.id)}:${hit.distance}`)
          .sort();
        const found = table
          .lookup(query, maxDistance)
          .map((hit) => `${(rows[hit.index] as { id: number }).id}:${hit.distance}`)
          .sort();
        expect(found).toEqual(expected);
        expect(found.length).toBe(stored.filter((h) => hamming(query, h) <= maxDistance).length);
      }
    }
  });

  it('finds the same hits for a batch of queries as for each query alone', () => {
    const { table } = loadMihTable<{ id: number }>(db, 'h', ['id']);
    const queries = Array.from({ length: 300 }, (_, q) =>
      flipBits(stored[Math.floor(random() * stored.length)] as bigint, q % 10, random),
    );
    const hi = Uint32Array.from(queries, (q) => Number(q >> 32n));
    const lo = Uint32Array.from(queries, (q) => Number(q & 0xffffffffn));
    const batch = table.lookupMany(hi, lo, 8);
    expect(batch).toHaveLength(300);
    expect(batch.flat().length).toBeGreaterThan(300);
    queries.forEach((q, i) => expect(batch[i]).toEqual(table.lookup(q, 8)));
  });

  it('reads only the rows selected, and each hit names its stored hash', () => {
    const { table, rows } = loadMihTable<{ id: number }>(db, 'h', ['id'], 'id <= ?', [500]);
    expect(table.size).toBe(500);
    const query = stored[123] as bigint;
    const hits = table.lookup(query, 0);
    expect(hits.map((h) => (rows[h.index] as { id: number }).id)).toContain(124);
    for (const hit of hits) expect(table.hashAt(hit.index)).toBe(query);
    expect(table.lookup(stored[2000] as bigint, 0).every((h) => (rows[h.index] as { id: number }).id <= 500)).toBe(
      true,
    );
  });
});

describe('fingerprints', () => {
  it('gives a mirrored copy the same hash as the original', async () => {
    const png = readFileSync(emojiFile('twitter', '1f44b.png'));
    const flipped = await sharp(png).flop().png().toBuffer();
    const a = (await queryFingerprint(png)).variants[0];
    const b = (await queryFingerprint(flipped)).variants[0];
    expect(a && b && hamming(a.hash, b.hash)).toBe(0);
  });

  it('trims a uniform frame before hashing, so a framed copy hashes like the original', async () => {
    const png = await sharp(readFileSync(emojiFile('twitter', '1f355.png')))
      .flatten({ background: '#ffffff' })
      .png()
      .toBuffer();
    const framed = await sharp(png)
      .extend({ top: 14, bottom: 18, left: 11, right: 20, background: '#2050c0' })
      .png()
      .toBuffer();
    const a = (await queryFingerprint(png)).variants[0];
    const b = (await queryFingerprint(framed)).variants[0];
    expect(a && b && hamming(a.hash, b.hash)).toBeLessThanOrEqual(2);
  });

  it('rejects a skin-tone variant whose mean colour passes, by the colour it adds, and accepts a JPEG copy', async () => {
    const png = readFileSync(emojiFile('twitter', '1f6b4.png'));
    const original = (await queryFingerprint(png)).variants[0];
    const jpeg = (
      await queryFingerprint(
        await asStored(await sharp(png).flatten({ background: '#ffffff' }).jpeg({ quality: 40 }).toBuffer()),
      )
    ).variants[0];
    const tone = (await queryFingerprint(await asStored(readFileSync(emojiFile('twitter', '1f6b4-1f3fd.png')))))
      .variants[0];
    if (!original || !jpeg || !tone) throw new Error('no fingerprint');
    const toneAgreement = agreement(tone.thumb, original.thumb);
    expect(toneAgreement.correlation).toBeGreaterThanOrEqual(DEFAULT_THRESHOLDS.minCorrelation);
    expect(toneAgreement.colourDifference).toBeLessThanOrEqual(DEFAULT_THRESHOLDS.maxColourDifference);
    expect(toneAgreement.uncoveredColour).toBeGreaterThan(DEFAULT_THRESHOLDS.maxUncoveredColour);
    expect(verified(toneAgreement)).toBe(false);
    expect(verified(agreement(jpeg.thumb, original.thumb))).toBe(true);
  });
});
