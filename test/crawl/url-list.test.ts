import { createWriteStream, existsSync, readdirSync } from 'node:fs';
import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parquetMetadata } from 'hyparquet';
import { parquetWriteBuffer } from 'hyparquet-writer';
import type { ColumnSource } from 'hyparquet-writer';
import {
  assertReadableUrlList,
  detectUrlListFormat,
  PARQUET_SLICE_ROWS,
  readUrlList,
  type UrlListOptions,
} from '../../crawl/_sources/url-list.ts';
import { UsageError } from '../../corpus/errors.ts';
import type { Candidate } from '../../crawl/_candidate.ts';

const DEFAULTS: UrlListOptions = { urlCol: 'url', captionCol: 'caption' };

/** The same rows are written in every format. A null caption is left out where the format can. */
const ROWS: ReadonlyArray<{ url: string | null; caption: string | null }> = [
  { url: 'https://example.com/a.jpg', caption: 'A red, ripe apple' },
  { url: '  https://example.com/b.png\t', caption: '  Two\nlines,   "quoted"  ' },
  { url: '', caption: 'no url: skipped' },
  { url: null, caption: 'null url: skipped' },
  { url: 'ftp://example.com/c.gif', caption: null },
  { url: 'https://example.com/d%20e.webp?size=large&x=1', caption: 'Ünïcödé 🍎 café' },
  { url: 'relative/path.jpg', caption: '' },
];

const EXPECTED: Candidate[] = [
  { url: 'https://example.com/a.jpg', caption: 'A red, ripe apple', pageUrl: null },
  { url: 'https://example.com/b.png', caption: 'Two lines, "quoted"', pageUrl: null },
  { url: 'ftp://example.com/c.gif', caption: '', pageUrl: null },
  { url: 'https://example.com/d%20e.webp?size=large&x=1', caption: 'Ünïcödé 🍎 café', pageUrl: null },
  { url: 'relative/path.jpg', caption: '', pageUrl: null },
];

const csvField = (value: string | null): string => (value === null ? '' : `"${value.replaceAll('"', '""')}"`);

/** CSV with a BOM, CRLF line ends and every field quoted (commas, quotes and a newline inside). */
function toCsv(rows: typeof ROWS): string {
  const lines = rows.map((row) => `${csvField(row.url)},${csvField(row.caption)}`);
  return '\uFEFF' + ['url,caption', ...lines].join('\r\n') + '\r\n';
}

/** TSV cannot quote: tabs and newlines inside a field become spaces (captions collapse anyway). */
function toTsv(rows: typeof ROWS): string {
  const field = (value: string | null): string => (value ?? '').replace(/[\t\r\n]/g, ' ');
  return ['url\tcaption', ...rows.map((row) => `${field(row.url)}\t${field(row.caption)}`)].join('\n') + '\n';
}

/** JSONL with a blank line in the middle and the null caption left out. */
function toJsonl(rows: typeof ROWS): string {
  const lines = rows.map((row) => JSON.stringify(row.caption === null ? { url: row.url } : row));
  lines.splice(2, 0, '');
  return lines.join('\n') + '\n';
}

const toJson = (rows: typeof ROWS): string => JSON.stringify(rows, null, 2);

function toTxt(rows: typeof ROWS): string {
  return rows.map((row) => row.url ?? '').join('\n') + '\n';
}

function toParquet(columnData: ColumnSource[], rowGroupSize: number): Uint8Array {
  return new Uint8Array(parquetWriteBuffer({ columnData, rowGroupSize }));
}

const rowsParquet = (rows: typeof ROWS): Uint8Array =>
  toParquet(
    [
      { name: 'url', data: rows.map((row) => row.url), type: 'STRING' },
      { name: 'caption', data: rows.map((row) => row.caption), type: 'STRING' },
    ],
    3,
  );

async function collect(path: string, options: UrlListOptions = DEFAULTS): Promise<Candidate[]> {
  const out: Candidate[] = [];
  for await (const candidate of readUrlList(path, options)) out.push(candidate);
  return out;
}

