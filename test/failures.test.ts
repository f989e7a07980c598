import { readFileSync, writeFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { ClassicLevel } from 'classic-level'
import { MemoryLevel } from 'memory-level'
import { MirrorLevel } from '../lib/primary/mirror-level'
import { LevelReplica } from '../adapters/level'
import { ReplicaEngine } from '../lib/replica/engine'
import { metaKeys } from '../lib/keyspace'
import { tempDir, unlocked } from './helpers'
import { serialize, until } from './replication-helpers'

describe('a failed open closes what it opened and keeps the cause', () => {
  it('a replica whose state is corrupt: every attempt says MIRROR_CORRUPT, and its lock is let go between attempts', async () => {
    const { dir, cleanup } = tempDir()
    try {
      const path = `${dir}/replica`
      const raw = new ClassicLevel<Buffer, Buffer>(path, { keyEncoding: 'buffer', valueEncoding: 'buffer' })
      await raw.put(metaKeys.replica, Buffer.from([0xc1])) // not msgpack
      await raw.close()
      const db = new MirrorLevel(new MemoryLevel(), { replicas: [new LevelReplica(new ClassicLevel(path), { retryMinDelay: 20, retryMaxDelay: 50 })] })
      const errors: Array<{ error: Error & { code?: string } }> = []
      db.on('replica-error', (e) => errors.push(e))
      await db.open()
      await until(() => errors.length >= 3)
      for (const { error } of errors) expect(error.code).toBe('MIRROR_CORRUPT')
      expect(db.mirrorStatus().replicas[0]).toMatchObject({ errorCode: 'MIRROR_CORRUPT' })
      // Between attempts nobody holds the replica's LevelDB lock.
      await until(() => unlocked(path))
      await db.close()
    } finally {
      cleanup()
    }
  })

  it('a primary whose stored state is corrupt: open() fails with the cause, and the inner db is closed (its lock free)', async () => {
    const { dir, cleanup } = tempDir()
    try {
      const path = `${dir}/primary`
      const raw = new ClassicLevel<Buffer, Buffer>(path, { keyEncoding: 'buffer', valueEncoding: 'buffer' })
      await raw.put(metaKeys.origin, Buffer.from([0xc1]))
      await raw.close()
      const inner = new ClassicLevel(path)
      const db = new MirrorLevel(inner)
      const err = await db.open().catch((e) => e)
      expect(err.code).toBe('LEVEL_DATABASE_NOT_OPEN') // abstract-level's contract for a failed open
      expect(err.cause.code).toBe('MIRROR_CORRUPT') // and the reason
      expect(inner.status).toBe('closed')
      const again = new ClassicLevel(path)
      await again.open() // not locked
      await again.close()
      const err2 = await db.open().catch((e) => e) // a second attempt gives the same reason
      expect(err2.cause.code).toBe('MIRROR_CORRUPT')
    } finally {
      cleanup()
    }
  })

  it('a replica whose path is a file: failed (no retry cures it), with the file\'s code; the primary writes on and the file is untouched', async () => {
    const { dir, cleanup } = tempDir()
    try {
      const file = `${dir}/not-a-dir`
      writeFileSync(file, 'mine')
      const db = new MirrorLevel(new ClassicLevel(`${dir}/p`), { replicas: [new LevelReplica(new ClassicLevel(file), { name: 'backup' })] })
      await db.open()
      await until(() => db.mirrorStatus().replicas[0].state !== 'connecting')
      expect(db.mirrorStatus().replicas[0]).toMatchObject({ state: 'failed', errorCode: expect.stringMatching(/^(EEXIST|ENOTDIR)$/) })
      await db.put('k', 'v')
      expect(await db.get('k')).toBe('v')
      await db.close()
      expect(readFileSync(file, 'utf8')).toBe('mine')
    } finally {
      cleanup()
    }
  })

  it('a directory another process (or db) holds: the cause is LEVEL_LOCKED, as for the bare store; a server says the resource is in use', async () => {
    const { dir, cleanup } = tempDir()
    try {
      const first = new MirrorLevel(new ClassicLevel(`${dir}/p`))
      await first.put('k', 'v')
      const err = await new MirrorLevel(new ClassicLevel(`${dir}/p`)).open().catch((e) => e)
      expect(err.code).toBe('LEVEL_DATABASE_NOT_OPEN')
      expect(err.cause.code).toBe('LEVEL_LOCKED') // was one more "failed to open" in between
      expect(await first.get('k')).toBe('v')
      await first.close()

      // Two servers on one --dir: the second cannot open a resource the first holds, and says why.
      const KEY = 'lock-test-key-0123456789abcdef'
      const { MirrorServer } = await import('../lib/net/server')
      const { TcpReplica } = await import('../adapters/tcp')
      const a = new MirrorServer({ dir: `${dir}/served`, key: KEY, port: 0 })
      const b = new MirrorServer({ dir: `${dir}/served`, key: KEY, port: 0 })
      const pa = (await a.listen()).port
      const pb = (await b.listen()).port
      const one = new MirrorLevel(new MemoryLevel(), { replicas: [new TcpReplica({ port: pa, resource: 'r', key: KEY })] })
      await one.put('x', '1')
      await one.replicated()
      const two = new MirrorLevel(new MemoryLevel(), { replicas: [new TcpReplica({ port: pb, resource: 'r', key: KEY, retryMinDelay: 10, retryMaxDelay: 20 })] })
      await two.open()
      await until(() => two.mirrorStatus().replicas[0].errorCode !== null)
      const status = two.mirrorStatus().replicas[0]
      expect(status.errorCode).toBe('MIRROR_BUSY')
      expect(status.error).toMatch(/in use by another process/)
      await Promise.all([one.close(), two.close()])
      await Promise.all([a.close(), b.close()])
    } finally {
      cleanup()
    }
  })

  it('a replica state with a non-numeric watermark is refused as corrupt', async () => {
    const { Packr } = await import('msgpackr')
    const rdb = new MemoryLevel<Buffer, Buffer>({ keyEncoding: 'buffer', valueEncoding: 'buffer' })
    await rdb.put(metaKeys.replica, new Packr({ useRecords: false, mapsAsObjects: true }).pack({ generation: 'g', watermark: 'lots' }))
    const engine = new ReplicaEngine(rdb as never)
    await expect(engine.open()).rejects.toMatchObject({ code: 'MIRROR_CORRUPT' })
    expect(rdb.status).toBe('closed')
  })
})

describe('listeners that throw', () => {
  it('do not stop replication or reach the process; the error is reported', async () => {
    const rdb = new MemoryLevel()
    const db = new MirrorLevel(new MemoryLevel(), { replicas: [new LevelReplica(rdb, { maxDelay: 0 })] })
    const reported: Error[] = []
    db.on('error', (err) => reported.push(err))
    db.on('replica-batch', () => { throw new Error('listener bug') })
    db.on('replica-up', () => { throw new Error('another listener bug') })
    for (let i = 0; i < 20; i++) await db.put(`k${i}`, 'v')
    await db.replicated()
    expect(await serialize(rdb as never)).toBe(await serialize(db as never))
    expect(reported.length).toBeGreaterThan(0)
    expect(reported[0]).toMatchObject({ code: 'MIRROR_LISTENER' })
    expect((reported[0].cause as Error).message).toMatch(/listener bug/)
    await db.close()
  })

  it('without an error listener they become process warnings', async () => {
    const warnings: Error[] = []
    const onWarning = (w: Error): void => { warnings.push(w) }
    process.on('warning', onWarning)
    try {
      const db = new MirrorLevel(new MemoryLevel(), { replicas: [new LevelReplica(new MemoryLevel(), { maxDelay: 0 })] })
      db.on('replica-batch', () => { throw new Error('listener bug') })
      await db.put('a', '1')
      await db.replicated()
      await db.put('b', '2')
      await db.replicated()
      await until(() => warnings.some((w) => (w as { code?: string }).code === 'MIRROR_LISTENER'))
      await db.close()
    } finally {
      process.off('warning', onWarning)
    }
  })
})

describe('arguments that cannot work', () => {
  it('logBudget below what one merged record needs is refused (it froze the db at 100% CPU)', () => {
    for (const logBudget of [1, 28, 1023]) {
      expect(() => new MirrorLevel(new MemoryLevel(), { logBudget })).toThrow(expect.objectContaining({ code: 'MIRROR_INVALID_OPTION' }))
    }
    expect(() => new MirrorLevel(new MemoryLevel(), { logBudget: 1024 })).not.toThrow()
  })

  it('replicated() refuses options that are not an object with a non-negative timeout', async () => {
    const db = new MirrorLevel(new MemoryLevel())
    await db.open()
    for (const bad of ['x', null, 5, { timeout: -1 }, { timeout: 'soon' }]) {
      await expect(db.replicated(bad as never)).rejects.toMatchObject({ code: 'MIRROR_INVALID_OPTION' })
    }
    await db.replicated()
    await db.replicated({ timeout: 10 })
    await db.close()
  })
})

describe('more arguments that cannot work', () => {
  it('frame and part limits too small to carry anything, and misspelt options, are refused', async () => {
    const { MirrorServer } = await import('../lib/net/server')
    const { TcpReplica } = await import('../adapters/tcp')
    expect(() => new MirrorServer({ dir: '/tmp/x', key: 'k'.repeat(20), maxFrameBytes: 100 })).toThrow(expect.objectContaining({ code: 'MIRROR_INVALID_OPTION' }))
    for (const writeBufferBytes of [0, 1000, 2 ** 31, 2 ** 20 + 0.5, '32M']) {
      expect(() => new MirrorServer({ dir: '/tmp/x', key: 'k'.repeat(20), writeBufferBytes: writeBufferBytes as number })).toThrow(expect.objectContaining({ code: 'MIRROR_INVALID_OPTION', message: expect.stringContaining('writeBufferBytes') }))
    }
    expect(() => new TcpReplica({ resource: 'r', key: 'k'.repeat(20), maxFrameBytes: 10 })).toThrow(expect.objectContaining({ code: 'MIRROR_INVALID_OPTION' }))
    expect(() => new MirrorLevel(new MemoryLevel(), { replicas: [new LevelReplica(new MemoryLevel(), { maxBatchBytes: 1 })] })).toThrow(expect.objectContaining({ code: 'MIRROR_INVALID_OPTION' }))
    const db = new MirrorLevel(new MemoryLevel())
    await db.open()
    await expect(db.replicated({ timout: 5 } as never)).rejects.toMatchObject({ code: 'MIRROR_INVALID_OPTION' })
    // close() has no options (the limit is closeTimeout): one passed is refused, and nothing closes.
    await expect((db.close as (o: unknown) => Promise<void>)({ timeout: 200 })).rejects.toMatchObject({ code: 'MIRROR_INVALID_OPTION', message: expect.stringContaining('closeTimeout') })
    expect(db.status).toBe('open')
    await db.put('still', 'open')
    await db.close()
    expect(db.status).toBe('closed')
  })

  it('writes made before open() resolves capture their Buffers too', async () => {
    const db = new MirrorLevel<Buffer, Buffer>(new MemoryLevel(), { keyEncoding: 'buffer', valueEncoding: 'buffer' })
    const key = Buffer.from('u001')
    const pending = [db.put(key, Buffer.from('a'))]
    key.write('u002')
    pending.push(db.batch([{ type: 'put', key, value: Buffer.from('b') }]))
    key.write('u003')
    await Promise.all(pending)
    expect((await db.keys().all()).map(String)).toEqual(['u001', 'u002'])
    await db.close()
  })
})
