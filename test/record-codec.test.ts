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

  it('reads every value as msgpackr and its checks did: the same record, or MIRROR_CORRUPT (fast-check, mutated and random bytes)', () => {
    // The decoder before records were read by hand, as the reference.
    const reference = (to: number, value: Uint8Array): unknown => {
      let decoded: unknown
      try {
        decoded = packr.unpack(value)
      } catch {
        return 'corrupt'
      }
      if (!Array.isArray(decoded) || decoded.length !== 2 || !Number.isSafeInteger(decoded[0]) || decoded[0] >= to ||
        !(decoded[1] === null || (Array.isArray(decoded[1]) && decoded[1].every((k: unknown) => k instanceof Uint8Array)))) return 'corrupt'
      return { from: decoded[0], keys: decoded[1] === null ? null : decoded[1].map((k: Uint8Array) => Buffer.from(k).toString('hex')) }
    }
    const actual = (to: number, value: Uint8Array): unknown => {
      try {
        const r = decodeRecord(to, value)
        return { from: r.from, keys: r.keys === null ? null : r.keys.map((k) => Buffer.from(k).toString('hex')) }
      } catch (err) {
        expect(err).toMatchObject({ code: 'MIRROR_CORRUPT' })
        return 'corrupt'
      }
    }
    const valid = fc.tuple(fc.oneof(fc.nat(300), fc.nat()), fc.oneof(fc.constant(null), fc.array(fc.uint8Array({ maxLength: 40 }).map((k) => Buffer.from(k)), { maxLength: 20 })))
      .map(([f, k]) => ({ from: f, bytes: encodeRecord(f, k) }))
    const mutated = fc.tuple(valid, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 3 }), fc.nat(4))
      .map(([{ from, bytes }, edits, cut]) => {
        const b = Buffer.from(bytes)
        for (const [at, byte] of edits) b[at % b.length] = byte
        return { from, bytes: cut === 0 ? b.subarray(0, Math.max(0, b.length - 1 - (edits[0]?.[0] ?? 0) % 4)) : b }
      })
    const random = fc.tuple(fc.nat(1000), fc.uint8Array({ maxLength: 40 })).map(([from, b]) => ({ from, bytes: Buffer.concat([Buffer.from([0x92]), b]) }))
    fc.assert(fc.property(fc.oneof(valid, mutated, random), fc.integer({ min: -2, max: 3 }), ({ from, bytes }, dt) => {
      const to = Math.max(1, from + dt)
      expect(actual(to, bytes)).toEqual(reference(to, bytes))
    }), { numRuns: 3000 })
  })

  it('writes long key lists (array16 and array32) as msgpackr does', () => {
    for (const n of [15, 16, 0xffff, 0x10000]) {
      const keys = Array.from({ length: n }, (_, i) => Buffer.from([i & 0xff, i >> 8]))
      expect(encodeRecord(7, keys).equals(packr.pack([7, keys]))).toBe(true)
    }
  })
})
