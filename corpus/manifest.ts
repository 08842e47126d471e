import { existsSync, mkdirSync, readdirSync, realpathSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import Database from 'better-sqlite3';
import { UsageError } from './errors.ts';
import { isLockFile } from './lock.ts';

/** The manifest's file name inside a corpus directory. */
export const MANIFEST_FILE = 'manifest.sqlite';

/** A schema change owned by one stage, applied once, in order, inside a transaction. */
export interface Migration {
  /** Unique and stable, e.g. `crawl/001-pairs`. */
  id: string;
  sql: string;
  /** What SQL alone cannot say (it depends on the schema found), run after `sql` in the same transaction. */
  run?: (db: Database.Database) => void;
}

/**
 * The crawl stage's tables: the pairs ledger, the page frontier, the input log, the shards, and
 * the committed records of pairs put back to be tried again, not yet listed by a shard.
 */
export const CORE_MIGRATIONS: readonly Migration[] = [
  {
    id: 'crawl/001-pairs',
    sql: `
      CREATE TABLE pairs (
        key TEXT PRIMARY KEY,
        url TEXT NOT NULL,
        page_url TEXT,
        caption TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending',
        error_message TEXT,
        http_status INTEGER,
        shard INTEGER,
        width INTEGER,
        height INTEGER,
        original_width INTEGER,
        original_height INTEGER,
        sha256 TEXT,
        bytes INTEGER,
        source TEXT,
        attempted_at TEXT
      );
      CREATE INDEX pairs_status ON pairs(status);
      CREATE INDEX pairs_shard ON pairs(shard);
      CREATE TABLE pages (
        url TEXT PRIMARY KEY,
        depth INTEGER NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending',
        error_message TEXT,
        images INTEGER,
        fetched_at TEXT
      );
      CREATE INDEX pages_status ON pages(status, depth);
      CREATE TABLE inputs (
        source TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        pairs INTEGER NOT NULL DEFAULT 0,
        done INTEGER NOT NULL DEFAULT 0,
        finished_at TEXT
      );
      CREATE TABLE shards (
        shard INTEGER PRIMARY KEY,
        count INTEGER NOT NULL,
        successes INTEGER NOT NULL,
        bytes INTEGER NOT NULL,
        committed_at TEXT NOT NULL
      );
      CREATE TABLE stage_runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        stage TEXT NOT NULL,
        options TEXT NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        outcome TEXT,
        summary TEXT
      );
    `,
  },
  {
    // A pair put back to `pending` (a lifted refusal, or a failure retried with --retry-failed:
    // crawl/_requeue.ts) was counted by the
    // committed shard that recorded its refusal, and is counted again by the shard that records its
    // next outcome. Committed shards are not rewritten, so the next shard to commit lists those
    // earlier records under `superseded` (its stats, and this column): summed over shards,
    // count − superseded counts each attempted pair once, in its latest state.
    id: 'crawl/002-superseded',
    sql: `
      CREATE TABLE superseded (status TEXT PRIMARY KEY, n INTEGER NOT NULL);
      ALTER TABLE shards ADD COLUMN superseded INTEGER NOT NULL DEFAULT 0;
    `,
  },
];

/** An open corpus: its directory and its manifest database. */
export interface Corpus {
  dir: string;
  db: Database.Database;
  close(): void;
}

/** True when `dir` holds a manifest. */
export function isCorpus(dir: string): boolean {
  return existsSync(join(dir, MANIFEST_FILE));
}

/**
 * Opens the SQLite file at `path`; `what` names it in the error ("Corpus manifest"). A file that
 * is not a database (a CSV given as --bench-db, a manifest overwritten with text) is refused on one
 * line that names it, where SQLite's own "file is not a database" names no file: with several
 * corpora the user could not tell which one is bad.
 */
export function openSqliteFile(path: string, what: string, options?: Database.Options): Database.Database {
  const db = new Database(path, options);
  try {
    // The first statement reads the header: a file that is not a database fails here, not later.
    db.pragma('schema_version');
  } catch (err) {
    db.close();
    if ((err as { code?: unknown }).code !== 'SQLITE_NOTADB') throw err;
    throw new UsageError(
      'ERR_NOT_A_DATABASE',
      `${what} '${path}' is not an SQLite database (${(err as Error).message})`,
      { cause: err, context: { path } },
    );
  }
  return db;
}

function openDatabase(path: string): Database.Database {
  const db = openSqliteFile(path, 'Corpus manifest');
  // WAL keeps readers (another stage, a progress poll) unblocked and survives a killed writer;
  // NORMAL sync is durable against a process kill, which is the failure we design for.
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma('busy_timeout = 10000');
  // Bulk ingestion is fsync-bound at the default checkpoint interval (1000 pages): checkpointing
  // every ~80 MB of WAL and a 64 MiB page cache halve the cost of a row (measured: 13 -> 6 us).
  db.pragma('wal_autocheckpoint = 20000');
  db.pragma('cache_size = -65536');
  return db;
}

/** Applies the migrations not yet recorded in `schema_migrations`, each in its own transaction. */
export function migrate(db: Database.Database, migrations: readonly Migration[]): void {
  db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (id TEXT PRIMARY KEY, applied_at TEXT NOT NULL)`);
  const applied = new Set((db.prepare('SELECT id FROM schema_migrations').all() as { id: string }[]).map((r) => r.id));
  const record = db.prepare('INSERT INTO schema_migrations (id, applied_at) VALUES (?, ?)');
  for (const m of migrations) {
    if (applied.has(m.id)) continue;
    db.transaction(() => {
      db.exec(m.sql);
      m.run?.(db);
      record.run(m.id, new Date().toISOString());
    })();
  }
}

/**
 * Opens a corpus directory for writing, creating it when `create` is set. A directory that
 * exists, is not empty and has no manifest is refused: it is somebody else's data.
 */
export function openCorpus(dir: string, options: { create?: boolean; migrations?: readonly Migration[] } = {}): Corpus {
  const manifest = join(dir, MANIFEST_FILE);
  if (!existsSync(manifest)) {
    refuseForeignDirectory(dir);
    if (!options.create) {
      throw new UsageError('ERR_CORPUS_NOT_FOUND', `No corpus at '${dir}' (no ${MANIFEST_FILE})`, {
        context: { path: dir },
      });
    }
    mkdirSync(dir, { recursive: true });
  }
  const db = openDatabase(manifest);
  migrate(db, [...CORE_MIGRATIONS, ...(options.migrations ?? [])]);
  return {
    dir,
    db,
    close: () => {
      if (db.open) db.close();
    },
  };
}

/**
 * Refuses, as a place for a new corpus, a file or a directory holding anything but lock files (a
 * lock alone is a writer that has not created its manifest yet, or a killed one's): somebody
 * else's data. Nothing exists yet, or an empty directory, passes.
 */
export function refuseForeignDirectory(dir: string): void {
  if (!existsSync(dir)) return;
  if (!statSync(dir).isDirectory()) {
    throw new UsageError('ERR_NOT_A_CORPUS', `Output '${dir}' is a file, not a corpus directory`, {
      context: { path: dir },
    });
  }
  if (readdirSync(dir).some((name) => !isLockFile(name))) {
    throw new UsageError(
      'ERR_NOT_A_CORPUS',
      `Directory '${dir}' is not empty and holds no ${MANIFEST_FILE}: refusing to write into it`,
      { context: { path: dir } },
    );
  }
}

/**
 * Refuses a corpus given twice to a stage that reads several (`s1 s1`, `s1` and `s1/`, a symlink
 * to `s1`): its pairs would count twice, and each copy would be the other's negative in training.
 * Directories are the same when their real paths are; the error names the option (`<stage>.corpus`).
 */
export function refuseDuplicateCorpora(dirs: readonly string[], stage: string): void {
  const seen = new Map<string, string>();
  for (const dir of dirs) {
    let key: string;
    try {
      key = realpathSync(dir);
    } catch {
      key = resolve(dir);
    }
    const first = seen.get(key);
    if (first !== undefined) {
      const same =
        first === dir ? `corpus '${dir}' is given twice` : `'${first}' and '${dir}' are one corpus, given twice`;
      throw new UsageError('ERR_DUPLICATE_CORPUS', `Option '${stage}.corpus': ${same}`, {
        context: { stage, option: 'corpus', path: dir },
      });
    }
    seen.set(key, dir);
  }
}

/** Records the start of a stage run; returns a function that records its end. */
export function recordStageRun(
  db: Database.Database,
  stage: string,
  options: unknown,
): (outcome: string, summary: unknown) => void {
  const { lastInsertRowid } = db.prepare('INSERT INTO stage_runs (stage, options, started_at) VALUES (?, ?, ?)').run(
    stage,
    JSON.stringify(options, (_k, v: unknown) => (typeof v === 'function' ? undefined : v)),
    new Date().toISOString(),
  );
  return (outcome, summary) => {
    if (!db.open) return;
    db.prepare('UPDATE stage_runs SET finished_at = ?, outcome = ?, summary = ? WHERE id = ?').run(
      new Date().toISOString(),
      outcome,
      JSON.stringify(summary),
      lastInsertRowid,
    );
  };
}

/** Count of pairs per status over the whole manifest. */
export function countByStatus(db: Database.Database): Record<string, number> {
  const out: Record<string, number> = {};
  for (const row of db.prepare('SELECT status, COUNT(*) AS n FROM pairs GROUP BY status').all() as {
    status: string;
    n: number;
  }[]) {
    out[row.status] = row.n;
  }
  return out;
}

/**
 * Whether `table` has `column`: stages read the columns of stages that may not have run yet
 * (train skips `dup_of` only when dedup has added it).
 */
export function hasColumn(db: Database.Database, table: string, column: string): boolean {
  const rows = db.prepare(`SELECT name FROM pragma_table_info(?)`).all(table) as Array<{ name: string }>;
  return rows.some((r) => r.name === column);
}

/** Whether the database has a table of that name. */
export function hasTable(db: Database.Database, name: string): boolean {
  return db.prepare(`SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?`).get(name) !== undefined;
}
