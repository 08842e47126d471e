/**
 * The defaults a command's --help shows are the ones its stage uses: every flag default against
 * the stage's option schema (run with only the required options), so the two cannot drift apart.
 */
import { describe, expect, it } from 'vitest';
import type { FlagSpecs } from '../../cli/_args.ts';
import { flags as compareFlags } from '../../cli/compare.ts';
import { flags as crawlFlags } from '../../cli/crawl.ts';
import { flags as dedupFlags } from '../../cli/dedup.ts';
import { flags as evalFlags } from '../../cli/eval.ts';
import { flags as filterFlags } from '../../cli/filter.ts';
import { flags as scoreFlags } from '../../cli/score.ts';
import { flags as trainFlags } from '../../cli/train.ts';
import { resolveCrawlOptions, type CrawlOptions } from '../../crawl/options.ts';
import { resolveDedupOptions } from '../../dedup/options.ts';
import { resolveEvalOptions } from '../../eval/_options.ts';
import { COMPARE_RECIPE_DEFAULTS, resolveCompareOptions } from '../../eval/compare.ts';
import { resolveFilterOptions } from '../../filter/options.ts';
import { resolveScoreOptions, resolveTrainOptions, type TrainOptions } from '../../train/options.ts';

/**
 * Flags whose default differs from the stage's, by `flag: stage value`; the rest must agree. A
 * switch without a default is shown as off: where the stage has that option, it must be off there.
 */
function mismatches(specs: FlagSpecs, resolved: Record<string, unknown>, only?: readonly string[]): string[] {
  const out: string[] = [];
  for (const [flag, spec] of Object.entries(specs)) {
    if (flag === 'progress' || (only !== undefined && !only.includes(flag))) continue;
    if (spec.type === 'boolean' && spec.default === undefined) {
      if (flag in resolved && resolved[flag] !== false && resolved[flag] !== undefined)
        out.push(`${flag}: --help off, stage ${JSON.stringify(resolved[flag])}`);
      continue;
    }
    if (spec.default === undefined) continue;
    if (!(flag in resolved)) out.push(`${flag}: not an option of the stage`);
    else if (JSON.stringify(resolved[flag]) !== JSON.stringify(spec.default))
      out.push(`${flag}: --help ${JSON.stringify(spec.default)}, stage ${JSON.stringify(resolved[flag])}`);
  }
  return out;
}

const train = resolveTrainOptions({ corpus: ['/tmp/c'], out: '/tmp/o' } as TrainOptions) as Record<string, unknown>;

describe('flag defaults', () => {
  it('are the stage defaults for crawl, filter, dedup, train, score and eval', () => {
    const crawl = resolveCrawlOptions({ out: '/tmp/o', pages: ['http://127.0.0.1/'] } as CrawlOptions);
    expect(mismatches(crawlFlags, crawl as never)).toEqual([]);
    expect(mismatches(filterFlags, resolveFilterOptions({ corpus: ['/tmp/c'] }) as never)).toEqual([]);
    expect(mismatches(dedupFlags, resolveDedupOptions({ corpus: '/tmp/c', against: ['b'] }) as never)).toEqual([]);
    expect(mismatches(trainFlags, train)).toEqual([]);
    expect(mismatches(scoreFlags, resolveScoreOptions({ corpus: '/tmp/c', checkpoint: '/tmp/k' }) as never)).toEqual(
      [],
    );
    expect(mismatches(evalFlags, resolveEvalOptions({ checkpoint: '/tmp/k', benchmark: ['b'] }) as never)).toEqual([]);
  });

  it("are compare's own defaults, its recipe's, and train's for the rest of the recipe", () => {
    const compare = resolveCompareOptions({ out: '/tmp/o', setting: 'emoji' }) as Record<string, unknown>;
    const own = ['seeds', 'firstSeed', 'trainPairs', 'testImages', 'backend'];
    expect(mismatches(compareFlags, compare, own)).toEqual([]);
    expect(compareFlags.noiseRates.default.split(',').map(Number)).toEqual(compare['noiseRates']);
    expect(compareFlags.methods.default.split(',')).toEqual(compare['methods']);
    expect(mismatches(compareFlags, { ...COMPARE_RECIPE_DEFAULTS }, ['epochs', 'batchSize'])).toEqual([]);
    const recipe = Object.keys(compareFlags).filter(
      (f) => ![...own, 'noiseRates', 'methods', 'epochs', 'batchSize'].includes(f),
    );
    expect(mismatches(compareFlags, train, recipe)).toEqual([]);
  });

  it('catch a default that drifts', () => {
    expect(mismatches({ epochs: { type: 'integer', description: 'Epochs', default: 3 } }, { epochs: 4 })).toEqual([
      'epochs: --help 3, stage 4',
    ]);
    expect(mismatches({ nope: { type: 'integer', description: 'Nope', default: 1 } }, {})).toEqual([
      'nope: not an option of the stage',
    ]);
    expect(mismatches({ flip: { type: 'boolean', description: 'Flip' } }, { flip: true })).toEqual([
      'flip: --help off, stage true',
    ]);
  });
});
