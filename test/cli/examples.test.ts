/**
 * The examples of every command's --help (cli/_examples.ts) cannot go stale: each names a real
 * command, parses with that command's own flags, and is a command of README.md word for word.
 */
import { readFileSync } from 'node:fs';
import type { ArgsDef, CommandDef, Resolvable } from 'citty';
import { describe, expect, test } from 'vitest';
import { flagSpecsOf, parseFlags } from '../../cli/_args.ts';
import { commandWords, EXAMPLES } from '../../cli/_examples.ts';
import { main } from '../../cli/main.ts';
import { runCli } from '../helpers/cli.ts';

const resolve = async <T>(value: Resolvable<T> | (() => Resolvable<T>)): Promise<T> =>
  (typeof value === 'function' ? await (value as () => Resolvable<T>)() : await value) as T;

/** Every runnable command and every command with subcommands, by name (`bench add`). */
async function allCommands(cmd: CommandDef = main, path: string[] = []): Promise<Map<string, CommandDef>> {
  const found = new Map<string, CommandDef>();
  if (path.length > 0) found.set(path.join(' '), cmd);
  const subs = cmd.subCommands === undefined ? {} : await resolve(cmd.subCommands);
  for (const [name, sub] of Object.entries(subs)) {
    for (const [key, def] of await allCommands(await resolve(sub), [...path, name])) found.set(key, def);
  }
  return found;
}

/** The commands of README.md's sh blocks: lines continued with `\` joined, a trailing `# ...` left off. */
function readmeCommands(): Set<string> {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  const blocks = [...readme.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1] as string);
  const lines = blocks.flatMap((block) => block.replace(/ \\\n\s*/g, ' ').split('\n'));
  return new Set(lines.map((line) => line.replace(/\s+# .*$/, '').trim()));
}

describe('the examples of --help', () => {
  test('every command has one to three, each a README command that parses with its command’s flags', async () => {
    const commands = await allCommands();
    expect(Object.keys(EXAMPLES).sort()).toEqual([...commands.keys()].sort());
    const readme = readmeCommands();
    for (const [name, examples] of Object.entries(EXAMPLES)) {
      expect(examples.length, name).toBeGreaterThanOrEqual(1);
      expect(examples.length, name).toBeLessThanOrEqual(3);
      for (const { command } of examples) {
        expect(readme.has(command), `${command}: not a command of README.md`).toBe(true);
        const words = commandWords(command);
        // `npx altforge bench add ...`: the words up to the first flag or argument name the command.
        expect(words.slice(0, 2)).toEqual(['npx', 'altforge']);
        let at = 2;
        let named = '';
        while (at < words.length && commands.has([named, words[at]].filter(Boolean).join(' '))) {
          named = [named, words[at++]].filter(Boolean).join(' ');
        }
        // A command's own, or for one with subcommands (bench), one of theirs.
        expect(named === name || named.startsWith(`${name} `), `${command}: not a ${name} command`).toBe(true);
        const cmd = commands.get(named) as CommandDef;
        expect(cmd.subCommands, `${command}: names no command that runs`).toBeUndefined();
        const args = (cmd.args === undefined ? {} : await resolve(cmd.args)) as ArgsDef;
        const takesArguments = Object.values(args).some((arg) => arg.type === 'positional');
        const flags = flagSpecsOf(args);
        expect(() => parseFlags(words.slice(at), flags, takesArguments ? Infinity : 0), command).not.toThrow();
      }
    }
  });

  test('end every command’s --help, each command on lines that fit 100 columns', async () => {
    for (const name of Object.keys(EXAMPLES)) {
      const { code, stdout } = await runCli([...name.split(' '), '--help']);
      expect(code).toBe(0);
      const section = stdout.slice(stdout.indexOf('\nEXAMPLES\n'));
      expect(section, name).toMatch(/^\nEXAMPLES\n\n {2}(# |npx altforge )/);
      // Pasted into a shell, each example is its command as it is in README.md.
      const pasted = section.replace(/ \\\n\s*/g, ' ');
      for (const { command } of EXAMPLES[name] ?? []) expect(pasted, name).toContain(`\n  ${command}\n`);
      for (const line of section.split('\n')) expect(line.length, line).toBeLessThanOrEqual(100);
    }
  });
});
