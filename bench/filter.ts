/**
 * `npm run bench:filter`: the filter's text rules over a generated manifest of captions drawn from
 * a Zipf-distributed vocabulary (BENCH_FILTER_PAIRS, default 1M; cached under os.tmpdir()).
 * Each run is a separate process (`--child`), so its peak RSS (VmHWM) is its own. Reports, per run:
 * wall time, the process's CPU time, pairs/s by both, and peak RSS. Run 1 writes the decisions into a
 * fresh copy; run 2 reruns the same thresholds (nothing to change). The machine may be shared: CPU
 * time is the fairer measure of what one core does. Target: >= 200,000 pairs/s, RSS < 500 MB.
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { openCorpus } from '../corpus/manifest.ts';
import { createRandom, type Random } from '../corpus/random.ts';
import { benchArgs, envNumber } from './_args.ts';

// A child (`--child DIR`, started by the bench itself) takes its size from the parent's environment.
const PAIRS =
  process.argv[2] === '--child'
    ? Number(process.env['BENCH_FILTER_PAIRS'] ?? 1_000_000)
    : benchArgs('filter', 'usage: [BENCH_FILTER_PAIRS=1000000] npm run bench:filter', {}, () =>
        envNumber('BENCH_FILTER_PAIRS', 1_000_000, 1, 1_000_000_000),
      );
const VOCAB = 50_000;
const SEED = 7;

/** Zipf(s) sampler over ranks 1..n by inverse CDF on a precomputed table. */
function zipf(random: Random, n: number, s: number): () => number {
  const cdf = new Float64Array(n);
  let sum = 0;
  for (let i = 0; i < n; i++) cdf[i] = sum += 1 / Math.pow(i + 1, s);
  for (let i = 0; i < n; i++) cdf[i]! /= sum;
  return () => {
    const u = random();
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cdf[mid]! < u) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
}

function hex(random: Random, n: number): string {
  let s = '';
  for (let i = 0; i < n; i++) s += '0123456789abcdef'[Math.floor(random() * 16)];
  return s;
}

/** Builds (or reuses) the manifest: captions of 1-25 Zipf words, 5 % boilerplate, 2 % shared images. */
function ensureManifest(): string {
  const dir = join(tmpdir(), 'altforge-bench', `filter-${PAIRS}-s${SEED}`);
  if (existsSync(join(dir, 'manifest.sqlite')) && existsSync(join(dir, 'complete'))) return dir;
  rmSync(dir, { recursive: true, force: true });
  const random = createRandom(SEED, 'bench-filter');
  const letters = 'abcdefghijklmnopqrstuvwxyz';
  const words: string[] = [];
  const seen = new Set<string>();
  while (words.length < VOCAB) {
    const len = 2 + Math.floor(random() * 9);
    let w = '';
    for (let i = 0; i < len; i++) w += letters[Math.floor(random() * 26)];
    if (!seen.has(w)) {
      seen.add(w);
      words.push(w);
    }
  }
  const word = zipf(random, VOCAB, 1.05);
  const boilerplate = Array.from({ length: 200 }, (_, i) => (i % 2 ? `image ${i}` : `IMG_${1000 + i}.jpg`));
  const sharedImages = Array.from({ length: 500 }, () => hex(random, 64));
  const corpus = openCorpus(dir, { create: true });
  const insert = corpus.db.prepare(
    `INSERT INTO pairs (key, url, caption, status, shard, width, height, original_width, original_height, sha256, bytes)
     VALUES (?, ?, ?, 'ok', 0, 256, 256, ?, ?, ?, 20000)`,
  );
  const batch = corpus.db.transaction((from: number, to: number) => {
    for (let i = from; i < to; i++) {
      let caption: string;
      if (random() < 0.05) caption = boilerplate[Math.floor(random() * boilerplate.length)]!;
      else {
        const n = 1 + Math.floor(random() * 25);
        const parts: string[] = [];
        for (let j = 0; j < n; j++) parts.push(words[word()]!);
        caption = parts.join(' ');
        if (random() < 0.3) caption = caption.charAt(0).toUpperCase() + caption.slice(1);
      }
      const sha = random() < 0.02 ? sharedImages[Math.floor(random() * sharedImages.length)]! : hex(random, 64);
      const w = 150 + Math.floor(random() * 900);
      const h = 150 + Math.floor(random() * 900);
      insert.run(hex(random, 32), `https://img${i % 97}.example.com/p/${i}.jpg`, caption, w, h, sha);
    }
  });
  for (let i = 0; i < PAIRS; i += 50_000) batch(i, Math.min(PAIRS, i + 50_000));
  corpus.db.pragma('wal_checkpoint(TRUNCATE)');
  corpus.close();
  execFileSync('touch', [join(dir, 'complete')]);
  return dir;
}

