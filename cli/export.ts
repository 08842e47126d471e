import { defineCommand } from 'citty';
import { runExport, type ExportOptions, type ExportResult } from '../filter/index.ts';
import { cittyArgs, type FlagSpecs } from './_args.ts';
import { runStageCommand } from './_run.ts';

export const flags = {
  corpus: { type: 'list', description: 'Filtered source corpus (read only)', valueHint: 'DIR' },
  out: {
    type: 'string',
    description: 'Corpus directory for the kept pairs: new, or an earlier export to bring up to date',
    valueHint: 'DIR',
    alias: 'o',
  },
  shardSize: { type: 'integer', description: 'Samples per WebDataset shard', default: 10000, valueHint: 'N' },
  includeDuplicates: { type: 'boolean', description: 'Also export pairs that dedup marked as test-set duplicates' },
  json: { type: 'boolean', description: 'Print the summary as JSON on stdout' },
  progress: { type: 'boolean', description: 'Show a progress bar on a terminal', default: true },
} satisfies FlagSpecs;

export const exportCommand = defineCommand({
  meta: {
    name: 'export',
    description:
      'Write the kept pairs of filtered corpora into new WebDataset shards. Rerun to continue after a kill, or after refiltering to bring the export up to date (pairs no longer kept are removed).',
  },
  args: cittyArgs(flags),
  async run({ rawArgs }) {
    await runStageCommand({
      rawArgs,
      flags,
      required: {
        corpus: 'Missing --corpus DIR: the filtered corpus',
        out: 'Missing --out DIR: the corpus to write',
      },
      run: (options, hooks) =>
        runExport({
          ...options,
          onProgress: hooks.onProgress,
          signal: hooks.signal,
        } as ExportOptions),
      summarize: (result: ExportResult) =>
        `export${result.interrupted ? ' interrupted' : ''}: ${result.kept} kept pairs, ${result.written} written now` +
        `${result.removed ? `, ${result.removed} no longer kept removed` : ''}` +
        `${result.missing ? `, ${result.missing} missing from the source shards` : ''}; ${result.shards} shards -> ${result.out}`,
      interrupted: (result) => result.interrupted,
    });
  },
});
