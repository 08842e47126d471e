/**
 * Synthetic noisy correspondence (the NCR protocol): the captions of exactly a fraction `rate` of
 * the training pairs are shuffled among themselves by a derangement, so every chosen pair ends up
 * with another pair's caption. The mask of shuffled pairs is kept for diagnostics only (how well a
 * robust run finds them); training never sees it.
 */
import { UsageError } from '../corpus/errors.ts';
import { shuffle, type Random } from '../corpus/random.ts';

/** What {@link injectNoise} did. */
export interface InjectedNoise {
  /** The captions after shuffling (same order as the input). */
  captions: string[];
  /** True for the pairs whose caption was replaced. */
  noisy: boolean[];
  /** `source[i]`: the index of the pair whose caption pair `i` now carries (`i` itself when clean). */
  source: number[];
  /** Number of pairs shuffled: `round(rate × n)`. */
  count: number;
}

/** How many pairs a rate shuffles: `round(rate × n)`, never exactly one (a single caption cannot move). */
export function noisyCount(n: number, rate: number): number {
  const k = Math.round(rate * n);
  return k === 1 ? (n >= 2 ? 2 : 0) : k;
}

/**
 * Shuffles the captions of exactly `noisyCount(n, rate)` pairs: a random subset, whose captions are
 * permuted by a random cyclic permutation (Sattolo's algorithm), so no chosen pair keeps its own.
 * With `groups` (a concept per pair, e.g. the class), the permutation is repaired by swaps until
 * no pair receives a caption of its own group, so a shuffled caption is really a wrong one; when
 * one group holds more than half the chosen pairs that is impossible and it is a usage error.
 */
export function injectNoise(
  captions: readonly string[],
  rate: number,
  random: Random,
  options: { groups?: readonly (string | number)[] } = {},
): InjectedNoise {
  if (!(rate >= 0 && rate <= 1)) {
    throw new UsageError(
      'ERR_INVALID_OPTION',
      `Option 'compare.noiseRates': expected rates in [0, 1], got \`${rate}\``,
      {
        context: { stage: 'compare', option: 'noiseRates' },
      },
    );
  }
  const n = captions.length;
  const k = noisyCount(n, rate);
  const chosen = shuffle(
    random,
    Array.from({ length: n }, (_, i) => i),
  )
    .slice(0, k)
    .sort((a, b) => a - b);
  // Sattolo: a uniformly random single cycle over positions 0..k-1, hence a derangement.
  const perm = Array.from({ length: k }, (_, i) => i);
  for (let i = k - 1; i > 0; i--) {
    const j = Math.floor(random() * i);
    [perm[i], perm[j]] = [perm[j] as number, perm[i] as number];
  }
  const groups = options.groups;
  if (groups) {
    const counts = new Map<string | number, number>();
    for (const i of chosen)
      counts.set(groups[i] as string | number, (counts.get(groups[i] as string | number) ?? 0) + 1);
    const largest = Math.max(0, ...counts.values());
    if (k > 0 && largest * 2 > k) {
      throw new UsageError(
        'ERR_INVALID_OPTION',
        `Cannot shuffle ${k} captions so that each gets one of another concept: one concept holds ${largest} of them`,
        { context: { stage: 'compare' } },
      );
    }
    const g = (pos: number) => groups[chosen[pos] as number] as string | number;
    const bad = (pos: number, target: number) => target === pos || g(target) === g(pos);
    for (let round = 0; round < 50; round++) {
      let conflicts = 0;
      for (let p = 0; p < k; p++) {
        if (!bad(p, perm[p] as number)) continue;
        conflicts++;
        for (let tries = 0; tries < 200; tries++) {
          const q = Math.floor(random() * k);
          const a = perm[p] as number;
          const b = perm[q] as number;
          if (!bad(p, b) && !bad(q, a)) {
            perm[p] = b;
            perm[q] = a;
            break;
          }
        }
      }
      if (conflicts === 0) break;
    }
  }
  const out = [...captions];
  const noisy = Array.from({ length: n }, () => false);
  const source = Array.from({ length: n }, (_, i) => i);
  chosen.forEach((pair, pos) => {
    const from = chosen[perm[pos] as number] as number;
    out[pair] = captions[from] as string;
    source[pair] = from;
    noisy[pair] = true;
  });
  return { captions: out, noisy, source, count: k };
}
