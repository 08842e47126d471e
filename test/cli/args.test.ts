import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { inFlagTerms, parseFlags, type FlagSpecs } from '../../cli/_args.ts';
import { reportError } from '../../cli/_run.ts';
import { AltforgeError, UsageError } from '../../corpus/errors.ts';
import { runCli } from '../helpers/cli.ts';
import { tempDir } from '../helpers/corpus.ts';

const specs = {
  out: { type: 'string', description: 'Output' },
  steps: { type: 'integer', description: 'Steps' },
  gateLatch: { type: 'boolean', description: 'A switch' },
} satisfies FlagSpecs;

const usage = (fn: () => unknown) => {
  try {
    fn();
  } catch (err) {
    return { code: (err as { code?: string }).code, message: (err as Error).message };
  }
  return null;
};

describe('parseFlags', () => {
  it('parses flags, switches and their negations', () => {
    expect(parseFlags(['--out', 'x', '--steps', '3', '--no-gate-latch'], specs).values).toEqual({
      out: 'x',
      steps: 3,
      gateLatch: false,
    });
  });

  it('refuses a value given to a switch, naming the switch', () => {
    expect(usage(() => parseFlags(['--gate-latch', 'maybe', '--out', 'x'], specs))).toEqual({
      code: 'ERR_USAGE',
      message: 'Flag --gate-latch is a switch and takes no value (--gate-latch or --no-gate-latch), got `maybe`',
    });
    expect(usage(() => parseFlags(['--no-gate-latch', 'x'], specs))?.message).toContain('--gate-latch is a switch');
    // Even where the command takes arguments, a yes/no word after a switch is a value meant for it.
    expect(usage(() => parseFlags(['--gate-latch', 'false', 'dir'], specs, Infinity))?.message).toContain(
      'got `false`',
    );
  });

  it('says on one line how to give a value that starts with a dash', () => {
    const refused = usage(() => parseFlags(['--out', '-x'], specs));
    expect(refused?.code).toBe('ERR_USAGE');
    expect(refused?.message).not.toContain('\n');
    expect(refused?.message).toContain("use '--out=-XYZ'");
    expect(parseFlags(['--out=-x'], specs).values).toEqual({ out: '-x' });
  });

  it('takes a negative number after a numeric flag as its value, and checks it is a number', () => {
    const numbers = {
      ...specs,
      rate: { type: 'number', description: 'Rate', alias: 'r' },
    } satisfies FlagSpecs;
    expect(parseFlags(['--steps', '-3', '--rate', '-.5', '--out', 'x'], numbers).values).toEqual({
      steps: -3,
      rate: -0.5,
      out: 'x',
    });
    expect(parseFlags(['-r', '-2'], numbers).values).toEqual({ rate: -2 });
    expect(usage(() => parseFlags(['--steps', '-1.5'], numbers))?.message).toBe(
      'Flag --steps: expected an integer, got `-1.5`',
    );
    // A dash that starts no number is still no value, for a flag of any kind.
    expect(usage(() => parseFlags(['--steps', '-x'], numbers))?.message).toContain("use '--steps=-XYZ'");
  });

  it('refuses arguments a command does not take, and keeps those it does', () => {
    expect(usage(() => parseFlags(['--out', 'x', 'extra'], specs))).toEqual({
      code: 'ERR_USAGE',
      message: 'Unexpected argument `extra`: this command takes flags only',
    });
    expect(usage(() => parseFlags(['a', 'b'], specs, 1))?.message).toBe('Unexpected argument `b`');
    expect(parseFlags(['a', '--gate-latch', 'https://example.com/'], specs, Infinity).positionals).toEqual([
      'a',
      'https://example.com/',
    ]);
  });
});

describe('exit codes', () => {
  it('are 2 for a usage error, 130 for a run stopped by Ctrl-C, 1 for another failure', () => {
    const write = process.stderr.write;
    process.stderr.write = (() => true) as typeof process.stderr.write;
    try {
      expect(reportError(new UsageError('ERR_USAGE', 'bad flag'))).toBe(2);
      expect(reportError(new AltforgeError('ERR_INTERRUPTED', 'Interrupted'))).toBe(130);
      expect(reportError(new AltforgeError('ERR_IO', 'disk full'))).toBe(1);
    } finally {
      process.stderr.write = write;
    }
  });
});

describe('a command given a value for a switch', () => {
  it('exits 2 with one line', async () => {
    const res = await runCli(['compare', '--setting', 'emoji', '--out', '/tmp/never', '--gate-latch', 'no']);
    expect(res.code).toBe(2);
    expect(res.stderr.trim().split('\n')).toHaveLength(1);
    expect(res.stderr).toContain('--gate-latch is a switch');
  });
});

