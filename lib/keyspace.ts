/**
 * The reserved key range: every key mirror-level keeps for itself in the inner db (and in each
 * replica db) starts with the byte 0xFF followed by `mirror-level/`. 0xFF never occurs in UTF-8,
 * so no string key can fall in it; binary keys that do are refused on write and hidden on read.
 */
const PREFIX = Buffer.concat([Buffer.from([0xff]), Buffer.from('mirror-level/', 'latin1')])
// '/' + 1 === '0': the first key after every key that starts with PREFIX
const END = Buffer.concat([Buffer.from([0xff]), Buffer.from('mirror-level0', 'latin1')])

/** The reserved key range `[gte, lt)` of the inner db and of every replica db. */
export const RESERVED_RANGE: { readonly gte: Buffer, readonly lt: Buffer } = Object.freeze({
  gte: Buffer.from(PREFIX),
  lt: Buffer.from(END)
})

const FIRST = PREFIX[0]

export function isReserved (key: Uint8Array): boolean {
  if (key.length < PREFIX.length || key[0] !== FIRST) return false
  for (let i = 1; i < PREFIX.length; i++) if (key[i] !== PREFIX[i]) return false
  return true
}

export const reservedStart = PREFIX
export const reservedEnd = END

const LOG = Buffer.concat([PREFIX, Buffer.from('log/', 'latin1')])
const META = Buffer.concat([PREFIX, Buffer.from('meta/', 'latin1')])

/** Bounds of the log records, ordered by the seq each record ends at. */
export const logRange = { gte: LOG, lt: Buffer.concat([PREFIX, Buffer.from('log0', 'latin1')]) }

export function logKey (seq: number): Buffer {
  const key = Buffer.allocUnsafe(LOG.length + 8)
  LOG.copy(key, 0)
  writeSeq(key, LOG.length, seq)
  return key
}

export function seqOfLogKey (key: Uint8Array): number {
  return readSeq(key, LOG.length)
}

export function metaKey (name: string): Buffer {
  return Buffer.concat([META, Buffer.from(name, 'latin1')])
}

/**
 * The meta keys that say what a store is. A primary's store holds the head, its generation
 * history and its origin; a replica's holds its state (generation, watermark, the primary's
 * history) and, while a batch is staged, a journal. No store holds both.
 */
export const metaKeys = Object.freeze({
  head: metaKey('head'),
  history: metaKey('history'),
  origin: metaKey('origin'),
  replica: metaKey('replica'),
  journal: metaKey('journal'),
  /** A restore in progress into this store (see `restore`). */
  restore: metaKey('restore'),
  /** A rejoined store's discarded-writes file still to be narrowed to the writes after the fork. */
  narrow: metaKey('narrow')
})

const TWO32 = 2 ** 32

/** Fixed-width big-endian, so that key order is numeric order. Exact up to 2^53. */
export function writeSeq (buf: Uint8Array, offset: number, seq: number): void {
  // Byte by byte: a DataView per call cost more than the rest of building a log key.
  if (buf.length < offset + 8) throw new RangeError(`A seq needs 8 bytes at ${offset}; the buffer has ${buf.length}`)
  const hi = Math.floor(seq / TWO32)
  const lo = seq - hi * TWO32
  buf[offset] = hi >>> 24
  buf[offset + 1] = hi >>> 16
  buf[offset + 2] = hi >>> 8
  buf[offset + 3] = hi
  buf[offset + 4] = lo >>> 24
  buf[offset + 5] = lo >>> 16
  buf[offset + 6] = lo >>> 8
  buf[offset + 7] = lo
}

export function readSeq (buf: Uint8Array, offset: number): number {
  if (buf.length < offset + 8) throw new RangeError(`A seq needs 8 bytes at ${offset}; the key has ${buf.length}`)
  const hi = ((buf[offset] << 24) | (buf[offset + 1] << 16) | (buf[offset + 2] << 8) | buf[offset + 3]) >>> 0
  const lo = ((buf[offset + 4] << 24) | (buf[offset + 5] << 16) | (buf[offset + 6] << 8) | buf[offset + 7]) >>> 0
  return hi * TWO32 + lo
}
