/**
 * Token counts of the first pass, bounded in memory: they live in a typed hash table up to a
 * limit; beyond it the table spills its entries into the work database and starts over, and the
 * spilled runs are summed there by SQLite's external sort at the end. The second pass then looks
 * tokens up in memory only: in the table itself, or, after a spill, in the set of vocabulary
 * tokens rebuilt from the summed runs.
 */
import type Database from 'better-sqlite3';
import { CountTable, PartitionedCountTable } from './_hash-table.ts';

/** Counts of unigrams and bigrams keyed by their 52-bit hashes. */
export class TokenCounter {
  private counts = new PartitionedCountTable();
  private spilled = false;
  private readonly append: Database.Statement;

  constructor(
    private readonly work: Database.Database,
    private readonly maxInMemory: number,
  ) {
    work.exec('CREATE TABLE token_runs (h INTEGER NOT NULL, n INTEGER NOT NULL)');
    this.append = work.prepare('INSERT INTO token_runs (h, n) VALUES (?, ?)');
  }

  add(h: number): void {
    this.counts.add(h);
    if (this.counts.size >= this.maxInMemory) this.spill();
  }

  private spill(): void {
    this.work.transaction(() => {
      this.counts.forEach((h, n) => this.append.run(h, n));
    })();
    this.counts.clear();
    this.spilled = true;
  }

  /** Ends counting: returns the lookup of the second pass. */
  finish(vocabSize: number, minCount: number): Vocabulary {
    if (!this.spilled) {
      const counts = this.counts;
      this.counts = new PartitionedCountTable();
      return memoryVocabulary(counts, vocabSize, minCount);
    }
    this.spill();
    return spilledVocabulary(this.work, vocabSize, minCount);
  }
}

/** Which tokens are in the vocabulary: the `size` most frequent, each seen at least `minCount` times. */
export interface Vocabulary {
  /** Distinct unigrams and bigrams of the raw corpus. */
  readonly distinct: number;
  /** Tokens in the vocabulary. */
  readonly size: number;
  /** Fewest occurrences of a token in the vocabulary. */
  readonly cutoffCount: number;
  has(h: number): boolean;
}

/**
 * Where the vocabulary ends: tokens seen more than `count` times are in; of those seen exactly
 * `count` times, the first `tiesIn` by hash (a deterministic tie-break).
 */
interface Cut {
  count: number;
  tiesIn: number;
}

/** The cut from a histogram of counts (count -> tokens), or null when every eligible token fits. */
function cutOf(histogram: Map<number, number>, vocabSize: number, minCount: number): { cut: Cut | null; size: number } {
  const counts = [...histogram.keys()].filter((n) => n >= minCount).sort((a, b) => b - a);
  let above = 0;
  for (const n of counts) {
    const tokens = histogram.get(n)!;
    if (above + tokens > vocabSize) return { cut: { count: n, tiesIn: vocabSize - above }, size: vocabSize };
    above += tokens;
  }
  return { cut: null, size: above };
}

function memoryVocabulary(counts: PartitionedCountTable, vocabSize: number, minCount: number): Vocabulary {
  const histogram = new Map<number, number>();
  counts.forEach((_h, n) => histogram.set(n, (histogram.get(n) ?? 0) + 1));
  const { cut, size } = cutOf(histogram, vocabSize, minCount);
  const distinct = counts.size;
  if (cut === null && minCount <= 1) return { distinct, size, cutoffCount: minCount, has: () => true };
  // Ties at the cut: the ones with the smallest hashes are in.
  let tieSet: CountTable | null = null;
  if (cut !== null) {
    const ties: number[] = [];
    counts.forEach((h, n) => {
      if (n === cut.count) ties.push(h);
    });
    tieSet = new CountTable(cut.tiesIn);
    for (const h of Float64Array.from(ties).sort().subarray(0, cut.tiesIn)) tieSet.add(h);
  }
  // The vocabulary on its own: usually far smaller than all distinct tokens (most are rare), so
  // the second pass's lookups stay in the CPU cache.
  const vocab = new CountTable(size);
  counts.forEach((h, n) => {
    if (n < minCount) return;
    if (cut === null || n > cut.count || (n === cut.count && tieSet!.get(h) > 0)) vocab.add(h);
  });
  counts.clear();
  return { distinct, size, cutoffCount: cut?.count ?? minCount, has: (h) => vocab.get(h) > 0 };
}

function spilledVocabulary(work: Database.Database, vocabSize: number, minCount: number): Vocabulary {
  work.exec('CREATE INDEX token_runs_h ON token_runs (h)');
  const totals = () =>
    work.prepare('SELECT h, SUM(n) FROM token_runs GROUP BY h ORDER BY h').raw().iterate() as IterableIterator<
      [number, number]
    >;
  const histogram = new Map<number, number>();
  let distinct = 0;
  for (const [, n] of totals()) {
    distinct++;
    histogram.set(n, (histogram.get(n) ?? 0) + 1);
  }
  const { cut, size } = cutOf(histogram, vocabSize, minCount);
  if (cut === null && minCount <= 1) {
    work.exec('DROP TABLE token_runs');
    return { distinct, size, cutoffCount: minCount, has: () => true };
  }
  // The vocabulary itself, in memory: usually far smaller than all distinct tokens (most are rare).
  const vocab = new CountTable(size);
  let ties = 0;
  for (const [h, n] of totals()) {
    if (n < minCount) continue;
    if (cut === null || n > cut.count) vocab.add(h);
    else if (n === cut.count && ties < cut.tiesIn) {
      vocab.add(h);
      ties++;
    }
  }
  work.exec('DROP TABLE token_runs');
  return { distinct, size, cutoffCount: cut?.count ?? minCount, has: (h) => vocab.get(h) > 0 };
}
