import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { MemoryLevel } from 'memory-level'
import { ClassicLevel } from 'classic-level'
import { MirrorLevel } from '../lib/primary/mirror-level'
import { BlockDevice } from '../lib/device/block-device'
import { LevelReplica } from '../adapters/level'
import { ReplicaEngine } from '../lib/replica/engine'
import { inspectLog, tempDir, userData } from './helpers'
import { PrimaryStates, TestAdapter, serialize, sleep, until } from './replication-helpers'

function checkObserved (adapter: TestAdapter, states: PrimaryStates): void {
  let last = -1
  for (const [watermark, data] of adapter.observed) {
    expect(watermark).toBeGreaterThanOrEqual(last)
    expect(data, `replica state at watermark ${watermark}`).toBe(states.states.get(watermark))
    last = watermark
  }
}

describe('replication', () => {
  it("HAST's five writes behind a stalled replica: it jumps from prefix state to prefix state, combining consecutive writes", async () => {
    const inner = new MemoryLevel()
    const states = new PrimaryStates(inner as never)
    const adapter = new TestAdapter(new MemoryLevel() as never, { maxDelay: 0 })
    const db = new MirrorLevel(inner, { replicas: [adapter] })
    const dev = new BlockDevice(db, { size: 8192, chunkSize: 512 })
    await dev.open()
    await db.replicated()
    const base = db.head!.seq
    adapter.observed = []
    adapter.stall()
    const writes: Array<[number, number]> = [[0, 1024], [512, 1024], [0, 1024], [4096, 1024], [0, 1536]]
    for (let i = 0; i < writes.length; i++) {
      await dev.write(writes[i][0], Buffer.alloc(writes[i][1], i + 1))
      // The replica stalls on the first write's batch before the others come (as in the thread):
      // waited for, not left to how soon the replicator happens to read its snapshot.
      if (i === 0) await until(() => adapter.parts.length > 0)
    }
    await sleep(20)
    adapter.release()
    await db.replicated()
    checkObserved(adapter, states)
    // The first write went out alone (the replica stalled on it); writes 2 to 5 were combined.
    expect(adapter.observed.map(([w]) => w - base)).toEqual([1, 5])
    const combined = adapter.parts.at(-1)!
    expect([combined.from - base, combined.to - base]).toEqual([1, 5])
    // chunks 0, 1, 2 (writes 2, 3, 5) and 8, 9 (write 4): each once, not once per write
    expect(combined.ops.map((op) => op.key[8]).sort((a, b) => a - b)).toEqual([0, 1, 2, 8, 9])
    expect(await serialize(adapter.db)).toBe(await serialize(inner as never))
    await db.close()
  })

  it('copies a store that held data before it was wrapped, then streams; the replica reads with plain classic-level', async () => {
    const { dir, cleanup } = tempDir()
    try {
      const plain = new ClassicLevel(`${dir}/app`)
      await plain.batch(Array.from({ length: 3000 }, (_, i) => ({ type: 'put' as const, key: `old${i}`, value: `v${i}` })))
      await plain.close()
      const replicaDir = `${dir}/replica`
      const db = new MirrorLevel(new ClassicLevel(`${dir}/app`), { replicas: [new LevelReplica(new ClassicLevel(replicaDir), { maxBatchOps: 500 })] })
      const batches: Array<{ full: boolean, parts: number }> = []
      db.on('replica-batch', (e) => batches.push(e))
      await db.open()
      expect(db.origin!.preexisting).toBe(true)
      await db.replicated()
      await db.put('new', 'x')
      await db.replicated()
      expect(batches[0]).toMatchObject({ full: true, parts: 6 })
      expect(batches.at(-1)).toMatchObject({ full: false, parts: 1 })
      const status = db.mirrorStatus().replicas[0]
      expect(status).toMatchObject({ consistent: true, watermark: db.head!.seq, lag: { seqs: 0, bytes: 0, ms: 0 } })
      await db.close()
      const a = new ClassicLevel(`${dir}/app`, { keyEncoding: 'buffer', valueEncoding: 'buffer' })
      const b = new ClassicLevel(replicaDir, { keyEncoding: 'buffer', valueEncoding: 'buffer' })
      expect(await userData(b as never)).toEqual(await userData(a as never))
      expect((await userData(b as never)).size).toBe(3001)
      await a.close()
      await b.close()
    } finally {
      cleanup()
    }
  })

  it('with overwrite, a full copy deletes what the replica held that the primary does not', async () => {
    const rdb = new MemoryLevel()
    await rdb.batch([{ type: 'put', key: 'stale', value: 'x' }, { type: 'put', key: 'zzz', value: 'y' }])
    const db = new MirrorLevel(new MemoryLevel(), { replicas: [new LevelReplica(rdb, { overwrite: true })] })
    await db.put('a', '1')
    await db.replicated()
    expect(await rdb.iterator({ lt: '\xff' }).all()).toEqual([['a', '1']])
    await db.close()
  })

  it('resumes an interrupted full copy instead of starting over', async () => {
    const inner = new MemoryLevel()
    const app = new MirrorLevel(inner)
    await app.batch(Array.from({ length: 1000 }, (_, i) => ({ type: 'put' as const, key: `k${String(i).padStart(4, '0')}`, value: 'v' })))
    const head = app.head!.seq
    await app.close()
    const rdb = new MemoryLevel()
    // maxApplyBytes: 1 journals every part (a copy too large to hold in memory), which is what resumes
    const adapter = new TestAdapter(rdb as never, { maxBatchOps: 100, maxApplyBytes: 1 } as never)
    adapter.faults = ['ok', 'ok', 'ok', 'failBefore'] // three parts staged, then the link drops
    await inner.open()
    // The data is the primary's state at its head: a resumed copy may finish there, before the put below.
    const states = new PrimaryStates(inner as never, await userData(inner as never), head)
    const db = new MirrorLevel(inner, { replicas: [adapter] })
    await db.open()
    await until(() => adapter.parts.length >= 4)
    await db.put('k0000', 'changed meanwhile') // a key in an already-staged part
    await db.replicated()
    const indices = adapter.parts.map((p) => p.index)
    expect(indices.slice(0, 4)).toEqual([0, 1, 2, 3])
    expect(indices[4]).toBe(3) // resumed at part 3, not 0
    expect(adapter.parts.at(-1)!.ops.map((op) => String(op.key))).toContain('k0000')
    expect(await serialize(rdb as never)).toBe(await serialize(inner as never))
    checkObserved(adapter, states)
    await db.close()
  })

  it('holds no tail of recent writes while every replica is away, and the one that comes back still gets every write', async () => {
    const inner = new MemoryLevel()
    const states = new PrimaryStates(inner as never)
    const adapter = new TestAdapter(new MemoryLevel() as never, { maxDelay: 0 })
    let online = true
    const hello = adapter.hello.bind(adapter)
    const apply = adapter.apply.bind(adapter)
    adapter.hello = async () => { if (!online) throw new Error('injected: offline'); return await hello() }
    adapter.apply = async (part, received) => { if (!online) throw new Error('injected: offline'); return await apply(part, received) }
    const db = new MirrorLevel(inner, { replicas: [adapter] })
    await db.put('a', '1')
    await db.replicated()
    // Kept up: what it was shipped is trimmed, and the tail holds what it has not been shipped yet.
    adapter.stall()
    for (let i = 0; i < 50; i++) await db.put(`k${i}`, 'x'.repeat(100))
    expect(db.mirrorStatus().tail.seqs).toBeGreaterThan(0)
    online = false
    adapter.release()
    await until(() => db.mirrorStatus().replicas[0].state === 'down')
    for (let i = 0; i < 200; i++) await db.put(`k${i % 70}`, `y${i}`)
    expect(db.mirrorStatus().tail).toEqual({ seqs: 0, bytes: 0 })
    online = true
    await db.replicated()
    expect(await serialize(adapter.db)).toBe(await serialize(inner as never))
    checkObserved(adapter, states)
    // Back up: the tail serves it again.
    adapter.stall()
    await db.put('after', 'back')
    expect(db.mirrorStatus().tail.seqs).toBeGreaterThan(0)
    adapter.release()
    await db.replicated()
    expect(await serialize(adapter.db)).toBe(await serialize(inner as never))
    await db.close()
  })

  it('deletes log records every replica has applied', async () => {
    const inner = new MemoryLevel()
    const db = new MirrorLevel(inner, { replicas: [new LevelReplica(new MemoryLevel(), { maxDelay: 0 })] })
    for (let i = 0; i < 50; i++) await db.put(`k${i}`, 'v')
    await db.replicated()
    await db.put('last', 'v')
    await db.replicated()
    await until(async () => (await inspectLog(inner as never)).records.length <= 1)
    const { head, bytes } = await inspectLog(inner as never)
    expect(bytes).toBe(head.logBytes)
    await db.close()
  })

  it('refuses a replica from another line of history and says why', async () => {
    const rdb = new MemoryLevel()
    const other = new MirrorLevel(new MemoryLevel(), { replicas: [new LevelReplica(rdb)] })
    await other.put('theirs', '1')
    await other.replicated()
    const before = await serialize(rdb as never)
    await other.close()
    const db = new MirrorLevel(new MemoryLevel(), { replicas: [new LevelReplica(rdb, { retryMinDelay: 5, retryMaxDelay: 10 })] })
    const down: Array<{ state: string }> = []
    db.on('replica-down', (e) => down.push(e))
    await db.put('mine', '1')
    await until(() => db.mirrorStatus().replicas[0].state === 'refused')
    const status = db.mirrorStatus().replicas[0]
    expect(status.errorCode).toBe('MIRROR_DIVERGED')
    expect(status.error).toMatch(/split-brain/)
    expect(down[0].state).toBe('refused')
    await expect(db.replicated({ timeout: 50 })).rejects.toMatchObject({ code: 'MIRROR_REPLICA_TIMEOUT' })
    await db.close()
    await rdb.open()
    expect(await serialize(rdb as never)).toBe(before)
  })

  it('reports lag in seqs, bytes and ms while a replica is stalled', async () => {
    const adapter = new TestAdapter(new MemoryLevel() as never, { maxDelay: 0 })
    const db = new MirrorLevel(new MemoryLevel(), { replicas: [adapter] })
    await db.put('a', '1')
    await db.replicated()
    adapter.stall()
    await db.put('b', 'x'.repeat(100))
    await sleep(30)
    await db.put('c', 'y'.repeat(100))
    const r = db.mirrorStatus().replicas[0]
    expect(r.lag.seqs).toBe(2)
    expect(r.lag.bytes).toBeGreaterThanOrEqual(202)
    expect(r.lag.ms).toBeGreaterThanOrEqual(25)
    adapter.release()
    await db.replicated()
    expect(db.mirrorStatus().replicas[0].lag).toEqual({ seqs: 0, bytes: 0, ms: 0 })
    await db.close()
  })
})

