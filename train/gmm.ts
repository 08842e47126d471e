/**
 * A two-component one-dimensional Gaussian mixture fitted by expectation–maximisation, as NCR and
 * NLIP use it on per-pair losses: the low-loss component is "clean", the high-loss one "noisy".
 */

/** A fitted mixture; component 0 has the lower mean. */
export interface Gmm1d {
  means: [number, number];
  variances: [number, number];
  weights: [number, number];
  /** Mean log-likelihood per value at the end. */
  logLikelihood: number;
  /** EM iterations run. */
  iterations: number;
}

/** Options of {@link fitGmm}. */
export interface GmmOptions {
  /** Most EM iterations. @default 100 */
  maxIterations?: number;
  /** Stop when the mean log-likelihood improves by less than this. @default 1e-6 */
  tolerance?: number;
  /** Smallest variance a component may take (NCR: 5e-4 on min-max normalised losses). @default 5e-4 */
  varianceFloor?: number;
}

const LOG_2PI = Math.log(2 * Math.PI);

function logNormal(x: number, mean: number, variance: number): number {
  const d = x - mean;
  return -0.5 * (LOG_2PI + Math.log(variance) + (d * d) / variance);
}

/** Value at quantile q of a sorted array (linear interpolation). */
function quantile(sorted: Float64Array, q: number): number {
  const pos = q * (sorted.length - 1);
  const lo = Math.floor(pos);
  const hi = Math.min(sorted.length - 1, lo + 1);
  return (sorted[lo] as number) + ((sorted[hi] as number) - (sorted[lo] as number)) * (pos - lo);
}

/**
 * Fits two Gaussians to `values` by EM. Deterministic: the means start at the 25th and 75th
 * percentiles (at the smallest and largest value when those coincide), both variances at the
 * overall variance (floored), equal weights.
 */
export function fitGmm(values: ArrayLike<number>, options: GmmOptions = {}): Gmm1d {
  const n = values.length;
  if (n === 0) throw new RangeError('fitGmm needs at least one value');
  const maxIterations = options.maxIterations ?? 100;
  const tolerance = options.tolerance ?? 1e-6;
  const floor = options.varianceFloor ?? 5e-4;
  const xs = Float64Array.from(values as ArrayLike<number>);
  const sorted = Float64Array.from(xs).sort();
  let mean = 0;
  for (const x of xs) mean += x;
  mean /= n;
  let variance = 0;
  for (const x of xs) variance += (x - mean) ** 2;
  variance = Math.max(floor, variance / n);

  // Components that start at the same mean stay identical under EM (every posterior 0.5). When
  // more than half the values are equal (an agreement gap of exactly 0 for most clean pairs), the
  // quartiles coincide: start at the extremes instead.
  const q1 = quantile(sorted, 0.25);
  const q3 = quantile(sorted, 0.75);
  const mu: [number, number] = q1 < q3 ? [q1, q3] : [sorted[0] as number, sorted[n - 1] as number];
  const v: [number, number] = [variance, variance];
  const w: [number, number] = [0.5, 0.5];
  const r1 = new Float64Array(n);
  let previous = -Infinity;
  let ll = -Infinity;
  let iterations = 0;
  for (; iterations < maxIterations;) {
    iterations++;
    // E step: responsibilities of component 1, and the log-likelihood.
    ll = 0;
    for (let i = 0; i < n; i++) {
      const x = xs[i] as number;
      const a = Math.log(w[0]) + logNormal(x, mu[0], v[0]);
      const b = Math.log(w[1]) + logNormal(x, mu[1], v[1]);
      const m = Math.max(a, b);
      const lse = m + Math.log(Math.exp(a - m) + Math.exp(b - m));
      r1[i] = Math.exp(b - lse);
      ll += lse;
    }
    ll /= n;
    // M step.
    let n1 = 0;
    let s1 = 0;
    let s0 = 0;
    for (let i = 0; i < n; i++) {
      const r = r1[i] as number;
      n1 += r;
      s1 += r * (xs[i] as number);
      s0 += (1 - r) * (xs[i] as number);
    }
    const n0 = n - n1;
    const eps = 1e-12;
    mu[0] = n0 > eps ? s0 / n0 : mu[0];
    mu[1] = n1 > eps ? s1 / n1 : mu[1];
    let squares0 = 0;
    let squares1 = 0;
    for (let i = 0; i < n; i++) {
      const r = r1[i] as number;
      const x = xs[i] as number;
      squares0 += (1 - r) * (x - mu[0]) ** 2;
      squares1 += r * (x - mu[1]) ** 2;
    }
    v[0] = Math.max(floor, n0 > eps ? squares0 / n0 : floor);
    v[1] = Math.max(floor, n1 > eps ? squares1 / n1 : floor);
    w[0] = Math.min(1 - 1e-6, Math.max(1e-6, n0 / n));
    w[1] = 1 - w[0];
    if (Math.abs(ll - previous) < tolerance) break;
    previous = ll;
  }
  if (mu[0] > mu[1]) {
    return {
      means: [mu[1], mu[0]],
      variances: [v[1], v[0]],
      weights: [w[1], w[0]],
      logLikelihood: ll,
      iterations,
    };
  }
  return { means: mu, variances: v, weights: w, logLikelihood: ll, iterations };
}

