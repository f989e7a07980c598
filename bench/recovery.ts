// Recovery benchmarks: a restore's rate against a plain copy of the replica's directory, and its
// peak RSS (over TCP from a `mirror-level serve`, in its own process); and a rejoin's shipped bytes
// against a full copy. BENCH_RESTORE_MIB sets the store size (default 1024).
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { cpSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { ClassicLevel } from 'classic-level'
import { MirrorLevel } from '../lib/primary/mirror-level'
import { LevelReplica } from '../adapters/level'
import { TcpReplica } from '../adapters/tcp'
import { promoteStore } from '../lib/replica/promote'
import { demoteStore } from '../lib/replica/demote'
import { benchDir, fmt, type Result } from './harness'
import { serve } from './remote'

const MiB = 1024 * 1024
const cli = fileURLToPath(new URL('../bin/mirror-level.ts', import.meta.url))

async function fill (db: MirrorLevel<Buffer, Buffer>, bytes: number): Promise<void> {
  const count = Math.ceil(bytes / 4096)
  const value = randomBytes(4096)
  for (let at = 0; at < count; at += 1000) {
    await db.batch(Array.from({ length: Math.min(1000, count - at) }, (_, i) => ({ type: 'put' as const, key: Buffer.from(`key-${String(at + i).padStart(10, '0')}`), value })))
  }
  await db.replicated({ timeout: 600_000 })
}

// Runs the restore command in its own process, sampling its RSS from /proc: in all, and its
// anonymous part (heaps, buffers; a directory source's mmap'd tables count as file-backed RSS).
function restoreProcess (args: string[]): Promise<{ seconds: number, peakMiB: number, anonMiB: number }> {
  return new Promise((resolve, reject) => {
    const started = performance.now()
    const p = spawn(process.execPath, ['--import', 'tsx', cli, 'restore', ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    let peak = 0
    let anon = 0
    const timer = setInterval(() => {
      try {
        const status = readFileSync(`/proc/${p.pid}/status`, 'utf8')
        const mib = (field: string): number => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1] ?? 0) / 1024
        peak = Math.max(peak, mib('VmRSS'))
        anon = Math.max(anon, mib('RssAnon'))
      } catch {}
    }, 20)
    let err = ''
    p.stderr.on('data', (d) => { err += d })
    p.on('error', reject)
    p.on('close', (code) => {
      clearInterval(timer)
      if (code !== 0) return reject(new Error(`restore failed (${code}): ${err}`))
      resolve({ seconds: (performance.now() - started) / 1000, peakMiB: peak, anonMiB: anon })
    })
  })
}

export async function restoreRate (mib = Number(process.env.BENCH_RESTORE_MIB ?? 1024)): Promise<Result[]> {
  const dir = benchDir('restore')
  const keyFile = join(dir, 'key')
  writeFileSync(keyFile, randomBytes(32).toString('hex'))
  const key = readFileSync(keyFile, 'utf8')
  const server = await serve(join(dir, 'srv'), keyFile)
  const backup = join(dir, 'backup')
  const db = new MirrorLevel<Buffer, Buffer>(new ClassicLevel(join(dir, 'primary')), {
    keyEncoding: 'buffer', valueEncoding: 'buffer',
    replicas: [new LevelReplica(new ClassicLevel(backup)), new TcpReplica({ port: server.port, resource: 'app', key })]
  })
  await db.open()
  await fill(db, mib * MiB)
  await db.close()
  let t = performance.now()
  cpSync(backup, join(dir, 'plain-copy'), { recursive: true })
  const plain = (performance.now() - t) / 1000
  t = performance.now()
  const fromDir = await restoreProcess(['--from', backup, join(dir, 'restored-dir')])
  const fromTcp = await restoreProcess(['--from', `tcp://127.0.0.1:${server.port}/app`, '--key-file', keyFile, join(dir, 'restored-tcp')])
  server.stop()
  const rate = (s: number): string => `${fmt(mib * MiB / s)}B/s`
  console.log(`Restore of a ${mib} MiB store (4 KiB values), each in its own process, verified at the end
  plain copy of the replica's directory (cp -r)    ${plain.toFixed(1)} s  ${rate(plain)}
  restore from the directory                       ${fromDir.seconds.toFixed(1)} s  ${rate(fromDir.seconds)}  peak RSS ${fromDir.peakMiB.toFixed(0)} MiB (anonymous ${fromDir.anonMiB.toFixed(0)})
  restore over loopback TCP from mirror-level serve ${fromTcp.seconds.toFixed(1)} s  ${rate(fromTcp.seconds)}  peak RSS ${fromTcp.peakMiB.toFixed(0)} MiB (anonymous ${fromTcp.anonMiB.toFixed(0)}; target < 256 MiB)\n`)
  return [
    { title: `restore from a directory / cp -r of it, ${mib} MiB`, ratio: plain / fromDir.seconds, target: 'none; for reference' },
    { title: `restore over TCP / cp -r of the directory, ${mib} MiB`, ratio: plain / fromTcp.seconds, target: 'none; for reference' },
    { title: `restore over TCP, peak RSS in MiB, ${mib} MiB store`, ratio: fromTcp.peakMiB, target: '< 256' }
  ]
}

/** A failover with `lost` writes on the old primary after the fork: what its rejoin ships, against a full copy. */
export async function rejoinBytes (mib = 256, lost = 1000, since = 1000): Promise<Result> {
  const dir = benchDir('rejoin')
  const oldDir = join(dir, 'old')
  const replicaDir = join(dir, 'replica')
  let db = new MirrorLevel<Buffer, Buffer>(new ClassicLevel(oldDir), { keyEncoding: 'buffer', valueEncoding: 'buffer', replicas: [new LevelReplica(new ClassicLevel(replicaDir))] })
  await db.open()
  await fill(db, mib * MiB)
  await db.close()
  const value = randomBytes(4096)
  const write = async (path: string, n: number, tag: string): Promise<void> => {
    const w = new MirrorLevel<Buffer, Buffer>(new ClassicLevel(path), { keyEncoding: 'buffer', valueEncoding: 'buffer' })
    await w.open()
    for (let i = 0; i < n; i++) await w.put(Buffer.from(`key-${String((i * 7919) % (mib * 256)).padStart(10, '0')}-${tag}`), value)
    await w.close()
  }
  await write(oldDir, lost, 'old') // never reach the replica
  await promoteStore(new ClassicLevel(replicaDir) as never)
  await write(replicaDir, since, 'new')
  await demoteStore(new ClassicLevel(oldDir) as never, { saveDiscarded: join(dir, 'lost.jsonl') })
  cpSync(oldDir, join(dir, 'old-copy'), { recursive: true })
  let shipped = 0
  let full = false
  db = new MirrorLevel<Buffer, Buffer>(new ClassicLevel(replicaDir), { keyEncoding: 'buffer', valueEncoding: 'buffer', replicas: [new LevelReplica(new ClassicLevel(oldDir))] })
  db.on('replica-batch', (e: { bytes: number, full: boolean }) => { shipped += e.bytes; full ||= e.full })
  await db.open()
  await db.replicated({ timeout: 600_000 })
  await db.close()
  const store = mib * MiB
  console.log(`Rejoin of a demoted primary after a fork: ${lost} writes lost on it, ${since} on the new primary, a ${mib} MiB store
  a full copy would ship        ${fmt(store)} bytes
  the rejoin shipped            ${fmt(shipped)} bytes (${full ? 'a full copy!' : 'no full copy'}), ${(100 * shipped / store).toFixed(2)}% of it\n`)
  return { title: `rejoin after a fork: bytes shipped / a full copy, ${mib} MiB store, ${lost + since} keys differing`, ratio: shipped / store, target: 'none; for reference' }
}
