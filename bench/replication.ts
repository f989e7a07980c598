// Replication benchmarks: coalescing, catch-up and write throughput with a live replica.
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { ClassicLevel } from 'classic-level'
import { MirrorLevel } from '../lib/primary/mirror-level'
import { BlockDevice } from '../lib/device/block-device'
import { LevelReplica } from '../adapters/level'
import { alternate, benchDir, fmt, randomKey, report, timed, type Measured, type Result } from './harness'
import { zipf } from './zipf'

/**
 * Zipf-skewed 4 KiB chunk writes on a 256 MiB device at full speed, mirrored to a classic-level
 * replica: bytes shipped over bytes written. Shipping every write, as HAST's async mode and DRBD's
 * protocol A do, ships exactly the bytes written (1.0).
 */
export async function coalescing (writes = 30_000, s = 1.1, maxDelay = 50): Promise<Result> {
  const dir = benchDir('coalesce')
  const db = new MirrorLevel(new ClassicLevel(join(dir, 'primary')), {
    replicas: [new LevelReplica(new ClassicLevel(join(dir, 'replica')), { maxDelay })]
  })
  const dev = new BlockDevice(db, { size: 256 * 1024 * 1024, chunkSize: 4096 })
  await dev.open()
  await db.replicated()
  let shipped = 0
  let batches = 0
  db.on('replica-batch', (e: { bytes: number }) => { shipped += e.bytes; batches++ })
  const next = zipf(65536, s)
  const data = randomBytes(4096)
  let written = 0
  const t0 = performance.now()
  for (let i = 0; i < writes; i++) {
    await dev.write(next() * 4096, data)
    written += 4096 + 9 // value and key, as the replica counts them
  }
  const seconds = (performance.now() - t0) / 1000
  await db.replicated()
  await db.close()
  const ratio = shipped / written
  console.log(`Coalescing: ${writes} Zipf(${s}) 4 KiB chunk writes over 64 Ki chunks at ${fmt(writes / seconds)} writes/s, window ${maxDelay} ms
  shipping every write (HAST async, DRBD protocol A)  ${fmt(written)} bytes  1.00
  MirrorLevel + LevelReplica                          ${fmt(shipped)} bytes  ${ratio.toFixed(2)}  (${batches} batches)
  ratio ${ratio.toFixed(2)} (target <= 0.3)\n`)
  return { title: `coalescing: bytes shipped / bytes written, Zipf(${s}), ${maxDelay} ms window`, ratio, target: '<= 0.3' }
}

/** Coalescing over a few skews and windows: the ratio is the share of distinct chunks per window. */
export async function coalescingMatrix (): Promise<Result[]> {
  const out: Result[] = []
  for (const [s, window] of [[1.1, 50], [1.1, 1000], [1.3, 50]]) out.push(await coalescing(30_000, s, window))
  return out
}

/** Runs bench/catchup-child.ts in its own process (so its peak RSS is its own) and parses its report. */
export interface ChildReport { bytes: number, seconds: number, rssMiB: number, baseMiB: number, anonMiB: number, baseAnonMiB: number, fileMiB: number }

export function child (args: string[]): Promise<ChildReport> {
  const file = fileURLToPath(new URL('./catchup-child.ts', import.meta.url))
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['--expose-gc', '--import', 'tsx', file, ...args], { stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    p.stdout.on('data', (d) => { out += d })
    p.on('error', reject)
    p.on('close', (code) => {
      const line = out.trim().split('\n').pop() ?? ''
      if (code !== 0) return reject(new Error(`catch-up child failed (${code}): ${out}`))
      resolve(JSON.parse(line))
    })
  })
}

/**
 * A synced replica offline while `mib` MiB of chunk writes land, then back: its catch-up rate (a
 * backlog shipped from the log in consistent steps) against a plain copy of a classic-level
 * snapshot into a fresh directory, and its peak RSS; and the same store as a new replica's first
 * (full) copy.
 */
