/**
 * `altforge compare`: does noise-robust training help on this data? For each noise rate, the
 * captions of that fraction of training pairs are shuffled (NCR protocol), then a vanilla and an
 * NLIP run are trained with the same seeds, data order and steps, and both are evaluated on the
 * same clean benchmarks. Writes `compare.json`, `compare.md` and `plots/*.svg|png` into `out`.
 */
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { z } from 'zod';
import { AltforgeError, UsageError } from '../corpus/errors.ts';
import { EMOJI_VENDORS, type EmojiVendor } from '../corpus/emoji.ts';
import { acquireLock, isLockFile } from '../corpus/lock.ts';
import { parseOptions } from '../corpus/options.ts';
import { refuseNonDirectory } from '../corpus/paths.ts';
import { createRandom } from '../corpus/random.ts';
import { defaultRegistryPath } from '../corpus/registry.ts';
import {
  CHECKPOINT_FILE,
  METRICS_FILE,
  loadEncoder,
  pairsFingerprint,
  readMetrics,
  runTrain,
  type BackendChoice,
  type NoiseEpoch,
  type TrainOptions,
} from '../train/index.ts';
import {
  NLIP_ONLY_OPTIONS,
  NOISE_SIGNAL_OFF_REASON,
  nlipEstimateOff,
  resolveTrainOptions,
  vanillaRecipe,
  type ResolvedNoiseSignal,
  type ResolvedTrainOptions,
} from '../train/options.ts';
import { BACKEND_CHOICES } from '../train/backend-names.ts';
import { meanAndSpread, precisionRecall, rocAuc } from './metrics.ts';
import { refuseDuplicateBenchmarks } from './_options.ts';
import { injectNoise } from './noise-injection.ts';
import { renderPlots, type PlotRef } from './plots.ts';
import { configHash } from './results.ts';
import { corpusSetting, emoji, fashionMnist, type SettingData } from './_settings.ts';
import { DEFAULT_TEMPLATES, evaluateBenchmark, imageCount } from './zero-shot.ts';

/** The training recipe shared by both methods (everything `runTrain` takes except the data and the robust switch). */
export type CompareTrainOptions = Omit<
  TrainOptions,
  | 'corpus'
  | 'pairs'
  | 'out'
  | 'seed'
  | 'robust'
  | 'onProgress'
  | 'onNoise'
  | 'signal'
  | 'resume'
  | 'maxSteps'
  | 'backend'
>;

/** Progress of a comparison. */
export interface CompareProgress {
  /** `reused`: a run finished by an earlier invocation into the same `out`, taken as it is. */
  phase: 'load' | 'train' | 'noise' | 'eval' | 'reused';
  /** Index of the run (0-based) and number of runs. */
  run: number;
  runs: number;
  noiseRate: number;
  method: 'vanilla' | 'nlip';
  seed: number;
  /** Steps done and planned in the current run (train phase). */
  done: number;
  total: number;
  loss?: number;
  /** Noise phase: the epoch's detection against the injected mask (what `detection` records). */
  detection?: CompareJson['detection'][number];
}

