import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCrawl } from '../../crawl/index.ts';
import { readManifest, tempDir } from '../helpers/corpus.ts';

let work: { path: string; remove: () => Promise<void> };
beforeAll(async () => {
  work = await tempDir('pages');
});
afterAll(async () => {
  await work.remove();
});

describe('the page crawl', () => {
  it('leaves a page interrupted while waiting to retry pending, neither failed nor lost', async () => {
    const stop = new AbortController();
    let requests = 0;
    // The first answer asks for a retry; the crawl is stopped while it waits for it.
    const server = createServer((_req, res) => {
      if (++requests === 1) {
        res.on('finish', () => stop.abort());
        res.writeHead(503).end();
      } else res.writeHead(200, { 'content-type': 'text/html' }).end('<html><body>back</body></html>');
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
    const out = join(work.path, 'interrupted');
    const options = {
      pages: [`http://${host}/`],
      out,
      respectRobots: false,
      allowPrivateNetwork: [host],
      retryBaseMs: 10_000,
      retryMaxMs: 600_000,
    };

    const stopped = await runCrawl({ ...options, signal: stop.signal });
    expect([stopped.interrupted, stopped.pagesFetched, stopped.pagesFailed]).toEqual([true, 0, 0]);
    expect(readManifest(out).pages).toEqual([{ url: `http://${host}/`, depth: 0, status: 'pending' }]);

    const resumed = await runCrawl(options);
    await new Promise<void>((resolve) => server.close(() => resolve()));
    expect([resumed.interrupted, resumed.pagesFetched, resumed.pagesFailed]).toEqual([false, 1, 0]);
    expect(readManifest(out).pages).toEqual([{ url: `http://${host}/`, depth: 0, status: 'ok' }]);
    expect(requests).toBe(2);
  });
});

describe('a rerun with a larger --max-depth', () => {
  it('fetches the pages linked from those at the earlier limit', async () => {
    const requested: string[] = [];
    const server = createServer((req, res) => {
      requested.push(req.url ?? '');
      const next = { '/': '/p2.html', '/p2.html': '/p3.html' }[req.url ?? ''];
      res.writeHead(200, { 'content-type': 'text/html' }).end(next ? `<a href="${next}">next</a>` : 'end');
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
    const out = join(work.path, 'deeper');
    const options = { pages: [`http://${host}/`], out, respectRobots: false, allowPrivateNetwork: [host] };
    try {
      const shallow = await runCrawl({ ...options, maxDepth: 0 });
      expect(shallow.pagesFetched).toBe(1);
      // Recorded, not fetched: beyond the limit.
      expect(readManifest(out).pages).toEqual([
        { url: `http://${host}/`, depth: 0, status: 'ok' },
        { url: `http://${host}/p2.html`, depth: 1, status: 'pending' },
      ]);
      expect(requested).toEqual(['/']);

      const deeper = await runCrawl({ ...options, maxDepth: 1 });
      expect(deeper.pagesFetched).toBe(1);
      expect(readManifest(out).pages).toEqual([
        { url: `http://${host}/`, depth: 0, status: 'ok' },
        { url: `http://${host}/p2.html`, depth: 1, status: 'ok' },
        { url: `http://${host}/p3.html`, depth: 2, status: 'pending' },
      ]);
      expect(requested).toEqual(['/', '/p2.html']);

      // A page waiting beyond the limit, given as a seed, is a seed: fetched at depth 0.
      const seeded = await runCrawl({ ...options, pages: [`http://${host}/p3.html`], maxDepth: 0 });
      expect(seeded.pagesFetched).toBe(1);
      expect(readManifest(out).pages).toContainEqual({ url: `http://${host}/p3.html`, depth: 0, status: 'ok' });
      expect(requested).toEqual(['/', '/p2.html', '/p3.html']);
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});
