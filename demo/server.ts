/**
 * A static file server for the demo site, on 127.0.0.1 only: the directory's files with their
 * content types, the extra headers `headers.json` names per path (`X-Robots-Tag: noai`), 404 for
 * anything missing, and no way out of the directory.
 */
import { createWriteStream, existsSync, readFileSync, type WriteStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { extname, join, resolve, sep } from 'node:path';
import { HEADERS_FILE, PRIVATE_FILES } from './site.ts';

/** Options of {@link serveDemoSite}. */
export interface ServeOptions {
  /** Port to listen on; 0 lets the system pick a free one. @default 0 */
  port?: number;
  /** File to append one line per request to (combined log format); none when undefined. @default undefined */
  accessLog?: string;
}

/** A running server. */
export interface DemoServer {
  /** `http://127.0.0.1:PORT` */
  origin: string;
  port: number;
  /** Stops listening, drops open connections and closes the access log. */
  close(): Promise<void>;
}

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
  '.json': 'application/json',
  '.css': 'text/css; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.png': 'image/png',
  '.gif': 'image/gif',
  '.webp': 'image/webp',
  '.svg': 'image/svg+xml',
  '.ico': 'image/x-icon',
};

/** Content-Type of a file, from its extension. */
export function contentTypeOf(path: string): string {
  return CONTENT_TYPES[extname(path).toLowerCase()] ?? 'application/octet-stream';
}

function readHeaders(root: string): Map<string, Record<string, string>> {
  const file = join(root, HEADERS_FILE);
  if (!existsSync(file)) return new Map();
  return new Map(Object.entries(JSON.parse(readFileSync(file, 'utf8')) as Record<string, Record<string, string>>));
}

type Resolved = { file: string; urlPath: string } | { status: 400 | 403 | 404 };

/**
 * Maps a request target to a file under `root`. A `..` segment, raw or percent-encoded, is refused
 * outright (403), as is a NUL byte or a malformed escape (400); the description files are not served.
 */
function resolveTarget(root: string, target: string): Resolved {
  const raw = target.split('?')[0]?.split('#')[0] ?? '';
  if (!raw.startsWith('/')) return { status: 400 };
  let urlPath: string;
  try {
    urlPath = decodeURIComponent(raw);
  } catch {
    return { status: 400 };
  }
  if (urlPath.includes('\0')) return { status: 400 };
  const segments = urlPath.split(/[/\\]/);
  if (segments.includes('..')) return { status: 403 };
  const file = resolve(root, '.' + urlPath);
  if (file !== root && !file.startsWith(root + sep)) return { status: 403 };
  const parts = segments.filter((s) => s !== '');
  if (parts.length === 1 && PRIVATE_FILES.has(parts[0] as string)) return { status: 404 };
  return { file, urlPath };
}

function sendStatus(res: ServerResponse, status: number, head: boolean): void {
  const body = `<!doctype html><title>${status}</title><h1>${status}</h1>\n`;
  res.statusCode = status;
  res.setHeader('content-type', 'text/html; charset=utf-8');
  res.setHeader('content-length', Buffer.byteLength(body));
  res.end(head ? undefined : body);
}

/**
 * Serves `dir` on 127.0.0.1 (`port` 0 by default: a free port). Resolves once listening; rejects
 * with the listen error (`EADDRINUSE`) when the port is taken.
 */
export async function serveDemoSite(dir: string, options: ServeOptions = {}): Promise<DemoServer> {
  const root = resolve(dir);
  const headers = readHeaders(root);
  const log: WriteStream | undefined =
    options.accessLog === undefined ? undefined : createWriteStream(options.accessLog, { flags: 'a' });
  log?.on('error', () => undefined);

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const head = req.method === 'HEAD';
    if (req.method !== 'GET' && !head) {
      res.setHeader('allow', 'GET, HEAD');
      sendStatus(res, 405, false);
      return;
    }
    const target = resolveTarget(root, req.url ?? '/');
    if ('status' in target) {
      sendStatus(res, target.status, head);
      return;
    }
    let file = target.file;
    let info = await stat(file).catch(() => null);
    if (info?.isDirectory()) {
      file = join(file, 'index.html');
      info = await stat(file).catch(() => null);
    }
    if (info === null || !info.isFile()) {
      sendStatus(res, 404, head);
      return;
    }
    // The site's files are small (pages, images of a few kB): each is sent whole, in one write that
    // ends the response, rather than piped from a read stream.
    const body = head ? null : await readFile(file);
    res.statusCode = 200;
    res.setHeader('content-type', contentTypeOf(file));
    res.setHeader('content-length', body?.length ?? info.size);
    for (const [name, value] of Object.entries(headers.get(target.urlPath) ?? {})) res.setHeader(name, value);
    res.end(body ?? undefined);
  };

  const sockets = new Set<Socket>();
  const server = createServer((req, res) => {
    if (log !== undefined) {
      res.on('finish', () => {
        const size = res.getHeader('content-length') ?? '-';
        const agent = (req.headers['user-agent'] ?? '-').replace(/"/g, '');
        log.write(
          `127.0.0.1 - - [${new Date().toISOString()}] "${req.method} ${req.url} HTTP/${req.httpVersion}" ${res.statusCode} ${String(size)} "-" "${agent}"\n`,
        );
      });
    }
    handle(req, res).catch(() => {
      if (!res.headersSent) sendStatus(res, 500, req.method === 'HEAD');
      else res.destroy();
    });
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolveListen, rejectListen) => {
    server.once('error', rejectListen);
    server.listen(options.port ?? 0, '127.0.0.1', () => {
      server.off('error', rejectListen);
      resolveListen();
    });
  }).catch(async (err: unknown) => {
    await new Promise((done) => (log ? log.end(done) : done(undefined)));
    throw err;
  });
  const port = (server.address() as AddressInfo).port;
  return {
    origin: `http://127.0.0.1:${port}`,
    port,
    close: async () => {
      await new Promise<void>((done) => {
        server.close(() => done());
        for (const socket of sockets) socket.destroy();
      });
      if (log !== undefined) await new Promise((done) => log.end(done));
    },
  };
}
