import { AltforgeError, UsageError } from '../corpus/errors.ts';

let controller: AbortController | undefined;

/**
 * An AbortSignal fired by the first SIGINT/SIGTERM: stages stop taking new work, finish what is in
 * flight and close cleanly. A second signal exits at once (the manifest stays consistent anyway).
 */
export function interruptSignal(): AbortSignal {
  if (controller === undefined) {
    const c = new AbortController();
    controller = c;
    const onSignal = (name: NodeJS.Signals) => {
      if (c.signal.aborted) process.exit(130);
      process.stderr.write(`\n${name}: finishing the items in flight; press Ctrl-C again to stop at once\n`);
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

/** Maps an error to its exit code and one line on stderr: usage errors exit 2, failures exit 1. */
export function reportError(err: unknown): number {
  const isUsage =
    err instanceof UsageError ||
    (err instanceof Error &&
      ['EARG', 'E_UNKNOWN_COMMAND', 'E_NO_COMMAND'].includes((err as { code?: string }).code ?? ''));
  const message = err instanceof Error ? err.message : String(err);
  const code = err instanceof AltforgeError ? ` [${err.code}]` : '';
  process.stderr.write(`altforge: ${message.split('\n')[0]}${code}\n`);
  if (!isUsage && process.env['ALTFORGE_DEBUG'] && err instanceof Error && err.stack)
    process.stderr.write(err.stack + '\n');
  return isUsage ? 2 : 1;
}
