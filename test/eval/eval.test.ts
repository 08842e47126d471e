import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative as pathRelative, resolve } from 'node:path';
import Database from 'better-sqlite3';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatEvalTable } from '../../cli/eval.ts';
import { emojiDrawings } from '../../corpus/emoji.ts';
import { iterateImages, openRegistry } from '../../corpus/registry.ts';
import { loadBenchmark } from '../../eval/benchmarks.ts';
import { retrievalMetrics, runEval, similarity } from '../../eval/index.ts';
import { openResults } from '../../eval/results.ts';
import { DEFAULT_TEMPLATES, evaluateBenchmark } from '../../eval/zero-shot.ts';
import { registerBenchmark } from '../../dedup/index.ts';
import { loadEncoder } from '../../train/index.ts';
import { REPO_ROOT, runCli } from '../helpers/cli.ts';
import { makeEvalFixture, type EvalFixture } from './_fixtures.ts';

let dir: string;
let fx: EvalFixture;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'altforge-eval-'));
  fx = await makeEvalFixture(dir);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const RETRIEVAL = ['R@1', 'R@5', 'R@10', 'mean_rank', 'median_rank'];

describe('runEval', () => {
  it('evaluates retrieval both ways and classification, and stores every metric in the results database', async () => {
    const resultsDb = join(dir, 'results-a.sqlite');
    const result = await runEval({
      checkpoint: fx.checkpoint,
      benchmark: ['emoji', 'fashion'],
      benchDb: fx.benchDb,
      resultsDb,
    });
    const names = result.metrics.map((m) => `${m.benchmark}/${m.task}/${m.metric}`).sort();
    expect(names).toEqual(
      [
        ...RETRIEVAL.map((m) => `emoji/image_to_text/${m}`),
        ...RETRIEVAL.map((m) => `emoji/text_to_image/${m}`),
        'fashion/classification/top1',
        'fashion/classification/top5',
      ].sort(),
    );
    const value = (name: string) =>
      result.metrics.find((m) => `${m.benchmark}/${m.task}/${m.metric}` === name)?.value as number;
    for (const task of ['image_to_text', 'text_to_image']) {
      expect(value(`emoji/${task}/R@1`)).toBeLessThanOrEqual(value(`emoji/${task}/R@5`));
      expect(value(`emoji/${task}/R@5`)).toBeLessThanOrEqual(value(`emoji/${task}/R@10`));
    }
    // 12 images with 2 captions each: an image's rank is at most 1 + 22 wrong captions; a caption's at most 12.
    expect(value('emoji/image_to_text/mean_rank')).toBeGreaterThanOrEqual(1);
    expect(value('emoji/image_to_text/mean_rank')).toBeLessThanOrEqual(23);
    expect(value('emoji/text_to_image/mean_rank')).toBeLessThanOrEqual(12);
    expect(value('fashion/classification/top1')).toBeLessThanOrEqual(value('fashion/classification/top5'));
    // 30 images: accuracy is a multiple of 100/30.
    expect((value('fashion/classification/top5') * 30) / 100).toBeCloseTo(
      Math.round((value('fashion/classification/top5') * 30) / 100),
      6,
    );

    const db = new Database(resultsDb, { readonly: true });
    const run = db.prepare('SELECT * FROM runs WHERE id = ?').get(result.runId) as Record<string, unknown>;
    expect(run['status']).toBe('done');
    expect(run['checkpoint']).toBe(result.checkpoint);
    expect(run['config_hash']).toBe(result.configHash);
    const rows = db
      .prepare('SELECT * FROM results WHERE run_id = ? ORDER BY benchmark, task, metric')
      .all(result.runId) as Array<Record<string, unknown>>;
    db.close();
    expect(rows).toHaveLength(result.metrics.length);
    for (const m of result.metrics) {
      const row = rows.find((r) => r['benchmark'] === m.benchmark && r['task'] === m.task && r['metric'] === m.metric);
      expect(row?.['value']).toBe(m.value);
      expect(row?.['config_hash']).toBe(result.configHash);
      expect(row?.['checkpoint']).toBe(result.checkpoint);
    }
  });

  it('ranks every caption of the emoji benchmark exactly as the checkpoint’s own embeddings do', async () => {
    const result = await runEval({
      checkpoint: fx.checkpoint,
      benchmark: ['emoji'],
      benchDb: fx.benchDb,
      resultsDb: join(dir, 'r-b.sqlite'),
    });
    // Independent path: embed the files named in the fixture, both captions each, rank with the metric function.
    const encoder = await loadEncoder(fx.checkpoint);
    const imgs = fx.emoji.map((e) => new Uint8Array(readFileSync(join(dir, 'emoji', e.file))));
    const texts = fx.emoji.flatMap((e) => [...e.captions].sort());
    const textImage = fx.emoji.flatMap((_, i) => [i, i]);
    const sim = similarity(await encoder.embedImages(imgs), encoder.embedTexts(texts), encoder.dim);
    encoder.dispose();
    const expected = retrievalMetrics(sim, imgs.length, textImage);
    const got = (task: string, metric: string) =>
      result.metrics.find((m) => m.task === task && m.metric === metric)?.value;
    expect(got('image_to_text', 'mean_rank')).toBeCloseTo(expected.imageToText.mean_rank, 9);
    expect(got('text_to_image', 'R@1')).toBeCloseTo(expected.textToImage['R@1'], 9);
  });

  it('streams the images a batch at a time, with the same metrics as the whole set in memory', async () => {
    const progress: string[] = [];
    const streamed = await runEval({
      checkpoint: fx.checkpoint,
      benchmark: ['emoji', 'fashion'],
      benchDb: fx.benchDb,
      resultsDb: join(dir, 'results-stream.sqlite'),
      batchSize: 8,
      onProgress: (p) => progress.push(`${p.benchmark} ${p.done}/${p.total}`),
    });
    expect(progress).toEqual([
      'emoji 0/12',
      'emoji 8/12',
      'emoji 12/12',
      'fashion 0/30',
      'fashion 8/30',
      'fashion 16/30',
      'fashion 24/30',
      'fashion 30/30',
    ]);
    const registry = openRegistry(fx.benchDb);
    const encoder = await loadEncoder(fx.checkpoint);
    try {
      const inMemory = [];
      for (const name of ['emoji', 'fashion']) {
        const benchmark = await loadBenchmark(registry, name);
        expect(Array.isArray(benchmark.images)).toBe(true);
        inMemory.push(...(await evaluateBenchmark(encoder, benchmark, { templates: DEFAULT_TEMPLATES })));
      }
      expect(streamed.metrics).toEqual(inMemory);
    } finally {
      encoder.dispose();
      registry.close();
    }
  });

  it('stops between batches when interrupted, storing the run as interrupted', async () => {
    const resultsDb = join(dir, 'results-cut.sqlite');
    const stop = new AbortController();
    await expect(
      runEval({
        checkpoint: fx.checkpoint,
        benchmark: ['fashion'],
        benchDb: fx.benchDb,
        resultsDb,
        batchSize: 8,
        signal: stop.signal,
        onProgress: (p) => {
          if (p.done === 8) stop.abort();
        },
      }),
    ).rejects.toMatchObject({ code: 'ERR_INTERRUPTED' });
    const db = new Database(resultsDb, { readonly: true });
    const runs = db.prepare('SELECT status FROM runs').all();
    const results = db.prepare('SELECT COUNT(*) AS n FROM results').get() as { n: number };
    db.close();
    expect(runs).toEqual([{ status: 'interrupted' }]);
    expect(results.n).toBe(0);
  });

  it('marks abandoned a run left running by a process that is gone, and only such a run', async () => {
    const resultsDb = join(dir, 'results-killed.sqlite');
    const results = openResults(resultsDb);
    const config = { checkpoint: fx.checkpoint, checkpointStep: 1, benchmarks: ['emoji'], config: {}, backend: 'cpu' };
    const killed = results.startRun(config);
    const live = results.startRun(config);
    const older = results.startRun(config);
    // A killed process's run, one of a process still running, and one from before pids were recorded.
    results.db.prepare('UPDATE runs SET pid = ? WHERE id = ?').run(999_999_999, killed);
    results.db.prepare('UPDATE runs SET pid = ? WHERE id = ?').run(process.ppid, live);
    results.db.prepare('UPDATE runs SET pid = NULL WHERE id = ?').run(older);
    results.close();
    openResults(resultsDb).close();
    const db = new Database(resultsDb, { readonly: true });
    const statuses = db.prepare('SELECT id, status FROM runs ORDER BY id').all();
    db.close();
    expect(statuses).toEqual([
      { id: killed, status: 'abandoned' },
      { id: live, status: 'running' },
      { id: older, status: 'abandoned' },
    ]);
  });

  it('stores a run with other templates under another config hash', async () => {
    const resultsDb = join(dir, 'results-c.sqlite');
    const a = await runEval({ checkpoint: fx.checkpoint, benchmark: ['fashion'], benchDb: fx.benchDb, resultsDb });
    const b = await runEval({ checkpoint: fx.checkpoint, benchmark: ['fashion'], benchDb: fx.benchDb, resultsDb });
    const c = await runEval({
      checkpoint: fx.checkpoint,
      benchmark: ['fashion'],
      benchDb: fx.benchDb,
      resultsDb,
      templates: ['{}'],
    });
    expect(b.runId).toBe(a.runId + 1);
    expect(b.configHash).toBe(a.configHash);
    expect(b.metrics).toEqual(a.metrics);
    expect(c.configHash).not.toBe(a.configHash);
  });

  it('refuses an empty benchmark and an unknown one before storing a run', async () => {
    const resultsDb = join(dir, 'results-d.sqlite');
    await expect(
      runEval({ checkpoint: fx.checkpoint, benchmark: ['emoji', 'broken'], benchDb: fx.benchDb, resultsDb }),
    ).rejects.toMatchObject({
      code: 'ERR_EMPTY_BENCHMARK',
      message: expect.stringContaining("'broken'"),
    });
    // Readable images with neither captions nor labels: nothing to evaluate, found before the run is stored.
    const bare = join(dir, 'bare');
    mkdirSync(bare);
    for (let i = 0; i < 5; i++) {
      const background = { r: 40 * i, g: 100, b: 200 };
      await sharp({ create: { width: 8, height: 8, channels: 3, background } })
        .png()
        .toFile(join(bare, `${i}.png`));
    }
    await registerBenchmark({ name: 'bare', images: bare, benchDb: fx.benchDb });
    await expect(
      runEval({ checkpoint: fx.checkpoint, benchmark: ['emoji', 'bare'], benchDb: fx.benchDb, resultsDb }),
    ).rejects.toMatchObject({
      code: 'ERR_EMPTY_BENCHMARK',
      message: expect.stringContaining("'bare' has 5 images but neither captions nor labelled classes"),
    });
    await expect(
      runEval({ checkpoint: fx.checkpoint, benchmark: ['nope'], benchDb: fx.benchDb, resultsDb }),
    ).rejects.toMatchObject({
      code: 'ERR_UNKNOWN_BENCHMARK',
    });
    await expect(
      runEval({ checkpoint: join(dir, 'missing'), benchmark: ['emoji'], benchDb: fx.benchDb, resultsDb }),
    ).rejects.toMatchObject({
      code: 'ERR_CHECKPOINT_NOT_FOUND',
    });
    await expect(runEval({ checkpoint: fx.checkpoint, benchmark: [], benchDb: fx.benchDb })).rejects.toMatchObject({
      code: 'ERR_INVALID_OPTION',
    });
    if (existsSync(resultsDb)) {
      const db = new Database(resultsDb, { readonly: true });
      expect((db.prepare('SELECT COUNT(*) AS n FROM runs').get() as { n: number }).n).toBe(0);
      db.close();
    }
  });
});

