import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
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

  it('reports every batch with the running counts of new and read pairs', async () => {
    const corpus = openCorpus(join(dir, 'progress'), { create: true });
    try {
      const reports: Array<[number, number]> = [];
      const candidates = syntheticCandidates(900).map((c, i) => ({ ...c, url: `https://img.example.com/u/${i}.jpg` }));
      await recordCandidates(
        corpus.db,
        candidates,
        'urls:test',
        (inserted, read) => reports.push([inserted, read]),
        300,
      );
      expect(reports).toHaveLength(3);
      expect(reports.at(-1)).toEqual([expectedRows(candidates, 'urls:test').length, 900]);
      for (let i = 1; i < reports.length; i++) {
        expect(reports[i]?.[0]).toBeGreaterThan(reports[i - 1]?.[0] ?? Infinity);
      }
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
