import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { MemoryLevel } from 'memory-level'
import { ClassicLevel } from 'classic-level'
import { BlockDevice } from '../lib/device/block-device'
import { MirrorLevel } from '../lib/primary/mirror-level'
import { inspectLog, tempDir, userData } from './helpers'

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

  for (const store of ['memory-level', 'classic-level sublevel'] as const) {
    it(`trims 2^34 bytes of a sparse device by deleting only the chunks that exist, in one batch (${store})`, async () => {
      const { dir, cleanup } = tempDir()
      const inner = store === 'memory-level' ? new MemoryLevel() : new ClassicLevel(dir)
      const db = new MirrorLevel(inner)
      const target = store === 'memory-level' ? db : db.sublevel<Buffer, Buffer>('disk0', { keyEncoding: 'buffer', valueEncoding: 'buffer' })
      const prefix = store === 'memory-level' ? '' : Buffer.from('!disk0!').toString('hex')
      try {
        const cs = 4096
        const dev = new BlockDevice(target, { size: 2 ** 34 + 16 * cs, chunkSize: cs })
        await dev.open()
        const offset = 100
        const length = 2 ** 34
        const edge = Math.floor((offset + length) / cs) // the last chunk, trimmed only up to byte 100
        const model = new Map<number, Buffer>() // chunk index -> contents
        const put = async (at: number, data: Buffer) => {
          await dev.write(at, data)
          const i = Math.floor(at / cs)
          const chunk = model.get(i) ?? Buffer.alloc(cs)
          data.copy(chunk, at - i * cs)
          model.set(i, chunk)
        }
        await put(0, bytes(cs, 1)) // first edge: keeps bytes 0..99
        await put(5 * cs + 7, bytes(10, 2))
        await put(2 ** 33, bytes(2 * cs, 3)) // two whole chunks in the middle
        await put((edge - 1) * cs, bytes(cs, 4))
        await put(edge * cs + 50, bytes(150, 5)) // last edge: loses bytes 50..99, keeps 100..199
        await put((edge + 3) * cs, bytes(cs, 6)) // past the range: untouched
        const batches: Array<Array<{ type: string, key: Buffer }>> = []
        target.on('write', (ops) => { batches.push(ops as never) })
        const seq = db.head!.seq
        await dev.trim(offset, length)
        expect(db.head!.seq).toBe(seq + 1)
        expect(batches).toHaveLength(1)
        const key = (i: number) => '63' + i.toString(16).padStart(16, '0')
        const changed = [0, 5, 2 ** 21, 2 ** 21 + 1, edge - 1, edge]
        expect(batches[0].map((op) => `${op.type} ${op.key.toString('hex')}`).sort()).toEqual(
          changed.map((i) => `${i === 0 || i === edge ? 'put' : 'del'} ${key(i)}`).sort())
        const { records } = await inspectLog(inner as never)
        const record = records.find((r) => r.to === seq + 1)!
        expect(record.keys!.map((k) => k.toString('hex')).sort()).toEqual(changed.map((i) => prefix + key(i)).sort())
        model.get(0)!.fill(0, offset)
        for (const i of [5, 2 ** 21, 2 ** 21 + 1, edge - 1]) model.delete(i)
        model.get(edge)!.fill(0, 0, 100)
        for (const [i, chunk] of model) expect(await dev.read(i * cs, cs)).toEqual(chunk)
        expect(await dev.read(3 * cs, 4 * cs)).toEqual(Buffer.alloc(4 * cs))
        expect(await dev.read(2 ** 33 - 10, 2 * cs + 20)).toEqual(Buffer.alloc(2 * cs + 20))
        const stored = [...(await userData(inner as never)).keys()].filter((k) => k.startsWith(prefix + '63'))
        expect(stored.sort()).toEqual([0, edge, edge + 3].map((i) => prefix + key(i)).sort())
        await db.close()
      } finally {
        cleanup()
      }
    })
  }

  it('commits nothing for a trim that changes nothing: holes, and edge chunks already zero there', async () => {
    const cs = 512
    const { db, dev } = await device(2 ** 24, cs)
    await dev.write(0, bytes(100, 1)) // chunk 0: data only before the trimmed range
    await dev.write(10 * cs + 300, bytes(10, 2)) // chunk 10: data only after it
    const before = await dev.read(0, 11 * cs)
    let writes = 0
    db.on('write', () => { writes++ })
    const seq = db.head!.seq
    await dev.trim(200, 10 * cs) // [200, 10 * cs + 200): the tail of chunk 0, chunks 1-9, the head of chunk 10
    await dev.trim(2 ** 23 + 3, 2 ** 23 - 3) // holes only, to the end of the device
    await dev.trim(cs, cs) // one whole hole
    expect(db.head!.seq).toBe(seq)
    expect(writes).toBe(0)
    expect(await dev.read(0, 11 * cs)).toEqual(before)
    await db.close()
  })

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
    // A misspelt chunk size would fix the default into the device for good.
    expect(() => new BlockDevice(db, { size: 4096, chunksize: 512 } as never)).toThrow(expect.objectContaining({ code: 'MIRROR_INVALID_OPTION', message: expect.stringContaining("'chunksize'") }))
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
      // Every write commits one batch; a trim commits one only if its range holds a non-zero byte
      // (all-zero chunks are holes, so otherwise there is nothing to delete or zero).
      let batches = 0
      let expectedBatches = 0
      let db = new MirrorLevel(inner)
      let dev = new BlockDevice(db, { size, chunkSize })
      await dev.open()
      db.on('write', () => { batches++ })
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
          db.on('write', () => { batches++ })
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
        if (len > 0 && (o.kind === 'write' || model.subarray(o.offset, o.offset + len).some((b) => b !== 0))) expectedBatches++
        model.fill(fill, o.offset, o.offset + len)
        const p = o.kind === 'write' ? dev.write(o.offset, Buffer.alloc(len, fill)) : dev.trim(o.offset, len)
        if (o.concurrent) inflight.push(p)
        else await p
      }
      await Promise.all(inflight)
      expect(await dev.read(0, size)).toEqual(model)
      expect(batches).toBe(expectedBatches)
      await db.close()
    }), { numRuns: 150 })
  })
})
