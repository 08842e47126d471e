import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openCorpus } from '../../corpus/manifest.ts';
import type { Candidate } from '../../crawl/_candidate.ts';
import { recordCandidates } from '../../crawl/_ingest.ts';
import { readWarc, readWarcRecords } from '../../crawl/_sources/warc.ts';
import { runCrawl } from '../../crawl/index.ts';
import { writeLargeWarc } from '../fixtures/warc.ts';
import { REPO_ROOT } from '../helpers/cli.ts';
import { readManifest } from '../helpers/corpus.ts';

let dir: string;
let warcPath: string;
let warcCandidates: Candidate[];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'altforge-ingest-'));
  warcPath = join(dir, 'large.warc.gz');
  await writeLargeWarc(warcPath, 400, 64);
  warcCandidates = [];
  for await (const candidate of readWarc(warcPath, { keepEmptyAlt: false })) warcCandidates.push(candidate);
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const md5 = (text: string): string => createHash('md5').update(text).digest('hex');

/** The pending rows the candidates should become: one per distinct (caption, url), keyed by md5. */
function expectedRows(candidates: readonly Candidate[], source: string) {
  const rows = new Map<string, { key: string; url: string; page_url: string | null; caption: string }>();
  for (const c of candidates) {
    const key = md5(c.caption + c.url);
    if (!rows.has(key)) rows.set(key, { key, url: c.url, page_url: c.pageUrl, caption: c.caption });
  }
  return [...rows.values()]
    .sort((a, b) => (a.key < b.key ? -1 : 1))
    .map((row) => ({ ...row, status: 'pending', source }));
}

function pendingRows(db: Database.Database) {
  return db.prepare(`SELECT key, url, page_url, caption, status, source FROM pairs ORDER BY key`).all();
}

/** Candidates that exercise full multi-row statements, the rows left over, and repeats. */
function syntheticCandidates(count: number): Candidate[] {
  const out: Candidate[] = [];
  for (let i = 0; i < count; i++) {
    out.push({
      url: `https://img.example.com/${i % 500}.jpg`,
      caption: `Caption ${i % 250}`,
      pageUrl: `https://p.example.com/${i}`,
    });
  }
  return out;
}

