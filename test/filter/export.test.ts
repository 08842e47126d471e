import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { cpSync, existsSync, readFileSync, readdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { runExport, runFilter, type FilterOptions } from '../../filter/index.ts';
import { makeImageCorpus, makeManifest } from '../fixtures/manifest.ts';
import { REPO_ROOT, lines, runCli } from '../helpers/cli.ts';
import { findTempFiles, readShards, readStats, tempDir } from '../helpers/corpus.ts';

let tmp: { path: string; remove: () => Promise<void> };
let source: string;
let keys: string[];
beforeAll(async () => {
  tmp = await tempDir('altforge-export-');
  source = join(tmp.path, 'source');
  // 24 emoji drawings; their captions ("<name> emoji drawing") have 3 to 8 words.
  keys = await makeImageCorpus(source, 24, 5);
});
afterAll(async () => {
  await tmp.remove();
});

// Only the word-count rule decides: every pair passes the others.
const base = { minSide: 100, maxImagesPerCaption: 0, vocabSize: 0, nsfw: 'none' } as const;
/** The four decisions the tests move a corpus between. */
const KEEP_ALL = { ...base, minWords: 3, maxWords: 20 };
const UP_TO_7_WORDS = { ...base, minWords: 3, maxWords: 7 };
const AT_LEAST_5_WORDS = { ...base, minWords: 5, maxWords: 20 };
const KEEP_NONE = { ...base, minSide: 1000 };

/** A copy of the source corpus, filtered with `options`. */
async function filtered(name: string, options: Omit<FilterOptions, 'corpus'>): Promise<string> {
  const dir = join(tmp.path, name);
  cpSync(source, dir, { recursive: true });
  await runFilter({ ...options, corpus: dir });
  return dir;
}

/** Filters `dir` again with `options`; returns the keys it keeps now, sorted. */
async function refilter(dir: string, options: Omit<FilterOptions, 'corpus'>): Promise<string[]> {
  await runFilter({ ...options, corpus: dir });
  const db = new Database(join(dir, 'manifest.sqlite'), { readonly: true });
  try {
    return db
      .prepare(`SELECT key FROM pairs WHERE rowid NOT IN (SELECT pair FROM filter_decisions) ORDER BY key`)
      .pluck()
      .all() as string[];
  } finally {
    db.close();
  }
}

interface Ledger {
  pairs: Array<{ key: string; status: string; shard: number | null }>;
  shards: number[];
}

function ledger(out: string): Ledger {
  const db = new Database(join(out, 'manifest.sqlite'), { readonly: true });
  try {
    return {
      pairs: db.prepare('SELECT key, status, shard FROM pairs ORDER BY key').all() as Ledger['pairs'],
      shards: db.prepare('SELECT shard FROM shards ORDER BY shard').pluck().all() as number[],
    };
  } finally {
    db.close();
  }
}

/** The export's own filter decisions on its pairs, as readers see them: `key reason`. */
function exportDecisions(out: string): string[] {
  const db = new Database(join(out, 'manifest.sqlite'), { readonly: true });
  try {
    return db
      .prepare(`SELECT key || ' ' || reason FROM filter_decisions JOIN pairs ON pairs.rowid = pair ORDER BY key`)
      .pluck()
      .all() as string[];
  } finally {
    db.close();
  }
}

/**
 * Checks what a reader who trusts the manifest sees, at any moment: every recorded shard's tar
 * holds exactly the `ok` pairs of that shard, and every `ok` pair is in a recorded shard. Returns
 * the manifest and the shard numbers of tars on disk.
 */
async function checkLedger(out: string): Promise<{ ledger: Ledger; tars: number[] }> {
  const l = ledger(out);
  const tars = await readShards(out);
  expect(tars.flatMap((t) => t.problems)).toEqual([]);
  const onDisk = new Map(tars.map((t) => [t.shard, t.samples.map((s) => s.key).sort()]));
  for (const shard of l.shards) {
    const inManifest = l.pairs.filter((p) => p.shard === shard && p.status === 'ok').map((p) => p.key);
    expect(onDisk.get(shard), `shard ${shard}`).toEqual(inManifest);
  }
  for (const p of l.pairs) if (p.status === 'ok') expect(l.shards).toContain(p.shard);
  return { ledger: l, tars: [...onDisk.keys()].sort((a, b) => a - b) };
}

/** A finished export: {@link checkLedger}, every pair stored, no file beside the recorded shards'. Returns its keys. */
async function checkFinished(out: string): Promise<string[]> {
  const { ledger: l, tars } = await checkLedger(out);
  expect(l.pairs.filter((p) => p.status !== 'ok')).toEqual([]);
  expect(tars).toEqual(l.shards);
  expect((await readStats(out)).map((s) => s.shard)).toEqual(l.shards);
  const parquets = readdirSync(join(out, 'shards')).filter((n) => n.endsWith('.parquet'));
  expect(parquets.map((n) => Number.parseInt(n, 10))).toEqual(l.shards);
  expect(await findTempFiles(out)).toEqual([]);
  expect(existsSync(join(out, '.export-work.sqlite'))).toBe(false);
  return l.pairs.map((p) => p.key);
}

describe('altforge export into an earlier export', () => {
  it('removes the pairs no longer kept with the shards that held them, and writes their shard-mates again', async () => {
    const dir = await filtered('update-src', KEEP_ALL);
    const out = join(tmp.path, 'update-out');
    const first = await runExport({ corpus: dir, out, shardSize: 3 });
    expect(first).toMatchObject({ kept: 24, written: 24, removed: 0, shards: 8 });
    expect(await checkFinished(out)).toEqual([...keys].sort());
    const shardOf = new Map(ledger(out).pairs.map((p) => [p.key, p.shard!]));

    // Four pairs have 8 words: they go, and so do their shards; the rest of those shards is written again.
    const kept = await refilter(dir, UP_TO_7_WORDS);
    expect(kept).toHaveLength(20);
    const gone = keys.filter((k) => !kept.includes(k));
    const retired = new Set(gone.map((k) => shardOf.get(k)!));
    const mates = kept.filter((k) => retired.has(shardOf.get(k)!));
    const before = new Map((await readShards(out)).map((s) => [s.shard, readFileSync(s.file)]));
    const second = await runExport({ corpus: dir, out, shardSize: 3 });
    expect(second).toMatchObject({ kept: 20, written: mates.length, removed: 4, missing: 0, interrupted: false });
    expect(await checkFinished(out)).toEqual(kept);
    // The shards that held no removed pair are the same files, byte for byte.
    const after = new Map((await readShards(out)).map((s) => [s.shard, readFileSync(s.file)]));
    const untouched = [...before.keys()].filter((shard) => !retired.has(shard));
    expect(untouched).toHaveLength(8 - retired.size);
    for (const shard of untouched) expect(after.get(shard)?.equals(before.get(shard)!), `shard ${shard}`).toBe(true);

    // Nothing kept: an empty export, as the command line reports it.
    await refilter(dir, KEEP_NONE);
    const emptied = await runCli(['export', '--corpus', dir, '--out', out, '--shard-size', '3']);
    expect(emptied.code).toBe(0);
    expect(lines(emptied.stderr)).toEqual([
      `export: 0 kept pairs, 0 written now, 20 no longer kept removed; 0 shards -> ${out}`,
    ]);
    expect(await checkFinished(out)).toEqual([]);
    expect(readdirSync(join(out, 'shards'))).toEqual([]);

    // Everything kept again: the export fills up again.
    await refilter(dir, KEEP_ALL);
    const refilled = await runExport({ corpus: dir, out, shardSize: 3 });
    expect(refilled).toMatchObject({ kept: 24, written: 24, removed: 0 });
    expect(await checkFinished(out)).toEqual([...keys].sort());
  });

  it('drops an unfinished shard that holds a pair no longer kept, and writes the rest again', async () => {
    const dir = await filtered('partial-src', KEEP_ALL);
    const out = join(tmp.path, 'partial-out');
    // Interrupted after its first sample: that sample waits in an unfinished shard.
    const stop = new AbortController();
    stop.abort();
    const interrupted = await runExport({ corpus: dir, out, shardSize: 3, signal: stop.signal });
    expect(interrupted).toMatchObject({ written: 1, interrupted: true, shards: 0 });
    expect(readdirSync(join(out, 'shards'))).toEqual(['00000.tar.tmp']);

    // The first sample's caption has 4 words: no longer kept.
    const kept = await refilter(dir, AT_LEAST_5_WORDS);
    expect(kept).toHaveLength(7);
    expect(kept).not.toContain(keys[0]);
    const resumed = await runExport({ corpus: dir, out, shardSize: 3 });
    expect(resumed).toMatchObject({ kept: 7, written: 7, removed: 17, missing: 0 });
    expect(await checkFinished(out)).toEqual(kept);
  });

  it('gives a pair added after removed ones none of their filter decisions, when the export was filtered too', async () => {
    const dir = await filtered('rowid-src', AT_LEAST_5_WORDS);
    const out = join(tmp.path, 'rowid-out');
    expect(await runExport({ corpus: dir, out, shardSize: 3 })).toMatchObject({ kept: 7, written: 7 });
    // The export filtered in its turn: its four 8-word captions are rejected there.
    expect((await runFilter({ ...UP_TO_7_WORDS, corpus: out })).byReason.too_many_words).toBe(4);
    expect(exportDecisions(out)).toHaveLength(4);

    // Every pair removed, then 24 added: none of them was ever decided in the export.
    await refilter(dir, KEEP_NONE);
    expect(await runExport({ corpus: dir, out, shardSize: 3 })).toMatchObject({ kept: 0, removed: 7 });
    expect(exportDecisions(out)).toEqual([]);
    await refilter(dir, KEEP_ALL);
    expect(await runExport({ corpus: dir, out, shardSize: 3 })).toMatchObject({ kept: 24, written: 24 });
    expect(await checkFinished(out)).toEqual([...keys].sort());
    expect(exportDecisions(out)).toEqual([]);
  });

  it('refuses to write into a corpus that export did not write, and leaves it as it was', async () => {
    const dir = await filtered('foreign-src', KEEP_ALL);
    const out = join(tmp.path, 'crawled');
    makeManifest(out, [{ caption: 'a crawled pair of words' }, { caption: 'another crawled pair here' }]);
    const before = ledger(out);
    await expect(runExport({ corpus: dir, out })).rejects.toMatchObject({ code: 'ERR_NOT_AN_EXPORT' });
    const cli = await runCli(['export', '--corpus', dir, '--out', out]);
    expect(cli.code).toBe(2);
    expect(lines(cli.stderr)).toEqual([
      expect.stringMatching(
        /^altforge: Flag --out: '.*crawled' holds a corpus that export did not write; choose a new directory \[ERR_NOT_AN_EXPORT\]$/,
      ),
    ]);
    expect(ledger(out)).toEqual(before);
  });

  it('refuses a source corpus given twice (its kept pairs would count twice) and creates nothing', async () => {
    const dir = await filtered('twice-src', KEEP_ALL);
    const link = join(tmp.path, 'twice-link');
    symlinkSync(dir, link);
    const out = join(tmp.path, 'twice-out');
    const cli = await runCli(['export', '--corpus', dir, '--corpus', dir, '--out', out]);
    expect(cli.code).toBe(2);
    expect(lines(cli.stderr)).toEqual([
      `altforge: Flag --corpus: corpus '${dir}' is given twice [ERR_DUPLICATE_CORPUS]`,
    ]);
    await expect(runExport({ corpus: [dir, link], out })).rejects.toMatchObject({
      code: 'ERR_DUPLICATE_CORPUS',
      message: `Option 'export.corpus': '${dir}' and '${link}' are one corpus, given twice`,
    });
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(dir).filter((name) => name.startsWith('.read-'))).toEqual([]);
  });
});

