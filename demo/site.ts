/**
 * The demo web site: a static emoji gallery built from the Twemoji PNGs of
 * `emoji-datasource-twitter`, with the alt-texts and the failures a crawler meets on the real web,
 * in known proportions. Every choice is drawn from a seeded generator, so a seed gives the same
 * files, byte for byte, and `site.json` says what each image is and what a crawl should record.
 *
 * Layout of the directory:
 * - `index.html` links one section per emoji category; `c/<category>/index.html`, then
 *   `c/<category>/<n>/index.html`, hold about 40 images each and link every page of the section;
 * - `media/<category>/…` the images (JPEG, a few PNG, 256–512 px), `static/icons/…` the 32 px
 *   icons, `private/media/…` the images that `robots.txt` disallows;
 * - `headers.json` the response headers of particular paths (`X-Robots-Tag: noai`), which
 *   {@link serveDemoSite} sends; `site.json` the description, written last.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import sharp from 'sharp';
import { z } from 'zod';
import { AltforgeError, UsageError } from '../corpus/errors.ts';
import { isProcessAlive } from '../corpus/lock.ts';
import { emojiPool, type Emoji } from './_emoji.ts';
import { createRandom, dealt, pick, quotas, randomInt, shuffle, type Random } from '../corpus/random.ts';
import { parseOptions } from '../corpus/options.ts';

/** Bump when the way the site is generated changes, so a cached site of an older make is rebuilt. */
export const SITE_VERSION = 1;

/** The description of a built site, written last: its presence marks the site complete. */
export const SITE_FILE = 'site.json';
/** Response headers per URL path, read by the server. */
export const HEADERS_FILE = 'headers.json';
/** Files of the site directory that describe the site and are never served. */
export const PRIVATE_FILES: ReadonlySet<string> = new Set([SITE_FILE, HEADERS_FILE, 'port.json']);

/** What an image's alt attribute holds. */
export type AltKind = 'name' | 'name_in_context' | 'boilerplate' | 'filename' | 'wrong_image' | 'empty' | 'missing';
/** Every alt kind, in the order summaries list them. */
export const ALT_KINDS: readonly AltKind[] = [
  'name',
  'name_in_context',
  'boilerplate',
  'filename',
  'wrong_image',
  'empty',
  'missing',
];

/** What happens when the image is fetched. */
export type ImageFate = 'ok' | 'small' | 'broken' | 'disallowed' | 'opted_out';
/** Every fate, in the order summaries list them. */
export const IMAGE_FATES: readonly ImageFate[] = ['ok', 'small', 'broken', 'disallowed', 'opted_out'];

/** How the `<img>` names its image. */
export type ImageMarkup = 'src' | 'srcset' | 'lazy';

/**
 * Fractions of images per alt kind; the true name (`Grinning face`) takes the rest. Counts are
 * exact (largest remainder), and a kind with a fraction above 0 appears at least once.
 */
export interface AltMix {
  /** The true name with words around it: `a grinning face emoji`, `Grinning face icon`. @default 0.15 */
  nameInContext?: number;
  /** Text shared by many images: `image`, `icon`, `photo`, `1920x1080`. @default 0.1 */
  boilerplate?: number;
  /** A file name: the image's own (`1f600.png`) or a camera's (`IMG_2041.jpg`). @default 0.06 */
  filename?: number;
  /** The true name of another emoji: a caption of the wrong image. @default 0.06 */
  wrongImage?: number;
  /** `alt=""`. @default 0.08 */
  empty?: number;
  /** No alt attribute at all. @default 0.05 */
  missing?: number;
}

/** Fractions of images per fate; images that download and are large enough take the rest. */
export interface FateMix {
  /** A 32×32 icon: downloads fine, too small to train on. @default 0.03 */
  small?: number;
  /** A link to an image that is not there (404). @default 0.04 */
  broken?: number;
  /** An image under `/private/`, which robots.txt disallows. @default 0.03 */
  disallowed?: number;
  /** An image served with `X-Robots-Tag: noai`. @default 0.01 */
  optedOut?: number;
}

