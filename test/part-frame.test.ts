import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import type { BatchPart, ReplicaOp } from '../lib/adapter'
import { FrameScratch, encodePartFrame, encodePartFrameInto } from '../lib/net/part-frame'
import { FrameDecoder, encodeFrame } from '../lib/net/protocol'
import { validatePart } from '../lib/replica/part-codec'

// Sizes around every msgpack length boundary (fix/8/16/32-bit) and the copy/reference cut.
const size = fc.oneof(
  fc.integer({ min: 0, max: 40 }),
  fc.constantFrom(255, 256, 65535, 65536, 65537, 70_000),
  fc.integer({ min: 0, max: 3000 })
)
const bytes = (s: fc.Arbitrary<number>): fc.Arbitrary<Buffer> => fc.tuple(s, fc.integer({ min: 0, max: 255 })).map(([n, fill]) => {
  const b = Buffer.alloc(n, fill)
  if (n > 0) b[n - 1] = (fill + 1) & 0xff
  return b
})
const op: fc.Arbitrary<ReplicaOp> = fc.oneof(
  fc.record({ type: fc.constant('put' as const), key: bytes(fc.integer({ min: 1, max: 300 })), value: bytes(size) }),
  fc.record({ type: fc.constant('put' as const), key: bytes(fc.integer({ min: 1, max: 40 })), value: bytes(size), more: fc.constant(true) }),
  fc.record({ type: fc.constant('del' as const), key: bytes(fc.integer({ min: 1, max: 300 })) })
)
const part: fc.Arbitrary<BatchPart> = fc.record({
  generation: fc.string({ minLength: 1, maxLength: 40 }),
  from: fc.nat(),
  to: fc.nat(),
  index: fc.nat({ max: 70_000 }),
  final: fc.boolean(),
  full: fc.boolean(),
  range: fc.option(fc.record({ after: fc.option(bytes(fc.integer({ min: 1, max: 20 }))), upto: fc.option(bytes(fc.integer({ min: 1, max: 20 }))) }), { nil: undefined }),
  history: fc.option(fc.record({ from: fc.nat(), entries: fc.array(fc.tuple(fc.string({ minLength: 1, maxLength: 8 }), fc.nat()), { maxLength: 3 }) }), { nil: undefined }),
  ops: fc.oneof(fc.array(op, { maxLength: 40 }), fc.array(op, { minLength: 15, maxLength: 17 }))
})

function decodeAll (chunks: Buffer[]): unknown[] {
  const decoder = new FrameDecoder()
  const out = chunks.flatMap((c) => decoder.push(c))
  expect(decoder.error).toBe(null)
  return out
}

// Decoded messages as text, binaries in base64, undefined kept: compared in one go (a deep
// equality walks megabytes of values a byte at a time).
function canonical (value: unknown): string {
  return JSON.stringify(value, (_, v: unknown) => {
    if (v === undefined) return '<undefined>'
    if (typeof v === 'object' && v !== null && (v as { type?: unknown }).type === 'Buffer' && Array.isArray((v as { data?: unknown }).data)) return 'bin:' + Buffer.from((v as { data: number[] }).data).toString('base64')
    return v
  })
}

describe('part frames', () => {
  it('decode to exactly what the plain encoder makes of a message, whole or chunk by chunk', () => {
    fc.assert(fc.property(part, fc.nat(), (p, id) => {
      const message = { t: 'part' as const, id, part: p }
      const chunks = encodePartFrame(message)
      const plain = encodeFrame(message)
      const whole = Buffer.concat(chunks)
      expect(whole.readUInt32BE(0)).toBe(whole.length - 8)
      const expected = new FrameDecoder().push(plain)
      expect(expected).toHaveLength(1)
      expect(canonical(decodeAll([whole]))).toBe(canonical(expected))
      expect(canonical(decodeAll(chunks))).toBe(canonical(expected))
    }), { numRuns: 200 })
  })

  it('do not copy large values, and carry ops a replica accepts', () => {
    const big = Buffer.alloc(300_000, 7)
    const p: BatchPart = { generation: 'g', from: 1, to: 2, index: 0, final: true, full: false, range: undefined, ops: [{ type: 'put', key: Buffer.from('k'), value: big }, { type: 'del', key: Buffer.from('d') }] }
    const chunks = encodePartFrame({ t: 'part', id: 1, part: p })
    expect(chunks).toContain(big)
    const [message] = decodeAll(chunks) as Array<{ part: unknown }>
    const accepted = validatePart(message.part)
    expect(accepted.ops).toEqual(p.ops)
  })

  it('a flipped bit anywhere fails the checksum', () => {
    const p: BatchPart = { generation: 'g', from: 1, to: 2, index: 0, final: true, full: false, range: undefined, ops: [{ type: 'put', key: Buffer.from('k'), value: Buffer.alloc(100_000, 1) }] }
    const whole = Buffer.concat(encodePartFrame({ t: 'part', id: 1, part: p }))
    for (const at of [8, 20, 50_000, whole.length - 1]) {
      const bad = Buffer.from(whole)
      bad[at] ^= 4
      const decoder = new FrameDecoder()
      expect(decoder.push(bad)).toEqual([])
      expect(decoder.error?.message).toMatch(/checksum/)
    }
  })

  it('encoded into reused scratch buffers, are the same frames, and a buffer in use is never written again', () => {
    fc.assert(fc.property(fc.array(fc.tuple(part, fc.boolean()), { minLength: 1, maxLength: 12 }), (parts) => {
      const scratch = new FrameScratch()
      // Frames whose done() was not called yet must keep their bytes while later ones are encoded.
      const open: Array<{ chunks: Buffer[], copy: Buffer }> = []
      for (const [p, finish] of parts) {
        const message = { t: 'part' as const, id: 1, part: p }
        const frame = encodePartFrameInto(message, scratch)
        expect(Buffer.concat(frame.chunks).equals(Buffer.concat(encodePartFrame(message)))).toBe(true)
        if (finish) frame.done()
        else open.push({ chunks: frame.chunks, copy: Buffer.concat(frame.chunks) })
      }
      for (const f of open) expect(Buffer.concat(f.chunks).equals(f.copy)).toBe(true)
    }), { numRuns: 100 })
  })

  it('scratch buffers are used again once done', () => {
    const scratch = new FrameScratch()
    const p: BatchPart = { generation: 'g', from: 1, to: 2, index: 0, final: true, full: false, range: undefined, ops: [{ type: 'put', key: Buffer.from('k'), value: Buffer.alloc(1000, 3) }] }
    const first = encodePartFrameInto({ t: 'part', id: 1, part: p }, scratch)
    first.done()
    const second = encodePartFrameInto({ t: 'part', id: 2, part: p }, scratch)
    expect(second.chunks[0].buffer).toBe(first.chunks[0].buffer)
    const third = encodePartFrameInto({ t: 'part', id: 3, part: p }, scratch)
    expect(third.chunks[0].buffer).not.toBe(second.chunks[0].buffer)
    // One for a part far above the default bound is not kept.
    const huge: BatchPart = { ...p, ops: Array.from({ length: 200 }, (_, i) => ({ type: 'put' as const, key: Buffer.from(`k${i}`), value: Buffer.alloc(50_000, 2) })) }
    const big = encodePartFrameInto({ t: 'part', id: 4, part: huge }, scratch)
    expect(big.chunks[0].buffer.byteLength).toBeGreaterThan(8 * 1024 * 1024)
    big.done()
    const after = encodePartFrameInto({ t: 'part', id: 5, part: huge }, scratch)
    expect(after.chunks[0].buffer).not.toBe(big.chunks[0].buffer)
  })
})
