import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WARCParser, WARCRecord, WARCSerializer } from 'warcio';
import type { Candidate } from '../../crawl/_candidate.ts';
import { extractFromHtml } from '../../crawl/_html-extract.ts';
import { assertReadableWarc, readWarc, type WarcReadOptions } from '../../crawl/_sources/warc.ts';
import { AltforgeError } from '../../corpus/errors.ts';
import {
  BASED_PAGE_URL,
  ENCODED_PAGE_URL,
  LATIN1_PAGE_URL,
  OPTED_IN_PAGE_URL,
  OPTED_IN_WAT_URL,
  OPTED_OUT_PAGE_URL,
  OPTED_OUT_WAT_URL,
  optOutFixtureBytes,
  PAGE_URL,
  UNTYPED_PAGE_URL,
  WAT_PAGE_URL,
  WAT_PLAIN_PAGE_URL,
  warcFixtureBytes,
  watFixtureBytes,
  writeLargeWarc,
} from '../fixtures/warc.ts';

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'altforge-warc-'));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function file(name: string, bytes: Uint8Array): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, bytes);
  return path;
}

async function collect(path: string, options: Partial<WarcReadOptions> = {}): Promise<Candidate[]> {
  const out: Candidate[] = [];
  for await (const candidate of readWarc(path, { keepEmptyAlt: false, ...options })) out.push(candidate);
  return out;
}

/** The error a promise rejects with, so that its code and message can be asserted exactly. */
async function failure(promise: Promise<unknown>): Promise<AltforgeError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof AltforgeError) return error;
    throw error;
  }
  throw new Error('expected a rejection');
}

const WARC_CANDIDATES: Candidate[] = [
  { url: 'https://news.example.com/img/cat.jpg', caption: 'A cat & a "dog"', pageUrl: PAGE_URL },
  { url: 'https://news.example.com/2024/03/thumbs/bird.png', caption: 'A small bird on a wire', pageUrl: PAGE_URL },
  { url: 'https://news.example.com/img/hero-1920.jpg', caption: 'Hero shot', pageUrl: PAGE_URL },
  { url: 'https://news.example.com/img/lazy.webp', caption: 'Lazy loaded', pageUrl: PAGE_URL },
  { url: 'https://news.example.com/img/pic@2x.webp', caption: 'Picture element', pageUrl: PAGE_URL },
  { url: 'https://cdn.example.net/assets/photo.jpg', caption: 'Relative to base', pageUrl: BASED_PAGE_URL },
  { url: 'https://cdn.example.net/root.jpg', caption: 'Rooted on base host', pageUrl: BASED_PAGE_URL },
  { url: 'https://old.example.de/bild.jpg', caption: 'Caf\u00e9 am M\u00fchlbach', pageUrl: LATIN1_PAGE_URL },
  { url: 'https://untyped.example.com/untyped.png', caption: 'Sniffed as HTML', pageUrl: UNTYPED_PAGE_URL },
  { url: 'https://encoded.example.com/enc.jpg', caption: 'Decoded body', pageUrl: ENCODED_PAGE_URL },
];

const WAT_CANDIDATES: Candidate[] = [
  { url: 'https://static.example.com/shop/img/lamp.jpg', caption: 'Brass desk lamp', pageUrl: WAT_PAGE_URL },
  { url: 'https://static.example.com/img/shade.jpg', caption: 'Linen shade', pageUrl: WAT_PAGE_URL },
  { url: 'https://other.example.net/abs.png', caption: 'Absolute URL', pageUrl: WAT_PAGE_URL },
  { url: 'https://plain.example.com/c.gif', caption: 'Relative to the page', pageUrl: WAT_PLAIN_PAGE_URL },
];

