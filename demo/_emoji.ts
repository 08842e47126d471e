/**
 * The pictures of the demo site: Twemoji PNGs (64 px) from `emoji-datasource-twitter`, with the
 * dataset's names as the true alt-texts.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { CriticalError } from '../corpus/errors.ts';

const require = createRequire(import.meta.url);

/** One picture the site can show. */
export interface Emoji {
  /** The true alt-text, sentence case: `Grinning face`, `Waving hand, medium skin tone`, `Andorra Flag`. */
  name: string;
  /** Dataset category (`Smileys & Emotion`): one section of the site. */
  category: string;
  /** The PNG's file name in the dataset (`1f600.png`). */
  image: string;
  /** Absolute path of the 64×64 PNG. */
  file: string;
}

interface EmojiRecord {
  name: string | null;
  image: string;
  category: string;
  sort_order: number;
  has_img_twitter?: boolean;
  skin_variations?: Record<string, { image: string; has_img_twitter?: boolean }>;
}

const SKIN_TONES: Record<string, string> = {
  '1F3FB': 'light skin tone',
  '1F3FC': 'medium-light skin tone',
  '1F3FD': 'medium skin tone',
  '1F3FE': 'medium-dark skin tone',
  '1F3FF': 'dark skin tone',
};

/** The dataset shouts (`GRINNING FACE`); flags are already in title case and keep it. */
function displayName(name: string): string {
  if (/[a-z]/.test(name)) return name;
  const lower = name.toLowerCase();
  return lower.charAt(0).toUpperCase() + lower.slice(1);
}

/** The base pictures and, apart, the skin-tone variants: both in dataset order. */
export interface EmojiPool {
  base: Emoji[];
  variants: Emoji[];
}

let cached: EmojiPool | undefined;

/** Every installed emoji with a unique name (the `Component` swatches left out). */
export function emojiPool(): EmojiPool {
  if (cached !== undefined) return cached;
  let jsonPath: string;
  try {
    jsonPath = require.resolve('emoji-datasource-twitter/emoji.json');
  } catch (err) {
    throw new CriticalError(
      'ERR_DEMO_DATA_MISSING',
      'The demo needs the emoji-datasource-twitter package: run npm ci',
      { cause: err },
    );
  }
  const imageDir = join(dirname(jsonPath), 'img', 'twitter', '64');
  const records = (JSON.parse(readFileSync(jsonPath, 'utf8')) as EmojiRecord[]).toSorted(
    (a, b) => a.sort_order - b.sort_order,
  );
  const seen = new Set<string>();
  const base: Emoji[] = [];
  const variants: Emoji[] = [];
  const add = (list: Emoji[], name: string, category: string, image: string) => {
    const file = join(imageDir, image);
    if (seen.has(name) || !existsSync(file)) return;
    seen.add(name);
    list.push({ name, category, image, file });
  };
  for (const r of records) {
    if (r.name === null || r.has_img_twitter === false || r.category === 'Component') continue;
    const name = displayName(r.name);
    add(base, name, r.category, r.image);
    for (const [tones, variant] of Object.entries(r.skin_variations ?? {})) {
      if (variant.has_img_twitter === false) continue;
      const toneNames = [...new Set(tones.split('-').map((t) => SKIN_TONES[t] ?? t.toLowerCase()))];
      add(variants, `${name}, ${toneNames.join(', ')}`, r.category, variant.image);
    }
  }
  if (base.length === 0) throw new CriticalError('ERR_DEMO_DATA_MISSING', `No Twemoji PNGs found under ${imageDir}`);
  cached = { base, variants };
  return cached;
}
