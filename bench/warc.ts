/**
 * `npm run bench:warc`: reads a generated Common-Crawl-like WARC.gz (>= 100 MB of HTML once
 * inflated, one gzip member per record, cached under os.tmpdir()) and compares, in the same run:
 *   (a) node's zlib alone: the file gunzipped as a stream, the output discarded (the floor);
 *   (b) readWarc: the same file to candidates;
 *   (c) the full path: runCrawl({ warc, download: false }), which also records the pairs in the
 *       SQLite manifest, when crawl/index.ts provides runCrawl.
 * Speeds are compressed MB (1e6 bytes) per second. The machine may be shared and its load drift:
 * the paths are measured in `BENCH_WARC_ROUNDS` rounds (zlib just before and after readWarc in
 * each), after one untimed warm-up pass of readWarc, and a path's share of zlib is the median of
 * its per-round shares. Best and median speeds are printed too. Target: (c) >= 50 % of (a).
 */
import { createReadStream, existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Writable } from 'node:stream';
import { createGunzip, type ZlibOptions } from 'node:zlib';
import { readWarc } from '../crawl/_sources/warc.ts';
import { ensureBenchWarc } from './_warc-gen.ts';
import { benchArgs, envNumber } from './_args.ts';

const { TARGET_BYTES, ROUNDS } = benchArgs(
  'warc',
  'usage: [BENCH_WARC_BYTES=110000000] [BENCH_WARC_ROUNDS=5] npm run bench:warc',
  {},
  () => ({
    TARGET_BYTES: envNumber('BENCH_WARC_BYTES', 110_000_000, 1_000, 100_000_000_000),
    ROUNDS: envNumber('BENCH_WARC_ROUNDS', 5, 1, 1000),
  }),
);

process.stderr.write(
  `preparing a WARC.gz of ~${Math.round(TARGET_BYTES / 1e6)} MB of HTML (cached after the first run)...\n`,
);
const genStart = performance.now();
const warc = await ensureBenchWarc({ targetBytes: TARGET_BYTES });
const genSeconds = (performance.now() - genStart) / 1000;
const mb = warc.bytes / 1e6;
process.stderr.write(
  `  ${warc.path}: ${mb.toFixed(1)} MB on disk, ${(warc.uncompressedBytes / 1e6).toFixed(1)} MB inflated, ${warc.records} records (${genSeconds.toFixed(1)} s)\n`,
);

/** Gunzips the file and discards the output; `tuned` uses readWarc's chunk sizes. */
async function zlibOnly(tuned: boolean): Promise<number> {
  const options: ZlibOptions & { highWaterMark?: number } = tuned
    ? { chunkSize: 256 * 1024, highWaterMark: 4 * 1024 * 1024 }
    : {};
  const start = performance.now();
  await pipeline(
    createReadStream(warc.path, tuned ? { highWaterMark: 256 * 1024 } : {}),
    createGunzip(options),
    new Writable({ write: (_chunk, _encoding, done) => done() }),
  );
  return (performance.now() - start) / 1000;
}

async function readWarcOnly(): Promise<{ seconds: number; candidates: number }> {
  const start = performance.now();
  let candidates = 0;
  for await (const _candidate of readWarc(warc.path, { keepEmptyAlt: false })) candidates++;
  return { seconds: (performance.now() - start) / 1000, candidates };
}

type RunCrawl = (options: { warc: string[]; out: string; download: boolean }) => Promise<{ pairsFound: number }>;
let runCrawl: RunCrawl | null = null;
if (existsSync(join(import.meta.dirname, '../crawl/index.ts'))) {
  const crawl = (await import('../crawl/index.ts')) as { runCrawl?: unknown };
  if (typeof crawl.runCrawl === 'function') runCrawl = crawl.runCrawl as RunCrawl;
}

async function fullPath(run: RunCrawl): Promise<{ seconds: number; pairs: number }> {
  const work = await mkdtemp(join(tmpdir(), 'altforge-bench-warc-'));
  try {
    const start = performance.now();
    const result = await run({ warc: [warc.path], out: join(work, 'corpus'), download: false });
    return { seconds: (performance.now() - start) / 1000, pairs: result.pairsFound };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

// A Common Crawl WARC is ~1 GB: a crawl spends nearly all its time with the parser optimised by the
// JIT. One untimed pass gets there first; its speed is still reported, as the cold figure.
process.stderr.write('warm-up pass (readWarc, untimed in the table)...\n');
const cold = await readWarcOnly();

const times = { zlib: [] as number[], zlibDefault: [] as number[], readWarc: [] as number[], full: [] as number[] };
/** Per round, the speed of each path over zlib's in the same round: robust to a machine whose load drifts. */
const ratios = {
  zlibDefault: [] as number[],
  readWarc: [] as number[],
  full: [] as number[],
  fullVsDefault: [] as number[],
};
/** CPU time (every thread of this process: zlib's pool threads, the recording thread) per path, ms. */
const cpuTimes = { zlib: [] as number[], readWarc: [] as number[], full: [] as number[] };
const cpuMs = (since: NodeJS.CpuUsage): number => {
  const { user, system } = process.cpuUsage(since);
  return (user + system) / 1000;
};
let candidates = 0;
let pairs = 0;
for (let round = 1; round <= ROUNDS; round++) {
  process.stderr.write(`round ${round}/${ROUNDS}: zlib`);
  let since = process.cpuUsage();
  const zlibBefore = await zlibOnly(true);
  cpuTimes.zlib.push(cpuMs(since));
  times.zlibDefault.push(await zlibOnly(false));
  process.stderr.write(', readWarc');
  since = process.cpuUsage();
  const read = await readWarcOnly();
  cpuTimes.readWarc.push(cpuMs(since));
  times.readWarc.push(read.seconds);
  candidates = read.candidates;
  const zlibAfter = await zlibOnly(true);
  times.zlib.push(zlibBefore, zlibAfter);
  const zlibRound = (zlibBefore + zlibAfter) / 2;
  ratios.zlibDefault.push(zlibRound / (times.zlibDefault.at(-1) as number));
  ratios.readWarc.push(zlibRound / read.seconds);
  if (runCrawl !== null) {
    process.stderr.write(', runCrawl');
    since = process.cpuUsage();
    const full = await fullPath(runCrawl);
    cpuTimes.full.push(cpuMs(since));
    times.full.push(full.seconds);
    ratios.full.push(zlibRound / full.seconds);
    ratios.fullVsDefault.push((times.zlibDefault.at(-1) as number) / full.seconds);
    pairs = full.pairs;
  }
  process.stderr.write('\n');
}

const middle = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const m = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[m] as number) : ((sorted[m - 1] as number) + (sorted[m] as number)) / 2;
};
const best = (seconds: number[]): number => mb / Math.min(...seconds);
const median = (seconds: number[]): number => mb / middle(seconds);
const zlibRate = best(times.zlib);
const pct = (x: number) => `${Math.round(x * 100)} %`;
const rows: [string, number, number, string][] = [
  ['zlib gunzip (readWarc chunk sizes)', zlibRate, median(times.zlib), '100 %'],
  ['zlib gunzip (node defaults)', best(times.zlibDefault), median(times.zlibDefault), pct(middle(ratios.zlibDefault))],
  ['readWarc -> candidates', best(times.readWarc), median(times.readWarc), pct(middle(ratios.readWarc))],
];
if (runCrawl !== null)
  rows.push(['runCrawl -> manifest (no download)', best(times.full), median(times.full), pct(middle(ratios.full))]);
