// Remote replica benchmarks: lag over loopback at half the maximum write rate, and catch-up over
// TCP against catch-up through LevelReplica.
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { ClassicLevel } from 'classic-level'
import { MirrorLevel } from '../lib/primary/mirror-level'
import { TcpReplica } from '../adapters/tcp'
import { benchDir, fmt, report, type Result } from './harness'
import { child, type ChildReport } from './replication'

const cli = fileURLToPath(new URL('../bin/mirror-level.ts', import.meta.url))

export function serve (dir: string, keyFile: string): Promise<{ port: number, stop: () => void }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['--import', 'tsx', cli, 'serve', '--dir', dir, '--port', '0', '--key-file', keyFile, '--quiet'], { stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    p.stdout.on('data', (d) => {
      out += d
      const m = /listening on [^:]+:(\d+)/.exec(out)
      if (m !== null) resolve({ port: Number(m[1]), stop: () => p.kill('SIGTERM') })
    })
    p.on('error', reject)
  })
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

function percentile (sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]
}

/**
 * A primary on classic-level mirroring to `mirror-level serve` (another process) over loopback.
 * First the maximum rate of one-at-a-time 1 KiB puts; then puts at half that rate for `seconds`,
 * each timed from its local commit to the replica's acknowledgement of a batch that holds it.
 */
export async function lag (seconds = 10, maxDelay = 50): Promise<Result> {
  const dir = benchDir('lag')
  const keyFile = join(dir, 'key')
  writeFileSync(keyFile, randomBytes(32).toString('hex'))
  const server = await serve(join(dir, 'replicas'), keyFile)
  const db = new MirrorLevel<Buffer, Buffer>(new ClassicLevel(join(dir, 'primary')), {
    keyEncoding: 'buffer',
    valueEncoding: 'buffer',
    replicas: [new TcpReplica({ port: server.port, resource: 'app', key: (await import('node:fs')).readFileSync(keyFile, 'utf8'), maxDelay })]
  })
  await db.open()
  await db.replicated()
  const value = randomBytes(1024)
  const key = (): Buffer => randomBytes(16)

  // Maximum rate, one write at a time, replica attached.
  const t0 = performance.now()
  let max = 0
  while (performance.now() - t0 < 2000) {
    await db.put(key(), value)
    max++
  }
  const maxRate = max / 2
  await db.replicated()

  // Half that rate, paced; lag = replica acknowledgement time - local commit time.
  const rate = maxRate / 2
  const commits: Array<[number, number]> = [] // [seq, committed at]
  const lags: number[] = []
  let next = 0
  db.on('replica-batch', (e: { to: number }) => {
    const now = performance.now()
    while (next < commits.length && commits[next][0] <= e.to) lags.push(now - commits[next++][1])
  })
  const start = performance.now()
  let issued = 0
  while (performance.now() - start < seconds * 1000) {
    const due = Math.floor(((performance.now() - start) / 1000) * rate)
    const writes: Array<Promise<void>> = []
    while (issued < due) {
      issued++
      writes.push(db.put(key(), value).then(() => { commits.push([db.head!.seq, performance.now()]) }))
    }
    await Promise.all(writes)
    await sleep(1)
  }
  await db.replicated()
  await db.close()
  server.stop()
  lags.sort((a, b) => a - b)
  const p50 = percentile(lags, 50)
  const p99 = percentile(lags, 99)
  console.log(`Lag over loopback to mirror-level serve (another process), 1 KiB puts at ${fmt(rate)}/s (half the max ${fmt(maxRate)}/s), window ${maxDelay} ms
  ${lags.length} writes: p50 ${p50.toFixed(1)} ms, p99 ${p99.toFixed(1)} ms, max ${lags[lags.length - 1].toFixed(1)} ms
  p99 / (window + 20 ms) = ${(p99 / (maxDelay + 20)).toFixed(2)} (target <= 1)\n`)
  return { title: `lag p99 over loopback in ms at half the max write rate, ${maxDelay} ms window (p50 ${p50.toFixed(1)})`, ratio: p99, target: `<= ${maxDelay + 20}` }
}

/** Catch-up of a 256 MiB backlog over TCP (a server in the same process) against LevelReplica. */
export async function tcpCatchUp (mib = 256, repeats = 3): Promise<Result> {
  const dir = benchDir('tcp-catchup')
  const level: ChildReport[] = []
  const tcp: ChildReport[] = []
  for (let i = 0; i < repeats; i++) {
    const order: Array<[string, ChildReport[]]> = i % 2 === 0 ? [['mirror', level], ['tcp', tcp]] : [['tcp', tcp], ['mirror', level]]
    for (const [kind, into] of order) into.push(await child([kind, join(dir, `${kind}-${i}`), String(mib)]))
  }
  const rate = (runs: ChildReport[]): number => runs.reduce((a, r) => a + r.bytes, 0) / runs.reduce((a, r) => a + r.seconds, 0)
  return report(`Catch-up after ${mib} MiB of chunk writes: TCP (loopback) against LevelReplica (${repeats} runs each)`, 'B', ['LevelReplica', rate(level)], ['TcpReplica to a MirrorServer over loopback', rate(tcp)], 'none; for reference')
}
