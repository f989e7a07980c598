import { describe, expect, it } from 'vitest'
import { ClassicLevel } from 'classic-level'
import { MemoryLevel } from 'memory-level'
import { MirrorLevel } from '../lib/primary/mirror-level'
import { LevelReplica } from '../adapters/level'
import { ReplicaEngine } from '../lib/replica/engine'
import type { BatchPart } from '../lib/adapter'
import { tempDir, userData } from './helpers'
import { PrimaryStates, serialize, sleep, until } from './replication-helpers'
import { runCli } from './tcp-helpers'

const gen = 'g1'
const put = (k: string, v: string): { type: 'put', key: Buffer, value: Buffer } => ({ type: 'put', key: Buffer.from(k), value: Buffer.from(v) })

// An engine on `db` at seq 1 ('a' and 'z' old), a reader on it, and a journaled batch to seq 2 in
// two parts (3000 new keys, 'a' and 'z' new), its first part staged.
async function journaledBatch (db: MemoryLevel<Buffer, Buffer>): Promise<{ engine: ReplicaEngine, reader: import('../lib/replica/reader').ReplicaReader, parts: BatchPart[] }> {
  const engine = new ReplicaEngine(db as never, { maxApplyBytes: 1 })
  await engine.open()
  await engine.apply({ generation: gen, from: 0, to: 1, index: 0, final: true, full: true, range: { after: null, upto: null }, ops: [put('a', 'old'), put('z', 'old')] })
  const { ReplicaReader } = await import('../lib/replica/reader')
  const reader = new ReplicaReader(engine)
  await reader.open()
  const parts = [0, 1].map((i) => ({ generation: gen, from: 1, to: 2, index: i, final: i === 1, full: false, ops: Array.from({ length: 1500 }, (_, j) => put(`k${i}-${j}`, 'new')).concat(i === 1 ? [put('a', 'new'), put('z', 'new')] : []) }))
  await engine.apply(parts[0])
  return { engine, reader, parts }
}

// 64 writers, each putting to keys of a shared pool, while batches ship in parts of 20 ops.
async function concurrentWrites (db: MirrorLevel, rounds: number): Promise<void> {
  await Promise.all(Array.from({ length: 64 }, async (_, w) => {
    for (let i = 0; i < rounds; i++) await db.put(`k${(w * 7 + i * 13) % 300}`, `${w}.${i}`)
  }))
}

// Samples a reader until `done`, checking that every sample is a state the primary had.
async function sampleWhile (read: () => Promise<string>, states: PrimaryStates, done: { value: boolean }): Promise<number> {
  let samples = 0
  while (!done.value) {
    const seen = await read()
    expect([...states.states.values()].includes(seen), `sample ${samples} is a state the primary never had`).toBe(true)
    samples++
    await new Promise(setImmediate)
  }
  return samples
}

