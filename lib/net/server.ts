import { existsSync, statSync } from 'node:fs'
import { mkdir, readdir } from 'node:fs/promises'
import { createServer as createTcpServer, type AddressInfo, type Server, type Socket } from 'node:net'
import { dirname, join, resolve } from 'node:path'
import { createServer as createTlsServer } from 'node:tls'
import { MirrorError, codes, telling } from '../errors'
import type { InnerDb } from '../inner'
import { atLeast, describe, positiveInteger } from '../options'
import { MemoryBudget } from '../memory-budget'
import { ReplicaEngine } from '../replica/engine'
import { inspectStore } from '../replica/inspect'
import { Connection } from './connection'
import { DEFAULT_MAX_FRAME_BYTES, MIN_FRAME_BYTES, encodeFrame, validResource } from './protocol'
import { allows, fullGrant, parseKeys, sees, type KeyGrant, type Right } from './keys'
import { Resources } from './resources'
import { checkTls } from './tls'

/** Options of {@link MirrorServer} (the `mirror-level serve` command). */
export interface MirrorServerOptions {
  /** The directory holding one replica database per resource, at `dir/<resource>`. */
  dir: string
  /** The pre-shared key, as text (whitespace around it is ignored): it may do anything. Give this or `keys`. */
  key?: string | Buffer
  /**
   * Several keys, each limited to some resources and to reading or writing: the text of a keys
   * file (see `mirror-level serve --help`, or the README). Give this or `key`.
   */
  keys?: string
  /** Address to listen on. Default '127.0.0.1': listening elsewhere is a decision to make. */
  host?: string
  /** Port; 0 picks a free one. Default 7410. */
  port?: number
  /** TLS certificate and private key (PEM). Without them the server speaks plain TCP. */
  tls?: { cert: string | Buffer, key: string | Buffer }
  /** At most this many connections at once (authenticated or not). Default 64. */
  maxConnections?: number
  /** Largest frame accepted, in bytes. Default 64 MiB. */
  maxFrameBytes?: number
  /** A connection must authenticate within this many ms. Default 5000. */
  authTimeout?: number
  /**
   * A connection that sends nothing (not even a heartbeat) for this many ms is closed, which frees
   * its resource for a reconnecting primary. Default 15 000 (primaries send a heartbeat every 5 s).
   */
  idleTimeout?: number
  /** Where log lines go. Default: none. */
  log?: (line: string) => void
  /**
   * At most this many bytes of large frames are held at once over all connections (received and
   * waiting to be applied); a connection whose next frame does not fit waits, unread. The replica
   * engines together hold at most as much again of batches kept in memory to apply atomically
   * (beyond it they use their journal). Default 256 MiB.
   */
  maxBufferedBytes?: number
  /**
   * The LevelDB write buffer of each resource's database (classic-level's `writeBufferSize`), when
   * `openDb` is not given. A catch-up writes a backlog in the order the primary wrote it, and a
   * larger buffer sorts more of it in memory before it reaches disk (LevelDB alone took 9.2 s to
   * ingest 1 GiB of random 4 KiB writes in sorted steps of 1000 with 32 MiB, 25.6 s with its default
   * 4 MiB). An open resource may hold two buffers at once. 64 KiB to 1 GiB; default 32 MiB.
   */
  writeBufferBytes?: number
  /** Opens a resource's database. Default: classic-level at `dir/<resource>`. */
  openDb?: (path: string, options: { create: boolean }) => InnerDb | Promise<InnerDb>
}

type ResolvedOptions = Required<Omit<MirrorServerOptions, 'tls' | 'key' | 'keys'>> & { tls?: MirrorServerOptions['tls'] }

/** One resource in a listing (`mirror-level status --remote`). */
export interface ResourceStatus {
  name: string
  /** What the key may do with it. */
  rights: Right[]
  role: 'replica' | 'demoted' | 'primary' | 'restoring' | 'plain' | 'unreadable'
  generation: string | null
  watermark: number
  /** Plain level reads a real state of the primary from its directory. */
  consistent: boolean
  /** The address of the primary streaming to it now, if one is. */
  primary: string | null
  /** When it last applied a batch, in this server's life (ms since the epoch), or null. */
  lastBatchAt: number | null
  error?: string
}

/**
 * Hosts replica databases for remote primaries. Each connection authenticates both ways with the
 * pre-shared key, names one resource, and then streams batch parts that the replica engine applies
 * (the same engine, reserved range and recovery as LevelReplica). One primary per resource at a
 * time; a bounded number of connections; frames of bounded size; anything malformed is answered
 * with an error and changes nothing.
 */
export class MirrorServer {
  #options: ResolvedOptions
  #grants: KeyGrant[]
  #server: Server
  #connections = new Set<Connection>()
  #resources: Resources
  #closing = false
  #frames: MemoryBudget
  #applying: MemoryBudget

