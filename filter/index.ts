/**
 * The filter stage: ALIGN's minimal frequency rules (and DataComp's basic preset), recorded per
 * pair in the manifest (decision blocks, read as the view `filter_decisions`), never deleting anything. One streaming read of the manifests
 * counts (tokens, captions per image, images per caption) into bounded typed-array tables, with
 * sorted runs on disk beyond a limit, and spools per pair what the second pass needs; the second
 * pass decides each pair from the spool and keeps, in memory, the rows whose reason changes. Those
 * are written to each manifest in one transaction, so a killed run leaves the previous decisions.
 */
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { setImmediate } from 'node:timers/promises';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { AltforgeError, UsageError } from '../corpus/errors.ts';
import { acquireLock } from '../corpus/lock.ts';
import {
  BLOCK_PAIRS,
  DECISION_BLOCKS,
  DECISION_BLOCKS_SQL,
  FILTER_DECISIONS,
  STORED_REASONS,
} from '../corpus/filter-reason.ts';
import {
  MANIFEST_FILE,
  hasColumn,
  hasTable,
  openCorpus,
  openSqliteFile,
  recordStageRun,
  refuseDuplicateCorpora,
  type Migration,
} from '../corpus/manifest.ts';
import { readShard } from '../corpus/shard-reader.ts';
import { shardPaths } from '../corpus/shards.ts';
import { CaptionHasher, normaliseCaption, wordTokens } from '../corpus/text.ts';
import { TokenCounter } from './_counts.ts';
import { SpoolReader, SpoolWriter, removeSpool } from './_spool.ts';
import { DecisionBlocks, readDecisions, UNKNOWN_REASON } from './_decision-blocks.ts';
import { KeySet } from './_hash-table.ts';
import { hash52, pairHash52, sha52 } from './_hash.ts';
import { ClassifierUnavailableError, nsfwjsClassifier, type NsfwClassifier, type NsfwModel } from './nsfw.ts';
import {
  RULES,
  resolveFilterOptions,
  type FilterOptions,
  type FilterProgress,
  type FilterReason,
  type ResolvedFilterOptions,
  type RuleName,
} from './options.ts';
import { REASON_ORDER, activeRules, failureMask, type PairFacts, type RuleSet } from './rules.ts';

export { RULES, type FilterOptions, type FilterProgress, type FilterReason, type RuleName } from './options.ts';
export { ClassifierUnavailableError, nsfwjsClassifier, type NsfwClassifier, type NsfwModel } from './nsfw.ts';
export { runExport, type ExportOptions, type ExportProgress, type ExportResult } from './export.ts';

/**
 * The filter's tables: its decisions (`corpus/filter-reason.ts`: a byte a pair in blocks of 256
 * rowids, and the view `filter_decisions (pair, reason)` over them) and its classifier cache.
 * Older manifests are converted: a reason in the column `pairs.filter_reason` (migration
 * `filter/001-filter-reason`) moves into a row a pair (002), and those rows into blocks (003).
 */
export const FILTER_MIGRATIONS: readonly Migration[] = [
  {
    id: 'filter/002-decisions',
    sql: `
      CREATE TABLE IF NOT EXISTS nsfw_scores (
        sha256 TEXT NOT NULL,
        model TEXT NOT NULL,
        score REAL NOT NULL,
        PRIMARY KEY (sha256, model)
      ) WITHOUT ROWID;
      CREATE TABLE ${FILTER_DECISIONS} (pair INTEGER PRIMARY KEY, reason TEXT NOT NULL);
    `,
    run: (db) => {
      if (!hasColumn(db, 'pairs', 'filter_reason')) return;
      db.exec(`INSERT INTO ${FILTER_DECISIONS} (pair, reason)
                 SELECT rowid, filter_reason FROM pairs WHERE filter_reason IS NOT NULL;
               ALTER TABLE pairs DROP COLUMN filter_reason;`);
    },
  },
  {
    id: 'filter/003-decision-blocks',
    sql: `ALTER TABLE ${FILTER_DECISIONS} RENAME TO filter_decision_rows; ${DECISION_BLOCKS_SQL}`,
    run: (db) => {
      const blocks = new DecisionBlocks(db);
      const rows = db
        .prepare('SELECT pair, reason FROM filter_decision_rows WHERE pair > ? ORDER BY pair LIMIT 65536')
        .raw();
      // In batches: the connection cannot write while a statement iterates.
      for (let after = -Infinity; ;) {
        const batch = rows.all(after) as Array<[number, string]>;
        if (batch.length === 0) break;
        for (const [pair, reason] of batch) {
          const code = STORED_REASONS.indexOf(reason);
          blocks.setStored(pair, code < 0 ? 0xff : code + 1);
        }
        after = batch[batch.length - 1]![0];
      }
      blocks.flush();
      db.exec('DROP TABLE filter_decision_rows');
    },
  },
];

/** One example pair shown for a rule in the report. */
export interface FilterExample {
  corpus: string;
  key: string;
  caption: string;
  url: string;
  /** What made it fail: `42 images share it`, `180x120`, `rare: xqzt`... */
  detail: string;
}

/** How one rule was applied. */
export interface RuleReport {
  rule: RuleName;
  /** `applied`; `off` (threshold 0, not asked, or `skipRules`); `skipped` (could not run, see `note`). */
  status: 'applied' | 'off' | 'skipped';
  /** The threshold in words: `shorter side > 200 px`. */
  threshold: string;
  /** Pairs for which this rule is the first failing one (the reason recorded for them). */
  dropped: number;
  /** Pairs failing this rule whatever the others say (nsfw: among the pairs it classified). */
  failing: number;
  note?: string;
}

