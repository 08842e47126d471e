import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { cpSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { nsfwjsClassifier, runExport, runFilter } from '../../filter/index.ts';
import { makeImageCorpus } from '../fixtures/manifest.ts';
import { lines, runCli } from '../helpers/cli.ts';
import { readManifest, readShards, tempDir } from '../helpers/corpus.ts';

let tmp: { path: string; remove: () => Promise<void> };
let source: string;
let keys: string[];
beforeAll(async () => {
  tmp = await tempDir('altforge-nsfw-');
  source = join(tmp.path, 'source');
  keys = await makeImageCorpus(source, 12, 5);
});
afterAll(async () => {
  await tmp.remove();
});

// Emoji names are 2-5 words; "emoji drawing" makes every caption pass the word-count rule.
const neutral = { minSide: 100, maxImagesPerCaption: 0, vocabSize: 0 } as const;

function scores(dir: string): Map<string, number> {
  const db = new Database(join(dir, 'manifest.sqlite'), { readonly: true });
  try {
    const rows = db.prepare('SELECT sha256, score FROM nsfw_scores').all() as Array<{ sha256: string; score: number }>;
    return new Map(rows.map((r) => [r.sha256, r.score]));
  } finally {
    db.close();
  }
}

/**
 * Every file of a corpus directory with a digest of its bytes: what a run that writes nothing
 * leaves as it was. Left out: SQLite's shared-memory index and an empty write-ahead log, which
 * any reader of a WAL database may create and which hold no data.
 */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of readdirSync(dir, { recursive: true }) as string[]) {
    const path = join(dir, name);
    if (statSync(path).isDirectory() || name.endsWith('-shm')) continue;
    const bytes = readFileSync(path);
    if (name.endsWith('-wal') && bytes.length === 0) continue;
    out[name] = createHash('sha256').update(bytes).digest('hex');
  }
  return out;
}

describe('the pornography rule', () => {
  it('scores real images with nsfwjs, caches the scores and applies the threshold', async () => {
    const dir = join(tmp.path, 'nsfw');
    cpSync(source, dir, { recursive: true });
    const first = await runFilter({ ...neutral, corpus: dir, nsfw: 'nsfwjs' });
    expect(first.nsfwClassified).toBe(12);
    const cached = scores(dir);
    expect(cached.size).toBe(12);
    for (const s of cached.values()) {
      expect(s).toBeGreaterThanOrEqual(0);
      expect(s).toBeLessThanOrEqual(1);
    }
    // Emoji drawings are not pornography.
    expect(first.byReason.nsfw).toBe(0);
    expect(first.kept).toBe(12);

    // A threshold at the median score drops exactly the images above it, from the cache.
    const sorted = [...cached.values()].sort((a, b) => a - b);
    const threshold = sorted[5]!;
    const second = await runFilter({ ...neutral, corpus: dir, nsfw: 'nsfwjs', nsfwThreshold: threshold });
    expect(second.nsfwClassified).toBe(0);
    const above = sorted.filter((s) => s > threshold).length;
    expect(second.byReason.nsfw).toBe(above);
    const rows = readManifest(dir).pairs;
    const db = new Database(join(dir, 'manifest.sqlite'), { readonly: true });
    const reasons = new Map(
      (
        db.prepare('SELECT sha256, reason FROM pairs LEFT JOIN filter_decisions ON pair = pairs.rowid').all() as Array<{
          sha256: string;
          reason: string | null;
        }>
      ).map((r) => [r.sha256, r.reason]),
    );
    db.close();
    for (const r of rows) expect(reasons.get(r.sha256!)).toBe(cached.get(r.sha256!)! > threshold ? 'nsfw' : null);
    expect(second.examples.nsfw?.length).toBe(Math.min(5, above));
  });

  it('dry-runs a corpus filtered before from the cached scores, and writes nothing', async () => {
    const dir = join(tmp.path, 'dry-cached');
    cpSync(source, dir, { recursive: true });
    await runFilter({ ...neutral, corpus: dir, nsfw: 'nsfwjs' });
    const cached = [...scores(dir).values()].sort((a, b) => a - b);
    expect(cached).toHaveLength(12);
    const threshold = cached[5]!;
    const before = snapshot(dir);

    const cli = await runCli([
      'filter',
      '--corpus',
      dir,
      '--min-side',
      '100',
      '--max-images-per-caption',
      '0',
      '--vocab-size',
      '0',
      '--nsfw-threshold',
      String(threshold),
      '--dry-run',
    ]);
    expect(cli.stderr).toBe('');
    expect(cli.code).toBe(0);
    const above = cached.filter((s) => s > threshold).length;
    expect(lines(cli.stdout)[0]).toBe(
      `filter (dry run, nothing written): 12 stored pairs in 1 corpus dir(s), preset align: kept ${12 - above} (${(((12 - above) / 12) * 100).toFixed(1)}%), dropped ${above}`,
    );
    const dry = await runFilter({ ...neutral, corpus: dir, nsfw: 'nsfwjs', nsfwThreshold: threshold, dryRun: true });
    expect(dry).toMatchObject({ dryRun: true, nsfwClassified: 0, kept: 12 - above });
    expect(dry.byReason.nsfw).toBe(above);
    expect(snapshot(dir)).toEqual(before);
  });

  it('dry-runs the classifier on the images a filtered corpus has no score for, and caches nothing', async () => {
    const dir = join(tmp.path, 'dry-uncached');
    cpSync(source, dir, { recursive: true });
    // Filtered before without the classifier: the manifest has the (empty) score cache.
    await runFilter({ ...neutral, corpus: dir, nsfw: 'none' });
    const before = snapshot(dir);
    const dry = await runFilter({ ...neutral, corpus: dir, nsfw: 'nsfwjs', dryRun: true });
    expect(dry).toMatchObject({ dryRun: true, nsfwClassified: 12, kept: 12 });
    expect(dry.rules.find((r) => r.rule === 'nsfw')?.status).toBe('applied');
    expect(scores(dir).size).toBe(0);
    expect(snapshot(dir)).toEqual(before);
  });

  it('reports the rule as skipped, not passed, when nsfwjs is not installed', async () => {
    const dir = join(tmp.path, 'absent');
    cpSync(source, dir, { recursive: true });
    const absent = nsfwjsClassifier(async (name) => {
      const err = new Error(`Cannot find package '${name}'`) as Error & { code: string };
      err.code = 'ERR_MODULE_NOT_FOUND';
      throw err;
    });
    const result = await runFilter({ ...neutral, corpus: dir, nsfw: absent });
    const rule = result.rules.find((r) => r.rule === 'nsfw')!;
    expect(rule.status).toBe('skipped');
    expect(rule.note).toMatch(/nsfwjs is not installed/);
    expect(result.kept).toBe(12);
  });
});

