import { mkdir } from 'node:fs/promises'
import { createServer as createTcpServer, type AddressInfo, type Server, type Socket } from 'node:net'
import { join, resolve } from 'node:path'
import { createServer as createTlsServer } from 'node:tls'
import { MirrorError, codes } from '../errors'
import type { InnerDb } from '../inner'
import { describe, positiveInteger } from '../options'
import { MemoryBudget } from '../memory-budget'
import { ReplicaEngine } from '../replica/engine'
import { Connection } from './connection'
import { DEFAULT_MAX_FRAME_BYTES, encodeFrame, keyBytes } from './protocol'
import { checkTls } from './tls'

/** Options of {@link MirrorServer} (the `mirror-level serve` command). */
export interface MirrorServerOptions {
  /** The directory holding one replica database per resource, at `dir/<resource>`. */
  dir: string
  /** The pre-shared key, as text (whitespace around it is ignored). */
  key: string | Buffer
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
  /** Opens a resource's database. Default: classic-level at `dir/<resource>`. */
  openDb?: (path: string) => InnerDb | Promise<InnerDb>
}

type ResolvedOptions = Required<Omit<MirrorServerOptions, 'tls' | 'key'>> & { tls?: MirrorServerOptions['tls'] }

interface Resource {
  engine: ReplicaEngine | null
  connection: Connection
  /** Settles once the replica database has opened (or failed to). */
  opening: Promise<void>
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
  #key: Buffer
  #server: Server
  #connections = new Set<Connection>()
  #resources = new Map<string, Resource>()
  #closing = false
  #frames: MemoryBudget
  #applying: MemoryBudget

  constructor (options: MirrorServerOptions) {
    if (typeof options !== 'object' || options === null) throw new MirrorError('MirrorServer: options must be an object', codes.INVALID_OPTION)
    if (typeof options.dir !== 'string' || options.dir.length === 0) {
      throw new MirrorError(`MirrorServer: option 'dir' must be a directory path, got ${describe(options.dir)}`, codes.INVALID_OPTION)
    }
    this.#key = keyBytes(options.key)
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
    this.#options = {
      dir: resolve(options.dir),
      host,
      port,
      tls: options.tls,
      maxConnections: positiveInteger('MirrorServer', 'maxConnections', options.maxConnections, 64),
      maxFrameBytes: positiveInteger('MirrorServer', 'maxFrameBytes', options.maxFrameBytes, DEFAULT_MAX_FRAME_BYTES),
      authTimeout: positiveInteger('MirrorServer', 'authTimeout', options.authTimeout, 5000),
      idleTimeout: positiveInteger('MirrorServer', 'idleTimeout', options.idleTimeout, 15_000),
      maxBufferedBytes: positiveInteger('MirrorServer', 'maxBufferedBytes', options.maxBufferedBytes, 256 * 1024 * 1024),
      log: options.log ?? (() => {}),
      // Loaded on first use, so importing mirror-level does not load a native module.
      openDb: options.openDb ?? (async (path) => new (await import('classic-level')).ClassicLevel(path) as unknown as InnerDb)
    }
    this.#frames = new MemoryBudget(this.#options.maxBufferedBytes)
    this.#applying = new MemoryBudget(this.#options.maxBufferedBytes)
    const onSocket = (socket: Socket): void => this.#accept(socket)
    // A TLS handshake comes before ours: bound it by the same timeout.
    this.#server = this.#options.tls !== undefined
      ? createTlsServer({ cert: this.#options.tls.cert, key: this.#options.tls.key, handshakeTimeout: this.#options.authTimeout }, onSocket)
      : createTcpServer(onSocket)
    this.#server.on('tlsClientError', (err: Error) => this.#options.log(`TLS handshake failed: ${err.message}`))
  }

  /** Creates `dir` if it is missing, then starts listening; resolves with the address (useful with port 0). */
  async listen (): Promise<{ host: string, port: number }> {
    const dir = this.#options.dir
    try {
      await mkdir(dir, { recursive: true })
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      if (code !== 'EEXIST' && code !== 'ENOTDIR') throw err
      const what = code === 'EEXIST' ? `${dir} exists and is not one` : `a parent of ${dir} is not a directory`
      throw new MirrorError(`MirrorServer: option 'dir' must be a directory: ${what}`, codes.INVALID_OPTION, { cause: err })
    }
    return await new Promise((resolve, reject) => {
      this.#server.once('error', reject)
      this.#server.listen(this.#options.port, this.#options.host, () => {
        this.#server.off('error', reject)
        const a = this.#server.address() as AddressInfo
        this.#options.log(`listening on ${a.address}:${a.port}${this.#options.tls !== undefined ? ' (TLS)' : ''}, replicas in ${this.#options.dir}`)
        resolve({ host: a.address, port: a.port })
      })
    })
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
  get key (): Buffer { return this.#key }
  get frames (): MemoryBudget { return this.#frames }

  /**
   * Makes `connection` the primary of `resource` and opens its replica. The claim is registered
   * before the database opens, so a second primary is refused at once and an unclaim waits for
   * the open to finish (a connection may drop while its replica is still opening).
   */
  claim (resource: string, connection: Connection): Promise<ReplicaEngine> {
    const held = this.#resources.get(resource)
    if (held !== undefined) {
      return Promise.reject(new MirrorError(`resource '${resource}' already has a primary streaming to it (from ${held.connection.peer}); one primary per resource`, codes.BUSY))
    }
    const claim: Resource = { engine: null, connection, opening: Promise.resolve() }
    this.#resources.set(resource, claim)
    const opened = (async () => {
      claim.engine = new ReplicaEngine(await this.#options.openDb(join(this.#options.dir, resource)), { memory: this.#applying })
      await claim.engine.open()
      return claim.engine
    })()
    claim.opening = opened.then(() => {}, () => {
      claim.engine = null
      if (this.#resources.get(resource) === claim) this.#resources.delete(resource)
    })
    return opened
  }

  async unclaim (resource: string, connection: Connection): Promise<void> {
    const held = this.#resources.get(resource)
    if (held === undefined || held.connection !== connection) return
    await held.opening
    try {
      await held.engine?.close()
    } finally {
      if (this.#resources.get(resource) === held) this.#resources.delete(resource)
    }
  }
}
