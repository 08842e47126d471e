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
  private buffer = new Float64Array(CHUNK_DOUBLES);
  private used = 0;

  constructor(readonly path: string) {
    this.fd = openSync(path, 'w');
  }

  /** Room for `n` more values in the current chunk (flushing it when full); returns the array to write at `offset`. */
  reserve(n: number): { values: Float64Array; offset: number } {
    if (this.used + n > this.buffer.length) {
      this.flush();
      if (n > this.buffer.length) this.buffer = new Float64Array(n);
    }
    const offset = this.used;
    this.used += n;
    return { values: this.buffer, offset };
  }

  private flush(): void {
    if (this.used === 0) return;
    writeSync(this.fd, new Uint8Array(this.buffer.buffer, 0, this.used * 8));
    this.used = 0;
  }

  close(): void {
    this.flush();
    closeSync(this.fd);
  }
}

/**
 * Reads the records back in order. `recordLength(values, offset)` tells the length of the record
 * starting at `offset` from its first `header` values.
 */
export function* readSpool(
  path: string,
  header: number,
  recordLength: (values: Float64Array, offset: number) => number,
): Generator<{ values: Float64Array; offset: number }> {
  const fd = openSync(path, 'r');
  try {
    let buffer = new Float64Array(CHUNK_DOUBLES);
    let filled = 0;
    let eof = false;
    let at = 0;
    for (;;) {
      // Refill when fewer values than a header, or than the current record, remain.
      const need = filled - at >= header ? recordLength(buffer, at) : header;
      if (filled - at < need) {
        if (eof) {
          if (filled - at > 0) throw new Error(`Truncated filter spool ${path}`);
          return;
        }
        const rest = filled - at;
        if (need > buffer.length) {
          const bigger = new Float64Array(need * 2);
          bigger.set(buffer.subarray(at, filled));
          buffer = bigger;
        } else {
          buffer.copyWithin(0, at, filled);
        }
        at = 0;
        filled = rest;
        const bytes = new Uint8Array(buffer.buffer, filled * 8, (buffer.length - filled) * 8);
        const n = readSync(fd, bytes, 0, bytes.length, null);
        if (n === 0) eof = true;
        filled += n / 8;
        continue;
      }
      yield { values: buffer, offset: at };
      at += need;
    }
  } finally {
    closeSync(fd);
  }
}

/** Removes a spool file if present. */
export function removeSpool(path: string): void {
  rmSync(path, { force: true });
}
