import type Database from 'better-sqlite3';
import { isRefusalLifted } from './_net-guard.ts';

/** What a row of each table records about its attempt, cleared when the row is put back. */
const ATTEMPT_COLUMNS = {
  pages: 'images = NULL, fetched_at = NULL',
  pairs: 'http_status = NULL, shard = NULL, attempted_at = NULL',
} as const;

/**
 * Puts back to `pending` the rows of `table` that the SSRF guard refused (`private_address`) and
 * that `allow` now lets through; returns how many. A rerun retries only `pending` rows, and unlike
 * other failures this one is undone by options alone (its message says to rerun with the flag).
 * The attempt is cleared with it, `shard` included: the shard open now must not count it again.
 * A committed shard that counted the refusal keeps its record (shards are never rewritten), and
 * the pair's next outcome is counted by another shard; so such records are added to the
 * `superseded` table, which the next shard to commit lists in its stats (`ShardWriter`), and
 * summed over shards the pair counts once. One transaction, so a kill leaves every such row put
 * back and counted, or none.
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
  const lifted = `status = 'private_address' AND refusal_lifted(url, error_message)`;
  return db.transaction(() => {
    if (table === 'pairs') {
      db.prepare(
        `INSERT INTO superseded (status, n)
           SELECT status, COUNT(*) FROM pairs WHERE ${lifted} AND shard IN (SELECT shard FROM shards) GROUP BY status
         ON CONFLICT (status) DO UPDATE SET n = n + excluded.n`,
      ).run();
    }
    return db
      .prepare(
        `UPDATE ${table} SET status = 'pending', error_message = NULL, ${ATTEMPT_COLUMNS[table]} WHERE ${lifted}`,
      )
      .run().changes;
  })();
}
