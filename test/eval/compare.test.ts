import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { COMPARE_RUN_FILE, runCompare, runEval, type CompareJson, type CompareOptions } from '../../eval/index.ts';
import { compareMarkdown } from '../../eval/compare.ts';
import { nlipEstimateOff, type ResolvedNoiseSignal } from '../../train/options.ts';
import { readCheckpoint } from '../../train/checkpoint.ts';
import { runCli } from '../helpers/cli.ts';
import { makeEmojiCorpus } from '../train/_corpus.ts';
import { makeEvalFixture, type EvalFixture } from './_fixtures.ts';

let dir: string;
let fx: EvalFixture;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'altforge-compare-'));
  fx = await makeEvalFixture(dir);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const PNG = [0x89, 0x50, 0x4e, 0x47];

describe('nlipEstimateOff', () => {
  it('is true only when there are nlip runs and every one had its estimate off', () => {
    const vanilla = { method: 'vanilla', noiseSignal: null };
    expect(nlipEstimateOff([])).toBe(false);
    expect(nlipEstimateOff([vanilla])).toBe(false);
    expect(nlipEstimateOff([vanilla, { method: 'nlip', noiseSignal: 'off' }])).toBe(true);
    expect(
      nlipEstimateOff([
        { method: 'nlip', noiseSignal: 'off' },
        { method: 'nlip', noiseSignal: 'words' },
      ]),
    ).toBe(false);
    expect(nlipEstimateOff([{ method: 'nlip' }])).toBe(false);
  });
});

function checkOutputs(out: string, json: CompareJson): void {
  expect(existsSync(join(out, 'compare.md'))).toBe(true);
  for (const plot of json.plots) {
    expect(readFileSync(join(out, plot.svg), 'utf8')).toMatch(/^<svg[^>]*>/);
    expect([...readFileSync(join(out, plot.png)).subarray(0, 4)]).toEqual(PNG);
  }
}

const TOY_FASHION = {
  setting: 'fashion-mnist',
  noiseRates: [0, 0.5],
  seeds: 1,
  steps: 6,
  trainPairs: 64,
  testImages: 20,
  // Multi-positive targets off, so that nlip's warm-up is vanilla's computation.
  train: { batchSize: 16, warmupEpochs: 1, vocabSize: 300, lrWarmupSteps: 1, multiPositive: false },
} as const satisfies Omit<CompareOptions, 'out'>;

