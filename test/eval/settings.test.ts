import Database from 'better-sqlite3';
import { copyFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { openRegistry } from '../../corpus/registry.ts';
import { readShardEntry } from '../../corpus/shards.ts';
import { corpusSetting, emoji as emojiSetting } from '../../eval/_settings.ts';
import type { EvalBenchmark } from '../../eval/zero-shot.ts';
import type { StoredImage } from '../../train/data.ts';
import { registerBenchmark } from '../../dedup/index.ts';
import { emojiFile } from '../fixtures/transforms.ts';
import { tempDir } from '../helpers/corpus.ts';
import { emojiJpeg, makeEmojiCorpus, type CorpusPair } from '../train/_corpus.ts';

let work: { path: string; remove: () => Promise<void> };
let corpus: string;
let made: CorpusPair[];

beforeAll(async () => {
  work = await tempDir('eval-settings');
  corpus = join(work.path, 'corpus');
  // Pairs 3 and 4 carry one caption, written two ways: one concept for the noise injection.
  made = await makeEmojiCorpus(corpus, {
    count: 6,
    shardSize: 4,
    caption: (emoji, i) => (i === 3 ? 'Ｒｅｄ  HEART ' : i === 4 ? 'red heart' : emoji.name),
  });
  openRegistry(join(work.path, 'bench.sqlite'), { create: true }).close();
  const db = new Database(join(corpus, 'manifest.sqlite'));
  db.exec('ALTER TABLE pairs ADD COLUMN dup_of TEXT');
  db.prepare('UPDATE pairs SET dup_of = ? WHERE key = ?').run(made[0]?.key, made[1]?.key);
  // Listed as downloaded into shard 0, but its sample was never written there.
  db.prepare(
    `INSERT INTO pairs (key, url, caption, status, shard) VALUES ('zz-lost', 'http://x/lost.jpg', 'lost', 'ok', 0)`,
  ).run();
  db.close();
});

afterAll(async () => {
  await work.remove();
});

describe('a corpus as a compare setting', () => {
  test('lists its kept pairs with their images left in the shards, leaving out duplicates and lost samples', async () => {
    const data = await corpusSetting({ corpus, benchmark: [], benchDb: join(work.path, 'bench.sqlite') });
    try {
      const kept = made.filter((_p, i) => i !== 1);
      expect(data.pairs.map((p) => p.id).sort()).toEqual(kept.map((p) => p.key).sort());
      for (const pair of data.pairs) {
        const image = pair.image as StoredImage;
        expect(image.member).toBe(`${pair.id}.jpg`);
        const emoji = (made.find((p) => p.key === pair.id) as CorpusPair).emoji;
        expect(readShardEntry(image.tar, image.member)?.equals(await emojiJpeg(emoji))).toBe(true);
      }
      // Captions as training compares them (NFKC, case, spaces).
      const group = (key: string | undefined) => data.groups[data.pairs.findIndex((p) => p.id === key)];
      expect(group(made[3]?.key)).toBe('red heart');
      expect(group(made[4]?.key)).toBe('red heart');
      expect(new Set(data.groups).size).toBe(data.pairs.length - 1);
    } finally {
      data.close?.();
    }
  });

  test('says in its description when a benchmark is cut to its first --test-images', async () => {
    const images = join(work.path, 'five');
    mkdirSync(images);
    for (const name of ['1f600.png', '1f355.png', '1f436.png', '1f680.png', '1f44b.png'])
      copyFileSync(emojiFile('twitter', name), join(images, name));
    const benchDb = join(work.path, 'bench-five.sqlite');
    await registerBenchmark({ name: 'five', images, benchDb });
    const describedAt = async (limit: number) => {
      const data = await corpusSetting({ corpus, benchmark: ['five'], benchDb, limit });
      data.close?.();
      return data.description;
    };
    expect(await describedAt(3)).toBe(
      `corpus ${corpus}: 5 kept pairs, benchmarks five (its first 3 of 5 images: --test-images)`,
    );
    expect(await describedAt(500)).toBe(`corpus ${corpus}: 5 kept pairs, benchmarks five`);
  });
});

describe('the emoji setting', () => {
  test('draws each concept once per training vendor, and tests on the same concepts by another vendor', () => {
    const data = emojiSetting({ trainPairs: 9, testImages: 2, seed: 1, trainVendors: ['google', 'apple', 'facebook'] });
    expect(data.pairs).toHaveLength(9);
    for (let c = 0; c < 3; c++) {
      const three = data.pairs.slice(3 * c, 3 * c + 3);
      const file = three[0]?.id.slice('google/'.length);
      expect(three.map((p) => p.id)).toEqual([`google/${file}`, `apple/${file}`, `facebook/${file}`]);
      expect(new Set(three.map((p) => p.caption)).size).toBe(1);
      expect(data.groups.slice(3 * c, 3 * c + 3)).toEqual(three.map((p) => p.caption));
    }
    const benchmark = data.benchmarks[0] as EvalBenchmark;
    expect(benchmark.name).toBe('emoji-twitter');
    // The first concepts' names, drawn by twitter: no twitter drawing is a training image.
    expect(benchmark.captions).toEqual([[data.pairs[0]?.caption], [data.pairs[3]?.caption]]);
    expect((benchmark.images as Uint8Array[])[0]).not.toEqual(data.pairs[0]?.image);
    // Without vendors: google and apple, retrieved on twitter.
    const plain = emojiSetting({ trainPairs: 4, testImages: 1, seed: 1 });
    expect(plain.pairs.map((p) => p.id.split('/')[0])).toEqual(['google', 'apple', 'google', 'apple']);
  });

  test('refuses a test vendor among the training ones, and a vendor given twice', () => {
    expect(() =>
      emojiSetting({ trainPairs: 4, testImages: 1, seed: 1, trainVendors: ['google'], testVendor: 'google' }),
    ).toThrow("test vendor 'google' is also trained on");
    expect(() => emojiSetting({ trainPairs: 4, testImages: 1, seed: 1, trainVendors: ['apple', 'apple'] })).toThrow(
      'one or more distinct vendors',
    );
    expect(() => emojiSetting({ trainPairs: 4, testImages: 1, seed: 1, trainVendors: [] })).toThrow(
      'one or more distinct vendors',
    );
  });
});