describe('status after a reopen and a reconnect', () => {
  it('a replica in the middle of its first copy shows a lag of at least the time since the open', async () => {
    const inner = new MemoryLevel()
    await inner.batch(Array.from({ length: 200 }, (_, i) => ({ type: 'put' as const, key: `k${String(i).padStart(3, '0')}`, value: 'v' })))
    const level = new LevelReplica(new MemoryLevel() as never)
    // Unreachable until `up`; then 20 parts of 10 ops, 30 ms each: the copy takes about 0.6 s.
    let up = false
    const adapter = {
      name: 'slow',
      options: { maxBatchOps: 10, maxDelay: 0, retryMinDelay: 5, retryMaxDelay: 10 },
      hello: async () => { if (!up) throw Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }); return await level.hello() },
      apply: async (part: never, received?: () => void) => { await sleep(30); return await level.apply(part, received) },
      close: async () => await level.close()
    }
    const db = new MirrorLevel(inner, { replicas: [adapter as never] })
    await db.open()
    const opened = Date.now()
    // Commits before the copy is planned and while it runs: its lag counts from the open, not
    // from the copy's read point (which the log is held from).
    await sleep(100)
    for (let i = 0; i < 20; i++) await db.put(`before${i}`, 'v')
    up = true
    await until(() => db.mirrorStatus().replicas[0].state === 'syncing')
    for (let i = 0; i < 20; i++) await db.put(`during${i}`, 'v')
    await sleep(50)
    const now = Date.now()
    const copying = db.mirrorStatus().replicas[0]
    expect(copying.consistent).toBe(false)
    expect(copying.lag.ms).toBeGreaterThanOrEqual(now - opened)
    await db.replicated()
    expect(db.mirrorStatus().replicas[0].lag).toEqual({ seqs: 0, bytes: 0, ms: 0 })
    await db.close()
  })

  it('shows the batch in flight: a first copy\'s parts, ops and bytes grow until it lands, then none', async () => {
    const inner = new MemoryLevel()
    await inner.batch(Array.from({ length: 300 }, (_, i) => ({ type: 'put' as const, key: `k${String(i).padStart(3, '0')}`, value: 'value' })))
    const level = new LevelReplica(new MemoryLevel() as never)
    // 30 parts of 10 ops, 15 ms each.
    const adapter = {
      name: 'slow',
      options: { maxBatchOps: 10, maxDelay: 0 },
      hello: async () => await level.hello(),
      apply: async (part: never, received?: () => void) => { await sleep(15); return await level.apply(part, received) },
      close: async () => await level.close()
    }
    const db = new MirrorLevel(inner, { replicas: [adapter as never] })
    await db.open()
    const seen: Array<NonNullable<ReturnType<typeof db.mirrorStatus>['replicas'][0]['batch']>> = []
    while (db.mirrorStatus().replicas[0].state !== 'idle') {
      const batch = db.mirrorStatus().replicas[0].batch
      if (batch !== null) seen.push(batch)
      await sleep(5)
    }
    expect(seen.length).toBeGreaterThan(5)
    for (const b of seen) expect(b).toMatchObject({ from: 0, to: db.head!.seq, full: true, staged: 0 })
    const last = seen[seen.length - 1]
    expect(last.parts).toBeGreaterThanOrEqual(20)
    expect(last.ops).toBeGreaterThanOrEqual(200)
    expect(last.bytes).toBeGreaterThanOrEqual(200 * 9)
    expect(last.ms).toBeGreaterThan(200)
    for (let i = 1; i < seen.length; i++) {
      expect(seen[i].parts).toBeGreaterThanOrEqual(seen[i - 1].parts)
      expect(seen[i].bytes).toBeGreaterThanOrEqual(seen[i - 1].bytes)
    }
    expect(db.mirrorStatus().replicas[0].batch).toBeNull()
    await db.close()
  })

  it('a replica behind the open shows a lag of at least the time since the open, and its error clears once it is reached', async () => {
    const inner = new MemoryLevel()
    const replicaDb = new MemoryLevel()
    // Down until `up` is set, like a server that is not running.
    let up = false
    const level = new LevelReplica(replicaDb as never, { maxDelay: 0 })
    const adapter = {
      name: 'switch',
      options: { retryMinDelay: 5, retryMaxDelay: 10, maxDelay: 0 },
      hello: async () => { if (!up) throw Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }); return await level.hello() },
      apply: async (part: never, received?: () => void) => await level.apply(part, received),
      close: async () => await level.close()
    }
    let db = new MirrorLevel(inner, { replicas: [adapter as never] })
    up = true
    await db.put('first', '1')
    await db.replicated()
    up = false
    await db.close()
    db = new MirrorLevel(inner, { replicas: [adapter as never] })
    await db.open()
    for (let i = 0; i < 100; i++) await db.put(`k${i}`, 'v')
    await db.close()
    db = new MirrorLevel(inner, { replicas: [adapter as never] })
    await db.open()
    await sleep(30)
    const behind = db.mirrorStatus().replicas[0]
    expect(behind.lag.seqs).toBeGreaterThanOrEqual(100)
    expect(behind.lag.ms).toBeGreaterThanOrEqual(25) // 0 before: the writes were made before this open
    expect(behind.errorCode).not.toBeNull()
    // Reached again: the old error goes at once, not only when it is idle.
    const states: Array<[string, string | null]> = []
    db.on('replica-batch', () => { const s = db.mirrorStatus().replicas[0]; states.push([s.state, s.errorCode]) })
    up = true
    await db.replicated()
    expect(states.length).toBeGreaterThan(0)
    for (const [, code] of states) expect(code).toBeNull()
    await db.close()
  })
})

