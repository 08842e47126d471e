import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { UsageError } from '../../corpus/errors.ts';
import { runCrawl, type CrawlResult } from '../../crawl/index.ts';
import type { CrawlOptions } from '../../crawl/options.ts';
import { OFFSITE_URL, startSite, type ExpectedPair, type Site } from '../fixtures/site.ts';
import { lines, runCli } from '../helpers/cli.ts';
import {
  countByStatus,
  findTempFiles,
  keepRatioSize,
  listShardTars,
  readManifest,
  readShardParquets,
  readShards,
  readStats,
  sumStats,
  tempDir,
  type Manifest,
  type PairRow,
  type ParquetRecord,
  type ShardFile,
} from '../helpers/corpus.ts';

const RETRIES = 2;
const SHARD_SIZE = 5;
const MAX_BODY_BYTES = 2 * 1024 * 1024;

/** The options of every crawl here: short timeouts (the slow routes stall far longer), quick retries. */
function crawlOptions(site: Site, out: string, extra: Partial<CrawlOptions> = {}): CrawlOptions {
  return {
    out,
    pages: [site.url('/')],
    allowPrivateNetwork: ['127.0.0.1'],
    maxDepth: 2,
    connectTimeoutMs: 1000,
    headersTimeoutMs: 1000,
    bodyTimeoutMs: 1000,
    retries: RETRIES,
    retryBaseMs: 50,
    maxBodyBytes: MAX_BODY_BYTES,
    shardSize: SHARD_SIZE,
    ...extra,
  };
}

function md5(text: string): string {
  return createHash('md5').update(text, 'utf8').digest('hex');
}

function isImagePath(path: string): boolean {
  return !path.endsWith('.html') && path !== '/' && path !== '/robots.txt';
}

let site: Site;
let work: { path: string; remove: () => Promise<void> };
let out: string;
let result: CrawlResult;
let manifest: Manifest;
let shards: ShardFile[];
/** Requests per path once the main crawl had finished (later crawls add to the live counters). */
let hits: Map<string, number>;
/** The pairs a default crawl from `/` records: everything with alt-text. */
let withAlt: ExpectedPair[];

const hitsOf = (path: string): number => hits.get(path) ?? 0;
const expectedFor = (path: string): ExpectedPair => {
  const found = site.expected.find((e) => e.path === path);
  if (found === undefined) throw new Error(`fixture has no image ${path}`);
  return found;
};
const rowFor = (path: string): PairRow | undefined => {
  const e = expectedFor(path);
  return manifest.pairs.find((row) => row.key === e.key);
};

beforeAll(async () => {
  site = await startSite();
  work = await tempDir('crawl');
  out = join(work.path, 'corpus');
  withAlt = site.expected.filter((e) => !e.emptyAlt);
  expect(site.bigBodyBytes).toBeGreaterThan(MAX_BODY_BYTES);
  result = await runCrawl(crawlOptions(site, out));
  hits = site.snapshotHits();
  manifest = readManifest(out);
  shards = await readShards(out);
});

afterAll(async () => {
  await site?.close();
  await work?.remove();
});

