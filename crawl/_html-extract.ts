import { load } from 'cheerio/slim';

/** An `<img>` found on a page, its URL already resolved. */
export interface ExtractedImage {
  url: string;
  alt: string;
  /** False when the tag had no alt attribute or only whitespace in it. */
  hasAlt: boolean;
}

export interface ExtractedPage {
  images: ExtractedImage[];
  /** Absolute http(s) links (`<a href>`), fragment removed, in document order, unique. */
  links: string[];
}

const LAZY_ATTRIBUTES = ['data-src', 'data-lazy-src', 'data-original', 'data-lazy'];
const LAZY_SRCSET_ATTRIBUTES = ['data-srcset', 'data-lazy-srcset'];

/** Collapses runs of whitespace (including newlines and NBSP) into one space and trims. */
export function collapseWhitespace(text: string): string {
  return text.replace(/[\s\u00a0]+/g, ' ').trim();
}

/** Resolves `ref` against `base`; null unless the result is http(s). The fragment is dropped. */
export function resolveHttpUrl(ref: string, base: string): string | null {
  const trimmed = ref.trim();
  if (trimmed === '' || trimmed.startsWith('data:')) return null;
  let url: URL;
  try {
    url = new URL(trimmed, base);
  } catch {
    return null;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return null;
  url.hash = '';
  return url.href;
}

interface SrcsetCandidate {
  url: string;
  /** Width descriptor in px, or density * 1e-6 so any `w` beats any `x` when mixed. */
  size: number;
}

/**
 * Parses a srcset attribute (`a.jpg 640w, b.jpg 1280w` or `a.jpg 1x, b.jpg 2x`). URLs may contain
 * commas, so a candidate ends at whitespace followed by a descriptor and a comma, as browsers parse it.
 */
export function parseSrcset(srcset: string): SrcsetCandidate[] {
  const out: SrcsetCandidate[] = [];
  const re = /\s*([^\s,][^\s]*?)(?:,(?=\s)|,?$|\s+([^,]*)(?:,|$))/g;
  let match: RegExpExecArray | null;
  while ((match = re.exec(srcset)) !== null) {
    if (match[0] === '') {
      re.lastIndex++;
      if (re.lastIndex > srcset.length) break;
      continue;
    }
    const url = match[1];
    if (url === undefined) continue;
    const descriptor = (match[2] ?? '').trim();
    let size = 1e-6;
    const w = /^(\d+(?:\.\d+)?)w$/i.exec(descriptor);
    const x = /^(\d+(?:\.\d+)?)x$/i.exec(descriptor);
    if (w?.[1]) size = Number(w[1]);
    else if (x?.[1]) size = Number(x[1]) * 1e-6;
    out.push({ url: url.replace(/,+$/, ''), size });
  }
  return out;
}

function largest(candidates: SrcsetCandidate[]): string | null {
  let best: SrcsetCandidate | null = null;
  for (const c of candidates) if (best === null || c.size > best.size) best = c;
  return best?.url ?? null;
}

/**
 * Extracts every `<img>` with its alt-text, and the page's links, from an HTML document.
 * The image URL is the largest srcset candidate (of the img and of its `<picture><source>`
 * siblings), else a lazy-loading attribute, else `src`; all resolved against `<base href>`.
 */
export function extractFromHtml(html: string, pageUrl: string): ExtractedPage {
  const $ = load(html);
  const baseHref = $('base[href]').first().attr('href');
  const base = (baseHref !== undefined && resolveHttpUrl(baseHref, pageUrl)) || pageUrl;

  const images: ExtractedImage[] = [];
  $('img').each((_, element) => {
    const img = $(element);
    const candidates: SrcsetCandidate[] = [];
    for (const attr of ['srcset', ...LAZY_SRCSET_ATTRIBUTES]) {
      const value = img.attr(attr);
      if (value) candidates.push(...parseSrcset(value));
    }
    const parent = img.parent();
    if (parent.is('picture')) {
      parent.children('source').each((__, source) => {
        const s = $(source);
        for (const attr of ['srcset', ...LAZY_SRCSET_ATTRIBUTES]) {
          const value = s.attr(attr);
          if (value) candidates.push(...parseSrcset(value));
        }
      });
    }
    let ref = largest(candidates.filter((c) => !c.url.startsWith('data:')));
    if (ref === null) {
      for (const attr of [...LAZY_ATTRIBUTES, 'src']) {
        const value = img.attr(attr);
        if (value && !value.trim().startsWith('data:')) {
          ref = value;
          break;
        }
      }
    }
    if (ref === null) return;
    const url = resolveHttpUrl(ref, base);
    if (url === null) return;
    const rawAlt = img.attr('alt');
    const alt = rawAlt === undefined ? '' : collapseWhitespace(rawAlt);
    images.push({ url, alt, hasAlt: alt !== '' });
  });

  const seen = new Set<string>();
  const links: string[] = [];
  $('a[href]').each((_, element) => {
    const url = resolveHttpUrl($(element).attr('href') ?? '', base);
    if (url !== null && !seen.has(url)) {
      seen.add(url);
      links.push(url);
    }
  });
  return { images, links };
}
