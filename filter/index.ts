/**
 * The filter stage: ALIGN's minimal frequency rules (and DataComp's basic preset), recorded per
 * pair in `pairs.filter_reason`, never deleting anything. Two streaming passes over the manifests:
 * the first counts (tokens, captions per image, images per caption) into bounded in-memory
 * counters and a scratch SQLite file; the second decides each pair. The decisions are applied to
 * each manifest in one transaction, so a killed run leaves the previous run's column intact.
 */
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { AltforgeError, UsageError } from '../corpus/errors.ts';
import { MANIFEST_FILE, hasColumn, openCorpus, recordStageRun, type Migration } from '../corpus/manifest.ts';
import { readShard } from '../corpus/shard-reader.ts';
import { shardPaths } from '../corpus/shards.ts';
import { normaliseCaption, wordTokens } from '../corpus/text.ts';
import { TokenCounter, type Vocabulary } from './_counts.ts';
import { SpoolWriter, readSpool, removeSpool } from './_spool.ts';
import { CountTable } from './_hash-table.ts';
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
import { activeRules, failures, type PairFacts, type RuleSet } from './rules.ts';

export { RULES, type FilterOptions, type FilterProgress, type FilterReason, type RuleName } from './options.ts';
export { ClassifierUnavailableError, nsfwjsClassifier, type NsfwClassifier, type NsfwModel } from './nsfw.ts';
export { runExport, type ExportOptions, type ExportResult } from './export.ts';

