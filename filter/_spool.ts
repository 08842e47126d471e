/**
 * A scratch file of float64 records between the filter's two passes: the first pass writes, per
 * stored pair, what the second needs (row id, hashes of its caption, image and unigrams, sizes,
 * flags), so the second pass neither reads the manifest again nor tokenises again. Written and
 * read in 8 MB chunks: memory stays bounded whatever the corpus size.
 */
import { closeSync, openSync, readSync, rmSync, writeSync } from 'node:fs';

const CHUNK_DOUBLES = 1 << 20;

/** Appends records of float64 values. */
export class SpoolWriter {
  private readonly fd: number;
  /** The current chunk: write a reserved record here at the offset {@link reserve} returned. */
  values = new Float64Array(CHUNK_DOUBLES);
  private used = 0;

  constructor(readonly path: string) {
    this.fd = openSync(path, 'w');
  }

  /** Room for `n` more values in the current chunk (flushing it when full); returns where they start in `values`. */
  reserve(n: number): number {
    if (this.used + n > this.values.length) {
      this.flush();
      if (n > this.values.length) this.values = new Float64Array(n);
    }
    const offset = this.used;
    this.used += n;
    return offset;
  }

  /** Ends the record reserved at `offset` after its first `n` values (fewer than reserved). */
  shrink(offset: number, n: number): void {
    this.used = offset + n;
  }

  private flush(): void {
    if (this.used === 0) return;
    writeSync(this.fd, new Uint8Array(this.values.buffer, 0, this.used * 8));
    this.used = 0;
  }

  close(): void {
    this.flush();
    closeSync(this.fd);
  }
}

/**
 * Reads the records back in order: `next()` gives the offset of the next record in `values` (valid
 * until the following call), -1 at the end. `recordLength(values, offset)` tells the length of the
 * record starting at `offset` from its first `header` values.
 */
export class SpoolReader {
  values = new Float64Array(CHUNK_DOUBLES);
  private readonly fd: number;
  private filled = 0;
  private at = 0;
  private eof = false;

  constructor(
    readonly path: string,
    private readonly header: number,
    private readonly recordLength: (values: Float64Array, offset: number) => number,
  ) {
    this.fd = openSync(path, 'r');
  }

  next(): number {
    for (;;) {
      const available = this.filled - this.at;
      // Refill when fewer values than a header, or than the current record, remain.
      const need = available >= this.header ? this.recordLength(this.values, this.at) : this.header;
      if (available >= need) {
        const offset = this.at;
        this.at += need;
        return offset;
      }
      if (this.eof) {
        if (available > 0) throw new Error(`Truncated filter spool ${this.path}`);
        return -1;
      }
      if (need > this.values.length) {
        const bigger = new Float64Array(need * 2);
        bigger.set(this.values.subarray(this.at, this.filled));
        this.values = bigger;
      } else {
        this.values.copyWithin(0, this.at, this.filled);
      }
      this.at = 0;
      this.filled = available;
      const bytes = new Uint8Array(this.values.buffer, this.filled * 8, (this.values.length - this.filled) * 8);
      const n = readSync(this.fd, bytes, 0, bytes.length, null);
      if (n === 0) this.eof = true;
      this.filled += n / 8;
    }
  }

  close(): void {
    closeSync(this.fd);
  }
}

/** Removes a spool file if present. */
export function removeSpool(path: string): void {
  rmSync(path, { force: true });
}
