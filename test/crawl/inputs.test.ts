import { once } from 'node:events';
import { existsSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCrawl } from '../../crawl/index.ts';
import { makeImage } from '../fixtures/images.ts';
import { readManifest, tempDir } from '../helpers/corpus.ts';

let work: { path: string; remove: () => Promise<void> };
beforeAll(async () => {
  work = await tempDir('inputs');
});
afterAll(async () => {
  await work.remove();
});

describe('seed inputs', () => {
  it('reads seed pages from a file, skipping blank lines and comments', async () => {
    const server = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html' }).end('<html><body><p>no images</p></body></html>');
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const seeds = join(work.path, 'seeds.txt');
    writeFileSync(seeds, `# seeds\n${origin}/a.html\n\n${origin}/b.html#frag\n`);
    const out = join(work.path, 'seeded');
    const result = await runCrawl({ pages: [seeds], out, allowPrivateNetwork: ['127.0.0.1'], respectRobots: false });
    await new Promise<void>((resolve) => server.close(() => resolve()));
    expect(result.pagesFetched).toBe(2);
    expect(readManifest(out).pages.map((p) => p.url)).toEqual([`${origin}/a.html`, `${origin}/b.html`]);
  });

  it('refuses a seed that is neither a URL nor a file, writing nothing', async () => {
    const out = join(work.path, 'nothing');
    await expect(runCrawl({ pages: ['example.org/page'], out })).rejects.toMatchObject({ code: 'ERR_INPUT_NOT_FOUND' });
    expect(existsSync(out)).toBe(false);
  });

  it('refuses a seed file holding something other than http(s) URLs', async () => {
    const seeds = join(work.path, 'bad-seeds.txt');
    writeFileSync(seeds, 'ftp://example.org/\n');
    const out = join(work.path, 'bad');
    await expect(runCrawl({ pages: [seeds], out })).rejects.toMatchObject({ code: 'ERR_INPUT_MALFORMED' });
    expect(existsSync(out)).toBe(false);
  });
});

describe('URL lists', () => {
  it('fetches an image listed under two captions once and counts its bytes once', async () => {
    const image = await makeImage({ emoji: 'grinning', format: 'jpeg', width: 320, height: 240 });
    let requests = 0;
    const server = createServer((_req, res) => {
      requests++;
      res.writeHead(200, { 'content-type': 'image/jpeg' }).end(image.bytes);
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/shared.jpg`;
    const list = join(work.path, 'shared.jsonl');
    writeFileSync(
      list,
      [JSON.stringify({ url, caption: 'one caption' }), JSON.stringify({ url, caption: 'another' })].join('\n'),
    );
    const out = join(work.path, 'shared');
    const result = await runCrawl({ urls: [list], out, allowPrivateNetwork: ['127.0.0.1'], respectRobots: false });
    await new Promise<void>((resolve) => server.close(() => resolve()));
    expect(requests).toBe(1);
    expect(result.ok).toBe(2);
    expect(readManifest(out).pairs.map((p) => p.bytes)).toEqual([image.bytes.length, image.bytes.length]);
    expect(result.bytes).toBe(image.bytes.length);
  });
});
