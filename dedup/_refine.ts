/**
 * The second pass of a match (run by dedup; nothing of it is stored in the fingerprint): a
 * candidate that passed the thumbnail verification is compared again at full resolution, with
 * the registered image's own pixels. The registered box is first aligned on the corpus image's
 * content box (a search over its position, size and a rotation of a few degrees, so that a crop,
 * a resize's rounding, a trim one pixel off or a slight rotation do not leave edges that differ),
 * then the two are compared in CIELAB on a grid as fine as the smaller of the two boxes (at most
 * {@link MAX_SIDE} cells). A skin tone on a face of ~10 px (the people in wheelchairs or with a
 * white cane) is a compact region of strong colour difference there, where a JPEG or a resize
 * leaves thin differences along edges; the 32×32 grid of the thumbnail could not tell them apart.
 * The mean difference of the aligned grids ranks several verified candidates: the true source
 * agrees best, where a mirror-image look-alike could correlate better in the 16×16 luma thumbnail.
 */
import type { Box, Pixels } from './fingerprint.ts';
import { largestBlob } from './_verify.ts';

/** Largest side of the comparison grid (the registered emoji are 64 px). */
export const MAX_SIDE = 64;
/** Smallest side of the comparison grid. */
const MIN_SIDE = 16;
/** Side of the grid the alignment search runs on. */
const SEARCH_SIDE = 32;

/**
 * The second pass's settings, recorded with each shard's match so that a change re-matches it:
 * a cell differs strongly above `strongDeltaE` (CIELAB ΔE, from every cell within one cell of
 * it in the other grid), and a candidate is rejected when the largest compact region of such
 * cells exceeds `maxCompactDifference` of the grid.
 */
export const SECOND_PASS = { version: 1, strongDeltaE: 30, maxCompactDifference: 0.004 } as const;

/** What the full-resolution comparison found. */
export interface Refinement {
  /** Mean CIELAB ΔE of the aligned grids (L only when either image is grayscale). */
  meanDifference: number;
  /** Largest 4-connected group of 2×2 blocks of strongly differing cells, as a share of the grid. */
  compactDifference: number;
  /** Side of the comparison grid. */
  side: number;
  /** Per cell: how far (ΔE) it is from every cell within one cell of it in the other grid, the larger of both ways. */
  difference: Float32Array;
  /** The registered box after alignment. */
  box: Box;
  /** The rotation (degrees) of the registered box's sampling after alignment. */
  angle: number;
}

/** sRGB byte to linear light. */
const LINEAR = Float64Array.from({ length: 256 }, (_, v) => {
  const c = v / 255;
  return c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
});

/** CIELAB (D65) of every pixel of an image, as floats (L, a, b per pixel). */
export function labImage(p: Pixels): Float32Array {
  const n = p.width * p.height;
  const out = new Float32Array(n * 3);
  const f = (t: number) => (t > 0.008856 ? Math.cbrt(t) : 7.787 * t + 16 / 116);
  const d = p.data;
  for (let i = 0; i < n; i++) {
    const R = LINEAR[d[i * 3] as number] as number;
    const G = LINEAR[d[i * 3 + 1] as number] as number;
    const B = LINEAR[d[i * 3 + 2] as number] as number;
    const fx = f((0.4124 * R + 0.3576 * G + 0.1805 * B) / 0.95047);
    const fy = f(0.2126 * R + 0.7152 * G + 0.0722 * B);
    const fz = f((0.0193 * R + 0.1192 * G + 0.9505 * B) / 1.08883);
    out[i * 3] = 116 * fy - 16;
    out[i * 3 + 1] = 500 * (fx - fy);
    out[i * 3 + 2] = 200 * (fy - fz);
  }
  return out;
}

/** An image in CIELAB: what the second pass samples. */
export interface LabImage {
  lab: Float32Array;
  width: number;
  height: number;
}

/** {@link labImage} with its size. */
export const toLabImage = (p: Pixels): LabImage => ({ lab: labImage(p), width: p.width, height: p.height });

/**
 * `box` of a CIELAB image stretched onto a `side`² grid (mirrored when asked): each cell the mean
 * of `samples`² bilinear samples (an area average when shrinking, smooth when enlarging).
 */
