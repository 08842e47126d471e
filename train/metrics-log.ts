/**
 * Training metrics as JSON Lines: one object per line (`step`, `loss`, `temperature`, `lr`,
 * `pairsPerSecond`, noise statistics...). On resume the lines written after the checkpoint's step
 * are dropped, so the file reads like one uninterrupted run.
 */
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';

/** One line of the log; `kind` tells step records from epoch (noise) records. */
export interface MetricsRecord {
  kind: 'step' | 'epoch' | 'end';
  step: number;
  [field: string]: unknown;
}

/** An append-only JSONL file. */
export class MetricsLog {
  private fd: number;

  private constructor(
    readonly path: string,
    fd: number,
  ) {
    this.fd = fd;
  }

  /**
   * Opens the log for appending. With `keepUpToStep`, records of later steps (written after the
   * checkpoint a resumed run starts from) are removed first; without it the file starts empty.
   */
  static open(path: string, keepUpToStep?: number): MetricsLog {
    if (keepUpToStep !== undefined && existsSync(path)) {
      const kept = readMetrics(path).filter((r) => r.step <= keepUpToStep && !(r.kind === 'end'));
      const tmp = `${path}.tmp-${process.pid}`;
      const fd = openSync(tmp, 'w');
      writeSync(fd, kept.map((r) => JSON.stringify(r) + '\n').join(''));
      fsyncSync(fd);
      closeSync(fd);
      renameSync(tmp, path);
      return new MetricsLog(path, openSync(path, 'a'));
    }
    return new MetricsLog(path, openSync(path, 'w'));
  }

  append(record: MetricsRecord): void {
    writeSync(this.fd, JSON.stringify(record) + '\n');
  }

  /** Makes what was appended durable (called with every checkpoint). */
  sync(): void {
    fsyncSync(this.fd);
  }

  close(): void {
    if (this.fd >= 0) {
      closeSync(this.fd);
      this.fd = -1;
    }
  }
}

/** Reads a metrics file; a last line cut by a kill is ignored. */
export function readMetrics(path: string): MetricsRecord[] {
  const out: MetricsRecord[] = [];
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    if (line.trim() === '') continue;
    try {
      out.push(JSON.parse(line) as MetricsRecord);
    } catch {
      // A partial last line.
    }
  }
  return out;
}
