import { TextDecoder } from 'node:util';
import type { Candidate } from './_candidate.ts';
import type { ExtractedImage } from './_html-extract.ts';

/** How much of a body is looked at to sniff HTML or a `<meta charset>`, as browsers pre-scan. */
const SNIFF_BYTES = 1024;

/** True for an HTML or XHTML Content-Type. */
export function isHtmlType(contentType: string): boolean {
  const type = contentType.toLowerCase();
  return type.includes('text/html') || type.includes('application/xhtml+xml');
}

/** True when the start of a body looks like an HTML document. */
export function sniffsAsHtml(body: Buffer): boolean {
  return /<(!doctype html|html|head|body)\b/i.test(body.toString('latin1', 0, SNIFF_BYTES));
}

const decoders = new Map<string, TextDecoder>();

/** A decoder for the charset label, or UTF-8 when the label is unknown to TextDecoder. */
function decoderFor(label: string | null): TextDecoder {
  const key = (label ?? 'utf-8').toLowerCase();
  let decoder = decoders.get(key);
  if (decoder === undefined) {
    try {
      decoder = new TextDecoder(key);
    } catch {
      decoder = decoderFor(null);
    }
    decoders.set(key, decoder);
  }
  return decoder;
}

const CHARSET_PARAMETER = /charset\s*=\s*["']?\s*([^\s;"',]+)/i;
const META_CHARSET = /<meta[^>]*?charset\s*=\s*["']?\s*([a-z0-9_.:()-]+)/i;

/**
 * Decodes an HTML body with the Content-Type's charset, else a `<meta charset>` (or http-equiv)
 * in the first KiB, else UTF-8.
 */
export function decodeHtml(body: Buffer, contentType: string | undefined): string {
  const fromHeader = contentType === undefined ? undefined : CHARSET_PARAMETER.exec(contentType)?.[1];
  const label = fromHeader ?? META_CHARSET.exec(body.toString('latin1', 0, SNIFF_BYTES))?.[1] ?? null;
  return decoderFor(label).decode(body);
}

/** The candidates of a page's images: those with an alt, and the others only with `keepEmptyAlt`. */
export function imageCandidates(images: ExtractedImage[], pageUrl: string, keepEmptyAlt: boolean): Candidate[] {
  const out: Candidate[] = [];
  for (const image of images) {
    if (image.hasAlt || keepEmptyAlt) out.push({ url: image.url, caption: image.hasAlt ? image.alt : '', pageUrl });
  }
  return out;
}
