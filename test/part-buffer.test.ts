import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { PartBuffer, tailParts, type OpsChunk } from '../lib/replication/batch-builder'
import type { ReplicaOp } from '../lib/adapter'

const OVERHEAD = 32 // the per-op bytes PartBuffer counts beyond key and value
const op: fc.Arbitrary<ReplicaOp> = fc.oneof(
  fc.record({ type: fc.constant('put' as const), key: fc.uint8Array({ minLength: 1, maxLength: 6 }).map((a) => Buffer.from(a)), value: fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)) }),
  fc.record({ type: fc.constant('del' as const), key: fc.uint8Array({ minLength: 1, maxLength: 6 }).map((a) => Buffer.from(a)) })
)
const limits = fc.record({ maxOps: fc.integer({ min: 1, max: 8 }), maxBytes: fc.integer({ min: 40, max: 400 }) })

// The ops the chunks carry, with the pieces of a value put back together.
function joined (chunks: Array<Pick<OpsChunk, 'ops'> & { pieces?: boolean }>): ReplicaOp[] {
  const out: ReplicaOp[] = []
  let open: { type: 'put', key: Buffer, parts: Buffer[] } | null = null
  for (const chunk of chunks) {
    for (const o of chunk.ops) {
      if (open !== null) {
        if (chunk.pieces !== undefined) expect(chunk.pieces).toBe(true)
        expect(o.type === 'put' && o.key.equals(open.key)).toBe(true)
        open.parts.push((o as { value: Buffer }).value)
        if (o.type === 'put' && o.more !== true) {
          out.push({ type: 'put', key: open.key, value: Buffer.concat(open.parts) })
          open = null
        }
        continue
      }
      if (o.type === 'put' && o.more === true) open = { type: 'put', key: o.key, parts: [o.value] }
      else out.push(o.type === 'put' ? { type: 'put', key: o.key, value: o.value } : o)
    }
  }
  expect(open).toBe(null)
  return out
}

describe('part buffer', () => {
  it('cuts ops into chunks within the limits, in order, with values larger than a part cut into pieces (fast-check)', () => {
    fc.assert(fc.property(fc.array(op, { maxLength: 40 }), limits, (ops, l) => {
      const buffer = new PartBuffer(l)
      const chunks: OpsChunk[] = []
      for (const o of ops) chunks.push(...buffer.add(o))
      if (buffer.ops.length > 0) chunks.push(buffer.take())
      for (const chunk of chunks) {
        expect(chunk.ops.length).toBeGreaterThan(0)
        expect(chunk.ops.length).toBeLessThanOrEqual(l.maxOps)
        const bytes = chunk.ops.reduce((n, o) => n + o.key.length + (o.type === 'put' ? o.value.length : 0) + OVERHEAD, 0)
        // A chunk goes past maxBytes only by its one op.
        if (chunk.ops.length > 1) expect(bytes - OVERHEAD - chunk.ops[chunk.ops.length - 1].key.length).toBeLessThan(l.maxBytes)
        if (chunk.ops.some((o) => o.type === 'put' && o.more === true)) expect(chunk.ops.length).toBe(1)
      }
      const expected = ops.map((o) => (o.type === 'put' ? { type: 'put', key: o.key, value: o.value } : o))
      expect(joined(chunks)).toEqual(expected)
    }), { numRuns: 300 })
  })

  it('refuses a key that leaves no room for a value in a part, as TOO_LARGE', () => {
    const buffer = new PartBuffer({ maxOps: 10, maxBytes: 40 })
    expect(() => buffer.add({ type: 'put', key: Buffer.alloc(20), value: Buffer.alloc(100) })).toThrow(expect.objectContaining({ code: 'MIRROR_TOO_LARGE' }))
  })

  it('tailParts ships every op once, in parts numbered from 0, the last one final', () => {
    fc.assert(fc.property(fc.array(op, { maxLength: 30 }), limits, (ops, l) => {
      const parts = [...tailParts(ops, { kind: 'incremental', from: 3, to: 9 }, 'g', l)]
      expect(parts.map((p) => p.index)).toEqual(parts.map((_, i) => i))
      expect(parts.map((p) => p.final)).toEqual(parts.map((_, i) => i === parts.length - 1))
      for (const p of parts) expect([p.from, p.to, p.generation, p.full]).toEqual([3, 9, 'g', false])
      const expected = ops.map((o) => (o.type === 'put' ? { type: 'put', key: o.key, value: o.value } : o))
      expect(joined(parts.map((p) => ({ ops: p.ops })))).toEqual(expected)
    }), { numRuns: 200 })
  })
})
