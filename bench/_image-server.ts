/**
 * A loopback image server for the crawl benchmark, run as its own process so that serving does
 * not share the crawler's event loop. Serves `<dir>/<name>` from memory at `/img/<name>` and
 * prints its port on stdout.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';

const dir = process.argv[2];
if (dir === undefined) throw new Error('usage: _image-server.ts DIR');
const files = new Map<string, Buffer>();
for (const name of readdirSync(dir)) if (name.endsWith('.jpg')) files.set(name, readFileSync(join(dir, name)));

const server = createServer((req, res) => {
  const name = req.url?.startsWith('/img/') ? req.url.slice(5) : '';
  const body = files.get(name);
  if (req.url === '/robots.txt') {
    res.writeHead(200, { 'content-type': 'text/plain' }).end('User-agent: *\nAllow: /\n');
  } else if (body === undefined) {
    res.writeHead(404).end();
  } else {
    res.writeHead(200, { 'content-type': 'image/jpeg', 'content-length': body.length }).end(body);
  }
});
server.keepAliveTimeout = 30_000;
server.listen(0, '127.0.0.1', () => {
  const address = server.address();
  process.stdout.write(`${typeof address === 'object' && address ? address.port : 0}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
