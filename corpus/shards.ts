import {
  close,
  closeSync,
  existsSync,
  fstatSync,
  fsync,
  fsyncSync,
  mkdirSync,
  openSync,
  readSync,
  readdirSync,
  renameSync,
  statSync,
  truncateSync,
  unlinkSync,
  writeFileSync,
  writev,
} from 'node:fs';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { parquetWriteBuffer } from 'hyparquet-writer';
import type { Corpus } from './manifest.ts';
import { CriticalError } from './errors.ts';

/** Metadata stored with every sample: the `<key>.json` of the shard and its manifest row. */
export interface SampleMeta {
  key: string;
  url: string;
  page_url: string | null;
  caption: string;
  width: number;
  height: number;
  original_width: number;
  original_height: number;
  sha256: string;
  bytes: number;
  http_status: number | null;
}

/** One successful pair on its way into a shard. */
export interface Sample {
  meta: SampleMeta;
  jpg: Buffer;
}

/** `00042` for shard 42: the fixed-width name of every file of a shard. */
export function shardName(shard: number): string {
  return String(shard).padStart(5, '0');
}

/** Paths of a shard's three files, final and temporary. */
export function shardPaths(dir: string, shard: number) {
  const name = shardName(shard);
  const tarPath = join(dir, 'shards', `${name}.tar`);
  const parquetPath = join(dir, 'shards', `${name}.parquet`);
  const statsPath = join(dir, 'stats', `${name}.json`);
  return {
    tar: tarPath,
    parquet: parquetPath,
    stats: statsPath,
    tarTmp: `${tarPath}.tmp`,
    parquetTmp: `${parquetPath}.tmp`,
    statsTmp: `${statsPath}.tmp`,
  };
}

const BLOCK = 512;
const padded = (size: number) => Math.ceil(size / BLOCK) * BLOCK;
/** Two zero blocks: the end of a tar archive. */
const END_OF_ARCHIVE = Buffer.alloc(2 * BLOCK);

const writevAsync = promisify(writev);
const fsyncAsync = promisify(fsync);
const closeAsync = promisify(close);

/** `n` as a zero-padded octal field of `width` digits followed by a space, as tar-stream writes it. */
function writeOctal(block: Buffer, offset: number, width: number, n: number): void {
  block.write(n.toString(8).padStart(width, '0') + ' ', offset, 'latin1');
}

/**
 * Writes a ustar header for a regular file (mode 644, uid/gid 0, mtime 0) into `block` at
 * `offset`, which must be 512 zero bytes. The same bytes tar-stream's `pack` writes for these
 * fields. Names longer than 100 bytes or not ASCII get a pax `path` record first, in its own
 * entry; `offset` then covers both (see {@link headerSize}).
 */
function writeHeader(block: Buffer, offset: number, name: string, size: number, type = '0'): void {
  const ascii = name.length <= 100 && Buffer.byteLength(name) === name.length;
  if (!ascii) {
    const body = paxPath(name);
    writeHeader(block, offset, 'PaxHeader', body.length, 'x');
    body.copy(block, offset + BLOCK);
    offset += BLOCK + padded(body.length);
    name = name.slice(0, 100).replace(/[^\x20-\x7e]/g, '_');
  }
  block.write(name, offset, 'latin1');
  writeOctal(block, offset + 100, 6, 0o644);
  writeOctal(block, offset + 108, 6, 0);
  writeOctal(block, offset + 116, 6, 0);
  writeOctal(block, offset + 124, 11, size);
  writeOctal(block, offset + 136, 11, 0);
  block[offset + 156] = type.charCodeAt(0);
  block.write('ustar\x0000', offset + 257, 'latin1');
  writeOctal(block, offset + 329, 6, 0);
  writeOctal(block, offset + 337, 6, 0);
  // The checksum counts its own field as eight spaces.
  let sum = 8 * 32;
  for (let i = offset; i < offset + 148; i++) sum += block[i] as number;
  for (let i = offset + 156; i < offset + BLOCK; i++) sum += block[i] as number;
  writeOctal(block, offset + 148, 6, sum);
}

