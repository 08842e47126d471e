import { once } from 'node:events';
import {
  closeSync,
  createReadStream,
  createWriteStream,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readdirSync,
  renameSync,
  statSync,
  truncateSync,
  unlinkSync,
  writeFileSync,
  type WriteStream,
} from 'node:fs';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { parquetWriteBuffer } from 'hyparquet-writer';
import tar from 'tar-stream';
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

/**
 * Reads the samples that are complete in a partly written shard (`.jpg`, `.txt` then `.json`,
 * the json last) and the byte offset where the last complete one ends. A sample cut by a kill is
 * simply not counted: the file is truncated there and writing continues.
 */
export async function scanPartialShard(path: string): Promise<{ samples: SampleMeta[]; endOffset: number }> {
  const samples: SampleMeta[] = [];
  let offset = 0;
  let endOffset = 0;
  let parts = new Set<string>();
  const extract = tar.extract();
  extract.on('entry', (header, stream, next) => {
    const chunks: Buffer[] = [];
    // An entry cut by a kill ends the scan: the pipeline rejects and endOffset stays before it.
    stream.on('error', (err: unknown) => next(err as Error));
    stream.on('data', (c: unknown) => {
      chunks.push(c as Buffer);
    });
    stream.on('end', () => {
      const size = header.size ?? 0;
      offset += BLOCK + padded(size);
      const dot = header.name.lastIndexOf('.');
      const key = header.name.slice(0, dot);
      const ext = header.name.slice(dot + 1);
      if (ext === 'json') {
        try {
          const meta = JSON.parse(Buffer.concat(chunks).toString('utf8')) as SampleMeta;
          if (meta.key === key && parts.has(`${key}.jpg`) && parts.has(`${key}.txt`)) {
            samples.push(meta);
            endOffset = offset;
          }
        } catch {
          // A json cut short cannot be complete: the sample ends before it.
        }
        parts = new Set();
      } else {
        parts.add(header.name);
      }
      next();
    });
  });
  try {
    await pipeline(createReadStream(path), extract);
  } catch {
    // The tail is truncated: everything before endOffset is whole.
  }
  return { samples, endOffset };
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

function fsyncPath(path: string): void {
  const fd = openSync(path, 'r+');
  try {
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
 * consistent: samples stream into `NNNNN.tar.tmp`; a full shard is fsynced with its parquet and
 * stats, then one transaction marks its pairs `ok` and records the shard, then the files are
 * renamed. On open, a shard recorded but not yet renamed is renamed, and an unrecorded `.tmp`
 * is scanned and continued, so nothing stored is downloaded twice.
 */
export class ShardWriter {
  readonly corpus: Corpus;
  readonly shardSize: number;
  /** Number of the shard being written. Failures recorded now belong to it. */
  current = 0;
  private samples: SampleMeta[] = [];
  private keys = new Set<string>();
  private pack: tar.Pack | null = null;
  private out: WriteStream | null = null;
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
  }

  private openStream(path: string, append: boolean): void {
    this.pack = tar.pack();
    this.out = createWriteStream(path, { flags: append ? 'a' : 'w' });
    this.pack.pipe(this.out);
    this.openedAt = Date.now();
  }

  /** True when the open shard already holds this key (recovered after a kill). */
  has(key: string): boolean {
    return this.keys.has(key);
  }

  /** Samples in the open shard. */
  get pending(): number {
    return this.samples.length;
  }

  /** Appends a sample; commits the shard when it is full. Calls are serialised. */
  add(sample: Sample): Promise<void> {
    const next = this.queue.then(() => this.write(sample));
    this.queue = next.catch(() => undefined);
    return next;
  }

  private async write(sample: Sample): Promise<void> {
    const { meta } = sample;
    if (this.keys.has(meta.key)) return;
    if (this.pack === null) this.openStream(shardPaths(this.corpus.dir, this.current).tarTmp, false);
    const pack = this.pack as tar.Pack;
    const entry = (name: string, data: Buffer) =>
      new Promise<void>((resolve, reject) => {
        pack.entry({ name, size: data.length, mtime: new Date(0) }, data, (err) => (err ? reject(err) : resolve()));
      });
    await entry(`${meta.key}.jpg`, sample.jpg);
    await entry(`${meta.key}.txt`, Buffer.from(meta.caption, 'utf8'));
    // The json goes last: its presence marks the sample complete when a partial shard is scanned.
    await entry(`${meta.key}.json`, Buffer.from(JSON.stringify(meta), 'utf8'));
    this.samples.push(meta);
    this.keys.add(meta.key);
    if (this.samples.length >= this.shardSize) await this.commit();
  }

  /** Waits for queued samples, then commits the open shard if it holds any. */
  async flush(): Promise<void> {
    await this.queue;
    const failures = this.corpus.db
      .prepare(`SELECT 1 FROM pairs WHERE shard = ? AND status NOT IN ('ok', 'pending') LIMIT 1`)
      .get(this.current);
    if (this.samples.length > 0 || this.pack !== null || failures !== undefined) await this.commit();
  }

  /** Waits for queued samples and closes the file, leaving the open shard to be continued. */
  async suspend(): Promise<void> {
    await this.queue;
    await this.closeStream();
  }

  /**
   * Ends the tar (with its end-of-archive blocks, so even a suspended shard is a valid tar) and
   * waits until the file is closed. A resumed shard is truncated after its last sample first.
   */
  private async closeStream(): Promise<void> {
    const pack = this.pack;
    const out = this.out;
    this.pack = null;
    this.out = null;
    if (pack === null || out === null) return;
    pack.finalize();
    if (!out.closed) await once(out, 'close');
  }

  private async commit(): Promise<void> {
    const { dir, db } = this.corpus;
    const shard = this.current;
    const paths = shardPaths(dir, shard);
    if (this.pack === null) this.openStream(paths.tarTmp, existsSync(paths.tarTmp));
    await this.closeStream();
    fsyncPath(paths.tarTmp);

    const failures = db
      .prepare(
        `SELECT key, url, page_url, caption, status, error_message, http_status FROM pairs
         WHERE shard = ? AND status NOT IN ('ok', 'pending')`,
      )
      .all(shard) as FailureRow[];
    const failureCounts: Record<string, number> = {};
    for (const f of failures) failureCounts[f.status] = (failureCounts[f.status] ?? 0) + 1;
    const samples = this.samples;
    const bytes = samples.reduce((sum, s) => sum + s.bytes, 0);
    const stats: ShardStats = {
      shard,
      count: samples.length + failures.length,
      successes: samples.length,
      failures: failureCounts,
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
      db.prepare('INSERT INTO shards (shard, count, successes, bytes, committed_at) VALUES (?, ?, ?, ?, ?)').run(
        shard,
        stats.count,
        stats.successes,
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
  }
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
