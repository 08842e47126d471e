/**
 * Runs the real `altforge` command (`node bin/altforge.js`) as a child process, in a process group
 * of its own so a test can signal it (and anything it started) the way a terminal would.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** The repository root. */
export const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface CliExit {
  /** Exit code, or null when a signal ended the process. */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface CliProcess {
  child: ChildProcess;
  /** Settles when the process has exited and its output is closed. */
  exited: Promise<CliExit>;
  /** True once the process has exited. */
  hasExited(): boolean;
  /** Sends `signal` to the process group the command runs in. */
  signal(signal: NodeJS.Signals): void;
}

/**
 * Starts `node bin/altforge.js ...args` from the repository root, colours off unless `options.env`
 * (the whole environment, instead of this process's) says otherwise.
 */
export function startCli(args: string[], options: { env?: NodeJS.ProcessEnv } = {}): CliProcess {
  const child = spawn(process.execPath, ['bin/altforge.js', ...args], {
    cwd: REPO_ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
    env: options.env ?? { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0' },
  });
  let stdout = '';
  let stderr = '';
  let done = false;
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = new Promise<CliExit>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code, signal) => {
      done = true;
      resolve({ code, signal, stdout, stderr });
    });
  });
  return {
    child,
    exited,
    hasExited: () => done,
    signal: (signal) => {
      if (done || child.pid === undefined) return;
      try {
        process.kill(-child.pid, signal);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
      }
    },
  };
}

/** Runs the command to its end. */
export function runCli(args: string[], options: { env?: NodeJS.ProcessEnv } = {}): Promise<CliExit> {
  return startCli(args, options).exited;
}

/** The non-empty lines of a stream's output. */
export function lines(text: string): string[] {
  return text.split(/\r?\n/).filter((line) => line.trim() !== '');
}

/**
 * Polls `probe` every `everyMs` until it returns a value other than undefined, or until `stop()`
 * says to give up (then resolves undefined). No deadline: the test runner's own timeout guards hangs.
 */
export async function pollUntil<T>(
  probe: () => T | undefined | Promise<T | undefined>,
  stop: () => boolean,
  everyMs = 10,
): Promise<T | undefined> {
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (stop()) return undefined;
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}
