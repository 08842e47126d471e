/**
 * URL lists in the formats img2dataset reads (the `--urls` input of `altforge crawl`): one image
 * URL and one caption per row, as JSON Lines, JSON, TSV, CSV, Parquet or plain text.
 *
 * Everything is streamed (a LAION part file is millions of rows), except `.json`, which is one
 * array and is parsed whole: it is meant for small lists. Gzip is recognised by its magic bytes,
 * so `list.csv.gz` and a gzipped `list.csv` both read.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { Readable, pipeline } from 'node:stream';
import * as zlib from 'node:zlib';
import { parse as parseCsv } from 'csv-parse';
import { cachedAsyncBuffer, parquetMetadataAsync, parquetRead, parquetSchema } from 'hyparquet';
import type { AsyncBuffer, CompressionCodec, Compressors, FileMetaData, ParquetRow } from 'hyparquet';
import { UsageError } from '../../corpus/errors.ts';
import type { Candidate } from '../_candidate.ts';
import { collapseWhitespace } from '../_html-extract.ts';

/** The formats of a URL list. */
export type UrlListFormat = 'jsonl' | 'json' | 'tsv' | 'csv' | 'parquet' | 'txt';

/** How to read a URL list. */
export interface UrlListOptions {
  /** Column holding the image URL (ignored for `.txt`). */
  urlCol: string;
  /** Column holding the caption; when the list has no such column every caption is ''. */
  captionCol: string;
  /** The format, when the extension does not say it. @default detected from the extension */
  format?: UrlListFormat;
  /** Called as the file is read, with the bytes read from disk so far (compressed bytes for gzip). */
  onBytes?: (bytesRead: number) => void;
}

/** Rows parsed by {@link assertReadableUrlList}: enough to catch a wrong delimiter or a binary file. */
const HEAD_ROWS = 100;
/** Bytes read from disk at a time. */
const CHUNK_BYTES = 64 * 1024;
/** Longest line or CSV record accepted: a runaway quote or a file without newlines stops here. */
const MAX_RECORD_CHARS = 16 * 1024 * 1024;

const EXTENSIONS: ReadonlyArray<readonly [string, UrlListFormat]> = [
  ['.jsonl', 'jsonl'],
  ['.ndjson', 'jsonl'],
  ['.json', 'json'],
  ['.tsv', 'tsv'],
  ['.csv', 'csv'],
  ['.parquet', 'parquet'],
  ['.txt', 'txt'],
];

/**
 * Format from the extension (.jsonl/.ndjson, .json, .tsv, .csv, .parquet, .txt; each of them
 * except parquet optionally .gz), case-insensitive.
 * @throws UsageError `ERR_INPUT_FORMAT` for any other extension.
 */
export function detectUrlListFormat(path: string): UrlListFormat {
  const lower = path.toLowerCase();
  const gzip = lower.endsWith('.gz');
  const base = gzip ? lower.slice(0, -3) : lower;
  for (const [extension, format] of EXTENSIONS) {
    // Parquet compresses its own pages; a gzipped parquet file cannot be read by row group.
    if (base.endsWith(extension) && !(gzip && format === 'parquet')) return format;
  }
  throw new UsageError(
    'ERR_INPUT_FORMAT',
    `URL list '${path}': unknown format; use .jsonl, .ndjson, .json, .tsv, .csv, .txt (each optionally .gz) or .parquet`,
    { context: { stage: 'crawl', path } },
  );
}

/**
 * Checks a URL list before anything is written: the file exists and is readable
 * (`ERR_INPUT_NOT_FOUND`), it parses at its head (`ERR_INPUT_MALFORMED`), and the URL column
 * exists (`ERR_INPUT_MISSING_COLUMN`; the message names the column, the file and the columns
 * that do exist). The caption column may be absent (captions are then ''), unless
 * `captionColExplicit` says the user named it. Reads only the head of the file: the header and
 * the first rows, or the footer of a parquet file. A `.json` list is parsed whole.
 * Column options do not apply to `.txt` lists.
 */