/** Options of {@link runCompare}. Give `setting` or `corpus`. */
export interface CompareOptions {
  /** A built-in offline setting: Fashion-MNIST (zero-shot accuracy) or emoji (google+apple -> twitter retrieval). */
  setting?: 'fashion-mnist' | 'emoji';
  /** The emoji setting's training vendors, each drawing a concept once. @default ['google', 'apple'] */
  trainVendors?: EmojiVendor[];
  /** The emoji setting's test vendor, not among the training ones. @default 'twitter' */
  testVendor?: EmojiVendor;
  /** A corpus directory to train on instead (its kept pairs), evaluated on `benchmark`. */
  corpus?: string;
  /** Registered benchmarks (with `corpus`). @default [] */
  benchmark?: string[];
  /** The benchmark registry (with `corpus`). @default defaultRegistryPath() */
  benchDb?: string;
  /** Output directory: `compare.json`, `compare.md`, `plots/`, one run directory per run in `runs/`. */
  out: string;
  /** Fractions of training pairs whose captions are shuffled. @default [0, 0.2, 0.5] */
  noiseRates?: number[];
  /** Seeds per (rate, method): firstSeed..firstSeed + seeds − 1. @default 2 */
  seeds?: number;
  /** The first seed. @default 1 */
  firstSeed?: number;
  /** Training steps of every run (null: `train.epochs` full epochs). @default null */
  steps?: number | null;
  /** Methods trained. @default ['vanilla', 'nlip'] */
  methods?: Array<'vanilla' | 'nlip'>;
  /** Training pairs of a built-in setting. @default 4000 */
  trainPairs?: number;
  /** Test images of a built-in setting. @default 500 */
  testImages?: number;
  /** Classification prompt templates. @default DEFAULT_TEMPLATES */
  templates?: string[];
  /** Training recipe (epochs, batch size, lr, warm-up, robust mode...), the same for both methods. @default {epochs: 10, batchSize: 128} */
  train?: CompareTrainOptions;
  /** Compute backend. @default 'auto' */
  backend?: BackendChoice;
  onProgress?: (progress: CompareProgress) => void;
  /** Aborting it stops the current run and writes nothing more. */
  signal?: AbortSignal;
}

/** One trained and evaluated run. */
export interface CompareRun {
  noiseRate: number;
  method: 'vanilla' | 'nlip';
  seed: number;
  checkpoint: string;
  /** `<benchmark>/<task>/<metric>` -> value. */
  metrics: Record<string, number>;
  steps: number;
  trainSeconds: number;
  /**
   * What an nlip run's noise estimate was fitted to, `auto` resolved (`off`: estimated and logged,
   * never acted on, so the run trained as vanilla); null for vanilla. Absent in runs recorded
   * before the field existed.
   */
  noiseSignal?: ResolvedNoiseSignal | null;
}

/** The contents of `compare.json`. */
export interface CompareJson {
  version: 1;
  setting: string;
  description: string;
  noiseRates: number[];
  seeds: number[];
  steps: number;
  trainPairs: number;
  train: Record<string, unknown>;
  runs: CompareRun[];
  summary: Array<{
    noiseRate: number;
    method: 'vanilla' | 'nlip';
    metric: string;
    mean: number;
    spread: number;
    n: number;
  }>;
  detection: Array<{
    noiseRate: number;
    seed: number;
    epoch: number;
    step: number;
    auc: number | null;
    /** ROC AUC of the raw noise score (before the separation gate and the EMA). */
    scoreAuc: number | null;
    precision: number | null;
    recall: number | null;
    acted: boolean;
  }>;
  curves: Array<{ noiseRate: number; method: 'vanilla' | 'nlip'; seed: number; step: number; loss: number }>;
  plots: PlotRef[];
  createdAt: string;
}

/** What a comparison produced. */
export interface CompareResult extends CompareJson {
  out: string;
  /** Runs taken from an earlier invocation into the same `out` (same data, recipe and benchmarks). */
  reusedRuns: number;
  /** Paths of `compare.json` and `compare.md`. */
  json: string;
  markdown: string;
  durationMs: number;
}

