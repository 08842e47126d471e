import { z } from 'zod';
import { UsageError } from '../corpus/errors.ts';
import { parseOptions } from '../corpus/options.ts';
import { expandRetryStatuses } from './_requeue.ts';

/** How images are resized, as in img2dataset. */
export type ResizeMode = 'no' | 'border' | 'keep_ratio' | 'keep_ratio_largest' | 'center_crop';

/** Progress reported while the crawl runs (pages, then images). */
export interface CrawlProgress {
  phase: 'pages' | 'ingest' | 'download';
  /** Items finished in this phase so far (pages fetched, candidates read, images attempted). */
  done: number;
  /** Items known to be waiting in this phase, when known. */
  total: number | null;
  ok: number;
  failed: number;
}

/** Options of {@link runCrawl}. Every field is validated once, at the entry. */
export interface CrawlOptions {
  /** Corpus directory to create, or to continue when it already holds a manifest. */
  out: string;
  /** Seed page URLs for a bounded same-site crawl; an entry that is not an http(s) URL is read as a file of URLs, one per line. @default [] */
  pages?: string[];
  /** Common Crawl WARC or WAT files, plain or gzip. @default [] */
  warc?: string[];
  /** URL + caption lists (`.jsonl`, `.tsv`, `.csv`, `.parquet`, `.txt`, optionally `.gz`). @default [] */
  urls?: string[];
  /** Column holding the image URL in a URL list. @default 'url' */
  urlCol?: string;
  /** Column holding the caption in a URL list. @default 'caption' */
  captionCol?: string;
  /** Link depth followed from a seed page (0: the seeds only). @default 2 */
  maxDepth?: number;
  /** Most pages fetched in the whole page crawl. @default 1000 */
  maxPages?: number;
  /** Record images whose alt-text is missing or empty (caption ''). @default false */
  keepEmptyAlt?: boolean;
  /** Download the images; false only lists the pairs (status `pending`). @default true */
  download?: boolean;
  /** Requests in flight at once, over all hosts. @default 64 */
  concurrency?: number;
  /** Requests in flight at once to one host. @default 16 */
  perHostConcurrency?: number;
  /** Most requests started per second to one host; 0 for no limit. @default 0 */
  perHostRate?: number;
  /** Time allowed to open a connection, in ms. @default 10000 */
  connectTimeoutMs?: number;
  /** Time allowed for the response headers once connected, in ms. @default 20000 */
  headersTimeoutMs?: number;
  /** Time allowed between two chunks of the body, in ms. @default 20000 */
  bodyTimeoutMs?: number;
  /** Largest response body accepted, in bytes. @default 20971520 (20 MiB) */
  maxBodyBytes?: number;
  /** Redirects followed per request. @default 5 */
  maxRedirects?: number;
  /** Further attempts after a transient failure (timeout, reset, 5xx, 429). @default 3 */
  retries?: number;
  /** First backoff pause in ms; doubles each attempt, with jitter. @default 500 */
  retryBaseMs?: number;
  /** Longest pause honoured from a Retry-After header or a backoff, in ms. @default 60000 */
  retryMaxMs?: number;
  /**
   * Failures to try again in this run: their pairs and pages are put back to `pending` first. A
   * status (`timeout`, `too_large`, `http_503`), a class (`http_5xx`), or `transient` (timeout,
   * connection_error, http_5xx, http_429, robots_unreachable); an entry may list several,
   * comma-separated. @default []
   */
  retryFailed?: string[];
  /** Obey robots.txt (per-host cache). @default true */
  respectRobots?: boolean;
  /** Honour `X-Robots-Tag: noai, noimageai, noindex, noimageindex`. @default true */
  respectXRobotsTag?: boolean;
  /**
   * Honour a page's `<meta name="robots" content="noai">` (also `noimageai`, `noimageindex`, and a
   * meta named for our robot): the page's images are not recorded. @default true
   */
  respectMetaRobots?: boolean;
  /** User-Agent sent with every request, also the name matched in robots.txt. @default 'altforge/0.1 (+https://github.com/altforge/altforge)' */
  userAgent?: string;
  /** Lift the SSRF guard: true for every host, or a list of host names (`127.0.0.1`, `localhost:8080`). @default false */
  allowPrivateNetwork?: boolean | string[];
  /** Resize mode. @default 'keep_ratio' */
  resizeMode?: ResizeMode;
  /** Target size in px (the shorter side for `keep_ratio`). @default 256 */
  imageSize?: number;
  /** Enlarge images smaller than `imageSize` (`keep_ratio` modes only; crop and border always fill). @default false */
  upscale?: boolean;
  /** JPEG quality of the re-encoded image. @default 95 */
  jpegQuality?: number;
  /** Largest decoded image accepted, in pixels (decompression bomb guard). @default 178956970 */
  maxPixels?: number;
  /**
   * Pairs per shard, failures included (img2dataset's shard size): a shard closes after this many
   * records of either kind, its tar holding the successes and its parquet all of them. @default 10000
   */
  shardSize?: number;
  /** Called as work advances; the CLI draws its progress bar with it. */
  onProgress?: (progress: CrawlProgress) => void;
  /** Aborting it stops taking new items, finishes those in flight and closes cleanly. */
  signal?: AbortSignal;
}