function labGrid(img: LabImage, box: Box, side: number, mirror: boolean, samples = 4, angle = 0): Float32Array {
  const out = new Float32Array(side * side * 3);
  const { lab, width, height } = img;
  const n = samples * samples;
  // A small rotation (degrees) of the sampling about the box's centre: a rotated copy.
  const cos = Math.cos((angle * Math.PI) / 180);
  const sin = Math.sin((angle * Math.PI) / 180);
  const cx = box.x + box.w / 2;
  const cy = box.y + box.h / 2;
  for (let gy = 0; gy < side; gy++) {
    for (let gx = 0; gx < side; gx++) {
      const sx = mirror ? side - 1 - gx : gx;
      let l = 0;
      let a = 0;
      let b = 0;
      for (let j = 0; j < samples; j++) {
        const py = box.y + ((gy + (j + 0.5) / samples) * box.h) / side - cy;
        for (let i = 0; i < samples; i++) {
          const px = box.x + ((sx + (i + 0.5) / samples) * box.w) / side - cx;
          const y = Math.min(Math.max(cy + px * sin + py * cos - 0.5, 0), height - 1);
          const ya = Math.floor(y);
          const yb = Math.min(ya + 1, height - 1);
          const ty = y - ya;
          const x = Math.min(Math.max(cx + px * cos - py * sin - 0.5, 0), width - 1);
          const xa = Math.floor(x);
          const xb = Math.min(xa + 1, width - 1);
          const tx = x - xa;
          const w00 = (1 - tx) * (1 - ty);
          const w01 = tx * (1 - ty);
          const w10 = (1 - tx) * ty;
          const w11 = tx * ty;
          const p00 = (ya * width + xa) * 3;
          const p01 = (ya * width + xb) * 3;
          const p10 = (yb * width + xa) * 3;
          const p11 = (yb * width + xb) * 3;
          l +=
            (lab[p00] as number) * w00 +
            (lab[p01] as number) * w01 +
            (lab[p10] as number) * w10 +
            (lab[p11] as number) * w11;
          a +=
            (lab[p00 + 1] as number) * w00 +
            (lab[p01 + 1] as number) * w01 +
            (lab[p10 + 1] as number) * w10 +
            (lab[p11 + 1] as number) * w11;
          b +=
            (lab[p00 + 2] as number) * w00 +
            (lab[p01 + 2] as number) * w01 +
            (lab[p10 + 2] as number) * w10 +
            (lab[p11 + 2] as number) * w11;
        }
      }
      const c = (gy * side + gx) * 3;
      out[c] = l / n;
      out[c + 1] = a / n;
      out[c + 2] = b / n;
    }
  }
  return out;
}

function deltaE(a: Float32Array, i: number, b: Float32Array, j: number, gray: boolean): number {
  const dl = (a[i] as number) - (b[j] as number);
  if (gray) return Math.abs(dl);
  return Math.hypot(dl, (a[i + 1] as number) - (b[j + 1] as number), (a[i + 2] as number) - (b[j + 2] as number));
}

function meanDifference(a: Float32Array, b: Float32Array, cells: number, gray: boolean): number {
  let sum = 0;
  for (let i = 0; i < cells; i++) sum += deltaE(a, i * 3, b, i * 3, gray);
  return sum / cells;
}

/** Per cell of `a`: the smallest ΔE to a cell of `b` at most one cell away. */
function nearestDifference(a: Float32Array, b: Float32Array, side: number, gray: boolean): Float32Array {
  const out = new Float32Array(side * side);
  for (let y = 0; y < side; y++) {
    for (let x = 0; x < side; x++) {
      const i = (y * side + x) * 3;
      let best = Infinity;
      for (let yy = Math.max(0, y - 1); yy <= Math.min(side - 1, y + 1); yy++) {
        for (let xx = Math.max(0, x - 1); xx <= Math.min(side - 1, x + 1); xx++) {
          const d = deltaE(a, i, b, (yy * side + xx) * 3, gray);
          if (d < best) best = d;
        }
      }
      out[y * side + x] = best;
    }
  }
  return out;
}

/** The largest compact region (2×2 blocks, 4-connected) of cells whose difference exceeds `strong`, as a share of the grid. */
export function compactShare(difference: Float32Array, side: number, strong: number): number {
  const mask = new Uint8Array(side * side);
  for (let i = 0; i < mask.length; i++) mask[i] = (difference[i] as number) > strong ? 1 : 0;
  return largestBlob(mask, side) / (side * side);
}