describe('modes', () => {
  async function setup (mode: 'async' | 'memsync' | 'fullsync', extra: Record<string, unknown> = {}) {
    const rdb = new MemoryLevel()
    const adapter = new TestAdapter(rdb as never, { maxDelay: 1000 })
    const db = new MirrorLevel(new MemoryLevel(), { replicas: [adapter], mode, ...extra })
    await db.open()
    await until(() => db.mirrorStatus().replicas[0].consistent)
    return { db, adapter, rdb }
  }

  it('async never waits for a replica', async () => {
    const { db, adapter } = await setup('async')
    adapter.stall()
    await db.put('k', 'v') // resolves although the replica is stalled and the window is 1 s
    expect(adapter.applies).toBe(1)
    adapter.release()
    await db.close()
  })

  it('fullsync resolves only once the replica holds the write, without waiting out the window', async () => {
    const { db, rdb } = await setup('fullsync')
    const t0 = Date.now()
    await db.put('k', 'v')
    expect(await rdb.get('k')).toBe('v')
    expect(Date.now() - t0).toBeLessThan(900)
    // One round trip acknowledges every write waiting on it.
    await Promise.all(Array.from({ length: 20 }, (_, i) => db.put(`g${i}`, 'v')))
    expect((await rdb.keys({ gte: 'g', lt: 'h' }).all())).toHaveLength(20)
    await db.close()
  })

  it('fullsync right after open waits for a replica that is still connecting and on its first copy', async () => {
    const rdb = new MemoryLevel()
    const db = new MirrorLevel(new MemoryLevel(), { mode: 'fullsync', replicas: [new LevelReplica(rdb, { maxDelay: 1000 })] })
    await db.put('first', '1') // opens the db; the replica has not said hello yet
    expect(await rdb.get('first')).toBe('1')
    await db.close()
  })

  it('memsync resolves once the replica has received the write, before it is applied', async () => {
    const { db, adapter, rdb } = await setup('memsync')
    // A replica that acknowledges receipt at once and applies 300 ms later.
    const inner = adapter.inner
    let receivedAt = 0
    const apply = inner.apply.bind(inner)
    inner.apply = async (part, received) => {
      receivedAt = Date.now()
      received?.()
      await sleep(300)
      return await apply(part)
    }
    await db.put('k', 'v')
    const resolvedAt = Date.now()
    expect(receivedAt).toBeGreaterThan(0)
    expect(await rdb.get('k')).toBeUndefined() // not applied yet
    await db.replicated()
    expect(await rdb.get('k')).toBe('v')
    expect(resolvedAt).toBeGreaterThanOrEqual(receivedAt)
    await db.close()
  })

  it("'degrade' goes on without a replica that is down and says so", async () => {
    const { db, adapter } = await setup('fullsync')
    const errors: Array<{ attempt: number }> = []
    db.on('replica-error', (e) => errors.push(e))
    adapter.faults = Array(1000).fill('failBefore')
    await db.put('a', '1') // the replica fails: the write resolves once it is known to be down
    await until(() => db.mirrorStatus().replicas[0].state === 'down')
    await db.put('b', '2')
    expect(db.mirrorStatus().replicas[0].error).toMatch(/injected/)
    await until(() => errors.length >= 3) // retried with growing backoff, each attempt reported
    expect(errors.slice(0, 3).map((e) => e.attempt)).toEqual([0, 1, 2])
    adapter.faults = []
    await db.replicated()
    await db.close()
  })

  it("'block' waits for a replica that is down and rejects after replicaTimeout; the local write stays", async () => {
    const { db, adapter } = await setup('fullsync', { onReplicaDown: 'block', replicaTimeout: 200 })
    adapter.faults = Array(1000).fill('failBefore')
    await expect(db.put('a', '1')).rejects.toMatchObject({ code: 'MIRROR_REPLICA_TIMEOUT' })
    expect(await db.get('a')).toBe('1')
    adapter.faults = []
    await db.put('b', '2') // back up: blocks only until applied
    await db.close()
  })

  it('rejects bad replication options with coded errors', () => {
    const inner = new MemoryLevel()
    expect(() => new MirrorLevel(inner, { mode: 'sync' as never })).toThrow(expect.objectContaining({ code: 'MIRROR_INVALID_OPTION' }))
    expect(() => new MirrorLevel(inner, { onReplicaDown: 'panic' as never })).toThrow(expect.objectContaining({ code: 'MIRROR_INVALID_OPTION' }))
    expect(() => new MirrorLevel(inner, { replicas: [{}] as never })).toThrow(expect.objectContaining({ code: 'MIRROR_INVALID_OPTION' }))
    expect(() => new MirrorLevel(inner, { replicas: [new LevelReplica(new MemoryLevel(), { maxDelay: -1 })] })).toThrow(expect.objectContaining({ code: 'MIRROR_INVALID_OPTION' }))
    expect(() => new MirrorLevel(inner, { replicas: [new LevelReplica(new MemoryLevel(), { name: 'x' }), new LevelReplica(new MemoryLevel(), { name: 'x' })] })).toThrow(expect.objectContaining({ code: 'MIRROR_INVALID_OPTION' }))
    expect(() => new LevelReplica('dir' as never)).toThrow(expect.objectContaining({ code: 'MIRROR_INVALID_OPTION' }))
  })
})

