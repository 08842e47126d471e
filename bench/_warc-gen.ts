/**
 * Deterministic generator of a Common-Crawl-like WARC.gz (one gzip member per record) for
 * `npm run bench:warc`. Same seed and size, same bytes; the file is cached under os.tmpdir().
 */
import { createWriteStream, existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { mulberry32 } from '../corpus/random.ts';

/** Bumped whenever the generated content changes, so a stale cache is never reused. */
const GENERATOR_VERSION = 3;

export interface GeneratedWarc {
  path: string;
  /** Size on disk (compressed). */
  bytes: number;
  /** Size of the WARC once gunzipped. */
  uncompressedBytes: number;
  records: number;
  htmlPages: number;
  /** `<img>` tags written, with and without alt. */
  imgTags: number;
}

export interface GenerateOptions {
  /** Stop once this many uncompressed bytes are written. @default 110_000_000 */
  targetBytes?: number;
  /** PRNG seed. @default 42 */
  seed?: number;
  /** Folder of the cache. @default os.tmpdir() */
  dir?: string;
}

class Gen {
  readonly random: () => number;
  readonly words: string[];

  constructor(seed: number) {
    this.random = mulberry32(seed);
    const syllables = [
      'ka',
      'lo',
      'mi',
      'ren',
      'sa',
      'to',
      'vel',
      'dar',
      'en',
      'is',
      'or',
      'pa',
      'qu',
      'ri',
      'st',
      'th',
      'un',
      'ba',
      'ce',
      'dro',
      'fa',
      'gi',
      'ho',
      'la',
      'ne',
      'po',
      'ru',
      'si',
      'te',
      'vo',
    ];
    this.words = [];
    for (let i = 0; i < 3000; i++) {
      let w = '';
      const n = 1 + this.int(4);
      for (let j = 0; j < n; j++) w += this.pick(syllables);
      this.words.push(w);
    }
    // A few very common words, so the text has a Zipf-like head as real prose does.
    this.words.unshift('the', 'of', 'and', 'a', 'to', 'in', 'is', 'for', 'on', 'with', 'as', 'by', 'at', 'from');
  }

  int(n: number): number {
    return Math.floor(this.random() * n);
  }
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)] as T;
  }
  chance(p: number): boolean {
    return this.random() < p;
  }
  word(): string {
    // Skewed towards the head of the vocabulary.
    const r = this.random();
    return this.words[Math.floor(r * r * r * this.words.length)] as string;
  }
  phrase(lo: number, hi: number): string {
    const n = this.range(lo, hi);
    const out: string[] = [];
    for (let i = 0; i < n; i++) out.push(this.word());
    return out.join(' ');
  }
  title(lo: number, hi: number): string {
    const p = this.phrase(lo, hi);
    return p.charAt(0).toUpperCase() + p.slice(1);
  }
  hex(n: number): string {
    let s = '';
    for (let i = 0; i < n; i++) s += '0123456789abcdef'[this.int(16)];
    return s;
  }
  slug(): string {
    return this.phrase(2, 5).replace(/ /g, '-');
  }
}

const HOSTS = Array.from({ length: 400 }, (_, i) => `www.site${i}.example${i % 7 === 0 ? '.org' : '.com'}`);

function imageUrl(g: Gen, host: string, width: number): string {
  const abs = g.chance(0.4);
  const path = `/wp-content/uploads/20${g.range(15, 24)}/${String(g.range(1, 12)).padStart(2, '0')}/${g.slug()}-${width}x${Math.round(width * 0.66)}.${g.pick(['jpg', 'jpg', 'png', 'webp'])}`;
  return abs ? `https://${g.chance(0.5) ? host : 'cdn.' + host.slice(4)}${path}` : path;
}

function alt(g: Gen): string {
  const r = g.random();
  if (r < 0.12) return '';
  const text = g.title(2, 14);
  return r < 0.2 ? text.replace(/ /, ' &amp; ') : r < 0.25 ? `&quot;${text}&quot;` : text;
}

/**
 * One image. Sites use `<picture>` through their theme or not at all: the Web Almanac finds it on
 * under a tenth of pages, so a page either has none or wraps some of its images in one.
 */