/** What a filter run found and did. */
export interface FilterResult {
  corpora: string[];
  /** Stored pairs (status `ok`) over all corpora. */
  pairs: number;
  kept: number;
  dropped: number;
  /** Pairs left out because dedup marked them (`dup_of`); they get no filter reason. */
  duplicates: number;
  /** Pairs per reason (first failing rule), zeros included. */
  byReason: Record<FilterReason, number>;
  rules: RuleReport[];
  /** Up to `examples` pairs per reason: the most shared captions, the images with most captions, else the first ones. */
  examples: Partial<Record<FilterReason, FilterExample[]>>;
  vocabulary: { distinctTokens: number; size: number; cutoffCount: number } | null;
  /** Images scored by the classifier in this run (the others came from the cache). */
  nsfwClassified: number;
  preset: string;
  dryRun: boolean;
  interrupted: boolean;
  durationMs: number;
}

interface OpenCorpus {
  dir: string;
  db: Database.Database;
  hasNoise: boolean;
  hasDup: boolean;
  /**
   * Where the previous run's decisions are: `blocks` (read alongside the rows), or an SQL expression
   * over a row of `pairs` giving its reason's code (a column from older versions; 0 when none).
   */
  previous: 'blocks' | { sql: string };
  close(): void;
}

const WORK_FILE = '.filter-work.sqlite';
const SPOOL_FILE = '.filter-spool.f64';
/** Token counts spilled from memory: `.filter-tokens-N.f64`. */
const RUN_PREFIX = '.filter-tokens-';
const BATCH = 10_000;

/**
 * Opens a corpus to filter, holding its lock (the crawl's: `ERR_CORPUS_LOCKED`) until closed. A dry
 * run takes it too: it reads the manifest in many statements and sizes its tables from a count
 * taken first, so a crawl adding pairs meanwhile would skew it, and it uses the same scratch files
 * in the first corpus that a real run clears at its start and end.
 */
function openForFilter(dir: string, dryRun: boolean): OpenCorpus {
  if (!existsSync(join(dir, MANIFEST_FILE))) {
    throw new UsageError('ERR_CORPUS_NOT_FOUND', `No corpus at '${dir}' (no ${MANIFEST_FILE})`, {
      context: { stage: 'filter', path: dir },
    });
  }
  const release = acquireLock(dir);
  try {
    if (dryRun) {
      const db = openSqliteFile(join(dir, MANIFEST_FILE), 'Corpus manifest', { readonly: true, fileMustExist: true });
      return {
        dir,
        db,
        hasNoise: hasColumn(db, 'pairs', 'noise_prob'),
        hasDup: hasColumn(db, 'pairs', 'dup_of'),
        previous: previousDecisions(db),
        close: () => {
          db.close();
          release();
        },
      };
    }
    const corpus = openCorpus(dir, { migrations: FILTER_MIGRATIONS });
    return {
      dir,
      db: corpus.db,
      hasNoise: hasColumn(corpus.db, 'pairs', 'noise_prob'),
      hasDup: hasColumn(corpus.db, 'pairs', 'dup_of'),
      previous: previousDecisions(corpus.db),
      close: () => {
        corpus.close();
        release();
      },
    };
  } catch (err) {
    release();
    throw err;
  }
}

function thresholdText(rule: RuleName, o: ResolvedFilterOptions): string {
  const lt = o.inclusiveBounds ? '<=' : '<';
  const gt = o.inclusiveBounds ? '>=' : '>';
  switch (rule) {
    case 'image_size':
      return `shorter side ${gt} ${o.minSide} px`;
    case 'aspect_ratio':
      return `aspect ratio ${lt} ${o.maxAspect}`;
    case 'caption_words':
      return o.maxWords > 0 ? `${o.minWords} to ${o.maxWords} unigrams` : `at least ${o.minWords} unigrams`;
    case 'caption_chars':
      return `at least ${o.minChars} characters`;
    case 'shared_caption':
      return `caption shared by at most ${o.maxImagesPerCaption} images`;
    case 'image_captions':
      return `image with at most ${o.maxCaptionsPerImage} captions`;
    case 'rare_token':
      return `every unigram and bigram among the ${o.vocabSize.toLocaleString('en-US')} most frequent, seen >= ${o.vocabMinCount} times`;
    case 'noise_prob':
      return `noise probability <= ${o.maxNoiseProb ?? '-'}`;
    case 'nsfw':
      return `pornography score <= ${o.nsfwThreshold}`;
  }
}

function codePoints(text: string): number {
  let n = text.length;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) n--;
  }
  return n;
}

/**
 * Where the first unigram or bigram outside the vocabulary is, from the spooled unigram hashes:
 * `2i` for unigram i, `2i + 1` for the bigram ending at unigram i, -1 when there is none.
 */
function firstRare(r: Float64Array, at: number, n: number, vocab: KeySet): number {
  let previous = 0;
  for (let i = 0; i < n; i++) {
    const h = r[at + i]!;
    if (!vocab.has(h)) return 2 * i;
    if (i > 0 && !vocab.has(pairHash52(previous, h))) return 2 * i + 1;
    previous = h;
  }
  return -1;
}

/** The token a {@link firstRare} position names, from the caption. */
function rareTokenText(caption: string, at: number): string {
  const tokens = wordTokens(normaliseCaption(caption));
  const i = Math.floor(at / 2);
  return at % 2 === 0 ? (tokens[i] ?? '') : `${tokens[i - 1] ?? ''} ${tokens[i] ?? ''}`;
}

// A spooled pair: these values, then the hashes of its unigrams.
const S_ROWID = 0;
const S_CAPTION = 1;
const S_IMAGE = 2;
const S_WIDTH = 3;
const S_HEIGHT = 4;
const S_NOISE = 5;
/** corpus * 64 + previous reason code * 4 + (has sha256) * 2 + (dedup duplicate). */
const S_FLAGS = 6;
const S_CHARS = 7;
const S_WORDS = 8;
const SPOOL_HEADER = 9;