interface ChildReport {
  wallMs: number;
  cpuMs: number;
  rssPeakMb: number;
  pairs: number;
  kept: number;
  phases: Record<string, number>;
}

async function child(dir: string): Promise<void> {
  const { runFilter } = await import('../filter/index.ts');
  const phases: Record<string, number> = {};
  let phase = '';
  const cpuNow = () => {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1000;
  };
  let mark = cpuNow();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const result = await runFilter({
    corpus: dir,
    nsfw: 'none',
    vocabMinCount: 5,
    onProgress: (p) => {
      if (p.phase !== phase) {
        const now = cpuNow();
        if (phase) phases[phase] = (phases[phase] ?? 0) + now - mark;
        phase = p.phase;
        mark = now;
      }
    },
  });
  const wallMs = performance.now() - t0;
  if (phase) phases[phase] = (phases[phase] ?? 0) + cpuNow() - mark;
  const cpu = process.cpuUsage(cpu0);
  const hwm = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  const report: ChildReport = {
    wallMs,
    cpuMs: (cpu.user + cpu.system) / 1000,
    rssPeakMb: hwm ? Number(hwm[1]) / 1024 : NaN,
    pairs: result.pairs,
    kept: result.kept,
    phases,
  };
  process.stdout.write(JSON.stringify(report) + '\n');
}

if (process.argv[2] === '--child') {
  await child(process.argv[3]!);
} else {
  process.stderr.write(
    `preparing a manifest of ${PAIRS.toLocaleString('en-US')} Zipf captions (cached after the first run)...\n`,
  );
  const t = performance.now();
  const source = ensureManifest();
  process.stderr.write(`  ${source} (${((performance.now() - t) / 1000).toFixed(1)} s)\n`);
  const work = join(tmpdir(), 'altforge-bench', `filter-run-${process.pid}`);
  mkdirSync(work, { recursive: true });
  copyFileSync(join(source, 'manifest.sqlite'), join(work, 'manifest.sqlite.tmp'));
  renameSync(join(work, 'manifest.sqlite.tmp'), join(work, 'manifest.sqlite'));
  const loadBefore = loadavg()[0]!;
  const runs: Array<{ label: string } & ChildReport> = [];
  try {
    for (const label of ['first run (writes the decisions)', 'rerun (same thresholds)']) {
      const out = execFileSync(process.execPath, ['--import', 'tsx', import.meta.filename, '--child', work], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      runs.push({ label, ...(JSON.parse(out.trim().split('\n').pop()!) as ChildReport) });
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  const db = new Database(join(source, 'manifest.sqlite'), { readonly: true });
  db.close();
  console.log(
    `\nbench:filter — ${PAIRS.toLocaleString('en-US')} pairs, text and image rules (nsfw off), vocab-min-count 5`,
  );
  console.log(
    `machine: ${cpus().length} cores (${cpus()[0]?.model ?? '?'}), ${(totalmem() / 2 ** 30).toFixed(0)} GiB, node ${process.version}; ` +
      `load average ${loadBefore.toFixed(1)} before, ${loadavg()[0]!.toFixed(1)} after (other work shares the machine: CPU time is the fairer figure)`,
  );
  console.log('| run | wall s | CPU s | pairs/s (wall) | pairs/s (CPU) | peak RSS MB | kept | CPU ms by phase |');
  console.log('|---|---|---|---|---|---|---|---|');
  for (const r of runs) {
    const phases = Object.entries(r.phases)
      .map(([k, v]) => `${k} ${v.toFixed(0)}`)
      .join(', ');
    console.log(
      `| ${r.label} | ${(r.wallMs / 1000).toFixed(2)} | ${(r.cpuMs / 1000).toFixed(2)} | ${Math.round((r.pairs / r.wallMs) * 1000).toLocaleString('en-US')} | ${Math.round((r.pairs / r.cpuMs) * 1000).toLocaleString('en-US')} | ${r.rssPeakMb.toFixed(0)} | ${r.kept} | ${phases} |`,
    );
  }
  console.log('target: >= 200,000 pairs/s on one core, peak RSS < 500 MB');
}
