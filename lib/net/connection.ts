import { randomBytes } from 'node:crypto'
import type { Socket } from 'node:net'
import { MirrorError, codes } from '../errors'
import type { MemoryBudget } from '../memory-budget'
import type { ReplicaEngine } from '../replica/engine'
import { scope, type Intent } from './client'
import { allows, type KeyGrant } from './keys'
import { FrameDecoder, PROTOCOL_VERSION, encodeFrame, proof, proofMatches, validResource, type Message } from './protocol'
import { ReadSession, checkDigestsRequest, checkRanges } from './read-session'
import type { HeldResource, Resources } from './resources'

/** What a connection needs from its server: settings, the keys, the shared budget, and resources. */
export interface ConnectionHost {
  readonly options: {
    maxFrameBytes: number
    authTimeout: number
    idleTimeout: number
    log: (line: string) => void
  }
  readonly grants: KeyGrant[]
  /** Bytes of large frames being received or waiting to be handled, over every connection. */
  readonly frames: MemoryBudget
  readonly resources: Resources
  /** The resources a key may see, with where each stands. */
  list: (grant: KeyGrant) => Promise<unknown[]>
}

// Before authentication only handshake-sized frames are accepted: a stranger gets nothing buffered.
const HANDSHAKE_MAX_FRAME = 4096
// Frames above this are admitted against the server's shared budget before they are buffered;
// smaller ones are bounded by the queue (at most QUEUE_MAX of them per connection).
const LARGE_FRAME = 64 * 1024
const QUEUE_MAX = 8

/**
 * One client connection: the handshake, then messages handled in order, one at a time. A part is
 * answered `received` as soon as it is held (memsync), `working` every few seconds while the
 * replica applies it (so a long apply is not taken for a dead server), then `ack` or `error`.
 * Heartbeats are answered at once, whatever is being applied.
 */
export class Connection {
  readonly peer: string
  #socket: Socket
  #server: ConnectionHost
  #decoder = new FrameDecoder(HANDSHAKE_MAX_FRAME)
  #nonce = randomBytes(32)
  #resource: string | null = null
  #intent: Intent = 'write'
  #grant: KeyGrant | null = null
  #held: HeldResource | null = null
  #engine: ReplicaEngine | null = null
  #reading: ReadSession | null = null
  #authenticated = false
  #claiming = false
  #work: Promise<void> = Promise.resolve()
  #queued = 0
  // Bytes taken from the shared budget for the frame being received (0: none).
  #reserved = 0
  #waitingForBudget = false
  #released: Promise<void> | null = null
  #authTimer: NodeJS.Timeout
  #keepalive: NodeJS.Timeout | null = null
  // How often to say `working` while a part is applied: the primary's heartbeat interval.
  #keepaliveEvery = 5000
  #stopping = false