describe('replica engine', () => {
  const gen = 'g1'
  const put = (k: string, v: string) => ({ type: 'put' as const, key: Buffer.from(k), value: Buffer.from(v) })

  it('applies a batch once: a covered batch is a no-op, a gap is refused', async () => {
    const db = new MemoryLevel()
    const engine = new ReplicaEngine(db as never)
    await engine.open()
    await expect(engine.apply({ generation: gen, from: 0, to: 1, index: 0, final: true, full: false, ops: [put('a', '1')] }))
      .rejects.toMatchObject({ code: 'MIRROR_GAP' }) // never synced: needs a full copy first
    await engine.apply({ generation: gen, from: 0, to: 1, index: 0, final: true, full: true, range: { after: null, upto: null }, ops: [put('a', '1')] })
    await engine.apply({ generation: gen, from: 1, to: 2, index: 0, final: true, full: false, ops: [put('b', '2')] })
    const before = await serialize(db as never)
    expect(await engine.apply({ generation: gen, from: 1, to: 2, index: 0, final: true, full: false, ops: [put('b', 'again')] })).toEqual({ watermark: 2 })
    await expect(engine.apply({ generation: gen, from: 3, to: 4, index: 0, final: true, full: false, ops: [put('c', '3')] }))
      .rejects.toMatchObject({ code: 'MIRROR_GAP' })
    expect(await serialize(db as never)).toBe(before)
    expect(engine.hello()).toEqual({ generation: gen, watermark: 2, pending: null, foreign: null, checksum: null, demoted: null })
    await engine.close()
  })

  it('refuses malformed parts and writes into the reserved range, changing nothing', async () => {
    const db = new MemoryLevel()
    const engine = new ReplicaEngine(db as never)
    await engine.open()
    await engine.apply({ generation: gen, from: 0, to: 1, index: 0, final: true, full: true, range: { after: null, upto: null }, ops: [] })
    const before = await serialize(db as never)
    const bad: unknown[] = [
      null, {}, { generation: gen, from: 1, to: 1, index: 0, final: true, full: false, ops: [] },
      { generation: gen, from: 1, to: 2, index: 0, final: true, full: false, ops: [{ type: 'put', key: 'str', value: Buffer.from('x') }] },
      { generation: gen, from: 1, to: 2, index: 0, final: true, full: false, ops: [{ type: 'zap', key: Buffer.from('k') }] },
      { generation: gen, from: 1, to: 2, index: 2, final: true, full: false, ops: [] },
      { generation: gen, from: 0, to: 2, index: 0, final: true, full: true, range: { after: Buffer.from('b'), upto: null }, ops: [] },
      // a full copy that claims to be complete but covers only part of the keyspace
      { generation: gen, from: 0, to: 2, index: 0, final: true, full: true, range: { after: null, upto: Buffer.from('m') }, ops: [] }
    ]
    for (const part of bad) await expect(engine.apply(part as never)).rejects.toMatchObject({ code: 'MIRROR_BAD_PART' })
    const reserved = Buffer.concat([Buffer.from([0xff]), Buffer.from('mirror-level/meta/replica')])
    await expect(engine.apply({ generation: gen, from: 1, to: 2, index: 0, final: true, full: false, ops: [{ type: 'put', key: reserved, value: Buffer.from('x') }] }))
      .rejects.toMatchObject({ code: 'MIRROR_RESERVED_KEY' })
    expect(await serialize(db as never)).toBe(before)
    expect(engine.hello().watermark).toBe(1)
    await engine.close()
  })

  // A memory-level whose batches start failing after `left` more of them: a crash mid-apply.
  class DyingLevel extends MemoryLevel<Buffer, Buffer> {
    left = Infinity
    async _batch (ops: unknown, options: unknown): Promise<void> {
      if (this.left-- <= 0) throw new Error('power cut')
      // @ts-expect-error not in the public types
      return super._batch(ops, options)
    }
  }

  it('recovers a committed journal after a crash in the middle of applying it', async () => {
    let recovered = 0
    for (let crashAfter = 0; crashAfter < 8; crashAfter++) {
      const db = new DyingLevel()
      // 1500-op parts are held in memory up to maxApplyBytes; below that they are journaled
      const engine = new ReplicaEngine(db as never, { maxApplyBytes: 1000 })
      await engine.open()
      await engine.apply({ generation: gen, from: 0, to: 1, index: 0, final: true, full: true, range: { after: null, upto: null }, ops: [put('a', 'old'), put('z', 'old')] })
      const oldState = await serialize(db as never)
      const parts = [0, 1, 2].map((i) => ({ generation: gen, from: 1, to: 5, index: i, final: i === 2, full: false, ops: Array.from({ length: 1500 }, (_, j) => put(`k${i}-${j}`, 'new')).concat(i === 1 ? [put('a', 'new')] : []) }))
      await engine.apply(parts[0])
      await engine.apply(parts[1])
      db.left = crashAfter
      let crashed = false
      try {
        await engine.apply(parts[2])
      } catch {
        crashed = true
      }
      db.left = Infinity
      // Reopen: recovery either finishes the batch (commit record written) or drops it (not written).
      await db.close()
      const again = new ReplicaEngine(db as never)
      await again.open()
      const state = await serialize(db as never)
      if (!crashed || again.hello().watermark === 5) {
        if (crashed) recovered++
        expect(again.hello().watermark).toBe(5)
        expect((await userData(db as never)).size).toBe(4502)
        expect(String(await db.get(Buffer.from('a')))).toBe('new')
      } else {
        expect(crashAfter).toBe(0) // only a crash before the commit record loses the batch
        expect(state).toBe(oldState)
        expect(again.hello().watermark).toBe(1)
      }
      await again.close()
    }
    expect(recovered).toBeGreaterThan(3)
  })

  it('keeps an uncommitted full copy for resuming, and drops an uncommitted incremental batch', async () => {
    const db = new MemoryLevel()
    const engine = new ReplicaEngine(db as never, { maxApplyBytes: 1 })
    await engine.open()
    await engine.apply({ generation: gen, from: 0, to: 3, index: 0, final: false, full: true, range: { after: null, upto: Buffer.from('m') }, ops: [put('a', '1')] })
    await engine.close()
    const again = new ReplicaEngine(db as never, { maxApplyBytes: 1 })
    await again.open()
    expect(again.hello()).toEqual({ generation: null, watermark: 0, pending: { to: 3, generation: gen, parts: 1, upto: Buffer.from('m') }, foreign: null, checksum: null, demoted: null })
    // A first copy into a replica that held nothing is written in place: the db holds its parts so far.
    expect(await serialize(db as never)).toBe('[["61","31"]]')
    await again.apply({ generation: gen, from: 0, to: 4, index: 1, final: true, full: true, range: { after: Buffer.from('m'), upto: null }, ops: [put('x', '2')] })
    expect(again.hello()).toMatchObject({ generation: gen, watermark: 4, pending: null })
    await again.apply({ generation: gen, from: 4, to: 6, index: 0, final: false, full: false, ops: [put('q', '1')] })
    await again.close()
    const third = new ReplicaEngine(db as never, { maxApplyBytes: 1 })
    await third.open()
    expect(third.hello()).toEqual({ generation: gen, watermark: 4, pending: null, foreign: null, checksum: null, demoted: null })
    expect(await db.get('q')).toBeUndefined()
    // A replica that holds a state gets a full copy staged: its data stays as it was until the copy is whole.
    await third.apply({ generation: 'g2', from: 0, to: 9, index: 0, final: false, full: true, range: { after: null, upto: Buffer.from('m') }, ops: [put('b', '3')] })
    await third.close()
    const fourth = new ReplicaEngine(db as never)
    await fourth.open()
    expect(fourth.hello()).toEqual({ generation: gen, watermark: 4, pending: { to: 9, generation: 'g2', parts: 1, upto: Buffer.from('m') }, foreign: null, checksum: null, demoted: null })
    expect(await serialize(db as never)).toBe('[["61","31"],["78","32"]]') // staged, not applied
    await fourth.close()
  })
})

