import { afterAll, describe, expect, it } from 'vitest'
import { createServer, type AddressInfo, type Socket } from 'node:net'
import { join } from 'node:path'
import { ClassicLevel } from 'classic-level'
import { MemoryLevel } from 'memory-level'
import { MirrorLevel } from '../lib/primary/mirror-level'
import { MirrorServer } from '../lib/net/server'
import { TcpReplica } from '../adapters/tcp'
import { LevelReplica } from '../adapters/level'
import { tempDir, userData } from './helpers'
import { serialize, until } from './replication-helpers'
import { FaultProxy } from './tcp-helpers'

const KEY = 'close-test-key-0123456789abcdef'
// Far above closeTimeout and its grace: close() returning before this means it was bounded, not lucky.
const UNBOUNDED = 20_000

async function timed (fn: () => Promise<void>): Promise<number> {
  const start = Date.now()
  await fn()
  return Date.now() - start
}

describe('close() is bounded', () => {
  const tmp = tempDir()
  afterAll(() => tmp.cleanup())

  it('with a frozen server: close gives up after closeTimeout; what was not shipped ships after the next open', async () => {
    // Nothing else ends the frozen connection soon: without a bound, close() would wait a minute.
    const server = new MirrorServer({ dir: join(tmp.dir, 'frozen'), key: KEY, port: 0, idleTimeout: 120_000 })
    const { port } = await server.listen()
    const proxy = new FaultProxy(port)
    const via = await proxy.listen()
    const path = join(tmp.dir, 'primary-frozen')
    const replica = (): TcpReplica => new TcpReplica({ port: via, resource: 'r', key: KEY, requestTimeout: 60_000, heartbeatInterval: 30_000, heartbeatTimeout: 60_000, retryMinDelay: 10, retryMaxDelay: 50 })
    const db = new MirrorLevel(new ClassicLevel(path), { closeTimeout: 300, replicas: [replica()] })
    await db.open()
    await db.replicated()
    proxy.mode = 'blackhole' // the server stops answering, the connection stays up
    await db.put('late', 'x')
    expect(await timed(() => db.close())).toBeLessThan(UNBOUNDED)
    proxy.mode = 'pass'
    proxy.dropAll()
    const again = new MirrorLevel(new ClassicLevel(path), { replicas: [replica()] })
    await again.open()
    await again.replicated({ timeout: 10_000 })
    await again.close()
    await proxy.close()
    await server.close()
    const r = new ClassicLevel(join(tmp.dir, 'frozen', 'r'))
    expect(await r.get('late')).toBe('x')
    await r.close()
  })

  it('against something that accepts connections but never speaks: close does not wait out connectTimeout', async () => {
    const sockets: Socket[] = []
    const silent = createServer((s) => { sockets.push(s) })
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve))
    const { port } = silent.address() as AddressInfo
    const db = new MirrorLevel(new MemoryLevel(), { closeTimeout: 200, replicas: [new TcpReplica({ port, resource: 'r', key: KEY, connectTimeout: 60_000 })] })
    await db.open()
    await db.put('a', '1')
    await until(() => sockets.length > 0)
    expect(await timed(() => db.close())).toBeLessThan(UNBOUNDED)
    for (const s of sockets) s.destroy()
    await new Promise((resolve) => silent.close(resolve))
  })

  it('a replica still connecting when close() is called gets its first copy, when there is time', async () => {
    const inner = new MemoryLevel()
    const seed = new MirrorLevel(inner)
    await seed.batch(Array.from({ length: 3000 }, (_, i) => ({ type: 'put' as const, key: `k${i}`, value: 'v' })))
    await seed.close()
    const rdb = new MemoryLevel()
    const db = new MirrorLevel(inner, { replicas: [new LevelReplica(rdb)] })
    await db.open()
    await db.close() // at once: the replicator has not even had its hello answered
    await rdb.open() // the replica closed it with the primary
    await inner.open()
    expect((await userData(rdb as never)).size).toBe(3000)
    expect(await serialize(rdb as never)).toBe(await serialize(inner as never))
  })

  it('a first copy that cannot finish in closeTimeout stops, and resumes or restarts after the next open', async () => {
    const path = join(tmp.dir, 'primary-slow')
    const inner = new ClassicLevel(path)
    await inner.batch(Array.from({ length: 20_000 }, (_, i) => ({ type: 'put' as const, key: `k${String(i).padStart(6, '0')}`, value: 'x'.repeat(200) })))
    await inner.close()
    // A replica db that writes slowly: the copy takes far longer than closeTimeout.
    class SlowLevel extends MemoryLevel<Buffer, Buffer> {
      async _batch (ops: unknown, options: unknown): Promise<void> {
        await new Promise((resolve) => setTimeout(resolve, 50))
        // @ts-expect-error not in the public types
        return super._batch(ops, options)
      }
    }
    const rdb = new SlowLevel()
    const db = new MirrorLevel(new ClassicLevel(path), { closeTimeout: 300, replicas: [new LevelReplica(rdb, { maxBatchOps: 100, maxApplyBytes: 1 })] })
    await db.open()
    await until(() => db.mirrorStatus().replicas[0].state === 'syncing')
    expect(await timed(() => db.close())).toBeLessThan(UNBOUNDED)
    const again = new MirrorLevel(new ClassicLevel(path), { replicas: [new LevelReplica(rdb, { maxBatchOps: 1000 })] })
    await again.open()
    await again.replicated({ timeout: 60_000 })
    await again.close()
    await rdb.open()
    expect((await userData(rdb as never)).size).toBe(20_000)
  })
})

describe('close() leaves nothing behind', () => {
  it('no log maintenance runs after close, even when replicas report progress while closing', async () => {
    // Progress reported during close used to arm the look-again timer for log truncation, which
    // fired 2 s later on a closed database: an uncaught exception, fatal in an application.
    const uncaught: unknown[] = []
    const onUncaught = (err: unknown) => { uncaught.push(err) }
    process.on('uncaughtException', onUncaught)
    try {
      const inner = new MemoryLevel()
      const replica = new MemoryLevel()
      const db = new MirrorLevel(inner, { replicas: [new LevelReplica(replica as never, { maxDelay: 0 })] })
      await db.open()
      await db.put('a', '1')
      await db.replicated() // the first truncation runs at once; the next waits for more records or time
      await db.put('b', '2')
      await db.close() // ships 'b' while closing
      await new Promise((resolve) => setTimeout(resolve, 2500))
      expect(uncaught).toEqual([])
      await replica.open()
      await inner.open()
      expect(await serialize(replica as never)).toBe(await serialize(inner as never))
      expect(JSON.parse(await serialize(inner as never))).toHaveLength(2)
    } finally {
      process.off('uncaughtException', onUncaught)
    }
  })
})