describe('readWarc on WARC files', () => {
  it('reads the same exact candidates from a plain and a gzip WARC', async () => {
    const plain = await file('fixture.warc', await warcFixtureBytes({ gzip: false }));
    const gzip = await file('fixture.warc.gz', await warcFixtureBytes({ gzip: true }));
    expect(await collect(plain)).toEqual(WARC_CANDIDATES);
    expect(await collect(gzip)).toEqual(WARC_CANDIDATES);
  });

  it('adds images without alt-text, captioned "", only with keepEmptyAlt', async () => {
    const path = await file('empty-alt.warc.gz', await warcFixtureBytes({ gzip: true }));
    const story = (await collect(path, { keepEmptyAlt: true })).filter((c) => c.pageUrl === PAGE_URL);
    expect(story.map((c) => [c.url, c.caption])).toEqual([
      ['https://news.example.com/img/cat.jpg', 'A cat & a "dog"'],
      ['https://news.example.com/2024/03/thumbs/bird.png', 'A small bird on a wire'],
      ['https://news.example.com/img/hero-1920.jpg', 'Hero shot'],
      ['https://news.example.com/img/lazy.webp', 'Lazy loaded'],
      ['https://news.example.com/img/no-alt.jpg', ''],
      ['https://news.example.com/img/empty-alt.jpg', ''],
      ['https://news.example.com/img/pic@2x.webp', 'Picture element'],
    ]);
  });

  it('finds what warcio’s own parser and the HTML extractor find in the same file', async () => {
    const bytes = await warcFixtureBytes({ gzip: true });
    const path = await file('oracle.warc.gz', bytes);
    const expected: Candidate[] = [];
    for await (const record of new WARCParser([bytes])) {
      const type = record.httpHeaders?.headers.get('Content-Type') ?? '';
      if (record.warcType !== 'response' || !type.startsWith('text/html') || type.includes('8859')) continue;
      const pageUrl = record.warcTargetURI ?? '';
      for (const image of extractFromHtml(await record.contentText(), pageUrl).images) {
        if (image.hasAlt) expected.push({ url: image.url, caption: image.alt, pageUrl });
      }
    }
    const ours = (await collect(path)).filter((c) => c.pageUrl !== LATIN1_PAGE_URL && c.pageUrl !== UNTYPED_PAGE_URL);
    expect(expected.length).toBe(8);
    expect(ours).toEqual(expected);
  });

  it('reports the compressed bytes read, ending at the file size', async () => {
    const path = await file('progress.warc.gz', await warcFixtureBytes({ gzip: true }));
    const seen: number[] = [];
    await collect(path, { onBytes: (n) => seen.push(n) });
    expect(seen.length).toBeGreaterThan(0);
    expect(seen).toEqual([...seen].sort((a, b) => a - b));
    expect(seen.at(-1)).toBe((await stat(path)).size);
  });
});

describe('readWarc on WAT files', () => {
  it('keeps IMG@/src links with an alt, resolved against Head.Base or the target URI, as cc2dataset does', async () => {
    const plain = await file('fixture.wat', await watFixtureBytes({ gzip: false }));
    const gzip = await file('fixture.wat.gz', await watFixtureBytes({ gzip: true }));
    expect(await collect(plain)).toEqual(WAT_CANDIDATES);
    expect(await collect(gzip)).toEqual(WAT_CANDIDATES);
  });

  it('keeps IMG@/src links without alt, captioned "", only with keepEmptyAlt', async () => {
    const path = await file('keep.wat.gz', await watFixtureBytes({ gzip: true }));
    expect((await collect(path, { keepEmptyAlt: true })).map((c) => [c.url, c.caption])).toEqual([
      ['https://static.example.com/shop/img/lamp.jpg', 'Brass desk lamp'],
      ['https://static.example.com/img/shade.jpg', 'Linen shade'],
      ['https://static.example.com/shop/img/no-alt.jpg', ''],
      ['https://static.example.com/shop/img/empty-alt.jpg', ''],
      ['https://other.example.net/abs.png', 'Absolute URL'],
      ['https://plain.example.com/c.gif', 'Relative to the page'],
    ]);
  });
});

describe('readWarc and robots metas', () => {
  it('leaves out the images of pages whose robots meta or WAT Head.Metas opt out of AI use', async () => {
    const path = await file('opt-out.warc.gz', await optOutFixtureBytes({ gzip: true }));
    expect(await collect(path)).toEqual([
      { url: 'https://art.example.com/in.jpg', caption: 'A drawing', pageUrl: OPTED_IN_PAGE_URL },
      { url: 'https://art.example.com/wat-in.jpg', caption: 'A drawing', pageUrl: OPTED_IN_WAT_URL },
    ]);
    expect((await collect(path, { respectMetaRobots: false })).map((c) => c.pageUrl)).toEqual([
      OPTED_OUT_PAGE_URL,
      OPTED_IN_PAGE_URL,
      OPTED_OUT_WAT_URL,
      OPTED_IN_WAT_URL,
    ]);
  });
});

