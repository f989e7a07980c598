import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { MemoryLevel } from 'memory-level'
import { MirrorLevel } from '../lib/primary/mirror-level'
import type { MirrorError } from '../lib/errors'
import { LevelReplica } from '../adapters/level'
import { inspectLog } from './helpers'
import { serialize, sleep } from './replication-helpers'

// For every seq w the log still reaches, the records ending after w must name every key written
// after w (or say "any key"): that is what lets a replica at w catch up incrementally.
function checkCoverage (records: Array<{ from: number, to: number, keys: Buffer[] | null }>, writes: Array<{ seq: number, keys: string[] }>, head: number): void {
  let prev = records.length > 0 ? records[0].from : head
  for (const r of records) {
    expect(r.from).toBe(prev)
    expect(r.to).toBeGreaterThan(r.from)
    prev = r.to
  }
  expect(prev).toBe(head)
  const start = records.length > 0 ? records[0].from : head
  // Walk w down from head, growing "keys written after w" and "keys named by records after w".
  const needed = new Set<string>()
  const named = new Set<string>()
  let any = false
  let r = records.length - 1
  let i = writes.length - 1
  for (let w = head - 1; w >= start; w--) {
    while (i >= 0 && writes[i].seq > w) for (const k of writes[i--].keys) needed.add(k)
    while (r >= 0 && records[r].to > w) {
      const keys = records[r--].keys
      if (keys === null) any = true
      else for (const k of keys) named.add(String(k))
    }
    if (any) break
    for (const k of needed) expect(named.has(k), `key ${k} missing for w=${w}`).toBe(true)
  }
}

