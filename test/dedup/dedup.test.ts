import { createHash } from 'node:crypto';
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hasColumn, openCorpus } from '../../corpus/manifest.ts';
import { ShardWriter } from '../../corpus/shards.ts';
import { SECOND_PASS } from '../../dedup/_refine.ts';
import { registerBenchmark, runDedup, WITHIN } from '../../dedup/index.ts';
import { lines, runCli } from '../helpers/cli.ts';
import { tempDir } from '../helpers/corpus.ts';
import { emojiFile } from '../fixtures/transforms.ts';

const REGISTERED = ['1f600.png', '1f355.png', '1f436.png', '1f680.png', '1f44b.png', '1f3e0.png'];
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const white = (file: string) => sharp(readFileSync(file)).flatten({ background: '#ffffff' });

interface Item {
  key: string;
  caption: string;
  jpg: Buffer;
  /** What dup_of must say after --against. */
  expected: string | null;
}

let work: { path: string; remove: () => Promise<void> };
let benchDb: string;
let items: Item[];

/** Writes `items` as a corpus of shards of `shardSize` samples. */
async function writeCorpus(dir: string, list: Item[], shardSize: number): Promise<void> {
  const corpus = openCorpus(dir, { create: true });
  const insert = corpus.db.prepare(`INSERT INTO pairs (key, url, caption, status) VALUES (?, ?, ?, 'pending')`);
  for (const item of list) insert.run(item.key, `http://x.test/${item.key}.jpg`, item.caption);
  const writer = await ShardWriter.open(corpus, shardSize);
  for (const item of list) {
    const { width = 0, height = 0 } = await sharp(item.jpg).metadata();
    await writer.add({
      jpg: item.jpg,
      meta: {
        key: item.key,
        url: `http://x.test/${item.key}.jpg`,
        page_url: null,
        caption: item.caption,
        width,
        height,
        original_width: width,
        original_height: height,
        sha256: sha256(item.jpg),
        bytes: item.jpg.length,
        http_status: 200,
      },
    });
  }
  await writer.flush();
  corpus.close();
}

function dupColumns(dir: string) {
  const corpus = openCorpus(dir);
  try {
    return corpus.db.prepare('SELECT key, dup_of, dup_kind, dup_fingerprint FROM pairs ORDER BY key').all() as Array<{
      key: string;
      dup_of: string | null;
      dup_kind: string | null;
      dup_fingerprint: string | null;
    }>;
  } finally {
    corpus.close();
  }
}

beforeAll(async () => {
  work = await tempDir('dedup-stage');
  const bench = join(work.path, 'bench');
  mkdirSync(bench);
  for (const name of REGISTERED) copyFileSync(emojiFile('twitter', name), join(bench, name));
  benchDb = join(work.path, 'registry.sqlite');
  const captions = join(work.path, 'captions.jsonl');
  (await import('node:fs')).writeFileSync(
    captions,
    JSON.stringify({ image: '1f3e0.png', caption: 'A House with a garden' }) + '\n',
  );
  await registerBenchmark({ name: 'emoji-test', images: bench, captions, benchDb });
  items = [
    {
      key: 'a-jpeg',
      caption: 'smile',
      jpg: await white(emojiFile('twitter', '1f600.png')).jpeg({ quality: 40 }).toBuffer(),
      expected: 'emoji-test/1f600.png',
    },
    {
      key: 'b-flip',
      caption: 'pizza',
      jpg: await white(emojiFile('twitter', '1f355.png')).flop().jpeg({ quality: 90 }).toBuffer(),
      expected: 'emoji-test/1f355.png',
    },
    {
      key: 'c-border',
      caption: 'dog',
      jpg: await sharp(await white(emojiFile('twitter', '1f436.png')).png().toBuffer())
        .extend({ top: 15, bottom: 12, left: 18, right: 10, background: '#803020' })
        .jpeg({ quality: 90 })
        .toBuffer(),
      expected: 'emoji-test/1f436.png',
    },
    {
      key: 'd-resize',
      caption: 'rocket',
      jpg: await white(emojiFile('twitter', '1f680.png')).resize(120, 120).jpeg({ quality: 90 }).toBuffer(),
      expected: 'emoji-test/1f680.png',
    },
    {
      key: 'e-exact',
      caption: 'wave',
      jpg: readFileSync(emojiFile('twitter', '1f44b.png')),
      expected: 'emoji-test/1f44b.png',
    },
    {
      key: 'f-caption',
      caption: '  a house WITH a garden ',
      jpg: await white(emojiFile('twitter', '1f333.png')).jpeg().toBuffer(),
      expected: 'emoji-test/1f3e0.png',
    },
    {
      key: 'g-google',
      caption: 'smile',
      jpg: await white(emojiFile('google', '1f600.png')).jpeg().toBuffer(),
      expected: null,
    },
    {
      key: 'h-apple',
      caption: 'pizza',
      jpg: await white(emojiFile('apple', '1f355.png')).jpeg().toBuffer(),
      expected: null,
    },
    {
      key: 'i-tone',
      caption: 'wave',
      jpg: await white(emojiFile('twitter', '1f44b-1f3ff.png')).jpeg().toBuffer(),
      expected: null,
    },
    {
      key: 'j-other',
      caption: 'cat',
      jpg: await white(emojiFile('twitter', '1f431.png')).jpeg().toBuffer(),
      expected: null,
    },
    {
      key: 'k-other',
      caption: 'car',
      jpg: await white(emojiFile('twitter', '1f697.png')).jpeg().toBuffer(),
      expected: null,
    },
  ];
});
afterAll(async () => {
  await work.remove();
});

