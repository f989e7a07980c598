import { afterAll, describe, expect, it } from 'vitest'
import { connect, type Socket } from 'node:net'
import { join } from 'node:path'
import { MemoryLevel } from 'memory-level'
import { MirrorLevel } from '../lib/primary/mirror-level'
import { MirrorServer } from '../lib/net/server'
import { TcpReplica } from '../adapters/tcp'
import { tempDir } from './helpers'
import { serialize, sleep, until } from './replication-helpers'

const KEY = 'server-limits-test-key-0123456789'
const MiB = 1024 * 1024

describe('what the server holds', () => {
  const tmp = tempDir()
  afterAll(() => tmp.cleanup())

  it('before authentication only handshake-sized frames: a stranger announcing a 60 MiB frame is cut off at its header', async () => {
    const server = new MirrorServer({ dir: join(tmp.dir, 'strangers'), key: KEY, port: 0 })
    const { port } = await server.listen()
    const sockets: Socket[] = []
    const closed: Array<Promise<number>> = []
    // What the server buffers shows as Buffer memory of this process (the server runs in it).
    const before = process.memoryUsage().arrayBuffers
    let peak = before
    const sampler = setInterval(() => { peak = Math.max(peak, process.memoryUsage().arrayBuffers) }, 5)
    for (let i = 0; i < 16; i++) {
      const s = connect(port, '127.0.0.1')
      sockets.push(s)
      let sent = 0
      closed.push(new Promise((resolve) => s.on('close', () => resolve(sent))))
      s.on('error', () => {})
      s.once('data', () => {
        const header = Buffer.alloc(8)
        header.writeUInt32BE(60 * MiB, 0)
        s.write(header)
        // then keep sending most of it, as fast as the server takes it
        const chunk = Buffer.alloc(MiB)
        const pump = (): void => {
          while (!s.destroyed && sent < 59 * MiB && s.write(chunk)) sent += chunk.length
          if (!s.destroyed && sent < 59 * MiB) s.once('drain', pump)
        }
        pump()
      })
    }
    const sentBeforeClose = await Promise.all(closed)
    clearInterval(sampler)
    expect(peak - before, 'bytes the server held for strangers').toBeLessThan(128 * MiB)
    // The server closed every connection long before 59 MiB went through.
    for (const sent of sentBeforeClose) expect(sent).toBeLessThan(59 * MiB)
    expect(server.frames.used).toBe(0)
    await until(() => server.connections === 0)
    await server.close()
  })

  it('large frames from every connection together stay within maxBufferedBytes, and every primary still gets through', async () => {
    const server = new MirrorServer({ dir: join(tmp.dir, 'budget'), key: KEY, port: 0, maxFrameBytes: 2 * MiB, maxBufferedBytes: 3 * MiB, openDb: () => new MemoryLevel() as never })
    const { port } = await server.listen()
    let peak = 0
    const sampler = setInterval(() => { peak = Math.max(peak, server.frames.used) }, 1)
    const primaries = Array.from({ length: 4 }, (_, i) => new MirrorLevel(new MemoryLevel(), {
      replicas: [new TcpReplica({ port, resource: `r${i}`, key: KEY, window: 4, retryMinDelay: 10, retryMaxDelay: 100 })]
    }))
    await Promise.all(primaries.map(async (db, i) => {
      await db.open()
      await db.batch(Array.from({ length: 8 }, (_, j) => ({ type: 'put' as const, key: `k${j}`, value: Buffer.alloc(900 * 1024, i + j) })), { valueEncoding: 'buffer' } as never)
      await db.replicated({ timeout: 60_000 })
    }))
    clearInterval(sampler)
    expect(peak).toBeGreaterThan(0)
    expect(peak).toBeLessThanOrEqual(3 * MiB)
    for (const db of primaries) expect(db.mirrorStatus().replicas[0].state).toBe('idle')
    await Promise.all(primaries.map((db) => db.close()))
    await server.close()
  })

  it('a refused (split-brain) primary lets go of the resource at once: the rightful one is not kept out', async () => {
    const server = new MirrorServer({ dir: join(tmp.dir, 'split'), key: KEY, port: 0 })
    const { port } = await server.listen()
    const tcp = (): TcpReplica => new TcpReplica({ port, resource: 'app', key: KEY, retryMinDelay: 10, retryMaxDelay: 60_000 })
    const rightful = new MirrorLevel(new MemoryLevel(), { replicas: [tcp()] })
    await rightful.put('a', '1')
    await rightful.replicated()
    await rightful.close()
    // Another line of history connects and is refused; it retries only every minute.
    const stranger = new MirrorLevel(new MemoryLevel(), { replicas: [tcp()] })
    await stranger.put('b', '2')
    await until(() => stranger.mirrorStatus().replicas[0].state === 'refused')
    await until(() => server.connections === 0)
    const errors: Array<{ error: { code?: string } }> = []
    rightful.on('replica-error', (e) => errors.push(e))
    await rightful.open()
    await rightful.put('c', '3')
    await rightful.replicated({ timeout: 5000 })
    expect(errors.filter((e) => e.error.code === 'MIRROR_BUSY')).toEqual([])
    await rightful.close()
    await stranger.close()
    await server.close()
  })

  it('answers heartbeats while it applies a long batch: the primary does not drop the connection and start over', async () => {
    // A replica db whose writes take a second each: the first copy takes longer than the heartbeat timeout.
    class SlowLevel extends MemoryLevel<Buffer, Buffer> {
      async _batch (ops: unknown, options: unknown): Promise<void> {
        await sleep(1000)
        // @ts-expect-error not in the public types
        return super._batch(ops, options)
      }
    }
    const rdb = new SlowLevel()
    const server = new MirrorServer({ dir: join(tmp.dir, 'slow'), key: KEY, port: 0, openDb: () => rdb as never })
    const { port } = await server.listen()
    const inner = new MemoryLevel()
    const db = new MirrorLevel(inner, {
      replicas: [new TcpReplica({ port, resource: 'slow', key: KEY, heartbeatInterval: 100, heartbeatTimeout: 400, requestTimeout: 600, retryMinDelay: 10, retryMaxDelay: 50 })]
    })
    const errors: unknown[] = []
    const batches: Array<{ full: boolean }> = []
    db.on('replica-error', (e) => errors.push(e))
    db.on('replica-batch', (e) => batches.push(e))
    await db.batch(Array.from({ length: 100 }, (_, i) => ({ type: 'put' as const, key: `k${i}`, value: 'v' })))
    await db.replicated({ timeout: 30_000 })
    expect(errors.map((e) => String((e as { error: Error }).error.message))).toEqual([])
    expect(batches.filter((b) => b.full).length).toBe(1)
    expect(await serialize(rdb as never)).toBe(await serialize(inner as never))
    await db.close()
    await server.close()
  })
})
