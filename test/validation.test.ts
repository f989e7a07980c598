import { afterAll, describe, expect, it } from 'vitest'
import { execFileSync } from 'node:child_process'
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { createServer, type AddressInfo, type Server } from 'node:net'
import { join } from 'node:path'
import { createServer as createTlsServer, type TLSSocket } from 'node:tls'
import { fileURLToPath } from 'node:url'
import { MemoryLevel } from 'memory-level'
import { LevelReplica } from '../adapters/level'
import { TcpReplica } from '../adapters/tcp'
import { MirrorServer } from '../lib/net/server'
import { MirrorLevel } from '../lib/primary/mirror-level'
import type { ReplicaAdapter } from '../lib/adapter'
import { runTs, tempDir } from './helpers'

const KEY = 'c0ffee'.repeat(11)
const tmp = tempDir('mirror-level-validation-')
afterAll(() => tmp.cleanup())
let n = 0
const fresh = (): string => join(tmp.dir, `t${n++}`)

/** A self-signed certificate for localhost and 127.0.0.1, and its key (PEM). */
function makeCert (name: string): { cert: Buffer, key: Buffer, certFile: string, keyFile: string } {
  const certFile = join(tmp.dir, `${name}-cert.pem`)
  const keyFile = join(tmp.dir, `${name}-key.pem`)
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', keyFile, '-out', certFile,
    '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'], { stdio: 'ignore' })
  return { cert: readFileSync(certFile), key: readFileSync(keyFile), certFile, keyFile }
}
const ours = makeCert('ours')
const theirs = makeCert('theirs')

const invalid = (name: string): unknown => expect.objectContaining({ code: 'MIRROR_INVALID_OPTION', message: expect.stringContaining(`'${name}'`) })

describe('MirrorServer options', () => {
  it('refuses a host that is not a non-empty string, a log that is not a function, and a tls without cert and key', () => {
    const dir = fresh()
    const bad: Array<[string, Record<string, unknown>]> = [
      ['host', { host: 123 }],
      ['host', { host: '' }],
      ['log', { log: 'yes' }],
      ['tls', { tls: 'yes' }],
      ['tls', { tls: null }],
      ['tls.key', { tls: { cert: 'PEM' } }],
      ['tls.cert', { tls: { cert: 42, key: 'PEM' } }]
    ]
    for (const [name, options] of bad) {
      expect(() => new MirrorServer({ dir, key: KEY, port: 0, ...options } as never), JSON.stringify(options)).toThrow(invalid(name))
    }
    expect(existsSync(dir)).toBe(false)
  })

  it('listen() creates a missing dir, and refuses a path that is not a directory without listening', async () => {
    const dir = join(fresh(), 'a', 'b')
    const server = new MirrorServer({ dir, key: KEY, port: 0 })
    await server.listen()
    expect(statSync(dir).isDirectory()).toBe(true)
    await server.close()
    const file = join(tmp.dir, 'plain-file')
    writeFileSync(file, 'x')
    for (const path of [file, join(file, 'sub')]) {
      const refused = new MirrorServer({ dir: path, key: KEY, port: 0, log: (line) => { throw new Error(`logged: ${line}`) } })
      await expect(refused.listen()).rejects.toMatchObject({ code: 'MIRROR_INVALID_OPTION', message: expect.stringMatching(/option 'dir' must be a directory/) })
      expect(refused.connections).toBe(0)
    }
    expect(readFileSync(file, 'utf8')).toBe('x')
  })
})