describe('reading a live replica', () => {
  it('a batch shipped in many parts is applied as one atomic batch: a raw reader only sees real states', async () => {
    const { dir, cleanup } = tempDir()
    const inner = new MemoryLevel()
    const states = new PrimaryStates(inner as never)
    const rdb = new ClassicLevel(`${dir}/replica`)
    const batches: Array<{ parts: number }> = []
    const db = new MirrorLevel(inner, { replicas: [new LevelReplica(rdb, { maxBatchOps: 20, maxDelay: 20 })] })
    db.on('replica-batch', (e) => batches.push(e))
    await db.open()
    // Raw reads are promised real states once the replica holds one (a first copy into a replica
    // that held nothing is written in place: test/first-copy.test.ts).
    await db.replicated()
    const done = { value: false }
    const sampling = sampleWhile(async () => await serialize(rdb as never), states, done)
    await concurrentWrites(db, 60)
    await db.replicated()
    done.value = true
    expect(await sampling).toBeGreaterThan(10)
    expect(Math.max(...batches.map((b) => b.parts)), 'batches came in several parts').toBeGreaterThan(1)
    expect(await serialize(rdb as never)).toBe(await serialize(inner as never))
    await db.close()
    cleanup()
  })

  it('while a batch too large for memory is applied from the journal, the reader shows the state before it', async () => {
    const { dir, cleanup } = tempDir()
    const inner = new MemoryLevel()
    const states = new PrimaryStates(inner as never)
    const rdb = new ClassicLevel(`${dir}/replica`)
    // maxApplyBytes: 1 sends every batch through the journal, applied part by part
    const replica = new LevelReplica(rdb, { maxBatchOps: 20, maxDelay: 20, maxApplyBytes: 1 })
    const db = new MirrorLevel(inner, { replicas: [replica] })
    await db.open()
    const reader = replica.reader()
    await reader.open()
    const done = { value: false }
    const read = async (): Promise<string> => {
      const entries = await reader.iterator<Buffer, Buffer>({ keyEncoding: 'buffer', valueEncoding: 'buffer' }).all()
      return JSON.stringify(entries.map(([k, v]) => [k.toString('hex'), v.toString('hex')]).sort())
    }
    const sampling = sampleWhile(read, states, done)
    const gets = (async () => {
      // a getMany is one state too
      while (!done.value) {
        const values = await reader.getMany(['k0', 'k1', 'k2'])
        expect(values.length).toBe(3)
        await sleep(1)
      }
    })()
    await concurrentWrites(db, 60)
    await db.replicated()
    done.value = true
    expect(await sampling).toBeGreaterThan(10)
    await gets
    expect(await read()).toBe(await serialize(inner as never))
    await expect(reader.put('x', 'y')).rejects.toMatchObject({ code: 'MIRROR_READ_ONLY' })
    await db.close()
    cleanup()
  })

  it('reads made while a journaled batch is half applied see the state before it; raw reads see the mix', async () => {
    // A replica db whose writes can be held at one point: the middle of applying a journal.
    class GatedLevel extends MemoryLevel<Buffer, Buffer> {
      holdAt = Infinity
      batches = 0
      release = (): void => {}
      async _batch (ops: unknown, options: unknown): Promise<void> {
        if (++this.batches === this.holdAt) await new Promise<void>((resolve) => { this.release = resolve })
        // @ts-expect-error not in the public types
        return super._batch(ops, options)
      }
    }
    const rdb = new GatedLevel()
    const { engine, reader, parts } = await journaledBatch(rdb)
    // batches from here: the final part with its commit record, then the apply, 1000 ops at a time
    rdb.holdAt = rdb.batches + 3
    const applying = engine.apply(parts[1])
    await until(() => rdb.batches >= rdb.holdAt)
    expect(String(await rdb.get(Buffer.from('k0-0')))).toBe('new') // raw: half applied
    expect(String(await rdb.get(Buffer.from('a')))).toBe('old')
    expect(await reader.get('k0-0')).toBeUndefined() // the reader: the state before the batch
    expect(await reader.getMany(['a', 'z'])).toEqual(['old', 'old'])
    const it = reader.iterator()
    expect(await it.next()).toEqual(['a', 'old'])
    rdb.release()
    await applying
    expect(await it.next()).toEqual(['z', 'old']) // an iterator keeps its state after the apply
    await it.close()
    expect(await reader.get('k0-0')).toBe('new')
    expect((await reader.keys().all()).length).toBe(3002)
    await engine.close()
  })
})

// A replica db that fails its `failAt`-th batch (counted from 1).
class FailingLevel extends MemoryLevel<Buffer, Buffer> {
  failAt = Infinity
  batches = 0
  async _batch (ops: unknown, options: unknown): Promise<void> {
    if (++this.batches === this.failAt) throw new Error('injected write failure')
    // @ts-expect-error not in the public types
    return super._batch(ops, options)
  }
}

describe('a journaled apply that fails half way', () => {
  it('goes on from the last part it applied when it is finished, not from the first', async () => {
    const rdb = new FailingLevel()
    const engine = new ReplicaEngine(rdb as never, { maxApplyBytes: 1 })
    await engine.open()
    await engine.apply({ generation: gen, from: 0, to: 1, index: 0, final: true, full: true, range: { after: null, upto: null }, ops: [put('a', 'old')] })
    // Ten parts of 500 ops, each rewriting 'a' too: the last write of 'a' wins only if every part is applied in order.
    const parts = Array.from({ length: 10 }, (_, i) => ({ generation: gen, from: 1, to: 2, index: i, final: i === 9, full: false, ops: [...Array.from({ length: 499 }, (_, j) => put(`k${i}-${String(j).padStart(3, '0')}`, `v${i}`)), put('a', `p${i}`)] }))
    for (const part of parts.slice(0, 9)) await engine.apply(part)
    // From here: the final part staged, the apply's start record, then one write per part: fail in part 7.
    rdb.failAt = rdb.batches + 2 + 8
    await expect(engine.apply(parts[9])).rejects.toThrow('injected write failure')
    const before = rdb.batches
    expect((await engine.apply(parts[9])).watermark).toBe(2)
    // Parts 7, 8 and 9 again, and the batch's end: not all ten.
    expect(rdb.batches - before).toBeLessThanOrEqual(5)
    expect(String(await rdb.get(Buffer.from('a')))).toBe('p9')
    expect(String(await rdb.get(Buffer.from('k0-000')))).toBe('v0')
    expect(String(await rdb.get(Buffer.from('k9-498')))).toBe('v9')
    await engine.close()
  })

  it('leaves readers on the state before the batch until it is finished', async () => {
    const rdb = new FailingLevel()
    const { engine, reader, parts } = await journaledBatch(rdb)
    // batches from here: the final part with its commit record, then the apply, 1000 ops at a time
    rdb.failAt = rdb.batches + 3
    await expect(engine.apply(parts[1])).rejects.toThrow('injected write failure')
    expect(String(await rdb.get(Buffer.from('k0-0')))).toBe('new') // raw: half applied
    expect(await reader.get('k0-0')).toBeUndefined() // the reader: still the state before the batch
    expect(await reader.getMany(['a', 'z'])).toEqual(['old', 'old'])
    expect((await reader.keys().all()).length).toBe(2)
    expect(engine.hello().watermark).toBe(1)
    // The part sent again: the journal is finished first, and the reader moves on to the new state.
    expect((await engine.apply(parts[1])).watermark).toBe(2)
    expect(await reader.get('k0-0')).toBe('new')
    expect((await reader.keys().all()).length).toBe(3002)
    await engine.close()
  })
})

