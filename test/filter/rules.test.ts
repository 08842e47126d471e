import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { STORED_REASONS } from '../../corpus/filter-reason.ts';
import { DecisionBlocks } from '../../filter/_decision-blocks.ts';
import { runFilter, type FilterOptions } from '../../filter/index.ts';
import { makeManifest, reasons, type PairSpec } from '../fixtures/manifest.ts';
import { tempDir } from '../helpers/corpus.ts';

let tmp: { path: string; remove: () => Promise<void> };
beforeEach(async () => {
  tmp = await tempDir('altforge-filter-');
});
afterEach(async () => {
  await tmp.remove();
});

// Every rule but the one under test is neutral: captions of 3+ distinct common words, no classifier.
const base: Partial<FilterOptions> = { nsfw: 'none' };

/** Filters a fresh corpus of `pairs`; returns each pair's reason in input order. */
async function decide(pairs: PairSpec[], options: Partial<FilterOptions> = {}, name = 'c'): Promise<(string | null)[]> {
  const dir = join(tmp.path, name);
  const keys = makeManifest(dir, pairs);
  await runFilter({ ...base, corpus: dir, ...options });
  return reasonsOf(dir, keys);
}

/** The filter reason of each of `keys` in the manifest of `dir` (null when kept). */
function reasonsOf(dir: string, keys: string[]): (string | null)[] {
  const db = new Database(join(dir, 'manifest.sqlite'), { readonly: true });
  try {
    const byKey = reasons(db);
    return keys.map((k) => byKey.get(k) ?? null);
  } finally {
    db.close();
  }
}

const caption = (i: number) => `a distinct caption number${i} here`;

describe('image rules', () => {
  it('drops a shorter side of 200 px and keeps 201 (strict, as ALIGN)', async () => {
    const got = await decide([
      { caption: caption(1), width: 200, height: 500 },
      { caption: caption(2), width: 201, height: 500 },
      { caption: caption(3), width: 500, height: 200 },
      { caption: caption(4), width: 500, height: 201 },
    ]);
    expect(got).toEqual(['image_size', null, 'image_size', null]);
  });

  it('drops an aspect ratio of exactly 3 and keeps one just below', async () => {
    const got = await decide([
      { caption: caption(1), width: 900, height: 300 },
      { caption: caption(2), width: 300, height: 900 },
      { caption: caption(3), width: 899, height: 300 },
    ]);
    expect(got).toEqual(['aspect_ratio', 'aspect_ratio', null]);
  });

  it('makes both bounds inclusive with the datacomp-basic preset', async () => {
    const got = await decide(
      [
        { caption: caption(1), width: 200, height: 600 },
        { caption: caption(2), width: 199, height: 300 },
        { caption: caption(3), width: 900, height: 299 },
        { caption: 'ab cd ef', width: 400, height: 400 },
        { caption: 'two words', width: 400, height: 400 },
      ],
      { preset: 'datacomp-basic' },
    );
    // 200x600: side >= 200 and aspect <= 3 both pass; "ab cd ef" has 3 words but 8 characters.
    expect(got).toEqual([null, 'image_size', 'aspect_ratio', null, 'too_few_words']);
  });

  it('drops an image (by sha256) carrying more than the allowed number of distinct captions', async () => {
    const same = 'f'.repeat(64);
    const pairs: PairSpec[] = [];
    for (let i = 0; i < 4; i++) pairs.push({ caption: caption(i), url: `http://x/${i}.jpg`, sha256: same });
    // The same caption twice on the image counts once.
    pairs.push({ caption: caption(0), url: 'http://x/again.jpg', sha256: same });
    const other: PairSpec[] = [0, 1, 2].map((i) => ({
      caption: caption(10 + i),
      url: `http://y/${i}.jpg`,
      sha256: 'e'.repeat(64),
    }));
    const got = await decide([...pairs, ...other], { maxCaptionsPerImage: 3 });
    expect(got).toEqual([...pairs.map(() => 'image_captions'), null, null, null]);
  });
});