function img(g: Gen, host: string, usesPicture: boolean): string {
  const w = g.pick([320, 480, 640, 800, 1024]);
  const a = alt(g);
  const altAttr = g.chance(0.05) ? '' : ` alt="${a}"`;
  if (usesPicture && g.chance(0.4)) {
    return `<picture><source type="image/webp" srcset="${imageUrl(g, host, w)} 1x, ${imageUrl(g, host, w * 2)} 2x"><img src="${imageUrl(g, host, w)}"${altAttr}></picture>`;
  }
  const kind = g.random();
  if (kind < 0.3) {
    return `<img src="${imageUrl(g, host, w)}"${altAttr} width="${w}" height="${Math.round(w * 0.66)}" class="wp-image-${g.int(99999)} size-large" loading="lazy" decoding="async" srcset="${imageUrl(g, host, w)} ${w}w, ${imageUrl(g, host, w * 2)} ${w * 2}w, ${imageUrl(g, host, 300)} 300w" sizes="(max-width: ${w}px) 100vw, ${w}px">`;
  }
  if (kind < 0.45) {
    return `<img src="data:image/gif;base64,R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7" data-src="${imageUrl(g, host, w)}"${altAttr} class="lazyload">`;
  }
  return `<img src="${imageUrl(g, host, w)}"${altAttr} width="${w}" height="${Math.round(w * 0.66)}">`;
}

function paragraph(g: Gen): string {
  const parts: string[] = [];
  const n = g.range(3, 9);
  for (let i = 0; i < n; i++) {
    let s = g.title(6, 22);
    if (g.chance(0.15)) s += ` <a href="/${g.slug()}/">${g.phrase(1, 4)}</a>`;
    if (g.chance(0.1)) s += ` <strong>${g.phrase(1, 3)}</strong>`;
    if (g.chance(0.05)) s += ` &amp; ${g.phrase(1, 3)}`;
    if (g.chance(0.04)) s += ` <a href="https://${g.pick(HOSTS)}/${g.slug()}" rel="nofollow">${g.phrase(1, 3)}</a>`;
    parts.push(s + '.');
  }
  return `<p>${parts.join(' ')}</p>\n`;
}

function script(g: Gen, size: number): string {
  const fns: string[] = [];
  let len = 0;
  while (len < size) {
    const name = `_${g.hex(4)}`;
    const f = `function ${name}(e,t){var n=document.querySelectorAll(".${g.word()}-${g.word()}");for(var r=0;r<n.length;r++){n[r].addEventListener("click",function(o){o.preventDefault();t&&t(o,"${g.word()}")})}return e<${g.int(1000)}?${name}(e+1,t):null}`;
    fns.push(f);
    len += f.length;
  }
  return `<script>${fns.join(';')}</script>\n`;
}

