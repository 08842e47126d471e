/**
 * 52-bit string hashes, exact integers in a JS number: the filter's counters key captions, tokens
 * and images by them instead of by strings, so that counting 10M captions does not create 10M
 * strings. Two independent 32-bit FNV-style lanes with a murmur finaliser; among 10M distinct keys
 * the chance that any two collide is about 1 %, and a collision only merges two keys' counts.
 */

const SPACE = 32;

/** Hash state: two 32-bit lanes. */
interface Lanes {
  a: number;
  b: number;
}

function feed(state: Lanes, text: string): void {
  let { a, b } = state;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x5bd1e995);
  }
  state.a = a;
  state.b = b;
}

function fmix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

function finish(state: Lanes): number {
  return fmix(state.a) * 0x100000 + (fmix(state.b) >>> 12);
}

const lanes: Lanes = { a: 0, b: 0 };

/** The 52-bit hash of a string. */
export function hash52(text: string): number {
  lanes.a = 0x811c9dc5;
  lanes.b = 0x9747b28c;
  feed(lanes, text);
  return finish(lanes);
}

/** The 52-bit hash of the bigram `first second` (equal to `hash52(first + ' ' + second)`), without building it. */
export function bigramHash52(first: string, second: string): number {
  lanes.a = 0x811c9dc5;
  lanes.b = 0x9747b28c;
  feed(lanes, first);
  lanes.a = Math.imul(lanes.a ^ SPACE, 0x01000193);
  lanes.b = Math.imul(lanes.b ^ SPACE, 0x5bd1e995);
  feed(lanes, second);
  return finish(lanes);
}

/** A sha256 hex digest's first 52 bits: already uniform, no need to hash again. */
export function sha52(sha256: string): number {
  const h = parseInt(sha256.slice(0, 13), 16);
  // Not hex (a sha256 written by some other tool in another form): hash it like any string.
  return Number.isNaN(h) ? hash52(sha256) : h;
}

/** A 52-bit hash of an ordered pair of 52-bit hashes (a caption and an image, say). */
export function pairHash52(x: number, y: number): number {
  const xHi = (x / 0x100000) >>> 0;
  const xLo = x % 0x100000;
  const yHi = (y / 0x100000) >>> 0;
  const yLo = y % 0x100000;
  const a = fmix(Math.imul(xHi ^ fmix(yHi + 0x9e3779b9), 0x01000193) ^ yLo);
  const b = fmix(Math.imul(xLo ^ 0x5bd1e995, 0x85ebca6b) ^ fmix(yLo ^ yHi ^ 0x27d4eb2f));
  return a * 0x100000 + (b >>> 12);
}