describe('pairs found on the pages', () => {
  test('records every image with alt-text exactly once, with its caption and status', () => {
    const recorded = manifest.pairs
      .map((r) => ({ url: r.url, caption: r.caption, status: r.status }))
      .toSorted(byUrlCaption);
    const wanted = withAlt.map((e) => ({ url: e.url, caption: e.caption, status: e.status })).toSorted(byUrlCaption);
    expect(recorded).toEqual(wanted);
  });

  test('keys each pair by the md5 of caption + url', () => {
    for (const row of manifest.pairs) expect(row.key).toBe(md5(row.caption + row.url));
    expect(manifest.pairs.map((r) => r.key).toSorted()).toEqual(withAlt.map((e) => e.key).toSorted());
  });

  test('records the page each pair was found on', () => {
    for (const e of withAlt) expect(e.pageUrls).toContain(manifest.pairs.find((r) => r.key === e.key)?.page_url);
  });

  test('decodes HTML entities and collapses whitespace in alt-text', () => {
    expect(rowFor('/img/fish-chips.jpg')?.caption).toBe('Fish & chips');
    expect(rowFor('/img/cafe.jpg')?.caption).toBe('Café au lait');
    expect(rowFor('/img/smile.png')?.caption).toBe('Smile \u{1F600} please');
    expect(rowFor('/img/cat-mat.jpg')?.caption).toBe('A cat sitting on a mat');
    expect(rowFor('/img/icon.png')?.caption).toBe('Sunny day');
  });

  test('resolves relative, scheme-relative and <base href> image URLs', () => {
    const urls = new Set(manifest.pairs.map((r) => r.url));
    expect(urls).toContain(site.url('/img/rel-up.jpg'));
    expect(urls).toContain(site.url('/relative/img/rel-here.jpg'));
    expect(urls).toContain(site.url('/img/scheme-relative.jpg'));
    expect(urls).toContain(site.url('/assets/photo.jpg'));
    expect(urls).not.toContain(site.url('/photo.jpg'));
  });

  test('fetches the largest srcset candidate and never the smaller ones', () => {
    expect(rowFor('/img/tree-1200.jpg')?.status).toBe('ok');
    expect(hitsOf('/img/tree-1200.jpg')).toBe(1);
    for (const path of ['/img/tree-small.jpg', '/img/tree-400.jpg', '/img/tree-800.jpg']) expect(hitsOf(path)).toBe(0);
  });

  test('takes the largest <picture><source> candidate over the img fallback', () => {
    expect(rowFor('/img/pizza-1000.jpg')?.status).toBe('ok');
    expect(hitsOf('/img/pizza-1000.jpg')).toBe(1);
    expect(hitsOf('/img/pizza-500.jpg')).toBe(0);
    expect(hitsOf('/img/pizza-fallback.jpg')).toBe(0);
  });

  test('takes a lazy image from data-src rather than its data: placeholder', () => {
    expect(rowFor('/img/lazy-cat.jpg')?.status).toBe('ok');
    expect(manifest.pairs.filter((r) => !r.url.startsWith('http'))).toEqual([]);
  });

  test('downloads a pair found on two pages once', () => {
    expect(manifest.pairs.filter((r) => r.url === site.url('/img/grinning.jpg'))).toHaveLength(1);
    expect(hitsOf('/img/grinning.jpg')).toBe(1);
  });

  test('leaves images without alt-text out by default and never downloads them', () => {
    expect(manifest.pairs.filter((r) => r.caption.trim() === '')).toEqual([]);
    for (const e of site.expected.filter((x) => x.emptyAlt)) expect(hitsOf(e.path)).toBe(0);
  });

  test('keeps images without alt-text, captioned with an empty string, when keepEmptyAlt is set', async () => {
    const dir = join(work.path, 'keep-empty-alt');
    await runCrawl(crawlOptions(site, dir, { pages: [site.url('/noalt.html')], maxDepth: 0, keepEmptyAlt: true }));
    const rows = readManifest(dir).pairs.map((r) => ({
      key: r.key,
      url: r.url,
      caption: r.caption,
      status: r.status,
    }));
    const onPage = site.expected.filter((e) => e.pageUrls.includes(site.url('/noalt.html')));
    expect(onPage.filter((e) => e.emptyAlt)).toHaveLength(3);
    expect(rows.toSorted(byUrlCaption)).toEqual(
      onPage.map((e) => ({ key: e.key, url: e.url, caption: e.caption, status: 'ok' })).toSorted(byUrlCaption),
    );
  });
});

