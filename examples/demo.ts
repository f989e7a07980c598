// npm run demo: a primary and a live replica in classic-level directories under a temp folder.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ClassicLevel } from 'classic-level'
import { BlockDevice, LevelReplica, MirrorLevel } from '../index'

const root = mkdtempSync(join(tmpdir(), 'mirror-level-demo-'))
const appDir = join(root, 'app-db')
const backupDir = join(root, 'backup-db')
console.log(`mirror-level demo in ${root}\n`)

try {
  // 1. An app's existing store, with data in it before mirror-level ever saw it.
  const before = new ClassicLevel<string, any>(appDir, { valueEncoding: 'json' })
  await before.batch(Array.from({ length: 5000 }, (_, i) => ({ type: 'put' as const, key: `old:${String(i).padStart(5, '0')}`, value: { i } })))
  await before.close()
  console.log('1. an app store with 5000 entries, wrapped; a replica in a second directory')

  const db = new MirrorLevel<string, any>(new ClassicLevel(appDir), {
    valueEncoding: 'json',
    replicas: [new LevelReplica(new ClassicLevel(backupDir), { name: 'backup', maxDelay: 50 })]
  })
  db.on('replica-up', (e) => console.log(`   replica '${e.name}' up at watermark ${e.watermark}`))
  let batches = 0
  let shipped = 0
  db.on('replica-batch', (e) => { batches++; shipped += e.ops })
  await db.open()
  await db.replicated()
  console.log(`   initial copy done: ${shipped} entries in ${batches} batch(es); replica consistent: ${db.mirrorStatus().replicas[0].consistent}`)

  // 2. Live writes: the app never waits for the replica (async mode).
  console.log('\n2. 20 000 writes while the replica follows')
  batches = 0
  shipped = 0
  const t0 = performance.now()
  for (let round = 0; round < 20; round++) {
    await Promise.all(Array.from({ length: 1000 }, (_, i) => db.put(`event:${round}:${i % 300}`, { round, i })))
    if (round % 5 === 4) {
      const r = db.mirrorStatus().replicas[0]
      const shipping = r.batch === null ? '' : `, shipping ${r.batch.from} -> ${r.batch.to} (${r.batch.ops} ops in ${r.batch.parts} part(s) so far)`
      console.log(`   after ${(round + 1) * 1000} writes: head ${r.head}, replica at ${r.watermark}, lag ${r.lag.seqs} seqs / ${r.lag.bytes} bytes / ${r.lag.ms} ms, state ${r.state}${shipping}`)
    }
  }
  const ms = performance.now() - t0
  await db.replicated()
  console.log(`   writes took ${ms.toFixed(0)} ms; replicated() after ${(performance.now() - t0 - ms).toFixed(0)} ms more`)
  console.log(`   the replica received ${batches} batches with ${shipped} ops for 20 000 writes (consecutive writes combined)`)

  // 3. A block device in a sublevel of the same store is mirrored the same way.
  console.log('\n3. a 1 MiB BlockDevice in a sublevel')
  const disk = new BlockDevice(db.sublevel('disk0'), { size: 1024 * 1024, chunkSize: 4096 })
  await disk.open()
  await disk.write(4000, Buffer.alloc(10_000, 0xab)) // unaligned, spans 4 chunks, one atomic batch
  await disk.trim(8192, 4096) // a whole chunk back to a hole
  await disk.flush()
  await db.replicated()
  console.log(`   written, trimmed and replicated; lag: ${JSON.stringify(db.mirrorStatus().replicas[0].lag)}`)
  await db.close()

  // 4. The backup is a plain LevelDB directory: plain classic-level reads it. (Keys from 0xFF on
  // hold mirror-level's own log and state: RESERVED_RANGE.)
  console.log('\n4. both directories opened with plain classic-level')
  const raw = { keyEncoding: 'buffer', valueEncoding: 'buffer' } as const
  const app = new ClassicLevel<Buffer, Buffer>(appDir, raw)
  const backup = new ClassicLevel<Buffer, Buffer>(backupDir, raw)
  const dump = async (d: ClassicLevel<Buffer, Buffer>) => (await d.iterator({ lt: Buffer.from([0xff]) }).all()).map(([k, v]) => `${k.toString('hex')}=${v.toString('hex')}`)
  const [a, b] = [await dump(app), await dump(backup)]
  console.log(`   app: ${a.length} entries, backup: ${b.length} entries, identical: ${a.join() === b.join()}`)
  console.log(`   backup 'event:19:7' = ${(await backup.get(Buffer.from('event:19:7')))?.toString()}`)
  await app.close()
  await backup.close()
  console.log('\ndone')
} finally {
  rmSync(root, { recursive: true, force: true })
}