describe('assertReadableWarc', () => {
  it('accepts plain and gzip WARC and WAT files', async () => {
    for (const [name, bytes] of [
      ['ok.warc', await warcFixtureBytes({ gzip: false })],
      ['ok.warc.gz', await warcFixtureBytes({ gzip: true })],
      ['ok.wat', await watFixtureBytes({ gzip: false })],
      ['ok.wat.gz', await watFixtureBytes({ gzip: true })],
    ] as const) {
      await expect(assertReadableWarc(await file(name, bytes))).resolves.toBeUndefined();
    }
  });

  it('gives ERR_INPUT_NOT_FOUND for a missing file or a directory', async () => {
    const missing = await failure(assertReadableWarc(join(dir, 'nope.warc.gz')));
    expect(missing.code).toBe('ERR_INPUT_NOT_FOUND');
    expect(missing.message).toBe(`WARC file '${join(dir, 'nope.warc.gz')}' cannot be read (ENOENT)`);
    const folder = join(dir, 'a-folder.warc');
    await mkdir(folder);
    expect((await failure(assertReadableWarc(folder))).code).toBe('ERR_INPUT_NOT_FOUND');
  });

  it('gives ERR_INPUT_MALFORMED_WARC for files that do not start as a WARC', async () => {
    const cases = {
      'text.warc': Buffer.from('<html><body>not a warc</body></html>'),
      'text.warc.gz': gzipSync('url,caption\nhttps://a.example/x.jpg,x\n'),
      'empty.warc': Buffer.alloc(0),
      'broken.warc.gz': Buffer.from([0x1f, 0x8b, 0x08, 0x00, 0xde, 0xad, 0xbe, 0xef, 0x00, 0xff, 0x01, 0x02]),
      'warc2.warc': Buffer.from('WARC/2.0\r\nWARC-Type: warcinfo\r\n\r\n'),
    };
    for (const [name, bytes] of Object.entries(cases)) {
      const error = await failure(assertReadableWarc(await file(name, bytes)));
      expect([name, error.code]).toEqual([name, 'ERR_INPUT_MALFORMED_WARC']);
      expect(error.message).toContain(join(dir, name));
    }
  });

  it('reads only the head of the file', async () => {
    const head = await warcFixtureBytes({ gzip: false });
    // Valid start, then garbage: only a full read would notice.
    const path = await file('head-only.warc', Buffer.concat([head, Buffer.alloc(200_000, 0x41)]));
    await expect(assertReadableWarc(path)).resolves.toBeUndefined();
  });
});