/** A pax extended header body holding one `path` record: `<length> path=<name>\n`. */
function paxPath(name: string): Buffer {
  const rest = ` path=${name}\n`;
  const restBytes = Buffer.byteLength(rest);
  let length = restBytes + 1;
  while (String(length).length + restBytes !== length) length = String(length).length + restBytes;
  return Buffer.from(`${length}${rest}`, 'utf8');
}

/** Bytes of the header(s) {@link writeHeader} writes for `name`. */
function headerSize(name: string): number {
  if (name.length <= 100 && Buffer.byteLength(name) === name.length) return BLOCK;
  return 2 * BLOCK + padded(paxPath(name).length);
}

/**
 * A sample's three tar entries (`.jpg`, `.txt`, `.json`, the json last) as buffers to write in
 * order: the jpg's header, the jpg itself (not copied), then one buffer with the jpg's padding
 * and the two other entries.
 */
function sampleTar(sample: Sample): Buffer[] {
  const { meta, jpg } = sample;
  const txt = Buffer.from(meta.caption, 'utf8');
  const json = Buffer.from(JSON.stringify(meta), 'utf8');
  const jpgName = `${meta.key}.jpg`;
  const txtName = `${meta.key}.txt`;
  const jsonName = `${meta.key}.json`;
  const head = Buffer.alloc(headerSize(jpgName));
  writeHeader(head, 0, jpgName, jpg.length);
  const jpgPad = padded(jpg.length) - jpg.length;
  const txtAt = jpgPad;
  const txtData = txtAt + headerSize(txtName);
  const jsonAt = txtData + padded(txt.length);
  const jsonData = jsonAt + headerSize(jsonName);
  const tail = Buffer.alloc(jsonData + padded(json.length));
  writeHeader(tail, txtAt, txtName, txt.length);
  txt.copy(tail, txtData);
  writeHeader(tail, jsonAt, jsonName, json.length);
  json.copy(tail, jsonData);
  return [head, jpg, tail];
}

/** Most buffers in one `writev` call (Linux's IOV_MAX is 1024). */
const MAX_IOV = 768;
/** Bytes queued before a write starts: many samples a write call (closing the file writes the rest). */
const WRITE_AT = 1024 * 1024;
/** Bytes queued for the file beyond which `add` waits for the writes. */
const MAX_QUEUED = 8 * 1024 * 1024;

/** A tar header's octal (or base-256, high bit set) number field. */
function readNumber(block: Buffer, offset: number, length: number): number {
  if (((block[offset] as number) & 0x80) !== 0) {
    let n = 0;
    for (let i = offset + 1; i < offset + length; i++) n = n * 256 + (block[i] as number);
    return n;
  }
  const text = block
    .toString('latin1', offset, offset + length)
    .replace(/[\0 ]+$/, '')
    .trim();
  return text === '' ? 0 : parseInt(text, 8);
}

/** A NUL-terminated UTF-8 string field of a tar header. */
function readString(block: Buffer, offset: number, length: number): string {
  const end = block.indexOf(0, offset);
  return block.toString('utf8', offset, end === -1 || end > offset + length ? offset + length : end);
}

/** True when the header's checksum matches its bytes (a header cut or overwritten does not). */
function checksumMatches(block: Buffer): boolean {
  let sum = 8 * 32;
  for (let i = 0; i < 148; i++) sum += block[i] as number;
  for (let i = 156; i < BLOCK; i++) sum += block[i] as number;
  return sum === readNumber(block, 148, 8);
}