function rawLogOdds(gmm: Gmm1d, x: number): number {
  const a = Math.log(gmm.weights[0]) + logNormal(x, gmm.means[0], gmm.variances[0]);
  const b = Math.log(gmm.weights[1]) + logNormal(x, gmm.means[1], gmm.variances[1]);
  return b - a;
}

/**
 * Log-odds that `x` belongs to the high-mean component, made monotone in `x`. With unequal
 * variances the log-odds is a parabola and the wider component wins back one tail (a wide noisy
 * component would call the very lowest losses noisy); it is held at its value at the parabola's
 * vertex beyond it, so a larger loss never means a cleaner pair.
 */
export function highLogOdds(gmm: Gmm1d, x: number): number {
  const [m0, m1] = gmm.means;
  const [v0, v1] = gmm.variances;
  if (v0 !== v1) {
    const vertex = (m1 * v0 - m0 * v1) / (v0 - v1);
    // v1 > v0: convex log-odds, minimum at the vertex; v0 > v1: concave, maximum there.
    if (v1 > v0 && x < vertex) return rawLogOdds(gmm, vertex);
    if (v0 > v1 && x > vertex) return rawLogOdds(gmm, vertex);
  }
  return rawLogOdds(gmm, x);
}

/** Posterior probability that `x` belongs to the high-mean component (monotone: {@link highLogOdds}). */
export function highPosterior(gmm: Gmm1d, x: number): number {
  return 1 / (1 + Math.exp(-highLogOdds(gmm, x)));
}

/**
 * Natural log of the posterior probability that `x` belongs to the low-mean component, i.e. of
 * `1 - highPosterior`: finite however far `x` lies in the high component, where the high
 * posterior rounds to 1 and the low one underflows to 0.
 */
export function logLowPosterior(gmm: Gmm1d, x: number): number {
  const l = highLogOdds(gmm, x);
  // -log(1 + e^l), without overflow.
  return l > 0 ? -l - Math.log1p(Math.exp(-l)) : -Math.log1p(Math.exp(l));
}

/**
 * Ashman's D: the distance between the means in units of the pooled standard deviation.
 * Above 2 the two components are clearly separated (a bimodal distribution); a mixture fitted
 * to one clean hump gives well under 2.
 */
export function separation(gmm: Gmm1d): number {
  return (Math.SQRT2 * Math.abs(gmm.means[1] - gmm.means[0])) / Math.sqrt(gmm.variances[0] + gmm.variances[1]);
}

/** Rescales values to [0, 1] (all zero when they are all equal). */
export function minMaxNormalise(values: ArrayLike<number>): Float32Array {
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < values.length; i++) {
    const x = values[i] as number;
    if (x < lo) lo = x;
    if (x > hi) hi = x;
  }
  const out = new Float32Array(values.length);
  const range = hi - lo;
  if (!(range > 0)) return out;
  for (let i = 0; i < values.length; i++) out[i] = ((values[i] as number) - lo) / range;
  return out;
}
