import { defineCommand } from 'citty';
import { RULES, runFilter, type FilterOptions, type FilterResult } from '../filter/index.ts';
import { cittyArgs, type FlagSpecs } from './_args.ts';
import { runStageCommand } from './_run.ts';

export const flags = {
  corpus: {
    type: 'list',
    description: 'Corpus directory; several are counted together as one corpus',
    valueHint: 'DIR',
  },
  preset: {
    type: 'string',
    description: "Rule set: ALIGN's, or DataComp's basic filter",
    default: 'align',
    choices: ['align', 'datacomp-basic'],
    valueHint: 'NAME',
  },
  minSide: {
    type: 'integer',
    description: 'Shorter side of the original image must exceed this',
    default: 200,
    valueHint: 'PX',
  },
  maxAspect: {
    type: 'number',
    description: 'Aspect ratio (long/short) must stay below this',
    default: 3,
    valueHint: 'R',
  },
  inclusiveBounds: { type: 'boolean', description: 'Make --min-side and --max-aspect inclusive (DataComp)' },
  minWords: { type: 'integer', description: 'Fewest unigrams in a caption', default: 3, valueHint: 'N' },
  maxWords: { type: 'integer', description: 'Most unigrams in a caption (0: no limit)', default: 20, valueHint: 'N' },
  minChars: { type: 'integer', description: 'Fewest characters in a caption', default: 0, valueHint: 'N' },
  maxImagesPerCaption: {
    type: 'integer',
    description: 'Drop a caption shared by more images than this (0: off)',
    default: 10,
    valueHint: 'N',
  },
  maxCaptionsPerImage: {
    type: 'integer',
    description: 'Drop an image with more distinct captions than this (0: off)',
    default: 1000,
    valueHint: 'N',
  },
  vocabSize: {
    type: 'integer',
    description: 'Vocabulary: the N most frequent unigrams and bigrams (0: rare-token rule off)',
    default: 100000000,
    valueHint: 'N',
  },
  vocabMinCount: { type: 'integer', description: 'A token seen fewer times is rare', default: 1, valueHint: 'N' },
  maxNoiseProb: {
    type: 'number',
    description: 'Drop pairs whose noise probability exceeds P (needs altforge score)',
    valueHint: 'P',
  },
  nsfw: {
    type: 'string',
    description: 'Pornography classifier',
    default: 'nsfwjs',
    choices: ['nsfwjs', 'none'],
    valueHint: 'NAME',
  },
  nsfwThreshold: {
    type: 'number',
    description: 'Drop images whose P(porn)+P(hentai) exceeds this',
    default: 0.5,
    valueHint: 'P',
  },
  skipRule: { type: 'list', description: `Leave a rule out: ${RULES.join(', ')}`, valueHint: 'RULE' },
  dryRun: { type: 'boolean', description: 'Print the breakdown, write nothing' },
  examples: { type: 'integer', description: 'Examples shown per rule', default: 5, valueHint: 'N' },
  json: { type: 'boolean', description: 'Print the report as JSON on stdout' },
  progress: { type: 'boolean', description: 'Show a progress bar on a terminal', default: true },
} satisfies FlagSpecs;

const pct = (n: number, d: number) => (d > 0 ? `${((100 * n) / d).toFixed(1)}%` : '-');

/** The human report: one row per rule, then examples per reason. */
export function formatFilterReport(r: FilterResult): string {
  const lines: string[] = [];
  const head = r.dryRun ? 'filter (dry run, nothing written)' : 'filter';
  lines.push(
    `${head}: ${r.pairs} stored pairs in ${r.corpora.length} corpus dir(s), preset ${r.preset}: ` +
      `kept ${r.kept} (${pct(r.kept, r.pairs)}), dropped ${r.dropped}` +
      (r.duplicates > 0 ? `, ${r.duplicates} test-set duplicates left out` : ''),
  );
  if (r.vocabulary) {
    lines.push(
      `vocabulary: ${r.vocabulary.size} of ${r.vocabulary.distinctTokens} distinct unigrams+bigrams (each seen >= ${r.vocabulary.cutoffCount} times)`,
    );
  }
  lines.push('');
  const rows = [
    ['rule', 'status', 'threshold', 'dropped', 'failing'],
    ...r.rules.map((x) => [
      x.rule,
      x.status,
      x.threshold,
      x.status === 'applied' ? `${x.dropped} (${pct(x.dropped, r.pairs)})` : '-',
      x.status === 'applied' ? String(x.failing) : '-',
    ]),
  ];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
  for (const row of rows)
    lines.push(
      row
        .map((cell, i) => cell.padEnd(widths[i]!))
        .join('  ')
        .trimEnd(),
    );
  for (const x of r.rules) if (x.note) lines.push(`note: ${x.rule} ${x.status}: ${x.note}`);
  for (const [reason, list] of Object.entries(r.examples)) {
    if (!list || list.length === 0) continue;
    lines.push('', `${reason}:`);
    for (const ex of list) {
      const caption = ex.caption.length > 70 ? ex.caption.slice(0, 67) + '...' : ex.caption;
      lines.push(`  ${JSON.stringify(caption)}  ${ex.detail}  ${ex.url}`);
    }
  }
  return lines.join('\n');
}

export const filterCommand = defineCommand({
  meta: {
    name: 'filter',
    description:
      "Apply ALIGN's frequency filter (or DataComp's basic one): record each rejected pair's reason in the manifest (view filter_decisions), delete nothing. Rerun with other thresholds to recompute.",
  },
  args: cittyArgs(flags),
  async run({ rawArgs }) {
    await runStageCommand({
      rawArgs,
      flags,
      required: { corpus: 'Missing --corpus DIR: the corpus to filter' },
      run: ({ skipRule, ...options }, hooks) =>
        runFilter({
          ...options,
          ...(skipRule ? { skipRules: skipRule } : {}),
          onProgress: hooks.onProgress,
          signal: hooks.signal,
        } as FilterOptions),
      report: (result) => (result.interrupted ? '' : formatFilterReport(result)),
      summarize: (result) =>
        result.interrupted ? 'filter interrupted: nothing written, the previous decisions are intact' : '',
      interrupted: (result) => result.interrupted,
    });
  },
});
