import { once } from 'node:events';
import { existsSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { summarize } from '../../cli/crawl.ts';
import { runCrawl } from '../../crawl/index.ts';
import { lines, runCli } from '../helpers/cli.ts';
import { readManifest, readStats, sumStats, tempDir } from '../helpers/corpus.ts';

let jpeg: Buffer;
let work: { path: string; remove: () => Promise<void> };
let dirs = 0;
const corpusDir = () => join(work.path, `corpus-${dirs++}`);

beforeAll(async () => {
  jpeg = await sharp({ create: { width: 64, height: 48, channels: 3, background: { r: 20, g: 120, b: 40 } } })
    .jpeg()
    .toBuffer();
  work = await tempDir('retry-failed');
});
afterAll(async () => {
  await work.remove();
});

/** Starts a server on 127.0.0.1 (on `port` when given); every request is answered by `handle`. */
async function serve(handle: (req: IncomingMessage, res: ServerResponse) => void, port = 0) {
  const server: Server = createServer(handle);
  server.listen(port, '127.0.0.1');
  await once(server, 'listening');
  return {
    host: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** A port on 127.0.0.1 that nothing listens on (until a test starts a server there). */
async function closedPort(): Promise<number> {
  const probe = await serve(() => undefined);
  await probe.close();
  return Number(probe.host.split(':')[1]);
}

/** A site with a page linking nothing, and images; robots.txt missing (no rules). */
const site = (req: IncomingMessage, res: ServerResponse) => {
  if (req.url === '/') {
    res.writeHead(200, { 'content-type': 'text/html' }).end('<img src="/p.jpg" alt="A green square">');
  } else if (req.url?.endsWith('.jpg')) res.writeHead(200, { 'content-type': 'image/jpeg' }).end(jpeg);
  else res.writeHead(404).end();
};

function urlList(name: string, urls: string[]): string {
  const path = join(work.path, `${name}.jsonl`);
  writeFileSync(path, urls.map((url, i) => JSON.stringify({ url, caption: `picture ${i}` })).join('\n'));
  return path;
}

describe('a host that was down', () => {
  it('records its unreachable robots.txt as robots_unreachable, and --retry-failed transient downloads the pairs once it is up', async () => {
    const port = await closedPort();
    const host = `127.0.0.1:${port}`;
    const out = corpusDir();
    const list = urlList('down', [`http://${host}/a.jpg`, `http://${host}/b.jpg`]);
    const flags = ['--urls', list, '--out', out, '--retries', '0', '--allow-private-host', host];

    const down = await runCli(['crawl', ...flags]);
    expect(down.code, down.stderr).toBe(0);
    expect(readManifest(out).pairs.map((r) => [r.status, r.error_message])).toEqual([
      [
        'robots_unreachable',
        `robots.txt at http://${host}/robots.txt unreachable (connection_error): treated as disallow-all`,
      ],
      [
        'robots_unreachable',
        `robots.txt at http://${host}/robots.txt unreachable (connection_error): treated as disallow-all`,
      ],
    ]);
    expect(lines(down.stderr)[0]).toContain(
      '; failures: robots_unreachable 2; 2 transient (rerun with --retry-failed transient to retry them); ',
    );

    const server = await serve(site, port);
    try {
      // Without the flag, a failure stays as recorded.
      const plain = await runCli(['crawl', ...flags]);
      expect(plain.code, plain.stderr).toBe(0);
      expect(lines(plain.stderr)[0]).toMatch(/^crawl: 0 pages, 0 new pairs, 0 attempted, /);

      const retried = await runCli(['crawl', ...flags, '--retry-failed', 'transient']);
      expect(retried.code, retried.stderr).toBe(0);
      expect(lines(retried.stderr)[0]).toMatch(
        /^crawl: 0 pages, 0 new pairs, 2 retried, 2 attempted, 2 stored \(100\.0% ok\), 0 failed; corpus: 2 ok in 2 shards; \d/,
      );
    } finally {
      await server.close();
    }
    expect(readManifest(out).pairs.map((r) => [r.status, r.error_message, r.shard])).toEqual([
      ['ok', null, 1],
      ['ok', null, 1],
    ]);
    // The first shard keeps its record of the failures; the second lists them as superseded.
    const stats = await readStats(out);
    expect(stats.map((s) => [s.shard, s.stats.successes, s.stats.failures, s.stats.superseded])).toEqual([
      [0, 0, { robots_unreachable: 2 }, {}],
      [1, 2, {}, { robots_unreachable: 2 }],
    ]);
    expect(sumStats(stats)).toEqual({ count: 2, successes: 2, failures: {} });
  });

  it('fetches a seed page again with --retry-failed transient', async () => {
    const port = await closedPort();
    const host = `127.0.0.1:${port}`;
    const out = corpusDir();
    const options = { pages: [`http://${host}/`], out, retries: 0, allowPrivateNetwork: [host] };
    const down = await runCrawl(options);
    expect([down.pagesFailed, down.pageFailures, down.transientFailures]).toEqual([1, { robots_unreachable: 1 }, 1]);

    const server = await serve(site, port);
    try {
      const up = await runCrawl({ ...options, retryFailed: ['transient'] });
      expect([up.retried, up.pagesFetched, up.pairsFound, up.ok, up.transientFailures]).toEqual([1, 1, 1, 1, 0]);
    } finally {
      await server.close();
    }
    expect(readManifest(out).pages).toEqual([{ url: `http://${host}/`, depth: 0, status: 'ok' }]);
  });

  it('retries pairs that a crawl before robots_unreachable recorded as robots_disallowed', async () => {
    const port = await closedPort();
    const host = `127.0.0.1:${port}`;
    const out = corpusDir();
    const options = {
      urls: [urlList('legacy', [`http://${host}/a.jpg`])],
      out,
      retries: 0,
      allowPrivateNetwork: [host],
    };
    await runCrawl(options);
    // As earlier crawls recorded it: a refusal, told apart by its message only.
    const db = new Database(join(out, 'manifest.sqlite'));
    db.prepare(`UPDATE pairs SET status = 'robots_disallowed'`).run();
    db.close();
    const server = await serve(site, port);
    try {
      const up = await runCrawl({ ...options, retryFailed: ['robots_unreachable'] });
      expect([up.retried, up.attempted, up.ok, up.byStatus]).toEqual([1, 1, 1, { ok: 1 }]);
    } finally {
      await server.close();
    }
  });
});

describe('--retry-failed', () => {
  it('retries the statuses named, a class of HTTP statuses among them, and no other failure', async () => {
    let failing = true;
    const server = await serve((req, res) => {
      if (req.url === '/busy.jpg' && failing) res.writeHead(503).end();
      else if (req.url === '/big.jpg') res.writeHead(200, { 'content-type': 'image/jpeg' }).end(jpeg);
      else if (req.url === '/gone.jpg' && failing) res.writeHead(404).end();
      else site(req, res);
    });
    const out = corpusDir();
    const list = urlList(
      'classes',
      ['/busy.jpg', '/big.jpg', '/gone.jpg'].map((p) => `http://${server.host}${p}`),
    );
    const options = { urls: [list], out, retries: 0, allowPrivateNetwork: [server.host] };
    try {
      const first = await runCrawl({ ...options, maxBodyBytes: 100 });
      expect(first.byStatus).toEqual({ http_503: 1, too_large: 1, http_404: 1 });
      expect(first.transientFailures).toBe(1);
      failing = false;
      const again = await runCrawl({ ...options, retryFailed: ['http_5xx,too_large'] });
      expect([again.retried, again.attempted, again.ok, again.byStatus]).toEqual([2, 2, 2, { ok: 2, http_404: 1 }]);
      expect(summarize(again)).toContain('; failures: http_404 1; ');
      expect(summarize(again)).not.toContain('transient');
    } finally {
      await server.close();
    }
  });

  it('refuses a status it does not know, in one line naming the flag and the value', async () => {
    const run = await runCli([
      'crawl',
      '--urls',
      urlList('typo', []),
      '--out',
      corpusDir(),
      '--retry-failed',
      'timeuot',
    ]);
    expect(run.code).toBe(2);
    expect(lines(run.stderr)).toEqual([
      'altforge: Flag --retry-failed: expected transient, a failure status (timeout, connection_error, dns_error, dns_timeout, too_many_redirects, decode_error, not_image, not_html, too_large, too_many_pixels, robots_disallowed, robots_unreachable, opted_out, private_address, invalid_url, http_NNN) or http_Nxx, got `timeuot` [ERR_INVALID_OPTION]',
    ]);
  });

  it('refuses a run that would retry nothing: no seed pages and no download', async () => {
    const out = corpusDir();
    const run = await runCli([
      'crawl',
      '--urls',
      urlList('nothing', []),
      '--out',
      out,
      '--no-download',
      '--retry-failed',
      'transient',
    ]);
    expect(run.code).toBe(2);
    expect(lines(run.stderr)).toEqual([
      'altforge: Flag --retry-failed: a run that neither crawls seed pages nor downloads retries nothing: give the seed pages, or drop --no-download [ERR_INVALID_OPTION]',
    ]);
    expect(existsSync(out)).toBe(false);
  });
});
