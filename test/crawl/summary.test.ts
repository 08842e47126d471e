import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { summarize } from '../../cli/crawl.ts';
import { runCrawl } from '../../crawl/index.ts';
import { makeImage } from '../fixtures/images.ts';
import { lines, runCli } from '../helpers/cli.ts';
import { readManifest, tempDir } from '../helpers/corpus.ts';

/** A real server on 127.0.0.1: `/` is a page without images that links to a missing one. */
let server: ReturnType<typeof createServer>;
let host: string;
const url = (path: string) => `http://${host}${path}`;
/** A port on 127.0.0.1 that nothing listens on. */
let closedPort: number;
let work: { path: string; remove: () => Promise<void> };
let dirs = 0;
const corpusDir = () => join(work.path, `corpus-${dirs++}`);

beforeAll(async () => {
  server = createServer((req, res) => {
    if (req.url === '/') {
      res
        .writeHead(200, { 'content-type': 'text/html' })
        .end('<html><body><a href="/gone.html">gone</a></body></html>');
    } else res.writeHead(404).end();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  const probe = createServer();
  probe.listen(0, '127.0.0.1');
  await once(probe, 'listening');
  closedPort = (probe.address() as AddressInfo).port;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  work = await tempDir('summary');
});
afterAll(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await work.remove();
});

describe('the crawl summary', () => {
  it('says that a seed page blocked by the SSRF guard failed, and why', async () => {
    const out = corpusDir();
    const run = await runCli(['crawl', url('/'), '--out', out]);
    expect(run.code, run.stderr).toBe(0);
    const printed = lines(run.stderr);
    expect(printed).toHaveLength(2);
    expect(printed[0]).toMatch(
      /^crawl: 0 pages, 1 page failed \(private_address 1\), 0 new pairs, 0 attempted, 0 stored, 0 failed; corpus: 0 ok in 0 shards; 0\.0 MB in \d+\.\d s -> /,
    );
    // The flag that allows this host only, rather than the whole guard lifted.
    expect(printed[1]).toBe(
      `crawl: the SSRF guard refused 1 page at a private address (${host}); to crawl a host of your own network, rerun with --allow-private-host ${host}`,
    );
    const db = new Database(join(out, 'manifest.sqlite'), { readonly: true });
    expect(db.prepare('SELECT error_message FROM pages').pluck().all()).toEqual([
      `Host '${host}' resolves to non-public address 127.0.0.1 (use --allow-private-host ${host} to allow it)`,
    ]);
    db.close();
  });

  it('names the hosts the SSRF guard refused in this run only, pages and pairs counted apart', async () => {
    const out = corpusDir();
    const other = `127.0.0.2:${host.split(':')[1]}`;
    const list = join(work.path, 'private.jsonl');
    writeFileSync(
      list,
      [`http://${host}/a.jpg`, `http://${other}/b.jpg`, `http://${other}/c.jpg`]
        .map((u, i) => JSON.stringify({ url: u, caption: `image ${i}` }))
        .join('\n'),
    );
    const first = await runCrawl({ pages: [url('/')], urls: [list], out, retries: 0 });
    expect(first.privateRefusals).toEqual({ pages: 1, pairs: 3, hosts: [host, other] });
    expect(lines(summarize(first))[1]).toBe(
      `crawl: the SSRF guard refused 1 page and 3 pairs at a private address (${host}, ${other}); to crawl a host of your own network, rerun with --allow-private-host HOST[:PORT]`,
    );
    // Allowed now: nothing is refused in this run (the other host's refusals stay as recorded, not
    // tried again), so there is no second line.
    const second = await runCrawl({ pages: [url('/')], urls: [list], out, retries: 0, allowPrivateNetwork: [host] });
    expect(second.privateRefusals).toEqual({ pages: 0, pairs: 0, hosts: [] });
    expect(lines(summarize(second))).toHaveLength(1);
  });

  it('carries the failed pages and their reasons in --json', async () => {
    const out = corpusDir();
    const run = await runCli(['crawl', url('/'), '--out', out, '--json']);
    expect(run.code, run.stderr).toBe(0);
    const result = JSON.parse(run.stdout) as Record<string, unknown>;
    expect(result).toMatchObject({ pagesFetched: 0, pagesFailed: 1, pageFailures: { private_address: 1 } });
  });

  it('counts missing, unreachable and blocked seed pages by reason', async () => {
    const out = corpusDir();
    const result = await runCrawl({
      pages: [
        url('/missing-1.html'),
        url('/missing-2.html'),
        `http://127.0.0.1:${closedPort}/`,
        `http://127.0.0.2:${closedPort}/`,
      ],
      out,
      retries: 0,
      // With robots.txt obeyed, an unreachable host's pages would be robots_unreachable instead.
      respectRobots: false,
      allowPrivateNetwork: [host, `127.0.0.1:${closedPort}`],
    });
    expect([result.pagesFetched, result.pagesFailed]).toEqual([0, 4]);
    expect(result.pageFailures).toEqual({ http_404: 2, connection_error: 1, private_address: 1 });
    expect(summarize(result)).toMatch(
      /^crawl: 0 pages, 4 pages failed \(http_404 2, connection_error 1, private_address 1\), 0 new pairs, 0 attempted, /,
    );
    expect(
      readManifest(out)
        .pages.map((p) => p.status)
        .toSorted(),
    ).toEqual(['connection_error', 'http_404', 'http_404', 'private_address']);
  });

  it('counts a linked page that failed beside the pages fetched', async () => {
    const out = corpusDir();
    const result = await runCrawl({ pages: [url('/')], out, retries: 0, allowPrivateNetwork: [host] });
    expect([result.pagesFetched, result.pagesFailed, result.pageFailures]).toEqual([1, 1, { http_404: 1 }]);
    expect(summarize(result)).toMatch(/^crawl: 1 pages, 1 page failed \(http_404 1\), 0 new pairs, /);
  });

  it('keeps its wording when no page failed', async () => {
    const out = corpusDir();
    await runCrawl({ pages: [url('/')], out, retries: 0, allowPrivateNetwork: [host] });
    // The rerun fetches nothing: every page is done.
    const again = await runCrawl({ pages: [url('/')], out, retries: 0, allowPrivateNetwork: [host] });
    expect([again.pagesFetched, again.pagesFailed, again.pageFailures]).toEqual([0, 0, {}]);
    expect(summarize(again)).toMatch(/^crawl: 0 pages, 0 new pairs, 0 attempted, 0 stored, 0 failed; corpus: /);
  });
});

describe('the summary of an interrupted crawl', () => {
  it('says that the images of the open shard are kept for the next run, which commits them', async () => {
    const image = await makeImage({ emoji: 'grinning', format: 'jpeg', width: 96, height: 72 });
    const stop = new AbortController();
    let served = 0;
    const images = createServer((_req, res) => {
      // The third image is the last: the crawl is stopped once it is sent.
      if (++served === 3) res.on('finish', () => stop.abort());
      res.writeHead(200, { 'content-type': 'image/jpeg' }).end(image.bytes);
    });
    images.listen(0, '127.0.0.1');
    await once(images, 'listening');
    const imageHost = `127.0.0.1:${(images.address() as AddressInfo).port}`;
    const list = join(work.path, 'interrupted.jsonl');
    writeFileSync(
      list,
      [0, 1, 2, 3, 4]
        .map((i) => JSON.stringify({ url: `http://${imageHost}/${i}.jpg`, caption: `image ${i}` }))
        .join('\n'),
    );
    const out = corpusDir();
    const options = {
      urls: [list],
      out,
      concurrency: 1,
      shardSize: 10,
      respectRobots: false,
      allowPrivateNetwork: [imageHost],
    };
    try {
      const stopped = await runCrawl({ ...options, signal: stop.signal });
      expect([stopped.interrupted, stopped.attempted, stopped.ok, stopped.openShard]).toEqual([true, 3, 3, 3]);
      expect(summarize(stopped)).toMatch(
        /^crawl interrupted: 0 pages, 5 new pairs, 3 attempted, 3 stored \(100\.0% ok\), 0 failed; corpus: 0 ok in 0 shards, 5 pending \(3 of them stored in the open shard, kept for the next run\); /,
      );
      const resumed = await runCrawl(options);
      expect([resumed.attempted, resumed.openShard, resumed.byStatus, resumed.shards]).toEqual([2, 0, { ok: 5 }, 1]);
      expect(served).toBe(5);
    } finally {
      await new Promise<void>((resolve) => images.close(() => resolve()));
    }
  });
});