describe('dedup --against', () => {
  it('flags copies, exact files and leaked captions with dup_of, and leaves other pictures alone', async () => {
    const dir = join(work.path, 'corpus-a');
    await writeCorpus(dir, items, 4);
    const result = await runDedup({ corpus: dir, against: ['emoji-test'], benchDb });
    expect(result.byBenchmark).toEqual({ 'emoji-test': { image: 4, sha256: 1, caption: 1 } });
    expect(result.flagged).toBe(6);
    expect(result.fingerprinted).toBe(items.length);
    const rows = dupColumns(dir);
    expect(rows.map((r) => [r.key, r.dup_of])).toEqual(items.map((item) => [item.key, item.expected]));
    expect(rows.find((r) => r.key === 'e-exact')).toMatchObject({ dup_kind: 'sha256', dup_fingerprint: 'sha256' });
    expect(rows.find((r) => r.key === 'f-caption')).toMatchObject({ dup_kind: 'caption', dup_fingerprint: 'caption' });
    expect(rows.find((r) => r.key === 'b-flip')?.dup_fingerprint).toMatch(/\+mirror$/);
  });

  it('gives the same result on a rerun and fingerprints nothing again', async () => {
    const dir = join(work.path, 'corpus-a');
    const before = dupColumns(dir);
    const again = await runDedup({ corpus: dir, against: ['emoji-test'], benchDb });
    expect(again.fingerprinted).toBe(0);
    expect(again.shardsMatched).toBe(0);
    expect(dupColumns(dir)).toEqual(before);
  });

  it('fingerprints copies of identical bytes once, in a shard and across shards, and stores each copy the same print', async () => {
    // Shards of 3: [a-jpeg, a copy, b-flip] [a copy, g-google, a-jpeg's bytes re-encoded] [b copy].
    const a = items[0] as Item;
    const b = items[1] as Item;
    const g = items.find((i) => i.key === 'g-google') as Item;
    const reencoded = await sharp(a.jpg).jpeg({ quality: 41 }).toBuffer();
    const list: Item[] = [
      a,
      { ...a, key: 'a-jpeg-copy1', caption: 'grin' },
      b,
      { ...a, key: 'a-jpeg-copy2', caption: 'happy' },
      g,
      { ...a, key: 'a-reencoded', jpg: reencoded },
      { ...b, key: 'b-flip-copy', caption: 'slice' },
    ];
    const dir = join(work.path, 'corpus-copies');
    await writeCorpus(dir, list, 3);
    const result = await runDedup({ corpus: dir, against: ['emoji-test'], benchDb });
    expect(result.fingerprinted).toBe(list.length);
    expect(result.copies).toBe(3);
    expect(dupColumns(dir).map((r) => [r.key, r.dup_of])).toEqual(
      list.map((i) => [i.key, i.expected] as const).sort((x, y) => (x[0] < y[0] ? -1 : 1)),
    );

    // Each copy's stored print is the one a run over that image alone computes.
    const alone = join(work.path, 'corpus-copies-alone');
    await writeCorpus(alone, [a, b], 3);
    expect((await runDedup({ corpus: alone, within: true })).copies).toBe(0);
    const printsOf = (d: string) => {
      const corpus = openCorpus(d);
      try {
        return new Map(
          (
            corpus.db.prepare('SELECT key, CAST(hash AS TEXT) AS hash, thumb FROM dedup_prints').all() as Array<{
              key: string;
              hash: string;
              thumb: Buffer;
            }>
          ).map((r) => [r.key, `${r.hash}:${sha256(r.thumb)}`]),
        );
      } finally {
        corpus.close();
      }
    };
    const copies = printsOf(dir);
    const originals = printsOf(alone);
    for (const [key, source] of [
      ['a-jpeg', 'a-jpeg'],
      ['a-jpeg-copy1', 'a-jpeg'],
      ['a-jpeg-copy2', 'a-jpeg'],
      ['b-flip', 'b-flip'],
      ['b-flip-copy', 'b-flip'],
    ]) {
      expect(copies.get(key as string)).toBe(originals.get(source as string));
    }
    // Re-encoded bytes are another image: fingerprinted, and close to the original but not its print.
    expect(copies.get('a-reencoded')).not.toBe(copies.get('a-jpeg'));
  });

  it('continues after an interruption and ends where an uninterrupted run ends', async () => {
    const dir = join(work.path, 'corpus-b');
    await writeCorpus(dir, items, 3);
    const controller = new AbortController();
    const first = await runDedup({
      corpus: dir,
      against: ['emoji-test'],
      benchDb,
      signal: controller.signal,
      onProgress: () => controller.abort(),
    });
    expect(first.interrupted).toBe(true);
    expect(first.shardsMatched).toBe(1);
    const second = await runDedup({ corpus: dir, against: ['emoji-test'], benchDb });
    expect(second.interrupted).toBe(false);
    expect(second.shardsMatched).toBe(3);
    expect(dupColumns(dir).map((r) => [r.key, r.dup_of])).toEqual(items.map((item) => [item.key, item.expected]));
  });
});

