/**
 * Reads (image URL, alt-text) candidates out of Common Crawl WARC and WAT files, plain or gzip
 * (one member per record, as Common Crawl writes them), as a stream: one record in memory at a time.
 *
 * The records are framed here rather than by warcio's WARCParser: warcio reads through several
 * layers of async generators per record, and on the bench file its framing alone (fed by node's
 * zlib, no HTML parsing) ran at ~55% of zlib's speed, against ~90-100% for this reader. warcio still
 * writes the test fixtures and serves there as the reference reader. Framing a WARC takes little:
 * a header block up to CRLF CRLF, a block of Content-Length bytes, CRLF CRLF.
 */
import type { FileHandle } from 'node:fs/promises';
import { open } from 'node:fs/promises';
import { setImmediate as setImmediatePromise } from 'node:timers/promises';
import {
  brotliDecompressSync,
  constants as zlibConstants,
  createGunzip,
  gunzipSync,
  inflateRawSync,
  inflateSync,
  type Gunzip,
  type ZlibOptions,
} from 'node:zlib';
import type { Readable, TransformOptions } from 'node:stream';
import { UsageError } from '../../corpus/errors.ts';
import type { Candidate } from '../_candidate.ts';
import { collapseWhitespace, extractFromHtml, metaOptOut, resolveHttpUrl } from '../_html-extract.ts';
import { decodeHtml, imageCandidates, isHtmlType, sniffsAsHtml } from '../_html-page.ts';

/** Options of {@link readWarc}. */
export interface WarcReadOptions {
  /** Also yield images whose alt-text is missing or empty, with caption ''. */
  keepEmptyAlt: boolean;
  /**
   * Leave out the images of pages whose `<meta name="robots">` (or WAT `Head > Metas`) opts them
   * out of AI use (`noai`, `noimageai`, `noimageindex`). @default true
   */
  respectMetaRobots?: boolean;
  /** Our robot's name (the user agent's product, lower case): a meta of that name counts as robots. */
  robot?: string;
  /** Called as the file is read, with the bytes read from disk so far (compressed for `.gz`). */
  onBytes?: (compressedBytesRead: number) => void;
}

/**
 * Payloads larger than this (before or after content decoding) are stepped over without being
 * parsed, so that one huge record cannot exhaust memory. Common Crawl truncates payloads at 1 MiB.
 */
const MAX_PARSED_PAYLOAD_BYTES = 32 * 1024 * 1024;
/** A WARC record header longer than this means the data is not a WARC. */
const MAX_HEADER_BYTES = 1024 * 1024;
/** How much of the file {@link assertReadableWarc} reads. */
const HEAD_BYTES = 64 * 1024;
/** How much of a response is read first to see its HTTP headers, before deciding to skip it. */
const HTTP_PEEK_BYTES = 64 * 1024;
/** Bytes joined beyond what a record needs, so that a header search does not join byte by byte. */
const JOIN_SLACK = 16 * 1024;
/** Chunks read from disk and inflated: large ones keep zlib busy on its own thread. */
const CHUNK_BYTES = 256 * 1024;
/** How much inflated data may wait for the parser before the stream is paused. */
const QUEUED_BYTES = 8 * CHUNK_BYTES;
/** How much is parsed between two turns of the event loop, which keep zlib fed. */
const YIELD_EVERY_BYTES = 64 * 1024;

const WARC_MAGIC = /^WARC\/1\.\d/;
const CRLFCRLF = Buffer.from('\r\n\r\n');

function isGzip(head: Uint8Array): boolean {
  return head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b;
}

function notFound(path: string, cause: unknown): UsageError {
  const reason = (cause as NodeJS.ErrnoException | undefined)?.code ?? 'unreadable';
  return new UsageError('ERR_INPUT_NOT_FOUND', `WARC file '${path}' cannot be read (${reason})`, {
    cause,
    context: { stage: 'crawl', path },
  });
}

