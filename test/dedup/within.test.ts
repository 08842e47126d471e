import { readFileSync } from 'node:fs';
import sharp, { type Sharp } from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { mulberry32 } from '../../corpus/random.ts';
import { hashParts, MihTable } from '../../dedup/_mih.ts';
import { agreement, DEFAULT_THRESHOLDS, largestBlob, STRONG_DELTA_E } from '../../dedup/_verify.ts';
import { clusterMembers, exactGroups, findClusters } from '../../dedup/_within.ts';
import { FINE, mirrorFine, queryFingerprint, THUMB_BYTES } from '../../dedup/fingerprint.ts';
import { emojiFile } from '../fixtures/transforms.ts';

const DRAWINGS = [
  '1f355.png',
  '1f600.png',
  '1f436.png',
  '1f680.png',
  '1f44b.png',
  '1f3e0.png',
  '1f697.png',
  '1f431.png',
];

async function thumbOf(image: Sharp): Promise<Uint8Array> {
  const print = await queryFingerprint(await image.jpeg({ quality: 90 }).toBuffer());
  return (print.variants[0] as { thumb: Uint8Array }).thumb;
}

const white = (file: string) => sharp(readFileSync(file)).flatten({ background: '#ffffff' });

function tableOf(hashes: bigint[]): MihTable {
  const hi = Uint32Array.from(hashes, (h) => Number(h >> 32n));
  const lo = Uint32Array.from(hashes, (h) => Number(h & 0xffffffffn));
  const parts = [0, 1, 2, 3].map((k) => Uint16Array.from(hashes, (h) => hashParts(h)[k] as number));
  return new MihTable(hi, lo, parts);
}

/** `hash` with the given bits flipped. */
const flip = (hash: bigint, ...bits: number[]) => bits.reduce((h, b) => h ^ (1n << BigInt(b)), hash);

describe('clusters within a corpus (findClusters)', () => {
  // Positions: three copies of drawing 0 (one a JPEG copy, one mirrored), two of drawing 1, a
  // look-alike of drawing 2 whose hash is close to drawing 1's, and drawings 3-5 alone.
  const random = mulberry32(3);
  const base = () => (BigInt(Math.floor(random() * 2 ** 32)) << 32n) | BigInt(Math.floor(random() * 2 ** 32));
  const [h0, h1, h3, h4, h5] = [base(), base(), base(), base(), base()] as bigint[];
  const hashes = [
    h3 as bigint,
    h0 as bigint,
    h1 as bigint,
    flip(h0 as bigint, 1, 40),
    h4 as bigint,
    flip(h1 as bigint, 7, 9, 33),
    flip(h1 as bigint, 2, 20, 50, 60),
    flip(h0 as bigint, 5, 6, 61),
    h5 as bigint,
  ];
  const expectedGroups = [[0], [1, 3, 7], [2, 5], [4], [6], [8]];
  let thumbs: Uint8Array[];

  beforeAll(async () => {
    const [d0, d1, d2, d3, d4, d5] = DRAWINGS.map((name) => emojiFile('twitter', name)) as string[];
    thumbs = [
      await thumbOf(white(d3 as string)),
      await thumbOf(white(d0 as string)),
      await thumbOf(white(d1 as string)),
      await thumbOf(white(d0 as string).resize(48, 48)),
      await thumbOf(white(d4 as string)),
      await thumbOf(white(d1 as string).resize(100, 100)),
      await thumbOf(white(d2 as string)),
      await thumbOf(white(d0 as string).flop()),
      await thumbOf(white(d5 as string)),
    ];
  });

  const groupsOf = (root: Int32Array) => {
    const groups = new Map<number, number[]>();
    root.forEach((r, i) => groups.set(r, [...(groups.get(r) ?? []), i]));
    return [...groups.values()];
  };

  it('joins the verified copies, whatever the block size, and reads thumbnails only for candidates', async () => {
    const results = [];
    for (const block of [1, 2, 4, 1 << 16]) {
      const read: number[] = [];
      const found = await findClusters(
        tableOf(hashes),
        (i) => {
          read.push(i);
          return thumbs[i] as Uint8Array;
        },
        { maxDistance: 8, thresholds: DEFAULT_THRESHOLDS, block },
      );
      expect(found).not.toBeNull();
      const { root, pairs } = found as NonNullable<typeof found>;
      expect(groupsOf(root)).toEqual(expectedGroups);
      // The look-alike (6) was a candidate of 2 and 5, compared and rejected; the lone drawings never read.
      expect(new Set(read)).toEqual(new Set([1, 2, 3, 5, 6, 7]));
      const list = Array.from({ length: pairs.count }, (_, k) => [pairs.a[k], pairs.b[k], pairs.distance[k]]);
      results.push(list.sort((x, y) => (x[0] as number) - (y[0] as number) || (x[1] as number) - (y[1] as number)));
    }
    expect(results[0]).toEqual([
      [1, 3, 2],
      [1, 7, 3],
      [2, 5, 3],
      [3, 7, 5],
    ]);
    for (const r of results) expect(r).toEqual(results[0]);
  });

  it('records which verified pair matched mirrored', async () => {
    const found = await findClusters(tableOf(hashes), (i) => thumbs[i] as Uint8Array, {
      maxDistance: 8,
      thresholds: DEFAULT_THRESHOLDS,
    });
    const { pairs } = found as NonNullable<typeof found>;
    const mirrored = Array.from({ length: pairs.count }, (_, k) => [pairs.a[k], pairs.b[k], pairs.mirrored[k]]).filter(
      (p) => p[2] === 1,
    );
    expect(mirrored.map((p) => [p[0], p[1]]).sort()).toEqual([
      [1, 7],
      [3, 7],
    ]);
  });

  it('stops before the next block when its signal is aborted, with nothing returned', async () => {
    const controller = new AbortController();
    const done: number[] = [];
    const found = await findClusters(tableOf(hashes), (i) => thumbs[i] as Uint8Array, {
      maxDistance: 8,
      thresholds: DEFAULT_THRESHOLDS,
      block: 3,
      signal: controller.signal,
      onProgress: (n) => {
        done.push(n);
        if (n >= 3) controller.abort();
      },
    });
    expect(found).toBeNull();
    expect(done).toEqual([0, 3]);
  });
});

