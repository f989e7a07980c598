import { afterAll, describe, expect, it } from 'vitest'
import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, readdirSync, writeFileSync } from 'node:fs'
import { connect, createServer, type AddressInfo, type Socket } from 'node:net'
import { join } from 'node:path'
import { ClassicLevel } from 'classic-level'
import { MemoryLevel } from 'memory-level'
import { MirrorLevel } from '../lib/primary/mirror-level'
import { TcpReplica } from '../adapters/tcp'
import { MirrorServer } from '../lib/net/server'
import { FrameDecoder, PROTOCOL_VERSION, encodeFrame, proof, type Message } from '../lib/net/protocol'
import { tempDir, userData } from './helpers'
import { serialize, until } from './replication-helpers'
import { exited, runCli, startServer } from './tcp-helpers'

const KEY = 'c0ffee'.repeat(11)
const tmp = tempDir('mirror-level-tcp-')
afterAll(() => tmp.cleanup())
let n = 0
const fresh = (): string => join(tmp.dir, `t${n++}`)

/** A raw protocol client, for talking to a server the way a broken or hostile peer would. */
class Raw {
  socket: Socket
  messages: Message[] = []
  closed = false
  #decoder = new FrameDecoder()
  constructor (port: number) {
    this.socket = connect(port, '127.0.0.1')
    this.socket.on('data', (d) => { this.messages.push(...this.#decoder.push(d)) })
    this.socket.on('close', () => { this.closed = true })
    this.socket.on('error', () => {})
  }

  async next (t?: string): Promise<Message> {
    await until(() => this.messages.some((m) => t === undefined || m.t === t) || this.closed, 5000)
    const at = this.messages.findIndex((m) => t === undefined || m.t === t)
    if (at === -1) throw new Error(`connection closed before a '${t}' frame`)
    return this.messages.splice(at, 1)[0]
  }

  send (m: Message): void { this.socket.write(encodeFrame(m)) }

  /** Runs the client side of the handshake; returns the auth frame it sent. */
  async authenticate (resource: string, key = KEY): Promise<Message> {
    const challenge = await this.next('challenge')
    const nonce = randomBytes(32)
    const auth = { t: 'auth', v: PROTOCOL_VERSION, resource, nonce, mac: proof(Buffer.from(key), 'client', challenge.nonce as Buffer, nonce, resource) }
    this.send(auth)
    return auth
  }
}

async function memoryServer (options: Record<string, unknown> = {}) {
  const dbs = new Map<string, MemoryLevel>()
  const server = new MirrorServer({
    dir: fresh(),
    key: KEY,
    port: 0,
    openDb: (path) => {
      if (!dbs.has(path)) dbs.set(path, new MemoryLevel())
      return dbs.get(path) as never
    },
    ...options
  })
  const { port } = await server.listen()
  return { server, port, dbs }
}

describe('mirror-level serve and TcpReplica', () => {
  it('mirrors to a server process; the replica directory opens with plain classic-level; SIGTERM exits cleanly', async () => {
    const dir = fresh()
    const keyFile = join(tmp.dir, 'key')
    writeFileSync(keyFile, `\n  ${KEY}  \n`)
    const { child, port } = await startServer(['--dir', dir, '--port', '0', '--key-file', keyFile])
    const inner = new MemoryLevel()
    const db = new MirrorLevel(inner, { replicas: [new TcpReplica({ port, resource: 'app-db', key: KEY, maxBatchOps: 50 })] })
    await db.batch(Array.from({ length: 500 }, (_, i) => ({ type: 'put' as const, key: `k${i}`, value: `v${i}` })))
    for (let i = 0; i < 100; i++) await db.put(`k${i}`, 'again')
    await db.replicated()
    expect(db.mirrorStatus().replicas[0]).toMatchObject({ state: 'idle', consistent: true, watermark: db.head!.seq })
    // The primary closes and opens again with the same adapter: it reconnects and goes on.
    await db.close()
    await db.open()
    await db.put('after-reopen', 'yes')
    await db.replicated()
    const expected = await userData(inner as never)
    await db.close()
    child.kill('SIGTERM')
    expect(await exited(child)).toEqual({ code: 0, signal: null })
    const replica = new ClassicLevel(join(dir, 'app-db'), { keyEncoding: 'buffer', valueEncoding: 'buffer' })
    expect(await userData(replica as never)).toEqual(expected)
    await replica.close()
    const status = await runCli(['status', join(dir, 'app-db')])
    expect(status.stdout).toMatch(/replica: generation [0-9a-f]{32}, watermark 102/)
  })

  it('refuses a wrong key both ways, with a clear message, and writes nothing', async () => {
    const { server, port, dbs } = await memoryServer()
    const wrong = new TcpReplica({ port, resource: 'r', key: 'not-the-right-key-at-all' })
    await expect(wrong.hello()).rejects.toMatchObject({ code: 'MIRROR_AUTH', message: expect.stringMatching(/wrong key/) })
    expect(dbs.size).toBe(0)
    // A server that does not hold the key cannot pass itself off as the replica.
    const fake = createServer((s) => {
      s.write(encodeFrame({ t: 'challenge', v: PROTOCOL_VERSION, nonce: randomBytes(32) }))
      s.on('data', () => s.write(encodeFrame({ t: 'welcome', mac: randomBytes(32), hello: { generation: null, watermark: 0, pending: null } })))
    })
    await new Promise<void>((resolve) => fake.listen(0, '127.0.0.1', resolve))
    const victim = new TcpReplica({ port: (fake.address() as AddressInfo).port, resource: 'r', key: KEY })
    await expect(victim.hello()).rejects.toMatchObject({ code: 'MIRROR_AUTH', message: expect.stringMatching(/could not prove/) })
    fake.close()
    await server.close()
  })

  it('refuses a replayed handshake and any frame before authentication', async () => {
    const { server, port, dbs } = await memoryServer()
    const first = new Raw(port)
    const auth = await first.authenticate('r')
    expect((await first.next('welcome')).t).toBe('welcome')
    first.socket.destroy()
    await until(() => server.connections === 0)
    const replay = new Raw(port)
    await replay.next('challenge')
    replay.send(auth) // recorded from the first connection: its nonce answers another challenge
    expect(await replay.next('error')).toMatchObject({ code: 'MIRROR_AUTH', fatal: true })
    await until(() => replay.closed)
    const early = new Raw(port)
    await early.next('challenge')
    early.send({ t: 'part', id: 1, part: { generation: 'g', from: 0, to: 1, index: 0, final: true, full: true, range: { after: null, upto: null }, ops: [] } })
    expect(await early.next('error')).toMatchObject({ code: 'MIRROR_PROTOCOL', message: expect.stringMatching(/expected an auth frame/) })
    await until(() => early.closed)
    const db = dbs.get([...dbs.keys()][0])!
    await db.open()
    expect(await serialize(db as never)).toBe('[]')
    await server.close()
  })

  it('lets one primary stream to a resource at a time', async () => {
    const { server, port } = await memoryServer()
    const a = new TcpReplica({ port, resource: 'shared', key: KEY })
    const b = new TcpReplica({ port, resource: 'shared', key: KEY })
    await a.hello()
    await expect(b.hello()).rejects.toMatchObject({ code: 'MIRROR_BUSY', message: expect.stringMatching(/already has a primary/) })
    await a.close()
    await until(async () => { try { await b.hello(); return true } catch { return false } })
    await b.close()
    await server.close()
  })

  it('a connection that drops while its replica opens gives the resource back', async () => {
    const dir = fresh()
    const server = new MirrorServer({ dir, key: KEY, port: 0 }) // classic-level: a real open, and a lock
    const { port } = await server.listen()
    for (let i = 0; i < 30; i++) {
      const raw = new Raw(port)
      await raw.authenticate('app')
      if (i % 2 === 0) await new Promise((resolve) => setImmediate(resolve))
      raw.socket.destroy()
    }
    await until(() => server.connections === 0)
    const db = new MirrorLevel(new MemoryLevel(), { replicas: [new TcpReplica({ port, resource: 'app', key: KEY, retryMinDelay: 10, retryMaxDelay: 50 })] })
    await db.put('k', 'v')
    await db.replicated({ timeout: 10_000 })
    await db.close()
    await server.close()
  })

  it('refuses resource names that could escape the directory', async () => {
    const dir = fresh()
    const server = new MirrorServer({ dir, key: KEY, port: 0 })
    const { port } = await server.listen()
    for (const name of ['..', '../evil', '.', '.hidden', 'a/b', 'a\\b', '', 'x'.repeat(200), '/etc']) {
      expect(() => new TcpReplica({ port, resource: name, key: KEY })).toThrow(expect.objectContaining({ code: 'MIRROR_INVALID_OPTION' }))
      expect(() => new TcpReplica({ port, resource: 'ok', key: 12345 as never })).toThrow(expect.objectContaining({ code: 'MIRROR_INVALID_OPTION' }))
      const raw = new Raw(port)
      await raw.authenticate(name)
      expect(await raw.next('error')).toMatchObject({ code: 'MIRROR_PROTOCOL', message: expect.stringMatching(/resource name is not allowed/) })
    }
    expect(existsSync(dir) ? readdirSync(dir) : []).toEqual([])
    expect(existsSync(join(dir, '..', 'evil'))).toBe(false)
    await server.close()
  })

  it('speaks TLS when given a certificate; a plain client cannot connect', async () => {
    const dir = fresh()
    const cert = join(tmp.dir, 'cert.pem')
    const pem = join(tmp.dir, 'key.pem')
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', pem, '-out', cert, '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'], { stdio: 'ignore' })
    const keyFile = join(tmp.dir, 'tls-key')
    writeFileSync(keyFile, KEY)
    const { child, port } = await startServer(['--dir', dir, '--port', '0', '--key-file', keyFile, '--tls-cert', cert, '--tls-key', pem])
    const { readFileSync } = await import('node:fs')
    const db = new MirrorLevel(new MemoryLevel(), { replicas: [new TcpReplica({ port, resource: 'secure', key: KEY, tls: { ca: readFileSync(cert) } })] })
    await db.put('secret', 'value')
    await db.replicated()
    await db.close()
    const plain = new TcpReplica({ port, resource: 'secure', key: KEY, connectTimeout: 1000 })
    await expect(plain.hello()).rejects.toBeInstanceOf(Error)
    // Restored over TLS, and said so (it used to name the source tcp://).
    const { restore } = await import('../lib/recovery/restore')
    const report = await restore({ from: `tls://127.0.0.1:${port}/secure`, to: join(tmp.dir, 'restored-over-tls'), key: KEY, tls: { ca: readFileSync(cert) } })
    expect(report.entries).toBe(1)
    expect(report.text).toContain(`from tls://127.0.0.1:${port}/secure into`)
    child.kill('SIGTERM')
    expect((await exited(child)).code).toBe(0)
  })

  it.each(['tcp', 'tls'])('frames waiting behind a slow connection are not overwritten by the ones encoded after them (%s)', async (kind) => {
    let tls: { ca: Buffer } | undefined
    let serverTls: { cert: Buffer, key: Buffer } | undefined
    if (kind === 'tls') {
      const cert = join(tmp.dir, 'slow-cert.pem')
      const pem = join(tmp.dir, 'slow-key.pem')
      execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', pem, '-out', cert, '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'], { stdio: 'ignore' })
      const { readFileSync } = await import('node:fs')
      tls = { ca: readFileSync(cert) }
      serverTls = { cert: readFileSync(cert), key: readFileSync(pem) }
    }
    const { server, port, dbs } = await memoryServer(serverTls === undefined ? {} : { tls: serverTls })
    // Reads nothing from the primary for a while, then passes its bytes on: its socket backs up,
    // and part frames (4 MiB each, window 4: more than the kernel's buffers take) wait in Node's
    // buffer while the next ones are encoded.
    const proxy = createServer((client) => {
      const upstream = connect(port, '127.0.0.1')
      client.on('error', () => {})
      upstream.on('error', () => {})
      upstream.pipe(client)
      client.pipe(upstream)
      client.on('close', () => upstream.destroy())
      let stalledOnce = false
      client.on('data', () => {
        if (stalledOnce) return
        stalledOnce = true
        client.pause()
        setTimeout(() => client.resume(), 500)
      })
    })
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve))
    const inner = new MemoryLevel({ keyEncoding: 'buffer', valueEncoding: 'buffer' })
    const db = new MirrorLevel(inner, { replicas: [new TcpReplica({ port: (proxy.address() as AddressInfo).port, resource: 'slow', key: KEY, maxDelay: 300, ...(tls === undefined ? {} : { tls }) })] })
    const downs: unknown[] = []
    const parts: number[] = []
    db.on('replica-down', (e) => downs.push(e))
    db.on('replica-batch', (e) => parts.push(e.parts))
    await db.open()
    await db.replicated()
    // 24 MiB in one coalesced batch, of values below the size frames reference: every byte is
    // copied into the scratch buffers.
    for (let round = 0; round < 6; round++) {
      await db.batch(Array.from({ length: 512 }, (_, i) => ({ type: 'put' as const, key: Buffer.from(`k${round}-${String(i).padStart(4, '0')}`), value: randomBytes(8 * 1024) })))
    }
    await db.replicated({ timeout: 20_000 })
    expect(downs).toEqual([])
    expect(Math.max(...parts)).toBeGreaterThanOrEqual(3)
    expect(await serialize([...dbs.values()][0] as never)).toBe(await serialize(inner as never))
    await db.close()
    await server.close()
    proxy.close()
  })
})
