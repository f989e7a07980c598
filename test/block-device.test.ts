import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { MemoryLevel } from 'memory-level'
import { ClassicLevel } from 'classic-level'
import { BlockDevice } from '../lib/device/block-device'
import { MirrorLevel } from '../lib/primary/mirror-level'
import { tempDir, userData } from './helpers'

async function device (size: number, chunkSize: number) {
  const inner = new MemoryLevel()
  const db = new MirrorLevel(inner)
  const dev = new BlockDevice(db, { size, chunkSize })
  await dev.open()
  return { inner, db, dev }
}

const bytes = (n: number, fill: number): Buffer => Buffer.alloc(n, fill)

describe('BlockDevice', () => {
  it('reads back unaligned writes across chunks; holes read as zeros', async () => {
    const { db, dev } = await device(4096, 512)
    expect(await dev.read(0, 4096)).toEqual(Buffer.alloc(4096))
    await dev.write(100, bytes(1000, 7))
    const model = Buffer.alloc(4096)
    model.fill(7, 100, 1100)
    expect(await dev.read(0, 4096)).toEqual(model)
    expect(await dev.read(99, 3)).toEqual(Buffer.from([0, 7, 7]))
    expect(dev.size).toBe(4096)
    expect(dev.chunkSize).toBe(512)
    await db.close()
  })

  it('commits a write spanning many chunks as one batch with one seq', async () => {
    const { db, dev } = await device(1 << 20, 512)
    const before = db.head!.seq
    await dev.write(300, bytes(100_000, 1))
    expect(db.head!.seq).toBe(before + 1)
    await dev.trim(0, 1 << 20)
    expect(db.head!.seq).toBe(before + 2)
    await db.close()
  })

  it('stores all-zero chunks as holes (absent keys)', async () => {
    const { inner, db, dev } = await device(4096, 1024)
    await dev.write(0, bytes(4096, 9))
    const chunkKeys = async () => [...(await userData(inner as never)).keys()].filter((k) => k.startsWith('63'))
    expect(await chunkKeys()).toHaveLength(4)
    await dev.write(1024, Buffer.alloc(1024)) // zeros written: a hole
    await dev.trim(2048 + 10, 1014) // tail of chunk 2 zeroed: still data
    await dev.trim(3072, 1024) // whole chunk trimmed: a hole
    expect(await chunkKeys()).toHaveLength(2)
    await dev.trim(2048, 10) // the rest of chunk 2: now all zero, a hole
    expect(await chunkKeys()).toHaveLength(1)
    const model = Buffer.alloc(4096)
    model.fill(9, 0, 1024)
    expect(await dev.read(0, 4096)).toEqual(model)
    await db.close()
  })

  it('never loses an update when concurrent unaligned writes share a chunk', async () => {
    const { db, dev } = await device(4096, 512)
    const model = Buffer.alloc(4096)
    const writes = []
    for (let i = 0; i < 200; i++) {
      const offset = (i * 37) % 4000
      const len = 1 + ((i * 13) % 90)
      model.fill(i % 250 + 1, offset, offset + len)
      writes.push(dev.write(offset, bytes(len, i % 250 + 1)))
    }
    await Promise.all(writes)
    expect(await dev.read(0, 4096)).toEqual(model)
    await db.close()
  })

  for (const store of ['memory-level', 'classic-level'] as const) {
    it(`captures data when write() is called: one reused Buffer for many un-awaited writes, flush() and close() wait for them (${store})`, async () => {
      const { dir, cleanup } = tempDir()
      const inner = new MemoryLevel()
      const open = () => new MirrorLevel(store === 'memory-level' ? inner : new ClassicLevel(dir))
      try {
        let db = open()
        const dev = new BlockDevice(db, { size: 16384, chunkSize: 512 })
        await dev.open()
        const model = Buffer.alloc(16384)
        const scratch = Buffer.alloc(2048)
        // aligned whole chunks, unaligned inside one chunk, unaligned across chunks, and overlaps
        // that must wait for an earlier write's chunk locks before their batch is built
        const round = (base: number, writes: Array<[number, number]>, fill: number) => {
          const settled: boolean[] = []
          writes.forEach(([offset, len], i) => {
            scratch.fill(fill + i, 0, len)
            model.fill(fill + i, base + offset, base + offset + len)
            const view = i % 2 === 0 ? scratch.subarray(0, len) : new Uint8Array(scratch.buffer, scratch.byteOffset, len)
            const p = dev.write(base + offset, view)
            settled.push(false)
            void p.then(() => { settled[i] = true })
          })
          scratch.fill(0xEE)
          return settled
        }
        const writes: Array<[number, number]> = [[0, 1024], [1124, 300], [2548, 700], [4096, 512], [1324, 400], [0, 100], [2000, 2048], [7000, 1]]
        const first = round(0, writes, 1)
        await dev.flush()
        expect(first.every(Boolean)).toBe(true)
        const second = round(8192, writes, 101)
        await dev.close()
        expect(second.every(Boolean)).toBe(true)
        // and changing the Buffer after the writes settled changes nothing stored
        scratch.fill(0xDD)
        if (store === 'classic-level') {
          await db.close()
          db = open()
        }
        const again = new BlockDevice(db)
        await again.open()
        expect(await again.read(0, 16384)).toEqual(model)
        await db.close()
      } finally {
        cleanup()
      }
    })
  }

  it('persists size and chunkSize; refuses another chunkSize or a smaller size; grows', async () => {
    const inner = new MemoryLevel()
    const db = new MirrorLevel(inner)
    const sub = db.sublevel<Buffer, Buffer>('disk0', { keyEncoding: 'buffer', valueEncoding: 'buffer' })
    const dev = new BlockDevice(sub, { size: 8192, chunkSize: 1024 })
    await dev.open()
    await dev.write(8000, bytes(192, 3))
    await dev.close()
    await expect(new BlockDevice(sub, { chunkSize: 512 }).open()).rejects.toMatchObject({ code: 'MIRROR_DEVICE_MISMATCH' })
    await expect(new BlockDevice(sub, { size: 4096 }).open()).rejects.toMatchObject({ code: 'MIRROR_DEVICE_MISMATCH' })
    const same = new BlockDevice(sub)
    await same.open()
    expect([same.size, same.chunkSize]).toEqual([8192, 1024])
    const grown = new BlockDevice(sub, { size: 16384 })
    await grown.open()
    expect(grown.size).toBe(16384)
    const expected = Buffer.alloc(1024)
    expected.fill(3, 8000 - 7168)
    expect(await grown.read(7168, 1024)).toEqual(expected)
    expect(await grown.read(8192, 8192)).toEqual(Buffer.alloc(8192))
    // A second device in a sibling sublevel of the same store is independent.
    const other = new BlockDevice(db.sublevel<Buffer, Buffer>('disk1', { keyEncoding: 'buffer', valueEncoding: 'buffer' }), { size: 100, chunkSize: 10 })
    await other.open()
    await other.write(0, bytes(100, 1))
    expect(await grown.read(0, 100)).toEqual(Buffer.alloc(100))
    await db.close()
  })

  it('refuses bad offsets, lengths and options with coded errors and writes nothing', async () => {
    const { db, dev } = await device(1000, 100)
    const seq = db.head!.seq
    const bad: Array<[number, number]> = [[-1, 1], [0.5, 1], [NaN, 1], [990, 11], [1001, 0], [Number.MAX_SAFE_INTEGER, 2]]
    for (const [offset, len] of bad) {
      await expect(dev.write(offset, bytes(Math.max(0, Math.min(len, 100)), 1))).rejects.toMatchObject({ code: 'MIRROR_OUT_OF_RANGE' })
      await expect(dev.trim(offset, len)).rejects.toMatchObject({ code: 'MIRROR_OUT_OF_RANGE' })
      await expect(dev.read(offset, len)).rejects.toMatchObject({ code: 'MIRROR_OUT_OF_RANGE' })
    }
    await expect(dev.read(0, -1)).rejects.toMatchObject({ code: 'MIRROR_OUT_OF_RANGE' })
    const huge = new BlockDevice(new MirrorLevel(new MemoryLevel()), { size: 2 ** 50 })
    await huge.open()
    await expect(huge.read(0, 2 ** 40)).rejects.toMatchObject({ code: 'MIRROR_OUT_OF_RANGE' })
    await expect(dev.trim(0, 1.5)).rejects.toMatchObject({ code: 'MIRROR_OUT_OF_RANGE' })
    await expect(dev.write(0, 'text' as never)).rejects.toMatchObject({ code: 'MIRROR_INVALID_OPTION' })
    expect(db.head!.seq).toBe(seq)
    expect(await dev.read(0, 1000)).toEqual(Buffer.alloc(1000))
    expect(() => new BlockDevice(db, { size: 0 })).toThrow(expect.objectContaining({ code: 'MIRROR_INVALID_OPTION' }))
    expect(() => new BlockDevice(db, { size: 10, chunkSize: -4 })).toThrow(expect.objectContaining({ code: 'MIRROR_INVALID_OPTION' }))
    expect(() => new BlockDevice(null as never)).toThrow(expect.objectContaining({ code: 'MIRROR_INVALID_OPTION' }))
    await expect(new BlockDevice(new MirrorLevel(new MemoryLevel())).open()).rejects.toMatchObject({ code: 'MIRROR_INVALID_OPTION' })
    await dev.close()
    await expect(dev.read(0, 1)).rejects.toMatchObject({ code: 'MIRROR_NOT_OPEN' })
    await db.close()
  })

  it('flush() waits for pending writes and syncs them, on classic-level', async () => {
    const { dir, cleanup } = tempDir()
    try {
      const db = new MirrorLevel(new ClassicLevel(dir))
      const dev = new BlockDevice(db, { size: 1 << 16, chunkSize: 4096 })
      await dev.open()
      let settled = 0
      for (let i = 0; i < 16; i++) void dev.write(i * 4096 + 1, bytes(100, i + 1)).then(() => { settled++ })
      await dev.flush()
      // every write issued before flush() had settled by the time it resolved
      expect(settled).toBe(16)
      await dev.close()
      await db.close()
      const again = new MirrorLevel(new ClassicLevel(dir))
      const dev2 = new BlockDevice(again)
      await dev2.open()
      for (let i = 0; i < 16; i++) expect(await dev2.read(i * 4096 + 1, 100)).toEqual(bytes(100, i + 1))
      await again.close()
    } finally {
      cleanup()
    }
  })

  it('matches a plain byte array under random unaligned writes, trims, reads and reopens (fast-check)', async () => {
    const size = 3000
    const op = fc.oneof(
      fc.record({ kind: fc.constant('write' as const), offset: fc.nat(size - 1), len: fc.integer({ min: 0, max: 700 }), fill: fc.integer({ min: 0, max: 255 }), concurrent: fc.boolean() }),
      fc.record({ kind: fc.constant('trim' as const), offset: fc.nat(size - 1), len: fc.integer({ min: 0, max: 1500 }), concurrent: fc.boolean() }),
      fc.record({ kind: fc.constant('read' as const), offset: fc.nat(size - 1), len: fc.integer({ min: 0, max: 1500 }) }),
      fc.record({ kind: fc.constant('reopen' as const) })
    )
    await fc.assert(fc.asyncProperty(fc.constantFrom(1, 7, 64, 512, 4096), fc.array(op, { maxLength: 40 }), async (chunkSize, ops) => {
      const inner = new MemoryLevel()
      let db = new MirrorLevel(inner)
      let dev = new BlockDevice(db, { size, chunkSize })
      await dev.open()
      const model = Buffer.alloc(size)
      let inflight: Array<Promise<void>> = []
      for (const o of ops) {
        if (o.kind === 'reopen') {
          await Promise.all(inflight)
          inflight = []
          await dev.close()
          await db.close()
          db = new MirrorLevel(inner)
          dev = new BlockDevice(db)
          await dev.open()
          continue
        }
        const len = Math.min(o.len, size - o.offset)
        if (o.kind === 'read') {
          await Promise.all(inflight)
          inflight = []
          expect(await dev.read(o.offset, len)).toEqual(model.subarray(o.offset, o.offset + len))
          continue
        }
        const fill = o.kind === 'write' ? o.fill : 0
        model.fill(fill, o.offset, o.offset + len)
        const p = o.kind === 'write' ? dev.write(o.offset, Buffer.alloc(len, fill)) : dev.trim(o.offset, len)
        if (o.concurrent) inflight.push(p)
        else await p
      }
      await Promise.all(inflight)
      expect(await dev.read(0, size)).toEqual(model)
      await db.close()
    }), { numRuns: 150 })
  })
})
