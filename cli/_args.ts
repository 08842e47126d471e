import { parseArgs } from 'node:util';
import type { ArgsDef } from 'citty';
import { UsageError } from '../corpus/errors.ts';
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
      out[name] = { type: 'boolean', description, ...(spec.alias ? { alias: spec.alias } : {}) };
    } else {
      out[name] = {
        type: 'string',
        description,
        ...(spec.valueHint ? { valueHint: spec.valueHint } : {}),
        ...(spec.default !== undefined ? { default: String(spec.default) } : {}),
        ...(spec.alias ? { alias: spec.alias } : {}),
      };
    }
  }
  return out;
}

/**
 * Parses flags strictly (an unknown flag or a missing value is a usage error, exit 2): lists may
 * be repeated, numbers are checked here so the message names the flag as the user typed it.
 * Only flags the user gave appear in the result, keyed by their camelCase option name.
 */
export function parseFlags(
  rawArgs: string[],
  specs: FlagSpecs,
): { values: Record<string, unknown>; positionals: string[] } {
  const options: Record<string, { type: 'string' | 'boolean'; multiple?: boolean; short?: string }> = {
    help: { type: 'boolean', short: 'h' },
  };
  const byFlag = new Map<string, string>();
  for (const [name, spec] of Object.entries(specs)) {
    const flag = kebab(name);
    byFlag.set(flag, name);
    options[flag] = {
      type: spec.type === 'boolean' ? 'boolean' : 'string',
      ...(spec.type === 'list' ? { multiple: true } : {}),
      ...(spec.alias?.length === 1 ? { short: spec.alias } : {}),
    };
  }
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args: rawArgs,
      options,
      strict: true,
      allowPositionals: true,
      allowNegative: true,
    } as Parameters<typeof parseArgs>[0]);
  } catch (err) {
    throw new UsageError('ERR_USAGE', (err as Error).message.split('\n')[0] ?? 'Invalid arguments');
  }
  const values: Record<string, unknown> = {};
  for (const [flag, raw] of Object.entries(parsed.values)) {
    const name = byFlag.get(flag);
    const spec = name === undefined ? undefined : specs[name];
    if (name === undefined || spec === undefined) continue;
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