/** Options of {@link buildDemoSite}. */
export interface DemoSiteOptions {
  /** Images on the site. @default 2000 */
  images?: number;
  /** Seed of every random choice. @default 1 */
  seed?: number;
  /** Images per page. @default 40 */
  pageSize?: number;
  /** Alt-text kinds. @default {} (every fraction at its default) */
  altMix?: AltMix;
  /** Image fates. @default {} (every fraction at its default) */
  fates?: FateMix;
  /** Called after each image is written, with the images done and the total. @default undefined */
  onProgress?: (done: number, total: number) => void;
  /** Aborting it stops the build; the partial site is removed. @default undefined */
  signal?: AbortSignal;
}

/** One `<img>` of the site. */
export interface DemoImage {
  /** 0-based, in generation order. */
  index: number;
  /** Path of the page it is on (`/c/smileys-emotion/`). */
  page: string;
  /** Path of the image a crawler fetches: the largest srcset candidate, else data-src, else src. */
  path: string;
  /** The alt attribute as written, before HTML escaping; null when the tag has none. */
  alt: string | null;
  kind: AltKind;
  fate: ImageFate;
  markup: ImageMarkup;
  /** True name of the emoji shown. */
  subject: string;
  category: string;
  format: 'jpeg' | 'png';
  width: number;
  height: number;
  /**
   * Manifest status a default crawl records for it (`ok`, `http_404`, `robots_disallowed`,
   * `opted_out`); null when it records nothing, the alt being empty or missing.
   */
  expectedStatus: string | null;
}

/** One HTML page of the site. */
export interface DemoPage {
  /** URL path (`/`, `/c/flags/`, `/c/flags/2/`). */
  path: string;
  /** Link distance from `/`. */
  depth: number;
  /** Images on the page. */
  images: number;
}

/** The options a site was built with: equal options give the same site. */
export interface DemoSiteParams {
  version: number;
  images: number;
  seed: number;
  pageSize: number;
  altMix: Required<AltMix>;
  fates: Required<FateMix>;
}

/** The description of a built site (`site.json`). */
export interface DemoSite {
  generator: 'altforge-demo-site';
  params: DemoSiteParams;
  pages: DemoPage[];
  /** Largest link distance from `/`: the crawl depth that reaches every page. */
  maxDepth: number;
  images: DemoImage[];
  byKind: Record<AltKind, number>;
  byFate: Record<ImageFate, number>;
  /** Files and bytes written, site.json excluded. */
  files: number;
  bytes: number;
}

/** What {@link buildDemoSite} did. */
export interface BuiltSite {
  /** Absolute path of the site directory. */
  dir: string;
  site: DemoSite;
  /** True when a complete site for the same options was already there and was kept. */
  reused: boolean;
  durationMs: number;
}

const fraction = z.number().min(0, 'expected a number in [0, 1]').max(1, 'expected a number in [0, 1]');

const altMixSchema = z
  .strictObject({
    nameInContext: fraction.default(0.15),
    boilerplate: fraction.default(0.1),
    filename: fraction.default(0.06),
    wrongImage: fraction.default(0.06),
    empty: fraction.default(0.08),
    missing: fraction.default(0.05),
  })
  .refine((m) => Object.values(m).reduce((a, b) => a + b, 0) <= 1 + 1e-9, 'expected fractions that sum to at most 1');

const fatesSchema = z
  .strictObject({
    small: fraction.default(0.03),
    broken: fraction.default(0.04),
    disallowed: fraction.default(0.03),
    optedOut: fraction.default(0.01),
  })
  .refine((m) => Object.values(m).reduce((a, b) => a + b, 0) <= 1 + 1e-9, 'expected fractions that sum to at most 1');

/** Most images a demo site may have: beyond the ~3,800 distinct emoji pictures repeat. */
export const MAX_IMAGES = 50_000;

const siteSchema = z.strictObject({
  images: z
    .number()
    .int(`expected an integer in [1, ${MAX_IMAGES}]`)
    .min(1, `expected an integer in [1, ${MAX_IMAGES}]`)
    .max(MAX_IMAGES, `expected an integer in [1, ${MAX_IMAGES}]`)
    .default(2000),
  seed: z.number().int('expected a safe integer').min(Number.MIN_SAFE_INTEGER).max(Number.MAX_SAFE_INTEGER).default(1),
  pageSize: z
    .number()
    .int('expected an integer in [1, 1000]')
    .min(1, 'expected an integer in [1, 1000]')
    .max(1000, 'expected an integer in [1, 1000]')
    .default(40),
  altMix: altMixSchema.default(() => altMixSchema.parse({})),
  fates: fatesSchema.default(() => fatesSchema.parse({})),
  onProgress: z
    .custom<(done: number, total: number) => void>((v) => typeof v === 'function', 'expected a function')
    .optional(),
  signal: z.custom<AbortSignal>((v) => v instanceof AbortSignal, 'expected an AbortSignal').optional(),
});

