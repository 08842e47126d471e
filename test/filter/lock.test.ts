import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { runExport, runFilter, type FilterOptions } from '../../filter/index.ts';
import { makeImageCorpus, makeManifest, type PairSpec } from '../fixtures/manifest.ts';
import { REPO_ROOT, lines, runCli } from '../helpers/cli.ts';
import { tempDir } from '../helpers/corpus.ts';

let tmp: { path: string; remove: () => Promise<void> };
let source: string;
beforeAll(async () => {
  tmp = await tempDir('altforge-filter-lock-');
  source = join(tmp.path, 'source');
  await makeImageCorpus(source, 6, 3);
  await runFilter({ ...RULES, corpus: source });
});
afterAll(async () => {
  await tmp.remove();
});

const RULES = { minSide: 100, maxImagesPerCaption: 0, vocabSize: 0, nsfw: 'none' } as const satisfies Omit<
  FilterOptions,
  'corpus'
>;

/** A corpus of `n` plain pairs in a new directory. */
function corpus(name: string, n = 8): string {
  const dir = join(tmp.path, name);
  const pairs: PairSpec[] = [];
  for (let i = 0; i < n; i++) pairs.push({ caption: `a good caption number ${i}` });
  makeManifest(dir, pairs);
  return dir;
}

/** Writes the lock a live process other than this one holds (the test runner's parent). */
function lockByLiveProcess(dir: string): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, '.lock'), String(process.ppid));
}

/** The pid of a process that has exited. */
function deadPid(): number {
  const { pid } = spawnSync(process.execPath, ['-e', '']);
  return pid!;
}

/** `stage outcome` of each recorded run, oldest first. */
function stageRuns(dir: string): string[] {
  const db = new Database(join(dir, 'manifest.sqlite'), { readonly: true });
  try {
    return db
      .prepare(
        `SELECT stage || ' ' || COALESCE(outcome, 'NULL') || ' ' || (finished_at IS NOT NULL) FROM stage_runs ORDER BY id`,
      )
      .pluck()
      .all() as string[];
  } finally {
    db.close();
  }
}

