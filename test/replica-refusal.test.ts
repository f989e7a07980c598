import { describe, expect, it } from 'vitest'
import { ClassicLevel } from 'classic-level'
import { MemoryLevel } from 'memory-level'
import { MirrorLevel } from '../lib/primary/mirror-level'
import { LevelReplica } from '../adapters/level'
import { ReplicaEngine } from '../lib/replica/engine'
import { tempDir } from './helpers'
import { serialize, until } from './replication-helpers'

async function everything (db: ClassicLevel<string, string>): Promise<string> {
  return JSON.stringify(await db.iterator({ keyEncoding: 'buffer', valueEncoding: 'buffer' }).all())
}

describe('a replica that holds what this primary did not send it', () => {
  it('a directory of someone\'s data is refused, named, and left as it was; the lock is let go', async () => {
    const { dir, cleanup } = tempDir()
    try {
      const path = `${dir}/photos`
      const theirs = new ClassicLevel(path)
      await theirs.batch(Array.from({ length: 50 }, (_, i) => ({ type: 'put' as const, key: `photo${i}`, value: `jpeg${i}` })))
      const before = await everything(theirs)
      await theirs.close()
      const db = new MirrorLevel(new MemoryLevel(), { replicas: [new LevelReplica(new ClassicLevel(path), { retryMaxDelay: 200 })] })
      const down: Array<{ state: string, error: { code?: string } }> = []
      db.on('replica-down', (e) => down.push(e))
      await db.put('mine', '1')
      await until(() => db.mirrorStatus().replicas[0].state === 'refused')
      expect(db.mirrorStatus().replicas[0]).toMatchObject({ state: 'refused', errorCode: 'MIRROR_REPLICA_NOT_EMPTY', consistent: false })
      expect(down[0]).toMatchObject({ state: 'refused', error: { code: 'MIRROR_REPLICA_NOT_EMPTY' } })
      await expect(db.replicated({ timeout: 300 })).rejects.toMatchObject({ code: 'MIRROR_REPLICA_TIMEOUT' })
      // Refused, the replica is closed until it is looked at again: someone can open it meanwhile.
      await until(async () => {
        const peek = new ClassicLevel(path)
        try {
          await peek.open()
          expect(await everything(peek)).toBe(before)
          return true
        } catch {
          return false
        } finally {
          await peek.close()
        }
      })
      await db.close()
      const check = new ClassicLevel(path)
      expect(await everything(check)).toBe(before)
      await check.close()
    } finally {
      cleanup()
    }
  })

  it('another primary\'s store is refused; with overwrite it becomes a replica, which no longer wraps as a primary', async () => {
    const { dir, cleanup } = tempDir()
    try {
      const path = `${dir}/other`
      const other = new MirrorLevel(new ClassicLevel(path))
      await other.put('theirs', 'x')
      await other.close()
      const raw = new ClassicLevel(path)
      const before = await everything(raw)
      await raw.close()

      const db = new MirrorLevel(new MemoryLevel(), { replicas: [new LevelReplica(new ClassicLevel(path), { retryMaxDelay: 100 })] })
      await db.put('mine', '1')
      await until(() => db.mirrorStatus().replicas[0].state === 'refused')
      expect(db.mirrorStatus().replicas[0].errorCode).toBe('MIRROR_REPLICA_NOT_EMPTY')
      expect(db.mirrorStatus().replicas[0].error).toContain('another primary')
      await db.close()
      const same = new ClassicLevel(path)
      expect(await everything(same)).toBe(before)
      await same.close()

      const inner = new MemoryLevel()
      const forced = new MirrorLevel(inner, { replicas: [new LevelReplica(new ClassicLevel(path), { overwrite: true })] })
      await forced.put('mine', '1')
      await forced.replicated()
      await forced.close()
      const replica = new ClassicLevel<string, string>(path)
      expect(await replica.iterator({ lt: '\xff' }).all()).toEqual([['mine', '1']])
      await replica.close()
      const again = new MirrorLevel(new ClassicLevel(path))
      const err = await again.open().catch((e) => e)
      expect(err.cause.code).toBe('MIRROR_IS_REPLICA')
    } finally {
      cleanup()
    }
  })

  it('the engine itself refuses a full copy onto foreign data unless it says overwrite, and changes nothing', async () => {
    const rdb = new MemoryLevel()
    await rdb.put('theirs', 'x')
    const engine = new ReplicaEngine(rdb as never)
    await engine.open()
    expect(engine.hello().foreign).toBe('data')
    const before = await serialize(rdb as never)
    const part = { generation: 'g', from: 0, to: 1, index: 0, final: true, full: true, range: { after: null, upto: null }, ops: [{ type: 'put' as const, key: Buffer.from('a'), value: Buffer.from('1') }] }
    await expect(engine.apply(part)).rejects.toMatchObject({ code: 'MIRROR_REPLICA_NOT_EMPTY' })
    expect(await serialize(rdb as never)).toBe(before)
    await engine.apply({ ...part, overwrite: true })
    expect(await serialize(rdb as never)).toBe(JSON.stringify([[Buffer.from('a').toString('hex'), Buffer.from('1').toString('hex')]]))
    expect(engine.hello()).toMatchObject({ foreign: null, watermark: 1 })
    await engine.close()
  })

  it('an empty store and a replica of this line are accepted as before', async () => {
    const rdb = new MemoryLevel()
    const db = new MirrorLevel(new MemoryLevel(), { replicas: [new LevelReplica(rdb)] })
    await db.put('a', '1')
    await db.replicated()
    await db.close()
    await db.open()
    await db.put('b', '2')
    await db.replicated()
    expect(db.mirrorStatus().replicas[0].state).toBe('idle')
    await db.close()
  })
})