type ResolvedSiteOptions = z.output<typeof siteSchema>;

/** The parameters that decide the site, in a fixed key order (they are compared as JSON). */
function paramsOf(o: ResolvedSiteOptions): DemoSiteParams {
  const a = o.altMix;
  const f = o.fates;
  return {
    version: SITE_VERSION,
    images: o.images,
    seed: o.seed,
    pageSize: o.pageSize,
    altMix: {
      nameInContext: a.nameInContext,
      boilerplate: a.boilerplate,
      filename: a.filename,
      wrongImage: a.wrongImage,
      empty: a.empty,
      missing: a.missing,
    },
    fates: { small: f.small, broken: f.broken, disallowed: f.disallowed, optedOut: f.optedOut },
  };
}

// --- Planning: every decision, no I/O -----------------------------------------------------------

/** A 1×1 GIF, the usual lazy-loading placeholder. */
const PLACEHOLDER = 'data:image/gif;base64,R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7';

const SITE_TITLE = 'Emoji Gallery';

/** Backgrounds of the pictures that are not on white. */
const SOFT_BACKGROUNDS = ['#f4f1ea', '#eef3f8', '#f6eef0', '#eef6ee', '#fdf6e3', '#f0f0f0', '#fff4e0', '#eeeefa'];

/** Alt-texts that many unrelated images share; the first ones are the commonest on the web. */
const BOILERPLATE = [
  'image',
  'image',
  'image',
  'icon',
  'icon',
  'photo',
  'photo',
  '1920x1080',
  'picture',
  'thumbnail',
  'Untitled',
  'logo',
];

interface Background {
  r: number;
  g: number;
  b: number;
  alpha: number;
}

/** How one image file is drawn: the emoji scaled to `emojiSize`, centred on a `width`×`height` canvas. */
interface Picture {
  path: string;
  source: string;
  width: number;
  height: number;
  emojiSize: number;
  background: Background;
  format: 'jpeg' | 'png';
  quality: number;
}

interface Plan {
  site: Omit<DemoSite, 'files' | 'bytes'>;
  /** Text files by URL path. */
  texts: Map<string, string>;
  /** Picture files, grouped per image (a srcset image has two). */
  pictures: Picture[][];
  headers: Record<string, Record<string, string>>;
}

function slugOf(category: string): string {
  return category
    .toLowerCase()
    .replace(/&/g, ' ')
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '');
}

function escapeHtml(text: string): string {
  return text
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');
}

function parseColour(hex: string, alpha = 1): Background {
  return {
    r: parseInt(hex.slice(1, 3), 16),
    g: parseInt(hex.slice(3, 5), 16),
    b: parseInt(hex.slice(5, 7), 16),
    alpha,
  };
}

/** `grinning face` from `Grinning face`; names with capitals inside (`Andorra Flag`) are kept. */
function inSentence(name: string): string {
  return /^[A-Z][^A-Z]*$/.test(name) ? name.charAt(0).toLowerCase() + name.slice(1) : name;
}

function article(word: string): string {
  return /^[aeiou]/i.test(word) ? 'an' : 'a';
}

function contextAlt(random: Random, name: string, onWhite: boolean): string {
  const lower = inSentence(name);
  const templates = [
    () => `${article(lower)} ${lower} emoji`,
    () => `${name} icon`,
    () => `${name} emoji, Twitter style`,
    () => `Illustration of ${article(lower)} ${lower}`,
    () => `${name} — free emoji clip art`,
    () => `Emoji: ${lower}`,
    () => `Cute ${lower} sticker`,
    () => `${name} on ${onWhite ? 'a white' : 'a pastel'} background`,
  ];
  return pick(random, templates)();
}

const pad = (n: number): string => String(n).padStart(2, '0');

