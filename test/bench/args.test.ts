/**
 * The benches' command line: `--help` prints the usage and exits 0 before any work, and bad input
 * (an unknown flag, a number out of range, a bad environment size) is one line on stderr, exit 2.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { BenchUsageError, checkedNumber, envNumber, parseBenchFlags } from '../../bench/_args.ts';
import { REPO_ROOT } from '../helpers/cli.ts';

const run = promisify(execFile);

/** Runs `tsx bench/NAME.ts ...args`; resolves with its exit code and output whatever the code. */
async function bench(
  name: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(join(REPO_ROOT, 'node_modules/.bin/tsx'), [`bench/${name}.ts`, ...args], {
      cwd: REPO_ROOT,
      env: { ...process.env, ...env },
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe('bench flags', () => {
  const options = { rate: { type: 'string' as const, default: '0.5' }, out: { type: 'string' as const } };

  it('parses flags, keeps defaults and sees --help', () => {
    const flags = parseBenchFlags(options, ['--out', '/tmp/x']);
    expect(flags.values['out']).toBe('/tmp/x');
    expect(flags.number('rate', 0, 1)).toBe(0.5);
    expect(flags.help).toBe(false);
    expect(parseBenchFlags(options, ['-h']).help).toBe(true);
  });

  it('refuses an unknown flag, a stray argument and a number out of range or not an integer', () => {
    expect(() => parseBenchFlags(options, ['--bogus'])).toThrow(BenchUsageError);
    expect(() => parseBenchFlags(options, ['stray'])).toThrow(BenchUsageError);
    expect(() => parseBenchFlags(options, ['--rate', '2']).number('rate', 0, 1)).toThrow(
      '--rate: expected a number in [0, 1], got `2`',
    );
    expect(() => checkedNumber('--seeds', '1.5', 1, 10, true)).toThrow('expected an integer');
    expect(() => checkedNumber('--seeds', ' ', 1, 10, true)).toThrow(BenchUsageError);
    expect(checkedNumber('--seeds', '3', 1, 10, true)).toBe(3);
  });

  describe('environment sizes', () => {
    afterEach(() => {
      delete process.env['ALTFORGE_TEST_BENCH_SIZE'];
    });
    it('reads a checked number, the fallback when unset', () => {
      expect(envNumber('ALTFORGE_TEST_BENCH_SIZE', 7, 1, 10)).toBe(7);
      process.env['ALTFORGE_TEST_BENCH_SIZE'] = '9';
      expect(envNumber('ALTFORGE_TEST_BENCH_SIZE', 7, 1, 10)).toBe(9);
      process.env['ALTFORGE_TEST_BENCH_SIZE'] = 'many';
      expect(() => envNumber('ALTFORGE_TEST_BENCH_SIZE', 7, 1, 10)).toThrow(
        'ALTFORGE_TEST_BENCH_SIZE: expected an integer in [1, 10], got `many`',
      );
    });
  });
});

describe('bench command lines', () => {
  it('--help prints the usage and exits 0 before any work', async () => {
    for (const name of ['crawl', 'compare']) {
      const result = await bench(name, ['--help']);
      expect(result.code).toBe(0);
      expect(result.stdout).toMatch(/^usage: /);
      // No work started: the crawl bench would announce the JPEGs it generates.
      expect(result.stderr).toBe('');
    }
  });

  it('bad input is one line on stderr, exit 2', async () => {
    const cases: Array<[string, string[], Record<string, string>, string]> = [
      ['crawl', ['--count', '5'], {}, "bench:crawl: Unknown option '--count'"],
      ['crawl', [], { BENCH_CRAWL_COUNT: 'abc' }, 'bench:crawl: BENCH_CRAWL_COUNT: expected an integer'],
      ['compare', ['--seeds', 'x'], {}, 'bench:compare: --seeds: expected an integer in [1, 1000], got `x`'],
      ['compare', ['--methods', 'vanilla,clip'], {}, 'bench:compare: --methods: expected a comma list'],
      [
        'compare',
        ['--thumbnail-spread', 'abc'],
        {},
        'bench:compare: --thumbnail-spread: expected a number in [0, 100], got `abc`',
      ],
      ['detection', ['--crossfit=yes'], {}, "bench:detection: Option '--crossfit' does not take an argument"],
      ['compare', ['--rates', '0,,0.5'], {}, 'bench:compare: --rates: expected a number in [0, 1], got ``'],
      ['compare', ['--rates', '0.5,0.5'], {}, 'bench:compare: --rates: expected each rate once, got `0.5,0.5`'],
      [
        'compare',
        ['--emoji-train-vendors', 'google,twitter'],
        {},
        "bench:compare: --emoji-train-vendors: expected distinct vendors other than the test vendor 'twitter'",
      ],
    ];
    for (const [name, args, env, message] of cases) {
      const result = await bench(name, args, env);
      expect(result.code).toBe(2);
      expect(result.stderr.trim().split('\n')).toHaveLength(1);
      expect(result.stderr).toContain(message);
    }
  });
});