describe('pages', () => {
  test('records each page it crawled with its link depth and status', () => {
    for (const page of site.expectedPages.filter((p) => p.status !== null)) {
      expect(
        manifest.pages.find((row) => row.url === page.url),
        page.path,
      ).toEqual({
        url: page.url,
        depth: page.depth,
        status: page.status,
      });
      expect(hitsOf(page.path), page.path).toBeGreaterThanOrEqual(1);
    }
  });

  test('ignores the #fragment of a link', () => {
    expect(manifest.pages.filter((row) => row.url.includes('#'))).toEqual([]);
    expect(hitsOf('/srcset.html')).toBe(1);
  });

  test('stops following links beyond maxDepth', () => {
    expect(manifest.pages.find((r) => r.url === site.url('/deep/2.html'))?.status).toBe('ok');
    expect(hitsOf('/deep/3.html')).toBe(0);
    expect(manifest.pages.find((r) => r.url === site.url('/deep/3.html'))?.status ?? 'pending').toBe('pending');
    expect(manifest.pairs.find((r) => r.url === site.url('/img/deep3.jpg'))).toBeUndefined();
  });

  test('does not follow links to other sites', () => {
    expect(manifest.pages.find((r) => r.url === OFFSITE_URL)?.status ?? 'pending').toBe('pending');
    const elsewhere = manifest.pages.filter((r) => !r.url.startsWith(site.origin + '/') && r.status !== 'pending');
    expect(elsewhere).toEqual([]);
  });

  test('never requests a path robots.txt disallows, and reads robots.txt once', () => {
    expect(rowFor('/private/secret.jpg')?.status).toBe('robots_disallowed');
    expect(hitsOf('/private/secret.jpg')).toBe(0);
    expect(hitsOf('/private/index.html')).toBe(0);
    expect(['pending', 'robots_disallowed']).toContain(
      manifest.pages.find((r) => r.url === site.url('/private/index.html'))?.status ?? 'pending',
    );
    expect(hitsOf('/robots.txt')).toBe(1);
  });

  test('requests none of the paths a crawl from / must leave alone', () => {
    expect(site.neverRequested.filter((path) => hitsOf(path) > 0)).toEqual([]);
  });
});

describe('downloads and their failures', () => {
  test.each([
    ['/missing.jpg', 'http_404'],
    ['/error.jpg', 'http_500'],
    ['/flaky.jpg', 'ok'],
    ['/rate.jpg', 'ok'],
    ['/slow-headers.jpg', 'timeout'],
    ['/slow-body.jpg', 'timeout'],
    ['/reset.jpg', 'connection_error'],
    ['/loop.jpg', 'too_many_redirects'],
    ['/redirect.jpg', 'ok'],
    ['/wrong-type.jpg', 'ok'],
    ['/html-as-image.jpg', 'not_image'],
    ['/truncated.jpg', 'decode_error'],
    ['/bomb.png', 'too_many_pixels'],
    ['/private/secret.jpg', 'robots_disallowed'],
    ['/noai.jpg', 'opted_out'],
    ['/big.jpg', 'too_large'],
    ['/big-chunked.jpg', 'too_large'],
    ['/ssrf/x.jpg', 'private_address'],
  ])('records %s as %s', (path, status) => {
    expect(expectedFor(path).status).toBe(status);
    expect(rowFor(path)?.status).toBe(status);
  });

  test('gives every failure an error message and every success none', () => {
    for (const row of manifest.pairs) {
      if (row.status === 'ok') {
        expect(row.error_message, row.url).toBeNull();
      } else {
        expect(typeof row.error_message === 'string' && row.error_message.length > 0, row.url).toBe(true);
      }
    }
  });

  test('records the HTTP status of successful downloads and HTTP failures', () => {
    for (const e of withAlt.filter((x) => x.httpStatus !== undefined)) {
      expect(rowFor(e.path)?.http_status, e.path).toBe(e.httpStatus);
    }
  });

  test('retries transient failures until the attempts run out, and permanent ones never', () => {
    for (const e of withAlt) {
      if (e.requests === null) continue;
      const wanted = e.requests === 'every-attempt' ? 1 + RETRIES : e.requests;
      expect(hitsOf(e.path), e.path).toBe(wanted);
    }
  });

  test('succeeds on the retry after a 503', () => {
    expect(rowFor('/flaky.jpg')?.status).toBe('ok');
    expect(hitsOf('/flaky.jpg')).toBe(2);
  });

  test('waits as long as Retry-After asks before trying a 429 again', () => {
    expect(rowFor('/rate.jpg')?.status).toBe('ok');
    const [first, second, ...more] = site.hitTimes('/rate.jpg');
    expect(more).toEqual([]);
    expect(first).toBeDefined();
    expect(second).toBeDefined();
    // Retry-After: 1 means a second; retryBaseMs (50) alone would come back far sooner.
    expect((second ?? 0) - (first ?? 0)).toBeGreaterThanOrEqual(950);
  });

  test('follows a redirect and decides the type by decoding, not by Content-Type', () => {
    expect(rowFor('/redirect.jpg')?.url).toBe(site.url('/redirect.jpg'));
    expect(hitsOf('/img/redirect-target.jpg')).toBe(1);
    expect(rowFor('/wrong-type.jpg')?.status).toBe('ok');
    expect(rowFor('/html-as-image.jpg')?.status).toBe('not_image');
  });

  test('records the sha256 and size of the downloaded bytes', () => {
    for (const e of withAlt.filter((x) => x.status === 'ok')) {
      const row = rowFor(e.path);
      expect(row?.sha256, e.path).toBe(e.image?.sha256);
      expect(row?.bytes, e.path).toBe(e.image?.bytes.length);
    }
  });

  test('refuses another loopback host with private_address and never connects to it', () => {
    expect(rowFor('/ssrf/x.jpg')?.status).toBe('private_address');
    expect(hitsOf('/ssrf/x.jpg')).toBe(0);
    expect(site.requests.filter((r) => r.host !== `127.0.0.1:${site.port}`)).toEqual([]);
  });

  test('refuses even the seed page when the SSRF guard is fully on', async () => {
    const before = site.snapshotHits();
    const dir = join(work.path, 'guarded');
    await runCrawl(crawlOptions(site, dir, { allowPrivateNetwork: false }));
    const guarded = readManifest(dir);
    expect(guarded.pages).toEqual([{ url: site.url('/'), depth: 0, status: 'private_address' }]);
    expect(guarded.pairs).toEqual([]);
    expect(site.snapshotHits()).toEqual(before);
  });
});

