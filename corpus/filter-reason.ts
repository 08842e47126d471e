/**
 * How to read each pair's filter decision, for every stage that reads them. The filter stores its
 * decisions in blocks: `filter_decision_blocks (block, codes)` holds, for the pairs whose rowid is
 * in `[block * 256, block * 256 + 256)`, one byte each (0 kept or not decided, else the code of
 * the first failing rule in {@link STORED_REASONS}); a block with no rejected pair has no row. A
 * run decides nearly every pair, and a byte a pair is a fiftieth of what a row a pair wrote (1 MB
 * for a million pairs instead of ~19), which at a billion pairs is the difference between a
 * gigabyte and twenty. People reading the manifest see the view `filter_decisions (pair, reason)`,
 * one row per rejected pair.
 *
 * Two older layouts still read the same through {@link filterReasonSql} until the filter runs on
 * the manifest again (its migrations convert them): a table `filter_decisions (pair, reason)` with
 * one row per rejected pair, and before it a column `pairs.filter_reason`.
 */
import type Database from 'better-sqlite3';
import { hasColumn, hasTable } from './manifest.ts';

/** The view of the decisions, one row per rejected pair: `(pair = pairs.rowid, reason)`. */
export const FILTER_DECISIONS = 'filter_decisions';

/** The table the decisions are stored in: one row per block of {@link BLOCK_PAIRS} rowids. */
export const DECISION_BLOCKS = 'filter_decision_blocks';

/** Rowids a block covers; a block's `codes` is always this many bytes. */
export const BLOCK_PAIRS = 256;

/**
 * The stored codes: byte `i + 1` of a block is `STORED_REASONS[i]`, byte 0 a pair kept (or one
 * the filter has not decided). Part of the file format: a new reason goes at the end.
 */
export const STORED_REASONS: readonly string[] = [
  'image_size',
  'aspect_ratio',
  'image_captions',
  'shared_caption',
  'rare_token',
  'too_few_words',
  'too_many_words',
  'caption_chars',
  'noise_prob',
  'nsfw',
];

/** SQL pieces that read a pair's filter reason (NULL when kept). */
export interface FilterReasonSql {
  /** A `FROM` clause over `pairs` (not aliased) that makes {@link reason} readable. */
  from: string;
  /** An expression for the reason: the rule name, or NULL when the pair was kept. */
  reason: string;
}

/**
 * The reason of a pair of `pairs` from the block joined as `fdb`: NULL when the block has no row
 * or the byte is 0, `unknown` for a code this version does not know (never kept silently).
 */
const BLOCK_REASON =
  `CASE WHEN fdb.codes IS NULL THEN NULL ELSE CASE substr(fdb.codes, (pairs.rowid & ${BLOCK_PAIRS - 1}) + 1, 1) ` +
  `WHEN x'00' THEN NULL ${STORED_REASONS.map((r, i) => `WHEN x'${(i + 1).toString(16).padStart(2, '0')}' THEN '${r}'`).join(' ')} ` +
  `ELSE 'unknown' END END`;

const BLOCK_FROM = `pairs LEFT JOIN ${DECISION_BLOCKS} fdb ON fdb.block = pairs.rowid >> ${Math.log2(BLOCK_PAIRS)}`;

/** The blocks table and the view over it (the filter's migration `filter/003-decision-blocks`). */
export const DECISION_BLOCKS_SQL = `
  CREATE TABLE ${DECISION_BLOCKS} (block INTEGER PRIMARY KEY, codes BLOB NOT NULL);
  CREATE VIEW ${FILTER_DECISIONS} (pair, reason) AS
    SELECT pairs.rowid, ${BLOCK_REASON} FROM ${BLOCK_FROM.replace('LEFT JOIN', 'JOIN')}
     WHERE substr(fdb.codes, (pairs.rowid & ${BLOCK_PAIRS - 1}) + 1, 1) <> x'00';
`;

/**
 * The SQL to read filter reasons from this manifest, or null when it has never been filtered.
 * Queries use `reason` wherever they need the decision, e.g.
 * `SELECT key FROM ${s.from} WHERE status = 'ok' AND ${s.reason} IS NULL`.
 */
export function filterReasonSql(db: Database.Database): FilterReasonSql | null {
  if (hasTable(db, DECISION_BLOCKS)) return { from: BLOCK_FROM, reason: BLOCK_REASON };
  if (hasTable(db, FILTER_DECISIONS)) {
    return { from: `pairs LEFT JOIN ${FILTER_DECISIONS} fd ON fd.pair = pairs.rowid`, reason: 'fd.reason' };
  }
  if (hasColumn(db, 'pairs', 'filter_reason')) return { from: 'pairs', reason: 'pairs.filter_reason' };
  return null;
}
