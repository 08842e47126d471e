import { defineCommand } from 'citty';
import type { AltKind, DemoOptions, DemoResult, ImageFate } from '../demo/index.ts';
import { DEMO_STAGES } from '../demo/options.ts';
import { ALT_KINDS, IMAGE_FATES } from '../demo/site.ts';
import { backendFlag, cittyArgs, parseFlags, type FlagSpecs } from './_args.ts';
import { summarize } from './crawl.ts';
import { createProgress, type Progress } from './_progress.ts';
import { interruptSignal, setExitCode } from './_run.ts';

const flags = {
  out: {
    type: 'string',
    description:
      'Demo directory: site/, corpus/, benchmarks.sqlite, runs/, compare.json, report/ (created, or continued)',
    default: './altforge-demo',
    valueHint: 'DIR',
    alias: 'o',
  },
  images: { type: 'integer', description: 'Images on the demo site', default: 2000, valueHint: 'N' },
  seed: {
    type: 'integer',
    description: 'Seed of the site (alt-texts, failures, sizes), the test sets and training',
    default: 1,
    valueHint: 'N',
  },
  upTo: {
    type: 'string',
    description: 'Last step to run',
    default: 'report',
    choices: DEMO_STAGES,
    valueHint: 'STAGE',
  },
  epochs: {
    type: 'integer',
    description: 'Epochs of each training run (vanilla, then NLIP)',
    default: 12,
    valueHint: 'N',
  },
  batchSize: { type: 'integer', description: 'Pairs per training step', default: 128, valueHint: 'N' },
  backend: backendFlag('Backend of training, scoring and eval'),
  nsfw: {
    type: 'string',
    description: 'Pornography classifier of the filter',
    default: 'nsfwjs',
    choices: ['nsfwjs', 'none'],
    valueHint: 'NAME',
  },
  json: { type: 'boolean', description: 'Print the result as JSON on stdout' },
  progress: { type: 'boolean', description: 'Show progress bars on a terminal', default: true },
} satisfies FlagSpecs;

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

const KIND_LABELS: Record<AltKind, string> = {
  name: 'true names',
  name_in_context: 'names in context',
  boilerplate: 'boilerplate',
  filename: 'file names',
  wrong_image: 'of the wrong image',
  empty: 'empty',
  missing: 'missing',
};

const FATE_LABELS: Record<ImageFate, string> = {
  ok: 'fine',
  small: 'too small (32 px)',
  broken: 'broken links',
  disallowed: 'under /private/ (robots.txt)',
  opted_out: 'opted out (X-Robots-Tag)',
};

function counts<K extends string>(record: Record<K, number>, order: readonly K[], labels: Record<K, string>): string {
  return order.map((k) => `${record[k] ?? 0} ${labels[k]}`).join(', ');
}

/** The lines the demo prints at the end: what was built, what the crawl did, where the corpus is. */
export function demoSummary(result: DemoResult): string[] {
  const lines: string[] = [];
  const { site, crawl } = result;
  if (site === null) {
    lines.push(`demo interrupted while building the site; run the same command again to continue`);
    return lines;
  }
  lines.push(
    `site: ${site.images} images on ${site.pages} pages ${site.reused ? '(kept from an earlier run)' : `(built in ${seconds(site.durationMs)})`}, ` +
      `served at ${site.origin}/ from ${site.dir}`,
  );
  lines.push(`  alt-texts: ${counts(site.byKind, ALT_KINDS, KIND_LABELS)}`);
  lines.push(`  images: ${counts(site.byFate, IMAGE_FATES, FATE_LABELS)}`);
  if (site.originChanged) {
    lines.push(`  note: the port of the last run was taken, so the crawl records the site again under ${site.origin}`);
  }
  if (crawl === null) {
    lines.push(`demo interrupted before the crawl; run the same command again to continue`);
    return lines;
  }
  lines.push(summarize(crawl));
  lines.push(
    `corpus: ${crawl.out} (manifest.sqlite, shards/*.tar): ${crawl.byStatus['ok'] ?? 0} pairs ok in ${crawl.shards} shards` +
      `${result.interrupted ? '; interrupted: run the same command again to continue' : ''}`,
  );
  const stages = result.stages;
  if (stages !== null) {
    const parts: string[] = [];
    if (stages.filter) parts.push(`${stages.filter.kept} pairs kept of ${stages.filter.pairs}`);
    if (stages.dedup) parts.push(`${stages.dedup.flagged} duplicates of test images found`);
    const name = stages.benchmarks?.evaluation;
    const r1 = (method: 'vanilla' | 'nlip', task: string) => stages.eval?.[method][`${name}/${task}/R@1`];
    const v = r1('vanilla', 'image_to_text');
    const n = r1('nlip', 'image_to_text');
    if (v !== undefined && n !== undefined) {
      parts.push(
        `R@1 image→text on ${name}: vanilla ${v.toFixed(1)} % vs nlip ${n.toFixed(1)} %` +
          ` (text→image ${(r1('vanilla', 'text_to_image') ?? 0).toFixed(1)} % vs ${(r1('nlip', 'text_to_image') ?? 0).toFixed(1)} %)`,
      );
    } else if (stages.evalNote) parts.push(`eval skipped: ${stages.evalNote}`);
    if (stages.report) parts.push(`report: ${stages.report.html}`);
    lines.push(`demo: ${parts.join('; ')}`);
  }
  lines.push(`demo took ${seconds(result.durationMs)}`);
  return lines;
}

export const demoCommand = defineCommand({
  meta: {
    name: 'demo',
    description:
      'Run the whole toolkit on built-in data: build a local web site of emoji images with realistic alt-texts and failures, serve it on 127.0.0.1 and crawl it, dedup against held-out drawings, filter, train vanilla and NLIP models, score noise, evaluate both, and write a report. Rerun the same command to continue.',
  },
  args: cittyArgs(flags),
  async run({ rawArgs }) {
    const { values } = parseFlags(rawArgs, flags);
    const {
      json,
      progress: showProgress,
      ...rest
    } = values as Record<string, unknown> & { json?: boolean; progress?: boolean };
    const barsOn = showProgress !== false && json !== true;
    // One bar per stage: the site build, then the crawl (whose bar follows its own phases).
    let bar: Progress | undefined;
    let stage = '';
    const options = {
      ...rest,
      // Stage lines (thresholds, counts) go out as they come, between the progress bars.
      onLog: (line: string) => {
        bar?.stop();
        bar = undefined;
        stage = '';
        process.stderr.write(line + '\n');
      },
      onProgress: (p) => {
        if (p.stage !== stage) {
          bar?.stop();
          stage = p.stage;
          bar = createProgress(barsOn);
        }
        bar?.update(p.phase, p.done, p.total, p.ok, p.failed);
      },
      signal: interruptSignal(),
    } as DemoOptions;
    let result: DemoResult;
    try {
      // Loaded here: the later stages load TensorFlow.js, which other commands need not pay for.
      const { runDemo } = await import('../demo/index.ts');
      result = await runDemo(options);
    } finally {
      bar?.stop();
    }
    if (json) process.stdout.write(JSON.stringify(result) + '\n');
    else process.stderr.write(demoSummary(result).join('\n') + '\n');
    if (result.interrupted) setExitCode(130);
  },
});
