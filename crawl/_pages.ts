import type Database from 'better-sqlite3';
import { SkipItemError } from '../corpus/errors.ts';
import type { Candidate } from './_candidate.ts';
import type { Fetcher } from './_fetcher.ts';
import { extractFromHtml } from './_html-extract.ts';
import { decodeHtml, imageCandidates, isHtmlType, sniffsAsHtml } from './_html-page.ts';
import { pairInserter } from './_ingest.ts';

export interface PageCrawlSettings {
  seeds: string[];
  maxDepth: number;
  maxPages: number;
  keepEmptyAlt: boolean;
  /** Record no pair of a page whose robots meta opts it out of AI use (the page's status: `opted_out`). */
  respectMetaRobots: boolean;
  /** Our robot's name: a meta named so counts as `robots`. */
  robot: string;
  concurrency: number;
  signal?: AbortSignal | undefined;
  onPage?: (fetched: number, failed: number, queued: number) => void;
}

/** The site a URL belongs to for the same-site rule: its host name without a leading `www.`. */
export function siteOf(url: string): string {
  return new URL(url).hostname.replace(/^www\./, '');
}

/**
 * Bounded same-site crawl. The frontier lives in the `pages` table, so a killed crawl resumes
 * where it stopped: each fetched page, its images and its new links are recorded in one
 * transaction, and pages still `pending` are fetched on the next run (those beyond `maxDepth`
 * once a run allows their depth).
 */
export async function crawlPages(
  db: Database.Database,
  fetcher: Fetcher,
  settings: PageCrawlSettings,
): Promise<{ fetched: number; failed: number; found: number; failures: Record<string, number> }> {
  // A page found again nearer a seed (given as a seed itself, linked from a shallower page) takes
  // the smaller depth while it waits: one recorded beyond an earlier run's limit would otherwise
  // never come within this run's.
  const addPage = db.prepare(
    `INSERT INTO pages (url, depth, status) VALUES (?, ?, 'pending')
     ON CONFLICT (url) DO UPDATE SET depth = excluded.depth WHERE excluded.depth < pages.depth AND pages.status = 'pending'`,
  );
  const insertPairs = pairInserter(db);
  const finishPage = db.prepare(
    `UPDATE pages SET status = ?, error_message = ?, images = ?, fetched_at = ? WHERE url = ?`,
  );
  db.transaction(() => {
    for (const seed of settings.seeds) addPage.run(seed, 0);
  })();

  const visited = () =>
    (db.prepare(`SELECT COUNT(*) AS n FROM pages WHERE status != 'pending'`).get() as { n: number }).n;
  let fetched = 0;
  let failed = 0;
  let found = 0;
  /** Pages that failed in this run, by the status recorded. */
  const failures: Record<string, number> = {};
  const inFlight = new Set<string>();

  const record = db.transaction(
    (page: { url: string; depth: number }, candidates: Candidate[], links: string[], optOut: string | null) => {
      // An opted-out page's links are still followed: the directive is about its images only.
      const inserted = optOut === null ? insertPairs(candidates, 'pages') : 0;
      // The links of a page at the depth limit are recorded too, one level beyond it, and wait
      // there: a rerun with a larger maxDepth finds them pending (a page is not kept to be parsed
      // again), as it finds the pages the page budget left.
      const site = siteOf(page.url);
      for (const link of links) if (siteOf(link) === site) addPage.run(link, page.depth + 1);
      finishPage.run(
        optOut === null ? 'ok' : 'opted_out',
        optOut === null ? null : `<meta name="robots"> ${optOut}: its ${candidates.length} images not recorded`,
        candidates.length,
        new Date().toISOString(),
        page.url,
      );
      return inserted;
    },
  );

  const processPage = async (page: { url: string; depth: number }): Promise<void> => {
    try {
      const response = await fetcher.fetch(page.url, 'page');
      const type = response.contentType;
      const untyped = type === '' || /text\/plain|octet-stream/i.test(type);
      if (!isHtmlType(type) && !(untyped && sniffsAsHtml(response.body))) {
        throw new SkipItemError('not_html', `Content-Type '${response.contentType}' is not HTML`);
      }
      const { images, links, optOut } = extractFromHtml(decodeHtml(response.body, type), response.url, {
        robot: settings.robot,
      });
      const candidates = imageCandidates(images, page.url, settings.keepEmptyAlt);
      found += record(page, candidates, links, settings.respectMetaRobots ? optOut : null);
      fetched++;
    } catch (err) {
      if (!(err instanceof SkipItemError)) throw err;
      if (err.status === 'aborted') return; // interrupted: stays pending for the next run
      finishPage.run(err.status, err.message, null, new Date().toISOString(), page.url);
      failures[err.status] = (failures[err.status] ?? 0) + 1;
      failed++;
    }
  };

  const nextPending = db.prepare(
    `SELECT url, depth FROM pages WHERE status = 'pending' AND depth <= ? ORDER BY depth, rowid LIMIT ?`,
  );
  let budget = settings.maxPages - visited();
  while (budget > 0 && !settings.signal?.aborted) {
    const batch = (
      nextPending.all(settings.maxDepth, Math.min(budget, settings.concurrency * 4)) as { url: string; depth: number }[]
    ).filter((p) => !inFlight.has(p.url));
    if (batch.length === 0) break;
    // A batch is one depth level at most wide; pages of the batch run concurrently.
    const depth = batch[0]?.depth;
    const level = batch.filter((p) => p.depth === depth).slice(0, budget);
    budget -= level.length;
    let index = 0;
    const worker = async () => {
      while (index < level.length && !settings.signal?.aborted) {
        const page = level[index++];
        if (page === undefined) break;
        inFlight.add(page.url);
        await processPage(page);
        inFlight.delete(page.url);
        settings.onPage?.(fetched, failed, 0);
      }
    };
    await Promise.all(Array.from({ length: Math.min(settings.concurrency, level.length) }, worker));
  }
  return { fetched, failed, found, failures };
}
