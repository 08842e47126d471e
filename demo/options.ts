import { z } from 'zod';
import type { CrawlProgress } from '../crawl/index.ts';
import { MAX_IMAGES } from './site.ts';
import { parseOptions } from '../corpus/options.ts';

/** Progress of the demo: the site build (`stage: 'site'`), then the crawl's own phases. */
export interface DemoProgress {
  stage: 'site' | 'crawl';
  /** `site` while the site is built, then the crawl's phase (`pages`, `download`). */
  phase: 'site' | CrawlProgress['phase'];
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