const schema = z.strictObject({
  setting: z.enum(['fashion-mnist', 'emoji']).optional(),
  // No defaults here: the emoji setting's own, so a comparison on another setting cannot be given them.
  trainVendors: z.array(z.enum(EMOJI_VENDORS)).min(1).optional(),
  testVendor: z.enum(EMOJI_VENDORS).optional(),
  corpus: z.string().min(1).optional(),
  benchmark: z.array(z.string().min(1)).default([]),
  benchDb: z.string().min(1).optional(),
  out: z.string().min(1),
  noiseRates: z
    .array(z.number().min(0).max(1))
    .min(1)
    .refine((rates) => new Set(rates).size === rates.length, 'each rate once')
    .default([0, 0.2, 0.5]),
  seeds: z.number().int().min(1).max(100).default(2),
  firstSeed: z.number().int().min(0).default(1),
  steps: z.number().int().positive().nullable().default(null),
  methods: z
    .array(z.enum(['vanilla', 'nlip']))
    .min(1)
    .default(['vanilla', 'nlip']),
  trainPairs: z.number().int().min(2).default(4000),
  testImages: z.number().int().min(1).default(500),
  templates: z.array(z.string().includes('{}')).min(1).optional(),
  train: z.record(z.string(), z.unknown()).default({}),
  backend: z.enum(BACKEND_CHOICES).default('auto'),
  onProgress: z.custom<(p: CompareProgress) => void>((v) => typeof v === 'function').optional(),
  signal: z.custom<AbortSignal>((v) => v instanceof AbortSignal).optional(),
});

/** The comparison's options with their defaults, as {@link runCompare} reads them (checked, nothing run). */
export function resolveCompareOptions(options: CompareOptions): z.output<typeof schema> {
  const opts = parseOptions(schema, options, 'compare');
  refuseDuplicateBenchmarks(opts.benchmark, 'compare');
  return opts;
}

/** The training recipe's own defaults in a comparison (shorter runs than `altforge train`'s); the rest are train's. */
export const COMPARE_RECIPE_DEFAULTS = { epochs: 10, batchSize: 128 } as const;

async function loadSetting(opts: z.output<typeof schema>): Promise<SettingData> {
  if ((opts.setting === undefined) === (opts.corpus === undefined)) {
    const both = opts.setting !== undefined;
    throw new UsageError(
      'ERR_NO_INPUT',
      `Give what to compare on: --setting fashion-mnist|emoji, or --corpus DIR${both ? ' (one of them, not both)' : ''}`,
      { context: { stage: 'compare' } },
    );
  }
  if (opts.setting !== 'emoji' && (opts.trainVendors !== undefined || opts.testVendor !== undefined)) {
    throw new UsageError(
      'ERR_INVALID_OPTION',
      "Options 'trainVendors' and 'testVendor' choose the emoji setting's drawings: they need setting 'emoji'",
      { context: { stage: 'compare', option: opts.trainVendors !== undefined ? 'trainVendors' : 'testVendor' } },
    );
  }
  if (opts.setting === 'fashion-mnist') {
    return fashionMnist({ trainPairs: opts.trainPairs, testImages: opts.testImages, seed: 1 });
  }
  if (opts.setting === 'emoji') {
    return emoji({
      trainPairs: opts.trainPairs,
      testImages: opts.testImages,
      seed: 1,
      ...(opts.trainVendors === undefined ? {} : { trainVendors: opts.trainVendors }),
      ...(opts.testVendor === undefined ? {} : { testVendor: opts.testVendor }),
    });
  }
  if (opts.benchmark.length === 0) {
    throw new UsageError('ERR_NO_BENCHMARK', 'Comparing on a corpus needs --benchmark NAME (a registered test set)', {
      context: { stage: 'compare' },
    });
  }
  return corpusSetting({
    corpus: opts.corpus as string,
    benchmark: opts.benchmark,
    benchDb: resolve(opts.benchDb ?? defaultRegistryPath()),
    limit: opts.testImages,
  });
}

function writeAtomic(path: string, text: string): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, text);
  renameSync(tmp, path);
}

/** The file a comparison leaves in its `out` as it starts: a rerun into that directory continues it. */
const COMPARE_MARKER = '.altforge-compare';

/**
 * Refuses an `out` that holds something other than a comparison, as report and export refuse
 * theirs. Taken: a missing or empty directory, or one a comparison wrote (its marker, its
 * `compare.json`, or, from a comparison of a version before the marker, killed, a `runs/` holding
 * only run directories, `rate-<rate>-<method>-seed-<seed>`, finished or not), so that a rerun
 * continues it.
 */
