/**
 * The second stage of a match: a hash within the distance only nominates a candidate; the two
 * verification thumbnails must also agree. Structure: the correlation of the 16×16 luma grids
 * (the better of the registered image and its mirror, since the hash cannot tell them apart).
 * Colour: the mean difference of the 8×8 colour grids, compared in luma when either image is
 * grayscale. Palette: the share of either image in colours the other lacks (colour histograms,
 * one bin of tolerance). Structure rejects another vendor's drawing of the same concept (similar
 * hash, different structure); the palette rejects a skin-tone variant (same structure, a colour
 * the original does not have, often on too little of the image for the 8×8 mean to notice).
 */
import {
  BOX_BYTES,
  FINE,
  FINE_BYTES,
  HIST_BINS,
  HIST_LEVELS,
  HIST_OFFSET,
  HIST_UNIT,
  THUMB_BYTES,
  THUMB_COLOUR,
  THUMB_LUMA,
  mirrorFine,
  mirrorThumb,
} from './fingerprint.ts';

/** Thresholds of the verification. */
export interface VerifyThresholds {
  /** Lowest luma correlation accepted. */
  minCorrelation: number;
  /** Highest mean colour difference accepted (0–255 scale). */
  maxColourDifference: number;
  /** Highest share of either image in colours the other lacks (0–1; colour images only). */
  maxUncoveredColour: number;
  /** Largest compact difference accepted, in cells of the fine grid (see {@link Agreement}). */
  maxCompactDifference: number;
}

/** The defaults, chosen on the accuracy suite (see BENCHMARKS.md). */
export const DEFAULT_THRESHOLDS: VerifyThresholds = {
  minCorrelation: 0.9,
  maxColourDifference: 12,
  maxUncoveredColour: 0.03,
  maxCompactDifference: 0,
};

/** A fine-grid cell differs strongly when it is further than this (CIELAB ΔE) from every cell near it in the other image. */
export const STRONG_DELTA_E = 30;

const LUMA_CELLS = THUMB_LUMA * THUMB_LUMA;
const COLOUR_CELLS = THUMB_COLOUR * THUMB_COLOUR;
/** Mean channel spread below which a thumbnail counts as grayscale. */
const GRAY_SPREAD = 6;

function correlation(a: Uint8Array, b: Uint8Array): number {
  let ma = 0;
  let mb = 0;
  for (let i = 0; i < LUMA_CELLS; i++) {
    ma += a[i] as number;
    mb += b[i] as number;
  }
  ma /= LUMA_CELLS;
  mb /= LUMA_CELLS;
  let ab = 0;
  let aa = 0;
  let bb = 0;
  for (let i = 0; i < LUMA_CELLS; i++) {
    const x = (a[i] as number) - ma;
    const y = (b[i] as number) - mb;
    ab += x * y;
    aa += x * x;
    bb += y * y;
  }
  // Two flat images have no structure to compare: equal flat images correlate fully.
  if (aa < 1e-6 || bb < 1e-6) return aa < 1e-6 && bb < 1e-6 ? 1 : 0;
  return ab / Math.sqrt(aa * bb);
}

function isGray(t: Uint8Array): boolean {
  let spread = 0;
  for (let i = LUMA_CELLS; i < HIST_OFFSET; i += 3) {
    const r = t[i] as number;
    const g = t[i + 1] as number;
    const b = t[i + 2] as number;
    spread += Math.max(r, g, b) - Math.min(r, g, b);
  }
  return spread / COLOUR_CELLS < GRAY_SPREAD;
}

function colourDifference(query: Uint8Array, stored: Uint8Array, gray: boolean): number {
  let sum = 0;
  for (let i = LUMA_CELLS; i < HIST_OFFSET; i += 3) {
    const [qr, qg, qb] = [query[i] as number, query[i + 1] as number, query[i + 2] as number];
    const [sr, sg, sb] = [stored[i] as number, stored[i + 1] as number, stored[i + 2] as number];
    if (gray) sum += Math.abs(0.299 * (qr - sr) + 0.587 * (qg - sg) + 0.114 * (qb - sb));
    else sum += (Math.abs(qr - sr) + Math.abs(qg - sg) + Math.abs(qb - sb)) / 3;
  }
  return sum / COLOUR_CELLS;
}

/**
 * The share of `a`'s pixels whose colour `b` lacks: per histogram bin, what `a` has beyond what
 * `b` has in that bin and its 26 neighbours (so JPEG and resampling, which move colours by a bin,
 * cost nothing). A skin-tone variant's skin colour is in no neighbouring bin of the original's.
 */
