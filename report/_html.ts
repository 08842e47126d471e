/** Small HTML helpers of the report page: escaping, tables, thumbnail cards. */

/** Escapes text for an HTML text node or a quoted attribute. */
export function esc(text: string | number | null | undefined): string {
  return String(text ?? '')
    .replaceAll('&', '&amp;')
    .replaceAll('<', '&lt;')
    .replaceAll('>', '&gt;')
    .replaceAll('"', '&quot;')
    .replaceAll("'", '&#39;');
}

/** A table; cells are escaped. */
export function table(head: string[], rows: Array<Array<string | number>>): string {
  const th = head.map((h) => `<th>${esc(h)}</th>`).join('');
  const body = rows.map((r) => `<tr>${r.map((c) => `<td>${esc(c)}</td>`).join('')}</tr>`).join('\n');
  return `<table><thead><tr>${th}</tr></thead><tbody>\n${body}\n</tbody></table>`;
}

/** One thumbnail with lines of text under it; `src` is relative to the page, null when there is no image. */
export function card(src: string | null, lines: string[], alt: string): string {
  const img =
    src === null ? '<div class="noimg">no image</div>' : `<img src="${esc(src)}" alt="${esc(alt)}" loading="eager">`;
  return `<figure class="card">${img}<figcaption>${lines.map((l) => `<div>${esc(l)}</div>`).join('')}</figcaption></figure>`;
}

/** A section with an id the page's table of contents links to. */
export function section(id: string, title: string, body: string): string {
  return `<section id="${esc(id)}"><h2>${esc(title)}</h2>\n${body}\n</section>`;
}

/** A plot image (SVG file). */
export function plot(src: string, title: string): string {
  return `<figure class="plot"><img class="plot" src="${esc(src)}" alt="${esc(title)}"><figcaption>${esc(title)}</figcaption></figure>`;
}

export const STYLE = `
body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1100px;padding:1em 2em;color:#222}
h1{margin-bottom:.2em} nav a{margin-right:1em} section{margin:2em 0;border-top:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0} td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}
th{background:#f4f4f4} .grid{display:flex;flex-wrap:wrap;gap:8px}
.card{width:120px;margin:0;border:1px solid #ddd;padding:4px;font-size:12px;word-wrap:break-word}
.card img{width:96px;height:96px;display:block;margin:auto;image-rendering:pixelated}
.noimg{width:96px;height:96px;margin:auto;background:#eee;color:#888;text-align:center;line-height:96px}
.pair{display:flex;gap:4px;border:1px solid #ddd;padding:4px}.pair .card{border:none}
.plot{margin:.5em 0} .note{color:#666}
`;
