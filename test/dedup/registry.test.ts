import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FASHION_MNIST_CLASSES, readIdx } from '../../corpus/idx.ts';
import { openCorpus } from '../../corpus/manifest.ts';
import { iterateImages, listBenchmarks, openRegistry, readImageBytes } from '../../corpus/registry.ts';
import { ShardWriter } from '../../corpus/shards.ts';
import { hamming, registerBenchmark, runDedup } from '../../dedup/index.ts';
import { lines, runCli } from '../helpers/cli.ts';
import { tempDir } from '../helpers/corpus.ts';
import { emojiFile } from '../fixtures/transforms.ts';

const EMOJI = ['1f600.png', '1f355.png', '1f436.png', '1f680.png', '2764-fe0f.png', '1f44b.png'];
const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');
const FASHION = '/usr/share/datasets/fashion-mnist';

/** The header of an IDX file of unsigned bytes with these dimensions. */
const header = (dims: number[]) => {
  const b = Buffer.alloc(4 + 4 * dims.length);
  b.writeUInt8(0x08, 2);
  b.writeUInt8(dims.length, 3);
  dims.forEach((d, i) => b.writeUInt32BE(d, 4 + 4 * i));
  return b;
};

/** A labelled IDX pair in `dir`: `labels.length` 8×8 images of noise. Returns the images file. */
function writeIdxPair(dir: string, labels: number[]): string {
  mkdirSync(dir, { recursive: true });
  const pixels = Buffer.from(Array.from({ length: labels.length * 64 }, (_, i) => (i * 37) % 256));
  const imagesFile = join(dir, 'set-images-idx3-ubyte');
  writeFileSync(imagesFile, Buffer.concat([header([labels.length, 8, 8]), pixels]));
  writeFileSync(join(dir, 'set-labels-idx1-ubyte'), Buffer.concat([header([labels.length]), Buffer.from(labels)]));
  return imagesFile;
}

let work: { path: string; remove: () => Promise<void> };
let folder: string;

beforeAll(async () => {
  work = await tempDir('dedup-registry');
  folder = join(work.path, 'images');
  mkdirSync(join(folder, 'sub'), { recursive: true });
  for (const [i, name] of EMOJI.entries())
    copyFileSync(emojiFile('twitter', name), join(folder, i < 3 ? name : join('sub', name)));
  writeFileSync(join(folder, 'notes.txt'), 'not an image');
  writeFileSync(
    join(work.path, 'captions.tsv'),
    [
      '1f600.png#0\tA grinning face',
      '1f600.png#1\tA happy  FACE',
      'sub/1f680.png#0\tA rocket',
      'missing.png#0\tNobody',
    ].join('\n') + '\n',
  );
});
afterAll(async () => {
  await work.remove();
});

