/**
 * `npm run bench:compare`: the measured comparison of noise-robust (nlip) against vanilla training
 * in the two offline settings of the eval issue — Fashion-MNIST (several caption templates per
 * class, zero-shot top-1 accuracy) and emoji (google+apple drawings -> twitter, R@1 both ways) —
 * and how well the noise probabilities find the injected noise (ROC AUC by epoch). Prints each
 * setting's compare.md and a one-line verdict against the issue's targets (at 50 % noise robust
 * beats vanilla by >= 5 points, at 0 % within 1.5, AUC >= 0.9 after warm-up).
 *
 *   npm run bench:compare -- [flags]   (`--help` lists them with their defaults)
 *
 * Each setting's directory under --out is cleared first: every number is measured by this run.
 */
import { readFileSync, rmSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import { join } from 'node:path';
import { runCompare, type CompareJson } from '../eval/index.ts';
import type { NOISE_SIGNAL_CHOICES } from '../train/options.ts';
import { UsageError } from '../corpus/errors.ts';
import { EMOJI_VENDORS, type EmojiVendor } from '../corpus/emoji.ts';
import { BenchUsageError, benchArgs, benchFail, checkedNumber } from './_args.ts';

const USAGE = `usage: npm run bench:compare -- [--settings fashion-mnist,emoji] [--rates 0,0.2,0.5] [--seeds 2]
  [--first-seed 1] [--methods vanilla,nlip] [--fashion-pairs 2000] [--fashion-epochs 8]
  [--emoji-pairs 1000] [--emoji-epochs 15] [--emoji-train-vendors google,apple] [--emoji-test-vendor twitter]
  [--test-images 500] [--batch 64] [--lr 0.0005]
  [--warmup-epochs 2] [--robust-mode soft|weight] [--consistency-weight 0] [--min-separation 2]
  [--noise-signal auto|agreement|loss|words] [--agreement-neighbours auto|K] [--multi-positive true|false]
  [--relabel true|false] [--relabel-source model|neighbours|joint] [--agreement-score gap|joint]
  [--gate-latch true|false] [--min-noise-fraction F] [--noise-ema 0.5] [--robust-threshold P]
  [--robust-floor F] [--grounding-thumbnails true|false] [--thumbnail-spread K] [--completion true|false]
  [--label-smoothing E] [--out /tmp/altforge-bench-compare]
Each setting's directory under --out is cleared first; the training flags are checked by training itself.`;

/** The bench's own numbers, checked before anything trains: [flag, min, max, integer]. */
const NUMBER_FLAGS: Array<[string, number, number, boolean]> = [
  ['seeds', 1, 1000, true],
  ['first-seed', 0, Number.MAX_SAFE_INTEGER, true],
  ['fashion-pairs', 4, 10_000_000, true],
  ['fashion-epochs', 1, 10_000, true],
  ['emoji-pairs', 4, 10_000_000, true],
  ['emoji-epochs', 1, 10_000, true],
  ['test-images', 1, 10_000_000, true],
  ['batch', 2, 65_536, true],
  ['warmup-epochs', 0, 10_000, true],
  ['lr', 0, 1, false],
];

/** Training's numbers this bench passes on only when given: checked here too, so a typo is named as the flag. */
const OPTIONAL_NUMBER_FLAGS: Array<[string, number, number]> = [
  ['robust-threshold', 0, 1],
  ['robust-floor', 0, 1],
  ['thumbnail-spread', 0, 100],
  ['label-smoothing', 0, 0.5],
  ['noise-ema', 0, 1],
  ['min-noise-fraction', 0, 1],
];

/** Refuses a comma list (or, with `list` false, a single value) with an entry outside `allowed`. */
function listFlag(values: Record<string, unknown>, name: string, allowed: string[], list = true): void {
  const text = values[name] as string;
  const entries = list ? text.split(',') : [text];
  if (entries.some((e) => !allowed.includes(e)))
    throw new BenchUsageError(
      `--${name}: expected ${list ? 'a comma list of ' : 'one of '}${allowed.join(', ')}, got \`${text}\``,
    );
}

const { args, rates } = benchArgs(
  'compare',
  USAGE,
  {
    settings: { type: 'string', default: 'fashion-mnist,emoji' },
    rates: { type: 'string', default: '0,0.2,0.5' },
    seeds: { type: 'string', default: '2' },
    'first-seed': { type: 'string', default: '1' },
    // Unset: train's default.
    'robust-threshold': { type: 'string' },
    'robust-floor': { type: 'string' },
    'grounding-thumbnails': { type: 'string' },
    'thumbnail-spread': { type: 'string' },
    completion: { type: 'string' },
    'label-smoothing': { type: 'string' },
    'noise-ema': { type: 'string' },
    'gate-latch': { type: 'string' },
    'relabel-source': { type: 'string' },
    'agreement-score': { type: 'string' },
    'min-noise-fraction': { type: 'string' },
    'fashion-pairs': { type: 'string', default: '2000' },
    'fashion-epochs': { type: 'string', default: '8' },
    'emoji-pairs': { type: 'string', default: '1000' },
    'emoji-epochs': { type: 'string', default: '15' },
    'emoji-train-vendors': { type: 'string', default: 'google,apple' },
    'emoji-test-vendor': { type: 'string', default: 'twitter' },
    'test-images': { type: 'string', default: '500' },
    batch: { type: 'string', default: '64' },
    'warmup-epochs': { type: 'string', default: '2' },
    'robust-mode': { type: 'string', default: 'soft' },
    'consistency-weight': { type: 'string', default: '0' },
    methods: { type: 'string', default: 'vanilla,nlip' },
    'min-separation': { type: 'string', default: '2' },
    'noise-signal': { type: 'string', default: 'auto' },
    'agreement-neighbours': { type: 'string', default: 'auto' },
    'multi-positive': { type: 'string', default: 'true' },
    relabel: { type: 'string', default: 'true' },
    lr: { type: 'string', default: '0.0005' },
    out: { type: 'string', default: '/tmp/altforge-bench-compare' },
  },
  (flags) => {
    for (const [name, min, max, integer] of NUMBER_FLAGS) flags.number(name, min, max, integer);
    for (const [name, min, max] of OPTIONAL_NUMBER_FLAGS)
      if (flags.values[name] !== undefined) flags.number(name, min, max);
    const parsed = (flags.values['rates'] as string).split(',').map((r) => checkedNumber('--rates', r, 0, 1));
    if (new Set(parsed).size !== parsed.length)
      throw new BenchUsageError(`--rates: expected each rate once, got \`${flags.values['rates']}\``);
    listFlag(flags.values, 'settings', ['fashion-mnist', 'emoji']);
    listFlag(flags.values, 'methods', ['vanilla', 'nlip']);
    listFlag(flags.values, 'emoji-train-vendors', [...EMOJI_VENDORS]);
    listFlag(flags.values, 'emoji-test-vendor', [...EMOJI_VENDORS], false);
    // Checked before any setting trains (the emoji setting refuses them too, but after Fashion-MNIST's runs).
    const trainVendors = (flags.values['emoji-train-vendors'] as string).split(',');
    if (
      new Set(trainVendors).size !== trainVendors.length ||
      trainVendors.includes(flags.values['emoji-test-vendor'] as string)
    )
      throw new BenchUsageError(
        `--emoji-train-vendors: expected distinct vendors other than the test vendor '${flags.values['emoji-test-vendor']}', got \`${flags.values['emoji-train-vendors']}\``,
      );
    for (const name of ['multi-positive', 'relabel', 'gate-latch', 'grounding-thumbnails', 'completion'])
      if (flags.values[name] !== undefined) listFlag(flags.values, name, ['true', 'false'], false);
    return { args: flags.values, rates: parsed };
  },
);

const testVendor = args['emoji-test-vendor'] as string;
const headline: Record<string, string[]> = {
  'fashion-mnist': ['fashion-mnist/classification/top1'],
  emoji: [`emoji-${testVendor}/image_to_text/R@1`, `emoji-${testVendor}/text_to_image/R@1`],
};

function verdict(json: CompareJson, metric: string): string {
  const mean = (rate: number, method: string) =>
    json.summary.find((s) => s.noiseRate === rate && s.method === method && s.metric === metric)?.mean;
  const rated = (method: string) =>
    json.noiseRates
      .filter((r) => mean(r, method) !== undefined)
      .map((r) => `${(mean(r, method) as number).toFixed(1)} at ${r}`)
      .join(', ') || 'not run';
  const hi = Math.max(...json.noiseRates);
  const gap = (rate: number) => {
    const n = mean(rate, 'nlip');
    const v = mean(rate, 'vanilla');
    return n === undefined || v === undefined ? null : (n - v).toFixed(2);
  };
  // A run of one method (--methods nlip) has no gap to judge: the line says what it measured.
  const gaps = [
    gap(hi) === null ? null : `nlip - vanilla at ${hi}: ${gap(hi)} (target >= +5)`,
    gap(0) === null ? null : `at 0: ${gap(0)} (target within 1.5)`,
  ].filter((g) => g !== null);
  return `${metric}: vanilla ${rated('vanilla')}; nlip ${rated('nlip')}${gaps.length ? `; ${gaps.join(', ')}` : '; no gap: both methods are needed at a rate'}`;
}

console.log(
  `# bench:compare — ${new Date().toISOString()}, node ${process.version}, ${availableParallelism()} cpus, load average ${loadavg()
    .map((l) => l.toFixed(2))
    .join(' ')}`,
);
for (const setting of (args.settings as string).split(',') as Array<'fashion-mnist' | 'emoji'>) {
  const started = Date.now();
  const fashion = setting === 'fashion-mnist';
  // Measured now, every run: nothing reused from an earlier bench into the same directory.
  rmSync(join(args.out as string, setting), { recursive: true, force: true });
  const result = await runCompare({
    setting,
    out: join(args.out as string, setting),
    noiseRates: rates,
    methods: (args.methods as string).split(',') as Array<'vanilla' | 'nlip'>,
    seeds: Number(args.seeds),
    firstSeed: Number(args['first-seed']),
    trainPairs: Number(fashion ? args['fashion-pairs'] : args['emoji-pairs']),
    ...(fashion
      ? {}
      : {
          trainVendors: (args['emoji-train-vendors'] as string).split(',') as EmojiVendor[],
          testVendor: testVendor as EmojiVendor,
        }),
    testImages: Number(args['test-images']),
    train: {
      epochs: Number(fashion ? args['fashion-epochs'] : args['emoji-epochs']),
      batchSize: Number(args.batch),
      lr: Number(args.lr),
      warmupEpochs: Number(args['warmup-epochs']),
      robustMode: args['robust-mode'] as 'soft' | 'weight',
      consistencyWeight: Number(args['consistency-weight']),
      minSeparation: Number(args['min-separation']),
      noiseSignal: args['noise-signal'] as (typeof NOISE_SIGNAL_CHOICES)[number],
      agreementNeighbours: args['agreement-neighbours'] === 'auto' ? 'auto' : Number(args['agreement-neighbours']),
      multiPositive: args['multi-positive'] === 'true',
      relabel: args.relabel === 'true',
      ...(args['noise-ema'] === undefined ? {} : { noiseEma: Number(args['noise-ema']) }),
      ...(args['gate-latch'] === undefined ? {} : { gateLatch: args['gate-latch'] === 'true' }),
      ...(args['relabel-source'] === undefined
        ? {}
        : { relabelSource: args['relabel-source'] as 'model' | 'neighbours' | 'joint' }),
      ...(args['min-noise-fraction'] === undefined ? {} : { minNoiseFraction: Number(args['min-noise-fraction']) }),
      ...(args['agreement-score'] === undefined ? {} : { agreementScore: args['agreement-score'] as 'gap' | 'joint' }),
      ...(args['robust-threshold'] === undefined ? {} : { robustThreshold: Number(args['robust-threshold']) }),
      ...(args['robust-floor'] === undefined ? {} : { robustFloor: Number(args['robust-floor']) }),
      ...(args['grounding-thumbnails'] === undefined
        ? {}
        : { groundingThumbnails: args['grounding-thumbnails'] === 'true' }),
      ...(args['thumbnail-spread'] === undefined ? {} : { thumbnailSpread: Number(args['thumbnail-spread']) }),
      ...(args['completion'] === undefined ? {} : { completion: args['completion'] === 'true' }),
      ...(args['label-smoothing'] === undefined ? {} : { labelSmoothing: Number(args['label-smoothing']) }),
    },
    onProgress: (p) => {
      if (p.phase === 'noise' && p.detection)
        process.stderr.write(
          `  ${setting}: rate ${p.noiseRate} seed ${p.seed} epoch ${p.detection.epoch}: acted ${p.detection.acted}, AUC ${p.detection.auc?.toFixed(3)}, raw score AUC ${p.detection.scoreAuc?.toFixed(3)}, precision ${p.detection.precision?.toFixed(3)}, recall ${p.detection.recall?.toFixed(3)}\n`,
        );
      if (p.phase === 'eval')
        process.stderr.write(
          `  ${setting}: run ${p.run + 1}/${p.runs} (${p.method}, rate ${p.noiseRate}, seed ${p.seed}) trained\n`,
        );
    },
  }).catch((err: unknown) => {
    // Training's own checks (--robust-floor 1.5, an unknown --noise-signal...): one line, as the CLI says them.
    if (err instanceof UsageError) benchFail('compare', err.message);
    throw err;
  });
  console.log(readFileSync(result.markdown, 'utf8'));
  const auc = result.detection.filter((d) => d.auc !== null);
  const lastEpoch = Math.max(...auc.map((d) => d.epoch));
  const finalAuc = auc.filter((d) => d.epoch === lastEpoch);
  for (const metric of headline[setting] ?? []) console.log(`verdict ${verdict(result, metric)}`);
  for (const rate of rates.filter((r) => r > 0)) {
    const values = finalAuc.filter((d) => d.noiseRate === rate).map((d) => d.auc as number);
    if (values.length > 0) {
      console.log(
        `verdict AUC at rate ${rate}, last epoch ${lastEpoch}: ${(values.reduce((a, b) => a + b, 0) / values.length).toFixed(3)} (target >= 0.9)`,
      );
    }
  }
  const trainSeconds = result.runs.reduce((a, r) => a + r.trainSeconds, 0);
  console.log(
    `${setting}: ${result.runs.length} runs, ${result.steps} steps each, ${trainSeconds.toFixed(0)} s training, ${((Date.now() - started) / 1000).toFixed(0)} s in all -> ${result.out}\n`,
  );
}
