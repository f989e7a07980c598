import { Packr } from 'msgpackr'
import { MirrorError, codes } from './errors'

const packr = new Packr({ useRecords: false, mapsAsObjects: true })
const FORMAT = 1

/** What is recorded the first time a store is wrapped. */
export interface Origin {
  format: number
  createdAt: number
  /** The store held user data before it was first wrapped: that data is in no log record. */
  preexisting: boolean
  /** The store became a primary by promotion of a replica (`mirror-level promote`) at this seq. */
  promoted?: { from: string, seq: number }
  /** The store was restored from a replica (`mirror-level restore`) at this seq. */
  restored?: { from: string, seq: number }
}

/** A new origin in this version's format; `became` says how a store that was not wrapped came to be a primary. */
export function newOrigin (preexisting: boolean, became: Pick<Origin, 'promoted' | 'restored'> = {}): Origin {
  return { format: FORMAT, createdAt: Date.now(), preexisting, ...became }
}

export function encodeOrigin (origin: Origin): Buffer {
  return packr.pack(origin)
}

export function decodeOrigin (value: Uint8Array): Origin {
  let origin: Origin
  try {
    origin = packr.unpack(value)
  } catch (err) {
    throw new MirrorError('The stored origin cannot be decoded', codes.CORRUPT, { cause: err })
  }
  if (typeof origin !== 'object' || origin === null || typeof origin.format !== 'number') {
    throw new MirrorError('The stored origin is malformed', codes.CORRUPT)
  }
  if (origin.format > FORMAT) {
    throw new MirrorError(`This store was written by a newer mirror-level (format ${origin.format}; this version reads ${FORMAT})`, codes.CORRUPT)
  }
  return origin
}
