/**
 * Multi-index hashing (Norouzi et al.) over SQLite: a 64-bit hash is stored with its four 16-bit
 * parts in indexed columns `p0..p3`. Two hashes within Hamming distance D agree to within
 * floor(D / 4) bits on at least one part (pigeonhole), so a lookup probes each part's index with
 * every 16-bit value that close to the query's part, then verifies the candidates' full distance.
 * No lookup reads every stored hash.
 *
 * Two ways to probe the same indexes: {@link MihIndex} asks SQLite (one statement per lookup;
 * right for a few lookups), {@link MihTable} is an in-memory mirror of the four part indexes, read
 * once from the part columns (SQLite stays the record), for a batch run: a probe is two array
 * reads instead of a B-tree descent through better-sqlite3, which at distance 8 (548 probes a
 * lookup) is the difference between slower and hundreds of times faster than a linear scan.
 */
import type Database from 'better-sqlite3';
import { hamming, popcount32, toSigned, toUnsigned } from './phash.ts';

/** Parts a hash is split into, and bits per part. */
export const PARTS = 4;
const PART_BITS = 16;

/** The four 16-bit parts of a 64-bit hash, least significant first. */
export function hashParts(hash: bigint): [number, number, number, number] {
  const h = toUnsigned(hash);
  return [
    Number(h & 0xffffn),
    Number((h >> 16n) & 0xffffn),
    Number((h >> 32n) & 0xffffn),
    Number((h >> 48n) & 0xffffn),
  ];
}

const neighbourCache = new Map<number, Int32Array>();

/** The XOR masks of every 16-bit value with at most `radius` bits set (0 first). */
function masks(radius: number): Int32Array {
  let cached = neighbourCache.get(radius);
  if (cached) return cached;
  const list: number[] = [];
  for (let m = 0; m < 1 << PART_BITS; m++) {
    let bits = 0;
    for (let x = m; x; x &= x - 1) bits++;
    if (bits <= radius) list.push(m);
  }
  list.sort((a, b) => a - b);
  cached = Int32Array.from(list);
  neighbourCache.set(radius, cached);
  return cached;
}

/** Probes per part for a search radius (what a lookup at that distance costs). */
export function probesPerPart(maxDistance: number): number {
  return masks(Math.floor(maxDistance / PARTS)).length;
}

/** A stored hash found within the distance asked. */
export interface MihHit<Row> {
  distance: number;
  hash: bigint;
  row: Row;
}

/**
 * Lookups in one table that has the columns `hash` (signed 64-bit) and `p0..p3`, each part with
 * an index that starts with it. `columns` are the other columns returned with each hit; keep them
 * in the part indexes too so a probe never reads the table.
 */
export class MihIndex<Row extends { hash: bigint }> {
  private readonly statements = new Map<number, Database.Statement>();

  constructor(
    private readonly db: Database.Database,
    private readonly table: string,
    private readonly columns: readonly string[],
  ) {}

  private statement(perPart: number): Database.Statement {
    let stmt = this.statements.get(perPart);
    if (stmt) return stmt;
    const placeholders = Array.from({ length: perPart }, () => '?').join(',');
    const select = ['hash', ...this.columns].join(', ');
    const sql = Array.from(
      { length: PARTS },
      (_, k) => `SELECT ${select} FROM ${this.table} WHERE p${k} IN (${placeholders})`,
    ).join(' UNION ');
    stmt = this.db.prepare(sql).safeIntegers(true);
    this.statements.set(perPart, stmt);
    return stmt;
  }

  /** Every stored hash within `maxDistance` bits of `hash`, closest first. */
  lookup(hash: bigint, maxDistance: number): MihHit<Row>[] {
    const radius = Math.floor(maxDistance / PARTS);
    const m = masks(radius);
    const parts = hashParts(hash);
    const params: number[] = [];
    for (const part of parts) for (const mask of m) params.push(part ^ mask);
    const hits: MihHit<Row>[] = [];
    for (const raw of this.statement(m.length).all(...params) as Row[]) {
      const distance = hamming(hash, raw.hash);
      if (distance <= maxDistance) hits.push({ distance, hash: toUnsigned(raw.hash), row: raw });
    }
    return hits.sort((a, b) => a.distance - b.distance);
  }
}

