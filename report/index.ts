/**
 * `altforge report`: a static HTML page about a corpus and the models trained on it, one
 * `index.html` plus an `images/` folder (thumbnails written with sharp, plots as SVG), readable
 * from the file system with no server.
 *
 * It only reads: the manifest (statuses, sizes, shards, and the columns later stages add —
 * `filter_reason`, `dup_of` with `dedup_matches`, `noise_prob`), the benchmark registry (the
 * test-image side of dedup matches), the runs' `metrics.jsonl` and a `compare.json`. A section
 * whose stage has not run says so instead of being left out, so every page has the same outline.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, relative, resolve, sep } from 'node:path';
import Database from 'better-sqlite3';
import sharp from 'sharp';
import { UsageError } from '../corpus/errors.ts';
import { isProcessAlive } from '../corpus/lock.ts';
import { refuseNonDirectory } from '../corpus/paths.ts';
import { filterReasonSql } from '../corpus/filter-reason.ts';
import { hasColumn, hasTable, isCorpus, MANIFEST_FILE, openSqliteFile } from '../corpus/manifest.ts';
import { defaultRegistryPath, findBenchmark, iterateImages, openRegistry, readImageBytes } from '../corpus/registry.ts';
import { readShard } from '../corpus/shard-reader.ts';
import { shardPaths } from '../corpus/shards.ts';
import { NOISE_SIGNAL_OFF_REASON, nlipEstimateOff, readMetrics } from '../train/index.ts';
import { card, esc, plot, section, STYLE, table } from './_html.ts';
import { barChart, lineChart, type BarValue, type LinePoint } from './_plots.ts';
import { resolveReportOptions, type ReportOptions } from './options.ts';

export type { ReportOptions } from './options.ts';

/** The sections of every report, in page order. */
export const REPORT_SECTIONS = ['corpus', 'filter', 'dedup', 'noise', 'training', 'comparison'] as const;
export type ReportSection = (typeof REPORT_SECTIONS)[number];

/** The file marking a directory as a report, so a rerun may replace it. */
const MARKER = 'report.json';

/** The run of a comparison as `compare.json` holds it (fields the report reads). */
export interface CompareRun {
  noiseRate: number;
  method: string;
  seed: number;
  checkpoint?: string;
  metrics: Record<string, number>;
  /** What an nlip run's noise estimate was fitted to (`off`: it trained as vanilla); absent in older files. */
  noiseSignal?: string | null;
}

/** The part of `compare.json` the report reads; other fields are ignored. */
export interface CompareFile {
  version: number;
  setting?: string;
  runs?: CompareRun[];
  summary?: Array<{ noiseRate: number; method: string; metric: string; mean: number; spread: number }>;
  detection?: Array<{
    noiseRate: number;
    seed: number;
    epoch: number;
    auc: number | null;
    precision: number | null;
    recall: number | null;
  }>;
  curves?: Array<{ noiseRate: number; method: string; seed: number; step: number; loss: number }>;
  plots?: Array<{ title: string; svg: string; png?: string }>;
}

/** What a report holds and where it is. */
export interface ReportResult {
  /** The report directory, absolute. */
  out: string;
  /** `<out>/index.html`. */
  html: string;
  /** Per section: true when its stage's data was there, false when the section says it was not run. */
  sections: Record<ReportSection, boolean>;
  /** Files written under `images/` (thumbnails and plots). */
  images: number;
  /** Images that could not be made into thumbnails (shown as "no image"): what and why. */
  thumbnailErrors: string[];
  durationMs: number;
}

interface Thumbs {
  /** Corpus keys whose thumbnail is wanted, by shard. */
  wanted: Map<number, Set<string>>;
  /** Key -> path relative to the page, once written. */
  written: Map<string, string>;
}

interface PairInfo {
  key: string;
  caption: string;
  url: string;
  shard: number | null;
}

const THUMB = 96;