describe('images as stored', () => {
  test('resizes to 256 px on the shorter side keeping the ratio, never upscaling', () => {
    for (const e of withAlt.filter((x) => x.status === 'ok')) {
      const row = rowFor(e.path);
      const image = e.image;
      if (image === null) throw new Error(`${e.path} has no fixture image`);
      expect([row?.original_width, row?.original_height], e.path).toEqual([image.width, image.height]);
      const size = keepRatioSize(image.width, image.height, 256);
      expect([row?.width, row?.height], e.path).toEqual([size.width, size.height]);
    }
    // The arithmetic spelled out once: landscape, portrait, and two images already small enough.
    expect([rowFor('/img/grinning.jpg')?.width, rowFor('/img/grinning.jpg')?.height]).toEqual([400, 256]);
    expect([rowFor('/img/cafe.jpg')?.width, rowFor('/img/cafe.jpg')?.height]).toEqual([256, 384]);
    expect([rowFor('/img/cat-mat.jpg')?.width, rowFor('/img/cat-mat.jpg')?.height]).toEqual([200, 150]);
    expect([rowFor('/img/icon.png')?.width, rowFor('/img/icon.png')?.height]).toEqual([32, 32]);
  });

  test('applies the EXIF orientation before measuring and resizing', async () => {
    const row = rowFor('/img/rotated.jpg');
    expect(expectedFor('/img/rotated.jpg').image?.storedWidth).toBe(1000);
    expect([row?.original_width, row?.original_height]).toEqual([640, 1000]);
    expect([row?.width, row?.height]).toEqual([256, 400]);
    const sample = shards.flatMap((s) => s.samples).find((s) => s.key === row?.key);
    const meta = await sharp(sample?.jpg).metadata();
    expect([meta.width, meta.height]).toEqual([256, 400]);
    expect(meta.orientation ?? 1).toBe(1);
  });

  test('keeps the first frame of an animated GIF', async () => {
    const row = rowFor('/img/animated.gif');
    expect([row?.original_width, row?.original_height]).toEqual([400, 320]);
    expect([row?.width, row?.height]).toEqual([320, 256]);
    const sample = shards.flatMap((s) => s.samples).find((s) => s.key === row?.key);
    const meta = await sharp(sample?.jpg).metadata();
    expect([meta.format, meta.width, meta.height, meta.pages ?? 1]).toEqual(['jpeg', 320, 256, 1]);
  });
});

