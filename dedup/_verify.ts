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
  HIST_BINS,
  HIST_LEVELS,
  HIST_OFFSET,
  HIST_UNIT,
  THUMB_COLOUR,
  THUMB_LUMA,
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
}

/** The defaults, chosen on the accuracy suite (see BENCHMARKS.md). */
export const DEFAULT_THRESHOLDS: VerifyThresholds = {
  minCorrelation: 0.9,
  maxColourDifference: 12,
  maxUncoveredColour: 0.03,
};

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

/** How well a corpus thumbnail agrees with a stored one (orientation chosen by structure). */
export interface Agreement {
  correlation: number;
  colourDifference: number;
  /** Share of either image in colours the other lacks (0 when either is grayscale). */
  uncoveredColour: number;
  mirrored: boolean;
}

/** Compares a corpus image's thumbnail with a stored one, in both orientations. */
export function agreement(query: Uint8Array, stored: Uint8Array): Agreement {
  const mirrored = mirrorThumb(stored);
  const direct = correlation(query, stored);
  const flipped = correlation(query, mirrored);
  const useMirror = flipped > direct;
  // Either side grayscale: compare luma only (a grayscale copy, or a grayscale test set).
  const gray = isGray(query) || isGray(stored);
  return {
    correlation: useMirror ? flipped : direct,
    colourDifference: colourDifference(query, useMirror ? mirrored : stored, gray),
    uncoveredColour:
      gray || !hasHistogram(query) || !hasHistogram(stored)
        ? 0
        : Math.max(uncoveredShare(query, stored), uncoveredShare(stored, query)),
    mirrored: useMirror,
  };
}

/** Whether a candidate is a copy: structure and colour both agree. */
export function verified(a: Agreement, t: VerifyThresholds = DEFAULT_THRESHOLDS): boolean {
  return (
    a.correlation >= t.minCorrelation &&
    a.colourDifference <= t.maxColourDifference &&
    a.uncoveredColour <= t.maxUncoveredColour
  );
}
