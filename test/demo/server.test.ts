import { request } from 'node:http';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { buildDemoSite, serveDemoSite, type BuiltSite, type DemoImage, type DemoServer } from '../../demo/index.ts';
import { lines, pollUntil } from '../helpers/cli.ts';
import { tempDir } from '../helpers/corpus.ts';

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/** Sends `target` as written (no client-side normalisation of `..`), like a hostile client would. */
function raw(server: DemoServer, target: string, method = 'GET'): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: server.port, path: target, method, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

const ROBOTS = 'User-agent: *\nDisallow: /private/\n';

let work: { path: string; remove: () => Promise<void> };
let built: BuiltSite;
let server: DemoServer;
let log: string;

const imageWith = (predicate: (image: DemoImage) => boolean): DemoImage => {
  const found = built.site.images.find(predicate);
  if (found === undefined) throw new Error('the test site lacks such an image');
  return found;
};

beforeAll(async () => {
  work = await tempDir('demo-server');
  built = await buildDemoSite(join(work.path, 'site'), { images: 80, seed: 11 });
  log = join(work.path, 'access.log');
  server = await serveDemoSite(built.dir, { accessLog: log });
});

afterAll(async () => {
  await server?.close();
  await work?.remove();
});

describe('demo site server', () => {
  test('listens on 127.0.0.1 only, on the port it reports', () => {
    expect(server.origin).toBe(`http://127.0.0.1:${server.port}`);
    expect(server.port).toBeGreaterThan(0);
  });

  test('serves the home page and directory indexes as UTF-8 HTML', async () => {
    for (const target of ['/', '/index.html', built.site.pages[1]?.path ?? '']) {
      const answer = await raw(server, target);
      expect([target, answer.status, answer.headers['content-type']]).toEqual([
        target,
        200,
        'text/html; charset=utf-8',
      ]);
      expect(answer.body.toString('utf8')).toMatch(/^<!doctype html>/);
    }
  });

  test('serves robots.txt as plain text, disallowing /private/', async () => {
    const answer = await raw(server, '/robots.txt');
    expect([answer.status, answer.headers['content-type'], answer.body.toString('utf8')]).toEqual([
      200,
      'text/plain; charset=utf-8',
      ROBOTS,
    ]);
  });

  test('serves images with their content type, length and real dimensions', async () => {
    for (const format of ['jpeg', 'png'] as const) {
      const image = imageWith((i) => i.fate === 'ok' && i.format === format);
      const answer = await raw(server, image.path);
      expect([answer.status, answer.headers['content-type']]).toEqual([200, `image/${format}`]);
      expect(Number(answer.headers['content-length'])).toBe(answer.body.length);
      const meta = await sharp(answer.body).metadata();
      expect([meta.format, meta.width, meta.height]).toEqual([format, image.width, image.height]);
      expect(answer.body.equals(await readFile(join(built.dir, image.path)))).toBe(true);
    }
  });

  test('sends X-Robots-Tag on the opted-out image only', async () => {
    const optedOut = imageWith((i) => i.fate === 'opted_out');
    const answer = await raw(server, optedOut.path);
    expect(answer.status).toBe(200);
    expect(answer.headers['x-robots-tag']).toMatch(/^(noai|noai, noimageai|noimageai)$/);
    const plain = await raw(server, imageWith((i) => i.fate === 'ok').path);
    expect(plain.headers['x-robots-tag']).toBeUndefined();
  });

  test('answers 404 for broken links, missing files and the description files', async () => {
    const broken = imageWith((i) => i.fate === 'broken');
    for (const target of [broken.path, '/nothing-here.jpg', '/site.json', '/headers.json', '/port.json']) {
      expect([target, (await raw(server, target)).status]).toEqual([target, 404]);
    }
  });

  test('refuses paths that climb out of the site, however they are spelled', async () => {
    const outside = `/../${join('..', 'access.log')}`;
    for (const target of [
      '/../access.log',
      outside,
      '/%2e%2e/access.log',
      '/c/..%2f..%2faccess.log',
      '/media/%2E%2E/%2E%2E/access.log',
      '/..\\access.log',
    ]) {
      const answer = await raw(server, target);
      expect([target, answer.status]).toEqual([target, 403]);
      expect(answer.body.toString('utf8')).not.toContain('GET');
    }
    for (const target of ['/%zz', '/a%00b.jpg', 'access.log']) {
      expect([target, (await raw(server, target)).status]).toEqual([target, 400]);
    }
  });

  test('answers HEAD without a body and refuses other methods', async () => {
    const head = await raw(server, '/robots.txt', 'HEAD');
    expect([head.status, head.headers['content-length'], head.body.length]).toEqual([200, String(ROBOTS.length), 0]);
    const post = await raw(server, '/robots.txt', 'POST');
    expect([post.status, post.headers['allow']]).toEqual([405, 'GET, HEAD']);
  });

  test('logs every request it answers, with its status', async () => {
    const before = lines(await readFile(log, 'utf8')).length;
    await raw(server, '/robots.txt');
    await raw(server, '/nothing-here.jpg');
    // The log is written as each response finishes, through a stream: wait until it reaches the file.
    const logged = await pollUntil(
      async () => {
        const now = lines(await readFile(log, 'utf8'));
        return now.length >= before + 2 ? now : undefined;
      },
      () => false,
    );
    expect(
      (logged ?? []).slice(before).map((line) => /"(GET \S+) HTTP\/1\.1" (\d+) (\S+)/.exec(line)?.slice(1)),
    ).toEqual([
      ['GET /robots.txt', '200', String(ROBOTS.length)],
      ['GET /nothing-here.jpg', '404', String(Buffer.byteLength('<!doctype html><title>404</title><h1>404</h1>\n'))],
    ]);
  });

  test('refuses a port that is taken, so the caller can choose another', async () => {
    await expect(serveDemoSite(built.dir, { port: server.port })).rejects.toMatchObject({ code: 'EADDRINUSE' });
  });
});
