import { defineCommand } from 'citty';
import { UsageError } from '../corpus/errors.ts';
import { runExport, type ExportOptions, type ExportResult } from '../filter/index.ts';
import { cittyArgs, parseFlags, type FlagSpecs } from './_args.ts';
import { createProgress } from './_progress.ts';
import { interruptSignal, setExitCode } from './_run.ts';

const flags = {
  corpus: { type: 'list', description: 'Filtered source corpus (read only)', valueHint: 'DIR' },
  out: { type: 'string', description: 'New corpus directory for the kept pairs', valueHint: 'DIR', alias: 'o' },
  shardSize: { type: 'integer', description: 'Samples per WebDataset shard', default: 10000, valueHint: 'N' },
  includeDuplicates: { type: 'boolean', description: 'Also export pairs that dedup marked as test-set duplicates' },
  json: { type: 'boolean', description: 'Print the summary as JSON on stdout' },
  progress: { type: 'boolean', description: 'Show a progress bar on a terminal', default: true },
} satisfies FlagSpecs;

export const exportCommand = defineCommand({
  meta: {
    name: 'export',
    description: 'Write the kept pairs of filtered corpora into new WebDataset shards. Rerun to continue after a kill.',
  },
  args: cittyArgs(flags),
  async run({ rawArgs }) {
    const { values } = parseFlags(rawArgs, flags);
    const {
      json,
      progress: showProgress,
      ...rest
    } = values as Record<string, unknown> & {
      json?: boolean;
      progress?: boolean;
    };
    if (rest['corpus'] === undefined) throw new UsageError('ERR_USAGE', 'Missing --corpus DIR: the filtered corpus');
    if (rest['out'] === undefined) throw new UsageError('ERR_USAGE', 'Missing --out DIR: the corpus to write');
    const bar = createProgress(showProgress !== false && json !== true);
    let result: ExportResult;
    try {
      result = await runExport({
        ...rest,
        onProgress: (p) => bar.update('export', p.done, p.total, p.done, 0),
        signal: interruptSignal(),
      } as ExportOptions);
    } finally {
      bar.stop();
    }
    if (json) process.stdout.write(JSON.stringify(result) + '\n');
    else {
      process.stderr.write(
        `export${result.interrupted ? ' interrupted' : ''}: ${result.kept} kept pairs, ${result.written} written now` +
          `${result.missing ? `, ${result.missing} missing from the source shards` : ''}; ${result.shards} shards -> ${result.out}\n`,
      );
    }
    if (result.interrupted) setExitCode(130);
  },
});
