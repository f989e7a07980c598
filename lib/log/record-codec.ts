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

export function encodeRecord (from: number, keys: Buffer[] | null): Buffer {
  return packr.pack([from, keys])
}

export function decodeRecord (to: number, value: Uint8Array): LogRecord {
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
