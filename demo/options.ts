import { z } from 'zod';
import type { CrawlProgress } from '../crawl/index.ts';
import { MAX_IMAGES } from './site.ts';
import { BACKEND_CHOICES, type BackendChoice } from '../train/backend-names.ts';
import { parseOptions } from '../corpus/options.ts';

/** The demo's steps, in order; `upTo` names the last one run. */
export const DEMO_STAGES = ['crawl', 'dedup', 'filter', 'train', 'score', 'eval', 'report'] as const;
export type DemoStage = (typeof DEMO_STAGES)[number];

/**
 * Progress of the demo: the site build (`stage: 'site'`), the crawl's own phases, then each later
 * stage (`bench` registers the test sets; `train-vanilla` and `train-nlip` are the two runs).
 */
export interface DemoProgress {
  stage: 'site' | 'crawl' | 'bench' | 'dedup' | 'filter' | 'train-vanilla' | 'train-nlip' | 'score' | 'eval' | 'report';
  /** `site` while the site is built, then the stage's own phase (`pages`, `download`, `fingerprint`, `train`...). */
  phase: 'site' | CrawlProgress['phase'] | (string & {});
  /** Items finished in this phase so far (images written, pages fetched, images attempted). */
  done: number;
  /** Items in this phase, when known. */
  total: number | null;
  ok: number;
  failed: number;
}

/** Options of {@link runDemo}. Every field is validated once, at the entry. */
export interface DemoOptions {
  /** Directory of the demo: the site goes to `site/`, the corpus to `corpus/`. Created when missing; rerun with the same one to continue. @default './altforge-demo' */
  out?: string;
  /** Images on the demo site. @default 2000 */
  images?: number;
  /** Seed of every random choice of the site (alt-texts, failures, sizes). @default 1 */
  seed?: number;
  /** The last step run: `crawl` (site and crawl only), `dedup`, `filter`, `train`, `score`, `eval` or `report` (everything). @default 'report' */
  upTo?: DemoStage;
  /** Epochs of each of the two training runs (vanilla and NLIP, same seed). @default 12 */
  epochs?: number;
  /** Pairs per training step. @default 128 */
  batchSize?: number;
  /** Compute backend of training, scoring and evaluation. @default 'auto' */
  backend?: BackendChoice;
  /** The pornography classifier of the filter stage: `nsfwjs`, or `none` to leave the rule off. @default 'nsfwjs' */
  nsfw?: 'nsfwjs' | 'none';
  /** Called with one line when a stage starts or ends (thresholds, counts, headline); the CLI prints them. @default undefined */
  onLog?: (line: string) => void;
  /** Called as work advances; the CLI draws its progress bars with it. @default undefined */
  onProgress?: (progress: DemoProgress) => void;
  /** Aborting it stops the current stage cleanly; run again to continue. @default undefined */
  signal?: AbortSignal;
}

const imagesMessage = `expected an integer in [1, ${MAX_IMAGES}]`;

const schema = z.strictObject({
  out: z.string().min(1, 'expected a directory').default('./altforge-demo'),
  images: z.number().int(imagesMessage).min(1, imagesMessage).max(MAX_IMAGES, imagesMessage).default(2000),
  seed: z.number().int('expected a safe integer').min(Number.MIN_SAFE_INTEGER).max(Number.MAX_SAFE_INTEGER).default(1),
  upTo: z.enum(DEMO_STAGES).default('report'),
  epochs: z
    .number()
    .int('expected an integer in [1, 1000]')
    .min(1, 'expected an integer in [1, 1000]')
    .max(1000, 'expected an integer in [1, 1000]')
    .default(12),
  batchSize: z
    .number()
    .int('expected an integer in [2, 4096]')
    .min(2, 'expected an integer in [2, 4096]')
    .max(4096, 'expected an integer in [2, 4096]')
    .default(128),
  backend: z.enum(BACKEND_CHOICES).default('auto'),
  nsfw: z.enum(['nsfwjs', 'none']).default('nsfwjs'),
  onLog: z.custom<(line: string) => void>((v) => typeof v === 'function', 'expected a function').optional(),
  onProgress: z
    .custom<(progress: DemoProgress) => void>((v) => typeof v === 'function', 'expected a function')
    .optional(),
  signal: z.custom<AbortSignal>((v) => v instanceof AbortSignal, 'expected an AbortSignal').optional(),
});

/** Options with every default filled in. */
export type ResolvedDemoOptions = z.output<typeof schema>;

/**
 * Validates options once at the entry. The message names the option and the value received:
 * ``Option 'demo.images': expected an integer in [1, 50000], got `0` ``.
 */
export function resolveDemoOptions(options: DemoOptions): ResolvedDemoOptions {
  return parseOptions(schema, options, 'demo');
}
