// npm run bench [-- name ...]: runs the benchmarks (all by default) and prints ratios against the
// bare inner db measured in the same run.
import { cpus } from 'node:os'
import { awaitedPuts, batches4k, burstPuts, captureCost, concurrentPuts, concurrentSized, deviceWrites } from './core'
import { liveMirroring } from './live'
import { replicaAway } from './away'
import { catchUp, coalescingMatrix, withReplica } from './replication'
import { lag, tcpCatchUp } from './remote'
import { verifyTime, verifyWire } from './verify'
import { rejoinBytes, restoreRate } from './recovery'
import type { Result } from './harness'

const all: Record<string, () => Promise<Result | Result[]>> = {
  awaited: async () => [await awaitedPuts(100), await awaitedPuts(1024)],
  batches: () => batches4k(),
  burst: () => burstPuts(),
  capture: () => captureCost(),
  concurrent: () => concurrentPuts(),
  'concurrent-1k': () => concurrentSized(1024),
  device: () => deviceWrites(),
  coalescing: () => coalescingMatrix(),
  catchup: () => catchUp(),
  live: () => withReplica(),
  'live-cpu': () => liveMirroring(),
  away: () => replicaAway(),
  lag: () => lag(),
  'tcp-catchup': () => tcpCatchUp(),
  verify: () => verifyTime(),
  restore: () => restoreRate(),
  rejoin: () => rejoinBytes(),
  'verify-wire': () => verifyWire()
}

const chosen = process.argv.slice(2).length > 0 ? process.argv.slice(2) : Object.keys(all)
for (const name of chosen) {
  if (!(name in all)) throw new Error(`unknown benchmark '${name}'; choose from ${Object.keys(all).join(', ')}`)
}
console.log(`mirror-level benchmarks: node ${process.version}, ${cpus().length} x ${cpus()[0]?.model ?? 'cpu'}\n`)
const results: Result[] = []
for (const name of chosen) results.push(...[await all[name]()].flat())
console.log('summary')
for (const r of results) console.log(`  ${r.ratio.toFixed(2).padStart(7)}  ${r.title} (target ${r.target})`)