describe('runCompare', () => {
  it('trains both methods at every rate on Fashion-MNIST at toy size and writes all its outputs', async () => {
    const out = join(dir, 'fashion-compare');
    const result = await runCompare({ ...TOY_FASHION, out });
    const json = JSON.parse(readFileSync(join(out, 'compare.json'), 'utf8')) as CompareJson;
    expect(json.version).toBe(1);
    expect(json.setting).toBe('fashion-mnist');
    expect(json.noiseRates).toEqual([0, 0.5]);
    expect(json.seeds).toEqual([1]);
    expect(json.steps).toBe(6);
    expect(json.runs.map((r) => `${r.noiseRate}/${r.method}/${r.seed}/${r.steps}`)).toEqual([
      '0/vanilla/1/6',
      '0/nlip/1/6',
      '0.5/vanilla/1/6',
      '0.5/nlip/1/6',
    ]);
    for (const r of json.runs) {
      expect(Object.keys(r.metrics).sort()).toEqual([
        'fashion-mnist/classification/top1',
        'fashion-mnist/classification/top5',
      ]);
      expect(existsSync(join(r.checkpoint, 'checkpoint.ckpt'))).toBe(true);
      // --steps sets each run's length: 6 steps of 4 a epoch are 2 epochs, not the recipe's default 10.
      const meta = readCheckpoint<{ training: { epochs: number; robust: string } }>(
        join(r.checkpoint, 'checkpoint.ckpt'),
      ).meta;
      expect(meta.training).toMatchObject({ epochs: 2, robust: r.method === 'nlip' ? 'nlip' : 'none' });
      // 64 pairs over 60 captions (six templates of ten classes): most captions have one holder, so
      // `auto` turns nlip's estimate off at this toy size (it is `agreement` at the measured 4,000).
      expect(r.noiseSignal).toBe(r.method === 'nlip' ? 'off' : null);
    }
    // One summary row per (rate, method, metric); with one seed the spread is 0 and the mean the run's value.
    expect(json.summary).toHaveLength(8);
    const nlip = json.runs.find((r) => r.noiseRate === 0.5 && r.method === 'nlip');
    const top1Row = json.summary.find((s) => s.noiseRate === 0.5 && s.method === 'nlip' && s.metric.endsWith('top1'));
    expect(top1Row).toMatchObject({ mean: nlip?.metrics['fashion-mnist/classification/top1'], spread: 0, n: 1 });
    // 64 pairs at batch 16: 4 steps per epoch, warm-up 1 epoch -> harmonised at the start of epoch 1 (step 4).
    expect(json.detection.map((d) => [d.noiseRate, d.seed, d.epoch, d.step])).toEqual([[0.5, 1, 1, 4]]);
    expect(json.detection[0]?.auc).toBeGreaterThanOrEqual(0);
    expect(json.detection[0]?.auc).toBeLessThanOrEqual(1);
    expect(json.detection[0]?.scoreAuc).toBeGreaterThanOrEqual(0);
    expect(json.detection[0]?.scoreAuc).toBeLessThanOrEqual(1);
    // Loss of every step of every run.
    expect(json.curves).toHaveLength(4 * 6);
    expect(json.plots.map((p) => p.svg)).toEqual([
      'plots/fashion-mnist-classification-top1-vs-noise.svg',
      'plots/auc-by-epoch.svg',
      'plots/loss-curves.svg',
    ]);
    checkOutputs(out, json);
    expect(result.markdown).toBe(join(out, 'compare.md'));
    const md = readFileSync(result.markdown, 'utf8');
    expect(md).toContain('## fashion-mnist/classification/top1');
    expect(md).toContain("**nlip's noise estimate was off in every run**");
    expect(md).toContain('| 0.5 | 1 | 1 | ');
    // One seed: each cell is the run's value, with no spread.
    const rows = md.split('\n').filter((l) => /^\| 0(\.5)? \|/.test(l));
    expect(rows.length).toBeGreaterThan(0);
    for (const line of rows) expect(line).not.toContain('±');
    const top1 = nlip?.metrics['fashion-mnist/classification/top1'] as number;
    expect(md).toContain(`| ${top1.toFixed(2)} |`);
  });

  it('shows mean ± spread in the Markdown where a cell has several seeds', () => {
    const row = (method: 'vanilla' | 'nlip', mean: number, spread: number, n: number) => ({
      noiseRate: 0.5,
      method,
      metric: 'm/R@1',
      mean,
      spread,
      n,
    });
    const md = compareMarkdown({
      setting: 'toy',
      description: 'toy',
      noiseRates: [0.5],
      seeds: [1, 2],
      steps: 4,
      runs: [],
      summary: [row('vanilla', 4.5, 1.25, 2), row('nlip', 9.75, 0.5, 2)],
      detection: [],
      plots: [],
    } as unknown as CompareJson);
    expect(md).toContain('| 0.5 | 4.50 ± 1.25 | 9.75 ± 0.50 | 5.25 |');
  });

  it("says in the Markdown what nlip's noise estimate was fitted to, and when auto turned it off", () => {
    const run = (method: 'vanilla' | 'nlip', noiseSignal?: ResolvedNoiseSignal | null) => ({
      noiseRate: 0.5,
      method,
      seed: 1,
      checkpoint: '/x',
      metrics: {},
      steps: 4,
      trainSeconds: 1,
      ...(noiseSignal === undefined ? {} : { noiseSignal }),
    });
    const md = (runs: ReturnType<typeof run>[]) =>
      compareMarkdown({
        setting: 'toy',
        description: 'toy',
        noiseRates: [0.5],
        seeds: [1],
        steps: 4,
        runs,
        summary: [],
        detection: [],
        plots: [],
      } as unknown as CompareJson);
    expect(md([run('vanilla', null), run('nlip', 'off'), run('nlip', 'off')])).toContain(
      "**nlip's noise estimate was off in every run** (`--noise-signal auto`",
    );
    expect(md([run('nlip', 'off'), run('nlip', 'loss')])).toContain(
      "nlip's noise estimate was fitted to: off (1 of 2 runs), loss (1 of 2 runs).",
    );
    // Runs recorded before the field existed say nothing.
    expect(md([run('vanilla', null), run('nlip')])).not.toContain('noise estimate');
  });

  it('gives vanilla and nlip the same noisy captions, data order and first steps', async () => {
    const out = join(dir, 'fashion-compare');
    const vanilla = readFileSync(join(out, 'runs', 'rate-0.5-vanilla-seed-1', 'metrics.jsonl'), 'utf8').split('\n');
    const nlip = readFileSync(join(out, 'runs', 'rate-0.5-nlip-seed-1', 'metrics.jsonl'), 'utf8').split('\n');
    const loss = (lines: string[], step: number) =>
      (
        lines.map((l) => (l ? JSON.parse(l) : null)).find((r) => r?.kind === 'step' && r.step === step) as {
          loss: number;
        }
      ).loss;
    // Before the first harmonisation (and with multi-positive targets off) both runs are the same computation.
    for (const step of [1, 2, 3, 4]) expect(loss(nlip, step)).toBe(loss(vanilla, step));
  });

  it("gives nlip's own parts of the recipe (completion, the targets' spread) to nlip only: vanilla trains without them", async () => {
    const out = join(dir, 'completion');
    const result = await runCompare({
      ...TOY_FASHION,
      noiseRates: [0.5],
      out,
      // The estimate acts whatever it finds, and every pair it finds anything in is completed.
      train: {
        ...TOY_FASHION.train,
        completion: true,
        completionThreshold: 0,
        thumbnailSpread: 8,
        noiseSignal: 'loss',
        minSeparation: 0,
        maxNoiseFraction: 1,
      },
    });
    expect(result.runs.map((r) => r.method)).toEqual(['vanilla', 'nlip']);
    const records = (method: string) =>
      readFileSync(join(out, 'runs', `rate-0.5-${method}-seed-1`, 'metrics.jsonl'), 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as { kind: string; completed?: number });
    expect(records('vanilla').filter((r) => r.kind === 'epoch')).toEqual([]);
    const harmonised = records('nlip').filter((r) => r.kind === 'epoch');
    expect(harmonised).toHaveLength(1);
    expect(harmonised[0]?.completed).toBeGreaterThan(0);
    const training = (method: string) =>
      readCheckpoint<{ training: Record<string, unknown> }>(
        join(out, 'runs', `rate-0.5-${method}-seed-1`, 'checkpoint.ckpt'),
      ).meta.training;
    expect(training('nlip')).toMatchObject({ completion: true, thumbnailSpread: 8 });
    expect(training('vanilla')).toMatchObject({ completion: false, thumbnailSpread: 0 });
  });

  it('reuses the finished runs of an earlier invocation into the same out', async () => {
    const out = join(dir, 'fashion-compare');
    const before = JSON.parse(readFileSync(join(out, 'compare.json'), 'utf8')) as CompareJson;
    const phases: string[] = [];
    const again = await runCompare({ ...TOY_FASHION, out, onProgress: (p) => phases.push(p.phase) });
    expect(again.reusedRuns).toBe(4);
    expect(phases).toEqual(['reused', 'reused', 'reused', 'reused']);
    expect(again.runs).toEqual(before.runs);
    expect(again.detection).toEqual(before.detection);
    expect(again.curves).toEqual(before.curves);
    // Other templates: evaluated again, not trained again.
    phases.length = 0;
    const templated = await runCompare({
      ...TOY_FASHION,
      out,
      templates: ['{}'],
      onProgress: (p) => phases.push(p.phase),
    });
    expect(templated.reusedRuns).toBe(0);
    expect(phases.filter((p) => p === 'eval')).toHaveLength(4);
    expect(phases).not.toContain('train');
    expect(templated.runs.map((r) => r.trainSeconds)).toEqual(before.runs.map((r) => r.trainSeconds));
    // Another recipe into the same directory: refused, nothing overwritten.
    await expect(runCompare({ ...TOY_FASHION, out, steps: 5 })).rejects.toMatchObject({ code: 'ERR_COMPARE_MISMATCH' });
  });

  it('checks every earlier run before training a new one, and names all that differ', async () => {
    const out = join(dir, 'fashion-compare');
    const phases: string[] = [];
    // A new rate listed first, and an option only nlip reads changed: both nlip runs differ.
    await expect(
      runCompare({
        ...TOY_FASHION,
        out,
        noiseRates: [0.2, ...TOY_FASHION.noiseRates],
        train: { ...TOY_FASHION.train, warmupEpochs: 2 },
        onProgress: (p) => phases.push(p.phase),
      }),
    ).rejects.toMatchObject({
      code: 'ERR_COMPARE_MISMATCH',
      message: `2 runs in '${join(out, 'runs')}' were trained on other data or with another recipe (rate-0-nlip-seed-1, rate-0.5-nlip-seed-1): choose another --out, or remove them`,
    });
    expect(phases).toEqual([]);
    expect(existsSync(join(out, 'runs', 'rate-0.2-vanilla-seed-1'))).toBe(false);
  });

  it('takes a recipe with its defaults spelled out, with other nlip-only options for vanilla, or recorded under the old print, for the same recipe', async () => {
    const out = join(dir, 'spelled');
    const base = { ...TOY_FASHION, noiseRates: [0.5], methods: ['vanilla'], out } satisfies CompareOptions;
    const first = await runCompare(base);
    expect(first.reusedRuns).toBe(0);
    // train's defaults given: the same recipe, so the run is reused.
    const spelled = await runCompare({ ...base, train: { ...base.train, lr: 5e-4, weightDecay: 0.1, flip: false } });
    expect(spelled.reusedRuns).toBe(1);
    expect(spelled.runs).toEqual(first.runs);
    // Options only nlip reads leave the vanilla run as it was: reused, not refused.
    const nlipOnly = await runCompare({ ...base, train: { ...base.train, warmupEpochs: 3, noiseSignal: 'loss' } });
    expect(nlipOnly.reusedRuns).toBe(1);
    // A record written before the resolved recipe was hashed (this print came from commit f2bd8f0 on
    // this very run): reused, and recorded again under the new print.
    const file = join(out, 'runs', 'rate-0.5-vanilla-seed-1', COMPARE_RUN_FILE);
    const record = JSON.parse(readFileSync(file, 'utf8')) as { train: string };
    writeFileSync(file, JSON.stringify({ ...record, train: 'ec484b884792fdd7' }));
    const old = await runCompare(base);
    expect(old.reusedRuns).toBe(1);
    expect((JSON.parse(readFileSync(file, 'utf8')) as { train: string }).train).toBe(record.train);
    // Another value is another recipe: refused, the run kept.
    await expect(runCompare({ ...base, train: { ...base.train, lr: 1e-3 } })).rejects.toMatchObject({
      code: 'ERR_COMPARE_MISMATCH',
    });
    expect(JSON.parse(readFileSync(file, 'utf8'))).toEqual(record);
  });

  it('goes on after an interruption: finished runs are kept, the one cut short is trained again', async () => {
    const out = join(dir, 'cut');
    const stop = new AbortController();
    await expect(
      runCompare({
        ...TOY_FASHION,
        out,
        signal: stop.signal,
        onProgress: (p) => {
          if (p.phase === 'train' && p.run === 1 && p.done === 3) stop.abort();
        },
      }),
    ).rejects.toMatchObject({ code: 'ERR_INTERRUPTED' });
    expect(existsSync(join(out, 'runs', 'rate-0-vanilla-seed-1', COMPARE_RUN_FILE))).toBe(true);
    expect(existsSync(join(out, 'runs', 'rate-0-nlip-seed-1', COMPARE_RUN_FILE))).toBe(false);
    expect(existsSync(join(out, 'compare.json'))).toBe(false);
    const trained = new Set<number>();
    const result = await runCompare({
      ...TOY_FASHION,
      out,
      onProgress: (p) => {
        if (p.phase === 'train') trained.add(p.run);
      },
    });
    expect(result.reusedRuns).toBe(1);
    expect([...trained]).toEqual([1, 2, 3]);
    expect(result.runs.map((r) => r.steps)).toEqual([6, 6, 6, 6]);
    expect(result.detection.map((d) => [d.noiseRate, d.epoch])).toEqual([[0.5, 1]]);
  });

  it('refuses an out directory another comparison is writing', async () => {
    const out = join(dir, 'locked');
    mkdirSync(out, { recursive: true });
    // A live process other than this one holds the lock.
    writeFileSync(join(out, '.lock'), String(process.ppid));
    await expect(runCompare({ ...TOY_FASHION, out })).rejects.toMatchObject({ code: 'ERR_COMPARE_LOCKED' });
    expect(existsSync(join(out, 'runs', 'rate-0-vanilla-seed-1'))).toBe(false);
  });

  it('refuses a non-empty directory that holds no comparison, on one line, and writes nothing there', async () => {
    const foreign = join(dir, 'foreign');
    mkdirSync(foreign);
    writeFileSync(join(foreign, 'notes.txt'), 'mine');
    await expect(runCompare({ ...TOY_FASHION, out: foreign })).rejects.toMatchObject({
      code: 'ERR_NOT_A_COMPARISON',
      message: `Directory '${foreign}' is not empty and holds no comparison: refusing to write into it`,
    });
    const cli = await runCli(['compare', '--setting', 'fashion-mnist', '--out', foreign]);
    expect(cli.code).toBe(2);
    expect(cli.stderr).toBe(
      `altforge: Directory '${foreign}' is not empty and holds no comparison: refusing to write into it [ERR_NOT_A_COMPARISON]\n`,
    );
    expect(readdirSync(foreign)).toEqual(['notes.txt']);
  });

  it('continues a comparison killed before its compare.json, marked or (from before the mark) by its finished runs', async () => {
    // The runs of a finished comparison, alone: what one killed before the end by an earlier version left.
    const legacy = join(dir, 'legacy');
    cpSync(join(dir, 'fashion-compare', 'runs'), join(legacy, 'runs'), { recursive: true });
    const phases: string[] = [];
    const again = await runCompare({ ...TOY_FASHION, out: legacy, onProgress: (p) => phases.push(p.phase) });
    expect(again.runs).toHaveLength(4);
    expect(phases).not.toContain('train');
    expect(existsSync(join(legacy, '.altforge-compare'))).toBe(true);
    // Marked, without its compare.json or any run: taken too.
    rmSync(join(legacy, 'runs'), { recursive: true });
    rmSync(join(legacy, 'compare.json'));
    const marked = await runCompare({ ...TOY_FASHION, methods: ['vanilla'], noiseRates: [0.5], out: legacy });
    expect(marked.reusedRuns).toBe(0);
    // Killed by an earlier version during its first run: an unfinished run directory alone. Taken,
    // and the run trained again; a runs/ holding anything else is not a comparison's.
    const unfinished = join(dir, 'legacy-unfinished');
    const run = join(unfinished, 'runs', 'rate-0.5-vanilla-seed-1');
    cpSync(join(dir, 'fashion-compare', 'runs', 'rate-0.5-vanilla-seed-1'), run, { recursive: true });
    rmSync(join(run, 'compare-run.json'));
    const resumed = await runCompare({ ...TOY_FASHION, methods: ['vanilla'], noiseRates: [0.5], out: unfinished });
    expect(resumed.reusedRuns).toBe(0);
    expect(existsSync(join(unfinished, 'compare.json'))).toBe(true);
    const other = join(dir, 'runs-of-something-else');
    mkdirSync(join(other, 'runs', 'experiment-3'), { recursive: true });
    await expect(runCompare({ ...TOY_FASHION, out: other })).rejects.toMatchObject({ code: 'ERR_NOT_A_COMPARISON' });
  });

  it("trains on the emoji vendors it is given and retrieves another vendor's drawings", async () => {
    const out = join(dir, 'vendors');
    const result = await runCompare({
      setting: 'emoji',
      trainVendors: ['facebook'],
      testVendor: 'apple',
      out,
      noiseRates: [0.5],
      methods: ['vanilla'],
      seeds: 1,
      steps: 2,
      trainPairs: 16,
      testImages: 8,
      train: { batchSize: 8, vocabSize: 300, lrWarmupSteps: 1 },
    });
    expect(result.description).toBe('emoji: 16 training pairs (facebook, 16 concepts), retrieval on 8 apple drawings');
    expect(Object.keys(result.runs[0]?.metrics ?? {})).toContain('emoji-apple/image_to_text/R@1');
  });

  it('refuses emoji vendors on another setting, and a test vendor it trains on, before anything trains', async () => {
    const fashion = join(dir, 'vendors-fashion');
    await expect(runCompare({ ...TOY_FASHION, trainVendors: ['google'], out: fashion })).rejects.toMatchObject({
      code: 'ERR_INVALID_OPTION',
      message: expect.stringContaining("they need setting 'emoji'"),
    });
    const leak = join(dir, 'vendors-leak');
    await expect(
      runCompare({ setting: 'emoji', trainVendors: ['google', 'twitter'], out: leak }),
    ).rejects.toMatchObject({ code: 'ERR_INVALID_OPTION', message: expect.stringContaining("test vendor 'twitter'") });
    expect(existsSync(fashion)).toBe(false);
    expect(existsSync(leak)).toBe(false);
  });

  it('refuses to start without a setting or a corpus', async () => {
    await expect(runCompare({ out: join(dir, 'x') })).rejects.toMatchObject({ code: 'ERR_NO_INPUT' });
    await expect(runCompare({ setting: 'emoji', corpus: dir, out: join(dir, 'x') })).rejects.toMatchObject({
      code: 'ERR_NO_INPUT',
      message: expect.stringContaining('(one of them, not both)'),
    });
    await expect(runCompare({ corpus: dir, out: join(dir, 'x') })).rejects.toMatchObject({ code: 'ERR_NO_BENCHMARK' });
  });

  it('refuses a benchmark given twice before anything trains, as eval does', async () => {
    const out = join(dir, 'bench-twice');
    await expect(runCompare({ corpus: dir, benchmark: ['a', 'b', 'a'], out })).rejects.toMatchObject({
      code: 'ERR_DUPLICATE_BENCHMARK',
      message: "Option 'compare.benchmark': benchmark 'a' is given twice",
    });
    expect(existsSync(out)).toBe(false);
  });
});