function filenameAlt(random: Random, emoji: Emoji, path: string): string {
  const choices = [
    () => emoji.image,
    () => basename(path),
    () => `IMG_${randomInt(random, 1000, 9999)}.jpg`,
    () => `DSC${String(randomInt(random, 1, 99999)).padStart(5, '0')}.JPG`,
    () =>
      `Screenshot ${randomInt(random, 2015, 2024)}-${pad(randomInt(random, 1, 12))}-${pad(randomInt(random, 1, 28))} at ` +
      `${pad(randomInt(random, 0, 23))}.${pad(randomInt(random, 0, 59))}.${pad(randomInt(random, 0, 59))}.png`,
    () => `image (${randomInt(random, 1, 12)}).png`,
  ];
  return pick(random, choices)();
}

function altFor(
  kind: AltKind,
  random: Random,
  emoji: Emoji,
  path: string,
  onWhite: boolean,
  others: readonly Emoji[],
): string | null {
  switch (kind) {
    case 'name':
      return emoji.name;
    case 'name_in_context':
      return contextAlt(random, emoji.name, onWhite);
    case 'boilerplate':
      return pick(random, BOILERPLATE);
    case 'filename':
      return filenameAlt(random, emoji, path);
    case 'wrong_image': {
      let other = pick(random, others);
      while (other.name === emoji.name) other = pick(random, others);
      return other.name;
    }
    case 'empty':
      return '';
    case 'missing':
      return null;
  }
}

const EXPECTED_STATUS: Record<ImageFate, string> = {
  ok: 'ok',
  small: 'ok',
  broken: 'http_404',
  disallowed: 'robots_disallowed',
  opted_out: 'opted_out',
};

function imgTag(image: DemoImage, pictures: Picture[]): string {
  const alt = image.alt === null ? '' : ` alt="${escapeHtml(image.alt)}"`;
  const size = ` width="${image.width}" height="${image.height}"`;
  const small = pictures[1];
  switch (image.markup) {
    case 'srcset':
      if (small !== undefined) {
        return (
          `<img src="${small.path}" srcset="${small.path} ${small.width}w, ${image.path} ${image.width}w" ` +
          `sizes="(max-width: 600px) 100vw, 50vw"${alt}${size}>`
        );
      }
      return `<img src="${image.path}"${alt}${size}>`;
    case 'lazy':
      return `<img src="${PLACEHOLDER}" data-src="${image.path}" class="lazyload"${alt}${size}>`;
    case 'src':
      return `<img src="${image.path}"${alt}${size} loading="lazy">`;
  }
}

function htmlPage(title: string, nav: string, body: string): string {
  return (
    `<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n` +
    `<meta name="viewport" content="width=device-width, initial-scale=1">\n<title>${escapeHtml(title)}</title>\n</head>\n<body>\n` +
    `<header><a href="/" class="home">${SITE_TITLE}</a>\n<nav>${nav}</nav></header>\n<main>\n${body}\n</main>\n` +
    `<footer>Emoji graphics: <a href="https://github.com/twitter/twemoji">Twemoji</a>, ` +
    `<a href="https://creativecommons.org/licenses/by/4.0/">CC-BY 4.0</a>.</footer>\n</body>\n</html>\n`
  );
}

