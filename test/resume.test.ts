import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { MemoryLevel } from 'memory-level'
import { MirrorLevel } from '../lib/primary/mirror-level'
import type { BatchPart, PartAck, ReplicaHello } from '../lib/adapter'
import { TcpReplica } from '../adapters/tcp'
import { MirrorServer } from '../lib/net/server'
import { tempDir } from './helpers'
import { PrimaryStates, TestAdapter, serialize, sleep, until } from './replication-helpers'
import { FaultProxy } from './tcp-helpers'

// A TestAdapter whose link fails at chosen apply calls (counted from 1), optionally restarting the
// replica there (its engine closed and opened again on the same db: the resume must come from the
// journal it stored). Records every hello.
class FailingLink extends TestAdapter {
  onPart: (() => void) | null = null
  failAt = new Set<number>()
  restartOnFail = false
  hellos: ReplicaHello[] = []
  calls = 0

  override async hello (): Promise<ReplicaHello> {
    const hello = await super.hello()
    this.hellos.push(hello)
    return hello
  }

  override async apply (part: BatchPart, received?: () => void): Promise<PartAck> {
    this.onPart?.()
    if (this.failAt.has(++this.calls)) {
      this.parts.push(part)
      if (this.restartOnFail) await this.restart()
      throw new Error('injected: link failed')
    }
    return await super.apply(part, received)
  }
}

// A primary on `inner` mirroring to a FailingLink with `options`, synced, then stalled in the
// middle of shipping one write: what is written next piles up as a backlog.
async function stalled (inner: MemoryLevel, options: Record<string, unknown>, restartOnFail: boolean): Promise<{ link: FailingLink, db: MirrorLevel }> {
  const link = new FailingLink(new MemoryLevel() as never, options as never)
  link.restartOnFail = restartOnFail
  const db = new MirrorLevel(inner, { replicas: [link] })
  await db.open()
  await db.put('hot', 'start')
  await db.replicated()
  link.stall()
  await db.put('hot', 'stalled')
  await until(() => link.parts.length > link.applies)
  return { link, db }
}

const value = (i: number): string => `${i}`.padEnd(500, '.')

