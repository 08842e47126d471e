import type Database from 'better-sqlite3';
import { SkipItemError } from '../corpus/errors.ts';
import type { Candidate } from './_candidate.ts';
import type { Fetcher } from './_fetcher.ts';
import { extractFromHtml } from './_html-extract.ts';
import { pairKey } from './_ingest.ts';

export interface PageCrawlSettings {
  seeds: string[];
  maxDepth: number;
  maxPages: number;
  keepEmptyAlt: boolean;
  concurrency: number;
  signal?: AbortSignal | undefined;
  onPage?: (fetched: number, failed: number, queued: number) => void;
}

/** The site a URL belongs to for the same-site rule: its host name without a leading `www.`. */
export function siteOf(url: string): string {
  return new URL(url).hostname.replace(/^www\./, '');
}

function looksLikeHtml(contentType: string, body: Buffer): boolean {
  if (/html|xhtml/i.test(contentType)) return true;
  if (contentType !== '' && !/text\/plain|octet-stream/i.test(contentType)) return false;
  return /<(!doctype html|html|head|body)\b/i.test(body.subarray(0, 1024).toString('latin1'));
}

function charsetOf(contentType: string): string {
  return /charset\s*=\s*"?([\w-]+)/i.exec(contentType)?.[1] ?? 'utf-8';
}

function decode(body: Buffer, contentType: string): string {
  try {
    return new TextDecoder(charsetOf(contentType)).decode(body);
  } catch {
    return new TextDecoder('utf-8').decode(body);
  }
}

/**
 * Bounded same-site crawl. The frontier lives in the `pages` table, so a killed crawl resumes
 * where it stopped: each fetched page, its images and its new links are recorded in one
 * transaction, and pages still `pending` are fetched on the next run.
 */
export async function crawlPages(
  db: Database.Database,
  fetcher: Fetcher,
  settings: PageCrawlSettings,
): Promise<{ fetched: number; found: number }> {
  const addPage = db.prepare(`INSERT OR IGNORE INTO pages (url, depth, status) VALUES (?, ?, 'pending')`);
  const insertPair = db.prepare(
    `INSERT OR IGNORE INTO pairs (key, url, page_url, caption, status, source) VALUES (?, ?, ?, ?, 'pending', 'pages')`,
  );
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
  const inFlight = new Set<string>();

  const record = db.transaction((page: { url: string; depth: number }, candidates: Candidate[], links: string[]) => {
    let inserted = 0;
    for (const c of candidates)
      inserted += insertPair.run(pairKey(c.caption, c.url), c.url, c.pageUrl, c.caption).changes;
    if (page.depth < settings.maxDepth) {
      const site = siteOf(page.url);
      for (const link of links) if (siteOf(link) === site) addPage.run(link, page.depth + 1);
    }
    finishPage.run('ok', null, candidates.length, new Date().toISOString(), page.url);
    return inserted;
  });

  const processPage = async (page: { url: string; depth: number }): Promise<void> => {
    try {
      const response = await fetcher.fetch(page.url, 'page');
      if (!looksLikeHtml(response.contentType, response.body)) {
        throw new SkipItemError('not_html', `Content-Type '${response.contentType}' is not HTML`);
      }
      const { images, links } = extractFromHtml(decode(response.body, response.contentType), response.url);
      const candidates: Candidate[] = images
        .filter((img) => img.hasAlt || settings.keepEmptyAlt)
        .map((img) => ({ url: img.url, caption: img.alt, pageUrl: page.url }));
      found += record(page, candidates, links);
      fetched++;
    } catch (err) {
      if (!(err instanceof SkipItemError)) throw err;
      finishPage.run(err.status, err.message, null, new Date().toISOString(), page.url);
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
  return { fetched, found };
}
