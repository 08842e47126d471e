import { hash } from 'node:crypto';
import { resolve } from 'node:path';
import { Worker } from 'node:worker_threads';
import type Database from 'better-sqlite3';
import type { Candidate } from './_candidate.ts';

/** The stable WebDataset key of a pair: md5 of caption + URL, as cc2dataset's uid. */
export function pairKey(caption: string, url: string): string {
  return hash('md5', caption + url);
}

/**
 * Returns a function that records candidates as `pending` pairs and says how many were new. A pair
 * already in the manifest is left as it is. The caller runs it inside its own transaction.
 */
export function pairInserter(db: Database.Database): (candidates: readonly Candidate[], source: string) => number {
  const insert = db.prepare(
    `INSERT OR IGNORE INTO pairs (key, url, page_url, caption, status, source) VALUES (?, ?, ?, ?, 'pending', ?)`,
  );
  return (candidates, source) => {
    let inserted = 0;
    for (const c of candidates)
      inserted += insert.run(pairKey(c.caption, c.url), c.url, c.pageUrl, c.caption, source).changes;
    return inserted;
  };
}

/** Rows per multi-row INSERT statement (5 parameters each; SQLite allows 32,766 per statement). */
const ROWS_PER_STATEMENT = 64;
/** Batches posted to the insert thread and not yet staged, at most. */
const MAX_IN_FLIGHT = 3;
/**
 * Candidates staged in the insert thread's scratch table before they are merged into `pairs` in one
 * transaction: the more, the fewer times a leaf of the key index is written (3M pairs: 17 GB
 * written a batch a transaction, 2.2 GB in merges of 1M; BENCHMARKS.md, crawl, session 17). The
 * scratch table's temporary disk space grows with it (~130 MB for 1M short URLs).
 */
const MERGE_ROWS = 1_000_000;

/**
 * What a thread of `_ingest-worker.mjs` posts back: for each batch, the candidates `staged` and
 * the new pairs `inserted` by the merge it set off (0 if none); at the end, the pairs `inserted` by
 * the merge of what was left.
 */
type Reply =
  | { staged: number; inserted: number }
  | { inserted: number }
  | { checkpointed: true }
  | { closed: true }
  | { error: string; code?: string };

/**
 * One thread of `_ingest-worker.mjs` with its own connection to the manifest. Replies are handed
 * to `onReply`; a failure (SQLite's error, or the thread dying) is kept in `failure`.
 */
class IngestThread {
  private readonly worker: Worker;
  failure: Error | null = null;
  closed = false;
  private readonly exited: Promise<void>;

  constructor(
    role: 'insert' | 'checkpoint',
    path: string,
    source: string,
    mergeRows: number,
    onReply: (reply: Reply) => void,
  ) {
    this.worker = new Worker(new URL('./_ingest-worker.mjs', import.meta.url), {
      workerData: { role, path, source, rowsPerStatement: ROWS_PER_STATEMENT, mergeRows },
      // A plain script: no loader (tsx) in the thread, which would take longer to start than it saves.
      execArgv: [],
    });
    this.worker.on('message', (reply: Reply) => {
      if ('error' in reply) {
        this.failure ??= Object.assign(new Error(reply.error), reply.code === undefined ? {} : { code: reply.code });
      } else if ('closed' in reply) this.closed = true;
      onReply(reply);
    });
    this.worker.on('error', (error) => {
      this.failure ??= error;
      onReply({ error: error.message });
    });
    this.exited = new Promise((resume) => {
      this.worker.once('exit', () => {
        if (!this.closed) this.failure ??= new Error(`the ${role} thread of the ingestion stopped before it was done`);
        onReply({ closed: true });
        resume();
      });
    });
  }

  post(message: unknown, transfer?: ArrayBuffer[]): void {
    this.worker.postMessage(message, transfer);
  }

  /** Asks the thread to finish what was posted and close its connection; resolves when it has ended. */
  async end(): Promise<void> {
    this.post({ end: true });
    await this.exited;
  }
}

/**
 * A batch of candidates as UTF-8 bytes outside the JavaScript heap, handed to the recording thread
 * without a copy: per candidate its caption and URL back to back (the key is the md5 of exactly
 * these bytes), then its page URL unless it is the previous candidate's. Strings held in an array
 * until a batch of thousands is posted outlive several young-generation collections, which copy
 * them each time: measured on the bench WARC, ~0.25 s of garbage collection on the reading thread
 * for 56k pairs. Written here, they die young.
 */
class EncodedBatch {
  /** Per candidate: bytes of the caption, of the URL, of the page URL (-1: null; -2: as the previous one). */
  private lengths: Int32Array;
  private bytes: Buffer;
  private used = 0;
  private lastPage: string | null | undefined = undefined;
  count = 0;

  constructor(private readonly capacity: number) {
    this.lengths = new Int32Array(3 * capacity);
    this.bytes = Buffer.allocUnsafeSlow(256 * capacity);
  }

