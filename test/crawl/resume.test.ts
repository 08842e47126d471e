import { afterEach, describe, expect, test } from 'vitest';
import { startSite, type Site } from '../fixtures/site.ts';
import { pollUntil, runCli, startCli } from '../helpers/cli.ts';
import { findTempFiles, listShardTars, readManifest, readShards, tempDir, type ShardFile } from '../helpers/corpus.ts';

const GALLERY = 300;
const SHARD_SIZE = 40;
/** Per-image delay on the server: enough that the crawl is still running when the first shard lands. */
const IMAGE_DELAY_MS = 50;

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).toReversed()) await cleanup();
});

async function setUp(): Promise<{ site: Site; out: string; args: string[] }> {
  const site = await startSite({ gallery: GALLERY, imageDelayMs: IMAGE_DELAY_MS });
  cleanups.push(() => site.close());
  const dir = await tempDir('resume');
  cleanups.push(dir.remove);
  const out = `${dir.path}/corpus`;
  const args = [
    'crawl',
    '--pages',
    site.url('/gallery/index.html'),
    '--out',
    out,
    '--allow-private-host',
    '127.0.0.1',
    '--shard-size',
    String(SHARD_SIZE),
    '--concurrency',
    '8',
  ];
  return { site, out, args };
}

/** Starts the crawl, waits for its first complete shard, then sends `signal` to it. */
async function interrupt(args: string[], out: string, signal: NodeJS.Signals) {
  const cli = startCli(args);
  const sawShard = await pollUntil(
    async () => ((await listShardTars(out)).length > 0 ? true : undefined),
    cli.hasExited,
  );
  if (sawShard === undefined) {
    const early = await cli.exited;
    throw new Error(
      `The crawl exited (code ${String(early.code)}) before writing its first shard, so it could not be ` +
        `interrupted; if it succeeded, raise IMAGE_DELAY_MS. stderr: ${early.stderr.slice(-2000)}`,
    );
  }
  expect(cli.hasExited(), 'the crawl ended before it could be interrupted: raise IMAGE_DELAY_MS').toBe(false);
  cli.signal(signal);
  return cli.exited;
}

/** The guarantees of a corpus whose crawl was interrupted, then run again to the end. */
async function expectCompleteCorpus(site: Site, out: string, beforeResume: ShardFile[]): Promise<void> {
  const shards = await readShards(out);
  expect(shards.flatMap((s) => s.problems)).toEqual([]);
  for (const s of shards) expect(s.samples.length, s.file).toBeLessThanOrEqual(SHARD_SIZE);

  const samples = shards.flatMap((s) => s.samples);
  for (const s of shards) {
    const keys = s.samples.map((x) => x.key);
    expect(new Set(keys).size, `duplicate key inside ${s.file}`).toBe(keys.length);
  }
  const keys = samples.map((s) => s.key);
  expect(new Set(keys).size, 'duplicate key across shards').toBe(keys.length);

  // Every gallery image exactly once, with its caption.
  expect(samples.map((s) => String(s.json.url)).toSorted()).toEqual(site.gallery.map((g) => g.url).toSorted());
  for (const g of site.gallery) {
    const sample = samples.find((s) => s.key === g.key);
    expect(sample?.txt, g.url).toBe(g.caption);
  }

  // The manifest and the shards tell the same story.
  const { pairs } = readManifest(out);
  expect(pairs).toHaveLength(GALLERY);
  expect(pairs.filter((r) => r.status !== 'ok')).toEqual([]);
  for (const row of pairs) {
    const holders = shards.filter((s) => s.samples.some((x) => x.key === row.key)).map((s) => s.shard);
    expect(holders, row.url).toEqual([row.shard]);
  }

  expect(await findTempFiles(out)).toEqual([]);

  // Shards completed before the interruption were kept: their images were not fetched again.
  const kept = beforeResume.flatMap((s) => s.samples);
  expect(kept.length).toBeGreaterThan(0);
  for (const sample of kept) {
    const path = new URL(String(sample.json.url)).pathname;
    expect(site.hits(path), path).toBe(1);
  }
  for (const before of beforeResume) {
    const after = shards.find((s) => s.shard === before.shard);
    expect(
      after?.samples.map((s) => s.key),
      before.file,
    ).toEqual(before.samples.map((s) => s.key));
  }
}

describe('an interrupted crawl', () => {
  test('resumes after SIGKILL without losing, repeating or re-downloading a stored sample', async () => {
    const { site, out, args } = await setUp();
    const killed = await interrupt(args, out, 'SIGKILL');
    expect(killed.signal).toBe('SIGKILL');

    // Whatever was mid-write died with the process: every shard file present is whole.
    const beforeResume = await readShards(out);
    expect(beforeResume.flatMap((s) => s.problems)).toEqual([]);
    expect(beforeResume.length).toBeGreaterThan(0);

    const resumed = await runCli(args);
    expect(resumed.code, resumed.stderr).toBe(0);
    await expectCompleteCorpus(site, out, beforeResume);
  });

  test('exits 130 on SIGINT and a second run completes the corpus', async () => {
    const { site, out, args } = await setUp();
    const stopped = await interrupt(args, out, 'SIGINT');
    expect(stopped.code, stopped.stderr).toBe(130);

    const beforeResume = await readShards(out);
    expect(beforeResume.flatMap((s) => s.problems)).toEqual([]);
    expect(beforeResume.length).toBeGreaterThan(0);
    // It stopped early: a SIGINT right after the first shard leaves most of the gallery to do.
    expect(readManifest(out).pairs.filter((r) => r.status === 'ok').length).toBeLessThan(GALLERY);

    const resumed = await runCli(args);
    expect(resumed.code, resumed.stderr).toBe(0);
    await expectCompleteCorpus(site, out, beforeResume);
  });
});
