import { randomBytes } from 'node:crypto'
import { connect as connectTcp, isIP, type Socket } from 'node:net'
import { connect as connectTls, type ConnectionOptions } from 'node:tls'
import type { BatchPart, PartAck, ReplicaHello } from '../adapter'
import { MirrorError, codes } from '../errors'
import {
  DEFAULT_MAX_FRAME_BYTES, FrameDecoder, PROTOCOL_VERSION, checkHello, encodeFrame, proof, proofMatches, type Message
} from './protocol'
import { FrameScratch, encodePartFrameInto } from './part-frame'

/** Where a server is and how to talk to it (TcpReplica's options; restore and status use them too). */
export interface LinkOptions {
  host?: string
  port?: number
  resource: string
  tls?: boolean | ConnectionOptions
  connectTimeout?: number
  requestTimeout?: number
  heartbeatInterval?: number
  heartbeatTimeout?: number
  maxFrameBytes?: number
  /** For a primary: let the server create the resource if it does not exist. Default true. */
  create?: boolean
}

/** Bytes a client has sent and received over its connections (after the handshake). */
export interface Traffic {
  sent: number
  received: number
}

/** What a connection is for: streaming batches as a primary, reading a replica, or listing resources. */
export type Intent = 'write' | 'read' | 'list'

/** What the handshake's proofs cover: the resource, and for anything but a primary the intent too. */
export function scope (intent: Intent, resource: string): string {
  return intent === 'write' ? resource : `${intent}:${resource}`
}

interface Pending {
  resolve: (m: Message) => void
  reject: (err: Error) => void
  received?: () => void
  timer: NodeJS.Timeout
}

/** One authenticated connection to a server. */
export class Link {
  dead = false
  #socket: Socket
  #options: LinkOptions
  #decoder: FrameDecoder
  #pending = new Map<number, Pending>()
  #inflight = new Set<Promise<unknown>>()
  #failure: Error | null = null
  #scratch = new FrameScratch()
  #nextId = 1
  #heartbeat: NodeJS.Timeout | null = null
  #lastWatermark = 0
  #heardAt = 0

  /** Counted after the handshake; a caller may share one object between its links. */
  traffic: Traffic = { sent: 0, received: 0 }

  private constructor (socket: Socket, options: LinkOptions) {
    this.#socket = socket
    this.#options = options
    this.#decoder = new FrameDecoder(options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES)
  }

  static open (options: LinkOptions, key: Buffer, signal: AbortSignal, intent: Intent = 'write'): Promise<{ link: Link, hello: ReplicaHello }> {
    return new Promise((resolve, reject) => {
      const where = `${options.host}:${options.port}`
      const tls = options.tls !== undefined && options.tls !== false
      // SNI carries names only (RFC 6066): Node warns (DEP0123) when given an address.
      const servername = isIP(options.host!) === 0 ? { servername: options.host } : {}
      const socket = tls
        ? connectTls({ host: options.host, port: options.port, ...servername, ...(options.tls === true ? {} : options.tls) })
        : connectTcp({ host: options.host!, port: options.port! })
      const link = new Link(socket, options)
      const nonce = randomBytes(32)
      let serverNonce: Buffer | null = null
      let settled = false
      const fail = (err: Error): void => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        socket.destroy()
        reject(err)
      }
      let connected = false
      let secured = !tls
      let heard = false
      socket.once('connect', () => { connected = true })
      socket.once('secureConnect', () => { secured = true })
      const timer = setTimeout(() => {
        // A TLS server waits for the client to speak first, so a plain client hears nothing at all.
        const silent = connected && !heard && !tls ? ' (connected, but the server sent nothing: if it was started with --tls-cert, set the tls option)' : ''
        fail(new MirrorError(`${where}: no authenticated connection within ${options.connectTimeout ?? 10_000} ms${silent}`, codes.TIMEOUT))
      }, options.connectTimeout ?? 10_000)
      socket.setNoDelay(true)
      signal.addEventListener('abort', () => fail(new MirrorError(`${where}: closed by the primary while connecting`, codes.CLOSED)), { once: true })
      socket.on('error', (err) => fail(connectError(where, err, connected && !secured)))
      socket.on('close', () => fail(new MirrorError(`${where}: connection closed during the handshake`, codes.UNREACHABLE)))
      const onHandshake = (chunk: Buffer): void => {
        heard = true
        const messages = link.#decoder.push(chunk)
        if (link.#decoder.error !== null) return fail(link.#decoder.error)
        for (const m of messages) {
          if (m.t === 'error') return fail(new MirrorError(`${where}: server refused: ${String(m.message)}`, (m.code as never) ?? codes.PROTOCOL))
          if (serverNonce === null) {
            if (m.t !== 'challenge') return fail(new MirrorError(`${where}: expected a challenge, got '${String(m.t).slice(0, 32)}'`, codes.PROTOCOL))
            if (m.v !== PROTOCOL_VERSION) return fail(new MirrorError(`${where}: server speaks protocol ${String(m.v)}, this client ${PROTOCOL_VERSION}`, codes.PROTOCOL))
            if (!(m.nonce instanceof Uint8Array) || m.nonce.length !== 32) return fail(new MirrorError(`${where}: challenge without a 32-byte nonce`, codes.PROTOCOL))
            serverNonce = Buffer.from(m.nonce)
            // keepalive: how often the server should say it is still working on a part (our heartbeat rate)
            socket.write(encodeFrame({ t: 'auth', v: PROTOCOL_VERSION, resource: options.resource, intent, nonce, mac: proof(key, 'client', serverNonce, nonce, scope(intent, options.resource)), keepalive: options.heartbeatInterval ?? 5000, ...(options.create === false ? { create: false } : {}) }))
          } else if (m.t === 'welcome') {
            if (!proofMatches(proof(key, 'server', nonce, serverNonce, scope(intent, options.resource)), m.mac)) {
              return fail(new MirrorError(`${where}: the server could not prove it holds the key`, codes.AUTH))
            }
            let hello: ReplicaHello
            try {
              // A listing connection is about no resource: it has no hello.
              hello = intent === 'list' ? { generation: null, watermark: 0, pending: null } : checkHello(m.hello)
            } catch (err) {
              return fail(err as Error)
            }
            settled = true
            clearTimeout(timer)
            socket.removeAllListeners('data')
            socket.removeAllListeners('close')
            socket.removeAllListeners('error')
            link.#start()
            link.#lastWatermark = hello.watermark
            return resolve({ link, hello })
          } else {
            return fail(new MirrorError(`${where}: expected a welcome, got '${String(m.t).slice(0, 32)}'`, codes.PROTOCOL))
          }
        }
      }
      socket.on('data', onHandshake)
    })
  }

