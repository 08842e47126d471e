/**
 * `altforge demo`: the main job on built-in data, end to end. It builds a local web site from real
 * images (Twemoji, with the alt-texts and failures of the real web in known proportions), serves
 * it on 127.0.0.1 and crawls it into a corpus, as `altforge crawl` would crawl the web; then
 * registers test sets made from the emoji packages, dedups against the held-out one, filters with
 * thresholds scaled to the demo, trains a vanilla and an NLIP model with the same seed, scores
 * noise, evaluates both and writes the report (`_pipeline.ts`). `upTo` stops after a stage.
 *
 * Layout of `out`: `site/` the generated site (cached: rebuilt only for other options),
 * `corpus/` the crawl's manifest and shards, `demo.json` the options the directory was made with,
 * `access.log` every request the site answered, `benchmarks/` + `benchmarks.sqlite` the test sets
 * and their registry, `runs/vanilla`, `runs/nlip` the training runs, `results.sqlite` the eval
 * results, `compare.json` both models' metrics, `report/` the HTML report.
 *
 * Rerunning continues: the crawl resumes from its manifest, training resumes from its checkpoints,
 * and the other stages recompute. The manifest keys pairs by caption +
 * URL, so the site must keep its origin between runs: the port is kept in `site/port.json` and
 * asked for again. When another program holds it by then, the site is served on a free port
 * instead and the result says `originChanged`: the crawl then records the site again under the
 * new URLs, beside the pairs of the old ones (the manifest is a ledger; nothing is deleted).
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { AltforgeError, UsageError } from '../corpus/errors.ts';
import { refuseNonDirectory } from '../corpus/paths.ts';
import { runCrawl, type CrawlResult } from '../crawl/index.ts';
import { DemoInterrupted, runDemoStages, type DemoStagesResult } from './_pipeline.ts';
import { resolveDemoOptions, type DemoOptions, type DemoProgress } from './options.ts';
import { serveDemoSite, type DemoServer } from './server.ts';
import { buildDemoSite, type AltKind, type BuiltSite, type ImageFate } from './site.ts';

export { DEMO_STAGES, type DemoOptions, type DemoProgress, type DemoStage } from './options.ts';
export { demoThresholds, type DemoRun, type DemoStagesResult, type DemoThresholds } from './_pipeline.ts';
export { ALT_KINDS, IMAGE_FATES, MAX_IMAGES, buildDemoSite, readDemoSite } from './site.ts';
export type {
  AltKind,
  AltMix,
  BuiltSite,
  DemoImage,
  DemoPage,
  DemoSite,
  DemoSiteOptions,
  DemoSiteParams,
  FateMix,
  ImageFate,
  ImageMarkup,
} from './site.ts';
export { serveDemoSite } from './server.ts';
export type { DemoServer, ServeOptions } from './server.ts';

/** The demo's record of the options `out` was made with. */
const STATE_FILE = 'demo.json';
/** The port the site was last served on, inside the site directory. */
const PORT_FILE = 'port.json';
/** Samples per shard: a few shards for the default demo, so later stages have several to spread over. */
const SHARD_SIZE = 1000;

/** What the site stage built and where it was served. */
export interface DemoSiteSummary {
  /** The site directory (`<out>/site`). */
  dir: string;
  /** Where it was served in this run (`http://127.0.0.1:PORT`). */
  origin: string;
  /** HTML pages, the home page included. */
  pages: number;
  images: number;
  /** Images per alt-text kind. */
  byKind: Record<AltKind, number>;
  /** Images per fate (fetched fine, too small, broken, robots-disallowed, opted out). */
  byFate: Record<ImageFate, number>;
  /** True when the site of an earlier run was kept. */
  reused: boolean;
  /** Time spent building (or checking) the site. */
  durationMs: number;
  /**
   * True when an earlier run served the site at another origin (its port was taken): the crawl
   * then records the site again under the new URLs.
   */
  originChanged: boolean;
}

