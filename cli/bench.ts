import { existsSync, readFileSync, statSync } from 'node:fs';
import { defineCommand } from 'citty';
import { FASHION_MNIST_CLASSES } from '../corpus/idx.ts';
import { EMOJI_VENDORS } from '../corpus/emoji.ts';
import { UsageError } from '../corpus/errors.ts';
import {
  defaultRegistryPath,
  listBenchmarks,
  openRegistry,
  removeBenchmark,
  type BenchmarkInfo,
} from '../corpus/registry.ts';
import { registerBenchmark, type RegisterOptions, type RegisterResult } from '../dedup/index.ts';
import { cittyArgs, parseFlags, type FlagSpecs } from './_args.ts';
import { runStageCommand } from './_run.ts';

const benchDb = {
  type: 'string',
  description: 'Benchmark registry (SQLite); default $XDG_DATA_HOME/altforge/benchmarks.sqlite',
  valueHint: 'FILE',
} as const;

const addFlags = {
  name: { type: 'string', description: 'Name to register the test set under', valueHint: 'NAME' },
  images: {
    type: 'string',
    description: 'Folder of images, WebDataset shards (.tar or a folder of them), or an IDX image file (.gz ok)',
    valueHint: 'PATH',
  },
  emoji: {
    type: 'string',
    description:
      "Instead of --images: an emoji vendor's drawings (npm emoji-datasource-VENDOR), captioned with their names",
    valueHint: 'VENDOR',
    choices: [...EMOJI_VENDORS],
  },
  captions: {
    type: 'string',
    description: 'Captions: COCO .json, .jsonl (image, caption) or image<TAB>caption lines',
    valueHint: 'FILE',
  },
  labels: {
    type: 'string',
    description: 'IDX label file (default: the labels-idx1 file beside the images)',
    valueHint: 'FILE',
  },
  classNames: {
    type: 'string',
    description:
      "Class names of a labelled IDX set, by label: fashion-mnist, a file (one a line), or a comma list (default: Fashion-MNIST's when the path says fashion, else the label numbers)",
    valueHint: 'NAMES',
  },
  kind: { type: 'string', description: 'Kind of test set', choices: ['images', 'classification'], valueHint: 'KIND' },
  benchDb,
  concurrency: { type: 'integer', description: 'Images fingerprinted at once', default: 4, valueHint: 'N' },
  json: { type: 'boolean', description: 'Print the result as JSON on stdout' },
  progress: { type: 'boolean', description: 'Show a progress bar on a terminal', default: true },
} satisfies FlagSpecs;

const listFlags = {
  benchDb,
  json: { type: 'boolean', description: 'Print the list as JSON on stdout' },
} satisfies FlagSpecs;
const removeFlags = {
  name: { type: 'string', description: 'Registered test set to remove', valueHint: 'NAME' },
  benchDb,
} satisfies FlagSpecs;

/** One line that says what a registration did. */
export function summarizeAdd(result: RegisterResult, registry: string): string {
  const b = result.benchmark;
  const bad =
    result.unreadable.length > 0
      ? `; ${result.unreadable.length} unreadable: ${result.unreadable
          .slice(0, 5)
          .map((u) => `${u.imageId} (${u.error})`)
          .join(', ')}${result.unreadable.length > 5 ? ', ...' : ''}`
      : '';
  const unmatched =
    result.unmatchedCaptions > 0 ? `; ${result.unmatchedCaptions} caption lines name no image of the set` : '';
  const replaced = result.replacedCaptions;
  const changed = [
    result.renamedClasses ? 'class names updated' : '',
    replaced ? `captions replaced (${replaced.before} -> ${replaced.after})` : '',
  ].filter((change) => change !== '');
  const state = result.interrupted
    ? ' interrupted (run the same command to continue)'
    : changed.length > 0
      ? ` ${changed.join(', ')}`
      : result.added === 0
        ? ' already registered, nothing to do'
        : '';
  // Label numbers for names make prompts like "a photo of a 3.": say how to name them.
  const numbered =
    b.classNames !== null && b.classNames.every((name, i) => name === String(i))
      ? `; classes named by their numbers 0-${b.classNames.length - 1} (--class-names names them)`
      : '';
  return (
    `bench add ${b.name}${state}: ${b.images} images (${b.kind}, ${b.sourceKind}), ${result.added} files new, ${result.skipped} already there (unreadable ones included), ` +
    `${b.captions} captions${numbered}${bad}${unmatched}; ${(result.durationMs / 1000).toFixed(1)} s -> ${registry}`
  );
}

