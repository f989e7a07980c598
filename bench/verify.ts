// Verify benchmarks: the time of a verify of two equal stores against a plain full scan of both,
// and the bytes on the wire to a `mirror-level serve` for 0, 10 and 10 000 differing keys.
// BENCH_VERIFY_MIB sets the store size (default 1024).
import { randomBytes } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { ClassicLevel } from 'classic-level'
import { MirrorLevel } from '../lib/primary/mirror-level'
import { LevelReplica } from '../adapters/level'
import { TcpReplica } from '../adapters/tcp'
import { benchDir, fmt, type Result } from './harness'
import { serve } from './remote'

const MiB = 1024 * 1024
const VALUE = 4096

async function fill (db: MirrorLevel<Buffer, Buffer>, bytes: number): Promise<number> {
  const count = Math.ceil(bytes / VALUE)
  const value = randomBytes(VALUE)
  for (let at = 0; at < count; at += 1000) {
    await db.batch(Array.from({ length: Math.min(1000, count - at) }, (_, i) => ({ type: 'put' as const, key: Buffer.from(`key-${String(at + i).padStart(10, '0')}`), value })))
  }
  await db.replicated({ timeout: 600_000 })
  return count
}

// A plain full scan of one store: every entry read, as a verify must at least do.
async function scan (path: string): Promise<number> {
  const db = new ClassicLevel<Buffer, Buffer>(path, { keyEncoding: 'buffer', valueEncoding: 'buffer' })
  let n = 0
  const it = db.iterator()
  while (true) {
    const page = await it.nextv(1000)
    if (page.length === 0) break
    n += page.length
  }
  await it.close()
  await db.close()
  return n
}

export async function verifyTime (mib = Number(process.env.BENCH_VERIFY_MIB ?? 1024)): Promise<Result> {
  const dir = benchDir('verify')
  const primary = join(dir, 'primary')
  const replica = join(dir, 'replica')
  let db = new MirrorLevel<Buffer, Buffer>(new ClassicLevel(primary), { keyEncoding: 'buffer', valueEncoding: 'buffer', replicas: [new LevelReplica(new ClassicLevel(replica), { name: 'r' })] })
  await db.open()
  const count = await fill(db, mib * MiB)
  await db.close()
  // Alternate, twice each, so that the page cache and the machine's drift hit both alike.
  const scans: number[] = []
  const verifies: number[] = []
  for (let round = 0; round < 2; round++) {
    let t = performance.now()
    // Both at once, as the verify reads them: the baseline is the cheapest way to read both.
    await Promise.all([scan(primary), scan(replica)])
    scans.push(performance.now() - t)
    db = new MirrorLevel<Buffer, Buffer>(new ClassicLevel(primary), { keyEncoding: 'buffer', valueEncoding: 'buffer', replicas: [new LevelReplica(new ClassicLevel(replica), { name: 'r' })] })
    await db.open()
    await db.replicated()
    t = performance.now()
    const report = await db.verify('r', { timeout: 600_000 })
    verifies.push(performance.now() - t)
    if (report.differing.missing + report.differing.extra + report.differing.changed !== 0) throw new Error('the stores differ')
    await db.close()
  }
  const scanned = Math.min(...scans)
  const verify = Math.min(...verifies)
  const ratio = verify / scanned
  console.log(`Verify of two equal ${mib} MiB stores (${count} entries of ${VALUE} bytes), LevelReplica on the same disk
  plain full scan of both stores, at once ${(scanned / 1000).toFixed(2)} s (best of 2)
  verify (range fingerprints)             ${(verify / 1000).toFixed(2)} s (best of 2)
  ratio ${ratio.toFixed(2)}x (target <= 1.5x)\n`)
  return { title: `verify of two equal ${mib} MiB stores / a full scan of both`, ratio, target: '<= 1.5x' }
}

export async function verifyWire (mib = Number(process.env.BENCH_VERIFY_MIB ?? 1024)): Promise<Result[]> {
  const dir = benchDir('verify-wire')
  const keyFile = join(dir, 'key')
  writeFileSync(keyFile, randomBytes(32).toString('hex'))
  const server = await serve(join(dir, 'replicas'), keyFile)
  const key = readFileSync(keyFile, 'utf8')
  const inner = new ClassicLevel<Buffer, Buffer>(join(dir, 'primary'), { keyEncoding: 'buffer', valueEncoding: 'buffer' })
  const db = new MirrorLevel<Buffer, Buffer>(inner, { keyEncoding: 'buffer', valueEncoding: 'buffer', replicas: [new TcpReplica({ port: server.port, resource: 'app', key, name: 'remote' })] })
  await db.open()
  const count = await fill(db, mib * MiB)
  const out: Result[] = []
  const lines: string[] = []
  let changed = 0
  for (const differing of [0, 10, 10_000]) {
    // Written on the primary's inner db directly, in no log record: only a verify sees them.
    // (A user never does this; it is what verify exists to find.)
    // Fresh keys each round: the previous round's were repaired.
    for (let i = 0; i < differing; i++, changed++) {
      const at = Math.floor((changed * 7919) % count)
      await inner.put(Buffer.from(`key-${String(at).padStart(10, '0')}`), randomBytes(VALUE))
    }
    // Measured without repair (the repaired values would cross the wire too), then repaired for the next round.
    const report = await db.verify('remote', { timeout: 600_000 })
    await db.verify('remote', { timeout: 600_000, repair: true })
    const found = report.differing.missing + report.differing.extra + report.differing.changed
    const wire = report.wire.sent + report.wire.received
    lines.push(`  ${String(differing).padStart(6)} differing keys: found ${found}, ${fmt(wire)} bytes on the wire (${(100 * wire / report.bytes).toFixed(4)}% of ${fmt(report.bytes)}), ${report.roundTrips} round trips, ${(report.ms / 1000).toFixed(2)} s`)
    out.push({ title: `verify over TCP, ${differing} differing keys: bytes on the wire / data`, ratio: wire / report.bytes, target: differing === 0 ? '< 0.01' : 'grows with k log n' })
  }
  console.log(`Verify over loopback TCP of a ${mib} MiB store (${count} entries), with keys changed behind the replica's back\n${lines.join('\n')}\n`)
  await db.close()
  server.stop()
  return out
}
