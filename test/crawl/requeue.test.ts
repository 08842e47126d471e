import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCrawl } from '../../crawl/index.ts';
import { isRefusalLifted } from '../../crawl/_net-guard.ts';
import { runCli } from '../helpers/cli.ts';
import { readManifest, readShardParquets, readShards, readStats, sumStats, tempDir } from '../helpers/corpus.ts';

/** A real server on 127.0.0.1: a seed page linking to a second page, one image on each. */
async function startSite() {
  const jpeg = await sharp({ create: { width: 64, height: 48, channels: 3, background: { r: 200, g: 80, b: 40 } } })
    .jpeg()
    .toBuffer();
  const hits = new Map<string, number>();
  const routes: Record<string, (res: ServerResponse) => void> = {
    '/': (res) =>
      res
        .writeHead(200, { 'content-type': 'text/html' })
        .end('<html><body><img src="/a.jpg" alt="A red square"><a href="/next.html">next</a></body></html>'),
    '/next.html': (res) =>
      res
        .writeHead(200, { 'content-type': 'text/html' })
        .end('<html><body><img src="/b.jpg" alt="Another red square"></body></html>'),
    '/a.jpg': (res) => res.writeHead(200, { 'content-type': 'image/jpeg' }).end(jpeg),
    '/b.jpg': (res) => res.writeHead(200, { 'content-type': 'image/jpeg' }).end(jpeg),
    '/jump.jpg': (res) => res.writeHead(302, { location: 'http://127.0.0.3:9/secret.jpg' }).end(),
  };
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const path = req.url ?? '';
    hits.set(path, (hits.get(path) ?? 0) + 1);
    (routes[path] ?? ((r: ServerResponse) => r.writeHead(404).end()))(res);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    host,
    url: (path: string) => `http://${host}${path}`,
    hits: (path: string) => hits.get(path) ?? 0,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

let site: Awaited<ReturnType<typeof startSite>>;
let work: { path: string; remove: () => Promise<void> };
let dirs = 0;
/** A fresh corpus path for each crawl sequence. */
const corpusDir = () => join(work.path, `corpus-${dirs++}`);

beforeAll(async () => {
  site = await startSite();
  work = await tempDir('requeue');
});
afterAll(async () => {
  await site.close();
  await work.remove();
});

function urlList(name: string, urls: string[]): string {
  const path = join(work.path, `${name}.jsonl`);
  writeFileSync(path, urls.map((url, i) => JSON.stringify({ url, caption: `image number ${i}` })).join('\n'));
  return path;
}

describe('a rerun that lifts the SSRF guard', () => {
  it.each([
    ['--allow-private-host', () => ['--allow-private-host', site.host]],
    ['--allow-private-network', () => ['--allow-private-network']],
  ])('crawls a seed page refused as private_address once %s allows it', async (_name, flags) => {
    const out = corpusDir();
    const refused = await runCli(['crawl', site.url('/'), '--out', out]);
    expect(refused.code, refused.stderr).toBe(0);
    expect(readManifest(out).pages).toEqual([{ url: site.url('/'), depth: 0, status: 'private_address' }]);
    expect(readManifest(out).pairs).toEqual([]);

    const allowed = await runCli(['crawl', site.url('/'), '--out', out, ...flags()]);
    expect(allowed.code, allowed.stderr).toBe(0);
    const { pages, pairs } = readManifest(out);
    expect(pages).toEqual([
      { url: site.url('/'), depth: 0, status: 'ok' },
      { url: site.url('/next.html'), depth: 1, status: 'ok' },
    ]);
    expect(pairs.map((r) => [r.url, r.status, r.shard]).toSorted()).toEqual([
      [site.url('/a.jpg'), 'ok', 0],
      [site.url('/b.jpg'), 'ok', 0],
    ]);
    expect(allowed.stderr).toContain('crawl: 2 pages, 2 new pairs, 2 attempted, 2 stored (100.0% ok), 0 failed; ');
  });

  it('downloads URL-list pairs refused as private_address, in a new shard, once the host is allowed', async () => {
    const out = corpusDir();
    const list = urlList('listed', [site.url('/a.jpg'), site.url('/b.jpg')]);
    const refused = await runCrawl({ urls: [list], out, retries: 0 });
    expect([refused.attempted, refused.failed, refused.byStatus]).toEqual([2, 2, { private_address: 2 }]);
    expect(readManifest(out).pairs.map((r) => [r.status, r.shard])).toEqual([
      ['private_address', 0],
      ['private_address', 0],
    ]);

    const allowed = await runCrawl({ urls: [list], out, retries: 0, allowPrivateNetwork: [site.host] });
    expect([allowed.pairsFound, allowed.attempted, allowed.ok, allowed.failed]).toEqual([0, 2, 2, 0]);
    expect(allowed.byStatus).toEqual({ ok: 2 });
    const { pairs } = readManifest(out);
    for (const row of pairs) {
      expect(row, row.url).toMatchObject({ status: 'ok', error_message: null, http_status: 200, shard: 1 });
    }

    // The first shard keeps its record of the refusals (shards are never rewritten); the second
    // holds both images, counts no failure, and lists the refusals it supersedes.
    const shards = await readShards(out);
    expect(shards.map((s) => [s.shard, s.samples.map((x) => x.key).toSorted(), s.problems])).toEqual([
      [0, [], []],
      [1, pairs.map((r) => r.key).toSorted(), []],
    ]);
    const stats = await readStats(out);
    expect(stats.map((s) => [s.shard, s.stats.successes, s.stats.failures, s.stats.superseded])).toEqual([
      [0, 0, { private_address: 2 }, {}],
      [1, 2, {}, { private_address: 2 }],
    ]);
    expect(sumStats(stats)).toEqual({ count: 2, successes: 2, failures: {} });
    const parquets = await readShardParquets(out);
    expect(parquets.map((p) => [p.shard, p.rows.map((r) => r.status)])).toEqual([
      [0, ['private_address', 'private_address']],
      [1, ['ok', 'ok']],
    ]);
  });

  it('retries only the refusals the new options lift, and no other failure', async () => {
    const out = corpusDir();
    // 127.0.0.2: another loopback address, never allowed here, so never connected to.
    const other = `http://127.0.0.2:${site.host.split(':')[1]}/x.jpg`;
    const list = urlList('mixed', [site.url('/a.jpg'), site.url('/missing.jpg'), other]);
    await runCrawl({ urls: [list], out, retries: 0 });
    const refused = readManifest(out).pairs;
    expect(refused.map((r) => r.status)).toEqual(['private_address', 'private_address', 'private_address']);

    const options = { urls: [list], out, retries: 0, allowPrivateNetwork: [site.host] };
    const allowed = await runCrawl(options);
    expect([allowed.attempted, allowed.ok, allowed.failed]).toEqual([2, 1, 1]);
    const statusOf = (url: string) => readManifest(out).pairs.find((r) => r.url === url);
    expect(statusOf(site.url('/a.jpg'))?.status).toBe('ok');
    expect(statusOf(site.url('/missing.jpg'))).toMatchObject({ status: 'http_404', http_status: 404, shard: 1 });
    // Still refused: the row is as the first run left it.
    expect(statusOf(other)).toEqual(refused.find((r) => r.url === other));
    expect(statusOf(other)?.error_message).toContain(
      `Host '127.0.0.2:${site.host.split(':')[1]}' resolves to non-public address 127.0.0.2`,
    );

    const missingHits = site.hits('/missing.jpg');
    const again = await runCrawl(options);
    expect([again.attempted, again.byStatus]).toEqual([0, { ok: 1, http_404: 1, private_address: 1 }]);
    expect(site.hits('/missing.jpg')).toBe(missingHits);
  });

  it('counts each pair once, as it ended, in the stats summed over shards and in the shards table', async () => {
    const out = corpusDir();
    const jump = site.url('/jump.jpg');
    const list = urlList('summed', [site.url('/a.jpg'), site.url('/missing.jpg'), jump]);
    await runCrawl({ urls: [list], out, retries: 0 });
    // The redirect to 127.0.0.3:9 is refused again, in a committed shard: a refusal that the
    // third run's options lift in its turn.
    await runCrawl({ urls: [list], out, retries: 0, allowPrivateNetwork: [site.host] });
    await runCrawl({ urls: [list], out, retries: 0, allowPrivateNetwork: [site.host, '127.0.0.3:9'] });
    const { pairs } = readManifest(out);
    const ended = pairs.find((r) => r.url === jump)?.status ?? '';
    expect(['pending', 'private_address']).not.toContain(ended);

    const stats = await readStats(out);
    expect(stats.map((s) => [s.shard, s.stats.count, s.stats.failures, s.stats.superseded])).toEqual([
      [0, 3, { private_address: 3 }, {}],
      [1, 3, { http_404: 1, private_address: 1 }, { private_address: 3 }],
      [2, 1, { [ended]: 1 }, { private_address: 1 }],
    ]);
    expect(sumStats(stats)).toEqual({ count: 3, successes: 1, failures: { http_404: 1, [ended]: 1 } });
    const db = new Database(join(out, 'manifest.sqlite'), { readonly: true });
    try {
      expect(db.prepare('SELECT SUM(count - superseded) AS pairs, SUM(successes) AS ok FROM shards').get()).toEqual({
        pairs: 3,
        ok: 1,
      });
      expect(db.prepare('SELECT * FROM superseded').all()).toEqual([]);
    } finally {
      db.close();
    }
  });

  it('does not fetch again an image whose redirect the rerun still refuses', async () => {
    const out = corpusDir();
    const options = {
      urls: [urlList('jump', [site.url('/jump.jpg')])],
      out,
      retries: 0,
      allowPrivateNetwork: [site.host],
    };
    await runCrawl(options);
    expect(readManifest(out).pairs.map((r) => [r.status, r.error_message?.slice(0, 23)])).toEqual([
      ['private_address', "Host '127.0.0.3:9' reso"],
    ]);
    const jumps = site.hits('/jump.jpg');
    const again = await runCrawl(options);
    expect([again.attempted, again.byStatus]).toEqual([0, { private_address: 1 }]);
    expect(site.hits('/jump.jpg')).toBe(jumps);
  });

  it('refuses a seed page again on a rerun whose options still do not allow it', async () => {
    const out = corpusDir();
    await runCrawl({ pages: [site.url('/')], out, retries: 0, allowPrivateNetwork: ['127.0.0.1:1'] });
    const seedHits = site.hits('/');
    const again = await runCrawl({ pages: [site.url('/')], out, retries: 0, allowPrivateNetwork: ['localhost'] });
    expect([again.pagesFetched, again.pagesFailed]).toEqual([0, 0]);
    expect(readManifest(out).pages).toEqual([{ url: site.url('/'), depth: 0, status: 'private_address' }]);
    expect(site.hits('/')).toBe(seedHits);
  });
});

describe('isRefusalLifted', () => {
  const message = (host: string, address: string) =>
    `Host '${host}' resolves to non-public address ${address} (use --allow-private-network to allow it)`;

  it('lifts every refusal when the whole guard is lifted, none when it stands', () => {
    expect(isRefusalLifted('http://10.0.0.5/a.jpg', message('10.0.0.5', '10.0.0.5'), true)).toBe(true);
    expect(isRefusalLifted('http://10.0.0.5/a.jpg', message('10.0.0.5', '10.0.0.5'), false)).toBe(false);
  });

  it("lifts a refusal of the item's own host when the list names it, with or without its port", () => {
    const refusal = message('10.0.0.5:8080', '10.0.0.5');
    expect(isRefusalLifted('http://10.0.0.5:8080/a.jpg', refusal, ['10.0.0.5:8080'])).toBe(true);
    expect(isRefusalLifted('http://10.0.0.5:8080/a.jpg', refusal, ['10.0.0.5'])).toBe(true);
    expect(isRefusalLifted('http://10.0.0.5:8080/a.jpg', refusal, ['10.0.0.5:9090'])).toBe(false);
    expect(isRefusalLifted('http://10.0.0.5:8080/a.jpg', refusal, ['10.0.0.50'])).toBe(false);
    // Recorded before messages named the port, or by a name lookup: the URL gives it.
    expect(isRefusalLifted('http://10.0.0.5:8080/a.jpg', message('10.0.0.5', '10.0.0.5'), ['10.0.0.5:8080'])).toBe(
      true,
    );
    expect(isRefusalLifted('http://10.0.0.5:8080/a.jpg', message('10.0.0.5', '10.0.0.5'), ['10.0.0.5:9090'])).toBe(
      false,
    );
  });

  it('decides a refusal met after a redirect by the host the redirect led to', () => {
    const jump = 'http://127.0.0.1:8080/jump.jpg';
    expect(isRefusalLifted(jump, message('127.0.0.3:9', '127.0.0.3'), ['127.0.0.1:8080'])).toBe(false);
    expect(isRefusalLifted(jump, message('127.0.0.3:9', '127.0.0.3'), ['127.0.0.1:8080', '127.0.0.3:9'])).toBe(true);
    expect(isRefusalLifted(jump, message('127.0.0.3:9', '127.0.0.3'), ['127.0.0.3'])).toBe(true);
    expect(isRefusalLifted(jump, message('127.0.0.1:9', '127.0.0.1'), ['127.0.0.1:8080'])).toBe(false);
    const named = message('intranet.example', '192.168.1.2');
    expect(isRefusalLifted('https://cdn.example.org/a.jpg', named, ['intranet.example'])).toBe(true);
    expect(isRefusalLifted('https://cdn.example.org/a.jpg', named, ['intranet.example:8443'])).toBe(true);
    expect(isRefusalLifted('https://cdn.example.org/a.jpg', named, ['intranet.example.org'])).toBe(false);
  });

  it("decides by the item's own host when the message names none", () => {
    expect(isRefusalLifted('http://10.0.0.5/a.jpg', null, ['10.0.0.5'])).toBe(true);
    expect(isRefusalLifted('http://10.0.0.5/a.jpg', 'something else', ['10.0.0.6'])).toBe(false);
  });

  it('lifts nothing for a URL it cannot parse', () => {
    expect(isRefusalLifted('not a url', null, ['10.0.0.5'])).toBe(false);
  });
});
