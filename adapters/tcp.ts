import type { ConnectionOptions } from 'node:tls'
import type { BatchPart, CommonReplicaOptions, PartAck, ReplicaAdapter, ReplicaHello } from '../lib/adapter'
import { MirrorError, codes } from '../lib/errors'
import { atLeast, describe, positiveInteger } from '../lib/options'
import { DEFAULT_MAX_FRAME_BYTES, MIN_FRAME_BYTES, keyBytes, validResource } from '../lib/net/protocol'
import { Link, type Traffic } from '../lib/net/client'
import { isFingerprint, type Fingerprint, type KeyRangeBounds } from '../lib/fingerprint'
import { checkTls } from '../lib/net/tls'
import { checkReplicaOptions } from '../lib/replication/replica-options'

/** Options of {@link TcpReplica}: where the server is, how to prove who we are, and timeouts. */
export interface TcpReplicaOptions extends CommonReplicaOptions {
  /** Server address. Default '127.0.0.1'. */
  host?: string
  /** Server port (`mirror-level serve --port`, default 7410). */
  port?: number
  /** The replica's name on the server: its database is `DIR/<resource>`. */
  resource: string
  /** The pre-shared key, as text (the key file's contents; whitespace around it is ignored). */
  key: string | Buffer
  /** Use TLS: `true` with the system's CAs, or options for `tls.connect` (e.g. `{ ca }`). */
  tls?: boolean | ConnectionOptions
  /** Connecting and authenticating may take this long, in ms. Default 10 000. */
  connectTimeout?: number
  /** A hello or a part waits this long for the server's answer, in ms. Default 60 000. */
  requestTimeout?: number
  /** A heartbeat goes out this often while connected, in ms. Default 5000. */
  heartbeatInterval?: number
  /** Hearing nothing from the server for this long ends the connection, in ms. Default 15 000. */
  heartbeatTimeout?: number
  /** Parts of one batch in flight before waiting for the server's acknowledgements. Default 4. */
  window?: number
  /** Largest frame accepted from the server, in bytes. Default 64 MiB. */
  maxFrameBytes?: number
  /** Let the server create the resource if it has none of that name. Default true; false refuses a misspelt one (`MIRROR_WRONG_ROLE`). */
  create?: boolean
}


/**
 * A replica on another machine, hosted by `mirror-level serve`. A thin transport: it connects and
 * authenticates on `hello()`, carries parts and acknowledgements, and on any failure drops the
 * connection and fails what is pending; the replicator decides when to call `hello()` again.
 *
 * Up to `window` parts of a batch are in flight at once: a non-final part resolves once it is on
 * its way (an error it meets fails the batch's later parts), the final part once the server has
 * applied the whole batch.
 */
export class TcpReplica implements ReplicaAdapter {
  readonly name: string
  readonly options: TcpReplicaOptions
  #key: Buffer
  #link: Link | null = null
  #linking: Promise<{ link: Link, hello: ReplicaHello }> | null = null
  #connecting: AbortController | null = null
  #traffic: Traffic = { sent: 0, received: 0 }
  // What one request may carry, from the server's hello (half its frame limit); until then, the default's half.
  #requestBytes = DEFAULT_MAX_FRAME_BYTES / 2

  constructor (options: TcpReplicaOptions) {
    if (typeof options !== 'object' || options === null) throw new MirrorError('TcpReplica: options must be an object', codes.INVALID_OPTION)
    checkReplicaOptions('TcpReplica', options, ['host', 'port', 'resource', 'key', 'tls', 'connectTimeout', 'requestTimeout', 'heartbeatInterval', 'heartbeatTimeout', 'window', 'maxFrameBytes', 'create'])
    if (!validResource(options.resource)) {
      throw new MirrorError(`TcpReplica: option 'resource' must be one path segment of letters, digits, '.', '_' and '-', got ${describe(options.resource)}`, codes.INVALID_OPTION)
    }
    this.#key = keyBytes(options.key ?? '')
    const port = options.port ?? 7410
    if (!Number.isInteger(port) || port <= 0 || port > 65535) throw new MirrorError(`TcpReplica: option 'port' must be 1-65535, got ${describe(port)}`, codes.INVALID_OPTION)
    for (const name of ['connectTimeout', 'requestTimeout', 'heartbeatInterval', 'heartbeatTimeout', 'window', 'maxFrameBytes'] as const) {
      if (options[name] !== undefined) positiveInteger('TcpReplica', name, options[name])
    }
    if (options.maxFrameBytes !== undefined) atLeast('TcpReplica', 'maxFrameBytes', options.maxFrameBytes, MIN_FRAME_BYTES)
    if (options.create !== undefined && typeof options.create !== 'boolean') throw new MirrorError(`TcpReplica: option 'create' must be a boolean, got ${describe(options.create)}`, codes.INVALID_OPTION)
    const host = options.host ?? '127.0.0.1'
    if (typeof host !== 'string' || host.length === 0) {
      throw new MirrorError(`TcpReplica: option 'host' must be a non-empty string (the server's address), got ${describe(host)}`, codes.INVALID_OPTION)
    }
    const tls: unknown = options.tls
    if (tls !== undefined && typeof tls !== 'boolean' && (typeof tls !== 'object' || tls === null || Array.isArray(tls))) {
      throw new MirrorError(`TcpReplica: option 'tls' must be true, false or an object of tls.connect options, got ${describe(tls)}`, codes.INVALID_OPTION)
    }
    if (typeof tls === 'object') checkTls('TcpReplica', 'tls', tls as ConnectionOptions)
    // A timeout at or below the interval drops a healthy link between two heartbeats.
    const interval = options.heartbeatInterval ?? 5000
    const timeout = options.heartbeatTimeout ?? 15_000
    if (timeout <= interval) {
      throw new MirrorError(`TcpReplica: option 'heartbeatTimeout' (${timeout}) must be above 'heartbeatInterval' (${interval})`, codes.INVALID_OPTION)
    }
    this.options = { ...options, host, port }
    this.name = options.name ?? `tcp-${host}:${port}/${options.resource}`
  }