/** The values stored for a hash: the signed integer and its parts. */
export function storedHash(hash: bigint): { hash: bigint; p0: number; p1: number; p2: number; p3: number } {
  const [p0, p1, p2, p3] = hashParts(hash);
  return { hash: toSigned(hash), p0, p1, p2, p3 };
}

/** A hit of an in-memory lookup: the position of the stored hash in the table, and its distance. */
export interface TableHit {
  index: number;
  distance: number;
}

/**
 * The in-memory mirror of the part indexes `p0..p3` of one table: per part, the stored hashes
 * grouped by part value (a counting sort: entries `offsets[v]..offsets[v + 1]` have part value v),
 * each entry holding the hash's two 32-bit halves and its position, so a probed bucket is read
 * front to back like the SQL index range it mirrors. Built from the part columns as SQLite stores
 * them: a lookup probes exactly the buckets the SQL lookup probes and finds the same hashes. A hash
 * near the query in several parts is reported once, from the first part within the radius.
 * Memory: 56 bytes per stored hash plus 1 MiB.
 */
const closestFirst = (a: TableHit, b: TableHit) => a.distance - b.distance || a.index - b.index;

export class MihTable {
  /** Stored hashes. */
  readonly size: number;
  private readonly hi: Uint32Array;
  private readonly lo: Uint32Array;
  private readonly offsets: Uint32Array[] = [];
  private readonly bucketHi: Uint32Array[] = [];
  private readonly bucketLo: Uint32Array[] = [];
  private readonly bucketIndex: Uint32Array[] = [];

  /**
   * @param hi high 32 bits of each stored hash
   * @param lo low 32 bits of each stored hash
   * @param parts the four part columns: `parts[k][i]` is part k of hash i
   */
  constructor(hi: Uint32Array, lo: Uint32Array, parts: readonly Uint16Array[]) {
    if (parts.length !== PARTS) throw new RangeError(`MihTable needs ${PARTS} part columns`);
    const n = hi.length;
    this.size = n;
    this.hi = hi;
    this.lo = lo;
    for (const column of parts) {
      const offsets = new Uint32Array((1 << PART_BITS) + 1);
      for (let i = 0; i < n; i++) {
        const v = (column[i] as number) + 1;
        offsets[v] = (offsets[v] as number) + 1;
      }
      for (let v = 1; v < offsets.length; v++) offsets[v] = (offsets[v] as number) + (offsets[v - 1] as number);
      const fill = offsets.slice(0, -1);
      const bh = new Uint32Array(n);
      const bl = new Uint32Array(n);
      const bi = new Uint32Array(n);
      for (let i = 0; i < n; i++) {
        const v = column[i] as number;
        const at = fill[v] as number;
        bh[at] = hi[i] as number;
        bl[at] = lo[i] as number;
        bi[at] = i;
        fill[v] = at + 1;
      }
      this.offsets.push(offsets);
      this.bucketHi.push(bh);
      this.bucketLo.push(bl);
      this.bucketIndex.push(bi);
    }
  }

  /** Every stored hash within `maxDistance` bits of `hi:lo` (the query's 32-bit halves), closest first. */
  lookupHalves(hi: number, lo: number, maxDistance: number): TableHit[] {
    const hits: TableHit[] = [];
    for (let k = 0; k < PARTS; k++) this.probePart(k, hi >>> 0, lo >>> 0, maxDistance, hits);
    return hits.length > 1 ? hits.sort(closestFirst) : hits;
  }