/**
 * Runs an export in a child process that SIGKILLs itself at its first progress report of `phase`
 * with `done` (`last`: done equal to total); resolves with the signal that ended it.
 */
function exportKilledAt(dir: string, out: string, phase: string, done: number | 'last'): Promise<string | null> {
  const code = `
    const { runExport } = await import(${JSON.stringify(join(REPO_ROOT, 'filter/index.ts'))});
    await runExport({
      corpus: ${JSON.stringify(dir)},
      out: ${JSON.stringify(out)},
      shardSize: 3,
      onProgress: (p) => {
        const at = ${JSON.stringify(done)};
        if (p.phase === ${JSON.stringify(phase)} && (at === 'last' ? p.done === p.total : p.done === at)) {
          process.kill(process.pid, 'SIGKILL');
        }
      },
    });`;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
    cwd: REPO_ROOT,
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (_code, signal) => resolve(signal));
  });
}

describe('an export brought up to date and killed', () => {
  let dir: string;
  let exported: string;
  let kept: string[];
  beforeAll(async () => {
    dir = await filtered('kill-src', KEEP_ALL);
    exported = join(tmp.path, 'kill-base');
    await runExport({ corpus: dir, out: exported, shardSize: 3 });
    kept = await refilter(dir, UP_TO_7_WORDS);
  });

  // Each point: after the kept pairs are listed; after the first shard is retired; after every
  // shard is retired in the manifest, before their files are removed; after the writer opened.
  const points: Array<[string, number | 'last']> = [
    ['list', 20],
    ['remove', 1],
    ['remove', 'last'],
    ['write', 0],
  ];
  it.each(points)('stays consistent when killed at %s %s, and a rerun finishes the update', async (phase, done) => {
    const out = join(tmp.path, `kill-${phase}-${done}`);
    cpSync(exported, out, { recursive: true });
    expect(await exportKilledAt(dir, out, phase, done)).toBe('SIGKILL');
    const { ledger: l, tars } = await checkLedger(out);
    if (phase === 'remove' && done === 'last') {
      // The manifest no longer records the retired shards; their files wait for the rerun.
      expect(
        l.pairs
          .filter((p) => p.status === 'ok' || p.status === 'pending')
          .map((p) => p.key)
          .sort(),
      ).toEqual(kept);
      expect(tars.length).toBeGreaterThan(l.shards.length);
    }
    const rerun = await runExport({ corpus: dir, out, shardSize: 3 });
    expect(rerun).toMatchObject({ kept: 20, missing: 0, interrupted: false });
    expect(await checkFinished(out)).toEqual(kept);
  });
});