function uncoveredShare(a: Uint8Array, b: Uint8Array): number {
  const L = HIST_LEVELS;
  let uncovered = 0;
  for (let r = 0; r < L; r++) {
    for (let g = 0; g < L; g++) {
      for (let bl = 0; bl < L; bl++) {
        const mass = a[HIST_OFFSET + (r * L + g) * L + bl] as number;
        if (mass === 0) continue;
        let near = 0;
        for (let dr = Math.max(0, r - 1); dr <= Math.min(L - 1, r + 1); dr++)
          for (let dg = Math.max(0, g - 1); dg <= Math.min(L - 1, g + 1); dg++)
            for (let db = Math.max(0, bl - 1); db <= Math.min(L - 1, bl + 1); db++)
              near += b[HIST_OFFSET + (dr * L + dg) * L + db] as number;
        if (mass > near) uncovered += mass - near;
      }
    }
  }
  return uncovered / HIST_UNIT;
}

/** Whether a thumbnail carries the colour histogram (fingerprints before fp3 do not). */
const hasHistogram = (t: Uint8Array) => t.length >= HIST_OFFSET + HIST_BINS;

/** The fine grid a thumbnail carries: its own, or for a registered crop, the part of its base variant's grid where the crop lies. */
function fineOf(thumb: Uint8Array, base: Uint8Array | undefined): Uint8Array | null {
  if (thumb.length === THUMB_BYTES + FINE_BYTES) return thumb.subarray(THUMB_BYTES);
  if (thumb.length !== THUMB_BYTES + BOX_BYTES || base?.length !== THUMB_BYTES + FINE_BYTES) return null;
  const view = new DataView(thumb.buffer, thumb.byteOffset + THUMB_BYTES, BOX_BYTES);
  const [rx, ry, rw, rh] = [0, 1, 2, 3].map((i) => view.getUint16(i * 2) / 65535) as [number, number, number, number];
  const grid = base.subarray(THUMB_BYTES);
  const out = new Uint8Array(FINE_BYTES);
  for (let gy = 0; gy < FINE; gy++) {
    const y = Math.min(Math.max((ry + ((gy + 0.5) / FINE) * rh) * FINE - 0.5, 0), FINE - 1);
    const ya = Math.floor(y);
    const yb = Math.min(ya + 1, FINE - 1);
    const ty = y - ya;
    for (let gx = 0; gx < FINE; gx++) {
      const x = Math.min(Math.max((rx + ((gx + 0.5) / FINE) * rw) * FINE - 0.5, 0), FINE - 1);
      const xa = Math.floor(x);
      const xb = Math.min(xa + 1, FINE - 1);
      const tx = x - xa;
      // Byte offsets of the four cells around the sample (no closure here: tsx names each one it
      // makes, and this loop would make 3,072 a grid).
      const aa = (ya * FINE + xa) * 3;
      const ab = (ya * FINE + xb) * 3;
      const ba = (yb * FINE + xa) * 3;
      const bb = (yb * FINE + xb) * 3;
      for (let c = 0; c < 3; c++) {
        const top = (grid[aa + c] as number) * (1 - tx) + (grid[ab + c] as number) * tx;
        const bottom = (grid[ba + c] as number) * (1 - tx) + (grid[bb + c] as number) * tx;
        out[(gy * FINE + gx) * 3 + c] = Math.round(top * (1 - ty) + bottom * ty);
      }
    }
  }
  return out;
}

const STRONG_SQUARED = STRONG_DELTA_E * STRONG_DELTA_E;

/**
 * Whether cell `i` of `a` and cell `j` of `b` (byte offsets) are within {@link STRONG_DELTA_E}. A
 * module function, not a closure made in the loop: tsx (esbuild's keepNames) wraps every named
 * closure it makes in a naming call, which cost more than the arithmetic.
 */
function cellsClose(a: Uint8Array, i: number, b: Uint8Array, j: number, gray: boolean): boolean {
  const dl = ((a[i] as number) - (b[j] as number)) / 2.55;
  if (gray) return dl * dl <= STRONG_SQUARED;
  const da = (a[i + 1] as number) - (b[j + 1] as number);
  const db = (a[i + 2] as number) - (b[j + 2] as number);
  return dl * dl + da * da + db * db <= STRONG_SQUARED;
}

/**
 * Marks in `strong` (1) each cell of `a` further than {@link STRONG_DELTA_E} (ΔE; L only when
 * `gray`) from every cell of `b` at most one cell away. Squared distances, and the cell at the same
 * place tried first: in a copy it is nearly always close, and one close cell settles it.
 */
