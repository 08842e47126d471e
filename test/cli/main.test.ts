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

  test('refuses an unknown command with one line and exit code 2', async () => {
    const { code, stdout, stderr } = await runCli(['no-such-command']);
    expect(code).toBe(2);
    expect(stdout).toBe('');
    expect(stderr.trim().split('\n')).toHaveLength(1);
    expect(stderr).toContain('no-such-command');
  });
});