describe('inFlagTerms', () => {
  it("names the command's flag for an option error, nested options by their first part, and leaves the rest", () => {
    parseFlags([], {
      batchSize: { type: 'integer', description: 'Batch' },
      skipRules: { type: 'list', description: 'Rules' },
    });
    const context = (stage: string, option: string) => ({ stage, option });
    expect(inFlagTerms("Option 'train.batchSize': Too small, got `1`", context('train', 'batchSize'))).toBe(
      'Flag --batch-size: Too small, got `1`',
    );
    expect(inFlagTerms("Option 'filter.skipRules.0': unknown rule", context('filter', 'skipRules.0'))).toBe(
      'Flag --skip-rules: unknown rule',
    );
    // Another option the message names in camelCase: its flag too, when it is one of this command's.
    parseFlags([], {
      minWords: { type: 'integer', description: 'Min' },
      maxWords: { type: 'integer', description: 'Max' },
    });
    expect(
      inFlagTerms(
        "Option 'filter.minWords': expected at most maxWords (2), not maxAspect",
        context('filter', 'minWords'),
      ),
    ).toBe('Flag --min-words: expected at most --max-words (2), not maxAspect');
    parseFlags([], {
      batchSize: { type: 'integer', description: 'Batch' },
      skipRules: { type: 'list', description: 'Rules' },
    });
    // Not a flag of this command, another wording, or no option: as it was.
    expect(inFlagTerms("Option 'train.lr': too big", context('train', 'lr'))).toBe("Option 'train.lr': too big");
    expect(inFlagTerms("Options 'batchSize' and 'lr' clash", context('train', 'batchSize'))).toBe(
      "Options 'batchSize' and 'lr' clash",
    );
    expect(inFlagTerms('Missing --corpus DIR', {})).toBe('Missing --corpus DIR');
  });

  it('finds a list flag by its plural option, a nested option by a part that is a flag, and several options at once', () => {
    parseFlags(['--train-vendors', 'google', '--robust-floor', '2'], {
      skipRule: { type: 'list', description: 'Rule' },
      imageSize: { type: 'integer', description: 'Size' },
      setting: { type: 'string', description: 'Setting', choices: ['fashion-mnist', 'emoji'] },
      robust: { type: 'string', description: 'Robust', choices: ['none', 'nlip'] },
      robustFloor: { type: 'number', description: 'Floor' },
      trainVendors: { type: 'string', description: 'Vendors' },
      testVendor: { type: 'string', description: 'Vendor' },
    });
    const context = (stage: string, option: string) => ({ stage, option });
    expect(inFlagTerms("Option 'filter.skipRules.1': unknown rule, got `foo`", context('filter', 'skipRules.1'))).toBe(
      'Flag --skip-rule: unknown rule, got `foo`',
    );
    expect(inFlagTerms("Option 'train.model.imageSize': too small, got `3`", context('train', 'model.imageSize'))).toBe(
      'Flag --image-size: too small, got `3`',
    );
    // An option with one of its flag's values, or named in quotes: the flag, as typed.
    expect(
      inFlagTerms(
        "Option 'train.robustFloor': it needs robust 'nlip' and 'imageSize'",
        context('train', 'robustFloor'),
      ),
    ).toBe('Flag --robust-floor: it needs --robust nlip and --image-size');
    // Several options: each by its flag, and the one the user gave with its value.
    expect(
      inFlagTerms(
        "Options 'trainVendors' and 'testVendor' choose the emoji setting's drawings: they need setting 'emoji'",
        context('compare', 'trainVendors'),
      ),
    ).toBe(
      "Flags --train-vendors and --test-vendor choose the emoji setting's drawings: they need --setting emoji, got `--train-vendors google`",
    );
  });

  it("leaves a value the user typed as it is, even where it spells one of the command's flags", () => {
    parseFlags(['--corpus', 'corpus', '--corpus', 'corpus', '--benchmark', 'json', '--benchmark', 'json'], {
      corpus: { type: 'list', description: 'Corpus' },
      benchmark: { type: 'list', description: 'Benchmark' },
      json: { type: 'boolean', description: 'JSON' },
      imageSize: { type: 'integer', description: 'Size' },
    });
    expect(
      inFlagTerms("Option 'filter.corpus': corpus 'corpus' is given twice", { stage: 'filter', option: 'corpus' }),
    ).toBe("Flag --corpus: corpus 'corpus' is given twice");
    expect(
      inFlagTerms("Option 'eval.benchmark': benchmark 'json' is given twice, not 'imageSize'", {
        stage: 'eval',
        option: 'benchmark',
      }),
    ).toBe("Flag --benchmark: benchmark 'json' is given twice, not --image-size");
  });
});

describe('an option error of a command', () => {
  it('refuses a negative number out of range by the usual line, naming the flag and the value', async () => {
    const { path: dir, remove } = await tempDir('negative');
    try {
      const res = await runCli(['crawl', '--out', dir, '--pages', 'http://127.0.0.1:9/', '--max-depth', '-1']);
      expect(res.code).toBe(2);
      expect(res.stderr.trim()).toBe(
        'altforge: Flag --max-depth: Too small: expected number to be >=0, got `-1` [ERR_INVALID_OPTION]',
      );
    } finally {
      await remove();
    }
  });

  it('names the flag the user typed and the value it got', async () => {
    const { path: dir, remove } = await tempDir('flag-terms');
    try {
      for (const [args, line] of [
        [
          ['filter', '--corpus', dir, '--skip-rule', 'foo'],
          /^altforge: Flag --skip-rule: .*expected one of "image_size"\|.*, got `foo` \[ERR_INVALID_OPTION\]$/,
        ],
        [
          ['eval', '--checkpoint', dir, '--benchmark', 'b', '--template', 'no braces'],
          /^altforge: Flag --template: a template must contain '\{\}', got `no braces` \[ERR_INVALID_OPTION\]$/,
        ],
        [
          ['compare', '--corpus', dir, '--benchmark', 'b', '--out', join(dir, 'cmp'), '--train-vendors', 'google'],
          /^altforge: Flags --train-vendors and --test-vendor .*: they need --setting emoji, got `--train-vendors google` \[ERR_INVALID_OPTION\]$/,
        ],
      ] as const) {
        const res = await runCli([...args]);
        expect(res.code, args.join(' ')).toBe(2);
        expect(res.stderr.trim().split('\n')).toHaveLength(1);
        expect(res.stderr.trim()).toMatch(line);
      }
    } finally {
      await remove();
    }
  });
});