describe('catch-up steps', () => {
  it('cuts a backlog only where no key changed before the cut changes after it', async () => {
    const { planSteps } = await import('../lib/replication/batch-builder')
    const inner = new MemoryLevel()
    const db = new MirrorLevel(inner)
    for (const k of ['a', 'b', 'a', 'c', 'd']) await db.put(k, 'v') // seqs 1..5
    const snapshot = (inner as never as { snapshot: () => never }).snapshot()
    const source = { db: inner as never, snapshot }
    expect(await planSteps(source, 0, 5, 1)).toEqual([3, 4, 5]) // 'a' changes at 1 and 3: no cut at 1 or 2
    expect(await planSteps(source, 0, 5, 2)).toEqual([3, 5])
    expect(await planSteps(source, 0, 5, 100)).toEqual([5])
    expect(await planSteps(source, 3, 5, 1)).toEqual([4, 5])
    await (snapshot as { close: () => Promise<void> }).close()
    await db.close()
  })

  it('plans a catch-up only where the log covers it: null before an "any key" record or a gap, else the steps', async () => {
    const { logCovers, planCatchUp, planSteps } = await import('../lib/replication/batch-builder')
    const inner = new MemoryLevel()
    // A small budget: compaction merges old records, and past a quarter of it, into "any key".
    const db = new MirrorLevel(inner, { logBudget: 1024 })
    for (let i = 0; i < 300; i++) await db.put(`key-${String(i % 60).padStart(20, '0')}`, 'v')
    await db.close()
    await inner.open()
    // Two records gone, as truncation deletes them: a replica from before them is not covered.
    const { logKey } = await import('../lib/keyspace')
    for (const r of (await inspectLog(inner as never)).records.slice(1, 3)) await inner.del(logKey(r.to) as never, { keyEncoding: 'buffer' })
    const { records } = await inspectLog(inner as never)
    expect(records[0].keys).toBeNull()
    expect(records[1].from).toBeGreaterThan(records[0].to)
    const snapshot = (inner as never as { snapshot: () => never }).snapshot()
    const source = { db: inner as never, snapshot }
    const to = records[records.length - 1].to
    const outcomes = new Set<boolean>()
    for (let from = 0; from < to; from++) {
      const expected = await logCovers(source, from, to) ? await planSteps(source, from, to, 5) : null
      outcomes.add(expected === null)
      const planned = await planCatchUp(source, from, to, 5)
      expect(planned?.steps ?? null).toEqual(expected)
      // A one-step catch-up comes with its keys, so that shipping it need not read the records
      // again: exactly the keys its records name.
      if (planned?.keys !== undefined) {
        expect(planned.steps).toHaveLength(1)
        const named = new Set(records.filter((r) => r.to > from).flatMap((r) => r.keys!.map((k) => Buffer.from(k).toString('hex'))))
        expect(new Set(planned.keys.map((k) => k.toString('hex')))).toEqual(named)
      }
    }
    expect([...outcomes].sort()).toEqual([false, true])
    await (snapshot as { close: () => Promise<void> }).close()
    await inner.close()
  })

  it('with a key set smaller than the backlog, still cuts it into valid steps, in rounds', async () => {
    const { planSteps } = await import('../lib/replication/batch-builder')
    {
      // Eight distinct keys, three at a time: the plan goes on past the first window of keys
      // (it used to fall back to one step for the whole backlog, journaled on the replica).
      const inner = new MemoryLevel()
      const db = new MirrorLevel(inner)
      for (const k of ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h']) await db.put(k, 'v')
      const snapshot = (inner as never as { snapshot: () => never }).snapshot()
      expect(await planSteps({ db: inner as never, snapshot }, 0, 8, 2, { maxKeys: 3, maxBytes: 1 << 20 })).toEqual([2, 3, 5, 6, 8])
      await (snapshot as { close: () => Promise<void> }).close()
      await db.close()
    }
    {
      // The only cut of the first window comes before a step's worth of keys: it is taken, not
      // the whole backlog as one step (found in review).
      const inner = new MemoryLevel()
      const db = new MirrorLevel(inner)
      for (const k of ['a', 'b', 'c', 'd', 'b', ...Array.from({ length: 200 }, (_, i) => `k${i}`)]) await db.put(k, 'v')
      const snapshot = (inner as never as { snapshot: () => never }).snapshot()
      const steps = await planSteps({ db: inner as never, snapshot }, 0, 205, 2, { maxKeys: 3, maxBytes: 1 << 20 })
      expect(steps[0]).toBe(1)
      expect(steps.length).toBeGreaterThan(50)
      await (snapshot as { close: () => Promise<void> }).close()
      await db.close()
    }
    await fc.assert(fc.asyncProperty(
      fc.array(fc.array(fc.constantFrom('a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'), { minLength: 1, maxLength: 3 }), { minLength: 1, maxLength: 40 }),
      fc.integer({ min: 1, max: 8 }),
      fc.integer({ min: 1, max: 10 }),
      fc.constantFrom(1 << 20, 200),
      fc.constantFrom(undefined, 1024),
      async (records, stepKeys, maxKeys, maxBytes, logBudget) => {
        const inner = new MemoryLevel()
        // A small log budget merges records (cuts fall only between them); a small byte bound binds before the key count.
        const db = new MirrorLevel(inner, logBudget === undefined ? {} : { logBudget })
        for (const keys of records) await db.batch(keys.map((key) => ({ type: 'put' as const, key, value: 'v' }))) // seqs 1..n
        const to = records.length
        const snapshot = (inner as never as { snapshot: () => never }).snapshot()
        const source = { db: inner as never, snapshot }
        try {
          const { records: log } = await inspectLog(inner as never)
          // planCatchUp is logCovers and planSteps in one: null exactly where logCovers says no,
          // from any seq (inside a merged record, before an "any key" one), else the same steps.
          const { logCovers, planCatchUp } = await import('../lib/replication/batch-builder')
          for (let from = 0; from < to; from += Math.max(1, Math.floor(to / 8))) {
            const expected = await logCovers(source, from, to) ? await planSteps(source, from, to, stepKeys, { maxKeys, maxBytes }) : null
            expect((await planCatchUp(source, from, to, stepKeys, { maxKeys, maxBytes }))?.steps ?? null).toEqual(expected)
          }
          // A record that says "any key" is refused before planning (logCovers): nothing to plan.
          if (log.some((r) => r.keys === null)) return
          for (const from of new Set([0, Math.floor(to / 2), ...log.map((r) => r.to).filter((t) => t < to)].slice(0, 4))) {
            if (from >= to) continue
            const steps = await planSteps(source, from, to, stepKeys, { maxKeys, maxBytes })
            const unbounded = await planSteps(source, from, to, stepKeys)
            // The second pass from memory plans what reading the records again plans.
            for (const maxRecords of [0, 3]) expect(await planSteps(source, from, to, stepKeys, { maxKeys, maxBytes, maxRecords })).toEqual(steps)
            for (const plan of [steps, unbounded]) {
              expect(plan[plan.length - 1]).toBe(to)
              for (let i = 0; i < plan.length; i++) {
                const m = plan[i]
                expect(m).toBeGreaterThan(i === 0 ? from : plan[i - 1])
                // A valid cut: no key changed in (from, m] changes again in (m, to].
                const after = new Set(records.slice(m, to).flat())
                for (const key of records.slice(from, m).flat()) expect(after.has(key), `cut at ${m} of ${JSON.stringify(records)}`).toBe(false)
              }
            }
            // Bounds that hold the backlog's distinct keys plan exactly what ample bounds plan.
            const distinct = new Set(records.slice(from).flat()).size
            if (distinct <= maxKeys && distinct * 65 <= maxBytes) expect(steps).toEqual(unbounded)
          }
        } finally {
          await (snapshot as { close: () => Promise<void> }).close()
          await db.close()
        }
      }
    ), { numRuns: 150 })
  })
})

describe('replicas that join while another is active', () => {
  it('get one full copy: the log is kept for a copy in flight', async () => {
    const inner = new MemoryLevel()
    const seed = new MirrorLevel(inner)
    await seed.batch(Array.from({ length: 2000 }, (_, i) => ({ type: 'put' as const, key: `k${i}`, value: 'v' })))
    await seed.close()
    const active = new TestAdapter(new MemoryLevel() as never, { maxDelay: 0 }, 'active')
    const late = new TestAdapter(new MemoryLevel() as never, { maxDelay: 0, maxBatchOps: 100 }, 'late')
    late.faults = Array.from({ length: 30 }, () => ({ delay: 15 })) // a slow first copy
    late.stall() // unreachable at first
    const db = new MirrorLevel(inner, { replicas: [active, late] })
    const batches: Array<{ name: string, full: boolean }> = []
    db.on('replica-batch', (e) => batches.push(e))
    await db.open()
    await until(() => active.observed.length > 0)
    late.release()
    // The active replica keeps acknowledging writes (and the log keeps being truncated) while the
    // late one's copy is in flight.
    for (let i = 0; i < 200; i++) await db.put(`k${i % 50}`, `w${i}`)
    await db.replicated()
    expect(batches.filter((b) => b.name === 'late' && b.full).length).toBe(1)
    expect(await serialize(late.db)).toBe(await serialize(inner as never))
    await db.close()
  })
})

describe('a first copy interrupted more than once', () => {
  it('ships what changed since its oldest staged part: the replica ends equal, not stale', async () => {
    const inner = new MemoryLevel()
    const seed = new MirrorLevel(inner)
    await seed.batch(Array.from({ length: 1000 }, (_, i) => ({ type: 'put' as const, key: `k${String(i).padStart(4, '0')}`, value: 'v1' })))
    await seed.close()
    const rdb = new MemoryLevel()
    // Every part journaled (maxApplyBytes 1), 100 keys a part: the copy is ten parts.
    const adapter = new TestAdapter(rdb as never, { maxBatchOps: 100, maxApplyBytes: 1 } as never)
    adapter.faults = ['ok', 'ok', 'ok', 'failBefore'] // session 1: three parts staged, read at seq 1
    await inner.open()
    const db = new MirrorLevel(inner, { replicas: [adapter] })
    await db.open()
    await until(() => adapter.parts.length >= 4)
    // Every key changes; the second attempt stages two more parts, read at the new seq, then fails too.
    await db.batch(Array.from({ length: 1000 }, (_, i) => ({ type: 'put' as const, key: `k${String(i).padStart(4, '0')}`, value: 'v2' })))
    adapter.faults = ['ok', 'ok', 'failBefore']
    await until(() => adapter.parts.length >= 7)
    await db.replicated()
    expect(adapter.parts[4].index).toBe(3) // resumed, not restarted
    expect(await serialize(rdb as never)).toBe(await serialize(inner as never))
    await db.close()
  })
})
