import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { readDemoSite, runDemo, type DemoResult, type DemoSite } from '../../demo/index.ts';
import { lines, runCli } from '../helpers/cli.ts';
import { tempDir } from '../helpers/corpus.ts';

// The whole demo at a reduced size: every stage runs, on real images, with few steps.
const IMAGES = 100;
const SEED = 3;
const EPOCHS = 2;
const BATCH = 16;

interface Row {
  key: string;
  url: string;
  caption: string;
  status: string;
  filter_reason: string | null;
  dup_of: string | null;
  noise_prob: number | null;
}

let work: { path: string; remove: () => Promise<void> };
let out: string;
let result: DemoResult;
let site: DemoSite;
let rows: Row[];

beforeAll(async () => {
  work = await tempDir('demo-pipeline');
  out = join(work.path, 'demo');
  result = await runDemo({ out, images: IMAGES, seed: SEED, epochs: EPOCHS, batchSize: BATCH });
  const described = readDemoSite(join(out, 'site'));
  if (described === null) throw new Error('no site.json');
  site = described;
  const db = new Database(join(out, 'corpus', 'manifest.sqlite'), { readonly: true });
  rows = db
    .prepare(
      `SELECT key, url, caption, status, fd.reason AS filter_reason, dup_of, noise_prob
         FROM pairs LEFT JOIN filter_decisions fd ON fd.pair = pairs.rowid ORDER BY key`,
    )
    .all() as Row[];
  db.close();
});

afterAll(async () => {
  await work?.remove();
});

const okRows = () => rows.filter((r) => r.status === 'ok');
const pathOf = (url: string) => new URL(url).pathname;

