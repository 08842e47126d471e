import { AltforgeError, UsageError } from '../corpus/errors.ts';
import { inFlagTerms, parseFlags, type FlagSpecs } from './_args.ts';
import { createProgress, stopBarsForNotice } from './_progress.ts';

let controller: AbortController | undefined;

/**
 * An AbortSignal fired by the first SIGINT/SIGTERM: stages stop taking new work, finish what is in
 * flight and close cleanly. A second signal exits at once (the manifest stays consistent anyway).
 * The signal is acknowledged at once, in one line (the run's summary comes when it ends), under the
 * progress bar, which stops there.
 */
export function interruptSignal(): AbortSignal {
  if (controller === undefined) {
    const c = new AbortController();
    controller = c;
    const onSignal = (name: NodeJS.Signals) => {
      if (c.signal.aborted) process.exit(130);
      // Without a bar to end its line, a terminal's echoed ^C is ended first; a log gets no blank line.
      const newline = !stopBarsForNotice() && process.stderr.isTTY ? '\n' : '';
      // A SIGTERM comes from a process manager or `kill`, not a keyboard: the second one is named as such.
      const again =
        name === 'SIGINT' ? 'press Ctrl-C again to stop at once' : 'a second SIGTERM (or Ctrl-C) stops at once';
      process.stderr.write(`${newline}${name}: finishing the items in flight; ${again}\n`);
      c.abort();
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  }
  return controller.signal;
}

/** Sets the exit code the process ends with. */
export function setExitCode(code: number): void {
  process.exitCode = code;
}

/**
 * Maps an error to its exit code and one line on stderr: usage errors exit 2, a run stopped by
 * Ctrl-C (`ERR_INTERRUPTED`) 130, other failures 1.
 */
export function reportError(err: unknown): number {
  const isUsage =
    err instanceof UsageError ||
    (err instanceof Error &&
      ['EARG', 'E_UNKNOWN_COMMAND', 'E_NO_COMMAND'].includes((err as { code?: string }).code ?? ''));
  const message =
    err instanceof UsageError
      ? inFlagTerms(err.message, err.context)
      : err instanceof Error
        ? err.message
        : String(err);
  const code = err instanceof AltforgeError ? ` [${err.code}]` : '';
  process.stderr.write(`altforge: ${message.split('\n')[0]}${code}\n`);
  if (!isUsage && process.env['ALTFORGE_DEBUG'] && err instanceof Error && err.stack)
    process.stderr.write(err.stack + '\n');
  if (err instanceof AltforgeError && err.code === 'ERR_INTERRUPTED') return 130;
  return isUsage ? 2 : 1;
}

/** One stage command: flags in, the stage run with a progress bar and Ctrl-C handling, a summary out. */
export interface StageCommand<R> {
  rawArgs: string[];
  flags: FlagSpecs;
  /** Flags that must be given (camelCase) and the one-line message when one is missing. */
  required?: Record<string, string>;
  /** How many arguments that are not flags the command takes (`hooks.positionals`). @default 0 */
  maxPositionals?: number;
  /** Runs the stage with the parsed flags (without `json` and `progress`). */
  run(options: Record<string, unknown>, hooks: StageHooks): Promise<R>;
  /** The human summary line(s), on stderr. */
  summarize?(result: R): string;
  /** The command's output proper (a report, a table), on stdout; `--json` replaces it. */
  report?(result: R): string;
  /** Whether the run stopped on Ctrl-C (exit 130). */
  interrupted?(result: R): boolean;
}

/** What a stage command hands its stage: a progress callback and the Ctrl-C signal. */
export interface StageHooks {
  /** `ok` and `failed` (the crawl's and registration's counts) add an ok-rate to the bar. */
  onProgress(progress: { phase: string; done: number; total?: number | null; ok?: number; failed?: number }): void;
  signal: AbortSignal;
  positionals: string[];
}

/**
 * The body every stage command shares: strict flags (usage error, exit 2), required flags, a
 * progress bar on a terminal (off with `--json` or `--no-progress`), the result as JSON on stdout
 * with `--json`, else the report on stdout and the summary on stderr, exit 130 after Ctrl-C.
 */
export async function runStageCommand<R>(command: StageCommand<R>): Promise<R> {
  const { values, positionals } = parseFlags(command.rawArgs, command.flags, command.maxPositionals);
  const {
    json,
    progress: showProgress,
    ...options
  } = values as Record<string, unknown> & {
    json?: boolean;
    progress?: boolean;
  };
  for (const [flag, message] of Object.entries(command.required ?? {})) {
    if (options[flag] === undefined) throw new UsageError('ERR_USAGE', message);
  }
  const bar = createProgress(showProgress !== false && json !== true);
  let result: R;
  try {
    result = await command.run(options, {
      onProgress: (p) => bar.update(p.phase, p.done, p.total ?? null, p.ok, p.failed),
      signal: interruptSignal(),
      positionals,
    });
  } finally {
    bar.stop();
  }
  if (json) process.stdout.write(JSON.stringify(result) + '\n');
  else {
    const report = command.report?.(result) ?? '';
    const summary = command.summarize?.(result) ?? '';
    if (report !== '') process.stdout.write(report + '\n');
    if (summary !== '') process.stderr.write(summary + '\n');
  }
  if (command.interrupted?.(result)) setExitCode(130);
  return result;
}
