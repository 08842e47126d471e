/**
 * `altforge export`: a corpus holding only the kept pairs (stored, not filtered out, not a
 * test-set duplicate), for tools that read WebDataset shards directly. The source corpora are
 * only read. The export is written through the same two-phase shard commit as the crawl, so a
 * killed export continues where it stopped; a rerun into an existing export also brings it up to
 * date with the sources' decisions now: new kept pairs are added, and pairs no longer kept are
 * removed with the shards that held them, whose other pairs are written again into new shards.
 */
import { existsSync, mkdirSync, readdirSync, rmSync, unlinkSync } from 'node:fs';
import { join, resolve } from 'node:path';
import Database from 'better-sqlite3';
import { z } from 'zod';
import { UsageError } from '../corpus/errors.ts';
import { acquireLock, acquireReadLock } from '../corpus/lock.ts';
import {
  BLOCK_PAIRS,
  DECISION_BLOCKS,
  FILTER_DECISIONS,
  filterReasonSql,
  type FilterReasonSql,
} from '../corpus/filter-reason.ts';
import {
  MANIFEST_FILE,
  hasColumn,
  hasTable,
  openCorpus,
  openSqliteFile,
  recordStageRun,
  refuseDuplicateCorpora,
  refuseForeignDirectory,
  type Corpus,
} from '../corpus/manifest.ts';
import { parseOptions } from '../corpus/options.ts';
import { readShard } from '../corpus/shard-reader.ts';
import { ShardWriter, scanPartialShard, shardPaths } from '../corpus/shards.ts';

/**
 * Progress of an export: listing the kept pairs (no total), removing those no longer kept (shards
 * retired), writing the samples.
 */
export interface ExportProgress {
  phase: 'list' | 'remove' | 'write';
  done: number;
  total?: number;
}

/** Options of {@link runExport}. */
export interface ExportOptions {
  /** Source corpora, read only. */
  corpus: string | string[];
  /**
   * The export's corpus directory: created, or an earlier export brought up to date (continued
   * after a kill; pairs no longer kept removed). A corpus that export did not write is refused.
   */
  out: string;
  /** Samples per shard of the new corpus. @default 10000 */
  shardSize?: number;
  /** Also export pairs that dedup marked (`dup_of`). @default false */
  includeDuplicates?: boolean;
  onProgress?: (progress: ExportProgress) => void;
  signal?: AbortSignal;
}

/** What an export wrote. */
export interface ExportResult {
  out: string;
  /** Kept pairs in the sources. */
  kept: number;
  /** Samples written by this run (a continued export writes only the rest). */
  written: number;
  /** Pairs removed from the export by this run because the sources no longer keep them. */
  removed: number;
  /** Kept pairs whose sample could not be found in the source shards. */
  missing: number;
  shards: number;
  interrupted: boolean;
}

const schema = z.strictObject({
  corpus: z
    .union([z.string().min(1), z.array(z.string().min(1)).min(1)])
    .transform((v) => (Array.isArray(v) ? v : [v])),
  out: z.string().min(1),
  shardSize: z.number().int().min(1).default(10_000),
  includeDuplicates: z.boolean().default(false),
  onProgress: z.custom<(p: ExportProgress) => void>((v) => typeof v === 'function').optional(),
  signal: z.custom<AbortSignal>((v) => v instanceof AbortSignal).optional(),
});

/** The export's scratch database (the keys kept now), beside its manifest while a run lasts. */
const WORK_FILE = '.export-work.sqlite';
const BATCH = 10_000;

/**
 * Writes the kept pairs of `corpus` into the corpus at `out`: a new one, or an earlier export
 * brought up to date (continued, and the pairs the sources no longer keep removed).
 */
