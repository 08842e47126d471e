import { defineCommand } from 'citty';
import { EMOJI_VENDORS, type EmojiVendor } from '../corpus/emoji.ts';
import { UsageError } from '../corpus/errors.ts';
import type { CompareOptions, CompareResult } from '../eval/index.ts';
import { DEFAULT_MIN_SEPARATION, NOISE_SIGNAL_OFF_REASON, nlipEstimateOff } from '../train/options.ts';
import { backendFlag, cittyArgs, parseFlags, type FlagSpecs } from './_args.ts';
import { createProgress } from './_progress.ts';
import { interruptSignal } from './_run.ts';
import { NLIP_SIGNAL_FLAGS, parseNeighbours } from './train.ts';

export const flags = {
  setting: {
    type: 'string',
    description: 'Built-in offline setting',
    valueHint: 'NAME',
    choices: ['fashion-mnist', 'emoji'],
  },
  // No defaults here: the emoji setting's own (google,apple -> twitter); refused with another setting.
  trainVendors: {
    type: 'string',
    description: `Emoji setting: vendors whose drawings are trained on, comma-separated, each drawing every concept once (default: google,apple): ${EMOJI_VENDORS.join(', ')}`,
    valueHint: 'V,V',
  },
  testVendor: {
    type: 'string',
    description:
      'Emoji setting: the vendor whose drawings are retrieved by name, not a training one (default: twitter)',
    valueHint: 'V',
    choices: [...EMOJI_VENDORS],
  },
  corpus: {
    type: 'string',
    description: 'Corpus directory to train on (instead of --setting)',
    valueHint: 'DIR',
    alias: 'c',
  },
  benchmark: {
    type: 'list',
    description: 'Registered benchmark to evaluate on (with --corpus)',
    valueHint: 'NAME',
    alias: 'b',
  },
  benchDb: { type: 'string', description: 'Benchmark registry', valueHint: 'FILE' },
  out: {
    type: 'string',
    description:
      'Output directory: compare.json, compare.md, plots/, runs/ (a rerun into it keeps the runs it finished: add seeds or rates, or go on after an interruption)',
    valueHint: 'DIR',
    alias: 'o',
  },
  noiseRates: {
    type: 'string',
    description: 'Fractions of captions shuffled, comma-separated',
    default: '0,0.2,0.5',
    valueHint: 'R,R',
  },
  seeds: {
    type: 'integer',
    description: 'Seeds per rate and method (--first-seed .. --first-seed + N - 1)',
    default: 2,
    valueHint: 'N',
  },
  firstSeed: {
    type: 'integer',
    description: 'First seed',
    default: 1,
    valueHint: 'S',
  },
  methods: {
    type: 'string',
    description:
      "Methods to train, comma-separated (one alone reports no gap; vanilla's runs take the recipe without nlip's parts, so the same --out can take the other method's runs later)",
    default: 'vanilla,nlip',
    valueHint: 'M,M',
  },
  steps: {
    type: 'integer',
    description: 'Training steps of every run (default: --epochs full epochs)',
    valueHint: 'N',
  },
  epochs: {
    type: 'integer',
    description: 'Epochs of every run when --steps is not given',
    default: 10,
    valueHint: 'N',
  },
  batchSize: { type: 'integer', description: 'Pairs per step', default: 128, valueHint: 'N' },
  lr: { type: 'number', description: 'Peak learning rate', default: 0.0005, valueHint: 'LR' },
  warmupEpochs: {
    type: 'integer',
    description: 'Vanilla epochs before the first noise harmonisation (nlip)',
    default: 2,
    valueHint: 'N',
  },
  robustMode: {
    type: 'string',
    description: 'How nlip uses the noise probability',
    default: 'soft',
    valueHint: 'MODE',
    choices: ['soft', 'weight'],
  },
  consistencyWeight: {
    type: 'number',
    description: 'Weight of caption consistency in the nlip noise score (0: the loss alone)',
    default: 0,
    valueHint: 'W',
  },
  ...NLIP_SIGNAL_FLAGS,
  minSeparation: {
    type: 'number',
    description: "nlip acts on the mixture only when its components are this far apart (Ashman's D)",
    default: DEFAULT_MIN_SEPARATION,
    valueHint: 'D',
  },
  // No default here: unset, it stays out of the recipe, so comparisons made before the flag existed are resumed.
  robustFloor: {
    type: 'number',
    description: "Smallest clean target / weight an nlip pair keeps, however noisy it looks (default: train's, 0)",
    valueHint: 'F',
  },
  // No default here either: unset, it stays out of the recipe.
  labelSmoothing: {
    type: 'number',
    description: "Label smoothing of both methods' targets (default: train's, 0; ALIGN: 0.1)",
    valueHint: 'EPS',
  },
  thumbnailSpread: {
    type: 'number',
    description:
      "Spread nlip's soft targets (and label smoothing, vanilla's too) over the batch's captions by thumbnail likeness, sharpness K (default: train's, 0: evenly)",
    valueHint: 'K',
  },
  completion: {
    type: 'boolean',
    description:
      "nlip: noise completion, an extra loss pairing each likely-noisy image with its top concepts (train's default)",
  },
  trainPairs: { type: 'integer', description: 'Training pairs of a built-in setting', default: 4000, valueHint: 'N' },
  testImages: {
    type: 'integer',
    description: 'Test images of a built-in setting (or the --limit of each benchmark)',
    default: 500,
    valueHint: 'N',
  },
  template: { type: 'list', description: "Classification prompt template, '{}' is the class name", valueHint: 'TEXT' },
  backend: backendFlag(),
  json: { type: 'boolean', description: 'Print compare.json on stdout' },
  progress: { type: 'boolean', description: 'Show a progress bar on a terminal', default: true },
} satisfies FlagSpecs;