describe('exactGroups', () => {
  it('joins the prints of one sha256 to the first of them by rowid; a print without one stays alone', () => {
    const rowids = Float64Array.from([3, 5, 9, 12, 20, 21]);
    const bySha = [
      [5, 'a'],
      [12, 'a'],
      [21, 'a'],
      [3, 'b'],
      [9, null],
      [20, null],
    ];
    expect([...exactGroups(rowids, bySha)]).toEqual([0, 1, 2, 1, 4, 1]);
  });

  it('refuses a rowid that is not among the prints read', () => {
    expect(() => exactGroups(Float64Array.from([1, 2]), [[7, 'a']])).toThrow(/print 7/);
  });
});

describe('clusterMembers', () => {
  it('lists the clusters of two or more by root, each in rising order; single prints are left out', () => {
    const root = Int32Array.from([0, 1, 0, 3, 1, 5, 0, 3]);
    const { members, start } = clusterMembers(root);
    expect([...start]).toEqual([0, 3, 5, 7]);
    expect([...members]).toEqual([0, 2, 6, 1, 4, 3, 7]);
  });

  it('has no cluster when every print is alone', () => {
    const { members, start } = clusterMembers(Int32Array.from([0, 1, 2]));
    expect([...start]).toEqual([0]);
    expect(members.length).toBe(0);
  });
});

/** The compact difference as first written: per cell the smallest ΔE (Math.hypot) to a neighbour, either way. */
function referenceCompact(query: Uint8Array, stored: Uint8Array, mirrored: boolean, gray: boolean): number {
  const a = query.subarray(THUMB_BYTES);
  const b = mirrored ? mirrorFine(stored.subarray(THUMB_BYTES)) : stored.subarray(THUMB_BYTES);
  const nearest = (p: Uint8Array, q: Uint8Array, x: number, y: number) => {
    let best = Infinity;
    for (let yy = Math.max(0, y - 1); yy <= Math.min(FINE - 1, y + 1); yy++)
      for (let xx = Math.max(0, x - 1); xx <= Math.min(FINE - 1, x + 1); xx++) {
        const i = (y * FINE + x) * 3;
        const j = (yy * FINE + xx) * 3;
        const dl = ((p[i] as number) - (q[j] as number)) / 2.55;
        const d = gray
          ? Math.abs(dl)
          : Math.hypot(dl, (p[i + 1] as number) - (q[j + 1] as number), (p[i + 2] as number) - (q[j + 2] as number));
        best = Math.min(best, d);
      }
    return best;
  };
  const mask = new Uint8Array(FINE * FINE);
  for (let y = 0; y < FINE; y++)
    for (let x = 0; x < FINE; x++)
      mask[y * FINE + x] = nearest(a, b, x, y) > STRONG_DELTA_E || nearest(b, a, x, y) > STRONG_DELTA_E ? 1 : 0;
  return largestBlob(mask, FINE);
}

describe('the compact difference of two fine grids', () => {
  it('is what the per-cell nearest-difference definition gives, on copies, look-alikes and other drawings', async () => {
    const thumbs: Uint8Array[] = [];
    for (const name of DRAWINGS.slice(0, 5)) {
      for (const vendor of ['twitter', 'google'] as const) {
        const file = emojiFile(vendor, name);
        thumbs.push(await thumbOf(white(file)));
        thumbs.push(await thumbOf(white(file).resize(40, 40)));
        thumbs.push(await thumbOf(white(file).grayscale()));
      }
    }
    const seen = new Set<number>();
    for (const q of thumbs) {
      for (const s of thumbs) {
        const a = agreement(q, s);
        expect(a.compactDifference).toBe(referenceCompact(q, s, a.mirrored, a.gray));
        seen.add(a.compactDifference);
      }
    }
    // Both kinds of pair were compared: equal grids (0) and grids with large differing blobs.
    expect(seen.has(0)).toBe(true);
    expect(Math.max(...seen)).toBeGreaterThan(20);
  });
});