function malformed(path: string, detail: string, where: string, cause?: unknown): UsageError {
  return new UsageError('ERR_INPUT_MALFORMED_WARC', `WARC file '${path}' is malformed ${where}: ${detail}`, {
    cause,
    context: { stage: 'crawl', path },
  });
}

async function openInput(path: string): Promise<FileHandle> {
  try {
    return await open(path, 'r');
  } catch (error) {
    throw notFound(path, error);
  }
}

/** Reads the first bytes of the file; also fails for a directory, whose read gives EISDIR. */
async function readHead(handle: FileHandle, path: string): Promise<Buffer> {
  const buffer = Buffer.alloc(HEAD_BYTES);
  try {
    const { bytesRead } = await handle.read(buffer, 0, HEAD_BYTES, 0);
    return buffer.subarray(0, bytesRead);
  } catch (error) {
    throw notFound(path, error);
  }
}

/**
 * The start of the first gzip member's content. Only that member is inflated (raw deflate after
 * its header), so that what follows it in `head`, even if broken, does not matter here.
 */
function inflateFirstMember(head: Buffer): Buffer {
  const flags = head[3] ?? 0;
  let offset = 10;
  if (flags & 0x04) offset += 2 + (head.readUInt16LE(offset) || 0); // FEXTRA
  if (flags & 0x08) offset = head.indexOf(0, offset) + 1; // FNAME
  if (flags & 0x10) offset = head.indexOf(0, offset) + 1; // FCOMMENT
  if (flags & 0x02) offset += 2; // FHCRC
  if (offset <= 0 || offset >= head.length) throw new Error('no gzip member in the head');
  // A sync flush decodes what the head holds without requiring the member to be complete.
  return inflateRawSync(head.subarray(offset), { finishFlush: zlibConstants.Z_SYNC_FLUSH });
}

/** Throws unless `head` starts a WARC file: `WARC/1.x`, plain or as the start of a first gzip member. */
function checkHead(head: Buffer, path: string): void {
  let start: Buffer = head;
  if (isGzip(head)) {
    try {
      start = inflateFirstMember(head);
    } catch (error) {
      throw malformed(path, 'the gzip data cannot be inflated', 'at byte 0', error);
    }
  }
  if (!WARC_MAGIC.test(start.subarray(0, 16).toString('latin1'))) {
    throw malformed(
      path,
      `it does not start with a WARC/1.x record${isGzip(head) ? ' (once gunzipped)' : ''}`,
      'at byte 0',
    );
  }
}

/**
 * Checks that `path` can be opened and starts as a WARC (or WAT) file, plain or gzip, reading only
 * its head. Throws {@link UsageError} `ERR_INPUT_NOT_FOUND` when it is missing or unreadable, and
 * `ERR_INPUT_MALFORMED_WARC` when it is not a WARC.
 */
export async function assertReadableWarc(path: string): Promise<void> {
  const handle = await openInput(path);
  try {
    checkHead(await readHead(handle, path), path);
  } finally {
    await handle.close();
  }
}

// --- Framing -------------------------------------------------------------------------------------

/**
 * A read position over a stream of chunks. Bytes are joined into one buffer only when a record
 * needs them together; skipped records are stepped over chunk by chunk.
 */
class ByteCursor {
  private buffer: Buffer = Buffer.alloc(0);
  private position = 0;
  /** Offset in the stream of `buffer[0]`. */
  private base = 0;
  private ended = false;
  /** The unjoined rest of a chunk that ensure() took only the start of. */
  private pending: Buffer | null = null;
  private readonly chunks: AsyncIterator<Buffer>;

  constructor(chunks: AsyncIterator<Buffer>) {
    this.chunks = chunks;
  }

  /** Offset in the stream of the next byte. */
  get offset(): number {
    return this.base + this.position;
  }

  get available(): number {
    return this.buffer.length - this.position;
  }