/** Writes a thumbnail; an image sharp cannot read is shown as "no image" and its error recorded. */
async function writeThumb(bytes: Buffer, path: string, errors: string[], what: string): Promise<boolean> {
  try {
    await sharp(bytes)
      .flatten({ background: '#ffffff' })
      .resize(THUMB, THUMB, { fit: 'contain', background: '#ffffff' })
      .png()
      .toFile(path);
    return true;
  } catch (err) {
    errors.push(`${what}: ${(err as Error).message}`);
    return false;
  }
}

function want(thumbs: Thumbs, pair: PairInfo): void {
  if (pair.shard === null) return;
  let keys = thumbs.wanted.get(pair.shard);
  if (!keys) thumbs.wanted.set(pair.shard, (keys = new Set()));
  keys.add(pair.key);
}

function pct(n: number, of: number): string {
  return of === 0 ? '0 %' : `${((100 * n) / of).toFixed(1)} %`;
}

/** A 3-decimal figure, or a dash where the measure is undefined (e.g. no injected noise to find). */
function fixedOrDash(value: number | null): string {
  return value === null ? '–' : value.toFixed(3);
}

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * (sorted.length - 1)))] as number;
}

/** Reads `compare.json` (the file or the directory holding it); null when not given. */
function readCompare(path: string | undefined): { file: CompareFile; dir: string } | null {
  if (path === undefined) return null;
  const file = existsSync(path) && statSync(path).isDirectory() ? join(path, 'compare.json') : path;
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new UsageError('ERR_COMPARE_UNREADABLE', `Cannot read comparison '${file}': ${(err as Error).message}`, {
      cause: err,
      context: { path: file, stage: 'report' },
    });
  }
  if (typeof parsed !== 'object' || parsed === null || (parsed as CompareFile).version !== 1) {
    throw new UsageError('ERR_COMPARE_UNREADABLE', `'${file}' is not a compare.json of version 1`, {
      context: { path: file, stage: 'report' },
    });
  }
  return { file: parsed as CompareFile, dir: dirname(resolve(file)) };
}

/**
 * A name for each run in the plots: its directory's name, with its parent's where two runs share
 * one (`a/vanilla`, `b/vanilla`: two demos), and its place in the list where even that is shared;
 * a series is drawn as one line, so two runs under one name would be joined into one.
 */
function runLabels(runs: readonly string[]): string[] {
  const tail = (run: string, parts: number) => resolve(run).split(sep).slice(-parts).join('/');
  const count = (names: string[], name: string) => names.filter((n) => n === name).length;
  const short = runs.map((run) => tail(run, 1));
  const longer = runs.map((run, i) => (count(short, short[i] as string) > 1 ? tail(run, 2) : (short[i] as string)));
  return longer.map((name, i) => (count(longer, name) > 1 ? `${name} (${i + 1})` : name));
}

/** Whether `dir`'s {@link MARKER} is one a report wrote (a `report.json` of something else is not). */
function markedAsReport(dir: string): boolean {
  try {
    return (
      (JSON.parse(readFileSync(join(dir, MARKER), 'utf8')) as { generator?: unknown }).generator === 'altforge-report'
    );
  } catch {
    return false;
  }
}

/**
 * Makes sure `out` may be (re)written: missing, empty, or an earlier report, which the new one
 * replaces whole: a directory is taken for one only when its `report.json` says a report wrote it.
 */
function claimOut(out: string): void {
  refuseNonDirectory(out, 'Report directory', 'report');
  if (!existsSync(out)) return;
  const entries = readdirSync(out);
  if (entries.length > 0 && !markedAsReport(out)) {
    throw new UsageError(
      'ERR_NOT_A_REPORT',
      `Directory '${out}' is not empty and holds no report: refusing to replace it`,
      {
        context: { path: out, stage: 'report' },
      },
    );
  }
}

/**
 * Writes the report of a corpus (and of runs and a comparison made from it). The page is built
 * in a temporary directory beside `out` and renamed over it, so a report is never half written.
 */
