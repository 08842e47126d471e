import { hash } from 'node:crypto';
import type Database from 'better-sqlite3';
import type { Candidate } from './_candidate.ts';

/** The stable WebDataset key of a pair: md5 of caption + URL, as cc2dataset's uid. */
export function pairKey(caption: string, url: string): string {
  return hash('md5', caption + url);
}

/**
 * Returns a function that records candidates as `pending` pairs and says how many were new. A pair
 * already in the manifest is left as it is. The caller runs it inside its own transaction.
 */
export function pairInserter(db: Database.Database): (candidates: readonly Candidate[], source: string) => number {
  const insert = db.prepare(
    `INSERT OR IGNORE INTO pairs (key, url, page_url, caption, status, source) VALUES (?, ?, ?, ?, 'pending', ?)`,
  );
  return (candidates, source) => {
    let inserted = 0;
    for (const c of candidates)
      inserted += insert.run(pairKey(c.caption, c.url), c.url, c.pageUrl, c.caption, source).changes;
    return inserted;
  };
}

/** Rows per multi-row INSERT statement (5 parameters each; SQLite allows 32,766 per statement). */
const ROWS_PER_STATEMENT = 64;

/**
 * Records candidates (one at a time, or in arrays, as `readWarcRecords` gives them) as `pending`
 * pairs, in transactions of about `batchSize`. A pair already in the manifest is left as it is, so
 * reading an input twice (after a kill) adds nothing twice. Resolves with how many pairs were read
 * and how many were new.
 */
export async function recordCandidates(
  db: Database.Database,
  candidates: AsyncIterable<Candidate | readonly Candidate[]> | Iterable<Candidate | readonly Candidate[]>,
  source: string,
  onBatch?: (inserted: number, read: number) => void,
  batchSize = 4000,
): Promise<{ read: number; inserted: number }> {
  const columns = `INSERT OR IGNORE INTO pairs (key, url, page_url, caption, status, source) VALUES `;
  const row = `(?, ?, ?, ?, 'pending', ?)`;
  const one = db.prepare(columns + row);
  const many = db.prepare(columns + Array.from({ length: ROWS_PER_STATEMENT }, () => row).join(', '));
  const args: unknown[] = Array.from({ length: ROWS_PER_STATEMENT * 5 });
  // The md5 keys are random: inserting a batch in key order walks the key index once, left to
  // right, instead of jumping across it for every row.
  const flush = db.transaction((batch: readonly Candidate[]): number => {
    const keyed = batch.map((c) => ({ key: pairKey(c.caption, c.url), c }));
    keyed.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    let inserted = 0;
    let i = 0;
    for (; i + ROWS_PER_STATEMENT <= keyed.length; i += ROWS_PER_STATEMENT) {
      for (let j = 0; j < ROWS_PER_STATEMENT; j++) {
        const { key, c } = keyed[i + j] as (typeof keyed)[number];
        const o = 5 * j;
        args[o] = key;
        args[o + 1] = c.url;
        args[o + 2] = c.pageUrl;
        args[o + 3] = c.caption;
        args[o + 4] = source;
      }
      inserted += many.run(args).changes;
    }
    for (const { key, c } of keyed.slice(i)) inserted += one.run(key, c.url, c.pageUrl, c.caption, source).changes;
    return inserted;
  });
  let batch: Candidate[] = [];
  let read = 0;
  let inserted = 0;
  for await (const item of candidates) {
    if (Array.isArray(item)) {
      for (const candidate of item as readonly Candidate[]) batch.push(candidate);
      read += item.length;
    } else {
      batch.push(item as Candidate);
      read++;
    }
    if (batch.length >= batchSize) {
      inserted += flush(batch);
      batch = [];
      onBatch?.(inserted, read);
    }
  }
  if (batch.length > 0 || read === 0) {
    inserted += flush(batch);
    onBatch?.(inserted, read);
  }
  return { read, inserted };
}
