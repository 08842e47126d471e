import { once } from 'node:events';
import { appendFileSync, existsSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCrawl } from '../../crawl/index.ts';
import { makeImage } from '../fixtures/images.ts';
import { lines, runCli } from '../helpers/cli.ts';
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

describe('URLs met again in later batches', () => {
  it('fetches a URL once however far apart its pairs are, and remembers a failure too', async () => {
    const image = await makeImage({ emoji: 'grinning', format: 'jpeg', width: 96, height: 72 });
    const requests = new Map<string, number>();
    const server = createServer((req, res) => {
      const path = req.url ?? '';
      requests.set(path, (requests.get(path) ?? 0) + 1);
      if (path === '/gone.jpg') res.writeHead(404).end();
      else res.writeHead(200, { 'content-type': 'image/jpeg' }).end(image.bytes);
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    // 700 rows: the download reads pending rows a batch (256 or more) at a time; rows 0 and 650 are in two.
    const shared = new Set([0, 300, 650]);
    const gone = new Set([10, 400]);
    const rows = Array.from({ length: 700 }, (_, i) => ({
      url: shared.has(i) ? `${origin}/logo.jpg` : gone.has(i) ? `${origin}/gone.jpg` : `${origin}/u/${i}.jpg`,
      caption: `caption number ${i}`,
    }));
    const list = join(work.path, 'far-apart.jsonl');
    writeFileSync(list, rows.map((r) => JSON.stringify(r)).join('\n'));
    const out = join(work.path, 'far-apart');
    const result = await runCrawl({ urls: [list], out, allowPrivateNetwork: ['127.0.0.1'], respectRobots: false });
    await new Promise<void>((resolve) => server.close(() => resolve()));
    expect(requests.get('/logo.jpg')).toBe(1);
    expect(requests.get('/gone.jpg')).toBe(1);
    expect([...requests.values()].every((n) => n === 1)).toBe(true);
    expect(requests.size).toBe(700 - 3 - 2 + 2);
    const pairs = readManifest(out).pairs;
    const logo = pairs.filter((p) => p.url.endsWith('/logo.jpg'));
    expect(logo.map((p) => p.status)).toEqual(['ok', 'ok', 'ok']);
    expect(new Set(logo.map((p) => p.sha256)).size).toBe(1);
    expect(pairs.filter((p) => p.url.endsWith('/gone.jpg')).map((p) => p.status)).toEqual(['http_404', 'http_404']);
    expect(result.ok).toBe(698);
    expect(result.bytes).toBe((700 - 3 - 2 + 1) * image.bytes.length);
  });
});

describe('robots metas on crawled pages', () => {
  it('records no pair of a page whose robots meta says noai, marks it opted_out and follows its links', async () => {
    const image = await makeImage({ emoji: 'grinning', format: 'jpeg', width: 320, height: 240 });
    const requested: string[] = [];
    const pages: Record<string, string> = {
      '/out.html': `<html><head><meta name="robots" content="noai"></head><body>
        <img src="/out.jpg" alt="Kept out of datasets"><a href="/in.html">next</a></body></html>`,
      '/in.html': `<html><body><img src="/in.jpg" alt="Free to use"></body></html>`,
    };
    const server = createServer((req, res) => {
      requested.push(req.url ?? '');
      const page = pages[req.url ?? ''];
      if (page !== undefined) res.writeHead(200, { 'content-type': 'text/html' }).end(page);
      else res.writeHead(200, { 'content-type': 'image/jpeg' }).end(image.bytes);
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const crawl = (name: string, respectMetaRobots?: boolean) =>
      runCrawl({
        pages: [`${origin}/out.html`],
        out: join(work.path, name),
        allowPrivateNetwork: ['127.0.0.1'],
        respectRobots: false,
        ...(respectMetaRobots === undefined ? {} : { respectMetaRobots }),
      });
    try {
      await crawl('meta-robots');
      const manifest = readManifest(join(work.path, 'meta-robots'));
      expect(new Map(manifest.pages.map((p) => [p.url, p.status]))).toEqual(
        new Map([
          [`${origin}/out.html`, 'opted_out'],
          [`${origin}/in.html`, 'ok'],
        ]),
      );
      expect(manifest.pairs.map((p) => [p.caption, p.status])).toEqual([['Free to use', 'ok']]);
      expect(requested).not.toContain('/out.jpg');
      await crawl('meta-robots-off', false);
      const off = readManifest(join(work.path, 'meta-robots-off'));
      expect(off.pairs.map((p) => p.caption).sort()).toEqual(['Free to use', 'Kept out of datasets']);
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});

describe('an input that changed since it was read', () => {
  /** A server of one image at every path, counting requests by path. */
  async function imageServer() {
    const image = await makeImage({ emoji: 'grinning', format: 'jpeg', width: 96, height: 72 });
    const requests = new Map<string, number>();
    const server = createServer((req, res) => {
      const path = req.url ?? '';
      requests.set(path, (requests.get(path) ?? 0) + 1);
      if (path === '/robots.txt') res.writeHead(404).end();
      else res.writeHead(200, { 'content-type': 'image/jpeg' }).end(image.bytes);
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
    return {
      host,
      row: (i: number) => `http://${host}/${i}.jpg,picture ${i}\n`,
      requests,
      close: () => new Promise<void>((resolve) => server.close(() => resolve())),
    };
  }

  it('reads a URL list again when rows were appended, recording and downloading only the new ones', async () => {
    const server = await imageServer();
    const list = join(work.path, 'l2.csv');
    writeFileSync(list, 'url,caption\n' + [0, 1, 2, 3, 4].map(server.row).join(''));
    const out = join(work.path, 'appended');
    const crawl = () => runCli(['crawl', '--urls', list, '--out', out, '--allow-private-host', server.host]);
    try {
      const first = await crawl();
      expect(first.code, first.stderr).toBe(0);
      expect(lines(first.stderr)[0]).toMatch(/^crawl: 0 pages, 5 new pairs, 5 attempted, 5 stored /);
      const before = readManifest(out).pairs;

      appendFileSync(list, server.row(5));
      const appended = await crawl();
      expect(appended.code, appended.stderr).toBe(0);
      expect(lines(appended.stderr)[0]).toMatch(
        /^crawl: 0 pages, 1 new pairs \(l2\.csv changed: read again\), 1 attempted, 1 stored \(100\.0% ok\), 0 failed; corpus: 6 ok in 2 shards; /,
      );
      const after = readManifest(out).pairs;
      expect(after.filter((p) => p.url.endsWith('/5.jpg')).map((p) => [p.caption, p.status, p.shard])).toEqual([
        ['picture 5', 'ok', 1],
      ]);
      // The rows read before are as they were, and their images were not fetched again.
      expect(after.filter((p) => !p.url.endsWith('/5.jpg'))).toEqual(before);
      expect([0, 1, 2, 3, 4, 5].map((i) => server.requests.get(`/${i}.jpg`))).toEqual([1, 1, 1, 1, 1, 1]);

      // Unchanged since: skipped, and the summary says nothing of it.
      const same = await crawl();
      expect(lines(same.stderr)[0]).toMatch(/^crawl: 0 pages, 0 new pairs, 0 attempted, /);
    } finally {
      await server.close();
    }
  });

  it('reads a file again when only its modification time changed', async () => {
    const list = join(work.path, 'touched.csv');
    writeFileSync(list, 'url,caption\nhttp://127.0.0.1:9/a.jpg,first\n');
    const out = join(work.path, 'touched');
    await runCrawl({ urls: [list], out, download: false });
    // Same size, another caption: only the time tells.
    writeFileSync(list, 'url,caption\nhttp://127.0.0.1:9/a.jpg,other\n');
    utimesSync(list, new Date(), new Date(Date.now() + 60_000));
    const again = await runCrawl({ urls: [list], out, download: false });
    expect([again.pairsFound, again.reread]).toEqual([1, [list]]);
    expect(
      readManifest(out)
        .pairs.map((p) => p.caption)
        .toSorted(),
    ).toEqual(['first', 'other']);
  });

  it('reads a file recorded without stamps again only if it was modified after its reading ended', async () => {
    const list = join(work.path, 'stampless.csv');
    writeFileSync(list, 'url,caption\nhttp://127.0.0.1:9/a.jpg,first\n');
    const out = join(work.path, 'stampless');
    await runCrawl({ urls: [list], out, download: false });
    const db = new Database(join(out, 'manifest.sqlite'));
    const unstamp = db.prepare(`UPDATE inputs SET size = NULL, mtime_ms = NULL, finished_at = ?`);
    try {
      // As a crawl before the stamps recorded it, after the file's last change: not read again, stamped.
      unstamp.run(new Date(Date.now() + 60_000).toISOString());
      const kept = await runCrawl({ urls: [list], out, download: false });
      expect([kept.pairsFound, kept.reread]).toEqual([0, []]);
      expect(db.prepare('SELECT size FROM inputs').pluck().get()).toBe(statSync(list).size);

      appendFileSync(list, 'http://127.0.0.1:9/b.jpg,second\n');
      unstamp.run(new Date(Date.now() - 60_000).toISOString());
      const changed = await runCrawl({ urls: [list], out, download: false });
      expect([changed.pairsFound, changed.reread]).toEqual([1, [list]]);
    } finally {
      db.close();
    }
  });
});
