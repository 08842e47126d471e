/**
 * The eval stage, loaded when the demo reaches it: the demo imports it lazily so that the stages
 * before it (and the crawl-only demo) run without loading it, and so that a build without the eval
 * stage still runs the rest of the demo (the result then says why eval was skipped).
 */
import type { EvalMetric, runEval } from '../eval/index.ts';

/** One metric of an evaluation. */
export type DemoEvalMetric = EvalMetric;

/** The part of the eval stage the demo calls. */
export interface EvalStage {
  runEval: typeof runEval;
}

/** The eval stage's public API, or null when it is not installed. */
export async function loadEval(): Promise<EvalStage | null> {
  // A variable specifier: resolved at run time only, so a missing stage is a null, not a load failure of the demo.
  const specifier = '../eval/index.ts';
  try {
    return (await import(specifier)) as EvalStage;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ERR_MODULE_NOT_FOUND') return null;
    throw err;
  }
}