/** Decides every page, image, alt-text and file of the site. */
function planSite(o: ResolvedSiteOptions): Plan {
  const params = paramsOf(o);
  const { base, variants } = emojiPool();
  // The base emoji first, so a small site shows as many different subjects as possible.
  const subjects = [
    ...shuffle(createRandom(o.seed, 'subjects'), [...base]),
    ...shuffle(createRandom(o.seed, 'variants'), [...variants]),
  ];
  const n = o.images;
  const a = o.altMix;
  const kinds = dealt(
    createRandom(o.seed, 'kinds'),
    quotas<AltKind>(
      n,
      {
        name: 0,
        name_in_context: a.nameInContext,
        boilerplate: a.boilerplate,
        filename: a.filename,
        wrong_image: a.wrongImage,
        empty: a.empty,
        missing: a.missing,
      },
      'name',
    ),
  );
  const f = o.fates;
  const fates = dealt(
    createRandom(o.seed, 'fates'),
    quotas<ImageFate>(
      n,
      { ok: 0, small: f.small, broken: f.broken, disallowed: f.disallowed, opted_out: f.optedOut },
      'ok',
    ),
  );
  const markups = dealt(
    createRandom(o.seed, 'markup'),
    quotas<ImageMarkup>(n, { src: 0, srcset: 0.1, lazy: 0.15 }, 'src'),
  );

  const categories = [...new Set(base.map((e) => e.category))];
  const byCategory = new Map<string, { image: DemoImage; pictures: Picture[] }[]>(categories.map((c) => [c, []]));
  const headers: Record<string, Record<string, string>> = {};

  for (let i = 0; i < n; i++) {
    const emoji = subjects[i % subjects.length] as Emoji;
    const random = createRandom(o.seed, `image:${i}`);
    const fate = fates[i] as ImageFate;
    const kind = kinds[i] as AltKind;
    const markup: ImageMarkup = fate === 'small' ? 'src' : (markups[i] as ImageMarkup);
    const slug = slugOf(emoji.category);
    const stem = emoji.image.replace(/\.png$/, '');

    let picture: Omit<Picture, 'path'>;
    if (fate === 'small') {
      picture = {
        source: emoji.file,
        width: 32,
        height: 32,
        emojiSize: 32,
        background: parseColour('#ffffff', 0),
        format: 'png',
        quality: 0,
      };
    } else {
      const width = randomInt(random, 256, 512);
      const height = random() < 0.6 ? width : randomInt(random, 256, 512);
      const format = random() < 0.1 ? 'png' : 'jpeg';
      const transparent = format === 'png' && random() < 0.5;
      const onWhite = random() < 0.5;
      const colour = onWhite ? '#ffffff' : pick(random, SOFT_BACKGROUNDS);
      picture = {
        source: emoji.file,
        width,
        height,
        emojiSize: Math.round(Math.min(width, height) * (0.55 + 0.3 * random())),
        background: parseColour(colour, transparent ? 0 : 1),
        format,
        quality: randomInt(random, 78, 92),
      };
    }
    const ext = picture.format === 'png' ? 'png' : 'jpg';
    const dir = fate === 'small' ? '/static/icons' : `${fate === 'disallowed' ? '/private' : ''}/media/${slug}`;
    const pictures: Picture[] = [];
    if (markup === 'srcset') {
      const half = {
        width: Math.round(picture.width / 2),
        height: Math.round(picture.height / 2),
        emojiSize: Math.round(picture.emojiSize / 2),
      };
      pictures.push({ ...picture, path: `${dir}/${stem}-${i}-${picture.width}w.${ext}` });
      pictures.push({ ...picture, ...half, path: `${dir}/${stem}-${i}-${half.width}w.${ext}` });
    } else {
      pictures.push({ ...picture, path: `${dir}/${stem}-${i}.${ext}` });
    }
    const main = pictures[0] as Picture;
    const onWhite =
      picture.background.alpha === 0 ||
      (picture.background.r === 255 && picture.background.g === 255 && picture.background.b === 255);
    const alt = altFor(kind, createRandom(o.seed, `alt:${i}`), emoji, main.path, onWhite, base);
    if (fate === 'opted_out')
      headers[main.path] = { 'X-Robots-Tag': pick(random, ['noai', 'noai, noimageai', 'noimageai']) };

    const image: DemoImage = {
      index: i,
      page: '',
      path: main.path,
      alt,
      kind,
      fate,
      markup,
      subject: emoji.name,
      category: emoji.category,
      format: picture.format,
      width: picture.width,
      height: picture.height,
      expectedStatus: alt === null || alt === '' ? null : EXPECTED_STATUS[fate],
    };
    // A broken link points at a file that is never written (a srcset's smaller candidate still is).
    byCategory.get(emoji.category)?.push({ image, pictures: fate === 'broken' ? pictures.slice(1) : pictures });
  }

  // Pages: a section per category, every page linking the home page, every section and its own pages.
  const sections = categories
    .map((category) => ({ category, slug: slugOf(category), items: byCategory.get(category) ?? [] }))
    .filter((s) => s.items.length > 0);
  const nav = sections.map((s) => `<a href="/c/${s.slug}/">${escapeHtml(s.category)}</a>`).join('\n');
  const texts = new Map<string, string>();
  const pages: DemoPage[] = [{ path: '/', depth: 0, images: 0 }];
  const links = new Map<string, string[]>([['/', sections.map((s) => `/c/${s.slug}/`)]]);
  const images: DemoImage[] = [];
  const pictures: Picture[][] = [];
  for (const section of sections) {
    const count = Math.ceil(section.items.length / o.pageSize);
    const pagePath = (p: number) => (p === 1 ? `/c/${section.slug}/` : `/c/${section.slug}/${p}/`);
    const pager = Array.from({ length: count }, (_, k) => `<a href="${pagePath(k + 1)}">${k + 1}</a>`).join(' ');
    for (let p = 1; p <= count; p++) {
      const items = section.items.slice((p - 1) * o.pageSize, p * o.pageSize);
      const path = pagePath(p);
      const grid = items
        .map(({ image, pictures: files }) => {
          image.page = path;
          images.push(image);
          pictures.push(files);
          return `<li><figure>${imgTag(image, files)}</figure></li>`;
        })
        .join('\n');
      const title = `${section.category}${p > 1 ? ` (page ${p})` : ''} — ${SITE_TITLE}`;
      const body = `<h1>${escapeHtml(section.category)}</h1>\n<ul class="grid">\n${grid}\n</ul>\n<nav class="pages">${pager}</nav>`;
      texts.set(`${path}index.html`, htmlPage(title, nav, body));
      pages.push({ path, depth: 0, images: items.length });
      links.set(path, [
        '/',
        ...sections.map((s) => `/c/${s.slug}/`),
        ...Array.from({ length: count }, (_, k) => pagePath(k + 1)),
      ]);
    }
  }
  const home =
    `<h1>${SITE_TITLE}</h1>\n<p>${n} emoji in ${sections.length} sections.</p>\n<ul class="sections">\n` +
    sections
      .map((s) => `<li><a href="/c/${s.slug}/">${escapeHtml(s.category)}</a> (${s.items.length})</li>`)
      .join('\n') +
    `\n</ul>`;
  texts.set('/index.html', htmlPage(SITE_TITLE, nav, home));
  texts.set('/robots.txt', 'User-agent: *\nDisallow: /private/\n');

  // Link depth of every page, breadth first from `/`.
  const depth = new Map<string, number>([['/', 0]]);
  const queue = ['/'];
  for (let head = 0; head < queue.length; head++) {
    const from = queue[head] as string;
    for (const to of links.get(from) ?? []) {
      if (!depth.has(to)) {
        depth.set(to, (depth.get(from) ?? 0) + 1);
        queue.push(to);
      }
    }
  }
  for (const page of pages) page.depth = depth.get(page.path) ?? 0;

  const byKind = Object.fromEntries(ALT_KINDS.map((k) => [k, 0])) as Record<AltKind, number>;
  const byFate = Object.fromEntries(IMAGE_FATES.map((k) => [k, 0])) as Record<ImageFate, number>;
  for (const image of images) {
    byKind[image.kind]++;
    byFate[image.fate]++;
  }
  return {
    site: {
      generator: 'altforge-demo-site',
      params,
      pages,
      maxDepth: Math.max(...pages.map((p) => p.depth)),
      images,
      byKind,
      byFate,
    },
    texts,
    pictures,
    headers,
  };
}

