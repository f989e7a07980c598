import { describe, expect, it } from 'vitest'
import { randomBytes } from 'node:crypto'
import { connect, type Socket } from 'node:net'
import { crc32 } from 'node:zlib'
import { Packr } from 'msgpackr'
import { MemoryLevel } from 'memory-level'
import { MirrorLevel } from '../lib/primary/mirror-level'
import { TcpReplica } from '../adapters/tcp'
import { MirrorServer } from '../lib/net/server'
import { FrameDecoder, PROTOCOL_VERSION, encodeFrame, proof, type Message } from '../lib/net/protocol'
import { RESERVED_RANGE } from '../lib/keyspace'
import { serialize, until } from './replication-helpers'

const KEY = 'fuzz'.repeat(8)
const packr = new Packr({ useRecords: false, mapsAsObjects: true })
const rand = (n: number): number => Math.floor(Math.random() * n)

function frame (payload: Buffer, crc = crc32(payload)): Buffer {
  const head = Buffer.alloc(8)
  head.writeUInt32BE(payload.length, 0)
  head.writeUInt32BE(crc, 4)
  return Buffer.concat([head, payload])
}

/** A connection that counts what the server answers. */
class Peer {
  socket: Socket
  decoder = new FrameDecoder()
  messages: Message[] = []
  errors = 0
  answers = 0
  closed = false
  constructor (port: number) {
    this.socket = connect(port, '127.0.0.1')
    this.socket.on('data', (d) => {
      for (const m of this.decoder.push(d)) {
        this.answers++
        if (m.t === 'error') this.errors++
        this.messages.push(m)
        if (this.messages.length > 100) this.messages.shift()
      }
      if (this.decoder.error !== null) this.closed = true
    })
    this.socket.on('close', () => { this.closed = true })
    this.socket.on('error', () => {})
  }

  async authenticate (resource: string): Promise<void> {
    await until(() => this.messages.some((m) => m.t === 'challenge') || this.closed, 5000)
    const challenge = this.messages.find((m) => m.t === 'challenge')!
    const nonce = randomBytes(32)
    this.socket.write(encodeFrame({ t: 'auth', v: PROTOCOL_VERSION, resource, nonce, mac: proof(Buffer.from(KEY), 'client', challenge.nonce as Buffer, nonce, resource) }))
    await until(() => this.messages.some((m) => m.t === 'welcome') || this.closed, 5000)
    if (this.closed) throw new Error('authentication failed')
  }
}

// A part that is wrong three independent ways (a gap, a part index with no batch staged, a key in
// the reserved range), so no single mutation can make it one the replica would apply.
function poisonedPart (watermark: number): Record<string, unknown> {
  return {
    generation: 'g'.repeat(32),
    from: watermark + 5 + rand(1000),
    to: watermark + 2000 + rand(1000),
    index: 3 + rand(5),
    final: Math.random() < 0.5,
    full: false,
    ops: [
      { type: 'put', key: Buffer.from(`k${rand(100)}`), value: randomBytes(rand(64)) },
      { type: 'put', key: Buffer.concat([RESERVED_RANGE.gte, Buffer.from('meta/replica')]), value: randomBytes(8) }
    ]
  }
}

function randomValue (depth = 0): unknown {
  switch (rand(depth > 2 ? 6 : 8)) {
    case 0: return rand(2 ** 31) - 2 ** 30
    case 1: return Math.random() * 1e6
    case 2: return randomBytes(rand(40)).toString('latin1')
    case 3: return randomBytes(rand(40))
    case 4: return null
    case 5: return Math.random() < 0.5
    case 6: return Array.from({ length: rand(4) }, () => randomValue(depth + 1))
    default: return Object.fromEntries(Array.from({ length: rand(4) }, () => [randomBytes(3).toString('hex'), randomValue(depth + 1)]))
  }
}

// Field-level mutation: replace, drop or add a field, or a field inside an op.
function mutateFields (m: Record<string, unknown>): Record<string, unknown> {
  const copy: Record<string, unknown> = { ...m }
  const part = copy.part !== undefined ? { ...(copy.part as Record<string, unknown>) } : null
  const target = part !== null && Math.random() < 0.8 ? part : copy
  const keys = Object.keys(target)
  const k = keys[rand(keys.length)]
  switch (rand(4)) {
    case 0: target[k] = randomValue(); break
    case 1: delete target[k]; break
    case 2: target[randomBytes(2).toString('hex')] = randomValue(); break
    default:
      if (Array.isArray(target.ops) && target.ops.length > 0) {
        const ops = [...target.ops] as Array<Record<string, unknown>>
        ops[rand(ops.length)] = { ...ops[0], [['type', 'key', 'value'][rand(3)]]: randomValue() }
        target.ops = ops
      } else {
        target[k] = randomValue()
      }
  }
  if (part !== null) copy.part = part
  return copy
}