  constructor (socket: Socket, server: ConnectionHost) {
    this.#socket = socket
    this.#server = server
    this.peer = `${socket.remoteAddress}:${socket.remotePort}`
    const o = server.options
    socket.setNoDelay(true)
    socket.setTimeout(o.idleTimeout, () => this.#fail('idle timeout'))
    this.#authTimer = setTimeout(() => this.#fail('did not authenticate in time'), o.authTimeout)
    socket.on('data', (chunk: Buffer) => this.#onData(chunk))
    socket.on('error', () => {})
    this.#send({ t: 'challenge', v: PROTOCOL_VERSION, nonce: this.#nonce })
  }

  #send (message: Message): void {
    if (!this.#socket.destroyed) this.#socket.write(encodeFrame(message))
  }

  #fail (why: string, code: string = codes.PROTOCOL): void {
    if (this.#socket.destroyed) return
    this.#server.options.log(`${this.peer}${this.#resource !== null ? ` [${this.#resource}]` : ''}: closing: ${why}`)
    this.#socket.end(encodeFrame({ t: 'error', code, message: why, fatal: true }))
    this.#socket.destroySoon()
    clearTimeout(this.#authTimer)
  }

  #onData (chunk: Buffer): void {
    const messages = this.#decoder.pushSized(chunk)
    for (let i = 0; i < messages.length; i++) {
      const { message } = messages[i]
      // The frame that was being received when its bytes were reserved is the first to complete.
      const reserved = i === 0 ? this.#reserved : 0
      if (i === 0) this.#reserved = 0
      if (this.#socket.destroyed) {
        this.#server.frames.give(reserved)
        return
      }
      if (!this.#authenticated) {
        this.#server.frames.give(reserved)
        this.#handshake(message)
      } else if (message.t === 'ping') {
        this.#send({ t: 'pong' })
      } else {
        this.#enqueue(message, reserved)
      }
    }
    const error = this.#decoder.error
    if (error !== null) {
      // Answer what came before the bad frame, then close.
      if (this.#authenticated) void this.#work.then(() => this.#fail(error.message))
      else this.#fail(error.message)
      return
    }
    this.#admit()
  }

  // A large frame is admitted against the shared budget before more of it is read.
  #admit (): void {
    const length = this.#decoder.pendingLength
    if (length <= LARGE_FRAME || this.#reserved > 0 || this.#waitingForBudget) return
    if (this.#server.frames.tryTake(length)) {
      this.#reserved = length
      return
    }
    this.#waitingForBudget = true
    this.#flow()
    void this.#server.frames.take(length).then(() => {
      this.#waitingForBudget = false
      if (this.#socket.destroyed) return this.#server.frames.give(length)
      this.#reserved = length
      this.#flow()
    })
  }

  // Reads only while the queue is short and no frame waits for budget: a slow disk or a full
  // budget slows the senders instead of filling memory.
  #flow (): void {
    if (this.#socket.destroyed || this.#stopping) return
    if (this.#queued > QUEUE_MAX || this.#waitingForBudget) this.#socket.pause()
    else this.#socket.resume()
  }

  #handshake (m: Message): void {
    if (this.#claiming) return this.#fail('a frame arrived before authentication finished')
    if (m.t !== 'auth') return this.#fail(`expected an auth frame, got '${String(m.t).slice(0, 32)}'`)
    if (m.v !== PROTOCOL_VERSION) return this.#fail(`protocol version ${String(m.v)} is not supported (this server speaks ${PROTOCOL_VERSION})`)
    const intent = m.intent ?? 'write'
    if (intent !== 'write' && intent !== 'read' && intent !== 'list') return this.#fail(`unknown intent '${String(intent).slice(0, 32)}'`)
    if (intent === 'list' ? m.resource !== '*' : !validResource(m.resource)) return this.#fail('resource name is not allowed (one path segment of letters, digits, ".", "_" and "-", not starting with ".")')
    if (!(m.nonce instanceof Uint8Array) || m.nonce.length !== 32) return this.#fail('auth frame without a 32-byte nonce')
    const resource = m.resource as string
    const theirs = m.nonce
    const scoped = scope(intent, resource)
    // Which key signed it: each is tried (a handful at most), each compared in constant time.
    const grant = this.#server.grants.find((g) => proofMatches(proof(g.key, 'client', this.#nonce, theirs, scoped), m.mac))
    if (grant === undefined) return this.#fail('authentication failed: wrong key', codes.AUTH)
    if (intent !== 'list' && !allows(grant, resource, intent)) {
      return this.#fail(`this key may not ${intent === 'write' ? 'stream to' : 'read'} resource '${resource}'`, codes.FORBIDDEN)
    }
    if (typeof m.keepalive === 'number' && Number.isFinite(m.keepalive)) this.#keepaliveEvery = Math.min(30_000, Math.max(50, m.keepalive))
    this.#claiming = true
    this.#intent = intent
    this.#grant = grant
    // Set before the claim settles, so a connection that drops meanwhile still gives it back.
    this.#resource = intent === 'list' ? null : resource
    const welcome = (hello: Message['hello']): void => {
      clearTimeout(this.#authTimer)
      this.#claiming = false
      this.#authenticated = true
      // A reader's requests name keys (where to read on, ranges to compare), as long as the keys are.
      this.#decoder.limit = intent === 'list' ? HANDSHAKE_MAX_FRAME : this.#server.options.maxFrameBytes
      if (this.#socket.destroyed) return void this.release()
      this.#send({ t: 'welcome', mac: proof(grant.key, 'server', theirs, this.#nonce, scoped), hello })
    }
    if (intent === 'list') return welcome(null)
    // Only a primary creates a resource (and only if it did not ask not to, as a verify does):
    // a restore, a listing or a misspelt name must not leave an empty one behind.
    const create = intent === 'write' && m.create !== false
    this.#server.resources.acquire(resource, this, intent === 'write', create).then((held) => {
      if (this.#socket.destroyed) return void held.release()
      this.#held = held
      this.#engine = held.engine
      if (intent === 'read') this.#reading = new ReadSession(held.engine)
      this.#server.options.log(`${this.peer}: ${intent === 'write' ? 'primary' : 'reader'} of '${resource}' (watermark ${held.engine.hello().watermark}, ${grant.label})`)
      welcome(this.#hello())
    }, (err: MirrorError) => {
      this.#claiming = false
      this.#resource = null
      this.#fail(err.message, err.code ?? codes.BUSY)
    })
  }

  // The engine's hello, and the largest part a primary may send in one frame.
  #hello (): Message['hello'] {
    return { ...this.#engine!.hello(), maxPartBytes: Math.floor(this.#server.options.maxFrameBytes / 2) }
  }

  #enqueue (m: Message, reserved: number): void {
    this.#queued++
    this.#flow()
    if (m.t === 'part') this.#send({ t: 'received', id: m.id }) // held in memory: memsync's ack
    this.#work = this.#work.then(() => this.#handle(m)).finally(() => {
      this.#server.frames.give(reserved)
      this.#queued--
      this.#flow()
    })
  }

  async #handle (m: Message): Promise<void> {
    // Each intent has its messages: a primary's parts, a reader's reads, a listing.
    const allowed: Record<Intent, string[]> = { write: ['hello', 'part', 'fingerprint', 'digests', 'salvage'], read: ['hello', 'read', 'fingerprint', 'digests'], list: ['list'] }
    if (!allowed[this.#intent].includes(m.t)) {
      return this.#send({ t: 'error', id: m.id, code: codes.PROTOCOL, message: `'${String(m.t).slice(0, 32)}' is not for a ${this.#intent} connection` })
    }
    if (m.t === 'hello') return this.#send({ t: 'hello', id: m.id, hello: this.#hello() })
    // While it takes long (a large batch applied, a whole store read), the peer hears that it is being worked on.
    this.#keepalive = setInterval(() => this.#send({ t: 'working', id: m.id }), this.#keepaliveEvery)
    try {
      switch (m.t) {
        case 'part': {
          const ack = await this.#engine!.apply(m.part as never)
          if ((m.part as { final?: boolean }).final === true) this.#held?.applied()
          return this.#send({ t: 'ack', id: m.id, watermark: ack.watermark })
        }
        case 'read':
          return this.#send({ t: 'read', id: m.id, ...(await this.#reading!.read(m)) })
        // A reader asks of its one view; a primary verifying its replica asks of the replica as it is
        // (the primary ships nothing to it meanwhile).
        case 'fingerprint':
          return this.#send({ t: 'fingerprint', id: m.id, ...(this.#reading !== null ? await this.#reading.fingerprint(m) : { fingerprints: await this.#engine!.fingerprint(checkRanges(m)) }) })
        case 'salvage':
          await this.#server.resources.salvage(this.#resource!, this)
          return this.#send({ t: 'salvaged', id: m.id })
        case 'digests': {
          if (this.#reading !== null) return this.#send({ t: 'digests', id: m.id, ...(await this.#reading.digests(m)) })
          const { range, from, limit, maxBytes } = checkDigestsRequest(m)
          return this.#send({ t: 'digests', id: m.id, ...(await this.#engine!.digests(range, from, limit, maxBytes)) })
        }
        case 'list':
          return this.#send({ t: 'list', id: m.id, resources: await this.#server.list(this.#grant!) })
      }
    } catch (err) {
      const e = err as MirrorError
      this.#send({ t: 'error', id: m.id, code: e.code ?? (m.t === 'part' ? codes.BAD_PART : codes.PROTOCOL), message: e.message })
    } finally {
      clearInterval(this.#keepalive)
      this.#keepalive = null
    }
  }

  /** Finish the part in hand, then close. */
  async shutdown (): Promise<void> {
    this.#stopping = true
    this.#socket.pause()
    await this.#work
    this.#socket.end()
    this.#socket.destroySoon()
    await this.release()
  }

  release (): Promise<void> {
    this.#released ??= (async () => {
      clearTimeout(this.#authTimer)
      await this.#work
      this.#server.frames.give(this.#reserved)
      this.#reserved = 0
      await this.#reading?.close()
      await this.#held?.release()
    })()
    return this.#released
  }
}
