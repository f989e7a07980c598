// One catch-up measurement in its own process. Usage: catchup-child.ts mirror|tcp|first|plain DIR MIB
// mirror and tcp: the replica is synced, goes offline while MIB MiB of chunk writes land, and comes
// back (a backlog caught up from the log); first: a new replica's first copy of the same store;
// plain: a copy of a classic-level snapshot into a fresh directory.
// Prints one JSON line: { bytes, seconds, rssMiB, ... } for the copy phase alone. SETTLE=ms in the
// environment waits that long before it (LevelDB still compacts what the write phase wrote);
// WRITE_BUFFER_MIB=n gives the replica's db (and the plain copy's target) that write buffer.
import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { ClassicLevel } from 'classic-level'
import { MirrorLevel } from '../lib/primary/mirror-level'
import { BlockDevice } from '../lib/device/block-device'
import { LevelReplica } from '../adapters/level'
import { TcpReplica } from '../adapters/tcp'
import { MirrorServer } from '../lib/net/server'
import type { BatchPart, PartAck, ReplicaAdapter, ReplicaHello } from '../lib/adapter'

const [kind, dir, mibArg] = process.argv.slice(2)
const mib = Number(mibArg)
const chunks = mib * 256 // 4 KiB chunks
const data = randomBytes(4096)

// RSS is sampled with its split from /proc: anonymous memory (heaps, buffers) and file-backed
// pages (LevelDB reads its tables through mmap, so pages it reads count as RSS too).
let peak = 0
let peakAnon = 0
let peakFile = 0
function kib (status: string, key: string): number {
  return Number(/(\d+)/.exec(status.split('\n').find((l) => l.startsWith(key)) ?? '')?.[1] ?? 0) * 1024
}
const sample = setInterval(() => {
  const rss = process.memoryUsage().rss
  if (rss <= peak) return
  peak = rss
  try {
    const status = readFileSync('/proc/self/status', 'utf8')
    peakAnon = kib(status, 'RssAnon')
    peakFile = kib(status, 'RssFile')
  } catch {}
}, 20)
let baseAnon = 0
const resetPeak = (): number => {
  global.gc?.()
  peak = process.memoryUsage().rss
  try { baseAnon = kib(readFileSync('/proc/self/status', 'utf8'), 'RssAnon') } catch {}
  return peak
}
const MiB = (n: number): number => n / 2 ** 20
// The write buffer the README recommends for a replica's classic-level db (and `serve` uses): the
// plain copy's target gets it too, though a copy in key order gains nothing from it.
const REPLICA_DB = { writeBufferSize: Number(process.env.WRITE_BUFFER_MIB ?? 32) * 1024 * 1024 }

// An adapter that is unreachable while `online` is false.
class Switchable implements ReplicaAdapter {
  readonly name = 'replica'
  readonly options = { retryMinDelay: 10, retryMaxDelay: 20 }
  constructor (readonly inner: ReplicaAdapter, public online: boolean) {}
  async hello (): Promise<ReplicaHello> {
    if (!this.online) throw new Error('offline')
    return await this.inner.hello()
  }

  async apply (part: BatchPart, received?: () => void): Promise<PartAck> {
    if (!this.online) throw new Error('offline')
    return await this.inner.apply(part, received)
  }
  async close (): Promise<void> { await this.inner.close() }
}

async function writeDevice (db: ClassicLevel<Buffer, Buffer> | MirrorLevel<Buffer, Buffer>): Promise<void> {
  const dev = new BlockDevice(db, { size: chunks * 4096, chunkSize: 4096 })
  await dev.open()
  // Every chunk once, in a random order, 8 writes in flight.
  const order = Array.from({ length: chunks }, (_, i) => i).sort(() => Math.random() - 0.5)
  let next = 0
  await Promise.all(Array.from({ length: 8 }, async () => {
    while (next < order.length) await dev.write(order[next++] * 4096, data)
  }))
  await dev.close()
}

if (kind === 'mirror' || kind === 'tcp' || kind === 'first') {
  // 'tcp': the replica is served by a MirrorServer in this process, reached over loopback TCP.
  const key = 'catch-up-benchmark-key'
  let server: MirrorServer | null = null
  let inner: ReplicaAdapter
  if (kind === 'tcp') {
    server = new MirrorServer({ dir: join(dir, 'served'), key, port: 0 })
    const { port } = await server.listen()
    inner = new TcpReplica({ port, resource: 'replica', key })
  } else {
    inner = new LevelReplica(new ClassicLevel(join(dir, 'mirror-replica'), REPLICA_DB))
  }
  // A backlog: the replica holds the empty store, then is offline while the writes land.
  const backlog = kind !== 'first'
  const adapter = new Switchable(inner, backlog)
  const db = new MirrorLevel<Buffer, Buffer>(new ClassicLevel(join(dir, 'mirror-primary')), { replicas: [adapter], keyEncoding: 'buffer', valueEncoding: 'buffer' })
  await db.open()
  if (backlog) {
    await db.replicated()
    adapter.online = false
  }
  await writeDevice(db)
  let bytes = 0
  let full = false
  db.on('replica-batch', (e: { bytes: number, full: boolean }) => {
    bytes += e.bytes
    full ||= e.full
  })
  if (process.env.SETTLE !== undefined) await new Promise((resolve) => setTimeout(resolve, Number(process.env.SETTLE)))
  const base = resetPeak()
  const t0 = performance.now()
  adapter.online = true
  await db.replicated()
  const seconds = (performance.now() - t0) / 1000
  clearInterval(sample)
  await db.close()
  await server?.close()
  if (full !== !backlog) throw new Error(backlog ? 'the backlog went out as a full copy' : 'the first copy was not a full copy')
  console.log(JSON.stringify({ bytes, seconds, rssMiB: MiB(peak), baseMiB: MiB(base), anonMiB: MiB(peakAnon), baseAnonMiB: MiB(baseAnon), fileMiB: MiB(peakFile) }))
} else {
  const src = new ClassicLevel<Buffer, Buffer>(join(dir, 'plain-source'), { keyEncoding: 'buffer', valueEncoding: 'buffer' })
  await src.open()
  await writeDevice(src)
  const dst = new ClassicLevel<Buffer, Buffer>(join(dir, 'plain-copy'), { keyEncoding: 'buffer', valueEncoding: 'buffer', ...REPLICA_DB })
  await dst.open()
  if (process.env.SETTLE !== undefined) await new Promise((resolve) => setTimeout(resolve, Number(process.env.SETTLE)))
  const base = resetPeak()
  const t0 = performance.now()
  const snapshot = src.snapshot()
  const it = src.iterator({ snapshot })
  let bytes = 0
  while (true) {
    const entries = await it.nextv(1000)
    if (entries.length === 0) break
    await dst.batch(entries.map(([key, value]) => {
      bytes += key.length + value.length
      return { type: 'put' as const, key, value }
    }))
  }
  await it.close()
  await snapshot.close()
  const seconds = (performance.now() - t0) / 1000
  clearInterval(sample)
  await Promise.all([src.close(), dst.close()])
  console.log(JSON.stringify({ bytes, seconds, rssMiB: MiB(peak), baseMiB: MiB(base), anonMiB: MiB(peakAnon), baseAnonMiB: MiB(baseAnon), fileMiB: MiB(peakFile) }))
}