  #start (): void {
    const socket = this.#socket
    socket.on('data', (chunk: Buffer) => {
      this.#heardAt = Date.now()
      this.traffic.received += chunk.length
      for (const m of this.#decoder.push(chunk)) this.#onMessage(m)
      if (this.#decoder.error !== null) this.#fail(this.#decoder.error)
    })
    socket.on('error', (err) => this.#fail(new MirrorError(`connection failed: ${err.message}`, codes.UNREACHABLE, { cause: err })))
    socket.on('close', () => this.#fail(new MirrorError('connection closed', codes.UNREACHABLE)))
    // Silence is measured on what arrives: our own pings keep the socket busy, so its idle timer
    // would never fire on a link that swallows everything.
    const timeout = this.#options.heartbeatTimeout ?? 15_000
    const interval = this.#options.heartbeatInterval ?? 5000
    this.#heardAt = Date.now()
    let pingedAt = Date.now()
    this.#heartbeat = setInterval(() => {
      const now = Date.now()
      if (now - this.#heardAt > timeout) return this.#fail(new MirrorError(`no word from the server for ${timeout} ms`, codes.TIMEOUT))
      if (now - pingedAt >= interval) {
        pingedAt = now
        this.#write({ t: 'ping' })
      }
    }, Math.max(10, Math.min(interval, Math.floor(timeout / 4))))
    this.#heartbeat.unref()
  }

  /** A hello from the server, shape-checked; a malformed one ends the link. */
  checked (hello: unknown): ReplicaHello {
    try {
      return checkHello(hello)
    } catch (err) {
      this.#fail(err as Error)
      throw err
    }
  }

  #write (m: Message): void {
    if (this.dead) return
    if (m.t !== 'part') {
      const frame = encodeFrame(m)
      this.traffic.sent += frame.length
      this.#socket.write(frame)
      return
    }
    // One writev for the frame's chunks; the scratch buffer is used again once it went through.
    const { chunks, done } = encodePartFrameInto(m as Parameters<typeof encodePartFrameInto>[0], this.#scratch)
    this.#socket.cork()
    for (let i = 0; i < chunks.length; i++) {
      this.traffic.sent += chunks[i].length
      if (i < chunks.length - 1) this.#socket.write(chunks[i])
      else this.#socket.write(chunks[i], (err) => { if (err == null) done() })
    }
    this.#socket.uncork()
  }

  #onMessage (m: Message): void {
    if (m.t === 'pong') return
    const pending = typeof m.id === 'number' ? this.#pending.get(m.id) : undefined
    if (m.t === 'received') {
      pending?.received?.()
      return
    }
    if (m.t === 'working') {
      // The server is still applying it: the request's time starts again.
      if (pending !== undefined) pending.timer.refresh()
      return
    }
    if (m.t === 'error' && (m.fatal === true || pending === undefined)) {
      return this.#fail(new MirrorError(`server: ${String(m.message)}`, (m.code as never) ?? codes.PROTOCOL))
    }
    if (pending === undefined) return this.#fail(new MirrorError(`unexpected '${String(m.t).slice(0, 32)}' from the server`, codes.PROTOCOL))
    this.#pending.delete(m.id as number)
    clearTimeout(pending.timer)
    if (m.t !== 'error') return pending.resolve(m)
    // The replica refused something: start over from a fresh connection and a fresh hello.
    const err = new MirrorError(`server: ${String(m.message)}`, (m.code as never) ?? codes.PROTOCOL)
    pending.reject(err)
    this.#fail(err)
  }

  request (m: Message, received?: () => void): Promise<Message> {
    if (this.dead) return Promise.reject(this.#failure ?? new MirrorError('connection closed', codes.UNREACHABLE))
    const id = this.#nextId++
    const timeout = this.#options.requestTimeout ?? 60_000
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => this.#fail(new MirrorError(`the server did not answer within ${timeout} ms`, codes.TIMEOUT)), timeout)
      this.#pending.set(id, { resolve, reject, received, timer })
      this.#write({ ...m, id })
    })
  }

