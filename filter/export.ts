/**
 * `altforge export`: a new corpus holding only the kept pairs (stored, not filtered out, not a
 * test-set duplicate), for tools that read WebDataset shards directly. The source corpora are
 * only read. The new corpus is written through the same two-phase shard commit as the crawl, so a
 * killed export continues where it stopped.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { z } from 'zod';
import { UsageError } from '../corpus/errors.ts';
import { filterReasonSql, type FilterReasonSql } from '../corpus/filter-reason.ts';
import { MANIFEST_FILE, hasColumn, openCorpus, recordStageRun } from '../corpus/manifest.ts';
import { parseOptions } from '../corpus/options.ts';
import { readShard } from '../corpus/shard-reader.ts';
import { ShardWriter, shardPaths } from '../corpus/shards.ts';
import { resolve } from 'node:path';

/** Options of {@link runExport}. */
export interface ExportOptions {
  /** Source corpora, read only. */
  corpus: string | string[];
  /** The new corpus directory (created; an existing export is continued). */
  out: string;
  /** Samples per shard of the new corpus. @default 10000 */
  shardSize?: number;
  /** Also export pairs that dedup marked (`dup_of`). @default false */
  includeDuplicates?: boolean;
  onProgress?: (progress: { done: number; total: number }) => void;
  signal?: AbortSignal;
}

/** What an export wrote. */
export interface ExportResult {
  out: string;
  /** Kept pairs in the sources. */
  kept: number;
  /** Samples written by this run (a continued export writes only the rest). */
  written: number;
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
  onProgress: z.custom<(p: { done: number; total: number }) => void>((v) => typeof v === 'function').optional(),
  signal: z.custom<AbortSignal>((v) => v instanceof AbortSignal).optional(),
});

/** Writes the kept pairs of `corpus` into a new corpus at `out`. */
export async function runExport(options: ExportOptions): Promise<ExportResult> {
  const o = parseOptions(schema, options, 'export');
  const sources: Array<{ dir: string; db: Database.Database; filter: FilterReasonSql | null }> = [];
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
      const db = new Database(join(dir, MANIFEST_FILE), { readonly: true, fileMustExist: true });
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
    const target = openCorpus(o.out, { create: true });
    const finish = recordStageRun(target.db, 'export', { ...o, onProgress: undefined, signal: undefined });
    let writer: ShardWriter | undefined;
    try {
      // The new manifest lists every kept pair first (pending); the shards then fill them in.
      const insert = target.db.prepare(
        `INSERT OR IGNORE INTO pairs (key, url, page_url, caption, status, source) VALUES (?, ?, ?, ?, 'pending', ?)`,
      );
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
          for (const [key, url, page, caption] of items) insert.run(key, url, page, caption, source);
        });
        for (const row of rows) {
          batch.push(row);
          kept++;
          if (batch.length >= 10_000) {
            flush(batch);
            batch = [];
          }
        }
        flush(batch);
      }
      writer = await ShardWriter.open(target, o.shardSize);
      const pending = target.db.prepare(`SELECT 1 FROM pairs WHERE key = ? AND status = 'pending'`).pluck();
      const total = target.db.prepare(`SELECT COUNT(*) FROM pairs WHERE status = 'pending'`).pluck().get() as number;
      let written = 0;
      let interrupted = false;
      o.onProgress?.({ done: 0, total });
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
            if (written % 1000 === 0) o.onProgress?.({ done: written, total });
            if (o.signal?.aborted) {
              interrupted = true;
              break outer;
            }
          }
        }
      }
      if (interrupted) await writer.suspend();
      else await writer.flush();
      o.onProgress?.({ done: written, total });
      const missing = interrupted
        ? 0
        : (target.db.prepare(`SELECT COUNT(*) FROM pairs WHERE status = 'pending'`).pluck().get() as number);
      const shardCount = target.db.prepare('SELECT COUNT(*) FROM shards').pluck().get() as number;
      const result: ExportResult = { out: o.out, kept, written, missing, shards: shardCount, interrupted };
      finish(interrupted ? 'interrupted' : 'ok', result);
      return result;
    } catch (err) {
      await writer?.suspend().catch(() => undefined);
      finish('error', { error: err instanceof Error ? err.message : String(err) });
      throw err;
    } finally {
      target.close();
    }
  } finally {
    for (const s of sources) s.db.close();
  }
}
