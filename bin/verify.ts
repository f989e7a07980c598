// mirror-level verify: prove a replica equals its primary, and mend only what differs.
import { parseArgs } from 'node:util'
import { ClassicLevel } from 'classic-level'
import { LevelReplica } from '../adapters/level'
import { TcpReplica } from '../adapters/tcp'
import { MirrorLevel } from '../lib/primary/mirror-level'
import type { VerifyProgress, VerifyReport } from '../lib/replication/verifier'
import { UsageError, checkStoreDir, keyFile, readFile, withClosedStore } from './cli'
import { inspectStore } from '../lib/replica/inspect'
import { hostPort } from './remote'

export const verifyUsage = `mirror-level verify PRIMARY REPLICA [--repair] [--json]
mirror-level verify PRIMARY --remote HOST:PORT/RESOURCE --key-file FILE [--tls-ca FILE] [--repair] [--json]

Compares a primary's directory with its replica (a directory, or a resource of a mirror-level
serve), both closed: the replica is first brought to the primary's head, then range fingerprints
of both are compared, and the keys of the ranges that differ. With --repair, the differing keys
are set to the primary's values in one atomic step on the replica. Exits 0 when they are equal
(or were repaired), 1 when they differ. Over the network the key needs the write right (verify
acts as the resource's primary while it runs).`

function describe (r: VerifyReport): string {
  const d = r.differing
  const n = d.missing + d.extra + d.changed
  const head = `${r.replica} at seq ${r.seq}: ${r.entries} entries (${r.bytes} bytes) compared in ${r.ranges} ranges, ${r.roundTrips} round trips, ` +
    `${r.wire.sent + r.wire.received} bytes ${r.wire.measured ? 'on the wire' : 'exchanged (estimated)'}, ${r.ms} ms`
  if (n === 0) return `${head}\nequal${r.salvaged === true ? ' (after LevelDB\'s repair of the replica)' : ''}`
  const keys = r.keys.slice(0, 10).map((k) => JSON.stringify(k.toString('utf8'))).join(', ')
  return `${head}\n${n} keys differ: ${d.missing} missing on the replica, ${d.extra} extra, ${d.changed} changed (e.g. ${keys})` +
    (r.repaired > 0 ? `\nrepaired: ${r.repaired} keys set to the primary's values` : '\nnot repaired (run with --repair)')
}

export async function verifyCommand (argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { repair: { type: 'boolean' }, json: { type: 'boolean' }, remote: { type: 'string' }, 'key-file': { type: 'string' }, 'tls-ca': { type: 'string' }, help: { type: 'boolean' } }
  })
  if (values.help === true) return void console.log(verifyUsage)
  const remote = values.remote
  if (positionals.length !== (remote === undefined ? 2 : 1)) throw new UsageError(remote === undefined ? 'verify needs PRIMARY and REPLICA directories' : 'verify --remote needs one PRIMARY directory')
  // Refuses what is no database before anything opens it, the primary first as it is named first.
  checkStoreDir(positionals[0])
  let replica
  if (remote !== undefined) {
    const m = /^([^/]*)\/(.+)$/.exec(remote)
    if (m === null) throw new UsageError(`--remote needs HOST:PORT/RESOURCE, got '${remote}'`)
    const { host, port } = hostPort(m[1])
    replica = new TcpReplica({ host, port, resource: m[2], key: keyFile(values['key-file'], 'verify --remote'), name: remote, create: false, tls: values['tls-ca'] !== undefined ? { ca: readFile(values['tls-ca'], 'CA certificate') } : undefined })
  } else {
    checkStoreDir(positionals[1])
    replica = new LevelReplica(new ClassicLevel<string, string>(positionals[1], { createIfMissing: false }), { name: positionals[1] })
  }
  // Opening a store as MirrorLevel wraps it: a plain store (never a primary, so no replica can be
  // its copy) would come out of a failed verify as a primary.
  const { role } = await withClosedStore(positionals[0], (store) => inspectStore(store))
  if (role === 'plain') throw new Error(`${positionals[0]} is not a mirror-level primary (no MirrorLevel ever wrapped it): there is nothing its replica could be a copy of`)
  // With one of its replicas only: the log keeps what the others lack (they would otherwise catch
  // up from a snapshot, and a demoted primary could no longer name its writes).
  const db = new MirrorLevel(new ClassicLevel<string, string>(positionals[0], { createIfMissing: false }), { replicas: [replica], truncateLog: false })
  const tty = process.stderr.isTTY === true
  const onProgress = (p: VerifyProgress): void => {
    if (tty) process.stderr.write(`\r\x1b[K${p.phase}: ${p.ranges} ranges compared, ${p.differingRanges} differing, ${p.differing} keys differ${p.phase === 'done' ? '\n' : ''}`)
  }
  try {
    await db.open()
    const report = await db.verify(replica.options.name!, { repair: values.repair === true, onProgress, timeout: 60_000 })
    console.log(values.json === true ? JSON.stringify({ ...report, keys: report.keys.map((k) => k.toString('base64')) }, null, 2) : describe(report))
    const differ = report.differing.missing + report.differing.extra + report.differing.changed > 0
    if (differ && report.repaired === 0) process.exitCode = 1
  } finally {
    await db.close()
  }
}
