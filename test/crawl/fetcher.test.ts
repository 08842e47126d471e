import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RetryableError } from '../../corpus/errors.ts';
import { classifyNetworkError, Fetcher, isOptedOut, parseRetryAfter, type FetchPolicy } from '../../crawl/_fetcher.ts';
import { isGuardLifted, isPrivateAddress } from '../../crawl/_net-guard.ts';

describe('X-Robots-Tag opt-outs', () => {
  const ua = 'altforge/0.1 (+https://github.com/altforge/altforge)';
  it.each([
    ['noai', true],
    ['noimageai', true],
    ['noindex', true],
    ['noimageindex', true],
    ['NoAI, nofollow', true],
    ['nofollow, noarchive', false],
    ['googlebot: noindex', false],
    ['altforge: noai', true],
    ['otherbot: noindex, altforge: noimageai', true],
    ['unavailable_after: 25 Jun 2010 15:00:00 PST', false],
  ])('reads %j as opted out: %s', (header, expected) => {
    expect(isOptedOut(header, ua)).toBe(expected);
  });
  it('reads every value of a repeated header', () => {
    expect(isOptedOut(['nofollow', 'noai'], ua)).toBe(true);
    expect(isOptedOut(undefined, ua)).toBe(false);
  });
});

describe('Retry-After', () => {
  it('reads seconds and HTTP dates', () => {
    expect(parseRetryAfter('3')).toBe(3000);
    const now = Date.parse('2026-01-01T00:00:00Z');
    expect(parseRetryAfter('Thu, 01 Jan 2026 00:00:10 GMT', now)).toBe(10_000);
    expect(parseRetryAfter('soon')).toBeUndefined();
    expect(parseRetryAfter(undefined)).toBeUndefined();
  });
});

describe('network failures', () => {
  const failure = (code: string) => Object.assign(new Error(`getaddrinfo ${code} example.invalid`), { code });
  it('records a resolver that gave no answer as dns_timeout, to retry, and a name that does not exist as dns_error', () => {
    const timeout = classifyNetworkError(failure('EAI_AGAIN'), 'http://example.invalid/');
    expect([timeout.status, timeout instanceof RetryableError]).toEqual(['dns_timeout', true]);
    const missing = classifyNetworkError(failure('ENOTFOUND'), 'http://example.invalid/');
    expect([missing.status, missing instanceof RetryableError]).toEqual(['dns_error', false]);
  });
});

describe('SSRF guard', () => {
  it.each([
    ['127.0.0.1', true],
    ['10.1.2.3', true],
    ['172.16.0.1', true],
    ['172.32.0.1', false],
    ['192.168.1.1', true],
    ['169.254.169.254', true],
    ['100.64.0.1', true],
    ['224.0.0.1', true],
    ['0.0.0.0', true],
    ['8.8.8.8', false],
    ['::1', true],
    ['[::1]', true],
    ['fe80::1', true],
    ['fd00::1', true],
    ['ff02::1', true],
    ['::ffff:127.0.0.1', true],
    ['::ffff:8.8.8.8', false],
    ['2001:4860:4860::8888', false],
  ])('classifies %s as private: %s', (address, expected) => {
    expect(isPrivateAddress(address)).toBe(expected);
  });
  it('lifts the guard only for the hosts listed', () => {
    const url = new URL('http://127.0.0.1:8080/x.jpg');
    expect(isGuardLifted(url, ['127.0.0.1:8080'])).toBe(true);
    expect(isGuardLifted(url, ['127.0.0.1'])).toBe(true);
    expect(isGuardLifted(url, ['127.0.0.1:9090'])).toBe(false);
    expect(isGuardLifted(url, false)).toBe(false);
    expect(isGuardLifted(url, true)).toBe(true);
  });
});

describe('Fetcher bodies', () => {
  const policy: FetchPolicy = {
    userAgent: 'TestBot/1.0',
    concurrency: 4,
    perHostConcurrency: 1,
    perHostRate: 0,
    connectTimeoutMs: 5000,
    headersTimeoutMs: 5000,
    bodyTimeoutMs: 5000,
    maxBodyBytes: 300_000,
    maxRedirects: 2,
    retries: 0,
    retryBaseMs: 1,
    retryMaxMs: 10,
    respectRobots: false,
    respectXRobotsTag: true,
    allowPrivateNetwork: ['127.0.0.1'],
  };
  /** Deterministic bytes that differ at every position a copy could misplace. */
  const bytes = (n: number, seed: number) =>
    Buffer.from(Array.from({ length: n }, (_, i) => (i * 31 + seed * 7) % 251));
  const big = bytes(200_000, 1);
  let origin = '';
  const server = createServer((req, res) => {
    if (req.url === '/length') res.writeHead(200, { 'content-type': 'image/jpeg' }).end(big);
    else if (req.url === '/chunked') {
      res.writeHead(200, { 'content-type': 'image/png' });
      for (let at = 0; at < big.length; at += 7_001) res.write(big.subarray(at, at + 7_001));
      res.end();
    } else if (req.url === '/empty') res.writeHead(200, { 'content-length': 0 }).end();
    else if (req.url === '/gone') res.writeHead(404, { 'content-type': 'text/html' }).end(bytes(150_000, 2));
    else if (req.url === '/moved') res.writeHead(301, { location: '/length' }).end(bytes(1_000, 3));
    else res.writeHead(500).end();
  });
  beforeAll(async () => {
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  it('reads a body with a Content-Length, one sent in chunks without it, and an empty one, byte for byte', async () => {
    const fetcher = new Fetcher(policy);
    try {
      const withLength = await fetcher.fetch(`${origin}/length`, 'image');
      const chunked = await fetcher.fetch(`${origin}/chunked`, 'image');
      const empty = await fetcher.fetch(`${origin}/empty`, 'image');
      expect([withLength.status, withLength.contentType, withLength.body.equals(big)]).toEqual([
        200,
        'image/jpeg',
        true,
      ]);
      expect([chunked.status, chunked.contentType, chunked.body.equals(big)]).toEqual([200, 'image/png', true]);
      expect([empty.status, empty.body.length]).toEqual([200, 0]);
    } finally {
      await fetcher.close();
    }
  });

  it('follows a redirect with a body, and gives up a large error body without losing the next fetch', async () => {
    const fetcher = new Fetcher(policy);
    try {
      const moved = await fetcher.fetch(`${origin}/moved`, 'image');
      expect([moved.url, moved.body.equals(big)]).toEqual([`${origin}/length`, true]);
      await expect(fetcher.fetch(`${origin}/gone`, 'image')).rejects.toMatchObject({ status: 'http_404' });
      const after = await fetcher.fetch(`${origin}/length`, 'image');
      expect(after.body.equals(big)).toBe(true);
    } finally {
      await fetcher.close();
    }
  });

  it('refuses a body past the cap, declared or not', async () => {
    const fetcher = new Fetcher({ ...policy, maxBodyBytes: 100_000 });
    try {
      await expect(fetcher.fetch(`${origin}/length`, 'image')).rejects.toMatchObject({ status: 'too_large' });
      await expect(fetcher.fetch(`${origin}/chunked`, 'image')).rejects.toMatchObject({ status: 'too_large' });
    } finally {
      await fetcher.close();
    }
  });
});
