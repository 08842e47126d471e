/**
 * 52-bit string hashes, exact integers in a JS number: the filter's counters key captions, tokens
 * and images by them instead of by strings, so that counting 10M captions does not create 10M
 * strings. Two independent 32-bit FNV-style lanes with a murmur finaliser; among 10M distinct keys
 * the chance that any two collide is about 1 %, and a collision only merges two keys' counts.
 */
import { fmix, textHash52 } from '../corpus/text.ts';

/** The 52-bit hash of a string (the one `corpus/text.ts` hashes captions and unigrams with). */
export const hash52 = textHash52;

/** Hex digit values by character code; 16 for any other character. */
const HEX_VALUE = new Uint8Array(128).fill(16);
for (let c = 0; c < 10; c++) HEX_VALUE[48 + c] = c;
for (let c = 0; c < 6; c++) HEX_VALUE[65 + c] = HEX_VALUE[97 + c] = 10 + c;

/** A sha256 hex digest's first 52 bits: already uniform, no need to hash again. */
export function sha52(sha256: string): number {
  // Thirteen hex digits (how a sha256 hex digest starts): read them as parseInt would, without a substring.
  if (sha256.length >= 13) {
    let h = 0;
    for (let i = 0; i < 13; i++) {
      const c = sha256.charCodeAt(i);
      const d = c < 128 ? HEX_VALUE[c]! : 16;
      if (d > 15) {
        h = -1;
        break;
      }
      h = h * 16 + d;
    }
    if (h >= 0) return h;
  }
  const h = parseInt(sha256.slice(0, 13), 16);
  // Not hex (a sha256 written by some other tool in another form): hash it like any string.
  return Number.isNaN(h) ? hash52(sha256) : h;
}

/** A 52-bit hash of an ordered pair of 52-bit hashes (a caption and an image, say). */
export function pairHash52(x: number, y: number): number {
  const xHi = (x / 0x100000) >>> 0;
  // x - xHi * 2^20 rather than x % 2^20: the same exact integer, without a floating-point remainder.
  const xLo = x - xHi * 0x100000;
  const yHi = (y / 0x100000) >>> 0;
  const yLo = y - yHi * 0x100000;
  const a = fmix(Math.imul(xHi ^ fmix(yHi + 0x9e3779b9), 0x01000193) ^ yLo);
  const b = fmix(Math.imul(xLo ^ 0x5bd1e995, 0x85ebca6b) ^ fmix(yLo ^ yHi ^ 0x27d4eb2f));
  return a * 0x100000 + (b >>> 12);
}
