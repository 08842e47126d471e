// @ts-check
/**
 * The threads of `recordCandidates` (crawl/_ingest.ts), each with its own connection to the
 * manifest, so that the reading thread never waits for SQLite or the disk:
 * - `insert`: keys the batches the reading thread posts and stages them in a scratch table, then
 *   merges that into `pairs`, one transaction a merge (see {@link stager}), and leaves
 *   the WAL alone unless asked;
 * - `checkpoint`: copies the WAL into the database (`PRAGMA wal_checkpoint(PASSIVE)`, which does
 *   not block the writer) when asked, after a merge. Its fsyncs would otherwise stall the inserts
 *   or, left to the end, the close of the manifest.
 * Plain JavaScript, started without a loader: a TypeScript worker would spend longer starting
 * (tsx) than a large file takes to record.
 *
 * Messages in: a {@link Batch} at a time (`insert`) or `{ checkpoint: true }` (either), then
 * `{ end: true }`. Messages out: `{ staged, inserted }` per batch (`inserted`: the new pairs of the
 * merge it set off, or 0), `{ inserted }` for the merge of what was left at the end,
 * `{ checkpointed: true }`, `{ closed: true }` at the end, `{ error, code }` when SQLite refuses
 * (then the thread ends).
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

/** @type {{ role: 'insert' | 'checkpoint', path: string, source: string, rowsPerStatement: number, mergeRows: number }} */
const { role, path, source, rowsPerStatement, mergeRows } = workerData;
const port = /** @type {import('node:worker_threads').MessagePort} */ (parentPort);

/**
 * Stages the batches in a scratch table of the connection's own temporary database, in the order
 * they came, and merges them into `pairs`, `mergeRows` at a time (and at the end), in one
 * transaction a merge. Committed one batch at a time, the random md5 keys land each in a different
 * leaf of the `key` index once it has more leaves than a batch has rows, and every commit writes
 * each leaf it touched whole into the WAL (and the checkpoint again into the database): measured,
 * 1.2 WAL pages of 4 KiB per pair of ~200 bytes at 3M pairs. In one transaction a leaf is written
 * once however many keys it takes. The merge keeps the order of the batches, each in key order as
 * before: new pairs get their rowids, and so their place in the download, as they always did. In
 * key order over the whole merge it ran faster (3M pairs: 15 s against 27 s), but a URL that
 * recurs on nearby rows under another caption (an image twice on a page) would be fetched once
 * for each, its rows a million apart instead of a few thousand (BENCHMARKS.md, crawl, session 17).
 * The scratch table lives and dies with the connection (SQLite unlinks temporary files when it
 * opens them), so a kill leaves nothing behind: what was merged is a prefix of the input.
 * @param {Database.Database} db
 */
function stager(db) {
  db.exec(
    'CREATE TEMP TABLE scratch (batch INTEGER NOT NULL, key TEXT NOT NULL, url TEXT NOT NULL, page_url TEXT, caption TEXT NOT NULL)',
  );
  const columns = `INSERT INTO temp.scratch (batch, key, url, page_url, caption) VALUES `;
  const row = `(?, ?, ?, ?, ?)`;
  const one = db.prepare(columns + row);
  const many = db.prepare(columns + Array.from({ length: rowsPerStatement }, () => row).join(', '));
  /** @type {unknown[]} */
  const args = Array.from({ length: rowsPerStatement * 5 });
  // Batch after batch, each in key order, and among rows of one key in the order they came: the
  // first is kept, as before.
  const insert = db.prepare(
    `INSERT OR IGNORE INTO pairs (key, url, page_url, caption, status, source)
     SELECT key, url, page_url, caption, 'pending', ? FROM temp.scratch ORDER BY batch, key, rowid`,
  );
  const clear = db.prepare('DELETE FROM temp.scratch');
  let staged = 0;
  let batches = 0;
  const stage = db.transaction((/** @type {Batch} */ batch) => {
    const bytes = Buffer.from(batch.bytes, 0, batch.used);
    const lengths = new Int32Array(batch.lengths);
    /** @type {string | null} */
    let pageUrl = null;
    let j = 0;
    for (let i = 0, at = 0; i < batch.count; i++) {
      const urlStart = at + (lengths[3 * i] ?? 0);
      const urlEnd = urlStart + (lengths[3 * i + 1] ?? 0);
      const pageBytes = lengths[3 * i + 2] ?? -1;
      if (pageBytes === -1) pageUrl = null;
      else if (pageBytes >= 0) pageUrl = bytes.toString('utf8', urlEnd, urlEnd + pageBytes);
      const o = 5 * j;
      args[o] = batches;
      args[o + 1] = hash('md5', bytes.subarray(at, urlEnd));
      args[o + 2] = bytes.toString('utf8', urlStart, urlEnd);
      args[o + 3] = pageUrl;
      args[o + 4] = bytes.toString('utf8', at, urlStart);
      at = urlEnd + Math.max(pageBytes, 0);
      if (++j === rowsPerStatement) {
        many.run(args);
        j = 0;
      }
    }
    for (let k = 0; k < j; k++) one.run(args.slice(5 * k, 5 * k + 5));
    staged += batch.count;
    batches++;
  });
  const mergeAll = db.transaction(() => {
    const { changes } = insert.run(source);
    clear.run();
    return changes;
  });
  const merge = () => {
    const inserted = mergeAll();
    staged = 0;
    return inserted;
  };
  return {
    /** Stages a batch, then merges the scratch table if it holds `mergeRows` pairs; returns the pairs that merge added. */
    add(/** @type {Batch} */ batch) {
      stage(batch);
      return staged >= mergeRows ? merge() : 0;
    },
    /** Merges what is staged; returns the pairs it added. */
    flush() {
      return staged > 0 ? merge() : 0;
    },
  };
}

/** @type {Database.Database | null} */
let db = null;
/** @type {ReturnType<typeof stager> | null} */
let pairs = null;

function open() {
  db = new Database(path);
  db.pragma('synchronous = NORMAL');
  db.pragma('busy_timeout = 10000');
  if (role === 'insert') {
    // A merge walks the key index once, in order: a page cache larger than the default gained
    // nothing (64 MiB: same time at 3M pairs, 110 MB more memory, as the sorter takes as much).
    db.pragma('cache_size = -16384');
    // `recordCandidates` asks for a checkpoint after each merge, of the checkpoint thread or, if
    // that one has failed, of this one. Left on, the automatic one ran here after every merge
    // (~0.6 s a merge of 1M pairs) while the checkpoint thread stood idle.
    db.pragma('wal_autocheckpoint = 0');
    pairs = stager(db);
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
      port.postMessage({
        staged: message.count,
        inserted: /** @type {NonNullable<typeof pairs>} */ (pairs).add(message),
      });
    } else if ('checkpoint' in message) {
      /** @type {Database.Database} */ (db).pragma('wal_checkpoint(PASSIVE)');
      port.postMessage({ checkpointed: true });
    } else {
      if (pairs !== null) port.postMessage({ inserted: pairs.flush() });
      close({ closed: true });
    }
  } catch (error) {
    const { message: text, code } = /** @type {Error & { code?: string }} */ (error);
    close({ error: text, code });
  }
});