function describe(b: BenchmarkInfo): string {
  return `${b.name}\t${b.kind}\t${b.images} images\t${b.unreadable} unreadable\t${b.captions} captions\t${b.complete ? 'complete' : 'incomplete'}\t${b.source}`;
}

/** `--class-names`: `fashion-mnist`, a file of one name a line, or names separated by commas. */
function parseClassNames(value: string): string[] {
  if (value === 'fashion-mnist') return [...FASHION_MNIST_CLASSES];
  const isFile = existsSync(value) && statSync(value).isFile();
  const names = (isFile ? readFileSync(value, 'utf8').split(/\r?\n/) : value.split(',')).map((n) => n.trim());
  // A file may end with an empty line; an empty name inside a list is a mistake.
  if (isFile) while (names.at(-1) === '') names.pop();
  if (names.length === 0 || names.includes('')) {
    throw new UsageError(
      'ERR_USAGE',
      `Flag --class-names: expected fashion-mnist, a file of one name a line, or names separated by commas, got \`${value}\``,
    );
  }
  return names;
}

const addCommand = defineCommand({
  meta: {
    name: 'add',
    description:
      'Register a test set: fingerprints, sha256 and captions of every image. Re-adding the same set is idempotent; a --captions file given again replaces its captions.',
  },
  args: cittyArgs(addFlags),
  async run({ rawArgs }) {
    let registry = defaultRegistryPath();
    await runStageCommand<RegisterResult>({
      rawArgs,
      flags: addFlags,
      required: {
        name: 'Missing --name NAME: the name to register the test set under',
      },
      run: (values, hooks) => {
        registry = (values['benchDb'] as string | undefined) ?? registry;
        const names = values['classNames'] as string | undefined;
        return registerBenchmark({
          ...values,
          ...(names === undefined ? {} : { classNames: parseClassNames(names) }),
          onProgress: (p) => hooks.onProgress({ phase: 'register', ...p }),
          signal: hooks.signal,
        } as RegisterOptions);
      },
      summarize: (result) => summarizeAdd(result, registry),
      interrupted: (result) => result.interrupted,
    });
  },
});

const listCommand = defineCommand({
  meta: { name: 'list', description: 'List the registered test sets' },
  args: cittyArgs(listFlags),
  run({ rawArgs }) {
    const { values } = parseFlags(rawArgs, listFlags);
    const path = (values['benchDb'] as string | undefined) ?? defaultRegistryPath();
    const registry = openRegistry(path);
    try {
      const list = listBenchmarks(registry);
      if (values['json']) process.stdout.write(JSON.stringify(list) + '\n');
      else if (list.length === 0) process.stderr.write(`no benchmarks registered in ${path}\n`);
      else process.stdout.write(list.map(describe).join('\n') + '\n');
    } finally {
      registry.close();
    }
  },
});

const removeCommand = defineCommand({
  meta: { name: 'remove', description: 'Remove a registered test set and its fingerprints' },
  args: cittyArgs(removeFlags),
  run({ rawArgs }) {
    const { values } = parseFlags(rawArgs, removeFlags);
    const name = values['name'] as string | undefined;
    if (name === undefined) throw new UsageError('ERR_USAGE', 'Missing --name NAME: the test set to remove');
    const path = (values['benchDb'] as string | undefined) ?? defaultRegistryPath();
    const registry = openRegistry(path);
    try {
      const removed = removeBenchmark(registry, name);
      process.stderr.write(
        `bench remove ${removed.name}: ${removed.images} images and their fingerprints removed from ${path}\n`,
      );
    } finally {
      registry.close();
    }
  },
});

/** `altforge bench add|list|remove`: the registry of test sets dedup matches corpora against. */
export const benchCommand = defineCommand({
  meta: { name: 'bench', description: 'Register downstream test sets (benchmarks) that dedup keeps out of corpora' },
  subCommands: { add: addCommand, list: listCommand, remove: removeCommand },
});