/** The filter's code of a reason that is not NULL (0 kept, i + 1 for `REASON_ORDER[i]`). */
const reasonCodeSql = (reason: string) =>
  `CASE ${reason} ${REASON_ORDER.map((r, i) => `WHEN '${r}' THEN ${i + 1}`).join(' ')} ELSE ${UNKNOWN_REASON} END`;

/**
 * {@link OpenCorpus.previous} for this manifest's layout of decisions. The older layouts are
 * only read as such by a dry run (which does not migrate): a lookup a pair, or the column.
 */
function previousDecisions(db: Database.Database): OpenCorpus['previous'] {
  if (hasTable(db, DECISION_BLOCKS)) return 'blocks';
  if (hasTable(db, FILTER_DECISIONS)) {
    return {
      sql: `COALESCE((SELECT ${reasonCodeSql('reason')} FROM ${FILTER_DECISIONS} WHERE pair = pairs.rowid), 0)`,
    };
  }
  return {
    sql: hasColumn(db, 'pairs', 'filter_reason')
      ? `CASE WHEN filter_reason IS NULL THEN 0 ELSE ${reasonCodeSql('filter_reason')} END`
      : '0',
  };
}

/** Rowids a range covers: a whole number of decision blocks. */
const CHUNK = 16 * BLOCK_PAIRS;

/** A column {@link forEachChunk} reads: SQL over a row of `pairs`; `text` when its values are never NULL strings. */
interface ChunkColumn {
  sql: string;
  text?: boolean;
}

/**
 * Rows of a manifest in rowid ranges of {@link CHUNK}, each column of a range read as one value:
 * one crossing from SQLite to JS per range instead of one per row, which halves the cost of
 * reading a large manifest. A number column comes as a JSON array; a text column as its values
 * joined by NUL characters and split in JS (no JSON escaping either way; a range whose text holds
 * a NUL is read again as JSON). Calls `fn` with the columns of each non-empty range and, with
 * `stale`, the range's previous reason codes by `rowid - from` (0 when kept), read from the
 * range's decision blocks; then calls `stale` with each rowid that has a previous decision but is
 * not a stored pair any more (its decision is to be cleared). With `stale`, `columns[0]` is `rowid`.
 */
async function forEachChunk(
  db: Database.Database,
  columns: ChunkColumn[],
  stale: ((rowid: number) => void) | null,
  fn: (count: number, cols: unknown[][], from: number, previous: Uint8Array) => boolean,
): Promise<void> {
  // Two queries: each alone is a walk down one edge of the table's b-tree; together in one SELECT
  // SQLite scans the whole table (measured: 80-100 ms on the 1M bench manifest against ~0).
  const first = db.prepare('SELECT MIN(rowid) FROM pairs').pluck().get() as number | null;
  const last = db.prepare('SELECT MAX(rowid) FROM pairs').pluck().get() as number | null;
  if (first === null || last === null) return;
  const query = (joined: boolean) =>
    db
      .prepare(
        `SELECT COUNT(*), ${columns.map((c) => (c.text && joined ? `group_concat(${c.sql}, char(0))` : `json_group_array(${c.sql})`)).join(', ')}
           FROM pairs WHERE rowid >= ? AND rowid < ? AND status = 'ok'`,
      )
      .raw();
  const select = query(true);
  const selectJson = query(false);
  const readPrevious = stale !== null ? readDecisions(db) : null;
  const previous = new Uint8Array(CHUNK);
  for (let from = first - (first % CHUNK); from <= last; from += CHUNK) {
    // The pass computes synchronously: a turn of the event loop a chunk lets a SIGINT's handler run.
    await setImmediate();
    const [count, ...values] = select.get(from, from + CHUNK) as [number, ...string[]];
    if (count === 0 && readPrevious === null) continue;
    let cols = values.map((v, k) =>
      columns[k]!.text ? (count > 0 ? v.split('\0') : []) : (JSON.parse(v) as unknown[]),
    );
    if (cols.some((c) => c.length !== count)) {
      const [, ...json] = selectJson.get(from, from + CHUNK) as [number, ...string[]];
      cols = json.map((j) => JSON.parse(j) as unknown[]);
    }
    if (readPrevious !== null) readPrevious(from, previous);
    if (count > 0 && !fn(count, cols, from, previous)) return;
    if (stale !== null) {
      const rowids = cols[0] as number[];
      for (let i = 0; i < count; i++) previous[rowids[i]! - from] = 0;
      for (let k = 0; k < CHUNK; k++) if (previous[k] !== 0) stale(from + k);
    }
  }
}

/** The rows of one manifest whose decision changes, with their new reason codes. */
class Changes {
  rowids = new Float64Array(1024);
  codes = new Uint8Array(1024);
  length = 0;

  push(rowid: number, code: number): void {
    if (this.length === this.rowids.length) {
      const rowids = new Float64Array(this.length * 2);
      rowids.set(this.rowids);
      this.rowids = rowids;
      const codes = new Uint8Array(this.length * 2);
      codes.set(this.codes);
      this.codes = codes;
    }
    this.rowids[this.length] = rowid;
    this.codes[this.length++] = code;
  }

  /**
   * Sorts the changes by rowid where needed: the second pass pushes them in that order, the
   * classifier's verdicts come after.
   */
  sort(): void {
    const r = this.rowids;
    let sorted = true;
    for (let i = 1; i < this.length && sorted; i++) sorted = r[i - 1]! < r[i]!;
    if (sorted) return;
    const order = Array.from({ length: this.length }, (_v, i) => i).sort((x, y) => r[x]! - r[y]!);
    this.rowids = Float64Array.from(order, (i) => r[i]!);
    this.codes = Uint8Array.from(order, (i) => this.codes[i]!);
  }
}