/** Largest rotation (degrees) the alignment tries. */
const MAX_ANGLE = 4;

/** A registered box and the rotation of its sampling. */
interface Placement {
  box: Box;
  angle: number;
}

/**
 * Aligns a box of the registered image on the corpus grid `query` (side `side`), starting from
 * each of `starts` (the matched variant's box, and the base box: a whole copy can be nominated by
 * a crop's hash): coordinate descent over the box's position and size, in steps of 2, 1, 0.5 and
 * 0.25 registered pixels, and its rotation (steps of half as many degrees, at most
 * {@link MAX_ANGLE}), minimising the mean ΔE; a box moves at most 15 % of its size from where it
 * started. Returns the best placement found.
 */
function align(
  query: Float32Array,
  reg: LabImage,
  starts: readonly Box[],
  side: number,
  mirror: boolean,
  gray: boolean,
): Placement {
  const cells = side * side;
  const cost = (v: number[]) =>
    meanDifference(
      query,
      labGrid(
        reg,
        { x: v[0] as number, y: v[1] as number, w: v[2] as number, h: v[3] as number },
        side,
        mirror,
        2,
        v[4],
      ),
      cells,
      gray,
    );
  let overall: { v: number[]; cost: number } | null = null;
  for (const start of starts) {
    const origin = [start.x, start.y, start.w, start.h, 0];
    const limit = [0.15 * start.w, 0.15 * start.h, 0.15 * start.w, 0.15 * start.h, MAX_ANGLE];
    let best = [...origin];
    let bestCost = cost(best);
    for (const step of [2, 1, 0.5, 0.25]) {
      for (let pass = 0; pass < 4; pass++) {
        let moved = false;
        for (let k = 0; k < 5; k++) {
          for (const sign of [-1, 1]) {
            const v = [...best];
            v[k] = (v[k] as number) + sign * (k === 4 ? step / 2 : step);
            if (Math.abs((v[k] as number) - (origin[k] as number)) > (limit[k] as number)) continue;
            if ((v[2] as number) < 4 || (v[3] as number) < 4) continue;
            const c = cost(v);
            if (c < bestCost - 1e-9) {
              best = v;
              bestCost = c;
              moved = true;
            }
          }
        }
        if (!moved) break;
      }
    }
    if (overall === null || bestCost < overall.cost) overall = { v: best, cost: bestCost };
  }
  const v = (overall as { v: number[] }).v;
  return { box: { x: v[0] as number, y: v[1] as number, w: v[2] as number, h: v[3] as number }, angle: v[4] as number };
}

/** Options of {@link refine} (the defaults are the dedup stage's). */
export interface RefineOptions {
  /** A cell differs strongly when further than this (ΔE) from every cell within one cell of it in the other grid. */
  strongDeltaE?: number;
}

/**
 * Compares a corpus image's content box with a registered image's box (the part the matched hash
 * covers), after aligning the latter, at full resolution. `mirrored`: compare with the registered
 * image mirrored (the orientation the thumbnail verification chose); `gray`: luma only.
 */
export function refine(
  query: LabImage,
  queryBox: Box,
  reg: LabImage,
  regBoxes: readonly Box[],
  mirrored: boolean,
  gray: boolean,
  options: RefineOptions = {},
): Refinement {
  const T = options.strongDeltaE ?? SECOND_PASS.strongDeltaE;
  const first = regBoxes[0] as Box;
  const side = Math.round(
    Math.max(MIN_SIDE, Math.min(MAX_SIDE, Math.max(queryBox.w, queryBox.h), Math.max(first.w, first.h))),
  );
  const searchSide = Math.min(side, SEARCH_SIDE);
  const { box, angle } = align(
    labGrid(query, queryBox, searchSide, false, 2),
    reg,
    regBoxes,
    searchSide,
    mirrored,
    gray,
  );
  const q = labGrid(query, queryBox, side, false);
  const r = labGrid(reg, box, side, mirrored, 4, angle);
  const cells = side * side;
  const qr = nearestDifference(q, r, side, gray);
  const rq = nearestDifference(r, q, side, gray);
  const difference = new Float32Array(cells);
  for (let i = 0; i < cells; i++) difference[i] = Math.max(qr[i] as number, rq[i] as number);
  return {
    meanDifference: meanDifference(q, r, cells, gray),
    compactDifference: compactShare(difference, side, T),
    side,
    difference,
    box,
    angle,
  };
}