/** The UsageError a promise rejects with (fails the test when it resolves or throws anything else). */
async function usageError(promise: Promise<unknown>): Promise<UsageError> {
  const error = await promise.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  expect(error).toBeInstanceOf(UsageError);
  return error as UsageError;
}

let dir = '';
let n = 0;
/** Writes a fixture under a fresh name in the temp dir. */
async function fixture(name: string, content: string | Uint8Array): Promise<string> {
  const sub = join(dir, String(n++));
  await mkdir(sub);
  const path = join(sub, name);
  await writeFile(path, content);
  return path;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'altforge-url-list-'));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('detectUrlListFormat', () => {
  it('reads the format from the extension, with or without .gz, in any case', () => {
    expect(detectUrlListFormat('a/list.jsonl')).toBe('jsonl');
    expect(detectUrlListFormat('list.ndjson.gz')).toBe('jsonl');
    expect(detectUrlListFormat('list.json')).toBe('json');
    expect(detectUrlListFormat('list.json.gz')).toBe('json');
    expect(detectUrlListFormat('list.tsv')).toBe('tsv');
    expect(detectUrlListFormat('LIST.CSV.GZ')).toBe('csv');
    expect(detectUrlListFormat('part-00000.parquet')).toBe('parquet');
    expect(detectUrlListFormat('urls.txt.gz')).toBe('txt');
  });

  it('refuses an unknown extension and a gzipped parquet file with ERR_INPUT_FORMAT', () => {
    for (const path of ['list.xlsx', 'list', 'list.parquet.gz', 'list.gz']) {
      let caught: unknown;
      try {
        detectUrlListFormat(path);
      } catch (error) {
        caught = error;
      }
      expect(caught).toBeInstanceOf(UsageError);
      expect((caught as UsageError).code).toBe('ERR_INPUT_FORMAT');
      expect((caught as UsageError).message).toBe(
        `URL list '${path}': unknown format; use .jsonl, .ndjson, .json, .tsv, .csv, .txt (each optionally .gz) or .parquet`,
      );
    }
  });
});

