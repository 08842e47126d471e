/**
 * How to read each pair's filter decision, for every stage that reads them. The filter records a
 * decision per rejected pair in its own table, `filter_decisions (pair = pairs.rowid, reason)`: a
 * run decides nearly every pair, and a narrow table of its own takes a third of the writes that a
 * column of `pairs` took (every page of the wide ledger rewritten). Manifests filtered before the
 * table existed hold the reason in a column, `pairs.filter_reason`, until the filter runs on them
 * again (its migration moves them); both layouts read the same through {@link filterReasonSql}.
 */
import type Database from 'better-sqlite3';
import { hasColumn, hasTable } from './manifest.ts';

/** The filter's table of decisions: one row per rejected pair; kept pairs have none. */
export const FILTER_DECISIONS = 'filter_decisions';

/** SQL pieces that read a pair's filter reason (NULL when kept). */
export interface FilterReasonSql {
  /** A `FROM` clause over `pairs` (not aliased) that makes {@link reason} readable. */
  from: string;
  /** An expression for the reason: the rule name, or NULL when the pair was kept. */
  reason: string;
}

/**
 * The SQL to read filter reasons from this manifest, or null when it has never been filtered.
 * Queries use `reason` wherever they need the decision, e.g.
 * `SELECT key FROM ${s.from} WHERE status = 'ok' AND ${s.reason} IS NULL`.
 */
export function filterReasonSql(db: Database.Database): FilterReasonSql | null {
  if (hasTable(db, FILTER_DECISIONS)) {
    return { from: `pairs LEFT JOIN ${FILTER_DECISIONS} fd ON fd.pair = pairs.rowid`, reason: 'fd.reason' };
  }
  if (hasColumn(db, 'pairs', 'filter_reason')) return { from: 'pairs', reason: 'pairs.filter_reason' };
  return null;
}
