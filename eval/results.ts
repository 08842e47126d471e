/**
 * The results database of `altforge eval`: one `runs` row per evaluation (checkpoint, benchmarks,
 * config hash, times) and one `results` row per metric (checkpoint, benchmark, task, metric,
 * value, config hash, time), so runs of different checkpoints can be compared with plain SQL.
 */
import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { isProcessAlive } from '../corpus/lock.ts';
import { migrate, openSqliteFile, type Migration } from '../corpus/manifest.ts';
import { refuseDirectory } from '../corpus/paths.ts';
import type { EvalMetric } from './zero-shot.ts';

/** Schema of the results database, versioned like the manifest's. */
export const RESULTS_MIGRATIONS: readonly Migration[] = [
  {
    id: 'eval/001-results',
    sql: `
      CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        checkpoint TEXT NOT NULL,
        checkpoint_step INTEGER,
        benchmarks TEXT NOT NULL,
        config_hash TEXT NOT NULL,
        config TEXT NOT NULL,
        backend TEXT,
        status TEXT NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT
      );
      CREATE TABLE results (
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        checkpoint TEXT NOT NULL,
        benchmark TEXT NOT NULL,
        task TEXT NOT NULL,
        metric TEXT NOT NULL,
        value REAL NOT NULL,
        config_hash TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (run_id, benchmark, task, metric)
      ) WITHOUT ROWID;
      CREATE INDEX results_lookup ON results(checkpoint, benchmark, task, metric);
    `,
  },
  {
    // The process a run is in: a 'running' run whose process is gone was killed ('abandoned').
    id: 'eval/002-run-pid',
    sql: `ALTER TABLE runs ADD COLUMN pid INTEGER;`,
  },
];

/** A stable hash of an evaluation's configuration (key order does not matter). */
export function configHash(config: Record<string, unknown>): string {
  const canonical = (v: unknown): unknown =>
    Array.isArray(v)
      ? v.map(canonical)
      : v !== null && typeof v === 'object'
        ? Object.fromEntries(
            Object.keys(v as object)
              .sort()
              .map((k) => [k, canonical((v as Record<string, unknown>)[k])]),
          )
        : v;
  return createHash('sha256')
    .update(JSON.stringify(canonical(config)))
    .digest('hex')
    .slice(0, 16);
}

/** An open results database. */
export interface ResultsDb {
  path: string;
  db: Database.Database;
  /** Records the start of a run; returns its id. */
  startRun(run: {
    checkpoint: string;
    checkpointStep: number;
    benchmarks: string[];
    config: Record<string, unknown>;
    backend: string;
  }): number;
  /** Stores a run's metrics and marks it done, in one transaction. */
  finishRun(runId: number, checkpoint: string, metrics: readonly EvalMetric[]): void;
  /** Marks a run failed, or interrupted (Ctrl-C). */
  failRun(runId: number, status?: 'failed' | 'interrupted'): void;
  close(): void;
}

/**
 * Marks `abandoned` the runs still `running` whose process no longer runs (killed before it could
 * record how it ended; runs from before the pid was recorded count as such): only a live run stays
 * `running`. Their metrics were never stored, since a run's results go in with its `done`.
 */
function markAbandoned(db: Database.Database): void {
  const running = db.prepare(`SELECT id, pid FROM runs WHERE status = 'running'`).all() as Array<{
    id: number;
    pid: number | null;
  }>;
  const abandon = db.prepare(`UPDATE runs SET status = 'abandoned' WHERE id = ? AND status = 'running'`);
  for (const { id, pid } of running) {
    if (pid === null || (pid !== process.pid && !isProcessAlive(pid))) abandon.run(id);
  }
}

/** Opens (creating if needed) the results database at `path`. */
export function openResults(path: string): ResultsDb {
  refuseDirectory(path, 'Results database', 'eval');
  mkdirSync(dirname(path), { recursive: true });
  const db = openSqliteFile(path, 'Results database');
  db.pragma('journal_mode = WAL');
  db.pragma('busy_timeout = 10000');
  migrate(db, RESULTS_MIGRATIONS);
  markAbandoned(db);
  const hashes = new Map<number, string>();
  return {
    path,
    db,
    startRun(run) {
      const hash = configHash(run.config);
      const info = db
        .prepare(
          `INSERT INTO runs (checkpoint, checkpoint_step, benchmarks, config_hash, config, backend, status, started_at, pid)
           VALUES (?, ?, ?, ?, ?, ?, 'running', ?, ?)`,
        )
        .run(
          run.checkpoint,
          run.checkpointStep,
          JSON.stringify(run.benchmarks),
          hash,
          JSON.stringify(run.config),
          run.backend,
          new Date().toISOString(),
          process.pid,
        );
      const id = Number(info.lastInsertRowid);
      hashes.set(id, hash);
      return id;
    },
    finishRun(runId, checkpoint, metrics) {
      const now = new Date().toISOString();
      const hash = hashes.get(runId) ?? '';
      const insert = db.prepare(
        `INSERT INTO results (run_id, checkpoint, benchmark, task, metric, value, config_hash, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
      );
      db.transaction(() => {
        for (const m of metrics) insert.run(runId, checkpoint, m.benchmark, m.task, m.metric, m.value, hash, now);
        db.prepare(`UPDATE runs SET status = 'done', finished_at = ? WHERE id = ?`).run(now, runId);
      })();
    },
    failRun(runId, status = 'failed') {
      db.prepare(`UPDATE runs SET status = ?, finished_at = ? WHERE id = ?`).run(
        status,
        new Date().toISOString(),
        runId,
      );
    },
    close: () => {
      if (db.open) db.close();
    },
  };
}
