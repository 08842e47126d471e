import { once } from 'node:events';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCrawl } from '../../crawl/index.ts';
import { emojiFile } from '../fixtures/transforms.ts';
import { readManifest, readShardParquets, readStats, tempDir } from '../helpers/corpus.ts';

/** A server on 127.0.0.1: `/ok/N.png` is a real drawing, anything else a 404. */
let server: ReturnType<typeof createServer>;
let base: string;
let work: { path: string; remove: () => Promise<void> };
const PNG = readFileSync(emojiFile('twitter', '1f600.png'));

beforeAll(async () => {
  server = createServer((req, res) => {
    if (req.url?.startsWith('/ok/')) res.writeHead(200, { 'content-type': 'image/png' }).end(PNG);
    else res.writeHead(404).end();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  work = await tempDir('failure-shards');
});
afterAll(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await work.remove();
});

describe('shards of a crawl that mostly fails', () => {
  it('close after shardSize records of either kind, each listing its own failures, as img2dataset does', async () => {
    const SHARD_SIZE = 5;
    const CONCURRENCY = 2;
    // 40 URLs, one in ten a live image: before, every failure waited in the one open shard until
    // shardSize images came, here all 36 in shard 0.
    const urls = Array.from({ length: 40 }, (_, i) => (i % 10 === 5 ? `${base}/ok/${i}.png` : `${base}/dead/${i}`));
    const list = join(work.path, 'urls.jsonl');
    writeFileSync(list, urls.map((url, i) => JSON.stringify({ url, caption: `caption ${i}` })).join('\n') + '\n');
    const out = join(work.path, 'corpus');
    const result = await runCrawl({
      out,
      urls: [list],
      shardSize: SHARD_SIZE,
      concurrency: CONCURRENCY,
      retries: 0,
      allowPrivateNetwork: ['127.0.0.1'],
    });
    expect(result).toMatchObject({ ok: 4, failed: 36, interrupted: false });
    const stats = await readStats(out);
    expect(stats.map((s) => s.stats.count)).toEqual([5, 5, 5, 5, 5, 5, 5, 5]);
    expect(stats.map((s) => s.shard)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    // Each shard's parquet lists exactly the pairs its stats count, and the manifest agrees.
    const parquets = await readShardParquets(out);
    expect(parquets.map((p) => [p.shard, p.rows.length])).toEqual(stats.map((s) => [s.shard, s.stats.count]));
    const { pairs } = readManifest(out);
    for (const { shard, rows } of parquets) {
      expect(rows.map((r) => r.key).toSorted()).toEqual(
        pairs
          .filter((p) => p.shard === shard)
          .map((p) => p.key)
          .toSorted(),
      );
    }
    expect(pairs.filter((p) => p.status === 'http_404')).toHaveLength(36);
  });
});
