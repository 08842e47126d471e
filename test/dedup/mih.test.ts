import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mulberry32 } from '../../corpus/random.ts';
import { loadMihTable, MihIndex, storedHash } from '../../dedup/_mih.ts';
import { hamming, queryFingerprint, registeredFingerprint } from '../../dedup/index.ts';
import { contentBox, decodePixels, type Pixels } from '../../dedup/fingerprint.ts';
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

  it('rejects a skin tone on a tiny face by the compact colour difference of the fine grids, and accepts a JPEG q40 copy', async () => {
    const png = readFileSync(emojiFile('twitter', '1f574-fe0f.png'));
    const original = (await queryFingerprint(png)).variants[0];
    const jpeg = (
      await queryFingerprint(
        await asStored(await sharp(png).flatten({ background: '#ffffff' }).jpeg({ quality: 40 }).toBuffer()),
      )
    ).variants[0];
    const tone = (await queryFingerprint(await asStored(readFileSync(emojiFile('twitter', '1f574-1f3fd.png')))))
      .variants[0];
    if (!original || !jpeg || !tone) throw new Error('no fingerprint');
    const toneAgreement = agreement(tone.thumb, original.thumb);
    expect(toneAgreement.correlation).toBeGreaterThanOrEqual(DEFAULT_THRESHOLDS.minCorrelation);
    expect(toneAgreement.colourDifference).toBeLessThanOrEqual(DEFAULT_THRESHOLDS.maxColourDifference);
    expect(toneAgreement.compactDifference).toBeGreaterThan(DEFAULT_THRESHOLDS.maxCompactDifference);
    expect(verified(toneAgreement)).toBe(false);
    const jpegAgreement = agreement(jpeg.thumb, original.thumb);
    expect(jpegAgreement.compactDifference).toBe(0);
    expect(verified(jpegAgreement)).toBe(true);
  });

  it('checks a registered crop against the fine grid of its base variant', async () => {
    const png = readFileSync(emojiFile('twitter', '1f574-fe0f.png'));
    const registered = await registeredFingerprint(png);
    const base = registered.variants.find((v) => v.name === 'base');
    const crop = registered.variants.find((v) => v.name === 'crop');
    const tone = (await queryFingerprint(await asStored(readFileSync(emojiFile('twitter', '1f574-1f3fd.png')))))
      .variants[0];
    if (!base || !crop || !tone) throw new Error('no fingerprint');
    expect(agreement(tone.thumb, crop.thumb, base.thumb).compactDifference).toBeGreaterThan(0);
    // Without its base, a crop has no fine grid to compare.
    expect(agreement(tone.thumb, crop.thumb).compactDifference).toBe(0);
  });

  it('keeps a flat-coloured shape when trimming: the box is the drawing, not a sliver of it', async () => {
    const p = await decodePixels(readFileSync(emojiFile('twitter', '1f53b.png')));
    let [x0, y0, x1, y1] = [p.width, p.height, -1, -1];
    for (let y = 0; y < p.height; y++) {
      for (let x = 0; x < p.width; x++) {
        const i = (y * p.width + x) * 3;
        const luma =
          0.299 * (p.data[i] as number) + 0.587 * (p.data[i + 1] as number) + 0.114 * (p.data[i + 2] as number);
        if (luma < 235) [x0, y0, x1, y1] = [Math.min(x0, x), Math.min(y0, y), Math.max(x1, x), Math.max(y1, y)];
      }
    }
    const box = contentBox(p);
    expect(Math.abs(box.x - x0)).toBeLessThanOrEqual(1);
    expect(Math.abs(box.y - y0)).toBeLessThanOrEqual(1);
    expect(Math.abs(box.x + box.w - 1 - x1)).toBeLessThanOrEqual(1);
    expect(Math.abs(box.y + box.h - 1 - y1)).toBeLessThanOrEqual(1);
  });

  // Frames as the accuracy suite draws them (seeds 1 and 2): the original peels the flat edge of
  // its drawing (water, a body, a window frame) as its first band; the framed copy peels the frame
  // first and, since fp5, that flat edge as its second band.
  it.each([
    ['1f3ca-200d-2642-fe0f.png', { r: 166, g: 196, b: 72 }, [11, 19, 12, 19]],
    ['1f473-200d-2640-fe0f.png', { r: 226, g: 196, b: 86 }, [14, 20, 11, 18]],
    ['1fa9f.png', { r: 124, g: 215, b: 14 }, [16, 16, 17, 18]],
    ['1f93d.png', { r: 227, g: 225, b: 46 }, [13, 20, 13, 16]],
  ] as const)('trims a framed JPEG copy of %s to the box of its original', async (image, colour, sides) => {
    const [top, right, bottom, left] = sides;
    const png = readFileSync(emojiFile('twitter', image));
    const original = contentBox(await decodePixels(png));
    const flat = await sharp(png).flatten({ background: '#ffffff' }).png().toBuffer();
    const framed = await sharp(flat)
      .extend({ top, right, bottom, left, background: { ...colour, alpha: 1 } })
      .png()
      .toBuffer();
    const copy = contentBox(await decodePixels(await asStored(framed)));
    for (const [a, b] of [
      [copy.x - left, original.x],
      [copy.y - top, original.y],
      [copy.x - left + copy.w, original.x + original.w],
      [copy.y - top + copy.h, original.y + original.h],
    ] as const)
      expect(Math.abs(a - b)).toBeLessThanOrEqual(1);
  });

  it('peels one or two lines blended between a frame and a flat band, as a JPEG leaves them, but not a band of their own', () => {
    /** A 2-px checkerboard inside flat bands of the given lumas and widths, outermost first. */
    const image = (bands: Array<[number, number]>): Pixels => {
      const inset = bands.reduce((n, [, width]) => n + width, 0);
      const side = 2 * inset + 16;
      const data = new Uint8Array(side * side * 3);
      for (let y = 0; y < side; y++) {
        for (let x = 0; x < side; x++) {
          const ring = Math.min(x, y, side - 1 - x, side - 1 - y);
          let luma = (Math.floor((x - inset) / 2) + Math.floor((y - inset) / 2)) % 2 === 0 ? 0 : 255;
          for (let b = 0, at = 0; b < bands.length; at += (bands[b] as [number, number])[1], b++) {
            const [l, width] = bands[b] as [number, number];
            if (ring >= at && ring < at + width) luma = l;
          }
          data.fill(luma, (y * side + x) * 3, (y * side + x) * 3 + 3);
        }
      }
      return { data, width: side, height: side };
    };
    const checker = (inset: number) => ({ x: inset, y: inset, w: 16, h: 16 });
    // The original: a flat band of 180 around the drawing; the copy: a frame of 60 and the blend.
    expect(contentBox(image([[180, 3]]))).toEqual(checker(3));
    expect(
      contentBox(
        image([
          [60, 5],
          [120, 1],
          [180, 3],
        ]),
      ),
    ).toEqual(checker(9));
    expect(
      contentBox(
        image([
          [60, 5],
          [100, 1],
          [140, 1],
          [180, 3],
        ]),
      ),
    ).toEqual(checker(10));
    // Two lines of one colour are a band of their own, not a blend: the 180 band after it is drawing.
    expect(
      contentBox(
        image([
          [60, 5],
          [120, 2],
          [180, 3],
        ]),
      ),
    ).toEqual({ x: 7, y: 7, w: 22, h: 22 });
  });
});
