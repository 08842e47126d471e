/**
 * The eval stage: zero-shot retrieval (image→text, text→image) and zero-shot classification of a
 * trained checkpoint on registered benchmarks, stored in a results database; and `compare`, which
 * trains vanilla and noise-robust models on the same data with injected caption noise and reports
 * both side by side (tables and plots).
 */
import { dirname, resolve } from 'node:path';
import { AltforgeError } from '../corpus/errors.ts';
import { defaultRegistryPath, openRegistry } from '../corpus/registry.ts';
import { loadEncoder, type BackendReport } from '../train/index.ts';
import { openBenchmark } from './benchmarks.ts';
import { openResults } from './results.ts';
import { DEFAULT_TEMPLATES, evaluateBenchmark, refuseEmpty, type EvalMetric } from './zero-shot.ts';
import { resolveEvalOptions, type EvalOptions } from './_options.ts';

export type { EvalOptions, EvalProgress } from './_options.ts';
export type { EvalBenchmark, EvalMetric } from './zero-shot.ts';
export { DEFAULT_TEMPLATES, classEmbeddings, evaluateBenchmark, prompts } from './zero-shot.ts';
export {
  classificationMetrics,
  meanAndSpread,
  precisionRecall,
  retrievalMetrics,
  rocAuc,
  similarity,
  type ClassificationScores,
  type RetrievalScores,
} from './metrics.ts';
export { injectNoise, noisyCount, type InjectedNoise } from './noise-injection.ts';
export { RESULTS_MIGRATIONS, configHash, openResults, type ResultsDb } from './results.ts';
export { COMPARE_RUN_FILE, runCompare, type CompareOptions, type CompareResult, type CompareJson } from './compare.ts';

/** What an evaluation produced. */
export interface EvalResult {
  /** The checkpoint file evaluated. */
  checkpoint: string;
  /** Row id in the results database's `runs` table. */
  runId: number;
  /** The results database written. */
  resultsDb: string;
  /** Config hash stored with every result. */
  configHash: string;
  backend: BackendReport;
  metrics: EvalMetric[];
  durationMs: number;
}

/**
 * Evaluates a checkpoint on registered benchmarks: retrieval both ways where images have captions
 * (several captions per image: any of them is a hit), classification where they have labels and
 * the set class names (class embedding = mean over the prompt templates, re-normalised). Stores a
 * `runs` row and one `results` row per metric.
 */
export async function runEval(options: EvalOptions): Promise<EvalResult> {
  const started = Date.now();
  const opts = resolveEvalOptions(options);
  const benchDb = resolve(opts.benchDb ?? defaultRegistryPath());
  const resultsPath = resolve(opts.resultsDb ?? `${dirname(benchDb)}/results.sqlite`);
  const templates = opts.templates ?? [...DEFAULT_TEMPLATES];
  const registry = openRegistry(benchDb);
  try {
    // Open every benchmark first: an unknown or empty one is refused before any work or write. The
    // images are read a batch at a time as they are embedded, so only their embeddings stay in memory.
    const benchmarks = opts.benchmark.map((name) => openBenchmark(registry, name, opts.limit ?? undefined));
    for (const benchmark of benchmarks) refuseEmpty(benchmark);
    const encoder = await loadEncoder(opts.checkpoint, { backend: opts.backend });
    const results = openResults(resultsPath);
    try {
      const config = {
        benchmarks: opts.benchmark,
        templates,
        limit: opts.limit,
        benchDb,
      };
      const runId = results.startRun({
        checkpoint: encoder.checkpoint,
        checkpointStep: encoder.step,
        benchmarks: opts.benchmark,
        config,
        backend: encoder.backend.backend,
      });
      const metrics: EvalMetric[] = [];
      try {
        for (const benchmark of benchmarks) {
          metrics.push(
            ...(await evaluateBenchmark(encoder, benchmark, {
              templates,
              batchSize: opts.batchSize,
              onImages: (done, total) => opts.onProgress?.({ benchmark: benchmark.name, done, total }),
              ...(opts.signal ? { signal: opts.signal } : {}),
            })),
          );
        }
        results.finishRun(runId, encoder.checkpoint, metrics);
      } catch (err) {
        results.failRun(
          runId,
          err instanceof AltforgeError && err.code === 'ERR_INTERRUPTED' ? 'interrupted' : 'failed',
        );
        throw err;
      }
      const hash = (
        results.db.prepare('SELECT config_hash FROM runs WHERE id = ?').get(runId) as { config_hash: string }
      ).config_hash;
      return {
        checkpoint: encoder.checkpoint,
        runId,
        resultsDb: resultsPath,
        configHash: hash,
        backend: encoder.backend,
        metrics,
        durationMs: Date.now() - started,
      };
    } finally {
      results.close();
      encoder.dispose();
    }
  } finally {
    registry.close();
  }
}