/** The filter's columns and its classifier cache. */
export const FILTER_MIGRATIONS: readonly Migration[] = [
  {
    id: 'filter/001-filter-reason',
    sql: `
      ALTER TABLE pairs ADD COLUMN filter_reason TEXT;
      CREATE TABLE nsfw_scores (
        sha256 TEXT NOT NULL,
        model TEXT NOT NULL,
        score REAL NOT NULL,
        PRIMARY KEY (sha256, model)
      ) WITHOUT ROWID;
    `,
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
  /** Pairs for which this rule is the first failing one (their `filter_reason`). */
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
  /** Pairs left out because dedup marked them (`dup_of`); they get no `filter_reason`. */
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
  hasScores: boolean;
  close(): void;
}

const REASONS: readonly FilterReason[] = [
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

const WORK_FILE = '.filter-work.sqlite';
const SPOOL_FILE = '.filter-spool.f64';
const BATCH = 10_000;

function openForFilter(dir: string, dryRun: boolean): OpenCorpus {
  if (!existsSync(join(dir, MANIFEST_FILE))) {
    throw new UsageError('ERR_CORPUS_NOT_FOUND', `No corpus at '${dir}' (no ${MANIFEST_FILE})`, {
      context: { stage: 'filter', path: dir },
    });
  }
  if (dryRun) {
    const db = new Database(join(dir, MANIFEST_FILE), { readonly: true, fileMustExist: true });
    return {
      dir,
      db,
      hasNoise: hasColumn(db, 'pairs', 'noise_prob'),
      hasDup: hasColumn(db, 'pairs', 'dup_of'),
      hasScores: hasColumn(db, 'pairs', 'filter_reason'),
      close: () => db.close(),
    };
  }
  const corpus = openCorpus(dir, { migrations: FILTER_MIGRATIONS });
  return {
    dir,
    db: corpus.db,
    hasNoise: hasColumn(corpus.db, 'pairs', 'noise_prob'),
    hasDup: hasColumn(corpus.db, 'pairs', 'dup_of'),
    hasScores: true,
    close: () => corpus.close(),
  };
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
function firstRare(r: Float64Array, at: number, n: number, vocab: Vocabulary): number {
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

const SPOOL_HEADER = 10;

const CHUNK = 4096;

/**
 * The stored pairs of a manifest, `columns` per row, in rowid order. Read in rowid ranges, each
 * column of a range as one JSON array: one crossing from SQLite to JS per range instead of one
 * per row, which halves the cost of reading a large manifest.
 */
function* storedPairs(db: Database.Database, columns: string[]): Generator<unknown[]> {
  const bounds = db.prepare('SELECT MIN(rowid), MAX(rowid) FROM pairs').raw().get() as [number | null, number | null];
  if (bounds[0] === null || bounds[1] === null) return;
  const select = db
    .prepare(
      `SELECT COUNT(*), ${columns.map((c) => `json_group_array(${c})`).join(', ')}
         FROM pairs WHERE rowid >= ? AND rowid < ? AND status = 'ok'`,
    )
    .raw();
  for (let from = bounds[0]; from <= bounds[1]; from += CHUNK) {
    const [count, ...json] = select.get(from, from + CHUNK) as [number, ...string[]];
    if (count === 0) continue;
    const cols = json.map((j) => JSON.parse(j) as unknown[]);
    for (let i = 0; i < count; i++) {
      const row: unknown[] = [];
      for (let c = 0; c < cols.length; c++) row.push(cols[c]![i]);
      yield row;
    }
  }
}

function resolveClassifier(o: ResolvedFilterOptions): NsfwClassifier | null {
  if (o.nsfw === 'none') return null;
  if (o.nsfw === 'nsfwjs') return nsfwjsClassifier();
  return o.nsfw;
}

/**
 * Filters one or more corpora as one: counts over all of them, then records each stored pair's
 * `filter_reason` (the first failing rule, NULL when kept) in its own manifest.
 */
export async function runFilter(options: FilterOptions): Promise<FilterResult> {
  const started = Date.now();
  const o = resolveFilterOptions(options);
  const corpora: OpenCorpus[] = [];
  let work: Database.Database | undefined;
  const workPath = join(o.corpus[0]!, WORK_FILE);
  const spoolPath = join(o.corpus[0]!, SPOOL_FILE);
  let spool: SpoolWriter | undefined;
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
    rmSync(workPath, { force: true });
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

    const total = corpora.reduce(
      (n, c) => n + (c.db.prepare(`SELECT COUNT(*) FROM pairs WHERE status = 'ok'`).pluck().get() as number),
      0,
    );

    // Pass 1: the only read of the manifests. Count unigrams and bigrams, and how many distinct
    // images carry each caption (and distinct captions each image), in typed hash tables keyed by
    // 52-bit hashes; spool per pair what the second pass needs.
    const counter = new TokenCounter(work, o.maxTokensInMemory);
    const seenPairs = new CountTable();
    const imagesPerCaption = new CountTable();
    const captionsPerImage = new CountTable();
    spool = new SpoolWriter(spoolPath);
    let done = 0;
    for (let ci = 0; ci < corpora.length; ci++) {
      const c = corpora[ci]!;
      const cols = [
        'rowid',
        'caption',
        'COALESCE(sha256, url)',
        'COALESCE(original_width, width)',
        'COALESCE(original_height, height)',
        'shard',
        c.hasNoise ? 'noise_prob' : 'NULL',
        c.hasDup ? 'dup_of IS NOT NULL' : '0',
        'sha256 IS NOT NULL',
      ];
      const rows = storedPairs(c.db, cols) as Iterable<
        [number, string, string, number | null, number | null, number | null, number | null, number, number]
      >;
      for (const [rowid, caption, imageId, width, height, shard, noiseProb, dup, hasSha] of rows) {
        const norm = normaliseCaption(caption);
        const tokens = wordTokens(norm);
        const { values: r, offset } = spool.reserve(SPOOL_HEADER + tokens.length);
        let previous = 0;
        for (let i = 0; i < tokens.length; i++) {
          const h = hash52(tokens[i]!);
          counter.add(h);
          if (i > 0) counter.add(pairHash52(previous, h));
          r[offset + SPOOL_HEADER + i] = h;
          previous = h;
        }
        const alt = hash52(norm);
        const image = hasSha ? sha52(imageId) : hash52(imageId);
        if (seenPairs.add(pairHash52(alt, image)) === 1) {
          imagesPerCaption.add(alt);
          captionsPerImage.add(image);
        }
        r[offset] = rowid;
        r[offset + 1] = alt;
        r[offset + 2] = image;
        r[offset + 3] = noiseProb ?? NaN;
        r[offset + 4] = width ?? 0;
        r[offset + 5] = height ?? 0;
        r[offset + 6] = shard ?? -1;
        r[offset + 7] = ci * 4 + (hasSha ? 2 : 0) + (dup ? 1 : 0);
        r[offset + 8] = codePoints(norm);
        r[offset + 9] = tokens.length;
        if (++done % BATCH === 0) {
          progress({ phase: 'count', done, total });
          if (aborted()) break;
        }
      }
      if (aborted()) break;
    }
    spool.close();
    spool = undefined;
    progress({ phase: 'count', done, total });
    if (aborted()) return interruptedResult(o, corpora, started);
    seenPairs.clear();

    // Between the passes: the vocabulary and the captions/images over their limits.
    progress({ phase: 'vocabulary', done: 0 });
    const vocab = counter.finish(
      rules.active.has('rare_token') ? o.vocabSize : Number.MAX_SAFE_INTEGER,
      o.vocabMinCount,
    );
    const sharedCaptions = new Map<number, number>();
    if (rules.active.has('shared_caption')) {
      imagesPerCaption.forEach((alt, n) => {
        if (n > o.maxImagesPerCaption) sharedCaptions.set(alt, n);
      });
    }
    imagesPerCaption.clear();
    const busyImages = new Map<number, number>();
    if (rules.active.has('image_captions')) {
      captionsPerImage.forEach((image, n) => {
        if (n > o.maxCaptionsPerImage) busyImages.set(image, n);
      });
    }
    captionsPerImage.clear();
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

    // Pass 2: decide every pair; those passing all rules but nsfw wait for the classifier.
    const byReason = Object.fromEntries(REASONS.map((r) => [r, 0])) as Record<FilterReason, number>;
    const failing = Object.fromEntries(RULES.map((r) => [r, 0])) as Record<RuleName, number>;
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
    let duplicates = 0;
    let pairs = 0;
    work.exec(
      'CREATE TABLE decisions (corpus INTEGER NOT NULL, pair INTEGER NOT NULL, reason TEXT NOT NULL, PRIMARY KEY (corpus, pair)) WITHOUT ROWID',
    );
    work.exec(
      'CREATE TABLE nsfw_pending (corpus INTEGER NOT NULL, pair INTEGER NOT NULL, shard INTEGER, key TEXT NOT NULL, sha256 TEXT NOT NULL)',
    );
    const insertDecision = work.prepare('INSERT INTO decisions (corpus, pair, reason) VALUES (?, ?, ?)');
    const insertPending = work.prepare(
      'INSERT INTO nsfw_pending (corpus, pair, shard, key, sha256) VALUES (?, ?, ?, ?, ?)',
    );
    done = 0;
    const nsfwOn = rules.active.has('nsfw');
    // Key, URL and caption are read back only for the few pairs shown as examples.
    const identify = corpora.map((c) => c.db.prepare('SELECT key, url, caption, sha256 FROM pairs WHERE rowid = ?'));
    const lookup = (ci: number, rowid: number) =>
      identify[ci]!.get(rowid) as { key: string; url: string; caption: string; sha256: string | null };
    const pending: unknown[][] = [];
    const flush = work.transaction((items: unknown[][]) => {
      for (const item of items) {
        if (item.length === 3) insertDecision.run(item);
        else insertPending.run(item);
      }
    });
    const checkRare = rules.active.has('rare_token');
    for (const { values: r, offset } of readSpool(spoolPath, SPOOL_HEADER, (v, at) => SPOOL_HEADER + v[at + 9]!)) {
      pairs++;
      const flags = r[offset + 7]!;
      const ci = Math.floor(flags / 4);
      if (flags % 2 === 1) {
        duplicates++;
        continue;
      }
      const rowid = r[offset]!;
      const alt = r[offset + 1]!;
      const image = r[offset + 2]!;
      const noise = r[offset + 3]!;
      const shard = r[offset + 6]!;
      const words = r[offset + 9]!;
      const facts: PairFacts = {
        width: r[offset + 4]!,
        height: r[offset + 5]!,
        words,
        chars: r[offset + 8]!,
        captionImages: sharedCaptions.get(alt) ?? 0,
        imageCaptions: busyImages.get(image) ?? 0,
        rareAt: checkRare ? firstRare(r, offset + SPOOL_HEADER, words, vocab) : -1,
        noiseProb: Number.isNaN(noise) ? null : noise,
      };
      const failed = failures(facts, rules);
      for (const reason of failed) {
        failing[reason === 'too_few_words' || reason === 'too_many_words' ? 'caption_words' : reason]++;
      }
      const reason = failed[0];
      if (reason !== undefined) {
        byReason[reason]++;
        pending.push([ci, rowid, reason]);
        const example = (detail: (caption: string) => string) => {
          const { key, url, caption } = lookup(ci, rowid);
          return { corpus: corpora[ci]!.dir, key, caption, url, detail: detail(caption) };
        };
        if (reason === 'shared_caption') {
          if (topShared.has(alt) && !exampleSeen.has(`${reason}\0${alt}`)) {
            addExample(
              reason,
              example(() => `${facts.captionImages} images share it`),
              String(alt),
            );
          }
        } else if (reason === 'image_captions') {
          if (topBusy.has(image) && !exampleSeen.has(`${reason}\0${image}`)) {
            addExample(
              reason,
              example(() => `${facts.imageCaptions} captions`),
              String(image),
            );
          }
        } else if ((examples[reason]?.length ?? 0) < o.examples) {
          addExample(
            reason,
            example((caption) => exampleDetail(reason, facts, caption)),
          );
        }
      } else if (nsfwOn && shard >= 0 && (flags & 2) !== 0) {
        const { key, sha256 } = lookup(ci, rowid);
        pending.push([ci, rowid, shard, key, sha256]);
      }
      if (pending.length >= BATCH) {
        flush(pending);
        pending.length = 0;
      }
      if (pairs % BATCH === 0) {
        progress({ phase: 'decide', done: pairs, total });
        if (aborted()) break;
      }
    }
    flush(pending);
    progress({ phase: 'decide', done: pairs, total });
    if (aborted()) return interruptedResult(o, corpora, started);
    // The sharing rules' examples: most shared first.
    examples.shared_caption?.sort((a, b) => parseInt(b.detail) - parseInt(a.detail));
    examples.image_captions?.sort((a, b) => parseInt(b.detail) - parseInt(a.detail));

    // The classifier, on the images of the pairs that pass every other rule.
    const ruleReports = new Map<RuleName, Omit<RuleReport, 'dropped' | 'failing'>>();
    let nsfwClassified = 0;
    if (nsfwOn && classifier) {
      try {
        const scored = await scorePending(work, corpora, classifier, o, progress, aborted);
        nsfwClassified = scored.classified;
        model = scored.model;
        const overThreshold = work
          .prepare(
            `SELECT p.corpus, p.pair, p.key, s.score FROM nsfw_pending p JOIN nsfw_run_scores s ON s.sha256 = p.sha256
              WHERE s.score > ? ORDER BY s.score DESC, p.corpus, p.pair`,
          )
          .raw()
          .all(o.nsfwThreshold) as Array<[number, number, string, number]>;
        for (const [ci, rowid, key, score] of overThreshold) {
          byReason.nsfw++;
          failing.nsfw++;
          insertDecision.run(ci, rowid, 'nsfw');
          if ((examples.nsfw ??= []).length < o.examples) {
            const row = corpora[ci]!.db.prepare('SELECT caption, url FROM pairs WHERE rowid = ?').get(rowid) as {
              caption: string;
              url: string;
            };
            examples.nsfw.push({ corpus: corpora[ci]!.dir, key, ...row, detail: `score ${score.toFixed(3)}` });
          }
        }
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
    if (aborted()) return interruptedResult(o, corpora, started);

    const dropped = REASONS.reduce((n, r) => n + byReason[r], 0);
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

    // Apply: one transaction per manifest replaces the whole column.
    if (!o.dryRun) {
      for (let ci = 0; ci < corpora.length; ci++) {
        const c = corpora[ci]!;
        progress({ phase: 'apply', done: ci, total: corpora.length });
        c.db.prepare('ATTACH DATABASE ? AS work').run(workPath);
        try {
          c.db.transaction(() => {
            c.db
              .prepare(
                `UPDATE pairs SET filter_reason = d.reason
                   FROM (SELECT p.rowid AS pair, w.reason FROM pairs p
                           LEFT JOIN work.decisions w ON w.corpus = ? AND w.pair = p.rowid
                          WHERE p.filter_reason IS NOT w.reason) AS d
                  WHERE pairs.rowid = d.pair`,
              )
              .run(ci);
            finishRuns[ci]!('ok', { ...result, examples: undefined, durationMs: Date.now() - started });
          })();
        } finally {
          c.db.exec('DETACH DATABASE work');
        }
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
    rmSync(workPath, { force: true });
    removeSpool(spoolPath);
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
    byReason: Object.fromEntries(REASONS.map((r) => [r, 0])) as Record<FilterReason, number>,
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
  // Cached scores of this model.
  for (const c of corpora) {
    if (!c.hasScores || !hasTable(c.db, 'nsfw_scores')) continue;
    c.db.prepare('ATTACH DATABASE ? AS work').run(work.name);
    try {
      c.db
        .prepare(
          `INSERT OR IGNORE INTO work.nsfw_run_scores (sha256, score)
             SELECT s.sha256, s.score FROM nsfw_scores s WHERE s.model = ?
                AND s.sha256 IN (SELECT sha256 FROM work.nsfw_pending)`,
        )
        .run(classifier.name);
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
      c.hasScores && !o.dryRun && hasTable(c.db, 'nsfw_scores')
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

function hasTable(db: Database.Database, name: string): boolean {
  return db.prepare(`SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?`).get(name) !== undefined;
}
