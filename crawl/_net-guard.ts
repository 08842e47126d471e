import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { BlockList, isIP } from 'node:net';
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
    `Host '${hostname}' resolves to non-public address ${address} (use --allow-private-network to allow it)`,
  );
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
  if (isIP(host) !== 0 && isPrivateAddress(host)) throw refused(url.hostname, host);
}

/** Whether the guard is lifted for this URL's host (`true`, or a list of `host` / `host:port`). */
export function isGuardLifted(url: URL, allow: boolean | string[]): boolean {
  if (allow === true) return true;
  if (allow === false) return false;
  return allow.some((entry) => entry === url.host || entry === url.hostname);
}
