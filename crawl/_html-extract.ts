import { Parser } from 'htmlparser2';

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
  /**
   * The directive by which the page opts its images out of AI use (`noai`, `noimageai`,
   * `noimageindex` in a `<meta name="robots">`, or in one named for our robot), or null.
   */
  optOut: string | null;
}

/**
 * The `<meta name="robots">` directives that opt a page's images out of dataset use: DeviantArt's
 * `noai` / `noimageai`, and `noimageindex`. A page's `noindex` is about search results, not its
 * images, so it does not count here (an image's own `X-Robots-Tag: noindex` does, as in img2dataset).
 */
const META_OPT_OUT = new Set(['noai', 'noimageai', 'noimageindex']);

const LAZY_ATTRIBUTES = ['data-src', 'data-lazy-src', 'data-original', 'data-lazy'];
const SRCSET_ATTRIBUTES = ['srcset', 'data-srcset', 'data-lazy-srcset'];
const LAZY_OR_SRC_ATTRIBUTES = [...LAZY_ATTRIBUTES, 'src'];

/** Whitespace that collapseWhitespace would change: other than single inner spaces. */
const UNCOLLAPSED = /[^\S ]| {2}|^ | $/;

/** Collapses runs of whitespace (including newlines and NBSP) into one space and trims. */
export function collapseWhitespace(text: string): string {
  if (!UNCOLLAPSED.test(text)) return text;
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

const ABSOLUTE_HTTP = /^https?:\/\//i;

/**
 * {@link resolveHttpUrl} for a base already known to be a valid URL: the same result, cheaper. An
 * absolute http(s) reference is parsed without the base (a `scheme://` reference does not depend on
 * it), and the fragment setter, which re-serialises the URL, only runs when there is a `#`.
 */
function resolveAgainstValidBase(ref: string, base: string): string | null {
  const trimmed = ref.trim();
  if (trimmed === '' || trimmed.startsWith('data:')) return null;
  let url: URL;
  try {
    url = ABSOLUTE_HTTP.test(trimmed) ? new URL(trimmed) : new URL(trimmed, base);
  } catch {
    return null;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return null;
  if (url.href.includes('#')) url.hash = '';
  return url.href;
}

// URLs the WHATWG parser leaves exactly as written: only characters it never escapes or changes,
// no dot segment (nor `%2e`), no fragment, no port, no user info; for absolute URLs a lower-case
// host of at least two labels whose last starts with a letter (so not an IPv4 address) and no
// `xn--` label (no IDNA to apply). Anything else goes through the URL class.
const PLAIN_PATH = '[A-Za-z0-9\\-._~!$&()*+,;=:@%/]*';
const PLAIN_QUERY = '(?:\\?[A-Za-z0-9\\-._~!$&()*+,;=:@%/?]*)?';
const PLAIN_ABSOLUTE = new RegExp(
  `^https?://[a-z0-9][a-z0-9-]*(?:\\.[a-z0-9-]+)*\\.[a-z][a-z0-9-]*/${PLAIN_PATH}${PLAIN_QUERY}$`,
);
const PLAIN_ROOTED = new RegExp(`^/(?!/)${PLAIN_PATH}${PLAIN_QUERY}$`);
const PLAIN_RELATIVE = new RegExp(
  `^[A-Za-z0-9\\-_~!$&()*+,;=@%][A-Za-z0-9\\-._~!$&()*+,;=@%]*(?:/${PLAIN_PATH})?${PLAIN_QUERY}$`,
);
const NOT_PLAIN = /\/\.|%2e|xn--/i;

/**
 * A resolver for one page: {@link resolveHttpUrl}'s result for every reference, computed by string
 * concatenation for the plain references that make up most of a page, where parsing a URL (about
 * 2 µs each) would dominate. `base` must be a valid URL.
 */
function resolverFor(base: string): (ref: string) => string | null {
  const url = new URL(base);
  const plainBase =
    (url.protocol === 'http:' || url.protocol === 'https:') && url.username === '' && url.password === '';
  const origin = `${url.protocol}//${url.host}`;
  const directory = origin + url.pathname.slice(0, url.pathname.lastIndexOf('/') + 1);
  return (ref) => {
    const trimmed = ref.trim();
    if (!NOT_PLAIN.test(trimmed)) {
      if (PLAIN_ABSOLUTE.test(trimmed)) return trimmed;
      if (plainBase) {
        if (PLAIN_ROOTED.test(trimmed)) return origin + trimmed;
        if (PLAIN_RELATIVE.test(trimmed)) return directory + trimmed;
      }
    }
    return resolveAgainstValidBase(trimmed, base);
  };
}

interface SrcsetCandidate {
  url: string;
  /** Width descriptor in px, or density * 1e-6 so any `w` beats any `x` when mixed. */
  size: number;
}

const WIDTH_DESCRIPTOR = /^(\d+(?:\.\d+)?)w$/i;
const DENSITY_DESCRIPTOR = /^(\d+(?:\.\d+)?)x$/i;

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
    const w = WIDTH_DESCRIPTOR.exec(descriptor);
    if (w?.[1]) size = Number(w[1]);
    else {
      const x = DENSITY_DESCRIPTOR.exec(descriptor);
      if (x?.[1]) size = Number(x[1]) * 1e-6;
    }
    out.push({ url: url.endsWith(',') ? url.replace(/,+$/, '') : url, size });
  }
  return out;
}

