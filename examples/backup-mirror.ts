// A live backup of an app's LevelDB store on another disk, with its state shown once a second.
// Usage: npx tsx examples/backup-mirror.ts [app-dir] [backup-dir]
import { ClassicLevel } from 'classic-level'
import { LevelReplica, MirrorLevel } from '../index'

const appDir = process.argv[2] ?? './app-db'
const backupDir = process.argv[3] ?? './backup-db'

const db = new MirrorLevel(new ClassicLevel(appDir), {
  mode: 'async', // writes never wait for the backup disk
  // A larger LevelDB write buffer on the backup: catching up after it was away goes about twice as fast.
  replicas: [new LevelReplica(new ClassicLevel(backupDir, { writeBufferSize: 32 * 1024 * 1024 }), { name: 'backup-disk', maxDelay: 100 })]
})
db.on('replica-down', (e) => console.error(`backup down: ${e.error?.message}`))
db.on('replica-up', (e) => console.error(`backup up at seq ${e.watermark}`))
await db.open()

// The app writes as it always did (here: a counter, ten times a second).
let n = 0
const writer = setInterval(() => { void db.put('counter', String(++n)) }, 100)
const monitor = setInterval(() => {
  const r = db.mirrorStatus().replicas[0]
  console.log(`${r.name}: ${r.state}, at ${r.watermark}/${r.head}, lag ${r.lag.ms} ms`)
}, 1000)

// Ctrl-C: stop writing, let the backup catch up (at most 5 s), close both stores.
process.once('SIGINT', async () => {
  clearInterval(writer)
  clearInterval(monitor)
  await db.replicated({ timeout: 5000 }).catch((err) => console.error(err.message))
  await db.close()
  console.log(`closed; ${backupDir} holds the app's data and opens with plain classic-level`)
})