  add(c: Candidate): void {
    const page = c.pageUrl === this.lastPage ? null : c.pageUrl;
    const most = 3 * (c.caption.length + c.url.length + (page?.length ?? 0));
    if (this.used + most > this.bytes.length) {
      const bigger = Buffer.allocUnsafeSlow(Math.max(2 * this.bytes.length, this.used + most));
      this.bytes.copy(bigger, 0, 0, this.used);
      this.bytes = bigger;
    }
    const at = 3 * this.count;
    let n = this.bytes.write(c.caption, this.used);
    this.lengths[at] = n;
    this.used += n;
    n = this.bytes.write(c.url, this.used);
    this.lengths[at + 1] = n;
    this.used += n;
    if (c.pageUrl === this.lastPage) this.lengths[at + 2] = -2;
    else if (page === null) this.lengths[at + 2] = -1;
    else {
      n = this.bytes.write(page, this.used);
      this.lengths[at + 2] = n;
      this.used += n;
    }
    this.lastPage = c.pageUrl;
    this.count++;
  }

  /** Posts the batch to `thread`, transferring its memory, and starts an empty one. */
  postTo(thread: IngestThread): void {
    const bytes = this.bytes.buffer as ArrayBuffer;
    const lengths = this.lengths.buffer as ArrayBuffer;
    thread.post({ bytes, used: this.used, lengths, count: this.count }, [bytes, lengths]);
    this.lengths = new Int32Array(3 * this.capacity);
    this.bytes = Buffer.allocUnsafeSlow(256 * this.capacity);
    this.used = 0;
    this.count = 0;
    this.lastPage = undefined;
  }
}

/**
 * Records candidates (one at a time, or in arrays, as `readWarcRecords` gives them) as `pending`
 * pairs. A pair already in the manifest is left as it is, so reading an input twice (after a kill)
 * adds nothing twice. Resolves with how many pairs were read and how many were new, once every
 * candidate is committed; `onBatch` is called as each batch of `batchSize` is taken in, with the
 * candidates read up to its end.
 *
 * The batches are keyed and staged on a worker thread with its own connection to `db`'s file
 * (which must be a file), then merged into `pairs` every `mergeRows` candidates and
 * at the end, and the WAL is checkpointed on another thread, so that reading the next candidates,
 * recording the last ones and writing them to disk run side by side. Each merge is one
 * transaction, committed in order: a kill at any moment leaves a prefix of the merges recorded
 * (the staged candidates since the last one are lost with the thread's temporary database). A
 * merge's new rows take their rowids, and so their order of download, batch after batch, each
 * batch in key order (as when each batch was its own transaction).
 */
export async function recordCandidates(
  db: Database.Database,
  candidates: AsyncIterable<Candidate | readonly Candidate[]> | Iterable<Candidate | readonly Candidate[]>,
  source: string,
  onBatch?: (read: number) => void,
  batchSize = 4000,
  mergeRows = MERGE_ROWS,
): Promise<{ read: number; inserted: number }> {
  if (db.memory) throw new Error('recordCandidates needs a database file, not an in-memory database');
  const path = resolve(db.name);
  /** Candidates read up to the end of each batch in flight, oldest first. */
  const inFlight: number[] = [];
  let inserted = 0;
  let wake: (() => void) | null = null;
  const signal = (): void => {
    const resume = wake;
    wake = null;
    resume?.();
  };
  const waitForThreads = () =>
    new Promise<void>((resume) => {
      wake = resume;
    });
  let checkpointing = false;
  let checkpointWanted = false;
  const checkpointer = new IngestThread('checkpoint', path, source, mergeRows, (reply) => {
    if (!('checkpointed' in reply)) return;
    checkpointing = checkpointWanted;
    checkpointWanted = false;
    if (checkpointing) checkpointer.post({ checkpoint: true });
  });
  const inserter = new IngestThread('insert', path, source, mergeRows, (reply) => {
    if ('inserted' in reply) {
      inserted += reply.inserted;
      // Copy what a merge added to the WAL into the database: one pass at a time, the next one
      // asked for while a pass runs starting when it ends. The insert connection does not
      // checkpoint by itself; if the checkpoint thread has failed, it is asked to instead.
      if (reply.inserted > 0) {
        if (checkpointer.failure !== null || checkpointer.closed) inserter.post({ checkpoint: true });
        else if (checkpointing) checkpointWanted = true;
        else {
          checkpointing = true;
          checkpointer.post({ checkpoint: true });
        }
      }
      if ('staged' in reply) {
        const readByThen = inFlight.shift() as number;
        try {
          onBatch?.(readByThen);
        } catch (error) {
          inserter.failure ??= error as Error;
        }
      }
    }
    signal();
  });
  const failure = (): Error | null => inserter.failure;

  const batch = new EncodedBatch(batchSize);
  let read = 0;
  const post = async (): Promise<void> => {
    inFlight.push(read);
    batch.postTo(inserter);
    while (failure() === null && inFlight.length >= MAX_IN_FLIGHT) await waitForThreads();
    const error = failure();
    if (error !== null) throw error;
  };
  try {
    for await (const item of candidates) {
      const error = failure();
      if (error !== null) throw error;
      for (const c of Array.isArray(item) ? (item as readonly Candidate[]) : [item as Candidate]) {
        batch.add(c);
        read++;
        if (batch.count >= batchSize) await post();
      }
    }
    if (batch.count > 0 || read === 0) await post();
  } finally {
    // Batches already posted are merged and committed (a prefix of the input, as after a kill),
    // then the threads close their connections and end; what is left in the WAL is checkpointed
    // when the manifest closes.
    await inserter.end();
    await checkpointer.end();
  }
  const error = failure();
  if (error !== null) throw error;
  return { read, inserted };
}
