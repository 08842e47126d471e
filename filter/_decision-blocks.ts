/**
 * Reading and writing the filter's decisions in their stored form (`corpus/filter-reason.ts`): a
 * byte a pair in blocks of {@link BLOCK_PAIRS} rowids, a block with no rejected pair left out.
 * The filter works with its own reason codes (`i + 1` for `REASON_ORDER[i]`); the stored codes are
 * the file format's ({@link STORED_REASONS}), mapped here both ways.
 */
import type Database from 'better-sqlite3';
import { BLOCK_PAIRS, DECISION_BLOCKS, STORED_REASONS } from '../corpus/filter-reason.ts';
import { REASON_ORDER } from './rules.ts';

/** The filter's code for a stored reason this version does not know: never equal to a new decision. */
export const UNKNOWN_REASON = 15;

/** The filter's code (0 kept, `i + 1` for `REASON_ORDER[i]`) of each stored byte. */
const FROM_STORED = Uint8Array.from({ length: 256 }, (_v, byte) => {
  if (byte === 0) return 0;
  const at = REASON_ORDER.indexOf(STORED_REASONS[byte - 1] as (typeof REASON_ORDER)[number]);
  return at < 0 ? UNKNOWN_REASON : at + 1;
});

/** The stored byte of each of the filter's codes. */
const TO_STORED = Uint8Array.from({ length: REASON_ORDER.length + 1 }, (_v, code) =>
  code === 0 ? 0 : STORED_REASONS.indexOf(REASON_ORDER[code - 1]!) + 1,
);
if (TO_STORED.some((byte, code) => code > 0 && byte === 0)) {
  throw new Error('corpus/filter-reason.ts STORED_REASONS lacks a reason of REASON_ORDER');
}

/**
 * Reads the previous decisions of the rowids `[from, from + into.length)` into `into`, as the
 * filter's codes (0 kept). `from` and `into.length` are multiples of {@link BLOCK_PAIRS}.
 */
export function readDecisions(db: Database.Database): (from: number, into: Uint8Array) => void {
  const select = db.prepare(`SELECT block, codes FROM ${DECISION_BLOCKS} WHERE block >= ? AND block < ?`).raw();
  return (from, into) => {
    into.fill(0);
    const first = from / BLOCK_PAIRS;
    for (const [block, codes] of select.iterate(first, first + into.length / BLOCK_PAIRS) as IterableIterator<
      [number, Buffer]
    >) {
      const at = (block - first) * BLOCK_PAIRS;
      const n = Math.min(codes.length, BLOCK_PAIRS);
      for (let k = 0; k < n; k++) into[at + k] = FROM_STORED[codes[k]!]!;
    }
  };
}

/**
 * Writes decisions into the blocks table, one block at a time: set pairs in rowid order (any
 * order works, at the cost of a block read and written again), then {@link flush}. A block whose
 * bytes are all 0 is deleted. Runs inside the caller's transaction.
 */
export class DecisionBlocks {
  readonly #read: Database.Statement;
  readonly #write: Database.Statement;
  readonly #drop: Database.Statement;
  #block = -1;
  readonly #codes = Buffer.alloc(BLOCK_PAIRS);
  #dirty = false;

  constructor(db: Database.Database) {
    this.#read = db.prepare(`SELECT codes FROM ${DECISION_BLOCKS} WHERE block = ?`).pluck();
    this.#write = db.prepare(`INSERT OR REPLACE INTO ${DECISION_BLOCKS} (block, codes) VALUES (?, ?)`);
    this.#drop = db.prepare(`DELETE FROM ${DECISION_BLOCKS} WHERE block = ?`);
  }

  /** Records the filter's code `code` (0 kept, {@link UNKNOWN_REASON} not allowed) for pair `rowid`. */
  set(rowid: number, code: number): void {
    this.setStored(rowid, TO_STORED[code]!);
  }

  /** Records a stored byte (0 kept) for pair `rowid`. */
  setStored(rowid: number, byte: number): void {
    const block = Math.floor(rowid / BLOCK_PAIRS);
    if (block !== this.#block) this.#open(block);
    const at = rowid - block * BLOCK_PAIRS;
    if (this.#codes[at] !== byte) {
      this.#codes[at] = byte;
      this.#dirty = true;
    }
  }

  /** Writes the block being changed, if it changed. */
  flush(): void {
    if (!this.#dirty) return;
    if (this.#codes.some((byte) => byte !== 0)) this.#write.run(this.#block, this.#codes);
    else this.#drop.run(this.#block);
    this.#dirty = false;
  }

  #open(block: number): void {
    this.flush();
    this.#block = block;
    this.#codes.fill(0);
    const old = this.#read.get(block) as Buffer | undefined;
    if (old) this.#codes.set(old.subarray(0, BLOCK_PAIRS));
  }
}
