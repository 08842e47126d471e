#!/usr/bin/env node
// Runs the TypeScript sources directly through tsx: `npm ci` is the whole set-up, no build step.
import { register } from 'tsx/esm/api';

// Help and usage errors are coloured only on a terminal: piped or redirected, they stay plain text
// (citty reads NO_COLOR once, when it is loaded below). FORCE_COLOR keeps the colours anyway.
if (!(process.stdout.isTTY && process.stderr.isTTY) && process.env.FORCE_COLOR === undefined) {
  process.env.NO_COLOR ??= '1';
}
register();
const { runCli } = await import('../cli/main.ts');
process.exitCode = await runCli(process.argv.slice(2));