describe('the primary\'s own directory, and adapters shared between primaries', () => {
  it('a replica in the primary\'s own directory, however its path is spelled, is refused before anything opens', async () => {
    const { dir, cleanup } = tempDir()
    try {
      const path = `${dir}/app`
      const seed = new MirrorLevel(new ClassicLevel(path))
      await seed.put('precious', '1')
      await seed.close()
      for (const spelling of [`${dir}/sub/../app`, `${dir}//app`, `${dir}/app/`]) {
        const inner = new ClassicLevel(path)
        expect(() => new MirrorLevel(inner, { replicas: [new LevelReplica(new ClassicLevel(spelling))] }), spelling)
          .toThrow(expect.objectContaining({ code: 'MIRROR_INVALID_OPTION', message: expect.stringMatching(/same directory as the primary/) }))
        await inner.close()
      }
      const check = new MirrorLevel(new ClassicLevel(path))
      expect(await check.get('precious')).toBe('1')
      await check.close()
    } finally {
      cleanup()
    }
  })

  it('one adapter serves one open primary at a time', async () => {
    const replica = new LevelReplica(new MemoryLevel())
    const a = new MirrorLevel(new MemoryLevel(), { replicas: [replica] })
    await a.open()
    const b = new MirrorLevel(new MemoryLevel(), { replicas: [replica] })
    expect((await b.open().catch((e) => e)).cause?.code).toBe('MIRROR_INVALID_OPTION')
    await a.close()
    await b.open() // free again once the first closed
    await b.close()
  })

  it('overwrite also replaces a replica of another line of history', async () => {
    const rdb = new MemoryLevel()
    const other = new MirrorLevel(new MemoryLevel(), { replicas: [new LevelReplica(rdb)] })
    await other.put('theirs', '1')
    await other.replicated()
    await other.close()
    const db = new MirrorLevel(new MemoryLevel(), { replicas: [new LevelReplica(rdb, { overwrite: true })] })
    await db.put('mine', '2')
    await db.replicated()
    await db.close()
    await rdb.open()
    expect(await rdb.iterator({ lt: '\xff' }).all()).toEqual([['mine', '2']])
  })
})
