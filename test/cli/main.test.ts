import { readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import { runCli } from '../helpers/cli.ts';

const COMMANDS = [
  'crawl',
  'dedup',
  'bench',
  'demo',
  'filter',
  'export',
  'train',
  'score',
  'doctor',
  'report',
  'eval',
  'compare',
];

describe('the altforge command', () => {
  test('lists every command with its description in --help', async () => {
    const { code, stdout } = await runCli(['--help']);
    expect(code).toBe(0);
    for (const name of COMMANDS) expect(stdout).toMatch(new RegExp(`^\\s+${name}\\s+\\S`, 'm'));
  });

  test('prints the package version with --version', async () => {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    const { code, stdout } = await runCli(['--version']);
    expect(code).toBe(0);
    expect(stdout.trim()).toBe(pkg.version);
  });

  test('shows a nested command’s own flags in --help', async () => {
    const { code, stdout } = await runCli(['bench', 'add', '--help']);
    expect(code).toBe(0);
    expect(stdout).toContain('--name');
    expect(stdout).toContain('--images');
  });

  test('help COMMAND is COMMAND --help; a nested usage line names its whole path', async () => {
    const viaHelp = await runCli(['help', 'bench', 'add']);
    const viaFlag = await runCli(['bench', 'add', '--help']);
    expect(viaHelp.code).toBe(0);
    expect(viaHelp.stdout).toBe(viaFlag.stdout);
    expect(viaFlag.stdout).toMatch(/^USAGE altforge bench add \[OPTIONS\]/m);
    expect((await runCli(['help'])).stdout).toBe((await runCli(['--help'])).stdout);
  });

  test('a command that needs a subcommand shows its usage, exit 2; an option before any command is one line', async () => {
    const bench = await runCli(['bench']);
    expect(bench.code).toBe(2);
    expect(bench.stdout).toMatch(/^USAGE altforge bench add\|list\|remove/m);
    for (const [args, expected] of [
      [['--bogus'], 'altforge: Unknown option --bogus: give a command first (altforge --help lists them)'],
      [
        ['bench', '--bogus'],
        'altforge: Unknown option --bogus: give a command first (altforge bench --help lists them)',
      ],
    ] as const) {
      const res = await runCli([...args]);
      expect(res.code).toBe(2);
      expect(res.stderr.trim().split('\n')).toEqual([expected]);
    }
  });

  test('writes no colour codes when its output is not a terminal, unless FORCE_COLOR asks', async () => {
    const env: NodeJS.ProcessEnv = { ...process.env, TERM: 'xterm-256color' };
    for (const name of ['NO_COLOR', 'FORCE_COLOR', 'TEST', 'CI']) delete env[name];
    const plain = await runCli(['train', '--help'], { env });
    expect(plain.code).toBe(0);
    expect(plain.stdout).toContain('USAGE altforge train');
    expect(plain.stdout).not.toContain('\u001b[');
    const unknown = await runCli(['no-such-command'], { env });
    expect(unknown.stderr).not.toContain('\u001b[');
    const forced = await runCli(['train', '--help'], { env: { ...env, FORCE_COLOR: '1' } });
    expect(forced.stdout).toContain('\u001b[');
  });

  test('refuses an unknown command with one line and exit code 2', async () => {
    const { code, stdout, stderr } = await runCli(['no-such-command']);
    expect(code).toBe(2);
    expect(stdout).toBe('');
    expect(stderr.trim().split('\n')).toHaveLength(1);
    expect(stderr).toContain('no-such-command');
  });
});