describe('text rules', () => {
  it('keeps a caption shared by 10 images and drops one shared by 11', async () => {
    const pairs: PairSpec[] = [];
    for (let i = 0; i < 10; i++) pairs.push({ caption: 'ten images share this', url: `http://a/${i}.jpg` });
    for (let i = 0; i < 11; i++) pairs.push({ caption: 'eleven images share this', url: `http://b/${i}.jpg` });
    const got = await decide(pairs);
    expect(got.slice(0, 10)).toEqual(Array(10).fill(null));
    expect(got.slice(10)).toEqual(Array(11).fill('shared_caption'));
  });

  it('reads captions holding a NUL character intact', async () => {
    // Captions are read a range at a time, joined by NULs; one that holds a NUL itself must still
    // be one caption: 11 images sharing it, then 10 sharing another, then a short one.
    const pairs: PairSpec[] = [];
    for (let i = 0; i < 11; i++) pairs.push({ caption: 'nul\u0000inside this caption', url: `http://a/${i}.jpg` });
    for (let i = 0; i < 10; i++) pairs.push({ caption: 'ten images share this', url: `http://b/${i}.jpg` });
    pairs.push({ caption: 'two words', url: 'http://c/0.jpg' });
    const got = await decide(pairs);
    expect(got).toEqual([...Array(11).fill('shared_caption'), ...Array(10).fill(null), 'too_few_words']);
  });

  it('counts a caption shared after normalisation (NFKC, case, whitespace) and by distinct images only', async () => {
    const variants = [
      'Shared Caption Here',
      'shared  caption here',
      ' SHARED caption\there ',
      'Ｓｈａｒｅｄ caption here',
    ];
    const pairs: PairSpec[] = [];
    for (let i = 0; i < 11; i++) pairs.push({ caption: variants[i % 4]!, url: `http://a/${i}.jpg` });
    expect(await decide(pairs, {}, 'normalised')).toEqual(Array(11).fill('shared_caption'));
    // Eleven URLs but only ten distinct images (two URLs serve the same bytes): kept.
    const sameBytes = pairs.map((p, i) => ({ ...p, sha256: String(i % 10).repeat(64) }));
    expect(await decide(sameBytes, {}, 'distinct-images')).toEqual(Array(11).fill(null));
  });

  it('drops 2 and 21 unigrams, keeps 3 and 20', async () => {
    const words = (n: number, tag: string) => Array.from({ length: n }, (_, i) => `${tag}w${i}`).join(' ');
    const got = await decide([
      { caption: words(2, 'a') },
      { caption: words(3, 'b') },
      { caption: words(20, 'c') },
      { caption: words(21, 'd') },
    ]);
    expect(got).toEqual(['too_few_words', null, null, 'too_many_words']);
  });

  it('drops empty and whitespace-only captions as too short', async () => {
    const got = await decide([{ caption: '' }, { caption: '   \t\n ' }, { caption: '...' }]);
    expect(got).toEqual(['too_few_words', 'too_few_words', 'too_few_words']);
  });

  it('counts Chinese, Japanese, Thai and emoji captions by word segmentation', async () => {
    const got = await decide(
      [
        { caption: '东京塔' }, // one word
        { caption: '東京タワーの写真' }, // 東京タワー / の / 写真
        { caption: 'แมวสีดำนอนหลับ' }, // Thai: cat / black / sleeps
        { caption: '🐶 dog 🇫🇷' },
        { caption: '🐶🐱' },
      ],
      { maxImagesPerCaption: 0 },
    );
    expect(got).toEqual(['too_few_words', null, null, null, 'too_few_words']);
  });

  it('drops captions with a token outside the vocabulary, bigrams included', async () => {
    // Counts: red 6, dog 6, runs 5, fast 2, zebra 1; "red dog" 5, "dog runs" 5, "fast red" 2,
    // "runs red" 1, "dog zebra" 1.
    const pairs: PairSpec[] = [
      { caption: 'red dog runs', url: 'http://a/1.jpg' },
      { caption: 'red dog runs', url: 'http://a/2.jpg' },
      { caption: 'fast red dog runs', url: 'http://a/3.jpg' },
      { caption: 'fast red dog runs', url: 'http://a/4.jpg' },
      // Every unigram is frequent, but the bigram "runs red" occurs once.
      { caption: 'dog runs red' },
      // "zebra" (and "dog zebra") occur once.
      { caption: 'red dog zebra' },
    ];
    const got = await decide(pairs, { vocabMinCount: 2, maxImagesPerCaption: 0 });
    expect(got).toEqual([null, null, null, null, 'rare_token', 'rare_token']);
    const dir = join(tmp.path, 'report');
    makeManifest(dir, pairs);
    const report = await runFilter({ ...base, corpus: dir, vocabMinCount: 2, maxImagesPerCaption: 0, dryRun: true });
    expect(report.examples.rare_token?.map((e) => e.detail)).toEqual(['rare: runs red', 'rare: zebra']);
  });

  it('keeps only the N most frequent tokens with --vocab-size', async () => {
    // One-word captions (no bigrams): "a" 4 times, "b" 3, "c" 2, "d" 1.
    const pairs: PairSpec[] = [];
    for (const [word, n] of [
      ['a', 4],
      ['b', 3],
      ['c', 2],
      ['d', 1],
    ] as const) {
      for (let i = 0; i < n; i++) pairs.push({ caption: word, url: `http://v/${word}${i}.jpg` });
    }
    const opts = { minWords: 1, maxImagesPerCaption: 0 };
    const rareAt = async (vocabSize: number) =>
      (await decide(pairs, { ...opts, vocabSize }, `v${vocabSize}`)).map((r, i) => (r ? pairs[i]!.caption : null));
    expect(new Set(await rareAt(2))).toEqual(new Set([null, 'c', 'd']));
    expect(new Set(await rareAt(3))).toEqual(new Set([null, 'd']));
    expect(new Set(await rareAt(4))).toEqual(new Set([null]));
  });

  it('gives the same decisions when token counts spill from memory to disk', async () => {
    const pairs: PairSpec[] = [];
    for (let i = 0; i < 3000; i++)
      pairs.push({ caption: `word${i % 97} word${i % 13} word${(i * 7) % 301} extra${i % 5}` });
    const inMemory = await decide(pairs, { vocabMinCount: 3, vocabSize: 500 }, 'memory');
    const spilled = await decide(pairs, { vocabMinCount: 3, vocabSize: 500, maxTokensInMemory: 1000 }, 'spilled');
    expect(spilled).toEqual(inMemory);
    expect(new Set(inMemory)).toEqual(new Set([null, 'rare_token']));
  });
});