export async function assertReadableUrlList(
  path: string,
  options: UrlListOptions & { captionColExplicit?: boolean },
): Promise<void> {
  const format = options.format ?? detectUrlListFormat(path);
  const spec: ReadSpec = {
    path,
    urlCol: options.urlCol,
    captionCol: options.captionCol,
    captionColExplicit: options.captionColExplicit ?? false,
    headOnly: true,
    onBytes: undefined,
  };
  let rows = 0;
  for await (const _ of readRows(format, spec)) {
    if (++rows >= HEAD_ROWS) break;
  }
}

/**
 * Streams the candidates of a URL list row by row, never loading the whole file (except `.json`).
 * Parquet is read one row group at a time. URLs are trimmed and rows without one are skipped; a
 * URL that is not absolute http(s) is still yielded, for the crawler to record as `invalid_url`.
 * Captions have their whitespace collapsed; a missing or null caption is ''.
 * @throws UsageError `ERR_INPUT_NOT_FOUND`, `ERR_INPUT_MALFORMED` (with the line number for text
 * formats), `ERR_INPUT_MISSING_COLUMN`, `ERR_INPUT_FORMAT`.
 */
export async function* readUrlList(path: string, options: UrlListOptions): AsyncGenerator<Candidate> {
  const format = options.format ?? detectUrlListFormat(path);
  const spec: ReadSpec = {
    path,
    urlCol: options.urlCol,
    captionCol: options.captionCol,
    captionColExplicit: false,
    headOnly: false,
    onBytes: options.onBytes,
  };
  for await (const row of readRows(format, spec)) {
    const url = row.url === null || row.url === undefined ? '' : String(row.url).trim();
    if (url === '') continue;
    const caption = row.caption === null || row.caption === undefined ? '' : collapseWhitespace(String(row.caption));
    yield { url, caption, pageUrl: null };
  }
}

/** The URL and caption cells of one row, as the format gave them. */
interface RawRow {
  url: unknown;
  caption: unknown;
}

interface ReadSpec {
  path: string;
  urlCol: string;
  captionCol: string;
  captionColExplicit: boolean;
  /** Stop after the checks that need no rows (parquet reads its footer only). */
  headOnly: boolean;
  onBytes: ((bytesRead: number) => void) | undefined;
}

async function* readRows(format: UrlListFormat, spec: ReadSpec): AsyncGenerator<RawRow> {
  const handle = await openInput(spec.path);
  try {
    switch (format) {
      case 'parquet':
        yield* parquetRows(handle, spec);
        break;
      case 'csv':
        yield* csvRows(await byteStream(handle, spec), spec);
        break;
      case 'tsv':
        yield* tsvRows(await byteStream(handle, spec), spec);
        break;
      case 'jsonl':
        yield* jsonlRows(await byteStream(handle, spec), spec);
        break;
      case 'json':
        yield* jsonRows(await byteStream(handle, spec), spec);
        break;
      case 'txt':
        yield* txtRows(await byteStream(handle, spec), spec);
        break;
    }
  } catch (error) {
    throw asUsageError(error, spec.path);
  } finally {
    // Waits for a read still in flight when the consumer stopped early.
    await handle.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Errors

function inputError(code: string, spec: { path: string }, message: string, cause?: unknown): UsageError {
  return new UsageError(code, `URL list '${spec.path}' ${message}`, {
    cause,
    context: { stage: 'crawl', path: spec.path },
  });
}

/** A library's message, made to fit on one line of ours. */
function detail(error: unknown): string {
  const text = collapseWhitespace(error instanceof Error ? error.message : String(error));
  return text.length > 200 ? text.slice(0, 197) + '...' : text;
}

/** Gzip and CSV failures surface from inside the stream pipeline; give them our codes. */
function asUsageError(error: unknown, path: string): unknown {
  if (error instanceof UsageError) return error;
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && code.startsWith('Z_')) {
    return inputError('ERR_INPUT_MALFORMED', { path }, `is not valid gzip (${detail(error)})`, error);
  }
  if (typeof code === 'string' && code.startsWith('CSV_')) {
    const line = (error as { lines?: unknown }).lines;
    const where = typeof line === 'number' ? `line ${line}: ` : '';
    return inputError('ERR_INPUT_MALFORMED', { path }, `${where}invalid CSV (${detail(error)})`, error);
  }
  // A disk failure mid-read is not the user's doing: left as a runtime error.
  return error;
}

function missingColumnError(spec: ReadSpec, which: 'URL' | 'caption', columns: readonly string[]): UsageError {
  const column = which === 'URL' ? spec.urlCol : spec.captionCol;
  const flag = which === 'URL' ? '--url-col' : '--caption-col';
  // A wide parquet file can have hundreds of columns; the message stays one readable line.
  const listed = columns.slice(0, 30).join(', ') + (columns.length > 30 ? `, ... (${columns.length - 30} more)` : '');
  const existing = columns.length === 0 ? '(none)' : listed;
  return inputError(
    'ERR_INPUT_MISSING_COLUMN',
    spec,
    `has no ${which} column '${column}' (${flag}); its columns are: ${existing}`,
  );
}

/** Throws unless the URL column exists (and the caption column, when the user named it). */
function checkColumns(spec: ReadSpec, columns: readonly string[]): void {
  if (!columns.includes(spec.urlCol)) throw missingColumnError(spec, 'URL', columns);
  if (spec.captionColExplicit && !columns.includes(spec.captionCol)) throw missingColumnError(spec, 'caption', columns);
}

// ---------------------------------------------------------------------------------------------
// Bytes

async function openInput(path: string): Promise<FileHandle> {
  let handle: FileHandle;
  try {
    handle = await open(path, 'r');
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    const why = code === 'ENOENT' ? 'not found' : `cannot be read (${typeof code === 'string' ? code : detail(error)})`;
    throw inputError('ERR_INPUT_NOT_FOUND', { path }, why, error);
  }
  try {
    if ((await handle.stat()).isDirectory()) {
      throw inputError('ERR_INPUT_NOT_FOUND', { path }, 'is a directory, not a file');
    }
  } catch (error) {
    await handle.close();
    throw error;
  }
  return handle;
}

async function* fileChunks(handle: FileHandle, onBytes: ReadSpec['onBytes']): AsyncGenerator<Buffer> {
  // The handle is closed by readRows, which owns it.
  const stream = handle.createReadStream({ start: 0, highWaterMark: CHUNK_BYTES, autoClose: false });
  let total = 0;
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    total += chunk.length;
    onBytes?.(total);
    yield chunk;
  }
}

