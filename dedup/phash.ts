/**
 * 64-bit DCT perceptual hashes: a 32×32 luma grid, its 2-D DCT-II, 64 low-frequency coefficients
 * compared with their median. Near-identical images have hashes a few bits apart; the Hamming
 * distance between two hashes is the dissimilarity. The classic pHash (imagehash's `phash`) is
 * kept as the baseline; dedup matches with the mirror-invariant variant.
 */

/** Side of the luma grid the hash is computed from. */
export const HASH_GRID = 32;
const LOW = 8;
const MAX_U = 16;

// cos((2x + 1) u π / 64) for the 16 lowest frequencies u and the 32 positions x.
const COS = new Float64Array(MAX_U * HASH_GRID);
for (let u = 0; u < MAX_U; u++) {
  for (let x = 0; x < HASH_GRID; x++) COS[u * HASH_GRID + x] = Math.cos(((2 * x + 1) * u * Math.PI) / (2 * HASH_GRID));
}

/**
 * Which DCT coefficients make the 64 bits.
 * - `standard`: the 8×8 lowest frequencies, the classic pHash (the baseline).
 * - `mirror-invariant`: the even horizontal frequencies 0, 2, ..., 14 by the vertical
 *   frequencies 0..7. Even horizontal frequencies do not change when an image is mirrored, so a
 *   flipped copy has the same hash; and the odd ones, which are all near zero in the many images
 *   that are (almost) left-right symmetric, are exactly the bits that flip with JPEG noise or a
 *   resize (measured on emoji: resize 150 % p90 18 bits → 4, JPEG q30 p90 16 → 4).
 */
export type HashBasis = 'standard' | 'mirror-invariant';

/**
 * The 64-bit hash of a {@link HASH_GRID}² luma grid (row-major, any numeric scale): bit `8v + k`
 * (from the least significant) is set when the k-th chosen coefficient of vertical frequency v is
 * above the median of the 64 (imagehash's rule; the DC term is included).
 */
export function phashGrid(grid: ArrayLike<number>, basis: HashBasis = 'mirror-invariant'): bigint {
  if (grid.length !== HASH_GRID * HASH_GRID) throw new RangeError(`phashGrid needs ${HASH_GRID * HASH_GRID} values`);
  const step = basis === 'standard' ? 1 : 2;
  // Separable DCT, only the chosen frequencies: rows first, then columns.
  const rows = new Float64Array(HASH_GRID * LOW);
  for (let y = 0; y < HASH_GRID; y++) {
    for (let k = 0; k < LOW; k++) {
      const u = k * step;
      let sum = 0;
      for (let x = 0; x < HASH_GRID; x++)
        sum += (grid[y * HASH_GRID + x] as number) * (COS[u * HASH_GRID + x] as number);
      rows[y * LOW + k] = sum;
    }
  }
  const coeffs = new Float64Array(LOW * LOW);
  for (let v = 0; v < LOW; v++) {
    for (let k = 0; k < LOW; k++) {
      let sum = 0;
      for (let y = 0; y < HASH_GRID; y++) sum += (rows[y * LOW + k] as number) * (COS[v * HASH_GRID + y] as number);
      coeffs[v * LOW + k] = sum;
    }
  }
  const sorted = Float64Array.from(coeffs).sort();
  const median = ((sorted[31] as number) + (sorted[32] as number)) / 2;
  let lo = 0;
  let hi = 0;
  for (let i = 0; i < 32; i++) if ((coeffs[i] as number) > median) lo |= 1 << i;
  for (let i = 0; i < 32; i++) if ((coeffs[i + 32] as number) > median) hi |= 1 << i;
  return (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
}

/** Bits set in a 32-bit integer. */
export function popcount32(x: number): number {
  x -= (x >>> 1) & 0x55555555;
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  x = (x + (x >>> 4)) & 0x0f0f0f0f;
  return Math.imul(x, 0x01010101) >>> 24;
}

const MASK32 = 0xffffffffn;

/** Hamming distance between two 64-bit hashes. */
export function hamming(a: bigint, b: bigint): number {
  const x = a ^ b;
  return popcount32(Number(x & MASK32)) + popcount32(Number((x >> 32n) & MASK32));
}

/** A 64-bit hash as SQLite stores it: a signed 64-bit integer. */
export function toSigned(hash: bigint): bigint {
  return BigInt.asIntN(64, hash);
}

/** A hash read back from SQLite (signed) as the unsigned 64-bit value. */
export function toUnsigned(value: bigint | number): bigint {
  return BigInt.asUintN(64, BigInt(value));
}

/** 16 hex digits, the way hashes are shown to people. */
export function hashHex(hash: bigint): string {
  return toUnsigned(hash).toString(16).padStart(16, '0');
}