function markStrong(a: Uint8Array, b: Uint8Array, gray: boolean, strong: Uint8Array): void {
  for (let y = 0; y < FINE; y++) {
    for (let x = 0; x < FINE; x++) {
      const cell = y * FINE + x;
      const i = cell * 3;
      if (strong[cell] === 1 || cellsClose(a, i, b, i, gray)) continue;
      let close = false;
      for (let yy = Math.max(0, y - 1); yy <= Math.min(FINE - 1, y + 1) && !close; yy++) {
        for (let xx = Math.max(0, x - 1); xx <= Math.min(FINE - 1, x + 1) && !close; xx++) {
          if (yy !== y || xx !== x) close = cellsClose(a, i, b, (yy * FINE + xx) * 3, gray);
        }
      }
      if (!close) strong[cell] = 1;
    }
  }
}

/**
 * The compact difference of two aligned fine grids: cells that differ strongly (ΔE above
 * {@link STRONG_DELTA_E} from every cell within one cell of them in the other grid, either way),
 * then the 2×2 blocks of such cells, then the largest 4-connected group of those blocks. JPEG and
 * resampling leave small or thin differences (edges); a skin tone or another face leaves a blob.
 */
function compactDifference(a: Uint8Array, b: Uint8Array, gray: boolean): number {
  const mask = new Uint8Array(FINE * FINE);
  markStrong(a, b, gray, mask);
  markStrong(b, a, gray, mask);
  return largestBlob(mask, FINE);
}

/** The largest 4-connected group of 2×2 blocks of `strong` cells (a `side` × `side` grid), in blocks. */
export function largestBlob(strong: Uint8Array, side: number): number {
  const block = new Uint8Array(side * side);
  for (let y = 0; y < side - 1; y++)
    for (let x = 0; x < side - 1; x++) {
      const i = y * side + x;
      if (strong[i] && strong[i + 1] && strong[i + side] && strong[i + side + 1]) block[i] = 1;
    }
  let largest = 0;
  const stack: number[] = [];
  for (let s = 0; s < block.length; s++) {
    if (block[s] !== 1) continue;
    let n = 0;
    block[s] = 2;
    stack.push(s);
    while (stack.length > 0) {
      const i = stack.pop() as number;
      n++;
      const y = Math.floor(i / side);
      const x = i % side;
      for (const j of [
        x > 0 ? i - 1 : -1,
        x < side - 1 ? i + 1 : -1,
        y > 0 ? i - side : -1,
        y < side - 1 ? i + side : -1,
      ]) {
        if (j >= 0 && block[j] === 1) {
          block[j] = 2;
          stack.push(j);
        }
      }
    }
    largest = Math.max(largest, n);
  }
  return largest;
}

/** How well a corpus thumbnail agrees with a stored one (orientation chosen by structure). */
export interface Agreement {
  correlation: number;
  colourDifference: number;
  /** Share of either image in colours the other lacks (0 when either is grayscale). */
  uncoveredColour: number;
  /**
   * The largest compact region where the fine colour grids (32×32 CIELAB) differ strongly, in
   * 2×2 blocks of cells: 0 for a copy, more for a skin-tone variant or another face. 0 when
   * either thumbnail has no fine grid (fingerprints before fp4).
   */
  compactDifference: number;
  mirrored: boolean;
  /** Whether either thumbnail is grayscale (colour is then compared in luma only). */
  gray: boolean;
}

/**
 * Compares a corpus image's thumbnail with a stored one, in both orientations. `storedBase`: the
 * thumbnail of the stored image's base variant, where `stored` is a registered crop (its fine
 * grid is taken from the base's).
 */
export function agreement(query: Uint8Array, stored: Uint8Array, storedBase?: Uint8Array): Agreement {
  const mirrored = mirrorThumb(stored);
  const direct = correlation(query, stored);
  const flipped = correlation(query, mirrored);
  const useMirror = flipped > direct;
  // Either side grayscale: compare luma only (a grayscale copy, or a grayscale test set).
  const gray = isGray(query) || isGray(stored);
  const queryFine = fineOf(query, undefined);
  let storedFine = fineOf(stored, storedBase);
  if (storedFine && useMirror) storedFine = mirrorFine(storedFine);
  return {
    correlation: useMirror ? flipped : direct,
    colourDifference: colourDifference(query, useMirror ? mirrored : stored, gray),
    uncoveredColour:
      gray || !hasHistogram(query) || !hasHistogram(stored)
        ? 0
        : Math.max(uncoveredShare(query, stored), uncoveredShare(stored, query)),
    compactDifference: queryFine && storedFine ? compactDifference(queryFine, storedFine, gray) : 0,
    mirrored: useMirror,
    gray,
  };
}

/** Whether a candidate is a copy: structure and colour both agree. */
export function verified(a: Agreement, t: VerifyThresholds = DEFAULT_THRESHOLDS): boolean {
  return (
    a.correlation >= t.minCorrelation &&
    a.colourDifference <= t.maxColourDifference &&
    a.uncoveredColour <= t.maxUncoveredColour &&
    a.compactDifference <= t.maxCompactDifference
  );
}
