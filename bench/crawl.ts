/**
 * `npm run bench:crawl`: crawls >= 5,000 real-looking JPEGs (60–200 KB) from a loopback server at
 * full concurrency and compares, in the same run, with the floor: sharp decode + resize + encode
 * alone over the same bytes (the crawl's own image function, no network, no shards, no manifest).
 * Target: the crawl reaches at least 85 % of the floor.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { once } from 'node:events';
import { processImage } from '../crawl/_image.ts';
import { runCrawl } from '../crawl/index.ts';
import { benchImages } from './_jpeg-gen.ts';

const COUNT = Number(process.env['BENCH_CRAWL_COUNT'] ?? 5000);
const CONCURRENCY = Number(process.env['BENCH_CRAWL_CONCURRENCY'] ?? 64);
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

// Floor: the same sharp pipeline over the same bytes, already in memory, as parallel as it goes.
async function floor(parallel: number): Promise<number> {
  const buffers = images.map((i) => readFileSync(i.file));
  const start = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (next < buffers.length) await processImage(buffers[next++] as Buffer, policy);
    }),
  );
  return buffers.length / ((performance.now() - start) / 1000);
}
process.stderr.write('measuring the floor (sharp alone)...\n');
const floors: Record<number, number> = {};
for (const parallel of [4, 8, 16]) floors[parallel] = await floor(parallel);
const floorRate = Math.max(...Object.values(floors));

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
const start = performance.now();
const result = await runCrawl({
  urls: [list],
  out: join(work, 'corpus'),
  allowPrivateNetwork: ['127.0.0.1'],
  concurrency: CONCURRENCY,
  perHostConcurrency: CONCURRENCY,
});
const seconds = (performance.now() - start) / 1000;
server.kill('SIGTERM');
rmSync(work, { recursive: true, force: true });
const crawlRate = result.ok / seconds;

const report = {
  bench: 'crawl',
  machine: `${cpus()[0]?.model ?? 'unknown'} x${cpus().length}`,
  node: process.version,
  images: COUNT,
  sizeKB: { p5: pct(0.05), median: pct(0.5), p95: pct(0.95), meanKB: Math.round(totalBytes / COUNT / 1024) },
  floorImagesPerSec: Object.fromEntries(Object.entries(floors).map(([k, v]) => [`parallel${k}`, Number(v.toFixed(1))])),
  crawl: {
    ok: result.ok,
    failed: result.failed,
    seconds: Number(seconds.toFixed(2)),
    imagesPerSec: Number(crawlRate.toFixed(1)),
  },
  ratioToFloor: Number((crawlRate / floorRate).toFixed(3)),
  target: 0.85,
};
console.log(`floor (sharp alone, best of 4/8/16 parallel): ${floorRate.toFixed(1)} images/s`);
console.log(
  `crawl (HTTP + sha256 + sharp + shards + manifest): ${crawlRate.toFixed(1)} images/s, ${result.ok} ok, ${result.failed} failed`,
);
console.log(`ratio: ${(100 * report.ratioToFloor).toFixed(1)} % of the floor (target >= 85 %)`);
console.log(JSON.stringify(report));
