import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCrawl } from '../../crawl/index.ts';
import { makeImage } from '../fixtures/images.ts';
import { lines, runCli } from '../helpers/cli.ts';
import { readManifest, tempDir } from '../helpers/corpus.ts';

let server: ReturnType<typeof createServer>;
let host: string;
let work: { path: string; remove: () => Promise<void> };
let list: string;

beforeAll(async () => {
  const image = await makeImage({ emoji: 'grinning', format: 'jpeg', width: 96, height: 72 });
  server = createServer((req, res) => {
    if (req.url === '/robots.txt') res.writeHead(404).end();
    else res.writeHead(200, { 'content-type': 'image/jpeg' }).end(image.bytes);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  work = await tempDir('image-options');
  list = join(work.path, 'list.jsonl');
  writeFileSync(list, JSON.stringify({ url: `http://${host}/a.jpg`, caption: 'a face' }));
});
afterAll(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await work.remove();
});

describe('a resumed crawl with other image options', () => {
  it.each([
    [
      '--image-size',
      '32',
      'altforge: Flag --image-size: this corpus holds images made with `64`, got `32`: give `64` to continue it, or crawl into a new corpus [ERR_INVALID_OPTION]',
    ],
    [
      '--resize-mode',
      'center_crop',
      'altforge: Flag --resize-mode: this corpus holds images made with `keep_ratio`, got `center_crop`: give `keep_ratio` to continue it, or crawl into a new corpus [ERR_INVALID_OPTION]',
    ],
  ])('is refused when %s differs from the images the corpus holds', async (flag, value, message) => {
    const out = join(work.path, `refused${flag}`);
    const base = ['crawl', '--urls', list, '--out', out, '--allow-private-host', host, '--image-size', '64'];
    const first = await runCli(base);
    expect(first.code, first.stderr).toBe(0);
    const refused = await runCli([...base, flag, value]);
    expect(refused.code).toBe(2);
    expect(lines(refused.stderr)).toEqual([message]);
    // 96 x 72 made 64 px on its shorter side, and kept so.
    expect(readManifest(out).pairs.map((p) => [p.status, p.height])).toEqual([['ok', 64]]);
  });

  it('is refused while the only images are in the shard an interrupted run left open', async () => {
    const out = join(work.path, 'open-shard');
    const three = join(work.path, 'three.jsonl');
    writeFileSync(
      three,
      ['a', 'b', 'c'].map((n) => JSON.stringify({ url: `http://${host}/${n}.jpg`, caption: `face ${n}` })).join('\n'),
    );
    const stop = new AbortController();
    const options = { urls: [three], out, allowPrivateNetwork: [host], imageSize: 64, concurrency: 1 };
    const first = await runCrawl({
      ...options,
      signal: stop.signal,
      onProgress: (p) => {
        if (p.phase === 'download' && p.ok >= 1) stop.abort();
      },
    });
    expect(first.interrupted).toBe(true);
    expect(first.openShard).toBeGreaterThan(0);
    expect(readManifest(out).pairs.filter((p) => p.status === 'ok')).toEqual([]);
    await expect(runCrawl({ ...options, imageSize: 32 })).rejects.toMatchObject({ code: 'ERR_INVALID_OPTION' });
    expect((await runCrawl(options)).interrupted).toBe(false);
    expect(readManifest(out).pairs.map((p) => [p.status, p.height])).toEqual([
      ['ok', 64],
      ['ok', 64],
      ['ok', 64],
    ]);
  });

  it('takes any options while the corpus holds no image yet, and the same ones after', async () => {
    const out = join(work.path, 'listed');
    await runCrawl({ urls: [list], out, download: false, imageSize: 128 });
    const options = { urls: [list], out, allowPrivateNetwork: [host], imageSize: 48 };
    expect((await runCrawl(options)).ok).toBe(1);
    expect(readManifest(out).pairs.map((p) => p.height)).toEqual([48]);
    expect((await runCrawl(options)).attempted).toBe(0);
  });
});
