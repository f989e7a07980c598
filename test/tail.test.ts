import { describe, expect, it } from 'vitest'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import fc from 'fast-check'
import { ValueTail } from '../lib/replication/tail'
import type { InnerOp } from '../lib/inner'

// Keys over the whole byte range, short so that they collide: the order must be the bytes' order.
const key = fc.uint8Array({ minLength: 1, maxLength: 3 }).map((a) => Buffer.from(a.map((b) => (b % 4) * 85)))
const op: fc.Arbitrary<InnerOp> = fc.oneof(
  fc.record({ type: fc.constant('put' as const), key, value: fc.uint8Array({ maxLength: 8 }).map((a) => Buffer.from(a)) }),
  fc.record({ type: fc.constant('del' as const), key })
)

describe('value tail', () => {
  it('gives the last op of every key the seqs after a watermark touched, in byte order of the keys', () => {
    fc.assert(fc.property(fc.array(fc.array(op, { minLength: 1, maxLength: 6 }), { minLength: 1, maxLength: 12 }), fc.nat(), (seqs, w) => {
      const tail = new ValueTail(1 << 20)
      seqs.forEach((ops, i) => tail.push(i + 1, ops, 0))
      const watermark = w % seqs.length
      expect(tail.covers(watermark)).toBe(true)
      const model = new Map<string, InnerOp>()
      for (const ops of seqs.slice(watermark)) for (const o of ops) model.set(o.key.toString('hex'), o)
      const expected = [...model.values()].sort((a, b) => Buffer.compare(a.key, b.key))
      const { to, ops } = tail.since(watermark)
      expect(to).toBe(seqs.length)
      expect(ops).toEqual(expected)
    }), { numRuns: 300 })
  })

  it('covers only consecutive seqs it still holds', () => {
    const put = (k: string): InnerOp => ({ type: 'put', key: Buffer.from(k), value: Buffer.from('v') })
    const tail = new ValueTail(100)
    tail.push(1, [put('a')], 40)
    tail.push(2, [put('b')], 40)
    expect(tail.covers(0)).toBe(true)
    tail.push(3, [put('c')], 40) // over budget: seq 1 goes
    expect(tail.covers(0)).toBe(false)
    expect(tail.covers(1)).toBe(true)
    expect(tail.covers(3)).toBe(false) // nothing after the head
    tail.push(5, [put('e')], 40) // a gap: starts afresh
    expect(tail.covers(3)).toBe(false)
    expect(tail.covers(4)).toBe(true)
    tail.trim(5)
    expect(tail.size).toEqual({ seqs: 0, bytes: 0 })
  })

  it('lets go of the ops of the seqs it drops at once, not when its array is next cut', async () => {
    setFlagsFromString('--expose-gc')
    const gc = runInNewContext('gc') as () => void
    const tail = new ValueTail(1024 * 1024)
    const dropped: Array<WeakRef<Buffer>> = []
    for (let seq = 1; seq <= 50; seq++) {
      const value = Buffer.alloc(300 * 1024, seq)
      if (seq <= 40) dropped.push(new WeakRef(value))
      tail.push(seq, [{ type: 'put', key: Buffer.from(`k${seq}`), value }], value.length)
    }
    tail.trim(40)
    expect(tail.size.seqs).toBeLessThanOrEqual(10)
    await new Promise((resolve) => setImmediate(resolve))
    gc()
    expect(dropped.filter((r) => r.deref() !== undefined)).toHaveLength(0)
  })
})