describe('readUrlList', () => {
  const cases: Array<[string, () => string | Uint8Array]> = [
    ['list.csv', () => toCsv(ROWS)],
    ['list.csv.gz', () => gzipSync(toCsv(ROWS))],
    ['list.tsv', () => toTsv(ROWS)],
    ['list.tsv.gz', () => gzipSync(toTsv(ROWS))],
    ['list.jsonl', () => toJsonl(ROWS)],
    ['list.ndjson.gz', () => gzipSync(toJsonl(ROWS))],
    ['list.json', () => toJson(ROWS)],
    ['list.json.gz', () => gzipSync(toJson(ROWS))],
    ['list.parquet', () => rowsParquet(ROWS)],
  ];

  it.each(cases)('yields the same candidates from %s', async (name, content) => {
    const path = await fixture(name, content());
    await assertReadableUrlList(path, DEFAULTS);
    expect(await collect(path)).toEqual(EXPECTED);
  });

  it('reads a parquet list written in several row groups', async () => {
    const bytes = rowsParquet(ROWS);
    expect(parquetMetadata(bytes).row_groups.map((group) => Number(group.num_rows))).toEqual([3, 3, 1]);
    expect(await collect(await fixture('groups.parquet', bytes))).toEqual(EXPECTED);
  });

  it('reads a row group larger than its slice in slices, every row once and in order', async () => {
    const rows = 2 * PARQUET_SLICE_ROWS + 7;
    const urls = Array.from({ length: rows }, (_, i) => `https://x.test/${i}.jpg`);
    const captions = Array.from({ length: rows }, (_, i) => `caption ${i}`);
    const bytes = toParquet(
      [
        { name: 'url', data: urls, type: 'STRING' },
        { name: 'caption', data: captions, type: 'STRING' },
      ],
      rows,
    );
    expect(parquetMetadata(bytes).row_groups.map((group) => Number(group.num_rows))).toEqual([rows]);
    const read = await collect(await fixture('one-group.parquet', bytes));
    expect(read.length).toBe(rows);
    expect(read.every((c, i) => c.url === urls[i] && c.caption === captions[i])).toBe(true);
  });

  it('yields one URL per line of a .txt list, with empty captions', async () => {
    const expected = EXPECTED.map((candidate) => ({ ...candidate, caption: '' }));
    expect(await collect(await fixture('urls.txt', toTxt(ROWS)))).toEqual(expected);
    expect(await collect(await fixture('urls.txt.gz', gzipSync('\uFEFF' + toTxt(ROWS))))).toEqual(expected);
  });

  it('reads gzip by its magic bytes, whatever the extension says', async () => {
    expect(await collect(await fixture('list.csv', gzipSync(toCsv(ROWS))))).toEqual(EXPECTED);
    expect(await collect(await fixture('list.tsv.gz', toTsv(ROWS)))).toEqual(EXPECTED);
  });

  it('takes the format option over the extension', async () => {
    const path = await fixture('list.dat', toTsv(ROWS));
    await assertReadableUrlList(path, { ...DEFAULTS, format: 'tsv' });
    expect(await collect(path, { ...DEFAULTS, format: 'tsv' })).toEqual(EXPECTED);
  });

  it('reads CSV fields holding commas, doubled quotes and newlines', async () => {
    const csv = 'url,caption\nhttps://x.test/1.jpg,"a, b"\n"https://x.test/2.jpg","say ""hi""\nthere"\n\n';
    expect(await collect(await fixture('quoted.csv', csv))).toEqual([
      { url: 'https://x.test/1.jpg', caption: 'a, b', pageUrl: null },
      { url: 'https://x.test/2.jpg', caption: 'say "hi" there', pageUrl: null },
    ]);
  });

  it('reads a gzip-compressed parquet list', async () => {
    const bytes = new Uint8Array(
      parquetWriteBuffer({
        columnData: [
          { name: 'url', data: ['https://x.test/1.jpg', 'https://x.test/2.jpg'], type: 'STRING' },
          { name: 'caption', data: ['one', 'two'], type: 'STRING' },
        ],
        codec: 'GZIP',
        compressors: { GZIP: (input) => new Uint8Array(gzipSync(input)) },
      }),
    );
    expect(parquetMetadata(bytes).row_groups[0]?.columns[0]?.meta_data?.codec).toBe('GZIP');
    expect(await collect(await fixture('gzip.parquet', bytes))).toEqual([
      { url: 'https://x.test/1.jpg', caption: 'one', pageUrl: null },
      { url: 'https://x.test/2.jpg', caption: 'two', pageUrl: null },
    ]);
  });

  it('reports the bytes read from disk as it goes', async () => {
    const csvPath = await fixture('bytes.csv', toCsv(ROWS));
    const gzPath = await fixture('bytes.jsonl.gz', gzipSync(toJsonl(ROWS)));
    for (const path of [csvPath, gzPath]) {
      const seen: number[] = [];
      await collect(path, { ...DEFAULTS, onBytes: (bytes) => seen.push(bytes) });
      expect(seen.at(-1)).toBe((await stat(path)).size);
    }
    const parquetSeen: number[] = [];
    await collect(await fixture('bytes.parquet', rowsParquet(ROWS)), {
      ...DEFAULTS,
      onBytes: (b) => parquetSeen.push(b),
    });
    expect(parquetSeen.length).toBeGreaterThan(0);
    expect(parquetSeen).toEqual([...parquetSeen].sort((a, b) => a - b));
  });
});

