/**
 * Token counts of the first pass, bounded in memory: they live in a typed hash table up to a
 * limit; beyond it the table spills its entries, sorted by hash, into a run file and starts over,
 * and the runs are merged (summing the counts of equal hashes) at the end. The second pass then
 * looks tokens up in memory only, in the set of vocabulary tokens.
 */
import { rmSync } from 'node:fs';
import { CountTable, KeySet, PartitionedCountTable } from './_hash-table.ts';
import { pairHash52 } from './_hash.ts';
import { SpoolReader, SpoolWriter } from './_spool.ts';

/** Counts of unigrams and bigrams keyed by their 52-bit hashes. */
export class TokenCounter {
  private counts: PartitionedCountTable;
  private readonly runs: string[] = [];

  /**
   * Run files are `${runPrefix}N.f64`; the caller removes them if the process dies before
   * {@link finish}. `expected`: distinct tokens to size the table for up front (at most
   * `maxInMemory`), so that it is not rehashed step by step as it grows.
   */
  constructor(
    private readonly runPrefix: string,
    private readonly maxInMemory: number,
    expected = 0,
  ) {
    this.counts = new PartitionedCountTable(Math.min(expected, maxInMemory));
  }

  add(h: number): void {
    this.counts.add(h);
    if (this.counts.size >= this.maxInMemory) this.spill();
  }

  /**
   * Counts a caption's unigrams, `n` hashes from `hashes[at]`, and the bigrams of consecutive
   * ones; the same as {@link add} for each, in one loop (the limit is checked once at the end, so
   * the table may pass it by one caption's tokens).
   */
  addCaption(hashes: Float64Array, at: number, n: number): void {
    if (n === 0) return;
    const counts = this.counts;
    let previous = hashes[at]!;
    counts.add(previous);
    for (let k = 1; k < n; k++) {
      const h = hashes[at + k]!;
      counts.add(h);
      counts.add(pairHash52(previous, h));
      previous = h;
    }
    if (counts.size >= this.maxInMemory) this.spill();
  }

  private spill(): void {
    const path = `${this.runPrefix}${this.runs.length}.f64`;
    this.runs.push(path);
    const run = new SpoolWriter(path);
    try {
      this.counts.forEachSorted((h, n) => {
        const at = run.reserve(2);
        run.values[at] = h;
        run.values[at + 1] = n;
      });
    } finally {
      run.close();
    }
    this.counts.clear();
  }

  /** Ends counting: returns the lookup of the second pass. */
  finish(vocabSize: number, minCount: number): Vocabulary {
    if (this.runs.length === 0) {
      const counts = this.counts;
      this.counts = new PartitionedCountTable();
      return memoryVocabulary(counts, vocabSize, minCount);
    }
    this.spill();
    try {
      return spilledVocabulary(this.runs, vocabSize, minCount);
    } finally {
      this.remove();
    }
  }

  /** Deletes the run files. */
  remove(): void {
    for (const path of this.runs) rmSync(path, { force: true });
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
  /** The tokens in the vocabulary; null when every token is in it. */
  readonly tokens: KeySet | null;
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
  const histogram = counts.histogram();
  const { cut, size } = cutOf(histogram, vocabSize, minCount);
  const distinct = counts.size;
  if (cut === null && minCount <= 1) return { distinct, size, cutoffCount: minCount, tokens: null };
  // Ties at the cut: the ones with the smallest hashes are in.
  let tieSet: CountTable | null = null;
  if (cut !== null) {
    const ties: number[] = [];
    counts.forEachAtLeast(cut.count, (h, n) => {
      if (n === cut.count) ties.push(h);
    });
    tieSet = new CountTable(cut.tiesIn);
    for (const h of Float64Array.from(ties).sort().subarray(0, cut.tiesIn)) tieSet.add(h);
  }
  // The vocabulary on its own: usually far smaller than all distinct tokens (most are rare), so
  // the second pass's lookups stay in the CPU cache.
  const vocab = new KeySet(size);
  counts.forEachAtLeast(minCount, (h, n) => {
    if (cut === null || n > cut.count || (n === cut.count && tieSet!.get(h) > 0)) vocab.add(h);
  });
  counts.clear();
  return { distinct, size, cutoffCount: cut?.count ?? minCount, tokens: vocab };
}

/** Calls `fn` with each hash of the sorted runs and its total count, in hash order. */
function mergeRuns(paths: string[], fn: (h: number, n: number) => void): void {
  const readers = paths.map((path) => new SpoolReader(path, 2, () => 2));
  try {
    const at = readers.map((r) => r.next());
    for (;;) {
      let min = Infinity;
      for (let i = 0; i < readers.length; i++)
        if (at[i]! >= 0 && readers[i]!.values[at[i]!]! < min) min = readers[i]!.values[at[i]!]!;
      if (min === Infinity) return;
      let n = 0;
      for (let i = 0; i < readers.length; i++) {
        const r = readers[i]!;
        if (at[i]! >= 0 && r.values[at[i]!] === min) {
          n += r.values[at[i]! + 1]!;
          at[i] = r.next();
        }
      }
      fn(min, n);
    }
  } finally {
    for (const r of readers) r.close();
  }
}

function spilledVocabulary(runs: string[], vocabSize: number, minCount: number): Vocabulary {
  const histogram = new Map<number, number>();
  let distinct = 0;
  mergeRuns(runs, (_h, n) => {
    distinct++;
    histogram.set(n, (histogram.get(n) ?? 0) + 1);
  });
  const { cut, size } = cutOf(histogram, vocabSize, minCount);
  if (cut === null && minCount <= 1) return { distinct, size, cutoffCount: minCount, tokens: null };
  // The vocabulary itself, in memory: usually far smaller than all distinct tokens (most are rare).
  // Ties at the cut: the ones with the smallest hashes are in, as in memory.
  const vocab = new KeySet(size);
  let ties = 0;
  mergeRuns(runs, (h, n) => {
    if (n < minCount) return;
    if (cut === null || n > cut.count) vocab.add(h);
    else if (n === cut.count && ties < cut.tiesIn) {
      vocab.add(h);
      ties++;
    }
  });
  return { distinct, size, cutoffCount: cut?.count ?? minCount, tokens: vocab };
}
