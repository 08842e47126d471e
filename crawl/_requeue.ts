import type Database from 'better-sqlite3';
import { UsageError } from '../corpus/errors.ts';
import { isRefusalLifted } from './_net-guard.ts';

/** What a row of each table records about its attempt, cleared when the row is put back. */
const ATTEMPT_COLUMNS = {
  pages: 'images = NULL, fetched_at = NULL',
  pairs: 'http_status = NULL, shard = NULL, attempted_at = NULL',
} as const;

/**
 * Puts back to `pending` the rows of `table` that match `where`; returns how many. The attempt is
 * cleared with it, `shard` included: the shard open now must not count it again. A committed
 * shard that counted the failure keeps its record (shards are never rewritten), and the pair's
 * next outcome is counted by another shard; so such records are added to the `superseded` table,
 * which the next shard to commit lists in its stats (`ShardWriter`), and summed over shards the
 * pair counts once. One transaction, so a kill leaves every such row put back and counted, or
 * none. Runs before the shard writer opens: it counts the open shard's failures from the manifest.
 */
function requeue(db: Database.Database, table: 'pages' | 'pairs', where: string, params: unknown[] = []): number {
  return db.transaction(() => {
    if (table === 'pairs') {
      db.prepare(
        `INSERT INTO superseded (status, n)
           SELECT status, COUNT(*) FROM pairs WHERE (${where}) AND shard IN (SELECT shard FROM shards) GROUP BY status
         ON CONFLICT (status) DO UPDATE SET n = n + excluded.n`,
      ).run(...params);
    }
    return db
      .prepare(
        `UPDATE ${table} SET status = 'pending', error_message = NULL, ${ATTEMPT_COLUMNS[table]} WHERE (${where})`,
      )
      .run(...params).changes;
  })();
}

/**
 * Puts back to `pending` the rows of `table` that the SSRF guard refused (`private_address`) and
 * that `allow` now lets through; returns how many. A rerun retries only `pending` rows, and unlike
 * other failures this one is undone by options alone (its message says to rerun with the flag).
 */
export function requeueLiftedRefusals(
  db: Database.Database,
  table: 'pages' | 'pairs',
  allow: boolean | string[],
): number {
  if (allow === false) return 0;
  db.function('refusal_lifted', { deterministic: true }, (url: unknown, message: unknown) =>
    isRefusalLifted(String(url), typeof message === 'string' ? message : null, allow) ? 1 : 0,
  );
  return requeue(db, table, `status = 'private_address' AND refusal_lifted(url, error_message)`);
}

/** The failures `--retry-failed transient` retries: those a later try may well get past. */
export const TRANSIENT_FAILURES = [
  'timeout',
  'connection_error',
  'dns_timeout',
  'http_5xx',
  'http_429',
  'robots_unreachable',
];

/** The failure statuses the crawl records, besides `http_NNN` (of pairs and pages alike). */
const FAILURE_STATUSES = new Set([
  'timeout',
  'connection_error',
  'dns_error',
  'dns_timeout',
  'too_many_redirects',
  'decode_error',
  'not_image',
  'not_html',
  'too_large',
  'too_many_pixels',
  'robots_disallowed',
  'robots_unreachable',
  'opted_out',
  'private_address',
  'invalid_url',
]);

/**
 * Expands the values of `--retry-failed` (each may list several, comma-separated) into the
 * statuses to retry: a status (`timeout`, `http_503`), a class of HTTP statuses (`http_5xx`), or
 * `transient` ({@link TRANSIENT_FAILURES}). Anything else is a usage error: a misspelt status
 * would retry nothing without a word.
 */
export function expandRetryStatuses(values: readonly string[]): string[] {
  const statuses = new Set<string>();
  for (const value of values.flatMap((v) => v.split(','))) {
    const name = value.trim();
    if (name === '') continue;
    if (name === 'transient') for (const status of TRANSIENT_FAILURES) statuses.add(status);
    else if (FAILURE_STATUSES.has(name) || /^http_[1-5](\d\d|xx)$/.test(name)) statuses.add(name);
    else {
      throw new UsageError(
        'ERR_INVALID_OPTION',
        `Option 'crawl.retryFailed': expected transient, a failure status (${[...FAILURE_STATUSES].join(', ')}, http_NNN) or http_Nxx, got \`${name}\``,
        { context: { stage: 'crawl', option: 'retryFailed' } },
      );
    }
  }
  return [...statuses];
}

/**
 * The rows whose failure is one of `statuses`, as a WHERE clause and its parameters; with
 * `legacy`, also the robots.txt failures crawls before `robots_unreachable` recorded as refusals.
 */
function failureCondition(statuses: readonly string[], legacy: boolean): { where: string; params: string[] } {
  const exact = statuses.filter((s) => !s.endsWith('xx'));
  const classes = statuses.filter((s) => s.endsWith('xx')).map((s) => s.replace(/xx$/, '[0-9][0-9]'));
  const clauses = [
    ...(exact.length > 0 ? [`status IN (${exact.map(() => '?').join(', ')})`] : []),
    ...classes.map(() => 'status GLOB ?'),
    // Crawls before `robots_unreachable` recorded it so; the message tells them apart.
    ...(legacy && statuses.includes('robots_unreachable')
      ? [`(status = 'robots_disallowed' AND error_message GLOB 'robots.txt at * unreachable (*')`]
      : []),
  ];
  return { where: clauses.join(' OR '), params: [...exact, ...classes] };
}

/**
 * Puts back to `pending` the rows of `table` whose failure is one of `statuses` (as expanded by
 * {@link expandRetryStatuses}); returns how many. `robots_unreachable` also takes the rows that
 * crawls before that status recorded as `robots_disallowed` with the message saying robots.txt
 * was unreachable.
 */
export function requeueFailures(db: Database.Database, table: 'pages' | 'pairs', statuses: readonly string[]): number {
  if (statuses.length === 0) return 0;
  const { where, params } = failureCondition(statuses, true);
  return requeue(db, table, where, params);
}

/**
 * How many rows of `table` hold a failure that `--retry-failed transient` would retry, by status
 * alone (an index search, run at the end of every crawl): the robots.txt failures of crawls before
 * `robots_unreachable` are left out, since telling them apart reads every refusal's message.
 */
export function countTransientFailures(db: Database.Database, table: 'pages' | 'pairs'): number {
  const { where, params } = failureCondition(TRANSIENT_FAILURES, false);
  return (db.prepare(`SELECT COUNT(*) AS n FROM ${table} WHERE ${where}`).get(...params) as { n: number }).n;
}
