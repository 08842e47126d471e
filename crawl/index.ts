/**
 * The crawl stage: alt-text pairs from web pages, WARC/WAT files and URL lists, downloaded,
 * resized and written as WebDataset shards with a SQLite manifest.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { countByStatus, openCorpus, recordStageRun, type Corpus } from '../corpus/manifest.ts';
import { ShardWriter } from '../corpus/shards.ts';
import { UsageError, shown } from '../corpus/errors.ts';
import type { Candidate } from './_candidate.ts';
import { downloadPending } from './_download.ts';
import { Fetcher, robotName } from './_fetcher.ts';
import { recordCandidates } from './_ingest.ts';
import { acquireLock } from '../corpus/lock.ts';
import { CRAWL_MIGRATIONS } from './_migrations.ts';
import { privateRefusalsSince, type PrivateRefusals } from './_net-guard.ts';
import { crawlPages } from './_pages.ts';
import { countTransientFailures, requeueFailures, requeueLiftedRefusals } from './_requeue.ts';
import { assertReadableUrlList, readUrlList } from './_sources/url-list.ts';
import { assertReadableWarc, readWarcRecords } from './_sources/warc.ts';
import { resolveCrawlOptions, type CrawlOptions, type CrawlProgress, type ResolvedCrawlOptions } from './options.ts';

export type { CrawlOptions, CrawlProgress, ResizeMode } from './options.ts';

/** What a crawl did, and the state of the corpus after it. */
export interface CrawlResult {
  /** The corpus directory. */
  out: string;
  /** Pages fetched successfully in this run. */
  pagesFetched: number;
  /** Pages that failed in this run (their status in `pages` says why). */
  pagesFailed: number;
  /** Pages that failed in this run, by status (`http_404`, `private_address`...). */
  pageFailures: Record<string, number>;
  /** New pairs recorded in this run (from pages, WARC and URL lists). */
  pairsFound: number;
  /** WARC and URL-list files read again because they changed since they were read (as given). */
  reread: string[];
  /** Pairs whose image was attempted in this run. */
  attempted: number;
  /** Pairs stored in a shard in this run. */
  ok: number;
  /** Pairs that failed in this run (their status says why). */
  failed: number;
  /** Pairs per status over the whole manifest, `pending` included. */
  byStatus: Record<string, number>;
  /** Complete shards in the corpus. */
  shards: number;
  /**
   * Images stored in the shard left open by an interrupted run: their pairs are still `pending`
   * in `byStatus`, and become `ok` when the next run commits that shard (none are fetched again).
   */
  openShard: number;
  /** Failed pairs and pages put back to be tried again in this run (`retryFailed`). */
  retried: number;
  /**
   * Failed pairs and pages in the corpus that `retryFailed: ['transient']` would try again
   * (timeouts, connection errors, 5xx, 429, robots.txt unreachable).
   */
  transientFailures: number;
  /**
   * Pages and pairs the SSRF guard refused in this run (`private_address`), and the hosts refused
   * (`host:port` for an address typed in a URL), at most 10: `allowPrivateNetwork` takes them.
   */
  privateRefusals: PrivateRefusals;
  /** Bytes downloaded in this run. */
  bytes: number;
  durationMs: number;
  /** True when the signal stopped the run early; run again to continue. */
  interrupted: boolean;
}

function readSeedFile(path: string): string[] {
  if (!existsSync(path) || !statSync(path).isFile()) {
    throw new UsageError('ERR_INPUT_NOT_FOUND', `Seed '${path}' is neither an http(s) URL nor a readable file`, {
      context: { path },
    });
  }
  return readFileSync(path, 'utf8')
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'));
}

/** Expands seed files and checks every seed is an absolute http(s) URL. */
function resolveSeeds(pages: string[]): string[] {
  const seeds: string[] = [];
  for (const entry of pages) {
    const list = /^https?:\/\//i.test(entry) ? [entry] : readSeedFile(entry);
    for (const seed of list) {
      let url: URL;
      try {
        url = new URL(seed);
      } catch {
        throw new UsageError('ERR_INPUT_MALFORMED', `Seed ${JSON.stringify(seed)} is not a URL`, {
          context: { url: seed },
        });
      }
      if (url.protocol !== 'http:' && url.protocol !== 'https:') {
        throw new UsageError('ERR_INPUT_MALFORMED', `Seed ${JSON.stringify(seed)} is not an http(s) URL`, {
          context: { url: seed },
        });
      }
      url.hash = '';
      seeds.push(url.href);
    }
  }
  return seeds;
}

/** Every input is checked before anything is written: a bad one stops the run with one line. */
async function validateInputs(opts: ResolvedCrawlOptions, captionColExplicit: boolean): Promise<string[]> {
  const seeds = resolveSeeds(opts.pages);
  for (const path of opts.warc) await assertReadableWarc(path);
  for (const path of opts.urls) {
    await assertReadableUrlList(path, { urlCol: opts.urlCol, captionCol: opts.captionCol, captionColExplicit });
  }
  return seeds;
}

