/**
 * Checkpoints: one file holding everything a run needs to continue exactly where it stopped —
 * the weights by variable name, the optimizer state, the tokenizer, the step, the data-order
 * state, the per-pair noise estimate and the model config.
 *
 * Layout: the magic `AFCKPT01`, a uint32 (little-endian) header length, the JSON header, zero
 * padding to a multiple of 4, then the float32 tensors one after the other (offsets in the
 * header), whose CRC-32 the header records. Writing goes to `<file>.tmp-<pid>`, is fsynced, then
 * renamed over the old file and the directory fsynced: a kill at any moment leaves either the old
 * checkpoint or the new one, never a mix.
 */
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { crc32 } from 'node:zlib';
import { UsageError } from '../corpus/errors.ts';

const MAGIC = Buffer.from('AFCKPT01', 'latin1');

/** A named float32 tensor as stored. */
export interface StoredTensor {
  name: string;
  shape: number[];
  data: Float32Array;
}

interface TensorEntry {
  name: string;
  shape: number[];
  /** Byte offset from the start of the tensor data. */
  offset: number;
  length: number;
}

/** A checkpoint read back: its JSON metadata and its tensors by name. */
export interface Checkpoint<M> {
  meta: M;
  tensors: Map<string, StoredTensor>;
}

/**
 * Writes a checkpoint atomically (temporary file, fsync, rename, fsync of the directory).
 * `meta` must be JSON-serialisable.
 */
export function writeCheckpoint<M>(file: string, meta: M, tensors: readonly StoredTensor[]): void {
  const entries: TensorEntry[] = [];
  let offset = 0;
  for (const t of tensors) {
    const expected = t.shape.reduce((a, b) => a * b, 1);
    if (expected !== t.data.length)
      throw new RangeError(`tensor ${t.name}: shape ${t.shape.join('x')} but ${t.data.length} values`);
    entries.push({ name: t.name, shape: t.shape, offset, length: t.data.length });
    offset += t.data.byteLength;
  }
  const body = Buffer.alloc(offset);
  for (let i = 0; i < tensors.length; i++) {
    const t = tensors[i] as StoredTensor;
    body.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), (entries[i] as TensorEntry).offset);
  }
  const header = Buffer.from(JSON.stringify({ meta, tensors: entries, crc32: crc32(body) }), 'utf8');
  const pad = (4 - ((MAGIC.length + 4 + header.length) % 4)) % 4;
  const lengthField = Buffer.alloc(4);
  lengthField.writeUInt32LE(header.length + pad);
  const padding = Buffer.alloc(pad, 0x20); // spaces: the header stays valid JSON when trimmed

  const tmp = `${file}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w');
  try {
    for (const part of [MAGIC, lengthField, header, padding, body]) {
      let written = 0;
      while (written < part.length) written += writeSync(fd, part, written, part.length - written);
    }
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, file);
  const dirFd = openSync(dirname(file), 'r');
  try {
    fsyncSync(dirFd);
  } finally {
    closeSync(dirFd);
  }
}

/** Reads a checkpoint; a missing, truncated or corrupt file is a usage error naming the file. */
export function readCheckpoint<M>(file: string): Checkpoint<M> {
  if (!existsSync(file)) {
    throw new UsageError('ERR_CHECKPOINT_NOT_FOUND', `No checkpoint at '${file}'`, { context: { path: file } });
  }
  const bad = (why: string) =>
    new UsageError('ERR_CHECKPOINT_CORRUPT', `Checkpoint '${file}' is unreadable: ${why}`, { context: { path: file } });
  const bytes = readFileSync(file);
  if (bytes.length < MAGIC.length + 4 || !bytes.subarray(0, MAGIC.length).equals(MAGIC))
    throw bad('not an altforge checkpoint');
  const headerLength = bytes.readUInt32LE(MAGIC.length);
  const bodyStart = MAGIC.length + 4 + headerLength;
  if (bodyStart > bytes.length) throw bad('truncated header');
  let header: { meta: M; tensors: TensorEntry[]; crc32: number };
  try {
    header = JSON.parse(bytes.subarray(MAGIC.length + 4, bodyStart).toString('utf8')) as typeof header;
  } catch {
    throw bad('header is not JSON');
  }
  const body = bytes.subarray(bodyStart);
  const size = header.tensors.reduce((n, t) => n + t.length * 4, 0);
  if (body.length !== size) throw bad(`expected ${size} bytes of tensors, found ${body.length}`);
  if (crc32(body) !== header.crc32) throw bad('checksum mismatch');
  const tensors = new Map<string, StoredTensor>();
  // Copy out of the file buffer: the body starts 4-byte aligned in the file, not necessarily in memory.
  for (const t of header.tensors) {
    const data = new Float32Array(t.length);
    new Uint8Array(data.buffer).set(body.subarray(t.offset, t.offset + t.length * 4));
    tensors.set(t.name, { name: t.name, shape: t.shape, data });
  }
  return { meta: header.meta, tensors };
}

/** Removes temporary files a killed writer left beside `file`. */
export function removeStaleTemporaries(file: string, names: readonly string[]): void {
  const base = file.slice(dirname(file).length + 1);
  for (const name of names) {
    if (name.startsWith(`${base}.tmp-`)) rmSync(`${dirname(file)}/${name}`, { force: true });
  }
}