export async function runReport(options: ReportOptions): Promise<ReportResult> {
  const started = Date.now();
  const opts = resolveReportOptions(options);
  const corpus = resolve(opts.corpus);
  if (!isCorpus(corpus)) {
    throw new UsageError('ERR_CORPUS_NOT_FOUND', `No corpus at '${corpus}' (no ${MANIFEST_FILE})`, {
      context: { path: corpus, stage: 'report' },
    });
  }
  // A manifest that is not a database is refused on one line naming it, with the other inputs,
  // before the output is touched.
  openSqliteFile(join(corpus, MANIFEST_FILE), 'Corpus manifest', { readonly: true, fileMustExist: true }).close();
  for (const run of opts.runs) {
    if (!existsSync(join(run, 'metrics.jsonl'))) {
      throw new UsageError('ERR_RUN_NOT_FOUND', `No training run at '${run}' (no metrics.jsonl)`, {
        context: { path: run, stage: 'report' },
      });
    }
  }
  // A registry named on purpose must be there; the default one is read only when it exists.
  if (opts.benchDb !== undefined && !existsSync(opts.benchDb)) {
    throw new UsageError('ERR_REGISTRY_NOT_FOUND', `No benchmark registry at '${opts.benchDb}'`, {
      context: { path: opts.benchDb, stage: 'report' },
    });
  }
  const compare = readCompare(opts.compare);
  const out = resolve(opts.out ?? join(dirname(corpus), 'report'));
  claimOut(out);
  clearLeftovers(out);
  const tmp = `${out}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(join(tmp, 'images'), { recursive: true });

  const db = new Database(join(corpus, MANIFEST_FILE), { readonly: true, fileMustExist: true });
  const thumbs: Thumbs = { wanted: new Map(), written: new Map() };
  const sections = {} as Record<ReportSection, boolean>;
  const parts: Partial<Record<ReportSection, () => Promise<string>>> = {};
  let imageFiles = 0;
  const thumbnailErrors: string[] = [];
  const img = (key: string) => thumbs.written.get(key) ?? null;
  const writePlot = async (name: string, svg: Promise<string>): Promise<string> => {
    writeFileSync(join(tmp, 'images', name), await svg);
    imageFiles += 1;
    return `images/${name}`;
  };

  try {
    // --- corpus statistics
    const byStatus = db
      .prepare('SELECT status, COUNT(*) AS n FROM pairs GROUP BY status ORDER BY n DESC, status')
      .all() as {
      status: string;
      n: number;
    }[];
    const total = byStatus.reduce((s, r) => s + r.n, 0);
    const ok = byStatus.find((r) => r.status === 'ok')?.n ?? 0;
    const shardRow = db
      .prepare(
        "SELECT COUNT(DISTINCT shard) AS shards, COALESCE(SUM(bytes), 0) AS bytes FROM pairs WHERE status = 'ok'",
      )
      .get() as { shards: number; bytes: number };
    const sides = (
      db
        .prepare(
          "SELECT MIN(original_width, original_height) AS side FROM pairs WHERE status = 'ok' AND original_width IS NOT NULL ORDER BY side",
        )
        .all() as { side: number }[]
    ).map((r) => r.side);
    sections.corpus = true;
    parts.corpus = async () => {
      const bins = [0, 32, 64, 128, 200, 256, 512, 1024, Infinity];
      const hist: BarValue[] = [];
      for (let i = 0; i + 1 < bins.length; i++) {
        const lo = bins[i] as number;
        const hi = bins[i + 1] as number;
        const label = hi === Infinity ? `≥ ${lo}` : `${lo}–${hi - 1}`;
        hist.push({ group: label, series: 'pairs', value: sides.filter((s) => s >= lo && s < hi).length });
      }
      const sizePlot = await writePlot(
        'sizes.svg',
        barChart(hist, {
          group: 'shorter side of the original (px)',
          value: 'pairs',
          title: 'Image sizes (stored pairs)',
        }),
      );
      return [
        `<p>${total} pairs recorded, <b>${ok}</b> stored (${pct(ok, total)}) in <b>${shardRow.shards}</b> shards, ` +
          `${(shardRow.bytes / 1e6).toFixed(1)} MB downloaded.</p>`,
        table(
          ['status', 'pairs', 'share'],
          byStatus.map((r) => [r.status, r.n, pct(r.n, total)]),
        ),
        `<p>Shorter side of the original images: min ${quantile(sides, 0)}, median ${quantile(sides, 0.5)}, max ${quantile(sides, 1)} px.</p>`,
        plot(sizePlot, 'Image sizes (stored pairs)'),
      ].join('\n');
    };

    // --- filter breakdown
    const filter = filterReasonSql(db);
    sections.filter = filter !== null;
    if (filter !== null) {
      const reasons = db
        .prepare(
          `SELECT COALESCE(${filter.reason}, ${hasColumn(db, 'pairs', 'dup_of') ? "CASE WHEN dup_of IS NOT NULL THEN 'duplicate (dedup)' END, " : ''}'kept') AS outcome,
                  COUNT(*) AS n FROM ${filter.from} WHERE status = 'ok' GROUP BY outcome ORDER BY n DESC, outcome`,
        )
        .raw()
        .all()
        .map((row) => {
          const [reason, n] = row as [string, number];
          return { reason, n };
        });
      const examples = new Map<string, PairInfo[]>();
      const pick = db.prepare(
        `SELECT key, caption, url, shard FROM ${filter.from} WHERE status = 'ok' AND ${filter.reason} = ? ORDER BY key LIMIT ?`,
      );
      for (const { reason } of reasons) {
        if (reason === 'kept' || reason.startsWith('duplicate')) continue;
        const rows = pick.all(reason, opts.examples) as PairInfo[];
        rows.forEach((r) => want(thumbs, r));
        examples.set(reason, rows);
      }
      parts.filter = async () => {
        const kept = reasons.find((r) => r.reason === 'kept')?.n ?? 0;
        const blocks = [...examples].map(
          ([reason, rows]) =>
            `<h3>${esc(reason)}</h3><div class="grid">${rows.map((r) => card(img(r.key), [r.caption], r.caption)).join('')}</div>`,
        );
        return [
          `<p><b>${kept}</b> of ${ok} stored pairs kept (${pct(kept, ok)}). A pair is counted under the first rule it fails.</p>`,
          table(
            ['reason', 'pairs', 'share of stored'],
            reasons.map((r) => [r.reason, r.n, pct(r.n, ok)]),
          ),
          ...blocks,
        ].join('\n');
      };
    } else {
      parts.filter = async () => `<p class="note">The filter stage has not run on this corpus (altforge filter).</p>`;
    }

    // --- dedup matches
    const hasDedup = hasColumn(db, 'pairs', 'dup_of') && hasTable(db, 'dedup_matches');
    sections.dedup = hasDedup;
    if (hasDedup) {
      const counts = db
        .prepare(
          'SELECT benchmark, kind, COUNT(*) AS n FROM dedup_matches GROUP BY benchmark, kind ORDER BY benchmark, kind',
        )
        .all() as { benchmark: string; kind: string; n: number }[];
      const flagged = (db.prepare('SELECT COUNT(*) AS n FROM pairs WHERE dup_of IS NOT NULL').get() as { n: number }).n;
      // The second pass's figures, where this manifest has them (migration dedup/002).
      const figures = hasColumn(db, 'dedup_matches', 'mean_difference')
        ? 'm.mean_difference AS meanDifference, m.compact_difference AS compactDifference'
        : 'NULL AS meanDifference, NULL AS compactDifference';
      const matches = db
        .prepare(
          `SELECT m.key, m.benchmark, m.image_id AS imageId, m.kind, m.distance, ${figures}, p.caption, p.url, p.shard
             FROM dedup_matches m JOIN pairs p ON p.key = m.key
            WHERE m.kind IN ('image', 'sha256') ORDER BY m.distance, m.key LIMIT ?`,
        )
        .all(opts.examples) as Array<
        PairInfo & {
          benchmark: string;
          imageId: string;
          kind: string;
          distance: number | null;
          meanDifference: number | null;
          compactDifference: number | null;
        }
      >;
      matches.forEach((m) => want(thumbs, m));
      parts.dedup = async () => {
        const benchThumbs = new Map<string, string>();
        const benchDb = opts.benchDb ?? defaultRegistryPath();
        if (matches.length > 0 && existsSync(benchDb)) {
          const registry = openRegistry(benchDb);
          try {
            for (const name of new Set(matches.map((m) => m.benchmark))) {
              if (!findBenchmark(registry, name)) continue;
              const ids = new Set(matches.filter((m) => m.benchmark === name).map((m) => m.imageId));
              for (const image of iterateImages(registry, name)) {
                if (!ids.has(image.imageId)) continue;
                const file = `bench-${benchThumbs.size}.png`;
                if (
                  await writeThumb(
                    await readImageBytes(registry, name, image),
                    join(tmp, 'images', file),
                    thumbnailErrors,
                    `${name}/${image.imageId}`,
                  )
                ) {
                  imageFiles += 1;
                  benchThumbs.set(`${name}\n${image.imageId}`, `images/${file}`);
                }
              }
            }
          } finally {
            registry.db.close();
          }
        }
        const pairs = matches.map(
          (m) =>
            `<div class="pair">${card(benchThumbs.get(`${m.benchmark}\n${m.imageId}`) ?? null, [`${m.benchmark}`, m.imageId], `test image ${m.imageId}`)}` +
            `${card(
              img(m.key),
              [
                m.caption,
                `${m.kind}, distance ${m.distance ?? '–'}` +
                  (m.meanDifference === null ? '' : `, ΔE ${m.meanDifference}, compact ${m.compactDifference}`),
              ],
              m.caption,
            )}</div>`,
        );
        return [
          `<p><b>${flagged}</b> pairs marked as duplicates (<code>dup_of</code> set) and left out of training.</p>`,
          counts.length > 0
            ? table(
                ['benchmark', 'match', 'pairs'],
                counts.map((c) => [c.benchmark, c.kind, c.n]),
              )
            : '<p class="note">No matches.</p>',
          pairs.length > 0 ? `<h3>Test image / corpus image</h3><div class="grid">${pairs.join('')}</div>` : '',
        ].join('\n');
      };
    } else {
      parts.dedup = async () => `<p class="note">The dedup stage has not run on this corpus (altforge dedup).</p>`;
    }

    // --- noise grid
    const hasNoise = hasColumn(db, 'pairs', 'noise_prob');
    const scored = hasNoise
      ? (db.prepare('SELECT COUNT(*) AS n FROM pairs WHERE noise_prob IS NOT NULL').get() as { n: number }).n
      : 0;
    sections.noise = scored > 0;
    if (scored > 0) {
      const grid = (order: 'DESC' | 'ASC') =>
        db
          .prepare(
            `SELECT key, caption, url, shard, noise_prob AS p, completed_caption AS completed FROM pairs
              WHERE noise_prob IS NOT NULL ORDER BY noise_prob ${order}, key LIMIT ?`,
          )
          .all(opts.noiseGrid) as Array<PairInfo & { p: number; completed: string | null }>;
      const noisy = grid('DESC');
      const clean = grid('ASC');
      [...noisy, ...clean].forEach((r) => want(thumbs, r));
      const above = (db.prepare('SELECT COUNT(*) AS n FROM pairs WHERE noise_prob > 0.5').get() as { n: number }).n;
      parts.noise = async () => {
        const cards = (rows: typeof noisy) =>
          rows
            .map((r) =>
              card(
                img(r.key),
                [r.caption, `p(noise) ${r.p.toFixed(3)}`, ...(r.completed ? [`→ ${r.completed}`] : [])],
                r.caption,
              ),
            )
            .join('');
        return [
          `<p>${scored} pairs scored; <b>${above}</b> (${pct(above, scored)}) have a noise probability above 0.5.</p>`,
          `<h3>Most likely noisy</h3><div class="grid">${cards(noisy)}</div>`,
          `<h3>Most likely clean</h3><div class="grid">${cards(clean)}</div>`,
        ].join('\n');
      };
    } else {
      parts.noise = async () => `<p class="note">No noise probabilities yet (altforge score).</p>`;
    }

    // --- training curves
    const curves: LinePoint[] = [];
    const labels = runLabels(opts.runs);
    for (const [i, run] of opts.runs.entries()) {
      for (const rec of readMetrics(join(run, 'metrics.jsonl'))) {
        if (rec.kind === 'step' && typeof rec['loss'] === 'number') {
          curves.push({ x: rec.step, y: rec['loss'], series: labels[i] as string });
        }
      }
    }
    for (const c of compare?.file.curves ?? []) {
      curves.push({ x: c.step, y: c.loss, series: `${c.method} noise ${c.noiseRate} seed ${c.seed}` });
    }
    sections.training = curves.length > 0;
    parts.training = async () => {
      if (curves.length === 0) return `<p class="note">No training runs given (--runs DIR).</p>`;
      const src = await writePlot('loss.svg', lineChart(curves, { x: 'step', y: 'loss', title: 'Training loss' }));
      return plot(src, 'Training loss');
    };

    // --- comparison
    sections.comparison = compare !== null && (compare.file.runs?.length ?? 0) > 0;
    parts.comparison = async () => {
      if (compare === null) return `<p class="note">No comparison given (--compare compare.json).</p>`;
      const { file, dir } = compare;
      const blocks: string[] = [];
      if (file.setting) blocks.push(`<p>Setting: <code>${esc(file.setting)}</code></p>`);
      const summary =
        file.summary && file.summary.length > 0
          ? file.summary
          : (file.runs ?? []).flatMap((r) =>
              Object.entries(r.metrics).map(([metric, mean]) => ({
                noiseRate: r.noiseRate,
                method: r.method,
                metric,
                mean,
                spread: 0,
              })),
            );
      // One row per metric and noise rate, one column per method: the methods side by side.
      const methods = [...new Set(summary.map((s) => s.method))];
      const rows = new Map<string, Array<string | number>>();
      for (const s of summary) {
        const id = `${s.metric}\n${s.noiseRate}`;
        if (!rows.has(id)) rows.set(id, [s.metric, s.noiseRate, ...methods.map(() => '–')]);
        const cell = s.spread > 0 ? `${s.mean.toFixed(2)} ± ${s.spread.toFixed(2)}` : s.mean.toFixed(2);
        (rows.get(id) as Array<string | number>)[2 + methods.indexOf(s.method)] = cell;
      }
      blocks.push(table(['metric', 'noise rate', ...methods], [...rows.values()]));
      if (nlipEstimateOff(file.runs ?? [])) {
        blocks.push(
          `<p class="note">nlip's noise estimate was off in every run (<code>--noise-signal auto</code>: ` +
            `${NOISE_SIGNAL_OFF_REASON}), so nlip trained as vanilla.</p>`,
        );
      }
      // Recall and accuracy share a scale (percent); ranks do not, and stay in the table. A bar's
      // group names its benchmark when there are several: bars of one group and series would stack.
      const measured = summary.filter((s) => /\/(R@\d+|top\d+)$/.test(s.metric));
      const several = new Set(measured.map((s) => s.metric.split('/')[0])).size > 1;
      const bars = measured.map((s) => ({
        group: s.metric
          .split('/')
          .slice(several ? 0 : 1)
          .join(' '),
        series: `${s.method}${s.noiseRate > 0 ? ` @${s.noiseRate}` : ''}`,
        value: s.mean,
      }));
      if (bars.length > 0) {
        blocks.push(
          plot(
            await writePlot('metrics.svg', barChart(bars, { group: 'metric', value: 'percent', title: 'Evaluation' })),
            'Evaluation',
          ),
        );
      }
      if (file.detection && file.detection.length > 0) {
        blocks.push(
          '<h3>Noise detection</h3>' +
            table(
              ['noise rate', 'seed', 'epoch', 'AUC', 'precision', 'recall'],
              file.detection.map((d) => [
                d.noiseRate,
                d.seed,
                d.epoch,
                fixedOrDash(d.auc),
                fixedOrDash(d.precision),
                fixedOrDash(d.recall),
              ]),
            ),
        );
      }
      for (const [i, p] of (file.plots ?? []).entries()) {
        const from = resolve(dir, p.svg);
        if (!existsSync(from)) continue;
        const name = `compare-${i}.svg`;
        writeFileSync(join(tmp, 'images', name), readFileSync(from));
        imageFiles += 1;
        blocks.push(plot(`images/${name}`, p.title));
      }
      return blocks.join('\n');
    };

    // --- thumbnails of the pairs shown, one pass over each shard holding some
    for (const [shard, keys] of [...thumbs.wanted].sort((a, b) => a[0] - b[0])) {
      const tar = shardPaths(corpus, shard).tar;
      if (!existsSync(tar)) continue;
      for await (const sample of readShard(tar, keys)) {
        const file = `pair-${thumbs.written.size}.png`;
        if (await writeThumb(sample.jpg, join(tmp, 'images', file), thumbnailErrors, sample.key)) {
          imageFiles += 1;
          thumbs.written.set(sample.key, `images/${file}`);
        }
      }
    }

    const titles: Record<ReportSection, string> = {
      corpus: 'Corpus',
      filter: 'Filter',
      dedup: 'Duplicates of test images',
      noise: 'Noise probabilities',
      training: 'Training curves',
      comparison: 'Comparison',
    };
    const body: string[] = [];
    for (const id of REPORT_SECTIONS) body.push(section(id, titles[id], await (parts[id] as () => Promise<string>)()));
    const html = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${esc(opts.title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>${STYLE}</style></head><body>
<h1>${esc(opts.title)}</h1>
<p class="note">Corpus <code>${esc(corpus)}</code>, written ${esc(new Date().toISOString())}.</p>
<nav>${REPORT_SECTIONS.map((id) => `<a href="#${id}">${esc(titles[id])}</a>`).join('')}</nav>
${body.join('\n')}
</body></html>
`;
    writeFileSync(join(tmp, 'index.html'), html);
    writeFileSync(
      join(tmp, MARKER),
      JSON.stringify(
        { generator: 'altforge-report', corpus, runs: opts.runs.map((r) => resolve(r)), sections },
        null,
        2,
      ) + '\n',
    );
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    throw err;
  } finally {
    db.close();
  }
  // The old report steps aside by a rename, not a delete: a kill at any moment leaves at `out`
  // the old report whole, the new one whole, or nothing (the old one then beside it, put back by
  // the next run).
  const old = `${out}.old-${process.pid}`;
  if (existsSync(out)) renameSync(out, old);
  renameSync(tmp, out);
  rmSync(old, { recursive: true, force: true });
  return {
    out,
    html: join(out, 'index.html'),
    sections,
    images: imageFiles,
    thumbnailErrors,
    durationMs: Date.now() - started,
  };
}

/**
 * Removes what a killed report left beside `out`: its unfinished `<out>.tmp-<pid>`, and a
 * `<out>.old-<pid>` (the report it was replacing), which is put back first when `out` is missing.
 * Directories of a process still running are left alone.
 */
function clearLeftovers(out: string): void {
  const parent = dirname(out);
  if (!existsSync(parent)) return;
  const name = basename(out);
  for (const entry of readdirSync(parent)) {
    const match = /^\.(tmp|old)-(\d+)$/.exec(entry.slice(name.length));
    if (!entry.startsWith(name) || match === null || isProcessAlive(Number(match[2]))) continue;
    const path = join(parent, entry);
    if (match[1] === 'old' && !existsSync(out)) renameSync(path, out);
    else rmSync(path, { recursive: true, force: true });
  }
}

/** The page's path relative to the current directory, for printing. */
export function shownPath(path: string): string {
  const rel = relative(process.cwd(), path);
  return rel.startsWith('..') || rel === '' ? path : rel;
}