describe('recording candidates as pending pairs', () => {
  it('records each distinct (caption, url) once as a pending pair keyed by md5(caption + url)', async () => {
    const corpus = openCorpus(join(dir, 'distinct'), { create: true });
    try {
      const candidates = syntheticCandidates(3000);
      const result = await recordCandidates(corpus.db, candidates, 'urls:test', undefined, 700);
      const expected = expectedRows(candidates, 'urls:test');
      expect(result).toEqual({ read: 3000, inserted: expected.length });
      expect(pendingRows(corpus.db)).toEqual(expected);
      // Repeats keep the page of their first occurrence.
      expect(expected.length).toBe(500);
    } finally {
      corpus.close();
    }
  });

  it('adds nothing when the same candidates are recorded again, in arrays this time', async () => {
    const corpus = openCorpus(join(dir, 'twice'), { create: true });
    try {
      const candidates = syntheticCandidates(1500);
      const first = await recordCandidates(corpus.db, candidates, 'urls:test', undefined, 400);
      const before = pendingRows(corpus.db);
      const arrays = [candidates.slice(0, 10), candidates.slice(10, 1000), candidates.slice(1000)];
      const second = await recordCandidates(corpus.db, arrays, 'urls:test', undefined, 400);
      expect(first.inserted).toBe(before.length);
      expect(second).toEqual({ read: 1500, inserted: 0 });
      expect(pendingRows(corpus.db)).toEqual(before);
    } finally {
      corpus.close();
    }
  });

  it('reports every batch as it is taken in, with the candidates read up to its end', async () => {
    const corpus = openCorpus(join(dir, 'progress'), { create: true });
    try {
      const reports: number[] = [];
      const candidates = syntheticCandidates(900).map((c, i) => ({ ...c, url: `https://img.example.com/u/${i}.jpg` }));
      const result = await recordCandidates(corpus.db, candidates, 'urls:test', (read) => reports.push(read), 300);
      expect(reports).toEqual([300, 600, 900]);
      expect(result).toEqual({ read: 900, inserted: 900 });
    } finally {
      corpus.close();
    }
  });

  it('merges the candidates into pairs every mergeRows, batch after batch in key order, the first of a repeated pair kept', async () => {
    const corpus = openCorpus(join(dir, 'merges'), { create: true });
    try {
      // Merges of 1,200 candidates (four batches of 300): the first repeats 200 of its own pairs,
      // the second is all new, the third (the rest, merged at the end) repeats the first's.
      const pair = (n: number, i: number): Candidate => ({
        url: `https://img.example.com/m/${n}.jpg`,
        caption: `Caption ${n}`,
        pageUrl: `https://p.example.com/${i}`,
      });
      const candidates: Candidate[] = [];
      for (let i = 0; i < 3000; i++) candidates.push(pair(i < 1200 ? i % 1000 : i < 2400 ? i - 200 : i - 2400, i));
      const result = await recordCandidates(corpus.db, candidates, 'urls:test', undefined, 300, 1200);
      const expected = expectedRows(candidates, 'urls:test');
      expect(result).toEqual({ read: 3000, inserted: 2200 });
      expect(pendingRows(corpus.db)).toEqual(expected);
      // The new pairs took their rowids (their place in the download) batch after batch, each
      // batch in key order, as when every batch was its own transaction: not in key order over a
      // whole merge, which would part the rows of one page by up to a merge.
      const seen = new Set<string>();
      const inBatchOrder: string[] = [];
      for (let b = 0; b < candidates.length; b += 300) {
        for (const { key } of expectedRows(candidates.slice(b, b + 300), 'urls:test')) {
          if (!seen.has(key)) inBatchOrder.push(key);
          seen.add(key);
        }
      }
      const byRowid = corpus.db.prepare('SELECT key FROM pairs ORDER BY rowid').pluck().all();
      expect(byRowid).toEqual(inBatchOrder);
      expect(byRowid).not.toEqual([...byRowid].sort());
    } finally {
      corpus.close();
    }
  });

  it('keeps non-ASCII captions and URLs, and page URLs that change, repeat or are missing, exactly', async () => {
    const corpus = openCorpus(join(dir, 'unicode'), { create: true });
    try {
      const captions = ['Café au lait', 'Ελληνικά λόγια', '猫の写真', 'emoji 🐈‍⬛ cat', 'a\u0000b', ''];
      const pages = ['https://p.example.com/é', 'https://p.example.com/é', null, 'https://p.example.com/2', null];
      const candidates: Candidate[] = [];
      for (let i = 0; i < 1000; i++) {
        candidates.push({
          url: `https://img.example.com/${i % 3 === 0 ? 'ü' : 'u'}/${i}.jpg`,
          caption: captions[i % captions.length] as string,
          pageUrl: pages[Math.floor(i / 7) % pages.length] ?? null,
        });
      }
      const result = await recordCandidates(corpus.db, candidates, 'urls:test', undefined, 300);
      const expected = expectedRows(candidates, 'urls:test');
      expect(result).toEqual({ read: 1000, inserted: 1000 });
      expect(pendingRows(corpus.db)).toEqual(expected);
    } finally {
      corpus.close();
    }
  });

  it("rejects with the reader's error after committing the batches read before it", async () => {
    const corpus = openCorpus(join(dir, 'reader-fails'), { create: true });
    try {
      const candidates = syntheticCandidates(1000).map((c, i) => ({ ...c, url: `https://img.example.com/f/${i}.jpg` }));
      async function* failing(): AsyncGenerator<Candidate> {
        yield* candidates.slice(0, 650);
        throw new Error('the input broke');
      }
      await expect(recordCandidates(corpus.db, failing(), 'urls:test', undefined, 300)).rejects.toThrow(
        'the input broke',
      );
      expect(pendingRows(corpus.db)).toEqual(expectedRows(candidates.slice(0, 600), 'urls:test'));
    } finally {
      corpus.close();
    }
  });

  it('keeps the merges committed before a kill, loses the candidates staged since, and a rerun adds the rest', async () => {
    const out = join(dir, 'killed');
    openCorpus(out, { create: true }).close();
    const candidates = syntheticCandidates(1500).map((c, i) => ({ ...c, url: `https://img.example.com/k/${i}.jpg` }));
    const list = join(dir, 'killed.json');
    await writeFile(list, JSON.stringify(candidates));
    // Batches of 300, merged every 600: killed once the third batch is staged, after the first
    // merge, with nothing more read.
    const code = `
      const { openCorpus } = await import(${JSON.stringify(join(REPO_ROOT, 'corpus/manifest.ts'))});
      const { recordCandidates } = await import(${JSON.stringify(join(REPO_ROOT, 'crawl/_ingest.ts'))});
      const corpus = openCorpus(${JSON.stringify(out)});
      const { readFileSync } = await import('node:fs');
      const candidates = JSON.parse(readFileSync(${JSON.stringify(list)}, 'utf8'));
      let thirdStaged;
      const staged = new Promise((resume) => (thirdStaged = resume));
      async function* killedAfter900() {
        yield* candidates.slice(0, 900);
        await staged;
        process.kill(process.pid, 'SIGKILL');
      }
      const onBatch = (read) => read === 900 && thirdStaged();
      await recordCandidates(corpus.db, killedAfter900(), 'urls:test', onBatch, 300, 600);`;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    const ended = await new Promise((resolve, reject) => {
      child.once('error', reject);
      child.once('close', (_code, signal) => resolve(signal));
    });
    expect(ended).toBe('SIGKILL');
    // The scratch table lived in the thread's temporary database: nothing of it is left.
    expect((await readdir(out)).filter((name) => !name.startsWith('manifest.sqlite'))).toEqual([]);
    const corpus = openCorpus(out);
    try {
      expect(corpus.db.pragma('integrity_check', { simple: true })).toBe('ok');
      expect(pendingRows(corpus.db)).toEqual(expectedRows(candidates.slice(0, 600), 'urls:test'));
      const rerun = await recordCandidates(corpus.db, candidates, 'urls:test', undefined, 300, 600);
      expect(rerun).toEqual({ read: 1500, inserted: 900 });
      expect(pendingRows(corpus.db)).toEqual(expectedRows(candidates, 'urls:test'));
    } finally {
      corpus.close();
    }
  });

  it('rejects with the SQLite error when the database cannot take the pairs', async () => {
    const path = join(dir, 'not-a-manifest.sqlite');
    const db = new Database(path);
    db.pragma('journal_mode = WAL');
    try {
      await expect(recordCandidates(db, syntheticCandidates(10), 'urls:test')).rejects.toThrow(/no such table: pairs/);
    } finally {
      db.close();
    }
  });
});