export async function runExport(options: ExportOptions): Promise<ExportResult> {
  const o = parseOptions(schema, options, 'export');
  refuseDuplicateCorpora(o.corpus, 'export');
  const sources: Array<{ dir: string; db: Database.Database; filter: FilterReasonSql | null }> = [];
  const releases: Array<() => void> = [];
  try {
    for (const dir of o.corpus) {
      if (!existsSync(join(dir, MANIFEST_FILE))) {
        throw new UsageError('ERR_CORPUS_NOT_FOUND', `No corpus at '${dir}' (no ${MANIFEST_FILE})`, {
          context: { stage: 'export', path: dir },
        });
      }
      if (resolve(dir) === resolve(o.out)) {
        throw new UsageError('ERR_INVALID_OPTION', `Option 'export.out': must differ from the source corpus '${dir}'`, {
          context: { stage: 'export', option: 'out' },
        });
      }
      // Held until the export ends: its reads span many statements (the kept pairs, then their
      // shards), so a filter, dedup or crawl of a source meanwhile would change what they see.
      releases.push(acquireReadLock(dir));
      const db = openSqliteFile(join(dir, MANIFEST_FILE), 'Corpus manifest', { readonly: true, fileMustExist: true });
      sources.push({ dir, db, filter: filterReasonSql(db) });
    }
    const unfiltered = sources.find((s) => s.filter === null);
    if (unfiltered) {
      throw new UsageError(
        'ERR_NOT_FILTERED',
        `Corpus '${unfiltered.dir}' has not been filtered: run \`altforge filter --corpus ${unfiltered.dir}\` first`,
        { context: { stage: 'export', path: unfiltered.dir } },
      );
    }
    const release = lockOutput(o.out);
    let target: Corpus;
    try {
      target = openCorpus(o.out, { create: true });
    } catch (err) {
      release();
      throw err;
    }
    const workPath = join(o.out, WORK_FILE);
    let finish: ((outcome: string, summary: unknown) => void) | undefined;
    let writer: ShardWriter | undefined;
    try {
      refuseForeignOutput(target);
      finish = recordStageRun(target.db, 'export', { ...o, onProgress: undefined, signal: undefined });
      // The keys kept now, in a scratch file rather than in memory: a billion keys is the design case.
      rmSync(workPath, { force: true });
      target.db.prepare('ATTACH DATABASE ? AS work').run(workPath);
      target.db.pragma('work.journal_mode = OFF');
      target.db.pragma('work.synchronous = OFF');
      target.db.exec('CREATE TABLE work.kept (key TEXT PRIMARY KEY) WITHOUT ROWID');
      // The manifest lists every kept pair first (pending); the shards then fill them in.
      const insert = target.db.prepare(
        `INSERT OR IGNORE INTO pairs (rowid, key, url, page_url, caption, status, source) VALUES (?, ?, ?, ?, ?, 'pending', ?)`,
      );
      const insertKept = target.db.prepare('INSERT OR IGNORE INTO work.kept (key) VALUES (?)');
      let rowid = firstFreeRowid(target.db);
      let kept = 0;
      for (const s of sources) {
        const dup = hasColumn(s.db, 'pairs', 'dup_of') && !o.includeDuplicates ? 'AND dup_of IS NULL' : '';
        const rows = s.db
          .prepare(
            `SELECT key, url, page_url, caption FROM ${s.filter!.from} WHERE status = 'ok' AND ${s.filter!.reason} IS NULL ${dup}`,
          )
          .raw()
          .iterate() as IterableIterator<[string, string, string | null, string]>;
        const source = `export:${resolve(s.dir)}`;
        let batch: Array<[string, string, string | null, string]> = [];
        const flush = target.db.transaction((items: typeof batch) => {
          for (const [key, url, page, caption] of items) {
            if (insert.run(rowid, key, url, page, caption, source).changes === 1) rowid++;
            insertKept.run(key);
          }
        });
        for (const row of rows) {
          batch.push(row);
          kept++;
          if (batch.length >= BATCH) {
            flush(batch);
            batch = [];
            o.onProgress?.({ phase: 'list', done: kept });
          }
        }
        flush(batch);
      }
      o.onProgress?.({ phase: 'list', done: kept });
      const removed = removeUnkept(target.db, (done, total) => o.onProgress?.({ phase: 'remove', done, total }));
      target.db.exec('DETACH DATABASE work');
      rmSync(workPath, { force: true });
      removeUnrecordedShards(target);
      await removeStalePartialShards(target);
      writer = await ShardWriter.open(target, o.shardSize);
      const pending = target.db.prepare(`SELECT 1 FROM pairs WHERE key = ? AND status = 'pending'`).pluck();
      const total = target.db.prepare(`SELECT COUNT(*) FROM pairs WHERE status = 'pending'`).pluck().get() as number;
      let written = 0;
      let interrupted = false;
      o.onProgress?.({ phase: 'write', done: 0, total });
      outer: for (const s of sources) {
        const shards = s.db
          .prepare(
            `SELECT DISTINCT shard FROM ${s.filter!.from} WHERE status = 'ok' AND ${s.filter!.reason} IS NULL ORDER BY shard`,
          )
          .pluck()
          .all() as number[];
        for (const shard of shards) {
          const tar = shardPaths(s.dir, shard).tar;
          if (!existsSync(tar)) continue;
          for await (const sample of readShard(tar)) {
            if (writer.has(sample.key) || pending.get(sample.key) === undefined) continue;
            await writer.add({ meta: sample.meta, jpg: sample.jpg });
            written++;
            if (written % 1000 === 0) o.onProgress?.({ phase: 'write', done: written, total });
            if (o.signal?.aborted) {
              interrupted = true;
              break outer;
            }
          }
        }
      }
      if (interrupted) await writer.suspend();
      else await writer.flush();
      o.onProgress?.({ phase: 'write', done: written, total });
      const missing = interrupted
        ? 0
        : (target.db.prepare(`SELECT COUNT(*) FROM pairs WHERE status = 'pending'`).pluck().get() as number);
      const shardCount = target.db.prepare('SELECT COUNT(*) FROM shards').pluck().get() as number;
      const result: ExportResult = { out: o.out, kept, written, removed, missing, shards: shardCount, interrupted };
      finish(interrupted ? 'interrupted' : 'ok', result);
      return result;
    } catch (err) {
      await writer?.suspend().catch(() => undefined);
      finish?.('error', { error: err instanceof Error ? err.message : String(err) });
      throw err;
    } finally {
      target.close();
      rmSync(workPath, { force: true });
      release();
    }
  } finally {
    for (const s of sources) s.db.close();
    for (const release of releases) release();
  }
}

