import { createHash } from 'node:crypto'
import type { AbstractSnapshot } from 'abstract-level'
import { MirrorError, codes } from './errors'
import { BUFFERS, type InnerDb } from './inner'
import { userRanges } from './user-ranges'

/**
 * An order-independent fingerprint of a set of entries: how many, how many bytes, and the sum
 * (mod 2^32, in four lanes) of a 128-bit hash of each entry. Two stores hold the same entries in a
 * range exactly when their fingerprints of it agree (up to a hash collision); fingerprints of
 * disjoint ranges add up, so a range can be compared piece by piece.
 */
export interface Fingerprint {
  count: number
  bytes: number
  sum: [number, number, number, number]
}

export const EMPTY_FINGERPRINT: Readonly<Fingerprint> = Object.freeze({ count: 0, bytes: 0, sum: [0, 0, 0, 0] as [number, number, number, number] })

/** The 16-byte hash of one entry. */
export function entryDigest (key: Buffer, value: Buffer): Buffer {
  return createHash('sha1').update(key).update(SEP).update(value).digest().subarray(0, 16)
}

/** The hash of one entry, as four 32-bit lanes. */
export function entryHash (key: Buffer, value: Buffer): [number, number, number, number] {
  const h = entryDigest(key, value)
  return [h.readUInt32BE(0), h.readUInt32BE(4), h.readUInt32BE(8), h.readUInt32BE(12)]
}
// The key's length is not in the hash input, so a separator keeps ('ab', 'c') apart from ('a', 'bc').
const SEP = Buffer.from([0, 0xff, 0])

/** Adds one entry to `fp` (in place). */
export function addEntry (fp: Fingerprint, key: Buffer, value: Buffer): void {
  const h = entryHash(key, value)
  fp.count++
  fp.bytes += key.length + value.length
  for (let i = 0; i < 4; i++) fp.sum[i] = (fp.sum[i] + h[i]) >>> 0
}

export function sameFingerprint (a: Fingerprint, b: Fingerprint): boolean {
  return a.count === b.count && a.bytes === b.bytes && a.sum.every((v, i) => v === b.sum[i])
}

export function newFingerprint (): Fingerprint {
  return { count: 0, bytes: 0, sum: [0, 0, 0, 0] }
}

export function describeFingerprint (fp: Fingerprint): string {
  return `${fp.count} entries, ${fp.bytes} bytes, ${fp.sum.map((v) => v.toString(16).padStart(8, '0')).join('')}`
}

/** The fingerprint of the user entries of `db` (at `snapshot`, if given) in the key range `(after, upto]` (null: open). */
export async function fingerprintRange (db: InnerDb, after: Buffer | null, upto: Buffer | null, snapshot?: AbstractSnapshot): Promise<Fingerprint> {
  const fp = newFingerprint()
  for (const range of userRanges(after, upto)) {
    const it = db.iterator({ ...range, ...BUFFERS, snapshot })
    try {
      while (true) {
        const entries: Array<[Buffer, Buffer]> = await it.nextv(1000)
        if (entries.length === 0) break
        for (const [key, value] of entries) addEntry(fp, key, value)
      }
    } finally {
      await it.close()
    }
  }
  return fp
}

/** A key range `(after, upto]`, null bounds open: what fingerprints and hash lists are asked of. */
export interface KeyRangeBounds {
  after: Buffer | null
  upto: Buffer | null
}

// What an entry of a digests page takes in a frame: its key, its digest and their msgpack headers.
function digestEntryBytes (key: Buffer): number {
  return key.length + 32
}

/**
 * The entries of a range, a page at a time, with their digests: what the last step of a
 * comparison looks at, key by key. `from` continues after that key. A page holds at most `limit`
 * entries and `maxBytes` of them (`digestEntryBytes`), so that it fits the frame limit of whoever
 * asked; a first entry that does not fit alone is an error.
 */
export async function entryDigests (db: InnerDb, range: KeyRangeBounds, from: Buffer | null, limit: number, snapshot?: AbstractSnapshot, maxBytes = Infinity): Promise<{ entries: Array<[Buffer, Buffer]>, more: boolean }> {
  const entries: Array<[Buffer, Buffer]> = []
  let bytes = 0
  const start = from === null ? range.after : (range.after === null || Buffer.compare(from, range.after) > 0 ? from : range.after)
  for (const r of userRanges(start, range.upto)) {
    const it = db.iterator({ ...r, ...BUFFERS, snapshot, limit: limit + 1 - entries.length })
    try {
      for await (const [key, value] of it as AsyncIterable<[Buffer, Buffer]>) {
        if (entries.length === limit) return { entries, more: true }
        bytes += digestEntryBytes(key)
        if (bytes > maxBytes) {
          if (entries.length > 0) return { entries, more: true }
          throw new MirrorError(`A key of ${key.length} bytes does not fit in an answer of at most ${maxBytes} bytes (the asking side's maxFrameBytes)`, codes.TOO_LARGE)
        }
        entries.push([key, entryDigest(key, value)])
      }
    } finally {
      await it.close()
    }
  }
  return { entries, more: false }
}

/**
 * Splits `range` into about `parts` sub-ranges with equal numbers of entries (at quantiles of this
 * store's keys, `count` being how many it holds there) and fingerprints each, in one scan.
 */
export async function splitRange (db: InnerDb, range: KeyRangeBounds, count: number, parts: number, snapshot?: AbstractSnapshot): Promise<Array<{ range: KeyRangeBounds, fingerprint: Fingerprint }>> {
  const step = Math.max(1, Math.ceil(count / parts))
  const out: Array<{ range: KeyRangeBounds, fingerprint: Fingerprint }> = []
  let current = { range: { after: range.after, upto: range.upto }, fingerprint: newFingerprint() }
  for (const r of userRanges(range.after, range.upto)) {
    const it = db.iterator({ ...r, ...BUFFERS, snapshot })
    try {
      while (true) {
        const entries: Array<[Buffer, Buffer]> = await it.nextv(1000)
        if (entries.length === 0) break
        for (const [key, value] of entries) {
          addEntry(current.fingerprint, key, value)
          if (current.fingerprint.count === step && out.length < parts - 1) {
            current.range.upto = key
            out.push(current)
            current = { range: { after: key, upto: range.upto }, fingerprint: newFingerprint() }
          }
        }
      }
    } finally {
      await it.close()
    }
  }
  out.push(current)
  return out
}

/** Checks a fingerprint that came from elsewhere (the network). */
export function isFingerprint (v: unknown): v is Fingerprint {
  const f = v as Fingerprint
  return typeof f === 'object' && f !== null && Number.isSafeInteger(f.count) && f.count >= 0 && Number.isSafeInteger(f.bytes) && f.bytes >= 0 &&
    Array.isArray(f.sum) && f.sum.length === 4 && f.sum.every((x) => Number.isInteger(x) && x >= 0 && x < 2 ** 32)
}