describe('altforge demo, end to end', () => {
  test('runs every stage and is not interrupted', () => {
    expect(result.interrupted).toBe(false);
    const stages = result.stages;
    expect(stages).not.toBeNull();
    expect(Object.keys(stages?.timings ?? {}).toSorted()).toEqual(
      ['bench', 'dedup', 'eval', 'filter', 'report', 'score', 'train'].toSorted(),
    );
    expect(stages?.evalNote).toBeNull();
  });

  test('marks the stored pair of every held-out concept as a duplicate of its test image', () => {
    const heldOut = readFileSync(join(out, 'benchmarks', 'twitter-heldout.tsv'), 'utf8')
      .trim()
      .split('\n')
      .map((line) => line.split('\t') as [string, string]);
    expect(heldOut).toHaveLength(3);
    for (const [imageId, name] of heldOut) {
      const shown = site.images.filter((i) => i.subject === name && i.kind === 'name' && i.fate === 'ok');
      expect(shown.length).toBeGreaterThan(0);
      for (const image of shown) {
        const row = okRows().find((r) => pathOf(r.url) === image.path);
        expect({ name, dup: row?.dup_of }).toEqual({ name, dup: `twitter-heldout/${imageId}` });
      }
    }
    expect(result.stages?.dedup?.flagged).toBe(okRows().filter((r) => r.dup_of !== null).length);
    // Each held-out pair is found by its image or, where the image hash misses, by its caption.
    const m = result.stages?.dedup?.byBenchmark['twitter-heldout'];
    expect((m?.image ?? 0) + (m?.sha256 ?? 0) + (m?.caption ?? 0)).toBe(result.stages?.dedup?.flagged);
    expect(result.stages?.dedup?.flagged).toBeGreaterThanOrEqual(3);
  });

  test('drops the too-small icons by size and leaves duplicates unfiltered', () => {
    const icons = new Set(site.images.filter((i) => i.fate === 'small').map((i) => i.path));
    const ok = okRows();
    const expectedSmall = ok.filter((r) => icons.has(pathOf(r.url)) && r.dup_of === null).length;
    expect(expectedSmall).toBeGreaterThan(0);
    expect(result.stages?.filter?.byReason.image_size).toBe(expectedSmall);
    expect(
      ok
        .filter((r) => r.filter_reason === 'image_size')
        .map((r) => pathOf(r.url))
        .every((p) => icons.has(p)),
    ).toBe(true);
    expect(ok.filter((r) => r.dup_of !== null).every((r) => r.filter_reason === null)).toBe(true);
    const kept = ok.filter((r) => r.dup_of === null && r.filter_reason === null).length;
    expect(result.stages?.filter?.kept).toBe(kept);
    expect(result.stages?.thresholds).toEqual({
      minSide: 200,
      maxAspect: 3,
      minWords: 1,
      maxWords: 20,
      maxImagesPerCaption: 2,
      vocabMinCount: 1,
      nsfw: 'nsfwjs',
    });
  });

  test('trains vanilla and NLIP on the kept pairs for the same number of steps', () => {
    const runs = result.stages?.runs;
    const kept = result.stages?.filter?.kept ?? -1;
    expect(runs?.vanilla.pairs).toBe(kept);
    expect(runs?.nlip.pairs).toBe(kept);
    expect(runs?.vanilla.steps).toBe(EPOCHS * Math.floor(kept / BATCH));
    expect(runs?.nlip.steps).toBe(runs?.vanilla.steps);
    for (const method of ['vanilla', 'nlip']) {
      expect(existsSync(join(out, 'runs', method, 'checkpoint.ckpt'))).toBe(true);
      const steps = lines(readFileSync(join(out, 'runs', method, 'metrics.jsonl'), 'utf8'))
        .map((l) => JSON.parse(l) as { kind: string; loss?: number })
        .filter((r) => r.kind === 'step');
      expect(steps.length).toBe(runs?.vanilla.steps);
      expect(steps.every((s) => Number.isFinite(s.loss))).toBe(true);
    }
  });

  test('gives every stored pair a noise probability', () => {
    expect(result.stages?.score?.scored).toBe(okRows().length);
    expect(okRows().every((r) => r.noise_prob !== null && r.noise_prob >= 0 && r.noise_prob <= 1)).toBe(true);
    expect(result.stages?.score?.noisy).toBe(okRows().filter((r) => (r.noise_prob ?? 0) > 0.5).length);
  });

  test('evaluates both models on the Google drawings and writes compare.json for the report', () => {
    const evals = result.stages?.eval;
    for (const method of ['vanilla', 'nlip'] as const) {
      for (const task of ['image_to_text', 'text_to_image']) {
        const r1 = evals?.[method][`google-eval/${task}/R@1`] ?? -1;
        const r10 = evals?.[method][`google-eval/${task}/R@10`] ?? -1;
        expect(r1).toBeGreaterThanOrEqual(0);
        expect(r10).toBeGreaterThanOrEqual(r1);
        expect(r10).toBeLessThanOrEqual(100);
      }
    }
    const compare = JSON.parse(readFileSync(join(out, 'compare.json'), 'utf8')) as {
      version: number;
      runs: Array<{ method: string; metrics: Record<string, number> }>;
      summary: unknown[];
    };
    expect(compare.version).toBe(1);
    expect(compare.runs.map((r) => r.method)).toEqual(['vanilla', 'nlip']);
    expect(compare.runs[0]?.metrics).toEqual(evals?.vanilla);
    expect(compare.summary).toHaveLength(Object.keys(evals?.vanilla ?? {}).length * 2);
  });

  test('writes a report with data in every section', () => {
    const report = result.stages?.report;
    expect(report?.html).toBe(join(out, 'report', 'index.html'));
    expect(report?.sections).toEqual({
      corpus: true,
      filter: true,
      dedup: true,
      noise: true,
      training: true,
      comparison: true,
    });
    const html = readFileSync(join(out, 'report', 'index.html'), 'utf8');
    expect(html).toContain('twitter-heldout');
    expect(html).toContain('google-eval/image_to_text/R@1');
  });

  test('a second run trains no further and gives the same metrics', async () => {
    const again = await runDemo({ out, images: IMAGES, seed: SEED, epochs: EPOCHS, batchSize: BATCH });
    expect(again.crawl?.attempted).toBe(0);
    expect(again.stages?.runs?.vanilla.steps).toBe(result.stages?.runs?.vanilla.steps);
    expect(again.stages?.eval).toEqual(result.stages?.eval);
    expect(again.stages?.dedup?.flagged).toBe(result.stages?.dedup?.flagged);
    expect(again.stages?.filter?.kept).toBe(result.stages?.filter?.kept);
  });
});

describe('altforge demo (command line, whole demo)', () => {
  test('prints the filter thresholds, each stage and the headline', async () => {
    const dir = join(work.path, 'cli');
    const { code, stderr } = await runCli([
      'demo',
      '--out',
      dir,
      '--images',
      '40',
      '--epochs',
      '1',
      '--batch-size',
      '8',
      '--nsfw',
      'none',
    ]);
    expect(code).toBe(0);
    const printed = lines(stderr);
    expect(printed.filter((l) => l.startsWith('filter thresholds ')).length).toBe(1);
    for (const prefix of [
      'bench: ',
      'dedup: ',
      'filter: ',
      'train vanilla: ',
      'train nlip: ',
      'score: ',
      'eval on ',
      'report: ',
    ]) {
      expect({ prefix, found: printed.some((l) => l.startsWith(prefix)) }).toEqual({ prefix, found: true });
    }
    const headline = printed.find((l) => l.startsWith('demo: '));
    expect(headline).toMatch(
      /^demo: \d+ pairs kept of \d+; \d+ duplicates of test images found; R@1 image→text on google-eval: vanilla [\d.]+ % vs nlip [\d.]+ % .*; report: .*index\.html$/,
    );
    expect(headline).toContain(join(dir, 'report', 'index.html'));
  });
});
