/**
 * Multi-index hashing (Norouzi et al.) over SQLite: a 64-bit hash is stored with its four 16-bit
 * parts in indexed columns `p0..p3`. Two hashes within Hamming distance D agree to within
 * floor(D / 4) bits on at least one part (pigeonhole), so a lookup probes each part's index with
 * every 16-bit value that close to the query's part, then verifies the candidates' full distance.
 * No lookup reads every stored hash.
 */
import type Database from 'better-sqlite3';
import { hamming, toSigned, toUnsigned } from './phash.ts';

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