describe('altforge compare', () => {
  it('compares on a corpus against a registered benchmark and writes its outputs', async () => {
    const corpus = join(dir, 'corpus');
    await makeEmojiCorpus(corpus, { count: 24 });
    const out = join(dir, 'corpus-compare');
    const args = [
      'compare',
      '--corpus',
      corpus,
      '--benchmark',
      'emoji',
      '--bench-db',
      fx.benchDb,
      '--out',
      out,
      '--noise-rates',
      '0,0.5',
      '--seeds',
      '1',
      '--first-seed',
      '3',
      '--steps',
      '3',
      '--batch-size',
      '8',
      '--warmup-epochs',
      '1',
    ];
    const res = await runCli(args);
    expect(res.stderr).toContain('compare: corpus:');
    expect(res.code).toBe(0);
    const json = JSON.parse(readFileSync(join(out, 'compare.json'), 'utf8')) as CompareJson;
    // Every emoji name is one pair's: `auto` turns nlip's estimate off, and the report says so.
    expect(json.runs.filter((r) => r.method === 'nlip').map((r) => r.noiseSignal)).toEqual(['off', 'off']);
    expect(readFileSync(join(out, 'compare.md'), 'utf8')).toContain("**nlip's noise estimate was off in every run**");
    expect(res.stderr).toContain(
      "(nlip's noise estimate off: most captions have fewer than 3 holders, so nlip trained",
    );
    expect(json.trainPairs).toBe(24);
    expect(json.runs).toHaveLength(4);
    // --first-seed 3 --seeds 1: every run is seed 3.
    expect(json.seeds).toEqual([3]);
    expect(json.runs.map((r) => r.seed)).toEqual([3, 3, 3, 3]);
    expect(Object.keys(json.runs[0]?.metrics ?? {})).toContain('emoji/image_to_text/R@1');
    expect(json.plots.map((p) => p.svg)).toContain('plots/emoji-image-to-text-r1-vs-noise.svg');
    checkOutputs(out, json);
    // The benchmark's images are read from the registry at each evaluation: the same metrics as eval gives.
    const first = json.runs[0] as CompareJson['runs'][number];
    const evaluated = await runEval({
      checkpoint: first.checkpoint,
      benchmark: ['emoji'],
      benchDb: fx.benchDb,
      resultsDb: join(dir, 'results-compare.sqlite'),
    });
    expect(Object.fromEntries(evaluated.metrics.map((m) => [`${m.benchmark}/${m.task}/${m.metric}`, m.value]))).toEqual(
      first.metrics,
    );
    // The same command again: every run finished, nothing trained, the same results.
    const again = await runCli(args);
    expect(again.code).toBe(0);
    expect(again.stderr).toContain('4 finished earlier, reused');
    const json2 = JSON.parse(readFileSync(join(out, 'compare.json'), 'utf8')) as CompareJson;
    expect(json2.runs).toEqual(json.runs);
    // Another recipe into the same --out: one line, exit 2.
    const other = await runCli([...args.slice(0, -2), '--warmup-epochs', '2']);
    expect(other.code).toBe(2);
    expect(other.stderr.trim().split('\n').at(-1)).toContain('another recipe');
    // --grounding-thumbnails without the words signal its thumbnails ground: refused before anything trains.
    const thumbsAlone = await runCli([...args, '--grounding-thumbnails']);
    expect(thumbsAlone.code).toBe(2);
    expect(thumbsAlone.stderr.trim().split('\n').at(-1)).toContain(
      "Flag --grounding-thumbnails: thumbnails ground the words signal: it needs robust 'nlip' and --noise-signal words",
    );
    // With it, the flag reaches the recipe (unset, it stays out of it: the runs above resumed).
    const words = [...args.map((a) => (a === out ? join(dir, 'corpus-compare-words') : a)), '--noise-signal', 'words'];
    expect((await runCli(words)).code).toBe(0);
    const thumbs = await runCli([...words, '--grounding-thumbnails']);
    expect(thumbs.code).toBe(2);
    expect(thumbs.stderr.trim().split('\n').at(-1)).toContain('another recipe');
    // --methods vanilla trains vanilla alone; label smoothing gives its thumbnail spread something to spread.
    const alone = join(dir, 'corpus-compare-vanilla');
    const vanilla = [...args.map((a) => (a === out ? alone : a)), '--methods', 'vanilla'];
    const spread = await runCli([...vanilla, '--label-smoothing', '0.5', '--thumbnail-spread', '8']);
    expect(spread.code).toBe(0);
    const json3 = JSON.parse(readFileSync(join(alone, 'compare.json'), 'utf8')) as CompareJson;
    expect(json3.runs.map((r) => `${r.method} ${r.noiseRate}`)).toEqual(['vanilla 0', 'vanilla 0.5']);
    const meta = readCheckpoint<{ training: Record<string, unknown> }>(
      join(alone, 'runs', 'rate-0.5-vanilla-seed-3', 'checkpoint.ckpt'),
    ).meta.training;
    expect(meta).toMatchObject({ robust: 'none', labelSmoothing: 0.5, thumbnailSpread: 8 });
    // Both methods later into the same --out: vanilla's runs are taken as they are, nlip's train.
    const both = await runCli([
      ...vanilla.slice(0, -1),
      'vanilla,nlip',
      '--label-smoothing',
      '0.5',
      '--thumbnail-spread',
      '8',
    ]);
    expect(both.code).toBe(0);
    expect(both.stderr).toContain('2 finished earlier, reused');
    const json4 = JSON.parse(readFileSync(join(alone, 'compare.json'), 'utf8')) as CompareJson;
    expect(json4.runs.map((r) => r.method)).toEqual(['vanilla', 'nlip', 'vanilla', 'nlip']);
    const misspelt = await runCli([...vanilla.slice(0, -1), 'vanila']);
    expect(misspelt.code).toBe(2);
    expect(misspelt.stderr.trim().split('\n')).toEqual([
      expect.stringContaining('Flag --methods: expected vanilla, nlip or both, comma-separated, got `vanila`'),
    ]);
  });

  it('hands --robust-floor to training, whose options refuse one above 1 before anything trains', async () => {
    const out = join(dir, 'floor');
    const res = await runCli(['compare', '--setting', 'emoji', '--out', out, '--robust-floor', '1.5']);
    expect(res.code).toBe(2);
    expect(res.stderr.trim().split('\n').at(-1)).toContain('Flag --robust-floor: Too big');
    expect(existsSync(join(out, 'runs', 'rate-0-vanilla-seed-1', 'checkpoint.ckpt'))).toBe(false);
  });

  it('exits 2 on an unknown or repeated emoji vendor, one line', async () => {
    for (const vendors of ['google,goggle', 'apple,apple']) {
      const res = await runCli(['compare', '--setting', 'emoji', '--out', join(dir, 'z'), '--train-vendors', vendors]);
      expect(res.code).toBe(2);
      expect(res.stderr.trim().split('\n')).toEqual([
        expect.stringContaining(
          `Flag --train-vendors: expected distinct vendors among apple, facebook, google, twitter`,
        ),
      ]);
    }
    expect(existsSync(join(dir, 'z'))).toBe(false);
  });

  it('exits 2 on a malformed, empty or repeated noise rate, one line, nothing written', async () => {
    // '0,,0.5' once trained rate 0 twice: Number('') is 0.
    for (const rates of ['0,2', '0,,0.5', '0.5,', '0.2,0.2']) {
      const res = await runCli(['compare', '--setting', 'emoji', '--out', join(dir, 'y'), '--noise-rates', rates]);
      expect(res.code).toBe(2);
      expect(res.stderr.trim().split('\n')).toEqual([
        expect.stringContaining(
          `Flag --noise-rates: expected distinct comma-separated fractions in [0, 1], got \`${rates}\``,
        ),
      ]);
    }
    expect(existsSync(join(dir, 'y'))).toBe(false);
  });

  it('refuses a noise rate given twice before anything trains', async () => {
    const out = join(dir, 'twice');
    await expect(runCompare({ ...TOY_FASHION, out, noiseRates: [0.5, 0.5] })).rejects.toMatchObject({
      code: 'ERR_INVALID_OPTION',
      message: expect.stringContaining('each rate once'),
    });
    expect(existsSync(out)).toBe(false);
  });
});
