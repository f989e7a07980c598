import { Packr } from 'msgpackr'
import { MirrorError, codes } from '../errors'

const packr = new Packr({ useRecords: false, mapsAsObjects: false })

/**
 * One log record: the keys the writes `(from, to]` changed, or `keys === null` when they may have
 * changed any key (a record compacted past its budget, or data that predates the wrapper). The
 * record is stored under `logKey(to)`; its value is `[from, keys]` in msgpack.
 */
export interface LogRecord {
  from: number
  to: number
  keys: Buffer[] | null
}

/**
 * `[from, keys]` in msgpack, byte for byte what msgpackr writes (test/record-codec.test.ts), built
 * by hand: this runs once per commit, and msgpackr's general path was a fifth of our own CPU per
 * awaited write.
 */
export function encodeRecord (from: number, keys: Buffer[] | null): Buffer {
  if (!Number.isSafeInteger(from) || from < 0) return packr.pack([from, keys])
  let size = 1 + uintSize(from)
  if (keys === null) size += 1
  else {
    size += keys.length < 0x10 ? 1 : keys.length < 0x10000 ? 3 : 5
    for (const key of keys) size += key.length + (key.length < 0x100 ? 2 : key.length < 0x10000 ? 3 : 5)
  }
  const out = Buffer.allocUnsafe(size)
  out[0] = 0x92
  let at = writeUint(out, 1, from)
  if (keys === null) {
    out[at] = 0xc0
    return out
  }
  at = writeArrayLength(out, at, keys.length)
  for (const key of keys) {
    at = writeBinLength(out, at, key.length)
    out.set(key, at)
    at += key.length
  }
  return out
}

function uintSize (n: number): number {
  return n < 0x80 ? 1 : n < 0x100 ? 2 : n < 0x10000 ? 3 : n < 0x100000000 ? 5 : 9
}

function writeUint (out: Buffer, at: number, n: number): number {
  if (n < 0x80) {
    out[at] = n
    return at + 1
  }
  if (n < 0x100) {
    out[at] = 0xcc
    out[at + 1] = n
    return at + 2
  }
  if (n < 0x10000) {
    out[at] = 0xcd
    out.writeUInt16BE(n, at + 1)
    return at + 3
  }
  if (n < 0x100000000) {
    out[at] = 0xce
    out.writeUInt32BE(n, at + 1)
    return at + 5
  }
  // As msgpackr does: integers past 32 bits as a float64, exact up to 2^53.
  out[at] = 0xcb
  out.writeDoubleBE(n, at + 1)
  return at + 9
}

function writeArrayLength (out: Buffer, at: number, n: number): number {
  if (n < 0x10) {
    out[at] = 0x90 | n
    return at + 1
  }
  return writeLength(out, at, n, 0xdc, 0xdd)
}

function writeBinLength (out: Buffer, at: number, n: number): number {
  if (n < 0x100) {
    out[at] = 0xc4
    out[at + 1] = n
    return at + 2
  }
  return writeLength(out, at, n, 0xc5, 0xc6)
}

function writeLength (out: Buffer, at: number, n: number, tag16: number, tag32: number): number {
  if (n < 0x10000) {
    out[at] = tag16
    out.writeUInt16BE(n, at + 1)
    return at + 3
  }
  out[at] = tag32
  out.writeUInt32BE(n, at + 1)
  return at + 5
}

export function decodeRecord (to: number, value: Uint8Array): LogRecord {
  // The records this version writes are read by hand (a catch-up reads every record of its
  // backlog several times); anything else goes through msgpackr and its checks, as before.
  const parsed = parseRecord(value)
  if (parsed !== undefined && parsed[0] < to) return { from: parsed[0], to, keys: parsed[1] }
  let decoded: unknown
  try {
    decoded = packr.unpack(value)
  } catch (err) {
    throw new MirrorError(`Log record ${to} cannot be decoded`, codes.CORRUPT, { cause: err })
  }
  if (!Array.isArray(decoded) || decoded.length !== 2 || !Number.isSafeInteger(decoded[0]) ||
      decoded[0] >= to || !(decoded[1] === null || Array.isArray(decoded[1]))) {
    throw new MirrorError(`Log record ${to} is malformed`, codes.CORRUPT)
  }
  const keys = decoded[1] as unknown[] | null
  if (keys !== null && !keys.every((k) => k instanceof Uint8Array)) {
    throw new MirrorError(`Log record ${to} holds a key that is not binary`, codes.CORRUPT)
  }
  return { from: decoded[0], to, keys: keys as Buffer[] | null }
}

// `[from, keys]` as encodeRecord writes it (from below 2^32), the keys as views of `value`; anything
// else, undefined.
function parseRecord (value: Uint8Array): [number, Buffer[] | null] | undefined {
  const end = value.length
  if (end < 3 || value[0] !== 0x92) return undefined
  const v = Buffer.from(value.buffer, value.byteOffset, end)
  let at = 1
  let from: number = v[at]
  if (from >= 0x80) {
    const size = uintAfter(from, 0xcc, 0xcd, 0xce)
    if (size === 0 || at + 1 + size > end) return undefined
    from = readUint(v, at + 1, size)
    at += size
  }
  at += 1
  if (at >= end) return undefined
  const list = v[at]
  if (list === 0xc0) return at + 1 === end ? [from, null] : undefined
  let n = list & 0x0f
  if ((list & 0xf0) !== 0x90) {
    const size = uintAfter(list, -1, 0xdc, 0xdd)
    if (size === 0 || at + 1 + size > end) return undefined
    n = readUint(v, at + 1, size)
    at += size
  }
  at += 1
  // Each key takes at least two bytes: a count past that is not this encoding.
  if (n > (end - at) / 2) return undefined
  const keys = new Array<Buffer>(n)
  for (let i = 0; i < n; i++) {
    const size = uintAfter(v[at], 0xc4, 0xc5, 0xc6)
    if (size === 0 || at + 1 + size > end) return undefined
    const length = readUint(v, at + 1, size)
    at += 1 + size
    if (at + length > end) return undefined
    keys[i] = v.subarray(at, at + length)
    at += length
  }
  return at === end ? [from, keys] : undefined
}

// The bytes of the big-endian length or number that follows `tag`, when it is one of the 8, 16 or
// 32-bit tags given; 0 when it is none of them.
function uintAfter (tag: number, t8: number, t16: number, t32: number): number {
  return tag === t8 ? 1 : tag === t16 ? 2 : tag === t32 ? 4 : 0
}

function readUint (v: Buffer, at: number, size: number): number {
  return size === 1 ? v[at] : size === 2 ? v.readUInt16BE(at) : v.readUInt32BE(at)
}