describe('log compaction', () => {
  it('merges records of repeated keys and stays within the budget', async () => {
    const inner = new MemoryLevel()
    const db = new MirrorLevel(inner, { logBudget: 4096 })
    await db.open()
    const writes: Array<{ seq: number, keys: string[] }> = []
    for (let i = 0; i < 2000; i++) {
      const key = `key-${i % 20}`
      await db.put(key, String(i))
      writes.push({ seq: db.head!.seq, keys: [key] })
    }
    await db.put('last', 'x') // queued behind any compaction job
    writes.push({ seq: db.head!.seq, keys: ['last'] })
    const { head, records, bytes } = await inspectLog(inner as never)
    expect(bytes).toBe(head.logBytes)
    expect(head.logBytes).toBeLessThanOrEqual(4096 + 64)
    // 20 keys fit in a quarter of the budget: compaction never needs "any key"
    expect(records.every((r) => r.keys !== null)).toBe(true)
    expect(records[0].from).toBe(0)
    checkCoverage(records, writes, head.seq)
    await db.close()
  })

  it('falls back to an "any key" record when distinct keys outgrow the budget', async () => {
    const inner = new MemoryLevel()
    const db = new MirrorLevel(inner, { logBudget: 2048 })
    await db.open()
    const writes: Array<{ seq: number, keys: string[] }> = []
    for (let i = 0; i < 500; i++) {
      await db.put(`distinct-${i}`, 'v')
      writes.push({ seq: db.head!.seq, keys: [`distinct-${i}`] })
    }
    await db.put('last', 'x')
    writes.push({ seq: db.head!.seq, keys: ['last'] })
    const { head, records, bytes } = await inspectLog(inner as never)
    expect(bytes).toBe(head.logBytes)
    expect(head.logBytes).toBeLessThanOrEqual(2048 + 64)
    expect(records[0].keys).toBeNull()
    expect(records[0].from).toBe(0)
    checkCoverage(records, writes, head.seq)
    await db.close()
  })

  it('keeps every suffix of the log complete under random writes and budgets (fast-check)', async () => {
    await fc.assert(fc.asyncProperty(
      fc.integer({ min: 1024, max: 8192 }),
      fc.array(fc.array(fc.integer({ min: 0, max: 60 }), { minLength: 1, maxLength: 8 }), { minLength: 1, maxLength: 300 }),
      async (budget, batches) => {
        const inner = new MemoryLevel()
        const db = new MirrorLevel(inner, { logBudget: budget })
        await db.open()
        const writes: Array<{ seq: number, keys: string[] }> = []
        for (const batch of batches) {
          const keys = batch.map((k) => `k${k}`)
          await db.batch(keys.map((key) => ({ type: 'put' as const, key, value: 'v' })))
          writes.push({ seq: db.head!.seq, keys })
        }
        await db.put('end', 'x')
        writes.push({ seq: db.head!.seq, keys: ['end'] })
        const { head, records, bytes } = await inspectLog(inner as never)
        expect(bytes).toBe(head.logBytes)
        checkCoverage(records, writes, head.seq)
        await db.close()
      }
    ), { numRuns: 60 })
  })

  it('truncation as replicas apply keeps the log complete and its size exact, with compaction and reopens (fast-check)', async () => {
    // Truncation deletes the records this open wrote without reading them back (their sizes are
    // kept in memory); compaction, a reopen or a failed commit makes it read the log instead.
    await fc.assert(fc.asyncProperty(
      fc.constantFrom(1024, 4096, 1 << 20),
      fc.array(fc.record({ seqs: fc.integer({ min: 1, max: 1500 }), keys: fc.integer({ min: 1, max: 400 }), reopen: fc.boolean() }), { minLength: 1, maxLength: 4 }),
      fc.integer({ min: 0, max: 3 }),
      async (budget, rounds, maxDelay) => {
        const inner = new MemoryLevel()
        const replica = new MemoryLevel()
        const open = () => new MirrorLevel(inner, { logBudget: budget, replicas: [new LevelReplica(replica as never, { maxDelay })] })
        let db = open()
        await db.open()
        const writes: Array<{ seq: number, keys: string[] }> = []
        let n = 0
        for (const round of rounds) {
          for (let i = 0; i < round.seqs; i++) {
            const key = `k${(n++ * 7919) % round.keys}`
            await db.put(key, String(n))
            writes.push({ seq: db.head!.seq, keys: [key] })
          }
          await db.replicated()
          if (round.reopen) {
            await db.close()
            db = open()
            await db.open()
          }
        }
        await db.put('end', 'x')
        writes.push({ seq: db.head!.seq, keys: ['end'] })
        await db.replicated()
        await db.close()
        await inner.open()
        await replica.open()
        const { head, records, bytes } = await inspectLog(inner as never)
        expect(bytes).toBe(head.logBytes)
        checkCoverage(records, writes, head.seq)
        expect(await serialize(replica as never)).toBe(await serialize(inner as never))
      }
    ), { numRuns: 12 })
  })

  it('a truncation whose batch fails is tried again a while later, from where it failed, writes or not', async () => {
    // The inner db fails the next batch that deletes anything (only log truncation deletes here).
    class FlakyMemory extends MemoryLevel {
      failDeletes = false
      async _batch (operations: Array<{ type: string }>, options: unknown): Promise<void> {
        if (this.failDeletes && operations.some((op) => op.type === 'del')) {
          this.failDeletes = false
          throw new Error('injected write failure')
        }
        // @ts-expect-error abstract-level's types leave out the methods a subclass implements
        return await super._batch(operations, options)
      }
    }
    const inner = new FlakyMemory()
    const replica = new MemoryLevel()
    const db = new MirrorLevel(inner, { replicas: [new LevelReplica(replica as never, { maxDelay: 0 })] })
    const errors: Error[] = []
    db.on('error', (err: Error) => errors.push(err))
    await db.open()
    const put = async (n: number): Promise<void> => {
      for (let i = 0; i < n; i++) await db.put(`k${i % 50}`, String(i))
      await db.replicated()
    }
    // Truncation runs every 1024 seqs the replica has applied: the first one after this fails.
    await put(1100)
    inner.failDeletes = true
    await put(1100)
    await db.put('drain', 'x') // maintenance queued before this write has run
    expect(errors.map((e) => (e as MirrorError).code)).toEqual(['MIRROR_WRITE_FAILED'])
    expect(inner.failDeletes).toBe(false)
    // No more writes: the failed truncation is tried again a while later, and deletes every record
    // it was to delete, not only those after the ones it failed on.
    const start = Date.now()
    while ((await inspectLog(inner as never)).records[0].from < 2048 && Date.now() - start < 10_000) await sleep(100)
    const { head, records, bytes } = await inspectLog(inner as never)
    expect(bytes).toBe(head.logBytes)
    expect(records[0].from).toBeGreaterThanOrEqual(2048)
    expect(records[0].from).toBeLessThan(head.seq)
    await db.close()
  })

  it('resumes compaction of an over-budget log on open', async () => {
    const inner = new MemoryLevel()
    const big = new MirrorLevel(inner, { logBudget: 1_000_000 })
    for (let i = 0; i < 300; i++) await big.put(`k${i % 10}`, 'v')
    await big.close()
    const small = new MirrorLevel(inner, { logBudget: 1024 })
    await small.open()
    await small.put('x', 'y')
    const { head, bytes } = await inspectLog(inner as never)
    expect(bytes).toBe(head.logBytes)
    expect(head.logBytes).toBeLessThanOrEqual(1024 + 64)
    await small.close()
  })
})