describe('replica adapters\' common options', () => {
  // Checked where they are given, in the adapter's constructor, not later when a MirrorLevel opens.
  const make = {
    LevelReplica: (options: Record<string, unknown>) => new LevelReplica(new MemoryLevel(), options as never),
    TcpReplica: (options: Record<string, unknown>) => new TcpReplica({ resource: 'r', key: KEY, ...options } as never)
  }
  for (const [adapter, build] of Object.entries(make)) {
    it(`${adapter} refuses a bad common option, and an option it does not know (a typo), naming it`, () => {
      const bad: Array<[string, Record<string, unknown>]> = [
        ['name', { name: '' }],
        ['name', { name: 7 }],
        ['maxDelay', { maxDelay: -1 }],
        ['maxBatchOps', { maxBatchOps: 0 }],
        ['maxBatchBytes', { maxBatchBytes: 100 }],
        ['retryMinDelay', { retryMinDelay: 1.5 }],
        ['retryMaxDelay', { retryMinDelay: 500, retryMaxDelay: 200 }],
        ['overwrite', { overwrite: 'yes' }],
        ['verifyEvery', { verifyEvery: 'often' }],
        ['maxdelay', { maxdelay: 10 }]
      ]
      for (const [name, options] of bad) {
        expect(() => build(options), JSON.stringify(options)).toThrow(expect.objectContaining({ code: 'MIRROR_INVALID_OPTION', message: expect.stringContaining(name) }))
      }
      const named = build({ name: 'backup', maxDelay: 0, maxBatchOps: 10, maxBatchBytes: 4096, retryMinDelay: 10, retryMaxDelay: 10, overwrite: true, verifyEvery: 1000, verifyRepair: false })
      // The adapter's own name is the one it is known by (verify(replica.name) finds it).
      expect(named.name).toBe('backup')
      // A first delay past the default longest one raises the longest with it.
      expect(() => build({ retryMinDelay: 20_000 })).not.toThrow()
    })
  }
})

describe('TcpReplica options', () => {
  const base = { resource: 'r', key: KEY }

  it('refuses a host that is not a non-empty string, a tls that is neither a boolean nor an object, and a heartbeatTimeout not above heartbeatInterval', () => {
    const bad: Array<[string, Record<string, unknown>]> = [
      ['host', { host: 123 }],
      ['host', { host: '' }],
      ['tls', { tls: 'yes' }],
      ['tls', { tls: null }],
      ['tls', { tls: [] }],
      ['heartbeatTimeout', { heartbeatTimeout: 5000 }], // equal to the default interval
      ['heartbeatTimeout', { heartbeatInterval: 2000, heartbeatTimeout: 1000 }],
      ['heartbeatTimeout', { heartbeatInterval: 20_000 }] // above the default timeout
    ]
    for (const [name, options] of bad) {
      expect(() => new TcpReplica({ ...base, ...options } as never), JSON.stringify(options)).toThrow(invalid(name))
    }
    expect(new TcpReplica({ ...base, heartbeatInterval: 100, heartbeatTimeout: 101, tls: true }).options.host).toBe('127.0.0.1')
  })

  it('refuses TLS material that does not parse or does not fit together, naming the option', () => {
    const bad: Array<[string, Record<string, unknown>]> = [
      ['tls.ca', { ca: 'not a pem' }],
      ['tls.ca', { ca: '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n' }],
      ['tls.ca', { ca: [ours.cert, 'not a pem'] }],
      ['tls.ca', { ca: 123 }],
      ['tls.cert', { cert: 'not a pem', key: ours.key }],
      ['tls.key', { cert: ours.cert, key: 'not a pem' }],
      ['tls.key', { cert: ours.cert, key: theirs.key }],
      ['tls', { ca: ours.cert, minVersion: 'TLSv9' }]
    ]
    for (const [name, tls] of bad) {
      expect(() => new TcpReplica({ ...base, tls } as never), name).toThrow(invalid(name))
    }
    expect(() => new TcpReplica({ ...base, tls: { ca: [ours.cert, theirs.cert], cert: ours.cert, key: ours.key } })).not.toThrow()
  })

  it('MirrorServer refuses a TLS certificate or key that does not parse or does not fit together', () => {
    const dir = fresh()
    const bad: Array<[string, { cert: string | Buffer, key: string | Buffer }]> = [
      ['tls.cert', { cert: 'not a pem', key: ours.key }],
      ['tls.key', { cert: ours.cert, key: 'not a pem' }],
      ['tls.key', { cert: ours.cert, key: theirs.key }]
    ]
    for (const [name, tls] of bad) {
      expect(() => new MirrorServer({ dir, key: KEY, port: 0, tls }), name).toThrow(invalid(name))
    }
    expect(existsSync(dir)).toBe(false)
  })
})