describe('dedup --against, second pass', () => {
  // Registered: a woman in a wheelchair, and a person with a white cane facing left and facing
  // right (nearly each other's mirror image). The thumbnails cannot tell a skin tone on the face
  // (~10 px at 64 px) from a copy, nor a flipped copy of one cane drawing from the other drawing.
  const names = ['1f469-200d-1f9bc.png', '1f9d1-200d-1f9af.png', '1f9d1-200d-1f9af-200d-27a1-fe0f.png'];
  let db: string;
  let list: Item[];
  beforeAll(async () => {
    const bench = join(work.path, 'bench-second');
    mkdirSync(bench);
    for (const name of names) copyFileSync(emojiFile('twitter', name), join(bench, name));
    db = join(work.path, 'registry-second.sqlite');
    await registerBenchmark({ name: 'second', images: bench, benchDb: db });
    list = [
      {
        key: 's-skin',
        caption: 'woman in wheelchair',
        jpg: await white(emojiFile('twitter', '1f469-1f3fc-200d-1f9bc.png')).jpeg({ quality: 95 }).toBuffer(),
        expected: null,
      },
      {
        key: 't-flip',
        caption: 'person with white cane',
        jpg: await white(emojiFile('twitter', '1f9d1-200d-1f9af.png')).flop().jpeg({ quality: 95 }).toBuffer(),
        expected: 'second/1f9d1-200d-1f9af.png',
      },
      {
        key: 'u-jpeg',
        caption: 'woman in wheelchair',
        jpg: await white(emojiFile('twitter', '1f469-200d-1f9bc.png')).jpeg({ quality: 40 }).toBuffer(),
        expected: 'second/1f469-200d-1f9bc.png',
      },
    ];
  });

  it('rejects a skin-tone variant and names the true source of a flip, where the first pass alone does neither', async () => {
    const first = join(work.path, 'corpus-first');
    await writeCorpus(first, list, 10);
    await runDedup({ corpus: first, against: ['second'], benchDb: db, secondPass: false });
    expect(dupColumns(first).map((r) => [r.key, r.dup_of])).toEqual([
      ['s-skin', 'second/1f469-200d-1f9bc.png'],
      ['t-flip', 'second/1f9d1-200d-1f9af-200d-27a1-fe0f.png'],
      ['u-jpeg', 'second/1f469-200d-1f9bc.png'],
    ]);

    const dir = join(work.path, 'corpus-second');
    await writeCorpus(dir, list, 10);
    const result = await runDedup({ corpus: dir, against: ['second'], benchDb: db });
    expect(dupColumns(dir).map((r) => [r.key, r.dup_of])).toEqual(list.map((item) => [item.key, item.expected]));
    expect(result.secondPass.rejected).toBe(1);
    expect(result.secondPass.unavailable).toBe(0);
    // Each image match records the second pass's figures; they are within its threshold.
    const corpus = openCorpus(dir);
    const figures = corpus.db
      .prepare('SELECT key, mean_difference, compact_difference FROM dedup_matches ORDER BY key')
      .all() as Array<{ key: string; mean_difference: number | null; compact_difference: number | null }>;
    corpus.close();
    expect(figures.map((f) => f.key)).toEqual(['t-flip', 'u-jpeg']);
    for (const f of figures) {
      expect(f.mean_difference).toBeGreaterThan(0);
      expect(f.compact_difference).toBeGreaterThanOrEqual(0);
      expect(f.compact_difference).toBeLessThanOrEqual(SECOND_PASS.maxCompactDifference);
    }
    // Without the second pass the same columns stay empty.
    const unrefined = openCorpus(first);
    const none = unrefined.db
      .prepare('SELECT COUNT(*) FROM dedup_matches WHERE mean_difference IS NOT NULL')
      .pluck()
      .get();
    unrefined.close();
    expect(none).toBe(0);
  });

  it("keeps the first pass's word when the registered images can no longer be read", async () => {
    const moved = join(work.path, 'registry-moved.sqlite');
    const bench = join(work.path, 'bench-moved');
    mkdirSync(bench);
    for (const name of names) copyFileSync(emojiFile('twitter', name), join(bench, name));
    await registerBenchmark({ name: 'moved', images: bench, benchDb: moved });
    (await import('node:fs')).rmSync(bench, { recursive: true });
    const dir = join(work.path, 'corpus-moved');
    await writeCorpus(dir, list.slice(0, 1), 10);
    const result = await runDedup({ corpus: dir, against: ['moved'], benchDb: moved });
    expect(result.secondPass).toEqual({ compared: 0, rejected: 0, unavailable: 1 });
    expect(dupColumns(dir).map((r) => r.dup_of)).toEqual(['moved/1f469-200d-1f9bc.png']);
  });
});