  /**
   * {@link lookupHalves} for many queries at once (a shard's fingerprints, a whole corpus): per
   * part, the queries are taken in the order of their part value, so consecutive queries probe
   * neighbouring buckets and the table is read nearly in order instead of at random. Same hits.
   */
  lookupMany(hi: Uint32Array, lo: Uint32Array, maxDistance: number): TableHit[][] {
    const n = hi.length;
    const out: TableHit[][] = Array.from({ length: n }, () => []);
    const order = new Float64Array(n);
    for (let k = 0; k < PARTS; k++) {
      const word = k < 2 ? lo : hi;
      const shift = k % 2 === 0 ? 0 : 16;
      for (let q = 0; q < n; q++) order[q] = (((word[q] as number) >>> shift) & 0xffff) * 2 ** 32 + q;
      order.sort();
      for (let r = 0; r < n; r++) {
        const q = (order[r] as number) % 2 ** 32;
        this.probePart(k, hi[q] as number, lo[q] as number, maxDistance, out[q] as TableHit[]);
      }
    }
    for (const hits of out) if (hits.length > 1) hits.sort(closestFirst);
    return out;
  }

  /**
   * {@link lookupMany} for the stored hashes at positions `start..end` themselves (a corpus looked
   * up in its own table a block at a time): `result[q]` holds the hits of position `start + q`,
   * itself included.
   */
  lookupStored(start: number, end: number, maxDistance: number): TableHit[][] {
    return this.lookupMany(this.hi.subarray(start, end), this.lo.subarray(start, end), maxDistance);
  }

  /** Probes part k's buckets within the radius of the query's part; appends the hits it reports. */
  private probePart(k: number, hi: number, lo: number, maxDistance: number, hits: TableHit[]): void {
    const radius = Math.floor(maxDistance / PARTS);
    const m = masks(radius);
    const offsets = this.offsets[k] as Uint32Array;
    const bh = this.bucketHi[k] as Uint32Array;
    const bl = this.bucketLo[k] as Uint32Array;
    const part = ((k < 2 ? lo : hi) >>> (k % 2 === 0 ? 0 : 16)) & 0xffff;
    for (let j = 0; j < m.length; j++) {
      const v = part ^ (m[j] as number);
      const end = offsets[v + 1] as number;
      for (let p = offsets[v] as number; p < end; p++) {
        const xh = ((bh[p] as number) ^ hi) >>> 0;
        const xl = ((bl[p] as number) ^ lo) >>> 0;
        const distance = popcount32(xh) + popcount32(xl);
        if (distance > maxDistance) continue;
        // Reported from the first part within the radius only (it is in that part's probed bucket too).
        if (k > 0 && popcount32(xl & 0xffff) <= radius) continue;
        if (k > 1 && popcount32(xl >>> 16) <= radius) continue;
        if (k > 2 && popcount32(xh & 0xffff) <= radius) continue;
        hits.push({ index: (this.bucketIndex[k] as Uint32Array)[p] as number, distance });
      }
    }
  }

  /** Every stored hash within `maxDistance` bits of `hash`, closest first. */
  lookup(hash: bigint, maxDistance: number): TableHit[] {
    const h = toUnsigned(hash);
    return this.lookupHalves(Number(h >> 32n), Number(h & 0xffffffffn), maxDistance);
  }

  /** A table of the hashes `hi:lo`, the parts taken from the halves as {@link hashParts} splits a hash. */
  static fromHalves(hi: Uint32Array, lo: Uint32Array): MihTable {
    return new MihTable(hi, lo, [
      Uint16Array.from(lo, (v) => v & 0xffff),
      Uint16Array.from(lo, (v) => v >>> 16),
      Uint16Array.from(hi, (v) => v & 0xffff),
      Uint16Array.from(hi, (v) => v >>> 16),
    ]);
  }

  /** The stored hash at `index` (unsigned). */
  hashAt(index: number): bigint {
    return (BigInt(this.hi[index] as number) << 32n) | BigInt(this.lo[index] as number);
  }
}