// --- Writing ------------------------------------------------------------------------------------

function renderPicture(p: Picture): Promise<Buffer> {
  const left = Math.floor((p.width - p.emojiSize) / 2);
  const top = Math.floor((p.height - p.emojiSize) / 2);
  let pipeline = sharp(p.source).resize(p.emojiSize, p.emojiSize, { kernel: 'lanczos3' });
  if (p.width > p.emojiSize || p.height > p.emojiSize) {
    pipeline = pipeline.extend({
      top,
      bottom: p.height - p.emojiSize - top,
      left,
      right: p.width - p.emojiSize - left,
      background: p.background,
    });
  }
  if (p.format === 'png') return pipeline.png({ compressionLevel: 6 }).toBuffer();
  const { r, g, b } = p.background;
  return pipeline.flatten({ background: { r, g, b } }).jpeg({ quality: p.quality }).toBuffer();
}

/** Reads `site.json` of a directory; null when there is none or it is not a demo site's. */
export function readDemoSite(dir: string): DemoSite | null {
  const file = join(dir, SITE_FILE);
  if (!existsSync(file)) return null;
  try {
    const site = JSON.parse(readFileSync(file, 'utf8')) as DemoSite;
    return site.generator === 'altforge-demo-site' ? site : null;
  } catch {
    return null;
  }
}

/** Removes what killed builds left beside `dir` (`<dir>.tmp-<pid>-<hex>`, `<dir>.old-…`). */
async function removeLeftovers(dir: string): Promise<void> {
  const parent = dirname(dir);
  if (!existsSync(parent)) return;
  const pattern = new RegExp(
    `^${basename(dir).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\.(?:tmp|old)-(\\d+)-[0-9a-f]{8}$`,
  );
  for (const name of readdirSync(parent)) {
    const pid = pattern.exec(name)?.[1];
    if (pid !== undefined && !isProcessAlive(Number(pid)))
      await rm(join(parent, name), { recursive: true, force: true });
  }
}