/**
 * Reads one WARC or URL-list input into the manifest; returns the new pairs, and whether the file
 * was read before (and has changed since). A file read in full is not read again while its size
 * and modification time are those recorded when its reading began; when either differs (rows
 * appended to a list) it is read again in full, which records only the pairs not yet in the
 * manifest (`INSERT OR IGNORE` by pair key). One stat a file: no hashing of multi-GB inputs.
 */
async function ingestInput(
  corpus: Corpus,
  kind: 'warc' | 'urls',
  path: string,
  candidates: AsyncIterable<Candidate | Candidate[]>,
  report: (read: number) => void,
): Promise<{ inserted: number; reread: boolean }> {
  const source = `${kind}:${resolve(path)}`;
  const { db } = corpus;
  // Taken before reading: a file that changes while it is read differs from it next time.
  const { size, mtimeMs } = statSync(path);
  const row = db.prepare('SELECT done, size, mtime_ms, finished_at FROM inputs WHERE source = ?').get(source) as
    { done: number; size: number | null; mtime_ms: number | null; finished_at: string | null } | undefined;
  if (row?.done === 1) {
    if (row.size === size && row.mtime_ms === mtimeMs) return { inserted: 0, reread: false };
    // Read before stamps were recorded: unchanged if not modified since its reading ended.
    if (row.size === null && row.finished_at !== null && mtimeMs <= Date.parse(row.finished_at)) {
      db.prepare('UPDATE inputs SET size = ?, mtime_ms = ? WHERE source = ?').run(size, mtimeMs, source);
      return { inserted: 0, reread: false };
    }
  }
  db.prepare('INSERT OR IGNORE INTO inputs (source, kind) VALUES (?, ?)').run(source, kind);
  const { inserted } = await recordCandidates(db, candidates, source, report);
  db.prepare(
    `UPDATE inputs SET done = 1, pairs = pairs + ?, size = ?, mtime_ms = ?, finished_at = ? WHERE source = ?`,
  ).run(inserted, size, mtimeMs, new Date().toISOString(), source);
  return { inserted, reread: row?.done === 1 };
}

/** Image options that every image of a corpus shares: a resumed crawl may not change them. */
const IMAGE_OPTIONS = ['imageSize', 'resizeMode'] as const;

/**
 * Refuses to add images made with another `imageSize` or `resizeMode` than those the corpus
 * already holds (committed, or in the open shard): the values of the last crawl run that
 * downloaded, as `stage_runs` records them. A corpus holding no image yet takes any.
 */
function assertSameImageOptions(corpus: Corpus, opts: ResolvedCrawlOptions): void {
  const { db, dir } = corpus;
  const holdsImages =
    db.prepare(`SELECT 1 FROM pairs WHERE status = 'ok' LIMIT 1`).get() !== undefined ||
    (existsSync(join(dir, 'shards')) && readdirSync(join(dir, 'shards')).some((name) => name.endsWith('.tar.tmp')));
  if (!holdsImages) return;
  const last = db
    .prepare(
      `SELECT options FROM stage_runs WHERE stage = 'crawl' AND json_extract(options, '$.download') = 1
       ORDER BY id DESC LIMIT 1`,
    )
    .pluck()
    .get() as string | undefined;
  if (last === undefined) return;
  const recorded = JSON.parse(last) as Partial<ResolvedCrawlOptions>;
  for (const option of IMAGE_OPTIONS) {
    const was = recorded[option];
    if (was !== undefined && was !== opts[option]) {
      throw new UsageError(
        'ERR_INVALID_OPTION',
        `Option 'crawl.${option}': this corpus holds images made with ${shown(was)}, got ${shown(opts[option])}: ` +
          `give ${shown(was)} to continue it, or crawl into a new corpus`,
        { context: { stage: 'crawl', option } },
      );
    }
  }
}

/**
 * Runs the crawl: page crawl, then WARC and URL-list ingestion, then the downloads. Killed at any
 * moment, it leaves the corpus consistent, and the same call continues where it stopped.
 */