describe('bench add (library)', () => {
  it('records every image of a folder with its sha256, fingerprints and captions', async () => {
    const benchDb = join(work.path, 'folder.sqlite');
    const result = await registerBenchmark({
      name: 'emoji-six',
      images: folder,
      captions: join(work.path, 'captions.tsv'),
      benchDb,
    });
    expect(result.added).toBe(6);
    expect(result.unreadable).toEqual([]);
    expect(result.unmatchedCaptions).toBe(1);
    expect(result.benchmark).toMatchObject({
      name: 'emoji-six',
      kind: 'images',
      sourceKind: 'folder',
      images: 6,
      captions: 3,
      complete: true,
    });
    const registry = openRegistry(benchDb);
    try {
      const images = [...iterateImages(registry, 'emoji-six')];
      expect(images.map((i) => i.imageId)).toEqual([
        '1f355.png',
        '1f436.png',
        '1f600.png',
        'sub/1f44b.png',
        'sub/1f680.png',
        'sub/2764-fe0f.png',
      ]);
      for (const image of images) {
        const bytes = readFileSync(join(folder, image.imageId));
        expect(image.sha256).toBe(sha256(bytes));
        expect(await readImageBytes(registry, 'emoji-six', image)).toEqual(bytes);
      }
      expect(images.find((i) => i.imageId === '1f600.png')?.captions).toEqual(['A grinning face', 'A happy  FACE']);
      const normalised = registry.db.prepare('SELECT normalised FROM bench_captions ORDER BY normalised').all();
      expect(normalised).toEqual([
        { normalised: 'a grinning face' },
        { normalised: 'a happy face' },
        { normalised: 'a rocket' },
      ]);
      const variants = registry.db
        .prepare(
          `SELECT variant, COUNT(*) AS n FROM bench_hashes WHERE variant NOT LIKE 'jitter-%' GROUP BY variant ORDER BY variant`,
        )
        .all();
      expect(variants).toEqual(
        ['base', 'crop', 'crop-b', 'crop-bl', 'crop-br', 'crop-l', 'crop-r', 'crop-t', 'crop-tl', 'crop-tr'].map(
          (variant) => ({ variant, n: 6 }),
        ),
      );
      // A re-encoding's hash is stored only where it is 3 or more bits from each of the image's others.
      const hashes = registry.db
        .prepare('SELECT image_id, variant, hash FROM bench_hashes')
        .safeIntegers(true)
        .all() as Array<{ image_id: string; variant: string; hash: bigint }>;
      for (const j of hashes.filter((h) => h.variant.startsWith('jitter-'))) {
        expect(['jitter-jpeg40', 'jitter-scale150', 'jitter-scale60']).toContain(j.variant);
        for (const other of hashes.filter(
          (h) => h.image_id === j.image_id && h.variant !== j.variant && !h.variant.startsWith('jitter-'),
        ))
          expect(hamming(BigInt.asUintN(64, j.hash), BigInt.asUintN(64, other.hash))).toBeGreaterThanOrEqual(3);
      }
    } finally {
      registry.close();
    }
  });

  it('changes nothing when the same set is added again', async () => {
    const benchDb = join(work.path, 'folder.sqlite');
    const dump = () => {
      const registry = openRegistry(benchDb);
      try {
        // `benchmarks` too: its updated_at is in dedup's per-shard record, which redoes matching when it moves.
        return ['benchmarks', 'bench_images', 'bench_hashes', 'bench_captions'].map((t) =>
          registry.db.prepare(`SELECT * FROM ${t} ORDER BY 1, 2, 3`).all(),
        );
      } finally {
        registry.close();
      }
    };
    const before = dump();
    const again = await registerBenchmark({
      name: 'emoji-six',
      images: folder,
      captions: join(work.path, 'captions.tsv'),
      benchDb,
    });
    expect(again.added).toBe(0);
    expect(again.skipped).toBe(6);
    expect(dump()).toEqual(before);
  });

  it('replaces the captions of a registered set with a captions file given again, which dedup then matches', async () => {
    const benchDb = join(work.path, 'recaptioned.sqlite');
    const add = (captions: string) => registerBenchmark({ name: 'recaptioned', images: folder, captions, benchDb });
    const captionsOf = () => {
      const registry = openRegistry(benchDb);
      try {
        return [...iterateImages(registry, 'recaptioned')]
          .filter((i) => i.captions.length > 0)
          .map((i) => [i.imageId, i.captions]);
      } finally {
        registry.close();
      }
    };
    const first = await add(join(work.path, 'captions.tsv'));
    expect(first.replacedCaptions).toBeNull();
    // A corpus of one pair whose caption only the second file registers; its image is none of the set's.
    const dir = join(work.path, 'recaptioned-corpus');
    const corpus = openCorpus(dir, { create: true });
    corpus.db
      .prepare(`INSERT INTO pairs (key, url, caption, status) VALUES ('p', 'http://x.test/p', ?, 'pending')`)
      .run('A slice of pizza');
    const writer = await ShardWriter.open(corpus, 10);
    const jpg = await sharp(emojiFile('twitter', '1f431.png')).flatten({ background: '#ffffff' }).jpeg().toBuffer();
    await writer.add({
      jpg,
      meta: {
        key: 'p',
        url: 'http://x.test/p',
        page_url: null,
        caption: 'A slice of pizza',
        width: 64,
        height: 64,
        original_width: 64,
        original_height: 64,
        sha256: sha256(jpg),
        bytes: jpg.length,
        http_status: 200,
      },
    });
    await writer.flush();
    corpus.close();
    const before = await runDedup({ corpus: dir, against: ['recaptioned'], benchDb });
    expect(before.flagged).toBe(0);

    // One caption kept, two dropped, three new.
    const other = join(work.path, 'captions-other.tsv');
    writeFileSync(
      other,
      ['1f600.png#0\tA grinning face', '1f355.png#0\tA slice of pizza', '1f436.png#0\tA dog', '1f436.png#1\tA puppy']
        .map((line) => line + '\n')
        .join(''),
    );
    const second = await add(other);
    expect(second).toMatchObject({ added: 0, skipped: 6, replacedCaptions: { before: 3, after: 4 } });
    expect(second.benchmark.captions).toBe(4);
    expect(second.benchmark.updatedAt > first.benchmark.updatedAt).toBe(true);
    expect(captionsOf()).toEqual([
      ['1f355.png', ['A slice of pizza']],
      ['1f436.png', ['A dog', 'A puppy']],
      ['1f600.png', ['A grinning face']],
    ]);
    // The registration stamp moved: dedup matches the corpus again, against the new captions.
    const after = await runDedup({ corpus: dir, against: ['recaptioned'], benchDb });
    expect(after.byBenchmark).toEqual({ recaptioned: { image: 0, sha256: 0, caption: 1 } });

    // The same file again changes nothing, the stamp included.
    const third = await add(other);
    expect(third.replacedCaptions).toBeNull();
    expect(third.benchmark).toEqual(second.benchmark);
  });

  it('registers Fashion-MNIST IDX images as PNGs with their labels and class names', async () => {
    const images = readIdx(join(FASHION, 't10k-images-idx3-ubyte.gz'));
    const labels = readIdx(join(FASHION, 't10k-labels-idx1-ubyte.gz'));
    // The first 40 test images and labels, written back as a smaller IDX pair.
    const n = 40;
    const dir = join(work.path, 'fashion');
    mkdirSync(dir, { recursive: true });
    const imagesFile = join(dir, 'small-fashion-images-idx3-ubyte.gz');
    writeFileSync(imagesFile, gzipSync(Buffer.concat([header([n, 28, 28]), images.data.subarray(0, n * 784)])));
    writeFileSync(
      join(dir, 'small-fashion-labels-idx1-ubyte.gz'),
      gzipSync(Buffer.concat([header([n]), labels.data.subarray(0, n)])),
    );
    const benchDb = join(work.path, 'fashion.sqlite');
    const result = await registerBenchmark({ name: 'fashion-mnist-test', images: imagesFile, benchDb });
    expect(result.benchmark).toMatchObject({
      kind: 'classification',
      sourceKind: 'idx',
      images: n,
      classNames: [...FASHION_MNIST_CLASSES],
    });
    const registry = openRegistry(benchDb);
    try {
      const rows = [...iterateImages(registry, 'fashion-mnist-test')].sort(
        (a, b) => Number(a.imageId) - Number(b.imageId),
      );
      expect(rows.map((r) => r.label)).toEqual([...labels.data.subarray(0, n)]);
      expect(rows.map((r) => r.className)).toEqual(
        [...labels.data.subarray(0, n)].map((l) => FASHION_MNIST_CLASSES[l]),
      );
      const png = await readImageBytes(registry, 'fashion-mnist-test', rows[7]!);
      expect((await sharp(png).metadata()).channels).toBe(1);
      const { data, info } = await sharp(png).extractChannel(0).raw().toBuffer({ resolveWithObject: true });
      expect([info.width, info.height]).toEqual([28, 28]);
      expect(Buffer.from(data)).toEqual(Buffer.from(images.data.subarray(7 * 784, 8 * 784)));
    } finally {
      registry.close();
    }
  });

  it('names the classes of a plain (not gzipped) labelled IDX set by their numbers unless given names, and renames them when given again', async () => {
    const labels = [0, 1, 2, 3, 4, 5, 6, 6, 2];
    const imagesFile = writeIdxPair(join(work.path, 'digits'), labels);
    const benchDb = join(work.path, 'digits.sqlite');
    const first = await registerBenchmark({ name: 'digits', images: imagesFile, benchDb });
    expect(first.benchmark.classNames).toEqual(['0', '1', '2', '3', '4', '5', '6']);
    expect(first.renamedClasses).toBe(false);
    const names = ['zero', 'one', 'two', 'three', 'four', 'five', 'six'];
    await expect(
      registerBenchmark({ name: 'digits', images: imagesFile, benchDb, classNames: names.slice(0, 6) }),
    ).rejects.toMatchObject({
      code: 'ERR_USAGE',
      message: `--class-names gives 6 names, but the labels of '${imagesFile}' go up to 6 (7 classes)`,
    });
    const renamed = await registerBenchmark({ name: 'digits', images: imagesFile, benchDb, classNames: names });
    expect(renamed).toMatchObject({ added: 0, skipped: labels.length, renamedClasses: true });
    expect(renamed.benchmark.classNames).toEqual(names);
    expect(renamed.benchmark.updatedAt).toBe(first.benchmark.updatedAt);
    const registry = openRegistry(benchDb);
    try {
      const rows = [...iterateImages(registry, 'digits')].sort((a, b) => Number(a.imageId) - Number(b.imageId));
      expect(rows.map((r) => r.className)).toEqual(labels.map((l) => names[l]));
    } finally {
      registry.close();
    }
    const again = await registerBenchmark({ name: 'digits', images: imagesFile, benchDb, classNames: names });
    expect(again.renamedClasses).toBe(false);
    // Names for a set that has no labels: refused, nothing registered.
    await expect(
      registerBenchmark({ name: 'folder', images: folder, benchDb, classNames: names }),
    ).rejects.toMatchObject({ code: 'ERR_USAGE' });
    await expect(
      registerBenchmark({ name: 'folder', emoji: 'google', benchDb, classNames: names }),
    ).rejects.toMatchObject({ code: 'ERR_USAGE' });
    const list = openRegistry(benchDb);
    try {
      expect(listBenchmarks(list).map((b) => b.name)).toEqual(['digits']);
    } finally {
      list.close();
    }
  });

  it('registers WebDataset shards with the captions stored in them', async () => {
    const corpus = openCorpus(join(work.path, 'shard-corpus'), { create: true });
    const insert = corpus.db.prepare(`INSERT INTO pairs (key, url, caption, status) VALUES (?, ?, ?, 'pending')`);
    const writer = await ShardWriter.open(corpus, 10);
    for (const [i, name] of EMOJI.slice(0, 4).entries()) {
      const jpg = await sharp(emojiFile('twitter', name)).flatten({ background: '#ffffff' }).jpeg().toBuffer();
      const key = `k${i}`;
      insert.run(key, `http://x.test/${i}`, `caption ${i}`);
      await writer.add({
        jpg,
        meta: {
          key,
          url: `http://x.test/${i}`,
          page_url: null,
          caption: `caption ${i}`,
          width: 64,
          height: 64,
          original_width: 64,
          original_height: 64,
          sha256: sha256(jpg),
          bytes: jpg.length,
          http_status: 200,
        },
      });
    }
    await writer.flush();
    corpus.close();
    const benchDb = join(work.path, 'shards.sqlite');
    const result = await registerBenchmark({
      name: 'from-shards',
      images: join(work.path, 'shard-corpus', 'shards'),
      benchDb,
    });
    expect(result.benchmark).toMatchObject({ sourceKind: 'shards', images: 4, captions: 4 });
    const registry = openRegistry(benchDb);
    try {
      const rows = [...iterateImages(registry, 'from-shards')];
      expect(rows.map((r) => [r.imageId, r.captions])).toEqual([0, 1, 2, 3].map((i) => [`k${i}`, [`caption ${i}`]]));
      expect(sha256(await readImageBytes(registry, 'from-shards', rows[2]!))).toBe(rows[2]!.sha256);
    } finally {
      registry.close();
    }
    // A captions file given later: each image keeps the caption its shard holds, and has the file's.
    const captionsFile = (name: string, line: string) => {
      const file = join(work.path, name);
      writeFileSync(file, line + '\n');
      return file;
    };
    const readd = (captions: string) =>
      registerBenchmark({ name: 'from-shards', images: join(work.path, 'shard-corpus', 'shards'), captions, benchDb });
    expect((await readd(captionsFile('k1.tsv', 'k1\tanother caption'))).replacedCaptions).toEqual({
      before: 4,
      after: 5,
    });
    expect((await readd(captionsFile('k2.tsv', 'k2\tyet another'))).replacedCaptions).toEqual({ before: 5, after: 5 });
    const again = openRegistry(benchDb);
    try {
      expect([...iterateImages(again, 'from-shards')].map((r) => [r.imageId, r.captions])).toEqual([
        ['k0', ['caption 0']],
        ['k1', ['caption 1']],
        ['k2', ['caption 2', 'yet another']],
        ['k3', ['caption 3']],
      ]);
    } finally {
      again.close();
    }
  });
});