describe('recording', () => {
  it('records the first failing rule in the documented order and counts every failing rule', async () => {
    const dir = join(tmp.path, 'order');
    const pairs: PairSpec[] = [];
    // Too small, too few words and shared by 11 images: image_size comes first.
    for (let i = 0; i < 11; i++) pairs.push({ caption: 'hi', width: 100, height: 100, url: `http://s/${i}.jpg` });
    makeManifest(dir, pairs);
    const result = await runFilter({ ...base, corpus: dir });
    expect(result.byReason.image_size).toBe(11);
    const rule = (name: string) => result.rules.find((r) => r.rule === name)!;
    expect(rule('image_size')).toMatchObject({ status: 'applied', dropped: 11, failing: 11 });
    expect(rule('shared_caption')).toMatchObject({ dropped: 0, failing: 11 });
    expect(rule('caption_words')).toMatchObject({ dropped: 0, failing: 11 });
    expect(rule('nsfw').status).toBe('off');
  });

  it('recomputes the decisions when rerun with other thresholds, and writes nothing in a dry run', async () => {
    const dir = join(tmp.path, 'rerun');
    const keys = makeManifest(dir, [
      { caption: caption(1), width: 250, height: 250 },
      { caption: caption(2), width: 150, height: 150 },
    ]);
    const read = () => reasonsOf(dir, keys);
    const dry = await runFilter({ ...base, corpus: dir, dryRun: true });
    expect(dry.byReason.image_size).toBe(1);
    const db = new Database(join(dir, 'manifest.sqlite'), { readonly: true });
    const tables = db.prepare(`SELECT name FROM sqlite_master WHERE type = 'table'`).pluck().all();
    db.close();
    expect(tables).not.toContain('filter_decisions');

    await runFilter({ ...base, corpus: dir });
    expect(read()).toEqual([null, 'image_size']);
    await runFilter({ ...base, corpus: dir, minSide: 300 });
    expect(read()).toEqual(['image_size', 'image_size']);
    await runFilter({ ...base, corpus: dir, minSide: 100 });
    expect(read()).toEqual([null, null]);
  });

  it('rewrites exactly the rows whose reason changes, far apart or together, and clears pairs no longer stored', async () => {
    const dir = join(tmp.path, 'changes');
    // 600 pairs (three blocks of decisions): the first and the last 150 px, 10 across the first
    // block's end 250 px, the rest 400 px.
    const sizes = Array.from({ length: 600 }, (_, i) => (i === 0 || i === 599 ? 150 : i >= 250 && i < 260 ? 250 : 400));
    const keys = makeManifest(
      dir,
      sizes.map((side, i) => ({ caption: caption(i), width: side, height: side })),
    );
    const read = () => reasonsOf(dir, keys);
    const expected = (minSide: number) => sizes.map((side) => (side <= minSide ? 'image_size' : null));
    await runFilter({ ...base, corpus: dir, minSide: 100 });
    expect(read()).toEqual(expected(100));
    // Two changes 599 rows apart, then ten neighbours, then all of them back.
    for (const minSide of [200, 300, 100, 500, 100]) {
      await runFilter({ ...base, corpus: dir, minSide });
      expect(read()).toEqual(expected(minSide));
    }
    // A reason this version does not know, and a reason left on a pair that is no longer stored.
    const edit = new Database(join(dir, 'manifest.sqlite'));
    const rowid = edit.prepare('SELECT rowid FROM pairs WHERE key = ?').pluck();
    const blocks = new DecisionBlocks(edit);
    blocks.setStored(rowid.get(keys[5]) as number, 0xfe);
    blocks.setStored(rowid.get(keys[7]) as number, STORED_REASONS.indexOf('image_size') + 1);
    blocks.flush();
    edit.prepare(`UPDATE pairs SET status = 'http_404' WHERE key = ?`).run(keys[7]);
    edit.close();
    expect(read()[5]).toBe('unknown');
    const result = await runFilter({ ...base, corpus: dir, minSide: 200 });
    expect(result.pairs).toBe(sizes.length - 1);
    const want: (string | null)[] = expected(200);
    want[7] = null;
    expect(read()).toEqual(want);
    // The view has a row a rejected pair; only blocks holding a rejected pair are stored.
    const stored = () => {
      const db = new Database(join(dir, 'manifest.sqlite'), { readonly: true });
      try {
        return {
          view: db.prepare('SELECT pair, reason FROM filter_decisions ORDER BY pair').all(),
          blocks: db.prepare('SELECT block FROM filter_decision_blocks ORDER BY block').pluck().all(),
          ends: db.prepare('SELECT MIN(rowid), MAX(rowid) FROM pairs').raw().get() as [number, number],
        };
      } finally {
        db.close();
      }
    };
    const { view, blocks: full, ends } = stored();
    expect(view).toEqual([
      { pair: ends[0], reason: 'image_size' },
      { pair: ends[1], reason: 'image_size' },
    ]);
    expect(full).toEqual([Math.floor(ends[0] / 256), Math.floor(ends[1] / 256)]);
    await runFilter({ ...base, corpus: dir, minSide: 100 });
    expect(stored()).toEqual({ view: [], blocks: [], ends });
  });

  it('moves the reasons of a manifest filtered into a column (older versions) into filter_decisions', async () => {
    const dir = join(tmp.path, 'legacy');
    const keys = makeManifest(
      dir,
      [150, 400, 150, 400].map((side, i) => ({ caption: caption(i), width: side, height: side })),
    );
    // The layout the filter wrote before its table existed: a column of pairs, migration filter/001.
    const legacy = new Database(join(dir, 'manifest.sqlite'));
    legacy.exec(`ALTER TABLE pairs ADD COLUMN filter_reason TEXT;
      CREATE TABLE nsfw_scores (sha256 TEXT NOT NULL, model TEXT NOT NULL, score REAL NOT NULL,
        PRIMARY KEY (sha256, model)) WITHOUT ROWID;`);
    legacy
      .prepare('INSERT INTO schema_migrations (id, applied_at) VALUES (?, ?)')
      .run('filter/001-filter-reason', new Date().toISOString());
    const set = legacy.prepare('UPDATE pairs SET filter_reason = ? WHERE key = ?');
    set.run('image_size', keys[0]);
    set.run('rare_token', keys[1]);
    legacy.close();
    const read = () => reasonsOf(dir, keys);
    // Read as before, and a dry run changes nothing.
    expect(read()).toEqual(['image_size', 'rare_token', null, null]);
    await runFilter({ ...base, corpus: dir, dryRun: true });
    expect(read()).toEqual(['image_size', 'rare_token', null, null]);
    await runFilter({ ...base, corpus: dir });
    expect(read()).toEqual(['image_size', null, 'image_size', null]);
    const db = new Database(join(dir, 'manifest.sqlite'), { readonly: true });
    const columns = db.prepare('SELECT name FROM pragma_table_info(?)').pluck().all('pairs');
    const stored = db.prepare('SELECT COUNT(*) FROM filter_decisions').pluck().get();
    db.close();
    expect(columns).not.toContain('filter_reason');
    expect(stored).toBe(2);
  });

  it('converts the row-a-pair table of the previous version into decision blocks, reading it the same before', async () => {
    const dir = join(tmp.path, 'rows');
    const keys = makeManifest(
      dir,
      [150, 400, 150, 400].map((side, i) => ({ caption: caption(i), width: side, height: side })),
    );
    // The layout of the previous version: migration filter/002 and one row a rejected pair.
    const previous = new Database(join(dir, 'manifest.sqlite'));
    previous.exec(`CREATE TABLE nsfw_scores (sha256 TEXT NOT NULL, model TEXT NOT NULL, score REAL NOT NULL,
        PRIMARY KEY (sha256, model)) WITHOUT ROWID;
      CREATE TABLE filter_decisions (pair INTEGER PRIMARY KEY, reason TEXT NOT NULL);`);
    const applied = previous.prepare('INSERT INTO schema_migrations (id, applied_at) VALUES (?, ?)');
    applied.run('filter/001-filter-reason', new Date().toISOString());
    applied.run('filter/002-decisions', new Date().toISOString());
    const record = previous.prepare(
      'INSERT INTO filter_decisions (pair, reason) SELECT rowid, ? FROM pairs WHERE key = ?',
    );
    record.run('image_size', keys[0]);
    record.run('rare_token', keys[1]);
    // A decision left on a rowid that is no longer a pair, two blocks further on: cleared.
    previous.prepare('INSERT INTO filter_decisions (pair, reason) VALUES (600, ?)').run('image_size');
    previous.close();
    const read = () => reasonsOf(dir, keys);
    expect(read()).toEqual(['image_size', 'rare_token', null, null]);
    const dry = await runFilter({ ...base, corpus: dir, dryRun: true });
    expect(dry.byReason.image_size).toBe(2);
    expect(read()).toEqual(['image_size', 'rare_token', null, null]);
    await runFilter({ ...base, corpus: dir });
    expect(read()).toEqual(['image_size', null, 'image_size', null]);
    const db = new Database(join(dir, 'manifest.sqlite'), { readonly: true });
    const objects = db
      .prepare(`SELECT name, type FROM sqlite_master WHERE name LIKE 'filter_decision%' ORDER BY name`)
      .all();
    const view = db.prepare('SELECT pair, reason FROM filter_decisions ORDER BY pair').raw().all();
    const rowids = db
      .prepare('SELECT rowid FROM pairs WHERE key = ? OR key = ? ORDER BY rowid')
      .pluck()
      .all(keys[0], keys[2]);
    db.close();
    expect(view).toEqual(rowids.map((r) => [r, 'image_size']));
    expect(objects).toEqual([
      { name: 'filter_decision_blocks', type: 'table' },
      { name: 'filter_decisions', type: 'view' },
    ]);
  });

  it('counts two corpora together: a caption shared 6 + 6 times is dropped in both', async () => {
    const half = (host: string) =>
      Array.from({ length: 6 }, (_, i) => ({ caption: 'shared across machines here', url: `http://${host}/${i}.jpg` }));
    const a = join(tmp.path, 'a');
    const b = join(tmp.path, 'b');
    const keysA = makeManifest(a, [...half('a'), { caption: caption(1) }]);
    const keysB = makeManifest(b, half('b'));
    const alone = await runFilter({ ...base, corpus: a, dryRun: true });
    expect(alone.byReason.shared_caption).toBe(0);
    const result = await runFilter({ ...base, corpus: [a, b] });
    expect(result.pairs).toBe(13);
    expect(result.byReason.shared_caption).toBe(12);
    for (const [dir, keys] of [
      [a, keysA.slice(0, 6)],
      [b, keysB],
    ] as const) {
      const db = new Database(join(dir, 'manifest.sqlite'), { readonly: true });
      const r = reasons(db);
      db.close();
      expect(keys.map((k) => r.get(k))).toEqual(Array(6).fill('shared_caption'));
    }
    expect(result.examples.shared_caption?.[0]?.detail).toBe('12 images share it');
  });

  it('drops pairs above --max-noise-prob and refuses it on a corpus that was never scored', async () => {
    const dir = join(tmp.path, 'noise');
    const keys = makeManifest(dir, [{ caption: caption(1) }, { caption: caption(2) }, { caption: caption(3) }]);
    await expect(runFilter({ ...base, corpus: dir, maxNoiseProb: 0.5 })).rejects.toMatchObject({
      code: 'ERR_NO_NOISE_PROB',
    });
    // The train stage's column, as `altforge score` leaves it: one noisy, one clean, one unscored.
    const db = new Database(join(dir, 'manifest.sqlite'));
    db.exec('ALTER TABLE pairs ADD COLUMN noise_prob REAL');
    db.prepare('UPDATE pairs SET noise_prob = ? WHERE key = ?').run(0.9, keys[0]);
    db.prepare('UPDATE pairs SET noise_prob = ? WHERE key = ?').run(0.5, keys[1]);
    db.close();
    expect(await decideExisting(dir, keys, { maxNoiseProb: 0.5 })).toEqual(['noise_prob', null, null]);
    // The unscored pair passes, and the rule's report says so.
    const result = await runFilter({ ...base, corpus: dir, maxNoiseProb: 0.5, dryRun: true });
    expect(result.rules.find((r) => r.rule === 'noise_prob')).toMatchObject({
      status: 'applied',
      failing: 1,
      note: '1 pairs have no noise probability (not scored: altforge score scores them) and pass this rule',
    });
  });

  it('leaves out pairs that dedup marked as test-set duplicates', async () => {
    const dir = join(tmp.path, 'dup');
    const keys = makeManifest(dir, [{ caption: caption(1) }, { caption: 'x', width: 10, height: 10 }]);
    const db = new Database(join(dir, 'manifest.sqlite'));
    db.exec('ALTER TABLE pairs ADD COLUMN dup_of TEXT');
    db.prepare('UPDATE pairs SET dup_of = ? WHERE key = ?').run('bench/1', keys[1]);
    db.close();
    const result = await runFilter({ ...base, corpus: dir });
    expect(result).toMatchObject({ pairs: 2, kept: 1, dropped: 0, duplicates: 1 });
    expect(await decideExisting(dir, keys, {})).toEqual([null, null]);
  });
});

async function decideExisting(
  dir: string,
  keys: string[],
  options: Partial<FilterOptions>,
): Promise<(string | null)[]> {
  await runFilter({ ...base, corpus: dir, ...options });
  const db = new Database(join(dir, 'manifest.sqlite'), { readonly: true });
  try {
    const r = reasons(db);
    return keys.map((k) => r.get(k) ?? null);
  } finally {
    db.close();
  }
}