/**
 * Writes the changed decisions into a manifest's decision blocks (inside the caller's
 * transaction) in rowid order, each changed block read and written once, and clears the
 * decisions of `stale`, rowids that are no longer stored pairs.
 */
function applyChanges(db: Database.Database, changes: Changes, stale: number[]): void {
  changes.sort();
  const blocks = new DecisionBlocks(db);
  const { rowids, codes, length } = changes;
  for (let k = 0; k < length; k++) blocks.set(rowids[k]!, codes[k]!);
  for (const rowid of stale) blocks.set(rowid, 0);
  blocks.flush();
}

function resolveClassifier(o: ResolvedFilterOptions): NsfwClassifier | null {
  if (o.nsfw === 'none') return null;
  if (o.nsfw === 'nsfwjs') return nsfwjsClassifier();
  return o.nsfw;
}

/**
 * Filters one or more corpora as one: counts over all of them, then records each stored pair's
 * decision (the first failing rule; none when kept) in its own manifest's `filter_decisions`.
 */
export async function runFilter(options: FilterOptions): Promise<FilterResult> {
  const started = Date.now();
  const o = resolveFilterOptions(options);
  refuseDuplicateCorpora(o.corpus, 'filter');
  const corpora: OpenCorpus[] = [];
  let work: Database.Database | undefined;
  const workPath = join(o.corpus[0]!, WORK_FILE);
  const spoolPath = join(o.corpus[0]!, SPOOL_FILE);
  const runPrefix = join(o.corpus[0]!, RUN_PREFIX);
  let counter: TokenCounter | undefined;
  let spool: SpoolWriter | undefined;
  let reader: SpoolReader | undefined;
  const finishRuns: Array<(outcome: string, summary: unknown) => void> = [];
  let model: NsfwModel | undefined;
  try {
    for (const dir of o.corpus) corpora.push(openForFilter(dir, o.dryRun));
    if (o.maxNoiseProb !== undefined && !o.skipRules.includes('noise_prob')) {
      const missing = corpora.find((c) => !c.hasNoise);
      if (missing) {
        throw new UsageError(
          'ERR_NO_NOISE_PROB',
          `Option 'filter.maxNoiseProb': corpus '${missing.dir}' has no noise probabilities; run \`altforge score\` first`,
          { context: { stage: 'filter', option: 'maxNoiseProb', path: missing.dir } },
        );
      }
    }
    // Scratch files a killed run left behind.
    rmSync(workPath, { force: true });
    for (const name of readdirSync(o.corpus[0]!)) {
      if (name.startsWith(RUN_PREFIX)) rmSync(join(o.corpus[0]!, name), { force: true });
    }
    work = new Database(workPath);
    work.pragma('journal_mode = OFF');
    work.pragma('synchronous = OFF');
    work.pragma('cache_size = -65536');
    if (!o.dryRun) {
      for (const c of corpora) {
        const { onProgress: _p, signal: _s, nsfw, ...recorded } = o;
        finishRuns.push(
          recordStageRun(c.db, 'filter', { ...recorded, nsfw: typeof nsfw === 'string' ? nsfw : nsfw.name }),
        );
      }
    }

    const classifier = o.skipRules.includes('nsfw') ? null : resolveClassifier(o);
    const rules: RuleSet = { active: activeRules(o, classifier !== null), options: o };
    const progress = (p: FilterProgress) => o.onProgress?.(p);
    const aborted = () => o.signal?.aborted === true;
    // A run stopped by the signal records so, as dedup and export do; nothing was applied.
    const stopped = (): FilterResult => {
      const result = interruptedResult(o, corpora, started);
      for (const finish of finishRuns) finish('interrupted', { ...result, examples: undefined });
      return result;
    };

    const total = corpora.reduce(
      (n, c) => n + (c.db.prepare(`SELECT COUNT(*) FROM pairs WHERE status = 'ok'`).pluck().get() as number),
      0,
    );

    // Pass 1: the only read of the manifests. Count unigrams and bigrams in a typed hash table
    // keyed by 52-bit hashes; keep each distinct (caption, image) pair's caption and image hash
    // (sorted later to count images per caption and captions per image); spool per pair what the
    // second pass needs.
    // Sized for 4 distinct unigrams and bigrams a pair (the 1M bench corpus has 4.2): a table grown
    // from small rehashes its keys three times over.
    const tokenCounts = new TokenCounter(runPrefix, o.maxTokensInMemory, 4 * total);
    counter = tokenCounts;
    const sharing = rules.active.has('shared_caption') || rules.active.has('image_captions');
    let seenPairs = new KeySet(sharing ? total : 0);
    let pairCaptions = new Float64Array(sharing ? total : 0);
    let pairImages = new Float64Array(sharing ? total : 0);
    let distinctPairs = 0;
    const hasher = new CaptionHasher();
    spool = new SpoolWriter(spoolPath);
    // Rowids with a previous decision that are no longer stored pairs: cleared by apply.
    const stale = corpora.map((): number[] => []);
    let done = 0;
    for (let ci = 0; ci < corpora.length && !aborted(); ci++) {
      const c = corpora[ci]!;
      const cols: ChunkColumn[] = [
        { sql: 'rowid' },
        { sql: 'caption', text: true },
        // What sha52 reads of a sha256 (its first 13 characters: 52 bits of a hex digest), or the
        // URL of an image without one.
        { sql: 'COALESCE(substr(sha256, 1, 13), url)', text: true },
        { sql: 'COALESCE(original_width, width, 0)' },
        { sql: 'COALESCE(original_height, height, 0)' },
        {
          sql: `${ci * 64} + 4 * (${c.previous === 'blocks' ? '0' : c.previous.sql}) + 2 * (sha256 IS NOT NULL) + ${c.hasDup ? '(dup_of IS NOT NULL)' : '0'}`,
        },
      ];
      if (c.hasNoise) cols.push({ sql: 'noise_prob' });
      await forEachChunk(
        c.db,
        cols,
        c.previous === 'blocks' ? (rowid) => stale[ci]!.push(rowid) : null,
        (count, [rowids, captions, imageIds, widths, heights, flagList, noises], from, previous) => {
          for (let i = 0; i < count; i++) {
            const caption = captions![i] as string;
            const rowid = rowids![i] as number;
            const flags = (flagList![i] as number) + 4 * previous[rowid - from]!;
            let offset = spool!.reserve(SPOOL_HEADER + (caption.length >> 1) + 1);
            let r = spool!.values;
            let words = hasher.hash(caption, r, offset + SPOOL_HEADER);
            let alt: number;
            let chars: number;
            if (words >= 0) {
              // Printable ASCII that normalisation only lower-cases: unigrams hashed in one pass.
              spool!.shrink(offset, SPOOL_HEADER + words);
              alt = hasher.caption;
              chars = caption.length;
              tokenCounts.addCaption(r, offset + SPOOL_HEADER, words);
            } else {
              spool!.shrink(offset, 0);
              const norm = normaliseCaption(caption);
              const tokens = wordTokens(norm);
              alt = hash52(norm);
              words = tokens.length;
              chars = codePoints(norm);
              offset = spool!.reserve(SPOOL_HEADER + words);
              r = spool!.values;
              const at = offset + SPOOL_HEADER;
              for (let k = 0; k < words; k++) r[at + k] = hash52(tokens[k]!);
              tokenCounts.addCaption(r, at, words);
            }
            const imageId = imageIds![i] as string;
            const image = (flags & 2) !== 0 ? sha52(imageId) : hash52(imageId);
            if (sharing && seenPairs.add(pairHash52(alt, image))) {
              pairCaptions[distinctPairs] = alt;
              pairImages[distinctPairs] = image;
              distinctPairs++;
            }
            const noise = noises === undefined ? null : (noises[i] as number | null);
            r[offset + S_ROWID] = rowid;
            r[offset + S_CAPTION] = alt;
            r[offset + S_IMAGE] = image;
            r[offset + S_WIDTH] = widths![i] as number;
            r[offset + S_HEIGHT] = heights![i] as number;
            r[offset + S_NOISE] = noise ?? NaN;
            r[offset + S_FLAGS] = flags;
            r[offset + S_CHARS] = chars;
            r[offset + S_WORDS] = words;
            if (++done % BATCH === 0) {
              progress({ phase: 'count', done, total });
              if (aborted()) return false;
            }
          }
          return true;
        },
      );
    }
    spool.close();
    spool = undefined;
    progress({ phase: 'count', done, total });
    if (aborted()) return stopped();

    // Between the passes: the vocabulary and the captions/images over their limits.
    progress({ phase: 'vocabulary', done: 0 });
    seenPairs = new KeySet();
    // Images per caption: the runs of equal captions among the distinct (caption, image) pairs.
    const overLimit = (keys: Float64Array, limit: number): Map<number, number> => {
      const out = new Map<number, number>();
      keys.sort();
      for (let i = 0; i < keys.length;) {
        let j = i + 1;
        while (j < keys.length && keys[j] === keys[i]) j++;
        if (j - i > limit) out.set(keys[i]!, j - i);
        i = j;
      }
      return out;
    };
    const sharedCaptions = rules.active.has('shared_caption')
      ? overLimit(pairCaptions.subarray(0, distinctPairs), o.maxImagesPerCaption)
      : new Map<number, number>();
    const busyImages = rules.active.has('image_captions')
      ? overLimit(pairImages.subarray(0, distinctPairs), o.maxCaptionsPerImage)
      : new Map<number, number>();
    pairCaptions = new Float64Array(0);
    pairImages = new Float64Array(0);
    // Last, when the tables of the sharing rules are gone: the vocabulary (may sort spilled counts).
    const vocab = tokenCounts.finish(
      rules.active.has('rare_token') ? o.vocabSize : Number.MAX_SAFE_INTEGER,
      o.vocabMinCount,
    );
    // The examples of the two sharing rules are the most shared captions and the busiest images.
    const topShared = new Set(
      [...sharedCaptions]
        .sort((a, b) => b[1] - a[1] || a[0] - b[0])
        .slice(0, o.examples)
        .map(([h]) => h),
    );
    const topBusy = new Set(
      [...busyImages]
        .sort((a, b) => b[1] - a[1] || a[0] - b[0])
        .slice(0, o.examples)
        .map(([h]) => h),
    );

    // Pass 2: decide every pair; those passing all rules but nsfw wait for the classifier. Only the
    // rows whose reason changes are remembered, by row id, for the apply step.
    const failingByReason = new Float64Array(REASON_ORDER.length);
    const examples: Partial<Record<FilterReason, FilterExample[]>> = {};
    const exampleSeen = new Set<string>();
    const addExample = (reason: FilterReason, ex: FilterExample, dedupKey?: string) => {
      const list = (examples[reason] ??= []);
      if (dedupKey !== undefined) {
        if (exampleSeen.has(`${reason}\0${dedupKey}`)) return;
        exampleSeen.add(`${reason}\0${dedupKey}`);
      }
      if (list.length < o.examples || dedupKey !== undefined) list.push(ex);
    };
    const byReasonCode = new Float64Array(REASON_ORDER.length + 1);
    const changes = corpora.map(() => new Changes());
    let duplicates = 0;
    let pairs = 0;
    /** Pairs the noise rule judged without a noise probability (crawled after `score`): they pass it. */
    let unscored = 0;
    work.exec(
      'CREATE TABLE nsfw_pending (corpus INTEGER NOT NULL, pair INTEGER NOT NULL, shard INTEGER, key TEXT NOT NULL, sha256 TEXT NOT NULL, old INTEGER NOT NULL)',
    );
    const insertPending = work.prepare(
      'INSERT INTO nsfw_pending (corpus, pair, shard, key, sha256, old) VALUES (?, ?, ?, ?, ?, ?)',
    );
    const nsfwOn = rules.active.has('nsfw');
    // Key, URL and caption are read back only for the few pairs shown as examples.
    const identify = corpora.map((c) =>
      c.db.prepare('SELECT key, url, caption, sha256, shard FROM pairs WHERE rowid = ?'),
    );
    const lookup = (ci: number, rowid: number) =>
      identify[ci]!.get(rowid) as {
        key: string;
        url: string;
        caption: string;
        sha256: string | null;
        shard: number | null;
      };
    const example = (ci: number, rowid: number, reason: FilterReason, f: PairFacts): FilterExample => {
      const { key, url, caption } = lookup(ci, rowid);
      const detail =
        reason === 'shared_caption'
          ? `${f.captionImages} images share it`
          : reason === 'image_captions'
            ? `${f.imageCaptions} captions`
            : exampleDetail(reason, f, caption);
      return { corpus: corpora[ci]!.dir, key, caption, url, detail };
    };
    const pending: unknown[][] = [];
    const flush = work.transaction((items: unknown[][]) => {
      for (const item of items) insertPending.run(item);
    });
    const checkRare = rules.active.has('rare_token') && vocab.tokens !== null;
    const vocabTokens = vocab.tokens ?? new KeySet();
    const failMask = failureMask(rules);
    const facts: PairFacts = {
      width: 0,
      height: 0,
      words: 0,
      chars: 0,
      captionImages: 0,
      imageCaptions: 0,
      rareAt: -1,
      noiseProb: null,
    };
    reader = new SpoolReader(spoolPath, SPOOL_HEADER, (v, at) => SPOOL_HEADER + v[at + S_WORDS]!);
    for (let offset = reader.next(); offset >= 0; offset = reader.next()) {
      const r = reader.values;
      pairs++;
      const flags = r[offset + S_FLAGS]!;
      const ci = Math.floor(flags / 64);
      const old = (flags >> 2) & 15;
      const rowid = r[offset + S_ROWID]!;
      if ((flags & 1) === 1) {
        duplicates++;
        if (old !== 0) changes[ci]!.push(rowid, 0);
      } else {
        const alt = r[offset + S_CAPTION]!;
        const image = r[offset + S_IMAGE]!;
        const noise = r[offset + S_NOISE]!;
        const words = r[offset + S_WORDS]!;
        facts.width = r[offset + S_WIDTH]!;
        facts.height = r[offset + S_HEIGHT]!;
        facts.words = words;
        facts.chars = r[offset + S_CHARS]!;
        facts.captionImages = sharedCaptions.size === 0 ? 0 : (sharedCaptions.get(alt) ?? 0);
        facts.imageCaptions = busyImages.size === 0 ? 0 : (busyImages.get(image) ?? 0);
        facts.rareAt = checkRare ? firstRare(r, offset + SPOOL_HEADER, words, vocabTokens) : -1;
        facts.noiseProb = Number.isNaN(noise) ? null : noise;
        if (facts.noiseProb === null) unscored++;
        const mask = failMask(facts);
        let code = 0;
        if (mask !== 0) {
          for (let b = 0; b < REASON_ORDER.length; b++) if ((mask & (1 << b)) !== 0) failingByReason[b]!++;
          code = 32 - Math.clz32(mask & -mask);
          const reason = REASON_ORDER[code - 1]!;
          byReasonCode[code]!++;
          if (reason === 'shared_caption') {
            if (topShared.has(alt) && !exampleSeen.has(`${reason}\0${alt}`)) {
              addExample(reason, example(ci, rowid, reason, facts), String(alt));
            }
          } else if (reason === 'image_captions') {
            if (topBusy.has(image) && !exampleSeen.has(`${reason}\0${image}`)) {
              addExample(reason, example(ci, rowid, reason, facts), String(image));
            }
          } else if ((examples[reason]?.length ?? 0) < o.examples) {
            addExample(reason, example(ci, rowid, reason, facts));
          }
        }
        const nsfwPending = nsfwOn && code === 0 && (flags & 2) !== 0 ? lookup(ci, rowid) : undefined;
        if (nsfwPending !== undefined && nsfwPending.shard !== null && nsfwPending.shard >= 0) {
          pending.push([ci, rowid, nsfwPending.shard, nsfwPending.key, nsfwPending.sha256, old]);
          if (pending.length >= BATCH) {
            flush(pending);
            pending.length = 0;
          }
        } else if (code !== old) changes[ci]!.push(rowid, code);
      }
      if (pairs % BATCH === 0) {
        progress({ phase: 'decide', done: pairs, total });
        await setImmediate();
        if (aborted()) break;
      }
    }
    reader.close();
    reader = undefined;
    flush(pending);
    progress({ phase: 'decide', done: pairs, total });
    if (aborted()) return stopped();
    // The sharing rules' examples: most shared first.
    examples.shared_caption?.sort((a, b) => parseInt(b.detail) - parseInt(a.detail));
    examples.image_captions?.sort((a, b) => parseInt(b.detail) - parseInt(a.detail));
    const byReason = Object.fromEntries(REASON_ORDER.map((r) => [r, 0])) as Record<FilterReason, number>;
    const failing = Object.fromEntries(RULES.map((r) => [r, 0])) as Record<RuleName, number>;
    REASON_ORDER.forEach((reason, i) => {
      byReason[reason] += byReasonCode[i + 1]!;
      failing[reason === 'too_few_words' || reason === 'too_many_words' ? 'caption_words' : reason] +=
        failingByReason[i]!;
    });

    // The classifier, on the images of the pairs that pass every other rule.
    const ruleReports = new Map<RuleName, Omit<RuleReport, 'dropped' | 'failing'>>();
    if (rules.active.has('noise_prob') && unscored > 0) {
      ruleReports.set('noise_prob', {
        rule: 'noise_prob',
        status: 'applied',
        threshold: thresholdText('noise_prob', o),
        note: `${unscored} pairs have no noise probability (not scored: altforge score scores them) and pass this rule`,
      });
    }
    let nsfwClassified = 0;
    const nsfwCode = REASON_ORDER.indexOf('nsfw') + 1;
    let nsfwScored = false;
    if (nsfwOn && classifier) {
      try {
        const scored = await scorePending(work, corpora, classifier, o, progress, aborted);
        nsfwClassified = scored.classified;
        model = scored.model;
        nsfwScored = true;
      } catch (err) {
        if (!(err instanceof ClassifierUnavailableError)) throw err;
        rules.active.delete('nsfw');
        ruleReports.set('nsfw', {
          rule: 'nsfw',
          status: 'skipped',
          threshold: thresholdText('nsfw', o),
          note: err.message,
        });
      }
    }
    if (aborted()) return stopped();
    if (nsfwOn) {
      // Every pair that waited for the classifier: dropped above the threshold, else kept.
      const waited = work
        .prepare(
          `SELECT p.corpus, p.pair, p.key, p.old, ${nsfwScored ? 's.score' : 'NULL'} AS score FROM nsfw_pending p
             ${nsfwScored ? 'LEFT JOIN nsfw_run_scores s ON s.sha256 = p.sha256' : ''}
            ORDER BY score DESC NULLS LAST, p.corpus, p.pair`,
        )
        .raw()
        .iterate() as IterableIterator<[number, number, string, number, number | null]>;
      const dropped: Array<[number, number, string, number]> = [];
      for (const [ci, rowid, key, old, score] of waited) {
        const code = score !== null && score > o.nsfwThreshold ? nsfwCode : 0;
        if (code !== old) changes[ci]!.push(rowid, code);
        if (code !== 0 && dropped.length < o.examples) dropped.push([ci, rowid, key, score!]);
        if (code !== 0) {
          byReason.nsfw++;
          failing.nsfw++;
        }
      }
      for (const [ci, rowid, key, score] of dropped) {
        const row = corpora[ci]!.db.prepare('SELECT caption, url FROM pairs WHERE rowid = ?').get(rowid) as {
          caption: string;
          url: string;
        };
        (examples.nsfw ??= []).push({ corpus: corpora[ci]!.dir, key, ...row, detail: `score ${score.toFixed(3)}` });
      }
    }

    const dropped = REASON_ORDER.reduce((n, r) => n + byReason[r], 0);
    const rulesOut: RuleReport[] = RULES.map((rule) => {
      const base = ruleReports.get(rule) ?? {
        rule,
        status: rules.active.has(rule) ? ('applied' as const) : ('off' as const),
        threshold: thresholdText(rule, o),
      };
      const droppedBy =
        rule === 'caption_words' ? byReason.too_few_words + byReason.too_many_words : byReason[rule as FilterReason];
      return { ...base, dropped: droppedBy, failing: failing[rule] };
    });
    const result: FilterResult = {
      corpora: o.corpus,
      pairs,
      kept: pairs - duplicates - dropped,
      dropped,
      duplicates,
      byReason,
      rules: rulesOut,
      examples,
      vocabulary: rules.active.has('rare_token')
        ? { distinctTokens: vocab.distinct, size: vocab.size, cutoffCount: vocab.cutoffCount }
        : null,
      nsfwClassified,
      preset: o.preset,
      dryRun: o.dryRun,
      interrupted: false,
      durationMs: 0,
    };

    // Apply: one transaction per manifest writes the reasons that changed.
    if (!o.dryRun) {
      for (let ci = 0; ci < corpora.length; ci++) {
        const c = corpora[ci]!;
        progress({ phase: 'apply', done: ci, total: corpora.length });
        c.db.transaction(() => {
          applyChanges(c.db, changes[ci]!, stale[ci]!);
          finishRuns[ci]!('ok', { ...result, examples: undefined, durationMs: Date.now() - started });
        })();
      }
      progress({ phase: 'apply', done: corpora.length, total: corpora.length });
    }
    result.durationMs = Date.now() - started;
    return result;
  } catch (err) {
    for (const finish of finishRuns) {
      try {
        finish('error', { error: err instanceof Error ? err.message : String(err) });
      } catch {
        // The run's record is best effort; the error itself is what the caller needs.
      }
    }
    if (err instanceof AltforgeError) throw err;
    throw err;
  } finally {
    model?.dispose();
    work?.close();
    spool?.close();
    reader?.close();
    // The scratch files are the first corpus's lock holder's: a run refused its lock leaves them be.
    if (corpora.length > 0) {
      rmSync(workPath, { force: true });
      removeSpool(spoolPath);
      counter?.remove();
    }
    for (const c of corpora) c.close();
  }
}

