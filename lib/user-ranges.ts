import { reservedEnd, reservedStart } from './keyspace'

export interface KeyRange {
  gt?: Buffer
  gte?: Buffer
  lt?: Buffer
  lte?: Buffer
}

/**
 * The key range `(after, upto]` (null: open end) without the reserved range, as at most two
 * ranges in key order, for iterating user keys only.
 */
export function userRanges (after: Buffer | null, upto: Buffer | null): KeyRange[] {
  const out: KeyRange[] = []
  // below the reserved range: (after, upto] ∩ (-inf, reservedStart)
  if (after === null || Buffer.compare(after, reservedStart) < 0) {
    const r: KeyRange = {}
    if (after !== null) r.gt = after
    if (upto !== null && Buffer.compare(upto, reservedStart) < 0) r.lte = upto
    else r.lt = reservedStart
    out.push(r)
  }
  // above it: (after, upto] ∩ [reservedEnd, +inf)
  if (upto === null || Buffer.compare(upto, reservedEnd) >= 0) {
    const r: KeyRange = {}
    if (after !== null && Buffer.compare(after, reservedEnd) >= 0) r.gt = after
    else r.gte = reservedEnd
    if (upto !== null) r.lte = upto
    out.push(r)
  }
  return out
}
