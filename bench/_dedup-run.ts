/**
 * One `dedup --against` run of the corpus at argv[2] against the benchmark argv[4] of the registry
 * at argv[3], in a process of its own so that its peak memory is its own: prints one JSON line with
 * the run's counts, its wall time, its CPU time (user and system, every thread: what decoding
 * costs, which other work on the machine inflates less than the wall time) and its peak resident
 * memory (`maxRSS`, KiB). Started by the run
 * part of `npm run bench:dedup`.
 */
import { runDedup } from '../dedup/index.ts';

const [corpus, benchDb, benchmark] = process.argv.slice(2);
if (corpus === undefined || benchDb === undefined || benchmark === undefined)
  throw new Error('usage: tsx bench/_dedup-run.ts CORPUS REGISTRY BENCHMARK');
const started = performance.now();
const result = await runDedup({ corpus, against: [benchmark], benchDb });
const wallMs = performance.now() - started;
const usage = process.resourceUsage();
console.log(
  JSON.stringify({
    fingerprinted: result.fingerprinted,
    // Absent before copies were counted (a run of an older commit).
    copies: (result as { copies?: number }).copies ?? null,
    matches: result.byBenchmark[benchmark],
    flagged: result.flagged,
    wallMs,
    cpuMs: (usage.userCPUTime + usage.systemCPUTime) / 1000,
    maxRssKb: usage.maxRSS,
  }),
);