function largest(candidates: SrcsetCandidate[]): string | null {
  let best: SrcsetCandidate | null = null;
  for (const c of candidates) if (best === null || c.size > best.size) best = c;
  return best?.url ?? null;
}

/** What {@link extractFromHtml} collects. */
export interface ExtractOptions {
  /** Collect the page's links too; a WARC reader needs only the images. @default true */
  links?: boolean;
  /** Our robot's name (the user agent's product, lower case): its `<meta name>` counts as `robots`. */
  robot?: string;
}

/**
 * Extracts every `<img>` with its alt-text, and the page's links, from an HTML document.
 * The image URL is the largest srcset candidate (of the img and of its `<picture><source>`
 * siblings), else a lazy-loading attribute, else `src`; all resolved against `<base href>`.
 *
 * The document is not built into a DOM: one pass jumps from `<` to `<` and reads the attributes of
 * the few tags that matter. It reproduces the tokenizer and tree rules of htmlparser2 (the parser
 * behind cheerio) wherever they decide what is found: comments, CDATA, raw-text elements (`script`,
 * `style`, `title`, `textarea`, `xmp`), attribute quoting and entities, the first of duplicate
 * attributes, and which element is an `<img>`'s parent. The tests compare it with a cheerio DOM.
 */
export function extractFromHtml(html: string, pageUrl: string, options: ExtractOptions = {}): ExtractedPage {
  // Most pages have no <picture>: they are scanned without keeping the tree, and only a page where
  // one turns up is scanned again with it.
  let scan = new HtmlScan(html, options.links ?? true, false);
  if (!scan.run()) {
    scan = new HtmlScan(html, options.links ?? true, true);
    scan.run();
  }
  const base = (scan.baseHref !== undefined && resolveHttpUrl(scan.baseHref, pageUrl)) || pageUrl;
  const resolve =
    base !== pageUrl || URL.canParse(base) ? resolverFor(base) : (ref: string) => resolveHttpUrl(ref, base);

  const images: ExtractedImage[] = [];
  for (const img of scan.images) {
    let candidates: SrcsetCandidate[] | null = null;
    for (const attr of SRCSET_ATTRIBUTES) {
      const value = img.attrs.get(attr);
      if (value) (candidates ??= []).push(...parseSrcset(value));
    }
    for (const source of img.picture?.sources ?? []) {
      for (const attr of SRCSET_ATTRIBUTES) {
        const value = source.get(attr);
        if (value) (candidates ??= []).push(...parseSrcset(value));
      }
    }
    let ref = candidates === null ? null : largest(candidates.filter((c) => !c.url.startsWith('data:')));
    if (ref === null) {
      for (const attr of LAZY_OR_SRC_ATTRIBUTES) {
        const value = img.attrs.get(attr);
        if (value && !value.trim().startsWith('data:')) {
          ref = value;
          break;
        }
      }
    }
    if (ref === null) continue;
    const url = resolve(ref);
    if (url === null) continue;
    const rawAlt = img.attrs.get('alt');
    const alt = rawAlt === undefined ? '' : collapseWhitespace(rawAlt);
    images.push({ url, alt, hasAlt: alt !== '' });
  }

  const seen = new Set<string>();
  const links: string[] = [];
  for (const href of scan.hrefs) {
    const url = resolve(href);
    if (url !== null && !seen.has(url)) {
      seen.add(url);
      links.push(url);
    }
  }
  return { images, links, optOut: metaOptOut(scan.metas, options.robot) };
}

