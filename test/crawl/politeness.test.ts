import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCrawl } from '../../crawl/index.ts';
import { readManifest, tempDir } from '../helpers/corpus.ts';

/** A tiny server whose handler each test chooses, recording request paths and arrival times. */
async function serve(handler: (req: IncomingMessage, res: ServerResponse) => void) {
  const hits: { path: string; at: number }[] = [];
  const server: Server = createServer((req, res) => {
    hits.push({ path: req.url ?? '', at: performance.now() });
    handler(req, res);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  return {
    origin: `http://127.0.0.1:${port}`,
    hits,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

let jpeg: Buffer;
let work: { path: string; remove: () => Promise<void> };

beforeAll(async () => {
  jpeg = await sharp({ create: { width: 320, height: 240, channels: 3, background: { r: 200, g: 80, b: 40 } } })
    .jpeg()
    .toBuffer();
  work = await tempDir('politeness');
});
afterAll(async () => {
  await work.remove();
});

function urlList(name: string, urls: string[]): string {
  const path = join(work.path, `${name}.jsonl`);
  writeFileSync(path, urls.map((url, i) => JSON.stringify({ url, caption: `image number ${i}` })).join('\n'));
  return path;
}

const local = { allowPrivateNetwork: ['127.0.0.1'], retries: 0 };

describe('politeness', () => {
  it('spaces requests to one host by the per-host rate', async () => {
    const site = await serve((_req, res) => res.writeHead(200, { 'content-type': 'image/jpeg' }).end(jpeg));
    const list = urlList(
      'rate',
      Array.from({ length: 6 }, (_, i) => `${site.origin}/img/${i}.jpg`),
    );
    const result = await runCrawl({ urls: [list], out: join(work.path, 'rate'), perHostRate: 5, ...local });
    await site.close();
    expect(result.ok).toBe(6);
    const times = site.hits.filter((h) => h.path.startsWith('/img/')).map((h) => h.at);
    expect(times).toHaveLength(6);
    // 5 requests/s: the i-th request starts at least i x 200 ms after the first. Counted from the
    // first rather than gap by gap, so that one request the loaded machine delayed on its way to
    // the server does not make the next gap look short; a burst still fails it.
    const first = times[0] as number;
    for (const [i, at] of times.entries()) expect(at - first).toBeGreaterThanOrEqual(i * 200 - 25);
  });

  it('treats a robots.txt that answers 5xx as disallow-all and one that answers 404 as allow-all', async () => {
    const failing = await serve((req, res) => {
      if (req.url === '/robots.txt') res.writeHead(503).end();
      else res.writeHead(200, { 'content-type': 'image/jpeg' }).end(jpeg);
    });
    const missing = await serve((req, res) => {
      if (req.url === '/robots.txt') res.writeHead(404).end();
      else res.writeHead(200, { 'content-type': 'image/jpeg' }).end(jpeg);
    });
    const list = urlList('robots', [`${failing.origin}/a.jpg`, `${missing.origin}/b.jpg`]);
    const out = join(work.path, 'robots');
    await runCrawl({ urls: [list], out, ...local });
    await Promise.all([failing.close(), missing.close()]);
    const rows = readManifest(out).pairs;
    expect(rows.find((r) => r.url.endsWith('/a.jpg'))?.status).toBe('robots_unreachable');
    expect(rows.find((r) => r.url.endsWith('/b.jpg'))?.status).toBe('ok');
    expect(failing.hits.map((h) => h.path)).toEqual(['/robots.txt']);
  });

  it('checks every redirect hop against the SSRF guard', async () => {
    const site = await serve((req, res) => {
      if (req.url === '/robots.txt') res.writeHead(404).end();
      else res.writeHead(302, { location: 'http://127.0.0.3:9/secret.jpg' }).end();
    });
    const list = urlList('redirect', [`${site.origin}/jump.jpg`]);
    const out = join(work.path, 'redirect');
    await runCrawl({ urls: [list], out, ...local });
    await site.close();
    expect(readManifest(out).pairs.map((r) => r.status)).toEqual(['private_address']);
  });

  it('sends the configured User-Agent and obeys robots.txt rules written for it', async () => {
    const agents: string[] = [];
    const site = await serve((req, res) => {
      agents.push(req.headers['user-agent'] ?? '');
      if (req.url === '/robots.txt') {
        res
          .writeHead(200, { 'content-type': 'text/plain' })
          .end('User-agent: testbot\nDisallow: /no/\n\nUser-agent: *\nDisallow:\n');
      } else res.writeHead(200, { 'content-type': 'image/jpeg' }).end(jpeg);
    });
    const list = urlList('ua', [`${site.origin}/no/x.jpg`, `${site.origin}/yes/y.jpg`]);
    const out = join(work.path, 'ua');
    await runCrawl({ urls: [list], out, userAgent: 'TestBot/2.0', ...local });
    await site.close();
    const rows = readManifest(out).pairs;
    expect(rows.find((r) => r.url.includes('/no/'))?.status).toBe('robots_disallowed');
    expect(rows.find((r) => r.url.includes('/yes/'))?.status).toBe('ok');
    expect(new Set(agents)).toEqual(new Set(['TestBot/2.0']));
  });
});