/** The `path` record of a pax extended header body, if any. */
function paxPathOf(body: Buffer): string | undefined {
  let at = 0;
  while (at < body.length) {
    const space = body.indexOf(0x20, at);
    if (space === -1) break;
    const length = Number(body.toString('latin1', at, space));
    if (!Number.isSafeInteger(length) || length <= 0) break;
    const record = body.toString('utf8', space + 1, at + length - 1);
    const eq = record.indexOf('=');
    if (record.slice(0, eq) === 'path') return record.slice(eq + 1);
    at += length;
  }
  return undefined;
}

/** One regular entry of a tar: its name (a pax `path` applied), where its data starts, its size, where it ends. */
interface TarEntry {
  name: string;
  dataAt: number;
  size: number;
  end: number;
}

/**
 * The regular entries of the tar open as `fd` (`fileSize` bytes), walked with positioned reads of
 * their headers only; stops at the end-of-archive blocks, or at a header a kill cut short or
 * that does not check out, since nothing after it is whole.
 */
function* tarEntries(fd: number, fileSize: number): Generator<TarEntry> {
  let paxName: string | undefined;
  const header = Buffer.alloc(BLOCK);
  for (let offset = 0; offset + BLOCK <= fileSize;) {
    readSync(fd, header, 0, BLOCK, offset);
    if (header.every((b) => b === 0) || !checksumMatches(header)) return;
    const size = readNumber(header, 124, 12);
    const dataAt = offset + BLOCK;
    const end = dataAt + padded(size);
    if (end > fileSize) return;
    const type = String.fromCharCode(header[156] as number);
    offset = end;
    if (type === 'x') {
      paxName = paxPathOf(readAt(fd, dataAt, size));
      continue;
    }
    let name = readString(header, 0, 100);
    const prefix = header.toString('latin1', 257, 263) === 'ustar\0' ? readString(header, 345, 155) : '';
    if (prefix !== '') name = `${prefix}/${name}`;
    if (paxName !== undefined) name = paxName;
    paxName = undefined;
    yield { name, dataAt, size, end };
  }
}

function readAt(fd: number, at: number, size: number): Buffer {
  const data = Buffer.alloc(size);
  readSync(fd, data, 0, size, at);
  return data;
}

/**
 * Reads the samples that are complete in a partly written shard (`.jpg`, `.txt` then `.json`,
 * the json last) and the byte offset where the last complete one ends. A sample cut by a kill is
 * simply not counted: the file is truncated there and writing continues. Walks the headers with
 * positioned reads; of the data, only the json entries are read.
 */
export async function scanPartialShard(path: string): Promise<{ samples: SampleMeta[]; endOffset: number }> {
  const samples: SampleMeta[] = [];
  let endOffset = 0;
  let parts = new Set<string>();
  const fd = openSync(path, 'r');
  try {
    for (const entry of tarEntries(fd, fstatSync(fd).size)) {
      const dot = entry.name.lastIndexOf('.');
      const key = entry.name.slice(0, dot);
      if (entry.name.slice(dot + 1) === 'json') {
        try {
          const meta = JSON.parse(readAt(fd, entry.dataAt, entry.size).toString('utf8')) as SampleMeta;
          if (meta.key === key && parts.has(`${key}.jpg`) && parts.has(`${key}.txt`)) {
            samples.push(meta);
            endOffset = entry.end;
          }
        } catch {
          // A json that does not parse cannot be a complete sample.
        }
        parts = new Set();
      } else {
        parts.add(entry.name);
      }
    }
  } finally {
    closeSync(fd);
  }
  return { samples, endOffset };
}

/** Where each entry's data lies in a shard, by entry name (`<key>.jpg`...), and what file state it describes. */
interface ShardIndex {
  size: number;
  mtimeMs: number;
  entries: Map<string, { dataAt: number; size: number }>;
}

const shardIndexes = new Map<string, ShardIndex>();
/** Shard indexes kept (least recently used dropped): ~100 bytes an entry, 30k entries a 10k-sample shard. */
const SHARD_INDEXES_KEPT = 8;