describe('TcpReplica connection errors', () => {
  async function mirrorServer (tls?: { cert: Buffer, key: Buffer }): Promise<{ server: MirrorServer, port: number }> {
    const server = new MirrorServer({ dir: fresh(), key: KEY, port: 0, tls, openDb: () => new MemoryLevel() as never })
    return { server, port: (await server.listen()).port }
  }
  async function rawServer (onSocket: Parameters<typeof createServer>[1]): Promise<{ server: Server, port: number }> {
    const server = createServer(onSocket)
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    return { server, port: (server.address() as AddressInfo).port }
  }
  const closed = (server: Server): Promise<void> => new Promise((resolve) => server.close(() => resolve()))

  it('nothing listening is MIRROR_UNREACHABLE, not a timeout', async () => {
    const { server, port } = await rawServer(() => {})
    await closed(server)
    const replica = new TcpReplica({ port, resource: 'r', key: KEY })
    await expect(replica.hello()).rejects.toMatchObject({ code: 'MIRROR_UNREACHABLE', message: expect.stringMatching(/connection refused/) })
  })

  it('a host that does not resolve is MIRROR_UNREACHABLE', async () => {
    // Long enough for the resolver to give up first: the point is the code, not the wait.
    const replica = new TcpReplica({ host: 'no-such-host.invalid', port: 7410, resource: 'r', key: KEY, connectTimeout: 50_000 })
    await expect(replica.hello()).rejects.toMatchObject({ code: 'MIRROR_UNREACHABLE', message: expect.stringMatching(/host not found|lookup failed/) })
  })

  it('a connection reset before the handshake is MIRROR_UNREACHABLE', async () => {
    const { server, port } = await rawServer((socket) => socket.resetAndDestroy())
    const replica = new TcpReplica({ port, resource: 'r', key: KEY })
    await expect(replica.hello()).rejects.toMatchObject({ code: 'MIRROR_UNREACHABLE', message: expect.stringMatching(/reset before the handshake/) })
    await closed(server)
  })

  it('a TLS client against a plain server is MIRROR_TLS: the server does not speak TLS', async () => {
    const { server, port } = await mirrorServer()
    const replica = new TcpReplica({ port, resource: 'r', key: KEY, tls: { ca: ours.cert } })
    await expect(replica.hello()).rejects.toMatchObject({ code: 'MIRROR_TLS', message: expect.stringMatching(/does not speak TLS/) })
    await server.close()
  })

  it('a plain client against a TLS server times out, saying the server sent nothing and may speak TLS', async () => {
    // The TLS server waits for a ClientHello that never comes: nothing tells it apart from a silent server.
    const { server, port } = await mirrorServer({ cert: ours.cert, key: ours.key })
    const replica = new TcpReplica({ port, resource: 'r', key: KEY, connectTimeout: 500 })
    await expect(replica.hello()).rejects.toMatchObject({ code: 'MIRROR_TIMEOUT', message: expect.stringMatching(/sent nothing.*set the tls option/) })
    await server.close()
  })

  it('a certificate signed by another CA is MIRROR_TLS: not trusted', async () => {
    const { server, port } = await mirrorServer({ cert: ours.cert, key: ours.key })
    const replica = new TcpReplica({ port, resource: 'r', key: KEY, tls: { ca: theirs.cert } })
    await expect(replica.hello()).rejects.toMatchObject({ code: 'MIRROR_TLS', message: expect.stringMatching(/certificate is not trusted/) })
    await server.close()
  })

  it('a certificate for another name is MIRROR_TLS: not for this host', async () => {
    const { server, port } = await mirrorServer({ cert: ours.cert, key: ours.key })
    const replica = new TcpReplica({ port, resource: 'r', key: KEY, tls: { ca: ours.cert, servername: 'example.com' } })
    await expect(replica.hello()).rejects.toMatchObject({ code: 'MIRROR_TLS', message: expect.stringMatching(/not for this host/) })
    await server.close()
  })

  it('TLS versions that do not overlap are MIRROR_TLS: the versions do not match', async () => {
    const { server, port } = await mirrorServer({ cert: ours.cert, key: ours.key })
    const replica = new TcpReplica({ port, resource: 'r', key: KEY, tls: { ca: ours.cert, minVersion: 'TLSv1', maxVersion: 'TLSv1.1' } })
    await expect(replica.hello()).rejects.toMatchObject({ code: 'MIRROR_TLS', message: expect.stringMatching(/versions .*do not match/) })
    await server.close()
  })
})