describe('custom columns', () => {
  const rows = [
    {
      id: 1,
      image_url: 'https://x.test/1.jpg',
      alt: 'first  image',
      url: 'https://x.test/wrong.jpg',
      caption: 'wrong',
    },
    { id: 2, image_url: 'https://x.test/2.jpg', alt: null, url: 'https://x.test/wrong.jpg', caption: 'wrong' },
  ];
  const options: UrlListOptions = { urlCol: 'image_url', captionCol: 'alt' };
  const expected: Candidate[] = [
    { url: 'https://x.test/1.jpg', caption: 'first image', pageUrl: null },
    { url: 'https://x.test/2.jpg', caption: '', pageUrl: null },
  ];

  it.each<[string, () => string | Uint8Array]>([
    [
      'custom.csv',
      () =>
        'id,url,image_url,caption,alt\n' +
        rows.map((r) => `${r.id},${r.url},${r.image_url},${r.caption},${r.alt ?? ''}`).join('\n'),
    ],
    [
      'custom.tsv',
      () =>
        'id\turl\timage_url\tcaption\talt\n' +
        rows.map((r) => `${r.id}\t${r.url}\t${r.image_url}\t${r.caption}\t${r.alt ?? ''}`).join('\n'),
    ],
    ['custom.jsonl', () => rows.map((r) => JSON.stringify(r)).join('\n')],
    ['custom.json', () => JSON.stringify(rows)],
    [
      'custom.parquet',
      () =>
        toParquet(
          [
            { name: 'id', data: rows.map((r) => r.id), type: 'INT32' },
            { name: 'url', data: rows.map((r) => r.url), type: 'STRING' },
            { name: 'image_url', data: rows.map((r) => r.image_url), type: 'STRING' },
            { name: 'caption', data: rows.map((r) => r.caption), type: 'STRING' },
            { name: 'alt', data: rows.map((r) => r.alt), type: 'STRING' },
          ],
          1,
        ),
    ],
  ])('reads the URL and caption from the named columns of %s', async (name, content) => {
    const path = await fixture(name, content());
    await assertReadableUrlList(path, { ...options, captionColExplicit: true });
    expect(await collect(path, options)).toEqual(expected);
  });

  it('gives empty captions when the default caption column is absent', async () => {
    const path = await fixture('nocaption.csv', 'url,width\nhttps://x.test/1.jpg,640\n');
    await assertReadableUrlList(path, DEFAULTS);
    expect(await collect(path)).toEqual([{ url: 'https://x.test/1.jpg', caption: '', pageUrl: null }]);
  });

  it('ignores the column options for a .txt list', async () => {
    const path = await fixture('cols.txt', 'https://x.test/1.jpg\n');
    await assertReadableUrlList(path, { urlCol: 'link', captionCol: 'alt', captionColExplicit: true });
    expect(await collect(path, { urlCol: 'link', captionCol: 'alt' })).toEqual([
      { url: 'https://x.test/1.jpg', caption: '', pageUrl: null },
    ]);
  });
});

