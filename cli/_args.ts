import { parseArgs } from 'node:util';
import type { ArgsDef } from 'citty';
import { UsageError, shown } from '../corpus/errors.ts';
import { BACKEND_CHOICES } from '../train/backend-names.ts';

/** One command-line flag: what `--help` shows and how its value is parsed. */
export interface FlagSpec {
  type: 'string' | 'boolean' | 'integer' | 'number' | 'list';
  description: string;
  /** Shown in `--help` as the flag's value, e.g. `N` or `DIR`. */
  valueHint?: string;
  /** Default shown in `--help` (the library applies the real default). */
  default?: string | number | boolean;
  /** Accepted values, shown in `--help` and checked. */
  choices?: readonly string[];
  alias?: string;
}

export type FlagSpecs = Record<string, FlagSpec>;

/** The `--backend` flag of the commands that compute on TensorFlow.js. */
export function backendFlag(description = 'Compute backend'): FlagSpec {
  return { type: 'string', description, default: 'auto', valueHint: 'NAME', choices: BACKEND_CHOICES };
}

const kebab = (name: string) => name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

/**
 * What `--help` says of a switch's default, and how to turn it the other way when that takes
 * `--no-X` (every switch takes it: node's parseArgs with `allowNegative`). citty would print an on
 * switch as `(Default: true)` on a row of its own with an empty `--no-X` row below, so the words
 * are part of the description, unless it names `--no-X` already.
 */
function switchDefault(name: string, spec: FlagSpec): string {
  if (spec.default !== true) return '(Default: off)';
  return spec.description.includes(`--no-${name}`) ? '(Default: on)' : `(Default: on; --no-${name} turns it off)`;
}

/** Each citty argument {@link cittyArgs} made, with the flag it was made from. */
const flagOfArg = new WeakMap<object, [string, FlagSpec]>();

/**
 * The flags behind a command's citty definition, as its command parses them: a command's `args`
 * may add a positional to {@link cittyArgs}'s, and its flags are not always exported (bench add).
 */
export function flagSpecsOf(args: ArgsDef): FlagSpecs {
  const specs: FlagSpecs = {};
  for (const arg of Object.values(args)) {
    const flag = flagOfArg.get(arg);
    if (flag !== undefined) specs[flag[0]] = flag[1];
  }
  return specs;
}

/** The citty definition of the flags, used for `--help` and usage text only. */
export function cittyArgs(specs: FlagSpecs): ArgsDef {
  const out: ArgsDef = {};
  for (const [camel, spec] of Object.entries(specs)) {
    const name = kebab(camel);
    const description =
      spec.description +
      (spec.choices ? `: ${spec.choices.join(', ')}` : '') +
      (spec.type === 'list' ? ' (repeatable)' : '');
    if (spec.type === 'boolean') {
      out[name] = {
        type: 'boolean',
        description: `${description} ${switchDefault(name, spec)}`,
        ...(spec.alias ? { alias: spec.alias } : {}),
      };
    } else {
      out[name] = {
        type: 'string',
        description,
        ...(spec.valueHint ? { valueHint: spec.valueHint } : {}),
        ...(spec.default !== undefined ? { default: String(spec.default) } : {}),
        ...(spec.alias ? { alias: spec.alias } : {}),
      };
    }
    flagOfArg.set(out[name], [camel, spec]);
  }
  return out;
}

/**
 * Parses flags strictly (an unknown flag or a missing value is a usage error, exit 2): lists may
 * be repeated, numbers are checked here so the message names the flag as the user typed it.
 * Only flags the user gave appear in the result, keyed by their camelCase option name. More
 * arguments that are not flags than `maxPositionals` (default none) is a usage error too: a value
 * given to a switch (`--gate-latch no`) would otherwise be dropped without a word.
 */