export async function catchUp (mib = 256, repeats = 3): Promise<Result[]> {
  const dir = benchDir('catchup')
  const runs: Record<'mirror' | 'first' | 'plain', ChildReport[]> = { mirror: [], first: [], plain: [] }
  const kinds = ['mirror', 'first', 'plain'] as const
  // Rotated, each run in a fresh process and directory: LevelDB's compactions after the write
  // phase and the page cache make single runs vary by a third.
  for (let i = 0; i < repeats; i++) {
    for (let k = 0; k < kinds.length; k++) {
      const kind = kinds[(i + k) % kinds.length]
      runs[kind].push(await child([kind, join(dir, `${kind}-${i}`), String(mib)]))
    }
  }
  const rate = (r: ChildReport[]): number => r.reduce((a, x) => a + x.bytes, 0) / r.reduce((a, x) => a + x.seconds, 0)
  const plain: [string, number] = ['plain snapshot copy, classic-level to classic-level', rate(runs.plain)]
  const r = report(`Catch-up of a synced replica after ${mib} MiB of 4 KiB chunk writes while it was offline (${repeats} runs each)`, 'B', plain, ['LevelReplica catch-up', rate(runs.mirror)], '>= 0.9x')
  const f = report(`First copy of the same ${mib} MiB store to a new replica (${repeats} runs each)`, 'B', plain, ['LevelReplica first copy', rate(runs.first)], 'none; for reference')
  const worst = (x: ChildReport[]): ChildReport => x.reduce((a, b) => b.anonMiB > a.anonMiB ? b : a)
  const mem = (c: ChildReport): string => `${c.rssMiB.toFixed(0)} MiB (anonymous ${c.anonMiB.toFixed(0)}, file-backed ${c.fileMiB.toFixed(0)}; ${c.baseMiB.toFixed(0)} before it, ${c.baseAnonMiB.toFixed(0)} of it anonymous)`
  console.log(`  peak RSS, catch-up:   ${mem(worst(runs.mirror))}\n  peak RSS, first copy: ${mem(worst(runs.first))}\n  peak RSS, plain copy: ${mem(worst(runs.plain))}\n  (target <= 256 MiB; file-backed pages are LevelDB's mmap'd tables: page cache the kernel can drop)\n`)
  return [r, f,
    { title: `catch-up peak anonymous RSS in MiB, ${mib} MiB backlog`, ratio: worst(runs.mirror).anonMiB, target: '<= 256' },
    { title: `first copy peak anonymous RSS in MiB, ${mib} MiB store`, ratio: worst(runs.first).anonMiB, target: 'none; for reference' }]
}

type Db = ClassicLevel<Buffer, Buffer> | MirrorLevel<Buffer, Buffer>
const BUF = { keyEncoding: 'buffer', valueEncoding: 'buffer' } as const

/** 4 KiB batches of 100 and 64 concurrent puts, with a live LevelReplica against without one. */
export async function withReplica (rounds = 8): Promise<Result[]> {
  const value4k = randomBytes(4096)
  const value100 = randomBytes(100)
  const workloads: Array<[string, (db: Db) => Promise<number>]> = [
    ['4 KiB values, batches of 100', async (db) => {
      for (let b = 0; b < 200; b++) await db.batch(Array.from({ length: 100 }, () => ({ type: 'put' as const, key: randomKey(), value: value4k })))
      return 20_000
    }],
    ['64 concurrent 100-byte puts', async (db) => {
      let left = 20_000
      await Promise.all(Array.from({ length: 64 }, async () => { while (left-- > 0) await db.put(randomKey(), value100) }))
      return 20_000
    }]
  ]
  const results: Result[] = []
  for (const [title, work] of workloads) {
    for (const untilReplicated of [false, true]) {
      const dir = benchDir('live')
      const side = (name: string, replica: boolean) => ({
        name,
        round: async (r: number): Promise<Measured> => {
          const path = join(dir, `${name}-${r}`)
          const db = new MirrorLevel<Buffer, Buffer>(new ClassicLevel(path), {
            ...BUF,
            replicas: replica ? [new LevelReplica(new ClassicLevel(`${path}-replica`))] : []
          })
          await db.open()
          if (replica) await db.replicated()
          const m = await timed(async () => {
            const n = await work(db)
            if (replica && untilReplicated) await db.replicated()
            return n
          })
          await db.close()
          return m
        }
      })
      const rates = await alternate([side('alone', false), side('replica', true)], rounds)
      const [a, b] = rates
      const how = untilReplicated ? 'timed until the replica holds every write' : 'timed until the writes resolve (async mode)'
      results.push(report(`${title}, with a live LevelReplica, ${how}`, 'puts', ['MirrorLevel without replica', a], ['MirrorLevel + LevelReplica (classic-level)', b], 'none; for reference', rates.ratios))
    }
  }
  return results
}
