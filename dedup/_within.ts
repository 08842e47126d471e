/**
 * Near-duplicate clusters inside one corpus, kept lean enough for millions of prints: the corpus
 * is looked up in its own in-memory index a block of positions at a time (only a block's hit lists
 * exist at once), a thumbnail is read only for a print that has a candidate, and the clusters and
 * verified pairs live in typed arrays. What is a cluster: prints joined by verified pairs
 * (union-find), whatever the order the pairs are found in.
 */
import type { MihTable } from './_mih.ts';
import { agreement, verified, type VerifyThresholds } from './_verify.ts';

/** Positions looked up together: bounds the hit lists held at once (a few MB). */
export const WITHIN_BLOCK = 1 << 16;

/** Verified pairs `a[k] < b[k]` (positions), their hash distance and whether the match was mirrored. */
export class PairList {
  count = 0;
  a = new Uint32Array(1024);
  b = new Uint32Array(1024);
  distance = new Uint8Array(1024);
  mirrored = new Uint8Array(1024);

  push(a: number, b: number, distance: number, mirrored: boolean): void {
    if (this.count === this.a.length) {
      const grow = <T extends Uint32Array | Uint8Array>(old: T, fresh: T): T => (fresh.set(old), fresh);
      const size = this.count * 2;
      this.a = grow(this.a, new Uint32Array(size));
      this.b = grow(this.b, new Uint32Array(size));
      this.distance = grow(this.distance, new Uint8Array(size));
      this.mirrored = grow(this.mirrored, new Uint8Array(size));
    }
    this.a[this.count] = a;
    this.b[this.count] = b;
    this.distance[this.count] = distance;
    this.mirrored[this.count] = mirrored ? 1 : 0;
    this.count++;
  }
}

/** The clusters of a corpus: `root[i]` is the smallest position of i's cluster (i alone: i). */
export interface Clusters {
  root: Int32Array;
  pairs: PairList;
}

export interface ClusterOptions {
  maxDistance: number;
  thresholds: VerifyThresholds;
  /** Positions looked up together (default {@link WITHIN_BLOCK}). */
  block?: number;
  /** Checked before each block; aborted, the search stops and returns null. */
  signal?: AbortSignal;
  /** Positions done, after each block (and 0 before the first). */
  onProgress?: (done: number) => void;
}

/**
 * Every pair of prints in `index` within `maxDistance` bits whose thumbnails agree, joined into
 * clusters. `thumbAt(i)` reads the thumbnail of position i (asked in rising order for the first of
 * a pair, so a table stored in position order is read front to back). Yields to the event loop
 * between blocks, so a signal can stop it; null when it did.
 */
export async function findClusters(
  index: MihTable,
  thumbAt: (position: number) => Uint8Array,
  opts: ClusterOptions,
): Promise<Clusters | null> {
  const n = index.size;
  const block = opts.block ?? WITHIN_BLOCK;
  const parent = new Int32Array(n);
  for (let i = 0; i < n; i++) parent[i] = i;
  const find = (i: number): number => {
    while (parent[i] !== i) {
      parent[i] = parent[parent[i] as number] as number;
      i = parent[i] as number;
    }
    return i;
  };
  const pairs = new PairList();
  opts.onProgress?.(0);
  for (let start = 0; start < n; start += block) {
    await new Promise((resolve) => setImmediate(resolve));
    if (opts.signal?.aborted) return null;
    const end = Math.min(n, start + block);
    const hits = index.lookupStored(start, end, opts.maxDistance);
    for (let i = start; i < end; i++) {
      let thumb: Uint8Array | undefined;
      for (const hit of hits[i - start] ?? []) {
        const j = hit.index;
        if (j <= i) continue;
        thumb ??= thumbAt(i);
        const a = agreement(thumb, thumbAt(j));
        if (!verified(a, opts.thresholds)) continue;
        const ri = find(i);
        const rj = find(j);
        if (ri !== rj) parent[Math.max(ri, rj)] = Math.min(ri, rj);
        pairs.push(i, j, hit.distance, a.mirrored);
      }
    }
    opts.onProgress?.(end);
  }
  for (let i = 0; i < n; i++) parent[i] = find(i);
  return { root: parent, pairs };
}

/**
 * The clusters of two or more, each as its positions in rising order: `members` holds them
 * cluster after cluster, in the order of their roots; cluster c is `members[start[c]..start[c + 1]]`.
 */
export function clusterMembers(root: Int32Array): { members: Uint32Array; start: Uint32Array } {
  const n = root.length;
  const size = new Uint32Array(n);
  for (let i = 0; i < n; i++) size[root[i] as number] = (size[root[i] as number] as number) + 1;
  // Where each root's members go; roots of a single print get none.
  const next = new Uint32Array(n);
  const starts: number[] = [];
  let total = 0;
  for (let r = 0; r < n; r++) {
    if ((size[r] as number) < 2) continue;
    starts.push(total);
    next[r] = total;
    total += size[r] as number;
  }
  starts.push(total);
  const members = new Uint32Array(total);
  for (let i = 0; i < n; i++) {
    const r = root[i] as number;
    if ((size[r] as number) < 2) continue;
    members[next[r] as number] = i;
    next[r] = (next[r] as number) + 1;
  }
  return { members, start: Uint32Array.from(starts) };
}

/**
 * Prints of identical image bytes (one sha256) are one print: each joins the first of its group
 * without a lookup. The same URL under many captions is stored once for each (a logo under
 * 100,000 alt texts is 100,000 copies), and looked up one by one those copies are every one a
 * candidate of every other. `bySha` gives each print's rowid and sha256, in sha256 then rowid
 * order; `rowids` are the positions' rowids, rising. Returns `firstOf`: per position, the position
 * of the first print of its group (itself for a first, and for a print without a sha256).
 */
export function exactGroups(rowids: Float64Array, bySha: Iterable<unknown[]>): Int32Array {
  const firstOf = new Int32Array(rowids.length);
  for (let p = 0; p < firstOf.length; p++) firstOf[p] = p;
  const positionOf = (rowid: number): number => {
    let lo = 0;
    let hi = rowids.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const at = rowids[mid] as number;
      if (at === rowid) return mid;
      if (at < rowid) lo = mid + 1;
      else hi = mid - 1;
    }
    throw new Error(`print ${rowid} is not among the prints read`);
  };
  let sha: unknown = null;
  let first = -1;
  for (const [rowid, digest] of bySha) {
    const p = positionOf(Number(rowid));
    if (digest !== null && digest === sha) firstOf[p] = first;
    else [sha, first] = [digest, p];
  }
  return firstOf;
}