/** The file's bytes, gunzipped when it starts with the gzip magic number. */
async function byteStream(handle: FileHandle, spec: ReadSpec): Promise<Readable> {
  const magic = Buffer.alloc(2);
  const { bytesRead } = await handle.read(magic, 0, 2, 0);
  const source = Readable.from(fileChunks(handle, spec.onBytes), { objectMode: false });
  if (bytesRead < 2 || magic[0] !== 0x1f || magic[1] !== 0x8b) return source;
  // Errors reach the consumer through the last stream, which pipeline destroys with them.
  return pipeline(source, zlib.createGunzip(), () => {});
}

/** Lines of UTF-8 text, a chunk's worth at a time, without their `\n` / `\r\n`; a BOM is dropped. */
async function* lineBatches(bytes: AsyncIterable<Buffer>, spec: ReadSpec): AsyncGenerator<string[]> {
  const decoder = new TextDecoder('utf-8');
  let rest = '';
  let lines = 0;
  const strip = (line: string): string => (line.endsWith('\r') ? line.slice(0, -1) : line);
  for await (const chunk of bytes) {
    const parts = (rest + decoder.decode(chunk, { stream: true })).split('\n');
    rest = parts.pop() ?? '';
    lines += parts.length;
    if (rest.length > MAX_RECORD_CHARS) {
      throw inputError('ERR_INPUT_MALFORMED', spec, `line ${lines + 1}: longer than ${MAX_RECORD_CHARS} characters`);
    }
    if (parts.length > 0) yield parts.map(strip);
  }
  rest += decoder.decode();
  if (rest !== '') yield [strip(rest)];
}

// ---------------------------------------------------------------------------------------------
// Formats

async function* txtRows(bytes: Readable, spec: ReadSpec): AsyncGenerator<RawRow> {
  for await (const batch of lineBatches(bytes, spec)) {
    for (const line of batch) yield { url: line, caption: null };
  }
}