describe('a journaled incremental batch cut short', () => {
  for (const restart of [false, true]) {
    it(`resumes after the last key it holds instead of starting over${restart ? ', across a restart of the replica' : ''}`, async () => {
      const inner = new MemoryLevel()
      const states = new PrimaryStates(inner as never)
      // Parts of ~4 KiB, and anything over 16 KiB goes through the replica's journal.
      const { link, db } = await stalled(inner, { maxDelay: 0, maxBatchBytes: 4096, maxApplyBytes: 16 * 1024 }, restart)
      // A backlog that no step can be cut in: every write also changes 'hot'.
      for (let i = 0; i < 200; i++) await db.batch([{ type: 'put', key: `k${String(i).padStart(4, '0')}`, value: value(i) }, { type: 'put', key: 'hot', value: String(i) }])
      // Parts of the backlog's batch go through: two links fail in the middle of it.
      const before = link.calls
      link.failAt = new Set([before + 8, before + 16])
      // Writes go on while it catches up (one after each part), so the resumed batch has keys
      // changed after it began.
      // What mirrorStatus() says of the batch as each part goes out.
      const staged: number[] = []
      link.onPart = () => staged.push(db.mirrorStatus().replicas[0].batch?.staged ?? -1)
      link.release()
      for (let m = 0; m < 20 && link.calls < before + 18; m++) {
        await db.batch([{ type: 'put', key: `k${String(m * 7).padStart(4, '0')}`, value: value(1000 + m) }, { type: 'put', key: 'hot', value: `again ${m}` }])
        const calls = link.calls
        await until(() => link.calls > calls || db.mirrorStatus().replicas[0].state === 'idle')
      }
      await db.replicated()
      expect(await serialize(link.db)).toBe(await serialize(inner as never))
      // Every state the replica showed was one the primary had.
      for (const [watermark, data] of link.observed) expect(data, `replica state at watermark ${watermark}`).toBe(states.states.get(watermark))
      // After each failure the replica said what it holds, and the next part went on from there.
      const incremental = link.hellos.filter((h) => h.pending !== null && h.pending.from !== undefined)
      expect(incremental.length).toBe(2)
      for (const fail of [before + 8, before + 16]) {
        const failed = link.parts[fail - 1]
        const next = link.parts[fail]
        expect(failed.index).toBeGreaterThan(0)
        expect(next.index).toBe(failed.index)
        expect(next.from).toBe(failed.from)
        expect(next.to).toBeGreaterThanOrEqual(failed.to)
      }
      const pending = incremental[0].pending!
      expect(pending.parts).toBe(link.parts[before + 7].index)
      // mirrorStatus() said so too: the resumed batch showed the parts held from before.
      expect(staged).toContain(pending.parts)
      expect(pending.upto).not.toBeNull()
      // The batch was not shipped again from its first key: its keys went out about once.
      const backlog = link.parts.slice(before).filter((p) => p.from === link.parts[before].from)
      const keys = backlog.flatMap((p) => p.ops.map((op) => String(op.key)))
      expect(new Set(keys).size).toBeGreaterThanOrEqual(200)
      expect(keys.length).toBeLessThan(200 * 1.5)
      await db.close()
    })
  }

  it('resumed any number of times, under link failures and replica restarts, it shows only states of the primary and ends equal (fast-check)', async () => {
    let resumes = 0
    const key = fc.oneof(fc.constantFrom('hot', 'warm'), fc.integer({ min: 0, max: 40 }).map((i) => `k${String(i).padStart(2, '0')}`))
    const write = fc.record({ keys: fc.array(key, { minLength: 1, maxLength: 4 }), del: fc.boolean() })
    await fc.assert(fc.asyncProperty(
      fc.array(write, { minLength: 5, maxLength: 60 }),
      fc.array(write, { maxLength: 10 }),
      fc.uniqueArray(fc.integer({ min: 1, max: 40 }), { maxLength: 6 }),
      fc.boolean(),
      fc.integer({ min: 1, max: 4 }),
      async (backlog, during, failures, restartOnFail, maxBatchOps) => {
        const inner = new MemoryLevel()
        const states = new PrimaryStates(inner as never)
        // Every batch through the journal, in parts of a few ops.
        const { link, db } = await stalled(inner, { maxDelay: 0, maxBatchOps, maxApplyBytes: 1 }, restartOnFail)
        let n = 0
        const apply = (w: { keys: string[], del: boolean }): Promise<void> => db.batch(w.keys.map((k, i) => w.del && i === 0 ? { type: 'del' as const, key: k } : { type: 'put' as const, key: k, value: `v${n++}` }))
        for (const w of backlog) await apply(w)
        const before = link.calls
        link.failAt = new Set(failures.map((f) => before + f))
        link.release()
        for (const w of during) {
          await apply(w)
          const calls = link.calls
          await until(() => link.calls > calls || db.mirrorStatus().replicas[0].state === 'idle')
        }
        await db.replicated()
        resumes += link.hellos.filter((h) => h.pending !== null && h.pending.from !== undefined).length
        // However often it was cut short, in its walk or in a refresh, the backlog's batch started
        // over only where the link failed on its first part (nothing staged yet).
        const backlogFrom = link.parts[before - 1].to
        const firsts = link.parts.filter((p) => p.from === backlogFrom && p.index === 0).length
        const failedFirsts = [...link.failAt].filter((call) => call <= link.calls && link.parts[call - 1]?.from === backlogFrom && link.parts[call - 1]?.index === 0).length
        expect(firsts).toBeLessThanOrEqual(1 + failedFirsts)
        let last = -1
        for (const [watermark, data] of link.observed) {
          expect(watermark).toBeGreaterThanOrEqual(last)
          expect(data, `replica state at watermark ${watermark}`).toBe(states.states.get(watermark))
          last = watermark
        }
        expect(await serialize(link.db)).toBe(await serialize(inner as never))
        await db.close()
      }
    ), { numRuns: 40 })
    // Not a property that holds for want of resumes: 17-41 in 40 runs when this was written.
    expect(resumes).toBeGreaterThan(5)
  })

  it('starts over when its parts were not one walk in key order (a rejoin, a key set shipped in rounds)', async () => {
    const { ReplicaEngine } = await import('../lib/replica/engine')
    const engine = new ReplicaEngine(new MemoryLevel() as never, { maxApplyBytes: 1 })
    await engine.open()
    const put = (k: string): { type: 'put', key: Buffer, value: Buffer } => ({ type: 'put', key: Buffer.from(k), value: Buffer.from('v') })
    await engine.apply({ generation: 'g1', from: 0, to: 1, index: 0, final: true, full: true, range: { after: null, upto: null }, ops: [put('a')] })
    // Ordered parts: the journal can resume after 'c'.
    await engine.apply({ generation: 'g1', from: 1, to: 5, index: 0, final: false, full: false, ordered: true, ops: [put('b'), put('c')] })
    expect(engine.hello().pending).toMatchObject({ from: 1, to: 5, parts: 1, upto: Buffer.from('c') })
    // Resumed at seq 6: a refresh of staged keys changed since seq 5 keeps the read point at 5
    // (cut short now, the next resume must refresh from 5 again); the walk going on moves it to 6.
    await engine.apply({ generation: 'g1', from: 1, to: 6, index: 1, final: false, full: false, refresh: true, ops: [put('b')] })
    expect(engine.hello().pending).toMatchObject({ from: 1, to: 5, parts: 2, upto: Buffer.from('c') })
    await engine.apply({ generation: 'g1', from: 1, to: 6, index: 2, final: false, full: false, ordered: true, ops: [put('d')] })
    expect(engine.hello().pending).toMatchObject({ from: 1, to: 6, parts: 3, upto: Buffer.from('d') })
    // A refresh of a key past the walk's last one is not one: no longer resumable.
    await engine.apply({ generation: 'g1', from: 1, to: 7, index: 3, final: false, full: false, refresh: true, ops: [put('e')] })
    expect(engine.hello().pending).toBeNull()
    await engine.apply({ generation: 'g1', from: 1, to: 5, index: 0, final: false, full: false, ordered: true, ops: [put('b'), put('c')] })
    // A part that goes back in key order: no longer resumable.
    await engine.apply({ generation: 'g1', from: 1, to: 5, index: 1, final: false, full: false, ordered: true, ops: [put('b2')] })
    expect(engine.hello().pending).toBeNull()
    // Parts that do not say they are ordered are never resumable.
    await engine.apply({ generation: 'g1', from: 1, to: 6, index: 0, final: false, full: false, ops: [put('d')] })
    expect(engine.hello().pending).toBeNull()
    // A later part may reach a later seq only where the batch can be resumed.
    await expect(engine.apply({ generation: 'g1', from: 1, to: 7, index: 1, final: true, full: false, ops: [put('e')] })).rejects.toMatchObject({ code: 'MIRROR_BAD_PART' })
    await engine.close()
  })

  it('over TCP: connections cut in the middle of a journaled batch, it resumes on each new connection', async () => {
    const tmp = tempDir('mirror-level-resume-')
    const replicaDb = new MemoryLevel()
    const key = 'feed'.repeat(16)
    const server = new MirrorServer({ dir: tmp.dir, key, port: 0, openDb: () => replicaDb as never })
    const proxy = new FaultProxy((await server.listen()).port)
    const link = new TcpReplica({ port: await proxy.listen(), resource: 'app', key, maxDelay: 0, maxBatchBytes: 256 * 1024, retryMinDelay: 10, retryMaxDelay: 50 })
    const inner = new MemoryLevel()
    const db = new MirrorLevel(inner, { replicas: [link] })
    try {
      await db.open()
      await db.put('hot', 'start')
      await db.replicated()
      proxy.mode = 'refuse'
      proxy.dropAll()
      // 60 MiB that no step can be cut in: past the server's 32 MiB apply limit, so journaled.
      const chunk = Buffer.alloc(4096, 7)
      for (let i = 0; i < 15_000; i++) await db.batch([{ type: 'put', key: `k${String(i).padStart(5, '0')}`, value: chunk }, { type: 'put', key: 'hot', value: String(i) }])
      const sentBefore = link.traffic().sent
      // The first connection is cut 36 MiB in (the server's engine has spilled the batch to its
      // journal at 32 MiB), the next 12 MiB in; then the link holds.
      let connections = 0
      proxy.cutAfter = () => [36, 12][connections++] * 1024 * 1024 || Infinity
      proxy.mode = 'pass'
      await db.replicated({ timeout: 120_000 })
      expect(proxy.cuts).toBe(2)
      expect(await serialize(replicaDb as never)).toBe(await serialize(inner as never))
      // Starting over would have sent 36 + 12 + 60 MiB; resuming sends the batch about once.
      const sent = link.traffic().sent - sentBefore
      expect(sent).toBeGreaterThan(60 * 1024 * 1024)
      expect(sent).toBeLessThan(72 * 1024 * 1024)
    } finally {
      await db.close()
      await proxy.close()
      await server.close()
      tmp.cleanup()
    }
  })

  it('over TCP: a first copy cut again while resumed, with writes going on, resumes again instead of starting over', async () => {
    const tmp = tempDir('mirror-level-resume-copy-')
    const replicaDb = new MemoryLevel()
    const key = 'feed'.repeat(16)
    const server = new MirrorServer({ dir: tmp.dir, key, port: 0, openDb: () => replicaDb as never })
    const proxy = new FaultProxy((await server.listen()).port)
    // 40 MiB the new replica copies: past the server's 32 MiB apply limit, so journaled.
    const inner = new MemoryLevel()
    const chunk = 'c'.repeat(4096)
    for (let i = 0; i < 10_000; i += 1000) {
      await inner.batch(Array.from({ length: 1000 }, (_, j) => ({ type: 'put' as const, key: `k${String(i + j).padStart(5, '0')}`, value: chunk })))
    }
    // The first connection is cut 34 MiB in, the resumed copy's 3 MiB in, the next 2 MiB in.
    let connections = 0
    proxy.cutAfter = () => [34, 3, 2][connections++] * 1024 * 1024 || Infinity
    const link = new TcpReplica({ port: await proxy.listen(), resource: 'app', key, maxDelay: 0, maxBatchBytes: 256 * 1024, retryMinDelay: 10, retryMaxDelay: 50 })
    const db = new MirrorLevel(inner, { replicas: [link] })
    let writing = true
    let writes = 0
    try {
      await db.open()
      // Writes all along: the head moves past the copy's read point and the log is truncated
      // behind whatever the replica is known to need.
      const writer = (async () => { while (writing) { await db.put(`hot${writes++ % 10}`, String(writes)); if (writes % 20 === 0) await sleep(1) } })()
      const dbg = process.env.DBG ? setInterval(() => { const r = db.mirrorStatus().replicas[0]; console.log(proxy.cuts, r.state, r.watermark, r.consistent, r.errorCode, (link.traffic().sent / 2 ** 20).toFixed(1), db.head?.seq) }, 1000) : null
      await until(() => proxy.cuts >= 3, 60_000)
      await until(() => db.mirrorStatus().replicas[0].consistent, 60_000)
      writing = false
      if (dbg !== null) clearInterval(dbg)
      await writer
      await db.replicated({ timeout: 60_000 })
      expect(writes).toBeGreaterThan(2000)
      expect(await serialize(replicaDb as never)).toBe(await serialize(inner as never))
      // Starting over after the second cut would send 34 + 3 + 40 MiB at least.
      expect(link.traffic().sent).toBeLessThan(60 * 1024 * 1024)
    } finally {
      writing = false
      await db.close()
      await proxy.close()
      await server.close()
      tmp.cleanup()
    }
  }, 120_000)
})