  async send (part: BatchPart, received: (() => void) | undefined, window: number): Promise<PartAck> {
    if (this.#failure !== null) throw this.#failure
    const answer = this.request({ t: 'part', part }, received)
    if (part.final) {
      const m = await answer
      // Earlier parts were answered first (the server works in order); any error among them has
      // already failed this batch.
      if (this.#failure !== null) throw this.#failure
      this.#lastWatermark = m.watermark as number
      return { watermark: this.#lastWatermark }
    }
    const tracked = answer.then(() => {}, (err: Error) => { this.#failure ??= err })
    this.#inflight.add(tracked)
    void tracked.finally(() => this.#inflight.delete(tracked))
    while (this.#inflight.size >= window) await Promise.race(this.#inflight)
    if (this.#failure !== null) throw this.#failure
    return { watermark: this.#lastWatermark }
  }

  #fail (err: Error): void {
    if (this.dead) return
    this.dead = true
    this.#failure ??= err
    if (this.#heartbeat !== null) clearInterval(this.#heartbeat)
    this.#socket.destroy()
    for (const p of this.#pending.values()) {
      clearTimeout(p.timer)
      p.reject(err)
    }
    this.#pending.clear()
  }

  end (): void {
    this.#fail(new MirrorError('closed by the primary', codes.CLOSED))
  }
}

// Errors of the connection itself, not of TLS, even while the TLS handshake runs.
const NETWORK_ERRORS: Record<string, string> = {
  ECONNREFUSED: 'connection refused (is mirror-level serve running there?)',
  ENOTFOUND: 'host not found',
  EAI_AGAIN: 'host name lookup failed',
  ENETUNREACH: 'network unreachable',
  ENETDOWN: 'network down',
  EHOSTUNREACH: 'host unreachable',
  EHOSTDOWN: 'host down',
  EADDRNOTAVAIL: 'address not available',
  ECONNRESET: 'connection reset before the handshake',
  ECONNABORTED: 'connection aborted before the handshake',
  EPIPE: 'connection reset before the handshake'
}

/** The coded error for a socket error before authentication, from its code and how far the connection got. */
function connectError (where: string, err: Error & { code?: string, reason?: string }, inTlsHandshake: boolean): MirrorError {
  const code = err.code ?? ''
  if (code === 'ETIMEDOUT') return new MirrorError(`${where}: connecting timed out (${code})`, codes.TIMEOUT, { cause: err })
  if (NETWORK_ERRORS[code] !== undefined) return new MirrorError(`${where}: ${NETWORK_ERRORS[code]} (${code})`, codes.UNREACHABLE, { cause: err })
  if (!inTlsHandshake) return new MirrorError(`${where}: ${err.message}`, codes.UNREACHABLE, { cause: err })
  const reason = err.reason ?? err.message
  let why: string
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    why = `the server's certificate is not for this host (${err.message}); connect by a name or address it lists, or set tls.servername`
  } else if (!code.startsWith('ERR_')) {
    // Certificate verification errors carry OpenSSL's X509 names (DEPTH_ZERO_SELF_SIGNED_CERT, ...).
    why = `the server's certificate is not trusted (${err.message}); give its CA certificate in tls.ca`
  } else if (/WRONG_VERSION_NUMBER|PACKET_LENGTH_TOO_LONG|RECORD_LAYER_FAILURE/.test(code)) {
    why = `the server does not speak TLS (${reason}); start it with --tls-cert and --tls-key, or drop the tls option`
  } else if (/PROTOCOL_VERSION|UNSUPPORTED_PROTOCOL|NO_PROTOCOLS_AVAILABLE|VERSION_TOO_(LOW|HIGH)/.test(code)) {
    why = `the TLS versions of the two sides do not match (${reason}); see tls.minVersion and tls.maxVersion`
  } else {
    why = reason
  }
  return new MirrorError(`${where}: TLS handshake failed: ${why}`, codes.TLS, { cause: err })
}