function exampleDetail(reason: FilterReason, f: PairFacts, caption: string): string {
  switch (reason) {
    case 'image_size':
    case 'aspect_ratio':
      return `${f.width}x${f.height}`;
    case 'too_few_words':
    case 'too_many_words':
      return `${f.words} unigrams`;
    case 'caption_chars':
      return `${f.chars} characters`;
    case 'rare_token':
      return `rare: ${rareTokenText(caption, f.rareAt)}`;
    case 'noise_prob':
      return `noise ${f.noiseProb?.toFixed(3) ?? ''}`;
    default:
      return '';
  }
}

function interruptedResult(o: ResolvedFilterOptions, corpora: OpenCorpus[], started: number): FilterResult {
  return {
    corpora: corpora.map((c) => c.dir),
    pairs: 0,
    kept: 0,
    dropped: 0,
    duplicates: 0,
    byReason: Object.fromEntries(REASON_ORDER.map((r) => [r, 0])) as Record<FilterReason, number>,
    rules: [],
    examples: {},
    vocabulary: null,
    nsfwClassified: 0,
    preset: o.preset,
    dryRun: o.dryRun,
    interrupted: true,
    durationMs: Date.now() - started,
  };
}

/**
 * Scores the images waiting in `nsfw_pending` into the work table `nsfw_run_scores`: cached
 * scores from the manifests first, then the classifier on the rest, shard by shard, each batch's
 * scores cached in the manifest as soon as they exist (unless dry-run).
 */