  private async next(): Promise<Buffer | null> {
    if (this.pending !== null) {
      const pending = this.pending;
      this.pending = null;
      return pending;
    }
    while (!this.ended) {
      const result = await this.chunks.next();
      if (result.done === true) this.ended = true;
      else if (result.value.length > 0) return result.value;
    }
    return null;
  }

  /**
   * Makes `n` bytes available; false when the stream ends before. Only what is needed (and at most
   * JOIN_SLACK more) is joined: the rest of the last chunk waits, unjoined, for the next call.
   */
  async ensure(n: number): Promise<boolean> {
    if (this.available >= n) return true;
    const parts = [this.buffer.subarray(this.position)];
    let have = this.available;
    let complete = true;
    while (have < n) {
      const chunk = await this.next();
      if (chunk === null) {
        complete = false;
        break;
      }
      const wanted = n + JOIN_SLACK - have;
      if (chunk.length > wanted) {
        parts.push(chunk.subarray(0, wanted));
        this.pending = chunk.subarray(wanted);
        have += wanted;
      } else {
        parts.push(chunk);
        have += chunk.length;
      }
    }
    this.base += this.position;
    this.buffer = parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts, have);
    this.position = 0;
    return complete;
  }

  /** The next `n` available bytes, without moving. */
  peek(n: number): Buffer {
    return this.buffer.subarray(this.position, this.position + Math.min(n, this.available));
  }

  /** The next `n` bytes (made available by ensure()), moving past them. */
  take(n: number): Buffer {
    const bytes = this.buffer.subarray(this.position, this.position + n);
    this.position += bytes.length;
    return bytes;
  }

  /** Where `needle` starts, relative to the cursor, if it ends within `limit` bytes; else -1. */
  async find(needle: Buffer, limit: number): Promise<number> {
    let from = this.position;
    for (;;) {
      const index = this.buffer.indexOf(needle, from);
      if (index >= 0) return index - this.position + needle.length <= limit ? index - this.position : -1;
      const searched = this.available;
      if (searched >= limit || !(await this.ensure(searched + 1))) return -1;
      from = this.position + Math.max(0, searched - needle.length + 1);
    }
  }

  /** Moves `n` bytes on; false when the stream ends before. */
  async skip(n: number): Promise<boolean> {
    let left = n;
    while (left > 0) {
      if (this.available === 0) {
        const chunk = await this.next();
        if (chunk === null) return false;
        this.base += this.buffer.length;
        this.buffer = chunk;
        this.position = 0;
      }
      const step = Math.min(left, this.available);
      this.position += step;
      left -= step;
    }
    return true;
  }

  /** Moves past CR and LF bytes (the end of a record); false at the end of the stream. */
  async skipNewlines(): Promise<boolean> {
    for (;;) {
      while (this.position < this.buffer.length) {
        const c = this.buffer[this.position];
        if (c !== 0x0d && c !== 0x0a) return true;
        this.position++;
      }
      if (!(await this.ensure(1))) return false;
    }
  }
}

/**
 * The chunks of a stream one by one, as they were produced. A stream's own async iterator calls
 * read(), which joins everything buffered into one new Buffer: a copy of all the data, in large
 * allocations. The stream is paused while `maxQueued` bytes wait.
 */
function chunksOf(stream: Readable, maxQueued: number): AsyncIterator<Buffer> {
  const queue: Buffer[] = [];
  let queued = 0;
  let ended = false;
  let error: unknown = null;
  let wake: (() => void) | null = null;
  const signal = (): void => {
    const resume = wake;
    wake = null;
    resume?.();
  };
  stream.on('data', (chunk: Buffer) => {
    queue.push(chunk);
    queued += chunk.length;
    if (queued >= maxQueued) stream.pause();
    signal();
  });
  stream.on('end', () => {
    ended = true;
    signal();
  });
  stream.on('error', (cause) => {
    error ??= cause;
    signal();
  });
  stream.on('close', () => {
    if (!ended) error ??= new Error('the stream closed before its end');
    signal();
  });
  return {
    async next(): Promise<IteratorResult<Buffer>> {
      for (;;) {
        const chunk = queue.shift();
        if (chunk !== undefined) {
          queued -= chunk.length;
          if (stream.isPaused() && queued < maxQueued / 2) stream.resume();
          return { value: chunk, done: false };
        }
        if (error !== null) throw error;
        if (ended) return { value: undefined, done: true };
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
      }
    },
  };
}

