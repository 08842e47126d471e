/**
 * Runs the real `altforge` command on a pseudo-terminal, as a person at a terminal runs it (progress
 * bars drawn, Ctrl-C a key press), and reads what the terminal then shows. The terminal comes from
 * python3's `pty` module (python3 is part of the set-up: better-sqlite3 builds with it).
 */
import { spawn } from 'node:child_process';
import { REPO_ROOT } from './cli.ts';

/** Starts `python3`, which starts the command on a new terminal and passes our stdin to it as keys. */
const PTY_RUNNER = 'import os, pty, sys; sys.exit(os.waitstatus_to_exitcode(pty.spawn(sys.argv[1:])))';

export interface TerminalProcess {
  /** Everything written to the terminal so far, escape sequences included. */
  output(): string;
  /** Types `keys` at the terminal (`'\x03'`: Ctrl-C). */
  type(keys: string): void;
  hasExited(): boolean;
  /** The exit code and the whole output, once the command has ended. */
  exited: Promise<{ code: number | null; output: string }>;
}

/** Starts `node bin/altforge.js ...args` on a terminal, colours off. */
export function startCliInTerminal(args: string[]): TerminalProcess {
  const child = spawn('python3', ['-c', PTY_RUNNER, process.execPath, 'bin/altforge.js', ...args], {
    cwd: REPO_ROOT,
    stdio: ['pipe', 'pipe', 'inherit'],
    env: { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0' },
  });
  let output = '';
  let done = false;
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  const exited = new Promise<{ code: number | null; output: string }>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => {
      done = true;
      resolve({ code, output });
    });
  });
  return { output: () => output, type: (keys) => child.stdin.write(keys), hasExited: () => done, exited };
}

/**
 * The lines a terminal shows after `output`, trailing spaces and empty last lines left out. Enough
 * of a terminal for progress bars: characters, carriage return, line feed, cursor column (`CSI n
 * G`), erase in line (`CSI K`, `CSI 2K`), cursor save and restore (`ESC 7`, `ESC 8`); other
 * sequences change nothing shown. The screen is tall enough never to scroll.
 */
export function screenOf(output: string): string[] {
  const screen: string[][] = [[]];
  let x = 0;
  let y = 0;
  let saved = { x: 0, y: 0 };
  const row = (): string[] => (screen[y] ??= []);
  for (let i = 0; i < output.length; i++) {
    const c = output[i] as string;
    if (c === '\x1b') {
      const next = output[i + 1];
      if (next === '7') saved = { x, y };
      else if (next === '8') ({ x, y } = saved);
      else if (next === '[') {
        let end = i + 2;
        while (end < output.length && !/[@-~]/.test(output[end] as string)) end++;
        const param = output.slice(i + 2, end);
        const command = output[end];
        if (command === 'G') x = Math.max(Number(param) || 1, 1) - 1;
        else if (command === 'K') row().length = param === '2' ? 0 : Math.min(row().length, x);
        i = end;
        continue;
      }
      i++;
    } else if (c === '\r') {
      x = 0;
    } else if (c === '\n') {
      y++;
      row();
    } else {
      const line = row();
      while (line.length < x) line.push(' ');
      line[x++] = c;
    }
  }
  const lines = Array.from(screen, (line) => (line ?? []).join('').trimEnd());
  while (lines.at(-1) === '') lines.pop();
  return lines;
}