describe('altforge eval', () => {
  it('prints a table of the metrics, or the result as JSON', async () => {
    const resultsDb = join(dir, 'results-cli.sqlite');
    const args = [
      'eval',
      '--checkpoint',
      fx.checkpoint,
      '--benchmark',
      'emoji',
      '--benchmark',
      'fashion',
      '--bench-db',
      fx.benchDb,
      '--results-db',
      resultsDb,
    ];
    const json = await runCli([...args, '--json']);
    expect(json.code).toBe(0);
    const parsed = JSON.parse(json.stdout) as {
      runId: number;
      metrics: Array<{ benchmark: string; task: string; metric: string; value: number }>;
    };
    expect(parsed.runId).toBe(1);
    expect(parsed.metrics).toHaveLength(12);
    const table = await runCli(args);
    expect(table.code).toBe(0);
    expect(table.stdout).toBe(formatEvalTable(parsed.metrics as never) + '\n');
    expect(table.stdout.split('\n')[0]).toMatch(
      /^benchmark\s+task\s+R@1\s+R@5\s+R@10\s+mean_rank\s+median_rank\s+top1\s+top5$/,
    );
    expect(table.stderr).toContain('(run 2,');
    // A checkpoint file named relative to the working directory, or its run directory: stored as the
    // file's absolute path, so the README's query finds both runs whatever directory it is run from.
    const relative = await runCli([
      ...args.slice(0, 2),
      pathRelative(REPO_ROOT, join(fx.checkpoint, 'checkpoint.ckpt')),
      ...args.slice(3),
    ]);
    expect(relative.code, relative.stderr).toBe(0);
    const db = new Database(resultsDb, { readonly: true });
    const stored = db.prepare('SELECT DISTINCT checkpoint FROM results ORDER BY checkpoint').all();
    db.close();
    expect(stored).toEqual([{ checkpoint: resolve(fx.checkpoint, 'checkpoint.ckpt') }]);
  });

  it('evaluates an emoji vendor registered out of the box with bench add --emoji', async () => {
    const add = await runCli(['bench', 'add', '--name', 'emoji-google', '--emoji', 'google', '--bench-db', fx.benchDb]);
    expect(add.code).toBe(0);
    const drawings = emojiDrawings(['google']).get('google') ?? [];
    expect(drawings.length).toBeGreaterThan(1000);
    expect(add.stderr).toContain(`emoji-google: ${drawings.length} images (images, emoji)`);
    // Every drawing with its Unicode name as its only caption, read back as eval reads it.
    const registry = openRegistry(fx.benchDb);
    try {
      const bench = await loadBenchmark(registry, 'emoji-google');
      expect(bench.images).toHaveLength(drawings.length);
      const byFile = new Map(drawings.map((d) => [d.entry.image, d]));
      const grinning = byFile.get('1f600.png');
      expect(grinning?.caption).toBe('grinning face');
      const ids = [...iterateImages(registry, 'emoji-google')].map((i) => i.imageId);
      const at = ids.indexOf('1f600.png');
      expect(bench.captions[at]).toEqual(['grinning face']);
      expect(Buffer.from((bench.images as Uint8Array[])[at] as Uint8Array)).toEqual(
        readFileSync(grinning?.file as string),
      );
      expect(new Set(bench.captions.flat()).size).toBe(drawings.length);
    } finally {
      registry.close();
    }
    const res = await runCli([
      'eval',
      '--checkpoint',
      fx.checkpoint,
      '--benchmark',
      'emoji-google',
      '--limit',
      '40',
      '--bench-db',
      fx.benchDb,
      '--results-db',
      join(dir, 'results-emoji.sqlite'),
      '--json',
    ]);
    expect(res.code).toBe(0);
    const metrics = (JSON.parse(res.stdout) as { metrics: Array<{ task: string; metric: string; value: number }> })
      .metrics;
    expect(metrics.map((m) => `${m.task}/${m.metric}`).sort()).toEqual(
      [...RETRIEVAL.map((m) => `image_to_text/${m}`), ...RETRIEVAL.map((m) => `text_to_image/${m}`)].sort(),
    );
    for (const m of metrics.filter((x) => x.metric === 'mean_rank')) expect(m.value).toBeLessThanOrEqual(40);
  });

  it('exits 2 with one line when the benchmark is missing or unknown', async () => {
    const missing = await runCli(['eval', '--checkpoint', fx.checkpoint]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('--benchmark');
    const unknown = await runCli([
      'eval',
      '--checkpoint',
      fx.checkpoint,
      '--benchmark',
      'nope',
      '--bench-db',
      fx.benchDb,
    ]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("Unknown benchmark 'nope'");
  });

  it('names a results database that is not an SQLite database on one line, and leaves it as it was', async () => {
    const csv = join(dir, 'results.csv');
    writeFileSync(csv, 'metric,value\nR@1,0.5\n');
    const run = await runCli([
      'eval',
      '--checkpoint',
      fx.checkpoint,
      '-b',
      'emoji',
      '--bench-db',
      fx.benchDb,
      '--results-db',
      csv,
    ]);
    expect(run.code).toBe(2);
    expect(run.stderr).toBe(
      `altforge: Results database '${csv}' is not an SQLite database (file is not a database) [ERR_NOT_A_DATABASE]\n`,
    );
    expect(readFileSync(csv, 'utf8')).toBe('metric,value\nR@1,0.5\n');
  });

  it('refuses a benchmark given twice on one line before any work, storing no run', async () => {
    const resultsDb = join(dir, 'results-twice.sqlite');
    const run = await runCli([
      'eval',
      '--checkpoint',
      fx.checkpoint,
      '-b',
      'emoji',
      '-b',
      'emoji',
      '--bench-db',
      fx.benchDb,
      '--results-db',
      resultsDb,
    ]);
    expect(run.code).toBe(2);
    expect(run.stderr).toBe("altforge: Flag --benchmark: benchmark 'emoji' is given twice [ERR_DUPLICATE_BENCHMARK]\n");
    expect(existsSync(resultsDb)).toBe(false);
    await expect(
      runEval({ checkpoint: fx.checkpoint, benchmark: ['emoji', 'emoji'], benchDb: fx.benchDb, resultsDb }),
    ).rejects.toMatchObject({
      code: 'ERR_DUPLICATE_BENCHMARK',
      message: "Option 'eval.benchmark': benchmark 'emoji' is given twice",
    });
    expect(existsSync(resultsDb)).toBe(false);
  });
});
