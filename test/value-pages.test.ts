import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { MemoryLevel } from 'memory-level'
import { valuePages } from '../lib/value-pages'

const BUFFERS = { keyEncoding: 'buffer', valueEncoding: 'buffer' } as const

describe('value pages', () => {
  it('read every value in key order, pages sized to the bytes: large values come a few at a time (fast-check)', async () => {
    await fc.assert(fc.asyncProperty(
      fc.array(fc.oneof(fc.constant(-1), fc.nat(200), fc.integer({ min: 50_000, max: 300_000 })), { minLength: 0, maxLength: 600 }),
      async (sizes) => {
        const db = new MemoryLevel<Buffer, Buffer>(BUFFERS)
        const keys = sizes.map((_, i) => Buffer.from(`k${String(i).padStart(4, '0')}`))
        // -1: a key with no value (deleted), read as undefined.
        await db.batch(sizes.flatMap((n, i) => n < 0 ? [] : [{ type: 'put' as const, key: keys[i], value: Buffer.alloc(n, i & 0xff) }]))
        const pageBytes = 1024 * 1024
        const got: Array<Buffer | undefined> = []
        let previous = 0
        let largest = 0
        for await (const values of valuePages(db, keys, undefined, pageBytes)) {
          expect(values.length).toBeGreaterThan(0)
          // Never past 64 keys; sized by the largest value of the page before: as many of it as fit.
          expect(values.length).toBeLessThanOrEqual(previous === 0 ? 8 : Math.max(1, Math.min(64, 2 * previous, Math.floor(pageBytes / Math.max(1, largest)))))
          previous = values.length
          largest = Math.max(1, ...values.map((v) => v?.length ?? 0))
          got.push(...values)
        }
        expect(got.map((v) => v === undefined ? -1 : v.length)).toEqual(sizes)
        got.forEach((v, i) => { if (v !== undefined) expect(v.every((b) => b === (i & 0xff))).toBe(true) })
        await db.close()
      }
    ), { numRuns: 40 })
  })

  it('after a run of small values, meet large ones with at most 64 in one page (a hostile trial: 256 of 5 MiB, 845 MiB of buffers)', async () => {
    const db = new MemoryLevel<Buffer, Buffer>(BUFFERS)
    const big = Buffer.alloc(1024 * 1024)
    const keys = Array.from({ length: 500 }, (_, i) => Buffer.from(`k${String(i).padStart(3, '0')}`))
    await db.batch(keys.map((key, i) => ({ type: 'put' as const, key, value: i < 300 ? Buffer.alloc(10) : big })))
    let most = 0
    for await (const values of valuePages(db, keys)) most = Math.max(most, values.reduce((n, v) => n + (v?.length ?? 0), 0))
    expect(most).toBeLessThanOrEqual(64 * big.length)
    expect(most).toBeGreaterThanOrEqual(4 * big.length)
    await db.close()
  })

  it('keep a page of 5 MiB values to a few of them, where 256 at a time held 1.28 GB', async () => {
    const db = new MemoryLevel<Buffer, Buffer>(BUFFERS)
    const big = Buffer.alloc(5 * 1024 * 1024)
    const keys = Array.from({ length: 40 }, (_, i) => Buffer.from(`big${String(i).padStart(2, '0')}`))
    await db.batch(keys.map((key) => ({ type: 'put' as const, key, value: big })))
    let most = 0
    let n = 0
    for await (const values of valuePages(db, keys)) {
      most = Math.max(most, values.length)
      n += values.length
    }
    expect(n).toBe(40)
    // The first page (8 keys) is read before any size is known; every later one holds one.
    expect(most).toBe(8)
    await db.close()
  })
})
