// Live mirroring: what a replica that keeps up costs the primary. MirrorLevel without replicas,
// with a LevelReplica (another classic-level directory in this process), and with a TcpReplica to
// `mirror-level serve` in another process, each round on fresh directories, rotated. The primary's
// CPU time per write is the stable measure on a shared machine (with TcpReplica the replica's own
// work is in the server's process); throughput and the time until the replica holds every write
// come with it.
import { randomBytes } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { ClassicLevel } from 'classic-level'
import { MirrorLevel } from '../lib/primary/mirror-level'
import { LevelReplica } from '../adapters/level'
import { TcpReplica } from '../adapters/tcp'
import type { ReplicaAdapter } from '../lib/adapter'
import { benchDir, cpuRatios, fmt, median, rotate, spread, timedCpu, type MeasuredCpu, type Result } from './harness'
import { serve } from './remote'

type Work = (db: MirrorLevel<Buffer, Buffer>, keys: Buffer[], writes: number) => Promise<number>

// Writes of 1 KiB over 5 000 keys, as a busy app would make them; a round takes about a second
// either way (fewer rounds, or shorter ones, moved the CPU ratio by +-0.15 between runs). The CPU
// ratio judged is the median of the rounds' own ratios, each from sides that ran next to each
// other: one round slowed by the machine moves it less than it moves the totals.
const value = randomBytes(1024)
const workloads: Array<[string, number, Work]> = [
  ['1 KiB puts, one at a time, each awaited', 20_000, async (db, keys, writes) => {
    for (let i = 0; i < writes; i++) await db.put(keys[i % keys.length], value)
    return writes
  }],
  ['64 concurrent 1 KiB puts', 100_000, async (db, keys, writes) => {
    let next = 0
    await Promise.all(Array.from({ length: 64 }, async () => { while (next < writes) await db.put(keys[next++ % keys.length], value) }))
    return writes
  }]
]

export async function liveMirroring (rounds = 12): Promise<Result[]> {
  const dir = benchDir('live-cpu')
  const keyFile = join(dir, 'key')
  writeFileSync(keyFile, randomBytes(32).toString('hex'))
  const server = await serve(join(dir, 'replicas'), keyFile)
  const key = readFileSync(keyFile, 'utf8')
  const keys = Array.from({ length: 5000 }, (_, i) => Buffer.from(`key-${String(i).padStart(6, '0')}`))
  const results: Result[] = []
  try {
    for (const [title, writes, work] of workloads) {
      const untilHeld: number[][] = [[], [], []]
      const side = (i: number, name: string, replica: (path: string, r: number) => ReplicaAdapter | null) => ({
        name,
        round: async (r: number): Promise<MeasuredCpu> => {
          const path = join(dir, `${name}-${title.length}-${r}`)
          const adapter = replica(path, r)
          const db = new MirrorLevel<Buffer, Buffer>(new ClassicLevel(path), { keyEncoding: 'buffer', valueEncoding: 'buffer', replicas: adapter === null ? [] : [adapter] })
          await db.open()
          if (adapter !== null) await db.replicated()
          const m = await timedCpu(() => work(db, keys, writes))
          const t = performance.now()
          if (adapter !== null) await db.replicated({ timeout: 120_000 })
          untilHeld[i].push(m.seconds + (performance.now() - t) / 1000)
          await db.close()
          return m
        }
      })
      const [alone, level, tcp] = await rotate([
        side(0, 'alone', () => null),
        side(1, 'level', (path) => new LevelReplica(new ClassicLevel(`${path}-replica`))),
        side(2, 'tcp', (path, r) => new TcpReplica({ port: server.port, resource: `r-${title.length}-${r}`, key }))
      ], rounds)
      const held = (i: number): number => writes * untilHeld[i].length / untilHeld[i].reduce((a, b) => a + b, 0)
      const us = (x: number): string => `${(x * 1e6).toFixed(1)} µs`
      const levelCpu = cpuRatios(alone, level)
      const tcpCpu = cpuRatios(alone, tcp)
      console.log(`Live mirroring, ${title} (${writes} writes over ${keys.length} keys, ${rounds} rounds each)
                                   puts/s    replica holds all   primary CPU per write
  MirrorLevel, no replica        ${fmt(alone.rate).padStart(8)}                      ${us(alone.cpuPerUnit)}
  + LevelReplica (same process)  ${fmt(level.rate).padStart(8)}    ${fmt(held(1)).padStart(8)} puts/s      ${us(level.cpuPerUnit)} (${(level.cpuPerUnit / alone.cpuPerUnit).toFixed(2)}x; ${spread(levelCpu)}; includes the replica's own work)
  + TcpReplica (serve process)   ${fmt(tcp.rate).padStart(8)}    ${fmt(held(2)).padStart(8)} puts/s      ${us(tcp.cpuPerUnit)} (${(tcp.cpuPerUnit / alone.cpuPerUnit).toFixed(2)}x; ${spread(tcpCpu)}; target: median <= 1.25x)
  throughput ratios: LevelReplica ${(level.rate / alone.rate).toFixed(2)}x, TcpReplica ${(tcp.rate / alone.rate).toFixed(2)}x\n`)
      results.push({ title: `live TcpReplica, ${title}: primary CPU per write / no replica, median of ${rounds} rounds`, ratio: median(tcpCpu), target: '<= 1.25x' })
      results.push({ title: `live TcpReplica, ${title}: throughput / no replica`, ratio: tcp.rate / alone.rate, target: 'none; for reference' })
      results.push({ title: `live LevelReplica, ${title}: throughput / no replica`, ratio: level.rate / alone.rate, target: 'none; for reference' })
    }
  } finally {
    server.stop()
  }
  return results
}
