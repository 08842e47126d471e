import { basename } from 'node:path';
import { defineCommand } from 'citty';
import { shown, UsageError } from '../corpus/errors.ts';
import { runCrawl, type CrawlOptions, type CrawlResult } from '../crawl/index.ts';
import { cittyArgs, type FlagSpecs } from './_args.ts';
import { runStageCommand } from './_run.ts';

export const flags = {
  out: { type: 'string', description: 'Corpus directory to create or continue', valueHint: 'DIR', alias: 'o' },
  pages: {
    type: 'list',
    description: 'Seed page URL, or a file of URLs (one per line); positional arguments are seeds too',
    valueHint: 'URL|FILE',
  },
  warc: { type: 'list', description: 'Common Crawl WARC or WAT file, plain or .gz', valueHint: 'FILE' },
  urls: {
    type: 'list',
    description: 'URL list: .jsonl .json .tsv .csv .parquet .txt (optionally .gz)',
    valueHint: 'FILE',
  },
  urlCol: { type: 'string', description: 'URL column of --urls lists', default: 'url', valueHint: 'NAME' },
  captionCol: { type: 'string', description: 'Caption column of --urls lists', default: 'caption', valueHint: 'NAME' },
  maxDepth: { type: 'integer', description: 'Link depth followed from the seed pages', default: 2, valueHint: 'N' },
  maxPages: { type: 'integer', description: 'Most pages fetched by the page crawl', default: 1000, valueHint: 'N' },
  keepEmptyAlt: { type: 'boolean', description: 'Also record images with a missing or empty alt (caption "")' },
  download: { type: 'boolean', description: 'Download images (--no-download only lists the pairs)', default: true },
  concurrency: { type: 'integer', description: 'Requests in flight over all hosts', default: 64, valueHint: 'N' },
  perHostConcurrency: { type: 'integer', description: 'Requests in flight to one host', default: 16, valueHint: 'N' },
  perHostRate: {
    type: 'number',
    description: 'Most requests per second to one host (0: no limit)',
    default: 0,
    valueHint: 'R',
  },
  connectTimeoutMs: { type: 'integer', description: 'Connect timeout', default: 10000, valueHint: 'MS' },
  headersTimeoutMs: {
    type: 'integer',
    description: 'Timeout for the response headers',
    default: 20000,
    valueHint: 'MS',
  },
  bodyTimeoutMs: { type: 'integer', description: 'Timeout between two body chunks', default: 20000, valueHint: 'MS' },
  maxBodyBytes: {
    type: 'integer',
    description: 'Largest response body accepted',
    default: 20971520,
    valueHint: 'BYTES',
  },
  maxRedirects: { type: 'integer', description: 'Redirects followed (at most 5)', default: 5, valueHint: 'N' },
  retries: { type: 'integer', description: 'Retries after a timeout, reset, 5xx or 429', default: 3, valueHint: 'N' },
  retryBaseMs: {
    type: 'integer',
    description: 'First backoff pause (doubles, with jitter)',
    default: 500,
    valueHint: 'MS',
  },
  retryMaxMs: {
    type: 'integer',
    description: 'Longest pause honoured (Retry-After or backoff)',
    default: 60000,
    valueHint: 'MS',
  },
  retryFailed: {
    type: 'list',
    description:
      'Try these failures again: transient (timeout, connection_error, dns_timeout, http_5xx, http_429, robots_unreachable) or statuses (too_large, http_503...), comma-separated',
    valueHint: 'STATUS',
  },
  respectRobots: { type: 'boolean', description: 'Obey robots.txt (--no-respect-robots to ignore it)', default: true },
  respectXRobotsTag: {
    type: 'boolean',
    description: 'Honour X-Robots-Tag noai/noimageai/noindex/noimageindex',
    default: true,
  },
  respectMetaRobots: {
    type: 'boolean',
    description: 'Leave out the images of pages whose <meta name="robots"> says noai/noimageai/noimageindex',
    default: true,
  },
  userAgent: { type: 'string', description: 'User-Agent header, also the robots.txt name', valueHint: 'UA' },
  allowPrivateNetwork: { type: 'boolean', description: 'Lift the SSRF guard for every host (local use only)' },
  allowPrivateHost: {
    type: 'list',
    description: 'Lift the SSRF guard for this host or host:port only',
    valueHint: 'HOST',
  },
  resizeMode: {
    type: 'string',
    description: 'Resize mode',
    valueHint: 'MODE',
    default: 'keep_ratio',
    choices: ['no', 'border', 'keep_ratio', 'keep_ratio_largest', 'center_crop'],
  },
  imageSize: {
    type: 'integer',
    description: 'Target size in px (shorter side for keep_ratio)',
    default: 256,
    valueHint: 'PX',
  },
  upscale: { type: 'boolean', description: 'Enlarge images smaller than --image-size (keep_ratio modes)' },
  jpegQuality: { type: 'integer', description: 'JPEG quality of stored images', default: 95, valueHint: 'Q' },
  maxPixels: {
    type: 'integer',
    description: 'Largest decoded image (decompression bomb guard)',
    default: 178956970,
    valueHint: 'PX',
  },
  shardSize: {
    type: 'integer',
    description: 'Pairs per shard, failures included: the tar holds the successes, the parquet all of them',
    default: 10000,
    valueHint: 'N',
  },
  json: { type: 'boolean', description: 'Print the summary as JSON on stdout' },
  progress: { type: 'boolean', description: 'Show a progress bar on a terminal', default: true },
} satisfies FlagSpecs;

