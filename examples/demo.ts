// npm run demo: MirrorLevel and BlockDevice on classic-level directories under a temp folder.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ClassicLevel } from 'classic-level'
import { BlockDevice, MirrorLevel } from '../index'

const root = mkdtempSync(join(tmpdir(), 'mirror-level-demo-'))
const appDir = join(root, 'app-db')
console.log(`mirror-level demo in ${root}\n`)

try {
  // An app's existing store, wrapped. MirrorLevel is a drop-in abstract-level database.
  const db = new MirrorLevel<string, any>(new ClassicLevel(appDir), { valueEncoding: 'json' })
  await db.open()
  console.log('1. writes through MirrorLevel')
  await db.put('user:1', { name: 'Ada' })
  await db.batch([
    { type: 'put', key: 'user:2', value: { name: 'Grace' } },
    { type: 'put', key: 'user:3', value: { name: 'Edsger' } },
    { type: 'del', key: 'user:1' }
  ])
  const t0 = performance.now()
  await Promise.all(Array.from({ length: 1000 }, (_, i) => db.put(`event:${String(i).padStart(4, '0')}`, { i })))
  const ms = performance.now() - t0
  console.log(`   1000 concurrent puts in ${ms.toFixed(1)} ms, group-committed into ${db.head!.seq - 2} inner batches`)
  console.log(`   head: seq ${db.head!.seq}, log ${db.head!.logBytes} bytes`)
  console.log(`   users: ${JSON.stringify(await db.values({ gte: 'user:', lt: 'user;' }).all())}`)

  // A block device in a sublevel of the same store: every write is one atomic, logged batch.
  console.log('\n2. a BlockDevice (1 MiB, 4 KiB chunks) in a sublevel')
  const disk = new BlockDevice(db.sublevel('disk0'), { size: 1024 * 1024, chunkSize: 4096 })
  await disk.open()
  const before = db.head!.seq
  await disk.write(4000, Buffer.alloc(10_000, 0xab)) // unaligned, spans 4 chunks
  await disk.trim(8192, 4096) // a whole chunk back to a hole
  await disk.flush()
  const back = await disk.read(4000, 10_000)
  const holes = back.subarray(8192 - 4000, 12288 - 4000).every((b) => b === 0)
  console.log(`   write + trim + flush took ${db.head!.seq - before} seqs; trimmed chunk reads as zeros: ${holes}`)
  console.log(`   bytes 4000..4010 read back: ${back.subarray(0, 10).toString('hex')}`)

  await db.close()

  // Everything outside the reserved range is plain data: plain classic-level reads it.
  console.log('\n3. the same directory opened with plain classic-level')
  const plain = new ClassicLevel(appDir, { valueEncoding: 'json' })
  const users = await plain.iterator({ gte: 'user:', lt: 'user;' }).all()
  console.log(`   ${users.length} users: ${users.map(([k]) => k).join(', ')}`)
  await plain.close()
  console.log('\ndone')
} finally {
  rmSync(root, { recursive: true, force: true })
}
