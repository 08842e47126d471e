/**
 * Runs the dedup accuracy suite on an accuracy set (test/fixtures/transforms.ts): registers the
 * benchmark drawings, writes the corpus images as WebDataset shards with a manifest, runs the real
 * dedup stage, and scores its `dup_of` against the truth, next to the plain 64-bit pHash (the
 * whole image, no trimming, no variants, no verification) at the same distance, in the same run.
 * Shared by the test (small set) and `npm run bench:dedup` (full set).
 */
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { openCorpus } from '../../corpus/manifest.ts';
import { ShardWriter } from '../../corpus/shards.ts';
import {
  hamming,
  plainPhash,
  registerBenchmark,
  runDedup,
  type DedupOptions,
  type SecondPassCounts,
} from '../../dedup/index.ts';
import { TRANSFORMS, type AccuracyCorpusImage, type AccuracySet, type CorpusKind } from '../fixtures/transforms.ts';

/** Counts for one kind of corpus image. */
export interface KindScore {
  n: number;
  /** Flagged as a duplicate of anything. */
  flagged: number;
  /** Flagged as a duplicate of the image it was made from (copies only). */
  correct: number;
}

export interface MethodScore {
  byKind: Partial<Record<CorpusKind, KindScore>>;
  /**
   * Correct flags / all flags: the suite's stricter figure, whose negatives are the other vendors'
   * drawings, the skin-tone variants and the other Twitter emoji.
   */
  precision: number;
  /**
   * Precision exactly as issue 5 defines it: negatives are only the other vendors' drawings and the
   * skin-tone variants (plus the copies' wrong identifications); flags on other Twitter emoji are
   * not counted.
   */
  issuePrecision: number;
  /** Recall per transform. */
  recall: Partial<Record<CorpusKind, number>>;
}

/**
 * How the suite counts. `near-identical` (the default since fingerprints fp4): a negative within
 * NEAR_IDENTICAL per channel of a registered drawing or its mirror image is left out (it is, to
 * any matcher that must catch flips, a copy), and a copy flagged as a registered drawing that is
 * near-identical to its source is found. `pixel-identical` (before): only negatives pixel-identical
 * to a registered drawing or its mirror image are left out, and a copy counts only when flagged as
 * its own source.
 */
export type SuiteDefinition = 'near-identical' | 'pixel-identical';

export interface AccuracyReport {
  /** Scores under the near-identical definition. */
  dedup: MethodScore;
  baseline: MethodScore;
  /** The same flags scored under the pixel-identical definition (the numbers reported before fp4). */
  pixelIdentical: { dedup: MethodScore; baseline: MethodScore };
  /** Images the near-identical definition counts differently. */
  nearIdentical: {
    /** Negatives left out: near-identical to a registered drawing or its mirror. */
    negativesLeftOut: number;
    /** Copies whose source has a near-identical registered drawing (flagging it counts as found). */
    copiesWithLookAlikes: number;
  };
  /** What dedup flagged wrongly (near-identical definition): corpus kind, detail, and what it pointed to. */
  falsePositives: Array<{ kind: CorpusKind; detail: string; dupOf: string }>;
  /** Copies dedup missed. */
  misses: Array<{ kind: CorpusKind; detail: string; copyOf: string }>;
  /** What the dedup run's second pass did (full-resolution comparison of verified candidates). */
  secondPass: SecondPassCounts;
  /** Wall time of the dedup run (fingerprints, lookups, both passes), ms. */
  dedupMs: number;
}

function score(set: AccuracySet, flags: Array<string | null>, definition: SuiteDefinition): MethodScore {
  const byKind: Partial<Record<CorpusKind, KindScore>> = {};
  let flagged = 0;
  let correct = 0;
  let otherEmojiFlagged = 0;
  set.corpus.forEach((image, i) => {
    if (definition === 'near-identical' && image.copyOf === null && image.lookAlikes.length > 0) return;
    const s = (byKind[image.kind] ??= { n: 0, flagged: 0, correct: 0 });
    s.n++;
    const flag = flags[i] ?? null;
    if (flag === null) return;
    s.flagged++;
    flagged++;
    if (image.kind === 'other-emoji') otherEmojiFlagged++;
    if (image.copyOf !== null && isFound(image, flag, definition)) {
      s.correct++;
      correct++;
    }
  });
  const recall: Partial<Record<CorpusKind, number>> = {};
  for (const t of TRANSFORMS) {
    const s = byKind[t];
    if (s) recall[t] = s.correct / s.n;
  }
  const issueFlagged = flagged - otherEmojiFlagged;
  return {
    byKind,
    precision: flagged === 0 ? 1 : correct / flagged,
    issuePrecision: issueFlagged === 0 ? 1 : correct / issueFlagged,
    recall,
  };
}

