import { MirrorError, codes } from '../errors'
import { metaKeys, readSeq, writeSeq } from '../keyspace'

/** Where the head lives in the inner db's reserved range. */
export const HEAD_KEY = metaKeys.head

/**
 * The primary's head as stored in the meta key `head`, written in the same inner batch as every
 * log change: the last committed seq and the log's size in bytes (so opening needs no log scan).
 */
export interface Head {
  seq: number
  logBytes: number
}

export function encodeHead (head: Head): Buffer {
  const buf = Buffer.allocUnsafe(16)
  writeSeq(buf, 0, head.seq)
  writeSeq(buf, 8, head.logBytes)
  return buf
}

export function decodeHead (value: Uint8Array): Head {
  if (value.length !== 16) throw new MirrorError('The stored head is malformed', codes.CORRUPT)
  return { seq: readSeq(value, 0), logBytes: readSeq(value, 8) }
}
