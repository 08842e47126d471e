import { createHash } from 'node:crypto';
import type Database from 'better-sqlite3';
import { LRUCache } from 'lru-cache';
import { SkipItemError } from '../corpus/errors.ts';
import type { ShardWriter } from '../corpus/shards.ts';
import type { Fetcher } from './_fetcher.ts';
import { processImage, type ImagePolicy, type ProcessedImage } from './_image.ts';

interface PendingRow {
  rowid: number;
  key: string;
  url: string;
  caption: string;
  page_url: string | null;
}

export interface DownloadSettings {
  concurrency: number;
  image: ImagePolicy;
  /** Bytes of recent outcomes kept so that a URL met again in a later batch is not fetched again. @default RECENT_BYTES */
  recentBytes?: number;
  signal?: AbortSignal | undefined;
  onItem?: (ok: boolean) => void;
}

/** What the download phase did in this run. */
export interface DownloadCounts {
  attempted: number;
  ok: number;
  failed: number;
  bytes: number;
}

/**
 * What fetching and processing one URL gave. A failure keeps its status and message only: the
 * error object (its stack, its cause's sockets and buffers) would cost kilobytes a URL in the
 * cache of recent outcomes, which a crawl of dead links fills with failures.
 */
type Outcome =
  | { ok: true; image: ProcessedImage; sha256: string; bytes: number; httpStatus: number }
  | { ok: false; status: string; message: string };

/** Default memory for recent outcomes: thousands of resized images, the popular URLs of a crawl. */
export const RECENT_BYTES = 64 * 1024 * 1024;

/**
 * The outcomes of recently fetched URLs, least recently used dropped first once their size passes
 * `maxBytes` (an estimate: the URL, the image or message, and a few hundred bytes of bookkeeping).
 * The same image URL recurs all over a crawl (logos, icons, a site's banner), far beyond one batch
 * of pending rows. lru-cache evicts in constant time: a Map's own order did not, once a crawl of
 * mostly failures had evicted a few hundred thousand small entries.
 */
function recentOutcomes(maxBytes: number): LRUCache<string, Outcome> {
  return new LRUCache<string, Outcome>({
    maxSize: maxBytes,
    sizeCalculation: (outcome, url) =>
      url.length * 2 + 256 + (outcome.ok ? outcome.image.jpg.length : outcome.message.length * 2),
  });
}

/**
 * Fetches every `pending` pair, resizes it and hands it to the shard writer. Failures are recorded
 * at once, with the status that says why, against the shard being written; successes become `ok`
 * when their shard commits. A URL that several pending pairs share is fetched once: within a batch
 * they are one group, across batches the URL's outcome is remembered (up to `recentBytes`) and a
 * fetch already in flight is awaited. Every pair gets its own copy of the image in its shard.
 */
export async function downloadPending(
  db: Database.Database,
  fetcher: Fetcher,
  writer: ShardWriter,
  settings: DownloadSettings,
): Promise<DownloadCounts> {
  const select = db.prepare(
    `SELECT rowid, key, url, caption, page_url FROM pairs WHERE status = 'pending' AND rowid > ? ORDER BY rowid LIMIT ?`,
  );
  const fail = db.prepare(
    `UPDATE pairs SET status = ?, error_message = ?, http_status = ?, shard = ?, attempted_at = ? WHERE key = ? AND status = 'pending'`,
  );
  const counts: DownloadCounts = { attempted: 0, ok: 0, failed: 0, bytes: 0 };
  const batchSize = Math.max(256, settings.concurrency * 8);
  let cursor = 0;
  let queue: PendingRow[][] = [];
  let exhausted = false;

  // Groups of rows sharing one URL, read from the manifest a batch at a time.
  const nextGroup = (): PendingRow[] | undefined => {
    while (queue.length === 0 && !exhausted) {
      const rows = select.all(cursor, batchSize) as PendingRow[];
      if (rows.length === 0) {
        exhausted = true;
        break;
      }
      cursor = rows[rows.length - 1]?.rowid ?? cursor;
      const byUrl = new Map<string, PendingRow[]>();
      for (const row of rows) {
        if (writer.has(row.key)) continue; // already stored in the shard a kill interrupted
        const group = byUrl.get(row.url);
        if (group) group.push(row);
        else byUrl.set(row.url, [row]);
      }
      queue = [...byUrl.values()];
    }
    return queue.shift();
  };

  const recent = recentOutcomes(Math.max(1, settings.recentBytes ?? RECENT_BYTES));
  const inFlight = new Map<string, Promise<Outcome>>();
  const download = async (url: string): Promise<Outcome> => {
    try {
      const response = await fetcher.fetch(url, 'image');
      const image = await processImage(response.body, settings.image);
      const sha256 = createHash('sha256').update(response.body).digest('hex');
      // Once a download, however many pairs share its URL.
      counts.bytes += response.body.length;
      return { ok: true, image, sha256, bytes: response.body.length, httpStatus: response.status };
    } catch (err) {
      if (!(err instanceof SkipItemError)) throw err;
      return { ok: false, status: err.status, message: err.message };
    }
  };
  const outcomeOf = (url: string): Promise<Outcome> => {
    const known = recent.get(url);
    if (known !== undefined) return Promise.resolve(known);
    let pending = inFlight.get(url);
    if (pending === undefined) {
      pending = download(url).then(
        (outcome) => {
          inFlight.delete(url);
          // An interrupted fetch is no outcome: its pairs stay pending for the next run.
          if (outcome.ok || outcome.status !== 'aborted') recent.set(url, outcome);
          return outcome;
        },
        (err: unknown) => {
          inFlight.delete(url);
          throw err;
        },
      );
      inFlight.set(url, pending);
    }
    return pending;
  };

  /** Records a failed outcome on every pair of the group, against the shard it counts in. */
  const recordFailures = (group: PendingRow[], status: string, message: string): void => {
    if (status === 'aborted') return; // interrupted: stays pending for the next run
    const httpStatus = /^http_(\d{3})$/.exec(status)?.[1];
    const now = new Date().toISOString();
    for (const row of group) {
      fail.run(
        status,
        message,
        httpStatus === undefined ? null : Number(httpStatus),
        writer.attributeFailure(),
        now,
        row.key,
      );
      counts.failed++;
      settings.onItem?.(false);
    }
  };

  const handle = async (group: PendingRow[]): Promise<void> => {
    const first = group[0];
    if (first === undefined) return;
    counts.attempted += group.length;
    // A failure is an outcome, not a throw: `download` turns every SkipItemError into one.
    const outcome = await outcomeOf(first.url);
    if (!outcome.ok) {
      recordFailures(group, outcome.status, outcome.message);
      return;
    }
    const { image, sha256 } = outcome;
    for (const row of group) {
      await writer.add({
        jpg: image.jpg,
        meta: {
          key: row.key,
          url: row.url,
          page_url: row.page_url,
          caption: row.caption,
          width: image.width,
          height: image.height,
          original_width: image.originalWidth,
          original_height: image.originalHeight,
          sha256,
          bytes: outcome.bytes,
          http_status: outcome.httpStatus,
        },
      });
      counts.ok++;
      settings.onItem?.(true);
    }
  };

  const worker = async (): Promise<void> => {
    for (;;) {
      if (settings.signal?.aborted) return;
      const group = nextGroup();
      if (group === undefined) return;
      await handle(group);
    }
  };
  await Promise.all(Array.from({ length: settings.concurrency }, worker));
  return counts;
}
