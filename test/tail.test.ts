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

describe('value tail, against a model', () => {
  // Budgets small enough that seqs are dropped on the way.
  const sized = fc.record({
    type: fc.constantFrom('put' as const, 'put' as const, 'del' as const),
    key: fc.uint8Array({ minLength: 1, maxLength: 3 }).map((a) => Buffer.from(a.map((b) => (b % 4) * 85))),
    value: fc.uint8Array({ maxLength: 40, size: 'max' }).map((a) => Buffer.from(a))
  }).map((o): InnerOp => (o.type === 'put' ? { type: 'put', key: o.key, value: o.value } : { type: 'del', key: o.key }))
  // A gap in the seqs (the tail starts afresh) once in `gapIn` pushes.
  const steps = (gapIn: number, length: { minLength?: number, maxLength: number }) => fc.array(fc.oneof(
    { weight: 5, arbitrary: fc.record({ push: fc.array(sized, { maxLength: 5 }), gap: fc.nat(gapIn - 1).map((n) => n === 0) }) },
    { weight: 2, arbitrary: fc.record({ since: fc.nat() }) },
    { weight: 1, arbitrary: fc.record({ trim: fc.nat() }) }
  ), length)

  const run = (steps: Array<{ push: InnerOp[], gap: boolean } | { since: number } | { trim: number }>, budget: number): void => {
      const tail = new ValueTail(budget)
      const pushed = new Map<number, InnerOp[]>() // every seq ever pushed, by seq
      let seq = 0
      const earlier: Array<{ ops: InnerOp[], expected: Array<[string, string, string | null]> }> = []
      const flat = (ops: InnerOp[]): Array<[string, string, string | null]> => ops.map((o) => [o.type, o.key.toString('hex'), o.type === 'put' ? o.value.toString('hex') : null])
      for (const s of steps) {
        if ('push' in s) {
          seq += s.gap ? 2 : 1
          pushed.set(seq, s.push)
          tail.push(seq, s.push, s.push.reduce((n, o) => n + o.key.length + (o.type === 'put' ? o.value.length : 0) + 16, 0))
        } else if ('trim' in s) {
          tail.trim(seq === 0 ? 0 : s.trim % (seq + 1))
        } else {
          const { seqs } = tail.size
          if (seqs === 0) { expect(tail.head).toBe(-1); continue }
          const head = tail.head
          expect(head).toBe(seq)
          const watermark = head - 1 - (s.since % seqs)
          expect(tail.covers(watermark)).toBe(true)
          expect(tail.covers(head - seqs - 1)).toBe(false)
          const model = new Map<string, InnerOp>()
          for (let q = watermark + 1; q <= head; q++) for (const o of pushed.get(q)!) model.set(o.key.toString('hex'), o)
          const expected = [...model.values()].sort((a, b) => Buffer.compare(a.key, b.key))
          const { to, ops } = tail.since(watermark)
          expect(to).toBe(head)
          expect(flat(ops)).toEqual(flat(expected))
          earlier.push({ ops, expected: flat(expected) })
        }
      }
      for (const e of earlier) expect(flat(e.ops)).toEqual(e.expected)
  }

  it('gives what the seqs it holds gave, whatever was pushed, dropped or trimmed before, and earlier results stay intact (fast-check)', () => {
    fc.assert(fc.property(steps(20, { maxLength: 80 }), fc.integer({ min: 20, max: 400 }), run), { numRuns: 500 })
  })

  it('the same over thousands of seqs, while its array is cut (fast-check)', () => {
    fc.assert(fc.property(steps(5000, { minLength: 3000, maxLength: 6000 }), fc.integer({ min: 2000, max: 40000 }), run), { numRuns: 15 })
  })
})