describe('TcpReplica TLS server name', () => {
  it('connects to an IP address without Node\'s DEP0123 warning (no SNI for an address)', async () => {
    const server = new MirrorServer({ dir: fresh(), key: KEY, port: 0, tls: { cert: ours.cert, key: ours.key }, openDb: () => new MemoryLevel() as never })
    const { port } = await server.listen()
    const run = await runTs(fileURLToPath(new URL('./fixtures/tls-hello.ts', import.meta.url)), ['127.0.0.1', String(port), ours.certFile, KEY])
    await server.close()
    expect(run).toMatchObject({ code: 0, stdout: expect.stringMatching(/hello: watermark 0/) })
    expect(run.stderr).not.toMatch(/DEP0123|ServerName/)
  })

  it('sends the host as the server name when it is a name, and none for an address', async () => {
    const seen: Array<string | false | null> = []
    const server = createTlsServer({ cert: ours.cert, key: ours.key }, (socket: TLSSocket) => {
      seen.push(socket.servername)
      socket.destroy()
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const port = (server.address() as AddressInfo).port
    for (const host of ['127.0.0.1', 'localhost']) {
      await new TcpReplica({ host, port, resource: 'r', key: KEY, tls: { ca: ours.cert } }).hello().catch(() => {})
    }
    await new Promise<void>((resolve) => server.close(() => resolve()))
    expect(seen).toEqual([false, 'localhost'])
  })
})

describe('default replica names (as the README says)', () => {
  it('level-N in construction order, tcp-HOST:PORT/RESOURCE, replica-N by index for an adapter without a name, and the name option over all', async () => {
    const first = new LevelReplica(new MemoryLevel())
    const k = Number(/^level-(\d+)$/.exec(first.name)?.[1])
    const second = new LevelReplica(new MemoryLevel())
    expect(second.name).toBe(`level-${k + 1}`)
    expect(new TcpReplica({ host: 'backup.lan', port: 7410, resource: 'app-db', key: KEY }).name).toBe('tcp-backup.lan:7410/app-db')
    expect(new TcpReplica({ resource: 'app-db', key: KEY }).name).toBe('tcp-127.0.0.1:7410/app-db')
    const engine = new LevelReplica(new MemoryLevel())
    const nameless = { options: {}, hello: () => engine.hello(), apply: engine.apply.bind(engine), close: () => engine.close() } as unknown as ReplicaAdapter
    const named = new LevelReplica(new MemoryLevel(), { name: 'backup' })
    const db = new MirrorLevel(new MemoryLevel(), { replicas: [first, nameless, second, named] })
    await db.open()
    expect(db.mirrorStatus().replicas.map((r) => r.name)).toEqual([`level-${k}`, 'replica-1', `level-${k + 1}`, 'backup'])
    await db.close()
  })
})