function parseMethods(text: string): Array<'vanilla' | 'nlip'> {
  const methods = text.split(',').map((s) => s.trim());
  if (methods.some((m) => m !== 'vanilla' && m !== 'nlip') || new Set(methods).size !== methods.length) {
    throw new UsageError(
      'ERR_USAGE',
      `Flag --methods: expected vanilla, nlip or both, comma-separated, got \`${text}\``,
    );
  }
  return methods as Array<'vanilla' | 'nlip'>;
}

function parseVendors(text: string): EmojiVendor[] {
  const vendors = text.split(',').map((s) => s.trim());
  if (
    vendors.some((v) => !(EMOJI_VENDORS as readonly string[]).includes(v)) ||
    new Set(vendors).size !== vendors.length
  ) {
    throw new UsageError(
      'ERR_USAGE',
      `Flag --train-vendors: expected distinct vendors among ${EMOJI_VENDORS.join(', ')}, comma-separated, got \`${text}\``,
    );
  }
  return vendors as EmojiVendor[];
}

function parseRates(text: string): number[] {
  const entries = text.split(',').map((s) => s.trim());
  // An empty entry is not 0 (what Number('') gives), and a rate given twice would be trained once.
  const rates = entries.map((s) => (s === '' ? Number.NaN : Number(s)));
  if (rates.some((r) => !Number.isFinite(r) || r < 0 || r > 1) || new Set(rates).size !== rates.length) {
    throw new UsageError(
      'ERR_USAGE',
      `Flag --noise-rates: expected distinct comma-separated fractions in [0, 1], got \`${text}\``,
    );
  }
  return rates;
}

/** One line that says what the comparison did. */
export function summarizeCompare(result: CompareResult): string {
  const off = nlipEstimateOff(result.runs)
    ? ` (nlip's noise estimate off: ${NOISE_SIGNAL_OFF_REASON}, so nlip trained as vanilla)`
    : '';
  return (
    `compare: ${result.setting}, ${result.runs.length} runs (rates ${result.noiseRates.join(', ')} × ${result.seeds.length} seed(s) × methods` +
    `${result.reusedRuns > 0 ? `; ${result.reusedRuns} finished earlier, reused` : ''})${off}, ` +
    `${result.steps} steps each; ${(result.durationMs / 1000).toFixed(1)} s -> ${result.markdown}, ${result.json}, ${result.plots.length} plots`
  );
}

