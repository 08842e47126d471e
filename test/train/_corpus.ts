/**
 * A small real corpus for the train tests: Twemoji images (JPEG, as the crawl stores them) with
 * their names as captions, written through the corpus's own manifest and shard writer.
 */
import { createHash } from 'node:crypto';
import sharp from 'sharp';
import { openCorpus } from '../../corpus/manifest.ts';
import { ShardWriter } from '../../corpus/shards.ts';
import type { ModelConfig } from '../../train/model.ts';
import { emojis, type Emoji } from '../fixtures/images.ts';

export interface CorpusPair {
  key: string;
  caption: string;
  emoji: Emoji;
}

/** JPEG bytes of an emoji on white, `size` px square. */
export async function emojiJpeg(emoji: Emoji, size = 48): Promise<Buffer> {
  return sharp(emoji.file).resize(size, size).flatten({ background: '#ffffff' }).jpeg({ quality: 90 }).toBuffer();
}

/**
 * Writes a corpus of `count` emoji pairs into `dir` (the first `count` installed emoji, from
 * `offset`), `shardSize` samples per shard; `caption` chooses each pair's caption.
 */
export async function makeEmojiCorpus(
  dir: string,
  options: {
    count: number;
    offset?: number;
    shardSize?: number;
    caption?: (emoji: Emoji, i: number) => string;
    /** The drawing of pair i (instead of the i-th installed emoji); a drawing may repeat, each pair gets a URL of its own. */
    drawing?: (i: number) => Emoji;
  },
): Promise<CorpusPair[]> {
  const chosen = options.drawing
    ? Array.from({ length: options.count }, (_, i) => (options.drawing as (i: number) => Emoji)(i))
    : emojis().slice(options.offset ?? 0, (options.offset ?? 0) + options.count);
  const corpus = openCorpus(dir, { create: true });
  const pairs: CorpusPair[] = [];
  try {
    const insert = corpus.db.prepare(`INSERT INTO pairs (key, url, caption, status) VALUES (?, ?, ?, 'pending')`);
    const writer = await ShardWriter.open(corpus, options.shardSize ?? 10);
    for (let i = 0; i < chosen.length; i++) {
      const emoji = chosen[i] as Emoji;
      const caption = options.caption ? options.caption(emoji, i) : emoji.name;
      const url = options.drawing
        ? `http://127.0.0.1/${i}/${emoji.shortName}.jpg`
        : `http://127.0.0.1/${emoji.shortName}.jpg`;
      const key = createHash('md5')
        .update(caption + url)
        .digest('hex');
      insert.run(key, url, caption);
      const jpg = await emojiJpeg(emoji);
      await writer.add({
        jpg,
        meta: {
          key,
          url,
          page_url: null,
          caption,
          width: 48,
          height: 48,
          original_width: 48,
          original_height: 48,
          sha256: createHash('sha256').update(jpg).digest('hex'),
          bytes: jpg.length,
          http_status: 200,
        },
      });
      pairs.push({ key, caption, emoji });
    }
    await writer.flush();
  } finally {
    corpus.close();
  }
  return pairs;
}

/** A model small enough for the pure-JS backend: 2×2 patches of 8 px, width 16, one block per tower. */
export const MICRO: ModelConfig = {
  imageSize: 16,
  patchSize: 8,
  channels: 3,
  visionWidth: 16,
  visionDepth: 1,
  visionHeads: 2,
  textWidth: 16,
  textDepth: 1,
  textHeads: 2,
  contextLength: 6,
  vocabSize: 30,
  embedDim: 8,
};

/** A model small enough to train a few steps in a second on the cpu backend. */
export const TOY_MODEL = {
  imageSize: 16,
  patchSize: 8,
  visionWidth: 32,
  visionDepth: 1,
  visionHeads: 2,
  textWidth: 32,
  textDepth: 1,
  textHeads: 2,
  contextLength: 8,
  embedDim: 16,
};