/** Whether `flag` finds the copy `image` under `definition`. */
function isFound(image: AccuracyCorpusImage, flag: string, definition: SuiteDefinition): boolean {
  return flag === image.copyOf || (definition === 'near-identical' && image.lookAlikes.includes(flag));
}

const md5 = (text: string) => createHash('md5').update(text).digest('hex');

/** Scores dedup and the plain pHash baseline on `set`, working in `dir`. */
export async function evaluateAccuracy(
  set: AccuracySet,
  dir: string,
  options: Pick<
    DedupOptions,
    'maxDistance' | 'minCorrelation' | 'maxColourDifference' | 'concurrency' | 'secondPass'
  > = {},
): Promise<AccuracyReport> {
  const benchDir = join(dir, 'bench');
  mkdirSync(benchDir, { recursive: true });
  for (const b of set.benchmark) writeFileSync(join(benchDir, b.id), await readFile(b.file));
  const benchDb = join(dir, 'registry.sqlite');
  await registerBenchmark({ name: 'accuracy', images: benchDir, benchDb });

  const corpusDir = join(dir, 'corpus');
  const corpus = openCorpus(corpusDir, { create: true });
  const keys = set.corpus.map((_, i) => md5(`accuracy-${i}`));
  const insert = corpus.db.prepare(`INSERT INTO pairs (key, url, caption, status) VALUES (?, ?, ?, 'pending')`);
  corpus.db.transaction(() =>
    set.corpus.forEach((c, i) => insert.run(keys[i], `http://example.test/${i}.jpg`, c.caption)),
  )();
  const writer = await ShardWriter.open(corpus, 1000);
  for (const [i, c] of set.corpus.entries()) {
    await writer.add({
      jpg: c.jpg,
      meta: {
        key: keys[i] as string,
        url: `http://example.test/${i}.jpg`,
        page_url: null,
        caption: c.caption,
        width: 0,
        height: 0,
        original_width: 0,
        original_height: 0,
        sha256: createHash('sha256').update(c.jpg).digest('hex'),
        bytes: c.jpg.length,
        http_status: 200,
      },
    });
  }
  await writer.flush();
  corpus.close();

  const run = await runDedup({ corpus: corpusDir, against: ['accuracy'], benchDb, captions: false, ...options });
  const db = openCorpus(corpusDir);
  const dupOf = new Map(
    (db.db.prepare('SELECT key, dup_of FROM pairs').all() as { key: string; dup_of: string | null }[]).map((r) => [
      r.key,
      r.dup_of,
    ]),
  );
  db.close();
  const dedupFlags = keys.map((k) => {
    const d = dupOf.get(k) ?? null;
    return d === null ? null : d.replace(/^accuracy\//, '');
  });

  const maxDistance = options.maxDistance ?? 8;
  const registered = await Promise.all(
    set.benchmark.map(async (b) => ({ id: b.id, hash: await plainPhash(await readFile(b.file)) })),
  );
  const baselineFlags: Array<string | null> = [];
  for (const c of set.corpus) {
    const hash = await plainPhash(c.jpg);
    let best: { id: string; d: number } | null = null;
    for (const r of registered) {
      const d = hamming(hash, r.hash);
      if (d <= maxDistance && (best === null || d < best.d)) best = { id: r.id, d };
    }
    baselineFlags.push(best?.id ?? null);
  }
  const falsePositives: AccuracyReport['falsePositives'] = [];
  const misses: AccuracyReport['misses'] = [];
  set.corpus.forEach((c, i) => {
    const flag = dedupFlags[i] ?? null;
    if (c.copyOf === null && c.lookAlikes.length > 0) return;
    const found = c.copyOf !== null && flag !== null && isFound(c, flag, 'near-identical');
    if (flag !== null && !found) falsePositives.push({ kind: c.kind, detail: c.detail, dupOf: flag });
    if (c.copyOf !== null && !found) misses.push({ kind: c.kind, detail: c.detail, copyOf: c.copyOf });
  });
  return {
    dedup: score(set, dedupFlags, 'near-identical'),
    baseline: score(set, baselineFlags, 'near-identical'),
    pixelIdentical: {
      dedup: score(set, dedupFlags, 'pixel-identical'),
      baseline: score(set, baselineFlags, 'pixel-identical'),
    },
    nearIdentical: {
      negativesLeftOut: set.corpus.filter((c) => c.copyOf === null && c.lookAlikes.length > 0).length,
      copiesWithLookAlikes: set.corpus.filter((c) => c.copyOf !== null && c.lookAlikes.length > 0).length,
    },
    falsePositives,
    misses,
    secondPass: run.secondPass,
    dedupMs: run.durationMs,
  };
}