/** Counts per status, largest first, ties by name so that arrival order does not show: `http_404 3, timeout 1`. */
function byReason(counts: Record<string, number>): string {
  return Object.entries(counts)
    .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
    .map(([status, n]) => `${status} ${n}`)
    .join(', ');
}

/**
 * A second line when the SSRF guard refused something in this run, naming the flag that allows a
 * host of one's own network and the hosts refused (a local test server is the usual case).
 */
function privateNote({ privateRefusals: { pages, pairs, hosts } }: CrawlResult): string {
  if (pages + pairs === 0) return '';
  const counts = [
    ...(pages > 0 ? [`${pages} ${pages === 1 ? 'page' : 'pages'}`] : []),
    ...(pairs > 0 ? [`${pairs} ${pairs === 1 ? 'pair' : 'pairs'}`] : []),
  ].join(' and ');
  const named = hosts.length > 0 ? ` (${hosts.slice(0, 3).join(', ')}${hosts.length > 3 ? ' and more' : ''})` : '';
  const allow = hosts.length === 1 ? hosts[0] : 'HOST[:PORT]';
  return `crawl: the SSRF guard refused ${counts} at a private address${named}; to crawl a host of your own network, rerun with --allow-private-host ${allow}`;
}

/** One line that says what the crawl did, and one more when the SSRF guard refused something. */
export function summarize(result: CrawlResult): string {
  const failures = byReason(
    Object.fromEntries(Object.entries(result.byStatus).filter(([status]) => status !== 'ok' && status !== 'pending')),
  );
  // A seed that failed leaves nothing else to see: its reason must be on this line.
  const pagesFailed =
    result.pagesFailed > 0
      ? `, ${result.pagesFailed} ${result.pagesFailed === 1 ? 'page' : 'pages'} failed (${byReason(result.pageFailures)})`
      : '';
  const note = privateNote(result);
  const pct = result.attempted > 0 ? ` (${((100 * result.ok) / result.attempted).toFixed(1)}% ok)` : '';
  // An interrupted run's open shard is kept, its pairs still pending: not lost, as 0 ok would suggest.
  const open =
    result.openShard > 0 ? ` (${result.openShard} of them stored in the open shard, kept for the next run)` : '';
  const pending = result.byStatus['pending'] ? `, ${result.byStatus['pending']} pending${open}` : '';
  // An input read again says so: its new pairs come from the rows added to it.
  const names = result.reread.slice(0, 3).map((path) => basename(path));
  const more = result.reread.length > names.length ? ` and ${result.reread.length - names.length} more` : '';
  const reread = names.length > 0 ? ` (${names.join(', ')}${more} changed: read again)` : '';
  const retried = result.retried > 0 ? `${result.retried} retried, ` : '';
  // Failures a later try may get past (a host down for a while): say how to retry them.
  const transient =
    result.transientFailures > 0
      ? `; ${result.transientFailures} transient (rerun with --retry-failed transient to retry them)`
      : '';
  return (
    `crawl${result.interrupted ? ' interrupted' : ''}: ${result.pagesFetched} pages${pagesFailed}, ${result.pairsFound} new pairs${reread}, ` +
    `${retried}${result.attempted} attempted, ${result.ok} stored${pct}, ${result.failed} failed; ` +
    `corpus: ${result.byStatus['ok'] ?? 0} ok in ${result.shards} shards${pending}${failures ? `; failures: ${failures}` : ''}${transient}; ` +
    `${(result.bytes / 1e6).toFixed(1)} MB in ${(result.durationMs / 1000).toFixed(1)} s -> ${result.out}` +
    (note === '' ? '' : `\n${note}`)
  );
}

export const crawlCommand = defineCommand({
  meta: {
    name: 'crawl',
    description:
      'Crawl alt-text pairs from pages, WARC/WAT files or URL lists into WebDataset shards and a SQLite manifest. Rerun the same command to continue after a kill.',
  },
  args: {
    seeds: { type: 'positional', required: false, description: 'Seed page URLs (same as --pages)' },
    ...cittyArgs(flags),
  },
  async run({ rawArgs }) {
    await runStageCommand<CrawlResult>({
      rawArgs,
      flags,
      required: { out: 'Missing --out DIR: the corpus directory to create or continue' },
      maxPositionals: Infinity,
      run: (values, hooks) => {
        const { allowPrivateNetwork, allowPrivateHost, pages, ...rest } = values as Record<string, unknown> & {
          allowPrivateNetwork?: boolean;
          allowPrivateHost?: string[];
          pages?: string[];
        };
        // The hosts travel as allowPrivateNetwork's list: checked here, an error names the flag typed.
        const blank = allowPrivateHost?.find((host) => host.trim() === '');
        if (blank !== undefined) {
          throw new UsageError(
            'ERR_INVALID_OPTION',
            `Flag --allow-private-host: expected HOST or HOST:PORT, got ${shown(blank)}`,
            {
              context: { stage: 'crawl', option: 'allowPrivateHost' },
            },
          );
        }
        return runCrawl({
          ...rest,
          pages: [...hooks.positionals, ...(pages ?? [])],
          ...(allowPrivateNetwork
            ? { allowPrivateNetwork: true }
            : allowPrivateHost
              ? { allowPrivateNetwork: allowPrivateHost }
              : {}),
          onProgress: (p) => hooks.onProgress(p),
          signal: hooks.signal,
        } as CrawlOptions);
      },
      summarize,
      interrupted: (result) => result.interrupted,
    });
  },
});