export const compareCommand = defineCommand({
  meta: {
    name: 'compare',
    description:
      'Inject caption noise (NCR protocol) at several rates, train vanilla and noise-robust (nlip) models with identical seeds, data order and steps, evaluate both on clean benchmarks; writes tables and plots.',
  },
  args: cittyArgs(flags),
  async run({ rawArgs }) {
    const { values } = parseFlags(rawArgs, flags);
    const v = values as Record<string, unknown>;
    if (v['out'] === undefined)
      throw new UsageError('ERR_USAGE', 'Missing --out DIR: where compare.json, compare.md and plots/ go');
    if (v['setting'] === undefined && v['corpus'] === undefined) {
      throw new UsageError('ERR_USAGE', 'Give --setting fashion-mnist|emoji, or --corpus DIR with --benchmark NAME');
    }
    const train: Record<string, unknown> = {};
    for (const k of [
      'epochs',
      'batchSize',
      'lr',
      'warmupEpochs',
      'robustMode',
      'consistencyWeight',
      'noiseSignal',
      'agreementNeighbours',
      'minSeparation',
      'robustFloor',
      'labelSmoothing',
      'thumbnailSpread',
      'multiPositive',
      'relabel',
      'relabelSource',
      'agreementScore',
      'gateLatch',
      'minNoiseFraction',
      'groundingThumbnails',
      'completion',
    ])
      if (v[k] !== undefined) train[k] = k === 'agreementNeighbours' ? parseNeighbours(v[k]) : v[k];
    const bar = createProgress(v['progress'] !== false && v['json'] !== true);
    const options: CompareOptions = {
      out: v['out'] as string,
      ...(v['setting'] !== undefined ? { setting: v['setting'] as 'emoji' } : {}),
      ...(v['trainVendors'] !== undefined ? { trainVendors: parseVendors(v['trainVendors'] as string) } : {}),
      ...(v['testVendor'] !== undefined ? { testVendor: v['testVendor'] as EmojiVendor } : {}),
      ...(v['corpus'] !== undefined ? { corpus: v['corpus'] as string } : {}),
      ...(v['benchmark'] !== undefined ? { benchmark: v['benchmark'] as string[] } : {}),
      ...(v['benchDb'] !== undefined ? { benchDb: v['benchDb'] as string } : {}),
      noiseRates: parseRates((v['noiseRates'] as string | undefined) ?? '0,0.2,0.5'),
      methods: parseMethods((v['methods'] as string | undefined) ?? 'vanilla,nlip'),
      ...(v['seeds'] !== undefined ? { seeds: v['seeds'] as number } : {}),
      ...(v['firstSeed'] !== undefined ? { firstSeed: v['firstSeed'] as number } : {}),
      ...(v['steps'] !== undefined ? { steps: v['steps'] as number } : {}),
      ...(v['trainPairs'] !== undefined ? { trainPairs: v['trainPairs'] as number } : {}),
      ...(v['testImages'] !== undefined ? { testImages: v['testImages'] as number } : {}),
      ...(v['template'] !== undefined ? { templates: v['template'] as string[] } : {}),
      ...(v['backend'] !== undefined ? { backend: v['backend'] as 'auto' } : {}),
      train,
      onProgress: (p) =>
        p.phase !== 'noise' &&
        bar.update(
          `${p.phase} ${p.method} rate ${p.noiseRate} seed ${p.seed} (${p.run + 1}/${p.runs})`,
          p.done,
          p.total,
          p.done,
          0,
        ),
      signal: interruptSignal(),
    };
    let result: CompareResult;
    try {
      const { runCompare } = await import('../eval/index.ts');
      result = await runCompare(options);
    } finally {
      bar.stop();
    }
    if (v['json']) process.stdout.write(JSON.stringify(result) + '\n');
    else process.stderr.write(summarizeCompare(result) + '\n');
  },
});
