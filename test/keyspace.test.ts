import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { logKey, readSeq, seqOfLogKey, writeSeq } from '../lib/keyspace'

describe('seqs in keys', () => {
  it('round-trip every seq up to 2^53, big-endian so that key order is seq order', () => {
    fc.assert(fc.property(fc.maxSafeNat(), fc.maxSafeNat(), (a, b) => {
      const buf = Buffer.alloc(10)
      writeSeq(buf, 1, a)
      expect(readSeq(buf, 1)).toBe(a)
      expect(buf.subarray(1, 9).equals(Buffer.from(BigInt(a).toString(16).padStart(16, '0'), 'hex'))).toBe(true)
      expect(seqOfLogKey(logKey(a))).toBe(a)
      expect(Math.sign(Buffer.compare(logKey(a), logKey(b)))).toBe(Math.sign(a - b))
    }), { numRuns: 500 })
  })

  it('refuses a buffer too short to hold one', () => {
    expect(() => readSeq(Buffer.alloc(7), 0)).toThrow(RangeError)
    expect(() => writeSeq(Buffer.alloc(9), 2, 1)).toThrow(RangeError)
  })
})
