import { z } from 'zod';
import { parseOptions } from '../corpus/options.ts';

/** Options of {@link runReport}. Every field is validated once, at the entry. */
export interface ReportOptions {
  /** The corpus directory (it must hold a manifest). */
  corpus: string;
  /** Training run directories (`altforge train --out`): their `metrics.jsonl` gives the loss curves. @default [] */
  runs?: string[];
  /** A comparison (`compare.json`, or the directory holding it): the comparison table and its plots. @default none */
  compare?: string;
  /** The benchmark registry, for the test-image side of dedup matches. @default `$XDG_DATA_HOME/altforge/benchmarks.sqlite` */
  benchDb?: string;
  /** Directory written: `index.html` and `images/`. Replaced when it holds an earlier report. @default '<corpus>/../report' */
  out?: string;
  /** Example pairs shown per filter reason and dedup matches shown. @default 6 */
  examples?: number;
  /** Pairs in each half of the noise grid (the most and the least noisy). @default 12 */
  noiseGrid?: number;
  /** Page title. @default 'altforge report' */
  title?: string;
}

const schema = z.strictObject({
  corpus: z.string().min(1),
  runs: z.array(z.string().min(1)).default([]),
  compare: z.string().min(1).optional(),
  benchDb: z.string().min(1).optional(),
  out: z.string().min(1).optional(),
  examples: z.number().int().min(0).max(100).default(6),
  noiseGrid: z.number().int().min(0).max(200).default(12),
  title: z.string().min(1).max(200).default('altforge report'),
});

/** Options with every default filled in. */
export type ResolvedReportOptions = z.output<typeof schema>;

/** Validates the options: ``Option 'report.examples': ... got `500` ``. */
export function resolveReportOptions(options: ReportOptions): ResolvedReportOptions {
  return parseOptions(schema, options, 'report');
}