export function parseFlags(
  rawArgs: string[],
  specs: FlagSpecs,
  maxPositionals = 0,
): { values: Record<string, unknown>; positionals: string[] } {
  parsedSpecs = specs;
  const options: Record<string, { type: 'string' | 'boolean'; multiple?: boolean; short?: string }> = {
    help: { type: 'boolean', short: 'h' },
  };
  const byFlag = new Map<string, string>();
  const numeric = new Set<string>();
  for (const [name, spec] of Object.entries(specs)) {
    const flag = kebab(name);
    byFlag.set(flag, name);
    if (spec.type === 'integer' || spec.type === 'number') {
      numeric.add(`--${flag}`);
      if (spec.alias?.length === 1) numeric.add(`-${spec.alias}`);
    }
    options[flag] = {
      type: spec.type === 'boolean' ? 'boolean' : 'string',
      ...(spec.type === 'list' ? { multiple: true } : {}),
      ...(spec.alias?.length === 1 ? { short: spec.alias } : {}),
    };
  }
  // A negative number after a numeric flag is its value (`--max-depth -1`), for the range check to
  // refuse by name: node's parseArgs takes any word that starts with a dash for a flag.
  const args: string[] = [];
  for (const arg of rawArgs) {
    const flag = args[args.length - 1];
    if (flag !== undefined && numeric.has(flag) && /^-\.?\d/.test(arg)) {
      args[args.length - 1] = flag.startsWith('--') ? `${flag}=${arg}` : `${flag}${arg}`;
    } else args.push(arg);
  }
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args,
      options,
      strict: true,
      allowPositionals: true,
      allowNegative: true,
    } as Parameters<typeof parseArgs>[0]);
  } catch (err) {
    // node's messages may run over several lines (a value that starts with a dash): one line here.
    throw new UsageError('ERR_USAGE', (err as Error).message.split('\n').join(' ') || 'Invalid arguments');
  }
  // A value given to a switch (`--gate-latch no`) would otherwise be taken as an argument or dropped.
  const switchBefore = (arg: string): string | null => {
    const before = args[args.indexOf(arg) - 1] ?? '';
    const flag = before.replace(/^--(no-)?/, '');
    const name = before.startsWith('--') ? byFlag.get(flag) : undefined;
    return name !== undefined && specs[name]?.type === 'boolean' ? flag : null;
  };
  parsed.positionals.forEach((arg, i) => {
    const flag = switchBefore(arg);
    if (flag !== null && (i >= maxPositionals || /^(true|false|yes|no|on|off|maybe|[01])$/i.test(arg))) {
      throw new UsageError(
        'ERR_USAGE',
        `Flag --${flag} is a switch and takes no value (--${flag} or --no-${flag}), got \`${arg}\``,
      );
    }
    if (i >= maxPositionals) {
      throw new UsageError(
        'ERR_USAGE',
        `Unexpected argument \`${arg}\`${maxPositionals === 0 ? ': this command takes flags only' : ''}`,
      );
    }
  });
  const values: Record<string, unknown> = {};
  typedValues = {};
  for (const [flag, raw] of Object.entries(parsed.values)) {
    const name = byFlag.get(flag);
    const spec = name === undefined ? undefined : specs[name];
    if (name === undefined || spec === undefined) continue;
    if (typeof raw === 'string' || Array.isArray(raw)) typedValues[name] = ([] as unknown[]).concat(raw).map(String);
    if (spec.type === 'integer' || spec.type === 'number') {
      const n = Number(raw);
      if (
        typeof raw !== 'string' ||
        raw.trim() === '' ||
        !Number.isFinite(n) ||
        (spec.type === 'integer' && !Number.isInteger(n))
      ) {
        throw new UsageError(
          'ERR_USAGE',
          `Flag --${flag}: expected ${spec.type === 'integer' ? 'an integer' : 'a number'}, got \`${String(raw)}\``,
        );
      }
      values[name] = n;
    } else if (spec.choices && typeof raw === 'string' && !spec.choices.includes(raw)) {
      throw new UsageError('ERR_USAGE', `Flag --${flag}: expected one of ${spec.choices.join(', ')}, got \`${raw}\``);
    } else {
      values[name] = raw;
    }
  }
  return { values, positionals: parsed.positionals };
}

/** The flags of the command line parsed last (one command runs a process), and their values as typed. */
let parsedSpecs: FlagSpecs | undefined;
let typedValues: Record<string, string[]> = {};

/**
 * An option error in the words of the command line: ``Option 'train.batchSize': ...`` becomes
 * ``Flag --batch-size: ...``, and ``Options 'trainVendors' and 'testVendor' ...`` becomes ``Flags
 * --train-vendors and --test-vendor ...``, when each option named first is a flag of the command
 * that ran. An option is found by the first part of its path that is a flag (`model.imageSize`,
 * `train.lr`; an index such as `skipRules.0` is not), a list's option being named in the plural of
 * its flag (`--skip-rule` fills `skipRules`). In the rest of the message an option with one of its
 * flag's values (`robust 'nlip'`) becomes the flag with the value (`--robust nlip`), and other
 * options named in quotes or in camelCase (`at most maxWords`) their flags. A message naming
 * several ends with the one the user gave and its value (``got `--train-vendors google` ``). Any
 * other message is returned as it is.
 */
export function inFlagTerms(message: string, context: { stage?: string; option?: string }): string {
  const specs = parsedSpecs;
  const head = /^Options? ('[^']*'(?:(?:, |,? and )'[^']*')*)/.exec(message);
  if (specs === undefined || head === null) return message;
  const { stage, option } = context;
  const flagOf = (path: string): string | undefined => {
    const local = stage !== undefined && path.startsWith(`${stage}.`) ? path.slice(stage.length + 1) : path;
    for (const part of local.split('.')) {
      if (Object.hasOwn(specs, part)) return part;
      const singular = part.replace(/s$/, '');
      if (singular !== part && specs[singular]?.type === 'list') return singular;
    }
    return undefined;
  };
  const flags = [...(head[1] as string).matchAll(/'([^']*)'/g)].map((m) => flagOf(m[1] as string));
  if (flags.some((flag) => flag === undefined)) return message;
  let at = 0;
  const named = (head[1] as string).replace(/'[^']*'/g, () => `--${kebab(flags[at++] as string)}`);
  // A word the user typed as a value (a corpus called `corpus`, a benchmark called `json`) is theirs, not a flag.
  const values = new Set(Object.values(typedValues).flat());
  const isFlag = (name: string) => Object.hasOwn(specs, name) && !values.has(name);
  const rest = message
    .slice(head[0].length)
    .replace(/\b([a-z][a-zA-Z0-9]*) '([^']*)'/g, (text, name: string, value: string) =>
      isFlag(name) && specs[name]?.choices?.includes(value) ? `--${kebab(name)} ${value}` : text,
    )
    .replace(/'([a-z][a-zA-Z0-9]*)'/g, (text, name: string) => (isFlag(name) ? `--${kebab(name)}` : text))
    .replace(/\b[a-z]+(?:[A-Z][a-z0-9]*)+\b/g, (word) => (isFlag(word) ? `--${kebab(word)}` : word));
  // Of several flags, the one the user gave, with its value: the option's own, else the first given one.
  const own = option === undefined ? undefined : flagOf(option);
  const given = [own, ...flags].find((flag) => flag !== undefined && typedValues[flag] !== undefined);
  const got =
    flags.length < 2 || given === undefined || rest.includes('got `')
      ? ''
      : `, got ${shown((typedValues[given] as string[]).map((v) => `--${kebab(given)} ${v}`).join(' '))}`;
  return `${flags.length > 1 ? 'Flags' : 'Flag'} ${named}${rest}${got}`;
}
