import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { UsageError } from '../../corpus/errors.ts';
import {
  buildDemoSite,
  readDemoSite,
  runDemo,
  type DemoImage,
  type DemoResult,
  type DemoSite,
} from '../../demo/index.ts';
import { lines, runCli } from '../helpers/cli.ts';
import { countByStatus, readManifest, readShards, tempDir, type Manifest, type ShardFile } from '../helpers/corpus.ts';

const IMAGES = 120;
const SEED = 7;

function md5(text: string): string {
  return createHash('md5').update(text, 'utf8').digest('hex');
}

/** Every file under `dir` (relative path) with the md5 of its bytes. */
async function fileHashes(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  for (const entry of entries) {
    if (!entry.isFile()) continue;
    const path = join(entry.parentPath, entry.name);
    out[path.slice(dir.length + 1)] = createHash('md5')
      .update(await readFile(path))
      .digest('hex');
  }
  return Object.fromEntries(Object.entries(out).toSorted(([a], [b]) => a.localeCompare(b)));
}

/** Paths requested from the demo server, in order, from its access log. */
async function requestedPaths(out: string): Promise<string[]> {
  const text = await readFile(join(out, 'access.log'), 'utf8');
  return lines(text).map((line) => /"GET (\S+) HTTP/.exec(line)?.[1] ?? `unparsed: ${line}`);
}

let work: { path: string; remove: () => Promise<void> };
let out: string;
let first: DemoResult;
let site: DemoSite;
let origin: string;
let manifest: Manifest;
let shards: ShardFile[];
let requested: string[];

/** The images a default crawl records: those with a non-empty alt. */
const recorded = (): DemoImage[] => site.images.filter((image) => image.expectedStatus !== null);
const keyOf = (image: DemoImage): string => md5((image.alt ?? '') + origin + image.path);

beforeAll(async () => {
  work = await tempDir('demo');
  out = join(work.path, 'demo');
  first = await runDemo({ out, images: IMAGES, seed: SEED, upTo: 'crawl' });
  const description = readDemoSite(join(out, 'site'));
  if (description === null) throw new Error('the demo wrote no site.json');
  site = description;
  origin = first.site?.origin ?? '';
  manifest = readManifest(join(out, 'corpus'));
  shards = await readShards(join(out, 'corpus'));
  requested = await requestedPaths(out);
});

afterAll(async () => {
  await work?.remove();
});

describe('altforge demo', () => {
  test('builds a site whose alt-texts and fates come in exact proportions', () => {
    expect(first.site?.images).toBe(IMAGES);
    expect(first.site?.byKind).toEqual({
      name: 60,
      name_in_context: 18,
      boilerplate: 12,
      filename: 7,
      wrong_image: 7,
      empty: 10,
      missing: 6,
    });
    expect(first.site?.byFate).toEqual({ ok: 107, small: 4, broken: 5, disallowed: 3, opted_out: 1 });
    expect(first.site?.pages).toBe(site.pages.length);
    expect(first.site?.reused).toBe(false);
    expect(first.interrupted).toBe(false);
    expect(origin).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
  });

  test('fetches every page of the site', () => {
    expect(first.crawl?.pagesFetched).toBe(site.pages.length);
    expect(manifest.pages.map((p) => [p.url, p.status])).toEqual(
      site.pages.map((p) => [origin + p.path, 'ok']).toSorted(([a], [b]) => ((a as string) < (b as string) ? -1 : 1)),
    );
  });

  test('records one pair per image with alt-text, keyed by md5 of caption and URL, and none for empty or missing alts', () => {
    const expected = recorded();
    expect(expected).toHaveLength(IMAGES - 10 - 6);
    expect(manifest.pairs.map((row) => row.key)).toEqual(expected.map(keyOf).toSorted());
    for (const image of expected) {
      const row = manifest.pairs.find((r) => r.key === keyOf(image));
      expect(row).toMatchObject({ url: origin + image.path, page_url: origin + image.page, caption: image.alt });
    }
    expect(manifest.pairs.filter((row) => row.caption === '')).toEqual([]);
  });

  test('records each pair with the status its image deserves', () => {
    const expectedCounts: Record<string, number> = {};
    for (const image of recorded())
      expectedCounts[image.expectedStatus as string] = (expectedCounts[image.expectedStatus as string] ?? 0) + 1;
    expect(countByStatus(manifest.pairs)).toEqual(expectedCounts);
    expect(first.crawl?.byStatus).toEqual(expectedCounts);
    for (const image of recorded()) {
      expect({ path: image.path, status: manifest.pairs.find((r) => r.key === keyOf(image))?.status }).toEqual({
        path: image.path,
        status: image.expectedStatus,
      });
    }
    // Every failure the site plants is present in this seed's sample, so none goes untested.
    expect(Object.keys(expectedCounts).toSorted()).toEqual(['http_404', 'ok', 'opted_out', 'robots_disallowed']);
  });

  test('records broken links as http_404 with the HTTP status', () => {
    const broken = manifest.pairs.filter((row) => row.status === 'http_404');
    expect(broken.length).toBe(recorded().filter((image) => image.fate === 'broken').length);
    expect(broken.map((row) => row.http_status)).toEqual(broken.map(() => 404));
  });

  test('never requests the images that robots.txt disallows, and reads robots.txt once', () => {
    const disallowed = recorded().filter((image) => image.fate === 'disallowed');
    expect(disallowed.length).toBeGreaterThan(0);
    expect(disallowed.every((image) => image.path.startsWith('/private/'))).toBe(true);
    expect(requested.filter((path) => path.startsWith('/private/'))).toEqual([]);
    expect(requested.filter((path) => path === '/robots.txt')).toEqual(['/robots.txt']);
  });

  test('skips the image whose X-Robots-Tag opts out, after one request', () => {
    const optedOut = site.images.filter((image) => image.fate === 'opted_out');
    expect(optedOut).toHaveLength(1);
    const [image] = optedOut as [DemoImage];
    expect(image.expectedStatus).toBe('opted_out');
    expect(manifest.pairs.find((row) => row.key === keyOf(image))?.status).toBe('opted_out');
    expect(requested.filter((path) => path === image.path)).toEqual([image.path]);
  });

  test('stores every ok pair in a shard, with its caption', () => {
    const ok = manifest.pairs.filter((row) => row.status === 'ok');
    const samples = shards.flatMap((shard) => shard.samples);
    expect(shards.flatMap((shard) => shard.problems)).toEqual([]);
    expect(samples.map((s) => s.key).toSorted()).toEqual(ok.map((row) => row.key));
    for (const sample of samples) expect(sample.txt).toBe(ok.find((row) => row.key === sample.key)?.caption);
    expect(first.crawl?.ok).toBe(ok.length);
  });

  test('keeps the too-small icons at 32 px', () => {
    const icons = recorded().filter((image) => image.fate === 'small');
    expect(icons.length).toBeGreaterThan(0);
    for (const image of icons) {
      const row = manifest.pairs.find((r) => r.key === keyOf(image));
      expect([row?.status, row?.width, row?.height]).toEqual(['ok', 32, 32]);
    }
  });

  test('a second run keeps the site and its port and changes nothing', async () => {
    const shardBytes = await fileHashes(join(out, 'corpus', 'shards'));
    const siteFiles = await fileHashes(join(out, 'site'));
    const second = await runDemo({ out, images: IMAGES, seed: SEED, upTo: 'crawl' });
    expect(second.site).toMatchObject({ reused: true, origin, originChanged: false });
    expect(second.crawl).toMatchObject({
      pagesFetched: 0,
      pairsFound: 0,
      attempted: 0,
      ok: 0,
      failed: 0,
      interrupted: false,
    });
    expect(readManifest(join(out, 'corpus'))).toEqual(manifest);
    expect(await fileHashes(join(out, 'corpus', 'shards'))).toEqual(shardBytes);
    expect(await fileHashes(join(out, 'site'))).toEqual(siteFiles);
    expect(await requestedPaths(out)).toEqual(requested);
  });

  test('refuses to continue a demo directory with other options', async () => {
    const run = runDemo({ out, images: IMAGES + 1, seed: SEED, upTo: 'crawl' });
    await expect(run).rejects.toBeInstanceOf(UsageError);
    await expect(run).rejects.toMatchObject({ code: 'ERR_DEMO_MISMATCH' });
  });

  test('refuses a non-empty directory that holds no demo, writing nothing into it', async () => {
    const foreign = join(work.path, 'foreign');
    await mkdir(foreign);
    await writeFile(join(foreign, 'notes.txt'), 'mine\n');
    await expect(runDemo({ out: foreign, images: 10 })).rejects.toMatchObject({ code: 'ERR_NOT_A_DEMO' });
    expect(await readdir(foreign)).toEqual(['notes.txt']);
  });

  test('names the option and the value it refuses', async () => {
    await expect(runDemo({ out: join(work.path, 'never'), images: 0 })).rejects.toThrow(
      "Option 'demo.images': expected an integer in [1, 50000], got `0`",
    );
    await expect(runDemo({ out: join(work.path, 'never'), colour: 'red' } as never)).rejects.toMatchObject({
      code: 'ERR_INVALID_OPTION',
    });
    expect(existsSync(join(work.path, 'never'))).toBe(false);
  });
});

describe('demo site builder', () => {
  test('builds the same files, byte for byte, from the same seed', async () => {
    const a = await buildDemoSite(join(work.path, 'same-a'), { images: 60, seed: 3 });
    const b = await buildDemoSite(join(work.path, 'same-b'), { images: 60, seed: 3 });
    const c = await buildDemoSite(join(work.path, 'other'), { images: 60, seed: 4 });
    const hashes = await fileHashes(a.dir);
    expect(Object.keys(hashes).length).toBe(a.site.files + 1);
    expect(await fileHashes(b.dir)).toEqual(hashes);
    expect(await fileHashes(c.dir)).not.toEqual(hashes);
  });

  test('keeps a complete site built with the same options, and replaces one built with others', async () => {
    const dir = join(work.path, 'cached');
    const built = await buildDemoSite(dir, { images: 30, seed: 1 });
    const before = await fileHashes(dir);
    const again = await buildDemoSite(dir, { images: 30, seed: 1 });
    expect([built.reused, again.reused]).toEqual([false, true]);
    expect(again.site).toEqual(built.site);
    const other = await buildDemoSite(dir, { images: 31, seed: 1 });
    expect(other.reused).toBe(false);
    expect(other.site.images).toHaveLength(31);
    expect(await fileHashes(dir)).not.toEqual(before);
    expect((await readdir(work.path)).filter((name) => name.startsWith('cached.'))).toEqual([]);
  });

  test('refuses to build into a directory that holds something else', async () => {
    const dir = join(work.path, 'occupied');
    await mkdir(dir);
    await writeFile(join(dir, 'index.html'), '<p>mine</p>\n');
    await expect(buildDemoSite(dir, { images: 5 })).rejects.toMatchObject({ code: 'ERR_NOT_A_DEMO_SITE' });
    expect(await readdir(dir)).toEqual(['index.html']);
  });

  test('links every page within the depth it reports', async () => {
    const { site: small } = await buildDemoSite(join(work.path, 'paged'), { images: 200, seed: 2, pageSize: 10 });
    expect(small.pages.filter((p) => p.images > 0).reduce((sum, p) => sum + p.images, 0)).toBe(200);
    expect(small.maxDepth).toBe(2);
    expect(small.pages.filter((p) => p.depth === 2).length).toBeGreaterThan(0);
  });
});

describe('altforge demo (command line)', () => {
  test('documents its flags in --help', async () => {
    const { code, stdout } = await runCli(['demo', '--help']);
    expect(code).toBe(0);
    for (const flag of [
      '--out',
      '--images',
      '--seed',
      '--up-to',
      '--epochs',
      '--batch-size',
      '--backend',
      '--nsfw',
      '--json',
    ]) {
      expect(stdout).toContain(flag);
    }
  });

  test('exits 2 on a malformed flag', async () => {
    const { code, stderr } = await runCli(['demo', '--images', 'many']);
    expect(code).toBe(2);
    expect(lines(stderr)).toEqual(['altforge: Flag --images: expected an integer, got `many` [ERR_USAGE]']);
  });

  test('runs the demo and prints the site, the crawl and where the corpus is', async () => {
    const dir = join(work.path, 'cli');
    const text = await runCli(['demo', '--out', dir, '--images', '40', '--seed', '5', '--up-to', 'crawl']);
    expect(text.code).toBe(0);
    const printed = lines(text.stderr);
    // Live lines as the stages end, then the summary.
    expect(printed[0]).toMatch(/^site: 40 images on \d+ pages, served at http:\/\/127\.0\.0\.1:\d+\/$/);
    expect(printed[1]).toMatch(/^crawl: \d+ pairs stored in 1 shards \(.*\) -> /);
    expect(printed[2]).toMatch(
      /^site: 40 images on \d+ pages \(built in [\d.]+ s\), served at http:\/\/127\.0\.0\.1:\d+\/ from /,
    );
    expect(printed.some((line) => line.startsWith('crawl: '))).toBe(true);
    expect(printed.at(-2)).toMatch(
      new RegExp(`^corpus: ${join(dir, 'corpus').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} `),
    );
    expect(printed.at(-1)).toMatch(/^demo took [\d.]+ s$/);

    const json = await runCli(['demo', '--out', dir, '--images', '40', '--seed', '5', '--up-to', 'crawl', '--json']);
    expect(json.code).toBe(0);
    const result = JSON.parse(json.stdout) as DemoResult;
    expect(result.site?.reused).toBe(true);
    expect(result.crawl?.attempted).toBe(0);
    expect(result.crawl?.byStatus).toEqual(countByStatus(readManifest(join(dir, 'corpus')).pairs));
  });
});