describe('a journaled first copy cut short', () => {
  it('in the middle of a value\'s pieces starts over instead of resuming after that key (which the replica refused for good)', async () => {
    const inner = new MemoryLevel<string, Buffer>({ valueEncoding: 'buffer' })
    for (let i = 0; i < 5; i++) await inner.put(`a${i}`, Buffer.alloc(100, i))
    await inner.put('big', Buffer.alloc(1_000_000, 7))
    for (let i = 0; i < 5; i++) await inner.put(`z${i}`, Buffer.alloc(100, i))
    // Parts of 64 KiB (the value goes in pieces), journaled past 100 kB; the link fails right after
    // the first part that ends with a piece of 'big'.
    const link = new FailingLink(new MemoryLevel() as never, { maxBatchBytes: 65_536, maxApplyBytes: 100_000 } as never)
    let cut = false
    const apply = link.apply.bind(link)
    link.apply = async (part: BatchPart, received?: () => void): Promise<PartAck> => {
      const ack = await apply(part, received)
      const last = part.ops[part.ops.length - 1] as { more?: boolean } | undefined
      if (!cut && part.full && part.index >= 2 && last?.more === true) {
        cut = true
        throw new Error('injected: link failed after a piece')
      }
      return ack
    }
    const db = new MirrorLevel(inner as never, { replicas: [link] })
    await db.open()
    await db.replicated({ timeout: 10_000 })
    expect(cut).toBe(true)
    // The replica said it held part of a copy, but not one to resume: the copy started over.
    expect(link.hellos.some((h) => h.pending !== null)).toBe(false)
    expect(db.mirrorStatus().replicas[0]).toMatchObject({ state: 'idle', consistent: true })
    expect(await serialize(link.db)).toBe(await serialize(inner as never))
    await db.close()
  })
})
