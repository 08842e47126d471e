import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { BlockList, isIP } from 'node:net';
import type Database from 'better-sqlite3';
import { SkipItemError } from '../corpus/errors.ts';

/** Loopback, private, link-local, multicast and other non-public ranges (IANA special-purpose). */
const blocked = new BlockList();
for (const [net, prefix] of [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['224.0.0.0', 4],
  ['240.0.0.0', 4],
] as const) {
  blocked.addSubnet(net, prefix, 'ipv4');
}
for (const [net, prefix] of [
  ['::', 128],
  ['::1', 128],
  ['fc00::', 7],
  ['fe80::', 10],
  ['ff00::', 8],
] as const) {
  blocked.addSubnet(net, prefix, 'ipv6');
}

/** True when an IP address is not a public unicast address (IPv4-mapped IPv6 included). */
export function isPrivateAddress(address: string): boolean {
  const bare = address.replace(/^\[|\]$/g, '');
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(bare);
  if (mapped?.[1]) return blocked.check(mapped[1], 'ipv4');
  const family = isIP(bare);
  if (family === 4) return blocked.check(bare, 'ipv4');
  if (family === 6) return blocked.check(bare, 'ipv6');
  return true;
}

function refused(hostname: string, address: string): SkipItemError {
  return new SkipItemError(
    'private_address',
    `Host '${hostname}' resolves to non-public address ${address} (use --allow-private-host ${hostname} to allow it)`,
  );
}

/** The host (`host` or `host:port`) a `private_address` message names. */
function refusedHost(message: string | null): string | undefined {
  return message === null ? undefined : /^Host '([^']+)' resolves to non-public address /.exec(message)?.[1];
}

/**
 * A `lookup` for net.connect that resolves like dns.lookup and refuses non-public addresses.
 * Checking the address actually connected to (not a separate pre-resolution) is what defeats DNS
 * rebinding; it runs for every connection, so redirects are covered too.
 */
export function guardedLookup(
  hostname: string,
  options: { all?: boolean; family?: number },
  callback: (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void,
): void {
  dnsLookup(hostname, { ...options, all: true }, (err, addresses) => {
    if (err) return callback(err, options.all ? [] : '');
    const bad = addresses.find((a) => isPrivateAddress(a.address));
    if (bad) return callback(refused(hostname, bad.address) as unknown as NodeJS.ErrnoException, options.all ? [] : '');
    if (options.all) return callback(null, addresses);
    const first = addresses[0];
    if (!first) return callback(Object.assign(new Error(`No address for ${hostname}`), { code: 'ENOTFOUND' }), '');
    callback(null, first.address, first.family);
  });
}

/** Throws `private_address` when a URL's host is an IP literal in a non-public range. */
export function checkLiteralHost(url: URL): void {
  const host = url.hostname.replace(/^\[|\]$/g, '');
  // The port too: it is what --allow-private-host may need, and a rerun tells the hosts apart by it.
  if (isIP(host) !== 0 && isPrivateAddress(host)) throw refused(url.host, host);
}

/** Whether the guard is lifted for this URL's host (`true`, or a list of `host` / `host:port`). */
export function isGuardLifted(url: URL, allow: boolean | string[]): boolean {
  if (allow === true) return true;
  if (allow === false) return false;
  return allow.some((entry) => entry === url.host || entry === url.hostname);
}

/**
 * Whether options allowing `allow` lift the refusal recorded for `url` (status `private_address`,
 * message `message`). The message names the host refused: the item's own, or the one a redirect led
 * to, which then decides alone, else an item whose redirect stays refused would be fetched again
 * on every run. A host resolved by name is named without its port, so an entry `host:port` counts.
 */
export function isRefusalLifted(url: string, message: string | null, allow: boolean | string[]): boolean {
  if (allow === true) return true;
  if (allow === false) return false;
  const own = parseUrl(url);
  if (own === undefined) return false;
  const named = refusedHost(message);
  if (named === undefined || named === own.host || named === own.hostname) return isGuardLifted(own, allow);
  const target = parseUrl(`http://${named}/`);
  if (target === undefined) return false;
  if (target.port !== '') return isGuardLifted(target, allow);
  return allow.some((entry) => entry === target.hostname || entry.startsWith(`${target.hostname}:`));
}

function parseUrl(url: string): URL | undefined {
  try {
    return new URL(url);
  } catch {
    return undefined;
  }
}

/** Pages and pairs the guard refused in a run, and the hosts it refused (at most `MAX_NAMED`). */
export interface PrivateRefusals {
  pages: number;
  pairs: number;
  hosts: string[];
}

const MAX_NAMED = 10;

/**
 * The `private_address` refusals recorded since `since` (an ISO time: the run's start), in
 * `pages` and `pairs`, with the hosts their messages name: what `--allow-private-host` would take.
 */
export function privateRefusalsSince(db: Database.Database, since: string): PrivateRefusals {
  const hosts = new Set<string>();
  const count = (sql: string): number => {
    let n = 0;
    for (const message of db.prepare(sql).pluck().iterate(since) as Iterable<string | null>) {
      n++;
      const host = refusedHost(message);
      if (host !== undefined && hosts.size < MAX_NAMED) hosts.add(host);
    }
    return n;
  };
  const pages = count(`SELECT error_message FROM pages WHERE status = 'private_address' AND fetched_at >= ?`);
  const pairs = count(`SELECT error_message FROM pairs WHERE status = 'private_address' AND attempted_at >= ?`);
  return { pages, pairs, hosts: [...hosts] };
}
