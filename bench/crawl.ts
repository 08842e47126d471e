/**
 * `npm run bench:crawl`: crawls >= 5,000 real-looking JPEGs (60–200 KB) from a loopback server at
 * full concurrency and compares, in the same run, with the floor: sharp decode + resize + encode
 * alone over the same bytes (the crawl's own image function, no network, no shards, no manifest).
 * Target: the crawl reaches at least 85 % of the floor.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { once } from 'node:events';
import { processImage } from '../crawl/_image.ts';
import { runCrawl } from '../crawl/index.ts';
import { benchImages } from './_jpeg-gen.ts';
import { benchArgs, envNumber } from './_args.ts';

const { COUNT, CONCURRENCY } = benchArgs(
  'crawl',
  'usage: [BENCH_CRAWL_COUNT=5000] [BENCH_CRAWL_CONCURRENCY=64] npm run bench:crawl',
  {},
  () => ({
    COUNT: envNumber('BENCH_CRAWL_COUNT', 5000, 1, 10_000_000),
    CONCURRENCY: envNumber('BENCH_CRAWL_CONCURRENCY', 64, 1, 100_000),
  }),
);
const policy = {
  resizeMode: 'keep_ratio',
  imageSize: 256,
  upscale: false,
  jpegQuality: 95,
  maxPixels: 178_956_970,
} as const;

process.stderr.write(`generating ${COUNT} JPEGs (cached after the first run)...\n`);
const images = await benchImages(COUNT, (done) => {
  if (done % 500 === 0) process.stderr.write(`  ${done}/${COUNT}\n`);
});
const sizes = images.map((i) => statSync(i.file).size).sort((a, b) => a - b);
const totalBytes = sizes.reduce((a, b) => a + b, 0);
const pct = (p: number) => Math.round((sizes[Math.floor((sizes.length - 1) * p)] ?? 0) / 1024);

/** CPU time of this process so far (every thread), ms. */
const ownCpuMs = (): number => {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
};
/** CPU time of another process (Linux /proc), ms; null where it cannot be read. */
function processCpuMs(pid: number | undefined): number | null {
  const stat = `/proc/${pid}/stat`;
  if (pid === undefined || !existsSync(stat)) return null;
  const text = readFileSync(stat, 'utf8');
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100; // utime + stime, in clock ticks of 10 ms
}

// Floor: the same sharp pipeline over the same bytes, already in memory, as parallel as it goes.
// CPU time an image is recorded too: on a shared machine it moves less than the rate does.
async function floor(parallel: number): Promise<{ rate: number; cpuMsPerImage: number }> {
  const buffers = images.map((i) => readFileSync(i.file));
  const cpuBefore = ownCpuMs();
  const start = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (next < buffers.length) await processImage(buffers[next++] as Buffer, policy);
    }),
  );
  const seconds = (performance.now() - start) / 1000;
  return { rate: buffers.length / seconds, cpuMsPerImage: (ownCpuMs() - cpuBefore) / buffers.length };
}
process.stderr.write('measuring the floor (sharp alone)...\n');
const floors: Record<number, { rate: number; cpuMsPerImage: number }> = {};
for (const parallel of [4, 8, 16]) floors[parallel] = await floor(parallel);
const floorRate = Math.max(...Object.values(floors).map((f) => f.rate));
const floorCpu = Math.min(...Object.values(floors).map((f) => f.cpuMsPerImage));

// The crawl: a URL list of the same images served from a separate loopback process.
const server = spawn(
  process.execPath,
  ['--import', 'tsx', join(import.meta.dirname, '_image-server.ts'), dirname(images[0]?.file ?? '')],
  {
    stdio: ['ignore', 'pipe', 'inherit'],
  },
);
const [portLine] = (await once(server.stdout, 'data')) as [Buffer];
const origin = `http://127.0.0.1:${portLine.toString().trim()}`;
const work = mkdtempSync(join(tmpdir(), 'altforge-bench-crawl-'));
const list = join(work, 'urls.jsonl');
writeFileSync(
  list,
  images.map((i) => JSON.stringify({ url: `${origin}/img/${basename(i.file)}`, caption: i.caption })).join('\n') + '\n',
);
process.stderr.write(`crawling ${COUNT} images from ${origin} at concurrency ${CONCURRENCY}...\n`);
const serverCpuBefore = processCpuMs(server.pid);
const crawlCpuBefore = ownCpuMs();
const start = performance.now();
const result = await runCrawl({
  urls: [list],
  out: join(work, 'corpus'),
  allowPrivateNetwork: ['127.0.0.1'],
  concurrency: CONCURRENCY,
  perHostConcurrency: CONCURRENCY,
});
const seconds = (performance.now() - start) / 1000;
const crawlCpu = (ownCpuMs() - crawlCpuBefore) / Math.max(1, result.ok);
const serverCpuAfter = processCpuMs(server.pid);
const serverCpu =
  serverCpuBefore === null || serverCpuAfter === null
    ? null
    : (serverCpuAfter - serverCpuBefore) / Math.max(1, result.ok);
server.kill('SIGTERM');
rmSync(work, { recursive: true, force: true });
const crawlRate = result.ok / seconds;

const report = {
  bench: 'crawl',
  machine: `${cpus()[0]?.model ?? 'unknown'} x${cpus().length}`,
  node: process.version,
  images: COUNT,
  sizeKB: { p5: pct(0.05), median: pct(0.5), p95: pct(0.95), meanKB: Math.round(totalBytes / COUNT / 1024) },
  floorImagesPerSec: Object.fromEntries(
    Object.entries(floors).map(([k, v]) => [`parallel${k}`, Number(v.rate.toFixed(1))]),
  ),
  floorCpuMsPerImage: Object.fromEntries(
    Object.entries(floors).map(([k, v]) => [`parallel${k}`, Number(v.cpuMsPerImage.toFixed(2))]),
  ),
  crawl: {
    ok: result.ok,
    failed: result.failed,
    seconds: Number(seconds.toFixed(2)),
    imagesPerSec: Number(crawlRate.toFixed(1)),
    cpuMsPerImage: Number(crawlCpu.toFixed(2)),
    serverCpuMsPerImage: serverCpu === null ? null : Number(serverCpu.toFixed(2)),
  },
  cpuRatioToFloor: Number((floorCpu / crawlCpu).toFixed(3)),
  loadAverage: loadavg().map((x) => Number(x.toFixed(2))),
  ratioToFloor: Number((crawlRate / floorRate).toFixed(3)),
  target: 0.85,
};
console.log(`floor (sharp alone, best of 4/8/16 parallel): ${floorRate.toFixed(1)} images/s`);
console.log(
  `crawl (HTTP + sha256 + sharp + shards + manifest): ${crawlRate.toFixed(1)} images/s, ${result.ok} ok, ${result.failed} failed`,
);
console.log(`ratio: ${(100 * report.ratioToFloor).toFixed(1)} % of the floor (target >= 85 %)`);
console.log(
  `CPU ms an image: floor ${Object.values(floors)
    .map((f) => f.cpuMsPerImage.toFixed(2))
    .join(' / ')} (4/8/16 parallel), crawl ${crawlCpu.toFixed(2)}` +
    `${serverCpu === null ? '' : ` + server ${serverCpu.toFixed(2)}`}; floor / crawl ${(100 * report.cpuRatioToFloor).toFixed(1)} %`,
);
console.log(
  `load average at the end: ${loadavg()
    .map((x) => x.toFixed(2))
    .join(' ')}`,
);
console.log(JSON.stringify(report));