describe('altforge export', () => {
  it('writes only the kept pairs into new shards, and a rerun writes nothing again', async () => {
    const dir = join(tmp.path, 'exp-src');
    cpSync(source, dir, { recursive: true });
    // Keep the pairs whose caption has at least 4 words (the emoji names vary in length).
    const filtered = await runFilter({ ...neutral, corpus: dir, nsfw: 'none', minWords: 4 });
    expect(filtered.kept).toBeGreaterThan(0);
    expect(filtered.dropped).toBeGreaterThan(0);
    const db = new Database(join(dir, 'manifest.sqlite'), { readonly: true });
    const kept = db
      .prepare(`SELECT key FROM pairs WHERE rowid NOT IN (SELECT pair FROM filter_decisions) ORDER BY key`)
      .pluck()
      .all() as string[];
    db.close();

    const out = join(tmp.path, 'exported');
    const result = await runExport({ corpus: dir, out, shardSize: 3 });
    expect(result).toMatchObject({ kept: kept.length, written: kept.length, missing: 0, interrupted: false });
    expect(result.shards).toBe(Math.ceil(kept.length / 3));
    const manifest = readManifest(out);
    expect(manifest.pairs.map((p) => p.key)).toEqual(kept);
    expect(manifest.pairs.every((p) => p.status === 'ok')).toBe(true);
    const shards = await readShards(out);
    const inShards = shards.flatMap((s) => s.samples.map((x) => x.key)).sort();
    expect(inShards).toEqual(kept);

    const again = await runExport({ corpus: dir, out, shardSize: 3 });
    expect(again).toMatchObject({ kept: kept.length, written: 0, missing: 0 });
    expect(keys.length).toBe(12);
  });

  it('refuses a corpus that was never filtered', async () => {
    await expect(runExport({ corpus: source, out: join(tmp.path, 'never') })).rejects.toMatchObject({
      code: 'ERR_NOT_FILTERED',
    });
  });
});