  constructor (options: MirrorServerOptions) {
    if (typeof options !== 'object' || options === null) throw new MirrorError('MirrorServer: options must be an object', codes.INVALID_OPTION)
    if (typeof options.dir !== 'string' || options.dir.length === 0) {
      throw new MirrorError(`MirrorServer: option 'dir' must be a directory path, got ${describe(options.dir)}`, codes.INVALID_OPTION)
    }
    if ((options.key === undefined) === (options.keys === undefined)) {
      throw new MirrorError('MirrorServer: give one of the options \'key\' (one key that may do anything) and \'keys\' (a keys file\'s text)', codes.INVALID_OPTION)
    }
    if (options.keys !== undefined && typeof options.keys !== 'string') {
      throw new MirrorError(`MirrorServer: option 'keys' must be the text of a keys file, got ${describe(options.keys)}`, codes.INVALID_OPTION)
    }
    this.#grants = options.keys !== undefined ? parseKeys(options.keys) : [fullGrant(options.key!)]
    const port = options.port ?? 7410
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new MirrorError(`MirrorServer: option 'port' must be 0-65535, got ${describe(port)}`, codes.INVALID_OPTION)
    // Node takes an empty or non-string host as "every interface": never what a typo meant.
    const host = options.host ?? '127.0.0.1'
    if (typeof host !== 'string' || host.length === 0) {
      throw new MirrorError(`MirrorServer: option 'host' must be a non-empty string (an address to listen on), got ${describe(host)}`, codes.INVALID_OPTION)
    }
    if (options.log !== undefined && typeof options.log !== 'function') {
      throw new MirrorError(`MirrorServer: option 'log' must be a function, got ${describe(options.log)}`, codes.INVALID_OPTION)
    }
    if (options.tls !== undefined) {
      const tls: unknown = options.tls
      if (typeof tls !== 'object' || tls === null || Array.isArray(tls)) {
        throw new MirrorError(`MirrorServer: option 'tls' must be an object with 'cert' and 'key', got ${describe(tls)}`, codes.INVALID_OPTION)
      }
      for (const name of ['cert', 'key'] as const) {
        const pem = (tls as Record<string, unknown>)[name]
        if (typeof pem !== 'string' && !Buffer.isBuffer(pem)) {
          throw new MirrorError(`MirrorServer: option 'tls.${name}' must be PEM text (a string or Buffer), got ${describe(pem)}`, codes.INVALID_OPTION)
        }
      }
      checkTls('MirrorServer', 'tls', { cert: options.tls.cert, key: options.tls.key })
    }
    const writeBufferBytes = atLeast('MirrorServer', 'writeBufferBytes', positiveInteger('MirrorServer', 'writeBufferBytes', options.writeBufferBytes, 32 * 1024 * 1024), 64 * 1024)
    // LevelDB would quietly use 1 GiB instead.
    if (writeBufferBytes > 2 ** 30) throw new MirrorError(`MirrorServer: option 'writeBufferBytes' must be at most ${2 ** 30} (1 GiB), got ${writeBufferBytes}`, codes.INVALID_OPTION)
    this.#options = {
      dir: resolve(options.dir),
      host,
      port,
      tls: options.tls,
      maxConnections: positiveInteger('MirrorServer', 'maxConnections', options.maxConnections, 64),
      maxFrameBytes: atLeast('MirrorServer', 'maxFrameBytes', positiveInteger('MirrorServer', 'maxFrameBytes', options.maxFrameBytes, DEFAULT_MAX_FRAME_BYTES), MIN_FRAME_BYTES),
      authTimeout: positiveInteger('MirrorServer', 'authTimeout', options.authTimeout, 5000),
      idleTimeout: positiveInteger('MirrorServer', 'idleTimeout', options.idleTimeout, 15_000),
      maxBufferedBytes: positiveInteger('MirrorServer', 'maxBufferedBytes', options.maxBufferedBytes, 256 * 1024 * 1024),
      log: options.log ?? (() => {}),
      writeBufferBytes,
      // Loaded on first use, so importing mirror-level does not load a native module.
      openDb: options.openDb ?? (async (path, { create }) => new (await import('classic-level')).ClassicLevel(path, { createIfMissing: create, writeBufferSize: writeBufferBytes }) as unknown as InnerDb)
    }
    this.#frames = new MemoryBudget(this.#options.maxBufferedBytes)
    this.#applying = new MemoryBudget(this.#options.maxBufferedBytes)
    this.#resources = new Resources(async (name, create) => {
      const path = join(this.#options.dir, name)
      if (!create && !existsSync(path)) throw new MirrorError(`this server has no resource '${name}'`, codes.WRONG_ROLE)
      const engine = new ReplicaEngine(await this.#options.openDb(path, { create }), { memory: this.#applying })
      try {
        await engine.open()
      } catch (err) {
        if (telling(err) === 'LEVEL_LOCKED') {
          throw new MirrorError(`resource '${name}' is in use by another process (another mirror-level serve on the same --dir, or a program that opened ${path})`, codes.BUSY, { cause: err })
        }
        throw err
      }
      return engine
    })
    const onSocket = (socket: Socket): void => this.#accept(socket)
    // A TLS handshake comes before ours: bound it by the same timeout.
    this.#server = this.#options.tls !== undefined
      ? createTlsServer({ cert: this.#options.tls.cert, key: this.#options.tls.key, handshakeTimeout: this.#options.authTimeout }, onSocket)
      : createTcpServer(onSocket)
    this.#server.on('tlsClientError', (err: Error) => this.#options.log(`TLS handshake failed: ${err.message}`))
  }

  /**
   * Starts listening, then creates `dir` if it is missing; resolves with the address (useful with
   * port 0). Listening comes first: a port in use left a new empty `dir` behind.
   */
  async listen (): Promise<{ host: string, port: number }> {
    const address = await new Promise<{ host: string, port: number }>((resolve, reject) => {
      this.#server.once('error', (err: NodeJS.ErrnoException) => {
        if (err.code === 'EADDRINUSE') reject(new MirrorError(`MirrorServer: port ${this.#options.port} on ${this.#options.host} is in use by another process`, codes.INVALID_OPTION, { cause: err }))
        else if (err.code === 'EADDRNOTAVAIL') reject(new MirrorError(`MirrorServer: ${this.#options.host} is not an address of this machine`, codes.INVALID_OPTION, { cause: err }))
        else reject(err)
      })
      this.#server.listen(this.#options.port, this.#options.host, () => {
        this.#server.removeAllListeners('error')
        const a = this.#server.address() as AddressInfo
        resolve({ host: a.address, port: a.port })
      })
    })
    try {
      await this.#makeDir()
    } catch (err) {
      await new Promise<void>((resolve) => this.#server.close(() => resolve()))
      throw err
    }
    this.#options.log(`listening on ${address.host}:${address.port}${this.#options.tls !== undefined ? ' (TLS)' : ''}, replicas in ${this.#options.dir}`)
    return address
  }

  async #makeDir (): Promise<void> {
    const dir = this.#options.dir
    try {
      // Node's recursive mkdir spins on some paths (/proc/...): recursive only where parents are missing.
      if (existsSync(dirname(dir))) await mkdir(dir).catch((err) => { if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || !statSync(dir).isDirectory()) throw err })
      else await mkdir(dir, { recursive: true })
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      if (code !== 'EEXIST' && code !== 'ENOTDIR') throw err
      const what = code === 'EEXIST' ? `${dir} exists and is not one` : `a parent of ${dir} is not a directory`
      throw new MirrorError(`MirrorServer: option 'dir' must be a directory: ${what}`, codes.INVALID_OPTION, { cause: err })
    }
  }

  /** Stops accepting, lets each connection finish the part in hand, and closes every database. */
  async close (): Promise<void> {
    if (this.#closing) return
    this.#closing = true
    const stopped = new Promise<void>((resolve) => this.#server.close(() => resolve()))
    await Promise.all([...this.#connections].map((c) => c.shutdown()))
    await stopped
    this.#options.log('closed')
  }

  /** Connections open now (for tests and status). */
  get connections (): number { return this.#connections.size }

  #accept (socket: Socket): void {
    if (this.#closing) {
      socket.destroy()
      return
    }
    if (this.#connections.size >= this.#options.maxConnections) {
      socket.end(encodeFrame({ t: 'error', code: codes.BUSY, message: `too many connections (${this.#options.maxConnections})`, fatal: true }))
      socket.destroySoon()
      return
    }
    const connection = new Connection(socket, this)
    this.#connections.add(connection)
    socket.once('close', () => {
      this.#connections.delete(connection)
      void connection.release()
    })
  }

  // For Connection: the shared state and policy.
  get options (): ResolvedOptions { return this.#options }
  get grants (): KeyGrant[] { return this.#grants }
  get frames (): MemoryBudget { return this.#frames }
  get resources (): Resources { return this.#resources }

  /** The resources under `dir` that `grant` may see, with where each stands. */
  async list (grant: KeyGrant): Promise<ResourceStatus[]> {
    let names: string[]
    try {
      names = (await readdir(this.#options.dir, { withFileTypes: true })).filter((d) => d.isDirectory() && validResource(d.name)).map((d) => d.name)
    } catch {
      names = []
    }
    const out: ResourceStatus[] = []
    for (const name of names.sort()) {
      if (!sees(grant, name)) continue
      const rights = (['read', 'write'] as Right[]).filter((r) => allows(grant, name, r))
      const base = { name, rights, ...this.#resources.activity(name) }
      try {
        // Opening it runs its recovery, as it would for a primary or a restore.
        const held = await this.#resources.acquire(name, { peer: 'status' }, false)
        try {
          const hello = held.engine.hello()
          const report = await inspectStore(held.engine.db)
          const role = report.role === 'replica' && hello.demoted !== null && hello.demoted !== undefined ? 'demoted' : report.role
          out.push({ ...base, role, generation: hello.generation, watermark: hello.watermark, consistent: report.consistent })
        } finally {
          await held.release()
        }
      } catch (err) {
        out.push({ ...base, role: 'unreadable', generation: null, watermark: 0, consistent: false, error: (err as Error).message })
      }
    }
    return out
  }
}