describe('shards', () => {
  test('writes complete tars named 00000.tar, 00001.tar, ... holding at most shardSize samples', async () => {
    const names = await listShardTars(out);
    expect(names).toEqual(names.map((_, i) => `${String(i).padStart(5, '0')}.tar`));
    expect(shards.flatMap((s) => s.problems)).toEqual([]);
    for (const s of shards) expect(s.samples.length).toBeLessThanOrEqual(SHARD_SIZE);
    expect(result.shards).toBe(names.length);
  });

  test('stores every ok pair in exactly one shard, the one its manifest row names', () => {
    const samples = shards.flatMap((s) => s.samples);
    const okRows = manifest.pairs.filter((r) => r.status === 'ok');
    expect(samples.map((s) => s.key).toSorted()).toEqual(okRows.map((r) => r.key).toSorted());
    for (const row of okRows) expect(samples.find((s) => s.key === row.key)?.shard, row.url).toBe(row.shard);
  });

  test('stores the caption as the txt and the metadata as the json of each sample', () => {
    for (const sample of shards.flatMap((s) => s.samples)) {
      const row = manifest.pairs.find((r) => r.key === sample.key);
      expect(row).toBeDefined();
      expect(sample.txt).toBe(row?.caption);
      expect(sample.json).toMatchObject({
        key: row?.key,
        url: row?.url,
        caption: row?.caption,
        width: row?.width,
        height: row?.height,
        original_width: row?.original_width,
        original_height: row?.original_height,
        sha256: row?.sha256,
      });
    }
  });

  test('stores JPEGs that decode to the width and height the manifest records', async () => {
    for (const sample of shards.flatMap((s) => s.samples)) {
      const row = manifest.pairs.find((r) => r.key === sample.key);
      const meta = await sharp(sample.jpg).metadata();
      expect([meta.format, meta.width, meta.height], row?.url).toEqual(['jpeg', row?.width, row?.height]);
    }
  });

  test('writes parquet metadata that agrees with the manifest', async () => {
    const parquets = await readShardParquets(out);
    const rows = parquets.flatMap((p) => p.rows.map((r): ParquetRecord => ({ ...r, parquetShard: p.shard })));
    const attempted = manifest.pairs.filter((r) => r.status !== 'pending');
    expect(rows.map((r) => r.key).toSorted()).toEqual(attempted.map((r) => r.key).toSorted());
    for (const row of attempted) {
      const p = rows.find((r) => r.key === row.key);
      expect(p, row.url).toMatchObject({
        url: row.url,
        caption: row.caption,
        status: row.status,
        error_message: row.error_message,
      });
      // A failure may be filed under the shard it was attempted with; a success is in its shard's file.
      if (row.shard !== null) expect(p?.parquetShard, row.url).toBe(row.shard);
      if (row.status === 'ok') {
        expect(p, row.url).toMatchObject({
          width: row.width,
          height: row.height,
          original_width: row.original_width,
          original_height: row.original_height,
          sha256: row.sha256,
        });
        expect(row.shard, row.url).not.toBeNull();
      }
    }
  });

  test('writes per-shard stats that add up to the manifest', async () => {
    const stats = await readStats(out);
    const attempted = manifest.pairs.filter((r) => r.status !== 'pending');
    const { ok: okCount = 0, ...wantedFailures } = countByStatus(attempted);
    expect(stats.map((s) => s.shard)).toEqual(shards.map((s) => s.shard));
    expect(stats.map((s) => s.stats.superseded)).toEqual(stats.map(() => ({})));
    expect(sumStats(stats)).toEqual({ count: attempted.length, successes: okCount, failures: wantedFailures });
    for (const { shard, stats: s } of stats) {
      expect(s.successes, `shard ${shard}`).toBe(shards.find((x) => x.shard === shard)?.samples.length);
      expect(s.duration).toBeGreaterThanOrEqual(0);
      expect(Number.isInteger(s.bytes) && s.bytes >= 0).toBe(true);
    }
  });

  test('leaves no temporary file behind', async () => {
    expect(await findTempFiles(out)).toEqual([]);
  });
});

describe('the result', () => {
  test('reports counts that match the manifest', () => {
    const wanted = countByStatus(withAlt);
    expect(result.byStatus).toEqual(wanted);
    expect(countByStatus(manifest.pairs)).toEqual(wanted);
    expect(result.pairsFound).toBe(withAlt.length);
    expect(result.attempted).toBe(withAlt.length);
    expect(result.ok).toBe(wanted.ok);
    expect(result.failed).toBe(withAlt.length - (wanted.ok ?? 0));
    expect(result.pagesFetched).toBe(site.expectedPages.filter((p) => p.status === 'ok').length);
    expect(result.interrupted).toBe(false);
  });

  test('downloads nothing and changes no row when run again', async () => {
    const before = site.snapshotHits();
    const tarsBefore = await shardBytes(out);
    const again = await runCrawl(crawlOptions(site, out));
    const after = site.snapshotHits();
    expect(imageHits(after)).toEqual(imageHits(before));
    expect(readManifest(out).pairs).toEqual(manifest.pairs);
    expect(await shardBytes(out)).toEqual(tarsBefore);
    expect(again.attempted).toBe(0);
    expect(again.byStatus).toEqual(result.byStatus);
    expect(await findTempFiles(out)).toEqual([]);
  });
});

