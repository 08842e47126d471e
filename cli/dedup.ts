import { defineCommand } from 'citty';
import { runDedup, type DedupOptions, type DedupResult } from '../dedup/index.ts';
import { cittyArgs, type FlagSpecs } from './_args.ts';
import { runStageCommand } from './_run.ts';

export const flags = {
  corpus: { type: 'string', description: 'Corpus directory (with manifest.sqlite)', valueHint: 'DIR' },
  against: {
    type: 'list',
    description: 'Registered benchmark to match against (see altforge bench list)',
    valueHint: 'NAME',
  },
  within: {
    type: 'boolean',
    description: 'Find near-duplicate clusters inside the corpus; one pair per cluster is kept',
  },
  benchDb: {
    type: 'string',
    description: 'Benchmark registry (SQLite); default $XDG_DATA_HOME/altforge/benchmarks.sqlite',
    valueHint: 'FILE',
  },
  maxDistance: {
    type: 'integer',
    description: 'Largest Hamming distance (of 64 bits) that nominates a candidate',
    default: 8,
    valueHint: 'D',
  },
  captions: { type: 'boolean', description: 'Flag pairs whose normalised caption is a test caption', default: true },
  minCorrelation: {
    type: 'number',
    description: 'Verification: lowest luma correlation',
    default: 0.9,
    valueHint: 'R',
  },
  maxColourDifference: {
    type: 'number',
    description: 'Verification: highest mean colour difference (0-255)',
    default: 12,
    valueHint: 'C',
  },
  maxUncoveredColour: {
    type: 'number',
    description: 'Verification: highest share (0-1) of either image in colours the other lacks',
    default: 0.03,
    valueHint: 'U',
  },
  secondPass: {
    type: 'boolean',
    description:
      "Compare each verified candidate again at full resolution with the registered image's pixels (--no-second-pass: thumbnails only)",
    default: true,
  },
  concurrency: { type: 'integer', description: 'Images fingerprinted at once', default: 4, valueHint: 'N' },
  json: { type: 'boolean', description: 'Print the result as JSON on stdout' },
  progress: { type: 'boolean', description: 'Show a progress bar on a terminal', default: true },
} satisfies FlagSpecs;

/** One line that says what dedup found. */
export function summarizeDedup(result: DedupResult): string {
  const parts = Object.entries(result.byBenchmark).map(
    ([name, m]) => `${name}: ${m.image} near-duplicates, ${m.sha256} exact, ${m.caption} caption leaks`,
  );
  if (result.within) parts.push(`within: ${result.within.duplicates} duplicates in ${result.within.clusters} clusters`);
  const unreadable =
    result.unreadable.length > 0
      ? `; ${result.unreadable.length} unreadable images: ${result.unreadable.slice(0, 5).join(', ')}${result.unreadable.length > 5 ? ', ...' : ''}`
      : '';
  const unchecked =
    result.secondPass.unavailable > 0
      ? `; ${result.secondPass.unavailable} candidates not checked at full resolution (registered images unreadable: moved since bench add?)`
      : '';
  return (
    `dedup${result.interrupted ? ' interrupted (run the same command to continue)' : ''}: ${result.pairs} pairs, ` +
    `${result.fingerprinted} fingerprinted now${result.copies > 0 ? ` (${result.copies} copies of identical bytes)` : ''}; ${parts.join('; ')}; ${result.flagged} pairs flagged (dup_of)${unreadable}${unchecked}; ` +
    `${(result.durationMs / 1000).toFixed(1)} s -> ${result.corpus}`
  );
}

export const dedupCommand = defineCommand({
  meta: {
    name: 'dedup',
    description:
      'Flag corpus pairs that are near-duplicates of registered test images (or leak their captions), and near-duplicate clusters within the corpus. Records pairs.dup_of; deletes nothing.',
  },
  args: cittyArgs(flags),
  async run({ rawArgs }) {
    await runStageCommand({
      rawArgs,
      flags,
      required: { corpus: 'Missing --corpus DIR: the corpus to dedup' },
      run: (options, hooks) =>
        runDedup({ ...options, onProgress: hooks.onProgress, signal: hooks.signal } as DedupOptions),
      summarize: (result: DedupResult) => summarizeDedup(result),
      interrupted: (result) => result.interrupted,
    });
  },
});
