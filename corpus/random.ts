/**
 * Seeded randomness: every generated site, fixture and benchmark input draws from here, so a seed
 * reproduces it byte for byte.
 */

/** A uniform number in [0, 1) on each call. */
export type Random = () => number;

/** xmur3: hashes a string into a 32-bit seed. */
function hashString(text: string): number {
  let h = 1779033703 ^ text.length;
  for (let i = 0; i < text.length; i++) {
    h = Math.imul(h ^ text.charCodeAt(i), 3432918353);
    h = (h << 13) | (h >>> 19);
  }
  h = Math.imul(h ^ (h >>> 16), 2246822507);
  h = Math.imul(h ^ (h >>> 13), 3266489909);
  return (h ^= h >>> 16) >>> 0;
}

/**
 * A mulberry32 stream for `seed` and a stream name. Each decision (alt kinds, fates, sizes...) draws
 * from its own stream, so changing how one is made does not reshuffle the others.
 */
export function createRandom(seed: number, stream: string): Random {
  return mulberry32(hashString(`${seed}:${stream}`));
}

/** mulberry32: a small, fast 32-bit generator, good enough for generating data. */
export function mulberry32(seed: number): Random {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** An integer in [min, max]. */
export function randomInt(random: Random, min: number, max: number): number {
  return min + Math.floor(random() * (max - min + 1));
}

/** One element of a non-empty list. */
export function pick<T>(random: Random, items: readonly T[]): T {
  const item = items[Math.floor(random() * items.length)];
  if (item === undefined) throw new Error('pick() from an empty list');
  return item;
}

/** Fisher–Yates, in place; returns the array. */
export function shuffle<T>(random: Random, items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    const a = items[i] as T;
    items[i] = items[j] as T;
    items[j] = a;
  }
  return items;
}

/**
 * Splits `total` items among categories in proportion to `fractions` (largest remainder, ties in
 * the order given), so the counts are exact and sum to `total`. `rest` takes what the fractions
 * leave. A category with a fraction above 0 gets at least one item while `rest` has one to give:
 * a small demo still shows every case.
 */
export function quotas<K extends string>(
  total: number,
  fractions: Readonly<Record<K, number>>,
  rest: K,
): Record<K, number> {
  const keys = Object.keys(fractions) as K[];
  const given = keys.filter((k) => k !== rest);
  const share = { ...fractions, [rest]: Math.max(0, 1 - given.reduce((sum, k) => sum + fractions[k], 0)) } as Record<
    K,
    number
  >;
  const all = [...given, rest];
  const counts = {} as Record<K, number>;
  let assigned = 0;
  for (const k of all) {
    counts[k] = Math.floor(share[k] * total + 1e-9);
    assigned += counts[k];
  }
  const byRemainder = all
    .map((k, order) => ({ k, order, remainder: share[k] * total - counts[k] }))
    .toSorted((a, b) => b.remainder - a.remainder || a.order - b.order);
  for (let i = 0; assigned < total; i++, assigned++) {
    const entry = byRemainder[i % byRemainder.length];
    if (entry !== undefined) counts[entry.k]++;
  }
  for (const k of given) {
    if (fractions[k] > 0 && counts[k] === 0 && counts[rest] > 0) {
      counts[k] = 1;
      counts[rest]--;
    }
  }
  return counts;
}

/** A list with each key repeated as many times as its count, shuffled. */
export function dealt<K extends string>(random: Random, counts: Readonly<Record<K, number>>): K[] {
  const list: K[] = [];
  for (const k of Object.keys(counts) as K[]) for (let i = 0; i < counts[k]; i++) list.push(k);
  return shuffle(random, list);
}