const cpuOf = (name: keyof typeof cpuTimes): string =>
  cpuTimes[name].length > 0 ? `${Math.round(middle(cpuTimes[name]))} ms` : '-';

const cpu = cpus()[0]?.model ?? 'unknown';
console.log(
  `\nWARC read speed, ${mb.toFixed(1)} MB compressed / ${(warc.uncompressedBytes / 1e6).toFixed(1)} MB inflated, ${warc.htmlPages} HTML pages, ${ROUNDS} rounds`,
);
console.log(`machine: ${cpu}, ${cpus().length} cores`);
console.log(`"of zlib": median over the rounds of (zlib's time in that round / the path's time)\n`);
console.log(`${'path'.padEnd(38)}${'best MB/s'.padStart(11)}${'median'.padStart(9)}${'of zlib'.padStart(9)}`);
for (const [name, rate, med, share] of rows) {
  console.log(`${name.padEnd(38)}${rate.toFixed(1).padStart(11)}${med.toFixed(1).padStart(9)}${share.padStart(9)}`);
}
console.log(`${'readWarc, first (cold) pass'.padEnd(38)}${(mb / cold.seconds).toFixed(1).padStart(11)}`);
if (runCrawl !== null) {
  console.log(
    `\nfull path against Node's default createGunzip (median of per-round ratios): ${pct(middle(ratios.fullVsDefault))}`,
  );
}
console.log(
  `CPU time, median per pass (all threads): zlib ${cpuOf('zlib')}, readWarc ${cpuOf('readWarc')}, full path ${cpuOf('full')}`,
);
console.log(
  `load average at the end: ${loadavg()
    .map((x) => x.toFixed(2))
    .join(' ')}`,
);
console.log(
  `\ncandidates: ${candidates}${runCrawl !== null ? `, pairs recorded: ${pairs}` : ' (crawl/index.ts has no runCrawl: full path not measured)'}`,
);
const round1 = (x: number) => Math.round(x * 10) / 10;
const round3 = (x: number) => Math.round(x * 1000) / 1000;
console.log(
  JSON.stringify({
    bench: 'warc',
    file: {
      path: warc.path,
      compressedMB: round1(mb),
      inflatedMB: round1(warc.uncompressedBytes / 1e6),
      records: warc.records,
      htmlPages: warc.htmlPages,
    },
    machine: { cpu, cores: cpus().length },
    rounds: ROUNDS,
    zlibMBps: round1(zlibRate),
    zlibMedianMBps: round1(median(times.zlib)),
    zlibDefaultMBps: round1(best(times.zlibDefault)),
    readWarcMBps: round1(best(times.readWarc)),
    readWarcMedianMBps: round1(median(times.readWarc)),
    readWarcRatio: round3(middle(ratios.readWarc)),
    readWarcColdMBps: round1(mb / cold.seconds),
    candidates,
    fullMBps: runCrawl !== null ? round1(best(times.full)) : null,
    fullMedianMBps: runCrawl !== null ? round1(median(times.full)) : null,
    fullRatio: runCrawl !== null ? round3(middle(ratios.full)) : null,
    fullRatioVsDefaultZlib: runCrawl !== null ? round3(middle(ratios.fullVsDefault)) : null,
    cpuMs: {
      zlib: Math.round(middle(cpuTimes.zlib)),
      readWarc: Math.round(middle(cpuTimes.readWarc)),
      full: runCrawl !== null ? Math.round(middle(cpuTimes.full)) : null,
    },
    loadAverage: loadavg().map(round3),
    pairsFound: runCrawl !== null ? pairs : null,
    target: {
      fullRatio: 0.5,
      metVsTunedZlib: runCrawl !== null ? middle(ratios.full) >= 0.5 : null,
      metVsDefaultZlib: runCrawl !== null ? middle(ratios.fullVsDefault) >= 0.5 : null,
    },
  }),
);