describe('errors', () => {
  it.each<[string, () => string | Uint8Array]>([
    ['missing.csv', () => 'link,caption\nhttps://x.test/1.jpg,a\n'],
    ['missing.tsv', () => 'link\tcaption\nhttps://x.test/1.jpg\ta\n'],
    ['missing.jsonl', () => '{"link":"https://x.test/1.jpg","caption":"a"}\n'],
    ['missing.json', () => '[{"link":"https://x.test/1.jpg","caption":"a"}]'],
    [
      'missing.parquet',
      () =>
        toParquet(
          [
            { name: 'link', data: ['https://x.test/1.jpg'], type: 'STRING' },
            { name: 'caption', data: ['a'], type: 'STRING' },
          ],
          10,
        ),
    ],
  ])('refuses %s without the URL column, naming the columns it has', async (name, content) => {
    const path = await fixture(name, content());
    const message = `URL list '${path}' has no URL column 'url' (--url-col); its columns are: link, caption`;
    // Started one at a time: a second promise rejecting while the first is awaited would be unhandled.
    for (const attempt of [() => assertReadableUrlList(path, DEFAULTS), () => collect(path)]) {
      const error = await usageError(attempt());
      expect(error.code).toBe('ERR_INPUT_MISSING_COLUMN');
      expect(error.message).toBe(message);
    }
  });

  it('refuses a caption column the user named that the list lacks', async () => {
    const path = await fixture('nocaption.jsonl', '{"url":"https://x.test/1.jpg","text":"a"}\n');
    const error = await usageError(
      assertReadableUrlList(path, { urlCol: 'url', captionCol: 'alt', captionColExplicit: true }),
    );
    expect(error.code).toBe('ERR_INPUT_MISSING_COLUMN');
    expect(error.message).toBe(
      `URL list '${path}' has no caption column 'alt' (--caption-col); its columns are: url, text`,
    );
    // Not named by the user: the captions are just empty.
    await assertReadableUrlList(path, { urlCol: 'url', captionCol: 'alt' });
  });

  it('refuses a missing file and a directory with ERR_INPUT_NOT_FOUND', async () => {
    const missing = join(dir, 'nope', 'list.csv');
    for (const attempt of [() => assertReadableUrlList(missing, DEFAULTS), () => collect(missing)]) {
      const error = await usageError(attempt());
      expect(error.code).toBe('ERR_INPUT_NOT_FOUND');
      expect(error.message).toBe(`URL list '${missing}' not found`);
    }
    const folder = join(dir, 'folder.csv');
    await mkdir(folder);
    const error = await usageError(assertReadableUrlList(folder, DEFAULTS));
    expect(error.code).toBe('ERR_INPUT_NOT_FOUND');
    expect(error.message).toBe(`URL list '${folder}' is a directory, not a file`);
  });

  it('refuses an unknown extension before opening the file', async () => {
    const error = await usageError(assertReadableUrlList(join(dir, 'nope.xlsx'), DEFAULTS));
    expect(error.code).toBe('ERR_INPUT_FORMAT');
  });

  it('names the line of a malformed JSONL row in the middle, after yielding the rows before it', async () => {
    const path = await fixture(
      'broken.jsonl',
      '{"url":"https://x.test/1.jpg"}\n\n{"url":"https://x.test/2.jpg"}\n{"url": oops}\n{"url":"https://x.test/3.jpg"}\n',
    );
    const seen: string[] = [];
    const error = await usageError(
      (async () => {
        for await (const candidate of readUrlList(path, DEFAULTS)) seen.push(candidate.url);
      })(),
    );
    expect(error.code).toBe('ERR_INPUT_MALFORMED');
    expect(error.message.startsWith(`URL list '${path}' line 4: invalid JSON (`)).toBe(true);
    expect(seen).toEqual(['https://x.test/1.jpg', 'https://x.test/2.jpg']);
  });

  it('refuses a JSONL line that is not an object', async () => {
    const path = await fixture('array.jsonl', '["https://x.test/1.jpg"]\n');
    const error = await usageError(assertReadableUrlList(path, DEFAULTS));
    expect(error.code).toBe('ERR_INPUT_MALFORMED');
    expect(error.message).toBe(`URL list '${path}' line 1: expected a JSON object, got an array`);
  });

  it('names the line of a malformed CSV record', async () => {
    const path = await fixture('broken.csv', 'url,caption\nhttps://x.test/1.jpg,a\n"https://x.test/2.jpg",b,extra\n');
    const error = await usageError(collect(path));
    expect(error.code).toBe('ERR_INPUT_MALFORMED');
    expect(error.message).toBe(
      `URL list '${path}' line 3: invalid CSV (Invalid Record Length: expect 2, got 3 on line 3)`,
    );
  });

  it('refuses a .json list that is not an array of objects', async () => {
    const object = await fixture('object.json', '{"url":"https://x.test/1.jpg"}');
    expect((await usageError(assertReadableUrlList(object, DEFAULTS))).message).toBe(
      `URL list '${object}' must hold a JSON array of objects, got an object`,
    );
    const truncated = await fixture('truncated.json', '[{"url":"https://x.test/1.jpg"}');
    expect((await usageError(assertReadableUrlList(truncated, DEFAULTS))).code).toBe('ERR_INPUT_MALFORMED');
  });

  it('refuses an empty CSV or TSV, which has no header row', async () => {
    for (const name of ['empty.csv', 'empty.tsv']) {
      const path = await fixture(name, '');
      const error = await usageError(assertReadableUrlList(path, DEFAULTS));
      expect(error.code).toBe('ERR_INPUT_MALFORMED');
      expect(error.message).toBe(`URL list '${path}' is empty; expected a header row naming the columns`);
    }
  });

  it('refuses a file that is not parquet and a corrupt gzip with ERR_INPUT_MALFORMED', async () => {
    const parquet = await fixture('fake.parquet', 'url,caption\nhttps://x.test/1.jpg,a\n');
    const parquetError = await usageError(assertReadableUrlList(parquet, DEFAULTS));
    expect(parquetError.code).toBe('ERR_INPUT_MALFORMED');
    expect(parquetError.message.startsWith(`URL list '${parquet}' is not a readable parquet file (`)).toBe(true);

    const whole = gzipSync(toCsv(ROWS));
    const gz = await fixture('cut.csv.gz', whole.subarray(0, whole.length - 12));
    const gzError = await usageError(collect(gz));
    expect(gzError.code).toBe('ERR_INPUT_MALFORMED');
    expect(gzError.message).toBe(`URL list '${gz}' is not valid gzip (unexpected end of file)`);
  });

  it('refuses a parquet list compressed with a codec it cannot read', async () => {
    const bytes = new Uint8Array(
      parquetWriteBuffer({
        columnData: [{ name: 'url', data: ['https://x.test/1.jpg'], type: 'STRING' }],
        codec: 'LZ4',
        // Only the footer is read, so the pages need not really be LZ4.
        compressors: { LZ4: (input) => input },
      }),
    );
    const path = await fixture('lz4.parquet', bytes);
    const error = await usageError(assertReadableUrlList(path, DEFAULTS));
    expect(error.code).toBe('ERR_INPUT_FORMAT');
    expect(error.message.startsWith(`URL list '${path}' uses LZ4 compression, which altforge cannot read;`)).toBe(true);
  });

  it('checks only the head of the file', async () => {
    const good = Array.from({ length: 5000 }, (_, i) => `https://x.test/${i}.jpg,caption ${i}`);
    const path = await fixture('late-error.csv', ['url,caption', ...good, '"unterminated,x'].join('\n') + '\n');
    await assertReadableUrlList(path, DEFAULTS);
    const error = await usageError(collect(path));
    expect(error.code).toBe('ERR_INPUT_MALFORMED');
    expect(error.message.startsWith(`URL list '${path}' line 5002: invalid CSV (`)).toBe(true);
  });
});

