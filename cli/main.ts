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
  const path = ['altforge'];
  for (const name of argv.filter((a) => !a.startsWith('-'))) {
    const subs = (typeof cmd.subCommands === 'function' ? await cmd.subCommands() : cmd.subCommands) ?? {};
    const entry = (subs as Record<string, Resolvable<CommandDef>>)[name];
    if (entry === undefined) break;
    const sub = await (typeof entry === 'function' ? entry() : entry);
    // The usage line names the parent by its whole path (`altforge bench add`, not `bench add`).
    const meta = await (typeof cmd.meta === 'function' ? cmd.meta() : cmd.meta);
    parent = { ...cmd, meta: { ...meta, name: path.join(' ') } };
    path.push(name);
    cmd = sub;
  }
  return parent === undefined ? { cmd } : { cmd, parent };
}

/** Runs the CLI on `argv` (without node and script); resolves with the exit code. */
export async function runCli(argv: string[]): Promise<number> {
  // `altforge help [COMMAND...]` is `altforge [COMMAND...] --help`.
  if (argv[0] === 'help') argv = [...argv.slice(1), '--help'];
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
    if ((err as { code?: string }).code === 'E_NO_COMMAND') return noCommand(argv);
    return reportError(err);
  }
}

/**
 * No command named where one is needed: an option before any command is unknown (`altforge
 * --bogus`); a command with subcommands given none (`altforge bench`) shows its usage. Exit 2.
 */
async function noCommand(argv: string[]): Promise<number> {
  const { cmd, parent } = await resolveCommand(argv);
  const option = argv.find((a) => a.startsWith('-'));
  if (option !== undefined) {
    const named = argv.filter((a) => !a.startsWith('-')).join(' ');
    process.stderr.write(
      `altforge: Unknown option ${option}: give a command first (altforge ${named ? `${named} ` : ''}--help lists them)\n`,
    );
    return 2;
  }
  await showUsage(cmd, parent);
  return 2;
}
