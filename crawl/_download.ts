import { createHash } from 'node:crypto';
import type Database from 'better-sqlite3';
import { SkipItemError } from '../corpus/errors.ts';
import type { ShardWriter } from '../corpus/shards.ts';
import type { Fetcher } from './_fetcher.ts';
import { processImage, type ImagePolicy } from './_image.ts';

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
 * Fetches every `pending` pair, resizes it and hands it to the shard writer. Failures are recorded
 * at once, with the status that says why, against the shard being written; successes become `ok`
 * when their shard commits. A URL that several pending pairs share is fetched once per batch.
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

  const handle = async (group: PendingRow[]): Promise<void> => {
    const first = group[0];
    if (first === undefined) return;
    counts.attempted += group.length;
    try {
      const response = await fetcher.fetch(first.url, 'image');
      const image = await processImage(response.body, settings.image);
      const sha256 = createHash('sha256').update(response.body).digest('hex');
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
            bytes: response.body.length,
            http_status: response.status,
          },
        });
        counts.ok++;
        settings.onItem?.(true);
      }
      // Once a download, however many pairs share its URL.
      counts.bytes += response.body.length;
    } catch (err) {
      if (!(err instanceof SkipItemError)) throw err;
      if (err.status === 'aborted') return; // interrupted: stays pending for the next run
      const httpStatus = /^http_(\d{3})$/.exec(err.status)?.[1];
      const now = new Date().toISOString();
      for (const row of group) {
        fail.run(
          err.status,
          err.message,
          httpStatus === undefined ? null : Number(httpStatus),
          writer.current,
          now,
          row.key,
        );
        counts.failed++;
        settings.onItem?.(false);
      }
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