async function writeFileIn(root: string, urlPath: string, data: string | Buffer, made: Set<string>): Promise<number> {
  const file = join(root, ...urlPath.split('/').filter((s) => s !== ''));
  const parent = dirname(file);
  if (!made.has(parent)) {
    await mkdir(parent, { recursive: true });
    made.add(parent);
  }
  await writeFile(file, data);
  return typeof data === 'string' ? Buffer.byteLength(data) : data.length;
}

/** Images written at once: enough to keep libvips busy on every core without piling up buffers. */
const RENDER_CONCURRENCY = 4;

/**
 * Builds the demo site in `dir`, or keeps the complete site already there when it was built with
 * the same options. The site is written under a temporary name beside `dir` and renamed into
 * place, so `dir` never holds half a site; a site of other options is replaced the same way. A
 * directory that holds something else is refused (`ERR_NOT_A_DEMO_SITE`).
 */
export async function buildDemoSite(dir: string, options: DemoSiteOptions = {}): Promise<BuiltSite> {
  const started = Date.now();
  const o = parseOptions(siteSchema, options, 'site');
  const target = resolve(dir);
  const params = paramsOf(o);
  const existing = readDemoSite(target);
  if (existing !== null && JSON.stringify(existing.params) === JSON.stringify(params)) {
    return { dir: target, site: existing, reused: true, durationMs: Date.now() - started };
  }
  if (existing === null && existsSync(target) && readdirSync(target).length > 0) {
    throw new UsageError(
      'ERR_NOT_A_DEMO_SITE',
      `Directory '${target}' is not empty and holds no demo site: refusing to write into it`,
      {
        context: { path: target },
      },
    );
  }
  await removeLeftovers(target);

  const plan = planSite(o);
  const suffix = `${process.pid}-${randomBytes(4).toString('hex')}`;
  const tmp = `${target}.tmp-${suffix}`;
  const made = new Set<string>();
  let files = 0;
  let bytes = 0;
  const aborted = () =>
    new AltforgeError('ERR_ABORTED', 'Interrupted while building the demo site', { context: { path: target } });
  try {
    await mkdir(tmp, { recursive: true });
    const texts = [...plan.texts, [`/${HEADERS_FILE}`, JSON.stringify(plan.headers, null, 2) + '\n'] as const];
    for (const [path, text] of texts) {
      const written = await writeFileIn(tmp, path, text, made);
      bytes += written;
      files++;
    }

    const total = plan.pictures.length;
    let next = 0;
    let done = 0;
    // Set by the first worker that fails; the others stop at their next image.
    const failed: { error?: unknown } = {};
    const stopped = () => 'error' in failed || o.signal?.aborted === true;
    const worker = async () => {
      while (next < total && !stopped()) {
        const group = plan.pictures[next++] ?? [];
        for (const picture of group) {
          // Awaited before the sum: `bytes += await …` would read `bytes` before other workers add to it.
          const written = await writeFileIn(tmp, picture.path, await renderPicture(picture), made);
          bytes += written;
          files++;
        }
        o.onProgress?.(++done, total);
      }
    };
    // Every worker is let finish before the temporary directory is removed on a failure.
    await Promise.all(
      Array.from({ length: Math.min(RENDER_CONCURRENCY, total) }, () =>
        worker().catch((err: unknown) => {
          if (!('error' in failed)) failed.error = err;
        }),
      ),
    );
    if ('error' in failed) throw failed.error;
    if (o.signal?.aborted) throw aborted();

    const site: DemoSite = { ...plan.site, files, bytes };
    await writeFile(join(tmp, SITE_FILE), JSON.stringify(site) + '\n');
    await mkdir(dirname(target), { recursive: true });
    if (existsSync(target)) {
      // The site there is ours (it has a site.json) but was built with other options.
      const old = `${target}.old-${suffix}`;
      await rename(target, old);
      await rename(tmp, target);
      await rm(old, { recursive: true, force: true });
    } else {
      await rename(tmp, target);
    }
    return { dir: target, site, reused: false, durationMs: Date.now() - started };
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    throw err;
  }
}