  async hello (): Promise<ReplicaHello> {
    if (this.#link !== null && !this.#link.dead) {
      const answer = await this.#link.request({ t: 'hello' })
      return this.#heard(this.#link.checked(answer.hello))
    }
    const { hello } = await this.#connect()
    return hello
  }

  // The server says how large a part it takes (half its frame limit): requests stay within it too.
  #heard (hello: ReplicaHello): ReplicaHello {
    if (typeof hello.maxPartBytes === 'number') this.#requestBytes = hello.maxPartBytes
    return hello
  }

  async apply (part: BatchPart, received?: () => void): Promise<PartAck> {
    // Parts go out on the connection whose hello they were planned from, never on a new one made
    // here: a new connection's server holds nothing of a batch begun on the old one (cut during a
    // first copy, the next part was refused as MIRROR_BAD_PART and the replica marked failed). A
    // dead link fails the part with its own error, and the replicator says hello again.
    if (this.#link === null) throw new MirrorError(`replica '${this.name}': not connected (hello() first)`, codes.UNREACHABLE)
    return await this.#link.send(part, received, this.options.window ?? 4)
  }

  async fingerprint (ranges: KeyRangeBounds[]): Promise<Fingerprint[]> {
    // As many ranges per request as the server's frame limit takes (their bounds are keys).
    const out: Fingerprint[] = []
    for (let i = 0; i < ranges.length;) {
      let bytes = 0
      let end = i
      while (end < ranges.length && (end === i || bytes + rangeBytes(ranges[end]) <= this.#requestBytes)) bytes += rangeBytes(ranges[end++])
      this.#fits(bytes, 'range bounds')
      const chunk = ranges.slice(i, end)
      const answer = await (await this.#linked()).request({ t: 'fingerprint', ranges: chunk })
      const fps = answer.fingerprints
      if (!Array.isArray(fps) || fps.length !== chunk.length || !fps.every(isFingerprint)) throw new MirrorError('the server sent malformed fingerprints', codes.PROTOCOL)
      out.push(...fps)
      i = end
    }
    return out
  }

  #fits (bytes: number, what: string): void {
    if (bytes > this.#requestBytes) {
      throw new MirrorError(`A request with ${bytes} bytes of ${what} does not fit the server's frame limit (parts of at most ${this.#requestBytes} bytes): the keys are too long for its --max-frame-bytes`, codes.TOO_LARGE)
    }
  }

  async digests (range: KeyRangeBounds, from: Buffer | null, limit: number): Promise<{ entries: Array<[Buffer, Buffer]>, more: boolean }> {
    // The answer must fit this side's frame limit: room for the message around the entries.
    const maxBytes = (this.options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES) - 1024
    this.#fits(rangeBytes(range) + (from?.length ?? 0), 'keys')
    const answer = await (await this.#linked()).request({ t: 'digests', range, from, limit, maxBytes })
    const entries = answer.entries
    if (!Array.isArray(entries) || !entries.every((e) => Array.isArray(e) && e[0] instanceof Uint8Array && e[1] instanceof Uint8Array) || typeof answer.more !== 'boolean') {
      throw new MirrorError('the server sent malformed digests', codes.PROTOCOL)
    }
    return { entries: entries.map(([k, d]) => [Buffer.from(k), Buffer.from(d)]), more: answer.more }
  }

  async salvage (): Promise<void> {
    await (await this.#linked()).request({ t: 'salvage' })
  }

  /** Bytes sent and received over every connection this replica made, after their handshakes. */
  traffic (): Traffic {
    return { ...this.#traffic }
  }

  async #linked (): Promise<Link> {
    return this.#link !== null && !this.#link.dead ? this.#link : (await this.#connect()).link
  }

  /** Ends the connection, or the attempt to make one. A later `hello()` (the primary reopened) connects again. */
  async close (): Promise<void> {
    this.#connecting?.abort()
    this.#link?.end()
    this.#link = null
  }

  #connect (): Promise<{ link: Link, hello: ReplicaHello }> {
    if (this.#linking !== null) return this.#linking
    const attempt = new AbortController()
    this.#connecting = attempt
    this.#linking = Link.open(this.options, this.#key, attempt.signal).then((r) => {
      r.link.traffic = this.#traffic
      this.#heard(r.hello)
      this.#link?.end()
      this.#link = r.link
      return r
    }).finally(() => {
      this.#linking = null
      if (this.#connecting === attempt) this.#connecting = null
    })
    return this.#linking
  }
}

// What a range's bounds take in a request: the keys and their msgpack headers.
function rangeBytes (range: KeyRangeBounds): number {
  return (range.after?.length ?? 0) + (range.upto?.length ?? 0) + 32
}
