/**
 * Options of `runEval` and `runCompare`: interfaces with TSDoc and `@default`, and the zod schemas
 * that validate them once at the entry.
 */
import { z } from 'zod';
import { UsageError } from '../corpus/errors.ts';
import { parseOptions } from '../corpus/options.ts';
import { BACKEND_CHOICES, type BackendChoice } from '../train/backend-names.ts';

/** Progress of an evaluation, for a progress bar. */
export interface EvalProgress {
  /** The benchmark being evaluated. */
  benchmark: string;
  /** Its images embedded so far, and how many it has. */
  done: number;
  total: number;
}

/** Options of `runEval`. */
export interface EvalOptions {
  /** A train run directory, or its `checkpoint.ckpt`. */
  checkpoint: string;
  /** Names of benchmarks registered in the benchmark registry (`altforge bench add`). */
  benchmark: string[];
  /** The registry. @default defaultRegistryPath() */
  benchDb?: string;
  /** SQLite file of the `runs` and `results` tables. @default '<benchDb dir>/results.sqlite' */
  resultsDb?: string;
  /** Zero-shot classification prompt templates (`{}` is the class name). @default DEFAULT_TEMPLATES */
  templates?: string[];
  /** Compute backend. @default 'auto' */
  backend?: BackendChoice;
  /** Images or texts embedded at once. @default 256 */
  batchSize?: number;
  /** Evaluate on at most this many images of each benchmark (the first by image id); null: all. @default null */
  limit?: number | null;
  /** Called as each benchmark's images are embedded. */
  onProgress?: (progress: EvalProgress) => void;
  /** Aborting it stops between batches of images; nothing of the run is stored. */
  signal?: AbortSignal;
}

const evalSchema = z.strictObject({
  checkpoint: z.string().min(1),
  benchmark: z.array(z.string().min(1)).min(1),
  benchDb: z.string().min(1).optional(),
  resultsDb: z.string().min(1).optional(),
  templates: z
    .array(z.string().includes('{}', { message: "a template must contain '{}'" }))
    .min(1)
    .optional(),
  backend: z.enum(BACKEND_CHOICES).default('auto'),
  batchSize: z.number().int().min(1).max(65_536).default(256),
  limit: z.number().int().positive().nullable().default(null),
  onProgress: z.custom<(p: EvalProgress) => void>((v) => typeof v === 'function').optional(),
  signal: z.custom<AbortSignal>((v) => v instanceof AbortSignal).optional(),
});

export type ResolvedEvalOptions = z.output<typeof evalSchema>;

/** Validates eval options once. */
export function resolveEvalOptions(options: EvalOptions): ResolvedEvalOptions {
  const opts = parseOptions(evalSchema, options, 'eval');
  refuseDuplicateBenchmarks(opts.benchmark, 'eval');
  return opts;
}

/**
 * Refuses a benchmark named twice, before any work: its results would be stored twice under one
 * (run, benchmark, task, metric) key, which the results table refuses once the work is done.
 */
export function refuseDuplicateBenchmarks(names: readonly string[], stage: string): void {
  const twice = names.find((name, i) => names.indexOf(name) !== i);
  if (twice !== undefined) {
    throw new UsageError(
      'ERR_DUPLICATE_BENCHMARK',
      `Option '${stage}.benchmark': benchmark '${twice}' is given twice`,
      {
        context: { stage, option: 'benchmark' },
      },
    );
  }
}