describe('resources', () => {
  const openFiles = (): number => readdirSync('/proc/self/fd').length;

  it.skipIf(!existsSync('/proc/self/fd'))('closes the file when the consumer stops early', async () => {
    const many = Array.from({ length: 20_000 }, (_, i) => ({ url: `https://x.test/${i}.jpg`, caption: `c ${i}` }));
    const paths = [
      await fixture('early.csv.gz', gzipSync(toCsv(many))),
      await fixture('early.tsv', toTsv(many)),
      await fixture('early.jsonl', toJsonl(many)),
      await fixture('early.json', toJson(many)),
      await fixture('early.parquet', rowsParquet(many)),
    ];
    const before = openFiles();
    for (const path of paths) {
      let count = 0;
      for await (const _ of readUrlList(path, DEFAULTS)) {
        if (++count === 10) break;
      }
      expect(count).toBe(10);
    }
    expect(openFiles()).toBe(before);
  });
});

describe('large lists', () => {
  it('streams a 200k-row CSV instead of loading it whole', async () => {
    const rows = 200_000;
    const path = join(dir, 'large.csv');
    const out = createWriteStream(path);
    out.write('url,caption\n');
    for (let i = 0; i < rows; i++) {
      const line = `https://img.example.com/${i}.jpg,"caption number ${i}, with a comma"\n`;
      if (!out.write(line)) await once(out, 'drain');
    }
    out.end();
    await once(out, 'finish');
    const size = (await stat(path)).size;

    let bytesRead = 0;
    let bytesAtFirstRow = -1;
    let count = 0;
    let last: Candidate | undefined;
    for await (const candidate of readUrlList(path, { ...DEFAULTS, onBytes: (bytes) => (bytesRead = bytes) })) {
      if (count === 0) bytesAtFirstRow = bytesRead;
      count++;
      last = candidate;
    }
    expect(count).toBe(rows);
    expect(last).toEqual({
      url: `https://img.example.com/${rows - 1}.jpg`,
      caption: `caption number ${rows - 1}, with a comma`,
      pageUrl: null,
    });
    // The first row came out while most of the file was still unread.
    expect(bytesAtFirstRow).toBeGreaterThan(0);
    expect(bytesAtFirstRow).toBeLessThan(size / 10);
    expect(bytesRead).toBe(size);
  });
});
