import { readFileSync } from 'node:fs';
import { defineCommand, renderUsage, runCommand, type CommandDef, type Resolvable, type SubCommandsDef } from 'citty';
import { reportError } from './_run.ts';
import { EXAMPLES } from './_examples.ts';
import { fitUsage, renderExamples, usageWidth } from './_usage.ts';

const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
  version: string;
  description: string;
};

/**
 * The commands in the order of the work, in three groups, each with the line `altforge --help`
 * shows (the command's own --help gives its whole description). Each is loaded when it is run:
 * `--help` and `--version` never load tfjs, sharp or SQLite.
 */
const COMMANDS: ReadonlyArray<{ group: string; name: string; summary: string; load: SubCommandsDef[string] }> = [
  {
    group: 'Build a corpus',
    name: 'crawl',
    summary: 'Crawl alt-text pairs from pages, WARC/WAT files or URL lists into shards and a manifest',
    load: () => import('./crawl.ts').then((m) => m.crawlCommand),
  },
  {
    group: 'Build a corpus',
    name: 'filter',
    summary: "Apply ALIGN's frequency rules (or DataComp's basic filter), recording each pair's reason",
    load: () => import('./filter.ts').then((m) => m.filterCommand),
  },
  {
    group: 'Build a corpus',
    name: 'bench',
    summary: 'Register the downstream test sets that dedup keeps out and eval measures on',
    load: () => import('./bench.ts').then((m) => m.benchCommand),
  },
  {
    group: 'Build a corpus',
    name: 'dedup',
    summary: 'Flag near-duplicates of registered test images and within-corpus clusters',
    load: () => import('./dedup.ts').then((m) => m.dedupCommand),
  },
  {
    group: 'Build a corpus',
    name: 'export',
    summary: 'Write the kept pairs into new WebDataset shards',
    load: () => import('./export.ts').then((m) => m.exportCommand),
  },
  {
    group: 'Train and evaluate',
    name: 'train',
    summary: 'Train a contrastive dual encoder, vanilla or noise-robust (--robust nlip)',
    load: () => import('./train.ts').then((m) => m.trainCommand),
  },
  {
    group: 'Train and evaluate',
    name: 'score',
    summary: "Write each pair's noise probability to the manifest (filter --max-noise-prob reads it)",
    load: () => import('./score.ts').then((m) => m.scoreCommand),
  },
  {
    group: 'Train and evaluate',
    name: 'eval',
    summary: 'Zero-shot retrieval and classification of a checkpoint on registered benchmarks',
    load: () => import('./eval.ts').then((m) => m.evalCommand),
  },
  {
    group: 'Train and evaluate',
    name: 'compare',
    summary: 'Noise-robust vs vanilla at injected noise rates, side by side: tables and plots',
    load: () => import('./compare.ts').then((m) => m.compareCommand),
  },
  {
    group: 'See and check',
    name: 'report',
    summary: 'Write a static HTML report of a corpus, its training runs and a comparison',
    load: () => import('./report.ts').then((m) => m.reportCommand),
  },
  {
    group: 'See and check',
    name: 'demo',
    summary: 'Run the whole toolkit on built-in data, offline, and write its report',
    load: () => import('./demo.ts').then((m) => m.demoCommand),
  },
  {
    group: 'See and check',
    name: 'doctor',
    summary: 'Show the training backend auto picks and why, the BLAS rate, and versions',
    load: () => import('./doctor.ts').then((m) => m.doctorCommand),
  },
];

/** The `altforge` command: one subcommand per stage, each a thin wrapper over its `run<Stage>`. */
export const main = defineCommand({
  meta: { name: 'altforge', version: pkg.version, description: pkg.description },
  subCommands: Object.fromEntries(COMMANDS.map((c) => [c.name, c.load])),
});

/** `altforge --help`: the commands by group, in the order of the work, one short line each. */
function mainUsage(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  const out = [`${pkg.description} (altforge v${pkg.version})`, '', 'USAGE altforge <command> [OPTIONS]'];
  let group = '';
  for (const c of COMMANDS) {
    if (c.group !== group) out.push('', c.group);
    group = c.group;
    out.push(`  ${c.name.padEnd(width)}  ${c.summary}`);
  }
  out.push('', 'altforge <command> --help (or altforge help <command>) shows its whole description and options.');
  return out.join('\n') + '\n';
}

/** Where argv names a command, as {@link findCommand} reads it. */
interface FoundCommand {
  /** The command named (`altforge` itself when none is). */
  cmd: CommandDef;
  /** Its parent, for its usage line. */
  parent?: CommandDef;
  /** Its whole name: `['altforge', 'bench', 'add']`. */
  path: string[];
  /** A word where a subcommand of `cmd` goes that names none (`altforge evaluate`). */
  unknown?: string;
  /** The first option given before a command name (`--out` in `altforge --out x crawl`). */
  optionFirst?: string;
}

/** The subcommands of `cmd`; empty for a command that runs on its own. */
async function subCommandsOf(cmd: CommandDef): Promise<Record<string, Resolvable<CommandDef>>> {
  const subs = typeof cmd.subCommands === 'function' ? await cmd.subCommands() : cmd.subCommands;
  return (subs ?? {}) as Record<string, Resolvable<CommandDef>>;
}

/**
 * Finds the (possibly nested: `bench add`) command named in argv. Options belong after their
 * command (altforge and bench take none of their own), but one given before it may have a value,
 * so a word after an option that names no command is read as that value, and the command looked
 * for further on: `altforge --out x crawl` names crawl (and `--out` came first), where `altforge
 * evaluate` names an unknown command.
 */