describe('dedup --within', () => {
  it('points the near-duplicates of a cluster to one representative, the largest image', async () => {
    const dir = join(work.path, 'corpus-c');
    const pizza = await white(emojiFile('twitter', '1f355.png')).png().toBuffer();
    const list: Item[] = [
      {
        key: 'p1',
        caption: 'pizza',
        jpg: await sharp(pizza).resize(200, 200).jpeg({ quality: 90 }).toBuffer(),
        expected: null,
      },
      { key: 'p2', caption: 'pizza', jpg: await sharp(pizza).jpeg({ quality: 50 }).toBuffer(), expected: 'p1' },
      { key: 'p3', caption: 'pizza', jpg: await sharp(pizza).flop().jpeg({ quality: 80 }).toBuffer(), expected: 'p1' },
      {
        key: 'q1',
        caption: 'cat',
        jpg: await white(emojiFile('twitter', '1f431.png')).jpeg().toBuffer(),
        expected: null,
      },
      {
        key: 'q2',
        caption: 'cat',
        jpg: await white(emojiFile('google', '1f431.png')).jpeg().toBuffer(),
        expected: null,
      },
      {
        key: 'r1',
        caption: 'car',
        jpg: await white(emojiFile('twitter', '1f697.png')).resize(100, 100).jpeg().toBuffer(),
        expected: null,
      },
      {
        key: 'r2',
        caption: 'car',
        jpg: await white(emojiFile('twitter', '1f697.png')).grayscale().jpeg().toBuffer(),
        expected: 'r1',
      },
    ];
    await writeCorpus(dir, list, 3);
    const result = await runDedup({ corpus: dir, within: true });
    expect(result.within).toEqual({ clusters: 2, duplicates: 3 });
    const rows = dupColumns(dir);
    expect(rows.map((r) => [r.key, r.dup_of])).toEqual(list.map((item) => [item.key, item.expected]));
    expect(rows.filter((r) => r.dup_of !== null).every((r) => r.dup_kind === 'within')).toBe(true);
  });

  it('joins copies of identical bytes without comparing them, with the links they would have had', async () => {
    const dir = join(work.path, 'corpus-x');
    const pizza = await white(emojiFile('twitter', '1f355.png')).png().toBuffer();
    const big = await sharp(pizza).resize(200, 200).jpeg({ quality: 90 }).toBuffer();
    await writeCorpus(
      dir,
      [
        { key: 'p3', caption: 'a pizza', jpg: big, expected: 'p1' },
        { key: 'p1', caption: 'pizza', jpg: big, expected: null },
        { key: 'p4', caption: 'pizza', jpg: await sharp(pizza).jpeg({ quality: 50 }).toBuffer(), expected: 'p1' },
        { key: 'p2', caption: 'pizza slice', jpg: big, expected: 'p1' },
        {
          key: 'q1',
          caption: 'cat',
          jpg: await white(emojiFile('twitter', '1f431.png')).jpeg().toBuffer(),
          expected: null,
        },
      ],
      2,
    );
    const result = await runDedup({ corpus: dir, within: true });
    expect(result.within).toEqual({ clusters: 1, duplicates: 3 });
    const corpus = openCorpus(dir);
    const rows = corpus.db
      .prepare('SELECT key, dup_of, dup_distance, dup_fingerprint FROM pairs ORDER BY key')
      .all() as Array<{
      key: string;
      dup_of: string | null;
      dup_distance: number | null;
      dup_fingerprint: string | null;
    }>;
    corpus.close();
    expect(rows.map((r) => [r.key, r.dup_of])).toEqual([
      ['p1', null],
      ['p2', 'p1'],
      ['p3', 'p1'],
      ['p4', 'p1'],
      ['q1', null],
    ]);
    // The copies of p1's bytes: distance 0, their thumbnails the same way round.
    for (const key of ['p2', 'p3']) {
      expect(rows.find((r) => r.key === key)).toMatchObject({ dup_distance: 0, dup_fingerprint: 'base' });
    }
    // The re-encoded copy: its verified pair with p1's bytes.
    const p4 = rows.find((r) => r.key === 'p4');
    expect(p4?.dup_fingerprint).toBe('base');
    expect(p4?.dup_distance).toBeGreaterThanOrEqual(0);
  });

  it('replaces the previous result whole, and writes nothing when stopped', async () => {
    const dir = join(work.path, 'corpus-w');
    const pizza = await white(emojiFile('twitter', '1f355.png')).png().toBuffer();
    const car = white(emojiFile('twitter', '1f697.png'));
    await writeCorpus(
      dir,
      [
        { key: 'p1', caption: 'pizza', jpg: await sharp(pizza).resize(200, 200).jpeg().toBuffer(), expected: null },
        { key: 'p2', caption: 'pizza', jpg: await sharp(pizza).jpeg({ quality: 50 }).toBuffer(), expected: 'p1' },
        { key: 'r1', caption: 'car', jpg: await car.clone().jpeg().toBuffer(), expected: null },
      ],
      2,
    );
    expect((await runDedup({ corpus: dir, within: true })).within).toEqual({ clusters: 1, duplicates: 1 });
    const clean = dupColumns(dir);
    // A stale link, as a run over an earlier state of the corpus would have left it.
    const corpus = openCorpus(dir);
    corpus.db
      .prepare(
        `INSERT INTO dedup_matches (key, benchmark, image_id, kind, fingerprint) VALUES ('r1', ?, 'p1', 'within', 'base')`,
      )
      .run(WITHIN);
    corpus.db
      .prepare(`UPDATE pairs SET dup_of = 'p1', dup_kind = 'within', dup_fingerprint = 'base' WHERE key = 'r1'`)
      .run();
    corpus.close();
    const stale = dupColumns(dir);

    const controller = new AbortController();
    const stopped = await runDedup({
      corpus: dir,
      within: true,
      signal: controller.signal,
      onProgress: (p) => {
        if (p.phase === 'within') controller.abort();
      },
    });
    expect(stopped.interrupted).toBe(true);
    expect(stopped.within).toBeNull();
    expect(dupColumns(dir)).toEqual(stale);

    const again = await runDedup({ corpus: dir, within: true });
    expect(again.within).toEqual({ clusters: 1, duplicates: 1 });
    expect(dupColumns(dir)).toEqual(clean);
    expect(clean.map((r) => [r.key, r.dup_of])).toEqual([
      ['p1', null],
      ['p2', 'p1'],
      ['r1', null],
    ]);
  });
});