/**
 * The first AI opt-out directive of a page's `<meta>` tags, given as their `name` and `content`
 * (see {@link ExtractedPage.optOut}), or null.
 */
export function metaOptOut(
  metas: ReadonlyArray<ReadonlyMap<string, string>>,
  robot: string | undefined,
): string | null {
  for (const meta of metas) {
    const name = meta.get('name')?.trim().toLowerCase();
    if (name !== 'robots' && (robot === undefined || name !== robot)) continue;
    for (const part of (meta.get('content') ?? '').split(',')) {
      const directive = part.trim().toLowerCase();
      if (META_OPT_OUT.has(directive)) return directive;
    }
  }
  return null;
}

// --- The scanner ---------------------------------------------------------------------------------

const GT = 0x3e;
const SLASH = 0x2f;
const BANG = 0x21;
const QUESTION = 0x3f;
const DASH = 0x2d;
const EQ = 0x3d;
const DQ = 0x22;
const SQ = 0x27;
const LBRACKET = 0x5b;

function isWhitespace(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x09 || c === 0x0c || c === 0x0d;
}

function isAsciiAlpha(c: number): boolean {
  const lower = c | 0x20;
  return lower >= 0x61 && lower <= 0x7a;
}

/** 1 at the char code (lower-cased) of the first letter of a wanted or raw-text tag. */
const INTERESTING_FIRST_LETTER = new Uint8Array(128);
for (const letter of 'abimstx') INTERESTING_FIRST_LETTER[letter.charCodeAt(0)] = 1;

/** Tags whose content htmlparser2 reads as raw text up to the matching end tag. */
const RAW_TEXT_TAGS = new Set(['script', 'style', 'title', 'textarea', 'xmp']);
/** Tags whose attributes are read; every other tag is only stepped over. */
const WANTED_ATTRIBUTES = new Map<string, ReadonlySet<string>>([
  ['img', new Set([...SRCSET_ATTRIBUTES, ...LAZY_ATTRIBUTES, 'src', 'alt'])],
  ['source', new Set(SRCSET_ATTRIBUTES)],
  ['a', new Set(['href'])],
  ['base', new Set(['href'])],
  ['meta', new Set(['name', 'content'])],
]);

