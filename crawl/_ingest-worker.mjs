// @ts-check
/**
 * The threads of `recordCandidates` (crawl/_ingest.ts), each with its own connection to the
 * manifest, so that the reading thread never waits for SQLite or the disk:
 * - `insert`: keys, sorts and inserts the batches the reading thread posts, one transaction a
 *   batch, and leaves the WAL alone;
 * - `checkpoint`: copies the WAL into the database (`PRAGMA wal_checkpoint(PASSIVE)`, which does
 *   not block the writer) when asked, after a commit. Its fsyncs would otherwise stall the inserts
 *   or, left to the end, the close of the manifest.
 * Plain JavaScript, started without a loader: a TypeScript worker would spend longer starting
 * (tsx) than a large file takes to record.
 *
 * Messages in: a {@link Batch} at a time (`insert`) or `{ checkpoint: true }` (`checkpoint`), then
 * `{ end: true }`. Messages out: `{ inserted }` per batch committed, `{ checkpointed: true }`,
 * `{ closed: true }` at the end, `{ error, code }` when SQLite refuses (then the thread ends).
 */
import { hash } from 'node:crypto';
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';

/**
 * A batch as `_ingest.ts` posts it: per candidate, in `bytes`, the UTF-8 caption and URL back to
 * back, then the page URL; `lengths` holds their byte lengths (page: -1 for none, -2 for the
 * previous candidate's).
 * @typedef {{ bytes: ArrayBuffer, used: number, lengths: ArrayBuffer, count: number }} Batch
 */

/** @type {{ role: 'insert' | 'checkpoint', path: string, source: string, rowsPerStatement: number }} */
const { role, path, source, rowsPerStatement } = workerData;
const port = /** @type {import('node:worker_threads').MessagePort} */ (parentPort);

/** @param {Database.Database} db */
function inserter(db) {
  const columns = `INSERT OR IGNORE INTO pairs (key, url, page_url, caption, status, source) VALUES `;
  const row = `(?, ?, ?, ?, 'pending', ?)`;
  const one = db.prepare(columns + row);
  const many = db.prepare(columns + Array.from({ length: rowsPerStatement }, () => row).join(', '));
  /** @type {unknown[]} */
  const args = Array.from({ length: rowsPerStatement * 5 });
  return db.transaction((/** @type {Batch} */ batch) => {
    const bytes = Buffer.from(batch.bytes, 0, batch.used);
    const lengths = new Int32Array(batch.lengths);
    /** @type {{ key: string, url: string, caption: string, page: string | null }[]} */
    const rows = Array.from({ length: batch.count });
    let pageUrl = null;
    for (let i = 0, at = 0; i < batch.count; i++) {
      const urlStart = at + (lengths[3 * i] ?? 0);
      const urlEnd = urlStart + (lengths[3 * i + 1] ?? 0);
      const pageBytes = lengths[3 * i + 2] ?? -1;
      if (pageBytes === -1) pageUrl = null;
      else if (pageBytes >= 0) pageUrl = bytes.toString('utf8', urlEnd, urlEnd + pageBytes);
      rows[i] = {
        key: hash('md5', bytes.subarray(at, urlEnd)),
        url: bytes.toString('utf8', urlStart, urlEnd),
        caption: bytes.toString('utf8', at, urlStart),
        page: pageUrl,
      };
      at = urlEnd + Math.max(pageBytes, 0);
    }
    // The md5 keys are random: in key order the key index is walked once, left to right.
    rows.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    let inserted = 0;
    let k = 0;
    for (; k + rowsPerStatement <= rows.length; k += rowsPerStatement) {
      for (let j = 0; j < rowsPerStatement; j++) {
        const { key, url, page, caption } = rows[k + j];
        const o = 5 * j;
        args[o] = key;
        args[o + 1] = url;
        args[o + 2] = page;
        args[o + 3] = caption;
        args[o + 4] = source;
      }
      inserted += many.run(args).changes;
    }
    for (; k < rows.length; k++) {
      const { key, url, page, caption } = rows[k];
      inserted += one.run(key, url, page, caption, source).changes;
    }
    return inserted;
  });
}

/** @type {Database.Database | null} */
let db = null;
/** @type {((batch: Batch) => number) | null} */
let insert = null;

function open() {
  db = new Database(path);
  db.pragma('synchronous = NORMAL');
  db.pragma('busy_timeout = 10000');
  if (role === 'insert') {
    db.pragma('cache_size = -65536');
    // The checkpoint thread does this work; the manifest's own interval stays as a bound on the WAL.
    db.pragma('wal_autocheckpoint = 20000');
    insert = inserter(db);
  }
}

/** Closes the connection, says so when asked to, and ends the thread (nothing else keeps it alive). */
function close(/** @type {object | null} */ reply) {
  db?.close();
  db = null;
  if (reply !== null) port.postMessage(reply);
  port.close();
}

port.on('message', (/** @type {Batch | { checkpoint: true } | { end: true }} */ message) => {
  try {
    if (db === null && !('end' in message)) open();
    if ('bytes' in message) {
      port.postMessage({ inserted: /** @type {(batch: Batch) => number} */ (insert)(message) });
    } else if ('checkpoint' in message) {
      /** @type {Database.Database} */ (db).pragma('wal_checkpoint(PASSIVE)');
      port.postMessage({ checkpointed: true });
    } else close({ closed: true });
  } catch (error) {
    const { message: text, code } = /** @type {Error & { code?: string }} */ (error);
    close({ error: text, code });
  }
});