describe('readWarc on broken files', () => {
  it('gives ERR_INPUT_NOT_FOUND for a missing file and ERR_INPUT_MALFORMED_WARC for a non-WARC', async () => {
    expect((await failure(collect(join(dir, 'missing.warc')))).code).toBe('ERR_INPUT_NOT_FOUND');
    const text = await file('not-warc.txt', Buffer.from('hello\n'));
    expect((await failure(collect(text))).code).toBe('ERR_INPUT_MALFORMED_WARC');
  });

  it('throws ERR_INPUT_MALFORMED_WARC for a gzip WARC cut in the middle, after yielding what came before', async () => {
    const bytes = await warcFixtureBytes({ gzip: true });
    const path = await file('cut.warc.gz', bytes.subarray(0, Math.floor(bytes.length * 0.6)));
    const got: Candidate[] = [];
    const error = await failure(
      (async () => {
        for await (const c of readWarc(path, { keepEmptyAlt: false })) got.push(c);
      })(),
    );
    expect(error.code).toBe('ERR_INPUT_MALFORMED_WARC');
    expect(error.message).toMatch(
      new RegExp(`^WARC file '${path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}' is malformed near byte \\d+`),
    );
    expect(got).toEqual(WARC_CANDIDATES.slice(0, got.length));
    expect(got.length).toBeGreaterThan(0);
  });

  it('throws ERR_INPUT_MALFORMED_WARC for a plain WARC cut inside a record', async () => {
    const bytes = await warcFixtureBytes({ gzip: false });
    const cut = bytes.indexOf('Rooted on base host');
    const path = await file('cut.warc', bytes.subarray(0, cut));
    const error = await failure(collect(path));
    expect(error.code).toBe('ERR_INPUT_MALFORMED_WARC');
    expect(error.message).toContain('the file ends inside a record');
  });

  it('names the byte offset of garbage found between records', async () => {
    const bytes = await warcFixtureBytes({ gzip: false });
    const at = bytes.indexOf('WARC/1.1', bytes.indexOf('Rooted on base host'));
    const path = await file(
      'garbage.warc',
      Buffer.concat([bytes.subarray(0, at), Buffer.from('garbage in the middle\r\n'), bytes.subarray(at)]),
    );
    const error = await failure(collect(path));
    expect(error.code).toBe('ERR_INPUT_MALFORMED_WARC');
    expect(error.message).toBe(
      `WARC file '${path}' is malformed near byte ${at}: expected a WARC/1.x record, found "garbage in the middle\\r\\n"`,
    );
  });

  it('throws ERR_INPUT_MALFORMED_WARC for a record without a Content-Length', async () => {
    const path = await file('no-length.warc', Buffer.from('WARC/1.0\r\nWARC-Type: resource\r\n\r\nhello\r\n\r\n'));
    const error = await failure(collect(path));
    expect(error.code).toBe('ERR_INPUT_MALFORMED_WARC');
    expect(error.message).toContain('no valid Content-Length');
  });

  it('throws ERR_INPUT_MALFORMED_WARC when the deflate data of a member is corrupt', async () => {
    const members = await Promise.all([warcFixtureBytes({ gzip: true }), warcFixtureBytes({ gzip: true })]);
    const second = Buffer.from(members[1]!);
    // Flip bytes well inside the first member of the second copy: its CRC check fails.
    for (let i = 60; i < 70; i++) second[i]! ^= 0xff;
    const path = await file('corrupt.warc.gz', Buffer.concat([members[0]!, second]));
    const error = await failure(collect(path));
    expect(error.code).toBe('ERR_INPUT_MALFORMED_WARC');
    expect(error.message).toContain('the gzip data is corrupt');
  });

  it('throws ERR_INPUT_MALFORMED_WARC when a later gzip member header is broken, rather than stopping early', async () => {
    const first = await warcFixtureBytes({ gzip: true });
    const second = Buffer.from(await warcFixtureBytes({ gzip: true }));
    second[0] = 0x00; // zlib would silently treat the rest of the file as trailing garbage.
    const path = await file('bad-member.warc.gz', Buffer.concat([first, second]));
    const error = await failure(collect(path));
    expect(error.code).toBe('ERR_INPUT_MALFORMED_WARC');
    expect(error.message).toContain(`compressed byte ${first.length}`);
  });

  it('skips a record whose HTML cannot be decoded, and keeps reading', async () => {
    const page = (url: string, contentEncoding: string | null): WARCRecord =>
      WARCRecord.create(
        {
          url,
          type: 'response',
          httpHeaders:
            contentEncoding === null
              ? { 'Content-Type': 'text/html' }
              : { 'Content-Type': 'text/html', 'Content-Encoding': contentEncoding },
        },
        [new TextEncoder().encode(`<img src="/x.jpg" alt="from ${url}">`)],
      );
    const parts = await Promise.all(
      [page('https://a.example/', 'gzip'), page('https://b.example/', 'zstd'), page('https://c.example/', null)].map(
        (r) => WARCSerializer.serialize(r, { gzip: true }),
      ),
    );
    const path = await file('undecodable.warc.gz', Buffer.concat(parts));
    expect(await collect(path)).toEqual([
      { url: 'https://c.example/x.jpg', caption: 'from https://c.example/', pageUrl: 'https://c.example/' },
    ]);
  });
});

describe('readWarc on a large file', () => {
  it('streams it: the first candidates come before most of the file is read', async () => {
    const path = join(dir, 'large.warc.gz');
    const large = await writeLargeWarc(path, 1500, 16_384);
    const size = (await stat(path)).size;
    expect(size).toBeGreaterThan(20_000_000);
    const progress: number[] = [];
    let count = 0;
    let readWhenFirst = -1;
    for await (const candidate of readWarc(path, { keepEmptyAlt: false, onBytes: (n) => progress.push(n) })) {
      if (count === 0) {
        readWhenFirst = progress.at(-1) ?? -1;
        expect(candidate).toEqual({
          url: 'https://large.example.com/a/0.jpg',
          caption: 'First 0',
          pageUrl: 'https://large.example.com/p/0',
        });
      }
      count++;
    }
    expect(count).toBe(large.candidates);
    expect(readWhenFirst).toBeGreaterThan(0);
    expect(readWhenFirst).toBeLessThan(size / 4);
    expect(progress.at(-1)).toBe(size);
    // The memory held is bounded by the read-ahead, not the file: asserting on heap sizes under a
    // garbage collector is not robust, so this test checks the order of reading instead.
  });
});
