import { z } from 'zod';
import { UsageError } from '../corpus/errors.ts';
import { parseOptions } from '../corpus/options.ts';

/** Progress of a dedup run. */
export interface DedupProgress {
  phase: 'fingerprint' | 'match' | 'within';
  done: number;
  total: number | null;
}

/** Options of {@link runDedup}. Validated once, at the entry. */
export interface DedupOptions {
  /** The corpus directory (it must hold a manifest). */
  corpus: string;
  /** Registered benchmarks to match the corpus against. @default [] */
  against?: string[];
  /** Also find near-duplicate clusters inside the corpus. @default false */
  within?: boolean;
  /** The registry database. @default `$XDG_DATA_HOME/altforge/benchmarks.sqlite` */
  benchDb?: string;
  /** Largest Hamming distance (of 64 bits) between hashes that nominates a candidate. @default 8 */
  maxDistance?: number;
  /** Flag pairs whose normalised caption equals a registered test caption. @default true */
  captions?: boolean;
  /** Lowest luma correlation of the verification thumbnails. @default 0.9 */
  minCorrelation?: number;
  /** Highest mean colour difference (0–255) of the verification thumbnails. @default 12 */
  maxColourDifference?: number;
  /** Highest share (0–1) of either image in colours the other lacks (colour histograms). @default 0.03 */
  maxUncoveredColour?: number;
  /**
   * Compare every verified candidate again at full resolution with the registered image's own
   * pixels (read from where `bench add` found them), rejecting a compact colour difference and
   * choosing the candidate that agrees best. @default true
   */
  secondPass?: boolean;
  /** Images fingerprinted at once. @default 4 */
  concurrency?: number;
  onProgress?: (progress: DedupProgress) => void;
  /** Aborting stops after the shard in flight (or, in `--within`, before the next block of lookups, writing nothing of it); the same call continues later. */
  signal?: AbortSignal;
}

const schema = z.strictObject({
  corpus: z.string().min(1),
  against: z.array(z.string().min(1)).default([]),
  within: z.boolean().default(false),
  benchDb: z.string().min(1).optional(),
  maxDistance: z.number().int().min(0).max(16).default(8),
  captions: z.boolean().default(true),
  minCorrelation: z.number().min(-1).max(1).default(0.9),
  maxColourDifference: z.number().min(0).max(255).default(12),
  maxUncoveredColour: z.number().min(0).max(1).default(0.03),
  secondPass: z.boolean().default(true),
  concurrency: z.number().int().min(1).max(64).default(4),
  onProgress: z.custom<(p: DedupProgress) => void>((v) => typeof v === 'function').optional(),
  signal: z.custom<AbortSignal>((v) => v instanceof AbortSignal).optional(),
});

/** Options with every default filled in. */
export type ResolvedDedupOptions = z.output<typeof schema>;

/** Validates the options: ``Option 'dedup.maxDistance': ... got `40` ``. */
export function resolveDedupOptions(options: DedupOptions): ResolvedDedupOptions {
  const resolved = parseOptions(schema, options, 'dedup');
  if (resolved.against.length === 0 && !resolved.within) {
    throw new UsageError('ERR_NO_INPUT', 'Nothing to do: give --against NAME (a registered benchmark) or --within', {
      context: { stage: 'dedup' },
    });
  }
  return resolved;
}