const positiveInt = z.number().int().positive();

const schema = z.strictObject({
  out: z.string().min(1),
  pages: z.array(z.string().min(1)).default([]),
  warc: z.array(z.string().min(1)).default([]),
  urls: z.array(z.string().min(1)).default([]),
  urlCol: z.string().min(1).default('url'),
  captionCol: z.string().min(1).default('caption'),
  maxDepth: z.number().int().min(0).default(2),
  maxPages: positiveInt.default(1000),
  keepEmptyAlt: z.boolean().default(false),
  download: z.boolean().default(true),
  concurrency: positiveInt.max(4096).default(64),
  perHostConcurrency: positiveInt.max(4096).default(16),
  perHostRate: z.number().min(0).default(0),
  connectTimeoutMs: positiveInt.default(10_000),
  headersTimeoutMs: positiveInt.default(20_000),
  bodyTimeoutMs: positiveInt.default(20_000),
  maxBodyBytes: positiveInt.default(20 * 1024 * 1024),
  maxRedirects: z.number().int().min(0).max(5).default(5),
  retries: z.number().int().min(0).max(20).default(3),
  retryBaseMs: z.number().int().min(0).default(500),
  retryMaxMs: z.number().int().min(0).default(60_000),
  retryFailed: z.array(z.string()).default([]),
  respectRobots: z.boolean().default(true),
  respectXRobotsTag: z.boolean().default(true),
  respectMetaRobots: z.boolean().default(true),
  userAgent: z.string().min(1).default('altforge/0.1 (+https://github.com/altforge/altforge)'),
  allowPrivateNetwork: z.union([z.boolean(), z.array(z.string().min(1))]).default(false),
  resizeMode: z.enum(['no', 'border', 'keep_ratio', 'keep_ratio_largest', 'center_crop']).default('keep_ratio'),
  imageSize: positiveInt.max(16384).default(256),
  upscale: z.boolean().default(false),
  jpegQuality: z.number().int().min(1).max(100).default(95),
  maxPixels: positiveInt.default(178_956_970),
  shardSize: positiveInt.default(10_000),
  onProgress: z.custom<(progress: CrawlProgress) => void>((v) => typeof v === 'function').optional(),
  signal: z.custom<AbortSignal>((v) => v instanceof AbortSignal).optional(),
});

/** Options with every default filled in. */
export type ResolvedCrawlOptions = z.output<typeof schema>;

/**
 * Validates options once at the entry. The message names the option and the value received:
 * ``Option 'crawl.jpegQuality': expected an integer in [1, 100], got `400` ``.
 */
export function resolveCrawlOptions(options: CrawlOptions): ResolvedCrawlOptions {
  const resolved = parseOptions(schema, options, 'crawl');
  if (resolved.pages.length + resolved.warc.length + resolved.urls.length === 0) {
    throw new UsageError('ERR_NO_INPUT', 'Nothing to crawl: give --pages, --warc or --urls', {
      context: { stage: 'crawl' },
    });
  }
  return { ...resolved, retryFailed: expandRetryStatuses(resolved.retryFailed) };
}
