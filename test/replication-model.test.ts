import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { MemoryLevel } from 'memory-level'
import { MirrorLevel } from '../lib/primary/mirror-level'
import { BlockDevice } from '../lib/device/block-device'
import { PrimaryStates, TestAdapter, serialize, sleep, type Fault } from './replication-helpers'

const key = fc.constantFrom('a', 'b', 'c', 'd', 'e', 'f')
const command = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('put' as const), key, value: fc.string({ maxLength: 3 }), sub: fc.boolean(), wait: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('del' as const), key, wait: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('batch' as const), keys: fc.array(key, { maxLength: 8 }), wait: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('clear' as const), gte: key }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('device' as const), offset: fc.nat(4000), len: fc.integer({ min: 1, max: 600 }), fill: fc.nat(255), wait: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('fault' as const), fault: fc.oneof(fc.constantFrom<Fault>('failBefore', 'failAfter'), fc.record({ delay: fc.integer({ min: 1, max: 15 }) })) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('pause' as const), ms: fc.integer({ min: 0, max: 20 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('restartReplica' as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('restartPrimary' as const) }) }
)

describe('replication under faults and restarts (fast-check)', () => {
  it('every state a replica passes through is a state of the primary, never going back; at the end they are equal', async () => {
    await fc.assert(fc.asyncProperty(
      fc.array(command, { maxLength: 40 }),
      fc.integer({ min: 0, max: 5 }),
      fc.integer({ min: 1, max: 6 }),
      fc.boolean(),
      fc.integer({ min: 0, max: 30 }),
      async (commands, maxDelay, maxBatchOps, journal, preexisting) => {
        // Data the store held before it was wrapped: the first copy comes in several parts, which
        // faults and restarts can interrupt (and, journaled, resume) more than once.
        const inner = new MemoryLevel()
        for (let i = 0; i < preexisting; i++) await inner.put(`old${i}`, `o${i}`)
        const states = new PrimaryStates(inner as never, new Map(Array.from({ length: preexisting }, (_, i) => [Buffer.from(`old${i}`).toString('hex'), Buffer.from(`o${i}`).toString('hex')])))
        // maxApplyBytes 1 journals every batch; otherwise they are held in memory and applied at once.
        const adapter = new TestAdapter(new MemoryLevel() as never, { maxDelay, maxBatchOps, ...(journal ? { maxApplyBytes: 1 } : {}) } as never)
        let db = new MirrorLevel(inner, { replicas: [adapter] })
        let dev = new BlockDevice(db.sublevel('dev', { keyEncoding: 'buffer', valueEncoding: 'buffer' }), { size: 4096, chunkSize: 256 })
        await dev.open()
        let inflight: Array<Promise<unknown>> = []
        const run = async (p: Promise<unknown>, wait: boolean) => {
          if (wait) await p
          else inflight.push(p)
        }
        const settle = async () => { await Promise.all(inflight); inflight = [] }
        for (const c of commands) {
          switch (c.kind) {
            case 'put': await run(c.sub ? db.sublevel('s').put(c.key, c.value) : db.put(c.key, c.value), c.wait); break
            case 'del': await run(db.del(c.key), c.wait); break
            case 'batch': await run(db.batch(c.keys.map((k, i) => i % 3 === 2 ? { type: 'del' as const, key: k } : { type: 'put' as const, key: k, value: String(i) })), c.wait); break
            case 'clear': await settle(); await db.clear({ gte: c.gte }); break
            case 'device': await run(dev.write(Math.min(c.offset, 4096 - c.len), Buffer.alloc(c.len, c.fill)), c.wait); break
            case 'fault': adapter.faults.push(c.fault); break
            case 'pause': await sleep(c.ms); break
            case 'restartReplica': await adapter.restart(); break
            case 'restartPrimary':
              await settle()
              await dev.close()
              await db.close()
              db = new MirrorLevel(inner, { replicas: [adapter] })
              dev = new BlockDevice(db.sublevel('dev', { keyEncoding: 'buffer', valueEncoding: 'buffer' }))
              await dev.open()
              break
          }
        }
        await settle()
        adapter.faults = []
        await db.replicated()
        let last = -1
        for (const [watermark, data] of adapter.observed) {
          expect(watermark).toBeGreaterThanOrEqual(last)
          expect(data, `replica at watermark ${watermark}`).toBe(states.states.get(watermark))
          last = watermark
        }
        expect(last).toBe(db.head!.seq)
        expect(await serialize(adapter.db)).toBe(await serialize(inner as never))
        await db.close()
      }
    ), { numRuns: 120 })
  })
})
