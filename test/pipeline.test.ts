import { describe, expect, it } from 'vitest'
import { MemoryLevel } from 'memory-level'
import { ClassicLevel } from 'classic-level'
import { MirrorLevel } from '../lib/primary/mirror-level'
import { RESERVED_RANGE } from '../lib/keyspace'
import { inspectLog, tempDir, userData } from './helpers'

const hex = (s: string): string => Buffer.from(s).toString('hex')

// A memory-level whose batches fail when they touch the key 'poison'.
class FlakyLevel extends MemoryLevel<Buffer, Buffer> {
  failing = true
  async _batch (ops: Array<{ key: Buffer }>, options: unknown): Promise<void> {
    if (this.failing && ops.some((op) => Buffer.from(op.key).toString() === 'poison')) throw new Error('disk on fire')
    // @ts-expect-error _batch is not in abstract-level's public types
    return super._batch(ops, options)
  }
}

describe('write pipeline', () => {
  it('commits concurrent writes in call order: the last write to a key wins, seqs never go back', async () => {
    const db = new MirrorLevel(new MemoryLevel())
    await db.open()
    const seqs: number[] = []
    const writes = []
    for (let i = 0; i < 500; i++) {
      const op = i % 7 === 0 ? db.del('k') : db.put('k', String(i))
      writes.push(op.then(() => seqs.push(db.head!.seq)))
    }
    await Promise.all(writes)
    expect(await db.get('k')).toBe('499')
    for (let i = 1; i < seqs.length; i++) expect(seqs[i]).toBeGreaterThanOrEqual(seqs[i - 1])
    await db.close()
  })

  it('group-commits concurrent writes into fewer inner batches, one seq each, with matching log records', async () => {
    const inner = new MemoryLevel()
    const db = new MirrorLevel(inner)
    await db.open()
    let innerBatches = 0
    inner.on('write', () => { innerBatches++ })
    await Promise.all(Array.from({ length: 64 }, (_, i) => db.put(`key${i}`, 'v')))
    const { head, records } = await inspectLog(inner as never)
    expect(head.seq).toBe(innerBatches)
    expect(innerBatches).toBeLessThan(64)
    expect(innerBatches).toBeGreaterThanOrEqual(1)
    // Records are consecutive and together name every key written.
    let prev = 0
    const named = new Set<string>()
    for (const r of records) {
      expect(r.from).toBe(prev)
      prev = r.to
      for (const k of r.keys!) named.add(k.toString())
    }
    expect(prev).toBe(head.seq)
    expect(named.size).toBe(64)
    await db.close()
  })

  it('puts the user ops and the log record in one inner batch, and the head key now and then', async () => {
    const inner = new MemoryLevel()
    const db = new MirrorLevel(inner)
    await db.open()
    await db.close()
    await db.open() // a store wrapped before: its first write starts a history entry
    const batches: Array<Array<{ key: Buffer }>> = []
    inner.on('write', (ops: Array<{ key: Buffer }>) => batches.push(ops))
    await db.batch([{ type: 'put', key: 'a', value: '1' }, { type: 'del', key: 'b' }])
    await db.batch([{ type: 'put', key: 'c', value: '1' }, { type: 'del', key: 'd' }])
    expect(batches).toHaveLength(2)
    const reserved = (ops: Array<{ key: Buffer }>): string[] => ops.map((op) => Buffer.from(op.key))
      .filter((k) => k.subarray(0, RESERVED_RANGE.gte.length).equals(RESERVED_RANGE.gte)).map((k) => k.subarray(RESERVED_RANGE.gte.length).toString('latin1').replace(/[^\x20-\x7e]/g, ''))
    // the first write after an open also starts a new history entry, in the same batch
    expect(reserved(batches[0])).toEqual(['meta/history', 'log/'])
    expect(reserved(batches[1])).toEqual(['log/'])
    // the head is the newest record; the head key is refreshed every 128 commits
    while (db.head!.seq < 128) await db.put('x', 'y')
    expect(reserved(batches.at(-1)!)).toEqual(['log/', 'meta/head'])
    expect(batches[0].map((op) => String(op.key)).slice(0, 2)).toEqual(['a', 'b'])
    expect(batches[1].map((op) => String(op.key)).slice(0, 2)).toEqual(['c', 'd'])
    await db.close()
  })

  it('a failed inner batch rejects only its write, leaves no trace and the pipeline goes on', async () => {
    const inner = new FlakyLevel()
    const db = new MirrorLevel(inner as never)
    await db.open()
    const results = await Promise.allSettled([db.put('a', '1'), db.put('poison', 'x'), db.put('b', '2')])
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled'])
    const reason = (results[1] as PromiseRejectedResult).reason
    expect(reason.code).toBe('MIRROR_WRITE_FAILED')
    expect(reason.cause.message).toBe('disk on fire')
    expect(await db.get('poison')).toBeUndefined()
    const { head, records } = await inspectLog(inner as never)
    expect(head.seq).toBe(records.length)
    expect(records.flatMap((r) => r.keys!.map(String))).not.toContain('poison')
    // and it keeps working, with consecutive seqs
    inner.failing = false
    await db.put('poison', 'now fine')
    const after = await inspectLog(inner as never)
    expect(after.records.map((r) => r.from)).toEqual(after.records.map((_, i) => i))
    expect(await db.get('poison')).toBe('now fine')
    await db.close()
  })

  it('refuses writes into the reserved range with a coded error and changes nothing', async () => {
    const inner = new MemoryLevel()
    const db = new MirrorLevel<Buffer, string>(inner, { keyEncoding: 'buffer' })
    await db.open()
    await db.put(Buffer.from('ok'), 'v')
    const before = await inspectLog(inner as never)
    const reserved = Buffer.concat([RESERVED_RANGE.gte, Buffer.from('meta/head')])
    await expect(db.put(reserved, 'x')).rejects.toMatchObject({ code: 'MIRROR_RESERVED_KEY' })
    await expect(db.del(reserved)).rejects.toMatchObject({ code: 'MIRROR_RESERVED_KEY' })
    await expect(db.batch([{ type: 'put', key: Buffer.from('fine'), value: 'v' }, { type: 'put', key: reserved, value: 'x' }]))
      .rejects.toMatchObject({ code: 'MIRROR_RESERVED_KEY' })
    await expect(db.batch().put(Buffer.from('fine'), 'v').del(reserved).write()).rejects.toMatchObject({ code: 'MIRROR_RESERVED_KEY' })
    expect(await db.get(Buffer.from('fine'))).toBeUndefined()
    expect(await inspectLog(inner as never)).toEqual(before)
    // Just outside the range is user space.
    const below = Buffer.from([0xff])
    const above = RESERVED_RANGE.lt
    await db.put(below, 'low')
    await db.put(above, 'high')
    expect(await db.get(above)).toBe('high')
    await db.close()
  })

  it('hides the reserved range from every read: get, has, iterators in both directions, seek, clear', async () => {
    const inner = new MemoryLevel()
    const db = new MirrorLevel<Buffer, string>(inner, { keyEncoding: 'buffer' })
    await db.open()
    const keys = [Buffer.from('a'), Buffer.from([0xff]), Buffer.from([0xff, 0x00]), RESERVED_RANGE.lt, Buffer.from([0xff, 0xff])]
    for (const k of keys) await db.put(k, k.toString('hex'))
    const reserved = Buffer.concat([RESERVED_RANGE.gte, Buffer.from('meta/head')])
    expect(await db.get(reserved)).toBeUndefined()
    expect(await db.has(reserved)).toBe(false)
    expect(await db.getMany([reserved, keys[0]])).toEqual([undefined, '61'])
    expect(await db.hasMany([reserved, keys[0]])).toEqual([false, true])
    const sorted = keys.map((k) => k.toString('hex')).sort()
    expect((await db.keys().all()).map((k) => k.toString('hex'))).toEqual(sorted)
    expect((await db.keys({ reverse: true }).all()).map((k) => k.toString('hex'))).toEqual([...sorted].reverse())
    expect(await db.values().all()).toEqual(sorted)
    expect((await db.iterator({ limit: 4 }).all()).map(([k]) => k.toString('hex'))).toEqual(sorted.slice(0, 4))
    for (const size of [1, 2, 3, 100]) {
      const it = db.keys()
      const seen: string[] = []
      while (true) {
        const page = await it.nextv(size)
        if (page.length === 0) break
        seen.push(...page.map((k) => k.toString('hex')))
      }
      expect(seen).toEqual(sorted)
    }
    const it = db.keys()
    it.seek(reserved)
    expect((await it.next())!.toString('hex')).toBe(RESERVED_RANGE.lt.toString('hex'))
    await it.close()
    const rev = db.keys({ reverse: true })
    rev.seek(reserved)
    expect((await rev.next())!.toString('hex')).toBe('ff00')
    await rev.close()
    await db.clear()
    expect(await db.keys().all()).toEqual([])
    // clear() went through the log: the head moved on, and the internal keys are all still there.
    expect(db.head!.seq).toBe(keys.length + 1)
    expect((await inspectLog(inner as never)).records).toHaveLength(keys.length + 1)
    await db.close()
  })

  it('clear() honours ranges, limit and reverse, and logs every key it deletes', async () => {
    const inner = new MemoryLevel()
    const db = new MirrorLevel(inner)
    await db.open()
    await db.batch(Array.from({ length: 2500 }, (_, i) => ({ type: 'put' as const, key: String(i).padStart(5, '0'), value: 'v' })))
    await db.clear({ gte: '00100', lt: '02200' })
    expect(await db.keys().all()).toHaveLength(400)
    await db.clear({ reverse: true, limit: 10 })
    const left = await db.keys().all()
    expect(left).toHaveLength(390)
    expect(left.at(-1)).toBe('02489')
    const { records } = await inspectLog(inner as never)
    const deleted = new Set(records.slice(1).flatMap((r) => r.keys!.map(String)))
    expect(deleted.size).toBe(2110)
    await db.close()
  })

  it('wraps a store that already holds data without changing it, and records that', async () => {
    const { dir, cleanup } = tempDir()
    try {
      const plain = new ClassicLevel(dir)
      await plain.batch([{ type: 'put', key: 'x', value: '1' }, { type: 'put', key: 'y', value: '2' }])
      const before = await userData(plain as never)
      await plain.close()
      const db = new MirrorLevel(new ClassicLevel(dir))
      await db.open()
      expect(db.origin!.preexisting).toBe(true)
      expect(await db.iterator().all()).toEqual([['x', '1'], ['y', '2']])
      await db.close()
      const again = new ClassicLevel(dir)
      expect(await userData(again as never)).toEqual(before)
      await again.close()
      const fresh = new MirrorLevel(new MemoryLevel())
      await fresh.open()
      expect(fresh.origin!.preexisting).toBe(false)
      await fresh.close()
    } finally {
      cleanup()
    }
  })

  it('keeps head and seq across reopen, on classic-level', async () => {
    const { dir, cleanup } = tempDir()
    try {
      const db = new MirrorLevel(new ClassicLevel(dir))
      await db.put('a', '1')
      await db.batch([{ type: 'put', key: 'b', value: '2' }, { type: 'del', key: 'a' }])
      const head = db.head
      await db.close()
      await db.open()
      expect(db.head).toEqual(head)
      await db.put('c', '3', { sync: true } as never)
      expect(db.head!.seq).toBe(head!.seq + 1)
      expect(await db.iterator().all()).toEqual([['b', '2'], ['c', '3']])
      await db.close()
    } finally {
      cleanup()
    }
  })

  it('sublevel writes go through the log', async () => {
    const inner = new MemoryLevel()
    const db = new MirrorLevel(inner)
    const sub = db.sublevel('s')
    await sub.put('k', 'v')
    await sub.sublevel('t').batch([{ type: 'put', key: 'k2', value: 'v2' }])
    const { records } = await inspectLog(inner as never)
    expect(records.flatMap((r) => r.keys!.map(String))).toEqual(['!s!k', '!s!!t!k2'])
    expect(await userData(inner as never)).toEqual(new Map([[hex('!s!k'), hex('v')], [hex('!s!!t!k2'), hex('v2')]]))
    await db.close()
  })

  it('rejects bad options with coded errors', () => {
    expect(() => new MirrorLevel({} as never)).toThrow(expect.objectContaining({ code: 'MIRROR_INVALID_OPTION' }))
    expect(() => new MirrorLevel(new MemoryLevel(), { logBudget: -1 })).toThrow(expect.objectContaining({ code: 'MIRROR_INVALID_OPTION' }))
    expect(() => new MirrorLevel(new MemoryLevel(), { maxGroupOps: 1.5 })).toThrow(expect.objectContaining({ code: 'MIRROR_INVALID_OPTION' }))
    expect(() => new MirrorLevel(new MemoryLevel(), { maxGroupBytes: '1' as never })).toThrow(expect.objectContaining({ code: 'MIRROR_INVALID_OPTION' }))
  })

  it('refuses one of its own options in the wrong case or without its s, naming the one meant; passes on names it does not know, as abstract-level does', async () => {
    for (const [typo, meant] of [['logbudget', 'logBudget'], ['MaxGroupOps', 'maxGroupOps'], ['replica', 'replicas'], ['closetimeout', 'closeTimeout']]) {
      expect(() => new MirrorLevel(new MemoryLevel(), { [typo]: 1 } as never)).toThrow(expect.objectContaining({ code: 'MIRROR_INVALID_OPTION', message: expect.stringContaining(`did you mean '${meant}'`) }))
    }
    // abstract-level hands such options to open() and its postopen hooks ('userland' options)
    const db = new MirrorLevel(new MemoryLevel(), { userland: 123 } as never)
    const seen: unknown[] = []
    db.hooks.postopen.add(async (options: unknown) => { seen.push(options) })
    await db.open()
    expect(seen).toEqual([expect.objectContaining({ userland: 123 })])
    await db.close()
  })
})
