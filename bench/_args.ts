/**
 * The command line of every `npm run bench:<stage>`: `--help` prints the bench's usage and exits 0,
 * and bad input — an unknown flag, a number out of range, a bad environment size — stops with one
 * line on stderr and exit 2, as the altforge command does, instead of a stack trace or an hour of
 * work on a value nobody meant.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';

/** Bad bench input, reported by {@link benchArgs} as one line. */
export class BenchUsageError extends Error {}

type Options = NonNullable<ParseArgsConfig['options']>;
type Values = Record<string, string | boolean | undefined>;

/** A bench's parsed flags and checked numbers; throws {@link BenchUsageError} on bad input. */
export interface BenchFlags {
  values: Values;
  /** True when `--help` / `-h` was given. */
  help: boolean;
  /** Flag `--name` as a number in [min, max] (an integer when asked). */
  number(name: string, min: number, max: number, integer?: boolean): number;
}

/** `text` as a number in [min, max] (an integer when asked), or a {@link BenchUsageError} naming `what`. */
export function checkedNumber(what: string, text: string, min: number, max: number, integer = false): number {
  const value = Number(text);
  if (
    text.trim() === '' ||
    !Number.isFinite(value) ||
    value < min ||
    value > max ||
    (integer && !Number.isInteger(value))
  ) {
    throw new BenchUsageError(
      `${what}: expected ${integer ? 'an integer' : 'a number'} in [${min}, ${max}], got \`${text}\``,
    );
  }
  return value;
}

/** Parses `argv` against `options` (plus `--help`); pure, for tests. */
export function parseBenchFlags(options: Options, argv: string[]): BenchFlags {
  let values: Values;
  try {
    values = parseArgs({ args: argv, options: { ...options, help: { type: 'boolean', short: 'h' } } }).values as Values;
  } catch (err) {
    throw new BenchUsageError((err as Error).message);
  }
  return {
    values,
    help: values['help'] === true,
    number(name, min, max, integer = false) {
      const text = values[name];
      if (typeof text !== 'string') throw new BenchUsageError(`--${name}: expected a value`);
      return checkedNumber(`--${name}`, text, min, max, integer);
    },
  };
}

/** Environment variable `name` as a checked number, `fallback` when unset. */
export function envNumber(name: string, fallback: number, min: number, max: number, integer = true): number {
  const text = process.env[name];
  return text === undefined ? fallback : checkedNumber(name, text, min, max, integer);
}

/** Stops the bench with one line on stderr and exit 2. */
export function benchFail(bench: string, message: string): never {
  process.stderr.write(`bench:${bench}: ${message} (--help for usage)\n`);
  process.exit(2);
}

/**
 * The bench's command line from `process.argv`: prints `usage` and exits 0 on `--help`; a bad flag
 * stops it in one line (exit 2). `check` runs the bench's own checks (numbers, files) under the same
 * rule and returns what the bench uses.
 */
export function benchArgs<T>(bench: string, usage: string, options: Options, check: (flags: BenchFlags) => T): T {
  try {
    const flags = parseBenchFlags(options, process.argv.slice(2));
    if (flags.help) {
      process.stdout.write(`${usage.trim()}\n`);
      process.exit(0);
    }
    return check(flags);
  } catch (err) {
    if (err instanceof BenchUsageError) benchFail(bench, err.message);
    throw err;
  }
}
