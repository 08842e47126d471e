import { describe, expect, it } from 'vitest';
import { isOptedOut, parseRetryAfter } from '../../crawl/_fetcher.ts';
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