describe('fuzzing the server', () => {
  it('survives 100k+ random and mutated frames before and after authentication, answering with errors and changing no replica data', async () => {
    const replicaDb = new MemoryLevel()
    const server = new MirrorServer({ dir: '/nonexistent-fuzz', key: KEY, port: 0, authTimeout: 300, openDb: () => replicaDb as never })
    const { port } = await server.listen()

    // A legitimate primary syncs some data first, then leaves.
    const primary = new MirrorLevel(new MemoryLevel(), { replicas: [new TcpReplica({ port, resource: 'app', key: KEY })] })
    await primary.batch(Array.from({ length: 100 }, (_, i) => ({ type: 'put' as const, key: `k${i}`, value: `v${i}` })))
    await primary.replicated()
    const watermark = primary.mirrorStatus().replicas[0].watermark
    await primary.close()
    await replicaDb.open()
    const before = await serialize(replicaDb as never)
    await replicaDb.close()

    // Before authentication: each connection gets one hostile frame (or junk) and is dropped.
    let preAuth = 0
    const hostile = (): Buffer => {
      switch (rand(7)) {
        case 0: return randomBytes(rand(300))
        case 1: return frame(randomBytes(rand(200)))
        case 2: return frame(packr.pack(randomValue()))
        case 3: { const f = encodeFrame({ t: 'auth', v: PROTOCOL_VERSION, resource: 'app', nonce: randomBytes(32), mac: randomBytes(32) }); f[8 + rand(f.length - 8)] ^= 1 + rand(255); return f }
        case 4: return encodeFrame({ t: 'auth', v: PROTOCOL_VERSION, resource: 'app', nonce: randomBytes(32), mac: randomBytes(32) })
        case 5: return encodeFrame({ t: 'part', id: 1, part: poisonedPart(watermark) })
        default: { const f = Buffer.alloc(8); f.writeUInt32BE(0xffffffff, 0); return f }
      }
    }
    for (let wave = 0; wave < 100; wave++) {
      await Promise.all(Array.from({ length: 100 }, async () => {
        const peer = new Peer(port)
        peer.socket.end(hostile())
        preAuth++
        await until(() => peer.closed, 5000)
      }))
    }
    expect(server.connections).toBe(0)

    // After authentication: 100k frames, most of them mutated parts.
    let postAuth = 0
    let fatal = 0
    let peer = new Peer(port)
    await peer.authenticate('app')
    let errorsSeen = 0
    // Frames the server must answer and survive on the same connection, and fatal ones (junk, a
    // bad checksum, a payload that is not a message) that end it: one of those closes a burst.
    const isMessage = (payload: Buffer): boolean => {
      try {
        const m = new FrameDecoder().push(frame(payload))[0] as unknown
        return typeof m === 'object' && m !== null && typeof (m as { t?: unknown }).t === 'string'
      } catch { return false }
    }
    const next = (): { frame: Buffer, fatal: boolean } => {
      const r = Math.random()
      if (r < 0.01) { const junk = randomBytes(rand(100)); return { frame: frame(junk, (crc32(junk) ^ 1) >>> 0), fatal: true } }
      if (r < 0.02) { const f = encodeFrame({ t: 'hello', id: 1 }); f.writeUInt32BE(crc32(Buffer.from('x')), 4); return { frame: f, fatal: true } }
      const base: Record<string, unknown> = Math.random() < 0.9
        ? { t: 'part', id: rand(1e6), part: poisonedPart(watermark) }
        : { t: ['hello', 'ping', 'nope', 'auth', 'welcome'][rand(5)], id: rand(10) }
      if (r < 0.5) {
        const payload = packr.pack(mutateFields(base))
        return { frame: frame(payload), fatal: !isMessage(payload) }
      }
      // Byte-level mutation with a correct checksum.
      const payload = packr.pack(base)
      for (let i = 0, n = 1 + rand(3); i < n; i++) payload[rand(payload.length)] = rand(256)
      return { frame: frame(payload), fatal: !isMessage(payload) }
    }
    while (postAuth < 100_000) {
      const burst: Buffer[] = []
      let ending: Buffer | null = null
      while (burst.length < 200) {
        const f = next()
        if (!f.fatal) burst.push(f.frame)
        else if (ending === null && Math.random() < 0.1) ending = f.frame
      }
      const answered = peer.errors
      peer.socket.write(Buffer.concat(ending === null ? burst : [...burst, ending]))
      postAuth += burst.length + (ending === null ? 0 : 1)
      if (ending !== null) fatal++
      // Every frame of the burst is answered with an error (parts are also acknowledged as
      // received), except pings and hellos, which get their answers.
      await until(() => peer.closed || peer.errors >= answered + 150, 10_000)
      if (ending !== null) {
        await until(() => peer.closed, 5000)
        errorsSeen += peer.errors
        await until(() => server.connections === 0, 5000)
        peer = new Peer(port)
        await peer.authenticate('app')
      }
      expect(peer.closed, `closed: ${JSON.stringify(peer.messages.at(-1))}`).toBe(false)
    }
    errorsSeen += peer.errors
    peer.socket.destroy()
    await until(() => server.connections === 0, 5000)

    expect(preAuth + postAuth).toBeGreaterThanOrEqual(110_000)
    expect(errorsSeen).toBeGreaterThan(90_000)
    // The server is still up and serves a legitimate primary; the replica's data never changed.
    await replicaDb.open()
    expect(await serialize(replicaDb as never)).toBe(before)
    await replicaDb.close()
    const again = new TcpReplica({ port, resource: 'app', key: KEY })
    expect((await again.hello()).watermark).toBe(watermark)
    await again.close()
    await server.close()
    console.log(`fuzz: ${preAuth} frames before authentication, ${postAuth} after (${fatal} of them fatal), ${errorsSeen} error answers`)
  })
})
