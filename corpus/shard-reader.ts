/**
 * Reading WebDataset shards back: a streaming iterator over the samples of one tar (never the
 * whole shard in memory), used by every stage that needs the stored images.
 */
import { createReadStream } from 'node:fs';
import tar from 'tar-stream';
import type { SampleMeta } from './shards.ts';

/** One sample of a shard: its key, the image bytes, the caption and the stored metadata. */
export interface ShardSample {
  key: string;
  jpg: Buffer;
  txt: string;
  meta: SampleMeta;
}

/**
 * Yields the complete samples of a shard tar in file order. Entries of one sample are grouped by
 * key (`<key>.jpg`, `<key>.txt`, `<key>.json`); a sample missing a part is skipped.
 * With `keys`, only those samples are decoded (the others' bytes are read past, not copied).
 */
export async function* readShard(path: string, keys?: ReadonlySet<string>): AsyncGenerator<ShardSample> {
  const extract = tar.extract();
  createReadStream(path).pipe(extract);
  let key = '';
  let parts: { jpg?: Buffer; txt?: string; meta?: SampleMeta } = {};
  for await (const entry of extract) {
    const name = entry.header.name;
    const dot = name.lastIndexOf('.');
    const entryKey = name.slice(0, dot);
    const ext = name.slice(dot + 1);
    if (entryKey !== key) {
      key = entryKey;
      parts = {};
    }
    if (keys && !keys.has(entryKey)) {
      entry.resume();
      continue;
    }
    const chunks: Buffer[] = [];
    for await (const chunk of entry) chunks.push(chunk as Buffer);
    const data = Buffer.concat(chunks);
    if (ext === 'jpg') parts.jpg = data;
    else if (ext === 'txt') parts.txt = data.toString('utf8');
    else if (ext === 'json') parts.meta = JSON.parse(data.toString('utf8')) as SampleMeta;
    if (parts.jpg && parts.txt !== undefined && parts.meta) {
      yield { key, jpg: parts.jpg, txt: parts.txt, meta: parts.meta };
      parts = {};
    }
  }
}
