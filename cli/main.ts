import { readFileSync } from 'node:fs';
import { defineCommand, runCommand, showUsage, type CommandDef } from 'citty';
import { benchCommand } from './bench.ts';
import { compareCommand } from './compare.ts';
import { crawlCommand } from './crawl.ts';
import { dedupCommand } from './dedup.ts';
import { demoCommand } from './demo.ts';
import { doctorCommand } from './doctor.ts';
import { evalCommand } from './eval.ts';
import { exportCommand } from './export.ts';
import { filterCommand } from './filter.ts';
import { reportCommand } from './report.ts';
import { scoreCommand } from './score.ts';
import { trainCommand } from './train.ts';
import { reportError } from './_run.ts';

const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
  version: string;
  description: string;
};

/** The `altforge` command: one subcommand per stage, each a thin wrapper over its `run<Stage>`. */
export const main = defineCommand({
  meta: { name: 'altforge', version: pkg.version, description: pkg.description },
  subCommands: {
    crawl: crawlCommand,
    dedup: dedupCommand,
    bench: benchCommand,
    demo: demoCommand,
    filter: filterCommand,
    export: exportCommand,
    train: trainCommand,
    score: scoreCommand,
    doctor: doctorCommand,
    report: reportCommand,
    eval: evalCommand,
    compare: compareCommand,
  },
});

/** Finds the (possibly nested: `bench add`) subcommand named in argv, for its `--help`. */
async function resolveCommand(argv: string[]): Promise<{ cmd: CommandDef; parent?: CommandDef }> {
  let cmd: CommandDef = main;
  let parent: CommandDef | undefined;
  for (const name of argv.filter((a) => !a.startsWith('-'))) {
    const subs = (typeof cmd.subCommands === 'function' ? await cmd.subCommands() : cmd.subCommands) ?? {};
    const sub = (subs as Record<string, CommandDef>)[name];
    if (sub === undefined) break;
    parent = cmd;
    cmd = sub;
  }
  return parent === undefined ? { cmd } : { cmd, parent };
}

/** Runs the CLI on `argv` (without node and script); resolves with the exit code. */
export async function runCli(argv: string[]): Promise<number> {
  try {
    if (argv.length === 0 || argv.includes('--help') || argv.includes('-h')) {
      const { cmd, parent } = await resolveCommand(argv);
      await showUsage(cmd, parent);
      return argv.length === 0 ? 2 : 0;
    }
    if (argv[0] === '--version' || argv[0] === '-v') {
      process.stdout.write(pkg.version + '\n');
      return 0;
    }
    await runCommand(main, { rawArgs: argv });
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    return reportError(err);
  }
}