function refuseForeignOut(dir: string): void {
  const out = resolve(dir);
  if (!existsSync(out)) return;
  const entries = readdirSync(out).filter((name) => !isLockFile(name));
  if (entries.length === 0 || entries.includes(COMPARE_MARKER) || entries.includes('compare.json')) return;
  const runs = join(out, 'runs');
  if (
    entries.includes('runs') &&
    statSync(runs).isDirectory() &&
    readdirSync(runs).every((run) => /^rate-.+-seed-\d+$/.test(run))
  ) {
    return;
  }
  throw new UsageError(
    'ERR_NOT_A_COMPARISON',
    `Directory '${dir}' is not empty and holds no comparison: refusing to write into it`,
    { context: { path: out, stage: 'compare' } },
  );
}

/** The file a finished run leaves in its directory: what it measured, and what it was trained and evaluated on. */
export const COMPARE_RUN_FILE = 'compare-run.json';

interface RunRecord {
  version: 1;
  /** Hash of the training: the noisy pairs, the recipe, steps, seed and method. */
  train: string;
  /** Hash of the evaluation: the benchmarks and the templates. */
  eval: string;
  run: Omit<CompareRun, 'checkpoint'>;
  detection: CompareJson['detection'];
}

/** The finished run in `runDir`, or null when there is none (never started, or killed before its record). */
function readRunRecord(runDir: string): RunRecord | null {
  const path = join(runDir, COMPARE_RUN_FILE);
  if (!existsSync(path)) return null;
  const record = JSON.parse(readFileSync(path, 'utf8')) as RunRecord;
  return record.version === 1 ? record : null;
}

const interrupted = () =>
  new AltforgeError(
    'ERR_INTERRUPTED',
    'Interrupted; the comparison is incomplete (a rerun goes on from the runs it finished)',
    {
      context: { stage: 'compare' },
    },
  );

const fmt = (v: number | null, digits = 1) => (v === null || !Number.isFinite(v) ? '–' : v.toFixed(digits));

/**
 * What nlip's noise estimate was fitted to, for the report: a run whose estimate `auto` turned off
 * trained exactly as vanilla, which its identical numbers alone do not say.
 */
function noiseSignalNote(runs: readonly CompareRun[]): string[] {
  const nlip = runs.filter((r) => r.method === 'nlip' && r.noiseSignal !== undefined && r.noiseSignal !== null);
  if (nlip.length === 0) return [];
  if (nlipEstimateOff(nlip)) {
    return [
      `**nlip's noise estimate was off in every run** (\`--noise-signal auto\`: ${NOISE_SIGNAL_OFF_REASON}), ` +
        'so nlip trained as vanilla; `--noise-signal loss` or `agreement` makes it act.',
      '',
    ];
  }
  const which = [...new Set(nlip.map((r) => r.noiseSignal))]
    .map((signal) => {
      const of = nlip.filter((r) => r.noiseSignal === signal);
      return of.length === nlip.length ? `${signal} (every run)` : `${signal} (${of.length} of ${nlip.length} runs)`;
    })
    .join(', ');
  return [`nlip's noise estimate was fitted to: ${which}.`, ''];
}

