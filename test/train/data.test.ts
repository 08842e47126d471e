import Database from 'better-sqlite3';
import { cpSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openCorpus } from '../../corpus/manifest.ts';
import { STORED_REASONS } from '../../corpus/filter-reason.ts';
import { DecisionBlocks } from '../../filter/_decision-blocks.ts';
import { FILTER_MIGRATIONS } from '../../filter/index.ts';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import sharp from 'sharp';
import { buildImageStore, decodeSquare, epochOrder, listPairs, sampleCrop, toModelInput } from '../../train/data.ts';
import { shardPaths } from '../../corpus/shards.ts';
import { tempDir } from '../helpers/corpus.ts';
import { makeEmojiCorpus, type CorpusPair } from './_corpus.ts';

let work: { path: string; remove: () => Promise<void> };
let corpusA: string;
let corpusB: string;
let pairsA: CorpusPair[];

beforeAll(async () => {
  work = await tempDir('train-data');
  corpusA = join(work.path, 'a');
  corpusB = join(work.path, 'b');
  pairsA = await makeEmojiCorpus(corpusA, { count: 12, shardSize: 5 });
  await makeEmojiCorpus(corpusB, { count: 4, offset: 20, shardSize: 10 });
  // What the filter and dedup stages will add: one pair rejected, one duplicate, one failed crawl.
  const db = new Database(join(corpusA, 'manifest.sqlite'));
  db.exec(`ALTER TABLE pairs ADD COLUMN filter_reason TEXT; ALTER TABLE pairs ADD COLUMN dup_of TEXT;`);
  db.prepare(`UPDATE pairs SET filter_reason = 'too_short' WHERE key = ?`).run(pairsA[0]?.key);
  db.prepare(`UPDATE pairs SET dup_of = ? WHERE key = ?`).run(pairsA[2]?.key, pairsA[1]?.key);
  db.prepare(`INSERT INTO pairs (key, url, caption, status) VALUES ('f', 'http://x/f.jpg', 'gone', 'http_404')`).run();
  db.close();
});

afterAll(async () => {
  await work.remove();
});

