/**
 * The demo's test sets, made from the emoji-datasource packages: the site's own vendor (Twitter)
 * drawings of a few held-out concepts, which dedup must find in the corpus, and another vendor's
 * (Google) drawings of concepts the corpus keeps, on which the trained models are evaluated (the
 * same names in a style the models have not seen).
 */
import { copyFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { emojiImageDir } from '../corpus/emoji.ts';
import { createRandom, shuffle } from '../corpus/random.ts';
import { emojiPool } from './_emoji.ts';
import type { DemoSite } from './site.ts';

/** A folder of PNGs and its captions file, ready for `registerBenchmark`. */
export interface DemoBenchmarkFiles {
  name: string;
  images: string;
  captions: string;
  /** The concepts (true names) it holds. */
  concepts: string[];
}

function vendorDir(vendor: 'twitter' | 'google'): string | null {
  try {
    return emojiImageDir(vendor);
  } catch {
    return null;
  }
}

function writeSet(
  dir: string,
  name: string,
  picked: Array<{ name: string; file: string; image: string }>,
): DemoBenchmarkFiles {
  const images = join(dir, name);
  mkdirSync(images, { recursive: true });
  const lines: string[] = [];
  for (const p of picked) {
    copyFileSync(p.file, join(images, p.image));
    lines.push(`${p.image}\t${p.name}`);
  }
  const captions = join(dir, `${name}.tsv`);
  writeFileSync(captions, lines.join('\n') + '\n');
  return { name, images, captions, concepts: picked.map((p) => p.name) };
}

/**
 * Picks the concepts of both test sets from the images the site shows under their true name and
 * that a crawl stores, and writes the sets under `dir`. Held-out concepts (Twitter, for dedup) and
 * evaluation concepts (Google) never overlap. Seeded: the same site and seed give the same sets.
 */
export function writeDemoBenchmarks(
  dir: string,
  site: DemoSite,
  seed: number,
  sizes: { heldOut: number; evaluation: number },
): { heldOut: DemoBenchmarkFiles; evaluation: DemoBenchmarkFiles | null } {
  const pool = emojiPool();
  const byName = new Map([...pool.base, ...pool.variants].map((e) => [e.name, e]));
  const googleDir = vendorDir('google');
  const shown = site.images.filter((i) => i.kind === 'name' && i.fate === 'ok').map((i) => i.subject);
  const concepts = shuffle(createRandom(seed, 'demo-benchmarks'), [...new Set(shown)].sort());
  const heldOut: Array<{ name: string; file: string; image: string }> = [];
  const evaluation: Array<{ name: string; file: string; image: string }> = [];
  for (const name of concepts) {
    const emoji = byName.get(name);
    if (emoji === undefined) continue;
    if (heldOut.length < sizes.heldOut) {
      heldOut.push({ name, file: emoji.file, image: emoji.image });
    } else if (evaluation.length < sizes.evaluation && googleDir !== null) {
      const file = join(googleDir, emoji.image);
      if (existsSync(file)) evaluation.push({ name, file, image: emoji.image });
    }
  }
  return {
    heldOut: writeSet(dir, 'twitter-heldout', heldOut),
    evaluation: evaluation.length > 0 ? writeSet(dir, 'google-eval', evaluation) : null,
  };
}
