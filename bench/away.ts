// Writes while a replica is away: what the primary pays for a replica it cannot reach, once more
// commits have gone by than the lag history keeps (100 000). Awaited 100-byte puts, each its own
// commit; the first 100 000 of a round are not timed.
import { randomBytes } from 'node:crypto'
import { createServer, type AddressInfo } from 'node:net'
import { join } from 'node:path'
import { ClassicLevel } from 'classic-level'
import { MirrorLevel } from '../lib/primary/mirror-level'
import { TcpReplica } from '../adapters/tcp'
import { benchDir, fmt, rotate, timedCpu, type MeasuredCpu, type Result } from './harness'

const WARM = 100_000
const TIMED = 30_000

// A port that was free a moment ago: connecting to it is refused.
async function closedPort (): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  await new Promise((resolve) => server.close(resolve))
  return port
}

export async function replicaAway (rounds = 2): Promise<Result[]> {
  const dir = benchDir('away')
  const port = await closedPort()
  const ages: string[] = []
  const keys = Array.from({ length: 5000 }, (_, i) => Buffer.from(`key-${String(i).padStart(6, '0')}`))
  const value = randomBytes(100)
  const side = (name: string, away: boolean) => ({
    name,
    round: async (r: number): Promise<MeasuredCpu> => {
      const replicas = away ? [new TcpReplica({ port, resource: 'gone', key: 'k'.repeat(32) })] : []
      const db = new MirrorLevel<Buffer, Buffer>(new ClassicLevel(join(dir, `${name}-${r}`)), { keyEncoding: 'buffer', valueEncoding: 'buffer', replicas, closeTimeout: 1000 })
      await db.open()
      const began = Date.now()
      for (let i = 0; i < WARM; i++) await db.put(keys[i % keys.length], value)
      const m = await timedCpu(async () => {
        for (let i = 0; i < TIMED; i++) await db.put(keys[i % keys.length], value)
        return TIMED
      })
      if (away) {
        const { lag } = db.mirrorStatus().replicas[0]
        ages.push(`lag ${lag.seqs} seqs, ${(lag.ms / 1000).toFixed(1)} s (away for ${((Date.now() - began) / 1000).toFixed(1)} s), ${(lag.bytes / 1e6).toFixed(1)} MB`)
      }
      await db.close()
      return m
    }
  })
  const [alone, away] = await rotate([side('alone', false), side('away', true)], rounds)
  const us = (x: number): string => `${(x * 1e6).toFixed(1)} µs`
  console.log(`Writes while a replica is away (100-byte puts, each awaited, after ${WARM} of them; ${rounds} rounds each)
                                   puts/s    primary CPU per write
  MirrorLevel, no replica        ${fmt(alone.rate).padStart(8)}    ${us(alone.cpuPerUnit)}
  + an unreachable TcpReplica    ${fmt(away.rate).padStart(8)}    ${us(away.cpuPerUnit)} (${(away.cpuPerUnit / alone.cpuPerUnit).toFixed(2)}x)
  throughput ratio ${(away.rate / alone.rate).toFixed(2)}x
  status at the end of each round: ${ages.join('; ')}\n`)
  return [{ title: 'writes while a replica is away: throughput / no replica', ratio: away.rate / alone.rate, target: 'none; for reference' }]
}
