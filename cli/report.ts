import { defineCommand } from 'citty';
import { UsageError } from '../corpus/errors.ts';
import type { ReportOptions, ReportResult } from '../report/index.ts';
import { cittyArgs, type FlagSpecs } from './_args.ts';
import { runStageCommand } from './_run.ts';

const flags = {
  corpus: { type: 'string', description: 'Corpus directory (with manifest.sqlite)', valueHint: 'DIR' },
  runs: {
    type: 'list',
    description: 'Training run directory (altforge train --out): its loss curve',
    valueHint: 'DIR',
  },
  compare: {
    type: 'string',
    description: 'compare.json (or its directory): the comparison table and plots',
    valueHint: 'FILE',
  },
  benchDb: {
    type: 'string',
    description:
      'Benchmark registry, for the test images of dedup matches; default $XDG_DATA_HOME/altforge/benchmarks.sqlite',
    valueHint: 'FILE',
  },
  out: {
    type: 'string',
    description: 'Report directory (index.html, images/); default <corpus>/../report',
    valueHint: 'DIR',
    alias: 'o',
  },
  examples: {
    type: 'integer',
    description: 'Examples per filter reason, and dedup matches shown',
    default: 6,
    valueHint: 'N',
  },
  noiseGrid: { type: 'integer', description: 'Pairs in each half of the noise grid', default: 12, valueHint: 'N' },
  title: { type: 'string', description: 'Page title', default: 'altforge report', valueHint: 'TEXT' },
  json: { type: 'boolean', description: 'Print the result as JSON on stdout' },
} satisfies FlagSpecs;

/** The line `altforge report` prints: where the page is and which sections have data. */
export function summarizeReport(result: ReportResult): string {
  const empty = Object.entries(result.sections)
    .filter(([, has]) => !has)
    .map(([name]) => name);
  return (
    `report: ${result.html} (${result.images} images` +
    `${empty.length > 0 ? `; not run yet: ${empty.join(', ')}` : ''}); ${(result.durationMs / 1000).toFixed(1)} s`
  );
}

export const reportCommand = defineCommand({
  meta: {
    name: 'report',
    description:
      'Write a static HTML report of a corpus (statuses, sizes, filter breakdown, dedup matches, noisiest and cleanest pairs) and of training runs and a comparison: one index.html plus images/, no server needed.',
  },
  args: {
    dir: { type: 'positional', required: false, description: 'Corpus directory (same as --corpus)' },
    ...cittyArgs(flags),
  },
  async run({ rawArgs }) {
    await runStageCommand<ReportResult>({
      rawArgs,
      flags,
      maxPositionals: 1,
      run: async (values, hooks) => {
        if (values['corpus'] === undefined && hooks.positionals[0] !== undefined)
          values['corpus'] = hooks.positionals[0];
        if (values['corpus'] === undefined)
          throw new UsageError('ERR_USAGE', 'Missing --corpus DIR: the corpus to report on');
        // Loaded here: the report reads training metrics through the train stage, which loads TensorFlow.js.
        const { runReport } = await import('../report/index.ts');
        return runReport(values as unknown as ReportOptions);
      },
      summarize: summarizeReport,
    });
  },
});
