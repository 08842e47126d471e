/**
 * Generates real-looking JPEGs for the crawl benchmark: a Twemoji drawing composited on a
 * photographic-noise background, 720–1200 px, 60–200 KB, deterministic (seeded) and cached.
 */
import { existsSync, mkdirSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import sharp from 'sharp';
import { mulberry32 } from '../corpus/random.ts';

const require = createRequire(import.meta.url);

export interface BenchImage {
  file: string;
  caption: string;
}

/** Emoji PNG paths with their names. */
function emojiList(): { file: string; name: string }[] {
  const jsonPath = require.resolve('emoji-datasource-twitter/emoji.json');
  const dir = join(dirname(jsonPath), 'img', 'twitter', '64');
  const records = require(jsonPath) as { name: string | null; image: string }[];
  return records
    .filter((r) => r.name !== null && existsSync(join(dir, r.image)))
    .map((r) => ({ file: join(dir, r.image), name: (r.name as string).toLowerCase() }));
}

/** Generates (or reuses) `count` JPEGs; returns their paths and captions. */
export async function benchImages(count: number, onProgress?: (done: number) => void): Promise<BenchImage[]> {
  const dir = join(tmpdir(), 'altforge-bench', `jpeg-v2-${count}`);
  const emojis = emojiList();
  const images: BenchImage[] = [];
  for (let i = 0; i < count; i++) {
    const e = emojis[(i * 7919) % emojis.length];
    if (e === undefined) throw new Error('No emoji images installed');
    images.push({ file: join(dir, `${String(i).padStart(6, '0')}.jpg`), caption: `${e.name} photo ${i}` });
  }
  if (existsSync(dir) && readdirSync(dir).filter((f) => f.endsWith('.jpg')).length === count) return images;
  mkdirSync(dir, { recursive: true });
  const random = mulberry32(42);
  // A few noise textures, blurred a little so JPEG sizes look like photographs.
  const tiles = await Promise.all(
    Array.from({ length: 6 }, async (_, t) => {
      const r = mulberry32(1000 + t);
      const raw = Buffer.alloc(1280 * 1280 * 3);
      for (let i = 0; i < raw.length; i++) raw[i] = 70 + Math.floor(r() * 120);
      return sharp(raw, { raw: { width: 1280, height: 1280, channels: 3 } })
        .blur(1.1)
        .png({ compressionLevel: 1 })
        .toBuffer();
    }),
  );
  let done = 0;
  const work = images.map((img, i) => async () => {
    if (existsSync(img.file)) return;
    const e = emojis[(i * 7919) % emojis.length] as { file: string };
    const width = 720 + Math.floor(random() * 480);
    const height = Math.round(width * (0.6 + random() * 0.8));
    const tile = tiles[i % tiles.length] as Buffer;
    const side = Math.round(Math.min(width, height) * 0.6);
    const fg = await sharp(e.file).resize(side, side).png().toBuffer();
    const jpg = await sharp(tile)
      .extract({ left: 0, top: 0, width, height: Math.min(height, 1280) })
      .composite([{ input: fg, gravity: 'centre' }])
      .jpeg({ quality: 62 + Math.floor(random() * 18) })
      .toBuffer();
    writeFileSync(img.file + '.tmp', jpg);
    renameSync(img.file + '.tmp', img.file);
    onProgress?.(++done);
  });
  let next = 0;
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      while (next < work.length) await (work[next++] as () => Promise<void>)();
    }),
  );
  return images;
}
