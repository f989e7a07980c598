import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { ClassicLevel } from 'classic-level'
import { MemoryLevel } from 'memory-level'
import { MirrorLevel } from '../lib/primary/mirror-level'
import { tempDir } from './helpers'

// A caller may reuse its Buffer as soon as put/del/batch returns, as with classic-level itself:
// the bytes are captured when the write is made, not when its group commits.
describe('writes capture their keys and values when they are made', () => {
  for (const kind of ['memory-level', 'classic-level'] as const) {
    it(`un-awaited puts, dels and batches from one reused scratch Buffer all land (${kind})`, async () => {
      const { dir, cleanup } = tempDir()
      try {
        const inner = kind === 'memory-level' ? new MemoryLevel() : new ClassicLevel(`${dir}/db`)
        const db = new MirrorLevel<Buffer, Buffer>(inner, { keyEncoding: 'buffer', valueEncoding: 'buffer' })
        await db.open()
        await db.put(Buffer.from('gone-1'), Buffer.from('x'))
        const key = Buffer.alloc(5)
        const value = Buffer.alloc(1)
        const pending: Array<Promise<unknown>> = []
        for (let i = 0; i < 3; i++) {
          key.write(`key-${i}`)
          value.write('ABC'[i])
          pending.push(db.put(key, value))
        }
        key.write('gone-')
        const del = Buffer.from('gone-1')
        pending.push(db.del(del))
        del.write('key-0')
        key.write('bat-0')
        value.write('D')
        pending.push(db.batch([{ type: 'put', key, value }]))
        key.write('bat-1')
        value.write('E')
        const chained = db.batch().put(key, value)
        key.write('bat-2')
        pending.push(chained.write())
        value.fill(0)
        await Promise.all(pending)
        const all = await db.iterator().all()
        expect(all.map(([k, v]) => `${k.toString()}=${v.toString()}`)).toEqual(['bat-0=D', 'bat-1=E', 'key-0=A', 'key-1=B', 'key-2=C'])
        await db.close()
      } finally {
        cleanup()
      }
    })
  }
})

describe('captureOps', () => {
  it('copies every key and value exactly, into slabs no larger than the small buffers they hold (fast-check)', async () => {
    const { captureOps } = await import('../lib/primary/capture')
    const bytes = fc.oneof(fc.uint8Array({ maxLength: 40 }), fc.integer({ min: 16 * 1024 - 2, max: 70_000 }).map((n) => new Uint8Array(n).fill(n & 255)))
    const op = fc.oneof(
      fc.record({ type: fc.constant('put' as const), key: bytes, value: bytes }),
      fc.record({ type: fc.constant('del' as const), key: bytes })
    )
    fc.assert(fc.property(fc.array(op, { maxLength: 30 }), (ops) => {
      const input = ops.map((o) => o.type === 'put' ? { type: 'put' as const, key: Buffer.from(o.key), value: Buffer.from(o.value) } : { type: 'del' as const, key: Buffer.from(o.key) })
      let small = 0
      for (const o of input) for (const b of o.type === 'put' ? [o.key, o.value] : [o.key]) if (b.length <= 16 * 1024) small += b.length
      const out = captureOps(input)
      const views: Buffer[] = []
      for (let i = 0; i < input.length; i++) {
        const a = input[i]
        const b = out[i]
        expect(b.type).toBe(a.type)
        const pairs: Array<[Buffer, Buffer]> = [[a.key, b.key]]
        if (a.type === 'put' && b.type === 'put') pairs.push([a.value, b.value])
        for (const [src, copy] of pairs) {
          expect(copy.equals(src)).toBe(true)
          if (copy.length > 0) expect(copy.buffer).not.toBe(src.buffer)
          // Small buffers share slabs sized by what is left to copy, never by the large values.
          if (copy.length > 0 && copy.length <= 16 * 1024) expect(copy.buffer.byteLength).toBeLessThanOrEqual(Math.min(64 * 1024, small))
          views.push(copy)
        }
      }
      // No two copies share bytes.
      const spans = views.filter((v) => v.length > 0).map((v) => [v.buffer, v.byteOffset, v.byteOffset + v.length] as const)
      for (let i = 0; i < spans.length; i++) {
        for (let j = i + 1; j < spans.length; j++) {
          if (spans[i][0] === spans[j][0]) expect(spans[i][2] <= spans[j][1] || spans[j][2] <= spans[i][1]).toBe(true)
        }
      }
    }), { numRuns: 200 })
  })
})