// htmlparser2's tree rules (Parser.ts), needed only to know an <img>'s parent.
const P_TAG = new Set(['p']);
const FORM_TAGS = new Set(['input', 'option', 'optgroup', 'select', 'button', 'datalist', 'textarea']);
const DD_DT = new Set(['dd', 'dt']);
const RT_RP = new Set(['rt', 'rp']);
const TABLE_SECTIONS = new Set(['thead', 'tbody']);
const OPEN_IMPLIES_CLOSE = new Map<string, ReadonlySet<string>>([
  ['tr', new Set(['tr', 'th', 'td'])],
  ['th', new Set(['th'])],
  ['td', new Set(['thead', 'th', 'td'])],
  ['body', new Set(['head', 'link', 'script'])],
  ['li', new Set(['li'])],
  ...['p', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6'].map((t) => [t, P_TAG] as const),
  ...['select', 'input', 'output', 'button', 'datalist', 'textarea'].map((t) => [t, FORM_TAGS] as const),
  ['option', new Set(['option'])],
  ['optgroup', new Set(['optgroup', 'option'])],
  ['dd', DD_DT],
  ['dt', DD_DT],
  ...[
    'address',
    'article',
    'aside',
    'blockquote',
    'details',
    'div',
    'dl',
    'fieldset',
    'figcaption',
    'figure',
    'footer',
    'form',
    'header',
    'hr',
    'main',
    'nav',
    'ol',
    'pre',
    'section',
    'table',
    'ul',
  ].map((t) => [t, P_TAG] as const),
  ['rt', RT_RP],
  ['rp', RT_RP],
  ['tbody', TABLE_SECTIONS],
  ['tfoot', TABLE_SECTIONS],
]);
const VOID_ELEMENTS = new Set([
  'area',
  'base',
  'basefont',
  'br',
  'col',
  'command',
  'embed',
  'frame',
  'hr',
  'img',
  'input',
  'isindex',
  'keygen',
  'link',
  'meta',
  'param',
  'source',
  'track',
  'wbr',
]);
const FOREIGN_CONTEXT_ELEMENTS = new Set(['math', 'svg']);
const HTML_INTEGRATION_ELEMENTS = new Set([
  'mi',
  'mo',
  'mn',
  'ms',
  'mtext',
  'annotation-xml',
  'foreignobject',
  'desc',
  'title',
]);

/**
 * A run of ordinary attributes (`name="v"`, `name='v'`, `name=v`, `name`), each as htmlparser2's
 * tokenizer reads it. It ends where the tokenizer is back before an attribute name, so the
 * character-by-character reading can take over there: a name without a value only matches when
 * no `=` follows it, and a name starting with `=` is left to the slow path.
 */
const ATTRIBUTE_RUN =
  /(?:[ \t\n\f\r]*[^ \t\n\f\r/>=][^ \t\n\f\r/>=]*(?:=(?:"[^"]*"|'[^']*'|[^ \t\n\f\r>"'][^ \t\n\f\r>]*)|(?=[ \t\n\f\r]*[^ \t\n\f\r=])))+/y;

type Attributes = Map<string, string>;

interface PictureElement {
  sources: Attributes[];
}

interface ScannedImage {
  attrs: Attributes;
  /** The `<picture>` that is this img's parent element, if it is one. */
  picture: PictureElement | null;
}

/**
 * Attribute values with entities are decoded by htmlparser2 itself, so that its decoding rules
 * (legacy entities without `;`, numeric references, attribute-mode exceptions) apply unchanged.
 */
let decodedValue = '';
const entityDecoder = new Parser({
  onattribute(_name, value) {
    decodedValue = value;
  },
});

function decodeAttribute(raw: string, quote: number): string {
  if (!raw.includes('&')) return raw;
  decodedValue = '';
  entityDecoder.parseComplete(quote === DQ ? `<x a="${raw}">` : quote === SQ ? `<x a='${raw}'>` : `<x a=${raw}>`);
  return decodedValue;
}

class HtmlScan {
  readonly images: ScannedImage[] = [];
  readonly hrefs: string[] = [];
  /** `<meta>` tags with a name: robots directives are read from them. */
  readonly metas: Attributes[] = [];
  baseHref: string | undefined = undefined;

  private readonly html: string;
  private readonly length: number;
  /**
   * Whether the open elements are tracked, innermost last, as htmlparser2 keeps them. Only needed
   * when the document has a `<picture>`: otherwise no img can have one as parent.
   */
  private readonly trackTree: boolean;
  private readonly stack: string[] = [];
  private readonly stackPictures: (PictureElement | null)[] = [];
  /** htmlparser2's foreign-context stack (svg, math), innermost first; decides self-closing. */
  private readonly foreignContext: boolean[] = [false];
  /** Attributes of the tag being read, when it is one whose attributes matter. */
  private attrs: Attributes | null = null;
  private wanted: ReadonlySet<string> | null = null;

  private readonly wantLinks: boolean;

  /** Set when a `<picture>` tag was met while the tree was not tracked: the scan stopped there. */
  private sawPicture = false;

  constructor(html: string, wantLinks: boolean, trackTree: boolean) {
    this.html = html;
    this.length = html.length;
    this.wantLinks = wantLinks;
    this.trackTree = trackTree;
  }

  /** Scans the document; false when it must be scanned again with the tree tracked. */
  run(): boolean {
    const html = this.html;
    let i = 0;
    while (i >= 0 && i < this.length) {
      const lt = html.indexOf('<', i);
      if (lt < 0 || lt + 1 >= this.length) break;
      const c = html.charCodeAt(lt + 1);
      if (isAsciiAlpha(c)) i = this.openTag(lt + 1);
      else if (c === SLASH) i = this.closingTag(lt + 2);
      else if (c === BANG) i = this.declaration(lt + 2);
      else if (c === QUESTION) i = this.after(html.indexOf('>', lt + 2));
      else i = lt + 1;
    }
    return !this.sawPicture;
  }

  /** The index after `gt`, or -1 (stop: the rest of the document is text) when none was found. */
  private after(gt: number): number {
    return gt < 0 ? -1 : gt + 1;
  }

  /** `<!` seen; `i` is the next character. Comments, CDATA and declarations hide no tags. */
  private declaration(i: number): number {
    const html = this.html;
    if (i >= this.length) return -1;
    const c = html.charCodeAt(i);
    if (c === LBRACKET) {
      const sequence = 'CDATA[';
      for (let k = 0; k < sequence.length; k++) {
        if (i + 1 + k >= this.length) return -1;
        // On a mismatch the character is read again as part of a `<!...>` declaration.
        if (html.charCodeAt(i + 1 + k) !== sequence.charCodeAt(k)) return this.after(html.indexOf('>', i + 1 + k));
      }
      const end = html.indexOf(']]>', i + 1 + sequence.length);
      return end < 0 ? -1 : end + 3;
    }
    if (c === DASH) {
      if (i + 1 >= this.length) return -1;
      if (html.charCodeAt(i + 1) === DASH) {
        // `<!-->` and `<!--->` are complete comments: the `--` of `<!--` counts towards `-->`.
        const end = html.indexOf('-->', i);
        return end < 0 ? -1 : end + 3;
      }
      return this.after(html.indexOf('>', i + 2));
    }
    // The character after `<!` is consumed before looking for `>`, as htmlparser2 does.
    return this.after(html.indexOf('>', i + 1));
  }

  /** `</` seen; `i` is the next character. */
  private closingTag(i: number): number {
    const html = this.html;
    while (i < this.length && isWhitespace(html.charCodeAt(i))) i++;
    if (i >= this.length) return -1;
    const c = html.charCodeAt(i);
    if (c === GT) return i + 1;
    // The name runs to `>` or whitespace and the tag to the next `>`: without a tree to keep,
    // only that `>` matters.
    if (!isAsciiAlpha(c) || !this.trackTree) return this.after(html.indexOf('>', i + 1));
    let end = i + 1;
    while (end < this.length) {
      const e = html.charCodeAt(end);
      if (e === GT || isWhitespace(e)) break;
      end++;
    }
    if (end >= this.length) return -1;
    if (this.trackTree) this.closeElement(html.slice(i, end).toLowerCase());
    return html.charCodeAt(end) === GT ? end + 1 : this.after(html.indexOf('>', end + 1));
  }

  /** `<` + a letter seen; `start` is the first letter of the tag name. */
  private openTag(start: number): number {
    const html = this.html;
    let end = start + 1;
    while (end < this.length) {
      const e = html.charCodeAt(end);
      if (e === GT || e === SLASH || isWhitespace(e)) break;
      end++;
    }
    if (end >= this.length) return -1;
    if (
      !this.trackTree &&
      end - start === 7 &&
      (html.charCodeAt(start) | 0x20) === 0x70 &&
      html.slice(start, end).toLowerCase() === 'picture'
    ) {
      this.sawPicture = true;
      return -1;
    }

    // Without a tree to keep, only the names of wanted and raw-text tags matter (at most 8 letters,
    // starting with a, b, i, m, s, t or x): others are stepped over without being sliced.
    let name: string | null = null;
    if (this.trackTree || (end - start <= 8 && INTERESTING_FIRST_LETTER[html.charCodeAt(start) | 0x20] === 1)) {
      name = html.slice(start, end).toLowerCase();
      if (this.trackTree) this.openElement(name);
    }
    const wanted = name === null || (name === 'a' && !this.wantLinks) ? undefined : WANTED_ATTRIBUTES.get(name);
    if (wanted !== undefined) {
      this.attrs = new Map();
      this.wanted = wanted;
    } else {
      this.attrs = null;
      this.wanted = null;
    }

    const gt = this.readAttributes(end);
    if (gt < 0) return -1; // An unfinished tag at the end of the document is dropped.
    const selfClosing = this.selfClosedAt === gt;
    const attrs = this.attrs;
    this.attrs = null;
    this.wanted = null;
    if (name === null) return gt + 1;

    if (attrs !== null) this.element(name, attrs);
    if (selfClosing) {
      // `<script/>` is not raw text; in svg/math a self-closing tag also closes itself.
      if (this.trackTree && this.foreignContext[0] && this.stack[this.stack.length - 1] === name) this.popElement();
      return gt + 1;
    }
    if (RAW_TEXT_TAGS.has(name)) return this.rawText(name, gt + 1);
    return gt + 1;
  }

  /** Set by readAttributes: the `>` that ended a tag as self-closing (`/>`), else -1. */
  private selfClosedAt = -1;

  /**
   * Steps through the attributes of a tag from `i` (just after its name) to its `>`, following
   * htmlparser2's tokenizer states; records the wanted attributes. Returns the index of `>`, or -1.
   */
  private readAttributes(i: number): number {
    const html = this.html;
    const n = this.length;
    this.selfClosedAt = -1;
    let k = i;
    if (this.attrs === null) {
      // Attributes that are not read are stepped over by one native regex, as far as it goes.
      ATTRIBUTE_RUN.lastIndex = k;
      if (ATTRIBUTE_RUN.test(html)) k = ATTRIBUTE_RUN.lastIndex;
    }
    for (;;) {
      // Before an attribute name.
      if (k >= n) return -1;
      let c = html.charCodeAt(k);
      if (c === GT) return k;
      if (c === SLASH) {
        // Self-closing: whitespace may follow the slash; anything else is read as an attribute.
        k++;
        while (k < n && isWhitespace(html.charCodeAt(k))) k++;
        if (k >= n) return -1;
        if (html.charCodeAt(k) === GT) {
          this.selfClosedAt = k;
          return k;
        }
        continue;
      }
      if (isWhitespace(c)) {
        k++;
        continue;
      }
      // An attribute name runs to `=`, whitespace, `/` or `>` (its first character may be `=`).
      const nameStart = k;
      k++;
      while (k < n) {
        c = html.charCodeAt(k);
        if (c === EQ || c === GT || c === SLASH || isWhitespace(c)) break;
        k++;
      }
      if (k >= n) return -1;
      const nameEnd = k;
      // After the name.
      while (k < n && isWhitespace(html.charCodeAt(k))) k++;
      if (k >= n) return -1;
      c = html.charCodeAt(k);
      if (c !== EQ) {
        // No value: `/`, `>` or the next attribute's name is read from here.
        if (this.attrs !== null) this.attribute(nameStart, nameEnd, k, k, 0);
        continue;
      }
      k++;
      while (k < n && isWhitespace(html.charCodeAt(k))) k++;
      if (k >= n) return -1;
      c = html.charCodeAt(k);
      if (c === DQ || c === SQ) {
        const close = html.indexOf(c === DQ ? '"' : "'", k + 1);
        if (close < 0) return -1;
        if (this.attrs !== null) this.attribute(nameStart, nameEnd, k + 1, close, c);
        k = close + 1;
        continue;
      }
      // Unquoted: runs to whitespace or `>` (`<a href=>` has an empty value).
      const valueStart = k;
      while (k < n) {
        c = html.charCodeAt(k);
        if (c === GT || isWhitespace(c)) break;
        k++;
      }
      if (k >= n) return -1;
      if (this.attrs !== null) this.attribute(nameStart, nameEnd, valueStart, k, 0);
    }
  }

  /**
   * Keeps the first value of a wanted attribute, as htmlparser2 does with duplicates. The value is
   * `html[valueStart, valueEnd)`, quoted with `quote` (0: unquoted or no value).
   */
  private attribute(nameStart: number, nameEnd: number, valueStart: number, valueEnd: number, quote: number): void {
    if (this.attrs === null || this.wanted === null) return;
    const length = nameEnd - nameStart;
    if (length < 3 || length > 16) return; // No wanted name is shorter or longer (alt, data-lazy-srcset).
    let name = this.html.slice(nameStart, nameEnd);
    if (!this.wanted.has(name)) {
      const lower = name.toLowerCase();
      if (lower === name || !this.wanted.has(lower)) return;
      name = lower;
    }
    if (this.attrs.has(name)) return;
    this.attrs.set(name, decodeAttribute(this.html.slice(valueStart, valueEnd), quote));
  }

  private element(name: string, attrs: Attributes): void {
    if (name === 'img') {
      const parent = this.trackTree ? (this.stackPictures[this.stackPictures.length - 1] ?? null) : null;
      this.images.push({ attrs, picture: parent });
    } else if (name === 'source') {
      const parent = this.trackTree ? (this.stackPictures[this.stackPictures.length - 1] ?? null) : null;
      parent?.sources.push(attrs);
    } else if (name === 'a') {
      const href = attrs.get('href');
      if (href !== undefined) this.hrefs.push(href);
    } else if (name === 'base') {
      const href = attrs.get('href');
      if (href !== undefined && this.baseHref === undefined) this.baseHref = href;
    } else if (name === 'meta') {
      if (attrs.has('name')) this.metas.push(attrs);
    }
  }

  /** Skips the raw text of `<script>` and the like up to `</name` followed by whitespace or `>`. */
  private rawText(name: string, from: number): number {
    const html = this.html;
    let k = from;
    for (;;) {
      const lt = html.indexOf('</', k);
      if (lt < 0) return -1;
      const after = lt + 2 + name.length;
      if (after >= this.length) return -1;
      const c = html.charCodeAt(after);
      if ((c === GT || isWhitespace(c)) && html.slice(lt + 2, after).toLowerCase() === name) {
        if (this.trackTree) this.closeElement(name);
        return c === GT ? after + 1 : this.after(html.indexOf('>', after + 1));
      }
      k = lt + 1;
    }
  }

  // htmlparser2's Parser: emitOpenTag / onclosetag, with the stack innermost last.

  private openElement(name: string): void {
    const impliesClose = OPEN_IMPLIES_CLOSE.get(name);
    if (impliesClose) {
      while (this.stack.length > 0 && impliesClose.has(this.stack[this.stack.length - 1] as string)) this.popElement();
    }
    if (VOID_ELEMENTS.has(name)) return;
    this.stack.push(name);
    this.stackPictures.push(name === 'picture' ? { sources: [] } : null);
    if (FOREIGN_CONTEXT_ELEMENTS.has(name)) this.foreignContext.unshift(true);
    else if (HTML_INTEGRATION_ELEMENTS.has(name)) this.foreignContext.unshift(false);
  }

  private closeElement(name: string): void {
    if (FOREIGN_CONTEXT_ELEMENTS.has(name) || HTML_INTEGRATION_ELEMENTS.has(name)) this.foreignContext.shift();
    if (VOID_ELEMENTS.has(name)) return;
    const pos = this.stack.lastIndexOf(name);
    // An unmatched `</p>` opens and closes an empty p: no change to the open elements.
    if (pos < 0) return;
    while (this.stack.length > pos) this.popElement();
  }

  private popElement(): void {
    this.stack.pop();
    this.stackPictures.pop();
  }
}