function page(g: Gen, host: string, path: string): string {
  const target = Math.round(Math.exp(Math.log(3_000) + g.random() * (Math.log(50_000) - Math.log(3_000))));
  const title = g.title(3, 9);
  const out: string[] = [];
  out.push(
    `<!DOCTYPE html>\n<html lang="en-US">\n<head>\n<meta charset="UTF-8">\n<meta name="viewport" content="width=device-width, initial-scale=1">\n<title>${title} &#8211; ${host}</title>\n`,
  );
  out.push(
    `<link rel="stylesheet" href="/wp-content/themes/${g.word()}/style.css?ver=${g.hex(8)}" media="all">\n<link rel="canonical" href="https://${host}${path}">\n<meta property="og:title" content="${title}">\n`,
  );
  if (g.chance(0.1)) out.push(`<base href="https://${host}/">\n`);
  out.push(
    `<script>window.dataLayer=window.dataLayer||[];function gtag(){dataLayer.push(arguments)}gtag("js",new Date());gtag("config","G-${g.hex(10).toUpperCase()}");</script>\n`,
  );
  out.push(
    `<style>.${g.word()}{margin:0 auto;max-width:${g.range(900, 1400)}px}.${g.word()} a{color:#${g.hex(6)}}@media (max-width:768px){.${g.word()}{display:none}}</style>\n</head>\n`,
  );
  out.push(
    `<body class="post-template-default single single-post postid-${g.int(99999)}">\n<header class="site-header"><a href="/" class="custom-logo-link" rel="home"><img src="/wp-content/uploads/logo.png" class="custom-logo" alt="${host}"></a>\n<nav class="main-navigation"><ul id="menu-primary" class="menu">`,
  );
  const navItems = g.range(8, 40);
  for (let i = 0; i < navItems; i++)
    out.push(
      `<li class="menu-item menu-item-${g.int(9999)}"><a href="/category/${g.slug()}/">${g.title(1, 3)}</a></li>`,
    );
  out.push(
    `</ul></nav></header>\n<main id="main" class="site-main"><article class="post type-post status-publish"><h1 class="entry-title">${title}</h1>\n<div class="entry-content">\n`,
  );
  const images = g.range(5, 30);
  const usesPicture = g.chance(0.1);
  let written = out.reduce((n, s) => n + s.length, 0);
  const footerReserve = 1_500;
  const scriptBytes = Math.max(0, Math.round((target - written) * g.random() * 0.4));
  let imgLeft = images;
  // Interleave paragraphs and images until the page reaches its size.
  while (written + scriptBytes + footerReserve < target || imgLeft > 0) {
    const s =
      imgLeft > 0 && g.chance(0.35)
        ? `<figure class="wp-block-image">${img(g, host, usesPicture)}<figcaption>${g.title(3, 10)}</figcaption></figure>\n`
        : paragraph(g);
    if (s.startsWith('<figure')) imgLeft--;
    out.push(s);
    written += s.length;
    if (written > target * 1.5 && imgLeft > 0) {
      out.push(img(g, host, usesPicture));
      imgLeft--;
    }
  }
  out.push(`</div></article>\n<aside class="widget-area"><h2>Related</h2><ul>`);
  for (let i = 0; i < g.range(3, 8); i++) out.push(`<li><a href="/${g.slug()}/">${g.title(3, 8)}</a></li>`);
  out.push(
    `</ul></aside></main>\n<footer class="site-footer"><p>&copy; 20${g.range(10, 24)} ${host}. ${g.phrase(5, 12)}</p><a href="/privacy-policy/">Privacy</a> <a href="#top">Top</a></footer>\n`,
  );
  out.push(`<script src="/wp-includes/js/jquery/jquery.min.js?ver=3.7.1" id="jquery-core-js"></script>\n`);
  if (scriptBytes > 0) out.push(script(g, scriptBytes));
  out.push(`</body>\n</html>\n`);
  return out.join('');
}