describe('a replica directory after a crash', () => {
  // A classic-level whose batches start failing after `left` more of them: the process dies mid-apply.
  class DyingLevel extends ClassicLevel<Buffer, Buffer> {
    left = Infinity
    async _batch (ops: unknown, options: unknown): Promise<void> {
      if (this.left-- <= 0) throw new Error('killed')
      // @ts-expect-error not in the public types
      return super._batch(ops, options)
    }
  }

  it('status says consistent only when plain level reads a real state; recover makes it so; MirrorLevel refuses it', async () => {
    const { dir, cleanup } = tempDir()
    try {
      const path = `${dir}/replica`
      const db = new DyingLevel(path)
      const engine = new ReplicaEngine(db as never, { maxApplyBytes: 1 })
      await engine.open()
      await engine.apply({ generation: gen, from: 0, to: 1, index: 0, final: true, full: true, range: { after: null, upto: null }, ops: [put('a', 'old'), put('z', 'old')] })
      const parts = [0, 1].map((i) => ({ generation: gen, from: 1, to: 2, index: i, final: i === 1, full: false, ops: Array.from({ length: 1500 }, (_, j) => put(`k${i}-${j}`, 'new')).concat(i === 1 ? [put('a', 'new'), put('z', 'new')] : []) }))
      await engine.apply(parts[0])
      db.left = 2 // the commit record and one chunk of the apply land, then the process "dies"
      await expect(engine.apply(parts[1])).rejects.toThrow('killed')
      db.left = Infinity
      await db.close()

      // As it lies on disk: half old, half new.
      const raw = new ClassicLevel(path, { keyEncoding: 'utf8', valueEncoding: 'utf8' })
      expect(await raw.get('a')).toBe('old')
      expect(await raw.get('k0-0')).toBe('new')
      await raw.close()
      let status = await runCli(['status', path, '--json'])
      expect(status.code).toBe(0)
      expect(JSON.parse(status.stdout)).toMatchObject({ role: 'replica', consistent: false })

      // Wrapping it as a primary is refused, and leaves it as it was (and unlocked).
      const wrapped = new MirrorLevel(new ClassicLevel(path))
      const err = await wrapped.open().catch((e) => e)
      expect(err.cause?.code ?? err.code).toBe('MIRROR_IS_REPLICA')
      expect(String(err.cause?.message)).toContain('promote')
      status = await runCli(['status', path, '--json'])
      expect(JSON.parse(status.stdout)).toMatchObject({ role: 'replica', consistent: false })

      const recovered = await runCli(['recover', path])
      expect(recovered.code, recovered.stderr).toBe(0)
      expect(recovered.stdout).toContain('applied')
      status = await runCli(['status', path, '--json'])
      expect(JSON.parse(status.stdout)).toMatchObject({ role: 'replica', consistent: true, replica: { watermark: 2, staged: null } })
      const after = new ClassicLevel(path, { keyEncoding: 'utf8', valueEncoding: 'utf8' })
      expect(await after.get('a')).toBe('new')
      expect((await userData(after as never)).size).toBe(3002)
      await after.close()
      expect((await runCli(['recover', path])).stdout).toContain('nothing to recover')
    } finally {
      cleanup()
    }
  })
})
