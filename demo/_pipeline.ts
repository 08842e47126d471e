/**
 * The demo's stages after the crawl: register the test sets, dedup, filter, train vanilla and
 * NLIP, score noise, evaluate both, write `compare.json` and the report. Each stage is called
 * through its public `index.ts`, as a user would from the command line, and each is safe to run
 * again: a rerun of the demo continues or recomputes, and never mixes two runs.
 */
import { existsSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runDedup, registerBenchmark, type DedupResult } from '../dedup/index.ts';
import { runFilter, type FilterOptions, type FilterResult } from '../filter/index.ts';
import { runReport, type ReportResult } from '../report/index.ts';
import { oneHumpNote, runScore, runTrain, CHECKPOINT_FILE, type TrainResult } from '../train/index.ts';
import { writeDemoBenchmarks } from './_benchmarks.ts';
import { loadEval, type DemoEvalMetric } from './_eval.ts';
import { DEMO_STAGES, type DemoProgress, type DemoStage, type ResolvedDemoOptions } from './options.ts';
import type { DemoSite } from './site.ts';

/** The filter thresholds the demo uses, scaled to its size (ALIGN's are meant for a billion pairs). */
export interface DemoThresholds {
  minSide: number;
  maxAspect: number;
  minWords: number;
  maxWords: number;
  maxImagesPerCaption: number;
  vocabMinCount: number;
  nsfw: 'nsfwjs' | 'none';
}

/** One training run, as the demo reports it. */
export interface DemoRun {
  method: 'vanilla' | 'nlip';
  out: string;
  checkpoint: string;
  backend: string;
  pairs: number;
  steps: number;
  /** Steps run by this call (0 when an earlier run had finished). */
  stepsRun: number;
  lastLoss: number | null;
  pairsPerSecond: number;
  durationMs: number;
}

/** What the stages after the crawl did; a field is null when its stage was not reached. */
export interface DemoStagesResult {
  /** Filter thresholds used (printed by the CLI). */
  thresholds: DemoThresholds;
  /** The registry of the demo's test sets (`<out>/benchmarks.sqlite`) and their names. */
  benchmarks: { registry: string; heldOut: string; evaluation: string | null } | null;
  dedup: Pick<DedupResult, 'pairs' | 'flagged' | 'byBenchmark' | 'durationMs'> | null;
  filter: Pick<FilterResult, 'pairs' | 'kept' | 'dropped' | 'duplicates' | 'byReason' | 'durationMs'> | null;
  runs: { vanilla: DemoRun; nlip: DemoRun } | null;
  score: { scored: number; noisy: number; meanNoise: number; separation: number; durationMs: number } | null;
  /** Metrics of both runs on the evaluation set (`<benchmark>/<task>/<metric>`); null when eval did not run. */
  eval: { vanilla: Record<string, number>; nlip: Record<string, number> } | null;
  /** Why eval did not run, when it was asked for. */
  evalNote: string | null;
  /** `<out>/compare.json`, when written. */
  compare: string | null;
  report: ReportResult | null;
  /** Time per stage, in milliseconds. */
  timings: Partial<Record<DemoStage | 'bench', number>>;
}

/** Separation (Ashman's D) at which the demo's NLIP run acts on its noise estimate (train's default: 2). */
export const NLIP_MIN_SEPARATION = 1;

/** Vanilla epochs before NLIP's first harmonisation: a third of the run, 1 to 5. */
function nlipWarmup(epochs: number): number {
  return Math.max(1, Math.min(5, Math.floor(epochs / 3)));
}

/** The thresholds for a demo of `images` images: see the README for why each one differs from ALIGN's. */
export function demoThresholds(images: number, nsfw: 'nsfwjs' | 'none'): DemoThresholds {
  return {
    // The site serves 256–512 px images and 32 px icons: ALIGN's 200 px keeps the first, drops the icons.
    minSide: 200,
    maxAspect: 3,
    // Emoji names are short ("Cat", "Grinning face"): ALIGN's 3 words would drop most true captions.
    minWords: 1,
    maxWords: 20,
    // ALIGN's 10 is for billions of pairs; here one image in 200 sharing a caption already marks boilerplate.
    maxImagesPerCaption: Math.max(2, Math.round(images / 200)),
    // Every name is rare in a few thousand captions (2 would drop two thirds of them): the rule stays at 1 (off).
    vocabMinCount: 1,
    nsfw,
  };
}

