import { readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import { runCli } from '../helpers/cli.ts';

/** The commands in the order of the work, as `altforge --help` lists them. */
const COMMANDS = [
  'crawl',
  'filter',
  'bench',
  'dedup',
  'export',
  'train',
  'score',
  'eval',
  'compare',
  'report',
  'demo',
  'doctor',
];

describe('the altforge command', () => {
  test('lists every command with a line of description in --help, in the order of the work, each line fitting a terminal', async () => {
    const { code, stdout } = await runCli(['--help']);
    expect(code).toBe(0);
    const listed = [...stdout.matchAll(/^ {2}([a-z]+) +\S/gm)].map((m) => m[1]);
    expect(listed).toEqual(COMMANDS);
    for (const line of stdout.split('\n')) expect(line.length, line).toBeLessThanOrEqual(100);
    expect(stdout).toMatch(/^Build a corpus\n {2}crawl /m);
    // The same list with no arguments at all, as a usage error.
    const bare = await runCli([]);
    expect(bare.code).toBe(2);
    expect(bare.stdout).toBe(stdout);
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

  test('an option before the command: its value is not taken for the command, and the line says to give it after', async () => {
    for (const [args, expected] of [
      [
        ['--out', 'x', 'crawl'],
        'altforge: Option --out comes before the command: give it after (altforge crawl --out ...)',
      ],
      [
        ['--name', 'x', 'bench', 'add', '--images', 'y'],
        'altforge: Option --name comes before the command: give it after (altforge bench add --name ...)',
      ],
      [['--out', 'x'], 'altforge: Unknown option --out: give a command first (altforge --help lists them)'],
    ] as const) {
      const res = await runCli([...args]);
      expect(res.code).toBe(2);
      expect(res.stdout).toBe('');
      expect(res.stderr.trim().split('\n')).toEqual([expected]);
    }
    const help = await runCli(['--out', 'x', 'crawl', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toBe((await runCli(['crawl', '--help'])).stdout);
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

  test('names the command meant when the one typed is a slip, and where the list is', async () => {
    for (const [args, line] of [
      [['evaluate'], "altforge: Unknown command 'evaluate' (did you mean eval?): altforge --help lists them"],
      [
        ['trian', '--steps', '2'],
        "altforge: Unknown command 'trian' (did you mean train?): altforge --help lists them",
      ],
      [['bench', 'ad'], "altforge: Unknown command 'ad' (did you mean add?): altforge bench --help lists them"],
      [['frobnicate'], "altforge: Unknown command 'frobnicate': altforge --help lists them"],
    ] as const) {
      const run = await runCli([...args]);
      expect(run.code).toBe(2);
      expect(run.stderr.trim()).toBe(line);
    }
  });

  test('asked for the help of an unknown command, names it as unknown, not the list of commands', async () => {
    for (const [args, line] of [
      [['help', 'foo'], "altforge: Unknown command 'foo': altforge --help lists them"],
      [['evaluate', '--help'], "altforge: Unknown command 'evaluate' (did you mean eval?): altforge --help lists them"],
      [['help', 'bench', 'ad'], "altforge: Unknown command 'ad' (did you mean add?): altforge bench --help lists them"],
    ] as const) {
      const run = await runCli([...args]);
      expect(run.code, args.join(' ')).toBe(2);
      expect(run.stdout).toBe('');
      expect(run.stderr.trim()).toBe(line);
    }
  });
});
