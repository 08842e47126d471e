import { describe, expect, test } from 'vitest';
import { cittyArgs } from '../../cli/_args.ts';
import { fitUsage, renderExamples } from '../../cli/_usage.ts';
import { runCli } from '../helpers/cli.ts';

describe('usage fitted to the terminal', () => {
  test('wraps a table row under its description column, keeps a default whole, and trims the padding', () => {
    const text = [
      '    --short    Short description              ',
      '  --longer=<N>    one two three four five six seven (Default: 12)',
    ].join('\n');
    expect(fitUsage(text, 50)).toBe(
      [
        '    --short    Short description',
        '  --longer=<N>    one two three four five six',
        '                  seven (Default: 12)',
      ].join('\n'),
    );
  });

  test('counts colour codes as no width, and indents 8 when the first column leaves no room', () => {
    const cyan = (s: string): string => `\x1b[36m${s}\x1b[39m`;
    const text = `${cyan('  --a-very-long-flag-name=<VALUE>')}    alpha beta gamma delta`;
    expect(fitUsage(text, 44)).toBe(`${cyan('  --a-very-long-flag-name=<VALUE>')}    alpha\n        beta gamma delta`);
  });

  test('every command’s --help fits 100 columns when its output is not a terminal', async () => {
    for (const args of [[], ['crawl'], ['filter'], ['bench', 'add'], ['train'], ['compare'], ['eval']]) {
      const { code, stdout } = await runCli([...args, '--help']);
      expect(code).toBe(0);
      for (const line of stdout.split('\n'))
        expect([...line].length, `${args.join(' ')}: ${line}`).toBeLessThanOrEqual(100);
      expect(stdout).not.toMatch(/ \n/);
    }
  });

  test('says of every switch whether it is on or off by default, and how to turn an on one off', async () => {
    const args = cittyArgs({
      flip: { type: 'boolean', description: 'Random flips' },
      captions: { type: 'boolean', description: 'Flag leaked captions', default: true },
      relabel: { type: 'boolean', description: 'Relabel (--no-relabel: off)', default: true },
    });
    expect(Object.values(args).map((arg) => arg.description)).toEqual([
      'Random flips (Default: off)',
      'Flag leaked captions (Default: on; --no-captions turns it off)',
      'Relabel (--no-relabel: off) (Default: on)',
    ]);
    // The help as a user reads it, its wrapped lines joined.
    const help = async (command: string) => (await runCli([command, '--help'])).stdout.replace(/\s+/g, ' ');
    expect(await help('score')).toContain(
      '--completion Write completed captions for likely-noisy pairs (--no-completion: none) (Default: on)',
    );
    expect(await help('train')).toContain(
      '--completion Noise completion: train noisy pairs on captions of retrieved concepts (Default: off)',
    );
    const crawl = await help('crawl');
    expect(crawl).toContain('--upscale Enlarge images smaller than --image-size (keep_ratio modes) (Default: off)');
    expect(crawl).toContain('--progress Show a progress bar on a terminal (Default: on; --no-progress turns it off)');
  });

  test('breaks a long example before a flag with a shell continuation, and wraps its comment as comments', () => {
    const example = {
      comment: 'Your own classification prompts, the result as JSON',
      command: "npx altforge eval --checkpoint /tmp/run --template 'a photo of a {}.' --json",
    };
    expect(renderExamples([example, { command: 'npx altforge doctor' }], 'EXAMPLES', 40)).toBe(
      [
        'EXAMPLES',
        '',
        '  # Your own classification prompts, the',
        '  # result as JSON',
        '  npx altforge eval \\',
        '      --checkpoint /tmp/run \\',
        "      --template 'a photo of a {}.' \\",
        '      --json',
        '',
        '  npx altforge doctor',
      ].join('\n'),
    );
  });
});