describe('training data', () => {
  test('lists only kept pairs: ok, not filtered, not duplicates', () => {
    const { pairs, counts } = listPairs({ corpus: [corpusA] });
    expect(pairs.map((p) => p.key).sort()).toEqual(
      pairsA
        .slice(2)
        .map((p) => p.key)
        .sort(),
    );
    expect(counts).toEqual([{ ok: 12, filtered: 1, duplicates: 1, used: 10 }]);
    expect(listPairs({ corpus: [corpusA], includeFiltered: true, includeDuplicates: true }).pairs).toHaveLength(12);
  });

  test("leaves out the pairs the filter rejected in its decision blocks (the filter's current layout)", () => {
    const dir = join(work.path, 'decided');
    cpSync(corpusB, dir, { recursive: true });
    const corpus = openCorpus(dir, { migrations: FILTER_MIGRATIONS });
    const keys = corpus.db.prepare('SELECT key FROM pairs ORDER BY key').pluck().all() as string[];
    const blocks = new DecisionBlocks(corpus.db);
    blocks.setStored(
      corpus.db.prepare('SELECT rowid FROM pairs WHERE key = ?').pluck().get(keys[1]) as number,
      STORED_REASONS.indexOf('rare_token') + 1,
    );
    blocks.flush();
    corpus.close();
    const { pairs, counts } = listPairs({ corpus: [dir] });
    expect(pairs.map((p) => p.key)).toEqual(keys.filter((_k, i) => i !== 1));
    expect(counts).toEqual([{ ok: 4, filtered: 1, duplicates: 0, used: 3 }]);
  });

  test('reads several corpora, prefixing ids with the corpus index, in a stable order', () => {
    const { pairs } = listPairs({ corpus: [corpusA, corpusB] });
    expect(pairs).toHaveLength(14);
    expect(pairs.filter((p) => p.id.startsWith('1:'))).toHaveLength(4);
    expect(listPairs({ corpus: [corpusA, corpusB] }).pairs).toEqual(pairs);
  });

  test('orders pairs by key whatever shard they landed in (a crawl fills shards in download order)', () => {
    const dir = join(work.path, 'reshuffled');
    cpSync(corpusA, dir, { recursive: true });
    const before = listPairs({ corpus: [dir] }).pairs.map((p) => p.key);
    expect(before).toEqual([...before].sort());
    // The same pairs, the shard numbers of the first and last swapped (as another crawl could have written them).
    const db = new Database(join(dir, 'manifest.sqlite'));
    db.prepare('UPDATE pairs SET shard = 1 - shard WHERE shard IS NOT NULL AND shard <= 1').run();
    db.close();
    expect(listPairs({ corpus: [dir] }).pairs.map((p) => p.key)).toEqual(before);
  });

  test("refuses a corpus given twice, however it is spelt: its pairs would be each other's negatives", () => {
    const link = join(work.path, 'link-to-a');
    symlinkSync(corpusA, link);
    expect(() => listPairs({ corpus: [corpusA, corpusB, corpusA] })).toThrow(
      expect.objectContaining({
        code: 'ERR_DUPLICATE_CORPUS',
        message: `Option 'train.corpus': corpus '${corpusA}' is given twice`,
      }),
    );
    for (const again of [`${corpusA}/`, link]) {
      expect(() => listPairs({ corpus: [corpusA, again] })).toThrow(
        expect.objectContaining({
          code: 'ERR_DUPLICATE_CORPUS',
          message: `Option 'train.corpus': '${corpusA}' and '${again}' are one corpus, given twice`,
        }),
      );
    }
  });

  test('names the manifest that is not an SQLite database', () => {
    const bad = join(work.path, 'text-manifest');
    mkdirSync(bad);
    writeFileSync(join(bad, 'manifest.sqlite'), 'not a database\n');
    expect(() => listPairs({ corpus: [corpusA, bad] })).toThrow(
      expect.objectContaining({
        code: 'ERR_NOT_A_DATABASE',
        message: `Corpus manifest '${join(bad, 'manifest.sqlite')}' is not an SQLite database (file is not a database)`,
      }),
    );
  });

  test('refuses a directory without a manifest', () => {
    expect(() => listPairs({ corpus: [join(work.path, 'nothing')] })).toThrow(
      expect.objectContaining({ code: 'ERR_CORPUS_NOT_FOUND' }),
    );
  });

  test('decodes every image from the shards into the cache, in memory or spilled to a file', async () => {
    const { pairs } = listPairs({ corpus: [corpusA] });
    const inMemory = await buildImageStore({ corpus: [corpusA] }, pairs, { baseSize: 16, spillDir: work.path });
    const spilled = await buildImageStore({ corpus: [corpusA] }, pairs, {
      baseSize: 16,
      spillDir: work.path,
      memoryLimitBytes: 100,
    });
    expect(inMemory.missing).toEqual([]);
    expect(spilled.missing).toEqual([]);
    const order = [3, 0, 9];
    const a = await inMemory.store.read(order);
    const b = await spilled.store.read(order);
    expect(a.length).toBe(3 * 16 * 16 * 3);
    expect(Buffer.from(b).equals(Buffer.from(a))).toBe(true);
    // The cached image of a pair is its shard image decoded the same way.
    const pair = pairsA.find((p) => p.key === pairs[9]?.key) as CorpusPair;
    const direct = await decodeSquare(
      await sharp(pair.emoji.file).resize(48, 48).flatten({ background: '#fff' }).jpeg({ quality: 90 }).toBuffer(),
      16,
    );
    expect(Buffer.from(a.subarray(2 * 768, 3 * 768)).equals(direct)).toBe(true);
    await inMemory.store.close();
    await spilled.store.close();
  });

  test('reports pairs whose sample is missing from its shard', async () => {
    const { pairs } = listPairs({ corpus: [corpusA] });
    const ghost = { ...pairs[0]!, key: 'not-in-any-shard', id: 'not-in-any-shard' };
    const { missing, store } = await buildImageStore({ corpus: [corpusA] }, [...pairs, ghost], {
      baseSize: 8,
      spillDir: work.path,
    });
    expect(missing).toEqual([pairs.length]);
    await store.close();
  });

  test('reads a pair left in its shard (StoredImage) as the corpus would, dropping a missing member or tar', async () => {
    const { pairs } = listPairs({ corpus: [corpusA] });
    const fromCorpus = await buildImageStore({ corpus: [corpusA] }, pairs, { baseSize: 16, spillDir: work.path });
    const stored = pairs.map((p) => ({
      id: p.id,
      caption: p.caption,
      image: { tar: shardPaths(corpusA, p.shard as number).tar, member: `${p.key}.jpg` },
    }));
    const ghosts = [
      { id: 'no-member', caption: 'x', image: { tar: stored[0]!.image.tar, member: 'not-in-any-shard.jpg' } },
      { id: 'no-tar', caption: 'x', image: { tar: join(work.path, 'nowhere.tar'), member: stored[0]!.image.member } },
    ];
    const source = { pairs: [...stored, ...ghosts] };
    const fromStored = await buildImageStore(source, listPairs(source).pairs, { baseSize: 16, spillDir: work.path });
    expect(fromCorpus.missing).toEqual([]);
    expect(fromStored.missing).toEqual([pairs.length, pairs.length + 1]);
    const all = pairs.map((_p, i) => i);
    expect(Buffer.from(await fromStored.store.read(all)).equals(Buffer.from(await fromCorpus.store.read(all)))).toBe(
      true,
    );
    await fromCorpus.store.close();
    await fromStored.store.close();
  });

  test('decodes in-memory raw pixels, grey or RGBA, to RGB on white', async () => {
    const grey = { pixels: new Uint8Array(4).fill(100), width: 2, height: 2, channels: 1 as const };
    const clear = { pixels: new Uint8Array(16), width: 2, height: 2, channels: 4 as const };
    expect(Array.from(await decodeSquare(grey, 2))).toEqual(Array(12).fill(100));
    expect(Array.from(await decodeSquare(clear, 2))).toEqual(Array(12).fill(255));
  });

  test('copies the whole image unchanged without augmentation, and mirrors it with a flip', () => {
    const base = 4;
    const src = Uint8Array.from({ length: base * base * 3 }, (_, i) => i * 5);
    const plain = toModelInput(src, 1, base, base, null, null);
    expect(plain).toEqual(Float32Array.from(src, (v) => v / 255));
    const flipped = new Float32Array(base * base * 3);
    sampleCrop(src, 0, base, { x: 0, y: 0, w: base, h: base }, true, flipped, 0, base);
    // Pixel (row 1, col 0) of the flipped image is pixel (row 1, col 3) of the source.
    expect(flipped.subarray(12, 15)).toEqual(Float32Array.from(src.subarray(21, 24), (v) => v / 255));
  });

  test('shuffles each epoch differently and each seed reproducibly', () => {
    const e0 = epochOrder(50, 1, 0);
    expect([...e0].sort((a, b) => a - b)).toEqual(Array.from({ length: 50 }, (_, i) => i));
    expect(epochOrder(50, 1, 0)).toEqual(e0);
    expect(epochOrder(50, 1, 1)).not.toEqual(e0);
    expect(epochOrder(50, 2, 0)).not.toEqual(e0);
  });
});