describe('altforge bench (CLI)', () => {
  it('records an unreadable image, goes on, and names it in the summary', async () => {
    const dir = join(work.path, 'with-broken');
    mkdirSync(dir, { recursive: true });
    copyFileSync(emojiFile('twitter', '1f600.png'), join(dir, 'good.png'));
    writeFileSync(join(dir, 'broken.jpg'), Buffer.from('this is not a JPEG'));
    const benchDb = join(work.path, 'cli.sqlite');
    const res = await runCli(['bench', 'add', '--name', 'broken-set', '--images', dir, '--bench-db', benchDb]);
    expect(res.code).toBe(0);
    expect(lines(res.stderr)).toHaveLength(1);
    expect(res.stderr).toMatch(
      /^bench add broken-set: 1 images .* 2 files new, 0 already there \(unreadable ones included\), 0 captions; 1 unreadable: broken\.jpg \(/,
    );
    const list = await runCli(['bench', 'list', '--bench-db', benchDb, '--json']);
    expect(list.code).toBe(0);
    const parsed = JSON.parse(list.stdout) as Array<{ name: string; images: number; unreadable: number }>;
    expect(parsed.map((b) => [b.name, b.images, b.unreadable])).toEqual([['broken-set', 1, 1]]);
  });

  it('takes class names from a file, a comma list or fashion-mnist, and says when a set has only numbers', async () => {
    const imagesFile = writeIdxPair(join(work.path, 'cli-digits'), [0, 1, 2, 2]);
    const benchDb = join(work.path, 'cli-names.sqlite');
    const add = (...extra: string[]) =>
      runCli(['bench', 'add', '--name', 'digits', '--images', imagesFile, '--bench-db', benchDb, ...extra]);
    const names = async () =>
      (
        JSON.parse((await runCli(['bench', 'list', '--bench-db', benchDb, '--json'])).stdout) as Array<{
          classNames: string[];
        }>
      )[0]?.classNames;
    const plain = await add();
    expect(plain.code).toBe(0);
    expect(plain.stderr).toContain('; classes named by their numbers 0-2 (--class-names names them);');
    const file = join(work.path, 'names.txt');
    writeFileSync(file, 'circle\nsquare, large\ntriangle\n\n');
    const fromFile = await add('--class-names', file);
    expect(fromFile.code).toBe(0);
    expect(lines(fromFile.stderr)[0]).toMatch(/^bench add digits class names updated: 4 images/);
    expect(fromFile.stderr).not.toContain('named by their numbers');
    expect(await names()).toEqual(['circle', 'square, large', 'triangle']);
    expect((await add('--class-names', ' red , green,blue')).code).toBe(0);
    expect(await names()).toEqual(['red', 'green', 'blue']);
    expect((await add('--class-names', 'fashion-mnist')).code).toBe(0);
    expect(await names()).toEqual([...FASHION_MNIST_CLASSES]);
    const bad = await add('--class-names', 'red,,blue');
    expect(bad.code).toBe(2);
    expect(lines(bad.stderr)).toEqual([
      'altforge: Flag --class-names: expected fashion-mnist, a file of one name a line, or names separated by commas, got `red,,blue` [ERR_USAGE]',
    ]);
    expect(await names()).toEqual([...FASHION_MNIST_CLASSES]);
  });

  it("says that a captions file given again replaced the set's captions, and when nothing changed", async () => {
    const benchDb = join(work.path, 'cli-captions.sqlite');
    const add = (captions: string) =>
      runCli(['bench', 'add', '--name', 't1', '--images', folder, '--captions', captions, '--bench-db', benchDb]);
    const other = join(work.path, 'cli-captions.tsv');
    writeFileSync(other, '1f355.png\tA slice of pizza\n1f436.png\tA dog\n1f436.png#1\tA puppy\n1f600.png\tA smile\n');
    expect((await add(join(work.path, 'captions.tsv'))).code).toBe(0);
    const replaced = await add(other);
    expect(replaced.code).toBe(0);
    expect(lines(replaced.stderr)).toEqual([
      expect.stringMatching(
        /^bench add t1 captions replaced \(3 -> 4\): 6 images \(images, folder\), 0 files new, 6 already there \(unreadable ones included\), 4 captions; /,
      ),
    ]);
    const same = await add(other);
    expect(lines(same.stderr)).toEqual([
      expect.stringMatching(/^bench add t1 already registered, nothing to do: 6 images .*, 4 captions; /),
    ]);
  });

  it('names a registry that is not an SQLite database on one line, and leaves it as it was', async () => {
    const csv = join(work.path, 'benchmarks.csv');
    writeFileSync(csv, 'name,images\nt1,3\n');
    for (const args of [
      ['bench', 'list', '--bench-db', csv],
      ['bench', 'add', '--name', 't1', '--images', folder, '--bench-db', csv],
    ]) {
      const run = await runCli(args);
      expect(run.code, args.join(' ')).toBe(2);
      expect(lines(run.stderr)).toEqual([
        `altforge: Benchmark registry '${csv}' is not an SQLite database (file is not a database) [ERR_NOT_A_DATABASE]`,
      ]);
    }
    expect(readFileSync(csv, 'utf8')).toBe('name,images\nt1,3\n');
  });

  it('removes a set and everything recorded for it', async () => {
    const benchDb = join(work.path, 'cli.sqlite');
    const res = await runCli(['bench', 'remove', '--name', 'broken-set', '--bench-db', benchDb]);
    expect(res.code).toBe(0);
    const registry = openRegistry(benchDb);
    try {
      expect(listBenchmarks(registry)).toEqual([]);
      for (const t of ['bench_images', 'bench_hashes', 'bench_captions']) {
        expect(registry.db.prepare(`SELECT COUNT(*) AS n FROM ${t}`).get()).toEqual({ n: 0 });
      }
    } finally {
      registry.close();
    }
  });

  it('refuses an empty image folder with one line and exit code 2, creating no registry', async () => {
    const dir = join(work.path, 'empty');
    mkdirSync(dir, { recursive: true });
    const benchDb = join(work.path, 'never.sqlite');
    const res = await runCli(['bench', 'add', '--name', 'empty', '--images', dir, '--bench-db', benchDb]);
    expect(res.code).toBe(2);
    expect(lines(res.stderr)).toEqual([expect.stringContaining('[ERR_EMPTY_INPUT]')]);
    expect(existsSync(benchDb)).toBe(false);
  });

  it('refuses --emoji with --images, neither of them, and an unknown vendor, with one line and exit 2', async () => {
    const benchDb = join(work.path, 'never-emoji.sqlite');
    const both = await runCli([
      'bench',
      'add',
      '--name',
      'e',
      '--emoji',
      'google',
      '--images',
      folder,
      '--bench-db',
      benchDb,
    ]);
    expect(both.code).toBe(2);
    expect(lines(both.stderr)).toEqual([expect.stringContaining('Give --images PATH or --emoji VENDOR, not both')]);
    const neither = await runCli(['bench', 'add', '--name', 'e', '--bench-db', benchDb]);
    expect(neither.code).toBe(2);
    expect(lines(neither.stderr)).toEqual([expect.stringContaining('Missing --images PATH')]);
    const unknown = await runCli(['bench', 'add', '--name', 'e', '--emoji', 'microsoft', '--bench-db', benchDb]);
    expect(unknown.code).toBe(2);
    expect(lines(unknown.stderr)).toEqual([
      expect.stringContaining('--emoji: expected one of apple, facebook, google, twitter'),
    ]);
    expect(existsSync(benchDb)).toBe(false);
  });

  it('refuses to remove an unknown benchmark with exit code 2', async () => {
    const res = await runCli(['bench', 'remove', '--name', 'nope', '--bench-db', join(work.path, 'folder.sqlite')]);
    expect(res.code).toBe(2);
    expect(lines(res.stderr)).toEqual([
      expect.stringMatching(/Unknown benchmark 'nope' .*registered: emoji-six.*\[ERR_UNKNOWN_BENCHMARK\]/),
    ]);
  });
});
