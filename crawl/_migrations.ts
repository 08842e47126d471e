import type { Migration } from '../corpus/manifest.ts';

/**
 * The crawl stage's migrations beyond the core tables (`CORE_MIGRATIONS`, `corpus/manifest.ts`),
 * applied when the crawl opens a corpus.
 */
export const CRAWL_MIGRATIONS: readonly Migration[] = [
  {
    // The size and modification time of a WARC or URL list when it was read: a rerun reads a file
    // again when either differs (rows appended to a list), and skips it otherwise. Rows from before
    // have none (see `ingestInput`).
    id: 'crawl/003-input-stamps',
    sql: `
      ALTER TABLE inputs ADD COLUMN size INTEGER;
      ALTER TABLE inputs ADD COLUMN mtime_ms REAL;
    `,
  },
];
