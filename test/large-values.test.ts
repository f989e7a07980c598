import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { join } from 'node:path'
import { ClassicLevel } from 'classic-level'
import { MemoryLevel } from 'memory-level'
import { MirrorLevel } from '../lib/primary/mirror-level'
import { MirrorServer } from '../lib/net/server'
import { TcpReplica } from '../adapters/tcp'
import { LevelReplica } from '../adapters/level'
import { ReplicaEngine } from '../lib/replica/engine'
import { tempDir } from './helpers'

const KEY = 'large-values-test-key-0123456789'
const MiB = 1024 * 1024

function value (bytes: number, seed: number): Buffer {
  const v = Buffer.allocUnsafe(bytes)
  for (let i = 0; i < bytes; i += 4096) v[i] = (seed + i / 4096) & 0xff
  return v.fill(seed & 0xff, 1, Math.min(bytes, 4096))
}

async function sameValue (db: { get: (k: string, o: object) => Promise<Buffer | undefined> }, key: string, expected: Buffer): Promise<void> {
  const got = await db.get(key, { valueEncoding: 'buffer' })
  expect(got?.length, `${key}: length`).toBe(expected.length)
  expect(got!.equals(expected), `${key}: bytes`).toBe(true)
}

describe('values larger than a frame', () => {
  const tmp = tempDir()
  afterAll(() => tmp.cleanup())

  // The case of the report, scaled down: a server whose frames are limited to 1 MiB, and values of
  // 3.9 and 6 MiB next to each other in key order, in a first copy and then in a live batch.
  it('reach a TcpReplica whatever the server\'s frame limit: first copy, live batch, large values side by side', async () => {
    const replicaDir = join(tmp.dir, 'small-frames')
    const server = new MirrorServer({ dir: replicaDir, key: KEY, port: 0, maxFrameBytes: MiB })
    const { port } = await server.listen()
    const inner = new ClassicLevel(join(tmp.dir, 'primary-1'))
    const a = value(3.9 * MiB, 1)
    const b = value(6 * MiB, 2)
    const c = value(5 * MiB, 3)
    await inner.batch([{ type: 'put', key: 'a-big', value: a }, { type: 'put', key: 'b-big', value: b }, { type: 'put', key: 'c-small', value: Buffer.from('x') }], { valueEncoding: 'buffer' } as never)
    await inner.close()
    const batches: Array<{ full: boolean, parts: number }> = []
    const db = new MirrorLevel(new ClassicLevel(join(tmp.dir, 'primary-1')), {
      replicas: [new TcpReplica({ port, resource: 'big', key: KEY, retryMinDelay: 10, retryMaxDelay: 100 })]
    })
    db.on('replica-batch', (e) => batches.push(e))
    await db.open()
    await db.replicated({ timeout: 30_000 })
    await db.batch([{ type: 'put', key: 'c-big', value: c }, { type: 'put', key: 'd', value: Buffer.from('y') }], { valueEncoding: 'buffer' } as never)
    await db.replicated({ timeout: 30_000 })
    expect(db.mirrorStatus().replicas[0].state).toBe('idle')
    expect(batches[0].full).toBe(true)
    expect(batches[0].parts).toBeGreaterThan(10) // 1 MiB frames: pieces of half a MiB
    await db.close()
    await server.close()
    const replica = new ClassicLevel(join(replicaDir, 'big'))
    await sameValue(replica as never, 'a-big', a)
    await sameValue(replica as never, 'b-big', b)
    await sameValue(replica as never, 'c-big', c)
    expect(await replica.get('d')).toBe('y')
    await replica.close()
  })

  it('a value above the default 64 MiB frame limit replicates over TCP (one 70 MiB value)', async () => {
    const server = new MirrorServer({ dir: join(tmp.dir, 'default-frames'), key: KEY, port: 0 })
    const { port } = await server.listen()
    const db = new MirrorLevel(new ClassicLevel(join(tmp.dir, 'primary-2')), {
      replicas: [new TcpReplica({ port, resource: 'huge', key: KEY, retryMinDelay: 10, retryMaxDelay: 100 })]
    })
    await db.open()
    await db.replicated()
    const huge = value(70 * MiB, 9)
    await db.put('huge', huge, { valueEncoding: 'buffer' })
    await db.replicated({ timeout: 60_000 })
    expect(db.mirrorStatus().replicas[0]).toMatchObject({ state: 'idle', errorCode: null })
    await db.close()
    await server.close()
    const replica = new ClassicLevel(join(tmp.dir, 'default-frames', 'huge'))
    await sameValue(replica as never, 'huge', huge)
    await replica.close()
  })

  it('pieces of a value are assembled also when the batch is journaled, in memory-bounded parts', async () => {
    const rdb = new MemoryLevel()
    const replica = new LevelReplica(rdb, { maxBatchBytes: 64 * 1024, maxApplyBytes: 100 * 1024 })
    const db = new MirrorLevel(new MemoryLevel(), { replicas: [replica] })
    const v1 = value(1 * MiB, 4)
    const v2 = value(300 * 1024, 5)
    await db.batch([{ type: 'put', key: 'k1', value: v1 }, { type: 'put', key: 'k2', value: v2 }, { type: 'put', key: 'k3', value: Buffer.from('s') }], { valueEncoding: 'buffer' } as never)
    await db.replicated()
    await sameValue(rdb as never, 'k1', v1)
    await sameValue(rdb as never, 'k2', v2)
    await db.close()
  })

  it('the engine refuses pieces that do not follow each other', async () => {
    const engine = new ReplicaEngine(new MemoryLevel() as never)
    await engine.open()
    const k = (s: string): Buffer => Buffer.from(s)
    await engine.apply({ generation: 'g', from: 0, to: 1, index: 0, final: true, full: true, range: { after: null, upto: null }, ops: [] })
    const bad = [
      [{ type: 'put' as const, key: k('a'), value: k('1'), more: true }, { type: 'put' as const, key: k('b'), value: k('2') }],
      [{ type: 'put' as const, key: k('a'), value: k('1'), more: true }, { type: 'del' as const, key: k('a') }],
      [{ type: 'put' as const, key: k('a'), value: k('1'), more: true }]
    ]
    for (const ops of bad) {
      await expect(engine.apply({ generation: 'g', from: 1, to: 2, index: 0, final: true, full: false, ops })).rejects.toMatchObject({ code: 'MIRROR_BAD_PART' })
    }
    expect(engine.hello().watermark).toBe(1)
    await engine.close()
  })
})