describe('altforge dedup (CLI)', () => {
  it('refuses an unknown benchmark with one line and exit code 2, leaving the manifest untouched', async () => {
    const dir = join(work.path, 'corpus-d');
    await writeCorpus(dir, items.slice(0, 2), 10);
    const res = await runCli(['dedup', '--corpus', dir, '--against', 'nope', '--bench-db', benchDb]);
    expect(res.code).toBe(2);
    expect(lines(res.stderr)).toEqual([expect.stringMatching(/Unknown benchmark 'nope'.*\[ERR_UNKNOWN_BENCHMARK\]/)]);
    const corpus = openCorpus(dir);
    expect(hasColumn(corpus.db, 'pairs', 'dup_of')).toBe(false);
    corpus.close();
  });

  it('refuses a benchmark whose registration was interrupted, with one line and exit code 2', async () => {
    const partial = join(work.path, 'registry-partial.sqlite');
    copyFileSync(benchDb, partial);
    // What an interrupted bench add leaves: the set recorded, not marked complete.
    const db = new Database(partial);
    db.prepare(`UPDATE benchmarks SET complete = 0 WHERE name = 'emoji-test'`).run();
    db.close();
    const dir = join(work.path, 'corpus-partial');
    await writeCorpus(dir, items.slice(0, 2), 10);
    const res = await runCli(['dedup', '--corpus', dir, '--against', 'emoji-test', '--bench-db', partial]);
    expect(res.code).toBe(2);
    expect(lines(res.stderr)).toEqual([
      "altforge: Benchmark 'emoji-test' is only partly registered: run altforge bench add again to finish it [ERR_BENCHMARK_INCOMPLETE]",
    ]);
    const corpus = openCorpus(dir);
    expect(hasColumn(corpus.db, 'pairs', 'dup_of')).toBe(false);
    corpus.close();
  });

  it('refuses a directory without a manifest with exit code 2', async () => {
    const res = await runCli([
      'dedup',
      '--corpus',
      join(work.path, 'bench'),
      '--against',
      'emoji-test',
      '--bench-db',
      benchDb,
    ]);
    expect(res.code).toBe(2);
    expect(lines(res.stderr)).toEqual([expect.stringContaining('[ERR_CORPUS_NOT_FOUND]')]);
  });

  it('prints one summary line with what it flagged', async () => {
    const dir = join(work.path, 'corpus-d');
    const res = await runCli(['dedup', '--corpus', dir, '--against', 'emoji-test', '--bench-db', benchDb]);
    expect(res.code).toBe(0);
    expect(lines(res.stderr)).toEqual([
      expect.stringMatching(
        /^dedup: 2 pairs, 2 fingerprinted now; emoji-test: 2 near-duplicates, 0 exact, 0 caption leaks; 2 pairs flagged \(dup_of\);/,
      ),
    ]);
  });
});
