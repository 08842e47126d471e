/**
 * The emoji drawings of the `emoji-datasource-<vendor>` npm packages, named by their Unicode name:
 * real, offline images of the same concepts drawn by several vendors. The eval stage's emoji
 * setting trains on some vendors and evaluates on another; `bench add --emoji VENDOR` registers a
 * vendor's drawings as a retrieval benchmark.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { UsageError } from './errors.ts';

/** The vendors whose packages the project installs. */
export const EMOJI_VENDORS = ['apple', 'facebook', 'google', 'twitter'] as const;
export type EmojiVendor = (typeof EMOJI_VENDORS)[number];

/** One record of a package's `emoji.json` (the fields read here). */
export interface EmojiEntry {
  name: string | null;
  short_name: string;
  /** File name of the drawing (`1f600.png`), the same in every vendor's package. */
  image: string;
}

/** One drawing of a vendor: its file and its caption. */
export interface EmojiDrawing {
  entry: EmojiEntry;
  /** The 64 px PNG. */
  file: string;
  caption: string;
}

const require = createRequire(import.meta.url);

/** The caption of an emoji: its Unicode name, lower case ("smiling face with halo"). */
export function emojiCaption(entry: { name: string | null; short_name: string }): string {
  return (entry.name ?? entry.short_name.replace(/_/g, ' ')).toLowerCase();
}

/** Where a vendor's package keeps its `emoji.json` and its 64 px drawings; a UsageError when it is not installed. */
function vendorPackage(vendor: string): { json: string; images: string } {
  if (!(EMOJI_VENDORS as readonly string[]).includes(vendor)) {
    throw new UsageError(
      'ERR_INVALID_OPTION',
      `Unknown emoji vendor '${vendor}': expected one of ${EMOJI_VENDORS.join(', ')}`,
    );
  }
  let json: string;
  try {
    json = require.resolve(`emoji-datasource-${vendor}/emoji.json`);
  } catch {
    throw new UsageError(
      'ERR_INPUT_NOT_FOUND',
      `The emoji drawings of ${vendor} need the npm package emoji-datasource-${vendor}: run npm ci`,
    );
  }
  return { json, images: join(dirname(json), 'img', vendor, '64') };
}

/** The folder of a vendor's 64 px drawings; a UsageError when its package is not installed. */
export function emojiImageDir(vendor: string): string {
  return vendorPackage(vendor).images;
}

/** Every record of the vendor package's `emoji.json`, in the package's order. */
export function emojiEntries(vendor: string): EmojiEntry[] {
  return JSON.parse(readFileSync(vendorPackage(vendor).json, 'utf8')) as EmojiEntry[];
}

/**
 * The drawings every vendor of `vendors` has, one per caption (the first record of a name wins;
 * skin-tone variants, nested in their base record, are not listed), in the package's order.
 */
export function emojiDrawings(vendors: readonly string[]): Map<EmojiVendor, EmojiDrawing[]> {
  const dirs = vendors.map((v) => emojiImageDir(v));
  const seen = new Set<string>();
  const out = new Map<EmojiVendor, EmojiDrawing[]>(vendors.map((v) => [v as EmojiVendor, []]));
  for (const entry of emojiEntries(vendors[0] as string)) {
    const caption = emojiCaption(entry);
    if (seen.has(caption)) continue;
    const files = dirs.map((d) => join(d, entry.image));
    if (!files.every((f) => existsSync(f))) continue;
    seen.add(caption);
    vendors.forEach((v, i) => out.get(v as EmojiVendor)?.push({ entry, file: files[i] as string, caption }));
  }
  return out;
}