/** What a demo run did. */
export interface DemoResult {
  /** The demo directory, absolute. */
  out: string;
  /** The site stage; null when the run was interrupted before the site was complete. */
  site: DemoSiteSummary | null;
  /** The crawl stage (its corpus is `<out>/corpus`); null when the run was interrupted before it. */
  crawl: CrawlResult | null;
  /** The stages after the crawl (dedup, filter, train, score, eval, report); null when `upTo` is `crawl` or the run stopped before them. */
  stages: DemoStagesResult | null;
  /** True when the signal stopped the run early; run again to continue. */
  interrupted: boolean;
  durationMs: number;
}

interface DemoState {
  generator: 'altforge-demo';
  images: number;
  seed: number;
  /** Origin the corpus was last crawled from. */
  origin: string | null;
}

function writeJson(path: string, value: unknown): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, JSON.stringify(value, null, 2) + '\n');
  renameSync(tmp, path);
}

function readJson(path: string): unknown {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as unknown;
  } catch {
    return undefined;
  }
}

/**
 * Makes sure `out` is this demo's directory: new, empty, or made by an earlier run with the same
 * images and seed (a corpus of another site would mix two sites). Records the options before
 * anything else is written, so what a killed run leaves behind is recognised as the demo's.
 */
function claimOut(out: string, images: number, seed: number): DemoState {
  refuseNonDirectory(out, 'Demo directory', 'demo');
  const statePath = join(out, STATE_FILE);
  const previous = existsSync(statePath) ? (readJson(statePath) as Partial<DemoState> | undefined) : undefined;
  if (previous?.generator === 'altforge-demo') {
    if (previous.images !== images || previous.seed !== seed) {
      throw new UsageError(
        'ERR_DEMO_MISMATCH',
        `'${out}' holds a demo of --images ${String(previous.images)} --seed ${String(previous.seed)}: ` +
          `run it with those again, or give another --out`,
        { context: { path: out, stage: 'demo' } },
      );
    }
    return {
      generator: 'altforge-demo',
      images,
      seed,
      origin: typeof previous.origin === 'string' ? previous.origin : null,
    };
  }
  if (existsSync(out) && readdirSync(out).length > 0) {
    throw new UsageError(
      'ERR_NOT_A_DEMO',
      `Directory '${out}' is not empty and holds no ${STATE_FILE}: refusing to write into it`,
      {
        context: { path: out, stage: 'demo' },
      },
    );
  }
  const state: DemoState = { generator: 'altforge-demo', images, seed, origin: null };
  mkdirSync(out, { recursive: true });
  writeJson(statePath, state);
  return state;
}

/**
 * The port a fresh demo serves its site on when it is free. The origin is part of every image URL,
 * hence of every pair's key (md5 of caption and URL), and training orders pairs by key: the same
 * port gives the same keys and the same training run after run.
 */
export const DEMO_PORT = 47613;

/** Serves the site on the port of the last run, else {@link DEMO_PORT}, when free; else on any free port. */
async function serveStable(siteDir: string, accessLog: string): Promise<DemoServer> {
  const saved = (readJson(join(siteDir, PORT_FILE)) as { port?: unknown } | undefined)?.port;
  let server: DemoServer | undefined;
  for (const port of [saved, DEMO_PORT]) {
    if (server !== undefined || typeof port !== 'number' || !Number.isInteger(port) || port <= 0 || port >= 65536)
      continue;
    try {
      server = await serveDemoSite(siteDir, { port, accessLog });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'EADDRINUSE' && code !== 'EACCES') throw err;
    }
  }
  server ??= await serveDemoSite(siteDir, { port: 0, accessLog });
  writeJson(join(siteDir, PORT_FILE), { port: server.port });
  return server;
}

