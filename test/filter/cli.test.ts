import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cpSync, existsSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { runFilter } from '../../filter/index.ts';
import { makeManifest, type PairSpec } from '../fixtures/manifest.ts';
import { lines, pollUntil, runCli, startCli } from '../helpers/cli.ts';
import { tempDir } from '../helpers/corpus.ts';

let tmp: { path: string; remove: () => Promise<void> };
beforeAll(async () => {
  tmp = await tempDir('altforge-filter-cli-');
});
afterAll(async () => {
  await tmp.remove();
});

function decisions(dir: string): Array<string | null> {
  const db = new Database(join(dir, 'manifest.sqlite'), { readonly: true });
  try {
    return db
      .prepare('SELECT reason FROM pairs LEFT JOIN filter_decisions ON pair = pairs.rowid ORDER BY pairs.rowid')
      .pluck()
      .all() as Array<string | null>;
  } finally {
    db.close();
  }
}

describe('altforge filter', () => {
  it('prints the per-rule table and examples, and --json gives the same counts', async () => {
    const dir = join(tmp.path, 'small');
    const pairs: PairSpec[] = [];
    for (let i = 0; i < 12; i++) pairs.push({ caption: 'image', url: `http://b/${i}.jpg` });
    for (let i = 0; i < 5; i++) pairs.push({ caption: `a good caption number ${i}` });
    pairs.push({ caption: 'tiny picture of a cat', width: 64, height: 64 });
    makeManifest(dir, pairs);
    const human = await runCli(['filter', '--corpus', dir, '--nsfw', 'none', '--dry-run']);
    expect(human.code).toBe(0);
    const out = lines(human.stdout);
    expect(out[0]).toBe(
      'filter (dry run, nothing written): 18 stored pairs in 1 corpus dir(s), preset align: kept 5 (27.8%), dropped 13',
    );
    expect(out.find((l) => l.startsWith('shared_caption'))).toMatch(
      /^shared_caption\s+applied\s+caption shared by at most 10 images\s+12 \(66\.7%\)\s+12$/,
    );
    expect(out).toContain('shared_caption:');
    expect(out.find((l) => l.includes('"image"'))).toMatch(/12 images share it/);

    const json = await runCli(['filter', '--corpus', dir, '--nsfw', 'none', '--json']);
    expect(json.code).toBe(0);
    const result = JSON.parse(json.stdout) as { kept: number; byReason: Record<string, number> };
    expect(result.kept).toBe(5);
    expect(result.byReason).toMatchObject({ shared_caption: 12, image_size: 1 });
    expect(decisions(dir).filter((r) => r === null)).toHaveLength(5);
  });

  it('refuses bad input on one line with exit code 2 and writes nothing', async () => {
    const missing = await runCli(['filter', '--corpus', join(tmp.path, 'nope')]);
    expect(missing.code).toBe(2);
    expect(lines(missing.stderr)).toEqual([expect.stringMatching(/No corpus at '.*nope' \(no manifest\.sqlite\)/)]);

    const dir = join(tmp.path, 'bad');
    makeManifest(dir, [{ caption: 'one two three' }]);
    const badRule = await runCli(['filter', '--corpus', dir, '--skip-rule', 'colour']);
    expect(badRule.code).toBe(2);
    expect(lines(badRule.stderr)).toHaveLength(1);
    expect(badRule.stderr).toMatch(/^altforge: Flag --skip-rule: .*, got `colour` \[ERR_INVALID_OPTION\]$/m);
    const noCorpus = await runCli(['filter']);
    expect(noCorpus.code).toBe(2);
    const db = new Database(join(dir, 'manifest.sqlite'), { readonly: true });
    const tables = db.prepare(`SELECT name FROM sqlite_master WHERE type = 'table'`).pluck().all();
    db.close();
    expect(tables).not.toContain('filter_decisions');
  });

  it('refuses a corpus given twice (as typed, with a slash, or through a link) on one line, and writes nothing', async () => {
    const dir = join(tmp.path, 'twice');
    makeManifest(dir, [{ caption: 'one two three four' }, { caption: 'a caption of five words' }]);
    const link = join(tmp.path, 'twice-link');
    symlinkSync(dir, link);
    const refused: Array<[string, string]> = [
      [dir, `corpus '${dir}' is given twice`],
      [`${dir}/`, `'${dir}' and '${dir}/' are one corpus, given twice`],
      [link, `'${dir}' and '${link}' are one corpus, given twice`],
    ];
    for (const [again, message] of refused) {
      const run = await runCli(['filter', '--corpus', dir, '--corpus', again, '--nsfw', 'none']);
      expect(run.code, again).toBe(2);
      expect(lines(run.stderr)).toEqual([`altforge: Flag --corpus: ${message} [ERR_DUPLICATE_CORPUS]`]);
    }
    await expect(runFilter({ corpus: [dir, link], nsfw: 'none' })).rejects.toMatchObject({
      code: 'ERR_DUPLICATE_CORPUS',
      message: `Option 'filter.corpus': '${dir}' and '${link}' are one corpus, given twice`,
    });
    const db = new Database(join(dir, 'manifest.sqlite'), { readonly: true });
    const tables = db.prepare(`SELECT name FROM sqlite_master WHERE type = 'table'`).pluck().all();
    db.close();
    expect(tables).not.toContain('filter_decision_blocks');
  });

  it('names the manifest that is not an SQLite database, among several corpora, on one line', async () => {
    const good = join(tmp.path, 'good');
    makeManifest(good, [{ caption: 'one two three four' }]);
    const bad = join(tmp.path, 'bad-manifest');
    makeManifest(bad, [{ caption: 'one two three four' }]);
    const manifest = join(bad, 'manifest.sqlite');
    writeFileSync(manifest, 'key,caption\nk1,a caption\n');
    const message = `Corpus manifest '${manifest}' is not an SQLite database (file is not a database) [ERR_NOT_A_DATABASE]`;
    for (const args of [
      ['filter', '--corpus', good, '--corpus', bad, '--nsfw', 'none'],
      ['filter', '--corpus', good, '--corpus', bad, '--nsfw', 'none', '--dry-run'],
      ['export', '--corpus', good, '--corpus', bad, '--out', join(tmp.path, 'bad-export')],
    ]) {
      const run = await runCli(args);
      expect(run.code, args.join(' ')).toBe(2);
      expect(lines(run.stderr)).toEqual([`altforge: ${message}`]);
    }
    expect(readFileSync(manifest, 'utf8')).toBe('key,caption\nk1,a caption\n');
    expect(existsSync(join(tmp.path, 'bad-export'))).toBe(false);
  });

  it('refuses bounds that no pair can meet, on one line with exit code 2, and writes nothing', async () => {
    const dir = join(tmp.path, 'bounds');
    makeManifest(dir, [{ caption: 'one two three four' }, { caption: 'a caption of five words' }]);
    const refused: Array<[string[], RegExp]> = [
      [
        ['--min-words', '5', '--max-words', '2'],
        /^altforge: Flag --min-words: expected at most --max-words \(2\), got `5`: no caption could pass \[ERR_INVALID_OPTION\]$/,
      ],
      // Against the preset's 20.
      [['--min-words', '25'], /^altforge: Flag --min-words: expected at most --max-words \(20\), got `25`/],
      [
        ['--max-aspect', '1'],
        /^altforge: Flag --max-aspect: expected above 1, or --inclusive-bounds to keep square images, got `1`: no image could pass \[ERR_INVALID_OPTION\]$/,
      ],
    ];
    for (const [flags, message] of refused) {
      const run = await runCli(['filter', '--corpus', dir, '--nsfw', 'none', ...flags]);
      expect(run.code, flags.join(' ')).toBe(2);
      expect(lines(run.stderr)).toEqual([expect.stringMatching(message)]);
    }
    await expect(runFilter({ corpus: dir, nsfw: 'none', minWords: 5, maxWords: 2 })).rejects.toMatchObject({
      code: 'ERR_INVALID_OPTION',
      context: { option: 'minWords' },
    });
    const db = new Database(join(dir, 'manifest.sqlite'), { readonly: true });
    const tables = db.prepare(`SELECT name FROM sqlite_master WHERE type = 'table'`).pluck().all();
    db.close();
    expect(tables).not.toContain('filter_decision_blocks');

    // Bounds some pair can meet: no limit on words; square images with inclusive bounds; a rule left out.
    const accepted: string[][] = [
      ['--min-words', '5', '--max-words', '0'],
      ['--min-words', '4', '--max-words', '4'],
      ['--max-aspect', '1', '--inclusive-bounds'],
      ['--min-words', '5', '--max-words', '2', '--skip-rule', 'caption_words'],
    ];
    for (const flags of accepted) {
      const run = await runCli(['filter', '--corpus', dir, '--nsfw', 'none', '--dry-run', '--json', ...flags]);
      expect(run.code, flags.join(' ')).toBe(0);
    }
    const squares = await runFilter({ corpus: dir, nsfw: 'none', maxAspect: 1, inclusiveBounds: true, dryRun: true });
    expect(squares.byReason.aspect_ratio).toBe(2);
  });

  it('keeps the previous decisions whole when killed, and a rerun gives the uninterrupted result', async () => {
    // Large enough that the run is still counting when it is killed.
    const pairs: PairSpec[] = [];
    for (let i = 0; i < 300_000; i++) {
      pairs.push({
        caption: `word${i % 1009} term${i % 101} thing${(i * 7) % 4093}`,
        width: 150 + (i % 200),
        height: 300,
      });
    }
    const dir = join(tmp.path, 'kill');
    const reference = join(tmp.path, 'kill-reference');
    makeManifest(dir, pairs);
    cpSync(dir, reference, { recursive: true });
    // Run A completes: its decisions are the ones a killed run B must leave intact.
    await runFilter({ corpus: dir, nsfw: 'none', minSide: 250 });
    const afterA = decisions(dir);
    expect(new Set(afterA)).toEqual(new Set([null, 'image_size']));

    const run = startCli(['filter', '--corpus', dir, '--nsfw', 'none', '--min-side', '180', '--vocab-min-count', '40']);
    const started = await pollUntil(
      () => (existsSync(join(dir, '.filter-work.sqlite')) ? true : undefined),
      () => run.hasExited(),
      5,
    );
    expect(started).toBe(true);
    run.signal('SIGKILL');
    const killed = await run.exited;
    expect(killed.signal).toBe('SIGKILL');
    expect(decisions(dir)).toEqual(afterA);

    const rerun = await runCli([
      'filter',
      '--corpus',
      dir,
      '--nsfw',
      'none',
      '--min-side',
      '180',
      '--vocab-min-count',
      '40',
    ]);
    expect(rerun.code).toBe(0);
    await runFilter({ corpus: reference, nsfw: 'none', minSide: 180, vocabMinCount: 40 });
    const expected = decisions(reference);
    expect(decisions(dir)).toEqual(expected);
    expect(expected).not.toEqual(afterA);
    expect(existsSync(join(dir, '.filter-work.sqlite'))).toBe(false);

    // Ctrl-C while it counts: seen at the next chunk (the passes compute synchronously, so they
    // give the event loop a turn a chunk), the decisions left as they were, the run recorded.
    const interrupted = startCli(['filter', '--corpus', dir, '--nsfw', 'none', '--min-side', '250']);
    const counting = await pollUntil(
      () => (existsSync(join(dir, '.filter-work.sqlite')) ? true : undefined),
      () => interrupted.hasExited(),
      5,
    );
    expect(counting).toBe(true);
    interrupted.signal('SIGINT');
    const stopped = await interrupted.exited;
    expect(stopped.code, stopped.stderr).toBe(130);
    expect(decisions(dir)).toEqual(expected);
    const db = new Database(join(dir, 'manifest.sqlite'), { readonly: true });
    const last = db.prepare(`SELECT outcome FROM stage_runs WHERE stage = 'filter' ORDER BY id DESC LIMIT 1`).get();
    db.close();
    expect(last).toEqual({ outcome: 'interrupted' });
  });
});