/** The Markdown report: one table per metric (methods side by side, robust minus vanilla), then detection. */
export function compareMarkdown(result: CompareJson): string {
  const lines: string[] = [
    `# Noise-robust vs vanilla: ${result.setting}`,
    '',
    `${result.description}. Noise rates ${result.noiseRates.join(', ')}; seeds ${result.seeds.join(', ')}; ${result.steps} steps per run. Values: mean ± spread (sample standard deviation) over seeds; a cell of one seed is that run's value.`,
    '',
  ];
  const metrics = [...new Set(result.summary.map((s) => s.metric))];
  const get = (rate: number, method: string, metric: string) =>
    result.summary.find((s) => s.noiseRate === rate && s.method === method && s.metric === metric);
  for (const metric of metrics) {
    lines.push(`## ${metric}`, '', '| noise rate | vanilla | nlip | nlip − vanilla |', '|---|---|---|---|');
    for (const rate of result.noiseRates) {
      const v = get(rate, 'vanilla', metric);
      const n = get(rate, 'nlip', metric);
      // One seed has no spread to show (its sample standard deviation is undefined, not 0).
      const cell = (s: typeof v) => (s ? (s.n > 1 ? `${fmt(s.mean, 2)} ± ${fmt(s.spread, 2)}` : fmt(s.mean, 2)) : '–');
      lines.push(`| ${rate} | ${cell(v)} | ${cell(n)} | ${v && n ? fmt(n.mean - v.mean, 2) : '–'} |`);
    }
    lines.push('');
  }
  lines.push(...noiseSignalNote(result.runs));
  if (result.detection.length > 0) {
    lines.push(
      '## Noise detection (nlip runs: noise probability against the injected mask)',
      '',
      '| noise rate | seed | epoch | acted | ROC AUC | AUC of the raw score | precision@0.5 | recall@0.5 |',
      '|---|---|---|---|---|---|---|---|',
    );
    for (const d of result.detection) {
      lines.push(
        `| ${d.noiseRate} | ${d.seed} | ${d.epoch} | ${d.acted ? 'yes' : 'no'} | ${fmt(d.auc, 3)} | ${fmt(d.scoreAuc, 3)} | ${fmt(d.precision, 3)} | ${fmt(d.recall, 3)} |`,
      );
    }
    lines.push('');
  }
  if (result.plots.length > 0) {
    lines.push('## Plots', '');
    for (const p of result.plots) lines.push(`![${p.title}](${p.svg})`);
    lines.push('');
  }
  return lines.join('\n');
}

/**
 * Runs the comparison. Every (rate, seed) shares one noisy caption set, so vanilla and NLIP see
 * exactly the same data, order and steps; only the robust switch differs.
 */
export async function runCompare(options: CompareOptions): Promise<CompareResult> {
  const started = Date.now();
  const opts = resolveCompareOptions(options);
  refuseNonDirectory(resolve(opts.out), 'Comparison directory', 'compare');
  refuseForeignOut(opts.out);
  const data = await loadSetting(opts);
  try {
    return await compareOn(opts, data, started);
  } finally {
    data.close?.();
  }
}

/** The train options a method's runs take from the shared recipe (vanilla's: `vanillaRecipe`). */
function methodRecipe(
  recipe: Record<string, unknown>,
  method: 'vanilla' | 'nlip',
): CompareTrainOptions & Pick<TrainOptions, 'robust'> {
  return method === 'nlip'
    ? { ...(recipe as CompareTrainOptions), robust: 'nlip' }
    : vanillaRecipe(recipe as CompareTrainOptions);
}

/** Resolved train options that are not the recipe: the data, where it goes, its length, the callbacks. */
const NOT_RECIPE = new Set([
  'corpus',
  'pairs',
  'out',
  'backend',
  'seed',
  'epochs',
  'maxSteps',
  'checkpointEvery',
  'resume',
  'onProgress',
  'onNoise',
  'signal',
]);

/**
 * A method's recipe as its runs train it: every option with its default filled in, so that giving
 * a default or leaving it out is the same recipe (the runs' seed, epochs and steps are hashed beside
 * it). Vanilla's leaves out the options only nlip reads: changing one retrains nlip's runs alone.
 */
function recipePrint(resolved: ResolvedTrainOptions, method: 'vanilla' | 'nlip'): Record<string, unknown> {
  const ignored = new Set<string>(method === 'vanilla' ? NLIP_ONLY_OPTIONS : []);
  return Object.fromEntries(Object.entries(resolved).filter(([key]) => !NOT_RECIPE.has(key) && !ignored.has(key)));
}