/**
 * Reads the rows of `table` selected by `where` into a {@link MihTable} (from the stored part
 * columns `p0..p3` and `hash`), with the `columns` asked of each row, in the table's order:
 * `rows[i]` is the row of the table's hash i.
 */
export function loadMihTable<Row>(
  db: Database.Database,
  table: string,
  columns: readonly string[],
  where = '1',
  params: readonly unknown[] = [],
): { table: MihTable; rows: Row[] } {
  const rows: Row[] = [];
  const { hi, lo, parts } = readHashes(db, { table, columns, where, params }, (raw) => {
    const row: Record<string, unknown> = {};
    columns.forEach((c, ci) => {
      const value = raw[FIRST_COLUMN + ci];
      row[c] = typeof value === 'bigint' ? Number(value) : value;
    });
    rows.push(row as Row);
  });
  return { table: new MihTable(hi, lo, parts), rows };
}

/**
 * The hashes of the rows of `table` selected by `where` as their 32-bit halves, with each row's
 * `rowid` (typed arrays: 16 bytes a row, no index built), in rowid order (the table's physical
 * order): for a whole corpus, whose index is built of the rows it keeps ({@link MihTable.fromHalves}).
 */
export function loadHashHalves(
  db: Database.Database,
  table: string,
  where = '1',
  params: readonly unknown[] = [],
): { rowids: Float64Array; hi: Uint32Array; lo: Uint32Array } {
  let rowids = new Float64Array(0);
  let i = 0;
  const { hi, lo } = readHashes(
    db,
    { table, columns: ['rowid'], where, params, order: 'rowid' },
    (raw) => {
      rowids[i++] = Number(raw[FIRST_COLUMN] as bigint);
    },
    (count) => {
      rowids = new Float64Array(count);
    },
  );
  return { rowids, hi, lo };
}

/** Which rows {@link readHashes} reads, and in what order. */
interface HashQuery {
  table: string;
  /** Columns handed to `each` besides the hash, from {@link FIRST_COLUMN} of the raw row. */
  columns: readonly string[];
  where: string;
  params: readonly unknown[];
  /** An ORDER BY clause's terms; none: the order SQLite picks. */
  order?: string;
}

/** Where a {@link HashQuery}'s own columns start in a raw row (after `hash` and `p0..p3`). */
const FIRST_COLUMN = 1 + PARTS;

/**
 * The hashes (halves and stored parts) of the rows a query selects, read in one pass; `each` gets
 * each raw row in turn (its query's columns from {@link FIRST_COLUMN}), `sized` the row count first.
 */
function readHashes(
  db: Database.Database,
  { table, columns, where, params, order }: HashQuery,
  each: (raw: unknown[]) => void,
  sized?: (count: number) => void,
): { hi: Uint32Array; lo: Uint32Array; parts: Uint16Array[] } {
  const count = (db.prepare(`SELECT COUNT(*) AS n FROM ${table} WHERE ${where}`).get(...params) as { n: number }).n;
  sized?.(count);
  const hi = new Uint32Array(count);
  const lo = new Uint32Array(count);
  const parts = Array.from({ length: PARTS }, () => new Uint16Array(count));
  const select = ['hash', 'p0', 'p1', 'p2', 'p3', ...columns].join(', ');
  const sql = `SELECT ${select} FROM ${table} WHERE ${where}${order ? ` ORDER BY ${order}` : ''}`;
  const stmt = db.prepare(sql).safeIntegers(true).raw(true);
  let i = 0;
  for (const raw of stmt.iterate(...params) as Iterable<unknown[]>) {
    if (i === count) break;
    const h = toUnsigned(raw[0] as bigint);
    hi[i] = Number(h >> 32n);
    lo[i] = Number(h & 0xffffffffn);
    for (let k = 0; k < PARTS; k++) (parts[k] as Uint16Array)[i] = Number(raw[1 + k] as bigint);
    each(raw);
    i++;
  }
  if (i !== count) throw new Error(`${table} changed while it was read (${i} of ${count} rows)`);
  return { hi, lo, parts };
}