export async function runCrawl(options: CrawlOptions): Promise<CrawlResult> {
  const started = Date.now();
  const opts = resolveCrawlOptions(options);
  const seeds = await validateInputs(opts, options.captionCol !== undefined && options.captionCol !== 'caption');
  // Failed pages are put back when seeds start a page crawl, failed pairs when the run downloads.
  if (opts.retryFailed.length > 0 && seeds.length === 0 && !opts.download) {
    throw new UsageError(
      'ERR_INVALID_OPTION',
      "Option 'crawl.retryFailed': a run that neither crawls seed pages nor downloads retries nothing: give the seed pages, or drop --no-download",
      { context: { stage: 'crawl', option: 'retryFailed' } },
    );
  }
  const corpus = openCorpus(opts.out, { create: true, migrations: CRAWL_MIGRATIONS });
  let release: (() => void) | undefined;
  let fetcher: Fetcher | undefined;
  let writer: ShardWriter | undefined;
  let finishRun: ((outcome: string, summary: unknown) => void) | undefined;
  const progress = (p: CrawlProgress) => opts.onProgress?.(p);
  try {
    release = acquireLock(opts.out);
    if (opts.download) assertSameImageOptions(corpus, opts);
    finishRun = recordStageRun(corpus.db, 'crawl', { ...opts, signal: undefined });
    fetcher = new Fetcher({ ...opts, signal: opts.signal });
    const signal = opts.signal;
    let pagesFetched = 0;
    let pagesFailed = 0;
    let pageFailures: Record<string, number> = {};
    let pairsFound = 0;
    let retried = 0;
    const reread: string[] = [];

    if (seeds.length > 0) {
      // A rerun fetches only `pending` pages: those the guard refused and now lets through are put
      // back, and the failures the user asked to retry.
      requeueLiftedRefusals(corpus.db, 'pages', opts.allowPrivateNetwork);
      retried += requeueFailures(corpus.db, 'pages', opts.retryFailed);
      const pages = await crawlPages(corpus.db, fetcher, {
        seeds,
        maxDepth: opts.maxDepth,
        maxPages: opts.maxPages,
        keepEmptyAlt: opts.keepEmptyAlt,
        respectMetaRobots: opts.respectMetaRobots,
        robot: robotName(opts.userAgent),
        concurrency: Math.min(opts.concurrency, 16),
        signal,
        onPage: (fetched, failed) =>
          progress({ phase: 'pages', done: fetched + failed, total: null, ok: fetched, failed }),
      });
      pagesFetched = pages.fetched;
      pagesFailed = pages.failed;
      pageFailures = pages.failures;
      pairsFound += pages.found;
    }
    for (const path of opts.warc) {
      if (signal?.aborted) break;
      const read = await ingestInput(
        corpus,
        'warc',
        path,
        readWarcRecords(path, {
          keepEmptyAlt: opts.keepEmptyAlt,
          respectMetaRobots: opts.respectMetaRobots,
          robot: robotName(opts.userAgent),
        }),
        (n) => progress({ phase: 'ingest', done: n, total: null, ok: n, failed: 0 }),
      );
      pairsFound += read.inserted;
      if (read.reread) reread.push(path);
    }
    for (const path of opts.urls) {
      if (signal?.aborted) break;
      const read = await ingestInput(
        corpus,
        'urls',
        path,
        readUrlList(path, { urlCol: opts.urlCol, captionCol: opts.captionCol }),
        (n) => progress({ phase: 'ingest', done: n, total: null, ok: n, failed: 0 }),
      );
      pairsFound += read.inserted;
      if (read.reread) reread.push(path);
    }

    let counts = { attempted: 0, ok: 0, failed: 0, bytes: 0 };
    let openShard = 0;
    if (opts.download && !signal?.aborted) {
      // Likewise, only `pending` pairs are downloaded.
      requeueLiftedRefusals(corpus.db, 'pairs', opts.allowPrivateNetwork);
      retried += requeueFailures(corpus.db, 'pairs', opts.retryFailed);
      writer = await ShardWriter.open(corpus, opts.shardSize);
      const total =
        (corpus.db.prepare(`SELECT COUNT(*) AS n FROM pairs WHERE status = 'pending'`).get() as { n: number }).n -
        writer.pending;
      let ok = 0;
      let failed = 0;
      counts = await downloadPending(corpus.db, fetcher, writer, {
        concurrency: opts.concurrency,
        image: opts,
        signal,
        onItem: (success) => {
          if (success) ok++;
          else failed++;
          progress({ phase: 'download', done: ok + failed, total, ok, failed });
        },
      });
      if (signal?.aborted) await writer.suspend();
      else await writer.flush();
      openShard = writer.pending;
    }

    const shards = (corpus.db.prepare('SELECT COUNT(*) AS n FROM shards').get() as { n: number }).n;
    const result: CrawlResult = {
      out: opts.out,
      pagesFetched,
      pagesFailed,
      pageFailures,
      pairsFound,
      reread,
      attempted: counts.attempted,
      ok: counts.ok,
      failed: counts.failed,
      byStatus: countByStatus(corpus.db),
      shards,
      openShard,
      retried,
      privateRefusals: privateRefusalsSince(corpus.db, new Date(started).toISOString()),
      transientFailures: countTransientFailures(corpus.db, 'pairs') + countTransientFailures(corpus.db, 'pages'),
      bytes: counts.bytes,
      durationMs: Date.now() - started,
      interrupted: signal?.aborted ?? false,
    };
    finishRun(result.interrupted ? 'interrupted' : 'done', result);
    return result;
  } catch (err) {
    if (writer) await writer.suspend().catch(() => undefined);
    finishRun?.('failed', { error: (err as Error).message });
    throw err;
  } finally {
    await fetcher?.close();
    release?.();
    corpus.close();
  }
}
