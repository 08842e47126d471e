import { existsSync, readFileSync, readdirSync, renameSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import tar from 'tar-stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openCorpus, type Corpus } from '../../corpus/manifest.ts';
import { ShardWriter, readShardEntry, scanPartialShard, shardPaths, type Sample } from '../../corpus/shards.ts';
import { readTar, tempDir } from '../helpers/corpus.ts';

function sample(i: number): Sample {
  const key = `key${String(i).padStart(4, '0')}`;
  return {
    jpg: Buffer.alloc(700 + i * 13, i % 251),
    meta: {
      key,
      url: `http://example.org/${i}.jpg`,
      page_url: null,
      caption: `caption ${i}`,
      width: 10,
      height: 10,
      original_width: 20,
      original_height: 20,
      sha256: 'ab'.repeat(32),
      bytes: 1000 + i,
      http_status: 200,
    },
  };
}

/** The bytes tar-stream's `pack` writes for these samples' three entries (mtime 0), end blocks included. */
async function packedByTarStream(samples: Sample[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  pack.on('data', (c: unknown) => {
    chunks.push(c as Buffer);
  });
  const ended = new Promise<void>((resolve) => {
    pack.on('end', () => resolve());
  });
  for (const s of samples) {
    const parts: [string, Buffer][] = [
      ['jpg', s.jpg],
      ['txt', Buffer.from(s.meta.caption, 'utf8')],
      ['json', Buffer.from(JSON.stringify(s.meta), 'utf8')],
    ];
    for (const [ext, data] of parts) {
      await new Promise<void>((resolve, reject) =>
        pack.entry({ name: `${s.meta.key}.${ext}`, size: data.length, mtime: new Date(0) }, data, (err) =>
          err ? reject(err) : resolve(),
        ),
      );
    }
  }
  pack.finalize();
  await ended;
  return Buffer.concat(chunks);
}

function addPending(corpus: Corpus, samples: Sample[]): void {
  const insert = corpus.db.prepare(`INSERT INTO pairs (key, url, caption, status) VALUES (?, ?, ?, 'pending')`);
  for (const s of samples) insert.run(s.meta.key, s.meta.url, s.meta.caption);
}

/** Each pair's shard, by key, and each recorded shard's counts: what a rerun must reproduce. */
function layoutOf(corpus: Corpus) {
  return {
    shardOf: corpus.db.prepare('SELECT key, shard FROM pairs ORDER BY key').all() as { key: string; shard: number }[],
    shards: corpus.db.prepare('SELECT shard, count, successes FROM shards ORDER BY shard').all() as {
      shard: number;
      count: number;
      successes: number;
    }[],
  };
}

function statusOf(corpus: Corpus, key: string): { status: string; shard: number | null } {
  return corpus.db.prepare('SELECT status, shard FROM pairs WHERE key = ?').get(key) as {
    status: string;
    shard: number | null;
  };
}

/** Records a failed pair against `shard`, as the crawl's download loop does. */
function recordFailure(corpus: Corpus, key: string, shard: number): void {
  corpus.db
    .prepare(
      `INSERT INTO pairs (key, url, caption, status, error_message, shard) VALUES (?, ?, 'c', 'http_404', 'gone', ?)`,
    )
    .run(key, `http://x/${key}`, shard);
}

/** The shard of each failed pair, in the order they were recorded. */
function failureShards(corpus: Corpus): number[] {
  return corpus.db
    .prepare(`SELECT shard FROM pairs WHERE status = 'http_404' ORDER BY rowid`)
    .pluck()
    .all() as number[];
}

describe('ShardWriter', () => {
  let dir: { path: string; remove: () => Promise<void> };
  let corpus: Corpus;

  beforeEach(async () => {
    dir = await tempDir('altforge-shards-');
    corpus = openCorpus(join(dir.path, 'c'), { create: true });
  });
  afterEach(async () => {
    corpus.close();
    await dir.remove();
  });

  it('commits a full shard: tar, parquet and stats renamed, pairs marked ok with their shard', async () => {
    const samples = Array.from({ length: 5 }, (_, i) => sample(i));
    addPending(corpus, samples);
    const writer = await ShardWriter.open(corpus, 3);
    for (const s of samples) await writer.add(s);
    await writer.flush();
    const p0 = shardPaths(corpus.dir, 0);
    const p1 = shardPaths(corpus.dir, 1);
    for (const f of [p0.tar, p0.parquet, p0.stats, p1.tar, p1.parquet, p1.stats]) expect(existsSync(f), f).toBe(true);
    expect((await readTar(p0.tar)).map((e) => e.name)).toEqual(
      ['key0000', 'key0001', 'key0002'].flatMap((k) => [`${k}.jpg`, `${k}.txt`, `${k}.json`]),
    );
    expect(statusOf(corpus, 'key0004')).toEqual({ status: 'ok', shard: 1 });
    expect(readdirSync(join(corpus.dir, 'shards')).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('continues a shard cut in the middle of an entry, keeping the complete samples and fetching none twice', async () => {
    const samples = Array.from({ length: 4 }, (_, i) => sample(i));
    addPending(corpus, samples);
    const first = await ShardWriter.open(corpus, 10);
    for (const s of samples.slice(0, 3)) await first.add(s);
    await first.suspend();
    const tmp = shardPaths(corpus.dir, 0).tarTmp;
    // Cut the file 100 bytes into the third sample's jpg, as a SIGKILL mid-write would.
    const { endOffset: afterTwo } = await scanPartialShard(tmp);
    expect(afterTwo).toBeGreaterThan(0);
    const third = 512 + Math.ceil(samples[2]!.jpg.length / 512) * 512;
    const full = statSync(tmp).size;
    truncateSync(tmp, full - 1024 - third - 2 * 1024 + 100 + 512);
    const scan = await scanPartialShard(tmp);
    expect(scan.samples.map((s) => s.key)).toEqual(['key0000', 'key0001']);

    const second = await ShardWriter.open(corpus, 10);
    expect([second.has('key0000'), second.has('key0001'), second.has('key0002')]).toEqual([true, true, false]);
    await second.add(samples[2]!);
    await second.add(samples[3]!);
    await second.flush();
    const names = (await readTar(shardPaths(corpus.dir, 0).tar)).map((e) => e.name);
    expect(names).toEqual(
      ['key0000', 'key0001', 'key0002', 'key0003'].flatMap((k) => [`${k}.jpg`, `${k}.txt`, `${k}.json`]),
    );
    for (const s of samples) expect(statusOf(corpus, s.meta.key)).toEqual({ status: 'ok', shard: 0 });
  });

  it('finishes a commit that a kill interrupted after the manifest transaction but before the renames', async () => {
    const samples = Array.from({ length: 2 }, (_, i) => sample(i));
    addPending(corpus, samples);
    const writer = await ShardWriter.open(corpus, 10);
    for (const s of samples) await writer.add(s);
    await writer.flush();
    const p = shardPaths(corpus.dir, 0);
    // Put the files back where the kill would have left them.
    renameSync(p.tar, p.tarTmp);
    renameSync(p.parquet, p.parquetTmp);
    renameSync(p.stats, p.statsTmp);
    const reopened = await ShardWriter.open(corpus, 10);
    expect([existsSync(p.tar), existsSync(p.parquet), existsSync(p.stats)]).toEqual([true, true, true]);
    expect([existsSync(p.tarTmp), existsSync(p.parquetTmp), existsSync(p.statsTmp)]).toEqual([false, false, false]);
    expect(reopened.current).toBe(1);
  });

  it('removes parquet and stats temporaries of a shard the manifest never recorded', async () => {
    const writer = await ShardWriter.open(corpus, 10);
    await writer.suspend();
    const p = shardPaths(corpus.dir, 0);
    writeFileSync(p.parquetTmp, 'partial');
    writeFileSync(p.statsTmp, '{');
    await ShardWriter.open(corpus, 10);
    expect([existsSync(p.parquetTmp), existsSync(p.statsTmp)]).toEqual([false, false]);
  });

  it('lists the records put back to be tried again in the next shard it commits, once, even after a kill', async () => {
    const samples = Array.from({ length: 4 }, (_, i) => sample(i));
    addPending(corpus, samples);
    corpus.db.prepare(`INSERT INTO superseded (status, n) VALUES ('private_address', 2), ('timeout', 1)`).run();
    const writer = await ShardWriter.open(corpus, 2);
    for (const s of samples) await writer.add(s);
    await writer.flush();
    const statsOf = (shard: number) =>
      JSON.parse(readFileSync(shardPaths(corpus.dir, shard).stats, 'utf8')) as { superseded: Record<string, number> };
    expect([statsOf(0).superseded, statsOf(1).superseded]).toEqual([{ private_address: 2, timeout: 1 }, {}]);
    expect(corpus.db.prepare('SELECT shard, superseded FROM shards ORDER BY shard').all()).toEqual([
      { shard: 0, superseded: 3 },
      { shard: 1, superseded: 0 },
    ]);
    expect(corpus.db.prepare('SELECT * FROM superseded').all()).toEqual([]);

    // Killed after the shard's files were written, before the manifest recorded it: the commit
    // is done again on reopening, and lists the same records.
    const more = [sample(10), sample(11)];
    addPending(corpus, more);
    corpus.db.prepare(`INSERT INTO superseded (status, n) VALUES ('private_address', 1)`).run();
    const killed = await ShardWriter.open(corpus, 2);
    await killed.add(more[0]!);
    await killed.suspend();
    const p2 = shardPaths(corpus.dir, 2);
    writeFileSync(p2.statsTmp, JSON.stringify({ shard: 2, superseded: { private_address: 1 } }));
    const reopened = await ShardWriter.open(corpus, 2);
    await reopened.add(more[1]!);
    await reopened.flush();
    expect(statsOf(2).superseded).toEqual({ private_address: 1 });
    expect(corpus.db.prepare('SELECT superseded FROM shards WHERE shard = 2').pluck().get()).toBe(1);
    expect(corpus.db.prepare('SELECT * FROM superseded').all()).toEqual([]);
  });

  it('commits a shard that holds only failures, so its stats count them', async () => {
    corpus.db
      .prepare(
        `INSERT INTO pairs (key, url, caption, status, error_message, shard) VALUES ('f1', 'http://x/1', 'c', 'http_404', 'gone', 0)`,
      )
      .run();
    const writer = await ShardWriter.open(corpus, 10);
    await writer.flush();
    const p = shardPaths(corpus.dir, 0);
    expect(await readTar(p.tar)).toEqual([]);
    const stats = JSON.parse(readFileSync(p.stats, 'utf8')) as {
      count: number;
      successes: number;
      failures: Record<string, number>;
    };
    expect(stats).toMatchObject({ count: 1, successes: 0, failures: { http_404: 1 } });
  });

  it('closes a shard after shardSize records of either kind, and failures while it waits for its commit go to the next', async () => {
    const samples = Array.from({ length: 4 }, (_, i) => sample(i));
    addPending(corpus, samples);
    const writer = await ShardWriter.open(corpus, 3);
    await writer.add(samples[0]!);
    // Two failures fill shard 0; its commit waits its turn, so the next four go to shards 1 and 2.
    for (let i = 0; i < 6; i++) recordFailure(corpus, `f${i}`, writer.attributeFailure());
    expect(failureShards(corpus)).toEqual([0, 0, 1, 1, 1, 2]);
    for (const s of samples.slice(1)) await writer.add(s);
    await writer.flush();
    expect(layoutOf(corpus).shards.map((r) => [r.shard, r.count, r.successes])).toEqual([
      [0, 3, 1],
      [1, 3, 0],
      [2, 3, 2],
      [3, 1, 1],
    ]);
  });

  it('counts, after a kill, the failures recorded against the open shard and the ones after it', async () => {
    const samples = Array.from({ length: 4 }, (_, i) => sample(i));
    addPending(corpus, samples);
    // What a killed run left: failures against shard 0, which it never committed, and shards 1 and 2.
    [0, 0, 1, 1, 1, 2].forEach((shard, i) => recordFailure(corpus, `f${i}`, shard));
    const writer = await ShardWriter.open(corpus, 3);
    for (const s of samples) await writer.add(s);
    recordFailure(corpus, 'f6', writer.attributeFailure());
    await writer.flush();
    expect(layoutOf(corpus).shards.map((r) => [r.shard, r.count, r.successes])).toEqual([
      [0, 3, 1],
      [1, 3, 0],
      [2, 3, 2],
      [3, 2, 1],
    ]);
    expect(statusOf(corpus, 'key0003')).toEqual({ status: 'ok', shard: 3 });
  });

  it('writes the same tar bytes as tar-stream, for entries of 0, 1, 511, 512 and 513 bytes and empty captions', async () => {
    const samples = [0, 1, 511, 512, 513, 2048].map((size, i) => {
      const s = sample(i);
      s.jpg = Buffer.alloc(size, 7 + i);
      if (i === 2) s.meta.caption = '';
      if (i === 3) s.meta.caption = 'überall 🙂 '.repeat(60);
      return s;
    });
    addPending(corpus, samples);
    const writer = await ShardWriter.open(corpus, 6);
    for (const s of samples) await writer.add(s);
    await writer.flush();
    const written = readFileSync(shardPaths(corpus.dir, 0).tar);
    expect(written.equals(await packedByTarStream(samples))).toBe(true);
  });

  it('stores keys longer than 100 bytes or not ASCII under their whole name, and resumes a shard holding them', async () => {
    const long = sample(1);
    long.meta.key = 'k'.repeat(140);
    const accented = sample(2);
    accented.meta.key = 'clé-ü';
    const plain = sample(3);
    addPending(corpus, [long, accented, plain]);
    const first = await ShardWriter.open(corpus, 10);
    await first.add(long);
    await first.add(accented);
    await first.suspend();
    const scan = await scanPartialShard(shardPaths(corpus.dir, 0).tarTmp);
    expect(scan.samples.map((s) => s.key)).toEqual(['k'.repeat(140), 'clé-ü']);

    const second = await ShardWriter.open(corpus, 10);
    expect([second.has('k'.repeat(140)), second.has('clé-ü')]).toEqual([true, true]);
    await second.add(plain);
    await second.flush();
    const entries = await readTar(shardPaths(corpus.dir, 0).tar);
    expect(entries.map((e) => e.name)).toEqual(
      ['k'.repeat(140), 'clé-ü', 'key0003'].flatMap((k) => [`${k}.jpg`, `${k}.txt`, `${k}.json`]),
    );
    expect(entries[0]?.data.equals(long.jpg)).toBe(true);
    expect(statusOf(corpus, 'clé-ü')).toEqual({ status: 'ok', shard: 0 });
  });

  it('reads one entry of a shard by name, from an index of its headers that follows the file', async () => {
    const samples = [sample(1), sample(2), sample(3)];
    (samples[1] as Sample).meta.key = 'é'.repeat(70);
    addPending(corpus, samples);
    const writer = await ShardWriter.open(corpus, 10);
    for (const s of samples.slice(0, 2)) await writer.add(s);
    await writer.suspend();
    const tmp = shardPaths(corpus.dir, 0).tarTmp;
    expect(readShardEntry(tmp, `${'é'.repeat(70)}.jpg`)?.equals((samples[1] as Sample).jpg)).toBe(true);
    expect(readShardEntry(tmp, 'key0001.txt')?.toString('utf8')).toBe((samples[0] as Sample).meta.caption);
    expect(readShardEntry(tmp, 'key0003.jpg')).toBeNull();
    // The shard grows: the index is rebuilt, and the new sample is found.
    const more = await ShardWriter.open(corpus, 10);
    await more.add(samples[2] as Sample);
    await more.suspend();
    expect(readShardEntry(tmp, 'key0003.jpg')?.equals((samples[2] as Sample).jpg)).toBe(true);
    const entries = await readTar(tmp);
    expect(entries).toHaveLength(9);
    for (const entry of entries) expect(readShardEntry(tmp, entry.name)?.equals(entry.data)).toBe(true);
  });

  it('leaves added samples pending in the manifest until their shard commits, and a suspend writes every one', async () => {
    const samples = Array.from({ length: 4 }, (_, i) => sample(i));
    addPending(corpus, samples);
    const writer = await ShardWriter.open(corpus, 10);
    for (const s of samples) await writer.add(s);
    expect(samples.map((s) => statusOf(corpus, s.meta.key).status)).toEqual([
      'pending',
      'pending',
      'pending',
      'pending',
    ]);
    await writer.suspend();
    expect(samples.map((s) => statusOf(corpus, s.meta.key).status)).toEqual([
      'pending',
      'pending',
      'pending',
      'pending',
    ]);
    const scan = await scanPartialShard(shardPaths(corpus.dir, 0).tarTmp);
    expect(scan.samples).toEqual(samples.map((s) => s.meta));
    expect(await readTar(shardPaths(corpus.dir, 0).tarTmp)).toEqual(
      samples.flatMap((s) => [
        { name: `${s.meta.key}.jpg`, data: s.jpg },
        { name: `${s.meta.key}.txt`, data: Buffer.from(s.meta.caption) },
        { name: `${s.meta.key}.json`, data: Buffer.from(JSON.stringify(s.meta)) },
      ]),
    );
  });

  it('commits a resumed shard that a kill left full before adding the next sample, as an uninterrupted run does', async () => {
    const samples = Array.from({ length: 11 }, (_, i) => sample(i));
    addPending(corpus, samples);

    // Shard 0 committed, then shard 1's third and last sample written and the process killed
    // before the commit: a writer whose shards hold more stands in for that moment.
    const first = await ShardWriter.open(corpus, 3);
    for (const s of samples.slice(0, 3)) await first.add(s);
    await first.suspend();
    const killed = await ShardWriter.open(corpus, 100);
    for (const s of samples.slice(3, 6)) await killed.add(s);
    await killed.suspend();
    const p1 = shardPaths(corpus.dir, 1);
    // Without the end-of-archive blocks, and with a commit's parquet and stats cut short.
    const { samples: inTmp, endOffset } = await scanPartialShard(p1.tarTmp);
    expect(inTmp.map((s) => s.key)).toEqual(['key0003', 'key0004', 'key0005']);
    truncateSync(p1.tarTmp, endOffset);
    writeFileSync(p1.parquetTmp, 'PAR1');
    writeFileSync(p1.statsTmp, '{"shard": 1');
    expect(layoutOf(corpus).shards.map((r) => r.shard)).toEqual([0]);

    const rerun = await ShardWriter.open(corpus, 3);
    expect([rerun.current, rerun.pending]).toEqual([2, 0]);
    // As the crawl and export do: the pairs still pending, less those the open shard holds.
    for (const s of samples) {
      if (statusOf(corpus, s.meta.key).status === 'pending' && !rerun.has(s.meta.key)) await rerun.add(s);
    }
    await rerun.flush();

    const reference = openCorpus(join(dir.path, 'uninterrupted'), { create: true });
    try {
      addPending(reference, samples);
      const writer = await ShardWriter.open(reference, 3);
      for (const s of samples) await writer.add(s);
      await writer.flush();
      const expected = layoutOf(reference);
      expect(expected.shards.map((r) => r.count)).toEqual([3, 3, 3, 2]);
      expect(layoutOf(corpus)).toEqual(expected);
    } finally {
      reference.close();
    }
    for (const shard of [0, 1, 2, 3]) {
      const p = shardPaths(corpus.dir, shard);
      const size = shard === 3 ? 2 : 3;
      expect((await readTar(p.tar)).length, p.tar).toBe(3 * size);
      expect((JSON.parse(readFileSync(p.stats, 'utf8')) as { count: number }).count, p.stats).toBe(size);
    }
    expect((await readTar(p1.tar)).map((e) => e.name)).toEqual(
      ['key0003', 'key0004', 'key0005'].flatMap((k) => [`${k}.jpg`, `${k}.txt`, `${k}.json`]),
    );
    expect(
      [...readdirSync(join(corpus.dir, 'shards')), ...readdirSync(join(corpus.dir, 'stats'))].filter((f) =>
        f.endsWith('.tmp'),
      ),
    ).toEqual([]);
  });

  it('commits a resumed shard holding more samples than the shard size as it is, adding none to it', async () => {
    const samples = Array.from({ length: 6 }, (_, i) => sample(i));
    addPending(corpus, samples);
    const bigger = await ShardWriter.open(corpus, 10);
    for (const s of samples.slice(0, 4)) await bigger.add(s);
    await bigger.suspend();

    const smaller = await ShardWriter.open(corpus, 3);
    expect([smaller.current, smaller.pending]).toEqual([1, 0]);
    // As the crawl and export do: the pairs still pending, less those the open shard holds.
    for (const s of samples) {
      if (statusOf(corpus, s.meta.key).status === 'pending' && !smaller.has(s.meta.key)) await smaller.add(s);
    }
    await smaller.flush();
    expect(layoutOf(corpus).shards).toEqual([
      { shard: 0, count: 4, successes: 4 },
      { shard: 1, count: 2, successes: 2 },
    ]);
    expect(samples.map((s) => statusOf(corpus, s.meta.key))).toEqual([
      ...Array.from({ length: 4 }, () => ({ status: 'ok', shard: 0 })),
      ...Array.from({ length: 2 }, () => ({ status: 'ok', shard: 1 })),
    ]);
  });
});
