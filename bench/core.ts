// Core write benchmarks: MirrorLevel over classic-level against bare classic-level, same run.
// Every round writes into fresh databases, so both sides see the same LevelDB state.
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { ClassicLevel } from 'classic-level'
import { MirrorLevel } from '../lib/primary/mirror-level'
import { BlockDevice } from '../lib/device/block-device'
import { captureOps } from '../lib/primary/capture'
import { alternate, benchDir, randomKey, report, timed, type Measured, type Result } from './harness'

type Db = ClassicLevel<Buffer, Buffer> | MirrorLevel<Buffer, Buffer>
const BUF = { keyEncoding: 'buffer', valueEncoding: 'buffer' } as const

// Opens a fresh bare or mirrored classic-level db for one round, runs the timed part, closes it.
function side (name: string, mirrored: boolean, work: (db: Db) => Promise<number>) {
  const dir = benchDir(name)
  return {
    name,
    round: async (r: number): Promise<Measured> => {
      const path = join(dir, String(r))
      const db: Db = mirrored ? new MirrorLevel<Buffer, Buffer>(new ClassicLevel(path), BUF) : new ClassicLevel<Buffer, Buffer>(path, BUF)
      await db.open()
      const m = await timed(() => work(db))
      await db.close()
      return m
    }
  }
}

export async function batches4k (rounds = 12, batches = 200): Promise<Result> {
  const value = randomBytes(4096)
  const work = async (db: Db) => {
    for (let b = 0; b < batches; b++) {
      await db.batch(Array.from({ length: 100 }, () => ({ type: 'put' as const, key: randomKey(), value })))
    }
    return batches * 100
  }
  const rates = await alternate([side('bare', false, work), side('mirror', true, work)], rounds)
  const [a, m] = rates
  return report('4 KiB values, batches of 100, one batch at a time (async)', 'puts', ['bare classic-level', a], ['MirrorLevel(classic-level)', m], '>= 0.95x', rates.ratios)
}

export async function concurrentPuts (): Promise<Result> {
  return await concurrentSized(100, '>= 1.2x')
}

/** Puts issued all at once and awaited together (`Promise.all`), as a bulk load might be written. */
export async function burstPuts (rounds = 4, puts = 200_000): Promise<Result> {
  const value = randomBytes(100)
  const work = async (db: Db) => {
    await Promise.all(Array.from({ length: puts }, async () => await db.put(randomKey(), value)))
    return puts
  }
  const rates = await alternate([side('bare', false, work), side('mirror', true, work)], rounds)
  const [a, m] = rates
  return report(`${puts} 100-byte puts issued at once`, 'puts', ['bare classic-level', a], ['MirrorLevel(classic-level)', m], 'none; for reference', rates.ratios)
}

/** Puts one at a time, each awaited before the next: how most apps write. */
export async function awaitedPuts (size: number, rounds = 8, puts = 20_000): Promise<Result> {
  const value = randomBytes(size)
  const work = async (db: Db) => {
    for (let i = 0; i < puts; i++) await db.put(randomKey(), value)
    return puts
  }
  const rates = await alternate([side('bare', false, work), side('mirror', true, work)], rounds)
  const [a, m] = rates
  return report(`${size}-byte puts, one at a time, each awaited`, 'puts', ['bare classic-level', a], ['MirrorLevel(classic-level)', m], '>= 0.9x', rates.ratios)
}

/** `concurrency` writers putting `size`-byte values, each awaiting its own put. */
export async function concurrentSized (size: number, target = 'none; for reference', rounds = 8, puts = 100_000, concurrency = 64): Promise<Result> {
  const value = randomBytes(size)
  const work = async (db: Db) => {
    let left = puts
    const worker = async () => { while (left-- > 0) await db.put(randomKey(), value) }
    await Promise.all(Array.from({ length: concurrency }, worker))
    return puts
  }
  const rates = await alternate([side('bare', false, work), side('mirror', true, work)], rounds)
  const [a, m] = rates
  return report(`${concurrency} concurrent ${size}-byte puts`, 'puts', ['bare classic-level', a], ['MirrorLevel(classic-level)', m], target, rates.ratios)
}

/**
 * What capturing a write's key and value at call time costs (MirrorLevel copies both, so that a
 * caller may reuse its Buffers at once): the copies alone, timed against the writes they belong to.
 */
export async function captureCost (rounds = 8, puts = 100_000): Promise<Result[]> {
  const out: Result[] = []
  for (const size of [100, 4096]) {
    const key = randomKey()
    const value = randomBytes(size)
    // As MirrorLevel's batch() copies them: a batch of 100 at a time.
    const batch = Array.from({ length: 100 }, () => ({ type: 'put' as const, key, value }))
    let sink = 0
    const t0 = process.hrtime.bigint()
    for (let i = 0; i < (puts * rounds) / 100; i++) sink += captureOps(batch).length
    const copyNs = Number(process.hrtime.bigint() - t0) / (puts * rounds)
    if (sink === 0) throw new Error('unreachable')
    const work = async (db: Db) => {
      for (let b = 0; b < puts / 100; b++) await db.batch(Array.from({ length: 100 }, () => ({ type: 'put' as const, key: randomKey(), value })))
      return puts
    }
    const [, m] = await alternate([side('bare', false, work), side('mirror', true, work)], 2)
    const writeNs = 1e9 / m
    const share = copyNs / writeNs
    console.log(`Capturing a ${size}-byte value and its key at call time: ${copyNs.toFixed(0)} ns per write, ${(100 * share).toFixed(1)}% of a MirrorLevel write in batches of 100 (${writeNs.toFixed(0)} ns)
`)
    out.push({ title: `capture of a ${size}-byte value and its key: share of a write`, ratio: share, target: 'none; for reference' })
  }
  return out
}

export async function deviceWrites (rounds = 12, writes = 5000, size = 256 * 1024 * 1024): Promise<Result> {
  const chunks = size / 4096
  const data = randomBytes(4096)
  const key = (i: number) => { const k = Buffer.alloc(9); k[0] = 0x63; k.writeUIntBE(i, 3, 6); return k }
  const bare = async (db: Db) => {
    for (let w = 0; w < writes; w++) await db.put(key(Math.floor(Math.random() * chunks)), data)
    return writes
  }
  const device = async (db: Db) => {
    const dev = new BlockDevice(db, { size, chunkSize: 4096 })
    await dev.open()
    for (let w = 0; w < writes; w++) await dev.write(Math.floor(Math.random() * chunks) * 4096, data)
    await dev.close()
    return writes
  }
  const rates = await alternate([side('bare', false, bare), side('device', true, device)], rounds)
  const [a, m] = rates
  return report('BlockDevice 4 KiB aligned random writes, one at a time', 'writes', ['raw classic-level puts of the chunks', a], ['BlockDevice on MirrorLevel(classic-level)', m], 'none; for reference', rates.ratios)
}