async function findCommand(argv: string[]): Promise<FoundCommand> {
  let cmd: CommandDef = main;
  let parent: CommandDef | undefined;
  const path = ['altforge'];
  let optionFirst: string | undefined;
  let at = 0;
  for (;;) {
    const subs = await subCommandsOf(cmd);
    if (Object.keys(subs).length === 0) break;
    let option: string | undefined;
    let name: string | undefined;
    for (; at < argv.length; at++) {
      const word = argv[at] as string;
      if (word.startsWith('-')) option ??= word;
      else if (Object.hasOwn(subs, word)) {
        name = word;
        break;
      } else if (option === undefined) {
        return { cmd, ...(parent && { parent }), path, unknown: word };
      }
    }
    optionFirst ??= option;
    if (name === undefined) break;
    const entry = subs[name] as Resolvable<CommandDef>;
    const sub = await (typeof entry === 'function' ? entry() : entry);
    // The usage line names the parent by its whole path (`altforge bench add`, not `bench add`).
    const meta = await (typeof cmd.meta === 'function' ? cmd.meta() : cmd.meta);
    parent = { ...cmd, meta: { ...meta, name: path.join(' ') } };
    path.push(name);
    cmd = sub;
    at++;
  }
  return { cmd, ...(parent && { parent }), path, ...(optionFirst !== undefined && { optionFirst }) };
}

/** Runs the CLI on `argv` (without node and script); resolves with the exit code. */
export async function runCli(argv: string[]): Promise<number> {
  // `altforge help [COMMAND...]` is `altforge [COMMAND...] --help`.
  if (argv[0] === 'help') argv = [...argv.slice(1), '--help'];
  try {
    if (argv.length === 0 || argv.includes('--help') || argv.includes('-h')) {
      const found = await findCommand(argv);
      // `altforge help evaluate` is no command's help: named as an unknown command is, not the list.
      if (found.unknown !== undefined) return await unknownCommand(found, found.unknown);
      const { cmd, parent, path } = found;
      await showUsage(cmd, parent, path);
      return argv.length === 0 ? 2 : 0;
    }
    if (argv[0] === '--version' || argv[0] === '-v') {
      process.stdout.write(pkg.version + '\n');
      return 0;
    }
    const found = await findCommand(argv);
    if (found.unknown !== undefined) return await unknownCommand(found, found.unknown);
    const runnable = Object.keys(await subCommandsOf(found.cmd)).length === 0;
    if (found.optionFirst !== undefined) return refuseOptionFirst(found.path, found.optionFirst, runnable);
    if (!runnable) {
      // A command that needs a subcommand, given none (`altforge bench`): its usage.
      await showUsage(found.cmd, found.parent, found.path);
      return 2;
    }
    await runCommand(main, { rawArgs: argv });
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    return reportError(err);
  }
}

/**
 * An option before the command: options go after it, the command's own (`altforge --out x crawl`:
 * crawl's --out), since altforge and bench take none. Without a command, the option is unknown
 * (`altforge --bogus`). One line, exit 2.
 */
function refuseOptionFirst(path: string[], option: string, runnable: boolean): number {
  const command = path.join(' ');
  process.stderr.write(
    runnable
      ? `altforge: Option ${option} comes before the command: give it after (${command} ${option} ...)\n`
      : `altforge: Unknown option ${option}: give a command first (${command} --help lists them)\n`,
  );
  return 2;
}

/**
 * A command name that is not one: names it, with the nearest command when one is a slip away
 * (`altforge evaluate` → eval), and where the list is. Exit 2.
 */
async function unknownCommand({ cmd, path }: FoundCommand, unknown: string): Promise<number> {
  const near = Object.keys(await subCommandsOf(cmd)).find((name) => isSlip(unknown, name));
  const list = [...path, '--help'].join(' ');
  process.stderr.write(
    `altforge: Unknown command '${unknown}'${near ? ` (did you mean ${near}?)` : ''}: ${list} lists them\n`,
  );
  return 2;
}

/**
 * Prints a command's usage fitted to the terminal (`altforge` itself: {@link mainUsage}), then its
 * examples (cli/_examples.ts) under a heading styled as citty styles its `USAGE`.
 */
async function showUsage(cmd: CommandDef, parent: CommandDef | undefined, path: string[]): Promise<void> {
  const width = usageWidth();
  if (cmd === main) {
    process.stdout.write(fitUsage(mainUsage(), width) + '\n');
    return;
  }
  let text = await renderUsage(cmd, parent);
  const examples = EXAMPLES[path.slice(1).join(' ')];
  if (examples !== undefined) {
    const [, before = '', after = ''] = /^(\S*?)USAGE(\S*)/m.exec(text) ?? [];
    text = `${text.trimEnd()}\n\n${renderExamples(examples, `${before}EXAMPLES${after}`, width)}\n`;
  }
  process.stdout.write(fitUsage(text + '\n', width) + '\n');
}

/** Whether `typed` is `name` with a slip: its start (`comp`), or at most two letters wrong. */
function isSlip(typed: string, name: string): boolean {
  if (typed.length >= 3 && (name.startsWith(typed) || typed.startsWith(name))) return true;
  // Edit distance, one row at a time.
  let prev = Array.from({ length: name.length + 1 }, (_, j) => j);
  for (let i = 1; i <= typed.length; i++) {
    const row = [i];
    for (let j = 1; j <= name.length; j++) {
      row.push(Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (typed[i - 1] === name[j - 1] ? 0 : 1)));
    }
    prev = row;
  }
  return prev[name.length]! <= Math.min(2, name.length - 2);
}
