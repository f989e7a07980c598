import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { Packr } from 'msgpackr'
import { decodeRecord, encodeRecord } from '../lib/log/record-codec'

// The log's records are read back by msgpackr on every open, by older versions too: the hand-built
// encoder must write exactly the bytes msgpackr writes.
const packr = new Packr({ useRecords: false, mapsAsObjects: false })
const bin = (n: number): Buffer => Buffer.alloc(n, n & 0xff)

describe('log record encoding', () => {
  it('writes what msgpackr writes, for any from and keys', () => {
    const from = fc.oneof(fc.nat(300), fc.integer({ min: 0, max: 2 ** 32 + 5 }), fc.maxSafeNat(),
      fc.constantFrom(0x7f, 0x80, 0xff, 0x100, 0xffff, 0x10000, 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1))
    const key = fc.oneof(fc.uint8Array({ maxLength: 300 }), fc.constantFrom(0, 0xff, 0x100, 0xffff, 0x10000).map(bin))
    const keys = fc.oneof(fc.constant(null), fc.array(key.map((k) => Buffer.from(k)), { maxLength: 20 }))
    fc.assert(fc.property(from, keys, (f, k) => {
      const bytes = encodeRecord(f, k)
      expect(bytes.equals(packr.pack([f, k]))).toBe(true)
      const decoded = decodeRecord(f + 1, bytes)
      expect(decoded.from).toBe(f)
      expect(decoded.keys === null ? null : decoded.keys.map((b) => Buffer.from(b).toString('hex'))).toEqual(k === null ? null : k.map((b) => b.toString('hex')))
    }), { numRuns: 400 })
  })

  it('writes long key lists (array16 and array32) as msgpackr does', () => {
    for (const n of [15, 16, 0xffff, 0x10000]) {
      const keys = Array.from({ length: n }, (_, i) => Buffer.from([i & 0xff, i >> 8]))
      expect(encodeRecord(7, keys).equals(packr.pack([7, keys]))).toBe(true)
    }
  })
})
