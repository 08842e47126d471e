import { load } from 'cheerio/slim';
import { describe, expect, it } from 'vitest';
import {
  collapseWhitespace,
  extractFromHtml,
  metaOptOut,
  parseSrcset,
  resolveHttpUrl,
  type ExtractedPage,
} from '../../crawl/_html-extract.ts';

const PAGE = 'https://example.com/dir/page.html';

function images(html: string, pageUrl = PAGE): ExtractedPage['images'] {
  return extractFromHtml(html, pageUrl).images;
}

describe('extractFromHtml', () => {
  it('decodes entities in alt-texts and URLs', () => {
    const html = `<img src="/a.jpg?x=1&amp;y=2" alt="Tom &amp; Jerry &quot;live&quot; &copy; 2024 &#233;t&#xE9;">`;
    expect(images(html)).toEqual([
      { url: 'https://example.com/a.jpg?x=1&y=2', alt: 'Tom & Jerry "live" © 2024 été', hasAlt: true },
    ]);
  });

  it('collapses whitespace, newlines and NBSP in alt-texts', () => {
    const html = `<img src="a.jpg" alt="  A\n\t red&nbsp;&nbsp; fox  ">`;
    expect(images(html)).toEqual([{ url: 'https://example.com/dir/a.jpg', alt: 'A red fox', hasAlt: true }]);
  });

  it('resolves relative URLs against the page', () => {
    const html = `<img src="img/a.jpg" alt="a"><img src="../b.png" alt="b"><img src="//cdn.example.org/c.gif" alt="c"><img src="/d.webp" alt="d">`;
    expect(images(html).map((i) => i.url)).toEqual([
      'https://example.com/dir/img/a.jpg',
      'https://example.com/b.png',
      'https://cdn.example.org/c.gif',
      'https://example.com/d.webp',
    ]);
  });

  it('resolves URLs against the first <base href>, itself relative to the page', () => {
    const html = `<head><base href="/static/"><base href="https://other.example/"></head><img src="a.jpg" alt="a"><a href="x.html">x</a>`;
    const page = extractFromHtml(html, PAGE);
    expect(page.images.map((i) => i.url)).toEqual(['https://example.com/static/a.jpg']);
    expect(page.links).toEqual(['https://example.com/static/x.html']);
  });

  it('ignores a <base href> that is not http(s) and falls back to the page', () => {
    expect(images(`<base href="javascript:void(0)"><img src="a.jpg" alt="a">`).map((i) => i.url)).toEqual([
      'https://example.com/dir/a.jpg',
    ]);
  });

  it('takes the widest srcset candidate by w descriptor', () => {
    const html = `<img src="small.jpg" srcset="a-480.jpg 480w, a-1280.jpg 1280w, a-960.jpg 960w" alt="a">`;
    expect(images(html).map((i) => i.url)).toEqual(['https://example.com/dir/a-1280.jpg']);
  });

  it('takes the densest srcset candidate by x descriptor, and a w candidate over any x', () => {
    expect(images(`<img srcset="a1.jpg 1x, a3.jpg 3x, a2.jpg 2x" alt="a">`).map((i) => i.url)).toEqual([
      'https://example.com/dir/a3.jpg',
    ]);
    expect(images(`<img srcset="x4.jpg 4x, w100.jpg 100w" alt="a">`).map((i) => i.url)).toEqual([
      'https://example.com/dir/w100.jpg',
    ]);
  });

  it('keeps commas inside srcset URLs', () => {
    const html = `<img srcset="https://img.example/c_fill,w_400/p.jpg 400w, https://img.example/c_fill,w_800/p.jpg 800w" alt="p">`;
    expect(images(html).map((i) => i.url)).toEqual(['https://img.example/c_fill,w_800/p.jpg']);
  });

  it('prefers a lazy-loading data-src over a placeholder src', () => {
    const html = `<img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=" data-src="/real.jpg" alt="lazy"><img src="/spacer.gif" data-lazy-src="/real2.jpg" alt="lazy2">`;
    expect(images(html).map((i) => i.url)).toEqual(['https://example.com/real.jpg', 'https://example.com/real2.jpg']);
  });

  it('takes the largest candidate among a <picture>’s <source> elements and its img', () => {
    const html = `<picture><source type="image/avif" srcset="p.avif 1x, p2.avif 2x"><source srcset="p-1600.webp 1600w"><img src="p.jpg" alt="pic"></picture><img src="q.jpg" srcset="q2.jpg 2x" alt="alone">`;
    expect(images(html).map((i) => i.url)).toEqual([
      'https://example.com/dir/p-1600.webp',
      'https://example.com/dir/q2.jpg',
    ]);
  });

  it('does not take <source> elements of a <picture> the img is not a direct child of', () => {
    const html = `<picture><source srcset="big.webp 2000w"><span><img src="inner.jpg" alt="inner"></span></picture>`;
    expect(images(html).map((i) => i.url)).toEqual(['https://example.com/dir/inner.jpg']);
  });

  it('marks images with a missing, empty or blank alt as having none', () => {
    const html = `<img src="a.jpg"><img src="b.jpg" alt=""><img src="c.jpg" alt="   "><img src="d.jpg" alt>`;
    expect(images(html)).toEqual([
      { url: 'https://example.com/dir/a.jpg', alt: '', hasAlt: false },
      { url: 'https://example.com/dir/b.jpg', alt: '', hasAlt: false },
      { url: 'https://example.com/dir/c.jpg', alt: '', hasAlt: false },
      { url: 'https://example.com/dir/d.jpg', alt: '', hasAlt: false },
    ]);
  });

  it('ignores data: URIs, images without a source and non-http(s) sources', () => {
    const html = `<img src="data:image/png;base64,iVBORw0KGgo=" alt="inline"><img alt="nothing"><img src="ftp://example.com/a.jpg" alt="ftp"><img srcset="data:image/png;base64,AAAA 2x" src="ok.jpg" alt="ok">`;
    expect(images(html)).toEqual([{ url: 'https://example.com/dir/ok.jpg', alt: 'ok', hasAlt: true }]);
  });

  it('ignores images inside comments, scripts and other raw text', () => {
    const html = `<!-- <img src="c.jpg" alt="comment"> --><script>document.write('<img src="s.jpg" alt="script">')</script><style>/* <img src="st.jpg"> */</style><textarea><img src="t.jpg" alt="t"></textarea><img src="real.jpg" alt="real">`;
    expect(images(html).map((i) => i.alt)).toEqual(['real']);
  });

  it('reads upper-case tags and attributes, unquoted and single-quoted values', () => {
    const html = `<IMG SRC=a.jpg ALT='Big cat'><img src=b.jpg alt=Dog>`;
    expect(images(html)).toEqual([
      { url: 'https://example.com/dir/a.jpg', alt: 'Big cat', hasAlt: true },
      { url: 'https://example.com/dir/b.jpg', alt: 'Dog', hasAlt: true },
    ]);
  });

  it('keeps the first of duplicate attributes', () => {
    expect(images(`<img src="first.jpg" src="second.jpg" alt="one" alt="two">`)).toEqual([
      { url: 'https://example.com/dir/first.jpg', alt: 'one', hasAlt: true },
    ]);
  });

  it('returns links resolved, deduplicated, without fragments, in document order', () => {
    const html = `<a href="b.html#top">b</a><a href="/a.html">a</a><a href="b.html">b again</a><a href="https://x.example/p?q=1#frag">x</a><a>no href</a><a href="#only-fragment">self</a>`;
    expect(extractFromHtml(html, PAGE).links).toEqual([
      'https://example.com/dir/b.html',
      'https://example.com/a.html',
      'https://x.example/p?q=1',
      'https://example.com/dir/page.html',
    ]);
  });

  it('drops links that are not http(s)', () => {
    const html = `<a href="mailto:a@example.com">m</a><a href="javascript:alert(1)">j</a><a href="tel:+100">t</a><a href="ftp://example.com/f">f</a><a href="data:text/html,hi">d</a><a href="ok.html">ok</a>`;
    expect(extractFromHtml(html, PAGE).links).toEqual(['https://example.com/dir/ok.html']);
  });

  it('can leave the links out', () => {
    const page = extractFromHtml(`<a href="a.html">a</a><img src="i.jpg" alt="i">`, PAGE, { links: false });
    expect(page).toEqual({
      images: [{ url: 'https://example.com/dir/i.jpg', alt: 'i', hasAlt: true }],
      links: [],
      optOut: null,
    });
  });
});