describe('bad input', () => {
  test('refuses an output directory that holds other files with ERR_NOT_A_CORPUS and writes nothing into it', async () => {
    const dir = join(work.path, 'not-a-corpus');
    await mkdir(dir);
    await writeFile(join(dir, 'notes.txt'), 'my notes\n');
    const error = await runCrawl(crawlOptions(site, dir)).then(
      () => null,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(UsageError);
    expect((error as UsageError).code).toBe('ERR_NOT_A_CORPUS');
    expect(await readdir(dir)).toEqual(['notes.txt']);
    expect(await readFile(join(dir, 'notes.txt'), 'utf8')).toBe('my notes\n');
  });

  test.each([
    ['jpegQuality', { jpegQuality: 400 }],
    ['concurrency', { concurrency: 0 }],
    ['resizeMode', { resizeMode: 'stretch' as never }],
  ])('refuses an invalid %s with ERR_INVALID_OPTION naming the option', async (name, bad) => {
    const dir = join(work.path, `invalid-${name}`);
    const error = await runCrawl(crawlOptions(site, dir, bad)).then(
      () => null,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(UsageError);
    expect((error as UsageError).code).toBe('ERR_INVALID_OPTION');
    expect((error as UsageError).message).toContain(name);
    expect(existsSync(dir)).toBe(false);
  });

  test('exits 2 with one line on stderr when the output directory is not a corpus', async () => {
    const dir = join(work.path, 'not-a-corpus-cli');
    await mkdir(dir);
    await writeFile(join(dir, 'notes.txt'), 'my notes\n');
    const run = await runCli(['crawl', '--pages', site.url('/'), '--out', dir, '--allow-private-host', '127.0.0.1']);
    expect(run.code).toBe(2);
    expect(lines(run.stderr)).toHaveLength(1);
    expect(await readdir(dir)).toEqual(['notes.txt']);
  });

  test.each([
    ['--concurrency', '0', 'concurrency'],
    ['--jpeg-quality', '400', 'jpeg'],
    ['--retries', 'lots', 'retries'],
  ])('exits 2 with one line on stderr naming the option for %s %s', async (flag, value, named) => {
    const dir = join(work.path, `invalid-cli${flag}`);
    const run = await runCli([
      'crawl',
      '--pages',
      site.url('/'),
      '--out',
      dir,
      '--allow-private-host',
      '127.0.0.1',
      flag,
      value,
    ]);
    expect(run.code).toBe(2);
    const stderr = lines(run.stderr);
    expect(stderr).toHaveLength(1);
    expect(stderr[0]?.toLowerCase()).toContain(named);
    expect(existsSync(dir)).toBe(false);
  });

  test('names --allow-private-host, the flag typed, for an empty host', async () => {
    const dir = join(work.path, 'invalid-cli-host');
    const run = await runCli(['crawl', '--pages', site.url('/'), '--out', dir, '--allow-private-host', '']);
    expect(run.code).toBe(2);
    expect(lines(run.stderr)).toEqual([
      'altforge: Flag --allow-private-host: expected HOST or HOST:PORT, got `` [ERR_INVALID_OPTION]',
    ]);
    expect(existsSync(dir)).toBe(false);
  });
});

/** Per-path request counts of image routes only (pages and robots.txt may be read again). */
function imageHits(hitsByPath: Map<string, number>): Array<[string, number]> {
  return [...hitsByPath].filter(([path]) => isImagePath(path)).toSorted();
}

function byUrlCaption(a: { url: string; caption: string }, b: { url: string; caption: string }): number {
  return a.url === b.url ? a.caption.localeCompare(b.caption) : a.url < b.url ? -1 : 1;
}

/** Every shard tar's name and sha256, to tell whether a run rewrote any. */
async function shardBytes(dir: string): Promise<Array<[string, string]>> {
  const names = await listShardTars(dir);
  return Promise.all(
    names.map(
      async (n) =>
        [
          n,
          createHash('sha256')
            .update(await readFile(join(dir, 'shards', n)))
            .digest('hex'),
        ] as [string, string],
    ),
  );
}