describe('filter and the corpus lock', () => {
  it('refuses a corpus another process is writing, dry run included, and leaves its scratch files be', async () => {
    const dir = corpus('busy');
    lockByLiveProcess(dir);
    // The running filter's scratch files: a refused run must not clear them.
    writeFileSync(join(dir, '.filter-work.sqlite'), 'the first run');
    writeFileSync(join(dir, '.filter-spool.f64'), 'the first run');
    writeFileSync(join(dir, '.filter-tokens-0.f64'), 'the first run');
    await expect(runFilter({ ...RULES, corpus: dir })).rejects.toMatchObject({ code: 'ERR_CORPUS_LOCKED' });
    await expect(runFilter({ ...RULES, corpus: dir, dryRun: true })).rejects.toMatchObject({
      code: 'ERR_CORPUS_LOCKED',
    });
    for (const name of ['.filter-work.sqlite', '.filter-spool.f64', '.filter-tokens-0.f64']) {
      expect(readFileSync(join(dir, name), 'utf8')).toBe('the first run');
    }
    expect(stageRuns(dir)).toEqual([]);
    expect(readFileSync(join(dir, '.lock'), 'utf8')).toBe(String(process.ppid));
  });

  it('refuses a second corpus that is locked, and releases the first', async () => {
    const free = corpus('free');
    const busy = corpus('busy-second');
    lockByLiveProcess(busy);
    await expect(runFilter({ ...RULES, corpus: [free, busy] })).rejects.toMatchObject({
      code: 'ERR_CORPUS_LOCKED',
    });
    expect(existsSync(join(free, '.lock'))).toBe(false);
    expect(stageRuns(free)).toEqual([]);
  });

  it('says so on one line with exit code 2', async () => {
    const dir = corpus('busy-cli');
    lockByLiveProcess(dir);
    const run = await runCli(['filter', '--corpus', dir, '--nsfw', 'none', '--dry-run']);
    expect(run.code).toBe(2);
    expect(lines(run.stderr)).toEqual([
      `altforge: Corpus '${dir}' is being written by process ${process.ppid} [ERR_CORPUS_LOCKED]`,
    ]);
  });

  it("takes over a killed process's lock and releases it when done", async () => {
    const dir = corpus('stale');
    writeFileSync(join(dir, '.lock'), String(deadPid()));
    const result = await runFilter({ ...RULES, corpus: dir });
    expect(result).toMatchObject({ pairs: 8, kept: 8, interrupted: false });
    expect(existsSync(join(dir, '.lock'))).toBe(false);
    expect(stageRuns(dir)).toEqual(['filter ok 1']);
  });

  it('refuses a second filter of a corpus this process is filtering (two library calls at once)', async () => {
    const dir = corpus('twice-at-once');
    const [first, second] = await Promise.allSettled([
      runFilter({ ...RULES, corpus: dir }),
      runFilter({ ...RULES, corpus: dir }),
    ]);
    expect(first).toMatchObject({ status: 'fulfilled', value: { pairs: 8, kept: 8, interrupted: false } });
    expect(second).toMatchObject({
      status: 'rejected',
      reason: {
        code: 'ERR_CORPUS_LOCKED',
        message: `Corpus '${dir}' is being written by another run in this process (${process.pid})`,
      },
    });
    expect(stageRuns(dir)).toEqual(['filter ok 1']);
    expect(existsSync(join(dir, '.lock'))).toBe(false);
  });

  it('refuses a filter of a corpus an export in this process reads, and an export of one it filters', async () => {
    const src = join(tmp.path, 'read-in-process');
    await makeImageCorpus(src, 4, 2);
    await runFilter({ ...RULES, corpus: src });
    let during: unknown;
    await runExport({
      corpus: src,
      out: join(tmp.path, 'read-in-process-out'),
      onProgress: (p) => {
        if (during === undefined && p.phase === 'write') during = runFilter({ ...RULES, corpus: src }).catch((e) => e);
      },
    });
    expect(await during).toMatchObject({
      code: 'ERR_CORPUS_LOCKED',
      message: `Corpus '${src}' is being read by another run in this process (${process.pid})`,
    });
    const [filtered, exported] = await Promise.allSettled([
      runFilter({ ...RULES, corpus: src }),
      runExport({ corpus: src, out: join(tmp.path, 'read-in-process-out') }),
    ]);
    expect(filtered.status).toBe('fulfilled');
    expect(exported).toMatchObject({ status: 'rejected', reason: { code: 'ERR_CORPUS_LOCKED' } });
    expect(stageRuns(src)).toEqual(['filter ok 1', 'filter ok 1']);
    expect(readdirSync(src).filter((name) => name.startsWith('.'))).toEqual([]);
  });

  it('records a run the signal stopped as interrupted', async () => {
    const dir = corpus('interrupted');
    const result = await runFilter({ ...RULES, corpus: dir, signal: AbortSignal.abort() });
    expect(result.interrupted).toBe(true);
    expect(stageRuns(dir)).toEqual(['filter interrupted 1']);
    expect(existsSync(join(dir, '.lock'))).toBe(false);
  });
});

describe('export and the lock on its output', () => {
  it('refuses a new output another export is writing, writing nothing into it', async () => {
    const out = join(tmp.path, 'export-new');
    lockByLiveProcess(out);
    await expect(runExport({ corpus: source, out })).rejects.toMatchObject({ code: 'ERR_CORPUS_LOCKED' });
    expect(existsSync(join(out, 'manifest.sqlite'))).toBe(false);
  });

  it('refuses an earlier export another process is updating, and leaves its work file be', async () => {
    const out = join(tmp.path, 'export-old');
    expect(await runExport({ corpus: source, out, shardSize: 2 })).toMatchObject({ kept: 6, written: 6 });
    lockByLiveProcess(out);
    writeFileSync(join(out, '.export-work.sqlite'), 'the first run');
    await expect(runExport({ corpus: source, out })).rejects.toMatchObject({ code: 'ERR_CORPUS_LOCKED' });
    expect(readFileSync(join(out, '.export-work.sqlite'), 'utf8')).toBe('the first run');
    expect(stageRuns(out)).toEqual(['export ok 1']);
  });

  it('says so on one line with exit code 2', async () => {
    const out = join(tmp.path, 'export-cli');
    lockByLiveProcess(out);
    const run = await runCli(['export', '--corpus', source, '--out', out]);
    expect(run.code).toBe(2);
    expect(lines(run.stderr)).toEqual([
      `altforge: Corpus '${out}' is being written by process ${process.ppid} [ERR_CORPUS_LOCKED]`,
    ]);
  });

  it('writes into a new output a killed export locked, and releases it when done', async () => {
    const out = join(tmp.path, 'export-stale');
    mkdirSync(out);
    writeFileSync(join(out, '.lock'), String(deadPid()));
    expect(await runExport({ corpus: source, out, shardSize: 2 })).toMatchObject({ kept: 6, written: 6 });
    expect(existsSync(join(out, '.lock'))).toBe(false);
    expect(stageRuns(out)).toEqual(['export ok 1']);
  });
});