/** The header index of the open shard `fd` at `path`, from the cache while the file is unchanged. */
function shardIndex(fd: number, path: string): ShardIndex {
  const stat = fstatSync(fd);
  let index = shardIndexes.get(path);
  if (index === undefined || index.size !== stat.size || index.mtimeMs !== stat.mtimeMs) {
    const entries = new Map<string, { dataAt: number; size: number }>();
    for (const entry of tarEntries(fd, stat.size)) entries.set(entry.name, { dataAt: entry.dataAt, size: entry.size });
    index = { size: stat.size, mtimeMs: stat.mtimeMs, entries };
  }
  shardIndexes.delete(path);
  shardIndexes.set(path, index);
  for (const old of shardIndexes.keys()) {
    if (shardIndexes.size <= SHARD_INDEXES_KEPT) break;
    shardIndexes.delete(old);
  }
  return index;
}

/**
 * The bytes of one entry of a shard (`<key>.jpg`), or null when the shard has no such entry. The
 * first read of a shard indexes its headers (positioned reads, no data); later reads of the same
 * file, unchanged, are one positioned read each instead of a scan of the tar up to the entry.
 */
export function readShardEntry(path: string, name: string): Buffer | null {
  const fd = openSync(path, 'r');
  try {
    const found = shardIndex(fd, path).entries.get(name);
    return found === undefined ? null : readAt(fd, found.dataAt, found.size);
  } finally {
    closeSync(fd);
  }
}

/** The names of a shard's entries (from the same header index as {@link readShardEntry}; no data read). */
export function shardEntryNames(path: string): string[] {
  const fd = openSync(path, 'r');
  try {
    return [...shardIndex(fd, path).entries.keys()];
  } finally {
    closeSync(fd);
  }
}

