#!/usr/bin/env node
// Runs the TypeScript sources directly through tsx: `npm ci` is the whole set-up, no build step.
import { register } from 'tsx/esm/api';

register();
const { runCli } = await import('../cli/main.ts');
process.exitCode = await runCli(process.argv.slice(2));