function isoDate(g: Gen): string {
  const d = new Date(Date.UTC(2024, g.int(12), 1 + g.int(28), g.int(24), g.int(60), g.int(60)));
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

function recordId(g: Gen): string {
  return `<urn:uuid:${g.hex(8)}-${g.hex(4)}-4${g.hex(3)}-a${g.hex(3)}-${g.hex(12)}>`;
}

function warcRecord(headers: [string, string][], block: Buffer): Buffer {
  const head = ['WARC/1.0', ...headers.map(([k, v]) => `${k}: ${v}`), `Content-Length: ${block.length}`, '', ''].join(
    '\r\n',
  );
  return Buffer.concat([Buffer.from(head, 'utf8'), block, Buffer.from('\r\n\r\n')]);
}

/** Returns the cached bench WARC, generating it first when missing. */
export async function ensureBenchWarc(options: GenerateOptions = {}): Promise<GeneratedWarc> {
  const targetBytes = options.targetBytes ?? 110_000_000;
  const seed = options.seed ?? 42;
  const dir = options.dir ?? tmpdir();
  const path = join(dir, `altforge-bench-v${GENERATOR_VERSION}-s${seed}-${Math.round(targetBytes / 1e6)}MB.warc.gz`);
  const metaPath = `${path}.json`;
  if (existsSync(path) && existsSync(metaPath)) {
    return { ...(JSON.parse(readFileSync(metaPath, 'utf8')) as GeneratedWarc), path };
  }

  const g = new Gen(seed);
  const tmp = `${path}.${process.pid}.tmp`;
  const out = createWriteStream(tmp);
  const stats: GeneratedWarc = { path, bytes: 0, uncompressedBytes: 0, records: 0, htmlPages: 0, imgTags: 0 };
  const write = async (record: Buffer): Promise<void> => {
    const gz = gzipSync(record);
    stats.bytes += gz.length;
    stats.uncompressedBytes += record.length;
    stats.records++;
    if (!out.write(gz)) await once(out, 'drain');
  };

  const info = Buffer.from('software: altforge bench generator\r\nformat: WARC File Format 1.0\r\n');
  await write(
    warcRecord(
      [
        ['WARC-Type', 'warcinfo'],
        ['WARC-Date', '2024-01-01T00:00:00Z'],
        ['WARC-Filename', 'bench.warc.gz'],
        ['WARC-Record-ID', recordId(g)],
        ['Content-Type', 'application/warc-fields'],
      ],
      info,
    ),
  );

  while (stats.uncompressedBytes < targetBytes) {
    const host = g.pick(HOSTS);
    const pagePath = `/${g.range(2015, 2024)}/${String(g.range(1, 12)).padStart(2, '0')}/${g.slug()}/`;
    const url = `https://${host}${pagePath}`;
    const date = isoDate(g);
    const requestId = recordId(g);
    const request = Buffer.from(
      `GET ${pagePath} HTTP/1.1\r\nUser-Agent: CCBot/2.0 (https://commoncrawl.org/faq/)\r\nAccept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\nAccept-Language: en-US,en;q=0.5\r\nAccept-Encoding: br,gzip\r\nHost: ${host}\r\nConnection: Keep-Alive\r\n\r\n`,
    );
    await write(
      warcRecord(
        [
          ['WARC-Type', 'request'],
          ['WARC-Date', date],
          ['WARC-Record-ID', requestId],
          ['WARC-Target-URI', url],
          ['Content-Type', 'application/http; msgtype=request'],
        ],
        request,
      ),
    );

    const binary = g.chance(0.04);
    let body: Buffer;
    let contentType: string;
    if (binary) {
      // A small incompressible "image": real WARCs hold some, and they must be skipped cheaply.
      body = Buffer.alloc(g.range(2_000, 8_000));
      for (let i = 0; i < body.length; i++) body[i] = g.int(256);
      contentType = 'image/jpeg';
    } else {
      const html = page(g, host, pagePath);
      stats.htmlPages++;
      stats.imgTags += html.split('<img ').length - 1;
      body = Buffer.from(html, 'utf8');
      contentType = g.chance(0.8) ? 'text/html; charset=UTF-8' : 'text/html';
    }
    const http = Buffer.concat([
      Buffer.from(
        `HTTP/1.1 200 OK\r\nDate: ${new Date(date).toUTCString()}\r\nServer: nginx\r\nContent-Type: ${contentType}\r\nX-Crawler-Content-Length: ${body.length}\r\nContent-Length: ${body.length}\r\nVary: Accept-Encoding\r\nCache-Control: max-age=600\r\n\r\n`,
      ),
      body,
    ]);
    await write(
      warcRecord(
        [
          ['WARC-Type', 'response'],
          ['WARC-Date', date],
          ['WARC-Record-ID', recordId(g)],
          ['WARC-Concurrent-To', requestId],
          ['WARC-Target-URI', url],
          ['WARC-IP-Address', `10.${g.int(256)}.${g.int(256)}.${g.int(256)}`],
          ['Content-Type', 'application/http; msgtype=response'],
        ],
        http,
      ),
    );

    const meta = Buffer.from(`fetchTimeMs: ${g.range(50, 3000)}\r\ncharset-detected: UTF-8\r\n`);
    await write(
      warcRecord(
        [
          ['WARC-Type', 'metadata'],
          ['WARC-Date', date],
          ['WARC-Record-ID', recordId(g)],
          ['WARC-Concurrent-To', requestId],
          ['WARC-Target-URI', url],
          ['Content-Type', 'application/warc-fields'],
        ],
        meta,
      ),
    );
  }

  out.end();
  await once(out, 'finish');
  renameSync(tmp, path);
  const { path: _omit, ...meta } = stats;
  writeFileSync(metaPath, JSON.stringify(meta));
  return stats;
}
