import { defineCommand } from 'citty';
import type { EvalMetric, EvalOptions, EvalResult } from '../eval/index.ts';
import { backendFlag, cittyArgs, type FlagSpecs } from './_args.ts';
import { runStageCommand } from './_run.ts';

export const flags = {
  checkpoint: {
    type: 'string',
    description: 'Checkpoint file, or a run directory of altforge train',
    valueHint: 'PATH',
  },
  benchmark: {
    type: 'list',
    description: 'Registered benchmark to evaluate on (altforge bench list)',
    valueHint: 'NAME',
    alias: 'b',
  },
  benchDb: {
    type: 'string',
    description: 'Benchmark registry (default: $XDG_DATA_HOME/altforge/benchmarks.sqlite)',
    valueHint: 'FILE',
  },
  resultsDb: {
    type: 'string',
    description: 'Results database (default: results.sqlite beside the registry)',
    valueHint: 'FILE',
  },
  template: {
    type: 'list',
    description: "Classification prompt template, '{}' is the class name (default: 'a photo of a {}.' and four more)",
    valueHint: 'TEXT',
  },
  limit: { type: 'integer', description: 'Evaluate on at most N images of each benchmark', valueHint: 'N' },
  backend: backendFlag(),
  batchSize: { type: 'integer', description: 'Images or texts embedded at once', default: 256, valueHint: 'N' },
  json: { type: 'boolean', description: 'Print the result as JSON on stdout' },
  progress: { type: 'boolean', description: 'Show a progress bar on a terminal', default: true },
} satisfies FlagSpecs;

const TASKS: Record<EvalMetric['task'], string> = {
  image_to_text: 'image→text',
  text_to_image: 'text→image',
  classification: 'classification',
};

/** The metrics as a plain-text table: one row per benchmark and task, one column per metric. */
export function formatEvalTable(metrics: readonly EvalMetric[]): string {
  const columns = ['R@1', 'R@5', 'R@10', 'mean_rank', 'median_rank', 'top1', 'top5'].filter((c) =>
    metrics.some((m) => m.metric === c),
  );
  const rows = new Map<string, Map<string, number>>();
  for (const m of metrics) {
    const key = `${m.benchmark}\u0000${TASKS[m.task]}`;
    if (!rows.has(key)) rows.set(key, new Map());
    rows.get(key)?.set(m.metric, m.value);
  }
  const header = ['benchmark', 'task', ...columns];
  const body = [...rows].map(([key, values]) => [
    ...key.split('\u0000'),
    ...columns.map((c) => (values.has(c) ? (values.get(c) as number).toFixed(c.includes('rank') ? 1 : 2) : '')),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i < 2 ? c.padEnd(widths[i] as number) : c.padStart(widths[i] as number))).join('  ');
  return [line(header), ...body.map(line)].join('\n');
}

/** One line that says what the evaluation did. */
export function summarizeEval(result: EvalResult): string {
  const benchmarks = new Set(result.metrics.map((m) => m.benchmark)).size;
  return (
    `eval: ${benchmarks} benchmark(s), ${result.metrics.length} metrics on ${result.backend.backend}; ` +
    `${(result.durationMs / 1000).toFixed(1)} s -> ${result.resultsDb} (run ${result.runId}, config ${result.configHash})`
  );
}

export const evalCommand = defineCommand({
  meta: {
    name: 'eval',
    description:
      'Zero-shot retrieval (R@1/5/10, mean and median rank, both ways) and classification (top-1/top-5) of a trained checkpoint on registered benchmarks; results go to a SQLite results database.',
  },
  args: cittyArgs(flags),
  async run({ rawArgs }) {
    // The eval stage (TensorFlow.js) is loaded when the command runs, so other commands start fast.
    const { runEval } = await import('../eval/index.ts');
    await runStageCommand({
      rawArgs,
      flags,
      required: {
        checkpoint: 'Missing --checkpoint PATH: a checkpoint of altforge train',
        benchmark: 'Missing --benchmark NAME: a registered test set (altforge bench list)',
      },
      run: ({ template, ...options }, hooks) =>
        runEval({
          ...options,
          ...(template ? { templates: template } : {}),
          onProgress: (p) =>
            hooks.onProgress({
              phase: `eval ${p.benchmark}`,
              done: p.done,
              total: p.total,
            }),
          signal: hooks.signal,
        } as EvalOptions),
      report: (result: EvalResult) => formatEvalTable(result.metrics),
      summarize: summarizeEval,
    });
  },
});