function summarizeSite(built: BuiltSite, origin: string, originChanged: boolean): DemoSiteSummary {
  return {
    dir: built.dir,
    origin,
    pages: built.site.pages.length,
    images: built.site.images.length,
    byKind: built.site.byKind,
    byFate: built.site.byFate,
    reused: built.reused,
    durationMs: built.durationMs,
    originChanged,
  };
}

/**
 * Runs the demo: builds the site under `<out>/site` (or keeps it), serves it on 127.0.0.1, and
 * crawls it into `<out>/corpus` with the crawl's defaults (robots.txt and X-Robots-Tag obeyed,
 * missing and empty alts skipped), the SSRF guard lifted for the site's host and port only.
 * Run again with the same options to continue after an interruption; a finished demo run again
 * changes nothing.
 */
export async function runDemo(options: DemoOptions = {}): Promise<DemoResult> {
  const started = Date.now();
  const opts = resolveDemoOptions(options);
  const out = resolve(opts.out);
  const signal = opts.signal;
  const report = (p: DemoProgress) => opts.onProgress?.(p);
  const state = claimOut(out, opts.images, opts.seed);
  const interrupted = (site: DemoSiteSummary | null, crawl: CrawlResult | null): DemoResult => ({
    out,
    site,
    crawl,
    stages: null,
    interrupted: true,
    durationMs: Date.now() - started,
  });

  let built: BuiltSite;
  try {
    built = await buildDemoSite(join(out, 'site'), {
      images: opts.images,
      seed: opts.seed,
      ...(signal ? { signal } : {}),
      onProgress: (done, total) => report({ stage: 'site', phase: 'site', done, total, ok: done, failed: 0 }),
    });
  } catch (err) {
    if (err instanceof AltforgeError && err.code === 'ERR_ABORTED') return interrupted(null, null);
    throw err;
  }
  const server = await serveStable(built.dir, join(out, 'access.log'));
  let site: DemoSiteSummary;
  let crawl: CrawlResult;
  try {
    const originChanged = state.origin !== null && state.origin !== server.origin;
    site = summarizeSite(built, server.origin, originChanged);
    writeJson(join(out, STATE_FILE), { ...state, origin: server.origin } satisfies DemoState);
    opts.onLog?.(`site: ${site.images} images on ${site.pages} pages, served at ${site.origin}/`);
    if (signal?.aborted) return interrupted(site, null);

    crawl = await runCrawl({
      out: join(out, 'corpus'),
      pages: [`${server.origin}/`],
      allowPrivateNetwork: [`127.0.0.1:${server.port}`],
      maxDepth: built.site.maxDepth,
      // The site is finite and every page is within maxDepth: no page budget is needed (pages of
      // an earlier origin count against it, so it must not be the site's own page count).
      maxPages: 1_000_000,
      shardSize: SHARD_SIZE,
      onProgress: (p) => report({ stage: 'crawl', ...p }),
      ...(signal ? { signal } : {}),
    });
  } finally {
    await server.close();
  }
  opts.onLog?.(
    `crawl: ${crawl.byStatus['ok'] ?? 0} pairs stored in ${crawl.shards} shards (` +
      Object.entries(crawl.byStatus)
        .filter(([status]) => status !== 'ok')
        .map(([status, n]) => `${n} ${status}`)
        .join(', ') +
      `) -> ${crawl.out}`,
  );
  if (crawl.interrupted || opts.upTo === 'crawl') {
    return { out, site, crawl, stages: null, interrupted: crawl.interrupted, durationMs: Date.now() - started };
  }
  try {
    const stages = await runDemoStages(out, join(out, 'corpus'), built.site, opts);
    return { out, site, crawl, stages, interrupted: signal?.aborted === true, durationMs: Date.now() - started };
  } catch (err) {
    if (err instanceof DemoInterrupted || (err instanceof AltforgeError && err.code === 'ERR_ABORTED')) {
      return { ...interrupted(site, crawl), durationMs: Date.now() - started };
    }
    throw err;
  }
}