interface HeaderBlock {
  firstLine: string;
  /** Lower-cased names; repeated headers joined with ", ". */
  headers: Map<string, string>;
}

/** Parses `first line CRLF (name: value CRLF)*`, with folded continuation lines. */
function parseHeaderBlock(text: string): HeaderBlock {
  const headers = new Map<string, string>();
  let firstLine: string | null = null;
  let last: string | null = null;
  let position = 0;
  while (position < text.length) {
    let end = text.indexOf('\n', position);
    if (end < 0) end = text.length;
    const line = text.slice(position, end > position && text.charCodeAt(end - 1) === 0x0d ? end - 1 : end);
    position = end + 1;
    if (firstLine === null) {
      firstLine = line.trim();
      continue;
    }
    if (line === '') continue;
    const c = line.charCodeAt(0);
    if ((c === 0x20 || c === 0x09) && last !== null) {
      headers.set(last, `${headers.get(last) ?? ''} ${line.trim()}`);
      continue;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    const previous = headers.get(name);
    headers.set(name, previous === undefined ? value : `${previous}, ${value}`);
    last = name;
  }
  return { firstLine: firstLine ?? '', headers };
}

// --- Payloads ------------------------------------------------------------------------------------

/** Joins the chunks of a `Transfer-Encoding: chunked` body; a cut-off last chunk is kept as is. */
function dechunk(data: Buffer): Buffer | null {
  const parts: Buffer[] = [];
  let position = 0;
  for (;;) {
    const lineEnd = data.indexOf('\r\n', position);
    if (lineEnd < 0) return parts.length > 0 ? Buffer.concat(parts) : null;
    const size = Number.parseInt(data.toString('latin1', position, lineEnd).split(';')[0] ?? '', 16);
    if (!Number.isFinite(size) || size < 0) return null;
    position = lineEnd + 2;
    if (size === 0) break;
    parts.push(data.subarray(position, position + size));
    position += size + 2;
    if (position >= data.length) break;
  }
  return Buffer.concat(parts);
}

/**
 * The HTTP body as the server meant it: de-chunked and content-decoded. null when it cannot be
 * decoded (an unknown or broken Content-Encoding). Common Crawl stores bodies already decoded and
 * renames the headers (`X-Crawler-Content-Encoding`), so this is for other crawlers' WARCs.
 */
function decodeBody(body: Buffer, headers: Map<string, string>): Buffer | null {
  let data = body;
  if ((headers.get('transfer-encoding') ?? '').toLowerCase().includes('chunked')) data = dechunk(data) ?? data;
  const encoding = (headers.get('content-encoding') ?? '').trim().toLowerCase();
  const limits = { maxOutputLength: MAX_PARSED_PAYLOAD_BYTES, finishFlush: zlibConstants.Z_SYNC_FLUSH };
  try {
    if (encoding === '' || encoding === 'identity') return data;
    if (encoding === 'gzip' || encoding === 'x-gzip') return gunzipSync(data, limits);
    if (encoding === 'br') return brotliDecompressSync(data, { maxOutputLength: MAX_PARSED_PAYLOAD_BYTES });
    if (encoding === 'deflate') {
      try {
        return inflateSync(data, limits);
      } catch {
        return inflateRawSync(data, limits); // Some servers send raw deflate under this name.
      }
    }
  } catch {
    return null;
  }
  return null;
}

// --- Candidates ----------------------------------------------------------------------------------

function field(value: unknown, key: string): unknown {
  return value !== null && typeof value === 'object' ? (value as Record<string, unknown>)[key] : undefined;
}

/**
 * Candidates of one WAT metadata record, by cc2dataset's rules: the `IMG@/src` links of
 * Envelope > Payload-Metadata > HTTP-Response-Metadata > HTML-Metadata > Links that have a
 * non-empty `alt`, resolved against HTML-Metadata > Head > Base, else the WARC-Target-URI of
 * Envelope > WARC-Header-Metadata. With `keepEmptyAlt`, links without alt are kept too; a page whose
 * Head > Metas opt it out of AI use gives none (unless `respectMetaRobots` is false).
 */
function watCandidates(json: unknown, recordUri: string | null, options: WarcReadOptions): Candidate[] {
  const envelope = field(json, 'Envelope');
  const html = field(field(field(envelope, 'Payload-Metadata'), 'HTTP-Response-Metadata'), 'HTML-Metadata');
  const links = field(html, 'Links');
  if (!Array.isArray(links)) return [];
  if (options.respectMetaRobots !== false) {
    const metas = field(field(html, 'Head'), 'Metas');
    const named = Array.isArray(metas)
      ? metas.map((m) => new Map(['name', 'content'].map((k) => [k, String(field(m, k) ?? '')] as const)))
      : [];
    if (metaOptOut(named, options.robot) !== null) return [];
  }
  const target = field(field(envelope, 'WARC-Header-Metadata'), 'WARC-Target-URI');
  const pageUrl = typeof target === 'string' ? target : recordUri;
  if (pageUrl === null) return [];
  const baseRef = field(field(html, 'Head'), 'Base');
  const base = (typeof baseRef === 'string' && resolveHttpUrl(baseRef, pageUrl)) || pageUrl;
  const out: Candidate[] = [];
  for (const link of links) {
    if (field(link, 'path') !== 'IMG@/src') continue;
    const ref = field(link, 'url');
    if (typeof ref !== 'string') continue;
    const rawAlt = field(link, 'alt');
    const caption = typeof rawAlt === 'string' ? collapseWhitespace(rawAlt) : '';
    if (caption === '' && !options.keepEmptyAlt) continue;
    const url = resolveHttpUrl(ref, base);
    if (url !== null) out.push({ url, caption, pageUrl });
  }
  return out;
}

/** `WARC-Target-URI`, without the angle brackets some WARC/1.0 writers put around it. */
function targetUri(headers: Map<string, string>): string | null {
  const value = headers.get('warc-target-uri');
  if (value === undefined || value === '') return null;
  return value.startsWith('<') && value.endsWith('>') ? value.slice(1, -1) : value;
}

/** Thrown inside the reader when the stream ends in the middle of a record. */
class CutShort extends Error {}

/** Steps over a record's block: it holds no candidates. */
async function skipBlock(cursor: ByteCursor, length: number): Promise<Candidate[]> {
  if (!(await cursor.skip(length))) throw new CutShort();
  return [];
}

/**
 * Reads one record's block from the cursor (just past its header) and returns its candidates.
 * Records that cannot hold any are stepped over without being joined in memory.
 */
async function recordCandidates(
  cursor: ByteCursor,
  record: HeaderBlock,
  length: number,
  options: WarcReadOptions,
): Promise<Candidate[]> {
  const type = record.headers.get('warc-type');
  if (length > MAX_PARSED_PAYLOAD_BYTES) return skipBlock(cursor, length);

  if (type === 'response') {
    // See the HTTP headers first: most non-HTML responses are then skipped without being joined.
    await cursor.ensure(Math.min(length, HTTP_PEEK_BYTES));
    let httpEnd = cursor.peek(length).indexOf(CRLFCRLF);
    if (httpEnd < 0 && length > HTTP_PEEK_BYTES) {
      if (!(await cursor.ensure(length))) throw new CutShort();
      httpEnd = cursor.peek(length).indexOf(CRLFCRLF);
    }
    if (httpEnd < 0) return skipBlock(cursor, length);
    const http = parseHeaderBlock(cursor.peek(httpEnd).toString('latin1'));
    const contentType = http.headers.get('content-type');
    const typed = contentType !== undefined && contentType.trim() !== '';
    if (!http.firstLine.startsWith('HTTP/') || (typed && !isHtmlType(contentType))) return skipBlock(cursor, length);
    if (!(await cursor.ensure(length))) throw new CutShort();
    const block = cursor.take(length);
    const body = decodeBody(block.subarray(httpEnd + 4), http.headers);
    const pageUrl = targetUri(record.headers);
    if (body === null || pageUrl === null || (!typed && !sniffsAsHtml(body))) return [];
    let html: string;
    try {
      html = decodeHtml(body, contentType);
    } catch {
      return [];
    }
    const page = extractFromHtml(html, pageUrl, { links: false, robot: options.robot });
    if (page.optOut !== null && options.respectMetaRobots !== false) return [];
    return imageCandidates(page.images, pageUrl, options.keepEmptyAlt);
  }

  if (type === 'metadata' && (record.headers.get('content-type') ?? '').toLowerCase().includes('application/json')) {
    if (!(await cursor.ensure(length))) throw new CutShort();
    const block = cursor.take(length);
    let json: unknown;
    try {
      json = JSON.parse(decodeHtml(block, 'charset=utf-8'));
    } catch {
      return [];
    }
    return watCandidates(json, targetUri(record.headers), options);
  }
  return skipBlock(cursor, length);
}

/**
 * Streams the (image URL, alt-text) candidates of a WARC or WAT file, plain or gzip, one record in
 * memory at a time. WARC `response` records with HTML (by Content-Type, or sniffed when it is
 * missing) give one candidate per `<img>`; WAT `metadata` records give their `IMG@/src` links with
 * an alt, as cc2dataset reads them. Other records are skipped, and so is a single record whose
 * payload cannot be parsed. A file that is not a WARC, or is truncated or corrupt, throws
 * {@link UsageError} `ERR_INPUT_MALFORMED_WARC` naming the file and the byte offset; a missing
 * or unreadable one `ERR_INPUT_NOT_FOUND`.
 */
export async function* readWarc(path: string, options: WarcReadOptions): AsyncGenerator<Candidate> {
  for await (const candidates of readWarcRecords(path, options)) yield* candidates;
}

/**
 * {@link readWarc} a record at a time: the candidates of each record that has any, as one array.
 * Ingestion reads this form, which saves a turn of the async iterator per candidate.
 */
export async function* readWarcRecords(path: string, options: WarcReadOptions): AsyncGenerator<Candidate[]> {
  const handle = await openInput(path);
  let head: Buffer;
  let fileSize: number;
  try {
    head = await readHead(handle, path);
    checkHead(head, path);
    fileSize = (await handle.stat().catch((error: unknown) => Promise.reject(notFound(path, error)))).size;
  } catch (error) {
    await handle.close();
    throw error;
  }

  const file = handle.createReadStream({ start: 0, highWaterMark: CHUNK_BYTES, autoClose: true });
  let bytesRead = 0;
  // Inflated by node's zlib, off the main thread, while this thread parses. createGunzip() reads
  // every member of a multi-member file, so the framing below sees one plain WARC stream.
  let gunzip: Gunzip | null = null;
  let failure: unknown = null;
  file.on('error', (error) => {
    failure ??= error;
    gunzip?.destroy(error);
  });
  if (isGzip(head)) {
    // The buffer ahead (stream options reach zlib's Transform, though ZlibOptions does not list them).
    const streamOptions: ZlibOptions & TransformOptions = { chunkSize: CHUNK_BYTES, highWaterMark: 4 * CHUNK_BYTES };
    gunzip = createGunzip(streamOptions);
    gunzip.on('error', (error) => {
      failure ??= error;
      file.destroy();
    });
    file.pipe(gunzip);
  }
  file.on('data', (chunk) => {
    bytesRead += chunk.length;
  });
  const cursor = new ByteCursor(chunksOf(gunzip ?? file, QUEUED_BYTES));

  /** Where a record starts: its offset, and for gzip also how far zlib has read the file. */
  const where = (offset: number): string =>
    gunzip === null
      ? `near byte ${offset}`
      : `near byte ${offset} of the gunzipped data (compressed byte ~${gunzip.bytesWritten})`;

  let reported = 0;
  let yieldedAt = 0;
  try {
    for (;;) {
      let recordStart = cursor.offset;
      let candidates: Candidate[];
      if (recordStart - yieldedAt >= YIELD_EVERY_BYTES) {
        // While buffered chunks last, awaiting them never leaves the microtask queue, and zlib's
        // (and the file's) completions, which start their next piece of work, would wait until the
        // buffer ran dry: inflating and parsing would take turns instead of running side by side.
        yieldedAt = recordStart;
        await setImmediatePromise();
      }
      try {
        if (!(await cursor.skipNewlines())) break;
        recordStart = cursor.offset;
        await cursor.ensure(5);
        const magic = cursor.peek(5).toString('latin1');
        if (magic !== 'WARC/') {
          const line = cursor.peek(64).toString('latin1');
          const found = JSON.stringify(line.slice(0, line.indexOf('\n') + 1 || undefined));
          throw malformed(path, `expected a WARC/1.x record, found ${found}`, where(recordStart));
        }
        const headerLength = await cursor.find(CRLFCRLF, MAX_HEADER_BYTES);
        if (headerLength < 0) {
          throw cursor.available >= MAX_HEADER_BYTES
            ? malformed(path, 'a record header has no end', where(recordStart))
            : new CutShort();
        }
        const record = parseHeaderBlock(cursor.take(headerLength + 4).toString('utf8'));
        const lengthText = record.headers.get('content-length') ?? '';
        if (!/^\d+$/.test(lengthText)) {
          throw malformed(path, `a record has no valid Content-Length (got \`${lengthText}\`)`, where(recordStart));
        }
        candidates = await recordCandidates(cursor, record, Number(lengthText), options);
      } catch (error) {
        throw failureOf(path, failure ?? error, where(recordStart));
      }
      if (options.onBytes !== undefined && bytesRead !== reported) {
        reported = bytesRead;
        options.onBytes(bytesRead);
      }
      if (candidates.length > 0) yield candidates;
    }
    if (failure !== null) throw failureOf(path, failure, where(cursor.offset));
    // zlib stops without an error at bytes that do not start a gzip member: a broken member header
    // would otherwise end the file early, silently.
    if (gunzip !== null && gunzip.bytesWritten < fileSize) {
      throw malformed(
        path,
        `the data from compressed byte ${gunzip.bytesWritten} on is not gzip`,
        where(cursor.offset),
      );
    }
  } finally {
    gunzip?.destroy();
    file.destroy();
    await handle.close().catch(() => undefined);
  }
  if (options.onBytes !== undefined && bytesRead !== reported) options.onBytes(bytesRead);
}

/**
 * The error for a failure while reading: a read error of the file itself (EIO...) means it is
 * unreadable; anything else (zlib, a premature end) means the data is malformed.
 */
function failureOf(path: string, error: unknown, where: string): UsageError {
  if (error instanceof UsageError) return error;
  if (error instanceof CutShort) return malformed(path, 'the file ends inside a record', where);
  if (!(error instanceof Error)) return malformed(path, String(error), where);
  const { code, syscall } = error as NodeJS.ErrnoException;
  if (code?.startsWith('Z_')) return malformed(path, `the gzip data is corrupt (${error.message})`, where, error);
  if (code !== undefined && syscall !== undefined) return notFound(path, error);
  return malformed(path, error.message, where, error);
}