describe('errors that retrying cannot cure', () => {
  let server: MirrorServer
  let port: number
  const tmp = tempDir()
  beforeAll(async () => {
    server = new MirrorServer({ dir: tmp.dir, key: KEY, port: 0 })
    port = (await server.listen()).port
  })
  afterAll(async () => {
    await server.close()
    tmp.cleanup()
  })

  it('a wrong key is reported as failed with its code, not as a blip retried at full speed', async () => {
    const events: Array<{ state: string, error: { code?: string } }> = []
    const errors: unknown[] = []
    const db = new MirrorLevel(new MemoryLevel(), {
      replicas: [new TcpReplica({ port, resource: 'x', key: 'not-the-right-key-at-all', retryMinDelay: 5, retryMaxDelay: 400 })]
    })
    db.on('replica-down', (e) => events.push(e))
    db.on('replica-error', (e) => errors.push(e))
    await db.put('a', '1')
    await new Promise((resolve) => setTimeout(resolve, 600))
    expect(db.mirrorStatus().replicas[0]).toMatchObject({ state: 'failed', errorCode: 'MIRROR_AUTH' })
    expect(events[0]).toMatchObject({ state: 'failed', error: { code: 'MIRROR_AUTH' } })
    // tried again only every retryMaxDelay (400 ms), not every few ms
    expect(errors.length).toBeLessThanOrEqual(3)
    await db.close()
  })
})
