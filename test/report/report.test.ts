import {
  copyFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import Database from 'better-sqlite3';
import { chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { runDemo } from '../../demo/index.ts';
import { runReport, type ReportResult } from '../../report/index.ts';
import { lines, REPO_ROOT, runCli } from '../helpers/cli.ts';
import { tempDir } from '../helpers/corpus.ts';

let work: { path: string; remove: () => Promise<void> };
let demo: string;
let corpus: string;
let compareDir: string;
let report: ReportResult;
let html: string;

/** A compare.json as `altforge compare` writes it, with one plot of its own. */
function writeCompare(dir: string): void {
  mkdirSync(join(dir, 'plots'), { recursive: true });
  writeFileSync(
    join(dir, 'plots', 'r1.svg'),
    '<svg xmlns="http://www.w3.org/2000/svg" width="200" height="100"><rect width="120" height="60" fill="#4c78a8"/></svg>\n',
  );
  const metric = 'emoji-twitter/image_to_text/R@1';
  writeFileSync(
    join(dir, 'compare.json'),
    JSON.stringify({
      version: 1,
      setting: 'emoji',
      noiseRates: [0, 0.5],
      seeds: [1, 2],
      steps: 40,
      runs: [
        { noiseRate: 0, method: 'vanilla', seed: 1, checkpoint: 'a', metrics: { [metric]: 12.5 } },
        {
          noiseRate: 0,
          method: 'nlip',
          seed: 1,
          checkpoint: 'b',
          metrics: { [metric]: 13.25 },
          noiseSignal: 'agreement',
        },
      ],
      summary: [
        { noiseRate: 0, method: 'vanilla', metric, mean: 12.5, spread: 0 },
        { noiseRate: 0, method: 'nlip', metric, mean: 13.25, spread: 0 },
        { noiseRate: 0.5, method: 'vanilla', metric, mean: 4.5, spread: 1.25 },
        { noiseRate: 0.5, method: 'nlip', metric, mean: 9.75, spread: 0.5 },
      ],
      detection: [
        // At 0 % noise there is nothing to detect: compare writes null for the undefined measures.
        { noiseRate: 0, seed: 1, epoch: 3, auc: null, precision: null, recall: null },
        { noiseRate: 0.5, seed: 1, epoch: 3, auc: 0.9375, precision: 0.875, recall: 0.8125 },
      ],
      curves: [],
      plots: [{ title: 'R@1 against noise rate', svg: 'plots/r1.svg', png: 'plots/r1.png' }],
    }),
  );
}

beforeAll(async () => {
  work = await tempDir('report');
  demo = join(work.path, 'demo');
  // A small real corpus with every stage's columns: the demo up to scoring, one short epoch per run.
  const result = await runDemo({
    out: demo,
    images: 60,
    seed: 2,
    epochs: 1,
    batchSize: 8,
    nsfw: 'none',
    upTo: 'score',
  });
  if (result.stages?.score === null || result.stages === null) throw new Error('the demo did not reach scoring');
  corpus = join(demo, 'corpus');
  compareDir = join(work.path, 'compare');
  writeCompare(compareDir);
  report = await runReport({
    corpus,
    runs: [join(demo, 'runs', 'vanilla'), join(demo, 'runs', 'nlip')],
    compare: compareDir,
    benchDb: join(demo, 'benchmarks.sqlite'),
    out: join(work.path, 'report'),
  });
  html = readFileSync(report.html, 'utf8');
});

afterAll(async () => {
  await work?.remove();
});

const cells = (...values: Array<string | number>) => values.map((v) => `<td>${v}</td>`).join('');

describe('altforge report', () => {
  test('has data in every section when every stage has run', () => {
    expect(report.sections).toEqual({
      corpus: true,
      filter: true,
      dedup: true,
      noise: true,
      training: true,
      comparison: true,
    });
    for (const id of ['corpus', 'filter', 'dedup', 'noise', 'training', 'comparison'])
      expect(html).toContain(`<section id="${id}">`);
  });

  test('counts the statuses and shards of the manifest', () => {
    const db = new Database(join(corpus, 'manifest.sqlite'), { readonly: true });
    const statuses = db.prepare('SELECT status, COUNT(*) AS n FROM pairs GROUP BY status').all() as {
      status: string;
      n: number;
    }[];
    const shards = (
      db.prepare("SELECT COUNT(DISTINCT shard) AS n FROM pairs WHERE status = 'ok'").get() as { n: number }
    ).n;
    const dups = (db.prepare('SELECT COUNT(*) AS n FROM pairs WHERE dup_of IS NOT NULL').get() as { n: number }).n;
    db.close();
    const total = statuses.reduce((s, r) => s + r.n, 0);
    for (const { status, n } of statuses) expect(html).toContain(`<tr>${cells(status, n)}`);
    expect(html).toContain(`in <b>${shards}</b> shards`);
    expect(html).toContain(`${total} pairs recorded`);
    expect(html).toContain(`<b>${dups}</b> pairs marked as duplicates`);
  });

  test('writes one file per thumbnail and plot, each a real image', () => {
    const files = readdirSync(join(report.out, 'images'));
    expect(files.length).toBe(report.images);
    for (const file of files) expect(html).toContain(`images/${file}`);
    expect(report.thumbnailErrors).toEqual([]);
    // One test-image thumbnail per distinct test image among the image matches shown.
    const db = new Database(join(corpus, 'manifest.sqlite'), { readonly: true });
    const shown = db
      .prepare(
        "SELECT benchmark, image_id, mean_difference, compact_difference FROM dedup_matches WHERE kind IN ('image', 'sha256') ORDER BY distance, key LIMIT 6",
      )
      .all() as {
      benchmark: string;
      image_id: string;
      mean_difference: number | null;
      compact_difference: number | null;
    }[];
    db.close();
    // The second pass's figures are shown with each image match it compared.
    const compared = shown.filter((m) => m.mean_difference !== null);
    expect(compared.length).toBeGreaterThan(0);
    for (const m of compared) expect(html).toContain(`ΔE ${m.mean_difference}, compact ${m.compact_difference}`);
    expect(shown.length).toBeGreaterThan(0);
    expect(files.filter((f) => f.startsWith('bench-')).length).toBe(
      new Set(shown.map((m) => `${m.benchmark}/${m.image_id}`)).size,
    );
    expect(files.filter((f) => f.endsWith('.svg')).toSorted()).toEqual([
      'compare-0.svg',
      'loss.svg',
      'metrics.svg',
      'sizes.svg',
    ]);
    const png = readFileSync(join(report.out, 'images', files.find((f) => f.startsWith('pair-')) as string));
    expect(png.subarray(1, 4).toString('latin1')).toBe('PNG');
  });

  test('sets the methods side by side in the comparison table, with the spread', () => {
    expect(html).toContain(`<tr>${cells('emoji-twitter/image_to_text/R@1', 0, '12.50', '13.25')}</tr>`);
    expect(html).toContain(`<tr>${cells('emoji-twitter/image_to_text/R@1', 0.5, '4.50 ± 1.25', '9.75 ± 0.50')}</tr>`);
    // Its nlip run acted on the agreement signal: no note that nlip trained as vanilla.
    expect(html).not.toContain("nlip's noise estimate was off");
    expect(html).toContain(`<tr>${cells(0.5, 1, 3, '0.938', '0.875', '0.813')}</tr>`);
    expect(html).toContain(`<tr>${cells(0, 1, 3, '–', '–', '–')}</tr>`);
  });

  test("says when nlip's noise estimate was off in every run of the comparison", async () => {
    const offDir = join(work.path, 'compare-off');
    mkdirSync(offDir);
    const metric = 'emoji-twitter/image_to_text/R@1';
    const run = (method: string, noiseSignal: string | null) => ({
      noiseRate: 0.5,
      method,
      seed: 1,
      metrics: { [metric]: 6 },
      noiseSignal,
    });
    writeFileSync(
      join(offDir, 'compare.json'),
      JSON.stringify({ version: 1, setting: 'emoji', runs: [run('vanilla', null), run('nlip', 'off')] }),
    );
    const r = await runReport({ corpus, out: join(work.path, 'report-off'), compare: offDir });
    expect(readFileSync(r.html, 'utf8')).toContain(
      "nlip's noise estimate was off in every run (<code>--noise-signal auto</code>",
    );
  });

  test("draws each benchmark's bars apart when a comparison measured several, none stacked", async () => {
    const twoDir = join(work.path, 'compare-two');
    mkdirSync(twoDir);
    const run = {
      noiseRate: 0,
      method: 'vanilla',
      seed: 1,
      metrics: { 'a-set/text_to_image/R@10': 100, 'b-set/text_to_image/R@10': 22.5 },
    };
    writeFileSync(join(twoDir, 'compare.json'), JSON.stringify({ version: 1, setting: 'corpus', runs: [run] }));
    const r = await runReport({ corpus, out: join(work.path, 'report-two'), compare: twoDir });
    const svg = readFileSync(join(r.out, 'images', 'metrics.svg'), 'utf8');
    expect(svg).toContain('a-set text_to_image R@10');
    expect(svg).toContain('b-set text_to_image R@10');
    // The value axis ends at the largest bar, 100: 122.5 stacked before.
    expect(/Y-axis titled 'percent' for a linear scale with values from 0 to (\d+)/.exec(svg)?.[1]).toBe('100');
  });

  test('draws two runs whose directories share a name as two lines, named by their parents', async () => {
    const [x, y] = [join(work.path, 'x', 'run'), join(work.path, 'y', 'run')];
    cpSync(join(demo, 'runs', 'vanilla'), x, { recursive: true });
    cpSync(join(demo, 'runs', 'nlip'), y, { recursive: true });
    const r = await runReport({ corpus, out: join(work.path, 'report-runs'), runs: [x, y] });
    const svg = readFileSync(join(r.out, 'images', 'loss.svg'), 'utf8');
    expect(svg).toContain('color with 2 values: x/run, y/run"');
  });

  test('says which stages have not run on a corpus fresh from the crawl', async () => {
    const fresh = join(work.path, 'fresh');
    await runDemo({ out: fresh, images: 20, seed: 4, upTo: 'crawl' });
    const r = await runReport({ corpus: join(fresh, 'corpus') });
    expect(r.out).toBe(join(fresh, 'report'));
    expect(r.sections).toEqual({
      corpus: true,
      filter: false,
      dedup: false,
      noise: false,
      training: false,
      comparison: false,
    });
    const page = readFileSync(r.html, 'utf8');
    expect(page).toContain('The filter stage has not run on this corpus');
    expect(page).toContain('No noise probabilities yet');
  });

  test('replaces an earlier report, and refuses a directory that holds something else', async () => {
    const again = await runReport({ corpus, out: report.out, benchDb: join(demo, 'benchmarks.sqlite') });
    expect(again.sections.training).toBe(false);
    expect(readdirSync(work.path).filter((n) => n.includes('.tmp-'))).toEqual([]);
    const foreign = join(work.path, 'mine');
    mkdirSync(foreign);
    writeFileSync(join(foreign, 'notes.txt'), 'mine\n');
    await expect(runReport({ corpus, out: foreign, benchDb: join(demo, 'benchmarks.sqlite') })).rejects.toMatchObject({
      code: 'ERR_NOT_A_REPORT',
    });
    expect(readdirSync(foreign)).toEqual(['notes.txt']);
    // A report.json that some other tool wrote does not make a directory a report: nothing is replaced.
    const project = join(work.path, 'project');
    mkdirSync(join(project, 'src'), { recursive: true });
    writeFileSync(join(project, 'report.json'), '{}\n');
    writeFileSync(join(project, 'src', 'main.py'), 'precious\n');
    await expect(runReport({ corpus, out: project, benchDb: join(demo, 'benchmarks.sqlite') })).rejects.toMatchObject({
      code: 'ERR_NOT_A_REPORT',
    });
    expect(readdirSync(project).toSorted()).toEqual(['report.json', 'src']);
    expect(readFileSync(join(project, 'src', 'main.py'), 'utf8')).toBe('precious\n');
  });

  test('clears what a killed report left beside its directory, putting back the report it was replacing', async () => {
    const out = join(work.path, 'killed');
    const dead = 999_999_999; // no such process
    // Killed between its two renames: the old report set aside, the new one unfinished.
    const first = await runReport({ corpus, out, benchDb: join(demo, 'benchmarks.sqlite') });
    renameSync(out, `${out}.old-${dead}`);
    mkdirSync(`${out}.tmp-${dead}/images`, { recursive: true });
    // A report another process is writing right now is not touched.
    mkdirSync(`${out}.tmp-${process.ppid}`);
    const again = await runReport({ corpus, out, benchDb: join(demo, 'benchmarks.sqlite') });
    expect(again.sections).toEqual(first.sections);
    expect(existsSync(join(out, 'index.html'))).toBe(true);
    expect(
      readdirSync(work.path)
        .filter((n) => n.startsWith('killed'))
        .sort(),
    ).toEqual(['killed', `killed.tmp-${process.ppid}`]);
  });

  test('refuses a directory without a manifest and a run without metrics', async () => {
    await expect(runReport({ corpus: join(work.path, 'nothing') })).rejects.toMatchObject({
      code: 'ERR_CORPUS_NOT_FOUND',
    });
    await expect(runReport({ corpus, runs: [work.path] })).rejects.toMatchObject({ code: 'ERR_RUN_NOT_FOUND' });
    await expect(runReport({ corpus, examples: 500 })).rejects.toThrow("Option 'report.examples'");
  });

  test('refuses a manifest that is not a database on one line naming it, before writing anything', async () => {
    const text = join(work.path, 'text-manifest');
    mkdirSync(text);
    writeFileSync(join(text, 'manifest.sqlite'), 'key,url,caption\n');
    const out = join(work.path, 'text-manifest-report');
    await expect(runReport({ corpus: text, out })).rejects.toMatchObject({
      code: 'ERR_NOT_A_DATABASE',
      message: `Corpus manifest '${join(text, 'manifest.sqlite')}' is not an SQLite database (file is not a database)`,
    });
    expect(readdirSync(work.path).filter((n) => n.startsWith('text-manifest-report'))).toEqual([]);
  });
});

describe('altforge report in a browser', () => {
  test('renders every section, image and plot in headless Chromium with no console errors', async () => {
    // Rewrite the full report: the test above replaced it with one without runs.
    const page = await runReport({
      corpus,
      runs: [join(demo, 'runs', 'vanilla'), join(demo, 'runs', 'nlip')],
      compare: join(compareDir, 'compare.json'),
      benchDb: join(demo, 'benchmarks.sqlite'),
      out: report.out,
    });
    const browser = await chromium.launch({
      executablePath: '/usr/bin/chromium',
      args: ['--headless', '--no-sandbox'],
    });
    try {
      const tab = await browser.newPage({ viewport: { width: 1200, height: 900 } });
      const errors: string[] = [];
      tab.on('console', (m) => {
        if (m.type() === 'error') errors.push(m.text());
      });
      tab.on('pageerror', (e) => errors.push(String(e)));
      tab.on('requestfailed', (r) => errors.push(`failed: ${r.url()}`));
      await tab.goto(pathToFileURL(page.html).href, { waitUntil: 'load' });
      // A string: the page's code runs in the browser, where the DOM is (this project compiles without DOM types).
      const seen = (await tab.evaluate(`({
        sections: [...document.querySelectorAll('section')].map((s) => [s.id, s.querySelector('h2')?.textContent ?? '']),
        images: [...document.images].map((i) => ({ src: i.getAttribute('src'), ok: i.complete && i.naturalWidth > 0 })),
        plots: [...document.querySelectorAll('img.plot')].map((i) => i.naturalWidth),
      })`)) as { sections: string[][]; images: Array<{ src: string; ok: boolean }>; plots: number[] };
      expect(seen.sections.map(([id]) => id)).toEqual(['corpus', 'filter', 'dedup', 'noise', 'training', 'comparison']);
      // A pair shown in two sections (a filter example that is also among the noisiest) shares one file.
      expect(new Set(seen.images.map((i) => i.src)).size).toBe(page.images);
      expect(seen.images.filter((i) => !i.ok)).toEqual([]);
      expect(seen.plots.length).toBe(4);
      expect(seen.plots.every((w) => w > 100)).toBe(true);
      expect(errors).toEqual([]);
      const shot = join(work.path, 'report.png');
      await tab.screenshot({ path: shot, fullPage: true });
      expect(readFileSync(shot).subarray(1, 4).toString('latin1')).toBe('PNG');
      // A copy for people to look at (the scratch folder is git-ignored).
      const keep = join(REPO_ROOT, '.scratch', 'demo');
      if (existsSync(keep)) copyFileSync(shot, join(keep, 'report-screenshot.png'));
    } finally {
      await browser.close();
    }
  });
});

describe('altforge report (command line)', () => {
  test('documents its flags in --help', async () => {
    const { code, stdout } = await runCli(['report', '--help']);
    expect(code).toBe(0);
    for (const flag of [
      '--corpus',
      '--runs',
      '--compare',
      '--bench-db',
      '--out',
      '--examples',
      '--noise-grid',
      '--json',
    ]) {
      expect(stdout).toContain(flag);
    }
  });

  test('writes the report and prints where it is, or exits 2 without a corpus', async () => {
    const out = join(work.path, 'cli-report');
    const { code, stderr } = await runCli([
      'report',
      '--corpus',
      corpus,
      '--out',
      out,
      '--bench-db',
      join(demo, 'benchmarks.sqlite'),
    ]);
    expect(code).toBe(0);
    expect(lines(stderr)).toEqual([
      expect.stringMatching(
        new RegExp(
          `^report: ${join(out, 'index.html')} \\(\\d+ images; not run yet: training, comparison\\); [\\d.]+ s$`,
        ),
      ),
    ]);
    const missing = await runCli(['report']);
    expect(missing.code).toBe(2);
    expect(lines(missing.stderr)).toEqual(['altforge: Missing --corpus DIR: the corpus to report on [ERR_USAGE]']);
  });
});