function writeJson(path: string, value: unknown): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, JSON.stringify(value, null, 2) + '\n');
  renameSync(tmp, path);
}

function summarizeRun(method: 'vanilla' | 'nlip', r: TrainResult): DemoRun {
  return {
    method,
    out: r.out,
    checkpoint: r.checkpoint,
    backend: r.backend.backend,
    pairs: r.pairs,
    steps: r.step,
    stepsRun: r.stepsRun,
    lastLoss: r.lastLoss,
    pairsPerSecond: r.pairsPerSecond,
    durationMs: r.durationMs,
  };
}

/** Runs the stages after the crawl, up to `opts.upTo`. */
export async function runDemoStages(
  out: string,
  corpus: string,
  site: DemoSite,
  opts: ResolvedDemoOptions,
): Promise<DemoStagesResult> {
  const last = DEMO_STAGES.indexOf(opts.upTo);
  const reached = (stage: DemoStage) => DEMO_STAGES.indexOf(stage) <= last;
  const log = (line: string) => opts.onLog?.(line);
  const progress = (p: DemoProgress) => opts.onProgress?.(p);
  const signal = opts.signal ? { signal: opts.signal } : {};
  const timings: DemoStagesResult['timings'] = {};
  const timed = async <T>(stage: DemoStage | 'bench', work: () => Promise<T>): Promise<T> => {
    const t0 = Date.now();
    try {
      return await work();
    } finally {
      timings[stage] = Date.now() - t0;
    }
  };
  const thresholds = demoThresholds(opts.images, opts.nsfw);
  const result: DemoStagesResult = {
    thresholds,
    benchmarks: null,
    dedup: null,
    filter: null,
    runs: null,
    score: null,
    eval: null,
    evalNote: null,
    compare: null,
    report: null,
    timings,
  };
  if (!reached('dedup')) return result;

  // Test sets: Twitter drawings of held-out concepts (dedup finds them), Google drawings to evaluate on.
  const registry = join(out, 'benchmarks.sqlite');
  const heldOutSize = Math.min(50, Math.max(3, Math.round(opts.images * 0.02)));
  const evalSize = Math.min(200, Math.max(10, Math.round(opts.images * 0.1)));
  const sets = writeDemoBenchmarks(join(out, 'benchmarks'), site, opts.seed, {
    heldOut: heldOutSize,
    evaluation: evalSize,
  });
  log(
    `bench: ${sets.heldOut.concepts.length} Twitter drawings held out as '${sets.heldOut.name}' (dedup), ` +
      `${sets.evaluation?.concepts.length ?? 0} Google drawings of kept concepts as '${sets.evaluation?.name ?? '-'}' (eval), in ${registry}`,
  );
  await timed('bench', async () => {
    for (const set of [sets.heldOut, sets.evaluation]) {
      if (set === null) continue;
      await registerBenchmark({
        name: set.name,
        images: set.images,
        captions: set.captions,
        benchDb: registry,
        onProgress: (p) =>
          progress({ stage: 'bench', phase: set.name, done: p.done, total: p.total, ok: p.ok, failed: p.failed }),
        ...signal,
      });
    }
  });
  result.benchmarks = { registry, heldOut: sets.heldOut.name, evaluation: sets.evaluation?.name ?? null };

  const dedup = await timed('dedup', () =>
    runDedup({
      corpus,
      against: [sets.heldOut.name],
      benchDb: registry,
      onProgress: (p) =>
        progress({ stage: 'dedup', phase: p.phase, done: p.done, total: p.total, ok: p.done, failed: 0 }),
      ...signal,
    }),
  );
  result.dedup = {
    pairs: dedup.pairs,
    flagged: dedup.flagged,
    byBenchmark: dedup.byBenchmark,
    durationMs: dedup.durationMs,
  };
  const m = dedup.byBenchmark[sets.heldOut.name];
  log(
    `dedup: ${dedup.flagged} of ${dedup.pairs} pairs are duplicates of '${sets.heldOut.name}' ` +
      `(${m?.image ?? 0} images, ${m?.sha256 ?? 0} exact bytes, ${m?.caption ?? 0} leaked captions)`,
  );
  if (dedup.interrupted || !reached('filter')) return result;

  log(
    `filter thresholds (ALIGN's scaled to ${opts.images} images): shorter side > ${thresholds.minSide} px, aspect < ${thresholds.maxAspect}, ` +
      `${thresholds.minWords}–${thresholds.maxWords} words, a caption on at most ${thresholds.maxImagesPerCaption} images, ` +
      `rare-token count ${thresholds.vocabMinCount} (off), nsfw ${thresholds.nsfw === 'nsfwjs' ? 'nsfwjs > 0.5' : 'off'}`,
  );
  const filterOptions: FilterOptions = {
    corpus,
    minSide: thresholds.minSide,
    maxAspect: thresholds.maxAspect,
    minWords: thresholds.minWords,
    maxWords: thresholds.maxWords,
    maxImagesPerCaption: thresholds.maxImagesPerCaption,
    vocabMinCount: thresholds.vocabMinCount,
    nsfw: thresholds.nsfw,
    onProgress: (p) =>
      progress({ stage: 'filter', phase: p.phase, done: p.done, total: p.total ?? null, ok: p.done, failed: 0 }),
    ...signal,
  };
  const filter = await timed('filter', () => runFilter(filterOptions));
  result.filter = {
    pairs: filter.pairs,
    kept: filter.kept,
    dropped: filter.dropped,
    duplicates: filter.duplicates,
    byReason: filter.byReason,
    durationMs: filter.durationMs,
  };
  const reasons = Object.entries(filter.byReason)
    .filter(([, n]) => n > 0)
    .map(([r, n]) => `${n} ${r}`)
    .join(', ');
  log(
    `filter: ${filter.kept} of ${filter.pairs} pairs kept, ${filter.duplicates} duplicates left out; dropped: ${reasons || 'none'}`,
  );
  if (filter.interrupted || !reached('train')) return result;

  // Two runs that differ only in the loss: same seed, data order, steps.
  const runsDir = join(out, 'runs');
  mkdirSync(runsDir, { recursive: true });
  const train = async (method: 'vanilla' | 'nlip'): Promise<DemoRun> => {
    const dir = join(runsDir, method);
    const r = await timed('train', () =>
      runTrain({
        corpus: [corpus],
        out: dir,
        backend: opts.backend,
        preset: 'tiny',
        epochs: opts.epochs,
        batchSize: opts.batchSize,
        lr: 1e-3,
        lrWarmupSteps: Math.min(50, opts.epochs * 2),
        seed: opts.seed,
        resume: existsSync(join(dir, CHECKPOINT_FILE)),
        ...(method === 'nlip'
          ? {
              robust: 'nlip' as const,
              warmupEpochs: nlipWarmup(opts.epochs),
              // Measured on the 2,000-image demo: Ashman's D of the loss mixture stays at 1.3–1.9 in every
              // epoch, so the default gate of 2 never lets NLIP act and both runs come out identical.
              minSeparation: NLIP_MIN_SEPARATION,
              // The demo's alt-texts are nearly all distinct, where train's `auto` signal switches the
              // estimate off (nlip would train exactly like vanilla): the demo shows NLIP's own
              // loss-based estimate acting instead, with down-weighting only (no relabelling).
              noiseSignal: 'loss' as const,
              relabel: false,
            }
          : {}),
        onProgress: (p) =>
          progress({
            stage: `train-${method}`,
            phase: p.loss === undefined ? p.phase : `${p.phase} loss ${p.loss.toFixed(3)}`,
            done: p.done,
            total: p.total,
            ok: p.done,
            failed: 0,
          }),
        ...signal,
      }),
    );
    const run = summarizeRun(method, r);
    log(
      `train ${method}: ${run.pairs} pairs, ${run.steps} steps on ${run.backend}, last loss ${run.lastLoss?.toFixed(3) ?? '-'}, ` +
        `${run.stepsRun === 0 ? 'kept from an earlier run' : `${run.pairsPerSecond.toFixed(0)} pairs/s`} -> ${run.checkpoint}`,
    );
    if (r.stoppedBy === 'signal') throw new DemoInterrupted();
    return run;
  };
  log(
    `train: tiny preset, ${opts.epochs} epochs of batch ${opts.batchSize}, seed ${opts.seed}, vanilla then NLIP ` +
      `(warm-up ${nlipWarmup(opts.epochs)} epochs, acts when the loss mixture's separation >= ${NLIP_MIN_SEPARATION})`,
  );
  const t0 = Date.now();
  const vanilla = await train('vanilla');
  const nlip = await train('nlip');
  timings.train = Date.now() - t0;
  result.runs = { vanilla, nlip };
  if (!reached('score')) return result;

  const score = await timed('score', () =>
    runScore({
      corpus,
      checkpoint: nlip.out,
      backend: opts.backend,
      seed: opts.seed,
      onProgress: (p) =>
        progress({ stage: 'score', phase: p.phase, done: p.done, total: p.total, ok: p.done, failed: 0 }),
      ...signal,
    }),
  );
  result.score = {
    scored: score.scored,
    noisy: score.noisy,
    meanNoise: score.meanNoise,
    separation: score.separation,
    durationMs: score.durationMs,
  };
  const oneHump = oneHumpNote(score.separation);
  log(
    `score: ${score.scored} pairs given pairs.noise_prob with the NLIP model, ${score.noisy} above 0.5 ` +
      `(mean ${score.meanNoise.toFixed(3)}, separation ${score.separation.toFixed(2)}${oneHump === null ? '' : `; ${oneHump}`})`,
  );
  if (!reached('eval')) return result;

  if (sets.evaluation === null) {
    result.evalNote = 'no evaluation set (emoji-datasource-google is not installed)';
  } else {
    const evalStage = await loadEval();
    if (evalStage === null) {
      result.evalNote = 'the eval stage (eval/index.ts) is not installed';
    } else {
      const name = sets.evaluation.name;
      const metrics: Record<'vanilla' | 'nlip', Record<string, number>> = { vanilla: {}, nlip: {} };
      await timed('eval', async () => {
        for (const method of ['vanilla', 'nlip'] as const) {
          const r = await evalStage.runEval({
            checkpoint: result.runs![method].out,
            benchmark: [name],
            benchDb: registry,
            resultsDb: join(out, 'results.sqlite'),
            backend: opts.backend,
            onProgress: (p) =>
              progress({
                stage: 'eval',
                phase: `${method} ${p.benchmark}`,
                done: p.done,
                total: p.total,
                ok: p.done,
                failed: 0,
              }),
            ...signal,
          });
          for (const metric of r.metrics as DemoEvalMetric[]) {
            metrics[method][`${metric.benchmark}/${metric.task}/${metric.metric}`] = metric.value;
          }
        }
      });
      result.eval = metrics;
      const r1 = (method: 'vanilla' | 'nlip', task: string) =>
        metrics[method][`${name}/${task}/R@1`]?.toFixed(1) ?? '-';
      log(
        `eval on '${name}' (${sets.evaluation.concepts.length} Google drawings): R@1 image→text vanilla ${r1('vanilla', 'image_to_text')} % ` +
          `vs nlip ${r1('nlip', 'image_to_text')} %; text→image ${r1('vanilla', 'text_to_image')} % vs ${r1('nlip', 'text_to_image')} %`,
      );
    }
  }
  if (result.evalNote !== null) log(`eval: skipped, ${result.evalNote}`);

  // compare.json, as `altforge compare` writes it: the report's comparison section reads it.
  const comparePath = join(out, 'compare.json');
  const runs = (['vanilla', 'nlip'] as const).map((method) => ({
    noiseRate: 0,
    method,
    seed: opts.seed,
    checkpoint: result.runs![method].out,
    metrics: result.eval?.[method] ?? {},
  }));
  writeJson(comparePath, {
    version: 1,
    setting: `corpus:${corpus}`,
    note: "the demo injects no noise: noiseRate 0 is the site's own alt-text mix",
    noiseRates: [0],
    seeds: [opts.seed],
    steps: vanilla.steps,
    runs,
    summary: runs.flatMap((r) =>
      Object.entries(r.metrics).map(([metric, mean]) => ({ noiseRate: 0, method: r.method, metric, mean, spread: 0 })),
    ),
    detection: [],
    curves: [],
    plots: [],
  });
  result.compare = comparePath;
  if (!reached('report')) return result;

  const report = await timed('report', () =>
    runReport({
      corpus,
      runs: [vanilla.out, nlip.out],
      compare: comparePath,
      benchDb: registry,
      out: join(out, 'report'),
      title: 'altforge demo',
    }),
  );
  result.report = report;
  log(`report: ${report.html} (${report.images} images)`);
  return result;
}

/** Thrown inside the stages when the signal stopped a training run; runDemo turns it into `interrupted`. */
export class DemoInterrupted extends Error {
  constructor() {
    super('interrupted');
  }
}
