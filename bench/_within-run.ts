/**
 * One `dedup --within` run of the corpus at argv[2], in a process of its own so that its peak
 * memory is its own: prints one JSON line with the run's result, its wall time and its peak
 * resident memory (`maxRSS`, KiB). Started by the within part of `npm run bench:dedup`.
 */
import { runDedup } from '../dedup/index.ts';

const corpus = process.argv[2];
if (corpus === undefined) throw new Error('usage: tsx bench/_within-run.ts CORPUS');
const started = performance.now();
const result = await runDedup({ corpus, within: true });
const wallMs = performance.now() - started;
console.log(
  JSON.stringify({ within: result.within, flagged: result.flagged, wallMs, maxRssKb: process.resourceUsage().maxRSS }),
);
