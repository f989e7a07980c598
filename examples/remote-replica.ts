// A remote replica on loopback: `mirror-level serve` in a child process, a primary mirroring to it.
// Usage: npx tsx examples/remote-replica.ts
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { ClassicLevel } from 'classic-level'
import { MirrorLevel, TcpReplica } from '../index'

const root = mkdtempSync(join(tmpdir(), 'mirror-level-remote-'))
const cli = fileURLToPath(new URL('../bin/mirror-level.ts', import.meta.url))

// 1. A key both sides hold (on real machines: `mirror-level keygen --out key`, copied securely).
const key = randomBytes(32).toString('hex')
const keyFile = join(root, 'key')
writeFileSync(keyFile, `${key}\n`, { mode: 0o600 })

// 2. The server: one classic-level database per resource under --dir, loopback only by default.
const server = spawn(process.execPath, ['--import', 'tsx', cli, 'serve', '--dir', join(root, 'replicas'), '--port', '0', '--key-file', keyFile], { stdio: ['ignore', 'pipe', 'inherit'] })
const port = await new Promise<number>((resolve) => {
  let out = ''
  server.stdout.on('data', (d) => {
    out += d
    const m = /listening on [^:]+:(\d+)/.exec(out)
    if (m !== null) resolve(Number(m[1]))
  })
})
console.log(`server listening on 127.0.0.1:${port}`)

try {
  // 3. The primary: the app's store, mirrored to the resource 'app-db' on that server.
  const db = new MirrorLevel(new ClassicLevel(join(root, 'app-db')), {
    mode: 'fullsync', // each write resolves once the remote replica has applied it
    replicas: [new TcpReplica({ host: '127.0.0.1', port, resource: 'app-db', key })]
  })
  db.on('replica-up', (e) => console.log(`replica ${e.name} up at seq ${e.watermark}`))
  await db.open()
  const t0 = performance.now()
  for (let i = 0; i < 200; i++) await db.put(`order:${i}`, JSON.stringify({ i, at: Date.now() }))
  console.log(`200 fullsync writes in ${(performance.now() - t0).toFixed(0)} ms (each on the replica before it resolved)`)
  console.log(JSON.stringify(db.mirrorStatus().replicas[0]))
  await db.close()
} finally {
  // 4. SIGTERM: the server finishes the part in hand, closes its databases and exits 0.
  server.kill('SIGTERM')
  await new Promise((resolve) => server.once('exit', resolve))
}

// 5. The replica directory is plain LevelDB.
const replica = new ClassicLevel(join(root, 'replicas', 'app-db'))
console.log(`replica holds ${(await replica.keys({ gte: 'order:', lt: 'order;' }).all()).length} orders`)
await replica.close()
rmSync(root, { recursive: true, force: true })