describe('export and the corpora it reads', () => {
  it('refuses a filter of a source while it reads it, and lets it run once done', async () => {
    const src = join(tmp.path, 'read-source');
    await makeImageCorpus(src, 4, 2);
    await runFilter({ ...RULES, corpus: src });
    let during: ReturnType<typeof spawnSync> | undefined;
    let markers: string[] = [];
    const result = await runExport({
      corpus: src,
      out: join(tmp.path, 'read-out'),
      onProgress: (p) => {
        if (during || p.phase !== 'write') return;
        markers = readdirSync(src).filter((name) => name.startsWith('.read-'));
        // A real second process, while this export sits between two of its reads.
        during = spawnSync(process.execPath, ['bin/altforge.js', 'filter', '--corpus', src, '--nsfw', 'none'], {
          cwd: REPO_ROOT,
          encoding: 'utf8',
          env: { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0' },
        });
      },
    });
    expect(result).toMatchObject({ kept: 4, written: 4, missing: 0 });
    expect(markers).toEqual([`.read-${process.pid}`]);
    expect(during?.status).toBe(2);
    expect(lines(String(during?.stderr))).toEqual([
      `altforge: Corpus '${src}' is being read by process ${process.pid} [ERR_CORPUS_LOCKED]`,
    ]);
    expect(stageRuns(src)).toEqual(['filter ok 1']);
    expect(readdirSync(src).filter((name) => name.startsWith('.'))).toEqual([]);
    await runFilter({ ...RULES, corpus: src });
    expect(stageRuns(src)).toEqual(['filter ok 1', 'filter ok 1']);
  });

  it('refuses a source another process is writing, creating nothing', async () => {
    const src = join(tmp.path, 'written-source');
    await makeImageCorpus(src, 2, 1);
    await runFilter({ ...RULES, corpus: src });
    lockByLiveProcess(src);
    const out = join(tmp.path, 'written-out');
    await expect(runExport({ corpus: [source, src], out })).rejects.toMatchObject({
      code: 'ERR_CORPUS_LOCKED',
      message: `Corpus '${src}' is being written by process ${process.ppid}`,
    });
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(source).filter((name) => name.startsWith('.'))).toEqual([]);
    expect(readdirSync(src).filter((name) => name.startsWith('.'))).toEqual(['.lock']);
  });

  it('reads a source beside another reader, and a killed reader blocks no writer', async () => {
    const src = join(tmp.path, 'shared-source');
    await makeImageCorpus(src, 2, 1);
    await runFilter({ ...RULES, corpus: src });
    writeFileSync(join(src, `.read-${process.ppid}`), String(process.ppid));
    expect(await runExport({ corpus: src, out: join(tmp.path, 'shared-out') })).toMatchObject({ written: 2 });
    await expect(runFilter({ ...RULES, corpus: src })).rejects.toMatchObject({
      code: 'ERR_CORPUS_LOCKED',
      message: `Corpus '${src}' is being read by process ${process.ppid}`,
    });
    expect(existsSync(join(src, '.lock'))).toBe(false);
    const dead = deadPid();
    rmSync(join(src, `.read-${process.ppid}`));
    writeFileSync(join(src, `.read-${dead}`), String(dead));
    await runFilter({ ...RULES, corpus: src });
    expect(stageRuns(src)).toEqual(['filter ok 1', 'filter ok 1']);
    expect(readdirSync(src).filter((name) => name.startsWith('.'))).toEqual([]);
  });
});