/**
 * Takes the export's corpus lock (the crawl's, `ERR_CORPUS_LOCKED`): a second export into `out`,
 * or a crawl or filter of it, is refused while this one writes it. The lock comes before the
 * manifest is opened, so a refused export has touched nothing (a second one would otherwise list
 * pairs into the manifest and clear the work file under the first). A new output is checked first
 * as {@link openCorpus} checks it (a file, or a directory holding other data, is refused), so that
 * no lock file is put into somebody else's data; {@link openCorpus} then takes the directory that
 * holds only the lock.
 */
function lockOutput(out: string): () => void {
  if (!existsSync(join(out, MANIFEST_FILE))) {
    refuseForeignDirectory(out);
    mkdirSync(out, { recursive: true });
  }
  return acquireLock(out);
}

/**
 * Refuses an output that export did not write (a crawled corpus, say): bringing an export up to
 * date removes pairs and shards from it, which only an export's own may be.
 */
function refuseForeignOutput({ dir, db }: Corpus): void {
  const stages = new Set(db.prepare('SELECT DISTINCT stage FROM stage_runs').pluck().all() as string[]);
  const hasPairs = db.prepare('SELECT 1 FROM pairs LIMIT 1').get() !== undefined;
  if (stages.has('crawl') || (hasPairs && !stages.has('export'))) {
    throw new UsageError(
      'ERR_NOT_AN_EXPORT',
      `Option 'export.out': '${dir}' holds a corpus that export did not write; choose a new directory`,
      { context: { stage: 'export', option: 'out', path: dir } },
    );
  }
}

/**
 * Removes from the export the pairs that `work.kept` does not list; returns how many. A shard
 * holding one is retired in one transaction: struck from `shards`, those pairs deleted, its other
 * pairs `pending` again (this run writes them into a new shard). A kill leaves every shard either
 * whole or retired, and a rerun retires the rest; {@link removeUnrecordedShards} then removes the
 * retired shards' files (after the manifest, which is what readers trust, has dropped them).
 */