describe('WARC ingestion into the manifest', () => {
  it('reads the same candidates record by record as one by one', async () => {
    const flat: Candidate[] = [];
    for await (const record of readWarcRecords(warcPath, { keepEmptyAlt: false })) {
      expect(record.length).toBeGreaterThan(0);
      flat.push(...record);
    }
    expect(flat).toEqual(warcCandidates);
  });

  it('records every candidate of the WARC as a pending pair, and nothing on a second run', async () => {
    const out = join(dir, 'warc-corpus');
    const source = `warc:${warcPath}`;
    const first = await runCrawl({ warc: [warcPath], out, download: false });
    const expected = expectedRows(warcCandidates, source);
    expect(first.pairsFound).toBe(expected.length);
    expect(expected.length).toBe(1200);
    const second = await runCrawl({ warc: [warcPath], out, download: false });
    expect(second.pairsFound).toBe(0);
    const db = new Database(join(out, 'manifest.sqlite'), { readonly: true });
    try {
      expect(pendingRows(db)).toEqual(expected);
      expect(db.prepare('SELECT source, kind, pairs, done FROM inputs').all()).toEqual([
        { source, kind: 'warc', pairs: 1200, done: 1 },
      ]);
    } finally {
      db.close();
    }
  });

  it('reads an input cut off before it was marked done again, adding only the pairs it lacked', async () => {
    const out = join(dir, 'warc-resumed');
    const source = `warc:${warcPath}`;
    // What a run killed half-way leaves: some batches committed, the input not marked done.
    const corpus = openCorpus(out, { create: true });
    try {
      corpus.db.prepare(`INSERT INTO inputs (source, kind) VALUES (?, 'warc')`).run(source);
      await recordCandidates(corpus.db, warcCandidates.slice(0, 500), source);
    } finally {
      corpus.close();
    }
    const result = await runCrawl({ warc: [warcPath], out, download: false });
    expect(result.pairsFound).toBe(700);
    expect(readManifest(out).pairs.map((p) => p.key)).toEqual(expectedRows(warcCandidates, source).map((r) => r.key));
  });
});