async function scorePending(
  work: Database.Database,
  corpora: OpenCorpus[],
  classifier: NsfwClassifier,
  o: ResolvedFilterOptions,
  progress: (p: FilterProgress) => void,
  aborted: () => boolean,
): Promise<{ classified: number; model: NsfwModel | undefined }> {
  work.exec('CREATE TABLE nsfw_run_scores (sha256 TEXT PRIMARY KEY, score REAL NOT NULL) WITHOUT ROWID');
  const insertScore = work.prepare('INSERT OR IGNORE INTO nsfw_run_scores (sha256, score) VALUES (?, ?)');
  // Cached scores of this model, in batches: each manifest's own connection reads them (the work
  // database attached to it for the join, read only), the work connection writes them. Never the
  // other way round: a dry run opens the manifests read-only, and whatever is attached to a
  // read-only connection is read-only too.
  work.exec('CREATE INDEX nsfw_pending_sha256 ON nsfw_pending (sha256)');
  const copyCached = work.transaction((rows: Array<[string, number]>) => {
    for (const [sha, score] of rows) insertScore.run(sha, score);
  });
  for (const c of corpora) {
    if (!hasTable(c.db, 'nsfw_scores')) continue;
    c.db.prepare('ATTACH DATABASE ? AS work').run(work.name);
    try {
      // Each batch is read whole before it is written: a statement still reading `work` from this
      // connection would hold the lock the work connection needs to write. Walked in the order of
      // the pending index, so that each batch starts where the last one ended.
      const cached = c.db
        .prepare(
          `SELECT DISTINCT p.sha256, s.score FROM work.nsfw_pending p
             JOIN nsfw_scores s ON s.sha256 = p.sha256 AND s.model = ?
            WHERE p.sha256 > ? ORDER BY p.sha256 LIMIT ${BATCH}`,
        )
        .raw();
      for (let after = ''; ;) {
        const rows = cached.all(classifier.name, after) as Array<[string, number]>;
        if (rows.length === 0) break;
        copyCached(rows);
        after = rows[rows.length - 1]![0];
      }
    } finally {
      c.db.exec('DETACH DATABASE work');
    }
  }
  const todo = work
    .prepare(
      `SELECT corpus, shard, key, sha256 FROM nsfw_pending
        WHERE sha256 NOT IN (SELECT sha256 FROM nsfw_run_scores)
        GROUP BY sha256 ORDER BY corpus, shard, key`,
    )
    .raw()
    .all() as Array<[number, number | null, string, string]>;
  if (todo.length === 0) return { classified: 0, model: undefined };
  const model = await classifier.load();
  const batchSize = classifier.batchSize ?? 16;
  let classified = 0;
  progress({ phase: 'nsfw', done: 0, total: todo.length });
  for (let i = 0; i < todo.length && !aborted();) {
    const [ci, shard] = todo[i]!;
    let j = i;
    const keys = new Map<string, string>();
    while (j < todo.length && todo[j]![0] === ci && todo[j]![1] === shard) {
      keys.set(todo[j]![2], todo[j]![3]);
      j++;
    }
    const c = corpora[ci]!;
    const cache =
      !o.dryRun && hasTable(c.db, 'nsfw_scores')
        ? c.db.prepare('INSERT OR REPLACE INTO nsfw_scores (sha256, model, score) VALUES (?, ?, ?)')
        : null;
    let batch: Array<{ sha: string; jpg: Buffer }> = [];
    const scoreBatch = async () => {
      if (batch.length === 0) return;
      const scores = await model.score(batch.map((b) => b.jpg));
      const items = batch.map((b, k) => [b.sha, scores[k]!] as const);
      work.transaction(() => {
        for (const [sha, s] of items) insertScore.run(sha, s);
      })();
      if (cache) {
        c.db.transaction(() => {
          for (const [sha, s] of items) cache.run(sha, classifier.name, s);
        })();
      }
      classified += batch.length;
      batch = [];
      progress({ phase: 'nsfw', done: classified, total: todo.length });
    };
    if (shard !== null) {
      const tar = shardPaths(c.dir, shard).tar;
      if (existsSync(tar)) {
        for await (const sample of readShard(tar, new Set(keys.keys()))) {
          batch.push({ sha: keys.get(sample.key)!, jpg: sample.jpg });
          if (batch.length >= batchSize) await scoreBatch();
          if (aborted()) break;
        }
      }
    }
    await scoreBatch();
    i = j;
  }
  return { classified, model };
}