function removeUnkept(db: Database.Database, progress: (done: number, total: number) => void): number {
  const retired = db
    .prepare(`SELECT DISTINCT shard FROM pairs WHERE shard IS NOT NULL AND key NOT IN (SELECT key FROM work.kept)`)
    .pluck()
    .all() as number[];
  const drop = db.prepare(`DELETE FROM pairs WHERE shard = ? AND key NOT IN (SELECT key FROM work.kept)`);
  const reopen = db.prepare(`UPDATE pairs SET status = 'pending', shard = NULL WHERE shard = ?`);
  const strike = db.prepare('DELETE FROM shards WHERE shard = ?');
  let removed = 0;
  const retire = db.transaction((shard: number) => {
    removed += drop.run(shard).changes;
    reopen.run(shard);
    strike.run(shard);
  });
  progress(0, retired.length);
  retired.forEach((shard, i) => {
    retire(shard);
    progress(i + 1, retired.length);
  });
  // Pairs listed by an earlier run but not yet in a shard.
  removed += db.prepare('DELETE FROM pairs WHERE key NOT IN (SELECT key FROM work.kept)').run().changes;
  return removed;
}

/**
 * The rowid for the next new pair: past every pair, and past every filter decision (the export
 * itself may have been filtered). Decisions are kept by rowid, and SQLite gives a new row the
 * largest rowid plus one, so a pair added after {@link removeUnkept} deleted the last ones would
 * take a removed pair's rowid, and its decision, unless the rowid is chosen here.
 */
function firstFreeRowid(db: Database.Database): number {
  let last = (db.prepare('SELECT MAX(rowid) FROM pairs').pluck().get() as number | null) ?? 0;
  if (hasTable(db, DECISION_BLOCKS)) {
    const block = db.prepare(`SELECT MAX(block) FROM ${DECISION_BLOCKS}`).pluck().get() as number | null;
    if (block !== null) last = Math.max(last, (block + 1) * BLOCK_PAIRS - 1);
  }
  // The older layout: a table with a row a rejected pair (a view over the blocks now).
  if (hasTable(db, FILTER_DECISIONS)) {
    last = Math.max(
      last,
      (db.prepare(`SELECT MAX(pair) FROM ${FILTER_DECISIONS}`).pluck().get() as number | null) ?? 0,
    );
  }
  return last + 1;
}

/**
 * Removes the files of shards that the manifest does not record: the shards {@link removeUnkept}
 * retired. The shard writer renames a shard's files into place only after recording it, so no
 * other finished file can be unrecorded.
 */
function removeUnrecordedShards({ dir, db }: Corpus): void {
  const recorded = new Set(db.prepare('SELECT shard FROM shards').pluck().all() as number[]);
  const files = [
    ['shards', /^(\d{5,})\.(?:tar|parquet)$/],
    ['stats', /^(\d{5,})\.json$/],
  ] as const;
  for (const [folder, pattern] of files) {
    if (!existsSync(join(dir, folder))) continue;
    for (const name of readdirSync(join(dir, folder))) {
      const match = pattern.exec(name);
      if (match && !recorded.has(Number(match[1]))) unlinkSync(join(dir, folder, name));
    }
  }
}

/**
 * Deletes an unfinished shard (an unrecorded `.tar.tmp`) holding a sample whose pair is no longer
 * pending: the shard writer would resume it and then find no such pair to commit. Its other
 * samples are still pending, and are written again.
 */
async function removeStalePartialShards({ dir, db }: Corpus): Promise<void> {
  if (!existsSync(join(dir, 'shards'))) return;
  const recorded = new Set(db.prepare('SELECT shard FROM shards').pluck().all() as number[]);
  const pending = db.prepare(`SELECT 1 FROM pairs WHERE key = ? AND status = 'pending'`).pluck();
  for (const name of readdirSync(join(dir, 'shards'))) {
    const match = /^(\d{5,})\.tar\.tmp$/.exec(name);
    if (!match || recorded.has(Number(match[1]))) continue;
    const path = join(dir, 'shards', name);
    const { samples } = await scanPartialShard(path);
    if (samples.some((sample) => pending.get(sample.key) === undefined)) unlinkSync(path);
  }
}