/** {@link runCompare} once its setting is loaded. */
async function compareOn(opts: z.output<typeof schema>, data: SettingData, started: number): Promise<CompareResult> {
  const out = resolve(opts.out);
  if (data.pairs.length < 2) {
    throw new UsageError('ERR_EMPTY_CORPUS', `Need at least 2 training pairs to compare, got ${data.pairs.length}`, {
      context: { stage: 'compare' },
    });
  }
  const templates = opts.templates ?? [...DEFAULT_TEMPLATES];
  const recipe: Record<string, unknown> = { ...COMPARE_RECIPE_DEFAULTS, ...opts.train };
  const batch = Math.min(Number(recipe['batchSize']), data.pairs.length);
  const stepsPerEpoch = Math.floor(data.pairs.length / batch);
  const epochs = opts.steps === null ? Number(recipe['epochs']) : Math.ceil(opts.steps / stepsPerEpoch);
  const steps = opts.steps ?? epochs * stepsPerEpoch;
  const seeds = Array.from({ length: opts.seeds }, (_, i) => i + opts.firstSeed);
  // Each method's options are checked before anything trains (a bad recipe is one line, not a late failure).
  const resolvedRecipes = new Map(
    opts.methods.map((method) => [
      method,
      recipePrint(resolveTrainOptions({ ...methodRecipe(recipe, method), pairs: data.pairs, out }), method),
    ]),
  );
  mkdirSync(out, { recursive: true });
  // One comparison at a time in a directory: a second would retrain the run the first is training.
  const release = acquireLock(out, { subject: 'Comparison', code: 'ERR_COMPARE_LOCKED' });
  try {
    // The mark first: a kill from here on leaves a directory a rerun recognises.
    writeFileSync(
      join(out, COMPARE_MARKER),
      'altforge compare: a rerun into this directory continues the comparison\n',
    );
    mkdirSync(join(out, 'runs'), { recursive: true });
    const runs: CompareRun[] = [];
    const detection: CompareJson['detection'] = [];
    const curves: CompareJson['curves'] = [];
    const total = opts.noiseRates.length * seeds.length * opts.methods.length;
    const { onProgress: _p, signal: _s, ...trainShown } = recipe;
    const evalPrint = configHash({
      benchmarks: data.benchmarks.map((b) => [b.name, imageCount(b), b.captions.flat().length, b.labels?.length ?? 0]),
      templates,
    });
    /** The training pairs of one rate and seed: captions shuffled as the NCR protocol does. */
    const noisyData = (rate: number, seed: number) => {
      const injected = injectNoise(
        data.pairs.map((p) => p.caption),
        rate,
        createRandom(seed, `noise:${rate}`),
        { groups: data.groups },
      );
      const noisyById = new Map(data.pairs.map((p, i) => [p.id, injected.noisy[i] as boolean]));
      const pairs = data.pairs.map((p, i) => ({ ...p, caption: injected.captions[i] as string }));
      return { pairs, noisyById, dataPrint: pairsFingerprint(pairs) };
    };
    /** The directory of one run. */
    const runDirOf = (rate: number, seed: number, method: string) =>
      join(out, 'runs', `rate-${rate}-${method}-seed-${seed}`);
    /**
     * A run's directory and the record an earlier invocation finished there, if any; `mismatch`
     * when that run was trained on other data or with another recipe.
     */
    const earlierRun = (rate: number, seed: number, method: 'vanilla' | 'nlip', dataPrint: string) => {
      const runDir = runDirOf(rate, seed, method);
      const trainPrint = configHash({
        pairs: dataPrint,
        recipe: resolvedRecipes.get(method),
        epochs,
        steps,
        seed,
        method,
      });
      let earlier = readRunRecord(runDir);
      // What invocations before the resolved recipe was hashed wrote: the recipe as it was given.
      const legacyPrint = configHash({ pairs: dataPrint, recipe: trainShown, epochs, steps, seed, method });
      if (earlier !== null && earlier.train === legacyPrint && legacyPrint !== trainPrint) {
        // The same run under its old print: recorded again under the new one, so that a later
        // invocation spelling the recipe another way (defaults given or left out) still finds it.
        earlier = { ...earlier, train: trainPrint };
        writeAtomic(join(runDir, COMPARE_RUN_FILE), JSON.stringify(earlier, null, 1));
      }
      return { runDir, trainPrint, earlier, mismatch: earlier !== null && earlier.train !== trainPrint };
    };
    // Every run is checked before any trains: a mismatch found after an hour of new runs would waste it.
    // Only a rate and seed with a finished run can mismatch, so only those are injected here.
    const mismatched: string[] = [];
    for (const rate of opts.noiseRates) {
      for (const seed of seeds) {
        if (!opts.methods.some((m) => existsSync(join(runDirOf(rate, seed, m), COMPARE_RUN_FILE)))) continue;
        const { dataPrint } = noisyData(rate, seed);
        for (const method of opts.methods) {
          const { runDir, mismatch } = earlierRun(rate, seed, method, dataPrint);
          if (mismatch) mismatched.push(runDir);
        }
      }
    }
    if (mismatched.length === 1) {
      throw new UsageError(
        'ERR_COMPARE_MISMATCH',
        `'${mismatched[0]}' holds a run trained on other data or with another recipe: choose another --out, or remove it`,
        { context: { stage: 'compare', path: mismatched[0] } },
      );
    }
    if (mismatched.length > 1) {
      const names = mismatched.map((d) => basename(d));
      throw new UsageError(
        'ERR_COMPARE_MISMATCH',
        `${mismatched.length} runs in '${join(out, 'runs')}' were trained on other data or with another recipe ` +
          `(${names.slice(0, 4).join(', ')}${names.length > 4 ? ', ...' : ''}): choose another --out, or remove them`,
        { context: { stage: 'compare', path: join(out, 'runs') } },
      );
    }
    let index = 0;
    let reusedRuns = 0;
    for (const rate of opts.noiseRates) {
      for (const seed of seeds) {
        const { pairs, noisyById, dataPrint } = noisyData(rate, seed);
        for (const method of opts.methods) {
          if (opts.signal?.aborted) {
            throw interrupted();
          }
          const { runDir, trainPrint, earlier } = earlierRun(rate, seed, method, dataPrint);
          const progress = (phase: CompareProgress['phase'], done: number, t: number, loss?: number) =>
            opts.onProgress?.({
              phase,
              run: index,
              runs: total,
              noiseRate: rate,
              method,
              seed,
              done,
              total: t,
              ...(loss === undefined ? {} : { loss }),
            });
          const runDetection: CompareJson['detection'] = [];
          let run: CompareRun;
          if (earlier !== null && earlier.eval === evalPrint) {
            run = { ...earlier.run, checkpoint: runDir };
            runDetection.push(...earlier.detection);
            reusedRuns++;
            progress('reused', 1, 1);
          } else {
            let trainSeconds: number;
            let step: number;
            let noiseSignal: CompareRun['noiseSignal'];
            if (earlier !== null) {
              // Trained by an earlier invocation, evaluated on other benchmarks or templates: only evaluate.
              ({ trainSeconds, steps: step, noiseSignal } = earlier.run);
              runDetection.push(...earlier.detection);
            } else {
              // Nothing finished here: whatever an interrupted invocation left is started over.
              rmSync(runDir, { recursive: true, force: true });
              const onNoise = (e: NoiseEpoch) => {
                if (rate === 0) return;
                const positive = e.ids.map((id) => noisyById.get(id) === true);
                const pr = precisionRecall(e.noiseProb, positive, 0.5);
                const found = {
                  noiseRate: rate,
                  seed,
                  epoch: e.epoch,
                  step: e.step,
                  // The noise probability's order, from the log of its complement: pairs whose noise
                  // probability rounds to 1 keep the order of their posteriors.
                  auc: rocAuc(
                    Float64Array.from(e.logCleanProb, (c) => -c),
                    positive,
                  ),
                  scoreAuc: rocAuc(e.scores, positive),
                  ...pr,
                  acted: e.acted,
                };
                runDetection.push(found);
                opts.onProgress?.({
                  phase: 'noise',
                  run: index,
                  runs: total,
                  noiseRate: rate,
                  method,
                  seed,
                  done: e.epoch,
                  total: epochs,
                  detection: found,
                });
              };
              const trainStarted = Date.now();
              const trained = await runTrain({
                ...methodRecipe(recipe, method),
                pairs,
                out: runDir,
                seed,
                epochs,
                maxSteps: steps,
                checkpointEvery: Math.max(steps, 1),
                backend: opts.backend,
                onProgress: (p) => {
                  if (p.phase === 'train') progress('train', p.done, steps, p.loss);
                },
                ...(method === 'nlip' ? { onNoise } : {}),
                ...(opts.signal ? { signal: opts.signal } : {}),
              });
              if (trained.stoppedBy === 'signal') {
                // A run cut short is not a result: no record, so a rerun trains it again.
                throw interrupted();
              }
              trainSeconds = (Date.now() - trainStarted) / 1000;
              step = trained.step;
              noiseSignal = trained.noiseSignal;
            }
            progress('eval', 0, data.benchmarks.length);
            const encoder = await loadEncoder(join(runDir, CHECKPOINT_FILE), { backend: opts.backend });
            const metrics: Record<string, number> = {};
            try {
              for (const b of data.benchmarks) {
                for (const m of await evaluateBenchmark(encoder, b, { templates })) {
                  metrics[`${m.benchmark}/${m.task}/${m.metric}`] = m.value;
                }
              }
            } finally {
              encoder.dispose();
            }
            run = {
              noiseRate: rate,
              method,
              seed,
              checkpoint: runDir,
              metrics,
              steps: step,
              trainSeconds,
              ...(noiseSignal === undefined ? {} : { noiseSignal }),
            };
            const { checkpoint: _c, ...stored } = run;
            const record: RunRecord = {
              version: 1,
              train: trainPrint,
              eval: evalPrint,
              run: stored,
              detection: runDetection,
            };
            writeAtomic(join(runDir, COMPARE_RUN_FILE), JSON.stringify(record, null, 1));
          }
          for (const r of readMetrics(join(runDir, METRICS_FILE))) {
            if (r.kind === 'step' && typeof r['loss'] === 'number') {
              curves.push({ noiseRate: rate, method, seed, step: r.step, loss: r['loss'] });
            }
          }
          detection.push(...runDetection);
          runs.push(run);
          index++;
        }
      }
    }

    const summary: CompareJson['summary'] = [];
    const metricNames = [...new Set(runs.flatMap((r) => Object.keys(r.metrics)))];
    for (const rate of opts.noiseRates) {
      for (const method of opts.methods) {
        for (const metric of metricNames) {
          const values = runs
            .filter((r) => r.noiseRate === rate && r.method === method && r.metrics[metric] !== undefined)
            .map((r) => r.metrics[metric] as number);
          if (values.length > 0)
            summary.push({ noiseRate: rate, method, metric, ...meanAndSpread(values), n: values.length });
        }
      }
    }
    const result: CompareJson = {
      version: 1,
      setting: data.setting,
      description: data.description,
      noiseRates: opts.noiseRates,
      seeds,
      steps,
      trainPairs: data.pairs.length,
      train: { ...trainShown, epochs },
      runs,
      summary,
      detection,
      curves,
      plots: [],
      createdAt: new Date().toISOString(),
    };
    result.plots = await renderPlots(result, join(out, 'plots'));
    const jsonPath = join(out, 'compare.json');
    const mdPath = join(out, 'compare.md');
    writeAtomic(jsonPath, JSON.stringify(result, null, 1));
    writeAtomic(mdPath, compareMarkdown(result));
    return { ...result, out, reusedRuns, json: jsonPath, markdown: mdPath, durationMs: Date.now() - started };
  } finally {
    release();
  }
}