function writeFileDurably(path: string, data: Uint8Array | string): void {
  const fd = openSync(path, 'w');
  try {
    writeFileSync(fd, data);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Per-shard statistics, as img2dataset's `_stats.json`. */
export interface ShardStats {
  shard: number;
  count: number;
  successes: number;
  failures: Record<string, number>;
  /**
   * Records of earlier shards, by status, that no longer count: their pairs were put back to be
   * tried again (a lifted refusal, a failure retried with --retry-failed) and are counted where
   * they end. Summed over shards,
   * `count − superseded` (and `failures − superseded` per status) counts each pair once.
   */
  superseded: Record<string, number>;
  duration: number;
  bytes: number;
  tar_bytes: number;
}

interface FailureRow {
  key: string;
  url: string;
  page_url: string | null;
  caption: string;
  status: string;
  error_message: string | null;
  http_status: number | null;
}

/**
 * Writes WebDataset shards with a two-phase commit so that a kill at any moment leaves the corpus
 * consistent: samples are appended to `NNNNN.tar.tmp` (each sample's tar entries built in memory,
 * queued ones written together, in order, by one `writev` call); a full shard is fsynced with its parquet and
 * stats, then one transaction marks its pairs `ok` and records the shard, then the files are
 * renamed. On open, a shard recorded but not yet renamed is renamed, and an unrecorded `.tmp`
 * is scanned and continued (committed at once if it is already full), so nothing stored is downloaded twice.
 */
export class ShardWriter {
  readonly corpus: Corpus;
  readonly shardSize: number;
  /** Number of the shard being written. Failures recorded now belong to it. */
  current = 0;
  private samples: SampleMeta[] = [];
  private keys = new Set<string>();
  /** Failures recorded against the open shard: they count towards its size, as in img2dataset. */
  private failures = 0;
  /**
   * Failures recorded against the shards after the open one (`[0]`: the next), while the open one
   * is full and waits for its commit.
   */
  private failuresAhead: number[] = [];
  /** Whether a commit that failures filled the shard for is queued. */
  private commitQueued = false;
  /** The open shard's `.tar.tmp`, and where its next byte goes. */
  private fd: number | null = null;
  private position = 0;
  /** Buffers added but not yet handed to a write, and their bytes. */
  private pendingBuffers: Buffer[] = [];
  private pendingBytes = 0;
  /** Bytes handed to the write in progress. */
  private writingBytes = 0;
  /** The write loop in progress, if any; it ends when less than {@link WRITE_AT} is pending (unless closing). */
  private writing: Promise<void> | null = null;
  /** Set while the file is being closed: the write loop then writes whatever is queued. */
  private closing = false;
  /** A write that failed: every later call rejects with it. */
  private writeError: unknown = null;
  private openedAt = Date.now();
  private queue: Promise<void> = Promise.resolve();
  /** Shards committed by this writer. */
  committed = 0;

  private constructor(corpus: Corpus, shardSize: number) {
    this.corpus = corpus;
    this.shardSize = shardSize;
  }

  /** Opens the writer, finishing any commit a kill interrupted and resuming the open shard. */
  static async open(corpus: Corpus, shardSize: number): Promise<ShardWriter> {
    const writer = new ShardWriter(corpus, shardSize);
    await writer.recover();
    return writer;
  }

  private async recover(): Promise<void> {
    const { dir, db } = this.corpus;
    mkdirSync(join(dir, 'shards'), { recursive: true });
    mkdirSync(join(dir, 'stats'), { recursive: true });
    const recorded = new Set((db.prepare('SELECT shard FROM shards').all() as { shard: number }[]).map((r) => r.shard));
    const maxRecorded = (db.prepare('SELECT MAX(shard) AS m FROM shards').get() as { m: number | null }).m;
    this.current = maxRecorded === null ? 0 : maxRecorded + 1;

    for (const name of readdirSync(join(dir, 'shards'))) {
      const match = /^(\d{5})\.tar\.tmp$/.exec(name);
      if (!match?.[1]) continue;
      const shard = Number(match[1]);
      const paths = shardPaths(dir, shard);
      if (recorded.has(shard)) {
        // Committed in the manifest, killed before the rename: the files are whole, finish it.
        for (const [tmp, final] of [
          [paths.tarTmp, paths.tar],
          [paths.parquetTmp, paths.parquet],
          [paths.statsTmp, paths.stats],
        ] as const) {
          if (existsSync(tmp)) renameSync(tmp, final);
        }
      } else if (shard === this.current) {
        const { samples, endOffset } = await scanPartialShard(paths.tarTmp);
        truncateSync(paths.tarTmp, endOffset);
        this.samples = samples;
        for (const s of samples) this.keys.add(s.key);
        this.openStream(paths.tarTmp, true);
      } else {
        // A stray temporary from a shard number that can never be committed: not data anyone kept.
        unlinkSync(paths.tarTmp);
      }
    }
    for (const name of [...readdirSync(join(dir, 'shards')), ...readdirSync(join(dir, 'stats'))]) {
      const match = /^(\d{5})\.(parquet|json)\.tmp$/.exec(name);
      if (match?.[1] && !recorded.has(Number(match[1]))) {
        unlinkSync(join(dir, match[2] === 'json' ? 'stats' : 'shards', name));
      }
    }
    // A kill after the shard's last sample was written but before its commit leaves a full
    // `.tar.tmp`. Commit it now, as the uninterrupted run did on adding that sample: `write`
    // checks fullness only after adding, so the next sample would otherwise join it and shift
    // every later key to another shard. Failures recorded from here on belong to the next shard.
    const failed = db
      .prepare(
        `SELECT shard, COUNT(*) AS n FROM pairs WHERE shard >= ? AND status NOT IN ('ok', 'pending') GROUP BY shard`,
      )
      .all(this.current) as Array<{ shard: number; n: number }>;
    for (const { shard, n } of failed) {
      if (shard === this.current) this.failures = n;
      else this.failuresAhead[shard - this.current - 1] = n;
    }
    this.failuresAhead = Array.from(this.failuresAhead, (n) => n ?? 0);
    if (this.isFull()) await this.commit();
  }

  /** Whether the open shard holds `shardSize` records, samples and failures together. */
  private isFull(): boolean {
    return this.samples.length + this.failures >= this.shardSize;
  }

  /**
   * The shard a failure about to be recorded belongs to, counted towards its size: a shard closes
   * after `shardSize` records of either kind, so a crawl of mostly dead links writes shards of
   * failures, not one shard holding every failure until enough images come. Call it once a failed
   * pair, just before recording it. The open shard takes it unless it is full; a full one's
   * commit is queued behind the samples being added, and failures meanwhile go to the shards
   * after it, each up to `shardSize`.
   */
  attributeFailure(): number {
    if (!this.isFull()) {
      this.failures++;
      this.queueCommitIfFull();
      return this.current;
    }
    let ahead = 0;
    while ((this.failuresAhead[ahead] ?? 0) >= this.shardSize) ahead++;
    this.failuresAhead[ahead] = (this.failuresAhead[ahead] ?? 0) + 1;
    return this.current + 1 + ahead;
  }

  /** Queues the open shard's commit once failures have filled it (samples commit as they fill it). */
  private queueCommitIfFull(): void {
    if (this.isFull() && !this.commitQueued) {
      this.commitQueued = true;
      this.queue = this.queue
        .then(async () => {
          this.commitQueued = false;
          if (this.isFull()) await this.commit();
        })
        .catch((err: unknown) => {
          // No caller awaits this commit: the next add or flush throws its error.
          this.writeError ??= err;
        });
    }
  }

  private openStream(path: string, append: boolean): void {
    this.fd = openSync(path, append ? 'r+' : 'w');
    this.position = append ? statSync(path).size : 0;
    this.openedAt = Date.now();
  }

  /**
   * Queues buffers for the open file; starts the write loop if it is idle and a megabyte is
   * queued, or at once with `now`.
   */
  private enqueue(buffers: Buffer[], now = false): void {
    for (const b of buffers) {
      this.pendingBuffers.push(b);
      this.pendingBytes += b.length;
    }
    if (!now && this.pendingBytes < WRITE_AT) return;
    this.writing ??= this.writeLoop().finally(() => {
      this.writing = null;
    });
  }

  /**
   * Writes the pending buffers in order, many a call, at the file's next position. A short
   * write (rare) is continued from where it stopped. An error is kept for the next call.
   */
  private async writeLoop(): Promise<void> {
    try {
      while (this.pendingBuffers.length > 0 && (this.closing || this.pendingBytes >= WRITE_AT)) {
        const fd = this.fd as number;
        let batch = this.pendingBuffers.splice(0, MAX_IOV);
        let bytes = batch.reduce((sum, b) => sum + b.length, 0);
        this.pendingBytes -= bytes;
        this.writingBytes = bytes;
        while (bytes > 0) {
          const { bytesWritten } = await writevAsync(fd, batch, this.position);
          this.position += bytesWritten;
          bytes -= bytesWritten;
          if (bytes > 0) batch = skipBytes(batch, bytesWritten);
        }
        this.writingBytes = 0;
      }
    } catch (err) {
      this.writeError = err;
      this.pendingBuffers = [];
      this.pendingBytes = 0;
      this.writingBytes = 0;
    }
  }

  /** Waits until every queued buffer is in the file; rejects with a write's error. */
  private async drain(): Promise<void> {
    while (this.writing !== null) await this.writing;
    if (this.writeError !== null) throw this.writeError;
  }

  /** True when the open shard already holds this key (recovered after a kill). */
  has(key: string): boolean {
    return this.keys.has(key);
  }

  /** Samples in the open shard. */
  get pending(): number {
    return this.samples.length;
  }

  /**
   * Appends a sample; commits the shard when it is full. Calls are serialised. Resolves once the
   * sample is queued for the file, which is not yet on disk: the shard's commit writes and fsyncs
   * every queued byte before the manifest marks any of its pairs `ok`.
   */
  add(sample: Sample): Promise<void> {
    const next = this.queue.then(() => this.write(sample));
    this.queue = next.catch(() => undefined);
    return next;
  }

  /**
   * Queues the sample's tar bytes for the file; waits only when much is queued. A sample queued
   * but not yet written is lost by a kill, which is harmless: its pair stays `pending` in the
   * manifest until the shard commits, after every byte is written and fsynced.
   */
  private async write(sample: Sample): Promise<void> {
    const { meta } = sample;
    if (this.writeError !== null) throw this.writeError;
    if (this.keys.has(meta.key)) return;
    // Filled by failures while this sample waited its turn: the sample goes to the next shard with
    // room (the shard after a commit may itself have filled with failures meanwhile).
    while (this.isFull()) await this.commit();
    if (this.fd === null) this.openStream(shardPaths(this.corpus.dir, this.current).tarTmp, false);
    this.enqueue(sampleTar(sample));
    this.samples.push(meta);
    this.keys.add(meta.key);
    if (this.isFull()) await this.commit();
    else if (this.pendingBytes + this.writingBytes > MAX_QUEUED) await this.writing;
  }

  /**
   * Waits for queued samples, then commits the open shard if it holds any sample or failure, and
   * the shards after it that failures were recorded against while it was full.
   */
  async flush(): Promise<void> {
    const hasFailures = this.corpus.db
      .prepare(`SELECT 1 FROM pairs WHERE shard = ? AND status NOT IN ('ok', 'pending') LIMIT 1`)
      .pluck();
    // In the queue, as every commit is: a commit that failures queued must not run beside these.
    const next = this.queue.then(async () => {
      if (this.writeError !== null) throw this.writeError;
      while (this.samples.length > 0 || this.fd !== null || hasFailures.get(this.current) !== undefined) {
        await this.commit();
      }
    });
    this.queue = next.catch(() => undefined);
    await next;
  }

  /** Waits for queued samples and closes the file, leaving the open shard to be continued. */
  async suspend(): Promise<void> {
    // Until the queue is idle: a commit that ends may queue the next shard's, filled by failures.
    for (let queue = this.queue; ; queue = this.queue) {
      await queue;
      if (queue === this.queue) break;
    }
    await this.closeStream();
  }

  /**
   * Ends the tar (with its end-of-archive blocks, so even a suspended shard is a valid tar),
   * waits until everything is written and closes the file, fsynced first with `sync`. A resumed
   * shard was truncated after its last sample when it was opened.
   */
  private async closeStream(sync = false): Promise<void> {
    const fd = this.fd;
    if (fd === null) return;
    this.closing = true;
    try {
      this.enqueue([END_OF_ARCHIVE], true);
      await this.drain();
      if (sync) await fsyncAsync(fd);
    } finally {
      this.closing = false;
      this.fd = null;
      await closeAsync(fd);
    }
  }

  private async commit(): Promise<void> {
    const { dir, db } = this.corpus;
    const shard = this.current;
    const paths = shardPaths(dir, shard);
    if (this.fd === null) this.openStream(paths.tarTmp, existsSync(paths.tarTmp));
    await this.closeStream(true);

    const failures = db
      .prepare(
        `SELECT key, url, page_url, caption, status, error_message, http_status FROM pairs
         WHERE shard = ? AND status NOT IN ('ok', 'pending')`,
      )
      .all(shard) as FailureRow[];
    const failureCounts: Record<string, number> = {};
    for (const f of failures) failureCounts[f.status] = (failureCounts[f.status] ?? 0) + 1;
    // Listed by this shard, and emptied in the transaction that records it (nothing can add to the
    // table in between: the requeue runs before the writer opens, under the corpus lock).
    const supersededRows = db.prepare('SELECT status, n FROM superseded ORDER BY status').all() as Array<{
      status: string;
      n: number;
    }>;
    const samples = this.samples;
    const bytes = samples.reduce((sum, s) => sum + s.bytes, 0);
    const stats: ShardStats = {
      shard,
      count: samples.length + failures.length,
      successes: samples.length,
      failures: failureCounts,
      superseded: Object.fromEntries(supersededRows.map((r) => [r.status, r.n])),
      duration: (Date.now() - this.openedAt) / 1000,
      bytes,
      tar_bytes: statSync(paths.tarTmp).size,
    };
    writeFileDurably(paths.parquetTmp, new Uint8Array(shardParquet(samples, failures)));
    writeFileDurably(paths.statsTmp, JSON.stringify(stats, null, 2) + '\n');

    const update = db.prepare(
      `UPDATE pairs SET status = 'ok', error_message = NULL, shard = @shard, width = @width, height = @height,
         original_width = @original_width, original_height = @original_height, sha256 = @sha256,
         bytes = @bytes, http_status = @http_status, attempted_at = @now WHERE key = @key`,
    );
    const now = new Date().toISOString();
    db.transaction(() => {
      for (const s of samples) {
        const { changes } = update.run({ ...s, shard, now });
        if (changes !== 1)
          throw new CriticalError('ERR_MANIFEST_MISMATCH', `Sample ${s.key} has no manifest row`, {
            context: { shard },
          });
      }
      db.prepare('DELETE FROM superseded').run();
      db.prepare(
        'INSERT INTO shards (shard, count, successes, superseded, bytes, committed_at) VALUES (?, ?, ?, ?, ?, ?)',
      ).run(
        shard,
        stats.count,
        stats.successes,
        supersededRows.reduce((sum, r) => sum + r.n, 0),
        bytes,
        now,
      );
    })();
    renameSync(paths.tarTmp, paths.tar);
    renameSync(paths.parquetTmp, paths.parquet);
    renameSync(paths.statsTmp, paths.stats);

    this.committed++;
    this.current = shard + 1;
    this.samples = [];
    this.keys = new Set();
    this.failures = this.failuresAhead.shift() ?? 0;
    // The next shard may have been filled with failures while this one committed.
    this.queueCommitIfFull();
  }
}

/** The buffers left after the first `skip` bytes of `buffers`. */
function skipBytes(buffers: Buffer[], skip: number): Buffer[] {
  let i = 0;
  while (i < buffers.length && skip >= (buffers[i] as Buffer).length) skip -= (buffers[i++] as Buffer).length;
  const rest = buffers.slice(i);
  if (skip > 0 && rest.length > 0) rest[0] = (rest[0] as Buffer).subarray(skip);
  return rest;
}

/** The per-shard parquet: img2dataset's columns, successes then failures. */
function shardParquet(samples: SampleMeta[], failures: FailureRow[]): ArrayBuffer {
  const rows = [
    ...samples.map((s) => ({ ...s, status: 'ok', error_message: null as string | null })),
    ...failures.map((f) => ({
      ...f,
      width: null,
      height: null,
      original_width: null,
      original_height: null,
      sha256: null,
      bytes: null,
    })),
  ];
  const col = <K extends keyof (typeof rows)[number]>(name: K, type: 'STRING' | 'INT32' | 'INT64') => ({
    name,
    type,
    data: rows.map((r) => {
      const v = r[name] ?? null;
      return type === 'INT64' && typeof v === 'number' ? BigInt(v) : v;
    }),
  });
  return parquetWriteBuffer({
    columnData: [
      col('key', 'STRING'),
      col('url', 'STRING'),
      col('caption', 'STRING'),
      col('page_url', 'STRING'),
      col('status', 'STRING'),
      col('error_message', 'STRING'),
      col('http_status', 'INT32'),
      col('width', 'INT32'),
      col('height', 'INT32'),
      col('original_width', 'INT32'),
      col('original_height', 'INT32'),
      col('sha256', 'STRING'),
      col('bytes', 'INT64'),
    ],
  });
}
