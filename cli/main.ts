import { readFileSync } from 'node:fs';
import { defineCommand, runCommand, showUsage, type CommandDef, type Resolvable } from 'citty';
import { reportError } from './_run.ts';

const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
  version: string;
  description: string;
};

/** The `altforge` command: one subcommand per stage, each a thin wrapper over its `run<Stage>`. */
export const main = defineCommand({
  meta: { name: 'altforge', version: pkg.version, description: pkg.description },
  // Each command is loaded when it is run: `--help` and `--version` never load tfjs, sharp or SQLite.
  subCommands: {
    crawl: () => import('./crawl.ts').then((m) => m.crawlCommand),
    dedup: () => import('./dedup.ts').then((m) => m.dedupCommand),
    bench: () => import('./bench.ts').then((m) => m.benchCommand),
    demo: () => import('./demo.ts').then((m) => m.demoCommand),
    filter: () => import('./filter.ts').then((m) => m.filterCommand),
    export: () => import('./export.ts').then((m) => m.exportCommand),
    train: () => import('./train.ts').then((m) => m.trainCommand),
    score: () => import('./score.ts').then((m) => m.scoreCommand),
    doctor: () => import('./doctor.ts').then((m) => m.doctorCommand),
    report: () => import('./report.ts').then((m) => m.reportCommand),
    eval: () => import('./eval.ts').then((m) => m.evalCommand),
    compare: () => import('./compare.ts').then((m) => m.compareCommand),
  },
});

/** Finds the (possibly nested: `bench add`) subcommand named in argv, for its `--help`. */
async function resolveCommand(argv: string[]): Promise<{ cmd: CommandDef; parent?: CommandDef }> {
  let cmd: CommandDef = main;
  let parent: CommandDef | undefined;
  for (const name of argv.filter((a) => !a.startsWith('-'))) {
    const subs = (typeof cmd.subCommands === 'function' ? await cmd.subCommands() : cmd.subCommands) ?? {};
    const entry = (subs as Record<string, Resolvable<CommandDef>>)[name];
    if (entry === undefined) break;
    const sub = await (typeof entry === 'function' ? entry() : entry);
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