/** img2dataset's TSV: a header row, then tab-separated fields, no quoting. */
async function* tsvRows(bytes: Readable, spec: ReadSpec): AsyncGenerator<RawRow> {
  let urlIndex = -1;
  let captionIndex = -1;
  let header = true;
  for await (const batch of lineBatches(bytes, spec)) {
    for (const line of batch) {
      if (line.trim() === '') continue;
      if (header) {
        const columns = line.split('\t').map((name) => name.trim());
        checkColumns(spec, columns);
        urlIndex = columns.indexOf(spec.urlCol);
        captionIndex = columns.indexOf(spec.captionCol);
        header = false;
        continue;
      }
      const fields = line.split('\t');
      yield { url: fields[urlIndex], caption: captionIndex < 0 ? null : fields[captionIndex] };
    }
  }
  if (header) throw inputError('ERR_INPUT_MALFORMED', spec, 'is empty; expected a header row naming the columns');
}

/** CSV with a header row (RFC 4180 quoting: commas, quotes and newlines inside quoted fields). */
async function* csvRows(bytes: Readable, spec: ReadSpec): AsyncGenerator<RawRow> {
  const parser = parseCsv({ bom: true, skip_empty_lines: true, max_record_size: MAX_RECORD_CHARS });
  const records = pipeline(bytes, parser, () => {}) as AsyncIterable<string[]>;
  let urlIndex = -1;
  let captionIndex = -1;
  let header = true;
  for await (const record of records) {
    if (header) {
      const columns = record.map((name) => name.trim());
      checkColumns(spec, columns);
      urlIndex = columns.indexOf(spec.urlCol);
      captionIndex = columns.indexOf(spec.captionCol);
      header = false;
      continue;
    }
    yield { url: record[urlIndex], caption: captionIndex < 0 ? null : record[captionIndex] };
  }
  if (header) throw inputError('ERR_INPUT_MALFORMED', spec, 'is empty; expected a header row naming the columns');
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function kindOf(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}

/** One JSON object per line; blank lines skipped. The first object's keys are the columns. */
async function* jsonlRows(bytes: Readable, spec: ReadSpec): AsyncGenerator<RawRow> {
  let line = 0;
  let first = true;
  for await (const batch of lineBatches(bytes, spec)) {
    for (const text of batch) {
      line++;
      if (text.trim() === '') continue;
      let value: unknown;
      try {
        value = JSON.parse(text);
      } catch (error) {
        throw inputError('ERR_INPUT_MALFORMED', spec, `line ${line}: invalid JSON (${detail(error)})`, error);
      }
      if (!isRecord(value)) {
        throw inputError('ERR_INPUT_MALFORMED', spec, `line ${line}: expected a JSON object, got ${kindOf(value)}`);
      }
      if (first) {
        checkColumns(spec, Object.keys(value));
        first = false;
      }
      yield { url: value[spec.urlCol], caption: value[spec.captionCol] };
    }
  }
}

/** A JSON array of objects, parsed whole: for small lists (use JSONL for large ones). */
async function* jsonRows(bytes: Readable, spec: ReadSpec): AsyncGenerator<RawRow> {
  const chunks: Buffer[] = [];
  for await (const chunk of bytes as AsyncIterable<Buffer>) chunks.push(chunk);
  // TextDecoder drops a leading BOM, which JSON.parse would refuse.
  const text = new TextDecoder('utf-8').decode(Buffer.concat(chunks));
  let items: unknown;
  try {
    items = JSON.parse(text);
  } catch (error) {
    throw inputError('ERR_INPUT_MALFORMED', spec, `is not valid JSON (${detail(error)})`, error);
  }
  if (!Array.isArray(items)) {
    throw inputError('ERR_INPUT_MALFORMED', spec, `must hold a JSON array of objects, got ${kindOf(items)}`);
  }
  for (const [index, item] of items.entries()) {
    if (!isRecord(item)) {
      throw inputError('ERR_INPUT_MALFORMED', spec, `item ${index}: expected a JSON object, got ${kindOf(item)}`);
    }
    if (index === 0) checkColumns(spec, Object.keys(item));
    yield { url: item[spec.urlCol], caption: item[spec.captionCol] };
  }
}

/**
 * Page codecs hyparquet cannot undo by itself, undone with node's zlib. ZSTD needs node >= 22.15,
 * whose zlib has it (absent from the node 20 typings, hence the lookup).
 */
function parquetCompressors(): Compressors {
  const compressors: Compressors = {
    GZIP: (input) => new Uint8Array(zlib.gunzipSync(input)),
    BROTLI: (input) => new Uint8Array(zlib.brotliDecompressSync(input)),
  };
  const zstd = (zlib as unknown as { zstdDecompressSync?: (input: Uint8Array) => Buffer }).zstdDecompressSync;
  if (zstd) compressors.ZSTD = (input) => new Uint8Array(zstd(input));
  return compressors;
}

/** A hyparquet AsyncBuffer over an open file, counting the bytes it reads. */
async function fileAsyncBuffer(handle: FileHandle, onBytes: ReadSpec['onBytes']): Promise<AsyncBuffer> {
  const { size } = await handle.stat();
  let total = 0;
  return {
    byteLength: size,
    async slice(start, end) {
      const stop = Math.min(end ?? size, size);
      const bytes = new Uint8Array(Math.max(stop - start, 0));
      let filled = 0;
      while (filled < bytes.length) {
        const { bytesRead } = await handle.read(bytes, filled, bytes.length - filled, start + filled);
        if (bytesRead === 0) break;
        filled += bytesRead;
      }
      total += filled;
      onBytes?.(total);
      return bytes.buffer;
    },
  };
}

/** Parquet, one row group at a time, reading only the URL and caption columns. */
async function* parquetRows(handle: FileHandle, spec: ReadSpec): AsyncGenerator<RawRow> {
  const file = await fileAsyncBuffer(handle, spec.onBytes);
  let metadata: FileMetaData;
  let columns: string[];
  try {
    metadata = await parquetMetadataAsync(file);
    columns = parquetSchema(metadata).children.map((child) => child.element.name);
  } catch (error) {
    throw inputError('ERR_INPUT_MALFORMED', spec, `is not a readable parquet file (${detail(error)})`, error);
  }
  checkColumns(spec, columns);
  const wanted = columns.includes(spec.captionCol) ? [spec.urlCol, spec.captionCol] : [spec.urlCol];
  const compressors = parquetCompressors();
  const readable = new Set<CompressionCodec>([
    'UNCOMPRESSED',
    'SNAPPY',
    ...(Object.keys(compressors) as CompressionCodec[]),
  ]);
  for (const group of metadata.row_groups) {
    for (const chunk of group.columns) {
      const meta = chunk.meta_data;
      if (meta && wanted.includes(meta.path_in_schema[0] ?? '') && !readable.has(meta.codec)) {
        throw inputError(
          'ERR_INPUT_FORMAT',
          spec,
          `uses ${meta.codec} compression, which altforge cannot read; rewrite it with ${[...readable].join(', ')}`,
        );
      }
    }
  }
  if (spec.headOnly) return;

  let groupStart = 0;
  for (const [index, group] of metadata.row_groups.entries()) {
    const groupRows = Number(group.num_rows);
    // A slice of the group at a time: Spark and pyarrow write groups of millions of rows, and a
    // whole group as row objects took 860 MB at 3M rows. Every slice asks for the group's whole
    // column chunks (without an offset index hyparquet cannot tell where a page starts), so they
    // are read once and kept for the group's slices; pages before a slice are not decoded.
    const groupFile = cachedAsyncBuffer(file, { minSize: 0 });
    for (let sliceStart = 0; sliceStart < groupRows; sliceStart += PARQUET_SLICE_ROWS) {
      let rows: ParquetRow[] = [];
      try {
        await parquetRead({
          file: groupFile,
          metadata,
          columns: wanted,
          rowStart: groupStart + sliceStart,
          rowEnd: groupStart + Math.min(groupRows, sliceStart + PARQUET_SLICE_ROWS),
          rowFormat: 'object',
          compressors,
          onComplete: (result) => {
            rows = result;
          },
        });
      } catch (error) {
        throw inputError('ERR_INPUT_MALFORMED', spec, `row group ${index}: cannot be read (${detail(error)})`, error);
      }
      for (const row of rows) yield { url: row[spec.urlCol], caption: row[spec.captionCol] };
    }
    groupStart += groupRows;
  }
}

/** Rows of a parquet row group read at once. */
export const PARQUET_SLICE_ROWS = 100_000;
