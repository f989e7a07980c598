// The failover story, in one process on loopback: a primary mirrors to a backup server; the
// primary's machine dies; the backup is promoted and becomes the primary; the old primary comes
// back, is demoted (its lost writes saved to a file) and rejoins as a replica without a full copy;
// and a lost laptop gets its store back with restore.
// Usage: npx tsx examples/failover.ts
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ClassicLevel } from 'classic-level'
import { LevelReplica, MirrorLevel, MirrorServer, TcpReplica, demote, promote, restore } from '../index'

const dir = mkdtempSync(join(tmpdir(), 'mirror-level-failover-'))
const key = 'an-example-key-made-by-mirror-level-keygen'
const say = (line: string): void => console.log(line)

try {
  // 1. The app's primary mirrors to a backup server.
  const server = new MirrorServer({ dir: join(dir, 'server'), key, port: 0 })
  const { port } = await server.listen()
  const app = new MirrorLevel(new ClassicLevel(join(dir, 'laptop')), {
    replicas: [new TcpReplica({ port, resource: 'app-db', key, retryMaxDelay: 500 })]
  })
  for (let i = 1; i <= 100; i++) await app.put(`order:${i}`, `placed`)
  await app.replicated()
  say(`1. the laptop wrote 100 orders; the backup server holds them all (seq ${app.head!.seq})`)

  // 2. The backup server goes away; the laptop writes on, alone: these never reach the backup.
  await server.close()
  await app.put('order:101', 'placed')
  await app.put('order:7', 'cancelled')
  await app.close()
  say('2. the server went away; the laptop wrote order:101 and cancelled order:7, then it died too')

  // 3. The backup becomes the primary (on the server's machine, the server stopped).
  const promoted = await promote(new ClassicLevel(join(dir, 'server', 'app-db')))
  say(`3. promoted the backup: ${promoted.text.split('\n')[0]}`)
  const office = new MirrorLevel(new ClassicLevel(join(dir, 'server', 'app-db')))
  await office.put('order:102', 'placed in the office')
  await office.close()

  // 4. The old laptop comes back: demoted, its writes after the fork saved, then rejoined.
  const lost = join(dir, 'lost-writes.jsonl')
  const demoted = await demote(new ClassicLevel(join(dir, 'laptop')), { saveDiscarded: lost })
  say(`4. demoted the laptop's store: ${demoted.text.split('\n')[0]}`)
  const primary = new MirrorLevel(new ClassicLevel(join(dir, 'server', 'app-db')), {
    replicas: [new LevelReplica(new ClassicLevel(join(dir, 'laptop')), { name: 'laptop' })]
  })
  primary.on('replica-batch', (e) => say(`   rejoin batch to ${e.name}: seqs (${e.from}, ${e.to}], ${e.ops} keys, ${e.full ? 'a full copy' : 'no full copy'}`))
  await primary.open()
  await primary.replicated()
  const saved = readFileSync(lost, 'utf8').trim().split('\n').slice(1).map((l) => JSON.parse(l))
  say(`   the laptop's lost writes, saved in ${lost}:`)
  for (const w of saved) say(`     ${w.key.utf8} = ${w.value === null ? '(deleted)' : w.value.utf8}`)
  await primary.close()
  const laptop = new ClassicLevel(join(dir, 'laptop')) // a replica now: plain level reads it
  say(`   the laptop now holds what the new primary holds: order:7 = ${await laptop.get('order:7')}, order:102 = ${await laptop.get('order:102')}`)
  await laptop.close()

  // 5. Another laptop is lost: its store comes back from the server with restore.
  const again = new MirrorServer({ dir: join(dir, 'server2'), key, port: 0 })
  const second = await again.listen()
  const other = new MirrorLevel(new ClassicLevel(join(dir, 'second-laptop')), { replicas: [new TcpReplica({ port: second.port, resource: 'notes', key })] })
  await other.batch(Array.from({ length: 500 }, (_, i) => ({ type: 'put' as const, key: `note:${i}`, value: 'text' })))
  await other.replicated()
  await other.close()
  rmSync(join(dir, 'second-laptop'), { recursive: true }) // the laptop is gone
  const report = await restore({ from: `tcp://127.0.0.1:${second.port}/notes`, to: join(dir, 'new-laptop'), key })
  say(`5. ${report.text}`)
  const back = new MirrorLevel(new ClassicLevel(join(dir, 'new-laptop')), { replicas: [new TcpReplica({ port: second.port, resource: 'notes', key })] })
  back.on('replica-batch', (e) => say(`   the server's replica continues: seqs (${e.from}, ${e.to}], ${e.full ? 'a full copy' : 'no full copy'}`))
  await back.put('note:500', 'written after the restore')
  await back.replicated()
  await back.close()
  await again.close()
  say('done')
} finally {
  rmSync(dir, { recursive: true, force: true })
}
