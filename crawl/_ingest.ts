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

/**
 * Records candidates as `pending` pairs, in transactions of `batchSize`. A pair already in the
 * manifest is left as it is, so reading an input twice (after a kill) adds nothing twice.
 * Returns how many new pairs were recorded.
 */
export async function recordCandidates(
  db: Database.Database,
  candidates: AsyncIterable<Candidate> | Iterable<Candidate>,
  source: string,
  onBatch?: (inserted: number, read: number) => void,
  batchSize = 2000,
): Promise<{ read: number; inserted: number }> {
  const insertPairs = pairInserter(db);
  let batch: Candidate[] = [];
  let read = 0;
  let inserted = 0;
  const flush = db.transaction((rows: Candidate[]) => {
    inserted += insertPairs(rows, source);
  });
  for await (const candidate of candidates) {
    batch.push(candidate);
    read++;
    if (batch.length >= batchSize) {
      flush(batch);
      batch = [];
      onBatch?.(inserted, read);
    }
  }
  if (batch.length > 0) flush(batch);
  onBatch?.(inserted, read);
  return { read, inserted };
}