describe('extractFromHtml URL resolution', () => {
  const BASES = [
    'https://example.com/dir/page.html',
    'https://example.com',
    'http://user:pw@example.com:8080/a/b/?q=1#f',
    'https://EXAMPLE.com:443/x/y',
    'https://xn--bcher-kva.example/x/',
    'http://[::1]/x/',
    'http://127.0.0.1:3000/a',
    'https://example.com/a b/c%20d/',
    'file:///tmp/x.html',
  ];
  const PIECES = [
    'https://',
    'http://',
    'HTTP://',
    '//',
    '/',
    './',
    '../',
    '.',
    '..',
    'a',
    'B',
    'img',
    '.jpg',
    '?',
    '#',
    '%2e',
    '%2E',
    '%41',
    '%',
    ':',
    '@',
    '~',
    "'",
    ' ',
    '\t',
    '\\',
    'xn--',
    '0x7f',
    '127',
    '.0',
    'example',
    '.com',
    'ex.org',
    ':8080',
    ':443',
    '&',
    '=',
    ';',
    ',',
    '+',
    '(',
    ')',
    '*',
    '$',
    '!',
    '\u00e9',
    '{',
    '|',
    '`',
    '<',
    '>',
    '^',
    '[',
    ']',
    'data:',
    'javascript:',
    'sub-',
    '-',
  ];

  function ref(seed: number): string {
    let a = seed >>> 0;
    const random = (): number => {
      a = (a + 0x6d2b79f5) >>> 0;
      let t = a;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
    let out = '';
    const n = 1 + Math.floor(random() * 8);
    for (let i = 0; i < n; i++) out += PIECES[Math.floor(random() * PIECES.length)];
    return out;
  }

  const attribute = (value: string) => value.replace(/&/g, '&amp;').replace(/"/g, '&quot;');

  it('resolves the URL parser’s special cases exactly as resolveHttpUrl does', () => {
    const references = [
      'http://ex.127/a',
      'http://a.0x7f/x',
      'http://a.b.1/x',
      'http://1.2.3.4/x',
      'https://xn--bcher-kva.example/x',
      'https://a.com:443/x',
      'http://a.com:80/x',
      'https://a.com:8443/x',
      'https://A.com/x',
      'https://a.com/./x',
      'https://a.com/a/../b',
      'https://a.com/a/%2E%2E/b',
      'x/%2e%2e/y',
      'a:b',
      'a1+.-:b/c',
      './a',
      '../a',
      'a?b#c',
      'https://a.com',
      'https://a.com?x',
      '/a b',
      'https://a.com/\u00e9',
      "https://a.com/?q='x'",
      "https://a.com/it's",
      'http://a.com/x\\y',
      '//cdn.example.com/x.jpg',
      '?q=1',
      'https://a.com/x?y?z',
      'https://a.com//x//y',
      '/',
      'a',
      'https://user@a.com/x',
      'https://a.com./x',
      'https://-a.com/x',
      'https://a-.b-c.com/x',
      '%zz/a',
      '/%zz?%zz',
      'https://xn--a.com/x',
      'https://a.xn--zz/x',
      'https://ab--c.com/x',
      'https://a.com/{x}',
      'https://a.com/x|y',
      'https://a.com/x`y',
      'https://a.com/x^y',
      'https://a.com/[x]',
    ];
    for (const base of BASES) {
      for (const reference of references) {
        const page = extractFromHtml(`<img src="${attribute(reference)}" alt="x">`, base);
        expect([base, reference, page.images[0]?.url ?? null]).toEqual([
          base,
          reference,
          resolveHttpUrl(reference, base),
        ]);
      }
    }
  });

  it('resolves image and link URLs exactly as resolveHttpUrl does, for 20000 seeded references', () => {
    const mismatches: string[] = [];
    let resolved = 0;
    for (let seed = 1; seed <= 20_000; seed++) {
      const reference = ref(seed);
      const base = BASES[seed % BASES.length] as string;
      const page = extractFromHtml(
        `<img src="${attribute(reference)}" alt="x"><a href="${attribute(reference)}">l</a>`,
        base,
      );
      const expected = reference.trim().startsWith('data:') ? null : resolveHttpUrl(reference, base);
      if (expected !== null) resolved++;
      if ((page.images[0]?.url ?? null) !== expected || (page.links[0] ?? null) !== expected)
        mismatches.push(`${base} ${reference}`);
    }
    expect(mismatches).toEqual([]);
    expect(resolved).toBeGreaterThan(8000);
  });
});

describe('collapseWhitespace', () => {
  it('collapses runs of whitespace including NBSP and trims', () => {
    expect(collapseWhitespace('\u00a0 a \n\n b\t\u00a0c  ')).toBe('a b c');
    expect(collapseWhitespace('already clean')).toBe('already clean');
    expect(collapseWhitespace(' \n ')).toBe('');
  });
});

describe('resolveHttpUrl', () => {
  it('resolves against the base, drops the fragment and refuses other schemes', () => {
    expect(resolveHttpUrl(' ../x.jpg#f ', 'https://a.example/b/c/')).toBe('https://a.example/b/x.jpg');
    expect(resolveHttpUrl('HTTP://A.example/Y', 'https://b.example/')).toBe('http://a.example/Y');
    expect(resolveHttpUrl('mailto:x@y.z', 'https://a.example/')).toBeNull();
    expect(resolveHttpUrl('data:image/png;base64,AA', 'https://a.example/')).toBeNull();
    expect(resolveHttpUrl('', 'https://a.example/')).toBeNull();
    expect(resolveHttpUrl('http://[bad', 'https://a.example/')).toBeNull();
  });
});

describe('parseSrcset', () => {
  it('reads w and x descriptors and URLs with commas', () => {
    expect(parseSrcset('a.jpg 640w, b,c.jpg 1280w')).toEqual([
      { url: 'a.jpg', size: 640 },
      { url: 'b,c.jpg', size: 1280 },
    ]);
    expect(parseSrcset('a.jpg, b.jpg 2x')).toEqual([
      { url: 'a.jpg', size: 1e-6 },
      { url: 'b.jpg', size: 2e-6 },
    ]);
  });
});

// --- Against a DOM --------------------------------------------------------------------------------

/**
 * The reference: the same rules applied to a cheerio DOM (htmlparser2's tree), as extractFromHtml
 * was first written. The one-pass scanner must find exactly what it finds.
 */
function extractWithDom(html: string, pageUrl: string): ExtractedPage {
  const srcsetAttributes = ['srcset', 'data-srcset', 'data-lazy-srcset'];
  const lazyAttributes = ['data-src', 'data-lazy-src', 'data-original', 'data-lazy', 'src'];
  const $ = load(html);
  const baseHref = $('base[href]').first().attr('href');
  const base = (baseHref !== undefined && resolveHttpUrl(baseHref, pageUrl)) || pageUrl;
  const found: ExtractedPage['images'] = [];
  $('img').each((_, element) => {
    const img = $(element);
    const candidates: { url: string; size: number }[] = [];
    for (const attr of srcsetAttributes) {
      const value = img.attr(attr);
      if (value) candidates.push(...parseSrcset(value));
    }
    const parent = img.parent();
    if (parent.is('picture')) {
      parent.children('source').each((__, source) => {
        for (const attr of srcsetAttributes) {
          const value = $(source).attr(attr);
          if (value) candidates.push(...parseSrcset(value));
        }
      });
    }
    let best: { url: string; size: number } | null = null;
    for (const c of candidates) if (!c.url.startsWith('data:') && (best === null || c.size > best.size)) best = c;
    let ref = best?.url ?? null;
    if (ref === null) {
      for (const attr of lazyAttributes) {
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
    found.push({ url, alt, hasAlt: alt !== '' });
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
  const metas: Array<Map<string, string>> = [];
  $('meta[name]').each((_, element) => {
    const meta = new Map([['name', $(element).attr('name') ?? '']]);
    const content = $(element).attr('content');
    if (content !== undefined) meta.set('content', content);
    metas.push(meta);
  });
  return { images: found, links, optOut: metaOptOut(metas, undefined) };
}

/** Markup where tokenizers disagree: each one is checked against the DOM on its own. */
const TRICKY = [
  `<img src=a.jpg alt=x/><img src="b.jpg"alt="y">`,
  `<img src = "a.jpg" alt = 'spaced' >`,
  `<img =src="a.jpg" src="b.jpg" alt="eq-first">`,
  `<img src="a.jpg" alt="a > b">`,
  `<img src='a.jpg' alt='it"s'><img src=c.jpg alt=it's>`,
  `<img src=a.jpg alt=>`,
  `<img src="a.jpg" alt="x" / ><img src="b.jpg"/alt="y">`,
  `<img src="a.jpg" alt="&amp &ampx &notin; &notit; &#65 &#x42; &#0; &#x110000;">`,
  `<img src="a.jpg?a=1&copy=2&amp;b" alt="q">`,
  `<!--><img src="after-empty-comment.jpg" alt="a">`,
  `<!---><img src="after-dash-comment.jpg" alt="a">`,
  `<!-- a -- b --!><img src="hidden.jpg"> --><img src="shown.jpg" alt="s">`,
  `<!><img src="eaten.jpg" alt="e">><img src="ok.jpg" alt="o">`,
  `<!-x><img src="e2.jpg" alt="e">><img src="ok2.jpg" alt="o">`,
  `<!-><img src="e3.jpg" alt="e">><img src="ok3.jpg" alt="o">`,
  `<!DOCTYPE html><![CDATA[<img src="cdata.jpg" alt="c">]]><img src="after.jpg" alt="a">`,
  `<![CDAT<img src="x.jpg" alt="x">><img src="y.jpg" alt="y">`,
  `<![CDA><img src="x.jpg" alt="x">`,
  `<?xml version="1.0"?><img src="pi.jpg" alt="pi">`,
  `</ img><img src="a.jpg" alt="a"></ ><img src="b.jpg" alt="b"></3 <img src="c.jpg"> ><img src="d.jpg" alt="d">`,
  `<script type="text/template"><img src="tpl.jpg" alt="t"></script ><img src="a.jpg" alt="a">`,
  `<script>a</scriptx><img src="in.jpg" alt="in"></SCRIPT><img src="out.jpg" alt="out">`,
  `<script/><img src="self.jpg" alt="self-closed script">`,
  `<script src=x/><img src="in.jpg" alt="still script"></script><img src="o.jpg" alt="o">`,
  `<title><img src="t.jpg" alt="t"></title><xmp><img src="x.jpg"></xmp><img src="ok.jpg" alt="ok">`,
  `<textarea/><img src="ta.jpg" alt="ta">`,
  `<noscript><img src="ns.jpg" alt="noscript"></noscript><template><img src="tp.jpg" alt="template"></template>`,
  `<picture><source srcset="s1.jpg 900w"><img src="p.jpg" alt="p"><source srcset="s2.jpg 1900w"></picture>`,
  `<picture><div><source srcset="no.jpg 900w"></div><img src="p.jpg" alt="p"></picture>`,
  `<picture><p><img src="p.jpg" alt="in p"></p></picture>`,
  `<div><picture></div><source srcset="gone.jpg 900w"><img src="p.jpg" alt="p">`,
  `<picture><li><source srcset="l.jpg 900w"><li><img src="p.jpg" alt="p"></picture>`,
  `<PICTURE><SOURCE SRCSET="up.jpg 900w"><IMG SRC="p.jpg" ALT="caps"></PICTURE>`,
  `<picture><source srcset="a.jpg 900w"><source data-srcset="b.jpg 1900w"><img src="p.jpg" data-srcset="c.jpg 100w" alt="p"></picture>`,
  `<picture><svg><source srcset="svg.jpg 900w"/></svg><img src="p.jpg" alt="p"></picture>`,
  `<picture><svg><g/><img src="in-svg.jpg" alt="s"></svg></picture>`,
  `<picture><math><mi/><source srcset="m.jpg 9w"></math><img src="p.jpg" alt="p"></picture>`,
  `<picture><source srcset="s.jpg 900w"><svg></svg><span/><img src="p.jpg" alt="p"></picture>`,
  `<picture><img src="a.jpg" alt="a"/><picture><source srcset="n.jpg 50w"><img src="b.jpg" alt="b"></picture><source srcset="o.jpg 60w"></picture>`,
  `<picture><table><td><source srcset="t.jpg 10w"><tr><img src="p.jpg" alt="p"></table></picture>`,
  `<picture></p><source srcset="s.jpg 10w"><img src="p.jpg" alt="p"></picture>`,
  `<picture></br><source srcset="s.jpg 10w"></img><img src="p.jpg" alt="p"></picture>`,
  `<base href="sub/"><base href="/other/"><img src="a.jpg" alt="a">`,
  `<img src="a.jpg" alt="before base"><base href="https://cdn.example/x/">`,
  `<base target="_blank"><base href=""><img src="a.jpg" alt="a">`,
  `<a href="a.html"><a href=b.html#x><A HREF='c.html'><a href>`,
  `<img src="a.jpg" alt="unfinished`,
  `<img src="a.jpg" alt="ok"><img src="b.jpg"`,
  `<img src="a.jpg" alt="tail"><`,
  `<<img src="a.jpg" alt="double lt">`,
  `< img src="a.jpg" alt="space">`,
  `<img\nsrc="a.jpg"\talt="tabs\nand\nnewlines"\r\n>`,
  `<img src="a.jpg" alt="x" data-src="lazy.jpg" data-original="orig.jpg">`,
  `<img data-lazy="l.jpg" src="data:x" alt="l"><img data-original=" data:x " src="s.jpg" alt="s">`,
  `<img srcset="  " src="s.jpg" alt="blank srcset"><img srcset="data:a 1x, data:b 2x" src="s2.jpg" alt="data srcset">`,
  `<div class="a" id=b data-x='c' hidden><img class=c src=a.jpg alt=a></div>`,
  `<p class=a><img src=a.jpg alt=a><p><img src=b.jpg alt=b></p></p>`,
  `<imgx src="x.jpg" alt="x"><img:foo src="y.jpg"><img/src="z.jpg"/alt="z">`,
  `<constructor src="x.jpg"><__proto__ href="y"><img src="ok.jpg" alt="ok">`,
  `<img src="a.jpg" alt="\u00e9t\u00e9 \u4e2d\u6587 \ud83d\ude00">`,
  `<a href="http://ex ample.com/">bad</a><img src="http://[::1/x.jpg" alt="bad">`,
  `<meta name=robots content="noai"><img src=a.jpg alt=a>`,
  `<META NAME="Robots" CONTENT="index, NoImageAI"><img src=a.jpg alt=a>`,
  `<meta name="robots" content="noindex, nofollow"><meta name="googlebot" content="noai"><img src=a.jpg alt=a>`,
  `<!-- <meta name="robots" content="noai"> --><script><meta name="robots" content="noai"></script><img src=a.jpg alt=a>`,
  `<meta content="noai" name="robots"/><meta name="robots"><meta name content="noai">`,
];

/** Seeded random tag soup, made of the pieces that decide where tags start and end. */
function tagSoup(seed: number): string {
  let a = seed >>> 0;
  const random = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T;
  const attrs = () => {
    let s = '';
    const n = Math.floor(random() * 4);
    for (let i = 0; i < n; i++) {
      const name = pick(['src', 'SRC', 'alt', 'srcset', 'data-src', 'href', 'class', 'x', '=q', 'alt/']);
      const value = pick([
        `"v${i}.jpg"`,
        `'w${i}.jpg 2x'`,
        `u${i}.jpg`,
        '',
        `"a > b"`,
        `"&amp;&lt;"`,
        `"${pick(['1x', '9w', 'z.jpg 5w, y.jpg 7w'])}"`,
        `'it"s'`,
      ]);
      s += pick([' ', '\n', '', '  ']) + name + (value === '' ? '' : pick(['=', ' = ', '=']) + value);
    }
    return s;
  };
  const pieces = [
    () => `<img${attrs()}>`,
    () => `<IMG${attrs()} />`,
    () => `<source${attrs()}>`,
    () => `<picture>`,
    () => `</picture>`,
    () => `<base${attrs()}>`,
    () => `<a${attrs()}>`,
    () => `</a>`,
    () =>
      pick([
        '<div>',
        '</div>',
        '<p>',
        '</p>',
        '<span>',
        '</span>',
        '<li>',
        '<ul>',
        '</ul>',
        '<table>',
        '<td>',
        '<tr>',
        '</table>',
      ]),
    () =>
      pick([
        '<svg>',
        '</svg>',
        '<math>',
        '</math>',
        '<mi>',
        '</mi>',
        '<g/>',
        '<span/>',
        '<div/>',
        '<br>',
        '</br>',
        '</img>',
      ]),
    () =>
      pick([
        '<script>',
        '</script>',
        '</script ',
        '<style>',
        '</style>',
        '<title>',
        '</title>',
        '<textarea>',
        '</textarea>',
        '<xmp>',
      ]),
    () =>
      pick([
        '<!--',
        '-->',
        '<!-->',
        '--!>',
        '<![CDATA[',
        '<![CDA',
        ']]>',
        '<!DOCTYPE html>',
        '<!',
        '<?x ',
        '</',
        '<',
        '>',
        '/>',
        '/',
        '-',
        '=',
        '"',
        "'",
      ]),
    () => pick([' ', '\n', 'text', '&amp;', '&lt;img src=e.jpg&gt;', 'word ', '&#60;']),
  ];
  let html = '';
  const n = 10 + Math.floor(random() * 60);
  for (let i = 0; i < n; i++) html += pick(pieces)();
  return html;
}

describe('robots metas', () => {
  it('opts a page out with noai, noimageai or noimageindex in a robots meta, not with noindex', () => {
    const optOut = (head: string, robot?: string) =>
      extractFromHtml(`<html><head>${head}</head><body><img src=a.jpg alt=a></body></html>`, PAGE, { robot }).optOut;
    expect(optOut('<meta name="robots" content="noai, noimageai">')).toBe('noai');
    expect(optOut('<meta name="ROBOTS" content=" NoImageAI ">')).toBe('noimageai');
    expect(optOut('<meta name="robots" content="noimageindex">')).toBe('noimageindex');
    expect(optOut('<meta name="robots" content="noindex, nofollow">')).toBeNull();
    expect(optOut('<meta name="googlebot" content="noai">')).toBeNull();
    expect(optOut('<meta name="altforge" content="noai">', 'altforge')).toBe('noai');
    expect(optOut('<meta property="robots" content="noai">')).toBeNull();
    expect(optOut('')).toBeNull();
  });
});

describe('extractFromHtml against a DOM', () => {
  it.each(TRICKY.map((html, i) => [i, html] as const))(
    'finds what a cheerio DOM finds in tricky markup #%i',
    (_, html) => {
      expect(extractFromHtml(html, PAGE)).toEqual(extractWithDom(html, PAGE));
    },
  );

  it('finds what a cheerio DOM finds in 3000 seeded tag soups', () => {
    const mismatches: string[] = [];
    for (let seed = 1; seed <= 3000; seed++) {
      const html = tagSoup(seed);
      if (JSON.stringify(extractFromHtml(html, PAGE)) !== JSON.stringify(extractWithDom(html, PAGE)))
        mismatches.push(html);
    }
    expect(mismatches).toEqual([]);
  });

  it('finds images in the soups, so that the comparison is not vacuous', () => {
    let found = 0;
    let inPictures = 0;
    for (let seed = 1; seed <= 3000; seed++) {
      const html = tagSoup(seed);
      found += extractWithDom(html, PAGE).images.length;
      if (/<picture>[^]*<img/.test(html)) inPictures++;
    }
    expect(found).toBeGreaterThan(2000);
    expect(inPictures).toBeGreaterThan(300);
  });
});
